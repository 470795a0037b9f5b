/* SPDX-License-Identifier: MIT */
/*
 * minimal-vmm.c - the smallest VMM that shows what libmemfault is for.
 *
 * It creates a VM with one vCPU and two memslots:
 *
 *   slot 0  64 KiB of RAM at GPA 0 that holds a real guest program;
 *   slot 1  one page backed by guest_memfd, at GPA 0x20000 (x86-64) or
 *           0x20000000 (arm64).
 *
 * The guest talks to a tiny device with five one-byte registers, at IO
 * ports 0xe0..0xe4 (x86-64) or MMIO addresses 0x10000000..0x10000004
 * (arm64). The guest:
 *
 *   1. writes 0x42 to HELLO;
 *   2. reads DATA, for which the VMM supplies 0x5a, and writes the value
 *      back to ECHO, so the VMM can check the round trip;
 *   3. loads a byte from the guest_memfd page. Just before that, the VMM
 *      closed the guest_memfd, so KVM cannot fault the page in: KVM_RUN
 *      fails with EFAULT and exit reason KVM_EXIT_MEMORY_FAULT (39), which
 *      libmemfault reports as MEMFAULT_RUN_MEMORY_FAULT with the address.
 *      The VMM resolves the fault by replacing the memslot with ordinary
 *      memory that holds 0xc3, and runs the vCPU again, which retries the
 *      load. (Where KVM emulates the guest's instructions, it reports the
 *      load as MMIO instead; the VMM resolves that the same way.)
 *   4. writes the loaded byte to RESULT (the VMM checks that it is 0xc3),
 *      then halts (x86-64) or writes DONE (arm64).
 *
 * The exit status is 0 only if every check passed.
 *
 * Usage:
 *   minimal-vmm                      on a host with /dev/kvm
 *   LD_PRELOAD=build/tests/sim/libkvmsim.so minimal-vmm [--arch arm64|x86_64]
 *                                    on the KVM simulator of the test suite
 *
 * The simulator runs no machine code. It runs a script of guest steps
 * instead (see tests/sim/kvmsim.h). Each instruction of the guest programs
 * below shares a table row with the script step it amounts to, so the
 * program and the script cannot drift apart.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_DEFAULT */
#endif

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvm.h> /* the project's copy of the Linux 7.2 uapi */
#include <memfault/memfault.h>

/* ---- Guest memory layout -------------------------------------------- */

#define RAM_SLOT 0
#define RAM_GPA 0x0
#define RAM_SIZE 0x10000 /* 64 KiB: a multiple of every host page size */
#define PAGE_SLOT 1      /* the guest_memfd page, later ordinary memory */

/* ---- The guest's device ---------------------------------------------- */

/* Register offsets from the device's base port (x86-64) or gpa (arm64). */
enum dev_reg {
	DEV_HELLO,  /* written: HELLO_BYTE, the guest is running */
	DEV_DATA,   /* read: the VMM supplies DATA_BYTE */
	DEV_ECHO,   /* written: what the guest read from DEV_DATA */
	DEV_RESULT, /* written: the byte the guest loaded from the page */
	DEV_DONE,   /* written last on arm64 (x86-64 halts instead) */
	DEV_NR_REGS,
};

#define HELLO_BYTE 0x42 /* the guest's greeting */
#define DATA_BYTE 0x5a  /* what the VMM supplies for DEV_DATA */
#define STALE_BYTE 0xee /* guest_memfd contents: the guest must not see them */
#define PAGE_BYTE 0xc3  /* contents of the page that replaces the guest_memfd */

/* ---- The guest programs, with the simulator's script beside them ------- */

/* One instruction of a guest program. */
struct guest_insn {
	uint8_t code[4];  /* machine code, in memory order */
	uint8_t len;      /* bytes used in code[] */
	const char *step; /* the same for the simulator (tests/sim/kvmsim.h),
			   * or NULL if the instruction has no effect that can
			   * be seen from outside the vCPU */
};

/* x86 instructions, byte by byte, as `as` encodes them. */
#define X86(...) { __VA_ARGS__ }, sizeof((const uint8_t[]){ __VA_ARGS__ })
/* arm64 instructions, one 32-bit little-endian word each. */
#define A64(w)                                                                 \
	{ (w) & 0xff, ((w) >> 8) & 0xff, ((w) >> 16) & 0xff, (w) >> 24 }, 4

/*
 * x86-64: 16-bit real mode, loaded and started at GPA 0x1000 (CS base 0).
 * Assembled with `as` (.code16); `objdump -d -m i8086` shows the bytes.
 */
