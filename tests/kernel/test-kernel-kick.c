/* SPDX-License-Identifier: MIT */
/*
 * memfault_vcpu_kick() on a real kernel:
 *   kick-before    a kick before the first entry: the next run returns
 *                  INTERRUPTED at once, the one after runs the guest
 *   kick-readback  a kick while an IN / MMIO read is pending completion:
 *                  INTERRUPTED, then the supplied value still reaches the
 *                  guest (the kernel completes the read on re-entry)
 *   kick-thread    a kick from another thread while the guest spins in a
 *                  loop that never exits on its own: INTERRUPTED
 *   kick-burst     KICKS kicks from another thread, each waiting for the
 *                  INTERRUPTED it causes: none is lost (MEMFAULT_SOAK=1:
 *                  SOAK_KICKS, the soak of tests/reliability/test-stress.c
 *                  on a real kernel)
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ktest.h"

#define KICKS 1000
#define SOAK_KICKS 100000
/* How long a kick may take to be answered before it counts as lost. */
#define KICK_TIMEOUT_S 5

static struct timespec
deadline(int seconds)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += seconds;
	return ts;
}

/* First exit of the main script. */
static void
expect_first_exit(struct kt_vm *v, int rc)
{
#if KT_X86
	kt_expect_io_out(v, rc, 0x42);
#else
	kt_expect_mmio_write(v, rc, KT_MMIO_GPA, 4, 0x42);
#endif
}

START_TEST(kick_before)
{
	struct kt_vm v;

	kt_vm_create(&v, 0, "kick-before");
	kt_vcpu_create(&v, KT_ENTRY_MAIN);
	ck_assert_int_eq(memfault_vcpu_kick(v.mvcpu), 0);
	ck_assert_int_eq(kt_run(&v), MEMFAULT_RUN_INTERRUPTED);
	/* The kick is consumed: the guest runs now. */
	expect_first_exit(&v, kt_run(&v));
	kt_vm_destroy(&v);
}
END_TEST

START_TEST(kick_readback)
{
	struct kt_vm v;

	kt_vm_create(&v, 0, "kick-readback");
	kt_vcpu_create(&v, KT_ENTRY_MAIN);
	expect_first_exit(&v, kt_run(&v));
#if KT_X86
	kt_expect_io_in(&v, kt_run(&v), 0x10);
#else
	kt_expect_mmio_read(&v, kt_run(&v), KT_MMIO_GPA + 4, 4, 0x1234);
#endif
	ck_assert_int_eq(memfault_vcpu_kick(v.mvcpu), 0);
	ck_assert_int_eq(kt_run(&v), MEMFAULT_RUN_INTERRUPTED);
#if KT_X86
	kt_expect_io_out(&v, kt_run(&v), 0x10);
#else
	kt_expect_mmio_write(&v, kt_run(&v), KT_MMIO_GPA + 8, 4, 0x1234);
#endif
	kt_vm_destroy(&v);
}
END_TEST

struct kicker {
	struct kt_vm *v;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool entered;
	bool finished;
	bool done;
	int rc;
	long interrupted;
	int unexpected; /* a result other than INTERRUPTED, or 0 */
};

static void
kicker_init(struct kicker *k, struct kt_vm *v)
{
	memset(k, 0, sizeof(*k));
	k->v = v;
	pthread_mutex_init(&k->lock, NULL);
	pthread_cond_init(&k->cond, NULL);
}

/* kick-thread: one run, recorded from the vCPU thread. */
static void *
vcpu_once(void *arg)
{
	struct kicker *k = arg;
	int rc;

	pthread_mutex_lock(&k->lock);
	k->entered = true;
	pthread_cond_broadcast(&k->cond);
	pthread_mutex_unlock(&k->lock);
	rc = memfault_vcpu_run(k->v->mvcpu);
	kt_record(k->v, rc);
	pthread_mutex_lock(&k->lock);
	k->rc = rc;
	k->finished = true;
	pthread_cond_broadcast(&k->cond);
	pthread_mutex_unlock(&k->lock);
	return NULL;
}

