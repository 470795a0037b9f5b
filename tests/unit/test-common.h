/* SPDX-License-Identifier: MIT */
/* Shared helpers for the Check-based test executables. */
#ifndef MEMFAULT_TEST_COMMON_H
#define MEMFAULT_TEST_COMMON_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

/* Run every suite of @s and return a process exit code meson understands. */
static inline int
test_run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#define ADD_TEST(tc, fn) tcase_add_test((tc), fn)

/* The process's resident set in KiB (VmRSS), or -1. */
static inline long
rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

#endif
