/* SPDX-License-Identifier: MIT */
/*
 * kvmsim internals shared by the simulator's source files. Not for tests:
 * they use kvmsim.h.
 */
#ifndef KVMSIM_PRIVATE_H
#define KVMSIM_PRIVATE_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <linux/kvm.h>

#include <kvm-userfault-proposed.h>
#include "kvmsim.h"

#ifndef EHWPOISON
#define EHWPOISON 133
#endif

/*
 * Constants of the other architecture's asm/kvm.h, which the vendored
 * uapi of the host does not have. The values are the kernel's.
 */
#ifndef KVM_X86_DEFAULT_VM
#define KVM_X86_DEFAULT_VM 0
#endif
#ifndef KVM_X86_SW_PROTECTED_VM
#define KVM_X86_SW_PROTECTED_VM KVMSIM_X86_SW_PROTECTED_VM
#endif
/* arch/arm64/include/uapi/asm/kvm.h: struct kvm_vcpu_init is 32 bytes */
#define KVMSIM_ARM_VCPU_INIT         _IOC(_IOC_WRITE, KVMIO, 0xae, 32)
#define KVMSIM_ARM_PREFERRED_TARGET  _IOC(_IOC_READ, KVMIO, 0xaf, 32)
#define KVMSIM_ARM_TARGET_GENERIC_V8 5

/* Memslot flags userspace may pass, and the proposed userfault flag. */
#define KVMSIM_MEM_USERFAULT ((uint32_t)KVM_MEM_USERFAULT)

enum sim_kind {
	SIM_KVM = KVMSIM_FD_KVM,
	SIM_VM = KVMSIM_FD_VM,
	SIM_VCPU = KVMSIM_FD_VCPU,
	SIM_GMEM = KVMSIM_FD_GMEM,
};

/* Common head of every simulated object; refs is atomic. */
struct sim_obj {
	int kind;
	int fd; /* the memfd backing it, -1 once closed */
	unsigned refs;
	pid_t pid; /* creator: ioctls from another process give EIO */
};

struct sim_vm;

/* A guest_memfd (virt/kvm/guest_memfd.c struct kvm_gmem). */
struct sim_gmem {
	struct sim_obj obj;
	struct sim_vm *vm; /* holds a reference, as the gmem file holds kvm */
	uint64_t size;
	uint64_t flags;
	dev_t dev; /* of the memfd: to recognise it in /proc/self/maps */
	ino_t ino;
};

/* A memslot (struct kvm_memory_slot). */
struct sim_slot {
	uint32_t slot;  /* as_id << 16 | id, as userspace gave it */
	uint32_t flags; /* KVM_MEM_* */
	uint64_t gpa;
	uint64_t size;
	uint64_t hva;
	uint64_t gmem_offset;
	/*
	 * Bound guest_memfd, or NULL. NULL with KVM_MEM_GUEST_MEMFD in flags
	 * means the gmem fd was closed: kvm_gmem_release() unbinds, and
	 * kvm_gmem_get_pfn() then fails with EFAULT.
	 */
	struct sim_gmem *gmem;
	bool gmem_only; /* KVM_MEMSLOT_GMEM_ONLY: the gmem had FLAG_MMAP */
	uint64_t userfault_bitmap;
	/*
	 * The secondary MMU (stage-2/EPT/NPT) of a KVM_MEM_USERFAULT slot:
	 * two bits per page, SIM_MAPPED_SHARED and SIM_MAPPED_PRIVATE << 0/1
	 * at bit 2 * page, set when an access completes and cleared by the
	 * invalidations that zap it (kvmsim-run.c). A mapped page is not
	 * faulted on, so its userfault bit is not read. Reserved with
	 * MAP_NORESERVE on first use, NULL while nothing is mapped.
	 */
	unsigned long *mapped;
	size_t mapped_bytes;
	/* counted in kvmsim__g.nr_mapped_slots (kvmsim__slot_count()) */
	bool mmu_counted;
};

#define SIM_MAPPED_SHARED  1u
#define SIM_MAPPED_PRIVATE 2u
#define SIM_MAPPED_ANY     3u

/* A [start, end) range of gfns with KVM_MEMORY_ATTRIBUTE_PRIVATE. */
struct sim_range {
	uint64_t start, end;
};

/*
 * A hardware-poisoned host page: the memory, not the gfn that maps it
 * (memory_failure() marks the folio). @gmem set: page @addr (an offset)
 * of that guest_memfd; forgotten when its fd is closed. @gmem NULL: the
 * host page at virtual address @addr.
 */
struct sim_poison {
	struct sim_gmem *gmem;
	uint64_t addr;
};

/* An injected guest_memfd error. */
struct sim_gmem_err {
	uint64_t gfn;
	int err;
	unsigned count;
};

struct sim_vm {
	struct sim_obj obj;
	pthread_mutex_t lock; /* slots, attributes, poison, errors, vcpu ids */
	uint64_t type;
	unsigned ipa_bits; /* arm64 */
	struct sim_slot *slots;
	size_t nslots, slots_cap;
	struct sim_range *priv;
	size_t npriv, priv_cap;
	struct sim_poison *poison;
	size_t npoison, poison_cap;
	size_t ngmem_poison; /* entries of poison with a gmem */
	struct sim_gmem_err *errs;
	size_t nerrs, errs_cap;
	uint32_t *vcpu_ids;
	size_t nvcpus, vcpus_cap;
};

