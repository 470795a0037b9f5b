#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The public header stays self-contained and inline-free.

  - it includes <stdint.h> and <stddef.h> and nothing else (no kernel
    header: consumers and bindgen must not need a new <linux/kvm.h>);
  - it has no `static` and no `inline` (no static inline API: every
    function is out of line, so the bindings see one ABI);
  - it has an include guard and an extern "C" block.
"""

import re
import sys

from abi_common import Checker, strip_comments

ALLOWED = {'<stdint.h>', '<stddef.h>'}


def main():
    header = sys.argv[1]
    c = Checker('header-hygiene')
    with open(header, encoding='utf-8') as f:
        text = strip_comments(f.read())
    includes = re.findall(r'^[ \t]*#[ \t]*include[ \t]*([<"][^>"]*[>"])', text, re.M)
    c.check(len(includes) > 0, 'found the #include lines (%s)' % ' '.join(includes))
    for inc in includes:
        c.check(inc in ALLOWED, '#include %s is one of %s' % (inc, ' '.join(sorted(ALLOWED))))
    for word in ('static', 'inline', '__inline', '__inline__'):
        hits = [n + 1 for n, line in enumerate(text.splitlines())
                if re.search(r'\b%s\b' % word, line)]
        c.check(not hits, 'no `%s` (lines: %s)' % (word, hits or 'none'))
    c.check(re.search(r'^#ifndef (\w+)\s*\n#define \1\b', text, re.M) is not None,
            'include guard')
    c.check('extern "C"' in text, 'extern "C" block for C++')
    c.finish()


if __name__ == '__main__':
    main()
