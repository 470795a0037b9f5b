# SPDX-License-Identifier: MIT
"""The Pythonic API over _ffi: objects, context managers, exceptions."""
from __future__ import annotations

import ctypes
import enum
import errno as _errno
import mmap
import os
import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from . import _ffi
from ._ffi import lib

# ---- errors ---------------------------------------------------------------


class MemfaultError(OSError):
    """A libmemfault call failed: ``errno`` is the positive errno,
    ``function`` the C function (also in ``filename``, for ``str()``)."""

    def __init__(self, err: int, function: str = "") -> None:
        super().__init__(err, os.strerror(err), function or None)
        self.function = function


class HandlerError(MemfaultError):
    """A handler raised an exception that is no OSError: its call failed
    with ECANCELED. The exception is ``__cause__``."""

    def __init__(self, function: str = "") -> None:
        super().__init__(_errno.ECANCELED, function)


#: What a handler exception that is no OSError becomes in C.
HANDLER_FAILED = _errno.ECANCELED
#: The errno of a hardware-poisoned page (missing from Python's errno module).
EHWPOISON: int = getattr(_errno, "EHWPOISON", 133)


def _check(ret: int, function: str) -> int:
    if ret < 0:
        raise MemfaultError(-ret, function)
    return ret


# ---- enums and plain data ---------------------------------------------------


class Arch(enum.IntEnum):
    HOST = _ffi.MEMFAULT_ARCH_HOST
    X86_64 = _ffi.MEMFAULT_ARCH_X86_64
    ARM64 = _ffi.MEMFAULT_ARCH_ARM64


class FeatureFlag(enum.IntFlag):
    USER_MEMORY2 = _ffi.MEMFAULT_FEATURE_USER_MEMORY2
    MEMORY_FAULT_INFO = _ffi.MEMFAULT_FEATURE_MEMORY_FAULT_INFO
    MEMORY_FAULT_EXITS = _ffi.MEMFAULT_FEATURE_MEMORY_FAULT_EXITS
    MEMORY_ATTRIBUTES = _ffi.MEMFAULT_FEATURE_MEMORY_ATTRIBUTES
    GUEST_MEMFD = _ffi.MEMFAULT_FEATURE_GUEST_MEMFD
    GUEST_MEMFD_FLAGS = _ffi.MEMFAULT_FEATURE_GUEST_MEMFD_FLAGS
    KVM_USERFAULT = _ffi.MEMFAULT_FEATURE_KVM_USERFAULT


class FaultFlag(enum.IntFlag):
    PRIVATE = _ffi.MEMFAULT_FAULT_PRIVATE
    USERFAULT = _ffi.MEMFAULT_FAULT_USERFAULT
    HWPOISON = _ffi.MEMFAULT_FAULT_HWPOISON
    UNKNOWN = _ffi.MEMFAULT_FAULT_UNKNOWN
    SIZE_ZERO = _ffi.MEMFAULT_FAULT_SIZE_ZERO
    UNALIGNED = _ffi.MEMFAULT_FAULT_UNALIGNED
    OVERFLOW = _ffi.MEMFAULT_FAULT_OVERFLOW


class Origin(enum.IntEnum):
    ERRNO = _ffi.MEMFAULT_ORIGIN_ERRNO
    RET0 = _ffi.MEMFAULT_ORIGIN_RET0
    OTHER_ERRNO = _ffi.MEMFAULT_ORIGIN_OTHER_ERRNO


class Verdict(enum.IntEnum):
    """What a handler returns (``None`` also means RESOLVED)."""

    RESOLVED = _ffi.MEMFAULT_RESOLVED
    TO_VMM = _ffi.MEMFAULT_TO_VMM


class Claim(enum.IntEnum):
    PRESENT = _ffi.MEMFAULT_CLAIM_PRESENT
    FETCH = _ffi.MEMFAULT_CLAIM_FETCH
    BUSY = _ffi.MEMFAULT_CLAIM_BUSY


class UffdMode(enum.IntEnum):
    MISSING = _ffi.MEMFAULT_UFFD_MISSING
    MINOR = _ffi.MEMFAULT_UFFD_MINOR


class ExitReason(enum.IntEnum):
    """``kvm_run.exit_reason`` values (Linux uapi)."""

    UNKNOWN = 0
    EXCEPTION = 1
    IO = 2
    HYPERCALL = 3
    DEBUG = 4
    HLT = 5
    MMIO = 6
    IRQ_WINDOW_OPEN = 7
    SHUTDOWN = 8
    FAIL_ENTRY = 9
    INTR = 10
    INTERNAL_ERROR = 17
    SYSTEM_EVENT = 24
    MEMORY_FAULT = 39


@dataclass(frozen=True)
class Fault:
    """A decoded memory fault (struct memfault_fault)."""

    gpa: int
    size: int
    flags: FaultFlag
    kernel_flags: int
    error: Optional[int]  #: positive errno KVM_RUN failed with, None if it returned 0
    origin: Union[Origin, int]

    @classmethod
    def _from_c(cls, f: _ffi.Fault) -> "Fault":
        try:
            origin: Union[Origin, int] = Origin(f.origin)
        except ValueError:
            origin = f.origin
        return cls(f.gpa, f.size, FaultFlag(f.flags), f.kernel_flags,
                   -f.error if f.error else None, origin)

    @property
    def is_userfault(self) -> bool:
        return bool(self.flags & FaultFlag.USERFAULT)

    @property
    def is_private(self) -> bool:
        return bool(self.flags & FaultFlag.PRIVATE)

    @property
    def is_hwpoison(self) -> bool:
        return bool(self.flags & FaultFlag.HWPOISON)


