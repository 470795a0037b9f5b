#!/bin/bash
# SPDX-License-Identifier: MIT
# Instructions per resolved KVM Userfault fault (exit to re-entry, without
# the callback's own work) for memfault_vcpu_run_dispatch() and for a
# hand-written loop, in one run on the KVM simulator (callgrind).
#   bench/dispatch-overhead.sh [BUILDDIR] [N]
set -euo pipefail
builddir=${1:-build}
n=${2:-2000}
bin=$builddir/bench/dispatch-overhead
[ -x "$bin" ] || { echo "no $bin: build with ninja -C $builddir" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# total instructions of a function and its callees, over the whole run
ir() { # loop function
	valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$1.$2" \
		--toggle-collect="$2" "$bin" "$1" "$n" >/dev/null 2>"$tmp/vg"
	sed -n 's/^summary: //p' "$tmp/cg.$1.$2" | awk '{print $1}'
}

raw=$(ir raw 'bench_loop*')
lib=$(ir lib 'bench_loop*')
raw_handle=$(ir raw 'handle_fault_raw*')
cb=$(ir lib 'callback*')
awk -v raw="$raw" -v lib="$lib" -v h="$raw_handle" -v cb="$cb" -v n="$n" 'BEGIN {
	rawf = h / n - cb / n          # hand-written steps, callback excluded
	libf = rawf + (lib - raw) / n  # the library: the same plus the difference
	printf "{\"benchmark\":\"resolved_userfault\",\"faults\":%d,", n
	printf "\"raw_ir_per_fault\":%.1f,\"lib_ir_per_fault\":%.1f,\"ratio\":%.3f}\n", rawf, libf, libf / rawf
}'
