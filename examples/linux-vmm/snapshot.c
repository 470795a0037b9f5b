/* SPDX-License-Identifier: MIT */
/*
 * snapshot.c - linux-vmm's lazy restore (Firecracker-style): the paused
 * guest's vCPU and device state is saved, its RAM becomes a new page
 * source's image, and after vmm_setup() made a fresh VM whose RAM is all
 * missing again, the state goes into it. The guest goes on from where it
 * stopped, its pages served lazily.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "linux-vmm.h"

/*
 * The vCPU state, as GET/SET ioctl pairs, in the order it is restored:
 * sregs (the APIC base) before the LAPIC; the MSRs (not in this table:
 * their list is the host's) go after the LAPIC and before the events.
 * KVM_GET_XSAVE fills the legacy 4 KiB area.
 */
static const struct vcpu_part {
	unsigned long get, set;
	size_t size;
} parts[] = {
	{ KVM_GET_MP_STATE, KVM_SET_MP_STATE, sizeof(struct kvm_mp_state) },
	{ KVM_GET_REGS, KVM_SET_REGS, sizeof(struct kvm_regs) },
	{ KVM_GET_SREGS, KVM_SET_SREGS, sizeof(struct kvm_sregs) },
	{ KVM_GET_XSAVE, KVM_SET_XSAVE, sizeof(struct kvm_xsave) },
	{ KVM_GET_XCRS, KVM_SET_XCRS, sizeof(struct kvm_xcrs) },
	{ KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS, sizeof(struct kvm_debugregs) },
	{ KVM_GET_LAPIC, KVM_SET_LAPIC, sizeof(struct kvm_lapic_state) },
	{ KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS,
	  sizeof(struct kvm_vcpu_events) },
};
#define NPARTS    (sizeof(parts) / sizeof(parts[0]))
#define PART_MSRS (NPARTS - 1) /* the MSRs go in before this part */

static struct {
	struct {
		void *part[NPARTS];
		struct kvm_msrs *msrs;
	} cpu[MAX_CPUS];
	struct kvm_irqchip chip[3]; /* PIC master, PIC slave, IOAPIC */
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
} snap;

/* Every MSR KVM lists that this vCPU lets us read, with its value. */
static int
save_msrs(struct vmm *v, int fd, struct kvm_msrs **ret)
{
	struct kvm_msr_list probe = { .nmsrs = 0 }, *list;
	struct kvm_msrs *msrs, *one;
	uint32_t n = 0;
	int r;

	if (ioctl(v->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) && errno != E2BIG)
		return -errno;
	list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(uint32_t));
	msrs = calloc(1, sizeof(*msrs) +
				 probe.nmsrs * sizeof(struct kvm_msr_entry));
	one = calloc(1, sizeof(*one) + sizeof(struct kvm_msr_entry));
	r = list && msrs && one ? 0 : -ENOMEM;
	if (!r) {
		list->nmsrs = probe.nmsrs;
		if (ioctl(v->kvm_fd, KVM_GET_MSR_INDEX_LIST, list))
			r = -errno;
	}
	for (uint32_t i = 0; !r && i < list->nmsrs; i++) {
		one->nmsrs = 1;
		one->entries[0].index = list->indices[i];
		if (ioctl(fd, KVM_GET_MSRS, one) == 1)
			msrs->entries[n++] = one->entries[0];
	}
	free(one);
	free(list);
	if (r) {
		free(msrs);
		return r;
	}
	msrs->nmsrs = n;
	*ret = msrs;
	return 0;
}

/* KVM_SET_MSRS returns how many it set: all, or we say where it stopped. */
static int
restore_msrs(int fd, struct kvm_msrs *msrs)
{
	int n = ioctl(fd, KVM_SET_MSRS, msrs);

	if (n == (int)msrs->nmsrs)
		return 0;
	fprintf(stderr, "linux-vmm: KVM_SET_MSRS set %d of %u (stopped at 0x%x)\n",
		n, msrs->nmsrs,
		n >= 0 && n < (int)msrs->nmsrs ? msrs->entries[n].index : 0);
	return -EIO;
}

/* The RAM image: the boot image with the paused guest's pages over it. */
static int
snapshot_image(struct vmm *v)
{
	uint64_t present = 0;
	/*
	 * The boot image, rebuilt: it is what the first page source held,
	 * so it is what every page never fetched still holds.
	 */
	int r = build_image(v);

	if (r)
		return r;
	for (uint64_t p = 0; p < v->npages; p++) {
		/* mutant "stale": restore the boot image, not the guest's */
		if (is_mutant(v, "stale"))
			break;
		if (memfault_region_is_missing(v->region, p) == 0) {
			memcpy(v->image + p * PAGE, v->ram + p * PAGE, PAGE);
			present++;
		}
	}
	printf("linux-vmm: snapshot at tick %d: %" PRIu64 " pages present of %" PRIu64 "\n",
	       v->last_tick, present, v->npages);
	return 0;
}

/* Save the paused VM's state and its RAM image (v->image). */
int
snapshot_save(struct vmm *v)
{
	int r;

	for (int i = 0; i < v->ncpus; i++) {
		int fd = memfault_vcpu_get_fd(v->cpu[i].vcpu);

		for (size_t k = 0; k < NPARTS; k++) {
			snap.cpu[i].part[k] = calloc(1, parts[k].size);
			if (!snap.cpu[i].part[k])
				return -ENOMEM;
			if (ioctl(fd, parts[k].get, snap.cpu[i].part[k]))
				return fail("saving vCPU state", -errno);
		}
		r = save_msrs(v, fd, &snap.cpu[i].msrs);
		if (r)
			return fail("saving MSRs", r);
	}
	for (uint32_t i = 0; i < 3; i++) {
		snap.chip[i].chip_id = i;
		if (ioctl(v->vm_fd, KVM_GET_IRQCHIP, &snap.chip[i]))
			return fail("KVM_GET_IRQCHIP", -errno);
	}
	if (ioctl(v->vm_fd, KVM_GET_PIT2, &snap.pit) ||
	    ioctl(v->vm_fd, KVM_GET_CLOCK, &snap.clock))
		return fail("saving the PIT and clock", -errno);
	return snapshot_image(v);
}

/* Restore into the fresh VM: its devices first, then every vCPU. */
int
snapshot_restore(struct vmm *v)
{
	struct kvm_clock_data clock = { .clock = snap.clock.clock };
	int r;

	for (uint32_t i = 0; i < 3; i++)
		if (ioctl(v->vm_fd, KVM_SET_IRQCHIP, &snap.chip[i]))
			return fail("KVM_SET_IRQCHIP", -errno);
	if (ioctl(v->vm_fd, KVM_SET_PIT2, &snap.pit) ||
	    ioctl(v->vm_fd, KVM_SET_CLOCK, &clock))
		return fail("restoring the PIT and clock", -errno);
	for (int i = 0; i < v->ncpus; i++) {
		int fd = memfault_vcpu_get_fd(v->cpu[i].vcpu);

		for (size_t k = 0; k < NPARTS; k++) {
			if (k == PART_MSRS) {
				r = restore_msrs(fd, snap.cpu[i].msrs);
				if (r)
					return r;
			}
			if (ioctl(fd, parts[k].set, snap.cpu[i].part[k]))
				return fail("restoring vCPU state", -errno);
			free(snap.cpu[i].part[k]);
			snap.cpu[i].part[k] = NULL;
		}
		free(snap.cpu[i].msrs);
		snap.cpu[i].msrs = NULL;
	}
	return 0;
}
