/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: random sequences of public API calls with random
 * arguments against the KVM simulator (no userfaultfd: those calls need a
 * second thread to serve faults, and the bad-input matrix and the fault
 * injection test cover them).
 *
 * Per input: kvmsim_reset() with an arch, level and quirk mask from the
 * input, /dev/kvm, a VM and two vCPUs made with raw ioctls; then a
 * sequence of operations on tables of VM, vCPU and region objects
 * (constructors with random options and fds, getters with random sizes,
 * runs and dispatch with random guest scripts and handler verdicts, bitmap
 * operations, kicks, memslot error injection), then every object is freed
 * and the simulator reset.
 *
 * Checked on every call: the result is in the documented range (0/a
 * documented non-negative value or -1..-4095), an output is written only on
 * success and never past the size given, and after the input no fd is
 * left open that was not open before. ASan and UBSan check the rest
 * (including leaks, at exit).
 *
 * And against a model of what the calls must return: each region's bitmap
 * is shadowed (M[], set from the MISSING flag at creation, by
 * mark_missing() and cleared by publish() and by every page_in() that
 * returns RESOLVED, which dispatch publishes). is_missing(),
 * count_missing(), find_missing(), find_present(), claim() and abort()
 * must answer exactly what the shadow and the claims the harness holds
 * say, invalid pages and flags included; page_in() is only ever asked for
 * a missing page nobody holds; a dispatch that ends the guest's script
 * (EXIT) has every page the script touched present, and a userfault it
 * hands to the VMM is on a missing page. At the end of each input the
 * whole bitmap of every region is compared with its shadow.
 *
 * The harness never misuses the API on purpose: objects are used only
 * while alive, a page it claimed is released before any vCPU runs (a run
 * would wait for it forever), kick signals are real-time signals (libFuzzer
 * owns SIGINT, SIGUSR1, ...), and handlers bound max_repeats.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <linux/kvm.h>

#include "fuzz-common.h"
#include "kvm-userfault-proposed.h"
#include "kvmsim.h"
#include "memfault/memfault.h"

#define MAX_VMS 3
#define MAX_VCPUS 4
#define MAX_REGIONS 6
#define MAX_OPS 64
#define MAX_HELD 4
#define POOL_PAGES 32
#define GUARD 64
#define FILL 0xa5

#define RAM_GPA 0x20000000ull
#define GMEM_GPA 0x30000000ull
#define MMIO_GPA 0x10000000ull

static struct reader *cur; /* the input, for handler verdicts */
static uint64_t page;
static void *pool;         /* guest RAM for regions: POOL_PAGES pages */
static struct fdset base_fds; /* open when the input started */

static struct {
	/*
	 * vm_fd and vcpu_fd[] are only ever borrowed; vm2_fd and vcpu2_fd
	 * may be wrapped once each, with OWN_FD, and are never used again
	 * once that object is gone (its fd number may be reused).
	 */
	int kvm_fd, vm_fd, vm2_fd, vcpu_fd[2], vcpu2_fd, gmem_fd, null_fd,
		closed_fd;
	bool vm2_taken, vcpu2_taken;
	uint32_t arch, level;
	struct memfault_vm *vm[MAX_VMS];
	bool vm_freed[MAX_VMS];     /* freed by the caller: no more calls */
	bool vm_owns[MAX_VMS];
	struct memfault_vcpu *vcpu[MAX_VCPUS];
	void *vcpu_run_buf[MAX_VCPUS];
	struct memfault_vm *vcpu_vm[MAX_VCPUS]; /* the VM object of each */
	struct memfault_region *region[MAX_REGIONS];
	/* the pages the harness has claimed in each region (-1: none) */
	int64_t held[MAX_REGIONS][MAX_HELD];
} S;

/* ---- the model ---- */

/* Regions with more pages are not shadowed (only from op_region_new()'s
 * random sizes); their answers are still range-checked. */
#define MODEL_MAX_PAGES (1ull << 22)

static struct model {
	uint64_t npages;
	uint64_t *bits; /* NULL: not modelled */
} M[MAX_REGIONS];

static void m_set(int i, uint64_t first, uint64_t n, bool v);

static void
m_init(int i, struct memfault_region *reg, bool missing)
{
	struct memfault_region_info info;

	CHECK(memfault_region_get_info(reg, &info, sizeof(info)) == 0);
	free(M[i].bits);
	M[i].npages = info.npages;
	M[i].bits = NULL;
	if (info.npages > MODEL_MAX_PAGES)
		return;
	M[i].bits = calloc((info.npages + 63) / 64 + 1, sizeof(uint64_t));
	CHECK(M[i].bits);
	if (missing)
		m_set(i, 0, info.npages, true);
}

static void
m_drop(int i)
{
	free(M[i].bits);
	M[i].bits = NULL;
	M[i].npages = 0;
}

static bool
m_get(int i, uint64_t pg)
{
	return (M[i].bits[pg / 64] >> (pg % 64)) & 1;
}

/* word by word: regions of up to MODEL_MAX_PAGES are set whole */
static void
m_set(int i, uint64_t first, uint64_t n, bool v)
{
	uint64_t p = first, end = first + n;

	if (!M[i].bits)
		return;
	while (p < end) {
		uint64_t b = p % 64, k = end - p < 64 - b ? end - p : 64 - b;
		uint64_t m = (k == 64 ? ~0ull : ((1ull << k) - 1)) << b;

		if (v)
			M[i].bits[p / 64] |= m;
		else
			M[i].bits[p / 64] &= ~m;
		p += k;
	}
}

static uint64_t
m_count(int i)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < (M[i].npages + 63) / 64; w++)
		n += (uint64_t)__builtin_popcountll(M[i].bits[w]);
	return n;
}

