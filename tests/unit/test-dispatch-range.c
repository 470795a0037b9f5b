/* SPDX-License-Identifier: MIT */
/*
 * Dispatch against a hostile kernel: the range of a KVM Userfault exit is
 * only a report. This program defines ioctl() and runs with
 * LD_PRELOAD=libkvmsim.so: the simulator serves KVM_RUN, and ioctl()
 * rewrites the memory_fault range of the exit it returns, as a buggy
 * kernel or an interposer could. Dispatch must page in exactly the pages
 * of [gpa, gpa + size) inside the region, at most 512, and give the VMM
 * the rest (MEMFAULT_RUN_MEMORY_FAULT):
 *   unaligned_range_crossing_a_page  gpa half a page before the faulting
 *                                    page, one page long: both pages
 *   sub_page_range                   two bytes inside one page: that page
 *   huge_range_is_bounded            2^40 pages: the first 512, then the
 *                                    VMM
 *   range_leaving_the_region         the last page, then the VMM
 *   kick_between_pages               a kick during the first page's
 *                                    page_in ends the fault before the
 *                                    second
 * The default conversion of a private/shared mismatch is bounded the same
 * way (x86, KVM_X86_SW_PROTECTED_VM; ioctl() also answers
 * KVM_SET_MEMORY_ATTRIBUTES as told):
 *   conversion_of_one_page           one call, one page
 *   conversion_of_512_pages          the bound itself is converted
 *   conversion_range_is_bounded      513 pages: nothing converted, the VMM
 *   conversion_eagain_is_bounded     EAGAIN forever: 1 + 64 calls, -EAGAIN
 *   conversion_eintr_is_retried      EINTR 3 times, then converted
 *   kick_ends_conversion_retries     EINTR with a kick: INTERRUPTED at once
 * On both arch models (the simulator's control calls are looked up with
 * dlsym(): the program does not link it). Exit 77 without the preload.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "kvmsim.h"
#include "memfault/memfault.h"
#include "test-common.h"

#define RAM_GPA 0x20000000ull
#define MAX_FAULT_PAGES 512
#define REGION_PAGES 1024

/* ---- the hostile kernel: KVM_RUN as the simulator runs it, then the
 * memory_fault range rewritten ---- */

typedef int (*ioctl_fn)(int, unsigned long, ...);

static struct {
	int vcpu_fd;
	struct kvm_run *run;
	int64_t gpa_delta; /* added to the reported gpa */
	uint64_t size;     /* reported size instead of the kernel's, if set */
	unsigned long rewrites;
	/* KVM_SET_MEMORY_ATTRIBUTES: calls seen, the last size asked for, and
	 * how many to fail (UINT_MAX: all) with attr_errno, kicking
	 * kick_vcpu from the first failure if set */
	unsigned attr_calls, attr_fail;
	uint64_t attr_size;
	int attr_errno;
	struct memfault_vcpu *kick_vcpu;
} hostile = { .vcpu_fd = -1 };

static int
hostile_attributes(const struct kvm_memory_attributes *a)
{
	hostile.attr_calls++;
	hostile.attr_size = a->size;
	if (!hostile.attr_fail)
		return 0;
	if (hostile.attr_fail != UINT_MAX)
		hostile.attr_fail--;
	if (hostile.kick_vcpu && hostile.attr_calls == 1)
		ck_assert_int_eq(memfault_vcpu_kick(hostile.kick_vcpu), 0);
	errno = hostile.attr_errno;
	return -1;
}

__attribute__((visibility("default"))) int
ioctl(int fd, unsigned long request, ...)
{
	static ioctl_fn next;
	va_list ap;
	void *arg;
	int r, err;

	va_start(ap, request);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (!next)
		next = (ioctl_fn)dlsym(RTLD_NEXT, "ioctl");
	if (request == KVM_SET_MEMORY_ATTRIBUTES && hostile.run) {
		r = hostile_attributes(arg);
		if (r)
			return r;
	}
	r = next(fd, request, arg);
	err = errno;
	if (request == KVM_RUN && fd == hostile.vcpu_fd && hostile.run &&
	    hostile.run->exit_reason == KVM_EXIT_MEMORY_FAULT) {
		hostile.run->memory_fault.gpa += (uint64_t)hostile.gpa_delta;
		if (hostile.size)
			hostile.run->memory_fault.size = hostile.size;
		hostile.rewrites++;
	}
	errno = err;
	return r;
}

