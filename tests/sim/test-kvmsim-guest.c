/* SPDX-License-Identifier: MIT */
/*
 * kvmsim's own tests, guest:
 * Guest execution: the script's exits at every level, stores, READONLY
 * and missing slots, an unreadable hva; KVM_RUN entry: immediate_exit,
 * the MMIO read-back, signals during and before KVM_RUN.
 * Each test names its source with the tags of sim-raw.h.
 */
#include "sim-raw.h"

/* ======================================================================
 * Guest execution
 * ====================================================================== */

/*
 * [NK] `basic`: the PIO/MMIO/HLT exits and a load from a normal memslot
 * (x86: OUT, IN, OUT of the value, load from TEST_GPA, OUT, HLT; arm64:
 * MMIO write, MMIO read of 0x1233, write back, load, write), every level.
 */
START_TEST(basic_guest)
{
	uint32_t arch = LOOP_ARCH(_i), level = LOOP_LEVEL(_i);
	struct sim s;
	uint8_t *mem;

	start(&s, arch, level);
	mem = pages(&s, 1, 0x5a);
	ck_assert_int_eq(region1(s.vm, 1, 0, s.test_gpa, s.page, mem), 0);
	if (arch == KVMSIM_X86_64) {
		uint8_t *data = (uint8_t *)s.run + s.page;

		script(&s, fmt("out:0x3f8:1:0x42;in:0x3f8:1;out:0x3f8:1:acc;"
			       "load:%#llx:1;"
			       "out:0x3f8:1:acc;hlt",
			       (unsigned long long)s.test_gpa));
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_IO);
		ck_assert_uint_eq(s.run->io.direction, KVM_EXIT_IO_OUT);
		ck_assert_uint_eq(s.run->io.size, 1);
		ck_assert_uint_eq(s.run->io.port, 0x3f8);
		ck_assert_uint_eq(s.run->io.count, 1);
		ck_assert_uint_eq(s.run->io.data_offset, s.page);
		ck_assert_uint_eq(data[0], 0x42);
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_IO);
		ck_assert_uint_eq(s.run->io.direction, KVM_EXIT_IO_IN);
		data[0] = 0x11;
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_IO);
		ck_assert_uint_eq(s.run->io.direction, KVM_EXIT_IO_OUT);
		ck_assert_uint_eq(data[0], 0x11);
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_IO);
		ck_assert_uint_eq(data[0], 0x5a);
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_HLT);
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_SHUTDOWN);
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_SHUTDOWN);
	} else {
		uint32_t v;

		script(&s, fmt("mmio_write:0x10000000:4:0x42;mmio_read:"
			       "0x10000004:4;"
			       "mmio_write:0x10000008:4:acc;load:%#llx:4;mmio_"
			       "write:0x1000000c:4:acc",
			       (unsigned long long)s.test_gpa));
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
		ck_assert_uint_eq(s.run->mmio.phys_addr, 0x10000000);
		ck_assert_uint_eq(s.run->mmio.len, 4);
		ck_assert_uint_eq(s.run->mmio.is_write, 1);
		memcpy(&v, s.run->mmio.data, 4);
		ck_assert_uint_eq(v, 0x42);
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
		ck_assert_uint_eq(s.run->mmio.phys_addr, 0x10000004);
		ck_assert_uint_eq(s.run->mmio.is_write, 0);
		v = 0x1233;
		memcpy(s.run->mmio.data, &v, 4);
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
		memcpy(&v, s.run->mmio.data, 4);
		ck_assert_uint_eq(v, 0x1233);
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
		memcpy(&v, s.run->mmio.data, 4);
		ck_assert_uint_eq(v, 0x5a5a5a5a);
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_SYSTEM_EVENT);
		ck_assert_uint_eq(s.run->system_event.type,
				  KVM_SYSTEM_EVENT_SHUTDOWN);
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_SYSTEM_EVENT);
	}
	ck_assert_uint_eq(acc_of(&s),
			  arch == KVMSIM_X86_64 ? 0x5a : 0x5a5a5a5a);
	ck_assert_uint_eq(pc_of(&s), arch == KVMSIM_X86_64 ? 6 : 5);
}
END_TEST

/*
 * Stores reach memory; a store to a READONLY
 * slot, and any access without a slot, is MMIO.
 */