@dataclass(frozen=True)
class ExitVmm:
    """An ordinary exit: handle it through ``Vcpu.kvm_run``.

    ``reason`` is an :class:`ExitReason` (an ``IntEnum``: it compares equal
    to the raw number), or the plain ``int`` for a reason this module does
    not name.
    """

    reason: Union[ExitReason, int]
    #: the port access of an IO exit, decoded when the exit came back (not
    #: compared: ``ExitVmm(ExitReason.IO)`` matches any IO exit)
    io: Optional["Io"] = field(default=None, compare=False)
    #: the MMIO access of an MMIO exit, decoded likewise
    mmio: Optional["Mmio"] = field(default=None, compare=False)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "reason", ExitReason(self.reason))
        except ValueError:
            pass


@dataclass(frozen=True)
class ExitMemoryFault:
    """A memory fault no handler resolved."""

    fault: Fault


@dataclass(frozen=True)
class ExitInterrupted:
    """KVM_RUN was interrupted by a kick or a signal."""


@dataclass(frozen=True)
class ExitRetry:
    """KVM asked to be called again (EAGAIN)."""


Exit = Union[ExitVmm, ExitMemoryFault, ExitInterrupted, ExitRetry]


@dataclass(frozen=True)
class Features:
    flags: FeatureFlag
    memory_attributes: int
    guest_memfd_flags: int
    arch: Arch
    userfault_probe_error: Optional[int]
    page_size: int

    @property
    def kvm_userfault(self) -> bool:
        return bool(self.flags & FeatureFlag.KVM_USERFAULT)


def _struct_to_dict(s: ctypes.Structure) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for name, _ in s._fields_:  # type: ignore[attr-defined]
        if name == "reserved":
            continue
        v = getattr(s, name)
        out[name] = list(v) if isinstance(v, ctypes.Array) else v
    return out


@dataclass(frozen=True)
class VcpuStats:
    runs: int
    exits: int
    memory_faults: int
    userfaults: int
    page_ins: int
    page_waits: int
    conversions: int
    hwpoison: int
    other_faults: int
    to_vmm: int
    retries: int
    repeat_trips: int
    interrupted: int
    handler_ns: int
    uffd_faults: int
    uffd_wait_ns: int


@dataclass(frozen=True)
class RegionInfo:
    gpa: int
    size: int
    hva: int
    npages: int
    page_size: int
    bitmap: int
    flags: int
    slot: int


@dataclass(frozen=True)
class UffdStats:
    features: int
    faults: int
    page_ins: int
    kvm_page_ins: int
    waits: int
    unknown: int
    errors: int
    last_error_addr: int
    last_error_gpa: int
    last_error: int
    last_error_tid: int
    latency_p50_ns: int
    latency_p99_ns: int
    latency_max_ns: int
    latency: List[int]


def version() -> Tuple[int, int]:
    """The loaded library's (major, minor)."""
    return lib.memfault_version_major(), lib.memfault_version_minor()


def arch_reads_back_exit(arch: Arch, exit_reason: int) -> bool:
    """memfault_arch_reads_back_exit()."""
    return bool(_check(lib.memfault_arch_reads_back_exit(int(arch), exit_reason),
                       "memfault_arch_reads_back_exit"))


def page_size() -> int:
    return mmap.PAGESIZE


# ---- guest memory ------------------------------------------------------------


class GuestMemory:
    """Page-aligned host memory from mmap(), shared with the guest.

    ``read``/``write``/``fill`` copy with the GIL released (ctypes.memmove),
    so a copy that faults on a userfaultfd-registered page can be served by
    a Python page-in handler on another thread.
    """

    def __init__(self, m: mmap.mmap, size: int) -> None:
        self._mmap: Optional[mmap.mmap] = m
        self._anchor: Optional[ctypes.Array] = (ctypes.c_char * size).from_buffer(m)
        self.address: int = ctypes.addressof(self._anchor)
        self.size = size
        self._accessible = True

    @classmethod
    def anonymous(cls, size: int) -> "GuestMemory":
        """Private anonymous memory, zeroed."""
        return cls(mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS), size)

    @classmethod
    def map_shared(cls, fd: int, size: int, offset: int = 0) -> "GuestMemory":
        """A shared mapping of a memfd or guest_memfd."""
        return cls(mmap.mmap(fd, size, flags=mmap.MAP_SHARED, offset=offset), size)

    def __len__(self) -> int:
        return self.size

    def _range(self, offset: int, n: int) -> int:
        if self._mmap is None:
            raise MemfaultError(_errno.EBADF, "GuestMemory")
        if not self._accessible:
            raise MemfaultError(_errno.EFAULT, "GuestMemory")
        if offset < 0 or n < 0 or offset + n > self.size:
            raise MemfaultError(_errno.ERANGE, "GuestMemory")
        return self.address + offset

    def read(self, offset: int, n: int) -> bytes:
        buf = ctypes.create_string_buffer(n)
        ctypes.memmove(buf, self._range(offset, n), n)
        return buf.raw

    def write(self, offset: int, data: bytes) -> None:
        ctypes.memmove(self._range(offset, len(data)), data, len(data))

    def fill(self, offset: int, n: int, byte: int) -> None:
        ctypes.memset(self._range(offset, n), byte, n)

    def set_accessible(self, accessible: bool) -> None:
        """mprotect() to PROT_NONE (False) or read-write (True); while
        inaccessible, read/write/fill raise EFAULT instead of crashing."""
        prot = (mmap.PROT_READ | mmap.PROT_WRITE) if accessible else 0
        if self._mmap is None:
            raise MemfaultError(_errno.EBADF, "GuestMemory")
        if _ffi.libc.mprotect(self.address, self.size, prot):
            raise MemfaultError(ctypes.get_errno(), "mprotect")
        self._accessible = accessible

    def close(self) -> None:
        if self._mmap is not None:
            self._anchor = None
            self._mmap.close()
            self._mmap = None

    def __enter__(self) -> "GuestMemory":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- kvm_run -----------------------------------------------------------------


