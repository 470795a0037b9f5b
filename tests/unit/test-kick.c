/* SPDX-License-Identifier: MIT */
/*
 * memfault_vcpu_kick(): before entry, during KVM_RUN, after an exit, from
 * another thread 10^4 times, from a signal handler, and with the real-time
 * signal queue full. A lost kick leaves
 * the vCPU spinning in the guest, which the tests detect with a deadline.
 */
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>

#include "sim-env.h"
#include "test-common.h"

#define KICKS 10000

START_TEST(kick_before_entry)
{
	struct sim_env e;
	struct outcome o;

	sim_env_open(&e, sim_models[_i].arch, KVMSIM_LEVEL_7_2);
	sim_env_script(&e, "spin");
	ck_assert_int_eq(memfault_vcpu_kick(e.vcpu), 0);
	ck_assert_uint_eq(e.run->immediate_exit, 1);
	o = sim_env_run(&e);
	ck_assert_int_eq(o.r, MEMFAULT_RUN_INTERRUPTED);
	ck_assert_uint_eq(e.run->immediate_exit, 0);
	/* two kicks before one run are merged into one return */
	sim_env_script(&e, "mmio_write:0x10000000:1:1");
	ck_assert_int_eq(memfault_vcpu_kick(e.vcpu), 0);
	ck_assert_int_eq(memfault_vcpu_kick(e.vcpu), 0);
	ck_assert_int_eq(sim_env_run(&e).r, MEMFAULT_RUN_INTERRUPTED);
	o = sim_env_run(&e);
	ck_assert_int_eq(o.r, MEMFAULT_RUN_EXIT);
	ck_assert_uint_eq(o.exit_reason, KVM_EXIT_MMIO);
	sim_env_close(&e);
}
END_TEST

START_TEST(kick_after_exit)
{
	struct sim_env e;

	sim_env_open(&e, sim_models[_i].arch, KVMSIM_LEVEL_7_2);
	sim_env_script(&e, "mmio_write:0x10000000:1:1;mmio_write:0x10000000:1:2");
	ck_assert_int_eq(sim_env_run(&e).r, MEMFAULT_RUN_EXIT);
	ck_assert_int_eq(memfault_vcpu_kick(e.vcpu), 0);
	ck_assert_int_eq(sim_env_run(&e).r, MEMFAULT_RUN_INTERRUPTED);
	ck_assert_int_eq(sim_env_run(&e).r, MEMFAULT_RUN_EXIT);
	ck_assert_uint_eq(e.run->mmio.data[0], 2);
	sim_env_close(&e);
}
END_TEST

struct spinner {
	struct sim_env *e;
	int target;          /* how many INTERRUPTED returns to collect */
	int acks;            /* atomic: collected so far */
	int other;           /* atomic: any other result */
};

static void *
spin_thread(void *arg)
{
	struct spinner *sp = arg;

	while (__atomic_load_n(&sp->acks, __ATOMIC_ACQUIRE) < sp->target) {
		int r = memfault_vcpu_run(sp->e->vcpu);

		if (r == MEMFAULT_RUN_INTERRUPTED)
			__atomic_add_fetch(&sp->acks, 1, __ATOMIC_RELEASE);
		else
			__atomic_store_n(&sp->other, r ? r : -1000,
					 __ATOMIC_RELEASE);
	}
	return NULL;
}

