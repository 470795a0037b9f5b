# SPDX-License-Identifier: MIT
"""What needs no VM: errors, version, arch table, exit classification,
guest memory."""
import errno
import mmap

import pytest

import memfault


def test_error_is_an_oserror_with_errno():
    e = memfault.MemfaultError(errno.EINVAL, "memfault_vm_new")
    assert isinstance(e, OSError)
    assert e.errno == errno.EINVAL and e.function == "memfault_vm_new"
    assert str(e) == "[Errno 22] Invalid argument: 'memfault_vm_new'"
    h = memfault.HandlerError("memfault_vcpu_run_dispatch")
    assert isinstance(h, memfault.MemfaultError) and h.errno == errno.ECANCELED == memfault.HANDLER_FAILED


def test_version_and_library():
    assert memfault.version() == (0, 2)
    assert "libmemfault" in memfault.library_path()


def test_package_version_is_the_project_version():
    import pathlib
    import re
    pyproject = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"
    want = re.search(r'^version = "([^"]+)"', pyproject.read_text(), re.M).group(1)
    assert memfault.__version__ == want
    assert tuple(int(x) for x in want.split(".")[:2]) == memfault.version()


def test_exits_and_io_directions_are_enums():
    run = memfault.KvmRunBuffer()
    run.exit_reason = 5
    ex = memfault.classify_exit(run, 0, 0)
    assert ex.reason is memfault.ExitReason.HLT and ex.reason.name == "HLT"
    run.exit_reason = 1234  # not one this module names: the raw number
    ex = memfault.classify_exit(run, 0, 0)
    assert type(ex.reason) is int and ex.reason == 1234
    # the access comes decoded with the exit
    run.exit_reason = memfault.ExitReason.MMIO
    ex = memfault.classify_exit(run, 0, 0)
    assert ex == memfault.ExitVmm(memfault.ExitReason.MMIO) and ex.io is None
    assert ex.mmio is not None and ex.mmio.is_write is False
    assert memfault.Io(1, 1, 0x3F8, 1, 4000).direction is memfault.IoDirection.OUT
    assert memfault.Io(0, 1, 0x3F8, 1, 4000).direction is memfault.IoDirection.IN
    assert memfault.Io.IN is memfault.IoDirection.IN
    assert isinstance(memfault.IoDirection.OUT, int)


def test_arch_table():
    assert memfault.arch_reads_back_exit(memfault.Arch.ARM64, memfault.ExitReason.MMIO)
    assert not memfault.arch_reads_back_exit(memfault.Arch.X86_64, memfault.ExitReason.HLT)
    with pytest.raises(memfault.MemfaultError) as e:
        memfault.arch_reads_back_exit(77, 6)
    assert e.value.errno == errno.EINVAL


def test_bad_fd_raises_errno():
    with pytest.raises(memfault.MemfaultError) as e:
        memfault.Vm(-1)
    assert e.value.errno in (errno.EBADF, errno.EINVAL)


def test_classify_synthetic_exits():
    run = memfault.KvmRunBuffer()
    run.exit_reason = memfault.ExitReason.MEMORY_FAULT
    run.set_memory_fault(1 << 3, 0x3000_0000, 0x1000)
    ex = memfault.classify_exit(run, -1, errno.EFAULT)
    assert isinstance(ex, memfault.ExitMemoryFault)
    f = ex.fault
    assert (f.gpa, f.size, f.error, f.origin) == (0x3000_0000, 0x1000, errno.EFAULT, memfault.Origin.ERRNO)
    assert f.is_private and not f.is_userfault
    assert memfault.classify_exit(run, 0, 0) == memfault.ExitMemoryFault(
        memfault.Fault(0x3000_0000, 0x1000, memfault.FaultFlag.PRIVATE, 8, None, memfault.Origin.RET0))
    run.exit_reason = memfault.ExitReason.MMIO
    assert memfault.classify_exit(run, 0, 0) == memfault.ExitVmm(memfault.ExitReason.MMIO)
    assert memfault.classify_exit(run, -1, errno.EINTR) == memfault.ExitInterrupted()
    assert memfault.classify_exit(run, -1, errno.EAGAIN) == memfault.ExitRetry()
    with pytest.raises(memfault.MemfaultError) as e:
        memfault.classify_exit(run, -1, errno.EFAULT)
    assert e.value.errno == errno.EFAULT
    with pytest.raises(memfault.MemfaultError) as e:
        memfault.classify_exit(run, 5, 0)
    assert e.value.errno == errno.EPROTO
    with pytest.raises(memfault.MemfaultError) as e:
        memfault.classify_exit(run, -1, 0)
    assert e.value.errno == errno.EPROTO


def test_prepare_exit_drops_a_stale_fault():
    run = memfault.KvmRunBuffer()
    run.exit_reason = memfault.ExitReason.MEMORY_FAULT
    run.set_memory_fault(0, 0x3000_0000, 0x1000)
    # without it, an early EIO reads as a fresh fault
    assert isinstance(memfault.classify_exit(run, -1, errno.EIO), memfault.ExitMemoryFault)
    memfault.prepare_exit(run, memfault.Arch.HOST)
    with pytest.raises(memfault.MemfaultError) as e:
        memfault.classify_exit(run, -1, errno.EIO)
    assert e.value.errno == errno.EIO
    run.exit_reason = memfault.ExitReason.MMIO
    memfault.prepare_exit(run, memfault.Arch.ARM64)
    assert run.exit_reason == memfault.ExitReason.MMIO
    with pytest.raises(memfault.MemfaultError) as e:
        memfault.prepare_exit(run, 77)
    assert e.value.errno == errno.EINVAL


def test_kvm_run_views():
    run = memfault.KvmRunBuffer()
    assert run.mmio is None and run.io is None
    run.exit_reason = memfault.ExitReason.MMIO
    run.set_mmio_data(b"\x01\x02")
    assert run.mmio.data == b""  # len 0
    run.exit_reason = memfault.ExitReason.IO
    with pytest.raises(memfault.MemfaultError):
        run.io_data  # data_offset 0 is inside struct kvm_run


def test_guest_memory():
    with memfault.GuestMemory.anonymous(2 * mmap.PAGESIZE) as m:
        assert len(m) == 2 * mmap.PAGESIZE and m.address % mmap.PAGESIZE == 0
        m.write(5, b"abc")
        assert m.read(4, 5) == b"\0abc\0"
        m.fill(0, 3, 0x7F)
        assert m.read(0, 4) == b"\x7f\x7f\x7f\0"
        with pytest.raises(memfault.MemfaultError) as e:
            m.write(len(m) - 1, b"xy")
        assert e.value.errno == errno.ERANGE
        m.set_accessible(False)
        with pytest.raises(memfault.MemfaultError):
            m.read(0, 1)
        m.set_accessible(True)
        assert m.read(0, 1) == b"\x7f"
    with pytest.raises(memfault.MemfaultError):
        m.read(0, 1)
