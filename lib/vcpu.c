/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "barrier.h"
#include "memfault-private.h"
#include "classify.h"

/* The caller's thread id, read once per thread: gettid() would be a second
 * system call on every memfault_vcpu_run(). initial-exec: a plain %fs/tpidr
 * load instead of a __tls_get_addr() call on every run (the library is
 * never dlopen()ed after start-up in a way that would need more). */
static __thread pid_t memfault_thread_tid
	__attribute__((tls_model("initial-exec")));

static void
kick_handler(int sig)
{
	/* Nothing to do: delivering the signal is what makes KVM_RUN return
	 * -EINTR (kvm_handle_signal_exit()). */
	(void)sig;
}

/*
 * Signals that report a fault of the receiving thread's own instruction:
 * the kernel forces SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGTRAP on it
 * (force_sig_fault()) and SIGSYS for a seccomp trap, and abort() raises
 * SIGABRT. With the do-nothing kick handler a real fault would return to
 * the faulting instruction and take it again forever (a NULL write spins),
 * and a VMM's own handler for them would take every kick for a crash.
 */
static bool
is_fault_signal(int sig)
{
	switch (sig) {
	case SIGSEGV:
	case SIGBUS:
	case SIGILL:
	case SIGFPE:
	case SIGTRAP:
	case SIGSYS:
	case SIGABRT:
		return true;
	default:
		return false;
	}
}

static bool
is_kick_handler(const struct sigaction *sa)
{
	return !(sa->sa_flags & SA_SIGINFO) && sa->sa_handler == kick_handler;
}

/* Check the kick signal and its disposition without changing anything:
 * 1 if the library must install its handler (SIG_DFL), 0 if a handler is
 * there already, or a negative errno. */
static int
check_kick_signal(int sig, bool install)
{
	struct sigaction old;

	if (sig <= 0 || sig > SIGRTMAX || sig == SIGKILL || sig == SIGSTOP ||
	    is_fault_signal(sig))
		return -EINVAL;
	/* glibc answers EINVAL for the signals it keeps for itself (32, 33). */
	if (sigaction(sig, NULL, &old))
		return -errno;
	/* An ignored signal is discarded at generation and would never
	 * interrupt KVM_RUN: refuse it rather than lose every kick. */
	if (old.sa_handler == SIG_IGN && !(old.sa_flags & SA_SIGINFO))
		return -EINVAL;
	if (old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO))
		return 0;
	return install ? 1 : -EINVAL;
}

/*
 * The last step of memfault_vcpu_new(), after everything that can fail, so
 * that a failed call leaves the process's signal dispositions as they were.
 * The handler then stays for the life of the process: every vCPU object
 * with this kick signal relies on it, and memfault_vcpu_free() leaves it.
 */
static int
install_kick_handler(int sig)
{
	struct sigaction old, sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, &old))
		return -errno;
	if ((old.sa_handler == SIG_DFL && !(old.sa_flags & SA_SIGINFO)) ||
	    is_kick_handler(&old))
		return 0;
	/* Another thread set a disposition since check_kick_signal() looked:
	 * put it back. A handler of theirs interrupts KVM_RUN as well as ours;
	 * SIG_IGN would lose every kick. */
	sigaction(sig, &old, NULL);
	if (old.sa_handler == SIG_IGN && !(old.sa_flags & SA_SIGINFO))
		return -EINVAL;
	return 0;
}

/* The errors memfault_vcpu_new() documents: the mapping size lookup
 * (open() of /dev/kvm, KVM_GET_VCPU_MMAP_SIZE) and mmap() of the vCPU fd
 * can fail in more ways than a caller can act on. */
static int
vcpu_new_error(int r)
{
	switch (r) {
	case -EINVAL:
	case -EBADF:
	case -ENOMEM:
	case -EMFILE:
	case -EACCES:
	case -ENODEV:
		return r;
	case -EAGAIN: /* mmap(): RLIMIT_MEMLOCK with mlockall(MCL_FUTURE) */
		return -ENOMEM;
	case -ENFILE:
		return -EMFILE;
	case -EPERM: /* open() or mmap() denied (LSM, file seals) */
		return -EACCES;
	default: /* ENOTTY, EOVERFLOW, ...: not a KVM fd to map from */
		return -ENODEV;
	}
}

