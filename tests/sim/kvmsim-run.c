/* SPDX-License-Identifier: MIT */
/*
 * kvmsim: KVM_RUN. The entry sequence and the guest access paths follow
 * kvm_arch_vcpu_ioctl_run() and the page-fault handlers of x86
 * (arch/x86/kvm/mmu/mmu.c) and arm64 (arch/arm64/kvm/mmu.c, nested.c) of
 * Linux 7.2, plus KVM Userfault v3 where the level has it; each step names
 * the kernel function it models. The rows of the shared notes these
 * produce are checked by test-kvmsim.c.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kvmsim-private.h"

/* Results of a guest access besides 0 (exit, ret 0) and -errno. */
#define ACCESS_DONE 1 /* completed in the "kernel": next step */

static size_t
page_size(void)
{
	return kvmsim__page_size();
}

/* ---- guest memory through the host virtual address ---- */

/* A read/write of user memory that fails with EFAULT instead of crashing. */
static int
hva_rw(uint64_t hva, void *buf, size_t len, bool write)
{
	void *p = (void *)(uintptr_t)hva;

	return write ? kvmsim__user_write(p, buf, len)
		     : kvmsim__user_read(buf, p, len);
}

/* Is there a VMA at @hva at all? (arm64 user_mem_abort()'s vma_lookup()) */
static bool
hva_mapped(uint64_t hva)
{
	unsigned char v;
	uint64_t page = hva & ~(uint64_t)(page_size() - 1);

	return !(mincore((void *)(uintptr_t)page, page_size(), &v) < 0 &&
		 errno == ENOMEM);
}

/* ---- exits ---- */

/*
 * kvm_prepare_memory_fault_exit(): gpa and size describe the faulting
 * range; flags are PRIVATE and, with KVM Userfault, USERFAULT.
 */
static void
memory_fault_exit(struct sim_vcpu *v, uint64_t gpa, uint64_t flags)
{
	v->run->exit_reason = KVM_EXIT_MEMORY_FAULT;
	v->run->memory_fault.flags = flags;
	v->run->memory_fault.gpa = gpa;
	v->run->memory_fault.size = page_size();
}

/* x86 kvm_mmu_prepare_memory_fault_exit(): gfn << PAGE_SHIFT, PAGE_SIZE. */
static void
x86_fault_exit(struct sim_vcpu *v, uint64_t gpa, bool priv)
{
	memory_fault_exit(v, gpa & ~(uint64_t)(page_size() - 1),
			  priv ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0);
}

/*
 * arm64 gmem_abort() and kvm_handle_vncr_abort(): the IPA comes from HPFAR,
 * which has a 4K granule whatever the host page size (on 16K/64K hosts the
 * gpa need not be aligned to the size).
 */
static void
arm64_gmem_fault_exit(struct sim_vcpu *v, uint64_t gpa)
{
	memory_fault_exit(v, gpa & ~(uint64_t)0xfff, 0);
}

/* An emulated MMIO exit (x86 emulator / arm64 io_mem_abort()). */
static int
mmio_exit(struct sim_vcpu *v, uint64_t gpa, uint32_t len, bool write,
	  uint64_t value)
{
	struct kvm_run *run = v->run;

	run->exit_reason = KVM_EXIT_MMIO;
	run->mmio.phys_addr = gpa;
	run->mmio.len = len;
	run->mmio.is_write = write;
	memset(run->mmio.data, 0, sizeof(run->mmio.data));
	if (write)
		memcpy(run->mmio.data, &value, len); /* little-endian hosts */
	v->pending = PEND_MMIO;
	v->pending_read = !write;
	v->pending_len = len;
	return 0;
}

/* ---- KVM Userfault: kvm_gfn_userfault() in the fault path ---- */

static bool
tracks_mappings(const struct sim_slot *s)
{
	return kvmsim__level() == KVMSIM_LEVEL_7_2_UF &&
	       (s->flags & KVMSIM_MEM_USERFAULT);
}

static unsigned
map_kind(bool priv)
{
	return priv ? SIM_MAPPED_PRIVATE : SIM_MAPPED_SHARED;
}

