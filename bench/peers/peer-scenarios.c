/* SPDX-License-Identifier: MIT */
/*
 * The libmemfault side of the peer comparison (bench/peers/README.md): the
 * same KVM simulator scenarios as bench/peers/kvm-ioctls, classified by
 * memfault_vcpu_run(), and the same per-exit loops for callgrind.
 *
 * Runs under LD_PRELOAD=<build>/tests/sim/libkvmsim.so (it does not link
 * the simulator; its kvmsim_* calls are found with dlsym()). The model comes
 * from the environment (KVMSIM_ARCH, KVMSIM_LEVEL; vncr-ret0 needs
 * KVMSIM_ARCH=arm64).
 *
 *   peer-scenarios scenario NAME     one JSON line: how the result was
 *                                    classified
 *   peer-scenarios bench mmio|fault raw|lib N
 *                                    N exits in bench_loop() only, for
 *                                    callgrind --toggle-collect
 *
 * Scenarios (GPA 0x100000, one host page; MMIO at 0x10000000):
 *   mmio               an MMIO write exit
 *   gmem-efault        load from a guest_memfd slot whose fd was closed:
 *                      -1/EFAULT + exit 39
 *   gmem-hwpoison      load from a poisoned guest_memfd page:
 *                      -1/EHWPOISON + exit 39
 *   gmem-enomem        guest_memfd folio allocation fails: -1/ENOMEM + exit 39
 *   gmem-eio           the same with EIO
 *   vncr-ret0          arm64: a guest_memfd failure through the VNCR page:
 *                      KVM_RUN returns 0 with exit 39
 *   stale-ie           after a memory fault, a run with immediate_exit set:
 *                      -1/EINTR, exit_reason still 39
 *   bare-efault-stale  after a memory fault, the slot replaced by memory
 *                      that cannot be mapped: -1/EFAULT without exit 39
 *   bare-efault        the same without the fault before it
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "memfault/memfault.h"

#define GPA 0x100000ull
#define MMIO_GPA 0x10000000ull

/* The simulator's control calls (tests/sim/kvmsim.h), from the preload. */
struct sim_config {
	uint32_t arch, level;
	uint64_t quirks;
};
static int (*sim_set_script_text)(int, const char *);
static int (*sim_poison)(int, uint64_t);
static int (*sim_inject_gmem_error)(int, uint64_t, int, unsigned);
static int (*sim_get_config)(struct sim_config *);

struct vm {
	int kvm, vm_fd, vcpu_fd, gmem_fd;
	uint64_t page_size;
	void *gmem_map, *bad;
	struct kvm_run *run;
	struct memfault_vm *mvm;
	struct memfault_vcpu *mvcpu;
};

static volatile uint64_t sink;

static void
die(const char *what, int err)
{
	printf("{\"side\":\"libmemfault\",\"fatal\":\"%s: %s\"}\n", what,
	       strerror(err));
	exit(2);
}

static void *
sim_sym(const char *name)
{
	void *p = dlsym(RTLD_DEFAULT, name);

	if (!p) {
		printf("{\"side\":\"libmemfault\",\"fatal\":\"%s not found: "
		       "run under LD_PRELOAD=libkvmsim.so\"}\n", name);
		exit(2);
	}
	return p;
}

static void
sim_init(void)
{
	*(void **)&sim_set_script_text = sim_sym("kvmsim_vcpu_set_script_text");
	*(void **)&sim_poison = sim_sym("kvmsim_poison");
	*(void **)&sim_inject_gmem_error = sim_sym("kvmsim_inject_gmem_error");
	*(void **)&sim_get_config = sim_sym("kvmsim_get_config");
}

