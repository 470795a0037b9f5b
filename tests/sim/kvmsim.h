/* SPDX-License-Identifier: MIT */
/*
 * kvmsim: a KVM simulator at the system-call boundary, for tests.
 *
 * kvmsim stands in for /dev/kvm on hosts without KVM. It defines open(),
 * open64(), openat(), openat64(), __open_2(), __open64_2(), __openat_2(),
 * __openat64_2(), ioctl() and close(); only the path "/dev/kvm" and the file
 * descriptors that kvmsim handed out are simulated, everything else is
 * forwarded to the C library (dlsym(RTLD_NEXT, ...)). It also defines
 * munmap(), mprotect(), madvise(), fallocate() and fallocate64(), which it
 * always forwards, noting the MMU-notifier events they are on the kernel.
 *
 * The ioctl numbers and struct layouts are the real ones (vendored Linux 7.2
 * uapi, plus the proposed KVM Userfault v3 memslot flag and bitmap). Every
 * simulated object (the /dev/kvm handle, a VM, a vCPU, a guest_memfd) is a
 * real memfd, so fd numbers are unique, fstat() works, a closed fd gives
 * EBADF, and the library maps a vCPU's kvm_run with a plain
 * mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu_fd, 0) of
 * KVM_GET_VCPU_MMAP_SIZE bytes (x86-64: 3 host pages, arm64: 2), shared with
 * the simulator's own mapping. A guest_memfd is a memfd of the requested
 * size: it can be mmap()ed and fallocate(PUNCH_HOLE)d, and a guest access
 * to guest_memfd-backed memory reads or writes that memfd.
 *
 * What it models, per architecture (x86-64, arm64) and kernel level (6.1,
 * 6.8, 7.2, 7.2 plus KVM Userfault v3), follows the kernel's code (each
 * behaviour names the kernel function it comes from) and what real kernels
 * did when tests/kernel/run-nested.sh booted them (doc/kernel-table.md):
 * capability values, memslot validation, guest_memfd, memory attributes,
 * and the KVM_RUN exit paths, including the memory-fault exits and their
 * quirks. tests/sim/test-kvmsim*.c check each modelled behaviour, and the
 * kernel suite's differential check compares the simulator's answers with
 * the real kernels' line by line.
 *
 * How to use it
 * -------------
 * - In a test executable: add kvmsim_dep (meson) to its dependencies. The
 *   simulator is linked into the executable, whose ioctl()/open()/close()
 *   then also serve libmemfault.so. Call kvmsim_reset() first, then use
 *   /dev/kvm as on a real host.
 * - With LD_PRELOAD=.../libkvmsim.so in any program (bindings, demo): the
 *   configuration comes from the environment unless the program calls
 *   kvmsim_reset() itself (e.g. through ctypes):
 *     KVMSIM_ARCH    x86_64 (or x86) | arm64 (or aarch64); default: the host's
 *     KVMSIM_LEVEL   6.1 | 6.8 | 7.2 | 7.2-uf; default 7.2
 *     KVMSIM_QUIRKS  hex quirk mask (KVMSIM_Q_*), e.g. 0x2c; default:
 *                    kvmsim_default_quirks(arch, level)
 *     KVMSIM_SCRIPT  guest script given to every vCPU created (syntax below)
 *   An invalid value makes open("/dev/kvm") fail with EINVAL and prints why
 *   to stderr.
 *
 * Script text syntax (KVMSIM_SCRIPT, kvmsim_parse_script())
 * -------------------------------------------------------
 * Steps are separated by ';' (blanks around tokens are ignored), fields by
 * ':'. Numbers are C literals (0x.., 0.., decimal). VALUE is a number or
 * "acc" (the accumulator). FLAGS is one or more of "private", "shared",
 * "vncr" joined with '+'.
 *   mmio_read:GPA:LEN            KVM_EXIT_MMIO read; the data supplied in
 *                                kvm_run.mmio.data reaches acc on re-entry
 *   mmio_write:GPA:LEN:VALUE     KVM_EXIT_MMIO write of VALUE
 *   in:PORT:LEN  (or io_in)      x86: KVM_EXIT_IO in; data reaches acc
 *   out:PORT:LEN:VALUE (io_out)  x86: KVM_EXIT_IO out of VALUE
 *   hlt                          x86: KVM_EXIT_HLT
 *   load:GPA:LEN[:FLAGS]         guest load into acc (memslots decide)
 *   store:GPA:LEN:VALUE[:FLAGS]  guest store (memslots decide)
 *   spin                         guest loops until a signal arrives
 * Example: "mmio_write:0x1000:4:0x1234;mmio_read:0x1000:4;load:0x20000:1;
 *           out:0x3f8:1:acc;hlt"
 *
 * Modelled vCPU ioctls: KVM_RUN, KVM_SET_SIGNAL_MASK (the vCPU's mask applies
 * inside KVM_RUN), and on arm64 KVM_ARM_VCPU_INIT (accepted, not required)
 * and the VM ioctl KVM_ARM_PREFERRED_TARGET. Others fail as on the kernel
 * with an unknown ioctl (vCPU and /dev/kvm: EINVAL; VM: x86 ENOTTY, arm64
 * EINVAL).
 *
 * Deviations from a real kernel (by design)
 * -----------------------------------------
 * - A guest_memfd can be mmap()ed whatever its flags (mmap is not
 *   intercepted), INIT_SHARED has no effect on such mappings, and closing
 *   its fd unbinds it at once, even if the caller still has it mapped (the
 *   kernel waits for the last reference, i.e. munmap).
 * - dup()ed simulated fds are not simulated (ioctl gives ENOTTY).
 * - KVM_CAP_PRE_FAULT_MEMORY reads as on the kernel (x86 7.2: 1), but
 *   KVM_PRE_FAULT_MEMORY itself is not modelled; nor are irqchips,
 *   registers or dirty logging (KVM_MEM_LOG_DIRTY_PAGES is accepted, nothing
 *   is logged).
 * - Host limits the kernel takes from the hardware are fixed: x86 guest
 *   physical addresses below 2^48, arm64 IPA sizes 32..48 bits (default 40).
 * - Signals: all signals are blocked while the simulated guest runs and
 *   checked between steps against the caller's mask; a signal whose action
 *   is to ignore it does not interrupt KVM_RUN.
 * - Poison (kvmsim_poison()) is kept per VM: another VM does not see a
 *   poisoned host page, and only the simulated guest sees it (a host
 *   access through the hva does not fault). It stays on a host virtual
 *   page even if new memory is mapped there (munmap + mmap, MAP_FIXED,
 *   MADV_DONTNEED: on the kernel those drop the poisoned page), and on a
 *   guest_memfd page even if a hole is punched there; closing the
 *   guest_memfd forgets its poisoned pages (it is unbound at once).
 * - KVM_MEM_USERFAULT slots have a secondary MMU: a page mapped by an
 *   access that completed is accessed without a fault, so a bit set for
 *   it later has no effect until the mapping is zapped, as on the kernel.
 *   What zaps it: turning the flag on, deleting or moving the slot, a
 *   memory attribute change, a guest_memfd punch (fallocate()), and
 *   munmap(), mprotect() and madvise(MADV_DONTNEED, _DONTNEED_LOCKED,
 *   _REMOVE, _FREE) of the slot's hva range, seen only through those C
 *   library calls of this process: mmap(MAP_FIXED) over the range,
 *   mremap(), raw system calls and reclaim zap nothing here.
 * - The x86 "C-bit" (KVMSIM_F_PRIVATE) is honoured in any VM type from 6.8;
 *   at 6.1, where no memory-fault exit exists, a private access is a bare
 *   -1/EFAULT instead.
 *
 * Thread safety: several vCPU threads may run KVM_RUN at once, and other
 * threads may change memslots, attributes and bitmaps meanwhile. The
 * kvmsim_* control calls are thread-safe unless noted. kvmsim_reset() must
 * not run while a simulated vCPU runs. None is async-signal-safe.
 *
 * kvmsim_* functions returning int return 0 on success (kvmsim_fd_kind():
 * a kind) and a negative errno on failure. open()/ioctl()/close() follow
 * the usual -1/errno convention, like the calls they replace.
 */
