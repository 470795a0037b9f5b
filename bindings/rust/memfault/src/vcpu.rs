// SPDX-License-Identifier: MIT
//! [`Vcpu`]: runs a vCPU; [`KickHandle`]: interrupts it from anywhere.

use std::cell::Cell;
use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use memfault_sys as sys;

use crate::errno::{check, check0, Errno, Result};
use crate::fault::{Exit, Fault};
use crate::kvm_run::KvmRun;
use crate::vm::Vm;

/// Options for [`Vm::new_vcpu`] (`struct memfault_vcpu_opts`).
#[derive(Clone, Copy, Debug, Default)]
pub struct VcpuOptions {
    no_signal_handler: bool,
    kick_signal: i32,
    run: Option<(NonNull<sys::kvm_run>, u64)>,
}

impl VcpuOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Signal used by kicks (default `SIGRTMIN`). It must not be blocked in
    /// the vCPU thread while it runs.
    pub fn kick_signal(mut self, signo: i32) -> Self {
        self.kick_signal = signo;
        self
    }
    /// Do not install a handler for the kick signal: the VMM has its own.
    pub fn no_signal_handler(mut self) -> Self {
        self.no_signal_handler = true;
        self
    }
    /// Adopt the VMM's own mapping of the vCPU's `kvm_run` (never unmapped
    /// by the library).
    ///
    /// # Safety
    /// `run` must be the vCPU's `kvm_run` mapping, `size` bytes, and stay
    /// mapped until the vCPU and its kick handles are dropped.
    pub unsafe fn run_mapping(mut self, run: NonNull<sys::kvm_run>, size: u64) -> Self {
        self.run = Some((run, size));
        self
    }

    fn to_raw(self, own_fd: bool) -> sys::memfault_vcpu_opts {
        let mut flags = 0u64;
        if own_fd {
            flags |= sys::MEMFAULT_VCPU_OWN_FD as u64;
        }
        if self.no_signal_handler {
            flags |= sys::MEMFAULT_VCPU_NO_SIGNAL_HANDLER as u64;
        }
        sys::memfault_vcpu_opts {
            sz: std::mem::size_of::<sys::memfault_vcpu_opts>(),
            flags,
            run: self.run.map_or(ptr::null_mut(), |(p, _)| p.as_ptr()),
            run_size: self.run.map_or(0, |(_, s)| s),
            kick_signal: self.kick_signal,
            reserved: 0,
        }
    }
}

/// Per-vCPU counters (`struct memfault_vcpu_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuStats {
    /// `KVM_RUN` calls.
    pub runs: u64,
    /// Ordinary exits returned.
    pub exits: u64,
    /// Memory faults seen (resolved or not).
    pub memory_faults: u64,
    /// ... of them KVM Userfault exits.
    pub userfaults: u64,
    /// Pages this vCPU fetched through page-in.
    pub page_ins: u64,
    /// Userfaults resolved by waiting for another vCPU's fetch.
    pub page_waits: u64,
    /// Conversions done.
    pub conversions: u64,
    /// Hardware-poison faults.
    pub hwpoison: u64,
    /// Other faults.
    pub other_faults: u64,
    /// Faults returned to the VMM.
    pub to_vmm: u64,
    /// Re-entries after a resolved fault.
    pub retries: u64,
    /// Times the repeat guard returned `ELOOP`.
    pub repeat_trips: u64,
    /// Interrupted returns.
    pub interrupted: u64,
    /// Nanoseconds spent in handlers.
    pub handler_ns: u64,
    /// userfaultfd faults of this vCPU's thread (see [`crate::Uffd::add_vcpu`]).
    pub uffd_faults: u64,
    /// Nanoseconds those faults waited for the library.
    pub uffd_wait_ns: u64,
}

impl VcpuStats {
    fn from_raw(s: &sys::memfault_vcpu_stats) -> VcpuStats {
        VcpuStats {
            runs: s.runs,
            exits: s.exits,
            memory_faults: s.memory_faults,
            userfaults: s.userfaults,
            page_ins: s.page_ins,
            page_waits: s.page_waits,
            conversions: s.conversions,
            hwpoison: s.hwpoison,
            other_faults: s.other_faults,
            to_vmm: s.to_vmm,
            retries: s.retries,
            repeat_trips: s.repeat_trips,
            interrupted: s.interrupted,
            handler_ns: s.handler_ns,
            uffd_faults: s.uffd_faults,
            uffd_wait_ns: s.uffd_wait_ns,
        }
    }
}

/// Owns the C vCPU object; freed when the [`Vcpu`] and all its
/// [`KickHandle`]s are gone, so a kick never races with the free.
pub(crate) struct VcpuInner(NonNull<sys::memfault_vcpu>);

// SAFETY: only memfault_vcpu_kick() (thread-safe, async-signal-safe) and
// the thread-safe getters are reachable through shared references to it;
// run calls go through &mut Vcpu.
unsafe impl Send for VcpuInner {}
// SAFETY: as above.
unsafe impl Sync for VcpuInner {}

