#!/bin/bash
# SPDX-License-Identifier: MIT
# Instructions per resolved KVM Userfault fault (exit to re-entry, without
# the callback's own work) for memfault_vcpu_run_dispatch() and for a
# hand-written loop, in one run on the KVM simulator: callgrind (which does
# not run the vDSO) and natively, by single-stepping the marked window with
# bench/sstep-count (vDSO included). The native figure is a slope: windows
# of 20 and 20 + NATIVE_N faults (default 100) on each side, so the one-time
# costs of the first fault (lazy PLT binding, first-use setup) fall out; they
# are given on their own as the intercept.
#   bench/dispatch-overhead.sh [BUILDDIR] [N] [NATIVE_N]
set -euo pipefail
builddir=${1:-build}
n=${2:-2000}
nn=${3:-100}
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

native() { # loop N -> "instructions syscalls" of the window, or "null null"
	local j
	j=$("$builddir/bench/sstep-count" "$bin" "$1" "$2" 2>"$tmp/ss.$1") || j=
	local re='"instructions":([0-9]+),"syscalls":([0-9]+)'
	if [[ $j =~ $re ]]; then
		echo "${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
	else
		echo "null null"
	fi
}
n1=20
n2=$((n1 + nn))
read -r nraw1 nsraw1 <<< "$(native raw $n1)"
read -r nlib1 nslib1 <<< "$(native lib $n1)"
read -r nraw nsraw <<< "$(native raw $n2)"
read -r nlib nslib <<< "$(native lib $n2)"

raw=$(ir raw 'bench_loop*')
lib=$(ir lib 'bench_loop*')
raw_handle=$(ir raw 'handle_fault_raw*')
cb=$(ir lib 'callback*')
awk -v raw="$raw" -v lib="$lib" -v h="$raw_handle" -v cb="$cb" -v n="$n" \
	-v n1="$n1" -v n2="$n2" -v nraw="$nraw" -v nlib="$nlib" -v nsraw="$nsraw" -v nslib="$nslib" \
	-v nraw1="$nraw1" -v nlib1="$nlib1" -v nsraw1="$nsraw1" -v nslib1="$nslib1" 'BEGIN {
	rawf = h / n - cb / n          # hand-written steps, callback excluded
	libf = rawf + (lib - raw) / n  # the library: the same plus the difference
	printf "{\"benchmark\":\"resolved_userfault\",\"faults\":%d,", n
	printf "\"raw_ir_per_fault\":%.1f,\"lib_ir_per_fault\":%.1f,\"ratio\":%.3f,", rawf, libf, libf / rawf
	printf "\"over_raw_ir_per_fault\":%.1f,", (lib - raw) / n
	if (nraw == "null" || nlib == "null" || nraw1 == "null" || nlib1 == "null") {
		printf "\"native_faults\":%d,\"native_over_raw_per_fault\":null}\n", n2
	} else {
		d1 = nlib1 - nraw1; d2 = nlib - nraw
		printf "\"native_faults\":[%d,%d],\"native_raw_window\":[%d,%d],\"native_lib_window\":[%d,%d],", n1, n2, nraw1, nraw, nlib1, nlib
		printf "\"native_over_raw_per_fault\":%.1f,\"native_over_raw_once\":%.0f,", (d2 - d1) / (n2 - n1), d1 - n1 * (d2 - d1) / (n2 - n1)
		printf "\"native_raw_per_fault\":%.1f,\"native_lib_per_fault\":%.1f,", (nraw - nraw1) / (n2 - n1), (nlib - nlib1) / (n2 - n1)
		printf "\"native_raw_syscalls\":[%d,%d],\"native_lib_syscalls\":[%d,%d],", nsraw1, nsraw, nslib1, nslib
		printf "\"native_extra_syscalls_per_fault\":%.3f}\n", ((nslib - nsraw) - (nslib1 - nsraw1)) / (n2 - n1)
	}
}'
