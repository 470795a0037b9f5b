// SPDX-License-Identifier: MIT
//! A rust-vmm style VMM: kvm-ioctls opens KVM, creates the VM and the vCPU,
//! maps the guest's code and sets its registers, as Firecracker and
//! cloud-hypervisor do; libmemfault then runs the vCPU, decodes its exits
//! and resolves its memory faults, with the guest's RAM paged in on demand.
//!
//! Guest physical memory:
//!   0x00000  64 KiB the VMM maps itself with kvm-ioctls (the guest's code
//!            at 0x1000);
//!   0x20000  16 pages registered with libmemfault, every page missing: the
//!            page-in closure fills a page with 0x42 when the guest first
//!            touches it (KVM Userfault exits where the kernel has them,
//!            userfaultfd otherwise);
//!   0xd0000  no memory: a device, reached by MMIO.
//!
//! The guest (x86-64, 16-bit real mode) loads a byte of RAM at 0x20000,
//! writes it to IO port 0xe0 and to the device at 0xd0000, and halts. The
//! VMM checks that it ran exactly so: 0x42 seen at the port and the device,
//! one page fetched, the end exit; it prints each step and `result: OK`,
//! and exits 0; 1 if anything differs; 77 if it cannot run here (no VM can
//! be created, or no trap for missing pages is permitted).
//!
//! On a real /dev/kvm (x86-64 hosts; the guest is x86 machine code):
//!   cargo run --example rust_vmm
//! On the project's KVM simulator (libkvmsim.so preloaded, as
//! run-kvm-ioctls.sh does), which runs no machine code but a script of the
//! same guest steps, for either architecture it models (arm64 has no IO
//! ports or HLT: the device write, then the script's end, a system event):
//!   cargo run --example rust_vmm -- --arch arm64
use std::ffi::{c_char, c_int, c_void, CString};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use kvm_ioctls::Kvm;
use memfault::{
    Arch, Errno, Exit, GuestMemory, Handlers, RegionOptions, UffdMode, UffdOptions, VcpuOptions, Verdict, VmOptions,
};

const CODE_GPA: u64 = 0x1000;
const RAM_GPA: u64 = 0x2_0000;
const RAM_PAGES: u64 = 16;
const DEVICE_GPA: u64 = 0xd_0000;
const PORT: u16 = 0xe0;
const BYTE: u8 = 0x42;

/// The x86 guest, 16-bit real mode, CS = 0, IP = 0x1000.
const X86_CODE: [u8; 20] = [
    0xb8, 0x00, 0x20, // mov ax, 0x2000
    0x8e, 0xd8, //       mov ds, ax        ; ds:0 = RAM_GPA
    0xa0, 0x00, 0x00, // mov al, [0]       ; a missing page: paged in
    0xe6, 0xe0, //       out 0xe0, al      ; IoOut(PORT, [BYTE])
    0xbb, 0x00, 0xd0, // mov bx, 0xd000
    0x8e, 0xc3, //       mov es, bx        ; es:0 = DEVICE_GPA
    0x26, 0xa2, 0x00, 0x00, // mov es:[0], al ; MmioWrite(DEVICE_GPA, [BYTE])
    0xf4, //             hlt               ; Hlt
];

type SetScript = unsafe extern "C" fn(c_int, *const c_char) -> c_int;

