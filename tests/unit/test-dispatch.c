/* SPDX-License-Identifier: MIT */
/*
 * Dispatch on the simulator: page-in exactly once across many vCPUs,
 * implicit conversions, handler verdicts and errors, the repeat guard,
 * kicks while waiting, and the same callbacks on both arch models.
 */
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>

#include "sim-env.h"
#include "test-common.h"

#define NPAGES 64
#define NVCPUS 8

struct ctx {
	struct sim_env *e;
	unsigned char *mem;
	unsigned fetches[NPAGES]; /* atomic */
	int page_in_result;       /* what page_in returns */
	int calls_other, calls_hwpoison, calls_convert, calls_discard;
	uint64_t discard_gpa, discard_size;
	uint32_t discard_private;
	/* a log of callbacks for the equivalence check */
	char log[512];
	/* to hold a page-in until released */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int hold, holding;
	int other_verdict;
	struct memfault_region *last_region; /* of the last page_in */
};

static void
logf_append(struct ctx *c, const char *what, uint64_t v, int hex)
{
	size_t n = strlen(c->log);

	snprintf(c->log + n, sizeof(c->log) - n, hex ? "%s:%llx;" : "%s:%llu;",
		 what, (unsigned long long)v);
}

static int
page_in(void *user, struct memfault_vcpu *vcpu, struct memfault_region *r,
	uint64_t page, void *hva, uint64_t page_size)
{
	struct ctx *c = user;

	(void)vcpu;
	pthread_mutex_lock(&c->lock);
	c->last_region = r;
	if (c->hold) {
		c->holding = 1;
		pthread_cond_broadcast(&c->cond);
		while (c->hold)
			pthread_cond_wait(&c->cond, &c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	if (c->page_in_result != MEMFAULT_RESOLVED) {
		int v = c->page_in_result;

		c->page_in_result = MEMFAULT_RESOLVED;
		return v;
	}
	__atomic_fetch_add(&c->fetches[page], 1, __ATOMIC_RELAXED);
	memset(hva, (int)(page + 1), page_size);
	/* page_in runs on several vCPU threads at once */
	pthread_mutex_lock(&c->lock);
	if (strlen(c->log) < 400)
		logf_append(c, "page_in", page, 0);
	pthread_mutex_unlock(&c->lock);
	return MEMFAULT_RESOLVED;
}

static int
on_other(void *user, struct memfault_vcpu *vcpu, const struct memfault_fault *f)
{
	struct ctx *c = user;

	(void)vcpu;
	c->calls_other++;
	logf_append(c, "other", f->gpa, 1);
	return c->other_verdict;
}

static int
on_hwpoison(void *user, struct memfault_vcpu *vcpu,
	    const struct memfault_fault *f)
{
	struct ctx *c = user;

	(void)vcpu;
	c->calls_hwpoison++;
	logf_append(c, "hwpoison", f->gpa, 1);
	return MEMFAULT_TO_VMM;
}

static int
on_discard(void *user, uint64_t gpa, uint64_t size, uint32_t to_private)
{
	struct ctx *c = user;

	c->calls_discard++;
	c->discard_gpa = gpa;
	c->discard_size = size;
	c->discard_private = to_private;
	return MEMFAULT_RESOLVED;
}

static void
ctx_init(struct ctx *c, struct sim_env *e)
{
	MEMFAULT_OPTS(memfault_handlers, h, .user = c, .page_in = page_in,
		      .other = on_other, .hwpoison = on_hwpoison,
		      .discard = on_discard, .max_repeats = 3);

	memset(c, 0, sizeof(*c));
	c->e = e;
	c->other_verdict = MEMFAULT_TO_VMM;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	ck_assert_int_eq(memfault_vm_set_handlers(e->vm, &h), 0);
}

static struct memfault_region *
uf_region(struct ctx *c)
{
	MEMFAULT_OPTS(memfault_region_opts, o,
		      .flags = MEMFAULT_REGION_USERFAULT |
			       MEMFAULT_REGION_MISSING);
	struct memfault_region *r;

	c->mem = mmap(NULL, NPAGES * c->e->page, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(c->mem, MAP_FAILED);
	ck_assert_int_eq(memfault_region_new(c->e->vm, 1, RAM_GPA,
					     NPAGES * c->e->page, c->mem, &o,
					     &r), 0);
	return r;
}

/* Script: load every page once, in an order of its own (then the end). */
static void
script_all_pages(struct sim_env *e, int fd, int k)
{
	char text[NPAGES * 32];
	size_t n = 0;

	text[0] = 0;
	for (int i = 0; i < NPAGES; i++) {
		uint64_t p = (uint64_t)((i * 5 + k * 11) % NPAGES);

		n += (size_t)snprintf(text + n, sizeof(text) - n, "load:%#llx:1;",
				      (unsigned long long)(RAM_GPA +
							   p * e->page));
	}
	ck_assert_int_eq(kvmsim_vcpu_set_script_text(fd, text), 0);
}

START_TEST(page_in_exactly_once_across_vcpus)
{
	struct vcpu_thread vt[NVCPUS];
	struct memfault_region *r;
	struct sim_env e;
	struct ctx c;
	uint64_t ins = 0, waits = 0, ufs = 0, missing;

	sim_env_open(&e, sim_models[_i].arch, KVMSIM_LEVEL_7_2_UF);
	ctx_init(&c, &e);
	r = uf_region(&c);
	for (int i = 0; i < NVCPUS; i++) {
		vt[i].e = &e;
		vt[i].fd = ioctl(e.vm_fd, KVM_CREATE_VCPU, i + 1);
		ck_assert_int_ge(vt[i].fd, 0);
		ck_assert_int_eq(memfault_vcpu_new(e.vm, vt[i].fd, NULL,
						   &vt[i].vcpu), 0);
		script_all_pages(&e, vt[i].fd, i);
	}
	for (int i = 0; i < NVCPUS; i++)
		pthread_create(&vt[i].t, NULL, run_to_end, &vt[i]);
	for (int i = 0; i < NVCPUS; i++) {
		struct memfault_vcpu_stats s;
		struct kvm_run *run;

		pthread_join(vt[i].t, NULL);
		ck_assert_int_eq(vt[i].result, MEMFAULT_RUN_EXIT);
		memfault_vcpu_get_run(vt[i].vcpu, &run);
		ck_assert(run->exit_reason == KVM_EXIT_SHUTDOWN ||
			  run->exit_reason == KVM_EXIT_SYSTEM_EVENT);
		ck_assert_int_eq(memfault_vcpu_get_stats(vt[i].vcpu, &s,
							 sizeof(s)), 0);
		ins += s.page_ins;
		waits += s.page_waits;
		ufs += s.userfaults;
		ck_assert_uint_eq(s.retries, s.userfaults);
		memfault_vcpu_free(vt[i].vcpu);
		close(vt[i].fd);
	}
	for (int p = 0; p < NPAGES; p++) {
		ck_assert_uint_eq(c.fetches[p], 1);
		ck_assert_uint_eq(c.mem[(size_t)p * e.page], p + 1);
		ck_assert_uint_eq(c.mem[(size_t)(p + 1) * e.page - 1], p + 1);
	}
	ck_assert_uint_eq(ins, NPAGES);
	ck_assert_uint_eq(ins + waits, ufs);
	ck_assert_int_eq(memfault_region_count_missing(r, &missing), 0);
	ck_assert_uint_eq(missing, 0);
	memfault_region_free(r);
	munmap(c.mem, NPAGES * e.page);
	sim_env_close(&e);
}
END_TEST

START_TEST(page_in_failure_and_to_vmm)
{
	struct memfault_region *r;
	struct memfault_fault f;
	struct sim_env e;
	struct ctx c;

	sim_env_open(&e, sim_models[_i].arch, KVMSIM_LEVEL_7_2_UF);
	ctx_init(&c, &e);
	r = uf_region(&c);
	sim_env_script(&e, "load:0x20003000:1");
	c.page_in_result = -EIO;
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu), -EIO);
	/* the VMM learns the address that failed */
	ck_assert_int_eq(memfault_vcpu_get_fault(e.vcpu, &f, sizeof(f)), 0);
	ck_assert_uint_eq(f.gpa, RAM_GPA + 3 * e.page);
	ck_assert_int_eq(memfault_region_is_missing(r, 3), 1);
	ck_assert_int_eq(memfault_region_abort(r, 3), -EPERM); /* released */
	c.page_in_result = MEMFAULT_TO_VMM;
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu),
			 MEMFAULT_RUN_MEMORY_FAULT);
	ck_assert_int_eq(memfault_vcpu_get_fault(e.vcpu, &f, sizeof(f)), 0);
	ck_assert(f.flags & MEMFAULT_FAULT_USERFAULT);
	/* a handler verdict out of range is the handler's bug: -EPROTO */
	c.page_in_result = 7;
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu), -EPROTO);
	/* nor is any value the library uses internally (a kick's verdict) */
	c.page_in_result = 2;
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu), -EPROTO);
	c.page_in_result = INT_MIN;
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu), -EPROTO);
	c.page_in_result = -4096;
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu), -EPROTO);
	/* and then it works */
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu), MEMFAULT_RUN_EXIT);
	ck_assert_uint_eq(c.fetches[3], 1);
	ck_assert_uint_eq(sim_env_acc(&e), 4);
	memfault_region_free(r);
	munmap(c.mem, NPAGES * e.page);
	sim_env_close(&e);
}
END_TEST

