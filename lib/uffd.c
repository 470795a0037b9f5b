/* SPDX-License-Identifier: MIT */
/*
 * userfaultfd backend: the region bitmap stays the source of truth and
 * page_in() fills the pages; userfaultfd traps the host accesses KVM
 * Userfault never sees and installs pages atomically.
 *
 * Every fetched page goes: claim, page_in() into a bounce buffer (MISSING)
 * or through the alias (MINOR), install (UFFDIO_COPY/UFFDIO_CONTINUE, which
 * wakes the threads faulting on it), publish. Installing before publishing
 * means that whoever sees the bit clear finds the page mapped: a fault on a
 * present page is stale or follows an unmap, and never needs a fetch. A
 * fault on a page another thread is fetching needs nothing either: that
 * thread's install wakes it. The service therefore never waits for a claim.
 */
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/userfaultfd.h>

#include "barrier.h"
#include "memfault-private.h"

/* Features used when offered: per-vCPU attribution, memfd regions (holes
 * trap as MISSING, mapped pages as MINOR), failure delivery. */
#define WANTED_FEATURES                                                        \
	(UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_MISSING_SHMEM |                 \
	 UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_POISON)
/* Bounce pages shared by all page-ins at once; more get a page each. */
#define BOUNCE_SLOTS 64
#define MSG_BATCH 16
/* UFFDIO_* return EAGAIN while the mm changes under them; bounded. */
#define EAGAIN_RETRIES 1000
/* A page found present, then missing again, so many times in a row. */
#define PRESENT_RETRIES 8
/* Tries of a wake-up or unregistration that failed (see wake_range()). */
#define WAKE_TRIES 3
#define NBUCKETS MEMFAULT_UFFD_LATENCY_BUCKETS


/* A registered region; the trap source region.c and dispatch.c call. */
struct memfault_uffd_reg {
	struct memfault_trap trap; /* first: the region points to it */
	struct memfault_uffd *u;
	struct memfault_region *region;
	uintptr_t start; /* the region's hva */
	uint64_t len;
	char *alias; /* MINOR: the second mapping page_in() writes through */
	uint32_t mode;
};

struct memfault_uffd {
	struct memfault_vm *vm;
	int fd;
	int stop_fd; /* eventfd that ends the service thread's poll() */
	uint64_t features;
	pthread_t thread;
	bool have_thread;

	/* regs (sorted by start) and vcpus change under the write lock; each
	 * service call holds the read lock while it handles a batch */
	pthread_rwlock_t lock;
	struct memfault_uffd_reg **regs;
	size_t nr_regs;
	struct memfault_vcpu **vcpus;
	size_t nr_vcpus;

	char *bounce;
	uint64_t bounce_used; /* atomic: one bit per bounce page in use */

	/* orders install_present() against trap_invalidate() */
	pthread_mutex_t zap_lock;

	/* atomic: added to by every serving thread and vCPU */
	uint64_t faults, page_ins, kvm_page_ins, waits, unknown, errors;
	uint64_t max_ns;
	uint64_t hist[NBUCKETS];

	pthread_mutex_t err_lock; /* the last failure, as one record */
	uint64_t err_addr, err_gpa;
	int32_t err;
	uint32_t err_tid;
};

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

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

static void
record_latency(struct memfault_uffd *u, uint64_t ns)
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

/* ---- the userfaultfd ioctls ---- */

static int
uffd_copy(int fd, uintptr_t dst, const void *src)
{
	struct uffdio_copy c;

	for (int i = 0;; i++) {
		memset(&c, 0, sizeof(c));
		c.dst = dst;
		c.src = (uintptr_t)src;
		c.len = memfault_page_size;
		if (!ioctl(fd, UFFDIO_COPY, &c))
			return 0;
		if (errno != EAGAIN || i == EAGAIN_RETRIES)
			return -errno;
		sched_yield();
	}
}

