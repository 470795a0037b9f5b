/* SPDX-License-Identifier: MIT */
/*
 * Regions (memslots registered through the library) and their userfault
 * bitmaps.
 *
 * Two bits per page, both in native unsigned long words:
 *   missing[] - shared with KVM (the proposed userfault_bitmap): set means
 *               "exit on access"; cleared only by publish, with release.
 *   busy[]    - library-private: set while one thread fetches the page.
 * Waiters sleep on the 32-bit half of the busy word that holds their bit
 * (futex), so no per-page object and no lock exist.
 */
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "barrier.h"
#include "kvm-userfault-proposed.h"
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

/* The 32-bit futex word that holds @page's busy bit, and its mask there. */
static uint32_t *
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

static void
futex_wake_all(uint32_t *addr)
{
	syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static bool
range_ok(const struct memfault_region *r, uint64_t first, uint64_t count)
{
	return r && first <= r->npages && count <= r->npages - first;
}

static int
set_memslot(struct memfault_region *r, uint32_t flags, uint64_t size)
{
	struct memfault_memslot m = {
		.slot = r->slot,
		.flags = flags,
		.gpa = r->gpa,
		.size = size,
		.hva = r->hva,
		.gmem_offset = r->gmem_offset,
		.gmem_fd = r->gmem_fd,
		.bitmap = r->missing,
	};

	return memfault_set_memslot(r->vm->fd,
				    r->vm->features.flags &
					    MEMFAULT_FEATURE_USER_MEMORY2,
				    &m);
}

static int
vm_insert_region(struct memfault_vm *vm, struct memfault_region *r)
{
	size_t lo = 0, hi = vm->nr_regions;
	struct memfault_region **v;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (vm->regions[mid]->gpa < r->gpa)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo > 0) {
		const struct memfault_region *p = vm->regions[lo - 1];

		if (p->gpa + p->size > r->gpa)
			return -EEXIST;
	}
	if (lo < vm->nr_regions && r->gpa + r->size > vm->regions[lo]->gpa)
		return -EEXIST;
	for (size_t i = 0; i < vm->nr_regions; i++)
		if (vm->regions[i]->slot == r->slot &&
		    !(vm->regions[i]->flags & MEMFAULT_REGION_NO_MEMSLOT) &&
		    !(r->flags & MEMFAULT_REGION_NO_MEMSLOT))
			return -EEXIST;
	v = realloc(vm->regions, (vm->nr_regions + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	memmove(&v[lo + 1], &v[lo], (vm->nr_regions - lo) * sizeof(*v));
	v[lo] = r;
	vm->regions = v;
	vm->nr_regions++;
	return 0;
}

static void
vm_remove_region(struct memfault_vm *vm, struct memfault_region *r)
{
	for (size_t i = 0; i < vm->nr_regions; i++) {
		if (vm->regions[i] != r)
			continue;
		memmove(&vm->regions[i], &vm->regions[i + 1],
			(vm->nr_regions - i - 1) * sizeof(*vm->regions));
		vm->nr_regions--;
		return;
	}
}

static void
region_unmap(struct memfault_region *r)
{
	if (r->missing)
		munmap(r->missing, r->map_size);
	if (r->busy)
		munmap(r->busy, r->map_size);
	free(r);
}

MEMFAULT_EXPORT int
memfault_region_new(struct memfault_vm *vm, uint32_t slot, uint64_t gpa,
		    uint64_t size, void *hva,
		    const struct memfault_region_opts *opts,
		    struct memfault_region **ret_region)
{
	const uint64_t known = MEMFAULT_REGION_USERFAULT |
			       MEMFAULT_REGION_GUEST_MEMFD |
			       MEMFAULT_REGION_MISSING |
			       MEMFAULT_REGION_NO_MEMSLOT;
	const uint64_t pmask = memfault_page_size - 1;
	struct memfault_region *r;
	uint64_t flags;
	uint32_t kvm_flags;
	int err;

	if (!vm || !ret_region || !OPTS_VALID(opts, memfault_region_opts))
		return -EINVAL;
	flags = OPTS_GET(opts, memfault_region_opts, flags, 0);
	kvm_flags = OPTS_GET(opts, memfault_region_opts, kvm_flags, 0);
	if ((flags & ~known) ||
	    (kvm_flags & ~(uint32_t)(KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY)))
		return -EINVAL;
	if (!size || ((gpa | size | (uintptr_t)hva) & pmask) ||
	    gpa + size < gpa || (uintptr_t)hva + size < (uintptr_t)hva)
		return -EINVAL;
	if ((flags & MEMFAULT_REGION_NO_MEMSLOT) &&
	    (flags & (MEMFAULT_REGION_USERFAULT | MEMFAULT_REGION_GUEST_MEMFD)))
		return -EINVAL;
	if (!hva && !(flags & (MEMFAULT_REGION_NO_MEMSLOT |
			       MEMFAULT_REGION_GUEST_MEMFD)))
		return -EINVAL;
	if ((flags & MEMFAULT_REGION_GUEST_MEMFD) &&
	    (OPTS_GET(opts, memfault_region_opts, guest_memfd, -1) < 0 ||
	     (OPTS_GET(opts, memfault_region_opts, guest_memfd_offset, 0) &
	      pmask)))
		return -EINVAL;
	if ((flags & MEMFAULT_REGION_USERFAULT) &&
	    !(vm->features.flags & MEMFAULT_FEATURE_KVM_USERFAULT))
		return -EOPNOTSUPP;
	/*
	 * Sizes KVM refuses are refused before any memory is touched: with
	 * MEMFAULT_REGION_MISSING the bitmap is committed in full before the
	 * memslot exists (2^44 bytes took 3.2 s and 511 MiB to learn that).
	 * __kvm_set_memory_region(): npages > KVM_MEM_MAX_NR_PAGES is
	 * EINVAL, as is a guest_memfd range that wraps.
	 */
	if (!(flags & MEMFAULT_REGION_NO_MEMSLOT) &&
	    (size >> memfault_page_shift > KVM_MAX_NR_PAGES ||
	     OPTS_GET(opts, memfault_region_opts, guest_memfd_offset, 0) +
			     size <
		     OPTS_GET(opts, memfault_region_opts, guest_memfd_offset,
			      0)))
		return -EINVAL;
	/* the bitmap must fit in the address space (32-bit hosts) */
	if ((size >> memfault_page_shift) / 8 >= SIZE_MAX / 2)
		return -ENOMEM;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->vm = vm;
	r->gpa = gpa;
	r->size = size;
	r->hva = hva;
	r->slot = slot;
	r->flags = flags;
	r->npages = size / memfault_page_size;
	r->nwords = (size_t)((r->npages + BITS_PER_WORD - 1) / BITS_PER_WORD);
	r->map_size = (r->nwords * sizeof(unsigned long) + pmask) & ~pmask;
	r->gmem_fd = OPTS_GET(opts, memfault_region_opts, guest_memfd, -1);
	r->gmem_offset = OPTS_GET(opts, memfault_region_opts,
				  guest_memfd_offset, 0);
	/* Reserved, not committed: untouched words cost no memory, so a
	 * 1 TiB region (2^28 bits) is free until it is used. Every word of
	 * a MEMFAULT_REGION_MISSING bitmap is written below: that one is
	 * accounted, so that the kernel's overcommit check refuses a size it
	 * cannot back with ENOMEM here, not with the OOM killer in memset(). */
	r->missing = mmap(NULL, r->map_size, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS |
				  (flags & MEMFAULT_REGION_MISSING
					   ? 0
					   : MAP_NORESERVE),
			  -1, 0);
	r->busy = mmap(NULL, r->map_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r->missing == MAP_FAILED || r->busy == MAP_FAILED) {
		err = -ENOMEM;
		if (r->missing == MAP_FAILED)
			r->missing = NULL;
		if (r->busy == MAP_FAILED)
			r->busy = NULL;
		goto err;
	}
	/* The safe order: every bit is set before KVM can see the slot. */
	if (flags & MEMFAULT_REGION_MISSING) {
		memset(r->missing, 0xff, r->nwords * sizeof(unsigned long));
		if (r->npages % BITS_PER_WORD)
			r->missing[r->nwords - 1] =
				(1ul << (r->npages % BITS_PER_WORD)) - 1;
	}
	err = vm_insert_region(vm, r);
	if (err)
		goto err;
	r->kvm_flags = kvm_flags;
	if (flags & MEMFAULT_REGION_GUEST_MEMFD)
		r->kvm_flags |= KVM_MEM_GUEST_MEMFD;
	if (flags & MEMFAULT_REGION_USERFAULT)
		r->kvm_flags |= KVM_MEM_USERFAULT;
	if (!(flags & MEMFAULT_REGION_NO_MEMSLOT)) {
		err = set_memslot(r, r->kvm_flags, size);
		if (err) {
			vm_remove_region(vm, r);
			goto err;
		}
	}
	/* the VM object outlives its regions, as it outlives its vCPUs */
	memfault_add(&vm->refs, 1, MEMFAULT_RELAXED);
	*ret_region = r;
	return 0;
err:
	region_unmap(r);
	return err;
}

MEMFAULT_EXPORT void
memfault_region_free(struct memfault_region *r)
{
	struct memfault_trap *trap;

	if (!r)
		return;
	trap = memfault_region_get_trap(r);
	if (trap)
		trap->ops->gone(trap);
	if (!(r->flags & MEMFAULT_REGION_NO_MEMSLOT))
		(void)set_memslot(r, 0, 0);
	vm_remove_region(r->vm, r);
	memfault_vm_unref(r->vm);
	region_unmap(r);
}

MEMFAULT_EXPORT int
memfault_vm_find_region(const struct memfault_vm *vm, uint64_t gpa,
			struct memfault_region **ret_region, uint64_t *ret_page)
{
	size_t lo = 0, hi;

	if (!vm)
		return -EINVAL;
	hi = vm->nr_regions;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		struct memfault_region *r = vm->regions[mid];

		if (gpa < r->gpa) {
			hi = mid;
		} else if (gpa - r->gpa >= r->size) {
			lo = mid + 1;
		} else {
			if (ret_region)
				*ret_region = r;
			if (ret_page)
				*ret_page = (gpa - r->gpa) >> memfault_page_shift;
			return 0;
		}
	}
	return -ENOENT;
}

MEMFAULT_EXPORT int
memfault_region_get_info(const struct memfault_region *r,
			 struct memfault_region_info *ret_info, size_t size)
{
	struct memfault_region_info info;

	if (!r || !ret_info || !size)
		return -EINVAL;
	memset(&info, 0, sizeof(info));
	info.gpa = r->gpa;
	info.size = r->size;
	info.hva = (uintptr_t)r->hva;
	info.npages = r->npages;
	info.page_size = memfault_page_size;
	info.bitmap = (uintptr_t)r->missing;
	info.flags = r->flags;
	info.slot = r->slot;
	memfault_copy_out(ret_info, size, &info, sizeof(info));
	return 0;
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

#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24 /* Linux 5.18 */
#endif

/* Words of a region one batch of memfault_region_mark_missing() holds. */
#define MARK_BATCH_WORDS 64
/* How long memfault_region_mark_missing() waits for fetches in progress. */
#define MARK_WAIT_NS 50000000

static void release_busy(struct memfault_region *r, size_t w,
			 unsigned long m);

/* Drop the host mapping of anonymous or shared memory behind the hva. */
static int
dontneed(void *addr, size_t len)
{
	int err;

	if (!madvise(addr, len, MADV_DONTNEED))
		return 0;
	err = errno;
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

/*
 * Invalidate every mapping of pages [first, first + count) that would let
 * an access skip the bitmap: KVM's (its MMU notifier or guest_memfd's
 * invalidation zaps the stage-2/EPT/NPT entries, so that the next guest
 * access faults and reads its bit: a mapped page ignores a new bit) and
 * the host's under userfaultfd. KVM_MEM_USERFAULT stays on throughout: no
 * other page of the slot is ever mapped without its exit. The caller
 * holds the claims of these pages.
 */
static int
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
static int
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
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
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
mark_claim(struct memfault_region *r, size_t w, unsigned long m,
	   int64_t deadline)
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
			/* seq_cst as the claim of memfault_region_claim():
			 * pairs with the fence in publish_bits() */
			if (memfault_cmpxchg(&r->busy[w], &cur, cur | take,
					     MEMFAULT_SEQ_CST)) {
				memfault_add(&r->nr_busy,
					     __builtin_popcountl(take),
					     MEMFAULT_SEQ_CST);
				own |= take;
				m &= ~take;
			}
			continue;
		}
		left = deadline - mono_ns();
		if (left <= 0) {
			/* given up: this page, and the rest of this word
			 * without waiting (a later word waits no more) */
			m &= ~(blocked & -blocked);
			continue;
		}
		/* the lowest page left is being fetched: sleep until its
		 * publish or abort (release_busy() wakes the word) */
		fw = futex_word(r,
				(uint64_t)w * BITS_PER_WORD +
					(uint64_t)__builtin_ctzl(blocked),
				&fm);
		ts.tv_sec = (time_t)(left / 1000000000);
		ts.tv_nsec = (long)(left % 1000000000);
		/* Counted before the last look at the bit: pairs with the
		 * seq_cst clear and load in release_busy(). */
		memfault_add(&r->nr_waiters, 1, MEMFAULT_SEQ_CST);
		fv = memfault_load_seq_cst(fw);
		if (fv & fm)
			(void)syscall(SYS_futex, fw, FUTEX_WAIT_PRIVATE, fv,
				      &ts, NULL, 0);
		memfault_sub(&r->nr_waiters, 1, MEMFAULT_RELAXED);
	}
	return own;
}

