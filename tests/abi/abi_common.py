# SPDX-License-Identifier: MIT
"""Helpers shared by the ABI test scripts (Python 3 standard library only)."""

import re
import sys

_COMMENT = re.compile(r'/\*.*?\*/|//[^\n]*', re.S)
_NODE = re.compile(r'([A-Za-z_][\w.]*)\s*\{(.*?)\}\s*([A-Za-z_][\w.]*)?\s*;', re.S)


def strip_comments(text):
    """Remove C comments, keeping newlines so that line numbers survive."""
    return _COMMENT.sub(lambda m: '\n' * m.group(0).count('\n') or ' ', text)


def parse_map(path):
    """Parse a GNU ld version script.

    Returns a list of (node, parent, globals, locals) in file order.
    """
    with open(path, encoding='utf-8') as f:
        text = strip_comments(f.read())
    text = re.sub(r'#[^\n]*', '', text)
    nodes = []
    for m in _NODE.finditer(text):
        name, body, parent = m.group(1), m.group(2), m.group(3)
        scopes = {'global': [], 'local': []}
        scope = 'global'
        for item in re.split(r';', body):
            item = item.strip()
            if not item:
                continue
            lab = re.match(r'(global|local)\s*:\s*(.*)', item, re.S)
            if lab:
                scope = lab.group(1)
                item = lab.group(2).strip()
                if not item:
                    continue
            scopes[scope].append(item)
        nodes.append((name, parent, scopes['global'], scopes['local']))
    return nodes


class Checker:
    """Collects failures so that one run reports all of them."""

    def __init__(self, name):
        self.name = name
        self.failures = 0

    def check(self, ok, what, quiet=False):
        """Record one check; quiet ones print only when they fail."""
        if not ok or not quiet:
            print('%s: %s: %s' % (self.name, 'ok' if ok else 'FAIL', what))
        if not ok:
            self.failures += 1
        return ok

    def same_set(self, a_name, a, b_name, b):
        a, b = set(a), set(b)
        ok = self.check(a == b, '%s == %s (%d symbols)' % (a_name, b_name, len(a)))
        if not ok:
            for s in sorted(a - b):
                print('    only in %s: %s' % (a_name, s))
            for s in sorted(b - a):
                print('    only in %s: %s' % (b_name, s))
        return ok

    def finish(self):
        if self.failures:
            print('%s: %d check(s) failed' % (self.name, self.failures))
            sys.exit(1)
        print('%s: all checks passed' % self.name)
        sys.exit(0)
