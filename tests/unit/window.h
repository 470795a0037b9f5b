/* SPDX-License-Identifier: MIT */
/*
 * The re-arm window scenario (issue 16 item 5), independent of what runs
 * the vCPU (the simulator here; a real KVM Userfault kernel in a nested
 * guest can supply its own load()): one vCPU loads page @page of a
 * MEMFAULT_REGION_USERFAULT region again and again while another thread
 * marks pages missing again with memfault_region_mark_missing().
 *
 *   WINDOW_OTHER      @page is missing and never published; the re-marker
 *                     marks page @other missing and publishes it, over and
 *                     over. Every load must exit: one that completes read
 *                     memory nobody fetched (a leak).
 *   WINDOW_SAME       the same, but the re-marker marks @page itself,
 *                     which is missing already.
 *   WINDOW_REPUBLISH  the re-marker fetches @page (claim, contents, then
 *                     publish), lets the vCPU load it, marks it missing and
 *                     overwrites it with WINDOW_STALE, over and over. A
 *                     load may complete while the page is present, and
 *                     must then read published contents (eight equal bytes
 *                     1..0x7f); one that reads anything else saw the page
 *                     while missing (a leak). This is the variant that a
 *                     page KVM mapped before the mark would fail.
 *
 * A leak is counted, never tolerated: the caller asserts window.leaks == 0.
 */
#ifndef MEMFAULT_WINDOW_H
#define MEMFAULT_WINDOW_H

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "memfault/memfault.h"

enum window_mode {
	WINDOW_OTHER,
	WINDOW_SAME,
	WINDOW_REPUBLISH,
};

/* What a page marked missing holds in WINDOW_REPUBLISH: stale memory. */
#define WINDOW_STALE 0xee
/* Bytes of @page the re-marker writes; the vCPU loads 8 at offset 0. */
#define WINDOW_FILL 64

struct window {
	/* set by the caller */
	enum window_mode mode;
	struct memfault_region *region;
	unsigned char *hva; /* the region's memory (WINDOW_REPUBLISH) */
	uint64_t page, other, page_size;
	uint64_t iterations; /* loads to attempt, at least */
	uint64_t min_marks;  /* ... and re-marks to see meanwhile, at least */
	/*
	 * One attempt of the vCPU to load 8 bytes at offset 0 of @page: 1 with
	 * the value when the load completed, 0 when the vCPU exited with a
	 * userfault of @page, or a negative errno (anything else).
	 */
	int (*load)(void *ctx, uint64_t *value);
	void *ctx;
	/*
	 * The re-marking, or NULL for memfault_region_mark_missing(): a test
	 * of the detector passes the old implementation here.
	 */
	int (*mark)(void *ctx, uint64_t page);

	/* results */
	uint64_t attempts, exits, completed, leaks, marks;
	uint64_t first_leak; /* the value of the first leak */
	int err;             /* of load(), or of the re-marker */

	/* private */
	int stop;     /* atomic */
	int mark_err; /* atomic */
	uint64_t loads_done; /* atomic: completed loads, for the re-marker */
	uint64_t tries_done; /* atomic: load attempts, for the re-marker */
};

/* Yield until *@counter moves from @seen, a little while at most. */
static inline void
window_wait(struct window *w, const uint64_t *counter, uint64_t seen)
{
	for (int i = 0; i < 200 && !__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE) &&
			__atomic_load_n(counter, __ATOMIC_ACQUIRE) == seen;
	     i++)
		sched_yield();
}

static inline bool
window_valid(uint64_t v)
{
	unsigned char b = (unsigned char)v;

	for (int i = 1; i < 8; i++)
		if ((unsigned char)(v >> (8 * i)) != b)
			return false;
	return b >= 1 && b <= 0x7f;
}

static inline int
window_mark(struct window *w, uint64_t page)
{
	return w->mark ? w->mark(w->ctx, page)
		       : memfault_region_mark_missing(w->region, page, 1);
}

