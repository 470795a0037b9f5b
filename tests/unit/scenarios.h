/* SPDX-License-Identifier: MIT */
/*
 * Scenarios on the simulator: each drives one VM and vCPU through the
 * public API, asserts the classification it expects on every model, and
 * records the VMM-visible outcomes so that the equivalence suite can
 * compare architectures.
 */
#ifndef MEMFAULT_SCENARIOS_H
#define MEMFAULT_SCENARIOS_H

#include "sim-env.h"

#define MAX_OUTCOMES 16

struct record {
	int n;
	struct outcome o[MAX_OUTCOMES];
};

static inline struct outcome
rec_run(struct sim_env *e, struct record *rec)
{
	struct outcome o = sim_env_run(e);

	/* the last exit differs by design: x86 SHUTDOWN, arm64 SYSTEM_EVENT */
	if (o.r == MEMFAULT_RUN_EXIT && (o.exit_reason == KVM_EXIT_SHUTDOWN ||
					 o.exit_reason == KVM_EXIT_SYSTEM_EVENT))
		o.exit_reason = KVM_EXIT_SHUTDOWN;
	ck_assert_int_lt(rec->n, MAX_OUTCOMES);
	rec->o[rec->n++] = o;
	return o;
}

/* Run to the script's end, whose last load gave @acc. */
static inline void
scn_end(struct sim_env *e, struct record *rec, uint64_t acc)
{
	struct outcome o = rec_run(e, rec);

	ck_assert_uint_eq(o.exit_reason, KVM_EXIT_SHUTDOWN);
	ck_assert_uint_eq(sim_env_acc(e), acc);
}

static inline bool
has_gmem(const struct sim_env *e)
{
	return e->level >= KVMSIM_LEVEL_7_2;
}

/* A guest write, a read whose value the VMM supplies, and a write of that
 * value: the read-back must survive (arm64 reads exit_reason on entry). */
/* A guest_memfd slot 2 of @pages pages; false (and nothing to test) only
 * where the model has none. */
static inline bool
scn_add_gmem(struct sim_env *e, size_t pages)
{
	if (sim_env_add_gmem(e, 2, pages, sim_env_gmem_flags(e)) < 0) {
		ck_assert(!has_gmem(e));
		return false;
	}
	return true;
}

static inline void
scn_mmio_roundtrip(struct sim_env *e, struct record *rec)
{
	struct outcome o;
	uint32_t v = 0x4321;

	sim_env_script(e, "mmio_write:0x10000000:4:0x1234;"
			  "mmio_read:0x10000000:4;mmio_write:0x10000000:4:acc");
	o = rec_run(e, rec);
	ck_assert_int_eq(o.r, MEMFAULT_RUN_EXIT);
	ck_assert_uint_eq(o.exit_reason, KVM_EXIT_MMIO);
	ck_assert_uint_eq(e->run->mmio.phys_addr, MMIO_GPA);
	ck_assert_uint_eq(e->run->mmio.is_write, 1);
	ck_assert_uint_eq(e->run->mmio.data[0], 0x34);
	o = rec_run(e, rec);
	ck_assert_uint_eq(o.exit_reason, KVM_EXIT_MMIO);
	ck_assert_uint_eq(e->run->mmio.is_write, 0);
	memcpy(e->run->mmio.data, &v, sizeof(v));
	o = rec_run(e, rec);
	ck_assert_uint_eq(o.exit_reason, KVM_EXIT_MMIO);
	ck_assert_uint_eq(e->run->mmio.is_write, 1);
	ck_assert_mem_eq(e->run->mmio.data, &v, sizeof(v));
	o = rec_run(e, rec);
	ck_assert_int_eq(o.r, MEMFAULT_RUN_EXIT);
	ck_assert_uint_eq(o.exit_reason, KVM_EXIT_SHUTDOWN);
}

/* A pending MMIO load is completed by the KVM_RUN that a kick interrupts;
 * the library must leave KVM_EXIT_MMIO in place for it. */
