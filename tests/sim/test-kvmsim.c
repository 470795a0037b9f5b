/* SPDX-License-Identifier: MIT */
/*
 * kvmsim's own proof: the simulator, driven through raw system calls
 * (open("/dev/kvm"), KVM_CREATE_VM, KVM_CREATE_VCPU, mmap, KVM_RUN, ...),
 * for both architecture models and every kernel level, must show what the
 * shared notes say real kernels do. Each test names its source:
 *   [NK]  kernel/nested-kvm/README.md (observed on Debian 7.2.13)
 *   [SW]  kernel/x86_64-swprot/README.md (observed, SW_PROTECTED_VM kernel)
 *   [RS]  kernel/kvm-abi-research.md (read from the source)
 *   [UF]  observed on Debian 7.2.13 with James Houghton's KVM Userfault
 *         series applied (x86_64 and arm64, nested under QEMU): the
 *         "7.2 + KVM Userfault" level
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <kvm-userfault-proposed.h>
#include <linux/kvm.h>

#include "kvmsim-probe.h"
#include "kvmsim.h"
#include "test-common.h"

#ifndef EHWPOISON
#define EHWPOISON 133
#endif
#ifndef KVM_X86_SW_PROTECTED_VM
#define KVM_X86_SW_PROTECTED_VM 1
#endif

/* The kvm_run layout the library relies on (shared/toolchain.md §7). */
_Static_assert(offsetof(struct kvm_run, exit_reason) == 8, "exit_reason");
_Static_assert(offsetof(struct kvm_run, memory_fault.flags) == 32,
	       "memory_fault.flags");
_Static_assert(offsetof(struct kvm_run, memory_fault.gpa) == 40,
	       "memory_fault.gpa");
_Static_assert(offsetof(struct kvm_run, memory_fault.size) == 48,
	       "memory_fault.size");

static const uint32_t levels[4] = { KVMSIM_LEVEL_6_1, KVMSIM_LEVEL_6_8,
				    KVMSIM_LEVEL_7_2, KVMSIM_LEVEL_7_2_UF };

/* Loop tests: _i in [0, 8) covers arch x level. */
#define LOOP_ARCH(i)  ((uint32_t)((i) / 4 + 1))
#define LOOP_LEVEL(i) (levels[(i) % 4])

struct sim {
	uint32_t arch, level;
	int kvm, vm, vcpu;
	struct kvm_run *run;
	size_t run_size;
	uint64_t page;
	/* TEST_GPA of [NK]: 0x20000 (x86), 0x20000000 (arm64) */
	uint64_t test_gpa;
	int ret, err; /* of the last KVM_RUN */
};

static void
reset_q(uint32_t arch, uint32_t level, uint64_t quirks)
{
	struct kvmsim_config cfg = { arch, level, quirks };

	ck_assert_int_eq(kvmsim_reset(&cfg), 0);
}

static void
reset(uint32_t arch, uint32_t level)
{
	reset_q(arch, level, kvmsim_default_quirks(arch, level));
}

static int
open_kvm(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	return fd;
}

static void
add_vcpu(struct sim *s, unsigned id)
{
	int sz = ioctl(s->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);

	ck_assert_int_gt(sz, 0);
	s->vcpu = ioctl(s->vm, KVM_CREATE_VCPU, (unsigned long)id);
	ck_assert_int_ge(s->vcpu, 0);
	s->run_size = (size_t)sz;
	s->run = mmap(NULL, s->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      s->vcpu, 0);
	ck_assert_ptr_ne(s->run, MAP_FAILED);
}

/*
 * Reset the simulator to @arch/@level/@quirks
 * and open a VM of @type with one vCPU.
 */
static void
start_full(struct sim *s, uint32_t arch, uint32_t level, uint64_t quirks,
	   unsigned long type)
{
	memset(s, 0, sizeof(*s));
	reset_q(arch, level, quirks);
	s->arch = arch;
	s->level = level;
	s->page = (uint64_t)sysconf(_SC_PAGESIZE);
	s->test_gpa = arch == KVMSIM_X86_64 ? 0x20000 : 0x20000000;
	s->kvm = open_kvm();
	s->vm = ioctl(s->kvm, KVM_CREATE_VM, type);
	ck_assert_int_ge(s->vm, 0);
	add_vcpu(s, 0);
}

static void
start(struct sim *s, uint32_t arch, uint32_t level)
{
	start_full(s, arch, level, kvmsim_default_quirks(arch, level), 0);
}

/* One KVM_RUN; returns 0 or the errno. */
static int
run(struct sim *s)
{
	errno = 0;
	s->ret = ioctl(s->vcpu, KVM_RUN, 0);
	s->err = s->ret < 0 ? errno : 0;
	return s->err;
}

#define RUN_EXPECT(s, ret_, err_, reason_)                                     \
	do {                                                                   \
		run(s);                                                        \
		ck_assert_int_eq((s)->ret, (ret_));                            \
		ck_assert_int_eq((s)->err, (err_));                            \
		ck_assert_uint_eq((s)->run->exit_reason, (reason_));           \
	} while (0)

#define MF_EXPECT(s, flags_, gpa_, size_)                                      \
	do {                                                                   \
		ck_assert_uint_eq((s)->run->memory_fault.flags, (flags_));     \
		ck_assert_uint_eq((s)->run->memory_fault.gpa, (gpa_));         \
		ck_assert_uint_eq((s)->run->memory_fault.size, (size_));       \
	} while (0)

/* What KVM_RUN gives after the last step: x86 triple fault, arm64 PSCI. */
static uint32_t
done_reason(const struct sim *s)
{
	return s->arch == KVMSIM_X86_64 ? KVM_EXIT_SHUTDOWN
					: KVM_EXIT_SYSTEM_EVENT;
}

static void
script(struct sim *s, const char *text)
{
	ck_assert_int_eq(kvmsim_vcpu_set_script_text(s->vcpu, text), 0);
}

static uint64_t
acc_of(struct sim *s)
{
	uint64_t acc;

	ck_assert_int_eq(kvmsim_vcpu_get_state(s->vcpu, &acc, NULL), 0);
	return acc;
}

static size_t
pc_of(struct sim *s)
{
	size_t pc;

	ck_assert_int_eq(kvmsim_vcpu_get_state(s->vcpu, NULL, &pc), 0);
	return pc;
}

/* KVM_SET_USER_MEMORY_REGION2 (with the proposed bitmap); 0 or errno. */
static int
region2(int vm, uint32_t slot, uint32_t flags, uint64_t gpa, uint64_t size,
	const void *hva, int gmem, uint64_t gmem_off, const void *bitmap)
{
	struct kvm_userspace_memory_region2_uf r;

	memset(&r, 0, sizeof(r));
	r.slot = slot;
	r.flags = flags;
	r.guest_phys_addr = gpa;
	r.memory_size = size;
	r.userspace_addr = (uint64_t)(uintptr_t)hva;
	r.guest_memfd = (uint32_t)gmem;
	r.guest_memfd_offset = gmem_off;
	r.userfault_bitmap = (uint64_t)(uintptr_t)bitmap;
	return ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &r) < 0 ? errno : 0;
}

/* KVM_SET_USER_MEMORY_REGION (v1); 0 or errno. */
static int
region1(int vm, uint32_t slot, uint32_t flags, uint64_t gpa, uint64_t size,
	const void *hva)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot,
		.flags = flags,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)hva,
	};

	return ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? errno : 0;
}

/* KVM_CREATE_GUEST_MEMFD: the fd, or -errno. */
static int
create_gmem(int vm, uint64_t size, uint64_t flags)
{
	struct kvm_create_guest_memfd g = { .size = size, .flags = flags };
	int fd = ioctl(vm, KVM_CREATE_GUEST_MEMFD, &g);

	return fd < 0 ? -errno : fd;
}

/* KVM_SET_MEMORY_ATTRIBUTES; 0 or errno. */
static int
set_attrs(int vm, uint64_t gpa, uint64_t size, uint64_t attrs)
{
	struct kvm_memory_attributes a = { .address = gpa,
					   .size = size,
					   .attributes = attrs };

	return ioctl(vm, KVM_SET_MEMORY_ATTRIBUTES, &a) < 0 ? errno : 0;
}

