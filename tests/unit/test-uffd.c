/* SPDX-License-Identifier: MIT */
/*
 * userfaultfd backend on the real kernel: host threads faulting on
 * anonymous (MISSING) and memfd (MINOR) regions with the service thread
 * and with VMM-driven polling, shutdown with faults in flight, page-in
 * failures, bad arguments, per-vCPU attribution, and the combined mode on
 * the simulator's "7.2 + KVM Userfault v3" model: KVM Userfault exits and
 * userfaultfd faults on the same region, every page fetched exactly once.
 *
 * Exits 77 (skip) where userfaultfd is not permitted or not implemented
 * (unprivileged with vm.unprivileged_userfaultfd=0, qemu-user).
 */
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>

#include <linux/userfaultfd.h>

#include "sim-env.h"
#include "test-common.h"

#define NPAGES 256
#define TOUCHES 192
#define CPAGES 64 /* combined mode: pages per region */
#define CVCPUS 4
#define CHOSTS 4
#define PARTIAL_BYTES 16

enum run_mode { MODE_THREAD, MODE_POLL };

struct fx {
	struct sim_env e;
	struct memfault_region *r;
	struct memfault_uffd *u;
	char *mem, *alias;
	int memfd;
	uint32_t mode; /* MEMFAULT_UFFD_MISSING or _MINOR */
	size_t npages, ps;
	unsigned fetches[NPAGES]; /* atomic: successful page_in() calls */
	unsigned by_vcpu, by_host; /* atomic */
	unsigned bad_hva;          /* atomic: page_in() got a wrong buffer */
	struct memfault_vcpu *seen_vcpu[NPAGES];
	/* failure injection: page_in() of @fail_page returns @fail_ret,
	 * @fail_left times */
	uint64_t fail_page;
	int fail_ret;
	int fail_left; /* atomic */
	/* page_in() of @partial_page writes its first PARTIAL_BYTES only */
	uint64_t partial_page;
	int slow_us;
	/* hold a page_in() from a vCPU until released */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int hold_vcpu, holding;
	/* the VMM's poller */
	pthread_t poller;
	int stop_poll; /* atomic */
	unsigned poll_errors; /* atomic */
	/* log() */
	char log[2048];
	int log_errors;
};

static struct fx F;

/* Counters the serving threads write: the test learns of their writes
 * through the kernel (a fault resolved), which TSan does not see. */
#define LD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

/* ---- deterministic page contents ---- */

static uint64_t
pattern_word(uint64_t page, size_t i)
{
	return page * 0x9E3779B97F4A7C15ull + i * 0xBF58476D1CE4E5B9ull + 1;
}

static void
fill_page(void *dst, uint64_t page, size_t ps)
{
	uint64_t *w = dst;

	for (size_t i = 0; i < ps / 8; i++)
		w[i] = pattern_word(page, i);
}

/* 1 if the page holds its pattern, every byte. */
static int
page_ok(const void *src, uint64_t page, size_t ps)
{
	const volatile uint64_t *w = src;

	for (size_t i = 0; i < ps / 8; i++)
		if (w[i] != pattern_word(page, i))
			return 0;
	return 1;
}

static int
page_zero(const void *src, size_t ps)
{
	const volatile uint64_t *w = src;

	for (size_t i = 0; i < ps / 8; i++)
		if (w[i])
			return 0;
	return 1;
}

/* ---- handlers ---- */

static int
page_in(void *user, struct memfault_vcpu *vcpu, struct memfault_region *r,
	uint64_t page, void *hva, uint64_t page_size)
{
	struct fx *f = user;
	char *h = hva;

	(void)r;
	if (f->mode == MEMFAULT_UFFD_MINOR) {
		if (h != f->alias + page * f->ps)
			__atomic_fetch_add(&f->bad_hva, 1, __ATOMIC_RELAXED);
	} else if (h >= f->mem && h < f->mem + f->npages * f->ps) {
		/* MISSING: a bounce buffer, never the trapped mapping */
		__atomic_fetch_add(&f->bad_hva, 1, __ATOMIC_RELAXED);
	}
	if (vcpu && f->hold_vcpu) {
		pthread_mutex_lock(&f->lock);
		f->holding = 1;
		pthread_cond_broadcast(&f->cond);
		while (f->hold_vcpu)
			pthread_cond_wait(&f->cond, &f->lock);
		pthread_mutex_unlock(&f->lock);
	}
	if (f->slow_us)
		usleep((useconds_t)f->slow_us);
	if (page == f->fail_page &&
	    __atomic_fetch_sub(&f->fail_left, 1, __ATOMIC_RELAXED) > 0)
		return f->fail_ret;
	if (page == f->partial_page)
		memset(hva, 0x11, PARTIAL_BYTES);
	else
		fill_page(hva, page, page_size);
	/* atomic: the reader learns of it through the kernel's wake-up,
	 * which TSan does not see */
	__atomic_store_n(&f->seen_vcpu[page], vcpu, __ATOMIC_RELAXED);
	__atomic_fetch_add(&f->fetches[page], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(vcpu ? &f->by_vcpu : &f->by_host, 1,
			   __ATOMIC_RELAXED);
	return MEMFAULT_RESOLVED;
}

static void
on_log(void *user, int level, const char *msg)
{
	struct fx *f = user;
	size_t n;

	pthread_mutex_lock(&f->lock);
	n = strlen(f->log);
	snprintf(f->log + n, sizeof(f->log) - n, "%d:%s\n", level, msg);
	if (level <= 3)
		f->log_errors++;
	pthread_mutex_unlock(&f->lock);
}

/* ---- setup ---- */

static void
fx_open(struct fx *f, uint32_t arch, uint32_t level)
{
	MEMFAULT_OPTS(memfault_handlers, h, .user = f, .page_in = page_in,
		      .log = on_log);

	memset(f, 0, sizeof(*f));
	f->memfd = -1;
	f->fail_page = UINT64_MAX;
	f->partial_page = UINT64_MAX;
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	sim_env_open(&f->e, arch, level);
	f->ps = (size_t)f->e.page;
	ck_assert_int_eq(memfault_vm_set_handlers(f->e.vm, &h), 0);
}

/*
 * Memory for @npages pages: anonymous (MISSING), a memfd mapped twice
 * (MINOR), or with @shared a memfd in MISSING mode too.
 */
static void
fx_memory_shared(struct fx *f, uint32_t mode, size_t npages, bool shared)
{
	size_t size = npages * f->ps;

	f->mode = mode;
	f->npages = npages;
	if (mode == MEMFAULT_UFFD_MISSING && !shared) {
		f->mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		ck_assert_ptr_ne(f->mem, MAP_FAILED);
		return;
	}
	f->memfd = memfd_create("test-uffd", MFD_CLOEXEC);
	ck_assert_int_ge(f->memfd, 0);
	ck_assert_int_eq(ftruncate(f->memfd, (off_t)size), 0);
	f->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      f->memfd, 0);
	ck_assert_ptr_ne(f->mem, MAP_FAILED);
	if (mode == MEMFAULT_UFFD_MISSING)
		return;
	f->alias = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED,
			f->memfd, 0);
	ck_assert_ptr_ne(f->alias, MAP_FAILED);
}

