// SPDX-License-Identifier: MIT
//! Run loops on the KVM simulator: MMIO and port IO exits, memory faults on
//! both arch models, kicks, features.

mod common;

use std::os::fd::{AsFd, AsRawFd};

use common::{sim, Level, BOTH_ARCHES, GMEM_GPA, MMIO_GPA, RAM_GPA};
use memfault::{
    exit_reason, Arch, Errno, Exit, FaultFlags, GuestMemory, Origin, RegionOptions, VcpuOptions, Vm,
    VmOptions,
};

#[test]
#[ignore = "needs the KVM simulator preloaded: run by meson (suite bindings), or cargo test -- --include-ignored through kvmsim-runner.sh"]
fn mmio_run_loop_on_both_arches() {
    for arch in BOTH_ARCHES {
        let Some(sim) = sim(arch, Level::L7_2) else { return };
        let kvm = sim.kvm();
        let vm = Vm::new(sim.create_vm(&kvm), &VmOptions::new().arch(arch).kvm_fd(kvm.as_fd())).unwrap();
        let mut vcpu = vm.new_vcpu(sim.create_vcpu(vm.fd(), 0), &VcpuOptions::new()).unwrap();
        sim.script(
            vcpu.fd(),
            "mmio_write:0x10000000:4:0x1234; mmio_read:0x10000004:4; mmio_write:0x10000008:4:acc",
        );

        let mut device = Vec::new();
        loop {
            match vcpu.run().unwrap() {
                Exit::MmioWrite(addr, data) => device.push((addr, u32::from_le_bytes(data.try_into().unwrap()))),
                Exit::MmioRead(addr, data) => {
                    assert_eq!((addr, data.len()), (MMIO_GPA + 4, 4));
                    data.copy_from_slice(&0x4321u32.to_le_bytes());
                }
                other => {
                    assert_eq!(other.reason(), Some(sim.end_exit()), "{arch:?}: unexpected {other:?}");
                    break;
                }
            }
        }
        assert_eq!(device, [(MMIO_GPA, 0x1234), (MMIO_GPA + 8, 0x4321)], "{arch:?}");
        assert!(vcpu.fault().is_err_and(|e| e == Errno::ENODATA));
        let s = vcpu.stats().unwrap();
        assert_eq!((s.runs, s.exits), (4, 4));
    }
}