impl Drop for VcpuInner {
    fn drop(&mut self) {
        // SAFETY: the last reference: nobody can use the object afterwards.
        unsafe { sys::memfault_vcpu_free(self.0.as_ptr()) };
    }
}

/// A vCPU object (`struct memfault_vcpu`).
///
/// `Send` (move it to its own thread) but not `Sync`: the C API runs a vCPU
/// from one thread at a time. Use a [`KickHandle`] to interrupt it from other
/// threads.
///
/// ```no_run
/// use memfault::{Exit, Vcpu};
///
/// fn run_loop(vcpu: &mut Vcpu<'_>) -> memfault::Result<()> {
///     loop {
///         match vcpu.run_dispatch()? {
///             Exit::MmioRead(_addr, data) => data.copy_from_slice(&0x5au32.to_le_bytes()[..data.len()]),
///             Exit::MmioWrite(..) => {}
///             Exit::Hlt | Exit::Shutdown | Exit::SystemEvent(_) => return Ok(()),
///             Exit::IoIn(..) | Exit::IoOut(..) | Exit::FailEntry | Exit::InternalError | Exit::Other(_) => {
///                 return Err(memfault::Errno::EPROTO)
///             }
///             Exit::MemoryFault(f) => eprintln!("unresolved fault at {:#x}", f.gpa),
///             Exit::Interrupted | Exit::Retry => {}
///         }
///     }
/// }
/// ```
pub struct Vcpu<'vm> {
    inner: Arc<VcpuInner>,
    vm: &'vm Vm,
    _not_sync: PhantomData<Cell<()>>,
}

impl<'vm> Vcpu<'vm> {
    pub(crate) fn new_raw(vm: &'vm Vm, fd: RawFd, opts: &VcpuOptions, own: bool) -> Result<Vcpu<'vm>> {
        let o = opts.to_raw(own);
        let mut raw = ptr::null_mut();
        // SAFETY: live VM, valid opts and out-pointer.
        check0(unsafe { sys::memfault_vcpu_new(vm.as_ptr(), fd, &o, &mut raw) })?;
        Ok(Vcpu {
            inner: Arc::new(VcpuInner(NonNull::new(raw).ok_or(Errno::EPROTO)?)),
            vm,
            _not_sync: PhantomData,
        })
    }

    /// The raw object, for `memfault-sys` calls.
    pub fn as_ptr(&self) -> *mut sys::memfault_vcpu {
        self.inner.0.as_ptr()
    }

    pub(crate) fn inner(&self) -> &Arc<VcpuInner> {
        &self.inner
    }

    /// The VM this vCPU belongs to.
    pub fn vm(&self) -> &'vm Vm {
        self.vm
    }

    /// The vCPU fd.
    pub fn fd(&self) -> RawFd {
        // SAFETY: live object.
        unsafe { sys::memfault_vcpu_get_fd(self.as_ptr()) }
    }

    fn decode(&mut self, r: i32) -> Result<Exit<'_>> {
        let r = check(r)?;
        let fault = if r as u32 == sys::MEMFAULT_RUN_MEMORY_FAULT { Some(self.fault()) } else { None };
        Exit::decode(r, self.kvm_run_ref(), || fault.unwrap_or(Err(Errno::EPROTO)))
    }

    /// One `KVM_RUN`, classified and decoded (`memfault_vcpu_run()`). The
    /// exit borrows the vCPU: answer an [`Exit::IoIn`] or [`Exit::MmioRead`]
    /// through its slice before the next run.
    pub fn run(&mut self) -> Result<Exit<'_>> {
        // SAFETY: live object, used from this thread only (&mut self).
        let r = unsafe { sys::memfault_vcpu_run(self.as_ptr()) };
        self.decode(r)
    }

    /// Run until an exit the VMM must see, resolving memory faults with the
    /// VM's handlers on the way (`memfault_vcpu_run_dispatch()`).
    ///
    /// A handler's `Err(e)` comes back as `Err(e)`; a handler panic as
    /// `Err(Errno::HANDLER_FAILED)` (see [`Vm::take_handler_panic`]).
    pub fn run_dispatch(&mut self) -> Result<Exit<'_>> {
        let r = {
            let _run = self.vm.gate.enter(crate::gate::Entry::Dispatch);
            // SAFETY: live object, this thread only; regions and handlers
            // stay put while the run side of the gate is held.
            unsafe { sys::memfault_vcpu_run_dispatch(self.as_ptr()) }
        };
        self.decode(r)
    }

    /// The memory fault of the last run that returned one
    /// (`memfault_vcpu_get_fault()`); `Err(ENODATA)` if it did not.
    pub fn fault(&self) -> Result<Fault> {
        let mut f = sys::memfault_fault::default();
        // SAFETY: live object, valid out-struct.
        check0(unsafe { sys::memfault_vcpu_get_fault(self.as_ptr(), &mut f, std::mem::size_of_val(&f)) })?;
        Ok(Fault::from_raw(&f))
    }

    fn kvm_run_ref(&self) -> KvmRun<'_> {
        let mut run = ptr::null_mut();
        // SAFETY: live object; the mapping lives as long as it.
        let r = unsafe { sys::memfault_vcpu_get_run(self.as_ptr(), &mut run) };
        let run = NonNull::new(run).filter(|_| r == 0).expect("memfault_vcpu_get_run failed on a live vCPU");
        // SAFETY: the vCPU's page-aligned kvm_run mapping, valid while
        // borrowed from the vCPU.
        unsafe { KvmRun::from_ptr(run, None) }
    }

    /// The vCPU's `kvm_run` (`memfault_vcpu_get_run()`), to handle the
    /// ordinary exits: read the MMIO or IO access, supply read data.
    pub fn kvm_run(&mut self) -> KvmRun<'_> {
        self.kvm_run_ref()
    }

    /// Make the vCPU return [`Exit::Interrupted`] promptly
    /// (`memfault_vcpu_kick()`); no kick is lost.
    pub fn kick(&self) -> Result<()> {
        kick(&self.inner)
    }

    /// A handle to kick this vCPU from other threads.
    pub fn kick_handle(&self) -> KickHandle<'vm> {
        KickHandle { inner: self.inner.clone(), _vm: PhantomData }
    }

    /// The vCPU's counters (`memfault_vcpu_get_stats()`).
    pub fn stats(&self) -> Result<VcpuStats> {
        stats(self.as_ptr())
    }
}

