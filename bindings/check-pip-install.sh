#!/bin/sh
# SPDX-License-Identifier: MIT
#
# What a Python user does, offline: a fresh `python3 -m venv`, then
# `pip install bindings/python` with no index (and no network), then the
# package imports from the venv and loads the library built here.
#
#   check-pip-install.sh <source dir bindings/python> <work dir>
#
# LIBMEMFAULT_PATH (from meson) points the bindings at the built library.
# Exits 77 (skip) when python3 has no venv module or the venv no pip
# (Debian: python3-venv).
set -eu
if [ -n "${MEMFAULT_BINDINGS_SKIP:-}" ]; then
	echo "check-pip-install.sh: SKIP: $MEMFAULT_BINDINGS_SKIP" >&2
	exit 77
fi
src=$(cd "$1" && pwd) work=$2
py=/usr/bin/python3
[ -x "$py" ] || py=python3
rm -rf "$work"
mkdir -p "$work"
if ! env -u LD_PRELOAD "$py" -m venv "$work/venv" >"$work/venv.log" 2>&1 ||
	[ ! -x "$work/venv/bin/pip" ]; then
	cat "$work/venv.log"
	echo "check-pip-install.sh: SKIP: $py -m venv gives no pip (apt-get install python3-venv)" >&2
	exit 77
fi
# the source tree as a user has it: a copy, so that nothing is written in ours
cp -r "$src" "$work/src"
rm -rf "$work/src/.pytest_cache" "$work/src/.hypothesis"
env -u LD_PRELOAD PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
	"$work/venv/bin/pip" install "$work/src"
cd "$work"
env -u LD_PRELOAD "$work/venv/bin/python" - "$src/pyproject.toml" <<'PY'
import re, sys
import memfault
want = re.search(r'^version = "([^"]+)"', open(sys.argv[1]).read(), re.M).group(1)
assert memfault.__file__.startswith(sys.prefix), memfault.__file__
assert memfault.__version__ == want, (memfault.__version__, want)
assert memfault.version() == tuple(int(x) for x in want.split(".")[:2]), memfault.version()
assert memfault.ExitReason.HLT == 5 and memfault.IoDirection.OUT == 1
print("installed memfault", memfault.__version__, "from", memfault.__file__,
      "library", memfault.library_path())
PY
# nothing left behind in the source copy (build/, *.egg-info)
left=$(cd "$work/src" && find . -name build -o -name '*.egg-info' -o -name dist)
[ -z "$left" ] || { echo "build leftovers in the source tree: $left" >&2; exit 1; }
