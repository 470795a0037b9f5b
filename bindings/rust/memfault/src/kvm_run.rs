// SPDX-License-Identifier: MIT
//! A view of `struct kvm_run` for the ordinary exits the VMM handles itself.
//!
//! The header keeps `struct kvm_run` opaque so that it needs no kernel
//! header; the few fields a VMM reads for MMIO and port IO exits have had the
//! same offsets since they were added to the Linux uapi, and are listed here
//! (the tests compare them with the vendored `<linux/kvm.h>`).

use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use memfault_sys as sys;

/// `KVM_EXIT_*` values of `kvm_run.exit_reason` (Linux uapi).
pub mod exit_reason {
    /// `KVM_EXIT_UNKNOWN`
    pub const UNKNOWN: u32 = 0;
    /// `KVM_EXIT_EXCEPTION`
    pub const EXCEPTION: u32 = 1;
    /// `KVM_EXIT_IO` (x86 port IO)
    pub const IO: u32 = 2;
    /// `KVM_EXIT_HYPERCALL`
    pub const HYPERCALL: u32 = 3;
    /// `KVM_EXIT_DEBUG`
    pub const DEBUG: u32 = 4;
    /// `KVM_EXIT_HLT` (x86)
    pub const HLT: u32 = 5;
    /// `KVM_EXIT_MMIO`
    pub const MMIO: u32 = 6;
    /// `KVM_EXIT_IRQ_WINDOW_OPEN`
    pub const IRQ_WINDOW_OPEN: u32 = 7;
    /// `KVM_EXIT_SHUTDOWN` (x86)
    pub const SHUTDOWN: u32 = 8;
    /// `KVM_EXIT_FAIL_ENTRY`
    pub const FAIL_ENTRY: u32 = 9;
    /// `KVM_EXIT_INTR`
    pub const INTR: u32 = 10;
    /// `KVM_EXIT_INTERNAL_ERROR`
    pub const INTERNAL_ERROR: u32 = 17;
    /// `KVM_EXIT_SYSTEM_EVENT` (arm64 shutdown, reset, ...)
    pub const SYSTEM_EVENT: u32 = 24;
    /// `KVM_EXIT_MEMORY_FAULT` (returned as [`crate::Exit::MemoryFault`], never as [`crate::Exit::Other`])
    pub const MEMORY_FAULT: u32 = 39;
}

/// Offsets in `struct kvm_run` (Linux uapi; the same on x86-64 and arm64).
pub mod offsets {
    /// `immediate_exit` (u8)
    pub const IMMEDIATE_EXIT: usize = 1;
    /// `exit_reason` (u32)
    pub const EXIT_REASON: usize = 8;
    /// `mmio.phys_addr` (u64)
    pub const MMIO_PHYS_ADDR: usize = 32;
    /// `mmio.data` (u8\[8\])
    pub const MMIO_DATA: usize = 40;
    /// `mmio.len` (u32)
    pub const MMIO_LEN: usize = 48;
    /// `mmio.is_write` (u8)
    pub const MMIO_IS_WRITE: usize = 52;
    /// `io.direction` (u8)
    pub const IO_DIRECTION: usize = 32;
    /// `io.size` (u8)
    pub const IO_SIZE: usize = 33;
    /// `io.port` (u16)
    pub const IO_PORT: usize = 34;
    /// `io.count` (u32)
    pub const IO_COUNT: usize = 36;
    /// `io.data_offset` (u64)
    pub const IO_DATA_OFFSET: usize = 40;
    /// `system_event.type` (u32)
    pub const SYSTEM_EVENT_TYPE: usize = 32;
    /// `memory_fault.flags` (u64)
    pub const MEMORY_FAULT_FLAGS: usize = 32;
    /// `memory_fault.gpa` (u64)
    pub const MEMORY_FAULT_GPA: usize = 40;
    /// `memory_fault.size` (u64)
    pub const MEMORY_FAULT_SIZE: usize = 48;
}

/// `sizeof(struct kvm_run)` (2352 on every architecture).
pub const KVM_RUN_SIZE: usize = 2352;

/// The MMIO access of a [`exit_reason::MMIO`] exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mmio {
    /// Guest physical address.
    pub phys_addr: u64,
    /// The data written (for a write); bytes `len..` are unused.
    pub data: [u8; 8],
    /// Access size in bytes (1..=8).
    pub len: u32,
    /// Whether the guest writes.
    pub is_write: bool,
}

impl Mmio {
    /// The bytes written (`data[..len]`).
    pub fn bytes(&self) -> &[u8] {
        &self.data[..(self.len as usize).min(8)]
    }
}

