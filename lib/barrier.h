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
#define memfault_smp_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)

#endif /* MEMFAULT_BARRIER_H */
