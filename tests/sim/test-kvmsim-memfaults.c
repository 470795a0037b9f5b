/* SPDX-License-Identifier: MIT */
/*
 * kvmsim's own tests, memfaults:
 * Memory faults: guest_memfd failures (closed, poisoned, other errnos),
 * arm64 VNCR, private/shared mismatches in SW_PROTECTED VMs, and
 * hardware poison of anonymous and guest_memfd pages (SIGBUS, replaced
 * and rebound slots).
 * Each test names its source with the tags of sim-raw.h.
 */
#include "sim-raw.h"

/*
 * guest_memfd slot set up as [NK] gmem-* do:
 * MMAP|INIT_SHARED, 2 pages, hva = its mmap.
 */
static int
gmem_slot(struct sim *s, uint8_t **ret_map, int fill)
{
	int g = create_gmem(s->vm, 2 * s->page,
			    GUEST_MEMFD_FLAG_MMAP |
				    GUEST_MEMFD_FLAG_INIT_SHARED);
	uint8_t *map;

	ck_assert_int_ge(g, 0);
	map = mmap(NULL, 2 * s->page, PROT_READ | PROT_WRITE, MAP_SHARED, g, 0);
	ck_assert_ptr_ne(map, MAP_FAILED);
	memset(map, fill, 2 * s->page);
	ck_assert_int_eq(region2(s->vm, 1, KVM_MEM_GUEST_MEMFD, s->test_gpa,
				 2 * s->page, map, g, 0, NULL),
			 0);
	*ret_map = map;
	return g;
}

/*
 * [NK] `gmem-close`: after munmap + close of the guest_memfd,
 * ret=-1 errno=EFAULT exit_reason=39 flags=0 gpa=TEST_GPA size=0x1000,
 * on both arches; [NK] gmem-misc (punch): the guest loads 0.
 */
START_TEST(gmem_close)
{
	uint32_t arch = (uint32_t)(_i % 2) + 1,
		 level = _i < 2 ? KVMSIM_LEVEL_7_2 : KVMSIM_LEVEL_7_2_UF;
	struct sim s;
	uint8_t *map;
	int g;

	start(&s, arch, level);
	g = gmem_slot(&s, &map, 0x5a);
	script(&s, fmt("load:%#llx:4;store:%#llx:1:0x33;load:%#llx:4",
		       (unsigned long long)s.test_gpa,
		       (unsigned long long)s.test_gpa + s.page,
		       (unsigned long long)s.test_gpa + 8));
	ck_assert_int_eq(fallocate(g,
				   FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				   0, (off_t)s.page),
			 0);
	RUN_EXPECT(&s, 0, 0,
		   arch == KVMSIM_X86_64 ? KVM_EXIT_SHUTDOWN
					 : KVM_EXIT_SYSTEM_EVENT);
	ck_assert_uint_eq(acc_of(&s), 0); /* punched: a fresh zero page */
	/* the store went to guest_memfd */
	ck_assert_uint_eq(map[s.page], 0x33);

	script(&s, fmt("load:%#llx:1",
		       (unsigned long long)s.test_gpa + s.page + 5));
	ck_assert_int_eq(munmap(map, 2 * s.page), 0);
	ck_assert_int_eq(close(g), 0);
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, 0, s.test_gpa + s.page, s.page);
	/* the fd is really gone */
	ck_assert_int_eq(kvmsim_fd_kind(g), KVMSIM_FD_NONE);
	ck_assert_int_eq(fcntl(g, F_GETFD), -1);
	ck_assert_int_eq(errno, EBADF);
}
END_TEST

/*
 * [NK] `gmem-hwpoison` / `gmem-offline`:
 * ret=-1 errno=EHWPOISON exit 39 flags=0.
 */
START_TEST(gmem_hwpoison)
{
	uint32_t arch = (uint32_t)_i + 1;
	struct sim s;
	uint8_t *map;

	start(&s, arch, KVMSIM_LEVEL_7_2);
	gmem_slot(&s, &map, 0x5a);
	ck_assert_int_eq(kvmsim_poison(s.vm, s.test_gpa + 100), 0);
	script(&s, fmt("load:%#llx:1;load:%#llx:1",
		       (unsigned long long)s.test_gpa + s.page,
		       (unsigned long long)s.test_gpa));
	RUN_EXPECT(&s, -1, EHWPOISON, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, 0, s.test_gpa, s.page);
	ck_assert_uint_eq(pc_of(&s), 1);
	ck_assert_int_eq(kvmsim_poison(s.kvm, s.test_gpa), -EBADF);
}
END_TEST