/// Direction of a port IO exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoDirection {
    /// `KVM_EXIT_IO_IN`: the guest reads; the VMM supplies the data.
    In,
    /// `KVM_EXIT_IO_OUT`: the guest writes.
    Out,
}

/// The port access of an [`exit_reason::IO`] exit (x86).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Io {
    /// In or out.
    pub direction: IoDirection,
    /// Bytes per access (1, 2 or 4).
    pub size: u8,
    /// The port.
    pub port: u16,
    /// Number of accesses (string IO).
    pub count: u32,
    /// Where the data is, from the start of the kvm_run mapping.
    pub data_offset: u64,
}

/// A borrowed `struct kvm_run`: a vCPU's mapping ([`crate::Vcpu::kvm_run`])
/// or a [`KvmRunBuffer`].
///
/// Invariant: points to at least [`KVM_RUN_SIZE`] bytes, 8-byte aligned,
/// valid for `'a`. Port IO data lives beyond `struct kvm_run`, at
/// `io.data_offset` in the mapping: for a vCPU's mapping the kernel's offset
/// is trusted (as every VMM does); for a buffer it is bounds-checked.
pub struct KvmRun<'a> {
    ptr: NonNull<u8>,
    len: Option<usize>,
    _marker: PhantomData<&'a mut [u8]>,
}

