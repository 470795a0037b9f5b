// SPDX-License-Identifier: MIT
//! [`Vm`]: a KVM VM file descriptor and what its kernel offers.

use std::any::Any;
use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::ptr::{self, NonNull};
use std::sync::{Arc, Mutex};

use memfault_sys as sys;

use crate::errno::{check, check0, Errno, Result};
use crate::gate::SetupGate;
use crate::handlers::{HandlerState, Handlers};
use crate::memory::GuestMemory;
use crate::region::{Region, RegionInfo, RegionOptions};
use crate::vcpu::{Vcpu, VcpuOptions};

/// An architecture (`enum memfault_arch`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Arch {
    /// The architecture the library was built for (an input only).
    #[default]
    Host,
    /// x86-64 (Intel VMX and AMD SVM).
    X86_64,
    /// arm64 (AArch64).
    Arm64,
}

impl Arch {
    /// The C value.
    pub fn to_raw(self) -> u32 {
        match self {
            Arch::Host => sys::MEMFAULT_ARCH_HOST,
            Arch::X86_64 => sys::MEMFAULT_ARCH_X86_64,
            Arch::Arm64 => sys::MEMFAULT_ARCH_ARM64,
        }
    }

    /// From the C value; `None` for a value this crate does not know.
    pub fn from_raw(v: u32) -> Option<Arch> {
        match v {
            sys::MEMFAULT_ARCH_HOST => Some(Arch::Host),
            sys::MEMFAULT_ARCH_X86_64 => Some(Arch::X86_64),
            sys::MEMFAULT_ARCH_ARM64 => Some(Arch::Arm64),
            _ => None,
        }
    }

    /// Does this architecture's kernel read `kvm_run.exit_reason` back on the
    /// next `KVM_RUN` to complete the exit (`memfault_arch_reads_back_exit()`)?
    ///
    /// ```
    /// use memfault::{exit_reason, Arch};
    ///
    /// assert!(Arch::Arm64.reads_back_exit(exit_reason::MMIO)?);
    /// assert!(!Arch::X86_64.reads_back_exit(exit_reason::HLT)?);
    /// # Ok::<(), memfault::Errno>(())
    /// ```
    pub fn reads_back_exit(self, exit_reason: u32) -> Result<bool> {
        // SAFETY: no pointers.
        check(unsafe { sys::memfault_arch_reads_back_exit(self.to_raw(), exit_reason) }).map(|r| r != 0)
    }
}

/// Feature bits of [`Features::flags`] (`enum memfault_feature`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FeatureFlags(pub u64);

impl FeatureFlags {
    /// `KVM_SET_USER_MEMORY_REGION2` exists.
    pub const USER_MEMORY2: FeatureFlags = FeatureFlags(sys::MEMFAULT_FEATURE_USER_MEMORY2 as u64);
    /// `KVM_CAP_MEMORY_FAULT_INFO` is advertised.
    pub const MEMORY_FAULT_INFO: FeatureFlags = FeatureFlags(sys::MEMFAULT_FEATURE_MEMORY_FAULT_INFO as u64);
    /// The kernel can deliver `KVM_EXIT_MEMORY_FAULT`.
    pub const MEMORY_FAULT_EXITS: FeatureFlags = FeatureFlags(sys::MEMFAULT_FEATURE_MEMORY_FAULT_EXITS as u64);
    /// `KVM_CAP_MEMORY_ATTRIBUTES` is non-zero.
    pub const MEMORY_ATTRIBUTES: FeatureFlags = FeatureFlags(sys::MEMFAULT_FEATURE_MEMORY_ATTRIBUTES as u64);
    /// guest_memfd can be created.
    pub const GUEST_MEMFD: FeatureFlags = FeatureFlags(sys::MEMFAULT_FEATURE_GUEST_MEMFD as u64);
    /// `KVM_CAP_GUEST_MEMFD_FLAGS` is non-zero.
    pub const GUEST_MEMFD_FLAGS: FeatureFlags = FeatureFlags(sys::MEMFAULT_FEATURE_GUEST_MEMFD_FLAGS as u64);
    /// The kernel accepted the proposed `KVM_MEM_USERFAULT` (experimental).
    pub const KVM_USERFAULT: FeatureFlags = FeatureFlags(sys::MEMFAULT_FEATURE_KVM_USERFAULT as u64);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: FeatureFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// What the VM's kernel offers (`struct memfault_features`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// Feature bits.
    pub flags: FeatureFlags,
    /// `KVM_CAP_MEMORY_ATTRIBUTES` (0 if none).
    pub memory_attributes: u64,
    /// `KVM_CAP_GUEST_MEMFD_FLAGS` (0 if none).
    pub guest_memfd_flags: u64,
    /// The architecture model in use (never [`Arch::Host`]).
    pub arch: Arch,
    /// Why the KVM Userfault probe gave no clear answer, if it did not.
    pub userfault_probe_error: Option<Errno>,
    /// Host page size in bytes.
    pub page_size: u64,
}

