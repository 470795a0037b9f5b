/* SPDX-License-Identifier: MIT */
/*
 * kvmsim's own tests, userfault:
 * KVM Userfault: the bitmap (readable or not), the re-arm after
 * MADV_DONTNEED and on guest_memfd, and which fault paths check the
 * bitmap.
 * Each test names its source with the tags of sim-raw.h.
 */
#include "sim-raw.h"

/*
 * [RS] KVM Userfault v3: a vCPU access to a page whose bit is set
 * exits with -1/EFAULT, exit 39, flags USERFAULT, gpa = the page, size =
 * PAGE_SIZE; bits are per host page from the slot base, in native
 * unsigned long words; the vCPU re-enters after a store-release clear.
 */
START_TEST(userfault_bitmap)
{
	uint32_t arch = (uint32_t)_i + 1;
	const size_t npages = 130; /* three bitmap words */
	unsigned long bitmap[3] = { 0 };
	struct kvmsim_stats st0, st;
	struct sim s;
	uint8_t *mem;
	uint64_t base;

	start(&s, arch, KVMSIM_LEVEL_7_2_UF);
	base = s.test_gpa;
	mem = pages(&s, npages, 0);
	for (size_t i = 0; i < npages; i++)
		mem[i * s.page] = (uint8_t)i;
	bitmap[0] = 1ul << 0;
	bitmap[1] = 1ul << 0; /* page 64 */
	bitmap[2] = 1ul << 1; /* page 129 */
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_USERFAULT, base,
				 npages * s.page, mem, 0, 0, bitmap),
			 0);
	script(&s, fmt("load:%#llx:1;load:%#llx:1;load:%#llx:1;load:%#llx:1",
		       (unsigned long long)(base + 1 * s.page),
		       (unsigned long long)(base + 64 * s.page + 7),
		       (unsigned long long)(base + 129 * s.page),
		       (unsigned long long)base));
	st0 = stats();
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, KVM_MEMORY_EXIT_FLAG_USERFAULT, base + 64 * s.page,
		  s.page);
	ck_assert_uint_eq(pc_of(&s), 1);
	st = stats();
	/* one word read per access: page 1 (clear), page 64 (set) */
	ck_assert_uint_eq(st.bitmap_reads - st0.bitmap_reads, 2);
	ck_assert_uint_eq(st.userfaults - st0.userfaults, 1);
	__atomic_fetch_and(&bitmap[1], ~1ul, __ATOMIC_RELEASE);
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, KVM_MEMORY_EXIT_FLAG_USERFAULT, base + 129 * s.page,
		  s.page);
	__atomic_fetch_and(&bitmap[2], ~2ul, __ATOMIC_RELEASE);
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, KVM_MEMORY_EXIT_FLAG_USERFAULT, base, s.page);
	__atomic_fetch_and(&bitmap[0], ~1ul, __ATOMIC_RELEASE);
	RUN_EXPECT(&s, 0, 0,
		   arch == KVMSIM_X86_64 ? KVM_EXIT_SHUTDOWN
					 : KVM_EXIT_SYSTEM_EVENT);
	ck_assert_uint_eq(acc_of(&s), 0);
	ck_assert_uint_eq(stats().bitmap_reads - st0.bitmap_reads,
			  2 + 2 + 2 + 1);

	/* Turning the flag off: no more bitmap reads. */
	bitmap[0] = ~0ul;
	ck_assert_int_eq(
		region2(s.vm, 1, 0, base, npages * s.page, mem, 0, 0, NULL), 0);
	script(&s, fmt("load:%#llx:1", (unsigned long long)base));
	st0 = stats();
	RUN_EXPECT(&s, 0, 0,
		   arch == KVMSIM_X86_64 ? KVM_EXIT_SHUTDOWN
					 : KVM_EXIT_SYSTEM_EVENT);
	ck_assert_uint_eq(stats().bitmap_reads, st0.bitmap_reads);
}
END_TEST

/*
 * [UF] (c): a bitmap on a PROT_NONE page passes KVM_SET_USER_MEMORY_REGION2
 * (access_ok() only) and fails at the first access, whatever its bit: x86
 * gives -1/EFAULT with exit_reason 0 and no memory fault; arm64 an exit 39
 * with USERFAULT for the page touched, which a VMM cannot tell from a real
 * one. The same again on every entry. Recovered by turning the flag off,
 * then on with a readable bitmap. (c''') a NULL bitmap with the flag: no
 * userfault at all (WARN_ON_ONCE in kvm_gfn_userfault()).
 */
