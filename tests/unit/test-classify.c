/* SPDX-License-Identifier: MIT */
/*
 * The exit contract on synthetic kvm_run contents: every row of the
 * classification table, the fault decoding, and garbage input. No KVM and
 * no simulator: memfault_exit_classify() reads only what it is given.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "memfault/memfault.h"
#include "test-common.h"

#ifndef EHWPOISON
#define EHWPOISON 133
#endif

static struct kvm_run run;
static uint64_t page;

static void
setup(void)
{
	memset(&run, 0, sizeof(run));
	page = (uint64_t)sysconf(_SC_PAGESIZE);
}

static void
set_fault(uint64_t flags, uint64_t gpa, uint64_t size)
{
	run.exit_reason = KVM_EXIT_MEMORY_FAULT;
	run.memory_fault.flags = flags;
	run.memory_fault.gpa = gpa;
	run.memory_fault.size = size;
}

START_TEST(ret0_ordinary_exits)
{
	static const uint32_t reasons[] = { KVM_EXIT_IO, KVM_EXIT_MMIO,
					    KVM_EXIT_HLT, KVM_EXIT_SHUTDOWN,
					    KVM_EXIT_UNKNOWN, 12345, 0xffffffffu };

	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
		struct memfault_fault f;

		memset(&f, 0xa5, sizeof(f));
		run.exit_reason = reasons[i];
		ck_assert_int_eq(memfault_exit_classify(&run, 0, 0, &f, sizeof(f)),
				 MEMFAULT_RUN_EXIT);
		/* untouched on anything but a memory fault */
		ck_assert_uint_eq(f.gpa, 0xa5a5a5a5a5a5a5a5ull);
	}
}
END_TEST

START_TEST(ret0_memory_fault_is_a_fault)
{
	struct memfault_fault f;

	set_fault(0, 0x20000000, page);
	ck_assert_int_eq(memfault_exit_classify(&run, 0, 0, &f, sizeof(f)),
			 MEMFAULT_RUN_MEMORY_FAULT);
	ck_assert_int_eq(f.origin, MEMFAULT_ORIGIN_RET0);
	ck_assert_int_eq(f.error, 0);
	ck_assert_uint_eq(f.gpa, 0x20000000);
	ck_assert_uint_eq(f.size, page);
	ck_assert_uint_eq(f.flags, 0);
}
END_TEST

START_TEST(eintr_and_eagain_win_over_stale_exit)
{
	/* a memory fault left in kvm_run is stale after EINTR/EAGAIN */
	set_fault(KVM_MEMORY_EXIT_FLAG_PRIVATE, 0x1000, page);
	ck_assert_int_eq(memfault_exit_classify(&run, -1, EINTR, NULL, 0),
			 MEMFAULT_RUN_INTERRUPTED);
	ck_assert_int_eq(memfault_exit_classify(&run, -1, EAGAIN, NULL, 0),
			 MEMFAULT_RUN_RETRY);
	run.exit_reason = KVM_EXIT_MMIO;
	ck_assert_int_eq(memfault_exit_classify(&run, -1, EINTR, NULL, 0),
			 MEMFAULT_RUN_INTERRUPTED);
	run.exit_reason = KVM_EXIT_INTR;
	ck_assert_int_eq(memfault_exit_classify(&run, -1, EAGAIN, NULL, 0),
			 MEMFAULT_RUN_RETRY);
}
END_TEST

START_TEST(any_errno_with_exit_is_a_fault)
{
	static const struct {
		int err;
		uint32_t origin;
		uint64_t extra;
	} rows[] = {
		{ EFAULT, MEMFAULT_ORIGIN_ERRNO, 0 },
		{ EHWPOISON, MEMFAULT_ORIGIN_ERRNO, MEMFAULT_FAULT_HWPOISON },
		{ ENOMEM, MEMFAULT_ORIGIN_OTHER_ERRNO, 0 },
		{ EIO, MEMFAULT_ORIGIN_OTHER_ERRNO, 0 },
		{ ENOSPC, MEMFAULT_ORIGIN_OTHER_ERRNO, 0 },
		{ EINVAL, MEMFAULT_ORIGIN_OTHER_ERRNO, 0 },
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct memfault_fault f;

		set_fault(0, 0x20000, page);
		ck_assert_int_eq(memfault_exit_classify(&run, -1, rows[i].err,
							&f, sizeof(f)),
				 MEMFAULT_RUN_MEMORY_FAULT);
		ck_assert_int_eq(f.error, -rows[i].err);
		ck_assert_uint_eq(f.origin, rows[i].origin);
		ck_assert_uint_eq(f.flags, rows[i].extra);
		ck_assert_uint_eq(f.gpa, 0x20000);
	}
}
END_TEST

