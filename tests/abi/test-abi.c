/* SPDX-License-Identifier: MIT */
/*
 * Pins the layout of every public struct and the value of every public enum
 * constant (as libfuse's test/test_abi.c does). A failure here means an ABI
 * change: existing binaries would read the wrong bytes. Do not "fix" the
 * numbers; add fields only at the end (or in reserved space), give new
 * enumerators new values, and add a node to lib/memfault.map.
 *
 * The numbers hold for LP64 (x86_64 and aarch64), the only hosts the
 * library builds for.
 */
#include <memfault/memfault.h>

#include <check.h>
#include <stdlib.h>

#include <memfault/memfault-version.h>

#include "test-common.h"

#define member_size(type, member) sizeof(((struct type *)0)->member)

/* Offset and size of one member, named in the failure message. */
#define pin_member(type, member, off, size)                                    \
	do {                                                                   \
		ck_assert_msg(offsetof(struct type, member) == (off),          \
			      "offsetof(struct " #type ", " #member            \
			      ") is %zu, pinned at %d",                        \
			      offsetof(struct type, member), (off));           \
		ck_assert_msg(member_size(type, member) == (size),             \
			      "sizeof(struct " #type "." #member               \
			      ") is %zu, pinned at %d",                        \
			      member_size(type, member), (size));              \
	} while (0)

#define pin_size(type, size, align)                                            \
	do {                                                                   \
		ck_assert_msg(sizeof(struct type) == (size),                   \
			      "sizeof(struct " #type ") is %zu, pinned at %d", \
			      sizeof(struct type), (size));                    \
		ck_assert_msg(_Alignof(struct type) == (align),                \
			      "alignof(struct " #type                          \
			      ") is %zu, pinned at %d",                        \
			      _Alignof(struct type), (align));                 \
	} while (0)

#define pin_enum(name, value) ck_assert_int_eq((long long)(name), (value))

START_TEST(test_lp64)
{
	/* The pins below assume LP64. */
	ck_assert_uint_eq(sizeof(void *), 8);
	ck_assert_uint_eq(sizeof(size_t), 8);
}
END_TEST

START_TEST(test_vm_opts_layout)
{
	pin_size(memfault_vm_opts, 40, 8);
	pin_member(memfault_vm_opts, sz, 0, 8);
	pin_member(memfault_vm_opts, flags, 8, 8);
	pin_member(memfault_vm_opts, probe_gpa, 16, 8);
	pin_member(memfault_vm_opts, kvm_fd, 24, 4);
	pin_member(memfault_vm_opts, arch, 28, 4);
	pin_member(memfault_vm_opts, probe_slot, 32, 4);
	pin_member(memfault_vm_opts, reserved, 36, 4);
}
END_TEST

START_TEST(test_vcpu_opts_layout)
{
	pin_size(memfault_vcpu_opts, 40, 8);
	pin_member(memfault_vcpu_opts, sz, 0, 8);
	pin_member(memfault_vcpu_opts, flags, 8, 8);
	pin_member(memfault_vcpu_opts, run, 16, 8);
	pin_member(memfault_vcpu_opts, run_size, 24, 8);
	pin_member(memfault_vcpu_opts, kick_signal, 32, 4);
	pin_member(memfault_vcpu_opts, reserved, 36, 4);
}
END_TEST

START_TEST(test_features_layout)
{
	pin_size(memfault_features, 64, 8);
	pin_member(memfault_features, flags, 0, 8);
	pin_member(memfault_features, memory_attributes, 8, 8);
	pin_member(memfault_features, guest_memfd_flags, 16, 8);
	pin_member(memfault_features, arch, 24, 4);
	pin_member(memfault_features, userfault_probe_error, 28, 4);
	pin_member(memfault_features, page_size, 32, 8);
	pin_member(memfault_features, reserved, 40, 24);
}
END_TEST

START_TEST(test_fault_layout)
{
	pin_size(memfault_fault, 64, 8);
	pin_member(memfault_fault, gpa, 0, 8);
	pin_member(memfault_fault, size, 8, 8);
	pin_member(memfault_fault, flags, 16, 8);
	pin_member(memfault_fault, kernel_flags, 24, 8);
	pin_member(memfault_fault, error, 32, 4);
	pin_member(memfault_fault, origin, 36, 4);
	pin_member(memfault_fault, reserved, 40, 24);
}
END_TEST

