/* SPDX-License-Identifier: MIT */
/*
 * memfault_vm_get_features() on a real kernel, default VM type. What Linux
 * 7.2 offers (tests/kernel/README.md has the table):
 *   x86_64  MEMORY_FAULT_INFO advertised, hence MEMORY_FAULT_EXITS
 *   arm64   MEMORY_FAULT_INFO not advertised, MEMORY_FAULT_EXITS all the
 *           same (gmem_abort() emits exit 39 without the capability)
 *   both    USER_MEMORY2, GUEST_MEMFD, GUEST_MEMFD_FLAGS = MMAP|INIT_SHARED,
 *           no MEMORY_ATTRIBUTES on a default VM, no KVM Userfault (not
 *           merged) and a clean userfault probe (error 0)
 * The exact values are asserted on 7.2 kernels (uname -r 7.2.*); on others
 * only the relations that must hold everywhere, so that the suite also
 * runs on whatever /dev/kvm a host has.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "ktest.h"

START_TEST(features)
{
	struct memfault_features f;
	struct kt_vm v;
	bool is72 = kt_kernel_is("7.2.");

	kt_vm_create(&v, 0, "features");
	memset(&f, 0xff, sizeof(f));
	ck_assert_int_eq(memfault_vm_get_features(v.mvm, &f, sizeof(f)), 0);
	kres_features(KT_ARCH, "features", 1, &f);

	ck_assert_int_eq(f.arch, KT_ARCH);
	ck_assert_uint_eq(f.page_size, kt_page_size());
	for (int i = 0; i < 3; i++)
		ck_assert_uint_eq(f.reserved[i], 0);
	/* Everywhere: the exits need the capability (or arm64 guest_memfd)
	 * and a source: guest_memfd, memory attributes or KVM Userfault;
	 * arm64 never advertises the capability; the value fields agree
	 * with their flags. */
	ck_assert_int_eq(!!(f.flags & MEMFAULT_FEATURE_MEMORY_FAULT_EXITS),
			 (KT_ARM64 || (f.flags & MEMFAULT_FEATURE_MEMORY_FAULT_INFO)) &&
				 !!(f.flags & (MEMFAULT_FEATURE_GUEST_MEMFD |
					       MEMFAULT_FEATURE_MEMORY_ATTRIBUTES |
					       MEMFAULT_FEATURE_KVM_USERFAULT)));
#if KT_ARM64
	ck_assert(!(f.flags & MEMFAULT_FEATURE_MEMORY_FAULT_INFO));
	/* ... and with guest_memfd the exits come all the same. */
	if (f.flags & MEMFAULT_FEATURE_GUEST_MEMFD)
		ck_assert(f.flags & MEMFAULT_FEATURE_MEMORY_FAULT_EXITS);
