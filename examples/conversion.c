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
 * The guest (two pages, A and B, of a guest_memfd-backed memslot at GPA
 * 0x100000; the host put 0x4141... in B's shared copy):
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
 * tests/kernel/test-kernel-swprot.c). The KVM simulator models the C-bit
 * in its x86 model (step flags "private" and "shared") and offers VM type 1
 * with quirk 0x20 (KVMSIM_QUIRKS=0x26: the 7.2 defaults plus
 * SW_PROTECTED_VM); that is where this example runs. On anything else it
 * says why it cannot and exits 77.
 *
 * Usage:
 *   LD_PRELOAD=build/tests/sim/libkvmsim.so conversion
 *       (KVMSIM_ARCH=x86_64 and KVMSIM_QUIRKS=0x26 are set when unset)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_DEFAULT, fallocate() */
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

#include <linux/falloc.h>
#include <linux/kvm.h> /* the project's copy of the Linux 7.2 uapi */
#include <memfault/memfault.h>

#define EXIT_SKIP 77

/* KVM_X86_SW_PROTECTED_VM, from the x86 uapi (asm/kvm.h): an arm64 build,
 * which may still drive the simulator's x86 model, does not have it. */
#define SW_PROTECTED_VM 1

#define MEM_SLOT 1
#define MEM_GPA 0x100000
#define NR_PAGES 2
#define REPORT_GPA 0x10000000 /* no memslot: the guest's reports are MMIO */

#define SHARED_BYTE 0x51 /* the guest's shared store to A */
#define HOST_BYTE 0x41   /* what the host put in B's shared copy */
#define PRIVATE_A 0xc0ffee
#define PRIVATE_B 0xb0b0

/* One conversion the library made, as the discard hook saw it. */
struct discard {
	uint64_t gpa, size;
	uint32_t to_private;
};

struct vmm {
	int (*sim_set_script)(int vcpu_fd, const char *text);
	size_t page_size;
	int kvm_fd, gmem_fd;
	struct memfault_vm *vm;
	struct memfault_vcpu *vcpu;
	struct memfault_region *region;
	uint8_t *shared; /* the memslot's memory: the shared copies */
	struct discard discards[8];
	unsigned nr_discards;
	uint64_t reports[8];
	unsigned nr_reports;
	bool done;
	unsigned checks_passed, checks_failed;
};

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

static int
fail(const char *what, int r)
{
	printf("error: %s: %s\n", what, strerror(-r));
	return r;
}

static uint64_t
repeat_byte(uint8_t b)
{
	return 0x0101010101010101ull * b;
}

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

	r = memfault_vm_find_region(v->vm, gpa, &region, NULL);
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

static void
log_message(void *user, int level, const char *message)
{
	if (level <= 4)
		fprintf(stderr, "libmemfault: %s\n", message);
}

/* ---- The guest ------------------------------------------------------------ */

/*
 * The simulator's script; "private" and "shared" are the C-bit of each
 * access. Every load is followed by an 8-byte MMIO write of what it read.
 */
static int
build_script(const struct vmm *v, char *buf, size_t size)
{
	uint64_t a = MEM_GPA, b = MEM_GPA + v->page_size;
	int n;

	n = snprintf(buf, size,
		     "store:%#" PRIx64 ":8:%#" PRIx64 ":shared;"
		     "load:%#" PRIx64 ":8:shared;mmio_write:%#x:8:acc;"
		     "store:%#" PRIx64 ":8:%#x:private;"
		     "load:%#" PRIx64 ":8:private;mmio_write:%#x:8:acc;"
		     "load:%#" PRIx64 ":8:shared;mmio_write:%#x:8:acc;"
		     "load:%#" PRIx64 ":8:private;mmio_write:%#x:8:acc;"
		     "store:%#" PRIx64 ":8:%#x:private;"
		     "load:%#" PRIx64 ":8:shared;mmio_write:%#x:8:acc;"
		     "hlt",
		     a, repeat_byte(SHARED_BYTE), a, REPORT_GPA, a, PRIVATE_A,
		     a, REPORT_GPA, a, REPORT_GPA, a, REPORT_GPA, b, PRIVATE_B,
		     b, REPORT_GPA);
	return n < 0 || (size_t)n >= size ? -ENOSPC : 0;
}

