// SPDX-License-Identifier: MIT
//! A rust-vmm style VMM loop: kvm-ioctls makes the VM and the vCPU, as
//! Firecracker and cloud-hypervisor do; libmemfault runs the vCPU, decodes
//! its exits and resolves its memory faults.
//!
//! On the project's KVM simulator (what run-kvm-ioctls.sh does):
//!   KVMSIM_ARCH=x86_64 KVMSIM_LEVEL=7.2-uf KVMSIM_SCRIPT='load:0x20000000:1; out:0xe0:1:acc; hlt' \
//!       cargo run --example rust_vmm
//! On a real host the guest has no code: set up registers and memory with
//! kvm-ioctls first, as any rust-vmm VMM does.
use kvm_ioctls::Kvm;
use memfault::{Exit, GuestMemory, Handlers, RegionOptions, VcpuOptions, Verdict, VmOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let kvm = Kvm::new()?;
    let vm_fd = kvm.create_vm()?;
    let vm = memfault_kvm_ioctls::wrap_vm(&vm_fd, &VmOptions::new())?;
    println!("features: {:?}", vm.features()?);

    // demand paging: every page of guest RAM starts missing, and is fetched
    // by this closure the first time a vCPU touches it
    vm.set_handlers(Handlers::new().page_in(|p| {
        println!("page-in gpa {:#x}", p.gpa()?);
        p.fill(0x42)?;
        Ok(Verdict::Resolved)
    }))?;
    let ram = GuestMemory::anonymous(1 << 20)?;
    let opts = if vm.features()?.kvm_userfault() {
        RegionOptions::new().userfault().missing()
    } else {
        RegionOptions::new() // no KVM Userfault here: plain memory
    };
    let _ram = vm.add_region(1, 0x2000_0000, &ram, &opts)?;

    let mut vcpu_fd = vm_fd.create_vcpu(0)?;
    let mut vcpu = memfault_kvm_ioctls::wrap_vcpu(&vm, &mut vcpu_fd, &VcpuOptions::new())?;
    loop {
        match vcpu.run_dispatch()? {
            Exit::IoOut(port, data) => println!("out {port:#x} {data:x?}"),
            Exit::IoIn(port, data) => {
                println!("in {port:#x}");
                data.fill(0xff);
            }
            Exit::MmioWrite(addr, data) => println!("mmio write {addr:#x} {data:x?}"),
            Exit::MmioRead(addr, data) => {
                println!("mmio read {addr:#x}");
                data.fill(0);
            }
            Exit::Interrupted | Exit::Retry => {}
            Exit::MemoryFault(f) => return Err(format!("unresolved memory fault: {f:?}").into()),
            other => {
                println!("{other:?}: done");
                return Ok(());
            }
        }
    }
}
