/* SPDX-License-Identifier: MIT */
/*
 * example-vm.c - the VM and vCPU setup every example shares (see
 * example-vm.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "example-vm.h"

/* ---- The host's vCPU registers ------------------------------------------
 *
 * Register layouts differ between architectures, so only the host's is
 * built. Real KVM runs guests of the host's architecture only; the
 * simulator can model the other one, and runs a script there instead.
 */
#if defined(__x86_64__)
#define HOST_ARCH MEMFAULT_ARCH_X86_64
#define HOST_ARCH_NAME "x86_64"

/* 16-bit real mode, CS base 0, IP EXAMPLE_X86_CODE_GPA. */
static int
set_host_regs(int vm_fd, int vcpu_fd)
{
	struct kvm_regs regs = {
		.rip = EXAMPLE_X86_CODE_GPA,
		.rflags = 0x2, /* bit 1 is reserved and always set */
	};
	struct kvm_sregs sregs;

	/* Intel VMX runs real mode through a TSS: 3 pages outside the RAM. */
	if (ioctl(vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000ul) < 0)
		return -errno;
	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return 0;
}

#elif defined(__aarch64__)
#define HOST_ARCH MEMFAULT_ARCH_ARM64
#define HOST_ARCH_NAME "arm64"

static int
set_core_reg(int vcpu_fd, uint64_t id, uint64_t value)
{
	struct kvm_one_reg reg = {
		.id = KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | id,
		.addr = (uintptr_t)&value,
	};

	return ioctl(vcpu_fd, KVM_SET_ONE_REG, &reg) < 0 ? -errno : 0;
}

/* EL1 on SP_EL1 with interrupts masked, PC at EXAMPLE_ARM64_CODE_GPA. */
static int
set_host_regs(int vm_fd, int vcpu_fd)
{
	struct kvm_vcpu_init init;
	int r;

	if (ioctl(vm_fd, KVM_ARM_PREFERRED_TARGET, &init) < 0)
		return -errno;
	if (ioctl(vcpu_fd, KVM_ARM_VCPU_INIT, &init) < 0)
		return -errno;
	r = set_core_reg(vcpu_fd, KVM_REG_ARM_CORE_REG(regs.pstate),
			 PSR_MODE_EL1h | PSR_D_BIT | PSR_A_BIT | PSR_I_BIT |
				 PSR_F_BIT);
	if (r)
		return r;
	return set_core_reg(vcpu_fd, KVM_REG_ARM_CORE_REG(regs.pc),
			    EXAMPLE_ARM64_CODE_GPA);
}

#else
#error "the examples support x86-64 and arm64 hosts"
#endif

int
example_set_arch(struct example_vm *ev, const char *name)
{
	ev->kvm_fd = ev->vm_fd = -1; /* example_vm_free() may come first */
	if (!name)
		name = HOST_ARCH_NAME;
	if (!strcmp(name, "x86_64"))
		ev->arch = MEMFAULT_ARCH_X86_64;
	else if (!strcmp(name, "arm64"))
		ev->arch = MEMFAULT_ARCH_ARM64;
	else
		return -EINVAL;
	ev->arch_name = ev->arch == MEMFAULT_ARCH_X86_64 ? "x86_64" : "arm64";
	return 0;
}

