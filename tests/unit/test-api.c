/* SPDX-License-Identifier: MIT */
/*
 * Argument validation and object lifetimes: bad input gets a clear
 * negative errno, output parameters stay unwritten, nothing changes.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "sim-env.h"
#include "test-common.h"

#define SENTINEL ((void *)0x5e471e1)

static struct sim_env e;

static void
setup(void)
{
	sim_env_open(&e, KVMSIM_X86_64, KVMSIM_LEVEL_7_2);
}

static void
teardown(void)
{
	sim_env_close(&e);
}

START_TEST(vm_new_bad_arguments)
{
	struct memfault_vm *vm = SENTINEL;
	struct {
		struct memfault_vm_opts o;
		uint64_t newer_field;
	} big;
	MEMFAULT_OPTS(memfault_vm_opts, o);
	int closed, devnull, r;

	ck_assert_int_eq(memfault_vm_new(e.vm_fd, NULL, NULL), -EINVAL);

	o.sz = 0;
	ck_assert_int_eq(memfault_vm_new(e.vm_fd, &o, &vm), -EINVAL);
	o.sz = sizeof(o);
	o.flags = 1u << 20;
	ck_assert_int_eq(memfault_vm_new(e.vm_fd, &o, &vm), -EINVAL);
	o.flags = 0;
	o.reserved = 1;
	ck_assert_int_eq(memfault_vm_new(e.vm_fd, &o, &vm), -EINVAL);
	o.reserved = 0;
	o.arch = 7;
	ck_assert_int_eq(memfault_vm_new(e.vm_fd, &o, &vm), -EINVAL);
	o.arch = 0;
	o.probe_gpa = 0x1001;
	ck_assert_int_eq(memfault_vm_new(e.vm_fd, &o, &vm), -EINVAL);
	o.probe_gpa = 0;
	/* a newer caller's longer struct: its unknown field must be zero */
	memset(&big, 0, sizeof(big));
	big.o.sz = sizeof(big);
	big.newer_field = 1;
	ck_assert_int_eq(memfault_vm_new(e.vm_fd, &big.o, &vm), -EINVAL);

	ck_assert_int_eq(memfault_vm_new(-1, NULL, &vm), -EBADF);
	closed = dup(0);
	close(closed);
	ck_assert_int_eq(memfault_vm_new(closed, NULL, &vm), -EBADF);
	devnull = open("/dev/null", O_RDWR);
	/* not a KVM fd: the ioctl's own error (qemu-user answers ioctls it
	 * does not know with ENOSYS, a kernel with ENOTTY) */
	r = memfault_vm_new(devnull, NULL, &vm);
	ck_assert_msg(r == -ENOTTY || r == -ENOSYS, "got %d", r);
	close(devnull);
	/* /dev/kvm itself is not a VM */
	ck_assert_int_eq(memfault_vm_new(e.kvm_fd, NULL, &vm), -EINVAL);
	ck_assert_ptr_eq(vm, SENTINEL);

	big.newer_field = 0;
	ck_assert_int_eq(memfault_vm_new(e.vm_fd, &big.o, &vm), 0);
	ck_assert_ptr_ne(vm, SENTINEL);
	memfault_vm_free(vm);
}
END_TEST

START_TEST(vm_short_opts_use_defaults)
{
	struct memfault_vm *vm = NULL;
	struct memfault_features f;
	MEMFAULT_OPTS(memfault_vm_opts, o, .arch = 99);

	/* a caller that knows only sz and flags: arch 99 is never read */
	o.sz = offsetof(struct memfault_vm_opts, probe_gpa);
	ck_assert_int_eq(memfault_vm_new(e.vm_fd, &o, &vm), 0);
	ck_assert_int_eq(memfault_vm_get_features(vm, &f, sizeof(f)), 0);
	ck_assert_uint_ne(f.arch, 99);
	memfault_vm_free(vm);
}
END_TEST

START_TEST(vm_getters)
{
	struct memfault_features f;

	ck_assert_int_eq(memfault_vm_get_fd(NULL), -EINVAL);
	ck_assert_int_eq(memfault_vm_get_fd(e.vm), e.vm_fd);
	ck_assert_int_eq(memfault_vm_get_features(NULL, &f, sizeof(f)), -EINVAL);
	ck_assert_int_eq(memfault_vm_get_features(e.vm, NULL, sizeof(f)),
			 -EINVAL);
	ck_assert_int_eq(memfault_vm_get_features(e.vm, &f, 0), -EINVAL);
	memfault_vm_free(NULL);
	memfault_vcpu_free(NULL);
}
END_TEST