/*
 * Dispatch remembers the region of a vCPU's last userfault; a setup call
 * that changes the VM's regions makes it look again. Here the region is
 * freed and another one takes its place (same gpa, same slot): the fault
 * must go to the new one, and never read the freed one (the asan job
 * sees such a read as a use after free).
 */
START_TEST(region_hint_follows_setup_calls)
{
	MEMFAULT_OPTS(memfault_region_opts, o,
		      .flags = MEMFAULT_REGION_USERFAULT |
			       MEMFAULT_REGION_MISSING);
	struct memfault_region *a, *b, *far;
	unsigned char *mem2;
	char script[96];
	struct sim_env e;
	struct ctx c;

	sim_env_open(&e, sim_models[_i].arch, KVMSIM_LEVEL_7_2_UF);
	ctx_init(&c, &e);
	a = uf_region(&c);
	snprintf(script, sizeof(script), "load:%#llx:1",
		 (unsigned long long)(RAM_GPA + 3 * e.page));
	sim_env_script(&e, script);
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu), MEMFAULT_RUN_EXIT);
	ck_assert_ptr_eq(c.last_region, a);
	memfault_region_free(a);
	/* another region first, so that the new one is (most likely) not
	 * allocated where the old one was */
	mem2 = mmap(NULL, 2 * NPAGES * e.page, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(mem2, MAP_FAILED);
	ck_assert_int_eq(memfault_region_new(e.vm, 2, RAM_GPA + 4 * NPAGES * e.page,
					     NPAGES * e.page, mem2, &o, &far), 0);
	ck_assert_int_eq(memfault_region_new(e.vm, 1, RAM_GPA, NPAGES * e.page,
					     mem2 + NPAGES * e.page, &o, &b), 0);
	snprintf(script, sizeof(script), "load:%#llx:1",
		 (unsigned long long)(RAM_GPA + 5 * e.page));
	sim_env_script(&e, script);
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu), MEMFAULT_RUN_EXIT);
	ck_assert_ptr_eq(c.last_region, b);
	ck_assert_int_eq(memfault_region_is_missing(b, 5), 0);
	ck_assert_int_eq(mem2[NPAGES * e.page + 5 * e.page], 6);
	/* and a fault in the other region is that region's */
	snprintf(script, sizeof(script), "load:%#llx:1;load:%#llx:1",
		 (unsigned long long)RAM_GPA,
		 (unsigned long long)(RAM_GPA + 4 * NPAGES * e.page + 4 * e.page));
	sim_env_script(&e, script);
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu), MEMFAULT_RUN_EXIT);
	ck_assert_ptr_eq(c.last_region, far);
	ck_assert_int_eq(memfault_region_is_missing(far, 4), 0);
	ck_assert_int_eq(memfault_region_is_missing(b, 0), 0);
	memfault_region_free(b);
	memfault_region_free(far);
	munmap(mem2, 2 * NPAGES * e.page);
	munmap(c.mem, NPAGES * e.page);
	sim_env_close(&e);
}
END_TEST

