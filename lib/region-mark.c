/* SPDX-License-Identifier: MIT */
/*
 * memfault_region_mark_missing(): pages set missing again, held as a
 * fetcher holds them while KVM's and the trap source's mappings go.
 */
#include <fcntl.h>
#include <limits.h>
#include <time.h>
#include <sys/mman.h>

#include "barrier.h"
#include "kvm-userfault-proposed.h"
#include "memfault-private.h"
#include "region-private.h"


#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24 /* Linux 5.18 */
#endif

/* Words of a region one batch of memfault_region_mark_missing() holds. */
#define MARK_BATCH_WORDS 64
/* How long memfault_region_mark_missing() waits for fetches in progress. */
#define MARK_WAIT_NS 50000000

/* dontneed() after MADV_DONTNEED failed with @err. */
static int
dontneed_failed(void *addr, size_t len, int err)
{
	/* ENOMEM: a hole in the range; the mapped parts were dropped, and
	 * the munmap() that made the hole invalidated the rest. */
	if (err == ENOMEM)
		return 0;
	/* EINVAL: mlock()ed memory, which wants MADV_DONTNEED_LOCKED */
	if (err == EINVAL) {
		if (!madvise(addr, len, MADV_DONTNEED_LOCKED))
			return 0;
		err = errno;
	}
	/* still EINVAL: memory madvise() cannot drop (VM_PFNMAP, hugetlb
	 * with a range that is not huge-page aligned, before 5.18 locked) */
	return err == EINVAL ? -EOPNOTSUPP : -err;
}

/* Drop the host mapping of anonymous or shared memory behind the hva. */
static inline int
dontneed(void *addr, size_t len)
{
	if (likely(!madvise(addr, len, MADV_DONTNEED)))
		return 0;
	return dontneed_failed(addr, len, errno);
}

/*
 * Invalidate every mapping of pages [first, first + count) that would let
 * an access skip the bitmap: KVM's (its MMU notifier or guest_memfd's
 * invalidation zaps the stage-2/EPT/NPT entries, so that the next guest
 * access faults and reads its bit: a mapped page ignores a new bit) and
 * the host's under userfaultfd. KVM_MEM_USERFAULT stays on throughout: no
 * other page of the slot is ever mapped without its exit. The caller
 * holds the claims of these pages.
 */
static inline __attribute__((always_inline)) int
invalidate(struct memfault_region *r, struct memfault_trap *trap,
	   uint64_t first, uint64_t count)
{
	uint64_t off = first << memfault_page_shift;
	uint64_t len = count << memfault_page_shift;

	/* guest_memfd pages, private ones included (they have no hva):
	 * kvm_gmem_punch_hole() invalidates every slot bound to them */
	if ((r->kvm_flags & KVM_MEM_USERFAULT) &&
	    (r->flags & MEMFAULT_REGION_GUEST_MEMFD) &&
	    fallocate(r->gmem_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(r->gmem_offset + off), (off_t)len))
		return -errno;
	if (!r->hva)
		return 0;
	/* a trap source unmaps the hva range its way (userfaultfd: a zap
	 * under its lock); that notifies KVM too */
	if (trap)
		return trap->ops->invalidate(trap, first, count);
	if (!(r->kvm_flags & KVM_MEM_USERFAULT))
		return 0;
	return dontneed((char *)r->hva + off, (size_t)len);
}

/* The pages of @own (words @w0 ... @w0 + @nw - 1) that are set, in runs. */
MEMFAULT_HOT static int
invalidate_runs(struct memfault_region *r, struct memfault_trap *trap,
		const unsigned long *own, size_t w0, size_t nw)
{
	uint64_t p = (uint64_t)w0 * BITS_PER_WORD, q;
	int err = 0, e;

	for (;;) {
		size_t i = (size_t)(p / BITS_PER_WORD) - w0;
		unsigned long v;

		if (i >= nw)
			break;
		v = own[i] & (~0ul << (p % BITS_PER_WORD));
		while (!v && ++i < nw)
			v = own[i];
		if (!v)
			break;
		p = (uint64_t)(w0 + i) * BITS_PER_WORD +
		    (uint64_t)__builtin_ctzl(v);
		v = ~own[i] & (~0ul << (p % BITS_PER_WORD));
		while (!v && ++i < nw)
			v = ~own[i];
		q = v ? (uint64_t)(w0 + i) * BITS_PER_WORD +
				(uint64_t)__builtin_ctzl(v)
		      : (uint64_t)(w0 + nw) * BITS_PER_WORD;
		e = invalidate(r, trap, p, q - p);
		if (e && !err)
			err = e;
		p = q;
	}
	return err;
}

