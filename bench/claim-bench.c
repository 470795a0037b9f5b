/* SPDX-License-Identifier: MIT */
/*
 * Exactly-once page claims under contention: memfault_region_claim() +
 * memfault_region_publish() against a hand-written claim on raw atomics,
 * at 1, 2, 4 and 8 threads, interleaved in one process, medians of
 * repeated trials (bench/bitmap-bench.c measures the library side once,
 * without a baseline; this is its interleaved counterpart).
 *
 *   lib  every thread claims every page (its own order); the one that gets
 *        MEMFAULT_CLAIM_FETCH counts a fetch and publishes; the others wait
 *        in the library (futex) until the page is published
 *   raw  the same protocol by hand on two plain bitmaps: load-acquire the
 *        missing bit; test-and-set the busy bit (acq_rel); the winner
 *        re-checks, fetches, clears the missing bit (release) and the busy
 *        bit; the losers spin with sched_yield() until the missing bit
 *        clears
 *
 * Both sides count every fetch per page; "exactly_once" is true when, in
 * every trial, every page was fetched exactly once.
 *
 *   claim-bench [pages] [trials]     defaults 32768 pages, 21 trials
 *
 * Prints one JSON object per thread count: the medians of each side, and
 * "ratio", the median of the per-trial lib/raw ratios (1.0 = as fast as the
 * raw atomics, lower is better) with its 95% confidence interval, and the
 * voluntary context switches per page of each side (a waiter that slept in
 * the library's futex, or a spinner's yield that let another thread run).
 */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "bench-stats.h"
#include "kvmsim.h"
#include "memfault/memfault.h"

#define MAX_THREADS 8
#define BITS (8 * sizeof(unsigned long))

static struct memfault_vm *vm;
static uint64_t page_size;

struct raw_bitmap {
	unsigned long *missing, *busy;
};

/* The hand-written claim: 1 fetch, 0 present. */
static int
raw_claim(struct raw_bitmap *b, uint64_t p)
{
	unsigned long m = 1ul << (p % BITS);
	unsigned long *mw = &b->missing[p / BITS], *bw = &b->busy[p / BITS];

	for (;;) {
		if (!(__atomic_load_n(mw, __ATOMIC_ACQUIRE) & m))
			return 0;
		if (!(__atomic_fetch_or(bw, m, __ATOMIC_ACQ_REL) & m)) {
			if (__atomic_load_n(mw, __ATOMIC_ACQUIRE) & m)
				return 1;
			/* published between the two loads */
			__atomic_fetch_and(bw, ~m, __ATOMIC_RELEASE);
			return 0;
		}
		while (__atomic_load_n(mw, __ATOMIC_ACQUIRE) & m)
			sched_yield();
	}
}

static void
raw_publish(struct raw_bitmap *b, uint64_t p)
{
	unsigned long m = 1ul << (p % BITS);

	__atomic_fetch_and(&b->missing[p / BITS], ~m, __ATOMIC_RELEASE);
	__atomic_fetch_and(&b->busy[p / BITS], ~m, __ATOMIC_RELEASE);
}

struct worker {
	struct memfault_region *r; /* lib */
	struct raw_bitmap *b;      /* raw */
	uint64_t n;
	unsigned *fetches;
	int id;
	pthread_barrier_t *start;
	pthread_t t;
	double t0, t1; /* this thread's first and last instant */
};

static void *
lib_thread(void *arg)
{
	struct worker *w = arg;

	pthread_barrier_wait(w->start);
	w->t0 = now();
	for (uint64_t k = 0; k < w->n; k++) {
		uint64_t p = (k + (uint64_t)w->id * 17) % w->n;

		if (memfault_region_claim(w->r, p, 0) == MEMFAULT_CLAIM_FETCH) {
			__atomic_fetch_add(&w->fetches[p], 1, __ATOMIC_RELAXED);
			memfault_region_publish(w->r, p, 1);
		}
	}
	w->t1 = now();
	return NULL;
}

static void *
raw_thread(void *arg)
{
	struct worker *w = arg;

	pthread_barrier_wait(w->start);
	w->t0 = now();
	for (uint64_t k = 0; k < w->n; k++) {
		uint64_t p = (k + (uint64_t)w->id * 17) % w->n;

		if (raw_claim(w->b, p)) {
			__atomic_fetch_add(&w->fetches[p], 1, __ATOMIC_RELAXED);
			raw_publish(w->b, p);
		}
	}
	w->t1 = now();
	return NULL;
}

/* Context switches of the whole process so far (all its threads). */
static double
switches(bool voluntary)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru))
		return 0;
	return (double)(voluntary ? ru.ru_nvcsw : ru.ru_nivcsw);
}

/*
 * One trial of one side: ns per page; *once = all pages fetched once;
 * *sleeps += voluntary context switches (threads that blocked: futex
 * waits, or yields that found another thread to run).
 */
