#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Every public struct, struct member and enumerator is pinned in test-abi.c.

test-abi.c pins numbers (sizes, offsets, values); this test makes sure it
keeps up with the header: a struct, field or enumerator added to
include/memfault/memfault.h without a pin_size()/pin_member()/pin_enum() in
tests/abi/test-abi.c fails here, so no part of the ABI goes unpinned.
"""

import re
import sys

from abi_common import Checker, strip_comments


def read_code(path):
    """The file without comments and preprocessor lines (macro bodies)."""
    with open(path, encoding='utf-8') as f:
        text = strip_comments(f.read())
    return re.sub(r'^[ \t]*#(?:[^\n]*\\\n)*[^\n]*', '', text, flags=re.M)


def header_abi(header):
    text = read_code(header)
    structs = {}
    for m in re.finditer(r'\bstruct\s+(\w+)\s*\{([^{}]*)\}', text):
        members = []
        for decl in m.group(2).split(';'):
            decl = decl.strip()
            if not decl:
                continue
            fp = re.search(r'\(\s*\*\s*(\w+)\s*\)', decl)
            name = fp.group(1) if fp else re.search(r'(\w+)\s*(\[[^\]]*\]\s*)*$', decl).group(1)
            members.append(name)
        structs[m.group(1)] = members
    enumerators = []
    for m in re.finditer(r'\benum\s+\w*\s*\{([^{}]*)\}', text):
        for item in m.group(1).split(','):
            item = item.strip()
            if item:
                enumerators.append(re.match(r'(\w+)', item).group(1))
    return structs, enumerators


def pins(test_c):
    text = read_code(test_c)
    sizes = set(re.findall(r'\bpin_size\(\s*(\w+)\s*,', text))
    members = set(re.findall(r'\bpin_member\(\s*(\w+)\s*,\s*(\w+)\s*,', text))
    enums = set(re.findall(r'\bpin_enum\(\s*(\w+)\s*,', text))
    return sizes, members, enums


def main():
    header, test_c = sys.argv[1], sys.argv[2]
    c = Checker('pins-complete')
    structs, enumerators = header_abi(header)
    sizes, members, enums = pins(test_c)
    c.check(len(structs) > 0 and len(enumerators) > 0,
            'header defines %d structs and %d enumerators'
            % (len(structs), len(enumerators)))
    for s, fields in sorted(structs.items()):
        c.check(s in sizes, 'struct %s has a pin_size()' % s)
        missing = [f for f in fields if (s, f) not in members]
        c.check(not missing, 'every member of struct %s is pinned%s'
                % (s, ' (missing: %s)' % ', '.join(missing) if missing else ''))
    missing = [e for e in enumerators if e not in enums]
    c.check(not missing, 'every enumerator is pinned%s'
            % (' (missing: %s)' % ', '.join(missing) if missing else ''))
    stale = sorted(set(sizes) - set(structs)) + sorted(
        '%s.%s' % m for m in members if m[0] not in structs or m[1] not in structs[m[0]])
    c.check(not stale, 'no pin names something the header lacks%s'
            % (' (%s)' % ', '.join(stale) if stale else ''))
    c.finish()


if __name__ == '__main__':
    main()
