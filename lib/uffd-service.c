/* SPDX-License-Identifier: MIT */
/* userfaultfd trap source: reading and serving the fault messages. */
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>


#include "barrier.h"
#include "memfault-private.h"
#include "region-private.h"
#include "uffd-private.h"

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
	uintptr_t addr = uffd_page_addr(g, page);
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
 * uffd_trap_invalidate() holds: either that zap comes after us and unmaps
 * what we install, or its bit, set before its zap, is visible here (the
 * mutex's unlock/lock orders them).
 */
static bool
install_present(struct memfault_uffd *u, struct memfault_uffd_reg *g,
		uint64_t page)
{
	uintptr_t addr = uffd_page_addr(g, page);
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
		r = region_claim_try(g->region, page);
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
		r = uffd_fill_and_install(g, vcpu, page);
		if (r == MEMFAULT_RESOLVED) {
			/* Installed first: the bit clears on a mapped page. */
			region_publish_page(g->region, page);
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
		 * its publish or abort does (uffd_trap_wake()) */
		memfault_add(&u->waits, 1, MEMFAULT_RELAXED);
	}
out:
	ns = memfault_now_ns() - t0;
	if (vcpu) {
		/* not the vCPU thread's own counters: whichever thread
		 * serves the userfaultfd adds, so atomic adds */
		memfault_add(&vcpu->stats.uffd_faults, 1, MEMFAULT_RELAXED);
		memfault_add(&vcpu->stats.uffd_wait_ns, ns, MEMFAULT_RELAXED);
	}
	/* last: the histogram's sum reaching faults means all is counted */
	uffd_record_latency(u, ns);
}

int
uffd_serve(struct memfault_uffd *u, uint32_t max)
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
		t0 = memfault_now_ns();
		pthread_rwlock_rdlock(&u->lock);
		for (ssize_t i = 0; i < n; i++)
			handle_msg(u, &msgs[i], t0);
		pthread_rwlock_unlock(&u->lock);
		done += (uint32_t)n;
		/* A short read drained the queue: userfaultfd_read() hands
		 * out messages until none is pending. Another read() would
		 * only say EAGAIN: one more system call per wake-up, which a
		 * single faulting thread waits for on every fault. What
		 * arrives later makes the fd readable again, and poll() (the
		 * service thread's, or the VMM's) says so. */
		if ((size_t)n < want)
			break;
	}
	return (int)done;
}

MEMFAULT_EXPORT int
memfault_uffd_service(struct memfault_uffd *u, uint32_t max_events)
{
	if (!u || !max_events)
		return -EINVAL;
	return uffd_serve(u, max_events);
}

void *
uffd_service_main(void *arg)
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
			(void)uffd_serve(u, 64);
		else if (p[0].revents & (POLLERR | POLLHUP | POLLNVAL)) {
			/* would spin: not seen on an initialized userfaultfd */
			memfault_vm_log(u->vm, 3,
					"userfaultfd service thread: poll revents %#x",
					(unsigned int)p[0].revents);
			return NULL;
		}
	}
}