#[test]
#[ignore = "needs the KVM simulator preloaded: run by meson (suite bindings), or cargo test -- --include-ignored through kvmsim-runner.sh"]
fn x86_port_io_and_hlt() {
    let Some(sim) = sim(Arch::X86_64, Level::L7_2) else { return };
    let kvm = sim.kvm();
    let vm = Vm::new(sim.create_vm(&kvm), &VmOptions::new().arch(Arch::X86_64)).unwrap();
    let mut vcpu = vm.new_vcpu(sim.create_vcpu(vm.fd(), 0), &VcpuOptions::new()).unwrap();
    sim.script(vcpu.fd(), "out:0xe0:1:0x42; in:0xe1:1; out:0xe2:1:acc; hlt");

    let mut outs = Vec::new();
    loop {
        match vcpu.run().unwrap() {
            Exit::IoOut(port, data) => outs.push((port, data.to_vec())),
            Exit::IoIn(port, data) => {
                assert_eq!((port, data.len()), (0xe1, 1));
                data[0] = 0x5a;
            }
            Exit::Hlt => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(outs, [(0xe0, vec![0x42]), (0xe2, vec![0x5a])]);
    assert_eq!(sim.acc(vcpu.fd()), 0x5a);
    assert_eq!(vcpu.run().unwrap(), Exit::Shutdown);
}

/// guest_memfd slot whose fd is closed: a memory fault with the address.
#[test]
#[ignore = "needs the KVM simulator preloaded: run by meson (suite bindings), or cargo test -- --include-ignored through kvmsim-runner.sh"]
fn closed_guest_memfd_is_a_memory_fault_on_both_arches() {
    for arch in BOTH_ARCHES {
        let Some(sim) = sim(arch, Level::L7_2) else { return };
        let kvm = sim.kvm();
        let vm = Vm::new(sim.create_vm(&kvm), &VmOptions::new().arch(arch)).unwrap();
        let mut vcpu = vm.new_vcpu(sim.create_vcpu(vm.fd(), 0), &VcpuOptions::new()).unwrap();
        let page = memfault::page_size();
        let gmem = sim.create_gmem(vm.fd(), 2 * page).unwrap();
        let map = GuestMemory::map_shared(gmem.as_fd(), 2 * page as usize, 0).unwrap();
        map.fill(0, map.len(), 0x6b).unwrap();
        sim.set_memslot2(vm.fd(), 2, common::KVM_MEM_GUEST_MEMFD, GMEM_GPA, 2 * page, map.as_ptr() as u64, gmem.as_raw_fd(), 0)
            .unwrap();

        sim.script(vcpu.fd(), &format!("load:{:#x}:4", GMEM_GPA + page));
        assert_eq!(vcpu.run().unwrap().reason(), Some(sim.end_exit()));
        assert_eq!(sim.acc(vcpu.fd()), 0x6b6b_6b6b);

        drop(gmem); // closing the guest_memfd: KVM can no longer fault the page in
        sim.script(vcpu.fd(), &format!("load:{:#x}:4", GMEM_GPA + page));
        let Exit::MemoryFault(f) = vcpu.run().unwrap() else { panic!("{arch:?}: no memory fault") };
        assert_eq!((f.gpa, f.size), (GMEM_GPA + page, page), "{arch:?}");
        assert_eq!(f.flags, FaultFlags::empty());
        assert_eq!(f.error, Some(Errno::EFAULT));
        assert_eq!(f.origin, Origin::Errno);
        assert!(f.range_trusted());
        assert_eq!(vcpu.fault().unwrap(), f);
        assert_eq!(vcpu.kvm_run().exit_reason(), exit_reason::MEMORY_FAULT);
    }
}

/// Poison and guest_memfd errnos: HWPOISON, and origin OTHER_ERRNO.
#[test]
#[ignore = "needs the KVM simulator preloaded: run by meson (suite bindings), or cargo test -- --include-ignored through kvmsim-runner.sh"]
fn poisoned_and_failing_guest_memfd_on_both_arches() {
    for arch in BOTH_ARCHES {
        let Some(sim) = sim(arch, Level::L7_2) else { return };
        let kvm = sim.kvm();
        let vm = Vm::new(sim.create_vm(&kvm), &VmOptions::new().arch(arch)).unwrap();
        let mut vcpu = vm.new_vcpu(sim.create_vcpu(vm.fd(), 0), &VcpuOptions::new()).unwrap();
        let page = memfault::page_size();
        let gmem = sim.create_gmem(vm.fd(), 2 * page).unwrap();
        // a guest_memfd memslot registered through the library this time
        let map = GuestMemory::map_shared(gmem.as_fd(), 2 * page as usize, 0).unwrap();
        map.fill(0, map.len(), 0x6b).unwrap();
        let opts = RegionOptions::new().guest_memfd(gmem.as_fd(), 0);
        let region = vm.add_region(2, GMEM_GPA, &map, &opts).unwrap();
        assert_eq!(region.info().unwrap().npages, 2);

        sim.inject_gmem_error(vm.fd(), GMEM_GPA, Errno::ENOMEM, 1);
        sim.script(vcpu.fd(), &format!("load:{GMEM_GPA:#x}:4"));
        let Exit::MemoryFault(f) = vcpu.run().unwrap() else { panic!("no fault") };
        assert_eq!((f.gpa, f.error, f.origin), (GMEM_GPA, Some(Errno::ENOMEM), Origin::OtherErrno));
        assert_eq!(vcpu.run().unwrap().reason(), Some(sim.end_exit()));
        assert_eq!(sim.acc(vcpu.fd()), 0x6b6b_6b6b);

        sim.poison(vm.fd(), GMEM_GPA + page);
        sim.script(vcpu.fd(), &format!("load:{:#x}:8", GMEM_GPA + page));
        let Exit::MemoryFault(f) = vcpu.run().unwrap() else { panic!("no fault") };
        assert!(f.is_hwpoison() && !f.is_userfault() && !f.is_private());
        assert_eq!((f.gpa, f.error, f.origin), (GMEM_GPA + page, Some(Errno::EHWPOISON), Origin::Errno));
    }
}

/// Memory the kernel cannot reach: a bare EFAULT, no address.
#[test]
#[ignore = "needs the KVM simulator preloaded: run by meson (suite bindings), or cargo test -- --include-ignored through kvmsim-runner.sh"]
fn unannotated_efault_is_an_error() {
    for arch in BOTH_ARCHES {
        let Some(sim) = sim(arch, Level::L7_2) else { return };
        let kvm = sim.kvm();
        let vm = Vm::new(sim.create_vm(&kvm), &VmOptions::new().arch(arch)).unwrap();
        let mut vcpu = vm.new_vcpu(sim.create_vcpu(vm.fd(), 0), &VcpuOptions::new()).unwrap();
        let ram = GuestMemory::anonymous(2 * memfault::page_size() as usize).unwrap();
        ram.fill(0, ram.len(), 0x5a).unwrap();
        let _region = vm.add_region(1, RAM_GPA, &ram, &RegionOptions::new()).unwrap();
        sim.script(vcpu.fd(), &format!("load:{RAM_GPA:#x}:4"));
        // SAFETY: nothing reads or writes `ram` while it is inaccessible.
        unsafe { ram.set_accessible(false) }.unwrap();
        assert_eq!(vcpu.run(), Err(Errno::EFAULT));
        // SAFETY: as above.
        unsafe { ram.set_accessible(true) }.unwrap();
        assert_eq!(vcpu.run().unwrap().reason(), Some(sim.end_exit()));
        assert_eq!(sim.acc(vcpu.fd()), 0x5a5a_5a5a);
    }
}

/// A kick from another thread while the guest spins, and one before entry.
#[test]
#[ignore = "needs the KVM simulator preloaded: run by meson (suite bindings), or cargo test -- --include-ignored through kvmsim-runner.sh"]
fn kicks_interrupt_from_any_thread() {
    for arch in BOTH_ARCHES {
        let Some(sim) = sim(arch, Level::L7_2) else { return };
        let kvm = sim.kvm();
        let vm = Vm::new(sim.create_vm(&kvm), &VmOptions::new().arch(arch)).unwrap();
        let mut vcpu = vm.new_vcpu(sim.create_vcpu(vm.fd(), 0), &VcpuOptions::new()).unwrap();
        sim.script(vcpu.fd(), "spin");

        vcpu.kick().unwrap();
        assert_eq!(vcpu.run().unwrap(), Exit::Interrupted);

        let kick = vcpu.kick_handle();
        let exit = std::thread::scope(|s| {
            let t = s.spawn(move || {
                let exit = vcpu.run_dispatch().map(|e| e == Exit::Interrupted);
                exit.map(|interrupted| (interrupted, vcpu))
            });
            std::thread::sleep(std::time::Duration::from_millis(20));
            kick.kick().unwrap();
            t.join().unwrap()
        });
        let (interrupted, vcpu) = exit.unwrap();
        assert!(interrupted);
        assert!(kick.stats().unwrap().runs >= 2);
        drop(vcpu); // the handle still keeps the C object alive
        kick.kick().unwrap();
    }
}

#[test]
#[ignore = "needs the KVM simulator preloaded: run by meson (suite bindings), or cargo test -- --include-ignored through kvmsim-runner.sh"]
fn features_and_region_lookup() {
    for (level, uf) in [(Level::L7_2, false), (Level::L7_2Uf, true)] {
        let Some(sim) = sim(Arch::Arm64, level) else { return };
        let kvm = sim.kvm();
        let vm = Vm::new(sim.create_vm(&kvm), &VmOptions::new().arch(Arch::Arm64)).unwrap();
        let f = vm.features().unwrap();
        assert_eq!(f.arch, Arch::Arm64);
        assert_eq!(f.kvm_userfault(), uf);
        assert_eq!(f.page_size, memfault::page_size());
        let ram = GuestMemory::anonymous(4 * f.page_size as usize).unwrap();
        let opts = if uf { RegionOptions::new().userfault() } else { RegionOptions::new() };
        let region = vm.add_region(3, RAM_GPA, &ram, &opts).unwrap();
        let (info, page) = vm.find_region(RAM_GPA + 2 * f.page_size + 5).unwrap();
        assert_eq!((info.slot, info.gpa, info.npages, page), (3, RAM_GPA, 4, 2));
        assert_eq!(info.hva, ram.as_ptr() as u64);
        assert_eq!(info, region.info().unwrap());
        assert_eq!(vm.find_region(0x1000).unwrap_err(), Errno::ENOENT);
        // overlapping regions are refused
        let ram2 = GuestMemory::anonymous(f.page_size as usize).unwrap();
        assert_eq!(vm.add_region(4, RAM_GPA, &ram2, &RegionOptions::new()).unwrap_err(), Errno::EEXIST);
        if !uf {
            let r = vm.add_region(5, RAM_GPA + (1 << 20), &ram2, &RegionOptions::new().userfault());
            assert_eq!(r.unwrap_err(), Errno::EOPNOTSUPP);
        }
    }
}
