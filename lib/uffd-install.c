/* SPDX-License-Identifier: MIT */
/*
 * userfaultfd trap source: the ioctls, bounce buffers, fetching and
 * installing pages, and the trap-source operations that region.c and
 * dispatch.c call (struct memfault_trap_ops).
 */
#include <sched.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>


#include "barrier.h"
#include "memfault-private.h"
#include "uffd-private.h"

/* ---- the userfaultfd ioctls ---- */

/*
 * UFFDIO_COPY, UFFDIO_CONTINUE and UFFDIO_ZEROPAGE return EAGAIN while the
 * mm changes under them: retried, a bounded number of times. The kernel
 * reads only the inputs of @arg and writes its result field back, so the
 * same struct serves every try.
 */
static int
ioctl_retry(int fd, unsigned long req, void *arg)
{
	for (int i = 0;; i++) {
		if (!ioctl(fd, req, arg))
			return 0;
		if (errno != EAGAIN || i == EAGAIN_RETRIES)
			return -errno;
		sched_yield();
	}
}

int
uffd_copy(int fd, uintptr_t dst, const void *src)
{
	struct uffdio_copy c;

	memset(&c, 0, sizeof(c));
	c.dst = dst;
	c.src = (uintptr_t)src;
	c.len = memfault_page_size;
	return ioctl_retry(fd, UFFDIO_COPY, &c);
}

/*
 * UFFDIO_CONTINUE, UFFDIO_ZEROPAGE and UFFDIO_POISON take the same
 * argument: a range, a mode (0 here) and a result the kernel writes back.
 * One page at @addr, as the kernel lays the struct out for each of them.
 */
union uffd_range_arg {
	struct uffdio_continue cont;
	struct uffdio_zeropage zero;
	struct uffdio_poison poison;
};
_Static_assert(offsetof(struct uffdio_continue, range) == 0 &&
		       offsetof(struct uffdio_zeropage, range) == 0 &&
		       offsetof(struct uffdio_poison, range) == 0,
	       "UFFDIO range ioctls start with their range");

static int
uffd_range_ioctl(int fd, unsigned long req, uintptr_t addr)
{
	union uffd_range_arg a;

	memset(&a, 0, sizeof(a));
	a.cont.range.start = addr;
	a.cont.range.len = memfault_page_size;
	/* POISON is tried once: if it fails, fail_page() delivers SIGBUS
	 * and wakes the thread itself, which needs no retry */
	if (req == UFFDIO_POISON)
		return ioctl(fd, req, &a) ? -errno : 0;
	return ioctl_retry(fd, req, &a);
}

int
uffd_continue(int fd, uintptr_t addr)
{
	return uffd_range_ioctl(fd, UFFDIO_CONTINUE, addr);
}

int
uffd_zeropage(int fd, uintptr_t addr)
{
	return uffd_range_ioctl(fd, UFFDIO_ZEROPAGE, addr);
}

int
uffd_poison(int fd, uintptr_t addr)
{
	return uffd_range_ioctl(fd, UFFDIO_POISON, addr);
}

/*
 * UFFDIO_WAKE fails only on arguments we never pass (EINVAL for a range
 * outside every registration), yet a lost wake-up leaves a thread asleep
 * for good: a failure is tried again, a bounded number of times.
 */
void
uffd_wake_range(int fd, uintptr_t start, uint64_t len)
{
	struct uffdio_range r = { .start = start, .len = len };

	for (int i = 0; i < WAKE_TRIES; i++)
		if (!ioctl(fd, UFFDIO_WAKE, &r))
			return;
}

void
uffd_wake(int fd, uintptr_t addr)
{
	uffd_wake_range(fd, addr, memfault_page_size);
}

/* ---- bounce buffers ---- */