static int
set_region2(struct vm *v, uint32_t flags, uint64_t size, void *hva,
	    int gmem_fd)
{
	struct kvm_userspace_memory_region2 r;

	memset(&r, 0, sizeof(r));
	r.slot = 1;
	r.flags = flags;
	r.guest_phys_addr = GPA;
	r.memory_size = size;
	r.userspace_addr = (uintptr_t)hva;
	r.guest_memfd = (uint32_t)gmem_fd;
	return ioctl(v->vm_fd, KVM_SET_USER_MEMORY_REGION2, &r) ? -errno : 0;
}

static void
vm_create(struct vm *v)
{
	struct sim_config cfg;
	int err;

	memset(v, 0, sizeof(*v));
	v->page_size = (uint64_t)sysconf(_SC_PAGESIZE);
	v->gmem_fd = -1;
	v->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (v->kvm < 0)
		die("open /dev/kvm", errno);
	v->vm_fd = ioctl(v->kvm, KVM_CREATE_VM, 0);
	if (v->vm_fd < 0)
		die("KVM_CREATE_VM", errno);
	if (sim_get_config(&cfg))
		die("kvmsim_get_config", EINVAL);
	MEMFAULT_OPTS(memfault_vm_opts, opts, .kvm_fd = v->kvm,
		      .arch = cfg.arch);
	err = memfault_vm_new(v->vm_fd, &opts, &v->mvm);
	if (err)
		die("memfault_vm_new", -err);
	v->vcpu_fd = ioctl(v->vm_fd, KVM_CREATE_VCPU, 0);
	if (v->vcpu_fd < 0)
		die("KVM_CREATE_VCPU", errno);
	err = memfault_vcpu_new(v->mvm, v->vcpu_fd, NULL, &v->mvcpu);
	if (!err)
		err = memfault_vcpu_get_run(v->mvcpu, &v->run);
	if (err)
		die("memfault_vcpu_new", -err);
}

/* Slot 1: a guest_memfd (MMAP | INIT_SHARED) of one host page at GPA. */
static void
gmem_slot(struct vm *v)
{
	struct kvm_create_guest_memfd cg;
	int err;

	memset(&cg, 0, sizeof(cg));
	cg.size = v->page_size;
	cg.flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
	v->gmem_fd = ioctl(v->vm_fd, KVM_CREATE_GUEST_MEMFD, &cg);
	if (v->gmem_fd < 0)
		die("KVM_CREATE_GUEST_MEMFD", errno);
	v->gmem_map = mmap(NULL, v->page_size, PROT_READ | PROT_WRITE,
			   MAP_SHARED, v->gmem_fd, 0);
	if (v->gmem_map == MAP_FAILED)
		die("mmap(guest_memfd)", errno);
	err = set_region2(v, KVM_MEM_GUEST_MEMFD, v->page_size, v->gmem_map,
			  v->gmem_fd);
	if (err)
		die("KVM_SET_USER_MEMORY_REGION2(guest_memfd)", -err);
}

static void
gmem_close(struct vm *v)
{
	munmap(v->gmem_map, v->page_size);
	close(v->gmem_fd);
	v->gmem_map = NULL;
	v->gmem_fd = -1;
}

