/* SPDX-License-Identifier: MIT */
/*
 * memfault_vcpu_run() against a raw KVM_RUN loop on a real /dev/kvm, in one
 * process, interleaved.
 *
 * Exits (each KVM_RUN gives the same exit again, the guest loops):
 *   io     x86-64: real-mode `out %al, %dx` in a loop (KVM_EXIT_IO)
 *   mmio   arm64: `str w1, [x0]` to a GPA without memslot (KVM_EXIT_MMIO)
 *   fault  both: a load from a guest_memfd slot whose fd was closed:
 *          -1/EFAULT with KVM_EXIT_MEMORY_FAULT, again on every entry
 *          (measured only where the kernel reports it so)
 *   uf     both, on a kernel with the proposed KVM Userfault series: the
 *          guest loads from a page of a KVM_MEM_USERFAULT slot, then does
 *          the io/mmio exit, in a loop. One iteration (one "exit" in the
 *          output) is a KVM Userfault round trip: re-arm the page (set its
 *          bit, full fence, MADV_DONTNEED so that KVM's mapping goes),
 *          KVM_RUN = -1/EFAULT with exit 39 and the USERFAULT flag, fill
 *          the page, clear its bit with a store-release, KVM_RUN again to
 *          the io/mmio exit. The library loop does the same with
 *          memfault_region_mark_missing() and memfault_vcpu_run_dispatch()
 *          (a page_in handler fills the page). Both loops use the same VM,
 *          region and page, and each iteration must have taken exactly
 *          one userfault exit (counted), or the kind fails
 *
 *   kvm-run-bench time [BLOCK] [TRIALS] [KIND,...]
 *                                        wall clock: TRIALS x (BLOCK raw
 *                                        runs, BLOCK library runs), order
 *                                        alternating (defaults 100, 1001,
 *                                        all kinds); medians in ns per
 *                                        exit, and the median of the
 *                                        per-pair ratios with its 95%
 *                                        confidence interval
 *   kvm-run-bench raw|lib io|mmio|fault|uf N
 *                                        N runs in bench_loop() only, for
 *                                        callgrind --toggle-collect
 *
 * The raw loop does what every VMM must do at least: look at the result
 * (and, for a fault, read gpa/size/flags as api.rst says); the library loop
 * calls memfault_vcpu_run() (and memfault_vcpu_get_fault()).
 * Prints JSON lines; exits 77 without a usable /dev/kvm. A kind the kernel
 * cannot give prints {"exit":KIND,"skip":REASON}.
 */
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "bench-stats.h"
#include "kvm-userfault-proposed.h"
#include "memfault/memfault.h"

#define SLOT0_SIZE 0x10000ull
#define TEST_SIZE 0x2000ull