#ifndef KVMSIM_H
#define KVMSIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Architecture models; the same values as enum memfault_arch. */
enum kvmsim_arch {
	KVMSIM_X86_64 = 1,
	KVMSIM_ARM64 = 2,
};

/** Kernel levels. */
enum kvmsim_level {
	/** Linux 6.1: no memory-fault exits, no region2, no guest_memfd. */
	KVMSIM_LEVEL_6_1 = 601,
	/**
	 * Linux 6.8: exit 39, KVM_SET_USER_MEMORY_REGION2, memory attributes
	 * (x86), guest_memfd for x86 private-memory VMs only; no
	 * GUEST_MEMFD_FLAGS, no arm64 guest_memfd.
	 */
	KVMSIM_LEVEL_6_8 = 608,
	/** Linux 7.2 (6.18 guest_memfd MMAP/INIT_SHARED, arm64 gmem_abort). */
	KVMSIM_LEVEL_7_2 = 702,
	/** Linux 7.2 plus the proposed KVM Userfault v3 (KVM_MEM_USERFAULT). */
	KVMSIM_LEVEL_7_2_UF = 703,
};

/*
 * Quirks: named switches for the places where kernels differ from the
 * documented contract. kvmsim_default_quirks() gives what the modelled
 * kernel does; a test may turn any of them off or on.
 */
