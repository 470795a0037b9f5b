/* SPDX-License-Identifier: MIT */
/*
 * Shared by the region files: region.c (the VM's region table and the
 * memslots), region-bitmap.c (range stores, scans and publish),
 * region-claim.c (claims and their futex waits), region-mark.c
 * (memfault_region_mark_missing() and invalidation). The bitmap protocol
 * is described at the top of region.c.
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

/* region-claim.c: release the claims in @m of busy word @w, wake waiters */
void region_release_busy(struct memfault_region *r, size_t w, unsigned long m);
/* region-bitmap.c: store @v into words @w ... @lw of @bm (see there) */
void region_fill_words(unsigned long *bm, size_t w, size_t lw, unsigned long v,
		       bool release);

#endif /* MEMFAULT_REGION_PRIVATE_H */