START_TEST(vm_owns_fd_only_when_asked)
{
	MEMFAULT_OPTS(memfault_vm_opts, o, .flags = MEMFAULT_VM_OWN_FD);
	struct memfault_vm *vm;
	int fd = ioctl(e.kvm_fd, KVM_CREATE_VM, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(memfault_vm_new(fd, NULL, &vm), 0);
	memfault_vm_free(vm);
	ck_assert_int_ge(fcntl(fd, F_GETFD), 0);
	ck_assert_int_eq(memfault_vm_new(fd, &o, &vm), 0);
	memfault_vm_free(vm);
	ck_assert_int_eq(fcntl(fd, F_GETFD), -1);
	ck_assert_int_eq(errno, EBADF);
}
END_TEST

START_TEST(userfault_probe_leaves_no_memslot)
{
	struct kvm_userspace_memory_region2 r;
	struct memfault_features f;
	MEMFAULT_OPTS(memfault_vm_opts, o,
		      .flags = MEMFAULT_VM_NO_USERFAULT_PROBE);
	struct memfault_vm *vm;
	void *p = mmap(NULL, e.page, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int nr = ioctl(e.vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS);

	/* the default scratch slot and gpa are free again after the probe */
	memset(&r, 0, sizeof(r));
	r.slot = (uint32_t)nr - 1;
	r.guest_phys_addr = (64ull << 30) - (2ull << 20);
	r.memory_size = e.page;
	r.userspace_addr = (uintptr_t)p;
	ck_assert_int_eq(ioctl(e.vm_fd, KVM_SET_USER_MEMORY_REGION2, &r), 0);
	/* ... and the probe, made in a VM of its own, neither sees nor
	 * touches the caller's memslots (7.2 without KVM Userfault) */
	o.flags = 0;
	ck_assert_int_eq(memfault_vm_new(e.vm_fd, &o, &vm), 0);
	ck_assert_int_eq(memfault_vm_get_features(vm, &f, sizeof(f)), 0);
	ck_assert_int_eq(f.userfault_probe_error, 0);
	ck_assert(!(f.flags & MEMFAULT_FEATURE_KVM_USERFAULT));
	memfault_vm_free(vm);
	ck_assert_int_eq(ioctl(e.vm_fd, KVM_SET_USER_MEMORY_REGION2, &r), 0);
	o.flags = MEMFAULT_VM_NO_USERFAULT_PROBE;
	ck_assert_int_eq(memfault_vm_new(e.vm_fd, &o, &vm), 0);
	ck_assert_int_eq(memfault_vm_get_features(vm, &f, sizeof(f)), 0);
	ck_assert_int_eq(f.userfault_probe_error, -ECANCELED);
	memfault_vm_free(vm);
	munmap(p, e.page);
}
END_TEST

START_TEST(vcpu_new_bad_arguments)
{
	struct memfault_vcpu *v = SENTINEL;
	MEMFAULT_OPTS(memfault_vcpu_opts, o);
	int closed;

	ck_assert_int_eq(memfault_vcpu_new(NULL, e.vcpu_fd, NULL, &v), -EINVAL);
	ck_assert_int_eq(memfault_vcpu_new(e.vm, e.vcpu_fd, NULL, NULL),
			 -EINVAL);
	o.sz = 1;
	ck_assert_int_eq(memfault_vcpu_new(e.vm, e.vcpu_fd, &o, &v), -EINVAL);
	o.sz = sizeof(o);
	o.flags = 1u << 30;
	ck_assert_int_eq(memfault_vcpu_new(e.vm, e.vcpu_fd, &o, &v), -EINVAL);
	o.flags = 0;
	o.reserved = 2;
	ck_assert_int_eq(memfault_vcpu_new(e.vm, e.vcpu_fd, &o, &v), -EINVAL);
	o.reserved = 0;
	o.run = (struct kvm_run *)e.run;
	o.run_size = sizeof(struct kvm_run) - 1;
	ck_assert_int_eq(memfault_vcpu_new(e.vm, e.vcpu_fd, &o, &v), -EINVAL);
	o.run = NULL;
	o.kick_signal = SIGKILL;
	ck_assert_int_eq(memfault_vcpu_new(e.vm, e.vcpu_fd, &o, &v), -EINVAL);
	o.kick_signal = -3;
	ck_assert_int_eq(memfault_vcpu_new(e.vm, e.vcpu_fd, &o, &v), -EINVAL);
	o.kick_signal = 1000;
	ck_assert_int_eq(memfault_vcpu_new(e.vm, e.vcpu_fd, &o, &v), -EINVAL);
	/* an ignored signal would never interrupt KVM_RUN */
	signal(SIGUSR1, SIG_IGN);
	o.kick_signal = SIGUSR1;
	ck_assert_int_eq(memfault_vcpu_new(e.vm, e.vcpu_fd, &o, &v), -EINVAL);
	ck_assert_ptr_eq(signal(SIGUSR1, SIG_DFL), SIG_IGN);
	o.kick_signal = 0;
	ck_assert_int_eq(memfault_vcpu_new(e.vm, -1, &o, &v), -EBADF);
	closed = dup(0);
	close(closed);
	ck_assert_int_eq(memfault_vcpu_new(e.vm, closed, &o, &v), -EBADF);
	ck_assert_ptr_eq(v, SENTINEL);
}
END_TEST

/* The current disposition of @sig. */
static struct sigaction
disposition(int sig)
{
	struct sigaction sa;

	ck_assert_int_eq(sigaction(sig, NULL, &sa), 0);
	return sa;
}

START_TEST(vcpu_new_refuses_fault_signals)
{
	/* A kick handler on a fault signal hides the fault: the faulting
	 * instruction runs again forever. Refused, disposition untouched. */
	static const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE,
				    SIGTRAP, SIGSYS, SIGABRT };
	MEMFAULT_OPTS(memfault_vcpu_opts, o);
	struct memfault_vcpu *v = SENTINEL;

	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		/* not necessarily SIG_DFL: a sanitizer's runtime handles
		 * SIGSEGV and SIGBUS itself */
		struct sigaction before = disposition(sigs[i]);

		o.kick_signal = sigs[i];
		o.flags = 0;
		ck_assert_msg(memfault_vcpu_new(e.vm, e.vcpu_fd, &o, &v) ==
				      -EINVAL,
			      "signal %d accepted", sigs[i]);
		ck_assert_msg(disposition(sigs[i]).sa_handler ==
				      before.sa_handler,
			      "signal %d: disposition changed", sigs[i]);
		/* nor with the VMM's own handler */
		o.flags = MEMFAULT_VCPU_NO_SIGNAL_HANDLER;
		signal(sigs[i], (void (*)(int))SENTINEL);
		ck_assert_int_eq(memfault_vcpu_new(e.vm, e.vcpu_fd, &o, &v),
				 -EINVAL);
		ck_assert_ptr_eq(disposition(sigs[i]).sa_handler, SENTINEL);
		ck_assert_int_eq(sigaction(sigs[i], &before, NULL), 0);
	}
	ck_assert_ptr_eq(v, SENTINEL);
	/* a VMM that really wants SIGUSR2 gets it */
	o.flags = 0;
	o.kick_signal = SIGUSR2;
	ck_assert_int_eq(memfault_vcpu_new(e.vm, e.vcpu_fd, &o, &v), 0);
	memfault_vcpu_free(v);
}
END_TEST