/* Without page_in the fault goes to the VMM, unless the page is present. */
START_TEST(no_handlers_means_to_vmm)
{
	struct memfault_region *r;
	struct memfault_vcpu_stats s;
	struct sim_env e;
	struct ctx c;

	sim_env_open(&e, sim_models[_i].arch, KVMSIM_LEVEL_7_2_UF);
	ctx_init(&c, &e);
	ck_assert_int_eq(memfault_vm_set_handlers(e.vm, NULL), 0);
	r = uf_region(&c);
	sim_env_script(&e, "load:0x20000000:1");
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu),
			 MEMFAULT_RUN_MEMORY_FAULT);
	ck_assert_int_eq(memfault_region_is_missing(r, 0), 1);
	/* the VMM fills the page itself and publishes it */
	c.mem[0] = 9;
	ck_assert_int_eq(memfault_region_publish(r, 0, 1), 0);
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu), MEMFAULT_RUN_EXIT);
	ck_assert_uint_eq(sim_env_acc(&e), 9);
	ck_assert_int_eq(memfault_vcpu_get_stats(e.vcpu, &s, sizeof(s)), 0);
	ck_assert_uint_eq(s.to_vmm, 1);
	ck_assert_uint_eq(s.page_ins, 0);
	ck_assert_uint_eq(s.runs, 2);
	memfault_region_free(r);
	munmap(c.mem, NPAGES * e.page);
	sim_env_close(&e);
}
END_TEST