START_TEST(userfault_bitmap_unreadable)
{
	uint32_t arch = (uint32_t)_i + 1;
	unsigned long ok = 0;
	struct sim s;
	uint8_t *mem, *bad;

	start(&s, arch, KVMSIM_LEVEL_7_2_UF);
	mem = pages(&s, 2, 0x11);
	bad = pages(&s, 1, 0);
	ck_assert_int_eq(mprotect(bad, s.page, PROT_NONE), 0);
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_USERFAULT, s.test_gpa, s.page,
				 mem, 0, 0, bad),
			 0);
	ck_assert_int_eq(region2(s.vm, 2, KVM_MEM_USERFAULT,
				 s.test_gpa + s.page, s.page, mem + s.page, 0,
				 0, NULL),
			 0);
	script(&s,
	       fmt("load:%#llx:1;load:%#llx:1", (unsigned long long)s.test_gpa,
		   (unsigned long long)s.test_gpa + s.page));
	for (int i = 1; i <= 2; i++) {
		if (arch == KVMSIM_X86_64) {
			RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_UNKNOWN);
		} else {
			RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
			MF_EXPECT(&s, KVM_MEMORY_EXIT_FLAG_USERFAULT,
				  s.test_gpa, s.page);
		}
		ck_assert_uint_eq(pc_of(&s), 0);
		ck_assert_uint_eq(stats().bitmap_faults, (uint64_t)i);
	}
	ck_assert_int_eq(
		region2(s.vm, 1, 0, s.test_gpa, s.page, mem, 0, 0, NULL), 0);
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_USERFAULT, s.test_gpa, s.page,
				 mem, 0, 0, &ok),
			 0);
	/* slot 2 (NULL bitmap) runs without a userfault too */
	RUN_EXPECT(&s, 0, 0, done_reason(&s));
	ck_assert_uint_eq(acc_of(&s), 0x11);
	ck_assert_uint_eq(stats().bitmap_faults, 2);
	ck_assert_uint_eq(stats().userfaults, arch == KVMSIM_X86_64 ? 0 : 2);
}
END_TEST

/*
 * [UF] (a), (b), (b') and "Re-arming a page that is already mapped": a bit
 * set on a page KVM has already mapped has no effect; the page takes a
 * fault, and so the exit, again only once its mapping is invalidated:
 * MADV_DONTNEED (contents of private anonymous memory dropped), an
 * mprotect() round trip (contents kept), munmap, or KVM_MEM_USERFAULT off
 * and on (the whole slot; while off, no page exits). Only the invalidated
 * pages fault again. A new bitmap pointer with the same flags is ignored.
 */