/* @n anonymous pages, every byte @fill. */
static uint8_t *
pages(struct sim *s, size_t n, int fill)
{
	uint8_t *p = mmap(NULL, n * s->page, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ck_assert_ptr_ne(p, MAP_FAILED);
	memset(p, fill, n * s->page);
	return p;
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

static char *
fmt(const char *f, ...)
{
	static char buf[4][512];
	static int i;
	char *b = buf[i++ % 4];
	va_list ap;

	va_start(ap, f);
	vsnprintf(b, sizeof(buf[0]), f, ap);
	va_end(ap);
	return b;
}

static struct kvmsim_stats
stats(void)
{
	struct kvmsim_stats st;

	ck_assert_int_eq(kvmsim_get_stats(&st), 0);
	return st;
}

/* ======================================================================
 * Capabilities
 * ====================================================================== */

struct cap_row {
	long cap;
	long x86[4]; /* VM type 0, levels 6.1 6.8 7.2 7.2-uf */
	long arm64[4];
};

/*
 * [NK] "Capabilities" (7.2 values, /dev/kvm = VM fd except where noted);
 * [RS] §2.6 and §0 for what arrived in 6.8 (USER_MEMORY2, MEMORY_FAULT_INFO,
 * MEMORY_ATTRIBUTES, GUEST_MEMFD, VM_TYPES) and 6.18 (GUEST_MEMFD_FLAGS,
 * arm64 guest_memfd); PRE_FAULT_MEMORY is 6.10.
 */
static const struct cap_row cap_rows[] = {
	{ KVM_CAP_USER_MEMORY2, { 0, 1, 1, 1 }, { 0, 1, 1, 1 } },
	{ KVM_CAP_MEMORY_FAULT_INFO, { 0, 1, 1, 1 }, { 0, 0, 0, 0 } },
	{ KVM_CAP_MEMORY_ATTRIBUTES, { 0, 0, 0, 0 }, { 0, 0, 0, 0 } },
	{ KVM_CAP_GUEST_MEMFD, { 0, 0, 1, 1 }, { 0, 0, 1, 1 } },
	{ KVM_CAP_VM_TYPES, { 0, 1, 1, 1 }, { 0, 0, 0, 0 } },
	{ KVM_CAP_PRE_FAULT_MEMORY, { 0, 0, 1, 1 }, { 0, 0, 0, 0 } },
	{ KVM_CAP_GUEST_MEMFD_FLAGS, { 0, 0, 3, 3 }, { 0, 0, 3, 3 } },
	{ KVM_CAP_ARM_NISV_TO_USER, { 0, 0, 0, 0 }, { 1, 1, 1, 1 } },
	{ KVM_CAP_ARM_SEA_TO_USER, { 0, 0, 0, 0 }, { 0, 0, 1, 1 } },
	/*
	 * [UF] KVM_CAP_USERFAULT is 250 on that kernel: the series' 245 is
	 * KVM_CAP_ARM_SEA_TO_USER in 7.2 (above: 1 on arm64, 0 on x86), so a
	 * cap number proves nothing; the library tries the flag instead.
	 */
	{ 250, { 0, 0, 0, 1 }, { 0, 0, 0, 1 } },
	{ KVM_CAP_ARM_EL2, { 0, 0, 0, 0 }, { 0, 0, 0, 0 } },
	{ KVM_CAP_NR_MEMSLOTS,
	  { 32764, 32764, 32764, 32764 },
	  { 32767, 32767, 32767, 32767 } },
	{ KVM_CAP_IMMEDIATE_EXIT, { 1, 1, 1, 1 }, { 1, 1, 1, 1 } },
	{ KVM_CAP_CHECK_EXTENSION_VM, { 1, 1, 1, 1 }, { 1, 1, 1, 1 } },
	{ 9999, { 0, 0, 0, 0 }, { 0, 0, 0, 0 } },
};

START_TEST(caps_per_arch_and_level)
{
	uint32_t arch = LOOP_ARCH(_i), level = LOOP_LEVEL(_i);
	bool x86 = arch == KVMSIM_X86_64;
	int li = _i % 4;
	struct sim s;

	start(&s, arch, level);
	/* [NK] KVM_GET_API_VERSION 12 on both */
	ck_assert_int_eq(ioctl(s.kvm, KVM_GET_API_VERSION, 0), 12);
	ck_assert_int_eq(ioctl(s.kvm, KVM_GET_VCPU_MMAP_SIZE, 0),
			 (int)((x86 ? 3 : 2) * s.page));
	for (size_t i = 0; i < sizeof(cap_rows) / sizeof(cap_rows[0]); i++) {
		const struct cap_row *r = &cap_rows[i];
		long want = x86 ? r->x86[li] : r->arm64[li];
		long dev = want;

		/*
		 * [NK]: x86 /dev/kvm says MEMORY_ATTRIBUTES 8, "VM type 0: 0"
		 */
		if (x86 && r->cap == KVM_CAP_MEMORY_ATTRIBUTES &&
		    level >= KVMSIM_LEVEL_6_8)
			dev = 8;
		/*
		 * [RS] §2.6: 6.8 GUEST_MEMFD is "!kvm ||
		 * kvm_arch_has_private_mem(kvm)"
		 */
		if (x86 && r->cap == KVM_CAP_GUEST_MEMFD &&
		    level == KVMSIM_LEVEL_6_8)
			dev = 1;
		ck_assert_msg(ioctl(s.vm, KVM_CHECK_EXTENSION, r->cap) == want,
			      "arch %u level %u VM cap %ld: %d, want %ld", arch,
			      level, r->cap,
			      ioctl(s.vm, KVM_CHECK_EXTENSION, r->cap), want);
		ck_assert_msg(ioctl(s.kvm, KVM_CHECK_EXTENSION, r->cap) == dev,
			      "arch %u level %u /dev/kvm cap %ld: %d, want %ld",
			      arch, level, r->cap,
			      ioctl(s.kvm, KVM_CHECK_EXTENSION, r->cap), dev);
	}
}
END_TEST

/*
 * [SW] "Capabilities": VM_TYPES 0x3; type-1
 * VM: ATTRIBUTES 8, GMEM_FLAGS 0x1, MFI 1.
 */
START_TEST(caps_sw_protected_vm)
{
	uint32_t level = _i ? KVMSIM_LEVEL_7_2 : KVMSIM_LEVEL_6_8;
	uint64_t q = kvmsim_default_quirks(KVMSIM_X86_64, level) |
		     KVMSIM_Q_SW_PROTECTED_VM;
	struct sim s;
	int vm1;

	start_full(&s, KVMSIM_X86_64, level, q, 0);
	ck_assert_int_eq(ioctl(s.kvm, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES),
			 0x3);
	vm1 = ioctl(s.kvm, KVM_CREATE_VM,
		    (unsigned long)KVM_X86_SW_PROTECTED_VM);
	ck_assert_int_ge(vm1, 0);
	ck_assert_int_eq(
		ioctl(vm1, KVM_CHECK_EXTENSION, KVM_CAP_MEMORY_ATTRIBUTES), 8);
	ck_assert_int_eq(ioctl(vm1, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD),
			 1);
	ck_assert_int_eq(
		ioctl(vm1, KVM_CHECK_EXTENSION, KVM_CAP_MEMORY_FAULT_INFO), 1);
	ck_assert_int_eq(
		ioctl(vm1, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS),
		level == KVMSIM_LEVEL_7_2 ? 0x1 : 0);
	/*
	 * "A type-0 VM still reports MEMORY_ATTRIBUTES=0 and
	 * GUEST_MEMFD_FLAGS=0x3"
	 */
	ck_assert_int_eq(
		ioctl(s.vm, KVM_CHECK_EXTENSION, KVM_CAP_MEMORY_ATTRIBUTES), 0);
	ck_assert_int_eq(
		ioctl(s.vm, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS),
		level == KVMSIM_LEVEL_7_2 ? 0x3 : 0);
	if (level == KVMSIM_LEVEL_7_2) {
		/* "INIT_SHARED is refused with EINVAL" on type 1 */
		ck_assert_int_eq(create_gmem(vm1, 2 * s.page,
					     GUEST_MEMFD_FLAG_INIT_SHARED),
				 -EINVAL);
		ck_assert_int_ge(
			create_gmem(vm1, 2 * s.page, GUEST_MEMFD_FLAG_MMAP), 0);
	} else {
		/* 6.8 guest_memfd takes no flags */
		ck_assert_int_eq(
			create_gmem(vm1, 2 * s.page, GUEST_MEMFD_FLAG_MMAP),
			-EINVAL);
		ck_assert_int_ge(create_gmem(vm1, 2 * s.page, 0), 0);
	}
}
END_TEST

/*
 * [NK] VM_TYPES 0x1 and "swprot: SKIP (VM type 1 not offered)"; arm64 IPA
 * types; pKVM absent.
 */
START_TEST(vm_types)
{
	struct sim s;

	start(&s, KVMSIM_X86_64, KVMSIM_LEVEL_7_2);
	ck_assert_int_eq(ioctl(s.kvm, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES),
			 0x1);
	ck_assert_int_eq(ioctl(s.kvm, KVM_CREATE_VM, 1ul), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(ioctl(s.kvm, KVM_CREATE_VM, 2ul), -1);

	start(&s, KVMSIM_ARM64, KVMSIM_LEVEL_7_2);
	ck_assert_int_eq(
		ioctl(s.kvm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_VM_IPA_SIZE), 48);
	ck_assert_int_ge(ioctl(s.kvm, KVM_CREATE_VM, 40ul), 0);
	ck_assert_int_ge(ioctl(s.kvm, KVM_CREATE_VM, 48ul), 0);
	ck_assert_int_eq(ioctl(s.kvm, KVM_CREATE_VM, 49ul), -1);
	ck_assert_int_eq(ioctl(s.kvm, KVM_CREATE_VM, 31ul), -1);
	/* "Without pKVM it fails with EINVAL" */
	ck_assert_int_eq(ioctl(s.kvm, KVM_CREATE_VM, 1ul << 31), -1);
	ck_assert_int_eq(errno, EINVAL);
}
END_TEST

/*
 * arm64 still delivers exit 39 without
 * advertising MFI ([NK]); the quirk switch works.
 */
START_TEST(caps_arm64_mfi_quirk_off)
{
	struct sim s;

	start_full(&s, KVMSIM_ARM64, KVMSIM_LEVEL_7_2,
		   kvmsim_default_quirks(KVMSIM_ARM64, KVMSIM_LEVEL_7_2) &
			   ~KVMSIM_Q_NO_MFI_CAP,
		   0);
	ck_assert_int_eq(
		ioctl(s.vm, KVM_CHECK_EXTENSION, KVM_CAP_MEMORY_FAULT_INFO), 1);
}
END_TEST

/* ======================================================================
 * ioctls per level
 * ====================================================================== */

/*
 * [RS] §2.6: what exists at each level;
 * unknown ioctls get the arch's default errno.
 */
START_TEST(ioctls_per_level)
{
	uint32_t arch = LOOP_ARCH(_i), level = LOOP_LEVEL(_i);
	bool x86 = arch == KVMSIM_X86_64;
	int unknown = x86 ? ENOTTY : EINVAL; /* kvm_arch_vm_ioctl() default */
	struct sim s;
	uint8_t *mem;
	int g;

	start(&s, arch, level);
	mem = pages(&s, 2, 0);

	/* KVM_SET_USER_MEMORY_REGION2 from 6.8 */
	ck_assert_int_eq(
		region2(s.vm, 1, 0, s.test_gpa, s.page, mem, 0, 0, NULL),
		level >= KVMSIM_LEVEL_6_8 ? 0 : unknown);
	/* KVM_CREATE_GUEST_MEMFD: x86 from 6.8, arm64 from 7.2 */
	g = create_gmem(s.vm, 2 * s.page, 0);
	if (level < KVMSIM_LEVEL_6_8 || (!x86 && level < KVMSIM_LEVEL_7_2))
		ck_assert_int_eq(g, -unknown);
	else
		ck_assert_int_ge(g, 0);
	if (x86 && level == KVMSIM_LEVEL_6_8) {
		/*
		 * a type-0 VM may create one but
		 * not bind it (no private memory)
		 */
		ck_assert_int_eq(region2(s.vm, 2, KVM_MEM_GUEST_MEMFD,
					 s.test_gpa + s.page, s.page,
					 mem + s.page, g, 0, NULL),
				 EINVAL);
	}
	/* KVM_SET_MEMORY_ATTRIBUTES: x86 from 6.8 only */
	if (x86 && level >= KVMSIM_LEVEL_6_8) {
		ck_assert_int_eq(set_attrs(s.vm, s.test_gpa, s.page, 0), 0);
		ck_assert_int_eq(set_attrs(s.vm, s.test_gpa, s.page,
					   KVM_MEMORY_ATTRIBUTE_PRIVATE),
				 EINVAL);
	} else {
		ck_assert_int_eq(set_attrs(s.vm, s.test_gpa, s.page, 0),
				 unknown);
	}
	/* an unknown VM ioctl, vCPU ioctl, and /dev/kvm ioctl */
	ck_assert_int_eq(ioctl(s.vm, KVM_CREATE_IRQCHIP, 0), -1);
	ck_assert_int_eq(errno, unknown);
	ck_assert_int_eq(ioctl(s.vcpu, KVM_GET_REGS, NULL), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(ioctl(s.vcpu, FIONREAD, NULL), -1); /* not KVMIO */
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(ioctl(s.kvm, KVM_SET_USER_MEMORY_REGION, NULL), -1);
	ck_assert_int_eq(errno, EINVAL);
	/*
	 * arm64 KVM_ARM_PREFERRED_TARGET (VM) and
	 * KVM_ARM_VCPU_INIT (vCPU), 32-byte struct
	 */
	{
		uint32_t init[8] = { 0 };

		ck_assert_int_eq(
			ioctl(s.vm, _IOC(_IOC_READ, KVMIO, 0xaf, 32), init),
			x86 ? -1 : 0);
		/* KVM_ARM_TARGET_GENERIC_V8 */
		ck_assert_uint_eq(init[0], x86 ? 0 : 5);
		ck_assert_int_eq(
			ioctl(s.vcpu, _IOC(_IOC_WRITE, KVMIO, 0xae, 32), init),
			x86 ? -1 : 0);
	}
	/* KVM_RUN's argument must be 0 */
	ck_assert_int_eq(ioctl(s.vcpu, KVM_RUN, 1ul), -1);
	ck_assert_int_eq(errno, EINVAL);
	/* struct arguments are copied with EFAULT on a bad pointer */
	ck_assert_int_eq(ioctl(s.vm, KVM_SET_USER_MEMORY_REGION, (void *)8),
			 -1);
	ck_assert_int_eq(errno, EFAULT);
}
END_TEST

/* ======================================================================
 * Memslots
 * ====================================================================== */

/* __kvm_set_memory_region() checks and errnos ([RS] §1.2 for USERFAULT). */
START_TEST(memslot_validation)
{
	uint32_t arch = LOOP_ARCH(_i), level = LOOP_LEVEL(_i);
	bool x86 = arch == KVMSIM_X86_64;
	uint32_t maxslot = x86 ? 32764 : 32767;
	uint64_t gpa;
	struct sim s;
	uint8_t *mem;

	start(&s, arch, level);
	gpa = s.test_gpa;
	mem = pages(&s, 4, 0x5a);

	/* alignment */
	ck_assert_int_eq(region1(s.vm, 0, 0, gpa + 1, s.page, mem), EINVAL);
	ck_assert_int_eq(region1(s.vm, 0, 0, gpa, s.page + 1, mem), EINVAL);
	ck_assert_int_eq(region1(s.vm, 0, 0, gpa, s.page, mem + 1), EINVAL);
	/* hva beyond the user address space (access_ok) */
	ck_assert_int_eq(region1(s.vm, 0, 0, gpa, s.page,
				 (void *)(uintptr_t)(1ull << 60)),
			 EINVAL);
	/* slot ids */
	ck_assert_int_eq(region1(s.vm, maxslot, 0, gpa, s.page, mem), EINVAL);
	ck_assert_int_eq(region1(s.vm, maxslot - 1, 0, gpa, s.page, mem), 0);
	/* delete */
	ck_assert_int_eq(region1(s.vm, maxslot - 1, 0, gpa, 0, mem), 0);
	/* gone */
	ck_assert_int_eq(region1(s.vm, maxslot - 1, 0, gpa, 0, mem), EINVAL);
	/* x86 has the SMM address space (as_id 1) for non-private VMs */
	ck_assert_int_eq(region1(s.vm, 1u << 16 | 3, 0, gpa, s.page, mem),
			 x86 ? 0 : EINVAL);
	ck_assert_int_eq(region1(s.vm, 2u << 16 | 3, 0, gpa, s.page, mem),
			 EINVAL);
	/* flags: LOG_DIRTY and READONLY always; others not through v1 */
	ck_assert_int_eq(region1(s.vm, 0,
				 KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY,
				 gpa, 2 * s.page, mem),
			 0);
	ck_assert_int_eq(region1(s.vm, 1, KVM_MEM_GUEST_MEMFD, gpa + 2 * s.page,
				 s.page, mem + 2 * s.page),
			 EINVAL);
	ck_assert_int_eq(region1(s.vm, 1, KVM_MEM_USERFAULT, gpa + 2 * s.page,
				 s.page, mem + 2 * s.page),
			 EINVAL);
	/* overlap */
	ck_assert_int_eq(
		region1(s.vm, 1, 0, gpa + s.page, 2 * s.page, mem + 2 * s.page),
		EEXIST);
	ck_assert_int_eq(region1(s.vm, 1, 0, gpa + 2 * s.page, 2 * s.page,
				 mem + 2 * s.page),
			 0);
	/*
	 * modify: hva, size and READONLY are
	 * fixed; moving and other flags are not
	 */
	ck_assert_int_eq(region1(s.vm, 0,
				 KVM_MEM_READONLY | KVM_MEM_LOG_DIRTY_PAGES,
				 gpa, 2 * s.page, mem + s.page),
			 EINVAL);
	ck_assert_int_eq(
		region1(s.vm, 0, KVM_MEM_LOG_DIRTY_PAGES, gpa, 2 * s.page, mem),
		EINVAL);
	ck_assert_int_eq(
		region1(s.vm, 0, KVM_MEM_READONLY, gpa, 2 * s.page, mem), 0);
	ck_assert_int_eq(region1(s.vm, 0, KVM_MEM_READONLY, gpa + s.page,
				 2 * s.page, mem),
			 EEXIST);
	ck_assert_int_eq(region1(s.vm, 0, KVM_MEM_READONLY, gpa + 8 * s.page,
				 2 * s.page, mem),
			 0);
	if (!x86) {
		/*
		 * beyond the VM's IPA size:
		 * kvm_arch_prepare_memory_region() EFAULT
		 */
		ck_assert_int_eq(region1(s.vm, 5, 0, 1ull << 40, s.page, mem),
				 EFAULT);
		ck_assert_int_eq(
			region1(s.vm, 5, 0, (1ull << 40) - s.page, s.page, mem),
			0);
	}
	if (level < KVMSIM_LEVEL_6_8)
		return;
	/* region2: USERFAULT (1 << 3) only with KVM Userfault; 1 << 4 never */
	ck_assert_int_eq(region2(s.vm, 6, KVM_MEM_USERFAULT, gpa + 16 * s.page,
				 s.page, mem, 0, 0, mem + 3 * s.page),
			 level == KVMSIM_LEVEL_7_2_UF ? 0 : EINVAL);
	ck_assert_int_eq(region2(s.vm, 7, 1u << 4, gpa + 17 * s.page, s.page,
				 mem, 0, 0, NULL),
			 EINVAL);
	if (level == KVMSIM_LEVEL_7_2_UF) {
		/*
		 * the bitmap is only range-checked
		 * (access_ok) when the slot is set
		 */
		ck_assert_int_eq(region2(s.vm, 7, KVM_MEM_USERFAULT,
					 gpa + 17 * s.page, s.page, mem, 0, 0,
					 (void *)(uintptr_t)(1ull << 60)),
				 EINVAL);
		ck_assert_int_eq(region2(s.vm, 7, KVM_MEM_USERFAULT,
					 gpa + 17 * s.page, s.page, mem, 0, 0,
					 NULL),
				 0);
		/* toggled off and on again on a normal slot (FLAGS_ONLY) */
		ck_assert_int_eq(region2(s.vm, 7, 0, gpa + 17 * s.page, s.page,
					 mem, 0, 0, NULL),
				 0);
		ck_assert_int_eq(region2(s.vm, 7, KVM_MEM_USERFAULT,
					 gpa + 17 * s.page, s.page, mem, 0, 0,
					 mem),
				 0);
	}
}
END_TEST

/* [NK] gmem-misc (oob) and kvm_gmem_bind()/kvm_gmem_create() checks, 7.2. */
START_TEST(gmem_validation)
{
	uint32_t arch = (uint32_t)_i + 1;
	bool x86 = arch == KVMSIM_X86_64;
	struct sim s;
	uint8_t *mem;
	int g, g0, other_vm, g_other, devnull;
	uint64_t gpa;

	start(&s, arch, KVMSIM_LEVEL_7_2);
	gpa = s.test_gpa;
	mem = pages(&s, 8, 0);

	ck_assert_int_eq(create_gmem(s.vm, 0, 0), -EINVAL);
	ck_assert_int_eq(create_gmem(s.vm, s.page + 1, 0), -EINVAL);
	/* negative loff_t */
	ck_assert_int_eq(create_gmem(s.vm, (uint64_t)-s.page, 0), -EINVAL);
	ck_assert_int_eq(create_gmem(s.vm, s.page, 1u << 2), -EINVAL);
	g = create_gmem(s.vm, 2 * s.page,
			GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
	ck_assert_int_ge(g, 0);
	ck_assert_int_eq(kvmsim_fd_kind(g), KVMSIM_FD_GMEM);
	/*
	 * get_unused_fd_flags(0): a guest_memfd
	 * is not close-on-exec; VM and vCPU are
	 */
	ck_assert_int_eq(fcntl(g, F_GETFD) & FD_CLOEXEC, 0);
	ck_assert_int_ne(fcntl(s.vm, F_GETFD) & FD_CLOEXEC, 0);
	ck_assert_int_ne(fcntl(s.vcpu, F_GETFD) & FD_CLOEXEC, 0);
	/* a guest_memfd has no ioctls */
	ck_assert_int_eq(ioctl(g, KVM_CHECK_EXTENSION, 0), -1);
	ck_assert_int_eq(errno, ENOTTY);

	/*
	 * "slot size 16K on an 8K gmem, or guest_memfd_offset = size" -> EINVAL
	 */
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, gpa, 4 * s.page,
				 mem, g, 0, NULL),
			 EINVAL);
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, gpa, s.page, mem,
				 g, 2 * s.page, NULL),
			 EINVAL);
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, gpa, s.page, mem,
				 g, 1, NULL),
			 EINVAL);
	/* not a guest_memfd; a closed fd */
	devnull = open("/dev/null", O_RDWR);
	ck_assert_int_ge(devnull, 0);
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, gpa, s.page, mem,
				 devnull, 0, NULL),
			 EINVAL);
	close(devnull);
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, gpa, s.page, mem,
				 devnull, 0, NULL),
			 EBADF);
	/* a guest_memfd of another VM */
	other_vm = ioctl(s.kvm, KVM_CREATE_VM, 0ul);
	g_other = create_gmem(other_vm, 2 * s.page, GUEST_MEMFD_FLAG_MMAP);
	ck_assert_int_ge(g_other, 0);
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, gpa, s.page, mem,
				 g_other, 0, NULL),
			 EINVAL);
	/* no dirty logging, no READONLY with guest_memfd */
	ck_assert_int_eq(region2(s.vm, 1,
				 KVM_MEM_GUEST_MEMFD | KVM_MEM_LOG_DIRTY_PAGES,
				 gpa, s.page, mem, g, 0, NULL),
			 EINVAL);
	ck_assert_int_eq(region2(s.vm, 1,
				 KVM_MEM_GUEST_MEMFD | KVM_MEM_READONLY, gpa,
				 s.page, mem, g, 0, NULL),
			 EINVAL);
	/* binds; overlapping bindings of one gmem are refused */
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, gpa, s.page, mem,
				 g, 0, NULL),
			 0);
	ck_assert_int_eq(region2(s.vm, 2, KVM_MEM_GUEST_MEMFD, gpa + s.page,
				 s.page, mem + s.page, g, 0, NULL),
			 EINVAL);
	ck_assert_int_eq(region2(s.vm, 2, KVM_MEM_GUEST_MEMFD, gpa + s.page,
				 s.page, mem + s.page, g, s.page, NULL),
			 0);
	/* "Private memslots are immutable, they can only be deleted" */
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, gpa + 8 * s.page,
				 s.page, mem, g, 0, NULL),
			 EINVAL);
	ck_assert_int_eq(region2(s.vm, 1, 0, gpa, s.page, mem, -1, 0, NULL),
			 EINVAL);
	ck_assert_int_eq(region2(s.vm, 1, 0, gpa, 0, mem, -1, 0, NULL), 0);
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, gpa, s.page, mem,
				 g, 0, NULL),
			 0);

	/*
	 * A guest_memfd without FLAG_MMAP: x86 binds it; arm64 refuses ("Only
	 * support guest_memfd backed memslots with mappable memory", the
	 * EINVAL libkrun#478 met).
	 */
	g0 = create_gmem(s.vm, s.page, 0);
	ck_assert_int_ge(g0, 0);
	ck_assert_int_eq(region2(s.vm, 3, KVM_MEM_GUEST_MEMFD, gpa + 4 * s.page,
				 s.page, mem + 4 * s.page, g0, 0, NULL),
			 x86 ? 0 : EINVAL);
}
END_TEST

