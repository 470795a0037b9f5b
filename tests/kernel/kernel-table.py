#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""kernel-table.py - the kernel table of doc/kernel-table.md, generated.

    tests/kernel/kernel-table.py [--host BUILD_DIR] [-o OUT.md] WORK_DIR...

Each WORK_DIR is the work directory of one tests/kernel/run-nested.sh ARCH
run ($MEMFAULT_NESTED_WORK/ARCH): its kernels.txt (the exact kernel of every
boot), the consoles <boot>.log (KRES and KSKIP lines), diff-levels.txt (the
simulator level each boot was compared with) and diff.txt (the differential
check's disagreements). --host BUILD_DIR also runs the kernel suite's
executables of that meson build on this machine's /dev/kvm (if it has one)
and adds a column for it; the host has no model to be compared with.

One table per architecture: a row per scenario, a column per kernel. A
cell gives every KVM_RUN of the scenario (memfault_vcpu_run() or
memfault_vcpu_run_dispatch()) in order: what KVM_RUN returned (return value
and errno, and the exit reason the kernel left; the errno is the fault's
when the library took it from errno, as it reports in fault.origin) and,
after ⇒, what the library reported where that is more than EXIT of the
same exit; then whether every step of the scenario equals the simulator
model of that kernel's level ("= model 6.1") or not ("DIFFERS"). A
scenario the kernel lacked a need for shows the need; "-" means the boot
did not run it (the SW_PROTECTED and KVM Userfault kernels run only their
own executable).
A WORK_DIR without kernels.txt is left out, with a note on stderr. Exit
status 0; 1 when there is no result at all.
"""
import argparse
import os
import re
import subprocess
import sys

HOST_EXES = ['exits', 'faults', 'kick', 'features', 'dispatch', 'uffd',
             'swprot', 'userfault']


def fields(line):
    out = {}
    for tok in line.split()[4:]:
        k, _, v = tok.partition('=')
        out[k] = v
    return out


def step_text(f):
    """One KVM_RUN: as the kernel returned it, and what the library made of
    it when that is more than EXIT of the same exit."""
    run = f.get('run', '')
    ex = f.get('exit', '')
    if 'features.flags' in f:
        return 'features %s, gmem flags %s' % (
            f['features.flags'], f.get('features.guest_memfd_flags', '?'))
    if not run:
        return None
    if ex == 'MMIO':
        ex = 'MMIO %s %s' % ('write' if f.get('mmio.write') == '1' else 'read',
                             f.get('mmio.addr', ''))
    elif ex == 'IO':
        ex = ('IO %s %s' % (f.get('io.dir', ''), f.get('io.data', ''))).strip()
    if run == 'EXIT':
        return ex
    if run == 'MEMORY_FAULT':
        err = f.get('fault.error', '?')
        raw = ('-1 %s, exit 39' % err.lstrip('-')
               if f.get('fault.origin') == 'ERRNO' else '0, exit 39')
        return '%s ⇒ MEMORY_FAULT %s flags %s' % (raw, err,
                                                 f.get('fault.flags', '?'))
    if run == 'INTERRUPTED':
        return '-1 EINTR ⇒ INTERRUPTED'
    if run.startswith('-E'):
        lib = run + (', no fault' if f.get('get_fault') == '-ENODATA' else '')
        # dispatch's own verdicts (-ELOOP) are not KVM_RUN's
        if run in ('-ELOOP', '-EPROTO'):
            return lib
        return '-1 %s, exit %s ⇒ %s' % (run[1:], ex, lib)
    return run


MAX_STEPS = 8


class Column:
    def __init__(self, arch, name):
        self.arch = arch
        self.name = name
        self.steps = {}   # scenario -> [step text] of its KVM_RUNs
        self.skip = {}    # scenario -> needs
        self.level = None
        self.differs = set()
        self.ran_any = False

    def read(self, lines):
        for line in lines:
            p = line.split()
            if len(p) >= 4 and p[0] == 'KRES' and p[1] == self.arch:
                self.ran_any = True
                t = step_text(fields(line))
                st = self.steps.setdefault(p[2], [])
                if t:
                    st.append(t)
            elif len(p) >= 4 and p[0] == 'KSKIP' and p[1] == self.arch:
                need = p[3].partition('=')[2]
                old = self.skip.get(p[2])
                self.skip[p[2]] = old + ', ' + need if old else need

    def cell(self, scen):
        if scen in self.steps:
            st = self.steps[scen]
            runs = ' · '.join(st[:MAX_STEPS])
            if len(st) > MAX_STEPS:
                runs += ' · … (%d runs)' % len(st)
            if self.level is None:
                agree = 'no model'
            elif scen in self.differs:
                agree = '**DIFFERS** from model %s' % self.level
            else:
                agree = '= model %s' % self.level
            return '%s; %s' % (runs or 'no KVM_RUN', agree)
        if scen in self.skip:
            return 'skipped: needs %s' % self.skip[scen]
        return '-'


def nested_columns(work):
    kt = os.path.join(work, 'kernels.txt')
    if not os.path.exists(kt):
        print('kernel-table: no %s (run tests/kernel/run-nested.sh first): '
              'left out' % kt, file=sys.stderr)
        return []
    levels = {}
    lv = os.path.join(work, 'diff-levels.txt')
    if os.path.exists(lv):
        for line in open(lv):
            p = line.split()
            if len(p) == 2:
                levels[p[0]] = p[1]
    differs = {}
    df = os.path.join(work, 'diff.txt')
    if os.path.exists(df):
        for line in open(df):
            m = re.match(r'DIFF \[model (\S+)\] (\S+) (\S+)', line)
            if m:
                differs.setdefault((m.group(1), m.group(2)), set()).add(
                    m.group(3).rstrip(':'))
    cols = []
    for line in open(kt):
        arch, boot, release, desc = line.rstrip('\n').split(' ', 3)
        # the scratch paths of the pinned kernels mean nothing to a reader
        desc = re.sub(r' \(/[^)]*\)', '', desc)
        c = Column(arch, '%s<br>%s' % (release, desc))
        c.read(open(os.path.join(work, boot + '.log'), errors='replace'))
        c.level = levels.get(boot)
        c.differs = differs.get((c.level, arch), set())
        cols.append(c)
    return cols


def host_column(build):
    if not os.path.exists('/dev/kvm'):
        return None
    out = []
    backend = release = '?'
    for t in HOST_EXES:
        exe = os.path.join(build, 'tests', 'kernel', 'test-kernel-' + t)
        if not os.access(exe, os.X_OK):
            continue
        r = subprocess.run([exe], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True,
                           errors='replace', timeout=300)
        for line in r.stdout.splitlines():
            m = re.match(r'# kernel (\S+) \S+, backend (\S+)', line)
            if m:
                release, backend = m.group(1), m.group(2)
            if line.startswith('# SKIP:'):
                out.append('HOSTSKIP %s %s' % (t, line[8:]))
        out += r.stdout.splitlines()
    arch = {'x86_64': 'x86_64', 'aarch64': 'arm64'}.get(os.uname().machine)
    c = Column(arch, '%s<br>this host\'s /dev/kvm, backend %s' % (release, backend))
    c.read(out)
    return c if c.ran_any else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--host')
    ap.add_argument('-o', '--output')
    ap.add_argument('work', nargs='*')
    a = ap.parse_args()
    cols = []
    for w in a.work:
        cols += nested_columns(w)
    if a.host:
        h = host_column(a.host)
        if h:
            cols.append(h)
    lines = [
        '<!-- SPDX-License-Identifier: MIT -->',
        '<!-- Generated by tests/kernel/kernel-table.py from run-nested.sh',
        '     runs; do not edit by hand. -->',
        '# What each kernel does, and what libmemfault reports',
        '',
        'The kernel suite (tests/kernel) on every kernel it reaches: Debian\'s',
        'bookworm (6.1), trixie (6.12) and sid 7.2.13 kernels and the 7.2.13',
        'kernels with CONFIG_KVM_SW_PROTECTED_VM and with the KVM Userfault',
        'series, under nested KVM in QEMU, and the /dev/kvm of the machine that',
        'generated the table. Per scenario (tests/kernel/README.md describes',
        'each), every KVM_RUN in order: what the kernel returned (return value and',
        'errno, exit reason; a bare exit name such as `IO out 0x42` means',
        'KVM_RUN returned 0 with that exit), what `memfault_vcpu_run()` or',
        '`memfault_vcpu_run_dispatch()` reported (after ⇒, where it is more',
        'than EXIT of the same exit), and whether every step of the',
        'scenario equals the simulator (tests/sim) at the model of that',
        'kernel\'s level. A scenario whose need the kernel lacks is skipped by',
        'name; `-`: that boot does not run the scenario. The kernel column',
        'gives `uname -r` and the exact package. For the dispatch scenarios a',
        'step is one `memfault_vcpu_run_dispatch()` call, which may have run',
        'KVM_RUN several times (its `-ELOOP` is the library\'s own verdict).',
        '',
    ]
    for arch in ('x86_64', 'arm64'):
        ac = [c for c in cols if c.arch == arch]
        if not ac:
            continue
        scens = []
        for c in ac:
            for s in list(c.steps) + list(c.skip):
                if s not in scens:
                    scens.append(s)
        lines.append('## %s' % arch)
        lines.append('')
        lines.append('| scenario | ' + ' | '.join(c.name for c in ac) + ' |')
        lines.append('|---' * (len(ac) + 1) + '|')
        lines.append('| *scenarios run / skipped for a need* | ' + ' | '.join(
            '%d / %d' % (len(c.steps), len([k for k in c.skip
                                            if k not in c.steps]))
            for c in ac) + ' |')
        for s in scens:
            lines.append('| `%s` | ' % s + ' | '.join(c.cell(s) for c in ac) + ' |')
        lines.append('')
    if not cols:
        print('kernel-table: no kernel results at all', file=sys.stderr)
        return 1
    text = '\n'.join(lines)
    if a.output:
        with open(a.output, 'w') as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
