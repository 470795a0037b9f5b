/* SPDX-License-Identifier: MIT */
/*
 * The kernel suite's scenarios on the KVM simulator (tests/sim), for the
 * differential check against a real kernel.
 *
 * Built once per architecture model (KT_SIM_ARCH = 1 x86_64, 2 arm64) from
 * the very test-kernel-*.c sources that run on the real kernel, with
 * KT_SIM: the VMM code is the same, only the guest is a kvmsim script
 * instead of machine code (ktest.c). The simulator models Linux 7.2 with its
 * default quirks, as the pinned Debian 7.2.13 kernel; the SW_PROTECTED
 * scenarios run with KVMSIM_Q_SW_PROTECTED_VM on, as the x86_64-swprot
 * kernel, and the KVM Userfault ones (test-kernel-userfault.c) at
 * KVMSIM_LEVEL_7_2_UF, as the userfault-7.2.13 kernels (which have VM type
 * 1 on x86 too). Every scenario asserts the same expectations as on the real
 * kernel, and prints the same KRES lines, which run-nested.sh compares with
 * those of the real run, key by key. The uffd scenarios run against the
 * host's real userfaultfd: the simulated guest's loads read the hva with
 * process_vm_readv() in the vCPU thread, which faults on it as KVM's
 * get_user_pages() does.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kvmsim.h>

#include "ktest.h"

bool kt_userfault_available(char *why, size_t len);

/* The level of the default run: KT_SIM_LEVEL=6.1|6.8|7.2 [7.2], the model
 * of the kernel the run is compared with (run-nested.sh sets it per boot). */
static uint32_t base_level = KVMSIM_LEVEL_7_2;

static const char *
level_name(uint32_t level)
{
	switch (level) {
	case KVMSIM_LEVEL_6_1:
		return "6.1";
	case KVMSIM_LEVEL_6_8:
		return "6.8";
	case KVMSIM_LEVEL_7_2_UF:
		return "7.2+KVM Userfault";
	default:
		return "7.2";
	}
}

/* Reset the simulator to @level with the default quirks and @extra_quirks. */
static int
sim_reset(uint32_t level, uint64_t extra_quirks)
{
	struct kvmsim_config cfg;
	int r;

	memset(&cfg, 0, sizeof(cfg));
	cfg.arch = KT_SIM_ARCH;
	cfg.level = level;
	cfg.quirks = kvmsim_default_quirks(cfg.arch, cfg.level) | extra_quirks;
	r = kvmsim_reset(&cfg);
	if (r) {
		printf("# kvmsim_reset: %s\n", strerror(-r));
		return 1;
	}
	kt_kvm_forget();
	printf("# kvmsim model %s, level %s, quirks %#llx\n",
	       kres_arch_name(cfg.arch), level_name(level),
	       (unsigned long long)cfg.quirks);
	return kt_kvm_fd() < 0;
}

/* 1 if a test of @sr failed, else 0 (a run that skipped is no failure). */
static int
run_sr(SRunner *sr)
{
	return tc_run_srunner(sr, NULL) == EXIT_FAILURE;
}

static int
run_suites(uint64_t extra_quirks, Suite *first, ...)
{
	SRunner *sr;
	Suite *s;
	va_list ap;

	if (sim_reset(base_level, extra_quirks))
		return 1;
	sr = srunner_create(first);
	va_start(ap, first);
	while ((s = va_arg(ap, Suite *)))
		srunner_add_suite(sr, s);
	va_end(ap);
	return run_sr(sr);
}

/* The KVM Userfault scenarios at 7.2 + KVM Userfault; the suite is made
 * after the reset, as it asks the simulated kernel for its VM types. */
static int
run_userfault(void)
{
	char why[256];

	if (sim_reset(KVMSIM_LEVEL_7_2_UF, KT_X86 ? KVMSIM_Q_SW_PROTECTED_VM : 0))
		return 1;
	if (!kt_userfault_available(why, sizeof(why))) {
		printf("# simulator without KVM Userfault: %s\n", why);
		return 1;
	}
	return run_sr(srunner_create(kt_suite_userfault()));
}

int
main(void)
{
	char why[256];
	Suite *uffd = NULL;
	const char *lvl;
	int failed;

	kt_init();
	lvl = getenv("KT_SIM_LEVEL");
	if (lvl && !strcmp(lvl, "6.1")) {
		base_level = KVMSIM_LEVEL_6_1;
		kt_sim_release = "6.1.0-kvmsim";
	} else if (lvl && !strcmp(lvl, "6.8")) {
		base_level = KVMSIM_LEVEL_6_8;
		kt_sim_release = "6.8.0-kvmsim";
	} else if (lvl && *lvl && strcmp(lvl, "7.2")) {
		printf("# KT_SIM_LEVEL=%s: not a level (6.1, 6.8, 7.2)\n", lvl);
		return 1;
	}
	/* The uffd scenarios use the host's real userfaultfd (the simulated
	 * guest's loads fault on it through process_vm_readv()). Where this
	 * process may not use it, say so in a KRES line of step 0:
	 * kres-diff.awk then leaves the kernel's lines of those scenarios
	 * uncompared, with a note, instead of failing. */
	if (!tc_uffd_usable(why, sizeof(why))) {
		uffd = kt_suite_uffd();
	} else {
		printf("# SKIP uffd scenarios: %s\n", why);
		kres_printf(KT_ARCH, "uffd-missing", 0,
			    "sim.skip=userfaultfd-unavailable");
		kres_printf(KT_ARCH, "uffd-minor", 0,
			    "sim.skip=userfaultfd-unavailable");
	}
	failed = run_suites(0, kt_suite_features(), kt_suite_exits(),
			    kt_suite_faults(), kt_suite_kick(),
			    kt_suite_dispatch(), uffd, (Suite *)NULL);
	/* The SW_PROTECTED and KVM Userfault kernels are 7.2 kernels. */
	if (base_level != KVMSIM_LEVEL_7_2)
		return failed ? 1 : 0;
#if KT_X86
	failed += run_suites(KVMSIM_Q_SW_PROTECTED_VM, kt_suite_swprot(),
			     (Suite *)NULL);
#endif
	failed += run_userfault();
	return failed ? 1 : 0;
}