START_TEST(repeat_guard)
{
	struct memfault_vcpu_stats s;
	struct sim_env e;
	struct ctx c;

	sim_env_open(&e, sim_models[_i].arch, KVMSIM_LEVEL_7_2);
	ctx_init(&c, &e);
	ck_assert_int_eq(sim_env_add_gmem(&e, 2, 1, GUEST_MEMFD_FLAG_MMAP), 0);
	close(e.gmem_fd);
	e.gmem_fd = -1;
	/* a handler that claims success but fixes nothing */
	c.other_verdict = MEMFAULT_RESOLVED;
	sim_env_script(&e, "load:0x30000000:1");
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu), -ELOOP);
	ck_assert_int_eq(c.calls_other, 4); /* max_repeats 3, then the guard */
	ck_assert_int_eq(memfault_vcpu_get_stats(e.vcpu, &s, sizeof(s)), 0);
	ck_assert_uint_eq(s.repeat_trips, 1);
	ck_assert_uint_eq(s.runs, 5);
	sim_env_close(&e);
}
END_TEST

START_TEST(hwpoison_goes_to_its_handler)
{
	struct sim_env e;
	struct ctx c;

	sim_env_open(&e, sim_models[_i].arch, KVMSIM_LEVEL_7_2);
	ctx_init(&c, &e);
	ck_assert_int_eq(sim_env_add_gmem(&e, 2, 1, GUEST_MEMFD_FLAG_MMAP), 0);
	ck_assert_int_eq(kvmsim_poison(e.vm_fd, GMEM_GPA), 0);
	sim_env_script(&e, "load:0x30000000:1");
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu),
			 MEMFAULT_RUN_MEMORY_FAULT);
	ck_assert_int_eq(c.calls_hwpoison, 1);
	ck_assert_int_eq(c.calls_other, 0);
	sim_env_close(&e);
}
END_TEST

/* x86 SW_PROTECTED: implicit conversions both ways by the default. */
START_TEST(default_conversion_both_ways_x86)
{
	struct memfault_vcpu_stats s;
	struct sim_env e;
	struct ctx c;

	sim_env_open_quirks(&e, KVMSIM_X86_64, KVMSIM_LEVEL_7_2,
			    kvmsim_default_quirks(KVMSIM_X86_64,
						  KVMSIM_LEVEL_7_2) |
				    KVMSIM_Q_SW_PROTECTED_VM,
			    KVMSIM_X86_SW_PROTECTED_VM);
	ctx_init(&c, &e);
	ck_assert_int_eq(sim_env_add_gmem(&e, 2, 2, 0), 0);
	/* private access to a shared page, then shared access to it */
	sim_env_script(&e, "load:0x30001004:1:private;load:0x30001000:1:shared");
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu), MEMFAULT_RUN_EXIT);
	ck_assert_int_eq(c.calls_discard, 2);
	ck_assert_uint_eq(c.discard_gpa, GMEM_GPA + e.page);
	ck_assert_uint_eq(c.discard_size, e.page);
	ck_assert_uint_eq(c.discard_private, 0);
	ck_assert_int_eq(memfault_vcpu_get_stats(e.vcpu, &s, sizeof(s)), 0);
	ck_assert_uint_eq(s.conversions, 2);
	ck_assert_uint_eq(s.to_vmm, 0);
	ck_assert_int_eq(c.calls_other, 0);
	sim_env_close(&e);
}
END_TEST

