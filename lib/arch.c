/* SPDX-License-Identifier: MIT */
/*
 * Everything the library knows that differs between architectures. The
 * rest of the code asks this table; it has no per-arch #ifdef.
 */
#include "memfault-private.h"

static const struct memfault_arch_info arch_table[] = {
	[MEMFAULT_ARCH_X86_64] = {
		.name = "x86_64",
		/* x86 completes IO and MMIO through the kernel-private
		 * complete_userspace_io callback and never reads exit_reason
		 * back (kvm_arch_vcpu_ioctl_run(), arch/x86/kvm/x86.c). */
		.readback_exits = 0,
		/* KVM_CAP_MEMORY_FAULT_INFO: x86.c kvm_vm_ioctl_check_extension() */
		.advertises_memory_fault_info = true,
		.gmem_exits_without_cap = false,
		.memory_fault_with_ret0 = false,
	},
	[MEMFAULT_ARCH_ARM64] = {
		.name = "arm64",
		/* kvm_arch_vcpu_ioctl_run() (arch/arm64/kvm/arm.c) calls
		 * kvm_handle_mmio_return() only while exit_reason is still
		 * KVM_EXIT_MMIO: overwrite it and the load result is lost. */
		.readback_exits = 1ull << KVM_EXIT_MMIO,
		/* arm64 never advertises the cap, yet gmem_abort() emits the exit */
		.advertises_memory_fault_info = false,
		.gmem_exits_without_cap = true,
		/* kvm_handle_vncr_abort() (arch/arm64/kvm/nested.c) returns 0
		 * after preparing a memory-fault exit */
		.memory_fault_with_ret0 = true,
	},
};

const struct memfault_arch_info *
memfault_arch_get(uint32_t arch)
{
	if (arch == MEMFAULT_ARCH_HOST)
		arch = memfault_arch_host();
	if (arch >= sizeof(arch_table) / sizeof(arch_table[0]) ||
	    !arch_table[arch].name)
		return NULL;
	return &arch_table[arch];
}

uint32_t
memfault_arch_host(void)
{
#if defined(__x86_64__)
	return MEMFAULT_ARCH_X86_64;
#elif defined(__aarch64__)
	return MEMFAULT_ARCH_ARM64;
#else
#error "libmemfault supports x86-64 and arm64"
#endif
}

MEMFAULT_EXPORT int
memfault_arch_reads_back_exit(uint32_t arch, uint32_t exit_reason)
{
	const struct memfault_arch_info *info = memfault_arch_get(arch);

	if (!info)
		return -EINVAL;
	if (exit_reason >= 64)
		return 0;
	return !!(info->readback_exits & (1ull << exit_reason));
}
