#!/bin/bash
# SPDX-License-Identifier: MIT
# Instructions per memfault_vcpu_run() beyond a raw KVM_RUN loop, and
# syscalls per call, measured in one run on the KVM simulator.
#   bench/run-overhead.sh [BUILDDIR] [N] [NATIVE_N]
# Prints one JSON object. Instruction counts come from callgrind (stable
# on a loaded machine; it does not run the vDSO and counts a system call as
# nothing) and natively from bench/sstep-count (ptrace single-stepping of
# the marked window, vDSO included, system calls counted; NATIVE_N runs,
# default 200: single-stepping is slow); syscalls also from strace -c on the
# same binary.
set -euo pipefail
builddir=${1:-build}
n=${2:-20000}
nn=${3:-200}
bin=$builddir/bench/run-overhead
[ -x "$bin" ] || { echo "no $bin: build with ninja -C $builddir" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ir() { # loop -> total Ir inside bench_loop
	valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$1" \
		--toggle-collect='bench_loop*' "$bin" "$1" "$n" >/dev/null 2>"$tmp/vg.$1"
	sed -n 's/^summary: //p' "$tmp/cg.$1" | awk '{print $1}'
}

syscalls() { # loop -> syscalls made by the whole process
	strace -f -c -o "$tmp/st.$1" "$bin" "$1" "$n" >/dev/null
	awk '/^[ ]*100.00/ || /total$/ {print $(NF-2)}' "$tmp/st.$1" | tail -1
}

# native: "instructions syscalls" of the marked window, or "null null"
native() { # loop
	local j
	j=$("$builddir/bench/sstep-count" "$bin" "$1" "$nn" 2>"$tmp/ss.$1") || j=
	local re='"instructions":([0-9]+),"syscalls":([0-9]+)'
	if [[ $j =~ $re ]]; then
		echo "${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
	else
		echo "null null"
	fi
}

raw=$(ir raw); lib=$(ir lib)
read -r nraw nsraw <<< "$(native raw)"
read -r nlib nslib <<< "$(native lib)"
sraw=$(syscalls raw); slib=$(syscalls lib)
awk -v raw="$raw" -v lib="$lib" -v n="$n" -v sraw="$sraw" -v slib="$slib" \
	-v nn="$nn" -v nraw="$nraw" -v nlib="$nlib" -v nsraw="$nsraw" -v nslib="$nslib" 'BEGIN {
	printf "{\"benchmark\":\"vcpu_run_overhead\",\"iterations\":%d,", n
	printf "\"raw_ir_per_call\":%.1f,\"lib_ir_per_call\":%.1f,", raw/n, lib/n
	printf "\"overhead_ir_per_call\":%.1f,\"ratio\":%.4f,", (lib-raw)/n, lib/raw
	printf "\"raw_syscalls\":%d,\"lib_syscalls\":%d,\"extra_syscalls_per_call\":%.4f,", sraw, slib, (slib-sraw)/n
	if (nraw == "null" || nlib == "null") {
		printf "\"native_iterations\":%d,\"native_raw_per_call\":null,\"native_lib_per_call\":null,", nn
		printf "\"native_overhead_per_call\":null,\"native_extra_syscalls_per_call\":null}\n"
	} else {
		printf "\"native_iterations\":%d,\"native_raw_per_call\":%.1f,\"native_lib_per_call\":%.1f,", nn, nraw/nn, nlib/nn
		printf "\"native_overhead_per_call\":%.1f,\"native_raw_syscalls_per_call\":%.3f,", (nlib-nraw)/nn, nsraw/nn
		printf "\"native_lib_syscalls_per_call\":%.3f,\"native_extra_syscalls_per_call\":%.3f}\n", nslib/nn, (nslib-nsraw)/nn
	}
}'