START_TEST(test_region_opts_layout)
{
	pin_size(memfault_region_opts, 32, 8);
	pin_member(memfault_region_opts, sz, 0, 8);
	pin_member(memfault_region_opts, flags, 8, 8);
	pin_member(memfault_region_opts, guest_memfd_offset, 16, 8);
	pin_member(memfault_region_opts, guest_memfd, 24, 4);
	pin_member(memfault_region_opts, kvm_flags, 28, 4);
}
END_TEST

START_TEST(test_region_info_layout)
{
	pin_size(memfault_region_info, 64, 8);
	pin_member(memfault_region_info, gpa, 0, 8);
	pin_member(memfault_region_info, size, 8, 8);
	pin_member(memfault_region_info, hva, 16, 8);
	pin_member(memfault_region_info, npages, 24, 8);
	pin_member(memfault_region_info, page_size, 32, 8);
	pin_member(memfault_region_info, bitmap, 40, 8);
	pin_member(memfault_region_info, flags, 48, 8);
	pin_member(memfault_region_info, slot, 56, 4);
	pin_member(memfault_region_info, reserved, 60, 4);
}
END_TEST

START_TEST(test_handlers_layout)
{
	/* Function pointers: the callbacks' own signatures are checked by
	 * the compiler in every user; their slots are pinned here. */
	pin_size(memfault_handlers, 72, 8);
	pin_member(memfault_handlers, sz, 0, 8);
	pin_member(memfault_handlers, user, 8, 8);
	pin_member(memfault_handlers, page_in, 16, 8);
	pin_member(memfault_handlers, convert, 24, 8);
	pin_member(memfault_handlers, discard, 32, 8);
	pin_member(memfault_handlers, hwpoison, 40, 8);
	pin_member(memfault_handlers, other, 48, 8);
	pin_member(memfault_handlers, log, 56, 8);
	pin_member(memfault_handlers, max_repeats, 64, 4);
	pin_member(memfault_handlers, reserved, 68, 4);
}
END_TEST

START_TEST(test_vcpu_stats_layout)
{
	pin_size(memfault_vcpu_stats, 128, 8);
	pin_member(memfault_vcpu_stats, runs, 0, 8);
	pin_member(memfault_vcpu_stats, exits, 8, 8);
	pin_member(memfault_vcpu_stats, memory_faults, 16, 8);
	pin_member(memfault_vcpu_stats, userfaults, 24, 8);
	pin_member(memfault_vcpu_stats, page_ins, 32, 8);
	pin_member(memfault_vcpu_stats, page_waits, 40, 8);
	pin_member(memfault_vcpu_stats, conversions, 48, 8);
	pin_member(memfault_vcpu_stats, hwpoison, 56, 8);
	pin_member(memfault_vcpu_stats, other_faults, 64, 8);
	pin_member(memfault_vcpu_stats, to_vmm, 72, 8);
	pin_member(memfault_vcpu_stats, retries, 80, 8);
	pin_member(memfault_vcpu_stats, repeat_trips, 88, 8);
	pin_member(memfault_vcpu_stats, interrupted, 96, 8);
	pin_member(memfault_vcpu_stats, handler_ns, 104, 8);
	pin_member(memfault_vcpu_stats, uffd_faults, 112, 8);
	pin_member(memfault_vcpu_stats, uffd_wait_ns, 120, 8);
}
END_TEST

START_TEST(test_uffd_opts_layout)
{
	pin_size(memfault_uffd_opts, 24, 8);
	pin_member(memfault_uffd_opts, sz, 0, 8);
	pin_member(memfault_uffd_opts, flags, 8, 8);
	pin_member(memfault_uffd_opts, reserved, 16, 8);
}
END_TEST

