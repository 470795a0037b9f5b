/* SPDX-License-Identifier: MIT */
/*
 * Memory faults on a real kernel: the guest loads from KT_TEST_GPA, which is
 * backed by a normal memslot or by guest_memfd that was made to fail. The
 * guest_memfd scenarios need guest_memfd with MMAP|INIT_SHARED on a default
 * VM and CPU-executed accesses (kt_require(); the exit-39 expectations are
 * those of the stage-2 fault path), gmem-hwpoison also root; the others run
 * on every kernel.
 *   load-normal       normal slot: the load succeeds (baseline)
 *   gmem-load         guest_memfd slot, intact: the load succeeds (baseline)
 *   gmem-efault       guest_memfd fd closed: exit 39, EFAULT, flags 0
 *   gmem-hwpoison     guest_memfd page MADV_HWPOISONed: exit 39, EHWPOISON
 *   badhva            normal slot, hva PROT_NONE: unannotated -EFAULT where
 *                     the CPU executes guest accesses; where KVM emulates
 *                     them (PVM) an MMIO read at the gpa, whose value the
 *                     VMM supplies
 *   fault-then-efault a memory fault, then an unannotated EFAULT in the same
 *                     vCPU: the second must not be taken for the first
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ktest.h"

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
}

/* After the report, x86 halts; arm64 spins and is not run further. */
static void
expect_load_ok(struct kt_vm *v)
{
	kt_expect_report(v, kt_run(v), 0x5a5a5a5aU);
#if KT_X86
	kt_expect_exit(v, kt_run(v), KVM_EXIT_HLT);
#endif
}

START_TEST(load_normal)
{
	struct kt_vm v;

	kt_vm_create(&v, 0, "load-normal");
	kt_vm_normal_slot(&v);
	kt_vcpu_create(&v, KT_ENTRY_LOAD);
	expect_load_ok(&v);
	kt_vm_destroy(&v);
}
END_TEST

START_TEST(gmem_load)
{
	struct kt_vm v;

	if (!kt_require("gmem-load", KT_NEED_GMEM_MMAP))
		return;
	kt_vm_create(&v, 0, "gmem-load");
	expect_gmem(&v);
	kt_vm_gmem_slot(&v, GMEM_FLAGS);
	kt_vcpu_create(&v, KT_ENTRY_LOAD);
	expect_load_ok(&v);
	kt_vm_destroy(&v);
}
END_TEST

START_TEST(gmem_efault)
{
	struct kt_vm v;
	uint64_t ps = kt_page_size();

	if (!kt_require("gmem-efault", KT_NEED_GMEM_MMAP | KT_NEED_CPU_ACCESS))
		return;
	kt_vm_create(&v, 0, "gmem-efault");
	expect_gmem(&v);
	kt_vm_gmem_slot(&v, GMEM_FLAGS);
	kt_vcpu_create(&v, KT_ENTRY_LOAD);
	kt_vm_close_gmem(&v);
	kt_expect_fault(&v, kt_run(&v), KT_TEST_GPA, ps, 0, 0, -EFAULT,
			MEMFAULT_ORIGIN_ERRNO);
	/* Not resolved: the same fault, freshly reported, again. */
	kt_expect_fault(&v, kt_run(&v), KT_TEST_GPA, ps, 0, 0, -EFAULT,
			MEMFAULT_ORIGIN_ERRNO);
	kt_vm_destroy(&v);
}
END_TEST

static volatile sig_atomic_t sigbus_code;

static void
on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)uc;
	sigbus_code = si->si_code;
}

