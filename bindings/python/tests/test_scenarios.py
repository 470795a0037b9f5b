# SPDX-License-Identifier: MIT
"""Run loops on the KVM simulator: MMIO and port IO exits, memory faults on
both arch models, kicks, features, region lookup."""
import errno
import threading
import time

import pytest

import memfault
from memfault import Arch, ExitInterrupted, ExitMemoryFault, ExitReason, ExitVmm
from kvmsim import BOTH_ARCHES, GMEM_GPA, KVM_MEM_GUEST_MEMFD, MMIO_GPA, RAM_GPA


@pytest.mark.parametrize("arch", BOTH_ARCHES)
def test_mmio_run_loop(sim, arch):
    s = sim(arch, "7.2")
    with s.vm(kvm_fd=s.kvm) as vm, s.vcpu(vm) as vcpu:
        s.script(vcpu.fd, "mmio_write:0x10000000:4:0x1234; mmio_read:0x10000004:4;"
                          "mmio_write:0x10000008:4:acc")
        device = []
        while True:
            ex = vcpu.run()
            if ex == ExitVmm(ExitReason.MMIO):
                run = vcpu.kvm_run
                m = run.mmio
                if m.is_write:
                    device.append((m.phys_addr, int.from_bytes(m.data, "little")))
                else:
                    assert (m.phys_addr, m.len) == (MMIO_GPA + 4, 4)
                    run.set_mmio_data((0x4321).to_bytes(4, "little"))
            else:
                assert ex == ExitVmm(s.end_exit)
                break
        assert device == [(MMIO_GPA, 0x1234), (MMIO_GPA + 8, 0x4321)]
        with pytest.raises(memfault.MemfaultError) as e:
            vcpu.fault()
        assert e.value.errno == errno.ENODATA
        st = vcpu.stats()
        assert (st.runs, st.exits) == (4, 4)


def test_x86_port_io_and_hlt(sim):
    s = sim(Arch.X86_64, "7.2")
    with s.vm() as vm, s.vcpu(vm) as vcpu:
        s.script(vcpu.fd, "out:0xe0:1:0x42; in:0xe1:1; out:0xe2:1:acc; hlt")
        outs = []
        while True:
            ex = vcpu.run()
            if ex == ExitVmm(ExitReason.IO):
                run = vcpu.kvm_run
                io = ex.io  # decoded with the exit
                assert io == run.io
                if io.direction is memfault.IoDirection.OUT:
                    outs.append((io.port, run.io_data))
                else:
                    assert (io.port, io.size, io.count) == (0xE1, 1, 1)
                    run.io_data = b"\x5a"
            elif ex == ExitVmm(ExitReason.HLT):
                break
            else:
                pytest.fail(f"unexpected {ex}")
        assert outs == [(0xE0, b"\x42"), (0xE2, b"\x5a")]
        assert s.acc(vcpu.fd) == 0x5A
        assert vcpu.run() == ExitVmm(ExitReason.SHUTDOWN)


@pytest.mark.parametrize("arch", BOTH_ARCHES)
def test_closed_guest_memfd_is_a_memory_fault(sim, arch):
    s = sim(arch, "7.2")
    ps = memfault.page_size()
    with s.vm() as vm, s.vcpu(vm) as vcpu:
        import os
        gmem = s.create_gmem(vm.fd, 2 * ps)
        with memfault.GuestMemory.map_shared(gmem, 2 * ps) as shared:
            shared.fill(0, 2 * ps, 0x6B)
            s.set_memslot2(vm.fd, 2, KVM_MEM_GUEST_MEMFD, GMEM_GPA, 2 * ps, shared.address, gmem)
            s.script(vcpu.fd, f"load:{GMEM_GPA + ps:#x}:4")
            assert vcpu.run() == ExitVmm(s.end_exit)
            assert s.acc(vcpu.fd) == 0x6B6B6B6B
            os.close(gmem)  # KVM can no longer fault the page in
            s.script(vcpu.fd, f"load:{GMEM_GPA + ps:#x}:4")
            ex = vcpu.run()
            assert isinstance(ex, ExitMemoryFault)
            f = ex.fault
            assert (f.gpa, f.size, f.flags, f.error, f.origin) == (
                GMEM_GPA + ps, ps, memfault.FaultFlag(0), errno.EFAULT, memfault.Origin.ERRNO)
            assert vcpu.fault() == f
            assert vcpu.kvm_run.exit_reason == ExitReason.MEMORY_FAULT


