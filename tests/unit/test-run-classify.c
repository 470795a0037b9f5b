/* SPDX-License-Identifier: MIT */
/*
 * memfault_vcpu_run() and memfault_exit_classify() give the same answer for
 * the same KVM_RUN result: every (return value, errno, kvm_run) a kernel or
 * an interposer can produce, including the ones that are not system call
 * results, fed to both.
 *
 * The simulator comes in by LD_PRELOAD, so that this executable's ioctl()
 * sits in front of it for libmemfault.so too (as in tests/reliability/fi.c):
 * when armed, a KVM_RUN on the vCPU returns what the table row says, with or
 * without writing an exit, or after running the simulated guest for real.
 */
#include <check.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "kvmsim.h"
#include "memfault/memfault.h"
#include "test-common.h"

#ifndef EHWPOISON
#define EHWPOISON 133
#endif

/* What the next KVM_RUN on the vCPU does. */
enum kernel_write {
	WRITE_NOTHING, /* fails (or returns) before writing an exit */
	WRITE_FAULT,   /* a fresh memory-fault exit */
	WRITE_ODD_FAULT, /* a fresh one with an untrustworthy range and flags */
	WRITE_MMIO,    /* a fresh MMIO exit */
	WRITE_INTR,    /* KVM_EXIT_INTR */
	NR_WRITES,
};

static struct {
	bool armed;
	bool passthrough; /* run the simulated guest, then lie */
	int fd;
	int ret, err;
	enum kernel_write write;
} inj;

static int (*real_ioctl)(int, unsigned long, ...);
static int (*sim_reset)(const struct kvmsim_config *);
static uint64_t (*sim_default_quirks)(uint32_t, uint32_t);
static int (*sim_set_script)(int, const char *);

static struct kvm_run *vmm_run; /* the mapping the interposer writes */

static void
kernel_writes(struct kvm_run *run, enum kernel_write w)
{
	switch (w) {
	case WRITE_NOTHING:
	case NR_WRITES:
		break;
	case WRITE_FAULT:
		run->exit_reason = KVM_EXIT_MEMORY_FAULT;
		run->memory_fault.flags = KVM_MEMORY_EXIT_FLAG_PRIVATE;
		run->memory_fault.gpa = 0x20000000;
		run->memory_fault.size = 0x1000;
		break;
	case WRITE_ODD_FAULT:
		run->exit_reason = KVM_EXIT_MEMORY_FAULT;
		run->memory_fault.flags = (1ull << 5) | (1ull << 63);
		run->memory_fault.gpa = UINT64_MAX - 0x10;
		run->memory_fault.size = 0x1001;
		break;
	case WRITE_MMIO:
		run->exit_reason = KVM_EXIT_MMIO;
		run->mmio.phys_addr = 0x10000000;
		run->mmio.len = 4;
		run->mmio.is_write = 1;
		break;
	case WRITE_INTR:
		run->exit_reason = KVM_EXIT_INTR;
		break;
	}
}

int
ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;
	int r;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (!inj.armed || fd != inj.fd || req != KVM_RUN)
		return real_ioctl(fd, req, arg);
	if (inj.passthrough) {
		r = real_ioctl(fd, req, arg);
		(void)r;
	}
	kernel_writes(vmm_run, inj.write);
	errno = inj.err;
	return inj.ret;
}

static void
resolve(void)
{
	real_ioctl = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT,
							     "ioctl");
	sim_reset = (int (*)(const struct kvmsim_config *))dlsym(
		RTLD_DEFAULT, "kvmsim_reset");
	sim_default_quirks = (uint64_t(*)(uint32_t, uint32_t))dlsym(
		RTLD_DEFAULT, "kvmsim_default_quirks");
	sim_set_script = (int (*)(int, const char *))dlsym(
		RTLD_DEFAULT, "kvmsim_vcpu_set_script_text");
}

struct env {
	uint32_t arch;
	int kvm_fd, vm_fd, vcpu_fd;
	struct memfault_vm *vm;
	struct memfault_vcpu *vcpu;
	struct kvm_run *run;
};

