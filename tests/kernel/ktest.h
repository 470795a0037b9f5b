/* SPDX-License-Identifier: MIT */
/*
 * ktest: the real-kernel side of the kernel suite. Sets a VM up with raw
 * KVM ioctls (KVM_CREATE_VM, memslots, guest_memfd, registers) and runs it
 * through libmemfault's public API only. Every memfault_vcpu_run() is
 * recorded as a KRES line (kres.h).
 *
 * Guest (code bytes in ktest.c, reference source in guest-x86.S and
 * guest-arm64.S): three entry points.
 *   KT_ENTRY_MAIN  the ordinary exits, then falls through to KT_ENTRY_LOAD
 *     x86 (16-bit real mode at GPA 0x1000):
 *       1 OUT 0x3f8 <- 0x42     2 IN 0x3f8 (VMM supplies V)
 *       3 OUT 0x3f8 <- V        4 MMIO write 0xd0000 len 1 <- V
 *       5 MMIO read 0xd0004 len 1 (VMM supplies W)
 *       6 OUT 0x3f8 <- W
 *     arm64 (EL1, MMU off, at GPA 0):
 *       1 MMIO write 0x10000000 len 4 <- 0x42
 *       2 MMIO read 0x10000004 len 4 (VMM supplies V)
 *       3 MMIO write 0x10000008 len 4 <- V
 *     A read value that never reached the guest shows: x86 would write
 *     0x42 (still in %al), arm64 would repeat the read (the kernel
 *     re-executes an uncompleted load).
 *   KT_ENTRY_LOAD  load from KT_TEST_GPA, report the value (x86: OUT of the
 *                  byte, then HLT; arm64: MMIO write to 0x1000000c), spin
 *   KT_ENTRY_SPIN  a branch to itself: no exit until kicked
 *   KT_ENTRY_PAGES load from pages 0, 2, 1, 3 of KT_TEST_GPA (at byte
 *                  offsets 0x0, 0x8, 0x10, 0x18 of the page), then from
 *                  page 0 again (offset 0x20), reporting each value as
 *                  KT_ENTRY_LOAD does; then x86 HLT, arm64 spins. 4 KiB
 *                  pages: the offsets are 0x1000 apart (kt_pages_off[])
 * The dispatch scenarios (test-kernel-dispatch.c, test-kernel-swprot.c)
 * run the guest with memfault_vcpu_run_dispatch() and register slot 1 with
 * memfault_region_new(); their handlers' observations are KRES lines too.
 * The simulator build (KT_SIM) gives the vCPU the same program as a kvmsim
 * guest script instead (ktest.c), so that both runs print the same lines.
 */
#ifndef MEMFAULT_TESTS_KTEST_H
#define MEMFAULT_TESTS_KTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <check.h>
#include <linux/kvm.h>

#include <memfault/memfault.h>

#include "kres.h"
#include "test-common.h"
#if defined(KT_SIM)
#include <kvmsim.h>
#endif

/* Older libc headers lack these (uapi values). */
#ifndef MADV_HWPOISON
#define MADV_HWPOISON 100
#endif
#ifndef EHWPOISON
#define EHWPOISON 133
#endif

/* guest_memfd the VMM can mmap(), its pages shared from the start. */
#define GMEM_FLAGS (GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED)

/*
 * The architecture of the guest and of the VMM code: the host's, or, in the
 * simulator build (KT_SIM), the model KT_SIM_ARCH (enum memfault_arch), so
 * that the arm64 scenarios also run on an x86-64 host.
 */
#if defined(KT_SIM)
#if !defined(KT_SIM_ARCH)
#error "KT_SIM needs KT_SIM_ARCH"
#endif
#define KT_X86 (KT_SIM_ARCH == 1)
#define KT_ARM64 (KT_SIM_ARCH == 2)
#elif defined(__x86_64__)
#define KT_X86 1
#define KT_ARM64 0
#elif defined(__aarch64__)
#define KT_X86 0
#define KT_ARM64 1
#else
#error "the kernel suite supports x86_64 and aarch64"
#endif