/*
 * Returns 0 when the page is not a userfault, else -EFAULT: with a memory
 * fault exit (flags USERFAULT, plus PRIVATE for a private access) when the
 * bit is set. The word is a native unsigned long; bit i is host page i
 * from the slot base. It is read with a load-acquire, pairing with the
 * store-release userspace uses to clear a bit.
 *
 * Only a fault reads the bitmap: a page already in the secondary MMU is
 * accessed without one, so a bit set for it has no effect until the
 * mapping is zapped (measured on 7.2.13 + KVM Userfault, x86_64 and arm64:
 * no exit after setting the bit of a mapped page; an exit after
 * MADV_DONTNEED, an mprotect() round trip or a guest_memfd punch of that
 * page, or after the flag is turned off and on).
 */
static int
userfault_check(struct sim_vcpu *v, struct sim_slot *s, uint64_t gfn,
		bool priv)
{
	const uint64_t bits = 8 * sizeof(unsigned long);
	uint64_t off = gfn - s->gpa / page_size();
	unsigned long *word, probe, val;

	if (!tracks_mappings(s) || kvmsim__slot_mapped(s, off, map_kind(priv)))
		return 0;
	/* before the bit is read: see kvmsim__slot_count() */
	kvmsim__slot_count(s);
	/*
	 * A NULL bitmap passes KVM_SET_USER_MEMORY_REGION2 (access_ok()) and
	 * hits WARN_ON_ONCE(!memslot->userfault_bitmap) here, which means
	 * "not a userfault" (measured: the guest runs with no exit).
	 */
	if (!s->userfault_bitmap)
		return 0;
	word = (unsigned long *)(uintptr_t)s->userfault_bitmap + off / bits;
	SIM_STAT_ADD(bitmap_reads, 1);
	/* copy_from_user(): an unreadable word is an error, not a crash */
	if (hva_rw((uint64_t)(uintptr_t)word, &probe, sizeof(probe), false)) {
		SIM_STAT_ADD(bitmap_faults, 1);
		/*
		 * x86 __kvm_mmu_faultin_pfn() returns the -EFAULT bare (exit
		 * reason stays 0); the arm64 part tests
		 * `if (kvm_gfn_userfault(...))`, so the error counts as a
		 * userfault of the page (both measured on the KVM Userfault
		 * kernels with the bitmap on a PROT_NONE page).
		 */
		if (!kvmsim__x86())
			memory_fault_exit(v, gfn * page_size(),
					  KVM_MEMORY_EXIT_FLAG_USERFAULT);
		return -EFAULT;
	}
	/* seq_cst: after the count (kvmsim__slot_count()) */
	val = __atomic_load_n(word, __ATOMIC_SEQ_CST);
	if (!(val & (1ul << (off % bits))))
		return 0;
	memory_fault_exit(v, gfn * page_size(),
			  KVM_MEMORY_EXIT_FLAG_USERFAULT |
				  (priv ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0));
	return -EFAULT;
}

/* A completed access maps the page (kvm_tdp_mmu_map(), stage2_map). */
static int
mapped(struct sim_slot *s, uint64_t gfn, bool priv, int r)
{
	if (r == ACCESS_DONE && tracks_mappings(s))
		kvmsim__slot_map(s, gfn - s->gpa / page_size(), map_kind(priv));
	return r;
}

/* ---- guest_memfd: kvm_gmem_get_pfn() and the access itself ---- */

static int
gmem_get_pfn(struct sim_vm *vm, const struct sim_slot *s, uint64_t gfn)
{
	int err;

	/* kvm_gmem_get_file(): NULL once the gmem fd was closed */
	if (!s->gmem)
		return -EFAULT;
	/* an injected folio allocation / preparation failure */
	err = kvmsim__take_gmem_error(vm, gfn);
	if (err)
		return kvmsim__quirk(KVMSIM_Q_GMEM_ERRNO) ? -err : -EFAULT;
	/* folio_test_hwpoison(): of this file's page, whatever gfn maps it */
	if (kvmsim__gmem_poisoned(
		    vm, s->gmem, s->gmem_offset + (gfn * page_size() - s->gpa)))
		return -EHWPOISON;
	return 0;
}

static int
gmem_rw(const struct sim_slot *s, uint64_t gpa, void *buf, size_t len,
	bool write)
{
	off_t off = (off_t)(s->gmem_offset + (gpa - s->gpa));
	ssize_t n;

	if (write)
		n = pwrite(s->gmem->obj.fd, buf, len, off);
	else
		n = pread(s->gmem->obj.fd, buf, len, off);
	return n == (ssize_t)len ? 0 : -EFAULT;
}

