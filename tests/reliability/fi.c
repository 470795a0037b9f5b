/* SPDX-License-Identifier: MIT */
/*
 * Fault injection: see fi.h. The definitions below interpose for
 * libmemfault.so every allocation and system-call wrapper it imports
 * (nm -D --undefined-only libmemfault.so) that can fail:
 *   FI_ALLOC   malloc calloc realloc
 *   FI_MMAP    mmap mmap64
 *   FI_IOCTL   ioctl
 *   FI_SYSCALL open open64 openat close eventfd fcntl fcntl64 fallocate
 *              fallocate64 fstat fstat64 madvise poll
 *              read write sigaction syscall pthread_create
 *              pthread_mutex_init pthread_rwlock_init pthread_sigmask
 *              pthread_setname_np sysconf
 * and track (never fail) free and munmap. A call reached by a tail call
 * (jmp to the PLT, still interposed) has the return address the
 * tail-calling function was called with: inside the library unless that
 * function was called from outside. In libmemfault.so only free() and
 * memcpy() are tail-called from public functions (objdump -d: jmp
 * ...@plt): free() is tracked by pointer, memcpy() cannot fail. madvise()
 * is tail-called from uffd_zap() (uffd-install.c), whose callers are in the
 * library: counted and failed like any call (the userfaultfd cases of
 * test-faultinject.c reach it through mark_missing and register on mapped
 * pages). Not failed, as they cannot fail
 * with the arguments the library passes: clock_gettime(CLOCK_MONOTONIC),
 * getpid, sched_yield, pthread_join, the lock/unlock calls, sig*set.
 * A failed close() still closes the fd (Linux always does).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#undef _FORTIFY_SOURCE
#undef _FILE_OFFSET_BITS

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fi.h"

#define EXPORT __attribute__((visibility("default")))

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

/* ---- who is calling ---- */

static uintptr_t lib_lo, lib_hi;
/* FI_TRACE=1: each counted call on stderr, numbered as fi_arm() counts */
static bool trace;

static int
find_lib(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	(void)data;
	if (!info->dlpi_name || !strstr(info->dlpi_name, "libmemfault.so"))
		return 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t a = info->dlpi_addr + ph->p_vaddr;

		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
			continue;
		if (!lib_lo || a < lib_lo)
			lib_lo = a;
		if (a + ph->p_memsz > lib_hi)
			lib_hi = a + ph->p_memsz;
	}
	return 1;
}

__attribute__((constructor)) static void
fi_init(void)
{
	const char *t = getenv("FI_TRACE");

	dl_iterate_phdr(find_lib, NULL);
	trace = t && *t == '1';
}

bool
fi_ready(void)
{
	return lib_lo != 0;
}

#define FROM_LIB()                                                             \
	((uintptr_t)__builtin_return_address(0) - lib_lo < lib_hi - lib_lo)

/* ---- the knob ---- */

static unsigned arm_n, arm_classes, counted;
static int arm_err;
static const char *failed_call;
static bool armed;
static pthread_mutex_t knob = PTHREAD_MUTEX_INITIALIZER;

void
fi_arm(unsigned n, int err, unsigned classes)
{
	pthread_mutex_lock(&knob);
	arm_n = n;
	arm_err = err;
	arm_classes = classes;
	counted = 0;
	failed_call = NULL;
	armed = true;
	pthread_mutex_unlock(&knob);
}

unsigned
fi_disarm(void)
{
	unsigned c;

	pthread_mutex_lock(&knob);
	armed = false;
	c = counted;
	pthread_mutex_unlock(&knob);
	return c;
}

const char *
fi_failed_call(void)
{
	return failed_call;
}

/* Count one call of @cls; true if it is the one to fail. */
static bool
should_fail(unsigned cls, const char *name)
{
	bool fail = false;

	pthread_mutex_lock(&knob);
	if (armed && (arm_classes & cls)) {
		counted++;
		if (trace)
			fprintf(stderr, "fi: call %u: %s\n", counted, name);
		if (counted == arm_n) {
			fail = true;
			failed_call = name;
		}
	}
	pthread_mutex_unlock(&knob);
	return fail;
}

/* ---- tracking: small open-addressing sets, no allocation ---- */

#define SET_SIZE 8192
struct ptrset {
	uintptr_t key[SET_SIZE];
	long n;
};
static struct ptrset allocs, maps;
static int set_lock;