/* One batch of memfault_region_mark_missing(), [first, end) in at most
 * MARK_BATCH_WORDS words. */
static int
mark_batch(struct memfault_region *r, struct memfault_trap *trap,
	   uint64_t first, uint64_t end, int64_t deadline)
{
	unsigned long own[MARK_BATCH_WORDS];
	size_t w0 = word_of(first), nw = word_of(end - 1) - w0 + 1;
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
	err = invalidate_runs(r, trap, own, w0, nw);
	for (size_t i = 0; i < nw; i++)
		if (own[i])
			release_busy(r, w0 + i, own[i]);
	/* host threads that met our claim wait for a wake-up; they fault
	 * again and fetch */
	if (trap)
		trap->ops->wake(trap, first, end - first);
	return err ? err : busy ? -EBUSY : 0;
}

/* Vectors of bitmap words for the range scans and stores below. */
typedef unsigned long bm_vec16 __attribute__((vector_size(16), aligned(8)));
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

__attribute__((target("avx2"))) static size_t
fill_words_avx2(unsigned long *bm, size_t w, size_t lw, unsigned long v)
{
	const bm_vec32 x = { v, v, v, v };

	for (; w < lw && ((uintptr_t)(bm + w) & 31); w++)
		MEMFAULT_WRITE_ONCE(bm[w], v);
	/* 16 words (two cache lines) per step */
	for (; w + 16 <= lw; w += 16) {
		volatile bm_vec32 *p = (volatile bm_vec32 *)(bm + w);

		p[0] = x;
		p[1] = x;
		p[2] = x;
		p[3] = x;
	}
	return w;
}
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
static void
fill_words(unsigned long *bm, size_t w, size_t lw, unsigned long v,
	   bool release)
{
#ifndef MEMFAULT_TSAN
	const bm_vec16 x = { v, v };

#if defined(__x86_64__)
	if (cpu_avx2())
		w = fill_words_avx2(bm, w, lw, v);
#endif
	for (; w < lw && ((uintptr_t)(bm + w) & 15); w++)
		MEMFAULT_WRITE_ONCE(bm[w], v);
	/* 8 words (one cache line) per step */
	for (; w + 8 <= lw; w += 8) {
		volatile bm_vec16 *p = (volatile bm_vec16 *)(bm + w);

		p[0] = x;
		p[1] = x;
		p[2] = x;
		p[3] = x;
	}
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

MEMFAULT_EXPORT int
memfault_region_mark_missing(struct memfault_region *r, uint64_t first,
			     uint64_t count)
{
	struct memfault_trap *trap;
	uint64_t end = first + count;
	int64_t deadline;
	int err = 0, e;

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
		fill_words(r->missing, w + 1, lw, ~0ul, false);
		if (w != lw)
			memfault_fetch_or(&r->missing[lw],
					  word_mask(lw, first, end),
					  MEMFAULT_RELAXED);
		return 0;
	}
	deadline = mono_ns() + MARK_WAIT_NS;
	while (first < end) {
		uint64_t next = ((uint64_t)word_of(first) + MARK_BATCH_WORDS) *
				BITS_PER_WORD;

		if (next > end)
			next = end;
		e = mark_batch(r, trap, first, next, deadline);
		/* a system call's error first, then -EBUSY */
		if (e && (!err || err == -EBUSY))
			err = e;
		first = next;
	}
	return err;
}