START_TEST(vcpu_new_failure_leaves_signals_alone)
{
	MEMFAULT_OPTS(memfault_vcpu_opts, o, .kick_signal = SIGUSR2);
	struct memfault_vcpu *v = SENTINEL;
	char path[64];
	int ro, sv[2];

	/* The same vCPU (a memfd in the simulator) opened read-only: the
	 * kvm_run mapping (MAP_SHARED, PROT_WRITE) is refused with EACCES,
	 * after the kick signal was checked. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", e.vcpu_fd);
	ro = open(path, O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(ro, 0);
	ck_assert(disposition(SIGUSR2).sa_handler == SIG_DFL);
	ck_assert_int_eq(memfault_vcpu_new(e.vm, ro, &o, &v), -EACCES);
	ck_assert_msg(disposition(SIGUSR2).sa_handler == SIG_DFL,
		      "a failed memfault_vcpu_new() left a handler installed");
	close(ro);
	/* a read-write fd that cannot be mapped at all (mmap: ENODEV) */
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ck_assert_int_eq(memfault_vcpu_new(e.vm, sv[0], &o, &v), -ENODEV);
	ck_assert(disposition(SIGUSR2).sa_handler == SIG_DFL);
	close(sv[0]);
	close(sv[1]);
	ck_assert_ptr_eq(v, SENTINEL);
}
END_TEST

