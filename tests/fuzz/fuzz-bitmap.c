/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: bitmap operations of one region against a model (a
 * set of missing pages and a set of claimed pages).
 *
 * Per input: a region (no memslot) of 1..2048 pages, all present or all
 * missing, then up to 256 operations: mark_missing, publish, is_missing,
 * find_missing, find_present, count_missing, claim (NOWAIT, or waiting
 * when the page is not claimed: one thread would wait for itself), abort,
 * find_region, with ranges biased to word edges and to overflowing
 * values. After each operation the result and every output are compared
 * with the model; every 16 operations, and at the end, the whole raw
 * bitmap (the words KVM reads) is compared bit by bit, tail bits of the
 * last word included.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include <linux/kvm.h>

#include "fuzz-common.h"
#include "kvmsim.h"
#include "memfault/memfault.h"

#define MAX_PAGES 2048
#define BPL (8 * sizeof(unsigned long))
#define NOT_WRITTEN 0x5a5a5a5a5a5a5a5aull

static struct memfault_vm *vm;
static uint64_t page;
static bool missing[MAX_PAGES], busy[MAX_PAGES];

/*
 * The model's loops are not the code under test: keeping coverage
 * instrumentation out of them (clang's no_sanitize("coverage")) makes an
 * execution about 4 times faster, and does not hide anything from the
 * fuzzer, which steers by the library's branches. ASan still checks them.
 */
#define MODEL __attribute__((noinline, no_sanitize("coverage")))

/* First page at or after @a whose state is @want_set, or @n. */
MODEL static uint64_t
model_find(uint64_t a, uint64_t n, bool want_set)
{
	while (a < n && missing[a] != want_set)
		a++;
	return a;
}

MODEL static uint64_t
model_count(uint64_t n)
{
	uint64_t c = 0;

	for (uint64_t i = 0; i < n; i++)
		c += missing[i];
	return c;
}

/* First bit of @bm (whole words, tail bits included) that differs from
 * the model, or UINT64_MAX. */
MODEL static uint64_t
model_diff(const unsigned long *bm, uint64_t n)
{
	for (uint64_t i = 0; i < (n + BPL - 1) / BPL * BPL; i++) {
		bool bit = (bm[i / BPL] >> (i % BPL)) & 1;

		if (bit != (i < n && missing[i]))
			return i;
	}
	return UINT64_MAX;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct kvmsim_config cfg = { KVMSIM_X86_64, KVMSIM_LEVEL_7_2, 0 };
	int kvm, fd;

	(void)argc;
	(void)argv;
	page = (uint64_t)sysconf(_SC_PAGESIZE);
	cfg.quirks = kvmsim_default_quirks(cfg.arch, cfg.level);
	CHECK(kvmsim_reset(&cfg) == 0);
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	CHECK(kvm >= 0);
	fd = ioctl(kvm, KVM_CREATE_VM, 0);
	CHECK(fd >= 0);
	CHECK(memfault_vm_new(fd, NULL, &vm) == 0);
	return 0;
}

/* An index or count: near word edges, anywhere, or huge. */
static uint64_t
rd_idx(struct reader *rd, uint64_t n)
{
	switch (rd_u8(rd) % 8) {
	case 0:
		return rd_num(rd, n + 2);
	case 1:
	case 2: {
		uint64_t w = rd_u8(rd) % (n / BPL + 2);
		int d = (int)(rd_u8(rd) % 5) - 2;

		return w * BPL + (uint64_t)(int64_t)d;
	}
	default:
		return rd_u16(rd) % (n + 2);
	}
}

static bool
range_ok(uint64_t n, uint64_t first, uint64_t count)
{
	return first <= n && count <= n - first;
}

