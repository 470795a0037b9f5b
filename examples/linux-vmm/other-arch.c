/* SPDX-License-Identifier: MIT */
/*
 * other-arch.c - linux-vmm where the host is not x86-64: its boot protocol
 * (bzImage, boot_params, an MP table) and devices are x86's, so it exits
 * 77, the status test runners read as "skipped".
 */
#include <stdio.h>

int
main(void)
{
	fprintf(stderr, "linux-vmm: x86-64 only\n");
	return 77;
}