static void
lock_sets(void)
{
	while (__atomic_exchange_n(&set_lock, 1, __ATOMIC_ACQUIRE))
		;
}

static void
unlock_sets(void)
{
	__atomic_store_n(&set_lock, 0, __ATOMIC_RELEASE);
}

static void
set_add(struct ptrset *s, const void *p)
{
	size_t h = ((uintptr_t)p >> 4) % SET_SIZE;

	lock_sets();
	while (s->key[h] && s->key[h] != 1)
		h = (h + 1) % SET_SIZE;
	s->key[h] = (uintptr_t)p;
	s->n++;
	unlock_sets();
}

/* true if @p was in the set */
static bool
set_del(struct ptrset *s, const void *p)
{
	size_t h = ((uintptr_t)p >> 4) % SET_SIZE;
	bool found = false;

	lock_sets();
	for (size_t i = 0; i < SET_SIZE && s->key[h]; i++) {
		if (s->key[h] == (uintptr_t)p) {
			s->key[h] = 1; /* tombstone */
			s->n--;
			found = true;
			break;
		}
		h = (h + 1) % SET_SIZE;
	}
	unlock_sets();
	return found;
}

void
fi_resources(struct fi_res *r)
{
	long fds = 0;

	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			fds++;
	lock_sets();
	r->allocs = allocs.n;
	r->maps = maps.n;
	unlock_sets();
	r->fds = fds;
}

/* ---- allocation ---- */

/* The body of malloc() and calloc(): for the library, fail when armed,
 * else allocate with @call and track the block. Expanded in each wrapper,
 * as FROM_LIB() reads the wrapper's own return address. */
#define ALLOC_BODY(name, call)                                                 \
	do {                                                                   \
		void *p_;                                                      \
                                                                               \
		if (!FROM_LIB())                                               \
			return call;                                           \
		if (should_fail(FI_ALLOC, name)) {                             \
			errno = ENOMEM;                                        \
			return NULL;                                           \
		}                                                              \
		p_ = call;                                                     \
		if (p_)                                                        \
			set_add(&allocs, p_);                                  \
		return p_;                                                     \
	} while (0)

EXPORT void *
malloc(size_t n)
{
	ALLOC_BODY("malloc", __libc_malloc(n));
}

EXPORT void *
calloc(size_t a, size_t b)
{
	ALLOC_BODY("calloc", __libc_calloc(a, b));
}

EXPORT void *
realloc(void *old, size_t n)
{
	void *p;

	if (FROM_LIB()) {
		if (should_fail(FI_ALLOC, "realloc")) {
			errno = ENOMEM;
			return NULL;
		}
		p = __libc_realloc(old, n);
		if (p || !n) {
			if (old)
				set_del(&allocs, old);
			if (p)
				set_add(&allocs, p);
		}
		return p;
	}
	p = __libc_realloc(old, n);
	if (old && (p || !n))
		set_del(&allocs, old);
	return p;
}

/*
 * Untracked by caller, by pointer: the library may reach free() and
 * munmap() with a tail call, whose return address is its caller's.
 */
EXPORT void
free(void *p)
{
	if (p)
		set_del(&allocs, p);
	__libc_free(p);
}

/* ---- forwarding to the next definition ---- */

#define NEXT(name, type)                                                       \
	({                                                                     \
		static void *cache_;                                           \
		void *p_ = __atomic_load_n(&cache_, __ATOMIC_ACQUIRE);         \
		if (!p_) {                                                     \
			p_ = dlsym(RTLD_NEXT, name);                           \
			__atomic_store_n(&cache_, p_, __ATOMIC_RELEASE);       \
		}                                                              \
		(type) p_;                                                     \
	})

#define FAIL_RET(cls, name, ret)                                               \
	do {                                                                   \
		if (FROM_LIB() && should_fail(cls, name)) {                    \
			errno = arm_err;                                       \
			return ret;                                            \
		}                                                              \
	} while (0)

typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);

static void *
do_mmap(const char *name, bool lib, void *a, size_t n, int prot, int flags,
	int fd, off_t off)
{
	void *p;

	if (lib && should_fail(FI_MMAP, name)) {
		errno = ENOMEM;
		return MAP_FAILED;
	}
	p = NEXT("mmap64", mmap_fn)(a, n, prot, flags, fd, off);
	if (lib && p != MAP_FAILED)
		set_add(&maps, p);
	return p;
}