static int
uffd_continue(int fd, uintptr_t addr)
{
	struct uffdio_continue c;

	for (int i = 0;; i++) {
		memset(&c, 0, sizeof(c));
		c.range.start = addr;
		c.range.len = memfault_page_size;
		if (!ioctl(fd, UFFDIO_CONTINUE, &c))
			return 0;
		if (errno != EAGAIN || i == EAGAIN_RETRIES)
			return -errno;
		sched_yield();
	}
}

static int
uffd_zeropage(int fd, uintptr_t addr)
{
	struct uffdio_zeropage z;

	for (int i = 0;; i++) {
		memset(&z, 0, sizeof(z));
		z.range.start = addr;
		z.range.len = memfault_page_size;
		if (!ioctl(fd, UFFDIO_ZEROPAGE, &z))
			return 0;
		if (errno != EAGAIN || i == EAGAIN_RETRIES)
			return -errno;
		sched_yield();
	}
}

static int
uffd_poison(int fd, uintptr_t addr)
{
	struct uffdio_poison p;

	memset(&p, 0, sizeof(p));
	p.range.start = addr;
	p.range.len = memfault_page_size;
	return ioctl(fd, UFFDIO_POISON, &p) ? -errno : 0;
}

/*
 * UFFDIO_WAKE fails only on arguments we never pass (EINVAL for a range
 * outside every registration), yet a lost wake-up leaves a thread asleep
 * for good: a failure is tried again, a bounded number of times.
 */
static void
wake_range(int fd, uintptr_t start, uint64_t len)
{
	struct uffdio_range r = { .start = start, .len = len };

	for (int i = 0; i < WAKE_TRIES; i++)
		if (!ioctl(fd, UFFDIO_WAKE, &r))
			return;
}

static void
uffd_wake(int fd, uintptr_t addr)
{
	wake_range(fd, addr, memfault_page_size);
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

static uintptr_t
page_addr(const struct memfault_uffd_reg *g, uint64_t page)
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
static int
zap(const struct memfault_uffd_reg *g, uintptr_t addr, size_t len)
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
	uintptr_t addr = page_addr(g, page);
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
		(void)zap(g, addr, memfault_page_size);
		r = uffd_copy(g->u->fd, addr, src);
	}
	return r;
}

/* page_in() into the page's buffer, then install: page_in()'s verdict or
 * -errno. The caller holds the claim and publishes or aborts. */
