/* SPDX-License-Identifier: MIT */
/* Bitmap range stores and scans, publish, and the bitmap queries. */
#include <limits.h>

#include "barrier.h"
#include "memfault-private.h"
#include "region-private.h"


/* Vectors of bitmap words for the range scans and stores below. */
typedef unsigned long bm_vec16 __attribute__((vector_size(16), aligned(8)));

/*
 * A range fill of one vector width: word stores up to the vector's
 * alignment, then four vector stores per step (one cache line of 16-byte
 * vectors, two of 32-byte ones); returns the first word left unwritten.
 * Scalar + vector splats @v into every word.
 */
#define FILL_WORDS(name, vec, attr)                                         \
	attr static size_t name(unsigned long *bm, size_t w, size_t lw,     \
				unsigned long v)                            \
	{                                                                   \
		const vec x = (vec){ 0 } + v;                               \
		const size_t step = 4 * sizeof(vec) / sizeof(*bm);          \
                                                                            \
		for (; w < lw && ((uintptr_t)(bm + w) & (sizeof(vec) - 1)); \
		     w++)                                                   \
			MEMFAULT_WRITE_ONCE(bm[w], v);                      \
		for (; w + step <= lw; w += step) {                         \
			volatile vec *p = (volatile vec *)(bm + w);         \
                                                                            \
			p[0] = x;                                           \
			p[1] = x;                                           \
			p[2] = x;                                           \
			p[3] = x;                                           \
		}                                                           \
		return w;                                                   \
	}
#ifndef MEMFAULT_TSAN
FILL_WORDS(fill_words_vec16, bm_vec16, )
#endif
#if defined(__x86_64__) && !defined(MEMFAULT_TSAN)
typedef unsigned long bm_vec32 __attribute__((vector_size(32), aligned(8)));

/* Whether this CPU has AVX2. -1: not asked yet; relaxed: every thread
 * stores the same answer. */
static int
cpu_avx2(void)
{
	static int avx2 = -1;
	int have = MEMFAULT_READ_ONCE(avx2);

	if (have < 0) {
		have = __builtin_cpu_supports("avx2") ? 1 : 0;
		MEMFAULT_WRITE_ONCE(avx2, have);
	}
	return have;
}

FILL_WORDS(fill_words_avx2, bm_vec32, __attribute__((target("avx2"))))
#endif

/*
 * Store @v into the words [w, lw) of @bm: the whole words of a range
 * publish or mark. Each aligned word of a vector store is written as a
 * relaxed store would write it (x86 and arm64 never tear an aligned 8-byte
 * access), and no order among these stores is needed: the caller's fence
 * orders them as a whole, as it did each word. ThreadSanitizer does not
 * see vector stores as atomic: there the word loop alone runs, with
 * @release giving TSan the release it cannot take from the fence.
 */
void
region_fill_words(unsigned long *bm, size_t w, size_t lw, unsigned long v,
		  bool release)
{
#ifndef MEMFAULT_TSAN
#if defined(__x86_64__)
	if (cpu_avx2())
		w = fill_words_avx2(bm, w, lw, v);
#endif
	w = fill_words_vec16(bm, w, lw, v);
	(void)release;
#else
	if (release) {
		for (; w < lw; w++)
			memfault_store_range(&bm[w], v);
		return;
	}
#endif
	for (; w < lw; w++)
		MEMFAULT_WRITE_ONCE(bm[w], v);
}

static int
publish_bits(struct memfault_region *r, uint64_t first, uint64_t count)
{
	uint64_t end = first + count;
	unsigned long m;
	size_t w, lw;

	if (likely(count == 1 && r && first < r->npages)) {
		w = word_of(first);
		m = bit_of(first);
		goto one_word;
	}
	if (!range_ok(r, first, count))
		return -EINVAL;
	if (!count)
		return 0;
	w = word_of(first);
	lw = word_of(end - 1);
	if (w == lw) {
		m = word_mask(w, first, end);
one_word:
		/* Release: the page contents written before this call are
		 * visible to whoever sees the bit clear. Pairs with the
		 * load-acquire in memfault_region_claim() and
		 * memfault_region_is_missing(), and with the kernel's read of
		 * userfault_bitmap in kvm_do_userfault(). */
		memfault_fetch_and(&r->missing[w], ~m, MEMFAULT_RELEASE);
		/* Then the claims, ordered after the bit by that release:
		 * a woken waiter re-reads missing[] with acquire and finds
		 * the page present. */
		if (MEMFAULT_READ_ONCE(r->busy[w]) & m)
			region_release_busy(r, w, m);
		return 0;
	}
	/* A range: one release fence orders the contents before every
	 * word cleared below (fence-to-acquire synchronization, same pairs
	 * as above). Interior words are wholly published, so a plain
	 * atomic store of 0 is enough: a concurrent mark of one of their
	 * pages races with publishing that very page, whatever we do. */
	memfault_fence_release();
	memfault_fetch_and(&r->missing[w], ~word_mask(w, first, end),
			   MEMFAULT_RANGE_STORE_ORDER);
	region_fill_words(r->missing, w + 1, lw, 0ul, true);
	memfault_fetch_and(&r->missing[lw], ~word_mask(lw, first, end),
			   MEMFAULT_RANGE_STORE_ORDER);
	/* Store-load: the bits above must be visible before we look for
	 * claims; pairs with the seq_cst claim in memfault_region_claim(),
	 * so either we see its busy bit or it sees the page present. */
	memfault_smp_mb();
	if (!MEMFAULT_READ_ONCE(r->nr_busy))
		return 0;
	for (size_t i = w; i <= lw; i++) {
		m = word_mask(i, first, end);
		if (MEMFAULT_READ_ONCE(r->busy[i]) & m)
			region_release_busy(r, i, m);
	}
	return 0;
}