EXPORT void *
mmap(void *a, size_t n, int prot, int flags, int fd, off_t off)
{
	return do_mmap("mmap", FROM_LIB(), a, n, prot, flags, fd, off);
}

EXPORT void *
mmap64(void *a, size_t n, int prot, int flags, int fd, off_t off)
{
	return do_mmap("mmap64", FROM_LIB(), a, n, prot, flags, fd, off);
}

EXPORT int
munmap(void *a, size_t n)
{
	int r = NEXT("munmap", int (*)(void *, size_t))(a, n);

	if (!r)
		set_del(&maps, a);
	return r;
}

/* ---- ioctl, open, close: on to the simulator ---- */

EXPORT int
ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	FAIL_RET(FI_IOCTL, "ioctl", -1);
	return NEXT("ioctl", int (*)(int, unsigned long, ...))(fd, req, arg);
}

#define OPEN_MODE(flags)                                                       \
	mode_t mode = 0;                                                       \
	if ((flags) & (O_CREAT | __O_TMPFILE)) {                               \
		va_list ap;                                                    \
		va_start(ap, flags);                                           \
		mode = va_arg(ap, mode_t);                                     \
		va_end(ap);                                                    \
	}

EXPORT int
open(const char *path, int flags, ...)
{
	OPEN_MODE(flags);
	FAIL_RET(FI_SYSCALL, "open", -1);
	return NEXT("open", int (*)(const char *, int, ...))(path, flags, mode);
}

EXPORT int
open64(const char *path, int flags, ...)
{
	OPEN_MODE(flags);
	FAIL_RET(FI_SYSCALL, "open64", -1);
	return NEXT("open64", int (*)(const char *, int, ...))(path, flags,
								mode);
}

EXPORT int
openat(int dirfd, const char *path, int flags, ...)
{
	OPEN_MODE(flags);
	FAIL_RET(FI_SYSCALL, "openat", -1);
	return NEXT("openat", int (*)(int, const char *, int, ...))(
		dirfd, path, flags, mode);
}

EXPORT int
close(int fd)
{
	int r = NEXT("close", int (*)(int))(fd);

	/* Linux releases the fd whatever close() returns */
	FAIL_RET(FI_SYSCALL, "close", -1);
	return r;
}

/* ---- the other system-call wrappers ---- */

EXPORT int
eventfd(unsigned int v, int flags)
{
	FAIL_RET(FI_SYSCALL, "eventfd", -1);
	return NEXT("eventfd", int (*)(unsigned int, int))(v, flags);
}

/* fcntl64() and fcntl(): one body, expanded in each (FROM_LIB() reads the
 * return address of the wrapper itself, which a shared function would
 * hide). */
#define FCNTL_BODY(fd, cmd)                                                    \
	do {                                                                   \
		va_list ap;                                                    \
		long arg;                                                      \
                                                                               \
		va_start(ap, cmd);                                             \
		arg = va_arg(ap, long);                                        \
		va_end(ap);                                                    \
		FAIL_RET(FI_SYSCALL, "fcntl", -1);                             \
		return NEXT("fcntl64", int (*)(int, int, ...))(fd, cmd, arg);  \
	} while (0)

EXPORT int
fcntl64(int fd, int cmd, ...)
{
	FCNTL_BODY(fd, cmd);
}

EXPORT int
fcntl(int fd, int cmd, ...)
{
	FCNTL_BODY(fd, cmd);
}

EXPORT int
madvise(void *a, size_t n, int advice)
{
	FAIL_RET(FI_SYSCALL, "madvise", -1);
	return NEXT("madvise", int (*)(void *, size_t, int))(a, n, advice);
}

EXPORT int
fallocate(int fd, int mode, off_t off, off_t len)
{
	FAIL_RET(FI_SYSCALL, "fallocate", -1);
	return NEXT("fallocate64", int (*)(int, int, off64_t, off64_t))(
		fd, mode, off, len);
}

EXPORT int
fallocate64(int fd, int mode, off64_t off, off64_t len)
{
	FAIL_RET(FI_SYSCALL, "fallocate", -1);
	return NEXT("fallocate64", int (*)(int, int, off64_t, off64_t))(
		fd, mode, off, len);
}

EXPORT int
fstat(int fd, struct stat *st)
{
	FAIL_RET(FI_SYSCALL, "fstat", -1);
	return NEXT("fstat", int (*)(int, struct stat *))(fd, st);
}

