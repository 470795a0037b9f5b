#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Meson test wrapper for the Python bindings (suite `bindings`):
#
#   run-pytest.sh <source dir bindings/python> [pytest args...]
#
# Uses /usr/bin/python3 or python3, whichever has pytest and hypothesis
# (Debian's python3-pytest, python3-hypothesis); exits 77 (skip) if neither
# has pytest. The environment (LD_PRELOAD, LIBMEMFAULT_PATH, ...) comes
# from bindings/meson.build.
set -eu
src=$1
shift
if [ -n "${MEMFAULT_BINDINGS_SKIP:-}" ]; then
	echo "run-pytest.sh: SKIP: $MEMFAULT_BINDINGS_SKIP" >&2
	exit 77
fi
# Prefer an interpreter with both; without hypothesis the property tests skip.
for need in 'pytest, hypothesis' pytest; do
	for py in /usr/bin/python3 python3; do
		if env -u LD_PRELOAD "$py" -c "import $need" >/dev/null 2>&1; then
			cd "$src"
			exec "$py" -m pytest -q -p no:cacheprovider "$@"
		fi
	done
done
echo "run-pytest.sh: SKIP: no python3 with pytest (apt-get install python3-pytest python3-hypothesis)" >&2
exit 77
