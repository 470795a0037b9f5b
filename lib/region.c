/* SPDX-License-Identifier: MIT */
/*
 * Regions (memslots registered through the library) and their userfault
 * bitmaps.
 *
 * Two bits per page, both in native unsigned long words:
 *   missing[] - shared with KVM (the proposed userfault_bitmap): set means
 *               "exit on access"; cleared only by publish, with release.
 *   busy[]    - library-private: set while one thread fetches the page.
 * Waiters sleep on the 32-bit half of the busy word that holds their bit
 * (futex), so no per-page object and no lock exist.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "barrier.h"
#include "kvm-userfault-proposed.h"
#include "memfault-private.h"
#include "region-private.h"


static int
set_memslot(struct memfault_region *r, uint32_t flags, uint64_t size)
{
	struct memfault_memslot m = {
		.slot = r->slot,
		.flags = flags,
		.gpa = r->gpa,
		.size = size,
		.hva = r->hva,
		.gmem_offset = r->gmem_offset,
		.gmem_fd = r->gmem_fd,
		.bitmap = r->missing,
	};

	return memfault_set_memslot(r->vm->fd,
				    r->vm->features.flags &
					    MEMFAULT_FEATURE_USER_MEMORY2,
				    &m);
}

static int
vm_insert_region(struct memfault_vm *vm, struct memfault_region *r)
{
	size_t lo = 0, hi = vm->nr_regions;
	struct memfault_region **v;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (vm->regions[mid]->gpa < r->gpa)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo > 0) {
		const struct memfault_region *p = vm->regions[lo - 1];

		if (p->gpa + p->size > r->gpa)
			return -EEXIST;
	}
	if (lo < vm->nr_regions && r->gpa + r->size > vm->regions[lo]->gpa)
		return -EEXIST;
	for (size_t i = 0; i < vm->nr_regions; i++)
		if (vm->regions[i]->slot == r->slot &&
		    !(vm->regions[i]->flags & MEMFAULT_REGION_NO_MEMSLOT) &&
		    !(r->flags & MEMFAULT_REGION_NO_MEMSLOT))
			return -EEXIST;
	v = realloc(vm->regions, (vm->nr_regions + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	memmove(&v[lo + 1], &v[lo], (vm->nr_regions - lo) * sizeof(*v));
	v[lo] = r;
	vm->regions = v;
	vm->nr_regions++;
	vm->regions_gen++;
	return 0;
}

static void
vm_remove_region(struct memfault_vm *vm, struct memfault_region *r)
{
	memfault_ptr_array_remove(vm->regions, &vm->nr_regions, r);
	vm->regions_gen++;
}

static void
region_unmap(struct memfault_region *r)
{
	if (r->missing)
		munmap(r->missing, r->map_size);
	if (r->busy)
		munmap(r->busy, r->map_size);
	free(r);
}

MEMFAULT_EXPORT int
memfault_region_new(struct memfault_vm *vm, uint32_t slot, uint64_t gpa,
		    uint64_t size, void *hva,
		    const struct memfault_region_opts *opts,
		    struct memfault_region **ret_region)
{
	const uint64_t known = MEMFAULT_REGION_USERFAULT |
			       MEMFAULT_REGION_GUEST_MEMFD |
			       MEMFAULT_REGION_MISSING |
			       MEMFAULT_REGION_NO_MEMSLOT;
	const uint64_t pmask = memfault_page_size - 1;
	struct memfault_region *r;
	uint64_t flags;
	uint32_t kvm_flags;
	int err;

	if (!vm || !ret_region || !OPTS_VALID(opts, memfault_region_opts))
		return -EINVAL;
	flags = OPTS_GET(opts, memfault_region_opts, flags, 0);
	kvm_flags = OPTS_GET(opts, memfault_region_opts, kvm_flags, 0);
	if ((flags & ~known) ||
	    (kvm_flags & ~(uint32_t)(KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY)))
		return -EINVAL;
	if (!size || ((gpa | size | (uintptr_t)hva) & pmask) ||
	    gpa + size < gpa || (uintptr_t)hva + size < (uintptr_t)hva)
		return -EINVAL;
	if ((flags & MEMFAULT_REGION_NO_MEMSLOT) &&
	    (flags & (MEMFAULT_REGION_USERFAULT | MEMFAULT_REGION_GUEST_MEMFD)))
		return -EINVAL;
	if (!hva && !(flags & (MEMFAULT_REGION_NO_MEMSLOT |
			       MEMFAULT_REGION_GUEST_MEMFD)))
		return -EINVAL;
	if ((flags & MEMFAULT_REGION_GUEST_MEMFD) &&
	    (OPTS_GET(opts, memfault_region_opts, guest_memfd, -1) < 0 ||
	     (OPTS_GET(opts, memfault_region_opts, guest_memfd_offset, 0) &
	      pmask)))
		return -EINVAL;
	if ((flags & MEMFAULT_REGION_USERFAULT) &&
	    !(vm->features.flags & MEMFAULT_FEATURE_KVM_USERFAULT))
		return -EOPNOTSUPP;
	/*
	 * Sizes KVM refuses are refused before any memory is touched: with
	 * MEMFAULT_REGION_MISSING the bitmap is committed in full before the
	 * memslot exists (2^44 bytes took 3.2 s and 511 MiB to learn that).
	 * __kvm_set_memory_region(): npages > KVM_MEM_MAX_NR_PAGES is
	 * EINVAL, as is a guest_memfd range that wraps.
	 */
	if (!(flags & MEMFAULT_REGION_NO_MEMSLOT) &&
	    (size >> memfault_page_shift > KVM_MAX_NR_PAGES ||
	     OPTS_GET(opts, memfault_region_opts, guest_memfd_offset, 0) +
			     size <
		     OPTS_GET(opts, memfault_region_opts, guest_memfd_offset,
			      0)))
		return -EINVAL;
	/* the bitmap must fit in the address space (32-bit hosts) */
	if ((size >> memfault_page_shift) / 8 >= SIZE_MAX / 2)
		return -ENOMEM;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->vm = vm;
	r->gpa = gpa;
	r->size = size;
	r->hva = hva;
	r->slot = slot;
	r->flags = flags;
	r->npages = size / memfault_page_size;
	r->nwords = (size_t)((r->npages + BITS_PER_WORD - 1) / BITS_PER_WORD);
	r->map_size = (r->nwords * sizeof(unsigned long) + pmask) & ~pmask;
	r->gmem_fd = OPTS_GET(opts, memfault_region_opts, guest_memfd, -1);
	r->gmem_offset = OPTS_GET(opts, memfault_region_opts,
				  guest_memfd_offset, 0);
	/* Reserved, not committed: untouched words cost no memory, so a
	 * 1 TiB region (2^28 bits) is free until it is used. Every word of
	 * a MEMFAULT_REGION_MISSING bitmap is written below: that one is
	 * accounted, so that the kernel's overcommit check refuses a size it
	 * cannot back with ENOMEM here, not with the OOM killer in memset(). */
	r->missing = mmap(NULL, r->map_size, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS |
				  (flags & MEMFAULT_REGION_MISSING
					   ? 0
					   : MAP_NORESERVE),
			  -1, 0);
	r->busy = mmap(NULL, r->map_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r->missing == MAP_FAILED || r->busy == MAP_FAILED) {
		err = -ENOMEM;
		if (r->missing == MAP_FAILED)
			r->missing = NULL;
		if (r->busy == MAP_FAILED)
			r->busy = NULL;
		goto err;
	}
	/* The safe order: every bit is set before KVM can see the slot. */
	if (flags & MEMFAULT_REGION_MISSING) {
		memset(r->missing, 0xff, r->nwords * sizeof(unsigned long));
		if (r->npages % BITS_PER_WORD)
			r->missing[r->nwords - 1] =
				(1ul << (r->npages % BITS_PER_WORD)) - 1;
	}
	err = vm_insert_region(vm, r);
	if (err)
		goto err;
	r->kvm_flags = kvm_flags;
	if (flags & MEMFAULT_REGION_GUEST_MEMFD)
		r->kvm_flags |= KVM_MEM_GUEST_MEMFD;
	if (flags & MEMFAULT_REGION_USERFAULT)
		r->kvm_flags |= KVM_MEM_USERFAULT;
	if (!(flags & MEMFAULT_REGION_NO_MEMSLOT)) {
		err = set_memslot(r, r->kvm_flags, size);
		if (err) {
			vm_remove_region(vm, r);
			goto err;
		}
	}
	/* the VM object outlives its regions, as it outlives its vCPUs */
	memfault_add(&vm->refs, 1, MEMFAULT_RELAXED);
	*ret_region = r;
	return 0;
