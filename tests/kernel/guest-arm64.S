// SPDX-License-Identifier: MIT
// Reference source of the arm64 guest in ktest.c: EL1, MMU off, loaded at
// GPA 0. Check the words with
//   aarch64-linux-gnu-as guest-arm64.S -o g.o && aarch64-linux-gnu-objdump -d g.o
main:					// KT_ENTRY_MAIN (+0x00)
	movz	x0, #0x1000, lsl #16	// MMIO base 0x10000000 (no memslot)
	movz	w1, #0x42
	str	w1, [x0]		// 1 MMIO write 0x42
	movz	w2, #0x77		// sentinel
	ldr	w2, [x0, #4]		// 2 MMIO read: the VMM supplies V
	str	w2, [x0, #8]		// 3 MMIO write V
load:					// KT_ENTRY_LOAD (+0x18)
	movz	x0, #0x1000, lsl #16
	movz	x3, #0x2000, lsl #16	// 0x20000000 (KT_TEST_GPA)
	ldr	w4, [x3]		// load a word
	str	w4, [x0, #12]		// report it
spin:					// KT_ENTRY_SPIN (+0x28)
	b	spin
pages:					// KT_ENTRY_PAGES (+0x2c): the uffd scenarios
	movz	x0, #0x1000, lsl #16
	movz	x3, #0x2000, lsl #16	// KT_TEST_GPA
	ldr	w4, [x3]		// page 0
	str	w4, [x0, #12]		// report it
	ldr	w4, [x3, #0x2008]	// page 2
	str	w4, [x0, #12]
	ldr	w4, [x3, #0x1010]	// page 1
	str	w4, [x0, #12]
	ldr	w4, [x3, #0x3018]	// page 3
	str	w4, [x0, #12]
	ldr	w4, [x3, #0x20]		// page 0 again (present by now)
	str	w4, [x0, #12]
	b	.
