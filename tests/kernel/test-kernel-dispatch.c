/* SPDX-License-Identifier: MIT */
/*
 * Regions and dispatch on a real kernel (default VM type, both arches):
 * slot 1 is registered with memfault_region_new() and the guest runs with
 * memfault_vcpu_run_dispatch().
 *   region-load        normal memory: the guest loads what the VMM wrote
 *                      into the region after registering it; the region is
 *                      found by gpa, page by page, and nothing outside it
 *   region-gmem-load   the same with MEMFAULT_REGION_GUEST_MEMFD
 *                      (guest_memfd MMAP|INIT_SHARED, written through its
 *                      mapping)
 *   dispatch-replace   guest_memfd closed: the `other` handler gets the
 *                      exit-39 EFAULT, finds the region and page of its gpa,
 *                      replaces the region by normal memory at the same gpa
 *                      and resolves; one dispatch call runs the guest on to
 *                      report the new memory's contents
 *   dispatch-hwpoison  guest_memfd page hardware-poisoned: the `hwpoison`
 *                      handler gets the EHWPOISON fault and hands it to the
 *                      VMM
 *   dispatch-loop      guest_memfd closed, an `other` handler that resolves
 *                      nothing: the same fault comes back; -ELOOP after the
 *                      default 16 repeats
 * The guest_memfd scenarios need guest_memfd with MMAP|INIT_SHARED, the
 * failing ones also CPU-executed accesses, dispatch-hwpoison also root
 * (kt_require()); region-load runs on every kernel.
 * Handler observations and memfault_vcpu_get_stats() are KRES lines, so the
 * simulator run is compared on them too.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ktest.h"
/* What the VMM writes into a region after registering it. */
#define LATE_PATTERN 0x3c
/* The contents of the memory that replaces a failed guest_memfd. */
#define REPL_PATTERN 0xc3
/* memfault_handlers::max_repeats 0 means this many. */
#define DEFAULT_MAX_REPEATS 16

/* The guest's report of a load of bytes @b: x86 loads one, arm64 four. */
static uint32_t
loaded(uint8_t b)
{
	return KT_X86 ? b : 0x01010101u * b;
}

/* What the handlers saw; one per test. */
struct seen {
	struct kt_vm *v;
	unsigned other, hwpoison;
	struct memfault_fault fault; /* the last one a handler got */
	int find_rc;                 /* memfault_vm_find_region() of its gpa */
	uint64_t find_page;
	int find_same; /* the region found is v->region */
	int replace_rc;
};

static void
seen_fault(struct seen *s, const struct memfault_fault *f)
{
	struct memfault_region *r = NULL;

	s->fault = *f;
	s->find_page = ~0ull;
	s->find_rc = memfault_vm_find_region(s->v->mvm, f->gpa, &r,
					     &s->find_page);
	s->find_same = r && r == s->v->region;
}

/* One KRES line for what the handlers saw. */
static void
kres_seen(struct kt_vm *v, const struct seen *s)
{
	char b1[32], b2[32], b3[32];

	kres_printf(KT_ARCH, v->scen, ++v->step,
		    "handler.other=%u handler.hwpoison=%u handler.gpa=%#llx"
		    " handler.size=%#llx handler.flags=%#llx handler.error=%s"
		    " find.rc=%s find.page=%lld find.same=%d handler.replace=%s",
		    s->other, s->hwpoison, (unsigned long long)s->fault.gpa,
		    (unsigned long long)s->fault.size,
		    (unsigned long long)s->fault.flags,
		    kres_rc_name(s->fault.error, b1, sizeof(b1)),
		    kres_rc_name(s->find_rc, b2, sizeof(b2)),
		    (long long)s->find_page, s->find_same,
		    kres_rc_name(s->replace_rc, b3, sizeof(b3)));
}

static void
set_handlers(struct kt_vm *v, struct seen *s,
	     int (*other)(void *, struct memfault_vcpu *,
			  const struct memfault_fault *),
	     int (*hwpoison)(void *, struct memfault_vcpu *,
			     const struct memfault_fault *))
{
	MEMFAULT_OPTS(memfault_handlers, h, .user = s, .other = other,
		      .hwpoison = hwpoison);

	memset(s, 0, sizeof(*s));
	s->v = v;
	ck_assert_int_eq(memfault_vm_set_handlers(v->mvm, &h), 0);
}

