# SPDX-License-Identifier: MIT
"""KVM Userfault page-in resolved by Python functions through
memfault_vcpu_run_dispatch(), on both arch models (level 7.2-uf)."""
import errno
import threading

import pytest

import memfault
from memfault import ExitMemoryFault, ExitReason, ExitVmm, Handlers, Verdict
from kvmsim import BOTH_ARCHES, RAM_GPA, loads

NPAGES = 16


def uf_region(vm, **kw):
    ram = memfault.GuestMemory.anonymous(NPAGES * memfault.page_size())
    return ram, vm.add_region(1, RAM_GPA, ram, userfault=True, **kw)


@pytest.mark.parametrize("arch", BOTH_ARCHES)
def test_page_in_function_resolves_userfaults(sim, arch):
    s = sim(arch, "7.2-uf")
    ps = memfault.page_size()
    calls, logs = [], []

    def page_in(p: memfault.PageIn) -> Verdict:
        assert p.region.is_missing(p.page)
        p.fill(p.page + 1)
        p.write(1, b"\xee")
        calls.append((p.page, p.gpa, p.vcpu.fd if p.vcpu else None))
        return Verdict.RESOLVED

    with s.vm() as vm:
        assert vm.features().kvm_userfault
        vm.set_handlers(Handlers(page_in=page_in, log=lambda lvl, msg: logs.append((lvl, msg))))
        ram, region = uf_region(vm, missing=True)
        assert region.count_missing() == NPAGES
        with s.vcpu(vm) as vcpu:
            s.script(vcpu.fd, loads([3, 5, 3, 0]) + "mmio_write:0x10000000:1:acc")
            assert vcpu.run_dispatch() == ExitVmm(ExitReason.MMIO)
            assert vcpu.kvm_run.mmio.data == b"\x01"
            fd = vcpu.fd
            assert calls == [(3, RAM_GPA + 3 * ps, fd), (5, RAM_GPA + 5 * ps, fd), (0, RAM_GPA, fd)]
            assert ram.read(5 * ps, 2) == b"\x06\xee"
            assert region.count_missing() == NPAGES - 3
            assert (region.find_present(0), region.find_missing(0), region.find_present(6)) == (0, 1, None)
            st = vcpu.stats()
            assert (st.userfaults, st.page_ins, st.retries, st.exits) == (3, 3, 3, 1)
            assert vcpu.run_dispatch() == ExitVmm(s.end_exit)
    assert logs == []


@pytest.mark.parametrize("arch", BOTH_ARCHES)
def test_page_in_exactly_once_across_vcpu_threads(sim, arch):
    s = sim(arch, "7.2-uf")
    fetches = [0] * NPAGES
    lock = threading.Lock()

    def page_in(p):
        with lock:
            fetches[p.page] += 1
        p.fill(p.page + 1)

    with s.vm() as vm:
        vm.set_handlers(Handlers(page_in=page_in))
        ram, region = uf_region(vm, missing=True)
        vcpus = [s.vcpu(vm, i) for i in range(4)]
        for i, v in enumerate(vcpus):
            s.script(v.fd, loads((k * 5 + i * 3) % NPAGES for k in range(NPAGES)))
        results = [None] * len(vcpus)

        def run(i):
            results[i] = vcpus[i].run_dispatch()

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(vcpus))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results == [ExitVmm(s.end_exit)] * len(vcpus)
        assert fetches == [1] * NPAGES
        ps = memfault.page_size()
        assert [ram.read(p * ps, 1)[0] for p in range(NPAGES)] == [p + 1 for p in range(NPAGES)]
        stats = [v.stats() for v in vcpus]
        assert sum(x.page_ins for x in stats) == NPAGES
        assert sum(x.page_ins + x.page_waits for x in stats) == sum(x.userfaults for x in stats)
        assert region.count_missing() == 0
        for v in vcpus:
            v.close()


