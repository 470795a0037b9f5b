/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "barrier.h"
#include "memfault-private.h"

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

static int
prepare_kick_signal(int sig, bool install)
{
	struct sigaction old, sa;

	if (sig <= 0 || sig > SIGRTMAX || sig == SIGKILL || sig == SIGSTOP)
		return -EINVAL;
	if (sigaction(sig, NULL, &old))
		return -errno;
	/* An ignored signal is discarded at generation and would never
	 * interrupt KVM_RUN: refuse it rather than lose every kick. */
	if (old.sa_handler == SIG_IGN && !(old.sa_flags & SA_SIGINFO))
		return -EINVAL;
	if (old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO))
		return 0;
	if (!install)
		return -EINVAL;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	return sigaction(sig, &sa, NULL) ? -errno : 0;
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
	int sig, r;

	if (!vm || !ret_vcpu || !OPTS_VALID(opts, memfault_vcpu_opts))
		return -EINVAL;
	flags = OPTS_GET(opts, memfault_vcpu_opts, flags, 0);
	run = OPTS_GET(opts, memfault_vcpu_opts, run, NULL);
	run_size = OPTS_GET(opts, memfault_vcpu_opts, run_size, 0);
	sig = OPTS_GET(opts, memfault_vcpu_opts, kick_signal, 0);
	if (!sig)
		sig = SIGRTMIN;
	if (flags & ~(uint64_t)(MEMFAULT_VCPU_OWN_FD |
				MEMFAULT_VCPU_NO_SIGNAL_HANDLER))
		return -EINVAL;
	if (OPTS_GET(opts, memfault_vcpu_opts, reserved, 0))
		return -EINVAL;
	if (run && run_size < sizeof(struct kvm_run))
		return -EINVAL;
	if (vcpu_fd < 0 || fcntl(vcpu_fd, F_GETFD) < 0)
		return -EBADF;
	if (!run && vm->mmap_size < 0)
		return (int)vm->mmap_size;
	ai = memfault_arch_get(vm->arch);

	vcpu = calloc(1, sizeof(*vcpu));
	if (!vcpu)
		return -ENOMEM;
	r = prepare_kick_signal(sig,
				!(flags & MEMFAULT_VCPU_NO_SIGNAL_HANDLER));
	if (r)
		goto err_free;
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
	vcpu->run = run;
	vcpu->run_size = run_size;
	vcpu->fd = vcpu_fd;
	vcpu->own_fd = flags & MEMFAULT_VCPU_OWN_FD;
	vcpu->kick_signal = sig;
	vcpu->tgid = getpid();
	vcpu->reset_memory_fault =
		!(ai->readback_exits & (1ull << KVM_EXIT_MEMORY_FAULT));
	vcpu->vm = vm;
	__atomic_add_fetch(&vm->refs, 1, __ATOMIC_RELAXED);
	*ret_vcpu = vcpu;
	return 0;

err_free:
	free(vcpu);
	return r;
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

MEMFAULT_EXPORT int
memfault_vcpu_run(struct memfault_vcpu *vcpu)
{
	struct kvm_run *run;
	int r, err;

	if (unlikely(!vcpu))
		return -EINVAL;
	run = vcpu->run;
	publish_tid(vcpu);
	/* Only a leftover memory fault is reset, so that a later error
	 * without a fresh exit cannot be mistaken for one; any other value
	 * may be one the kernel reads back (arm64 KVM_EXIT_MMIO). */
	if (run->exit_reason == KVM_EXIT_MEMORY_FAULT &&
	    vcpu->reset_memory_fault)
		run->exit_reason = KVM_EXIT_UNKNOWN;
	vcpu->fault_valid = false;

	r = ioctl(vcpu->fd, KVM_RUN, 0);
	memfault_stat_add(&vcpu->stats.runs, 1);
	if (likely(r == 0)) {
		if (likely(run->exit_reason != KVM_EXIT_MEMORY_FAULT)) {
			memfault_stat_add(&vcpu->stats.exits, 1);
			return MEMFAULT_RUN_EXIT;
		}
		memfault_decode_fault(run, 0, &vcpu->fault);
		vcpu->fault_valid = true;
		memfault_stat_add(&vcpu->stats.memory_faults, 1);
		return MEMFAULT_RUN_MEMORY_FAULT;
	}
	err = errno;
	r = memfault_classify_error(run, err, &vcpu->fault);
	if (r == MEMFAULT_RUN_INTERRUPTED) {
		memfault_stat_add(&vcpu->stats.interrupted, 1);
		/* The kick (if it was one) is consumed. A kick that stores 1
		 * after this store makes the next KVM_RUN return at once; one
		 * that stored before is answered by this return. Both sides
		 * write the same byte, so coherence order is all we need. */
		MEMFAULT_WRITE_ONCE(run->immediate_exit, 0);
	} else if (r == MEMFAULT_RUN_MEMORY_FAULT) {
		vcpu->fault_valid = true;
		memfault_stat_add(&vcpu->stats.memory_faults, 1);
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
	/* A signal handler calling us must find errno as it was. */
	errno = saved_errno;
	return r;
}

MEMFAULT_EXPORT int
memfault_vcpu_get_fault(const struct memfault_vcpu *vcpu,
			struct memfault_fault *ret_fault, size_t size)
{
	if (!vcpu || !ret_fault || !size)
		return -EINVAL;
	if (!vcpu->fault_valid)
		return -ENODATA;
	memfault_copy_out(ret_fault, size, &vcpu->fault, sizeof(vcpu->fault));
	return 0;
}