static const struct guest_insn x86_program[] = {
	/* mov  $0x42, %al */
	{ X86(0xb0, 0x42), NULL },
	/* out  %al, $0xe0              HELLO */
	{ X86(0xe6, 0xe0), "out:0xe0:1:0x42" },
	/* in   $0xe1, %al              DATA */
	{ X86(0xe4, 0xe1), "in:0xe1:1" },
	/* out  %al, $0xe2              ECHO */
	{ X86(0xe6, 0xe2), "out:0xe2:1:acc" },
	/* mov  $0x2000, %ax */
	{ X86(0xb8, 0x00, 0x20), NULL },
	/* mov  %ax, %ds                DS base 0x20000: the page */
	{ X86(0x8e, 0xd8), NULL },
	/* mov  0, %al                  load from GPA 0x20000 */
	{ X86(0xa0, 0x00, 0x00), "load:0x20000:1" },
	/* out  %al, $0xe3              RESULT */
	{ X86(0xe6, 0xe3), "out:0xe3:1:acc" },
	/* 1: hlt                       KVM_EXIT_HLT */
	{ X86(0xf4), "hlt" },
	/* jmp  1b */
	{ X86(0xeb, 0xfd), NULL },
};

/*
 * arm64: EL1 with the MMU off, loaded and started at GPA 0. Assembled with
 * `aarch64-linux-gnu-as`; `aarch64-linux-gnu-objdump -d` shows the words.
 */
static const struct guest_insn arm64_program[] = {
	/* movz x0, #0x1000, lsl #16    x0 = 0x10000000: the device */
	{ A64(0xd2a20000), NULL },
	/* mov  w1, #0x42 */
	{ A64(0x52800841), NULL },
	/* strb w1, [x0]                HELLO */
	{ A64(0x39000001), "mmio_write:0x10000000:1:0x42" },
	/* ldrb w2, [x0, #1]            DATA */
	{ A64(0x39400402), "mmio_read:0x10000001:1" },
	/* strb w2, [x0, #2]            ECHO */
	{ A64(0x39000802), "mmio_write:0x10000002:1:acc" },
	/* movz x3, #0x2000, lsl #16    x3 = 0x20000000: the page */
	{ A64(0xd2a40003), NULL },
	/* ldrb w4, [x3]                load from GPA 0x20000000 */
	{ A64(0x39400064), "load:0x20000000:1" },
	/* strb w4, [x0, #3]            RESULT */
	{ A64(0x39000c04), "mmio_write:0x10000003:1:acc" },
	/* strb w1, [x0, #4]            DONE */
	{ A64(0x39001001), "mmio_write:0x10000004:1:0x42" },
	/* 1: b 1b */
	{ A64(0x14000000), NULL },
};

/* ---- Per-architecture vCPU setup --------------------------------------
 *
 * Register layouts differ between architectures, so each setup function is
 * built only for its own host. A VMM only ever runs guests of its host's
 * architecture on real KVM; the simulator can model the other one, and
 * then the setup is left to it.
 */
#define X86_CODE_GPA 0x1000
#define ARM64_CODE_GPA 0x0

#if defined(__x86_64__)
#define HOST_ARCH MEMFAULT_ARCH_X86_64

/* Start in real mode with CS base 0 and IP X86_CODE_GPA. */
static int
x86_setup_vcpu(int vm_fd, int vcpu_fd)
{
	struct kvm_regs regs = {
		.rip = X86_CODE_GPA,
		.rflags = 0x2, /* bit 1 is reserved and always set */
	};
	struct kvm_sregs sregs;

	/* Intel VMX runs real mode through a TSS: 3 pages outside the RAM. */
	if (ioctl(vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000ul) < 0)
		return -errno;
	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return 0;
}
#define x86_setup x86_setup_vcpu
#define arm64_setup NULL

#elif defined(__aarch64__)
#define HOST_ARCH MEMFAULT_ARCH_ARM64

static int
arm64_set_core_reg(int vcpu_fd, uint64_t id, uint64_t value)
{
	struct kvm_one_reg reg = {
		.id = KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | id,
		.addr = (uintptr_t)&value,
	};

	return ioctl(vcpu_fd, KVM_SET_ONE_REG, &reg) < 0 ? -errno : 0;
}

/* Start at EL1 (SP_EL1, interrupts masked) with PC at ARM64_CODE_GPA. */
static int
arm64_setup_vcpu(int vm_fd, int vcpu_fd)
{
	struct kvm_vcpu_init init;
	int r;

	if (ioctl(vm_fd, KVM_ARM_PREFERRED_TARGET, &init) < 0)
		return -errno;
	if (ioctl(vcpu_fd, KVM_ARM_VCPU_INIT, &init) < 0)
		return -errno;
	r = arm64_set_core_reg(vcpu_fd, KVM_REG_ARM_CORE_REG(regs.pstate),
			       PSR_MODE_EL1h | PSR_D_BIT | PSR_A_BIT |
				       PSR_I_BIT | PSR_F_BIT);
	if (r)
		return r;
	return arm64_set_core_reg(vcpu_fd, KVM_REG_ARM_CORE_REG(regs.pc),
				  ARM64_CODE_GPA);
}
#define x86_setup NULL
#define arm64_setup arm64_setup_vcpu