/// kvmsim_vcpu_set_script_text() when the simulator is preloaded.
fn simulator() -> Option<SetScript> {
    extern "C" {
        fn dlsym(handle: *mut c_void, name: *const c_char) -> *mut c_void;
    }
    // SAFETY: an RTLD_DEFAULT (null handle) lookup of a symbol by name.
    let f = unsafe { dlsym(std::ptr::null_mut(), c"kvmsim_vcpu_set_script_text".as_ptr()) };
    // SAFETY: the simulator's prototype (tests/sim/kvmsim.h).
    (!f.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, SetScript>(f) })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let host = if cfg!(target_arch = "aarch64") { Arch::Arm64 } else { Arch::X86_64 };
    let arch = match args.iter().map(String::as_str).collect::<Vec<_>>()[1..] {
        [] => host,
        ["--arch", "x86_64"] => Arch::X86_64,
        ["--arch", "arm64"] => Arch::Arm64,
        _ => {
            eprintln!("usage: {} [--arch x86_64|arm64]", args[0]);
            std::process::exit(2);
        }
    };
    let sim = simulator();
    match (sim.is_some(), arch) {
        (true, Arch::Arm64) => std::env::set_var("KVMSIM_ARCH", "arm64"),
        (true, _) => std::env::set_var("KVMSIM_ARCH", "x86_64"),
        (false, Arch::X86_64) if cfg!(target_arch = "x86_64") => {}
        (false, _) => {
            eprintln!("the guest of this example is x86 machine code: on /dev/kvm it runs on x86-64 only");
            std::process::exit(77);
        }
    }
    println!("KVM: {}", if sim.is_some() { "the simulator (preloaded)" } else { "/dev/kvm" });

    // kvm-ioctls: the VM, and the memory the VMM maps itself (declared
    // first: it outlives the VM)
    let code = GuestMemory::anonymous(0x10000)?;
    code.write(CODE_GPA as usize, &X86_CODE)?;
    let vm_fd = match Kvm::new().and_then(|kvm| kvm.create_vm()) {
        Ok(fd) => fd,
        Err(e) => {
            // no KVM here (no /dev/kvm, no access, no virtualization)
            eprintln!("cannot create a VM: {e}");
            std::process::exit(77);
        }
    };
    let slot0 = kvm_bindings::kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: code.len() as u64,
        userspace_addr: code.as_ptr() as u64,
    };
    // SAFETY: `code` stays mapped until the VM is gone (declared before it).
    unsafe { vm_fd.set_user_memory_region(slot0)? };

    // libmemfault on the same VM fd (borrowed: kvm-ioctls keeps it)
    let vm = memfault_kvm_ioctls::wrap_vm(&vm_fd, &VmOptions::new().arch(arch))?;
    let features = vm.features()?;
    let fetched = Arc::new(AtomicU32::new(0));
    let f = fetched.clone();
    vm.set_handlers(Handlers::new().page_in(move |p| {
        println!("page-in gpa {:#x}", p.gpa()?);
        f.fetch_add(1, Ordering::Relaxed);
        p.fill(BYTE)?;
        Ok(Verdict::Resolved)
    }))?;
    let ram = GuestMemory::anonymous((RAM_PAGES * memfault::page_size()) as usize)?;
    let uffd_mode = !features.kvm_userfault();
    let opts = if uffd_mode { RegionOptions::new().missing() } else { RegionOptions::new().userfault().missing() };
    let region = vm.add_region(1, RAM_GPA, &ram, &opts)?;
    // Without KVM Userfault, KVM's own access to a missing page (through
    // the memslot's host mapping) faults in userfaultfd and blocks until
    // the library's thread has paged it in.
    let uffd = match uffd_mode.then(|| vm.new_uffd(&UffdOptions::new().service_thread())).transpose() {
        Ok(u) => u,
        Err(e @ (Errno::EPERM | Errno::EACCES | Errno::ENOSYS)) => {
            eprintln!(
                "no KVM Userfault, and userfaultfd is refused ({e}): run as root or with vm.unprivileged_userfaultfd=1"
            );
            std::process::exit(77);
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(u) = &uffd {
        u.register(&region, UffdMode::Missing)?;
    }
    println!("missing pages trap by {}", if uffd_mode { "userfaultfd" } else { "KVM Userfault exits" });

    // kvm-ioctls: the vCPU and its registers; libmemfault runs it
    let mut vcpu_fd = vm_fd.create_vcpu(0)?;
    if let Some(set_script) = sim {
        let steps = if arch == Arch::X86_64 {
            format!("load:{RAM_GPA:#x}:1; out:{PORT:#x}:1:acc; mmio_write:{DEVICE_GPA:#x}:1:acc; hlt")
        } else {
            format!("load:{RAM_GPA:#x}:1; mmio_write:{DEVICE_GPA:#x}:1:acc")
        };
        let text = CString::new(steps)?;
        // SAFETY: a vCPU fd of the simulator, a NUL-terminated script.
        if unsafe { set_script(vcpu_fd.as_raw_fd(), text.as_ptr()) } != 0 {
            return Err("kvmsim_vcpu_set_script_text failed".into());
        }
    } else {
        let mut sregs = vcpu_fd.get_sregs()?;
        sregs.cs.base = 0;
        sregs.cs.selector = 0;
        vcpu_fd.set_sregs(&sregs)?;
        vcpu_fd.set_regs(&kvm_bindings::kvm_regs { rip: CODE_GPA, rflags: 2, ..Default::default() })?;
    }
    let mut vcpu = memfault_kvm_ioctls::wrap_vcpu(&vm, &mut vcpu_fd, &VcpuOptions::new())?;
    if let Some(u) = &uffd {
        u.add_vcpu(&vcpu)?;
    }

    let (mut at_port, mut at_device) = (None, None);
    let end = loop {
        match vcpu.run_dispatch()? {
            Exit::IoOut(port, data) => {
                println!("out {port:#x} {data:x?}");
                at_port = Some((port, data.to_vec()));
            }
            Exit::MmioWrite(addr, data) => {
                println!("mmio write {addr:#x} {data:x?}");
                at_device = Some((addr, data.to_vec()));
            }
            Exit::Interrupted | Exit::Retry => {}
            Exit::MemoryFault(f) => return Err(format!("unresolved memory fault: {f:?}").into()),
            other => {
                println!("{other:?}: the guest is done");
                break other;
            }
        }
    };
    let ended = matches!(end, Exit::Hlt) || (arch == Arch::Arm64 && matches!(end, Exit::SystemEvent(_)));
    let stats = vcpu.stats()?;
    if let Some(u) = &uffd {
        u.remove_vcpu(&vcpu)?;
    }
    let ok = ended
        && at_device == Some((DEVICE_GPA, vec![BYTE]))
        && (arch != Arch::X86_64 || at_port == Some((PORT, vec![BYTE])))
        && fetched.load(Ordering::Relaxed) == 1
        && region.count_missing()? == RAM_PAGES - 1;
    println!(
        "result: {}: {} exits, {} page fetched (by {})",
        if ok { "OK" } else { "FAILED" },
        stats.exits,
        fetched.load(Ordering::Relaxed),
        if uffd_mode { "userfaultfd" } else { "KVM Userfault exit" }
    );
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