enum sim_pending {
	PEND_NONE = 0,
	PEND_MMIO, /* an MMIO exit; a read completes into acc */
	PEND_IO,   /* x86 IO exit; an IN completes into acc */
	PEND_HLT,  /* x86 HLT */
};

struct sim_vcpu {
	struct sim_obj obj;
	struct sim_vm *vm; /* holds a reference */
	uint32_t id;
	pthread_mutex_t mutex; /* vcpu->mutex: held for every vCPU ioctl */
	struct kvm_run *run;   /* the simulator's shared mapping of the memfd */
	size_t run_size;
	struct kvmsim_step *steps;
	size_t nsteps;
	size_t pc;
	uint64_t acc;
	int pending; /* enum sim_pending */
	bool pending_read;
	uint32_t pending_len;
	bool has_sigmask; /* KVM_SET_SIGNAL_MASK */
	sigset_t sigmask;
};

/* Global state (kvmsim.c). */
struct sim_global {
	pthread_mutex_t lock; /* registry, configuration */
	bool configured;
	struct kvmsim_config cfg;
	struct kvmsim_step *env_steps; /* KVMSIM_SCRIPT, env mode only */
	size_t env_nsteps;
	bool env_script;
	struct sim_obj **fds; /* indexed by fd; allocated once, never moved */
	size_t nfds;          /* its capacity */
	size_t fds_hwm;       /* no object at or above this index (lock) */
	struct kvmsim_stats stats; /* updated with atomics */
	size_t page_size;
	/* atomic: slots that may have a page mapped, so that munmap() and
	 * friends look for VMs only then (counted before a fault reads its
	 * bit: kvmsim__slot_count()) */
	long nr_mapped_slots;
};

extern struct sim_global kvmsim__g;

#define SIM_STAT_ADD(field, n)                                                 \
	__atomic_fetch_add(&kvmsim__g.stats.field, (n), __ATOMIC_RELAXED)

/* kvmsim.c */
int kvmsim__open_kvm(int flags);
int kvmsim__ioctl(int fd, unsigned long req, void *arg, bool *handled);
int kvmsim__close(int fd, bool *handled);
int kvmsim__real_close(int fd);
size_t kvmsim__page_size(void);
struct sim_obj *kvmsim__get(int fd, int kind);
void kvmsim__put(struct sim_obj *o);
bool kvmsim__x86(void);
unsigned kvmsim__level(void);
bool kvmsim__quirk(uint64_t q);
struct sim_slot *kvmsim__find_slot(struct sim_vm *vm, uint64_t gfn);
bool kvmsim__gfn_private(struct sim_vm *vm, uint64_t gfn);
bool kvmsim__gmem_poisoned(struct sim_vm *vm, const struct sim_gmem *g,
			   uint64_t offset);
bool kvmsim__hva_poisoned(struct sim_vm *vm, uint64_t hva);
int kvmsim__take_gmem_error(struct sim_vm *vm, uint64_t gfn);
int kvmsim__check_steps(const struct kvmsim_step *steps, size_t n, bool x86);

/* kvmsim-mem.c: -EFAULT for an unreadable/unwritable user address */
int kvmsim__user_read(void *dst, const void *user_src, size_t n);
int kvmsim__user_write(void *user_dst, const void *src, size_t n);
/* process_vm_readv() is unavailable: qemu-user, or a seccomp sandbox */
bool kvmsim__emulated(void);
/*
 * The file mapped at @hva (/proc/self/maps): its device, inode and the file
 * offset of @hva. -ENOENT if nothing or anonymous memory is mapped there.
 */
int kvmsim__hva_file(uint64_t hva, dev_t *ret_dev, ino_t *ret_ino,
		     uint64_t *ret_off);

/* kvmsim-run.c */
int kvmsim__vcpu_run(struct sim_vcpu *vcpu);

/*
 * The modelled secondary MMU (kvmsim.c). vm->lock held for each. A slot's
 * mapped pages: is page @off mapped for a @kind (SIM_MAPPED_*) access,
 * record it mapped, and zap pages [first, first + count) of @kind (ANY:
 * both). kvmsim__unmap_slot() drops the whole table (slot deleted, moved,
 * KVM_MEM_USERFAULT toggled).
 */
bool kvmsim__slot_mapped(const struct sim_slot *s, uint64_t off, unsigned kind);
void kvmsim__slot_count(struct sim_slot *s);
void kvmsim__slot_map(struct sim_slot *s, uint64_t off, unsigned kind);
void kvmsim__slot_zap(struct sim_slot *s, uint64_t first, uint64_t count,
		      unsigned kind);
void kvmsim__unmap_slot(struct sim_slot *s);
/*
 * MMU-notifier events (kvmsim-interpose.c): the host mapping of
 * [hva, hva + len) is invalidated (munmap, mprotect, madvise), or
 * [off, off + len) of guest_memfd @fd is punched; every VM's slots over it
 * are zapped.
 */
void kvmsim__invalidate_hva(uint64_t hva, uint64_t len);
void kvmsim__invalidate_gmem(int fd, uint64_t off, uint64_t len);

#endif /* KVMSIM_PRIVATE_H */