#else
#error "minimal-vmm supports x86-64 and arm64 hosts"
#endif

/* What the VMM knows about the guest of one architecture. */
struct guest {
	uint32_t arch;    /* enum memfault_arch */
	const char *name; /* as --arch and KVMSIM_ARCH spell it */
	const char *mode; /* how the program runs */
	const struct guest_insn *program;
	size_t program_len;
	uint64_t code_gpa; /* where the program is loaded and starts */
	uint64_t page_gpa; /* the guest_memfd page (slot PAGE_SLOT) */
	uint32_t dev_exit; /* how the device is reached: KVM_EXIT_IO or _MMIO */
	uint64_t dev_base; /* port or gpa of DEV_HELLO */
	/* Point the vCPU at code_gpa; NULL where this build cannot. */
	int (*setup_vcpu)(int vm_fd, int vcpu_fd);
};

static const struct guest guests[] = {
	{
		.arch = MEMFAULT_ARCH_X86_64,
		.name = "x86_64",
		.mode = "16-bit real mode",
		.program = x86_program,
		.program_len = sizeof(x86_program) / sizeof(x86_program[0]),
		.code_gpa = X86_CODE_GPA,
		.page_gpa = 0x20000,
		.dev_exit = KVM_EXIT_IO,
		.dev_base = 0xe0,
		.setup_vcpu = x86_setup,
	},
	{
		.arch = MEMFAULT_ARCH_ARM64,
		.name = "arm64",
		.mode = "EL1, MMU off",
		.program = arm64_program,
		.program_len = sizeof(arm64_program) / sizeof(arm64_program[0]),
		.code_gpa = ARM64_CODE_GPA,
		.page_gpa = 0x20000000,
		.dev_exit = KVM_EXIT_MMIO,
		.dev_base = 0x10000000,
		.setup_vcpu = arm64_setup,
	},
};

/* ---- The VMM's state ----------------------------------------------- */

struct vmm {
	const struct guest *guest;
	/* kvmsim_vcpu_set_script_text() when running on the simulator */
	int (*sim_set_script)(int vcpu_fd, const char *text);
	size_t page_size;
	int kvm_fd;
	struct memfault_vm *vm;     /* owns the VM fd */
	struct memfault_vcpu *vcpu; /* owns the vCPU fd and its kvm_run */
	bool have_region2;          /* KVM_SET_USER_MEMORY_REGION2 exists */
	uint8_t *ram;               /* slot RAM_SLOT */
	int gmem_fd;                /* slot PAGE_SLOT's guest_memfd, or -1 */
	uint8_t *gmem_map;          /* its mapping, or NULL */
	uint8_t *page;              /* slot PAGE_SLOT's ordinary memory, or NULL */
	enum {
		PAGE_GMEM,     /* slot PAGE_SLOT is the guest_memfd */
		PAGE_GONE,     /* the VMM closed it: the slot has no memory */
		PAGE_ORDINARY, /* ordinary memory holding PAGE_BYTE */
	} page_state;
	bool expect_fault;          /* slot PAGE_SLOT started as guest_memfd */
	const char *reported_as;    /* how KVM reported the load from PAGE_GONE */
	bool done;                  /* the guest finished */
	unsigned checks_passed, checks_failed;
};

/* Print the outcome of one check and count it. */
__attribute__((format(printf, 3, 4))) static void
check(struct vmm *v, bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("       check: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(": %s\n", ok ? "ok" : "FAILED");
	if (ok)
		v->checks_passed++;
	else
		v->checks_failed++;
}

/* Say what failed and pass its negative errno on. */
static int
fail(const char *what, int r)
{
	printf("error: %s: %s\n", what, strerror(-r));
	return r;
}

/* ---- Memslots ---------------------------------------------------- */

/*
 * Add a memslot (size > 0) or delete one (size 0). With gmem_fd >= 0 the
 * guest's memory comes from that guest_memfd (which needs
 * KVM_SET_USER_MEMORY_REGION2); hva should then be the guest_memfd's own
 * mapping, where KVM itself reads and writes it.
 */
static int
set_memslot(const struct vmm *v, uint32_t slot, uint64_t gpa, uint64_t size,
	    void *hva, int gmem_fd)
{
	int vm_fd = memfault_vm_get_fd(v->vm);

	if (v->have_region2) {
		struct kvm_userspace_memory_region2 region = {
			.slot = slot,
			.flags = gmem_fd >= 0 ? KVM_MEM_GUEST_MEMFD : 0,
			.guest_phys_addr = gpa,
			.memory_size = size,
			.userspace_addr = (uintptr_t)hva,
			.guest_memfd_offset = 0,
			.guest_memfd = gmem_fd >= 0 ? (uint32_t)gmem_fd : 0,
		};

		return ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION2, &region) < 0 ?
			       -errno : 0;
	} else {
		struct kvm_userspace_memory_region region = {
			.slot = slot,
			.guest_phys_addr = gpa,
			.memory_size = size,
			.userspace_addr = (uintptr_t)hva,
		};

		if (gmem_fd >= 0)
			return -EOPNOTSUPP;
		return ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0 ?
			       -errno : 0;
	}
}

