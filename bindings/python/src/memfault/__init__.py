# SPDX-License-Identifier: MIT
"""Python bindings for libmemfault (ctypes, no dependencies).

Run KVM vCPUs and classify and resolve memory-fault exits the same way on
x86-64 and arm64::

    import memfault

    with memfault.Vm(vm_fd, arch=memfault.Arch.X86_64) as vm:
        def page_in(p: memfault.PageIn) -> memfault.Verdict:
            p.fill(0xC3)                  # fetch the page from anywhere
            return memfault.Verdict.RESOLVED
        vm.set_handlers(memfault.Handlers(page_in=page_in))
        ram = memfault.GuestMemory.anonymous(64 << 10)
        vm.add_region(1, 0x2000_0000, ram, userfault=True, missing=True)
        with vm.new_vcpu(vcpu_fd) as vcpu:
            while True:
                ex = vcpu.run_dispatch()
                if ex == memfault.ExitVmm(memfault.ExitReason.MMIO):
                    if not ex.mmio.is_write:       # decoded with the exit
                        vcpu.kvm_run.set_mmio_data(b"\\x5a")
                elif isinstance(ex, memfault.ExitVmm):
                    break

Every failure raises MemfaultError (an OSError carrying the errno).
"""
from ._core import (
    EHWPOISON,
    HANDLER_FAILED,
    Arch,
    Claim,
    Exit,
    ExitInterrupted,
    ExitMemoryFault,
    ExitReason,
    ExitRetry,
    ExitVmm,
    Fault,
    FaultFlag,
    FeatureFlag,
    Features,
    GuestMemory,
    HandlerError,
    Handlers,
    Io,
    IoDirection,
    KvmRun,
    KvmRunBuffer,
    MemfaultError,
    Mmio,
    Origin,
    PageIn,
    Region,
    RegionInfo,
    RegionRef,
    Uffd,
    UffdMode,
    UffdStats,
    Vcpu,
    VcpuRef,
    VcpuStats,
    Verdict,
    Vm,
    arch_reads_back_exit,
    classify_exit,
    page_size,
    prepare_exit,
    version,
)
from ._ffi import library_path

#: The version of these bindings (the project's release; the loaded C
#: library's own is ``version()``).
__version__ = "0.2.0"

__all__ = [
    "EHWPOISON", "HANDLER_FAILED", "Arch", "Claim", "Exit", "ExitInterrupted", "ExitMemoryFault",
    "ExitReason", "ExitRetry", "ExitVmm", "Fault", "FaultFlag", "FeatureFlag", "Features",
    "GuestMemory", "HandlerError", "Handlers", "Io", "IoDirection", "KvmRun", "KvmRunBuffer",
    "MemfaultError", "Mmio", "Origin", "PageIn", "Region", "RegionInfo", "RegionRef",
    "Uffd", "UffdMode", "UffdStats", "Vcpu", "VcpuRef", "VcpuStats", "Verdict", "Vm",
    "arch_reads_back_exit", "classify_exit", "library_path", "page_size", "prepare_exit",
    "version",
]
