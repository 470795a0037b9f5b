#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Generate the bad-input matrix test from include/memfault/memfault.h.

    gen-badinput.py HEADER OUTPUT.c

Every public function the header declares is called once with valid
arguments (the control: it must do what it documents) and then once per bad
value of each parameter, the others staying valid:

  - NULL for every pointer the header does not document as optional;
  - size 0 for a `size_t size` (and sizes 1 and sizeof + 64, which must
    succeed and write exactly min(size, sizeof) bytes);
  - -1, INT_MAX, a closed fd and /dev/null for an fd;
  - out-of-range values for page indices, counts, flags, modes, arches,
    alignments, ioctl results and errnos;
  - malformed option structs: sz 0, sz 4, a non-zero byte past the known
    fields, unknown flags, non-zero reserved fields.

A bad call must return a negative errno (-EINVAL etc. where the header
names one); a void function must simply not crash. Output parameters are
filled with a pattern first and must be untouched after a failed call.
Each case runs in its own Check fork, so a crash fails only that case.

A function in the header without an entry in SPEC below, or an entry
without a function, makes this generator fail: none can be forgotten.
Python 3 standard library only.
"""

import re
import sys

# ---------------------------------------------------------------------------
# How to call each function. Keys: the public functions. Values:
#   valid:   {param: C expression} overriding the defaults by name (DEFAULTS)
#   control: expectation of the valid call: 'ok' (>= 0), 'void', or a C
#            expression the result must equal (e.g. '-ENODATA')
#   bad:     {param: [(C expression, expected)]} added to the automatic
#            bad values; expected is 'errno' (any negative errno), an errno
#            name ('EINVAL'), 'void', 'ok' or a C expression to equal
#   optional: parameters for which NULL is valid (documented)
#   setup:   C statement run before the call (e.g. make a fault pending)
#   needs:   fixture members that must exist ('uffd')
# ---------------------------------------------------------------------------
EINVAL, ERRNO, EBADF, EPROTO = 'EINVAL', 'errno', 'EBADF', 'EPROTO'

SPEC = {
    'memfault_version_major': {'control': 'ok'},
    'memfault_version_minor': {'control': 'ok'},
    'memfault_arch_reads_back_exit': {
        'valid': {'arch': 'MEMFAULT_ARCH_ARM64', 'exit_reason': 'KVM_EXIT_MMIO'},
        'control': '1',
        'bad': {'arch': [('3', EINVAL), ('UINT32_MAX', EINVAL)],
                # any exit_reason is valid: not read back
                'exit_reason': [('64', '0'), ('UINT32_MAX', '0')]},
    },
    'memfault_vm_new': {
        'valid': {'vm_fd': 'fx->vm_fd'},
        'optional': ['opts'],
        'bad': {'vm_fd': [('fx->kvm_fd', EINVAL), ('fx->vcpu_fd', ERRNO)]},
    },
    'memfault_vm_free': {'control': 'void'},
    'memfault_vm_get_fd': {'control': 'fx->vm_fd'},
    'memfault_vm_get_features': {},
    'memfault_vcpu_new': {
        'valid': {'vcpu_fd': 'fx->vcpu_fd'},
        'optional': ['opts'],
    },
    'memfault_vcpu_free': {'control': 'void'},
    'memfault_vcpu_get_fd': {'control': 'fx->vcpu_fd'},
    'memfault_vcpu_get_run': {},
    'memfault_vcpu_run': {'setup': 'fx_script(fx, "hlt");',
                          'control': 'MEMFAULT_RUN_EXIT'},
    'memfault_vcpu_kick': {},
    'memfault_vcpu_get_fault': {
        'setup': 'fx_pending_fault(fx);',
    },
    'memfault_exit_classify': {
        'valid': {'run': 'fx->fault_run', 'ioctl_ret': '-1', 'err': 'EFAULT'},
        'optional': ['ret_fault'],
        'control': 'MEMFAULT_RUN_MEMORY_FAULT',
        # not a system call result (0.1 answered -EINVAL)
        'bad': {'ioctl_ret': [('1', EPROTO), ('-2', EPROTO), ('INT_MIN', EPROTO)],
                'err': [('0', EPROTO), ('-1', EPROTO), ('4096', EPROTO),
                        ('INT_MAX', EPROTO)]},
    },
    'memfault_exit_prepare': {
        'valid': {'run': 'fx->fault_run', 'arch': 'MEMFAULT_ARCH_HOST'},
        'control': '0',
        'bad': {'arch': [('3', EINVAL), ('UINT32_MAX', EINVAL)]},
    },
    'memfault_region_new': {
        'valid': {'slot': '5', 'gpa': 'FX_GPA2', 'size': 'FX_PAGES * fx->page',
                  'hva': 'fx->ram2'},
        'optional': ['opts'],
        'bad': {'gpa': [('FX_GPA2 + 1', EINVAL),
                        ('FX_GPA', 'EEXIST'),  # overlaps the fixture's region
                        ('UINT64_MAX - fx->page + 1', EINVAL)],
                'size': [('0', EINVAL), ('fx->page + 1', EINVAL),
                         ('UINT64_MAX - fx->page + 1', EINVAL)],
                'hva': [('(char *)fx->ram2 + 1', EINVAL)],
                'slot': [('UINT32_MAX', ERRNO)]},
    },
    'memfault_region_free': {'control': 'void'},
    'memfault_vm_find_region': {
        'valid': {'gpa': 'FX_GPA + fx->page'},
        'optional': ['ret_region', 'ret_page'],
        'bad': {'gpa': [('FX_GPA - 1', 'ENOENT'), ('UINT64_MAX', 'ENOENT')]},
    },
    'memfault_region_get_info': {},
    'memfault_region_mark_missing': {
        'valid': {'first': '1', 'count': '2'},
        'bad': {'first': [('FX_PAGES + 1', EINVAL), ('UINT64_MAX', EINVAL)],
                'count': [('FX_PAGES', EINVAL), ('UINT64_MAX', EINVAL)]},
    },
    'memfault_region_publish': {
        'valid': {'first': '1', 'count': '2'},
        'bad': {'first': [('FX_PAGES + 1', EINVAL), ('UINT64_MAX', EINVAL)],
                'count': [('FX_PAGES', EINVAL), ('UINT64_MAX', EINVAL)]},
    },
    'memfault_region_is_missing': {
        'valid': {'page': '0'}, 'control': '1',
        'bad': {'page': [('FX_PAGES', EINVAL), ('UINT64_MAX', EINVAL)]},
    },
    'memfault_region_find_missing': {
        'valid': {'from': '0'},
        'bad': {'from': [('FX_PAGES', EINVAL), ('UINT64_MAX', EINVAL)]},
    },
    'memfault_region_find_present': {
        'valid': {'from': '0'}, 'control': '-ENOENT',
        'bad': {'from': [('FX_PAGES', EINVAL), ('UINT64_MAX', EINVAL)]},
    },
    'memfault_region_count_missing': {},
    'memfault_region_claim': {
        'valid': {'page': '0', 'flags': 'MEMFAULT_CLAIM_NOWAIT'},
        'control': 'MEMFAULT_CLAIM_FETCH',
        'bad': {'page': [('FX_PAGES', EINVAL), ('UINT64_MAX', EINVAL)],
                'flags': [('2', EINVAL), ('UINT32_MAX', EINVAL)]},
    },
    'memfault_region_abort': {
        'setup': 'fx_claim(fx, 0);',
        'valid': {'page': '0'},
        'bad': {'page': [('1', 'EPERM'), ('FX_PAGES', EINVAL),
                         ('UINT64_MAX', EINVAL)]},
    },
    'memfault_vm_set_handlers': {'optional': ['handlers']},
    'memfault_vcpu_run_dispatch': {'setup': 'fx_script(fx, "hlt");',
                                   'control': 'MEMFAULT_RUN_EXIT'},
    'memfault_vcpu_get_stats': {},
    'memfault_uffd_new': {'optional': ['opts'], 'needs': ['uffd']},
    'memfault_uffd_free': {'control': 'void', 'needs': ['uffd']},
    'memfault_uffd_get_fd': {'needs': ['uffd']},
    'memfault_uffd_service': {
        'needs': ['uffd'], 'valid': {'max_events': '4'}, 'control': '0',
        'bad': {'max_events': [('0', EINVAL)]},
    },
    'memfault_uffd_register': {
        'needs': ['uffd'],
        'valid': {'mode': 'MEMFAULT_UFFD_MISSING', 'alias': 'NULL'},
        'optional': ['alias'],
        'bad': {'mode': [('0', EINVAL), ('3', EINVAL), ('UINT32_MAX', EINVAL)],
                'alias': [('fx->ram2', EINVAL)]},
    },
    'memfault_uffd_add_vcpu': {'needs': ['uffd']},
    'memfault_uffd_remove_vcpu': {
        'needs': ['uffd'], 'setup': 'fx_add_vcpu(fx);'},
    'memfault_uffd_get_stats': {'needs': ['uffd']},
}

# Valid values by parameter name, and the objects they need.
DEFAULTS = {
    'vm': 'fx->vm', 'vcpu': 'fx->vcpu', 'region': 'fx->region',
    'uffd': 'fx->uffd', 'run': 'fx->run', 'opts': 'NULL',
    'handlers': 'NULL', 'max_events': '1',
}

# Bad values by fd parameter.
BAD_FDS = [('-1', EBADF), ('INT_MAX', EBADF), ('fx->closed_fd', EBADF),
           ('fx->null_fd', ERRNO)]

HDR_FN = re.compile(r'^\s*(int|void)\s+(memfault_\w+)\s*\(([^)]*)\)\s*;', re.M)
HDR_STRUCT = re.compile(r'struct\s+(memfault_\w+)\s*\{(.*?)\};', re.S)


def die(msg):
    print('gen-badinput.py: ' + msg, file=sys.stderr)
    sys.exit(1)


def parse(header):
    text = re.sub(r'/\*.*?\*/', '', open(header, encoding='utf-8').read(),
                  flags=re.S)
    fns = []
    for m in HDR_FN.finditer(text):
        params = []
        plist = ' '.join(m.group(3).split())
        if plist != 'void':
            for p in plist.split(','):
                p = p.strip()
                pm = re.match(r'(.*?)(\w+)$', p)
                params.append((pm.group(1).strip(), pm.group(2)))
        fns.append((m.group(1), m.group(2), params))
    structs = {}
    for m in HDR_STRUCT.finditer(text):
        fields = re.findall(r'(\w+)\s*(?:\[[^\]]*\])?\s*;', m.group(2))
        structs[m.group(1)] = fields
    return fns, structs


def is_ptr(ctype):
    return '*' in ctype


def out_type(ctype):
    """Pointee of an output parameter `T *name` or `T **name`."""
    return ctype[:-1].strip()


class Gen:
    def __init__(self, structs):
        self.structs = structs
        self.cases = []  # (name, body)

    def case(self, fn, desc, body):
        self.cases.append(('%s: %s' % (fn, desc), body))

    def emit_call(self, ret, fn, params, args, expect, setup, needs,
                  outs, sizes_written=None):
        """One case: prefill outputs, call, check result and outputs."""
        lines = []
        for n in needs:
            lines.append('if (!fx->%s) {\n\t\tFX_SKIP("no %s here");\n'
                         '\t\treturn;\n\t}' % (n, n))
        if setup:
            lines.append(setup)
        if outs:
            lines.append('memset(fx->out, FX_FILL, sizeof(fx->out));')
        call = '%s(%s)' % (fn, ', '.join(args))
        if ret == 'void':
            lines.append(call + ';')
            # the fixture no longer owns what was freed
            lines.append('fx_forget(fx, %s);' % args[0])
            return '\n\t'.join(lines)
        lines.append('r = %s;' % call)
        if expect == 'ok':
            lines.append('FX_OK(r);')
        elif expect == 'errno':
            lines.append('FX_ERRNO(r);')
        elif re.match(r'^E[A-Z0-9]+$', expect):
            lines.append('FX_EQ(r, -%s);' % expect)
        else:
            lines.append('FX_EQ(r, %s);' % expect)
        if outs:
            if sizes_written is None:
                lines.append('if (r < 0)\n\t\tFX_UNTOUCHED(0);')
            else:
                lines.append('if (r >= 0)\n\t\tFX_UNTOUCHED(%s);'
                             % sizes_written)
        # an object a constructor made is freed (valgrind's leak check)
        if self.made:
            lines.append('if (r >= 0)\n\t\t%s(*(%s)fx->out[0]);'
                         % self.made)
        return '\n\t'.join(lines)

    def function(self, ret, fn, params):
        spec = SPEC[fn]
        valid = dict(DEFAULTS)
        valid.update(spec.get('valid', {}))
        optional = set(spec.get('optional', []))
        setup = spec.get('setup', '')
        needs = list(spec.get('needs', []))
        outs = []
        args = {}
        for ctype, name in params:
            if name.startswith('ret_'):
                args[name] = '(%s)fx->out[%d]' % (ctype, len(outs))
                outs.append((name, out_type(ctype)))
            elif name == 'size':
                # the size of the output struct, when there is one
                outp = [t for t, n in params if n.startswith('ret_')]
                args[name] = valid.get(name) if fn == 'memfault_region_new' \
                    else 'sizeof(%s)' % out_type(outp[0]).replace('*', '')
                if fn == 'memfault_region_new':
                    args[name] = valid['size']
            elif name in valid:
                args[name] = valid[name]
            elif name.endswith('_fd'):
                args[name] = 'fx->%s' % name
            else:
                die('%s: no valid value for parameter %s' % (fn, name))
            if args[name] in ('fx->uffd',) and 'uffd' not in needs:
                needs.append('uffd')
        order = [n for _, n in params]
        # a constructor: free what it made
        self.made = None
        m = re.match(r'struct (memfault_\w+) \*\*', params[-1][0]) \
            if params else None
        if m and fn.endswith('_new'):
            self.made = ('%s_free' % m.group(1), 'struct %s **' % m.group(1))
        control = spec.get('control', 'void' if ret == 'void' else 'ok')

        def call_with(override):
            a = dict(args)
            a.update(override)
            return [a[n] for n in order]

        # the control: the valid call does what it documents
        self.case(fn, 'valid call', self.emit_call(
            ret, fn, params, call_with({}), control, setup, needs, []))

        for ctype, name in params:
            bad = []
            if is_ptr(ctype) and name not in optional:
                exp = 'void' if ret == 'void' else EINVAL
                bad.append(('NULL', exp, 'NULL %s' % name))
            if name == 'size' and fn != 'memfault_region_new':
                st = out_type([t for t, n in params if n.startswith('ret_')][0])
                bad.append(('0', EINVAL, 'size 0'))
            if name.endswith('_fd'):
                for v, e in BAD_FDS:
                    bad.append((v, e, '%s = %s' % (name, v)))
            if name in ('opts', 'handlers'):
                st = ctype.replace('const', '').replace('struct', '')
                st = st.replace('*', '').strip()
                fields = self.structs.get(st)
                if not fields:
                    die('%s: no struct %s in the header' % (fn, st))
                for desc, init in self.opts_bad(st, fields):
                    bad.append(('fx_opts_' + init, EINVAL,
                                '%s with %s' % (name, desc)))
            for v, e in spec.get('bad', {}).get(name, []):
                bad.append((v, e, '%s = %s' % (name, v)))
            if not bad and name not in optional and not (
                    name == 'exit_reason'):
                # a parameter for which no value is bad must say so
                if not (ctype.startswith('uint') or ctype == 'int'):
                    die('%s: no bad value for %s' % (fn, name))
            for v, e, desc in bad:
                if v.startswith('fx_opts_'):
                    pre = v[len('fx_opts_'):]
                    body_setup = (setup + '\n\t' if setup else '') + pre
                    v = '(%s)&fx->opts' % ctype
                else:
                    body_setup = setup
                self.case(fn, desc, self.emit_call(
                    ret, fn, params, call_with({name: v}), e, body_setup,
                    needs, outs if ret != 'void' else []))
            if name == 'size' and fn != 'memfault_region_new':
                st = out_type([t for t, n in params if n.startswith('ret_')][0])
                # short and long sizes: exactly min(size, sizeof) written
                for sz, written in (('1', '1'),
                                    ('sizeof(%s) + 64' % st, 'sizeof(%s)' % st)):
                    self.case(fn, 'size %s' % sz, self.emit_call(
                        ret, fn, params, call_with({name: sz}),
                        control if control not in ('ok',) else 'ok', setup,
                        needs, outs, sizes_written=written))

    def opts_bad(self, st, fields):
        """Malformed option structs: (description, C statements)."""
        out = []
        base = 'memset(&fx->opts, 0, sizeof(fx->opts));'
        out.append(('sz 0', base + ' fx->opts.sz = 0;'))
        out.append(('sz 4', base + ' fx->opts.sz = 4;'))
        out.append(('a non-zero byte past the known fields',
                    base + ' fx->opts.sz = sizeof(struct %s) + 8; '
                    'fx->opts.raw[sizeof(struct %s) + 3] = 1;' % (st, st)))
        if 'flags' in fields:
            out.append(('unknown flags', base +
                        ' fx->opts.sz = sizeof(struct %s); '
                        '((struct %s *)&fx->opts)->flags = 1ull << 62;'
                        % (st, st)))
        if 'reserved' in fields:
            out.append(('reserved non-zero', base +
                        ' fx->opts.sz = sizeof(struct %s); '
                        '((struct %s *)&fx->opts)->reserved = 1;' % (st, st)))
        return out


def main():
    if len(sys.argv) != 3:
        die('usage: gen-badinput.py HEADER OUTPUT.c')
    fns, structs = parse(sys.argv[1])
    names = {f[1] for f in fns}
    missing = sorted(names - set(SPEC))
    extra = sorted(set(SPEC) - names)
    if missing:
        die('no bad-input matrix entry for: %s (add them to SPEC)'
            % ', '.join(missing))
    if extra:
        die('matrix entries for functions not in the header: %s'
            % ', '.join(extra))
    g = Gen(structs)
    for ret, fn, params in fns:
        g.function(ret, fn, params)
    with open(sys.argv[2], 'w', encoding='utf-8') as out:
        out.write('/* SPDX-License-Identifier: MIT */\n'
                  '/* Generated by tests/reliability/gen-badinput.py from '
                  'memfault.h: do not edit. */\n'
                  '#include "badinput-fixture.h"\n\n')
        for i, (name, body) in enumerate(g.cases):
            out.write('/* %s */\nstatic void\ncase_%d(struct fx *fx)\n{\n'
                      '\tint r = 0;\n\n\t(void)r;\n\t%s\n}\n\n'
                      % (name, i, body))
        out.write('const struct fx_case fx_cases[] = {\n')
        for i, (name, _) in enumerate(g.cases):
            out.write('\t{ "%s", case_%d },\n' % (name.replace('"', '\\"'), i))
        out.write('};\nconst int fx_nr_cases = %d;\n'
                  'const int fx_nr_functions = %d;\n' % (len(g.cases),
                                                          len(fns)))


main()