/* ---- the simulator's control calls, from the preloaded library ---- */

static int (*sim_reset)(const struct kvmsim_config *);
static uint64_t (*sim_default_quirks)(uint32_t, uint32_t);
static int (*sim_set_script_text)(int, const char *);

struct env {
	int kvm_fd, vm_fd, vcpu_fd;
	struct memfault_vm *vm;
	struct memfault_vcpu *vcpu;
	struct memfault_region *region;
	struct kvm_run *run;
	uint64_t page;
	unsigned char *mem;
	unsigned calls[REGION_PAGES]; /* page_in calls per page */
	unsigned ncalls;
	int kick_in_page_in; /* kick the vCPU from the first page_in */
};

static int
page_in(void *user, struct memfault_vcpu *vcpu, struct memfault_region *r,
	uint64_t page, void *hva, uint64_t page_size)
{
	struct env *e = user;

	(void)r;
	ck_assert_uint_lt(page, REGION_PAGES);
	e->calls[page]++;
	e->ncalls++;
	memset(hva, (int)(page & 0xff) + 1, page_size);
	if (e->kick_in_page_in && e->ncalls == 1)
		ck_assert_int_eq(memfault_vcpu_kick(vcpu), 0);
	return MEMFAULT_RESOLVED;
}

/* @vm_type 0: KVM Userfault (7.2-uf), every page of the region missing;
 * KVMSIM_X86_SW_PROTECTED_VM: x86 7.2 with private memory, a plain region. */
static void
env_open_type(struct env *e, uint32_t arch, unsigned long vm_type)
{
	struct kvmsim_config cfg = { arch, KVMSIM_LEVEL_7_2_UF, 0 };
	MEMFAULT_OPTS(memfault_vm_opts, vo, .arch = arch);
	MEMFAULT_OPTS(memfault_region_opts, ro,
		      .flags = vm_type ? 0 :
					 MEMFAULT_REGION_USERFAULT |
						 MEMFAULT_REGION_MISSING);
	MEMFAULT_OPTS(memfault_handlers, h, .user = e, .page_in = page_in,
		      .max_repeats = 3);

	memset(e, 0, sizeof(*e));
	if (vm_type)
		cfg.level = KVMSIM_LEVEL_7_2;
	cfg.quirks = sim_default_quirks(arch, cfg.level);
	if (vm_type)
		cfg.quirks |= KVMSIM_Q_SW_PROTECTED_VM;
	ck_assert_int_eq(sim_reset(&cfg), 0);
	e->page = (uint64_t)sysconf(_SC_PAGESIZE);
	e->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	ck_assert_int_ge(e->kvm_fd, 0);
	e->vm_fd = ioctl(e->kvm_fd, KVM_CREATE_VM, vm_type);
	ck_assert_int_ge(e->vm_fd, 0);
	e->vcpu_fd = ioctl(e->vm_fd, KVM_CREATE_VCPU, 0);
	ck_assert_int_ge(e->vcpu_fd, 0);
	ck_assert_int_eq(memfault_vm_new(e->vm_fd, &vo, &e->vm), 0);
	ck_assert_int_eq(memfault_vcpu_new(e->vm, e->vcpu_fd, NULL, &e->vcpu),
			 0);
	ck_assert_int_eq(memfault_vcpu_get_run(e->vcpu, &e->run), 0);
	ck_assert_int_eq(memfault_vm_set_handlers(e->vm, &h), 0);
	e->mem = mmap(NULL, REGION_PAGES * e->page, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(e->mem, MAP_FAILED);
	ck_assert_int_eq(memfault_region_new(e->vm, 1, RAM_GPA,
					     REGION_PAGES * e->page, e->mem,
					     &ro, &e->region), 0);
	memset(&hostile, 0, sizeof(hostile));
	hostile.vcpu_fd = e->vcpu_fd;
	hostile.run = e->run;
}

static void
env_open(struct env *e, uint32_t arch)
{
	env_open_type(e, arch, 0);
}

static void
env_close(struct env *e)
{
	hostile.vcpu_fd = -1;
	hostile.run = NULL;
	memfault_region_free(e->region);
	munmap(e->mem, REGION_PAGES * e->page);
	memfault_vcpu_free(e->vcpu);
	memfault_vm_free(e->vm);
	close(e->vcpu_fd);
	close(e->vm_fd);
	close(e->kvm_fd);
}

static uint32_t
arch_of(int i)
{
	return i ? KVMSIM_ARM64 : KVMSIM_X86_64;
}

/* The guest loads one byte of @page, then the script ends. */
static void
load_page(struct env *e, uint64_t page)
{
	char s[64];

	snprintf(s, sizeof(s), "load:%#llx:1",
		 (unsigned long long)(RAM_GPA + page * e->page));
	ck_assert_int_eq(sim_set_script_text(e->vcpu_fd, s), 0);
}

/* The kernel says [page 1 - half a page, + one page): pages 0 and 1. The
 * access itself needs page 1, so a dispatch that fetches page 0 only
 * sees the same fault until its repeat guard trips. */
START_TEST(unaligned_range_crossing_a_page)
{
	struct memfault_fault f;
	struct env e;
	env_open(&e, arch_of(_i));
	load_page(&e, 1);
	hostile.gpa_delta = -(int64_t)(e.page / 2);
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu), MEMFAULT_RUN_EXIT);
	ck_assert_uint_eq(hostile.rewrites, 1);
	ck_assert_uint_eq(e.calls[0], 1);
	ck_assert_uint_eq(e.calls[1], 1);
	ck_assert_uint_eq(e.ncalls, 2);
	ck_assert_int_eq(memfault_region_is_missing(e.region, 2), 1);
	ck_assert_int_eq(memfault_vcpu_get_fault(e.vcpu, &f, sizeof(f)),
			 -ENODATA);
	env_close(&e);
}
END_TEST