static int
fill_and_install(struct memfault_uffd_reg *g, struct memfault_vcpu *vcpu,
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

static struct memfault_uffd_reg *
reg_of(struct memfault_trap *t)
{
	return (struct memfault_uffd_reg *)((char *)t -
					    offsetof(struct memfault_uffd_reg,
						     trap));
}

static int
trap_page_in(struct memfault_trap *t, struct memfault_vcpu *vcpu,
	     uint64_t page)
{
	struct memfault_uffd_reg *g = reg_of(t);
	int r = fill_and_install(g, vcpu, page);

	if (r == MEMFAULT_RESOLVED)
		memfault_add(&g->u->kvm_page_ins, 1, MEMFAULT_RELAXED);
	return r;
}

static void
trap_wake(struct memfault_trap *t, uint64_t first, uint64_t count)
{
	struct memfault_uffd_reg *g = reg_of(t);

	wake_range(g->u->fd, page_addr(g, first), count << memfault_page_shift);
}

static int
trap_invalidate(struct memfault_trap *t, uint64_t first, uint64_t count)
{
	struct memfault_uffd_reg *g = reg_of(t);
	int r;

	/* Against install_present(): see there. */
	pthread_mutex_lock(&g->u->zap_lock);
	r = zap(g, page_addr(g, first), (size_t)(count << memfault_page_shift));
	pthread_mutex_unlock(&g->u->zap_lock);
	return r;
}

/*
 * A page-in of a userfaultfd fault failed: never retried here. Poison the
 * page while still holding the claim (UFFDIO_POISON wakes the faulting
 * threads, which get SIGBUS; a later fetch overwrites the marker), record
 * and log the failure, then abort the claim: the page stays missing.
 */
static void
fail_page(struct memfault_uffd *u, struct memfault_uffd_reg *g, uint64_t page,
	  uint32_t tid, int err)
{
	uintptr_t addr = page_addr(g, page);
	uint64_t gpa = g->region->gpa + (page << memfault_page_shift);
	bool poisoned = false;

	if (u->features & UFFD_FEATURE_POISON)
		poisoned = !uffd_poison(u->fd, addr);
	if (!poisoned) {
		/* before 6.6: SIGBUS by hand, then let the thread run */
		if (tid)
			(void)syscall(SYS_tgkill, getpid(), (pid_t)tid, SIGBUS);
		uffd_wake(u->fd, addr);
	}
	memfault_region_abort(g->region, page);
	memfault_add(&u->errors, 1, MEMFAULT_RELAXED);
	pthread_mutex_lock(&u->err_lock);
	u->err_addr = addr;
	u->err_gpa = gpa;
	u->err = err;
	u->err_tid = tid;
	pthread_mutex_unlock(&u->err_lock);
	memfault_vm_log(u->vm, 3,
			"userfaultfd page_in of gpa %#llx (hva %#llx, thread %u) failed: %d; the page stays missing and accesses get SIGBUS",
			(unsigned long long)gpa, (unsigned long long)addr, tid,
			err);
}

/*
 * A page found present faulted: map it again if it was unmapped, or wake.
 * Returns false, having done nothing, if the page is missing again: the
 * caller claims it anew.
 *
 * The claim saw the bit clear, but memfault_region_mark_missing() may have
 * set it and unmapped the page since: a zero page (MISSING) or the old
 * page cache (MINOR) installed now would be read as the page's contents
 * with no fault and no fetch. So the bit is checked again under the lock
 * trap_invalidate() holds: either that zap comes after us and unmaps
 * what we install, or its bit, set before its zap, is visible here (the
 * mutex's unlock/lock orders them).
 */
static bool
install_present(struct memfault_uffd *u, struct memfault_uffd_reg *g,
		uint64_t page)
{
	uintptr_t addr = page_addr(g, page);
	int r;

	pthread_mutex_lock(&u->zap_lock);
	if (memfault_region_is_missing(g->region, page) == 1) {
		pthread_mutex_unlock(&u->zap_lock);
		return false;
	}
	if (g->mode == MEMFAULT_UFFD_MINOR) {
		r = uffd_continue(u->fd, addr);
		if (r == -EFAULT) {
			/* a hole in the memfd: a read through the alias puts a
			 * zero page in the page cache, as a plain fault would */
			(void)*(volatile char *)(g->alias +
						 ((size_t)page << memfault_page_shift));
			r = uffd_continue(u->fd, addr);
		}
	} else {
		/* anonymous memory that was unmapped reads as zeros */
		r = uffd_zeropage(u->fd, addr);
	}
	pthread_mutex_unlock(&u->zap_lock);
	if (r)
		uffd_wake(u->fd, addr); /* EEXIST: mapped meanwhile */
	return true;
}

static struct memfault_uffd_reg *
find_reg(const struct memfault_uffd *u, uintptr_t addr)
{
	size_t lo = 0, hi = u->nr_regs;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		struct memfault_uffd_reg *g = u->regs[mid];

		if (addr < g->start)
			hi = mid;
		else if (addr - g->start >= g->len)
			lo = mid + 1;
		else
			return g;
	}
	return NULL;
}

static struct memfault_vcpu *
find_vcpu(const struct memfault_uffd *u, uint32_t tid)
{
	for (size_t i = 0; i < u->nr_vcpus; i++)
		if ((uint32_t)MEMFAULT_READ_ONCE(u->vcpus[i]->tid) == tid)
			return u->vcpus[i];
	return NULL;
}

