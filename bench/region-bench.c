/* SPDX-License-Identifier: MIT */
/*
 * Memory per page and setup time of a 1 TiB region (bitmap only:
 * MEMFAULT_REGION_NO_MEMSLOT), with and without MEMFAULT_REGION_MISSING,
 * against what a VMM's own bitmap costs, interleaved in one process,
 * medians of repeated trials.
 *
 *   lib       memfault_region_new(1 TiB, NO_MEMSLOT [| MISSING])
 *   baseline  the one bitmap KVM Userfault needs (1 bit per host page),
 *             mmap(MAP_NORESERVE) [+ memset(0xff) for MISSING]
 *
 * Memory is the growth of the process's anonymous RSS (RssAnon in
 * /proc/self/status) from before the call until after it, while the region
 * exists: what the bitmap commits, not what it reserves.
 *
 *   region-bench [GiB] [trials]      defaults 1024 GiB, 9 trials
 *
 * Prints one JSON object per mode; ratios are lib / baseline.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "bench-stats.h"
#include "kvmsim.h"
#include "memfault/memfault.h"

static struct memfault_vm *vm;
static uint64_t page_size;

/* Anonymous resident memory of this process, in bytes. */
static double
rss_anon(void)
{
	char line[256];
	double kib = -1;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "RssAnon: %lf kB", &kib) == 1)
			break;
	fclose(f);
	return kib * 1024;
}

/* One trial of the baseline: time in ns, committed bytes in *mem. */
static double
baseline(uint64_t npages, bool missing, double *mem)
{
	size_t bytes = (size_t)((npages + 63) / 64 * 8);
	double r0 = rss_anon(), t;
	void *p;

	t = now();
	p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		exit(1);
	if (missing)
		memset(p, 0xff, bytes);
	__asm__ __volatile__("" ::: "memory");
	t = now() - t;
	*mem = rss_anon() - r0;
	munmap(p, bytes);
	return t;
}

static double
lib(uint64_t size, bool missing, double *mem)
{
	MEMFAULT_OPTS(memfault_region_opts, o,
		      .flags = MEMFAULT_REGION_NO_MEMSLOT |
			       (missing ? MEMFAULT_REGION_MISSING : 0));
	struct memfault_region *r;
	double r0 = rss_anon(), t;
	int err;

	t = now();
	err = memfault_region_new(vm, 0, 0, size, NULL, &o, &r);
	t = now() - t;
	if (err) {
		fprintf(stderr, "memfault_region_new: %s\n", strerror(-err));
		exit(1);
	}
	*mem = rss_anon() - r0;
	memfault_region_free(r);
	return t;
}

int
main(int argc, char **argv)
{
	struct kvmsim_config cfg = { KVMSIM_X86_64, KVMSIM_LEVEL_7_2, 0 };
	uint64_t gib = argc > 1 ? strtoull(argv[1], NULL, 0) : 1024;
	int trials = argc > 2 ? atoi(argv[2]) : 9;
	uint64_t size = gib << 30, npages;
	int kvm, vmfd;

	if (!gib || gib > (1u << 20) || trials < 1 || trials > 99) {
		fprintf(stderr, "usage: %s [GiB 1..2^20] [trials 1..99]\n",
			argv[0]);
		return 2;
	}
	page_size = (uint64_t)sysconf(_SC_PAGESIZE);
	npages = size / page_size;
	cfg.quirks = kvmsim_default_quirks(cfg.arch, cfg.level);
	if (kvmsim_reset(&cfg))
		return 1;
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	vmfd = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vmfd < 0 || memfault_vm_new(vmfd, NULL, &vm) || rss_anon() < 0)
		return 1;
	for (int missing = 0; missing < 2; missing++) {
		double tb[99], tl[99], mb[99], ml[99], b, l, bm, lm;

		for (int i = 0; i < trials; i++) {
			if (i % 2) {
				tl[i] = lib(size, missing, &ml[i]);
				tb[i] = baseline(npages, missing, &mb[i]);
			} else {
				tb[i] = baseline(npages, missing, &mb[i]);
				tl[i] = lib(size, missing, &ml[i]);
			}
		}
		b = median(tb, trials);
		l = median(tl, trials);
		bm = median(mb, trials);
		lm = median(ml, trials);
		printf("{\"benchmark\":\"region_setup\",\"missing\":%s,"
		       "\"size\":%llu,\"pages\":%llu,\"page_size\":%llu,"
		       "\"trials\":%d,\"baseline\":\"%s\","
		       "\"baseline_ns\":%.0f,\"lib_ns\":%.0f,\"time_ratio\":%.3f,"
		       "\"baseline_bytes\":%.0f,\"lib_bytes\":%.0f,"
		       "\"baseline_bytes_per_page\":%.6f,"
		       "\"lib_bytes_per_page\":%.6f}\n",
		       missing ? "true" : "false", (unsigned long long)size,
		       (unsigned long long)npages,
		       (unsigned long long)page_size, trials,
		       missing ? "mmap_noreserve_memset" : "mmap_noreserve",
		       b, l, l / b, bm, lm, bm / (double)npages,
		       lm / (double)npages);
		fflush(stdout);
	}
	memfault_vm_free(vm);
	return 0;
}
