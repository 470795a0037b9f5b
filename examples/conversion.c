/* SPDX-License-Identifier: MIT */
/*
 * conversion.c - implicit private/shared conversions, resolved by
 * libmemfault's default handler, with a discard hook.
 *
 * In a VM with private memory, every guest page is either private (backed
 * by guest_memfd, which the host cannot read) or shared (backed by the
 * memslot's ordinary memory). When the guest accesses a page the other way
 * round, KVM stops with a memory fault (KVM_EXIT_MEMORY_FAULT, flag PRIVATE
 * for a private access) and asks the VMM to convert it. The VMM here sets
 * no convert() handler, so memfault_vcpu_run_dispatch() converts the page
 * itself (KVM_SET_MEMORY_ATTRIBUTES) and then calls the discard() hook,
 * which throws the other copy away:
 *   - to private: the shared copy, with MADV_DONTNEED on the memslot's
 *     memory (it reads as zeros afterwards);
 *   - to shared: the private copy, with fallocate(FALLOC_FL_PUNCH_HOLE) on
 *     the guest_memfd.
 * Then it re-enters the guest, which retries the access. The VMM sees only
 * the guest's reports.
 *
 * The guest (pages A at GPA 0x100000 and B at 0x110000 of a
 * guest_memfd-backed memslot; the host put 0x4141... in B's shared copy):
 *   A: shared store 0x5151..., shared load    -> reports 0x5151...
 *      private store 0xc0ffee                  -> to private, shared copy
 *                                                 discarded
 *      private load                            -> reports 0xc0ffee
 *      shared load                             -> to shared, private copy
 *                                                 discarded; reports 0
 *      private load                            -> to private; reports 0
 *   B: private at boot (the VMM set it so); private store 0xb0b0, then a
 *      shared load (the guest shares the page with the host)
 *                                              -> to shared; reports
 *                                                 0x4141..., the host's data
 * It checks every report, every conversion and every discard, and exits 0
 * only if all checks passed.
 *
 * Where it runs: implicit conversions need a guest that chooses, per
 * access, private or shared: SEV-SNP and TDX guests do, with their C-bit or
 * shared bit. KVM's development VM type, KVM_X86_SW_PROTECTED_VM (VM type
 * 1), has no such bit: there the page's attribute itself decides whether an
 * access is private, so a guest can never ask for a conversion (see
 * tests/kernel/test-kernel-swprot.c). The test suite's KVM simulator
 * models the C-bit in its x86 model (step flags "private" and "shared" of
 * its guest script) and offers VM type 1 with quirk 0x20; that is where
 * this example runs. On a KVM that runs machine code it says why it cannot
 * and exits 77.
 *
 * Usage (the script is in examples/meson.build; `meson test -v
 * conversion-sim-x86_64-7.2-swprot` shows the whole command):
 *   LD_PRELOAD=build/tests/sim/libkvmsim.so KVMSIM_ARCH=x86_64 \
 *   KVMSIM_QUIRKS=0x26 KVMSIM_SCRIPT='store:0x100000:8:...' conversion
 *   conversion            on /dev/kvm: exits 77, as said above
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* fallocate() */
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/falloc.h>
#include <memfault/memfault.h>

#include "example-vm.h"

/* KVM_X86_SW_PROTECTED_VM, from the x86 uapi (asm/kvm.h): an arm64 build,
 * which may still drive the simulator's x86 model, does not have it. */
#define SW_PROTECTED_VM 1

/*
 * Pages A and B, 64 KiB apart (a multiple of every host page size), so
 * that the guest script's addresses do not depend on the page size.
 */
#define MEM_SLOT 1
#define MEM_GPA 0x100000
#define B_OFFSET 0x10000
#define MEM_SIZE (2 * B_OFFSET)
#define REPORT_GPA 0x10000000 /* no memslot: the guest's reports are MMIO */

#define HOST_BYTE 0x41 /* what the host put in B's shared copy */

/* One conversion the library made, as the discard hook saw it. */
struct discard {
	uint64_t gpa, size;
	uint32_t to_private;
};

