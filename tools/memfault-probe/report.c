/* SPDX-License-Identifier: MIT */
/*
 * memfault-probe's data model: the names of what is probed, and what the
 * findings mean, that is what libmemfault will use and why (the decisions)
 * and whether it can run here (the verdict). Nothing here talks to the
 * system: the decisions follow from struct report alone, which probe.c
 * filled.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strerrorname_np() */
#endif

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

#include "memfault-probe.h"

/* ---- Names -------------------------------------------------------------- */

const struct cap_name caps[NR_CAPS] = {
	[C_USER_MEMORY2] = { KVM_CAP_USER_MEMORY2, "USER_MEMORY2" },
	[C_MEMORY_FAULT_INFO] = { KVM_CAP_MEMORY_FAULT_INFO, "MEMORY_FAULT_INFO" },
	[C_MEMORY_ATTRIBUTES] = { KVM_CAP_MEMORY_ATTRIBUTES, "MEMORY_ATTRIBUTES" },
	[C_GUEST_MEMFD] = { KVM_CAP_GUEST_MEMFD, "GUEST_MEMFD" },
	[C_GUEST_MEMFD_FLAGS] = { KVM_CAP_GUEST_MEMFD_FLAGS, "GUEST_MEMFD_FLAGS" },
	[C_VM_TYPES] = { KVM_CAP_VM_TYPES, "VM_TYPES" },
	[C_NR_MEMSLOTS] = { KVM_CAP_NR_MEMSLOTS, "NR_MEMSLOTS" },
	[C_IMMEDIATE_EXIT] = { KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT" },
	[C_CHECK_EXTENSION_VM] = { KVM_CAP_CHECK_EXTENSION_VM, "CHECK_EXTENSION_VM" },
	[C_ARM_VM_IPA_SIZE] = { KVM_CAP_ARM_VM_IPA_SIZE, "ARM_VM_IPA_SIZE" },
};

const struct name_bit feature_names[] = {
	{ MEMFAULT_FEATURE_USER_MEMORY2, "USER_MEMORY2" },
	{ MEMFAULT_FEATURE_MEMORY_FAULT_INFO, "MEMORY_FAULT_INFO" },
	{ MEMFAULT_FEATURE_MEMORY_FAULT_EXITS, "MEMORY_FAULT_EXITS" },
	{ MEMFAULT_FEATURE_MEMORY_ATTRIBUTES, "MEMORY_ATTRIBUTES" },
	{ MEMFAULT_FEATURE_GUEST_MEMFD, "GUEST_MEMFD" },
	{ MEMFAULT_FEATURE_GUEST_MEMFD_FLAGS, "GUEST_MEMFD_FLAGS" },
	{ MEMFAULT_FEATURE_KVM_USERFAULT, "KVM_USERFAULT" },
	{ 0, NULL },
};

const struct name_bit gmem_flag_names[] = {
	{ GUEST_MEMFD_FLAG_MMAP, "MMAP" },
	{ GUEST_MEMFD_FLAG_INIT_SHARED, "INIT_SHARED" },
	{ 0, NULL },
};

const struct name_bit attribute_names[] = {
	{ KVM_MEMORY_ATTRIBUTE_PRIVATE, "PRIVATE" },
	{ 0, NULL },
};

#define UFFD_F(name) { UFFD_FEATURE_##name, #name }
const struct name_bit uffd_feature_names[] = {
	UFFD_F(PAGEFAULT_FLAG_WP),
	UFFD_F(EVENT_FORK),
	UFFD_F(EVENT_REMAP),
	UFFD_F(EVENT_REMOVE),
	UFFD_F(MISSING_HUGETLBFS),
	UFFD_F(MISSING_SHMEM),
	UFFD_F(EVENT_UNMAP),
	UFFD_F(SIGBUS),
	UFFD_F(THREAD_ID),
	UFFD_F(MINOR_HUGETLBFS),
	UFFD_F(MINOR_SHMEM),
	UFFD_F(EXACT_ADDRESS),
	UFFD_F(WP_HUGETLBFS_SHMEM),
	UFFD_F(WP_UNPOPULATED),
	UFFD_F(POISON),
	UFFD_F(WP_ASYNC),
	UFFD_F(MOVE),
	{ 0, NULL },
};

#define UFFD_IOCTL(name) { 1ull << _UFFDIO_##name, #name }
const struct name_bit uffd_ioctl_names[] = {
	UFFD_IOCTL(REGISTER),
	UFFD_IOCTL(UNREGISTER),
	UFFD_IOCTL(WAKE),
	UFFD_IOCTL(COPY),
	UFFD_IOCTL(ZEROPAGE),
	UFFD_IOCTL(MOVE),
	UFFD_IOCTL(WRITEPROTECT),
	UFFD_IOCTL(CONTINUE),
	UFFD_IOCTL(POISON),
	UFFD_IOCTL(API),
	{ 0, NULL },
};

const char *
errno_name(int err)
{
	const char *n = err ? strerrorname_np(err) : NULL;

	return n ? n : "unknown error";
}

const char *
arch_name(uint32_t arch)
{
	switch (arch) {
	case MEMFAULT_ARCH_X86_64:
		return "x86_64";
	case MEMFAULT_ARCH_ARM64:
		return "arm64";
	default:
		return "unknown";
	}
}

uint32_t
host_arch(void)
{
#if defined(__x86_64__)
	return MEMFAULT_ARCH_X86_64;
#elif defined(__aarch64__)
	return MEMFAULT_ARCH_ARM64;
#else
	return 0;
#endif
}

/* ---- Decisions ---------------------------------------------------------- */

__attribute__((format(printf, 4, 5))) static void
decide(struct report *rep, const char *key, const char *value,
       const char *fmt, ...)
{
	struct decision *d = &rep->decisions[rep->nr_decisions++];
	va_list ap;

	d->key = key;
	d->value = value;
	d->is_bool = !strcmp(value, "yes") || !strcmp(value, "no");
	va_start(ap, fmt);
	vsnprintf(d->why, sizeof(d->why), fmt, ap);
	va_end(ap);
}

static const struct vm_report *
default_vm(const struct report *rep)
{
	return rep->nr_vms && rep->vms[0].type == 0 && !rep->vms[0].create_err &&
			       !rep->vms[0].wrap_err ?
		       &rep->vms[0] :
		       NULL;
}

/* Can a userfaultfd be had? The library's own answer where it has the
 * backend, else the raw one. */
static bool
uffd_available(const struct report *rep)
{
	const struct vm_report *v = default_vm(rep);

	if (v && v->uffd_tried)
		return !v->uffd_err;
	return !rep->uffd_dev_new_err || !rep->uffd_syscall_err;
}

void
report_decide(struct report *rep)
{
	const struct vm_report *v = default_vm(rep);
	const struct memfault_features *f = v ? &v->features : NULL;
	const char *arch = arch_name(rep->arch);
	char types[128] = "";
	unsigned i;
	bool yes;

	if (!f)
		return;

	if (f->flags & MEMFAULT_FEATURE_MEMORY_FAULT_INFO)
		decide(rep, "memory_fault_exits", "yes",
		       "KVM_CAP_MEMORY_FAULT_INFO is advertised");
	else if (f->flags & MEMFAULT_FEATURE_MEMORY_FAULT_EXITS)
		decide(rep, "memory_fault_exits", "yes",
		       "%s delivers them for guest_memfd without advertising MEMORY_FAULT_INFO",
		       arch);
	else
		decide(rep, "memory_fault_exits", "no",
		       "no MEMORY_FAULT_INFO and no guest_memfd on %s: a failed guest access is a bare EFAULT, which memfault_vcpu_run() returns as -EFAULT",
		       arch);

	yes = memfault_arch_reads_back_exit(rep->arch, KVM_EXIT_MMIO) > 0;
	decide(rep, "mmio_readback", yes ? "yes" : "no",
	       yes ? "%s completes an MMIO load only while exit_reason is still KVM_EXIT_MMIO: the library resets nothing but a leftover KVM_EXIT_MEMORY_FAULT" :
		     "%s completes IO and MMIO without reading exit_reason back",
	       arch);

	yes = rep->sys_caps[C_IMMEDIATE_EXIT].value > 0;
	decide(rep, "kicks", yes ? "yes" : "no", "%s",
	       yes ? "memfault_vcpu_kick() sets kvm_run.immediate_exit and signals the vCPU thread" :
		     "KVM_CAP_IMMEDIATE_EXIT is 0: a kick before entry can be lost");

	if ((f->flags & MEMFAULT_FEATURE_GUEST_MEMFD) &&
	    (f->guest_memfd_flags & GUEST_MEMFD_FLAG_MMAP))
		decide(rep, "guest_memfd", "yes",
		       "KVM_CAP_GUEST_MEMFD, and GUEST_MEMFD_FLAGS %#" PRIx64 " includes MMAP: guest_memfd can back ordinary memslots",
		       f->guest_memfd_flags);
	else if (f->flags & MEMFAULT_FEATURE_GUEST_MEMFD)
		decide(rep, "guest_memfd", "yes",
		       "KVM_CAP_GUEST_MEMFD, but no MMAP flag: guest_memfd holds private memory only");
	else if (rep->sys_caps[C_GUEST_MEMFD].value > 0)
		decide(rep, "guest_memfd", "no",
		       "only VM types with private memory offer guest_memfd on this kernel");
	else
		decide(rep, "guest_memfd", "no", "no KVM_CAP_GUEST_MEMFD");

	for (i = 0; i < rep->nr_vms; i++) {
		const struct vm_report *t = &rep->vms[i];
		size_t len = strlen(types);

		if (t->create_err || t->wrap_err ||
		    !(t->features.memory_attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE))
			continue;
		snprintf(types + len, sizeof(types) - len, "%s%lu (%s)",
			 len ? ", " : "", t->type, t->name);
	}
	if (types[0])
		decide(rep, "private_conversions", "yes",
		       "VM type %s: KVM_MEMORY_ATTRIBUTE_PRIVATE; the default convert handler calls KVM_SET_MEMORY_ATTRIBUTES",
		       types);
	else
		decide(rep, "private_conversions", "no",
		       "no VM type offered has KVM_MEMORY_ATTRIBUTE_PRIVATE");

	if (f->flags & MEMFAULT_FEATURE_KVM_USERFAULT)
		decide(rep, "kvm_userfault", "yes",
		       "the kernel accepted the proposed KVM_MEM_USERFAULT flag on a scratch memslot (experimental: not merged upstream)");
	else if (f->userfault_probe_error)
		decide(rep, "kvm_userfault", "no",
		       "the probe gave no answer (%s)",
		       errno_name(-f->userfault_probe_error));
	else if (!(f->flags & MEMFAULT_FEATURE_USER_MEMORY2))
		decide(rep, "kvm_userfault", "no",
		       "no KVM_SET_USER_MEMORY_REGION2, so no userfault bitmap (Linux before 6.8)");
	else
		decide(rep, "kvm_userfault", "no",
		       "the kernel rejected KVM_MEM_USERFAULT with EINVAL (KVM Userfault is not merged as of Linux 7.2)");

	if (f->flags & MEMFAULT_FEATURE_KVM_USERFAULT)
		decide(rep, "userfault_backend", "kvm-userfault",
		       "vCPU faults on missing pages exit with MEMFAULT_FAULT_USERFAULT; userfaultfd for the VMM's and KVM's own accesses: %s",
		       uffd_available(rep) ? "available" : "not available");
	else if (uffd_available(rep))
		decide(rep, "userfault_backend", "userfaultfd",
		       "no KVM Userfault: missing pages are trapped with userfaultfd (%s)%s",
		       !rep->uffd_dev_new_err ? "/dev/userfaultfd" :
						"userfaultfd(2)",
		       v->uffd_tried ? "; memfault_uffd_new() works" :
				       ", but this libmemfault has no userfaultfd backend");
	else if (v->uffd_tried && rep->uffd_dev_new_err && rep->uffd_syscall_err)
		decide(rep, "userfault_backend", "none",
		       "no KVM Userfault, and userfaultfd is not available (%s): grant access to /dev/userfaultfd, set vm.unprivileged_userfaultfd=1 or run with CAP_SYS_PTRACE",
		       errno_name(rep->uffd_syscall_err));
	else
		decide(rep, "userfault_backend", "none",
		       "no KVM Userfault, and %s (%s)",
		       v->uffd_tried ? "memfault_uffd_new() failed" :
				       "no userfaultfd either",
		       errno_name(v->uffd_tried ? -v->uffd_err :
						  rep->uffd_syscall_err));
}

void
report_verdict(struct report *rep)
{
	if (rep->kvm_open_err) {
		rep->exit_code = EXIT_NO_KVM;
		rep->verdict = rep->kvm_open_err == ENOENT ?
				       "no KVM: /dev/kvm does not exist" :
				       "no KVM: /dev/kvm cannot be opened";
	} else if (rep->api_version != KVM_API_VERSION) {
		rep->exit_code = EXIT_NO_KVM;
		rep->verdict = "no KVM: unexpected KVM_GET_API_VERSION";
	} else if (!default_vm(rep)) {
		rep->exit_code = EXIT_NO_VM;
		rep->verdict = "KVM answers, but libmemfault cannot wrap a VM";
	} else if (rep->vms[0].vcpu_err) {
		rep->exit_code = EXIT_NO_VM;
		rep->verdict = "KVM answers, but libmemfault cannot wrap a vCPU";
	} else {
		rep->exit_code = EXIT_USABLE;
		rep->verdict = "usable";
	}
}