/* Slot 1: normal memory that cannot be mapped (PROT_NONE). */
static void
bad_slot(struct vm *v)
{
	int err;

	v->bad = mmap(NULL, v->page_size, PROT_NONE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (v->bad == MAP_FAILED)
		die("mmap", errno);
	err = set_region2(v, 0, v->page_size, v->bad, -1);
	if (err)
		die("KVM_SET_USER_MEMORY_REGION2(normal)", -err);
}

static void
delete_slot(struct vm *v)
{
	int err = set_region2(v, 0, 0, NULL, -1);

	if (err)
		die("KVM_SET_USER_MEMORY_REGION2(delete)", -err);
}

static void
script(struct vm *v, const char *text)
{
	int err = sim_set_script_text(v->vcpu_fd, text);

	if (err)
		die("kvmsim_vcpu_set_script_text", -err);
}

static const char *
errno_name(int e)
{
	switch (e) {
	case 0: return "none";
	case EFAULT: return "EFAULT";
	case EHWPOISON: return "EHWPOISON";
	case ENOMEM: return "ENOMEM";
	case EIO: return "EIO";
	case EINTR: return "EINTR";
	case EAGAIN: return "EAGAIN";
	case EINVAL: return "EINVAL";
	default: return "other";
	}
}

static const char *
exit_name(uint32_t r)
{
	switch (r) {
	case KVM_EXIT_UNKNOWN: return "UNKNOWN";
	case KVM_EXIT_IO: return "IO";
	case KVM_EXIT_HLT: return "HLT";
	case KVM_EXIT_MMIO: return "MMIO";
	case KVM_EXIT_SHUTDOWN: return "SHUTDOWN";
	case KVM_EXIT_INTR: return "INTR";
	case KVM_EXIT_SYSTEM_EVENT: return "SYSTEM_EVENT";
	case KVM_EXIT_MEMORY_FAULT: return "MEMORY_FAULT";
	default: return "other";
	}
}

static const char *
result_name(int r)
{
	static char buf[32];

	switch (r) {
	case MEMFAULT_RUN_EXIT: return "MEMFAULT_RUN_EXIT";
	case MEMFAULT_RUN_MEMORY_FAULT: return "MEMFAULT_RUN_MEMORY_FAULT";
	case MEMFAULT_RUN_INTERRUPTED: return "MEMFAULT_RUN_INTERRUPTED";
	case MEMFAULT_RUN_RETRY: return "MEMFAULT_RUN_RETRY";
	}
	snprintf(buf, sizeof(buf), "-%s", errno_name(-r));
	return buf;
}

/* One memfault_vcpu_run(), as one JSON line. */
static void
report(struct vm *v, const char *scen, int r)
{
	char detail[200] = "";
	const char *kind;

	if (r == MEMFAULT_RUN_EXIT) {
		kind = "exit";
		snprintf(detail, sizeof(detail), ",\"exit\":\"%s\"",
			 exit_name(v->run->exit_reason));
	} else if (r == MEMFAULT_RUN_MEMORY_FAULT) {
		struct memfault_fault f;

		kind = "fault";
		if (memfault_vcpu_get_fault(v->mvcpu, &f, sizeof(f)))
			die("memfault_vcpu_get_fault", EINVAL);
		snprintf(detail, sizeof(detail),
			 ",\"gpa\":\"0x%llx\",\"size\":\"0x%llx\","
			 "\"error\":\"%s\",\"hwpoison\":%s,\"origin\":%u",
			 (unsigned long long)f.gpa, (unsigned long long)f.size,
			 errno_name(-f.error),
			 f.flags & MEMFAULT_FAULT_HWPOISON ? "true" : "false",
			 f.origin);
	} else if (r == MEMFAULT_RUN_INTERRUPTED) {
		kind = "interrupted";
	} else if (r == MEMFAULT_RUN_RETRY) {
		kind = "retry";
	} else {
		kind = "error";
		snprintf(detail, sizeof(detail), ",\"error\":\"%s\"",
			 errno_name(-r));
	}
	printf("{\"side\":\"libmemfault\",\"scenario\":\"%s\",\"kind\":\"%s\"%s,"
	       "\"api\":\"memfault_vcpu_run() = %s\","
	       "\"exit_reason_after\":%u}\n",
	       scen, kind, detail, result_name(r), v->run->exit_reason);
}

static int
run_scenario(const char *scen)
{
	char text[64];
	struct vm v;
	int r;

	vm_create(&v);
	snprintf(text, sizeof(text), "load:%#llx:1", GPA);
	if (!strcmp(scen, "mmio")) {
		snprintf(text, sizeof(text), "mmio_write:%#llx:4:0x42", MMIO_GPA);
		script(&v, text);
	} else if (!strcmp(scen, "gmem-efault") || !strcmp(scen, "stale-ie") ||
		   !strcmp(scen, "bare-efault-stale")) {
		gmem_slot(&v);
		gmem_close(&v);
		script(&v, text);
	} else if (!strcmp(scen, "gmem-hwpoison")) {
		gmem_slot(&v);
		if (sim_poison(v.vm_fd, GPA))
			die("kvmsim_poison", EINVAL);
		script(&v, text);
	} else if (!strcmp(scen, "gmem-enomem") || !strcmp(scen, "gmem-eio") ||
		   !strcmp(scen, "vncr-ret0")) {
		gmem_slot(&v);
		if (sim_inject_gmem_error(v.vm_fd, GPA,
					  !strcmp(scen, "gmem-eio") ? EIO : ENOMEM,
					  1))
			die("kvmsim_inject_gmem_error", EINVAL);
		if (!strcmp(scen, "vncr-ret0"))
			snprintf(text, sizeof(text), "load:%#llx:4:vncr", GPA);
		script(&v, text);
	} else if (!strcmp(scen, "bare-efault")) {
		bad_slot(&v);
		script(&v, text);
	} else {
		fprintf(stderr, "unknown scenario %s\n", scen);
		return 2;
	}
	if (!strcmp(scen, "stale-ie")) {
		r = memfault_vcpu_run(v.mvcpu); /* the memory fault */
		if (r != MEMFAULT_RUN_MEMORY_FAULT)
			die("stale-ie: first run", EPROTO);
		r = memfault_vcpu_kick(v.mvcpu);
		if (r)
			die("memfault_vcpu_kick", -r);
	} else if (!strcmp(scen, "bare-efault-stale")) {
		r = memfault_vcpu_run(v.mvcpu); /* the memory fault */
		if (r != MEMFAULT_RUN_MEMORY_FAULT)
			die("bare-efault-stale: first run", EPROTO);
		delete_slot(&v);
		bad_slot(&v);
	}
	report(&v, scen, memfault_vcpu_run(v.mvcpu));
	return 0;
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
run_bench(const char *kind, const char *loop, long n)
{
	bool fault = !strcmp(kind, "fault"), lib = !strcmp(loop, "lib");
	struct vm v;
	long good;

	if ((!fault && strcmp(kind, "mmio")) ||
	    (!lib && strcmp(loop, "raw")) || n < 1)
		return 2;
	vm_create(&v);
	if (fault) {
		char text[64];

		gmem_slot(&v);
		gmem_close(&v);
		snprintf(text, sizeof(text), "load:%#llx:1", GPA);
		script(&v, text);
	} else {
		/* n + 1 MMIO writes: every measured run is an MMIO exit */
		size_t step = 40, len = (size_t)(n + 1) * step + 1;
		char *text = malloc(len), *p = text;

		if (!text)
			die("malloc", ENOMEM);
		for (long i = 0; i <= n; i++)
			p += snprintf(p, step, "mmio_write:%#llx:4:0x42;",
				      MMIO_GPA);
		script(&v, text);
		free(text);
	}
	/* one run outside the measurement: the loops start in steady state */
	memfault_vcpu_run(v.mvcpu);
	good = bench_loop(&v, lib, fault, n);
	printf("{\"side\":\"libmemfault\",\"loop\":\"%s\",\"exit\":\"%s\","
	       "\"runs\":%ld,\"good\":%ld}\n", loop, kind, n, good);
	return good == n ? 0 : 1;
}

int
main(int argc, char **argv)
{
	sim_init();
	if (argc == 3 && !strcmp(argv[1], "scenario"))
		return run_scenario(argv[2]);
	if (argc == 5 && !strcmp(argv[1], "bench"))
		return run_bench(argv[2], argv[3], atol(argv[4]));
	fprintf(stderr,
		"usage: %s scenario NAME | bench mmio|fault raw|lib N\n",
		argv[0]);
	return 2;
}
