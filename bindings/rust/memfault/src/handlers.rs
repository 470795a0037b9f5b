// SPDX-License-Identifier: MIT
//! Fault handlers as closures (`struct memfault_handlers`).
//!
//! Each closure runs on the faulting vCPU's thread, possibly on several at
//! once, so it is `Fn + Send + Sync`. It returns `Ok(Verdict::Resolved)` (re-enter
//! the guest), `Ok(Verdict::ToVmm)` (return the fault from
//! [`crate::Vcpu::run_dispatch`]) or `Err(errno)` (fail the run with it). A
//! panic never unwinds into C: it is caught, the call fails with
//! [`Errno::HANDLER_FAILED`], and the payload is kept for
//! [`crate::Vm::take_handler_panic`].

use std::any::Any;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

use memfault_sys as sys;

use crate::errno::{Errno, Result};
use crate::fault::Fault;
use crate::region::RegionRef;
use crate::vcpu::VcpuRef;
use crate::vm::PanicSlot;

/// What a handler tells the run loop (`enum memfault_verdict`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The fault is resolved: re-enter the guest.
    Resolved,
    /// Return the fault to the VMM.
    ToVmm,
}

/// What a handler returns.
pub type HandlerResult = std::result::Result<Verdict, Errno>;

/// A page-in request: fill one missing page, claimed for this call alone.
///
/// After `Ok(Verdict::Resolved)` the library publishes the page; otherwise it
/// aborts the claim (another vCPU may then fetch it). On a region registered
/// with a [`crate::Uffd`], the page is written to a buffer (or the alias) the
/// library then installs; [`PageIn::write`] and [`PageIn::fill`] write
/// wherever the library asks.
pub struct PageIn<'a> {
    vcpu: Option<VcpuRef<'a>>,
    region: &'a RegionRef,
    page: u64,
    hva: Option<NonNull<u8>>,
    page_size: u64,
}

impl<'a> PageIn<'a> {
    /// The faulting vCPU: the one that took a KVM Userfault exit, or whose
    /// thread raised a userfaultfd fault ([`crate::Uffd::add_vcpu`]); `None`
    /// for a fault of another thread.
    pub fn vcpu(&self) -> Option<VcpuRef<'a>> {
        self.vcpu
    }
    /// The region (bitmap operations, info).
    pub fn region(&self) -> &'a RegionRef {
        self.region
    }
    /// The page index in the region.
    pub fn page(&self) -> u64 {
        self.page
    }
    /// The host page size.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }
    /// Host address of the page (`None` for a region without host memory).
    pub fn hva(&self) -> Option<NonNull<u8>> {
        self.hva
    }
    /// Guest physical address of the page.
    pub fn gpa(&self) -> Result<u64> {
        Ok(self.region.info()?.gpa + self.page * self.page_size)
    }

    fn range(&self, offset: usize, n: usize) -> Result<*mut u8> {
        let hva = self.hva.ok_or(Errno::EFAULT)?;
        match offset.checked_add(n) {
            Some(end) if end as u64 <= self.page_size => Ok(hva.as_ptr().wrapping_add(offset)),
            _ => Err(Errno::ERANGE),
        }
    }

    /// Write `data` at `offset` in the page.
    pub fn write(&mut self, offset: usize, data: &[u8]) -> Result<()> {
        let p = self.range(offset, data.len())?;
        for (i, b) in data.iter().enumerate() {
            // SAFETY: inside the claimed page (checked); volatile: guest memory.
            unsafe { p.add(i).write_volatile(*b) };
        }
        Ok(())
    }

    /// Fill the whole page with `byte`.
    pub fn fill(&mut self, byte: u8) -> Result<()> {
        let n = self.page_size as usize;
        let p = self.range(0, n)?;
        for i in 0..n {
            // SAFETY: inside the claimed page.
            unsafe { p.add(i).write_volatile(byte) };
        }
        Ok(())
    }
}

impl std::fmt::Debug for PageIn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageIn")
            .field("page", &self.page)
            .field("page_size", &self.page_size)
            .field("hva", &self.hva)
            .finish_non_exhaustive()
    }
}

/// After the default conversion: discard the other side of a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Discard {
    /// Guest physical address (host-page aligned).
    pub gpa: u64,
    /// Size in bytes.
    pub size: u64,
    /// Converted to private (discard the shared copy) or to shared.
    pub to_private: bool,
}

