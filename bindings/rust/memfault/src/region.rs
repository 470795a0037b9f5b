// SPDX-License-Identifier: MIT
//! [`Region`]: a memslot and its userfault bitmap with exactly-once page-in.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::ops::Deref;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

use memfault_sys as sys;

use crate::errno::{check, check0, Errno, Result};
use crate::vm::Vm;

/// Options for [`Vm::add_region`] (`struct memfault_region_opts`).
///
/// ```
/// use memfault::RegionOptions;
///
/// // a KVM Userfault memslot whose pages all start missing
/// let opts = RegionOptions::new().userfault().missing();
/// # let _ = opts;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct RegionOptions<'a> {
    flags: u64,
    guest_memfd: Option<(BorrowedFd<'a>, u64)>,
    kvm_flags: u32,
}

impl<'a> RegionOptions<'a> {
    /// The defaults: a plain memslot, every page present.
    pub fn new() -> Self {
        Self::default()
    }
    /// Register the memslot with KVM Userfault (`MEMFAULT_REGION_USERFAULT`;
    /// needs [`crate::Features::kvm_userfault`]).
    pub fn userfault(mut self) -> Self {
        self.flags |= sys::MEMFAULT_REGION_USERFAULT as u64;
        self
    }
    /// Every page starts missing (`MEMFAULT_REGION_MISSING`).
    pub fn missing(mut self) -> Self {
        self.flags |= sys::MEMFAULT_REGION_MISSING as u64;
        self
    }
    /// Keep the bitmap only, create no memslot (`MEMFAULT_REGION_NO_MEMSLOT`).
    pub fn no_memslot(mut self) -> Self {
        self.flags |= sys::MEMFAULT_REGION_NO_MEMSLOT as u64;
        self
    }
    /// A guest_memfd-backed memslot (`MEMFAULT_REGION_GUEST_MEMFD`); the
    /// fd must stay open while the region exists (the library re-registers
    /// the memslot with it).
    pub fn guest_memfd(mut self, fd: BorrowedFd<'a>, offset: u64) -> Self {
        self.flags |= sys::MEMFAULT_REGION_GUEST_MEMFD as u64;
        self.guest_memfd = Some((fd, offset));
        self
    }
    /// Further `KVM_MEM_*` flags (`KVM_MEM_LOG_DIRTY_PAGES`, `KVM_MEM_READONLY`).
    pub fn kvm_flags(mut self, flags: u32) -> Self {
        self.kvm_flags = flags;
        self
    }

    pub(crate) fn to_raw(self) -> sys::memfault_region_opts {
        sys::memfault_region_opts {
            sz: std::mem::size_of::<sys::memfault_region_opts>(),
            flags: self.flags,
            guest_memfd_offset: self.guest_memfd.map_or(0, |(_, o)| o),
            guest_memfd: self.guest_memfd.map_or(-1, |(fd, _)| fd.as_raw_fd()),
            kvm_flags: self.kvm_flags,
        }
    }
}

/// Facts about a region (`struct memfault_region_info`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionInfo {
    /// Guest physical address of the first byte.
    pub gpa: u64,
    /// Size in bytes.
    pub size: u64,
    /// Host virtual address of the first byte (0 if none).
    pub hva: u64,
    /// Number of pages (bits of the bitmap).
    pub npages: u64,
    /// Host page size: one bit per page of this size.
    pub page_size: u64,
    /// Address of the bitmap KVM reads.
    pub bitmap: u64,
    /// The region's `MEMFAULT_REGION_*` flags.
    pub flags: u64,
    /// KVM memslot id.
    pub slot: u32,
}

/// What [`RegionRef::claim`] decided for a page.
#[derive(Debug)]
pub enum Claim<'r> {
    /// The page is present: nothing to do.
    Present,
    /// The caller must fetch the page, then [`Fetch::publish`] it (dropping
    /// the [`Fetch`] aborts the claim and hands the page to a waiter).
    Fetch(Fetch<'r>),
    /// With `nowait`: another thread is fetching it.
    Busy,
}

/// The duty to fetch one claimed page; aborts the claim when dropped.
#[derive(Debug)]
#[must_use = "dropping a Fetch aborts the claim"]
pub struct Fetch<'r> {
    region: &'r RegionRef,
    page: u64,
}