impl Features {
    /// Whether KVM Userfault regions can be created.
    pub fn kvm_userfault(&self) -> bool {
        self.flags.contains(FeatureFlags::KVM_USERFAULT)
    }
}

/// Options for [`Vm::new`] (`struct memfault_vm_opts`).
#[derive(Clone, Copy, Debug, Default)]
pub struct VmOptions<'a> {
    no_userfault_probe: bool,
    probe_gpa: u64,
    probe_slot: u32,
    kvm_fd: Option<BorrowedFd<'a>>,
    arch: Arch,
}

impl<'a> VmOptions<'a> {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Architecture model (default: the host's).
    pub fn arch(mut self, arch: Arch) -> Self {
        self.arch = arch;
        self
    }
    /// Do not probe KVM Userfault (no scratch memslot is created).
    pub fn no_userfault_probe(mut self) -> Self {
        self.no_userfault_probe = true;
        self
    }
    /// GPA of the probe's scratch memslot (default 64 GiB - 2 MiB).
    pub fn probe_gpa(mut self, gpa: u64) -> Self {
        self.probe_gpa = gpa;
        self
    }
    /// Memslot id of the probe (default: the highest).
    pub fn probe_slot(mut self, slot: u32) -> Self {
        self.probe_slot = slot;
        self
    }
    /// An open `/dev/kvm`, read once by [`Vm::new`] for the `kvm_run`
    /// mapping size (otherwise the library opens `/dev/kvm` itself).
    pub fn kvm_fd(mut self, fd: BorrowedFd<'a>) -> Self {
        self.kvm_fd = Some(fd);
        self
    }

    fn to_raw(self, own_fd: bool) -> sys::memfault_vm_opts {
        let mut flags = 0u64;
        if own_fd {
            flags |= sys::MEMFAULT_VM_OWN_FD as u64;
        }
        if self.no_userfault_probe {
            flags |= sys::MEMFAULT_VM_NO_USERFAULT_PROBE as u64;
        }
        sys::memfault_vm_opts {
            sz: std::mem::size_of::<sys::memfault_vm_opts>(),
            flags,
            probe_gpa: self.probe_gpa,
            kvm_fd: self.kvm_fd.map_or(-1, |fd| fd.as_raw_fd()),
            arch: self.arch.to_raw(),
            probe_slot: self.probe_slot,
            reserved: 0,
        }
    }
}

pub(crate) type PanicSlot = Arc<Mutex<Option<Box<dyn Any + Send>>>>;

/// A VM object (`struct memfault_vm`): wraps a KVM VM fd.
///
/// `Send + Sync`: its lookups and vCPU creation are thread-safe in C; the
/// setup calls ([`Vm::add_region`], dropping a [`Region`],
/// [`Vm::set_handlers`]) are kept from running while a vCPU of the VM is in
/// [`Vcpu::run_dispatch`] (they fail with `EBUSY`; a dropped region waits).
/// vCPUs and regions borrow the VM, so it outlives them.
///
/// ```no_run
/// use std::fs::File;
/// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
/// use memfault::{Vm, VmOptions};
///
/// # fn kvm_create_vm(kvm: &File) -> OwnedFd { unimplemented!() }
/// let kvm = File::options().read(true).write(true).open("/dev/kvm").unwrap();
/// let vm = Vm::new(kvm_create_vm(&kvm), &VmOptions::new())?;
/// let features = vm.features()?;
/// println!("KVM Userfault: {}", features.kvm_userfault());
/// # Ok::<(), memfault::Errno>(())
/// ```
pub struct Vm {
    raw: NonNull<sys::memfault_vm>,
    pub(crate) gate: SetupGate,
    handlers: UnsafeCell<Option<Box<HandlerState>>>,
    panics: PanicSlot,
}

// SAFETY: the C VM object is thread-safe for everything but the setup
// calls, which the gate serializes against each other and against
// dispatch; `handlers` is only written under the gate's setup side.
unsafe impl Send for Vm {}
// SAFETY: as above.
unsafe impl Sync for Vm {}

impl Vm {
    fn new_raw(fd: RawFd, opts: &VmOptions<'_>, own: bool) -> Result<Vm> {
        let o = opts.to_raw(own);
        let mut raw = ptr::null_mut();
        // SAFETY: valid opts and out-pointer.
        check0(unsafe { sys::memfault_vm_new(fd, &o, &mut raw) })?;
        Ok(Vm {
            raw: NonNull::new(raw).ok_or(Errno::EPROTO)?,
            gate: SetupGate::default(),
            handlers: UnsafeCell::new(None),
            panics: Arc::default(),
        })
    }