static int64_t
mono_ns(void)
{
	return (int64_t)memfault_now_ns();
}

/* Take the busy bits @take of word @w, which held @cur: false if the word
 * changed meanwhile. seq_cst as the claim of memfault_region_claim():
 * pairs with the fence in publish_bits(). */
static inline bool
mark_take(struct memfault_region *r, size_t w, unsigned long cur,
	  unsigned long take)
{
	if (!memfault_cmpxchg(&r->busy[w], &cur, cur | take, MEMFAULT_SEQ_CST))
		return false;
	memfault_add(&r->nr_busy, bits_set(take), MEMFAULT_SEQ_CST);
	return true;
}

/*
 * Take the busy bits @m of word @w for memfault_region_mark_missing(), in
 * ascending page order, waiting until @deadline for their holders
 * (fetches in progress): such a fetch would publish after our mark and
 * clear its bit, and our invalidation would discard what it has written.
 * Ascending order keeps two overlapping marks from each waiting for the
 * other; the deadline keeps a caller that holds one of the claims itself
 * from waiting forever. Returns the bits taken; the others are busy.
 */
static unsigned long
mark_claim_wait(struct memfault_region *r, size_t w, unsigned long m,
		int64_t *deadline)
{
	unsigned long own = 0;

	while (m) {
		unsigned long cur = MEMFAULT_READ_ONCE(r->busy[w]);
		unsigned long blocked = m & cur;
		unsigned long take = blocked ? m & ((blocked & -blocked) - 1)
					     : m;
		struct timespec ts;
		uint32_t *fw, fm, fv;
		int64_t left;

		if (take) {
			if (mark_take(r, w, cur, take)) {
				own |= take;
				m &= ~take;
			}
			continue;
		}
		/* The clock is read only once a page is busy: an uncontended
		 * mark (every re-arm of a page) reads no clock at all, which
		 * is a system call or a trapped counter read under some
		 * hypervisors' clock sources. */
		if (!*deadline)
			*deadline = mono_ns() + MARK_WAIT_NS;
		left = *deadline - mono_ns();
		if (left <= 0) {
			/* given up: this page, and the rest of this word
			 * without waiting (a later word waits no more) */
			m &= ~(blocked & -blocked);
			continue;
		}
		/* the lowest page left is being fetched: sleep until its
		 * publish or abort (region_release_busy() wakes the word) */
		fw = futex_word(r,
				(uint64_t)w * BITS_PER_WORD +
					(uint64_t)__builtin_ctzl(blocked),
				&fm);
		ts.tv_sec = (time_t)(left / 1000000000);
		ts.tv_nsec = (long)(left % 1000000000);
		/* Counted before the last look at the bit: pairs with the
		 * seq_cst clear and load in region_release_busy(). */
		memfault_add(&r->nr_waiters, 1, MEMFAULT_SEQ_CST);
		fv = memfault_load_seq_cst(fw);
		if (fv & fm)
			(void)syscall(SYS_futex, fw, FUTEX_WAIT_PRIVATE, fv,
				      &ts, NULL, 0);
		memfault_sub(&r->nr_waiters, 1, MEMFAULT_RELAXED);
	}
	return own;
}

/* mark_claim_wait() when none of @m is held (a re-arm nobody is
 * fetching), inline: one compare-and-swap. */
static inline unsigned long
mark_claim(struct memfault_region *r, size_t w, unsigned long m,
	   int64_t *deadline)
{
	unsigned long cur = MEMFAULT_READ_ONCE(r->busy[w]);

	if (likely(!(cur & m)) && mark_take(r, w, cur, m))
		return m;
	return mark_claim_wait(r, w, m, deadline);
}

/* One batch of memfault_region_mark_missing(), [first, end) in @nw (at
 * most MARK_BATCH_WORDS) words; @own holds @nw words. Always inline: the caller's call with
 * @nw 1, a re-arm within one word (one page, the common case), compiles
 * to straight-line code with no loops. */
