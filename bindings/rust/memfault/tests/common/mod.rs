// SPDX-License-Identifier: MIT
//! Test helpers: the KVM simulator (tests/sim/kvmsim.h) through LD_PRELOAD,
//! and the raw KVM ioctls a VMM makes itself.
//!
//! The tests run on the simulator only, so that they are deterministic even
//! where /dev/kvm exists. `kvmsim-runner.sh` (the cargo runner configured in
//! bindings/rust/.cargo/config.toml) preloads it; without it the scenario
//! tests are #[ignore]d: run them with `-- --include-ignored` (meson does), and they fail without it.
#![allow(dead_code)]

use std::ffi::{c_char, c_int, c_ulong, c_void, CString};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard, OnceLock};

use memfault::{Arch, Errno};

extern "C" {
    fn ioctl(fd: c_int, request: c_ulong, ...) -> c_int;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

pub const MMIO_GPA: u64 = 0x1000_0000;
pub const RAM_GPA: u64 = 0x2000_0000;
pub const GMEM_GPA: u64 = 0x3000_0000;

pub const KVM_CREATE_VM: c_ulong = 0xae01;
pub const KVM_CHECK_EXTENSION: c_ulong = 0xae03;
pub const KVM_CREATE_VCPU: c_ulong = 0xae41;
pub const KVM_SET_USER_MEMORY_REGION2: c_ulong = 0x40a0_ae49;
pub const KVM_CREATE_GUEST_MEMFD: c_ulong = 0xc040_aed4;
pub const KVM_CAP_GUEST_MEMFD_FLAGS: c_ulong = 244;
pub const KVM_MEM_GUEST_MEMFD: u32 = 1 << 2;
pub const GUEST_MEMFD_FLAG_MMAP: u64 = 1 << 0;

/// Simulated kernel levels (enum kvmsim_level).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    L6_1 = 601,
    L6_8 = 608,
    L7_2 = 702,
    L7_2Uf = 703,
}

#[repr(C)]
struct KvmsimConfig {
    arch: u32,
    level: u32,
    quirks: u64,
}

type ResetFn = unsafe extern "C" fn(*const KvmsimConfig) -> c_int;
type QuirksFn = unsafe extern "C" fn(u32, u32) -> u64;
type ScriptFn = unsafe extern "C" fn(c_int, *const c_char) -> c_int;
type StateFn = unsafe extern "C" fn(c_int, *mut u64, *mut usize) -> c_int;
type PoisonFn = unsafe extern "C" fn(c_int, u64) -> c_int;
type InjectFn = unsafe extern "C" fn(c_int, u64, c_int, u32) -> c_int;

struct SimFns {
    reset: ResetFn,
    default_quirks: QuirksFn,
    set_script_text: ScriptFn,
    get_state: StateFn,
    poison: PoisonFn,
    inject_gmem_error: InjectFn,
}

fn sym(name: &str) -> Option<*mut c_void> {
    let c = CString::new(name).unwrap();
    // SAFETY: RTLD_DEFAULT (NULL) and a NUL-terminated name.
    let p = unsafe { dlsym(std::ptr::null_mut(), c.as_ptr()) };
    (!p.is_null()).then_some(p)
}

macro_rules! load {
    ($name:literal, $ty:ty) => {
        // SAFETY: the kvmsim.h prototype of the symbol.
        unsafe { std::mem::transmute::<*mut c_void, $ty>(sym($name)?) }
    };
}

fn fns() -> Option<&'static SimFns> {
    static FNS: OnceLock<Option<SimFns>> = OnceLock::new();
    FNS.get_or_init(|| {
        Some(SimFns {
            reset: load!("kvmsim_reset", ResetFn),
            default_quirks: load!("kvmsim_default_quirks", QuirksFn),
            set_script_text: load!("kvmsim_vcpu_set_script_text", ScriptFn),
            get_state: load!("kvmsim_vcpu_get_state", StateFn),
            poison: load!("kvmsim_poison", PoisonFn),
            inject_gmem_error: load!("kvmsim_inject_gmem_error", InjectFn),
        })
    })
    .as_ref()
}

/// The simulator, reset to one model; held for the whole test (the
/// simulator's state is global, so simulated tests run one at a time).
pub struct Sim {
    pub arch: Arch,
    pub level: Level,
    fns: &'static SimFns,
    _lock: MutexGuard<'static, ()>,
}

/// The simulator for `arch` and `level`. Every test that calls this is
/// `#[ignore]`d, so that a plain `cargo test` reports it as ignored, never as
/// passed; run with `-- --include-ignored`, it fails when the simulator is
/// not preloaded. (Always `Some`: the `Option` keeps the callers' shape.)
pub fn sim(arch: Arch, level: Level) -> Option<Sim> {
    static LOCK: Mutex<()> = Mutex::new(());
    let Some(fns) = fns() else {
        panic!(
            "the KVM simulator is not preloaded (LD_PRELOAD=<builddir>/tests/sim/libkvmsim.so, \
             or run through bindings/rust/kvmsim-runner.sh)"
        );
    };
    let lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let a = match arch {
        Arch::X86_64 => 1,
        Arch::Arm64 => 2,
        Arch::Host => panic!("pick an arch model"),
    };
    // SAFETY: kvmsim.h prototypes; no simulated vCPU runs (we hold the lock).
    let quirks = unsafe { (fns.default_quirks)(a, level as u32) };
    let cfg = KvmsimConfig { arch: a, level: level as u32, quirks };
    // SAFETY: as above.
    assert_eq!(unsafe { (fns.reset)(&cfg) }, 0);
    Some(Sim { arch, level, fns, _lock: lock })
}

