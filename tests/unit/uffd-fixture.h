/* SPDX-License-Identifier: MIT */
/*
 * The fixture of the userfaultfd tests (test-uffd.c, test-uffd-vcpu.c): a
 * region served through a struct memfault_uffd on the simulator VM of
 * sim-env.h, with a page_in() handler that writes a pattern per page and
 * counts fetches, failure injection, held page-ins and a VMM poller.
 */
#ifndef MEMFAULT_UFFD_FIXTURE_H
#define MEMFAULT_UFFD_FIXTURE_H

#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>

#include <linux/userfaultfd.h>

#include "sim-env.h"
#include "test-common.h"

#define NPAGES 256
#define TOUCHES 192
#define CPAGES 64 /* combined mode: pages per region */
#define CVCPUS 4
#define CHOSTS 4
#define PARTIAL_BYTES 16

enum run_mode { MODE_THREAD, MODE_POLL };

struct fx {
	struct sim_env e;
	struct memfault_region *r;
	struct memfault_uffd *u;
	char *mem, *alias;
	int memfd;
	uint32_t mode; /* MEMFAULT_UFFD_MISSING or _MINOR */
	size_t npages, ps;
	unsigned fetches[NPAGES]; /* atomic: successful page_in() calls */
	unsigned by_vcpu, by_host; /* atomic */
	unsigned bad_hva;          /* atomic: page_in() got a wrong buffer */
	struct memfault_vcpu *seen_vcpu[NPAGES];
	/* failure injection: page_in() of @fail_page returns @fail_ret,
	 * @fail_left times */
	uint64_t fail_page;
	int fail_ret;
	int fail_left; /* atomic */
	/* page_in() of @partial_page writes its first PARTIAL_BYTES only */
	uint64_t partial_page;
	int slow_us;
	/* hold a page_in() from a vCPU until released */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int hold_vcpu, holding;
	/* the VMM's poller */
	pthread_t poller;
	int stop_poll; /* atomic */
	unsigned poll_errors; /* atomic */
	/* log() */
	char log[2048];
	int log_errors;
};

struct toucher {
	struct fx *f;
	unsigned seed;
	int n;
	int bad;
	int done; /* atomic */
	pthread_t t;
};

/* The fixture of the running test (each runs in a process of its own). */
extern struct fx F;

/* Counters the serving threads write: the test learns of their writes
 * through the kernel (a fault resolved), which TSan does not see. */
#define LD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

uint64_t pattern_word(uint64_t page, size_t i);
void fill_page(void *dst, uint64_t page, size_t ps);
/* 1 if the page holds its pattern, every byte. */
int page_ok(const void *src, uint64_t page, size_t ps);
int page_zero(const void *src, size_t ps);
int page_in(void *user, struct memfault_vcpu *vcpu, struct memfault_region *r,
	    uint64_t page, void *hva, uint64_t page_size);
void on_log(void *user, int level, const char *msg);
void fx_open(struct fx *f, uint32_t arch, uint32_t level);
/*
 * Memory for @npages pages: anonymous (MISSING), a memfd mapped twice
 * (MINOR), or with @shared a memfd in MISSING mode too.
 */
void fx_memory_shared(struct fx *f, uint32_t mode, size_t npages,
		      bool shared);
void fx_memory(struct fx *f, uint32_t mode, size_t npages);
/* A bitmap-only region over the memory, every page missing. */
void fx_region(struct fx *f, uint64_t region_flags, uint32_t slot);
void *poller_main(void *arg);
void fx_uffd(struct fx *f, enum run_mode run);
void fx_start_poller(struct fx *f);
void fx_stop_poller(struct fx *f);
void fx_close(struct fx *f);
void *touch_random(void *arg);
/*
 * The install wakes the faulting thread before the serving thread
 * publishes the page and counts the fault: wait for the serving threads
 * to finish the faults already resolved (the histogram is counted last).
 */
void settle(struct fx *f);
void stats_settled(struct fx *f, struct memfault_uffd_stats *s);
void check_all_pages_once(struct fx *f);

#endif