START_TEST(test_uffd_stats_layout)
{
	ck_assert_int_eq(MEMFAULT_UFFD_LATENCY_BUCKETS, 64);
	pin_size(memfault_uffd_stats, 648, 8);
	pin_member(memfault_uffd_stats, features, 0, 8);
	pin_member(memfault_uffd_stats, faults, 8, 8);
	pin_member(memfault_uffd_stats, page_ins, 16, 8);
	pin_member(memfault_uffd_stats, kvm_page_ins, 24, 8);
	pin_member(memfault_uffd_stats, waits, 32, 8);
	pin_member(memfault_uffd_stats, unknown, 40, 8);
	pin_member(memfault_uffd_stats, errors, 48, 8);
	pin_member(memfault_uffd_stats, last_error_addr, 56, 8);
	pin_member(memfault_uffd_stats, last_error_gpa, 64, 8);
	pin_member(memfault_uffd_stats, last_error, 72, 4);
	pin_member(memfault_uffd_stats, last_error_tid, 76, 4);
	pin_member(memfault_uffd_stats, latency_p50_ns, 80, 8);
	pin_member(memfault_uffd_stats, latency_p99_ns, 88, 8);
	pin_member(memfault_uffd_stats, latency_max_ns, 96, 8);
	pin_member(memfault_uffd_stats, latency, 104, 512);
	pin_member(memfault_uffd_stats, reserved, 616, 32);
}
END_TEST

START_TEST(test_signedness)
{
	/* A field that changes signedness changes the ABI too. */
	struct memfault_vm_opts vo = { .kvm_fd = -1, .arch = (uint32_t)-1 };
	struct memfault_vcpu_opts co = { .kick_signal = -1 };
	struct memfault_features f = { .userfault_probe_error = -1,
				       .arch = (uint32_t)-1 };
	struct memfault_fault ft = { .error = -1, .origin = (uint32_t)-1 };
	struct memfault_region_opts ro = { .guest_memfd = -1,
					   .kvm_flags = (uint32_t)-1 };
	struct memfault_region_info ri = { .slot = (uint32_t)-1 };
	struct memfault_handlers h = { .max_repeats = (uint32_t)-1 };
	struct memfault_vcpu_stats st = { .handler_ns = (uint64_t)-1 };

	ck_assert(vo.kvm_fd < 0);
	ck_assert(vo.arch > 0);
	ck_assert(co.kick_signal < 0);
	ck_assert(f.userfault_probe_error < 0);
	ck_assert(f.arch > 0);
	ck_assert(ft.error < 0);
	ck_assert(ft.origin > 0);
	ck_assert(ro.guest_memfd < 0);
	ck_assert(ro.kvm_flags > 0);
	ck_assert(ri.slot > 0);
	ck_assert(h.max_repeats > 0);
	ck_assert(st.handler_ns > 0);
}
END_TEST

START_TEST(test_enum_arch)
{
	pin_enum(MEMFAULT_ARCH_HOST, 0);
	pin_enum(MEMFAULT_ARCH_X86_64, 1);
	pin_enum(MEMFAULT_ARCH_ARM64, 2);
}
END_TEST

START_TEST(test_enum_vm_flag)
{
	pin_enum(MEMFAULT_VM_OWN_FD, 0x1);
	pin_enum(MEMFAULT_VM_NO_USERFAULT_PROBE, 0x2);
}
END_TEST

START_TEST(test_enum_feature)
{
	pin_enum(MEMFAULT_FEATURE_USER_MEMORY2, 0x1);
	pin_enum(MEMFAULT_FEATURE_MEMORY_FAULT_INFO, 0x2);
	pin_enum(MEMFAULT_FEATURE_MEMORY_FAULT_EXITS, 0x4);
	pin_enum(MEMFAULT_FEATURE_MEMORY_ATTRIBUTES, 0x8);
	pin_enum(MEMFAULT_FEATURE_GUEST_MEMFD, 0x10);
	pin_enum(MEMFAULT_FEATURE_GUEST_MEMFD_FLAGS, 0x20);
	pin_enum(MEMFAULT_FEATURE_KVM_USERFAULT, 0x40);
}
END_TEST

START_TEST(test_enum_vcpu_flag)
{
	pin_enum(MEMFAULT_VCPU_OWN_FD, 0x1);
	pin_enum(MEMFAULT_VCPU_NO_SIGNAL_HANDLER, 0x2);
	pin_enum(MEMFAULT_VCPU_TIME_HANDLERS, 0x4);
}
END_TEST

START_TEST(test_enum_run_result)
{
	pin_enum(MEMFAULT_RUN_EXIT, 1);
	pin_enum(MEMFAULT_RUN_MEMORY_FAULT, 2);
	pin_enum(MEMFAULT_RUN_INTERRUPTED, 3);
	pin_enum(MEMFAULT_RUN_RETRY, 4);
}
END_TEST