#if defined(__x86_64__)
#define ORDINARY "io"
#define CODE_GPA 0x1000ull
#define ENTRY_ORDINARY (CODE_GPA + 0x00)
#define ENTRY_FAULT (CODE_GPA + 0x10)
#define ENTRY_UF (CODE_GPA + 0x20)
#define TEST_GPA 0x20000ull
/* 16-bit real mode, CS = DS = 0 */
static const uint8_t guest_code[] = {
	/* +0x00 ordinary */
	0xba, 0xf8, 0x03, /* mov  $0x3f8, %dx */
	0xee,             /* 1: out %al, %dx  */
	0xeb, 0xfd,       /* jmp  1b          */
	0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90,
	/* +0x10 fault */
	0xb8, 0x00, 0x20, /* mov  $0x2000, %ax */
	0x8e, 0xd8,       /* mov  %ax, %ds     */
	0xa0, 0x00, 0x00, /* 1: mov 0, %al  (TEST_GPA) */
	0xeb, 0xfb,       /* jmp  1b           */
	0x90, 0x90, 0x90, 0x90, 0x90, 0x90,
	/* +0x20 uf */
	0xb8, 0x00, 0x20, /* mov  $0x2000, %ax */
	0x8e, 0xd8,       /* mov  %ax, %ds     */
	0xba, 0xf8, 0x03, /* mov  $0x3f8, %dx  */
	0xa0, 0x00, 0x00, /* 1: mov 0, %al  (TEST_GPA) */
	0xee,             /* out  %al, %dx     */
	0xeb, 0xfa,       /* jmp  1b           */
};
#elif defined(__aarch64__)
#define ORDINARY "mmio"
#define CODE_GPA 0x0ull
#define ENTRY_ORDINARY (CODE_GPA + 0x00)
#define ENTRY_FAULT (CODE_GPA + 0x10)
#define ENTRY_UF (CODE_GPA + 0x20)
#define TEST_GPA 0x20000000ull
/* EL1, MMU off */
static const uint32_t guest_code[] = {
	/* +0x00 ordinary */
	0xd2a20000, /* mov  x0, #0x10000000 */
	0x52800841, /* mov  w1, #0x42       */
	0xb9000001, /* 1: str w1, [x0]      */
	0x17ffffff, /* b    1b              */
	/* +0x10 fault */
	0xd2a40003, /* mov  x3, #0x20000000 */
	0xb9400064, /* 1: ldr w4, [x3]      */
	0x17ffffff, /* b    1b              */
	0xd503201f, /* nop                  */
	/* +0x20 uf */
	0xd2a40003, /* mov  x3, #0x20000000 */
	0xd2a20000, /* mov  x0, #0x10000000 */
	0xb9400064, /* 1: ldr w4, [x3]      */
	0xb9000004, /* str  w4, [x0]        */
	0x17fffffe, /* b    1b              */
};
#else
#error "x86_64 or aarch64 only"
#endif

enum kind { K_ORDINARY, K_FAULT, K_UF };

static const char *const kind_name[] = { ORDINARY, "fault", "uf" };

struct vm {
	int kvm, vm_fd, vcpu_fd, gmem_fd;
	void *mem0, *gmem_map, *uf_mem;
	struct kvm_run *run;
	struct memfault_vm *mvm;
	struct memfault_vcpu *mvcpu;
	/* uf: the region, its bitmap (KVM reads it), the page size, and the
	 * number of page_in() calls and of the raw loop's userfault exits */
	struct memfault_region *region;
	unsigned long *bitmap;
	uint64_t page_size;
	long page_ins, raw_userfaults;
};

static volatile uint64_t sink;

static int
set_entry(struct vm *v, uint64_t entry)
{
#if defined(__x86_64__)
	struct kvm_sregs s;
	struct kvm_regs r;

	if (ioctl(v->vcpu_fd, KVM_GET_SREGS, &s))
		return -errno;
	s.cs.base = s.ds.base = s.es.base = s.ss.base = 0;
	s.cs.selector = s.ds.selector = s.es.selector = s.ss.selector = 0;
	if (ioctl(v->vcpu_fd, KVM_SET_SREGS, &s))
		return -errno;
	memset(&r, 0, sizeof(r));
	r.rip = entry;
	r.rflags = 2;
	r.rsp = 0x8000;
	return ioctl(v->vcpu_fd, KVM_SET_REGS, &r) ? -errno : 0;
#else
	struct kvm_vcpu_init init;
	struct kvm_one_reg reg;
	uint64_t pc = entry;

	if (ioctl(v->vm_fd, KVM_ARM_PREFERRED_TARGET, &init) ||
	    ioctl(v->vcpu_fd, KVM_ARM_VCPU_INIT, &init))
		return -errno;
	memset(&reg, 0, sizeof(reg));
	reg.id = KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE |
		 KVM_REG_ARM_CORE_REG(regs.pc);
	reg.addr = (uintptr_t)&pc;
	return ioctl(v->vcpu_fd, KVM_SET_ONE_REG, &reg) ? -errno : 0;
#endif
}

