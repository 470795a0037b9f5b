/* SPDX-License-Identifier: MIT */
/*
 * kvmsim: access to user memory that may be unmapped or protected, the way
 * the kernel's copy_from_user()/copy_to_user() and get_user_pages() see it:
 * a bad address is an EFAULT for the caller, never a crash of the process.
 * Guest memory (the memslots' hva ranges), ioctl arguments and the
 * userfault bitmap are all read this way.
 *
 * process_vm_readv()/process_vm_writev() on ourselves do it without a
 * lock. Where they are missing (qemu-user has neither: ENOSYS; a seccomp
 * filter may refuse them: EPERM), a pipe does the same: write() from an
 * unreadable buffer and read() into an unwritable one fail with EFAULT.
 *
 * Also here: which file backs a host virtual address (/proc/self/maps),
 * so that a poisoned guest_memfd page is poisoned through its mmap() too.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include "kvmsim-private.h"

/* 0: not probed yet, 1: process_vm_*v work, -1: use the pipe */
static int pvm_state;
static pthread_mutex_t pipe_lock = PTHREAD_MUTEX_INITIALIZER;
static int pipe_fds[2] = { -1, -1 };
static ino_t pipe_ino;

static bool
pvm_usable(void)
{
	int st = __atomic_load_n(&pvm_state, __ATOMIC_RELAXED);

	if (!st) {
		uint64_t src = 0x6b766d73696dull, dst = 0;
		struct iovec l = { &dst, sizeof(dst) },
			     r = { &src, sizeof(src) };

		st = process_vm_readv(getpid(), &l, 1, &r, 1, 0) ==
					     sizeof(dst) &&
				     dst == src
			     ? 1
			     : -1;
		__atomic_store_n(&pvm_state, st, __ATOMIC_RELAXED);
	}
	return st > 0;
}

bool
kvmsim__emulated(void)
{
	return !pvm_usable();
}

/* The pipe, (re)created if someone closed it (close_range, ...). Locked. */
static int
pipe_get(void)
{
	struct stat st;

	if (pipe_fds[0] >= 0 && !fstat(pipe_fds[0], &st) &&
	    S_ISFIFO(st.st_mode) && st.st_ino == pipe_ino)
		return 0;
	if (pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK))
		return -errno;
	if (fstat(pipe_fds[0], &st)) {
		kvmsim__real_close(pipe_fds[0]);
		kvmsim__real_close(pipe_fds[1]);
		pipe_fds[0] = pipe_fds[1] = -1;
		return -EIO;
	}
	pipe_ino = st.st_ino;
	return 0;
}

/* Empty the pipe after a partial transfer. Locked. */
static void
pipe_drain(void)
{
	char buf[256];

	while (read(pipe_fds[0], buf, sizeof(buf)) > 0)
		;
}

/* Copy @n bytes through the pipe: in from @src, out to @dst. */
static int
pipe_copy(void *dst, const void *src, size_t n)
{
	int r = 0;

	pthread_mutex_lock(&pipe_lock);
	r = pipe_get();
	while (!r && n) {
		size_t chunk = n < 4096 ? n : 4096;

		if (write(pipe_fds[1], src, chunk) != (ssize_t)chunk ||
		    read(pipe_fds[0], dst, chunk) != (ssize_t)chunk) {
			pipe_drain();
			r = -EFAULT;
			break;
		}
		src = (const char *)src + chunk;
		dst = (char *)dst + chunk;
		n -= chunk;
	}
	pthread_mutex_unlock(&pipe_lock);
	return r;
}

int
kvmsim__user_read(void *dst, const void *user_src, size_t n)
{
	struct iovec l = { dst, n }, r = { (void *)(uintptr_t)user_src, n };

	if (!pvm_usable())
		return pipe_copy(dst, user_src, n);
	return process_vm_readv(getpid(), &l, 1, &r, 1, 0) == (ssize_t)n
		       ? 0
		       : -EFAULT;
}

int
kvmsim__user_write(void *user_dst, const void *src, size_t n)
{
	struct iovec l = { (void *)(uintptr_t)src, n }, r = { user_dst, n };

	if (!pvm_usable())
		return pipe_copy(user_dst, src, n);
	return process_vm_writev(getpid(), &l, 1, &r, 1, 0) == (ssize_t)n
		       ? 0
		       : -EFAULT;
}

/*
 * One line of /proc/self/maps: "start-end perms offset major:minor inode
 * path". Fills the result and returns true if it covers @hva.
 */
static bool
maps_line(const char *line, uint64_t hva, dev_t *ret_dev, ino_t *ret_ino,
	  uint64_t *ret_off, bool *ret_file)
{
	unsigned long long start, end, off, ino;
	unsigned maj, min;
	char perms[8];

	if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu", &start, &end, perms,
		   &off, &maj, &min, &ino) != 7)
		return false;
	if (hva < start || hva >= end)
		return false;
	*ret_file = ino != 0;
	*ret_dev = makedev(maj, min);
	*ret_ino = (ino_t)ino;
	*ret_off = off + (hva - start);
	return true;
}

int
kvmsim__hva_file(uint64_t hva, dev_t *ret_dev, ino_t *ret_ino,
		 uint64_t *ret_off)
{
	/* not fopen(): no allocation, no stdio lock, not our own open() */
	int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/maps",
			      O_RDONLY | O_CLOEXEC);
	char buf[4096 + 1];
	size_t have = 0;
	bool found = false, file = false;

	if (fd < 0)
		return -ENOENT;
	while (!found) {
		ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
		char *line = buf, *nl;

		if (n <= 0) {
			/* a last line without a newline */
			buf[have] = '\0';
			if (have)
				found = maps_line(buf, hva, ret_dev, ret_ino,
						  ret_off, &file);
			break;
		}
		have += (size_t)n;
		buf[have] = '\0';
		while (!found && (nl = strchr(line, '\n'))) {
			*nl = '\0';
			found = maps_line(line, hva, ret_dev, ret_ino, ret_off,
					  &file);
			line = nl + 1;
		}
		have -= (size_t)(line - buf);
		if (have == sizeof(buf) - 1)
			have = 0; /* a line longer than the buffer: skip it */
		memmove(buf, line, have);
	}
	kvmsim__real_close(fd);
	return found && file ? 0 : -ENOENT;
}
