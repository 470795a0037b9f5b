/* SPDX-License-Identifier: MIT */
/*
 * The exit contract: what one KVM_RUN result means. Shared by
 * memfault_vcpu_run() (vcpu.c) and memfault_exit_classify() and
 * memfault_exit_prepare() (classify.c). All of it is inline, so that a
 * memory fault costs memfault_vcpu_run() no call: under an emulated CPU
 * (QEMU TCG with nested KVM) every function entered after a VM exit is a
 * translation-block lookup, and a separate classification function made
 * the fault exit measurably slower than an ordinary one
 * (doc/performance.md, nested fault exit).
 */
#ifndef MEMFAULT_CLASSIFY_H
#define MEMFAULT_CLASSIFY_H

#include "memfault-private.h"

#include "kvm-userfault-proposed.h"

/* The largest errno a system call returns (MAX_ERRNO, include/linux/err.h). */
#define MEMFAULT_MAX_ERRNO 4095

/* The memory_fault.flags this library knows the meaning of. */
#define MEMFAULT_KNOWN_KERNEL_FLAGS \
	(KVM_MEMORY_EXIT_FLAG_PRIVATE | KVM_MEMORY_EXIT_FLAG_USERFAULT)

/* Decode the memory fault of @run (and @err) into @f. */
static inline void
memfault_decode_fault(const struct kvm_run *run, int err,
		      struct memfault_fault *f)
{
	uint64_t kflags = run->memory_fault.flags;
	uint64_t gpa = run->memory_fault.gpa;
	uint64_t size = run->memory_fault.size;
	uint64_t flags = 0;

	if (kflags & KVM_MEMORY_EXIT_FLAG_PRIVATE)
		flags |= MEMFAULT_FAULT_PRIVATE;
	if (kflags & KVM_MEMORY_EXIT_FLAG_USERFAULT)
		flags |= MEMFAULT_FAULT_USERFAULT;
	if (kflags & ~(uint64_t)MEMFAULT_KNOWN_KERNEL_FLAGS)
		flags |= MEMFAULT_FAULT_UNKNOWN;
	if (err == EHWPOISON)
		flags |= MEMFAULT_FAULT_HWPOISON;
	/* The range comes from the kernel but is still only a report: flag
	 * what no caller should act on blindly. */
	if (!size)
		flags |= MEMFAULT_FAULT_SIZE_ZERO;
	if ((gpa | size) & (memfault_page_size - 1))
		flags |= MEMFAULT_FAULT_UNALIGNED;
	if (gpa + size < gpa)
		flags |= MEMFAULT_FAULT_OVERFLOW;

	f->gpa = gpa;
	f->size = size;
	f->flags = flags;
	f->kernel_flags = kflags;
	f->error = -err;
	if (!err)
		f->origin = MEMFAULT_ORIGIN_RET0;
	else if (err == EFAULT || err == EHWPOISON)
		f->origin = MEMFAULT_ORIGIN_ERRNO;
	else
		f->origin = MEMFAULT_ORIGIN_OTHER_ERRNO;
	f->reserved[0] = f->reserved[1] = f->reserved[2] = 0;
}

static inline int
memfault_classify_error(const struct kvm_run *run, int err,
			struct memfault_fault *f)
{
	/* exit_reason is stale after EINTR and EAGAIN (immediate_exit and
	 * the x86 UNINITIALIZED mp_state path return before it is reset), so
	 * these two win over whatever it says. */
	if (err == EINTR)
		return MEMFAULT_RUN_INTERRUPTED;
	if (err == EAGAIN)
		return MEMFAULT_RUN_RETRY;
	/* Not only EFAULT/EHWPOISON as api.rst says: guest_memfd passes
	 * ENOMEM, EIO, ... through with the exit filled in (x86
	 * kvm_mmu_faultin_pfn_gmem(), arm64 gmem_abort()). */
	if (run->exit_reason == KVM_EXIT_MEMORY_FAULT) {
		memfault_decode_fault(run, err, f);
		return MEMFAULT_RUN_MEMORY_FAULT;
	}
	return -err;
}

/* Everything but an ordinary exit: a memory fault with ret 0, a failure,
 * or a result that is not one (-EPROTO). Always inline: see the top. */
static inline __attribute__((always_inline)) int
memfault_classify_slow(const struct kvm_run *run, int ret, int err,
		       struct memfault_fault *f)
{
	if (ret == 0) {
		/* The fast path in memfault_classify_result() took every
		 * other exit; only the arm64 VNCR path gets here. */
		memfault_decode_fault(run, 0, f);
		return MEMFAULT_RUN_MEMORY_FAULT;
	}
	/* ioctl() returns 0 or -1 with errno in 1..4095 (the kernel's
	 * MAX_ERRNO, include/linux/err.h). Anything else comes from a broken
	 * kernel or an interposer: no classification, and no stale errno or
	 * stale exit_reason read as if it meant something. */
	if (ret != -1 || err <= 0 || err > MEMFAULT_MAX_ERRNO)
		return -EPROTO;
	return memfault_classify_error(run, err, f);
}

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