impl Fetch<'_> {
    /// The page index.
    pub fn page(&self) -> u64 {
        self.page
    }

    /// The contents are in place: clear the bit, wake the waiters.
    pub fn publish(self) -> Result<()> {
        let r = self.region.publish(self.page, 1);
        std::mem::forget(self);
        r
    }

    /// The fetch failed: leave the page missing, wake one waiter to retry.
    pub fn abort(self) -> Result<()> {
        let r = self.region.abort(self.page);
        std::mem::forget(self);
        r
    }
}

impl Drop for Fetch<'_> {
    fn drop(&mut self) {
        let _ = self.region.abort(self.page);
    }
}

/// The bitmap operations of a region, all thread-safe (`Sync`): a borrowed
/// `struct memfault_region`. [`Region`] derefs to it; page-in handlers get
/// one.
///
/// Page indices count host pages from the region's first byte.
#[repr(transparent)]
pub struct RegionRef {
    _opaque: UnsafeCell<sys::memfault_region>,
}

// SAFETY: every operation reachable through &RegionRef is documented as
// thread-safe (lock-free bitmap operations, get_info).
unsafe impl Sync for RegionRef {}

impl RegionRef {
    /// # Safety
    /// `p` must be a live region for `'a`.
    pub(crate) unsafe fn from_ptr<'a>(p: *mut sys::memfault_region) -> &'a RegionRef {
        // SAFETY: RegionRef is a transparent zero-sized view of the C object.
        unsafe { &*(p as *const RegionRef) }
    }

    /// The raw object, for `memfault-sys` calls.
    pub fn as_ptr(&self) -> *mut sys::memfault_region {
        self._opaque.get()
    }

    /// Facts about the region (`memfault_region_get_info()`).
    pub fn info(&self) -> Result<RegionInfo> {
        let mut i = sys::memfault_region_info::default();
        // SAFETY: live region, valid out-struct.
        check0(unsafe { sys::memfault_region_get_info(self.as_ptr(), &mut i, std::mem::size_of_val(&i)) })?;
        Ok(RegionInfo {
            gpa: i.gpa,
            size: i.size,
            hva: i.hva,
            npages: i.npages,
            page_size: i.page_size,
            bitmap: i.bitmap,
            flags: i.flags,
            slot: i.slot,
        })
    }

    /// Mark pages `first..first + count` missing (`memfault_region_mark_missing()`).
    pub fn mark_missing(&self, first: u64, count: u64) -> Result<()> {
        // SAFETY: live region.
        check0(unsafe { sys::memfault_region_mark_missing(self.as_ptr(), first, count) })
    }

    /// Pages `first..first + count` are in place: clear their bits and wake
    /// the waiters (`memfault_region_publish()`, a store-release).
    pub fn publish(&self, first: u64, count: u64) -> Result<()> {
        // SAFETY: live region.
        check0(unsafe { sys::memfault_region_publish(self.as_ptr(), first, count) })
    }

    /// Whether `page` is missing (`memfault_region_is_missing()`, acquire).
    pub fn is_missing(&self, page: u64) -> Result<bool> {
        // SAFETY: live region.
        check(unsafe { sys::memfault_region_is_missing(self.as_ptr(), page) }).map(|r| r != 0)
    }