/* ---- the hva path of a normal memslot ---- */

struct access {
	uint64_t gpa, gfn;
	uint32_t len;
	bool write;
	uint64_t value; /* to store */
	uint64_t *acc;  /* loaded value */
	bool sigbus;    /* kvm_send_hwpoison_signal() after unlocking */
	uint64_t sigbus_addr;
};

static int
memory_rw(struct access *a,
	  int (*rw)(const struct sim_slot *, uint64_t, void *, size_t, bool),
	  const struct sim_slot *s)
{
	uint64_t val = a->write ? a->value : 0;
	int r = rw(s, a->gpa, &val, a->len, a->write);

	if (r)
		return r;
	if (a->write) {
		SIM_STAT_ADD(stores, 1);
	} else {
		*a->acc = val; /* zero-extended, little-endian hosts */
		SIM_STAT_ADD(loads, 1);
	}
	return ACCESS_DONE;
}

static int
hva_slot_rw(const struct sim_slot *s, uint64_t gpa, void *buf, size_t len,
	    bool write)
{
	return hva_rw(s->hva + (gpa - s->gpa), buf, len, write);
}

/*
 * hva_to_pfn() failing: a hwpoisoned page sends SIGBUS BUS_MCEERR_AR to the
 * vCPU thread and re-enters, where the pending signal ends KVM_RUN with
 * EINTR (observed as `anon-hwpoison`); anything else is a bare -EFAULT
 * (kvm_handle_error_pfn(), observed as `badhva`).
 */
static int
hva_path(struct sim_vm *vm, const struct sim_slot *s, struct access *a)
{
	uint64_t hva = s->hva + (a->gfn * page_size() - s->gpa);

	/* the host page behind the hva, whatever gfn maps it */
	if (kvmsim__hva_poisoned(vm, hva)) {
		a->sigbus = true;
		a->sigbus_addr = hva;
		return -EINTR;
	}
	return memory_rw(a, hva_slot_rw, s);
}

/* ---- x86: kvm_mmu_page_fault() for a TDP fault ---- */

static int
x86_access(struct sim_vcpu *v, const struct kvmsim_step *st, struct access *a)
{
	struct sim_vm *vm = v->vm;
	unsigned lv = kvmsim__level();
	struct sim_slot *s;
	bool priv;
	int r;

	/*
	 * fault->is_private: the C-bit on SNP/TDX (F_PRIVATE/F_SHARED); in a
	 * SW_PROTECTED VM kvm_mmu_page_fault() sets PFERR_PRIVATE_ACCESS iff
	 * the page has the PRIVATE attribute (seen on the swprot kernel in
	 * tests/kernel/test-kernel-swprot.c).
	 */
	if (st->flags & KVMSIM_F_PRIVATE)
		priv = true;
	else if (st->flags & KVMSIM_F_SHARED)
		priv = false;
	else
		priv = kvmsim__gfn_private(vm, a->gfn);

	if (lv < KVMSIM_LEVEL_6_8) {
		/* 6.1 has no exit 39: what it cannot resolve is bare */
		if (priv)
			return -EFAULT;
	} else if (priv != kvmsim__gfn_private(vm, a->gfn)) {
		/* kvm_mmu_faultin_pfn(): implicit conversion request */
		x86_fault_exit(v, a->gpa, priv);
		return -EFAULT;
	}

	s = kvmsim__find_slot(vm, a->gfn);
	if (!s) {
		/* kvm_handle_noslot_fault(): private: exit 39; shared: MMIO */
		if (priv) {
			x86_fault_exit(v, a->gpa, true);
			return -EFAULT;
		}
		return mmio_exit(v, a->gpa, a->len, a->write, a->value);
	}

	/* __kvm_mmu_faultin_pfn(): KVM Userfault v3 05/15 checks first */
	r = userfault_check(v, s, a->gfn, priv);
	if (r)
		return r;

	if (priv || s->gmem_only) {
		/* kvm_mmu_faultin_pfn_gmem() */
		if (!(s->flags & KVM_MEM_GUEST_MEMFD)) {
			x86_fault_exit(v, a->gpa, priv);
			return -EFAULT;
		}
		r = gmem_get_pfn(vm, s, a->gfn);
		if (r) {
			x86_fault_exit(v, a->gpa, priv);
			return r;
		}
		return mapped(s, a->gfn, priv, memory_rw(a, gmem_rw, s));
	}

	/* KVM_PFN_ERR_RO_FAULT -> RET_PF_EMULATE: a write becomes MMIO */
	if (a->write && (s->flags & KVM_MEM_READONLY))
		return mmio_exit(v, a->gpa, a->len, true, a->value);
	return mapped(s, a->gfn, false, hva_path(vm, s, a));
}