/*
 * [RS] a kvm_gmem_get_pfn() error (ENOMEM, EIO) comes back as
 * is, with exit 39 (quirk GMEM_ERRNO); with the quirk off, EFAULT.
 */
START_TEST(gmem_errno)
{
	uint32_t arch = (uint32_t)(_i % 2) + 1;
	bool quirk = _i < 2;
	uint64_t q = kvmsim_default_quirks(arch, KVMSIM_LEVEL_7_2);
	struct sim s;
	uint8_t *map;

	start_full(&s, arch, KVMSIM_LEVEL_7_2,
		   quirk ? q : q & ~KVMSIM_Q_GMEM_ERRNO, 0);
	gmem_slot(&s, &map, 0x5a);
	ck_assert_int_eq(kvmsim_inject_gmem_error(s.vm, s.test_gpa, ENOMEM, 1),
			 0);
	ck_assert_int_eq(
		kvmsim_inject_gmem_error(s.vm, s.test_gpa + s.page, EIO, 2), 0);
	ck_assert_int_eq(kvmsim_inject_gmem_error(s.vm, s.test_gpa, 0, 1),
			 -EINVAL);
	ck_assert_int_eq(kvmsim_inject_gmem_error(s.vm, s.test_gpa, EIO, 0),
			 -EINVAL);
	script(&s,
	       fmt("load:%#llx:1;load:%#llx:1", (unsigned long long)s.test_gpa,
		   (unsigned long long)s.test_gpa + s.page));
	RUN_EXPECT(&s, -1, quirk ? ENOMEM : EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, 0, s.test_gpa, s.page);
	RUN_EXPECT(&s, -1, quirk ? EIO : EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, 0, s.test_gpa + s.page, s.page);
	RUN_EXPECT(&s, -1, quirk ? EIO : EFAULT, KVM_EXIT_MEMORY_FAULT);
	RUN_EXPECT(&s, 0, 0,
		   arch == KVMSIM_X86_64 ? KVM_EXIT_SHUTDOWN
					 : KVM_EXIT_SYSTEM_EVENT);
	ck_assert_uint_eq(acc_of(&s), 0x5a);
}
END_TEST

/*
 * [RS] arm64 kvm_handle_vncr_abort(): a guest_memfd failure on the
 * VNCR page makes KVM_RUN return 0 with exit 39 (quirk VNCR_RET0).
 */
START_TEST(arm64_vncr_ret0)
{
	bool quirk = _i == 0;
	uint64_t q = kvmsim_default_quirks(KVMSIM_ARM64, KVMSIM_LEVEL_7_2);
	struct sim s;
	uint8_t *map;

	start_full(&s, KVMSIM_ARM64, KVMSIM_LEVEL_7_2,
		   quirk ? q : q & ~KVMSIM_Q_ARM64_VNCR_RET0, 0);
	ck_assert(q & KVMSIM_Q_ARM64_VNCR_RET0); /* the 7.2 default */
	gmem_slot(&s, &map, 0x5a);
	ck_assert_int_eq(kvmsim_inject_gmem_error(s.vm, s.test_gpa, ENOMEM, 1),
			 0);
	script(&s, fmt("load:%#llx:8:vncr;load:%#llx:8:vncr",
		       (unsigned long long)s.test_gpa + 0x10,
		       (unsigned long long)s.test_gpa + 0x10));
	if (quirk)
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_MEMORY_FAULT);
	else
		RUN_EXPECT(&s, -1, ENOMEM, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, 0, s.test_gpa, s.page);
	/* resolved: the access is retried and succeeds */
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_SYSTEM_EVENT);
	ck_assert_uint_eq(acc_of(&s), 0x5a5a5a5a5a5a5a5aull);
	/* the VNCR level default: only 7.2 and later */
	ck_assert_uint_eq(
		kvmsim_default_quirks(KVMSIM_ARM64, KVMSIM_LEVEL_6_8) &
			KVMSIM_Q_ARM64_VNCR_RET0,
		0);
}
END_TEST

