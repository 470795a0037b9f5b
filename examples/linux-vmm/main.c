/* SPDX-License-Identifier: MIT */
/*
 * linux-vmm - boot a real Linux guest (x86-64) whose RAM is served lazily
 * through libmemfault, as the destination of a post-copy migration would.
 *
 * The VMM loads a bzImage and an initramfs into a RAM image (image.c) that
 * it never writes into the guest: a page-source child process holds it
 * and answers page requests (source.c). The guest RAM is one libmemfault
 * region that starts with every page missing; vCPU accesses come as KVM
 * Userfault exits, all other accesses as userfaultfd faults, and both go
 * through the same page_in() and the same bitmap (vm.c). The UART and the
 * reset port are in devices.c, the pause-save-restore in snapshot.c.
 * After the guest resets, the VMM checks: every fetched page arrived
 * intact, no page was requested twice, and the pages fetched are exactly
 * the pages the guest memory has resident.
 *
 * The guest command line needs noxsave (the supported CPUID passed through
 * gives an XSAVE size the guest rejects), lpj= and no_timer_check (nested
 * SVM under TCG delivers timer interrupts late, so calibration and the
 * IO-APIC timer check can fail on a loaded host).
 *
 * Usage: linux-vmm --kernel bzImage --initrd initrd.gz [--mem MiB]
 *        [--cpus N] [--append "cmdline"] [--eager] [--timeout s]
 *        [--snapshot-at N]
 * --snapshot-at N: when the guest prints "GUEST: tick N", pause it, save
 * its vCPU and device state and its RAM (as a new page source's image),
 * and restore it into a fresh VM whose RAM starts all missing again: the
 * guest goes on from where it stopped, its pages served lazily
 * (Firecracker-style lazy restore).
 * --eager copies the image into RAM up front (no page source), for
 * comparison. Exit status 0 only if the guest reset and every check passed.
 * MEMFAULT_LINUX_VMM_MUTANT (test only) breaks one step on purpose:
 * "dup" requests one page twice, "byte" makes the source corrupt a byte,
 * "extra" requests a page nobody touched, "stale" restores a snapshot
 * from the boot image instead of the guest's pages.
 *
 * arm64 is not done: its boot protocol (Image header, a device tree) and
 * devices (GIC, PL011) would be a second VMM of their own.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "linux-vmm.h"

double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int
fail(const char *what, int r)
{
	fprintf(stderr, "linux-vmm: %s: %s\n", what, strerror(r < 0 ? -r : r));
	return r < 0 ? r : -r;
}

bool
is_mutant(const struct vmm *v, const char *name)
{
	return v->mutant && !strcmp(v->mutant, name);
}

/* The counters of a run: per vCPU, the userfaultfd's, the timing line. */
static void
report(struct vmm *v)
{
	uint64_t handler_ns = 0, fetches = v->fetches;

	for (int i = 0; i < v->ncpus; i++) {
		struct memfault_vcpu_stats s = { 0 };

		memfault_vcpu_get_stats(v->cpu[i].vcpu, &s, sizeof(s));
		printf("vcpu%d: %" PRIu64 " runs, %" PRIu64 " exits, %" PRIu64 " userfault exits, %" PRIu64 " page-ins, %" PRIu64 " waits, %" PRIu64 " uffd faults, handlers %.1f ms\n",
		       i, s.runs, s.exits, s.userfaults, s.page_ins,
		       s.page_waits, s.uffd_faults, s.handler_ns / 1e6);
		handler_ns += s.handler_ns;
	}
	if (v->uffd) {
		struct memfault_uffd_stats u = { 0 };

		memfault_uffd_get_stats(v->uffd, &u, sizeof(u));
		printf("uffd: %" PRIu64 " faults, %" PRIu64 " page-ins, %" PRIu64 " KVM-exit page-ins installed, %" PRIu64 " waits, p50 %" PRIu64 " us\n",
		       u.faults, u.page_ins, u.kvm_page_ins, u.waits,
		       u.latency_p50_ns / 1000);
	}
	/* bench/linux-guest.sh reads this line by its fields */
	printf("timing: init at %.3f s, run %.3f s, %" PRIu64 " source fetches %.1f ms (%.1f us each), handlers %.1f ms\n",
	       v->t_init ? v->t_init - v->t_start : -1.0, now() - v->t_start,
	       fetches, v->fetch_ns / 1e6,
	       fetches ? v->fetch_ns / 1e3 / fetches : 0.0, handler_ns / 1e6);
}

