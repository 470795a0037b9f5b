/* SPDX-License-Identifier: MIT */
/*
 * kvmsim: the system-call boundary. These definitions take the place of
 * the C library's open(), ioctl() and close() for the whole process, and
 * watch munmap(), mprotect(), madvise() and fallocate() for the MMU
 * notifier events that zap a KVM Userfault slot's mappings: from
 * the test executable that links kvmsim (libmemfault.so's references
 * resolve to it) or from libkvmsim.so under LD_PRELOAD. Only "/dev/kvm" and
 * the fds kvmsim handed out are simulated; everything else goes to the next
 * definition (dlsym(RTLD_NEXT, ...): the C library, or a sanitizer's
 * interceptor), or to the raw system call if there is none.
 */

/*
 * This file defines the symbols themselves: with _FILE_OFFSET_BITS=64 the
 * headers would rename open() to open64(), and with _FORTIFY_SOURCE they
 * would define open() as an inline wrapper.
 */
#undef _FILE_OFFSET_BITS
#undef _FORTIFY_SOURCE
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "kvmsim-private.h"

#define KVM_PATH "/dev/kvm"

/* Exported by default, also from a shared module built hidden. */
#define KVMSIM_EXPORT __attribute__((visibility("default")))

/* The fortified entry points glibc's headers call; no public prototypes. */
KVMSIM_EXPORT int __open_2(const char *path, int flags);
KVMSIM_EXPORT int __open64_2(const char *path, int flags);
KVMSIM_EXPORT int __openat_2(int dirfd, const char *path, int flags);
KVMSIM_EXPORT int __openat64_2(int dirfd, const char *path, int flags);

/* The next definition of @name, looked up once (racing lookups agree). */
static void *
next_sym(void **cache, const char *name)
{
	void *p = __atomic_load_n(cache, __ATOMIC_ACQUIRE);

	if (!p) {
		p = dlsym(RTLD_NEXT, name);
		if (p)
			__atomic_store_n(cache, p, __ATOMIC_RELEASE);
	}
	return p;
}

#define NEXT(name, type)                                                       \
	({                                                                     \
		static void *cache_;                                           \
		(type) next_sym(&cache_, name);                                \
	})

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);
typedef int (*open2_fn)(const char *, int);
typedef int (*openat2_fn)(int, const char *, int);
typedef int (*ioctl_fn)(int, unsigned long, ...);
typedef int (*close_fn)(int);
typedef int (*munmap_fn)(void *, size_t);
typedef int (*mprotect_fn)(void *, size_t, int);
typedef int (*madvise_fn)(void *, size_t, int);
typedef int (*fallocate_fn)(int, int, off_t, off_t);

static bool
needs_mode(int flags)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;
}

static bool
is_kvm(const char *path)
{
	return path && !strcmp(path, KVM_PATH);
}

static int
sim_open(int flags)
{
	int r = kvmsim__open_kvm(flags);

	if (r < 0) {
		errno = -r;
		return -1;
	}
	return r;
}

static int
sys_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	return (int)syscall(SYS_openat, dirfd, path, flags, mode);
}

/* ---- open ---- */

#define OPEN_BODY(sym)                                                         \
	mode_t mode = 0;                                                       \
	open_fn next;                                                          \
                                                                               \
	if (needs_mode(flags)) {                                               \
		va_list ap;                                                    \
		va_start(ap, flags);                                           \
		mode = va_arg(ap, mode_t);                                     \
		va_end(ap);                                                    \
	}                                                                      \
	if (is_kvm(path))                                                      \
		return sim_open(flags);                                        \
	next = NEXT(sym, open_fn);                                             \
	return next ? next(path, flags, mode)                                  \
		    : sys_openat(AT_FDCWD, path, flags, mode)

KVMSIM_EXPORT int
open(const char *path, int flags, ...)
{
	OPEN_BODY("open");
}

KVMSIM_EXPORT int
open64(const char *path, int flags, ...)
{
	OPEN_BODY("open64");
}

#define OPENAT_BODY(sym)                                                       \
	mode_t mode = 0;                                                       \
	openat_fn next;                                                        \
                                                                               \
	if (needs_mode(flags)) {                                               \
		va_list ap;                                                    \
		va_start(ap, flags);                                           \
		mode = va_arg(ap, mode_t);                                     \
		va_end(ap);                                                    \
	}                                                                      \
	if (is_kvm(path)) /* absolute: dirfd does not matter */                \
		return sim_open(flags);                                        \
	next = NEXT(sym, openat_fn);                                           \
	return next ? next(dirfd, path, flags, mode)                           \
		    : sys_openat(dirfd, path, flags, mode)

KVMSIM_EXPORT int
openat(int dirfd, const char *path, int flags, ...)
{
	OPENAT_BODY("openat");
}

KVMSIM_EXPORT int
openat64(int dirfd, const char *path, int flags, ...)
{
	OPENAT_BODY("openat64");
}

#define OPEN2_BODY(sym)                                                        \
	open2_fn next;                                                         \
                                                                               \
	if (is_kvm(path))                                                      \
		return sim_open(flags);                                        \
	next = NEXT(sym, open2_fn);                                            \
	return next ? next(path, flags) : sys_openat(AT_FDCWD, path, flags, 0)

KVMSIM_EXPORT int
__open_2(const char *path, int flags)
{
	OPEN2_BODY("__open_2");
}

KVMSIM_EXPORT int
__open64_2(const char *path, int flags)
{
	OPEN2_BODY("__open64_2");
}