pub const BOTH_ARCHES: [Arch; 2] = [Arch::X86_64, Arch::Arm64];

fn sys_ret(r: c_int) -> Result<c_int, Errno> {
    if r < 0 {
        Err(Errno::last_os_error())
    } else {
        Ok(r)
    }
}

impl Sim {
    /// /dev/kvm (simulated).
    pub fn kvm(&self) -> File {
        File::options().read(true).write(true).open("/dev/kvm").expect("open /dev/kvm")
    }

    pub fn create_vm(&self, kvm: &File) -> OwnedFd {
        // SAFETY: KVM_CREATE_VM takes an integer.
        let fd = sys_ret(unsafe { ioctl(kvm.as_raw_fd(), KVM_CREATE_VM, 0 as c_ulong) }).expect("KVM_CREATE_VM");
        // SAFETY: a fresh fd.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    pub fn create_vcpu(&self, vm_fd: RawFd, id: u64) -> OwnedFd {
        // SAFETY: KVM_CREATE_VCPU takes an integer.
        let fd = sys_ret(unsafe { ioctl(vm_fd, KVM_CREATE_VCPU, id as c_ulong) }).expect("KVM_CREATE_VCPU");
        // SAFETY: a fresh fd.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    pub fn check_extension(&self, vm_fd: RawFd, cap: c_ulong) -> i32 {
        // SAFETY: KVM_CHECK_EXTENSION takes an integer.
        unsafe { ioctl(vm_fd, KVM_CHECK_EXTENSION, cap) }
    }

    /// A guest_memfd of `size` bytes (mmap()able when the model allows it).
    pub fn create_gmem(&self, vm_fd: RawFd, size: u64) -> Result<OwnedFd, Errno> {
        let caps = self.check_extension(vm_fd, KVM_CAP_GUEST_MEMFD_FLAGS).max(0) as u64;
        let mut arg = [0u64; 8];
        arg[0] = size;
        arg[1] = caps & GUEST_MEMFD_FLAG_MMAP;
        // SAFETY: struct kvm_create_guest_memfd (64 bytes).
        let fd = sys_ret(unsafe { ioctl(vm_fd, KVM_CREATE_GUEST_MEMFD, arg.as_mut_ptr()) })?;
        // SAFETY: a fresh fd.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// KVM_SET_USER_MEMORY_REGION2 (struct kvm_userspace_memory_region2, 160 bytes).
    #[allow(clippy::too_many_arguments)]
    pub fn set_memslot2(
        &self,
        vm_fd: RawFd,
        slot: u32,
        flags: u32,
        gpa: u64,
        size: u64,
        hva: u64,
        gmem_fd: RawFd,
        gmem_offset: u64,
    ) -> Result<(), Errno> {
        #[repr(C)]
        struct Region2 {
            slot: u32,
            flags: u32,
            guest_phys_addr: u64,
            memory_size: u64,
            userspace_addr: u64,
            guest_memfd_offset: u64,
            guest_memfd: u32,
            pad1: u32,
            pad2: [u64; 14],
        }
        const _: () = assert!(std::mem::size_of::<Region2>() == 160);
        let r = Region2 {
            slot,
            flags,
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: hva,
            guest_memfd_offset: gmem_offset,
            guest_memfd: gmem_fd as u32,
            pad1: 0,
            pad2: [0; 14],
        };
        // SAFETY: the struct the ioctl number says.
        sys_ret(unsafe { ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION2, &r as *const Region2) }).map(|_| ())
    }

    pub fn script(&self, vcpu_fd: RawFd, text: &str) {
        let c = CString::new(text).unwrap();
        // SAFETY: kvmsim.h prototype.
        assert_eq!(unsafe { (self.fns.set_script_text)(vcpu_fd, c.as_ptr()) }, 0, "script {text}");
    }

    pub fn acc(&self, vcpu_fd: RawFd) -> u64 {
        let mut acc = 0u64;
        // SAFETY: kvmsim.h prototype.
        assert_eq!(unsafe { (self.fns.get_state)(vcpu_fd, &mut acc, std::ptr::null_mut()) }, 0);
        acc
    }

    pub fn poison(&self, vm_fd: RawFd, gpa: u64) {
        // SAFETY: kvmsim.h prototype.
        assert_eq!(unsafe { (self.fns.poison)(vm_fd, gpa) }, 0);
    }

    pub fn inject_gmem_error(&self, vm_fd: RawFd, gpa: u64, err: Errno, count: u32) {
        // SAFETY: kvmsim.h prototype.
        assert_eq!(unsafe { (self.fns.inject_gmem_error)(vm_fd, gpa, err.get(), count) }, 0);
    }

    /// The exit a finished script ends with on this arch model.
    pub fn end_exit(&self) -> u32 {
        match self.arch {
            Arch::X86_64 => memfault::exit_reason::SHUTDOWN,
            _ => memfault::exit_reason::SYSTEM_EVENT,
        }
    }
}