impl<'a> KvmRun<'a> {
    /// A view of a `kvm_run` mapping.
    ///
    /// # Safety
    /// `ptr` must be 8-byte aligned and valid for reads and writes of
    /// `len.unwrap_or(KVM_RUN_SIZE)` bytes (at least [`KVM_RUN_SIZE`]) for
    /// `'a`; with `len` `None`, also of the port IO data the kernel points to.
    pub unsafe fn from_ptr(ptr: NonNull<sys::kvm_run>, len: Option<usize>) -> KvmRun<'a> {
        KvmRun { ptr: ptr.cast(), len, _marker: PhantomData }
    }

    /// The raw pointer, for `memfault_exit_classify()` and the like.
    pub fn as_ptr(&self) -> *mut sys::kvm_run {
        self.ptr.as_ptr().cast()
    }

    fn read<T: Copy>(&self, off: usize) -> T {
        // SAFETY: every offset used is inside struct kvm_run (invariant),
        // naturally aligned for T.
        unsafe { ptr::read(self.ptr.as_ptr().add(off).cast::<T>()) }
    }

    fn write<T: Copy>(&mut self, off: usize, v: T) {
        // SAFETY: as in read(); &mut self: no other view is used meanwhile.
        unsafe { ptr::write(self.ptr.as_ptr().add(off).cast::<T>(), v) }
    }

    /// `exit_reason` (see [`exit_reason`]).
    pub fn exit_reason(&self) -> u32 {
        self.read(offsets::EXIT_REASON)
    }

    /// Set `exit_reason` (for synthetic exits, e.g. with [`crate::classify_exit`]).
    pub fn set_exit_reason(&mut self, reason: u32) {
        self.write(offsets::EXIT_REASON, reason)
    }

    /// `immediate_exit` (written by [`crate::Vcpu::kick`]; never write it).
    pub fn immediate_exit(&self) -> bool {
        self.read::<u8>(offsets::IMMEDIATE_EXIT) != 0
    }

    /// Fill `memory_fault` (for synthetic exits).
    pub fn set_memory_fault(&mut self, flags: u64, gpa: u64, size: u64) {
        self.write(offsets::MEMORY_FAULT_FLAGS, flags);
        self.write(offsets::MEMORY_FAULT_GPA, gpa);
        self.write(offsets::MEMORY_FAULT_SIZE, size);
    }

    /// The MMIO access, if `exit_reason` is [`exit_reason::MMIO`].
    pub fn mmio(&self) -> Option<Mmio> {
        (self.exit_reason() == exit_reason::MMIO).then(|| Mmio {
            phys_addr: self.read(offsets::MMIO_PHYS_ADDR),
            data: self.read(offsets::MMIO_DATA),
            len: self.read(offsets::MMIO_LEN),
            is_write: self.read::<u8>(offsets::MMIO_IS_WRITE) != 0,
        })
    }

    /// Supply the data of an MMIO read (up to 8 bytes, little-endian order as
    /// the guest sees memory); the next run completes the load with it.
    pub fn set_mmio_data(&mut self, data: &[u8]) {
        let mut buf: [u8; 8] = self.read(offsets::MMIO_DATA);
        let n = data.len().min(8);
        buf[..n].copy_from_slice(&data[..n]);
        self.write(offsets::MMIO_DATA, buf)
    }

    /// The port access, if `exit_reason` is [`exit_reason::IO`].
    pub fn io(&self) -> Option<Io> {
        (self.exit_reason() == exit_reason::IO).then(|| Io {
            direction: if self.read::<u8>(offsets::IO_DIRECTION) == 0 {
                IoDirection::In
            } else {
                IoDirection::Out
            },
            size: self.read(offsets::IO_SIZE),
            port: self.read(offsets::IO_PORT),
            count: self.read(offsets::IO_COUNT),
            data_offset: self.read(offsets::IO_DATA_OFFSET),
        })
    }

    fn io_range(&self) -> Option<(usize, usize)> {
        let io = self.io()?;
        let off = usize::try_from(io.data_offset).ok()?;
        let n = usize::from(io.size).checked_mul(io.count as usize)?;
        let end = off.checked_add(n)?;
        if off < KVM_RUN_SIZE || self.len.is_some_and(|len| end > len) {
            return None;
        }
        Some((off, n))
    }

    /// The data of a port IO exit (`size * count` bytes): what the guest
    /// wrote, or where to put what it reads. `None` if this is not an IO exit
    /// or the data lies outside a bounded view.
    pub fn io_data(&self) -> Option<&[u8]> {
        let (off, n) = self.io_range()?;
        // SAFETY: inside the mapping (checked, or trusted from the kernel).
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(off), n) })
    }

    /// A shorter-lived view of the same `kvm_run`.
    pub fn reborrow(&mut self) -> KvmRun<'_> {
        KvmRun { ptr: self.ptr, len: self.len, _marker: PhantomData }
    }

    /// The ordinary exit in `exit_reason`, decoded (see [`crate::Exit`]),
    /// its data borrowed from the mapping for as long as this view.
    pub(crate) fn into_exit(self) -> crate::Exit<'a> {
        use crate::Exit;
        let reason = self.exit_reason();
        match reason {
            exit_reason::IO => {
                let Some(io) = self.io() else { unreachable!() };
                match self.io_range() {
                    // SAFETY: inside the mapping (checked, or trusted from
                    // the kernel); `self` (borrowed mutably for 'a) is
                    // consumed, so this is the only view for 'a.
                    Some((off, n)) => {
                        let p = unsafe { self.ptr.as_ptr().add(off) };
                        match io.direction {
                            IoDirection::In => Exit::IoIn(io.port, unsafe { std::slice::from_raw_parts_mut(p, n) }),
                            IoDirection::Out => Exit::IoOut(io.port, unsafe { std::slice::from_raw_parts(p, n) }),
                        }
                    }
                    // data outside a bounded buffer: not decodable
                    None => Exit::Other(reason),
                }
            }
            exit_reason::MMIO => {
                let addr = self.read(offsets::MMIO_PHYS_ADDR);
                let len = (self.read::<u32>(offsets::MMIO_LEN) as usize).min(8);
                let write = self.read::<u8>(offsets::MMIO_IS_WRITE) != 0;
                // SAFETY: mmio.data is 8 bytes inside struct kvm_run
                // (invariant); `self` is consumed, as above.
                let data = unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(offsets::MMIO_DATA), len) };
                if write {
                    Exit::MmioWrite(addr, data)
                } else {
                    Exit::MmioRead(addr, data)
                }
            }
            exit_reason::HLT => Exit::Hlt,
            exit_reason::SHUTDOWN => Exit::Shutdown,
            exit_reason::SYSTEM_EVENT => Exit::SystemEvent(self.read(offsets::SYSTEM_EVENT_TYPE)),
            exit_reason::FAIL_ENTRY => Exit::FailEntry,
            exit_reason::INTERNAL_ERROR => Exit::InternalError,
            _ => Exit::Other(reason),
        }
    }

    /// Mutable [`KvmRun::io_data`], to answer an `IN`.
    pub fn io_data_mut(&mut self) -> Option<&mut [u8]> {
        let (off, n) = self.io_range()?;
        // SAFETY: as in io_data(); &mut self gives exclusive access.
        Some(unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(off), n) })
    }
}

/// An owned, zeroed, aligned `kvm_run`-sized buffer (one 4 KiB block), for
/// synthetic exits and [`crate::classify_exit`].
pub struct KvmRunBuffer(Box<AlignedPage>);

#[repr(C, align(64))]
struct AlignedPage([u8; 4096]);

impl KvmRunBuffer {
    /// A zeroed buffer.
    pub fn new() -> KvmRunBuffer {
        KvmRunBuffer(Box::new(AlignedPage([0; 4096])))
    }

    /// A view of it.
    pub fn view(&mut self) -> KvmRun<'_> {
        let len = self.0 .0.len();
        let ptr = NonNull::from(&mut self.0 .0).cast();
        // SAFETY: 64-byte aligned, 4096 bytes, borrowed mutably for '_.
        unsafe { KvmRun::from_ptr(ptr, Some(len)) }
    }
}