struct vmm {
	struct example_vm ev;
	int gmem_fd;     /* the private copies */
	uint8_t *shared; /* the memslot's memory: the shared copies */
	struct memfault_region *region;
	struct discard discards[8];
	unsigned nr_discards;
	unsigned nr_reports;
	bool done;
};

/* ---- The discard hook --------------------------------------------------- */

/*
 * discard(): the library has converted [gpa, gpa + size) (host-page
 * aligned) with KVM_SET_MEMORY_ATTRIBUTES; drop the copy that is no longer
 * in use, so it neither leaks memory nor leaks data into the next
 * conversion. It runs on the faulting vCPU's thread, and with several
 * vCPUs on several threads at once: what it does with the memory is safe
 * for that (each call owns its range); the record it keeps for the checks
 * is not, which is fine with the one vCPU of this example.
 */
static int
discard(void *user, uint64_t gpa, uint64_t size, uint32_t to_private)
{
	struct vmm *v = user;
	struct memfault_region_info info;
	struct memfault_region *region;
	uint64_t off;
	int r;

	r = memfault_vm_find_region(v->ev.vm, gpa, &region, NULL);
	if (r)
		return r;
	r = memfault_region_get_info(region, &info, sizeof(info));
	if (r)
		return r;
	off = gpa - info.gpa;
	if (size > info.size - off)
		return -ERANGE;
	printf("       conversion of [%#" PRIx64 ", +%#" PRIx64 ") to %s: ", gpa,
	       size, to_private ? "private" : "shared");
	if (to_private) {
		/* the shared copy: anonymous memory reads as zeros again */
		printf("MADV_DONTNEED on the shared copy\n");
		if (madvise((void *)(uintptr_t)(info.hva + off), size,
			    MADV_DONTNEED))
			return -errno;
	} else {
		/* the private copy: the guest_memfd's pages are freed */
		printf("FALLOC_FL_PUNCH_HOLE on the guest_memfd\n");
		/* the memslot maps the guest_memfd from offset 0 */
		if (fallocate(v->gmem_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)off, (off_t)size))
			return -errno;
	}
	if (v->nr_discards < sizeof(v->discards) / sizeof(v->discards[0]))
		v->discards[v->nr_discards] =
			(struct discard){ gpa, size, to_private };
	v->nr_discards++;
	return MEMFAULT_RESOLVED;
}

/* ---- The guest ------------------------------------------------------------ */

/* What each report must be, and why: the script (examples/meson.build)
 * stores 0x5151... (shared) and 0xc0ffee (private) to A, 0xb0b0 to B. */
static const struct {
	uint64_t value;
	const char *what;
} expected_reports[] = {
	{ 0x5151515151515151ull, "A, shared load after a shared store" },
	{ 0xc0ffee, "A, private load after the conversion to private" },
	{ 0, "A, shared load: the shared copy was discarded" },
	{ 0, "A, private load: the private copy was discarded" },
	{ 0x4141414141414141ull, "B, shared load: the host's data" },
};
#define NR_REPORTS (sizeof(expected_reports) / sizeof(expected_reports[0]))

/* The conversions, in order, as (page, to_private). */
static const struct {
	unsigned page;
	uint32_t to_private;
} expected_conversions[] = {
	{ 0, 1 }, /* A: the private store */
	{ 0, 0 }, /* A: the shared load */
	{ 0, 1 }, /* A: the private load */
	{ 1, 0 }, /* B: the shared load */
};
#define NR_CONVERSIONS                                                         \
	(sizeof(expected_conversions) / sizeof(expected_conversions[0]))