/**
 * arm64, 7.2: a guest_memfd failure on an access through the VNCR page
 * (step flag KVMSIM_F_VNCR) makes KVM_RUN return 0 with exit 39
 * (nested.c kvm_handle_vncr_abort()). Off: -1/errno like gmem_abort().
 */
#define KVMSIM_Q_ARM64_VNCR_RET0 (1u << 0)
/**
 * guest_memfd errors injected with kvmsim_inject_gmem_error() (ENOMEM,
 * EIO, ...) come with exit 39 and their own errno (kvm_gmem_get_pfn()
 * result passed through). Off: the errno is EFAULT.
 */
#define KVMSIM_Q_GMEM_ERRNO (1u << 1)
/**
 * KVM_RUN with immediate_exit set returns -1/EINTR and leaves exit_reason
 * as it was (x86 and arm64). Off: exit_reason becomes KVM_EXIT_INTR.
 */
#define KVMSIM_Q_STALE_EXIT_ON_IE (1u << 2)
/**
 * arm64: on entry, a pending MMIO access completes (load data to the
 * guest, pc advanced) only if kvm_run.exit_reason is still KVM_EXIT_MMIO
 * (arm.c kvm_arch_vcpu_ioctl_run()); otherwise the instruction is executed
 * again, giving the same MMIO exit again. Off: completes regardless, as x86.
 */
#define KVMSIM_Q_MMIO_READBACK (1u << 3)
/** arm64: KVM_CAP_MEMORY_FAULT_INFO reads 0 although exit 39 is delivered. */
#define KVMSIM_Q_NO_MFI_CAP (1u << 4)
/**
 * x86, 6.8 and later: VM type 1 (KVM_X86_SW_PROTECTED_VM) is offered
 * (KVM_CAP_VM_TYPES = 0x3), as with the shared x86_64-swprot kernel. Off
 * (stock Debian): KVM_CAP_VM_TYPES = 0x1 and KVM_CREATE_VM(1) fails EINVAL.
 */
#define KVMSIM_Q_SW_PROTECTED_VM (1u << 5)
/** Every quirk bit kvmsim knows. */
#define KVMSIM_Q_ALL 0x3fu

/**
 * KVM_X86_SW_PROTECTED_VM, the x86 VM type KVMSIM_Q_SW_PROTECTED_VM offers,
 * for tests built on hosts whose <asm/kvm.h> lacks it (arm64).
 */
#define KVMSIM_X86_SW_PROTECTED_VM 1

/** What to simulate. */
struct kvmsim_config {
	uint32_t arch;   /**< enum kvmsim_arch */
	uint32_t level;  /**< enum kvmsim_level */
	uint64_t quirks; /**< KVMSIM_Q_* mask */
};

/**
 * The quirks the modelled kernel has: VNCR_RET0 (arm64, 7.2+), GMEM_ERRNO
 * (6.8+), STALE_EXIT_ON_IE (always), MMIO_READBACK (arm64), NO_MFI_CAP
 * (arm64); never SW_PROTECTED_VM (Debian does not build it).
 * @return the mask, or 0 for an unknown arch or level.
 */
uint64_t kvmsim_default_quirks(uint32_t arch, uint32_t level);

/**
 * Drop all state and set the configuration. Every simulated fd still open
 * is closed. Call it before opening /dev/kvm, not while a vCPU runs.
 * @param cfg the configuration, or NULL: from the KVMSIM_* environment
 *        variables (see above), defaulting to the host arch and level 7.2.
 * @retval -EINVAL unknown arch, level or quirk bits (or a bad environment
 *         value; a message goes to stderr).
 */
