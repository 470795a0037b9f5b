/* SPDX-License-Identifier: MIT */
/* Real-kernel VM setup for the kernel suite; see ktest.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <linux/userfaultfd.h>
#if !defined(KT_SIM)
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sys/prctl.h>
#endif

#include "ktest.h"

#if defined(KT_SIM)
#include <kvmsim.h>

/* The guest programs as kvmsim scripts: the same exits, in the same order,
 * as the code below (steps after the last one spin). */
#if KT_X86
static const char *const sim_script[] = {
	[0] = "out:0x3f8:1:0x42; in:0x3f8:1; out:0x3f8:1:acc;"
	      " mmio_write:0xd0000:1:acc; mmio_read:0xd0004:1; out:0x3f8:1:acc;"
	      " load:0x20000:1; out:0x3f8:1:acc; hlt; spin",
	[1] = "load:0x20000:1; out:0x3f8:1:acc; hlt; spin",
	[2] = "spin",
	[3] = "load:0x20000:1; out:0x3f8:1:acc; load:0x22008:1; out:0x3f8:1:acc;"
	      " load:0x21010:1; out:0x3f8:1:acc; load:0x23018:1;"
	      " out:0x3f8:1:acc; load:0x20020:1; out:0x3f8:1:acc; hlt; spin",
};
#else
static const char *const sim_script[] = {
	[0] = "mmio_write:0x10000000:4:0x42; mmio_read:0x10000004:4;"
	      " mmio_write:0x10000008:4:acc;"
	      " load:0x20000000:4; mmio_write:0x1000000c:4:acc; spin",
	[1] = "load:0x20000000:4; mmio_write:0x1000000c:4:acc; spin",
	[2] = "spin",
	[3] = "load:0x20000000:4; mmio_write:0x1000000c:4:acc;"
	      " load:0x20002008:4; mmio_write:0x1000000c:4:acc;"
	      " load:0x20001010:4; mmio_write:0x1000000c:4:acc;"
	      " load:0x20003018:4; mmio_write:0x1000000c:4:acc;"
	      " load:0x20000020:4; mmio_write:0x1000000c:4:acc; spin",
};
#endif
/* No code runs on the simulator; slot 0 is set up all the same. */
static const uint8_t guest_code[] = { 0 };
#define REPORT_EXIT_MMIO KT_ARM64
#elif defined(__x86_64__)
/* guest-x86.S: 16-bit real mode, CS = DS = ES = 0, loaded at KT_CODE_GPA. */
static const uint8_t guest_code[] = {
	/* main (+0x00) */
	0xba, 0xf8, 0x03,       /* mov  $0x3f8, %dx                 */
	0xb0, 0x42,             /* mov  $0x42, %al                  */
	0xee,                   /* out  %al, %dx     1 IO out 0x42  */
	0xec,                   /* in   %dx, %al     2 IO in        */
	0xee,                   /* out  %al, %dx     3 IO out V     */
	0xbb, 0x00, 0xd0,       /* mov  $0xd000, %bx                */
	0x8e, 0xc3,             /* mov  %bx, %es                    */
	0x26, 0xa2, 0x00, 0x00, /* mov  %al, %es:0   4 MMIO write V */
	0x26, 0xa0, 0x04, 0x00, /* mov  %es:4, %al   5 MMIO read    */
	0xee,                   /* out  %al, %dx     6 IO out W     */
	/* load (+0x16) */
	0xba, 0xf8, 0x03,       /* mov  $0x3f8, %dx                 */
	0xb8, 0x00, 0x20,       /* mov  $0x2000, %ax                */
	0x8e, 0xd8,             /* mov  %ax, %ds                    */
	0xa0, 0x00, 0x00,       /* mov  0, %al       load TEST_GPA  */
	0xee,                   /* out  %al, %dx     report         */
	0xf4,                   /* hlt               HLT exit       */
	/* spin (+0x23) */
	0xeb, 0xfe,             /* jmp  .                           */
	/* pages (+0x25) */
	0xba, 0xf8, 0x03,       /* mov  $0x3f8, %dx                 */
	0xb8, 0x00, 0x20,       /* mov  $0x2000, %ax                */
	0x8e, 0xd8,             /* mov  %ax, %ds                    */
	0xa0, 0x00, 0x00,       /* mov  0x0000, %al  page 0         */
	0xee,                   /* out  %al, %dx     report         */
	0xa0, 0x08, 0x20,       /* mov  0x2008, %al  page 2         */
	0xee,                   /* out  %al, %dx                    */
	0xa0, 0x10, 0x10,       /* mov  0x1010, %al  page 1         */
	0xee,                   /* out  %al, %dx                    */
	0xa0, 0x18, 0x30,       /* mov  0x3018, %al  page 3         */
	0xee,                   /* out  %al, %dx                    */
	0xa0, 0x20, 0x00,       /* mov  0x0020, %al  page 0 again   */
	0xee,                   /* out  %al, %dx                    */
	0xf4,                   /* hlt               HLT exit       */
	0xeb, 0xfe,             /* jmp  .                           */
};
_Static_assert(KT_ENTRY_LOAD - KT_CODE_GPA == 0x16, "load entry");
_Static_assert(KT_ENTRY_SPIN - KT_CODE_GPA == 0x23, "spin entry");
_Static_assert(KT_ENTRY_PAGES - KT_CODE_GPA == 0x25, "pages entry");
_Static_assert(sizeof(guest_code) == 0x44, "guest size");
#define REPORT_EXIT_MMIO 0
#else
/* guest-arm64.S: EL1, MMU off, loaded at KT_CODE_GPA. */
static const uint32_t guest_code[] = {
	/* main (+0x00) */
	0xd2a20000, /* mov  x0, #0x10000000                     */
	0x52800841, /* mov  w1, #0x42                           */
	0xb9000001, /* str  w1, [x0]        1 MMIO write 0x42   */
	0x52800ee2, /* mov  w2, #0x77       sentinel            */
	0xb9400402, /* ldr  w2, [x0, #4]    2 MMIO read         */
	0xb9000802, /* str  w2, [x0, #8]    3 MMIO write V      */
	/* load (+0x18) */
	0xd2a20000, /* mov  x0, #0x10000000                     */
	0xd2a40003, /* mov  x3, #0x20000000 (TEST_GPA)          */
	0xb9400064, /* ldr  w4, [x3]        load TEST_GPA       */
	0xb9000c04, /* str  w4, [x0, #12]   report              */
	/* spin (+0x28) */
	0x14000000, /* b    .                                   */
	/* pages (+0x2c) */
	0xd2a20000, /* mov  x0, #0x10000000                     */
	0xd2a40003, /* mov  x3, #0x20000000 (TEST_GPA)          */
	0xb9400064, /* ldr  w4, [x3]          page 0            */
	0xb9000c04, /* str  w4, [x0, #12]     report            */
	0xb9600864, /* ldr  w4, [x3, #0x2008] page 2            */
	0xb9000c04, /* str  w4, [x0, #12]                       */
	0xb9501064, /* ldr  w4, [x3, #0x1010] page 1            */
	0xb9000c04, /* str  w4, [x0, #12]                       */
	0xb9701864, /* ldr  w4, [x3, #0x3018] page 3            */
	0xb9000c04, /* str  w4, [x0, #12]                       */
	0xb9402064, /* ldr  w4, [x3, #0x20]   page 0 again      */
	0xb9000c04, /* str  w4, [x0, #12]                       */
	0x14000000, /* b    .                                   */
};
_Static_assert(KT_ENTRY_LOAD - KT_CODE_GPA == 0x18, "load entry");
_Static_assert(KT_ENTRY_SPIN - KT_CODE_GPA == 0x28, "spin entry");
_Static_assert(KT_ENTRY_PAGES - KT_CODE_GPA == 0x2c, "pages entry");
_Static_assert(sizeof(guest_code) == 0x60, "guest size");
#define REPORT_EXIT_MMIO 1
#endif

