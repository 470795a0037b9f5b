/* SPDX-License-Identifier: MIT */
/*
 * kvmsim's own tests, caps:
 * Capabilities per architecture, level and VM type, and which ioctls
 * exist at each level.
 * Each test names its source with the tags of sim-raw.h.
 */
#include "sim-raw.h"

/* ======================================================================
 * Capabilities
 * ====================================================================== */

struct cap_row {
	long cap;
	long x86[4]; /* VM type 0, levels 6.1 6.8 7.2 7.2-uf */
	long arm64[4];
};

/*
 * [NK] the capability values (7.2; /dev/kvm = VM fd except where noted);
 * [RS] for what arrived in 6.8 (USER_MEMORY2, MEMORY_FAULT_INFO,
 * MEMORY_ATTRIBUTES, GUEST_MEMFD, VM_TYPES) and 6.18 (GUEST_MEMFD_FLAGS,
 * arm64 guest_memfd); PRE_FAULT_MEMORY is 6.10.
 */
static const struct cap_row cap_rows[] = {
	{ KVM_CAP_USER_MEMORY2, { 0, 1, 1, 1 }, { 0, 1, 1, 1 } },
	{ KVM_CAP_MEMORY_FAULT_INFO, { 0, 1, 1, 1 }, { 0, 0, 0, 0 } },
	{ KVM_CAP_MEMORY_ATTRIBUTES, { 0, 0, 0, 0 }, { 0, 0, 0, 0 } },
	{ KVM_CAP_GUEST_MEMFD, { 0, 0, 1, 1 }, { 0, 0, 1, 1 } },
	{ KVM_CAP_VM_TYPES, { 0, 1, 1, 1 }, { 0, 0, 0, 0 } },
	{ KVM_CAP_PRE_FAULT_MEMORY, { 0, 0, 1, 1 }, { 0, 0, 0, 0 } },
	{ KVM_CAP_GUEST_MEMFD_FLAGS, { 0, 0, 3, 3 }, { 0, 0, 3, 3 } },
	{ KVM_CAP_ARM_NISV_TO_USER, { 0, 0, 0, 0 }, { 1, 1, 1, 1 } },
	{ KVM_CAP_ARM_SEA_TO_USER, { 0, 0, 0, 0 }, { 0, 0, 1, 1 } },
	/*
	 * [UF] KVM_CAP_USERFAULT is 250 on that kernel: the series' 245 is
	 * KVM_CAP_ARM_SEA_TO_USER in 7.2 (above: 1 on arm64, 0 on x86), so a
	 * cap number proves nothing; the library tries the flag instead.
	 */
	{ 250, { 0, 0, 0, 1 }, { 0, 0, 0, 1 } },
	{ KVM_CAP_ARM_EL2, { 0, 0, 0, 0 }, { 0, 0, 0, 0 } },
	{ KVM_CAP_NR_MEMSLOTS,
	  { 32764, 32764, 32764, 32764 },
	  { 32767, 32767, 32767, 32767 } },
	{ KVM_CAP_IMMEDIATE_EXIT, { 1, 1, 1, 1 }, { 1, 1, 1, 1 } },
	{ KVM_CAP_CHECK_EXTENSION_VM, { 1, 1, 1, 1 }, { 1, 1, 1, 1 } },
	{ 9999, { 0, 0, 0, 0 }, { 0, 0, 0, 0 } },
};

START_TEST(caps_per_arch_and_level)
{
	uint32_t arch = LOOP_ARCH(_i), level = LOOP_LEVEL(_i);
	bool x86 = arch == KVMSIM_X86_64;
	int li = _i % 4;
	struct sim s;

	start(&s, arch, level);
	/* [NK] KVM_GET_API_VERSION 12 on both */
	ck_assert_int_eq(ioctl(s.kvm, KVM_GET_API_VERSION, 0), 12);
	ck_assert_int_eq(ioctl(s.kvm, KVM_GET_VCPU_MMAP_SIZE, 0),
			 (int)((x86 ? 3 : 2) * s.page));
	for (size_t i = 0; i < sizeof(cap_rows) / sizeof(cap_rows[0]); i++) {
		const struct cap_row *r = &cap_rows[i];
		long want = x86 ? r->x86[li] : r->arm64[li];
		long dev = want;

		/*
		 * [NK]: x86 /dev/kvm says MEMORY_ATTRIBUTES 8, "VM type 0: 0"
		 */
		if (x86 && r->cap == KVM_CAP_MEMORY_ATTRIBUTES &&
		    level >= KVMSIM_LEVEL_6_8)
			dev = 8;
		/*
		 * [RS] 6.8 GUEST_MEMFD is "!kvm ||
		 * kvm_arch_has_private_mem(kvm)"
		 */
		if (x86 && r->cap == KVM_CAP_GUEST_MEMFD &&
		    level == KVMSIM_LEVEL_6_8)
			dev = 1;
		ck_assert_msg(ioctl(s.vm, KVM_CHECK_EXTENSION, r->cap) == want,
			      "arch %u level %u VM cap %ld: %d, want %ld", arch,
			      level, r->cap,
			      ioctl(s.vm, KVM_CHECK_EXTENSION, r->cap), want);
		ck_assert_msg(ioctl(s.kvm, KVM_CHECK_EXTENSION, r->cap) == dev,
			      "arch %u level %u /dev/kvm cap %ld: %d, want %ld",
			      arch, level, r->cap,
			      ioctl(s.kvm, KVM_CHECK_EXTENSION, r->cap), dev);
	}
}
END_TEST