/* Two bytes inside page 3: page 3 and nothing else. */
START_TEST(sub_page_range)
{
	struct env e;
	env_open(&e, arch_of(_i));
	load_page(&e, 3);
	hostile.gpa_delta = 7;
	hostile.size = 2;
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu), MEMFAULT_RUN_EXIT);
	ck_assert_uint_eq(e.calls[3], 1);
	ck_assert_uint_eq(e.ncalls, 1);
	env_close(&e);
}
END_TEST

/* 2^40 pages from page 0: the first 512 are paged in, the fault goes to
 * the VMM, and not one page more is touched (the region has 1024). */
START_TEST(huge_range_is_bounded)
{
	struct memfault_vcpu_stats st;
	struct memfault_fault f;
	uint64_t missing;
	struct env e;
	env_open(&e, arch_of(_i));
	load_page(&e, 0);
	hostile.size = (1ull << 40) * e.page;
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu),
			 MEMFAULT_RUN_MEMORY_FAULT);
	ck_assert_uint_eq(e.ncalls, MAX_FAULT_PAGES);
	for (int p = 0; p < MAX_FAULT_PAGES; p++)
		ck_assert_uint_eq(e.calls[p], 1);
	ck_assert_int_eq(memfault_region_count_missing(e.region, &missing), 0);
	ck_assert_uint_eq(missing, REGION_PAGES - MAX_FAULT_PAGES);
	/* the VMM sees the fault as the kernel reported it */
	ck_assert_int_eq(memfault_vcpu_get_fault(e.vcpu, &f, sizeof(f)), 0);
	ck_assert_uint_eq(f.gpa, RAM_GPA);
	ck_assert_uint_eq(f.size, (1ull << 40) * e.page);
	ck_assert(f.flags & MEMFAULT_FAULT_USERFAULT);
	ck_assert_int_eq(memfault_vcpu_get_stats(e.vcpu, &st, sizeof(st)), 0);
	ck_assert_uint_eq(st.to_vmm, 1);
	ck_assert_uint_eq(st.page_ins, MAX_FAULT_PAGES);
	/* the guest's page is in: without the rewrite it runs on */
	hostile.size = 0;
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu), MEMFAULT_RUN_EXIT);
	ck_assert_uint_eq(e.ncalls, MAX_FAULT_PAGES);
	env_close(&e);
}
END_TEST