/* SW_PROTECTED: the attribute decides private-ness, so a PRIVATE exit on
 * a slot without guest_memfd is no conversion request (the real kernel
 * does the same, tests/kernel swprot-dispatch-*). The default converts
 * once, sees the same fault back, and hands it to "other". */
START_TEST(noop_conversion_goes_to_other)
{
	struct kvm_memory_attributes attr = { .address = RAM_GPA };
	struct memfault_vcpu_stats s;
	struct sim_env e;
	struct ctx c;

	sim_env_open_quirks(&e, KVMSIM_X86_64, KVMSIM_LEVEL_7_2,
			    kvmsim_default_quirks(KVMSIM_X86_64,
						  KVMSIM_LEVEL_7_2) |
				    KVMSIM_Q_SW_PROTECTED_VM,
			    KVMSIM_X86_SW_PROTECTED_VM);
	ctx_init(&c, &e);
	sim_env_add_ram(&e, 1, 1, 0);
	attr.size = e.page;
	attr.attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE;
	ck_assert_int_eq(ioctl(e.vm_fd, KVM_SET_MEMORY_ATTRIBUTES, &attr), 0);
	sim_env_script(&e, "load:0x20000000:1");
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu),
			 MEMFAULT_RUN_MEMORY_FAULT);
	ck_assert_int_eq(c.calls_discard, 1);
	ck_assert_uint_eq(c.discard_private, 1);
	ck_assert_int_eq(c.calls_other, 1);
	ck_assert_int_eq(memfault_vcpu_get_stats(e.vcpu, &s, sizeof(s)), 0);
	ck_assert_uint_eq(s.conversions, 1);
	ck_assert_uint_eq(s.runs, 2);
	ck_assert_uint_eq(s.repeat_trips, 0);
	sim_env_close(&e);
}
END_TEST

/* Without memory attributes (arm64, x86 type 0) such a fault is no
 * conversion: both give it to the "other" handler, the same way. */
START_TEST(no_attributes_no_conversion)
{
	struct sim_env e;
	struct ctx c;

	sim_env_open(&e, sim_models[_i].arch, KVMSIM_LEVEL_7_2);
	ctx_init(&c, &e);
	ck_assert_int_eq(sim_env_add_gmem(&e, 2, 1, GUEST_MEMFD_FLAG_MMAP), 0);
	close(e.gmem_fd);
	e.gmem_fd = -1;
	sim_env_script(&e, "load:0x30000000:1");
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu),
			 MEMFAULT_RUN_MEMORY_FAULT);
	ck_assert_int_eq(c.calls_other, 1);
	ck_assert_int_eq(c.calls_discard, 0);
	ck_assert_str_eq(c.log, "other:30000000;");
	sim_env_close(&e);
}
END_TEST

struct waiter {
	struct vcpu_thread vt;
	int done; /* atomic */
};

static void *
hold_thread(void *arg)
{
	struct vcpu_thread *vt = arg;

	vt->result = memfault_vcpu_run_dispatch(vt->vcpu);
	return NULL;
}