const uint64_t kt_pages_off[KT_PAGES_LOADS] = { 0x0000, 0x2008, 0x1010,
						0x3018, 0x0020 };

static int kvm_fd = -2;
#if defined(KT_SIM)
static void needs_forget(void);
#endif

int
kt_kvm_fd(void)
{
	int fd, vm;

	if (kvm_fd != -2)
		return kvm_fd;
	kvm_fd = -1;
	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		printf("# /dev/kvm: %s\n", strerror(errno));
		return -1;
	}
	if (ioctl(fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		printf("# /dev/kvm: unexpected KVM_GET_API_VERSION\n");
		close(fd);
		return -1;
	}
	vm = ioctl(fd, KVM_CREATE_VM, 0);
	if (vm < 0) {
		printf("# /dev/kvm: KVM_CREATE_VM: %s\n", strerror(errno));
		close(fd);
		return -1;
	}
	close(vm);
	kvm_fd = fd;
	return fd;
}

#if defined(KT_SIM)
void
kt_kvm_forget(void)
{
	kvm_fd = -2;
	needs_forget();
}
#endif

const char *
kt_backend(void)
{
#if defined(KT_SIM)
	return "sim";
#elif KT_X86
	/* The vendor module registers its parameters under /sys/module
	 * whether it is built in or loaded. */
	static const char *const mod[][2] = {
		{ "/sys/module/kvm_pvm", "pvm" },
		{ "/sys/module/kvm_intel", "vmx" },
		{ "/sys/module/kvm_amd", "svm" },
	};

	for (size_t i = 0; i < sizeof(mod) / sizeof(mod[0]); i++)
		if (!access(mod[i][0], F_OK))
			return mod[i][1];
	return "x86";
#else
	return "arm64";
#endif
}

