/* SPDX-License-Identifier: MIT */
/* Internal definitions shared by the library's translation units. */
#ifndef MEMFAULT_PRIVATE_H
#define MEMFAULT_PRIVATE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <linux/kvm.h>

#include "memfault/memfault.h"

#include "barrier.h"

/* Everything is hidden by default (-fvisibility=hidden); this marks the
 * definitions of the public symbols, which must also be in memfault.map. */
#define MEMFAULT_EXPORT __attribute__((visibility("default")))
/*
 * The code of one KVM_RUN round trip: memfault_vcpu_run(), the exit
 * classification and memfault_vcpu_get_fault(), and of a resolved
 * userfault: dispatch, claim, publish, and the re-arm of
 * memfault_region_mark_missing(). GCC puts hot functions side by side
 * (.text.hot), so a fault exit touches one or two code pages instead of
 * one per file. That is what it costs where instruction fetches are not
 * cheap: under QEMU TCG with nested KVM, where every VM exit flushes the
 * emulated TLB, a fault exit went from 1.04x the raw loop's time to
 * 0.98-1.02x (doc/architecture.md, "The hot path").
 */
#define MEMFAULT_HOT __attribute__((hot))

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#ifndef EHWPOISON
#define EHWPOISON 133
#endif

#define offsetofend(TYPE, FIELD) \
	(offsetof(TYPE, FIELD) + sizeof(((TYPE *)0)->FIELD))

/* The last field of each option struct this library version knows. */
#define memfault_vm_opts__last_field reserved
#define memfault_vcpu_opts__last_field reserved
#define memfault_region_opts__last_field kvm_flags
#define memfault_handlers__last_field reserved
#define memfault_uffd_opts__last_field reserved

bool memfault_opts_valid(const void *opts, size_t known_size);

