/* SPDX-License-Identifier: MIT */
/* Calls made from a shared library, for test-kvmsim (kvmsim-probe.c). */
#ifndef KVMSIM_PROBE_H
#define KVMSIM_PROBE_H

int kvmsim_probe_open(const char *path);
int kvmsim_probe_ioctl(int fd, unsigned long request, unsigned long arg);
int kvmsim_probe_close(int fd);

#endif