/* find_missing()/find_present() as documented */
static int
m_find(int i, uint64_t from, bool want, uint64_t *ret)
{
	uint64_t w, x;

	if (from >= M[i].npages)
		return -EINVAL;
	w = from / 64;
	x = (want ? M[i].bits[w] : ~M[i].bits[w]) & (~0ull << (from % 64));
	for (;;) {
		if (x) {
			uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(x);

			if (p >= M[i].npages)
				return -ENOENT;
			*ret = p;
			return 0;
		}
		if (++w >= (M[i].npages + 63) / 64)
			return -ENOENT;
		x = want ? M[i].bits[w] : ~M[i].bits[w];
	}
}

static int
m_index(const struct memfault_region *reg)
{
	for (int i = 0; i < MAX_REGIONS; i++)
		if (reg && S.region[i] == reg)
			return i;
	return -1;
}

static int held_find(int i, uint64_t pg);

/*
 * The whole bitmap against the shadow, run by run: each run of missing
 * and of present pages the library finds must be the shadow's.
 */
static void
m_compare(int i, struct memfault_region *reg)
{
	uint64_t n = 0, p = 0;
	bool want = true;

	if (!reg || !M[i].bits)
		return;
	CHECK(memfault_region_count_missing(reg, &n) == 0);
	CHECK(n == m_count(i));
	while (p < M[i].npages) {
		uint64_t q = 0, mq = 0;
		int r = want ? memfault_region_find_missing(reg, p, &q)
			     : memfault_region_find_present(reg, p, &q);

		CHECK(r == m_find(i, p, want, &mq));
		if (r)
			break;
		CHECK(q == mq);
		p = q;
		want = !want;
	}
}

static bool
is_errno(int r)
{
	return r < 0 && r > -4096;
}

/* ---- guarded output buffers ---- */

static unsigned char outbuf[512 + GUARD];

static void *
out_prepare(size_t size)
{
	memset(outbuf, FILL, size + GUARD);
	return outbuf;
}

/* Nothing written past @written (of the @size given). */
static void
out_check(size_t size, size_t written)
{
	for (size_t i = written; i < size + GUARD; i++)
		CHECK(outbuf[i] == FILL);
}

static size_t
rd_size(struct reader *rd, size_t full)
{
	switch (rd_u8(rd) % 4) {
	case 0:
		return full;
	case 1:
		return 0;
	case 2:
		return rd_u16(rd) % 512;
	default:
		return full + (rd_u8(rd) % 8) * 8;
	}
}

/* ---- handlers: verdicts from the input ---- */

static int
verdict(void)
{
	switch (rd_u8(cur) % 8) {
	case 0:
	case 1:
	case 2:
		return MEMFAULT_RESOLVED;
	case 3:
	case 4:
		return MEMFAULT_TO_VMM;
	case 5:
		return -EIO;
	case 6:
		return 7; /* not a verdict: -EPROTO */
	default:
		return -(int)(rd_u16(cur) % 5000);
	}
}

static bool
in_pool(const void *p, uint64_t size)
{
	uintptr_t a = (uintptr_t)p, b = (uintptr_t)pool;

	return a >= b && size <= POOL_PAGES * page && a - b <= POOL_PAGES * page - size;
}

static int
h_page_in(void *user, struct memfault_vcpu *vcpu, struct memfault_region *r,
	  uint64_t pg, void *hva, uint64_t page_size)
{
	struct memfault_region_info info;
	int v, i;

	(void)user;
	CHECK(vcpu && r);
	CHECK(page_size == page);
	CHECK(memfault_region_get_info(r, &info, sizeof(info)) == 0);
	CHECK(pg < info.npages);
	/* the page is claimed by us while page_in runs */
	CHECK(memfault_region_claim(r, pg, MEMFAULT_CLAIM_NOWAIT) ==
	      MEMFAULT_CLAIM_BUSY);
	if (hva && in_pool(hva, page_size))
		memset(hva, (int)pg, page_size);
	v = verdict();
	i = m_index(r);
	CHECK(i >= 0);
	if (M[i].bits) {
		/* only a missing page is fetched, and never one we hold */
		CHECK(m_get(i, pg));
		CHECK(held_find(i, pg) < 0);
		/* dispatch publishes what page_in() resolved */
		if (v == MEMFAULT_RESOLVED)
			m_set(i, pg, 1, false);
	}
	return v;
}

static int
h_fault(void *user, struct memfault_vcpu *vcpu, const struct memfault_fault *f)
{
	(void)user;
	CHECK(vcpu && f);
	CHECK(f->origin >= MEMFAULT_ORIGIN_ERRNO &&
	      f->origin <= MEMFAULT_ORIGIN_OTHER_ERRNO);
	return verdict();
}

static int
h_discard(void *user, uint64_t gpa, uint64_t size, uint32_t to_private)
{
	(void)user;
	CHECK(!(gpa % page) && !(size % page) && size && to_private <= 1);
	return verdict();
}

static void
h_log(void *user, int level, const char *msg)
{
	(void)user;
	CHECK(level >= 3 && level <= 7 && msg && strlen(msg) < 256);
}

/* ---- pieces of the setup ---- */

/*
 * An fd argument. For a vCPU only fds whose mmap() fails or maps a real
 * kvm_run: a mapping of another memfd would SIGBUS on access, which is no
 * library bug (KVM's VM and system fds have no mmap at all).
 */
static int
pick_fd(struct reader *rd, bool vm_side)
{
	switch (rd_u8(rd) % 8) {
	case 0:
		return vm_side ? S.kvm_fd : S.null_fd;
	case 1:
		return -1 - (int)(rd_u8(rd) % 3);
	case 2:
		return S.closed_fd;
	case 3:
		return S.null_fd;
	case 4:
		return vm_side ? (int)rd_u32(rd) : INT32_MAX - rd_u8(rd);
	default:
		return vm_side ? S.vm_fd : S.vcpu_fd[rd_u8(rd) % 2];
	}
}

