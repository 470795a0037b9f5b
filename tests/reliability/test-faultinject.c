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
 * This executable: the VM, vCPU, region and dispatch calls, and the calls
 * that make no failable call; test-faultinject-uffd.c the userfaultfd
 * paths. The engine is fi-case.c. Runs with LD_PRELOAD of libkvmsim.so
 * (see meson.build).
 */
#include "fi-case.h"

/* ---- VM ---- */

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

	KEEP_NEW(r, vm, e->vm);
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

	KEEP_NEW(r, vm, e->vm);
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

	KEEP_NEW(r, v, e->vcpu);
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

static void
setup_region_plain(struct env *e)
{
	setup_x86_uf(e);
	env_vm(e);
	ck_assert_int_eq(op_region_plain(e), 0);
}

/* ---- dispatch ---- */

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

START_TEST(inject)
{
	run_case(&cases[_i]);
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

int
main(void)
{
	Suite *s = suite_create("faultinject");
	TCase *tc = tcase_create("faultinject");
	int r = fi_case_start();

	if (r)
		return r;
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, inject, 0,
			    (int)(sizeof(cases) / sizeof(cases[0])));
	ADD_TEST(tc, pure_calls_make_no_call);
	ADD_TEST(tc, allocations_are_seen);
	suite_add_tcase(s, tc);
	return tc_run(s);
}
