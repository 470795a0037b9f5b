#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The newest node of lib/memfault.map names the release being built.

The root meson.build checks the same at configure time; this test keeps
the rule visible in the test log and also checks the shape of the map:
the first node is MEMFAULT_0.1, node names are unique, ascending
MEMFAULT_<major>.<minor>, each later node inherits the one before it, and
only the first node has the catch-all `local: *;`. (libbpf stops its
build when map and version are "out of sync".)
"""

import re
import sys

from abi_common import Checker, parse_map


def main():
    mapfile, version = sys.argv[1], sys.argv[2]
    c = Checker('map-version')
    nodes = parse_map(mapfile)
    if not c.check(len(nodes) > 0, '%s has version nodes' % mapfile):
        c.finish()
    major, minor = version.split('.')[:2]
    want = 'MEMFAULT_%d.%d' % (int(major), int(minor))
    names = [n[0] for n in nodes]
    c.check(names[-1] == want,
            'newest node %s == %s (project version %s)' % (names[-1], want, version))
    c.check(names[0] == 'MEMFAULT_0.1', 'first node is MEMFAULT_0.1 (got %s)' % names[0])
    c.check(len(names) == len(set(names)), 'node names are unique')
    keys = []
    for name in names:
        m = re.fullmatch(r'MEMFAULT_(\d+)\.(\d+)', name)
        c.check(m is not None, '%s is MEMFAULT_<major>.<minor>' % name)
        if m:
            keys.append((int(m.group(1)), int(m.group(2))))
    c.check(keys == sorted(keys), 'nodes are in ascending version order')
    for i, (name, parent, _, local) in enumerate(nodes):
        want_parent = names[i - 1] if i else None
        c.check(parent == want_parent,
                '%s inherits %s (got %s)' % (name, want_parent, parent))
        want_local = ['*'] if i == 0 else []
        c.check(local == want_local,
                '%s local: is %s (got %s)' % (name, want_local, local))
    c.finish()


if __name__ == '__main__':
    main()