@dataclass(frozen=True)
class Mmio:
    phys_addr: int
    data: bytes  #: the ``len`` bytes written (for a write)
    len: int
    is_write: bool


class IoDirection(enum.IntEnum):
    """``kvm_run.io.direction`` (``KVM_EXIT_IO_IN``, ``KVM_EXIT_IO_OUT``)."""

    IN = 0  #: the guest reads; the VMM supplies the data
    OUT = 1  #: the guest writes


@dataclass(frozen=True)
class Io:
    direction: Union[IoDirection, int]  #: an IoDirection (a raw int if unknown)
    size: int
    port: int
    count: int
    data_offset: int

    IN = IoDirection.IN
    OUT = IoDirection.OUT

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "direction", IoDirection(self.direction))
        except ValueError:
            pass


class KvmRun:
    """A view of a ``struct kvm_run`` (a vCPU's mapping or a KvmRunBuffer)."""

    def __init__(self, address: int, limit: Optional[int] = None, owner: Any = None) -> None:
        self.address = address
        self._limit = limit
        self._owner = owner  # keeps the memory alive
        self._head = _ffi.KvmRunHead.from_address(address)

    @property
    def exit_reason(self) -> int:
        return self._head.exit_reason

    @exit_reason.setter
    def exit_reason(self, value: int) -> None:
        self._head.exit_reason = value

    @property
    def immediate_exit(self) -> bool:
        return bool(self._head.immediate_exit)

    def set_memory_fault(self, flags: int, gpa: int, size: int) -> None:
        mf = self._head.u.memory_fault
        mf.flags, mf.gpa, mf.size = flags, gpa, size

    @property
    def mmio(self) -> Optional[Mmio]:
        if self.exit_reason != ExitReason.MMIO:
            return None
        m = self._head.u.mmio
        n = min(m.len, 8)
        return Mmio(m.phys_addr, bytes(m.data)[:n], m.len, bool(m.is_write))

    def set_mmio_data(self, data: bytes) -> None:
        """The data of an MMIO read (up to 8 bytes)."""
        d = self._head.u.mmio.data
        for i, b in enumerate(data[:8]):
            d[i] = b

    @property
    def io(self) -> Optional[Io]:
        if self.exit_reason != ExitReason.IO:
            return None
        i = self._head.u.io
        return Io(i.direction, i.size, i.port, i.count, i.data_offset)

    def _io_range(self) -> Tuple[int, int]:
        io = self.io
        if io is None:
            raise MemfaultError(_errno.ENODATA, "KvmRun.io_data")
        n = io.size * io.count
        if io.data_offset < _ffi.KVM_RUN_SIZE or (
                self._limit is not None and io.data_offset + n > self._limit):
            raise MemfaultError(_errno.ERANGE, "KvmRun.io_data")
        return self.address + io.data_offset, n

    @property
    def io_data(self) -> bytes:
        """The port IO data (``size * count`` bytes)."""
        addr, n = self._io_range()
        return ctypes.string_at(addr, n)

    @io_data.setter
    def io_data(self, data: bytes) -> None:
        addr, n = self._io_range()
        if len(data) != n:
            raise MemfaultError(_errno.EINVAL, "KvmRun.io_data")
        ctypes.memmove(addr, data, n)


class KvmRunBuffer(KvmRun):
    """A zeroed 4 KiB buffer laid out as ``struct kvm_run``, for synthetic
    exits and classify_exit()."""

    def __init__(self) -> None:
        buf = (ctypes.c_uint64 * 512)()
        super().__init__(ctypes.addressof(buf), ctypes.sizeof(buf), buf)


def _decode(r: int, run: Callable[[], "KvmRun"], fault: Callable[[], Fault]) -> Exit:
    if r == _ffi.MEMFAULT_RUN_EXIT:
        kr = run()
        return ExitVmm(kr.exit_reason, io=kr.io, mmio=kr.mmio)
    if r == _ffi.MEMFAULT_RUN_MEMORY_FAULT:
        return ExitMemoryFault(fault())
    if r == _ffi.MEMFAULT_RUN_INTERRUPTED:
        return ExitInterrupted()
    if r == _ffi.MEMFAULT_RUN_RETRY:
        return ExitRetry()
    raise MemfaultError(_errno.EPROTO, "memfault_vcpu_run")


def prepare_exit(run: KvmRun, arch: Arch) -> None:
    """memfault_exit_prepare(): get a kvm_run ready for a KVM_RUN the VMM makes
    itself, as Vcpu.run() does; call it before each KVM_RUN whose result goes
    to classify_exit() (a leftover memory fault would read as a fresh one)."""
    _check(lib.memfault_exit_prepare(run.address, int(arch)), "memfault_exit_prepare")


