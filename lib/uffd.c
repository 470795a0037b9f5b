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
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>


#include "barrier.h"
#include "memfault-private.h"
#include "uffd-private.h"

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
	r = pthread_create(&u->thread, NULL, uffd_service_main, u);
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
	memfault_ptr_array_remove(u->regs, &u->nr_regs, g);
}

MEMFAULT_EXPORT void
memfault_uffd_free(struct memfault_uffd *u)
{
	if (!u)
		return;
	if (u->have_thread) {
		uint64_t one = 1;
		/* ends the poll() in uffd_service_main(); one add to a fresh
		 * eventfd counter cannot fail */
		ssize_t n = write(u->stop_fd, &one, sizeof(one));

		(void)n;
		pthread_join(u->thread, NULL);
	}
	/* Faults already queued get their pages (page_in() as usual). */
	while (uffd_serve(u, 64) > 0)
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
	struct memfault_uffd_reg *g = uffd_reg_of(t);
	struct memfault_uffd *u = g->u;

	pthread_rwlock_wrlock(&u->lock);
	unregister_reg(u, g);
	pthread_rwlock_unlock(&u->lock);
	free(g);
}

/* What region.c and dispatch.c call on a registered region. */
static const struct memfault_trap_ops uffd_trap_ops = {
	.page_in = uffd_trap_page_in,
	.wake = uffd_trap_wake,
	.invalidate = uffd_trap_invalidate,
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
		r = uffd_trap_invalidate(&g->trap, p, q - p);
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

