/* SPDX-License-Identifier: MIT */
/*
 * The public header compiles on its own (it is the first include) as strict
 * ISO C: meson builds this file with -std=c99 and with -std=c11, both with
 * -pedantic -Werror -Wall -Wextra. The program then checks what
 * MEMFAULT_OPTS() produced and that the library links and answers.
 */
#include <memfault/memfault.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <memfault/memfault-version.h>

static int failures;

#define expect(cond)                                                           \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: failed: %s\n", __FILE__,       \
				__LINE__, #cond);                              \
			failures++;                                            \
		}                                                              \
	} while (0)

static int
all_zero(const void *p, size_t n)
{
	const unsigned char *b = p;
	size_t i;

	for (i = 0; i < n; i++)
		if (b[i])
			return 0;
	return 1;
}

int
main(void)
{
	MEMFAULT_OPTS(memfault_vm_opts, vm_opts, .flags = MEMFAULT_VM_OWN_FD);
	MEMFAULT_OPTS(memfault_vcpu_opts, vcpu_opts, .kick_signal = 0);
	struct memfault_fault fault;
	struct memfault_features features;

	expect(vm_opts.sz == sizeof(struct memfault_vm_opts));
	expect(vm_opts.flags == MEMFAULT_VM_OWN_FD);
	expect(vm_opts.probe_gpa == 0 && vm_opts.kvm_fd == 0 &&
	       vm_opts.arch == MEMFAULT_ARCH_HOST && vm_opts.probe_slot == 0 &&
	       vm_opts.reserved == 0);
	expect(vcpu_opts.sz == sizeof(struct memfault_vcpu_opts));
	expect(vcpu_opts.flags == 0 && vcpu_opts.run == NULL &&
	       vcpu_opts.run_size == 0 && vcpu_opts.reserved == 0);

	memset(&fault, 0, sizeof(fault));
	memset(&features, 0, sizeof(features));
	expect(all_zero(&fault, sizeof(fault)));
	expect(all_zero(&features, sizeof(features)));

	expect(memfault_version_major() == MEMFAULT_VERSION_MAJOR);
	expect(memfault_version_minor() == MEMFAULT_VERSION_MINOR);
	expect(memfault_vm_get_fd(NULL) == -EINVAL);
	expect(memfault_vcpu_get_fd(NULL) == -EINVAL);

	if (failures)
		return 1;
	printf("public header: %ld-era C, MEMFAULT_OPTS and link ok\n",
	       (long)__STDC_VERSION__);
	return 0;
}