def classify_exit(run: KvmRun, ioctl_ret: int, err: int) -> Exit:
    """memfault_exit_classify(): classify a KVM_RUN result the VMM got itself
    (after prepare_exit()); a result that is not one raises EPROTO."""
    f = _ffi.Fault()
    r = _check(lib.memfault_exit_classify(run.address, ioctl_ret, err, ctypes.byref(f),
                                          ctypes.sizeof(f)), "memfault_exit_classify")
    return _decode(r, lambda: run, lambda: Fault._from_c(f))


# ---- handlers ----------------------------------------------------------------


class VcpuRef:
    """The vCPU a handler runs for (borrowed for the call)."""

    def __init__(self, ptr: int) -> None:
        self._ptr = ptr

    @property
    def fd(self) -> int:
        return _check(lib.memfault_vcpu_get_fd(self._ptr), "memfault_vcpu_get_fd")

    def kick(self) -> None:
        _check(lib.memfault_vcpu_kick(self._ptr), "memfault_vcpu_kick")

    def stats(self) -> VcpuStats:
        return _vcpu_stats(self._ptr)


class PageIn:
    """A page-in request: fill page ``page`` of ``region``, claimed for
    this call alone. Write it with ``write``/``fill`` (to wherever the
    library asks: the hva, a bounce buffer or an alias)."""

    def __init__(self, vcpu: Optional[VcpuRef], region: "RegionRef", page: int,
                 hva: Optional[int], page_size: int) -> None:
        self.vcpu = vcpu
        self.region = region
        self.page = page
        self.hva = hva
        self.page_size = page_size

    @property
    def gpa(self) -> int:
        return self.region.info().gpa + self.page * self.page_size

    def _range(self, offset: int, n: int) -> int:
        if self.hva is None:
            raise MemfaultError(_errno.EFAULT, "PageIn")
        if offset < 0 or n < 0 or offset + n > self.page_size:
            raise MemfaultError(_errno.ERANGE, "PageIn")
        return self.hva + offset

    def write(self, offset: int, data: bytes) -> None:
        ctypes.memmove(self._range(offset, len(data)), data, len(data))

    def fill(self, byte: int) -> None:
        ctypes.memset(self._range(0, self.page_size), byte, self.page_size)


PageInFn = Callable[[PageIn], Optional[Verdict]]
FaultFn = Callable[[Optional[VcpuRef], Fault], Optional[Verdict]]
DiscardFn = Callable[[int, int, bool], Optional[Verdict]]
LogFn = Callable[[int, str], None]


@dataclass
class Handlers:
    """A VM's fault handlers (unset ones keep the library's default).

    Each callable may run on several vCPU threads at once (and page_in() on
    the userfaultfd service thread): make it thread-safe. It returns a
    Verdict (None means RESOLVED); an OSError it raises fails the call with
    its errno; any other exception with ECANCELED. Neither crashes: the run
    raises it again (chained) in the vCPU's thread, and exceptions from
    other threads are kept for ``Vm.take_handler_exception()``.
    """

    page_in: Optional[PageInFn] = None
    convert: Optional[FaultFn] = None
    discard: Optional[DiscardFn] = None
    hwpoison: Optional[FaultFn] = None
    other: Optional[FaultFn] = None
    log: Optional[LogFn] = None
    max_repeats: int = 0


class _HandlerState:
    """The C trampolines for one Handlers (kept alive by the Vm)."""

    def __init__(self, h: Handlers, regions: Dict[int, "Region"]) -> None:
        self.h = h
        self.regions = regions  # the VM's, to hand handlers the Region objects
        self._lock = threading.Lock()
        self.pending: Dict[int, BaseException] = {}
        self.c = _ffi.Handlers()
        self.c.sz = ctypes.sizeof(_ffi.Handlers)
        self.c.max_repeats = h.max_repeats
        # keep the CFUNCTYPE objects: C holds their addresses
        self._cbs: List[Any] = []
        for name, ctype, tramp in (
            ("page_in", _ffi.PAGE_IN_FN, self._page_in),
            ("convert", _ffi.FAULT_FN, self._fault("convert")),
            ("discard", _ffi.DISCARD_FN, self._discard),
            ("hwpoison", _ffi.FAULT_FN, self._fault("hwpoison")),
            ("other", _ffi.FAULT_FN, self._fault("other")),
            ("log", _ffi.LOG_FN, self._log),
        ):
            if getattr(h, name) is not None:
                cb = ctype(tramp)
                self._cbs.append(cb)
                setattr(self.c, name, cb)

    def _stash(self, exc: BaseException) -> None:
        with self._lock:
            self.pending[threading.get_ident()] = exc

    def take(self, ident: Optional[int] = None) -> Optional[BaseException]:
        with self._lock:
            if ident is not None:
                return self.pending.pop(ident, None)
            if self.pending:
                return self.pending.pop(next(iter(self.pending)))
            return None

    def _call(self, fn: Callable[[], Optional[Verdict]]) -> int:
        try:
            v = fn()
            if v is None:
                return _ffi.MEMFAULT_RESOLVED
            if isinstance(v, int) and v in (Verdict.RESOLVED, Verdict.TO_VMM):
                return int(v)
            raise TypeError(f"a handler returned {v!r}, not a Verdict")
        except BaseException as e:  # never let anything unwind into C
            self._stash(e)
            if isinstance(e, OSError) and isinstance(e.errno, int) and 0 < e.errno < 4096:
                return -e.errno
            return -HANDLER_FAILED

    def _page_in(self, user: int, vcpu: Optional[int], region: Optional[int], page: int,
                 hva: Optional[int], page_size: int) -> int:
        h = self.h.page_in
        assert h is not None and region is not None
        r = self.regions.get(region) or RegionRef(region)
        return self._call(lambda: h(PageIn(VcpuRef(vcpu) if vcpu else None,
                                           r, page, hva or None, page_size)))

    def _fault(self, name: str) -> Callable[..., int]:
        def tramp(user: int, vcpu: Optional[int], fault: Any) -> int:
            h = getattr(self.h, name)
            f = Fault._from_c(fault.contents)
            return self._call(lambda: h(VcpuRef(vcpu) if vcpu else None, f))
        return tramp

    def _discard(self, user: int, gpa: int, size: int, to_private: int) -> int:
        h = self.h.discard
        assert h is not None
        return self._call(lambda: h(gpa, size, bool(to_private)))

    def _log(self, user: int, level: int, message: Optional[bytes]) -> None:
        h = self.h.log
        try:
            assert h is not None
            h(level, (message or b"").decode(errors="replace"))
        except BaseException as e:
            self._stash(e)


