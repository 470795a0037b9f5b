/* SPDX-License-Identifier: MIT */
/*
 * Fault injection for libmemfault.so (fi.c): the test executable defines
 * the allocation functions and the system-call wrappers the library
 * imports, so the library's calls come here first (an executable's
 * definitions interpose for the shared libraries it loads). Only calls made
 * from libmemfault.so's own code (return address inside it) are counted,
 * failed and tracked; everything else passes through untouched.
 *
 * The simulator is LD_PRELOADed (libkvmsim.so): the wrappers forward to it
 * with dlsym(RTLD_NEXT), and the kvmsim_* controls are looked up at run
 * time (fi_kvmsim()).
 */
#ifndef MEMFAULT_FI_H
#define MEMFAULT_FI_H

#include <stdbool.h>
#include <stdint.h>

/* Classes of failable calls. */
enum fi_class {
	FI_ALLOC = 1u << 0,  /* malloc, calloc, realloc: NULL, ENOMEM */
	FI_MMAP = 1u << 1,   /* mmap: MAP_FAILED, ENOMEM */
	FI_IOCTL = 1u << 2,  /* ioctl: -1, errno */
	FI_SYSCALL = 1u << 3, /* everything else: -1/errno or an error number */
	FI_ALL = 0xf,
};

/*
 * Fail the @n-th (1-based) failable call of a class in @classes that the
 * library makes from now on, with @err (allocations and mmap always fail
 * with ENOMEM), and count the calls. @n == 0 fails nothing, counts only.
 */
void fi_arm(unsigned n, int err, unsigned classes);
/* Stop; return how many failable calls were made since fi_arm(). */
unsigned fi_disarm(void);
/* Name of the call that was failed by the last fi_arm(), or NULL. */
const char *fi_failed_call(void);

/* Resources the library holds now. */
struct fi_res {
	long allocs; /* live heap blocks it allocated */
	long maps;   /* live mappings it made */
	long fds;    /* open fds in the process (all of them) */
};
void fi_resources(struct fi_res *ret);

/* Whether libmemfault.so was found (fi.c's constructor). */
bool fi_ready(void);

/* kvmsim controls, from the preloaded libkvmsim.so. */
struct kvmsim_config;
struct kvmsim_step;
struct fi_kvmsim {
	int (*reset)(const struct kvmsim_config *cfg);
	uint64_t (*default_quirks)(uint32_t arch, uint32_t level);
	int (*vcpu_set_script_text)(int vcpu_fd, const char *text);
	int (*poison)(int vm_fd, uint64_t gpa);
	int (*inject_gmem_error)(int vm_fd, uint64_t gpa, int err,
				 unsigned count);
};
/* NULL if libkvmsim.so is not preloaded. */
const struct fi_kvmsim *fi_kvmsim(void);

#endif
