// SPDX-License-Identifier: MIT
/* The fault-injection cases' engine and shared set-ups; see fi-case.h. */
#include "fi-case.h"

static const int errnos[] = { EIO, ENOMEM, EINTR, EAGAIN, EFAULT, EBADF };
#define NR_ERRNOS ((int)(sizeof(errnos) / sizeof(errnos[0])))

/* Runs and injections made, for the summary line of each case. */
static unsigned total_runs, total_failed;

const struct fi_kvmsim *sim;

void
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

void
env_vm(struct env *e)
{
	MEMFAULT_OPTS(memfault_vm_opts, o, .arch = e->arch);

	ck_assert_int_eq(memfault_vm_new(e->vm_fd, &o, &e->vm), 0);
}

void
env_vcpu(struct env *e)
{
	env_vm(e);
	ck_assert_int_eq(memfault_vcpu_new(e->vm, e->vcpu_fd, NULL, &e->vcpu),
			 0);
}

void
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
	tc_kvm_close(e->kvm_fd, e->vm_fd, e->vcpu_fd);
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

const char *cur_failed;
/* set by an op that re-arms the injection itself: its count of calls */
int op_calls = -1;
unsigned cur_n;
int cur_err;

void
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

int
fi_case_start(void)
{
	if (!fi_ready()) {
		fprintf(stderr, "libmemfault.so not found in the process\n");
		return 1;
	}
	sim = fi_kvmsim();
	if (!sim)
		return tc_skip(NULL, "libkvmsim.so is not preloaded");
	tc_init();
	return 0;
}

void
setup_x86_uf(struct env *e)
{
	env_open(e, KVMSIM_X86_64, KVMSIM_LEVEL_7_2_UF, 0);
}

void
setup_vm(struct env *e)
{
	setup_x86_uf(e);
	env_vm(e);
}

void
setup_vcpu(struct env *e)
{
	setup_x86_uf(e);
	env_vcpu(e);
}

int
region_new(struct env *e, uint64_t flags, void *hva, uint64_t gpa)
{
	MEMFAULT_OPTS(memfault_region_opts, o, .flags = flags,
		      .guest_memfd = e->gmem_fd);
	struct memfault_region *r = SENTINEL;
	int ret = memfault_region_new(e->vm, 1, gpa, PAGES * e->page, hva, &o,
				      &r);

	KEEP_NEW(ret, r, e->region);
	return ret;
}

int
op_mark_missing(struct env *e)
{
	return memfault_region_mark_missing(e->region, 1, 2);
}

int
op_region_free(struct env *e)
{
	memfault_region_free(e->region);
	e->region = NULL;
	return 0;
}

int
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

int
op_dispatch(struct env *e)
{
	return memfault_vcpu_run_dispatch(e->vcpu);
}

