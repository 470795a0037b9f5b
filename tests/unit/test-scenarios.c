/* SPDX-License-Identifier: MIT */
/*
 * Every row of the exit contract on the simulator, for both architecture
 * models at every kernel level, through the public API.
 */
#include <signal.h>
#include <stdlib.h>

#include "scenarios.h"
#include "test-common.h"

START_TEST(scenario_on_model)
{
	int m = _i / NR_SCENARIOS, s = _i % NR_SCENARIOS;
	struct kvmsim_stats before, after;
	struct record rec = { 0 };
	struct sim_env e;

	sim_env_open(&e, sim_models[m].arch, sim_models[m].level);
	ck_assert_int_eq(kvmsim_get_stats(&before), 0);
	scenarios[s].fn(&e, &rec);
	ck_assert_int_eq(kvmsim_get_stats(&after), 0);
	/* exactly one KVM_RUN per memfault_vcpu_run() */
	ck_assert_uint_eq(after.runs - before.runs, (uint64_t)rec.n);
	sim_env_close(&e);
}
END_TEST

START_TEST(features_per_model)
{
	const uint32_t arch = sim_models[_i].arch, level = sim_models[_i].level;
	const bool x86 = arch == KVMSIM_X86_64;
	struct memfault_features f;
	struct sim_env e;
	uint64_t expect = 0;

	sim_env_open(&e, arch, level);
	memset(&f, 0xff, sizeof(f));
	ck_assert_int_eq(memfault_vm_get_features(e.vm, &f, sizeof(f)), 0);
	ck_assert_uint_eq(f.arch, arch);
	ck_assert_uint_eq(f.page_size, e.page);
	if (level >= KVMSIM_LEVEL_6_8) {
		expect |= MEMFAULT_FEATURE_USER_MEMORY2;
		/* arm64 never advertises MEMORY_FAULT_INFO; a type-0 VM on
		 * 6.8 has neither guest_memfd nor memory attributes, so no
		 * source of the exit (MEMORY_FAULT_EXITS only from 7.2) */
		if (x86)
			expect |= MEMFAULT_FEATURE_MEMORY_FAULT_INFO;
	}
	if (level >= KVMSIM_LEVEL_7_2) {
		/* ... yet delivers exit 39 from gmem_abort() */
		expect |= MEMFAULT_FEATURE_GUEST_MEMFD |
			  MEMFAULT_FEATURE_GUEST_MEMFD_FLAGS |
			  MEMFAULT_FEATURE_MEMORY_FAULT_EXITS;
		ck_assert_uint_eq(f.guest_memfd_flags, 0x3);
	}
	/* 6.8: KVM_CAP_GUEST_MEMFD only for private-memory VM types */
	if (level == KVMSIM_LEVEL_7_2_UF)
		expect |= MEMFAULT_FEATURE_KVM_USERFAULT;
	/* a type-0 VM has no memory attributes on any arch */
	ck_assert_uint_eq(f.memory_attributes, 0);
	ck_assert_uint_eq(f.flags, expect);
	ck_assert_int_eq(f.userfault_probe_error, 0);
	ck_assert_uint_eq(f.reserved[0] | f.reserved[1] | f.reserved[2], 0);
	sim_env_close(&e);
}
END_TEST

/* x86 SW_PROTECTED VM: an implicit conversion request (exit 39 with
 * PRIVATE, -EFAULT, as the swprot kernel gives it in
 * tests/kernel/test-kernel-swprot.c), resolved by the VMM. */
