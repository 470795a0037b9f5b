/* SPDX-License-Identifier: MIT */
/*
 * postcopy-pages.c - how the pages of the post-copy example (postcopy.c)
 * arrive, and the checks that each arrived exactly once.
 *
 * The migrated memory is a memfd mapped twice and registered as a region
 * whose pages all start missing. A missing page is fetched either
 *   - on demand, by page_in(), which the library calls when a vCPU (KVM
 *     Userfault) or KVM itself (userfaultfd) needs the page and has
 *     claimed it for this thread; or
 *   - in the background, by the prefetch thread, which claims pages itself
 *     (memfault_region_claim()) and publishes them
 *     (memfault_region_publish()).
 * The claim is what makes each page arrive once: whoever claims a page
 * fetches it; the other one skips it or waits for it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create() */
#endif

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <memfault/memfault.h>

#include "example-vm.h"
#include "postcopy.h"

/* ---- Pages arriving ------------------------------------------------------ */

static uint64_t
avg_fetch_us(struct channel *ch)
{
	uint64_t us;

	pthread_mutex_lock(&ch->lock);
	us = ch->fetches ? ch->total_ns / ch->fetches / 1000 : 0;
	pthread_mutex_unlock(&ch->lock);
	return us;
}

/* A page became present: count it, and print a line at every quarter. */
static void
page_arrived(struct vmm *v, uint64_t *counter)
{
	uint64_t d, p;

	pthread_mutex_lock(&v->progress_lock);
	__atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
	d = v->demand_pages;
	p = v->prefetched_pages;
	if ((d + p) * 4 >= v->next_milestone * v->npages) {
		while ((d + p) * 4 >= v->next_milestone * v->npages)
			v->next_milestone++;
		printf("progress: %3" PRIu64 "/%" PRIu64 " pages present: %" PRIu64 " on demand (avg fetch %" PRIu64 " us), %" PRIu64 " prefetched (avg fetch %" PRIu64 " us)\n",
		       d + p, v->npages, d, avg_fetch_us(&v->urgent), p,
		       avg_fetch_us(&v->background));
	}
	pthread_mutex_unlock(&v->progress_lock);
}

/*
 * page_in(): a vCPU (KVM Userfault) or KVM's own access through the memslot
 * (userfaultfd) needs @page. The library has claimed it; it publishes the
 * page after MEMFAULT_RESOLVED. @hva is where to write it: the guest memory
 * itself, or, with userfaultfd, the alias mapping.
 */
int
page_in(void *user, struct memfault_vcpu *vcpu, struct memfault_region *region,
	uint64_t page, void *hva, uint64_t page_size)
{
	struct vmm *v = user;
	int r = fetch_page(&v->urgent, page, hva, page_size);

	if (r)
		return r;
	page_arrived(v, &v->demand_pages);
	return MEMFAULT_RESOLVED;
}

/*
 * The prefetch thread: every page, exactly once, whatever the vCPUs do.
 * A page a vCPU is fetching is skipped (MEMFAULT_CLAIM_BUSY); a second
 * pass waits for whatever is still missing.
 */
