/* SPDX-License-Identifier: MIT */
/*
 * Fault injection over the userfaultfd paths (the method of
 * test-faultinject.c, engine fi-case.c): memfault_uffd_new, _register,
 * _add_vcpu, _remove_vcpu, _service and _free, a page-in through a
 * registered region, the bitmap calls and free on one. 77 where
 * userfaultfd is not permitted (root, vm.unprivileged_userfaultfd or
 * access to /dev/userfaultfd is needed). Runs with LD_PRELOAD of
 * libkvmsim.so (see meson.build).
 */
#include "fi-case.h"

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

	KEEP_NEW(r, u, e->uffd);
	return r;
}

static int
op_uffd_new_thread(struct env *e)
{
	MEMFAULT_OPTS(memfault_uffd_opts, o, .flags = MEMFAULT_UFFD_SERVICE_THREAD);
	struct memfault_uffd *u = SENTINEL;
	int r = memfault_uffd_new(e->vm, &o, &u);

	KEEP_NEW(r, u, e->uffd);
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

START_TEST(inject_uffd)
{
	run_case(&uffd_cases[_i]);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("faultinject-uffd");
	TCase *tc = tcase_create("faultinject-uffd");
	int r = fi_case_start();

	if (r)
		return r;
	r = uffd_available();
	if (r)
		return tc_skip(s, "no userfaultfd here (%s)", strerror(-r));
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, inject_uffd, 0,
			    (int)(sizeof(uffd_cases) / sizeof(uffd_cases[0])));
	suite_add_tcase(s, tc);
	return tc_run(s);
}
