/* SPDX-License-Identifier: MIT */
/*
 * userfaultfd backend on the real kernel, host threads: threads faulting
 * on anonymous (MISSING) and memfd (MINOR) regions with the service thread
 * and with VMM-driven polling, re-fetch after mark_missing, partial
 * page-ins, shutdown with faults in flight, a VMM prefetcher, page-in
 * failures. test-uffd-vcpu.c has the arguments and the vCPU cases; the
 * fixture is uffd-fixture.c.
 *
 * Exits 77 (skip) where userfaultfd is not permitted or not implemented
 * (unprivileged with vm.unprivileged_userfaultfd=0, qemu-user).
 */
#include "uffd-fixture.h"

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
	struct memfault_uffd_stats s;
	struct bus_toucher b;
	char *bad;

	tc_catch_signal(SIGBUS, on_sigbus);

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
	struct memfault_uffd_stats s;
	struct bus_toucher b;

	tc_catch_signal(SIGBUS, on_sigbus);
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
	suite_add_tcase(s, tc);
	return tc_run(s);
}
