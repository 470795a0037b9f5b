#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Every function's errors agree between the header and its man page.

The header documents each function's errors with `@retval -EXXX`. A man
page documents the errors of its function group in ERRORS, one `.TP` entry
per errno (`.B \\-EXXX`); the other functions' pages are `.so` links to it.
For each group page, the errnos its ERRORS section lists must be exactly
the union of the @retval errnos of the functions whose page leads to it:
an errno in the header that the page omits, or one on the page that no
function of the group documents, is a disagreement.

Usage: check-errors.py HEADER MAN_DIR MAPFILE (every symbol of the map is
checked)
Exits 1 listing each disagreement, 0 when they agree.
"""
import os
import re
import sys


def header_errors(path):
    """{function: set of errnos} from the doc comment before each
    declaration."""
    text = open(path, encoding='utf-8').read()
    out = {}
    for m in re.finditer(r'/\*\*((?:(?!/\*\*).)*?)\*/\s*((?:const\s+|struct\s+\w+\s*\*?\s*|\w+\s+)*)(memfault_\w+)\s*\(',
                         text, re.S):
        doc, between, name = m.groups()
        # (the comment is the one right before the declaration: only its
        # return type lies between them)
        out[name] = set(re.findall(r'@retval\s+-(E[A-Z0-9]+)', doc))
    return out


def man_target(man_dir, name):
    """The page the function's man page leads to (following .so)."""
    path = os.path.join(man_dir, name + '.3')
    if not os.path.exists(path):
        return None
    first = open(path, encoding='utf-8').readline().strip()
    m = re.fullmatch(r'\.so\s+man3/(\S+)\.3', first)
    return m.group(1) if m else name


def man_errors(path):
    section, errs, tp = None, set(), False
    for line in open(path, encoding='utf-8'):
        line = line.rstrip('\n')
        if line.startswith('.SH'):
            section = line[3:].strip().strip('"')
            continue
        if section != 'ERRORS':
            continue
        if line == '.TP':
            tp = True
            continue
        if tp:
            # the tag line: .B \-EINVAL, or .BR \-EINVAL " (...)"
            errs.update(re.findall(r'\\-(E[A-Z0-9]+)', line))
        tp = False
    return errs


def map_symbols(path):
    text = re.sub(r'/\*.*?\*/', '', open(path, encoding='utf-8').read(), flags=re.S)
    return set(re.findall(r'^\s*(memfault_\w+)\s*;', text, re.M))


def main():
    if len(sys.argv) != 4:
        sys.exit('usage: check-errors.py HEADER MAN_DIR MAPFILE')
    header, man_dir, mapfile = sys.argv[1:]
    funcs = header_errors(header)
    groups = {}
    bad = []
    for name in sorted(map_symbols(mapfile) - set(funcs)):
        bad.append('%s: exported, but no doc comment found right before its declaration' % name)
    for name, errs in sorted(funcs.items()):
        page = man_target(man_dir, name)
        if page is None:
            bad.append('%s: no man page %s.3' % (name, name))
            continue
        groups.setdefault(page, {})[name] = errs
    for page, members in sorted(groups.items()):
        on_page = man_errors(os.path.join(man_dir, page + '.3'))
        in_header = set().union(*members.values())
        for e in sorted(in_header - on_page):
            who = ', '.join(n for n, s in sorted(members.items()) if e in s)
            bad.append('%s.3: ERRORS has no -%s (header @retval of %s)' % (page, e, who))
        for e in sorted(on_page - in_header):
            bad.append('%s.3: ERRORS lists -%s, which no @retval of %s has'
                       % (page, e, ', '.join(sorted(members))))
    for b in bad:
        print(b)
    print('%d functions, %d man pages, %d disagreements'
          % (len(funcs), len(groups), len(bad)))
    sys.exit(1 if bad else 0)


if __name__ == '__main__':
    main()
