// SPDX-License-Identifier: MIT
//! [`Uffd`]: the userfaultfd backend (`struct memfault_uffd`).
//!
//! The same bitmap and the same page-in closure serve host accesses (KVM's
//! own through the hva, and the VMM's threads) on kernels without KVM
//! Userfault; see the `uffd` group of `memfault.h`.

use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd};
use std::ptr::{self, NonNull};
use std::sync::{Arc, Mutex};

use memfault_sys as sys;

use crate::errno::{check, check0, Errno, Result};
use crate::memory::GuestMemory;
use crate::region::RegionRef;
use crate::vcpu::{Vcpu, VcpuInner};
use crate::vm::Vm;

/// `MEMFAULT_UFFD_LATENCY_BUCKETS`.
pub const UFFD_LATENCY_BUCKETS: usize = sys::MEMFAULT_UFFD_LATENCY_BUCKETS as usize;

/// Options for [`Vm::new_uffd`] (`struct memfault_uffd_opts`).
#[derive(Clone, Copy, Debug, Default)]
pub struct UffdOptions {
    service_thread: bool,
}

impl UffdOptions {
    /// The defaults: the VMM serves faults with [`Uffd::service`].
    pub fn new() -> Self {
        Self::default()
    }
    /// Serve faults in a library thread (`MEMFAULT_UFFD_SERVICE_THREAD`).
    pub fn service_thread(mut self) -> Self {
        self.service_thread = true;
        self
    }
}

/// How a region is registered (`enum memfault_uffd_mode`).
#[derive(Clone, Copy, Debug)]
pub enum UffdMode<'a> {
    /// Anonymous private memory: pages installed with `UFFDIO_COPY`.
    Missing,
    /// A memfd mapped twice: pages filled through this second mapping (the
    /// alias, which must stay mapped while registered) and mapped with
    /// `UFFDIO_CONTINUE`.
    Minor(&'a GuestMemory),
}

/// Counters of a [`Uffd`] (`struct memfault_uffd_stats`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UffdStats {
    /// The `UFFD_FEATURE_*` bits enabled.
    pub features: u64,
    /// userfaultfd page faults handled.
    pub faults: u64,
    /// Pages fetched for userfaultfd faults.
    pub page_ins: u64,
    /// Pages fetched for KVM Userfault exits and installed through userfaultfd.
    pub kvm_page_ins: u64,
    /// Faults that fetched nothing (present, or fetched by another thread).
    pub waits: u64,
    /// Faults outside every registered region.
    pub unknown: u64,
    /// Page-ins of userfaultfd faults that failed (pages poisoned).
    pub errors: u64,
    /// Host address of the last failed page-in (0 if none).
    pub last_error_addr: u64,
    /// Guest physical address of the last failed page-in (0 if none).
    pub last_error_gpa: u64,
    /// The errno of the last failed page-in.
    pub last_error: Option<Errno>,
    /// Thread id of the thread whose fault failed (0 if unknown).
    pub last_error_tid: u32,
    /// Median fault latency (ns).
    pub latency_p50_ns: u64,
    /// 99th percentile fault latency (ns).
    pub latency_p99_ns: u64,
    /// Longest fault latency (ns).
    pub latency_max_ns: u64,
    /// Latency histogram (see `MEMFAULT_UFFD_LATENCY_BUCKETS`).
    pub latency: [u64; UFFD_LATENCY_BUCKETS],
}

/// A userfaultfd serving the VM's regions with the VM's page-in handler.
///
/// `Send + Sync`: [`Uffd::service`], [`Uffd::register`] and the vCPU calls
/// are thread-safe. Registered regions and aliases are borrowed for `'a`, so
/// they outlive it. Dropping it (`memfault_uffd_free()`) waits until no vCPU
/// of the VM is in [`Vcpu::run_dispatch`] (and keeps new ones out meanwhile).
///
/// ```no_run
/// # fn f(vm: &memfault::Vm, region: &memfault::Region<'_>) -> memfault::Result<()> {
/// use memfault::{UffdMode, UffdOptions};
///
/// let uffd = vm.new_uffd(&UffdOptions::new().service_thread())?;
/// uffd.register(region, UffdMode::Missing)?;
/// // host accesses to missing pages of `region` now call the page-in handler
/// # Ok(()) }
/// ```
pub struct Uffd<'a> {
    raw: NonNull<sys::memfault_uffd>,
    vm: &'a Vm,
    vcpus: Mutex<Vec<Arc<VcpuInner>>>,
    _borrows: PhantomData<&'a RegionRef>,
}

// SAFETY: the C object's calls are thread-safe apart from free (drop).
unsafe impl Send for Uffd<'_> {}
// SAFETY: as above.
unsafe impl Sync for Uffd<'_> {}

