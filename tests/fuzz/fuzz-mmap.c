/* SPDX-License-Identifier: MIT */
/*
 * Live-mapping accounting for the fuzz targets that run the library on the
 * simulator: the targets link with -Wl,--wrap=mmap,--wrap=mmap64,
 * --wrap=munmap, so every mmap()/munmap() made by the statically linked
 * library (and the simulator and harness) comes here. An input must end
 * with as many live mappings as it started with.
 */
#include <stddef.h>
#include <sys/mman.h>
#include <sys/types.h>

#include "fuzz-common.h"

void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd,
		  off_t off);
void *__real_mmap64(void *addr, size_t len, int prot, int flags, int fd,
		    off_t off);
int __real_munmap(void *addr, size_t len);
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd,
		  off_t off);
void *__wrap_mmap64(void *addr, size_t len, int prot, int flags, int fd,
		    off_t off);
int __wrap_munmap(void *addr, size_t len);

static long live;

long
fuzz_live_maps(void)
{
	return __atomic_load_n(&live, __ATOMIC_RELAXED);
}

void *
__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	void *p = __real_mmap(addr, len, prot, flags, fd, off);

	if (p != MAP_FAILED && !(flags & MAP_FIXED))
		__atomic_add_fetch(&live, 1, __ATOMIC_RELAXED);
	return p;
}

void *
__wrap_mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	void *p = __real_mmap64(addr, len, prot, flags, fd, off);

	if (p != MAP_FAILED && !(flags & MAP_FIXED))
		__atomic_add_fetch(&live, 1, __ATOMIC_RELAXED);
	return p;
}

int
__wrap_munmap(void *addr, size_t len)
{
	int r = __real_munmap(addr, len);

	if (!r)
		__atomic_sub_fetch(&live, 1, __ATOMIC_RELAXED);
	return r;
}