static struct memfault_vm *
pick_vm(struct reader *rd)
{
	int i = rd_u8(rd) % MAX_VMS;

	return S.vm_freed[i] ? NULL : S.vm[i];
}

static void
set_script(struct reader *rd)
{
	struct kvmsim_step st[8];
	size_t n = rd_u8(rd) % 9;

	for (size_t i = 0; i < n; i++) {
		uint64_t base;

		memset(&st[i], 0, sizeof(st[i]));
		/* no SPIN: it would wait for a signal nobody sends */
		st[i].op = KVMSIM_OP_MMIO_READ + rd_u8(rd) % 7; /* ..STORE */
		st[i].flags = rd_u8(rd) & 0xf;
		switch (rd_u8(rd) % 4) {
		case 0:
			base = RAM_GPA;
			break;
		case 1:
			base = GMEM_GPA;
			break;
		case 2:
			base = MMIO_GPA;
			break;
		default:
			base = rd_u64(rd);
		}
		st[i].gpa = base + (rd_u8(rd) % POOL_PAGES) * page +
			    (rd_u8(rd) % 2 ? rd_u16(rd) % page : 0);
		st[i].value = rd_u64(rd);
		st[i].len = 1u << (rd_u8(rd) % 4);
		if (st[i].flags & KVMSIM_F_ACC)
			st[i].value = 0;
	}
	(void)kvmsim_vcpu_set_script(S.vcpu_fd[rd_u8(rd) % 2], st, n);
}

static int
held_find(int i, uint64_t pg)
{
	for (int k = 0; k < MAX_HELD; k++)
		if (S.held[i][k] == (int64_t)pg)
			return k;
	return -1;
}

static void
held_clear(int i)
{
	for (int k = 0; k < MAX_HELD; k++)
		S.held[i][k] = -1;
}

/* Release every claim the harness holds: a run would wait for it. */
static void
release_claims(struct reader *rd)
{
	for (int i = 0; i < MAX_REGIONS; i++) {
		for (int k = 0; S.region[i] && k < MAX_HELD; k++) {
			uint64_t pg = (uint64_t)S.held[i][k];

			if (S.held[i][k] < 0)
				continue;
			if (rd_u8(rd) & 1)
				CHECK(memfault_region_abort(S.region[i], pg) == 0);
			else {
				CHECK(memfault_region_publish(S.region[i], pg,
							      1) == 0);
				m_set(i, pg, 1, false);
			}
		}
		held_clear(i);
	}
}

/* ---- operations ---- */

static void
op_vm_new(struct reader *rd)
{
	int i = rd_u8(rd) % MAX_VMS;
	struct memfault_vm *vm = (void *)&outbuf, *sentinel = vm;
	struct {
		struct memfault_vm_opts o;
		unsigned char tail[16];
	} big;
	const struct memfault_vm_opts *op = NULL;
	int fd, r;

	if (S.vm[i] && !S.vm_freed[i])
		return;
	memset(&big, 0, sizeof(big));
	fd = pick_fd(rd, true);
	if (rd_u8(rd) % 4) {
		big.o.sz = rd_u8(rd) % 3 ? sizeof(big.o) : rd_size(rd, sizeof(big.o)) % sizeof(big);
		big.o.flags = rd_u8(rd) % 4 ? rd_u8(rd) % 4 : rd_num(rd, 8);
		big.o.probe_gpa = rd_u8(rd) % 2 ? 0 : rd_num(rd, 1ull << 40);
		big.o.kvm_fd = rd_u8(rd) % 2 ? 0 : pick_fd(rd, true);
		big.o.arch = rd_u8(rd) % 2 ? S.arch : rd_num(rd, 4);
		big.o.probe_slot = rd_u8(rd) % 2 ? 0 : (uint32_t)rd_num(rd, 40000);
		big.o.reserved = rd_u8(rd) % 8 ? 0 : rd_u32(rd);
		if (rd_u8(rd) % 8 == 0)
			big.tail[rd_u8(rd) % 16] = rd_u8(rd);
		op = &big.o;
	}
	/* only vm2_fd is owned, once: no double close, no use after close */
	if (op && (big.o.flags & MEMFAULT_VM_OWN_FD) && !S.vm2_taken) {
		fd = S.vm2_fd;
	} else if (op) {
		big.o.flags &= ~(uint64_t)MEMFAULT_VM_OWN_FD;
	}
	r = memfault_vm_new(fd, op, &vm);
	CHECK(r == 0 || is_errno(r));
	if (r) {
		CHECK(vm == sentinel);
		return;
	}
	CHECK(vm && vm != sentinel);
	CHECK(memfault_vm_get_fd(vm) == fd);
	S.vm[i] = vm;
	S.vm_freed[i] = false;
	S.vm_owns[i] = op && (big.o.flags & MEMFAULT_VM_OWN_FD);
	if (S.vm_owns[i])
		S.vm2_taken = true;
}