#if KT_X86
#define KT_ARCH MEMFAULT_ARCH_X86_64
#define KT_CODE_GPA 0x1000ull
#define KT_ENTRY_MAIN (KT_CODE_GPA + 0x00)
#define KT_ENTRY_LOAD (KT_CODE_GPA + 0x16)
#define KT_ENTRY_SPIN (KT_CODE_GPA + 0x23)
#define KT_ENTRY_PAGES (KT_CODE_GPA + 0x25)
#define KT_TEST_GPA 0x20000ull
#define KT_MMIO_GPA 0xd0000ull
#define KT_PIO_PORT 0x3f8
#elif KT_ARM64
#define KT_ARCH MEMFAULT_ARCH_ARM64
#define KT_CODE_GPA 0x0ull
#define KT_ENTRY_MAIN (KT_CODE_GPA + 0x00)
#define KT_ENTRY_LOAD (KT_CODE_GPA + 0x18)
#define KT_ENTRY_SPIN (KT_CODE_GPA + 0x28)
#define KT_ENTRY_PAGES (KT_CODE_GPA + 0x2c)
#define KT_TEST_GPA 0x20000000ull
#define KT_MMIO_GPA 0x10000000ull
#else
#error "unknown KT_SIM_ARCH"
#endif

#define KT_SLOT0_SIZE 0x10000ull
#define KT_TEST_SIZE 0x2000ull
/* What the guest finds at KT_TEST_GPA in a normal slot. */
#define KT_PATTERN 0x5a
/* The loads of KT_ENTRY_PAGES, in order: offsets from KT_TEST_GPA. */
#define KT_PAGES_LOADS 5
extern const uint64_t kt_pages_off[KT_PAGES_LOADS];
/* The size of memory KT_ENTRY_PAGES reads: four 4 KiB pages. */
#define KT_PAGES_SIZE 0x4000ull

/* One VM with one vCPU. */
struct kt_vm {
	const char *scen; /* scenario name for the KRES lines */
	int step;         /* last KRES step printed */
	int vm_fd;
	int vcpu_fd;
	void *mem0;
	void *test; /* normal test slot memory, or NULL */
	size_t test_size; /* its size, if not KT_TEST_SIZE */
	int gmem_fd;
	void *gmem_map;
	struct memfault_vm *mvm;
	struct memfault_vcpu *mvcpu;
	struct memfault_region *region; /* slot 1 through memfault_region_new() */
	void *repl;                     /* memory that replaced slot 1, or NULL */
	struct kvm_run *run;
	struct memfault_fault fault; /* of the last run */
	int get_fault_rc;            /* memfault_vcpu_get_fault() of the last run */
};

/* /dev/kvm, opened once; -1 if it is missing or unusable. */
int kt_kvm_fd(void);
/* Host page size. */
uint64_t kt_page_size(void);
/* uname -r starts with @prefix (KT_SIM: kt_sim_release, the model's). */
bool kt_kernel_is(const char *prefix);
#if defined(KT_SIM)
/* "7.2.0-kvmsim" by default; "6.1.0-kvmsim" etc. at another level. */
extern const char *kt_sim_release;
#endif

/* A VM of @type with slot 0 (code) and a memfault_vm; no vCPU yet. */
void kt_vm_create(struct kt_vm *v, unsigned long type, const char *scen);
/* Slot 1 at KT_TEST_GPA: anonymous memory filled with KT_PATTERN. */
void kt_vm_normal_slot(struct kt_vm *v);
/* Slot 1 at KT_TEST_GPA backed by a new guest_memfd with @gmem_flags, also
 * mmap()ed (when MMAP is in @gmem_flags) and filled with KT_PATTERN. */
