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

#define KNOWN_KERNEL_FLAGS \
	(KVM_MEMORY_EXIT_FLAG_PRIVATE | KVM_MEMORY_EXIT_FLAG_USERFAULT)

/* Decode the memory fault of @run (and @err) into @f. Static, like
 * memfault_classify_error(): inlined into memfault_classify_slow(), one
 * call on the fault path instead of three (see MEMFAULT_HOT). */
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
	if (kflags & ~(uint64_t)KNOWN_KERNEL_FLAGS)
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

MEMFAULT_HOT int
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