static inline __attribute__((always_inline)) int
mark_batch(struct memfault_region *r, struct memfault_trap *trap,
	   uint64_t first, uint64_t end, size_t nw, unsigned long *own,
	   int64_t *deadline)
{
	size_t w0 = word_of(first);
	bool busy = false;
	int err;

	/*
	 * Hold the pages as a fetcher would: no fetch of them can start
	 * before the invalidation below, nor end after it; a fault on them
	 * waits for us, then finds them missing.
	 */
	for (size_t i = 0; i < nw; i++) {
		unsigned long m = word_mask(w0 + i, first, end);

		own[i] = mark_claim(r, w0 + i, m, deadline);
		busy |= own[i] != m;
	}
	/* Relaxed: setting a bit publishes nothing; the fence orders it. A
	 * page still being fetched gets its bit too: harmless, its publish
	 * clears it (hence -EBUSY). */
	for (size_t i = 0; i < nw; i++)
		memfault_fetch_or(&r->missing[w0 + i],
				  word_mask(w0 + i, first, end),
				  MEMFAULT_RELAXED);
	/*
	 * The bits before the invalidation. Pairs with the smp_rmb() between
	 * the fault path's sample of mmu_invalidate_seq and its read of the
	 * bitmap (kvm_mmu_faultin_pfn() on x86, user_mem_abort() on arm64):
	 * a fault that read a bit as clear before our store maps nothing,
	 * because mmu_invalidate_retry() under mmu_lock then sees the
	 * invalidation, and its retry reads the bit set. (A full fence: the
	 * invalidation is a system call whose lock is an acquire only.)
	 */
	memfault_smp_mb();
	/* Every page held (the common case, a re-arm nobody is fetching):
	 * the batch is one run. Otherwise only the runs we hold. */
	err = busy ? invalidate_runs(r, trap, own, w0, nw)
		   : invalidate(r, trap, first, end - first);
	for (size_t i = 0; i < nw; i++)
		if (own[i])
			region_release_busy(r, w0 + i, own[i]);
	/* host threads that met our claim wait for a wake-up; they fault
	 * again and fetch */
	if (trap)
		trap->ops->wake(trap, first, end - first);
	return err ? err : busy ? -EBUSY : 0;
}

/* memfault_region_mark_missing() of more than one word, batch by batch.
 * Not inline: its batch array stays out of the one-word re-arm's stack
 * frame (a deeper frame is one more stack page touched per re-arm). */
static __attribute__((noinline)) int
mark_words(struct memfault_region *r, struct memfault_trap *trap,
	   uint64_t first, uint64_t end)
{
	unsigned long own[MARK_BATCH_WORDS];
	int64_t deadline = 0; /* set at the first wait, in mark_claim_wait() */
	int err = 0, e;

	while (first < end) {
		uint64_t next = ((uint64_t)word_of(first) + MARK_BATCH_WORDS) *
				BITS_PER_WORD;

		if (next > end)
			next = end;
		e = mark_batch(r, trap, first, next,
			       word_of(next - 1) - word_of(first) + 1, own,
			       &deadline);
		/* a system call's error first, then -EBUSY */
		if (e && (!err || err == -EBUSY))
			err = e;
		first = next;
	}
	return err;
}

MEMFAULT_EXPORT MEMFAULT_HOT int
memfault_region_mark_missing(struct memfault_region *r, uint64_t first,
			     uint64_t count)
{
	struct memfault_trap *trap;
	uint64_t end = first + count;
	int64_t deadline = 0; /* set at the first wait, in mark_claim_wait() */
	unsigned long own[1];

	if (!range_ok(r, first, count))
		return -EINVAL;
	if (!count)
		return 0;
	trap = memfault_region_get_trap(r);
	if (!trap && !(r->kvm_flags & KVM_MEM_USERFAULT)) {
		/* nothing maps pages past the bitmap: only the bits */
		size_t w = word_of(first), lw = word_of(end - 1);

		memfault_fetch_or(&r->missing[w], word_mask(w, first, end),
				  MEMFAULT_RELAXED);
		region_fill_words(r->missing, w + 1, lw, ~0ul, false);
		if (w != lw)
			memfault_fetch_or(&r->missing[lw],
					  word_mask(lw, first, end),
					  MEMFAULT_RELAXED);
		return 0;
	}
	if (word_of(first) != word_of(end - 1))
		return mark_words(r, trap, first, end);
	return mark_batch(r, trap, first, end, 1, own, &deadline);
}
