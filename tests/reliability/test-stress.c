/* SPDX-License-Identifier: MIT */
/*
 * Stress and soak on the simulator (SPIN guests and scripted exits):
 *   kicks_from_threads     K kicks from 3 threads at once while the vCPU
 *                          spins in KVM_RUN; each kick must be answered by
 *                          an INTERRUPTED return that started after it
 *                          (none lost), within a deadline (no stuck vCPU)
 *   kicks_in_signal_storm  the same while a fourth thread sends other
 *                          signals (with handlers) to the vCPU thread as
 *                          fast as it can: every run returns INTERRUPTED
 *                          or an exit, never an error, and no kick is lost
 *   exits_flat             E exits (ordinary exits through
 *                          memfault_vcpu_run(), memory-fault exits through
 *                          memfault_vcpu_run_dispatch() with a handler, and
 *                          userfault page-ins with re-marking): the RSS
 *                          after the first tenth stays flat and no fd is
 *                          opened
 * Short by default (K = 2*10^4, E = 10^5); MEMFAULT_SOAK=1 selects the
 * long variants (K = 10^5, E = 10^6), as .ci/job-reliability.sh does.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "sim-env.h"
#include "test-common.h"

#define KICKERS 3

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif
/*
 * TSan's runtime defers signals and does not survive an unpaced storm
 * (its allocator CHECK fails after ~10^5 signals/s): pace it there.
 */
#if defined(__SANITIZE_THREAD__)
#define STORM_PACE_US 20
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define STORM_PACE_US 20
#endif
#endif
#ifndef STORM_PACE_US
#define STORM_PACE_US 0
#endif

static bool soak;
static unsigned long nr_kicks, nr_exits;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- kicks ---- */

struct kick_state {
	struct sim_env *e;
	unsigned long acks;  /* atomic: INTERRUPTED returns */
	unsigned long kicks; /* atomic: kicks made */
	int stop;            /* atomic */
	int bad;             /* atomic: an unexpected result or a lost kick */
	int storm;           /* atomic: signal storm on */
	pid_t vcpu_tid;      /* atomic */
	unsigned long storm_signals;
	double max_wait;     /* longest kick-to-return, seconds */
	pthread_mutex_t lock;
};

static void *
vcpu_thread(void *arg)
{
	struct kick_state *ks = arg;

	__atomic_store_n(&ks->vcpu_tid, (pid_t)syscall(SYS_gettid),
			 __ATOMIC_RELEASE);
	while (!__atomic_load_n(&ks->stop, __ATOMIC_ACQUIRE)) {
		int r = memfault_vcpu_run(ks->e->vcpu);

		if (r == MEMFAULT_RUN_INTERRUPTED)
			__atomic_add_fetch(&ks->acks, 1, __ATOMIC_ACQ_REL);
		else
			__atomic_store_n(&ks->bad, r ? r : -1000,
					 __ATOMIC_RELEASE);
	}
	return NULL;
}

static void *
kicker_thread(void *arg)
{
	struct kick_state *ks = arg;
	unsigned long per = (nr_kicks + KICKERS - 1) / KICKERS;
	double worst = 0;

	for (unsigned long i = 0; i < per; i++) {
		/* any INTERRUPTED return after this point answers the kick */
		unsigned long before = __atomic_load_n(&ks->acks,
						       __ATOMIC_ACQUIRE);
		double t0 = now(), w;

		if (memfault_vcpu_kick(ks->e->vcpu)) {
			__atomic_store_n(&ks->bad, -2000, __ATOMIC_RELEASE);
			break;
		}
		__atomic_add_fetch(&ks->kicks, 1, __ATOMIC_RELAXED);
		while (__atomic_load_n(&ks->acks, __ATOMIC_ACQUIRE) <= before) {
			if (now() - t0 > 10) {
				/* lost: the vCPU spins on in the guest */
				__atomic_store_n(&ks->bad, -3000,
						 __ATOMIC_RELEASE);
				return NULL;
			}
			sched_yield();
		}
		w = now() - t0;
		if (w > worst)
			worst = w;
	}
	pthread_mutex_lock(&ks->lock);
	if (worst > ks->max_wait)
		ks->max_wait = worst;
	pthread_mutex_unlock(&ks->lock);
	return NULL;
}

static volatile sig_atomic_t storm_handled;

static void
on_storm_signal(int sig)
{
	(void)sig;
	storm_handled++;
}

static void *
storm_thread(void *arg)
{
	struct kick_state *ks = arg;
	pid_t tid;
	/*
	 * Standard signals only: a real-time one is queued per signal, and
	 * a storm of them fills the per-user queue (RLIMIT_SIGPENDING),
	 * which makes every process of the user fail its real-time kicks
	 * with EAGAIN.
	 */
	int sigs[2] = { SIGUSR1, SIGUSR2 };

	while (!(tid = __atomic_load_n(&ks->vcpu_tid, __ATOMIC_ACQUIRE)))
		sched_yield();
	for (unsigned long i = 0;
	     __atomic_load_n(&ks->storm, __ATOMIC_ACQUIRE); i++) {
		syscall(SYS_tgkill, getpid(), tid, sigs[i & 1]);
		ks->storm_signals++;
		if (STORM_PACE_US)
			usleep(STORM_PACE_US);
		else if (!(i & 63))
			sched_yield();
	}
	return NULL;
}

