// SPDX-License-Identifier: MIT
//! kvm-ioctls-bench: the kvm-ioctls side of the peer comparison
//! (bench/peers/README.md). The same KVM simulator scenarios as
//! bench/peers/peer-scenarios.c, classified by kvm-ioctls' `VcpuFd::run()`,
//! and the same per-exit loops for callgrind.
//!
//! Runs under LD_PRELOAD=<build>/tests/sim/libkvmsim.so; the simulator's
//! control calls (kvmsim_vcpu_set_script_text, kvmsim_poison,
//! kvmsim_inject_gmem_error) are C functions of the preloaded library,
//! found with dlsym() and called through `extern "C"` function pointers.
//!
//!   kvm-ioctls-bench scenario NAME
//!   kvm-ioctls-bench bench mmio|fault raw|lib N
//!   kvm-ioctls-bench real io raw|lib N      the host's /dev/kvm, no
//!                                           simulator (x86-64): N runs of
//!                                           the `out` guest, for callgrind
//!   kvm-ioctls-bench real-time BLOCK TRIALS wall clock on /dev/kvm: TRIALS
//!                                           pairs of BLOCK runs of each loop,
//!                                           order alternating, as
//!                                           `kvm-run-bench time` does for
//!                                           libmemfault
//!
//! "lib" is `VcpuFd::run()`; "raw" is `libc::ioctl(KVM_RUN)` on the same fd
//! plus the check every VMM makes, as in the C program.
use std::ffi::CStr;
use std::os::unix::io::{AsRawFd, RawFd};
use std::process::exit;

use kvm_bindings::{
    kvm_create_guest_memfd, kvm_run, kvm_userspace_memory_region2, KVM_EXIT_HLT, KVM_EXIT_INTR,
    KVM_EXIT_IO, KVM_EXIT_MEMORY_FAULT, KVM_EXIT_MMIO, KVM_EXIT_SHUTDOWN, KVM_EXIT_SYSTEM_EVENT,
    KVM_EXIT_UNKNOWN, KVM_MEM_GUEST_MEMFD,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};

const GPA: u64 = 0x100000;
const MMIO_GPA: u64 = 0x1000_0000;
/* Linux 6.18 uapi, newer than kvm-bindings 0.14 */
const GUEST_MEMFD_FLAG_MMAP: u64 = 1 << 0;
const GUEST_MEMFD_FLAG_INIT_SHARED: u64 = 1 << 1;
/* _IO(KVMIO, 0x80) */
const KVM_RUN: libc::c_ulong = 0xae80;

type SetScriptText = unsafe extern "C" fn(libc::c_int, *const libc::c_char) -> libc::c_int;
type Poison = unsafe extern "C" fn(libc::c_int, u64) -> libc::c_int;
type InjectGmemError =
    unsafe extern "C" fn(libc::c_int, u64, libc::c_int, libc::c_uint) -> libc::c_int;

struct Sim {
    set_script_text: SetScriptText,
    poison: Poison,
    inject_gmem_error: InjectGmemError,
}

fn fatal(what: &str) -> ! {
    println!("{{\"side\":\"kvm-ioctls\",\"fatal\":\"{}\"}}", what);
    exit(2);
}

fn sim_sym(name: &CStr) -> *mut libc::c_void {
    // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches the
    // preloaded simulator too.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    if p.is_null() {
        fatal(&format!(
            "{} not found: run under LD_PRELOAD=libkvmsim.so",
            name.to_string_lossy()
        ));
    }
    p
}

impl Sim {
    fn new() -> Sim {
        // SAFETY: the symbols are the simulator's C functions with these
        // prototypes (tests/sim/kvmsim.h).
        unsafe {
            Sim {
                set_script_text: std::mem::transmute::<*mut libc::c_void, SetScriptText>(sim_sym(
                    c"kvmsim_vcpu_set_script_text",
                )),
                poison: std::mem::transmute::<*mut libc::c_void, Poison>(sim_sym(c"kvmsim_poison")),
                inject_gmem_error: std::mem::transmute::<*mut libc::c_void, InjectGmemError>(
                    sim_sym(c"kvmsim_inject_gmem_error"),
                ),
            }
        }
    }