impl std::fmt::Debug for Vcpu<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vcpu").field("fd", &self.fd()).finish_non_exhaustive()
    }
}

fn kick(inner: &VcpuInner) -> Result<()> {
    // SAFETY: live object; kick is thread-safe.
    check0(unsafe { sys::memfault_vcpu_kick(inner.0.as_ptr()) })
}

fn stats(vcpu: *mut sys::memfault_vcpu) -> Result<VcpuStats> {
    let mut s = sys::memfault_vcpu_stats::default();
    // SAFETY: live object (callers' invariant), valid out-struct;
    // thread-safe while the vCPU runs.
    check0(unsafe { sys::memfault_vcpu_get_stats(vcpu, &mut s, std::mem::size_of_val(&s)) })?;
    Ok(VcpuStats::from_raw(&s))
}

/// Kicks a vCPU from any thread (`Send + Sync`, cloneable).
///
/// The C vCPU object is freed only once the [`Vcpu`] and every handle are
/// dropped, so a kick never races with `memfault_vcpu_free()`.
#[derive(Clone)]
pub struct KickHandle<'vm> {
    inner: Arc<VcpuInner>,
    _vm: PhantomData<&'vm Vm>,
}

impl KickHandle<'_> {
    /// Kick the vCPU (`memfault_vcpu_kick()`).
    pub fn kick(&self) -> Result<()> {
        kick(&self.inner)
    }

    /// The vCPU's counters; callable while it runs.
    pub fn stats(&self) -> Result<VcpuStats> {
        stats(self.inner.0.as_ptr())
    }
}

impl std::fmt::Debug for KickHandle<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KickHandle").finish_non_exhaustive()
    }
}

/// The vCPU a handler runs for: kick it, read its counters.
#[derive(Clone, Copy)]
pub struct VcpuRef<'a> {
    raw: NonNull<sys::memfault_vcpu>,
    _marker: PhantomData<&'a ()>,
}

impl VcpuRef<'_> {
    pub(crate) fn new(raw: NonNull<sys::memfault_vcpu>) -> Self {
        VcpuRef { raw, _marker: PhantomData }
    }

    /// The raw object.
    pub fn as_ptr(&self) -> *mut sys::memfault_vcpu {
        self.raw.as_ptr()
    }

    /// The vCPU fd.
    pub fn fd(&self) -> RawFd {
        // SAFETY: live during the handler call.
        unsafe { sys::memfault_vcpu_get_fd(self.raw.as_ptr()) }
    }

    /// Kick it.
    pub fn kick(&self) -> Result<()> {
        // SAFETY: live during the handler call.
        check0(unsafe { sys::memfault_vcpu_kick(self.raw.as_ptr()) })
    }

    /// Its counters.
    pub fn stats(&self) -> Result<VcpuStats> {
        stats(self.raw.as_ptr())
    }
}

impl std::fmt::Debug for VcpuRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VcpuRef").field("fd", &self.fd()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}
    fn assert_sync<T: Sync>() {}

    #[test]
    fn thread_traits() {
        assert_send::<Vcpu<'static>>();
        assert_send::<KickHandle<'static>>();
        assert_sync::<KickHandle<'static>>();
        assert_send::<Vm>();
        assert_sync::<Vm>();
    }
}