MEMFAULT_EXPORT int
memfault_vcpu_new(struct memfault_vm *vm, int vcpu_fd,
		  const struct memfault_vcpu_opts *opts,
		  struct memfault_vcpu **ret_vcpu)
{
	const struct memfault_arch_info *ai;
	struct memfault_vcpu *vcpu;
	struct kvm_run *run;
	uint64_t flags, run_size;
	int sig, install, r;

	if (!vm || !ret_vcpu || !OPTS_VALID(opts, memfault_vcpu_opts))
		return -EINVAL;
	flags = OPTS_GET(opts, memfault_vcpu_opts, flags, 0);
	run = OPTS_GET(opts, memfault_vcpu_opts, run, NULL);
	run_size = OPTS_GET(opts, memfault_vcpu_opts, run_size, 0);
	sig = OPTS_GET(opts, memfault_vcpu_opts, kick_signal, 0);
	if (!sig)
		sig = SIGRTMIN;
	if (flags & ~(uint64_t)(MEMFAULT_VCPU_OWN_FD |
				MEMFAULT_VCPU_NO_SIGNAL_HANDLER |
				MEMFAULT_VCPU_TIME_HANDLERS))
		return -EINVAL;
	if (OPTS_GET(opts, memfault_vcpu_opts, reserved, 0))
		return -EINVAL;
	if (run && run_size < sizeof(struct kvm_run))
		return -EINVAL;
	if (vcpu_fd < 0 || fcntl(vcpu_fd, F_GETFD) < 0)
		return -EBADF;
	if (!run && vm->mmap_size < 0)
		return vcpu_new_error((int)vm->mmap_size);
	install = check_kick_signal(sig,
				    !(flags & MEMFAULT_VCPU_NO_SIGNAL_HANDLER));
	if (install < 0)
		return vcpu_new_error(install);
	ai = memfault_arch_get(vm->arch);

	vcpu = calloc(1, sizeof(*vcpu));
	if (!vcpu)
		return -ENOMEM;
	if (!run) {
		run_size = (uint64_t)vm->mmap_size;
		run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
			   vcpu_fd, 0);
		if (run == MAP_FAILED) {
			r = -errno;
			goto err_free;
		}
		vcpu->own_run = true;
	}
	/* Nothing fails after this but the handler's own installation. */
	if (install) {
		r = install_kick_handler(sig);
		if (r)
			goto err_unmap;
	}
	vcpu->run = run;
	vcpu->run_size = run_size;
	vcpu->fd = vcpu_fd;
	vcpu->own_fd = flags & MEMFAULT_VCPU_OWN_FD;
	vcpu->time_handlers = flags & MEMFAULT_VCPU_TIME_HANDLERS;
	vcpu->kick_signal = sig;
	vcpu->tgid = getpid();
	vcpu->reset_memory_fault = memfault_arch_resets_memory_fault(ai);
	vcpu->vm = vm;
	memfault_add(&vm->refs, 1, MEMFAULT_RELAXED);
	*ret_vcpu = vcpu;
	return 0;

err_unmap:
	if (vcpu->own_run)
		munmap(run, run_size);
err_free:
	free(vcpu);
	return vcpu_new_error(r);
}

MEMFAULT_EXPORT void
memfault_vcpu_free(struct memfault_vcpu *vcpu)
{
	if (!vcpu)
		return;
	if (vcpu->own_run)
		munmap(vcpu->run, vcpu->run_size);
	if (vcpu->own_fd)
		close(vcpu->fd);
	memfault_vm_unref(vcpu->vm);
	free(vcpu);
}

MEMFAULT_EXPORT int
memfault_vcpu_get_fd(const struct memfault_vcpu *vcpu)
{
	return vcpu ? vcpu->fd : -EINVAL;
}

MEMFAULT_EXPORT int
memfault_vcpu_get_run(const struct memfault_vcpu *vcpu,
		      struct kvm_run **ret_run)
{
	if (!vcpu || !ret_run)
		return -EINVAL;
	*ret_run = vcpu->run;
	return 0;
}

static void
publish_tid(struct memfault_vcpu *vcpu)
{
	pid_t tid = memfault_thread_tid;

	if (unlikely(!tid)) {
		tid = (pid_t)syscall(SYS_gettid);
		memfault_thread_tid = tid;
	}
	if (likely(MEMFAULT_READ_ONCE(vcpu->tid) == tid))
		return;
	/* A new thread runs this vCPU. The full fence orders the tid store
	 * before KVM_RUN's sample of immediate_exit; it pairs with the fence
	 * in memfault_vcpu_kick() between its immediate_exit store and its
	 * tid load, so a kick either sees this thread or is seen by KVM_RUN. */
	MEMFAULT_WRITE_ONCE(vcpu->tid, tid);
	memfault_smp_mb();
}

