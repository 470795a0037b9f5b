# SPDX-License-Identifier: MIT
"""The ctypes layouts and constants against the C compiler's (the
layout-dump helper meson builds from the header), and pinned sizes."""
import ctypes
import errno

import pytest

import memfault
from memfault import _ffi

# Pinned on x86-64 and arm64 (LP64); the C ABI tests pin the same values.
KNOWN_SIZES = {
    "memfault_vm_opts": 40,
    "memfault_features": 64,
    "memfault_vcpu_opts": 40,
    "memfault_fault": 64,
    "memfault_region_opts": 32,
    "memfault_region_info": 64,
    "memfault_handlers": 72,
    "memfault_vcpu_stats": 128,
    "memfault_uffd_opts": 24,
    "memfault_uffd_stats": 648,
}


@pytest.mark.parametrize("name", sorted(KNOWN_SIZES))
def test_known_sizes(name):
    assert ctypes.sizeof(_ffi.STRUCTS[name]) == KNOWN_SIZES[name]


def test_every_c_struct_has_a_ctypes_twin_with_the_same_layout(c_layout):
    sizes, fields, _ = c_layout
    c_structs = {s for s in sizes if s.startswith("memfault_")}
    assert c_structs == set(_ffi.STRUCTS), "structs missing from or extra in _ffi.STRUCTS"
    for name, cls in _ffi.STRUCTS.items():
        assert ctypes.sizeof(cls) == sizes[name], name
        c_fields = {m: v for (s, m), v in fields.items() if s == name}
        py_fields = {f: (getattr(cls, f).offset, getattr(cls, f).size) for f, _ in cls._fields_}
        assert py_fields == c_fields, name


def test_every_c_constant_is_in_the_bindings(c_layout):
    _, _, consts = c_layout
    c = {k: v for k, v in consts.items() if k.startswith("MEMFAULT_")}
    assert c == _ffi.CONSTANTS


def test_kvm_run_and_kvm_constants(c_layout):
    sizes, fields, consts = c_layout
    assert sizes["kvm_run"] == _ffi.KVM_RUN_SIZE
    head = _ffi.KvmRunHead
    u = head.u.offset
    ours = {
        "immediate_exit": (head.immediate_exit.offset, 1),
        "exit_reason": (head.exit_reason.offset, 4),
    }
    for part, cls in (("mmio", _ffi.KvmRunMmio), ("io", _ffi.KvmRunIo),
                      ("memory_fault", _ffi.KvmRunMemoryFault)):
        for f, _ in cls._fields_:
            ours[f"{part}.{f}"] = (u + getattr(cls, f).offset, getattr(cls, f).size)
    assert ours == {m: v for (s, m), v in fields.items() if s == "kvm_run"}
    for r in memfault.ExitReason:
        assert consts["KVM_EXIT_" + r.name] == r.value, r
    assert (consts["KVM_EXIT_IO_IN"], consts["KVM_EXIT_IO_OUT"]) == (memfault.Io.IN, memfault.Io.OUT)
    import kvmsim
    for name in ("KVM_CREATE_VM", "KVM_CHECK_EXTENSION", "KVM_CREATE_VCPU",
                 "KVM_SET_USER_MEMORY_REGION2", "KVM_CREATE_GUEST_MEMFD",
                 "KVM_CAP_GUEST_MEMFD_FLAGS", "KVM_MEM_GUEST_MEMFD", "GUEST_MEMFD_FLAG_MMAP"):
        assert getattr(kvmsim, name) == consts[name], name
    assert sizes["kvm_userspace_memory_region2"] == 160
    assert sizes["kvm_create_guest_memfd"] == 64


def test_errno_values_match_c(c_layout):
    _, _, consts = c_layout
    for name in ("EINVAL", "ENOENT", "EBUSY", "ECANCELED", "ENODATA", "ELOOP", "EPROTO"):
        assert getattr(errno, name) == consts[name], name
    assert memfault.EHWPOISON == consts["EHWPOISON"]


def test_function_table_is_the_map(c_layout):
    import pathlib
    import re
    root = pathlib.Path(__file__).resolve().parents[3]
    text = (root / "lib" / "memfault.map").read_text()
    syms = set(re.findall(r"^\s*(memfault_\w+);", text, re.M))
    assert syms == set(_ffi.FUNCTIONS)
