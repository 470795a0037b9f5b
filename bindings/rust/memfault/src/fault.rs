// SPDX-License-Identifier: MIT
//! Exits and decoded memory faults.

use std::fmt;
use std::ops::{BitAnd, BitOr, BitOrAssign};

use memfault_sys as sys;

use crate::errno::{Errno, Result};
use crate::kvm_run::KvmRun;
use crate::vm::Arch;

/// `memfault_fault::flags`: what the library decoded (several may be set).
///
/// ```
/// use memfault::FaultFlags;
///
/// let f = FaultFlags::USERFAULT | FaultFlags::PRIVATE;
/// assert!(f.contains(FaultFlags::USERFAULT));
/// assert!(!f.contains(FaultFlags::HWPOISON));
/// assert_eq!(f.bits(), 3);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FaultFlags(u64);

impl FaultFlags {
    /// The access was private (`KVM_MEMORY_EXIT_FLAG_PRIVATE`).
    pub const PRIVATE: FaultFlags = FaultFlags(sys::MEMFAULT_FAULT_PRIVATE as u64);
    /// A KVM Userfault exit.
    pub const USERFAULT: FaultFlags = FaultFlags(sys::MEMFAULT_FAULT_USERFAULT as u64);
    /// `KVM_RUN` failed with `EHWPOISON`.
    pub const HWPOISON: FaultFlags = FaultFlags(sys::MEMFAULT_FAULT_HWPOISON as u64);
    /// The kernel set flag bits the library does not know.
    pub const UNKNOWN: FaultFlags = FaultFlags(sys::MEMFAULT_FAULT_UNKNOWN as u64);
    /// The reported size is zero: the range is not to be trusted.
    pub const SIZE_ZERO: FaultFlags = FaultFlags(sys::MEMFAULT_FAULT_SIZE_ZERO as u64);
    /// gpa or size is not a multiple of the host page size.
    pub const UNALIGNED: FaultFlags = FaultFlags(sys::MEMFAULT_FAULT_UNALIGNED as u64);
    /// gpa + size overflows 64 bits: the range is not to be trusted.
    pub const OVERFLOW: FaultFlags = FaultFlags(sys::MEMFAULT_FAULT_OVERFLOW as u64);

    /// No flag.
    pub const fn empty() -> FaultFlags {
        FaultFlags(0)
    }
    /// From the raw bits (unknown bits are kept).
    pub const fn from_bits(bits: u64) -> FaultFlags {
        FaultFlags(bits)
    }
    /// The raw bits.
    pub const fn bits(self) -> u64 {
        self.0
    }
    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: FaultFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for FaultFlags {
    type Output = FaultFlags;
    fn bitor(self, rhs: FaultFlags) -> FaultFlags {
        FaultFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for FaultFlags {
    fn bitor_assign(&mut self, rhs: FaultFlags) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for FaultFlags {
    type Output = FaultFlags;
    fn bitand(self, rhs: FaultFlags) -> FaultFlags {
        FaultFlags(self.0 & rhs.0)
    }
}

impl fmt::Debug for FaultFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(FaultFlags, &str); 7] = [
            (FaultFlags::PRIVATE, "PRIVATE"),
            (FaultFlags::USERFAULT, "USERFAULT"),
            (FaultFlags::HWPOISON, "HWPOISON"),
            (FaultFlags::UNKNOWN, "UNKNOWN"),
            (FaultFlags::SIZE_ZERO, "SIZE_ZERO"),
            (FaultFlags::UNALIGNED, "UNALIGNED"),
            (FaultFlags::OVERFLOW, "OVERFLOW"),
        ];
        let mut rest = self.0;
        let mut first = true;
        write!(f, "FaultFlags(")?;
        for (flag, name) in NAMES {
            if self.contains(flag) {
                write!(f, "{}{name}", if first { "" } else { " | " })?;
                first = false;
                rest &= !flag.0;
            }
        }
        if rest != 0 || first {
            write!(f, "{}{rest:#x}", if first { "" } else { " | " })?;
        }
        write!(f, ")")
    }
}

/// Where a memory fault came from (`enum memfault_fault_origin`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// `KVM_RUN` returned -1 with `EFAULT` or `EHWPOISON`, as api.rst documents.
    Errno,
    /// `KVM_RUN` returned 0 with the exit set (arm64 nested VNCR path).
    Ret0,
    /// `KVM_RUN` returned -1 with another errno (guest_memfd `ENOMEM`, `EIO`, ...).
    OtherErrno,
    /// A value this crate does not know (a newer library).
    Unknown(u32),
}

impl Origin {
    fn from_raw(v: u32) -> Origin {
        match v {
            sys::MEMFAULT_ORIGIN_ERRNO => Origin::Errno,
            sys::MEMFAULT_ORIGIN_RET0 => Origin::Ret0,
            sys::MEMFAULT_ORIGIN_OTHER_ERRNO => Origin::OtherErrno,
            other => Origin::Unknown(other),
        }
    }
}