static void
op_vcpu_new(struct reader *rd)
{
	int i = rd_u8(rd) % MAX_VCPUS, fd, r;
	struct memfault_vm *vm = pick_vm(rd);
	struct memfault_vcpu *v = (void *)&outbuf, *sentinel = v;
	MEMFAULT_OPTS(memfault_vcpu_opts, o, .flags = 0);
	const struct memfault_vcpu_opts *op = NULL;
	void *buf = NULL;

	if (S.vcpu[i] || !vm)
		return;
	fd = rd_u8(rd) % 4 ? S.vcpu_fd[rd_u8(rd) % 2] : pick_fd(rd, false);
	if (rd_u8(rd) % 2) {
		o.flags = rd_u8(rd) % 4 ? rd_u8(rd) % 4 : rd_num(rd, 8);
		switch (rd_u8(rd) % 6) {
		case 0:
			o.kick_signal = 0;
			break;
		case 1: /* out of range or not usable */
			o.kick_signal = (int32_t)rd_num(rd, 8);
			if (o.kick_signal > 0 && o.kick_signal < SIGRTMIN)
				o.kick_signal = SIGKILL;
			break;
		default:
			o.kick_signal = SIGRTMIN + rd_u8(rd) % 4;
		}
		if (rd_u8(rd) % 3 == 0) {
			o.run_size = rd_u8(rd) % 2 ? sizeof(struct kvm_run) :
						     rd_u16(rd) % 4096;
			buf = calloc(1, o.run_size ? o.run_size : 1);
			CHECK(buf);
			o.run = buf;
		}
		o.reserved = rd_u8(rd) % 8 ? 0 : rd_u32(rd);
		if (rd_u8(rd) % 8 == 0)
			o.sz = rd_size(rd, sizeof(o)) % sizeof(o);
		op = &o;
	}
	if (op && (o.flags & MEMFAULT_VCPU_OWN_FD) && !S.vcpu2_taken)
		fd = S.vcpu2_fd;
	else if (op)
		o.flags &= ~(uint64_t)MEMFAULT_VCPU_OWN_FD;
	r = memfault_vcpu_new(vm, fd, op, &v);
	CHECK(r == 0 || is_errno(r));
	if (r) {
		CHECK(v == sentinel);
		free(buf);
		return;
	}
	CHECK(v && v != sentinel);
	CHECK(memfault_vcpu_get_fd(v) == fd);
	S.vcpu[i] = v;
	S.vcpu_vm[i] = vm;
	S.vcpu_run_buf[i] = buf;
	if (op && (o.flags & MEMFAULT_VCPU_OWN_FD))
		S.vcpu2_taken = true;
}

static void
op_region_new(struct reader *rd)
{
	int i = rd_u8(rd) % MAX_REGIONS, r;
	struct memfault_vm *vm = pick_vm(rd);
	struct memfault_region *reg = (void *)&outbuf, *sentinel = reg;
	MEMFAULT_OPTS(memfault_region_opts, o, .flags = 0);
	const struct memfault_region_opts *op = NULL;
	uint64_t gpa, size, first;
	uint32_t slot;
	void *hva;

	if (S.region[i] || !vm)
		return;
	slot = rd_u8(rd) % 4 ? rd_u8(rd) % 8 : (uint32_t)rd_num(rd, 1u << 16);
	first = rd_u8(rd) % POOL_PAGES;
	size = (1 + rd_u8(rd) % (POOL_PAGES - first)) * page;
	switch (rd_u8(rd) % 5) {
	case 0:
		gpa = GMEM_GPA + first * page;
		break;
	case 1:
		gpa = rd_num(rd, 1ull << 40);
		break;
	case 2:
		size = rd_num(rd, 1ull << 32);
		gpa = RAM_GPA + first * page;
		break;
	default:
		gpa = RAM_GPA + first * page;
	}
	switch (rd_u8(rd) % 5) {
	case 0:
		hva = NULL;
		break;
	case 1:
		hva = (void *)(uintptr_t)rd_num(rd, 1ull << 40);
		break;
	default:
		hva = (char *)pool + first * page;
	}
	if (rd_u8(rd) % 4) {
		o.flags = rd_u8(rd) % 8 ? rd_u8(rd) % 16 : rd_num(rd, 64);
		o.kvm_flags = rd_u8(rd) % 4 ? 0 : (uint32_t)rd_num(rd, 8);
		o.guest_memfd = rd_u8(rd) % 4 ? S.gmem_fd : pick_fd(rd, true);
		o.guest_memfd_offset = rd_u8(rd) % 2 ? first * page :
						       rd_num(rd, 1ull << 20);
		if (rd_u8(rd) % 8 == 0)
			o.sz = rd_size(rd, sizeof(o)) % sizeof(o);
		op = &o;
	}
	/* MISSING commits the whole bitmap (documented): keep it small */
	if ((o.flags & MEMFAULT_REGION_MISSING) && size > (1ull << 36))
		size &= (1ull << 36) - 1;
	/* memfault_region_mark_missing() on a KVM Userfault region discards
	 * the re-marked pages' host memory (documented): only memory the
	 * harness owns may back one, or a re-mark would zero the heap. */
	if ((o.flags & MEMFAULT_REGION_USERFAULT) && hva &&
	    !in_pool(hva, size))
		o.flags &= ~(uint64_t)MEMFAULT_REGION_USERFAULT;
	r = memfault_region_new(vm, slot, gpa, size, hva, op, &reg);
	CHECK(r == 0 || is_errno(r));
	if (r) {
		CHECK(reg == sentinel);
		return;
	}
	CHECK(reg && reg != sentinel);
	S.region[i] = reg;
	held_clear(i);
	m_init(i, reg, op && o.sz >= offsetof(struct memfault_region_opts,
					      flags) + sizeof(o.flags) &&
			       (o.flags & MEMFAULT_REGION_MISSING));
}