@pytest.mark.parametrize("arch", BOTH_ARCHES)
def test_exceptions_become_errors_not_crashes(sim, arch):
    s = sim(arch, "7.2-uf")
    mode = ["boom"]

    def page_in(p):
        if mode[0] == "boom":
            raise ValueError(f"page-in of page {p.page} exploded")
        if mode[0] == "eio":
            raise OSError(errno.EIO, "backing store gone")
        if mode[0] == "vmm":
            return Verdict.TO_VMM
        if mode[0] == "bad":
            return "yes"
        p.fill(7)
        return None

    with s.vm() as vm:
        vm.set_handlers(Handlers(page_in=page_in))
        ram, region = uf_region(vm, missing=True)
        with s.vcpu(vm) as vcpu:
            s.script(vcpu.fd, loads([2]))
            gpa = RAM_GPA + 2 * memfault.page_size()
            with pytest.raises(memfault.HandlerError) as e:
                vcpu.run_dispatch()
            assert e.value.errno == errno.ECANCELED
            assert isinstance(e.value.__cause__, ValueError)
            assert "page 2 exploded" in str(e.value.__cause__)
            assert vcpu.fault().gpa == gpa
            assert region.is_missing(2)
            with pytest.raises(memfault.MemfaultError) as e2:
                region.abort(2)  # the claim was released
            assert e2.value.errno == errno.EPERM

            mode[0] = "eio"
            with pytest.raises(memfault.MemfaultError) as e:
                vcpu.run_dispatch()
            assert e.value.errno == errno.EIO and isinstance(e.value.__cause__, OSError)

            mode[0] = "bad"
            with pytest.raises(memfault.HandlerError) as e:
                vcpu.run_dispatch()
            assert isinstance(e.value.__cause__, TypeError)

            mode[0] = "vmm"
            ex = vcpu.run_dispatch()
            assert isinstance(ex, ExitMemoryFault) and ex.fault.is_userfault and ex.fault.gpa == gpa

            mode[0] = "ok"
            assert vcpu.run_dispatch() == ExitVmm(s.end_exit)
            assert s.acc(vcpu.fd) == 7
            assert vcpu.stats().page_ins == 1
            assert vm.take_handler_exception() is None


@pytest.mark.parametrize("arch", BOTH_ARCHES)
def test_vmm_fetches_with_claim_and_publish(sim, arch):
    s = sim(arch, "7.2-uf")
    with s.vm() as vm:
        ram, region = uf_region(vm)
        region.mark_missing(4, 2)
        assert region.count_missing() == 2
        with s.vcpu(vm) as vcpu:
            s.script(vcpu.fd, loads([1, 5]))
            ex = vcpu.run_dispatch()
            assert isinstance(ex, ExitMemoryFault) and ex.fault.is_userfault
            found, page = vm.find_region(ex.fault.gpa)
            assert found is region and page == 5
            with region.fetching(page) as mine:
                assert mine
                assert region.claim(page, nowait=True) == memfault.Claim.BUSY
                ram.write(page * memfault.page_size(), b"\x99")
            assert region.claim(page, nowait=True) == memfault.Claim.PRESENT
            assert vcpu.run_dispatch() == ExitVmm(s.end_exit)
            assert s.acc(vcpu.fd) == 0x99
            with pytest.raises(RuntimeError):
                with region.fetching(4):
                    raise RuntimeError("fetch failed")
            assert region.is_missing(4)
            assert region.claim(4, nowait=True) == memfault.Claim.FETCH


def test_setup_calls_are_refused_during_dispatch(sim):
    s = sim(memfault.Arch.X86_64, "7.2-uf")
    inside, release = threading.Event(), threading.Event()

    def page_in(p):
        inside.set()
        release.wait(10)
        p.fill(1)

    with s.vm() as vm:
        vm.set_handlers(Handlers(page_in=page_in))
        ram, region = uf_region(vm, missing=True)
        with s.vcpu(vm) as vcpu:
            s.script(vcpu.fd, loads([0]))
            result = []
            t = threading.Thread(target=lambda: result.append(vcpu.run_dispatch()))
            t.start()
            assert inside.wait(10)
            other = memfault.GuestMemory.anonymous(memfault.page_size())
            for call in (lambda: vm.add_region(2, 0x4000_0000, other),
                         lambda: vm.set_handlers(None), region.close):
                with pytest.raises(memfault.MemfaultError) as e:
                    call()
                assert e.value.errno == errno.EBUSY
            assert vm.find_region(RAM_GPA)[1] == 0  # lookups are fine
            release.set()
            t.join(10)
            assert result == [ExitVmm(s.end_exit)]
            vm.add_region(2, 0x4000_0000, other).close()
            vm.set_handlers(None)
