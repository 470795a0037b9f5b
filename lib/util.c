/* SPDX-License-Identifier: MIT */
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "memfault-private.h"
#include "memfault/memfault-version.h"

uint64_t memfault_page_size = 4096;
unsigned int memfault_page_shift = 12;

/* sysconf() is not async-signal-safe, and memfault_exit_classify() promises
 * to be: read the page size once, when the library is loaded. */
__attribute__((constructor)) static void
memfault_init_page_size(void)
{
	long ps = sysconf(_SC_PAGESIZE);

	if (ps > 0 && !(ps & (ps - 1))) {
		memfault_page_size = (uint64_t)ps;
		memfault_page_shift = (unsigned int)__builtin_ctzl((unsigned long)ps);
	}
}

bool
memfault_opts_valid(const void *opts, size_t known_size)
{
	const unsigned char *p = opts;
	size_t sz = *(const size_t *)opts;

	if (sz < sizeof(size_t))
		return false;
	/* A newer caller may pass a longer struct: accept it only if every
	 * field we do not know is zero, so no option is silently dropped. */
	for (size_t i = known_size; i < sz; i++)
		if (p[i])
			return false;
	return true;
}

void
memfault_copy_out(void *dst, size_t dst_size, const void *src, size_t src_size)
{
	memcpy(dst, src, dst_size < src_size ? dst_size : src_size);
}

MEMFAULT_EXPORT int
memfault_version_major(void)
{
	return MEMFAULT_VERSION_MAJOR;
}

MEMFAULT_EXPORT int
memfault_version_minor(void)
{
	return MEMFAULT_VERSION_MINOR;
}

uint64_t
memfault_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void
memfault_ptr_array_remove(void *arr, size_t *n, const void *elem)
{
	/* The arrays hold pointers to structs, all of one size and
	 * representation: they are walked as void pointers. */
	void **v = arr;

	for (size_t i = 0; i < *n; i++) {
		if (v[i] != elem)
			continue;
		memmove(&v[i], &v[i + 1], (*n - i - 1) * sizeof(*v));
		(*n)--;
		return;
	}
}
