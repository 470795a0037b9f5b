/* SPDX-License-Identifier: MIT */
/*
 * Runs the bad-input matrix generated from memfault.h (gen-badinput.py):
 * each case in its own Check fork, so a crash fails that case only, on a
 * fresh fixture (badinput-fixture.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "badinput-fixture.h"
#include "kvmsim.h"
#include "test-common.h"

static struct fx fx_state;

static void
setup(void)
{
	struct kvmsim_config cfg = { KVMSIM_X86_64, KVMSIM_LEVEL_7_2_UF, 0 };
	MEMFAULT_OPTS(memfault_region_opts, ro, .flags = MEMFAULT_REGION_MISSING);
	struct fx *fx = &fx_state;

	memset(fx, 0, sizeof(*fx));
	fx->page = (uint64_t)sysconf(_SC_PAGESIZE);
	cfg.quirks = kvmsim_default_quirks(cfg.arch, cfg.level);
	ck_assert_int_eq(kvmsim_reset(&cfg), 0);
	tc_kvm_open(&fx->kvm_fd, &fx->vm_fd, &fx->vcpu_fd, 0);
	fx->null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	ck_assert_int_ge(fx->null_fd, 0);
	fx->ram = mmap(NULL, FX_PAGES * fx->page, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	fx->ram2 = mmap(NULL, FX_PAGES * fx->page, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert(fx->ram != MAP_FAILED && fx->ram2 != MAP_FAILED);
	ck_assert_int_eq(memfault_vm_new(fx->vm_fd, NULL, &fx->vm), 0);
	ck_assert_int_eq(memfault_vcpu_new(fx->vm, fx->vcpu_fd, NULL, &fx->vcpu),
			 0);
	ck_assert_int_eq(memfault_vcpu_get_run(fx->vcpu, &fx->run), 0);
	ck_assert_int_eq(memfault_region_new(fx->vm, 1, FX_GPA,
					     FX_PAGES * fx->page, fx->ram, &ro,
					     &fx->region), 0);
	if (memfault_uffd_new(fx->vm, NULL, &fx->uffd))
		fx->uffd = NULL;
	fx->fault_run = calloc(1, sizeof(*fx->fault_run));
	ck_assert_ptr_nonnull(fx->fault_run);
	fx->fault_run->exit_reason = KVM_EXIT_MEMORY_FAULT;
	fx->fault_run->memory_fault.flags = KVM_MEMORY_EXIT_FLAG_PRIVATE;
	fx->fault_run->memory_fault.gpa = FX_GPA;
	fx->fault_run->memory_fault.size = fx->page;
	/* last: no fd opened after it takes its number */
	fx->closed_fd = dup(fx->null_fd);
	close(fx->closed_fd);
}

static void
teardown(void)
{
	struct fx *fx = &fx_state;

	memfault_uffd_free(fx->uffd);
	memfault_region_free(fx->region);
	memfault_vcpu_free(fx->vcpu);
	memfault_vm_free(fx->vm);
	free(fx->fault_run);
	munmap(fx->ram, FX_PAGES * fx->page);
	munmap(fx->ram2, FX_PAGES * fx->page);
	close(fx->null_fd);
	tc_kvm_close(fx->kvm_fd, fx->vm_fd, fx->vcpu_fd);
}

void
fx_script(struct fx *fx, const char *text)
{
	ck_assert_int_eq(kvmsim_vcpu_set_script_text(fx->vcpu_fd, text), 0);
}

/* x86: a private access to a shared page is a memory-fault exit */
void
fx_pending_fault(struct fx *fx)
{
	char s[64];

	snprintf(s, sizeof(s), "load:%#llx:8:private", (unsigned long long)FX_GPA);
	fx_script(fx, s);
	ck_assert_int_eq(memfault_vcpu_run(fx->vcpu), MEMFAULT_RUN_MEMORY_FAULT);
}

void
fx_claim(struct fx *fx, uint64_t page)
{
	ck_assert_int_eq(memfault_region_claim(fx->region, page,
					       MEMFAULT_CLAIM_NOWAIT),
			 MEMFAULT_CLAIM_FETCH);
}

void
fx_add_vcpu(struct fx *fx)
{
	if (fx->uffd)
		ck_assert_int_eq(memfault_uffd_add_vcpu(fx->uffd, fx->vcpu), 0);
}

void
fx_forget(struct fx *fx, const void *freed)
{
	if (freed == fx->vm)
		fx->vm = NULL;
	if (freed == fx->vcpu)
		fx->vcpu = NULL;
	if (freed == fx->region)
		fx->region = NULL;
	if (freed == fx->uffd)
		fx->uffd = NULL;
}

/*
 * A case whose object this process cannot make (a userfaultfd where it is
 * not permitted) returns without checking anything. It runs in a forked
 * child, so it cannot tell main(); main() asks the same question itself
 * (tc_uffd_usable()) and reports the whole matrix as skipped rather
 * than count such a case as a pass.
 */
void
fx_skip(const char *why)
{
	printf("skipped: %s\n", why);
}

void
fx_untouched(struct fx *fx, size_t from)
{
	for (int k = 0; k < FX_OUTS; k++)
		for (size_t i = k ? 0 : from; i < FX_OUT_SIZE; i++)
			ck_assert_msg(fx->out[k][i] == FX_FILL,
				      "%s: output %d byte %zu was written",
				      fx_case_name, k, i);
}

const char *fx_case_name;

START_TEST(matrix)
{
	fx_case_name = fx_cases[_i].name;
	fx_cases[_i].fn(&fx_state);
}
END_TEST

int
main(int argc, char **argv)
{
	Suite *s = suite_create("badinput");
	TCase *tc = tcase_create("badinput");
	char why[256];
	int r;

	(void)argc;
	(void)argv;
	printf("bad-input matrix: %d cases over %d public functions\n",
	       fx_nr_cases, fx_nr_functions);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, matrix, 0, fx_nr_cases);
	suite_add_tcase(s, tc);
	r = tc_run(s);
	if (r == EXIT_SUCCESS && tc_uffd_usable(why, sizeof(why)))
		return tc_skip(NULL, "%s: the cases on a userfaultfd object "
			       "checked nothing", why);
	return r;
}
