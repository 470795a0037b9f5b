/* SPDX-License-Identifier: MIT */
/*
 * image.c - linux-vmm's RAM image: what the guest's memory holds at its
 * first instruction. The bzImage's protected-mode kernel at 1 MiB, the
 * boot_params page (the 32-bit boot protocol: the image's setup header,
 * an e820 map, the command line, the initramfs placed high) and an MP
 * table. The image is never written into the guest: the page source
 * serves it page by page.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "linux-vmm.h"

static int
read_file(const char *path, uint8_t **data, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC), r = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		r = -errno;
		close(fd);
		return r;
	}
	*len = (size_t)st.st_size;
	*data = malloc(*len ? *len : 1);
	if (!*data)
		r = -ENOMEM;
	else
		r = xfer(fd, *data, *len, false);
	close(fd);
	return r;
}

static void
put16(uint8_t *p, uint16_t x)
{
	memcpy(p, &x, 2);
}

static void
put32(uint8_t *p, uint32_t x)
{
	memcpy(p, &x, 4);
}

static void
put64(uint8_t *p, uint64_t x)
{
	memcpy(p, &x, 8);
}

static uint8_t
mp_checksum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	while (len--)
		s += *p++;
	return (uint8_t)-s;
}

/*
 * An MP configuration table (Intel MP spec 1.4): the only firmware table
 * this guest gets. One processor entry per vCPU (APIC id = vCPU id), an
 * ISA bus, the IOAPIC, ISA IRQ i on IOAPIC pin i (KVM's default routing),
 * the external-interrupt line on LINT0 and NMI on LINT1.
 */
static void
build_mptable(uint8_t *base, int ncpus)
{
	uint8_t *fp = base, *ct = base + 16, *e = ct + 44;
	uint16_t n = 0;

	for (int i = 0; i < ncpus; i++, n++, e += 20) {
		e[0] = 0; /* processor */
		e[1] = (uint8_t)i;
		e[2] = 0x14;
		e[3] = 1 | (i == 0 ? 2 : 0); /* enabled, bootstrap */
		put32(e + 4, 0x600);
		put32(e + 8, 0x201); /* FPU, APIC */
	}
	e[0] = 1; /* bus 0: ISA */
	memcpy(e + 2, "ISA   ", 6);
	e += 8, n++;
	e[0] = 2; /* IOAPIC */
	e[1] = (uint8_t)ncpus;
	e[2] = 0x11;
	e[3] = 1;
	put32(e + 4, IOAPIC_ADDR);
	e += 8, n++;
	for (int irq = 0; irq < 16; irq++, e += 8, n++) {
		e[0] = 3; /* I/O interrupt */
		e[1] = 0; /* INT */
		e[4] = 0; /* bus */
		e[5] = (uint8_t)irq;
		e[6] = (uint8_t)ncpus;
		e[7] = (uint8_t)irq;
	}
	for (int lint = 0; lint < 2; lint++, e += 8, n++) {
		e[0] = 4;            /* local interrupt */
		e[1] = lint ? 1 : 3; /* NMI, external interrupt */
		e[6] = 0xff;
		e[7] = (uint8_t)lint;
	}
	memcpy(ct, "PCMP", 4);
	put16(ct + 4, (uint16_t)(e - ct));
	ct[6] = 4;
	memcpy(ct + 8, "MEMFAULT", 8);
	memcpy(ct + 16, "LINUX-VMM   ", 12);
	put16(ct + 34, n);
	put32(ct + 36, 0xfee00000u);
	ct[7] = mp_checksum(ct, (size_t)(e - ct));
	memcpy(fp, "_MP_", 4);
	put32(fp + 4, MPTABLE_ADDR + 16);
	fp[8] = 1;
	fp[9] = 4;
	fp[10] = mp_checksum(fp, 16);
}

/* e820: low RAM, the BIOS hole (the MP table lives there), RAM */
static void
build_e820(uint8_t *bp, uint64_t mem_size)
{
	uint8_t *e = bp + 0x2d0;

	put64(e, 0);
	put64(e + 8, 0x9fc00);
	put32(e + 16, 1);
	put64(e + 20, 0x9fc00);
	put64(e + 28, 0x100000 - 0x9fc00);
	put32(e + 36, 2);
	put64(e + 40, 0x100000);
	put64(e + 48, mem_size - 0x100000);
	put32(e + 56, 1);
	bp[0x1e8] = 3;
}

/* The initramfs as high as the kernel allows (initrd_addr_max), in RAM. */
static int
load_initrd(struct vmm *v, const uint8_t *kimg, uint8_t *bp)
{
	uint8_t *rd;
	size_t rdlen;
	uint32_t rd_addr, rd_max;
	uint64_t top;
	int r = read_file(v->initrd, &rd, &rdlen);

	if (r)
		return r;
	memcpy(&rd_max, kimg + 0x22c, 4);
	top = v->mem_size < (uint64_t)rd_max + 1 ? v->mem_size
						 : (uint64_t)rd_max + 1;
	rd_addr = (uint32_t)(top - rdlen) & ~(PAGE - 1);
	if (rd_addr < KERNEL_ADDR + 64u * 1024 * 1024 / 2) {
		free(rd);
		return -E2BIG;
	}
	memcpy(v->image + rd_addr, rd, rdlen);
	put32(bp + 0x218, rd_addr);
	put32(bp + 0x21c, (uint32_t)rdlen);
	free(rd);
	return 0;
}

/* Map v->image and fill it from v->kernel, v->initrd and v->append. */
int
build_image(struct vmm *v)
{
	uint8_t *kimg, *bp;
	size_t klen, setup_len, hdr_end;
	int r;

	v->image = mmap(NULL, v->mem_size, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (v->image == MAP_FAILED) {
		v->image = NULL;
		return -errno;
	}
	r = read_file(v->kernel, &kimg, &klen);
	if (r)
		return r;
	r = -EINVAL;
	if (klen < 0x300 || memcmp(kimg + 0x202, "HdrS", 4) ||
	    kimg[0x206] + kimg[0x207] * 256 < 0x20c) {
		fprintf(stderr, "%s: not a bzImage of boot protocol 2.12+\n", v->kernel);
		goto out;
	}
	setup_len = ((kimg[0x1f1] ? kimg[0x1f1] : 4) + 1) * 512u;
	if (setup_len >= klen || KERNEL_ADDR + klen > v->mem_size / 2)
		goto out;
	memcpy(v->image + KERNEL_ADDR, kimg + setup_len, klen - setup_len);

	/* boot_params: the setup header as the image has it, then ours */
	bp = v->image + BOOT_PARAMS;
	hdr_end = 0x202 + kimg[0x201];
	memcpy(bp + 0x1f1, kimg + 0x1f1, hdr_end - 0x1f1);
	put16(bp + 0x1fa, 0xffff); /* vid_mode: normal */
	bp[0x210] = 0xff;          /* type_of_loader: undefined */
	bp[0x211] |= 0x80;         /* loadflags: CAN_USE_HEAP */
	put16(bp + 0x224, 0xfe00); /* heap_end_ptr */
	put32(bp + 0x228, CMDLINE_ADDR);
	r = -E2BIG;
	if (strlen(v->append) >= 4096)
		goto out;
	strcpy((char *)v->image + CMDLINE_ADDR, v->append);
	r = load_initrd(v, kimg, bp);
	if (r)
		goto out;
	build_e820(bp, v->mem_size);
	build_mptable(v->image + MPTABLE_ADDR, v->ncpus);
out:
	free(kimg);
	return r;
}