static void
env_open(struct env *e, uint32_t arch)
{
	struct kvmsim_config cfg = { arch, KVMSIM_LEVEL_7_2, 0 };
	MEMFAULT_OPTS(memfault_vm_opts, o, .arch = arch);

	memset(e, 0, sizeof(*e));
	cfg.quirks = sim_default_quirks(arch, KVMSIM_LEVEL_7_2);
	ck_assert_int_eq(sim_reset(&cfg), 0);
	e->arch = arch;
	e->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	ck_assert_int_ge(e->kvm_fd, 0);
	e->vm_fd = real_ioctl(e->kvm_fd, KVM_CREATE_VM, 0);
	ck_assert_int_ge(e->vm_fd, 0);
	e->vcpu_fd = real_ioctl(e->vm_fd, KVM_CREATE_VCPU, 0);
	ck_assert_int_ge(e->vcpu_fd, 0);
	ck_assert_int_eq(memfault_vm_new(e->vm_fd, &o, &e->vm), 0);
	ck_assert_int_eq(memfault_vcpu_new(e->vm, e->vcpu_fd, NULL, &e->vcpu),
			 0);
	ck_assert_int_eq(memfault_vcpu_get_run(e->vcpu, &e->run), 0);
	vmm_run = e->run;
	inj.fd = e->vcpu_fd;
}

static void
env_close(struct env *e)
{
	inj.armed = false;
	memfault_vcpu_free(e->vcpu);
	memfault_vm_free(e->vm);
	close(e->vcpu_fd);
	close(e->vm_fd);
	close(e->kvm_fd);
}

/* kvm_run as the previous run left it. */
enum before {
	BEFORE_CLEAN,
	BEFORE_STALE_FAULT, /* a memory fault the VMM has handled */
	BEFORE_MMIO,	    /* arm64 reads it back on entry */
	NR_BEFORE,
};

static void
set_before(struct kvm_run *run, enum before b)
{
	memset(run, 0, sizeof(*run));
	if (b == BEFORE_STALE_FAULT)
		kernel_writes(run, WRITE_FAULT);
	else if (b == BEFORE_MMIO)
		kernel_writes(run, WRITE_MMIO);
}

static const int rets[] = { 0, -1, 1, 2, -2, 39, INT_MAX, INT_MIN };
static const int errs[] = { 0,	    EINTR, EAGAIN, EFAULT, EHWPOISON, EIO,
			    EINVAL, ENOMEM, EBADF, 4095, 4096,	-EFAULT };
#define NR(a) (sizeof(a) / sizeof((a)[0]))

struct answer {
	int r;
	struct memfault_fault f;
};

/* One KVM_RUN through memfault_vcpu_run(). */
static struct answer
through_vcpu_run(struct env *e)
{
	struct answer a;

	memset(&a, 0, sizeof(a));
	a.r = memfault_vcpu_run(e->vcpu);
	if (a.r == MEMFAULT_RUN_MEMORY_FAULT)
		ck_assert_int_eq(memfault_vcpu_get_fault(e->vcpu, &a.f,
							 sizeof(a.f)),
				 0);
	else
		ck_assert_int_eq(memfault_vcpu_get_fault(e->vcpu, &a.f,
							 sizeof(a.f)),
				 -ENODATA);
	return a;
}

/* The same KVM_RUN made by a VMM itself, as the contract says. */
static struct answer
through_classify(struct env *e)
{
	struct answer a;
	int ret, err;

	memset(&a, 0, sizeof(a));
	ck_assert_int_eq(memfault_exit_prepare(e->run, e->arch), 0);
	ret = ioctl(e->vcpu_fd, KVM_RUN, 0);
	err = errno;
	a.r = memfault_exit_classify(e->run, ret, err, &a.f, sizeof(a.f));
	return a;
}

static bool
is_result(int ret, int err)
{
	return ret == 0 || (ret == -1 && err > 0 && err <= 4095);
}

static void
compare(const char *what, const struct answer *x, const struct answer *y,
	int ret, int err, int write, int before)
{
	ck_assert_msg(x->r == y->r,
		      "%s: ret %d errno %d write %d before %d: vcpu_run %d, exit_classify %d",
		      what, ret, err, write, before, x->r, y->r);
	ck_assert_msg(!memcmp(&x->f, &y->f, sizeof(x->f)),
		      "%s: ret %d errno %d write %d before %d: faults differ",
		      what, ret, err, write, before);
	/* a real result: one of enum memfault_run_result or -errno; a result
	 * that is not one: -EPROTO, never 0 */
	if (is_result(ret, err))
		ck_assert_msg(x->r > 0 || (ret == -1 && x->r == -err),
			      "ret %d errno %d: %d", ret, err, x->r);
	else
		ck_assert_msg(x->r == -EPROTO, "ret %d errno %d: %d, not -EPROTO",
			      ret, err, x->r);
}

