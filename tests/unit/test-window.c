/* SPDX-License-Identifier: MIT */
/*
 * Re-arming pages while vCPUs and host threads run (issue 16 items 1 and
 * 5), on the simulator's "7.2 + KVM Userfault" model for x86_64 and arm64:
 *
 * - the window scenario of window.h, WINDOW_ITERS load attempts per
 *   variant and arch (10^5; MEMFAULT_SOAK=1: 10^6): 0 leaks. Its detector
 *   is itself tested: the flag toggle memfault_region_mark_missing() used
 *   to do (KVM_MEM_USERFAULT off and on), run as the re-marker, must leak;
 * - a page KVM has mapped takes its exit after memfault_region_mark_missing()
 *   returns (the simulator, like the kernel, ignores a bit set on a mapped
 *   page until the mapping is invalidated), for anonymous memory, a memfd
 *   and guest_memfd slots; KVM_MEM_USERFAULT is never turned off;
 * - userfaultfd MISSING mode: 8 threads read one page, 50 rounds, the page
 *   marked missing again before each: every read sees fetched contents
 *   (never a zero page) and each round fetches it exactly once;
 * - an unreadable bitmap (arm64 reports it as a userfault of the page,
 *   x86 as a bare EFAULT): dispatch ends, bounded, with -ELOOP or -EFAULT.
 *
 * `test-window uffd` runs the userfaultfd case alone and exits 77 (skip)
 * where userfaultfd is not permitted or not implemented.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>

#include <linux/userfaultfd.h>

#include "sim-env.h"
#include "test-common.h"
#include "window.h"

#define WPAGES 4

/*
 * clock_gettime() of this executable, which the library's calls bind to
 * (it calls libc's through its PLT): counts the calls made from inside
 * libmemfault, then does what libc's does.
 */
static unsigned long lib_clock_reads;

int
clock_gettime(clockid_t id, struct timespec *ts)
{
	Dl_info di;

	if (dladdr(__builtin_return_address(0), &di) && di.dli_fname &&
	    strstr(di.dli_fname, "libmemfault"))
		__atomic_add_fetch(&lib_clock_reads, 1, __ATOMIC_RELAXED);
	return (int)syscall(SYS_clock_gettime, id, ts);
}

static uint64_t
window_iters(void)
{
	const char *v = getenv("MEMFAULT_SOAK");

	return v && *v == '1' ? 1000000 : 100000;
}

struct wenv {
	struct sim_env e;
	struct memfault_region *r;
	unsigned char *mem;
	struct kvmsim_step step; /* load of the watched page */
	uint64_t gpa;
	uint32_t slot;
	unsigned long *bitmap; /* the region's, for the old toggle */
};

static uint32_t
done_reason(const struct wenv *w)
{
	return w->e.arch == KVMSIM_X86_64 ? KVM_EXIT_SHUTDOWN
					  : KVM_EXIT_SYSTEM_EVENT;
}