static int
parse_args(struct vmm *v, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' },
		{ "append", required_argument, NULL, 'a' },
		{ "mem", required_argument, NULL, 'm' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "eager", no_argument, NULL, 'e' },
		{ "timeout", required_argument, NULL, 't' },
		{ "snapshot-at", required_argument, NULL, 's' },
		{ 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			v->kernel = optarg;
			break;
		case 'i':
			v->initrd = optarg;
			break;
		case 'a':
			v->append = optarg;
			break;
		case 'm':
			v->mem_size = strtoull(optarg, NULL, 0) << 20;
			break;
		case 'c':
			v->ncpus = atoi(optarg);
			break;
		case 'e':
			v->eager = true;
			break;
		case 't':
			v->timeout_s = (unsigned)atoi(optarg);
			break;
		case 's':
			v->snapshot_at = atoi(optarg);
			break;
		default:
			return -EINVAL;
		}
	}
	if (v->snapshot_at && v->eager)
		v->snapshot_at = 0; /* restores are lazy only */
	if (!v->kernel || !v->initrd || v->ncpus < 1 || v->ncpus > MAX_CPUS ||
	    v->mem_size < (64ull << 20) || v->mem_size > (3ull << 30)) {
		fprintf(stderr, "usage: linux-vmm --kernel bzImage --initrd initrd [--mem MiB (64-3072)] [--cpus 1-%d] [--append cmdline] [--eager] [--timeout s] [--snapshot-at N]\n",
			MAX_CPUS);
		return -EINVAL;
	}
	return 0;
}

/*
 * The snapshot run: check what was fetched so far, save, restore, run
 * again. Returns a negative errno if the VMM could not go on, else 0 with
 * *ok false if a check failed.
 */
static int
snapshot_and_restore(struct vmm *v, bool *ok)
{
	int r;

	*ok = check_pages(v);
	r = snapshot_save(v);
	if (r)
		return r;
	teardown(v);
	v->restoring = true;
	v->snapshot_at = -1;
	r = vmm_setup(v);
	if (!r)
		r = snapshot_restore(v);
	if (r)
		return r;
	printf("linux-vmm: restored into a fresh VM, all %" PRIu64 " pages missing\n",
	       v->npages);
	*ok = run_phase(v) && *ok;
	report(v);
	return 0;
}

int
main(int argc, char **argv)
{
	static struct vmm vmm = {
		.mem_size = 128ull << 20,
		.ncpus = 1,
		.timeout_s = 60,
		.append = "console=ttyS0 noxsave lpj=700000 no_timer_check "
			  "reboot=k panic=-1 quiet",
	};
	struct vmm *v = &vmm;
	bool ok;
	int r;

	if (parse_args(v, argc, argv))
		return 2;
	v->mutant = getenv("MEMFAULT_LINUX_VMM_MUTANT");
	v->npages = v->mem_size / PAGE;
	v->src_sum = calloc(v->npages, sizeof(*v->src_sum));
	v->got_sum = calloc(v->npages, sizeof(*v->got_sum));
	v->fetched = calloc(v->npages, sizeof(*v->fetched));
	if (!v->src_sum || !v->got_sum || !v->fetched)
		return 2;
	pthread_mutex_init(&v->source_lock, NULL);
	pthread_mutex_init(&v->uart_lock, NULL);
	v->t_start = now();
	if (sched_getaffinity(0, sizeof(v->all_cpus), &v->all_cpus))
		CPU_ZERO(&v->all_cpus);
	pin_to(v, 0);
	r = build_image(v);
	if (r)
		return fail("loading the kernel and initrd", r), 2;
	if (vmm_setup(v))
		return 2;
	printf("linux-vmm: %d vCPU(s), %" PRIu64 " MiB, %s\n", v->ncpus,
	       v->mem_size >> 20,
	       v->eager ? "eager (RAM copied up front)"
			: "lazy: all pages missing, served by the page source (KVM Userfault + userfaultfd)");
	/* The VMM's own access: it reads the setup header back through the
	 * guest RAM, a host access that userfaultfd serves. */
	if (memcmp(v->ram + BOOT_PARAMS + 0x202, "HdrS", 4)) {
		printf("linux-vmm: boot_params do not read back\n");
		return 1;
	}
	ok = run_phase(v);
	report(v);
	/* pairs with the release store in uart_putc() (the threads that
	 * stored it are joined, so this only names the pair) */
	if (ok && atomic_load_explicit(&v->snapshot, memory_order_acquire) &&
	    snapshot_and_restore(v, &ok))
		return 1;
	if (!atomic_load_explicit(&v->reset, memory_order_acquire)) {
		printf("linux-vmm: FAILED: the guest did not reset\n");
		ok = false;
	}
	if (v->panicked) {
		printf("linux-vmm: FAILED: the guest panicked\n");
		ok = false;
	}
	if (!v->eager && is_mutant(v, "extra")) {
		/* mutant: one request for a page nobody touched */
		uint64_t page, sum;
		uint8_t *buf = malloc(PAGE);

		if (buf && !memfault_region_find_missing(v->region, 0, &page))
			source_fetch(v, page, buf, &sum);
		free(buf);
	}
	if (!v->eager)
		ok = check_pages(v) && ok;
	source_stop(v);
	printf("linux-vmm: %s\n", ok ? "PASS" : "FAIL");
	return ok ? 0 : 1;
}
