/* SPDX-License-Identifier: MIT */
/*
 * minimal-vmm.c - the smallest VMM that shows what libmemfault is for:
 * memfault_vcpu_run() turns every way KVM_RUN can end into one answer,
 * and a memory fault into an address the VMM can act on.
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
 *      load as MMIO instead; the VMM resolves that the same way.) Where
 *      KVM has no mmap()able guest_memfd, the page is ordinary memory from
 *      the start and nothing faults;
 *   4. writes the loaded byte to RESULT (the VMM checks that it is 0xc3),
 *      then halts (x86-64) or writes DONE (arm64).
 *
 * The exit status is 0 only if every check passed. Usage:
 *   minimal-vmm
 *       on a host with /dev/kvm (the host's architecture);
 *   LD_PRELOAD=build/tests/sim/libkvmsim.so KVMSIM_ARCH=arm64 \
 *   KVMSIM_SCRIPT='...' minimal-vmm --arch arm64
 *       on the test suite's KVM simulator, which runs the script of guest
 *       steps that examples/meson.build spells out for each architecture
 *       (`meson test minimal-vmm-sim-arm64-7.2 -v` shows the command).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <memfault/memfault.h>

#include "example-vm.h"

#define PAGE_SLOT 1 /* the guest_memfd page, later ordinary memory */

/* Register offsets from the device's base port (x86-64) or GPA (arm64). */
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

/*
 * The guest programs; right of an instruction with an effect outside the
 * vCPU, its step in the simulator's script (examples/meson.build).
 * x86-64: 16-bit real mode at GPA 0x1000 (CS base 0), assembled with `as`
 * (.code16); `objdump -d -m i8086` shows the bytes.
 */
static const uint8_t x86_program[] = {
	0xb0, 0x42,       /* mov  $0x42, %al                             */
	0xe6, 0xe0,       /* out  %al, $0xe0  HELLO      out:0xe0:1:0x42 */
	0xe4, 0xe1,       /* in   $0xe1, %al  DATA       in:0xe1:1       */
	0xe6, 0xe2,       /* out  %al, $0xe2  ECHO       out:0xe2:1:acc  */
	0xb8, 0x00, 0x20, /* mov  $0x2000, %ax                           */
	0x8e, 0xd8,       /* mov  %ax, %ds    DS base 0x20000: the page  */
	0xa0, 0x00, 0x00, /* mov  0, %al      the page   load:0x20000:1  */
	0xe6, 0xe3,       /* out  %al, $0xe3  RESULT     out:0xe3:1:acc  */
	0xf4,             /* 1: hlt                      hlt             */
	0xeb, 0xfd,       /* jmp  1b                                     */
};

/*
 * arm64: EL1 with the MMU off at GPA 0, assembled with
 * `aarch64-linux-gnu-as`; `aarch64-linux-gnu-objdump -d` shows the words.
 */
static const uint32_t arm64_program[] = {
	0xd2a20000, /* movz x0, #0x1000, lsl #16  x0: the device             */
	0x52800841, /* mov  w1, #0x42                                        */
	0x39000001, /* strb w1, [x0]      HELLO  mmio_write:0x10000000:1:0x42 */
	0x39400402, /* ldrb w2, [x0, #1]  DATA   mmio_read:0x10000001:1      */
	0x39000802, /* strb w2, [x0, #2]  ECHO   mmio_write:0x10000002:1:acc */
	0xd2a40003, /* movz x3, #0x2000, lsl #16  x3: the page               */
	0x39400064, /* ldrb w4, [x3]      page   load:0x20000000:1           */
	0x39000c04, /* strb w4, [x0, #3]  RESULT mmio_write:0x10000003:1:acc */
	0x39001001, /* strb w1, [x0, #4]  DONE   mmio_write:0x10000004:1:0x42 */
	0x14000000, /* 1: b 1b                                               */
};