int
example_vm_new(struct example_vm *ev, unsigned long vm_type)
{
	int r;

	ev->page_size = (size_t)sysconf(_SC_PAGESIZE);
	ev->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (ev->kvm_fd < 0)
		return example_fail("open /dev/kvm", -errno);
	if (ioctl(ev->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
		return example_fail("KVM_GET_API_VERSION", -EPROTO);
	MEMFAULT_OPTS(memfault_vm_opts, opts,
		.flags = MEMFAULT_VM_OWN_FD,
		.kvm_fd = ev->kvm_fd, /* spares the library an open() */
		.arch = ev->arch);    /* the simulator may model another */
	ev->vm_fd = ioctl(ev->kvm_fd, KVM_CREATE_VM, vm_type);
	if (ev->vm_fd < 0)
		return example_fail("KVM_CREATE_VM", -errno);
	r = memfault_vm_new(ev->vm_fd, &opts, &ev->vm);
	if (r) {
		close(ev->vm_fd); /* not taken over on failure */
		ev->vm_fd = -1;
		return example_fail("memfault_vm_new", r);
	}
	r = memfault_vm_get_features(ev->vm, &ev->features,
				     sizeof(ev->features));
	return r ? example_fail("memfault_vm_get_features", r) : 0;
}

int
example_vm_add_ram(struct example_vm *ev, const void *code, size_t len)
{
	uint64_t code_gpa = ev->arch == MEMFAULT_ARCH_X86_64 ?
				    EXAMPLE_X86_CODE_GPA :
				    EXAMPLE_ARM64_CODE_GPA;
	void *p;
	int r;

	p = mmap(NULL, EXAMPLE_RAM_SIZE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return example_fail("mmap", -errno);
	ev->ram = p;
	memcpy(ev->ram + code_gpa, code, len);
	r = memfault_region_new(ev->vm, EXAMPLE_RAM_SLOT, 0, EXAMPLE_RAM_SIZE,
				ev->ram, NULL, &ev->ram_region);
	if (r)
		return example_fail("the RAM memslot", r);
	printf("memslot %d: %d KiB of RAM at GPA 0; a %zu-byte %s program at %#llx\n",
	       EXAMPLE_RAM_SLOT, EXAMPLE_RAM_SIZE / 1024, len, ev->arch_name,
	       (unsigned long long)code_gpa);
	return 0;
}

int
example_vcpu_new(struct example_vm *ev, uint64_t flags)
{
	MEMFAULT_OPTS(memfault_vcpu_opts, opts,
		.flags = MEMFAULT_VCPU_OWN_FD | flags);
	int vcpu_fd, r;

	vcpu_fd = ioctl(ev->vm_fd, KVM_CREATE_VCPU, 0);
	if (vcpu_fd < 0)
		return example_fail("KVM_CREATE_VCPU", -errno);
	/*
	 * A KVM without vCPU registers fails these as the kernel fails an
	 * ioctl it does not know (ENOTTY, or EINVAL from
	 * kvm_arch_vcpu_ioctl()): that is the simulator, which runs the
	 * script of its environment instead. Real KVM takes them, and runs
	 * guests of the host's architecture only.
	 */
	r = set_host_regs(ev->vm_fd, vcpu_fd);
	if (r == -ENOTTY || r == -EINVAL) {
		printf("vCPU: KVM takes no registers (%s): it runs a scripted %s guest (the test suite's simulator)\n",
		       strerror(-r), ev->arch_name);
		ev->scripted = true;
		r = 0;
	} else if (r == 0 && ev->arch != HOST_ARCH) {
		r = -EOPNOTSUPP;
		printf("vCPU: this KVM runs %s machine code: an %s guest needs the simulator\n",
		       HOST_ARCH_NAME, ev->arch_name);
	}
	if (r) {
		close(vcpu_fd);
		return example_fail("setting up the vCPU", r);
	}
	r = memfault_vcpu_new(ev->vm, vcpu_fd, &opts, &ev->vcpu);
	if (r) {
		close(vcpu_fd); /* not taken over on failure */
		return example_fail("memfault_vcpu_new", r);
	}
	r = memfault_vcpu_get_run(ev->vcpu, &ev->run);
	return r ? example_fail("memfault_vcpu_get_run", r) : 0;
}

void
example_vm_free(struct example_vm *ev)
{
	memfault_vcpu_free(ev->vcpu); /* closes the vCPU fd */
	memfault_region_free(ev->ram_region);
	memfault_vm_free(ev->vm); /* closes the VM fd */
	if (ev->ram)
		munmap(ev->ram, EXAMPLE_RAM_SIZE);
	if (ev->kvm_fd >= 0)
		close(ev->kvm_fd);
}

void
example_check(struct example_vm *ev, bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("check: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(": %s\n", ok ? "ok" : "FAILED");
	if (ok)
		ev->checks_passed++;
	else
		ev->checks_failed++;
}

int
example_fail(const char *what, int r)
{
	printf("error: %s: %s\n", what, strerror(-r));
	return r;
}

int
example_result(const struct example_vm *ev, int r)
{
	if (r == EXAMPLE_EXIT_SKIP) {
		printf("result: SKIPPED\n");
		return EXAMPLE_EXIT_SKIP;
	}
	if (r < 0) {
		printf("result: FAILED: stopped on an error\n");
		return 1;
	}
	if (ev->checks_failed || !ev->checks_passed) {
		printf("result: FAILED: %u of %u checks failed\n",
		       ev->checks_failed, ev->checks_passed + ev->checks_failed);
		return 1;
	}
	printf("result: all %u checks passed\n", ev->checks_passed);
	return 0;
}

void
example_log(void *user, int level, const char *message)
{
	(void)user;
	if (level <= 4) /* syslog's LOG_WARNING and worse */
		fprintf(stderr, "libmemfault: %s\n", message);
}