/* ---- arm64: kvm_handle_guest_abort() ---- */

static int
arm64_access(struct sim_vcpu *v, const struct kvmsim_step *st, struct access *a)
{
	struct sim_vm *vm = v->vm;
	struct sim_slot *s = kvmsim__find_slot(vm, a->gfn);
	int r;

	/* no memslot, or a write to a read-only one: io_mem_abort() */
	if (!s || (a->write && (s->flags & KVM_MEM_READONLY)))
		return mmio_exit(v, a->gpa, a->len, a->write, a->value);

	if (s->flags & KVM_MEM_GUEST_MEMFD) {
		/*
		 * gmem_abort(), or kvm_translate_vncr() for an access through
		 * the VNCR page. KVM Userfault in gmem_abort() is not in v3
		 * (which predates it); placed as Firecracker's 6.18 carry does.
		 */
		r = userfault_check(v, s, a->gfn, false);
		if (r)
			return r;
		r = gmem_get_pfn(vm, s, a->gfn);
		if (r) {
			arm64_gmem_fault_exit(v, a->gpa);
			/* kvm_handle_vncr_abort(): "Inform userspace", ret 0 */
			if ((st->flags & KVMSIM_F_VNCR) &&
			    kvmsim__quirk(KVMSIM_Q_ARM64_VNCR_RET0))
				return 0;
			return r;
		}
		return mapped(s, a->gfn, false, memory_rw(a, gmem_rw, s));
	}

	/* user_mem_abort(): vma_lookup() fails before anything else */
	if (!hva_mapped(s->hva + (a->gpa - s->gpa)))
		return -EFAULT;
	/* KVM Userfault v3 06/15: after the VMA lookup, before faulting in */
	r = userfault_check(v, s, a->gfn, false);
	if (r)
		return r;
	return mapped(s, a->gfn, false, hva_path(vm, s, a));
}

/* One LOAD or STORE: ACCESS_DONE, 0 (exit to userspace) or -errno. */
static int
guest_access(struct sim_vcpu *v, const struct kvmsim_step *st)
{
	struct access a = {
		.gpa = st->gpa,
		.gfn = st->gpa / page_size(),
		.len = st->len,
		.write = st->op == KVMSIM_OP_STORE,
		.value = (st->flags & KVMSIM_F_ACC) ? v->acc : st->value,
		.acc = &v->acc,
	};
	int r;

	pthread_mutex_lock(&v->vm->lock);
	r = kvmsim__x86() ? x86_access(v, st, &a) : arm64_access(v, st, &a);
	pthread_mutex_unlock(&v->vm->lock);
	if (a.sigbus) {
		/* send_sig_mceerr(BUS_MCEERR_AR, hva, PAGE_SHIFT, current) */
		pid_t tid = (pid_t)syscall(SYS_gettid);
		siginfo_t si;

		memset(&si, 0, sizeof(si));
		si.si_signo = SIGBUS;
		si.si_code = BUS_MCEERR_AR;
		si.si_addr = (void *)(uintptr_t)a.sigbus_addr;
		si.si_addr_lsb = (short)__builtin_ctzl(page_size());
		/*
		 * Where process_vm_readv() is missing we are likely under
		 * qemu-user, which takes a host SIGBUS with a fault code for a
		 * fault of its own and aborts: send a plain one there.
		 */
		if (kvmsim__emulated())
			syscall(SYS_tgkill, getpid(), tid, SIGBUS);
		else
			syscall(SYS_rt_tgsigqueueinfo, getpid(), tid, SIGBUS,
				&si);
	}
	return r;
}

/* ---- signals ---- */

