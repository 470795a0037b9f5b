#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Binding parity: every public C function has a Rust and a Python
counterpart.

    parity-check.py lib/memfault.map bindings/

The public functions are the `global:` symbols of every version node of the
map. For each one:

  Rust    memfault-sys/src/bindings.rs declares it (`pub fn NAME(`), and the
          safe crate (memfault/src/**/*.rs) calls it (`sys::NAME(`);
  Python  _ffi.FUNCTIONS lists it (`"NAME": (`), and the package calls it
          (`lib.NAME`) outside _ffi.py.

It also fails on a binding that names a memfault_* function the map does
not export. Standard library only; prints one line per problem.
"""
import pathlib
import re
import sys


def map_symbols(text):
    syms = set()
    for node in re.finditer(r"^(MEMFAULT_[\w.]+)\s*\{(.*?)\}", text, re.S | re.M):
        body = re.sub(r"/\*.*?\*/", "", node.group(2), flags=re.S)
        glob = re.search(r"global:(.*?)(?:local:|$)", body, re.S)
        if glob:
            syms |= set(re.findall(r"\b(memfault_\w+)\s*;", glob.group(1)))
    return syms


def read_all(paths):
    return "\n".join(p.read_text(encoding="utf-8") for p in paths)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: parity-check.py memfault.map bindings-dir")
    mapfile, root = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    public = map_symbols(mapfile.read_text(encoding="utf-8"))
    if not public:
        sys.exit(f"parity-check: no global symbol found in {mapfile}")

    sys_rs = (root / "rust/memfault-sys/src/bindings.rs").read_text(encoding="utf-8")
    safe_rs = read_all(sorted((root / "rust/memfault/src").rglob("*.rs")))
    pkg = root / "python/src/memfault"
    ffi_py = (pkg / "_ffi.py").read_text(encoding="utf-8")
    other_py = read_all(sorted(p for p in pkg.glob("*.py") if p.name != "_ffi.py"))

    views = {
        "Rust memfault-sys declaration": set(re.findall(r"\bpub fn (memfault_\w+)\s*\(", sys_rs)),
        "Rust safe wrapper": set(re.findall(r"\bsys::(memfault_\w+)\s*\(", safe_rs)),
        "Python _ffi.FUNCTIONS entry": set(re.findall(r"^\s*\"(memfault_\w+)\":\s*\(", ffi_py, re.M)),
        "Python wrapper": set(re.findall(r"\blib\.(memfault_\w+)\b", other_py)),
    }
    problems = []
    for what, have in views.items():
        for s in sorted(public - have):
            problems.append(f"{s}: no {what}")
        for s in sorted(have - public):
            problems.append(f"{s}: {what} for a function {mapfile.name} does not export")
    for p in problems:
        print(f"parity-check: {p}")
    print(f"parity-check: {len(public)} public functions, "
          f"{'all' if not problems else 'NOT all'} covered by Rust and Python")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