#define OPENAT2_BODY(sym)                                                      \
	openat2_fn next;                                                       \
                                                                               \
	if (is_kvm(path))                                                      \
		return sim_open(flags);                                        \
	next = NEXT(sym, openat2_fn);                                          \
	return next ? next(dirfd, path, flags)                                 \
		    : sys_openat(dirfd, path, flags, 0)

KVMSIM_EXPORT int
__openat_2(int dirfd, const char *path, int flags)
{
	OPENAT2_BODY("__openat_2");
}

KVMSIM_EXPORT int
__openat64_2(int dirfd, const char *path, int flags)
{
	OPENAT2_BODY("__openat64_2");
}

/* ---- ioctl, close ---- */

KVMSIM_EXPORT int
ioctl(int fd, unsigned long request, ...)
{
	bool handled = false;
	ioctl_fn next;
	va_list ap;
	void *arg;
	int r;

	/* glibc reads the argument the same way, whatever the caller passed */
	va_start(ap, request);
	arg = va_arg(ap, void *);
	va_end(ap);

	r = kvmsim__ioctl(fd, request, arg, &handled);
	if (handled)
		return r;
	next = NEXT("ioctl", ioctl_fn);
	if (next)
		r = next(fd, request, arg);
	else
		r = (int)syscall(SYS_ioctl, fd, request, arg);
	/*
	 * qemu-user answers a request it has no table entry for (KVM's) with
	 * ENOSYS before looking at the fd; a kernel says EBADF for a closed
	 * fd, as for any other.
	 */
	if (r < 0 && errno == ENOSYS && fcntl(fd, F_GETFD) < 0 &&
	    errno == EBADF)
		errno = EBADF;
	return r;
}

KVMSIM_EXPORT int
close(int fd)
{
	bool handled = false;
	close_fn next;
	int r;

	r = kvmsim__close(fd, &handled);
	if (handled)
		return r;
	next = NEXT("close", close_fn);
	if (next)
		return next(fd);
	return (int)syscall(SYS_close, fd);
}

/* ---- MMU notifier events ---- */

#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif

/*
 * Around the real call, as mmu_notifier_invalidate_range_start()/_end()
 * bracket it: a mapping made while the call runs is dropped again at the
 * end (in the kernel, mmu_invalidate_retry() makes such a fault retry).
 */
#define AROUND(addr, len, call)                                                \
	({                                                                     \
		int r_, e_;                                                    \
		kvmsim__invalidate_hva((uint64_t)(uintptr_t)(addr), (len));    \
		r_ = (call);                                                   \
		e_ = errno;                                                    \
		if (!r_ || e_ == ENOMEM)                                       \
			kvmsim__invalidate_hva((uint64_t)(uintptr_t)(addr),    \
					       (len));                         \
		errno = e_;                                                    \
		r_;                                                            \
	})

KVMSIM_EXPORT int
munmap(void *addr, size_t len)
{
	munmap_fn next = NEXT("munmap", munmap_fn);

	return AROUND(addr, len,
		      next ? next(addr, len)
			   : (int)syscall(SYS_munmap, addr, len));
}

/* change_protection() invalidates the range whatever the new protection. */
KVMSIM_EXPORT int
mprotect(void *addr, size_t len, int prot)
{
	mprotect_fn next = NEXT("mprotect", mprotect_fn);

	return AROUND(addr, len,
		      next ? next(addr, len, prot)
			   : (int)syscall(SYS_mprotect, addr, len, prot));
}

/* Advice that unmaps pages: zap_page_range_single(), madvise_free_pte_range()
 * and shmem_fallocate() under MADV_REMOVE each notify. */
KVMSIM_EXPORT int
madvise(void *addr, size_t len, int advice)
{
	madvise_fn next = NEXT("madvise", madvise_fn);

	if (advice != MADV_DONTNEED && advice != MADV_DONTNEED_LOCKED &&
	    advice != MADV_REMOVE && advice != MADV_FREE)
		return next ? next(addr, len, advice)
			    : (int)syscall(SYS_madvise, addr, len, advice);
	return AROUND(addr, len,
		      next ? next(addr, len, advice)
			   : (int)syscall(SYS_madvise, addr, len, advice));
}

/*
 * A guest_memfd is a memfd here, so the real call does the work; first
 * the checks of kvm_gmem_fallocate(), then kvm_gmem_punch_hole()'s
 * invalidation of the slots bound to the range.
 */
static int
do_fallocate(const char *sym, int fd, int mode, off_t off, off_t len)
{
	fallocate_fn next = NEXT(sym, fallocate_fn);
	long ps = (long)kvmsim__page_size();

	if (kvmsim_fd_kind(fd) == KVMSIM_FD_GMEM) {
		if (!(mode & FALLOC_FL_KEEP_SIZE) ||
		    (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE))) {
			errno = EOPNOTSUPP;
			return -1;
		}
		if (off < 0 || len <= 0 || off % ps || len % ps) {
			errno = EINVAL;
			return -1;
		}
		if (mode & FALLOC_FL_PUNCH_HOLE)
			kvmsim__invalidate_gmem(fd, (uint64_t)off,
						(uint64_t)len);
	}
	return next ? next(fd, mode, off, len)
		    : (int)syscall(SYS_fallocate, fd, mode, off, len);
}

KVMSIM_EXPORT int
fallocate(int fd, int mode, off_t off, off_t len)
{
	return do_fallocate("fallocate", fd, mode, off, len);
}

KVMSIM_EXPORT int
fallocate64(int fd, int mode, off_t off, off_t len)
{
	return do_fallocate("fallocate64", fd, mode, off, len);
}