int kvmsim_reset(const struct kvmsim_config *cfg);

/** The configuration in use (after kvmsim_reset() or the first open). */
int kvmsim_get_config(struct kvmsim_config *ret_cfg);

/* ---- Guest script, per vCPU ---- */

/** Script operations. */
enum kvmsim_op {
	/** KVM_EXIT_MMIO read of len bytes at gpa */
	KVMSIM_OP_MMIO_READ = 1,
	/** KVM_EXIT_MMIO write of value */
	KVMSIM_OP_MMIO_WRITE,
	/** x86: KVM_EXIT_IO in, port = gpa */
	KVMSIM_OP_IO_IN,
	/** x86: KVM_EXIT_IO out of value */
	KVMSIM_OP_IO_OUT,
	/** x86: KVM_EXIT_HLT */
	KVMSIM_OP_HLT,
	/** load len (1, 2, 4, 8) bytes at gpa into acc */
	KVMSIM_OP_LOAD,
	/** store len bytes of value at gpa */
	KVMSIM_OP_STORE,
	/** loop in the guest until a signal arrives */
	KVMSIM_OP_SPIN,
};

/**
 * Step flags. On x86, without PRIVATE or SHARED the access is private iff
 * the page has KVM_MEMORY_ATTRIBUTE_PRIVATE, as in a SW_PROTECTED VM.
 * PRIVATE and SHARED are ignored on arm64, which has no private memory.
 */
/** x86: private access (as an SNP/TDX C-bit) */
#define KVMSIM_F_PRIVATE (1u << 0)
/** x86: explicitly shared access */
#define KVMSIM_F_SHARED (1u << 1)
/** arm64: access through the VNCR page (nested virtualization) */
#define KVMSIM_F_VNCR (1u << 2)
/** value operand = the accumulator */
#define KVMSIM_F_ACC (1u << 3)

/** One guest step. */
struct kvmsim_step {
	uint32_t op;       /**< enum kvmsim_op */
	uint32_t flags;    /**< KVMSIM_F_* */
	uint64_t gpa;      /**< guest physical address, or port for IO */
	uint64_t value;    /**< value to write (unless KVMSIM_F_ACC) */
	uint32_t len;      /**< access size in bytes */
	uint32_t reserved; /**< must be zero */
};

/**
 * Give a vCPU its guest script (copied) and restart it: pc = 0, acc = 0,
 * no pending exit. After the last step every KVM_RUN exits with
 * KVM_EXIT_SHUTDOWN (x86) or KVM_EXIT_SYSTEM_EVENT/SHUTDOWN (arm64).
 * @retval -EBADF @p vcpu_fd is not a simulated vCPU.
 * @retval -EINVAL a malformed step: unknown op, flags or reserved bits; IO
 *         or HLT on arm64; a length not allowed for the op (MMIO 1..8, IO
 *         1/2/4, LOAD/STORE 1/2/4/8); a LOAD/STORE crossing a host page.
 * @retval -EBUSY the vCPU is inside KVM_RUN.
 */
int
kvmsim_vcpu_set_script(int vcpu_fd, const struct kvmsim_step *steps, size_t n);

/**
 * Parse script text (syntax above) into a malloc()ed array.
 * @param[out] ret_steps the steps, to free() (NULL when there are none).
 * @param[out] ret_n the number of steps.
 * @retval -EINVAL a syntax error (nothing is written).
 */
int kvmsim_parse_script(const char *text, struct kvmsim_step **ret_steps,
			size_t *ret_n);

/** kvmsim_parse_script() then kvmsim_vcpu_set_script(). */
int kvmsim_vcpu_set_script_text(int vcpu_fd, const char *text);

/**
 * Where a vCPU is in its script.
 * @param[out] ret_acc the accumulator (may be NULL).
 * @param[out] ret_pc the index of the next step to execute (may be NULL).
 * @retval -EBADF not a simulated vCPU. @retval -EBUSY inside KVM_RUN.
 */
int kvmsim_vcpu_get_state(int vcpu_fd, uint64_t *ret_acc, size_t *ret_pc);

/* ---- Fault injection, per VM ---- */