/* The last page and one beyond the region: the last page is paged in, the
 * rest is the VMM's. */
START_TEST(range_leaving_the_region)
{
	struct memfault_fault f;
	struct env e;
	env_open(&e, arch_of(_i));
	load_page(&e, REGION_PAGES - 1);
	hostile.size = 2 * e.page;
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu),
			 MEMFAULT_RUN_MEMORY_FAULT);
	ck_assert_uint_eq(e.calls[REGION_PAGES - 1], 1);
	ck_assert_uint_eq(e.ncalls, 1);
	ck_assert_int_eq(memfault_vcpu_get_fault(e.vcpu, &f, sizeof(f)), 0);
	ck_assert_uint_eq(f.size, 2 * e.page);
	env_close(&e);
}
END_TEST

/* A kick during page 0's page_in: the fault stops before page 1, and the
 * run returns INTERRUPTED with the kick consumed, page 1 still missing. */
START_TEST(kick_between_pages)
{
	struct env e;
	env_open(&e, arch_of(_i));
	load_page(&e, 0);
	hostile.size = 2 * e.page;
	e.kick_in_page_in = 1;
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu),
			 MEMFAULT_RUN_INTERRUPTED);
	ck_assert_uint_eq(e.calls[0], 1);
	ck_assert_uint_eq(e.calls[1], 0);
	ck_assert_uint_eq(e.run->immediate_exit, 0);
	ck_assert_int_eq(memfault_region_is_missing(e.region, 1), 1);
	/* the guest needed page 0 only: the next run goes on */
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu), MEMFAULT_RUN_EXIT);
	ck_assert_uint_eq(e.ncalls, 1);
	env_close(&e);
}
END_TEST

/* ---- the default conversion (x86 SW_PROTECTED: a private load from a
 * shared page is a conversion request) ---- */

/* A private load from page 0, the kernel's report resized to @pages pages
 * (0: as the kernel reported it, one page). */
static void
convert_open(struct env *e, uint64_t pages)
{
	char s[64];

	env_open_type(e, KVMSIM_X86_64, KVMSIM_X86_SW_PROTECTED_VM);
	snprintf(s, sizeof(s), "load:%#llx:1:private",
		 (unsigned long long)RAM_GPA);
	ck_assert_int_eq(sim_set_script_text(e->vcpu_fd, s), 0);
	hostile.size = pages * e->page;
}

static void
check_conversions(struct env *e, uint64_t conversions)
{
	struct memfault_vcpu_stats st;

	ck_assert_int_eq(memfault_vcpu_get_stats(e->vcpu, &st, sizeof(st)), 0);
	ck_assert_uint_eq(st.conversions, conversions);
}

/* Converted once; in a SW_PROTECTED VM the same fault then comes back (no
 * guest_memfd behind the slot), and goes to the VMM. */
START_TEST(conversion_of_one_page)
{
	struct env e;

	convert_open(&e, 0);
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu),
			 MEMFAULT_RUN_MEMORY_FAULT);
	ck_assert_uint_eq(hostile.attr_calls, 1);
	ck_assert_uint_eq(hostile.attr_size, e.page);
	check_conversions(&e, 1);
	env_close(&e);
}
END_TEST

START_TEST(conversion_of_512_pages)
{
	struct env e;

	convert_open(&e, MAX_FAULT_PAGES);
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu),
			 MEMFAULT_RUN_MEMORY_FAULT);
	ck_assert_uint_ge(hostile.attr_calls, 1);
	ck_assert_uint_eq(hostile.attr_size, MAX_FAULT_PAGES * e.page);
	check_conversions(&e, 1);
	env_close(&e);
}
END_TEST

