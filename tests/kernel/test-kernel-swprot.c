/* SPDX-License-Identifier: MIT */
/*
 * PRIVATE memory faults on a real kernel. They need VM type 1
 * (KVM_X86_SW_PROTECTED_VM), which only a kernel built with
 * CONFIG_KVM_SW_PROTECTED_VM offers; this executable exits 77 (SKIP) on
 * any other kernel and on arm64. Check has no per-test skip, hence its own
 * executable.
 *   swprot-features  type-1 VM: MEMORY_ATTRIBUTES = PRIVATE, guest_memfd
 *                    flags MMAP only (INIT_SHARED is refused there)
 *   swprot-private   normal (non-gmem) slot marked PRIVATE: the load is a
 *                    private access that guest_memfd cannot serve, so exit
 *                    39 with KVM_MEMORY_EXIT_FLAG_PRIVATE and EFAULT; the
 *                    VMM converts the range back to shared and the guest
 *                    proceeds to load the pattern and halt
 * Dispatch (memfault_vcpu_run_dispatch(), slot 1 from memfault_region_new()):
 *   swprot-dispatch-default  swprot-private left to the library's default
 *                    conversion. It converts to what the access was
 *                    (KVM_MEMORY_EXIT_FLAG_PRIVATE: to private, as api.rst
 *                    and QEMU read the flag), but in a SW_PROTECTED VM the
 *                    attribute is what made the access private: the range
 *                    is private already, the call changes nothing, the
 *                    fault comes back and the repeat guard ends it with
 *                    -ELOOP; the discard hook saw every no-op conversion.
 *                    Converting the range to shared then lets the guest on.
 *   swprot-dispatch-convert  the same with a `convert` handler that makes
 *                    the range shared: one conversion, the guest halts
 *   swprot-dispatch-shared   the other direction: a guest_memfd slot (MMAP,
 *                    so every access goes through guest_memfd), shared
 *                    attribute, fd closed: exit 39 without PRIVATE. The
 *                    library takes it for a request to convert to shared
 *                    (the VM has private memory), a no-op again: -ELOOP
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "ktest.h"

/* asm-arm64/asm/kvm.h lacks the x86 VM type; the test skips there anyway */
#ifndef KVM_X86_SW_PROTECTED_VM
#define KVM_X86_SW_PROTECTED_VM 1
#endif

#if KT_X86
START_TEST(swprot_features)
{
	struct memfault_features f;
	struct kt_vm v;

	kt_vm_create(&v, KVM_X86_SW_PROTECTED_VM, "swprot-features");
	ck_assert_int_eq(memfault_vm_get_features(v.mvm, &f, sizeof(f)), 0);
	kres_features(KT_ARCH, "swprot-features", 1, &f);
	ck_assert(f.flags & MEMFAULT_FEATURE_MEMORY_ATTRIBUTES);
	ck_assert(f.memory_attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE);
	ck_assert(f.flags & MEMFAULT_FEATURE_MEMORY_FAULT_INFO);
	ck_assert(f.flags & MEMFAULT_FEATURE_MEMORY_FAULT_EXITS);
	ck_assert(f.flags & MEMFAULT_FEATURE_GUEST_MEMFD);
	if (kt_kernel_is("7.2.")) {
		ck_assert_uint_eq(f.memory_attributes,
				  KVM_MEMORY_ATTRIBUTE_PRIVATE);
		ck_assert_uint_eq(f.guest_memfd_flags, GUEST_MEMFD_FLAG_MMAP);
		ck_assert(!(f.flags & MEMFAULT_FEATURE_KVM_USERFAULT));
		ck_assert_int_eq(f.userfault_probe_error, 0);
	}
	kt_vm_destroy(&v);
}
END_TEST

START_TEST(swprot_private)
{
	uint64_t ps = kt_page_size();
	struct kt_vm v;

	kt_vm_create(&v, KVM_X86_SW_PROTECTED_VM, "swprot-private");
	kt_vm_normal_slot(&v);
	ck_assert_int_eq(kt_vm_set_attributes(&v, KT_TEST_GPA, KT_TEST_SIZE,
					      KVM_MEMORY_ATTRIBUTE_PRIVATE),
			 0);
	kt_vcpu_create(&v, KT_ENTRY_LOAD);
	kt_expect_fault(&v, kt_run(&v), KT_TEST_GPA, ps, MEMFAULT_FAULT_PRIVATE,
			KVM_MEMORY_EXIT_FLAG_PRIVATE, -EFAULT,
			MEMFAULT_ORIGIN_ERRNO);
	/* Implicit conversion: flip the reported range back to shared. */
	ck_assert_int_eq(kt_vm_set_attributes(&v, v.fault.gpa, v.fault.size, 0),
			 0);
	kt_expect_report(&v, kt_run(&v), KT_PATTERN);
	kt_expect_exit(&v, kt_run(&v), KVM_EXIT_HLT);
	kt_vm_destroy(&v);
}
END_TEST