START_TEST(userfault_rearm)
{
	uint32_t arch = (uint32_t)_i + 1;
	unsigned long bitmap = 0, other = 0;
	struct sim s;
	uint8_t *mem;
	uint64_t base;
	char both[96];

	start(&s, arch, KVMSIM_LEVEL_7_2_UF);
	base = s.test_gpa;
	mem = pages(&s, 2, 0x5a);
	mem[s.page] = 0x5b;
	snprintf(both, sizeof(both), "load:%#llx:1;load:%#llx:1",
		 (unsigned long long)base, (unsigned long long)(base + s.page));
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_USERFAULT, base, 2 * s.page,
				 mem, 0, 0, &bitmap),
			 0);
	script(&s, both);
	RUN_EXPECT(&s, 0, 0, done_reason(&s));
	/* (a): both pages mapped, their bits now set: no exit */
	__atomic_store_n(&bitmap, 3ul, __ATOMIC_RELEASE);
	script(&s, both);
	RUN_EXPECT(&s, 0, 0, done_reason(&s));
	ck_assert_uint_eq(acc_of(&s), 0x5b);

	/* MADV_DONTNEED on page 1: page 0 loads, page 1 exits */
	ck_assert_int_eq(madvise(mem + s.page, s.page, MADV_DONTNEED), 0);
	script(&s, both);
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, KVM_MEMORY_EXIT_FLAG_USERFAULT, base + s.page, s.page);
	ck_assert_uint_eq(pc_of(&s), 1);
	__atomic_fetch_and(&bitmap, ~2ul, __ATOMIC_RELEASE);
	RUN_EXPECT(&s, 0, 0, done_reason(&s));
	ck_assert_uint_eq(acc_of(&s), 0); /* dropped */

	/* an mprotect() round trip keeps the contents */
	mem[s.page] = 0x77;
	__atomic_fetch_or(&bitmap, 2ul, __ATOMIC_RELEASE);
	script(&s, both);
	RUN_EXPECT(&s, 0, 0, done_reason(&s));
	ck_assert_int_eq(mprotect(mem + s.page, s.page, PROT_READ), 0);
	ck_assert_int_eq(mprotect(mem + s.page, s.page,
				  PROT_READ | PROT_WRITE),
			 0);
	script(&s, both);
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, KVM_MEMORY_EXIT_FLAG_USERFAULT, base + s.page, s.page);
	__atomic_fetch_and(&bitmap, ~2ul, __ATOMIC_RELEASE);
	RUN_EXPECT(&s, 0, 0, done_reason(&s));
	ck_assert_uint_eq(acc_of(&s), 0x77);

	/* an madvise() that unmaps nothing zaps nothing */
	__atomic_fetch_or(&bitmap, 2ul, __ATOMIC_RELEASE);
	ck_assert_int_eq(madvise(mem, 2 * s.page, MADV_WILLNEED), 0);
	script(&s, both);
	RUN_EXPECT(&s, 0, 0, done_reason(&s));

	/* flag off: no exit with both bits set; (b) on: the slot is zapped */
	ck_assert_int_eq(
		region2(s.vm, 1, 0, base, 2 * s.page, mem, 0, 0, NULL), 0);
	script(&s, both);
	RUN_EXPECT(&s, 0, 0, done_reason(&s));
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_USERFAULT, base, 2 * s.page,
				 mem, 0, 0, &bitmap),
			 0);
	script(&s, both);
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, KVM_MEMORY_EXIT_FLAG_USERFAULT, base, s.page);

	/* (b'): only the pointer changes: ignored, the old bitmap is read */
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_USERFAULT, base, 2 * s.page,
				 mem, 0, 0, &other),
			 0);
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, KVM_MEMORY_EXIT_FLAG_USERFAULT, base, s.page);
	/* toggling switches bitmaps */
	ck_assert_int_eq(
		region2(s.vm, 1, 0, base, 2 * s.page, mem, 0, 0, NULL), 0);
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_USERFAULT, base, 2 * s.page,
				 mem, 0, 0, &other),
			 0);
	RUN_EXPECT(&s, 0, 0, done_reason(&s));

	/* munmap of a mapped page: the next access faults (x86: exits
	 * before the hva lookup; arm64: the VMA lookup fails first) */
	__atomic_store_n(&other, 3ul, __ATOMIC_RELEASE);
	script(&s, both);
	RUN_EXPECT(&s, 0, 0, done_reason(&s));
	ck_assert_int_eq(munmap(mem + s.page, s.page), 0);
	script(&s, both);
	if (arch == KVMSIM_X86_64) {
		RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
		MF_EXPECT(&s, KVM_MEMORY_EXIT_FLAG_USERFAULT, base + s.page,
			  s.page);
	} else {
		RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_UNKNOWN);
	}
	ck_assert_uint_eq(pc_of(&s), 1);
}
END_TEST

/*
 * [UF] the same for guest_memfd slots created with the flag: a punch of
 * the guest_memfd (kvm_gmem_punch_hole()) or MADV_DONTNEED on its mmap()
 * makes a mapped page fault again; on an x86 SW_PROTECTED VM a punch of a
 * private page gives PRIVATE | USERFAULT (0x18). The hva notifier zaps
 * shared mappings only (kvm_mmu_notifier_invalidate_range_start():
 * KVM_FILTER_SHARED), and a memory attribute change zaps the range
 * (kvm_vm_set_mem_attributes()). kvm_gmem_fallocate() wants KEEP_SIZE
 * (EOPNOTSUPP) and page-aligned ranges (EINVAL).
 */