    fn script(&self, vcpu: &VcpuFd, text: &str) {
        let t = std::ffi::CString::new(text).unwrap();
        // SAFETY: a C string and a simulated vCPU fd.
        let r = unsafe { (self.set_script_text)(vcpu.as_raw_fd(), t.as_ptr()) };
        if r != 0 {
            fatal(&format!("kvmsim_vcpu_set_script_text: {}", r));
        }
    }
}

struct Vm {
    _kvm: Kvm,
    vm: VmFd,
    vcpu: VcpuFd,
    page_size: u64,
    gmem_fd: RawFd,
    gmem_map: *mut libc::c_void,
}

fn vm_create() -> Vm {
    let kvm = Kvm::new().unwrap_or_else(|e| fatal(&format!("open /dev/kvm: errno {}", e.errno())));
    let vm = kvm
        .create_vm()
        .unwrap_or_else(|e| fatal(&format!("create_vm: errno {}", e.errno())));
    let vcpu = vm
        .create_vcpu(0)
        .unwrap_or_else(|e| fatal(&format!("create_vcpu: errno {}", e.errno())));
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    Vm {
        _kvm: kvm,
        vm,
        vcpu,
        page_size,
        gmem_fd: -1,
        gmem_map: std::ptr::null_mut(),
    }
}

fn region2(slot_flags: u32, size: u64, hva: u64, gmem_fd: RawFd) -> kvm_userspace_memory_region2 {
    kvm_userspace_memory_region2 {
        slot: 1,
        flags: slot_flags,
        guest_phys_addr: GPA,
        memory_size: size,
        userspace_addr: hva,
        guest_memfd_offset: 0,
        guest_memfd: gmem_fd as u32,
        pad1: 0,
        pad2: [0; 14],
    }
}

impl Vm {
    /// Slot 1: a guest_memfd (MMAP | INIT_SHARED) of one host page at GPA.
    fn gmem_slot(&mut self) {
        let cg = kvm_create_guest_memfd {
            size: self.page_size,
            flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED,
            reserved: [0; 6],
        };
        self.gmem_fd = self
            .vm
            .create_guest_memfd(cg)
            .unwrap_or_else(|e| fatal(&format!("create_guest_memfd: errno {}", e.errno())));
        // SAFETY: a shared mapping of the guest_memfd, checked below.
        self.gmem_map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                self.page_size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.gmem_fd,
                0,
            )
        };
        if self.gmem_map == libc::MAP_FAILED {
            fatal("mmap(guest_memfd)");
        }
        let r = region2(
            KVM_MEM_GUEST_MEMFD,
            self.page_size,
            self.gmem_map as u64,
            self.gmem_fd,
        );
        // SAFETY: the mapping lives as long as the slot (or the slot is
        // unbound first, see gmem_close()).
        unsafe { self.vm.set_user_memory_region2(r) }
            .unwrap_or_else(|e| fatal(&format!("set_user_memory_region2: errno {}", e.errno())));
    }

    fn gmem_close(&mut self) {
        // SAFETY: the mapping and fd made by gmem_slot().
        unsafe {
            libc::munmap(self.gmem_map, self.page_size as usize);
            libc::close(self.gmem_fd);
        }
        self.gmem_fd = -1;
        self.gmem_map = std::ptr::null_mut();
    }

    /// Slot 1: normal memory that cannot be mapped (PROT_NONE).
    fn bad_slot(&mut self) {
        // SAFETY: an anonymous PROT_NONE mapping, never unmapped.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                self.page_size as usize,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            fatal("mmap");
        }
        // SAFETY: the mapping is never unmapped.
        unsafe {
            self.vm
                .set_user_memory_region2(region2(0, self.page_size, p as u64, -1))
        }
        .unwrap_or_else(|e| fatal(&format!("set_user_memory_region2: errno {}", e.errno())));
    }

    fn delete_slot(&mut self) {
        // SAFETY: deleting a slot.
        unsafe { self.vm.set_user_memory_region2(region2(0, 0, 0, -1)) }.unwrap_or_else(|e| {
            fatal(&format!(
                "set_user_memory_region2(delete): errno {}",
                e.errno()
            ))
        });
    }
}

