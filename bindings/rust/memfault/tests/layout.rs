// SPDX-License-Identifier: MIT
//! The layouts and constants this crate hard-codes, against the C
//! compiler's: the layout-dump helper meson builds from the header
//! ($MEMFAULT_LAYOUT_DUMP; skipped when unset, unless MEMFAULT_REQUIRE_SIM=1).

mod common;

use std::collections::HashMap;
use std::mem::size_of;

use memfault::{exit_reason, kvm_run_offsets as off, sys, Errno, KVM_RUN_SIZE};

struct Dump {
    sizes: HashMap<String, usize>,
    fields: HashMap<(String, String), (usize, usize)>,
    consts: HashMap<String, i64>,
}

fn dump() -> Option<Dump> {
    let Some(exe) = std::env::var_os("MEMFAULT_LAYOUT_DUMP") else {
        // the tests calling this are #[ignore]d: asked for, they must run
        panic!("MEMFAULT_LAYOUT_DUMP is not set (meson sets it to the layout-dump helper it builds)");
    };
    // a plain C program: without the simulator or a sanitizer runtime preloaded
    let out = std::process::Command::new(exe).env_remove("LD_PRELOAD").output().expect("run the layout dump");
    assert!(out.status.success());
    let mut d = Dump { sizes: HashMap::new(), fields: HashMap::new(), consts: HashMap::new() };
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w[0] {
            "size" => {
                d.sizes.insert(w[1].into(), w[2].parse().unwrap());
            }
            "field" => {
                d.fields.insert((w[1].into(), w[2].into()), (w[3].parse().unwrap(), w[4].parse().unwrap()));
            }
            "const" => {
                d.consts.insert(w[1].into(), w[2].parse().unwrap());
            }
            _ => panic!("bad line {line}"),
        }
    }
    Some(d)
}

#[test]
#[ignore = "needs MEMFAULT_LAYOUT_DUMP (the C layout dump meson builds): run by meson, or set it and cargo test -- --include-ignored"]
fn every_c_struct_has_the_same_size_in_memfault_sys() {
    let Some(d) = dump() else { return };
    let ours: HashMap<&str, usize> = HashMap::from([
        ("memfault_vm_opts", size_of::<sys::memfault_vm_opts>()),
        ("memfault_features", size_of::<sys::memfault_features>()),
        ("memfault_vcpu_opts", size_of::<sys::memfault_vcpu_opts>()),
        ("memfault_fault", size_of::<sys::memfault_fault>()),
        ("memfault_region_opts", size_of::<sys::memfault_region_opts>()),
        ("memfault_region_info", size_of::<sys::memfault_region_info>()),
        ("memfault_handlers", size_of::<sys::memfault_handlers>()),
        ("memfault_vcpu_stats", size_of::<sys::memfault_vcpu_stats>()),
        ("memfault_uffd_opts", size_of::<sys::memfault_uffd_opts>()),
        ("memfault_uffd_stats", size_of::<sys::memfault_uffd_stats>()),
    ]);
    let c: HashMap<&str, usize> =
        d.sizes.iter().filter(|(k, _)| k.starts_with("memfault_")).map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(ours, c, "a struct of the header is missing here, or differs");
}

