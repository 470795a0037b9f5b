#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Symbol-leak test: four views of the public API must agree.

  1. the dynamic symbols libmemfault.so defines (nm -D --defined-only),
  2. the global: entries of lib/memfault.map,
  3. the functions defined with MEMFAULT_EXPORT in lib/*.c,
  4. the functions declared in include/memfault/memfault.h,

and every exported symbol is a function, versioned as the default (@@)
version of the map node that lists it. (libinput's symbols-leak-test,
extended with the header and the version check.)
"""

import argparse
import glob
import os
import re
import subprocess

from abi_common import Checker, parse_map, strip_comments


def library_symbols(nm, lib):
    """{name: (type, version, default)} of the defined dynamic symbols."""
    out = subprocess.run([nm, '-D', '--defined-only', lib], check=True,
                         stdout=subprocess.PIPE, universal_newlines=True).stdout
    syms = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) != 3:
            continue
        _, typ, name = fields
        if typ == 'A':  # the version node itself, e.g. MEMFAULT_0.1
            continue
        m = re.match(r'([^@]+)(@@?)(.*)$', name)
        if m:
            syms[m.group(1)] = (typ, m.group(3), m.group(2) == '@@')
        else:
            syms[name] = (typ, None, False)
    return syms


def exported_definitions(srcdir):
    names = []
    for path in sorted(glob.glob(os.path.join(srcdir, '*.c'))):
        with open(path, encoding='utf-8') as f:
            text = strip_comments(f.read())
        # MEMFAULT_EXPORT <return type> name(  -- across line breaks
        names += re.findall(r'\bMEMFAULT_EXPORT\b[^;{}()]*?\b([A-Za-z_]\w*)\s*\(',
                            text)
    return names


def header_functions(header):
    with open(header, encoding='utf-8') as f:
        text = strip_comments(f.read())
    # Preprocessor lines (with continuations) declare no function.
    text = re.sub(r'^[ \t]*#(?:[^\n]*\\\n)*[^\n]*', '', text, flags=re.M)
    text = re.sub(r'extern\s*"C"\s*\{', '', text)
    # Drop struct and enum bodies, innermost first, then stray braces.
    while True:
        new = re.sub(r'\{[^{}]*\}', ' ', text)
        if new == text:
            break
        text = new
    text = text.replace('}', ' ')
    names = []
    for stmt in text.split(';'):
        stmt = ' '.join(stmt.split())
        if stmt.startswith('typedef'):
            continue
        # <type> name(  with a non-empty type and no '(' before the name
        m = re.match(r'([^()]*\S)\s*\b([A-Za-z_]\w*)\s*\(', stmt)
        if m and re.search(r'\w', m.group(1)):
            names.append(m.group(2))
    return names


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--nm', required=True)
    ap.add_argument('--lib', required=True)
    ap.add_argument('--map', required=True)
    ap.add_argument('--srcdir', required=True, help='lib/, holding the *.c files')
    ap.add_argument('--header', required=True)
    args = ap.parse_args()

    c = Checker('symbols-leak')
    so = library_symbols(args.nm, args.lib)
    nodes = parse_map(args.map)
    in_map = {}
    for node, _, globs, _ in nodes:
        for g in globs:
            c.check(g not in in_map, 'map lists %s once' % g, quiet=True)
            in_map[g] = node
    exported = exported_definitions(args.srcdir)
    declared = header_functions(args.header)

    c.check(len(so) > 0, '%s exports symbols' % os.path.basename(args.lib))
    c.check(len(exported) == len(set(exported)),
            'each MEMFAULT_EXPORT function is defined once')
    c.check(len(declared) == len(set(declared)),
            'each function is declared once in the header')
    c.same_set('nm -D', so, 'memfault.map global:', in_map)
    c.same_set('nm -D', so, 'MEMFAULT_EXPORT in lib/*.c', exported)
    c.same_set('nm -D', so, os.path.basename(args.header), declared)
    before = c.failures
    for name in sorted(declared):
        c.check(name.startswith('memfault_'),
                '%s carries the memfault_ prefix' % name, quiet=True)
    for name, (typ, version, default) in sorted(so.items()):
        c.check(typ == 'T', '%s is a function (nm type %s)' % (name, typ), quiet=True)
        want = in_map.get(name)
        c.check(default and version == want,
                '%s is versioned @@%s (got %s%s)'
                % (name, want, '@@' if default else '@', version), quiet=True)
    if c.failures == before:
        c.check(True, 'every symbol is a memfault_ function, @@ its map node')
    c.finish()


if __name__ == '__main__':
    main()
