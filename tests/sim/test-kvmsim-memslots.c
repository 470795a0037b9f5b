/* SPDX-License-Identifier: MIT */
/*
 * kvmsim's own tests, memslots:
 * Memslot and guest_memfd validation: the checks and errnos of
 * __kvm_set_memory_region() and kvm_gmem_create(), and the KVM
 * Userfault flag on a guest_memfd slot.
 * Each test names its source with the tags of sim-raw.h.
 */
#include "sim-raw.h"

/* ======================================================================
 * Memslots
 * ====================================================================== */

/* __kvm_set_memory_region() checks and errnos ([RS] for USERFAULT). */
START_TEST(memslot_validation)
{
	uint32_t arch = LOOP_ARCH(_i), level = LOOP_LEVEL(_i);
	bool x86 = arch == KVMSIM_X86_64;
	uint32_t maxslot = x86 ? 32764 : 32767;
	uint64_t gpa;
	struct sim s;
	uint8_t *mem;

	start(&s, arch, level);
	gpa = s.test_gpa;
	mem = pages(&s, 4, 0x5a);

	/* alignment */
	ck_assert_int_eq(region1(s.vm, 0, 0, gpa + 1, s.page, mem), EINVAL);
	ck_assert_int_eq(region1(s.vm, 0, 0, gpa, s.page + 1, mem), EINVAL);
	ck_assert_int_eq(region1(s.vm, 0, 0, gpa, s.page, mem + 1), EINVAL);
	/* hva beyond the user address space (access_ok) */
	ck_assert_int_eq(region1(s.vm, 0, 0, gpa, s.page,
				 (void *)(uintptr_t)(1ull << 60)),
			 EINVAL);
	/* slot ids */
	ck_assert_int_eq(region1(s.vm, maxslot, 0, gpa, s.page, mem), EINVAL);
	ck_assert_int_eq(region1(s.vm, maxslot - 1, 0, gpa, s.page, mem), 0);
	/* delete */
	ck_assert_int_eq(region1(s.vm, maxslot - 1, 0, gpa, 0, mem), 0);
	/* gone */
	ck_assert_int_eq(region1(s.vm, maxslot - 1, 0, gpa, 0, mem), EINVAL);
	/* x86 has the SMM address space (as_id 1) for non-private VMs */
	ck_assert_int_eq(region1(s.vm, 1u << 16 | 3, 0, gpa, s.page, mem),
			 x86 ? 0 : EINVAL);
	ck_assert_int_eq(region1(s.vm, 2u << 16 | 3, 0, gpa, s.page, mem),
			 EINVAL);
	/* flags: LOG_DIRTY and READONLY always; others not through v1 */
	ck_assert_int_eq(region1(s.vm, 0,
				 KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY,
				 gpa, 2 * s.page, mem),
			 0);
	ck_assert_int_eq(region1(s.vm, 1, KVM_MEM_GUEST_MEMFD, gpa + 2 * s.page,
				 s.page, mem + 2 * s.page),
			 EINVAL);
	ck_assert_int_eq(region1(s.vm, 1, KVM_MEM_USERFAULT, gpa + 2 * s.page,
				 s.page, mem + 2 * s.page),
			 EINVAL);
	/* overlap */
	ck_assert_int_eq(
		region1(s.vm, 1, 0, gpa + s.page, 2 * s.page, mem + 2 * s.page),
		EEXIST);
	ck_assert_int_eq(region1(s.vm, 1, 0, gpa + 2 * s.page, 2 * s.page,
				 mem + 2 * s.page),
			 0);
	/*
	 * modify: hva, size and READONLY are
	 * fixed; moving and other flags are not
	 */
	ck_assert_int_eq(region1(s.vm, 0,
				 KVM_MEM_READONLY | KVM_MEM_LOG_DIRTY_PAGES,
				 gpa, 2 * s.page, mem + s.page),
			 EINVAL);
	ck_assert_int_eq(
		region1(s.vm, 0, KVM_MEM_LOG_DIRTY_PAGES, gpa, 2 * s.page, mem),
		EINVAL);
	ck_assert_int_eq(
		region1(s.vm, 0, KVM_MEM_READONLY, gpa, 2 * s.page, mem), 0);
	ck_assert_int_eq(region1(s.vm, 0, KVM_MEM_READONLY, gpa + s.page,
				 2 * s.page, mem),
			 EEXIST);
	ck_assert_int_eq(region1(s.vm, 0, KVM_MEM_READONLY, gpa + 8 * s.page,
				 2 * s.page, mem),
			 0);
	if (!x86) {
		/*
		 * beyond the VM's IPA size:
		 * kvm_arch_prepare_memory_region() EFAULT
		 */
		ck_assert_int_eq(region1(s.vm, 5, 0, 1ull << 40, s.page, mem),
				 EFAULT);
		ck_assert_int_eq(
			region1(s.vm, 5, 0, (1ull << 40) - s.page, s.page, mem),
			0);
	}
	if (level < KVMSIM_LEVEL_6_8)
		return;
	/* region2: USERFAULT (1 << 3) only with KVM Userfault; 1 << 4 never */
	ck_assert_int_eq(region2(s.vm, 6, KVM_MEM_USERFAULT, gpa + 16 * s.page,
				 s.page, mem, 0, 0, mem + 3 * s.page),
			 level == KVMSIM_LEVEL_7_2_UF ? 0 : EINVAL);
	ck_assert_int_eq(region2(s.vm, 7, 1u << 4, gpa + 17 * s.page, s.page,
				 mem, 0, 0, NULL),
			 EINVAL);
	if (level == KVMSIM_LEVEL_7_2_UF) {
		/*
		 * the bitmap is only range-checked
		 * (access_ok) when the slot is set
		 */
		ck_assert_int_eq(region2(s.vm, 7, KVM_MEM_USERFAULT,
					 gpa + 17 * s.page, s.page, mem, 0, 0,
					 (void *)(uintptr_t)(1ull << 60)),
				 EINVAL);
		ck_assert_int_eq(region2(s.vm, 7, KVM_MEM_USERFAULT,
					 gpa + 17 * s.page, s.page, mem, 0, 0,
					 NULL),
				 0);
		/* toggled off and on again on a normal slot (FLAGS_ONLY) */
		ck_assert_int_eq(region2(s.vm, 7, 0, gpa + 17 * s.page, s.page,
					 mem, 0, 0, NULL),
				 0);
		ck_assert_int_eq(region2(s.vm, 7, KVM_MEM_USERFAULT,
					 gpa + 17 * s.page, s.page, mem, 0, 0,
					 mem),
				 0);
	}
}
END_TEST