START_TEST(stores_readonly_noslot)
{
	uint32_t arch = LOOP_ARCH(_i), level = LOOP_LEVEL(_i);
	struct sim s;
	uint8_t *mem;
	uint64_t v;

	start(&s, arch, level);
	mem = pages(&s, 2, 0);
	ck_assert_int_eq(region1(s.vm, 1, 0, s.test_gpa, s.page, mem), 0);
	ck_assert_int_eq(region1(s.vm, 2, KVM_MEM_READONLY, s.test_gpa + s.page,
				 s.page, mem + s.page),
			 0);
	mem[s.page + 8] = 0x77;
	script(&s, fmt("store:%#llx:8:0x1122334455667788;load:%#llx:2;store:%#"
		       "llx:4:acc;"
		       "load:%#llx:1;store:%#llx:1:acc;load:0x40000000:8;store:"
		       "0x40000000:2:acc",
		       (unsigned long long)s.test_gpa + 16,
		       (unsigned long long)s.test_gpa + 16,
		       (unsigned long long)s.test_gpa + 32,
		       (unsigned long long)s.test_gpa + s.page + 8,
		       (unsigned long long)s.test_gpa + s.page + 8));
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	memcpy(&v, mem + 16, 8);
	ck_assert_uint_eq(v, 0x1122334455667788ull);
	ck_assert_uint_eq(*(uint32_t *)(void *)(mem + 32), 0x7788);
	/* READONLY: the load read memory, the store became an MMIO write */
	ck_assert_uint_eq(s.run->mmio.phys_addr, s.test_gpa + s.page + 8);
	ck_assert_uint_eq(s.run->mmio.is_write, 1);
	ck_assert_uint_eq(s.run->mmio.len, 1);
	ck_assert_uint_eq(s.run->mmio.data[0], 0x77);
	ck_assert_uint_eq(mem[s.page + 8], 0x77);
	/* no memslot: an MMIO read whose data reaches the guest */
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	ck_assert_uint_eq(s.run->mmio.phys_addr, 0x40000000);
	ck_assert_uint_eq(s.run->mmio.is_write, 0);
	ck_assert_uint_eq(s.run->mmio.len, 8);
	v = 0xabcdef0123456789ull;
	memcpy(s.run->mmio.data, &v, 8);
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	ck_assert_uint_eq(s.run->mmio.is_write, 1);
	ck_assert_uint_eq(s.run->mmio.len, 2);
	ck_assert_uint_eq(s.run->mmio.data[0], 0x89);
	ck_assert_uint_eq(s.run->mmio.data[1], 0x67);
	ck_assert_uint_eq(acc_of(&s), 0xabcdef0123456789ull);
}
END_TEST

/*
 * [NK] `badhva`: hva PROT_NONE -> ret=-1
 * errno=EFAULT exit_reason=0, every level.
 */
START_TEST(badhva)
{
	uint32_t arch = LOOP_ARCH(_i), level = LOOP_LEVEL(_i);
	struct kvmsim_stats st;
	struct sim s;
	uint8_t *mem;

	start(&s, arch, level);
	mem = pages(&s, 2, 0x5a);
	ck_assert_int_eq(region1(s.vm, 1, 0, s.test_gpa, 2 * s.page, mem), 0);
	ck_assert_int_eq(mprotect(mem, s.page, PROT_NONE), 0);
	ck_assert_int_eq(munmap(mem + s.page, s.page), 0);
	script(&s,
	       fmt("load:%#llx:1;load:%#llx:1", (unsigned long long)s.test_gpa,
		   (unsigned long long)s.test_gpa + s.page));
	s.run->exit_reason = KVM_EXIT_MMIO; /* stale value: must be reset */
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_UNKNOWN);
	/* the faulting access runs again on the next entry */
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_UNKNOWN);
	ck_assert_uint_eq(pc_of(&s), 0);
	ck_assert_int_eq(mprotect(mem, s.page, PROT_READ), 0);
	/* an unmapped hva is the same bare EFAULT */
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_UNKNOWN);
	ck_assert_uint_eq(pc_of(&s), 1);
	/* a store to a read-only VMA: GUP for write fails */
	script(&s, fmt("store:%#llx:1:1", (unsigned long long)s.test_gpa));
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_UNKNOWN);
	st = stats();
	ck_assert_uint_eq(st.bare_efaults, 4);
	ck_assert_uint_eq(st.memory_faults, 0);
	ck_assert_uint_eq(st.runs, 4);
}
END_TEST