/* Anonymous memory filled with @byte, or NULL (errno set). */
static uint8_t *
map_filled(size_t size, int byte)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	memset(p, byte, size);
	return p;
}

/* Slot RAM_SLOT: the RAM, with the guest program copied to code_gpa. */
static int
add_ram(struct vmm *v)
{
	const struct guest *g = v->guest;
	size_t i, len = 0;
	uint8_t *code;
	int r;

	v->ram = map_filled(RAM_SIZE, 0);
	if (!v->ram)
		return -errno;
	code = v->ram + (g->code_gpa - RAM_GPA);
	for (i = 0; i < g->program_len; i++) {
		memcpy(code + len, g->program[i].code, g->program[i].len);
		len += g->program[i].len;
	}
	r = set_memslot(v, RAM_SLOT, RAM_GPA, RAM_SIZE, v->ram, -1);
	if (r)
		return r;
	printf("memslot %d: %d KiB of RAM at GPA %#x; a %zu-byte %s program at %#" PRIx64 " (%s)\n",
	       RAM_SLOT, RAM_SIZE / 1024, RAM_GPA, len, g->name, g->code_gpa,
	       g->mode);
	return 0;
}

/*
 * Slot PAGE_SLOT: one page of guest_memfd. It must be mmap()able: only then
 * do the guest's accesses in an ordinary (not confidential) VM go to it.
 * Where the kernel has no such guest_memfd, the page is ordinary memory
 * from the start and no memory fault is to be expected.
 */
static int
add_page(struct vmm *v, const struct memfault_features *f)
{
	const uint64_t mmap_flags = GUEST_MEMFD_FLAG_MMAP |
				    GUEST_MEMFD_FLAG_INIT_SHARED;
	struct kvm_create_guest_memfd create = {
		.size = v->page_size,
		.flags = f->guest_memfd_flags & mmap_flags,
	};
	uint64_t gpa = v->guest->page_gpa;
	void *map;
	int r;

	if (!(f->flags & MEMFAULT_FEATURE_GUEST_MEMFD) ||
	    !(f->guest_memfd_flags & GUEST_MEMFD_FLAG_MMAP)) {
		printf("memslot %d: this kernel has no mmap()able guest_memfd, so the page is ordinary memory\n"
		       "            holding %#x and the guest's load cannot fault\n",
		       PAGE_SLOT, PAGE_BYTE);
		v->page = map_filled(v->page_size, PAGE_BYTE);
		if (!v->page)
			return -errno;
		v->page_state = PAGE_ORDINARY;
		return set_memslot(v, PAGE_SLOT, gpa, v->page_size, v->page, -1);
	}

	v->gmem_fd = ioctl(memfault_vm_get_fd(v->vm), KVM_CREATE_GUEST_MEMFD,
			   &create);
	if (v->gmem_fd < 0)
		return -errno;
	map = mmap(NULL, v->page_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		   v->gmem_fd, 0);
	if (map == MAP_FAILED)
		return -errno;
	v->gmem_map = map;
	memset(v->gmem_map, STALE_BYTE, v->page_size);
	r = set_memslot(v, PAGE_SLOT, gpa, v->page_size, v->gmem_map,
			v->gmem_fd);
	if (r)
		return r;
	v->page_state = PAGE_GMEM;
	v->expect_fault = true;
	printf("memslot %d: one guest_memfd page at GPA %#" PRIx64 " (guest_memfd flags %#" PRIx64 "), holding %#x\n",
	       PAGE_SLOT, gpa, (uint64_t)create.flags, STALE_BYTE);
	return 0;
}

/*
 * Take the guest_memfd away from under slot PAGE_SLOT, as a VMM that
 * released its memory too early would. The last close of a guest_memfd
 * unbinds it from its memslots, so KVM can no longer fault the page in;
 * the mapping holds a reference too, so it goes first.
 */
static void
drop_guest_memfd(struct vmm *v)
{
	munmap(v->gmem_map, v->page_size);
	v->gmem_map = NULL;
	close(v->gmem_fd);
	v->gmem_fd = -1;
	v->page_state = PAGE_GONE;
	printf("       VMM: unmapped and closed the guest_memfd: memslot %d has no memory now\n",
	       PAGE_SLOT);
}

/* ---- Exits ------------------------------------------------------- */

#define EXIT_NAME(reason) [reason] = #reason