EXPORT int
fstat64(int fd, struct stat64 *st)
{
	FAIL_RET(FI_SYSCALL, "fstat", -1);
	return NEXT("fstat64", int (*)(int, struct stat64 *))(fd, st);
}

EXPORT int
poll(struct pollfd *fds, nfds_t n, int timeout)
{
	FAIL_RET(FI_SYSCALL, "poll", -1);
	return NEXT("poll", int (*)(struct pollfd *, nfds_t, int))(fds, n,
								    timeout);
}

EXPORT ssize_t
read(int fd, void *buf, size_t n)
{
	FAIL_RET(FI_SYSCALL, "read", -1);
	return NEXT("read", ssize_t (*)(int, void *, size_t))(fd, buf, n);
}

EXPORT ssize_t
write(int fd, const void *buf, size_t n)
{
	FAIL_RET(FI_SYSCALL, "write", -1);
	return NEXT("write", ssize_t (*)(int, const void *, size_t))(fd, buf,
								      n);
}

EXPORT int
sigaction(int sig, const struct sigaction *sa, struct sigaction *old)
{
	FAIL_RET(FI_SYSCALL, "sigaction", -1);
	return NEXT("sigaction", int (*)(int, const struct sigaction *,
					  struct sigaction *))(sig, sa, old);
}

EXPORT long
syscall(long nr, ...)
{
	va_list ap;
	long a[6];

	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	FAIL_RET(FI_SYSCALL, "syscall", -1);
	return NEXT("syscall", long (*)(long, ...))(nr, a[0], a[1], a[2], a[3],
						     a[4], a[5]);
}

EXPORT long
sysconf(int name)
{
	FAIL_RET(FI_SYSCALL, "sysconf", -1);
	return NEXT("sysconf", long (*)(int))(name);
}

/* pthread calls return the error number instead of setting errno */
#define FAIL_PTHREAD(name)                                                     \
	do {                                                                   \
		if (FROM_LIB() && should_fail(FI_SYSCALL, name))               \
			return arm_err;                                        \
	} while (0)

EXPORT int
pthread_create(pthread_t *t, const pthread_attr_t *attr,
	       void *(*fn)(void *), void *arg)
{
	FAIL_PTHREAD("pthread_create");
	return NEXT("pthread_create",
		    int (*)(pthread_t *, const pthread_attr_t *,
			    void *(*)(void *), void *))(t, attr, fn, arg);
}

EXPORT int
pthread_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *attr)
{
	FAIL_PTHREAD("pthread_mutex_init");
	return NEXT("pthread_mutex_init",
		    int (*)(pthread_mutex_t *, const pthread_mutexattr_t *))(m,
									      attr);
}

EXPORT int
pthread_rwlock_init(pthread_rwlock_t *l, const pthread_rwlockattr_t *attr)
{
	FAIL_PTHREAD("pthread_rwlock_init");
	return NEXT("pthread_rwlock_init",
		    int (*)(pthread_rwlock_t *, const pthread_rwlockattr_t *))(
		l, attr);
}

EXPORT int
pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
	FAIL_PTHREAD("pthread_sigmask");
	return NEXT("pthread_sigmask",
		    int (*)(int, const sigset_t *, sigset_t *))(how, set, old);
}

EXPORT int
pthread_setname_np(pthread_t t, const char *name)
{
	FAIL_PTHREAD("pthread_setname_np");
	return NEXT("pthread_setname_np", int (*)(pthread_t, const char *))(
		t, name);
}

/* ---- the simulator's controls ---- */

const struct fi_kvmsim *
fi_kvmsim(void)
{
	static struct fi_kvmsim k;

	if (!k.reset) {
		k.default_quirks = (uint64_t (*)(uint32_t, uint32_t))dlsym(
			RTLD_DEFAULT, "kvmsim_default_quirks");
		k.vcpu_set_script_text = (int (*)(int, const char *))dlsym(
			RTLD_DEFAULT, "kvmsim_vcpu_set_script_text");
		k.poison = (int (*)(int, uint64_t))dlsym(RTLD_DEFAULT,
							 "kvmsim_poison");
		k.inject_gmem_error = (int (*)(int, uint64_t, int, unsigned))
			dlsym(RTLD_DEFAULT, "kvmsim_inject_gmem_error");
		k.reset = (int (*)(const struct kvmsim_config *))dlsym(
			RTLD_DEFAULT, "kvmsim_reset");
	}
	return k.reset && k.default_quirks && k.vcpu_set_script_text ? &k :
								       NULL;
}