bool
kt_accesses_emulated(void)
{
	/* PVM runs the guest in a hardware-unassisted ring: a guest access
	 * to memory whose host page is missing reaches KVM as an
	 * instruction to emulate, and the emulator takes a gpa whose hva
	 * cannot be read for MMIO (measured on the 6.18 kvm_pvm host:
	 * KVM_EXIT_MMIO at the gpa where VMX gives -EFAULT). */
	return !strcmp(kt_backend(), "pvm");
}

/* The probed needs, filled once in the parent before Check forks (so every
 * test sees the same answer and the probe VMs are made once). */
static struct {
	bool done;
	unsigned have;
	char why[5][160];
} needs;

#if defined(KT_SIM)
/* Another simulated kernel: probe again. */
static void
needs_forget(void)
{
	memset(&needs, 0, sizeof(needs));
}
#endif

static const char *const need_name[] = {
	"guest_memfd-mmap", "root", "memory-attributes", "sw-protected-vm",
	"cpu-executed-accesses",
};

static void
probe_needs(void)
{
	int kvm = kt_kvm_fd(), vm, r;
	unsigned have = 0;

	if (needs.done)
		return;
	needs.done = true;
	vm = kvm >= 0 ? ioctl(kvm, KVM_CREATE_VM, 0) : -1;
	if (vm >= 0) {
		r = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD);
		if (r <= 0)
			snprintf(needs.why[0], sizeof(needs.why[0]),
				 "KVM_CAP_GUEST_MEMFD is %d on a default VM", r);
		else if ((r = ioctl(vm, KVM_CHECK_EXTENSION,
				    KVM_CAP_GUEST_MEMFD_FLAGS),
			  (r & 3) != 3))
			snprintf(needs.why[0], sizeof(needs.why[0]),
				 "KVM_CAP_GUEST_MEMFD_FLAGS %#x lacks MMAP|INIT_SHARED",
				 r < 0 ? 0 : r);
		else
			have |= KT_NEED_GMEM_MMAP;
		r = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_MEMORY_ATTRIBUTES);
		if (r > 0)
			have |= KT_NEED_MEM_ATTRIBUTES;
		else
			snprintf(needs.why[2], sizeof(needs.why[2]),
				 "KVM_CAP_MEMORY_ATTRIBUTES is %d on a default VM",
				 r);
		close(vm);
	} else {
		snprintf(needs.why[0], sizeof(needs.why[0]), "no VM");
		snprintf(needs.why[2], sizeof(needs.why[2]), "no VM");
	}
#if defined(KT_SIM)
	have |= KT_NEED_ROOT; /* the simulator poisons without madvise() */
#else
	if (geteuid() == 0)
		have |= KT_NEED_ROOT;
	else
		snprintf(needs.why[1], sizeof(needs.why[1]),
			 "MADV_HWPOISON needs CAP_SYS_ADMIN, euid is %u",
			 (unsigned)geteuid());
#endif
	r = kvm >= 0 ? ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES) : -1;
	if (KT_X86 && r > 0 && (r & 2))
		have |= KT_NEED_SW_PROTECTED_VM;
	else
		snprintf(needs.why[3], sizeof(needs.why[3]),
			 "KVM_CAP_VM_TYPES = %#x lacks type 1 "
			 "(CONFIG_KVM_SW_PROTECTED_VM, x86 only)",
			 r < 0 ? 0 : r);
	if (!kt_accesses_emulated())
		have |= KT_NEED_CPU_ACCESS;
	else
		snprintf(needs.why[4], sizeof(needs.why[4]),
			 "backend %s emulates guest memory accesses",
			 kt_backend());
	needs.have = have;
}

bool
kt_require(const char *scen, unsigned want)
{
	unsigned missing;

	probe_needs();
	missing = want & ~needs.have;
	if (!missing)
		return true;
	for (unsigned i = 0; i < sizeof(need_name) / sizeof(need_name[0]); i++) {
		if (!(missing & (1u << i)))
			continue;
		printf("KSKIP %s %s need=%s %s\n", kres_arch_name(KT_ARCH), scen,
		       need_name[i], needs.why[i]);
		printf("# SKIP %s: needs %s: %s\n", scen, need_name[i],
		       needs.why[i]);
	}
	tc_count_skip();
	return false;
}