static const char *
exit_name(uint32_t reason)
{
	static const char *const names[] = {
		EXIT_NAME(KVM_EXIT_UNKNOWN),
		EXIT_NAME(KVM_EXIT_IO),
		EXIT_NAME(KVM_EXIT_HLT),
		EXIT_NAME(KVM_EXIT_MMIO),
		EXIT_NAME(KVM_EXIT_SHUTDOWN),
		EXIT_NAME(KVM_EXIT_FAIL_ENTRY),
		EXIT_NAME(KVM_EXIT_INTR),
		EXIT_NAME(KVM_EXIT_INTERNAL_ERROR),
		EXIT_NAME(KVM_EXIT_SYSTEM_EVENT),
		EXIT_NAME(KVM_EXIT_MEMORY_FAULT),
	};

	if (reason < sizeof(names) / sizeof(names[0]) && names[reason])
		return names[reason];
	return "another exit";
}

/*
 * Give the guest memory again where the VMM took it away. A memslot created
 * with KVM_MEM_GUEST_MEMFD cannot be changed, only deleted: delete it and
 * add an ordinary one with known contents at the same GPA.
 */
static int
replace_page(struct vmm *v)
{
	uint64_t gpa = v->guest->page_gpa;
	int r;

	r = set_memslot(v, PAGE_SLOT, gpa, 0, NULL, -1);
	if (r)
		return fail("deleting the guest_memfd memslot", r);
	v->page = map_filled(v->page_size, PAGE_BYTE);
	if (!v->page)
		return fail("mmap", -errno);
	r = set_memslot(v, PAGE_SLOT, gpa, v->page_size, v->page, -1);
	if (r)
		return fail("adding the replacement memslot", r);
	v->page_state = PAGE_ORDINARY;
	printf("       VMM: replaced memslot %d by ordinary memory holding %#x; running the vCPU again\n",
	       PAGE_SLOT, PAGE_BYTE);
	return 0;
}

/* MEMFAULT_RUN_MEMORY_FAULT: resolve it if it is the page the VMM took away. */
static int
resolve_fault(struct vmm *v, const struct memfault_fault *f)
{
	uint64_t gpa = v->guest->page_gpa;
	bool ours = f->gpa <= gpa && gpa - f->gpa < f->size &&
		    v->page_state == PAGE_GONE;

	check(v, ours,
	      "the fault covers GPA %#" PRIx64 ", whose memory the VMM took away",
	      gpa);
	if (!ours)
		return -EFAULT; /* not a fault this VMM can resolve */
	v->reported_as = "as a memory fault";
	return replace_page(v);
}

/*
 * An MMIO exit inside the page the VMM took away. Where KVM runs guest code
 * in its instruction emulator (real mode on hosts without "unrestricted
 * guest", or a software backend such as PVM), the emulator reaches guest
 * memory through the memslot's userspace address, not through guest_memfd:
 * with that unmapped, it reports the access as MMIO instead of a memory
 * fault. The VMM resolves it the same way, then completes the access on the
 * new page, since the emulator finishes the instruction with mmio.data.
 */
static int
resolve_emulated_access(struct vmm *v, struct kvm_run *run)
{
	uint64_t off = run->mmio.phys_addr - v->guest->page_gpa;
	int r;

	if (run->mmio.len > sizeof(run->mmio.data) ||
	    off + run->mmio.len > v->page_size)
		return -EPROTO;
	printf("       note: KVM's instruction emulator reports the access to the page the VMM took away as MMIO\n");
	v->reported_as = "as MMIO, by KVM's instruction emulator";
	r = replace_page(v);
	if (r)
		return r;
	if (run->mmio.is_write)
		memcpy(v->page + off, run->mmio.data, run->mmio.len);
	else
		memcpy(run->mmio.data, v->page + off, run->mmio.len);
	return 0;
}

/*
 * One access by the guest to its device, from an IO or MMIO exit. For a
 * read, the VMM fills in @data; KVM hands it to the guest on the next
 * KVM_RUN.
 */
static int
device_access(struct vmm *v, uint32_t exit_reason, uint64_t addr, bool write,
	      uint32_t len, uint8_t *data)
{
	uint64_t reg = addr - v->guest->dev_base;

	if (exit_reason != v->guest->dev_exit || reg >= DEV_NR_REGS ||
	    len != 1 || write != (reg != DEV_DATA)) {
		printf("       unexpected %s of %u byte(s) at %#" PRIx64 "\n",
		       write ? "write" : "read", len, addr);
		return -EPROTO;
	}

	switch (reg) {
	case DEV_HELLO:
		check(v, data[0] == HELLO_BYTE, "HELLO: the guest wrote %#x",
		      data[0]);
		break;
	case DEV_DATA:
		data[0] = DATA_BYTE;
		printf("       DATA: the VMM supplies %#x\n", DATA_BYTE);
		break;
	case DEV_ECHO:
		check(v, data[0] == DATA_BYTE,
		      "ECHO: the guest wrote back %#x, the VMM supplied %#x",
		      data[0], DATA_BYTE);
		/* The guest's next step is the load from the page. */
		if (v->page_state == PAGE_GMEM)
			drop_guest_memfd(v);
		break;
	case DEV_RESULT:
		check(v, data[0] == PAGE_BYTE,
		      "RESULT: the guest loaded %#x from GPA %#" PRIx64 ", the VMM's page holds %#x",
		      data[0], v->guest->page_gpa, PAGE_BYTE);
		break;
	case DEV_DONE:
		printf("       DONE: the guest has finished\n");
		v->done = true;
		break;
	}
	return 0;
}