START_TEST(vcpu_kick_handler_outlives_the_vcpu)
{
	MEMFAULT_OPTS(memfault_vcpu_opts, o, .kick_signal = SIGUSR2);
	struct memfault_vcpu *v1, *v2;
	struct sigaction installed;

	ck_assert_int_eq(memfault_vcpu_new(e.vm, e.vcpu_fd, &o, &v1), 0);
	installed = disposition(SIGUSR2);
	ck_assert(installed.sa_handler != SIG_DFL &&
		  installed.sa_handler != SIG_IGN);
	ck_assert_int_eq(memfault_vcpu_new(e.vm, e.vcpu_fd, &o, &v2), 0);
	/* v2 relies on the handler v1's creation installed: freeing v1
	 * must not take it away (SIG_DFL of SIGUSR2 ends the process) */
	memfault_vcpu_free(v1);
	ck_assert_ptr_eq(disposition(SIGUSR2).sa_handler, installed.sa_handler);
	ck_assert_int_eq(memfault_vcpu_kick(v2), 0);
	memfault_vcpu_free(v2);
	ck_assert_ptr_eq(disposition(SIGUSR2).sa_handler, installed.sa_handler);
}
END_TEST

START_TEST(vcpu_getters_and_run_on_null)
{
	struct memfault_fault f;
	struct kvm_run *run = SENTINEL;

	ck_assert_int_eq(memfault_vcpu_get_fd(NULL), -EINVAL);
	ck_assert_int_eq(memfault_vcpu_get_fd(e.vcpu), e.vcpu_fd);
	ck_assert_int_eq(memfault_vcpu_get_run(NULL, &run), -EINVAL);
	ck_assert_int_eq(memfault_vcpu_get_run(e.vcpu, NULL), -EINVAL);
	ck_assert_ptr_eq(run, SENTINEL);
	ck_assert_int_eq(memfault_vcpu_run(NULL), -EINVAL);
	ck_assert_int_eq(memfault_vcpu_kick(NULL), -EINVAL);
	ck_assert_int_eq(memfault_vcpu_get_fault(NULL, &f, sizeof(f)), -EINVAL);
	ck_assert_int_eq(memfault_vcpu_get_fault(e.vcpu, NULL, sizeof(f)),
			 -EINVAL);
	ck_assert_int_eq(memfault_vcpu_get_fault(e.vcpu, &f, 0), -EINVAL);
	/* nothing ran yet */
	ck_assert_int_eq(memfault_vcpu_get_fault(e.vcpu, &f, sizeof(f)),
			 -ENODATA);
}
END_TEST

