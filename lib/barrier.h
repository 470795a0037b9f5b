/* SPDX-License-Identifier: MIT */
/*
 * Atomic helpers for memory shared with the kernel or with other threads.
 * The shape follows liburing's barrier.h: plain C11/GNU atomics on the
 * object itself, no hand-written assembly. Every caller names the barrier
 * its own one pairs with.
 */
#ifndef MEMFAULT_BARRIER_H
#define MEMFAULT_BARRIER_H

/*
 * The memory orders, named once here: the read-modify-write helpers below
 * take one, so that each caller states the order it needs.
 */
#define MEMFAULT_RELAXED __ATOMIC_RELAXED
#define MEMFAULT_ACQUIRE __ATOMIC_ACQUIRE
#define MEMFAULT_RELEASE __ATOMIC_RELEASE
#define MEMFAULT_ACQ_REL __ATOMIC_ACQ_REL
#define MEMFAULT_SEQ_CST __ATOMIC_SEQ_CST

/* A relaxed load or store of @x: untorn, and the compiler neither merges
 * nor repeats it; it orders nothing. */
#define MEMFAULT_READ_ONCE(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define MEMFAULT_WRITE_ONCE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
/* Load-acquire: what the paired store-release published is visible after. */
#define memfault_load_acquire(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
/* Store-release: what this thread wrote before is visible to whoever
 * load-acquires the value. */
#define memfault_store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
/* Sequentially consistent load and store, for store-load pairs (a waiter
 * stores its intent and then loads the condition, the waker stores the
 * condition and then loads the intent: at least one sees the other). */
#define memfault_load_seq_cst(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define memfault_store_seq_cst(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
/* Atomic *p |= v and *p &= v with the given order; the old value. */
#define memfault_fetch_or(p, v, order) __atomic_fetch_or((p), (v), (order))
#define memfault_fetch_and(p, v, order) __atomic_fetch_and((p), (v), (order))
/* Atomic *p += n and *p -= n with the given order; the new value. */
#define memfault_add(p, n, order) __atomic_add_fetch((p), (n), (order))
#define memfault_sub(p, n, order) __atomic_sub_fetch((p), (n), (order))
/*
 * Compare and exchange: if *p equals *expected, store @desired with
 * @order; otherwise load *p into *expected (relaxed). True when stored.
 * The _weak form may fail spuriously: only inside a retry loop.
 */
#define memfault_cmpxchg(p, expected, desired, order)                         \
	__atomic_compare_exchange_n((p), (expected), (desired), 0,            \
				    (order), __ATOMIC_RELAXED)
#define memfault_cmpxchg_weak(p, expected, desired, order)                    \
	__atomic_compare_exchange_n((p), (expected), (desired), 1,            \
				    (order), __ATOMIC_RELAXED)
/*
 * Add to a counter that only the calling thread writes (other threads
 * read it with MEMFAULT_READ_ONCE): a relaxed load and store, no locked
 * read-modify-write. A counter with several writers takes memfault_add().
 */
#define memfault_counter_add(p, n)                                            \
	__atomic_store_n((p), __atomic_load_n((p), __ATOMIC_RELAXED) + (n),   \
			 __ATOMIC_RELAXED)
#if defined(__SANITIZE_THREAD__)
#define MEMFAULT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MEMFAULT_TSAN 1
#endif
#endif

#ifdef MEMFAULT_TSAN
/*
 * ThreadSanitizer does not model fences. Where a release fence orders a
 * run of relaxed stores, give TSan a release on every store instead, so it
 * sees the synchronization the hardware gets from the fence; the full
 * fences stay (nothing can replace a store-load barrier), only the
 * compiler's "not supported" warning is silenced.
 */
#define memfault_fence_release() ((void)0)
#define MEMFAULT_RANGE_STORE_ORDER MEMFAULT_RELEASE
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wtsan"
#endif
#else
/* A release fence: the stores before it are visible before the ones after. */
#define memfault_fence_release() __atomic_thread_fence(__ATOMIC_RELEASE)
#define MEMFAULT_RANGE_STORE_ORDER MEMFAULT_RELAXED
#endif
/* A store of a run that memfault_fence_release() ordered (see above). */
#define memfault_store_range(p, v)                                            \
	__atomic_store_n((p), (v), MEMFAULT_RANGE_STORE_ORDER)
/* A full fence: orders earlier loads and stores before later ones. */
#define memfault_smp_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)

#endif /* MEMFAULT_BARRIER_H */