/**
 * Hardware-poison the memory that backs @p gpa now, as memory_failure()
 * marks a folio: the poison belongs to that memory, not to the gpa.
 * - Where a guest access at @p gpa goes to guest_memfd (a guest_memfd slot
 *   on arm64, or on x86 a gmem-only slot or a page with the PRIVATE
 *   attribute): the page of that guest_memfd at the slot's offset for
 *   @p gpa. Any gpa bound to that guest_memfd page, now or later, fails
 *   with EHWPOISON and exit 39 (kvm_gmem_get_pfn()); so does a normal
 *   memslot whose hva is an mmap() of that page (SIGBUS, below).
 * - Otherwise: the host page at the slot's hva for @p gpa (or, if that hva
 *   is an mmap() of one of the VM's guest_memfds, that guest_memfd page).
 *   An access through any memslot of the VM whose hva is that page sends
 *   SIGBUS (BUS_MCEERR_AR, si_addr = hva) to the vCPU thread and KVM_RUN
 *   returns -1/EINTR with KVM_EXIT_INTR (kvm_send_hwpoison_signal(),
 *   observed as `anon-hwpoison`): install a SIGBUS handler first. (Under
 *   qemu-user, which would take such a SIGBUS for its own fault, the
 *   signal is a plain one: si_code SI_TKILL.)
 * Re-binding @p gpa to other memory (deleting the slot and adding one with
 * a fresh hva or another guest_memfd range) leaves the poison behind, as
 * on the kernel (observed: the guest then loads the new memory); moving a
 * slot (same hva) takes it along.
 * @retval -EBADF @p vm_fd is not a simulated VM.
 * @retval -ENOENT nothing backs @p gpa: no memslot of address space 0, or
 *         its guest_memfd was closed.
 */
int kvmsim_poison(int vm_fd, uint64_t gpa);

/**
 * Make the next @p count guest_memfd faults at the page of @p gpa fail
 * with @p err (e.g. ENOMEM, EIO, EFAULT), as kvm_gmem_get_pfn() can.
 * @retval -EINVAL @p err is not in 1..4095 or @p count is 0.
 * @retval -EBADF @p vm_fd is not a simulated VM.
 */
int kvmsim_inject_gmem_error(int vm_fd, uint64_t gpa, int err, unsigned count);

/* ---- Introspection ---- */

/** Kinds of simulated fds, from kvmsim_fd_kind(). */
enum kvmsim_fd_kind {
	KVMSIM_FD_NONE = 0, /**< not simulated */
	KVMSIM_FD_KVM,      /**< an open /dev/kvm */
	KVMSIM_FD_VM,
	KVMSIM_FD_VCPU,
	KVMSIM_FD_GMEM,
};

/** What @p fd is to the simulator (enum kvmsim_fd_kind). */
int kvmsim_fd_kind(int fd);

/** Number of exit_reason values counted in kvmsim_stats::exits. */
#define KVMSIM_NR_EXIT_REASONS 64

/** Counters since kvmsim_reset(), over all VMs and vCPUs. */
struct kvmsim_stats {
	/** KVM_RUN calls on simulated vCPUs */
	uint64_t runs;
	/** ... that returned -1 */
	uint64_t run_errors;
	/** ... that returned -1/EINTR */
	uint64_t eintr;
	/** ... that saw immediate_exit set */
	uint64_t immediate_exits;
	/** ... ended by a signal (KVM_EXIT_INTR) */
	uint64_t signal_exits;
	/** ... returning with a fresh exit_reason, by value (0 also counts) */
	uint64_t exits[KVMSIM_NR_EXIT_REASONS];
	/** fresh KVM_EXIT_MEMORY_FAULT exits (any return value) */
	uint64_t memory_faults;
	/** ... of them with the USERFAULT flag */
	uint64_t userfaults;
	/** -1/EFAULT without exit 39 */
	uint64_t bare_efaults;
	/** userfault bitmap words read */
	uint64_t bitmap_reads;
	/** ... that could not be read */
	uint64_t bitmap_faults;
	/** LOAD steps completed from memory */
	uint64_t loads;
	/** STORE steps completed to memory */
	uint64_t stores;
	/** pending MMIO/IO exits completed on entry */
	uint64_t completions;
	/** arm64: pending MMIO dropped because exit_reason was changed */
	uint64_t reexecutions;
};

/** Copy the counters. @retval -EINVAL @p ret is NULL. */
int kvmsim_get_stats(struct kvmsim_stats *ret);

#ifdef __cplusplus
}
#endif

#endif /* KVMSIM_H */