static void *
waiter_thread(void *arg)
{
	struct waiter *w = arg;

	w->vt.result = memfault_vcpu_run_dispatch(w->vt.vcpu);
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static volatile sig_atomic_t vmm_kicks_handled;

static void
on_vmm_kick(int sig)
{
	(void)sig;
	vmm_kicks_handled++;
}

/*
 * vCPU A fetches a page slowly; vCPU B waits for it and is kicked. The
 * kick must end B's wait at once, with the library's own kick handler
 * (mode 0), a VMM handler installed with SA_RESTART (1: the futex wait is
 * restarted, the signal alone never ends it) and one without (2). A holds
 * the page until B answered or 2 s passed (x CK_TIMEOUT_MULTIPLIER), so that a kick lost in the wait
 * fails instead of being answered by the publish.
 */
static void
kick_while_waiting(int model, int mode)
{
	MEMFAULT_OPTS(memfault_vcpu_opts, vo,
		      .kick_signal = mode ? SIGUSR2 : 0,
		      .flags = mode ? MEMFAULT_VCPU_NO_SIGNAL_HANDLER : 0);
	struct sigaction sa = { .sa_handler = on_vmm_kick };
	struct vcpu_thread a = { 0 };
	struct waiter b = { 0 };
	struct memfault_region *r;
	struct kvm_run *brun;
	struct sim_env e;
	struct ctx c;
	double t0, waited;
	int answered;
	/* Under valgrind (CK_TIMEOUT_MULTIPLIER=20) everything is ~20x
	 * slower: the hold and the bound scale with it. */
	const char *mult = getenv("CK_TIMEOUT_MULTIPLIER");
	double f = mult && atof(mult) > 1 ? atof(mult) : 1;

	sim_env_open(&e, sim_models[model].arch, KVMSIM_LEVEL_7_2_UF);
	ctx_init(&c, &e);
	r = uf_region(&c);
	if (mode) {
		sa.sa_flags = mode == 1 ? SA_RESTART : 0;
		sigemptyset(&sa.sa_mask);
		ck_assert_int_eq(sigaction(SIGUSR2, &sa, NULL), 0);
	}
	vmm_kicks_handled = 0;
	a.vcpu = e.vcpu;
	a.fd = e.vcpu_fd;
	b.vt.fd = ioctl(e.vm_fd, KVM_CREATE_VCPU, 1);
	ck_assert_int_eq(memfault_vcpu_new(e.vm, b.vt.fd, &vo, &b.vt.vcpu), 0);
	ck_assert_int_eq(kvmsim_vcpu_set_script_text(a.fd, "load:0x20000000:1"),
			 0);
	ck_assert_int_eq(kvmsim_vcpu_set_script_text(b.vt.fd,
						     "load:0x20000000:1"), 0);
	c.hold = 1;
	pthread_create(&a.t, NULL, hold_thread, &a);
	pthread_mutex_lock(&c.lock);
	while (!c.holding)
		pthread_cond_wait(&c.cond, &c.lock);
	pthread_mutex_unlock(&c.lock);
	pthread_create(&b.vt.t, NULL, waiter_thread, &b);
	usleep(50 * 1000); /* B is asleep in the claim by now */
	ck_assert_int_eq(__atomic_load_n(&b.done, __ATOMIC_ACQUIRE), 0);
	t0 = tc_now();
	errno = 4321; /* the kick's futex wake must not change it */
	ck_assert_int_eq(memfault_vcpu_kick(b.vt.vcpu), 0);
	ck_assert_int_eq(errno, 4321);
	while (!(answered = __atomic_load_n(&b.done, __ATOMIC_ACQUIRE)) &&
	       tc_now() - t0 < 2 * f)
		usleep(100);
	waited = tc_now() - t0;
	/* release A either way: it publishes; B then runs through */
	pthread_mutex_lock(&c.lock);
	c.hold = 0;
	pthread_cond_broadcast(&c.cond);
	pthread_mutex_unlock(&c.lock);
	pthread_join(b.vt.t, NULL);
	pthread_join(a.t, NULL);
	ck_assert_msg(answered, "kick not answered in the page-in wait after %.0f ms (mode %d)",
		      waited * 1e3, mode);
	/* promptly: the bound is generous, a lost kick waits the full 2 s */
	ck_assert_msg(waited < 0.5 * f, "kick answered after %.0f ms",
		      waited * 1e3);
	ck_assert_int_eq(b.vt.result, MEMFAULT_RUN_INTERRUPTED);
	ck_assert_int_eq(memfault_vcpu_get_run(b.vt.vcpu, &brun), 0);
	ck_assert_uint_eq(brun->immediate_exit, 0); /* consumed */
	/* the VMM's handler stays (whether the signal reached it before the
	 * futex wake answered the kick depends on timing: not asserted) */
	if (mode) {
		struct sigaction cur;

		ck_assert_int_eq(sigaction(SIGUSR2, NULL, &cur), 0);
		ck_assert_ptr_eq(cur.sa_handler, on_vmm_kick);
	}
	ck_assert_int_eq(a.result, MEMFAULT_RUN_EXIT);
	ck_assert_int_eq(memfault_vcpu_run_dispatch(b.vt.vcpu), MEMFAULT_RUN_EXIT);
	ck_assert_uint_eq(c.fetches[0], 1);
	memfault_vcpu_free(b.vt.vcpu);
	close(b.vt.fd);
	memfault_region_free(r);
	munmap(c.mem, NPAGES * e.page);
	sim_env_close(&e);
	signal(SIGUSR2, SIG_DFL);
}

START_TEST(kick_while_waiting_for_a_page)
{
	kick_while_waiting(_i, 0);
}
END_TEST

START_TEST(kick_while_waiting_sa_restart)
{
	kick_while_waiting(_i, 1);
}
END_TEST

START_TEST(kick_while_waiting_vmm_handler)
{
	kick_while_waiting(_i, 2);
}
END_TEST

static int
slow_page_in(void *user, struct memfault_vcpu *vcpu, struct memfault_region *r,
	     uint64_t page, void *hva, uint64_t page_size)
{
	(void)user;
	(void)vcpu;
	(void)r;
	(void)page;
	usleep(2000);
	memset(hva, 1, page_size);
	return MEMFAULT_RESOLVED;
}

/*
 * Handler timing only with MEMFAULT_VCPU_TIME_HANDLERS: without it a
 * resolved fault reads no clock and handler_ns stays 0 (a handler that
 * takes 2 ms per call would show); with it, the time is counted.
 */
START_TEST(handler_timing_only_when_asked)
{
	MEMFAULT_OPTS(memfault_vcpu_opts, timed,
		      .flags = MEMFAULT_VCPU_TIME_HANDLERS);
	MEMFAULT_OPTS(memfault_vcpu_opts, unknown, .flags = 1u << 3);
	MEMFAULT_OPTS(memfault_handlers, h, .page_in = slow_page_in);
	struct memfault_vcpu_stats st;
	struct memfault_vcpu *v = NULL;
	struct memfault_region *r;
	struct sim_env e;
	struct ctx c;

	sim_env_open(&e, sim_models[_i].arch, KVMSIM_LEVEL_7_2_UF);
	ctx_init(&c, &e);
	ck_assert_int_eq(memfault_vm_set_handlers(e.vm, &h), 0);
	r = uf_region(&c);
	ck_assert_int_eq(memfault_vcpu_new(e.vm, e.vcpu_fd, &unknown, &v),
			 -EINVAL);
	ck_assert_ptr_null(v);
	/* default: not timed */
	sim_env_script(&e, "load:0x20000000:1;load:0x20001000:1");
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu), MEMFAULT_RUN_EXIT);
	ck_assert_int_eq(memfault_vcpu_get_stats(e.vcpu, &st, sizeof(st)), 0);
	ck_assert_uint_eq(st.page_ins, 2);
	ck_assert_uint_eq(st.handler_ns, 0);
	/* asked for: at least the 2 x 2 ms the handler slept */
	ck_assert_int_eq(memfault_vcpu_new(e.vm, e.vcpu_fd, &timed, &v), 0);
	memfault_vcpu_free(e.vcpu);
	e.vcpu = v;
	sim_env_script(&e, "load:0x20002000:1;load:0x20003000:1");
	ck_assert_int_eq(memfault_vcpu_run_dispatch(e.vcpu), MEMFAULT_RUN_EXIT);
	ck_assert_int_eq(memfault_vcpu_get_stats(e.vcpu, &st, sizeof(st)), 0);
	ck_assert_uint_eq(st.page_ins, 2);
	ck_assert_uint_ge(st.handler_ns, 4000000);
	ck_assert_uint_lt(st.handler_ns, 10000000000ull);
	memfault_region_free(r);
	munmap(c.mem, NPAGES * e.page);
	sim_env_close(&e);
}
END_TEST

