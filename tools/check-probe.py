#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run memfault-probe on the KVM simulator and check its JSON report.

usage: check-probe.py PROBE LIBKVMSIM CASE

CASE is one of the names in CASES below: an architecture model and kernel
level of the simulator (tests/sim/kvmsim.h), and what the probe must find
there. The values come from the simulator's model of each kernel, which
follows the real kernels (and the nested-KVM measurements of them): 6.1 has
none of KVM_SET_USER_MEMORY_REGION2, MEMORY_FAULT_INFO, MEMORY_ATTRIBUTES or
guest_memfd (all arrived in 6.8); only x86 advertises MEMORY_FAULT_INFO
(arm64 emits the exit without it); MEMORY_ATTRIBUTES answers PRIVATE only
for a VM type with private memory (on /dev/kvm: whether any type has it);
GUEST_MEMFD_FLAGS always has MMAP, and INIT_SHARED unless the VM has private
memory; KVM Userfault (KVM_MEM_USERFAULT) is a proposed series, accepted only
by the '-uf' models.
Everything about userfaultfd comes from the host the test runs on, so only
its shape and its consistency with the decisions are checked.

In a cross build meson sets MESON_EXE_WRAPPER (the probe is passed as a
target, which marks the test as cross-built), and the probe runs under it.
"""

import json
import os
import shlex
import subprocess
import sys

X86_SLOTS = 32764   # KVM_USER_MEM_SLOTS, arch/x86/include/asm/kvm_host.h
ARM64_SLOTS = 32767  # KVM_MEM_SLOTS_NUM = SHRT_MAX
ARM64_IPA = 48       # the simulator's kvm_ipa_limit

NO_CAPS = {
    'USER_MEMORY2': 0, 'MEMORY_FAULT_INFO': 0, 'MEMORY_ATTRIBUTES': 0,
    'GUEST_MEMFD': 0, 'GUEST_MEMFD_FLAGS': 0, 'VM_TYPES': 0,
    'IMMEDIATE_EXIT': 1, 'CHECK_EXTENSION_VM': 1,
}

# name: (KVMSIM_ARCH, KVMSIM_LEVEL, KVMSIM_QUIRKS or None, expectations)
CASES = {
    'x86_64-6.1': ('x86_64', '6.1', None, {
        'arch': 'x86_64',
        'sys_caps': dict(NO_CAPS, NR_MEMSLOTS=X86_SLOTS, ARM_VM_IPA_SIZE=0),
        'vm_types': {0: dict(caps=dict(NO_CAPS, NR_MEMSLOTS=X86_SLOTS),
                             features=[], attributes=0, gmem_flags=0)},
        'use': {'memory_fault_exits': False, 'mmio_readback': False,
                'kicks': True, 'guest_memfd': False,
                'private_conversions': False, 'kvm_userfault': False},
        'why': {'kvm_userfault': 'no KVM_SET_USER_MEMORY_REGION2',
                'memory_fault_exits': 'bare EFAULT'},
    }),
    'x86_64-7.2-uf': ('x86_64', '7.2-uf', None, {
        'arch': 'x86_64',
        # On /dev/kvm, MEMORY_ATTRIBUTES is what some VM type could have.
        'sys_caps': dict(USER_MEMORY2=1, MEMORY_FAULT_INFO=1,
                         MEMORY_ATTRIBUTES=8, GUEST_MEMFD=1,
                         GUEST_MEMFD_FLAGS=3, VM_TYPES=1,
                         NR_MEMSLOTS=X86_SLOTS, ARM_VM_IPA_SIZE=0),
        'vm_types': {0: dict(caps=dict(USER_MEMORY2=1, MEMORY_FAULT_INFO=1,
                                       MEMORY_ATTRIBUTES=0, GUEST_MEMFD=1,
                                       GUEST_MEMFD_FLAGS=3),
                             features=['USER_MEMORY2', 'MEMORY_FAULT_INFO',
                                       'MEMORY_FAULT_EXITS', 'GUEST_MEMFD',
                                       'GUEST_MEMFD_FLAGS', 'KVM_USERFAULT'],
                             attributes=0, gmem_flags=3)},
        'use': {'memory_fault_exits': True, 'mmio_readback': False,
                'kicks': True, 'guest_memfd': True,
                'private_conversions': False, 'kvm_userfault': True,
                'userfault_backend': 'kvm-userfault'},
        'why': {'memory_fault_exits': 'MEMORY_FAULT_INFO is advertised',
                'kvm_userfault': 'accepted'},
    }),
    'x86_64-7.2-swprot': ('x86_64', '7.2', '0x26', {
        'arch': 'x86_64',
        'sys_caps': dict(USER_MEMORY2=1, MEMORY_FAULT_INFO=1,
                         MEMORY_ATTRIBUTES=8, GUEST_MEMFD=1,
                         GUEST_MEMFD_FLAGS=3, VM_TYPES=3),
        'vm_types': {
            0: dict(caps=dict(MEMORY_ATTRIBUTES=0, GUEST_MEMFD_FLAGS=3),
                    features=['USER_MEMORY2', 'MEMORY_FAULT_INFO',
                              'MEMORY_FAULT_EXITS', 'GUEST_MEMFD',
                              'GUEST_MEMFD_FLAGS'],
                    attributes=0, gmem_flags=3),
            # a SW_PROTECTED VM: attribute PRIVATE, guest_memfd flag MMAP only
            # (no INIT_SHARED), as the swprot kernel answers
            1: dict(caps=dict(MEMORY_ATTRIBUTES=8, GUEST_MEMFD_FLAGS=1),
                    features=['USER_MEMORY2', 'MEMORY_FAULT_INFO',
                              'MEMORY_FAULT_EXITS', 'MEMORY_ATTRIBUTES',
                              'GUEST_MEMFD', 'GUEST_MEMFD_FLAGS'],
                    attributes=8, gmem_flags=1, name='sw_protected'),
        },
        'use': {'memory_fault_exits': True, 'private_conversions': True,
                'kvm_userfault': False, 'guest_memfd': True},
        'why': {'private_conversions': '1 (sw_protected)',
                'kvm_userfault': 'rejected KVM_MEM_USERFAULT with EINVAL'},
    }),
    'arm64-6.1': ('arm64', '6.1', None, {
        'arch': 'arm64',
        'sys_caps': dict(NO_CAPS, NR_MEMSLOTS=ARM64_SLOTS,
                         ARM_VM_IPA_SIZE=ARM64_IPA),
        'vm_types': {0: dict(caps=dict(NO_CAPS, NR_MEMSLOTS=ARM64_SLOTS),
                             features=[], attributes=0, gmem_flags=0)},
        'use': {'memory_fault_exits': False, 'mmio_readback': True,
                'kicks': True, 'guest_memfd': False,
                'private_conversions': False, 'kvm_userfault': False},
        'why': {'mmio_readback': 'still KVM_EXIT_MMIO'},
    }),
    'arm64-7.2-uf': ('arm64', '7.2-uf', None, {
        'arch': 'arm64',
        # arm64 never advertises MEMORY_FAULT_INFO, VM_TYPES is x86-only
        'sys_caps': dict(USER_MEMORY2=1, MEMORY_FAULT_INFO=0,
                         MEMORY_ATTRIBUTES=0, GUEST_MEMFD=1,
                         GUEST_MEMFD_FLAGS=3, VM_TYPES=0,
                         NR_MEMSLOTS=ARM64_SLOTS, ARM_VM_IPA_SIZE=ARM64_IPA),
        'vm_types': {0: dict(caps=dict(USER_MEMORY2=1, MEMORY_FAULT_INFO=0,
                                       GUEST_MEMFD=1, GUEST_MEMFD_FLAGS=3),
                             features=['USER_MEMORY2', 'MEMORY_FAULT_EXITS',
                                       'GUEST_MEMFD', 'GUEST_MEMFD_FLAGS',
                                       'KVM_USERFAULT'],
                             attributes=0, gmem_flags=3)},
        'use': {'memory_fault_exits': True, 'mmio_readback': True,
                'kicks': True, 'guest_memfd': True,
                'private_conversions': False, 'kvm_userfault': True,
                'userfault_backend': 'kvm-userfault'},
        'why': {'memory_fault_exits':
                'arm64 delivers them for guest_memfd without advertising '
                'MEMORY_FAULT_INFO'},
    }),
}


class Checker:
    def __init__(self, name):
        self.name = name
        self.failed = 0

    def check(self, ok, what):
        print('%s: %s: %s' % ('ok' if ok else 'FAIL', self.name, what))
        if not ok:
            self.failed += 1

    def eq(self, got, want, what):
        self.check(got == want, '%s = %r (want %r)' % (what, got, want))


def run_probe(probe, env, args):
    wrapper = shlex.split(os.environ.get('MESON_EXE_WRAPPER', ''))
    return subprocess.run(wrapper + [probe] + args, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60, check=False)


def sim_env(libkvmsim, arch, level, quirks):
    env = dict(os.environ)
    env['LD_PRELOAD'] = libkvmsim
    env['KVMSIM_ARCH'] = arch
    env['KVMSIM_LEVEL'] = level
    env.pop('KVMSIM_SCRIPT', None)
    if quirks:
        env['KVMSIM_QUIRKS'] = quirks
    else:
        env.pop('KVMSIM_QUIRKS', None)
    # An ASan build puts libasan after the preloaded simulator.
    asan = env.get('ASAN_OPTIONS', '')
    env['ASAN_OPTIONS'] = (asan + ':' if asan else '') + 'verify_asan_link_order=0'
    return env


def check_userfaultfd(c, rep):
    u = rep['userfaultfd']
    for key in ('dev', 'syscall', 'syscall_user_mode_only', 'api'):
        c.check(isinstance(u[key], bool), 'userfaultfd.%s is a boolean' % key)
    c.check(u['unprivileged_userfaultfd'] in (None, 0, 1),
            'userfaultfd.unprivileged_userfaultfd is null, 0 or 1')
    if u['api']:
        c.eq(u['api_version'], 0xaa, 'userfaultfd.api_version')
        c.check('API' in u['ioctls'] and 'REGISTER' in u['ioctls'],
                'UFFDIO_API lists API and REGISTER (%s)' % u['ioctls'])
    use = rep['libmemfault']
    if not use:
        return  # no decisions without KVM
    # The library's own answer (memfault_uffd_new()) where it has the
    # backend, else what the raw system calls said.
    v0 = rep['kvm']['vm_types'][0]
    have_uffd = v0.get('uffd_backend', u['dev'] or u['syscall'])
    backend = use['userfault_backend']['use']
    if not use['kvm_userfault']['use']:
        c.eq(backend, 'userfaultfd' if have_uffd else 'none',
             'libmemfault.userfault_backend.use without KVM Userfault')


def check_case(c, rep, want):
    kvm = rep['kvm']
    c.eq(rep['exit_code'], 0, 'exit_code')
    c.eq(rep['verdict'], 'usable', 'verdict')
    c.eq(kvm['opened'], True, 'kvm.opened')
    c.eq(kvm['simulated'], True, 'kvm.simulated (a memfd, not a character device)')
    c.eq(kvm['api_version'], 12, 'kvm.api_version')
    c.eq(kvm['arch'], want['arch'], 'kvm.arch')
    c.eq(kvm['arch_from'], 'capabilities', 'kvm.arch_from')
    for cap, value in want['sys_caps'].items():
        c.eq(kvm['capabilities'][cap], value, 'kvm.capabilities.' + cap)

    types = {t['type']: t for t in kvm['vm_types']}
    c.eq(sorted(types), sorted(want['vm_types']), 'VM types probed')
    for t, w in want['vm_types'].items():
        v = types.get(t)
        if v is None:
            continue
        where = 'vm_types[%d]' % t
        c.eq(v['created'], True, where + '.created')
        c.eq(v['wrapped'], True, where + '.wrapped')
        if 'name' in w:
            c.eq(v['name'], w['name'], where + '.name')
        for cap, value in w['caps'].items():
            c.eq(v['capabilities'][cap], value, '%s.capabilities.%s' % (where, cap))
        f = v['features']
        c.eq(f['names'], w['features'], where + '.features.names')
        c.eq(f['memory_attributes'], w['attributes'], where + '.features.memory_attributes')
        c.eq(f['guest_memfd_flags'], w['gmem_flags'], where + '.features.guest_memfd_flags')
        c.eq(f['arch'], want['arch'], where + '.features.arch')
        c.eq(f['kvm_userfault'], 'KVM_USERFAULT' in w['features'],
             where + '.features.kvm_userfault')
        c.eq(f['userfault_probe_error'], None, where + '.features.userfault_probe_error')
        if t == 0:
            c.eq(v.get('vcpu_wrapped'), True, where + '.vcpu_wrapped')

    use = rep['libmemfault']
    for key, value in want['use'].items():
        c.eq(use[key]['use'], value, 'libmemfault.%s.use' % key)
    for key, text in want.get('why', {}).items():
        c.check(text in use[key]['why'],
                'libmemfault.%s.why mentions %r (%r)' % (key, text, use[key]['why']))
    check_userfaultfd(c, rep)


def check_json_run(c, probe, env, args):
    """Run the probe with --json; return (exit status, report or None)."""
    p = run_probe(probe, env, ['--json'] + args)
    try:
        rep = json.loads(p.stdout)
    except ValueError as e:
        c.check(False, 'stdout is one JSON document (%s): %r' % (e, p.stdout[:400]))
        sys.stderr.write(p.stderr)
        return p.returncode, None
    c.check(True, 'stdout is one JSON document')
    c.eq(p.returncode, rep['exit_code'], 'exit status == exit_code')
    return p.returncode, rep


def main():
    probe, libkvmsim, case = sys.argv[1:4]
    c = Checker('memfault-probe ' + case)

    if case == 'usage':
        env = sim_env(libkvmsim, 'x86_64', '7.2', None)
        p = run_probe(probe, env, ['--bogus'])
        c.eq(p.returncode, 2, 'exit status for an unknown option')
        c.check('usage:' in p.stderr, 'usage on stderr')
        p = run_probe(probe, env, ['--arch', 'riscv64'])
        c.eq(p.returncode, 2, 'exit status for an unknown --arch')
        p = run_probe(probe, env, ['extra'])
        c.eq(p.returncode, 2, 'exit status for an extra argument')
        p = run_probe(probe, env, ['--help'])
        c.eq(p.returncode, 0, 'exit status of --help')
        c.check('Exit status:' in p.stdout, '--help documents the exit status')
        p = run_probe(probe, env, [])
        c.eq(p.returncode, 0, 'exit status of the text report')
        c.check('What libmemfault will use' in p.stdout and
                'verdict: usable' in p.stdout, 'text report has the decisions and verdict')
    elif case == 'no-kvm':
        # An invalid model makes the simulator's open("/dev/kvm") fail
        # with EINVAL, as a broken /dev/kvm would.
        env = sim_env(libkvmsim, 'x86_64', 'bogus', None)
        code, rep = check_json_run(c, probe, env, [])
        c.eq(code, 1, 'exit status without a usable /dev/kvm')
        if rep:
            c.eq(rep['kvm']['opened'], False, 'kvm.opened')
            c.eq(rep['kvm']['open_error'], 'EINVAL', 'kvm.open_error')
            c.check('libmemfault' in rep and not rep['libmemfault'],
                    'no decisions without KVM')
            check_userfaultfd(c, rep)
    elif case == 'arch-option':
        # A simulated arm64 KVM on any host: --arch agrees with detection.
        env = sim_env(libkvmsim, 'arm64', '7.2', None)
        code, rep = check_json_run(c, probe, env, ['--arch', 'arm64'])
        c.eq(code, 0, 'exit status')
        if rep:
            c.eq(rep['kvm']['arch'], 'arm64', 'kvm.arch')
            c.eq(rep['kvm']['arch_from'], 'option', 'kvm.arch_from')
            c.eq(rep['libmemfault']['mmio_readback']['use'], True,
                 'libmemfault.mmio_readback.use')
    else:
        arch, level, quirks, want = CASES[case]
        env = sim_env(libkvmsim, arch, level, quirks)
        code, rep = check_json_run(c, probe, env, [])
        c.eq(code, 0, 'exit status')
        if rep:
            check_case(c, rep, want)

    if c.failed:
        print('%s: %d check(s) failed' % (c.name, c.failed))
        sys.exit(1)
    print('%s: all checks passed' % c.name)


if __name__ == '__main__':
    main()
