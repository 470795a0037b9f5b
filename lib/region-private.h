/* SPDX-License-Identifier: MIT */
/*
 * Shared by the region files: region.c (the VM's region table and the
 * memslots), region-bitmap.c (range stores, scans and publish),
 * region-claim.c (claims and their futex waits), region-mark.c
 * (memfault_region_mark_missing() and invalidation), and, for the inline
 * claim and publish of one page, dispatch.c and uffd-service.c. The
 * bitmap protocol is described at the top of region.c.
 */
#ifndef MEMFAULT_REGION_PRIVATE_H
#define MEMFAULT_REGION_PRIVATE_H

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "barrier.h"
#include "memfault-private.h"

#define BITS_PER_WORD (8 * sizeof(unsigned long))
/* KVM_MEM_MAX_NR_PAGES of include/linux/kvm_host.h: no arch overrides it */
#define KVM_MAX_NR_PAGES ((1ull << 31) - 1)



static inline size_t
word_of(uint64_t page)
{
	return (size_t)(page / BITS_PER_WORD);
}

static inline unsigned long
bit_of(uint64_t page)
{
	return 1ul << (page % BITS_PER_WORD);
}

/* The number of bits set in @v (nonzero). One, the common case, is tested
 * first: __builtin_popcountl() is a call of libgcc's where the ISA
 * baseline has no popcount instruction (x86-64). */
static inline long
bits_set(unsigned long v)
{
	return v & (v - 1) ? __builtin_popcountl(v) : 1;
}

/* The 32-bit futex word that holds @page's busy bit, and its mask there. */
static inline uint32_t *
futex_word(struct memfault_region *r, uint64_t page, uint32_t *mask)
{
	unsigned int b = (unsigned int)(page % BITS_PER_WORD);
	uint32_t *half = (uint32_t *)&r->busy[word_of(page)];

	*mask = 1u << (b % 32);
	if (BITS_PER_WORD == 32)
		return half;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return half + b / 32;
#else
	return half + 1 - b / 32;
#endif
}

static inline void
futex_wake_all(uint32_t *addr)
{
	syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static inline bool
range_ok(const struct memfault_region *r, uint64_t first, uint64_t count)
{
	return r && first <= r->npages && count <= r->npages - first;
}

/* Mask of the bits of word @w that fall in [first, end). */
static inline unsigned long
word_mask(size_t w, uint64_t first, uint64_t end)
{
	uint64_t lo = (uint64_t)w * BITS_PER_WORD, hi = lo + BITS_PER_WORD;
	unsigned long m = ~0ul;

	if (first > lo)
		m &= ~0ul << (first - lo);
	if (end < hi)
		m &= ~0ul >> (hi - end);
	return m;
}

/*
 * Claims and publishes of one page, the steps of every resolved fault:
 * inline (dispatch.c and uffd-service.c include this header for them), so
 * that an uncontended claim, a publish and the release of a claim cost a
 * few instructions and no call. The wait for a busy page is region-claim.c's
 * (region_claim_page_wait()), called by whoever got MEMFAULT_CLAIM_BUSY: no
 * function here calls into a region file, which include this header.
 */
int region_claim_page_wait(struct memfault_region *r, uint64_t page,
			   uint32_t flags, struct memfault_vcpu *vcpu);

/* The wake of region_release_busy(): the claims @old of busy word @w were
 * released while some thread waits (nr_waiters). */
static inline void
region_wake_busy(struct memfault_region *r, size_t w, unsigned long old)
{
	uint32_t fm;

	if (BITS_PER_WORD == 64 && (old & 0xffffffffull) &&
	    (old >> 32 & 0xffffffffull)) {
		futex_wake_all(futex_word(r, (uint64_t)w * BITS_PER_WORD, &fm));
		futex_wake_all(futex_word(r, (uint64_t)w * BITS_PER_WORD + 32,
					  &fm));
	} else {
		futex_wake_all(futex_word(r, (uint64_t)w * BITS_PER_WORD +
						     (uint64_t)__builtin_ctzl(old),
					  &fm));
	}
}

/* Release the claims in @m of busy word @w and wake their waiters. */
static inline void
region_release_busy(struct memfault_region *r, size_t w, unsigned long m)
{
	/* seq_cst: store-load against the waiter, which increments
	 * nr_waiters and then re-reads busy[] before sleeping; either it
	 * sees the bit clear or we see it counted (region_claim_page_wait()). */
	unsigned long old = memfault_fetch_and(&r->busy[w], ~m,
					       MEMFAULT_SEQ_CST) & m;

	if (!old)
		return;
	memfault_sub(&r->nr_busy, bits_set(old), MEMFAULT_RELAXED);
	if (unlikely(memfault_load_seq_cst(&r->nr_waiters)))
		region_wake_busy(r, w, old);
}

/*
 * One attempt to claim @page: MEMFAULT_CLAIM_PRESENT, MEMFAULT_CLAIM_FETCH
 * (the claim is ours), or MEMFAULT_CLAIM_BUSY (another thread holds it).
 */
static inline int
region_claim_try(struct memfault_region *r, uint64_t page)
{
	size_t w = word_of(page);
	unsigned long m = bit_of(page);

	/* Pairs with the store-release in memfault_region_publish():
	 * present means the contents are visible to us. */
	if (!(memfault_load_acquire(&r->missing[w]) & m))
		return MEMFAULT_CLAIM_PRESENT;
	/* seq_cst: the claim must be visible before we re-read missing[];
	 * pairs with the fence in memfault_region_publish(). */
	if (memfault_fetch_or(&r->busy[w], m, MEMFAULT_SEQ_CST) & m)
		return MEMFAULT_CLAIM_BUSY;
	memfault_add(&r->nr_busy, 1, MEMFAULT_SEQ_CST);
	/* Ours. A publish may have completed between the check above and
	 * the claim: look again. */
	if (memfault_load_seq_cst(&r->missing[w]) & m)
		return MEMFAULT_CLAIM_FETCH;
	region_release_busy(r, w, m);
	return MEMFAULT_CLAIM_PRESENT;
}

/* Publish one page known to be in range, and release its claim. */
static inline void
region_publish_page(struct memfault_region *r, uint64_t page)
{
	size_t w = word_of(page);
	unsigned long m = bit_of(page);

	/* Release: pairs as in memfault_region_publish(). */
	memfault_fetch_and(&r->missing[w], ~m, MEMFAULT_RELEASE);
	if (MEMFAULT_READ_ONCE(r->busy[w]) & m)
		region_release_busy(r, w, m);
}
/* region-bitmap.c: store @v into words @w ... @lw of @bm (see there) */
void region_fill_words(unsigned long *bm, size_t w, size_t lw, unsigned long v,
		       bool release);

#endif /* MEMFAULT_REGION_PRIVATE_H */
