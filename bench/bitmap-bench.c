/* SPDX-License-Identifier: MIT */
/*
 * Userfault bitmap benchmarks, each against its obvious baseline in the
 * same run, interleaved, as medians of repeated trials. Prints one JSON
 * object per line; "ratio" is baseline_time / library_time (1.0 = as fast
 * as the baseline, higher is better).
 *
 *   bitmap-bench [pages]        default 2^24 pages (a 64 GiB region)
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "bench-stats.h"
#include "kvmsim.h"
#include "memfault/memfault.h"

#define TRIALS 15

static volatile uint64_t sink;
static struct memfault_vm *vm;
static uint64_t page;

static struct memfault_region *
region(uint64_t npages, uint64_t flags)
{
	MEMFAULT_OPTS(memfault_region_opts, o,
		      .flags = flags | MEMFAULT_REGION_NO_MEMSLOT);
	struct memfault_region *r;

	if (memfault_region_new(vm, 0, 0, npages * page, NULL, &o, &r))
		exit(1);
	return r;
}

static void
report(const char *name, const char *baseline, double base_ns,
       double lib_ns, uint64_t units, const char *unit)
{
	printf("{\"benchmark\":\"%s\",\"baseline\":\"%s\",\"%s\":%llu,"
	       "\"baseline_ns\":%.0f,\"lib_ns\":%.0f,\"ratio\":%.3f}\n",
	       name, baseline, unit, (unsigned long long)units, base_ns, lib_ns,
	       base_ns / lib_ns);
	fflush(stdout);
}

static void
bench_ranges(uint64_t n)
{
	struct memfault_region *r = region(n, 0);
	struct memfault_region_info info;
	size_t bytes = (size_t)(n / 8);
	double tb[TRIALS], tp[TRIALS], tm[TRIALS], t;
	unsigned char *plain = malloc(bytes);

	memfault_region_get_info(r, &info, sizeof(info));
	memset(plain, 0, bytes);
	memfault_region_mark_missing(r, 0, n);
	for (int i = 0; i < TRIALS; i++) {
		t = now();
		memset(plain, i & 1 ? 0 : 0xff, bytes);
		__asm__ __volatile__("" ::: "memory");
		tb[i] = now() - t;
		t = now();
		memfault_region_publish(r, 0, n);
		tp[i] = now() - t;
		t = now();
		memfault_region_mark_missing(r, 0, n);
		tm[i] = now() - t;
	}
	report("range_publish", "memset", median(tb, TRIALS),
	       median(tp, TRIALS), bytes, "bytes");
	report("range_mark_missing", "memset", median(tb, TRIALS),
	       median(tm, TRIALS), bytes, "bytes");
	free(plain);
	memfault_region_free(r);
}

static void
bench_find(uint64_t n)
{
	struct memfault_region *r = region(n, 0);
	struct memfault_region_info info;
	const unsigned long *bm;
	double tb[TRIALS], tw[TRIALS], tl[TRIALS], t;
	uint64_t p = 0;

	memfault_region_get_info(r, &info, sizeof(info));
	bm = (const unsigned long *)(uintptr_t)info.bitmap;
	/* only the last page missing: a scan over the whole bitmap */
	memfault_region_mark_missing(r, n - 1, 1);
	for (int i = 0; i < TRIALS; i++) {
		const unsigned char *c;
		size_t w, nw = (size_t)(n / (8 * sizeof(long)));

		t = now();
		c = memchr(bm, 0x80, (size_t)(n / 8));
		tb[i] = now() - t;
		sink += (uint64_t)(uintptr_t)c;
		t = now();
		for (w = 0; w < nw && !bm[w]; w++)
			;
		tw[i] = now() - t;
		sink += w;
		t = now();
		memfault_region_find_missing(r, 0, &p);
		tl[i] = now() - t;
		sink += p;
	}
	report("find_missing", "memchr", median(tb, TRIALS), median(tl, TRIALS),
	       n / 8, "bytes");
	report("find_missing", "word_scan", median(tw, TRIALS),
	       median(tl, TRIALS), n / 8, "bytes");
	memfault_region_free(r);
}

static void
bench_single(void)
{
	const uint64_t n = 1u << 16;
	struct memfault_region *r = region(n, MEMFAULT_REGION_MISSING);
	static unsigned long raw[(1u << 16) / (8 * sizeof(long))];
	double tb[TRIALS], tl[TRIALS], t;

	for (int i = 0; i < TRIALS; i++) {
		memset(raw, 0xff, sizeof(raw));
		memfault_region_mark_missing(r, 0, n);
		t = now();
		for (uint64_t p = 0; p < n; p++)
			__atomic_fetch_and(&raw[p / (8 * sizeof(long))],
					   ~(1ul << (p % (8 * sizeof(long)))),
					   __ATOMIC_RELEASE);
		tb[i] = now() - t;
		t = now();
		for (uint64_t p = 0; p < n; p++)
			memfault_region_publish(r, p, 1);
		tl[i] = now() - t;
	}
	report("single_page_publish", "atomic_fetch_and_release",
	       median(tb, TRIALS), median(tl, TRIALS), n, "pages");
	memfault_region_free(r);
}

struct contend {
	struct memfault_region *r;
	uint64_t n;
	unsigned *fetches;
	int id;
};

static void *
contend_thread(void *arg)
{
	struct contend *c = arg;

	for (uint64_t k = 0; k < c->n; k++) {
		uint64_t p = (k + (uint64_t)c->id * 17) % c->n;

		if (memfault_region_claim(c->r, p, 0) == MEMFAULT_CLAIM_FETCH) {
			__atomic_fetch_add(&c->fetches[p], 1, __ATOMIC_RELAXED);
			memfault_region_publish(c->r, p, 1);
		}
	}
	return NULL;
}

static void
bench_contention(void)
{
	const uint64_t n = 1u << 15;
	static const int threads[] = { 1, 2, 4, 8 };

	for (size_t ti = 0; ti < 4; ti++) {
		struct contend c[8];
		pthread_t t[8];
		unsigned *fetches = calloc(n, sizeof(*fetches));
		struct memfault_region *r = region(n, MEMFAULT_REGION_MISSING);
		uint64_t once = 0;
		double t0 = now(), dt;

		for (int i = 0; i < threads[ti]; i++) {
			c[i] = (struct contend){ r, n, fetches, i };
			pthread_create(&t[i], NULL, contend_thread, &c[i]);
		}
		for (int i = 0; i < threads[ti]; i++)
			pthread_join(t[i], NULL);
		dt = now() - t0;
		for (uint64_t p = 0; p < n; p++)
			once += fetches[p] == 1;
		printf("{\"benchmark\":\"claim_contention\",\"threads\":%d,"
		       "\"pages\":%llu,\"ns_per_page\":%.1f,"
		       "\"pages_fetched_exactly_once\":%llu}\n",
		       threads[ti], (unsigned long long)n, dt / (double)n,
		       (unsigned long long)once);
		free(fetches);
		memfault_region_free(r);
	}
}

int
main(int argc, char **argv)
{
	uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 0) : 1ull << 24;
	int kvm, vmfd;

	page = (uint64_t)sysconf(_SC_PAGESIZE);
	kvmsim_reset(NULL);
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	vmfd = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vmfd < 0 || memfault_vm_new(vmfd, NULL, &vm))
		return 1;
	bench_ranges(n);
	bench_find(n);
	bench_single();
	bench_contention();
	memfault_vm_free(vm);
	return 0;
}