impl Vm {
    /// Create a userfaultfd for the VM's regions (`memfault_uffd_new()`).
    pub fn new_uffd(&self, opts: &UffdOptions) -> Result<Uffd<'_>> {
        let o = sys::memfault_uffd_opts {
            sz: std::mem::size_of::<sys::memfault_uffd_opts>(),
            flags: if opts.service_thread { sys::MEMFAULT_UFFD_SERVICE_THREAD as u64 } else { 0 },
            reserved: 0,
        };
        let mut raw = ptr::null_mut();
        // SAFETY: live VM, valid opts and out-pointer.
        check0(unsafe { sys::memfault_uffd_new(self.as_ptr(), &o, &mut raw) })?;
        Ok(Uffd {
            raw: NonNull::new(raw).ok_or(Errno::EPROTO)?,
            vm: self,
            vcpus: Mutex::default(),
            _borrows: PhantomData,
        })
    }
}

impl<'a> Uffd<'a> {
    /// The raw object.
    pub fn as_ptr(&self) -> *mut sys::memfault_uffd {
        self.raw.as_ptr()
    }

    /// Handle the faults queued now, at most `max_events`, without blocking
    /// (`memfault_uffd_service()`); the number handled.
    pub fn service(&self, max_events: u32) -> Result<u32> {
        // SAFETY: live object; thread-safe.
        check(unsafe { sys::memfault_uffd_service(self.raw.as_ptr(), max_events) }).map(|n| n as u32)
    }

    /// Trap the host accesses to `region` (`memfault_uffd_register()`).
    pub fn register(&self, region: &'a RegionRef, mode: UffdMode<'a>) -> Result<()> {
        let (m, alias) = match mode {
            UffdMode::Missing => (sys::MEMFAULT_UFFD_MISSING, ptr::null_mut()),
            UffdMode::Minor(alias) => (sys::MEMFAULT_UFFD_MINOR, alias.as_ptr().cast()),
        };
        // SAFETY: live objects; region and alias outlive the object ('a).
        check0(unsafe { sys::memfault_uffd_register(self.raw.as_ptr(), region.as_ptr(), m, alias) })
    }

    /// Attribute the faults of the thread that runs `vcpu` to it
    /// (`memfault_uffd_add_vcpu()`). The C vCPU object is then kept alive
    /// until it is removed or the `Uffd` is dropped.
    pub fn add_vcpu(&self, vcpu: &Vcpu<'_>) -> Result<()> {
        let mut list = self.vcpus.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: live objects.
        check0(unsafe { sys::memfault_uffd_add_vcpu(self.raw.as_ptr(), vcpu.as_ptr()) })?;
        list.push(vcpu.inner().clone());
        Ok(())
    }

    /// Stop attributing faults to `vcpu` (`memfault_uffd_remove_vcpu()`).
    pub fn remove_vcpu(&self, vcpu: &Vcpu<'_>) -> Result<()> {
        let mut list = self.vcpus.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: live objects.
        check0(unsafe { sys::memfault_uffd_remove_vcpu(self.raw.as_ptr(), vcpu.as_ptr()) })?;
        list.retain(|v| !Arc::ptr_eq(v, vcpu.inner()));
        Ok(())
    }

    /// The counters (`memfault_uffd_get_stats()`).
    pub fn stats(&self) -> Result<UffdStats> {
        let mut s = sys::memfault_uffd_stats::default();
        // SAFETY: live object, valid out-struct.
        check0(unsafe { sys::memfault_uffd_get_stats(self.raw.as_ptr(), &mut s, std::mem::size_of_val(&s)) })?;
        Ok(UffdStats {
            features: s.features,
            faults: s.faults,
            page_ins: s.page_ins,
            kvm_page_ins: s.kvm_page_ins,
            waits: s.waits,
            unknown: s.unknown,
            errors: s.errors,
            last_error_addr: s.last_error_addr,
            last_error_gpa: s.last_error_gpa,
            last_error: s.last_error.checked_neg().and_then(Errno::new),
            last_error_tid: s.last_error_tid,
            latency_p50_ns: s.latency_p50_ns,
            latency_p99_ns: s.latency_p99_ns,
            latency_max_ns: s.latency_max_ns,
            latency: s.latency,
        })
    }
}

impl AsFd for Uffd<'_> {
    /// The userfaultfd (`memfault_uffd_get_fd()`): poll it for `POLLIN`,
    /// then call [`Uffd::service`]; never read or close it.
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: live object; the fd lives as long as it.
        unsafe { BorrowedFd::borrow_raw(sys::memfault_uffd_get_fd(self.raw.as_ptr())) }
    }
}

impl Drop for Uffd<'_> {
    fn drop(&mut self) {
        // No dispatch meanwhile; handlers it calls may still look regions up.
        let _quiesce = self.vm.gate.quiesce_blocking();
        // SAFETY: no other reference exists (we own it), no dispatch runs.
        unsafe { sys::memfault_uffd_free(self.raw.as_ptr()) };
        // the vCPU objects may be freed now (after the list is dropped)
    }
}

impl std::fmt::Debug for Uffd<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uffd").field("fd", &self.as_fd()).finish_non_exhaustive()
    }
}