void *
prefetch_main(void *arg)
{
	struct vmm *v = arg;
	/* Where the VMM writes: under userfaultfd the memslot's mapping
	 * would fault on the page it holds. */
	uint8_t *base = v->uffd ? v->alias : v->mem;
	uint64_t page;
	int pass, r;

	for (pass = 0; pass < 2; pass++) {
		for (page = 0; page < v->npages; page++) {
			if (pass) {
				/* what a vCPU was fetching in the first pass */
				r = memfault_region_find_missing(v->mem_region,
								 page, &page);
				if (r == -ENOENT)
					break;
				if (r)
					goto fail;
			}
			r = memfault_region_claim(v->mem_region, page,
						  pass ? 0 : MEMFAULT_CLAIM_NOWAIT);
			if (r == -EINTR) {
				page--;
				continue;
			}
			if (r < 0)
				goto fail;
			if (r == MEMFAULT_CLAIM_BUSY)
				__atomic_add_fetch(&v->busy_skips, 1,
						   __ATOMIC_RELAXED);
			if (r != MEMFAULT_CLAIM_FETCH)
				continue;
			r = fetch_page(&v->background, page,
				       base + page * v->ev.page_size,
				       v->ev.page_size);
			if (r) {
				memfault_region_abort(v->mem_region, page);
				goto fail;
			}
			/* store-release: the contents before the bit */
			r = memfault_region_publish(v->mem_region, page, 1);
			if (r)
				goto fail;
			page_arrived(v, &v->prefetched_pages);
		}
	}
	return NULL;
fail:
	v->prefetch_error = r;
	fprintf(stderr, "prefetch: page %" PRIu64 ": %s\n", page, strerror(-r));
	return NULL;
}

/* The migrated memory: a memfd, so that userfaultfd can use it in MINOR
 * mode through a second mapping. */
int
map_memory(struct vmm *v)
{
	size_t size = v->npages * v->ev.page_size;

	v->mem_fd = memfd_create("postcopy-guest-memory", MFD_CLOEXEC);
	if (v->mem_fd < 0 || ftruncate(v->mem_fd, (off_t)size))
		return example_fail("memfd", -errno);
	v->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      v->mem_fd, 0);
	v->alias = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED,
			v->mem_fd, 0);
	if (v->mem == MAP_FAILED || v->alias == MAP_FAILED) {
		v->mem = v->mem == MAP_FAILED ? NULL : v->mem;
		v->alias = v->alias == MAP_FAILED ? NULL : v->alias;
		return example_fail("mmap", -errno);
	}
	return 0;
}

/* The region of missing pages, and how they trap. 0, -errno or SKIP. */
int
add_memory(struct vmm *v)
{
	MEMFAULT_OPTS(memfault_region_opts, opts,
		.flags = MEMFAULT_REGION_MISSING);
	MEMFAULT_OPTS(memfault_uffd_opts, uffd_opts,
		.flags = MEMFAULT_UFFD_SERVICE_THREAD);
	const struct memfault_features *f = &v->ev.features;
	bool userfault = f->flags & MEMFAULT_FEATURE_KVM_USERFAULT;
	int r;

	if (userfault)
		opts.flags |= MEMFAULT_REGION_USERFAULT;
	printf("backend: %s\n",
	       userfault ? "KVM Userfault: the kernel accepted KVM_MEM_USERFAULT; vCPU accesses to missing pages exit to the VMM" :
	       f->flags & MEMFAULT_FEATURE_USER_MEMORY2 ?
			   "no KVM Userfault on this kernel (it rejected KVM_MEM_USERFAULT); the fallback is the userfaultfd backend" :
			   "no KVM Userfault on this kernel (no KVM_SET_USER_MEMORY_REGION2); the fallback is the userfaultfd backend");
	r = memfault_region_new(v->ev.vm, MEM_SLOT, v->mem_gpa,
				v->npages * v->ev.page_size, v->mem, &opts,
				&v->mem_region);
	if (r)
		return example_fail("the migrated memory's memslot", r);
	if (userfault)
		return 0;
	r = memfault_uffd_new(v->ev.vm, &uffd_opts, &v->uffd);
	if (!r)
		r = memfault_uffd_register(v->uffd, v->mem_region,
					   MEMFAULT_UFFD_MINOR, v->alias);
	if (r == -EPERM || r == -ENOSYS || r == -EOPNOTSUPP) {
		printf("userfaultfd: %s\n", strerror(-r));
		return EXAMPLE_EXIT_SKIP;
	}
	if (r)
		return example_fail("userfaultfd", r);
	printf("backend: userfaultfd, MINOR mode on a memfd mapped twice: KVM's access through the memslot waits in the kernel for page_in()\n");
	return 0;
}

