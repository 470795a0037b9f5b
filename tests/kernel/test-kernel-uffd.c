/* SPDX-License-Identifier: MIT */
/*
 * The userfaultfd backend (memfault_uffd_*) under a real guest (default VM
 * type, both arches): slot 1 is a region whose pages all start missing
 * (MEMFAULT_REGION_MISSING, no KVM Userfault: the 7.2 kernel has none), its
 * memory registered with userfaultfd. The guest (KT_ENTRY_PAGES) loads from
 * pages 0, 2, 1, 3 and page 0 again and reports every value. No vCPU exit
 * is involved: KVM's own access to the hva (get_user_pages() in the vCPU
 * thread, while handling the stage-2 / NPT fault) raises the userfaultfd
 * fault and sleeps in the kernel until the library has called page_in(),
 * installed the page and published it; the guest then goes on.
 *   uffd-missing  anonymous memory, MEMFAULT_UFFD_MISSING (UFFDIO_COPY from
 *                 a bounce buffer), faults served by the library's service
 *                 thread
 *   uffd-minor    a memfd mapped twice, MEMFAULT_UFFD_MINOR (page_in()
 *                 writes through the alias, UFFDIO_CONTINUE maps it); pages
 *                 1 and 3 hold stale contents in the page cache (MINOR
 *                 faults), 0 and 2 are holes (MISSING faults on shmem);
 *                 faults served by a VMM thread polling
 *                 memfault_uffd_get_fd() and calling memfault_uffd_service()
 * In both the guest must see the handler's bytes, every page is fetched
 * exactly once (the handler's count per page, uffd page_ins), page_in() gets
 * the vCPU (memfault_uffd_add_vcpu()), and the vCPU's stats count the waits
 * (uffd_faults). The KRES lines: each run, memfault_vcpu_get_stats(), what
 * the handler saw, memfault_uffd_get_stats() (all counters, no latencies).
 *
 * On the simulator (KT_SIM) the same code runs against kvmsim: its guest
 * loads read the hva with process_vm_readv() in the vCPU thread, which
 * raises the same real userfaultfd faults on this process's memory, so the
 * comparison covers the library's whole path there too; only the guest
 * and KVM are simulated.
 *
 * Exits 77 (SKIP) where userfaultfd is not permitted (unprivileged with
 * vm.unprivileged_userfaultfd=0 and no access to /dev/userfaultfd) or not
 * implemented.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "ktest.h"

/* Page p of the region is filled with this byte by page_in(). */
#define PAGE_BYTE(p) ((uint8_t)(0xa1 + (p)))
/* What the memory held before it was registered: never seen by the guest. */
#define STALE 0xee
#define MAX_PAGES 4

enum serve { SERVE_THREAD, SERVE_POLL };

struct ufx {
	struct kt_vm v;
	uint32_t mode; /* MEMFAULT_UFFD_MISSING or MEMFAULT_UFFD_MINOR */
	size_t ps, size, npages;
	char *mem;   /* the region's hva */
	char *alias; /* MINOR: the second mapping of the memfd */
	int memfd;
	struct memfault_uffd *u;
	struct memfault_vcpu *vcpu; /* set before the guest runs */
	/* written by the serving thread: atomic */
	unsigned calls[MAX_PAGES];
	unsigned with_vcpu; /* page_in() calls that got f->vcpu */
	unsigned bad;       /* page_in() calls with a wrong argument */
	unsigned log_errors;
	/* the VMM's poller (SERVE_POLL) */
	pthread_t poller;
	int stop_fd;
	unsigned served;      /* messages memfault_uffd_service() handled */
	unsigned poll_errors; /* its negative results */
};

#define LD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define INC(x) __atomic_fetch_add(&(x), 1, __ATOMIC_RELAXED)

/* The guest's report of a load of bytes @b: x86 loads one, arm64 four. */
static uint32_t
loaded(uint8_t b)
{
	return KT_X86 ? b : 0x01010101u * b;
}

