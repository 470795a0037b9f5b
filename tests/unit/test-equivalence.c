/* SPDX-License-Identifier: MIT */
/*
 * Equivalence: the same scenario gives the same VMM-visible results on the
 * x86-64 and arm64 models. Only MEMFAULT_ORIGIN differs by design (it says
 * how the kernel reported the fault); everything a VMM decides on is equal.
 */
#include "scenarios.h"
#include "test-common.h"

static void
compare(const char *scn, const struct record *x, const struct record *a)
{
	ck_assert_msg(x->n == a->n, "%s: %d results on x86_64, %d on arm64",
		      scn, x->n, a->n);
	for (int i = 0; i < x->n; i++) {
		const struct outcome *p = &x->o[i], *q = &a->o[i];

		ck_assert_msg(p->r == q->r, "%s[%d]: result %d vs %d", scn, i,
			      p->r, q->r);
		ck_assert_msg(p->exit_reason == q->exit_reason,
			      "%s[%d]: exit_reason %u vs %u", scn, i,
			      p->exit_reason, q->exit_reason);
		ck_assert_msg(p->f.gpa == q->f.gpa, "%s[%d]: gpa", scn, i);
		ck_assert_msg(p->f.size == q->f.size, "%s[%d]: size", scn, i);
		ck_assert_msg(p->f.flags == q->f.flags,
			      "%s[%d]: flags %#llx vs %#llx", scn, i,
			      (unsigned long long)p->f.flags,
			      (unsigned long long)q->f.flags);
		ck_assert_msg(p->f.kernel_flags == q->f.kernel_flags,
			      "%s[%d]: kernel_flags", scn, i);
		ck_assert_msg(p->f.error == q->f.error, "%s[%d]: error %d vs %d",
			      scn, i, p->f.error, q->f.error);
	}
}

START_TEST(same_results_on_both_arches)
{
	static const uint32_t levels[] = { KVMSIM_LEVEL_7_2,
					   KVMSIM_LEVEL_7_2_UF };
	int s = _i % NR_SCENARIOS;
	uint32_t level = levels[_i / NR_SCENARIOS];
	struct record x = { 0 }, a = { 0 };
	struct sim_env e;

	sim_env_open(&e, KVMSIM_X86_64, level);
	scenarios[s].fn(&e, &x);
	sim_env_close(&e);
	sim_env_open(&e, KVMSIM_ARM64, level);
	scenarios[s].fn(&e, &a);
	sim_env_close(&e);
	compare(scenarios[s].name, &x, &a);
	/* only the userfault scenarios do nothing without KVM Userfault */
	ck_assert_int_gt(x.n + (level != KVMSIM_LEVEL_7_2_UF &&
				!strncmp(scenarios[s].name, "userfault", 9)),
			 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("equivalence");
	TCase *tc = tcase_create("equivalence");

	tcase_add_loop_test(tc, same_results_on_both_arches, 0,
			    2 * NR_SCENARIOS);
	suite_add_tcase(s, tc);
	return tc_run(s);
}
