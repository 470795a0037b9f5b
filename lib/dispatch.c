/* SPDX-License-Identifier: MIT */
/*
 * Dispatch: resolve memory faults inside the run loop.
 */
#include <limits.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "barrier.h"
#include "memfault-private.h"
#include "region-private.h"

/*
 * Internal verdict: a kick arrived while resolving a fault. Outside both
 * enum memfault_verdict and the negative errnos (-4095..-1) a handler may
 * return, so that no handler's result can be mistaken for it.
 */
#define VERDICT_INTERRUPTED INT_MIN
_Static_assert(VERDICT_INTERRUPTED < -4095, "collides with an errno");
/*
 * Pages paged in for one fault at most: a 2 MiB huge page of 4 KiB pages,
 * the largest range one x86 fault covers. A longer reported range goes to
 * the VMM after these, so that a bogus size (2^40 pages) cannot make one
 * exit walk a whole region.
 */
#define MAX_FAULT_PAGES 512
/*
 * EAGAIN/EINTR answers of KVM_SET_MEMORY_ATTRIBUTES retried for one
 * conversion: enough for any transient answer, few enough that an ioctl
 * that always says "again" (a broken interposer) costs microseconds, not a
 * hung vCPU thread. After them, the errno goes to the caller.
 */
#define MAX_CONVERT_RETRIES 64

/* Handler timing costs two clock_gettime() per call: only when asked for
 * (MEMFAULT_VCPU_TIME_HANDLERS), never on the default fast path. */
static inline uint64_t
handler_start(const struct memfault_vcpu *vcpu)
{
	return unlikely(vcpu->time_handlers) ? memfault_now_ns() : 0;
}

static inline void
handler_end(struct memfault_vcpu *vcpu, uint64_t t0)
{
	if (unlikely(vcpu->time_handlers))
		memfault_counter_add(&vcpu->stats.handler_ns,
				     memfault_now_ns() - t0);
}

/* A handler's verdict, checked: anything else is the handler's bug. */
static inline int
checked(struct memfault_vcpu *vcpu, const char *what, int v)
{
	if (likely(v == MEMFAULT_RESOLVED || v == MEMFAULT_TO_VMM ||
		   (v < 0 && v > -4096)))
		return v;
	memfault_vm_log(vcpu->vm, 3, "%s handler returned %d", what, v);
	return -EPROTO;
}

/* A kick ended a wait or came between pages: consume it as
 * memfault_vcpu_run() would. Only this thread clears immediate_exit; a
 * kick storing 1 after this store makes the next KVM_RUN return at once. */
static int
take_kick(struct memfault_vcpu *vcpu)
{
	MEMFAULT_WRITE_ONCE(vcpu->run->immediate_exit, 0);
	return VERDICT_INTERRUPTED;
}

MEMFAULT_HOT static int
page_in_one(struct memfault_vcpu *vcpu, struct memfault_region *region,
	    uint64_t page, const struct memfault_fault *f)
{
	const struct memfault_handlers *h = &vcpu->vm->handlers;
	struct memfault_trap *trap;
	uint64_t t0;
	int r;

	/* A kick ends the wait for another thread's fetch: -EINTR means
	 * immediate_exit is set, whatever the signal's SA_RESTART. */
	r = region_claim_try(region, page);
	if (r == MEMFAULT_CLAIM_BUSY)
		r = region_claim_page_wait(region, page, 0, vcpu);
	if (r == -EINTR)
		return take_kick(vcpu);
	if (r < 0)
		return r;
	if (r == MEMFAULT_CLAIM_PRESENT) {
		/* another vCPU fetched it, or it was never missing */
		memfault_counter_add(&vcpu->stats.page_waits, 1);
		return MEMFAULT_RESOLVED;
	}
	if (!h->page_in) {
		memfault_region_abort(region, page);
		return MEMFAULT_TO_VMM;
	}
	trap = memfault_region_get_trap(region);
	t0 = handler_start(vcpu);
	/* Under a trap source a write to the hva would itself trap: the page
	 * is filled aside and installed by the trap source. */
	r = trap ? trap->ops->page_in(trap, vcpu, page) :
		   h->page_in(h->user, vcpu, region, page,
			      region->hva ? (char *)region->hva +
						    (page << memfault_page_shift) :
					    NULL,
			      memfault_page_size);
	handler_end(vcpu, t0);
	r = checked(vcpu, "page_in", r);
	if (r != MEMFAULT_RESOLVED) {
		/* one of the waiters takes the page over */
		memfault_region_abort(region, page);
		memfault_vm_log(vcpu->vm, 4, "page_in of gpa %#llx failed: %d",
				(unsigned long long)f->gpa, r);
		return r;
	}
	region_publish_page(region, page);
	memfault_counter_add(&vcpu->stats.page_ins, 1);
	return MEMFAULT_RESOLVED;
}