static int
run_guest(struct vmm *v)
{
	struct kvm_run *run = v->ev.run;
	struct memfault_fault f;
	uint64_t value;
	unsigned n, i;
	int r;

	for (n = 1; !v->done; n++) {
		if (n > 32)
			return example_fail("the guest did not finish", -ETIMEDOUT);
		/* conversions are resolved inside, with the discard hook */
		r = memfault_vcpu_run_dispatch(v->ev.vcpu);
		switch (r) {
		case MEMFAULT_RUN_EXIT:
			break;
		case MEMFAULT_RUN_INTERRUPTED:
		case MEMFAULT_RUN_RETRY:
			continue;
		case MEMFAULT_RUN_MEMORY_FAULT:
			memfault_vcpu_get_fault(v->ev.vcpu, &f, sizeof(f));
			printf("error: a memory fault the library did not resolve: gpa %#" PRIx64 ", flags %#" PRIx64 ", error %d\n",
			       f.gpa, f.flags, f.error);
			return -EFAULT;
		default:
			return example_fail("memfault_vcpu_run_dispatch", r);
		}
		if (run->exit_reason == KVM_EXIT_HLT) {
			printf("exit: HLT, the guest has finished\n");
			v->done = true;
		} else if (run->exit_reason == KVM_EXIT_MMIO &&
			   run->mmio.is_write && run->mmio.len == 8 &&
			   run->mmio.phys_addr == REPORT_GPA) {
			memcpy(&value, run->mmio.data, 8);
			printf("exit: MMIO report %#" PRIx64 "\n", value);
			i = v->nr_reports++;
			if (i < NR_REPORTS)
				example_check(&v->ev,
					      value == expected_reports[i].value,
					      "%s: %#" PRIx64,
					      expected_reports[i].what,
					      expected_reports[i].value);
		} else {
			printf("error: unexpected exit %u\n", run->exit_reason);
			return -EPROTO;
		}
	}
	return 0;
}

/* ---- Setup ---------------------------------------------------------------- */

/* 1 if VM type 1 can be created, 0 if not (said why), or -errno. */
static int
have_sw_protected(void)
{
	int kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	int types = -1;

	if (kvm_fd >= 0) {
		types = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES);
		close(kvm_fd);
	}
	if (types < 0)
		return example_fail("KVM_CAP_VM_TYPES", -errno);
	if (!(types & (1 << SW_PROTECTED_VM)))
		printf("KVM offers no KVM_X86_SW_PROTECTED_VM (VM types %#x): no private memory here\n",
		       types);
	return !!(types & (1 << SW_PROTECTED_VM));
}

/* The memslot: private copies in a guest_memfd, shared ones in memory. */
static int
add_memory(struct vmm *v)
{
	struct kvm_create_guest_memfd gmem = { .size = MEM_SIZE };
	struct kvm_memory_attributes attrs = {
		.address = MEM_GPA + B_OFFSET,
		.size = v->ev.page_size,
		.attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE,
	};
	void *p;
	int r;

	/* Without GUEST_MEMFD_FLAG_MMAP: the host never maps private memory. */
	v->gmem_fd = ioctl(v->ev.vm_fd, KVM_CREATE_GUEST_MEMFD, &gmem);
	if (v->gmem_fd < 0)
		return example_fail("KVM_CREATE_GUEST_MEMFD", -errno);
	p = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return example_fail("mmap", -errno);
	v->shared = p;
	memset(v->shared + B_OFFSET, HOST_BYTE, v->ev.page_size);
	MEMFAULT_OPTS(memfault_region_opts, region_opts,
		.flags = MEMFAULT_REGION_GUEST_MEMFD,
		.guest_memfd = v->gmem_fd,
		.guest_memfd_offset = 0);
	r = memfault_region_new(v->ev.vm, MEM_SLOT, MEM_GPA, MEM_SIZE,
				v->shared, &region_opts, &v->region);
	if (r)
		return example_fail("memfault_region_new", r);
	printf("memslot %d: %d KiB at GPA %#x, private copies in a guest_memfd, shared copies in anonymous memory\n",
	       MEM_SLOT, MEM_SIZE / 1024, MEM_GPA);
	/* Page B starts private, as a confidential guest's memory does. */
	if (ioctl(v->ev.vm_fd, KVM_SET_MEMORY_ATTRIBUTES, &attrs))
		return example_fail("KVM_SET_MEMORY_ATTRIBUTES", -errno);
	printf("page B (GPA %#x) set private; its shared copy holds %#x bytes from the host\n",
	       MEM_GPA + B_OFFSET, HOST_BYTE);
	return 0;
}