fn errno_name(e: i32) -> &'static str {
    match e {
        0 => "none",
        libc::EFAULT => "EFAULT",
        libc::EHWPOISON => "EHWPOISON",
        libc::ENOMEM => "ENOMEM",
        libc::EIO => "EIO",
        libc::EINTR => "EINTR",
        libc::EAGAIN => "EAGAIN",
        libc::EINVAL => "EINVAL",
        _ => "other",
    }
}

fn exit_name(r: u32) -> &'static str {
    match r {
        KVM_EXIT_UNKNOWN => "UNKNOWN",
        KVM_EXIT_IO => "IO",
        KVM_EXIT_HLT => "HLT",
        KVM_EXIT_MMIO => "MMIO",
        KVM_EXIT_SHUTDOWN => "SHUTDOWN",
        KVM_EXIT_INTR => "INTR",
        KVM_EXIT_SYSTEM_EVENT => "SYSTEM_EVENT",
        KVM_EXIT_MEMORY_FAULT => "MEMORY_FAULT",
        _ => "other",
    }
}

/// One `VcpuFd::run()`, as one JSON line, classified as a kvm-ioctls user
/// would: Ok(exit) is an exit (MemoryFault a fault, Unsupported(r) an exit
/// the crate does not know), Err(EINTR) an interruption, Err(EAGAIN) a
/// retry, any other Err an error.
fn report(v: &mut Vm, scen: &str) {
    let (kind, detail, api) = match v.vcpu.run() {
        Ok(VcpuExit::MemoryFault { flags, gpa, size }) => (
            "fault",
            // kvm-ioctls does not say which errno came with the fault
            format!(
                ",\"gpa\":\"0x{:x}\",\"size\":\"0x{:x}\",\"error\":\"unreported\",\"kernel_flags\":\"0x{:x}\"",
                gpa, size, flags
            ),
            "Ok(MemoryFault)".to_string(),
        ),
        Ok(VcpuExit::MmioWrite(..)) | Ok(VcpuExit::MmioRead(..)) => {
            ("exit", ",\"exit\":\"MMIO\"".to_string(), "Ok(Mmio*)".to_string())
        }
        Ok(VcpuExit::Unsupported(r)) => (
            "unsupported",
            format!(",\"exit\":\"{}\"", exit_name(r)),
            format!("Ok(Unsupported({}))", r),
        ),
        Ok(e) => ("exit", format!(",\"exit\":\"{:?}\"", e), format!("Ok({:?})", e)),
        Err(e) if e.errno() == libc::EINTR => ("interrupted", String::new(), "Err(EINTR)".to_string()),
        Err(e) if e.errno() == libc::EAGAIN => ("retry", String::new(), "Err(EAGAIN)".to_string()),
        Err(e) => (
            "error",
            format!(",\"error\":\"{}\"", errno_name(e.errno())),
            format!("Err({})", errno_name(e.errno())),
        ),
    };
    let after = v.vcpu.get_kvm_run().exit_reason;
    println!(
        "{{\"side\":\"kvm-ioctls\",\"scenario\":\"{}\",\"kind\":\"{}\"{},\"api\":\"VcpuFd::run() = {}\",\"exit_reason_after\":{}}}",
        scen, kind, detail, api, after
    );
}