/* [NK] gmem-misc (oob) and kvm_gmem_bind()/kvm_gmem_create() checks, 7.2. */
START_TEST(gmem_validation)
{
	uint32_t arch = (uint32_t)_i + 1;
	bool x86 = arch == KVMSIM_X86_64;
	struct sim s;
	uint8_t *mem;
	int g, g0, other_vm, g_other, devnull;
	uint64_t gpa;

	start(&s, arch, KVMSIM_LEVEL_7_2);
	gpa = s.test_gpa;
	mem = pages(&s, 8, 0);

	ck_assert_int_eq(create_gmem(s.vm, 0, 0), -EINVAL);
	ck_assert_int_eq(create_gmem(s.vm, s.page + 1, 0), -EINVAL);
	/* negative loff_t */
	ck_assert_int_eq(create_gmem(s.vm, (uint64_t)-s.page, 0), -EINVAL);
	ck_assert_int_eq(create_gmem(s.vm, s.page, 1u << 2), -EINVAL);
	g = create_gmem(s.vm, 2 * s.page,
			GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
	ck_assert_int_ge(g, 0);
	ck_assert_int_eq(kvmsim_fd_kind(g), KVMSIM_FD_GMEM);
	/*
	 * get_unused_fd_flags(0): a guest_memfd
	 * is not close-on-exec; VM and vCPU are
	 */
	ck_assert_int_eq(fcntl(g, F_GETFD) & FD_CLOEXEC, 0);
	ck_assert_int_ne(fcntl(s.vm, F_GETFD) & FD_CLOEXEC, 0);
	ck_assert_int_ne(fcntl(s.vcpu, F_GETFD) & FD_CLOEXEC, 0);
	/* a guest_memfd has no ioctls */
	ck_assert_int_eq(ioctl(g, KVM_CHECK_EXTENSION, 0), -1);
	ck_assert_int_eq(errno, ENOTTY);

	/*
	 * "slot size 16K on an 8K gmem, or guest_memfd_offset = size" -> EINVAL
	 */
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, gpa, 4 * s.page,
				 mem, g, 0, NULL),
			 EINVAL);
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, gpa, s.page, mem,
				 g, 2 * s.page, NULL),
			 EINVAL);
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, gpa, s.page, mem,
				 g, 1, NULL),
			 EINVAL);
	/* not a guest_memfd; a closed fd */
	devnull = open("/dev/null", O_RDWR);
	ck_assert_int_ge(devnull, 0);
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, gpa, s.page, mem,
				 devnull, 0, NULL),
			 EINVAL);
	close(devnull);
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, gpa, s.page, mem,
				 devnull, 0, NULL),
			 EBADF);
	/* a guest_memfd of another VM */
	other_vm = ioctl(s.kvm, KVM_CREATE_VM, 0ul);
	g_other = create_gmem(other_vm, 2 * s.page, GUEST_MEMFD_FLAG_MMAP);
	ck_assert_int_ge(g_other, 0);
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, gpa, s.page, mem,
				 g_other, 0, NULL),
			 EINVAL);
	/* no dirty logging, no READONLY with guest_memfd */
	ck_assert_int_eq(region2(s.vm, 1,
				 KVM_MEM_GUEST_MEMFD | KVM_MEM_LOG_DIRTY_PAGES,
				 gpa, s.page, mem, g, 0, NULL),
			 EINVAL);
	ck_assert_int_eq(region2(s.vm, 1,
				 KVM_MEM_GUEST_MEMFD | KVM_MEM_READONLY, gpa,
				 s.page, mem, g, 0, NULL),
			 EINVAL);
	/* binds; overlapping bindings of one gmem are refused */
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, gpa, s.page, mem,
				 g, 0, NULL),
			 0);
	ck_assert_int_eq(region2(s.vm, 2, KVM_MEM_GUEST_MEMFD, gpa + s.page,
				 s.page, mem + s.page, g, 0, NULL),
			 EINVAL);
	ck_assert_int_eq(region2(s.vm, 2, KVM_MEM_GUEST_MEMFD, gpa + s.page,
				 s.page, mem + s.page, g, s.page, NULL),
			 0);
	/* "Private memslots are immutable, they can only be deleted" */
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, gpa + 8 * s.page,
				 s.page, mem, g, 0, NULL),
			 EINVAL);
	ck_assert_int_eq(region2(s.vm, 1, 0, gpa, s.page, mem, -1, 0, NULL),
			 EINVAL);
	ck_assert_int_eq(region2(s.vm, 1, 0, gpa, 0, mem, -1, 0, NULL), 0);
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, gpa, s.page, mem,
				 g, 0, NULL),
			 0);

	/*
	 * A guest_memfd without FLAG_MMAP: x86 binds it; arm64 refuses ("Only
	 * support guest_memfd backed memslots with mappable memory", the
	 * EINVAL libkrun#478 met).
	 */
	g0 = create_gmem(s.vm, s.page, 0);
	ck_assert_int_ge(g0, 0);
	ck_assert_int_eq(region2(s.vm, 3, KVM_MEM_GUEST_MEMFD, gpa + 4 * s.page,
				 s.page, mem + 4 * s.page, g0, 0, NULL),
			 x86 ? 0 : EINVAL);
}
END_TEST