MEMFAULT_EXPORT MEMFAULT_HOT int
memfault_vcpu_run(struct memfault_vcpu *vcpu)
{
	struct kvm_run *run;
	int r;

	if (unlikely(!vcpu))
		return -EINVAL;
	run = vcpu->run;
	publish_tid(vcpu);
	/* What memfault_exit_prepare() does: a leftover memory fault must not
	 * be read as a fresh one after an early failure. */
	memfault_prepare_entry(run, vcpu->reset_memory_fault);
	vcpu->fault_valid = false;

	r = ioctl(vcpu->fd, KVM_RUN, 0);
	memfault_counter_add(&vcpu->stats.runs, 1);
	/* The one classification memfault_exit_classify() uses too; errno is
	 * read only after -1 (after any other result it is stale). */
	r = memfault_classify_result(run, r, &errno, &vcpu->fault);
	if (likely(r == MEMFAULT_RUN_EXIT)) {
		memfault_counter_add(&vcpu->stats.exits, 1);
		return r;
	}
	if (r == MEMFAULT_RUN_INTERRUPTED) {
		memfault_counter_add(&vcpu->stats.interrupted, 1);
		/* The kick (if it was one) is consumed. A kick that stores 1
		 * after this store makes the next KVM_RUN return at once; one
		 * that stored before is answered by this return. Both sides
		 * write the same byte, so coherence order is all we need. */
		MEMFAULT_WRITE_ONCE(run->immediate_exit, 0);
	} else if (r == MEMFAULT_RUN_MEMORY_FAULT) {
		vcpu->fault_valid = true;
		memfault_counter_add(&vcpu->stats.memory_faults, 1);
	}
	return r;
}

MEMFAULT_EXPORT int
memfault_vcpu_kick(struct memfault_vcpu *vcpu)
{
	int saved_errno = errno, r = 0;
	pid_t tid;

	if (!vcpu)
		return -EINVAL;
	/* Seen by KVM_RUN's READ_ONCE(run->immediate_exit) when the vCPU
	 * has not sampled it yet (kvm_vcpu_ioctl(), virt/kvm/kvm_main.c). */
	MEMFAULT_WRITE_ONCE(vcpu->run->immediate_exit, 1);
	/* Pairs with the fence in publish_tid(): store-load ordering. */
	memfault_smp_mb();
	tid = MEMFAULT_READ_ONCE(vcpu->tid);
	/* The signal covers a vCPU already inside the guest: a pending signal
	 * makes KVM_RUN exit with -EINTR. tgkill() is async-signal-safe. */
	if (tid && syscall(SYS_tgkill, vcpu->tgid, tid, vcpu->kick_signal) &&
	    errno != ESRCH)
		r = -errno;
	/*
	 * The futex word covers a vCPU waiting in dispatch for another
	 * thread's page-in, whose wait the signal does not end: delivered
	 * before the wait began, or restarted by an SA_RESTART handler. The
	 * seq_cst increment orders the immediate_exit store before it
	 * (release: a waiter reading the new value sees the kick), and with
	 * the seq_cst load it pairs with the kick_waiting store and kick_seq
	 * load of kick_wait() in region-claim.c: either the waiter sees the new
	 * value or we see it waiting. Both system calls are
	 * async-signal-safe; errno is restored below.
	 */
	memfault_add(&vcpu->kick_seq, 1, MEMFAULT_SEQ_CST);
	if (memfault_load_seq_cst(&vcpu->kick_waiting))
		syscall(SYS_futex, &vcpu->kick_seq, FUTEX_WAKE_PRIVATE, 1, NULL,
			NULL, 0);
	/* A signal handler calling us must find errno as it was. */
	errno = saved_errno;
	return r;
}

MEMFAULT_EXPORT MEMFAULT_HOT int
memfault_vcpu_get_fault(const struct memfault_vcpu *vcpu,
			struct memfault_fault *ret_fault, size_t size)
{
	if (!vcpu || !ret_fault || !size)
		return -EINVAL;
	if (!vcpu->fault_valid)
		return -ENODATA;
	/* the common case without a call: a plain struct copy, not memcpy()
	 * in another library's code page */
	if (size == sizeof(vcpu->fault))
		*ret_fault = vcpu->fault;
	else
		memfault_copy_out(ret_fault, size, &vcpu->fault,
				  sizeof(vcpu->fault));
	return 0;
}