struct vmm {
	struct example_vm ev;
	uint64_t page_gpa; /* slot PAGE_SLOT */
	uint32_t dev_exit; /* how the device is reached: KVM_EXIT_IO or _MMIO */
	uint64_t dev_base; /* port or GPA of DEV_HELLO */
	struct memfault_region *page_region;
	int gmem_fd;       /* slot PAGE_SLOT's guest_memfd, or -1 */
	uint8_t *gmem_map; /* its mapping, or NULL */
	uint8_t *page;     /* slot PAGE_SLOT's ordinary memory, or NULL */
	enum {
		PAGE_GMEM,     /* slot PAGE_SLOT is the guest_memfd */
		PAGE_GONE,     /* the VMM closed it: the slot has no memory */
		PAGE_ORDINARY, /* ordinary memory holding PAGE_BYTE */
	} page_state;
	bool expect_fault;       /* slot PAGE_SLOT started as guest_memfd */
	const char *reported_as; /* how KVM reported the load from PAGE_GONE */
	bool done;               /* the guest finished */
};

/* ---- Slot PAGE_SLOT --------------------------------------------------- */

/* Slot PAGE_SLOT as ordinary memory holding PAGE_BYTE. */
static int
add_ordinary_page(struct vmm *v)
{
	size_t size = v->ev.page_size;
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return -errno;
	v->page = memset(p, PAGE_BYTE, size);
	v->page_state = PAGE_ORDINARY;
	return memfault_region_new(v->ev.vm, PAGE_SLOT, v->page_gpa, size,
				   v->page, NULL, &v->page_region);
}

/*
 * Slot PAGE_SLOT: one page of guest_memfd. It must be mmap()able: only then
 * do the guest's accesses in an ordinary (not confidential) VM go to it.
 */
static int
add_page(struct vmm *v)
{
	const struct memfault_features *f = &v->ev.features;
	struct kvm_create_guest_memfd create = {
		.size = v->ev.page_size,
		.flags = f->guest_memfd_flags & (GUEST_MEMFD_FLAG_MMAP |
						 GUEST_MEMFD_FLAG_INIT_SHARED),
	};
	void *map;

	if (!(f->flags & MEMFAULT_FEATURE_GUEST_MEMFD) ||
	    !(f->guest_memfd_flags & GUEST_MEMFD_FLAG_MMAP)) {
		printf("memslot %d: this kernel has no mmap()able guest_memfd, so the page is ordinary memory\n"
		       "            holding %#x and the guest's load cannot fault\n",
		       PAGE_SLOT, PAGE_BYTE);
		return add_ordinary_page(v);
	}
	v->gmem_fd = ioctl(v->ev.vm_fd, KVM_CREATE_GUEST_MEMFD, &create);
	if (v->gmem_fd < 0)
		return -errno;
	map = mmap(NULL, v->ev.page_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		   v->gmem_fd, 0);
	if (map == MAP_FAILED)
		return -errno;
	v->gmem_map = memset(map, STALE_BYTE, v->ev.page_size);
	v->page_state = PAGE_GMEM;
	v->expect_fault = true;
	printf("memslot %d: one guest_memfd page at GPA %#" PRIx64 " (guest_memfd flags %#" PRIx64 "), holding %#x\n",
	       PAGE_SLOT, v->page_gpa, (uint64_t)create.flags, STALE_BYTE);
	/* The library writes the memslot (KVM_SET_USER_MEMORY_REGION2). */
	MEMFAULT_OPTS(memfault_region_opts, opts,
		.flags = MEMFAULT_REGION_GUEST_MEMFD,
		.guest_memfd = v->gmem_fd);
	return memfault_region_new(v->ev.vm, PAGE_SLOT, v->page_gpa,
				   v->ev.page_size, v->gmem_map, &opts,
				   &v->page_region);
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
	munmap(v->gmem_map, v->ev.page_size);
	v->gmem_map = NULL;
	close(v->gmem_fd);
	v->gmem_fd = -1;
	v->page_state = PAGE_GONE;
	printf("       VMM: unmapped and closed the guest_memfd: memslot %d has no memory now\n",
	       PAGE_SLOT);
}

/*
 * Give the guest memory again where the VMM took it away. A memslot created
 * with KVM_MEM_GUEST_MEMFD cannot be changed, only deleted: delete it
 * (memfault_region_free()) and add an ordinary one at the same GPA.
 */
