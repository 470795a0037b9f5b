#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Run one libFuzzer target from its seed corpus without writing to it:
#
#   run-fuzz.sh FUZZER SEED_DIR [RUNS [SECONDS [libFuzzer options...]]]
#
# New inputs go to a temporary corpus that is removed afterwards; a crash,
# leak or timeout input is kept in $MEMFAULT_FUZZ_ARTIFACTS (default: the
# current directory) as crash-*, leak-* or timeout-*. RUNS and SECONDS
# (defaults 20000 and 20) are overridden by MEMFAULT_FUZZ_RUNS and
# MEMFAULT_FUZZ_SECONDS; -1 runs means no limit but the time. The exit
# status is 0 when nothing was found, 1 otherwise (never 77, a skip).
set -euo pipefail

fuzzer=$1
seeds=$2
runs=${MEMFAULT_FUZZ_RUNS:-${3:-20000}}
seconds=${MEMFAULT_FUZZ_SECONDS:-${4:-20}}
shift $(($# < 4 ? $# : 4))
artifacts=${MEMFAULT_FUZZ_ARTIFACTS:-$PWD}
mkdir -p "$artifacts"

work=$(mktemp -d "${TMPDIR:-/tmp}/memfault-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

# -timeout: an input running over 10 s is a hang (a lost wake-up or an
# endless dispatch loop), reported as timeout-*.
# -error_exitcode, -timeout_exitcode: libFuzzer's defaults are 77 and 70,
# and 77 is what meson (and .ci/job-reliability.sh) count as a skip: a
# crash or a failed CHECK would pass as skipped.
"$fuzzer" -runs="$runs" -max_total_time="$seconds" -timeout=10 \
	-error_exitcode=1 -timeout_exitcode=1 \
	-rss_limit_mb=2048 -print_final_stats=1 \
	-artifact_prefix="$artifacts/" "$@" "$work" "$seeds"
