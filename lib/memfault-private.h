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

/* Everything is hidden by default (-fvisibility=hidden); this marks the
 * definitions of the public symbols, which must also be in memfault.map. */
#define MEMFAULT_EXPORT __attribute__((visibility("default")))

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

/* One memslot and its bitmaps (region.c). */
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
	/* atomic: the userfaultfd registration (uffd.c), or NULL; set and
	 * cleared by setup calls, read by dispatch with acquire */
	struct memfault_uffd_reg *uffd;
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
	/* written by the vCPU thread only, read by any (relaxed atomics) */
	struct memfault_vcpu_stats stats;

	struct memfault_vm *vm;
	pid_t tgid;
	int kick_signal;
	bool own_fd;
	bool own_run;
	size_t run_size;
};

/* Classify a failed KVM_RUN (ret == -1, @err = errno) or a successful one
 * (@err = 0) whose exit is a memory fault. Shared by memfault_vcpu_run()
 * and memfault_exit_classify(). */
int memfault_classify_error(const struct kvm_run *run, int err,
			    struct memfault_fault *fault);
void memfault_vm_unref(struct memfault_vm *vm);
void memfault_vm_log(const struct memfault_vm *vm, int level, const char *fmt,
		     ...) __attribute__((format(printf, 3, 4)));
int memfault_region_claim_page(struct memfault_region *region, uint64_t page,
				uint32_t flags);
void memfault_region_publish_page(struct memfault_region *region,
				  uint64_t page);

/* One writer per counter: a relaxed load and store, no locked RMW. */
static inline void
memfault_stat_add(uint64_t *counter, uint64_t n)
{
	__atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + n,
			 __ATOMIC_RELAXED);
}
void memfault_decode_fault(const struct kvm_run *run, int err,
			   struct memfault_fault *fault);

/*
 * userfaultfd backend (uffd.c). A region registered with
 * memfault_uffd_register() points to its registration; region.c stores the
 * pointer and calls the hooks below, dispatch.c installs KVM Userfault
 * page-ins through it.
 */
struct memfault_uffd_reg;

static inline struct memfault_uffd_reg *
memfault_region_get_uffd(const struct memfault_region *region)
{
	/* Pairs with the store-release in memfault_region_set_uffd(): who
	 * sees the registration sees it initialized. */
	return __atomic_load_n(&region->uffd, __ATOMIC_ACQUIRE);
}

static inline void
memfault_region_set_uffd(struct memfault_region *region,
			 struct memfault_uffd_reg *reg)
{
	/* Pairs with the load-acquire in memfault_region_get_uffd(). */
	__atomic_store_n(&region->uffd, reg, __ATOMIC_RELEASE);
}

/* page_in() for a page the caller claimed on a registered region: into a
 * bounce buffer (MISSING) or the alias (MINOR), then installed with
 * UFFDIO_COPY/UFFDIO_CONTINUE. Returns page_in()'s verdict or -errno; the
 * caller publishes or aborts. */
int memfault_uffd_page_in(struct memfault_uffd_reg *reg,
			  struct memfault_vcpu *vcpu, uint64_t page);
/* After memfault_region_publish() or memfault_region_abort(): wake the
 * host threads faulting on the pages, so they fault again. */
void memfault_uffd_wake(struct memfault_uffd_reg *reg, uint64_t first,
			uint64_t count);
/* Pages marked missing again: unmap them so the next access faults. */
void memfault_uffd_zap(struct memfault_uffd_reg *reg, uint64_t first,
		       uint64_t count);
/* memfault_region_free() of a registered region: unregister it. */
void memfault_uffd_region_gone(struct memfault_uffd_reg *reg);

#endif /* MEMFAULT_PRIVATE_H */