    fn find(&self, from: u64, present: bool) -> Result<Option<u64>> {
        let mut page = 0u64;
        // SAFETY: live region, valid out-pointer.
        let r = unsafe {
            if present {
                sys::memfault_region_find_present(self.as_ptr(), from, &mut page)
            } else {
                sys::memfault_region_find_missing(self.as_ptr(), from, &mut page)
            }
        };
        match check0(r) {
            Ok(()) => Ok(Some(page)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The first missing page at or after `from`, if any (`memfault_region_find_missing()`).
    pub fn find_missing(&self, from: u64) -> Result<Option<u64>> {
        self.find(from, false)
    }

    /// The first present page at or after `from`, if any (`memfault_region_find_present()`).
    pub fn find_present(&self, from: u64) -> Result<Option<u64>> {
        self.find(from, true)
    }

    /// How many pages are missing (`memfault_region_count_missing()`).
    pub fn count_missing(&self) -> Result<u64> {
        let mut n = 0u64;
        // SAFETY: live region, valid out-pointer.
        check0(unsafe { sys::memfault_region_count_missing(self.as_ptr(), &mut n) })?;
        Ok(n)
    }

    /// Decide who fetches `page` (`memfault_region_claim()`): exactly one
    /// caller gets [`Claim::Fetch`]; the others wait (unless `nowait`) until
    /// it is published ([`Claim::Present`]) or aborted (one of them gets the
    /// fetch in turn).
    ///
    /// ```no_run
    /// # fn f(region: &memfault::RegionRef) -> memfault::Result<()> {
    /// use memfault::Claim;
    ///
    /// if let Claim::Fetch(fetch) = region.claim(3, false)? {
    ///     // ... write page 3's contents ...
    ///     fetch.publish()?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn claim(&self, page: u64, nowait: bool) -> Result<Claim<'_>> {
        let flags = if nowait { sys::MEMFAULT_CLAIM_NOWAIT } else { 0 };
        // SAFETY: live region.
        let r = check(unsafe { sys::memfault_region_claim(self.as_ptr(), page, flags) })?;
        match r as u32 {
            sys::MEMFAULT_CLAIM_PRESENT => Ok(Claim::Present),
            sys::MEMFAULT_CLAIM_FETCH => Ok(Claim::Fetch(Fetch { region: self, page })),
            sys::MEMFAULT_CLAIM_BUSY => Ok(Claim::Busy),
            _ => Err(Errno::EPROTO),
        }
    }

    /// Release the claim on `page` without publishing it
    /// (`memfault_region_abort()`); `Err(EPERM)` if it was not claimed.
    /// [`Fetch::abort`] is the usual way.
    pub fn abort(&self, page: u64) -> Result<()> {
        // SAFETY: live region.
        check0(unsafe { sys::memfault_region_abort(self.as_ptr(), page) })
    }
}

impl std::fmt::Debug for RegionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionRef").field("info", &self.info()).finish()
    }
}

/// A region (`struct memfault_region`): the memslot is deleted and the
/// bitmap freed on drop.
///
/// `Send + Sync`; dereferences to [`RegionRef`] for the bitmap operations.
/// Dropping it is a setup call: it waits until no vCPU of the VM is in
/// [`crate::Vcpu::run_dispatch`] (kick them first).
///
/// ```no_run
/// # fn f(vm: &memfault::Vm) -> memfault::Result<()> {
/// use memfault::{GuestMemory, RegionOptions};
///
/// let ram = GuestMemory::anonymous(64 << 10)?;
/// let region = vm.add_region(1, 0x2000_0000, &ram, &RegionOptions::new().userfault().missing())?;
/// assert_eq!(region.count_missing()?, region.info()?.npages);
/// region.publish(0, 1)?; // page 0 is in place
/// # Ok(()) }
/// ```
pub struct Region<'a> {
    raw: NonNull<sys::memfault_region>,
    vm: &'a Vm,
    _borrows: PhantomData<&'a ()>,
}

// SAFETY: the bitmap operations are thread-safe; free() is serialized by
// the VM's gate.
unsafe impl Send for Region<'_> {}
// SAFETY: as above.
unsafe impl Sync for Region<'_> {}

impl<'a> Region<'a> {
    /// # Safety
    /// `raw` must be a fresh region of `vm`.
    pub(crate) unsafe fn from_raw(vm: &'a Vm, raw: NonNull<sys::memfault_region>) -> Region<'a> {
        Region { raw, vm, _borrows: PhantomData }
    }
}

impl Deref for Region<'_> {
    type Target = RegionRef;
    fn deref(&self) -> &RegionRef {
        // SAFETY: live while self is.
        unsafe { RegionRef::from_ptr(self.raw.as_ptr()) }
    }
}

impl Drop for Region<'_> {
    fn drop(&mut self) {
        let _setup = self.vm.gate.setup_blocking();
        // SAFETY: nobody else refers to the region: borrows of it have
        // ended, and no dispatch runs while the gate is held.
        unsafe { sys::memfault_region_free(self.raw.as_ptr()) };
    }
}

impl std::fmt::Debug for Region<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}