static void
run_kicks(uint32_t arch, bool storm)
{
	struct kick_state ks;
	struct sigaction sa;
	pthread_t v, k[KICKERS], s;
	struct sim_env e;
	double t0;

	sim_env_open(&e, arch, KVMSIM_LEVEL_7_2);
	ck_assert_int_eq(kvmsim_vcpu_set_script_text(e.vcpu_fd, "spin"), 0);
	memset(&ks, 0, sizeof(ks));
	ks.e = &e;
	pthread_mutex_init(&ks.lock, NULL);
	if (storm) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_storm_signal;
		sigemptyset(&sa.sa_mask);
		ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
		ck_assert_int_eq(sigaction(SIGUSR2, &sa, NULL), 0);
		ks.storm = 1;
	}
	t0 = now();
	ck_assert_int_eq(pthread_create(&v, NULL, vcpu_thread, &ks), 0);
	if (storm)
		ck_assert_int_eq(pthread_create(&s, NULL, storm_thread, &ks), 0);
	for (int i = 0; i < KICKERS; i++)
		ck_assert_int_eq(pthread_create(&k[i], NULL, kicker_thread, &ks),
				 0);
	for (int i = 0; i < KICKERS; i++)
		pthread_join(k[i], NULL);
	if (storm) {
		__atomic_store_n(&ks.storm, 0, __ATOMIC_RELEASE);
		pthread_join(s, NULL);
	}
	/* the vCPU still answers after the storm: one last kick */
	{
		unsigned long before = __atomic_load_n(&ks.acks, __ATOMIC_ACQUIRE);
		double t1 = now();

		__atomic_store_n(&ks.stop, 1, __ATOMIC_RELEASE);
		ck_assert_int_eq(memfault_vcpu_kick(e.vcpu), 0);
		while (__atomic_load_n(&ks.acks, __ATOMIC_ACQUIRE) <= before &&
		       now() - t1 < 10)
			sched_yield();
		ck_assert_msg(__atomic_load_n(&ks.acks, __ATOMIC_ACQUIRE) >
				      before, "vCPU stuck after the last kick");
	}
	pthread_join(v, NULL);
	ck_assert_msg(ks.bad == 0, "bad result or lost kick: %d", ks.bad);
	ck_assert_uint_eq(ks.kicks, (nr_kicks + KICKERS - 1) / KICKERS * KICKERS);
	printf("%s%s: %lu kicks from %d threads, %lu INTERRUPTED returns, "
	       "%lu storm signals (%d handled), longest kick %.1f ms, %.1f s\n",
	       arch == KVMSIM_X86_64 ? "x86_64" : "arm64",
	       storm ? " +storm" : "", ks.kicks, KICKERS, ks.acks,
	       ks.storm_signals, (int)storm_handled, ks.max_wait * 1e3,
	       now() - t0);
	if (storm) {
		signal(SIGUSR1, SIG_IGN);
		signal(SIGUSR2, SIG_IGN);
	}
	sim_env_close(&e);
}

START_TEST(kicks_from_threads)
{
	run_kicks(_i ? KVMSIM_ARM64 : KVMSIM_X86_64, false);
}
END_TEST

START_TEST(kicks_in_signal_storm)
{
	run_kicks(_i ? KVMSIM_ARM64 : KVMSIM_X86_64, true);
}
END_TEST

/* ---- exits with flat memory ---- */

