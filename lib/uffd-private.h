/* SPDX-License-Identifier: MIT */
/*
 * The userfaultfd trap source, shared by its files: uffd.c (setup and
 * registration), uffd-install.c (the ioctls, bounce buffers, fetch and
 * install: the trap-source operations), uffd-service.c (reading and
 * serving fault messages), uffd-stats.c (counters and latency histogram).
 */
#ifndef MEMFAULT_UFFD_PRIVATE_H
#define MEMFAULT_UFFD_PRIVATE_H

#include <pthread.h>
#include <stdint.h>

#include <linux/userfaultfd.h>

#include "memfault-private.h"

/* Features used when offered: per-vCPU attribution, memfd regions (holes
 * trap as MISSING, mapped pages as MINOR), failure delivery. */
#define WANTED_FEATURES                                                        \
	(UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_MISSING_SHMEM |                 \
	 UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_POISON)
/* Bounce pages shared by all page-ins at once; more get a page each. */
#define BOUNCE_SLOTS 64
#define MSG_BATCH 16
/* UFFDIO_* return EAGAIN while the mm changes under them; bounded. */
#define EAGAIN_RETRIES 1000
/* A page found present, then missing again, so many times in a row. */
#define PRESENT_RETRIES 8
/* Tries of a wake-up or unregistration that failed (see uffd_wake_range()). */
#define WAKE_TRIES 3
#define NBUCKETS MEMFAULT_UFFD_LATENCY_BUCKETS

/* A registered region; the trap source region.c and dispatch.c call. */
struct memfault_uffd_reg {
	struct memfault_trap trap; /* first: the region points to it */
	struct memfault_uffd *u;
	struct memfault_region *region;
	uintptr_t start; /* the region's hva */
	uint64_t len;
	char *alias; /* MINOR: the second mapping page_in() writes through */
	uint32_t mode;
};

struct memfault_uffd {
	struct memfault_vm *vm;
	int fd;
	int stop_fd; /* eventfd that ends the service thread's poll() */
	uint64_t features;
	pthread_t thread;
	bool have_thread;

	/* regs (sorted by start) and vcpus change under the write lock; each
	 * service call holds the read lock while it handles a batch */
	pthread_rwlock_t lock;
	struct memfault_uffd_reg **regs;
	size_t nr_regs;
	struct memfault_vcpu **vcpus;
	size_t nr_vcpus;

	char *bounce;
	uint64_t bounce_used; /* atomic: one bit per bounce page in use */

	/* orders install_present() against uffd_trap_invalidate() */
	pthread_mutex_t zap_lock;

	/* atomic: added to by every serving thread and vCPU */
	uint64_t faults, page_ins, kvm_page_ins, waits, unknown, errors;
	uint64_t max_ns;
	uint64_t hist[NBUCKETS];

	pthread_mutex_t err_lock; /* the last failure, as one record */
	uint64_t err_addr, err_gpa;
	int32_t err;
	uint32_t err_tid;
};

static inline struct memfault_uffd_reg *
uffd_reg_of(struct memfault_trap *t)
{
	return (struct memfault_uffd_reg *)((char *)t -
					    offsetof(struct memfault_uffd_reg,
						     trap));
}

/* uffd-install.c */
int uffd_copy(int fd, uintptr_t dst, const void *src);
int uffd_continue(int fd, uintptr_t addr);
int uffd_zeropage(int fd, uintptr_t addr);
int uffd_poison(int fd, uintptr_t addr);
void uffd_wake_range(int fd, uintptr_t start, uint64_t len);
void uffd_wake(int fd, uintptr_t addr);
uintptr_t uffd_page_addr(const struct memfault_uffd_reg *g, uint64_t page);
int uffd_zap(const struct memfault_uffd_reg *g, uintptr_t addr, size_t len);
int uffd_fill_and_install(struct memfault_uffd_reg *g, struct memfault_vcpu *vcpu,
		     uint64_t page);
int uffd_trap_page_in(struct memfault_trap *t, struct memfault_vcpu *vcpu,
		 uint64_t page);
void uffd_trap_wake(struct memfault_trap *t, uint64_t first, uint64_t count);
int uffd_trap_invalidate(struct memfault_trap *t, uint64_t first, uint64_t count);

/* uffd-service.c: serve up to @max queued messages; how many, or -errno */
int uffd_serve(struct memfault_uffd *u, uint32_t max);
void *uffd_service_main(void *arg);

/* uffd-stats.c */
void uffd_record_latency(struct memfault_uffd *u, uint64_t ns);

#endif /* MEMFAULT_UFFD_PRIVATE_H */