/* The guest loads @b from the region; x86 then halts (arm64 spins). */
static void
expect_guest_loads(struct kt_vm *v, uint8_t b)
{
	kt_expect_report(v, kt_dispatch(v), loaded(b));
#if KT_X86
	kt_expect_exit(v, kt_dispatch(v), KVM_EXIT_HLT);
#endif
}

/* Find the region: every page of it, nothing beside it. */
static void
expect_find(struct kt_vm *v)
{
	uint64_t ps = kt_page_size(), page = ~0ull;
	struct memfault_region *r = NULL;
	struct memfault_region_info info;
	int rc_in, rc_below, rc_end;
	char b1[32], b2[32], b3[32];

	ck_assert_int_eq(memfault_region_get_info(v->region, &info,
						  sizeof(info)),
			 0);
	ck_assert_uint_eq(info.gpa, KT_TEST_GPA);
	ck_assert_uint_eq(info.size, KT_TEST_SIZE);
	ck_assert_uint_eq(info.npages, KT_TEST_SIZE / ps);
	ck_assert_uint_eq(info.page_size, ps);
	ck_assert_uint_eq(info.slot, 1);
	rc_in = memfault_vm_find_region(v->mvm, KT_TEST_GPA + KT_TEST_SIZE - 1,
					&r, &page);
	rc_below = memfault_vm_find_region(v->mvm, KT_TEST_GPA - 1, NULL, NULL);
	rc_end = memfault_vm_find_region(v->mvm, KT_TEST_GPA + KT_TEST_SIZE,
					 NULL, NULL);
	kres_printf(KT_ARCH, v->scen, ++v->step,
		    "region.npages=%llu region.flags=%#llx find.rc=%s"
		    " find.page=%llu find.same=%d find.below=%s find.end=%s",
		    (unsigned long long)info.npages,
		    (unsigned long long)info.flags,
		    kres_rc_name(rc_in, b1, sizeof(b1)),
		    (unsigned long long)page, r == v->region,
		    kres_rc_name(rc_below, b2, sizeof(b2)),
		    kres_rc_name(rc_end, b3, sizeof(b3)));
	ck_assert_int_eq(rc_in, 0);
	ck_assert(r == v->region);
	ck_assert_uint_eq(page, KT_TEST_SIZE / ps - 1);
	ck_assert_int_eq(rc_below, -ENOENT);
	ck_assert_int_eq(rc_end, -ENOENT);
}

static void
expect_gmem(struct kt_vm *v)
{
	struct memfault_features f;

	ck_assert_int_eq(memfault_vm_get_features(v->mvm, &f, sizeof(f)), 0);
	ck_assert_msg(f.flags & MEMFAULT_FEATURE_GUEST_MEMFD,
		      "no guest_memfd on this kernel");
	ck_assert_msg((f.guest_memfd_flags & GMEM_FLAGS) == GMEM_FLAGS,
		      "guest_memfd flags %#llx lack MMAP|INIT_SHARED",
		      (unsigned long long)f.guest_memfd_flags);
	/* no private memory: an EFAULT is no conversion request */
	ck_assert_uint_eq(f.memory_attributes, 0);
}

START_TEST(region_load)
{
	struct memfault_vcpu_stats st;
	struct kt_vm v;

	kt_vm_create(&v, 0, "region-load");
	kt_region_normal(&v, KT_PATTERN);
	expect_find(&v);
	/* written after KVM got the slot: the guest reads the VMM's memory */
	memset(v.test, LATE_PATTERN, KT_TEST_SIZE);
	kt_vcpu_create(&v, KT_ENTRY_LOAD);
	expect_guest_loads(&v, LATE_PATTERN);
	kt_stats(&v, &st);
	ck_assert_uint_eq(st.runs, KT_X86 ? 2 : 1);
	ck_assert_uint_eq(st.exits, st.runs);
	ck_assert_uint_eq(st.memory_faults, 0);
	kt_vm_destroy(&v);
}
END_TEST