static void
wenv_open(struct wenv *w, uint32_t arch, uint64_t page)
{
	MEMFAULT_OPTS(memfault_region_opts, o,
		      .flags = MEMFAULT_REGION_USERFAULT |
			       MEMFAULT_REGION_MISSING);
	struct memfault_region_info info;

	memset(w, 0, sizeof(*w));
	sim_env_open(&w->e, arch, KVMSIM_LEVEL_7_2_UF);
	w->mem = mmap(NULL, WPAGES * w->e.page, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(w->mem, MAP_FAILED);
	w->slot = 1;
	ck_assert_int_eq(memfault_region_new(w->e.vm, w->slot, RAM_GPA,
					     WPAGES * w->e.page, w->mem, &o,
					     &w->r),
			 0);
	ck_assert_int_eq(memfault_region_get_info(w->r, &info, sizeof(info)),
			 0);
	w->bitmap = (unsigned long *)(uintptr_t)info.bitmap;
	w->gpa = RAM_GPA + page * w->e.page;
	w->step = (struct kvmsim_step){ .op = KVMSIM_OP_LOAD,
					.gpa = w->gpa,
					.len = 8 };
	ck_assert_int_eq(kvmsim_vcpu_set_script(w->e.vcpu_fd, &w->step, 1), 0);
}

static void
wenv_close(struct wenv *w)
{
	memfault_region_free(w->r);
	munmap(w->mem, WPAGES * w->e.page);
	sim_env_close(&w->e);
}

/* window.h load(): one memfault_vcpu_run() of the one-load script. */
static int
sim_load(void *ctx, uint64_t *value)
{
	struct wenv *w = ctx;
	struct memfault_fault f;
	int r = memfault_vcpu_run(w->e.vcpu);

	if (r == MEMFAULT_RUN_MEMORY_FAULT) {
		if (memfault_vcpu_get_fault(w->e.vcpu, &f, sizeof(f)) ||
		    !(f.flags & MEMFAULT_FAULT_USERFAULT) || f.gpa != w->gpa)
			return -EPROTO;
		return 0;
	}
	if (r != MEMFAULT_RUN_EXIT || w->e.run->exit_reason != done_reason(w))
		return r < 0 ? r : -EPROTO;
	if (kvmsim_vcpu_get_state(w->e.vcpu_fd, value, NULL) ||
	    kvmsim_vcpu_set_script(w->e.vcpu_fd, &w->step, 1))
		return -EIO;
	return 1;
}

/*
 * What memfault_region_mark_missing() did before issue 16: set the bit,
 * then KVM_MEM_USERFAULT off and on so that KVM re-reads it. While it is
 * off, the vCPU maps missing pages with no exit.
 */
static int
old_toggle_mark(void *ctx, uint64_t page)
{
	struct wenv *w = ctx;
	struct kvm_userspace_memory_region2_uf m;
	const size_t bits = 8 * sizeof(unsigned long);

	__atomic_fetch_or(&w->bitmap[page / bits], 1ul << (page % bits),
			  __ATOMIC_RELAXED);
	memset(&m, 0, sizeof(m));
	m.slot = w->slot;
	m.guest_phys_addr = RAM_GPA;
	m.memory_size = WPAGES * w->e.page;
	m.userspace_addr = (uintptr_t)w->mem;
	if (ioctl(w->e.vm_fd, KVM_SET_USER_MEMORY_REGION2, &m))
		return -errno;
	m.flags = KVM_MEM_USERFAULT;
	m.userfault_bitmap = (uintptr_t)w->bitmap;
	return ioctl(w->e.vm_fd, KVM_SET_USER_MEMORY_REGION2, &m) ? -errno : 0;
}

static const char *const mode_names[] = { "other", "same", "republish" };

static void
window_case(uint32_t arch, enum window_mode mode, bool old_toggle,
	    uint64_t iters, struct window *ret)
{
	const uint64_t page = 0, other = 2;
	struct wenv w;
	struct window win;
	double t0, t1;

	wenv_open(&w, arch, page);
	/* the pages besides the watched one are present */
	ck_assert_int_eq(memfault_region_publish(w.r, 1, WPAGES - 1), 0);
	memset(&win, 0, sizeof(win));
	win.mode = mode;
	win.region = w.r;
	win.hva = w.mem;
	win.page = page;
	win.other = other;
	win.page_size = w.e.page;
	win.iterations = iters;
	/* every variant re-arms often while the vCPU loads */
	win.min_marks = mode == WINDOW_REPUBLISH ? iters / 100 : iters / 10;
	win.load = sim_load;
	win.ctx = &w;
	if (old_toggle)
		win.mark = old_toggle_mark;
	t0 = tc_now();
	ck_assert_int_eq(window_run(&win), 0);
	t1 = tc_now();
	printf("window %s/%s%s: %llu attempts in %.2f s: %llu exits, %llu "
	       "loads completed, %llu leaks (first %#llx), %llu re-marks\n",
	       arch == KVMSIM_X86_64 ? "x86_64" : "arm64", mode_names[mode],
	       old_toggle ? " (old toggle)" : "",
	       (unsigned long long)win.attempts, t1 - t0,
	       (unsigned long long)win.exits,
	       (unsigned long long)win.completed,
	       (unsigned long long)win.leaks,
	       (unsigned long long)win.first_leak,
	       (unsigned long long)win.marks);
	ck_assert_int_eq(win.err, 0);
	ck_assert_uint_ge(win.attempts, iters);
	ck_assert_uint_eq(win.exits + win.completed, win.attempts);
	ck_assert_uint_ge(win.marks, win.min_marks);
	*ret = win;
	wenv_close(&w);
}

/* _i: arch (bit 0) x variant */
START_TEST(window_no_leaks)
{
	uint32_t arch = (_i & 1) ? KVMSIM_ARM64 : KVMSIM_X86_64;
	enum window_mode mode = (enum window_mode)(_i / 2);
	struct window win;

	window_case(arch, mode, false, window_iters(), &win);
	ck_assert_msg(win.leaks == 0,
		      "%llu of %llu loads read page %s while it was missing "
		      "(first value %#llx)",
		      (unsigned long long)win.leaks,
		      (unsigned long long)win.attempts, mode_names[mode],
		      (unsigned long long)win.first_leak);
	if (mode == WINDOW_REPUBLISH)
		/* the page was loaded while present: mapped, then re-armed */
		ck_assert_uint_gt(win.completed, 0);
	else
		ck_assert_uint_eq(win.exits, win.attempts);
}
END_TEST

/*
 * The detector detects: the old toggle leaks. It is a race, so on a loaded
 * machine one round of 10^4 attempts can miss it (seen once in CI-like
 * load): up to 10 rounds, stopping at the first leak. A detector that
 * cannot see leaks fails all 10.
 */
START_TEST(window_detects_the_old_toggle)
{
	uint32_t arch = (_i & 1) ? KVMSIM_ARM64 : KVMSIM_X86_64;
	struct window win;
	uint64_t leaks = 0;

	for (int round = 0; round < 10 && !leaks; round++) {
		window_case(arch, (_i / 2) ? WINDOW_SAME : WINDOW_OTHER, true,
			    10000, &win);
		leaks = win.leaks;
	}
	ck_assert_uint_gt(leaks, 0);
}
END_TEST

/*
 * A page KVM has mapped (loaded while present) and then marked missing
 * exits on the next load, with KVM_MEM_USERFAULT left on: anonymous
 * memory (its contents dropped), a memfd (its page cache kept), and a
 * guest_memfd slot (punched). The other pages stay mapped.
 */
enum backing { ANON, MEMFD, GMEM };

START_TEST(mapped_page_rearms)
{
	uint32_t arch = (_i & 1) ? KVMSIM_ARM64 : KVMSIM_X86_64;
	enum backing b = (enum backing)(_i / 2);
	MEMFAULT_OPTS(memfault_region_opts, o,
		      .flags = MEMFAULT_REGION_USERFAULT |
			       MEMFAULT_REGION_MISSING);
	struct kvmsim_step steps[2];
	struct kvmsim_stats st0, st1;
	struct memfault_region *r;
	struct sim_env e;
	struct outcome out;
	unsigned char *mem;
	size_t size;
	int fd = -1;
	uint64_t acc;

	sim_env_open(&e, arch, KVMSIM_LEVEL_7_2_UF);
	size = 2 * e.page;
	if (b == GMEM) {
		struct kvm_create_guest_memfd g = {
			.size = size,
			.flags = GUEST_MEMFD_FLAG_MMAP |
				 GUEST_MEMFD_FLAG_INIT_SHARED,
		};

		fd = ioctl(e.vm_fd, KVM_CREATE_GUEST_MEMFD, &g);
		ck_assert_int_ge(fd, 0);
		o.flags |= MEMFAULT_REGION_GUEST_MEMFD;
		o.guest_memfd = fd;
	} else if (b == MEMFD) {
		fd = memfd_create("window", MFD_CLOEXEC);
		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	}
	mem = b == ANON ? mmap(NULL, size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
			: mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED,
			       fd, 0);
	ck_assert_ptr_ne(mem, MAP_FAILED);
	ck_assert_int_eq(memfault_region_new(e.vm, 1, RAM_GPA, size, mem, &o,
					     &r),
			 0);
	memset(mem, 0x5a, size);
	ck_assert_int_eq(memfault_region_publish(r, 0, 2), 0);
	for (int i = 0; i < 2; i++)
		steps[i] = (struct kvmsim_step){
			.op = KVMSIM_OP_LOAD,
			.gpa = RAM_GPA + (uint64_t)i * e.page,
			.len = 1,
		};
	ck_assert_int_eq(kvmsim_vcpu_set_script(e.vcpu_fd, steps, 2), 0);
	out = sim_env_run(&e);
	ck_assert_int_eq(out.r, MEMFAULT_RUN_EXIT); /* both mapped */

	ck_assert_int_eq(kvmsim_get_stats(&st0), 0);
	ck_assert_int_eq(memfault_region_mark_missing(r, 1, 1), 0);
	ck_assert_int_eq(kvmsim_get_stats(&st1), 0);
	ck_assert_int_eq(kvmsim_vcpu_set_script(e.vcpu_fd, steps, 2), 0);
	out = sim_env_run(&e);
	ck_assert_int_eq(out.r, MEMFAULT_RUN_MEMORY_FAULT);
	ck_assert(out.f.flags & MEMFAULT_FAULT_USERFAULT);
	ck_assert_uint_eq(out.f.gpa, RAM_GPA + e.page);
	/* page 0 was loaded from its mapping, without a bitmap read */
	ck_assert_int_eq(kvmsim_get_stats(&st0), 0);
	ck_assert_uint_eq(st0.bitmap_reads - st1.bitmap_reads, 1);
	/* what page 1 holds now: dropped, kept, punched */
	ck_assert_uint_eq(mem[e.page], b == MEMFD ? 0x5a : 0);
	mem[e.page] = 0x77;
	ck_assert_int_eq(memfault_region_publish(r, 1, 1), 0);
	out = sim_env_run(&e);
	ck_assert_int_eq(out.r, MEMFAULT_RUN_EXIT);
	ck_assert_int_eq(kvmsim_vcpu_get_state(e.vcpu_fd, &acc, NULL), 0);
	ck_assert_uint_eq(acc, 0x77);
	memfault_region_free(r);
	munmap(mem, size);
	if (fd >= 0)
		close(fd);
	sim_env_close(&e);
}
END_TEST

/*
 * memfault_region_mark_missing() holds its pages as a fetcher would: it
 * waits for a fetch in progress to publish (which would clear the new
 * bit), then re-marks the page; a claim that outlives its wait (50 ms) -
 * the caller's own, here - gives -EBUSY, never a hang, with the other
 * pages of the range re-marked.
 */
struct fetcher {
	struct memfault_region *r;
	int claimed; /* atomic */
};

static void *
slow_fetch(void *arg)
{
	struct fetcher *f = arg;

	if (memfault_region_claim(f->r, 1, 0) != MEMFAULT_CLAIM_FETCH)
		return (void *)1;
	__atomic_store_n(&f->claimed, 1, __ATOMIC_RELEASE);
	usleep(2000);
	return memfault_region_publish(f->r, 1, 1) ? (void *)1 : NULL;
}

START_TEST(mark_waits_for_fetches)
{
	struct fetcher f;
	struct wenv w;
	pthread_t t;
	void *ret;
	double t0;

	wenv_open(&w, KVMSIM_X86_64, 0);
	/* a fetch in progress (2 ms): the mark waits, then takes effect */
	f.r = w.r;
	f.claimed = 0;
	ck_assert_int_eq(pthread_create(&t, NULL, slow_fetch, &f), 0);
	while (!__atomic_load_n(&f.claimed, __ATOMIC_ACQUIRE))
		sched_yield();
	ck_assert_int_eq(memfault_region_mark_missing(w.r, 0, WPAGES), 0);
	ck_assert_int_eq(pthread_join(t, &ret), 0);
	ck_assert_ptr_null(ret);
	ck_assert_int_eq(memfault_region_is_missing(w.r, 1), 1);
	/* the caller's own claim: -EBUSY, quickly, the rest re-marked */
	ck_assert_int_eq(memfault_region_publish(w.r, 0, WPAGES), 0);
	ck_assert_int_eq(memfault_region_claim(w.r, 3, 0), MEMFAULT_CLAIM_PRESENT);
	ck_assert_int_eq(memfault_region_mark_missing(w.r, 3, 1), 0);
	ck_assert_int_eq(memfault_region_claim(w.r, 3, 0), MEMFAULT_CLAIM_FETCH);
	ck_assert_int_eq(memfault_region_publish(w.r, 0, 3), 0);
	t0 = tc_now();
	ck_assert_int_eq(memfault_region_mark_missing(w.r, 0, WPAGES), -EBUSY);
	ck_assert_double_lt(tc_now() - t0, 1.0);
	for (uint64_t p = 0; p < WPAGES; p++)
		ck_assert_int_eq(memfault_region_is_missing(w.r, p), 1);
	/* the claim is still the caller's */
	ck_assert_int_eq(memfault_region_claim(w.r, 3, MEMFAULT_CLAIM_NOWAIT),
			 MEMFAULT_CLAIM_BUSY);
	ck_assert_int_eq(memfault_region_publish(w.r, 3, 1), 0);
	ck_assert_int_eq(memfault_region_mark_missing(w.r, 3, 1), 0);
	wenv_close(&w);
}
END_TEST

/* A page being fetched when the mark gives up on it keeps what its
 * fetcher has written so far: only the pages the mark holds are
 * invalidated (a drop under the fetcher would leave a page part zero). */
START_TEST(mark_leaves_a_fetch_in_progress_alone)
{
	struct wenv w;

	wenv_open(&w, KVMSIM_X86_64, 0);
	ck_assert_int_eq(memfault_region_publish(w.r, 0, WPAGES), 0);
	for (uint64_t p = 0; p < WPAGES; p++)
		memset(w.mem + p * w.e.page, 0x11 * (int)(p + 1), w.e.page);
	/* page 2 is being fetched (by this thread): half written */
	ck_assert_int_eq(memfault_region_mark_missing(w.r, 2, 1), 0);
	ck_assert_int_eq(memfault_region_claim(w.r, 2, 0), MEMFAULT_CLAIM_FETCH);
	memset(w.mem + 2 * w.e.page, 0x5a, w.e.page / 2);
	ck_assert_int_eq(memfault_region_mark_missing(w.r, 0, WPAGES), -EBUSY);
	ck_assert_int_eq(w.mem[2 * w.e.page], 0x5a);
	ck_assert_int_eq(w.mem[2 * w.e.page + w.e.page / 2 - 1], 0x5a);
	/* the pages it held were dropped (anonymous memory: zero now) */
	ck_assert_int_eq(w.mem[0], 0);
	ck_assert_int_eq(w.mem[3 * w.e.page], 0);
	ck_assert_int_eq(memfault_region_publish(w.r, 2, 1), 0);
	wenv_close(&w);
}
END_TEST

/* A mark that waits for nobody reads no clock: its deadline starts at the
 * first wait (a clock read is a system call or a trapped counter read
 * under some hypervisors, on every re-arm of a page). */
START_TEST(mark_reads_the_clock_only_to_wait)
{
	struct wenv w;
	unsigned long n0;

	wenv_open(&w, KVMSIM_X86_64, 0);
	ck_assert_int_eq(memfault_region_publish(w.r, 0, WPAGES), 0);
	n0 = __atomic_load_n(&lib_clock_reads, __ATOMIC_RELAXED);
	ck_assert_int_eq(memfault_region_mark_missing(w.r, 1, 1), 0);
	ck_assert_int_eq(memfault_region_mark_missing(w.r, 0, WPAGES), 0);
	ck_assert_uint_eq(__atomic_load_n(&lib_clock_reads, __ATOMIC_RELAXED), n0);
	/* a page the caller holds: the mark waits, by the clock, then gives
	 * up (which also shows the count above could have moved) */
	ck_assert_int_eq(memfault_region_claim(w.r, 2, 0), MEMFAULT_CLAIM_FETCH);
	ck_assert_int_eq(memfault_region_mark_missing(w.r, 2, 1), -EBUSY);
	ck_assert_uint_gt(__atomic_load_n(&lib_clock_reads, __ATOMIC_RELAXED), n0);
	ck_assert_int_eq(memfault_region_publish(w.r, 2, 1), 0);
	wenv_close(&w);
}
END_TEST

/* ---- userfaultfd: a page marked missing again is fetched, never zeroed */

#define UF_THREADS 8

/* _i 0: the 50 rounds of issue 16; 1: 2000 (MEMFAULT_SOAK=1: 50000),
 * where a narrower race of the same kind shows */
static unsigned
uf_rounds(int i)
{
	const char *v = getenv("MEMFAULT_SOAK");

	if (!i)
		return 50;
	return v && *v == '1' ? 50000 : 2000;
}

struct uf {
	struct sim_env e;
	struct memfault_region *r;
	struct memfault_uffd *u;
	unsigned char *mem;
	unsigned fetches; /* atomic */
	unsigned round;   /* atomic: the round page_in() fills for */
	pthread_barrier_t start, done;
	int stop;
	unsigned zero_reads, bad_reads; /* atomic */
	unsigned ebusy;
};

static uint64_t
uf_word(unsigned round)
{
	return 0x0101010101010101ull * (uint64_t)(1 + round % 0x7f);
}

static int
uf_page_in(void *user, struct memfault_vcpu *vcpu, struct memfault_region *r,
	   uint64_t page, void *hva, uint64_t page_size)
{
	struct uf *f = user;
	uint64_t v = uf_word(__atomic_load_n(&f->round, __ATOMIC_RELAXED));

	(void)vcpu;
	(void)r;
	(void)page;
	for (uint64_t i = 0; i < page_size / 8; i++)
		memcpy((char *)hva + 8 * i, &v, 8);
	__atomic_fetch_add(&f->fetches, 1, __ATOMIC_RELAXED);
	return MEMFAULT_RESOLVED;
}

static void *
uf_reader(void *arg)
{
	struct uf *f = arg;

	for (;;) {
		uint64_t v;

		pthread_barrier_wait(&f->start);
		if (__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE))
			return NULL;
		memcpy(&v, (const void *)f->mem, 8);
		if (!v)
			__atomic_fetch_add(&f->zero_reads, 1, __ATOMIC_RELAXED);
		else if (v != uf_word(__atomic_load_n(&f->round,
						      __ATOMIC_RELAXED)))
			__atomic_fetch_add(&f->bad_reads, 1, __ATOMIC_RELAXED);
		pthread_barrier_wait(&f->done);
	}
}

