/* SPDX-License-Identifier: MIT */
/*
 * The KVM simulator driven through raw system calls only (open("/dev/kvm"),
 * KVM_CREATE_VM, KVM_CREATE_VCPU, mmap, KVM_RUN, ...), no libmemfault: the
 * fixture of the simulator's own tests (tests/sim/test-kvmsim-*.c). See
 * tests/README.md.
 *
 * Those tests show, for both architecture models and every kernel level,
 * what real kernels do. Each names its source:
 *   [NK]  observed on Debian's 7.2.13 kernel, nested under QEMU
 *   [SW]  observed on a 7.2.13 kernel with CONFIG_KVM_SW_PROTECTED_VM
 *   [RS]  read from the kernel source (the function is named)
 *   [UF]  observed on Debian 7.2.13 with James Houghton's KVM Userfault
 *         series applied (x86_64 and arm64, nested under QEMU): the
 *         "7.2 + KVM Userfault" level
 */
#ifndef MEMFAULT_SIM_RAW_H
#define MEMFAULT_SIM_RAW_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

/* The system headers a test of the fixture uses alongside it. */
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

#include "kvmsim.h"
#include "test-common.h"

#ifndef EHWPOISON
#define EHWPOISON 133
#endif
#ifndef KVM_X86_SW_PROTECTED_VM
#define KVM_X86_SW_PROTECTED_VM 1
#endif

/* The four kernel levels, in the order loop tests count them. */
extern const uint32_t sim_levels[4];
/* Loop tests: _i in [0, 8) covers arch x level. */
#define LOOP_ARCH(i)  ((uint32_t)((i) / 4 + 1))
#define LOOP_LEVEL(i) (sim_levels[(i) % 4])

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

/* Reset the simulator to @arch/@level with @quirks (or the defaults). */
void reset_q(uint32_t arch, uint32_t level, uint64_t quirks);
void reset(uint32_t arch, uint32_t level);
/* open("/dev/kvm"), asserted. */
int open_kvm(void);
/* vCPU @id of s->vm, its kvm_run mapped (s->vcpu, s->run). */
void add_vcpu(struct sim *s, unsigned id);
/* Reset the simulator to @arch/@level/@quirks and open a VM of @type with
 * one vCPU. */
void start_full(struct sim *s, uint32_t arch, uint32_t level,
		uint64_t quirks, unsigned long type);
/* The same with the default quirks and VM type 0. */
void start(struct sim *s, uint32_t arch, uint32_t level);
/* One KVM_RUN; returns 0 or the errno (also in s->ret, s->err). */
int run(struct sim *s);

/* One KVM_RUN with its return value, errno and exit reason asserted. */
#define RUN_EXPECT(s, ret_, err_, reason_)                                     \
	do {                                                                   \
		run(s);                                                        \
		ck_assert_int_eq((s)->ret, (ret_));                            \
		ck_assert_int_eq((s)->err, (err_));                            \
		ck_assert_uint_eq((s)->run->exit_reason, (reason_));           \
	} while (0)

/* The memory-fault exit's flags, gpa and size asserted. */
#define MF_EXPECT(s, flags_, gpa_, size_)                                      \
	do {                                                                   \
		ck_assert_uint_eq((s)->run->memory_fault.flags, (flags_));     \
		ck_assert_uint_eq((s)->run->memory_fault.gpa, (gpa_));         \
		ck_assert_uint_eq((s)->run->memory_fault.size, (size_));       \
	} while (0)

/* What KVM_RUN gives after the last step: x86 triple fault, arm64 PSCI. */
uint32_t done_reason(const struct sim *s);
/* The vCPU's guest script (kvmsim.h), asserted. */
void script(struct sim *s, const char *text);
/* The script's accumulator and step (kvmsim_vcpu_get_state()). */
uint64_t acc_of(struct sim *s);
size_t pc_of(struct sim *s);
/* KVM_SET_USER_MEMORY_REGION2 (with the proposed bitmap); 0 or errno. */
int region2(int vm, uint32_t slot, uint32_t flags, uint64_t gpa,
	    uint64_t size, const void *hva, int gmem, uint64_t gmem_off,
	    const void *bitmap);
/* KVM_SET_USER_MEMORY_REGION (v1); 0 or errno. */
int region1(int vm, uint32_t slot, uint32_t flags, uint64_t gpa,
	    uint64_t size, const void *hva);
/* KVM_CREATE_GUEST_MEMFD: the fd, or -errno. */
int create_gmem(int vm, uint64_t size, uint64_t flags);
/* KVM_SET_MEMORY_ATTRIBUTES; 0 or errno. */
int set_attrs(int vm, uint64_t gpa, uint64_t size, uint64_t attrs);
/* @n anonymous pages, every byte @fill. */
uint8_t *pages(struct sim *s, size_t n, int fill);
/* printf into one of four rotating static buffers (for assertion
 * messages and scripts). */
char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
/* kvmsim_get_stats(), asserted. */
struct kvmsim_stats stats(void);

#endif