START_TEST(region_gmem_load)
{
	struct memfault_vcpu_stats st;
	struct kt_vm v;

	if (!kt_require("region-gmem-load", KT_NEED_GMEM_MMAP))
		return;
	kt_vm_create(&v, 0, "region-gmem-load");
	expect_gmem(&v);
	kt_region_gmem(&v, GMEM_FLAGS, KT_PATTERN);
	expect_find(&v);
	memset(v.gmem_map, LATE_PATTERN, KT_TEST_SIZE);
	kt_vcpu_create(&v, KT_ENTRY_LOAD);
	expect_guest_loads(&v, LATE_PATTERN);
	kt_stats(&v, &st);
	ck_assert_uint_eq(st.memory_faults, 0);
	kt_vm_destroy(&v);
}
END_TEST

/* Resolve a guest_memfd failure as a VMM would: new memory in its place. */
static int
other_replace(void *user, struct memfault_vcpu *vcpu,
	      const struct memfault_fault *f)
{
	struct seen *s = user;

	(void)vcpu;
	s->other++;
	seen_fault(s, f);
	s->replace_rc = kt_region_replace(s->v, REPL_PATTERN);
	return s->replace_rc ? s->replace_rc : MEMFAULT_RESOLVED;
}

START_TEST(dispatch_replace)
{
	uint64_t ps = kt_page_size();
	struct memfault_vcpu_stats st;
	struct seen s;
	struct kt_vm v;

	if (!kt_require("dispatch-replace", KT_NEED_GMEM_MMAP | KT_NEED_CPU_ACCESS))
		return;
	kt_vm_create(&v, 0, "dispatch-replace");
	expect_gmem(&v);
	kt_region_gmem(&v, GMEM_FLAGS, KT_PATTERN);
	set_handlers(&v, &s, other_replace, NULL);
	kt_vcpu_create(&v, KT_ENTRY_LOAD);
	kt_vm_close_gmem(&v);
	expect_guest_loads(&v, REPL_PATTERN);
	kres_seen(&v, &s);
	ck_assert_uint_eq(s.other, 1);
	ck_assert_uint_eq(s.fault.gpa, KT_TEST_GPA);
	ck_assert_uint_eq(s.fault.size, ps);
	ck_assert_uint_eq(s.fault.flags, 0);
	ck_assert_int_eq(s.fault.error, -EFAULT);
	ck_assert_int_eq(s.find_rc, 0);
	ck_assert_uint_eq(s.find_page, 0);
	ck_assert(s.find_same);
	ck_assert_int_eq(s.replace_rc, 0);
	kt_stats(&v, &st);
	ck_assert_uint_eq(st.memory_faults, 1);
	ck_assert_uint_eq(st.other_faults, 1);
	ck_assert_uint_eq(st.retries, 1);
	ck_assert_uint_eq(st.to_vmm, 0);
	ck_assert_uint_eq(st.conversions, 0);
	kt_vm_destroy(&v);
}
END_TEST

static int
hwpoison_to_vmm(void *user, struct memfault_vcpu *vcpu,
		const struct memfault_fault *f)
{
	struct seen *s = user;

	(void)vcpu;
	s->hwpoison++;
	seen_fault(s, f);
	return MEMFAULT_TO_VMM;
}

static int
other_never(void *user, struct memfault_vcpu *vcpu,
	    const struct memfault_fault *f)
{
	struct seen *s = user;

	(void)vcpu;
	s->other++;
	seen_fault(s, f);
	return -ENOTRECOVERABLE;
}

static void
on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)si, (void)uc;
}