static inline void
scn_mmio_readback_across_kick(struct sim_env *e, struct record *rec)
{
	struct outcome o;
	uint32_t v = 0x77;

	sim_env_script(e, "mmio_read:0x10000000:4;mmio_write:0x10000000:4:acc");
	o = rec_run(e, rec);
	ck_assert_uint_eq(o.exit_reason, KVM_EXIT_MMIO);
	memcpy(e->run->mmio.data, &v, sizeof(v));
	ck_assert_int_eq(memfault_vcpu_kick(e->vcpu), 0);
	o = rec_run(e, rec);
	ck_assert_int_eq(o.r, MEMFAULT_RUN_INTERRUPTED);
	ck_assert_uint_eq(sim_env_acc(e), 0x77);
	o = rec_run(e, rec);
	ck_assert_uint_eq(o.exit_reason, KVM_EXIT_MMIO);
	ck_assert_uint_eq(e->run->mmio.is_write, 1);
	ck_assert_mem_eq(e->run->mmio.data, &v, sizeof(v));
}

/* A guest_memfd slot whose fd is closed: exit 39, EFAULT (gmem-close). */
static inline void
scn_gmem_closed(struct sim_env *e, struct record *rec)
{
	struct outcome o;
	int r = sim_env_add_gmem(e, 2, 2, sim_env_gmem_flags(e));

	if (!has_gmem(e)) {
		ck_assert_int_lt(r, 0);
		return;
	}
	ck_assert_int_eq(r, 0);
	sim_env_script(e, "load:0x30001000:4");
	scn_end(e, rec, 0x6b6b6b6b);
	close(e->gmem_fd);
	e->gmem_fd = -1;
	sim_env_script(e, "load:0x30001000:4");
	o = rec_run(e, rec);
	ck_assert_int_eq(o.r, MEMFAULT_RUN_MEMORY_FAULT);
	ck_assert_uint_eq(o.f.gpa, GMEM_GPA + e->page);
	ck_assert_uint_eq(o.f.size, e->page);
	ck_assert_uint_eq(o.f.flags, 0);
	ck_assert_int_eq(o.f.error, -EFAULT);
	ck_assert_uint_eq(o.f.origin, MEMFAULT_ORIGIN_ERRNO);
}

/* A poisoned guest_memfd page: exit 39 with EHWPOISON (gmem-hwpoison). */
static inline void
scn_gmem_hwpoison(struct sim_env *e, struct record *rec)
{
	struct outcome o;

	if (!scn_add_gmem(e, 2))
		return;
	ck_assert_int_eq(kvmsim_poison(e->vm_fd, GMEM_GPA), 0);
	sim_env_script(e, "load:0x30000000:8");
	o = rec_run(e, rec);
	ck_assert_int_eq(o.r, MEMFAULT_RUN_MEMORY_FAULT);
	ck_assert_uint_eq(o.f.gpa, GMEM_GPA);
	ck_assert_uint_eq(o.f.flags, MEMFAULT_FAULT_HWPOISON);
	ck_assert_int_eq(o.f.error, -EHWPOISON);
	ck_assert_uint_eq(o.f.origin, MEMFAULT_ORIGIN_ERRNO);
}

/* guest_memfd ENOMEM then EIO, each with the exit set: still faults with
 * their address, not errors that lose it; the retry then succeeds. */
static inline void
scn_gmem_other_errno(struct sim_env *e, struct record *rec)
{
	static const int errs[] = { ENOMEM, EIO };
	struct outcome o;

	if (!scn_add_gmem(e, 2))
		return;
	sim_env_script(e, "load:0x30000000:4");
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(kvmsim_inject_gmem_error(e->vm_fd, GMEM_GPA,
							  errs[i], 1), 0);
		o = rec_run(e, rec);
		ck_assert_int_eq(o.r, MEMFAULT_RUN_MEMORY_FAULT);
		ck_assert_uint_eq(o.f.gpa, GMEM_GPA);
		ck_assert_int_eq(o.f.error, -errs[i]);
		ck_assert_uint_eq(o.f.origin, MEMFAULT_ORIGIN_OTHER_ERRNO);
	}
	scn_end(e, rec, 0x6b6b6b6b);
}