/*
 * [SW] "Capabilities": VM_TYPES 0x3; type-1
 * VM: ATTRIBUTES 8, GMEM_FLAGS 0x1, MFI 1.
 */
START_TEST(caps_sw_protected_vm)
{
	uint32_t level = _i ? KVMSIM_LEVEL_7_2 : KVMSIM_LEVEL_6_8;
	uint64_t q = kvmsim_default_quirks(KVMSIM_X86_64, level) |
		     KVMSIM_Q_SW_PROTECTED_VM;
	struct sim s;
	int vm1;

	start_full(&s, KVMSIM_X86_64, level, q, 0);
	ck_assert_int_eq(ioctl(s.kvm, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES),
			 0x3);
	vm1 = ioctl(s.kvm, KVM_CREATE_VM,
		    (unsigned long)KVM_X86_SW_PROTECTED_VM);
	ck_assert_int_ge(vm1, 0);
	ck_assert_int_eq(
		ioctl(vm1, KVM_CHECK_EXTENSION, KVM_CAP_MEMORY_ATTRIBUTES), 8);
	ck_assert_int_eq(ioctl(vm1, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD),
			 1);
	ck_assert_int_eq(
		ioctl(vm1, KVM_CHECK_EXTENSION, KVM_CAP_MEMORY_FAULT_INFO), 1);
	ck_assert_int_eq(
		ioctl(vm1, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS),
		level == KVMSIM_LEVEL_7_2 ? 0x1 : 0);
	/*
	 * "A type-0 VM still reports MEMORY_ATTRIBUTES=0 and
	 * GUEST_MEMFD_FLAGS=0x3"
	 */
	ck_assert_int_eq(
		ioctl(s.vm, KVM_CHECK_EXTENSION, KVM_CAP_MEMORY_ATTRIBUTES), 0);
	ck_assert_int_eq(
		ioctl(s.vm, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS),
		level == KVMSIM_LEVEL_7_2 ? 0x3 : 0);
	if (level == KVMSIM_LEVEL_7_2) {
		/* "INIT_SHARED is refused with EINVAL" on type 1 */
		ck_assert_int_eq(create_gmem(vm1, 2 * s.page,
					     GUEST_MEMFD_FLAG_INIT_SHARED),
				 -EINVAL);
		ck_assert_int_ge(
			create_gmem(vm1, 2 * s.page, GUEST_MEMFD_FLAG_MMAP), 0);
	} else {
		/* 6.8 guest_memfd takes no flags */
		ck_assert_int_eq(
			create_gmem(vm1, 2 * s.page, GUEST_MEMFD_FLAG_MMAP),
			-EINVAL);
		ck_assert_int_ge(create_gmem(vm1, 2 * s.page, 0), 0);
	}
}
END_TEST

/*
 * [NK] VM_TYPES 0x1 and "swprot: SKIP (VM type 1 not offered)"; arm64 IPA
 * types; pKVM absent.
 */