/* Returns 0, a negative errno, or EXAMPLE_EXIT_SKIP. */
static int
setup(struct vmm *v)
{
	MEMFAULT_OPTS(memfault_handlers, handlers,
		.user = v,
		.discard = discard, /* convert: NULL, the library's default */
		.log = example_log);
	const struct memfault_features *f = &v->ev.features;
	int r;

	r = have_sw_protected();
	if (r <= 0)
		return r ? r : EXAMPLE_EXIT_SKIP;
	r = example_vm_new(&v->ev, SW_PROTECTED_VM);
	if (r)
		return r;
	printf("VM: type 1 (KVM_X86_SW_PROTECTED_VM), memory attributes %#" PRIx64 ", guest_memfd flags %#" PRIx64 "\n",
	       f->memory_attributes, f->guest_memfd_flags);
	if (!(f->memory_attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE) ||
	    !(f->flags & MEMFAULT_FEATURE_GUEST_MEMFD)) {
		printf("this VM has no private memory (KVM_MEMORY_ATTRIBUTE_PRIVATE, guest_memfd)\n");
		return EXAMPLE_EXIT_SKIP;
	}
	r = memfault_vm_set_handlers(v->ev.vm, &handlers);
	if (r)
		return example_fail("memfault_vm_set_handlers", r);
	r = add_memory(v);
	if (r)
		return r;
	/* the stats below report handler time: ask for it */
	r = example_vcpu_new(&v->ev, MEMFAULT_VCPU_TIME_HANDLERS);
	if (r)
		return r;
	if (!v->ev.scripted) {
		printf("This KVM runs machine code. In a KVM_X86_SW_PROTECTED_VM the page's attribute decides\n"
		       "whether an access is private, so a guest cannot request an implicit conversion;\n"
		       "that needs SEV-SNP or TDX. Run this example on the KVM simulator.\n");
		return EXAMPLE_EXIT_SKIP;
	}
	return 0;
}

static void
final_checks(struct vmm *v)
{
	struct memfault_vcpu_stats s;
	unsigned i;

	example_check(&v->ev, v->nr_reports == NR_REPORTS,
		      "the guest made %zu reports (%u)", NR_REPORTS,
		      v->nr_reports);
	example_check(&v->ev, v->nr_discards == NR_CONVERSIONS,
		      "the discard hook ran once per conversion (%u, expected %zu)",
		      v->nr_discards, NR_CONVERSIONS);
	for (i = 0; i < NR_CONVERSIONS && i < v->nr_discards; i++) {
		uint64_t gpa = MEM_GPA + expected_conversions[i].page * B_OFFSET;

		example_check(&v->ev,
			      v->discards[i].gpa == gpa &&
				      v->discards[i].size == v->ev.page_size &&
				      v->discards[i].to_private ==
					      expected_conversions[i].to_private,
			      "conversion %u: page %c to %s", i + 1,
			      'A' + expected_conversions[i].page,
			      expected_conversions[i].to_private ? "private" :
								   "shared");
	}
	if (memfault_vcpu_get_stats(v->ev.vcpu, &s, sizeof(s)) == 0) {
		printf("stats: %" PRIu64 " runs, %" PRIu64 " exits, %" PRIu64 " memory faults, %" PRIu64 " conversions, %" PRIu64 " to the VMM, %" PRIu64 " handler us\n",
		       s.runs, s.exits, s.memory_faults, s.conversions,
		       s.to_vmm, s.handler_ns / 1000);
		example_check(&v->ev,
			      s.conversions == NR_CONVERSIONS &&
				      s.memory_faults == NR_CONVERSIONS &&
				      s.to_vmm == 0,
			      "the library resolved %zu conversions itself",
			      NR_CONVERSIONS);
	}
}

int
main(int argc, char **argv)
{
	struct vmm v = { .gmem_fd = -1 };
	int r;

	if (argc != 1) {
		fprintf(stderr, "usage: %s\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	example_set_arch(&v.ev, "x86_64"); /* private memory: x86 only here */

	r = setup(&v);
	if (r == 0)
		r = run_guest(&v);
	if (r == 0)
		final_checks(&v);
	memfault_region_free(v.region);
	example_vm_free(&v.ev);
	if (v.gmem_fd >= 0)
		close(v.gmem_fd);
	if (v.shared)
		munmap(v.shared, MEM_SIZE);
	return example_result(&v.ev, r);
}