/*
 * Would a signal pending now be delivered with the caller's mask
 * (kvm_sigset_activate())? Then the kernel's run loop stops with
 * KVM_EXIT_INTR (kvm_handle_signal_exit(), or
 * kvm_xfer_to_guest_mode_handle_work()). A signal whose action is to be
 * ignored is not delivered: the kernel would have discarded it, but ours
 * are blocked, so they stay pending.
 */
static bool
signal_deliverable(const sigset_t *caller)
{
	sigset_t pend;

	if (sigpending(&pend))
		return false;
	for (int s = 1; s < NSIG; s++) {
		struct sigaction sa;

		if (sigismember(&pend, s) != 1 || sigismember(caller, s) == 1)
			continue;
		if (sigaction(s, NULL, &sa) == 0 &&
		    !(sa.sa_flags & SA_SIGINFO)) {
			if (sa.sa_handler == SIG_IGN)
				continue;
			if (sa.sa_handler == SIG_DFL &&
			    (s == SIGCHLD || s == SIGURG || s == SIGWINCH ||
			     s == SIGCONT))
				continue;
		}
		return true;
	}
	return false;
}

/* ---- KVM_RUN ---- */

static uint64_t
read_data(const void *p, uint32_t len)
{
	uint64_t v = 0;

	memcpy(&v, p, len); /* little-endian hosts */
	return v;
}

/*
 * Complete the exit userspace was given: x86 complete_userspace_io()
 * always; arm64 kvm_handle_mmio_return() only if exit_reason is still
 * KVM_EXIT_MMIO (KVMSIM_Q_MMIO_READBACK), else the instruction runs again.
 */
static void
complete_pending(struct sim_vcpu *v)
{
	struct kvm_run *run = v->run;

	if (v->pending == PEND_NONE)
		return;
	if (!kvmsim__x86() && kvmsim__quirk(KVMSIM_Q_MMIO_READBACK) &&
	    __atomic_load_n(&run->exit_reason, __ATOMIC_RELAXED) !=
		    KVM_EXIT_MMIO) {
		SIM_STAT_ADD(reexecutions, 1);
		v->pending = PEND_NONE;
		return;
	}
	if (v->pending_read) {
		if (v->pending == PEND_IO)
			v->acc = read_data((const char *)run + page_size(),
					   v->pending_len);
		else if (v->pending == PEND_MMIO)
			v->acc = read_data(run->mmio.data, v->pending_len);
	}
	v->pc++;
	v->pending = PEND_NONE;
	SIM_STAT_ADD(completions, 1);
}

/* Execute steps until one exits to userspace; the caller's mask applies. */
static int
execute(struct sim_vcpu *v, const sigset_t *caller)
{
	struct kvm_run *run = v->run;

	for (;;) {
		const struct kvmsim_step *st;
		int r;

		if (signal_deliverable(caller)) {
			run->exit_reason = KVM_EXIT_INTR;
			SIM_STAT_ADD(signal_exits, 1);
			return -EINTR;
		}
		if (v->pc >= v->nsteps) {
			/* x86: triple fault; arm64: PSCI SYSTEM_OFF */
			if (kvmsim__x86()) {
				run->exit_reason = KVM_EXIT_SHUTDOWN;
			} else {
				run->exit_reason = KVM_EXIT_SYSTEM_EVENT;
				run->system_event.type =
					KVM_SYSTEM_EVENT_SHUTDOWN;
				run->system_event.ndata = 0;
			}
			return 0;
		}
		st = &v->steps[v->pc];
		switch (st->op) {
		case KVMSIM_OP_MMIO_READ:
			return mmio_exit(v, st->gpa, st->len, false, 0);
		case KVMSIM_OP_MMIO_WRITE:
			return mmio_exit(v, st->gpa, st->len, true,
					 (st->flags & KVMSIM_F_ACC)
						 ? v->acc
						 : st->value);
		case KVMSIM_OP_IO_IN:
		case KVMSIM_OP_IO_OUT: {
			bool out = st->op == KVMSIM_OP_IO_OUT;
			uint64_t val =
				(st->flags & KVMSIM_F_ACC) ? v->acc : st->value;

			/*
			 * x86 kernel_pio() miss: the data page follows kvm_run
			 */
			run->exit_reason = KVM_EXIT_IO;
			run->io.direction =
				out ? KVM_EXIT_IO_OUT : KVM_EXIT_IO_IN;
			run->io.size = (uint8_t)st->len;
			run->io.port = (uint16_t)st->gpa;
			run->io.count = 1;
			run->io.data_offset = page_size();
			memset((char *)run + page_size(), 0, 8);
			if (out)
				memcpy((char *)run + page_size(), &val,
				       st->len);
			v->pending = PEND_IO;
			v->pending_read = !out;
			v->pending_len = st->len;
			return 0;
		}
		case KVMSIM_OP_HLT:
			/*
			 * no in-kernel irqchip:
			 * kvm_emulate_halt() exits to userspace
			 */
			run->exit_reason = KVM_EXIT_HLT;
			v->pending = PEND_HLT;
			v->pending_read = false;
			return 0;
		case KVMSIM_OP_SPIN:
			/* The guest loops; only a signal gets the vCPU out. */
			sigsuspend(caller);
			run->exit_reason = KVM_EXIT_INTR;
			SIM_STAT_ADD(signal_exits, 1);
			return -EINTR;
		case KVMSIM_OP_LOAD:
		case KVMSIM_OP_STORE:
			r = guest_access(v, st);
			if (r == ACCESS_DONE) {
				v->pc++;
				continue;
			}
			if (r == -EINTR) {
				/*
				 * hwpoison: the SIGBUS is
				 * pending, the loop stops
				 */
				run->exit_reason = KVM_EXIT_INTR;
				SIM_STAT_ADD(signal_exits, 1);
			}
			/*
			 * A fault leaves pc alone: the
			 * access runs again on entry.
			 */
			return r;
		default:
			return -EINVAL;
		}
	}
}