START_TEST(unannotated_efault_and_other_errors)
{
	struct memfault_fault f;

	memset(&f, 0, sizeof(f));
	run.exit_reason = KVM_EXIT_UNKNOWN;
	ck_assert_int_eq(memfault_exit_classify(&run, -1, EFAULT, &f, sizeof(f)),
			 -EFAULT);
	ck_assert_uint_eq(f.origin, 0); /* not written */
	ck_assert_int_eq(memfault_exit_classify(&run, -1, ENOMEM, NULL, 0),
			 -ENOMEM);
	ck_assert_int_eq(memfault_exit_classify(&run, -1, EHWPOISON, NULL, 0),
			 -EHWPOISON);
	run.exit_reason = KVM_EXIT_MMIO;
	ck_assert_int_eq(memfault_exit_classify(&run, -1, EINVAL, NULL, 0),
			 -EINVAL);
}
END_TEST

START_TEST(flags_decode_as_a_bitmask)
{
	struct memfault_fault f;

	set_fault((1ull << 3) | (1ull << 4), 0x3000, page);
	ck_assert_int_eq(memfault_exit_classify(&run, -1, EFAULT, &f, sizeof(f)),
			 MEMFAULT_RUN_MEMORY_FAULT);
	ck_assert_uint_eq(f.flags,
			  MEMFAULT_FAULT_PRIVATE | MEMFAULT_FAULT_USERFAULT);
	ck_assert_uint_eq(f.kernel_flags, (1ull << 3) | (1ull << 4));

	/* RWX bits 0-2 are reserved by the kernel; bit 5 is Firecracker's
	 * out-of-tree APF flag: all unknown to the library */
	set_fault((1ull << 0) | (1ull << 5) | (1ull << 63), 0x3000, page);
	ck_assert_int_eq(memfault_exit_classify(&run, -1, EFAULT, &f, sizeof(f)),
			 MEMFAULT_RUN_MEMORY_FAULT);
	ck_assert_uint_eq(f.flags, MEMFAULT_FAULT_UNKNOWN);
	ck_assert_uint_eq(f.kernel_flags, (1ull << 0) | (1ull << 5) | (1ull << 63));
}
END_TEST

START_TEST(untrusted_ranges_are_flagged)
{
	struct memfault_fault f;
	const uint64_t bad = MEMFAULT_FAULT_SIZE_ZERO | MEMFAULT_FAULT_UNALIGNED |
			     MEMFAULT_FAULT_OVERFLOW;

	set_fault(0, 0x4000, 0);
	memfault_exit_classify(&run, -1, EFAULT, &f, sizeof(f));
	ck_assert_uint_eq(f.flags & bad, MEMFAULT_FAULT_SIZE_ZERO);

	set_fault(0, 0x4001, page);
	memfault_exit_classify(&run, -1, EFAULT, &f, sizeof(f));
	ck_assert_uint_eq(f.flags & bad, MEMFAULT_FAULT_UNALIGNED);

	set_fault(0, 0x4000, page + 1);
	memfault_exit_classify(&run, -1, EFAULT, &f, sizeof(f));
	ck_assert_uint_eq(f.flags & bad, MEMFAULT_FAULT_UNALIGNED);

	set_fault(0, UINT64_MAX - page + 1, 2 * page);
	memfault_exit_classify(&run, -1, EFAULT, &f, sizeof(f));
	ck_assert_uint_eq(f.flags & bad, MEMFAULT_FAULT_OVERFLOW);
	/* the reported values are kept as they were, never "fixed" */
	ck_assert_uint_eq(f.gpa, UINT64_MAX - page + 1);
	ck_assert_uint_eq(f.size, 2 * page);

	set_fault(0, UINT64_MAX, 0);
	memfault_exit_classify(&run, -1, EFAULT, &f, sizeof(f));
	ck_assert_uint_eq(f.flags & bad,
			  MEMFAULT_FAULT_SIZE_ZERO | MEMFAULT_FAULT_UNALIGNED);
}
END_TEST