static void
op_bitmap(struct reader *rd)
{
	int i = rd_u8(rd) % MAX_REGIONS, r, k;
	struct memfault_region *reg = S.region[i];
	struct memfault_region_info info;
	uint64_t a, b, out = 0xdeadbeef;

	if (!reg)
		return;
	CHECK(memfault_region_get_info(reg, &info, sizeof(info)) == 0);
	a = rd_u8(rd) % 4 ? rd_u16(rd) % (info.npages + 2) : rd_num(rd, 64);
	b = rd_u8(rd) % 4 ? rd_u16(rd) % (info.npages + 2) : rd_num(rd, 64);
	k = rd_u8(rd) % 9;
	/* whole-bitmap scans and marks are linear: not on huge regions */
	if (info.npages > (1ull << 24) &&
	    (k == 3 || k == 4 || k == 5 || ((k == 0 || k == 1) && b > 4096)))
		return;
	switch (k) {
	case 0:
		r = memfault_region_mark_missing(reg, a, b);
		CHECK(r == 0 || is_errno(r));
		if (a > info.npages || b > info.npages - a) {
			CHECK(r == -EINVAL);
			break;
		}
		if (!r) {
			m_set(i, a, b, true);
		} else if (M[i].bits) {
			/* a failed toggle: what stays set is not specified;
			 * take it from the library, bounded */
			if (b > 4096) {
				m_drop(i);
				break;
			}
			for (uint64_t p = a; p < a + b; p++) {
				int m = memfault_region_is_missing(reg, p);

				CHECK(m == 0 || m == 1);
				m_set(i, p, 1, m == 1);
			}
		}
		break;
	case 1:
		r = memfault_region_publish(reg, a, b);
		if (a > info.npages || b > info.npages - a) {
			CHECK(r == -EINVAL);
			break;
		}
		CHECK(r == 0);
		m_set(i, a, b, false);
		/* publishing releases the claims */
		for (int h = 0; h < MAX_HELD; h++)
			if (S.held[i][h] >= 0 && (uint64_t)S.held[i][h] >= a &&
			    (uint64_t)S.held[i][h] - a < b)
				S.held[i][h] = -1;
		break;
	case 2:
		r = memfault_region_is_missing(reg, a);
		CHECK(a < info.npages ? (r == 0 || r == 1) : r == -EINVAL);
		if (M[i].bits && a < info.npages)
			CHECK(r == (int)m_get(i, a));
		break;
	case 3:
	case 4: {
		bool want = rd_u8(rd) & 1;
		uint64_t m_out = 0;

		r = want ? memfault_region_find_missing(reg, a, &out)
			 : memfault_region_find_present(reg, a, &out);
		if (r) {
			CHECK(r == -ENOENT || r == -EINVAL);
			CHECK(out == 0xdeadbeef);
		} else {
			CHECK(out >= a && out < info.npages);
		}
		if (M[i].bits) {
			CHECK(r == m_find(i, a, want, &m_out));
			if (!r)
				CHECK(out == m_out);
		}
		break;
	}
	case 5:
		r = memfault_region_count_missing(reg, &out);
		CHECK(r == 0 && out <= info.npages);
		if (M[i].bits)
			CHECK(out == m_count(i));
		break;
	case 6: {
		uint32_t fl = rd_u8(rd) % 4 ? MEMFAULT_CLAIM_NOWAIT :
					      rd_u32(rd);

		/* waiting for our own claim would never end */
		if (held_find(i, a) >= 0)
			fl |= MEMFAULT_CLAIM_NOWAIT;
		/* no room to remember one more */
		if (held_find(i, (uint64_t)-1) < 0)
			break;
		r = memfault_region_claim(reg, a, fl);
		if (a >= info.npages || (fl & ~(uint32_t)MEMFAULT_CLAIM_NOWAIT)) {
			CHECK(r == -EINVAL);
			break;
		}
		CHECK(r >= MEMFAULT_CLAIM_PRESENT && r <= MEMFAULT_CLAIM_BUSY);
		if (M[i].bits)
			CHECK(r == (!m_get(i, a) ? MEMFAULT_CLAIM_PRESENT :
				    held_find(i, a) >= 0 ? MEMFAULT_CLAIM_BUSY :
							   MEMFAULT_CLAIM_FETCH));
		if (r == MEMFAULT_CLAIM_BUSY)
			CHECK(held_find(i, a) >= 0);
		if (r == MEMFAULT_CLAIM_FETCH) {
			CHECK(held_find(i, a) < 0);
			S.held[i][held_find(i, (uint64_t)-1)] = (int64_t)a;
		}
		if (r == MEMFAULT_CLAIM_FETCH || r == MEMFAULT_CLAIM_BUSY)
			CHECK(memfault_region_is_missing(reg, a) == 1);
		break;
	}
	case 7:
		r = memfault_region_abort(reg, a);
		if (a >= info.npages)
			CHECK(r == -EINVAL);
		else if (held_find(i, a) >= 0)
			CHECK(r == 0);
		else
			CHECK(r == -EPERM);
		if (r == 0) {
			S.held[i][held_find(i, a)] = -1;
			/* the page stays missing */
			if (M[i].bits)
				CHECK(m_get(i, a) &&
				      memfault_region_is_missing(reg, a) == 1);
		}
		break;
	default: {
		struct memfault_region *found = (void *)1;
		uint64_t pg = 0xdeadbeef;

		r = memfault_vm_find_region(pick_vm(rd), info.gpa + a * page,
					    &found, &pg);
		CHECK(r == 0 || r == -ENOENT || r == -EINVAL);
		if (r == 0)
			CHECK(found && pg < 1ull << 52);
		else
			CHECK(found == (void *)1 && pg == 0xdeadbeef);
	}
	}
}

