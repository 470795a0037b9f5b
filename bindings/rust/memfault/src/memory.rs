// SPDX-License-Identifier: MIT
//! [`GuestMemory`]: host memory to back a region, shared with the guest.

use std::ffi::{c_int, c_long, c_void};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

use crate::errno::{Errno, Result};

extern "C" {
    fn mmap(addr: *mut c_void, len: usize, prot: c_int, flags: c_int, fd: c_int, off: i64) -> *mut c_void;
    fn munmap(addr: *mut c_void, len: usize) -> c_int;
    fn mprotect(addr: *mut c_void, len: usize, prot: c_int) -> c_int;
    fn sysconf(name: c_int) -> c_long;
}

const PROT_NONE: c_int = 0;
const PROT_READ: c_int = 1;
const PROT_WRITE: c_int = 2;
const MAP_SHARED: c_int = 0x01;
const MAP_PRIVATE: c_int = 0x02;
const MAP_ANONYMOUS: c_int = 0x20;
const SC_PAGESIZE: c_int = 30;

/// The host page size (one bit of a region's bitmap per page of this size).
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let r = unsafe { sysconf(SC_PAGESIZE) };
    if r > 0 {
        r as u64
    } else {
        4096
    }
}

/// Page-aligned host memory from `mmap()`, unmapped on drop.
///
/// The guest reads and writes it behind the program's back, so it is never
/// handed out as a Rust reference: copy in and out with [`GuestMemory::read`]
/// and [`GuestMemory::write`] (volatile accesses), or use the raw pointer.
///
/// ```
/// use memfault::GuestMemory;
///
/// let mem = GuestMemory::anonymous(2 * memfault::page_size() as usize)?;
/// mem.write(10, b"hi")?;
/// let mut buf = [0u8; 2];
/// mem.read(10, &mut buf)?;
/// assert_eq!(&buf, b"hi");
/// assert!(mem.write(mem.len() - 1, b"xy").is_err());
/// # Ok::<(), memfault::Errno>(())
/// ```
#[derive(Debug)]
pub struct GuestMemory {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: plain memory; every access goes through raw pointers with
// volatile copies, and the mapping lives until drop.
unsafe impl Send for GuestMemory {}
// SAFETY: as above: no Rust reference to the bytes is ever created.
unsafe impl Sync for GuestMemory {}

impl GuestMemory {
    fn map(len: usize, flags: c_int, fd: c_int, offset: i64) -> Result<GuestMemory> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        // SAFETY: a fresh mapping; no existing memory is touched.
        let p = unsafe { mmap(std::ptr::null_mut(), len, PROT_READ | PROT_WRITE, flags, fd, offset) };
        if p as isize == -1 {
            return Err(Errno::last_os_error());
        }
        Ok(GuestMemory { ptr: NonNull::new(p.cast()).ok_or(Errno::ENOMEM)?, len })
    }

    /// Private anonymous memory of `len` bytes, zeroed.
    pub fn anonymous(len: usize) -> Result<GuestMemory> {
        Self::map(len, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    }

    /// A shared mapping of `len` bytes of `fd` at `offset` (a memfd, or a
    /// guest_memfd created with `GUEST_MEMFD_FLAG_MMAP`).
    pub fn map_shared(fd: BorrowedFd<'_>, len: usize, offset: u64) -> Result<GuestMemory> {
        let off = i64::try_from(offset).map_err(|_| Errno::EINVAL)?;
        Self::map(len, MAP_SHARED, fd.as_raw_fd(), off)
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a mapping is never empty.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The first byte (the region's host virtual address).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    fn range(&self, offset: usize, n: usize) -> Result<*mut u8> {
        match offset.checked_add(n) {
            Some(end) if end <= self.len => Ok(self.ptr.as_ptr().wrapping_add(offset)),
            _ => Err(Errno::ERANGE),
        }
    }

    /// Copy bytes out, starting at `offset`.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        let p = self.range(offset, buf.len())?;
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: in bounds (checked); volatile: the guest may write it.
            *b = unsafe { p.add(i).read_volatile() };
        }
        Ok(())
    }

    /// Copy bytes in, starting at `offset`.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<()> {
        let p = self.range(offset, data.len())?;
        for (i, b) in data.iter().enumerate() {
            // SAFETY: in bounds (checked); volatile: the guest may read it.
            unsafe { p.add(i).write_volatile(*b) };
        }
        Ok(())
    }

    /// Fill `len` bytes at `offset` with `byte`.
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<()> {
        let p = self.range(offset, len)?;
        for i in 0..len {
            // SAFETY: in bounds (checked).
            unsafe { p.add(i).write_volatile(byte) };
        }
        Ok(())
    }

    /// Make the memory inaccessible (`false`) or read-write again (`true`):
    /// a guest access to inaccessible memory makes `KVM_RUN` fail with a bare
    /// `EFAULT`.
    ///
    /// # Safety
    /// While the memory is inaccessible, [`GuestMemory::read`],
    /// [`GuestMemory::write`], [`GuestMemory::fill`] and page-in handlers
    /// writing to it crash the process (SIGSEGV): do not call them.
    pub unsafe fn set_accessible(&self, accessible: bool) -> Result<()> {
        let prot = if accessible { PROT_READ | PROT_WRITE } else { PROT_NONE };
        // SAFETY: our own mapping, whole.
        if unsafe { mprotect(self.ptr.as_ptr().cast(), self.len, prot) } != 0 {
            return Err(Errno::last_os_error());
        }
        Ok(())
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: our own mapping; nothing refers to it any more (regions
        // using it borrow it).
        unsafe { munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
