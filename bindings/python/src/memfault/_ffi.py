# SPDX-License-Identifier: MIT
"""ctypes declarations of <memfault/memfault.h>: constants, structs and every
exported function (FUNCTIONS), bound against the shared library.

The library is found through $LIBMEMFAULT_PATH (a file, or a directory that
holds libmemfault.so.0), else ctypes.util.find_library("memfault"), else the
soname "libmemfault.so.0". The struct layouts are checked against the C
compiler's in tests/test_layout.py.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_int,
    c_int32,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from typing import Any, Dict, List, Tuple, Type

SONAME = "libmemfault.so.0"

# ---- constants (enum values and macros of the header) -------------------

MEMFAULT_ARCH_HOST = 0
MEMFAULT_ARCH_X86_64 = 1
MEMFAULT_ARCH_ARM64 = 2
MEMFAULT_VM_OWN_FD = 1 << 0
MEMFAULT_VM_NO_USERFAULT_PROBE = 1 << 1
MEMFAULT_FEATURE_USER_MEMORY2 = 1 << 0
MEMFAULT_FEATURE_MEMORY_FAULT_INFO = 1 << 1
MEMFAULT_FEATURE_MEMORY_FAULT_EXITS = 1 << 2
MEMFAULT_FEATURE_MEMORY_ATTRIBUTES = 1 << 3
MEMFAULT_FEATURE_GUEST_MEMFD = 1 << 4
MEMFAULT_FEATURE_GUEST_MEMFD_FLAGS = 1 << 5
MEMFAULT_FEATURE_KVM_USERFAULT = 1 << 6
MEMFAULT_VCPU_OWN_FD = 1 << 0
MEMFAULT_VCPU_NO_SIGNAL_HANDLER = 1 << 1
MEMFAULT_VCPU_TIME_HANDLERS = 1 << 2
MEMFAULT_RUN_EXIT = 1
MEMFAULT_RUN_MEMORY_FAULT = 2
MEMFAULT_RUN_INTERRUPTED = 3
MEMFAULT_RUN_RETRY = 4
MEMFAULT_FAULT_PRIVATE = 1 << 0
MEMFAULT_FAULT_USERFAULT = 1 << 1
MEMFAULT_FAULT_HWPOISON = 1 << 2
MEMFAULT_FAULT_UNKNOWN = 1 << 3
MEMFAULT_FAULT_SIZE_ZERO = 1 << 8
MEMFAULT_FAULT_UNALIGNED = 1 << 9
MEMFAULT_FAULT_OVERFLOW = 1 << 10
MEMFAULT_ORIGIN_ERRNO = 1
MEMFAULT_ORIGIN_RET0 = 2
MEMFAULT_ORIGIN_OTHER_ERRNO = 3
MEMFAULT_REGION_USERFAULT = 1 << 0
MEMFAULT_REGION_GUEST_MEMFD = 1 << 1
MEMFAULT_REGION_MISSING = 1 << 2
MEMFAULT_REGION_NO_MEMSLOT = 1 << 3
MEMFAULT_CLAIM_NOWAIT = 1 << 0
MEMFAULT_CLAIM_PRESENT = 0
MEMFAULT_CLAIM_FETCH = 1
MEMFAULT_CLAIM_BUSY = 2
MEMFAULT_RESOLVED = 0
MEMFAULT_TO_VMM = 1
MEMFAULT_UFFD_SERVICE_THREAD = 1 << 0
MEMFAULT_UFFD_MISSING = 1
MEMFAULT_UFFD_MINOR = 2
MEMFAULT_UFFD_LATENCY_BUCKETS = 64

CONSTANTS: Dict[str, int] = {
    k: v for k, v in dict(globals()).items() if k.startswith("MEMFAULT_")
}

# ---- structs --------------------------------------------------------------


class VmOpts(Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("flags", c_uint64),
        ("probe_gpa", c_uint64),
        ("kvm_fd", c_int32),
        ("arch", c_uint32),
        ("probe_slot", c_uint32),
        ("reserved", c_uint32),
    ]


class Features(Structure):
    _fields_ = [
        ("flags", c_uint64),
        ("memory_attributes", c_uint64),
        ("guest_memfd_flags", c_uint64),
        ("arch", c_uint32),
        ("userfault_probe_error", c_int32),
        ("page_size", c_uint64),
        ("reserved", c_uint64 * 3),
    ]


class VcpuOpts(Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("flags", c_uint64),
        ("run", c_void_p),
        ("run_size", c_uint64),
        ("kick_signal", c_int32),
        ("reserved", c_uint32),
    ]


class Fault(Structure):
    _fields_ = [
        ("gpa", c_uint64),
        ("size", c_uint64),
        ("flags", c_uint64),
        ("kernel_flags", c_uint64),
        ("error", c_int32),
        ("origin", c_uint32),
        ("reserved", c_uint64 * 3),
    ]


class RegionOpts(Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("flags", c_uint64),
        ("guest_memfd_offset", c_uint64),
        ("guest_memfd", c_int32),
        ("kvm_flags", c_uint32),
    ]


class RegionInfo(Structure):
    _fields_ = [
        ("gpa", c_uint64),
        ("size", c_uint64),
        ("hva", c_uint64),
        ("npages", c_uint64),
        ("page_size", c_uint64),
        ("bitmap", c_uint64),
        ("flags", c_uint64),
        ("slot", c_uint32),
        ("reserved", c_uint32),
    ]


PAGE_IN_FN = CFUNCTYPE(c_int, c_void_p, c_void_p, c_void_p, c_uint64, c_void_p, c_uint64)
FAULT_FN = CFUNCTYPE(c_int, c_void_p, c_void_p, POINTER(Fault))
DISCARD_FN = CFUNCTYPE(c_int, c_void_p, c_uint64, c_uint64, c_uint32)
LOG_FN = CFUNCTYPE(None, c_void_p, c_int, c_char_p)


class Handlers(Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("user", c_void_p),
        ("page_in", PAGE_IN_FN),
        ("convert", FAULT_FN),
        ("discard", DISCARD_FN),
        ("hwpoison", FAULT_FN),
        ("other", FAULT_FN),
        ("log", LOG_FN),
        ("max_repeats", c_uint32),
        ("reserved", c_uint32),
    ]


class VcpuStats(Structure):
    _fields_ = [
        (name, c_uint64)
        for name in (
            "runs", "exits", "memory_faults", "userfaults", "page_ins",
            "page_waits", "conversions", "hwpoison", "other_faults", "to_vmm",
            "retries", "repeat_trips", "interrupted", "handler_ns",
            "uffd_faults", "uffd_wait_ns",
        )
    ]


class UffdOpts(Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("flags", c_uint64),
        ("reserved", c_uint64),
    ]


class UffdStats(Structure):
    _fields_ = [
        ("features", c_uint64),
        ("faults", c_uint64),
        ("page_ins", c_uint64),
        ("kvm_page_ins", c_uint64),
        ("waits", c_uint64),
        ("unknown", c_uint64),
        ("errors", c_uint64),
        ("last_error_addr", c_uint64),
        ("last_error_gpa", c_uint64),
        ("last_error", c_int32),
        ("last_error_tid", c_uint32),
        ("latency_p50_ns", c_uint64),
        ("latency_p99_ns", c_uint64),
        ("latency_max_ns", c_uint64),
        ("latency", c_uint64 * MEMFAULT_UFFD_LATENCY_BUCKETS),
        ("reserved", c_uint64 * 4),
    ]


#: Every public struct of the header, by its C tag (checked by test_layout.py).
STRUCTS: Dict[str, Type[Structure]] = {
    "memfault_vm_opts": VmOpts,
    "memfault_features": Features,
    "memfault_vcpu_opts": VcpuOpts,
    "memfault_fault": Fault,
    "memfault_region_opts": RegionOpts,
    "memfault_region_info": RegionInfo,
    "memfault_handlers": Handlers,
    "memfault_vcpu_stats": VcpuStats,
    "memfault_uffd_opts": UffdOpts,
    "memfault_uffd_stats": UffdStats,
}


# ---- struct kvm_run: the fields a VMM reads for ordinary exits ------------


class KvmRunMmio(Structure):
    _fields_ = [
        ("phys_addr", c_uint64),
        ("data", ctypes.c_uint8 * 8),
        ("len", c_uint32),
        ("is_write", ctypes.c_uint8),
    ]


class KvmRunIo(Structure):
    _fields_ = [
        ("direction", ctypes.c_uint8),
        ("size", ctypes.c_uint8),
        ("port", ctypes.c_uint16),
        ("count", c_uint32),
        ("data_offset", c_uint64),
    ]


class KvmRunMemoryFault(Structure):
    _fields_ = [("flags", c_uint64), ("gpa", c_uint64), ("size", c_uint64)]


class KvmRunExit(ctypes.Union):
    _fields_ = [
        ("mmio", KvmRunMmio),
        ("io", KvmRunIo),
        ("memory_fault", KvmRunMemoryFault),
        ("padding", ctypes.c_char * 256),
    ]


class KvmRunHead(Structure):
    """The head of struct kvm_run (the first 288 bytes)."""

    _fields_ = [
        ("request_interrupt_window", ctypes.c_uint8),
        ("immediate_exit", ctypes.c_uint8),
        ("padding1", ctypes.c_uint8 * 6),
        ("exit_reason", c_uint32),
        ("ready_for_interrupt_injection", ctypes.c_uint8),
        ("if_flag", ctypes.c_uint8),
        ("flags", ctypes.c_uint16),
        ("cr8", c_uint64),
        ("apic_base", c_uint64),
        ("u", KvmRunExit),
    ]


KVM_RUN_SIZE = 2352

# ---- functions -----------------------------------------------------------

_P = c_void_p  # every opaque object pointer
_U64P = POINTER(c_uint64)

#: Every function of lib/memfault.map: name -> (restype, argtypes).
FUNCTIONS: Dict[str, Tuple[Any, List[Any]]] = {
    "memfault_version_major": (c_int, []),
    "memfault_version_minor": (c_int, []),
    "memfault_arch_reads_back_exit": (c_int, [c_uint32, c_uint32]),
    "memfault_vm_new": (c_int, [c_int, POINTER(VmOpts), POINTER(_P)]),
    "memfault_vm_free": (None, [_P]),
    "memfault_vm_get_fd": (c_int, [_P]),
    "memfault_vm_get_features": (c_int, [_P, POINTER(Features), c_size_t]),
    "memfault_vm_find_region": (c_int, [_P, c_uint64, POINTER(_P), _U64P]),
    "memfault_vm_set_handlers": (c_int, [_P, POINTER(Handlers)]),
    "memfault_vcpu_new": (c_int, [_P, c_int, POINTER(VcpuOpts), POINTER(_P)]),
    "memfault_vcpu_free": (None, [_P]),
    "memfault_vcpu_get_fd": (c_int, [_P]),
    "memfault_vcpu_get_run": (c_int, [_P, POINTER(_P)]),
    "memfault_vcpu_run": (c_int, [_P]),
    "memfault_vcpu_run_dispatch": (c_int, [_P]),
    "memfault_vcpu_kick": (c_int, [_P]),
    "memfault_vcpu_get_fault": (c_int, [_P, POINTER(Fault), c_size_t]),
    "memfault_vcpu_get_stats": (c_int, [_P, POINTER(VcpuStats), c_size_t]),
    "memfault_exit_prepare": (c_int, [_P, c_uint32]),
    "memfault_exit_classify": (c_int, [_P, c_int, c_int, POINTER(Fault), c_size_t]),
    "memfault_region_new": (
        c_int,
        [_P, c_uint32, c_uint64, c_uint64, _P, POINTER(RegionOpts), POINTER(_P)],
    ),
    "memfault_region_free": (None, [_P]),
    "memfault_region_get_info": (c_int, [_P, POINTER(RegionInfo), c_size_t]),
    "memfault_region_mark_missing": (c_int, [_P, c_uint64, c_uint64]),
    "memfault_region_publish": (c_int, [_P, c_uint64, c_uint64]),
    "memfault_region_is_missing": (c_int, [_P, c_uint64]),
    "memfault_region_find_missing": (c_int, [_P, c_uint64, _U64P]),
    "memfault_region_find_present": (c_int, [_P, c_uint64, _U64P]),
    "memfault_region_count_missing": (c_int, [_P, _U64P]),
    "memfault_region_claim": (c_int, [_P, c_uint64, c_uint32]),
    "memfault_region_abort": (c_int, [_P, c_uint64]),
    "memfault_uffd_new": (c_int, [_P, POINTER(UffdOpts), POINTER(_P)]),
    "memfault_uffd_free": (None, [_P]),
    "memfault_uffd_get_fd": (c_int, [_P]),
    "memfault_uffd_service": (c_int, [_P, c_uint32]),
    "memfault_uffd_register": (c_int, [_P, _P, c_uint32, _P]),
    "memfault_uffd_add_vcpu": (c_int, [_P, _P]),
    "memfault_uffd_remove_vcpu": (c_int, [_P, _P]),
    "memfault_uffd_get_stats": (c_int, [_P, POINTER(UffdStats), c_size_t]),
}


def library_path() -> str:
    """Where the library is loaded from (see the module docstring)."""
    env = os.environ.get("LIBMEMFAULT_PATH")
    if env:
        return os.path.join(env, SONAME) if os.path.isdir(env) else env
    return ctypes.util.find_library("memfault") or SONAME


class _Lib:
    """The loaded library with FUNCTIONS' prototypes; loaded on first use."""

    def __init__(self) -> None:
        self._dll: Any = None

    def _load(self) -> Any:
        dll = ctypes.CDLL(library_path(), use_errno=True)
        for name, (restype, argtypes) in FUNCTIONS.items():
            fn = getattr(dll, name)
            fn.restype = restype
            fn.argtypes = argtypes
        return dll

    def __getattr__(self, name: str) -> Any:
        if self._dll is None:
            self._dll = self._load()
        return getattr(self._dll, name)


lib: Any = _Lib()

# libc, for mmap() guest memory helpers and memfd_create()
libc: Any = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = [c_void_p, c_size_t, c_int]
libc.mprotect.restype = c_int