START_TEST(vcpu_run_and_classify_agree)
{
	static const uint32_t arches[] = { KVMSIM_X86_64, KVMSIM_ARM64 };
	struct env e;

	env_open(&e, arches[_i]);
	inj.armed = true;
	for (size_t i = 0; i < NR(rets); i++) {
		for (size_t j = 0; j < NR(errs); j++) {
			for (int w = 0; w < NR_WRITES; w++) {
				for (int b = 0; b < NR_BEFORE; b++) {
					struct answer x, y, z;

					inj.ret = rets[i];
					inj.err = errs[j];
					inj.write = (enum kernel_write)w;
					set_before(e.run, (enum before)b);
					x = through_vcpu_run(&e);
					/* the kvm_run memfault_vcpu_run() saw,
					 * given to the classifier as is */
					memset(&z, 0, sizeof(z));
					z.r = memfault_exit_classify(e.run,
								     rets[i],
								     errs[j],
								     &z.f,
								     sizeof(z.f));
					compare("same kvm_run", &x, &z, rets[i],
						errs[j], w, b);
					set_before(e.run, (enum before)b);
					y = through_classify(&e);
					compare("prepare + KVM_RUN", &x, &y,
						rets[i], errs[j], w, b);
					/* a fault the previous run left is
					 * never reported again */
					if (w == WRITE_NOTHING)
						ck_assert_msg(x.r != MEMFAULT_RUN_MEMORY_FAULT,
							      "ret %d errno %d before %d: stale fault reported",
							      rets[i], errs[j], b);
				}
			}
		}
	}
	env_close(&e);
}
END_TEST

START_TEST(real_exits_then_a_lie)
{
	/* The simulated guest really runs (an MMIO write, a load from
	 * unbacked memory: bare EFAULT), then the interposer replaces the
	 * result; with no lie, the real results must agree too. */
	static const uint32_t arches[] = { KVMSIM_X86_64, KVMSIM_ARM64 };
	static const struct {
		int ret, err;
		bool lie;
	} rows[] = {
		{ 0, 0, false },      { 1, EFAULT, true }, { -1, 0, true },
		{ -1, 5000, true },   { 2, 0, true },	   { INT_MIN, 0, true },
		{ -1, EINTR, true },  { 0, EIO, true },
	};
	static const char *const scripts[] = {
		"mmio_write:0x10000000:4:0x55",
		"load:0x40000000:4",
	};
	struct env e;

	env_open(&e, arches[_i]);
	for (size_t s = 0; s < NR(scripts); s++) {
		for (size_t i = 0; i < NR(rows); i++) {
			struct answer x, y;
			int ret, err;

			inj.armed = rows[i].lie;
			inj.passthrough = true;
			inj.ret = rows[i].ret;
			inj.err = rows[i].err;
			inj.write = WRITE_NOTHING;
			ck_assert_int_eq(sim_set_script(e.vcpu_fd, scripts[s]),
					 0);
			x = through_vcpu_run(&e);
			ck_assert_int_eq(sim_set_script(e.vcpu_fd, scripts[s]),
					 0);
			ck_assert_int_eq(memfault_exit_prepare(e.run, e.arch), 0);
			ret = ioctl(e.vcpu_fd, KVM_RUN, 0);
			err = errno;
			memset(&y, 0, sizeof(y));
			y.r = memfault_exit_classify(e.run, ret, err, &y.f,
						     sizeof(y.f));
			compare(scripts[s], &x, &y, ret, err, -1, -1);
		}
	}
	inj.passthrough = false;
	env_close(&e);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("run-classify");
	TCase *tc = tcase_create("run-classify");

	resolve();
	if (!real_ioctl || !sim_reset || !sim_default_quirks ||
	    !sim_set_script)
		return tc_skip(s, "the simulator is not preloaded "
			       "(LD_PRELOAD=libkvmsim.so)");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, vcpu_run_and_classify_agree, 0, 2);
	tcase_add_loop_test(tc, real_exits_then_a_lie, 0, 2);
	suite_add_tcase(s, tc);
	return tc_run(s);
}
