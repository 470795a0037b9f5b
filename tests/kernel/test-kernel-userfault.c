/* SPDX-License-Identifier: MIT */
/*
 * KVM Userfault (the proposed KVM_MEM_USERFAULT memslot flag and its
 * userfault bitmap) on a real kernel that carries the series, through the
 * public API. The whole executable exits 77 where memfault_vm_new() does
 * not find KVM Userfault (a feature probe, not a version check).
 *   uf-probe       memfault_vm_new() on a VM whose highest memslot id and
 *                  the old scratch range are taken: the probe still
 *                  answers, and the VMM's slot is untouched. On a real
 *                  kernel also: with every memslot ioctl on the VM's fd
 *                  refused (seccomp), the answer is the same
 *   uf-raw         MEMFAULT_REGION_USERFAULT|MISSING: the guest's load
 *                  exits 39 with USERFAULT, decoded by memfault_vcpu_run();
 *                  the same exit again until the page is published;
 *                  claim, a second claim (BUSY), abort, claim, publish
 *   uf-pages       dispatch: the guest loads pages 0, 2, 1, 3, 0; page_in()
 *                  once per page; the values reach the guest
 *   uf-rearm       then page 1 is marked missing again while the guest has
 *                  it mapped: the next pass fetches it once more
 *   uf-gmem        a guest_memfd (MMAP|INIT_SHARED) slot created with
 *                  KVM_MEM_USERFAULT; then its mapped page re-armed
 *   uf-private     x86 KVM_X86_SW_PROTECTED_VM: a PRIVATE page with its bit
 *                  set exits with PRIVATE|USERFAULT; page_in() converts it
 *                  to shared and fills it; then the page private and
 *                  mapped again, re-armed: the same exit
 *   uf-badbitmap   the bitmap unreadable while the vCPU runs: x86 -EFAULT
 *                  without exit information, arm64 an exit 39 USERFAULT
 *                  for the page (the series takes the read error for a
 *                  userfault); neither hangs. Then, through dispatch, with
 *                  the kernel's bitmap unreadable and the library's page
 *                  present: x86 -EFAULT, arm64 -ELOOP (the repeat guard)
 *   uf-2vcpu       two vCPUs load the same missing pages at once: one
 *                  page_in() per page, the other vCPU sleeps meanwhile
 *   uf-window-other, uf-window-same
 *                  KT_WINDOW_ITERS runs of a vCPU loading a missing page
 *                  while another thread re-marks another page (or the
 *                  same one): every run must end in a userfault exit, none
 *                  may complete the load
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "ktest.h"
#include "kvm-userfault-proposed.h"

/* Page p of a region is filled with this byte by page_in(), round 0. */
#define PAGE_BYTE(p, round) ((uint8_t)(0xa1 + (p) + 0x10 * (round)))
/* What the memory held when it was registered missing. */
#define STALE  0xee
#define NPAGES 4
/* Window test runs per variant (issue: at least 10^3 on a real kernel). */
#define KT_WINDOW_ITERS 2000u
/* KVM_X86_SW_PROTECTED_VM, also where <asm/kvm.h> lacks it */
#define SW_PROTECTED_VM 1ul

#define LD(x)  __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define INC(x) __atomic_fetch_add(&(x), 1, __ATOMIC_RELAXED)

/* The guest's report of a load of bytes @b: x86 loads one, arm64 four. */
static uint32_t
loaded(uint8_t b)
{
	return KT_X86 ? b : 0x01010101u * b;
}

