/* SPDX-License-Identifier: MIT */
/*
 * Cost of one resolved KVM Userfault fault, from the exit to the re-entry,
 * on the simulator's "7.2 + KVM Userfault v3" model:
 *
 *   dispatch-overhead raw N   a hand-written loop: KVM_RUN, check the exit,
 *                             claim the page (test-and-set), call the
 *                             page-in callback, clear the bit with release
 *   dispatch-overhead lib N   memfault_vcpu_run_dispatch() with a page_in
 *                             handler
 *
 * The guest loads from N missing pages, one after the other. Both loops
 * call the same empty callback and make the same KVM_RUNs, so the
 * instruction difference under callgrind (bench/dispatch-overhead.sh) is
 * what the library adds per fault; handle_fault_raw() alone is what the
 * hand-written loop spends outside KVM_RUN.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "bench-stats.h"
#include "kvmsim.h"
#include "memfault/memfault.h"

#define GPA 0x40000000ull
#define USERFAULT_FLAG (1ull << 4) /* proposed KVM_MEMORY_EXIT_FLAG_USERFAULT */

static unsigned long *bitmap, *busy;
static uint64_t page_size;
static long callbacks;

__attribute__((noinline)) static int
callback(void *user, struct memfault_vcpu *vcpu, struct memfault_region *r,
	 uint64_t page, void *hva, uint64_t ps)
{
	(void)user; (void)vcpu; (void)r; (void)page; (void)hva; (void)ps;
	callbacks++;
	return MEMFAULT_RESOLVED;
}

/* The steps a careful VMM writes by hand for one userfault exit. */
__attribute__((noinline)) static int
handle_fault_raw(struct kvm_run *run, int ret, int err)
{
	uint64_t page;
	unsigned long m;

	if (ret != -1 || err != EFAULT ||
	    run->exit_reason != KVM_EXIT_MEMORY_FAULT ||
	    !(run->memory_fault.flags & USERFAULT_FLAG))
		return -1;
	page = (run->memory_fault.gpa - GPA) / page_size;
	m = 1ul << (page % 64);
	if (__atomic_fetch_or(&busy[page / 64], m, __ATOMIC_ACQ_REL) & m)
		return 0; /* another thread fetches it (never here) */
	callback(NULL, NULL, NULL, page, NULL, page_size);
	__atomic_fetch_and(&bitmap[page / 64], ~m, __ATOMIC_RELEASE);
	__atomic_fetch_and(&busy[page / 64], ~m, __ATOMIC_RELEASE);
	return 0;
}

__attribute__((noinline)) static long
bench_loop(int lib, struct memfault_vcpu *vcpu, int vcpu_fd,
	   struct kvm_run *run)
{
	if (lib)
		return memfault_vcpu_run_dispatch(vcpu);
	for (;;) {
		int r = ioctl(vcpu_fd, KVM_RUN, 0);

		if (r == 0)
			return MEMFAULT_RUN_EXIT;
		if (handle_fault_raw(run, r, errno))
			return -1;
	}
}

int
main(int argc, char **argv)
{
	struct kvmsim_config cfg = { KVMSIM_X86_64, KVMSIM_LEVEL_7_2_UF, 0 };
	MEMFAULT_OPTS(memfault_handlers, h, .page_in = callback);
	MEMFAULT_OPTS(memfault_region_opts, ro,
		      .flags = MEMFAULT_REGION_USERFAULT | MEMFAULT_REGION_MISSING);
	struct kvm_userspace_memory_region2_uf_compat {
		uint32_t slot, flags;
		uint64_t gpa, size, hva, gmem_off;
		uint32_t gmem_fd, pad1;
		uint64_t bitmap, pad2[13];
	} m;
	struct memfault_region_info info;
	struct memfault_region *region;
	struct memfault_vcpu *vcpu;
	struct memfault_vm *vm;
	struct kvm_run *run;
	int kvm, vmfd, vcpu_fd, lib;
	long n, r;
	char *script, *p;
	void *mem;

	if (argc != 3 || (strcmp(argv[1], "raw") && strcmp(argv[1], "lib"))) {
		fprintf(stderr, "usage: %s raw|lib N\n", argv[0]);
		return 2;
	}
	lib = !strcmp(argv[1], "lib");
	n = atol(argv[2]);
	page_size = (uint64_t)sysconf(_SC_PAGESIZE);
	cfg.quirks = kvmsim_default_quirks(cfg.arch, cfg.level);
	kvmsim_reset(&cfg);
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	vmfd = ioctl(kvm, KVM_CREATE_VM, 0);
	vcpu_fd = ioctl(vmfd, KVM_CREATE_VCPU, 0);
	mem = mmap(NULL, (size_t)n * page_size, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (kvm < 0 || vmfd < 0 || vcpu_fd < 0 || mem == MAP_FAILED ||
	    memfault_vm_new(vmfd, NULL, &vm) ||
	    memfault_vcpu_new(vm, vcpu_fd, NULL, &vcpu) ||
	    memfault_vcpu_get_run(vcpu, &run))
		return 1;
	if (lib) {
		if (memfault_vm_set_handlers(vm, &h) ||
		    memfault_region_new(vm, 1, GPA, (uint64_t)n * page_size, mem,
					&ro, &region) ||
		    memfault_region_get_info(region, &info, sizeof(info)))
			return 1;
	} else {
		size_t words = (size_t)(n + 63) / 64;

		bitmap = calloc(words, sizeof(long));
		busy = calloc(words, sizeof(long));
		memset(bitmap, 0xff, words * sizeof(long));
		memset(&m, 0, sizeof(m));
		m.slot = 1;
		m.flags = 1u << 3; /* proposed KVM_MEM_USERFAULT */
		m.gpa = GPA;
		m.size = (uint64_t)n * page_size;
		m.hva = (uintptr_t)mem;
		m.bitmap = (uintptr_t)bitmap;
		if (ioctl(vmfd, KVM_SET_USER_MEMORY_REGION2, &m))
			return 1;
	}
	script = p = malloc((size_t)n * 32 + 1);
	for (long i = 0; i < n; i++)
		p += sprintf(p, "load:%#llx:1;",
			     (unsigned long long)(GPA + (uint64_t)i * page_size));
	if (kvmsim_vcpu_set_script_text(vcpu_fd, script))
		return 1;
	bench_sstep_mark();
	r = bench_loop(lib, vcpu, vcpu_fd, run);
	bench_sstep_mark();
	printf("{\"loop\":\"%s\",\"faults\":%ld,\"callbacks\":%ld,\"result\":%ld}\n",
	       argv[1], n, callbacks, r);
	return r == MEMFAULT_RUN_EXIT && callbacks == n ? 0 : 1;
}
