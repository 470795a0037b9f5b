#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""What memfault-probe says about itself and in its strings.

usage: check-probe-strings.py PROBE LIBKVMSIM UNAME_SHIM

- --version names the tool's version, the library's and the JSON schema;
- --json has "schema" and "tool_version", and is valid UTF-8 even when the
  system hands it bytes that are not (UNAME_SHIM, preloaded, makes the
  kernel release such a string): each such byte is \\u00XX;
- on the simulator's x86-64 model the architecture line does not cite
  KVM_CAP_ARM_VM_IPA_SIZE (only arm64 KVM answers it); on arm64 it does.
"""
import json
import os
import re
import shlex
import subprocess
import sys

probe, sim, shim = sys.argv[1:4]
bad = []


def run(args, preload=(), **env):
    e = dict(os.environ)
    e.pop('LD_PRELOAD', None)
    e.pop('KVMSIM_SCRIPT', None)
    if preload:
        e['LD_PRELOAD'] = ':'.join(preload)
        # an ASan build puts libasan after the preloaded libraries
        asan = e.get('ASAN_OPTIONS', '')
        e['ASAN_OPTIONS'] = (asan + ':' if asan else '') + 'verify_asan_link_order=0'
    e.update(env)
    # a cross build runs the probe under meson's exe wrapper (qemu-user)
    wrapper = shlex.split(os.environ.get('MESON_EXE_WRAPPER', ''))
    p = subprocess.run(wrapper + [probe] + args, env=e, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60, check=False)
    return p.returncode, p.stdout


rc, out = run(['--version'])
text = out.decode()
m = re.fullmatch(r'memfault-probe (\d+\.\d+\.\d+) \(libmemfault (\d+)\.(\d+), JSON schema (\d+)\)\n', text)
if rc != 0 or not m:
    bad.append('--version: exit %d, %r' % (rc, text))
version = m.group(1) if m else None

rc, out = run(['--json'], preload=[sim, shim], KVMSIM_ARCH='x86_64', KVMSIM_LEVEL='7.2')
try:
    doc = json.loads(out.decode('utf-8', errors='strict'))
except (UnicodeDecodeError, ValueError) as e:
    bad.append('--json with a non-UTF-8 kernel release: %s' % e)
    doc = {}
if doc:
    want = '7.2-\u0080\u00c3(\u00ff-\u00e9-"q"-\u0001'
    if doc.get('host', {}).get('kernel') != want:
        bad.append('host.kernel %r, expected %r' % (doc.get('host', {}).get('kernel'), want))
    if not isinstance(doc.get('schema'), int) or doc['schema'] < 2:
        bad.append('no integer "schema" >= 2: %r' % doc.get('schema'))
    if m and doc.get('schema') != int(m.group(4)):
        bad.append('schema %r, --version says %s' % (doc.get('schema'), m.group(4)))
    if doc.get('tool_version') != version:
        bad.append('tool_version %r, --version says %r' % (doc.get('tool_version'), version))

for arch, cites in (('x86_64', False), ('arm64', True)):
    rc, out = run([], preload=[sim], KVMSIM_ARCH=arch, KVMSIM_LEVEL='7.2')
    line = [l for l in out.decode('utf-8', 'replace').splitlines() if 'architecture:' in l]
    if len(line) != 1 or not line[0].strip().startswith('architecture: ' + arch):
        bad.append('%s: architecture line %r' % (arch, line))
    elif ('KVM_CAP_ARM_VM_IPA_SIZE' in line[0]) != cites:
        bad.append('%s: %r %s KVM_CAP_ARM_VM_IPA_SIZE' % (arch, line[0].strip(),
                                                           'cites' if not cites else 'does not cite'))

for b in bad:
    print(b)
print('%d problems' % len(bad))
sys.exit(1 if bad else 0)