static int
page_in(void *user, struct memfault_vcpu *vcpu, struct memfault_region *r,
	uint64_t page, void *hva, uint64_t page_size)
{
	struct ufx *f = user;
	char *h = hva;
	bool hva_ok;

	if (f->mode == MEMFAULT_UFFD_MINOR)
		hva_ok = h == f->alias + page * f->ps;
	else /* a bounce buffer, never the region's own (faulting) memory */
		hva_ok = h && (h + page_size <= f->mem || h >= f->mem + f->size);
	if (r != f->v.region || page >= f->npages || page_size != f->ps ||
	    !hva_ok) {
		INC(f->bad);
		return -EINVAL;
	}
	memset(hva, PAGE_BYTE(page), page_size);
	INC(f->calls[page]);
	if (vcpu && vcpu == __atomic_load_n(&f->vcpu, __ATOMIC_ACQUIRE))
		INC(f->with_vcpu);
	return MEMFAULT_RESOLVED;
}

static void
log_msg(void *user, int level, const char *message)
{
	struct ufx *f = user;

	printf("# libmemfault log %d: %s\n", level, message);
	if (level <= 3)
		INC(f->log_errors);
}

/* The VMM's event loop: poll the userfaultfd, let the library serve. */
static void *
poll_loop(void *arg)
{
	struct ufx *f = arg;
	struct pollfd p[2] = {
		{ .fd = memfault_uffd_get_fd(f->u), .events = POLLIN },
		{ .fd = f->stop_fd, .events = POLLIN },
	};

	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			INC(f->poll_errors);
			return NULL;
		}
		if (p[1].revents)
			return NULL;
		if (p[0].revents & POLLIN) {
			int r = memfault_uffd_service(f->u, 16);

			if (r < 0)
				INC(f->poll_errors);
			else
				__atomic_fetch_add(&f->served, (unsigned)r,
						   __ATOMIC_RELAXED);
		}
	}
}

static void
stop_poller(struct ufx *f)
{
	uint64_t one = 1;

	if (f->stop_fd < 0)
		return;
	ck_assert_int_eq(write(f->stop_fd, &one, sizeof(one)), sizeof(one));
	ck_assert_int_eq(pthread_join(f->poller, NULL), 0);
	close(f->stop_fd);
	f->stop_fd = -1;
}

static void *
map_shared(int fd, size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	ck_assert_msg(p != MAP_FAILED, "mmap(memfd): %s", strerror(errno));
	return p;
}

/* A VM with slot 1 a missing region registered with userfaultfd in @mode,
 * served as @serve says, and vCPU 0 at KT_ENTRY_PAGES attributed to it. */
