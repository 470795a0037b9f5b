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
 *
 *   kvm-run-bench time [BLOCK] [TRIALS]  wall clock: TRIALS x (BLOCK raw
 *                                        runs, BLOCK library runs), order
 *                                        alternating (defaults 100, 1001);
 *                                        medians in ns per exit, and the
 *                                        median of the per-pair ratios
 *                                        with its 95% confidence interval
 *   kvm-run-bench raw|lib io|mmio|fault N
 *                                        N runs in bench_loop() only, for
 *                                        callgrind --toggle-collect
 *
 * The raw loop does what every VMM must do at least: look at the result
 * (and, for a fault, read gpa/size/flags as api.rst says); the library loop
 * calls memfault_vcpu_run() (and memfault_vcpu_get_fault()).
 * Prints JSON lines; exits 77 without a usable /dev/kvm.
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
#include "memfault/memfault.h"

#define SLOT0_SIZE 0x10000ull
#define TEST_SIZE 0x2000ull

#if defined(__x86_64__)
#define ORDINARY "io"
#define CODE_GPA 0x1000ull
#define ENTRY_ORDINARY (CODE_GPA + 0x00)
#define ENTRY_FAULT (CODE_GPA + 0x10)
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
};
#elif defined(__aarch64__)
#define ORDINARY "mmio"
#define CODE_GPA 0x0ull
#define ENTRY_ORDINARY (CODE_GPA + 0x00)
#define ENTRY_FAULT (CODE_GPA + 0x10)
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
};
#else
#error "x86_64 or aarch64 only"
#endif

struct vm {
	int kvm, vm_fd, vcpu_fd, gmem_fd;
	void *mem0, *gmem_map;
	struct kvm_run *run;
	struct memfault_vm *mvm;
	struct memfault_vcpu *mvcpu;
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
	memfault_vm_free(v->mvm);
	if (v->vcpu_fd >= 0)
		close(v->vcpu_fd);
	if (v->gmem_map)
		munmap(v->gmem_map, TEST_SIZE);
	if (v->vm_fd >= 0)
		close(v->vm_fd);
	if (v->mem0)
		munmap(v->mem0, SLOT0_SIZE);
	v->mvcpu = NULL;
	v->mvm = NULL;
}

