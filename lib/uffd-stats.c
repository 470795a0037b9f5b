/* SPDX-License-Identifier: MIT */
/* userfaultfd trap source: its counters and the latency histogram. */
#include <string.h>


#include "barrier.h"
#include "memfault-private.h"
#include "uffd-private.h"

/* ---- latency histogram (bucket layout documented in memfault.h) ---- */

static unsigned int
lat_bucket(uint64_t ns)
{
	unsigned int o, i;

	if (ns < 512)
		return 0;
	o = 63u - (unsigned int)__builtin_clzll(ns); /* >= 9 */
	i = 1 + (o - 9) * 4 + (unsigned int)((ns >> (o - 2)) & 3);
	return i < NBUCKETS ? i : NBUCKETS - 1;
}

/* First latency past bucket @i. */
static uint64_t
lat_bucket_end(unsigned int i)
{
	if (i == 0)
		return 512;
	return (uint64_t)(5 + (i - 1) % 4) << (7 + (i - 1) / 4);
}

void
uffd_record_latency(struct memfault_uffd *u, uint64_t ns)
{
	uint64_t max = MEMFAULT_READ_ONCE(u->max_ns);

	memfault_add(&u->hist[lat_bucket(ns)], 1, MEMFAULT_RELAXED);
	while (ns > max &&
	       !memfault_cmpxchg_weak(&u->max_ns, &max, ns, MEMFAULT_RELAXED))
		;
}

static uint64_t
percentile(const uint64_t *hist, uint64_t total, uint64_t max,
	   unsigned int pct)
{
	uint64_t rank = (total * pct + 99) / 100, seen = 0;

	if (!total)
		return 0;
	for (unsigned int i = 0; i < NBUCKETS - 1; i++) {
		seen += hist[i];
		if (seen >= rank)
			return lat_bucket_end(i) < max ? lat_bucket_end(i) : max;
	}
	return max;
}

MEMFAULT_EXPORT int
memfault_uffd_get_stats(const struct memfault_uffd *u,
			struct memfault_uffd_stats *ret_stats, size_t size)
{
	struct memfault_uffd_stats s;
	uint64_t total = 0;

	if (!u || !ret_stats || !size)
		return -EINVAL;
	memset(&s, 0, sizeof(s));
	s.features = u->features;
	s.faults = MEMFAULT_READ_ONCE(u->faults);
	s.page_ins = MEMFAULT_READ_ONCE(u->page_ins);
	s.kvm_page_ins = MEMFAULT_READ_ONCE(u->kvm_page_ins);
	s.waits = MEMFAULT_READ_ONCE(u->waits);
	s.unknown = MEMFAULT_READ_ONCE(u->unknown);
	s.errors = MEMFAULT_READ_ONCE(u->errors);
	s.latency_max_ns = MEMFAULT_READ_ONCE(u->max_ns);
	for (unsigned int i = 0; i < NBUCKETS; i++) {
		s.latency[i] = MEMFAULT_READ_ONCE(u->hist[i]);
		total += s.latency[i];
	}
	s.latency_p50_ns = percentile(s.latency, total, s.latency_max_ns, 50);
	s.latency_p99_ns = percentile(s.latency, total, s.latency_max_ns, 99);
	pthread_mutex_lock((pthread_mutex_t *)&u->err_lock);
	s.last_error_addr = u->err_addr;
	s.last_error_gpa = u->err_gpa;
	s.last_error = u->err;
	s.last_error_tid = u->err_tid;
	pthread_mutex_unlock((pthread_mutex_t *)&u->err_lock);
	memfault_copy_out(ret_stats, size, &s, sizeof(s));
	return 0;
}

