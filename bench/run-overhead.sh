#!/bin/bash
# SPDX-License-Identifier: MIT
# Instructions per memfault_vcpu_run() beyond a raw KVM_RUN loop, and
# syscalls per call, measured in one run on the KVM simulator.
#   bench/run-overhead.sh [BUILDDIR] [N]
# Prints one JSON object. Instruction counts come from callgrind (stable
# on a loaded machine); syscalls from strace -c on the same binary.
set -euo pipefail
builddir=${1:-build}
n=${2:-20000}
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

raw=$(ir raw); lib=$(ir lib)
sraw=$(syscalls raw); slib=$(syscalls lib)
awk -v raw="$raw" -v lib="$lib" -v n="$n" -v sraw="$sraw" -v slib="$slib" 'BEGIN {
	printf "{\"benchmark\":\"vcpu_run_overhead\",\"iterations\":%d,", n
	printf "\"raw_ir_per_call\":%.1f,\"lib_ir_per_call\":%.1f,", raw/n, lib/n
	printf "\"overhead_ir_per_call\":%.1f,\"ratio\":%.4f,", (lib-raw)/n, lib/raw
	printf "\"raw_syscalls\":%d,\"lib_syscalls\":%d,\"extra_syscalls_per_call\":%.4f}\n", sraw, slib, (slib-sraw)/n
}'