static int
set_region2(struct vm *v, uint32_t slot, uint32_t flags, uint64_t gpa,
	    uint64_t size, void *hva, int gmem_fd)
{
	struct kvm_userspace_memory_region2 r;

	memset(&r, 0, sizeof(r));
	r.slot = slot;
	r.flags = flags;
	r.guest_phys_addr = gpa;
	r.memory_size = size;
	r.userspace_addr = (uintptr_t)hva;
	r.guest_memfd = (uint32_t)gmem_fd;
	return ioctl(v->vm_fd, KVM_SET_USER_MEMORY_REGION2, &r) ? -errno : 0;
}

static void
vm_destroy(struct vm *v)
{
	memfault_vcpu_free(v->mvcpu);
	memfault_region_free(v->region);
	memfault_vm_free(v->mvm);
	if (v->vcpu_fd >= 0)
		close(v->vcpu_fd);
	if (v->gmem_map)
		munmap(v->gmem_map, TEST_SIZE);
	if (v->vm_fd >= 0)
		close(v->vm_fd);
	if (v->mem0)
		munmap(v->mem0, SLOT0_SIZE);
	if (v->uf_mem)
		munmap(v->uf_mem, TEST_SIZE);
	v->mvcpu = NULL;
	v->region = NULL;
	v->mvm = NULL;
	v->uf_mem = NULL;
}

/* uf: fill the page the guest faulted on; the same work as the raw loop's */
static int
uf_page_in(void *user, struct memfault_vcpu *vcpu,
	   struct memfault_region *region, uint64_t page, void *hva,
	   uint64_t page_size)
{
	struct vm *v = user;

	(void)vcpu;
	(void)region;
	(void)page;
	memset(hva, 0x5a, page_size);
	v->page_ins++;
	return MEMFAULT_RESOLVED;
}

/*
 * A VM whose vCPU gives the same exit of kind @kind on every KVM_RUN (uf:
 * the io/mmio exit, after a userfault exit whenever the page is missing).
 * @why says which step failed.
 */
