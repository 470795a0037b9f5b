# SPDX-License-Identifier: MIT
"""A PEP 517 build backend for the memfault bindings, standard library only.

Why not setuptools: `pip install bindings/python` builds in an isolated
environment and downloads the backend named in pyproject.toml; offline, in
a plain venv (which has pip but no setuptools or wheel), that fails. This
package is pure Python with no build step: a wheel is a zip of src/memfault
plus the metadata, which the standard library can write. pip finds this
module through `backend-path` in pyproject.toml, so it needs nothing else.

It reads the few fields it needs from pyproject.toml ([project] name,
version, description, requires-python, license), with tomllib where Python
has it (3.11) and a line reader otherwise (the file is ours and simple).
"""
import base64
import hashlib
import io
import os
import re
import tarfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = 'memfault'
SRC = os.path.join(ROOT, 'src', PACKAGE)
# zip and tar entries get a fixed time: the same tree gives the same wheel
EPOCH = int(os.environ.get('SOURCE_DATE_EPOCH', '315532800'))


def _project():
    with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
        raw = f.read()
    try:
        import tomllib
        p = tomllib.loads(raw.decode())['project']
        lic = p.get('license', {})
        return {'name': p['name'], 'version': p['version'],
                'description': p.get('description', ''),
                'requires-python': p.get('requires-python', ''),
                'license': lic.get('text', '') if isinstance(lic, dict) else lic}
    except ImportError:
        pass
    out, section = {}, None
    for line in raw.decode().splitlines():
        m = re.match(r'^\[(.+)\]\s*$', line)
        if m:
            section = m.group(1)
            continue
        if section != 'project':
            continue
        m = re.match(r'^([\w-]+)\s*=\s*"(.*)"\s*$', line)
        if m:
            out[m.group(1)] = m.group(2)
        m = re.match(r'^license\s*=\s*\{\s*text\s*=\s*"(.*)"\s*\}', line)
        if m:
            out['license'] = m.group(1)
    return out


def _metadata(p):
    lines = ['Metadata-Version: 2.1', 'Name: ' + p['name'], 'Version: ' + p['version'],
             'Summary: ' + p.get('description', '')]
    if p.get('license'):
        lines.append('License: ' + p['license'])
    if p.get('requires-python'):
        lines.append('Requires-Python: ' + p['requires-python'])
    lines.append('Provides-Extra: test')
    lines.append('Requires-Dist: pytest; extra == "test"')
    lines.append('Requires-Dist: hypothesis; extra == "test"')
    return '\n'.join(lines) + '\n'


def _sources():
    """(path in the wheel, file on disk) of the package, sorted."""
    out = []
    for d, dirs, files in os.walk(SRC):
        dirs[:] = sorted(x for x in dirs if x != '__pycache__')
        for f in sorted(files):
            if f.endswith(('.py', '.typed')):
                full = os.path.join(d, f)
                out.append((os.path.relpath(full, os.path.dirname(SRC)).replace(os.sep, '/'), full))
    return out


def _dist_info(p):
    return '%s-%s.dist-info' % (p['name'].replace('-', '_'), p['version'])


def _wheel_name(p):
    return '%s-%s-py3-none-any.whl' % (p['name'].replace('-', '_'), p['version'])


def _write_wheel(path, p, files):
    """files: [(arcname, bytes)]; writes the metadata and RECORD too."""
    di = _dist_info(p)
    files = list(files) + [
        (di + '/METADATA', _metadata(p).encode()),
        (di + '/WHEEL', b'Wheel-Version: 1.0\nGenerator: memfault_build\n'
                        b'Root-Is-Purelib: true\nTag: py3-none-any\n'),
        (di + '/top_level.txt', (PACKAGE + '\n').encode()),
    ]
    record = []
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            zi = zipfile.ZipInfo(name, time.gmtime(EPOCH)[:6])
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=')
            record.append('%s,sha256=%s,%d' % (name, digest.decode(), len(data)))
        record.append(di + '/RECORD,,')
        zi = zipfile.ZipInfo(di + '/RECORD', time.gmtime(EPOCH)[:6])
        zi.external_attr = 0o644 << 16
        z.writestr(zi, '\n'.join(record) + '\n')


# ---- PEP 517 ---------------------------------------------------------------

def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    p = _project()
    di = os.path.join(metadata_directory, _dist_info(p))
    os.makedirs(di, exist_ok=True)
    with open(os.path.join(di, 'METADATA'), 'w') as f:
        f.write(_metadata(p))
    return _dist_info(p)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    p = _project()
    files = []
    for arc, full in _sources():
        with open(full, 'rb') as f:
            files.append((arc, f.read()))
    name = _wheel_name(p)
    _write_wheel(os.path.join(wheel_directory, name), p, files)
    return name


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """PEP 660: a .pth file that puts src/ on sys.path."""
    p = _project()
    name = _wheel_name(p)
    pth = (os.path.join(ROOT, 'src') + '\n').encode()
    _write_wheel(os.path.join(wheel_directory, name), p, [('_memfault_editable.pth', pth)])
    return name


def build_sdist(sdist_directory, config_settings=None):
    p = _project()
    base = '%s-%s' % (p['name'], p['version'])
    name = base + '.tar.gz'
    paths = ['pyproject.toml', 'build_backend/memfault_build.py']
    paths += [os.path.relpath(full, ROOT) for _, full in _sources()]
    for d in ('tests',):
        for f in sorted(os.listdir(os.path.join(ROOT, d))):
            if f.endswith('.py'):
                paths.append(os.path.join(d, f))
    with tarfile.open(os.path.join(sdist_directory, name), 'w:gz', format=tarfile.PAX_FORMAT) as t:
        def add(arc, data):
            ti = tarfile.TarInfo(base + '/' + arc)
            ti.size, ti.mtime, ti.mode = len(data), EPOCH, 0o644
            t.addfile(ti, io.BytesIO(data))
        for rel in paths:
            with open(os.path.join(ROOT, rel), 'rb') as f:
                add(rel.replace(os.sep, '/'), f.read())
        add('PKG-INFO', _metadata(p).encode())
    return name
