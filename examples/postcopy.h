/* SPDX-License-Identifier: MIT */
/*
 * postcopy.h - what the three files of the post-copy example share:
 *   postcopy.c         the destination VMM: its guest, setup and main();
 *   postcopy-pages.c   how missing pages arrive (page_in(), the prefetch
 *                      thread) and the checks that each arrived once;
 *   postcopy-source.c  the migration source, a page server in a child
 *                      process, and the VMM's channels to it.
 *
 * The source's memory is generated (source_word()), so that the VMM can
 * check every page it received and the checksum its guest computed.
 */
#ifndef POSTCOPY_H
#define POSTCOPY_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "example-vm.h"

/* The contents of 64-bit word @i of guest page @page, on both sides. */
uint64_t source_word(uint64_t page, uint64_t i);

/* Page @page as the source holds it, into @dst (@page_size bytes). */
void source_page(uint64_t page, uint64_t *dst, size_t page_size);

/* The byte offset of the 32-bit word the guest reads in @page. */
uint64_t probe_offset(uint64_t page, size_t page_size);

/* The sum of the words the guest reads, computed on the source's memory. */
uint32_t source_checksum(uint64_t npages, size_t page_size);

/* What the source says about the pages it served. */
struct server_stats {
	uint64_t requests;   /* page requests served */
	uint64_t urgent;     /* ... on the urgent channel */
	uint64_t background; /* ... on the background channel */
	uint64_t unique;     /* distinct pages served */
	uint64_t duplicates; /* requests for a page served before */
	uint64_t first_duplicate;
	uint32_t checksum; /* source_checksum() */
	uint32_t reserved;
};

/*
 * One channel to the source: a request pipe and a reply pipe (pipes, which
 * every kernel has: small test kernels may lack Unix sockets).
 */
struct channel {
	pthread_mutex_t lock; /* one request in flight per channel */
	int fd;               /* requests to the source */
	int rfd;              /* its replies */
	/* fetches, their total and longest latency (under lock) */
	uint64_t fetches, total_ns, max_ns;
};

/*
 * Fork the source with @npages pages of @page_size bytes, @latency_us away
 * per page, and connect @urgent and @background to it. Call it before any
 * thread exists. Returns 0 or a negative errno.
 */
int start_server(uint64_t npages, size_t page_size, unsigned latency_us,
		 struct channel *urgent, struct channel *background,
		 pid_t *ret_pid);

/* Ask the source for @page and write it to @dst. 0 or a negative errno. */
int fetch_page(struct channel *ch, uint64_t page, void *dst, size_t page_size);

/* The source's statistics. 0 or a negative errno. */
int query_stats(struct channel *ch, struct server_stats *st);

/* Close both channels, which ends the source, and wait for it: 0 if it
 * exited 0. */
int stop_server(struct channel *urgent, struct channel *background, pid_t pid);

/* The destination VMM (postcopy.c). */
struct vmm {
	struct example_vm ev;
	uint64_t npages, mem_gpa;
	unsigned latency_us;
	pid_t server;
	struct channel urgent, background;

	struct memfault_region *mem_region;
	struct memfault_uffd *uffd; /* the userfaultfd backend, or NULL */
	int mem_fd;     /* memfd holding the migrated memory */
	uint8_t *mem;   /* its mapping: the memslot's hva */
	uint8_t *alias; /* its second mapping (userfaultfd backend) */

	pthread_t prefetcher;
	int prefetch_error;

	/* pages present, by who fetched them (under progress_lock, read
	 * relaxed by print_progress()), and the next quarter to report */
	pthread_mutex_t progress_lock;
	uint64_t demand_pages, prefetched_pages;
	uint64_t next_milestone;
	uint64_t busy_skips; /* atomic */

	/* what the guest reported */
	uint32_t word_sum, guest_sum;
	uint64_t words;
	bool have_guest_sum, done;
};

/* ---- postcopy-pages.c ---- */

#define MEM_SLOT 1 /* the migrated memory */

/* memfault_handlers::page_in: fetch @page on the urgent channel. */
int page_in(void *user, struct memfault_vcpu *vcpu,
	    struct memfault_region *region, uint64_t page, void *hva,
	    uint64_t page_size);

/* The prefetch thread (pthread_create() argument: the struct vmm). */
void *prefetch_main(void *arg);

/* The migrated memory's memfd and its two mappings. 0 or -errno. */
int map_memory(struct vmm *v);

/* Its region, all missing, and the backend. 0, -errno or SKIP. */
int add_memory(struct vmm *v);

/* Print what happened and check it (example_check()). 0 or -errno. */
int summarize(struct vmm *v);

#endif /* POSTCOPY_H */