#endif
	ck_assert_int_eq(!!(f.flags & MEMFAULT_FEATURE_MEMORY_ATTRIBUTES),
			 f.memory_attributes != 0);
	ck_assert_int_eq(!!(f.flags & MEMFAULT_FEATURE_GUEST_MEMFD_FLAGS),
			 f.guest_memfd_flags != 0);
	if (is72) {
		ck_assert(f.flags & MEMFAULT_FEATURE_USER_MEMORY2);
		ck_assert(f.flags & MEMFAULT_FEATURE_GUEST_MEMFD);
		ck_assert(f.flags & MEMFAULT_FEATURE_MEMORY_FAULT_EXITS);
#if KT_X86
		ck_assert(f.flags & MEMFAULT_FEATURE_MEMORY_FAULT_INFO);
#endif
		ck_assert_msg(f.guest_memfd_flags ==
				      (GUEST_MEMFD_FLAG_MMAP |
				       GUEST_MEMFD_FLAG_INIT_SHARED),
			      "guest_memfd_flags %#llx, want 0x3",
			      (unsigned long long)f.guest_memfd_flags);
		ck_assert_uint_eq(f.memory_attributes, 0);
		ck_assert(!(f.flags & MEMFAULT_FEATURE_MEMORY_ATTRIBUTES));
		ck_assert(!(f.flags & MEMFAULT_FEATURE_KVM_USERFAULT));
		ck_assert_int_eq(f.userfault_probe_error, 0);
#if KT_X86
		ck_assert_uint_eq(f.flags, MEMFAULT_FEATURE_USER_MEMORY2 |
						   MEMFAULT_FEATURE_MEMORY_FAULT_INFO |
						   MEMFAULT_FEATURE_MEMORY_FAULT_EXITS |
						   MEMFAULT_FEATURE_GUEST_MEMFD |
						   MEMFAULT_FEATURE_GUEST_MEMFD_FLAGS);
#else
		ck_assert_uint_eq(f.flags, MEMFAULT_FEATURE_USER_MEMORY2 |
						   MEMFAULT_FEATURE_MEMORY_FAULT_EXITS |
						   MEMFAULT_FEATURE_GUEST_MEMFD |
						   MEMFAULT_FEATURE_GUEST_MEMFD_FLAGS);
#endif
	}
	kt_vm_destroy(&v);
}
END_TEST

/* The probe can be switched off, and then says so. */
#if !defined(KT_SIM)
/*
 * The KVM Userfault probe creates no memslot in the caller's VM: with
 * KVM_SET_USER_MEMORY_REGION(2) on the VM's fd refused by seccomp in the
 * probing thread, it still answers. Real kernel only (kvmsim's ioctl()
 * is a function, not a system call); no KRES line, so that the
 * simulator's run has the same ones.
 */
START_TEST(features_probe_no_memslot)
{
	struct memfault_features f, pf;
	struct kt_vm v;
	int r;

	kt_vm_create(&v, 0, "features-probe-no-memslot");
	ck_assert_int_eq(memfault_vm_get_features(v.mvm, &f, sizeof(f)), 0);
	r = kt_probe_without_memslots(v.vm_fd, &pf);
	if (r == -ENOSYS || r == -EINVAL) {
		printf("# features-probe-no-memslot: no seccomp filters (%s)\n",
		       strerror(-r));
	} else {
		ck_assert_msg(r == 0, "probe: %s", strerror(-r));
		ck_assert_int_eq(pf.userfault_probe_error, 0);
		ck_assert_uint_eq(pf.flags, f.flags);
		printf("# features-probe-no-memslot: features %#llx with "
		       "memslot ioctls refused\n",
		       (unsigned long long)pf.flags);
	}
	kt_vm_destroy(&v);
}
END_TEST
#endif

START_TEST(features_no_probe)
{
	MEMFAULT_OPTS(memfault_vm_opts, opts,
		      .flags = MEMFAULT_VM_NO_USERFAULT_PROBE,
		      .kvm_fd = kt_kvm_fd(), .arch = KT_ARCH);
	struct memfault_features f;
	struct memfault_vm *vm;
	int fd = ioctl(kt_kvm_fd(), KVM_CREATE_VM, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(memfault_vm_new(fd, &opts, &vm), 0);
	ck_assert_int_eq(memfault_vm_get_features(vm, &f, sizeof(f)), 0);
	kres_features(KT_ARCH, "features-no-probe", 1, &f);
	ck_assert_int_eq(f.arch, KT_ARCH);
	ck_assert_int_eq(f.userfault_probe_error, -ECANCELED);
	ck_assert(!(f.flags & MEMFAULT_FEATURE_KVM_USERFAULT));
	memfault_vm_free(vm);
	close(fd);
}
END_TEST

Suite *
kt_suite_features(void)
{
	return tc_suite("kernel-features", "features", 60,
			features,
			features_no_probe,
#if !defined(KT_SIM)
			features_probe_no_memslot,
#endif
			NULL);
}

#ifndef KT_NO_MAIN
int
main(void)
{
	return kt_main(kt_suite_features());
}
#endif