START_TEST(output_copy_respects_caller_size)
{
	unsigned char buf[sizeof(struct memfault_fault) + 16];
	struct memfault_fault f;

	set_fault(KVM_MEMORY_EXIT_FLAG_PRIVATE, 0x5000, page);
	/* an older caller that knows only gpa and size */
	memset(buf, 0xee, sizeof(buf));
	ck_assert_int_eq(memfault_exit_classify(&run, -1, EFAULT,
						(struct memfault_fault *)buf,
						16),
			 MEMFAULT_RUN_MEMORY_FAULT);
	memcpy(&f, buf, sizeof(f));
	ck_assert_uint_eq(f.gpa, 0x5000);
	ck_assert_uint_eq(f.size, page);
	ck_assert_uint_eq(buf[16], 0xee);
	/* a newer caller with a longer struct: the tail is left alone */
	memset(buf, 0xee, sizeof(buf));
	memfault_exit_classify(&run, -1, EFAULT, (struct memfault_fault *)buf,
			       sizeof(buf));
	ck_assert_uint_eq(buf[sizeof(struct memfault_fault)], 0xee);
	memcpy(&f, buf, sizeof(f));
	ck_assert_uint_eq(f.reserved[0], 0);
}
END_TEST

START_TEST(bad_arguments)
{
	struct memfault_fault f;

	set_fault(0, 0x1000, page);
	ck_assert_int_eq(memfault_exit_classify(NULL, 0, 0, &f, sizeof(f)),
			 -EINVAL);
	ck_assert_int_eq(memfault_exit_classify(&run, 0, 0, &f, 0), -EINVAL);
	ck_assert_int_eq(memfault_exit_prepare(NULL, MEMFAULT_ARCH_HOST),
			 -EINVAL);
	ck_assert_int_eq(memfault_exit_prepare(&run, 3), -EINVAL);
	ck_assert_int_eq(memfault_exit_prepare(&run, UINT32_MAX), -EINVAL);
	/* nothing read or written changed the input */
	ck_assert_uint_eq(run.exit_reason, KVM_EXIT_MEMORY_FAULT);
	ck_assert_uint_eq(run.memory_fault.gpa, 0x1000);
}
END_TEST

START_TEST(garbage_run_never_crashes)
{
	/* deterministic pseudo-random kvm_run contents, results and errnos */
	uint64_t x = 0x9e3779b97f4a7c15ull;

	for (int i = 0; i < 20000; i++) {
		unsigned char *p = (unsigned char *)&run;
		struct memfault_fault f;
		int ret, err, r;

		for (size_t j = 0; j < 64; j++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			p[j] = (unsigned char)x;
		}
		if (i & 1)
			run.exit_reason = KVM_EXIT_MEMORY_FAULT;
		ret = (x & 1) ? -1 : 0;
		err = (int)((x >> 8) % 140);
		r = memfault_exit_classify(&run, ret, err, &f, sizeof(f));
		if (ret == -1 && err == 0) {
			ck_assert_int_eq(r, -EPROTO);
		} else if (ret == 0) {
			ck_assert_int_eq(r, run.exit_reason == KVM_EXIT_MEMORY_FAULT ?
					 MEMFAULT_RUN_MEMORY_FAULT :
					 MEMFAULT_RUN_EXIT);
		} else {
			ck_assert(r == -err || r > 0);
		}
		if (r == MEMFAULT_RUN_MEMORY_FAULT) {
			ck_assert_uint_eq(f.gpa, run.memory_fault.gpa);
			ck_assert_uint_eq(f.kernel_flags, run.memory_fault.flags);
			ck_assert(f.origin >= MEMFAULT_ORIGIN_ERRNO &&
				  f.origin <= MEMFAULT_ORIGIN_OTHER_ERRNO);
		}
	}
}
END_TEST

/* KVM_RUN results that are not system call results: a broken kernel or an
 * interposed ioctl(). Whatever kvm_run says, they are -EPROTO, with no
 * errno read and no fault decoded. */