static double
trial(bool lib, int nthreads, uint64_t n, bool *once, double *sleeps)
{
	MEMFAULT_OPTS(memfault_region_opts, o,
		      .flags = MEMFAULT_REGION_MISSING |
			       MEMFAULT_REGION_NO_MEMSLOT);
	struct worker w[MAX_THREADS];
	struct memfault_region *r = NULL;
	struct raw_bitmap b = { NULL, NULL };
	unsigned *fetches = calloc(n, sizeof(*fetches));
	size_t words = (size_t)((n + BITS - 1) / BITS);
	pthread_barrier_t start;
	double t0 = 0, t1 = 0;

	if (!fetches)
		exit(1);
	if (lib) {
		if (memfault_region_new(vm, 0, 0, n * page_size, NULL, &o, &r))
			exit(1);
	} else {
		b.missing = calloc(words, sizeof(long));
		b.busy = calloc(words, sizeof(long));
		if (!b.missing || !b.busy)
			exit(1);
		for (uint64_t p = 0; p < n; p++)
			b.missing[p / BITS] |= 1ul << (p % BITS);
	}
	*sleeps -= switches(true);
	pthread_barrier_init(&start, NULL, (unsigned)nthreads + 1);
	for (int i = 0; i < nthreads; i++) {
		w[i] = (struct worker){ r, &b, n, fetches, i, &start, 0, 0, 0 };
		pthread_create(&w[i].t, NULL, lib ? lib_thread : raw_thread,
			       &w[i]);
	}
	pthread_barrier_wait(&start);
	/* wall time from the first thread's start to the last one's end
	 * (main may be descheduled after the barrier: 8 threads, 2 cores) */
	for (int i = 0; i < nthreads; i++) {
		pthread_join(w[i].t, NULL);
		if (!i || w[i].t0 < t0)
			t0 = w[i].t0;
		if (w[i].t1 > t1)
			t1 = w[i].t1;
	}
	pthread_barrier_destroy(&start);
	*sleeps += switches(true);
	for (uint64_t p = 0; p < n; p++)
		if (fetches[p] != 1)
			*once = false;
	free(fetches);
	free(b.missing);
	free(b.busy);
	memfault_region_free(r);
	return (t1 - t0) / (double)n;
}

int
main(int argc, char **argv)
{
	static const int threads[] = { 1, 2, 4, 8 };
	struct kvmsim_config cfg = { KVMSIM_X86_64, KVMSIM_LEVEL_7_2, 0 };
	uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 0) : 1u << 15;
	int trials = argc > 2 ? atoi(argv[2]) : 21;
	int kvm, vmfd;

	if (n < 64 || trials < 1 || trials > 99) {
		fprintf(stderr, "usage: %s [pages >= 64] [trials 1..99]\n",
			argv[0]);
		return 2;
	}
	page_size = (uint64_t)sysconf(_SC_PAGESIZE);
	cfg.quirks = kvmsim_default_quirks(cfg.arch, cfg.level);
	if (kvmsim_reset(&cfg))
		return 1;
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	vmfd = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vmfd < 0 || memfault_vm_new(vmfd, NULL, &vm))
		return 1;
	for (size_t ti = 0; ti < sizeof(threads) / sizeof(threads[0]); ti++) {
		double tl[99], tr[99], pr[99], ml, mr, mp, lo, hi;
		double lsw = 0, rsw = 0;
		bool lonce = true, ronce = true;

		for (int i = 0; i < trials; i++) {
			/* alternate which side goes first */
			if (i % 2) {
				tr[i] = trial(false, threads[ti], n, &ronce, &rsw);
				tl[i] = trial(true, threads[ti], n, &lonce, &lsw);
			} else {
				tl[i] = trial(true, threads[ti], n, &lonce, &lsw);
				tr[i] = trial(false, threads[ti], n, &ronce, &rsw);
			}
			pr[i] = tl[i] / tr[i];
		}
		ml = median(tl, trials);
		mr = median(tr, trials);
		mp = median(pr, trials);
		median_ci(pr, trials, &lo, &hi);
		printf("{\"benchmark\":\"claim_contention\",\"threads\":%d,"
		       "\"pages\":%llu,\"trials\":%d,\"baseline\":\"raw_atomics_spin_yield\","
		       "\"raw_ns_per_page\":%.1f,\"lib_ns_per_page\":%.1f,"
		       "\"ratio\":%.3f,\"ratio_ci95_lo\":%.3f,"
		       "\"ratio_ci95_hi\":%.3f,\"raw_exactly_once\":%s,"
		       "\"lib_exactly_once\":%s,"
		       "\"raw_blocking_switches_per_page\":%.4f,"
		       "\"lib_blocking_switches_per_page\":%.4f}\n",
		       threads[ti], (unsigned long long)n, trials, mr, ml,
		       mp, lo, hi, ronce ? "true" : "false",
		       lonce ? "true" : "false",
		       rsw / trials / (double)n, lsw / trials / (double)n);
		fflush(stdout);
	}
	memfault_vm_free(vm);
	return 0;
}
