/* SPDX-License-Identifier: MIT */
/*
 * Cost of memfault_vcpu_run() beyond the raw KVM_RUN, on the simulator.
 *
 *   run-overhead raw N   N x ioctl(KVM_RUN) + the check every VMM makes
 *   run-overhead lib N   N x memfault_vcpu_run()
 *
 * Both loops run the same guest (an MMIO write, then the same exit forever)
 * through the same simulated ioctl, so the instruction difference under
 * callgrind (bench/run-overhead.sh toggles collection on bench_loop only)
 * is the library's own cost. The program also checks that each
 * memfault_vcpu_run() made exactly one KVM_RUN, from the simulator's count.
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

static int vcpu_fd;
static struct kvm_run *run;
static struct memfault_vcpu *vcpu;

/* noinline: callgrind's --toggle-collect needs the symbol */
__attribute__((noinline)) static long
bench_loop(int lib, long n)
{
	long exits = 0;

	if (lib) {
		for (long i = 0; i < n; i++)
			exits += memfault_vcpu_run(vcpu) == MEMFAULT_RUN_EXIT;
	} else {
		for (long i = 0; i < n; i++) {
			int r = ioctl(vcpu_fd, KVM_RUN, 0);

			/* what a raw loop must do at least: look at the result */
			exits += r == 0 && run->exit_reason != KVM_EXIT_MEMORY_FAULT;
		}
	}
	return exits;
}

int
main(int argc, char **argv)
{
	struct kvmsim_config cfg = { KVMSIM_X86_64, KVMSIM_LEVEL_7_2, 0 };
	struct kvmsim_stats before, after;
	struct memfault_vm *vm;
	int kvm, vmfd, lib;
	long n, exits;

	if (argc != 3 || (strcmp(argv[1], "raw") && strcmp(argv[1], "lib"))) {
		fprintf(stderr, "usage: %s raw|lib N\n", argv[0]);
		return 2;
	}
	lib = !strcmp(argv[1], "lib");
	n = atol(argv[2]);
	cfg.quirks = kvmsim_default_quirks(cfg.arch, cfg.level);
	if (kvmsim_reset(&cfg))
		return 1;
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	vmfd = ioctl(kvm, KVM_CREATE_VM, 0);
	vcpu_fd = ioctl(vmfd, KVM_CREATE_VCPU, 0);
	if (kvm < 0 || vmfd < 0 || vcpu_fd < 0 ||
	    memfault_vm_new(vmfd, NULL, &vm) ||
	    memfault_vcpu_new(vm, vcpu_fd, NULL, &vcpu) ||
	    memfault_vcpu_get_run(vcpu, &run) ||
	    kvmsim_vcpu_set_script_text(vcpu_fd, "mmio_write:0x1000:4:1"))
		return 1;
	/* past the script's end every KVM_RUN gives the same exit */
	memfault_vcpu_run(vcpu);
	kvmsim_get_stats(&before);
	bench_sstep_mark();
	exits = bench_loop(lib, n);
	bench_sstep_mark();
	kvmsim_get_stats(&after);
	printf("{\"loop\":\"%s\",\"iterations\":%ld,\"exits\":%ld,"
	       "\"kvm_run_calls\":%llu}\n",
	       argv[1], n, exits,
	       (unsigned long long)(after.runs - before.runs));
	memfault_vcpu_free(vcpu);
	memfault_vm_free(vm);
	return exits == n && (long)(after.runs - before.runs) == n ? 0 : 1;
}