/*
 * [SW] `swprot`, `swprot-convert`, `swprot-noslot`: in a SW_PROTECTED VM
 * the attribute decides; a private access that guest_memfd cannot serve
 * gives ret=-1 EFAULT exit 39 flags=0x8 gpa=0x20000 size=0x1000; after the
 * conversion the guest proceeds (or, without a slot, gets an MMIO read).
 */
START_TEST(swprot_private_exits)
{
	uint32_t level = _i ? KVMSIM_LEVEL_7_2 : KVMSIM_LEVEL_6_8;
	struct sim s;
	uint8_t *mem;

	start_full(&s, KVMSIM_X86_64, level,
		   kvmsim_default_quirks(KVMSIM_X86_64, level) |
			   KVMSIM_Q_SW_PROTECTED_VM,
		   KVM_X86_SW_PROTECTED_VM);
	mem = pages(&s, 2, 0x5a);
	ck_assert_int_eq(region1(s.vm, 1, 0, 0x20000, 2 * s.page, mem), 0);
	script(&s, "load:0x20000:1;out:0x3f8:1:acc;hlt");
	/* swprot-convert: first shared */
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_IO);
	ck_assert_uint_eq(((uint8_t *)s.run)[s.page], 0x5a);
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_HLT);
	/* swprot: PRIVATE on a slot without guest_memfd */
	ck_assert_int_eq(set_attrs(s.vm, 0x20000, 2 * s.page,
				   KVM_MEMORY_ATTRIBUTE_PRIVATE),
			 0);
	script(&s, "load:0x20000:1;out:0x3f8:1:acc;hlt");
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, KVM_MEMORY_EXIT_FLAG_PRIVATE, 0x20000, s.page);
	ck_assert_int_eq(set_attrs(s.vm, 0x20000, s.page, 0), 0);
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_IO);
	ck_assert_uint_eq(((uint8_t *)s.run)[s.page], 0x5a);
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_HLT);
	/* swprot-noslot: PRIVATE, memslot deleted */
	ck_assert_int_eq(
		set_attrs(s.vm, 0x20000, s.page, KVM_MEMORY_ATTRIBUTE_PRIVATE),
		0);
	ck_assert_int_eq(region1(s.vm, 1, 0, 0x20000, 0, mem), 0);
	script(&s, "load:0x20000:1");
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, KVM_MEMORY_EXIT_FLAG_PRIVATE, 0x20000, s.page);
	ck_assert_int_eq(set_attrs(s.vm, 0x20000, s.page, 0), 0);
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	ck_assert_uint_eq(s.run->mmio.phys_addr, 0x20000);
	ck_assert_uint_eq(s.run->mmio.len, 1);
	ck_assert_uint_eq(s.run->mmio.is_write, 0);
	/* attribute argument checks */
	ck_assert_int_eq(set_attrs(s.vm, 0x20001, s.page, 0), EINVAL);
	ck_assert_int_eq(set_attrs(s.vm, 0x20000, 0, 0), EINVAL);
	ck_assert_int_eq(set_attrs(s.vm, 0x20000, s.page, 1u << 4), EINVAL);
	ck_assert_int_eq(set_attrs(s.vm, (uint64_t)-s.page, 2 * s.page, 0),
			 EINVAL);
}
END_TEST

/*
 * [SW] `swprot-gmem`: a KVM_MEM_GUEST_MEMFD slot (gmem flags 0) over an
 * anon page: PRIVATE loads 0 from guest_memfd, shared loads 0x5a from the
 * anon page; with the gmem fd closed, exit 39 flags=0x8.
 */
