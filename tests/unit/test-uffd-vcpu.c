/* SPDX-License-Identifier: MIT */
/*
 * userfaultfd backend, arguments and vCPUs: bad arguments of every
 * memfault_uffd_* call, per-vCPU attribution, and the combined mode on the
 * simulator's "7.2 + KVM Userfault v3" model: KVM Userfault exits and
 * userfaultfd faults on the same region, every page fetched exactly once;
 * a KVM failure wakes the host's waiters. The fixture is uffd-fixture.c.
 *
 * Exits 77 (skip) where userfaultfd is not permitted or not implemented
 * (unprivileged with vm.unprivileged_userfaultfd=0, qemu-user).
 */
#include "uffd-fixture.h"

/* ---- arguments ---- */

START_TEST(bad_arguments)
{
	struct memfault_uffd_stats s;
	struct memfault_region *r2, *nohva;
	struct memfault_uffd *u = (struct memfault_uffd *)&s;
	MEMFAULT_OPTS(memfault_vm_opts, vo, .arch = KVMSIM_X86_64);
	struct memfault_vm *ovm;
	struct memfault_vcpu *ovcpu;
	int ovm_fd, ovcpu_fd;
	struct memfault_region *foreign;
	char *anon2;
	MEMFAULT_OPTS(memfault_region_opts, ro,
		      .flags = MEMFAULT_REGION_NO_MEMSLOT);
	MEMFAULT_OPTS(memfault_uffd_opts, o);
	struct {
		struct memfault_uffd_opts o;
		uint64_t extra;
	} big;

	fx_open(&F, KVMSIM_X86_64, KVMSIM_LEVEL_7_2);
	fx_memory(&F, MEMFAULT_UFFD_MISSING, 8);
	fx_region(&F, MEMFAULT_REGION_NO_MEMSLOT, 0);

	/* memfault_uffd_new() */
	ck_assert_int_eq(memfault_uffd_new(NULL, NULL, &u), -EINVAL);
	ck_assert_int_eq(memfault_uffd_new(F.e.vm, NULL, NULL), -EINVAL);
	o.sz = 3;
	ck_assert_int_eq(memfault_uffd_new(F.e.vm, &o, &u), -EINVAL);
	o.sz = sizeof(o);
	o.flags = 1u << 7;
	ck_assert_int_eq(memfault_uffd_new(F.e.vm, &o, &u), -EINVAL);
	o.flags = 0;
	o.reserved = 1;
	ck_assert_int_eq(memfault_uffd_new(F.e.vm, &o, &u), -EINVAL);
	memset(&big, 0, sizeof(big));
	big.o.sz = sizeof(big);
	big.extra = 1; /* a newer caller's option we do not know */
	ck_assert_int_eq(memfault_uffd_new(F.e.vm, &big.o, &u), -EINVAL);
	ck_assert_ptr_eq(u, (struct memfault_uffd *)&s); /* not written */
	big.extra = 0;
	ck_assert_int_eq(memfault_uffd_new(F.e.vm, &big.o, &F.u), 0);

	/* memfault_uffd_register() */
	ck_assert_int_eq(memfault_uffd_register(NULL, F.r,
						MEMFAULT_UFFD_MISSING, NULL),
			 -EINVAL);
	ck_assert_int_eq(memfault_uffd_register(F.u, NULL,
						MEMFAULT_UFFD_MISSING, NULL),
			 -EINVAL);
	ck_assert_int_eq(memfault_uffd_register(F.u, F.r, 0, NULL), -EINVAL);
	ck_assert_int_eq(memfault_uffd_register(F.u, F.r, 3, NULL), -EINVAL);
	ck_assert_int_eq(memfault_uffd_register(F.u, F.r,
						MEMFAULT_UFFD_MISSING,
						F.mem + 8 * F.ps),
			 -EINVAL);
	ck_assert_int_eq(memfault_uffd_register(F.u, F.r, MEMFAULT_UFFD_MINOR,
						NULL),
			 -EINVAL);
	/* misaligned alias, alias over the region itself */
	ck_assert_int_eq(memfault_uffd_register(F.u, F.r, MEMFAULT_UFFD_MINOR,
						F.mem + 8 * F.ps + 1),
			 -EINVAL);
	ck_assert_int_eq(memfault_uffd_register(F.u, F.r, MEMFAULT_UFFD_MINOR,
						F.mem + F.ps),
			 -EINVAL);
	/* MINOR on anonymous memory: the kernel refuses */
	anon2 = mmap(NULL, 8 * F.ps, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(anon2, MAP_FAILED);
	ck_assert_int_eq(memfault_uffd_register(F.u, F.r, MEMFAULT_UFFD_MINOR,
						anon2),
			 -EINVAL);
	/* a region without host memory */
	ck_assert_int_eq(memfault_region_new(F.e.vm, 0, RAM_GPA + (1ull << 30),
					     8 * F.ps, NULL, &ro, &nohva), 0);
	ck_assert_int_eq(memfault_uffd_register(F.u, nohva,
						MEMFAULT_UFFD_MISSING, NULL),
			 -EINVAL);
	/* a region of another VM */
	ovm_fd = ioctl(F.e.kvm_fd, KVM_CREATE_VM, 0);
	ck_assert_int_ge(ovm_fd, 0);
	ovcpu_fd = ioctl(ovm_fd, KVM_CREATE_VCPU, 0);
	ck_assert_int_ge(ovcpu_fd, 0);
	ck_assert_int_eq(memfault_vm_new(ovm_fd, &vo, &ovm), 0);
	ck_assert_int_eq(memfault_vcpu_new(ovm, ovcpu_fd, NULL, &ovcpu), 0);
	ck_assert_int_eq(memfault_region_new(ovm, 0, RAM_GPA, 8 * F.ps,
					     anon2, &ro, &foreign), 0);
	ck_assert_int_eq(memfault_uffd_register(F.u, foreign,
						MEMFAULT_UFFD_MISSING, NULL),
			 -EINVAL);
	ck_assert_int_eq(memfault_uffd_add_vcpu(F.u, ovcpu), -EINVAL);

	/* nothing changed: no page of the region is trapped */
	stats_settled(&F, &s);
	ck_assert_uint_eq(s.faults, 0);
	ck_assert_int_eq(memfault_uffd_register(F.u, F.r,
						MEMFAULT_UFFD_MISSING, NULL),
			 0);
	/* double register, and a second region over the same memory */
	ck_assert_int_eq(memfault_uffd_register(F.u, F.r,
						MEMFAULT_UFFD_MISSING, NULL),
			 -EEXIST);
	ck_assert_int_eq(memfault_region_new(F.e.vm, 0, RAM_GPA + (2ull << 30),
					     8 * F.ps, F.mem + 4 * F.ps, &ro,
					     &r2), 0);
	ck_assert_int_eq(memfault_uffd_register(F.u, r2,
						MEMFAULT_UFFD_MISSING, NULL),
			 -EEXIST);
	memfault_region_free(r2);

	/* the other calls */
	ck_assert_int_eq(memfault_uffd_get_fd(NULL), -EINVAL);
	ck_assert_int_ge(memfault_uffd_get_fd(F.u), 0);
	ck_assert_int_eq(memfault_uffd_service(NULL, 1), -EINVAL);
	ck_assert_int_eq(memfault_uffd_service(F.u, 0), -EINVAL);
	ck_assert_int_eq(memfault_uffd_service(F.u, 1), 0); /* none queued */
	ck_assert_int_eq(memfault_uffd_get_stats(NULL, &s, sizeof(s)), -EINVAL);
	ck_assert_int_eq(memfault_uffd_get_stats(F.u, NULL, sizeof(s)), -EINVAL);
	ck_assert_int_eq(memfault_uffd_get_stats(F.u, &s, 0), -EINVAL);
	ck_assert_int_eq(memfault_uffd_add_vcpu(NULL, F.e.vcpu), -EINVAL);
	ck_assert_int_eq(memfault_uffd_add_vcpu(F.u, NULL), -EINVAL);
	ck_assert_int_eq(memfault_uffd_remove_vcpu(F.u, F.e.vcpu), -ENOENT);
	ck_assert_int_eq(memfault_uffd_add_vcpu(F.u, F.e.vcpu), 0);
	ck_assert_int_eq(memfault_uffd_add_vcpu(F.u, F.e.vcpu), -EEXIST);
	ck_assert_int_eq(memfault_uffd_remove_vcpu(F.u, F.e.vcpu), 0);
	ck_assert_int_eq(memfault_uffd_remove_vcpu(F.u, F.e.vcpu), -ENOENT);
	ck_assert_int_eq(memfault_uffd_remove_vcpu(NULL, F.e.vcpu), -EINVAL);
	memfault_uffd_free(NULL);

	/* the registration still works, served by the caller */
	fx_start_poller(&F);
	check_all_pages_once(&F);
	fx_stop_poller(&F);
	ck_assert_int_eq(memfault_uffd_get_stats(F.u, &s, 8), 0);
	ck_assert_uint_eq(s.features & ~(uint64_t)(UFFD_FEATURE_THREAD_ID |
						   UFFD_FEATURE_MISSING_SHMEM |
						   UFFD_FEATURE_MINOR_SHMEM |
						   UFFD_FEATURE_POISON),
			  0);

	/* freeing the region first unregisters it */
	memfault_region_free(F.r);
	F.r = NULL;
	memfault_region_free(nohva);
	memfault_region_free(foreign);
	memfault_vcpu_free(ovcpu);
	memfault_vm_free(ovm);
	close(ovcpu_fd);
	close(ovm_fd);
	munmap(anon2, 8 * F.ps);
	fx_close(&F);
}
END_TEST

/* ---- vCPUs ---- */

static void
script_pages(int fd, size_t npages, int k)
{
	char text[CPAGES * 32];
	size_t n = 0;

	text[0] = 0;
	for (size_t i = 0; i < npages; i++) {
		uint64_t p = (i * 5 + (size_t)k * 11) % npages;

		n += (size_t)snprintf(text + n, sizeof(text) - n,
				      "load:%#llx:1;",
				      (unsigned long long)(RAM_GPA + p * F.ps));
	}
	ck_assert_int_eq(kvmsim_vcpu_set_script_text(fd, text), 0);
}

/*
 * Without KVM Userfault (7.2): the simulated KVM reads guest memory through
 * the hva in the vCPU thread, which faults on userfaultfd. Attributed to
 * the vCPU once it is added: page_in() gets it, its stats count the wait.
 */
START_TEST(vcpu_attribution)
{
	struct memfault_vcpu_stats vs;
	struct memfault_uffd_stats s;
	struct kvm_run *run;

	fx_open(&F, sim_models[_i].arch, KVMSIM_LEVEL_7_2);
	fx_memory(&F, MEMFAULT_UFFD_MISSING, 16);
	fx_region(&F, 0, 1); /* a real memslot, no KVM Userfault */
	fx_uffd(&F, MODE_THREAD);
	ck_assert_int_eq(memfault_uffd_add_vcpu(F.u, F.e.vcpu), 0);
	script_pages(F.e.vcpu_fd, 8, 0);
	ck_assert_int_eq(memfault_vcpu_run_dispatch(F.e.vcpu),
			 MEMFAULT_RUN_EXIT);
	memfault_vcpu_get_run(F.e.vcpu, &run);
	ck_assert(run->exit_reason == KVM_EXIT_SHUTDOWN ||
		  run->exit_reason == KVM_EXIT_SYSTEM_EVENT);
	/* the last load read page (7 * 5) % 8 = 3, byte 0 */
	ck_assert_uint_eq(sim_env_acc(&F.e), pattern_word(3, 0) & 0xff);
	settle(&F);
	ck_assert_int_eq(memfault_vcpu_get_stats(F.e.vcpu, &vs, sizeof(vs)),
			 0);
	ck_assert_uint_eq(vs.uffd_faults, 8);
	ck_assert_uint_gt(vs.uffd_wait_ns, 0);
	ck_assert_uint_eq(vs.userfaults, 0);
	for (size_t p = 0; p < 8; p++) {
		ck_assert_ptr_eq(__atomic_load_n(&F.seen_vcpu[p],
						 __ATOMIC_RELAXED),
				 F.e.vcpu);
		ck_assert_uint_eq(LD(F.fetches[p]), 1);
	}
	/* other threads are not attributed */
	ck_assert_int_eq(memfault_uffd_remove_vcpu(F.u, F.e.vcpu), 0);
	for (size_t p = 8; p < 16; p++) {
		ck_assert(page_ok(F.mem + p * F.ps, p, F.ps));
		ck_assert_ptr_null(__atomic_load_n(&F.seen_vcpu[p],
						   __ATOMIC_RELAXED));
	}
	stats_settled(&F, &s);
	ck_assert_uint_eq(s.page_ins, 16);
	ck_assert_int_eq(memfault_vcpu_get_stats(F.e.vcpu, &vs, sizeof(vs)),
			 0);
	ck_assert_uint_eq(vs.uffd_faults, 8);
	fx_close(&F);
}
END_TEST

/*
 * Combined mode, "7.2 + KVM Userfault v3": simulated vCPUs take KVM
 * Userfault exits (memfault_vcpu_run_dispatch()) while host threads take
 * userfaultfd faults on the same region. Each page is fetched exactly
 * once, whichever side faults first, and both see the same bytes.
 */
START_TEST(combined_kvm_and_uffd)
{
	uint32_t mode = _i % 2 ? MEMFAULT_UFFD_MINOR : MEMFAULT_UFFD_MISSING;
	uint32_t arch = _i / 2 ? KVMSIM_ARM64 : KVMSIM_X86_64;
	struct vcpu_thread vt[CVCPUS];
	struct toucher t[CHOSTS];
	struct memfault_uffd_stats s;
	uint64_t kvm_ins = 0, waits = 0, ufs = 0;

	fx_open(&F, arch, KVMSIM_LEVEL_7_2_UF);
	fx_memory(&F, mode, CPAGES);
	fx_region(&F, MEMFAULT_REGION_USERFAULT, 1);
	fx_uffd(&F, MODE_THREAD);
	for (int i = 0; i < CVCPUS; i++) {
		vt[i].fd = ioctl(F.e.vm_fd, KVM_CREATE_VCPU, i + 1);
		ck_assert_int_ge(vt[i].fd, 0);
		ck_assert_int_eq(memfault_vcpu_new(F.e.vm, vt[i].fd, NULL,
						   &vt[i].vcpu), 0);
		script_pages(vt[i].fd, CPAGES, i);
	}
	for (int i = 0; i < CVCPUS; i++)
		ck_assert_int_eq(pthread_create(&vt[i].t, NULL, run_to_end,
						&vt[i]), 0);
	for (int k = 0; k < CHOSTS; k++) {
		t[k] = (struct toucher){ .f = &F, .seed = 3u * (unsigned)k + 11,
					 .n = CPAGES };
		ck_assert_int_eq(pthread_create(&t[k].t, NULL, touch_random,
						&t[k]), 0);
	}
	for (int k = 0; k < CHOSTS; k++) {
		pthread_join(t[k].t, NULL);
		ck_assert_int_eq(t[k].bad, 0);
	}
	for (int i = 0; i < CVCPUS; i++) {
		struct memfault_vcpu_stats vs;
		struct kvm_run *run;
		uint64_t acc;
		uint64_t lastp = ((CPAGES - 1) * 5 + (size_t)i * 11) % CPAGES;

		pthread_join(vt[i].t, NULL);
		ck_assert_int_eq(vt[i].result, MEMFAULT_RUN_EXIT);
		memfault_vcpu_get_run(vt[i].vcpu, &run);
		ck_assert(run->exit_reason == KVM_EXIT_SHUTDOWN ||
			  run->exit_reason == KVM_EXIT_SYSTEM_EVENT);
		ck_assert_int_eq(kvmsim_vcpu_get_state(vt[i].fd, &acc, NULL),
				 0);
		ck_assert_uint_eq(acc, pattern_word(lastp, 0) & 0xff);
		ck_assert_int_eq(memfault_vcpu_get_stats(vt[i].vcpu, &vs,
							 sizeof(vs)), 0);
		kvm_ins += vs.page_ins;
		waits += vs.page_waits;
		ufs += vs.userfaults;
		memfault_vcpu_free(vt[i].vcpu);
		close(vt[i].fd);
	}
	check_all_pages_once(&F);
	stats_settled(&F, &s);
	ck_assert_uint_eq(s.kvm_page_ins, kvm_ins);
	ck_assert_uint_eq(s.page_ins + s.kvm_page_ins, CPAGES);
	ck_assert_uint_eq(LD(F.by_vcpu), kvm_ins);
	ck_assert_uint_eq(LD(F.by_host), s.page_ins);
	ck_assert_uint_eq(kvm_ins + waits, ufs);
	ck_assert_uint_eq(s.errors, 0);
	ck_assert_int_eq(F.log_errors, 0);
	fx_close(&F);
}
END_TEST

static void *
touch_one(void *arg)
{
	struct toucher *t = arg;

	if (!page_ok(t->f->mem, 0, t->f->ps))
		t->bad++;
	__atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * A KVM Userfault page-in fails while a host thread waits on the same page
 * (its fault found the page being fetched): the vCPU gets the error, the
 * host thread is woken and fetches the page itself.
 */
START_TEST(kvm_failure_wakes_host_waiters)
{
	struct memfault_uffd_stats s;
	struct vcpu_thread vt;
	struct toucher t;

	fx_open(&F, KVMSIM_X86_64, KVMSIM_LEVEL_7_2_UF);
	fx_memory(&F, _i ? MEMFAULT_UFFD_MINOR : MEMFAULT_UFFD_MISSING, 4);
	fx_region(&F, MEMFAULT_REGION_USERFAULT, 1);
	F.hold_vcpu = 1;
	F.fail_page = 0;
	F.fail_ret = -EIO;
	F.fail_left = 1;
	fx_uffd(&F, MODE_THREAD);
	vt.vcpu = F.e.vcpu;
	sim_env_script(&F.e, "load:0x20000000:1");
	ck_assert_int_eq(pthread_create(&vt.t, NULL, run_to_end, &vt), 0);
	pthread_mutex_lock(&F.lock);
	while (!F.holding)
		pthread_cond_wait(&F.cond, &F.lock);
	pthread_mutex_unlock(&F.lock);

	t = (struct toucher){ .f = &F };
	ck_assert_int_eq(pthread_create(&t.t, NULL, touch_one, &t), 0);
	do { /* the host fault finds the page busy */
		usleep(1000);
		ck_assert_int_eq(memfault_uffd_get_stats(F.u, &s, sizeof(s)),
				 0);
	} while (s.waits < 1);
	ck_assert_int_eq(__atomic_load_n(&t.done, __ATOMIC_ACQUIRE), 0);

	pthread_mutex_lock(&F.lock);
	F.hold_vcpu = 0;
	pthread_cond_broadcast(&F.cond);
	pthread_mutex_unlock(&F.lock);
	pthread_join(vt.t, NULL);
	pthread_join(t.t, NULL);
	ck_assert_int_eq(vt.result, -EIO);
	ck_assert_int_eq(t.bad, 0);
	ck_assert_uint_eq(LD(F.fetches[0]), 1);
	ck_assert_uint_eq(LD(F.by_host), 1);
	stats_settled(&F, &s);
	ck_assert_int_eq(memfault_region_is_missing(F.r, 0), 0);
	ck_assert_uint_eq(s.page_ins, 1);
	ck_assert_uint_eq(s.kvm_page_ins, 0);
	ck_assert_uint_eq(s.errors, 0); /* the vCPU's error is its own */
	fx_close(&F);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("uffd-vcpu");
	TCase *tc = tcase_create("uffd-vcpu");
	char why[256];

	if (tc_uffd_usable(why, sizeof(why)))
		return tc_skip(s, "%s", why);
	tcase_set_timeout(tc, 60);
	ADD_TEST(tc, bad_arguments);
	ADD_ON_72(tc, vcpu_attribution);
	tcase_add_loop_test(tc, combined_kvm_and_uffd, 0, 4);
	tcase_add_loop_test(tc, kvm_failure_wakes_host_waiters, 0, 2);
	suite_add_tcase(s, tc);
	return tc_run(s);
}