static void
op_getters(struct reader *rd)
{
	struct memfault_vm *vm = pick_vm(rd);
	struct memfault_vcpu *v = S.vcpu[rd_u8(rd) % MAX_VCPUS];
	struct memfault_region *reg = S.region[rd_u8(rd) % MAX_REGIONS];
	size_t sz;
	void *out;
	int r;

	switch (rd_u8(rd) % 6) {
	case 0:
		sz = rd_size(rd, sizeof(struct memfault_features));
		out = out_prepare(sz);
		r = memfault_vm_get_features(vm, out, sz);
		CHECK(r == 0 || r == -EINVAL);
		out_check(sz, r ? 0 : (sz < sizeof(struct memfault_features) ?
					       sz : sizeof(struct memfault_features)));
		break;
	case 1:
		sz = rd_size(rd, sizeof(struct memfault_vcpu_stats));
		out = out_prepare(sz);
		r = memfault_vcpu_get_stats(v, out, sz);
		CHECK(r == 0 || r == -EINVAL);
		out_check(sz, r ? 0 : (sz < sizeof(struct memfault_vcpu_stats) ?
					       sz : sizeof(struct memfault_vcpu_stats)));
		break;
	case 2:
		sz = rd_size(rd, sizeof(struct memfault_fault));
		out = out_prepare(sz);
		r = memfault_vcpu_get_fault(v, out, sz);
		CHECK(r == 0 || r == -EINVAL || r == -ENODATA);
		out_check(sz, r ? 0 : (sz < sizeof(struct memfault_fault) ?
					       sz : sizeof(struct memfault_fault)));
		break;
	case 3:
		sz = rd_size(rd, sizeof(struct memfault_region_info));
		out = out_prepare(sz);
		r = memfault_region_get_info(reg, out, sz);
		CHECK(r == 0 || r == -EINVAL);
		out_check(sz, r ? 0 : (sz < sizeof(struct memfault_region_info) ?
					       sz : sizeof(struct memfault_region_info)));
		break;
	case 4: {
		struct kvm_run *run = (void *)1;

		r = memfault_vcpu_get_run(v, rd_u8(rd) % 8 ? &run : NULL);
		CHECK(v ? (r == 0 || r == -EINVAL) : r == -EINVAL);
		if (r)
			CHECK(run == (void *)1);
		r = memfault_vcpu_get_fd(v);
		CHECK(v ? r >= 0 : r == -EINVAL);
		break;
	}
	default:
		r = memfault_vm_get_fd(vm);
		CHECK(vm ? r >= 0 : r == -EINVAL);
	}
}

static void
op_handlers(struct reader *rd)
{
	struct memfault_vm *vm = pick_vm(rd);
	struct {
		struct memfault_handlers h;
		unsigned char tail[16];
	} big;
	int r;

	memset(&big, 0, sizeof(big));
	big.h.sz = rd_u8(rd) % 8 ? sizeof(big.h) : rd_size(rd, sizeof(big.h)) % sizeof(big);
	if (rd_u8(rd) & 1)
		big.h.page_in = h_page_in;
	if (rd_u8(rd) & 1)
		big.h.convert = h_fault;
	if (rd_u8(rd) & 1)
		big.h.discard = h_discard;
	if (rd_u8(rd) & 1)
		big.h.hwpoison = h_fault;
	if (rd_u8(rd) & 1)
		big.h.other = h_fault;
	if (rd_u8(rd) & 1)
		big.h.log = h_log;
	/* bounded: a handler that "resolves" a fault that stays comes back */
	big.h.max_repeats = rd_u8(rd) % 6;
	big.h.reserved = rd_u8(rd) % 8 ? 0 : rd_u32(rd);
	if (rd_u8(rd) % 8 == 0)
		big.tail[rd_u8(rd) % 16] = 1;
	r = memfault_vm_set_handlers(vm, rd_u8(rd) % 8 ? &big.h : NULL);
	CHECK(r == 0 || r == -EINVAL);
	if (!vm)
		CHECK(r == -EINVAL);
}

static void
op_run(struct reader *rd)
{
	int i = rd_u8(rd) % MAX_VCPUS, r;
	struct memfault_vcpu *v = S.vcpu[i];
	bool dispatch = rd_u8(rd) & 1;

	release_claims(rd);
	if (rd_u8(rd) % 4 == 0 && v) {
		r = memfault_vcpu_kick(v);
		CHECK(r == 0 || r == -EAGAIN); /* see the kick operation */
	}
	if (!v && rd_u8(rd) % 2)
		return;
	r = dispatch ? memfault_vcpu_run_dispatch(v) : memfault_vcpu_run(v);
	CHECK((r >= MEMFAULT_RUN_EXIT && r <= MEMFAULT_RUN_RETRY) ||
	      is_errno(r));
	if (!v)
		CHECK(r == -EINVAL);
	if (v) {
		struct memfault_fault f;
		int g = memfault_vcpu_get_fault(v, &f, sizeof(f));

		CHECK(r == MEMFAULT_RUN_MEMORY_FAULT ? g == 0 : g == -ENODATA ||
		      /* a handler's error leaves the fault readable */
		      (dispatch && g == 0));
	}
}

static void
op_sim(struct reader *rd)
{
	switch (rd_u8(rd) % 4) {
	case 0:
	case 1:
		set_script(rd);
		break;
	case 2:
		(void)kvmsim_inject_gmem_error(S.vm_fd,
					       GMEM_GPA + (rd_u8(rd) % POOL_PAGES) * page,
					       1 + rd_u8(rd) % 140, 1 + rd_u8(rd) % 3);
		break;
	default:
		(void)kvmsim_poison(S.vm_fd, (rd_u8(rd) & 1 ? GMEM_GPA : RAM_GPA) +
						     (rd_u8(rd) % POOL_PAGES) * page);
	}
}

static void
op_free(struct reader *rd)
{
	int i;

	switch (rd_u8(rd) % 3) {
	case 0:
		i = rd_u8(rd) % MAX_REGIONS;
		m_compare(i, S.region[i]);
		memfault_region_free(S.region[i]);
		S.region[i] = NULL;
		m_drop(i);
		break;
	case 1:
		i = rd_u8(rd) % MAX_VCPUS;
		memfault_vcpu_free(S.vcpu[i]);
		free(S.vcpu_run_buf[i]);
		S.vcpu[i] = NULL;
		S.vcpu_run_buf[i] = NULL;
		break;
	default:
		i = rd_u8(rd) % MAX_VMS;
		if (S.vm[i] && !S.vm_freed[i]) {
			memfault_vm_free(S.vm[i]);
			S.vm_freed[i] = true;
		}
	}
}

