/* SPDX-License-Identifier: MIT */
/*
 * example-vm.h - what every example VMM does the same way, so that each
 * example shows only what it is about.
 *
 * An example VMM opens /dev/kvm, creates a VM and hands it to libmemfault,
 * gives it 64 KiB of RAM at GPA 0 holding a tiny guest program, creates one
 * vCPU pointed at that program, runs it, checks what the guest reported and
 * prints a result. example-vm.c does all of that but the running.
 *
 * One binary runs on real KVM and on the test suite's KVM simulator. The
 * simulator is a library preloaded in front of the C library
 * (LD_PRELOAD=build/tests/sim/libkvmsim.so) that answers for /dev/kvm: the
 * examples cannot tell it from a kernel, except that it runs a script of
 * guest steps (loads, stores, port and MMIO accesses) from its environment
 * (KVMSIM_SCRIPT) instead of machine code, and so has no vCPU registers to
 * set. examples/meson.build gives each example the script its guest
 * program amounts to.
 */
#ifndef EXAMPLE_VM_H
#define EXAMPLE_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>
#include <memfault/memfault.h>

/*
 * guest_memfd and memory attributes (Linux 6.8), and guest_memfd's mmap()
 * flags (later), with the kernel's values: the build host's <linux/kvm.h>
 * may be older than the kernel the example runs on (Debian 12 ships 6.1
 * headers).
 * The examples ask KVM at run time whether it has them.
 */
#ifndef KVM_CREATE_GUEST_MEMFD
struct kvm_create_guest_memfd {
	__u64 size;
	__u64 flags;
	__u64 reserved[6];
};
#define KVM_CREATE_GUEST_MEMFD _IOWR(KVMIO, 0xd4, struct kvm_create_guest_memfd)
#endif
#ifndef GUEST_MEMFD_FLAG_MMAP
#define GUEST_MEMFD_FLAG_MMAP (1ULL << 0)
#define GUEST_MEMFD_FLAG_INIT_SHARED (1ULL << 1)
#endif
#ifndef KVM_SET_MEMORY_ATTRIBUTES
struct kvm_memory_attributes {
	__u64 address;
	__u64 size;
	__u64 attributes;
	__u64 flags;
};
#define KVM_SET_MEMORY_ATTRIBUTES _IOW(KVMIO, 0xd2, struct kvm_memory_attributes)
#define KVM_MEMORY_ATTRIBUTE_PRIVATE (1ULL << 3)
#endif
#ifndef KVM_CAP_VM_TYPES
#define KVM_CAP_VM_TYPES 235
#endif

/* The exit status of an example that cannot run here (automake's SKIP). */
#define EXAMPLE_EXIT_SKIP 77

/* Slot 0: RAM at GPA 0, a multiple of every host page size. */
#define EXAMPLE_RAM_SLOT 0
#define EXAMPLE_RAM_SIZE 0x10000

/*
 * Where the guest program is loaded and starts: x86-64 in 16-bit real mode
 * at CS base 0, IP 0x1000; arm64 at EL1 with the MMU off, PC 0.
 */
#define EXAMPLE_X86_CODE_GPA 0x1000
#define EXAMPLE_ARM64_CODE_GPA 0x0

/* One example VM with one vCPU. */
struct example_vm {
	uint32_t arch;         /* the guest's enum memfault_arch */
	const char *arch_name; /* "x86_64" or "arm64" */
	size_t page_size;      /* the host's */
	int kvm_fd;            /* /dev/kvm */
	int vm_fd;             /* owned by vm */
	struct memfault_vm *vm;
	struct memfault_features features;
	uint8_t *ram;          /* EXAMPLE_RAM_SIZE bytes, slot EXAMPLE_RAM_SLOT */
	struct memfault_region *ram_region;
	struct memfault_vcpu *vcpu; /* owns the vCPU fd */
	struct kvm_run *run;        /* the vCPU's, mapped by libmemfault */
	bool scripted; /* KVM took no registers: it runs a script (simulator) */
	unsigned checks_passed, checks_failed;
};

/*
 * The setup calls below print what failed (example_fail()) and return its
 * negative errno, or 0.
 *
 * The first call on a zeroed @ev: parse an --arch value ("x86_64" or
 * "arm64"; NULL means the host's) into @ev->arch and @ev->arch_name, and
 * mark its fds unopened. Returns 0 or -EINVAL.
 */
int example_set_arch(struct example_vm *ev, const char *name);

/*
 * Open /dev/kvm, create a VM of @vm_type (0: the default) and wrap it in a
 * memfault_vm (@ev->vm) whose features are in @ev->features.
 */
int example_vm_new(struct example_vm *ev, unsigned long vm_type);

/*
 * Slot EXAMPLE_RAM_SLOT: zeroed RAM holding @code (@len bytes) at the
 * architecture's code GPA, registered with memfault_region_new().
 */
int example_vm_add_ram(struct example_vm *ev, const void *code, size_t len);

/*
 * Create the vCPU, point it at the code GPA and wrap it (@ev->vcpu,
 * @ev->run). @flags: memfault_vcpu_opts flags besides MEMFAULT_VCPU_OWN_FD.
 */
int example_vcpu_new(struct example_vm *ev, uint64_t flags);

/* Free the vCPU, the RAM and the VM, after the example's own regions
 * (whatever was set up: it may come after a failure). */
void example_vm_free(struct example_vm *ev);

/* Print "check: WHAT: ok" or "... FAILED" and count it. */
__attribute__((format(printf, 3, 4))) void
example_check(struct example_vm *ev, bool ok, const char *fmt, ...);

/* Print "error: WHAT: strerror(-r)" and pass the negative errno on. */
int example_fail(const char *what, int r);

/*
 * The exit status after the example ran with result @r (0, a negative
 * errno or EXAMPLE_EXIT_SKIP), and a last line that says it.
 */
int example_result(const struct example_vm *ev, int r);

/* A memfault_handlers::log callback: warnings and errors to stderr. */
void example_log(void *user, int level, const char *message);

#endif /* EXAMPLE_VM_H */
