/* SPDX-License-Identifier: MIT */
/*
 * The exit contract: what one KVM_RUN result means, the same on every
 * architecture, for memfault_vcpu_run() and memfault_exit_classify() alike.
 */
#include "memfault-private.h"
#include "classify.h"
#include "kvm-userfault-proposed.h"

/* Public constants and layouts must agree with the kernel's. */
_Static_assert(sizeof(((struct kvm_run *)0)->exit_reason) == 4,
	       "exit_reason is a __u32");
_Static_assert(KVM_EXIT_MEMORY_FAULT == 39, "KVM_EXIT_MEMORY_FAULT");
_Static_assert(offsetof(struct kvm_run, memory_fault.flags) == 32,
	       "memory_fault.flags offset");
_Static_assert(offsetof(struct kvm_run, memory_fault.gpa) == 40,
	       "memory_fault.gpa offset");
_Static_assert(offsetof(struct kvm_run, memory_fault.size) == 48,
	       "memory_fault.size offset");
_Static_assert(KVM_MEMORY_EXIT_FLAG_PRIVATE == (1ull << 3), "PRIVATE bit");
_Static_assert(KVM_MEMORY_EXIT_FLAG_USERFAULT == (1ull << 4),
	       "USERFAULT bit (proposed v3)");
_Static_assert(sizeof(struct memfault_fault) == 64, "memfault_fault ABI");
_Static_assert(sizeof(struct memfault_features) == 64,
	       "memfault_features ABI");


MEMFAULT_EXPORT int
memfault_exit_prepare(struct kvm_run *run, uint32_t arch)
{
	const struct memfault_arch_info *ai = memfault_arch_get(arch);

	if (!run || !ai)
		return -EINVAL;
	memfault_prepare_entry(run, memfault_arch_resets_memory_fault(ai));
	return 0;
}

MEMFAULT_EXPORT int
memfault_exit_classify(const struct kvm_run *run, int ioctl_ret, int err,
		       struct memfault_fault *ret_fault, size_t size)
{
	struct memfault_fault f;
	int r;

	if (!run || (ret_fault && !size))
		return -EINVAL;
	/* The same function as memfault_vcpu_run(), so that the two cannot
	 * answer differently for the same KVM_RUN result. */
	r = memfault_classify_result(run, ioctl_ret, &err, &f);
	if (r == MEMFAULT_RUN_MEMORY_FAULT && ret_fault)
		memfault_copy_out(ret_fault, size, &f, sizeof(f));
	return r;
}
