/* SPDX-License-Identifier: MIT */
/*
 * The fixture of the generated bad-input matrix (gen-badinput.py): one VM,
 * one vCPU, one region (a memslot of FX_PAGES pages at FX_GPA, all
 * missing) and, where the kernel allows, one userfaultfd object, on the
 * simulator; fds that are closed or not KVM's; output buffers filled with
 * a pattern; and the checks the generated cases use.
 */
#ifndef MEMFAULT_BADINPUT_FIXTURE_H
#define MEMFAULT_BADINPUT_FIXTURE_H

#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <linux/kvm.h>

#include "memfault/memfault.h"

#define FX_GPA 0x20000000ull
#define FX_GPA2 0x40000000ull
#define FX_PAGES 8
#define FX_FILL 0xa5
#define FX_OUTS 2
#define FX_OUT_SIZE 1024

struct fx {
	int kvm_fd, vm_fd, vcpu_fd, closed_fd, null_fd;
	uint64_t page;
	void *ram, *ram2;
	struct memfault_vm *vm;
	struct memfault_vcpu *vcpu;
	struct memfault_region *region;
	struct memfault_uffd *uffd;
	struct kvm_run *run;
	/* a kvm_run holding a memory-fault exit, for memfault_exit_classify() */
	struct kvm_run *fault_run;
	/* output buffers, FX_FILL before each call */
	unsigned char out[FX_OUTS][FX_OUT_SIZE] __attribute__((aligned(16)));
	/* option structs, malformed on purpose */
	union {
		size_t sz;
		unsigned char raw[512];
	} opts __attribute__((aligned(16)));
};

struct fx_case {
	const char *name;
	void (*fn)(struct fx *fx);
};

extern const struct fx_case fx_cases[];
extern const int fx_nr_cases;
extern const int fx_nr_functions;

/* test-badinput.c */
void fx_script(struct fx *fx, const char *text);
void fx_pending_fault(struct fx *fx);
void fx_claim(struct fx *fx, uint64_t page);
void fx_add_vcpu(struct fx *fx);
void fx_forget(struct fx *fx, const void *freed);
void fx_skip(const char *why);
void fx_untouched(struct fx *fx, size_t from);

/* the case running, named in every failure message */
extern const char *fx_case_name;

#define FX_SKIP(why) fx_skip(why)
/* a success (>= 0) */
#define FX_OK(r)                                                               \
	ck_assert_msg((r) >= 0, "%s: expected success, got %d (%s)",           \
		      fx_case_name, (r), strerror(-(r)))
/* a negative errno, any */
#define FX_ERRNO(r)                                                            \
	ck_assert_msg((r) < 0 && (r) >= -4095,                                 \
		      "%s: expected a negative errno, got %d", fx_case_name, (r))
#define FX_EQ(r, v)                                                            \
	ck_assert_msg((r) == (v), "%s: expected %s (%d), got %d (%s)",         \
		      fx_case_name, #v, (int)(v), (r),                         \
		      (r) < 0 ? strerror(-(r)) : "not an error")
/* outputs untouched from byte @from of the first one, the others wholly */
#define FX_UNTOUCHED(from) fx_untouched(fx, (from))

#endif