static int
vm_create(struct vm *v, int kvm, enum kind kind, const char **why)
{
	MEMFAULT_OPTS(memfault_vm_opts, opts, .kvm_fd = kvm);
	int err;

	memset(v, 0, sizeof(*v));
	v->kvm = kvm;
	v->vm_fd = v->vcpu_fd = v->gmem_fd = -1;
	*why = "KVM_CREATE_VM";
	v->vm_fd = ioctl(kvm, KVM_CREATE_VM, 0);
	if (v->vm_fd < 0)
		return -errno;
	*why = "mmap";
	v->mem0 = mmap(NULL, SLOT0_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (v->mem0 == MAP_FAILED) {
		v->mem0 = NULL;
		return -errno;
	}
	memcpy((char *)v->mem0 + CODE_GPA, guest_code, sizeof(guest_code));
	*why = "KVM_SET_USER_MEMORY_REGION2";
	err = set_region2(v, 0, 0, 0, SLOT0_SIZE, v->mem0, 0);
	if (err)
		return err;
	if (kind == K_FAULT) {
		struct kvm_create_guest_memfd cg;

		memset(&cg, 0, sizeof(cg));
		cg.size = TEST_SIZE;
		cg.flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
		*why = "KVM_CREATE_GUEST_MEMFD";
		v->gmem_fd = ioctl(v->vm_fd, KVM_CREATE_GUEST_MEMFD, &cg);
		if (v->gmem_fd < 0)
			return -errno;
		v->gmem_map = mmap(NULL, TEST_SIZE, PROT_READ | PROT_WRITE,
				   MAP_SHARED, v->gmem_fd, 0);
		if (v->gmem_map == MAP_FAILED) {
			v->gmem_map = NULL;
			return -errno;
		}
		*why = "KVM_SET_USER_MEMORY_REGION2 (guest_memfd)";
		err = set_region2(v, 1, KVM_MEM_GUEST_MEMFD, TEST_GPA,
				  TEST_SIZE, v->gmem_map, v->gmem_fd);
		if (err)
			return err;
		/* unbinds the slot: every access is a memory fault now */
		munmap(v->gmem_map, TEST_SIZE);
		v->gmem_map = NULL;
		close(v->gmem_fd);
		v->gmem_fd = -1;
	}
	*why = "KVM_CREATE_VCPU";
	v->vcpu_fd = ioctl(v->vm_fd, KVM_CREATE_VCPU, 0);
	if (v->vcpu_fd < 0)
		return -errno;
	err = set_entry(v, kind == K_FAULT ? ENTRY_FAULT :
			   kind == K_UF ? ENTRY_UF : ENTRY_ORDINARY);
	if (err)
		return err;
	*why = "memfault_vm_new";
	err = memfault_vm_new(v->vm_fd, &opts, &v->mvm);
	if (!err) {
		*why = "memfault_vcpu_new";
		err = memfault_vcpu_new(v->mvm, v->vcpu_fd, NULL, &v->mvcpu);
	}
	if (!err)
		err = memfault_vcpu_get_run(v->mvcpu, &v->run);
	if (!err && kind == K_UF) {
		MEMFAULT_OPTS(memfault_region_opts, ro,
			      .flags = MEMFAULT_REGION_USERFAULT |
				       MEMFAULT_REGION_MISSING);
		MEMFAULT_OPTS(memfault_handlers, h, .user = v,
			      .page_in = uf_page_in);
		struct memfault_region_info info;

		*why = "mmap";
		v->uf_mem = mmap(NULL, TEST_SIZE, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (v->uf_mem == MAP_FAILED) {
			v->uf_mem = NULL;
			return -errno;
		}
		/* -EOPNOTSUPP: the kernel has no KVM Userfault */
		*why = "memfault_region_new(USERFAULT)";
		err = memfault_region_new(v->mvm, 1, TEST_GPA, TEST_SIZE,
					  v->uf_mem, &ro, &v->region);
		if (!err)
			err = memfault_region_get_info(v->region, &info,
						       sizeof(info));
		if (!err) {
			v->bitmap = (unsigned long *)(uintptr_t)info.bitmap;
			v->page_size = info.page_size;
			*why = "memfault_vm_set_handlers";
			err = memfault_vm_set_handlers(v->mvm, &h);
		}
	}
	return err;
}

/*
 * uf, raw: one KVM Userfault round trip on page 0, as a VMM without the
 * library does it. Returns 1 if it took exactly one userfault exit and
 * then the io/mmio exit.
 */
static inline int
raw_uf_round_trip(struct vm *v)
{
	int ufs = 0, r;

	/* re-arm: the bit (relaxed; the fence orders it), then the
	 * invalidation, which KVM's MMU notifier turns into a dropped guest
	 * mapping. Full fence: the bit's store before the page table reads
	 * of madvise() and, through them, of the next fault, which then
	 * reads the bit set (pairs with KVM's read of the bitmap in its
	 * fault path). */
	__atomic_fetch_or(&v->bitmap[0], 1ul, __ATOMIC_RELAXED);
#if defined(__SANITIZE_THREAD__)
	/* TSan builds (the CI's tsan job builds every target) have no
	 * fences; a seq_cst RMW of the same word orders as much here */
	__atomic_fetch_or(&v->bitmap[0], 0ul, __ATOMIC_SEQ_CST);
#else
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
	if (madvise(v->uf_mem, v->page_size, MADV_DONTNEED))
		return 0;
	for (;;) {
		r = ioctl(v->vcpu_fd, KVM_RUN, 0);
		if (r == -1 && errno == EFAULT &&
		    v->run->exit_reason == KVM_EXIT_MEMORY_FAULT &&
		    (v->run->memory_fault.flags &
		     KVM_MEMORY_EXIT_FLAG_USERFAULT)) {
			uint64_t gpa = v->run->memory_fault.gpa, p;

			v->raw_userfaults++;
			if (gpa < TEST_GPA || gpa >= TEST_GPA + TEST_SIZE ||
			    ++ufs > 1)
				return 0;
			p = (gpa - TEST_GPA) / v->page_size;
			memset((char *)v->uf_mem + p * v->page_size, 0x5a,
			       v->page_size);
			/* the contents before the clear, for KVM's read of
			 * the bit (and any thread's acquire of it) */
			__atomic_and_fetch(&v->bitmap[p / (8 * sizeof(long))],
					   ~(1ul << (p % (8 * sizeof(long)))),
					   __ATOMIC_RELEASE);
			continue;
		}
		return ufs == 1 && r == 0 &&
		       v->run->exit_reason != KVM_EXIT_MEMORY_FAULT;
	}
}

/* uf, library: the same round trip. */
static inline int
lib_uf_round_trip(struct vm *v)
{
	long before = v->page_ins;

	if (memfault_region_mark_missing(v->region, 0, 1))
		return 0;
	return memfault_vcpu_run_dispatch(v->mvcpu) == MEMFAULT_RUN_EXIT &&
	       v->page_ins == before + 1;
}

/* noinline: callgrind's --toggle-collect needs the symbol */
__attribute__((noinline)) static long
bench_loop(struct vm *v, bool lib, enum kind kind, long n)
{
	long good = 0;

	if (kind == K_UF) {
		if (lib)
			for (long i = 0; i < n; i++)
				good += lib_uf_round_trip(v);
		else
			for (long i = 0; i < n; i++)
				good += raw_uf_round_trip(v);
	} else if (lib && kind == K_ORDINARY) {
		for (long i = 0; i < n; i++)
			good += memfault_vcpu_run(v->mvcpu) == MEMFAULT_RUN_EXIT;
	} else if (lib) {
		struct memfault_fault f;

		for (long i = 0; i < n; i++) {
			if (memfault_vcpu_run(v->mvcpu) ==
				    MEMFAULT_RUN_MEMORY_FAULT &&
			    !memfault_vcpu_get_fault(v->mvcpu, &f, sizeof(f))) {
				sink += f.gpa + f.size + f.flags;
				good++;
			}
		}
	} else if (kind == K_ORDINARY) {
		for (long i = 0; i < n; i++) {
			int r = ioctl(v->vcpu_fd, KVM_RUN, 0);

			good += r == 0 &&
				v->run->exit_reason != KVM_EXIT_MEMORY_FAULT;
		}
	} else {
		for (long i = 0; i < n; i++) {
			int r = ioctl(v->vcpu_fd, KVM_RUN, 0);
			int e = errno;

			if (r == -1 && (e == EFAULT || e == EHWPOISON) &&
			    v->run->exit_reason == KVM_EXIT_MEMORY_FAULT) {
				sink += v->run->memory_fault.gpa +
					v->run->memory_fault.size +
					v->run->memory_fault.flags;
				good++;
			}
		}
	}
	return good;
}

static int
open_kvm(void)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), vm;

	if (kvm < 0) {
		fprintf(stderr, "no usable /dev/kvm: %s\n", strerror(errno));
		return -1;
	}
	if (ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION ||
	    (vm = ioctl(kvm, KVM_CREATE_VM, 0)) < 0) {
		fprintf(stderr, "no usable /dev/kvm: cannot create a VM\n");
		close(kvm);
		return -1;
	}
	close(vm);
	return kvm;
}