/* ---- Checks ------------------------------------------------------------------ */

/* Pages that differ from the source's (read through the alias: no faults). */
static uint64_t
count_bad_pages(const struct vmm *v)
{
	uint64_t *want = malloc(v->ev.page_size), bad = 0, p;

	if (!want)
		return v->npages;
	for (p = 0; p < v->npages; p++) {
		source_page(p, want, v->ev.page_size);
		if (memcmp(v->alias + p * v->ev.page_size, want,
			   v->ev.page_size))
			bad++;
	}
	free(want);
	return bad;
}

int
summarize(struct vmm *v)
{
	struct memfault_vcpu_stats vs = { 0 };
	struct server_stats st;
	uint64_t missing = ~0ull, bad = count_bad_pages(v);
	uint32_t sum = v->have_guest_sum ? v->guest_sum : v->word_sum;
	int r;

	memfault_vcpu_get_stats(v->ev.vcpu, &vs, sizeof(vs));
	memfault_region_count_missing(v->mem_region, &missing);
	r = query_stats(&v->urgent, &st);
	if (r)
		return example_fail("the page server's statistics", r);
	printf("summary: %" PRIu64 " pages of %zu bytes over %s: %" PRIu64 " fetched on demand, %" PRIu64 " prefetched (%" PRIu64 " skipped as busy)\n",
	       v->npages, v->ev.page_size,
	       v->uffd ? "userfaultfd" : "KVM Userfault", v->demand_pages,
	       v->prefetched_pages, v->busy_skips);
	printf("         fetch latency: demand avg %" PRIu64 " us max %" PRIu64 " us; prefetch avg %" PRIu64 " us max %" PRIu64 " us\n",
	       avg_fetch_us(&v->urgent), v->urgent.max_ns / 1000,
	       avg_fetch_us(&v->background), v->background.max_ns / 1000);
	printf("         vCPU: %" PRIu64 " runs, %" PRIu64 " exits, %" PRIu64 " memory faults (%" PRIu64 " userfaults), %" PRIu64 " page-ins, %" PRIu64 " waits\n",
	       vs.runs, vs.exits, vs.memory_faults, vs.userfaults, vs.page_ins,
	       vs.page_waits);
	if (v->uffd) {
		struct memfault_uffd_stats us = { 0 };

		memfault_uffd_get_stats(v->uffd, &us, sizeof(us));
		printf("         userfaultfd: %" PRIu64 " faults, %" PRIu64 " page-ins, %" PRIu64 " waits, latency p50 %" PRIu64 " us max %" PRIu64 " us\n",
		       us.faults, us.page_ins, us.waits,
		       us.latency_p50_ns / 1000, us.latency_max_ns / 1000);
	}
	example_check(&v->ev, !missing, "every page present (%" PRIu64 " missing)",
		      missing);
	example_check(&v->ev,
		      st.unique == v->npages && !st.duplicates &&
			      st.requests == v->npages,
		      "the source served every page exactly once (%" PRIu64 " requests: %" PRIu64 " urgent, %" PRIu64 " background; %" PRIu64 " distinct of %" PRIu64 ", %" PRIu64 " duplicates)",
		      st.requests, st.urgent, st.background, st.unique,
		      v->npages, st.duplicates);
	example_check(&v->ev, v->demand_pages + v->prefetched_pages == v->npages,
		      "the VMM counted every page once");
	example_check(&v->ev, !bad,
		      "every page holds the source's contents (%" PRIu64 " differ)",
		      bad);
	if (!v->have_guest_sum)
		example_check(&v->ev, v->words == v->npages,
			      "the guest read one word of every page (%" PRIu64 ")",
			      v->words);
	example_check(&v->ev, sum == st.checksum,
		      "the guest's checksum %#010x (%s) matches the source's %#010x",
		      sum,
		      v->have_guest_sum ? "computed by the guest" :
					  "its loads, added up by the VMM",
		      st.checksum);
	return 0;
}