uint64_t
kt_page_size(void)
{
	return (uint64_t)sysconf(_SC_PAGESIZE);
}

#if defined(KT_SIM)
const char *kt_sim_release = "7.2.0-kvmsim";
#endif

bool
kt_kernel_is(const char *prefix)
{
#if defined(KT_SIM)
	/* The kernel is the simulator's model, not the host's. */
	const char *release = kt_sim_release;
#else
	struct utsname u;
	const char *release = uname(&u) ? "" : u.release;
#endif

	return !strncmp(release, prefix, strlen(prefix));
}

static void *
anon(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ck_assert_msg(p != MAP_FAILED, "mmap: %s", strerror(errno));
	return p;
}

static int
set_region2(struct kt_vm *v, uint32_t slot, uint32_t flags, uint64_t gpa,
	    uint64_t size, void *hva, int gmem_fd)
{
	/* Before 6.8 only the old ioctl exists. */
	if (!(flags & KVM_MEM_GUEST_MEMFD) &&
	    ioctl(v->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY2) <= 0)
		return tc_memslot1(v->vm_fd, slot, flags, gpa, size, hva);
	return tc_memslot2(v->vm_fd, slot, flags, gpa, size, hva, gmem_fd, 0,
			   NULL);
}

void
kt_vm_create(struct kt_vm *v, unsigned long type, const char *scen)
{
	MEMFAULT_OPTS(memfault_vm_opts, opts, .kvm_fd = kt_kvm_fd(),
		      .arch = KT_ARCH);
	int r;

	memset(v, 0, sizeof(*v));
	v->scen = scen;
	v->vm_fd = v->vcpu_fd = v->gmem_fd = -1;
	ck_assert_int_ge(kt_kvm_fd(), 0);
	v->vm_fd = ioctl(kt_kvm_fd(), KVM_CREATE_VM, type);
	ck_assert_msg(v->vm_fd >= 0, "KVM_CREATE_VM(%lu): %s", type,
		      strerror(errno));
	v->mem0 = anon(KT_SLOT0_SIZE);
	memcpy((char *)v->mem0 + KT_CODE_GPA, guest_code, sizeof(guest_code));
	r = set_region2(v, 0, 0, 0, KT_SLOT0_SIZE, v->mem0, 0);
	ck_assert_msg(r == 0, "slot 0: %s", strerror(-r));
	r = memfault_vm_new(v->vm_fd, &opts, &v->mvm);
	ck_assert_msg(r == 0, "memfault_vm_new: %s", strerror(-r));
}

void
kt_vm_normal_slot(struct kt_vm *v)
{
	int r;

	v->test = anon(KT_TEST_SIZE);
	memset(v->test, KT_PATTERN, KT_TEST_SIZE);
	r = set_region2(v, 1, 0, KT_TEST_GPA, KT_TEST_SIZE, v->test, 0);
	ck_assert_msg(r == 0, "slot 1: %s", strerror(-r));
}

/* A new guest_memfd of @size with @gmem_flags, in v->gmem_fd. */
static void
gmem_create(struct kt_vm *v, uint64_t size, uint64_t gmem_flags)
{
	struct kvm_create_guest_memfd cg;

	memset(&cg, 0, sizeof(cg));
	cg.size = size;
	cg.flags = gmem_flags;
	v->gmem_fd = ioctl(v->vm_fd, KVM_CREATE_GUEST_MEMFD, &cg);
	ck_assert_msg(v->gmem_fd >= 0, "KVM_CREATE_GUEST_MEMFD(%#llx): %s",
		      (unsigned long long)gmem_flags, strerror(errno));
}

/*
 * The hva of slot 1, @size bytes: the guest_memfd's mmap() when MMAP is in
 * @gmem_flags (filled with @pattern if @fill_map: without INIT_SHARED its
 * pages start private and are not touched), else anonymous memory filled
 * with @pattern.
 */
static void *
slot_hva(struct kt_vm *v, uint64_t size, uint64_t gmem_flags, uint8_t pattern,
	 bool fill_map)
{
	if (!(gmem_flags & GUEST_MEMFD_FLAG_MMAP)) {
		v->test = anon(size);
		memset(v->test, pattern, size);
		return v->test;
	}
	v->gmem_map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED,
			   v->gmem_fd, 0);
	ck_assert_msg(v->gmem_map != MAP_FAILED, "mmap(guest_memfd): %s",
		      strerror(errno));
	if (fill_map)
		memset(v->gmem_map, pattern, size);
	return v->gmem_map;
}