/* WINDOW_REPUBLISH: one fetch of @page with contents byte @b. */
static inline int
window_fetch(struct window *w, unsigned char b)
{
	int r = memfault_region_claim(w->region, w->page, 0);

	if (r != MEMFAULT_CLAIM_FETCH)
		return r < 0 ? r : -EPROTO;
	memset(w->hva + w->page * w->page_size, b, WINDOW_FILL);
	return memfault_region_publish(w->region, w->page, 1);
}

static inline void *
window_remarker(void *arg)
{
	struct window *w = arg;
	uint64_t k = 0;
	int r = 0;

	while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
		k++;
		switch (w->mode) {
		case WINDOW_OTHER:
			r = window_mark(w, w->other);
			if (!r)
				r = memfault_region_publish(w->region, w->other,
							    1);
			break;
		case WINDOW_SAME:
			r = window_mark(w, w->page);
			break;
		case WINDOW_REPUBLISH: {
			uint64_t seen = __atomic_load_n(&w->loads_done,
							__ATOMIC_ACQUIRE);

			r = window_fetch(w, (unsigned char)(1 + k % 0x7f));
			if (r)
				break;
			/* let the vCPU load (so map) it */
			window_wait(w, &w->loads_done, seen);
			r = window_mark(w, w->page);
			if (r)
				break;
			seen = __atomic_load_n(&w->tries_done,
					       __ATOMIC_ACQUIRE);
			memset(w->hva + w->page * w->page_size, WINDOW_STALE,
			       WINDOW_FILL);
			/* ... and try again while it holds stale bytes */
			window_wait(w, &w->tries_done, seen);
			break;
		}
		}
		if (r) {
			__atomic_store_n(&w->mark_err, r, __ATOMIC_RELEASE);
			break;
		}
		__atomic_store_n(&w->marks, k, __ATOMIC_RELEASE);
	}
	return NULL;
}

/*
 * Run the scenario: @iterations load attempts while the re-marker runs
 * (it starts first), more until it has re-marked @min_marks times, but
 * not beyond 20 x @iterations attempts. Returns 0, or a negative errno if
 * the set-up failed; the counts are in @w.
 */
static inline int
window_run(struct window *w)
{
	pthread_t t;
	int r;

	w->attempts = w->exits = w->completed = w->leaks = w->marks = 0;
	w->err = 0;
	w->stop = 0;
	w->mark_err = 0;
	w->loads_done = 0;
	w->tries_done = 0;
	r = pthread_create(&t, NULL, window_remarker, w);
	if (r)
		return -r;
	while (!__atomic_load_n(&w->marks, __ATOMIC_ACQUIRE) &&
	       !__atomic_load_n(&w->mark_err, __ATOMIC_ACQUIRE))
		sched_yield();
	while ((w->attempts < w->iterations ||
		__atomic_load_n(&w->marks, __ATOMIC_ACQUIRE) < w->min_marks) &&
	       w->attempts < 20 * w->iterations &&
	       !__atomic_load_n(&w->mark_err, __ATOMIC_ACQUIRE)) {
		uint64_t v = 0;

		r = w->load(w->ctx, &v);
		w->attempts++;
		__atomic_store_n(&w->tries_done, w->attempts, __ATOMIC_RELEASE);
		if (r < 0) {
			w->err = r;
			break;
		}
		if (!r) {
			w->exits++;
			if (w->mode == WINDOW_REPUBLISH)
				sched_yield();
			continue;
		}
		w->completed++;
		__atomic_store_n(&w->loads_done, w->completed,
				 __ATOMIC_RELEASE);
		if (w->mode != WINDOW_REPUBLISH || !window_valid(v)) {
			if (!w->leaks++)
				w->first_leak = v;
		}
		/* the re-marker waits for this load: let it run */
		if (w->mode == WINDOW_REPUBLISH)
			sched_yield();
	}
	__atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	if (!w->err)
		w->err = __atomic_load_n(&w->mark_err, __ATOMIC_ACQUIRE);
	return 0;
}

#endif