/* The exit a kind gives, checked once; 0 if it is what the bench wants. */
static void on_alarm(int sig);

static int
probe(struct vm *v, enum kind kind, char *why, size_t len)
{
	struct sigaction sa = { .sa_handler = on_alarm }, old;
	struct memfault_vcpu_stats st;
	int r;

	/* a kernel that loops on the fault (seen on kvm-pvm) is cut short;
	 * uf: the first entry, a userfault exit and the io/mmio exit (the
	 * page starts missing), with more time under nested TCG */
	sigaction(SIGALRM, &sa, &old);
	alarm(kind == K_UF ? 10 : 2);
	r = kind == K_UF ? memfault_vcpu_run_dispatch(v->mvcpu) :
			   memfault_vcpu_run(v->mvcpu);
	alarm(0);
	sigaction(SIGALRM, &old, NULL);

	if (kind == K_ORDINARY && r == MEMFAULT_RUN_EXIT)
		return 0;
	if (kind == K_UF && r == MEMFAULT_RUN_EXIT && v->page_ins == 1 &&
	    !memfault_vcpu_get_stats(v->mvcpu, &st, sizeof(st)) &&
	    st.userfaults == 1)
		return 0;
	if (kind == K_FAULT && r == MEMFAULT_RUN_MEMORY_FAULT) {
		struct memfault_fault f;

		if (!memfault_vcpu_get_fault(v->mvcpu, &f, sizeof(f)) &&
		    f.origin == MEMFAULT_ORIGIN_ERRNO && f.error == -EFAULT)
			return 0;
	}
	snprintf(why, len, "%s() = %d, exit_reason %u, %ld page-ins%s",
		 kind == K_UF ? "memfault_vcpu_run_dispatch" : "memfault_vcpu_run",
		 r, v->run->exit_reason, v->page_ins,
		 r == MEMFAULT_RUN_INTERRUPTED ? " (no exit within the alarm)" : "");
	return -1;
}

