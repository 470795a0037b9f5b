/* SPDX-License-Identifier: MIT */
/* Helpers shared by the libFuzzer targets: CHECK, an input reader and fd
 * checks. */
#ifndef MEMFAULT_FUZZ_COMMON_H
#define MEMFAULT_FUZZ_COMMON_H

#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);
int LLVMFuzzerInitialize(int *argc, char ***argv);
/* Mappings made and not unmapped since start-up (fuzz-mmap.c). */
long fuzz_live_maps(void);

/* A finding: say which check, then abort() so that libFuzzer keeps the
 * input as a crash. */
#define CHECK(cond)                                                           \
	do {                                                                  \
		if (!(cond)) {                                                \
			fprintf(stderr, "%s:%d: check failed: %s\n",          \
				__FILE__, __LINE__, #cond);                   \
			abort();                                              \
		}                                                             \
	} while (0)

/* Reads the input front to back; past the end every read is 0. */
struct reader {
	const uint8_t *p;
	size_t n;
};

static inline uint64_t
rd_bytes(struct reader *rd, unsigned nbytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < nbytes; i++) {
		uint64_t b = 0;

		if (rd->n) {
			b = *rd->p++;
			rd->n--;
		}
		v |= b << (8 * i);
	}
	return v;
}

static inline uint8_t
rd_u8(struct reader *rd)
{
	return (uint8_t)rd_bytes(rd, 1);
}

static inline uint16_t
rd_u16(struct reader *rd)
{
	return (uint16_t)rd_bytes(rd, 2);
}

static inline uint32_t
rd_u32(struct reader *rd)
{
	return (uint32_t)rd_bytes(rd, 4);
}

static inline uint64_t
rd_u64(struct reader *rd)
{
	return rd_bytes(rd, 8);
}

/* A 64-bit value biased to the interesting ones: small, edges, any. */
static inline uint64_t
rd_num(struct reader *rd, uint64_t small)
{
	switch (rd_u8(rd) % 8) {
	case 0:
		return 0;
	case 1:
		return UINT64_MAX - rd_u8(rd);
	case 2:
		return rd_u64(rd);
	case 3:
		return (uint64_t)1 << (rd_u8(rd) % 64);
	default:
		return small ? rd_u32(rd) % small : 0;
	}
}

/* Open fds among 0..FD_SCAN-1, as a bit set. */
#define FD_SCAN 256
struct fdset {
	uint64_t w[FD_SCAN / 64];
};

static inline void
fdset_take(struct fdset *s)
{
	struct pollfd p[FD_SCAN];

	/*
	 * One poll() with a zero timeout instead of FD_SCAN fcntl() calls:
	 * it marks every fd that is not open POLLNVAL, and touches no other.
	 */
	for (int fd = 0; fd < FD_SCAN; fd++)
		p[fd] = (struct pollfd){ .fd = fd, .events = 0 };
	if (poll(p, FD_SCAN, 0) < 0)
		abort();
	memset(s, 0, sizeof(*s));
	for (int fd = 0; fd < FD_SCAN; fd++)
		if (!(p[fd].revents & POLLNVAL))
			s->w[fd / 64] |= 1ull << (fd % 64);
}

/* abort() if an fd is open now that was not open in @base. */
static inline void
fdset_check(const struct fdset *base)
{
	struct fdset now;

	fdset_take(&now);
	for (int i = 0; i < FD_SCAN / 64; i++)
		if (now.w[i] & ~base->w[i])
			abort();
}

#endif