/* One message, read at @t0; the caller holds the read lock. */
static void
handle_msg(struct memfault_uffd *u, const struct uffd_msg *msg, uint64_t t0)
{
	struct memfault_vcpu *vcpu = NULL;
	struct memfault_uffd_reg *g;
	uintptr_t addr;
	uint64_t page, ns;
	uint32_t tid = 0;
	int r;

	/* no UFFD_FEATURE_EVENT_* is enabled: nothing else arrives */
	if (msg->event != UFFD_EVENT_PAGEFAULT)
		return;
	memfault_add(&u->faults, 1, MEMFAULT_RELAXED);
	addr = (uintptr_t)msg->arg.pagefault.address &
	       ~(uintptr_t)(memfault_page_size - 1);
	if (u->features & UFFD_FEATURE_THREAD_ID)
		tid = msg->arg.pagefault.feat.ptid;
	if (tid)
		vcpu = find_vcpu(u, tid);
	g = find_reg(u, addr);
	if (!g) {
		/* a region unregistered since the fault was queued */
		memfault_add(&u->unknown, 1, MEMFAULT_RELAXED);
		uffd_wake(u->fd, addr);
		goto out;
	}
	page = (addr - g->start) >> memfault_page_shift;
	for (int tries = 0;; tries++) {
		r = memfault_region_claim_page(g->region, page,
					       MEMFAULT_CLAIM_NOWAIT);
		if (r != MEMFAULT_CLAIM_PRESENT)
			break;
		if (install_present(u, g, page)) {
			memfault_add(&u->waits, 1, MEMFAULT_RELAXED);
			goto out;
		}
		/* marked missing again: claim it for a fetch; marked and
		 * published over and over, the thread faults again */
		if (tries == PRESENT_RETRIES) {
			memfault_add(&u->waits, 1, MEMFAULT_RELAXED);
			uffd_wake(u->fd, addr);
			goto out;
		}
	}
	if (r == MEMFAULT_CLAIM_FETCH) {
		r = fill_and_install(g, vcpu, page);
		if (r == MEMFAULT_RESOLVED) {
			/* Installed first: the bit clears on a mapped page. */
			memfault_region_publish_page(g->region, page);
			memfault_add(&u->page_ins, 1, MEMFAULT_RELAXED);
			goto out;
		}
		if (r == MEMFAULT_TO_VMM) {
			/* a host thread has no VMM to return to */
			r = -EOPNOTSUPP;
		} else if (r > 0 || r <= -4096) {
			memfault_vm_log(u->vm, 3,
					"page_in handler returned %d", r);
			r = -EPROTO;
		}
		fail_page(u, g, page, tid, r);
	} else {
		/* MEMFAULT_CLAIM_BUSY: the fetcher's install wakes us, or
		 * its publish or abort does (trap_wake()) */
		memfault_add(&u->waits, 1, MEMFAULT_RELAXED);
	}
out:
	ns = now_ns() - t0;
	if (vcpu) {
		/* not the vCPU thread's own counters: whichever thread
		 * serves the userfaultfd adds, so atomic adds */
		memfault_add(&vcpu->stats.uffd_faults, 1, MEMFAULT_RELAXED);
		memfault_add(&vcpu->stats.uffd_wait_ns, ns, MEMFAULT_RELAXED);
	}
	/* last: the histogram's sum reaching faults means all is counted */
	record_latency(u, ns);
}