static const struct {
	int ret, err;
} not_results[] = {
	{ 1, 0 },	      { 1, EFAULT },	 { 2, 0 },
	{ 39, EINTR },	      { INT32_MAX, 0 },	 { -2, EFAULT },
	{ -2, 0 },	      { -EFAULT, EFAULT }, { -4096, 0 },
	{ INT32_MIN, EINTR }, { -1, 0 },	 { -1, -EFAULT },
	{ -1, -1 },	      { -1, 4096 },	 { -1, 100000 },
	{ -1, INT32_MAX },    { -1, INT32_MIN },
};

START_TEST(not_a_result_is_eproto)
{
	static const uint32_t reasons[] = { KVM_EXIT_MEMORY_FAULT,
					    KVM_EXIT_MMIO, KVM_EXIT_UNKNOWN,
					    KVM_EXIT_INTR };

	for (size_t i = 0; i < sizeof(not_results) / sizeof(not_results[0]);
	     i++) {
		for (size_t j = 0; j < sizeof(reasons) / sizeof(reasons[0]);
		     j++) {
			struct memfault_fault f;
			int r;

			set_fault(KVM_MEMORY_EXIT_FLAG_PRIVATE, 0x1000, page);
			run.exit_reason = reasons[j];
			memset(&f, 0xa5, sizeof(f));
			r = memfault_exit_classify(&run, not_results[i].ret,
						   not_results[i].err, &f,
						   sizeof(f));
			ck_assert_msg(r == -EPROTO,
				      "ret %d errno %d exit %u: %d, not -EPROTO",
				      not_results[i].ret, not_results[i].err,
				      reasons[j], r);
			ck_assert_uint_eq(f.gpa, 0xa5a5a5a5a5a5a5a5ull);
		}
	}
	/* the largest errno is still one */
	run.exit_reason = KVM_EXIT_UNKNOWN;
	ck_assert_int_eq(memfault_exit_classify(&run, -1, 4095, NULL, 0),
			 -4095);
	ck_assert_int_eq(memfault_exit_classify(&run, -1, 1, NULL, 0), -1);
}
END_TEST

START_TEST(prepare_drops_a_stale_fault)
{
	static const uint32_t arches[] = { MEMFAULT_ARCH_HOST,
					   MEMFAULT_ARCH_X86_64,
					   MEMFAULT_ARCH_ARM64 };
	static const int early[] = { EINVAL, EIO, EBADF, ENOMEM, EFAULT };

	for (size_t a = 0; a < sizeof(arches) / sizeof(arches[0]); a++) {
		for (size_t i = 0; i < sizeof(early) / sizeof(early[0]); i++) {
			struct memfault_fault f;

			/* a fault from the previous run, handled */
			set_fault(0, 0x20000, page);
			memset(&f, 0xa5, sizeof(f));
			ck_assert_int_eq(memfault_exit_prepare(&run, arches[a]),
					 0);
			/* KVM_RUN fails before it writes an exit */
			ck_assert_int_eq(memfault_exit_classify(&run, -1,
								early[i], &f,
								sizeof(f)),
					 -early[i]);
			ck_assert_uint_eq(f.gpa, 0xa5a5a5a5a5a5a5a5ull);
			ck_assert_uint_eq(run.exit_reason, KVM_EXIT_UNKNOWN);
			/* the range is left: only exit_reason is written */
			ck_assert_uint_eq(run.memory_fault.gpa, 0x20000);
			/* a fresh fault after prepare is still one */
			set_fault(0, 0x30000, page);
			ck_assert_int_eq(memfault_exit_classify(&run, -1,
								early[i], &f,
								sizeof(f)),
					 MEMFAULT_RUN_MEMORY_FAULT);
			ck_assert_uint_eq(f.gpa, 0x30000);
		}
	}
}
END_TEST

