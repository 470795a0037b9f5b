/* SPDX-License-Identifier: MIT */
/*
 * The exit contract (classify.c): what one KVM_RUN result means. Shared
 * by memfault_vcpu_run() (vcpu.c) and memfault_exit_classify() and
 * memfault_exit_prepare() (classify.c).
 */
#ifndef MEMFAULT_CLASSIFY_H
#define MEMFAULT_CLASSIFY_H

#include "memfault-private.h"

/* The largest errno a system call returns (MAX_ERRNO, include/linux/err.h). */
#define MEMFAULT_MAX_ERRNO 4095

/* Everything but an ordinary exit: a memory fault with ret 0, a failure,
 * or a result that is not one (-EPROTO). */
int memfault_classify_slow(const struct kvm_run *run, int ret, int err,
			   struct memfault_fault *fault);

/*
 * The exit contract: what one KVM_RUN result (@ret, and *@err, the errno
 * read right after it, only read when @ret is -1) and the kvm_run it left
 * mean. memfault_vcpu_run() and memfault_exit_classify() both call this,
 * so that they cannot disagree; inline, and @err a pointer (&errno), so
 * that an ordinary exit costs memfault_vcpu_run() two compares, no call
 * and no errno read. @fault is written only for MEMFAULT_RUN_MEMORY_FAULT.
 */
static inline int
memfault_classify_result(const struct kvm_run *run, int ret, const int *err,
			 struct memfault_fault *fault)
{
	if (likely(ret == 0 && run->exit_reason != KVM_EXIT_MEMORY_FAULT))
		return MEMFAULT_RUN_EXIT;
	return memfault_classify_slow(run, ret, ret == -1 ? *err : 0, fault);
}

/* Whether the kernel of @ai leaves exit 39 alone on entry, so that
 * memfault_prepare_entry() may reset it (no arch reads it back today). */
static inline bool
memfault_arch_resets_memory_fault(const struct memfault_arch_info *ai)
{
	return !(ai->readback_exits & (1ull << KVM_EXIT_MEMORY_FAULT));
}

/*
 * Before each KVM_RUN whose result is classified: a KVM_RUN that fails
 * before it writes an exit (EINVAL, EIO, EBADF, ...) leaves the previous
 * exit_reason in place, and a leftover memory fault would read as a fresh
 * one. Only that value is reset; any other may be one the kernel reads
 * back on entry (arm64 KVM_EXIT_MMIO). Shared by memfault_vcpu_run() and
 * memfault_exit_prepare().
 */
static inline void
memfault_prepare_entry(struct kvm_run *run, bool reset_memory_fault)
{
	if (run->exit_reason == KVM_EXIT_MEMORY_FAULT && reset_memory_fault)
		run->exit_reason = KVM_EXIT_UNKNOWN;
}

#endif /* MEMFAULT_CLASSIFY_H */