static void *
bounce_get(struct memfault_uffd *u, int *slot)
{
	uint64_t used = MEMFAULT_READ_ONCE(u->bounce_used);
	void *p;

	while (~used) {
		int i = __builtin_ctzll(~used);

		/* Acquire: pairs with the release in bounce_put(), so the
		 * previous user's UFFDIO_COPY read the page before we fill it. */
		if (memfault_cmpxchg_weak(&u->bounce_used, &used,
					  used | (1ull << i),
					  MEMFAULT_ACQUIRE)) {
			*slot = i;
			p = u->bounce + ((size_t)i << memfault_page_shift);
			/* The previous page-in's bytes must not reach this
			 * page: what page_in() leaves alone installs as
			 * zeros (memfault.h). */
			memset(p, 0, memfault_page_size);
			return p;
		}
	}
	/* more page-ins at once than slots: a page of our own (zeros) */
	*slot = -1;
	p = mmap(NULL, memfault_page_size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static void
bounce_put(struct memfault_uffd *u, void *p, int slot)
{
	if (slot < 0) {
		munmap(p, memfault_page_size);
		return;
	}
	/* Release: pairs with the acquire in bounce_get(). */
	memfault_fetch_and(&u->bounce_used, ~(1ull << slot), MEMFAULT_RELEASE);
}

/* ---- fetching and installing ---- */

uintptr_t
uffd_page_addr(const struct memfault_uffd_reg *g, uint64_t page)
{
	return g->start + (uintptr_t)(page << memfault_page_shift);
}

/*
 * Make pages fault again. MINOR: unmap them, the page cache stays (the
 * next fetch rewrites it through the alias). MISSING: their contents must
 * go too; MADV_DONTNEED does that for private memory, and MADV_REMOVE
 * (which refuses private memory) for shared memory, whose page cache
 * would otherwise be mapped again without a fault. Either unmaps, which
 * KVM's MMU notifier follows.
 */
int
uffd_zap(const struct memfault_uffd_reg *g, uintptr_t addr, size_t len)
{
	if (g->mode == MEMFAULT_UFFD_MISSING &&
	    !madvise((void *)addr, len, MADV_REMOVE))
		return 0;
	return madvise((void *)addr, len, MADV_DONTNEED) ? -errno : 0;
}

/* Install a page the caller has claimed and filled. */
static int
install_fetched(struct memfault_uffd_reg *g, uint64_t page, const void *src)
{
	uintptr_t addr = uffd_page_addr(g, page);
	int r;

	if (g->mode == MEMFAULT_UFFD_MINOR) {
		r = uffd_continue(g->u->fd, addr);
		/* Already mapped (by a stale fault before the page was marked
		 * missing again): the mapping shows the page cache, which now
		 * holds the new contents. */
		if (r == -EEXIST) {
			uffd_wake(g->u->fd, addr);
			r = 0;
		}
		return r;
	}
	r = uffd_copy(g->u->fd, addr, src);
	if (r == -EEXIST) {
		/* A page is there where the bitmap says missing (a zero page
		 * a stale fault installed just before the page was marked
		 * missing): the fetched contents win. */
		(void)uffd_zap(g, addr, memfault_page_size);
		r = uffd_copy(g->u->fd, addr, src);
	}
	return r;
}

/* page_in() into the page's buffer, then install: page_in()'s verdict or
 * -errno. The caller holds the claim and publishes or aborts. */
int
uffd_fill_and_install(struct memfault_uffd_reg *g, struct memfault_vcpu *vcpu,
		 uint64_t page)
{
	const struct memfault_handlers *h = &g->u->vm->handlers;
	void *buf = NULL, *hva;
	int slot = -1, r;

	if (!h->page_in)
		return -EOPNOTSUPP;
	if (g->mode == MEMFAULT_UFFD_MINOR) {
		hva = g->alias + ((size_t)page << memfault_page_shift);
	} else {
		buf = bounce_get(g->u, &slot);
		if (!buf)
			return -ENOMEM;
		hva = buf;
	}
	r = h->page_in(h->user, vcpu, g->region, page, hva, memfault_page_size);
	if (r == MEMFAULT_RESOLVED)
		r = install_fetched(g, page, buf);
	if (buf)
		bounce_put(g->u, buf, slot);
	return r;
}

int
uffd_trap_page_in(struct memfault_trap *t, struct memfault_vcpu *vcpu,
	     uint64_t page)
{
	struct memfault_uffd_reg *g = uffd_reg_of(t);
	int r = uffd_fill_and_install(g, vcpu, page);

	if (r == MEMFAULT_RESOLVED)
		memfault_add(&g->u->kvm_page_ins, 1, MEMFAULT_RELAXED);
	return r;
}

void
uffd_trap_wake(struct memfault_trap *t, uint64_t first, uint64_t count)
{
	struct memfault_uffd_reg *g = uffd_reg_of(t);

	uffd_wake_range(g->u->fd, uffd_page_addr(g, first), count << memfault_page_shift);
}

int
uffd_trap_invalidate(struct memfault_trap *t, uint64_t first, uint64_t count)
{
	struct memfault_uffd_reg *g = uffd_reg_of(t);
	int r;

	/* Against install_present(): see there. */
	pthread_mutex_lock(&g->u->zap_lock);
	r = uffd_zap(g, uffd_page_addr(g, first), (size_t)(count << memfault_page_shift));
	pthread_mutex_unlock(&g->u->zap_lock);
	return r;
}