START_TEST(uffd_remark_never_zero_fills)
{
	MEMFAULT_OPTS(memfault_region_opts, o,
		      .flags = MEMFAULT_REGION_NO_MEMSLOT |
			       MEMFAULT_REGION_MISSING);
	MEMFAULT_OPTS(memfault_uffd_opts, uo,
		      .flags = MEMFAULT_UFFD_SERVICE_THREAD);
	MEMFAULT_OPTS(memfault_handlers, h, .page_in = uf_page_in);
	pthread_t t[UF_THREADS];
	static struct uf f;
	unsigned short_rounds = 0, rounds = uf_rounds(_i);

	memset(&f, 0, sizeof(f));
	h.user = &f;
	sim_env_open(&f.e, KVMSIM_X86_64, KVMSIM_LEVEL_7_2);
	ck_assert_int_eq(memfault_vm_set_handlers(f.e.vm, &h), 0);
	f.mem = mmap(NULL, f.e.page, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(f.mem, MAP_FAILED);
	ck_assert_int_eq(memfault_region_new(f.e.vm, 0, RAM_GPA, f.e.page,
					     f.mem, &o, &f.r),
			 0);
	ck_assert_int_eq(memfault_uffd_new(f.e.vm, &uo, &f.u), 0);
	ck_assert_int_eq(memfault_uffd_register(f.u, f.r, MEMFAULT_UFFD_MISSING,
						NULL),
			 0);
	pthread_barrier_init(&f.start, NULL, UF_THREADS + 1);
	pthread_barrier_init(&f.done, NULL, UF_THREADS + 1);
	for (int i = 0; i < UF_THREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, uf_reader, &f), 0);
	for (unsigned k = 0; k < rounds; k++) {
		unsigned before;

		/* round k's contents; the page is missing from here on (a
		 * fault left from round k - 1 may fetch it at once) */
		__atomic_store_n(&f.round, k, __ATOMIC_RELAXED);
		before = __atomic_load_n(&f.fetches, __ATOMIC_RELAXED);
		/* -EBUSY: round k - 1's fetch has not published yet (the
		 * readers woke at its install): the mark would be lost */
		for (int tries = 0; k && tries < 10000; tries++) {
			int r = memfault_region_mark_missing(f.r, 0, 1);

			if (r != -EBUSY) {
				ck_assert_int_eq(r, 0);
				break;
			}
			f.ebusy++;
		}
		pthread_barrier_wait(&f.start);
		pthread_barrier_wait(&f.done);
		/* a re-marked page must be fetched in its round */
		if (__atomic_load_n(&f.fetches, __ATOMIC_RELAXED) == before)
			short_rounds++;
	}
	__atomic_store_n(&f.stop, 1, __ATOMIC_RELEASE);
	pthread_barrier_wait(&f.start);
	for (int i = 0; i < UF_THREADS; i++)
		pthread_join(t[i], NULL);
	printf("uffd re-mark: %u rounds x %u threads: %u fetches, %u zero "
	       "reads, %u stale reads, %u rounds without a fetch, %u "
	       "-EBUSY\n",
	       rounds, UF_THREADS, f.fetches, f.zero_reads, f.bad_reads,
	       short_rounds, f.ebusy);
	ck_assert_uint_eq(f.zero_reads, 0);
	ck_assert_uint_eq(f.bad_reads, 0);
	ck_assert_uint_eq(short_rounds, 0);
	/* exactly once per round: a second fetch needs a second mark */
	ck_assert_uint_eq(f.fetches, rounds);
	memfault_uffd_free(f.u);
	memfault_region_free(f.r);
	munmap(f.mem, f.e.page);
	pthread_barrier_destroy(&f.start);
	pthread_barrier_destroy(&f.done);
	sim_env_close(&f.e);
}
END_TEST

