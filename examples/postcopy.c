/* SPDX-License-Identifier: MIT */
/*
 * postcopy.c - post-copy live migration, the destination side, with
 * libmemfault: the guest runs before its memory has arrived, and every
 * page is fetched from the source exactly once, on demand or in the
 * background, whichever comes first.
 *
 * The source is a page server in a child process (postcopy-source.c): it
 * holds the guest's memory and answers page requests on an urgent and a
 * background channel, --latency-us per page. How pages arrive is in
 * postcopy-pages.c; this file holds the guest, the setup and main().
 *
 * The VMM starts the guest with every page of its memory missing:
 *
 *   slot 0  64 KiB of RAM at GPA 0: the guest program and its parameters;
 *   slot 1  the migrated memory, --pages host pages at GPA 0x20000 (x86-64)
 *           or 0x20000000 (arm64), registered with libmemfault as a region
 *           whose bitmap starts all set (MEMFAULT_REGION_MISSING).
 *
 * Pages arrive in two ways, and each exactly once:
 *   - on demand: a vCPU touches a missing page, the library claims it and
 *     calls the page_in() handler, which asks the source on the urgent
 *     channel and writes the page; the library publishes it and re-enters;
 *   - in the background: a prefetch thread walks the region from the first
 *     page up, claims each missing page with MEMFAULT_CLAIM_NOWAIT (skipping
 *     pages a vCPU is fetching), fetches it on the background channel,
 *     writes it and publishes it with memfault_region_publish(). Under
 *     userfaultfd it writes through the alias mapping (the memslot's own
 *     mapping would fault on the page it holds), and the publish wakes the
 *     threads that faulted on the page meanwhile.
 *
 * How missing pages trap, in order of preference:
 *   - KVM Userfault (MEMFAULT_REGION_USERFAULT: the proposed, unmerged
 *     kernel series): a vCPU access exits with MEMFAULT_FAULT_USERFAULT and
 *     memfault_vcpu_run_dispatch() resolves it;
 *   - userfaultfd, the library's fallback (memfault_uffd_*): the memory is a
 *     memfd mapped twice, the region is registered in MEMFAULT_UFFD_MINOR
 *     mode, and KVM's own access through the memslot blocks in the kernel
 *     until a library thread has called page_in() and mapped the page;
 *     where userfaultfd is not allowed, the example exits 77.
 *
 * The guest reads, from the last page down to the first, the 32-bit word
 * at byte (page * 8) % page_size of every page and adds them up (the
 * prefetcher walks upwards, so the two meet somewhere in the middle), then
 * reports the sum and stops. It exits 0 only if every page was fetched
 * exactly once, holds what the source holds, and the guest's checksum
 * matches the source's; 1 on failure, 2 on a usage error, 77 (SKIP) when
 * no backend is available.
 *
 * Usage:
 *   postcopy [--pages N] [--latency-us US]
 *       on a host with /dev/kvm (the host's architecture);
 *   LD_PRELOAD=build/tests/sim/libkvmsim.so KVMSIM_LEVEL=7.2-uf \
 *   KVMSIM_ARCH=arm64 KVMSIM_SCRIPT='...' postcopy --arch arm64 --pages 64
 *       on the test suite's KVM simulator (level 7.2-uf has KVM Userfault),
 *       which runs no machine code: its script makes the same loads and
 *       reports each word (register WORD), and the VMM adds them up.
 *       examples/meson.build writes the script; `meson test -v
 *       postcopy-sim-arm64-7.2-uf` shows the command.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create() */
#endif

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <memfault/memfault.h>

#include "example-vm.h"
#include "postcopy.h"

#define MAX_PAGES 128 /* x86 real mode reaches 0x20000..0x9ffff */

/*
 * The guest's device: x86-64 IO ports 0xe0 + reg, arm64 MMIO at
 * 0x10000000 + reg, 32-bit registers:
 *   SUM   written with the guest's checksum (the real guest)
 *   WORD  written with each word the guest read (the simulator's script)
 *   DONE  arm64: written last (x86-64 halts)
 */
