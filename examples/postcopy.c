/* SPDX-License-Identifier: MIT */
/*
 * postcopy.c - post-copy live migration, the destination side, with
 * libmemfault.
 *
 * A page server runs in a child process and plays the migration source: it
 * holds the guest's memory (generated, so that both sides can check it) and
 * answers page requests over two channels (each a pair of pipes, which
 * every kernel has: small test kernels may lack Unix sockets), an urgent
 * one for the pages a vCPU is waiting for and a background one for
 * prefetching; it
 * serves urgent requests first and sleeps --latency-us per page, as a
 * network would.
 *
 * The VMM starts the guest with every page of its memory missing:
 *
 *   slot 0  64 KiB of RAM at GPA 0: the guest program (real KVM) and its
 *           parameters;
 *   slot 1  the migrated memory, --pages host pages at GPA 0x20000 (x86-64)
 *           or 0x20000000 (arm64), registered with libmemfault as a region
 *           whose bitmap starts all set (MEMFAULT_REGION_MISSING).
 *
 * Pages arrive in two ways, and each exactly once:
 *   - on demand: a vCPU touches a missing page, the library claims it and
 *     calls the page_in() handler, which asks the server on the urgent
 *     channel and writes the page; the library publishes it and re-enters;
 *   - in the background: a prefetch thread walks the region from the first
 *     page up, claims each missing page with MEMFAULT_CLAIM_NOWAIT (skipping
 *     pages a vCPU is fetching), fetches it on the background channel,
 *     writes it and publishes it with memfault_region_publish(). Under
 *     userfaultfd it writes through the alias mapping (the memslot's own
 *     mapping would fault on the page it holds), and the publish wakes the
 *     threads that faulted on the page meanwhile.
 *
 * How missing pages trap, in order of preference:
 *   - KVM Userfault (MEMFAULT_REGION_USERFAULT: the proposed, unmerged
 *     kernel series; the KVM simulator's level 7.2-uf has it): a vCPU access
 *     exits with MEMFAULT_FAULT_USERFAULT and memfault_vcpu_run_dispatch()
 *     resolves it;
 *   - userfaultfd, the library's fallback backend (memfault_uffd_*), when
 *     this libmemfault has it: the memory is a memfd mapped twice, the
 *     region is registered in MEMFAULT_UFFD_MINOR mode, KVM's own access
 *     through the memslot blocks in the kernel until a library thread has
 *     called page_in() and mapped the page;
 *   - neither: the example says so and exits 77.
 *
 * The guest reads, from the last page down to the first, the 32-bit word
 * at byte (page * 8) % page_size of every page and adds them up (the
 * prefetcher walks upwards, so the two meet somewhere in the middle), then
 * reports the sum and stops. The simulator runs no machine code: its
 * script makes the same loads, and the guest reports each word to the VMM,
 * which adds them up.
 *
 * It prints the backend, progress (pages present, fetched on demand or
 * prefetched, fetch latency) and a summary, and exits 0 only if every page
 * was fetched exactly once, every page holds what the source holds, and
 * the guest's checksum matches the source's; 1 on failure, 2 on a usage
 * error, 77 when no backend is available.
 *
 * Usage:
 *   postcopy [--pages N] [--latency-us US]            on a host with /dev/kvm
 *   LD_PRELOAD=build/tests/sim/libkvmsim.so KVMSIM_LEVEL=7.2-uf \
 *       postcopy [--arch arm64|x86_64] [--pages N] [--latency-us US]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_DEFAULT, memfd_create() */
#endif

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h> /* the project's copy of the Linux 7.2 uapi */
#include <memfault/memfault.h>

/* The userfaultfd API group of libmemfault, where this header has it. */
#ifdef MEMFAULT_UFFD_LATENCY_BUCKETS
#define HAVE_UFFD_API 1
#else
#define HAVE_UFFD_API 0
#endif

#define EXIT_SKIP 77

/* ---- Guest memory layout --------------------------------------------- */

#define RAM_SLOT 0
#define RAM_GPA 0x0
#define RAM_SIZE 0x10000 /* 64 KiB: a multiple of every host page size */
#define MEM_SLOT 1
#define MAX_PAGES 128 /* x86 real mode reaches 0x20000..0x9ffff */

/* ---- The guest's device ----------------------------------------------- */

/*
 * x86-64: IO ports; arm64: MMIO offsets from 0x10000000.
 *   SUM   written with the guest's checksum (the real guest)
 *   WORD  written with each word the guest read (the simulator's script)
 *   DONE  arm64: written last (x86-64 halts)
 */
#define X86_PORT_SUM 0xe0
#define X86_PORT_WORD 0xe1
#define ARM64_DEV_GPA 0x10000000
#define ARM64_REG_SUM 0x0
#define ARM64_REG_WORD 0x4
#define ARM64_REG_DONE 0x8

/* ---- The guest programs ------------------------------------------------ */

/*
 * x86-64, 16-bit real mode at GPA 0x1000 (CS base 0); parameters (16-bit
 * words) at 0xf00: page count, segment of the last page, offset of the
 * word to read in it. Assembled with `as --32` (.code16):
 *
 *	xor   %ebx, %ebx		sum = 0
 *	mov   0xf00, %dx		pages left
 *	mov   0xf02, %cx		segment of the page (DS base = cx << 4)
 *	mov   0xf04, %si		offset of the word in it
 * 1:	mov   %cx, %ds
 *	add   (%si), %ebx
 *	sub   $0x100, %cx		one 4 KiB page down
 *	sub   $8, %si			the next page's word
 *	and   $0xfff, %si
 *	dec   %dx
 *	jnz   1b
 *	mov   %ebx, %eax
 *	out   %eax, $0xe0		SUM
 * 2:	hlt
 *	jmp   2b
 */
