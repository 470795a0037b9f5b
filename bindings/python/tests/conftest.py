# SPDX-License-Identifier: MIT
"""Fixtures: the KVM simulator (skip, or fail under meson, when it is not
preloaded) and the C layout dump."""
from __future__ import annotations

import gc
import os
import subprocess
import sys
from typing import Callable, Dict, Iterator, List, Tuple

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import kvmsim  # noqa: E402

try:
    from hypothesis import settings
except ImportError:  # test_bitmap_props.py skips itself
    pass
else:
    # Nothing is written to the source tree (no example database).
    settings.register_profile("memfault", database=None, deadline=None)
    settings.load_profile("memfault")


@pytest.fixture
def sim() -> Iterator[Callable[..., kvmsim.Sim]]:
    """sim(arch, level) resets the simulator to that model."""
    if not kvmsim.preloaded():
        if os.environ.get("MEMFAULT_REQUIRE_SIM") == "1":
            pytest.fail("the KVM simulator is not preloaded (LD_PRELOAD=<builddir>/tests/sim/libkvmsim.so)")
        pytest.skip("the KVM simulator is not preloaded")
    made: List[kvmsim.Sim] = []

    def make(arch, level: str = "7.2") -> kvmsim.Sim:
        for s in made:
            s.close()
        gc.collect()  # objects of an earlier model go before its reset
        s = kvmsim.Sim(arch, level)
        made.append(s)
        return s

    yield make
    gc.collect()
    for s in made:
        s.close()


Layout = Tuple[Dict[str, int], Dict[Tuple[str, str], Tuple[int, int]], Dict[str, int]]


@pytest.fixture(scope="session")
def c_layout() -> Layout:
    """(sizes, fields, consts) from the C compiler (bindings/tools/gen-layout-dump.py)."""
    exe = os.environ.get("MEMFAULT_LAYOUT_DUMP")
    if not exe:
        pytest.skip("MEMFAULT_LAYOUT_DUMP (the layout-dump helper meson builds) is not set")
    sizes: Dict[str, int] = {}
    fields: Dict[Tuple[str, str], Tuple[int, int]] = {}
    consts: Dict[str, int] = {}
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # a plain C program
    for line in subprocess.run([exe], check=True, capture_output=True, text=True, env=env).stdout.splitlines():
        kind, *rest = line.split()
        if kind == "size":
            sizes[rest[0]] = int(rest[1])
        elif kind == "field":
            fields[(rest[0], rest[1])] = (int(rest[2]), int(rest[3]))
        elif kind == "const":
            consts[rest[0]] = int(rest[1])
    return sizes, fields, consts