fn run_scenario(sim: &Sim, scen: &str) -> i32 {
    let mut v = vm_create();
    let load = format!("load:{:#x}:1", GPA);
    match scen {
        "mmio" => sim.script(&v.vcpu, &format!("mmio_write:{:#x}:4:0x42", MMIO_GPA)),
        "gmem-efault" | "stale-ie" | "bare-efault-stale" => {
            v.gmem_slot();
            v.gmem_close();
            sim.script(&v.vcpu, &load);
        }
        "gmem-hwpoison" => {
            v.gmem_slot();
            // SAFETY: a simulated VM fd.
            if unsafe { (sim.poison)(v.vm.as_raw_fd(), GPA) } != 0 {
                fatal("kvmsim_poison");
            }
            sim.script(&v.vcpu, &load);
        }
        "gmem-enomem" | "gmem-eio" | "vncr-ret0" => {
            v.gmem_slot();
            let err = if scen == "gmem-eio" {
                libc::EIO
            } else {
                libc::ENOMEM
            };
            // SAFETY: a simulated VM fd.
            if unsafe { (sim.inject_gmem_error)(v.vm.as_raw_fd(), GPA, err, 1) } != 0 {
                fatal("kvmsim_inject_gmem_error");
            }
            if scen == "vncr-ret0" {
                sim.script(&v.vcpu, &format!("load:{:#x}:4:vncr", GPA));
            } else {
                sim.script(&v.vcpu, &load);
            }
        }
        "bare-efault" => {
            v.bad_slot();
            sim.script(&v.vcpu, &load);
        }
        _ => {
            eprintln!("unknown scenario {}", scen);
            return 2;
        }
    }
    if scen == "stale-ie" || scen == "bare-efault-stale" {
        // the memory fault first
        match v.vcpu.run() {
            Ok(VcpuExit::MemoryFault { .. }) => {}
            _ => fatal("first run: no MemoryFault"),
        }
        if scen == "stale-ie" {
            v.vcpu.set_kvm_immediate_exit(1);
        } else {
            v.delete_slot();
            v.bad_slot();
        }
    }
    report(&mut v, scen);
    0
}

/// The per-exit loops; inline(never) keeps the symbol for callgrind's
/// --toggle-collect.
#[inline(never)]
fn bench_loop(vcpu: &mut VcpuFd, run: *const kvm_run, lib: bool, fault: bool, n: u64) -> u64 {
    let mut good = 0u64;
    let mut sink = 0u64;
    let fd = vcpu.as_raw_fd();
    match (lib, fault) {
        (true, false) => {
            for _ in 0..n {
                if let Ok(VcpuExit::MmioWrite(..)) = vcpu.run() {
                    good += 1;
                }
            }
        }
        (true, true) => {
            for _ in 0..n {
                if let Ok(VcpuExit::MemoryFault { flags, gpa, size }) = vcpu.run() {
                    sink = sink
                        .wrapping_add(flags)
                        .wrapping_add(gpa)
                        .wrapping_add(size);
                    good += 1;
                }
            }
        }
        (false, false) => {
            for _ in 0..n {
                // SAFETY: KVM_RUN on a vCPU fd; run is its kvm_run mapping.
                let r = unsafe { libc::ioctl(fd, KVM_RUN, 0) };
                if r == 0
                    && unsafe { std::ptr::read_volatile(&(*run).exit_reason) }
                        != KVM_EXIT_MEMORY_FAULT
                {
                    good += 1;
                }
            }
        }
        (false, true) => {
            for _ in 0..n {
                // SAFETY: as above.
                let r = unsafe { libc::ioctl(fd, KVM_RUN, 0) };
                let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                // SAFETY: the exit_reason says memory_fault is the union member.
                unsafe {
                    if r == -1
                        && (e == libc::EFAULT || e == libc::EHWPOISON)
                        && std::ptr::read_volatile(&(*run).exit_reason) == KVM_EXIT_MEMORY_FAULT
                    {
                        let f = std::ptr::read_volatile(&(*run).__bindgen_anon_1.memory_fault);
                        sink = sink
                            .wrapping_add(f.flags)
                            .wrapping_add(f.gpa)
                            .wrapping_add(f.size);
                        good += 1;
                    }
                }
            }
        }
    }
    std::hint::black_box(sink);
    good
}

