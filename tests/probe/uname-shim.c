// SPDX-License-Identifier: MIT
/*
 * LD_PRELOAD shim for check-probe-strings.py: uname() reports a kernel
 * release holding bytes that are not UTF-8 (a lone continuation byte, a
 * truncated sequence, 0xff), a well-formed two-byte character, a quote and
 * a control character, as a custom kernel version string could. Everything
 * else is the real uname().
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_NEXT (meson defines it for the project) */
#endif
#include <dlfcn.h>
#include <string.h>
#include <sys/utsname.h>

#define RELEASE "7.2-\x80\xc3\x28\xff-\xc3\xa9-\"q\"-\x01"

int
uname(struct utsname *u)
{
	int (*real)(struct utsname *) =
		(int (*)(struct utsname *))dlsym(RTLD_NEXT, "uname");
	int r = real ? real(u) : -1;

	if (r == 0)
		memcpy(u->release, RELEASE, sizeof(RELEASE));
	return r;
}