static const uint8_t x86_program[] = {
	0x66, 0x31, 0xdb, 0x8b, 0x16, 0x00, 0x0f, 0x8b, 0x0e, 0x02, 0x0f,
	0x8b, 0x36, 0x04, 0x0f, 0x8e, 0xd9, 0x66, 0x03, 0x1c, 0x81, 0xe9,
	0x00, 0x01, 0x83, 0xee, 0x08, 0x81, 0xe6, 0xff, 0x0f, 0x4a, 0x75,
	0xed, 0x66, 0x89, 0xd8, 0x66, 0xe7, 0xe0, 0xf4, 0xeb, 0xfd,
};
#define X86_CODE_GPA 0x1000
#define X86_PARAM_GPA 0xf00

/*
 * arm64, EL1 with the MMU off, at GPA 0; parameters (64-bit) at 0x800:
 * page count, page size, address of the last page, offset of the word to
 * read in it. Assembled with `aarch64-linux-gnu-as`:
 *
 *	movz x0, #0x1000, lsl #16	the device
 *	mov  x9, #0x800			the parameters
 *	ldr  x2, [x9]			pages left
 *	ldr  x3, [x9, #8]		page size
 *	ldr  x4, [x9, #16]		the page
 *	ldr  x5, [x9, #24]		offset of the word in it
 *	sub  x6, x3, #1
 *	mov  w7, #0			sum = 0
 * 1:	ldr  w8, [x4, x5]
 *	add  w7, w7, w8
 *	sub  x4, x4, x3			one page down
 *	sub  x5, x5, #8			the next page's word
 *	and  x5, x5, x6
 *	subs x2, x2, #1
 *	b.ne 1b
 *	str  w7, [x0]			SUM
 *	str  w7, [x0, #8]		DONE
 * 2:	b    2b
 */
static const uint32_t arm64_program[] = {
	0xd2a20000, 0xd2810009, 0xf9400122, 0xf9400523, 0xf9400924,
	0xf9400d25, 0xd1000466, 0x52800007, 0xb8656888, 0x0b0800e7,
	0xcb030084, 0xd10020a5, 0x8a0600a5, 0xf1000442, 0x54ffff41,
	0xb9000007, 0xb9000807, 0x14000000,
};
#define ARM64_CODE_GPA 0x0
#define ARM64_PARAM_GPA 0x800

/* ---- Per-architecture vCPU setup (as in minimal-vmm.c) --------------- */

#if defined(__x86_64__)
#define HOST_ARCH MEMFAULT_ARCH_X86_64

static int
x86_setup_vcpu(int vm_fd, int vcpu_fd)
{
	struct kvm_regs regs = { .rip = X86_CODE_GPA, .rflags = 0x2 };
	struct kvm_sregs sregs;

	if (ioctl(vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000ul) < 0)
		return -errno;
	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return 0;
}
#define x86_setup x86_setup_vcpu
#define arm64_setup NULL

#elif defined(__aarch64__)
#define HOST_ARCH MEMFAULT_ARCH_ARM64

static int
arm64_set_core_reg(int vcpu_fd, uint64_t id, uint64_t value)
{
	struct kvm_one_reg reg = {
		.id = KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | id,
		.addr = (uintptr_t)&value,
	};

	return ioctl(vcpu_fd, KVM_SET_ONE_REG, &reg) < 0 ? -errno : 0;
}

static int
arm64_setup_vcpu(int vm_fd, int vcpu_fd)
{
	struct kvm_vcpu_init init;
	int r;

	if (ioctl(vm_fd, KVM_ARM_PREFERRED_TARGET, &init) < 0)
		return -errno;
	if (ioctl(vcpu_fd, KVM_ARM_VCPU_INIT, &init) < 0)
		return -errno;
	r = arm64_set_core_reg(vcpu_fd, KVM_REG_ARM_CORE_REG(regs.pstate),
			       PSR_MODE_EL1h | PSR_D_BIT | PSR_A_BIT |
				       PSR_I_BIT | PSR_F_BIT);
	if (r)
		return r;
	return arm64_set_core_reg(vcpu_fd, KVM_REG_ARM_CORE_REG(regs.pc),
				  ARM64_CODE_GPA);
}
#define x86_setup NULL
#define arm64_setup arm64_setup_vcpu

#else
#error "postcopy supports x86-64 and arm64 hosts"
#endif

struct guest {
	uint32_t arch;
	const char *name;    /* as --arch and KVMSIM_ARCH spell it */
	uint64_t mem_gpa;    /* slot MEM_SLOT */
	uint32_t dev_exit;   /* KVM_EXIT_IO or KVM_EXIT_MMIO */
	int (*setup_vcpu)(int vm_fd, int vcpu_fd);
};

static const struct guest guests[] = {
	{ MEMFAULT_ARCH_X86_64, "x86_64", 0x20000, KVM_EXIT_IO, x86_setup },
	{ MEMFAULT_ARCH_ARM64, "arm64", 0x20000000, KVM_EXIT_MMIO, arm64_setup },
};

/* ---- The migrated memory, as the source holds it ----------------------- */

