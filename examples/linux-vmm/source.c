/* SPDX-License-Identifier: MIT */
/*
 * source.c - linux-vmm's page source and what it checks. The source is a
 * child process (fork) that holds the RAM image and answers page requests
 * over a pair of pipes (small test kernels have no AF_UNIX sockets). It
 * counts requests per page and sends, with each page, a checksum of the
 * page as its image holds it; page_in() checksums what it wrote. After the
 * run, check_pages() asks: did every fetched page arrive intact, was no
 * page requested twice, and are the pages fetched exactly the pages the
 * guest memory holds (mincore()) and the bitmap has present?
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "linux-vmm.h"

#define PAGE_REQ_STATS UINT64_MAX /* a request for struct source_stats */

/* FNV-1a, 64 bits: cheap, and any changed byte changes it. */
static uint64_t
page_sum(const uint8_t *p)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (unsigned i = 0; i < PAGE; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

/* Read or write all of @len bytes; 0, or a negative errno (-EPIPE: EOF). */
int
xfer(int fd, void *buf, size_t len, bool wr)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = wr ? write(fd, p, len) : read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n ? -errno : -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The child: answer requests until the VMM closes its end. */
static void
source_main(struct vmm *v, int rfd, int wfd)
{
	uint32_t *count = calloc(v->npages, sizeof(*count));
	struct source_stats st = { 0 };
	uint8_t buf[PAGE + 8];
	uint64_t page, sum;
	bool corrupt = is_mutant(v, "byte");

	if (!count)
		_exit(2);
	while (xfer(rfd, &page, sizeof(page), false) == 0) {
		if (page == PAGE_REQ_STATS) {
			if (xfer(wfd, &st, sizeof(st), true))
				_exit(2);
			continue;
		}
		if (page >= v->npages)
			_exit(3);
		st.requests++;
		if (count[page]++)
			st.duplicates++;
		else
			st.distinct++;
		memcpy(buf, v->image + page * PAGE, PAGE);
		sum = page_sum(buf);
		memcpy(buf + PAGE, &sum, sizeof(sum));
		/* mutant: the 100th page sent has one byte wrong */
		if (corrupt && st.requests == 100)
			buf[17] ^= 0x40;
		if (xfer(wfd, buf, sizeof(buf), true))
			_exit(2);
	}
	_exit(0);
}

/* Fork the source with v->image; the VMM then drops its own copy. */
int
source_start(struct vmm *v)
{
	int req[2], rep[2];

	if (pipe2(req, O_CLOEXEC) || pipe2(rep, O_CLOEXEC))
		return -errno;
	fflush(NULL);
	v->source = fork();
	if (v->source < 0)
		return -errno;
	if (v->source == 0) {
		close(req[1]);
		close(rep[0]);
		source_main(v, req[0], rep[1]);
	}
	close(req[0]);
	close(rep[1]);
	v->req_fd = req[1];
	v->rep_fd = rep[0];
	/* From now on only the source holds the image. */
	munmap(v->image, v->mem_size);
	v->image = NULL;
	return 0;
}

/* Close the pipes (the source's EOF) and reap it. */
void
source_stop(struct vmm *v)
{
	if (v->source <= 0)
		return;
	close(v->req_fd);
	close(v->rep_fd);
	waitpid(v->source, NULL, 0);
	v->source = 0;
}

/*
 * One request and its answer, whole, under source_lock. A page request's
 * time, the wait for the lock included, goes into fetch_ns.
 */
static int
source_ask(struct vmm *v, uint64_t req, void *answer, size_t len)
{
	double t0 = now();
	int r;

	pthread_mutex_lock(&v->source_lock);
	r = xfer(v->req_fd, &req, sizeof(req), true);
	if (!r)
		r = xfer(v->rep_fd, answer, len, false);
	if (req != PAGE_REQ_STATS) {
		v->fetch_ns += (uint64_t)((now() - t0) * 1e9);
		atomic_fetch_add_explicit(&v->fetches, 1, memory_order_relaxed);
	}
	pthread_mutex_unlock(&v->source_lock);
	return r;
}

/* Ask the source for @page into @dst; returns the source's checksum. */
int
source_fetch(struct vmm *v, uint64_t page, uint8_t *dst, uint64_t *sum)
{
	uint8_t buf[PAGE + 8];
	int r = source_ask(v, page, buf, sizeof(buf));

	if (r)
		return r;
	memcpy(dst, buf, PAGE);
	memcpy(sum, buf + PAGE, sizeof(*sum));
	return 0;
}

/*
 * page_in(): a vCPU's KVM Userfault exit, or a host access caught by
 * userfaultfd, needs @page. @hva is the library's buffer (installed with
 * UFFDIO_COPY after we return), so checksumming it checks what the guest
 * gets.
 */
int
page_in(void *user, struct memfault_vcpu *vcpu, struct memfault_region *region,
	uint64_t page, void *hva, uint64_t page_size)
{
	struct vmm *v = user;
	uint64_t sum;
	int r;

	if (page_size != PAGE || page >= v->npages)
		return -EINVAL;
	r = source_fetch(v, page, hva, &sum);
	if (r)
		return r;
	/* mutant: the 50th page-in asks the source twice */
	if (is_mutant(v, "dup") &&
	    atomic_load_explicit(&v->fetches, memory_order_relaxed) == 50)
		source_fetch(v, page, hva, &sum);
	atomic_store_explicit(&v->src_sum[page], sum, memory_order_relaxed);
	atomic_store_explicit(&v->got_sum[page], page_sum(hva),
			      memory_order_relaxed);
	atomic_fetch_add_explicit(&v->fetched[page], 1, memory_order_relaxed);
	return MEMFAULT_RESOLVED;
}

/* Pages fetched, fetched twice, and with a checksum not the source's. */
static void
count_fetched(struct vmm *v, uint64_t *fetched, uint64_t *twice, uint64_t *bad)
{
	for (uint64_t p = 0; p < v->npages; p++) {
		uint32_t n = atomic_load_explicit(&v->fetched[p],
						  memory_order_relaxed);
		uint64_t got = v->got_sum[p], want = v->src_sum[p];

		*fetched += n ? 1 : 0;
		*twice += n > 1;
		if (n && got != want && (*bad)++ < 5)
			printf("check: page %" PRIu64 " (gpa 0x%" PRIx64 "): checksum %016" PRIx64 " != source's %016" PRIx64 "\n",
			       p, p * PAGE, got, want);
	}
}

/* The pages the guest memory holds: touched by somebody, so fetched. */
static uint64_t
count_resident(struct vmm *v)
{
	unsigned char *vec = malloc(v->npages);
	uint64_t resident = 0;

	if (vec && mincore(v->ram, v->mem_size, vec) == 0)
		for (uint64_t p = 0; p < v->npages; p++)
			resident += vec[p] & 1;
	free(vec);
	return resident;
}

bool
check_pages(struct vmm *v)
{
	uint64_t fetched = 0, twice = 0, bad = 0, resident, missing = 0;
	struct source_stats st = { 0 };
	bool ok = true;

	count_fetched(v, &fetched, &twice, &bad);
	resident = count_resident(v);
	memfault_region_count_missing(v->region, &missing);
	if (source_ask(v, PAGE_REQ_STATS, &st, sizeof(st))) {
		printf("check: the page source did not answer\n");
		ok = false;
	}
	printf("pages: %" PRIu64 " fetched (%" PRIu64 " KiB), %" PRIu64 " resident, %" PRIu64 " present in the bitmap, source: %" PRIu64 " requests, %" PRIu64 " distinct pages, %" PRIu64 " duplicates\n",
	       fetched, fetched * 4, resident, v->npages - missing,
	       st.requests, st.distinct, st.duplicates);
	if (st.duplicates || twice) {
		printf("check: FAILED: %" PRIu64 " pages requested twice (%" PRIu64 " page-ins twice)\n",
		       st.duplicates, twice);
		ok = false;
	}
	if (st.requests != fetched || st.distinct != fetched ||
	    resident != fetched || v->npages - missing != fetched) {
		printf("check: FAILED: fetched, requested, resident and present differ\n");
		ok = false;
	}
	if (bad) {
		printf("check: FAILED: %" PRIu64 " pages differ from the source's image\n",
		       bad);
		ok = false;
	}
	if (ok)
		printf("check: OK: every touched page fetched exactly once, all %" PRIu64 " checksums equal the source's\n",
		       fetched);
	return ok;
}