START_TEST(private_conversion_x86)
{
	const uint32_t level = _i ? KVMSIM_LEVEL_7_2_UF : KVMSIM_LEVEL_7_2;
	struct kvm_memory_attributes attr = { .address = RAM_GPA };
	struct memfault_features f;
	struct outcome o;
	struct sim_env e;

	sim_env_open_quirks(&e, KVMSIM_X86_64, level,
			    kvmsim_default_quirks(KVMSIM_X86_64, level) |
				    KVMSIM_Q_SW_PROTECTED_VM,
			    KVMSIM_X86_SW_PROTECTED_VM);
	ck_assert_int_eq(memfault_vm_get_features(e.vm, &f, sizeof(f)), 0);
	ck_assert(f.flags & MEMFAULT_FEATURE_MEMORY_ATTRIBUTES);
	ck_assert_uint_eq(f.memory_attributes, KVM_MEMORY_ATTRIBUTE_PRIVATE);
	sim_env_add_ram(&e, 1, 2, 0);
	attr.size = 2 * e.page;
	attr.attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE;
	ck_assert_int_eq(ioctl(e.vm_fd, KVM_SET_MEMORY_ATTRIBUTES, &attr), 0);
	sim_env_script(&e, "load:0x20000000:1");
	o = sim_env_run(&e);
	ck_assert_int_eq(o.r, MEMFAULT_RUN_MEMORY_FAULT);
	ck_assert_uint_eq(o.f.flags, MEMFAULT_FAULT_PRIVATE);
	ck_assert_uint_eq(o.f.gpa, RAM_GPA);
	ck_assert_uint_eq(o.f.size, e.page);
	ck_assert_int_eq(o.f.error, -EFAULT);
	/* the VMM converts the reported range to shared and re-enters */
	attr.address = o.f.gpa;
	attr.size = o.f.size;
	attr.attributes = 0;
	ck_assert_int_eq(ioctl(e.vm_fd, KVM_SET_MEMORY_ATTRIBUTES, &attr), 0);
	o = sim_env_run(&e);
	ck_assert_int_eq(o.r, MEMFAULT_RUN_EXIT);
	ck_assert_uint_eq(sim_env_acc(&e), 0x5a);
	/* an explicitly shared access to a private page asks the other way */
	sim_env_script(&e, "load:0x20001000:1:shared");
	o = sim_env_run(&e);
	ck_assert_int_eq(o.r, MEMFAULT_RUN_MEMORY_FAULT);
	ck_assert_uint_eq(o.f.flags, 0);
	ck_assert_uint_eq(o.f.gpa, RAM_GPA + e.page);
	sim_env_close(&e);
}
END_TEST

/* arm64 has no memory attributes: the call fails, nothing is converted. */
START_TEST(no_memory_attributes_arm64)
{
	struct kvm_memory_attributes attr = { .address = RAM_GPA };
	struct sim_env e;

	sim_env_open(&e, KVMSIM_ARM64, KVMSIM_LEVEL_7_2);
	attr.size = e.page;
	attr.attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE;
	ck_assert_int_ne(ioctl(e.vm_fd, KVM_SET_MEMORY_ATTRIBUTES, &attr), 0);
	sim_env_close(&e);
}
END_TEST

/* arm64 nested VNCR: KVM_RUN returns 0 with exit 39; still a fault. */
START_TEST(vncr_ret0_arm64)
{
	struct outcome o;
	struct sim_env e;

	sim_env_open(&e, KVMSIM_ARM64, KVMSIM_LEVEL_7_2);
	ck_assert_int_eq(sim_env_add_gmem(&e, 2, 1, GUEST_MEMFD_FLAG_MMAP), 0);
	ck_assert_int_eq(kvmsim_inject_gmem_error(e.vm_fd, GMEM_GPA, ENOMEM, 1),
			 0);
	sim_env_script(&e, "load:0x30000000:8:vncr");
	o = sim_env_run(&e);
	ck_assert_int_eq(o.r, MEMFAULT_RUN_MEMORY_FAULT);
	ck_assert_uint_eq(o.f.origin, MEMFAULT_ORIGIN_RET0);
	ck_assert_int_eq(o.f.error, 0);
	ck_assert_uint_eq(o.f.gpa, GMEM_GPA);
	ck_assert_uint_eq(o.f.size, e.page);
	/* the raw contract (ret -1 only) would call this an ordinary exit */
	ck_assert_uint_eq(e.run->exit_reason, KVM_EXIT_MEMORY_FAULT);
	o = sim_env_run(&e);
	ck_assert_int_eq(o.r, MEMFAULT_RUN_EXIT);
	sim_env_close(&e);
}
END_TEST

/* Level 6.1 has no memory-fault exits: a gmem-less kernel gives bare
 * EFAULTs, which stay errors (never invented faults). */
START_TEST(level_6_1_has_no_fault_exits)
{
	struct sim_env e;

	sim_env_open(&e, sim_models[_i].arch, KVMSIM_LEVEL_6_1);
	ck_assert_int_lt(sim_env_add_gmem(&e, 2, 1, 0), 0);
	sim_env_close(&e);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("scenarios");
	TCase *tc = tcase_create("scenarios");

	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, scenario_on_model, 0,
			    NR_SIM_MODELS * NR_SCENARIOS);
	tcase_add_loop_test(tc, features_per_model, 0, NR_SIM_MODELS);
	tcase_add_loop_test(tc, private_conversion_x86, 0, 2);
	ADD_TEST(tc, no_memory_attributes_arm64);
	ADD_TEST(tc, vncr_ret0_arm64);
	tcase_add_loop_test(tc, level_6_1_has_no_fault_exits, 0, 1);
	tcase_add_loop_test(tc, level_6_1_has_no_fault_exits, 4, 5);
	suite_add_tcase(s, tc);
	return tc_run(s);
}
