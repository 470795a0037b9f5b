// SPDX-License-Identifier: MIT
//! The userfaultfd backend with a Rust page-in closure: host accesses and
//! KVM's own accesses (the simulator reads guest memory through the hva in
//! the vCPU thread), MISSING and MINOR modes, library thread and VMM polling.
//! Skipped where userfaultfd is not permitted.

mod common;

use std::ffi::{c_char, c_int, c_uint};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use common::{sim, Level, BOTH_ARCHES, RAM_GPA};
use memfault::{
    Errno, GuestMemory, Handlers, RegionOptions, Uffd, UffdMode, UffdOptions, VcpuOptions, Verdict, Vm,
    VmOptions,
};

extern "C" {
    fn memfd_create(name: *const c_char, flags: c_uint) -> c_int;
}

const NPAGES: u64 = 32;

fn pattern(page: u64) -> u8 {
    (page as u8).wrapping_mul(7).wrapping_add(1)
}

/// Handlers that fill page p with pattern(p), counting the fetches.
fn counting_handlers(fetches: &Arc<Vec<AtomicU32>>, by_vcpu: &Arc<AtomicU32>) -> Handlers {
    let (f, v) = (fetches.clone(), by_vcpu.clone());
    Handlers::new().page_in(move |p| {
        f[p.page() as usize].fetch_add(1, Ordering::Relaxed);
        if p.vcpu().is_some() {
            v.fetch_add(1, Ordering::Relaxed);
        }
        p.fill(pattern(p.page()))?;
        Ok(Verdict::Resolved)
    })
}

fn new_uffd<'a>(vm: &'a Vm, opts: &UffdOptions) -> Option<Uffd<'a>> {
    match vm.new_uffd(opts) {
        Ok(u) => Some(u),
        // a failure, not a skip reported as a pass: these tests are
        // #[ignore]d, and run only where they are asked to run
        Err(e @ (Errno::EPERM | Errno::ENOSYS | Errno::EACCES)) => {
            panic!("userfaultfd is refused here ({e}): run as root or with vm.unprivileged_userfaultfd=1")
        }
        Err(e) => panic!("memfault_uffd_new: {e}"),
    }
}