enum { REG_SUM = 0x0, REG_WORD = 0x4, REG_DONE = 0x8 };
#define X86_PORT 0xe0
#define ARM64_DEV_GPA 0x10000000

/*
 * x86-64, 16-bit real mode at GPA 0x1000 (CS base 0); parameters (16-bit
 * words) at 0xf00: page count, segment of the last page, offset of the
 * word to read in it. Assembled with `as --32` (.code16):
 *
 *	xor   %ebx, %ebx		sum = 0
 *	mov   0xf00, %dx		pages left
 *	mov   0xf02, %cx		segment of the page (DS base = cx << 4)
 *	mov   0xf04, %si		offset of the word in it
 * 1:	mov   %cx, %ds
 *	add   (%si), %ebx
 *	sub   $0x100, %cx		one 4 KiB page down
 *	sub   $8, %si			the next page's word
 *	and   $0xfff, %si
 *	dec   %dx
 *	jnz   1b
 *	mov   %ebx, %eax
 *	out   %eax, $0xe0		SUM
 * 2:	hlt
 *	jmp   2b
 */
static const uint8_t x86_program[] = {
	0x66, 0x31, 0xdb, 0x8b, 0x16, 0x00, 0x0f, 0x8b, 0x0e, 0x02, 0x0f,
	0x8b, 0x36, 0x04, 0x0f, 0x8e, 0xd9, 0x66, 0x03, 0x1c, 0x81, 0xe9,
	0x00, 0x01, 0x83, 0xee, 0x08, 0x81, 0xe6, 0xff, 0x0f, 0x4a, 0x75,
	0xed, 0x66, 0x89, 0xd8, 0x66, 0xe7, 0xe0, 0xf4, 0xeb, 0xfd,
};
#define X86_PARAM_GPA 0xf00

/*
 * arm64, EL1 with the MMU off, at GPA 0; parameters (64-bit) at 0x800:
 * page count, page size, address of the last page, offset of the word to
 * read in it. Assembled with `aarch64-linux-gnu-as`:
 *
 *	movz x0, #0x1000, lsl #16	the device
 *	mov  x9, #0x800			the parameters
 *	ldr  x2, [x9]			pages left
 *	ldr  x3, [x9, #8]		page size
 *	ldr  x4, [x9, #16]		the page
 *	ldr  x5, [x9, #24]		offset of the word in it
 *	sub  x6, x3, #1
 *	mov  w7, #0			sum = 0
 * 1:	ldr  w8, [x4, x5]
 *	add  w7, w7, w8
 *	sub  x4, x4, x3			one page down
 *	sub  x5, x5, #8			the next page's word
 *	and  x5, x5, x6
 *	subs x2, x2, #1
 *	b.ne 1b
 *	str  w7, [x0]			SUM
 *	str  w7, [x0, #8]		DONE
 * 2:	b    2b
 */
static const uint32_t arm64_program[] = {
	0xd2a20000, 0xd2810009, 0xf9400122, 0xf9400523, 0xf9400924,
	0xf9400d25, 0xd1000466, 0x52800007, 0xb8656888, 0x0b0800e7,
	0xcb030084, 0xd10020a5, 0x8a0600a5, 0xf1000442, 0x54ffff41,
	0xb9000007, 0xb9000807, 0x14000000,
};
#define ARM64_PARAM_GPA 0x800

/* ---- The guest ------------------------------------------------------------ */

/* A 32-bit write to the device's register @reg. */
static int
guest_write(struct vmm *v, uint64_t reg, const uint8_t *data, uint32_t len)
{
	uint32_t value;

	if (len != 4)
		return -EPROTO;
	memcpy(&value, data, 4); /* little-endian hosts */
	if (reg == REG_WORD) {
		v->word_sum += value;
		v->words++;
	} else if (reg == REG_SUM) {
		v->guest_sum = value;
		v->have_guest_sum = true;
	} else if (reg == REG_DONE) {
		v->done = true;
	} else {
		return -EPROTO;
	}
	return 0;
}