void
kt_vm_gmem_slot(struct kt_vm *v, uint64_t gmem_flags)
{
	void *hva;
	int r;

	gmem_create(v, KT_TEST_SIZE, gmem_flags);
	hva = slot_hva(v, KT_TEST_SIZE, gmem_flags, KT_PATTERN, true);
	r = set_region2(v, 1, KVM_MEM_GUEST_MEMFD, KT_TEST_GPA, KT_TEST_SIZE,
			hva, v->gmem_fd);
	ck_assert_msg(r == 0, "slot 1 (guest_memfd): %s", strerror(-r));
}

void
kt_region_normal(struct kt_vm *v, uint8_t pattern)
{
	int r;

	v->test = anon(KT_TEST_SIZE);
	memset(v->test, pattern, KT_TEST_SIZE);
	r = memfault_region_new(v->mvm, 1, KT_TEST_GPA, KT_TEST_SIZE, v->test,
				NULL, &v->region);
	ck_assert_msg(r == 0, "memfault_region_new(normal): %s", strerror(-r));
}

void
kt_region_gmem(struct kt_vm *v, uint64_t gmem_flags, uint8_t pattern)
{
	MEMFAULT_OPTS(memfault_region_opts, opts,
		      .flags = MEMFAULT_REGION_GUEST_MEMFD);
	void *hva;
	int r;

	gmem_create(v, KT_TEST_SIZE, gmem_flags);
	hva = slot_hva(v, KT_TEST_SIZE, gmem_flags, pattern,
		       gmem_flags & GUEST_MEMFD_FLAG_INIT_SHARED);
	opts.guest_memfd = v->gmem_fd;
	r = memfault_region_new(v->mvm, 1, KT_TEST_GPA, KT_TEST_SIZE, hva,
				&opts, &v->region);
	ck_assert_msg(r == 0, "memfault_region_new(guest_memfd): %s",
		      strerror(-r));
}

void
kt_region_flags(struct kt_vm *v, uint64_t size, uint64_t flags,
		uint64_t gmem_flags, uint8_t pattern)
{
	MEMFAULT_OPTS(memfault_region_opts, opts, .flags = flags);
	void *hva;
	int r;

	ck_assert_uint_le(size, KT_PAGES_SIZE);
	v->test_size = size;
	if (flags & MEMFAULT_REGION_GUEST_MEMFD) {
		ck_assert_uint_eq(size, KT_TEST_SIZE);
		gmem_create(v, size, gmem_flags);
	}
	hva = slot_hva(v, size, gmem_flags, pattern, true);
	opts.guest_memfd = v->gmem_fd;
	r = memfault_region_new(v->mvm, 1, KT_TEST_GPA, size, hva, &opts,
				&v->region);
	ck_assert_msg(r == 0, "memfault_region_new(%#llx): %s",
		      (unsigned long long)flags, strerror(-r));
}