/*
 * [RS] immediate_exit: sampled once; -1/EINTR with exit_reason left
 * stale (STALE_EXIT_ON_IE), after completing the pending MMIO/IO (api.rst
 * "re-enter ... with immediate_exit set to complete pending operations").
 */
START_TEST(immediate_exit_stale)
{
	uint32_t arch = LOOP_ARCH(_i), level = LOOP_LEVEL(_i);
	struct kvmsim_stats st;
	uint32_t before;
	struct sim s;
	uint8_t *mem;

	start(&s, arch, level);
	mem = pages(&s, 1, 0);
	ck_assert_int_eq(
		region1(s.vm, 1, KVM_MEM_READONLY, s.test_gpa, s.page, mem), 0);
	script(&s, "mmio_read:0x1000:4;mmio_write:0x1000:4:acc");
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	s.run->mmio.data[0] = 0x44;
	s.run->immediate_exit = 1;
	RUN_EXPECT(&s, -1, EINTR, KVM_EXIT_MMIO);
	ck_assert_uint_eq(acc_of(&s), 0x44); /* completed */
	ck_assert_uint_eq(pc_of(&s), 1);
	/* again: still stale, nothing more */
	RUN_EXPECT(&s, -1, EINTR, KVM_EXIT_MMIO);
	s.run->immediate_exit = 0;
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	ck_assert_uint_eq(s.run->mmio.is_write, 1);
	ck_assert_uint_eq(s.run->mmio.data[0], 0x44);

	/*
	 * a memory-fault exit stays stale too
	 * (which is why the library resets it)
	 */
	script(&s,
	       fmt("store:%#llx:1:1:private", (unsigned long long)s.test_gpa));
	run(&s);
	if (arch == KVMSIM_X86_64) {
		ck_assert_int_eq(s.err, EFAULT);
		ck_assert_uint_eq(s.run->exit_reason,
				  level >= KVMSIM_LEVEL_6_8
					  ? KVM_EXIT_MEMORY_FAULT
					  : KVM_EXIT_UNKNOWN);
	} else {
		/* RO slot */
		ck_assert_uint_eq(s.run->exit_reason, KVM_EXIT_MMIO);
	}
	before = s.run->exit_reason;
	s.run->immediate_exit = 1;
	RUN_EXPECT(&s, -1, EINTR, before);
	st = stats();
	ck_assert_uint_ge(st.immediate_exits, 3);

	/* quirk off: KVM_EXIT_INTR */
	start_full(&s, arch, level,
		   kvmsim_default_quirks(arch, level) &
			   ~KVMSIM_Q_STALE_EXIT_ON_IE,
		   0);
	script(&s, "mmio_read:0x1000:4");
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	s.run->immediate_exit = 1;
	RUN_EXPECT(&s, -1, EINTR, KVM_EXIT_INTR);
}
END_TEST

/*
 * [RS] arm64 completes a pending MMIO access only if exit_reason is
 * still KVM_EXIT_MMIO, else the instruction runs again (the same exit, the
 * data never reaches the guest); x86 completes regardless.
 */
START_TEST(mmio_readback)
{
	uint32_t arch = LOOP_ARCH(_i), level = LOOP_LEVEL(_i);
	struct sim s;

	start(&s, arch, level);
	script(&s, "mmio_read:0x1000:4;mmio_write:0x2000:4:acc");
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	s.run->mmio.data[0] = 0x99;
	/* what a careless wrapper does */
	s.run->exit_reason = KVM_EXIT_UNKNOWN;
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	if (arch == KVMSIM_ARM64) {
		/* re-executed: the read again, nothing delivered */
		ck_assert_uint_eq(s.run->mmio.phys_addr, 0x1000);
		ck_assert_uint_eq(s.run->mmio.is_write, 0);
		ck_assert_uint_eq(acc_of(&s), 0);
		ck_assert_uint_eq(stats().reexecutions, 1);
		/* a write is repeated the same way */
		s.run->mmio.data[0] = 0x98;
		/* exit_reason left alone: completes */
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
		ck_assert_uint_eq(s.run->mmio.phys_addr, 0x2000);
		ck_assert_uint_eq(s.run->mmio.data[0], 0x98);
		s.run->exit_reason = KVM_EXIT_MEMORY_FAULT;
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
		ck_assert_uint_eq(s.run->mmio.phys_addr, 0x2000);
		ck_assert_uint_eq(pc_of(&s), 1);
	} else {
		ck_assert_uint_eq(s.run->mmio.phys_addr, 0x2000);
		ck_assert_uint_eq(s.run->mmio.data[0], 0x99);
		ck_assert_uint_eq(acc_of(&s), 0x99);
		ck_assert_uint_eq(stats().reexecutions, 0);
	}
	if (arch == KVMSIM_ARM64) {
		/* quirk off: completes regardless, like x86 */
		start_full(&s, arch, level,
			   kvmsim_default_quirks(arch, level) &
				   ~KVMSIM_Q_MMIO_READBACK,
			   0);
		script(&s, "mmio_read:0x1000:4;mmio_write:0x2000:4:acc");
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
		s.run->mmio.data[0] = 0x99;
		s.run->exit_reason = KVM_EXIT_UNKNOWN;
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
		ck_assert_uint_eq(s.run->mmio.phys_addr, 0x2000);
		ck_assert_uint_eq(acc_of(&s), 0x99);
	}
}
END_TEST