# ---- the objects ---------------------------------------------------------------


class _Gate:
    """The C "setup call" rules (see the Rust crate's gate.rs).

    Region new/free and set_handlers must not run while a vCPU of the VM is
    in run_dispatch() or another thread looks regions up: they raise EBUSY
    then (``setup``). Freeing a userfaultfd waits for dispatches only
    (``quiesce``): its page-in handlers may still look regions up. A lookup
    from the thread inside a setup call passes.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._dispatch = 0
        self._lookup = 0
        self._setup: Optional[int] = None
        self._quiesce = False

    @contextmanager
    def enter(self, dispatch: bool) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            self._cond.wait_for(lambda: not (
                (self._setup is not None and (self._setup != me or dispatch))
                or (dispatch and self._quiesce)))
            if dispatch:
                self._dispatch += 1
            else:
                self._lookup += 1
        try:
            yield
        finally:
            with self._cond:
                if dispatch:
                    self._dispatch -= 1
                else:
                    self._lookup -= 1
                self._cond.notify_all()

    @contextmanager
    def setup(self, function: str, wait: bool = False) -> Iterator[None]:
        with self._cond:
            def busy() -> bool:
                return bool(self._dispatch or self._lookup or self._setup is not None or self._quiesce)
            if wait:
                self._cond.wait_for(lambda: not busy())
            elif busy():
                raise MemfaultError(_errno.EBUSY, function)
            self._setup = threading.get_ident()
        try:
            yield
        finally:
            with self._cond:
                self._setup = None
                self._cond.notify_all()

    @contextmanager
    def quiesce(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not (self._dispatch or self._setup is not None or self._quiesce))
            self._quiesce = True
        try:
            yield
        finally:
            with self._cond:
                self._quiesce = False
                self._cond.notify_all()


class Vm:
    """A VM object (memfault_vm_new()) wrapping a KVM VM fd.

    Thread-safe. Use as a context manager, or call close(). Regions and
    userfaultfds belong to the VM and are closed with it; vCPUs keep it
    alive and must be closed first.
    """

    def __init__(self, vm_fd: int, *, arch: Arch = Arch.HOST, own_fd: bool = True,
                 no_userfault_probe: bool = False, probe_gpa: int = 0,
                 probe_slot: int = 0, kvm_fd: int = -1) -> None:
        o = _ffi.VmOpts(sz=ctypes.sizeof(_ffi.VmOpts), probe_gpa=probe_gpa,
                        kvm_fd=kvm_fd, arch=int(arch), probe_slot=probe_slot)
        o.flags = (_ffi.MEMFAULT_VM_OWN_FD if own_fd else 0) | (
            _ffi.MEMFAULT_VM_NO_USERFAULT_PROBE if no_userfault_probe else 0)
        p = ctypes.c_void_p()
        _check(lib.memfault_vm_new(vm_fd, ctypes.byref(o), ctypes.byref(p)), "memfault_vm_new")
        self._ptr: Optional[int] = p.value
        self._gate = _Gate()
        self._handlers: Optional[_HandlerState] = None
        self._orphans: List[BaseException] = []
        self._regions: Dict[int, "Region"] = {}
        self._uffds: List["Uffd"] = []
        self._vcpus: "weakref.WeakSet[Vcpu]" = weakref.WeakSet()
        self._lock = threading.Lock()

    def _p(self) -> int:
        if self._ptr is None:
            raise MemfaultError(_errno.EBADF, "Vm (closed)")
        return self._ptr

    @property
    def fd(self) -> int:
        return _check(lib.memfault_vm_get_fd(self._p()), "memfault_vm_get_fd")

    def features(self) -> Features:
        f = _ffi.Features()
        _check(lib.memfault_vm_get_features(self._p(), ctypes.byref(f), ctypes.sizeof(f)),
               "memfault_vm_get_features")
        return Features(FeatureFlag(f.flags), f.memory_attributes, f.guest_memfd_flags,
                        Arch(f.arch), -f.userfault_probe_error or None, f.page_size)

    def new_vcpu(self, vcpu_fd: int, *, own_fd: bool = True, kick_signal: int = 0,
                 no_signal_handler: bool = False) -> "Vcpu":
        return Vcpu(self, vcpu_fd, own_fd=own_fd, kick_signal=kick_signal,
                    no_signal_handler=no_signal_handler)

    def add_region(self, slot: int, gpa: int, memory: Optional[GuestMemory] = None, *,
                   size: Optional[int] = None, userfault: bool = False,
                   missing: bool = False, no_memslot: bool = False,
                   guest_memfd: Optional[int] = None, guest_memfd_offset: int = 0,
                   kvm_flags: int = 0) -> "Region":
        """memfault_region_new(): a memslot (unless no_memslot) backed by
        ``memory`` (all of it unless ``size``) and its bitmap."""
        if size is None:
            if memory is None:
                raise MemfaultError(_errno.EINVAL, "memfault_region_new")
            size = memory.size
        elif memory is not None and size > memory.size:
            raise MemfaultError(_errno.EINVAL, "memfault_region_new")
        flags = ((_ffi.MEMFAULT_REGION_USERFAULT if userfault else 0)
                 | (_ffi.MEMFAULT_REGION_MISSING if missing else 0)
                 | (_ffi.MEMFAULT_REGION_NO_MEMSLOT if no_memslot else 0)
                 | (_ffi.MEMFAULT_REGION_GUEST_MEMFD if guest_memfd is not None else 0))
        o = _ffi.RegionOpts(sz=ctypes.sizeof(_ffi.RegionOpts), flags=flags,
                            guest_memfd_offset=guest_memfd_offset,
                            guest_memfd=-1 if guest_memfd is None else guest_memfd,
                            kvm_flags=kvm_flags)
        p = ctypes.c_void_p()
        with self._gate.setup("memfault_region_new"):
            _check(lib.memfault_region_new(self._p(), slot, gpa, size,
                                           memory.address if memory else None,
                                           ctypes.byref(o), ctypes.byref(p)),
                   "memfault_region_new")
            assert p.value is not None
            r = Region(self, p.value, memory)
            self._regions[p.value] = r
        return r

    def find_region(self, gpa: int) -> Tuple["Region", int]:
        """memfault_vm_find_region(): the region holding ``gpa`` and the
        page index of ``gpa`` in it."""
        p, page = ctypes.c_void_p(), ctypes.c_uint64()
        with self._gate.enter(dispatch=False):
            _check(lib.memfault_vm_find_region(self._p(), gpa, ctypes.byref(p), ctypes.byref(page)),
                   "memfault_vm_find_region")
        assert p.value is not None
        return self._regions[p.value], page.value

    def set_handlers(self, handlers: Optional[Handlers]) -> None:
        """memfault_vm_set_handlers(); None clears them."""
        state = _HandlerState(handlers, self._regions) if handlers is not None else None
        with self._gate.setup("memfault_vm_set_handlers"):
            _check(lib.memfault_vm_set_handlers(self._p(), ctypes.byref(state.c) if state else None),
                   "memfault_vm_set_handlers")
            if self._handlers is not None:
                self._orphans += list(self._handlers.pending.values())
            self._handlers = state

    def take_handler_exception(self) -> Optional[BaseException]:
        """An exception a handler raised that no run re-raised (e.g. in the
        userfaultfd service thread), or None."""
        if self._orphans:
            return self._orphans.pop(0)
        return self._handlers.take() if self._handlers else None

    def new_uffd(self, *, service_thread: bool = False) -> "Uffd":
        return Uffd(self, service_thread=service_thread)

    def close(self) -> None:
        """Free the userfaultfds, the regions, then the VM object."""
        if self._ptr is None:
            return
        if any(v._ptr is not None for v in list(self._vcpus)):
            raise MemfaultError(_errno.EBUSY, "memfault_vm_free (close the vCPUs first)")
        for u in list(self._uffds):
            u.close()
        for r in list(self._regions.values()):
            r.close()
        lib.memfault_vm_free(self._ptr)
        self._ptr = None

    def __enter__(self) -> "Vm":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if self._ptr is not None and not any(v._ptr is not None for v in list(self._vcpus)):
                self.close()
        except Exception:
            pass


def _vcpu_stats(ptr: int) -> VcpuStats:
    s = _ffi.VcpuStats()
    _check(lib.memfault_vcpu_get_stats(ptr, ctypes.byref(s), ctypes.sizeof(s)),
           "memfault_vcpu_get_stats")
    return VcpuStats(**_struct_to_dict(s))


class Vcpu:
    """A vCPU object (memfault_vcpu_new()). Run it from one thread at a
    time (a second concurrent run raises EBUSY); kick() from anywhere."""

    def __init__(self, vm: Vm, vcpu_fd: int, *, own_fd: bool = True, kick_signal: int = 0,
                 no_signal_handler: bool = False) -> None:
        o = _ffi.VcpuOpts(sz=ctypes.sizeof(_ffi.VcpuOpts), kick_signal=kick_signal)
        o.flags = (_ffi.MEMFAULT_VCPU_OWN_FD if own_fd else 0) | (
            _ffi.MEMFAULT_VCPU_NO_SIGNAL_HANDLER if no_signal_handler else 0)
        p = ctypes.c_void_p()
        _check(lib.memfault_vcpu_new(vm._p(), vcpu_fd, ctypes.byref(o), ctypes.byref(p)),
               "memfault_vcpu_new")
        self.vm = vm
        self._ptr: Optional[int] = p.value
        self._run_lock = threading.Lock()
        self._uffds: "weakref.WeakSet[Uffd]" = weakref.WeakSet()
        vm._vcpus.add(self)

    def _p(self) -> int:
        if self._ptr is None:
            raise MemfaultError(_errno.EBADF, "Vcpu (closed)")
        return self._ptr

    @property
    def fd(self) -> int:
        return _check(lib.memfault_vcpu_get_fd(self._p()), "memfault_vcpu_get_fd")

    @property
    def kvm_run(self) -> KvmRun:
        """The vCPU's kvm_run (memfault_vcpu_get_run()), for ordinary exits;
        valid until the vCPU is closed."""
        r = ctypes.c_void_p()
        _check(lib.memfault_vcpu_get_run(self._p(), ctypes.byref(r)), "memfault_vcpu_get_run")
        assert r.value is not None
        return KvmRun(r.value, None, self)

    @contextmanager
    def _running(self, function: str) -> Iterator[int]:
        if not self._run_lock.acquire(blocking=False):
            raise MemfaultError(_errno.EBUSY, function)
        try:
            yield self._p()
        finally:
            self._run_lock.release()

    def _exit(self, r: int, function: str) -> Exit:
        _check(r, function)
        return _decode(r, lambda: self.kvm_run, self.fault)

    def run(self) -> Exit:
        """One KVM_RUN, classified (memfault_vcpu_run())."""
        with self._running("memfault_vcpu_run") as p:
            r = lib.memfault_vcpu_run(p)
        return self._exit(r, "memfault_vcpu_run")

    def run_dispatch(self) -> Exit:
        """Run until an exit the VMM must see, resolving memory faults with
        the VM's handlers (memfault_vcpu_run_dispatch()). A handler's
        exception is raised again here, chained."""
        me = threading.get_ident()
        with self._running("memfault_vcpu_run_dispatch") as p:
            state = self.vm._handlers
            if state:
                state.take(me)
            with self.vm._gate.enter(dispatch=True):
                r = lib.memfault_vcpu_run_dispatch(p)
        exc = state.take(me) if state else None
        if r < 0 and exc is not None:
            if isinstance(exc, OSError) and exc.errno == -r:
                raise MemfaultError(-r, "memfault_vcpu_run_dispatch") from exc
            raise HandlerError("memfault_vcpu_run_dispatch") from exc
        if exc is not None and self.vm._handlers is state:
            # a log() exception: nothing failed, keep it for the VMM
            self.vm._orphans.append(exc)
        return self._exit(r, "memfault_vcpu_run_dispatch")

    def fault(self) -> Fault:
        """The fault of the last run that returned one (else ENODATA)."""
        f = _ffi.Fault()
        _check(lib.memfault_vcpu_get_fault(self._p(), ctypes.byref(f), ctypes.sizeof(f)),
               "memfault_vcpu_get_fault")
        return Fault._from_c(f)

    def kick(self) -> None:
        """memfault_vcpu_kick(): thread-safe; no kick is lost."""
        _check(lib.memfault_vcpu_kick(self._p()), "memfault_vcpu_kick")

    def stats(self) -> VcpuStats:
        return _vcpu_stats(self._p())

    def close(self) -> None:
        if self._ptr is None:
            return
        if any(u._ptr is not None for u in list(self._uffds)):
            raise MemfaultError(_errno.EBUSY, "memfault_vcpu_free (remove it from its Uffd first)")
        if not self._run_lock.acquire(blocking=False):
            raise MemfaultError(_errno.EBUSY, "memfault_vcpu_free (the vCPU runs)")
        try:
            lib.memfault_vcpu_free(self._ptr)
            self._ptr = None
        finally:
            self._run_lock.release()

    def __enter__(self) -> "Vcpu":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if self._ptr is not None and not any(u._ptr is not None for u in list(self._uffds)):
                self.close()
        except Exception:
            pass


class RegionRef:
    """The bitmap operations of a region; thread-safe. Region subclasses
    it; page-in handlers get one."""

    def __init__(self, ptr: int) -> None:
        self._ptr: Optional[int] = ptr

    def _p(self) -> int:
        if self._ptr is None:
            raise MemfaultError(_errno.EBADF, "Region (closed)")
        return self._ptr

    def info(self) -> RegionInfo:
        i = _ffi.RegionInfo()
        _check(lib.memfault_region_get_info(self._p(), ctypes.byref(i), ctypes.sizeof(i)),
               "memfault_region_get_info")
        return RegionInfo(**_struct_to_dict(i))

    @property
    def npages(self) -> int:
        return self.info().npages

    def mark_missing(self, first: int, count: int = 1) -> None:
        _check(lib.memfault_region_mark_missing(self._p(), first, count),
               "memfault_region_mark_missing")

    def publish(self, first: int, count: int = 1) -> None:
        _check(lib.memfault_region_publish(self._p(), first, count), "memfault_region_publish")

    def is_missing(self, page: int) -> bool:
        return bool(_check(lib.memfault_region_is_missing(self._p(), page),
                           "memfault_region_is_missing"))

    def _find(self, fn: Any, name: str, start: int) -> Optional[int]:
        out = ctypes.c_uint64()
        r = fn(self._p(), start, ctypes.byref(out))
        if r == -_errno.ENOENT:
            return None
        _check(r, name)
        return out.value

    def find_missing(self, start: int = 0) -> Optional[int]:
        return self._find(lib.memfault_region_find_missing, "memfault_region_find_missing", start)

    def find_present(self, start: int = 0) -> Optional[int]:
        return self._find(lib.memfault_region_find_present, "memfault_region_find_present", start)

    def count_missing(self) -> int:
        out = ctypes.c_uint64()
        _check(lib.memfault_region_count_missing(self._p(), ctypes.byref(out)),
               "memfault_region_count_missing")
        return out.value

    def claim(self, page: int, nowait: bool = False) -> Claim:
        """memfault_region_claim(); waits with the GIL released."""
        return Claim(_check(lib.memfault_region_claim(
            self._p(), page, _ffi.MEMFAULT_CLAIM_NOWAIT if nowait else 0), "memfault_region_claim"))

    def abort(self, page: int) -> None:
        _check(lib.memfault_region_abort(self._p(), page), "memfault_region_abort")

    @contextmanager
    def fetching(self, page: int) -> Iterator[bool]:
        """Claim ``page``: yields True if this thread must fetch it, then
        publishes it, or aborts the claim if the block raises; yields
        False if it is present."""
        if self.claim(page) != Claim.FETCH:
            yield False
            return
        try:
            yield True
        except BaseException:
            self.abort(page)
            raise
        self.publish(page)


class Region(RegionRef):
    """A region (memfault_region_new()); closed with its VM at the latest.
    close() is a setup call: EBUSY while a vCPU runs run_dispatch()."""

    def __init__(self, vm: Vm, ptr: int, memory: Optional[GuestMemory]) -> None:
        super().__init__(ptr)
        self._vm = weakref.ref(vm)
        self.memory = memory

    def close(self) -> None:
        vm = self._vm()
        if self._ptr is None or vm is None:
            return
        with vm._gate.setup("memfault_region_free"):
            lib.memfault_region_free(self._ptr)
            vm._regions.pop(self._ptr, None)
            self._ptr = None

    def __enter__(self) -> "Region":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Uffd:
    """A userfaultfd serving the VM's regions with its page_in() handler
    (memfault_uffd_new()). Thread-safe; closed with its VM at the latest."""

    def __init__(self, vm: Vm, *, service_thread: bool = False) -> None:
        o = _ffi.UffdOpts(sz=ctypes.sizeof(_ffi.UffdOpts),
                          flags=_ffi.MEMFAULT_UFFD_SERVICE_THREAD if service_thread else 0)
        p = ctypes.c_void_p()
        _check(lib.memfault_uffd_new(vm._p(), ctypes.byref(o), ctypes.byref(p)), "memfault_uffd_new")
        self._ptr: Optional[int] = p.value
        self._vm = weakref.ref(vm)
        self._keep: List[Any] = []  # registered regions and aliases
        self._vcpus: List[Vcpu] = []
        self._lock = threading.Lock()
        vm._uffds.append(self)

    def _p(self) -> int:
        if self._ptr is None:
            raise MemfaultError(_errno.EBADF, "Uffd (closed)")
        return self._ptr

    def fileno(self) -> int:
        """The userfaultfd: poll it for POLLIN, then call service()."""
        return _check(lib.memfault_uffd_get_fd(self._p()), "memfault_uffd_get_fd")

    def service(self, max_events: int = 64) -> int:
        """Handle the queued faults (GIL released while waiting in C)."""
        return _check(lib.memfault_uffd_service(self._p(), max_events), "memfault_uffd_service")

    def register(self, region: Region, mode: UffdMode = UffdMode.MISSING,
                 alias: Optional[GuestMemory] = None) -> None:
        _check(lib.memfault_uffd_register(self._p(), region._p(), int(mode),
                                          alias.address if alias else None),
               "memfault_uffd_register")
        self._keep += [region, alias]

    def add_vcpu(self, vcpu: Vcpu) -> None:
        with self._lock:
            _check(lib.memfault_uffd_add_vcpu(self._p(), vcpu._p()), "memfault_uffd_add_vcpu")
            self._vcpus.append(vcpu)
            vcpu._uffds.add(self)

    def remove_vcpu(self, vcpu: Vcpu) -> None:
        with self._lock:
            _check(lib.memfault_uffd_remove_vcpu(self._p(), vcpu._p()), "memfault_uffd_remove_vcpu")
            self._vcpus.remove(vcpu)
            vcpu._uffds.discard(self)

    def stats(self) -> UffdStats:
        s = _ffi.UffdStats()
        _check(lib.memfault_uffd_get_stats(self._p(), ctypes.byref(s), ctypes.sizeof(s)),
               "memfault_uffd_get_stats")
        d = _struct_to_dict(s)
        d["last_error"] = -d["last_error"]
        return UffdStats(**d)

    def close(self) -> None:
        """memfault_uffd_free(): waits until no vCPU runs run_dispatch()."""
        vm = self._vm()
        if self._ptr is None:
            return
        assert vm is not None
        with vm._gate.quiesce():
            lib.memfault_uffd_free(self._ptr)
            self._ptr = None
        for v in self._vcpus:
            v._uffds.discard(self)
        self._vcpus.clear()
        self._keep.clear()
        if self in vm._uffds:
            vm._uffds.remove(self)

    def __enter__(self) -> "Uffd":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