static int
service(struct memfault_uffd *u, uint32_t max)
{
	struct uffd_msg msgs[MSG_BATCH];
	uint32_t done = 0;

	if (max > INT_MAX)
		max = INT_MAX;
	while (done < max) {
		size_t want = max - done < MSG_BATCH ? max - done : MSG_BATCH;
		ssize_t n = read(u->fd, msgs, want * sizeof(msgs[0]));
		uint64_t t0;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || done)
				break;
			return -errno;
		}
		n /= (ssize_t)sizeof(msgs[0]);
		if (!n)
			break;
		t0 = now_ns();
		pthread_rwlock_rdlock(&u->lock);
		for (ssize_t i = 0; i < n; i++)
			handle_msg(u, &msgs[i], t0);
		pthread_rwlock_unlock(&u->lock);
		done += (uint32_t)n;
	}
	return (int)done;
}

MEMFAULT_EXPORT int
memfault_uffd_service(struct memfault_uffd *u, uint32_t max_events)
{
	if (!u || !max_events)
		return -EINVAL;
	return service(u, max_events);
}

static void *
service_main(void *arg)
{
	struct memfault_uffd *u = arg;
	struct pollfd p[2] = {
		{ .fd = u->fd, .events = POLLIN },
		{ .fd = u->stop_fd, .events = POLLIN },
	};

	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno != EINTR && errno != ENOMEM) {
				memfault_vm_log(u->vm, 3,
						"userfaultfd service thread: poll failed: %d",
						-errno);
				return NULL;
			}
			continue;
		}
		if (p[1].revents)
			return NULL;
		if (p[0].revents & POLLIN)
			(void)service(u, 64);
		else if (p[0].revents & (POLLERR | POLLHUP | POLLNVAL)) {
			/* would spin: not seen on an initialized userfaultfd */
			memfault_vm_log(u->vm, 3,
					"userfaultfd service thread: poll revents %#x",
					(unsigned int)p[0].revents);
			return NULL;
		}
	}
}

/* ---- setup ---- */

/* /dev/userfaultfd first (6.1; its permission can be granted without the
 * sysctl), then the system call. */
static int
uffd_open(int *ret_fd)
{
	const int flags = O_CLOEXEC | O_NONBLOCK;
	int dev, fd, dev_err, err;

	*ret_fd = -1;
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
		dev_err = fd < 0 ? errno : 0;
		close(dev);
		if (fd >= 0) {
			*ret_fd = fd;
			return 0;
		}
	} else {
		dev_err = errno;
	}
	fd = (int)syscall(SYS_userfaultfd, flags);
	if (fd >= 0) {
		*ret_fd = fd;
		return 0;
	}
	err = errno;
	/* "not allowed" through either door is the answer that helps */
	if (err == EPERM || err == EACCES || dev_err == EPERM ||
	    dev_err == EACCES)
		return -EPERM;
	return err > 0 ? -err : -EIO;
}

static int
uffd_api(int fd, uint64_t features, uint64_t *ret_offered)
{
	struct uffdio_api api;

	memset(&api, 0, sizeof(api));
	api.api = UFFD_API;
	api.features = features;
	if (ioctl(fd, UFFDIO_API, &api))
		return -errno;
	if (ret_offered)
		*ret_offered = api.features;
	return 0;
}

/* An fd with the wanted features the kernel offers enabled. UFFDIO_API
 * takes one call per fd: ask on a first fd, enable on a second. */
static int
uffd_create(int *ret_fd, uint64_t *ret_features)
{
	uint64_t offered = 0;
	int fd, r;

	r = uffd_open(&fd);
	if (r)
		return r;
	r = uffd_api(fd, 0, &offered);
	close(fd);
	if (r)
		return r;
	r = uffd_open(&fd);
	if (r)
		return r;
	r = uffd_api(fd, offered & WANTED_FEATURES, NULL);
	if (r) {
		close(fd);
		return r;
	}
	*ret_fd = fd;
	*ret_features = offered & WANTED_FEATURES;
	return 0;
}

