/* SPDX-License-Identifier: MIT */
/*
 * kvmsim through LD_PRELOAD: this program does not link the simulator. It
 * is run with LD_PRELOAD=libkvmsim.so, KVMSIM_ARCH=arm64, KVMSIM_LEVEL=7.2
 * and a KVMSIM_SCRIPT of the [NK] `basic` arm64 guest (MMIO write, MMIO
 * read, write back, load from TEST_GPA, write it out), and checks what a
 * VMM sees with raw KVM calls. Exit status 0 on success, 1 on a mismatch,
 * 77 (skip) when the preload is absent.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvm.h>

#define TEST_GPA 0x20000000ull

static int failures;

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
			failures++;                                            \
		}                                                              \
	} while (0)

static uint32_t
mmio_u32(const struct kvm_run *run)
{
	uint32_t v;

	memcpy(&v, run->mmio.data, sizeof(v));
	return v;
}

int
main(void)
{
	long page = sysconf(_SC_PAGESIZE);
	struct kvm_userspace_memory_region region;
	int (*get_config)(void *);
	struct kvm_run *run;
	int kvm, vm, vcpu, size;
	uint32_t v;
	void *mem;

	/* the control API is reachable from the preloaded library */
	get_config = (int (*)(void *))dlsym(RTLD_DEFAULT, "kvmsim_get_config");
	if (!get_config) {
		fprintf(stderr, "libkvmsim.so is not preloaded\n");
		return 77;
	}
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	CHECK(kvm >= 0);
	CHECK(ioctl(kvm, KVM_GET_API_VERSION, 0) == 12);
	/*
	 * arm64 model: 2 pages, MEMORY_FAULT_INFO
	 * 0, GUEST_MEMFD_FLAGS 0x3 ([NK])
	 */
	size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	CHECK(size == 2 * page);
	vm = ioctl(kvm, KVM_CREATE_VM, 0ul);
	CHECK(vm >= 0);
	CHECK(ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_MEMORY_FAULT_INFO) == 0);
	CHECK(ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS) == 3);

	mem = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(mem != MAP_FAILED);
	memset(mem, 0x5a, (size_t)page);
	memset(&region, 0, sizeof(region));
	region.slot = 1;
	region.guest_phys_addr = TEST_GPA;
	region.memory_size = (uint64_t)page;
	region.userspace_addr = (uint64_t)(uintptr_t)mem;
	CHECK(ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) == 0);

	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0ul);
	CHECK(vcpu >= 0);
	run = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu,
		   0);
	if (run == MAP_FAILED || failures)
		return 1;

	CHECK(ioctl(vcpu, KVM_RUN, 0) == 0);
	CHECK(run->exit_reason == KVM_EXIT_MMIO && run->mmio.is_write &&
	      run->mmio.phys_addr == 0x10000000 && mmio_u32(run) == 0x42);
	CHECK(ioctl(vcpu, KVM_RUN, 0) == 0);
	CHECK(run->exit_reason == KVM_EXIT_MMIO && !run->mmio.is_write &&
	      run->mmio.phys_addr == 0x10000004 && run->mmio.len == 4);
	v = 0x1233;
	memcpy(run->mmio.data, &v, sizeof(v));
	CHECK(ioctl(vcpu, KVM_RUN, 0) == 0);
	CHECK(run->exit_reason == KVM_EXIT_MMIO && mmio_u32(run) == 0x1233);
	CHECK(ioctl(vcpu, KVM_RUN, 0) == 0);
	CHECK(run->exit_reason == KVM_EXIT_MMIO &&
	      run->mmio.phys_addr == 0x1000000c && mmio_u32(run) == 0x5a5a5a5a);
	CHECK(ioctl(vcpu, KVM_RUN, 0) == 0);
	CHECK(run->exit_reason == KVM_EXIT_SYSTEM_EVENT &&
	      run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN);

	CHECK(close(vcpu) == 0);
	CHECK(ioctl(vcpu, KVM_RUN, 0) == -1 && errno == EBADF);
	CHECK(close(vm) == 0);
	CHECK(close(kvm) == 0);
	if (failures)
		return 1;
	printf("kvmsim preload: ok\n");
	return 0;
}