int
kt_region_replace(struct kt_vm *v, uint8_t pattern)
{
	struct memfault_region_info info;
	void *p;
	int r;

	if (!v->region || v->repl)
		return -EINVAL;
	r = memfault_region_get_info(v->region, &info, sizeof(info));
	if (r)
		return r;
	p = mmap(NULL, info.size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	memset(p, pattern, info.size);
	memfault_region_free(v->region);
	v->region = NULL;
	r = memfault_region_new(v->mvm, info.slot, info.gpa, info.size, p,
				NULL, &v->region);
	if (r) {
		munmap(p, info.size);
		return r;
	}
	v->repl = p;
	return 0;
}

void
kt_vm_close_gmem(struct kt_vm *v)
{
	if (v->gmem_map)
		munmap(v->gmem_map, KT_TEST_SIZE);
	v->gmem_map = NULL;
	close(v->gmem_fd);
	v->gmem_fd = -1;
}

int
kt_vm_set_attributes(struct kt_vm *v, uint64_t gpa, uint64_t size,
		     uint64_t attributes)
{
	struct kvm_memory_attributes a;

	memset(&a, 0, sizeof(a));
	a.address = gpa;
	a.size = size;
	a.attributes = attributes;
	return ioctl(v->vm_fd, KVM_SET_MEMORY_ATTRIBUTES, &a) ? -errno : 0;
}

static void
set_entry(struct kt_vm *v, uint64_t entry)
{
#if defined(KT_SIM)
	size_t i = entry == KT_ENTRY_MAIN    ? 0
		   : entry == KT_ENTRY_LOAD  ? 1
		   : entry == KT_ENTRY_PAGES ? 3
					     : 2;
	int r = kvmsim_vcpu_set_script_text(v->vcpu_fd, sim_script[i]);

	ck_assert_msg(r == 0, "kvmsim_vcpu_set_script_text: %s", strerror(-r));
#elif defined(__x86_64__)
	struct kvm_sregs s;
	struct kvm_regs r;

	ck_assert_int_eq(ioctl(v->vcpu_fd, KVM_GET_SREGS, &s), 0);
	s.cs.base = s.ds.base = s.es.base = s.ss.base = 0;
	s.cs.selector = s.ds.selector = s.es.selector = s.ss.selector = 0;
	ck_assert_int_eq(ioctl(v->vcpu_fd, KVM_SET_SREGS, &s), 0);
	memset(&r, 0, sizeof(r));
	r.rip = entry;
	r.rflags = 2;
	r.rsp = 0x8000;
	ck_assert_int_eq(ioctl(v->vcpu_fd, KVM_SET_REGS, &r), 0);
#else
	struct kvm_vcpu_init init;
	struct kvm_one_reg reg;
	uint64_t pc = entry;

	ck_assert_int_eq(ioctl(v->vm_fd, KVM_ARM_PREFERRED_TARGET, &init), 0);
	ck_assert_int_eq(ioctl(v->vcpu_fd, KVM_ARM_VCPU_INIT, &init), 0);
	memset(&reg, 0, sizeof(reg));
	reg.id = KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE |
		 KVM_REG_ARM_CORE_REG(regs.pc);
	reg.addr = (uintptr_t)&pc;
	ck_assert_int_eq(ioctl(v->vcpu_fd, KVM_SET_ONE_REG, &reg), 0);
#endif
}

void
kt_vcpu_create(struct kt_vm *v, uint64_t entry)
{
	int r;

	v->vcpu_fd = ioctl(v->vm_fd, KVM_CREATE_VCPU, 0);
	ck_assert_msg(v->vcpu_fd >= 0, "KVM_CREATE_VCPU: %s",
		      strerror(errno));
	set_entry(v, entry);
	r = memfault_vcpu_new(v->mvm, v->vcpu_fd, NULL, &v->mvcpu);
	ck_assert_msg(r == 0, "memfault_vcpu_new: %s", strerror(-r));
	ck_assert_int_eq(memfault_vcpu_get_run(v->mvcpu, &v->run), 0);
}

void
kt_vcpu_entry(struct kt_vm *v, int vcpu_fd, uint64_t entry)
{
	int fd = v->vcpu_fd;

	/* arm64 completes an MMIO access left pending by the last exit on
	 * the next KVM_RUN (pc + 4, skipping the new entry's first
	 * instruction) only while exit_reason still says KVM_EXIT_MMIO
	 * (kvm_arch_vcpu_ioctl_run()): drop it. x86 resets its state. */
	if (vcpu_fd == v->vcpu_fd && v->run)
		v->run->exit_reason = KVM_EXIT_UNKNOWN;
	/* set_entry() works on v->vcpu_fd */
	v->vcpu_fd = vcpu_fd;
	set_entry(v, entry);
	v->vcpu_fd = fd;
}

void
kt_vcpu_add(struct kt_vm *v, uint32_t id, uint64_t entry, int *ret_fd,
	    struct memfault_vcpu **ret_vcpu)
{
	int fd, r;

	fd = ioctl(v->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	ck_assert_msg(fd >= 0, "KVM_CREATE_VCPU(%u): %s", id, strerror(errno));
	kt_vcpu_entry(v, fd, entry);
	r = memfault_vcpu_new(v->mvm, fd, NULL, ret_vcpu);
	ck_assert_msg(r == 0, "memfault_vcpu_new: %s", strerror(-r));
	*ret_fd = fd;
}

void
kt_vm_destroy(struct kt_vm *v)
{
	/* the region deletes its memslot: before the VM fd goes */
	memfault_region_free(v->region);
	memfault_vcpu_free(v->mvcpu);
	memfault_vm_free(v->mvm);
	if (v->vcpu_fd >= 0)
		close(v->vcpu_fd);
	if (v->gmem_map)
		munmap(v->gmem_map, v->test_size ? v->test_size : KT_TEST_SIZE);
	if (v->gmem_fd >= 0)
		close(v->gmem_fd);
	if (v->vm_fd >= 0)
		close(v->vm_fd);
	if (v->test)
		munmap(v->test, v->test_size ? v->test_size : KT_TEST_SIZE);
	if (v->repl)
		munmap(v->repl, KT_TEST_SIZE);
	if (v->mem0)
		munmap(v->mem0, KT_SLOT0_SIZE);
	memset(v, 0, sizeof(*v));
}

void
kt_record(struct kt_vm *v, int rc)
{
	memset(&v->fault, 0, sizeof(v->fault));
	v->get_fault_rc = memfault_vcpu_get_fault(v->mvcpu, &v->fault,
						  sizeof(v->fault));
	kres_run(KT_ARCH, v->scen, ++v->step, rc, v->run,
		 v->get_fault_rc ? NULL : &v->fault, v->get_fault_rc);
}

int
kt_run(struct kt_vm *v)
{
	int rc = memfault_vcpu_run(v->mvcpu);

	kt_record(v, rc);
	return rc;
}

int
kt_dispatch(struct kt_vm *v)
{
	int rc = memfault_vcpu_run_dispatch(v->mvcpu);

	kt_record(v, rc);
	return rc;
}

void
kt_stats(struct kt_vm *v, struct memfault_vcpu_stats *st)
{
	memset(st, 0, sizeof(*st));
	ck_assert_int_eq(memfault_vcpu_get_stats(v->mvcpu, st, sizeof(*st)), 0);
	kres_stats(KT_ARCH, v->scen, ++v->step, st);
}

void
kt_expect_exit(struct kt_vm *v, int rc, uint32_t exit_reason)
{
	ck_assert_msg(rc == MEMFAULT_RUN_EXIT,
		      "%s step %d: run returned %d, want EXIT", v->scen,
		      v->step, rc);
	ck_assert_msg(v->run->exit_reason == exit_reason,
		      "%s step %d: exit_reason %u, want %u", v->scen, v->step,
		      v->run->exit_reason, exit_reason);
	ck_assert_int_eq(v->get_fault_rc, -ENODATA);
}

#if KT_X86
static uint8_t *
io_data(struct kt_vm *v)
{
	return (uint8_t *)v->run + v->run->io.data_offset;
}

/* A one-byte IO exit of @direction at KT_PIO_PORT. */
static void
expect_io(struct kt_vm *v, int rc, uint8_t direction)
{
	kt_expect_exit(v, rc, KVM_EXIT_IO);
	ck_assert_int_eq(v->run->io.direction, direction);
	ck_assert_int_eq(v->run->io.port, KT_PIO_PORT);
	ck_assert_int_eq(v->run->io.size, 1);
	ck_assert_int_eq(v->run->io.count, 1);
}

void
kt_expect_io_out(struct kt_vm *v, int rc, uint8_t data)
{
	expect_io(v, rc, KVM_EXIT_IO_OUT);
	ck_assert_msg(*io_data(v) == data,
		      "%s step %d: OUT data %#x, want %#x", v->scen, v->step,
		      *io_data(v), data);
}

void
kt_expect_io_in(struct kt_vm *v, int rc, uint8_t value)
{
	expect_io(v, rc, KVM_EXIT_IO_IN);
	*io_data(v) = value;
}
#else
void
kt_expect_io_out(struct kt_vm *v, int rc, uint8_t data)
{
	(void)v, (void)rc, (void)data;
	ck_abort_msg("no port IO on this architecture");
}

void
kt_expect_io_in(struct kt_vm *v, int rc, uint8_t value)
{
	(void)v, (void)rc, (void)value;
	ck_abort_msg("no port IO on this architecture");
}
#endif

static uint64_t
mmio_value(const uint8_t *d, uint32_t len)
{
	uint64_t x = 0;

	for (uint32_t i = len; i-- > 0;)
		x = (x << 8) | d[i];
	return x;
}

void
kt_expect_mmio_write(struct kt_vm *v, int rc, uint64_t gpa, uint32_t len,
		     uint64_t data)
{
	kt_expect_exit(v, rc, KVM_EXIT_MMIO);
	ck_assert_msg(v->run->mmio.is_write, "%s step %d: MMIO read, want write",
		      v->scen, v->step);
	ck_assert_msg(v->run->mmio.phys_addr == gpa,
		      "%s step %d: MMIO addr %#llx, want %#llx", v->scen,
		      v->step, (unsigned long long)v->run->mmio.phys_addr,
		      (unsigned long long)gpa);
	ck_assert_int_eq(v->run->mmio.len, len);
	ck_assert_msg(mmio_value(v->run->mmio.data, len) == data,
		      "%s step %d: MMIO data %#llx, want %#llx", v->scen,
		      v->step,
		      (unsigned long long)mmio_value(v->run->mmio.data, len),
		      (unsigned long long)data);
}

void
kt_expect_mmio_read(struct kt_vm *v, int rc, uint64_t gpa, uint32_t len,
		    uint64_t value)
{
	kt_expect_exit(v, rc, KVM_EXIT_MMIO);
	ck_assert_msg(!v->run->mmio.is_write,
		      "%s step %d: MMIO write, want read", v->scen, v->step);
	ck_assert_msg(v->run->mmio.phys_addr == gpa,
		      "%s step %d: MMIO addr %#llx, want %#llx", v->scen,
		      v->step, (unsigned long long)v->run->mmio.phys_addr,
		      (unsigned long long)gpa);
	ck_assert_int_eq(v->run->mmio.len, len);
	for (uint32_t i = 0; i < len && i < 8; i++)
		v->run->mmio.data[i] = (uint8_t)(value >> (8 * i));
}

void
kt_expect_report(struct kt_vm *v, int rc, uint32_t value)
{
	if (REPORT_EXIT_MMIO)
		kt_expect_mmio_write(v, rc, KT_MMIO_GPA + 12, 4, value);
	else
		kt_expect_io_out(v, rc, (uint8_t)value);
}

void
kt_expect_fault(struct kt_vm *v, int rc, uint64_t gpa, uint64_t size,
		uint64_t flags, uint64_t kernel_flags, int32_t error,
		uint32_t origin)
{
	const struct memfault_fault *f = &v->fault;

	ck_assert_msg(rc == MEMFAULT_RUN_MEMORY_FAULT,
		      "%s step %d: run returned %d (exit %u), want MEMORY_FAULT",
		      v->scen, v->step, rc, v->run->exit_reason);
	ck_assert_int_eq(v->run->exit_reason, KVM_EXIT_MEMORY_FAULT);
	ck_assert_int_eq(v->get_fault_rc, 0);
	ck_assert_msg(f->gpa == gpa, "fault.gpa %#llx, want %#llx",
		      (unsigned long long)f->gpa, (unsigned long long)gpa);
	ck_assert_msg(f->size == size, "fault.size %#llx, want %#llx",
		      (unsigned long long)f->size, (unsigned long long)size);
	ck_assert_msg(f->flags == flags, "fault.flags %#llx, want %#llx",
		      (unsigned long long)f->flags,
		      (unsigned long long)flags);
	ck_assert_msg(f->kernel_flags == kernel_flags,
		      "fault.kernel_flags %#llx, want %#llx",
		      (unsigned long long)f->kernel_flags,
		      (unsigned long long)kernel_flags);
	ck_assert_int_eq(f->error, error);
	ck_assert_int_eq(f->origin, origin);
	for (int i = 0; i < 3; i++)
		ck_assert_uint_eq(f->reserved[i], 0);
}

#if !defined(KT_SIM)
/* Refuse KVM_SET_USER_MEMORY_REGION(2) on @fd for the calling thread. */
static int
deny_memslots(int fd)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_ioctl, 0, 5),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, args[0])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)fd, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, args[1])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
			 (uint32_t)KVM_SET_USER_MEMORY_REGION2, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
			 (uint32_t)KVM_SET_USER_MEMORY_REGION, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOTRECOVERABLE),
	};
	struct sock_fprog prog = { sizeof(f) / sizeof(f[0]), f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -errno;
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) ? -errno
								       : 0;
}

