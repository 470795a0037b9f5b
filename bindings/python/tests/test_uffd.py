# SPDX-License-Identifier: MIT
"""The userfaultfd backend with a Python page-in function: KVM's own
accesses (the simulator reads guest memory through the hva in the vCPU
thread) and host threads, MISSING and MINOR modes, library thread and VMM
polling. Skipped where userfaultfd is not permitted."""
import errno
import os
import select
import threading
import time

import pytest

import memfault
from memfault import ExitVmm, Handlers, UffdMode
from kvmsim import BOTH_ARCHES, RAM_GPA, loads

NPAGES = 32


def pattern(page):
    return (page * 7 + 1) & 0xFF


class Counter:
    def __init__(self, vm=None):
        self.lock = threading.Lock()
        self.fetches = [0] * NPAGES
        self.by_vcpu = 0
        self.vm = vm

    def page_in(self, p):
        if self.vm is not None:  # a lookup from a handler, on the service thread
            region, page = self.vm.find_region(p.gpa)
            assert region is p.region and page == p.page
        with self.lock:
            self.fetches[p.page] += 1
            self.by_vcpu += p.vcpu is not None
        p.fill(pattern(p.page))


def new_uffd(vm, **kw):
    try:
        return vm.new_uffd(**kw)
    except memfault.MemfaultError as e:
        if e.errno in (errno.EPERM, errno.ENOSYS, errno.EACCES):
            pytest.skip(f"no userfaultfd here: {e}")
        raise


def settle(cond, timeout=2.0):
    """The library counts a fault after the install that wakes its thread."""
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        time.sleep(0.001)


@pytest.mark.parametrize("arch", BOTH_ARCHES)
def test_combined_kvm_userfault_and_host_faults(sim, arch):
    s = sim(arch, "7.2-uf")
    ps = memfault.page_size()
    c = Counter()
    with s.vm() as vm:
        vm.set_handlers(Handlers(page_in=c.page_in))
        ram = memfault.GuestMemory.anonymous(NPAGES * ps)
        region = vm.add_region(1, RAM_GPA, ram, userfault=True, missing=True)
        with new_uffd(vm, service_thread=True) as uffd, s.vcpu(vm) as vcpu:
            uffd.register(region, UffdMode.MISSING)
            with pytest.raises(memfault.MemfaultError) as e:
                uffd.register(region, UffdMode.MISSING)
            assert e.value.errno == errno.EEXIST
            s.script(vcpu.fd, loads(k * 5 % NPAGES for k in range(NPAGES)))
            bad = []

            def host():  # reads every page backwards meanwhile (GIL released)
                for p in reversed(range(NPAGES)):
                    if ram.read(p * ps + 17, 1)[0] != pattern(p):
                        bad.append(p)
            t = threading.Thread(target=host)
            t.start()
            assert vcpu.run_dispatch() == ExitVmm(s.end_exit)
            t.join(30)
            assert bad == []
            assert c.fetches == [1] * NPAGES
            settle(lambda: uffd.stats().page_ins + uffd.stats().kvm_page_ins == NPAGES)
            st, vs = uffd.stats(), vcpu.stats()
            assert st.page_ins + st.kvm_page_ins == NPAGES
            assert st.kvm_page_ins == vs.page_ins == c.by_vcpu
            assert (st.errors, st.last_error) == (0, 0)
            assert len(st.latency) == 64
            assert region.count_missing() == 0
            assert s.acc(vcpu.fd) == pattern((NPAGES - 1) * 5 % NPAGES)
        assert vm.take_handler_exception() is None


def test_kvm_accesses_attributed_to_the_vcpu(sim):
    s = sim(memfault.Arch.ARM64, "7.2")
    ps = memfault.page_size()
    with s.vm() as vm:
        c = Counter(vm)
        vm.set_handlers(Handlers(page_in=c.page_in))
        ram = memfault.GuestMemory.anonymous(NPAGES * ps)
        region = vm.add_region(1, RAM_GPA, ram, missing=True)
        with s.vcpu(vm) as vcpu, new_uffd(vm, service_thread=True) as uffd:
            uffd.register(region)
            uffd.add_vcpu(vcpu)
            with pytest.raises(memfault.MemfaultError):
                vcpu.close()  # remove it from the Uffd first
            s.script(vcpu.fd, loads(range(8)))
            assert vcpu.run_dispatch() == ExitVmm(s.end_exit)
            assert s.acc(vcpu.fd) == pattern(7)
            settle(lambda: vcpu.stats().uffd_faults == 8)
            vs = vcpu.stats()
            assert (vs.uffd_faults, vs.userfaults) == (8, 0)
            assert c.by_vcpu == 8
            uffd.remove_vcpu(vcpu)
            assert ram.read(9 * ps, 1)[0] == pattern(9)  # a host read: not attributed
            assert c.by_vcpu == 8


def test_minor_mode_served_by_vmm_polling(sim):
    s = sim(memfault.Arch.X86_64, "7.2")
    ps = memfault.page_size()
    c = Counter()
    with s.vm() as vm:
        vm.set_handlers(Handlers(page_in=c.page_in))
        memfd = os.memfd_create("memfault-py", os.MFD_CLOEXEC)
        try:
            os.ftruncate(memfd, NPAGES * ps)
            ram = memfault.GuestMemory.map_shared(memfd, NPAGES * ps)
            alias = memfault.GuestMemory.map_shared(memfd, NPAGES * ps)
            region = vm.add_region(1, RAM_GPA, ram, missing=True)
            uffd = new_uffd(vm)
            try:
                uffd.register(region, UffdMode.MINOR, alias)
            except memfault.MemfaultError as e:
                if e.errno == errno.EOPNOTSUPP:
                    pytest.skip("no UFFD_FEATURE_MINOR_SHMEM")
                raise
            got = []
            t = threading.Thread(target=lambda: got.extend(ram.read(p * ps, 1)[0] for p in (3, 1, 3, 30)))
            t.start()
            handled = 0
            while t.is_alive():  # the VMM's event loop
                if select.select([uffd], [], [], 0.01)[0]:
                    handled += uffd.service(16)
            t.join()
            assert got == [pattern(3), pattern(1), pattern(3), pattern(30)]
            assert handled >= 3
            st = uffd.stats()
            assert (st.page_ins, st.errors) == (3, 0)
            assert region.count_missing() == NPAGES - 3
            assert uffd.service(1) == 0
            with pytest.raises(memfault.MemfaultError) as e:
                uffd.service(0)
            assert e.value.errno == errno.EINVAL

            uffd.close()
        finally:
            os.close(memfd)