/*
 * KVM Userfault v3: USERFAULT can be toggled on a guest_memfd slot, which
 * can't be moved. [UF] "gmem-late": on 7.2 the FLAGS_ONLY change loses
 * the guest_memfd binding (patch 0049 binds only on create, 7.2's
 * kvm_commit_memory_region() unbinds the old slot): every access then
 * exits 39 with flags 0, even with its bit clear, on or off again.
 */
START_TEST(gmem_userfault_toggle)
{
	uint32_t arch = (uint32_t)_i + 1;
	unsigned long bitmap = 0;
	struct sim s;
	int g;

	start(&s, arch, KVMSIM_LEVEL_7_2_UF);
	g = create_gmem(s.vm, s.page, GUEST_MEMFD_FLAG_MMAP);
	ck_assert_int_ge(g, 0);
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, s.test_gpa,
				 s.page, NULL, g, 0, NULL),
			 0);
	script(&s, fmt("load:%#llx:1", (unsigned long long)s.test_gpa));
	RUN_EXPECT(&s, 0, 0, done_reason(&s));
	ck_assert_int_eq(region2(s.vm, 1,
				 KVM_MEM_GUEST_MEMFD | KVM_MEM_USERFAULT,
				 s.test_gpa, s.page, NULL, g, 0, &bitmap),
			 0);
	script(&s, fmt("load:%#llx:1", (unsigned long long)s.test_gpa));
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, 0, s.test_gpa, s.page);
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, s.test_gpa,
				 s.page, NULL, g, 0, NULL),
			 0);
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	MF_EXPECT(&s, 0, s.test_gpa, s.page);
	ck_assert_int_eq(
		region2(s.vm, 1, KVM_MEM_GUEST_MEMFD | KVM_MEM_USERFAULT,
			s.test_gpa + s.page, s.page, NULL, g, 0, &bitmap),
		EINVAL);
	/* A slot created with the flag keeps its binding ("gmem" row). */
	start(&s, arch, KVMSIM_LEVEL_7_2_UF);
	g = create_gmem(s.vm, s.page, GUEST_MEMFD_FLAG_MMAP);
	ck_assert_int_eq(region2(s.vm, 1,
				 KVM_MEM_GUEST_MEMFD | KVM_MEM_USERFAULT,
				 s.test_gpa, s.page, NULL, g, 0, &bitmap),
			 0);
	script(&s, fmt("load:%#llx:1", (unsigned long long)s.test_gpa));
	RUN_EXPECT(&s, 0, 0, done_reason(&s));
	/* Without KVM Userfault (7.2) nothing changes on a gmem slot. */
	start(&s, arch, KVMSIM_LEVEL_7_2);
	g = create_gmem(s.vm, s.page, GUEST_MEMFD_FLAG_MMAP);
	ck_assert_int_eq(region2(s.vm, 1, KVM_MEM_GUEST_MEMFD, s.test_gpa,
				 s.page, NULL, g, 0, NULL),
			 0);
	ck_assert_int_eq(region2(s.vm, 1,
				 KVM_MEM_GUEST_MEMFD | KVM_MEM_USERFAULT,
				 s.test_gpa, s.page, NULL, g, 0, &bitmap),
			 EINVAL);
}
END_TEST