static void
check_raw(struct memfault_region *r, uint64_t n)
{
	struct memfault_region_info info;
	const unsigned long *bm;

	CHECK(memfault_region_get_info(r, &info, sizeof(info)) == 0);
	CHECK(info.npages == n && info.page_size == page);
	bm = (const unsigned long *)(uintptr_t)info.bitmap;
	CHECK(model_diff(bm, n) == UINT64_MAX);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct reader rd = { data, len };
	long maps = fuzz_live_maps();
	struct memfault_region *r;
	uint64_t n, gpa, c;
	uint32_t flags;
	bool all;
	int nops;

	n = 1 + rd_u16(&rd) % MAX_PAGES;
	all = rd_u8(&rd) & 1;
	gpa = (rd_u32(&rd) % (1u << 20)) * page;
	flags = MEMFAULT_REGION_NO_MEMSLOT | (all ? MEMFAULT_REGION_MISSING : 0);
	{
		MEMFAULT_OPTS(memfault_region_opts, o, .flags = flags);

		CHECK(memfault_region_new(vm, 0, gpa, n * page, NULL, &o, &r) ==
		      0);
	}
	memset(missing, 0, sizeof(missing));
	memset(missing, all, n);
	memset(busy, 0, sizeof(busy));
	check_raw(r, n);

	nops = 1 + rd_u8(&rd);
	for (int k = 0; k < nops && rd.n; k++) {
		uint64_t a = rd_idx(&rd, n), b = rd_idx(&rd, n), out, want;
		int ret;

		switch (rd_u8(&rd) % 10) {
		case 0:
			ret = memfault_region_mark_missing(r, a, b);
			if (!range_ok(n, a, b)) {
				CHECK(ret == -EINVAL);
				break;
			}
			CHECK(ret == 0);
			memset(&missing[a], true, b);
			break;
		case 1:
			ret = memfault_region_publish(r, a, b);
			if (!range_ok(n, a, b)) {
				CHECK(ret == -EINVAL);
				break;
			}
			CHECK(ret == 0);
			/* publishing also releases a claim on the page */
			memset(&missing[a], false, b);
			memset(&busy[a], false, b);
			break;
		case 2:
			ret = memfault_region_is_missing(r, a);
			CHECK(a < n ? ret == missing[a] : ret == -EINVAL);
			break;
		case 3:
		case 4: {
			bool want_set = rd_u8(&rd) & 1;

			out = NOT_WRITTEN;
			ret = want_set ? memfault_region_find_missing(r, a, &out)
				       : memfault_region_find_present(r, a, &out);
			if (a >= n) {
				CHECK(ret == -EINVAL && out == NOT_WRITTEN);
				break;
			}
			want = model_find(a, n, want_set);
			if (want == n) {
				CHECK(ret == -ENOENT && out == NOT_WRITTEN);
			} else {
				CHECK(ret == 0 && out == want);
			}
			break;
		}
		case 5:
			out = NOT_WRITTEN;
			ret = memfault_region_count_missing(r, &out);
			c = model_count(n);
			CHECK(ret == 0 && out == c);
			CHECK(memfault_region_count_missing(r, NULL) == -EINVAL);
			break;
		case 6:
		case 7: {
			uint32_t fl = rd_u8(&rd) % 8 ? rd_u8(&rd) & 1 : rd_u32(&rd);

			/* a waiting claim on our own claim would never end */
			if (a < n && busy[a])
				fl |= MEMFAULT_CLAIM_NOWAIT;
			ret = memfault_region_claim(r, a, fl);
			if (a >= n || (fl & ~(uint32_t)MEMFAULT_CLAIM_NOWAIT)) {
				CHECK(ret == -EINVAL);
			} else if (!missing[a]) {
				CHECK(ret == MEMFAULT_CLAIM_PRESENT);
			} else if (busy[a]) {
				CHECK(ret == MEMFAULT_CLAIM_BUSY);
			} else {
				CHECK(ret == MEMFAULT_CLAIM_FETCH);
				busy[a] = true;
			}
			break;
		}
		case 8:
			ret = memfault_region_abort(r, a);
			if (a >= n) {
				CHECK(ret == -EINVAL);
			} else if (!busy[a]) {
				CHECK(ret == -EPERM);
			} else {
				CHECK(ret == 0);
				busy[a] = false;
			}
			break;
		default: {
			struct memfault_region *found = NULL;
			uint64_t pg = NOT_WRITTEN;
			uint64_t q = gpa + a * page + b % page; /* may wrap */

			ret = memfault_vm_find_region(vm, q, &found, &pg);
			if (q - gpa < n * page) {
				CHECK(ret == 0 && found == r &&
				      pg == (q - gpa) / page);
			} else {
				CHECK(ret == -ENOENT && !found &&
				      pg == NOT_WRITTEN);
			}
		}
		}
		if (k % 16 == 15)
			check_raw(r, n);
	}
	check_raw(r, n);
	memfault_region_free(r);
	CHECK(fuzz_live_maps() == maps); /* the bitmaps were unmapped */
	return 0;
}