static void
ufx_open(struct ufx *f, const char *scen, uint32_t mode, enum serve serve)
{
	MEMFAULT_OPTS(memfault_region_opts, ropts,
		      .flags = MEMFAULT_REGION_MISSING);
	MEMFAULT_OPTS(memfault_uffd_opts, uopts,
		      .flags = serve == SERVE_THREAD
				       ? MEMFAULT_UFFD_SERVICE_THREAD
				       : 0);
	MEMFAULT_OPTS(memfault_handlers, h, .user = f, .page_in = page_in,
		      .log = log_msg);
	uint64_t missing = 0;
	int r;

	memset(f, 0, sizeof(*f));
	f->memfd = f->stop_fd = -1;
	f->mode = mode;
	f->ps = kt_page_size();
	f->size = KT_PAGES_SIZE > f->ps ? KT_PAGES_SIZE : f->ps;
	f->npages = f->size / f->ps;
	ck_assert_uint_le(f->npages, MAX_PAGES);
	kt_vm_create(&f->v, 0, scen);

	if (mode == MEMFAULT_UFFD_MISSING) {
		f->mem = mmap(NULL, f->size, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		ck_assert_msg(f->mem != MAP_FAILED, "mmap: %s",
			      strerror(errno));
		/* dropped by the registration (the pages are missing) */
		memset(f->mem, STALE, f->size);
	} else {
		f->memfd = memfd_create("kt-uffd", MFD_CLOEXEC);
		ck_assert_msg(f->memfd >= 0, "memfd_create: %s",
			      strerror(errno));
		ck_assert_int_eq(ftruncate(f->memfd, (off_t)f->size), 0);
		f->mem = map_shared(f->memfd, f->size);
		f->alias = map_shared(f->memfd, f->size);
		/* odd pages in the page cache (MINOR faults), even ones
		 * holes (MISSING faults) */
		for (size_t p = 1; p < f->npages; p += 2)
			memset(f->alias + p * f->ps, STALE, f->ps);
	}
	ck_assert_int_eq(memfault_vm_set_handlers(f->v.mvm, &h), 0);
	r = memfault_region_new(f->v.mvm, 1, KT_TEST_GPA, f->size, f->mem,
				&ropts, &f->v.region);
	ck_assert_msg(r == 0, "memfault_region_new(MISSING): %s",
		      strerror(-r));
	ck_assert_int_eq(memfault_region_count_missing(f->v.region, &missing),
			 0);
	ck_assert_uint_eq(missing, f->npages);
	r = memfault_uffd_new(f->v.mvm, &uopts, &f->u);
	ck_assert_msg(r == 0, "memfault_uffd_new: %s", strerror(-r));
	r = memfault_uffd_register(f->u, f->v.region, mode, f->alias);
	ck_assert_msg(r == 0, "memfault_uffd_register(%s): %s",
		      mode == MEMFAULT_UFFD_MINOR ? "MINOR" : "MISSING",
		      strerror(-r));
	if (serve == SERVE_POLL) {
		f->stop_fd = eventfd(0, EFD_CLOEXEC);
		ck_assert_int_ge(f->stop_fd, 0);
		ck_assert_int_eq(pthread_create(&f->poller, NULL, poll_loop,
						f),
				 0);
	}
	kt_vcpu_create(&f->v, KT_ENTRY_PAGES);
	__atomic_store_n(&f->vcpu, f->v.mvcpu, __ATOMIC_RELEASE);
	ck_assert_int_eq(memfault_uffd_add_vcpu(f->u, f->v.mvcpu), 0);
}

static void
ufx_close(struct ufx *f)
{
	stop_poller(f);
	ck_assert_int_eq(memfault_uffd_remove_vcpu(f->u, f->v.mvcpu), 0);
	memfault_uffd_free(f->u);
	kt_vm_destroy(&f->v); /* the region, the vCPU, the VM */
	munmap(f->mem, f->size);
	if (f->alias)
		munmap(f->alias, f->size);
	if (f->memfd >= 0)
		close(f->memfd);
	memset(f, 0, sizeof(*f));
}

/*
 * Wait until every fault read has been counted to the end: the faulting
 * thread resumes at the install, before the library's last counters; the
 * latency histogram is counted last (lib/uffd-service.c).
 */
static void
settle(struct ufx *f, struct memfault_uffd_stats *s)
{
	for (int i = 0; i < 5000; i++) {
		uint64_t sum = 0;

		ck_assert_int_eq(memfault_uffd_get_stats(f->u, s, sizeof(*s)),
				 0);
		for (int b = 0; b < MEMFAULT_UFFD_LATENCY_BUCKETS; b++)
			sum += s->latency[b];
		if (sum == s->faults)
			return;
		usleep(1000);
	}
	ck_abort_msg("userfaultfd faults still being served after 5 s");
}

static void
run_pages(struct ufx *f, enum serve serve)
{
	struct memfault_vcpu_stats st;
	struct memfault_uffd_stats s;
	uint64_t missing = ~0ull;
	unsigned served = 0;
	char calls[64], polled[32] = "";
	size_t n = 0;
	int loads = KT_PAGES_LOADS;

	/* the guest: every load reports what page_in() wrote */
	for (int i = 0; i < loads; i++)
		kt_expect_report(&f->v, kt_dispatch(&f->v),
				 loaded(PAGE_BYTE(kt_pages_off[i] / f->ps)));
#if KT_X86
	kt_expect_exit(&f->v, kt_dispatch(&f->v), KVM_EXIT_HLT);
#endif
	settle(f, &s);
	if (serve == SERVE_POLL) {
		stop_poller(f); /* also orders its writes before our reads */
		served = LD(f->served);
		snprintf(polled, sizeof(polled), " poll.served=%u", served);
	}

	/* no exit was a memory fault: KVM waited in the kernel instead */
	kt_stats(&f->v, &st);
	ck_assert_uint_eq(st.runs, (uint64_t)loads + KT_X86);
	ck_assert_uint_eq(st.exits, st.runs);
	ck_assert_uint_eq(st.memory_faults, 0);
	ck_assert_uint_eq(st.userfaults, 0);
	ck_assert_uint_eq(st.page_ins, 0);
	ck_assert_uint_eq(st.retries, 0);

	/* the handler: each page exactly once, always for our vCPU */
	ck_assert_int_eq(memfault_region_count_missing(f->v.region, &missing),
			 0);
	for (size_t p = 0; p < f->npages; p++)
		n += (size_t)snprintf(calls + n, sizeof(calls) - n, "%s%u",
				      p ? "," : "", LD(f->calls[p]));
	kres_printf(KT_ARCH, f->v.scen, ++f->v.step,
		    "handler.calls=%s handler.vcpu=%u handler.bad=%u"
		    " log.errors=%u region.missing=%llu",
		    calls, LD(f->with_vcpu), LD(f->bad), LD(f->log_errors),
		    (unsigned long long)missing);
	for (size_t p = 0; p < f->npages; p++)
		ck_assert_msg(LD(f->calls[p]) == 1,
			      "page %zu fetched %u times", p,
			      LD(f->calls[p]));
	ck_assert_uint_eq(LD(f->with_vcpu), f->npages);
	ck_assert_uint_eq(LD(f->bad), 0);
	ck_assert_uint_eq(LD(f->log_errors), 0);
	ck_assert_uint_eq(missing, 0);

	/* the library's counters and the vCPU's share of them */
	kres_printf(KT_ARCH, f->v.scen, ++f->v.step,
		    "uffd.faults=%llu uffd.page_ins=%llu uffd.kvm_page_ins=%llu"
		    " uffd.waits=%llu uffd.unknown=%llu uffd.errors=%llu"
		    " uffd.last_error=%d vcpu.uffd_faults=%llu%s",
		    (unsigned long long)s.faults,
		    (unsigned long long)s.page_ins,
		    (unsigned long long)s.kvm_page_ins,
		    (unsigned long long)s.waits,
		    (unsigned long long)s.unknown,
		    (unsigned long long)s.errors, s.last_error,
		    (unsigned long long)st.uffd_faults, polled);
	ck_assert_uint_eq(s.page_ins, f->npages);
	ck_assert_uint_eq(s.kvm_page_ins, 0);
	ck_assert_uint_eq(s.errors, 0);
	ck_assert_uint_eq(s.unknown, 0);
	ck_assert_uint_eq(s.faults, s.page_ins + s.waits);
	ck_assert_int_eq(s.last_error, 0);
	/* every fault was the vCPU thread's: KVM's access to the hva */
	ck_assert_uint_gt(st.uffd_faults, 0);
	ck_assert_uint_eq(st.uffd_faults, s.faults);
	ck_assert_uint_gt(st.uffd_wait_ns, 0);
	if (serve == SERVE_POLL) {
		ck_assert_uint_eq(served, s.faults);
		ck_assert_uint_eq(LD(f->poll_errors), 0);
	}
	ck_assert_uint_gt(s.latency_max_ns, 0);

	/* the host sees what the guest saw (every page is mapped now) */
	for (size_t p = 0; p < f->npages; p++) {
		const char *m = (f->alias ? f->alias : f->mem) + p * f->ps;

		for (size_t i = 0; i < f->ps; i++)
			ck_assert_msg((uint8_t)m[i] == PAGE_BYTE(p),
				      "page %zu byte %zu: %#x", p, i,
				      (uint8_t)m[i]);
	}
}

START_TEST(uffd_missing)
{
	struct ufx f;

	ufx_open(&f, "uffd-missing", MEMFAULT_UFFD_MISSING, SERVE_THREAD);
	run_pages(&f, SERVE_THREAD);
	ufx_close(&f);
}
END_TEST

START_TEST(uffd_minor)
{
	struct ufx f;

	ufx_open(&f, "uffd-minor", MEMFAULT_UFFD_MINOR, SERVE_POLL);
	run_pages(&f, SERVE_POLL);
	ufx_close(&f);
}
END_TEST

Suite *
kt_suite_uffd(void)
{
	return tc_suite("kernel-uffd", "uffd", 60,
			uffd_missing,
			uffd_minor,
			NULL);
}

#ifndef KT_NO_MAIN
int
main(void)
{
	char why[256];

	kt_init();
	if (kt_kvm_fd() >= 0 && tc_uffd_usable(why, sizeof(why)))
		return tc_skip(NULL, "%s", why);
	return kt_main(kt_suite_uffd());
}
#endif