static int
handle_exit(struct vmm *v, struct kvm_run *run)
{
	if (run->exit_reason == KVM_EXIT_IO &&
	    run->io.direction == KVM_EXIT_IO_OUT && run->io.count == 1)
		return guest_write(v, run->io.port - X86_PORT,
				   (uint8_t *)run + run->io.data_offset,
				   run->io.size);
	if (run->exit_reason == KVM_EXIT_MMIO && run->mmio.is_write)
		return guest_write(v, run->mmio.phys_addr - ARM64_DEV_GPA,
				   run->mmio.data, run->mmio.len);
	if (run->exit_reason == KVM_EXIT_HLT) {
		v->done = true;
		return 0;
	}
	printf("error: unexpected exit %u\n", run->exit_reason);
	return -EPROTO;
}

/* Missing pages are fetched inside memfault_vcpu_run_dispatch(). */
static int
run_guest(struct vmm *v)
{
	struct memfault_fault f;
	int r;

	while (!v->done) {
		r = memfault_vcpu_run_dispatch(v->ev.vcpu);
		switch (r) {
		case MEMFAULT_RUN_EXIT:
			r = handle_exit(v, v->ev.run);
			if (r)
				return r;
			break;
		case MEMFAULT_RUN_INTERRUPTED:
		case MEMFAULT_RUN_RETRY:
			break;
		case MEMFAULT_RUN_MEMORY_FAULT:
			/* nothing this VMM knows how to resolve */
			if (!memfault_vcpu_get_fault(v->ev.vcpu, &f, sizeof(f)))
				printf("error: memory fault at gpa %#" PRIx64 ", flags %#" PRIx64 ", error %d\n",
				       f.gpa, f.flags, f.error);
			return -EFAULT;
		default:
			return example_fail("memfault_vcpu_run_dispatch", r);
		}
	}
	return 0;
}

/* ---- Setup ---------------------------------------------------------------- */

/* The guest program and its parameters in slot 0. */
static int
add_program(struct vmm *v)
{
	uint64_t last = v->npages - 1, ps = v->ev.page_size;
	uint64_t last_gpa = v->mem_gpa + last * ps;
	int r;

	if (v->ev.arch == MEMFAULT_ARCH_X86_64) {
		uint16_t params[3] = { (uint16_t)v->npages,
				       (uint16_t)(last_gpa >> 4),
				       (uint16_t)probe_offset(last, ps) };

		r = example_vm_add_ram(&v->ev, x86_program, sizeof(x86_program));
		if (!r)
			memcpy(v->ev.ram + X86_PARAM_GPA, params, sizeof(params));
	} else {
		uint64_t params[4] = { v->npages, ps, last_gpa,
				       probe_offset(last, ps) };

		r = example_vm_add_ram(&v->ev, arm64_program,
				       sizeof(arm64_program));
		if (!r)
			memcpy(v->ev.ram + ARM64_PARAM_GPA, params,
			       sizeof(params));
	}
	return r;
}

/* Returns 0, a negative errno, or EXAMPLE_EXIT_SKIP. */
static int
setup(struct vmm *v)
{
	int r;
	/* page_in() fetches the missing pages the vCPU touches. */
	MEMFAULT_OPTS(memfault_handlers, handlers,
		.user = v,
		.page_in = page_in,
		.log = example_log);

	r = example_vm_new(&v->ev, 0);
	if (r)
		return r;
	r = memfault_vm_set_handlers(v->ev.vm, &handlers);
	if (r)
		return example_fail("memfault_vm_set_handlers", r);
	r = add_program(v);
	if (!r)
		r = map_memory(v);
	if (!r)
		r = add_memory(v);
	if (r)
		return r;
	printf("memory: %" PRIu64 " pages of %zu bytes at GPA %#" PRIx64 ", all missing; source %u us away per page\n",
	       v->npages, v->ev.page_size, v->mem_gpa, v->latency_us);
	r = example_vcpu_new(&v->ev, 0);
	if (r)
		return r;
	if (v->uffd) {
		r = memfault_uffd_add_vcpu(v->uffd, v->ev.vcpu);
		if (r)
			return example_fail("memfault_uffd_add_vcpu", r);
	}
	return 0;
}