START_TEST(userfault_rearm_gmem)
{
	uint32_t arch = (uint32_t)_i + 1;
	unsigned long bitmap = 0;
	struct sim s;
	uint8_t *map, *mem;
	uint64_t base;
	char both[96];
	int g;

	start(&s, arch, KVMSIM_LEVEL_7_2_UF);
	base = s.test_gpa;
	snprintf(both, sizeof(both), "load:%#llx:1;load:%#llx:1",
		 (unsigned long long)base, (unsigned long long)(base + s.page));
	g = create_gmem(s.vm, 2 * s.page,
			GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
	ck_assert_int_ge(g, 0);
	map = mmap(NULL, 2 * s.page, PROT_READ | PROT_WRITE, MAP_SHARED, g, 0);
	ck_assert_ptr_ne(map, MAP_FAILED);
	memset(map, 0x6b, 2 * s.page);
	ck_assert_int_eq(region2(s.vm, 1,
				 KVM_MEM_GUEST_MEMFD | KVM_MEM_USERFAULT, base,
				 2 * s.page, map, g, 0, &bitmap),
			 0);
	script(&s, both);
	RUN_EXPECT(&s, 0, 0, done_reason(&s));
	__atomic_store_n(&bitmap, 3ul, __ATOMIC_RELEASE);
	script(&s, both);
	RUN_EXPECT(&s, 0, 0, done_reason(&s));
	ck_assert_int_eq(fallocate(g, FALLOC_FL_PUNCH_HOLE, 0, s.page), -1);
	ck_assert_int_eq(errno, EOPNOTSUPP);
	ck_assert_int_eq(fallocate(g, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				   1, s.page),
			 -1);
	ck_assert_int_eq(errno, EINVAL);
	script(&s, both);
	RUN_EXPECT(&s, 0, 0, done_reason(&s));
	ck_assert_int_eq(fallocate(g, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				   (off_t)s.page, (off_t)s.page),
			 0);
	script(&s, both);
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, KVM_MEMORY_EXIT_FLAG_USERFAULT, base + s.page, s.page);
	__atomic_fetch_and(&bitmap, ~2ul, __ATOMIC_RELEASE);
	RUN_EXPECT(&s, 0, 0, done_reason(&s));
	ck_assert_uint_eq(acc_of(&s), 0); /* punched */
	ck_assert_int_eq(madvise(map, s.page, MADV_DONTNEED), 0);
	script(&s, both);
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, KVM_MEMORY_EXIT_FLAG_USERFAULT, base, s.page);
	munmap(map, 2 * s.page);
	if (arch != KVMSIM_X86_64)
		return;

	/* x86 SW_PROTECTED: page 1 private (from guest_memfd), page 0 shared */
	start_full(&s, KVMSIM_X86_64, KVMSIM_LEVEL_7_2_UF,
		   kvmsim_default_quirks(KVMSIM_X86_64, KVMSIM_LEVEL_7_2_UF) |
			   KVMSIM_Q_SW_PROTECTED_VM,
		   KVM_X86_SW_PROTECTED_VM);
	base = 0x20000;
	snprintf(both, sizeof(both), "load:%#llx:1;load:%#llx:1",
		 (unsigned long long)base, (unsigned long long)(base + s.page));
	mem = pages(&s, 2, 0x5a);
	g = create_gmem(s.vm, 2 * s.page, 0);
	ck_assert_int_ge(g, 0);
	bitmap = 0;
	ck_assert_int_eq(region2(s.vm, 1,
				 KVM_MEM_GUEST_MEMFD | KVM_MEM_USERFAULT, base,
				 2 * s.page, mem, g, 0, &bitmap),
			 0);
	ck_assert_int_eq(set_attrs(s.vm, base + s.page, s.page,
				   KVM_MEMORY_ATTRIBUTE_PRIVATE),
			 0);
	script(&s, both);
	RUN_EXPECT(&s, 0, 0, done_reason(&s));
	__atomic_store_n(&bitmap, 3ul, __ATOMIC_RELEASE);
	/* the hva of the private page: its private mapping stays
	 * (kvm_mmu_notifier_invalidate_range_start(): KVM_FILTER_SHARED) */
	ck_assert_int_eq(madvise(mem + s.page, s.page, MADV_DONTNEED), 0);
	script(&s, both);
	RUN_EXPECT(&s, 0, 0, done_reason(&s));
	ck_assert_int_eq(fallocate(g, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				   (off_t)s.page, (off_t)s.page),
			 0);
	script(&s, both);
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s,
		  KVM_MEMORY_EXIT_FLAG_USERFAULT | KVM_MEMORY_EXIT_FLAG_PRIVATE,
		  base + s.page, s.page);
	__atomic_fetch_and(&bitmap, ~2ul, __ATOMIC_RELEASE);
	RUN_EXPECT(&s, 0, 0, done_reason(&s));
	/* converting page 1 to shared and back, with no access between, zaps
	 * its private mapping: the set bit takes effect */
	__atomic_fetch_or(&bitmap, 2ul, __ATOMIC_RELEASE);
	ck_assert_int_eq(set_attrs(s.vm, base + s.page, s.page, 0), 0);
	ck_assert_int_eq(set_attrs(s.vm, base + s.page, s.page,
				   KVM_MEMORY_ATTRIBUTE_PRIVATE),
			 0);
	script(&s, both);
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s,
		  KVM_MEMORY_EXIT_FLAG_USERFAULT | KVM_MEMORY_EXIT_FLAG_PRIVATE,
		  base + s.page, s.page);
}
END_TEST