type PageInFn = dyn Fn(&mut PageIn<'_>) -> HandlerResult + Send + Sync;
type FaultFn = dyn Fn(VcpuRef<'_>, &Fault) -> HandlerResult + Send + Sync;
type DiscardFn = dyn Fn(Discard) -> HandlerResult + Send + Sync;
type LogFn = dyn Fn(i32, &str) + Send + Sync;

/// The handlers of a VM; unset ones keep the library's default.
///
/// ```
/// use memfault::{Handlers, Verdict};
///
/// let handlers = Handlers::new()
///     .page_in(|p| {
///         p.fill(0)?; // e.g. fetch the page from a snapshot instead
///         Ok(Verdict::Resolved)
///     })
///     .hwpoison(|_vcpu, fault| {
///         eprintln!("poisoned page at {:#x}", fault.gpa);
///         Ok(Verdict::ToVmm)
///     })
///     .log(|level, msg| eprintln!("memfault[{level}]: {msg}"))
///     .max_repeats(4);
/// # let _ = handlers;
/// ```
#[derive(Default)]
pub struct Handlers {
    page_in: Option<Box<PageInFn>>,
    convert: Option<Box<FaultFn>>,
    discard: Option<Box<DiscardFn>>,
    hwpoison: Option<Box<FaultFn>>,
    other: Option<Box<FaultFn>>,
    log: Option<Box<LogFn>>,
    max_repeats: u32,
}

impl Handlers {
    /// No handler: every fault the library cannot resolve goes to the VMM.
    pub fn new() -> Self {
        Self::default()
    }
    /// Fill a missing page of a userfault region (exactly once per page and
    /// per time it went missing, whichever vCPUs fault on it).
    pub fn page_in(mut self, f: impl Fn(&mut PageIn<'_>) -> HandlerResult + Send + Sync + 'static) -> Self {
        self.page_in = Some(Box::new(f));
        self
    }
    /// Handle a private/shared conversion request (default: set the memory
    /// attributes, then call `discard`).
    pub fn convert(mut self, f: impl Fn(VcpuRef<'_>, &Fault) -> HandlerResult + Send + Sync + 'static) -> Self {
        self.convert = Some(Box::new(f));
        self
    }
    /// Discard the other side after the default conversion.
    pub fn discard(mut self, f: impl Fn(Discard) -> HandlerResult + Send + Sync + 'static) -> Self {
        self.discard = Some(Box::new(f));
        self
    }
    /// A hardware-poison fault (default: to the VMM).
    pub fn hwpoison(mut self, f: impl Fn(VcpuRef<'_>, &Fault) -> HandlerResult + Send + Sync + 'static) -> Self {
        self.hwpoison = Some(Box::new(f));
        self
    }
    /// Any other memory fault (default: to the VMM).
    pub fn other(mut self, f: impl Fn(VcpuRef<'_>, &Fault) -> HandlerResult + Send + Sync + 'static) -> Self {
        self.other = Some(Box::new(f));
        self
    }
    /// Diagnostics: a level (3 error .. 7 debug) and a message; any thread.
    pub fn log(mut self, f: impl Fn(i32, &str) + Send + Sync + 'static) -> Self {
        self.log = Some(Box::new(f));
        self
    }
    /// How often the same fault may come back right after it was resolved
    /// before the run fails with `ELOOP` (0: the library's default, 16).
    pub fn max_repeats(mut self, n: u32) -> Self {
        self.max_repeats = n;
        self
    }
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handlers")
            .field("page_in", &self.page_in.is_some())
            .field("convert", &self.convert.is_some())
            .field("discard", &self.discard.is_some())
            .field("hwpoison", &self.hwpoison.is_some())
            .field("other", &self.other.is_some())
            .field("log", &self.log.is_some())
            .field("max_repeats", &self.max_repeats)
            .finish()
    }
}

/// The handlers as the C trampolines see them (`user` points here).
pub(crate) struct HandlerState {
    h: Handlers,
    panics: PanicSlot,
}

impl HandlerState {
    pub(crate) fn new(h: Handlers, panics: PanicSlot) -> Self {
        HandlerState { h, panics }
    }

    pub(crate) fn to_raw(&self) -> sys::memfault_handlers {
        sys::memfault_handlers {
            sz: std::mem::size_of::<sys::memfault_handlers>(),
            user: self as *const HandlerState as *mut c_void,
            page_in: self.h.page_in.as_ref().map(|_| page_in_tramp as _),
            convert: self.h.convert.as_ref().map(|_| convert_tramp as _),
            discard: self.h.discard.as_ref().map(|_| discard_tramp as _),
            hwpoison: self.h.hwpoison.as_ref().map(|_| hwpoison_tramp as _),
            other: self.h.other.as_ref().map(|_| other_tramp as _),
            log: self.h.log.as_ref().map(|_| log_tramp as _),
            max_repeats: self.h.max_repeats,
            reserved: 0,
        }
    }

    fn keep_panic(&self, payload: Box<dyn Any + Send>) {
        let mut slot = self.panics.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(payload);
    }

    /// Run a handler; never unwinds.
    fn call(&self, f: impl FnOnce() -> HandlerResult) -> c_int {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(Ok(Verdict::Resolved)) => sys::MEMFAULT_RESOLVED as c_int,
            Ok(Ok(Verdict::ToVmm)) => sys::MEMFAULT_TO_VMM as c_int,
            Ok(Err(e)) => -e.get(),
            Err(payload) => {
                self.keep_panic(payload);
                -Errno::HANDLER_FAILED.get()
            }
        }
    }
}

/// # Safety
/// `user` is the HandlerState the handlers were set with (alive while the
/// VM has them).
unsafe fn state<'a>(user: *mut c_void) -> &'a HandlerState {
    // SAFETY: per the function's contract.
    unsafe { &*(user as *const HandlerState) }
}

unsafe extern "C" fn page_in_tramp(
    user: *mut c_void,
    vcpu: *mut sys::memfault_vcpu,
    region: *mut sys::memfault_region,
    page: u64,
    hva: *mut c_void,
    page_size: u64,
) -> c_int {
    // SAFETY: called by the library with the pointers it documents.
    let st = unsafe { state(user) };
    let (Some(f), false) = (st.h.page_in.as_ref(), region.is_null()) else {
        return -Errno::EINVAL.get();
    };
    st.call(|| {
        let mut p = PageIn {
            vcpu: NonNull::new(vcpu).map(VcpuRef::new),
            // SAFETY: live for the call: the dispatching vCPU holds the
            // gate, and a Uffd borrows the regions it serves.
            region: unsafe { RegionRef::from_ptr(region) },
            page,
            hva: NonNull::new(hva.cast()),
            page_size,
        };
        f(&mut p)
    })
}

unsafe fn fault_call(
    user: *mut c_void,
    vcpu: *mut sys::memfault_vcpu,
    fault: *const sys::memfault_fault,
    pick: fn(&Handlers) -> Option<&FaultFn>,
) -> c_int {
    // SAFETY: called by the library with the pointers it documents.
    let st = unsafe { state(user) };
    let (Some(f), Some(vcpu)) = (pick(&st.h), NonNull::new(vcpu)) else {
        return -Errno::EINVAL.get();
    };
    // SAFETY: a valid fault for the duration of the call (or NULL).
    let Some(fault) = (unsafe { fault.as_ref() }) else {
        return -Errno::EINVAL.get();
    };
    let fault = Fault::from_raw(fault);
    st.call(|| f(VcpuRef::new(vcpu), &fault))
}

unsafe extern "C" fn convert_tramp(
    user: *mut c_void,
    vcpu: *mut sys::memfault_vcpu,
    fault: *const sys::memfault_fault,
) -> c_int {
    // SAFETY: forwarded from the library.
    unsafe { fault_call(user, vcpu, fault, |h| h.convert.as_deref()) }
}

unsafe extern "C" fn hwpoison_tramp(
    user: *mut c_void,
    vcpu: *mut sys::memfault_vcpu,
    fault: *const sys::memfault_fault,
) -> c_int {
    // SAFETY: forwarded from the library.
    unsafe { fault_call(user, vcpu, fault, |h| h.hwpoison.as_deref()) }
}

unsafe extern "C" fn other_tramp(
    user: *mut c_void,
    vcpu: *mut sys::memfault_vcpu,
    fault: *const sys::memfault_fault,
) -> c_int {
    // SAFETY: forwarded from the library.
    unsafe { fault_call(user, vcpu, fault, |h| h.other.as_deref()) }
}

unsafe extern "C" fn discard_tramp(user: *mut c_void, gpa: u64, size: u64, to_private: u32) -> c_int {
    // SAFETY: called by the library with its user pointer.
    let st = unsafe { state(user) };
    let Some(f) = st.h.discard.as_ref() else {
        return -Errno::EINVAL.get();
    };
    st.call(|| f(Discard { gpa, size, to_private: to_private != 0 }))
}

unsafe extern "C" fn log_tramp(user: *mut c_void, level: c_int, message: *const c_char) {
    // SAFETY: called by the library with its user pointer.
    let st = unsafe { state(user) };
    let Some(f) = st.h.log.as_ref() else { return };
    let msg = if message.is_null() {
        Default::default()
    } else {
        // SAFETY: a NUL-terminated string for the duration of the call.
        unsafe { CStr::from_ptr(message) }.to_string_lossy()
    };
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(level, &msg))) {
        st.keep_panic(payload);
    }
}
