/* SPDX-License-Identifier: MIT */
/*
 * A program outside the project: built against the *installed* library with
 * `pkg-config --cflags --libs libmemfault` and nothing else, it checks that
 * the headers and the loaded library agree on the version.
 */
#include <errno.h>
#include <stdio.h>

#include <memfault/memfault-version.h>
#include <memfault/memfault.h>

int
main(void)
{
	MEMFAULT_OPTS(memfault_vm_opts, opts, .flags = MEMFAULT_VM_OWN_FD);
	int major = memfault_version_major();
	int minor = memfault_version_minor();

	printf("consumer (C): headers %d.%d.%d, library %d.%d\n",
	       MEMFAULT_VERSION_MAJOR, MEMFAULT_VERSION_MINOR,
	       MEMFAULT_VERSION_MICRO, major, minor);
	if (major != MEMFAULT_VERSION_MAJOR || minor != MEMFAULT_VERSION_MINOR)
		return 1;
	if (opts.sz != sizeof(opts) ||
	    memfault_vm_new(-1, &opts, NULL) != -EINVAL)
		return 1;
	/* a MEMFAULT_0.2 symbol: the installed library has the new node */
	if (memfault_exit_prepare(NULL, MEMFAULT_ARCH_HOST) != -EINVAL)
		return 1;
	return 0;
}
