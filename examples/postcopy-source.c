/* SPDX-License-Identifier: MIT */
/*
 * postcopy-source.c - the migration source of the post-copy example
 * (postcopy.c), and the destination's end of the stream to it.
 *
 * The source is a page server in a child process. It holds the guest's
 * memory (generated, so that both sides can check it) and answers page
 * requests on two channels: an urgent one, for the pages a vCPU is waiting
 * for, and a background one, for prefetching. It serves urgent requests
 * first and sleeps --latency-us per page, as a network would, and counts
 * every page it serves, so that the VMM can check that none was fetched
 * twice. Nothing here uses libmemfault: a real VMM has its migration
 * stream already.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pipe2() */
#endif

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "postcopy.h"

/* ---- The migrated memory, as the source holds it ---------------------- */

uint64_t
source_word(uint64_t page, uint64_t i)
{
	uint64_t z = (page << 32 | i) + 0x9e3779b97f4a7c15ull; /* splitmix64 */

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void
source_page(uint64_t page, uint64_t *dst, size_t page_size)
{
	size_t i;

	for (i = 0; i < page_size / 8; i++)
		dst[i] = source_word(page, i);
}

uint64_t
probe_offset(uint64_t page, size_t page_size)
{
	return (page * 8) % page_size;
}

uint32_t
source_checksum(uint64_t npages, size_t page_size)
{
	uint32_t sum = 0;
	uint64_t p;

	for (p = 0; p < npages; p++) /* the low half: little-endian loads */
		sum += (uint32_t)source_word(p, probe_offset(p, page_size) / 8);
	return sum;
}

/* ---- The protocol --------------------------------------------------------
 *
 * A request is a struct request; its reply a struct reply followed, if
 * its status is 0, by the page (OP_FETCH), or a struct server_stats
 * (OP_STATS).
 */
enum { OP_FETCH = 1, OP_STATS = 2 };

struct request {
	uint32_t op;
	uint32_t reserved;
	uint64_t page;
};

struct reply {
	uint64_t page;
	int32_t status; /* 0 or a negative errno */
	uint32_t reserved;
};

/* Read (@out false) or write exactly @len bytes of a pipe; false on EOF
 * or error. */
static bool
transfer(int fd, void *buf, size_t len, bool out)
{
	while (len) {
		ssize_t n = out ? write(fd, buf, len) : read(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		buf = (char *)buf + n;
		len -= (size_t)n;
	}
	return true;
}

static bool
read_full(int fd, void *buf, size_t len)
{
	return transfer(fd, buf, len, false);
}

static bool
write_full(int fd, const void *buf, size_t len)
{
	return transfer(fd, (void *)buf, len, true); /* write() reads it only */
}

/* ---- The page server (the child) ------------------------------------- */

struct server {
	uint64_t npages;
	size_t page_size;
	unsigned latency_us;
	uint8_t *served; /* per page: how often it was served */
	uint64_t *page_buf;
	struct server_stats st;
};

/* Serve one request from @rfd, reply on @wfd; false once the peer is gone. */
static bool
serve(struct server *s, int rfd, int wfd, bool urgent)
{
	struct timespec delay = { s->latency_us / 1000000,
				  (long)(s->latency_us % 1000000) * 1000 };
	struct request req;
	struct reply rep = { 0 };

	if (!read_full(rfd, &req, sizeof(req)))
		return false; /* the peer is gone */
	if (req.op == OP_STATS) {
		s->st.checksum = source_checksum(s->npages, s->page_size);
		return write_full(wfd, &s->st, sizeof(s->st));
	}
	rep.page = req.page;
	if (req.op != OP_FETCH || req.page >= s->npages) {
		rep.status = -EINVAL;
		return write_full(wfd, &rep, sizeof(rep));
	}
	while (nanosleep(&delay, &delay) && errno == EINTR) /* the network */
		;
	source_page(req.page, s->page_buf, s->page_size);
	s->st.requests++;
	if (urgent)
		s->st.urgent++;
	else
		s->st.background++;
	if (s->served[req.page]++) {
		if (!s->st.duplicates)
			s->st.first_duplicate = req.page;
		s->st.duplicates++;
	} else {
		s->st.unique++;
	}
	return write_full(wfd, &rep, sizeof(rep)) &&
	       write_full(wfd, s->page_buf, s->page_size);
}

/*
 * The child: urgent requests first, until both channels are closed.
 * @rfd[i] and @wfd[i]: the request and reply pipes of channel i (0:
 * urgent, 1: background).
 */
static void
server_main(struct server *s, const int rfd[2], const int wfd[2])
{
	struct pollfd pfd[2] = {
		{ .fd = rfd[0], .events = POLLIN },
		{ .fd = rfd[1], .events = POLLIN },
	};
	int i;

	s->served = calloc(s->npages, 1);
	s->page_buf = malloc(s->page_size);
	if (!s->served || !s->page_buf)
		_exit(1);
	while (pfd[0].fd >= 0 || pfd[1].fd >= 0) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		/* one request per round, the urgent channel first */
		for (i = 0; i < 2; i++) {
			if (pfd[i].fd < 0 || !pfd[i].revents)
				continue;
			if (!serve(s, pfd[i].fd, wfd[i], i == 0)) {
				close(pfd[i].fd);
				close(wfd[i]);
				pfd[i].fd = -1;
			}
			break;
		}
	}
	_exit(0);
}

int
start_server(uint64_t npages, size_t page_size, unsigned latency_us,
	     struct channel *urgent, struct channel *background,
	     pid_t *ret_pid)
{
	struct server s = { npages, page_size, latency_us, NULL, NULL, { 0 } };
	struct channel *ch[2] = { urgent, background };
	/* req[i]: VMM -> source, rep[i]: source -> VMM, for channel i; [0]
	 * is the read end. */
	int req[2][2], rep[2][2], i, r = 0;
	pid_t pid = -1;

	for (i = 0; i < 2; i++) {
		req[i][0] = req[i][1] = rep[i][0] = rep[i][1] = -1;
		if (pipe2(req[i], O_CLOEXEC) || pipe2(rep[i], O_CLOEXEC))
			r = -errno;
	}
	if (!r) {
		fflush(stdout); /* or the child prints it again */
		pid = fork();
		if (pid < 0)
			r = -errno;
	}
	if (!r && pid == 0) {
		int rfd[2] = { req[0][0], req[1][0] };
		int wfd[2] = { rep[0][1], rep[1][1] };

		for (i = 0; i < 2; i++) {
			close(req[i][1]);
			close(rep[i][0]);
		}
		server_main(&s, rfd, wfd);
	}
	/* The parent keeps its ends only (or none, on failure). */
	for (i = 0; i < 2; i++) {
		close(req[i][0]);
		close(rep[i][1]);
		if (r) {
			close(req[i][1]);
			close(rep[i][0]);
			req[i][1] = rep[i][0] = -1;
		}
		ch[i]->fd = req[i][1];
		ch[i]->rfd = rep[i][0];
	}
	*ret_pid = pid;
	return r;
}

/* ---- The VMM's end of the stream ------------------------------------- */

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int
fetch_page(struct channel *ch, uint64_t page, void *dst, size_t page_size)
{
	struct request req = { .op = OP_FETCH, .page = page };
	struct reply rep;
	uint64_t t0, dt;
	int r = 0;

	pthread_mutex_lock(&ch->lock);
	t0 = now_ns();
	errno = 0;
	if (!write_full(ch->fd, &req, sizeof(req)) ||
	    !read_full(ch->rfd, &rep, sizeof(rep)))
		r = errno ? -errno : -EPIPE;
	else if (rep.page != page)
		r = -EPROTO;
	else if (rep.status)
		r = rep.status;
	else if (!read_full(ch->rfd, dst, page_size))
		r = -EPROTO;
	if (!r) {
		dt = now_ns() - t0;
		ch->fetches++;
		ch->total_ns += dt;
		if (dt > ch->max_ns)
			ch->max_ns = dt;
	}
	pthread_mutex_unlock(&ch->lock);
	return r;
}

int
query_stats(struct channel *ch, struct server_stats *st)
{
	struct request req = { .op = OP_STATS };
	int r = 0;

	pthread_mutex_lock(&ch->lock);
	errno = 0;
	if (!write_full(ch->fd, &req, sizeof(req)) ||
	    !read_full(ch->rfd, st, sizeof(*st)))
		r = errno ? -errno : -EPROTO;
	pthread_mutex_unlock(&ch->lock);
	return r;
}

int
stop_server(struct channel *urgent, struct channel *background, pid_t pid)
{
	struct channel *ch[2] = { urgent, background };
	int i, status;

	for (i = 0; i < 2; i++) {
		if (ch[i]->fd >= 0)
			close(ch[i]->fd);
		if (ch[i]->rfd >= 0)
			close(ch[i]->rfd);
		ch[i]->fd = ch[i]->rfd = -1;
	}
	if (pid <= 0)
		return 0;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status))
		return -ECHILD;
	return 0;
}