/* One page more than the bound: no attribute changes at all, and the VMM
 * gets the fault as reported. */
START_TEST(conversion_range_is_bounded)
{
	struct memfault_fault f;
	struct env e;

	convert_open(&e, MAX_FAULT_PAGES + 1);
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu),
			 MEMFAULT_RUN_MEMORY_FAULT);
	ck_assert_uint_eq(hostile.attr_calls, 0);
	check_conversions(&e, 0);
	ck_assert_int_eq(memfault_vcpu_get_fault(e.vcpu, &f, sizeof(f)), 0);
	ck_assert_uint_eq(f.size, (MAX_FAULT_PAGES + 1) * e.page);
	ck_assert(f.flags & MEMFAULT_FAULT_PRIVATE);
	env_close(&e);
}
END_TEST

/* An ioctl that always says "again": 64 retries, then its errno. */
START_TEST(conversion_eagain_is_bounded)
{
	struct env e;

	convert_open(&e, 0);
	hostile.attr_fail = UINT_MAX;
	hostile.attr_errno = EAGAIN;
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu), -EAGAIN);
	ck_assert_uint_eq(hostile.attr_calls, 1 + 64);
	check_conversions(&e, 0);
	env_close(&e);
}
END_TEST

START_TEST(conversion_eintr_is_retried)
{
	struct env e;

	convert_open(&e, 0);
	hostile.attr_fail = 3;
	hostile.attr_errno = EINTR;
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu),
			 MEMFAULT_RUN_MEMORY_FAULT);
	ck_assert_uint_ge(hostile.attr_calls, 4);
	check_conversions(&e, 1);
	env_close(&e);
}
END_TEST

/* EINTR from a kick: the conversion ends there (the fault comes back on
 * the next run), the kick is consumed. */
START_TEST(kick_ends_conversion_retries)
{
	struct env e;

	convert_open(&e, 0);
	hostile.attr_fail = UINT_MAX;
	hostile.attr_errno = EINTR;
	hostile.kick_vcpu = e.vcpu;
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu),
			 MEMFAULT_RUN_INTERRUPTED);
	ck_assert_uint_eq(hostile.attr_calls, 1);
	ck_assert_uint_eq(e.run->immediate_exit, 0);
	check_conversions(&e, 0);
	/* without the failures the next run converts */
	hostile.attr_fail = 0;
	hostile.kick_vcpu = NULL;
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu),
			 MEMFAULT_RUN_MEMORY_FAULT);
	check_conversions(&e, 1);
	env_close(&e);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("dispatch-range");
	TCase *tc = tcase_create("dispatch-range");

	sim_reset = (int (*)(const struct kvmsim_config *))dlsym(
		RTLD_DEFAULT, "kvmsim_reset");
	sim_default_quirks = (uint64_t (*)(uint32_t, uint32_t))dlsym(
		RTLD_DEFAULT, "kvmsim_default_quirks");
	sim_set_script_text = (int (*)(int, const char *))dlsym(
		RTLD_DEFAULT, "kvmsim_vcpu_set_script_text");
	if (!sim_reset || !sim_default_quirks || !sim_set_script_text)
		return tc_skip(s, "run with LD_PRELOAD=libkvmsim.so");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, unaligned_range_crossing_a_page, 0, 2);
	tcase_add_loop_test(tc, sub_page_range, 0, 2);
	tcase_add_loop_test(tc, huge_range_is_bounded, 0, 2);
	tcase_add_loop_test(tc, range_leaving_the_region, 0, 2);
	tcase_add_loop_test(tc, kick_between_pages, 0, 2);
	tcase_add_test(tc, conversion_of_one_page);
	tcase_add_test(tc, conversion_of_512_pages);
	tcase_add_test(tc, conversion_range_is_bounded);
	tcase_add_test(tc, conversion_eagain_is_bounded);
	tcase_add_test(tc, conversion_eintr_is_retried);
	tcase_add_test(tc, kick_ends_conversion_retries);
	suite_add_tcase(s, tc);
	return tc_run(s);
}