/*
 * [RS] x86 checks the bitmap at the top of __kvm_mmu_faultin_pfn(),
 * so private faults get PRIVATE | USERFAULT and a gmem slot is covered;
 * arm64 checks in user_mem_abort() after the VMA lookup (an unmapped hva
 * is a bare EFAULT first), and in gmem_abort() as Firecracker's carry does.
 */
START_TEST(userfault_paths)
{
	unsigned long bitmap = ~0ul;
	struct sim s;
	uint8_t *mem;
	int g;

	/* x86: PRIVATE | USERFAULT on a SW_PROTECTED guest_memfd slot */
	start_full(&s, KVMSIM_X86_64, KVMSIM_LEVEL_7_2_UF,
		   kvmsim_default_quirks(KVMSIM_X86_64, KVMSIM_LEVEL_7_2_UF) |
			   KVMSIM_Q_SW_PROTECTED_VM,
		   KVM_X86_SW_PROTECTED_VM);
	mem = pages(&s, 2, 0x5a);
	g = create_gmem(s.vm, 2 * s.page, GUEST_MEMFD_FLAG_MMAP);
	ck_assert_int_ge(g, 0);
	ck_assert_int_eq(region2(s.vm, 1,
				 KVM_MEM_GUEST_MEMFD | KVM_MEM_USERFAULT,
				 0x20000, 2 * s.page, mem, g, 0, &bitmap),
			 0);
	ck_assert_int_eq(
		set_attrs(s.vm, 0x20000, s.page, KVM_MEMORY_ATTRIBUTE_PRIVATE),
		0);
	script(&s, fmt("load:0x20000:1;load:%#llx:1",
		       (unsigned long long)(0x20000 + s.page)));
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s,
		  KVM_MEMORY_EXIT_FLAG_USERFAULT | KVM_MEMORY_EXIT_FLAG_PRIVATE,
		  0x20000, s.page);
	__atomic_fetch_and(&bitmap, ~1ul, __ATOMIC_RELEASE);
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, KVM_MEMORY_EXIT_FLAG_USERFAULT, 0x20000 + s.page, s.page);

	/*
	 * x86: the bitmap comes before the hva:
	 * an unmapped page still gets the exit
	 */
	start(&s, KVMSIM_X86_64, KVMSIM_LEVEL_7_2_UF);
	mem = pages(&s, 1, 0);
	ck_assert_int_eq(munmap(mem, s.page), 0);
	bitmap = ~0ul;
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_USERFAULT, 0x20000, s.page,
				 mem, 0, 0, &bitmap),
			 0);
	script(&s, "load:0x20000:1");
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, KVM_MEMORY_EXIT_FLAG_USERFAULT, 0x20000, s.page);
	__atomic_store_n(&bitmap, 0, __ATOMIC_RELEASE);
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_UNKNOWN);

	/* arm64: the VMA lookup first */
	start(&s, KVMSIM_ARM64, KVMSIM_LEVEL_7_2_UF);
	mem = pages(&s, 1, 0);
	ck_assert_int_eq(munmap(mem, s.page), 0);
	bitmap = ~0ul;
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_USERFAULT, s.test_gpa, s.page,
				 mem, 0, 0, &bitmap),
			 0);
	script(&s, fmt("load:%#llx:1", (unsigned long long)s.test_gpa));
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_UNKNOWN);
	/* arm64 gmem_abort(): USERFAULT, never PRIVATE */
	g = create_gmem(s.vm, s.page, GUEST_MEMFD_FLAG_MMAP);
	ck_assert_int_eq(
		region2(s.vm, 2, KVM_MEM_GUEST_MEMFD | KVM_MEM_USERFAULT,
			s.test_gpa + s.page, s.page, NULL, g, 0, &bitmap),
		0);
	script(&s, fmt("load:%#llx:1:private",
		       (unsigned long long)s.test_gpa + s.page));
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, KVM_MEMORY_EXIT_FLAG_USERFAULT, s.test_gpa + s.page,
		  s.page);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("kvmsim-userfault");
	TCase *tc;

	tc = tcase_create("userfault");
	tcase_add_loop_test(tc, userfault_bitmap, 0, 2);
	tcase_add_loop_test(tc, userfault_bitmap_unreadable, 0, 2);
	tcase_add_test(tc, userfault_paths);
	tcase_add_loop_test(tc, userfault_rearm, 0, 2);
	tcase_add_loop_test(tc, userfault_rearm_gmem, 0, 2);
	suite_add_tcase(s, tc);
	return tc_run(s);
}