START_TEST(test_enum_fault_flag)
{
	pin_enum(MEMFAULT_FAULT_PRIVATE, 0x1);
	pin_enum(MEMFAULT_FAULT_USERFAULT, 0x2);
	pin_enum(MEMFAULT_FAULT_HWPOISON, 0x4);
	pin_enum(MEMFAULT_FAULT_UNKNOWN, 0x8);
	pin_enum(MEMFAULT_FAULT_SIZE_ZERO, 0x100);
	pin_enum(MEMFAULT_FAULT_UNALIGNED, 0x200);
	pin_enum(MEMFAULT_FAULT_OVERFLOW, 0x400);
}
END_TEST

START_TEST(test_enum_fault_origin)
{
	pin_enum(MEMFAULT_ORIGIN_ERRNO, 1);
	pin_enum(MEMFAULT_ORIGIN_RET0, 2);
	pin_enum(MEMFAULT_ORIGIN_OTHER_ERRNO, 3);
}
END_TEST

START_TEST(test_enum_region_flag)
{
	pin_enum(MEMFAULT_REGION_USERFAULT, 0x1);
	pin_enum(MEMFAULT_REGION_GUEST_MEMFD, 0x2);
	pin_enum(MEMFAULT_REGION_MISSING, 0x4);
	pin_enum(MEMFAULT_REGION_NO_MEMSLOT, 0x8);
}
END_TEST

START_TEST(test_enum_claim)
{
	pin_enum(MEMFAULT_CLAIM_NOWAIT, 0x1);
	pin_enum(MEMFAULT_CLAIM_PRESENT, 0);
	pin_enum(MEMFAULT_CLAIM_FETCH, 1);
	pin_enum(MEMFAULT_CLAIM_BUSY, 2);
}
END_TEST

START_TEST(test_enum_verdict)
{
	pin_enum(MEMFAULT_RESOLVED, 0);
	pin_enum(MEMFAULT_TO_VMM, 1);
}
END_TEST

START_TEST(test_enum_uffd)
{
	pin_enum(MEMFAULT_UFFD_SERVICE_THREAD, 0x1);
	pin_enum(MEMFAULT_UFFD_MISSING, 1);
	pin_enum(MEMFAULT_UFFD_MINOR, 2);
}
END_TEST

START_TEST(test_runtime_version)
{
	/* The loaded library is the one these headers describe. */
	ck_assert_int_eq(memfault_version_major(), MEMFAULT_VERSION_MAJOR);
	ck_assert_int_eq(memfault_version_minor(), MEMFAULT_VERSION_MINOR);
}
END_TEST

/* One TCase per test (ADD_CASE), so CK_RUN_CASE=<name> runs just one. */
int
main(void)
{
	Suite *s = suite_create("abi");

	ADD_CASE(s, test_lp64);
	ADD_CASE(s, test_vm_opts_layout);
	ADD_CASE(s, test_vcpu_opts_layout);
	ADD_CASE(s, test_features_layout);
	ADD_CASE(s, test_fault_layout);
	ADD_CASE(s, test_region_opts_layout);
	ADD_CASE(s, test_region_info_layout);
	ADD_CASE(s, test_handlers_layout);
	ADD_CASE(s, test_vcpu_stats_layout);
	ADD_CASE(s, test_uffd_opts_layout);
	ADD_CASE(s, test_uffd_stats_layout);
	ADD_CASE(s, test_signedness);
	ADD_CASE(s, test_enum_arch);
	ADD_CASE(s, test_enum_vm_flag);
	ADD_CASE(s, test_enum_feature);
	ADD_CASE(s, test_enum_vcpu_flag);
	ADD_CASE(s, test_enum_run_result);
	ADD_CASE(s, test_enum_fault_flag);
	ADD_CASE(s, test_enum_fault_origin);
	ADD_CASE(s, test_enum_region_flag);
	ADD_CASE(s, test_enum_claim);
	ADD_CASE(s, test_enum_verdict);
	ADD_CASE(s, test_enum_uffd);
	ADD_CASE(s, test_runtime_version);

	return tc_run(s);
}