/* What each report must be, and why. */
static const struct {
	uint64_t value;
	const char *what;
} expected_reports[] = {
	{ 0x5151515151515151ull, "A, shared load after a shared store" },
	{ PRIVATE_A, "A, private load after the conversion to private" },
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
	struct memfault_fault f;
	struct kvm_run *run;
	unsigned n;
	int r;

	r = memfault_vcpu_get_run(v->vcpu, &run);
	if (r)
		return fail("memfault_vcpu_get_run", r);
	for (n = 1; !v->done; n++) {
		if (n > 32)
			return fail("the guest did not finish", -ETIMEDOUT);
		/* conversions are resolved inside, with the discard hook */
		r = memfault_vcpu_run_dispatch(v->vcpu);
		switch (r) {
		case MEMFAULT_RUN_EXIT:
			break;
		case MEMFAULT_RUN_INTERRUPTED:
		case MEMFAULT_RUN_RETRY:
			continue;
		case MEMFAULT_RUN_MEMORY_FAULT:
			memfault_vcpu_get_fault(v->vcpu, &f, sizeof(f));
			printf("error: a memory fault the library did not resolve: gpa %#" PRIx64 ", flags %#" PRIx64 ", error %d\n",
			       f.gpa, f.flags, f.error);
			return -EFAULT;
		default:
			return fail("memfault_vcpu_run_dispatch", r);
		}
		if (run->exit_reason == KVM_EXIT_HLT) {
			printf("exit: HLT, the guest has finished\n");
			v->done = true;
		} else if (run->exit_reason == KVM_EXIT_MMIO &&
			   run->mmio.is_write && run->mmio.len == 8 &&
			   run->mmio.phys_addr == REPORT_GPA) {
			uint64_t value;
			unsigned i = v->nr_reports++;

			memcpy(&value, run->mmio.data, 8);
			printf("exit: MMIO report %#" PRIx64 "\n", value);
			if (i < NR_REPORTS)
				check(v, value == expected_reports[i].value,
				      "%s: %#" PRIx64, expected_reports[i].what,
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
have_sw_protected(int kvm_fd)
{
	int types = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES);

	if (types < 0)
		return -errno;
	if (!(types & (1 << SW_PROTECTED_VM))) {
		printf("KVM offers no KVM_X86_SW_PROTECTED_VM (VM types %#x): no private memory here\n",
		       types);
		return 0;
	}
	return 1;
}

static int
setup(struct vmm *v)
{
	/* the stats below report handler time: ask for it */
	MEMFAULT_OPTS(memfault_vcpu_opts, vcpu_opts,
		.flags = MEMFAULT_VCPU_OWN_FD | MEMFAULT_VCPU_TIME_HANDLERS);
	MEMFAULT_OPTS(memfault_handlers, handlers,
		.user = v,
		.discard = discard, /* convert: NULL, the library's default */
		.log = log_message);
	struct kvm_create_guest_memfd gmem = { .size = NR_PAGES * v->page_size };
	struct kvm_memory_attributes attrs = {
		.address = MEM_GPA + v->page_size,
		.size = v->page_size,
		.attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE,
	};
	struct memfault_features f;
	char script[1024];
	int vm_fd, vcpu_fd, r;

	v->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (v->kvm_fd < 0)
		return fail("open /dev/kvm", -errno);
	r = have_sw_protected(v->kvm_fd);
	if (r <= 0)
		return r ? fail("KVM_CAP_VM_TYPES", r) : EXIT_SKIP;
	if (!v->sim_set_script) {
		printf("This is real KVM. In a KVM_X86_SW_PROTECTED_VM the page's attribute decides\n"
		       "whether an access is private, so a guest cannot request an implicit conversion;\n"
		       "that needs SEV-SNP or TDX. Run this example on the KVM simulator.\n");
		return EXIT_SKIP;
	}
	MEMFAULT_OPTS(memfault_vm_opts, vm_opts,
		.flags = MEMFAULT_VM_OWN_FD,
		.kvm_fd = v->kvm_fd,
		.arch = MEMFAULT_ARCH_X86_64);
	vm_fd = ioctl(v->kvm_fd, KVM_CREATE_VM, SW_PROTECTED_VM);
	if (vm_fd < 0)
		return fail("KVM_CREATE_VM(KVM_X86_SW_PROTECTED_VM)", -errno);
	r = memfault_vm_new(vm_fd, &vm_opts, &v->vm);
	if (r) {
		close(vm_fd);
		return fail("memfault_vm_new", r);
	}
	r = memfault_vm_get_features(v->vm, &f, sizeof(f));
	if (r)
		return fail("memfault_vm_get_features", r);
	printf("VM: type 1 (KVM_X86_SW_PROTECTED_VM), memory attributes %#" PRIx64 ", guest_memfd flags %#" PRIx64 "\n",
	       f.memory_attributes, f.guest_memfd_flags);
	if (!(f.memory_attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE) ||
	    !(f.flags & MEMFAULT_FEATURE_GUEST_MEMFD)) {
		printf("this VM has no private memory (KVM_MEMORY_ATTRIBUTE_PRIVATE, guest_memfd)\n");
		return EXIT_SKIP;
	}
	r = memfault_vm_set_handlers(v->vm, &handlers);
	if (r)
		return fail("memfault_vm_set_handlers", r);

	/* Private copies: a guest_memfd without MMAP (the host never maps
	 * private memory). Shared copies: ordinary anonymous memory. */
	v->gmem_fd = ioctl(vm_fd, KVM_CREATE_GUEST_MEMFD, &gmem);
	if (v->gmem_fd < 0)
		return fail("KVM_CREATE_GUEST_MEMFD", -errno);
	v->shared = mmap(NULL, NR_PAGES * v->page_size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (v->shared == MAP_FAILED) {
		v->shared = NULL;
		return fail("mmap", -errno);
	}
	memset(v->shared + v->page_size, HOST_BYTE, v->page_size);
	MEMFAULT_OPTS(memfault_region_opts, region_opts,
		.flags = MEMFAULT_REGION_GUEST_MEMFD,
		.guest_memfd = v->gmem_fd,
		.guest_memfd_offset = 0);
	r = memfault_region_new(v->vm, MEM_SLOT, MEM_GPA,
				NR_PAGES * v->page_size, v->shared,
				&region_opts, &v->region);
	if (r)
		return fail("memfault_region_new", r);
	printf("memslot %d: %d pages at GPA %#x, private copies in a guest_memfd, shared copies in anonymous memory\n",
	       MEM_SLOT, NR_PAGES, MEM_GPA);
	/* Page B starts private, as a confidential guest's memory does. */
	if (ioctl(vm_fd, KVM_SET_MEMORY_ATTRIBUTES, &attrs))
		return fail("KVM_SET_MEMORY_ATTRIBUTES", -errno);
	printf("page B (GPA %#" PRIx64 ") set private; its shared copy holds %#x bytes from the host\n",
	       (uint64_t)attrs.address, HOST_BYTE);

	vcpu_fd = ioctl(vm_fd, KVM_CREATE_VCPU, 0);
	if (vcpu_fd < 0)
		return fail("KVM_CREATE_VCPU", -errno);
	r = build_script(v, script, sizeof(script));
	if (r == 0)
		r = v->sim_set_script(vcpu_fd, script);
	if (r) {
		close(vcpu_fd);
		return fail("the guest script", r);
	}
	printf("vCPU: simulator script \"%s\"\n", script);
	r = memfault_vcpu_new(v->vm, vcpu_fd, &vcpu_opts, &v->vcpu);
	if (r) {
		close(vcpu_fd);
		return fail("memfault_vcpu_new", r);
	}
	return 0;
}

static void
teardown(struct vmm *v)
{
	memfault_vcpu_free(v->vcpu);
	memfault_region_free(v->region);
	memfault_vm_free(v->vm);
	if (v->gmem_fd >= 0)
		close(v->gmem_fd);
	if (v->shared)
		munmap(v->shared, NR_PAGES * v->page_size);
	if (v->kvm_fd >= 0)
		close(v->kvm_fd);
}

static void
final_checks(struct vmm *v)
{
	struct memfault_vcpu_stats s;
	unsigned i;

	check(v, v->nr_reports == NR_REPORTS, "the guest made %zu reports (%u)",
	      NR_REPORTS, v->nr_reports);
	check(v, v->nr_discards == NR_CONVERSIONS,
	      "the discard hook ran once per conversion (%u, expected %zu)",
	      v->nr_discards, NR_CONVERSIONS);
	for (i = 0; i < NR_CONVERSIONS && i < v->nr_discards; i++) {
		uint64_t gpa = MEM_GPA +
			       expected_conversions[i].page * v->page_size;

		check(v, v->discards[i].gpa == gpa &&
				 v->discards[i].size == v->page_size &&
				 v->discards[i].to_private ==
					 expected_conversions[i].to_private,
		      "conversion %u: page %c to %s", i + 1,
		      'A' + expected_conversions[i].page,
		      expected_conversions[i].to_private ? "private" : "shared");
	}
	if (memfault_vcpu_get_stats(v->vcpu, &s, sizeof(s)) == 0) {
		printf("stats: %" PRIu64 " runs, %" PRIu64 " exits, %" PRIu64 " memory faults, %" PRIu64 " conversions, %" PRIu64 " to the VMM, %" PRIu64 " handler us\n",
		       s.runs, s.exits, s.memory_faults, s.conversions,
		       s.to_vmm, s.handler_ns / 1000);
		check(v, s.conversions == NR_CONVERSIONS &&
				 s.memory_faults == NR_CONVERSIONS &&
				 s.to_vmm == 0,
		      "the library resolved %zu conversions itself",
		      NR_CONVERSIONS);
	}
}

int
main(int argc, char **argv)
{
	struct vmm v = { .kvm_fd = -1, .gmem_fd = -1 };
	void *sym;
	int r;

	if (argc != 1) {
		fprintf(stderr, "usage: %s\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	v.page_size = (size_t)sysconf(_SC_PAGESIZE);

	sym = dlsym(RTLD_DEFAULT, "kvmsim_vcpu_set_script_text");
	v.sim_set_script = (int (*)(int, const char *))sym;
	if (v.sim_set_script) {
		/* The simulator reads its model when /dev/kvm is first opened:
		 * x86-64, and VM type 1 on top of the 7.2 quirks. */
		if (setenv("KVMSIM_ARCH", "x86_64", 0) ||
		    setenv("KVMSIM_QUIRKS", "0x26", 0)) {
			perror("setenv");
			return 1;
		}
		if (strcmp(getenv("KVMSIM_ARCH"), "x86_64") &&
		    strcmp(getenv("KVMSIM_ARCH"), "x86")) {
			printf("KVM: the simulator's %s model: no private memory on arm64\n",
			       getenv("KVMSIM_ARCH"));
			return EXIT_SKIP;
		}
		printf("KVM: the simulator (x86_64, KVMSIM_QUIRKS=%s)\n",
		       getenv("KVMSIM_QUIRKS"));
	} else {
		printf("KVM: /dev/kvm\n");
	}

	r = setup(&v);
	if (r == 0)
		r = run_guest(&v);
	if (r == 0)
		final_checks(&v);
	teardown(&v);

	if (r == EXIT_SKIP) {
		printf("result: SKIPPED\n");
		return EXIT_SKIP;
	}
	if (r < 0 || v.checks_failed) {
		printf("result: FAILED (%u of %u checks failed)\n",
		       v.checks_failed, v.checks_passed + v.checks_failed);
		return 1;
	}
	printf("result: all %u checks passed\n", v.checks_passed);
	return 0;
}
