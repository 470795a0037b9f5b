/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: memfault_exit_classify() on arbitrary kvm_run bytes,
 * ioctl result and errno, checked against the contract table of
 * memfault.h (defgroup run) and the fault decoding rules (defgroup fault):
 *
 * - the result is the one the table gives for (ioctl_ret, err, exit_reason);
 * - on MEMFAULT_RUN_MEMORY_FAULT, gpa, size and kernel_flags are copied
 *   verbatim, flags/error/origin are what the rules say, reserved is zero,
 *   and exactly min(size, sizeof(struct memfault_fault)) bytes are written;
 * - otherwise the output buffer is not touched at all;
 * - kvm_run is only read, and nothing is written past the given size (the
 *   output buffer is a heap block of exactly that size, so ASan catches an
 *   overflow, plus a canary tail that is checked by hand).
 *
 * memfault_arch_reads_back_exit() and memfault_exit_prepare() are checked
 * on the same input too (prepare writes exit_reason, and only a 39 of a
 * known arch, to KVM_EXIT_UNKNOWN).
 *
 * Input layout (short inputs are zero-padded):
 *   [0]     selector: low 2 bits pick ioctl_ret (0, -1, -1, raw int32 at
 *           [1..4]); bit 2: ret_fault NULL; bit 3: err is raw int32 at [5..8]
 *           instead of a small errno ([5] % 140)
 *   [1..4]  raw ioctl_ret
 *   [5..8]  err
 *   [9..10] output size (little endian) % 160
 *   [11..]  the bytes of struct kvm_run
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "memfault/memfault.h"

#ifndef EHWPOISON
#define EHWPOISON 133
#endif

#define HDR 11
#define CANARY 64
#define FILL 0xa5

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

static uint64_t page_size;

static uint32_t
le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* The contract, written out independently of lib/classify.c. */
static int
expected(const struct kvm_run *run, int ioctl_ret, int err, int want_fault,
	 size_t size, struct memfault_fault *f)
{
	uint64_t kf, gpa, sz;

	if (want_fault && !size)
		return -EINVAL;
	if (ioctl_ret == 0) {
		if (run->exit_reason != KVM_EXIT_MEMORY_FAULT)
			return MEMFAULT_RUN_EXIT;
		err = 0;
	} else if (ioctl_ret != -1 || err <= 0 || err >= 4096) {
		return -EPROTO; /* not a system call result */
	} else if (err == EINTR) {
		return MEMFAULT_RUN_INTERRUPTED;
	} else if (err == EAGAIN) {
		return MEMFAULT_RUN_RETRY;
	} else if (run->exit_reason != KVM_EXIT_MEMORY_FAULT) {
		return -err;
	}
	kf = run->memory_fault.flags;
	gpa = run->memory_fault.gpa;
	sz = run->memory_fault.size;
	memset(f, 0, sizeof(*f));
	f->gpa = gpa;
	f->size = sz;
	f->kernel_flags = kf;
	f->error = -err;
	if (kf & (1ull << 3))
		f->flags |= MEMFAULT_FAULT_PRIVATE;
	if (kf & (1ull << 4))
		f->flags |= MEMFAULT_FAULT_USERFAULT;
	if (kf & ~((1ull << 3) | (1ull << 4)))
		f->flags |= MEMFAULT_FAULT_UNKNOWN;
	if (err == EHWPOISON)
		f->flags |= MEMFAULT_FAULT_HWPOISON;
	if (!sz)
		f->flags |= MEMFAULT_FAULT_SIZE_ZERO;
	if ((gpa % page_size) || (sz % page_size))
		f->flags |= MEMFAULT_FAULT_UNALIGNED;
	if (gpa + sz < gpa)
		f->flags |= MEMFAULT_FAULT_OVERFLOW;
	if (!err)
		f->origin = MEMFAULT_ORIGIN_RET0;
	else if (err == EFAULT || err == EHWPOISON)
		f->origin = MEMFAULT_ORIGIN_ERRNO;
	else
		f->origin = MEMFAULT_ORIGIN_OTHER_ERRNO;
	return MEMFAULT_RUN_MEMORY_FAULT;
}

#if defined(__aarch64__)
#define HOST_ARCH MEMFAULT_ARCH_ARM64
#else
#define HOST_ARCH MEMFAULT_ARCH_X86_64
#endif