START_TEST(gmem_hwpoison)
{
	struct kt_vm v;
	uint64_t ps = kt_page_size();
	int r, err;

	if (!kt_require("gmem-hwpoison",
			KT_NEED_GMEM_MMAP | KT_NEED_CPU_ACCESS | KT_NEED_ROOT))
		return;
	tc_catch_signal(SIGBUS, on_sigbus);

	kt_vm_create(&v, 0, "gmem-hwpoison");
	expect_gmem(&v);
	kt_vm_gmem_slot(&v, GMEM_FLAGS);
	kt_vcpu_create(&v, KT_ENTRY_LOAD);
#if defined(KT_SIM)
	(void)r, (void)err;
	ck_assert_int_eq(kvmsim_poison(v.vm_fd, KT_TEST_GPA), 0);
#else
	/* On guest_memfd this poisons the page but returns EBUSY, and
	 * sends this thread SIGBUS (BUS_MCEERR_AR): the page is mapped. */
	r = madvise(v.gmem_map, ps, MADV_HWPOISON);
	err = r ? errno : 0;
	printf("# gmem-hwpoison: madvise(MADV_HWPOISON) = %d (%s), SIGBUS si_code %d\n",
	       r, err ? strerror(err) : "ok", (int)sigbus_code);
	ck_assert_msg(r == 0 || err == EBUSY, "madvise(MADV_HWPOISON): %s",
		      strerror(err));
#endif
	kt_expect_fault(&v, kt_run(&v), KT_TEST_GPA, ps, MEMFAULT_FAULT_HWPOISON,
			0, -EHWPOISON, MEMFAULT_ORIGIN_ERRNO);
	kt_vm_destroy(&v);
}
END_TEST

static void
expect_unannotated_efault(struct kt_vm *v, int rc)
{
	ck_assert_msg(rc == -EFAULT, "%s step %d: run returned %d, want -EFAULT",
		      v->scen, v->step, rc);
	ck_assert_int_ne(v->run->exit_reason, KVM_EXIT_MEMORY_FAULT);
	ck_assert_int_eq(v->get_fault_rc, -ENODATA);
}

START_TEST(badhva)
{
	struct kt_vm v;

	kt_vm_create(&v, 0, "badhva");
	kt_vm_normal_slot(&v);
	ck_assert_int_eq(mprotect(v.test, KT_TEST_SIZE, PROT_NONE), 0);
	kt_vcpu_create(&v, KT_ENTRY_LOAD);
	if (kt_accesses_emulated()) {
		/* The emulator takes the unreadable gpa for MMIO: the VMM's
		 * value reaches the guest, no error, no fault. */
		kt_expect_mmio_read(&v, kt_run(&v), KT_TEST_GPA, KT_X86 ? 1 : 4,
				    0x77);
		ck_assert_int_eq(v.get_fault_rc, -ENODATA);
		kt_expect_report(&v, kt_run(&v), 0x77);
	} else {
		expect_unannotated_efault(&v, kt_run(&v));
	}
	kt_vm_destroy(&v);
}
END_TEST

START_TEST(fault_then_efault)
{
	struct kvm_userspace_memory_region2 r;
	struct kt_vm v;
	uint64_t ps = kt_page_size();

	if (!kt_require("fault-then-efault",
			KT_NEED_GMEM_MMAP | KT_NEED_CPU_ACCESS))
		return;
	kt_vm_create(&v, 0, "fault-then-efault");
	expect_gmem(&v);
	kt_vm_gmem_slot(&v, GMEM_FLAGS);
	kt_vcpu_create(&v, KT_ENTRY_LOAD);
	kt_vm_close_gmem(&v);
	kt_expect_fault(&v, kt_run(&v), KT_TEST_GPA, ps, 0, 0, -EFAULT,
			MEMFAULT_ORIGIN_ERRNO);
	/* Replace slot 1 by a normal slot whose memory is not accessible. */
	memset(&r, 0, sizeof(r));
	r.slot = 1;
	r.guest_phys_addr = KT_TEST_GPA;
	ck_assert_int_eq(ioctl(v.vm_fd, KVM_SET_USER_MEMORY_REGION2, &r), 0);
	v.test = mmap(NULL, KT_TEST_SIZE, PROT_NONE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert(v.test != MAP_FAILED);
	r.memory_size = KT_TEST_SIZE;
	r.userspace_addr = (uintptr_t)v.test;
	ck_assert_int_eq(ioctl(v.vm_fd, KVM_SET_USER_MEMORY_REGION2, &r), 0);
	expect_unannotated_efault(&v, kt_run(&v));
	kt_vm_destroy(&v);
}
END_TEST

Suite *
kt_suite_faults(void)
{
	return tc_suite("kernel-faults", "faults", 60,
			load_normal,
			gmem_load,
			gmem_efault,
			gmem_hwpoison,
			badhva,
			fault_then_efault,
			NULL);
}

#ifndef KT_NO_MAIN
int
main(void)
{
	/* No kernel version: each scenario states its needs (kt_require()). */
	return kt_main(kt_suite_faults());
}
#endif