/*
 * A coherent scenario, which random operations rarely put together: a
 * userfault region with page_in() and a guest touching its pages, or a
 * guest_memfd region with private/shared accesses (conversions), then
 * dispatch until the script ends.
 */
static void
op_scenario(struct reader *rd)
{
	MEMFAULT_OPTS(memfault_region_opts, o, .flags = 0);
	MEMFAULT_OPTS(memfault_handlers, h, .page_in = h_page_in,
		      .log = h_log);
	struct kvmsim_step st[6];
	struct memfault_region *reg = NULL;
	uint64_t first, n, base;
	bool gmem = rd_u8(rd) & 1;
	size_t nst;
	int i, v;

	if (!S.vm[0] || S.vm_freed[0])
		return;
	for (i = 0; i < MAX_REGIONS && S.region[i]; i++)
		;
	if (i == MAX_REGIONS)
		return;
	first = rd_u8(rd) % (POOL_PAGES - 4);
	n = 1 + rd_u8(rd) % 4;
	if (gmem) {
		o.flags = MEMFAULT_REGION_GUEST_MEMFD;
		o.guest_memfd = S.gmem_fd;
		o.guest_memfd_offset = first * page;
		base = GMEM_GPA;
	} else {
		o.flags = MEMFAULT_REGION_USERFAULT |
			  (rd_u8(rd) & 1 ? MEMFAULT_REGION_MISSING : 0);
		base = RAM_GPA;
	}
	if (memfault_region_new(S.vm[0], 16 + (uint32_t)i, base + first * page,
				n * page, (char *)pool + first * page, &o,
				&reg))
		return;
	S.region[i] = reg;
	held_clear(i);
	m_init(i, reg, o.flags & MEMFAULT_REGION_MISSING);
	if (!gmem && !(o.flags & MEMFAULT_REGION_MISSING)) {
		uint64_t f = rd_u8(rd) % n, c = 1 + rd_u8(rd) % (n - f);

		CHECK(memfault_region_mark_missing(reg, f, c) == 0);
		m_set(i, f, c, true);
	}
	if (rd_u8(rd) & 1)
		h.convert = h_fault;
	if (rd_u8(rd) & 1)
		h.discard = h_discard;
	if (rd_u8(rd) & 1)
		h.other = h_fault;
	if (rd_u8(rd) & 1)
		h.hwpoison = h_fault;
	h.max_repeats = 1 + rd_u8(rd) % 4;
	CHECK(memfault_vm_set_handlers(S.vm[0], &h) == 0);
	nst = 1 + rd_u8(rd) % 6;
	for (size_t k = 0; k < nst; k++) {
		memset(&st[k], 0, sizeof(st[k]));
		st[k].op = rd_u8(rd) & 1 ? KVMSIM_OP_STORE : KVMSIM_OP_LOAD;
		st[k].flags = rd_u8(rd) & (KVMSIM_F_PRIVATE | KVMSIM_F_SHARED);
		st[k].gpa = base + (first + rd_u8(rd) % n) * page +
			    (rd_u8(rd) % 8) * 8;
		st[k].len = 8;
		st[k].value = rd_u64(rd);
	}
	if (!S.vcpu[0]) {
		if (memfault_vcpu_new(S.vm[0], S.vcpu_fd[0], NULL, &S.vcpu[0]))
			return;
		S.vcpu_vm[0] = S.vm[0];
	}
	/* the script goes to the vCPU that runs it (op_vcpu_new() may have
	 * made vCPU object 0 on any vCPU fd) */
	if (kvmsim_vcpu_set_script(memfault_vcpu_get_fd(S.vcpu[0]), st, nst))
		return;
	release_claims(rd);
	if (rd_u8(rd) % 4 == 0)
		kvmsim_inject_gmem_error(S.vm_fd, base + first * page,
					 1 + rd_u8(rd) % 140, 1);
	for (int k = 0; k < 4; k++) {
		v = memfault_vcpu_run_dispatch(S.vcpu[0]);
		CHECK((v >= MEMFAULT_RUN_EXIT && v <= MEMFAULT_RUN_RETRY) ||
		      is_errno(v));
		if (v == MEMFAULT_RUN_EXIT)
			break;
	}
	/*
	 * Only where the vCPU runs in the VM of the region: vCPU 0 of the
	 * VM object that made it, on the KVM VM that holds its memslot (a VM
	 * object may wrap the second KVM VM).
	 */
	if (gmem || S.vcpu_vm[0] != S.vm[0] ||
	    memfault_vm_get_fd(S.vm[0]) != S.vm_fd)
		return;
	/* KVM Userfault: the script ran to its end (the simulator's
	 * shutdown) only if every page it touched was fetched (published) */
	if (v == MEMFAULT_RUN_EXIT) {
		struct kvm_run *run;

		CHECK(memfault_vcpu_get_run(S.vcpu[0], &run) == 0);
		if (run->exit_reason != KVM_EXIT_SHUTDOWN &&
		    run->exit_reason != KVM_EXIT_SYSTEM_EVENT)
			return;
		for (size_t k = 0; k < nst; k++) {
			uint64_t pg = (st[k].gpa - base) / page - first;

			CHECK(!m_get(i, pg));
			CHECK(memfault_region_is_missing(reg, pg) == 0);
		}
	}
	/* a userfault handed to the VMM is on a missing page */
	if (v == MEMFAULT_RUN_MEMORY_FAULT) {
		struct memfault_fault f;

		CHECK(memfault_vcpu_get_fault(S.vcpu[0], &f, sizeof(f)) == 0);
		if ((f.flags & MEMFAULT_FAULT_USERFAULT) &&
		    f.gpa >= base + first * page &&
		    f.gpa < base + (first + n) * page) {
			uint64_t pg = (f.gpa - base) / page - first;

			CHECK(m_get(i, pg));
			CHECK(memfault_region_is_missing(reg, pg) == 1);
		}
	}
}