START_TEST(vm_types)
{
	struct sim s;

	start(&s, KVMSIM_X86_64, KVMSIM_LEVEL_7_2);
	ck_assert_int_eq(ioctl(s.kvm, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES),
			 0x1);
	ck_assert_int_eq(ioctl(s.kvm, KVM_CREATE_VM, 1ul), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(ioctl(s.kvm, KVM_CREATE_VM, 2ul), -1);

	start(&s, KVMSIM_ARM64, KVMSIM_LEVEL_7_2);
	ck_assert_int_eq(
		ioctl(s.kvm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_VM_IPA_SIZE), 48);
	ck_assert_int_ge(ioctl(s.kvm, KVM_CREATE_VM, 40ul), 0);
	ck_assert_int_ge(ioctl(s.kvm, KVM_CREATE_VM, 48ul), 0);
	ck_assert_int_eq(ioctl(s.kvm, KVM_CREATE_VM, 49ul), -1);
	ck_assert_int_eq(ioctl(s.kvm, KVM_CREATE_VM, 31ul), -1);
	/* "Without pKVM it fails with EINVAL" */
	ck_assert_int_eq(ioctl(s.kvm, KVM_CREATE_VM, 1ul << 31), -1);
	ck_assert_int_eq(errno, EINVAL);
}
END_TEST

/*
 * arm64 still delivers exit 39 without
 * advertising MFI ([NK]); the quirk switch works.
 */
START_TEST(caps_arm64_mfi_quirk_off)
{
	struct sim s;

	start_full(&s, KVMSIM_ARM64, KVMSIM_LEVEL_7_2,
		   kvmsim_default_quirks(KVMSIM_ARM64, KVMSIM_LEVEL_7_2) &
			   ~KVMSIM_Q_NO_MFI_CAP,
		   0);
	ck_assert_int_eq(
		ioctl(s.vm, KVM_CHECK_EXTENSION, KVM_CAP_MEMORY_FAULT_INFO), 1);
}
END_TEST

/* ======================================================================
 * ioctls per level
 * ====================================================================== */

/*
 * [RS] what exists at each level;
 * unknown ioctls get the arch's default errno.
 */
START_TEST(ioctls_per_level)
{
	uint32_t arch = LOOP_ARCH(_i), level = LOOP_LEVEL(_i);
	bool x86 = arch == KVMSIM_X86_64;
	int unknown = x86 ? ENOTTY : EINVAL; /* kvm_arch_vm_ioctl() default */
	struct sim s;
	uint8_t *mem;
	int g;

	start(&s, arch, level);
	mem = pages(&s, 2, 0);

	/* KVM_SET_USER_MEMORY_REGION2 from 6.8 */
	ck_assert_int_eq(
		region2(s.vm, 1, 0, s.test_gpa, s.page, mem, 0, 0, NULL),
		level >= KVMSIM_LEVEL_6_8 ? 0 : unknown);
	/* KVM_CREATE_GUEST_MEMFD: x86 from 6.8, arm64 from 7.2 */
	g = create_gmem(s.vm, 2 * s.page, 0);
	if (level < KVMSIM_LEVEL_6_8 || (!x86 && level < KVMSIM_LEVEL_7_2))
		ck_assert_int_eq(g, -unknown);
	else
		ck_assert_int_ge(g, 0);
	if (x86 && level == KVMSIM_LEVEL_6_8) {
		/*
		 * a type-0 VM may create one but
		 * not bind it (no private memory)
		 */
		ck_assert_int_eq(region2(s.vm, 2, KVM_MEM_GUEST_MEMFD,
					 s.test_gpa + s.page, s.page,
					 mem + s.page, g, 0, NULL),
				 EINVAL);
	}
	/* KVM_SET_MEMORY_ATTRIBUTES: x86 from 6.8 only */
	if (x86 && level >= KVMSIM_LEVEL_6_8) {
		ck_assert_int_eq(set_attrs(s.vm, s.test_gpa, s.page, 0), 0);
		ck_assert_int_eq(set_attrs(s.vm, s.test_gpa, s.page,
					   KVM_MEMORY_ATTRIBUTE_PRIVATE),
				 EINVAL);
	} else {
		ck_assert_int_eq(set_attrs(s.vm, s.test_gpa, s.page, 0),
				 unknown);
	}
	/* an unknown VM ioctl, vCPU ioctl, and /dev/kvm ioctl */
	ck_assert_int_eq(ioctl(s.vm, KVM_CREATE_IRQCHIP, 0), -1);
	ck_assert_int_eq(errno, unknown);
	ck_assert_int_eq(ioctl(s.vcpu, KVM_GET_REGS, NULL), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(ioctl(s.vcpu, FIONREAD, NULL), -1); /* not KVMIO */
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(ioctl(s.kvm, KVM_SET_USER_MEMORY_REGION, NULL), -1);
	ck_assert_int_eq(errno, EINVAL);
	/*
	 * arm64 KVM_ARM_PREFERRED_TARGET (VM) and
	 * KVM_ARM_VCPU_INIT (vCPU), 32-byte struct
	 */
	{
		uint32_t init[8] = { 0 };

		ck_assert_int_eq(
			ioctl(s.vm, _IOC(_IOC_READ, KVMIO, 0xaf, 32), init),
			x86 ? -1 : 0);
		/* KVM_ARM_TARGET_GENERIC_V8 */
		ck_assert_uint_eq(init[0], x86 ? 0 : 5);
		ck_assert_int_eq(
			ioctl(s.vcpu, _IOC(_IOC_WRITE, KVMIO, 0xae, 32), init),
			x86 ? -1 : 0);
	}
	/* KVM_RUN's argument must be 0 */
	ck_assert_int_eq(ioctl(s.vcpu, KVM_RUN, 1ul), -1);
	ck_assert_int_eq(errno, EINVAL);
	/* struct arguments are copied with EFAULT on a bad pointer */
	ck_assert_int_eq(ioctl(s.vm, KVM_SET_USER_MEMORY_REGION, (void *)8),
			 -1);
	ck_assert_int_eq(errno, EFAULT);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("kvmsim-caps");
	TCase *tc;

	tc = tcase_create("caps");
	tcase_add_loop_test(tc, caps_per_arch_and_level, 0, 8);
	tcase_add_loop_test(tc, caps_sw_protected_vm, 0, 2);
	tcase_add_test(tc, vm_types);
	tcase_add_test(tc, caps_arm64_mfi_quirk_off);
	tcase_add_loop_test(tc, ioctls_per_level, 0, 8);
	suite_add_tcase(s, tc);
	return tc_run(s);
}