static void
teardown(struct vmm *v)
{
	size_t size = v->npages * v->ev.page_size;

	if (v->uffd && v->ev.vcpu)
		memfault_uffd_remove_vcpu(v->uffd, v->ev.vcpu);
	memfault_uffd_free(v->uffd);
	memfault_region_free(v->mem_region);
	example_vm_free(&v->ev);
	if (v->mem)
		munmap(v->mem, size);
	if (v->alias)
		munmap(v->alias, size);
	if (v->mem_fd >= 0)
		close(v->mem_fd);
}

/* ---- main ----------------------------------------------------------------- */

static int
usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [--arch x86_64|arm64] [--pages N] [--latency-us US]\n"
		"  --pages N        pages of guest memory to migrate, 1..%d (default 64)\n"
		"  --latency-us US  the source's delay per page (default 200)\n",
		argv0, MAX_PAGES);
	return 2;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "arch", required_argument, NULL, 'a' },
		{ "pages", required_argument, NULL, 'p' },
		{ "latency-us", required_argument, NULL, 'l' },
		{ NULL, 0, NULL, 0 },
	};
	struct vmm v = {
		.mem_fd = -1,
		.npages = 64,
		.latency_us = 200,
		.next_milestone = 1,
		.progress_lock = PTHREAD_MUTEX_INITIALIZER,
		.urgent = { .lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1 },
		.background = { .lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1 },
	};
	const char *arch = NULL;
	char *end;
	int c, r;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == 'a') {
			arch = optarg;
		} else if (c == 'p') {
			v.npages = strtoull(optarg, &end, 0);
			if (*end || !v.npages || v.npages > MAX_PAGES)
				return usage(argv[0]);
		} else if (c == 'l') {
			v.latency_us = (unsigned)strtoul(optarg, &end, 0);
			if (*end || v.latency_us > 1000000)
				return usage(argv[0]);
		} else {
			return usage(argv[0]);
		}
	}
	if (optind != argc || example_set_arch(&v.ev, arch))
		return usage(argv[0]);
	v.mem_gpa = v.ev.arch == MEMFAULT_ARCH_X86_64 ? 0x20000 : 0x20000000;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (v.ev.arch == MEMFAULT_ARCH_X86_64 && sysconf(_SC_PAGESIZE) != 4096) {
		fprintf(stderr, "%s: the x86-64 guest needs 4 KiB pages\n", argv[0]);
		return 2;
	}

	/* The source first, before any thread exists: it forks. */
	r = start_server(v.npages, (size_t)sysconf(_SC_PAGESIZE), v.latency_us,
			 &v.urgent, &v.background, &v.server);
	if (r)
		return example_result(&v.ev, example_fail("starting the page server", r));
	printf("source: page server, pid %d, urgent and background channels\n",
	       (int)v.server);

	r = setup(&v);
	if (r == 0) {
		r = -pthread_create(&v.prefetcher, NULL, prefetch_main, &v);
		if (r == 0) {
			r = run_guest(&v);
			pthread_join(v.prefetcher, NULL);
		}
	}
	if (r == 0 && v.prefetch_error)
		r = v.prefetch_error;
	if (r == 0)
		r = summarize(&v);
	teardown(&v);
	if (stop_server(&v.urgent, &v.background, v.server))
		r = example_fail("the page server", -ECHILD);
	return example_result(&v.ev, r);
}