/* A VM whose vCPU gives the same exit of kind @fault on every KVM_RUN. */
static int
vm_create(struct vm *v, int kvm, bool fault)
{
	MEMFAULT_OPTS(memfault_vm_opts, opts, .kvm_fd = kvm);
	int err;

	memset(v, 0, sizeof(*v));
	v->kvm = kvm;
	v->vm_fd = v->vcpu_fd = v->gmem_fd = -1;
	v->vm_fd = ioctl(kvm, KVM_CREATE_VM, 0);
	if (v->vm_fd < 0)
		return -errno;
	v->mem0 = mmap(NULL, SLOT0_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (v->mem0 == MAP_FAILED) {
		v->mem0 = NULL;
		return -errno;
	}
	memcpy((char *)v->mem0 + CODE_GPA, guest_code, sizeof(guest_code));
	err = set_region2(v, 0, 0, 0, SLOT0_SIZE, v->mem0, 0);
	if (err)
		return err;
	if (fault) {
		struct kvm_create_guest_memfd cg;

		memset(&cg, 0, sizeof(cg));
		cg.size = TEST_SIZE;
		cg.flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
		v->gmem_fd = ioctl(v->vm_fd, KVM_CREATE_GUEST_MEMFD, &cg);
		if (v->gmem_fd < 0)
			return -errno;
		v->gmem_map = mmap(NULL, TEST_SIZE, PROT_READ | PROT_WRITE,
				   MAP_SHARED, v->gmem_fd, 0);
		if (v->gmem_map == MAP_FAILED) {
			v->gmem_map = NULL;
			return -errno;
		}
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
	v->vcpu_fd = ioctl(v->vm_fd, KVM_CREATE_VCPU, 0);
	if (v->vcpu_fd < 0)
		return -errno;
	err = set_entry(v, fault ? ENTRY_FAULT : ENTRY_ORDINARY);
	if (err)
		return err;
	err = memfault_vm_new(v->vm_fd, &opts, &v->mvm);
	if (!err)
		err = memfault_vcpu_new(v->mvm, v->vcpu_fd, NULL, &v->mvcpu);
	if (!err)
		err = memfault_vcpu_get_run(v->mvcpu, &v->run);
	return err;
}

/* noinline: callgrind's --toggle-collect needs the symbol */
__attribute__((noinline)) static long
bench_loop(struct vm *v, bool lib, bool fault, long n)
{
	long good = 0;

	if (lib && !fault) {
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
	} else if (!fault) {
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
probe(struct vm *v, bool fault, char *why, size_t len)
{
	struct sigaction sa = { .sa_handler = on_alarm }, old;
	int r;

	/* a kernel that loops on the fault (seen on kvm-pvm) is cut short */
	sigaction(SIGALRM, &sa, &old);
	alarm(2);
	r = memfault_vcpu_run(v->mvcpu);
	alarm(0);
	sigaction(SIGALRM, &old, NULL);

	if (!fault && r == MEMFAULT_RUN_EXIT)
		return 0;
	if (fault && r == MEMFAULT_RUN_MEMORY_FAULT) {
		struct memfault_fault f;

		if (!memfault_vcpu_get_fault(v->mvcpu, &f, sizeof(f)) &&
		    f.origin == MEMFAULT_ORIGIN_ERRNO && f.error == -EFAULT)
			return 0;
	}
	snprintf(why, len, "memfault_vcpu_run() = %d, exit_reason %u%s", r,
		 v->run->exit_reason,
		 r == MEMFAULT_RUN_INTERRUPTED ? " (no exit within 2 s)" : "");
	return -1;
}

/* Interrupts a KVM_RUN that does not return (see probe()). */
static void
on_alarm(int sig)
{
	(void)sig;
}

static void
time_kind(int kvm, bool fault, long block, int trials, const char *kernel)
{
	const char *kind = fault ? "fault" : ORDINARY;
	double *tr = calloc((size_t)trials * 3, sizeof(double));
	double *tl = tr + trials, *pr = tl + trials, mr, ml, mp, lo, hi;
	struct vm v = { .vm_fd = -1, .vcpu_fd = -1, .gmem_fd = -1 };
	char why[160];
	int err = tr ? vm_create(&v, kvm, fault) : -ENOMEM;

	if (err) {
		printf("{\"benchmark\":\"kvm_run\",\"exit\":\"%s\","
		       "\"skip\":\"setup: %s\"}\n", kind, strerror(-err));
		goto out;
	}
	if (probe(&v, fault, why, sizeof(why))) {
		printf("{\"benchmark\":\"kvm_run\",\"exit\":\"%s\","
		       "\"skip\":\"this kernel: %s\"}\n", kind, why);
		goto out;
	}
	/* warm up both loops */
	bench_loop(&v, false, fault, block);
	bench_loop(&v, true, fault, block);
	for (int i = 0; i < trials; i++) {
		for (int k = 0; k < 2; k++) {
			bool lib = (i + k) % 2;
			double t = now();
			long good = bench_loop(&v, lib, fault, block);

			t = (now() - t) / (double)block;
			if (good != block) {
				printf("{\"benchmark\":\"kvm_run\",\"exit\":\"%s\","
				       "\"error\":\"%s loop: %ld of %ld exits as expected\"}\n",
				       kind, lib ? "lib" : "raw", good, block);
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
	       "\"ratio_p25\":%.4f,\"ratio_p75\":%.4f}\n",
	       kind, kernel, block, trials, mr, ml, mp, lo, hi,
	       pr[trials / 4], pr[trials - 1 - trials / 4]);
	fflush(stdout);
out:
	vm_destroy(&v);
	free(tr);
}

int
main(int argc, char **argv)
{
	struct utsname u;
	const char *kernel = uname(&u) ? "?" : u.release;
	int kvm;

	if (argc < 2 || (strcmp(argv[1], "time") && strcmp(argv[1], "raw") &&
			 strcmp(argv[1], "lib"))) {
		fprintf(stderr,
			"usage: %s time [BLOCK] [TRIALS]\n"
			"       %s raw|lib " ORDINARY "|fault N\n",
			argv[0], argv[0]);
		return 2;
	}
	kvm = open_kvm();
	if (kvm < 0)
		return 77;
	if (!strcmp(argv[1], "time")) {
		long block = argc > 2 ? atol(argv[2]) : 100;
		int trials = argc > 3 ? atoi(argv[3]) : 1001;

		if (block < 1 || trials < 1 || trials > 100000)
			return 2;
		time_kind(kvm, false, block, trials, kernel);
		time_kind(kvm, true, block, trials, kernel);
	} else {
		bool lib = !strcmp(argv[1], "lib");
		bool fault = argc > 2 && !strcmp(argv[2], "fault");
		long n = argc > 3 ? atol(argv[3]) : 20000, good;
		char why[160];
		struct vm v;

		if (argc != 4 || (!fault && strcmp(argv[2], ORDINARY)) || n < 1)
			return 2;
		if (vm_create(&v, kvm, fault) || probe(&v, fault, why, sizeof(why))) {
			vm_destroy(&v);
			printf("{\"skip\":\"%s exits not available\"}\n", argv[2]);
			return 77;
		}
		good = bench_loop(&v, lib, fault, n);
		printf("{\"loop\":\"%s\",\"exit\":\"%s\",\"runs\":%ld,\"good\":%ld}\n",
		       argv[1], argv[2], n, good);
		vm_destroy(&v);
		if (good != n)
			return 1;
	}
	close(kvm);
	return 0;
}