START_TEST(swprot_gmem)
{
	uint32_t level = _i ? KVMSIM_LEVEL_7_2 : KVMSIM_LEVEL_6_8;
	struct sim s;
	uint8_t *mem;
	int g;

	start_full(&s, KVMSIM_X86_64, level,
		   kvmsim_default_quirks(KVMSIM_X86_64, level) |
			   KVMSIM_Q_SW_PROTECTED_VM,
		   KVM_X86_SW_PROTECTED_VM);
	mem = pages(&s, 2, 0x5a);
	g = create_gmem(s.vm, 2 * s.page, 0);
	ck_assert_int_ge(g, 0);
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, 0x20000,
				 2 * s.page, mem, g, 0, NULL),
			 0);
	ck_assert_int_eq(set_attrs(s.vm, 0x20000, 2 * s.page,
				   KVM_MEMORY_ATTRIBUTE_PRIVATE),
			 0);
	script(&s, "load:0x20000:1;out:0x3f8:1:acc");
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_IO);
	ck_assert_uint_eq(((uint8_t *)s.run)[s.page], 0);
	ck_assert_int_eq(set_attrs(s.vm, 0x20000, 2 * s.page, 0), 0);
	script(&s, "load:0x20000:1;out:0x3f8:1:acc");
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_IO);
	ck_assert_uint_eq(((uint8_t *)s.run)[s.page], 0x5a);
	ck_assert_int_eq(set_attrs(s.vm, 0x20000, 2 * s.page,
				   KVM_MEMORY_ATTRIBUTE_PRIVATE),
			 0);
	ck_assert_int_eq(close(g), 0);
	script(&s, "load:0x20000:1;out:0x3f8:1:acc");
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, KVM_MEMORY_EXIT_FLAG_PRIVATE, 0x20000, s.page);
	ck_assert_int_eq(set_attrs(s.vm, 0x20000, s.page, 0), 0);
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_IO);
	ck_assert_uint_eq(((uint8_t *)s.run)[s.page], 0x5a);
}
END_TEST

/*
 * [RS] kvm_mmu_faultin_pfn(): an access whose privateness differs from
 * the attribute (SNP/TDX C-bit) is an implicit conversion request: exit 39
 * with PRIVATE iff the access was private. Level 6.1 has no such exit.
 */
START_TEST(x86_private_mismatch)
{
	uint32_t level = LOOP_LEVEL(_i);
	struct sim s;
	uint8_t *mem;
	int vm1;

	start_full(&s, KVMSIM_X86_64, level,
		   kvmsim_default_quirks(KVMSIM_X86_64, level) |
			   KVMSIM_Q_SW_PROTECTED_VM,
		   0);
	mem = pages(&s, 1, 0x5a);
	ck_assert_int_eq(region1(s.vm, 1, 0, 0x20000, s.page, mem), 0);
	script(&s, "load:0x20010:1:private;load:0x20010:1:shared");
	if (level < KVMSIM_LEVEL_6_8) {
		RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_UNKNOWN);
		return;
	}
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, KVM_MEMORY_EXIT_FLAG_PRIVATE, 0x20000, s.page);
	/* a private access without a memslot: kvm_handle_noslot_fault() */
	script(&s, "load:0x900000:1:private");
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, KVM_MEMORY_EXIT_FLAG_PRIVATE, 0x900000, s.page);

	/* a shared access to a PRIVATE page: flags 0 */
	vm1 = ioctl(s.kvm, KVM_CREATE_VM,
		    (unsigned long)KVM_X86_SW_PROTECTED_VM);
	ck_assert_int_ge(vm1, 0);
	s.vm = vm1;
	add_vcpu(&s, 0);
	ck_assert_int_eq(region1(s.vm, 1, 0, 0x20000, s.page, mem), 0);
	ck_assert_int_eq(
		set_attrs(s.vm, 0x20000, s.page, KVM_MEMORY_ATTRIBUTE_PRIVATE),
		0);
	script(&s, "load:0x20010:1:shared");
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, 0, 0x20000, s.page);
}
END_TEST

/*
 * [RS] "GMEM_ONLY": with GUEST_MEMFD_FLAG_MMAP every fault is served
 * from guest_memfd, shared ones included (x86 7.2); without it, a shared
 * access uses the userspace mapping.
 */
START_TEST(x86_gmem_only)
{
	struct sim s;
	uint8_t *mem;
	int g1, g0;

	start(&s, KVMSIM_X86_64, KVMSIM_LEVEL_7_2);
	mem = pages(&s, 2, 0x5a);
	g1 = create_gmem(s.vm, s.page, GUEST_MEMFD_FLAG_MMAP);
	g0 = create_gmem(s.vm, s.page, 0);
	ck_assert_int_eq(pwrite(g1, "\x77", 1, 0), 1);
	ck_assert_int_eq(pwrite(g0, "\x66", 1, 0), 1);
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, 0x20000, s.page,
				 mem, g1, 0, NULL),
			 0);
	ck_assert_int_eq(region2(s.vm, 2, KVM_MEM_GUEST_MEMFD, 0x20000 + s.page,
				 s.page, mem + s.page, g0, 0, NULL),
			 0);
	script(&s,
	       fmt("load:0x20000:1;out:0x80:1:acc;load:%#llx:1;out:0x80:1:acc",
		   (unsigned long long)(0x20000 + s.page)));
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_IO);
	ck_assert_uint_eq(((uint8_t *)s.run)[s.page], 0x77);
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_IO);
	ck_assert_uint_eq(((uint8_t *)s.run)[s.page], 0x5a);
}
END_TEST