/* Validate a size-prefixed option struct (NULL is valid: all defaults). */
#define OPTS_VALID(opts, TYPE)                                               \
	(!(opts) ||                                                           \
	 memfault_opts_valid((opts), offsetofend(struct TYPE, TYPE##__last_field)))

/* Read a field, or @def when the caller's struct is too short to hold it. */
#define OPTS_GET(opts, TYPE, FIELD, def)                                       \
	(((opts) && (opts)->sz >= offsetofend(struct TYPE, FIELD)) ?          \
		 (opts)->FIELD :                                              \
		 (def))

/* Copy min(caller size, library size) of an output struct. */
/* CLOCK_MONOTONIC in nanoseconds (util.c). */
uint64_t memfault_now_ns(void);

/* Remove @elem from the array of @*n pointers at @arr, keeping the order
 * of the others; nothing happens if it is not there (util.c). */
void memfault_ptr_array_remove(void *arr, size_t *n, const void *elem);

void memfault_copy_out(void *dst, size_t dst_size, const void *src,
		       size_t src_size);

/* Per-architecture knowledge, in one table (arch.c). */
struct memfault_arch_info {
	const char *name;
	/* exit reasons the kernel reads back from kvm_run on the next KVM_RUN,
	 * as a bitmask over exit_reason values < 64 */
	uint64_t readback_exits;
	/* KVM_CAP_MEMORY_FAULT_INFO is advertised when the exit exists */
	bool advertises_memory_fault_info;
	/* memory-fault exits are emitted for guest_memfd faults even when
	 * KVM_CAP_MEMORY_FAULT_INFO reads 0 */
	bool gmem_exits_without_cap;
	/* KVM_RUN may return 0 together with KVM_EXIT_MEMORY_FAULT */
	bool memory_fault_with_ret0;
};

const struct memfault_arch_info *memfault_arch_get(uint32_t arch);
uint32_t memfault_arch_host(void);

/* Host page size, read once from sysconf() by a library constructor. */
extern uint64_t memfault_page_size;
extern unsigned int memfault_page_shift;

/* One memslot and its bitmaps (region*.c). */
struct memfault_region {
	struct memfault_vm *vm;
	uint64_t gpa, size, npages;
	void *hva;
	uint32_t slot;
	uint32_t kvm_flags; /* flags the memslot was registered with */
	uint64_t flags;     /* enum memfault_region_flag */
	uint64_t gmem_offset;
	int gmem_fd;
	size_t nwords;
	size_t map_size; /* bytes mapped for each of missing[] and busy[] */
	unsigned long *missing;
	unsigned long *busy;
	/* atomic: busy bits set, so publishing ranges skips busy[] when 0 */
	long nr_busy;
	/* atomic: threads about to sleep or asleep in FUTEX_WAIT, so that
	 * releasing a claim nobody waits for makes no system call */
	long nr_waiters;
	/* atomic: the trap source that took the region (see struct
	 * memfault_trap_ops), or NULL; set and cleared by setup calls, read
	 * with acquire */
	struct memfault_trap *trap;
};

struct memfault_vm {
	int fd;
	bool own_fd;
	int refs; /* atomic: the caller's reference plus one per vCPU object */
	uint32_t arch;
	int64_t mmap_size; /* KVM_GET_VCPU_MMAP_SIZE, or -errno */
	struct memfault_features features;
	/* regions sorted by gpa; changed only by setup calls */
	struct memfault_region **regions;
	size_t nr_regions;
	/* bumped by every change of regions[], so that a vCPU's region hint
	 * from before it is never used (setup calls only, like regions[]) */
	uint64_t regions_gen;
	struct memfault_handlers handlers; /* set by memfault_vm_set_handlers() */
};

struct memfault_vcpu {
	/* fields used by every memfault_vcpu_run() first */
	struct kvm_run *run;
	int fd;
	bool reset_memory_fault;
	bool fault_valid;
	pid_t tid; /* atomic: the thread last seen in memfault_vcpu_run() */
	struct memfault_fault fault;
	/*
	 * The region of this vCPU's last userfault, valid while
	 * vm->regions_gen is still hint_gen: the next fault is most often in
	 * the same region, found without a search of regions[] (one page
	 * less touched per fault). vCPU thread only.
	 */
	struct memfault_region *hint_region;
	uint64_t hint_gen;
	/*
	 * Read by any thread (relaxed). uffd_faults and uffd_wait_ns are
	 * added to by whichever thread serves the userfaultfd (its service
	 * thread or a memfault_uffd_service() caller): memfault_add(). Every
	 * other counter is written by the vCPU thread only:
	 * memfault_counter_add(), no locked read-modify-write.
	 */
	struct memfault_vcpu_stats stats;

	struct memfault_vm *vm;
	pid_t tgid;
	int kick_signal;
	/*
	 * atomic: a futex word memfault_vcpu_kick() increments (after its
	 * store to immediate_exit) and wakes, so that a page-in wait of
	 * dispatch ends on a kick whatever became of the kick's signal
	 */
	uint32_t kick_seq;
	/* atomic: dispatch sleeps on kick_seq; the kick wakes it only then */
	uint32_t kick_waiting;
	bool time_handlers; /* MEMFAULT_VCPU_TIME_HANDLERS */
	bool own_fd;
	bool own_run;
	size_t run_size;
};

void memfault_vm_unref(struct memfault_vm *vm);

/* One memslot as KVM takes it; for memfault_set_memslot() (vm.c). */
struct memfault_memslot {
	uint32_t slot, flags; /* KVM_MEM_* */
	uint64_t gpa, size;   /* size 0 deletes the slot */
	void *hva;
	uint64_t gmem_offset; /* with KVM_MEM_GUEST_MEMFD */
	int gmem_fd;
	unsigned long *bitmap; /* with KVM_MEM_USERFAULT */
};
int memfault_set_memslot(int vm_fd, bool have_region2,
			 const struct memfault_memslot *slot);
void memfault_vm_log(const struct memfault_vm *vm, int level, const char *fmt,
		     ...) __attribute__((format(printf, 3, 4)));
/*
 * Trap sources: what, besides KVM's own memory-fault exit, stops a thread
 * on a missing page of a region (today userfaultfd, uffd.c). The bitmap
 * layer (region*.c) and dispatch (dispatch.c) know only this interface; a
 * trap source embeds struct memfault_trap first in its per-region state
 * and installs it with memfault_region_set_trap() when it takes the
 * region, and clears it when it lets the region go.
 */
struct memfault_trap;

struct memfault_trap_ops {
	/* page_in() for a page the caller claimed, filled where the trap
	 * source can install it (userfaultfd: a bounce buffer or the MINOR
	 * alias, then UFFDIO_COPY/UFFDIO_CONTINUE). Returns page_in()'s
	 * verdict or -errno; the caller publishes or aborts. */
	int (*page_in)(struct memfault_trap *t, struct memfault_vcpu *vcpu,
		       uint64_t page);
	/* After a publish or an abort of the pages: wake the host threads
	 * trapped on them, so that they fault again. */
	void (*wake)(struct memfault_trap *t, uint64_t first, uint64_t count);
	/* Pages marked missing again, which the caller has claimed: unmap
	 * them so the next access traps (KVM's mappings go too, by its MMU
	 * notifier). 0 or -errno. */
	int (*invalidate)(struct memfault_trap *t, uint64_t first,
			  uint64_t count);
	/* memfault_region_free() of the region: let it go, free the state. */
	void (*gone)(struct memfault_trap *t);
};

struct memfault_trap {
	const struct memfault_trap_ops *ops;
};

static inline struct memfault_trap *
memfault_region_get_trap(const struct memfault_region *region)
{
	/* Pairs with the store-release in memfault_region_set_trap(): who
	 * sees the trap source sees it initialized. */
	return memfault_load_acquire(&region->trap);
}

static inline void
memfault_region_set_trap(struct memfault_region *region,
			 struct memfault_trap *trap)
{
	/* Pairs with the load-acquire in memfault_region_get_trap(). */
	memfault_store_release(&region->trap, trap);
}

#endif /* MEMFAULT_PRIVATE_H */