static int
start_thread(struct memfault_uffd *u)
{
	sigset_t all, old;
	int r;

	/* The VMM's signals (kicks, timers) go to its own threads. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&u->thread, NULL, service_main, u);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r)
		return -r;
	(void)pthread_setname_np(u->thread, "memfault-uffd");
	u->have_thread = true;
	return 0;
}

MEMFAULT_EXPORT int
memfault_uffd_new(struct memfault_vm *vm, const struct memfault_uffd_opts *opts,
		  struct memfault_uffd **ret_uffd)
{
	struct memfault_uffd *u;
	uint64_t flags;
	int r;

	if (!vm || !ret_uffd || !OPTS_VALID(opts, memfault_uffd_opts))
		return -EINVAL;
	flags = OPTS_GET(opts, memfault_uffd_opts, flags, 0);
	if ((flags & ~(uint64_t)MEMFAULT_UFFD_SERVICE_THREAD) ||
	    OPTS_GET(opts, memfault_uffd_opts, reserved, 0))
		return -EINVAL;

	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->vm = vm;
	u->fd = -1;
	u->stop_fd = -1;
	u->bounce = MAP_FAILED;
	u->zap_lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
	r = uffd_create(&u->fd, &u->features);
	if (r == -EPERM) {
		memfault_vm_log(vm, 3,
				"userfaultfd is not permitted: set sysctl vm.unprivileged_userfaultfd=1, or give this user read/write access to /dev/userfaultfd (Linux 6.1+), or CAP_SYS_PTRACE");
		goto err_free;
	}
	if (r) {
		memfault_vm_log(vm, 4, "userfaultfd is not available: %d", r);
		goto err_free;
	}
	u->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (u->stop_fd < 0) {
		r = -errno;
		goto err_close;
	}
	/* reserved, not committed: pages are touched only when used */
	u->bounce = mmap(NULL, (size_t)BOUNCE_SLOTS << memfault_page_shift,
			 PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (u->bounce == MAP_FAILED) {
		r = -ENOMEM;
		goto err_close;
	}
	pthread_rwlock_init(&u->lock, NULL);
	pthread_mutex_init(&u->err_lock, NULL);
	if (flags & MEMFAULT_UFFD_SERVICE_THREAD) {
		r = start_thread(u);
		if (r) {
			pthread_rwlock_destroy(&u->lock);
			pthread_mutex_destroy(&u->err_lock);
			goto err_close;
		}
	}
	/* the VM outlives us, as it outlives its regions and vCPUs */
	memfault_add(&vm->refs, 1, MEMFAULT_RELAXED);
	*ret_uffd = u;
	return 0;

err_close:
	if (u->bounce != MAP_FAILED)
		munmap(u->bounce, (size_t)BOUNCE_SLOTS << memfault_page_shift);
	if (u->stop_fd >= 0)
		close(u->stop_fd);
	close(u->fd);
err_free:
	free(u);
	return r;
}

/* Undo a registration; the caller holds the write lock. */
static void
unregister_reg(struct memfault_uffd *u, struct memfault_uffd_reg *g)
{
	struct uffdio_range r = { .start = g->start, .len = g->len };

	/* Wakes the faults still waiting on the range (userfaultfd_unregister()
	 * in the kernel): they retry without userfaultfd. The range may be
	 * unmapped by now: nothing to do then. A range left registered would
	 * trap with nobody to serve it: a failure is tried again. */
	for (int i = 0; i < WAKE_TRIES; i++)
		if (!ioctl(u->fd, UFFDIO_UNREGISTER, &r))
			break;
	memfault_region_set_trap(g->region, NULL);
	for (size_t i = 0; i < u->nr_regs; i++) {
		if (u->regs[i] != g)
			continue;
		memmove(&u->regs[i], &u->regs[i + 1],
			(u->nr_regs - i - 1) * sizeof(*u->regs));
		u->nr_regs--;
		break;
	}
}

MEMFAULT_EXPORT void
memfault_uffd_free(struct memfault_uffd *u)
{
	if (!u)
		return;
	if (u->have_thread) {
		uint64_t one = 1;
		/* ends the poll() in service_main(); one add to a fresh
		 * eventfd counter cannot fail */
		ssize_t n = write(u->stop_fd, &one, sizeof(one));

		(void)n;
		pthread_join(u->thread, NULL);
	}
	/* Faults already queued get their pages (page_in() as usual). */
	while (service(u, 64) > 0)
		;
	pthread_rwlock_wrlock(&u->lock);
	while (u->nr_regs) {
		struct memfault_uffd_reg *g = u->regs[u->nr_regs - 1];

		unregister_reg(u, g);
		free(g);
	}
	pthread_rwlock_unlock(&u->lock);
	/* userfaultfd_release() wakes whatever faulted after the last
	 * unregister */
	close(u->fd);
	close(u->stop_fd);
	munmap(u->bounce, (size_t)BOUNCE_SLOTS << memfault_page_shift);
	pthread_rwlock_destroy(&u->lock);
	pthread_mutex_destroy(&u->err_lock);
	pthread_mutex_destroy(&u->zap_lock);
	free(u->regs);
	free(u->vcpus);
	memfault_vm_unref(u->vm);
	free(u);
}

/* memfault_region_free() of a registered region: unregister it. */
static void
trap_gone(struct memfault_trap *t)
{
	struct memfault_uffd_reg *g = reg_of(t);
	struct memfault_uffd *u = g->u;

	pthread_rwlock_wrlock(&u->lock);
	unregister_reg(u, g);
	pthread_rwlock_unlock(&u->lock);
	free(g);
}

/* What region.c and dispatch.c call on a registered region. */
static const struct memfault_trap_ops uffd_trap_ops = {
	.page_in = trap_page_in,
	.wake = trap_wake,
	.invalidate = trap_invalidate,
	.gone = trap_gone,
};

MEMFAULT_EXPORT int
memfault_uffd_get_fd(const struct memfault_uffd *u)
{
	return u ? u->fd : -EINVAL;
}

/* Unmap the missing pages of a new registration: a page whose bit is set
 * must fault on every access. */
static int
zap_missing(struct memfault_uffd_reg *g)
{
	const struct memfault_region *region = g->region;
	uint64_t p = 0, q;
	int r;

	while (p < region->npages &&
	       !memfault_region_find_missing(region, p, &p)) {
		if (memfault_region_find_present(region, p, &q))
			q = region->npages;
		/* the range is mapped: UFFDIO_REGISTER checked */
		r = trap_invalidate(&g->trap, p, q - p);
		if (r)
			return r;
		p = q;
	}
	return 0;
}

MEMFAULT_EXPORT int
memfault_uffd_register(struct memfault_uffd *u, struct memfault_region *region,
		       uint32_t mode, void *alias)
{
	const uintptr_t pmask = (uintptr_t)memfault_page_size - 1;
	struct memfault_uffd_reg *g, **v;
	struct uffdio_register ur;
	uintptr_t start, a = (uintptr_t)alias;
	uint64_t need;
	size_t pos = 0;
	int r;

	if (!u || !region || region->vm != u->vm || !region->hva)
		return -EINVAL;
	start = (uintptr_t)region->hva;
	if (mode == MEMFAULT_UFFD_MISSING) {
		if (alias)
			return -EINVAL;
	} else if (mode == MEMFAULT_UFFD_MINOR) {
		if (!alias || (a & pmask) || a + region->size < a ||
		    (a < start + region->size && start < a + region->size))
			return -EINVAL;
		if (!(u->features & UFFD_FEATURE_MINOR_SHMEM))
			return -EOPNOTSUPP;
	} else {
		return -EINVAL;
	}
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->u = u;
	g->region = region;
	g->start = start;
	g->len = region->size;
	g->trap.ops = &uffd_trap_ops;
	g->alias = alias;
	g->mode = mode;

	pthread_rwlock_wrlock(&u->lock);
	r = -EEXIST;
	if (memfault_region_get_trap(region))
		goto err_unlock;
	/* One region per host page: a fault names an address, not a gpa. */
	while (pos < u->nr_regs && u->regs[pos]->start < start)
		pos++;
	if ((pos > 0 && u->regs[pos - 1]->start + u->regs[pos - 1]->len > start) ||
	    (pos < u->nr_regs && start + g->len > u->regs[pos]->start))
		goto err_unlock;
	v = realloc(u->regs, (u->nr_regs + 1) * sizeof(*v));
	r = -ENOMEM;
	if (!v)
		goto err_unlock;
	u->regs = v;

	memset(&ur, 0, sizeof(ur));
	ur.range.start = start;
	ur.range.len = g->len;
	if (mode == MEMFAULT_UFFD_MINOR) {
		ur.mode = UFFDIO_REGISTER_MODE_MINOR;
		/* holes in the memfd trap too, and are served the same way */
		if (u->features & UFFD_FEATURE_MISSING_SHMEM)
			ur.mode |= UFFDIO_REGISTER_MODE_MISSING;
		need = 1ull << _UFFDIO_CONTINUE | 1ull << _UFFDIO_WAKE;
	} else {
		ur.mode = UFFDIO_REGISTER_MODE_MISSING;
		need = 1ull << _UFFDIO_COPY | 1ull << _UFFDIO_ZEROPAGE |
		       1ull << _UFFDIO_WAKE;
	}
	if (ioctl(u->fd, UFFDIO_REGISTER, &ur)) {
		r = -errno;
		goto err_unlock;
	}
	if ((ur.ioctls & need) != need) {
		(void)ioctl(u->fd, UFFDIO_UNREGISTER, &ur.range);
		r = -EOPNOTSUPP;
		goto err_unlock;
	}
	/* Before the region points to us: a failure undoes it all. */
	r = zap_missing(g);
	if (r) {
		(void)ioctl(u->fd, UFFDIO_UNREGISTER, &ur.range);
		goto err_unlock;
	}
	memmove(&u->regs[pos + 1], &u->regs[pos],
		(u->nr_regs - pos) * sizeof(*u->regs));
	u->regs[pos] = g;
	u->nr_regs++;
	memfault_region_set_trap(region, &g->trap);
	pthread_rwlock_unlock(&u->lock);
	return 0;

err_unlock:
	pthread_rwlock_unlock(&u->lock);
	free(g);
	return r;
}

MEMFAULT_EXPORT int
memfault_uffd_add_vcpu(struct memfault_uffd *u, struct memfault_vcpu *vcpu)
{
	struct memfault_vcpu **v;
	int r = 0;

	if (!u || !vcpu || vcpu->vm != u->vm)
		return -EINVAL;
	pthread_rwlock_wrlock(&u->lock);
	for (size_t i = 0; i < u->nr_vcpus; i++)
		if (u->vcpus[i] == vcpu)
			r = -EEXIST;
	if (!r) {
		v = realloc(u->vcpus, (u->nr_vcpus + 1) * sizeof(*v));
		if (v) {
			v[u->nr_vcpus++] = vcpu;
			u->vcpus = v;
		} else {
			r = -ENOMEM;
		}
	}
	pthread_rwlock_unlock(&u->lock);
	return r;
}

MEMFAULT_EXPORT int
memfault_uffd_remove_vcpu(struct memfault_uffd *u, struct memfault_vcpu *vcpu)
{
	int r = -ENOENT;

	if (!u || !vcpu)
		return -EINVAL;
	/* The write lock waits for every batch being served. */
	pthread_rwlock_wrlock(&u->lock);
	for (size_t i = 0; i < u->nr_vcpus; i++) {
		if (u->vcpus[i] != vcpu)
			continue;
		u->vcpus[i] = u->vcpus[--u->nr_vcpus];
		r = 0;
		break;
	}
	pthread_rwlock_unlock(&u->lock);
	return r;
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