static volatile sig_atomic_t bus_code;
static void *volatile bus_addr;

static void
on_bus(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	bus_code = si->si_code;
	bus_addr = si->si_addr;
}

/* SIGBUS caught by on_bus(); slot 1: two pages of 0x5a at test_gpa, the
 * second poisoned; the guest loads from the poisoned one. Returns the
 * slot's memory. */
static uint8_t *
poisoned_load(struct sim *s)
{
	uint8_t *mem;

	tc_catch_signal(SIGBUS, on_bus);
	mem = pages(s, 2, 0x5a);
	ck_assert_int_eq(region1(s->vm, 1, 0, s->test_gpa, 2 * s->page, mem),
			 0);
	ck_assert_int_eq(kvmsim_poison(s->vm, s->test_gpa + s->page), 0);
	script(s, fmt("load:%#llx:1",
		      (unsigned long long)s->test_gpa + s->page + 3));
	return mem;
}

/*
 * [NK] `anon-hwpoison`: a poisoned page of a normal slot gives
 * ret=-1 errno=EINTR exit_reason=10 and SIGBUS BUS_MCEERR_AR with si_addr =
 * the hva: not a memory-fault exit.
 */
START_TEST(anon_hwpoison)
{
	uint32_t arch = (uint32_t)_i + 1;
	struct sim s;
	uint8_t *mem;

	start(&s, arch, KVMSIM_LEVEL_7_2);
	mem = poisoned_load(&s);
	RUN_EXPECT(&s, -1, EINTR, KVM_EXIT_INTR);
	if (getenv("MESON_EXE_WRAPPER") && bus_code == SI_TKILL)
		return; /* qemu-user: see kvmsim_poison() */
	ck_assert_int_eq(bus_code, BUS_MCEERR_AR);
	ck_assert_ptr_eq(bus_addr, mem + s.page);
}
END_TEST

/*
 * Poison belongs to the memory, not to the gpa (real x86 7.2, the
 * kernel-suite hwpoison recovery): the VMM's hwpoison handler deletes the
 * poisoned guest_memfd slot and adds a normal slot of fresh anonymous
 * memory at the same gpa; the guest's load, executed again, reads the new
 * memory (0xc3) and reports it.
 */
START_TEST(poison_replace_gmem_slot)
{
	uint32_t arch = (uint32_t)_i + 1;
	struct sim s;
	uint8_t *map, *fresh;

	start(&s, arch, KVMSIM_LEVEL_7_2);
	gmem_slot(&s, &map, 0x5a);
	ck_assert_int_eq(kvmsim_poison(s.vm, s.test_gpa), 0);
	script(&s, fmt("load:%#llx:1;mmio_write:0x10000000:1:acc",
		       (unsigned long long)s.test_gpa));
	RUN_EXPECT(&s, -1, EHWPOISON, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, 0, s.test_gpa, s.page);
	ck_assert_uint_eq(pc_of(&s), 0);
	/* again: the poison does not go away by itself */
	RUN_EXPECT(&s, -1, EHWPOISON, KVM_EXIT_MEMORY_FAULT);

	/* replace: delete the slot, add fresh memory at the same gpa */
	ck_assert_int_eq(region2(s.vm, 1, 0, s.test_gpa, 0, NULL, 0, 0, NULL),
			 0);
	fresh = pages(&s, 2, 0xc3);
	ck_assert_int_eq(region1(s.vm, 1, 0, s.test_gpa, 2 * s.page, fresh), 0);
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	ck_assert_uint_eq(s.run->mmio.phys_addr, 0x10000000);
	ck_assert_uint_eq(s.run->mmio.is_write, 1);
	ck_assert_uint_eq(s.run->mmio.data[0], 0xc3);
	ck_assert_uint_eq(acc_of(&s), 0xc3);
	RUN_EXPECT(&s, 0, 0,
		   arch == KVMSIM_X86_64 ? KVM_EXIT_SHUTDOWN
					 : KVM_EXIT_SYSTEM_EVENT);

	/* a gpa with nothing behind it has nothing to poison */
	ck_assert_int_eq(kvmsim_poison(s.vm, 0x7000000000ull), -ENOENT);
}
END_TEST