static uint64_t
ns_now(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* What page_in() saw; one per test. */
struct ufh {
	struct kt_vm *v;
	unsigned calls[NPAGES];
	unsigned bad;     /* calls with a wrong region, hva or size */
	unsigned round;   /* which PAGE_BYTE() round page_in() writes */
	unsigned slow_ms; /* page_in() of page 0 sleeps this long */
	int convert;      /* make the page shared first (uf-private) */
	int convert_rc;
	/* uf-2vcpu: the vCPUs and their threads' CPU clocks, and the CPU
	 * time the vCPU that did not fetch page 0 used during that fetch */
	struct memfault_vcpu *vc[2];
	clockid_t clk[2];
	uint64_t waiter_cpu_ns;
	int waiter_measured;
};

static uint64_t
clock_ns(clockid_t c)
{
	struct timespec ts;

	if (clock_gettime(c, &ts))
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int
page_in(void *user, struct memfault_vcpu *vcpu, struct memfault_region *r,
	uint64_t page, void *hva, uint64_t page_size)
{
	struct ufh *h = user;
	uint64_t ps = kt_page_size();

	if (r != h->v->region || page >= NPAGES || page_size != ps || !hva) {
		INC(h->bad);
		return -EINVAL;
	}
	if (h->convert)
		h->convert_rc = kt_vm_set_attributes(
			h->v, KT_TEST_GPA + page * ps, ps, 0);
	if (page == 0 && h->slow_ms) {
		struct timespec ts = { 0, (long)h->slow_ms * 1000000l };
		int other = -1;
		uint64_t c0 = 0;

		/* What the other vCPU's thread runs while we fetch: it waits
		 * for this very page, so it should be asleep throughout. */
		if (h->vc[0] && (vcpu == h->vc[0] || vcpu == h->vc[1])) {
			other = vcpu == h->vc[0] ? 1 : 0;
			c0 = clock_ns(h->clk[other]);
		}
		nanosleep(&ts, NULL);
		if (other >= 0) {
			h->waiter_cpu_ns = clock_ns(h->clk[other]) - c0;
			h->waiter_measured = 1;
		}
	}
	memset(hva, PAGE_BYTE(page, h->round), ps);
	INC(h->calls[page]);
	return MEMFAULT_RESOLVED;
}

static void
set_page_in(struct kt_vm *v, struct ufh *h)
{
	MEMFAULT_OPTS(memfault_handlers, hs, .user = h, .page_in = page_in);

	memset(h, 0, sizeof(*h));
	h->v = v;
	ck_assert_int_eq(memfault_vm_set_handlers(v->mvm, &hs), 0);
}

static void
kres_calls(struct kt_vm *v, const struct ufh *h)
{
	uint64_t missing = ~0ull;

	ck_assert_int_eq(memfault_region_count_missing(v->region, &missing), 0);
	kres_printf(
		KT_ARCH, v->scen, ++v->step,
		"handler.calls=%u,%u,%u,%u handler.bad=%u region.missing=%llu",
		LD(h->calls[0]), LD(h->calls[1]), LD(h->calls[2]),
		LD(h->calls[3]), LD(h->bad), (unsigned long long)missing);
	ck_assert_uint_eq(LD(h->bad), 0);
}

static void
expect_userfault(struct kt_vm *v, int rc, uint64_t gpa, uint64_t flags,
		 uint64_t kernel_flags)
{
	kt_expect_fault(v, rc, gpa, kt_page_size(), flags, kernel_flags,
			-EFAULT, MEMFAULT_ORIGIN_ERRNO);
}

/* ---- uf-probe ------------------------------------------------------------ */

START_TEST(uf_probe)
{
	MEMFAULT_OPTS(memfault_vm_opts, o, .arch = KT_ARCH);
	uint64_t ps = kt_page_size(), old_gpa = (64ull << 30) - (2ull << 20);
	struct kvm_userspace_memory_region2 m;
	struct memfault_features f;
	struct memfault_vm *vm;
	struct kt_vm v;
	char b1[32], b2[32];
	int nr, r, del;
	char *p;

	kt_vm_create(&v, 0, "uf-probe");
	/* the VMM's own slot where the old probe put its scratch slot */
	nr = ioctl(v.vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS);
	ck_assert_int_gt(nr, 2);
	p = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		 -1, 0);
	ck_assert(p != MAP_FAILED);
	memset(&m, 0, sizeof(m));
	m.slot = (uint32_t)nr - 1;
	m.guest_phys_addr = old_gpa;
	m.memory_size = ps;
	m.userspace_addr = (uintptr_t)p;
	ck_assert_int_eq(ioctl(v.vm_fd, KVM_SET_USER_MEMORY_REGION2, &m), 0);
	r = memfault_vm_new(v.vm_fd, &o, &vm);
	ck_assert_int_eq(r, 0);
	ck_assert_int_eq(memfault_vm_get_features(vm, &f, sizeof(f)), 0);
	memfault_vm_free(vm);
	kres_features(KT_ARCH, v.scen, ++v.step, &f);
	ck_assert_int_eq(f.userfault_probe_error, 0);
	ck_assert(f.flags & MEMFAULT_FEATURE_KVM_USERFAULT);
	/* the VMM's slot is still there: the same range cannot be added
	 * twice, and deleting it works */
	m.slot = (uint32_t)nr - 2;
	r = ioctl(v.vm_fd, KVM_SET_USER_MEMORY_REGION2, &m) ? -errno : 0;
	m.slot = (uint32_t)nr - 1;
	m.memory_size = 0;
	del = ioctl(v.vm_fd, KVM_SET_USER_MEMORY_REGION2, &m) ? -errno : 0;
	kres_printf(KT_ARCH, v.scen, ++v.step, "overlap=%s delete=%s",
		    kres_rc_name(r, b1, sizeof(b1)),
		    kres_rc_name(del, b2, sizeof(b2)));
	ck_assert_int_eq(del, 0);
	ck_assert_int_eq(r, -EEXIST);
#if !defined(KT_SIM)
	{
		/* memslot ioctls on the VMM's fd refused in the probing
		 * thread: the probe never needs them */
		struct memfault_features pf;
		int pr = kt_probe_without_memslots(v.vm_fd, &pf);

		if (pr == -ENOSYS || pr == -EINVAL) {
			/* a kernel without CONFIG_SECCOMP_FILTER (the small
			 * userfault-7.2.13 ones are tinyconfig-based) */
			printf("# uf-probe: seccomp filters unavailable (%s): not checked with memslot ioctls refused\n",
			       strerror(-pr));
		} else {
			ck_assert_msg(pr == 0, "probe: %s", strerror(-pr));
			ck_assert_int_eq(pf.userfault_probe_error, 0);
			ck_assert(pf.flags & MEMFAULT_FEATURE_KVM_USERFAULT);
			printf("# uf-probe: with memslot ioctls on the VM fd refused: features %#llx, probe error %d\n",
			       (unsigned long long)pf.flags,
			       pf.userfault_probe_error);
		}
	}
	{
		/* cost of a probe that misses the cache: fresh process state
		 * is not available here, so time memfault_vm_new() with the
		 * probe and without it */
		MEMFAULT_OPTS(memfault_vm_opts, np, .arch = KT_ARCH,
			      .flags = MEMFAULT_VM_NO_USERFAULT_PROBE);
		uint64_t t0 = ns_now(CLOCK_MONOTONIC), t1, t2;

		for (int i = 0; i < 20; i++) {
			ck_assert_int_eq(memfault_vm_new(v.vm_fd, &o, &vm), 0);
			memfault_vm_free(vm);
		}
		t1 = ns_now(CLOCK_MONOTONIC);
		for (int i = 0; i < 20; i++) {
			ck_assert_int_eq(memfault_vm_new(v.vm_fd, &np, &vm), 0);
			memfault_vm_free(vm);
		}
		t2 = ns_now(CLOCK_MONOTONIC);
		printf("# uf-probe: memfault_vm_new() mean %.1f us (probe, cached), %.1f us (no probe)\n",
		       (t1 - t0) / 20e3, (t2 - t1) / 20e3);
		/* what a probe that misses the cache does: a VM, a slot with
		 * KVM_MEM_USERFAULT, close */
		t0 = ns_now(CLOCK_MONOTONIC);
		for (int i = 0; i < 20; i++) {
			unsigned long bits = 0;
			struct kvm_userspace_memory_region2_uf s2;
			int fd = ioctl(kt_kvm_fd(), KVM_CREATE_VM, 0ul);

			ck_assert_int_ge(fd, 0);
			memset(&s2, 0, sizeof(s2));
			s2.flags = KVM_MEM_USERFAULT;
			s2.memory_size = ps;
			s2.userspace_addr = (uintptr_t)p;
			s2.userfault_bitmap = (uintptr_t)&bits;
			ck_assert_int_eq(
				ioctl(fd, KVM_SET_USER_MEMORY_REGION2, &s2), 0);
			close(fd);
		}
		printf("# uf-probe: a throw-away VM probe (KVM_CREATE_VM, one USERFAULT slot, close) mean %.1f us\n",
		       (ns_now(CLOCK_MONOTONIC) - t0) / 20e3);
	}
#endif
	munmap(p, ps);
	kt_vm_destroy(&v);
}
END_TEST

/* ---- uf-raw: exits decoded, claim / publish / abort ---------------------- */

START_TEST(uf_raw)
{
	uint64_t ps = kt_page_size();
	struct kt_vm v;
	int c1, c2, c3, c4, miss_after_abort, miss_after_publish;

	kt_vm_create(&v, 0, "uf-raw");
	kt_region_flags(&v, KT_TEST_SIZE,
			MEMFAULT_REGION_USERFAULT | MEMFAULT_REGION_MISSING, 0,
			STALE);
	kt_vcpu_create(&v, KT_ENTRY_LOAD);
	expect_userfault(&v, kt_run(&v), KT_TEST_GPA, MEMFAULT_FAULT_USERFAULT,
			 KVM_MEMORY_EXIT_FLAG_USERFAULT);
	/* nothing changed: the same exit again */
	expect_userfault(&v, kt_run(&v), KT_TEST_GPA, MEMFAULT_FAULT_USERFAULT,
			 KVM_MEMORY_EXIT_FLAG_USERFAULT);
	{
		/* the userfault round trip: KVM_RUN to the exit, decoded;
		 * information only (speed is measured in bench/) */
		uint64_t t0 = ns_now(CLOCK_MONOTONIC), n = 0;

		for (int i = 0; i < 200; i++)
			n += memfault_vcpu_run(v.mvcpu) ==
			     MEMFAULT_RUN_MEMORY_FAULT;
		printf("# uf-raw: %llu of 200 runs ended in the userfault exit, mean %.1f us per run\n",
		       (unsigned long long)n,
		       (ns_now(CLOCK_MONOTONIC) - t0) / 200e3);
		ck_assert_uint_eq(n, 200);
	}
	c1 = memfault_region_claim(v.region, 0, 0);
	c2 = memfault_region_claim(v.region, 0, MEMFAULT_CLAIM_NOWAIT);
	ck_assert_int_eq(memfault_region_abort(v.region, 0), 0);
	miss_after_abort = memfault_region_is_missing(v.region, 0);
	expect_userfault(&v, kt_run(&v), KT_TEST_GPA, MEMFAULT_FAULT_USERFAULT,
			 KVM_MEMORY_EXIT_FLAG_USERFAULT);
	c3 = memfault_region_claim(v.region, 0, 0);
	memset(v.test, PAGE_BYTE(0, 0), ps);
	ck_assert_int_eq(memfault_region_publish(v.region, 0, 1), 0);
	miss_after_publish = memfault_region_is_missing(v.region, 0);
	c4 = memfault_region_claim(v.region, 0, MEMFAULT_CLAIM_NOWAIT);
	kres_printf(KT_ARCH, v.scen, ++v.step,
		    "claim=%d claim.nowait=%d abort.missing=%d claim.again=%d publish.missing=%d claim.after=%d",
		    c1, c2, miss_after_abort, c3, miss_after_publish, c4);
	ck_assert_int_eq(c1, MEMFAULT_CLAIM_FETCH);
	ck_assert_int_eq(c2, MEMFAULT_CLAIM_BUSY);
	ck_assert_int_eq(miss_after_abort, 1);
	ck_assert_int_eq(c3, MEMFAULT_CLAIM_FETCH);
	ck_assert_int_eq(miss_after_publish, 0);
	ck_assert_int_eq(c4, MEMFAULT_CLAIM_PRESENT);
	kt_expect_report(&v, kt_run(&v), loaded(PAGE_BYTE(0, 0)));
	kt_vm_destroy(&v);
}
END_TEST

/* ---- uf-pages, uf-rearm -------------------------------------------------- */

/* The guest's pass over pages 0, 2, 1, 3, 0: the bytes it reports. */
static void
expect_pass(struct kt_vm *v, const uint8_t want[KT_PAGES_LOADS])
{
	for (int i = 0; i < KT_PAGES_LOADS; i++)
		kt_expect_report(v, kt_dispatch(v), loaded(want[i]));
#if KT_X86
	kt_expect_exit(v, kt_dispatch(v), KVM_EXIT_HLT);
#endif
}

START_TEST(uf_pages_rearm)
{
	const uint8_t pass1[KT_PAGES_LOADS] = {
		PAGE_BYTE(0, 0), PAGE_BYTE(2, 0), PAGE_BYTE(1, 0),
		PAGE_BYTE(3, 0), PAGE_BYTE(0, 0),
	};
	const uint8_t pass2[KT_PAGES_LOADS] = {
		PAGE_BYTE(0, 0), PAGE_BYTE(2, 0), PAGE_BYTE(1, 1),
		PAGE_BYTE(3, 0), PAGE_BYTE(0, 0),
	};
	struct memfault_vcpu_stats st;
	struct ufh h;
	struct kt_vm v;

	kt_vm_create(&v, 0, "uf-pages");
	kt_region_flags(&v, KT_PAGES_SIZE,
			MEMFAULT_REGION_USERFAULT | MEMFAULT_REGION_MISSING, 0,
			STALE);
	set_page_in(&v, &h);
	kt_vcpu_create(&v, KT_ENTRY_PAGES);
	expect_pass(&v, pass1);
	kres_calls(&v, &h);
	for (int p = 0; p < NPAGES; p++)
		ck_assert_uint_eq(h.calls[p], 1);
	kt_stats(&v, &st);
	ck_assert_uint_eq(st.userfaults, NPAGES);
	ck_assert_uint_eq(st.page_ins, NPAGES);
	ck_assert_uint_eq(st.page_waits, 0);
	ck_assert_uint_eq(st.to_vmm, 0);

	/* page 1 is mapped in the guest now; mark it missing again */
	v.scen = "uf-rearm";
	v.step = 0;
	h.round = 1;
	ck_assert_int_eq(memfault_region_mark_missing(v.region, 1, 1), 0);
	kt_vcpu_entry(&v, v.vcpu_fd, KT_ENTRY_PAGES);
	expect_pass(&v, pass2);
	kres_calls(&v, &h);
	ck_assert_uint_eq(h.calls[0], 1);
	ck_assert_uint_eq(h.calls[1], 2);
	ck_assert_uint_eq(h.calls[2], 1);
	ck_assert_uint_eq(h.calls[3], 1);
	kt_vm_destroy(&v);
}
END_TEST

/* ---- uf-gmem ------------------------------------------------------------- */

START_TEST(uf_gmem)
{
	struct memfault_features f;
	struct ufh h;
	struct kt_vm v;

	kt_vm_create(&v, 0, "uf-gmem");
	ck_assert_int_eq(memfault_vm_get_features(v.mvm, &f, sizeof(f)), 0);
	ck_assert_msg(
		(f.guest_memfd_flags &
		 (GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED)) ==
			(GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED),
		"guest_memfd flags %#llx",
		(unsigned long long)f.guest_memfd_flags);
	kt_region_flags(&v, KT_TEST_SIZE,
			MEMFAULT_REGION_USERFAULT | MEMFAULT_REGION_MISSING |
				MEMFAULT_REGION_GUEST_MEMFD,
			GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED,
			STALE);
	kt_vcpu_create(&v, KT_ENTRY_LOAD);
	expect_userfault(&v, kt_run(&v), KT_TEST_GPA, MEMFAULT_FAULT_USERFAULT,
			 KVM_MEMORY_EXIT_FLAG_USERFAULT);
	set_page_in(&v, &h);
	kt_expect_report(&v, kt_dispatch(&v), loaded(PAGE_BYTE(0, 0)));
	kres_calls(&v, &h);
	ck_assert_uint_eq(h.calls[0], 1);
	/* re-arm the mapped page: a flag toggle would unbind guest_memfd on
	 * this kernel (7.2 + the series), so the bit must take effect
	 * without one */
	h.round = 1;
	ck_assert_int_eq(memfault_region_mark_missing(v.region, 0, 1), 0);
	kt_vcpu_entry(&v, v.vcpu_fd, KT_ENTRY_LOAD);
	expect_userfault(&v, kt_run(&v), KT_TEST_GPA, MEMFAULT_FAULT_USERFAULT,
			 KVM_MEMORY_EXIT_FLAG_USERFAULT);
	kt_expect_report(&v, kt_dispatch(&v), loaded(PAGE_BYTE(0, 1)));
	kres_calls(&v, &h);
	ck_assert_uint_eq(h.calls[0], 2);
	kt_vm_destroy(&v);
}
END_TEST

/* ---- uf-private (x86 SW_PROTECTED VM) ------------------------------------ */

#if KT_X86
START_TEST(uf_private)
{
	uint64_t ps = kt_page_size();
	struct ufh h;
	struct kt_vm v;

	kt_vm_create(&v, SW_PROTECTED_VM, "uf-private");
	kt_region_flags(&v, KT_TEST_SIZE,
			MEMFAULT_REGION_USERFAULT | MEMFAULT_REGION_MISSING |
				MEMFAULT_REGION_GUEST_MEMFD,
			0, STALE);
	ck_assert_int_eq(kt_vm_set_attributes(&v, KT_TEST_GPA, ps,
					      KVM_MEMORY_ATTRIBUTE_PRIVATE),
			 0);
	kt_vcpu_create(&v, KT_ENTRY_LOAD);
	expect_userfault(&v, kt_run(&v), KT_TEST_GPA,
			 MEMFAULT_FAULT_USERFAULT | MEMFAULT_FAULT_PRIVATE,
			 KVM_MEMORY_EXIT_FLAG_USERFAULT |
				 KVM_MEMORY_EXIT_FLAG_PRIVATE);
	/* page_in() converts the page to shared and fills it */
	set_page_in(&v, &h);
	h.convert = 1;
	kt_expect_report(&v, kt_dispatch(&v), loaded(PAGE_BYTE(0, 0)));
	kres_calls(&v, &h);
	ck_assert_int_eq(h.convert_rc, 0);
	ck_assert_uint_eq(h.calls[0], 1);
	kt_expect_exit(&v, kt_dispatch(&v), KVM_EXIT_HLT);

	/* private again, mapped private by a load (guest_memfd's page, never
	 * written: zero), then re-armed: the private mapping must go too */
	ck_assert_int_eq(kt_vm_set_attributes(&v, KT_TEST_GPA, ps,
					      KVM_MEMORY_ATTRIBUTE_PRIVATE),
			 0);
	kt_vcpu_entry(&v, v.vcpu_fd, KT_ENTRY_LOAD);
	kt_expect_report(&v, kt_run(&v), 0);
	kt_expect_exit(&v, kt_run(&v), KVM_EXIT_HLT);
	h.round = 1;
	ck_assert_int_eq(memfault_region_mark_missing(v.region, 0, 1), 0);
	kt_vcpu_entry(&v, v.vcpu_fd, KT_ENTRY_LOAD);
	expect_userfault(&v, kt_run(&v), KT_TEST_GPA,
			 MEMFAULT_FAULT_USERFAULT | MEMFAULT_FAULT_PRIVATE,
			 KVM_MEMORY_EXIT_FLAG_USERFAULT |
				 KVM_MEMORY_EXIT_FLAG_PRIVATE);
	kt_expect_report(&v, kt_dispatch(&v), loaded(PAGE_BYTE(0, 1)));
	kres_calls(&v, &h);
	ck_assert_uint_eq(h.calls[0], 2);
	kt_vm_destroy(&v);
}
END_TEST
#endif

/* ---- uf-badbitmap -------------------------------------------------------- */

START_TEST(uf_badbitmap)
{
	uint64_t ps = kt_page_size();
	struct memfault_region_info info;
	struct kt_vm v;
	void *bm;
	int rc;

	kt_vm_create(&v, 0, "uf-badbitmap");
	kt_region_flags(&v, KT_TEST_SIZE,
			MEMFAULT_REGION_USERFAULT | MEMFAULT_REGION_MISSING, 0,
			STALE);
	ck_assert_int_eq(
		memfault_region_get_info(v.region, &info, sizeof(info)), 0);
	bm = (void *)(uintptr_t)(info.bitmap & ~(ps - 1));
	kt_vcpu_create(&v, KT_ENTRY_LOAD);
	/* unreadable only while the vCPU runs: the library's own reads
	 * need it (memfault_vcpu_run() does not read it) */
	ck_assert_int_eq(mprotect(bm, ps, PROT_NONE), 0);
	rc = kt_run(&v);
	ck_assert_int_eq(mprotect(bm, ps, PROT_READ | PROT_WRITE), 0);
#if KT_X86
	/* __kvm_mmu_faultin_pfn(): -EFAULT, no memory-fault exit */
	ck_assert_int_eq(rc, -EFAULT);
	ck_assert_int_eq(v.get_fault_rc, -ENODATA);
#else
	/* user_mem_abort(): `if (kvm_gfn_userfault())` takes the read error
	 * for a userfault: exit 39 USERFAULT for the page */
	expect_userfault(&v, rc, KT_TEST_GPA, MEMFAULT_FAULT_USERFAULT,
			 KVM_MEMORY_EXIT_FLAG_USERFAULT);
#endif
	/* readable again: the page is fetched as usual */
	memset(v.test, PAGE_BYTE(0, 0), ps);
	ck_assert_int_eq(memfault_region_publish(v.region, 0, 1), 0);
	kt_expect_report(&v, kt_run(&v), loaded(PAGE_BYTE(0, 0)));

	/*
	 * Through dispatch: the kernel's bitmap unreadable while the
	 * library's says the page is present. A VMM that re-registers the
	 * slot by hand with another bitmap (flag off, then on: a change of
	 * the pointer alone is ignored) gets there. x86: the -EFAULT comes
	 * back at once; arm64: the exit 39 USERFAULT comes back after every
	 * "resolution" (the page is present), and the repeat guard ends it
	 * with -ELOOP instead of spinning.
	 */
	{
		struct kvm_userspace_memory_region2_uf m;
		struct memfault_vcpu_stats st;
		void *bad = mmap(NULL, ps, PROT_NONE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		ck_assert(bad != MAP_FAILED);
		memset(&m, 0, sizeof(m));
		m.slot = 1;
		m.guest_phys_addr = KT_TEST_GPA;
		m.memory_size = KT_TEST_SIZE;
		m.userspace_addr = (uintptr_t)v.test;
		ck_assert_int_eq(
			ioctl(v.vm_fd, KVM_SET_USER_MEMORY_REGION2, &m), 0);
		m.flags = KVM_MEM_USERFAULT;
		m.userfault_bitmap = (uintptr_t)bad;
		ck_assert_int_eq(
			ioctl(v.vm_fd, KVM_SET_USER_MEMORY_REGION2, &m), 0);
		kt_vcpu_entry(&v, v.vcpu_fd, KT_ENTRY_LOAD);
		rc = kt_dispatch(&v);
		kt_stats(&v, &st);
#if KT_X86
		ck_assert_int_eq(rc, -EFAULT);
		ck_assert_uint_eq(st.repeat_trips, 0);
#else
		ck_assert_int_eq(rc, -ELOOP);
		ck_assert_uint_eq(st.repeat_trips, 1);
		/* the page was present each time: no page_in */
		ck_assert_uint_eq(st.page_ins, 0);
#endif
		munmap(bad, ps);
	}
	kt_vm_destroy(&v);
}
END_TEST

/* ---- uf-2vcpu ------------------------------------------------------------ */

struct vrun {
	struct kt_vm *v;
	struct memfault_vcpu *vcpu;
	struct kvm_run *run;
	int rc_bad; /* first unexpected result, or 0 */
	uint32_t got[KT_PAGES_LOADS];
	int ngot;
	uint64_t cpu_ns, wall_ns;
	struct memfault_vcpu_stats st;
	pthread_barrier_t *start;
};

static void *
vrun_thread(void *p)
{
	struct vrun *a = p;
	uint64_t c0, w0;

	pthread_barrier_wait(a->start);
	c0 = ns_now(CLOCK_THREAD_CPUTIME_ID);
	w0 = ns_now(CLOCK_MONOTONIC);
	while (a->ngot < KT_PAGES_LOADS) {
		int rc = memfault_vcpu_run_dispatch(a->vcpu);

		if (rc != MEMFAULT_RUN_EXIT) {
			a->rc_bad = rc ? rc : -1;
			break;
		}
#if KT_X86
		if (a->run->exit_reason != KVM_EXIT_IO) {
			a->rc_bad = 1000 + (int)a->run->exit_reason;
			break;
		}
		a->got[a->ngot++] =
			*((uint8_t *)a->run + a->run->io.data_offset);
#else
		if (a->run->exit_reason != KVM_EXIT_MMIO) {
			a->rc_bad = 1000 + (int)a->run->exit_reason;
			break;
		}
		{
			uint32_t x;

			memcpy(&x, a->run->mmio.data, 4);
			a->got[a->ngot++] = x;
		}
#endif
	}
	a->cpu_ns = ns_now(CLOCK_THREAD_CPUTIME_ID) - c0;
	a->wall_ns = ns_now(CLOCK_MONOTONIC) - w0;
	memfault_vcpu_get_stats(a->vcpu, &a->st, sizeof(a->st));
	return NULL;
}

START_TEST(uf_2vcpu)
{
	const uint8_t want[KT_PAGES_LOADS] = {
		PAGE_BYTE(0, 0), PAGE_BYTE(2, 0), PAGE_BYTE(1, 0),
		PAGE_BYTE(3, 0), PAGE_BYTE(0, 0),
	};
	struct vrun a[2];
	pthread_barrier_t start;
	pthread_t t[2];
	int fd1;
	struct memfault_vcpu *vcpu1;
	struct ufh h;
	struct kt_vm v;
	uint64_t ins = 0, waits = 0;

	kt_vm_create(&v, 0, "uf-2vcpu");
	kt_region_flags(&v, KT_PAGES_SIZE,
			MEMFAULT_REGION_USERFAULT | MEMFAULT_REGION_MISSING, 0,
			STALE);
	set_page_in(&v, &h);
	/* page 0's fetch takes long enough for the other vCPU to arrive */
	h.slow_ms = 200;
	kt_vcpu_create(&v, KT_ENTRY_PAGES);
	kt_vcpu_add(&v, 1, KT_ENTRY_PAGES, &fd1, &vcpu1);
	memset(a, 0, sizeof(a));
	/* the vCPU threads and this one, which reads their CPU clocks
	 * before either can fault */
	pthread_barrier_init(&start, NULL, 3);
	a[0].vcpu = v.mvcpu;
	a[1].vcpu = vcpu1;
	for (int i = 0; i < 2; i++) {
		a[i].v = &v;
		a[i].start = &start;
		ck_assert_int_eq(memfault_vcpu_get_run(a[i].vcpu, &a[i].run),
				 0);
		ck_assert_int_eq(
			pthread_create(&t[i], NULL, vrun_thread, &a[i]), 0);
		ck_assert_int_eq(pthread_getcpuclockid(t[i], &h.clk[i]), 0);
		h.vc[i] = a[i].vcpu;
	}
	pthread_barrier_wait(&start);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
	pthread_barrier_destroy(&start);
	for (int i = 0; i < 2; i++) {
		ins += a[i].st.page_ins;
		waits += a[i].st.page_waits;
		printf("# uf-2vcpu vcpu %d: page_ins %llu page_waits %llu userfaults %llu cpu %.1f ms wall %.1f ms\n",
		       i, (unsigned long long)a[i].st.page_ins,
		       (unsigned long long)a[i].st.page_waits,
		       (unsigned long long)a[i].st.userfaults,
		       a[i].cpu_ns / 1e6, a[i].wall_ns / 1e6);
	}
	kres_calls(&v, &h);
	kres_printf(KT_ARCH, v.scen, ++v.step,
		    "vcpu0.rc=%d vcpu0.reports=%d vcpu1.rc=%d vcpu1.reports=%d stats.page_ins=%llu",
		    a[0].rc_bad, a[0].ngot, a[1].rc_bad, a[1].ngot,
		    (unsigned long long)ins);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(a[i].rc_bad, 0);
		for (int k = 0; k < KT_PAGES_LOADS; k++)
			ck_assert_uint_eq(a[i].got[k], loaded(want[k]));
	}
	for (int p = 0; p < NPAGES; p++)
		ck_assert_uint_eq(h.calls[p], 1);
	ck_assert_uint_eq(ins, NPAGES);
	/* the other vCPU found page 0 being fetched and waited for it ... */
	ck_assert_uint_ge(waits, 1);
	/* ... asleep: measured over the fetch of page 0 only, so that the
	 * guest's own run time (slow under TCG on a loaded host: 210 ms
	 * for a whole thread once) does not count. A spinning waiter burns
	 * most of the 200 ms; a sleeping one a few ms. */
	ck_assert(h.waiter_measured);
	printf("# uf-2vcpu waiter: %.1f ms of CPU during the %u ms fetch\n",
	       h.waiter_cpu_ns / 1e6, h.slow_ms);
	ck_assert_msg(h.waiter_cpu_ns < 50000000ull,
		      "the waiting vCPU used %.1f ms of CPU during the %u ms fetch",
		      h.waiter_cpu_ns / 1e6, h.slow_ms);
	memfault_vcpu_free(vcpu1);
	close(fd1);
	kt_vm_destroy(&v);
}
END_TEST

/* ---- uf-window ----------------------------------------------------------- */

struct remarker {
	struct memfault_region *r;
	uint64_t page;
	int publish; /* publish the page after marking it (another page) */
	int stop;
	unsigned long marks; /* atomic */
	int err;
};

static void *
remark_thread(void *p)
{
	struct remarker *m = p;

	while (!LD(m->stop)) {
		int r = memfault_region_mark_missing(m->r, m->page, 1);

		if (!r && m->publish)
			r = memfault_region_publish(m->r, m->page, 1);
		if (r) {
			m->err = r;
			break;
		}
		__atomic_fetch_add(&m->marks, 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

static void
window(const char *scen, uint64_t other_page)
{
	struct memfault_fault f;
	struct remarker m;
	struct kt_vm v;
	pthread_t t;
	unsigned runs = 0, exits = 0, leaks = 0, other = 0;
	uint64_t t0, t1;

	kt_vm_create(&v, 0, scen);
	kt_region_flags(&v, KT_TEST_SIZE,
			MEMFAULT_REGION_USERFAULT | MEMFAULT_REGION_MISSING, 0,
			STALE);
	/* page 0 stays missing, never published; page 1 present */
	ck_assert_int_eq(memfault_region_publish(v.region, 1, 1), 0);
	kt_vcpu_create(&v, KT_ENTRY_LOAD);
	memset(&m, 0, sizeof(m));
	m.r = v.region;
	m.page = other_page;
	m.publish = other_page != 0;
	ck_assert_int_eq(pthread_create(&t, NULL, remark_thread, &m), 0);
	/* the re-marker is under way before the first run, and the runs go
	 * on until it has re-marked KT_WINDOW_ITERS / 2 times as well */
	while (!LD(m.marks) && !LD(m.err))
		sched_yield();
	t0 = ns_now(CLOCK_MONOTONIC);
	while ((runs < KT_WINDOW_ITERS || LD(m.marks) < KT_WINDOW_ITERS / 2) &&
	       runs < 50 * KT_WINDOW_ITERS && !LD(m.err)) {
		int rc = memfault_vcpu_run(v.mvcpu);

		runs++;
		if (rc == MEMFAULT_RUN_MEMORY_FAULT &&
		    !memfault_vcpu_get_fault(v.mvcpu, &f, sizeof(f)) &&
		    (f.flags & MEMFAULT_FAULT_USERFAULT) &&
		    f.gpa == KT_TEST_GPA) {
			exits++;
		} else if (rc == MEMFAULT_RUN_EXIT) {
			/* the load completed: the guest read a missing page */
			leaks++;
			break;
		} else {
			other++;
			break;
		}
	}
	t1 = ns_now(CLOCK_MONOTONIC);
	__atomic_store_n(&m.stop, 1, __ATOMIC_RELEASE);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	printf("# %s: %u runs: %u userfault exits, %u leaks, %u other in %.1f ms (%.1f us per run); %lu re-marks of page %llu meanwhile\n",
	       scen, runs, exits, leaks, other, (t1 - t0) / 1e6,
	       runs ? (t1 - t0) / 1e3 / runs : 0.0, m.marks,
	       (unsigned long long)other_page);
	kres_printf(KT_ARCH, scen, ++v.step,
		    "window.leaks=%u window.other=%u window.all_exits=%d window.enough=%d remark.err=%d",
		    leaks, other, exits == runs,
		    runs >= KT_WINDOW_ITERS && m.marks >= KT_WINDOW_ITERS / 2,
		    m.err);
	ck_assert_int_eq(m.err, 0);
	ck_assert_uint_eq(leaks, 0);
	ck_assert_uint_eq(other, 0);
	ck_assert_uint_eq(exits, runs);
	ck_assert_uint_ge(runs, KT_WINDOW_ITERS);
	ck_assert_uint_ge(m.marks, KT_WINDOW_ITERS / 2);
	kt_vm_destroy(&v);
}

START_TEST(uf_window_other)
{
	window("uf-window-other", 1);
}
END_TEST

START_TEST(uf_window_same)
{
	window("uf-window-same", 0);
}
END_TEST

static bool
have_sw_protected(void)
{
	int kvm = kt_kvm_fd();
	int types = kvm >= 0 ? ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES)
			     : 0;

	return types > 0 && (types & (1 << SW_PROTECTED_VM));
}

Suite *
kt_suite_userfault(void)
{
	Suite *s = suite_create("kernel-userfault");
	TCase *tc = tcase_create("userfault");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, uf_probe);
	tcase_add_test(tc, uf_raw);
	tcase_add_test(tc, uf_pages_rearm);
	tcase_add_test(tc, uf_gmem);
#if KT_X86
	if (have_sw_protected())
		tcase_add_test(tc, uf_private);
	else
		printf("# SKIP uf-private: no KVM_X86_SW_PROTECTED_VM (VM type 1)\n");
#else
	(void)have_sw_protected;
#endif
	tcase_add_test(tc, uf_badbitmap);
	tcase_add_test(tc, uf_2vcpu);
	tcase_add_test(tc, uf_window_other);
	tcase_add_test(tc, uf_window_same);
	suite_add_tcase(s, tc);
	return s;
}

/* Whether the kernel has KVM Userfault, as memfault_vm_new() finds out;
 * if not, why, in @why. */
static bool
have_userfault(char *why, size_t len)
{
	MEMFAULT_OPTS(memfault_vm_opts, o, .kvm_fd = kt_kvm_fd(),
		      .arch = KT_ARCH);
	struct memfault_features f;
	struct memfault_vm *vm;
	int fd = ioctl(kt_kvm_fd(), KVM_CREATE_VM, 0ul), r;

	if (fd < 0) {
		snprintf(why, len, "KVM_CREATE_VM: %s", strerror(errno));
		return false;
	}
	r = memfault_vm_new(fd, &o, &vm);
	if (!r) {
		r = memfault_vm_get_features(vm, &f, sizeof(f));
		memfault_vm_free(vm);
	}
	close(fd);
	if (r) {
		snprintf(why, len, "memfault_vm_new: %s", strerror(-r));
		return false;
	}
	if (!(f.flags & MEMFAULT_FEATURE_KVM_USERFAULT)) {
		snprintf(why, len,
			 "no KVM Userfault: the memslot code rejects KVM_MEM_USERFAULT (features %#llx, probe error %d)",
			 (unsigned long long)f.flags, f.userfault_probe_error);
		return false;
	}
	return true;
}

#if defined(KT_SIM)
bool kt_userfault_available(char *why, size_t len);
bool
kt_userfault_available(char *why, size_t len)
{
	return have_userfault(why, len);
}
#endif

#ifndef KT_NO_MAIN
int
main(void)
{
	char why[256];

	kt_init();
	if (kt_kvm_fd() >= 0 && !have_userfault(why, sizeof(why)))
		return tc_skip(NULL, "%s", why);
	return kt_main(kt_suite_userfault());
}
#endif