/* MEMFAULT_RUN_EXIT: an ordinary exit, read from kvm_run. */
static int
handle_exit(struct vmm *v, struct kvm_run *run)
{
	uint8_t *data;
	bool write;

	printf("exit %u (%s)", run->exit_reason, exit_name(run->exit_reason));
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		write = run->io.direction == KVM_EXIT_IO_OUT;
		data = (uint8_t *)run + run->io.data_offset;
		printf(": %s port %#x, %u byte(s)", write ? "out to" : "in from",
		       run->io.port, run->io.size);
		if (write)
			printf(", data %#x", data[0]);
		printf("\n");
		if (run->io.count != 1) {
			printf("       unexpected string IO (count %u)\n",
			       run->io.count);
			return -EPROTO;
		}
		return device_access(v, KVM_EXIT_IO, run->io.port, write,
				     run->io.size, data);
	case KVM_EXIT_MMIO:
		write = run->mmio.is_write;
		data = run->mmio.data;
		printf(": %s %#llx, %u byte(s)", write ? "write to" : "read from",
		       (unsigned long long)run->mmio.phys_addr, run->mmio.len);
		if (write)
			printf(", data %#x", data[0]);
		printf("\n");
		if (v->page_state == PAGE_GONE &&
		    run->mmio.phys_addr - v->guest->page_gpa < v->page_size)
			return resolve_emulated_access(v, run);
		return device_access(v, KVM_EXIT_MMIO, run->mmio.phys_addr,
				     write, run->mmio.len, data);
	case KVM_EXIT_HLT:
		printf(": the guest has finished\n");
		v->done = true;
		return 0;
	default:
		printf(": not expected from this guest\n");
		return -EPROTO;
	}
}

/* Print a memory fault with its flags and origin spelled out. */
static void
print_fault(const struct memfault_fault *f)
{
	static const struct {
		uint64_t flag;
		const char *name;
	} flag_names[] = {
		{ MEMFAULT_FAULT_PRIVATE, "private" },
		{ MEMFAULT_FAULT_USERFAULT, "userfault" },
		{ MEMFAULT_FAULT_HWPOISON, "hwpoison" },
		{ MEMFAULT_FAULT_UNKNOWN, "unknown-kernel-flags" },
		{ MEMFAULT_FAULT_SIZE_ZERO, "size-zero" },
		{ MEMFAULT_FAULT_UNALIGNED, "unaligned" },
		{ MEMFAULT_FAULT_OVERFLOW, "overflow" },
	};
	const char *origin;
	size_t i;

	switch (f->origin) {
	case MEMFAULT_ORIGIN_ERRNO:
		origin = "KVM_RUN failed with EFAULT or EHWPOISON, as documented";
		break;
	case MEMFAULT_ORIGIN_RET0:
		origin = "KVM_RUN returned 0 (arm64 nested VNCR path)";
		break;
	case MEMFAULT_ORIGIN_OTHER_ERRNO:
		origin = "KVM_RUN failed with another errno (a guest_memfd error)";
		break;
	default:
		origin = "unknown";
		break;
	}

	printf("memory fault: gpa %#" PRIx64 ", size %#" PRIx64 "\n",
	       f->gpa, f->size);
	printf("       flags:");
	if (!f->flags)
		printf(" none");
	for (i = 0; i < sizeof(flag_names) / sizeof(flag_names[0]); i++)
		if (f->flags & flag_names[i].flag)
			printf(" %s", flag_names[i].name);
	printf(" (kernel flags %#" PRIx64 ")\n", f->kernel_flags);
	printf("       error: %d (%s)\n", f->error,
	       f->error ? strerror(-f->error) : "none");
	printf("       origin: %s\n", origin);
}

