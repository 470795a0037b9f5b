/* SPDX-License-Identifier: MIT */
/*
 * Ordinary exits on a real kernel go through memfault_vcpu_run() as
 * MEMFAULT_RUN_EXIT, and the data the VMM supplies for a read (x86 IN,
 * MMIO read on both arches) reaches the guest: the guest writes it back in
 * the next exit. On arm64 this proves that the library
 * leaves KVM_EXIT_MMIO in kvm_run for the kernel to read back.
 */
#include "ktest.h"

#if KT_X86
/* Steps 1-3 of the main script: OUT 0x42, IN (0x10 supplied), OUT 0x10:
 * the value went to the guest's %al and came back. */
static void
script_io(struct kt_vm *v)
{
	kt_expect_io_out(v, kt_run(v), 0x42);
	kt_expect_io_in(v, kt_run(v), 0x10);
	kt_expect_io_out(v, kt_run(v), 0x10);
}

START_TEST(io)
{
	struct kt_vm v;

	kt_vm_create(&v, 0, "io");
	kt_vcpu_create(&v, KT_ENTRY_MAIN);
	kt_expect_io_out(&v, kt_run(&v), 0x42);
	kt_vm_destroy(&v);
}
END_TEST

START_TEST(io_in)
{
	struct kt_vm v;

	kt_vm_create(&v, 0, "io-in");
	kt_vcpu_create(&v, KT_ENTRY_MAIN);
	script_io(&v);
	kt_vm_destroy(&v);
}
END_TEST

START_TEST(mmio)
{
	struct kt_vm v;

	kt_vm_create(&v, 0, "mmio");
	kt_vcpu_create(&v, KT_ENTRY_MAIN);
	script_io(&v);
	kt_expect_mmio_write(&v, kt_run(&v), KT_MMIO_GPA, 1, 0x10);
	kt_vm_destroy(&v);
}
END_TEST

START_TEST(mmio_read)
{
	struct kt_vm v;

	kt_vm_create(&v, 0, "mmio-read");
	kt_vcpu_create(&v, KT_ENTRY_MAIN);
	script_io(&v);
	kt_expect_mmio_write(&v, kt_run(&v), KT_MMIO_GPA, 1, 0x10);
	kt_expect_mmio_read(&v, kt_run(&v), KT_MMIO_GPA + 4, 1, 0x20);
	kt_expect_io_out(&v, kt_run(&v), 0x20);
	kt_vm_destroy(&v);
}
END_TEST

START_TEST(hlt)
{
	struct kt_vm v;

	kt_vm_create(&v, 0, "hlt");
	kt_vm_normal_slot(&v);
	kt_vcpu_create(&v, KT_ENTRY_MAIN);
	script_io(&v);
	kt_expect_mmio_write(&v, kt_run(&v), KT_MMIO_GPA, 1, 0x10);
	kt_expect_mmio_read(&v, kt_run(&v), KT_MMIO_GPA + 4, 1, 0x20);
	kt_expect_io_out(&v, kt_run(&v), 0x20);
	kt_expect_report(&v, kt_run(&v), KT_PATTERN);
	kt_expect_exit(&v, kt_run(&v), KVM_EXIT_HLT);
	kt_vm_destroy(&v);
}
END_TEST
#else
START_TEST(mmio)
{
	struct kt_vm v;

	kt_vm_create(&v, 0, "mmio");
	kt_vcpu_create(&v, KT_ENTRY_MAIN);
	kt_expect_mmio_write(&v, kt_run(&v), KT_MMIO_GPA, 4, 0x42);
	kt_vm_destroy(&v);
}
END_TEST

START_TEST(mmio_read)
{
	struct kt_vm v;

	kt_vm_create(&v, 0, "mmio-read");
	kt_vcpu_create(&v, KT_ENTRY_MAIN);
	kt_expect_mmio_write(&v, kt_run(&v), KT_MMIO_GPA, 4, 0x42);
	/* arm64 completes the load on the next KVM_RUN only while
	 * exit_reason still reads KVM_EXIT_MMIO. */
	kt_expect_mmio_read(&v, kt_run(&v), KT_MMIO_GPA + 4, 4, 0x1234);
	kt_expect_mmio_write(&v, kt_run(&v), KT_MMIO_GPA + 8, 4, 0x1234);
	kt_vm_destroy(&v);
}
END_TEST
#endif

/*
 * Why the library never resets exit_reason (other than 39): a VMM that
 * clobbers KVM_EXIT_MMIO after a read exit loses the read on arm64, whose
 * KVM_RUN completes the load only while it still reads KVM_EXIT_MMIO: the
 * load is executed again, a second read exit. x86 completes it through
 * complete_userspace_io whatever exit_reason says. This pins the kernel
 * behaviour the library (and the simulator's MMIO_READBACK quirk) is built
 * on; the library itself is not involved beyond running the vCPU.
 */
START_TEST(readback_clobbered)
{
	struct kt_vm v;

	kt_vm_create(&v, 0, "readback-clobbered");
	kt_vcpu_create(&v, KT_ENTRY_MAIN);
#if KT_X86
	kt_expect_io_out(&v, kt_run(&v), 0x42);
	kt_expect_io_in(&v, kt_run(&v), 0x10);
	v.run->exit_reason = KVM_EXIT_UNKNOWN;
	kt_expect_io_out(&v, kt_run(&v), 0x10);
#else
	kt_expect_mmio_write(&v, kt_run(&v), KT_MMIO_GPA, 4, 0x42);
	kt_expect_mmio_read(&v, kt_run(&v), KT_MMIO_GPA + 4, 4, 0x1234);
	v.run->exit_reason = KVM_EXIT_UNKNOWN;
	/* The value was dropped; the load runs again. */
	kt_expect_mmio_read(&v, kt_run(&v), KT_MMIO_GPA + 4, 4, 0x5678);
	kt_expect_mmio_write(&v, kt_run(&v), KT_MMIO_GPA + 8, 4, 0x5678);
#endif
	kt_vm_destroy(&v);
}
END_TEST

Suite *
kt_suite_exits(void)
{
	return tc_suite("kernel-exits", "exits", 60,
#if KT_X86
			io,
			io_in,
			hlt,
#endif
			mmio,
			mmio_read,
			readback_clobbered,
			NULL);
}

#ifndef KT_NO_MAIN
int
main(void)
{
	return kt_main(kt_suite_exits());
}
#endif