/* ======================================================================
 * Guest execution
 * ====================================================================== */

/*
 * [NK] `basic`: the PIO/MMIO/HLT exits and a load from a normal memslot
 * (x86: OUT, IN, OUT of the value, load from TEST_GPA, OUT, HLT; arm64:
 * MMIO write, MMIO read of 0x1233, write back, load, write), every level.
 */
START_TEST(basic_guest)
{
	uint32_t arch = LOOP_ARCH(_i), level = LOOP_LEVEL(_i);
	struct sim s;
	uint8_t *mem;

	start(&s, arch, level);
	mem = pages(&s, 1, 0x5a);
	ck_assert_int_eq(region1(s.vm, 1, 0, s.test_gpa, s.page, mem), 0);
	if (arch == KVMSIM_X86_64) {
		uint8_t *data = (uint8_t *)s.run + s.page;

		script(&s, fmt("out:0x3f8:1:0x42;in:0x3f8:1;out:0x3f8:1:acc;"
			       "load:%#llx:1;"
			       "out:0x3f8:1:acc;hlt",
			       (unsigned long long)s.test_gpa));
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_IO);
		ck_assert_uint_eq(s.run->io.direction, KVM_EXIT_IO_OUT);
		ck_assert_uint_eq(s.run->io.size, 1);
		ck_assert_uint_eq(s.run->io.port, 0x3f8);
		ck_assert_uint_eq(s.run->io.count, 1);
		ck_assert_uint_eq(s.run->io.data_offset, s.page);
		ck_assert_uint_eq(data[0], 0x42);
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_IO);
		ck_assert_uint_eq(s.run->io.direction, KVM_EXIT_IO_IN);
		data[0] = 0x11;
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_IO);
		ck_assert_uint_eq(s.run->io.direction, KVM_EXIT_IO_OUT);
		ck_assert_uint_eq(data[0], 0x11);
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_IO);
		ck_assert_uint_eq(data[0], 0x5a);
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_HLT);
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_SHUTDOWN);
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_SHUTDOWN);
	} else {
		uint32_t v;

		script(&s, fmt("mmio_write:0x10000000:4:0x42;mmio_read:"
			       "0x10000004:4;"
			       "mmio_write:0x10000008:4:acc;load:%#llx:4;mmio_"
			       "write:0x1000000c:4:acc",
			       (unsigned long long)s.test_gpa));
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
		ck_assert_uint_eq(s.run->mmio.phys_addr, 0x10000000);
		ck_assert_uint_eq(s.run->mmio.len, 4);
		ck_assert_uint_eq(s.run->mmio.is_write, 1);
		memcpy(&v, s.run->mmio.data, 4);
		ck_assert_uint_eq(v, 0x42);
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
		ck_assert_uint_eq(s.run->mmio.phys_addr, 0x10000004);
		ck_assert_uint_eq(s.run->mmio.is_write, 0);
		v = 0x1233;
		memcpy(s.run->mmio.data, &v, 4);
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
		memcpy(&v, s.run->mmio.data, 4);
		ck_assert_uint_eq(v, 0x1233);
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
		memcpy(&v, s.run->mmio.data, 4);
		ck_assert_uint_eq(v, 0x5a5a5a5a);
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_SYSTEM_EVENT);
		ck_assert_uint_eq(s.run->system_event.type,
				  KVM_SYSTEM_EVENT_SHUTDOWN);
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_SYSTEM_EVENT);
	}
	ck_assert_uint_eq(acc_of(&s),
			  arch == KVMSIM_X86_64 ? 0x5a : 0x5a5a5a5a);
	ck_assert_uint_eq(pc_of(&s), arch == KVMSIM_X86_64 ? 6 : 5);
}
END_TEST

