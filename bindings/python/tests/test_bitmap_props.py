# SPDX-License-Identifier: MIT
"""Property tests of the userfault bitmap: random mark/publish/claim/abort
sequences against a Python model (a set of missing pages and a set of
claimed ones), on regions whose sizes straddle bitmap words."""
import errno
import threading

import pytest

pytest.importorskip("hypothesis")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import (  # noqa: E402
    RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test)

import memfault  # noqa: E402
from memfault import Claim, MemfaultError  # noqa: E402

SIZES = st.sampled_from([1, 2, 63, 64, 65, 127, 128, 129, 200]) | st.integers(1, 300)
_gpa = [0x1_0000_0000]


def new_region(vm, npages, missing=False):
    # a bitmap-only region (no memslot), at a fresh address each time
    ps = memfault.page_size()
    _gpa[0] += (npages + 1) * ps
    return vm.add_region(0, _gpa[0], size=npages * ps, no_memslot=True, missing=missing)


def expect_errno(err, fn, *args):
    try:
        fn(*args)
    except MemfaultError as e:
        assert e.errno == err, (fn, args, e)
    else:
        raise AssertionError(f"{fn.__name__}{args} did not fail with {errno.errorcode[err]}")


class BitmapMachine(RuleBasedStateMachine):
    vm = None  # set by the test

    def __init__(self):
        super().__init__()
        self.region = None
        self.n = 0
        self.missing = set()
        self.claimed = set()

    @initialize(npages=SIZES, start_missing=st.booleans())
    def make(self, npages, start_missing):
        self.region = new_region(self.vm, npages, start_missing)
        self.n = npages
        self.missing = set(range(npages)) if start_missing else set()

    def teardown(self):
        if self.region is not None:
            self.region.close()

    def _range(self, data, allow_bad=True):
        first = data.draw(st.integers(0, self.n + (2 if allow_bad else 0)))
        count = data.draw(st.integers(0, self.n + (2 if allow_bad else 0)))
        return first, count

    @precondition(lambda self: self.region is not None)
    @rule(data=st.data())
    def mark_missing(self, data):
        first, count = self._range(data)
        if first > self.n or count > self.n - first:
            expect_errno(errno.EINVAL, self.region.mark_missing, first, count)
            return
        self.region.mark_missing(first, count)
        self.missing |= set(range(first, first + count))

    @precondition(lambda self: self.region is not None)
    @rule(data=st.data())
    def publish(self, data):
        first, count = self._range(data)
        if first > self.n or count > self.n - first:
            expect_errno(errno.EINVAL, self.region.publish, first, count)
            return
        self.region.publish(first, count)
        pages = set(range(first, first + count))
        self.missing -= pages
        self.claimed -= pages  # publishing releases claims too

    @precondition(lambda self: self.region is not None)
    @rule(data=st.data())
    def claim_nowait(self, data):
        page = data.draw(st.integers(0, self.n))
        if page >= self.n:
            expect_errno(errno.EINVAL, self.region.claim, page, True)
            return
        got = self.region.claim(page, nowait=True)
        if page not in self.missing:
            assert got == Claim.PRESENT
        elif page in self.claimed:
            assert got == Claim.BUSY
        else:
            assert got == Claim.FETCH
            self.claimed.add(page)

    @precondition(lambda self: self.region is not None)
    @rule(data=st.data())
    def abort(self, data):
        page = data.draw(st.integers(0, self.n))
        if page >= self.n:
            expect_errno(errno.EINVAL, self.region.abort, page)
        elif page not in self.claimed:
            expect_errno(errno.EPERM, self.region.abort, page)
        else:
            self.region.abort(page)
            self.claimed.discard(page)

    @precondition(lambda self: self.region is not None)
    @rule(data=st.data())
    def find(self, data):
        start = data.draw(st.integers(0, self.n))
        if start >= self.n:
            expect_errno(errno.EINVAL, self.region.find_missing, start)
            expect_errno(errno.EINVAL, self.region.find_present, start)
            return
        want_missing = min((p for p in self.missing if p >= start), default=None)
        want_present = min((p for p in range(start, self.n) if p not in self.missing), default=None)
        assert self.region.find_missing(start) == want_missing
        assert self.region.find_present(start) == want_present

    @precondition(lambda self: self.region is not None)
    @invariant()
    def agrees(self):
        assert self.region.count_missing() == len(self.missing)
        assert {p for p in range(self.n) if self.region.is_missing(p)} == self.missing
        assert self.claimed <= self.missing


def test_bitmap_state_machine(sim):
    s = sim(memfault.Arch.X86_64, "7.2")
    with s.vm() as vm:
        BitmapMachine.vm = vm
        try:
            run_state_machine_as_test(
                BitmapMachine, settings=settings(max_examples=60, stateful_step_count=30))
        finally:
            BitmapMachine.vm = None


def test_claims_across_threads_fetch_each_page_once(sim):
    s = sim(memfault.Arch.ARM64, "7.2")
    with s.vm() as vm:

        @settings(max_examples=15)
        @given(npages=SIZES, pages=st.lists(st.integers(0, 299), min_size=1, max_size=40),
               nthreads=st.integers(2, 6))
        def check(npages, pages, nthreads):
            region = new_region(vm, npages)
            try:
                pages = sorted({p % npages for p in pages})
                for p in pages:
                    region.mark_missing(p)
                fetched = []
                lock = threading.Lock()

                def worker(seed):
                    for p in pages[seed % len(pages):] + pages[:seed % len(pages)]:
                        with region.fetching(p) as mine:  # waits for others' fetches
                            if mine:
                                with lock:
                                    fetched.append(p)
                threads = [threading.Thread(target=worker, args=(i,)) for i in range(nthreads)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(30)
                assert sorted(fetched) == pages
                assert region.count_missing() == 0
            finally:
                region.close()

        check()