/* Interrupts a KVM_RUN that does not return (see probe()). */
static void
on_alarm(int sig)
{
	(void)sig;
}

/* A kind's skip line: @why, and for a setup step that failed, its error. */
static void
print_skip(const char *kind, const char *what, const char *why, int err)
{
	printf("{\"benchmark\":\"kvm_run\",\"exit\":\"%s\",\"skip\":\"%s: %s",
	       kind, what, why);
	if (err)
		printf(" = %s", strerror(-err));
	printf("\"}\n");
	fflush(stdout);
}

/* Returns 0, or 1 if a loop did not see the exits it expected. */
static int
time_kind(int kvm, enum kind kind, long block, int trials, const char *kernel)
{
	const char *kname = kind_name[kind];
	double *tr = calloc((size_t)trials * 3, sizeof(double));
	double *tl = tr + trials, *pr = tl + trials, mr, ml, mp, lo, hi;
	struct vm v = { .vm_fd = -1, .vcpu_fd = -1, .gmem_fd = -1 };
	const char *step = "calloc";
	char why[160];
	int err = tr ? vm_create(&v, kvm, kind, &step) : -ENOMEM, rc = 0;

	if (err) {
		/* uf: KVM Userfault missing is "this kernel" as for the others */
		print_skip(kname, kind == K_UF && err == -EOPNOTSUPP ?
			   "this kernel: no KVM Userfault" : "setup", step, err);
		goto out;
	}
	if (probe(&v, kind, why, sizeof(why))) {
		print_skip(kname, "this kernel", why, 0);
		goto out;
	}
	/* warm up both loops */
	bench_loop(&v, false, kind, block);
	bench_loop(&v, true, kind, block);
	for (int i = 0; i < trials; i++) {
		for (int k = 0; k < 2; k++) {
			bool lib = (i + k) % 2;
			double t = now();
			long good = bench_loop(&v, lib, kind, block);

			t = (now() - t) / (double)block;
			if (good != block) {
				printf("{\"benchmark\":\"kvm_run\",\"exit\":\"%s\","
				       "\"error\":\"%s loop: %ld of %ld %s as expected\"}\n",
				       kname, lib ? "lib" : "raw", good, block,
				       kind == K_UF ? "iterations (one userfault exit, then an " ORDINARY " exit)" :
						      "exits");
				rc = 1;
				goto out;
			}
			if (lib)
				tl[i] = t;
			else
				tr[i] = t;
		}
		pr[i] = tl[i] / tr[i];
	}
	/* the ratio is the median of the ratios of the pairs, which drift
	 * on a noisy host moves much less than the two medians */
	mr = median(tr, trials);
	ml = median(tl, trials);
	mp = median(pr, trials); /* sorts pr */
	median_ci(pr, trials, &lo, &hi);
	printf("{\"benchmark\":\"kvm_run\",\"exit\":\"%s\",\"kernel\":\"%s\","
	       "\"block\":%ld,\"trials\":%d,\"raw_ns_per_exit\":%.1f,"
	       "\"lib_ns_per_exit\":%.1f,\"ratio\":%.4f,"
	       "\"ratio_ci95_lo\":%.4f,\"ratio_ci95_hi\":%.4f,"
	       "\"ratio_p25\":%.4f,\"ratio_p75\":%.4f",
	       kname, kernel, block, trials, mr, ml, mp, lo, hi,
	       pr[trials / 4], pr[trials - 1 - trials / 4]);
	if (kind == K_UF) {
		struct memfault_vcpu_stats st;

		/* every timed and warm-up iteration of both loops took exactly
		 * one userfault exit (checked per iteration above); the library
		 * also took the probe's */
		if (!memfault_vcpu_get_stats(v.mvcpu, &st, sizeof(st)))
			printf(",\"raw_userfaults\":%ld,\"lib_userfaults\":%llu,"
			       "\"lib_page_ins\":%ld", v.raw_userfaults,
			       (unsigned long long)st.userfaults, v.page_ins);
	}
	printf("}\n");
	fflush(stdout);
out:
	vm_destroy(&v);
	free(tr);
	return rc;
}