/*
 * Stores reach memory; a store to a READONLY
 * slot, and any access without a slot, is MMIO.
 */
START_TEST(stores_readonly_noslot)
{
	uint32_t arch = LOOP_ARCH(_i), level = LOOP_LEVEL(_i);
	struct sim s;
	uint8_t *mem;
	uint64_t v;

	start(&s, arch, level);
	mem = pages(&s, 2, 0);
	ck_assert_int_eq(region1(s.vm, 1, 0, s.test_gpa, s.page, mem), 0);
	ck_assert_int_eq(region1(s.vm, 2, KVM_MEM_READONLY, s.test_gpa + s.page,
				 s.page, mem + s.page),
			 0);
	mem[s.page + 8] = 0x77;
	script(&s, fmt("store:%#llx:8:0x1122334455667788;load:%#llx:2;store:%#"
		       "llx:4:acc;"
		       "load:%#llx:1;store:%#llx:1:acc;load:0x40000000:8;store:"
		       "0x40000000:2:acc",
		       (unsigned long long)s.test_gpa + 16,
		       (unsigned long long)s.test_gpa + 16,
		       (unsigned long long)s.test_gpa + 32,
		       (unsigned long long)s.test_gpa + s.page + 8,
		       (unsigned long long)s.test_gpa + s.page + 8));
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	memcpy(&v, mem + 16, 8);
	ck_assert_uint_eq(v, 0x1122334455667788ull);
	ck_assert_uint_eq(*(uint32_t *)(void *)(mem + 32), 0x7788);
	/* READONLY: the load read memory, the store became an MMIO write */
	ck_assert_uint_eq(s.run->mmio.phys_addr, s.test_gpa + s.page + 8);
	ck_assert_uint_eq(s.run->mmio.is_write, 1);
	ck_assert_uint_eq(s.run->mmio.len, 1);
	ck_assert_uint_eq(s.run->mmio.data[0], 0x77);
	ck_assert_uint_eq(mem[s.page + 8], 0x77);
	/* no memslot: an MMIO read whose data reaches the guest */
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	ck_assert_uint_eq(s.run->mmio.phys_addr, 0x40000000);
	ck_assert_uint_eq(s.run->mmio.is_write, 0);
	ck_assert_uint_eq(s.run->mmio.len, 8);
	v = 0xabcdef0123456789ull;
	memcpy(s.run->mmio.data, &v, 8);
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	ck_assert_uint_eq(s.run->mmio.is_write, 1);
	ck_assert_uint_eq(s.run->mmio.len, 2);
	ck_assert_uint_eq(s.run->mmio.data[0], 0x89);
	ck_assert_uint_eq(s.run->mmio.data[1], 0x67);
	ck_assert_uint_eq(acc_of(&s), 0xabcdef0123456789ull);
}
END_TEST

/*
 * [NK] `badhva`: hva PROT_NONE -> ret=-1
 * errno=EFAULT exit_reason=0, every level.
 */
START_TEST(badhva)
{
	uint32_t arch = LOOP_ARCH(_i), level = LOOP_LEVEL(_i);
	struct kvmsim_stats st;
	struct sim s;
	uint8_t *mem;

	start(&s, arch, level);
	mem = pages(&s, 2, 0x5a);
	ck_assert_int_eq(region1(s.vm, 1, 0, s.test_gpa, 2 * s.page, mem), 0);
	ck_assert_int_eq(mprotect(mem, s.page, PROT_NONE), 0);
	ck_assert_int_eq(munmap(mem + s.page, s.page), 0);
	script(&s,
	       fmt("load:%#llx:1;load:%#llx:1", (unsigned long long)s.test_gpa,
		   (unsigned long long)s.test_gpa + s.page));
	s.run->exit_reason = KVM_EXIT_MMIO; /* stale value: must be reset */
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_UNKNOWN);
	/* the faulting access runs again on the next entry */
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_UNKNOWN);
	ck_assert_uint_eq(pc_of(&s), 0);
	ck_assert_int_eq(mprotect(mem, s.page, PROT_READ), 0);
	/* an unmapped hva is the same bare EFAULT */
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_UNKNOWN);
	ck_assert_uint_eq(pc_of(&s), 1);
	/* a store to a read-only VMA: GUP for write fails */
	script(&s, fmt("store:%#llx:1:1", (unsigned long long)s.test_gpa));
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_UNKNOWN);
	st = stats();
	ck_assert_uint_eq(st.bare_efaults, 4);
	ck_assert_uint_eq(st.memory_faults, 0);
	ck_assert_uint_eq(st.runs, 4);
}
END_TEST

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
 * [RS] §2.2/§2.3: a kvm_gmem_get_pfn() error (ENOMEM, EIO) comes back as
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
 * [RS] §2.3: arm64 kvm_handle_vncr_abort(): a guest_memfd failure on the
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
 * [RS] §2.2 kvm_mmu_faultin_pfn(): an access whose privateness differs from
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
 * [RS] §2.6 "GMEM_ONLY": with GUEST_MEMFD_FLAG_MMAP every fault is served
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

/*
 * [RS] §1.2-1.5 KVM Userfault v3: a vCPU access to a page whose bit is set
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
 * [RS] §1.4: x86 checks the bitmap at the top of __kvm_mmu_faultin_pfn(),
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

/*
 * [RS] §2.4 immediate_exit: sampled once; -1/EINTR with exit_reason left
 * stale (STALE_EXIT_ON_IE), after completing the pending MMIO/IO (api.rst
 * "re-enter ... with immediate_exit set to complete pending operations").
 */
START_TEST(immediate_exit_stale)
{
	uint32_t arch = LOOP_ARCH(_i), level = LOOP_LEVEL(_i);
	struct kvmsim_stats st;
	uint32_t before;
	struct sim s;
	uint8_t *mem;

	start(&s, arch, level);
	mem = pages(&s, 1, 0);
	ck_assert_int_eq(
		region1(s.vm, 1, KVM_MEM_READONLY, s.test_gpa, s.page, mem), 0);
	script(&s, "mmio_read:0x1000:4;mmio_write:0x1000:4:acc");
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	s.run->mmio.data[0] = 0x44;
	s.run->immediate_exit = 1;
	RUN_EXPECT(&s, -1, EINTR, KVM_EXIT_MMIO);
	ck_assert_uint_eq(acc_of(&s), 0x44); /* completed */
	ck_assert_uint_eq(pc_of(&s), 1);
	/* again: still stale, nothing more */
	RUN_EXPECT(&s, -1, EINTR, KVM_EXIT_MMIO);
	s.run->immediate_exit = 0;
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	ck_assert_uint_eq(s.run->mmio.is_write, 1);
	ck_assert_uint_eq(s.run->mmio.data[0], 0x44);

	/*
	 * a memory-fault exit stays stale too
	 * (which is why the library resets it)
	 */
	script(&s,
	       fmt("store:%#llx:1:1:private", (unsigned long long)s.test_gpa));
	run(&s);
	if (arch == KVMSIM_X86_64) {
		ck_assert_int_eq(s.err, EFAULT);
		ck_assert_uint_eq(s.run->exit_reason,
				  level >= KVMSIM_LEVEL_6_8
					  ? KVM_EXIT_MEMORY_FAULT
					  : KVM_EXIT_UNKNOWN);
	} else {
		/* RO slot */
		ck_assert_uint_eq(s.run->exit_reason, KVM_EXIT_MMIO);
	}
	before = s.run->exit_reason;
	s.run->immediate_exit = 1;
	RUN_EXPECT(&s, -1, EINTR, before);
	st = stats();
	ck_assert_uint_ge(st.immediate_exits, 3);

	/* quirk off: KVM_EXIT_INTR */
	start_full(&s, arch, level,
		   kvmsim_default_quirks(arch, level) &
			   ~KVMSIM_Q_STALE_EXIT_ON_IE,
		   0);
	script(&s, "mmio_read:0x1000:4");
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	s.run->immediate_exit = 1;
	RUN_EXPECT(&s, -1, EINTR, KVM_EXIT_INTR);
}
END_TEST

/*
 * [RS] §2.4: arm64 completes a pending MMIO access only if exit_reason is
 * still KVM_EXIT_MMIO, else the instruction runs again (the same exit, the
 * data never reaches the guest); x86 completes regardless.
 */
