/* SPDX-License-Identifier: MIT */
/*
 * Atomic helpers for memory shared with the kernel or with other threads.
 * The shape follows liburing's barrier.h: plain C11/GNU atomics on the
 * object itself, no hand-written assembly. Every caller names the barrier
 * its own one pairs with.
 */
#ifndef MEMFAULT_BARRIER_H
#define MEMFAULT_BARRIER_H

#define MEMFAULT_READ_ONCE(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define MEMFAULT_WRITE_ONCE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define memfault_load_acquire(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define memfault_store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
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
#define MEMFAULT_RANGE_STORE_ORDER __ATOMIC_RELEASE
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wtsan"
#endif
#else
#define memfault_fence_release() __atomic_thread_fence(__ATOMIC_RELEASE)
#define MEMFAULT_RANGE_STORE_ORDER __ATOMIC_RELAXED
#endif
#define memfault_smp_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)

#endif /* MEMFAULT_BARRIER_H */