struct probe_arg {
	int vm_fd, rc, deny_rc;
	struct memfault_features f;
};

static void *
probe_thread(void *p)
{
	struct probe_arg *a = p;
	MEMFAULT_OPTS(memfault_vm_opts, o, .arch = KT_ARCH);
	struct memfault_vm *vm = NULL;

	a->deny_rc = deny_memslots(a->vm_fd);
	if (a->deny_rc)
		return NULL;
	a->rc = memfault_vm_new(a->vm_fd, &o, &vm);
	if (!a->rc) {
		a->rc = memfault_vm_get_features(vm, &a->f, sizeof(a->f));
		memfault_vm_free(vm);
	}
	return NULL;
}

int
kt_probe_without_memslots(int vm_fd, struct memfault_features *f)
{
	struct probe_arg a = { .vm_fd = vm_fd };
	pthread_t t;
	int r;

	r = pthread_create(&t, NULL, probe_thread, &a);
	if (r)
		return -r;
	pthread_join(t, NULL);
	if (a.deny_rc)
		return a.deny_rc;
	*f = a.f;
	return a.rc;
}
#endif

void
kt_init(void)
{
	tc_init();
}

int
kt_main(Suite *s)
{
	struct tc_counts c;
	struct utsname u;
	int r;

	kt_init();
	if (kt_kvm_fd() < 0)
		return tc_skip(s, "/dev/kvm is missing or unusable");
	if (!uname(&u))
		printf("# kernel %s %s, backend %s\n", u.release, u.machine,
		       kt_backend());
	probe_needs();
	r = tc_run_counted(s, &c);
	printf("# %d tests, %u skipped for a missing need (KSKIP lines)\n",
	       c.ran, c.skipped);
	return r;
}