#[test]
#[ignore = "needs MEMFAULT_LAYOUT_DUMP (the C layout dump meson builds): run by meson, or set it and cargo test -- --include-ignored"]
fn kvm_run_fields_and_constants() {
    let Some(d) = dump() else { return };
    assert_eq!(d.sizes["kvm_run"], KVM_RUN_SIZE);
    let f = |m: &str| d.fields[&("kvm_run".to_string(), m.to_string())].0;
    assert_eq!(f("immediate_exit"), off::IMMEDIATE_EXIT);
    assert_eq!(f("exit_reason"), off::EXIT_REASON);
    assert_eq!(f("mmio.phys_addr"), off::MMIO_PHYS_ADDR);
    assert_eq!(f("mmio.data"), off::MMIO_DATA);
    assert_eq!(f("mmio.len"), off::MMIO_LEN);
    assert_eq!(f("mmio.is_write"), off::MMIO_IS_WRITE);
    assert_eq!(f("io.direction"), off::IO_DIRECTION);
    assert_eq!(f("io.size"), off::IO_SIZE);
    assert_eq!(f("io.port"), off::IO_PORT);
    assert_eq!(f("io.count"), off::IO_COUNT);
    assert_eq!(f("io.data_offset"), off::IO_DATA_OFFSET);
    assert_eq!(f("memory_fault.flags"), off::MEMORY_FAULT_FLAGS);
    assert_eq!(f("memory_fault.gpa"), off::MEMORY_FAULT_GPA);
    assert_eq!(f("memory_fault.size"), off::MEMORY_FAULT_SIZE);
    let c = |n: &str| d.consts[n];
    for (name, v) in [
        ("KVM_EXIT_UNKNOWN", exit_reason::UNKNOWN),
        ("KVM_EXIT_EXCEPTION", exit_reason::EXCEPTION),
        ("KVM_EXIT_IO", exit_reason::IO),
        ("KVM_EXIT_HYPERCALL", exit_reason::HYPERCALL),
        ("KVM_EXIT_DEBUG", exit_reason::DEBUG),
        ("KVM_EXIT_HLT", exit_reason::HLT),
        ("KVM_EXIT_MMIO", exit_reason::MMIO),
        ("KVM_EXIT_IRQ_WINDOW_OPEN", exit_reason::IRQ_WINDOW_OPEN),
        ("KVM_EXIT_SHUTDOWN", exit_reason::SHUTDOWN),
        ("KVM_EXIT_FAIL_ENTRY", exit_reason::FAIL_ENTRY),
        ("KVM_EXIT_INTR", exit_reason::INTR),
        ("KVM_EXIT_INTERNAL_ERROR", exit_reason::INTERNAL_ERROR),
        ("KVM_EXIT_SYSTEM_EVENT", exit_reason::SYSTEM_EVENT),
        ("KVM_EXIT_MEMORY_FAULT", exit_reason::MEMORY_FAULT),
    ] {
        assert_eq!(c(name), i64::from(v), "{name}");
    }
    assert_eq!(c("KVM_CREATE_VM"), common::KVM_CREATE_VM as i64);
    assert_eq!(c("KVM_CHECK_EXTENSION"), common::KVM_CHECK_EXTENSION as i64);
    assert_eq!(c("KVM_CREATE_VCPU"), common::KVM_CREATE_VCPU as i64);
    assert_eq!(c("KVM_SET_USER_MEMORY_REGION2"), common::KVM_SET_USER_MEMORY_REGION2 as i64);
    assert_eq!(c("KVM_CREATE_GUEST_MEMFD"), common::KVM_CREATE_GUEST_MEMFD as i64);
    assert_eq!(c("KVM_CAP_GUEST_MEMFD_FLAGS"), common::KVM_CAP_GUEST_MEMFD_FLAGS as i64);
    assert_eq!(c("KVM_MEM_GUEST_MEMFD"), i64::from(common::KVM_MEM_GUEST_MEMFD));
    assert_eq!(c("GUEST_MEMFD_FLAG_MMAP"), common::GUEST_MEMFD_FLAG_MMAP as i64);
    assert_eq!(d.sizes["kvm_userspace_memory_region2"], 160);
    assert_eq!(d.sizes["kvm_create_guest_memfd"], 64);
}

#[test]
#[ignore = "needs MEMFAULT_LAYOUT_DUMP (the C layout dump meson builds): run by meson, or set it and cargo test -- --include-ignored"]
fn errno_values() {
    let Some(d) = dump() else { return };
    let mut n = 0;
    for (name, v) in &d.consts {
        if let Some(e) = name.strip_prefix('E').and(Errno::new(*v as i32)) {
            if e.name() == Some(name.as_str()) {
                n += 1;
            } else {
                panic!("{name} = {v} in C, but this crate names {v} {:?}", e.name());
            }
        }
    }
    assert_eq!(n, d.consts.keys().filter(|k| k.starts_with('E')).count());
    assert!(n >= 20);
}
