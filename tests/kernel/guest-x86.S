# SPDX-License-Identifier: MIT
# Reference source of the x86 guest in ktest.c: 16-bit real mode, loaded at
# GPA 0x1000 with CS = DS = ES = 0. Check the bytes with
#   as guest-x86.S -o g.o && objdump -d -m i8086 g.o
	.code16
main:				# KT_ENTRY_MAIN (+0x00)
	mov	$0x3f8, %dx
	mov	$0x42, %al
	out	%al, %dx	# 1 IO out 0x42
	in	%dx, %al	# 2 IO in: the VMM supplies V
	out	%al, %dx	# 3 IO out V (0x42 if V never arrived)
	mov	$0xd000, %bx
	mov	%bx, %es
	mov	%al, %es:0	# 4 MMIO write of V at GPA 0xd0000 (no memslot)
	mov	%es:4, %al	# 5 MMIO read at GPA 0xd0004: the VMM supplies W
	out	%al, %dx	# 6 IO out W
load:				# KT_ENTRY_LOAD (+0x16)
	mov	$0x3f8, %dx
	mov	$0x2000, %ax
	mov	%ax, %ds
	mov	0, %al		# load a byte from GPA 0x20000 (KT_TEST_GPA)
	out	%al, %dx	# report it
	hlt			# KVM_EXIT_HLT (no in-kernel irqchip)
spin:				# KT_ENTRY_SPIN (+0x23)
	jmp	spin
pages:				# KT_ENTRY_PAGES (+0x25): the uffd scenarios
	mov	$0x3f8, %dx
	mov	$0x2000, %ax
	mov	%ax, %ds	# DS base 0x20000 (KT_TEST_GPA)
	mov	0x0000, %al	# page 0
	out	%al, %dx
	mov	0x2008, %al	# page 2
	out	%al, %dx
	mov	0x1010, %al	# page 1
	out	%al, %dx
	mov	0x3018, %al	# page 3
	out	%al, %dx
	mov	0x0020, %al	# page 0 again (present by now)
	out	%al, %dx
	hlt
	jmp	.