START_TEST(kick_thread)
{
	struct timespec nap = { .tv_sec = 0, .tv_nsec = 200 * 1000 * 1000 };
	struct timespec ts;
	struct kicker k;
	struct kt_vm v;
	pthread_t t;
	int r = 0;

	kt_vm_create(&v, 0, "kick-thread");
	kt_vcpu_create(&v, KT_ENTRY_SPIN);
	kicker_init(&k, &v);
	ck_assert_int_eq(pthread_create(&t, NULL, vcpu_once, &k), 0);
	pthread_mutex_lock(&k.lock);
	while (!k.entered)
		pthread_cond_wait(&k.cond, &k.lock);
	pthread_mutex_unlock(&k.lock);
	/* Let it get into the guest's loop. */
	nanosleep(&nap, NULL);
	ck_assert_int_eq(memfault_vcpu_kick(v.mvcpu), 0);
	ts = deadline(KICK_TIMEOUT_S);
	pthread_mutex_lock(&k.lock);
	while (!k.finished && r != ETIMEDOUT)
		r = pthread_cond_timedwait(&k.cond, &k.lock, &ts);
	pthread_mutex_unlock(&k.lock);
	ck_assert_msg(k.finished, "the kick was lost: the vCPU still runs");
	pthread_join(t, NULL);
	ck_assert_int_eq(k.rc, MEMFAULT_RUN_INTERRUPTED);
	/* The signal made the kernel leave the guest (KVM_EXIT_INTR). */
	ck_assert_int_eq(v.run->exit_reason, KVM_EXIT_INTR);
	kt_vm_destroy(&v);
}
END_TEST

/* kick-burst: run until told to stop, counting INTERRUPTED returns. */
static void *
vcpu_loop(void *arg)
{
	struct kicker *k = arg;

	for (;;) {
		int rc = memfault_vcpu_run(k->v->mvcpu);
		bool done;

		pthread_mutex_lock(&k->lock);
		if (rc == MEMFAULT_RUN_INTERRUPTED) {
			k->interrupted++;
		} else {
			k->unexpected = rc ? rc : -1;
			k->done = true;
		}
		done = k->done;
		pthread_cond_broadcast(&k->cond);
		pthread_mutex_unlock(&k->lock);
		if (done)
			return NULL;
	}
}

START_TEST(kick_burst)
{
	struct kicker k;
	struct kt_vm v;
	pthread_t t;
	const char *soak = getenv("MEMFAULT_SOAK");
	const long kicks = soak && *soak == '1' ? SOAK_KICKS : KICKS;
	long lost = 0, sent = 0;
	double t0;

	kt_vm_create(&v, 0, "kick-burst");
	kt_vcpu_create(&v, KT_ENTRY_SPIN);
	kicker_init(&k, &v);
	ck_assert_int_eq(pthread_create(&t, NULL, vcpu_loop, &k), 0);
	t0 = tc_now();
	for (long i = 0; i < kicks && !lost; i++) {
		struct timespec ts = deadline(KICK_TIMEOUT_S);
		long start;
		int r = 0;

		pthread_mutex_lock(&k.lock);
		start = k.interrupted;
		pthread_mutex_unlock(&k.lock);
		ck_assert_int_eq(memfault_vcpu_kick(v.mvcpu), 0);
		sent++;
		pthread_mutex_lock(&k.lock);
		while (k.interrupted == start && !k.done && r != ETIMEDOUT)
			r = pthread_cond_timedwait(&k.cond, &k.lock, &ts);
		if (k.interrupted == start)
			lost++;
		pthread_mutex_unlock(&k.lock);
	}
	pthread_mutex_lock(&k.lock);
	k.done = true;
	pthread_mutex_unlock(&k.lock);
	/* Wake the vCPU thread so that it sees done (or, if a kick was
	 * lost, is at least asked once more). */
	memfault_vcpu_kick(v.mvcpu);
	pthread_join(t, NULL);
	printf("# kick-burst: %ld kicks, %ld INTERRUPTED returns, %.3f s\n",
	       sent, k.interrupted, tc_now() - t0);
	kres_printf(KT_ARCH, "kick-burst", 1, "kicks=%ld lost=%ld", sent, lost);
	ck_assert_msg(k.unexpected == 0, "vCPU run returned %d, want INTERRUPTED",
		      k.unexpected);
	ck_assert_int_eq(lost, 0);
	ck_assert_int_eq(sent, kicks);
	ck_assert_int_ge(k.interrupted, kicks);
	kt_vm_destroy(&v);
}
END_TEST

Suite *
kt_suite_kick(void)
{
	return tc_suite("kernel-kick", "kick", 120,
			kick_before,
			kick_readback,
			kick_thread,
			kick_burst,
			NULL);
}

#ifndef KT_NO_MAIN
int
main(void)
{
	return kt_main(kt_suite_kick());
}
#endif