    /// Wrap a KVM VM fd (from `KVM_CREATE_VM`), which the VM object then owns
    /// and closes when dropped (on failure it is closed at once).
    pub fn new(fd: OwnedFd, opts: &VmOptions<'_>) -> Result<Vm> {
        let vm = Self::new_raw(fd.as_raw_fd(), opts, true)?;
        let _ = fd.into_raw_fd(); // now owned by the C object
        Ok(vm)
    }

    /// Wrap a KVM VM fd that stays owned by the caller.
    ///
    /// # Safety
    /// `fd` must stay open, and refer to the same VM, until the `Vm` is dropped.
    pub unsafe fn from_borrowed_fd(fd: RawFd, opts: &VmOptions<'_>) -> Result<Vm> {
        Self::new_raw(fd, opts, false)
    }

    /// The raw object, for `memfault-sys` calls.
    pub fn as_ptr(&self) -> *mut sys::memfault_vm {
        self.raw.as_ptr()
    }

    /// The VM fd.
    pub fn fd(&self) -> RawFd {
        // SAFETY: live object.
        unsafe { sys::memfault_vm_get_fd(self.raw.as_ptr()) }
    }

    /// What the kernel offers, as probed when the VM object was made.
    pub fn features(&self) -> Result<Features> {
        let mut f = sys::memfault_features::default();
        // SAFETY: live object, valid out-struct of the given size.
        check0(unsafe {
            sys::memfault_vm_get_features(self.raw.as_ptr(), &mut f, std::mem::size_of_val(&f))
        })?;
        Ok(Features {
            flags: FeatureFlags(f.flags),
            memory_attributes: f.memory_attributes,
            guest_memfd_flags: f.guest_memfd_flags,
            arch: Arch::from_raw(f.arch).unwrap_or(Arch::Host),
            userfault_probe_error: f.userfault_probe_error.checked_neg().and_then(Errno::new),
            page_size: f.page_size,
        })
    }

    /// Wrap a vCPU fd (from `KVM_CREATE_VCPU`), which the vCPU object then
    /// owns (on failure it is closed at once).
    pub fn new_vcpu(&self, fd: OwnedFd, opts: &VcpuOptions) -> Result<Vcpu<'_>> {
        let v = Vcpu::new_raw(self, fd.as_raw_fd(), opts, true)?;
        let _ = fd.into_raw_fd();
        Ok(v)
    }