static void
check_arch(uint32_t arch, uint32_t exit_reason)
{
	int r = memfault_arch_reads_back_exit(arch, exit_reason);

	if (arch > MEMFAULT_ARCH_ARM64) {
		if (r != -EINVAL)
			abort();
		return;
	}
	if (arch == MEMFAULT_ARCH_HOST)
		arch = HOST_ARCH;
	/* the only value read back anywhere: arm64 KVM_EXIT_MMIO */
	if (r != (arch == MEMFAULT_ARCH_ARM64 && exit_reason == KVM_EXIT_MMIO))
		abort();
}

/* memfault_exit_prepare() on a copy of @run: @copy, then back to @run. */
static void
check_prepare(const struct kvm_run *run, struct kvm_run *copy, uint32_t arch)
{
	int known = arch <= MEMFAULT_ARCH_ARM64;
	int r = memfault_exit_prepare(copy, arch);

	if (r != (known ? 0 : -EINVAL))
		abort();
	/* no arch reads exit 39 back: it is the one value reset */
	if (known && run->exit_reason == KVM_EXIT_MEMORY_FAULT) {
		if (copy->exit_reason != KVM_EXIT_UNKNOWN)
			abort();
		copy->exit_reason = KVM_EXIT_MEMORY_FAULT;
	}
	if (memcmp(run, copy, sizeof(*run)))
		abort(); /* anything else written */
	if (memfault_exit_prepare(NULL, arch) != -EINVAL)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	uint8_t hdr[HDR];
	struct kvm_run *run, *copy;
	struct memfault_fault want;
	int ioctl_ret, err, r, exp, want_fault;
	size_t size, n;
	uint8_t *out;

	if (!page_size)
		page_size = (uint64_t)sysconf(_SC_PAGESIZE);
	memset(hdr, 0, sizeof(hdr));
	memcpy(hdr, data, len < HDR ? len : HDR);
	switch (hdr[0] & 3) {
	case 0:
		ioctl_ret = 0;
		break;
	case 3:
		ioctl_ret = (int)le32(hdr + 1);
		break;
	default:
		ioctl_ret = -1;
	}
	want_fault = !(hdr[0] & 4);
	err = (hdr[0] & 8) ? (int)le32(hdr + 5) : hdr[5] % 140;
	size = ((size_t)hdr[9] | (size_t)hdr[10] << 8) % 160;

	/* kvm_run on the heap, exactly sized: ASan sees any read past it */
	run = calloc(1, sizeof(*run));
	copy = malloc(sizeof(*run));
	if (!run || !copy)
		abort();
	if (len > HDR) {
		n = len - HDR;
		memcpy(run, data + HDR, n < sizeof(*run) ? n : sizeof(*run));
	}
	memcpy(copy, run, sizeof(*run));

	/* the output: exactly @size bytes for ASan, then a canary tail */
	out = malloc(size + CANARY);
	if (!out)
		abort();
	memset(out, FILL, size + CANARY);

	r = memfault_exit_classify(run, ioctl_ret, err,
				   want_fault ? (struct memfault_fault *)out :
						NULL,
				   size);
	exp = expected(run, ioctl_ret, err, want_fault, size, &want);
	if (r != exp)
		abort();
	/* results are an enum value or a negative errno, nothing else */
	if (!(r >= MEMFAULT_RUN_EXIT && r <= MEMFAULT_RUN_RETRY) &&
	    !(r < 0 && r > -4096))
		abort();
	if (memcmp(run, copy, sizeof(*run)))
		abort(); /* kvm_run was written */
	n = 0;
	if (r == MEMFAULT_RUN_MEMORY_FAULT && want_fault) {
		n = size < sizeof(want) ? size : sizeof(want);
		if (memcmp(out, &want, n))
			abort(); /* a field was not what the contract says */
	}
	for (size_t i = n; i < size + CANARY; i++)
		if (out[i] != FILL)
			abort(); /* written past min(size, sizeof), or on failure */

	/* a NULL run is refused without reading anything */
	if (memfault_exit_classify(NULL, ioctl_ret, err,
				   (struct memfault_fault *)out, size) != -EINVAL)
		abort();
	check_arch(le32(hdr + 1) % 4, run->exit_reason);
	check_arch(le32(hdr + 5), run->exit_reason);
	check_prepare(run, copy, le32(hdr + 1) % 4);
	check_prepare(run, copy, le32(hdr + 5));

	free(out);
	free(copy);
	free(run);
	return 0;
}