START_TEST(prepare_keeps_every_other_exit)
{
	/* arm64 completes an MMIO load on entry only while exit_reason
	 * still says KVM_EXIT_MMIO: prepare must not touch it, nor the
	 * union the kernel reads back (mmio.data). */
	static const uint32_t reasons[] = { KVM_EXIT_MMIO, KVM_EXIT_IO,
					    KVM_EXIT_UNKNOWN, KVM_EXIT_INTR,
					    KVM_EXIT_SYSTEM_EVENT, 38, 40,
					    0xffffffffu };
	unsigned char before[sizeof(run)];

	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
		for (uint32_t arch = 0; arch <= MEMFAULT_ARCH_ARM64; arch++) {
			memset(&run, 0x3c, sizeof(run));
			run.exit_reason = reasons[i];
			memcpy(before, &run, sizeof(run));
			ck_assert_int_eq(memfault_exit_prepare(&run, arch), 0);
			ck_assert(!memcmp(before, &run, sizeof(run)));
		}
	}
	/* exit 39: exit_reason alone changes */
	memset(&run, 0x3c, sizeof(run));
	run.exit_reason = KVM_EXIT_MEMORY_FAULT;
	memcpy(before, &run, sizeof(run));
	ck_assert_int_eq(memfault_exit_prepare(&run, MEMFAULT_ARCH_ARM64), 0);
	run.exit_reason = KVM_EXIT_MEMORY_FAULT;
	ck_assert(!memcmp(before, &run, sizeof(run)));
	/* bad input changes nothing */
	ck_assert_int_eq(memfault_exit_prepare(&run, 7), -EINVAL);
	ck_assert_uint_eq(run.exit_reason, KVM_EXIT_MEMORY_FAULT);
}
END_TEST

START_TEST(arch_table)
{
	ck_assert_int_eq(memfault_arch_reads_back_exit(MEMFAULT_ARCH_ARM64,
						       KVM_EXIT_MMIO), 1);
	ck_assert_int_eq(memfault_arch_reads_back_exit(MEMFAULT_ARCH_X86_64,
						       KVM_EXIT_MMIO), 0);
	ck_assert_int_eq(memfault_arch_reads_back_exit(MEMFAULT_ARCH_X86_64,
						       KVM_EXIT_IO), 0);
	/* the one value the library resets must never be a read-back one */
	ck_assert_int_eq(memfault_arch_reads_back_exit(MEMFAULT_ARCH_ARM64,
						       KVM_EXIT_MEMORY_FAULT), 0);
	ck_assert_int_eq(memfault_arch_reads_back_exit(MEMFAULT_ARCH_X86_64,
						       KVM_EXIT_MEMORY_FAULT), 0);
	ck_assert_int_eq(memfault_arch_reads_back_exit(MEMFAULT_ARCH_ARM64,
						       100000), 0);
	ck_assert_int_ge(memfault_arch_reads_back_exit(MEMFAULT_ARCH_HOST,
						       KVM_EXIT_MMIO), 0);
	ck_assert_int_eq(memfault_arch_reads_back_exit(3, KVM_EXIT_MMIO), -EINVAL);
	ck_assert_int_eq(memfault_arch_reads_back_exit(UINT32_MAX, 0), -EINVAL);
}
END_TEST

START_TEST(version)
{
	ck_assert_int_eq(memfault_version_major(), 0);
	ck_assert_int_ge(memfault_version_minor(), 1);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("classify");
	TCase *tc = tcase_create("classify");

	tcase_add_checked_fixture(tc, setup, NULL);
	ADD_TEST(tc, ret0_ordinary_exits);
	ADD_TEST(tc, ret0_memory_fault_is_a_fault);
	ADD_TEST(tc, eintr_and_eagain_win_over_stale_exit);
	ADD_TEST(tc, any_errno_with_exit_is_a_fault);
	ADD_TEST(tc, unannotated_efault_and_other_errors);
	ADD_TEST(tc, flags_decode_as_a_bitmask);
	ADD_TEST(tc, untrusted_ranges_are_flagged);
	ADD_TEST(tc, output_copy_respects_caller_size);
	ADD_TEST(tc, bad_arguments);
	ADD_TEST(tc, garbage_run_never_crashes);
	ADD_TEST(tc, not_a_result_is_eproto);
	ADD_TEST(tc, prepare_drops_a_stale_fault);
	ADD_TEST(tc, prepare_keeps_every_other_exit);
	ADD_TEST(tc, arch_table);
	ADD_TEST(tc, version);
	suite_add_tcase(s, tc);
	return tc_run(s);
}
