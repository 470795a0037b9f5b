// SPDX-License-Identifier: MIT
//! Run rust-vmm [`kvm_ioctls`] vCPUs with libmemfault.
//!
//! A rust-vmm VMM holds its VM as a [`kvm_ioctls::VmFd`] and its vCPUs as
//! [`kvm_ioctls::VcpuFd`]s, each with the `kvm_run` mapping kvm-ioctls made.
//! [`wrap_vm`] and [`wrap_vcpu`] hand those to libmemfault *borrowed*: the
//! fds stay kvm-ioctls', libmemfault adopts the existing mapping (no second
//! mapping, nothing closed or unmapped by the library), and the borrows keep
//! the kvm-ioctls objects alive and unused while libmemfault runs them.
//!
//! Then [`memfault::Vcpu::run`] and [`memfault::Vcpu::run_dispatch`] replace
//! `VcpuFd::run()`: the same decoded exits (`IoOut(port, &[u8])`,
//! `MmioRead(addr, &mut [u8])`, `Hlt`, ...), memory faults classified the
//! same way on x86-64 and arm64 (also those kvm-ioctls reports as
//! `Unsupported(39)` or as a plain `EFAULT`, and never a stale one), and the
//! VM's handlers resolving them.

use std::marker::PhantomData;
use std::ops::Deref;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

use kvm_ioctls::{VcpuFd, VmFd};
use memfault::{sys, Result, Vcpu, VcpuOptions, Vm, VmOptions};

/// A [`memfault::Vm`] over a borrowed [`VmFd`]; derefs to the `Vm`.
pub struct KvmVm<'fd> {
    vm: Vm,
    run_size: usize,
    _fd: PhantomData<&'fd VmFd>,
}

impl Deref for KvmVm<'_> {
    type Target = Vm;
    fn deref(&self) -> &Vm {
        &self.vm
    }
}

impl KvmVm<'_> {
    /// The size of each vCPU's `kvm_run` mapping (`KVM_GET_VCPU_MMAP_SIZE`,
    /// as kvm-ioctls read it).
    pub fn run_size(&self) -> usize {
        self.run_size
    }
}

/// Wrap a kvm-ioctls VM (`memfault_vm_new()` on its fd, borrowed: the
/// `VmFd` still owns and closes it).
pub fn wrap_vm<'fd>(vm_fd: &'fd VmFd, opts: &VmOptions<'_>) -> Result<KvmVm<'fd>> {
    // SAFETY: the fd stays open and the same VM for 'fd, which the
    // returned KvmVm (and so the Vm) cannot outlive.
    let vm = unsafe { Vm::from_borrowed_fd(vm_fd.as_raw_fd(), opts)? };
    Ok(KvmVm { vm, run_size: vm_fd.run_size(), _fd: PhantomData })
}

/// Wrap a kvm-ioctls vCPU of `vm`: its fd (borrowed) and its `kvm_run`
/// mapping (adopted: `VcpuFd` still unmaps it).
///
/// The `VcpuFd` is borrowed mutably for as long as the VM is borrowed, so
/// that neither it nor its mapping can go away while the returned vCPU, or
/// a [`memfault::KickHandle`] of it (which lives as long as the VM borrow),
/// still writes there; and so that `VcpuFd::run()` is not called meanwhile.
pub fn wrap_vcpu<'vm>(vm: &'vm KvmVm<'_>, vcpu_fd: &'vm mut VcpuFd, opts: &VcpuOptions) -> Result<Vcpu<'vm>> {
    let fd = vcpu_fd.as_raw_fd();
    let run = NonNull::from(vcpu_fd.get_kvm_run()).cast::<sys::kvm_run>();
    // SAFETY: `run` is this vCPU's kvm_run mapping of run_size bytes
    // (kvm-ioctls mapped it at VcpuFd creation, with the size it read from
    // KVM); it and the fd stay as they are while vcpu_fd is borrowed, which
    // is for 'vm, as long as the vCPU and its kick handles can live.
    let opts = unsafe { opts.run_mapping(run, vm.run_size as u64) };
    // SAFETY: as above for the fd.
    unsafe { vm.vm.new_vcpu_borrowed(fd, &opts) }
}