START_TEST(vcpu_adopts_the_vmms_mapping)
{
	int sz = ioctl(e.kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	struct kvm_run *mine, *got;
	MEMFAULT_OPTS(memfault_vcpu_opts, o);
	struct memfault_vcpu *v;

	ck_assert_int_gt(sz, 0);
	mine = mmap(NULL, (size_t)sz, PROT_READ | PROT_WRITE, MAP_SHARED,
		    e.vcpu_fd, 0);
	ck_assert_ptr_ne(mine, MAP_FAILED);
	o.run = mine;
	o.run_size = (uint64_t)sz;
	ck_assert_int_eq(memfault_vcpu_new(e.vm, e.vcpu_fd, &o, &v), 0);
	ck_assert_int_eq(memfault_vcpu_get_run(v, &got), 0);
	ck_assert_ptr_eq(got, mine);
	sim_env_script(&e, "mmio_write:0x10000000:2:0x55aa");
	ck_assert_int_eq(memfault_vcpu_run(v), MEMFAULT_RUN_EXIT);
	ck_assert_uint_eq(mine->exit_reason, KVM_EXIT_MMIO);
	memfault_vcpu_free(v);
	/* still mapped: the library never unmaps what it did not map */
	ck_assert_uint_eq(mine->exit_reason, KVM_EXIT_MMIO);
	munmap(mine, (size_t)sz);
}
END_TEST

START_TEST(vcpu_keeps_vm_alive_and_owns_fd)
{
	MEMFAULT_OPTS(memfault_vcpu_opts, o, .flags = MEMFAULT_VCPU_OWN_FD);
	struct memfault_vm *vm;
	struct memfault_vcpu *v;
	int fd = ioctl(e.vm_fd, KVM_CREATE_VCPU, 1);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(memfault_vm_new(e.vm_fd, NULL, &vm), 0);
	ck_assert_int_eq(memfault_vcpu_new(vm, fd, &o, &v), 0);
	/* the VMM drops its VM reference first: the vCPU still works */
	memfault_vm_free(vm);
	ck_assert_int_eq(kvmsim_vcpu_set_script_text(fd, "mmio_read:0x1000:1"),
			 0);
	ck_assert_int_eq(memfault_vcpu_run(v), MEMFAULT_RUN_EXIT);
	memfault_vcpu_free(v);
	ck_assert_int_eq(fcntl(fd, F_GETFD), -1);
	ck_assert_int_ge(fcntl(e.vm_fd, F_GETFD), 0);
}
END_TEST

START_TEST(vcpu_without_dev_kvm_needs_a_mapping)
{
	MEMFAULT_OPTS(memfault_vm_opts, o, .kvm_fd = 100000);
	struct memfault_vm *vm;
	struct memfault_vcpu *v = SENTINEL;

	/* a bad /dev/kvm fd: the VM works, a vCPU needs the VMM's mapping */
	ck_assert_int_eq(memfault_vm_new(e.vm_fd, &o, &vm), 0);
	ck_assert_int_eq(memfault_vcpu_new(vm, e.vcpu_fd, NULL, &v), -EBADF);
	ck_assert_ptr_eq(v, SENTINEL);
	memfault_vm_free(vm);
	/* an open fd that is not /dev/kvm: KVM_GET_VCPU_MMAP_SIZE fails with
	 * ENOTTY, which memfault_vcpu_new() does not document: -ENODEV */
	o.kvm_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	ck_assert_int_ge(o.kvm_fd, 0);
	ck_assert_int_eq(memfault_vm_new(e.vm_fd, &o, &vm), 0);
	ck_assert_int_eq(memfault_vcpu_new(vm, e.vcpu_fd, NULL, &v), -ENODEV);
	ck_assert_ptr_eq(v, SENTINEL);
	memfault_vm_free(vm);
	close(o.kvm_fd);
}
END_TEST

START_TEST(run_on_a_closed_vcpu_fd)
{
	MEMFAULT_OPTS(memfault_vcpu_opts, o);
	struct memfault_vcpu *v;
	int fd = ioctl(e.vm_fd, KVM_CREATE_VCPU, 2);

	ck_assert_int_eq(memfault_vcpu_new(e.vm, fd, &o, &v), 0);
	close(fd);
	ck_assert_int_eq(memfault_vcpu_run(v), -EBADF);
	memfault_vcpu_free(v);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("api");
	TCase *tc = tcase_create("api");

	tcase_add_checked_fixture(tc, setup, teardown);
	ADD_TEST(tc, vm_new_bad_arguments);
	ADD_TEST(tc, vm_short_opts_use_defaults);
	ADD_TEST(tc, vm_getters);
	ADD_TEST(tc, vm_owns_fd_only_when_asked);
	ADD_TEST(tc, userfault_probe_leaves_no_memslot);
	ADD_TEST(tc, vcpu_new_bad_arguments);
	ADD_TEST(tc, vcpu_new_refuses_fault_signals);
	ADD_TEST(tc, vcpu_new_failure_leaves_signals_alone);
	ADD_TEST(tc, vcpu_kick_handler_outlives_the_vcpu);
	ADD_TEST(tc, vcpu_getters_and_run_on_null);
	ADD_TEST(tc, vcpu_adopts_the_vmms_mapping);
	ADD_TEST(tc, vcpu_keeps_vm_alive_and_owns_fd);
	ADD_TEST(tc, vcpu_without_dev_kvm_needs_a_mapping);
	ADD_TEST(tc, run_on_a_closed_vcpu_fd);
	suite_add_tcase(s, tc);
	return tc_run(s);
}