static int
parse_kind(const char *s, enum kind *ret)
{
	for (int k = 0; k <= K_UF; k++) {
		if (!strcmp(s, kind_name[k])) {
			*ret = (enum kind)k;
			return 0;
		}
	}
	return -1;
}

int
main(int argc, char **argv)
{
	struct utsname u;
	const char *kernel = uname(&u) ? "?" : u.release;
	int kvm, rc = 0;

	if (argc < 2 || (strcmp(argv[1], "time") && strcmp(argv[1], "raw") &&
			 strcmp(argv[1], "lib"))) {
		fprintf(stderr,
			"usage: %s time [BLOCK] [TRIALS] [" ORDINARY ",fault,uf]\n"
			"       %s raw|lib " ORDINARY "|fault|uf N\n",
			argv[0], argv[0]);
		return 2;
	}
	kvm = open_kvm();
	if (kvm < 0)
		return 77;
	if (!strcmp(argv[1], "time")) {
		long block = argc > 2 ? atol(argv[2]) : 100;
		int trials = argc > 3 ? atoi(argv[3]) : 1001;
		char kinds[64], *save = NULL;
		enum kind list[8];
		int n = 0;

		if (block < 1 || trials < 1 || trials > 100000 || argc > 5)
			return 2;
		snprintf(kinds, sizeof(kinds), "%s",
			 argc > 4 && argv[4][0] ? argv[4] : ORDINARY ",fault,uf");
		for (char *t = strtok_r(kinds, ",", &save); t;
		     t = strtok_r(NULL, ",", &save))
			if (n == 8 || parse_kind(t, &list[n++]))
				return 2;
		for (int i = 0; i < n; i++)
			rc |= time_kind(kvm, list[i], block, trials, kernel);
	} else {
		bool lib = !strcmp(argv[1], "lib");
		enum kind kind;
		long n = argc > 3 ? atol(argv[3]) : 20000, good;
		const char *step;
		char why[160];
		struct vm v;

		if (argc != 4 || parse_kind(argv[2], &kind) || n < 1)
			return 2;
		if (vm_create(&v, kvm, kind, &step) ||
		    probe(&v, kind, why, sizeof(why))) {
			vm_destroy(&v);
			printf("{\"skip\":\"%s exits not available\"}\n", argv[2]);
			return 77;
		}
		good = bench_loop(&v, lib, kind, n);
		printf("{\"loop\":\"%s\",\"exit\":\"%s\",\"runs\":%ld,\"good\":%ld}\n",
		       argv[1], argv[2], n, good);
		vm_destroy(&v);
		if (good != n)
			return 1;
	}
	close(kvm);
	return rc;
}