static void
count_exit(const struct kvm_run *run, int r)
{
	uint32_t er = run->exit_reason;

	if (er < KVMSIM_NR_EXIT_REASONS)
		SIM_STAT_ADD(exits[er], 1);
	if (er == KVM_EXIT_MEMORY_FAULT) {
		SIM_STAT_ADD(memory_faults, 1);
		if (run->memory_fault.flags & KVM_MEMORY_EXIT_FLAG_USERFAULT)
			SIM_STAT_ADD(userfaults, 1);
	} else if (r == -EFAULT) {
		SIM_STAT_ADD(bare_efaults, 1);
	}
}

/*
 * kvm_arch_vcpu_ioctl_run(), called with the vCPU mutex held. Returns 0 or
 * a negative errno; kvm_run is filled in as the kernel would.
 */
int
kvmsim__vcpu_run(struct sim_vcpu *v)
{
	struct kvm_run *run = v->run;
	sigset_t all, old;
	int r;

	SIM_STAT_ADD(runs, 1);

	/*
	 * Entering the "system call": from here on a signal stays pending
	 * until we return, as it does in the kernel, whatever it arrives
	 * during. Blocking only later would let a kick's signal run its
	 * handler between the immediate_exit sample below and the guest
	 * loop, and the vCPU would then spin with nothing left to stop it.
	 * The mask is restored before returning, so the handler runs as on a
	 * return from the system call.
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);

	/* (1) complete the previous IO/MMIO exit */
	complete_pending(v);

	/* (2) wants_to_run = !immediate_exit, sampled once */
	if (__atomic_load_n(&run->immediate_exit, __ATOMIC_RELAXED)) {
		SIM_STAT_ADD(immediate_exits, 1);
		SIM_STAT_ADD(run_errors, 1);
		SIM_STAT_ADD(eintr, 1);
		if (!kvmsim__quirk(KVMSIM_Q_STALE_EXIT_ON_IE))
			run->exit_reason = KVM_EXIT_INTR;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		return -EINTR;
	}

	/* (3) x86 vcpu_run() / arm64 after vcpu_load(): a fresh exit */
	run->exit_reason = KVM_EXIT_UNKNOWN;
	run->flags = 0;

	/*
	 * (4) run the guest, checking pending signals against the caller's
	 * mask (or KVM_SET_SIGNAL_MASK's) between steps, as the kernel's run
	 * loop checks signal_pending().
	 */
	r = execute(v, v->has_sigmask ? &v->sigmask : &old);
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	count_exit(run, r);
	if (r < 0) {
		SIM_STAT_ADD(run_errors, 1);
		if (r == -EINTR)
			SIM_STAT_ADD(eintr, 1);
	}
	return r;
}