/// The library counts a userfaultfd fault after the install that wakes the
/// faulting thread, so its counters may lag behind what that thread saw.
fn settle(mut done: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if done() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn counters(n: u64) -> Arc<Vec<AtomicU32>> {
    Arc::new((0..n).map(|_| AtomicU32::new(0)).collect())
}

/// KVM Userfault exits and host userfaultfd faults on the same region:
/// every page fetched exactly once, whichever side faults first.
#[test]
#[ignore = "needs the KVM simulator preloaded: run by meson (suite bindings), or cargo test -- --include-ignored through kvmsim-runner.sh"]
fn combined_kvm_userfault_and_host_faults_on_both_arches() {
    for arch in BOTH_ARCHES {
        let Some(sim) = sim(arch, Level::L7_2Uf) else { return };
        let kvm = sim.kvm();
        let vm = Vm::new(sim.create_vm(&kvm), &VmOptions::new().arch(arch)).unwrap();
        let (fetches, by_vcpu) = (counters(NPAGES), Arc::new(AtomicU32::new(0)));
        vm.set_handlers(counting_handlers(&fetches, &by_vcpu)).unwrap();
        let ps = memfault::page_size();
        let ram = GuestMemory::anonymous((NPAGES * ps) as usize).unwrap();
        let region = vm.add_region(1, RAM_GPA, &ram, &RegionOptions::new().userfault().missing()).unwrap();
        let Some(uffd) = new_uffd(&vm, &UffdOptions::new().service_thread()) else { return };
        uffd.register(&region, UffdMode::Missing).unwrap();
        assert_eq!(uffd.register(&region, UffdMode::Missing), Err(Errno::EEXIST));

        let mut vcpu = vm.new_vcpu(sim.create_vcpu(vm.fd(), 0), &VcpuOptions::new()).unwrap();
        let script: String = (0..NPAGES).map(|k| format!("load:{:#x}:1;", RAM_GPA + (k * 5 % NPAGES) * ps)).collect();
        sim.script(vcpu.fd(), &script);
        std::thread::scope(|s| {
            // a host thread reads every page backwards meanwhile
            let host = s.spawn(|| {
                for p in (0..NPAGES).rev() {
                    let mut b = [0u8];
                    ram.read((p * ps + 17) as usize, &mut b).unwrap();
                    assert_eq!(b[0], pattern(p));
                }
            });
            assert_eq!(vcpu.run_dispatch().unwrap().reason(), Some(sim.end_exit()));
            host.join().unwrap();
        });
        for (p, n) in fetches.iter().enumerate() {
            assert_eq!(n.load(Ordering::Relaxed), 1, "{arch:?}: page {p}");
        }
        settle(|| uffd.stats().is_ok_and(|s| s.page_ins + s.kvm_page_ins == NPAGES));
        let s = uffd.stats().unwrap();
        let vs = vcpu.stats().unwrap();
        assert_eq!(s.page_ins + s.kvm_page_ins, NPAGES);
        assert_eq!(s.kvm_page_ins, vs.page_ins);
        assert_eq!(u64::from(by_vcpu.load(Ordering::Relaxed)), vs.page_ins);
        assert_eq!((s.errors, s.last_error), (0, None));
        assert_eq!(region.count_missing().unwrap(), 0);
        assert_eq!(sim.acc(vcpu.fd()), u64::from(pattern((NPAGES - 1) * 5 % NPAGES)));
    }
}

/// Level 7.2 (no KVM Userfault): KVM's own accesses through the hva fault
/// in the vCPU thread; the page-in closure sees that vCPU.
#[test]
#[ignore = "needs the KVM simulator preloaded: run by meson (suite bindings), or cargo test -- --include-ignored through kvmsim-runner.sh"]
fn kvm_accesses_attributed_to_the_vcpu() {
    let Some(sim) = sim(BOTH_ARCHES[1], Level::L7_2) else { return };
    let kvm = sim.kvm();
    let vm = Vm::new(sim.create_vm(&kvm), &VmOptions::new().arch(sim.arch)).unwrap();
    let (fetches, by_vcpu) = (counters(NPAGES), Arc::new(AtomicU32::new(0)));
    vm.set_handlers(counting_handlers(&fetches, &by_vcpu)).unwrap();
    let ps = memfault::page_size();
    let ram = GuestMemory::anonymous((NPAGES * ps) as usize).unwrap();
    let region = vm.add_region(1, RAM_GPA, &ram, &RegionOptions::new().missing()).unwrap();
    let mut vcpu = vm.new_vcpu(sim.create_vcpu(vm.fd(), 0), &VcpuOptions::new()).unwrap();
    let Some(uffd) = new_uffd(&vm, &UffdOptions::new().service_thread()) else { return };
    uffd.register(&region, UffdMode::Missing).unwrap();
    uffd.add_vcpu(&vcpu).unwrap();
    assert_eq!(uffd.add_vcpu(&vcpu), Err(Errno::EEXIST));
    sim.script(vcpu.fd(), &(0..8).map(|p| format!("load:{:#x}:1;", RAM_GPA + p * ps)).collect::<String>());
    assert_eq!(vcpu.run_dispatch().unwrap().reason(), Some(sim.end_exit()));
    assert_eq!(sim.acc(vcpu.fd()), u64::from(pattern(7)));
    settle(|| vcpu.stats().is_ok_and(|s| s.uffd_faults == 8));
    let vs = vcpu.stats().unwrap();
    assert_eq!((vs.uffd_faults, vs.userfaults), (8, 0));
    assert_eq!(by_vcpu.load(Ordering::Relaxed), 8);
    uffd.remove_vcpu(&vcpu).unwrap();
    assert_eq!(uffd.remove_vcpu(&vcpu), Err(Errno::ENOENT));
    // a host read now: not attributed
    let mut b = [0u8];
    ram.read((9 * ps) as usize, &mut b).unwrap();
    assert_eq!(b[0], pattern(9));
    assert_eq!(by_vcpu.load(Ordering::Relaxed), 8);
    settle(|| uffd.stats().is_ok_and(|s| s.page_ins == 9));
    assert_eq!(uffd.stats().unwrap().page_ins, 9);
    // vCPU dropped before the Uffd: fine either way
    uffd.add_vcpu(&vcpu).unwrap();
    drop(vcpu);
}

/// MINOR mode on a memfd mapped twice, faults served by the VMM polling the
/// fd; a failing closure poisons the page (SIGBUS is not exercised here).
#[test]
#[ignore = "needs the KVM simulator preloaded: run by meson (suite bindings), or cargo test -- --include-ignored through kvmsim-runner.sh"]
fn minor_mode_served_by_vmm_polling() {
    let Some(sim) = sim(BOTH_ARCHES[0], Level::L7_2) else { return };
    let kvm = sim.kvm();
    let vm = Vm::new(sim.create_vm(&kvm), &VmOptions::new().arch(sim.arch)).unwrap();
    let (fetches, by_vcpu) = (counters(NPAGES), Arc::new(AtomicU32::new(0)));
    vm.set_handlers(counting_handlers(&fetches, &by_vcpu)).unwrap();
    let ps = memfault::page_size();
    let len = (NPAGES * ps) as usize;
    // SAFETY: a NUL-terminated name; the fd is fresh.
    let memfd = unsafe { OwnedFd::from_raw_fd(memfd_create(c"memfault-rs".as_ptr(), 1 /* MFD_CLOEXEC */)) };
    assert!(memfd.as_raw_fd() >= 0);
    std::fs::File::from(memfd.try_clone().unwrap()).set_len(len as u64).unwrap();
    let ram = GuestMemory::map_shared(memfd.as_fd(), len, 0).unwrap();
    let alias = GuestMemory::map_shared(memfd.as_fd(), len, 0).unwrap();
    let region = vm.add_region(1, RAM_GPA, &ram, &RegionOptions::new().missing()).unwrap();
    let Some(uffd) = new_uffd(&vm, &UffdOptions::new()) else { return };
    match uffd.register(&region, UffdMode::Minor(&alias)) {
        Ok(()) => {}
        Err(Errno::EOPNOTSUPP) => panic!("this kernel has no UFFD_FEATURE_MINOR_SHMEM (Linux 5.14)"),
        Err(e) => panic!("register: {e}"),
    }
    std::thread::scope(|s| {
        let host = s.spawn(|| {
            for p in [3u64, 1, 3, 30] {
                let mut b = [0u8];
                ram.read((p * ps) as usize, &mut b).unwrap();
                assert_eq!(b[0], pattern(p));
            }
        });
        // the VMM's event loop: poll(2) would wait for POLLIN on uffd.as_fd()
        let mut handled = 0;
        while !host.is_finished() {
            handled += uffd.service(16).unwrap();
            std::thread::yield_now();
        }
        host.join().unwrap();
        assert!(handled >= 3);
    });
    let s = uffd.stats().unwrap(); // served in this thread: no lag
    assert_eq!((s.page_ins, s.errors), (3, 0));
    assert_eq!(region.count_missing().unwrap(), NPAGES - 3);
    assert_eq!(fetches[3].load(Ordering::Relaxed), 1);
    assert_eq!(uffd.service(1), Ok(0));
    assert_eq!(uffd.service(0), Err(Errno::EINVAL));
}