impl Default for KvmRunBuffer {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_data_is_bounded_in_buffers() {
        let mut b = KvmRunBuffer::new();
        let mut r = b.view();
        r.set_exit_reason(exit_reason::IO);
        r.write(offsets::IO_DIRECTION, 1u8);
        r.write(offsets::IO_SIZE, 2u8);
        r.write(offsets::IO_PORT, 0x3f8u16);
        r.write(offsets::IO_COUNT, 2u32);
        r.write(offsets::IO_DATA_OFFSET, 4000u64);
        let io = r.io().unwrap();
        assert_eq!((io.direction, io.size, io.port, io.count), (IoDirection::Out, 2, 0x3f8, 2));
        assert_eq!(r.io_data().unwrap().len(), 4);
        r.io_data_mut().unwrap().copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(r.io_data(), Some(&[1u8, 2, 3, 4][..]));
        r.write(offsets::IO_DATA_OFFSET, 4094u64);
        assert_eq!(r.io_data(), None);
        r.write(offsets::IO_DATA_OFFSET, 8u64); // inside struct kvm_run
        assert_eq!(r.io_data(), None);
        assert!(r.mmio().is_none());
        r.set_exit_reason(exit_reason::MMIO);
        r.set_mmio_data(&[9, 8]);
        assert_eq!(r.mmio().unwrap().data[..2], [9, 8]);
    }

    /// Ordinary exits come back decoded, with slices into the kvm_run.
    #[test]
    fn exits_are_decoded() {
        use crate::{classify_exit, Exit};
        let mut b = KvmRunBuffer::new();
        let mut r = b.view();
        r.set_exit_reason(exit_reason::IO);
        r.write(offsets::IO_DIRECTION, 1u8);
        r.write(offsets::IO_SIZE, 1u8);
        r.write(offsets::IO_PORT, 0x3f8u16);
        r.write(offsets::IO_COUNT, 3u32);
        r.write(offsets::IO_DATA_OFFSET, 4000u64);
        r.io_data_mut().unwrap().copy_from_slice(b"abc");
        assert_eq!(classify_exit(&mut r, 0, 0), Ok(Exit::IoOut(0x3f8, &b"abc"[..])));
        r.write(offsets::IO_DIRECTION, 0u8);
        match classify_exit(&mut r, 0, 0) {
            Ok(Exit::IoIn(0x3f8, data)) => data.copy_from_slice(b"xyz"),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.io_data(), Some(&b"xyz"[..]));
        r.write(offsets::IO_DATA_OFFSET, 4095u64); // beyond the buffer
        assert_eq!(classify_exit(&mut r, 0, 0), Ok(Exit::Other(exit_reason::IO)));

        r.set_exit_reason(exit_reason::MMIO);
        r.write(offsets::MMIO_PHYS_ADDR, 0x1000_0000u64);
        r.write(offsets::MMIO_LEN, 4u32);
        r.write(offsets::MMIO_IS_WRITE, 0u8);
        match classify_exit(&mut r, 0, 0) {
            Ok(Exit::MmioRead(0x1000_0000, data)) => data.copy_from_slice(&[1, 2, 3, 4]),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.mmio().unwrap().bytes(), [1, 2, 3, 4]);
        r.write(offsets::MMIO_IS_WRITE, 1u8);
        assert_eq!(classify_exit(&mut r, 0, 0), Ok(Exit::MmioWrite(0x1000_0000, &[1u8, 2, 3, 4][..])));
        r.write(offsets::MMIO_LEN, 200u32); // never more than mmio.data
        assert!(matches!(classify_exit(&mut r, 0, 0), Ok(Exit::MmioWrite(_, d)) if d.len() == 8));

        for (reason, exit) in [
            (exit_reason::HLT, Exit::Hlt),
            (exit_reason::SHUTDOWN, Exit::Shutdown),
            (exit_reason::FAIL_ENTRY, Exit::FailEntry),
            (exit_reason::INTERNAL_ERROR, Exit::InternalError),
            (exit_reason::DEBUG, Exit::Other(exit_reason::DEBUG)),
        ] {
            r.set_exit_reason(reason);
            let e = classify_exit(&mut r, 0, 0).unwrap();
            assert_eq!(e.reason(), Some(reason));
            assert_eq!(e, exit);
        }
        r.set_exit_reason(exit_reason::SYSTEM_EVENT);
        r.write(offsets::SYSTEM_EVENT_TYPE, 2u32);
        assert_eq!(classify_exit(&mut r, 0, 0), Ok(Exit::SystemEvent(2)));
    }
}
