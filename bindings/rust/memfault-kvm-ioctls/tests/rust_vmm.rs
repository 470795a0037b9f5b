// SPDX-License-Identifier: MIT
//! A rust-vmm style VMM: kvm-ioctls creates the VM and the vCPU, libmemfault
//! runs and classifies them. On the project's KVM simulator (preloaded by
//! kvmsim-runner.sh; KVMSIM_ARCH/KVMSIM_LEVEL pick the model), never on
//! /dev/kvm: these tests are #[ignore]d and run with --include-ignored.

use std::ffi::{c_char, c_int, CString};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use kvm_ioctls::{Kvm, VcpuExit};
use memfault::{Arch, Exit, GuestMemory, Handlers, RegionOptions, VcpuOptions, Verdict, VmOptions};
use memfault_kvm_ioctls::{wrap_vcpu, wrap_vm};

type ScriptFn = unsafe extern "C" fn(c_int, *const c_char) -> c_int;

/// kvmsim_vcpu_set_script_text() of the preloaded simulator.
fn script(vcpu_fd: c_int, text: &str) {
    extern "C" {
        fn dlsym(handle: *mut std::ffi::c_void, name: *const c_char) -> *mut std::ffi::c_void;
    }
    // SAFETY: RTLD_DEFAULT (null) lookup of a symbol by name.
    let f = unsafe { dlsym(std::ptr::null_mut(), c"kvmsim_vcpu_set_script_text".as_ptr()) };
    assert!(!f.is_null(), "the KVM simulator is not preloaded (run through kvmsim-runner.sh)");
    // SAFETY: kvmsim.h's prototype.
    let f: ScriptFn = unsafe { std::mem::transmute(f) };
    let text = CString::new(text).unwrap();
    // SAFETY: a vCPU fd of the simulator, a NUL-terminated script.
    assert_eq!(unsafe { f(vcpu_fd, text.as_ptr()) }, 0);
}

fn x86() -> bool {
    std::env::var("KVMSIM_ARCH").map_or(cfg!(target_arch = "x86_64"), |a| a.starts_with("x86"))
}

/// The simulator's model may not be the host's architecture: tell the library.
fn vm_options() -> VmOptions<'static> {
    VmOptions::new().arch(if x86() { Arch::X86_64 } else { Arch::Arm64 })
}