/// A decoded memory fault (`struct memfault_fault`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fault {
    /// Guest physical address of the faulting range, as the kernel reported it.
    pub gpa: u64,
    /// Size of the range in bytes, as the kernel reported it.
    pub size: u64,
    /// What the library decoded.
    pub flags: FaultFlags,
    /// `kvm_run.memory_fault.flags` exactly as the kernel wrote it.
    pub kernel_flags: u64,
    /// `None` if `KVM_RUN` returned 0, else the errno it failed with.
    pub error: Option<Errno>,
    /// How the kernel reported it.
    pub origin: Origin,
}

impl Fault {
    pub(crate) fn from_raw(f: &sys::memfault_fault) -> Fault {
        Fault {
            gpa: f.gpa,
            size: f.size,
            flags: FaultFlags(f.flags),
            kernel_flags: f.kernel_flags,
            error: f.error.checked_neg().and_then(Errno::new),
            origin: Origin::from_raw(f.origin),
        }
    }

    /// A KVM Userfault exit (a missing page of a userfault region).
    pub fn is_userfault(&self) -> bool {
        self.flags.contains(FaultFlags::USERFAULT)
    }
    /// The access was private.
    pub fn is_private(&self) -> bool {
        self.flags.contains(FaultFlags::PRIVATE)
    }
    /// The page is hardware-poisoned.
    pub fn is_hwpoison(&self) -> bool {
        self.flags.contains(FaultFlags::HWPOISON)
    }
    /// Whether `gpa..gpa + size` can be trusted (non-zero size, no overflow).
    pub fn range_trusted(&self) -> bool {
        !self.flags.contains(FaultFlags::SIZE_ZERO) && !self.flags.contains(FaultFlags::OVERFLOW)
    }
}