fn run_bench(sim: &Sim, kind: &str, loop_: &str, n: u64) -> i32 {
    let fault = kind == "fault";
    let lib = loop_ == "lib";
    if (!fault && kind != "mmio") || (!lib && loop_ != "raw") || n < 1 {
        return 2;
    }
    let mut v = vm_create();
    if fault {
        v.gmem_slot();
        v.gmem_close();
        sim.script(&v.vcpu, &format!("load:{:#x}:1", GPA));
    } else {
        // n + 1 MMIO writes: every measured run is an MMIO exit
        let step = format!("mmio_write:{:#x}:4:0x42;", MMIO_GPA);
        sim.script(&v.vcpu, &step.repeat(n as usize + 1));
    }
    // one run outside the measurement: the loops start in steady state
    let _ = v.vcpu.run();
    let run: *const kvm_run = v.vcpu.get_kvm_run();
    let good = bench_loop(&mut v.vcpu, run, lib, fault, n);
    println!(
        "{{\"side\":\"kvm-ioctls\",\"loop\":\"{}\",\"exit\":\"{}\",\"runs\":{},\"good\":{}}}",
        loop_, kind, n, good
    );
    if good == n {
        0
    } else {
        1
    }
}

/// The host's /dev/kvm, as bench/kvm-run-bench.c's "io" guest: 16-bit real
/// mode, CS = DS = 0, `mov $0x3f8, %dx; 1: out %al, %dx; jmp 1b` at 0x1000,
/// so every KVM_RUN returns with the same KVM_EXIT_IO.
#[cfg(target_arch = "x86_64")]
fn real_vm() -> Vm {
    let v = vm_create();
    let size = 0x10000usize;
    // SAFETY: an anonymous private mapping; nothing else uses the range.
    let mem = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if mem == libc::MAP_FAILED {
        fatal("mmap");
    }
    let code: [u8; 6] = [0xba, 0xf8, 0x03, 0xee, 0xeb, 0xfd];
    // SAFETY: 0x1000 + 6 bytes lie inside the 64 KiB mapping.
    unsafe {
        std::ptr::copy_nonoverlapping(code.as_ptr(), (mem as *mut u8).add(0x1000), code.len());
    }
    let r = kvm_bindings::kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: size as u64,
        userspace_addr: mem as u64,
    };
    // SAFETY: the mapping lives as long as the process (never unmapped).
    unsafe { v.vm.set_user_memory_region(r) }
        .unwrap_or_else(|e| fatal(&format!("set_user_memory_region: errno {}", e.errno())));
    let mut sr = v
        .vcpu
        .get_sregs()
        .unwrap_or_else(|e| fatal(&format!("get_sregs: errno {}", e.errno())));
    for seg in [&mut sr.cs, &mut sr.ds, &mut sr.es, &mut sr.ss] {
        seg.base = 0;
        seg.selector = 0;
    }
    v.vcpu
        .set_sregs(&sr)
        .unwrap_or_else(|e| fatal(&format!("set_sregs: errno {}", e.errno())));
    let regs = kvm_bindings::kvm_regs {
        rip: 0x1000,
        rflags: 2,
        rsp: 0x8000,
        ..Default::default()
    };
    v.vcpu
        .set_regs(&regs)
        .unwrap_or_else(|e| fatal(&format!("set_regs: errno {}", e.errno())));
    v
}

/// The IO-exit loops on the host's /dev/kvm; the raw one makes the check of
/// the C program's raw loop (bench/kvm-run-bench.c).
#[inline(never)]
fn bench_loop_io(vcpu: &mut VcpuFd, run: *const kvm_run, lib: bool, n: u64) -> u64 {
    let mut good = 0u64;
    let fd = vcpu.as_raw_fd();
    if lib {
        for _ in 0..n {
            if let Ok(VcpuExit::IoOut(..)) = vcpu.run() {
                good += 1;
            }
        }
    } else {
        for _ in 0..n {
            // SAFETY: KVM_RUN on a vCPU fd; run is its kvm_run mapping.
            let r = unsafe { libc::ioctl(fd, KVM_RUN, 0) };
            if r == 0
                && unsafe { std::ptr::read_volatile(&(*run).exit_reason) } != KVM_EXIT_MEMORY_FAULT
            {
                good += 1;
            }
        }
    }
    good
}

