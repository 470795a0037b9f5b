/* SPDX-License-Identifier: MIT */
/*
 * PRIVATE memory faults on a real kernel. They need VM type 1
 * (KVM_X86_SW_PROTECTED_VM), which only a kernel built with
 * CONFIG_KVM_SW_PROTECTED_VM offers; this executable exits 77 (SKIP) on
 * any other kernel and on arm64. Check has no per-test skip, hence its own
 * executable.
 *   swprot-features  type-1 VM: MEMORY_ATTRIBUTES = PRIVATE, guest_memfd
 *                    flags MMAP only (INIT_SHARED is refused there)
 *   swprot-private   normal (non-gmem) slot marked PRIVATE: the load is a
 *                    private access that guest_memfd cannot serve, so exit
 *                    39 with KVM_MEMORY_EXIT_FLAG_PRIVATE and EFAULT; the
 *                    VMM converts the range back to shared and the guest
 *                    proceeds to load the pattern and halt
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "ktest.h"

#if KT_X86
START_TEST(swprot_features)
{
	struct memfault_features f;
	struct kt_vm v;

	kt_vm_create(&v, KVM_X86_SW_PROTECTED_VM, "swprot-features");
	ck_assert_int_eq(memfault_vm_get_features(v.mvm, &f, sizeof(f)), 0);
	kres_features(KT_ARCH, "swprot-features", 1, &f);
	ck_assert(f.flags & MEMFAULT_FEATURE_MEMORY_ATTRIBUTES);
	ck_assert(f.memory_attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE);
	ck_assert(f.flags & MEMFAULT_FEATURE_MEMORY_FAULT_INFO);
	ck_assert(f.flags & MEMFAULT_FEATURE_MEMORY_FAULT_EXITS);
	ck_assert(f.flags & MEMFAULT_FEATURE_GUEST_MEMFD);
	if (kt_kernel_is("7.2.")) {
		ck_assert_uint_eq(f.memory_attributes,
				  KVM_MEMORY_ATTRIBUTE_PRIVATE);
		ck_assert_uint_eq(f.guest_memfd_flags, GUEST_MEMFD_FLAG_MMAP);
		ck_assert(!(f.flags & MEMFAULT_FEATURE_KVM_USERFAULT));
		ck_assert_int_eq(f.userfault_probe_error, 0);
	}
	kt_vm_destroy(&v);
}
END_TEST

START_TEST(swprot_private)
{
	uint64_t ps = kt_page_size();
	struct kt_vm v;

	kt_vm_create(&v, KVM_X86_SW_PROTECTED_VM, "swprot-private");
	kt_vm_normal_slot(&v);
	ck_assert_int_eq(kt_vm_set_attributes(&v, KT_TEST_GPA, KT_TEST_SIZE,
					      KVM_MEMORY_ATTRIBUTE_PRIVATE),
			 0);
	kt_vcpu_create(&v, KT_ENTRY_LOAD);
	kt_expect_fault(&v, kt_run(&v), KT_TEST_GPA, ps, MEMFAULT_FAULT_PRIVATE,
			KVM_MEMORY_EXIT_FLAG_PRIVATE, -EFAULT,
			MEMFAULT_ORIGIN_ERRNO);
	/* Implicit conversion: flip the reported range back to shared. */
	ck_assert_int_eq(kt_vm_set_attributes(&v, v.fault.gpa, v.fault.size, 0),
			 0);
	kt_expect_report(&v, kt_run(&v), KT_PATTERN);
	kt_expect_exit(&v, kt_run(&v), KVM_EXIT_HLT);
	kt_vm_destroy(&v);
}
END_TEST

Suite *
kt_suite_swprot(void)
{
	Suite *s = suite_create("kernel-swprot");
	TCase *tc = tcase_create("swprot");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, swprot_features);
	tcase_add_test(tc, swprot_private);
	suite_add_tcase(s, tc);
	return s;
}
#endif

#ifndef KT_NO_MAIN
int
main(void)
{
	kt_init();
#if KT_X86
	if (kt_kvm_fd() >= 0) {
		int types = ioctl(kt_kvm_fd(), KVM_CHECK_EXTENSION,
				  KVM_CAP_VM_TYPES);

		if (types < 0 || !(types & (1 << KVM_X86_SW_PROTECTED_VM))) {
			printf("# SKIP: VM type 1 (KVM_X86_SW_PROTECTED_VM) is not "
			       "offered by this kernel (KVM_CAP_VM_TYPES = %#x): "
			       "it needs CONFIG_KVM_SW_PROTECTED_VM\n",
			       types < 0 ? 0 : types);
			return 77;
		}
	}
	return kt_main(kt_suite_swprot());
#else
	printf("# SKIP: KVM_X86_SW_PROTECTED_VM exists on x86_64 only\n");
	return 77;
#endif
}
#endif
