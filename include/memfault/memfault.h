/* SPDX-License-Identifier: MIT */
/*
 * libmemfault: run KVM vCPUs and handle memory-fault exits the same way on
 * every architecture.
 *
 * This header is self-contained: it needs only <stdint.h> and <stddef.h>
 * and no kernel header, so consumers and binding generators do not need a
 * <linux/kvm.h> new enough to know KVM_EXIT_MEMORY_FAULT.
 */
#ifndef MEMFAULT_MEMFAULT_H
#define MEMFAULT_MEMFAULT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * @defgroup version Version
 * Library version at run time.
 *
 * The compile-time version is in <memfault/memfault-version.h>
 * (MEMFAULT_VERSION_MAJOR, MEMFAULT_VERSION_MINOR, MEMFAULT_VERSION_MICRO).
 * @{
 */

/**
 * @brief **memfault_version_major()**: major version of the loaded library.
 *
 * @return the major version, always >= 0.
 * @note Thread-safe and async-signal-safe.
 * @since 0.1
 */
int memfault_version_major(void);

/**
 * @brief **memfault_version_minor()**: minor version of the loaded library.
 *
 * @return the minor version, always >= 0.
 * @note Thread-safe and async-signal-safe.
 * @since 0.1
 */
int memfault_version_minor(void);

/** @} */

/**
 * @defgroup opts Option structs
 * Size-prefixed option structs that can grow without breaking the ABI.
 *
 * Every option struct starts with `size_t sz`, which the caller sets to
 * `sizeof` the struct as it knows it. The library reads the fields it knows
 * that fit in @c sz and uses a default for the others; it rejects a struct
 * whose bytes beyond the fields it knows are not zero (-EINVAL), so a
 * program built against a newer header fails cleanly on an older library
 * instead of having its options silently ignored.
 * @{
 */

/**
 * @brief Declare an option struct @p NAME of type `struct TYPE`, zeroed
 * except for `sz` and the designated initializers given.
 *
 * Example: `MEMFAULT_OPTS(memfault_vm_opts, opts, .flags = MEMFAULT_VM_OWN_FD);`
 *
 * ISO C before C23 wants at least one designated initializer after @p NAME
 * (`-pedantic` warns otherwise); for all defaults, pass NULL instead of an
 * option struct.
 *
 * @param TYPE struct tag without the `struct` keyword.
 * @param NAME name of the variable to declare.
 * @param ... designated initializers for the fields to set.
 * @since 0.1
 */
#define MEMFAULT_OPTS(TYPE, NAME, ...)                                         \
	struct TYPE NAME = { .sz = sizeof(struct TYPE), __VA_ARGS__ }

/** @} */

/**
 * @defgroup arch Architectures
 * The per-architecture knowledge the library uses, as one table.
 * @{
 */

/**
 * Architectures the library knows. Values are stable.
 * @since 0.1
 */
enum memfault_arch {
	/** The architecture the library was built for (only as an input). */
	MEMFAULT_ARCH_HOST = 0,
	/** x86-64 (Intel VMX and AMD SVM). */
	MEMFAULT_ARCH_X86_64 = 1,
	/** arm64 (AArch64). */
	MEMFAULT_ARCH_ARM64 = 2,
};

/**
 * @brief **memfault_arch_reads_back_exit()**: does the kernel of
 * architecture @p arch read `kvm_run.exit_reason` back on the next KVM_RUN
 * to complete the exit (for example, arm64 completes an MMIO load only when
 * it still sees KVM_EXIT_MMIO)?
 *
 * The library never changes such a value before entry; the only value it
 * ever resets is KVM_EXIT_MEMORY_FAULT.
 *
 * @param arch one of enum memfault_arch; MEMFAULT_ARCH_HOST means the host.
 * @param exit_reason a KVM_EXIT_* value.
 * @return 1 if the value is read back, 0 if not, or a negative errno.
 * @retval -EINVAL @p arch is not a known architecture.
 * @note Thread-safe and async-signal-safe.
 * @since 0.1
 */
int memfault_arch_reads_back_exit(uint32_t arch, uint32_t exit_reason);

/** @} */

/**
 * @defgroup vm VM
 * A VM object wraps a KVM VM file descriptor and probes, once, what its
 * kernel offers.
 * @{
 */

/**
 * Opaque VM object.
 * @since 0.1
 */
struct memfault_vm;

/**
 * Flags for memfault_vm_opts::flags.
 * @since 0.1
 */
enum memfault_vm_flag {
	/** The VM object owns the VM fd and closes it when freed. */
	MEMFAULT_VM_OWN_FD = 1u << 0,
	/**
	 * Do not probe KVM Userfault: no throw-away VM is created, and
	 * memfault_features::userfault_probe_error reads -ECANCELED.
	 */
	MEMFAULT_VM_NO_USERFAULT_PROBE = 1u << 1,
};

/**
 * Options for memfault_vm_new(). Declare with MEMFAULT_OPTS().
 * @since 0.1
 */
struct memfault_vm_opts {
	/** Size of this struct as the caller knows it: `sizeof(struct memfault_vm_opts)`. */
	size_t sz;
	/** Bitwise OR of enum memfault_vm_flag values. */
	uint64_t flags;
	/**
	 * Unused: the KVM Userfault probe no longer creates a memslot in this
	 * VM. Still checked: a value that is not a multiple of the page size,
	 * or that wraps, makes memfault_vm_new() fail with -EINVAL as before.
	 */
	uint64_t probe_gpa;
	/**
	 * An open /dev/kvm descriptor (borrowed), used to read the size of the
	 * kvm_run mapping and to create the throw-away VM of the KVM Userfault
	 * probe; a value <= 0 makes the library open /dev/kvm itself.
	 */
	int32_t kvm_fd;
	/** Architecture model, one of enum memfault_arch; 0 is the host's. */
	uint32_t arch;
	/** Unused: no memslot is created in this VM; ignored. */
	uint32_t probe_slot;
	/** Reserved, must be zero. */
	uint32_t reserved;
};

/**
 * Feature bits in memfault_features::flags.
 * @since 0.1
 */
enum memfault_feature {
	/** KVM_CAP_USER_MEMORY2: KVM_SET_USER_MEMORY_REGION2 exists. */
	MEMFAULT_FEATURE_USER_MEMORY2 = 1u << 0,
	/** KVM_CAP_MEMORY_FAULT_INFO is advertised (x86 only, even on 7.2). */
	MEMFAULT_FEATURE_MEMORY_FAULT_INFO = 1u << 1,
	/**
	 * This VM can get KVM_EXIT_MEMORY_FAULT: the kernel has the exit
	 * (advertised, or arm64 with guest_memfd, which emits it without
	 * advertising it) and the VM has one of its sources: guest_memfd,
	 * private memory (memory attributes) or KVM Userfault. A VM with none
	 * of them (x86 from 6.8 to 6.17 with a default VM, or the PVM
	 * backend, whose emulator turns an access to unmapped host memory
	 * into an MMIO exit) does not get this flag, even where
	 * #MEMFAULT_FEATURE_MEMORY_FAULT_INFO is advertised.
	 */
	MEMFAULT_FEATURE_MEMORY_FAULT_EXITS = 1u << 2,
	/** KVM_CAP_MEMORY_ATTRIBUTES is non-zero for this VM. */
	MEMFAULT_FEATURE_MEMORY_ATTRIBUTES = 1u << 3,
	/** KVM_CAP_GUEST_MEMFD: guest_memfd can be created. */
	MEMFAULT_FEATURE_GUEST_MEMFD = 1u << 4,
	/** KVM_CAP_GUEST_MEMFD_FLAGS is non-zero (MMAP, INIT_SHARED, ...). */
	MEMFAULT_FEATURE_GUEST_MEMFD_FLAGS = 1u << 5,
	/**
	 * The kernel accepted the proposed KVM_MEM_USERFAULT memslot flag on a
	 * memslot of a throw-away VM (experimental: KVM Userfault is not merged
	 * upstream).
	 */
	MEMFAULT_FEATURE_KVM_USERFAULT = 1u << 6,
};

/**
 * What the VM's kernel offers, filled by memfault_vm_get_features().
 * @since 0.1
 */
struct memfault_features {
	/** Bitwise OR of enum memfault_feature values. */
	uint64_t flags;
	/** Value of KVM_CAP_MEMORY_ATTRIBUTES on the VM fd (0 if none). */
	uint64_t memory_attributes;
	/** Value of KVM_CAP_GUEST_MEMFD_FLAGS on the VM fd (0 if none). */
	uint64_t guest_memfd_flags;
	/** Architecture model in use, one of enum memfault_arch (never 0). */
	uint32_t arch;
	/**
	 * 0 if the KVM Userfault probe gave a clear answer, or the negative
	 * errno that kept it from giving one: -ECANCELED if it was disabled,
	 * -ENODEV or -EACCES if /dev/kvm could not be opened (pass
	 * memfault_vm_opts::kvm_fd), the error of KVM_CREATE_VM (e.g. -ENOMEM).
	 */
	int32_t userfault_probe_error;
	/** Host page size in bytes, from sysconf(). */
	uint64_t page_size;
	/** Reserved for future fields; zero. */
	uint64_t reserved[3];
};

/**
 * @brief **memfault_vm_new()**: wrap a KVM VM file descriptor.
 *
 * Probes KVM_CAP_USER_MEMORY2, KVM_CAP_MEMORY_FAULT_INFO,
 * KVM_CAP_MEMORY_ATTRIBUTES, KVM_CAP_GUEST_MEMFD and
 * KVM_CAP_GUEST_MEMFD_FLAGS with KVM_CHECK_EXTENSION on the VM fd, and,
 * unless MEMFAULT_VM_NO_USERFAULT_PROBE is set and when USER_MEMORY2 is
 * there, whether the kernel accepts the proposed KVM_MEM_USERFAULT memslot
 * flag (no capability number is trusted: every proposed one collides with
 * a merged capability). That probe creates a one-page memslot in a
 * throw-away VM of its own (KVM_CREATE_VM on memfault_vm_opts::kvm_fd or
 * on /dev/kvm; on x86, of type KVM_X86_SW_PROTECTED_VM when @p vm_fd
 * reports private memory and that type exists, else type 0) and closes it:
 * no memslot is ever created in @p vm_fd's VM. The answer of the kernel is
 * cached in the process, so later calls on VMs of the same kernel and type
 * create no VM. Cost of the first probe (measured): 0.65-0.9 ms on an
 * x86-64 host with KVM on Linux 6.18; in guests under QEMU TCG with
 * nested KVM, 3 ms (arm64) and 19 ms (x86-64).
 *
 * @param vm_fd a KVM VM file descriptor (from KVM_CREATE_VM). It is
 *        borrowed unless @p opts sets MEMFAULT_VM_OWN_FD, in which case it
 *        is closed by memfault_vm_free(), and only then: it is not closed
 *        when this function fails.
 * @param opts options, or NULL for the defaults.
 * @param[out] ret_vm the new VM object; written only on success.
 * @return 0 on success or a negative errno.
 * @retval -EINVAL @p ret_vm is NULL, @p opts is malformed, the arch is
 *         unknown, or @p vm_fd is a KVM fd that is not a VM: /dev/kvm
 *         itself, or a vCPU fd (KVM answers EINVAL to the VM ioctl there).
 * @retval -EBADF @p vm_fd is not an open file descriptor.
 * @retval -ENOTTY @p vm_fd is not a KVM fd at all (a file, a pipe, an
 *         eventfd: the ioctl is unknown to it).
 * @retval -ENOMEM out of memory.
 * @note Thread-safe; not async-signal-safe.
 * @since 0.1
 */
int memfault_vm_new(int vm_fd, const struct memfault_vm_opts *opts,
		    struct memfault_vm **ret_vm);

/**
 * @brief **memfault_vm_free()**: release a VM object.
 *
 * The memory is released once the last vCPU object of the VM is freed too;
 * the VM fd is closed then if the VM object owns it.
 *
 * @param vm the VM object, or NULL (nothing happens).
 * @note Not async-signal-safe. No other call may use @p vm afterwards.
 * @since 0.1
 */
void memfault_vm_free(struct memfault_vm *vm);

/**
 * @brief **memfault_vm_get_fd()**: the VM file descriptor.
 *
 * @param vm the VM object.
 * @return the fd (>= 0) or a negative errno.
 * @retval -EINVAL @p vm is NULL.
 * @note Thread-safe and async-signal-safe.
 * @since 0.1
 */
int memfault_vm_get_fd(const struct memfault_vm *vm);

/**
 * @brief **memfault_vm_get_features()**: what the VM's kernel offers, as
 * probed by memfault_vm_new().
 *
 * @param vm the VM object.
 * @param[out] ret_features filled with min(@p size, sizeof) bytes.
 * @param size the caller's `sizeof(struct memfault_features)`.
 * @return 0 on success or a negative errno.
 * @retval -EINVAL @p vm or @p ret_features is NULL, or @p size is 0.
 * @note Thread-safe and async-signal-safe.
 * @since 0.1
 */
int memfault_vm_get_features(const struct memfault_vm *vm,
			     struct memfault_features *ret_features,
			     size_t size);

/** @} */

/**
 * @defgroup vcpu vCPU
 * A vCPU object wraps a KVM vCPU file descriptor and its kvm_run mapping.
 * @{
 */

/**
 * Opaque vCPU object.
 * @since 0.1
 */
struct memfault_vcpu;

/**
 * Struct kvm_run is only declared here: include <linux/kvm.h> to read it.
 * @since 0.1
 */
struct kvm_run;

/**
 * Flags for memfault_vcpu_opts::flags.
 * @since 0.1
 */
enum memfault_vcpu_flag {
	/** The vCPU object owns the vCPU fd and closes it when freed. */
	MEMFAULT_VCPU_OWN_FD = 1u << 0,
	/**
	 * Do not install a handler for the kick signal; the VMM has installed
	 * one itself (any handler works; SIG_DFL and SIG_IGN do not).
	 */
	MEMFAULT_VCPU_NO_SIGNAL_HANDLER = 1u << 1,
	/**
	 * Time the dispatch handlers (memfault_vcpu_stats::handler_ns): two
	 * clock_gettime() calls per handler call. Without it handler_ns
	 * stays 0 and a resolved fault makes no such call. @since 0.2
	 */
	MEMFAULT_VCPU_TIME_HANDLERS = 1u << 2,
};

/**
 * Options for memfault_vcpu_new(). Declare with MEMFAULT_OPTS().
 * @since 0.1
 */
struct memfault_vcpu_opts {
	/** Size of this struct as the caller knows it: `sizeof(struct memfault_vcpu_opts)`. */
	size_t sz;
	/** Bitwise OR of enum memfault_vcpu_flag values. */
	uint64_t flags;
	/**
	 * The VMM's own mapping of the vCPU's kvm_run, adopted (never
	 * unmapped) by the library; NULL makes the library map it itself.
	 */
	struct kvm_run *run;
	/** Size of the mapping in @c run; ignored when @c run is NULL. */
	uint64_t run_size;
	/**
	 * Signal used by memfault_vcpu_kick() to interrupt a vCPU inside
	 * KVM_RUN; 0 selects SIGRTMIN. Unless MEMFAULT_VCPU_NO_SIGNAL_HANDLER is
	 * set, the library installs a do-nothing handler for it if its
	 * disposition is SIG_DFL. The signal must not be blocked in the vCPU
	 * thread while it runs, and must not be one that reports a fault
	 * (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS, SIGABRT).
	 */
	int32_t kick_signal;
	/** Reserved, must be zero. */
	uint32_t reserved;
};

/**
 * @brief **memfault_vcpu_new()**: wrap a KVM vCPU file descriptor.
 *
 * @param vm the VM the vCPU belongs to; it stays alive while the vCPU
 *        object exists.
 * @param vcpu_fd a KVM vCPU fd (from KVM_CREATE_VCPU). Borrowed unless
 *        @p opts sets MEMFAULT_VCPU_OWN_FD; never closed on failure.
 * @param opts options, or NULL for the defaults.
 * @param[out] ret_vcpu the new vCPU object; written only on success.
 *
 * The kick signal's handler, if the library installs one, is installed
 * last, so that a call that fails leaves every signal disposition as it
 * was. It then stays for the life of the process: other vCPU objects with
 * the same kick signal rely on it, and memfault_vcpu_free() leaves it.
 *
 * @return 0 on success or a negative errno; nothing changed on failure.
 * @retval -EINVAL a NULL or malformed argument, an adopted mapping smaller
 *         than struct kvm_run, or a kick signal that cannot be one: out of
 *         range, SIGKILL or SIGSTOP, a signal glibc keeps for itself, an
 *         ignored signal, SIG_DFL with MEMFAULT_VCPU_NO_SIGNAL_HANDLER, or
 *         a signal that reports a fault of the thread itself (SIGSEGV,
 *         SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS, SIGABRT: a kick handler
 *         would hide the fault, and a crash handler would take kicks for
 *         crashes).
 * @retval -EBADF @p vcpu_fd is not an open file descriptor, or
 *         memfault_vm_opts::kvm_fd was not one and the library needed it
 *         for the mapping size.
 * @retval -ENOMEM out of memory, or out of address space for the mapping.
 * @retval -EMFILE no file descriptor was free to open /dev/kvm for the
 *         mapping size.
 * @retval -EACCES the kvm_run mapping was refused: @p vcpu_fd is not open
 *         for reading and writing, or /dev/kvm could not be opened for lack
 *         of permission.
 * @retval -ENODEV the library could not learn the mapping size because
 *         /dev/kvm does not exist or memfault_vm_opts::kvm_fd is not a KVM
 *         fd (pass memfault_vcpu_opts::run or a working
 *         memfault_vm_opts::kvm_fd), or @p vcpu_fd cannot be mapped (not a
 *         KVM vCPU fd).
 * @note Thread-safe; not async-signal-safe.
 * @since 0.1
 */
int memfault_vcpu_new(struct memfault_vm *vm, int vcpu_fd,
		      const struct memfault_vcpu_opts *opts,
		      struct memfault_vcpu **ret_vcpu);

/**
 * @brief **memfault_vcpu_free()**: release a vCPU object, its kvm_run
 * mapping if the library made it, and its fd if it owns it.
 *
 * The kick signal's handler, if memfault_vcpu_new() installed it, stays
 * installed: other vCPU objects may share it, and a kick still in flight
 * must not meet SIG_DFL (which ends the process for most signals).
 *
 * @param vcpu the vCPU object, or NULL (nothing happens).
 * @note Not async-signal-safe. No other call may use @p vcpu afterwards,
 *       memfault_vcpu_kick() from another thread included.
 * @since 0.1
 */
void memfault_vcpu_free(struct memfault_vcpu *vcpu);

/**
 * @brief **memfault_vcpu_get_fd()**: the vCPU file descriptor.
 *
 * @param vcpu the vCPU object.
 * @return the fd (>= 0) or a negative errno.
 * @retval -EINVAL @p vcpu is NULL.
 * @note Thread-safe and async-signal-safe.
 * @since 0.1
 */
int memfault_vcpu_get_fd(const struct memfault_vcpu *vcpu);

/**
 * @brief **memfault_vcpu_get_run()**: the vCPU's kvm_run, for the ordinary
 * exits (IO, MMIO, HLT, ...) the VMM handles itself.
 *
 * The VMM may read it after memfault_vcpu_run() returns
 * MEMFAULT_RUN_EXIT and write the fields the exit asks for (the data of an
 * MMIO or IO read). It must not write `immediate_exit`: use
 * memfault_vcpu_kick().
 *
 * @param vcpu the vCPU object.
 * @param[out] ret_run the mapping; written only on success.
 * @return 0 on success or a negative errno.
 * @retval -EINVAL a NULL argument.
 * @note Thread-safe and async-signal-safe.
 * @since 0.1
 */
int memfault_vcpu_get_run(const struct memfault_vcpu *vcpu,
			  struct kvm_run **ret_run);

/** @} */

/**
 * @defgroup run Running a vCPU
 * One KVM_RUN and its classification, the same on every architecture.
 *
 * | KVM_RUN result | exit_reason | memfault_vcpu_run() returns |
 * |---|---|---|
 * | 0 | KVM_EXIT_MEMORY_FAULT | MEMFAULT_RUN_MEMORY_FAULT, origin MEMFAULT_ORIGIN_RET0 |
 * | 0 | anything else | MEMFAULT_RUN_EXIT |
 * | -1, EINTR | any (stale) | MEMFAULT_RUN_INTERRUPTED |
 * | -1, EAGAIN | any (stale) | MEMFAULT_RUN_RETRY |
 * | -1, any errno | KVM_EXIT_MEMORY_FAULT | MEMFAULT_RUN_MEMORY_FAULT, fault error -errno |
 * | -1, EFAULT | anything else | -EFAULT: an unannotated fault, no address known |
 * | -1, other | anything else | -errno |
 * | -1, errno 0 or above 4095 | any | -EPROTO: not a system call result |
 * | neither 0 nor -1 | any | -EPROTO: not a system call result |
 *
 * The last two rows are what a broken kernel or an interposed ioctl() (an
 * LD_PRELOAD library, a seccomp user notifier) can produce; no errno is
 * read and no exit is decoded from them.
 *
 * A KVM_RUN that fails before the kernel writes an exit (EINVAL, EIO,
 * EBADF, ...) leaves `exit_reason` as the previous run left it: a memory
 * fault from an earlier run would read as a fresh one. memfault_vcpu_run()
 * guards against that before entry; a VMM that calls KVM_RUN itself must
 * call memfault_exit_prepare() before each KVM_RUN whose result it passes
 * to memfault_exit_classify().
 * @{
 */

/**
 * Non-negative results of memfault_vcpu_run() and memfault_exit_classify().
 * @since 0.1
 */
enum memfault_run_result {
	/** An ordinary exit: read kvm_run.exit_reason and handle it. */
	MEMFAULT_RUN_EXIT = 1,
	/** A memory fault: read it with memfault_vcpu_get_fault(). */
	MEMFAULT_RUN_MEMORY_FAULT = 2,
	/** KVM_RUN was interrupted by a kick or a signal (EINTR). */
	MEMFAULT_RUN_INTERRUPTED = 3,
	/** KVM asked to be called again (EAGAIN). */
	MEMFAULT_RUN_RETRY = 4,
};

/**
 * @brief **memfault_vcpu_run()**: run the vCPU once and classify the exit.
 *
 * Before entry, it does what memfault_exit_prepare() does: a leftover
 * KVM_EXIT_MEMORY_FAULT in `kvm_run.exit_reason` is reset to
 * KVM_EXIT_UNKNOWN, so that an error that does not come with a fresh
 * memory-fault exit is never mistaken for one. No other value is touched:
 * arm64 reads KVM_EXIT_MMIO back on entry to complete a load. Exactly one
 * system call (KVM_RUN) is made; `errno` is read once, right after it and
 * only if it returned -1, and is not changed for the caller in a way to
 * rely on. The result is the one memfault_exit_classify() gives for the
 * same KVM_RUN result and kvm_run.
 *
 * @param vcpu the vCPU object.
 * @return one of enum memfault_run_result, or a negative errno.
 * @retval MEMFAULT_RUN_EXIT an ordinary exit.
 * @retval MEMFAULT_RUN_MEMORY_FAULT a memory fault; see memfault_vcpu_get_fault().
 * @retval MEMFAULT_RUN_INTERRUPTED a kick or a signal; a kick is consumed.
 * @retval MEMFAULT_RUN_RETRY KVM returned EAGAIN.
 * @retval -EFAULT KVM_RUN failed with EFAULT without a memory-fault exit:
 *         the kernel gave no address. Where the CPU executes the guest's
 *         accesses (VMX, SVM, arm64), a memslot whose host memory cannot
 *         be accessed (PROT_NONE) gives this; where KVM emulates them
 *         (the PVM backend), the same access is an MMIO exit at the gpa
 *         (#MEMFAULT_RUN_EXIT) instead.
 * @retval -EINVAL @p vcpu is NULL.
 * @retval -EPROTO KVM_RUN returned neither 0 nor -1, or -1 with an errno
 *         that is not one (0, or above 4095): a broken kernel or an
 *         interposed ioctl(); nothing is classified.
 * @note Use from one thread at a time; any other errno of KVM_RUN is
 *       returned negated.
 * @since 0.1
 */
int memfault_vcpu_run(struct memfault_vcpu *vcpu);

/**
 * @brief **memfault_vcpu_kick()**: make the vCPU return
 * MEMFAULT_RUN_INTERRUPTED promptly.
 *
 * Sets `kvm_run.immediate_exit` and sends the kick signal to the thread
 * last seen in memfault_vcpu_run(). Whether the vCPU is inside KVM_RUN,
 * about to enter it or outside it, memfault_vcpu_run() returns
 * MEMFAULT_RUN_INTERRUPTED at least once after the kick begins; kicks that
 * arrive before that return are merged into it. No kick that returns 0 is
 * lost. memfault_vcpu_run_dispatch() returns it too while it waits for
 * another thread's page-in: the kick also increments a per-vCPU futex
 * word the wait sleeps on (futex_waitv(), Linux 5.16), so the wait ends
 * whether the signal came before it or restarts it (SA_RESTART). Where
 * futex_waitv() is missing, the wait looks at the kick every millisecond.
 *
 * A real-time kick signal (the default, SIGRTMIN) is queued once per kick,
 * from the user's RLIMIT_SIGPENDING allowance, which every process of the
 * user shares. When that queue is full the kernel refuses the signal and
 * the kick returns -EAGAIN: `immediate_exit` is set, so the vCPU returns
 * MEMFAULT_RUN_INTERRUPTED at its next entry to KVM_RUN, but a vCPU in the
 * guest now is not interrupted until it exits for another reason. Retry
 * later, or pick a standard signal (SIGUSR1, say) as @c kick_signal: those
 * are never queued twice, and never refused.
 *
 * @param vcpu the vCPU object.
 * @return 0 on success or a negative errno.
 * @retval -EINVAL @p vcpu is NULL.
 * @retval -EAGAIN the real-time kick signal could not be queued (above).
 * @note Thread-safe and async-signal-safe: callable from any thread and
 *       from a signal handler.
 * @since 0.1
 */
int memfault_vcpu_kick(struct memfault_vcpu *vcpu);

/** @} */

/**
 * @defgroup fault Memory faults
 * The decoded `kvm_run.memory_fault`.
 * @{
 */

/**
 * Library flags in memfault_fault::flags; a bitmask, several may be set.
 * @since 0.1
 */
enum memfault_fault_flag {
	/** The access was private (KVM_MEMORY_EXIT_FLAG_PRIVATE). */
	MEMFAULT_FAULT_PRIVATE = 1u << 0,
	/** A KVM Userfault exit (proposed KVM_MEMORY_EXIT_FLAG_USERFAULT). */
	MEMFAULT_FAULT_USERFAULT = 1u << 1,
	/** KVM_RUN failed with EHWPOISON: the page is hardware-poisoned. */
	MEMFAULT_FAULT_HWPOISON = 1u << 2,
	/** The kernel set flag bits the library does not know (see kernel_flags). */
	MEMFAULT_FAULT_UNKNOWN = 1u << 3,
	/** The reported size is zero: the range is not to be trusted. */
	MEMFAULT_FAULT_SIZE_ZERO = 1u << 8,
	/** gpa or size is not a multiple of the host page size. */
	MEMFAULT_FAULT_UNALIGNED = 1u << 9,
	/** gpa + size overflows 64 bits: the range is not to be trusted. */
	MEMFAULT_FAULT_OVERFLOW = 1u << 10,
};

/**
 * Where the memory fault came from.
 * @since 0.1
 */
enum memfault_fault_origin {
	/** KVM_RUN returned -1 with EFAULT or EHWPOISON, as api.rst documents. */
	MEMFAULT_ORIGIN_ERRNO = 1,
	/** KVM_RUN returned 0 with the exit set (arm64 nested VNCR path). */
	MEMFAULT_ORIGIN_RET0 = 2,
	/** KVM_RUN returned -1 with another errno (guest_memfd ENOMEM, EIO, ...). */
	MEMFAULT_ORIGIN_OTHER_ERRNO = 3,
};

/**
 * A decoded memory fault.
 * @since 0.1
 */
struct memfault_fault {
	/** Guest physical address of the faulting range, as the kernel reported it. */
	uint64_t gpa;
	/** Size of the range in bytes, as the kernel reported it. */
	uint64_t size;
	/** Bitwise OR of enum memfault_fault_flag values. */
	uint64_t flags;
	/** `kvm_run.memory_fault.flags` exactly as the kernel wrote it. */
	uint64_t kernel_flags;
	/** 0 if KVM_RUN returned 0, else the negated errno it failed with. */
	int32_t error;
	/** One of enum memfault_fault_origin. */
	uint32_t origin;
	/** Reserved for future fields; zero. */
	uint64_t reserved[3];
};

/**
 * @brief **memfault_vcpu_get_fault()**: the memory fault of the last
 * memfault_vcpu_run() that returned MEMFAULT_RUN_MEMORY_FAULT.
 *
 * @param vcpu the vCPU object.
 * @param[out] ret_fault filled with min(@p size, sizeof) bytes.
 * @param size the caller's `sizeof(struct memfault_fault)`.
 * @return 0 on success or a negative errno.
 * @retval -EINVAL a NULL argument or @p size 0.
 * @retval -ENODATA the last run did not return a memory fault.
 * @note Use from the thread that runs the vCPU.
 * @since 0.1
 */
int memfault_vcpu_get_fault(const struct memfault_vcpu *vcpu,
			    struct memfault_fault *ret_fault, size_t size);

/**
 * @brief **memfault_exit_prepare()**: get a kvm_run ready for a KVM_RUN
 * the VMM makes itself, as memfault_vcpu_run() does before entry.
 *
 * A KVM_RUN that fails before the kernel writes an exit (EINVAL, EIO,
 * EBADF, ...) leaves `exit_reason` as the previous run left it, and a
 * memory fault left there would read as a fresh one. If `exit_reason` is
 * KVM_EXIT_MEMORY_FAULT and the kernel of @p arch does not read that value
 * back on entry (none does), it is reset to KVM_EXIT_UNKNOWN; nothing else
 * is written, so exits the kernel completes on entry (arm64 KVM_EXIT_MMIO)
 * are kept. Call it before each KVM_RUN whose result is passed to
 * memfault_exit_classify(), after handling the previous exit.
 *
 * The library cannot check that this call was made: a stale memory-fault
 * exit and a fresh one look the same in kvm_run.
 *
 * @param run the vCPU's kvm_run.
 * @param arch the VM's architecture (enum memfault_arch; MEMFAULT_ARCH_HOST
 *        for the host's).
 * @return 0 on success or a negative errno.
 * @retval -EINVAL @p run is NULL or @p arch is unknown (nothing is written).
 * @note Thread-safe and async-signal-safe; use it from the thread that
 *       runs the vCPU, as it writes `exit_reason`.
 * @since 0.2
 */
int memfault_exit_prepare(struct kvm_run *run, uint32_t arch);

/**
 * @brief **memfault_exit_classify()**: classify a KVM_RUN result the VMM
 * obtained itself, as memfault_vcpu_run() does.
 *
 * The VMM must call memfault_exit_prepare() before each KVM_RUN whose
 * result it passes here: otherwise a KVM_RUN that failed early (EINVAL,
 * EIO, ...) after a memory-fault exit is reported as a fresh memory fault.
 * For the same KVM_RUN result and kvm_run, the result is the one
 * memfault_vcpu_run() returns.
 *
 * @param run the vCPU's kvm_run, as KVM_RUN left it.
 * @param ioctl_ret the value ioctl(KVM_RUN) returned.
 * @param err the errno read right after the ioctl (ignored unless
 *        @p ioctl_ret is -1).
 * @param[out] ret_fault if not NULL, filled with min(@p size, sizeof)
 *        bytes when the result is MEMFAULT_RUN_MEMORY_FAULT, untouched
 *        otherwise.
 * @param size the caller's `sizeof(struct memfault_fault)`.
 * @return one of enum memfault_run_result, or the negative errno of the
 *         failed run (as memfault_vcpu_run()).
 * @retval -EINVAL @p run is NULL, or @p ret_fault is given with @p size 0.
 * @retval -EPROTO @p ioctl_ret is neither 0 nor -1, or it is -1 and @p err
 *         is not an errno (0, negative or above 4095): not a system call
 *         result (before 0.2: -EINVAL).
 * @note Thread-safe and async-signal-safe; reads @p run only.
 * @since 0.1
 */
int memfault_exit_classify(const struct kvm_run *run, int ioctl_ret, int err,
			   struct memfault_fault *ret_fault, size_t size);

/** @} */


/**
 * @defgroup region Regions and userfault bitmaps
 * A region is one memslot registered through the library, with a bitmap
 * of one bit per host page: set means "missing, exit on access". The
 * bitmap is laid out exactly as KVM Userfault reads it (native `unsigned
 * long` words, bit i = host page i from the slot base), and a second,
 * library-private bit per page makes page-in exactly-once across threads.
 *
 * The protocol for a missing page: memfault_region_claim() tells exactly
 * one thread to fetch it (#MEMFAULT_CLAIM_FETCH); the others wait without
 * spinning until it is published. The fetcher writes the page's contents,
 * then calls memfault_region_publish(), which clears the bit with a
 * store-release: it pairs with the load-acquire in memfault_region_claim()
 * and memfault_region_is_missing(), and with the kernel's read of the
 * bitmap in KVM Userfault (kvm_do_userfault(); the v3 series reads it with
 * a plain __get_user(), see the note on memfault_region_publish()). If the
 * fetch fails, memfault_region_abort() hands the page to one of the
 * waiters.
 *
 * Bitmap operations are lock-free and may be called from any thread.
 * memfault_region_new() and memfault_region_free() are setup calls: not
 * while vCPUs of the VM run memfault_vm_find_region().
 * @{
 */

/**
 * Opaque region object.
 * @since 0.1
 */
struct memfault_region;

/**
 * Flags for memfault_region_opts::flags.
 * @since 0.1
 */
enum memfault_region_flag {
	/**
	 * Register the memslot with the proposed KVM_MEM_USERFAULT flag and
	 * the region's bitmap (needs #MEMFAULT_FEATURE_KVM_USERFAULT): vCPU
	 * accesses to missing pages exit with #MEMFAULT_FAULT_USERFAULT.
	 */
	MEMFAULT_REGION_USERFAULT = 1u << 0,
	/** The memslot is guest_memfd-backed (KVM_MEM_GUEST_MEMFD). */
	MEMFAULT_REGION_GUEST_MEMFD = 1u << 1,
	/** Every page starts missing (set before KVM sees the memslot). */
	MEMFAULT_REGION_MISSING = 1u << 2,
	/** Keep the bitmap only: create no memslot (userfaultfd-only use). */
	MEMFAULT_REGION_NO_MEMSLOT = 1u << 3,
};

/**
 * Options for memfault_region_new(). Declare with MEMFAULT_OPTS().
 * @since 0.1
 */
struct memfault_region_opts {
	/** Size of this struct as the caller knows it: `sizeof(struct memfault_region_opts)`. */
	size_t sz;
	/** Bitwise OR of enum memfault_region_flag values. */
	uint64_t flags;
	/** Offset into the guest_memfd (with #MEMFAULT_REGION_GUEST_MEMFD). */
	uint64_t guest_memfd_offset;
	/** The guest_memfd fd (with #MEMFAULT_REGION_GUEST_MEMFD only). */
	int32_t guest_memfd;
	/** Further KVM_MEM_* flags to pass on (KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY). */
	uint32_t kvm_flags;
};

/**
 * Facts about a region, filled by memfault_region_get_info().
 * @since 0.1
 */
struct memfault_region_info {
	/** Guest physical address of the first byte. */
	uint64_t gpa;
	/** Size in bytes, a multiple of @c page_size. */
	uint64_t size;
	/** Host virtual address of the first byte (0 if none). */
	uint64_t hva;
	/** Number of pages, i.e. of bits in the bitmap. */
	uint64_t npages;
	/** Host page size in bytes: one bit per page of this size. */
	uint64_t page_size;
	/** Address of the bitmap KVM reads (native unsigned long words). */
	uint64_t bitmap;
	/** The region's enum memfault_region_flag values. */
	uint64_t flags;
	/** KVM memslot id. */
	uint32_t slot;
	/** Reserved; zero. */
	uint32_t reserved;
};

/**
 * @brief **memfault_region_new()**: register a memslot and create its
 * bitmap.
 *
 * @param vm the VM.
 * @param slot KVM memslot id (address space 0).
 * @param gpa guest physical address, host-page aligned.
 * @param size size in bytes, a non-zero multiple of the host page size.
 * @param hva host memory backing it, host-page aligned (may be NULL only
 *        with #MEMFAULT_REGION_NO_MEMSLOT or a guest_memfd without mmap).
 * @param opts options, or NULL for the defaults.
 * @param[out] ret_region the new region; written only on success.
 * @return 0 on success or a negative errno.
 * @retval -EINVAL bad alignment, size, flags or options; or a memslot
 *         KVM refuses whatever the memory: more than 2^31 - 1 pages
 *         (KVM_MEM_MAX_NR_PAGES), or a guest_memfd range that wraps. These
 *         are refused before any bitmap memory is touched.
 * @retval -EEXIST the range overlaps a region of this VM.
 * @retval -EOPNOTSUPP #MEMFAULT_REGION_USERFAULT without kernel support.
 * @retval -ENOMEM out of memory, including a #MEMFAULT_REGION_MISSING
 *         bitmap the kernel will not commit (it is accounted: with the
 *         default overcommit policy, one larger than RAM plus swap fails
 *         here, at once, rather than with the OOM killer).
 * @note Setup call: not concurrently with other region calls on @p vm.
 *       The bitmap is reserved, not committed: a 1 TiB region costs
 *       nothing until words are touched. #MEMFAULT_REGION_MISSING writes
 *       all of them (one bit per page, 1/32768 of the region's size with
 *       4 KiB pages: 256 MiB for the largest memslot) before KVM can see
 *       the memslot, as KVM Userfault needs every bit set by then. Other
 *       KVM errors of KVM_SET_USER_MEMORY_REGION2 are returned as they
 *       are.
 * @since 0.1
 */
int memfault_region_new(struct memfault_vm *vm, uint32_t slot, uint64_t gpa,
			uint64_t size, void *hva,
			const struct memfault_region_opts *opts,
			struct memfault_region **ret_region);

/**
 * @brief **memfault_region_free()**: delete the memslot and free the region.
 *
 * @param region the region, or NULL (nothing happens).
 * @note Setup call. No thread may use the region afterwards.
 * @since 0.1
 */
void memfault_region_free(struct memfault_region *region);

/**
 * @brief **memfault_vm_find_region()**: the region holding @p gpa, in
 * O(log regions).
 *
 * @param vm the VM.
 * @param gpa a guest physical address.
 * @param[out] ret_region the region (may be NULL).
 * @param[out] ret_page the page index of @p gpa in it (may be NULL).
 * @return 0 on success or a negative errno.
 * @retval -EINVAL @p vm is NULL.
 * @retval -ENOENT no region holds @p gpa.
 * @note Thread-safe against other lookups and bitmap operations.
 * @since 0.1
 */
int memfault_vm_find_region(const struct memfault_vm *vm, uint64_t gpa,
			    struct memfault_region **ret_region,
			    uint64_t *ret_page);

/**
 * @brief **memfault_region_get_info()**: facts about a region.
 *
 * @param region the region.
 * @param[out] ret_info filled with min(@p size, sizeof) bytes.
 * @param size the caller's `sizeof(struct memfault_region_info)`.
 * @return 0 on success or a negative errno.
 * @retval -EINVAL a NULL argument or @p size 0.
 * @note Thread-safe.
 * @since 0.1
 */
int memfault_region_get_info(const struct memfault_region *region,
			     struct memfault_region_info *ret_info,
			     size_t size);

/**
 * @brief **memfault_region_mark_missing()**: set the bits of pages
 * [@p first, @p first + @p count).
 *
 * KVM reads a page's bit only when the page faults: a bit set on a page
 * it has already mapped has no effect by itself. On a region registered
 * with #MEMFAULT_REGION_USERFAULT this function therefore sets the bits,
 * then invalidates the host mapping of just these pages, which makes
 * KVM's MMU notifier drop its mappings of them (stage 2, EPT, NPT): the
 * next access of a vCPU faults, reads the bit and exits. KVM_MEM_USERFAULT
 * stays on throughout, so no other page is ever mapped without its exit
 * (turning it off and on, which an older version of this function did,
 * let running vCPUs read missing pages meanwhile, and unbinds a
 * guest_memfd slot on 7.2). The invalidation is MADV_DONTNEED on the
 * region's memory and, for a #MEMFAULT_REGION_GUEST_MEMFD region,
 * FALLOC_FL_PUNCH_HOLE on the guest_memfd (private pages have no host
 * mapping). On a region registered with memfault_uffd_register(), the
 * pages are unmapped from the host the same way, so that host accesses
 * fault on them too (in #MEMFAULT_UFFD_MISSING mode with MADV_REMOVE for
 * shared memory).
 *
 * The rule: **the contents of re-marked pages are discarded** wherever
 * they are private (anonymous memory and guest_memfd read as zeros until
 * fetched; memory mapped MAP_SHARED keeps its page cache, #MEMFAULT_UFFD_MISSING
 * mode drops that too): a missing page is fetched again anyway. The cost
 * is one madvise() (and one fallocate()) per 4096 pages of the range
 * (64-bit hosts), plus a fault of each page when it is next accessed; the
 * rest of the memslot stays mapped.
 *
 * The function holds the pages as a fetcher would while it works, so that
 * no fetch of them runs meanwhile; faults on them wait for it. A fetch
 * already in progress (between a claim and its publish or abort) would
 * publish over the new bit, and lose what it wrote to the invalidation:
 * the function waits for it, up to 50 ms in all, then leaves such pages
 * alone (their bits set, to be cleared by that publish) and returns
 * -EBUSY; the other pages are re-marked. Call it again once the fetch has
 * ended. A caller that holds the claim itself always gets -EBUSY.
 * A region without #MEMFAULT_REGION_USERFAULT or userfaultfd has nothing
 * mapped past its bitmap: only the bits are set, nothing waits.
 *
 * @param region the region.
 * @param first first page index.
 * @param count number of pages (0 is allowed and does nothing).
 * @return 0 on success or a negative errno: besides those below, an
 *         error of madvise() or fallocate() as they report it. On an
 *         error other than -EINVAL the bits are set all the same, but a
 *         page the invalidation missed may still be read by a vCPU or host
 *         thread that had it mapped; calling again completes it.
 * @retval -EINVAL NULL region, or a range beyond the region (nothing
 *         changes).
 * @retval -EBUSY a fetch of some of the pages was still in progress after
 *         50 ms: those pages are not re-marked (above); the others are.
 * @retval -EOPNOTSUPP madvise() cannot drop this memory (VM_PFNMAP, a
 *         hugetlb range not aligned to its huge pages; mlock()ed memory
 *         is retried with MADV_DONTNEED_LOCKED, Linux 5.18).
 * @note Thread-safe against the other bitmap operations and vCPUs running
 *       the region; it may sleep up to 50 ms while a fetch of one of the
 *       pages is in progress. Not async-signal-safe.
 * @since 0.1
 */
int memfault_region_mark_missing(struct memfault_region *region,
				 uint64_t first, uint64_t count);

/**
 * @brief **memfault_region_publish()**: the pages' contents are in place:
 * clear their bits and wake the threads waiting for them.
 *
 * This is the only way to clear a bit. The clear is a store-release: it
 * pairs with the load-acquire of memfault_region_claim() and
 * memfault_region_is_missing(), so a thread that sees the page present
 * also sees its contents. For the kernel, the release orders the contents
 * before the bit as seen by any reader; the KVM Userfault v3 kernel reads
 * the word with __get_user() and no acquire of its own, and re-enters the
 * guest only after that read (review of v3: the kernel side should use a
 * load-acquire).
 *
 * @param region the region.
 * @param first first page index.
 * @param count number of pages (0 is allowed and does nothing).
 * @return 0 on success or a negative errno.
 * @retval -EINVAL NULL region, or a range beyond the region.
 * @note Thread-safe. Publishing a page claimed by another thread releases
 *       that claim too.
 * @since 0.1
 */
int memfault_region_publish(struct memfault_region *region, uint64_t first,
			    uint64_t count);

/**
 * @brief **memfault_region_is_missing()**: test one page, with acquire.
 *
 * @param region the region.
 * @param page page index.
 * @return 1 if missing, 0 if present, or a negative errno.
 * @retval -EINVAL NULL region or @p page out of range.
 * @note Thread-safe and async-signal-safe.
 * @since 0.1
 */
int memfault_region_is_missing(const struct memfault_region *region,
			       uint64_t page);

/**
 * @brief **memfault_region_find_missing()**: the first missing page at or
 * after @p from.
 *
 * @param region the region.
 * @param from page index to start at.
 * @param[out] ret_page the page found; written only on success.
 * @return 0 on success or a negative errno.
 * @retval -ENOENT no missing page at or after @p from.
 * @retval -EINVAL NULL argument or @p from beyond the region.
 * @note Thread-safe; a snapshot: pages may change while it scans.
 * @since 0.1
 */
int memfault_region_find_missing(const struct memfault_region *region,
				 uint64_t from, uint64_t *ret_page);

/**
 * @brief **memfault_region_find_present()**: the first present page at or
 * after @p from.
 *
 * @param region the region.
 * @param from page index to start at.
 * @param[out] ret_page the page found; written only on success.
 * @return 0 on success or a negative errno.
 * @retval -ENOENT no present page at or after @p from.
 * @retval -EINVAL NULL argument or @p from beyond the region.
 * @note Thread-safe; a snapshot.
 * @since 0.1
 */
int memfault_region_find_present(const struct memfault_region *region,
				 uint64_t from, uint64_t *ret_page);

/**
 * @brief **memfault_region_count_missing()**: how many pages are missing.
 *
 * @param region the region.
 * @param[out] ret_count the count; written only on success.
 * @return 0 on success or a negative errno.
 * @retval -EINVAL a NULL argument.
 * @note Thread-safe; a snapshot.
 * @since 0.1
 */
int memfault_region_count_missing(const struct memfault_region *region,
				  uint64_t *ret_count);

/**
 * Flags for memfault_region_claim().
 * @since 0.1
 */
enum memfault_claim_flag {
	/** Do not wait for another thread's fetch: return #MEMFAULT_CLAIM_BUSY. */
	MEMFAULT_CLAIM_NOWAIT = 1u << 0,
};

/**
 * Results of memfault_region_claim().
 * @since 0.1
 */
enum memfault_claim_result {
	/** The page is present: nothing to do. */
	MEMFAULT_CLAIM_PRESENT = 0,
	/** The caller must fetch the page, then publish or abort it. */
	MEMFAULT_CLAIM_FETCH = 1,
	/** With #MEMFAULT_CLAIM_NOWAIT: another thread is fetching it. */
	MEMFAULT_CLAIM_BUSY = 2,
};

/**
 * @brief **memfault_region_claim()**: decide who fetches a missing page.
 *
 * Exactly one caller gets #MEMFAULT_CLAIM_FETCH for a missing page; the
 * others sleep (futex, no spinning) until it is published, then get
 * #MEMFAULT_CLAIM_PRESENT, or until it is aborted, when one of them gets
 * #MEMFAULT_CLAIM_FETCH in turn.
 *
 * @param region the region.
 * @param page page index.
 * @param flags bitwise OR of enum memfault_claim_flag values.
 * @return one of enum memfault_claim_result, or a negative errno.
 * @retval -EINVAL NULL region, @p page out of range or unknown @p flags.
 * @retval -EINTR a signal interrupted the wait (nothing was claimed).
 * @note Thread-safe. Not async-signal-safe.
 * @since 0.1
 */
int memfault_region_claim(struct memfault_region *region, uint64_t page,
			  uint32_t flags);

/**
 * @brief **memfault_region_abort()**: the fetch of a claimed page failed:
 * release the claim, leave the page missing, wake one waiter to retry.
 *
 * @param region the region.
 * @param page page index.
 * @return 0 on success or a negative errno.
 * @retval -EINVAL NULL region or @p page out of range.
 * @retval -EPERM the page was not claimed.
 * @note Thread-safe.
 * @since 0.1
 */
int memfault_region_abort(struct memfault_region *region, uint64_t page);

/** @} */

/**
 * @defgroup dispatch Dispatch
 * Resolve memory faults inside the run loop: memfault_vcpu_run_dispatch()
 * re-enters the guest after every fault a handler (or the library's
 * default) resolved, and returns only what the VMM must handle itself.
 *
 * What is guaranteed to handlers:
 * - page_in() is called exactly once per page and per time the page went
 *   missing, whichever vCPUs fault on it at once: the others sleep until
 *   it is published, then re-enter without a call. Calls for different
 *   pages run concurrently on different vCPU threads.
 * - convert(), discard(), hwpoison() and other() run on the faulting
 *   vCPU's thread, possibly on several vCPU threads at once, also for
 *   overlapping ranges: they must be thread-safe.
 * - No library lock is held during a call; a handler may call any
 *   libmemfault function except memfault_vm_set_handlers() and the
 *   destructors, and may call memfault_vcpu_kick() on any vCPU.
 * - log() may be called from any thread, never from a signal handler.
 * @{
 */

/**
 * What a handler tells the run loop (a negative errno means failure).
 * @since 0.1
 */
enum memfault_verdict {
	/** The fault is resolved: re-enter the guest. */
	MEMFAULT_RESOLVED = 0,
	/** Return this fault to the VMM (#MEMFAULT_RUN_MEMORY_FAULT). */
	MEMFAULT_TO_VMM = 1,
};

/**
 * Handlers and their user pointer, per VM. Declare with MEMFAULT_OPTS().
 * @since 0.1
 */
struct memfault_handlers {
	/** Size of this struct as the caller knows it: `sizeof(struct memfault_handlers)`. */
	size_t sz;
	/** Passed to every handler. */
	void *user;
	/**
	 * Fill page @p page of @p region (at @p hva, @p page_size bytes) for a
	 * #MEMFAULT_FAULT_USERFAULT fault; the library has claimed the page
	 * and publishes it after a #MEMFAULT_RESOLVED return (aborts the claim
	 * otherwise). NULL: userfault faults go to the VMM.
	 */
	int (*page_in)(void *user, struct memfault_vcpu *vcpu,
		       struct memfault_region *region, uint64_t page,
		       void *hva, uint64_t page_size);
	/**
	 * Handle a private/shared conversion request. NULL: the default sets
	 * the memory attributes of the host-page-aligned range
	 * (KVM_SET_MEMORY_ATTRIBUTES) and calls discard(). The default
	 * converts at most 512 pages: a longer reported range is the VMM's
	 * (#MEMFAULT_RUN_MEMORY_FAULT, nothing converted). EAGAIN and EINTR
	 * from the ioctl are retried at most 64 times, then returned; a kick
	 * ends the retries with #MEMFAULT_RUN_INTERRUPTED.
	 */
	int (*convert)(void *user, struct memfault_vcpu *vcpu,
		       const struct memfault_fault *fault);
	/**
	 * After the default conversion of [@p gpa, @p gpa + @p size) to
	 * private (@p to_private 1) or shared (0): discard the other side
	 * (guest_memfd FALLOC_FL_PUNCH_HOLE, or MADV_DONTNEED/MADV_REMOVE on
	 * shared memory). NULL: nothing is discarded.
	 */
	int (*discard)(void *user, uint64_t gpa, uint64_t size,
		       uint32_t to_private);
	/** A #MEMFAULT_FAULT_HWPOISON fault. NULL: to the VMM. */
	int (*hwpoison)(void *user, struct memfault_vcpu *vcpu,
			const struct memfault_fault *fault);
	/** Any other memory fault. NULL: to the VMM. */
	int (*other)(void *user, struct memfault_vcpu *vcpu,
		     const struct memfault_fault *fault);
	/** Diagnostics (the library never prints): a level 3 (error) to 7 (debug) and a message. */
	void (*log)(void *user, int level, const char *message);
	/**
	 * How many times the same fault may come back right after it was
	 * resolved before memfault_vcpu_run_dispatch() returns -ELOOP; 0
	 * selects 16.
	 */
	uint32_t max_repeats;
	/** Reserved, must be zero. */
	uint32_t reserved;
};

/**
 * @brief **memfault_vm_set_handlers()**: set (or, with NULL, clear) the
 * VM's handlers.
 *
 * @param vm the VM.
 * @param handlers the handlers (copied), or NULL for the defaults only.
 * @return 0 on success or a negative errno.
 * @retval -EINVAL NULL @p vm or malformed @p handlers.
 * @note Setup call: not while a vCPU of @p vm runs memfault_vcpu_run_dispatch().
 * @since 0.1
 */
int memfault_vm_set_handlers(struct memfault_vm *vm,
			     const struct memfault_handlers *handlers);

/**
 * @brief **memfault_vcpu_run_dispatch()**: run the vCPU until an exit the
 * VMM must see, resolving memory faults on the way.
 *
 * Returns what memfault_vcpu_run() returns, except for memory faults that
 * a handler or a default resolved. A fault returned to the VMM is
 * readable with memfault_vcpu_get_fault(), also when a handler failed.
 *
 * A #MEMFAULT_FAULT_USERFAULT fault pages in exactly the pages that its
 * reported range [gpa, gpa + size) touches inside the region holding gpa,
 * at most 512 of them. What the range holds beyond the region or beyond
 * those 512 pages is the VMM's: the fault is then returned
 * (#MEMFAULT_RUN_MEMORY_FAULT) after the pages in range were paged in.
 *
 * @param vcpu the vCPU.
 * @return one of enum memfault_run_result, or a negative errno.
 * @retval MEMFAULT_RUN_MEMORY_FAULT a fault no handler resolved, a
 *         userfault range longer than 512 pages or leaving its region, or
 *         a conversion request longer than 512 pages (default handler).
 * @retval MEMFAULT_RUN_INTERRUPTED a kick or a signal, also one that came
 *         while waiting for another thread's page-in.
 * @retval -ELOOP the same fault came back more than max_repeats times
 *         after it was resolved.
 * @retval -EINVAL @p vcpu is NULL.
 * @retval -EPROTO a handler returned a value that is neither a verdict nor
 *         a negative errno, or KVM_RUN's result was not a system call
 *         result (as memfault_vcpu_run()).
 * @note A kick makes it return #MEMFAULT_RUN_INTERRUPTED at the next
 *       re-entry, while it waits for another thread's page-in, or between
 *       two pages of one fault; a handler running on this thread is not
 *       interrupted. A handler's negative errno is returned as it is.
 * @since 0.1
 */
int memfault_vcpu_run_dispatch(struct memfault_vcpu *vcpu);

/**
 * Per-vCPU counters, filled by memfault_vcpu_get_stats().
 * @since 0.1
 */
struct memfault_vcpu_stats {
	/** KVM_RUN calls. */
	uint64_t runs;
	/** Ordinary exits returned. */
	uint64_t exits;
	/** Memory faults seen (resolved or not). */
	uint64_t memory_faults;
	/** ... of them with #MEMFAULT_FAULT_USERFAULT. */
	uint64_t userfaults;
	/** Pages this vCPU fetched through page_in(). */
	uint64_t page_ins;
	/** Userfaults resolved by waiting for another vCPU's fetch or finding the page present. */
	uint64_t page_waits;
	/** Conversions done (default or handler). */
	uint64_t conversions;
	/** #MEMFAULT_FAULT_HWPOISON faults. */
	uint64_t hwpoison;
	/** Other faults. */
	uint64_t other_faults;
	/** Faults returned to the VMM. */
	uint64_t to_vmm;
	/** Re-entries after a resolved fault. */
	uint64_t retries;
	/** Times the repeat guard returned -ELOOP. */
	uint64_t repeat_trips;
	/** #MEMFAULT_RUN_INTERRUPTED returns. */
	uint64_t interrupted;
	/**
	 * Nanoseconds spent in handlers (CLOCK_MONOTONIC), only with
	 * #MEMFAULT_VCPU_TIME_HANDLERS (0 otherwise; before 0.2, always).
	 */
	uint64_t handler_ns;
	/**
	 * userfaultfd faults raised by this vCPU's thread (KVM's own accesses
	 * to guest memory, or the VMM's on that thread) and handled by the
	 * library: see memfault_uffd_add_vcpu().
	 */
	uint64_t uffd_faults;
	/**
	 * Nanoseconds those faults waited for the library, from reading the
	 * fault to installing or waking the page.
	 */
	uint64_t uffd_wait_ns;
};

/**
 * @brief **memfault_vcpu_get_stats()**: read a vCPU's counters.
 *
 * @param vcpu the vCPU.
 * @param[out] ret_stats filled with min(@p size, sizeof) bytes.
 * @param size the caller's `sizeof(struct memfault_vcpu_stats)`.
 * @return 0 on success or a negative errno.
 * @retval -EINVAL a NULL argument or @p size 0.
 * @note Thread-safe: callable while the vCPU runs; each counter is read
 *       atomically, the set is not a snapshot.
 * @since 0.1
 */
int memfault_vcpu_get_stats(const struct memfault_vcpu *vcpu,
			    struct memfault_vcpu_stats *ret_stats, size_t size);

/** @} */

/**
 * @defgroup uffd userfaultfd backend
 * The same bitmap and the same page_in() handler on kernels without KVM
 * Userfault, and for the accesses KVM Userfault never sees: KVM's own
 * (through the hva, in the vCPU thread) and the VMM's own threads.
 *
 * A region is registered with userfaultfd(2) in one of two modes:
 * - #MEMFAULT_UFFD_MISSING for anonymous private memory: page_in() fills
 *   a bounce buffer, which is installed with UFFDIO_COPY; the buffer
 *   reads as zeros, so bytes page_in() leaves alone install as zeros,
 *   never as another page's data;
 * - #MEMFAULT_UFFD_MINOR for a memfd (shmem) mapped twice: page_in()
 *   fills the page through the second mapping (the alias), and the page
 *   is mapped with UFFDIO_CONTINUE. Holes in the memfd trap too.
 *
 * The bitmap stays the source of truth: each page is fetched exactly
 * once, whichever trap source (a KVM Userfault exit or a userfaultfd
 * fault) or VMM thread reaches it first, and a failed page-in poisons the
 * page until it is fetched again; the main page's section
 * @ref trap_sources "Two trap sources, one bitmap" gives the whole model.
 *
 * Faults are served either by a library thread
 * (#MEMFAULT_UFFD_SERVICE_THREAD) or by the VMM: it polls
 * memfault_uffd_get_fd() for POLLIN in its event loop and calls
 * memfault_uffd_service().
 * @{
 */

/**
 * Opaque userfaultfd object.
 * @since 0.1
 */
struct memfault_uffd;

/**
 * Flags for memfault_uffd_opts::flags.
 * @since 0.1
 */
enum memfault_uffd_flag {
	/**
	 * Serve faults in a library thread (all signals blocked), stopped by
	 * memfault_uffd_free(). Without it, the VMM calls
	 * memfault_uffd_service().
	 */
	MEMFAULT_UFFD_SERVICE_THREAD = 1u << 0,
};

/**
 * Options for memfault_uffd_new(). Declare with MEMFAULT_OPTS().
 * @since 0.1
 */
struct memfault_uffd_opts {
	/** Size of this struct as the caller knows it: `sizeof(struct memfault_uffd_opts)`. */
	size_t sz;
	/** Bitwise OR of enum memfault_uffd_flag values. */
	uint64_t flags;
	/** Reserved, must be zero. */
	uint64_t reserved;
};

/**
 * Registration modes for memfault_uffd_register().
 * @since 0.1
 */
enum memfault_uffd_mode {
	/**
	 * Anonymous private memory (shared memory works too): pages installed
	 * with UFFDIO_COPY.
	 */
	MEMFAULT_UFFD_MISSING = 1,
	/**
	 * memfd/shmem memory mapped twice: pages filled through the alias and
	 * mapped with UFFDIO_CONTINUE (needs UFFD_FEATURE_MINOR_SHMEM, 5.13).
	 */
	MEMFAULT_UFFD_MINOR = 2,
};

/**
 * Number of buckets in memfault_uffd_stats::latency. Bucket 0 counts
 * latencies below 512 ns; bucket i >= 1 counts
 * [(4 + (i - 1) % 4) << (7 + (i - 1) / 4),
 *  (5 + (i - 1) % 4) << (7 + (i - 1) / 4)) ns, four buckets per power of
 * two; the last one also counts everything longer (about 25 ms and up).
 * @since 0.1
 */
#define MEMFAULT_UFFD_LATENCY_BUCKETS 64

/**
 * Counters, filled by memfault_uffd_get_stats().
 * @since 0.1
 */
struct memfault_uffd_stats {
	/** The UFFD_FEATURE_* bits enabled on the userfaultfd. */
	uint64_t features;
	/** userfaultfd page faults handled. */
	uint64_t faults;
	/** Pages fetched (page_in() succeeded and installed) for userfaultfd faults. */
	uint64_t page_ins;
	/** Pages fetched for KVM Userfault exits and installed through userfaultfd. */
	uint64_t kvm_page_ins;
	/**
	 * Faults that fetched nothing: the page was present, or another
	 * thread was fetching it.
	 */
	uint64_t waits;
	/** Faults outside every registered region (woken, nothing installed). */
	uint64_t unknown;
	/** Page-ins of userfaultfd faults that failed (pages poisoned). */
	uint64_t errors;
	/** Host virtual address of the last failed page-in; 0 if none. */
	uint64_t last_error_addr;
	/** Guest physical address of the last failed page-in; 0 if none. */
	uint64_t last_error_gpa;
	/** Negative errno of the last failed page-in; 0 if none. */
	int32_t last_error;
	/** Thread id of the thread whose fault failed; 0 if unknown. */
	uint32_t last_error_tid;
	/** Median fault latency in ns, from the histogram (upper bucket bound, at most the max). */
	uint64_t latency_p50_ns;
	/** 99th percentile fault latency in ns, computed as the median. */
	uint64_t latency_p99_ns;
	/** Longest fault latency in ns. */
	uint64_t latency_max_ns;
	/**
	 * Histogram of the latency of each userfaultfd fault, from reading it
	 * to installing or waking the page (see #MEMFAULT_UFFD_LATENCY_BUCKETS).
	 */
	uint64_t latency[MEMFAULT_UFFD_LATENCY_BUCKETS];
	/** Reserved for future counters; zero. */
	uint64_t reserved[4];
};

/**
 * @brief **memfault_uffd_new()**: create a userfaultfd for the VM's
 * regions.
 *
 * Opens /dev/userfaultfd with USERFAULTFD_IOC_NEW (Linux 6.1), falling back
 * to the userfaultfd(2) system call, both with O_CLOEXEC | O_NONBLOCK.
 * UFFDIO_API probes the features and enables those the library uses that
 * the kernel offers: THREAD_ID (per-vCPU attribution), MISSING_SHMEM and
 * MINOR_SHMEM (#MEMFAULT_UFFD_MINOR), POISON (failure delivery).
 *
 * @param vm the VM whose handlers (page_in(), log()) serve the faults; it
 *        stays alive while the object exists.
 * @param opts options, or NULL for the defaults.
 * @param[out] ret_uffd the new object; written only on success.
 * @return 0 on success or a negative errno.
 * @retval -EINVAL a NULL or malformed argument.
 * @retval -EPERM userfaultfd is not permitted for this process; a message
 *         naming `vm.unprivileged_userfaultfd` and /dev/userfaultfd goes to
 *         the VM's log handler.
 * @retval -ENOSYS the kernel (or an emulator such as qemu-user) has no
 *         userfaultfd.
 * @retval -ENOMEM out of memory.
 * @note Thread-safe; not async-signal-safe. Other errors of the system
 *       calls involved (EMFILE, ...) are returned negated.
 * @since 0.1
 */
int memfault_uffd_new(struct memfault_vm *vm,
		      const struct memfault_uffd_opts *opts,
		      struct memfault_uffd **ret_uffd);

/**
 * @brief **memfault_uffd_free()**: stop serving faults and release the
 * object.
 *
 * Stops the service thread, if any, through an eventfd and joins it; then
 * resolves the faults already queued, so that threads blocked in them get
 * their pages (page_in() may be called); then unregisters every region,
 * which wakes any fault that raced with that: it is retried without
 * userfaultfd and sees the memory as it is (anonymous: a zero page). No
 * thread is left blocked in the kernel. Bits still set stay set: KVM
 * Userfault exits on the regions go on working, and resolve through the
 * region's hva again.
 *
 * @param uffd the object, or NULL (nothing happens).
 * @note Setup call: not while another thread calls memfault_uffd_service()
 *       or runs memfault_vcpu_run_dispatch() on a registered region, and
 *       not from page_in(). No other call may use @p uffd afterwards.
 * @since 0.1
 */
void memfault_uffd_free(struct memfault_uffd *uffd);

/**
 * @brief **memfault_uffd_get_fd()**: the userfaultfd, for the VMM's event
 * loop.
 *
 * @param uffd the object.
 * @return the fd (>= 0), readable (POLLIN) when faults are queued, or a
 *         negative errno.
 * @retval -EINVAL @p uffd is NULL.
 * @note Thread-safe and async-signal-safe. Do not read it or close it:
 *       call memfault_uffd_service().
 * @since 0.1
 */
int memfault_uffd_get_fd(const struct memfault_uffd *uffd);

/**
 * @brief **memfault_uffd_service()**: handle the faults queued now,
 * without blocking.
 *
 * Reads up to @p max_events messages and resolves each fault: claim,
 * page_in(), install, publish; or install/wake only for a page present
 * or being fetched by another thread. Returns when none is queued.
 *
 * @param uffd the object.
 * @param max_events the most messages to handle, at least 1.
 * @return the number of messages handled (0 if none was queued), or a
 *         negative errno.
 * @retval -EINVAL @p uffd is NULL or @p max_events is 0.
 * @note Thread-safe: several threads, and the service thread, may call it
 *       at once. page_in() runs in the calling thread, which must not
 *       itself touch a missing page of a registered region.
 * @since 0.1
 */
int memfault_uffd_service(struct memfault_uffd *uffd, uint32_t max_events);

/**
 * @brief **memfault_uffd_register()**: trap the host accesses to a region
 * with userfaultfd.
 *
 * Registers [hva, hva + size) of @p region (UFFDIO_REGISTER), then unmaps
 * its missing pages as memfault_region_mark_missing() does (MADV_DONTNEED,
 * or MADV_REMOVE for shared memory in #MEMFAULT_UFFD_MISSING mode), so that
 * the bitmap and the page tables agree: a page whose bit is set faults on
 * every access.
 *
 * @param uffd the object.
 * @param region a region of the VM of @p uffd, with an hva.
 * @param mode one of enum memfault_uffd_mode.
 * @param alias #MEMFAULT_UFFD_MINOR: a second shared mapping of the same
 *        memfd range, host-page aligned, not overlapping the region, and
 *        not registered; the library writes pages through it. NULL for
 *        #MEMFAULT_UFFD_MISSING.
 * @return 0 on success or a negative errno; on failure nothing changed.
 * @retval -EINVAL a NULL or bad argument, a region of another VM or
 *         without hva, a misplaced @p alias, or memory the kernel cannot
 *         register in this mode (#MEMFAULT_UFFD_MINOR on anonymous memory).
 * @retval -EEXIST @p region, or a region sharing its host memory, is
 *         already registered.
 * @retval -EOPNOTSUPP the kernel lacks the mode for this memory.
 * @retval -ENOMEM out of memory.
 * @note Thread-safe, also while faults on other regions are being served,
 *       but before any vCPU runs memfault_vcpu_run_dispatch() on
 *       @p region: a KVM Userfault page-in that started before writes the
 *       region's hva. Not from page_in(). The registration ends with
 *       memfault_region_free() or memfault_uffd_free().
 * @since 0.1
 */
int memfault_uffd_register(struct memfault_uffd *uffd,
			   struct memfault_region *region, uint32_t mode,
			   void *alias);

/**
 * @brief **memfault_uffd_add_vcpu()**: attribute the userfaultfd faults of
 * a vCPU's thread to the vCPU.
 *
 * A fault from the thread that last ran @p vcpu in memfault_vcpu_run()
 * (needs UFFD_FEATURE_THREAD_ID) passes @p vcpu to page_in() and counts in
 * memfault_vcpu_stats::uffd_faults and memfault_vcpu_stats::uffd_wait_ns
 * of @p vcpu. Faults of other threads pass NULL.
 *
 * @param uffd the object.
 * @param vcpu a vCPU of the same VM.
 * @return 0 on success or a negative errno.
 * @retval -EINVAL a NULL argument or a vCPU of another VM.
 * @retval -EEXIST @p vcpu was already added.
 * @retval -ENOMEM out of memory.
 * @note Thread-safe; not from page_in(). Remove the vCPU with
 *       memfault_uffd_remove_vcpu() before memfault_vcpu_free().
 * @since 0.1
 */
int memfault_uffd_add_vcpu(struct memfault_uffd *uffd,
			   struct memfault_vcpu *vcpu);

/**
 * @brief **memfault_uffd_remove_vcpu()**: stop attributing faults to a
 * vCPU.
 *
 * Waits until no fault being served uses @p vcpu.
 *
 * @param uffd the object.
 * @param vcpu a vCPU added with memfault_uffd_add_vcpu().
 * @return 0 on success or a negative errno.
 * @retval -EINVAL a NULL argument.
 * @retval -ENOENT @p vcpu was not added.
 * @note Thread-safe; not from page_in().
 * @since 0.1
 */
int memfault_uffd_remove_vcpu(struct memfault_uffd *uffd,
			      struct memfault_vcpu *vcpu);

/**
 * @brief **memfault_uffd_get_stats()**: read the counters, the latency
 * histogram and the last failure.
 *
 * @param uffd the object.
 * @param[out] ret_stats filled with min(@p size, sizeof) bytes.
 * @param size the caller's `sizeof(struct memfault_uffd_stats)`.
 * @return 0 on success or a negative errno.
 * @retval -EINVAL a NULL argument or @p size 0.
 * @note Thread-safe: each counter is read atomically, the set is not a
 *       snapshot; the last-failure fields are consistent with each other.
 * @since 0.1
 */
int memfault_uffd_get_stats(const struct memfault_uffd *uffd,
			    struct memfault_uffd_stats *ret_stats, size_t size);

/** @} */

#ifdef __cplusplus
}
#endif

#endif /* MEMFAULT_MEMFAULT_H */