MEMFAULT_EXPORT int
memfault_region_publish(struct memfault_region *r, uint64_t first,
			uint64_t count)
{
	int err = publish_bits(r, first, count);
	struct memfault_trap *trap;

	if (err || !count)
		return err;
	/* A fetch made outside the library installed nothing: host threads
	 * trapped on the pages (by userfaultfd) waited for it; they fault
	 * again and find the pages present (the trap source maps them). */
	trap = memfault_region_get_trap(r);
	if (trap)
		trap->ops->wake(trap, first, count);
	return 0;
}

MEMFAULT_EXPORT int
memfault_region_is_missing(const struct memfault_region *r, uint64_t page)
{
	if (!r || page >= r->npages)
		return -EINVAL;
	/* Pairs with the store-release in memfault_region_publish(). */
	return !!(memfault_load_acquire(&r->missing[word_of(page)]) &
		  bit_of(page));
}

/*
 * The first word at or after @w, below @nw, in a block of the bitmap that
 * has a hit (a set bit when @want_set, a clear one otherwise): a whole
 * block of words loaded as vectors, tested once. Only a read, so no order
 * is needed: each aligned word of a vector load reads as a relaxed load
 * would (x86 and arm64 never tear an aligned 8-byte access), and the
 * caller re-reads the word it stops at. Under ThreadSanitizer the word
 * loop alone runs: it does not see vector loads as atomic.
 */
#if defined(__x86_64__) && !defined(MEMFAULT_TSAN)
__attribute__((target("avx2"))) static size_t
skip_words_avx2(const unsigned long *bm, size_t w, size_t nw, bool want_set)
{
	/* 16 words (128 bytes, two cache lines) per test */
	for (; w + 16 <= nw; w += 16) {
		const volatile bm_vec32 *v = (const volatile bm_vec32 *)(bm + w);
		bm_vec32 t;

		if (want_set) {
			t = v[0] | v[1] | v[2] | v[3];
			if (t[0] | t[1] | t[2] | t[3])
				break;
		} else {
			t = v[0] & v[1] & v[2] & v[3];
			if (~(t[0] & t[1] & t[2] & t[3]))
				break;
		}
	}
	return w;
}
#endif

static size_t
skip_words(const unsigned long *bm, size_t w, size_t nw, bool want_set)
{
#ifndef MEMFAULT_TSAN
#if defined(__x86_64__)
	if (cpu_avx2())
		return skip_words_avx2(bm, w, nw, want_set);
#endif
	/* 8 words (one cache line) per test */
	for (; w + 8 <= nw; w += 8) {
		const volatile bm_vec16 *v = (const volatile bm_vec16 *)(bm + w);
		bm_vec16 t;

		if (want_set) {
			t = v[0] | v[1] | v[2] | v[3];
			if (t[0] | t[1])
				break;
		} else {
			t = v[0] & v[1] & v[2] & v[3];
			if (~(t[0] & t[1]))
				break;
		}
	}
#else
	(void)bm;
	(void)nw;
	(void)want_set;
#endif
	return w;
}

static int
find_bit(const struct memfault_region *r, uint64_t from, bool want_set,
	 uint64_t *ret_page)
{
	const unsigned long flip = want_set ? 0 : ~0ul;
	unsigned long v;
	uint64_t p;
	size_t w;

	if (!r || !ret_page || from >= r->npages)
		return -EINVAL;
	w = word_of(from);
	v = (MEMFAULT_READ_ONCE(r->missing[w]) ^ flip) &
	    (~0ul << (from % BITS_PER_WORD));
	while (!v) {
		if (++w >= r->nwords)
			return -ENOENT;
		w = skip_words(r->missing, w, r->nwords, want_set);
		/* four words per test while none has a hit: the scan is
		 * bound by loads, not by the tests */
		while (w + 4 <= r->nwords &&
		       !((MEMFAULT_READ_ONCE(r->missing[w]) ^ flip) |
			 (MEMFAULT_READ_ONCE(r->missing[w + 1]) ^ flip) |
			 (MEMFAULT_READ_ONCE(r->missing[w + 2]) ^ flip) |
			 (MEMFAULT_READ_ONCE(r->missing[w + 3]) ^ flip)))
			w += 4;
		if (w >= r->nwords)
			return -ENOENT;
		v = MEMFAULT_READ_ONCE(r->missing[w]) ^ flip;
	}
	p = (uint64_t)w * BITS_PER_WORD + (uint64_t)__builtin_ctzl(v);
	/* the unused tail of the last word reads as present */
	if (p >= r->npages)
		return -ENOENT;
	*ret_page = p;
	return 0;
}

MEMFAULT_EXPORT int
memfault_region_find_missing(const struct memfault_region *r, uint64_t from,
			     uint64_t *ret_page)
{
	return find_bit(r, from, true, ret_page);
}

MEMFAULT_EXPORT int
memfault_region_find_present(const struct memfault_region *r, uint64_t from,
			     uint64_t *ret_page)
{
	return find_bit(r, from, false, ret_page);
}

MEMFAULT_EXPORT int
memfault_region_count_missing(const struct memfault_region *r,
			      uint64_t *ret_count)
{
	uint64_t n = 0;

	if (!r || !ret_count)
		return -EINVAL;
	for (size_t w = 0; w < r->nwords; w++)
		n += (uint64_t)__builtin_popcountl(MEMFAULT_READ_ONCE(r->missing[w]));
	*ret_count = n;
	return 0;
}
