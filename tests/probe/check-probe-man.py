#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""memfault-probe(1) documents every option memfault-probe accepts.

usage: check-probe-man.py PROBE MAIN_C MANPAGE

The options the program accepts are read from its source (MAIN_C: the
getopt_long() option string and the struct option table, which must agree)
and from its --help. Each must have a tag of its own in the man page's
OPTIONS section (`.BR \\-x ", " \\-\\-long`) and appear in its SYNOPSIS;
every option the page documents must be accepted by the program. Also, the
page gives the JSON schema number that --version prints.

An option is accepted when `PROBE OPTION [ARG] --help` exits 0: getopt
reads the options in order, and an unknown one exits 2 before --help is
reached, so nothing is probed.
"""
import os
import re
import shlex
import subprocess
import sys

probe, main_c, manpage = sys.argv[1:4]
bad = []


def run(args):
    # a cross build runs the probe under meson's exe wrapper (qemu-user)
    wrapper = shlex.split(os.environ.get('MESON_EXE_WRAPPER', ''))
    p = subprocess.run(wrapper + [probe] + args, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=60, check=False)
    return p.returncode, p.stdout


# The source: { "json", no_argument, NULL, 'j' } and getopt_long(..., "ja:hV", ...)
src = open(main_c, encoding='utf-8').read()
table = re.findall(r'\{\s*"([a-z][a-z-]*)",\s*(no_argument|required_argument),'
                   r'\s*NULL,\s*\'(\w)\'\s*\}', src)
optstring = re.search(r'getopt_long\([^,]+,[^,]+,\s*"([^"]*)"', src)
source = {(short, long) for long, _, short in table}
takes_arg = {long for long, kind, _ in table if kind == 'required_argument'}
if not table or not optstring:
    bad.append('%s: no struct option table or getopt_long() string found' % main_c)
else:
    letters = re.findall(r'(\w)(:?)', optstring.group(1))
    want = {(s, ':' if s in {sh for sh, lo in source if lo in takes_arg} else '')
            for s, _ in source}
    if set(letters) != want:
        bad.append('option string %r does not match the option table %s' %
                   (optstring.group(1), sorted(source)))

# --help: "  -j, --json ..."
rc, text = run(['--help'])
helped = set(re.findall(r'^\s+-(\w), --([a-z][a-z-]*)\b', text, re.M))
if rc != 0 or not helped:
    bad.append('--help: exit %d, no options listed' % rc)
if helped != source:
    bad.append('--help lists %s, the source accepts %s' % (sorted(helped), sorted(source)))

# The man page: the line after each .TP in OPTIONS is a tag.
man = open(manpage, encoding='utf-8').read()
sections = dict(re.findall(r'^\.SH ([A-Z ]+)\n(.*?)(?=^\.SH |\Z)', man, re.M | re.S))
tags = re.findall(r'^\.TP\n(.*)$', sections.get('OPTIONS', ''), re.M)
documented = set()
for tag in tags:
    tag = tag.replace('\\-', '-')
    longs = re.findall(r'--([a-z][a-z-]*)', tag)
    shorts = re.findall(r'(?<![-\w])-(\w)\b', tag)
    if len(longs) != 1 or len(shorts) != 1:
        bad.append('OPTIONS tag %r: not one short and one long option' % tag)
        continue
    documented.add((shorts[0], longs[0]))
synopsis = sections.get('SYNOPSIS', '').replace('\\-', '-')
for short, long in sorted(source | helped):
    if (short, long) not in documented:
        bad.append('-%s/--%s is accepted but has no tag in OPTIONS' % (short, long))
    if not re.search(r'--%s\b' % re.escape(long), synopsis):
        bad.append('--%s is accepted but not in the SYNOPSIS' % long)

# Every documented option is accepted (and an unknown one is not).
for short, long in sorted(documented) + [('Q', 'no-such-option')]:
    for opt in ('-' + short, '--' + long):
        args = [opt] + (['x86_64'] if long in takes_arg else []) + ['--help']
        rc, _ = run(args)
        if (rc == 0) != (long != 'no-such-option'):
            bad.append('%s: exit %d' % (' '.join(args), rc))

# The schema number.
rc, text = run(['--version'])
m = re.search(r'JSON schema (\d+)\)', text)
if not m:
    bad.append('--version: exit %d, %r has no JSON schema' % (rc, text))
elif not re.search(r'\.IR? schema\b.*?\(%s in this version\)' % m.group(1),
                   sections.get('OPTIONS', ''), re.S):
    bad.append('OPTIONS does not describe the schema member as "(%s in this version)"'
               % m.group(1))

for b in bad:
    print('FAIL: ' + b)
print('%d options in the source, %d in --help, %d in the man page; %d problems'
      % (len(source), len(helped), len(documented), len(bad)))
sys.exit(1 if bad else 0)
