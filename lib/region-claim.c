/* SPDX-License-Identifier: MIT */
/* Claims of pages: the busy[] bits and their futex waits (kicks end them). */
#include <limits.h>
#include <time.h>
#include <string.h>

#include "barrier.h"
#include "memfault-private.h"
#include "region-private.h"


MEMFAULT_EXPORT int
memfault_region_claim(struct memfault_region *r, uint64_t page,
		      uint32_t flags)
{
	if (!r || page >= r->npages || (flags & ~(uint32_t)MEMFAULT_CLAIM_NOWAIT))
		return -EINVAL;
	return region_claim_page_wait(r, page, flags, NULL);
}

/*
 * Set once futex_waitv() failed with ENOSYS (before Linux 5.16, or an
 * emulator such as qemu-user 7.2 that does not pass it through) or EPERM
 * (a seccomp filter older than it): from then on a vCPU's page-in wait
 * sleeps in KICK_SLICE_NS slices instead. Relaxed: a hint, set once.
 */
static int futex_waitv_missing;

/* Linux 5.16 gave futex_waitv() one number on every architecture. */
#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif

/* Without futex_waitv(), a kick ends a page-in wait within this. */
#define KICK_SLICE_NS 1000000L

/*
 * Sleep while *@fw holds @fv, for dispatch on @vcpu's thread, until a kick.
 * Returns -EINTR if @vcpu was kicked (immediate_exit is set), else 0: the
 * word changed, a signal or a time slice ended the sleep, and the caller
 * looks again.
 *
 * A kick stores immediate_exit, then increments kick_seq and wakes it if
 * kick_waiting is set (memfault_vcpu_kick()). Either we read its kick_seq
 * below, and then also its immediate_exit (acquire/release), or our
 * kick_waiting store comes first in the total order of the seq_cst
 * operations, so the kick sees us waiting and wakes kick_seq, which the
 * kernel compares with @seq under its futex lock before we sleep. The
 * kick's signal is not needed: it may have been delivered before we got
 * here, or restart the wait (SA_RESTART).
 */
static int
kick_wait(struct memfault_vcpu *vcpu, uint32_t *fw, uint32_t fv)
{
	struct timespec slice = { 0, KICK_SLICE_NS };
	uint32_t seq;
	int r = 0;

	/* Pairs with the seq_cst kick_seq increment and kick_waiting load in
	 * memfault_vcpu_kick() (store-load on both sides). */
	memfault_store_seq_cst(&vcpu->kick_waiting, 1);
	seq = memfault_load_seq_cst(&vcpu->kick_seq);
	/* Checked after every wake, as the caller loops back here. */
	if (MEMFAULT_READ_ONCE(vcpu->run->immediate_exit)) {
		r = -EINTR;
		goto out;
	}
	if (!MEMFAULT_READ_ONCE(futex_waitv_missing)) {
		struct futex_waitv w[2];

		memset(w, 0, sizeof(w));
		w[0].val = fv;
		w[0].uaddr = (uintptr_t)fw;
		w[0].flags = FUTEX_32 | FUTEX_PRIVATE_FLAG;
		w[1].val = seq;
		w[1].uaddr = (uintptr_t)&vcpu->kick_seq;
		w[1].flags = FUTEX_32 | FUTEX_PRIVATE_FLAG;
		/* Any other failure (EAGAIN: a word changed, EINTR) makes
		 * the caller look again. */
		if (syscall(SYS_futex_waitv, w, 2, 0, NULL, 0) >= 0 ||
		    (errno != ENOSYS && errno != EPERM))
			goto out;
		MEMFAULT_WRITE_ONCE(futex_waitv_missing, 1);
	}
	/* The kick's wake goes to kick_seq, not to @fw: bound the sleep. */
	syscall(SYS_futex, fw, FUTEX_WAIT_PRIVATE, fv, &slice, NULL, 0);
out:
	MEMFAULT_WRITE_ONCE(vcpu->kick_waiting, 0);
	return r;
}

/* The claim of @page (the try first), waiting while another thread holds
 * it unless MEMFAULT_CLAIM_NOWAIT (@vcpu: on that vCPU's thread, a kick
 * ends the wait with -EINTR). */
int
region_claim_page_wait(struct memfault_region *r, uint64_t page,
		       uint32_t flags, struct memfault_vcpu *vcpu)
{
	for (;;) {
		uint32_t *fw, fm, fv;
		int c = region_claim_try(r, page), err = 0;

		if (c != MEMFAULT_CLAIM_BUSY)
			return c;
		if (flags & MEMFAULT_CLAIM_NOWAIT)
			return MEMFAULT_CLAIM_BUSY;
		fw = futex_word(r, page, &fm);
		/* Counted before the last look at the bit: pairs with the
		 * seq_cst clear and load in region_release_busy(). */
		memfault_add(&r->nr_waiters, 1, MEMFAULT_SEQ_CST);
		fv = memfault_load_seq_cst(fw);
		/* Sleeps only while the futex word still holds @fv; a
		 * publish or abort in between changes it and we retry. */
		if (!(fv & fm))
			err = 0;
		else if (vcpu)
			err = kick_wait(vcpu, fw, fv);
		else if (syscall(SYS_futex, fw, FUTEX_WAIT_PRIVATE, fv, NULL,
				 NULL, 0) &&
			 errno == EINTR)
			err = -EINTR;
		memfault_sub(&r->nr_waiters, 1, MEMFAULT_RELAXED);
		if (err)
			return err;
	}
}

MEMFAULT_EXPORT int
memfault_region_abort(struct memfault_region *r, uint64_t page)
{
	struct memfault_trap *trap;
	unsigned long m;

	if (!r || page >= r->npages)
		return -EINVAL;
	m = bit_of(page);
	if (!(MEMFAULT_READ_ONCE(r->busy[word_of(page)]) & m))
		return -EPERM;
	/* All waiters wake; one wins the next claim, the rest sleep again. */
	region_release_busy(r, word_of(page), m);
	/* and host threads faulting on it, which then claim it themselves */
	trap = memfault_region_get_trap(r);
	if (trap)
		trap->ops->wake(trap, page, 1);
	return 0;
}

