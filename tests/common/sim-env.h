/* SPDX-License-Identifier: MIT */
/*
 * A VM with one vCPU on the KVM simulator, set up the way a VMM does it:
 * raw KVM ioctls for the VM, memslots and guest_memfd, libmemfault for the
 * vCPU. Shared by the simulator-based test executables that link
 * libmemfault (tests/unit, tests/reliability); see tests/README.md.
 */
#ifndef MEMFAULT_SIM_ENV_H
#define MEMFAULT_SIM_ENV_H

/* The system headers a test of the fixture uses alongside it. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "kvm-userfault-proposed.h"
#include "kvmsim.h"
#include "memfault/memfault.h"
#include "test-common.h"

#ifndef EHWPOISON
#define EHWPOISON 133
#endif

#define MMIO_GPA 0x10000000ull
#define RAM_GPA 0x20000000ull
#define GMEM_GPA 0x30000000ull

struct sim_env {
	uint32_t arch, level;
	int kvm_fd, vm_fd, vcpu_fd, gmem_fd;
	struct memfault_vm *vm;
	struct memfault_vcpu *vcpu;
	struct kvm_run *run;
	uint64_t page;
	void *ram, *gmem_map;
	size_t ram_size, gmem_size;
	unsigned long *bitmap;
};

/* The eight simulated kernels: x86_64 then arm64, each at 6.1, 6.8, 7.2
 * and 7.2 + KVM Userfault (loop tests index it with _i). */
struct sim_model {
	uint32_t arch, level;
	const char *name;
};
#define NR_SIM_MODELS 8
extern const struct sim_model sim_models[NR_SIM_MODELS];
/* Loop test @fn over the two 7.2 models: sim_models[2] (x86_64/7.2) and
 * sim_models[6] (arm64/7.2). */
#define ADD_ON_72(tc, fn)                                                      \
	do {                                                                   \
		tcase_add_loop_test((tc), fn, 2, 3);                           \
		tcase_add_loop_test((tc), fn, 6, 7);                           \
	} while (0)

/* Open /dev/kvm, a VM of @vm_type and one vCPU on the simulator. */
void sim_env_open_quirks(struct sim_env *e, uint32_t arch, uint32_t level,
			 uint64_t quirks, unsigned long vm_type);
/* The same with the model's default quirks and VM type 0. */
void sim_env_open(struct sim_env *e, uint32_t arch, uint32_t level);
void sim_env_close(struct sim_env *e);
/* A normal memslot of @pages pages at RAM_GPA, filled with 0x5a (with a
 * zeroed userfault bitmap, e->bitmap, when @flags has KVM_MEM_USERFAULT). */
void sim_env_add_ram(struct sim_env *e, uint32_t slot, size_t pages,
		     uint32_t flags);
/* A guest_memfd memslot of @pages pages at GMEM_GPA, filled with 0x6b.
 * Returns 0, or the negative errno of KVM_CREATE_GUEST_MEMFD or of the
 * memslot when the model has none. */
int sim_env_add_gmem(struct sim_env *e, uint32_t slot, size_t pages,
		     uint64_t gmem_flags);
/* guest_memfd flags the model accepts for a plain (type 0) VM. */
uint64_t sim_env_gmem_flags(const struct sim_env *e);
/* The vCPU's guest script (kvmsim.h). */
void sim_env_script(struct sim_env *e, const char *text);

/* The VMM-visible result of one memfault_vcpu_run(). */
struct outcome {
	int r;
	uint32_t exit_reason; /* for MEMFAULT_RUN_EXIT */
	struct memfault_fault f; /* for MEMFAULT_RUN_MEMORY_FAULT */
};

/* memfault_vcpu_run() once; the fault is read (and must be there) exactly
 * when the result is MEMFAULT_RUN_MEMORY_FAULT. */
struct outcome sim_env_run(struct sim_env *e);
/* The script's accumulator (the last value a load or MMIO read gave). */
uint64_t sim_env_acc(struct sim_env *e);

/* A vCPU running memfault_vcpu_run_dispatch() on a thread of its own. */
struct vcpu_thread {
	struct sim_env *e; /* for the test's use */
	struct memfault_vcpu *vcpu;
	int fd;
	int result; /* memfault_vcpu_run_dispatch()'s */
	pthread_t t;
};

/* Thread body: one memfault_vcpu_run_dispatch() of @arg (a struct
 * vcpu_thread), its result in ->result. */
void *run_to_end(void *arg);

#endif
