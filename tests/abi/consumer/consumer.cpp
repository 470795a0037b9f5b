/* SPDX-License-Identifier: MIT */
/*
 * The C++ twin of consumer.c: a C++ program built against the installed
 * library with pkg-config alone.
 */
#include <cerrno>
#include <cstdio>

#include <memfault/memfault-version.h>
#include <memfault/memfault.h>

int
main()
{
	int major = memfault_version_major();
	int minor = memfault_version_minor();

	std::printf("consumer (C++): headers %d.%d.%d, library %d.%d\n",
		    MEMFAULT_VERSION_MAJOR, MEMFAULT_VERSION_MINOR,
		    MEMFAULT_VERSION_MICRO, major, minor);
	if (major != MEMFAULT_VERSION_MAJOR || minor != MEMFAULT_VERSION_MINOR)
		return 1;
	if (memfault_vm_get_fd(nullptr) != -EINVAL)
		return 1;
	return 0;
}
