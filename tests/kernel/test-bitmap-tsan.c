/* SPDX-License-Identifier: MIT */
/*
 * The concurrent bitmap tests of tests/unit/test-bitmap.c, the exactly-once
 * claim protocol under 8 threads and the reader-checker, built with
 * -fsanitize=thread by tests/kernel/run-nested.sh and run in its arm64
 * guest: TSan's runtime needs a real aarch64 kernel (it does not work under
 * qemu-user). The other cases of test-bitmap.c are compiled in, not run.
 *
 * One Check test case each (CK_RUN_CASE=exactly_once or reader_checker
 * selects one), run MEMFAULT_BITMAP_TSAN_LOOPS times each [4]: every run
 * is a fresh region and fresh threads, so another interleaving.
 */
#define main test_bitmap_main
#include "../unit/test-bitmap.c"
#undef main

int test_bitmap_main(void);

int
main(void)
{
	const char *env = getenv("MEMFAULT_BITMAP_TSAN_LOOPS");
	int loops = env ? atoi(env) : 4;
	Suite *s = suite_create("bitmap-tsan");
	TCase *once = tcase_create("exactly_once");
	TCase *rc = tcase_create("reader_checker");

	(void)test_bitmap_main; /* the whole suite: tests/unit */
	if (loops < 1)
		loops = 1;
	tcase_add_checked_fixture(once, setup, teardown);
	tcase_add_checked_fixture(rc, setup, teardown);
	tcase_set_timeout(once, 120);
	tcase_set_timeout(rc, 120);
	tcase_add_loop_test(once, exactly_once_under_contention, 0, loops);
	tcase_add_loop_test(rc, reader_checker, 0, loops);
	suite_add_tcase(s, once);
	suite_add_tcase(s, rc);

	/* CK_VERBOSITY=verbose prints the per-test lines that run-nested.sh
	 * reports. */
	return tc_run(s);
}
