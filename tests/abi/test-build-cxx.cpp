/* SPDX-License-Identifier: MIT */
/*
 * The public header compiles on its own as C++11 (-std=c++11 -pedantic
 * -Werror -Wall -Wextra): its extern "C" block gives the functions C
 * linkage, so this links against the C library and the calls resolve.
 * MEMFAULT_OPTS() needs designated initializers (C++20), so C++ code fills
 * the size field itself.
 */
#include <memfault/memfault.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <memfault/memfault-version.h>

static int failures;

#define expect(cond)                                                           \
	do {                                                                   \
		if (!(cond)) {                                                 \
			std::fprintf(stderr, "%s:%d: failed: %s\n", __FILE__,  \
				     __LINE__, #cond);                         \
			failures++;                                            \
		}                                                              \
	} while (0)

int
main()
{
	struct memfault_vm_opts vm_opts;
	struct memfault_fault fault;
	struct memfault_vm *vm = nullptr;
	enum memfault_run_result r = MEMFAULT_RUN_MEMORY_FAULT;

	std::memset(&vm_opts, 0, sizeof(vm_opts));
	vm_opts.sz = sizeof(vm_opts);
	vm_opts.flags = MEMFAULT_VM_OWN_FD | MEMFAULT_VM_NO_USERFAULT_PROBE;
	std::memset(&fault, 0, sizeof(fault));

	expect(memfault_version_major() == MEMFAULT_VERSION_MAJOR);
	expect(memfault_version_minor() == MEMFAULT_VERSION_MINOR);
	expect(memfault_vm_get_fd(vm) == -EINVAL);
	expect(memfault_vm_new(-1, &vm_opts, nullptr) == -EINVAL);
	expect(memfault_exit_classify(nullptr, 0, 0, &fault, sizeof(fault)) ==
	       -EINVAL);
	expect(r == 2);

	if (failures)
		return 1;
	std::printf("public header: C++%ld, extern \"C\" linkage ok\n",
		    (long)__cplusplus);
	return 0;
}