#[cfg(target_arch = "x86_64")]
fn run_real(loop_: &str, n: u64) -> i32 {
    let lib = loop_ == "lib";
    if (!lib && loop_ != "raw") || n < 1 {
        return 2;
    }
    let mut v = real_vm();
    let _ = v.vcpu.run();
    let run: *const kvm_run = v.vcpu.get_kvm_run();
    let good = bench_loop_io(&mut v.vcpu, run, lib, n);
    println!(
        "{{\"side\":\"kvm-ioctls\",\"backend\":\"/dev/kvm\",\"loop\":\"{}\",\"exit\":\"io\",\"runs\":{},\"good\":{}}}",
        loop_, n, good
    );
    if good == n {
        0
    } else {
        1
    }
}

fn ns() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as f64 * 1e9 + t.tv_nsec as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(target_arch = "x86_64")]
fn run_real_time(block: u64, trials: usize) -> i32 {
    if block < 1 || trials < 1 {
        return 2;
    }
    let mut v = real_vm();
    let _ = v.vcpu.run();
    let run: *const kvm_run = v.vcpu.get_kvm_run();
    let (mut raw, mut lib, mut pair) = (Vec::new(), Vec::new(), Vec::new());
    for t in 0..trials {
        let mut one = |is_lib: bool| {
            let t0 = ns();
            let good = bench_loop_io(&mut v.vcpu, run, is_lib, block);
            if good != block {
                fatal("an exit that was not KVM_EXIT_IO");
            }
            (ns() - t0) / block as f64
        };
        let (r, l) = if t % 2 == 1 {
            let l = one(true);
            (one(false), l)
        } else {
            let r = one(false);
            (r, one(true))
        };
        raw.push(r);
        lib.push(l);
        pair.push(l / r);
    }
    let pm = median(&mut pair);
    println!(
        "{{\"side\":\"kvm-ioctls\",\"backend\":\"/dev/kvm\",\"exit\":\"io\",\"block\":{},\"trials\":{},\"raw_ns_per_exit\":{:.1},\"lib_ns_per_exit\":{:.1},\"ratio\":{:.4},\"ratio_p25\":{:.4},\"ratio_p75\":{:.4}}}",
        block,
        trials,
        median(&mut raw),
        median(&mut lib),
        pm,
        pair[trials / 4],
        pair[(3 * trials) / 4]
    );
    0
}

#[cfg(not(target_arch = "x86_64"))]
fn run_real(_: &str, _: u64) -> i32 {
    println!("{{\"skip\":\"the real /dev/kvm guest is x86-64 only\"}}");
    77
}

#[cfg(not(target_arch = "x86_64"))]
fn run_real_time(_: u64, _: usize) -> i32 {
    run_real("", 0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rc = match args.len() {
        3 if args[1] == "scenario" => run_scenario(&Sim::new(), &args[2]),
        5 if args[1] == "bench" => {
            run_bench(&Sim::new(), &args[2], &args[3], args[4].parse().unwrap_or(0))
        }
        5 if args[1] == "real" && args[2] == "io" => {
            run_real(&args[3], args[4].parse().unwrap_or(0))
        }
        4 if args[1] == "real-time" => {
            run_real_time(args[2].parse().unwrap_or(0), args[3].parse().unwrap_or(0))
        }
        _ => {
            eprintln!(
                "usage: kvm-ioctls-bench scenario NAME | bench mmio|fault raw|lib N | real io raw|lib N | real-time BLOCK TRIALS"
            );
            2
        }
    };
    exit(rc);
}