/*
 * KVM Userfault v3: USERFAULT can be toggled on a guest_memfd slot, which
 * can't be moved. [UF] "gmem-late": on 7.2 the FLAGS_ONLY change loses
 * the guest_memfd binding (patch 0049 binds only on create, 7.2's
 * kvm_commit_memory_region() unbinds the old slot): every access then
 * exits 39 with flags 0, even with its bit clear, on or off again.
 */
START_TEST(gmem_userfault_toggle)
{
	uint32_t arch = (uint32_t)_i + 1;
	unsigned long bitmap = 0;
	struct sim s;
	int g;

	start(&s, arch, KVMSIM_LEVEL_7_2_UF);
	g = create_gmem(s.vm, s.page, GUEST_MEMFD_FLAG_MMAP);
	ck_assert_int_ge(g, 0);
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, s.test_gpa,
				 s.page, NULL, g, 0, NULL),
			 0);
	script(&s, fmt("load:%#llx:1", (unsigned long long)s.test_gpa));
	RUN_EXPECT(&s, 0, 0, done_reason(&s));
	ck_assert_int_eq(region2(s.vm, 1,
				 KVM_MEM_GUEST_MEMFD | KVM_MEM_USERFAULT,
				 s.test_gpa, s.page, NULL, g, 0, &bitmap),
			 0);
	script(&s, fmt("load:%#llx:1", (unsigned long long)s.test_gpa));
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, 0, s.test_gpa, s.page);
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, s.test_gpa,
				 s.page, NULL, g, 0, NULL),
			 0);
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, 0, s.test_gpa, s.page);
	ck_assert_int_eq(
		region2(s.vm, 1, KVM_MEM_GUEST_MEMFD | KVM_MEM_USERFAULT,
			s.test_gpa + s.page, s.page, NULL, g, 0, &bitmap),
		EINVAL);
	/* A slot created with the flag keeps its binding ("gmem" row). */
	start(&s, arch, KVMSIM_LEVEL_7_2_UF);
	g = create_gmem(s.vm, s.page, GUEST_MEMFD_FLAG_MMAP);
	ck_assert_int_eq(region2(s.vm, 1,
				 KVM_MEM_GUEST_MEMFD | KVM_MEM_USERFAULT,
				 s.test_gpa, s.page, NULL, g, 0, &bitmap),
			 0);
	script(&s, fmt("load:%#llx:1", (unsigned long long)s.test_gpa));
	RUN_EXPECT(&s, 0, 0, done_reason(&s));
	/* Without KVM Userfault (7.2) nothing changes on a gmem slot. */
	start(&s, arch, KVMSIM_LEVEL_7_2);
	g = create_gmem(s.vm, s.page, GUEST_MEMFD_FLAG_MMAP);
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, s.test_gpa,
				 s.page, NULL, g, 0, NULL),
			 0);
	ck_assert_int_eq(region2(s.vm, 1,
				 KVM_MEM_GUEST_MEMFD | KVM_MEM_USERFAULT,
				 s.test_gpa, s.page, NULL, g, 0, &bitmap),
			 EINVAL);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("kvmsim-memslots");
	TCase *tc;

	tc = tcase_create("memslots");
	tcase_add_loop_test(tc, memslot_validation, 0, 8);
	tcase_add_loop_test(tc, gmem_validation, 0, 2);
	tcase_add_loop_test(tc, gmem_userfault_toggle, 0, 2);
	suite_add_tcase(s, tc);
	return tc_run(s);
}
