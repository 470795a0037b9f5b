// SPDX-License-Identifier: MIT
//! KVM Userfault page-in resolved by Rust closures through
//! memfault_vcpu_run_dispatch(), on both arch models (level 7.2-uf).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use common::{sim, Level, BOTH_ARCHES, RAM_GPA};
use memfault::{Claim, Errno, Exit, GuestMemory, Handlers, RegionOptions, VcpuOptions, Verdict, Vm, VmOptions};

const NPAGES: u64 = 16;

fn loads(pages: impl IntoIterator<Item = u64>) -> String {
    let ps = memfault::page_size();
    pages.into_iter().map(|p| format!("load:{:#x}:1;", RAM_GPA + p * ps)).collect()
}

#[test]
#[ignore = "needs the KVM simulator preloaded: run by meson (suite bindings), or cargo test -- --include-ignored through kvmsim-runner.sh"]
fn page_in_closure_resolves_userfaults_on_both_arches() {
    for arch in BOTH_ARCHES {
        let Some(sim) = sim(arch, Level::L7_2Uf) else { return };
        let kvm = sim.kvm();
        let vm = Vm::new(sim.create_vm(&kvm), &VmOptions::new().arch(arch)).unwrap();
        assert!(vm.features().unwrap().kvm_userfault());

        let calls = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (c, l) = (calls.clone(), log.clone());
        vm.set_handlers(
            Handlers::new()
                .page_in(move |p| {
                    let gpa = p.gpa()?;
                    assert!(p.region().is_missing(p.page())?, "called for a present page");
                    p.fill(p.page() as u8 + 1)?;
                    p.write(1, &[0xee])?;
                    c.lock().unwrap().push((p.page(), gpa, p.vcpu().map(|v| v.fd())));
                    Ok(Verdict::Resolved)
                })
                .log(move |level, msg| l.lock().unwrap().push((level, msg.to_owned()))),
        )
        .unwrap();

        let ram = GuestMemory::anonymous((NPAGES * memfault::page_size()) as usize).unwrap();
        let region = vm.add_region(1, RAM_GPA, &ram, &RegionOptions::new().userfault().missing()).unwrap();
        assert_eq!(region.count_missing().unwrap(), NPAGES);

        let mut vcpu = vm.new_vcpu(sim.create_vcpu(vm.fd(), 0), &VcpuOptions::new()).unwrap();
        sim.script(vcpu.fd(), &(loads([3, 5, 3, 0]) + "mmio_write:0x10000000:1:acc"));
        // faults on 3, 5, 0 are resolved inside run_dispatch(); the MMIO
        // write is the first exit the VMM sees
        let exit = vcpu.run_dispatch().unwrap();
        assert_eq!(exit.reason(), Some(memfault::exit_reason::MMIO), "{arch:?}");
        assert_eq!(vcpu.kvm_run().mmio().unwrap().data[0], 1); // page 0's byte
        let got: Vec<_> = calls.lock().unwrap().iter().map(|&(p, gpa, fd)| (p, gpa, fd == Some(vcpu.fd()))).collect();
        let ps = memfault::page_size();
        assert_eq!(got, [(3, RAM_GPA + 3 * ps, true), (5, RAM_GPA + 5 * ps, true), (0, RAM_GPA, true)]);
        let mut b = [0u8; 2];
        ram.read((5 * ps) as usize, &mut b).unwrap();
        assert_eq!(b, [6, 0xee]);
        assert_eq!(region.count_missing().unwrap(), NPAGES - 3);
        assert_eq!(region.find_present(0).unwrap(), Some(0));
        assert_eq!(region.find_missing(0).unwrap(), Some(1));
        assert_eq!(region.find_present(6).unwrap(), None);

        let s = vcpu.stats().unwrap();
        assert_eq!((s.userfaults, s.page_ins, s.retries, s.exits), (3, 3, 3, 1));
        assert_eq!(vcpu.run_dispatch().unwrap().reason(), Some(sim.end_exit()));
        assert!(log.lock().unwrap().is_empty(), "{:?}", log.lock().unwrap());
    }
}