/* Equivalence: one vCPU, the same script: the same callbacks and returns. */
static void
equivalence_run(uint32_t arch, char *out, size_t n)
{
	struct memfault_region *r;
	struct sim_env e;
	struct ctx c;
	size_t len;

	sim_env_open(&e, arch, KVMSIM_LEVEL_7_2_UF);
	ctx_init(&c, &e);
	r = uf_region(&c);
	ck_assert_int_eq(sim_env_add_gmem(&e, 2, 1, GUEST_MEMFD_FLAG_MMAP), 0);
	ck_assert_int_eq(kvmsim_poison(e.vm_fd, GMEM_GPA), 0);
	sim_env_script(&e, "load:0x20002000:1;mmio_write:0x10000000:1:acc;"
			   "load:0x20002000:1;load:0x20005000:1;"
			   "load:0x30000000:1;mmio_read:0x10000000:4");
	for (int i = 0; i < 5; i++) {
		int res = memfault_vcpu_run_dispatch(e.vcpu);

		logf_append(&c, "ret", (uint64_t)res, 0);
		if (res == MEMFAULT_RUN_EXIT)
			logf_append(&c, "exit",
				    e.run->exit_reason == KVM_EXIT_SYSTEM_EVENT ?
					    KVM_EXIT_SHUTDOWN :
					    e.run->exit_reason,
				    0);
	}
	len = strlen(c.log);
	ck_assert_uint_lt(len, n);
	memcpy(out, c.log, len + 1);
	memfault_region_free(r);
	munmap(c.mem, NPAGES * e.page);
	sim_env_close(&e);
}