err:
	region_unmap(r);
	return err;
}

MEMFAULT_EXPORT void
memfault_region_free(struct memfault_region *r)
{
	struct memfault_trap *trap;

	if (!r)
		return;
	trap = memfault_region_get_trap(r);
	if (trap)
		trap->ops->gone(trap);
	if (!(r->flags & MEMFAULT_REGION_NO_MEMSLOT))
		(void)set_memslot(r, 0, 0);
	vm_remove_region(r->vm, r);
	memfault_vm_unref(r->vm);
	region_unmap(r);
}

MEMFAULT_EXPORT MEMFAULT_HOT int
memfault_vm_find_region(const struct memfault_vm *vm, uint64_t gpa,
			struct memfault_region **ret_region, uint64_t *ret_page)
{
	size_t lo = 0, hi;

	if (!vm)
		return -EINVAL;
	hi = vm->nr_regions;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		struct memfault_region *r = vm->regions[mid];

		if (gpa < r->gpa) {
			hi = mid;
		} else if (gpa - r->gpa >= r->size) {
			lo = mid + 1;
		} else {
			if (ret_region)
				*ret_region = r;
			if (ret_page)
				*ret_page = (gpa - r->gpa) >> memfault_page_shift;
			return 0;
		}
	}
	return -ENOENT;
}

MEMFAULT_EXPORT int
memfault_region_get_info(const struct memfault_region *r,
			 struct memfault_region_info *ret_info, size_t size)
{
	struct memfault_region_info info;

	if (!r || !ret_info || !size)
		return -EINVAL;
	memset(&info, 0, sizeof(info));
	info.gpa = r->gpa;
	info.size = r->size;
	info.hva = (uintptr_t)r->hva;
	info.npages = r->npages;
	info.page_size = memfault_page_size;
	info.bitmap = (uintptr_t)r->missing;
	info.flags = r->flags;
	info.slot = r->slot;
	memfault_copy_out(ret_info, size, &info, sizeof(info));
	return 0;
}