static void
fx_memory(struct fx *f, uint32_t mode, size_t npages)
{
	fx_memory_shared(f, mode, npages, false);
}

/* A bitmap-only region over the memory, every page missing. */
static void
fx_region(struct fx *f, uint64_t region_flags, uint32_t slot)
{
	MEMFAULT_OPTS(memfault_region_opts, o,
		      .flags = MEMFAULT_REGION_MISSING | region_flags);

	ck_assert_int_eq(memfault_region_new(f->e.vm, slot, RAM_GPA,
					     f->npages * f->ps, f->mem, &o,
					     &f->r), 0);
}

static void *
poller_main(void *arg)
{
	struct fx *f = arg;
	struct pollfd p = { .fd = memfault_uffd_get_fd(f->u), .events = POLLIN };

	while (!__atomic_load_n(&f->stop_poll, __ATOMIC_ACQUIRE)) {
		if (poll(&p, 1, 5) > 0 && memfault_uffd_service(f->u, 8) < 0)
			__atomic_fetch_add(&f->poll_errors, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void
fx_uffd(struct fx *f, enum run_mode run)
{
	MEMFAULT_OPTS(memfault_uffd_opts, o,
		      .flags = run == MODE_THREAD ? MEMFAULT_UFFD_SERVICE_THREAD
						  : 0);

	ck_assert_int_eq(memfault_uffd_new(f->e.vm, &o, &f->u), 0);
	ck_assert_int_eq(memfault_uffd_register(f->u, f->r, f->mode,
						f->mode == MEMFAULT_UFFD_MINOR ?
							f->alias :
							NULL),
			 0);
}

static void
fx_start_poller(struct fx *f)
{
	f->stop_poll = 0;
	ck_assert_int_eq(pthread_create(&f->poller, NULL, poller_main, f), 0);
}

static void
fx_stop_poller(struct fx *f)
{
	__atomic_store_n(&f->stop_poll, 1, __ATOMIC_RELEASE);
	pthread_join(f->poller, NULL);
	ck_assert_uint_eq(f->poll_errors, 0);
}

static void
fx_close(struct fx *f)
{
	size_t size = f->npages * f->ps;

	memfault_uffd_free(f->u);
	memfault_region_free(f->r);
	if (f->mem)
		munmap(f->mem, size);
	if (f->alias)
		munmap(f->alias, size);
	if (f->memfd >= 0)
		close(f->memfd);
	sim_env_close(&f->e);
}

/* ---- host threads ---- */

struct toucher {
	struct fx *f;
	unsigned seed;
	int n;
	int bad;
	int done; /* atomic */
	pthread_t t;
};

static void *
touch_random(void *arg)
{
	struct toucher *t = arg;
	struct fx *f = t->f;

	for (int k = 0; k < t->n; k++) {
		uint64_t page = (uint64_t)rand_r(&t->seed) % f->npages;

		if (!page_ok(f->mem + page * f->ps, page, f->ps))
			t->bad++;
	}
	__atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * The install wakes the faulting thread before the serving thread
 * publishes the page and counts the fault: wait for the serving threads
 * to finish the faults already resolved (the histogram is counted last).
 */
static void
settle(struct fx *f)
{
	for (int i = 0; i < 5000; i++) {
		struct memfault_uffd_stats s;
		uint64_t sum = 0;

		ck_assert_int_eq(memfault_uffd_get_stats(f->u, &s, sizeof(s)),
				 0);
		for (int b = 0; b < MEMFAULT_UFFD_LATENCY_BUCKETS; b++)
			sum += s.latency[b];
		if (sum == s.faults)
			return;
		usleep(1000);
	}
	ck_abort_msg("faults still being served after 5 s");
}

static void
stats_settled(struct fx *f, struct memfault_uffd_stats *s)
{
	settle(f);
	ck_assert_int_eq(memfault_uffd_get_stats(f->u, s, sizeof(*s)), 0);
}

static void
check_all_pages_once(struct fx *f)
{
	uint64_t missing;

	/* the main thread touches every page: faults for the untouched */
	for (size_t p = 0; p < f->npages; p++) {
		ck_assert_msg(page_ok(f->mem + p * f->ps, p, f->ps),
			      "page %zu has wrong contents", p);
		ck_assert_msg(LD(f->fetches[p]) == 1,
			      "page %zu fetched %u times", p,
			      LD(f->fetches[p]));
	}
	settle(f);
	ck_assert_int_eq(memfault_region_count_missing(f->r, &missing), 0);
	ck_assert_uint_eq(missing, 0);
	ck_assert_uint_eq(LD(f->bad_hva), 0);
}

/* 1, 4, 8 threads x service thread / VMM polling */
static const int nthreads[] = { 1, 4, 8 };

static void
many_threads(uint32_t mode, int i)
{
	struct memfault_uffd_stats s;
	enum run_mode run = i % 2 ? MODE_POLL : MODE_THREAD;
	int n = nthreads[i / 2];
	struct toucher t[8];
	uint64_t hsum = 0;

	fx_open(&F, KVMSIM_X86_64, KVMSIM_LEVEL_7_2);
	fx_memory(&F, mode, NPAGES);
	fx_region(&F, MEMFAULT_REGION_NO_MEMSLOT, 0);
	fx_uffd(&F, run);
	if (run == MODE_POLL)
		fx_start_poller(&F);
	for (int k = 0; k < n; k++) {
		t[k] = (struct toucher){ .f = &F, .seed = 17u * (unsigned)k + 1,
					 .n = TOUCHES };
		ck_assert_int_eq(pthread_create(&t[k].t, NULL, touch_random,
						&t[k]), 0);
	}
	for (int k = 0; k < n; k++) {
		pthread_join(t[k].t, NULL);
		ck_assert_int_eq(t[k].bad, 0);
	}
	check_all_pages_once(&F);
	if (run == MODE_POLL)
		fx_stop_poller(&F);

	stats_settled(&F, &s);
	ck_assert_uint_eq(s.page_ins, NPAGES);
	ck_assert_uint_eq(s.kvm_page_ins, 0);
	ck_assert_uint_eq(s.errors, 0);
	ck_assert_uint_eq(s.unknown, 0);
	ck_assert_int_eq(s.last_error, 0);
	ck_assert_uint_ge(s.faults, NPAGES);
	ck_assert_uint_eq(s.faults, s.page_ins + s.waits);
	ck_assert(s.features & UFFD_FEATURE_THREAD_ID);
	for (int b = 0; b < MEMFAULT_UFFD_LATENCY_BUCKETS; b++)
		hsum += s.latency[b];
	ck_assert_uint_eq(hsum, s.faults);
	ck_assert_uint_gt(s.latency_p50_ns, 0);
	ck_assert_uint_le(s.latency_p50_ns, s.latency_p99_ns);
	ck_assert_uint_le(s.latency_p99_ns, s.latency_max_ns);
	ck_assert_uint_eq(LD(F.by_vcpu), 0);
	ck_assert_int_eq(F.log_errors, 0);
	fx_close(&F);
}

START_TEST(missing_threads)
{
	many_threads(MEMFAULT_UFFD_MISSING, _i);
}
END_TEST

START_TEST(minor_threads)
{
	many_threads(MEMFAULT_UFFD_MINOR, _i);
}
END_TEST

/* Pages marked missing again are unmapped and fetched again, once:
 * anonymous MISSING, memfd MINOR, memfd MISSING (page cache dropped). */
START_TEST(mark_missing_refetches)
{
	uint32_t mode = _i == 1 ? MEMFAULT_UFFD_MINOR : MEMFAULT_UFFD_MISSING;

	fx_open(&F, KVMSIM_X86_64, KVMSIM_LEVEL_7_2);
	fx_memory_shared(&F, mode, 16, _i == 2);
	fx_region(&F, MEMFAULT_REGION_NO_MEMSLOT, 0);
	fx_uffd(&F, MODE_THREAD);
	check_all_pages_once(&F);
	ck_assert_int_eq(memfault_region_mark_missing(F.r, 4, 8), 0);
	for (size_t p = 0; p < 16; p++) {
		ck_assert(page_ok(F.mem + p * F.ps, p, F.ps));
		ck_assert_uint_eq(LD(F.fetches[p]), p >= 4 && p < 12 ? 2 : 1);
	}
	fx_close(&F);
}
END_TEST

/*
 * Issue 17 defect 2: in MISSING mode page_in() fills a bounce buffer that
 * an earlier page-in used. A handler that writes part of the page and
 * says RESOLVED installs zeros in the rest, never the previous page's
 * bytes (slot 0 serves one page-in after another here: one thread).
 */
START_TEST(partial_page_in_installs_zeros)
{
	const unsigned char *p;

	fx_open(&F, KVMSIM_X86_64, KVMSIM_LEVEL_7_2);
	fx_memory(&F, MEMFAULT_UFFD_MISSING, 4);
	fx_region(&F, MEMFAULT_REGION_NO_MEMSLOT, 0);
	F.partial_page = 1; /* before the service thread starts */
	fx_uffd(&F, MODE_THREAD);
	ck_assert(page_ok(F.mem, 0, F.ps)); /* fetched whole, nonzero */
	p = (const unsigned char *)F.mem + F.ps;
	ck_assert_uint_eq(p[0], 0x11);
	ck_assert_uint_eq(p[PARTIAL_BYTES - 1], 0x11);
	for (size_t i = PARTIAL_BYTES; i < F.ps; i++)
		ck_assert_msg(!p[i], "byte %zu of the partly filled page is "
			      "%#x: another page's data", i, p[i]);
	/* and again after a refetch of both, in the other order */
	ck_assert_int_eq(memfault_region_mark_missing(F.r, 0, 2), 0);
	ck_assert_uint_eq(p[0], 0x11);
	ck_assert(page_zero(p + PARTIAL_BYTES, F.ps - PARTIAL_BYTES));
	ck_assert(page_ok(F.mem, 0, F.ps));
	ck_assert_uint_eq(LD(F.fetches[1]), 2);
	fx_close(&F);
}
END_TEST

/* Present pages that were unmapped are mapped again without a fetch. */
START_TEST(present_pages_are_not_fetched)
{
	uint32_t mode = _i ? MEMFAULT_UFFD_MINOR : MEMFAULT_UFFD_MISSING;
	struct memfault_uffd_stats s;

	fx_open(&F, KVMSIM_X86_64, KVMSIM_LEVEL_7_2);
	fx_memory(&F, mode, 8);
	fx_region(&F, MEMFAULT_REGION_NO_MEMSLOT, 0);
	fx_uffd(&F, MODE_THREAD);
	check_all_pages_once(&F);
	/* behind the library's back: the bitmap still says present */
	ck_assert_int_eq(madvise(F.mem, 8 * F.ps, MADV_DONTNEED), 0);
	for (size_t p = 0; p < 8; p++) {
		if (mode == MEMFAULT_UFFD_MINOR)
			ck_assert(page_ok(F.mem + p * F.ps, p, F.ps));
		else /* anonymous memory that was dropped reads as zeros */
			ck_assert(page_zero(F.mem + p * F.ps, F.ps));
		ck_assert_uint_eq(LD(F.fetches[p]), 1);
	}
	stats_settled(&F, &s);
	ck_assert_uint_eq(s.page_ins, 8);
	ck_assert_uint_eq(s.waits, 8);
	fx_close(&F);
}
END_TEST

/*
 * Shutdown while threads are blocked in faults nobody serves (VMM polling
 * mode, no poller): memfault_uffd_free() must let every one of them
 * finish. Pages resolved hold their pattern; the others stay missing.
 */
START_TEST(shutdown_with_blocked_faults)
{
	struct toucher t[8];
	uint64_t first[8];

	fx_open(&F, KVMSIM_X86_64, KVMSIM_LEVEL_7_2);
	fx_memory(&F, _i ? MEMFAULT_UFFD_MINOR : MEMFAULT_UFFD_MISSING,
		  NPAGES);
	fx_region(&F, MEMFAULT_REGION_NO_MEMSLOT, 0);
	fx_uffd(&F, MODE_POLL);
	for (int k = 0; k < 8; k++) {
		unsigned seed = 5u * (unsigned)k + 3;

		first[k] = (uint64_t)rand_r(&seed) % F.npages;
		t[k] = (struct toucher){ .f = &F, .seed = 5u * (unsigned)k + 3,
					 .n = 32 };
		ck_assert_int_eq(pthread_create(&t[k].t, NULL, touch_random,
						&t[k]), 0);
	}
	usleep(100 * 1000);
	for (int k = 0; k < 8; k++)
		ck_assert_int_eq(__atomic_load_n(&t[k].done, __ATOMIC_ACQUIRE),
				 0);
	memfault_uffd_free(F.u);
	F.u = NULL;
	for (int k = 0; k < 8; k++)
		pthread_join(t[k].t, NULL);
	for (size_t p = 0; p < F.npages; p++) {
		int miss = memfault_region_is_missing(F.r, p);

		ck_assert_uint_le(LD(F.fetches[p]), 1);
		ck_assert_int_eq(miss, !LD(F.fetches[p]));
		if (!miss)
			ck_assert(page_ok(F.mem + p * F.ps, p, F.ps));
		else /* never filled: what the memory holds without us */
			ck_assert(page_zero(F.mem + p * F.ps, F.ps));
	}
	/* the faults that were queued were resolved, not dropped */
	for (int k = 0; k < 8; k++)
		ck_assert_int_eq(memfault_region_is_missing(F.r, first[k]), 0);
	fx_close(&F);
}
END_TEST

/* The same with the service thread and slow page-ins in flight. */
START_TEST(shutdown_while_serving)
{
	struct toucher t[8];

	fx_open(&F, KVMSIM_X86_64, KVMSIM_LEVEL_7_2);
	fx_memory(&F, _i ? MEMFAULT_UFFD_MINOR : MEMFAULT_UFFD_MISSING,
		  NPAGES);
	fx_region(&F, MEMFAULT_REGION_NO_MEMSLOT, 0);
	F.slow_us = 500;
	fx_uffd(&F, MODE_THREAD);
	for (int k = 0; k < 8; k++) {
		t[k] = (struct toucher){ .f = &F, .seed = 7u * (unsigned)k + 1,
					 .n = 64 };
		ck_assert_int_eq(pthread_create(&t[k].t, NULL, touch_random,
						&t[k]), 0);
	}
	usleep(20 * 1000);
	memfault_uffd_free(F.u);
	F.u = NULL;
	for (int k = 0; k < 8; k++)
		pthread_join(t[k].t, NULL);
	for (size_t p = 0; p < F.npages; p++) {
		ck_assert_uint_le(LD(F.fetches[p]), 1);
		if (LD(F.fetches[p]))
			ck_assert(page_ok(F.mem + p * F.ps, p, F.ps));
	}
	fx_close(&F);
}
END_TEST

/* Wait until @n faults found their page busy or present. */
static void
wait_for_waits(struct fx *f, uint64_t n)
{
	struct memfault_uffd_stats s;

	for (int i = 0; i < 5000; i++) {
		ck_assert_int_eq(memfault_uffd_get_stats(f->u, &s, sizeof(s)),
				 0);
		if (s.waits >= n)
			return;
		usleep(1000);
	}
	ck_abort_msg("no fault waited");
}

static void *
touch_page(void *arg)
{
	struct toucher *t = arg;
	uint64_t page = t->seed;

	if (t->n ? !page_ok(t->f->mem + page * t->f->ps, page, t->f->ps) :
		   !page_zero(t->f->mem + page * t->f->ps, t->f->ps))
		t->bad++;
	__atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * A VMM prefetcher claims pages itself while host threads fault on them:
 * its publish (MINOR: after writing through the alias; MISSING: a page
 * that is zero) and its abort wake them, and nothing hangs.
 */
START_TEST(vmm_prefetcher_wakes_waiters)
{
	uint32_t mode = _i ? MEMFAULT_UFFD_MINOR : MEMFAULT_UFFD_MISSING;
	struct toucher t;

	fx_open(&F, KVMSIM_X86_64, KVMSIM_LEVEL_7_2);
	fx_memory(&F, mode, 4);
	fx_region(&F, MEMFAULT_REGION_NO_MEMSLOT, 0);
	fx_uffd(&F, _i ? MODE_THREAD : MODE_POLL);
	if (!_i)
		fx_start_poller(&F);

	/* publish */
	ck_assert_int_eq(memfault_region_claim(F.r, 0, MEMFAULT_CLAIM_NOWAIT),
			 MEMFAULT_CLAIM_FETCH);
	t = (struct toucher){ .f = &F, .seed = 0, .n = mode ==
						   MEMFAULT_UFFD_MINOR };
	ck_assert_int_eq(pthread_create(&t.t, NULL, touch_page, &t), 0);
	wait_for_waits(&F, 1);
	ck_assert_int_eq(__atomic_load_n(&t.done, __ATOMIC_ACQUIRE), 0);
	if (mode == MEMFAULT_UFFD_MINOR)
		fill_page(F.alias, 0, F.ps);
	ck_assert_int_eq(memfault_region_publish(F.r, 0, 1), 0);
	pthread_join(t.t, NULL);
	ck_assert_int_eq(t.bad, 0);
	ck_assert_uint_eq(LD(F.fetches[0]), 0);

	/* abort: the woken thread fetches the page itself */
	ck_assert_int_eq(memfault_region_claim(F.r, 1, MEMFAULT_CLAIM_NOWAIT),
			 MEMFAULT_CLAIM_FETCH);
	t = (struct toucher){ .f = &F, .seed = 1, .n = 1 };
	ck_assert_int_eq(pthread_create(&t.t, NULL, touch_page, &t), 0);
	wait_for_waits(&F, 2);
	ck_assert_int_eq(__atomic_load_n(&t.done, __ATOMIC_ACQUIRE), 0);
	ck_assert_int_eq(memfault_region_abort(F.r, 1), 0);
	pthread_join(t.t, NULL);
	ck_assert_int_eq(t.bad, 0);
	ck_assert_uint_eq(LD(F.fetches[1]), 1);
	if (!_i)
		fx_stop_poller(&F);
	fx_close(&F);
}
END_TEST

/* ---- failures ---- */

static __thread sigjmp_buf bus_jmp;
static __thread volatile int bus_armed;
static __thread void *volatile bus_addr;

static void
on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if (!bus_armed)
		abort();
	bus_armed = 0;
	bus_addr = si->si_addr;
	siglongjmp(bus_jmp, 1);
}

struct bus_toucher {
	const char *addr;
	int sigbus; /* 1: SIGBUS, 0: read fine */
	void *fault_addr;
	pid_t tid;
	pthread_t t;
};

static void *
touch_expect_bus(void *arg)
{
	struct bus_toucher *b = arg;

	b->tid = (pid_t)syscall(SYS_gettid);
	if (sigsetjmp(bus_jmp, 1) == 0) {
		bus_armed = 1;
		(void)*(const volatile char *)b->addr;
		bus_armed = 0;
		b->sigbus = 0;
	} else {
		b->sigbus = 1;
		b->fault_addr = bus_addr;
	}
	return NULL;
}

static struct bus_toucher
touch_in_thread(const char *addr)
{
	struct bus_toucher b = { .addr = addr };

	ck_assert_int_eq(pthread_create(&b.t, NULL, touch_expect_bus, &b), 0);
	pthread_join(b.t, NULL);
	return b;
}

/*
 * page_in() fails: the faulting thread gets SIGBUS at the page, the failure
 * is recorded with address, gpa, errno and thread, the page stays missing,
 * and nothing is retried; marking the page missing again clears it.
 */
START_TEST(page_in_failure)
{
	uint32_t mode = _i % 2 ? MEMFAULT_UFFD_MINOR : MEMFAULT_UFFD_MISSING;
	static const int rets[] = { -EIO, MEMFAULT_TO_VMM, 7 };
	static const int expect[] = { -EIO, -EOPNOTSUPP, -EPROTO };
	int k = _i / 2;
	struct sigaction sa;
	struct memfault_uffd_stats s;
	struct bus_toucher b;
	char *bad;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO;
	ck_assert_int_eq(sigaction(SIGBUS, &sa, NULL), 0);

	fx_open(&F, KVMSIM_X86_64, KVMSIM_LEVEL_7_2);
	fx_memory(&F, mode, 16);
	fx_region(&F, MEMFAULT_REGION_NO_MEMSLOT, 0);
	F.fail_page = 5;
	F.fail_ret = rets[k];
	F.fail_left = 1;
	fx_uffd(&F, MODE_THREAD);
	bad = F.mem + 5 * F.ps;

	b = touch_in_thread(bad + 100);
	ck_assert_int_eq(b.sigbus, 1);
	ck_assert_ptr_eq((char *)b.fault_addr, bad + 100);
	ck_assert_int_eq(memfault_region_is_missing(F.r, 5), 1);
	ck_assert_uint_eq(LD(F.fetches[5]), 0);
	stats_settled(&F, &s);
	ck_assert_uint_eq(s.errors, 1);
	ck_assert_int_eq(s.last_error, expect[k]);
	ck_assert_uint_eq(s.last_error_addr, (uintptr_t)bad);
	ck_assert_uint_eq(s.last_error_gpa, RAM_GPA + 5 * F.ps);
	ck_assert_uint_eq(s.last_error_tid, (uint32_t)b.tid);
	pthread_mutex_lock(&F.lock);
	ck_assert_int_ge(F.log_errors, 1);
	ck_assert_ptr_nonnull(strstr(F.log, "failed"));
	pthread_mutex_unlock(&F.lock);

	/* not retried: the page stays poisoned, no second page_in() */
	b = touch_in_thread(bad);
	ck_assert_int_eq(b.sigbus, 1);
	stats_settled(&F, &s);
	ck_assert_uint_eq(s.errors, 1);

	/* the other pages are served as usual */
	for (size_t p = 0; p < 16; p++)
		if (p != 5)
			ck_assert(page_ok(F.mem + p * F.ps, p, F.ps));

	/* marking it missing again unmaps the poison: fetched next time */
	ck_assert_int_eq(memfault_region_mark_missing(F.r, 5, 1), 0);
	b = touch_in_thread(bad);
	ck_assert_int_eq(b.sigbus, 0);
	ck_assert(page_ok(bad, 5, F.ps));
	ck_assert_uint_eq(LD(F.fetches[5]), 1);
	settle(&F);
	ck_assert_int_eq(memfault_region_is_missing(F.r, 5), 0);
	fx_close(&F);
}
END_TEST

/* No page_in() handler: failure, not a hang. */
START_TEST(no_handler_is_a_failure)
{
	struct sigaction sa;
	struct memfault_uffd_stats s;
	struct bus_toucher b;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO;
	ck_assert_int_eq(sigaction(SIGBUS, &sa, NULL), 0);
	fx_open(&F, KVMSIM_X86_64, KVMSIM_LEVEL_7_2);
	ck_assert_int_eq(memfault_vm_set_handlers(F.e.vm, NULL), 0);
	fx_memory(&F, MEMFAULT_UFFD_MISSING, 4);
	fx_region(&F, MEMFAULT_REGION_NO_MEMSLOT, 0);
	fx_uffd(&F, MODE_THREAD);
	b = touch_in_thread(F.mem);
	ck_assert_int_eq(b.sigbus, 1);
	stats_settled(&F, &s);
	ck_assert_int_eq(s.last_error, -EOPNOTSUPP);
	fx_close(&F);
}
END_TEST

/* ---- arguments ---- */

START_TEST(bad_arguments)
{
	struct memfault_uffd_stats s;
	struct memfault_region *r2, *nohva;
	struct memfault_uffd *u = (struct memfault_uffd *)&s;
	MEMFAULT_OPTS(memfault_vm_opts, vo, .arch = KVMSIM_X86_64);
	struct memfault_vm *ovm;
	struct memfault_vcpu *ovcpu;
	int ovm_fd, ovcpu_fd;
	struct memfault_region *foreign;
	char *anon2;
	MEMFAULT_OPTS(memfault_region_opts, ro,
		      .flags = MEMFAULT_REGION_NO_MEMSLOT);
	MEMFAULT_OPTS(memfault_uffd_opts, o);
	struct {
		struct memfault_uffd_opts o;
		uint64_t extra;
	} big;

	fx_open(&F, KVMSIM_X86_64, KVMSIM_LEVEL_7_2);
	fx_memory(&F, MEMFAULT_UFFD_MISSING, 8);
	fx_region(&F, MEMFAULT_REGION_NO_MEMSLOT, 0);

	/* memfault_uffd_new() */
	ck_assert_int_eq(memfault_uffd_new(NULL, NULL, &u), -EINVAL);
	ck_assert_int_eq(memfault_uffd_new(F.e.vm, NULL, NULL), -EINVAL);
	o.sz = 3;
	ck_assert_int_eq(memfault_uffd_new(F.e.vm, &o, &u), -EINVAL);
	o.sz = sizeof(o);
	o.flags = 1u << 7;
	ck_assert_int_eq(memfault_uffd_new(F.e.vm, &o, &u), -EINVAL);
	o.flags = 0;
	o.reserved = 1;
	ck_assert_int_eq(memfault_uffd_new(F.e.vm, &o, &u), -EINVAL);
	memset(&big, 0, sizeof(big));
	big.o.sz = sizeof(big);
	big.extra = 1; /* a newer caller's option we do not know */
	ck_assert_int_eq(memfault_uffd_new(F.e.vm, &big.o, &u), -EINVAL);
	ck_assert_ptr_eq(u, (struct memfault_uffd *)&s); /* not written */
	big.extra = 0;
	ck_assert_int_eq(memfault_uffd_new(F.e.vm, &big.o, &F.u), 0);

	/* memfault_uffd_register() */
	ck_assert_int_eq(memfault_uffd_register(NULL, F.r,
						MEMFAULT_UFFD_MISSING, NULL),
			 -EINVAL);
	ck_assert_int_eq(memfault_uffd_register(F.u, NULL,
						MEMFAULT_UFFD_MISSING, NULL),
			 -EINVAL);
	ck_assert_int_eq(memfault_uffd_register(F.u, F.r, 0, NULL), -EINVAL);
	ck_assert_int_eq(memfault_uffd_register(F.u, F.r, 3, NULL), -EINVAL);
	ck_assert_int_eq(memfault_uffd_register(F.u, F.r,
						MEMFAULT_UFFD_MISSING,
						F.mem + 8 * F.ps),
			 -EINVAL);
	ck_assert_int_eq(memfault_uffd_register(F.u, F.r, MEMFAULT_UFFD_MINOR,
						NULL),
			 -EINVAL);
	/* misaligned alias, alias over the region itself */
	ck_assert_int_eq(memfault_uffd_register(F.u, F.r, MEMFAULT_UFFD_MINOR,
						F.mem + 8 * F.ps + 1),
			 -EINVAL);
	ck_assert_int_eq(memfault_uffd_register(F.u, F.r, MEMFAULT_UFFD_MINOR,
						F.mem + F.ps),
			 -EINVAL);
	/* MINOR on anonymous memory: the kernel refuses */
	anon2 = mmap(NULL, 8 * F.ps, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(anon2, MAP_FAILED);
	ck_assert_int_eq(memfault_uffd_register(F.u, F.r, MEMFAULT_UFFD_MINOR,
						anon2),
			 -EINVAL);
	/* a region without host memory */
	ck_assert_int_eq(memfault_region_new(F.e.vm, 0, RAM_GPA + (1ull << 30),
					     8 * F.ps, NULL, &ro, &nohva), 0);
	ck_assert_int_eq(memfault_uffd_register(F.u, nohva,
						MEMFAULT_UFFD_MISSING, NULL),
			 -EINVAL);
	/* a region of another VM */
	ovm_fd = ioctl(F.e.kvm_fd, KVM_CREATE_VM, 0);
	ck_assert_int_ge(ovm_fd, 0);
	ovcpu_fd = ioctl(ovm_fd, KVM_CREATE_VCPU, 0);
	ck_assert_int_ge(ovcpu_fd, 0);
	ck_assert_int_eq(memfault_vm_new(ovm_fd, &vo, &ovm), 0);
	ck_assert_int_eq(memfault_vcpu_new(ovm, ovcpu_fd, NULL, &ovcpu), 0);
	ck_assert_int_eq(memfault_region_new(ovm, 0, RAM_GPA, 8 * F.ps,
					     anon2, &ro, &foreign), 0);
	ck_assert_int_eq(memfault_uffd_register(F.u, foreign,
						MEMFAULT_UFFD_MISSING, NULL),
			 -EINVAL);
	ck_assert_int_eq(memfault_uffd_add_vcpu(F.u, ovcpu), -EINVAL);

	/* nothing changed: no page of the region is trapped */
	stats_settled(&F, &s);
	ck_assert_uint_eq(s.faults, 0);
	ck_assert_int_eq(memfault_uffd_register(F.u, F.r,
						MEMFAULT_UFFD_MISSING, NULL),
			 0);
	/* double register, and a second region over the same memory */
	ck_assert_int_eq(memfault_uffd_register(F.u, F.r,
						MEMFAULT_UFFD_MISSING, NULL),
			 -EEXIST);
	ck_assert_int_eq(memfault_region_new(F.e.vm, 0, RAM_GPA + (2ull << 30),
					     8 * F.ps, F.mem + 4 * F.ps, &ro,
					     &r2), 0);
	ck_assert_int_eq(memfault_uffd_register(F.u, r2,
						MEMFAULT_UFFD_MISSING, NULL),
			 -EEXIST);
	memfault_region_free(r2);

	/* the other calls */
	ck_assert_int_eq(memfault_uffd_get_fd(NULL), -EINVAL);
	ck_assert_int_ge(memfault_uffd_get_fd(F.u), 0);
	ck_assert_int_eq(memfault_uffd_service(NULL, 1), -EINVAL);
	ck_assert_int_eq(memfault_uffd_service(F.u, 0), -EINVAL);
	ck_assert_int_eq(memfault_uffd_service(F.u, 1), 0); /* none queued */
	ck_assert_int_eq(memfault_uffd_get_stats(NULL, &s, sizeof(s)), -EINVAL);
	ck_assert_int_eq(memfault_uffd_get_stats(F.u, NULL, sizeof(s)), -EINVAL);
	ck_assert_int_eq(memfault_uffd_get_stats(F.u, &s, 0), -EINVAL);
	ck_assert_int_eq(memfault_uffd_add_vcpu(NULL, F.e.vcpu), -EINVAL);
	ck_assert_int_eq(memfault_uffd_add_vcpu(F.u, NULL), -EINVAL);
	ck_assert_int_eq(memfault_uffd_remove_vcpu(F.u, F.e.vcpu), -ENOENT);
	ck_assert_int_eq(memfault_uffd_add_vcpu(F.u, F.e.vcpu), 0);
	ck_assert_int_eq(memfault_uffd_add_vcpu(F.u, F.e.vcpu), -EEXIST);
	ck_assert_int_eq(memfault_uffd_remove_vcpu(F.u, F.e.vcpu), 0);
	ck_assert_int_eq(memfault_uffd_remove_vcpu(F.u, F.e.vcpu), -ENOENT);
	ck_assert_int_eq(memfault_uffd_remove_vcpu(NULL, F.e.vcpu), -EINVAL);
	memfault_uffd_free(NULL);

	/* the registration still works, served by the caller */
	fx_start_poller(&F);
	check_all_pages_once(&F);
	fx_stop_poller(&F);
	ck_assert_int_eq(memfault_uffd_get_stats(F.u, &s, 8), 0);
	ck_assert_uint_eq(s.features & ~(uint64_t)(UFFD_FEATURE_THREAD_ID |
						   UFFD_FEATURE_MISSING_SHMEM |
						   UFFD_FEATURE_MINOR_SHMEM |
						   UFFD_FEATURE_POISON),
			  0);

	/* freeing the region first unregisters it */
	memfault_region_free(F.r);
	F.r = NULL;
	memfault_region_free(nohva);
	memfault_region_free(foreign);
	memfault_vcpu_free(ovcpu);
	memfault_vm_free(ovm);
	close(ovcpu_fd);
	close(ovm_fd);
	munmap(anon2, 8 * F.ps);
	fx_close(&F);
}
END_TEST

/* ---- vCPUs ---- */

static void
script_pages(int fd, size_t npages, int k)
{
	char text[CPAGES * 32];
	size_t n = 0;

	text[0] = 0;
	for (size_t i = 0; i < npages; i++) {
		uint64_t p = (i * 5 + (size_t)k * 11) % npages;

		n += (size_t)snprintf(text + n, sizeof(text) - n,
				      "load:%#llx:1;",
				      (unsigned long long)(RAM_GPA + p * F.ps));
	}
	ck_assert_int_eq(kvmsim_vcpu_set_script_text(fd, text), 0);
}

/*
 * Without KVM Userfault (7.2): the simulated KVM reads guest memory through
 * the hva in the vCPU thread, which faults on userfaultfd. Attributed to
 * the vCPU once it is added: page_in() gets it, its stats count the wait.
 */
START_TEST(vcpu_attribution)
{
	struct memfault_vcpu_stats vs;
	struct memfault_uffd_stats s;
	struct kvm_run *run;

	fx_open(&F, sim_models[_i].arch, KVMSIM_LEVEL_7_2);
	fx_memory(&F, MEMFAULT_UFFD_MISSING, 16);
	fx_region(&F, 0, 1); /* a real memslot, no KVM Userfault */
	fx_uffd(&F, MODE_THREAD);
	ck_assert_int_eq(memfault_uffd_add_vcpu(F.u, F.e.vcpu), 0);
	script_pages(F.e.vcpu_fd, 8, 0);
	ck_assert_int_eq(memfault_vcpu_run_dispatch(F.e.vcpu),
			 MEMFAULT_RUN_EXIT);
	memfault_vcpu_get_run(F.e.vcpu, &run);
	ck_assert(run->exit_reason == KVM_EXIT_SHUTDOWN ||
		  run->exit_reason == KVM_EXIT_SYSTEM_EVENT);
	/* the last load read page (7 * 5) % 8 = 3, byte 0 */
	ck_assert_uint_eq(sim_env_acc(&F.e), pattern_word(3, 0) & 0xff);
	settle(&F);
	ck_assert_int_eq(memfault_vcpu_get_stats(F.e.vcpu, &vs, sizeof(vs)),
			 0);
	ck_assert_uint_eq(vs.uffd_faults, 8);
	ck_assert_uint_gt(vs.uffd_wait_ns, 0);
	ck_assert_uint_eq(vs.userfaults, 0);
	for (size_t p = 0; p < 8; p++) {
		ck_assert_ptr_eq(__atomic_load_n(&F.seen_vcpu[p],
						 __ATOMIC_RELAXED),
				 F.e.vcpu);
		ck_assert_uint_eq(LD(F.fetches[p]), 1);
	}
	/* other threads are not attributed */
	ck_assert_int_eq(memfault_uffd_remove_vcpu(F.u, F.e.vcpu), 0);
	for (size_t p = 8; p < 16; p++) {
		ck_assert(page_ok(F.mem + p * F.ps, p, F.ps));
		ck_assert_ptr_null(__atomic_load_n(&F.seen_vcpu[p],
						   __ATOMIC_RELAXED));
	}
	stats_settled(&F, &s);
	ck_assert_uint_eq(s.page_ins, 16);
	ck_assert_int_eq(memfault_vcpu_get_stats(F.e.vcpu, &vs, sizeof(vs)),
			 0);
	ck_assert_uint_eq(vs.uffd_faults, 8);
	fx_close(&F);
}
END_TEST

/*
 * Combined mode, "7.2 + KVM Userfault v3": simulated vCPUs take KVM
 * Userfault exits (memfault_vcpu_run_dispatch()) while host threads take
 * userfaultfd faults on the same region. Each page is fetched exactly
 * once, whichever side faults first, and both see the same bytes.
 */
START_TEST(combined_kvm_and_uffd)
{
	uint32_t mode = _i % 2 ? MEMFAULT_UFFD_MINOR : MEMFAULT_UFFD_MISSING;
	uint32_t arch = _i / 2 ? KVMSIM_ARM64 : KVMSIM_X86_64;
	struct vcpu_thread vt[CVCPUS];
	struct toucher t[CHOSTS];
	struct memfault_uffd_stats s;
	uint64_t kvm_ins = 0, waits = 0, ufs = 0;

	fx_open(&F, arch, KVMSIM_LEVEL_7_2_UF);
	fx_memory(&F, mode, CPAGES);
	fx_region(&F, MEMFAULT_REGION_USERFAULT, 1);
	fx_uffd(&F, MODE_THREAD);
	for (int i = 0; i < CVCPUS; i++) {
		vt[i].fd = ioctl(F.e.vm_fd, KVM_CREATE_VCPU, i + 1);
		ck_assert_int_ge(vt[i].fd, 0);
		ck_assert_int_eq(memfault_vcpu_new(F.e.vm, vt[i].fd, NULL,
						   &vt[i].vcpu), 0);
		script_pages(vt[i].fd, CPAGES, i);
	}
	for (int i = 0; i < CVCPUS; i++)
		ck_assert_int_eq(pthread_create(&vt[i].t, NULL, run_to_end,
						&vt[i]), 0);
	for (int k = 0; k < CHOSTS; k++) {
		t[k] = (struct toucher){ .f = &F, .seed = 3u * (unsigned)k + 11,
					 .n = CPAGES };
		ck_assert_int_eq(pthread_create(&t[k].t, NULL, touch_random,
						&t[k]), 0);
	}
	for (int k = 0; k < CHOSTS; k++) {
		pthread_join(t[k].t, NULL);
		ck_assert_int_eq(t[k].bad, 0);
	}
	for (int i = 0; i < CVCPUS; i++) {
		struct memfault_vcpu_stats vs;
		struct kvm_run *run;
		uint64_t acc;
		uint64_t lastp = ((CPAGES - 1) * 5 + (size_t)i * 11) % CPAGES;

		pthread_join(vt[i].t, NULL);
		ck_assert_int_eq(vt[i].result, MEMFAULT_RUN_EXIT);
		memfault_vcpu_get_run(vt[i].vcpu, &run);
		ck_assert(run->exit_reason == KVM_EXIT_SHUTDOWN ||
			  run->exit_reason == KVM_EXIT_SYSTEM_EVENT);
		ck_assert_int_eq(kvmsim_vcpu_get_state(vt[i].fd, &acc, NULL),
				 0);
		ck_assert_uint_eq(acc, pattern_word(lastp, 0) & 0xff);
		ck_assert_int_eq(memfault_vcpu_get_stats(vt[i].vcpu, &vs,
							 sizeof(vs)), 0);
		kvm_ins += vs.page_ins;
		waits += vs.page_waits;
		ufs += vs.userfaults;
		memfault_vcpu_free(vt[i].vcpu);
		close(vt[i].fd);
	}
	check_all_pages_once(&F);
	stats_settled(&F, &s);
	ck_assert_uint_eq(s.kvm_page_ins, kvm_ins);
	ck_assert_uint_eq(s.page_ins + s.kvm_page_ins, CPAGES);
	ck_assert_uint_eq(LD(F.by_vcpu), kvm_ins);
	ck_assert_uint_eq(LD(F.by_host), s.page_ins);
	ck_assert_uint_eq(kvm_ins + waits, ufs);
	ck_assert_uint_eq(s.errors, 0);
	ck_assert_int_eq(F.log_errors, 0);
	fx_close(&F);
}
END_TEST

static void *
touch_one(void *arg)
{
	struct toucher *t = arg;

	if (!page_ok(t->f->mem, 0, t->f->ps))
		t->bad++;
	__atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * A KVM Userfault page-in fails while a host thread waits on the same page
 * (its fault found the page being fetched): the vCPU gets the error, the
 * host thread is woken and fetches the page itself.
 */
START_TEST(kvm_failure_wakes_host_waiters)
{
	struct memfault_uffd_stats s;
	struct vcpu_thread vt;
	struct toucher t;

	fx_open(&F, KVMSIM_X86_64, KVMSIM_LEVEL_7_2_UF);
	fx_memory(&F, _i ? MEMFAULT_UFFD_MINOR : MEMFAULT_UFFD_MISSING, 4);
	fx_region(&F, MEMFAULT_REGION_USERFAULT, 1);
	F.hold_vcpu = 1;
	F.fail_page = 0;
	F.fail_ret = -EIO;
	F.fail_left = 1;
	fx_uffd(&F, MODE_THREAD);
	vt.vcpu = F.e.vcpu;
	sim_env_script(&F.e, "load:0x20000000:1");
	ck_assert_int_eq(pthread_create(&vt.t, NULL, run_to_end, &vt), 0);
	pthread_mutex_lock(&F.lock);
	while (!F.holding)
		pthread_cond_wait(&F.cond, &F.lock);
	pthread_mutex_unlock(&F.lock);

	t = (struct toucher){ .f = &F };
	ck_assert_int_eq(pthread_create(&t.t, NULL, touch_one, &t), 0);
	do { /* the host fault finds the page busy */
		usleep(1000);
		ck_assert_int_eq(memfault_uffd_get_stats(F.u, &s, sizeof(s)),
				 0);
	} while (s.waits < 1);
	ck_assert_int_eq(__atomic_load_n(&t.done, __ATOMIC_ACQUIRE), 0);

	pthread_mutex_lock(&F.lock);
	F.hold_vcpu = 0;
	pthread_cond_broadcast(&F.cond);
	pthread_mutex_unlock(&F.lock);
	pthread_join(vt.t, NULL);
	pthread_join(t.t, NULL);
	ck_assert_int_eq(vt.result, -EIO);
	ck_assert_int_eq(t.bad, 0);
	ck_assert_uint_eq(LD(F.fetches[0]), 1);
	ck_assert_uint_eq(LD(F.by_host), 1);
	stats_settled(&F, &s);
	ck_assert_int_eq(memfault_region_is_missing(F.r, 0), 0);
	ck_assert_uint_eq(s.page_ins, 1);
	ck_assert_uint_eq(s.kvm_page_ins, 0);
	ck_assert_uint_eq(s.errors, 0); /* the vCPU's error is its own */
	fx_close(&F);
}
END_TEST

/* ---- main ---- */

int
main(void)
{
	Suite *s = suite_create("uffd");
	TCase *tc = tcase_create("uffd");
	char why[256];

	if (tc_uffd_usable(why, sizeof(why)))
		return tc_skip(s, "%s", why);
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, missing_threads, 0, 6);
	tcase_add_loop_test(tc, minor_threads, 0, 6);
	tcase_add_loop_test(tc, mark_missing_refetches, 0, 3);
	tcase_add_loop_test(tc, present_pages_are_not_fetched, 0, 2);
	tcase_add_test(tc, partial_page_in_installs_zeros);
	tcase_add_loop_test(tc, shutdown_with_blocked_faults, 0, 2);
	tcase_add_loop_test(tc, shutdown_while_serving, 0, 2);
	tcase_add_loop_test(tc, vmm_prefetcher_wakes_waiters, 0, 2);
	tcase_add_loop_test(tc, page_in_failure, 0, 6);
	ADD_TEST(tc, no_handler_is_a_failure);
	ADD_TEST(tc, bad_arguments);
	ADD_ON_72(tc, vcpu_attribution);
	tcase_add_loop_test(tc, combined_kvm_and_uffd, 0, 4);
	tcase_add_loop_test(tc, kvm_failure_wakes_host_waiters, 0, 2);
	suite_add_tcase(s, tc);
	return tc_run(s);
}