void kt_vm_gmem_slot(struct kt_vm *v, uint64_t gmem_flags);
/* Slot 1 at KT_TEST_GPA registered with memfault_region_new() (v->region):
 * anonymous memory filled with @pattern. */
void kt_region_normal(struct kt_vm *v, uint8_t pattern);
/* The same with MEMFAULT_REGION_GUEST_MEMFD: a new guest_memfd with
 * @gmem_flags, mmap()ed and filled with @pattern when MMAP is in them (the
 * mapping is then the slot's hva), else an anonymous hva as in
 * kt_vm_gmem_slot(). */
void kt_region_gmem(struct kt_vm *v, uint64_t gmem_flags, uint8_t pattern);
/* Slot 1 at KT_TEST_GPA, @size bytes, registered with memfault_region_new()
 * with @flags (enum memfault_region_flag): anonymous memory filled with
 * @pattern, or, with MEMFAULT_REGION_GUEST_MEMFD, a new guest_memfd with
 * @gmem_flags as in kt_region_gmem(). */
void kt_region_flags(struct kt_vm *v, uint64_t size, uint64_t flags,
		     uint64_t gmem_flags, uint8_t pattern);
/* Replace the region of slot 1 by anonymous memory filled with @pattern at
 * the same gpa and size (memfault_region_free() + memfault_region_new()),
 * as a VMM resolves a guest_memfd failure; callable from a handler.
 * Returns 0 or a negative errno. */
int kt_region_replace(struct kt_vm *v, uint8_t pattern);
/* Unmap and close the guest_memfd: the slot stays, kvm_gmem_get_pfn()
 * fails from now on (exit 39, EFAULT). */
void kt_vm_close_gmem(struct kt_vm *v);
/* KVM_SET_MEMORY_ATTRIBUTES; returns 0 or -errno. */
int kt_vm_set_attributes(struct kt_vm *v, uint64_t gpa, uint64_t size,
			 uint64_t attributes);
/* vCPU 0 starting at @entry, wrapped with memfault_vcpu_new(). */
void kt_vcpu_create(struct kt_vm *v, uint64_t entry);
/* Start vCPU @vcpu_fd of @v over at @entry. */
void kt_vcpu_entry(struct kt_vm *v, int vcpu_fd, uint64_t entry);
/* Another vCPU @id of @v's VM at @entry, wrapped with memfault_vcpu_new(). */
void kt_vcpu_add(struct kt_vm *v, uint32_t id, uint64_t entry, int *ret_fd,
		 struct memfault_vcpu **ret_vcpu);
void kt_vm_destroy(struct kt_vm *v);

/* memfault_vcpu_run() once; records it as the next KRES step. */
int kt_run(struct kt_vm *v);
/* memfault_vcpu_run_dispatch() once; records it as the next KRES step. */
int kt_dispatch(struct kt_vm *v);
/* memfault_vcpu_get_stats() into @st; records it as the next KRES step. */
void kt_stats(struct kt_vm *v, struct memfault_vcpu_stats *st);
/* Print a KRES line for a result obtained elsewhere (another thread). */
void kt_record(struct kt_vm *v, int rc);

/* Assertions on the last run. */
void kt_expect_exit(struct kt_vm *v, int rc, uint32_t exit_reason);
void kt_expect_io_out(struct kt_vm *v, int rc, uint8_t data);
/* Expect an IN exit and supply @value. */
void kt_expect_io_in(struct kt_vm *v, int rc, uint8_t value);
void kt_expect_mmio_write(struct kt_vm *v, int rc, uint64_t gpa,
			  uint32_t len, uint64_t data);
/* Expect an MMIO read and supply @value. */
void kt_expect_mmio_read(struct kt_vm *v, int rc, uint64_t gpa, uint32_t len,
			 uint64_t value);