START_TEST(kick_during_run)
{
	struct spinner sp = { 0 };
	struct sim_env e;
	pthread_t t;

	sim_env_open(&e, sim_models[_i].arch, KVMSIM_LEVEL_7_2);
	sim_env_script(&e, "spin");
	sp.e = &e;
	sp.target = 1;
	ck_assert_int_eq(pthread_create(&t, NULL, spin_thread, &sp), 0);
	/* let it get into the guest first */
	usleep(50 * 1000);
	ck_assert_int_eq(__atomic_load_n(&sp.acks, __ATOMIC_ACQUIRE), 0);
	ck_assert_int_eq(memfault_vcpu_kick(e.vcpu), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(sp.acks, 1);
	ck_assert_int_eq(sp.other, 0);
	sim_env_close(&e);
}
END_TEST

START_TEST(ten_thousand_kicks_none_lost)
{
	struct spinner sp = { 0 };
	struct sim_env e;
	double deadline;
	pthread_t t;

	sim_env_open(&e, sim_models[_i].arch, KVMSIM_LEVEL_7_2);
	sim_env_script(&e, "spin");
	sp.e = &e;
	sp.target = KICKS;
	ck_assert_int_eq(pthread_create(&t, NULL, spin_thread, &sp), 0);
	deadline = tc_now() + 50;
	for (int i = 0; i < KICKS; i++) {
		/* Each kick must produce an INTERRUPTED return after it
		 * began: wait for it, whatever phase the vCPU was in. */
		ck_assert_int_eq(memfault_vcpu_kick(e.vcpu), 0);
		while (__atomic_load_n(&sp.acks, __ATOMIC_ACQUIRE) <= i) {
			ck_assert_msg(tc_now() < deadline,
				      "kick %d lost: vCPU still in the guest", i);
			sched_yield();
		}
	}
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(sp.acks, KICKS);
	ck_assert_int_eq(sp.other, 0);
	sim_env_close(&e);
}
END_TEST

static struct memfault_vcpu *alarm_vcpu;
static volatile sig_atomic_t alarm_rc = 1;

static void
on_alarm(int sig)
{
	(void)sig;
	alarm_rc = memfault_vcpu_kick(alarm_vcpu);
}

static void *
alarm_vcpu_thread(void *arg)
{
	struct spinner *sp = arg;
	sigset_t set;

	/* SIGALRM goes to the test's main thread, whose handler kicks us */
	sigemptyset(&set);
	sigaddset(&set, SIGALRM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	return spin_thread(sp);
}

START_TEST(kick_from_signal_handler)
{
	struct itimerval it = { .it_value = { 0, 20000 } };
	struct sigaction sa = { .sa_handler = on_alarm };
	struct spinner sp = { 0 };
	struct sim_env e;
	pthread_t t;

	sim_env_open(&e, sim_models[_i].arch, KVMSIM_LEVEL_7_2);
	sim_env_script(&e, "spin");
	alarm_vcpu = e.vcpu;
	sp.e = &e;
	sp.target = 1;
	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGALRM, &sa, NULL), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, alarm_vcpu_thread, &sp), 0);
	usleep(20 * 1000);
	ck_assert_int_eq(setitimer(ITIMER_REAL, &it, NULL), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(alarm_rc, 0);
	ck_assert_int_eq(sp.acks, 1);
	ck_assert_int_eq(sp.other, 0);
	signal(SIGALRM, SIG_DFL);
	sim_env_close(&e);
}
END_TEST

static volatile sig_atomic_t usr_handled;

static void
on_usr2(int sig)
{
	(void)sig;
	usr_handled++;
}

START_TEST(kick_with_the_vmms_signal)
{
	struct sigaction sa = { .sa_handler = on_usr2 };
	MEMFAULT_OPTS(memfault_vcpu_opts, opts, .kick_signal = SIGUSR2,
		      .flags = MEMFAULT_VCPU_NO_SIGNAL_HANDLER);
	struct memfault_vcpu *v2 = NULL;
	struct spinner sp = { 0 };
	struct sim_env e;
	pthread_t t;

	sim_env_open(&e, sim_models[_i].arch, KVMSIM_LEVEL_7_2);
	/* without a handler, NO_SIGNAL_HANDLER cannot work: refused */
	signal(SIGUSR2, SIG_DFL);
	ck_assert_int_eq(memfault_vcpu_new(e.vm, e.vcpu_fd, &opts, &v2),
			 -EINVAL);
	ck_assert_ptr_null(v2);
	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGUSR2, &sa, NULL), 0);
	ck_assert_int_eq(memfault_vcpu_new(e.vm, e.vcpu_fd, &opts, &v2), 0);
	memfault_vcpu_free(e.vcpu);
	e.vcpu = v2;
	sim_env_script(&e, "spin");
	sp.e = &e;
	sp.target = 1;
	ck_assert_int_eq(pthread_create(&t, NULL, spin_thread, &sp), 0);
	usleep(20 * 1000);
	ck_assert_int_eq(memfault_vcpu_kick(e.vcpu), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(sp.acks, 1);
	ck_assert_int_ge(usr_handled, 1);
	sim_env_close(&e);
	signal(SIGUSR2, SIG_DFL);
}
END_TEST