START_TEST(mmio_readback)
{
	uint32_t arch = LOOP_ARCH(_i), level = LOOP_LEVEL(_i);
	struct sim s;

	start(&s, arch, level);
	script(&s, "mmio_read:0x1000:4;mmio_write:0x2000:4:acc");
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	s.run->mmio.data[0] = 0x99;
	/* what a careless wrapper does */
	s.run->exit_reason = KVM_EXIT_UNKNOWN;
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	if (arch == KVMSIM_ARM64) {
		/* re-executed: the read again, nothing delivered */
		ck_assert_uint_eq(s.run->mmio.phys_addr, 0x1000);
		ck_assert_uint_eq(s.run->mmio.is_write, 0);
		ck_assert_uint_eq(acc_of(&s), 0);
		ck_assert_uint_eq(stats().reexecutions, 1);
		/* a write is repeated the same way */
		s.run->mmio.data[0] = 0x98;
		/* exit_reason left alone: completes */
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
		ck_assert_uint_eq(s.run->mmio.phys_addr, 0x2000);
		ck_assert_uint_eq(s.run->mmio.data[0], 0x98);
		s.run->exit_reason = KVM_EXIT_MEMORY_FAULT;
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
		ck_assert_uint_eq(s.run->mmio.phys_addr, 0x2000);
		ck_assert_uint_eq(pc_of(&s), 1);
	} else {
		ck_assert_uint_eq(s.run->mmio.phys_addr, 0x2000);
		ck_assert_uint_eq(s.run->mmio.data[0], 0x99);
		ck_assert_uint_eq(acc_of(&s), 0x99);
		ck_assert_uint_eq(stats().reexecutions, 0);
	}
	if (arch == KVMSIM_ARM64) {
		/* quirk off: completes regardless, like x86 */
		start_full(&s, arch, level,
			   kvmsim_default_quirks(arch, level) &
				   ~KVMSIM_Q_MMIO_READBACK,
			   0);
		script(&s, "mmio_read:0x1000:4;mmio_write:0x2000:4:acc");
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
		s.run->mmio.data[0] = 0x99;
		s.run->exit_reason = KVM_EXIT_UNKNOWN;
		RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
		ck_assert_uint_eq(s.run->mmio.phys_addr, 0x2000);
		ck_assert_uint_eq(acc_of(&s), 0x99);
	}
}
END_TEST

/* ---- signals ---- */

static int got_usr1; /* atomic: handlers run on several threads */
/* per thread: pthread_kill targets */
static __thread volatile sig_atomic_t my_usr1;

static void
on_usr1(int sig)
{
	(void)sig;
	__atomic_fetch_add(&got_usr1, 1, __ATOMIC_RELAXED);
	my_usr1++;
}

struct spinner {
	struct sim *s;
	int vcpu;
	bool own_mask; /* block SIGUSR1, let KVM_SET_SIGNAL_MASK open it */
	int ret, err;
	uint32_t reason;
	/* handler runs on this thread when the ioctl returned */
	int seen;
	int done; /* atomic */
};