/* ---- per input ---- */

static void
sigbus_handler(int sig)
{
	(void)sig; /* kvmsim_poison() on a normal memslot: already reported */
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sigaction sa;

	(void)argc;
	(void)argv;
	page = (uint64_t)sysconf(_SC_PAGESIZE);
	pool = mmap(NULL, POOL_PAGES * page, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(pool != MAP_FAILED);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = sigbus_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	return 0;
}

static const uint32_t levels[] = { KVMSIM_LEVEL_6_1, KVMSIM_LEVEL_6_8,
				   KVMSIM_LEVEL_7_2, KVMSIM_LEVEL_7_2_UF };

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct reader rd = { data, len };
	struct kvmsim_config cfg;
	struct kvm_create_guest_memfd g;
	unsigned long vm_type = 0;
	int nops;

	long maps = fuzz_live_maps();

	cur = &rd;
	fdset_take(&base_fds);
	memset(&S, 0, sizeof(S));
	S.arch = rd_u8(&rd) & 1 ? KVMSIM_ARM64 : KVMSIM_X86_64;
	S.level = levels[rd_u8(&rd) % 4];
	cfg.arch = S.arch;
	cfg.level = S.level;
	cfg.quirks = rd_u8(&rd) % 2 ? kvmsim_default_quirks(S.arch, S.level) :
				      rd_u8(&rd) & KVMSIM_Q_ALL;
	CHECK(kvmsim_reset(&cfg) == 0);
	if (S.arch == KVMSIM_X86_64 && (cfg.quirks & KVMSIM_Q_SW_PROTECTED_VM) &&
	    S.level >= KVMSIM_LEVEL_6_8 && (rd_u8(&rd) & 1))
		vm_type = KVMSIM_X86_SW_PROTECTED_VM;
	S.kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	CHECK(S.kvm_fd >= 0);
	S.vm_fd = ioctl(S.kvm_fd, KVM_CREATE_VM, vm_type);
	CHECK(S.vm_fd >= 0);
	S.vcpu_fd[0] = ioctl(S.vm_fd, KVM_CREATE_VCPU, 0);
	S.vcpu_fd[1] = ioctl(S.vm_fd, KVM_CREATE_VCPU, 1);
	S.vcpu2_fd = ioctl(S.vm_fd, KVM_CREATE_VCPU, 2);
	CHECK(S.vcpu_fd[0] >= 0 && S.vcpu_fd[1] >= 0 && S.vcpu2_fd >= 0);
	S.vm2_fd = ioctl(S.kvm_fd, KVM_CREATE_VM, 0);
	CHECK(S.vm2_fd >= 0);
	memset(&g, 0, sizeof(g));
	g.size = POOL_PAGES * page;
	g.flags = rd_u8(&rd) & 3;
	S.gmem_fd = ioctl(S.vm_fd, KVM_CREATE_GUEST_MEMFD, &g);
	S.null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	S.closed_fd = dup(S.null_fd);
	close(S.closed_fd);
	for (int i = 0; i < MAX_REGIONS; i++)
		held_clear(i);

	nops = rd_u8(&rd) % MAX_OPS + 1;
	for (int k = 0; k < nops && rd.n; k++) {
		switch (rd_u8(&rd) % 17) {
		case 16:
			op_scenario(&rd);
			break;
		case 0:
			op_vm_new(&rd);
			break;
		case 1:
			op_vcpu_new(&rd);
			break;
		case 2:
		case 3:
			op_region_new(&rd);
			break;
		case 4:
		case 5:
		case 6:
			op_bitmap(&rd);
			break;
		case 7:
			op_getters(&rd);
			break;
		case 8:
			op_handlers(&rd);
			break;
		case 9:
		case 10:
		case 11:
			op_run(&rd);
			break;
		case 12:
		case 13:
			op_sim(&rd);
			break;
		case 14: {
			struct memfault_vcpu *v = S.vcpu[rd_u8(&rd) % MAX_VCPUS];
			int kr = memfault_vcpu_kick(v);

			/* -EAGAIN: the user's real-time signal queue is full
			 * (RLIMIT_SIGPENDING, shared with every process of the
			 * user): seen while another test flooded it */
			CHECK(v ? (kr == 0 || kr == -EAGAIN) : kr == -EINVAL);
			break;
		}
		default:
			op_free(&rd);
		}
		/* the first VM object is made early so that the rest has one */
		if (k == 0 && !S.vm[0]) {
			MEMFAULT_OPTS(memfault_vm_opts, o, .arch = S.arch);

			CHECK(memfault_vm_new(S.vm_fd, &o, &S.vm[0]) == 0);
			S.vm_freed[0] = false;
		}
	}

	release_claims(&rd);
	for (int i = 0; i < MAX_REGIONS; i++) {
		m_compare(i, S.region[i]);
		memfault_region_free(S.region[i]);
		m_drop(i);
	}
	for (int i = 0; i < MAX_VCPUS; i++) {
		memfault_vcpu_free(S.vcpu[i]);
		free(S.vcpu_run_buf[i]);
	}
	for (int i = 0; i < MAX_VMS; i++)
		if (!S.vm_freed[i])
			memfault_vm_free(S.vm[i]);
	close(S.null_fd);
	/* closes every simulated fd still open (those no object owned) */
	CHECK(kvmsim_reset(&cfg) == 0);
	fdset_check(&base_fds);
	CHECK(fuzz_live_maps() == maps); /* no mapping leaked */
	memset(pool, 0, POOL_PAGES * page);
	return 0;
}