START_TEST(dispatch_hwpoison)
{
	uint64_t ps = kt_page_size();
	struct memfault_vcpu_stats st;
	struct seen s;
	struct kt_vm v;

	if (!kt_require("dispatch-hwpoison", KT_NEED_GMEM_MMAP | KT_NEED_CPU_ACCESS | KT_NEED_ROOT))
		return;
	tc_catch_signal(SIGBUS, on_sigbus);

	kt_vm_create(&v, 0, "dispatch-hwpoison");
	expect_gmem(&v);
	kt_region_gmem(&v, GMEM_FLAGS, KT_PATTERN);
	set_handlers(&v, &s, other_never, hwpoison_to_vmm);
	kt_vcpu_create(&v, KT_ENTRY_LOAD);
#if defined(KT_SIM)
	ck_assert_int_eq(kvmsim_poison(v.vm_fd, KT_TEST_GPA), 0);
#else
	{
		/* EBUSY + SIGBUS on guest_memfd (test-kernel-faults.c) */
		int r = madvise(v.gmem_map, ps, MADV_HWPOISON);

		ck_assert_msg(r == 0 || errno == EBUSY,
			      "madvise(MADV_HWPOISON): %s", strerror(errno));
	}
#endif
	kt_expect_fault(&v, kt_dispatch(&v), KT_TEST_GPA, ps,
			MEMFAULT_FAULT_HWPOISON, 0, -EHWPOISON,
			MEMFAULT_ORIGIN_ERRNO);
	kres_seen(&v, &s);
	ck_assert_uint_eq(s.hwpoison, 1);
	ck_assert_uint_eq(s.other, 0);
	ck_assert_uint_eq(s.fault.flags, MEMFAULT_FAULT_HWPOISON);
	ck_assert_int_eq(s.fault.error, -EHWPOISON);
	ck_assert_int_eq(s.find_rc, 0);
	ck_assert_uint_eq(s.find_page, 0);
	ck_assert(s.find_same);
	kt_stats(&v, &st);
	ck_assert_uint_eq(st.runs, 1);
	ck_assert_uint_eq(st.memory_faults, 1);
	ck_assert_uint_eq(st.hwpoison, 1);
	ck_assert_uint_eq(st.to_vmm, 1);
	ck_assert_uint_eq(st.other_faults, 0);
	ck_assert_uint_eq(st.retries, 0);
	kt_vm_destroy(&v);
}
END_TEST

/* Claims to have resolved the fault, and did nothing. */
static int
other_liar(void *user, struct memfault_vcpu *vcpu,
	   const struct memfault_fault *f)
{
	struct seen *s = user;

	(void)vcpu;
	s->other++;
	seen_fault(s, f);
	return MEMFAULT_RESOLVED;
}

START_TEST(dispatch_loop)
{
	uint64_t ps = kt_page_size();
	struct memfault_vcpu_stats st;
	struct seen s;
	struct kt_vm v;

	if (!kt_require("dispatch-loop", KT_NEED_GMEM_MMAP | KT_NEED_CPU_ACCESS))
		return;
	kt_vm_create(&v, 0, "dispatch-loop");
	expect_gmem(&v);
	kt_region_gmem(&v, GMEM_FLAGS, KT_PATTERN);
	set_handlers(&v, &s, other_liar, NULL);
	kt_vcpu_create(&v, KT_ENTRY_LOAD);
	kt_vm_close_gmem(&v);
	ck_assert_int_eq(kt_dispatch(&v), -ELOOP);
	/* the fault that came back stays readable */
	ck_assert_int_eq(v.get_fault_rc, 0);
	ck_assert_uint_eq(v.fault.gpa, KT_TEST_GPA);
	ck_assert_uint_eq(v.fault.size, ps);
	ck_assert_int_eq(v.fault.error, -EFAULT);
	kres_seen(&v, &s);
	/* resolved once, then max_repeats times more; the next is the trip */
	ck_assert_uint_eq(s.other, DEFAULT_MAX_REPEATS + 1);
	kt_stats(&v, &st);
	ck_assert_uint_eq(st.repeat_trips, 1);
	ck_assert_uint_eq(st.runs, DEFAULT_MAX_REPEATS + 2);
	ck_assert_uint_eq(st.memory_faults, DEFAULT_MAX_REPEATS + 2);
	ck_assert_uint_eq(st.other_faults, DEFAULT_MAX_REPEATS + 1);
	ck_assert_uint_eq(st.retries, DEFAULT_MAX_REPEATS + 1);
	ck_assert_uint_eq(st.to_vmm, 0);
	kt_vm_destroy(&v);
}
END_TEST

Suite *
kt_suite_dispatch(void)
{
	return tc_suite("kernel-dispatch", "dispatch", 60,
			region_load,
			region_gmem_load,
			dispatch_replace,
			dispatch_hwpoison,
			dispatch_loop,
			NULL);
}

#ifndef KT_NO_MAIN
int
main(void)
{
	/* No kernel version: each scenario states its needs (kt_require()). */
	return kt_main(kt_suite_dispatch());
}
#endif