/* splitmix64: the contents of word @i of page @page, on both sides. */
static uint64_t
source_word(uint64_t page, uint64_t i)
{
	uint64_t z = (page << 32 | i) + 0x9e3779b97f4a7c15ull;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void
source_page(uint64_t page, uint64_t *dst, size_t page_size)
{
	size_t i;

	for (i = 0; i < page_size / 8; i++)
		dst[i] = source_word(page, i);
}

/* The byte offset of the word the guest reads in @page. */
static uint64_t
probe_offset(uint64_t page, size_t page_size)
{
	return (page * 8) % page_size;
}

/* The guest's checksum, computed on the source's memory. */
static uint32_t
source_checksum(uint64_t npages, size_t page_size)
{
	uint32_t sum = 0;
	uint64_t p;

	for (p = 0; p < npages; p++) /* the low half: little-endian loads */
		sum += (uint32_t)source_word(p, probe_offset(p, page_size) / 8);
	return sum;
}

/* ---- The page server (the migration source, a child process) --------- */

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

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void
sleep_us(unsigned us)
{
	struct timespec ts = { us / 1000000, (long)(us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Read or write exactly @len bytes of a pipe; false on EOF or error. */
static bool
read_full(int fd, void *buf, size_t len)
{
	while (len) {
		ssize_t n = read(fd, buf, len);

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
write_full(int fd, const void *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		buf = (const char *)buf + n;
		len -= (size_t)n;
	}
	return true;
}

/* Serve one request from @rfd, reply on @wfd; false once the peer is gone.
 * A reply is a struct reply, followed by the page if its status is 0. */
static bool
serve(int rfd, int wfd, bool urgent, uint64_t npages, size_t page_size,
      unsigned latency_us, uint8_t *served, uint64_t *page_buf,
      struct server_stats *st)
{
	struct request req;
	struct reply rep = { 0 };

	if (!read_full(rfd, &req, sizeof(req)))
		return false; /* the peer is gone */
	if (req.op == OP_STATS) {
		st->checksum = source_checksum(npages, page_size);
		return write_full(wfd, st, sizeof(*st));
	}
	rep.page = req.page;
	if (req.op != OP_FETCH || req.page >= npages) {
		rep.status = -EINVAL;
		return write_full(wfd, &rep, sizeof(rep));
	}
	sleep_us(latency_us); /* the network */
	source_page(req.page, page_buf, page_size);
	st->requests++;
	if (urgent)
		st->urgent++;
	else
		st->background++;
	if (served[req.page]++) {
		if (!st->duplicates)
			st->first_duplicate = req.page;
		st->duplicates++;
	} else {
		st->unique++;
	}
	return write_full(wfd, &rep, sizeof(rep)) &&
	       write_full(wfd, page_buf, page_size);
}

/* The child: urgent requests first, until both channels are closed.
 * @rfd[i] and @wfd[i]: the request and reply pipes of channel i (0:
 * urgent, 1: background). */
static void
server_main(const int rfd[2], const int wfd[2], uint64_t npages,
	    size_t page_size, unsigned latency_us)
{
	struct pollfd pfd[2] = {
		{ .fd = rfd[0], .events = POLLIN },
		{ .fd = rfd[1], .events = POLLIN },
	};
	struct server_stats st = { 0 };
	uint8_t *served = calloc(npages, 1);
	uint64_t *buf = malloc(page_size);

	if (!served || !buf)
		_exit(1);
	while (pfd[0].fd >= 0 || pfd[1].fd >= 0) {
		int i;

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		/* one request per round, the urgent channel first */
		for (i = 0; i < 2; i++) {
			if (pfd[i].fd < 0 || !pfd[i].revents)
				continue;
			if (!serve(pfd[i].fd, wfd[i], i == 0, npages,
				   page_size, latency_us, served, buf, &st)) {
				close(pfd[i].fd);
				close(wfd[i]);
				pfd[i].fd = -1;
			}
			break;
		}
	}
	free(served);
	free(buf);
	_exit(0);
}

/* ---- The VMM's side of the migration stream --------------------------- */

struct channel {
	pthread_mutex_t lock; /* one request in flight per channel */
	int fd;  /* requests to the source */
	int rfd; /* its replies */
	const char *name;
	/* fetches, their total and longest latency (under lock) */
	uint64_t fetches, total_ns, max_ns;
};

/* Ask the source for @page and write it to @dst. */
static int
fetch_page(struct channel *ch, uint64_t page, void *dst, size_t page_size)
{
	struct request req = { .op = OP_FETCH, .page = page };
	struct reply rep;
	uint64_t t0, dt;
	int r = 0;

	pthread_mutex_lock(&ch->lock);
	t0 = now_ns();
	if (!write_full(ch->fd, &req, sizeof(req)) ||
	    !read_full(ch->rfd, &rep, sizeof(rep))) {
		r = errno ? -errno : -EPIPE;
		goto out;
	}
	if (rep.page != page) {
		r = -EPROTO;
		goto out;
	}
	if (rep.status) {
		r = rep.status;
		goto out;
	}
	if (!read_full(ch->rfd, dst, page_size)) {
		r = -EPROTO;
		goto out;
	}
	dt = now_ns() - t0;
	ch->fetches++;
	ch->total_ns += dt;
	if (dt > ch->max_ns)
		ch->max_ns = dt;
out:
	pthread_mutex_unlock(&ch->lock);
	return r;
}

static int
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

/* ---- The VMM ------------------------------------------------------------ */

enum backend {
	BACKEND_KVM_USERFAULT,
	BACKEND_UFFD,
};

struct vmm {
	const struct guest *guest;
	int (*sim_set_script)(int vcpu_fd, const char *text);
	size_t page_size;
	uint64_t npages;
	unsigned latency_us;
	enum backend backend;
	pid_t server;
	struct channel urgent, background;

	int kvm_fd;
	struct memfault_vm *vm;
	struct memfault_vcpu *vcpu;
	struct memfault_region *ram_region, *mem_region;
	uint8_t *ram;
	int mem_fd;     /* memfd holding the migrated memory */
	uint8_t *mem;   /* its mapping: the memslot's hva */
	uint8_t *alias; /* its second mapping (userfaultfd backend) */
#if HAVE_UFFD_API
	struct memfault_uffd *uffd;
#endif

	/* the prefetch thread */
	pthread_t prefetcher;
	bool prefetcher_started;
	int prefetch_error;

	/* pages present, by who fetched them (under progress_lock, read
	 * relaxed by print_progress()), and the next quarter to report */
	pthread_mutex_t progress_lock;
	uint64_t demand_pages, prefetched_pages;
	int next_milestone;
	uint64_t busy_skips; /* atomic */

	/* what the guest reported */
	uint32_t word_sum, guest_sum;
	uint64_t words;
	bool have_guest_sum, done;
};

static const char *
backend_name(enum backend b)
{
	return b == BACKEND_KVM_USERFAULT ? "KVM Userfault" : "userfaultfd";
}

static void
print_progress(struct vmm *v)
{
	uint64_t d = __atomic_load_n(&v->demand_pages, __ATOMIC_RELAXED);
	uint64_t p = __atomic_load_n(&v->prefetched_pages, __ATOMIC_RELAXED);
	uint64_t ud = 0, up = 0;

	pthread_mutex_lock(&v->urgent.lock);
	if (v->urgent.fetches)
		ud = v->urgent.total_ns / v->urgent.fetches / 1000;
	pthread_mutex_unlock(&v->urgent.lock);
	pthread_mutex_lock(&v->background.lock);
	if (v->background.fetches)
		up = v->background.total_ns / v->background.fetches / 1000;
	pthread_mutex_unlock(&v->background.lock);
	printf("progress: %3" PRIu64 "/%" PRIu64 " pages present: %" PRIu64 " on demand (avg fetch %" PRIu64 " us), %" PRIu64 " prefetched (avg fetch %" PRIu64 " us)\n",
	       d + p, v->npages, d, ud, p, up);
}

/* A page became present: count it, and print a line at every quarter. */
static void
page_arrived(struct vmm *v, uint64_t *counter)
{
	uint64_t present;

	pthread_mutex_lock(&v->progress_lock);
	__atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
	present = v->demand_pages + v->prefetched_pages;
	if (present * 4 >= (uint64_t)v->next_milestone * v->npages) {
		while (present * 4 >= (uint64_t)v->next_milestone * v->npages)
			v->next_milestone++;
		print_progress(v);
	}
	pthread_mutex_unlock(&v->progress_lock);
}

/*
 * page_in(): a vCPU (KVM Userfault) or KVM's own access through the memslot
 * (userfaultfd) needs @page. The library has claimed it; it publishes the
 * page after MEMFAULT_RESOLVED. @hva is where to write it: the guest memory
 * itself, or, with userfaultfd, the alias mapping.
 */
static int
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

static void
log_message(void *user, int level, const char *message)
{
	if (level <= 4)
		fprintf(stderr, "libmemfault: %s\n", message);
}

/* Where the VMM itself writes page @page. */
static void *
vmm_page(const struct vmm *v, uint64_t page)
{
	uint8_t *base = v->backend == BACKEND_UFFD ? v->alias : v->mem;

	return base + page * v->page_size;
}

/*
 * The prefetch thread: every page, exactly once, whatever the vCPUs do.
 * A page a vCPU is fetching is skipped (MEMFAULT_CLAIM_BUSY); a second
 * pass waits for whatever is still missing.
 */
static void *
prefetch_main(void *arg)
{
	struct vmm *v = arg;
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
			r = fetch_page(&v->background, page, vmm_page(v, page),
				       v->page_size);
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

/* ---- Exits ------------------------------------------------------------- */

static int
guest_write(struct vmm *v, uint64_t reg, const uint8_t *data, uint32_t len)
{
	uint32_t value = 0;

	if (len != 4)
		return -EPROTO;
	memcpy(&value, data, 4); /* little-endian hosts */
	if (reg == ARM64_REG_WORD) {
		v->word_sum += value;
		v->words++;
	} else if (reg == ARM64_REG_SUM) {
		v->guest_sum = value;
		v->have_guest_sum = true;
	} else if (reg == ARM64_REG_DONE) {
		v->done = true;
	} else {
		return -EPROTO;
	}
	return 0;
}

static int
handle_exit(struct vmm *v, struct kvm_run *run)
{
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		if (run->io.direction != KVM_EXIT_IO_OUT || run->io.count != 1)
			break;
		if (run->io.port == X86_PORT_SUM)
			return guest_write(v, ARM64_REG_SUM,
					   (uint8_t *)run + run->io.data_offset,
					   run->io.size);
		if (run->io.port == X86_PORT_WORD)
			return guest_write(v, ARM64_REG_WORD,
					   (uint8_t *)run + run->io.data_offset,
					   run->io.size);
		break;
	case KVM_EXIT_MMIO:
		if (!run->mmio.is_write ||
		    run->mmio.phys_addr - ARM64_DEV_GPA > ARM64_REG_DONE)
			break;
		return guest_write(v, run->mmio.phys_addr - ARM64_DEV_GPA,
				   run->mmio.data, run->mmio.len);
	case KVM_EXIT_HLT:
		v->done = true;
		return 0;
	default:
		break;
	}
	printf("error: unexpected exit %u\n", run->exit_reason);
	return -EPROTO;
}

static int
run_guest(struct vmm *v)
{
	struct memfault_fault f;
	struct kvm_run *run;
	int r;

	r = memfault_vcpu_get_run(v->vcpu, &run);
	if (r)
		return r;
	while (!v->done) {
		r = memfault_vcpu_run_dispatch(v->vcpu);
		switch (r) {
		case MEMFAULT_RUN_EXIT:
			r = handle_exit(v, run);
			if (r)
				return r;
			break;
		case MEMFAULT_RUN_INTERRUPTED:
		case MEMFAULT_RUN_RETRY:
			break;
		case MEMFAULT_RUN_MEMORY_FAULT:
			/* nothing this VMM knows how to resolve */
			if (!memfault_vcpu_get_fault(v->vcpu, &f, sizeof(f)))
				printf("error: memory fault at gpa %#" PRIx64 ", flags %#" PRIx64 ", error %d\n",
				       f.gpa, f.flags, f.error);
			return -EFAULT;
		default:
			printf("error: memfault_vcpu_run_dispatch: %s\n",
			       strerror(-r));
			return r;
		}
	}
	return 0;
}

/* ---- Setup --------------------------------------------------------------- */

static int
start_server(struct vmm *v)
{
	/* req[i]: VMM -> source, rep[i]: source -> VMM; i = 0 urgent,
	 * 1 background. [0] is the read end. */
	int req[2][2], rep[2][2], i, r = 0;

	for (i = 0; i < 2; i++) {
		req[i][0] = req[i][1] = rep[i][0] = rep[i][1] = -1;
		if (pipe2(req[i], O_CLOEXEC) || pipe2(rep[i], O_CLOEXEC))
			r = -errno;
	}
	if (!r) {
		fflush(stdout);
		v->server = fork();
		if (v->server < 0)
			r = -errno;
	}
	if (!r && v->server == 0) {
		int rfd[2] = { req[0][0], req[1][0] };
		int wfd[2] = { rep[0][1], rep[1][1] };

		for (i = 0; i < 2; i++) {
			close(req[i][1]);
			close(rep[i][0]);
		}
		server_main(rfd, wfd, v->npages, v->page_size, v->latency_us);
	}
	for (i = 0; i < 2; i++) {
		if (req[i][0] >= 0)
			close(req[i][0]);
		if (rep[i][1] >= 0)
			close(rep[i][1]);
		if (r) {
			if (req[i][1] >= 0)
				close(req[i][1]);
			if (rep[i][0] >= 0)
				close(rep[i][0]);
		}
	}
	if (r)
		return r;
	v->urgent.fd = req[0][1];
	v->urgent.rfd = rep[0][0];
	v->background.fd = req[1][1];
	v->background.rfd = rep[1][0];
	return 0;
}

/* The guest program and its parameters in RAM (real KVM). */
static void
load_program(struct vmm *v)
{
	uint64_t last = v->npages - 1;

	if (v->guest->arch == MEMFAULT_ARCH_X86_64) {
		uint16_t params[3] = {
			(uint16_t)v->npages,
			(uint16_t)((v->guest->mem_gpa + last * v->page_size) >> 4),
			(uint16_t)probe_offset(last, v->page_size),
		};

		memcpy(v->ram + X86_CODE_GPA, x86_program, sizeof(x86_program));
		memcpy(v->ram + X86_PARAM_GPA, params, sizeof(params));
	} else {
		uint64_t params[4] = {
			v->npages,
			v->page_size,
			v->guest->mem_gpa + last * v->page_size,
			probe_offset(last, v->page_size),
		};

		memcpy(v->ram + ARM64_CODE_GPA, arm64_program,
		       sizeof(arm64_program));
		memcpy(v->ram + ARM64_PARAM_GPA, params, sizeof(params));
	}
}

/* The simulator's script: the same loads, each word reported. */
static char *
build_script(const struct vmm *v)
{
	bool x86 = v->guest->arch == MEMFAULT_ARCH_X86_64;
	size_t size = (size_t)v->npages * 80 + 64, used = 0;
	char *s = malloc(size);
	uint64_t p;

	if (!s)
		return NULL;
	for (p = v->npages; p-- > 0;) {
		uint64_t gpa = v->guest->mem_gpa + p * v->page_size +
			       probe_offset(p, v->page_size);

		used += (size_t)snprintf(s + used, size - used,
					 x86 ? "load:%#" PRIx64 ":4;out:0xe1:4:acc;" :
					       "load:%#" PRIx64 ":4;mmio_write:0x10000004:4:acc;",
					 gpa);
	}
	snprintf(s + used, size - used, "%s",
		 x86 ? "hlt" : "mmio_write:0x10000008:4:0");
	return s;
}

static int
setup_vcpu(struct vmm *v, int vm_fd, int vcpu_fd)
{
	char *script;
	int r = 0;

	if (v->guest->setup_vcpu) {
		r = v->guest->setup_vcpu(vm_fd, vcpu_fd);
		/* the simulator models no registers: it runs the script */
		if (v->sim_set_script && (r == -ENOTTY || r == -EINVAL))
			r = 0;
		if (r)
			return r;
	}
	if (!v->sim_set_script)
		return 0;
	script = build_script(v);
	if (!script)
		return -ENOMEM;
	r = v->sim_set_script(vcpu_fd, script);
	free(script);
	return r;
}

/* The userfaultfd backend, where this libmemfault has it. */
static int
setup_uffd(struct vmm *v)
{
#if HAVE_UFFD_API
	MEMFAULT_OPTS(memfault_uffd_opts, opts,
		.flags = MEMFAULT_UFFD_SERVICE_THREAD);
	int r;

	r = memfault_uffd_new(v->vm, &opts, &v->uffd);
	if (r)
		return r;
	r = memfault_uffd_register(v->uffd, v->mem_region, MEMFAULT_UFFD_MINOR,
				   v->alias);
	return r;
#else
	(void)v;
	return -ENOSYS;
#endif
}

static int
fail(const char *what, int r)
{
	printf("error: %s: %s\n", what, strerror(-r));
	return r;
}

/* Returns 0, a negative errno, or EXIT_SKIP when no backend exists. */
static int
setup(struct vmm *v)
{
	MEMFAULT_OPTS(memfault_vcpu_opts, vcpu_opts,
		.flags = MEMFAULT_VCPU_OWN_FD);
	MEMFAULT_OPTS(memfault_region_opts, mem_opts,
		.flags = MEMFAULT_REGION_MISSING);
	MEMFAULT_OPTS(memfault_handlers, handlers,
		.user = v,
		.page_in = page_in,
		.log = log_message);
	struct memfault_features f;
	size_t mem_size = v->npages * v->page_size;
	int vm_fd, vcpu_fd, r;

	v->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (v->kvm_fd < 0)
		return fail("open /dev/kvm", -errno);
	MEMFAULT_OPTS(memfault_vm_opts, vm_opts,
		.flags = MEMFAULT_VM_OWN_FD,
		.kvm_fd = v->kvm_fd,
		.arch = v->guest->arch);
	vm_fd = ioctl(v->kvm_fd, KVM_CREATE_VM, 0);
	if (vm_fd < 0)
		return fail("KVM_CREATE_VM", -errno);
	r = memfault_vm_new(vm_fd, &vm_opts, &v->vm);
	if (r) {
		close(vm_fd);
		return fail("memfault_vm_new", r);
	}
	r = memfault_vm_get_features(v->vm, &f, sizeof(f));
	if (r)
		return fail("memfault_vm_get_features", r);
	r = memfault_vm_set_handlers(v->vm, &handlers);
	if (r)
		return fail("memfault_vm_set_handlers", r);

	/* The RAM, with the program: a region without a bitmap in use. */
	v->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (v->ram == MAP_FAILED) {
		v->ram = NULL;
		return fail("mmap", -errno);
	}
	load_program(v);
	r = memfault_region_new(v->vm, RAM_SLOT, RAM_GPA, RAM_SIZE, v->ram,
				NULL, &v->ram_region);
	if (r)
		return fail("the RAM memslot", r);

	/* The migrated memory: a memfd, so that userfaultfd can use it in
	 * MINOR mode through a second mapping. */
	v->mem_fd = memfd_create("postcopy-guest-memory", MFD_CLOEXEC);
	if (v->mem_fd < 0 || ftruncate(v->mem_fd, (off_t)mem_size))
		return fail("memfd", -errno);
	v->mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      v->mem_fd, 0);
	v->alias = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_SHARED,
			v->mem_fd, 0);
	if (v->mem == MAP_FAILED || v->alias == MAP_FAILED) {
		v->mem = v->mem == MAP_FAILED ? NULL : v->mem;
		v->alias = v->alias == MAP_FAILED ? NULL : v->alias;
		return fail("mmap", -errno);
	}

	if (f.flags & MEMFAULT_FEATURE_KVM_USERFAULT) {
		v->backend = BACKEND_KVM_USERFAULT;
		mem_opts.flags |= MEMFAULT_REGION_USERFAULT;
		printf("backend: KVM Userfault: the kernel accepted KVM_MEM_USERFAULT; vCPU accesses to missing pages exit to the VMM\n");
	} else {
		v->backend = BACKEND_UFFD;
		printf("backend: no KVM Userfault on this kernel (%s); the fallback is the userfaultfd backend\n",
		       f.flags & MEMFAULT_FEATURE_USER_MEMORY2 ?
			       "it rejected KVM_MEM_USERFAULT" :
			       "no KVM_SET_USER_MEMORY_REGION2");
		if (!HAVE_UFFD_API) {
			printf("result: SKIPPED: this libmemfault has no userfaultfd backend (memfault_uffd_*)\n");
			return EXIT_SKIP;
		}
	}
	r = memfault_region_new(v->vm, MEM_SLOT, v->guest->mem_gpa, mem_size,
				v->mem, &mem_opts, &v->mem_region);
	if (r)
		return fail("the migrated memory's memslot", r);
	if (v->backend == BACKEND_UFFD) {
		r = setup_uffd(v);
		if (r == -EPERM || r == -ENOSYS || r == -EOPNOTSUPP) {
			printf("result: SKIPPED: userfaultfd: %s\n", strerror(-r));
			return EXIT_SKIP;
		}
		if (r)
			return fail("userfaultfd", r);
		printf("backend: userfaultfd, MINOR mode on a memfd mapped twice: KVM's access through the memslot waits in the kernel for page_in()\n");
	}
	printf("memory: %" PRIu64 " pages of %zu bytes at GPA %#" PRIx64 ", all missing; source %u us away per page\n",
	       v->npages, v->page_size, v->guest->mem_gpa, v->latency_us);

	vcpu_fd = ioctl(vm_fd, KVM_CREATE_VCPU, 0);
	if (vcpu_fd < 0)
		return fail("KVM_CREATE_VCPU", -errno);
	r = setup_vcpu(v, vm_fd, vcpu_fd);
	if (r) {
		close(vcpu_fd);
		return fail("setting up the vCPU", r);
	}
	r = memfault_vcpu_new(v->vm, vcpu_fd, &vcpu_opts, &v->vcpu);
	if (r) {
		close(vcpu_fd);
		return fail("memfault_vcpu_new", r);
	}
#if HAVE_UFFD_API
	if (v->uffd) {
		r = memfault_uffd_add_vcpu(v->uffd, v->vcpu);
		if (r)
			return fail("memfault_uffd_add_vcpu", r);
	}
#endif
	return 0;
}

static void
teardown(struct vmm *v)
{
	size_t mem_size = v->npages * v->page_size;

#if HAVE_UFFD_API
	if (v->uffd && v->vcpu)
		memfault_uffd_remove_vcpu(v->uffd, v->vcpu);
	memfault_uffd_free(v->uffd);
#endif
	memfault_vcpu_free(v->vcpu);
	memfault_region_free(v->mem_region);
	memfault_region_free(v->ram_region);
	memfault_vm_free(v->vm);
	if (v->mem)
		munmap(v->mem, mem_size);
	if (v->alias)
		munmap(v->alias, mem_size);
	if (v->mem_fd >= 0)
		close(v->mem_fd);
	if (v->ram)
		munmap(v->ram, RAM_SIZE);
	if (v->kvm_fd >= 0)
		close(v->kvm_fd);
}

/* ---- Checks and summary --------------------------------------------------- */

static bool
check(bool ok, const char *what)
{
	printf("check: %s: %s\n", what, ok ? "ok" : "FAILED");
	return ok;
}

/* Every page as the source holds it (through the alias: no faults). */
static uint64_t
count_bad_pages(const struct vmm *v)
{
	uint64_t *want = malloc(v->page_size), bad = 0, p;

	if (!want)
		return v->npages;
	for (p = 0; p < v->npages; p++) {
		source_page(p, want, v->page_size);
		if (memcmp(v->alias + p * v->page_size, want, v->page_size))
			bad++;
	}
	free(want);
	return bad;
}

static bool
summarize(struct vmm *v)
{
	struct memfault_vcpu_stats vs = { 0 };
	struct server_stats st;
	uint64_t missing = 0, bad;
	uint32_t guest_sum;
	bool ok = true;
	char line[160];
	int r;

	memfault_vcpu_get_stats(v->vcpu, &vs, sizeof(vs));
	memfault_region_count_missing(v->mem_region, &missing);
	r = query_stats(&v->urgent, &st);
	if (r) {
		fail("the page server's statistics", r);
		return false;
	}
	guest_sum = v->have_guest_sum ? v->guest_sum : v->word_sum;
	bad = count_bad_pages(v);

	printf("summary: %" PRIu64 " pages of %zu bytes over %s: %" PRIu64 " fetched on demand, %" PRIu64 " prefetched (%" PRIu64 " skipped as busy)\n",
	       v->npages, v->page_size, backend_name(v->backend),
	       v->demand_pages, v->prefetched_pages, v->busy_skips);
	printf("         source: %" PRIu64 " requests (%" PRIu64 " urgent, %" PRIu64 " background), %" PRIu64 " distinct pages, %" PRIu64 " duplicates\n",
	       st.requests, st.urgent, st.background, st.unique, st.duplicates);
	printf("         fetch latency: demand avg %" PRIu64 " us max %" PRIu64 " us; prefetch avg %" PRIu64 " us max %" PRIu64 " us\n",
	       v->urgent.fetches ? v->urgent.total_ns / v->urgent.fetches / 1000 : 0,
	       v->urgent.max_ns / 1000,
	       v->background.fetches ?
		       v->background.total_ns / v->background.fetches / 1000 :
		       0,
	       v->background.max_ns / 1000);
	printf("         vCPU: %" PRIu64 " runs, %" PRIu64 " exits, %" PRIu64 " memory faults (%" PRIu64 " userfaults), %" PRIu64 " page-ins, %" PRIu64 " waits\n",
	       vs.runs, vs.exits, vs.memory_faults, vs.userfaults, vs.page_ins,
	       vs.page_waits);
#if HAVE_UFFD_API
	if (v->uffd) {
		struct memfault_uffd_stats us = { 0 };

		memfault_uffd_get_stats(v->uffd, &us, sizeof(us));
		printf("         userfaultfd: %" PRIu64 " faults, %" PRIu64 " page-ins, %" PRIu64 " waits, latency p50 %" PRIu64 " us max %" PRIu64 " us\n",
		       us.faults, us.page_ins, us.waits,
		       us.latency_p50_ns / 1000, us.latency_max_ns / 1000);
	}
#endif
	printf("         checksum: guest %#010x (%s), source %#010x\n",
	       guest_sum,
	       v->have_guest_sum ? "computed by the guest" :
				   "the guest's loads, added up by the VMM",
	       st.checksum);

	snprintf(line, sizeof(line), "every page present (%" PRIu64 " missing)",
		 missing);
	ok &= check(!missing, line);
	snprintf(line, sizeof(line),
		 "every page fetched exactly once (%" PRIu64 " distinct of %" PRIu64 ", %" PRIu64 " duplicates)",
		 st.unique, v->npages, st.duplicates);
	ok &= check(st.unique == v->npages && st.duplicates == 0 &&
			    st.requests == v->npages,
		    line);
	ok &= check(v->demand_pages + v->prefetched_pages == v->npages,
		    "the VMM counted every page once");
	snprintf(line, sizeof(line),
		 "every page holds the source's contents (%" PRIu64 " differ)",
		 bad);
	ok &= check(!bad, line);
	if (!v->have_guest_sum) {
		snprintf(line, sizeof(line),
			 "the guest read one word of every page (%" PRIu64 ")",
			 v->words);
		ok &= check(v->words == v->npages, line);
	}
	ok &= check(guest_sum == st.checksum,
		    "the guest's checksum matches the source's");
	return ok;
}

/* ---- main ----------------------------------------------------------------- */

static const struct guest *
find_guest(uint32_t arch, const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(guests) / sizeof(guests[0]); i++)
		if (name ? !strcmp(guests[i].name, name) : guests[i].arch == arch)
			return &guests[i];
	return NULL;
}

static int
usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [--arch x86_64|arm64] [--pages N] [--latency-us US]\n"
		"  --pages N        pages of guest memory to migrate, 1..%d (default 64)\n"
		"  --latency-us US  the source's delay per page (default 200)\n",
		argv0, MAX_PAGES);
	return 2;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "arch", required_argument, NULL, 'a' },
		{ "pages", required_argument, NULL, 'p' },
		{ "latency-us", required_argument, NULL, 'l' },
		{ NULL, 0, NULL, 0 },
	};
	struct vmm v = {
		.kvm_fd = -1,
		.mem_fd = -1,
		.npages = 64,
		.latency_us = 200,
		.next_milestone = 1,
		.progress_lock = PTHREAD_MUTEX_INITIALIZER,
		.urgent = { .lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1,
			    .rfd = -1 },
		.background = { .lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1,
				.rfd = -1 },
	};
	const struct guest *host = find_guest(HOST_ARCH, NULL);
	const char *arch = NULL;
	bool ok = false;
	void *sym;
	char *end;
	int c, r, status;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'a':
			arch = optarg;
			break;
		case 'p':
			v.npages = strtoull(optarg, &end, 0);
			if (*end || !v.npages || v.npages > MAX_PAGES)
				return usage(argv[0]);
			break;
		case 'l':
			v.latency_us = (unsigned)strtoul(optarg, &end, 0);
			if (*end || v.latency_us > 1000000)
				return usage(argv[0]);
			break;
		default:
			return usage(argv[0]);
		}
	}
	v.guest = arch ? find_guest(0, arch) : host;
	if (optind != argc || !v.guest)
		return usage(argv[0]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	v.page_size = (size_t)sysconf(_SC_PAGESIZE);
	if (v.guest->arch == MEMFAULT_ARCH_X86_64 && v.page_size != 4096) {
		fprintf(stderr, "%s: the x86-64 guest needs 4 KiB pages\n", argv[0]);
		return 2;
	}

	/* libkvmsim.so, when preloaded, stands in for /dev/kvm. */
	sym = dlsym(RTLD_DEFAULT, "kvmsim_vcpu_set_script_text");
	v.sim_set_script = (int (*)(int, const char *))sym;
	if (v.sim_set_script) {
		printf("KVM: the simulator (%s)\n", v.guest->name);
		if (setenv("KVMSIM_ARCH", v.guest->name, 1)) {
			perror("setenv");
			return 1;
		}
	} else {
		printf("KVM: /dev/kvm\n");
		if (v.guest != host) {
			fprintf(stderr, "%s: real KVM runs %s guests only\n",
				argv[0], host->name);
			return 2;
		}
	}

	/* The source first, before any thread exists. */
	r = start_server(&v);
	if (r) {
		fail("starting the page server", r);
		return 1;
	}
	printf("source: page server, pid %d, urgent and background channels\n",
	       (int)v.server);

	r = setup(&v);
	if (r == 0) {
		r = pthread_create(&v.prefetcher, NULL, prefetch_main, &v);
		if (r)
			r = fail("pthread_create", -r);
		else
			v.prefetcher_started = true;
	}
	if (r == 0)
		r = run_guest(&v);
	if (v.prefetcher_started)
		pthread_join(v.prefetcher, NULL);
	if (r == 0 && v.prefetch_error)
		r = v.prefetch_error;
	if (r == 0)
		ok = summarize(&v);
	teardown(&v);
	/* Closing both channels ends the server. */
	if (v.urgent.fd >= 0)
		close(v.urgent.fd);
	if (v.urgent.rfd >= 0)
		close(v.urgent.rfd);
	if (v.background.fd >= 0)
		close(v.background.fd);
	if (v.background.rfd >= 0)
		close(v.background.rfd);
	if (waitpid(v.server, &status, 0) == v.server &&
	    (!WIFEXITED(status) || WEXITSTATUS(status))) {
		printf("error: the page server failed\n");
		ok = false;
	}

	if (r == EXIT_SKIP)
		return EXIT_SKIP;
	if (r < 0 || !ok) {
		printf("result: FAILED\n");
		return 1;
	}
	printf("result: every page fetched exactly once, checksum matches\n");
	return 0;
}
