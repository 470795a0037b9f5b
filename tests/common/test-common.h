/* SPDX-License-Identifier: MIT */
/*
 * The one runner and the helpers every kind of test executable shares
 * (unit, sim, reliability, abi, kernel). No simulator and no libmemfault
 * here: the kernel harness links this file into its static real-kernel
 * build too (tests/kernel/run-nested.sh). The simulator fixtures are in
 * sim-env.h and sim-raw.h. See tests/README.md.
 */
#ifndef MEMFAULT_TEST_COMMON_H
#define MEMFAULT_TEST_COMMON_H

#include <check.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* What one run of a suite did. */
struct tc_counts {
	int ran;          /* tests run */
	int failed;       /* failed or errored */
	unsigned skipped; /* of those run, how many called tc_count_skip() */
};

/*
 * Run every test of @s (Check's fork mode; verbosity from CK_VERBOSITY,
 * CK_RUN_CASE selects one test case), free it, and return the exit code
 * meson reads: 1 if a test failed, 77 if tests ran and every one of them
 * skipped itself (tc_count_skip()), else 0. @counts, if not NULL, gets the
 * figures.
 */
int tc_run_counted(Suite *s, struct tc_counts *counts);
/* The same over a runner of several suites (srunner_add_suite()). */
int tc_run_srunner(SRunner *sr, struct tc_counts *counts);
/* tc_run_counted(@s, NULL). */
int tc_run(Suite *s);
/*
 * The whole executable cannot run here: print "# SKIP: <reason>" on
 * stdout, free @s (may be NULL) and return 77 for main() to return.
 */
int tc_skip(Suite *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The running test skipped itself (it then returns at once): counted in
 * shared memory, as Check runs each test in a child process. */
void tc_count_skip(void);

/* Line-buffered stdout even into a pipe: Check forks a child per test,
 * and a line still buffered at the fork would be printed twice. Call
 * before any output; idempotent. */
void tc_init(void);

/* A suite @name of one test case @tcase (timeout @timeout seconds, 0:
 * Check's default) holding the tests that follow, up to NULL. */
Suite *tc_suite(const char *name, const char *tcase, int timeout, ...);

/* Add @fn to @tc (the name the tests have always used). */
#define ADD_TEST(tc, fn) tcase_add_test((tc), fn)
/* Add @fn to @s in a test case of its own, named after it, so that
 * CK_RUN_CASE=<fn> runs just that test. */
#define ADD_CASE(s, fn)                                                        \
	do {                                                                   \
		TCase *tc_ = tcase_create(#fn);                                \
		tcase_add_test(tc_, fn);                                       \
		suite_add_tcase((s), tc_);                                     \
	} while (0)

/* A "Vm...:" field of /proc/self/status in KiB ("VmRSS", "VmHWM"), or -1. */
long tc_status_kib(const char *field);
/* CLOCK_MONOTONIC in seconds, and in nanoseconds. */
/* Install @fn as @sig's SA_SIGINFO handler (empty mask); fails the test
 * if sigaction() refuses. */
void tc_catch_signal(int sig, void (*fn)(int, siginfo_t *, void *));

double tc_now(void);
uint64_t tc_now_ns(void);
/* The process's resident set in KiB (VmRSS), or -1. */
long tc_rss_kib(void);
/* How many of the fds 0..4095 are open. */
long tc_open_fds(void);
/*
 * Can this process use userfaultfd as libmemfault opens it: the system
 * call, or /dev/userfaultfd's USERFAULTFD_IOC_NEW where that is refused,
 * and the UFFDIO_API handshake on the fd? 0 if so, else a negative errno
 * with the reason in @why (@len bytes; @why may be NULL).
 */
int tc_uffd_usable(char *why, size_t len);

/* KVM through raw ioctls, the way a VMM sets a VM up (on the simulator or
 * a real /dev/kvm alike). */

/* open("/dev/kvm"), KVM_CREATE_VM(@vm_type), KVM_CREATE_VCPU(0): each
 * asserted. */
void tc_kvm_open(int *kvm_fd, int *vm_fd, int *vcpu_fd, unsigned long vm_type);
/* Close what tc_kvm_open() opened, the vCPU first. */
void tc_kvm_close(int kvm_fd, int vm_fd, int vcpu_fd);
/* KVM_SET_USER_MEMORY_REGION2 with the proposed KVM Userfault bitmap
 * (@bitmap may be NULL); 0 or -errno. */
int tc_memslot2(int vm_fd, uint32_t slot, uint32_t flags, uint64_t gpa,
		uint64_t size, const void *hva, int gmem_fd, uint64_t gmem_off,
		const void *bitmap);
/* KVM_SET_USER_MEMORY_REGION, the only one before 6.8; 0 or -errno. */
int tc_memslot1(int vm_fd, uint32_t slot, uint32_t flags, uint64_t gpa,
		uint64_t size, const void *hva);

#endif