/*
 * Page in exactly the pages [gpa, gpa + size) touches inside the region
 * that holds gpa, at most MAX_FAULT_PAGES of them. The range is the
 * kernel's report (or an interposer's): it may be unaligned, cross the
 * region's end or be absurdly long. Whatever is left (outside the region,
 * or beyond the bound) is the VMM's: MEMFAULT_TO_VMM after the pages in
 * range were paged in.
 */
MEMFAULT_HOT static int
resolve_userfault(struct memfault_vcpu *vcpu, const struct memfault_fault *f)
{
	struct memfault_region *region;
	uint64_t page, first, last;
	bool rest = false;
	int r;

	if (!f->size || f->size - 1 > UINT64_MAX - f->gpa)
		return MEMFAULT_TO_VMM;
	region = vcpu->hint_region;
	if (likely(region && vcpu->hint_gen == vcpu->vm->regions_gen &&
		   f->gpa - region->gpa < region->size)) {
		first = (f->gpa - region->gpa) >> memfault_page_shift;
	} else {
		if (memfault_vm_find_region(vcpu->vm, f->gpa, &region, &first))
			return MEMFAULT_TO_VMM;
		vcpu->hint_region = region;
		vcpu->hint_gen = vcpu->vm->regions_gen;
	}
	/* f->gpa >= region->gpa (found), and the end does not wrap (above) */
	last = (f->gpa + (f->size - 1) - region->gpa) >> memfault_page_shift;
	if (last >= region->npages) {
		last = region->npages - 1;
		rest = true;
	}
	if (last - first >= MAX_FAULT_PAGES) {
		last = first + MAX_FAULT_PAGES - 1;
		rest = true;
	}
	for (page = first; page <= last; page++) {
		/* a kick is answered between pages, not after the last one */
		if (page != first &&
		    unlikely(MEMFAULT_READ_ONCE(vcpu->run->immediate_exit)))
			return take_kick(vcpu);
		r = page_in_one(vcpu, region, page, f);
		if (r != MEMFAULT_RESOLVED)
			return r;
	}
	return rest ? MEMFAULT_TO_VMM : MEMFAULT_RESOLVED;
}