/* A normal slot without a usable mapping: a bare EFAULT (badhva). */
static inline void
scn_unannotated_efault(struct sim_env *e, struct record *rec)
{
	struct outcome o;

	sim_env_add_ram(e, 1, 2, 0);
	ck_assert_int_eq(mprotect(e->ram, e->ram_size, PROT_NONE), 0);
	sim_env_script(e, "load:0x20000000:4");
	o = rec_run(e, rec);
	ck_assert_int_eq(o.r, -EFAULT);
	ck_assert_int_eq(mprotect(e->ram, e->ram_size, PROT_READ | PROT_WRITE),
			 0);
	scn_end(e, rec, 0x5a5a5a5a);
}

/* After a memory fault, an EINTR must not leave the stale exit 39 behind:
 * the library resets it before entry, the kernel leaves it (STALE_EXIT). */
static inline void
scn_stale_exit_reset(struct sim_env *e, struct record *rec)
{
	struct outcome o;

	if (!scn_add_gmem(e, 1))
		return;
	close(e->gmem_fd);
	e->gmem_fd = -1;
	sim_env_script(e, "load:0x30000000:4");
	o = rec_run(e, rec);
	ck_assert_int_eq(o.r, MEMFAULT_RUN_MEMORY_FAULT);
	ck_assert_uint_eq(e->run->exit_reason, KVM_EXIT_MEMORY_FAULT);
	ck_assert_int_eq(memfault_vcpu_kick(e->vcpu), 0);
	o = rec_run(e, rec);
	ck_assert_int_eq(o.r, MEMFAULT_RUN_INTERRUPTED);
	ck_assert_uint_eq(e->run->exit_reason, KVM_EXIT_UNKNOWN);
	ck_assert_uint_eq(e->run->immediate_exit, 0);
	/* the guest goes on faulting: a fresh exit each time */
	o = rec_run(e, rec);
	ck_assert_int_eq(o.r, MEMFAULT_RUN_MEMORY_FAULT);
}

/* KVM Userfault v3: a set bit exits with USERFAULT; publishing the page
 * (contents first, then the bit cleared with release) lets it through. */