    /// Wrap a vCPU fd that stays owned by the caller.
    ///
    /// # Safety
    /// `fd` must stay open until the vCPU and every [`crate::KickHandle`] of
    /// it are dropped; an adopted `kvm_run` mapping in `opts` must stay
    /// mapped as long.
    pub unsafe fn new_vcpu_borrowed(&self, fd: RawFd, opts: &VcpuOptions) -> Result<Vcpu<'_>> {
        Vcpu::new_raw(self, fd, opts, false)
    }

    /// Register memslot `slot` at `gpa`, backed by `mem` (all of it), and
    /// create its bitmap (`memfault_region_new()`).
    ///
    /// Fails with `EBUSY` while a vCPU of the VM is in [`Vcpu::run_dispatch`].
    pub fn add_region<'a>(
        &'a self,
        slot: u32,
        gpa: u64,
        mem: &'a GuestMemory,
        opts: &RegionOptions<'a>,
    ) -> Result<Region<'a>> {
        // SAFETY: `mem` is mapped for 'a, which the region's lifetime is.
        unsafe { self.add_region_raw(slot, gpa, mem.len() as u64, mem.as_ptr().cast(), opts) }
    }

    /// A region without host memory: a bitmap only
    /// ([`RegionOptions::no_memslot`]), or a guest_memfd memslot without a
    /// mapping ([`RegionOptions::guest_memfd`]).
    pub fn add_region_unmapped<'a>(
        &'a self,
        slot: u32,
        gpa: u64,
        size: u64,
        opts: &RegionOptions<'a>,
    ) -> Result<Region<'a>> {
        // SAFETY: no host memory is given.
        unsafe { self.add_region_raw(slot, gpa, size, ptr::null_mut(), opts) }
    }

    /// [`Vm::add_region`] with host memory the caller manages.
    ///
    /// # Safety
    /// `hva` (if not null) must stay mapped for `size` bytes, readable and
    /// writable, until the region is dropped.
    pub unsafe fn add_region_raw<'a>(
        &'a self,
        slot: u32,
        gpa: u64,
        size: u64,
        hva: *mut c_void,
        opts: &RegionOptions<'a>,
    ) -> Result<Region<'a>> {
        let o = opts.to_raw();
        let mut raw = ptr::null_mut();
        let _setup = self.gate.try_setup()?;
        // SAFETY: live VM, valid opts and out-pointer; hva per the caller.
        check0(unsafe { sys::memfault_region_new(self.raw.as_ptr(), slot, gpa, size, hva, &o, &mut raw) })?;
        // SAFETY: a fresh region of this VM.
        Ok(unsafe { Region::from_raw(self, NonNull::new(raw).ok_or(Errno::EPROTO)?) })
    }

    /// The region holding `gpa` and the page index of `gpa` in it
    /// (`memfault_vm_find_region()`); `Err(ENOENT)` if none.
    pub fn find_region(&self, gpa: u64) -> Result<(RegionInfo, u64)> {
        let _run = self.gate.enter(crate::gate::Entry::Lookup);
        let mut region = ptr::null_mut();
        let mut page = 0u64;
        // SAFETY: live VM and out-pointers; the region cannot be freed while
        // the run side of the gate is held.
        check0(unsafe { sys::memfault_vm_find_region(self.raw.as_ptr(), gpa, &mut region, &mut page) })?;
        let region = NonNull::new(region).ok_or(Errno::EPROTO)?;
        // SAFETY: a live region of this VM (see above).
        let info = unsafe { crate::region::RegionRef::from_ptr(region.as_ptr()) }.info()?;
        Ok((info, page))
    }

    /// Set the VM's fault handlers (`memfault_vm_set_handlers()`), replacing
    /// any set before. Fails with `EBUSY` while a vCPU of the VM is in
    /// [`Vcpu::run_dispatch`].
    pub fn set_handlers(&self, handlers: Handlers) -> Result<()> {
        let _setup = self.gate.try_setup()?;
        let state = Box::new(HandlerState::new(handlers, self.panics.clone()));
        let raw = state.to_raw();
        // SAFETY: `raw.user` points into `state`, which is kept below until
        // the handlers are replaced or the VM is freed.
        check0(unsafe { sys::memfault_vm_set_handlers(self.raw.as_ptr(), &raw) })?;
        // SAFETY: exclusive under the gate's setup side: no dispatch runs.
        unsafe { *self.handlers.get() = Some(state) };
        Ok(())
    }

    /// Clear the handlers: only the library's defaults remain.
    pub fn clear_handlers(&self) -> Result<()> {
        let _setup = self.gate.try_setup()?;
        // SAFETY: live VM; NULL clears.
        check0(unsafe { sys::memfault_vm_set_handlers(self.raw.as_ptr(), ptr::null()) })?;
        // SAFETY: exclusive under the gate's setup side.
        unsafe { *self.handlers.get() = None };
        Ok(())
    }

    /// The payload of the first handler panic not yet taken. A panicking
    /// handler never unwinds into C: its call fails with
    /// [`Errno::HANDLER_FAILED`] and the payload is kept here (pass it to
    /// [`std::panic::resume_unwind`] to re-raise it).
    pub fn take_handler_panic(&self) -> Option<Box<dyn Any + Send>> {
        self.panics.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        // SAFETY: no vCPU or region borrows the VM any more.
        unsafe { sys::memfault_vm_free(self.raw.as_ptr()) };
    }
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm").field("fd", &self.fd()).finish_non_exhaustive()
    }
}