#[test]
#[ignore = "needs the KVM simulator preloaded: run by meson (suite bindings), or cargo test -- --include-ignored through kvmsim-runner.sh"]
fn page_in_exactly_once_across_vcpu_threads() {
    const NVCPUS: u64 = 4;
    for arch in BOTH_ARCHES {
        let Some(sim) = sim(arch, Level::L7_2Uf) else { return };
        let kvm = sim.kvm();
        let vm = Vm::new(sim.create_vm(&kvm), &VmOptions::new().arch(arch)).unwrap();
        let fetches: Arc<Vec<AtomicU32>> = Arc::new((0..NPAGES).map(|_| AtomicU32::new(0)).collect());
        let f = fetches.clone();
        vm.set_handlers(Handlers::new().page_in(move |p| {
            f[p.page() as usize].fetch_add(1, Ordering::Relaxed);
            std::thread::yield_now(); // let other vCPUs pile up on the page
            p.fill(p.page() as u8 + 1)?;
            Ok(Verdict::Resolved)
        }))
        .unwrap();
        let ram = GuestMemory::anonymous((NPAGES * memfault::page_size()) as usize).unwrap();
        let region = vm.add_region(1, RAM_GPA, &ram, &RegionOptions::new().userfault().missing()).unwrap();

        let mut vcpus = Vec::new();
        for i in 0..NVCPUS {
            let vcpu = vm.new_vcpu(sim.create_vcpu(vm.fd(), i), &VcpuOptions::new()).unwrap();
            sim.script(vcpu.fd(), &loads((0..NPAGES).map(|k| (k * 5 + i * 3) % NPAGES)));
            vcpus.push(vcpu);
        }
        let stats: Vec<_> = std::thread::scope(|s| {
            let threads: Vec<_> = vcpus
                .into_iter()
                .map(|mut vcpu| {
                    s.spawn(move || {
                        let exit = vcpu.run_dispatch().unwrap().reason();
                        (exit, vcpu.stats().unwrap())
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        for (exit, _) in &stats {
            assert_eq!(*exit, Some(sim.end_exit()));
        }
        for (p, n) in fetches.iter().enumerate() {
            assert_eq!(n.load(Ordering::Relaxed), 1, "{arch:?}: page {p} fetched more than once");
            let mut b = [0u8];
            ram.read(p * memfault::page_size() as usize, &mut b).unwrap();
            assert_eq!(b[0], p as u8 + 1);
        }
        let ins: u64 = stats.iter().map(|(_, s)| s.page_ins).sum();
        let waits: u64 = stats.iter().map(|(_, s)| s.page_waits).sum();
        let ufs: u64 = stats.iter().map(|(_, s)| s.userfaults).sum();
        assert_eq!(ins, NPAGES);
        assert_eq!(ins + waits, ufs);
        assert_eq!(region.count_missing().unwrap(), 0);
    }
}

#[test]
#[ignore = "needs the KVM simulator preloaded: run by meson (suite bindings), or cargo test -- --include-ignored through kvmsim-runner.sh"]
fn panicking_or_failing_closure_is_an_error_not_a_crash() {
    for arch in BOTH_ARCHES {
        let Some(sim) = sim(arch, Level::L7_2Uf) else { return };
        let kvm = sim.kvm();
        let vm = Vm::new(sim.create_vm(&kvm), &VmOptions::new().arch(arch)).unwrap();
        let mode = Arc::new(AtomicU32::new(0));
        let m = mode.clone();
        vm.set_handlers(Handlers::new().page_in(move |p| match m.load(Ordering::Relaxed) {
            0 => panic!("page-in of page {} exploded", p.page()),
            1 => Err(Errno::EIO),
            2 => Ok(Verdict::ToVmm),
            _ => {
                p.fill(7)?;
                Ok(Verdict::Resolved)
            }
        }))
        .unwrap();
        let ram = GuestMemory::anonymous((NPAGES * memfault::page_size()) as usize).unwrap();
        let region = vm.add_region(1, RAM_GPA, &ram, &RegionOptions::new().userfault().missing()).unwrap();
        let mut vcpu = vm.new_vcpu(sim.create_vcpu(vm.fd(), 0), &VcpuOptions::new()).unwrap();
        sim.script(vcpu.fd(), &loads([2]));
        let gpa = RAM_GPA + 2 * memfault::page_size();

        assert_eq!(vcpu.run_dispatch(), Err(Errno::HANDLER_FAILED));
        let payload = vm.take_handler_panic().expect("the panic is kept");
        assert_eq!(payload.downcast_ref::<String>().unwrap(), "page-in of page 2 exploded");
        assert!(vm.take_handler_panic().is_none());
        assert_eq!(vcpu.fault().unwrap().gpa, gpa);
        assert!(region.is_missing(2).unwrap());
        assert_eq!(region.abort(2), Err(Errno::EPERM)); // the claim was released

        mode.store(1, Ordering::Relaxed);
        assert_eq!(vcpu.run_dispatch(), Err(Errno::EIO));

        mode.store(2, Ordering::Relaxed);
        let Exit::MemoryFault(f) = vcpu.run_dispatch().unwrap() else { panic!("expected the fault") };
        assert!(f.is_userfault());
        assert_eq!(f.gpa, gpa);

        mode.store(3, Ordering::Relaxed);
        assert_eq!(vcpu.run_dispatch().unwrap().reason(), Some(sim.end_exit()));
        assert_eq!(sim.acc(vcpu.fd()), 7);
        assert_eq!(vcpu.stats().unwrap().page_ins, 1);
    }
}

/// Without a page-in handler the fault goes to the VMM, which fetches the
/// page itself with claim/publish.
#[test]
#[ignore = "needs the KVM simulator preloaded: run by meson (suite bindings), or cargo test -- --include-ignored through kvmsim-runner.sh"]
fn vmm_resolves_userfault_with_claim_and_publish() {
    for arch in BOTH_ARCHES {
        let Some(sim) = sim(arch, Level::L7_2Uf) else { return };
        let kvm = sim.kvm();
        let vm = Vm::new(sim.create_vm(&kvm), &VmOptions::new().arch(arch)).unwrap();
        let ram = GuestMemory::anonymous((NPAGES * memfault::page_size()) as usize).unwrap();
        let region = vm.add_region(1, RAM_GPA, &ram, &RegionOptions::new().userfault()).unwrap();
        region.mark_missing(4, 2).unwrap();
        assert_eq!(region.count_missing().unwrap(), 2);
        let mut vcpu = vm.new_vcpu(sim.create_vcpu(vm.fd(), 0), &VcpuOptions::new()).unwrap();
        sim.script(vcpu.fd(), &loads([1, 5]));

        let Exit::MemoryFault(f) = vcpu.run_dispatch().unwrap() else { panic!("expected a userfault") };
        assert!(f.is_userfault());
        let (info, page) = vm.find_region(f.gpa).unwrap();
        assert_eq!((info.slot, page), (1, 5));
        let Claim::Fetch(fetch) = region.claim(page, false).unwrap() else { panic!("expected to fetch") };
        assert!(matches!(region.claim(page, true).unwrap(), Claim::Busy));
        ram.write((page * info.page_size) as usize, &[0x99]).unwrap();
        fetch.publish().unwrap();
        assert!(matches!(region.claim(page, true).unwrap(), Claim::Present));
        assert_eq!(vcpu.run_dispatch().unwrap().reason(), Some(sim.end_exit()));
        assert_eq!(sim.acc(vcpu.fd()), 0x99);

        // a dropped Fetch aborts its claim
        if let Claim::Fetch(fetch) = region.claim(4, false).unwrap() {
            drop(fetch);
        } else {
            panic!("page 4 is missing");
        }
        assert!(region.is_missing(4).unwrap());
        assert!(matches!(region.claim(4, true).unwrap(), Claim::Fetch(_)));
    }
}

/// Setup calls fail with EBUSY while a vCPU is inside run_dispatch().
#[test]
#[ignore = "needs the KVM simulator preloaded: run by meson (suite bindings), or cargo test -- --include-ignored through kvmsim-runner.sh"]
fn setup_calls_are_refused_during_dispatch() {
    let Some(sim) = sim(common::BOTH_ARCHES[0], Level::L7_2Uf) else { return };
    let kvm = sim.kvm();
    let vm = Vm::new(sim.create_vm(&kvm), &VmOptions::new().arch(sim.arch)).unwrap();
    let (inside_tx, inside_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (inside_tx, release_rx) = (Mutex::new(inside_tx), Mutex::new(release_rx));
    let released = Arc::new(AtomicBool::new(false));
    let r = released.clone();
    vm.set_handlers(Handlers::new().page_in(move |p| {
        inside_tx.lock().unwrap().send(()).unwrap();
        release_rx.lock().unwrap().recv().unwrap();
        r.store(true, Ordering::Relaxed);
        p.fill(1)?;
        Ok(Verdict::Resolved)
    }))
    .unwrap();
    let ram = GuestMemory::anonymous((NPAGES * memfault::page_size()) as usize).unwrap();
    let _region = vm.add_region(1, RAM_GPA, &ram, &RegionOptions::new().userfault().missing()).unwrap();
    let mut vcpu = vm.new_vcpu(sim.create_vcpu(vm.fd(), 0), &VcpuOptions::new()).unwrap();
    sim.script(vcpu.fd(), &loads([0]));
    let other = GuestMemory::anonymous(memfault::page_size() as usize).unwrap();
    std::thread::scope(|s| {
        let t = s.spawn(|| vcpu.run_dispatch().map(|e| e.reason()));
        inside_rx.recv().unwrap();
        assert_eq!(vm.add_region(2, 0x4000_0000, &other, &RegionOptions::new()).unwrap_err(), Errno::EBUSY);
        assert_eq!(vm.set_handlers(Handlers::new()).unwrap_err(), Errno::EBUSY);
        assert_eq!(vm.find_region(RAM_GPA).unwrap().1, 0); // lookups are fine
        release_tx.send(()).unwrap();
        assert_eq!(t.join().unwrap().unwrap(), Some(sim.end_exit()));
    });
    assert!(released.load(Ordering::Relaxed));
    let r2 = vm.add_region(2, 0x4000_0000, &other, &RegionOptions::new()).unwrap();
    drop(r2);
    vm.clear_handlers().unwrap();
}