static inline void
scn_userfault(struct sim_env *e, struct record *rec)
{
	struct memfault_features feat;
	struct outcome o;
	unsigned char *page1;

	ck_assert_int_eq(memfault_vm_get_features(e->vm, &feat, sizeof(feat)),
			 0);
	if (e->level != KVMSIM_LEVEL_7_2_UF) {
		struct kvm_userspace_memory_region2_uf r;
		unsigned long bm = 0;
		void *p = mmap(NULL, e->page, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		ck_assert(!(feat.flags & MEMFAULT_FEATURE_KVM_USERFAULT));
		memset(&r, 0, sizeof(r));
		r.slot = 1;
		r.flags = KVM_MEM_USERFAULT;
		r.guest_phys_addr = RAM_GPA;
		r.memory_size = e->page;
		r.userspace_addr = (uintptr_t)p;
		r.userfault_bitmap = (uintptr_t)&bm;
		ck_assert_int_ne(ioctl(e->vm_fd, KVM_SET_USER_MEMORY_REGION2, &r),
				 0);
		munmap(p, e->page);
		return;
	}
	ck_assert(feat.flags & MEMFAULT_FEATURE_KVM_USERFAULT);
	ck_assert_int_eq(feat.userfault_probe_error, 0);
	sim_env_add_ram(e, 1, 4, KVM_MEM_USERFAULT);
	e->bitmap[0] = 0xf;
	sim_env_script(e, "load:0x20000000:1;store:0x20001000:1:0x11");
	o = rec_run(e, rec);
	ck_assert_int_eq(o.r, MEMFAULT_RUN_MEMORY_FAULT);
	ck_assert_uint_eq(o.f.flags, MEMFAULT_FAULT_USERFAULT);
	ck_assert_uint_eq(o.f.gpa, RAM_GPA);
	ck_assert_uint_eq(o.f.size, e->page);
	ck_assert_int_eq(o.f.error, -EFAULT);
	e->bitmap[0] &= ~1ul;
	o = rec_run(e, rec);
	ck_assert_int_eq(o.r, MEMFAULT_RUN_MEMORY_FAULT);
	ck_assert_uint_eq(o.f.gpa, RAM_GPA + e->page);
	page1 = (unsigned char *)e->ram + e->page;
	page1[0] = 0x22; /* install the contents, then publish */
	__atomic_fetch_and(&e->bitmap[0], ~2ul, __ATOMIC_RELEASE);
	scn_end(e, rec, 0x5a);
	ck_assert_uint_eq(page1[0], 0x11);
}

/* The same through the library's regions: claim, fill, publish. */
static inline void
scn_userfault_region(struct sim_env *e, struct record *rec)
{
	MEMFAULT_OPTS(memfault_region_opts, ro,
		      .flags = MEMFAULT_REGION_USERFAULT |
			       MEMFAULT_REGION_MISSING);
	struct memfault_region *r, *found;
	struct outcome o;
	uint64_t page, missing;
	unsigned char *mem;

	mem = mmap(NULL, 8 * e->page, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(mem, MAP_FAILED);
	if (e->level != KVMSIM_LEVEL_7_2_UF) {
		ck_assert_int_eq(memfault_region_new(e->vm, 1, RAM_GPA,
						     8 * e->page, mem, &ro, &r),
				 -EOPNOTSUPP);
		munmap(mem, 8 * e->page);
		return;
	}
	ck_assert_int_eq(memfault_region_new(e->vm, 1, RAM_GPA, 8 * e->page,
					     mem, &ro, &r), 0);
	sim_env_script(e, "load:0x20005000:4;store:0x20007ff8:8:0x1122334455667788");
	for (int i = 0; i < 2; i++) {
		o = rec_run(e, rec);
		ck_assert_int_eq(o.r, MEMFAULT_RUN_MEMORY_FAULT);
		ck_assert(o.f.flags & MEMFAULT_FAULT_USERFAULT);
		ck_assert_int_eq(memfault_vm_find_region(e->vm, o.f.gpa, &found,
							 &page), 0);
		ck_assert_ptr_eq(found, r);
		ck_assert_uint_eq(page, i ? 7 : 5);
		ck_assert_int_eq(memfault_region_claim(r, page, 0),
				 MEMFAULT_CLAIM_FETCH);
		memset(mem + page * e->page, 0x40 + (int)page, e->page);
		ck_assert_int_eq(memfault_region_publish(r, page, 1), 0);
	}
	scn_end(e, rec, 0x45454545);
	ck_assert_uint_eq(mem[8 * e->page - 1], 0x11);
	ck_assert_int_eq(memfault_region_count_missing(r, &missing), 0);
	ck_assert_uint_eq(missing, 6);
	memfault_region_free(r);
	munmap(mem, 8 * e->page);
}

typedef void (*scenario_fn)(struct sim_env *e, struct record *rec);

static const struct {
	const char *name;
	scenario_fn fn;
} scenarios[] = {
	{ "mmio_roundtrip", scn_mmio_roundtrip },
	{ "mmio_readback_across_kick", scn_mmio_readback_across_kick },
	{ "gmem_closed", scn_gmem_closed },
	{ "gmem_hwpoison", scn_gmem_hwpoison },
	{ "gmem_other_errno", scn_gmem_other_errno },
	{ "unannotated_efault", scn_unannotated_efault },
	{ "stale_exit_reset", scn_stale_exit_reset },
	{ "userfault", scn_userfault },
	{ "userfault_region", scn_userfault_region },
};
#define NR_SCENARIOS ((int)(sizeof(scenarios) / sizeof(scenarios[0])))

#endif
