/* SPDX-License-Identifier: MIT */
/*
 * The fault-injection cases' engine (fi-case.c): a public function under
 * injection is a struct fi_case, run by run_case() against every errno of
 * a list, failing its 1st, 2nd, ... failable call (fi.h) on a fresh
 * struct env each time. The cases are in test-faultinject.c (VM, vCPU,
 * regions, dispatch) and test-faultinject-uffd.c (the userfaultfd paths).
 * The simulator comes in by LD_PRELOAD (meson.build), reached through
 * sim (fi_kvmsim()).
 */
#ifndef MEMFAULT_FI_CASE_H
#define MEMFAULT_FI_CASE_H

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvm.h>
#include <linux/userfaultfd.h>

#include "fi.h"
#include "kvm-userfault-proposed.h"
#include "kvmsim.h"
#include "memfault/memfault.h"
#include "test-common.h"

#define RAM_GPA 0x20000000ull
#define GMEM_GPA 0x30000000ull
#define PAGES 8
#define SENTINEL ((void *)0x5a5a5a5a5a5a5a5aull)
/* A constructor's output: untouched (still SENTINEL) when it failed with
 * @r, else kept in @slot for the case's undo() and env_close(). */
#define KEEP_NEW(r, out, slot)                                                 \
	do {                                                                   \
		if (r)                                                         \
			ck_assert_ptr_eq((out), SENTINEL);                     \
		else                                                           \
			(slot) = (out);                                        \
	} while (0)
#define DEFAULT_PROBE_GPA ((64ull << 30) - (2ull << 20))

struct env {
	uint32_t arch, level;
	unsigned long vm_type;
	int kvm_fd, vm_fd, vcpu_fd, gmem_fd;
	uint64_t page;
	void *ram, *ram2;
	struct memfault_vm *vm;
	struct memfault_vcpu *vcpu;
	struct memfault_region *region;
	struct memfault_uffd *uffd;
	/* what the operation made, destroyed by the case's undo() */
	void *made;
	int page_ins;
};

/*
 * One public function under injection.
 *   setup:  builds what the call needs (not counted)
 *   op:     the call; returns its result (outputs checked inside)
 *   undo:   after success, destroys what it made (may be NULL)
 *   usable: after a failure, proves the object usable (may be NULL)
 *   check:  after success, what the call should have done (may be NULL)
 *   teardown: env_close() if NULL
 */
struct fi_case {
	const char *name;
	unsigned classes;
	void (*setup)(struct env *);
	int (*op)(struct env *);
	void (*undo)(struct env *);
	void (*usable)(struct env *);
	void (*check)(struct env *, int r);
	bool is_void; /* returns nothing: any outcome but a crash is fine */
	/*
	 * Heap blocks a parent object may keep after the call, failed or
	 * undone (a vector of regions or vCPUs grown and not shrunk); they
	 * go with the parent, which the final check covers.
	 */
	long grows;
};

/* The preloaded simulator; set by fi_case_main(). */
extern const struct fi_kvmsim *sim;
/* The injection of the run in progress, for an op's messages: the call
 * failed (or NULL), its number and errno. */
extern const char *cur_failed;
extern unsigned cur_n;
extern int cur_err;
/* Set by an op that re-arms the injection itself: its count of calls. */
extern int op_calls;

/* A simulator reset to @arch/@level (SW_PROTECTED_VM for @vm_type 1), its
 * VM and vCPU fds, and two anonymous PAGES-page areas. */
void env_open(struct env *e, uint32_t arch, uint32_t level,
	      unsigned long vm_type);
/* e->vm; e->vm and e->vcpu. */
void env_vm(struct env *e);
void env_vcpu(struct env *e);
void env_close(struct env *e);
/* Run @c under injection (the loop above) and print its summary line. */
void run_case(const struct fi_case *c);
/*
 * Prepare main(): 0, or the exit code main() returns: 1 without
 * libmemfault.so in the process, 77 without the preloaded simulator.
 */
int fi_case_start(void);

/* Set-ups and operations the two executables share. */
void setup_x86_uf(struct env *e);
void setup_vm(struct env *e);
void setup_vcpu(struct env *e);
/* memfault_region_new() of PAGES pages at @gpa with @flags into e->region. */
int region_new(struct env *e, uint64_t flags, void *hva, uint64_t gpa);
int op_mark_missing(struct env *e);
int op_region_free(struct env *e);
int op_dispatch(struct env *e);
/* A page_in handler: fills the page with pg + 1, counts e->page_ins. */
int page_in(void *user, struct memfault_vcpu *vcpu, struct memfault_region *r,
	    uint64_t pg, void *hva, uint64_t size);

#endif