static int
default_convert(struct memfault_vcpu *vcpu, const struct memfault_fault *f)
{
	const struct memfault_handlers *h = &vcpu->vm->handlers;
	const uint64_t pmask = memfault_page_size - 1;
	uint32_t to_private = !!(f->flags & MEMFAULT_FAULT_PRIVATE);
	struct kvm_memory_attributes a;
	unsigned int tries = 0;

	if (f->flags & (MEMFAULT_FAULT_SIZE_ZERO | MEMFAULT_FAULT_OVERFLOW) ||
	    f->gpa + f->size + pmask < f->gpa)
		return MEMFAULT_TO_VMM;
	memset(&a, 0, sizeof(a));
	a.address = f->gpa & ~pmask;
	a.size = ((f->gpa + f->size + pmask) & ~pmask) - a.address;
	/* The same bound as a page-in: the kernel reports one page (or one
	 * huge page) per conversion exit. A longer report comes from a buggy
	 * kernel or an interposer, and converting what it names could flip
	 * memory the guest never touched: the VMM decides instead. */
	if (a.size > (uint64_t)MAX_FAULT_PAGES << memfault_page_shift)
		return MEMFAULT_TO_VMM;
	a.attributes = to_private ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
	/* kvm_vm_set_mem_attributes() itself neither sleeps interruptibly
	 * nor asks to be called again, but the ioctl may be interposed (or
	 * a later kernel may bail out on a pending signal): EAGAIN and EINTR
	 * are retried, a bounded number of times, and a kick ends the
	 * conversion as it ends a page-in (the fault comes back on the next
	 * run, and is converted then). */
	while (ioctl(vcpu->vm->fd, KVM_SET_MEMORY_ATTRIBUTES, &a)) {
		int err = errno;

		if ((err == EAGAIN || err == EINTR) &&
		    ++tries <= MAX_CONVERT_RETRIES) {
			if (unlikely(MEMFAULT_READ_ONCE(
				    vcpu->run->immediate_exit)))
				return take_kick(vcpu);
			continue;
		}
		memfault_vm_log(vcpu->vm, 3,
				"KVM_SET_MEMORY_ATTRIBUTES(%#llx, %#llx) failed: %d",
				(unsigned long long)a.address,
				(unsigned long long)a.size, -err);
		return -err;
	}
	if (h->discard) {
		uint64_t gpa = f->gpa & ~pmask;
		uint64_t len = ((f->gpa + f->size + pmask) & ~pmask) - gpa;
		uint64_t t0 = handler_start(vcpu);
		int r = h->discard(h->user, gpa, len, to_private);

		handler_end(vcpu, t0);
		r = checked(vcpu, "discard", r);

		if (r < 0)
			return r;
	}
	return MEMFAULT_RESOLVED;
}

static int
call_fault_handler(struct memfault_vcpu *vcpu, const char *what,
		   int (*fn)(void *, struct memfault_vcpu *,
			     const struct memfault_fault *),
		   const struct memfault_fault *f)
{
	uint64_t t0;
	int r;

	if (!fn)
		return MEMFAULT_TO_VMM;
	t0 = handler_start(vcpu);
	r = fn(vcpu->vm->handlers.user, vcpu, f);
	handler_end(vcpu, t0);
	return checked(vcpu, what, r);
}

static bool
is_conversion(const struct memfault_vm *vm, const struct memfault_fault *f)
{
	/* Only a VM with private memory converts; anything the kernel
	 * added that we do not know, or a failure other than EFAULT, is
	 * not a conversion request (QEMU treats every fault as one). */
	return (vm->features.memory_attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE) &&
	       f->error == -EFAULT &&
	       !(f->flags & (MEMFAULT_FAULT_UNKNOWN | MEMFAULT_FAULT_USERFAULT));
}

/*
 * @converted: the same fault came straight back after the default
 * conversion. Converting again would change nothing: it is no conversion
 * request (in a KVM_X86_SW_PROTECTED_VM the attribute itself decides
 * whether an access is private, so a PRIVATE exit there means guest_memfd
 * could not serve it), and it goes to the "other" handler instead.
 */
