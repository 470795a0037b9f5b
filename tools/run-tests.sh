#!/bin/bash
# SPDX-License-Identifier: MIT
#
# THE test command of libmemfault (the one the README gives):
#
#   tools/run-tests.sh [meson test options...]
#
# Installs the dependencies (tools/install-deps.sh), configures a build
# directory with -Dwerror=true, builds, runs every meson test suite with
# --print-errorlogs and ends with one line
#
#   N passed, N failed, N skipped
#
# read from the build's meson-logs/testlog.json. Exits non-zero on any
# failure. The `kernel` suite skips (exit 77) where there is no /dev/kvm;
# .ci/run runs it inside nested QEMU guests as a separate job.
#
# Environment:
#   BUILDDIR=build          build directory (relative to the repository)
#   MEMFAULT_SKIP_DEPS=1    do not run tools/install-deps.sh
#   MEMFAULT_SETUP_ARGS=... extra `meson setup` arguments (word-split)
#   CC, CXX                 compilers, read when BUILDDIR is first set up
set -euo pipefail

cd "$(dirname "$0")/.."
builddir=${BUILDDIR:-build}

if [ "${MEMFAULT_SKIP_DEPS:-0}" != 1 ]; then
	tools/install-deps.sh
fi

# A build that fails has failed one test: say so in the closing line too.
build_failed() {
	echo "run-tests.sh: $1 failed" >&2
	echo "0 passed, 1 failed, 0 skipped"
	exit 1
}

read -ra setup_args <<<"${MEMFAULT_SETUP_ARGS:-}"
if [ -f "$builddir/meson-private/coredata.dat" ]; then
	meson setup --reconfigure "$builddir" -Dwerror=true "${setup_args[@]}" ||
		build_failed "meson setup"
else
	meson setup "$builddir" -Dwerror=true "${setup_args[@]}" ||
		build_failed "meson setup"
fi
meson compile -C "$builddir" || build_failed "meson compile"

# A stale log from an earlier run must not be counted.
testlog=$builddir/meson-logs/testlog.json
rm -f "$testlog"
rc=0
meson test -C "$builddir" --print-errorlogs "$@" || rc=$?

if [ ! -f "$testlog" ]; then
	echo "run-tests.sh: meson test wrote no $testlog" >&2
	echo "0 passed, 1 failed, 0 skipped"
	exit 1
fi
# count meson's results; anything not OK/SKIP is a failure.
/usr/bin/python3 -c 'import json,collections,sys;c=collections.Counter(json.loads(l)["result"] for l in open(sys.argv[1]) if l.strip());print("%d passed, %d failed, %d skipped"%(c["OK"]+c["EXPECTEDFAIL"],c["FAIL"]+c["TIMEOUT"]+c["ERROR"]+c["UNEXPECTEDPASS"],c["SKIP"]))' "$testlog"
exit "$rc"