/* ---- signals ---- */

static int got_usr1; /* atomic: handlers run on several threads */
/* per thread: pthread_kill targets */
static __thread volatile sig_atomic_t my_usr1;

static void
on_usr1(int sig)
{
	(void)sig;
	__atomic_fetch_add(&got_usr1, 1, __ATOMIC_RELAXED);
	my_usr1++;
}

struct spinner {
	struct sim *s;
	int vcpu;
	bool own_mask; /* block SIGUSR1, let KVM_SET_SIGNAL_MASK open it */
	int ret, err;
	uint32_t reason;
	/* handler runs on this thread when the ioctl returned */
	int seen;
	int done; /* atomic */
};

static void *
spin_thread(void *p)
{
	struct spinner *t = p;
	struct kvm_run *run = mmap(NULL, t->s->run_size, PROT_READ | PROT_WRITE,
				   MAP_SHARED, t->vcpu, 0);
	struct {
		uint32_t len;
		uint8_t sigset[8];
	} km = { 8, { 0 } };

	if (run == MAP_FAILED)
		return NULL;
	if (t->own_mask) {
		sigset_t blk;

		sigemptyset(&blk);
		sigaddset(&blk, SIGUSR1);
		pthread_sigmask(SIG_BLOCK, &blk, NULL);
		if (ioctl(t->vcpu, KVM_SET_SIGNAL_MASK, &km))
			return NULL;
	}
	t->ret = ioctl(t->vcpu, KVM_RUN, 0);
	t->err = errno;
	t->seen = my_usr1;
	t->reason = run->exit_reason;
	munmap(run, t->s->run_size);
	__atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void
install_usr1(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
	__atomic_store_n(&got_usr1, 0, __ATOMIC_RELAXED);
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/*
 * [RS] "Signals": a signal ends KVM_RUN with -1/EINTR and
 * KVM_EXIT_INTR, and its handler runs before the ioctl returns. Four vCPU
 * threads spin in the guest at once (so no global lock is held while one
 * spins); two use the caller's mask, two KVM_SET_SIGNAL_MASK. An
 * immediate_exit set meanwhile does not stop a running guest.
 */
START_TEST(signal_during_spin)
{
	uint32_t arch = (uint32_t)_i + 1;
	struct spinner t[4];
	pthread_t th[4];
	struct sim s;

	start(&s, arch, KVMSIM_LEVEL_7_2);
	install_usr1();
	for (int i = 0; i < 4; i++) {
		memset(&t[i], 0, sizeof(t[i]));
		t[i].s = &s;
		t[i].own_mask = i >= 2;
		t[i].vcpu = i ? ioctl(s.vm, KVM_CREATE_VCPU, (unsigned long)i)
			      : s.vcpu;
		ck_assert_int_ge(t[i].vcpu, 0);
		ck_assert_int_eq(kvmsim_vcpu_set_script_text(t[i].vcpu, "spin"),
				 0);
		ck_assert_int_eq(
			pthread_create(&th[i], NULL, spin_thread, &t[i]), 0);
	}
	/* all four inside KVM_RUN at the same time */
	for (int i = 0; i < 4; i++)
		while (kvmsim_vcpu_get_state(t[i].vcpu, NULL, NULL) != -EBUSY)
			sleep_ms(1);
	ck_assert_int_eq(kvmsim_vcpu_set_script_text(s.vcpu, "spin"), -EBUSY);
	s.run->immediate_exit = 1;
	sleep_ms(20);
	ck_assert_int_eq(__atomic_load_n(&t[0].done, __ATOMIC_ACQUIRE), 0);
	for (int i = 0; i < 4; i++) {
		/*
		 * A signal that lands before the thread
		 * blocked signals in KVM_RUN runs its handler
		 * outside; send until one lands inside.
		 */
		for (int n = 0; !__atomic_load_n(&t[i].done, __ATOMIC_ACQUIRE);
		     n++) {
			ck_assert_int_lt(n, 500);
			ck_assert_int_eq(pthread_kill(th[i], SIGUSR1), 0);
			sleep_ms(10);
		}
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);
		ck_assert_int_eq(t[i].ret, -1);
		ck_assert_int_eq(t[i].err, EINTR);
		ck_assert_uint_eq(t[i].reason, KVM_EXIT_INTR);
		/* the handler ran before the return */
		ck_assert_int_ge(t[i].seen, 1);
		ck_assert_int_eq(kvmsim_vcpu_get_state(t[i].vcpu, NULL, NULL),
				 0);
	}
	ck_assert_uint_ge(stats().signal_exits, 4);
	/*
	 * a spin never advances; immediate_exit still set -> EINTR, stale INTR
	 */
	RUN_EXPECT(&s, -1, EINTR, KVM_EXIT_INTR);
	ck_assert_uint_eq(pc_of(&s), 0);
}
END_TEST

/*
 * A deliverable pending signal stops KVM_RUN before the guest runs
 * (x86 vcpu_run() / arm64 run loop); a blocked one does not; with
 * KVM_SET_SIGNAL_MASK the vCPU's mask applies inside KVM_RUN.
 */
START_TEST(signal_pending_and_sigmask)
{
	uint32_t arch = (uint32_t)_i + 1;
	struct {
		uint32_t len;
		uint8_t sigset[8];
	} km = { 8, { 0 } };
	sigset_t blk, old;
	struct sim s;

	start(&s, arch, KVMSIM_LEVEL_7_2);
	install_usr1();
	script(&s, "mmio_write:0x1000:1:1");
	sigemptyset(&blk);
	sigaddset(&blk, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &blk, &old);
	raise(SIGUSR1);
	/* blocked: not delivered, the guest runs */
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	/* the vCPU's own mask (empty) unblocks it inside KVM_RUN */
	ck_assert_int_eq(ioctl(s.vcpu, KVM_SET_SIGNAL_MASK, &km), 0);
	RUN_EXPECT(&s, -1, EINTR, KVM_EXIT_INTR);
	/* still blocked outside */
	ck_assert_int_eq(__atomic_load_n(&got_usr1, __ATOMIC_RELAXED), 0);
	ck_assert_uint_eq(pc_of(&s), 1);
	km.len = 4;
	ck_assert_int_eq(ioctl(s.vcpu, KVM_SET_SIGNAL_MASK, &km), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(ioctl(s.vcpu, KVM_SET_SIGNAL_MASK, NULL), 0);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	ck_assert_int_eq(__atomic_load_n(&got_usr1, __ATOMIC_RELAXED), 1);
	RUN_EXPECT(&s, 0, 0,
		   arch == KVMSIM_X86_64 ? KVM_EXIT_SHUTDOWN
					 : KVM_EXIT_SYSTEM_EVENT);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("kvmsim-guest");
	TCase *tc;

	tc = tcase_create("guest");
	tcase_add_loop_test(tc, basic_guest, 0, 8);
	tcase_add_loop_test(tc, stores_readonly_noslot, 0, 8);
	tcase_add_loop_test(tc, badhva, 0, 8);
	suite_add_tcase(s, tc);

	tc = tcase_create("entry");
	tcase_add_loop_test(tc, immediate_exit_stale, 0, 8);
	tcase_add_loop_test(tc, mmio_readback, 0, 8);
	tcase_add_loop_test(tc, signal_during_spin, 0, 2);
	tcase_add_loop_test(tc, signal_pending_and_sigmask, 0, 2);
	suite_add_tcase(s, tc);
	return tc_run(s);
}