/* Release the claims in @m of busy word @w and wake their waiters. */
static void
release_busy(struct memfault_region *r, size_t w, unsigned long m)
{
	/* seq_cst: store-load against the waiter, which increments
	 * nr_waiters and then re-reads busy[] before sleeping; either it
	 * sees the bit clear or we see it counted (memfault_region_claim()). */
	unsigned long old = memfault_fetch_and(&r->busy[w], ~m,
					       MEMFAULT_SEQ_CST) & m;
	long n = 0;
	uint32_t fm;

	if (!old)
		return;
	for (unsigned long b = old; b; b &= b - 1)
		n++;
	memfault_sub(&r->nr_busy, n, MEMFAULT_RELAXED);
	if (!memfault_load_seq_cst(&r->nr_waiters))
		return;
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

/* Publish one page known to be in range (dispatch's fast path). */
void
memfault_region_publish_page(struct memfault_region *r, uint64_t page)
{
	size_t w = word_of(page);
	unsigned long m = bit_of(page);

	/* Release: pairs as in memfault_region_publish(). */
	memfault_fetch_and(&r->missing[w], ~m, MEMFAULT_RELEASE);
	if (MEMFAULT_READ_ONCE(r->busy[w]) & m)
		release_busy(r, w, m);
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
			release_busy(r, w, m);
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
	fill_words(r->missing, w + 1, lw, 0ul, true);
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
			release_busy(r, i, m);
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

MEMFAULT_EXPORT int
memfault_region_claim(struct memfault_region *r, uint64_t page,
		      uint32_t flags)
{
	if (!r || page >= r->npages || (flags & ~(uint32_t)MEMFAULT_CLAIM_NOWAIT))
		return -EINVAL;
	return memfault_region_claim_page(r, page, flags);
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

static int
claim_page(struct memfault_region *r, uint64_t page, uint32_t flags,
	   struct memfault_vcpu *vcpu)
{
	size_t w;
	unsigned long m;

	w = word_of(page);
	m = bit_of(page);
	for (;;) {
		uint32_t *fw, fm, fv;
		int err = 0;

		/* Pairs with the store-release in memfault_region_publish():
		 * present means the contents are visible to us. */
		if (!(memfault_load_acquire(&r->missing[w]) & m))
			return MEMFAULT_CLAIM_PRESENT;
		/* seq_cst: the claim must be visible before we re-read
		 * missing[]; pairs with the fence in memfault_region_publish(). */
		if (!(memfault_fetch_or(&r->busy[w], m, MEMFAULT_SEQ_CST) & m)) {
			memfault_add(&r->nr_busy, 1, MEMFAULT_SEQ_CST);
			/* Ours. A publish may have completed between the
			 * check above and the claim: look again. */
			if (memfault_load_seq_cst(&r->missing[w]) & m)
				return MEMFAULT_CLAIM_FETCH;
			release_busy(r, w, m);
			return MEMFAULT_CLAIM_PRESENT;
		}
		if (flags & MEMFAULT_CLAIM_NOWAIT)
			return MEMFAULT_CLAIM_BUSY;
		fw = futex_word(r, page, &fm);
		/* Counted before the last look at the bit: pairs with the
		 * seq_cst clear and load in release_busy(). */
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

/* memfault_region_claim() without the argument checks, for dispatch. */
int
memfault_region_claim_page(struct memfault_region *r, uint64_t page,
			   uint32_t flags)
{
	return claim_page(r, page, flags, NULL);
}

int
memfault_region_claim_page_vcpu(struct memfault_region *r, uint64_t page,
				struct memfault_vcpu *vcpu)
{
	return claim_page(r, page, 0, vcpu);
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
	release_busy(r, word_of(page), m);
	/* and host threads faulting on it, which then claim it themselves */
	trap = memfault_region_get_trap(r);
	if (trap)
		trap->ops->wake(trap, page, 1);
	return 0;
}