/*
 * A real-time kick signal is queued per kick from RLIMIT_SIGPENDING. With
 * that queue full, the kernel refuses it (EAGAIN): the kick must say so
 * (-EAGAIN, errno untouched), still set immediate_exit, and a standard
 * kick signal must keep working. The queue is filled with the kick signal
 * blocked in this thread, which plays the vCPU thread. Where the kernel
 * does not enforce the limit (an emulator's own signal queue), raw
 * tgkill() never fails and there is nothing to compare with: the test
 * then checks only that kicks succeed.
 */
START_TEST(kick_signal_queue_full)
{
	MEMFAULT_OPTS(memfault_vcpu_opts, usr1, .kick_signal = SIGUSR1);
	struct rlimit old, low;
	struct memfault_vcpu *v2 = NULL;
	sigset_t set, prev;
	struct sim_env e;
	int raw = 0, n, r;

	sim_env_open(&e, sim_models[_i].arch, KVMSIM_LEVEL_7_2);
	sim_env_script(&e, "mmio_write:0x10000000:1:1");
	/* this thread becomes the one the kick signals */
	ck_assert_int_eq(sim_env_run(&e).r, MEMFAULT_RUN_EXIT);
	signal(SIGUSR1, SIG_DFL);
	ck_assert_int_eq(memfault_vcpu_new(e.vm, e.vcpu_fd, &usr1, &v2), 0);
	ck_assert_int_eq(memfault_vcpu_run(v2), MEMFAULT_RUN_EXIT);

	sigemptyset(&set);
	sigaddset(&set, SIGRTMIN);
	sigaddset(&set, SIGUSR1);
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &set, &prev), 0);
	ck_assert_int_eq(getrlimit(RLIMIT_SIGPENDING, &old), 0);
	low = old;
	low.rlim_cur = 8; /* the user's count is shared: often above this */
	ck_assert_int_eq(setrlimit(RLIMIT_SIGPENDING, &low), 0);
	for (n = 0; n < 64; n++) {
		if (syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid),
			    SIGRTMIN)) {
			ck_assert_int_eq(errno, EAGAIN);
			raw = 1;
			break;
		}
	}
	e.run->immediate_exit = 0;
	errno = 1234;
	r = memfault_vcpu_kick(e.vcpu);
	ck_assert_int_eq(errno, 1234);
	/* what the kernel did to the raw signal, the kick reports */
	ck_assert_int_eq(r, raw ? -EAGAIN : 0);
	ck_assert_uint_eq(e.run->immediate_exit, 1);
	/* a standard signal is never refused: 1000 kicks, queue full */
	for (n = 0; n < 1000; n++)
		ck_assert_int_eq(memfault_vcpu_kick(v2), 0);

	/* drain: the blocked signals reach the handlers */
	ck_assert_int_eq(setrlimit(RLIMIT_SIGPENDING, &old), 0);
	ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, &prev, NULL), 0);
	ck_assert_int_eq(memfault_vcpu_run(e.vcpu), MEMFAULT_RUN_INTERRUPTED);
	ck_assert_int_eq(memfault_vcpu_kick(e.vcpu), 0);
	ck_assert_int_eq(memfault_vcpu_run(e.vcpu), MEMFAULT_RUN_INTERRUPTED);
	memfault_vcpu_free(v2);
	signal(SIGUSR1, SIG_DFL);
	sim_env_close(&e);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("kick");
	TCase *tc = tcase_create("kick");

	tcase_set_timeout(tc, 60);
	ADD_ON_72(tc, kick_before_entry);
	ADD_ON_72(tc, kick_after_exit);
	ADD_ON_72(tc, kick_during_run);
	ADD_ON_72(tc, ten_thousand_kicks_none_lost);
	ADD_ON_72(tc, kick_from_signal_handler);
	ADD_ON_72(tc, kick_with_the_vmms_signal);
	ADD_ON_72(tc, kick_signal_queue_full);
	suite_add_tcase(s, tc);
	return tc_run(s);
}
