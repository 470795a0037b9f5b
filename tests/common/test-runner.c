// SPDX-License-Identifier: MIT
/*
 * The one runner (test-common.c) on suites whose outcome is known: its
 * exit code is what meson counts for every test executable, so a runner
 * that turned a failure into a pass would hide every other test's failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "test-common.h"

START_TEST(inner_pass)
{
	ck_assert_int_eq(1, 1);
}
END_TEST

START_TEST(inner_fail)
{
	ck_assert_int_eq(1, 2);
}
END_TEST

START_TEST(inner_skip)
{
	tc_count_skip();
}
END_TEST

/* A suite of @npass passing, @nfail failing and @nskip skipping tests. */
static Suite *
inner(int npass, int nfail, int nskip)
{
	Suite *s = suite_create("inner");
	TCase *tc = tcase_create("inner");

	if (npass)
		tcase_add_loop_test(tc, inner_pass, 0, npass);
	if (nfail)
		tcase_add_loop_test(tc, inner_fail, 0, nfail);
	if (nskip)
		tcase_add_loop_test(tc, inner_skip, 0, nskip);
	suite_add_tcase(s, tc);
	return s;
}

static const struct {
	int pass, fail, skip, exit;
} rows[] = {
	{ 3, 0, 0, 0 },  /* all pass */
	{ 2, 1, 0, 1 },  /* one failure fails the executable */
	{ 0, 1, 2, 1 },  /* a failure beats skips */
	{ 1, 0, 2, 0 },  /* some skipped: still a pass */
	{ 0, 0, 3, 77 }, /* every test skipped: SKIP */
};

START_TEST(exit_codes_and_counts)
{
	struct tc_counts c;
	int r;

	/* CK_RUN_CASE names the outer test case: not for the inner run */
	unsetenv("CK_RUN_CASE");
	r = tc_run_counted(inner(rows[_i].pass, rows[_i].fail, rows[_i].skip),
			   &c);
	ck_assert_int_eq(r, rows[_i].exit);
	ck_assert_int_eq(c.ran, rows[_i].pass + rows[_i].fail + rows[_i].skip);
	ck_assert_int_eq(c.failed, rows[_i].fail);
	ck_assert_uint_eq(c.skipped, (unsigned)rows[_i].skip);
}
END_TEST

/* Outside a run a skip counts nowhere (and does not crash). */
START_TEST(skip_outside_a_run)
{
	tc_count_skip();
	ck_assert_int_eq(tc_run(inner(1, 0, 0)), 0);
}
END_TEST

START_TEST(whole_skip_is_77)
{
	ck_assert_int_eq(tc_skip(inner(1, 0, 0), "%s", "no reason"), 77);
	ck_assert_int_eq(tc_skip(NULL, "no suite"), 77);
}
END_TEST

START_TEST(suite_of_listed_tests)
{
	struct tc_counts c;

	unsetenv("CK_RUN_CASE");
	ck_assert_int_eq(tc_run_counted(tc_suite("listed", "listed", 10,
						 inner_pass, inner_fail,
						 inner_skip, inner_pass, NULL),
					&c),
			 1);
	ck_assert_int_eq(c.ran, 4);
	ck_assert_int_eq(c.failed, 1);
	ck_assert_uint_eq(c.skipped, 1);
}
END_TEST

START_TEST(clock_advances)
{
	struct timespec d = { 0, 20 * 1000 * 1000 };
	double t0 = tc_now();
	uint64_t n0 = tc_now_ns();

	nanosleep(&d, NULL);
	ck_assert_double_ge(tc_now() - t0, 0.019);
	ck_assert_uint_ge(tc_now_ns() - n0, 19 * 1000 * 1000);
	ck_assert_double_lt(tc_now() - t0, 60.0);
}
END_TEST

START_TEST(open_fds_counts)
{
	long n0 = tc_open_fds();
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(tc_open_fds(), n0 + 1);
	close(fd);
	ck_assert_int_eq(tc_open_fds(), n0);
}
END_TEST

START_TEST(rss_grows_with_touched_memory)
{
	long before = tc_rss_kib();
	size_t size = 32u << 20;
	/* mmap and volatile stores: a memset before free() is a dead store
	 * the compiler may drop, and a sanitizer's allocator keeps its own
	 * pools */
	volatile char *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ck_assert_int_gt(before, 0);
	ck_assert(p != MAP_FAILED);
	for (size_t i = 0; i < size; i += 1024)
		p[i] = 1;
	ck_assert_int_ge(tc_rss_kib() - before, (long)(size >> 10) / 2);
	munmap((void *)p, size);
}
END_TEST

START_TEST(uffd_reason)
{
	char why[256] = "";
	int r = tc_uffd_usable(why, sizeof(why));

	/* either usable, or a negative errno with a reason */
	ck_assert(r == 0 || (r < 0 && why[0]));
	ck_assert_int_eq(tc_uffd_usable(NULL, 0), r);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("runner");
	TCase *tc = tcase_create("runner");
	SRunner *sr;
	int failed;

	tc_init();
	tcase_add_loop_test(tc, exit_codes_and_counts, 0,
			    (int)(sizeof(rows) / sizeof(rows[0])));
	ADD_TEST(tc, skip_outside_a_run);
	ADD_TEST(tc, whole_skip_is_77);
	ADD_TEST(tc, suite_of_listed_tests);
	ADD_TEST(tc, clock_advances);
	ADD_TEST(tc, open_fds_counts);
	ADD_TEST(tc, rss_grows_with_touched_memory);
	ADD_TEST(tc, uffd_reason);
	suite_add_tcase(s, tc);
	/* Not tc_run(): a runner that hid failures would hide its own. */
	sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
