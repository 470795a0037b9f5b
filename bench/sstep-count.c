/* SPDX-License-Identifier: MIT */
/*
 * sstep-count PROGRAM ARGS... - the native instruction count of a measured
 * window, by single-stepping it with ptrace (perf counters are not there on
 * every machine; callgrind does not run the vDSO and counts a system call as
 * nothing).
 *
 * PROGRAM runs with MEMFAULT_BENCH_SSTEP=1 in its environment and marks the
 * window with BENCH_SSTEP_MARK() (bench-stats.h): an int3 at its start and
 * another at its end. Every user-space instruction between the two marks is
 * counted, the vDSO's included; a system call instruction counts as one
 * instruction and is also counted on its own (x86 reports a step over
 * "syscall" as TRAP_BRKPT on the way out of the kernel, not TRAP_TRACE). The marks themselves cost the
 * same on both sides of a comparison, so they cancel in a difference.
 *
 *   sstep-count --self-test   counts a window of a known length (12
 *                             instructions, one of them a system call)
 *                             in a child of its own; exit 0 when both
 *                             counts are exact, 1 otherwise
 *
 * Prints one JSON object on stdout:
 *   {"instructions":N,"syscalls":S,"exit":STATUS}
 * and passes the program's stdout through to stderr. x86-64 only (an int3
 * mark); exits 77 elsewhere. About 15,000 steps per second on a loaded
 * 2-CPU VM: keep the windows small.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef TRAP_BRKPT
#define TRAP_BRKPT 1
#endif
#ifndef TRAP_TRACE
#define TRAP_TRACE 2
#endif

#if defined(__x86_64__)
/* The self-test's window: 10 nops, getpid() by hand (mov + syscall). */
static void
known_window(void)
{
	__asm__ volatile("int3\n\t"
			 "nop\n\tnop\n\tnop\n\tnop\n\tnop\n\t"
			 "nop\n\tnop\n\tnop\n\tnop\n\tnop\n\t"
			 "mov $39, %%eax\n\t" /* __NR_getpid */
			 "syscall\n\t"
			 "int3"
			 ::: "rax", "rcx", "r11", "memory");
}
#endif

int
main(int argc, char **argv)
{
#if !defined(__x86_64__)
	(void)argc;
	(void)argv;
	fprintf(stderr, "sstep-count: x86-64 only\n");
	return 77;
#else
	unsigned long long steps = 0, syscalls = 0;
	int counting = 0, done = 0, status;
	pid_t pid;

	int self_test;

	if (argc < 2) {
		fprintf(stderr, "usage: %s PROGRAM ARGS... | --self-test\n",
			argv[0]);
		return 2;
	}
	self_test = !strcmp(argv[1], "--self-test");
	pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0 && self_test) {
		if (ptrace(PTRACE_TRACEME, 0, NULL, NULL))
			_exit(126);
		/* the stop the tracer waits for first, as exec's */
		raise(SIGSTOP);
		known_window();
		_exit(0);
	}
	if (pid == 0) {
		/* the program's own output must not mix with ours */
		dup2(2, 1);
		setenv("MEMFAULT_BENCH_SSTEP", "1", 1);
		if (ptrace(PTRACE_TRACEME, 0, NULL, NULL))
			_exit(126);
		execvp(argv[1], argv + 1);
		_exit(127);
	}
	/* the stop at exec */
	if (waitpid(pid, &status, 0) != pid || !WIFSTOPPED(status))
		return 1;
	ptrace(PTRACE_SETOPTIONS, pid, NULL, (void *)PTRACE_O_EXITKILL);
	for (int sig = 0;;) {
		if (ptrace(counting ? PTRACE_SINGLESTEP : PTRACE_CONT, pid, NULL,
			   (void *)(long)sig))
			return 1;
		sig = 0;
		if (waitpid(pid, &status, 0) != pid)
			return 1;
		if (WIFEXITED(status) || WIFSIGNALED(status))
			break;
		sig = WSTOPSIG(status);
		if (sig == SIGTRAP) {
			siginfo_t si;

			if (ptrace(PTRACE_GETSIGINFO, pid, NULL, &si))
				return 1;
			if ((si.si_code == TRAP_TRACE ||
			     si.si_code == TRAP_BRKPT) && counting) {
				/* TRAP_BRKPT: the step was a system call (the
				 * kernel reports it on the way out) */
				steps++;
				syscalls += si.si_code == TRAP_BRKPT;
				sig = 0;
			} else if (si.si_code == SI_KERNEL && !done) {
				/* a mark: the int3 itself is not counted */
				done = counting;
				counting = !counting;
				sig = 0;
			}
		}
		/*
		 * Any other signal goes to the program with the next resume; the
		 * stop that reported it was not an instruction.
		 */
	}
	printf("{\"instructions\":%llu,\"syscalls\":%llu,\"exit\":%d}\n",
	       steps, syscalls, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	if (!done) {
		fprintf(stderr, "sstep-count: the program did not mark a window\n");
		return 1;
	}
	if (self_test) {
		if (steps == 12 && syscalls == 1)
			return 0;
		fprintf(stderr, "sstep-count: the known window counted %llu "
			"instructions and %llu system calls, not 12 and 1\n",
			steps, syscalls);
		return 1;
	}
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
#endif
}
