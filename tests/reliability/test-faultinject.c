/* SPDX-License-Identifier: MIT */
/*
 * Fault injection over the public API (fi.h): for each public function and
 * each errno of a list, fail the 1st, 2nd, ... N-th failable call it makes
 * (allocation, mmap, ioctl, other system call) until a run makes fewer
 * than N calls, and check after every run:
 *   - the result is a success or a clear negative errno (-1..-4095), never
 *     a crash;
 *   - an output is written only on success;
 *   - nothing leaks: the heap blocks and mappings the library holds and the
 *     process's open fds are back to what they were once the object made
 *     (if any) is destroyed;
 *   - the object is still usable: the same call without injection succeeds
 *     (and what it should have done is done), or the object can be
 *     destroyed cleanly.
 * Functions that make no failable call (getters, classify, ...) must make
 * none: they are run once to prove it.
 *
 * Runs with LD_PRELOAD of libkvmsim.so (see meson.build).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvm.h>
#include <linux/userfaultfd.h>

#include "fi.h"
#include "kvm-userfault-proposed.h"
#include "kvmsim.h"
#include "memfault/memfault.h"
#include "test-common.h"

#define RAM_GPA 0x20000000ull
#define GMEM_GPA 0x30000000ull
#define PAGES 8
#define SENTINEL ((void *)0x5a5a5a5a5a5a5a5aull)
#define DEFAULT_PROBE_GPA ((64ull << 30) - (2ull << 20))

static const int errnos[] = { EIO, ENOMEM, EINTR, EAGAIN, EFAULT, EBADF };
#define NR_ERRNOS ((int)(sizeof(errnos) / sizeof(errnos[0])))

/* Runs and injections made, for the summary line of each case. */
static unsigned total_runs, total_failed;

struct env {
	uint32_t arch, level;
	unsigned long vm_type;
	int kvm_fd, vm_fd, vcpu_fd, gmem_fd;
	uint64_t page;
	void *ram, *ram2;
	struct memfault_vm *vm;
	struct memfault_vcpu *vcpu;
	struct memfault_region *region;
	struct memfault_uffd *uffd;
	/* what the operation made, destroyed by the case's undo() */
	void *made;
	int page_ins;
};

static const struct fi_kvmsim *sim;

