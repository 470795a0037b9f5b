/* SPDX-License-Identifier: MIT */
/*
 * kvm-userfault-proposed.h - EXPERIMENTAL, PROPOSED, NOT MERGED uapi.
 *
 * *** This is NOT part of the Linux uapi. ***
 *
 * It mirrors the KVM Userfault interface proposed in James Houghton's v3
 * series "KVM: Introduce KVM Userfault"
 * (lore Message-ID: 20250618042424.330664-1-jthoughton@google.com).
 * That series is not merged in any released kernel (checked against the
 * Linux 7.2 headers vendored next to this file); its ABI may change or never
 * land. Everything here is written for libmemfault, not copied from the
 * kernel, and must only be used behind a runtime probe.
 *
 * What the series proposes:
 *   - a memslot flag, KVM_MEM_USERFAULT, accepted by
 *     KVM_SET_USER_MEMORY_REGION2;
 *   - a new field of struct kvm_userspace_memory_region2, userfault_bitmap
 *     (a userspace pointer to one bit per page of the slot), carved out of
 *     the head of pad2[] so the struct size and ioctl number stay the same;
 *   - a KVM_EXIT_MEMORY_FAULT flag, KVM_MEMORY_EXIT_FLAG_USERFAULT, set when
 *     a vCPU touches a page whose bit is set.
 *
 * No KVM_CAP_USERFAULT is defined here, on purpose. Across the versions of
 * the series its capability number was 236, 239, 240, 243 and 245, and every
 * one of them is taken by a merged capability in Linux 7.2
 * (KVM_CAP_PRE_FAULT_MEMORY, KVM_CAP_ARM_WRITABLE_IMP_ID_REGS,
 * KVM_CAP_ARM_EL2, KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED,
 * KVM_CAP_ARM_SEA_TO_USER), so KVM_CHECK_EXTENSION on any of them says
 * nothing about userfault support. Support is probed instead by trying to
 * create a memslot with KVM_MEM_USERFAULT: a kernel without the feature
 * rejects the unknown flag with EINVAL.
 *
 * Not installed; never include this from include/memfault/memfault.h.
 */
#ifndef MEMFAULT_KVM_USERFAULT_PROPOSED_H
#define MEMFAULT_KVM_USERFAULT_PROPOSED_H

#include <stddef.h>
#include <linux/kvm.h>

#ifndef KVM_MEM_USERFAULT
#define KVM_MEM_USERFAULT (1UL << 3)
#endif

#ifndef KVM_MEMORY_EXIT_FLAG_USERFAULT
#define KVM_MEMORY_EXIT_FLAG_USERFAULT (1ULL << 4)
#endif

/*
 * struct kvm_userspace_memory_region2 as the series extends it. Pass it to
 * KVM_SET_USER_MEMORY_REGION2 (cast to struct kvm_userspace_memory_region2);
 * the layout is the same apart from userfault_bitmap replacing pad2[0].
 */
struct kvm_userspace_memory_region2_uf {
	__u32 slot;
	__u32 flags;
	__u64 guest_phys_addr;
	__u64 memory_size;
	__u64 userspace_addr;
	__u64 guest_memfd_offset;
	__u32 guest_memfd;
	__u32 pad1;
	__u64 userfault_bitmap; /* byte offset 48: was pad2[0] */
	__u64 pad2[13];
};

#ifdef __cplusplus
#define MEMFAULT_UF_STATIC_ASSERT(expr, msg) static_assert(expr, msg)
#else
#define MEMFAULT_UF_STATIC_ASSERT(expr, msg) _Static_assert(expr, msg)
#endif

#define MEMFAULT_UF_SAME_OFFSET(field)                                       \
	MEMFAULT_UF_STATIC_ASSERT(                                           \
		offsetof(struct kvm_userspace_memory_region2_uf, field) ==   \
			offsetof(struct kvm_userspace_memory_region2, field), \
		"kvm_userspace_memory_region2_uf." #field " offset mismatch")

MEMFAULT_UF_STATIC_ASSERT(sizeof(struct kvm_userspace_memory_region2_uf) ==
				  sizeof(struct kvm_userspace_memory_region2),
			  "kvm_userspace_memory_region2_uf size mismatch");
MEMFAULT_UF_STATIC_ASSERT(sizeof(struct kvm_userspace_memory_region2_uf) == 160,
			  "kvm_userspace_memory_region2_uf is not 160 bytes");
MEMFAULT_UF_STATIC_ASSERT(
	offsetof(struct kvm_userspace_memory_region2_uf, userfault_bitmap) == 48,
	"userfault_bitmap is not at byte offset 48");
MEMFAULT_UF_SAME_OFFSET(slot);
MEMFAULT_UF_SAME_OFFSET(flags);
MEMFAULT_UF_SAME_OFFSET(guest_phys_addr);
MEMFAULT_UF_SAME_OFFSET(memory_size);
MEMFAULT_UF_SAME_OFFSET(userspace_addr);
MEMFAULT_UF_SAME_OFFSET(guest_memfd_offset);
MEMFAULT_UF_SAME_OFFSET(guest_memfd);

#undef MEMFAULT_UF_SAME_OFFSET
#undef MEMFAULT_UF_STATIC_ASSERT

#endif /* MEMFAULT_KVM_USERFAULT_PROPOSED_H */