/* What the default conversion's discard hook and a convert handler saw. */
struct conv_seen {
	struct kt_vm *v;
	unsigned discards, converts;
	uint64_t gpa, size;  /* of the first discard */
	uint32_t to_private; /* of the first discard */
	int same;            /* every discard had the first one's arguments */
};

static int
discard_rec(void *user, uint64_t gpa, uint64_t size, uint32_t to_private)
{
	struct conv_seen *c = user;

	if (!c->discards++) {
		c->gpa = gpa;
		c->size = size;
		c->to_private = to_private;
		c->same = 1;
	} else if (gpa != c->gpa || size != c->size ||
		   to_private != c->to_private) {
		c->same = 0;
	}
	return MEMFAULT_RESOLVED;
}

/* SW_PROTECTED: a private access guest_memfd cannot serve is fixed by
 * making the range shared, whatever the flag says. */
static int
convert_to_shared(void *user, struct memfault_vcpu *vcpu,
		  const struct memfault_fault *f)
{
	struct conv_seen *c = user;

	(void)vcpu;
	c->converts++;
	return kt_vm_set_attributes(c->v, f->gpa, f->size, 0);
}

static void
conv_handlers(struct kt_vm *v, struct conv_seen *c, bool convert)
{
	MEMFAULT_OPTS(memfault_handlers, h, .user = c, .discard = discard_rec,
		      .convert = convert ? convert_to_shared : NULL);

	memset(c, 0, sizeof(*c));
	c->v = v;
	ck_assert_int_eq(memfault_vm_set_handlers(v->mvm, &h), 0);
}

static void
kres_conv(struct kt_vm *v, const struct conv_seen *c)
{
	kres_printf(KT_ARCH, v->scen, ++v->step,
		    "handler.convert=%u handler.discard=%u discard.gpa=%#llx"
		    " discard.size=%#llx discard.to_private=%u discard.same=%d",
		    c->converts, c->discards, (unsigned long long)c->gpa,
		    (unsigned long long)c->size, c->to_private, c->same);
}

/* The default conversion changed nothing: the same fault came straight
 * back, so the library gave it to "other" (none set: to the VMM) instead
 * of converting again until the repeat guard trips. */
static void
expect_noop_once(struct kt_vm *v, int rc, const struct conv_seen *c,
		 const struct memfault_vcpu_stats *st, uint64_t flags,
		 uint64_t kernel_flags)
{
	uint64_t ps = kt_page_size();

	ck_assert_msg(rc == MEMFAULT_RUN_MEMORY_FAULT,
		      "%s: dispatch returned %d, want MEMFAULT_RUN_MEMORY_FAULT",
		      v->scen, rc);
	ck_assert_int_eq(v->get_fault_rc, 0);
	ck_assert_uint_eq(v->fault.gpa, KT_TEST_GPA);
	ck_assert_uint_eq(v->fault.size, ps);
	ck_assert_uint_eq(v->fault.flags, flags);
	ck_assert_uint_eq(v->fault.kernel_flags, kernel_flags);
	ck_assert_int_eq(v->fault.error, -EFAULT);
	ck_assert_uint_eq(c->converts, 0);
	ck_assert_uint_eq(c->discards, 1);
	ck_assert(c->same);
	ck_assert_uint_eq(c->gpa, KT_TEST_GPA);
	ck_assert_uint_eq(c->size, ps);
	ck_assert_uint_eq(c->to_private, !!(flags & MEMFAULT_FAULT_PRIVATE));
	ck_assert_uint_eq(st->conversions, 1);
	ck_assert_uint_eq(st->repeat_trips, 0);
	ck_assert_uint_eq(st->memory_faults, 2);
	ck_assert_uint_eq(st->other_faults, 1);
	ck_assert_uint_eq(st->to_vmm, 1);
}