/*
 * The poisoned guest_memfd page stays poisoned: bound again at the same
 * gpa, or at another gpa, it fails with EHWPOISON; the same gpa bound to
 * another page of the guest_memfd loads that page.
 */
START_TEST(poison_gmem_rebound)
{
	uint32_t arch = (uint32_t)_i + 1;
	uint64_t other;
	struct sim s;
	uint8_t *map;
	int g;

	start(&s, arch, KVMSIM_LEVEL_7_2);
	other = s.test_gpa + 0x100000;
	g = gmem_slot(&s, &map, 0x5a);
	map[s.page] = 0x77;
	ck_assert_int_eq(kvmsim_poison(s.vm, s.test_gpa + 5), 0);
	/* poisoning it again changes nothing */
	ck_assert_int_eq(kvmsim_poison(s.vm, s.test_gpa), 0);
	script(&s, fmt("load:%#llx:1", (unsigned long long)s.test_gpa));
	RUN_EXPECT(&s, -1, EHWPOISON, KVM_EXIT_MEMORY_FAULT);

	/* the same gmem offset bound again at the same gpa */
	ck_assert_int_eq(region2(s.vm, 1, 0, s.test_gpa, 0, NULL, 0, 0, NULL),
			 0);
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, s.test_gpa,
				 2 * s.page, map, g, 0, NULL),
			 0);
	RUN_EXPECT(&s, -1, EHWPOISON, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, 0, s.test_gpa, s.page);

	/* ... and at another gpa, by another slot */
	ck_assert_int_eq(region2(s.vm, 1, 0, s.test_gpa, 0, NULL, 0, 0, NULL),
			 0);
	ck_assert_int_eq(region2(s.vm, 2, KVM_MEM_GUEST_MEMFD, other, s.page,
				 map, g, 0, NULL),
			 0);
	script(&s, fmt("load:%#llx:1", (unsigned long long)other + 9));
	RUN_EXPECT(&s, -1, EHWPOISON, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, 0, other, s.page);

	/* the old gpa bound to the other gmem page: that page loads */
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, s.test_gpa,
				 s.page, map + s.page, g, s.page, NULL),
			 0);
	script(&s, fmt("load:%#llx:1", (unsigned long long)s.test_gpa));
	RUN_EXPECT(&s, 0, 0,
		   arch == KVMSIM_X86_64 ? KVM_EXIT_SHUTDOWN
					 : KVM_EXIT_SYSTEM_EVENT);
	ck_assert_uint_eq(acc_of(&s), 0x77);

	/* closing the guest_memfd unbinds it: nothing left to poison */
	ck_assert_int_eq(munmap(map, 2 * s.page), 0);
	ck_assert_int_eq(close(g), 0);
	ck_assert_int_eq(kvmsim_poison(s.vm, s.test_gpa), -ENOENT);
}
END_TEST

/*
 * A poisoned page of a normal slot (SIGBUS path) is the host page: the
 * slot replaced by fresh memory at the same gpa loads it; the old memory
 * in another slot still sends SIGBUS, at its hva.
 */
START_TEST(poison_replace_anon_slot)
{
	uint32_t arch = (uint32_t)_i + 1;
	bool qemu_user = getenv("MESON_EXE_WRAPPER") != NULL;
	uint64_t other;
	struct sim s;
	uint8_t *mem, *fresh;

	start(&s, arch, KVMSIM_LEVEL_7_2);
	other = s.test_gpa + 0x100000;
	mem = poisoned_load(&s);
	bus_code = 0;
	RUN_EXPECT(&s, -1, EINTR, KVM_EXIT_INTR);
	ck_assert_int_ne(bus_code, 0);

	/* replace the slot by fresh memory at the same gpa */
	ck_assert_int_eq(region1(s.vm, 1, 0, s.test_gpa, 0, NULL), 0);
	fresh = pages(&s, 2, 0xc3);
	ck_assert_int_eq(region1(s.vm, 1, 0, s.test_gpa, 2 * s.page, fresh), 0);
	bus_code = 0;
	RUN_EXPECT(&s, 0, 0,
		   arch == KVMSIM_X86_64 ? KVM_EXIT_SHUTDOWN
					 : KVM_EXIT_SYSTEM_EVENT);
	ck_assert_uint_eq(acc_of(&s), 0xc3);
	ck_assert_int_eq(bus_code, 0);

	/* the old memory, mapped at another gpa, is still poisoned */
	ck_assert_int_eq(region1(s.vm, 2, 0, other, 2 * s.page, mem), 0);
	script(&s, fmt("load:%#llx:1;load:%#llx:1", (unsigned long long)other,
		       (unsigned long long)other + s.page));
	bus_code = 0;
	bus_addr = NULL;
	RUN_EXPECT(&s, -1, EINTR, KVM_EXIT_INTR);
	ck_assert_uint_eq(pc_of(&s), 1);
	if (!(qemu_user && bus_code == SI_TKILL)) {
		ck_assert_int_eq(bus_code, BUS_MCEERR_AR);
		ck_assert_ptr_eq(bus_addr, mem + s.page);
	}
}
END_TEST