static void
env_open(struct env *e, uint32_t arch, uint32_t level, unsigned long vm_type)
{
	struct kvmsim_config cfg = { arch, level, 0 };

	memset(e, 0, sizeof(*e));
	e->arch = arch;
	e->level = level;
	e->vm_type = vm_type;
	e->gmem_fd = -1;
	e->page = (uint64_t)sysconf(_SC_PAGESIZE);
	cfg.quirks = sim->default_quirks(arch, level);
	if (vm_type)
		cfg.quirks |= KVMSIM_Q_SW_PROTECTED_VM;
	ck_assert_int_eq(sim->reset(&cfg), 0);
	tc_kvm_open(&e->kvm_fd, &e->vm_fd, &e->vcpu_fd, vm_type);
	e->ram = mmap(NULL, PAGES * e->page, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(e->ram, MAP_FAILED);
	e->ram2 = mmap(NULL, PAGES * e->page, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(e->ram2, MAP_FAILED);
}

static void
env_vm(struct env *e)
{
	MEMFAULT_OPTS(memfault_vm_opts, o, .arch = e->arch);

	ck_assert_int_eq(memfault_vm_new(e->vm_fd, &o, &e->vm), 0);
}

static void
env_vcpu(struct env *e)
{
	env_vm(e);
	ck_assert_int_eq(memfault_vcpu_new(e->vm, e->vcpu_fd, NULL, &e->vcpu),
			 0);
}

static void
env_close(struct env *e)
{
	memfault_uffd_free(e->uffd);
	memfault_region_free(e->region);
	memfault_vcpu_free(e->vcpu);
	memfault_vm_free(e->vm);
	if (e->gmem_fd >= 0)
		close(e->gmem_fd);
	munmap(e->ram, PAGES * e->page);
	munmap(e->ram2, PAGES * e->page);
	close(e->vcpu_fd);
	close(e->vm_fd);
	close(e->kvm_fd);
}

static void
res_eq(const struct fi_res *a, const struct fi_res *b, const char *what,
       unsigned n, int err)
{
	ck_assert_msg(a->allocs == b->allocs && a->maps == b->maps &&
			      a->fds == b->fds,
		      "%s (fail call %u, %s, %s): leak: heap %ld -> %ld, maps "
		      "%ld -> %ld, fds %ld -> %ld",
		      what, n, fi_failed_call() ? fi_failed_call() : "-",
		      strerror(err), a->allocs, b->allocs, a->maps, b->maps,
		      a->fds, b->fds);
}

/*
 * One public function under injection.
 *   setup:  builds what the call needs (not counted)
 *   op:     the call; returns its result (outputs checked inside)
 *   undo:   after success, destroys what it made (may be NULL)
 *   usable: after a failure, proves the object usable (may be NULL)
 *   check:  after success, what the call should have done (may be NULL)
 *   teardown: env_close() if NULL
 */
struct fi_case {
	const char *name;
	unsigned classes;
	void (*setup)(struct env *);
	int (*op)(struct env *);
	void (*undo)(struct env *);
	void (*usable)(struct env *);
	void (*check)(struct env *, int r);
	bool is_void; /* returns nothing: any outcome but a crash is fine */
	/*
	 * Heap blocks a parent object may keep after the call, failed or
	 * undone (a vector of regions or vCPUs grown and not shrunk); they
	 * go with the parent, which the final check covers.
	 */
	long grows;
};

static const char *cur_failed;
/* set by an op that re-arms the injection itself: its count of calls */
static int op_calls = -1;
static unsigned cur_n;
static int cur_err;

static void
run_case(const struct fi_case *c)
{
	unsigned max_n = 0, fails = 0;
	/* debugging aid: FI_FIRST_N=5 starts at the 5th call */
	const char *first = getenv("FI_FIRST_N");
	unsigned first_n = first ? (unsigned)atoi(first) : 1;

	for (int k = 0; k < NR_ERRNOS; k++) {
		for (unsigned n = first_n; ; n++) {
			struct fi_res before, after, base;
			struct env e;
			unsigned calls;
			int r;

			ck_assert_msg(n < 400, "%s: no end of calls", c->name);
			fi_resources(&base);
			c->setup(&e);
			fi_resources(&before);
			fi_arm(n, errnos[k], c->classes);
			cur_failed = NULL;
			cur_n = n;
			cur_err = errnos[k];
			r = c->op(&e);
			calls = fi_disarm();
			if (op_calls >= 0) {
				calls = (unsigned)op_calls;
				op_calls = -1;
			}
			total_runs++;
			if (calls >= n)
				fails++;
			ck_assert_msg(c->is_void || r >= 0 || r >= -4095,
				      "%s: fail call %u (%s) with %s: result %d",
				      c->name, n, fi_failed_call(),
				      strerror(errnos[k]), r);
			cur_failed = fi_failed_call();
			cur_n = n;
			cur_err = errnos[k];
			if (r < 0) {
				/* a failed call changed nothing it holds */
				fi_resources(&after);
				if (after.allocs > before.allocs &&
				    after.allocs - before.allocs <= c->grows)
					after.allocs = before.allocs;
				res_eq(&before, &after, c->name, n, errnos[k]);
				if (c->usable)
					c->usable(&e);
			} else {
				if (c->check)
					c->check(&e, r);
				if (c->is_void)
					goto close;
				if (c->undo)
					c->undo(&e);
				else
					goto close; /* it holds what it made */
				fi_resources(&after);
				if (after.allocs > before.allocs &&
				    after.allocs - before.allocs <= c->grows)
					after.allocs = before.allocs;
				res_eq(&before, &after, c->name, n, errnos[k]);
			}
close:
			env_close(&e);
			fi_resources(&after);
			res_eq(&base, &after, c->name, n, errnos[k]);
			if (calls < n) {
				if (n - 1 > max_n)
					max_n = n - 1;
				break;
			}
		}
	}
	total_failed += fails;
	printf("%-28s %3u failable calls, %4u injected failures\n", c->name,
	       max_n, fails);
}

/* ---- VM ---- */

static void
setup_x86_uf(struct env *e)
{
	env_open(e, KVMSIM_X86_64, KVMSIM_LEVEL_7_2_UF, 0);
}

static void
setup_arm_68(struct env *e)
{
	env_open(e, KVMSIM_ARM64, KVMSIM_LEVEL_6_8, 0);
}

static void
setup_x86_61(struct env *e)
{
	env_open(e, KVMSIM_X86_64, KVMSIM_LEVEL_6_1, 0);
}

/* No memslot was left behind by the probe: the range is free. */
static void
probe_left_nothing(struct env *e)
{
	struct kvm_userspace_memory_region m = {
		.slot = 7, .guest_phys_addr = DEFAULT_PROBE_GPA,
		.memory_size = e->page, .userspace_addr = (uintptr_t)e->ram,
	};

	ck_assert_msg(ioctl(e->vm_fd, KVM_SET_USER_MEMORY_REGION, &m) == 0,
		      "vm-probe-delete: after %s failed with %s (call %u): "
		      "a memslot overlaps the probe range: %s",
		      cur_failed ? cur_failed : "nothing", strerror(cur_err),
		      cur_n, strerror(errno));
	m.memory_size = 0;
	ck_assert_int_eq(ioctl(e->vm_fd, KVM_SET_USER_MEMORY_REGION, &m), 0);
}

static int
op_vm_new(struct env *e)
{
	MEMFAULT_OPTS(memfault_vm_opts, o, .arch = e->arch);
	struct memfault_vm *vm = SENTINEL;
	int r = memfault_vm_new(e->vm_fd, &o, &vm);

	if (r)
		ck_assert_ptr_eq(vm, SENTINEL);
	else
		e->vm = vm;
	return r;
}

static int
op_vm_new_opts(struct env *e)
{
	MEMFAULT_OPTS(memfault_vm_opts, o, .arch = e->arch,
		      .kvm_fd = e->kvm_fd,
		      .flags = MEMFAULT_VM_NO_USERFAULT_PROBE);
	struct memfault_vm *vm = SENTINEL;
	int r = memfault_vm_new(e->vm_fd, &o, &vm);

	if (r)
		ck_assert_ptr_eq(vm, SENTINEL);
	else
		e->vm = vm;
	return r;
}

static void
undo_vm(struct env *e)
{
	memfault_vm_free(e->vm);
	e->vm = NULL;
}

static void
usable_vm_new(struct env *e)
{
	ck_assert_int_eq(op_vm_new(e), 0);
	probe_left_nothing(e);
}

static void
check_vm_new(struct env *e, int r)
{
	struct memfault_features f;

	(void)r;
	ck_assert_int_eq(memfault_vm_get_features(e->vm, &f, sizeof(f)), 0);
	ck_assert_uint_ne(f.arch, 0);
	probe_left_nothing(e);
}

static int
op_vm_free(struct env *e)
{
	memfault_vm_free(e->vm);
	e->vm = NULL;
	return 0;
}

static void
setup_vm(struct env *e)
{
	setup_x86_uf(e);
	env_vm(e);
}

/* ---- vCPU ---- */

static void
setup_vcpu_parent(struct env *e)
{
	setup_x86_uf(e);
	env_vm(e);
}

static int
op_vcpu_new(struct env *e)
{
	struct memfault_vcpu *v = SENTINEL;
	int r = memfault_vcpu_new(e->vm, e->vcpu_fd, NULL, &v);

	if (r)
		ck_assert_ptr_eq(v, SENTINEL);
	else
		e->vcpu = v;
	return r;
}

static void
undo_vcpu(struct env *e)
{
	memfault_vcpu_free(e->vcpu);
	e->vcpu = NULL;
}

static void
usable_vcpu_new(struct env *e)
{
	ck_assert_int_eq(op_vcpu_new(e), 0);
}

static void
setup_vcpu(struct env *e)
{
	setup_x86_uf(e);
	env_vcpu(e);
}

static int
op_vcpu_free(struct env *e)
{
	memfault_vcpu_free(e->vcpu);
	e->vcpu = NULL;
	return 0;
}

static void
setup_vcpu_mmio(struct env *e)
{
	setup_vcpu(e);
	ck_assert_int_eq(sim->vcpu_set_script_text(e->vcpu_fd,
			"mmio_write:0x10000000:4:0x1234;hlt"), 0);
}

static int
op_vcpu_run(struct env *e)
{
	return memfault_vcpu_run(e->vcpu);
}

static void
usable_run(struct env *e)
{
	struct kvm_run *run;

	ck_assert_int_eq(memfault_vcpu_run(e->vcpu), MEMFAULT_RUN_EXIT);
	ck_assert_int_eq(memfault_vcpu_get_run(e->vcpu, &run), 0);
	ck_assert_uint_eq(run->exit_reason, KVM_EXIT_MMIO);
}

static int
op_vcpu_kick(struct env *e)
{
	return memfault_vcpu_kick(e->vcpu);
}

static void
setup_vcpu_ran(struct env *e)
{
	setup_vcpu_mmio(e);
	/* so that the kick has a thread to signal */
	ck_assert_int_eq(memfault_vcpu_run(e->vcpu), MEMFAULT_RUN_EXIT);
}

static void
usable_kick(struct env *e)
{
	ck_assert_int_eq(memfault_vcpu_kick(e->vcpu), 0);
	ck_assert_int_eq(memfault_vcpu_run(e->vcpu), MEMFAULT_RUN_INTERRUPTED);
}

/* ---- regions ---- */

static int
region_new(struct env *e, uint64_t flags, void *hva, uint64_t gpa)
{
	MEMFAULT_OPTS(memfault_region_opts, o, .flags = flags,
		      .guest_memfd = e->gmem_fd);
	struct memfault_region *r = SENTINEL;
	int ret = memfault_region_new(e->vm, 1, gpa, PAGES * e->page, hva, &o,
				      &r);

	if (ret)
		ck_assert_ptr_eq(r, SENTINEL);
	else
		e->region = r;
	return ret;
}

static int
op_region_plain(struct env *e)
{
	return region_new(e, 0, e->ram, RAM_GPA);
}

static int
op_region_uf(struct env *e)
{
	return region_new(e, MEMFAULT_REGION_USERFAULT | MEMFAULT_REGION_MISSING,
			  e->ram, RAM_GPA);
}

static int
op_region_nomemslot(struct env *e)
{
	return region_new(e, MEMFAULT_REGION_NO_MEMSLOT | MEMFAULT_REGION_MISSING,
			  NULL, 1ull << 40);
}

static int
op_region_gmem(struct env *e)
{
	return region_new(e, MEMFAULT_REGION_GUEST_MEMFD, NULL, GMEM_GPA);
}

static void
setup_gmem(struct env *e)
{
	struct kvm_create_guest_memfd g = { .size = PAGES * 4096 };

	env_open(e, KVMSIM_X86_64, KVMSIM_LEVEL_7_2, 0);
	g.size = PAGES * e->page;
	e->gmem_fd = ioctl(e->vm_fd, KVM_CREATE_GUEST_MEMFD, &g);
	ck_assert_int_ge(e->gmem_fd, 0);
	env_vm(e);
}

static void
undo_region(struct env *e)
{
	memfault_region_free(e->region);
	e->region = NULL;
}

/* The memslot did not stay behind: the same one can be made again. */
static void
usable_region_plain(struct env *e)
{
	ck_assert_int_eq(op_region_plain(e), 0);
}

static void
usable_region_uf(struct env *e)
{
	ck_assert_int_eq(op_region_uf(e), 0);
}

static void
usable_region_nomemslot(struct env *e)
{
	ck_assert_int_eq(op_region_nomemslot(e), 0);
}

static void
usable_region_gmem(struct env *e)
{
	ck_assert_int_eq(op_region_gmem(e), 0);
}

static void
setup_region_uf(struct env *e)
{
	setup_x86_uf(e);
	env_vcpu(e);
	ck_assert_int_eq(region_new(e, MEMFAULT_REGION_USERFAULT, e->ram,
				    RAM_GPA), 0);
	ck_assert_int_eq(memfault_region_mark_missing(e->region, 5, 1), 0);
}

static int
op_mark_missing(struct env *e)
{
	return memfault_region_mark_missing(e->region, 1, 2);
}

/*
 * The bits take effect: a guest load of page 1 exits with a userfault.
 * If a failed re-toggle had left the memslot without KVM_MEM_USERFAULT,
 * the load would complete silently instead.
 */
static void
userfault_fires_at(struct env *e, uint64_t pg)
{
	char script[96];
	struct memfault_fault f;
	int r;

	snprintf(script, sizeof(script), "load:%#llx:8;hlt",
		 (unsigned long long)(RAM_GPA + pg * e->page));
	ck_assert_int_eq(sim->vcpu_set_script_text(e->vcpu_fd, script), 0);
	ck_assert_int_eq(memfault_region_is_missing(e->region, pg), 1);
	r = memfault_vcpu_run(e->vcpu);
	ck_assert_msg(r == MEMFAULT_RUN_MEMORY_FAULT,
		      "mark-missing-toggle: after %s failed with %s (call "
		      "%u): page %llu is missing but the guest read it "
		      "(run: %d)",
		      cur_failed ? cur_failed : "nothing", strerror(cur_err),
		      cur_n, (unsigned long long)pg, r);
	ck_assert_int_eq(memfault_vcpu_get_fault(e->vcpu, &f, sizeof(f)), 0);
	ck_assert(f.flags & MEMFAULT_FAULT_USERFAULT);
}

static void
usable_mark_missing(struct env *e)
{
	/* page 5 was missing before the failed call: it must still trap */
	userfault_fires_at(e, 5);
	/* a retry makes the new bits take effect */
	ck_assert_int_eq(memfault_region_mark_missing(e->region, 1, 2), 0);
	userfault_fires_at(e, 1);
}

static void
check_mark_missing(struct env *e, int r)
{
	(void)r;
	userfault_fires_at(e, 1);
	userfault_fires_at(e, 5);
}

static int
op_region_free(struct env *e)
{
	memfault_region_free(e->region);
	e->region = NULL;
	return 0;
}

static void
setup_region_plain(struct env *e)
{
	setup_x86_uf(e);
	env_vm(e);
	ck_assert_int_eq(op_region_plain(e), 0);
}

/* ---- dispatch ---- */

static int
page_in(void *user, struct memfault_vcpu *vcpu, struct memfault_region *r,
	uint64_t pg, void *hva, uint64_t size)
{
	struct env *e = user;

	(void)vcpu;
	(void)r;
	memset(hva, (int)pg + 1, size);
	e->page_ins++;
	return MEMFAULT_RESOLVED;
}

static void
setup_dispatch_uf(struct env *e)
{
	char script[128];

	setup_x86_uf(e);
	env_vcpu(e);
	ck_assert_int_eq(region_new(e, MEMFAULT_REGION_USERFAULT |
					       MEMFAULT_REGION_MISSING,
				    e->ram, RAM_GPA), 0);
	{
		MEMFAULT_OPTS(memfault_handlers, h, .user = e,
			      .page_in = page_in);

		ck_assert_int_eq(memfault_vm_set_handlers(e->vm, &h), 0);
	}
	snprintf(script, sizeof(script),
		 "load:%#llx:8;load:%#llx:8;out:0x3f8:1:acc",
		 (unsigned long long)RAM_GPA,
		 (unsigned long long)(RAM_GPA + 3 * e->page));
	ck_assert_int_eq(sim->vcpu_set_script_text(e->vcpu_fd, script), 0);
}

static int
op_dispatch(struct env *e)
{
	return memfault_vcpu_run_dispatch(e->vcpu);
}

/* Dispatch again until the guest's OUT: both pages were fetched once. */
static void
usable_dispatch_uf(struct env *e)
{
	struct kvm_run *run;
	int r;

	for (int i = 0; i < 8; i++) {
		r = memfault_vcpu_run_dispatch(e->vcpu);
		if (r != MEMFAULT_RUN_INTERRUPTED && r != MEMFAULT_RUN_RETRY)
			break;
	}
	ck_assert_int_eq(r, MEMFAULT_RUN_EXIT);
	ck_assert_int_eq(memfault_vcpu_get_run(e->vcpu, &run), 0);
	ck_assert_uint_eq(run->exit_reason, KVM_EXIT_IO);
	ck_assert_int_eq(memfault_region_is_missing(e->region, 0), 0);
	ck_assert_int_eq(memfault_region_is_missing(e->region, 3), 0);
	ck_assert_int_le(e->page_ins, 2);
}

static void
check_dispatch_uf(struct env *e, int r)
{
	if (r == MEMFAULT_RUN_EXIT)
		ck_assert_int_eq(e->page_ins, 2);
	else
		usable_dispatch_uf(e);
}

/* x86 SW_PROTECTED VM: a private access to shared memory asks for a
 * conversion, which the default handler does with KVM_SET_MEMORY_ATTRIBUTES. */
static void
setup_dispatch_convert(struct env *e)
{
	struct kvm_create_guest_memfd g = { .size = PAGES * 4096 };
	struct kvm_userspace_memory_region2 m;
	char script[128];

	env_open(e, KVMSIM_X86_64, KVMSIM_LEVEL_7_2, KVMSIM_X86_SW_PROTECTED_VM);
	g.size = PAGES * e->page;
	e->gmem_fd = ioctl(e->vm_fd, KVM_CREATE_GUEST_MEMFD, &g);
	ck_assert_int_ge(e->gmem_fd, 0);
	memset(&m, 0, sizeof(m));
	m.slot = 2;
	m.flags = KVM_MEM_GUEST_MEMFD;
	m.guest_phys_addr = GMEM_GPA;
	m.memory_size = g.size;
	m.userspace_addr = (uintptr_t)e->ram2;
	m.guest_memfd = (uint32_t)e->gmem_fd;
	ck_assert_int_eq(ioctl(e->vm_fd, KVM_SET_USER_MEMORY_REGION2, &m), 0);
	env_vcpu(e);
	snprintf(script, sizeof(script), "load:%#llx:8:private;hlt",
		 (unsigned long long)GMEM_GPA);
	ck_assert_int_eq(sim->vcpu_set_script_text(e->vcpu_fd, script), 0);
}

static void
usable_dispatch_convert(struct env *e)
{
	struct kvm_run *run;

	ck_assert_int_eq(memfault_vcpu_run_dispatch(e->vcpu), MEMFAULT_RUN_EXIT);
	ck_assert_int_eq(memfault_vcpu_get_run(e->vcpu, &run), 0);
	ck_assert_uint_eq(run->exit_reason, KVM_EXIT_HLT);
}

static void
check_dispatch_convert(struct env *e, int r)
{
	struct kvm_run *run;

	if (r != MEMFAULT_RUN_EXIT) {
		usable_dispatch_convert(e);
		return;
	}
	ck_assert_int_eq(memfault_vcpu_get_run(e->vcpu, &run), 0);
	ck_assert_uint_eq(run->exit_reason, KVM_EXIT_HLT);
}

/* ---- userfaultfd ---- */

/*
 * 0 if userfaultfd works here, else memfault_uffd_new()'s error. Called
 * from main(), outside any test: no ck_assert (check reports every
 * passing assertion to the runner).
 */
static int
uffd_available(void)
{
	struct kvmsim_config cfg = { KVMSIM_X86_64, KVMSIM_LEVEL_7_2, 0 };
	struct memfault_vm *vm = NULL;
	struct memfault_uffd *u;
	int kvm_fd, vm_fd, r = -ENODEV;

	cfg.quirks = sim->default_quirks(cfg.arch, cfg.level);
	if (sim->reset(&cfg))
		return -ENODEV;
	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	vm_fd = kvm_fd < 0 ? -1 : ioctl(kvm_fd, KVM_CREATE_VM, 0);
	if (vm_fd >= 0) {
		MEMFAULT_OPTS(memfault_vm_opts, o, .arch = cfg.arch);

		r = memfault_vm_new(vm_fd, &o, &vm);
	}
	if (!r) {
		r = memfault_uffd_new(vm, NULL, &u);
		if (!r)
			memfault_uffd_free(u);
		memfault_vm_free(vm);
	}
	if (vm_fd >= 0)
		close(vm_fd);
	if (kvm_fd >= 0)
		close(kvm_fd);
	return r;
}

static int
op_uffd_new(struct env *e)
{
	struct memfault_uffd *u = SENTINEL;
	int r = memfault_uffd_new(e->vm, NULL, &u);

	if (r)
		ck_assert_ptr_eq(u, SENTINEL);
	else
		e->uffd = u;
	return r;
}

static int
op_uffd_new_thread(struct env *e)
{
	MEMFAULT_OPTS(memfault_uffd_opts, o, .flags = MEMFAULT_UFFD_SERVICE_THREAD);
	struct memfault_uffd *u = SENTINEL;
	int r = memfault_uffd_new(e->vm, &o, &u);

	if (r)
		ck_assert_ptr_eq(u, SENTINEL);
	else
		e->uffd = u;
	return r;
}

static void
undo_uffd(struct env *e)
{
	memfault_uffd_free(e->uffd);
	e->uffd = NULL;
}

static void
usable_uffd_new(struct env *e)
{
	ck_assert_int_eq(op_uffd_new(e), 0);
}

static void
setup_uffd(struct env *e)
{
	setup_vcpu(e);
	ck_assert_int_eq(op_uffd_new(e), 0);
	ck_assert_int_eq(region_new(e, MEMFAULT_REGION_NO_MEMSLOT |
					       MEMFAULT_REGION_MISSING,
				    e->ram, RAM_GPA), 0);
}

static int
op_uffd_register(struct env *e)
{
	return memfault_uffd_register(e->uffd, e->region, MEMFAULT_UFFD_MISSING,
				      NULL);
}

static void
usable_uffd_register(struct env *e)
{
	ck_assert_int_eq(op_uffd_register(e), 0);
}

static int
op_uffd_add_vcpu(struct env *e)
{
	return memfault_uffd_add_vcpu(e->uffd, e->vcpu);
}

static void
undo_uffd_add_vcpu(struct env *e)
{
	ck_assert_int_eq(memfault_uffd_remove_vcpu(e->uffd, e->vcpu), 0);
}

static void
usable_uffd_add_vcpu(struct env *e)
{
	ck_assert_int_eq(op_uffd_add_vcpu(e), 0);
	undo_uffd_add_vcpu(e);
}

static void
setup_uffd_vcpu_added(struct env *e)
{
	setup_uffd(e);
	ck_assert_int_eq(op_uffd_add_vcpu(e), 0);
}

static int
op_uffd_remove_vcpu(struct env *e)
{
	return memfault_uffd_remove_vcpu(e->uffd, e->vcpu);
}

static int
op_uffd_service(struct env *e)
{
	return memfault_uffd_service(e->uffd, 16);
}

static void
setup_uffd_registered(struct env *e)
{
	MEMFAULT_OPTS(memfault_handlers, h, .user = e, .page_in = page_in);

	setup_uffd(e);
	ck_assert_int_eq(memfault_vm_set_handlers(e->vm, &h), 0);
	ck_assert_int_eq(op_uffd_register(e), 0);
}

/*
 * A failed page-in poisons the page (documented): the faulting thread gets
 * SIGBUS there, which the toucher takes as its answer.
 */
static __thread sigjmp_buf toucher_jb;
static __thread int toucher_armed;

static void
on_sigbus(int sig)
{
	if (toucher_armed)
		siglongjmp(toucher_jb, 1);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void *
toucher(void *arg)
{
	volatile unsigned char *p = arg;

	if (sigsetjmp(toucher_jb, 1))
		return (void *)1; /* SIGBUS: the page was poisoned */
	toucher_armed = 1;
	return (void *)(uintptr_t)(p[0] != 1);
}

/*
 * A host thread faults on a missing page; the service call must resolve
 * it whatever failed before (retrying until the thread is let go).
 */
static int
op_uffd_service_fault(struct env *e)
{
	bool joined = false;
	pthread_t t;
	void *v;
	int r, first = 0;

	signal(SIGBUS, on_sigbus);
	ck_assert_int_eq(pthread_create(&t, NULL, toucher, e->ram), 0);
	for (int i = 0; i < 2000; i++) {
		struct memfault_uffd_stats s;

		r = memfault_uffd_service(e->uffd, 16);
		if (r < 0 && !first)
			first = r;
		ck_assert_int_eq(memfault_uffd_get_stats(e->uffd, &s, sizeof(s)),
				 0);
		if (s.faults || s.errors)
			break;
		usleep(500);
	}
	cur_failed = fi_failed_call();
	op_calls = (int)fi_disarm();
	/* the faulting thread is never left blocked: serve until it ends */
	for (int i = 0; i < 4000 && !joined; i++) {
		joined = !pthread_tryjoin_np(t, &v);
		(void)memfault_uffd_service(e->uffd, 16);
		usleep(500);
	}
	if (!joined) {
		struct memfault_uffd_stats s;

		memfault_uffd_get_stats(e->uffd, &s, sizeof(s));
		ck_abort_msg("after %s failed with %s (call %u): the faulting "
			     "thread is stuck (faults %llu, page_ins %llu, "
			     "errors %llu, waits %llu)",
			     cur_failed ? cur_failed : "nothing",
			     strerror(cur_err), cur_n,
			     (unsigned long long)s.faults,
			     (unsigned long long)s.page_ins,
			     (unsigned long long)s.errors,
			     (unsigned long long)s.waits);
	}
	return first;
}

static int
op_uffd_free(struct env *e)
{
	memfault_uffd_free(e->uffd);
	e->uffd = NULL;
	return 0;
}

/* ---- userfaultfd paths: page-in, bitmap calls, free ---- */

/*
 * Whether a host page is mapped, without touching it (a touch of a
 * registered page would fault). Private anonymous memory: resident means
 * mapped, and MADV_DONTNEED is what makes it not resident.
 */
static bool
resident(struct env *e, uint64_t pg)
{
	unsigned char v = 0;

	ck_assert_int_eq(mincore((char *)e->ram + pg * e->page, e->page, &v),
			 0);
	return v & 1;
}

/* The byte a host thread read, or READ_SIGBUS. */
#define READ_SIGBUS 0x100

static void *
reader(void *arg)
{
	volatile unsigned char *p = arg;

	if (sigsetjmp(toucher_jb, 1))
		return (void *)(uintptr_t)READ_SIGBUS;
	toucher_armed = 1;
	return (void *)(uintptr_t)p[0];
}

/*
 * A host thread reads page @pg while this thread serves the userfaultfd
 * (if @serve): the byte read, and in @ret_faults the userfaultfd faults
 * the read made. A reader still blocked after 2 s fails the test.
 */
static unsigned
host_read(struct env *e, uint64_t pg, bool serve, uint64_t *ret_faults)
{
	struct memfault_uffd_stats s0, s1;
	bool joined = false;
	pthread_t t;
	void *v = NULL;

	signal(SIGBUS, on_sigbus);
	ck_assert_int_eq(memfault_uffd_get_stats(e->uffd, &s0, sizeof(s0)), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, reader,
					(char *)e->ram + pg * e->page), 0);
	for (int i = 0; i < 4000 && !joined; i++) {
		joined = !pthread_tryjoin_np(t, &v);
		if (serve)
			(void)memfault_uffd_service(e->uffd, 16);
		if (!joined)
			usleep(500);
	}
	if (!joined) {
		/* closing the userfaultfd lets the reader go */
		memfault_uffd_free(e->uffd);
		e->uffd = NULL;
		pthread_join(t, NULL);
		ck_abort_msg("after %s failed with %s (call %u): a host read "
			     "of page %llu is stuck",
			     cur_failed ? cur_failed : "nothing",
			     strerror(cur_err), cur_n, (unsigned long long)pg);
	}
	ck_assert_int_eq(memfault_uffd_get_stats(e->uffd, &s1, sizeof(s1)), 0);
	*ret_faults = s1.faults - s0.faults;
	return (unsigned)(uintptr_t)v;
}

/*
 * Page @pg is missing and traps: a host read faults, page_in() fills it
 * (page_in() writes pg + 1), and it is present afterwards.
 */
static void
host_traps(struct env *e, uint64_t pg)
{
	uint64_t faults;
	unsigned v;

	ck_assert_int_eq(memfault_region_is_missing(e->region, pg), 1);
	ck_assert_msg(!resident(e, pg),
		      "after %s failed with %s (call %u): page %llu is "
		      "missing but still mapped on the host",
		      cur_failed ? cur_failed : "nothing", strerror(cur_err),
		      cur_n, (unsigned long long)pg);
	v = host_read(e, pg, true, &faults);
	ck_assert_msg(faults >= 1 && v == (unsigned)(pg + 1) % 256,
		      "after %s failed with %s (call %u): host read of "
		      "missing page %llu: %u faults, read %#x (want %#x)",
		      cur_failed ? cur_failed : "nothing", strerror(cur_err),
		      cur_n, (unsigned long long)pg, (unsigned)faults, v,
		      (unsigned)(pg + 1) % 256);
	ck_assert_int_eq(memfault_region_is_missing(e->region, pg), 0);
}

/* Page @pg is present: a host read gets @want without a fault. */
static void
host_present(struct env *e, uint64_t pg, unsigned want)
{
	uint64_t faults;
	unsigned v;

	ck_assert_int_eq(memfault_region_is_missing(e->region, pg), 0);
	v = host_read(e, pg, true, &faults);
	ck_assert_msg(v == want,
		      "after %s failed with %s (call %u): page %llu read "
		      "%#x (want %#x, %u faults)",
		      cur_failed ? cur_failed : "nothing", strerror(cur_err),
		      cur_n, (unsigned long long)pg, v, want,
		      (unsigned)faults);
}

static void
set_page_in(struct env *e)
{
	MEMFAULT_OPTS(memfault_handlers, h, .user = e, .page_in = page_in);

	ck_assert_int_eq(memfault_vm_set_handlers(e->vm, &h), 0);
}

/*
 * Registration of a region whose host pages are all mapped (written
 * before): the missing ones must be unmapped, or they would never trap.
 */
static void
setup_uffd_mapped(struct env *e)
{
	setup_vcpu(e);
	ck_assert_int_eq(op_uffd_new(e), 0);
	set_page_in(e);
	ck_assert_int_eq(region_new(e, MEMFAULT_REGION_NO_MEMSLOT |
					       MEMFAULT_REGION_MISSING,
				    e->ram, RAM_GPA), 0);
	memset(e->ram, 0xee, PAGES * e->page);
}

static void
check_uffd_register_mapped(struct env *e, int r)
{
	(void)r;
	host_traps(e, 0);
	host_traps(e, PAGES - 1);
}

static void
usable_uffd_register_mapped(struct env *e)
{
	ck_assert_int_eq(op_uffd_register(e), 0);
	check_uffd_register_mapped(e, 0);
}

/* A registered region with every page present and mapped (0xee). */
static void
setup_uffd_present(struct env *e, uint64_t flags)
{
	setup_vcpu(e);
	ck_assert_int_eq(op_uffd_new(e), 0);
	set_page_in(e);
	ck_assert_int_eq(region_new(e, flags, e->ram, RAM_GPA), 0);
	memset(e->ram, 0xee, PAGES * e->page);
	ck_assert_int_eq(op_uffd_register(e), 0);
}

static void
setup_uffd_present_nomemslot(struct env *e)
{
	setup_uffd_present(e, MEMFAULT_REGION_NO_MEMSLOT);
}

static void
setup_uffd_present_userfault(struct env *e)
{
	setup_uffd_present(e, MEMFAULT_REGION_USERFAULT);
}

/* mark_missing(1, 2) took effect on the host: pages 1 and 2 trap, page 0
 * kept its contents. */
static void
check_uffd_mark_missing(struct env *e, int r)
{
	(void)r;
	host_traps(e, 1);
	host_traps(e, 2);
	host_present(e, 0, 0xee);
}

static void
usable_uffd_mark_missing(struct env *e)
{
	ck_assert_int_eq(memfault_region_mark_missing(e->region, 1, 2), 0);
	check_uffd_mark_missing(e, 0);
}

/* A registered missing region whose page 2 the test has claimed. */
static void
setup_uffd_claimed(struct env *e)
{
	setup_uffd_registered(e);
	ck_assert_int_eq(memfault_region_claim(e->region, 2,
					       MEMFAULT_CLAIM_NOWAIT),
			 MEMFAULT_CLAIM_FETCH);
}

/* The VMM's own fetch of page 2: UFFDIO_COPY of 0x33 on the library's
 * userfaultfd, then publish. */
static int
op_uffd_publish(struct env *e)
{
	struct uffdio_copy c;
	int r;

	fi_disarm();
	memset(e->ram2, 0x33, e->page);
	memset(&c, 0, sizeof(c));
	c.dst = (uintptr_t)e->ram + 2 * e->page;
	c.src = (uintptr_t)e->ram2;
	c.len = e->page;
	ck_assert_int_eq(ioctl(memfault_uffd_get_fd(e->uffd), UFFDIO_COPY, &c),
			 0);
	fi_arm(cur_n, cur_err, FI_ALL);
	r = memfault_region_publish(e->region, 2, 1);
	op_calls = (int)fi_disarm();
	return r;
}

static void
check_uffd_publish(struct env *e, int r)
{
	(void)r;
	host_present(e, 2, 0x33);
	host_traps(e, 3);
}

static void
usable_uffd_publish(struct env *e)
{
	ck_assert_int_eq(memfault_region_publish(e->region, 2, 1), 0);
	check_uffd_publish(e, 0);
}

static int
op_uffd_abort(struct env *e)
{
	return memfault_region_abort(e->region, 2);
}

static void
check_uffd_abort(struct env *e, int r)
{
	(void)r;
	host_traps(e, 2);
	host_traps(e, 3);
}

static void
usable_uffd_abort(struct env *e)
{
	ck_assert_int_eq(memfault_region_abort(e->region, 2), 0);
	check_uffd_abort(e, 0);
}

/*
 * The abort wakes a host thread that faulted on the claimed page while
 * the test held the claim (the service counted a wait and left it
 * blocked): woken, it faults again and page_in() serves it.
 */
static int
op_uffd_abort_waiter(struct env *e)
{
	struct memfault_uffd_stats s;
	bool joined = false;
	pthread_t t;
	void *v = NULL;
	int r;

	fi_disarm();
	signal(SIGBUS, on_sigbus);
	ck_assert_int_eq(pthread_create(&t, NULL, reader,
					(char *)e->ram + 2 * e->page), 0);
	for (int i = 0; i < 4000; i++) {
		(void)memfault_uffd_service(e->uffd, 16);
		ck_assert_int_eq(memfault_uffd_get_stats(e->uffd, &s, sizeof(s)),
				 0);
		if (s.waits)
			break;
		usleep(500);
	}
	ck_assert_uint_eq(s.waits, 1);
	fi_arm(cur_n, cur_err, FI_ALL);
	r = memfault_region_abort(e->region, 2);
	cur_failed = fi_failed_call();
	op_calls = (int)fi_disarm();
	for (int i = 0; i < 4000 && !joined; i++) {
		joined = !pthread_tryjoin_np(t, &v);
		if (!joined) {
			(void)memfault_uffd_service(e->uffd, 16);
			usleep(500);
		}
	}
	if (!joined) {
		memfault_uffd_free(e->uffd);
		e->uffd = NULL;
		pthread_join(t, NULL);
		ck_abort_msg("after %s failed with %s (call %u): the thread "
			     "waiting for the aborted page is stuck",
			     cur_failed ? cur_failed : "nothing",
			     strerror(cur_err), cur_n);
	}
	ck_assert_uint_eq((uintptr_t)v, 3); /* page_in() of page 2 */
	return r;
}

/*
 * After its registration ended (region or userfaultfd freed), the memory
 * is plain memory again: a host read completes without anyone serving
 * (a missing page of private memory reads as zeros).
 */
static void
check_untrapped(struct env *e, int r)
{
	struct memfault_uffd_stats s0, s1;
	bool joined = false;
	pthread_t t;
	void *v = NULL;

	(void)r;
	if (e->uffd)
		ck_assert_int_eq(memfault_uffd_get_stats(e->uffd, &s0,
							 sizeof(s0)), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, reader, e->ram), 0);
	for (int i = 0; i < 2000 && !joined; i++) {
		joined = !pthread_tryjoin_np(t, &v);
		if (!joined)
			usleep(500);
	}
	if (!joined) {
		memfault_uffd_free(e->uffd);
		e->uffd = NULL;
		pthread_join(t, NULL);
		ck_abort_msg("after %s failed with %s (call %u): the memory "
			     "of a freed registration still traps",
			     cur_failed ? cur_failed : "nothing",
			     strerror(cur_err), cur_n);
	}
	ck_assert_uint_eq((uintptr_t)v, 0);
	if (e->uffd) {
		ck_assert_int_eq(memfault_uffd_get_stats(e->uffd, &s1,
							 sizeof(s1)), 0);
		ck_assert_uint_eq(s1.faults, s0.faults);
	}
}

/*
 * KVM Userfault page-in through a registered region: page_in() fills a
 * bounce buffer, UFFDIO_COPY installs it. A service thread stands by so
 * that a page the library failed to install blocks nobody (its faults
 * show in the stats instead).
 */
static void
setup_dispatch_uffd(struct env *e)
{
	MEMFAULT_OPTS(memfault_uffd_opts, o,
		      .flags = MEMFAULT_UFFD_SERVICE_THREAD);
	char script[128];

	setup_x86_uf(e);
	env_vcpu(e);
	ck_assert_int_eq(region_new(e, MEMFAULT_REGION_USERFAULT |
					       MEMFAULT_REGION_MISSING,
				    e->ram, RAM_GPA), 0);
	memset(e->ram, 0xee, PAGES * e->page);
	set_page_in(e);
	ck_assert_int_eq(memfault_uffd_new(e->vm, &o, &e->uffd), 0);
	ck_assert_int_eq(op_uffd_register(e), 0);
	snprintf(script, sizeof(script),
		 "load:%#llx:8;load:%#llx:8;out:0x3f8:1:acc",
		 (unsigned long long)RAM_GPA,
		 (unsigned long long)(RAM_GPA + 3 * e->page));
	ck_assert_int_eq(sim->vcpu_set_script_text(e->vcpu_fd, script), 0);
}

/* The guest ran to its OUT: pages 0 and 3 were installed and published. */
static void
dispatch_uffd_done(struct env *e, int r)
{
	struct memfault_uffd_stats s;
	struct kvm_run *run;

	ck_assert_msg(r == MEMFAULT_RUN_EXIT,
		      "after %s failed with %s (call %u): dispatch: %d",
		      cur_failed ? cur_failed : "nothing", strerror(cur_err),
		      cur_n, r);
	ck_assert_int_eq(memfault_vcpu_get_run(e->vcpu, &run), 0);
	ck_assert_uint_eq(run->exit_reason, KVM_EXIT_IO);
	for (uint64_t pg = 0; pg < 4; pg += 3) {
		ck_assert_int_eq(memfault_region_is_missing(e->region, pg), 0);
		ck_assert_msg(resident(e, pg),
			      "after %s failed with %s (call %u): page %llu "
			      "is present but not installed",
			      cur_failed ? cur_failed : "nothing",
			      strerror(cur_err), cur_n,
			      (unsigned long long)pg);
		ck_assert_uint_eq(((unsigned char *)e->ram)[pg * e->page],
				  pg + 1);
	}
	/* the other pages stayed missing and unmapped */
	ck_assert(!resident(e, 1));
	ck_assert_int_eq(memfault_uffd_get_stats(e->uffd, &s, sizeof(s)), 0);
	ck_assert_uint_eq(s.faults, 0);
	ck_assert_uint_eq(s.kvm_page_ins, 2);
	/* one failed page-in may have been retried */
	ck_assert_int_le(e->page_ins, 3);
}

/* After a failure: dispatch again until the guest's OUT. */
static void
usable_dispatch_uffd(struct env *e)
{
	int r = MEMFAULT_RUN_RETRY;

	for (int i = 0; i < 8; i++) {
		r = memfault_vcpu_run_dispatch(e->vcpu);
		if (r != MEMFAULT_RUN_INTERRUPTED && r != MEMFAULT_RUN_RETRY)
			break;
	}
	dispatch_uffd_done(e, r);
}

/* A success that is not the end (an injected EINTR: INTERRUPTED): go on. */
static void
check_dispatch_uffd(struct env *e, int r)
{
	if (r == MEMFAULT_RUN_INTERRUPTED || r == MEMFAULT_RUN_RETRY)
		usable_dispatch_uffd(e);
	else
		dispatch_uffd_done(e, r);
}

/* ---- calls that make no failable call ---- */

static int
op_pure(struct env *e)
{
	struct memfault_features f;
	struct memfault_vcpu_stats s;
	struct memfault_fault flt;
	struct memfault_region_info info;
	struct kvm_run *run;
	struct memfault_region *reg;
	uint64_t pg;
	MEMFAULT_OPTS(memfault_handlers, h, .max_repeats = 3);

	ck_assert_int_ge(memfault_version_major(), 0);
	ck_assert_int_ge(memfault_version_minor(), 0);
	ck_assert_int_eq(memfault_arch_reads_back_exit(0, 6), e->arch ==
			 KVMSIM_ARM64);
	ck_assert_int_eq(memfault_vm_get_fd(e->vm), e->vm_fd);
	ck_assert_int_eq(memfault_vm_get_features(e->vm, &f, sizeof(f)), 0);
	ck_assert_int_eq(memfault_vm_set_handlers(e->vm, &h), 0);
	ck_assert_int_eq(memfault_vcpu_get_fd(e->vcpu), e->vcpu_fd);
	ck_assert_int_eq(memfault_vcpu_get_run(e->vcpu, &run), 0);
	ck_assert_int_eq(memfault_vcpu_get_fault(e->vcpu, &flt, sizeof(flt)),
			 -ENODATA);
	ck_assert_int_eq(memfault_vcpu_get_stats(e->vcpu, &s, sizeof(s)), 0);
	ck_assert_int_eq(memfault_exit_classify(run, -1, EFAULT, &flt,
						sizeof(flt)), -EFAULT);
	ck_assert_int_eq(memfault_vm_find_region(e->vm, RAM_GPA, &reg, &pg), 0);
	ck_assert_int_eq(memfault_region_get_info(reg, &info, sizeof(info)), 0);
	ck_assert_int_eq(memfault_region_mark_missing(reg, 0, 3), 0);
	ck_assert_int_eq(memfault_region_is_missing(reg, 1), 1);
	ck_assert_int_eq(memfault_region_find_missing(reg, 0, &pg), 0);
	ck_assert_int_eq(memfault_region_find_present(reg, 0, &pg), 0);
	ck_assert_int_eq(memfault_region_count_missing(reg, &pg), 0);
	ck_assert_int_eq(memfault_region_claim(reg, 0, 0), MEMFAULT_CLAIM_FETCH);
	ck_assert_int_eq(memfault_region_abort(reg, 0), 0);
	ck_assert_int_eq(memfault_region_claim(reg, 0, MEMFAULT_CLAIM_NOWAIT),
			 MEMFAULT_CLAIM_FETCH);
	ck_assert_int_eq(memfault_region_publish(reg, 0, 3), 0);
	return 0;
}

static void
setup_pure(struct env *e)
{
	setup_vcpu(e);
	ck_assert_int_eq(region_new(e, MEMFAULT_REGION_NO_MEMSLOT, NULL,
				    RAM_GPA), 0);
}

static void
check_pure(struct env *e, int r)
{
	(void)e;
	(void)r;
	/* run_case() stops at n = 1 only if no failable call was made */
}

/* ---- the table ---- */

static const struct fi_case cases[] = {
	{ "vm_new", FI_ALL, setup_x86_uf, op_vm_new, undo_vm, usable_vm_new,
	  check_vm_new, false, 0 },
	{ "vm_new/kvm_fd,no-probe", FI_ALL, setup_arm_68, op_vm_new_opts,
	  undo_vm, NULL, NULL, false, 0 },
	{ "vm_new/6.1", FI_ALL, setup_x86_61, op_vm_new, undo_vm,
	  usable_vm_new, check_vm_new, false, 0 },
	{ "vm_free", FI_ALL, setup_vm, op_vm_free, NULL, NULL, NULL, true, 0 },
	{ "vcpu_new", FI_ALL, setup_vcpu_parent, op_vcpu_new, undo_vcpu,
	  usable_vcpu_new, NULL, false, 0 },
	{ "vcpu_free", FI_ALL, setup_vcpu, op_vcpu_free, NULL, NULL, NULL,
	  true, 0 },
	{ "vcpu_run", FI_ALL, setup_vcpu_mmio, op_vcpu_run, NULL, usable_run,
	  NULL, false, 0 },
	{ "vcpu_kick", FI_ALL, setup_vcpu_ran, op_vcpu_kick, NULL, usable_kick,
	  NULL, false, 0 },
	{ "region_new", FI_ALL, setup_vm, op_region_plain, undo_region,
	  usable_region_plain, NULL, false, 1 },
	{ "region_new/userfault", FI_ALL, setup_vm, op_region_uf, undo_region,
	  usable_region_uf, NULL, false, 1 },
	{ "region_new/no-memslot", FI_ALL, setup_vm, op_region_nomemslot,
	  undo_region, usable_region_nomemslot, NULL, false, 1 },
	{ "region_new/guest_memfd", FI_ALL, setup_gmem, op_region_gmem,
	  undo_region, usable_region_gmem, NULL, false, 1 },
	{ "region_mark_missing", FI_ALL, setup_region_uf, op_mark_missing, NULL,
	  usable_mark_missing, check_mark_missing, false, 0 },
	{ "region_free", FI_ALL, setup_region_plain, op_region_free, NULL, NULL,
	  NULL, true, 0 },
	{ "vcpu_run_dispatch/page_in", FI_ALL, setup_dispatch_uf, op_dispatch,
	  NULL, usable_dispatch_uf, check_dispatch_uf, false, 0 },
	{ "vcpu_run_dispatch/convert", FI_ALL, setup_dispatch_convert,
	  op_dispatch, NULL, usable_dispatch_convert, check_dispatch_convert,
	  false, 0 },
	{ "pure calls (20 functions)", FI_ALL, setup_pure, op_pure, NULL, NULL,
	  check_pure, false, 0 },
};

static const struct fi_case uffd_cases[] = {
	{ "uffd_new", FI_ALL, setup_vm, op_uffd_new, undo_uffd, usable_uffd_new,
	  NULL, false, 0 },
	{ "uffd_new/thread", FI_ALL, setup_vm, op_uffd_new_thread, undo_uffd,
	  usable_uffd_new, NULL, false, 0 },
	{ "uffd_register", FI_ALL, setup_uffd, op_uffd_register, NULL,
	  usable_uffd_register, NULL, false, 1 },
	{ "uffd_add_vcpu", FI_ALL, setup_uffd, op_uffd_add_vcpu,
	  undo_uffd_add_vcpu, usable_uffd_add_vcpu, NULL, false, 1 },
	{ "uffd_remove_vcpu", FI_ALL, setup_uffd_vcpu_added,
	  op_uffd_remove_vcpu, NULL, NULL, NULL, false, 0 },
	{ "uffd_service/idle", FI_ALL, setup_uffd_registered, op_uffd_service,
	  NULL, NULL, NULL, false, 0 },
	{ "uffd_service/fault", FI_ALL, setup_uffd_registered,
	  op_uffd_service_fault, NULL, NULL, NULL, false, 0 },
	{ "uffd_free", FI_ALL, setup_uffd_registered, op_uffd_free, NULL, NULL,
	  check_untrapped, true, 0 },
	{ "uffd_register/mapped", FI_ALL, setup_uffd_mapped, op_uffd_register,
	  NULL, usable_uffd_register_mapped, check_uffd_register_mapped, false,
	  1 },
	{ "region_mark_missing/uffd", FI_ALL, setup_uffd_present_nomemslot,
	  op_mark_missing, NULL, usable_uffd_mark_missing,
	  check_uffd_mark_missing, false, 0 },
	{ "region_mark_missing/uffd+uf", FI_ALL, setup_uffd_present_userfault,
	  op_mark_missing, NULL, usable_uffd_mark_missing,
	  check_uffd_mark_missing, false, 0 },
	{ "region_publish/uffd", FI_ALL, setup_uffd_claimed, op_uffd_publish,
	  NULL, usable_uffd_publish, check_uffd_publish, false, 0 },
	{ "region_abort/uffd", FI_ALL, setup_uffd_claimed, op_uffd_abort, NULL,
	  usable_uffd_abort, check_uffd_abort, false, 0 },
	{ "region_abort/uffd+waiter", FI_ALL, setup_uffd_claimed,
	  op_uffd_abort_waiter, NULL, NULL, NULL, false, 0 },
	{ "region_free/uffd", FI_ALL, setup_uffd_registered, op_region_free,
	  NULL, NULL, check_untrapped, true, 0 },
	{ "vcpu_run_dispatch/uffd", FI_ALL, setup_dispatch_uffd, op_dispatch,
	  NULL, usable_dispatch_uffd, check_dispatch_uffd, false, 0 },
};

START_TEST(inject)
{
	run_case(&cases[_i]);
}
END_TEST

START_TEST(inject_uffd)
{
	run_case(&uffd_cases[_i]);
}
END_TEST

/* The pure calls must really be pure: one run, no failable call. */
START_TEST(pure_calls_make_no_call)
{
	struct env e;

	setup_pure(&e);
	fi_arm(0, 0, FI_ALL);
	op_pure(&e);
	ck_assert_uint_eq(fi_disarm(), 0);
	env_close(&e);
}
END_TEST

/*
 * The injector itself (fi.c) sees the library's allocations: each is
 * counted, tracked while it lives, and the first one fails when armed.
 * Without this a broken wrapper would let every case pass with no
 * allocation failed.
 */
START_TEST(allocations_are_seen)
{
	struct fi_res before, after;
	struct env e;

	setup_x86_uf(&e);
	fi_resources(&before);
	fi_arm(0, 0, FI_ALLOC);
	ck_assert_int_eq(op_vm_new(&e), 0);
	ck_assert_uint_gt(fi_disarm(), 0);
	fi_resources(&after);
	ck_assert_int_gt(after.allocs, before.allocs);
	undo_vm(&e);
	fi_arm(1, ENOMEM, FI_ALLOC);
	ck_assert_int_eq(op_vm_new(&e), -ENOMEM);
	fi_disarm();
	ck_assert_ptr_nonnull(fi_failed_call());
	ck_assert_msg(strstr(fi_failed_call(), "alloc") != NULL,
		      "failed call %s", fi_failed_call());
	env_close(&e);
}
END_TEST

/*
 * test-faultinject        the cases without userfaultfd
 * test-faultinject uffd   the userfaultfd cases; 77 where userfaultfd is
 *                         not permitted (root, vm.unprivileged_userfaultfd
 *                         or access to /dev/userfaultfd is needed)
 */
int
main(int argc, char **argv)
{
	Suite *s = suite_create("faultinject");
	TCase *tc = tcase_create("faultinject");
	bool uffd = argc > 1 && !strcmp(argv[1], "uffd");

	if (!fi_ready()) {
		fprintf(stderr, "libmemfault.so not found in the process\n");
		return 1;
	}
	sim = fi_kvmsim();
	if (!sim)
		return tc_skip(s, "libkvmsim.so is not preloaded");
	if (uffd) {
		int r = uffd_available();

		if (r)
			return tc_skip(s, "no userfaultfd here (%s)",
				       strerror(-r));
	}
	tc_init();
	tcase_set_timeout(tc, 120);
	if (uffd) {
		tcase_add_loop_test(tc, inject_uffd, 0,
				    (int)(sizeof(uffd_cases) /
					  sizeof(uffd_cases[0])));
	} else {
		tcase_add_loop_test(tc, inject, 0,
				    (int)(sizeof(cases) / sizeof(cases[0])));
		tcase_add_test(tc, pure_calls_make_no_call);
		tcase_add_test(tc, allocations_are_seen);
	}
	suite_add_tcase(s, tc);
	return tc_run(s);
}