START_TEST(same_callbacks_on_both_arches)
{
	char x[512], a[512];

	equivalence_run(KVMSIM_X86_64, x, sizeof(x));
	equivalence_run(KVMSIM_ARM64, a, sizeof(a));
	ck_assert_str_eq(x, a);
	/* and it is the sequence we expect */
	ck_assert_str_eq(x, "page_in:2;ret:1;exit:6;page_in:5;"
			    "hwpoison:30000000;ret:2;hwpoison:30000000;ret:2;"
			    "hwpoison:30000000;ret:2;hwpoison:30000000;ret:2;");
}
END_TEST

START_TEST(bad_arguments)
{
	MEMFAULT_OPTS(memfault_handlers, h);
	struct memfault_vcpu_stats s;
	struct sim_env e;

	sim_env_open(&e, KVMSIM_X86_64, KVMSIM_LEVEL_7_2);
	ck_assert_int_eq(memfault_vm_set_handlers(NULL, &h), -EINVAL);
	h.reserved = 1;
	ck_assert_int_eq(memfault_vm_set_handlers(e.vm, &h), -EINVAL);
	h.reserved = 0;
	h.sz = 3;
	ck_assert_int_eq(memfault_vm_set_handlers(e.vm, &h), -EINVAL);
	ck_assert_int_eq(memfault_vcpu_run_dispatch(NULL), -EINVAL);
	ck_assert_int_eq(memfault_vcpu_get_stats(NULL, &s, sizeof(s)), -EINVAL);
	ck_assert_int_eq(memfault_vcpu_get_stats(e.vcpu, NULL, sizeof(s)),
			 -EINVAL);
	ck_assert_int_eq(memfault_vcpu_get_stats(e.vcpu, &s, 0), -EINVAL);
	sim_env_close(&e);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("dispatch");
	TCase *tc = tcase_create("dispatch");

	tcase_set_timeout(tc, 60);
	ADD_ON_72(tc, page_in_exactly_once_across_vcpus);
	ADD_ON_72(tc, page_in_failure_and_to_vmm);
	ADD_ON_72(tc, region_hint_follows_setup_calls);
	ADD_ON_72(tc, no_handlers_means_to_vmm);
	ADD_ON_72(tc, repeat_guard);
	ADD_ON_72(tc, hwpoison_goes_to_its_handler);
	ADD_ON_72(tc, no_attributes_no_conversion);
	ADD_ON_72(tc, kick_while_waiting_for_a_page);
	ADD_ON_72(tc, kick_while_waiting_sa_restart);
	ADD_ON_72(tc, kick_while_waiting_vmm_handler);
	ADD_ON_72(tc, handler_timing_only_when_asked);
	ADD_TEST(tc, default_conversion_both_ways_x86);
	ADD_TEST(tc, noop_conversion_goes_to_other);
	ADD_TEST(tc, same_callbacks_on_both_arches);
	ADD_TEST(tc, bad_arguments);
	suite_add_tcase(s, tc);
	return tc_run(s);
}