/* Expect the guest to report @value loaded from KT_TEST_GPA. */
void kt_expect_report(struct kt_vm *v, int rc, uint32_t value);
void kt_expect_fault(struct kt_vm *v, int rc, uint64_t gpa, uint64_t size,
		     uint64_t flags, uint64_t kernel_flags, int32_t error,
		     uint32_t origin);

#if !defined(KT_SIM)
/* memfault_vm_new(@vm_fd) in a thread where seccomp refuses
 * KVM_SET_USER_MEMORY_REGION(2) on @vm_fd: 0 and its features in @f, the
 * error of memfault_vm_new(), or -ENOSYS / -EINVAL where the kernel has
 * no seccomp filters. */
int kt_probe_without_memslots(int vm_fd, struct memfault_features *f);
#endif
/* Whether this process may use userfaultfd: tc_uffd_usable()
 * (test-common.h). */

/*
 * What a scenario needs of the kernel. A scenario states its needs with
 * kt_require() instead of a kernel version: each need is probed on this
 * kernel (raw ioctls on a scratch VM, /sys/module, geteuid(); in the
 * simulator build, on the simulated kernel), and a scenario whose need is
 * missing is skipped by name with the reason.
 */
enum kt_need {
	/* guest_memfd on a default VM, with MMAP|INIT_SHARED (6.18+) */
	KT_NEED_GMEM_MMAP = 1u << 0,
	/* CAP_SYS_ADMIN for MADV_HWPOISON (root; always met in KT_SIM) */
	KT_NEED_ROOT = 1u << 1,
	/* KVM_CAP_MEMORY_ATTRIBUTES on a default VM */
	KT_NEED_MEM_ATTRIBUTES = 1u << 2,
	/* VM type 1, KVM_X86_SW_PROTECTED_VM */
	KT_NEED_SW_PROTECTED_VM = 1u << 3,
	/* guest memory accesses executed by the CPU through the stage-2 /
	 * EPT / NPT tables (VMX, SVM, arm64), not by KVM's instruction
	 * emulator (PVM): only then does a failed host access surface as
	 * an error of KVM_RUN (-EFAULT, exit 39) rather than as MMIO */
	KT_NEED_CPU_ACCESS = 1u << 4,
};

/* The KVM backend of this /dev/kvm: "vmx", "svm", "pvm" (x86, from
 * /sys/module/kvm_intel, kvm_amd, kvm_pvm), "arm64", "x86" where none is
 * found, "sim" in the simulator build. */
const char *kt_backend(void);
/* The guest's memory accesses go through KVM's instruction emulator (PVM):
 * a memslot whose host memory is unmapped gives KVM_EXIT_MMIO at the gpa. */
bool kt_accesses_emulated(void);
/* Probe each need in @needs (enum kt_need); true if all are met. Else
 * print "KSKIP <arch> <scen> need=<name> <reason>" and "# SKIP ..." once
 * per missing need, count the skip, and return false: the test then
 * returns at once (a named skip, not a pass, in kt_main()'s summary). */
bool kt_require(const char *scen, unsigned needs);

/* Make stdout line-buffered (tc_init()); call before any output. */
void kt_init(void);
/* Run a suite with the one runner (tc_run_counted(): Check CK_ENV
 * verbosity; 77 when every scenario skipped for a missing need) and print
 * the "# N tests, M skipped" line; 77 without a usable /dev/kvm. */
int kt_main(Suite *s);
#if defined(KT_SIM)
/* Forget the cached /dev/kvm fd (after kvmsim_reset() closed it). */
void kt_kvm_forget(void);
#endif

/* The suites, one per test executable (test-kernel-*.c). */
Suite *kt_suite_exits(void);
Suite *kt_suite_faults(void);
Suite *kt_suite_kick(void);
Suite *kt_suite_features(void);
Suite *kt_suite_swprot(void);
Suite *kt_suite_dispatch(void);
Suite *kt_suite_uffd(void);
Suite *kt_suite_userfault(void);

#endif /* MEMFAULT_TESTS_KTEST_H */
