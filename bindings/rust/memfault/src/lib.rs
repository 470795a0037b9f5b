// SPDX-License-Identifier: MIT
//! Safe Rust API for libmemfault: run KVM vCPUs and classify and resolve
//! memory-fault exits the same way on x86-64 and arm64.
//!
//! - [`Vm`] wraps a KVM VM fd; [`Vcpu`] a vCPU fd and its `kvm_run`;
//!   [`Region`] a memslot with a userfault bitmap and exactly-once page-in;
//!   [`Uffd`] serves host accesses to the same regions with userfaultfd.
//! - Every fallible call returns [`Result<_, Errno>`](Result).
//! - [`Vcpu::run`] and [`Vcpu::run_dispatch`] return a decoded [`Exit`], as
//!   kvm-ioctls' `VcpuExit` decodes `kvm_run`: `IoIn(port, &mut [u8])`,
//!   `IoOut(port, &[u8])`, `MmioRead(addr, &mut [u8])`, `MmioWrite(addr,
//!   &[u8])`, `Hlt`, `Shutdown`, `SystemEvent(type)`, ..., `Other(exit_reason)`,
//!   and `MemoryFault(Fault)`, `Interrupted`, `Retry`.
//! - [`Handlers`] are closures; a panic in one never crosses into C.
//! - Threads: `Vm`, `Region`, `Uffd` and [`KickHandle`] are `Send + Sync`; `Vcpu` is
//!   `Send` but not `Sync`, as the C API allows.
//!
//! The VMM still creates the VM, vCPUs and guest_memfds with KVM ioctls
//! itself and hands the fds over.
//!
//! # A VMM loop with a page-in closure
//!
//! ```no_run
//! use std::os::fd::OwnedFd;
//! use memfault::{Exit, GuestMemory, Handlers, RegionOptions, Verdict, Vm, VmOptions, VcpuOptions};
//!
//! # fn kvm_create_vm() -> OwnedFd { unimplemented!() }
//! # fn kvm_create_vcpu(vm: &Vm, id: u64) -> OwnedFd { unimplemented!() }
//! fn main() -> memfault::Result<()> {
//!     let vm = Vm::new(kvm_create_vm(), &VmOptions::new())?;
//!     vm.set_handlers(Handlers::new().page_in(|p| {
//!         p.fill(0xc3)?; // fetch the page from wherever it lives
//!         Ok(Verdict::Resolved)
//!     }))?;
//!     let ram = GuestMemory::anonymous(64 << 10)?;
//!     let _region = vm.add_region(1, 0x2000_0000, &ram, &RegionOptions::new().userfault().missing())?;
//!     let mut vcpu = vm.new_vcpu(kvm_create_vcpu(&vm, 0), &VcpuOptions::new())?;
//!     loop {
//!         match vcpu.run_dispatch()? {
//!             Exit::MmioRead(_addr, data) => data.fill(0x5a),
//!             Exit::MmioWrite(addr, data) => println!("{addr:#x} <- {data:?}"),
//!             Exit::IoOut(port, data) => println!("port {port:#x} <- {data:?}"),
//!             Exit::IoIn(_port, data) => data.fill(0xff),
//!             Exit::Hlt | Exit::Shutdown | Exit::SystemEvent(_) => break,
//!             Exit::FailEntry | Exit::InternalError | Exit::Other(_) => break,
//!             Exit::MemoryFault(f) => panic!("unresolved fault at {:#x}: {:?}", f.gpa, f.error),
//!             Exit::Interrupted | Exit::Retry => continue,
//!         }
//!     }
//!     Ok(())
//! }
//! ```
//!
//! A vCPU is not `Sync`:
//!
//! ```compile_fail
//! fn assert_sync<T: Sync>() {}
//! assert_sync::<memfault::Vcpu<'static>>();
//! ```
//!
//! and cannot outlive its VM:
//!
//! ```compile_fail,E0597
//! # use std::os::fd::OwnedFd;
//! # fn fd() -> OwnedFd { unimplemented!() }
//! let vcpu = {
//!     let vm = memfault::Vm::new(fd(), &memfault::VmOptions::new()).unwrap();
//!     vm.new_vcpu(fd(), &memfault::VcpuOptions::new()).unwrap()
//! };
//! ```

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub use memfault_sys as sys;

mod errno;
mod fault;
mod gate;
mod handlers;
mod kvm_run;
mod memory;
mod region;
mod uffd;
mod vcpu;
mod vm;

pub use errno::{Errno, Result};
pub use fault::{classify_exit, prepare_exit, Exit, Fault, FaultFlags, Origin};
pub use handlers::{Discard, HandlerResult, Handlers, PageIn, Verdict};
pub use kvm_run::{exit_reason, offsets as kvm_run_offsets, Io, IoDirection, KvmRun, KvmRunBuffer, Mmio, KVM_RUN_SIZE};
pub use memory::{page_size, GuestMemory};
pub use region::{Claim, Fetch, Region, RegionInfo, RegionOptions, RegionRef};
pub use uffd::{Uffd, UffdMode, UffdOptions, UffdStats, UFFD_LATENCY_BUCKETS};
pub use vcpu::{KickHandle, Vcpu, VcpuOptions, VcpuRef, VcpuStats};
pub use vm::{Arch, FeatureFlags, Features, Vm, VmOptions};

/// The loaded library's version, `(major, minor)`
/// (`memfault_version_major()`, `memfault_version_minor()`).
///
/// ```
/// let (major, minor) = memfault::version();
/// println!("libmemfault {major}.{minor}");
/// ```
pub fn version() -> (u32, u32) {
    // SAFETY: no arguments; always succeed.
    unsafe { (sys::memfault_version_major() as u32, sys::memfault_version_minor() as u32) }
}