/// What one run of a vCPU ended with: the ordinary exit decoded from
/// `kvm_run` (as kvm-ioctls' `VcpuExit` decodes it), a memory fault, or a
/// run that did not get to an exit.
///
/// The data slices point into the vCPU's `kvm_run` mapping: write the answer
/// of an `IoIn` or `MmioRead` into them, and the next run completes the
/// guest's access with it.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit<'a> {
    /// `KVM_EXIT_IO`, in: the guest reads `data.len()` bytes (`size * count`)
    /// from `port`; fill `data`.
    IoIn(u16, &'a mut [u8]),
    /// `KVM_EXIT_IO`, out: the guest wrote `data` to `port`.
    IoOut(u16, &'a [u8]),
    /// `KVM_EXIT_MMIO`, a load of `data.len()` bytes at this guest physical
    /// address; fill `data` (as the guest sees memory).
    MmioRead(u64, &'a mut [u8]),
    /// `KVM_EXIT_MMIO`, a store of `data` at this guest physical address.
    MmioWrite(u64, &'a [u8]),
    /// `KVM_EXIT_HLT` (x86).
    Hlt,
    /// `KVM_EXIT_SHUTDOWN` (x86: triple fault).
    Shutdown,
    /// `KVM_EXIT_SYSTEM_EVENT` with its `type` (`KVM_SYSTEM_EVENT_*`: 1
    /// shutdown, 2 reset, 3 crash, ...; arm64 PSCI).
    SystemEvent(u32),
    /// `KVM_EXIT_FAIL_ENTRY`.
    FailEntry,
    /// `KVM_EXIT_INTERNAL_ERROR`.
    InternalError,
    /// Any other `kvm_run.exit_reason` (see [`crate::exit_reason`]): read
    /// it through [`crate::Vcpu::kvm_run`].
    Other(u32),
    /// A memory fault (no handler resolved it).
    MemoryFault(Fault),
    /// `KVM_RUN` was interrupted by a kick or a signal (`EINTR`).
    Interrupted,
    /// KVM asked to be called again (`EAGAIN`).
    Retry,
}

impl<'a> Exit<'a> {
    /// From a non-negative result, decoding the ordinary exit from `run` and
    /// reading the fault with `fault()`.
    pub(crate) fn decode(
        result: i32,
        run: KvmRun<'a>,
        fault: impl FnOnce() -> Result<Fault>,
    ) -> Result<Exit<'a>> {
        match result as u32 {
            sys::MEMFAULT_RUN_EXIT => Ok(run.into_exit()),
            sys::MEMFAULT_RUN_MEMORY_FAULT => fault().map(Exit::MemoryFault),
            sys::MEMFAULT_RUN_INTERRUPTED => Ok(Exit::Interrupted),
            sys::MEMFAULT_RUN_RETRY => Ok(Exit::Retry),
            // a result this crate does not know: a newer library
            _ => Err(Errno::EPROTO),
        }
    }

    /// The `kvm_run.exit_reason` of an ordinary exit ([`crate::exit_reason`]);
    /// `None` for a memory fault, an interrupted or a retried run.
    pub fn reason(&self) -> Option<u32> {
        use crate::exit_reason as r;
        Some(match self {
            Exit::IoIn(..) | Exit::IoOut(..) => r::IO,
            Exit::MmioRead(..) | Exit::MmioWrite(..) => r::MMIO,
            Exit::Hlt => r::HLT,
            Exit::Shutdown => r::SHUTDOWN,
            Exit::SystemEvent(_) => r::SYSTEM_EVENT,
            Exit::FailEntry => r::FAIL_ENTRY,
            Exit::InternalError => r::INTERNAL_ERROR,
            Exit::Other(x) => *x,
            Exit::MemoryFault(_) | Exit::Interrupted | Exit::Retry => return None,
        })
    }
}

/// Get a `kvm_run` ready for a `KVM_RUN` the VMM makes itself, as
/// [`crate::Vcpu::run`] does before entry (`memfault_exit_prepare()`).
///
/// Call it before each `KVM_RUN` whose result goes to [`classify_exit`]: a
/// `KVM_RUN` that fails before the kernel writes an exit (`EINVAL`, `EIO`)
/// leaves the previous `exit_reason`, and a memory fault left there would
/// read as a fresh one. Only that value is reset; `exit_reason`s the kernel
/// reads back on entry (arm64 MMIO) are kept.
///
/// ```
/// use memfault::{classify_exit, exit_reason, prepare_exit, Arch, Errno, KvmRunBuffer};
///
/// let mut buf = KvmRunBuffer::new();
/// let mut run = buf.view();
/// run.set_exit_reason(exit_reason::MEMORY_FAULT);
/// run.set_memory_fault(0, 0x2000_0000, 0x1000);
/// prepare_exit(&mut run, Arch::X86_64)?;
/// // KVM_RUN fails with EIO before writing an exit: not a memory fault
/// assert_eq!(classify_exit(&mut run, -1, Errno::EIO.get()), Err(Errno::EIO));
/// run.set_exit_reason(exit_reason::MMIO);
/// prepare_exit(&mut run, Arch::Arm64)?;
/// assert_eq!(run.exit_reason(), exit_reason::MMIO);
/// # Ok::<(), Errno>(())
/// ```
pub fn prepare_exit(run: &mut KvmRun<'_>, arch: Arch) -> Result<()> {
    // SAFETY: `run` points to a live, aligned kvm_run of at least
    // KVM_RUN_SIZE bytes (KvmRun's invariant), borrowed mutably.
    crate::errno::check0(unsafe { sys::memfault_exit_prepare(run.as_ptr(), arch.to_raw()) })
}

/// Classify a `KVM_RUN` result the VMM obtained itself, as [`crate::Vcpu::run`]
/// does (`memfault_exit_classify()`).
///
/// `ioctl_ret` is what `ioctl(KVM_RUN)` returned (0 or -1) and `err` the
/// `errno` read right after it; anything else is `Err(Errno::EPROTO)`.
/// Call [`prepare_exit`] before each such `KVM_RUN`.
///
/// ```
/// use memfault::{classify_exit, exit_reason, Errno, Exit, KvmRunBuffer, Origin};
///
/// let mut buf = KvmRunBuffer::new();
/// let mut run = buf.view();
/// run.set_exit_reason(exit_reason::MEMORY_FAULT);
/// run.set_memory_fault(0, 0x2000_0000, 0x1000);
/// let Exit::MemoryFault(f) = classify_exit(&mut run, -1, Errno::EFAULT.get())? else {
///     panic!("not a fault")
/// };
/// assert_eq!((f.gpa, f.size, f.error, f.origin), (0x2000_0000, 0x1000, Some(Errno::EFAULT), Origin::Errno));
///
/// run.set_exit_reason(exit_reason::MMIO);
/// assert!(matches!(classify_exit(&mut run, 0, 0)?, Exit::MmioRead(..)));
/// assert_eq!(classify_exit(&mut run, -1, Errno::EINTR.get())?, Exit::Interrupted);
/// assert_eq!(classify_exit(&mut run, 7, 0), Err(Errno::EPROTO));
/// assert_eq!(classify_exit(&mut run, -1, 0), Err(Errno::EPROTO));
/// # Ok::<(), Errno>(())
/// ```
pub fn classify_exit<'r>(run: &'r mut KvmRun<'_>, ioctl_ret: i32, err: i32) -> Result<Exit<'r>> {
    let mut raw = sys::memfault_fault::default();
    // SAFETY: `run` points to a live, aligned kvm_run of at least
    // KVM_RUN_SIZE bytes (KvmRun's invariant); `raw` is a valid out-struct.
    let r = unsafe {
        sys::memfault_exit_classify(
            run.as_ptr(),
            ioctl_ret,
            err,
            &mut raw,
            std::mem::size_of::<sys::memfault_fault>(),
        )
    };
    let r = crate::errno::check(r)?;
    Exit::decode(r, run.reborrow(), || Ok(Fault::from_raw(&raw)))
}