static void *
spin_thread(void *p)
{
	struct spinner *t = p;
	struct kvm_run *run = mmap(NULL, t->s->run_size, PROT_READ | PROT_WRITE,
				   MAP_SHARED, t->vcpu, 0);
	struct {
		uint32_t len;
		uint8_t sigset[8];
	} km = { 8, { 0 } };

	if (run == MAP_FAILED)
		return NULL;
	if (t->own_mask) {
		sigset_t blk;

		sigemptyset(&blk);
		sigaddset(&blk, SIGUSR1);
		pthread_sigmask(SIG_BLOCK, &blk, NULL);
		if (ioctl(t->vcpu, KVM_SET_SIGNAL_MASK, &km))
			return NULL;
	}
	t->ret = ioctl(t->vcpu, KVM_RUN, 0);
	t->err = errno;
	t->seen = my_usr1;
	t->reason = run->exit_reason;
	munmap(run, t->s->run_size);
	__atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void
install_usr1(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
	__atomic_store_n(&got_usr1, 0, __ATOMIC_RELAXED);
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/*
 * [RS] §2.4 "Signals": a signal ends KVM_RUN with -1/EINTR and
 * KVM_EXIT_INTR, and its handler runs before the ioctl returns. Four vCPU
 * threads spin in the guest at once (so no global lock is held while one
 * spins); two use the caller's mask, two KVM_SET_SIGNAL_MASK. An
 * immediate_exit set meanwhile does not stop a running guest.
 */
START_TEST(signal_during_spin)
{
	uint32_t arch = (uint32_t)_i + 1;
	struct spinner t[4];
	pthread_t th[4];
	struct sim s;

	start(&s, arch, KVMSIM_LEVEL_7_2);
	install_usr1();
	for (int i = 0; i < 4; i++) {
		memset(&t[i], 0, sizeof(t[i]));
		t[i].s = &s;
		t[i].own_mask = i >= 2;
		t[i].vcpu = i ? ioctl(s.vm, KVM_CREATE_VCPU, (unsigned long)i)
			      : s.vcpu;
		ck_assert_int_ge(t[i].vcpu, 0);
		ck_assert_int_eq(kvmsim_vcpu_set_script_text(t[i].vcpu, "spin"),
				 0);
		ck_assert_int_eq(
			pthread_create(&th[i], NULL, spin_thread, &t[i]), 0);
	}
	/* all four inside KVM_RUN at the same time */
	for (int i = 0; i < 4; i++)
		while (kvmsim_vcpu_get_state(t[i].vcpu, NULL, NULL) != -EBUSY)
			sleep_ms(1);
	ck_assert_int_eq(kvmsim_vcpu_set_script_text(s.vcpu, "spin"), -EBUSY);
	s.run->immediate_exit = 1;
	sleep_ms(20);
	ck_assert_int_eq(__atomic_load_n(&t[0].done, __ATOMIC_ACQUIRE), 0);
	for (int i = 0; i < 4; i++) {
		/*
		 * A signal that lands before the thread
		 * blocked signals in KVM_RUN runs its handler
		 * outside; send until one lands inside.
		 */
		for (int n = 0; !__atomic_load_n(&t[i].done, __ATOMIC_ACQUIRE);
		     n++) {
			ck_assert_int_lt(n, 500);
			ck_assert_int_eq(pthread_kill(th[i], SIGUSR1), 0);
			sleep_ms(10);
		}
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);
		ck_assert_int_eq(t[i].ret, -1);
		ck_assert_int_eq(t[i].err, EINTR);
		ck_assert_uint_eq(t[i].reason, KVM_EXIT_INTR);
		/* the handler ran before the return */
		ck_assert_int_ge(t[i].seen, 1);
		ck_assert_int_eq(kvmsim_vcpu_get_state(t[i].vcpu, NULL, NULL),
				 0);
	}
	ck_assert_uint_ge(stats().signal_exits, 4);
	/*
	 * a spin never advances; immediate_exit still set -> EINTR, stale INTR
	 */
	RUN_EXPECT(&s, -1, EINTR, KVM_EXIT_INTR);
	ck_assert_uint_eq(pc_of(&s), 0);
}
END_TEST

/*
 * A deliverable pending signal stops KVM_RUN before the guest runs
 * (x86 vcpu_run() / arm64 run loop); a blocked one does not; with
 * KVM_SET_SIGNAL_MASK the vCPU's mask applies inside KVM_RUN.
 */
START_TEST(signal_pending_and_sigmask)
{
	uint32_t arch = (uint32_t)_i + 1;
	struct {
		uint32_t len;
		uint8_t sigset[8];
	} km = { 8, { 0 } };
	sigset_t blk, old;
	struct sim s;

	start(&s, arch, KVMSIM_LEVEL_7_2);
	install_usr1();
	script(&s, "mmio_write:0x1000:1:1");
	sigemptyset(&blk);
	sigaddset(&blk, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &blk, &old);
	raise(SIGUSR1);
	/* blocked: not delivered, the guest runs */
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	/* the vCPU's own mask (empty) unblocks it inside KVM_RUN */
	ck_assert_int_eq(ioctl(s.vcpu, KVM_SET_SIGNAL_MASK, &km), 0);
	RUN_EXPECT(&s, -1, EINTR, KVM_EXIT_INTR);
	/* still blocked outside */
	ck_assert_int_eq(__atomic_load_n(&got_usr1, __ATOMIC_RELAXED), 0);
	ck_assert_uint_eq(pc_of(&s), 1);
	km.len = 4;
	ck_assert_int_eq(ioctl(s.vcpu, KVM_SET_SIGNAL_MASK, &km), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(ioctl(s.vcpu, KVM_SET_SIGNAL_MASK, NULL), 0);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	ck_assert_int_eq(__atomic_load_n(&got_usr1, __ATOMIC_RELAXED), 1);
	RUN_EXPECT(&s, 0, 0,
		   arch == KVMSIM_X86_64 ? KVM_EXIT_SHUTDOWN
					 : KVM_EXIT_SYSTEM_EVENT);
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

/*
 * [NK] `anon-hwpoison`: a poisoned page of a normal slot gives
 * ret=-1 errno=EINTR exit_reason=10 and SIGBUS BUS_MCEERR_AR with si_addr =
 * the hva: not a memory-fault exit.
 */
START_TEST(anon_hwpoison)
{
	uint32_t arch = (uint32_t)_i + 1;
	struct sigaction sa;
	struct sim s;
	uint8_t *mem;

	start(&s, arch, KVMSIM_LEVEL_7_2);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_bus;
	sa.sa_flags = SA_SIGINFO;
	ck_assert_int_eq(sigaction(SIGBUS, &sa, NULL), 0);
	mem = pages(&s, 2, 0x5a);
	ck_assert_int_eq(region1(s.vm, 1, 0, s.test_gpa, 2 * s.page, mem), 0);
	ck_assert_int_eq(kvmsim_poison(s.vm, s.test_gpa + s.page), 0);
	script(&s, fmt("load:%#llx:1",
		       (unsigned long long)s.test_gpa + s.page + 3));
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
	struct sigaction sa;
	struct sim s;
	uint8_t *mem, *fresh;

	start(&s, arch, KVMSIM_LEVEL_7_2);
	other = s.test_gpa + 0x100000;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_bus;
	sa.sa_flags = SA_SIGINFO;
	ck_assert_int_eq(sigaction(SIGBUS, &sa, NULL), 0);
	mem = pages(&s, 2, 0x5a);
	ck_assert_int_eq(region1(s.vm, 1, 0, s.test_gpa, 2 * s.page, mem), 0);
	ck_assert_int_eq(kvmsim_poison(s.vm, s.test_gpa + s.page), 0);
	script(&s, fmt("load:%#llx:1",
		       (unsigned long long)s.test_gpa + s.page + 3));
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
	struct sigaction sa;
	struct sim s;
	uint8_t *map;
	int g;

	start(&s, arch, KVMSIM_LEVEL_7_2);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_bus;
	sa.sa_flags = SA_SIGINFO;
	ck_assert_int_eq(sigaction(SIGBUS, &sa, NULL), 0);
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

/* ======================================================================
 * fds and the process boundary
 * ====================================================================== */

/*
 * Every object is a real fd: fstat works, close works, a closed fd gives EBADF.
 */
START_TEST(closed_fds)
{
	uint32_t arch = (uint32_t)_i + 1;
	struct stat stt;
	struct sim s;
	int vcpu1;
	pid_t pid;
	int status;

	start(&s, arch, KVMSIM_LEVEL_7_2);
	ck_assert_int_eq(kvmsim_fd_kind(s.kvm), KVMSIM_FD_KVM);
	ck_assert_int_eq(kvmsim_fd_kind(s.vm), KVMSIM_FD_VM);
	ck_assert_int_eq(kvmsim_fd_kind(s.vcpu), KVMSIM_FD_VCPU);
	ck_assert_int_eq(kvmsim_fd_kind(0), KVMSIM_FD_NONE);
	ck_assert_int_eq(fstat(s.vcpu, &stt), 0);
	ck_assert_int_eq((long)stt.st_size, (long)s.run_size);
	/* duplicate and out-of-range vCPU ids */
	ck_assert_int_eq(ioctl(s.vm, KVM_CREATE_VCPU, 0ul), -1);
	ck_assert_int_eq(errno, EEXIST);
	ck_assert_int_eq(ioctl(s.vm, KVM_CREATE_VCPU, 100000ul), -1);
	ck_assert_int_eq(errno, EINVAL);
	vcpu1 = ioctl(s.vm, KVM_CREATE_VCPU, 1ul);
	ck_assert_int_ge(vcpu1, 0);

	/* after fork(), the child's VM and vCPU ioctls give EIO (kvm->mm) */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int ok = ioctl(s.vm, KVM_CHECK_EXTENSION,
			       KVM_CAP_USER_MEMORY) == -1 &&
			 errno == EIO && ioctl(s.vcpu, KVM_RUN, 0) == -1 &&
			 errno == EIO &&
			 ioctl(s.kvm, KVM_GET_API_VERSION, 0) == 12;
		_exit(ok ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	/* the VM lives on while a vCPU holds it */
	ck_assert_int_eq(close(s.vm), 0);
	ck_assert_int_eq(ioctl(s.vm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY),
			 -1);
	ck_assert_int_eq(errno, EBADF);
	script(&s, "mmio_write:0x1000:1:7");
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	ck_assert_int_eq(close(s.vcpu), 0);
	ck_assert_int_eq(ioctl(s.vcpu, KVM_RUN, 0), -1);
	ck_assert_int_eq(errno, EBADF);
	ck_assert_int_eq(kvmsim_vcpu_set_script_text(s.vcpu, "hlt"), -EBADF);
	ck_assert_int_eq(kvmsim_vcpu_get_state(s.vcpu, NULL, NULL), -EBADF);
	/* our mapping of the closed vCPU's kvm_run stays valid */
	ck_assert_uint_eq(s.run->exit_reason, KVM_EXIT_MMIO);
	ck_assert_int_eq(close(s.kvm), 0);
	ck_assert_int_eq(ioctl(s.kvm, KVM_GET_API_VERSION, 0), -1);
	ck_assert_int_eq(errno, EBADF);
	ck_assert_int_eq(close(s.kvm), -1);
	ck_assert_int_eq(errno, EBADF);
	ck_assert_int_eq(close(vcpu1), 0);
	/* reset closes what is left */
	s.kvm = open_kvm();
	reset(arch, KVMSIM_LEVEL_7_2);
	ck_assert_int_eq(fcntl(s.kvm, F_GETFD), -1);
}
END_TEST

/*
 * The interposition reaches shared libraries: a DSO's open("/dev/kvm"),
 * ioctl() and close() (as libmemfault.so's) land in the simulator linked
 * into this executable; every other path and fd passes through.
 */
START_TEST(interposition)
{
	int fd, fds[2], n = -1;

	reset(KVMSIM_X86_64, KVMSIM_LEVEL_7_2);
	fd = kvmsim_probe_open("/dev/kvm");
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(kvmsim_fd_kind(fd), KVMSIM_FD_KVM);
	ck_assert_int_eq(kvmsim_probe_ioctl(fd, KVM_GET_API_VERSION, 0), 12);
	ck_assert_int_eq(kvmsim_probe_close(fd), 0);
	ck_assert_int_eq(kvmsim_probe_ioctl(fd, KVM_GET_API_VERSION, 0), -1);
	ck_assert_int_eq(errno, EBADF);
	/* other paths and fds go to the C library */
	fd = kvmsim_probe_open("/dev/null");
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(kvmsim_fd_kind(fd), KVMSIM_FD_NONE);
	ck_assert_int_eq(kvmsim_probe_ioctl(fd, KVM_GET_API_VERSION, 0), -1);
	/* qemu-user refuses an ioctl it does not know with ENOSYS itself */
	ck_assert(errno == ENOTTY ||
		  (getenv("MESON_EXE_WRAPPER") && errno == ENOSYS));
	ck_assert_int_eq(kvmsim_probe_close(fd), 0);
	ck_assert_int_eq(pipe(fds), 0);
	ck_assert_int_eq(write(fds[1], "abc", 3), 3);
	ck_assert_int_eq(ioctl(fds[0], FIONREAD, &n), 0);
	ck_assert_int_eq(n, 3);
	close(fds[0]);
	close(fds[1]);
	/* the other entry points */
	fd = openat(AT_FDCWD, "/dev/kvm", O_RDWR);
	ck_assert_int_eq(kvmsim_fd_kind(fd), KVMSIM_FD_KVM);
	ck_assert_int_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
	close(fd);
	fd = open64("/dev/kvm", O_RDWR | O_CLOEXEC);
	ck_assert_int_eq(kvmsim_fd_kind(fd), KVMSIM_FD_KVM);
	ck_assert_int_ne(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
	close(fd);
	fd = open("/tmp", O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(kvmsim_fd_kind(fd), KVMSIM_FD_NONE);
	close(fd);
}
END_TEST

/* ======================================================================
 * Scripts and configuration
 * ====================================================================== */

START_TEST(script_text)
{
	struct kvmsim_step *st;
	size_t n;

	ck_assert_int_eq(
		kvmsim_parse_script(
			" mmio_write:0x1000:4:0x1234 ; mmio_read:0x1000:4;"
			"load:0x20000:1;out:0x3f8:1:acc;hlt;;"
			"store:8:8:acc:private+vncr;in:0x60:2;spin;"
			"load:0x3000:2:shared",
			&st, &n),
		0);
	ck_assert_uint_eq(n, 9);
	ck_assert_uint_eq(st[0].op, KVMSIM_OP_MMIO_WRITE);
	ck_assert_uint_eq(st[0].gpa, 0x1000);
	ck_assert_uint_eq(st[0].len, 4);
	ck_assert_uint_eq(st[0].value, 0x1234);
	ck_assert_uint_eq(st[0].flags, 0);
	ck_assert_uint_eq(st[1].op, KVMSIM_OP_MMIO_READ);
	ck_assert_uint_eq(st[2].op, KVMSIM_OP_LOAD);
	ck_assert_uint_eq(st[2].gpa, 0x20000);
	ck_assert_uint_eq(st[3].op, KVMSIM_OP_IO_OUT);
	ck_assert_uint_eq(st[3].flags, KVMSIM_F_ACC);
	ck_assert_uint_eq(st[4].op, KVMSIM_OP_HLT);
	ck_assert_uint_eq(st[5].op, KVMSIM_OP_STORE);
	ck_assert_uint_eq(st[5].flags,
			  KVMSIM_F_ACC | KVMSIM_F_PRIVATE | KVMSIM_F_VNCR);
	ck_assert_uint_eq(st[6].op, KVMSIM_OP_IO_IN);
	ck_assert_uint_eq(st[6].len, 2);
	ck_assert_uint_eq(st[7].op, KVMSIM_OP_SPIN);
	ck_assert_uint_eq(st[8].flags, KVMSIM_F_SHARED);
	free(st);
	ck_assert_int_eq(kvmsim_parse_script("", &st, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(st);
	static const char *bad[] = { "jump:1",
				     "load:0x1000",
				     "load:0x1000:4:weird",
				     "load:x:4",
				     "mmio_write:1:4",
				     "hlt:1",
				     "load:1:4:private:1",
				     "store:1:9:1",
				     "load:-1:4",
				     "out:1:1:1:1:1:1:1" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(kvmsim_parse_script(bad[i], &st, &n) == -EINVAL,
			      "%s", bad[i]);
}
END_TEST

/* Per-arch validation of scripts: IO/HLT are x86-only, sizes, page crossing. */
START_TEST(script_validation)
{
	uint32_t arch = (uint32_t)_i + 1;
	bool x86 = arch == KVMSIM_X86_64;
	struct kvmsim_step st = { .op = KVMSIM_OP_LOAD,
				  .gpa = 0x1000,
				  .len = 3 };
	struct sim s;

	start(&s, arch, KVMSIM_LEVEL_7_2);
	ck_assert_int_eq(kvmsim_vcpu_set_script_text(s.vcpu, "hlt"),
			 x86 ? 0 : -EINVAL);
	ck_assert_int_eq(kvmsim_vcpu_set_script_text(s.vcpu, "in:0x60:1"),
			 x86 ? 0 : -EINVAL);
	ck_assert_int_eq(kvmsim_vcpu_set_script_text(s.vcpu, "in:0x60:8"),
			 -EINVAL);
	ck_assert_int_eq(
		kvmsim_vcpu_set_script_text(s.vcpu, "mmio_read:0x60:0"),
		-EINVAL);
	ck_assert_int_eq(kvmsim_vcpu_set_script_text(
				 s.vcpu, fmt("load:%#llx:2",
					     (unsigned long long)s.page - 1)),
			 -EINVAL);
	ck_assert_int_eq(kvmsim_vcpu_set_script(s.vcpu, &st, 1), -EINVAL);
	st.len = 4;
	st.reserved = 1;
	ck_assert_int_eq(kvmsim_vcpu_set_script(s.vcpu, &st, 1), -EINVAL);
	st.reserved = 0;
	st.flags = 1u << 7;
	ck_assert_int_eq(kvmsim_vcpu_set_script(s.vcpu, &st, 1), -EINVAL);
	st.flags = KVMSIM_F_PRIVATE | KVMSIM_F_SHARED;
	ck_assert_int_eq(kvmsim_vcpu_set_script(s.vcpu, &st, 1), -EINVAL);
	st.flags = 0;
	st.op = 99;
	ck_assert_int_eq(kvmsim_vcpu_set_script(s.vcpu, &st, 1), -EINVAL);
	ck_assert_int_eq(kvmsim_vcpu_set_script(s.vm, &st, 0), -EBADF);
	ck_assert_int_eq(kvmsim_vcpu_set_script(s.vcpu, NULL, 0), 0);
	RUN_EXPECT(&s, 0, 0, x86 ? KVM_EXIT_SHUTDOWN : KVM_EXIT_SYSTEM_EVENT);
}
END_TEST

START_TEST(config_and_env)
{
	struct kvmsim_config cfg = { 3, KVMSIM_LEVEL_7_2, 0 };
	struct sim s;

	ck_assert_int_eq(kvmsim_reset(&cfg), -EINVAL);
	cfg.arch = KVMSIM_ARM64;
	cfg.level = 700;
	ck_assert_int_eq(kvmsim_reset(&cfg), -EINVAL);
	cfg.level = KVMSIM_LEVEL_6_8;
	cfg.quirks = 1u << 6;
	ck_assert_int_eq(kvmsim_reset(&cfg), -EINVAL);
	ck_assert_uint_eq(kvmsim_default_quirks(9, KVMSIM_LEVEL_7_2), 0);
	/* the defaults documented in kvmsim.h */
	ck_assert_uint_eq(
		kvmsim_default_quirks(KVMSIM_X86_64, KVMSIM_LEVEL_6_1),
		KVMSIM_Q_STALE_EXIT_ON_IE);
	ck_assert_uint_eq(
		kvmsim_default_quirks(KVMSIM_X86_64, KVMSIM_LEVEL_7_2),
		KVMSIM_Q_STALE_EXIT_ON_IE | KVMSIM_Q_GMEM_ERRNO);
	ck_assert_uint_eq(
		kvmsim_default_quirks(KVMSIM_ARM64, KVMSIM_LEVEL_7_2_UF),
		KVMSIM_Q_STALE_EXIT_ON_IE | KVMSIM_Q_GMEM_ERRNO |
			KVMSIM_Q_MMIO_READBACK | KVMSIM_Q_NO_MFI_CAP |
			KVMSIM_Q_ARM64_VNCR_RET0);

	/* the environment, as LD_PRELOAD users set it */
	setenv("KVMSIM_ARCH", "arm64", 1);
	setenv("KVMSIM_LEVEL", "7.2-uf", 1);
	setenv("KVMSIM_QUIRKS", "0x8", 1);
	setenv("KVMSIM_SCRIPT", "mmio_write:0x1000:4:0x1234;mmio_read:0x1000:4",
	       1);
	ck_assert_int_eq(kvmsim_reset(NULL), 0);
	ck_assert_int_eq(kvmsim_get_config(&cfg), 0);
	ck_assert_uint_eq(cfg.arch, KVMSIM_ARM64);
	ck_assert_uint_eq(cfg.level, KVMSIM_LEVEL_7_2_UF);
	ck_assert_uint_eq(cfg.quirks, KVMSIM_Q_MMIO_READBACK);
	memset(&s, 0, sizeof(s));
	s.kvm = open_kvm();
	s.vm = ioctl(s.kvm, KVM_CREATE_VM, 0ul);
	s.page = (uint64_t)sysconf(_SC_PAGESIZE);
	add_vcpu(&s, 0);
	ck_assert_uint_eq(s.run_size, 2 * s.page); /* arm64 */
	/* every vCPU gets the script */
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	ck_assert_uint_eq(s.run->mmio.data[0], 0x34);
	add_vcpu(&s, 1);
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	ck_assert_uint_eq(s.run->mmio.is_write, 1);
	unsetenv("KVMSIM_QUIRKS");
	unsetenv("KVMSIM_SCRIPT");
	ck_assert_int_eq(kvmsim_reset(NULL), 0);
	ck_assert_int_eq(kvmsim_get_config(&cfg), 0);
	ck_assert_uint_eq(
		cfg.quirks,
		kvmsim_default_quirks(KVMSIM_ARM64, KVMSIM_LEVEL_7_2_UF));
	setenv("KVMSIM_ARCH", "sparc", 1);
	ck_assert_int_eq(kvmsim_reset(NULL), -EINVAL);
	setenv("KVMSIM_ARCH", "x86", 1);
	setenv("KVMSIM_LEVEL", "5.4", 1);
	ck_assert_int_eq(kvmsim_reset(NULL), -EINVAL);
	setenv("KVMSIM_LEVEL", "6.1", 1);
	setenv("KVMSIM_QUIRKS", "zz", 1);
	ck_assert_int_eq(kvmsim_reset(NULL), -EINVAL);
	setenv("KVMSIM_QUIRKS", "40", 1);
	ck_assert_int_eq(kvmsim_reset(NULL), -EINVAL);
	unsetenv("KVMSIM_QUIRKS");
	setenv("KVMSIM_SCRIPT", "hlt;jump", 1);
	ck_assert_int_eq(kvmsim_reset(NULL), -EINVAL);
	setenv("KVMSIM_ARCH", "arm64", 1);
	setenv("KVMSIM_SCRIPT", "hlt", 1); /* x86-only step */
	ck_assert_int_eq(kvmsim_reset(NULL), -EINVAL);
	unsetenv("KVMSIM_SCRIPT");
	ck_assert_int_eq(kvmsim_reset(NULL), 0);
	ck_assert_int_eq(kvmsim_get_config(&cfg), 0);
	ck_assert_uint_eq(cfg.level, KVMSIM_LEVEL_6_1);
	unsetenv("KVMSIM_ARCH");
	unsetenv("KVMSIM_LEVEL");
}
END_TEST

START_TEST(stats_counts)
{
	struct kvmsim_stats st;
	struct sim s;

	start(&s, KVMSIM_X86_64, KVMSIM_LEVEL_7_2);
	script(&s, "out:0x80:1:1;hlt;load:0x900000:1:private");
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_IO);
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_HLT);
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	st = stats();
	ck_assert_uint_eq(st.runs, 3);
	ck_assert_uint_eq(st.run_errors, 1);
	ck_assert_uint_eq(st.exits[KVM_EXIT_IO], 1);
	ck_assert_uint_eq(st.exits[KVM_EXIT_HLT], 1);
	ck_assert_uint_eq(st.exits[KVM_EXIT_MEMORY_FAULT], 1);
	ck_assert_uint_eq(st.memory_faults, 1);
	ck_assert_uint_eq(st.completions, 2);
	ck_assert_int_eq(kvmsim_get_stats(NULL), -EINVAL);
	reset(KVMSIM_X86_64, KVMSIM_LEVEL_7_2);
	ck_assert_uint_eq(stats().runs, 0);
}
END_TEST

static Suite *
kvmsim_suite(void)
{
	Suite *s = suite_create("kvmsim");
	TCase *tc;

	tc = tcase_create("caps");
	tcase_add_loop_test(tc, caps_per_arch_and_level, 0, 8);
	tcase_add_loop_test(tc, caps_sw_protected_vm, 0, 2);
	tcase_add_test(tc, vm_types);
	tcase_add_test(tc, caps_arm64_mfi_quirk_off);
	tcase_add_loop_test(tc, ioctls_per_level, 0, 8);
	suite_add_tcase(s, tc);

	tc = tcase_create("memslots");
	tcase_add_loop_test(tc, memslot_validation, 0, 8);
	tcase_add_loop_test(tc, gmem_validation, 0, 2);
	tcase_add_loop_test(tc, gmem_userfault_toggle, 0, 2);
	suite_add_tcase(s, tc);

	tc = tcase_create("guest");
	tcase_add_loop_test(tc, basic_guest, 0, 8);
	tcase_add_loop_test(tc, stores_readonly_noslot, 0, 8);
	tcase_add_loop_test(tc, badhva, 0, 8);
	suite_add_tcase(s, tc);

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

	tc = tcase_create("userfault");
	tcase_add_loop_test(tc, userfault_bitmap, 0, 2);
	tcase_add_loop_test(tc, userfault_bitmap_unreadable, 0, 2);
	tcase_add_test(tc, userfault_paths);
	tcase_add_loop_test(tc, userfault_rearm, 0, 2);
	tcase_add_loop_test(tc, userfault_rearm_gmem, 0, 2);
	suite_add_tcase(s, tc);

	tc = tcase_create("entry");
	tcase_add_loop_test(tc, immediate_exit_stale, 0, 8);
	tcase_add_loop_test(tc, mmio_readback, 0, 8);
	tcase_add_loop_test(tc, signal_during_spin, 0, 2);
	tcase_add_loop_test(tc, signal_pending_and_sigmask, 0, 2);
	suite_add_tcase(s, tc);

	tc = tcase_create("fds");
	tcase_add_loop_test(tc, closed_fds, 0, 2);
	tcase_add_test(tc, interposition);
	suite_add_tcase(s, tc);

	tc = tcase_create("control");
	tcase_add_test(tc, script_text);
	tcase_add_loop_test(tc, script_validation, 0, 2);
	tcase_add_test(tc, config_and_env);
	tcase_add_test(tc, stats_counts);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tc_run(kvmsim_suite());
}