MEMFAULT_HOT static int
dispatch_fault(struct memfault_vcpu *vcpu, const struct memfault_fault *f,
	       bool converted, bool *ret_default_conversion)
{
	const struct memfault_handlers *h = &vcpu->vm->handlers;
	int r;

	if (f->flags & MEMFAULT_FAULT_USERFAULT) {
		memfault_counter_add(&vcpu->stats.userfaults, 1);
		return resolve_userfault(vcpu, f);
	}
	if (f->flags & MEMFAULT_FAULT_HWPOISON) {
		memfault_counter_add(&vcpu->stats.hwpoison, 1);
		return call_fault_handler(vcpu, "hwpoison", h->hwpoison, f);
	}
	if (is_conversion(vcpu->vm, f) && !(converted && !h->convert)) {
		if (h->convert) {
			r = call_fault_handler(vcpu, "convert", h->convert, f);
		} else {
			r = default_convert(vcpu, f);
			*ret_default_conversion = true;
		}
		if (r == MEMFAULT_RESOLVED)
			memfault_counter_add(&vcpu->stats.conversions, 1);
		return r;
	}
	memfault_counter_add(&vcpu->stats.other_faults, 1);
	return call_fault_handler(vcpu, "other", h->other, f);
}

/* What makes a fault "the same" for the repeat guard. */
struct fault_key {
	uint64_t gpa, size, kernel_flags;
	int32_t error;
};

static inline bool
same_fault(const struct memfault_fault *a, const struct fault_key *b)
{
	return a->gpa == b->gpa && a->size == b->size &&
	       a->kernel_flags == b->kernel_flags && a->error == b->error;
}

MEMFAULT_EXPORT MEMFAULT_HOT int
memfault_vcpu_run_dispatch(struct memfault_vcpu *vcpu)
{
	struct fault_key last = { 0, 0, 0, 0 };
	bool have_last = false, last_converted = false;
	uint32_t repeats = 0;

	if (!vcpu)
		return -EINVAL;
	for (;;) {
		int r = memfault_vcpu_run(vcpu);

		if (r != MEMFAULT_RUN_MEMORY_FAULT)
			return r;
		/* api.rst asks userspace to guard against a fault that keeps
		 * coming back after it was resolved. */
		bool again = have_last && same_fault(&vcpu->fault, &last);
		bool converted = false;

		if (again) {
			if (++repeats > vcpu->vm->handlers.max_repeats) {
				memfault_counter_add(
					&vcpu->stats.repeat_trips, 1);
				memfault_vm_log(vcpu->vm, 3,
						"fault at gpa %#llx came back %u times after it was resolved",
						(unsigned long long)last.gpa,
						repeats);
				return -ELOOP;
			}
		} else {
			repeats = 0;
		}
		r = dispatch_fault(vcpu, &vcpu->fault, again && last_converted,
				   &converted);
		if (r == MEMFAULT_RESOLVED) {
			last_converted = converted;
			last.gpa = vcpu->fault.gpa;
			last.size = vcpu->fault.size;
			last.kernel_flags = vcpu->fault.kernel_flags;
			last.error = vcpu->fault.error;
			have_last = true;
			memfault_counter_add(&vcpu->stats.retries, 1);
			continue;
		}
		if (r == VERDICT_INTERRUPTED) {
			memfault_counter_add(&vcpu->stats.interrupted, 1);
			return MEMFAULT_RUN_INTERRUPTED;
		}
		if (r == MEMFAULT_TO_VMM) {
			memfault_counter_add(&vcpu->stats.to_vmm, 1);
			return MEMFAULT_RUN_MEMORY_FAULT;
		}
		return r;
	}
}

MEMFAULT_EXPORT int
memfault_vcpu_get_stats(const struct memfault_vcpu *vcpu,
			struct memfault_vcpu_stats *ret_stats, size_t size)
{
	struct memfault_vcpu_stats s;
	uint64_t *dst = (uint64_t *)&s;
	const uint64_t *src;

	if (!vcpu || !ret_stats || !size)
		return -EINVAL;
	src = (const uint64_t *)&vcpu->stats;
	/* each counter has one writer, the vCPU thread: relaxed loads give
	 * whole values, never torn ones */
	for (size_t i = 0; i < sizeof(s) / sizeof(uint64_t); i++)
		dst[i] = MEMFAULT_READ_ONCE(src[i]);
	memfault_copy_out(ret_stats, size, &s, sizeof(s));
	return 0;
}