/// The same guest script seen by kvm-ioctls' own VcpuFd::run() and by
/// libmemfault on a kvm-ioctls vCPU: the same decoded exits.
#[test]
#[ignore = "needs the KVM simulator preloaded: bindings/rust/run-kvm-ioctls.sh"]
fn kvm_ioctls_vcpu_runs_with_the_same_exits() {
    let text = if x86() {
        "out:0xe0:1:0x42; mmio_write:0x10000000:4:0x1234; in:0xe1:1; out:0xe2:1:acc; hlt"
    } else {
        "mmio_write:0x10000000:4:0x1234; mmio_read:0x10000004:4; mmio_write:0x10000008:4:acc"
    };
    let kvm = Kvm::new().expect("open /dev/kvm");
    let vm_fd = kvm.create_vm().expect("KVM_CREATE_VM");

    // kvm-ioctls alone
    let mut seen_by_kvm_ioctls = Vec::new();
    let mut vcpu_fd = vm_fd.create_vcpu(0).expect("KVM_CREATE_VCPU");
    script(std::os::fd::AsRawFd::as_raw_fd(&vcpu_fd), text);
    loop {
        let e = match vcpu_fd.run() {
            Ok(VcpuExit::IoOut(port, data)) => format!("IoOut({port:#x}, {data:?})"),
            Ok(VcpuExit::IoIn(port, data)) => {
                data[0] = 0x5a;
                format!("IoIn({port:#x}, {})", data.len())
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => format!("MmioWrite({addr:#x}, {data:?})"),
            Ok(VcpuExit::MmioRead(addr, data)) => {
                data.copy_from_slice(&0x4321u32.to_le_bytes()[..data.len()]);
                format!("MmioRead({addr:#x}, {})", data.len())
            }
            Ok(VcpuExit::Hlt) => "Hlt".into(),
            Ok(VcpuExit::Shutdown) => "Shutdown".into(),
            Ok(VcpuExit::SystemEvent(t, _)) => format!("SystemEvent({t})"),
            other => panic!("kvm-ioctls: {other:?}"),
        };
        let end = e == "Shutdown" || e.starts_with("SystemEvent") || e == "Hlt";
        seen_by_kvm_ioctls.push(e);
        if end {
            break;
        }
    }

    // the same script, libmemfault running a kvm-ioctls vCPU
    let vm = wrap_vm(&vm_fd, &vm_options()).expect("memfault_vm_new on a kvm-ioctls VmFd");
    let mut vcpu_fd = vm_fd.create_vcpu(1).expect("KVM_CREATE_VCPU");
    let raw = std::os::fd::AsRawFd::as_raw_fd(&vcpu_fd);
    let run_before = vcpu_fd.get_kvm_run() as *mut _ as usize;
    let mut vcpu = wrap_vcpu(&vm, &mut vcpu_fd, &VcpuOptions::new()).expect("memfault_vcpu_new on a VcpuFd");
    assert_eq!(vcpu.fd(), raw);
    // the kvm_run mapping kvm-ioctls made, adopted, not a second one
    assert_eq!(vcpu.kvm_run().as_ptr() as usize, run_before);
    script(raw, text);
    let mut seen_by_memfault = Vec::new();
    loop {
        let e = match vcpu.run().expect("memfault_vcpu_run") {
            Exit::IoOut(port, data) => format!("IoOut({port:#x}, {data:?})"),
            Exit::IoIn(port, data) => {
                data[0] = 0x5a;
                format!("IoIn({port:#x}, {})", data.len())
            }
            Exit::MmioWrite(addr, data) => format!("MmioWrite({addr:#x}, {data:?})"),
            Exit::MmioRead(addr, data) => {
                data.copy_from_slice(&0x4321u32.to_le_bytes()[..data.len()]);
                format!("MmioRead({addr:#x}, {})", data.len())
            }
            Exit::Hlt => "Hlt".into(),
            Exit::Shutdown => "Shutdown".into(),
            Exit::SystemEvent(t) => format!("SystemEvent({t})"),
            other => panic!("memfault: {other:?}"),
        };
        let end = e == "Shutdown" || e.starts_with("SystemEvent") || e == "Hlt";
        seen_by_memfault.push(e);
        if end {
            break;
        }
    }
    assert_eq!(seen_by_memfault, seen_by_kvm_ioctls);
    assert!(seen_by_memfault.len() >= 4, "{seen_by_memfault:?}");
    let s = vcpu.stats().unwrap();
    assert_eq!(s.exits as usize, seen_by_memfault.len());
}

/// What kvm-ioctls leaves to the VMM: a vCPU access to a missing page of a
/// userfault region is resolved by a page-in closure, exactly once, and the
/// guest reads what it wrote (the simulator's KVM Userfault model, 7.2-uf).
#[test]
#[ignore = "needs the KVM simulator preloaded: bindings/rust/run-kvm-ioctls.sh"]
fn kvm_ioctls_vcpu_pages_in_through_libmemfault() {
    const RAM: u64 = 0x2000_0000;
    let kvm = Kvm::new().expect("open /dev/kvm");
    let vm_fd = kvm.create_vm().expect("KVM_CREATE_VM");
    let vm = wrap_vm(&vm_fd, &vm_options()).unwrap();
    if !vm.features().unwrap().kvm_userfault() {
        panic!("this simulator level has no KVM Userfault: run with KVMSIM_LEVEL=7.2-uf");
    }
    let fetches = Arc::new(AtomicU32::new(0));
    let f = fetches.clone();
    vm.set_handlers(Handlers::new().page_in(move |p| {
        f.fetch_add(1, Ordering::Relaxed);
        p.fill(0x7e)?;
        Ok(Verdict::Resolved)
    }))
    .unwrap();
    let ram = GuestMemory::anonymous(16 * memfault::page_size() as usize).unwrap();
    let _region = vm.add_region(1, RAM, &ram, &RegionOptions::new().userfault().missing()).unwrap();
    let mut vcpu_fd = vm_fd.create_vcpu(0).unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&vcpu_fd);
    let mut vcpu = wrap_vcpu(&vm, &mut vcpu_fd, &VcpuOptions::new()).unwrap();
    script(raw, &format!("load:{RAM:#x}:1; mmio_write:0x10000000:1:acc; load:{:#x}:1", RAM + 8));
    match vcpu.run_dispatch().unwrap() {
        Exit::MmioWrite(0x1000_0000, data) => assert_eq!(data, [0x7e]),
        other => panic!("{other:?}"),
    }
    assert_eq!(fetches.load(Ordering::Relaxed), 1);
    let end = vcpu.run_dispatch().unwrap();
    assert!(matches!(end, Exit::Shutdown | Exit::SystemEvent(_)), "{end:?}");
    assert_eq!(fetches.load(Ordering::Relaxed), 1, "the second load is on the same page");
}