/* ---- an unreadable bitmap: no spinning ---- */

static unsigned bb_page_ins;

static int
bb_page_in(void *user, struct memfault_vcpu *vcpu, struct memfault_region *r,
	   uint64_t page, void *hva, uint64_t page_size)
{
	(void)user;
	(void)vcpu;
	(void)r;
	(void)page;
	memset(hva, 0x42, page_size);
	bb_page_ins++;
	return MEMFAULT_RESOLVED;
}

/*
 * The memslot's bitmap pointer becomes unreadable behind the library's
 * back (a KVM_SET_USER_MEMORY_REGION2 of the VMM's). arm64 reports every
 * access as a userfault of the page, which no publish ends: dispatch
 * fetches the page once, then its repeat guard gives -ELOOP after
 * max_repeats runs. x86 gives a bare EFAULT: -EFAULT after one run.
 */
START_TEST(unreadable_bitmap_is_bounded)
{
	uint32_t arch = _i ? KVMSIM_ARM64 : KVMSIM_X86_64;
	MEMFAULT_OPTS(memfault_region_opts, o,
		      .flags = MEMFAULT_REGION_USERFAULT |
			       MEMFAULT_REGION_MISSING);
	MEMFAULT_OPTS(memfault_handlers, h, .page_in = bb_page_in,
		      .max_repeats = 5);
	struct kvm_userspace_memory_region2_uf m;
	struct kvmsim_stats st0, st1;
	struct memfault_region *r;
	struct sim_env e;
	unsigned char *mem, *bad;
	double t0;
	int rc;

	sim_env_open(&e, arch, KVMSIM_LEVEL_7_2_UF);
	ck_assert_int_eq(memfault_vm_set_handlers(e.vm, &h), 0);
	mem = mmap(NULL, e.page, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	bad = mmap(NULL, e.page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		   0);
	ck_assert_ptr_ne(mem, MAP_FAILED);
	ck_assert_ptr_ne(bad, MAP_FAILED);
	ck_assert_int_eq(memfault_region_new(e.vm, 1, RAM_GPA, e.page, mem, &o,
					     &r),
			 0);
	memset(&m, 0, sizeof(m));
	m.slot = 1;
	m.guest_phys_addr = RAM_GPA;
	m.memory_size = e.page;
	m.userspace_addr = (uintptr_t)mem;
	ck_assert_int_eq(ioctl(e.vm_fd, KVM_SET_USER_MEMORY_REGION2, &m), 0);
	m.flags = KVM_MEM_USERFAULT;
	m.userfault_bitmap = (uintptr_t)bad;
	ck_assert_int_eq(ioctl(e.vm_fd, KVM_SET_USER_MEMORY_REGION2, &m), 0);
	sim_env_script(&e, "load:0x20000000:1");
	bb_page_ins = 0;
	ck_assert_int_eq(kvmsim_get_stats(&st0), 0);
	t0 = tc_now();
	rc = memfault_vcpu_run_dispatch(e.vcpu);
	ck_assert_double_lt(tc_now() - t0, 5.0);
	ck_assert_int_eq(kvmsim_get_stats(&st1), 0);
	if (arch == KVMSIM_ARM64) {
		ck_assert_int_eq(rc, -ELOOP);
		ck_assert_uint_eq(bb_page_ins, 1);
		/* the first run, then max_repeats + 1 that come back */
		ck_assert_uint_le(st1.runs - st0.runs, 5 + 2);
	} else {
		ck_assert_int_eq(rc, -EFAULT);
		ck_assert_uint_eq(bb_page_ins, 0);
		ck_assert_uint_eq(st1.runs - st0.runs, 1);
	}
	memfault_region_free(r);
	munmap(mem, e.page);
	munmap(bad, e.page);
	sim_env_close(&e);
}
END_TEST

/*
 * test-window        the KVM Userfault cases
 * test-window uffd   the userfaultfd case; 77 where userfaultfd is not
 *                    permitted or not implemented
 */
int
main(int argc, char **argv)
{
	Suite *s = suite_create("window");
	TCase *tc = tcase_create("window");

	tcase_set_timeout(tc, 120);
	if (argc > 1 && !strcmp(argv[1], "uffd")) {
		char why[256];

		if (tc_uffd_usable(why, sizeof(why)))
			return tc_skip(s, "%s", why);
		tcase_add_loop_test(tc, uffd_remark_never_zero_fills, 0, 2);
	} else {
		/* 2 arches x 3 variants */
		tcase_add_loop_test(tc, window_no_leaks, 0, 6);
		/* 2 arches x {other, same} */
		tcase_add_loop_test(tc, window_detects_the_old_toggle, 0, 4);
		/* 2 arches x anonymous, memfd, guest_memfd */
		tcase_add_loop_test(tc, mapped_page_rearms, 0, 6);
		tcase_add_loop_test(tc, unreadable_bitmap_is_bounded, 0, 2);
		tcase_add_test(tc, mark_waits_for_fetches);
		tcase_add_test(tc, mark_reads_the_clock_only_to_wait);
		tcase_add_test(tc, mark_leaves_a_fetch_in_progress_alone);
	}
	suite_add_tcase(s, tc);
	return tc_run(s);
}