/* Run the vCPU until the guest finishes, handling what each run returns. */
static int
run_guest(struct vmm *v)
{
	struct memfault_fault fault;
	struct kvm_run *run;
	unsigned n;
	int r;

	r = memfault_vcpu_get_run(v->vcpu, &run);
	if (r)
		return fail("memfault_vcpu_get_run", r);
	for (n = 1; !v->done; n++) {
		if (n > 16)
			return fail("the guest did not finish in 16 runs",
				    -ETIMEDOUT);
		r = memfault_vcpu_run(v->vcpu);
		printf("run %u: ", n);
		switch (r) {
		case MEMFAULT_RUN_EXIT:
			r = handle_exit(v, run);
			break;
		case MEMFAULT_RUN_MEMORY_FAULT:
			r = memfault_vcpu_get_fault(v->vcpu, &fault, sizeof(fault));
			if (r) {
				fail("memfault_vcpu_get_fault", r);
				break;
			}
			print_fault(&fault);
			r = resolve_fault(v, &fault);
			break;
		case MEMFAULT_RUN_INTERRUPTED:
			printf("interrupted by a signal; running again\n");
			r = 0;
			break;
		case MEMFAULT_RUN_RETRY:
			printf("KVM asked to be called again\n");
			r = 0;
			break;
		default:
			fail("memfault_vcpu_run", r);
			break;
		}
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- Setup --------------------------------------------------------- */

static void
print_features(const struct memfault_features *f)
{
	static const struct {
		uint64_t flag;
		const char *name;
	} names[] = {
		{ MEMFAULT_FEATURE_USER_MEMORY2, "USER_MEMORY2" },
		{ MEMFAULT_FEATURE_MEMORY_FAULT_INFO, "MEMORY_FAULT_INFO" },
		{ MEMFAULT_FEATURE_MEMORY_FAULT_EXITS, "MEMORY_FAULT_EXITS" },
		{ MEMFAULT_FEATURE_MEMORY_ATTRIBUTES, "MEMORY_ATTRIBUTES" },
		{ MEMFAULT_FEATURE_GUEST_MEMFD, "GUEST_MEMFD" },
		{ MEMFAULT_FEATURE_GUEST_MEMFD_FLAGS, "GUEST_MEMFD_FLAGS" },
		{ MEMFAULT_FEATURE_KVM_USERFAULT, "KVM_USERFAULT" },
	};
	size_t i;

	printf("features:");
	if (!f->flags)
		printf(" none");
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (f->flags & names[i].flag)
			printf(" %s", names[i].name);
	printf("\n          guest_memfd flags %#" PRIx64 ", memory attributes %#" PRIx64 ", page size %" PRIu64 "\n",
	       f->guest_memfd_flags, f->memory_attributes, f->page_size);
}

/* The simulator's script: the step of every instruction that has one. */
static int
build_script(const struct guest *g, char *buf, size_t size)
{
	size_t i, used = 0;
	int n;

	buf[0] = '\0';
	for (i = 0; i < g->program_len; i++) {
		if (!g->program[i].step)
			continue;
		n = snprintf(buf + used, size - used, "%s%s", used ? ";" : "",
			     g->program[i].step);
		if (n < 0 || (size_t)n >= size - used)
			return -ENOSPC;
		used += (size_t)n;
	}
	return 0;
}

/*
 * The vCPU: registers on real KVM, the script on the simulator. The
 * simulator models no registers: there (and only there) the errno KVM
 * gives for an ioctl it does not know (ENOTTY, or EINVAL from
 * kvm_arch_vcpu_ioctl()) is expected.
 */
static int
setup_vcpu(struct vmm *v, int vm_fd, int vcpu_fd)
{
	const struct guest *g = v->guest;
	char script[512];
	int r;

	if (g->setup_vcpu) {
		r = g->setup_vcpu(vm_fd, vcpu_fd);
		if (v->sim_set_script && (r == -ENOTTY || r == -EINVAL)) {
			printf("vCPU: the simulator models no registers (%s); it runs the script instead\n",
			       strerror(-r));
			r = 0;
		}
		if (r)
			return r;
	}
	if (!v->sim_set_script)
		return 0;

	r = build_script(g, script, sizeof(script));
	if (r)
		return r;
	printf("vCPU: simulator script \"%s\"\n", script);
	return v->sim_set_script(vcpu_fd, script);
}

/* Everything between opening /dev/kvm and the first KVM_RUN. */
static int
setup(struct vmm *v)
{
	MEMFAULT_OPTS(memfault_vcpu_opts, vcpu_opts,
		.flags = MEMFAULT_VCPU_OWN_FD);
	struct memfault_features features;
	int vm_fd, vcpu_fd, r;

	v->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (v->kvm_fd < 0)
		return fail("open /dev/kvm", -errno);
	if (ioctl(v->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
		return fail("KVM_GET_API_VERSION", -EPROTO);
	MEMFAULT_OPTS(memfault_vm_opts, vm_opts,
		.flags = MEMFAULT_VM_OWN_FD,
		.kvm_fd = v->kvm_fd,     /* spares the library an open() */
		.arch = v->guest->arch); /* the simulator may model another */

	/* The VM, wrapped at once: the probed features guide the setup. */
	vm_fd = ioctl(v->kvm_fd, KVM_CREATE_VM, 0);
	if (vm_fd < 0)
		return fail("KVM_CREATE_VM", -errno);
	r = memfault_vm_new(vm_fd, &vm_opts, &v->vm);
	if (r) {
		close(vm_fd); /* not taken over on failure */
		return fail("memfault_vm_new", r);
	}
	r = memfault_vm_get_features(v->vm, &features, sizeof(features));
	if (r)
		return fail("memfault_vm_get_features", r);
	print_features(&features);
	v->have_region2 = features.flags & MEMFAULT_FEATURE_USER_MEMORY2;

	r = add_ram(v);
	if (r)
		return fail("the RAM memslot", r);
	r = add_page(v, &features);
	if (r)
		return fail("the guest_memfd memslot", r);

	vcpu_fd = ioctl(vm_fd, KVM_CREATE_VCPU, 0);
	if (vcpu_fd < 0)
		return fail("KVM_CREATE_VCPU", -errno);
	r = setup_vcpu(v, vm_fd, vcpu_fd);
	if (r) {
		close(vcpu_fd);
		return fail("setting up the vCPU", r);
	}
	r = memfault_vcpu_new(v->vm, vcpu_fd, &vcpu_opts, &v->vcpu);
	if (r) {
		close(vcpu_fd); /* not taken over on failure */
		return fail("memfault_vcpu_new", r);
	}
	return 0;
}

static void
teardown(struct vmm *v)
{
	memfault_vcpu_free(v->vcpu); /* closes the vCPU fd */
	memfault_vm_free(v->vm);     /* closes the VM fd */
	if (v->gmem_map)
		munmap(v->gmem_map, v->page_size);
	if (v->gmem_fd >= 0)
		close(v->gmem_fd);
	if (v->page)
		munmap(v->page, v->page_size);
	if (v->ram)
		munmap(v->ram, RAM_SIZE);
	if (v->kvm_fd >= 0)
		close(v->kvm_fd);
}

static const struct guest *
find_guest(uint32_t arch, const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(guests) / sizeof(guests[0]); i++)
		if (name ? !strcmp(guests[i].name, name) : guests[i].arch == arch)
			return &guests[i];
	return NULL;
}

int
main(int argc, char **argv)
{
	struct vmm v = { .kvm_fd = -1, .gmem_fd = -1 };
	const struct guest *host = find_guest(HOST_ARCH, NULL);
	void *sym;
	int r;

	if (argc == 3 && !strcmp(argv[1], "--arch"))
		v.guest = find_guest(0, argv[2]);
	else if (argc == 1)
		v.guest = host;
	if (!v.guest) {
		fprintf(stderr, "usage: %s [--arch x86_64|arm64]\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0); /* keep stdout and stderr in order */

	/*
	 * libkvmsim.so, when preloaded, stands in for /dev/kvm. POSIX lets
	 * dlsym()'s result be converted to a function pointer.
	 */
	sym = dlsym(RTLD_DEFAULT, "kvmsim_vcpu_set_script_text");
	v.sim_set_script = (int (*)(int, const char *))sym;
	if (v.sim_set_script) {
		printf("backend: KVM simulator (%s)\n",
		       access("/dev/kvm", F_OK) ? "no /dev/kvm on this machine" :
						   "preloaded; /dev/kvm is not used");
		/* The simulator reads its model when /dev/kvm is first opened. */
		if (setenv("KVMSIM_ARCH", v.guest->name, 1)) {
			perror("setenv");
			return 1;
		}
	} else {
		printf("backend: real KVM (/dev/kvm)\n");
		if (v.guest != host) {
			fprintf(stderr, "%s: real KVM runs %s guests only; --arch %s needs the simulator\n",
				argv[0], host->name, v.guest->name);
			return 2;
		}
	}
	if (!v.guest->setup_vcpu)
		printf("guest: %s (this %s build cannot set up %s registers; the simulator's script runs the guest)\n",
		       v.guest->name, host->name, v.guest->name);
	v.page_size = (size_t)sysconf(_SC_PAGESIZE);

	r = setup(&v);
	if (r == 0)
		r = run_guest(&v);
	if (r == 0 && v.expect_fault)
		check(&v, v.reported_as,
		      "KVM reported the load from the page the VMM took away (%s)",
		      v.reported_as ? v.reported_as : "it did not");
	teardown(&v);

	if (r < 0) {
		printf("result: FAILED: stopped on an error\n");
		return 1;
	}
	if (v.checks_failed) {
		printf("result: FAILED: %u of %u checks failed\n",
		       v.checks_failed, v.checks_passed + v.checks_failed);
		return 1;
	}
	printf("result: all %u checks passed\n", v.checks_passed);
	return 0;
}