/*
 * A guest_memfd page is the same memory through the guest_memfd's mmap():
 * a normal slot over that mapping sends SIGBUS for a poisoned gmem page,
 * and a page poisoned through such a slot fails in a guest_memfd slot.
 */
START_TEST(poison_gmem_through_mmap)
{
	uint32_t arch = (uint32_t)_i + 1;
	bool qemu_user = getenv("MESON_EXE_WRAPPER") != NULL;
	struct sim s;
	uint8_t *map;
	int g;

	start(&s, arch, KVMSIM_LEVEL_7_2);
	tc_catch_signal(SIGBUS, on_bus);
	g = gmem_slot(&s, &map, 0x5a);
	ck_assert_int_eq(kvmsim_poison(s.vm, s.test_gpa), 0);

	/* gmem page 0 through a normal slot over the mapping */
	ck_assert_int_eq(region2(s.vm, 1, 0, s.test_gpa, 0, NULL, 0, 0, NULL),
			 0);
	ck_assert_int_eq(region1(s.vm, 1, 0, s.test_gpa, 2 * s.page, map), 0);
	script(&s, fmt("load:%#llx:1;load:%#llx:1",
		       (unsigned long long)s.test_gpa + s.page,
		       (unsigned long long)s.test_gpa + 1));
	bus_code = 0;
	bus_addr = NULL;
	RUN_EXPECT(&s, -1, EINTR, KVM_EXIT_INTR);
	ck_assert_uint_eq(pc_of(&s), 1);
	if (!(qemu_user && bus_code == SI_TKILL)) {
		ck_assert_int_eq(bus_code, BUS_MCEERR_AR);
		ck_assert_ptr_eq(bus_addr, map);
	}

	/* gmem page 1 poisoned through the normal slot ... */
	ck_assert_int_eq(kvmsim_poison(s.vm, s.test_gpa + s.page), 0);
	/* ... fails as guest_memfd, bound again */
	ck_assert_int_eq(region1(s.vm, 1, 0, s.test_gpa, 0, NULL), 0);
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, s.test_gpa,
				 2 * s.page, map, g, 0, NULL),
			 0);
	script(&s,
	       fmt("load:%#llx:1", (unsigned long long)s.test_gpa + s.page));
	RUN_EXPECT(&s, -1, EHWPOISON, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, 0, s.test_gpa + s.page, s.page);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("kvmsim-memfaults");
	TCase *tc;

	tc = tcase_create("memory-faults");
	tcase_add_loop_test(tc, gmem_close, 0, 4);
	tcase_add_loop_test(tc, gmem_hwpoison, 0, 2);
	tcase_add_loop_test(tc, gmem_errno, 0, 4);
	tcase_add_loop_test(tc, arm64_vncr_ret0, 0, 2);
	tcase_add_loop_test(tc, swprot_private_exits, 0, 2);
	tcase_add_loop_test(tc, swprot_gmem, 0, 2);
	tcase_add_loop_test(tc, x86_private_mismatch, 0, 4);
	tcase_add_test(tc, x86_gmem_only);
	tcase_add_loop_test(tc, anon_hwpoison, 0, 2);
	tcase_add_loop_test(tc, poison_replace_gmem_slot, 0, 2);
	tcase_add_loop_test(tc, poison_gmem_rebound, 0, 2);
	tcase_add_loop_test(tc, poison_replace_anon_slot, 0, 2);
	tcase_add_loop_test(tc, poison_gmem_through_mmap, 0, 2);
	suite_add_tcase(s, tc);
	return tc_run(s);
}