START_TEST(swprot_dispatch_default)
{
	int rc;
	struct memfault_vcpu_stats st;
	struct conv_seen c;
	struct kt_vm v;

	kt_vm_create(&v, KVM_X86_SW_PROTECTED_VM, "swprot-dispatch-default");
	kt_region_normal(&v, KT_PATTERN);
	ck_assert_int_eq(kt_vm_set_attributes(&v, KT_TEST_GPA, KT_TEST_SIZE,
					      KVM_MEMORY_ATTRIBUTE_PRIVATE),
			 0);
	conv_handlers(&v, &c, false);
	kt_vcpu_create(&v, KT_ENTRY_LOAD);
	rc = kt_dispatch(&v);
	kres_conv(&v, &c);
	kt_stats(&v, &st);
	expect_noop_once(&v, rc, &c, &st, MEMFAULT_FAULT_PRIVATE,
			 KVM_MEMORY_EXIT_FLAG_PRIVATE);
	/* What resolves it in this VM type: the range made shared. */
	ck_assert_int_eq(kt_vm_set_attributes(&v, v.fault.gpa, v.fault.size, 0),
			 0);
	kt_expect_report(&v, kt_dispatch(&v), KT_PATTERN);
	kt_expect_exit(&v, kt_dispatch(&v), KVM_EXIT_HLT);
	kt_vm_destroy(&v);
}
END_TEST

START_TEST(swprot_dispatch_convert)
{
	struct memfault_vcpu_stats st;
	struct conv_seen c;
	struct kt_vm v;

	kt_vm_create(&v, KVM_X86_SW_PROTECTED_VM, "swprot-dispatch-convert");
	kt_region_normal(&v, KT_PATTERN);
	ck_assert_int_eq(kt_vm_set_attributes(&v, KT_TEST_GPA, KT_TEST_SIZE,
					      KVM_MEMORY_ATTRIBUTE_PRIVATE),
			 0);
	conv_handlers(&v, &c, true);
	kt_vcpu_create(&v, KT_ENTRY_LOAD);
	kt_expect_report(&v, kt_dispatch(&v), KT_PATTERN);
	kt_expect_exit(&v, kt_dispatch(&v), KVM_EXIT_HLT);
	kres_conv(&v, &c);
	kt_stats(&v, &st);
	ck_assert_uint_eq(c.converts, 1);
	ck_assert_uint_eq(c.discards, 0);
	ck_assert_uint_eq(st.conversions, 1);
	ck_assert_uint_eq(st.memory_faults, 1);
	ck_assert_uint_eq(st.retries, 1);
	kt_vm_destroy(&v);
}
END_TEST

START_TEST(swprot_dispatch_shared)
{
	int rc;
	struct memfault_vcpu_stats st;
	struct conv_seen c;
	struct kt_vm v;

	kt_vm_create(&v, KVM_X86_SW_PROTECTED_VM, "swprot-dispatch-shared");
	kt_region_gmem(&v, GUEST_MEMFD_FLAG_MMAP, KT_PATTERN);
	conv_handlers(&v, &c, false);
	kt_vcpu_create(&v, KT_ENTRY_LOAD);
	kt_vm_close_gmem(&v);
	rc = kt_dispatch(&v);
	kres_conv(&v, &c);
	kt_stats(&v, &st);
	expect_noop_once(&v, rc, &c, &st, 0, 0);
	kt_vm_destroy(&v);
}
END_TEST

Suite *
kt_suite_swprot(void)
{
	return tc_suite("kernel-swprot", "swprot", 60,
			swprot_features,
			swprot_private,
			swprot_dispatch_default,
			swprot_dispatch_convert,
			swprot_dispatch_shared,
			NULL);
}
#endif

#ifndef KT_NO_MAIN
int
main(void)
{
	kt_init();
#if KT_X86
	if (kt_kvm_fd() >= 0) {
		int types = ioctl(kt_kvm_fd(), KVM_CHECK_EXTENSION,
				  KVM_CAP_VM_TYPES);

		if (types < 0 || !(types & (1 << KVM_X86_SW_PROTECTED_VM)))
			return tc_skip(NULL,
				       "VM type 1 (KVM_X86_SW_PROTECTED_VM) is not "
				       "offered by this kernel (KVM_CAP_VM_TYPES = "
				       "%#x): it needs CONFIG_KVM_SW_PROTECTED_VM",
				       types < 0 ? 0 : types);
	}
	return kt_main(kt_suite_swprot());
#else
	return tc_skip(NULL,
		       "KVM_X86_SW_PROTECTED_VM exists on x86_64 only");
#endif
}
#endif
