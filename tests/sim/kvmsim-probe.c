/* SPDX-License-Identifier: MIT */
/*
 * A shared library standing in for libmemfault.so in test-kvmsim: it calls
 * open(), ioctl() and close() from another DSO, as the library does, so the
 * self-test proves that a test executable linking kvmsim_dep interposes
 * them for the shared libraries it loads.
 */
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "kvmsim-probe.h"

int
kvmsim_probe_open(const char *path)
{
	return open(path, O_RDWR | O_CLOEXEC);
}

int
kvmsim_probe_ioctl(int fd, unsigned long request, unsigned long arg)
{
	return ioctl(fd, request, arg);
}

int
kvmsim_probe_close(int fd)
{
	return close(fd);
}