@pytest.mark.parametrize("arch", BOTH_ARCHES)
def test_poisoned_and_failing_guest_memfd(sim, arch):
    s = sim(arch, "7.2")
    ps = memfault.page_size()
    with s.vm() as vm, s.vcpu(vm) as vcpu:
        import os
        gmem = s.create_gmem(vm.fd, 2 * ps)
        try:
            shared = memfault.GuestMemory.map_shared(gmem, 2 * ps)
            shared.fill(0, 2 * ps, 0x6B)
            # registered through the library this time
            region = vm.add_region(2, GMEM_GPA, shared, guest_memfd=gmem)
            assert region.info().npages == 2
            s.inject_gmem_error(vm.fd, GMEM_GPA, errno.ENOMEM)
            s.script(vcpu.fd, f"load:{GMEM_GPA:#x}:4")
            ex = vcpu.run()
            assert (ex.fault.gpa, ex.fault.error, ex.fault.origin) == (
                GMEM_GPA, errno.ENOMEM, memfault.Origin.OTHER_ERRNO)
            assert vcpu.run() == ExitVmm(s.end_exit)
            s.poison(vm.fd, GMEM_GPA + ps)
            s.script(vcpu.fd, f"load:{GMEM_GPA + ps:#x}:8")
            f = vcpu.run().fault
            assert f.is_hwpoison and not f.is_userfault
            assert (f.gpa, f.error) == (GMEM_GPA + ps, memfault.EHWPOISON)
            region.close()
        finally:
            os.close(gmem)


@pytest.mark.parametrize("arch", BOTH_ARCHES)
def test_unannotated_efault_is_an_error(sim, arch):
    s = sim(arch, "7.2")
    ps = memfault.page_size()
    with s.vm() as vm, s.vcpu(vm) as vcpu:
        ram = memfault.GuestMemory.anonymous(2 * ps)
        ram.fill(0, 2 * ps, 0x5A)
        vm.add_region(1, RAM_GPA, ram)
        s.script(vcpu.fd, f"load:{RAM_GPA:#x}:4")
        ram.set_accessible(False)
        with pytest.raises(memfault.MemfaultError) as e:
            vcpu.run()
        assert e.value.errno == errno.EFAULT
        ram.set_accessible(True)
        assert vcpu.run() == ExitVmm(s.end_exit)
        assert s.acc(vcpu.fd) == 0x5A5A5A5A


@pytest.mark.parametrize("arch", BOTH_ARCHES)
def test_kick_from_another_thread(sim, arch):
    s = sim(arch, "7.2")
    with s.vm() as vm, s.vcpu(vm) as vcpu:
        s.script(vcpu.fd, "spin")
        vcpu.kick()
        assert vcpu.run() == ExitInterrupted()
        result = []
        t = threading.Thread(target=lambda: result.append(vcpu.run_dispatch()))
        t.start()
        time.sleep(0.02)
        with pytest.raises(memfault.MemfaultError) as e:
            vcpu.run()  # one thread at a time
        assert e.value.errno == errno.EBUSY
        vcpu.kick()
        t.join(5)
        assert result == [ExitInterrupted()]


@pytest.mark.parametrize("level,uf", [("7.2", False), ("7.2-uf", True)])
def test_features_and_region_lookup(sim, level, uf):
    s = sim(Arch.ARM64, level)
    with s.vm() as vm:
        f = vm.features()
        assert f.arch == Arch.ARM64 and f.kvm_userfault == uf
        assert f.page_size == memfault.page_size()
        ram = memfault.GuestMemory.anonymous(4 * f.page_size)
        region = vm.add_region(3, RAM_GPA, ram, userfault=uf)
        found, page = vm.find_region(RAM_GPA + 2 * f.page_size + 5)
        assert found is region and page == 2
        info = region.info()
        assert (info.slot, info.gpa, info.npages, info.hva) == (3, RAM_GPA, 4, ram.address)
        with pytest.raises(memfault.MemfaultError) as e:
            vm.find_region(0x1000)
        assert e.value.errno == errno.ENOENT
        with pytest.raises(memfault.MemfaultError) as e:
            vm.add_region(4, RAM_GPA, memfault.GuestMemory.anonymous(f.page_size))
        assert e.value.errno == errno.EEXIST
        if not uf:
            with pytest.raises(memfault.MemfaultError) as e:
                vm.add_region(5, RAM_GPA + (1 << 20), memfault.GuestMemory.anonymous(f.page_size),
                              userfault=True)
            assert e.value.errno == errno.EOPNOTSUPP
        with s.vcpu(vm) as vcpu:
            with pytest.raises(memfault.MemfaultError) as e:
                vm.close()  # vCPUs first
            assert e.value.errno == errno.EBUSY
            assert vcpu.vm is vm