static int
replace_page(struct vmm *v)
{
	int r;

	memfault_region_free(v->page_region);
	v->page_region = NULL;
	r = add_ordinary_page(v);
	if (r)
		return example_fail("adding the replacement memslot", r);
	printf("       VMM: replaced memslot %d by ordinary memory holding %#x; running the vCPU again\n",
	       PAGE_SLOT, PAGE_BYTE);
	return 0;
}

/* ---- Exits ------------------------------------------------------------ */

/* MEMFAULT_RUN_MEMORY_FAULT: resolve it if it is the page the VMM took away. */
static int
resolve_fault(struct vmm *v, const struct memfault_fault *f)
{
	bool ours = f->gpa <= v->page_gpa && v->page_gpa - f->gpa < f->size &&
		    v->page_state == PAGE_GONE;

	example_check(&v->ev, ours,
		      "the fault covers GPA %#" PRIx64 ", whose memory the VMM took away",
		      v->page_gpa);
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
	uint64_t off = run->mmio.phys_addr - v->page_gpa;
	int r;

	if (run->mmio.len > sizeof(run->mmio.data) ||
	    off + run->mmio.len > v->ev.page_size)
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
	uint64_t reg = addr - v->dev_base;

	if (exit_reason != v->dev_exit || reg >= DEV_NR_REGS || len != 1 ||
	    write != (reg != DEV_DATA)) {
		printf("       unexpected %s of %u byte(s) at %#" PRIx64 "\n",
		       write ? "write" : "read", len, addr);
		return -EPROTO;
	}
	switch (reg) {
	case DEV_HELLO:
		example_check(&v->ev, data[0] == HELLO_BYTE,
			      "HELLO: the guest wrote %#x", data[0]);
		break;
	case DEV_DATA:
		data[0] = DATA_BYTE;
		printf("       DATA: the VMM supplies %#x\n", DATA_BYTE);
		break;
	case DEV_ECHO:
		example_check(&v->ev, data[0] == DATA_BYTE,
			      "ECHO: the guest wrote back %#x, the VMM supplied %#x",
			      data[0], DATA_BYTE);
		/* The guest's next step is the load from the page. */
		if (v->page_state == PAGE_GMEM)
			drop_guest_memfd(v);
		break;
	case DEV_RESULT:
		example_check(&v->ev, data[0] == PAGE_BYTE,
			      "RESULT: the guest loaded %#x from GPA %#" PRIx64 ", the VMM's page holds %#x",
			      data[0], v->page_gpa, PAGE_BYTE);
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
	bool io = run->exit_reason == KVM_EXIT_IO; /* else MMIO, or no access */
	bool write = io ? run->io.direction == KVM_EXIT_IO_OUT :
			  run->mmio.is_write;
	uint64_t addr = io ? run->io.port : run->mmio.phys_addr;
	uint32_t len = io ? run->io.size : run->mmio.len;
	uint8_t *data = io ? (uint8_t *)run + run->io.data_offset :
			     run->mmio.data;

	if (run->exit_reason == KVM_EXIT_HLT) {
		printf("exit %u (KVM_EXIT_HLT): the guest has finished\n",
		       run->exit_reason);
		v->done = true;
		return 0;
	}
	if (!io && run->exit_reason != KVM_EXIT_MMIO) {
		printf("exit %u: not expected from this guest\n",
		       run->exit_reason);
		return -EPROTO;
	}
	printf("exit %u (%s): %s %#" PRIx64 ", %u byte(s)", run->exit_reason,
	       io ? "KVM_EXIT_IO" : "KVM_EXIT_MMIO",
	       write ? "write to" : "read from", addr, len);
	if (write)
		printf(", data %#x", data[0]);
	printf("\n");
	if (io && run->io.count != 1)
		return -EPROTO; /* no string IO in this guest */
	if (!io && v->page_state == PAGE_GONE &&
	    addr - v->page_gpa < v->ev.page_size)
		return resolve_emulated_access(v, run);
	return device_access(v, run->exit_reason, addr, write, len, data);
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
	static const char *const origins[4] = {
		[MEMFAULT_ORIGIN_ERRNO] = "KVM_RUN failed with EFAULT or EHWPOISON, as documented",
		[MEMFAULT_ORIGIN_RET0] = "KVM_RUN returned 0 (arm64 nested VNCR path)",
		[MEMFAULT_ORIGIN_OTHER_ERRNO] = "KVM_RUN failed with another errno (a guest_memfd error)",
	};
	size_t i;

	printf("memory fault: gpa %#" PRIx64 ", size %#" PRIx64 "\n       flags:",
	       f->gpa, f->size);
	if (!f->flags)
		printf(" none");
	for (i = 0; i < sizeof(flag_names) / sizeof(flag_names[0]); i++)
		if (f->flags & flag_names[i].flag)
			printf(" %s", flag_names[i].name);
	printf(" (kernel flags %#" PRIx64 ")\n", f->kernel_flags);
	printf("       error: %d (%s)\n", f->error,
	       f->error ? strerror(-f->error) : "none");
	printf("       origin: %s\n", f->origin < 4 && origins[f->origin] ?
						origins[f->origin] : "unknown");
}

/* Run the vCPU until the guest finishes, handling what each run returns. */
static int
run_guest(struct vmm *v)
{
	struct memfault_fault fault;
	unsigned n;
	int r;

	for (n = 1; !v->done; n++) {
		if (n > 16)
			return example_fail("the guest did not finish in 16 runs",
					    -ETIMEDOUT);
		r = memfault_vcpu_run(v->ev.vcpu);
		printf("run %u: ", n);
		switch (r) {
		case MEMFAULT_RUN_EXIT:
			r = handle_exit(v, v->ev.run);
			break;
		case MEMFAULT_RUN_MEMORY_FAULT:
			r = memfault_vcpu_get_fault(v->ev.vcpu, &fault,
						    sizeof(fault));
			if (r)
				return example_fail("memfault_vcpu_get_fault", r);
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
			return example_fail("memfault_vcpu_run", r);
		}
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- Setup ------------------------------------------------------------ */

/* Everything between opening /dev/kvm and the first KVM_RUN. */
static int
setup(struct vmm *v)
{
	bool x86 = v->ev.arch == MEMFAULT_ARCH_X86_64;
	int r;

	v->page_gpa = x86 ? 0x20000 : 0x20000000;
	v->dev_exit = x86 ? KVM_EXIT_IO : KVM_EXIT_MMIO;
	v->dev_base = x86 ? 0xe0 : 0x10000000;
	r = example_vm_new(&v->ev, 0);
	if (r)
		return r;
	printf("features %#" PRIx64 " (enum memfault_feature), guest_memfd flags %#" PRIx64 "\n",
	       v->ev.features.flags, v->ev.features.guest_memfd_flags);
	r = x86 ? example_vm_add_ram(&v->ev, x86_program, sizeof(x86_program)) :
		  example_vm_add_ram(&v->ev, arm64_program,
				     sizeof(arm64_program));
	if (r)
		return r;
	r = add_page(v);
	if (r)
		return example_fail("the guest_memfd memslot", r);
	return example_vcpu_new(&v->ev, 0);
}

int
main(int argc, char **argv)
{
	struct vmm v = { .gmem_fd = -1 };
	int r;

	r = argc == 1 ? example_set_arch(&v.ev, NULL) : -EINVAL;
	if (argc == 3 && !strcmp(argv[1], "--arch"))
		r = example_set_arch(&v.ev, argv[2]);
	if (r) {
		fprintf(stderr, "usage: %s [--arch x86_64|arm64]\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0); /* keep stdout and stderr in order */

	r = setup(&v);
	if (r == 0)
		r = run_guest(&v);
	if (r == 0 && v.expect_fault)
		example_check(&v.ev, v.reported_as,
			      "KVM reported the load from the page the VMM took away (%s)",
			      v.reported_as ? v.reported_as : "it did not");
	memfault_region_free(v.page_region);
	example_vm_free(&v.ev);
	if (v.gmem_map)
		munmap(v.gmem_map, v.ev.page_size);
	if (v.gmem_fd >= 0)
		close(v.gmem_fd);
	if (v.page)
		munmap(v.page, v.ev.page_size);
	return example_result(&v.ev, r);
}
