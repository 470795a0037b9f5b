# SPDX-License-Identifier: MIT
"""The KVM simulator (tests/sim/kvmsim.h) through LD_PRELOAD, and the raw KVM
ioctls a VMM makes itself (the bindings take the fds over)."""
from __future__ import annotations

import ctypes
import fcntl
import os
import struct
from typing import Any, List

import memfault

KVM_CREATE_VM = 0xAE01
KVM_CHECK_EXTENSION = 0xAE03
KVM_CREATE_VCPU = 0xAE41
KVM_SET_USER_MEMORY_REGION2 = 0x40A0AE49
KVM_CREATE_GUEST_MEMFD = 0xC040AED4
KVM_CAP_GUEST_MEMFD_FLAGS = 244
KVM_MEM_GUEST_MEMFD = 1 << 2
GUEST_MEMFD_FLAG_MMAP = 1 << 0

MMIO_GPA = 0x1000_0000
RAM_GPA = 0x2000_0000
GMEM_GPA = 0x3000_0000

LEVELS = {"6.1": 601, "6.8": 608, "7.2": 702, "7.2-uf": 703}
BOTH_ARCHES = [memfault.Arch.X86_64, memfault.Arch.ARM64]


class _Config(ctypes.Structure):
    _fields_ = [("arch", ctypes.c_uint32), ("level", ctypes.c_uint32), ("quirks", ctypes.c_uint64)]


def _process() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def preloaded() -> bool:
    return hasattr(_process(), "kvmsim_reset")


class Sim:
    """The simulator reset to one model; close() closes what it opened."""

    def __init__(self, arch: memfault.Arch, level: str) -> None:
        self.arch = arch
        self.level = level
        self._c = _process()
        self._c.kvmsim_default_quirks.restype = ctypes.c_uint64
        self._c.kvmsim_vcpu_get_state.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_uint64), ctypes.c_void_p]
        self._c.kvmsim_poison.argtypes = [ctypes.c_int, ctypes.c_uint64]
        self._c.kvmsim_inject_gmem_error.argtypes = [ctypes.c_int, ctypes.c_uint64, ctypes.c_int, ctypes.c_uint]
        quirks = self._c.kvmsim_default_quirks(int(arch), LEVELS[level])
        cfg = _Config(int(arch), LEVELS[level], quirks)
        assert self._c.kvmsim_reset(ctypes.byref(cfg)) == 0
        self._fds: List[int] = []
        self.kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
        self._fds.append(self.kvm)

    def close(self) -> None:
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()

    def create_vm(self) -> int:
        return fcntl.ioctl(self.kvm, KVM_CREATE_VM, 0)

    def create_vcpu(self, vm_fd: int, vcpu_id: int = 0) -> int:
        return fcntl.ioctl(vm_fd, KVM_CREATE_VCPU, vcpu_id)

    def check_extension(self, vm_fd: int, cap: int) -> int:
        return fcntl.ioctl(vm_fd, KVM_CHECK_EXTENSION, cap)

    def create_gmem(self, vm_fd: int, size: int) -> int:
        flags = max(self.check_extension(vm_fd, KVM_CAP_GUEST_MEMFD_FLAGS), 0) & GUEST_MEMFD_FLAG_MMAP
        arg = bytearray(struct.pack("=QQ6Q", size, flags, *([0] * 6)))
        fd = fcntl.ioctl(vm_fd, KVM_CREATE_GUEST_MEMFD, arg, True)
        return fd

    def set_memslot2(self, vm_fd: int, slot: int, flags: int, gpa: int, size: int, hva: int,
                     gmem_fd: int = 0, gmem_offset: int = 0) -> None:
        arg = struct.pack("=IIQQQQII14Q", slot, flags, gpa, size, hva, gmem_offset, gmem_fd, 0, *([0] * 14))
        assert len(arg) == 160
        fcntl.ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION2, arg)

    def script(self, vcpu_fd: int, text: str) -> None:
        assert self._c.kvmsim_vcpu_set_script_text(vcpu_fd, text.encode()) == 0, text

    def acc(self, vcpu_fd: int) -> int:
        v = ctypes.c_uint64()
        assert self._c.kvmsim_vcpu_get_state(vcpu_fd, ctypes.byref(v), None) == 0
        return v.value

    def poison(self, vm_fd: int, gpa: int) -> None:
        assert self._c.kvmsim_poison(vm_fd, gpa) == 0

    def inject_gmem_error(self, vm_fd: int, gpa: int, err: int, count: int = 1) -> None:
        assert self._c.kvmsim_inject_gmem_error(vm_fd, gpa, err, count) == 0

    @property
    def end_exit(self) -> int:
        """The exit a finished script ends with on this arch model."""
        if self.arch == memfault.Arch.X86_64:
            return memfault.ExitReason.SHUTDOWN
        return memfault.ExitReason.SYSTEM_EVENT

    def vm(self, **kw: Any) -> memfault.Vm:
        return memfault.Vm(self.create_vm(), arch=self.arch, **kw)

    def vcpu(self, vm: memfault.Vm, vcpu_id: int = 0) -> memfault.Vcpu:
        return vm.new_vcpu(self.create_vcpu(vm.fd, vcpu_id))


def loads(pages: Any, base: int = RAM_GPA) -> str:
    ps = memfault.page_size()
    return "".join(f"load:{base + p * ps:#x}:1;" for p in pages)
