#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Fail when the built API reference shows Doxygen markup as text.

Doxygen 1.9.4 gives no warning when a quoted @ref link text is split
across lines: it stops parsing the rest of the paragraph and prints the
commands that follow (@section, @verbatim, ...) and the HTML of the
markdown tables it already produced, escaped, as text. Warnings alone do
not catch that, so this reads every built page and looks at what a reader
sees.

Usage: check-html.py HTML_DIR
Exits 1 listing each page and what was found in it, 0 when clean,
77 (skip) when HTML_DIR has no pages.
"""
import html.parser
import os
import re
import sys

# Doxygen commands (either prefix) that never belong in rendered text.
COMMANDS = ('ref', 'section', 'subsection', 'subsubsection', 'page',
            'mainpage', 'verbatim', 'endverbatim', 'code', 'endcode',
            'include', 'example', 'note', 'retval', 'param', 'return',
            'returns', 'brief', 'since', 'defgroup', 'ingroup', 'addtogroup',
            'link', 'endlink', 'see', 'warning', 'details', 'file')
RAW_COMMAND = re.compile(r'(?<![\w@\\])[@\\](%s)\b' % '|'.join(COMMANDS))
# HTML that Doxygen produced and then escaped: a reader sees the tags.
ESCAPED_TAG = re.compile(r'<\s*/?\s*(table|tr|td|th|tt|div|p|pre|code|a|ul|li|'
                         r'ol|em|b|br|span|h[1-6])\b[^>]*>', re.I)


class Text(html.parser.HTMLParser):
    """The text a reader sees, without code (div.fragment, pre, tt, code):
    an example's source, or a sentence naming `@since`, may legitimately
    show a backslash or an @ command; markup shown by mistake is plain
    text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.depth = 0          # inside a code listing
        self.stack = []
        self.parts = []

    def handle_starttag(self, tag, attrs):
        if tag in ('br', 'img', 'hr', 'meta', 'link', 'input'):
            return
        cls = dict(attrs).get('class') or ''
        code = tag in ('pre', 'tt', 'code', 'script', 'style') or 'fragment' in cls.split()
        self.stack.append((tag, code))
        if code:
            self.depth += 1

    def handle_endtag(self, tag):
        while self.stack:
            t, code = self.stack.pop()
            if code:
                self.depth -= 1
            if t == tag:
                break

    def handle_data(self, data):
        if self.depth == 0:
            self.parts.append(data)


def check_page(path):
    with open(path, encoding='utf-8') as f:
        source = f.read()
    p = Text()
    p.feed(source)
    text = ''.join(p.parts)
    found = []
    for m in RAW_COMMAND.finditer(text):
        found.append('raw Doxygen command %r' % text[max(0, m.start() - 30):m.end() + 30])
    for m in ESCAPED_TAG.finditer(text):
        found.append('escaped HTML %r' % text[max(0, m.start() - 30):m.end() + 30])
    # Doxygen's link colour on its table-header blue is unreadable:
    # doc/memfault.css makes such links white; every page that has one
    # must load it.
    if re.search(r'<th class="markdownTableHead\w*">[^<]*(<[^a/][^>]*>[^<]*)*<a ', source) \
            and 'href="memfault.css"' not in source:
        found.append('a link in a table header, and no memfault.css to make it readable')
    return found


def main():
    if len(sys.argv) != 2:
        sys.exit('usage: check-html.py HTML_DIR')
    top = sys.argv[1]
    pages = sorted(os.path.join(d, f) for d, _, fs in os.walk(top)
                   for f in fs if f.endswith('.html'))
    if not pages:
        print('no HTML pages under %s' % top)
        sys.exit(77)
    bad = 0
    for page in pages:
        found = check_page(page)
        for what in found[:5]:
            print('%s: %s' % (os.path.relpath(page, top), what))
        if len(found) > 5:
            print('%s: ... %d more' % (os.path.relpath(page, top), len(found) - 5))
        bad += bool(found)
    print('%d pages checked, %d with Doxygen markup shown as text' % (len(pages), bad))
    sys.exit(1 if bad else 0)


if __name__ == '__main__':
    main()