static long
open_fds(void)
{
	long n = 0;

	for (int fd = 0; fd < 4096; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	return n;
}

static int
on_other(void *user, struct memfault_vcpu *vcpu, const struct memfault_fault *f)
{
	(void)user;
	(void)vcpu;
	(void)f;
	return MEMFAULT_TO_VMM;
}

static int
on_page_in(void *user, struct memfault_vcpu *vcpu, struct memfault_region *r,
	   uint64_t pg, void *hva, uint64_t size)
{
	(void)user;
	(void)vcpu;
	(void)r;
	memset(hva, (int)pg, size);
	return MEMFAULT_RESOLVED;
}

START_TEST(exits_flat)
{
	MEMFAULT_OPTS(memfault_handlers, h, .other = on_other,
		      .page_in = on_page_in);
	MEMFAULT_OPTS(memfault_region_opts, ro,
		      .flags = MEMFAULT_REGION_USERFAULT);
	struct kvm_create_guest_memfd g = { .size = 0 };
	struct kvm_userspace_memory_region2 m;
	struct memfault_region *region;
	unsigned long ordinary = 0, faults = 0, userfaults = 0;
	long rss0 = 0, rss1, fds0 = 0, fds1;
	struct memfault_vcpu_stats st;
	char script[128];
	struct sim_env e;
	void *ram, *gram;
	int gmem;
	double t0 = now();

	sim_env_open(&e, _i ? KVMSIM_ARM64 : KVMSIM_X86_64, KVMSIM_LEVEL_7_2_UF);
	ck_assert_int_eq(memfault_vm_set_handlers(e.vm, &h), 0);
	/* guest_memfd page whose faults are injected (memory-fault exits) */
	g.size = 4 * e.page;
	/* arm64 takes guest_memfd memslots only with MMAP (as the kernel) */
	gmem = ioctl(e.vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS);
	g.flags = gmem > 0 ? (uint64_t)gmem & GUEST_MEMFD_FLAG_MMAP : 0;
	gmem = ioctl(e.vm_fd, KVM_CREATE_GUEST_MEMFD, &g);
	ck_assert_int_ge(gmem, 0);
	gram = mmap(NULL, g.size, PROT_READ | PROT_WRITE, MAP_SHARED, gmem, 0);
	ck_assert_ptr_ne(gram, MAP_FAILED);
	memset(&m, 0, sizeof(m));
	m.slot = 2;
	m.flags = KVM_MEM_GUEST_MEMFD;
	m.guest_phys_addr = GMEM_GPA;
	m.memory_size = g.size;
	m.userspace_addr = (uintptr_t)gram;
	m.guest_memfd = (uint32_t)gmem;
	ck_assert_int_eq(ioctl(e.vm_fd, KVM_SET_USER_MEMORY_REGION2, &m), 0);
	/* a userfault region for page-ins */
	ram = mmap(NULL, 4 * e.page, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(ram, MAP_FAILED);
	ck_assert_int_eq(memfault_region_new(e.vm, 1, RAM_GPA, 4 * e.page, ram,
					     &ro, &region), 0);

	for (unsigned long i = 0; i < nr_exits; i += 10) {
		int r;

		if (i == nr_exits / 10) {
			rss0 = rss_kib();
			fds0 = open_fds();
		}
		/* a userfault page-in, then a memory fault to the VMM */
		ck_assert_int_eq(memfault_region_mark_missing(region, i / 10 % 4,
							      1), 0);
		/* x86: a private access to a shared page (C-bit), a memory
		 * fault; arm64: guest_memfd fails it with the injected EIO */
		snprintf(script, sizeof(script), "load:%#llx:8;load:%#llx:8%s",
			 (unsigned long long)(RAM_GPA + (i / 10 % 4) * e.page),
			 (unsigned long long)GMEM_GPA, _i ? "" : ":private");
		ck_assert_int_eq(kvmsim_vcpu_set_script_text(e.vcpu_fd, script),
				 0);
		ck_assert_int_eq(kvmsim_inject_gmem_error(e.vm_fd, GMEM_GPA,
							  EIO, 1), 0);
		r = memfault_vcpu_run_dispatch(e.vcpu);
		ck_assert_int_eq(r, MEMFAULT_RUN_MEMORY_FAULT);
		faults++;
		userfaults++;
		/* then ordinary exits (an empty script: shutdowns); 10
		 * KVM_RUN calls per round in all */
		ck_assert_int_eq(kvmsim_vcpu_set_script(e.vcpu_fd, NULL, 0), 0);
		for (int k = 0; k < 8; k++) {
			r = memfault_vcpu_run(e.vcpu);
			ck_assert_int_eq(r, MEMFAULT_RUN_EXIT);
			ordinary++;
		}
	}
	rss1 = rss_kib();
	fds1 = open_fds();
	ck_assert_int_eq(memfault_vcpu_get_stats(e.vcpu, &st, sizeof(st)), 0);
	printf("%s: %lu exits (%lu ordinary, %lu memory faults, %lu userfault "
	       "page-ins), %llu KVM_RUN calls, RSS %ld -> %ld KiB, fds %ld -> "
	       "%ld, %.1f s\n", _i ? "arm64" : "x86_64",
	       ordinary + faults + userfaults, ordinary, faults, userfaults,
	       (unsigned long long)st.runs, rss0, rss1, fds0, fds1, now() - t0);
	ck_assert_uint_eq(st.page_ins, userfaults);
	ck_assert_uint_ge(st.runs, nr_exits);
	/* flat: allocator noise only, no growth with the count (ASan's
	 * quarantine grows by design: not there) */
	if (!UNDER_ASAN)
		ck_assert_msg(rss1 - rss0 < 512, "RSS grew by %ld KiB",
			      rss1 - rss0);
	ck_assert_int_eq(fds1, fds0);
	memfault_region_free(region);
	munmap(ram, 4 * e.page);
	munmap(gram, g.size);
	close(gmem);
	sim_env_close(&e);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("stress");
	TCase *tc = tcase_create("stress");
	const char *v = getenv("MEMFAULT_SOAK");
	SRunner *sr;
	int failed;

	soak = v && *v == '1';
	nr_kicks = soak ? 100000 : 20000;
	nr_exits = soak ? 1000000 : 100000;
	setvbuf(stdout, NULL, _IOLBF, 0);
	tcase_set_timeout(tc, soak ? 1200 : 240);
	tcase_add_loop_test(tc, kicks_from_threads, 0, 2);
	tcase_add_loop_test(tc, kicks_in_signal_storm, 0, 2);
	tcase_add_loop_test(tc, exits_flat, 0, 2);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
