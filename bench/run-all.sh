#!/bin/bash
# SPDX-License-Identifier: MIT
#
# bench/run-all.sh [BUILDDIR] - run every benchmark in bench/, each against
# its baseline in the same run, and regenerate the performance report:
#
#   BUILDDIR/bench-results.json   one object per figure (baseline, library,
#                                 ratio, goal, met), with the machine
#                                 (nproc, CPU model, kernel) and the date
#   doc/performance.md            the same as Markdown tables
#   doc/performance-threads.png   claim contention and userfaultfd faults/s
#                                 at 1, 2, 4 and 8 threads
#
# BUILDDIR (default: build) is configured with -Dwerror=true if it is not
# a meson build directory yet, and built. Raw outputs stay in
# BUILDDIR/bench-run/.
#
# What runs (doc/performance.md says how each figure is measured):
#   bench/run-overhead.sh, bench/dispatch-overhead.sh   callgrind and native
#                                 (bench/sstep-count: ptrace single-step,
#                                 vDSO included), simulator
#   bitmap-bench (5 runs), claim-bench, region-bench     wall clock, medians,
#   uffd-bench                    baseline interleaved; uffd-bench in
#                                 alternating pairs on the same kernel path
#   kvm-run-bench, region-kvm-bench   the host's /dev/kvm (skipped without)
#   bench/peers/                  rust-vmm kvm-ioctls against libmemfault on
#                                 the simulator and on the host's /dev/kvm
#                                 (skipped when the crates cannot be fetched
#                                 or built)
#   bench/nested/                 kvm-run-bench on the pinned Debian 7.2
#                                 kernels under QEMU TCG (skipped without
#                                 them)
#
# Environment:
#   MEMFAULT_BENCH_PEERS=0    skip the kvm-ioctls comparison
#   MEMFAULT_BENCH_NESTED=0   skip the nested 7.2 kernels
#   MEMFAULT_BENCH_CACHE=DIR  where the peer's crates and build go
#                             [BUILDDIR/bench-cache]
#   MEMFAULT_BENCH_DOC=DIR    where performance.md and the PNG go [doc]
#   MEMFAULT_BENCH_REPORT_ONLY=1  run nothing: regenerate the results file
#                             and the report from BUILDDIR/bench-run/ of the
#                             last run (the wall time is then the report's)
# The report is the Python package bench/memfault_bench (standard library,
# and matplotlib for the plot): it makes the results file from the raw
# outputs, then the page and the plot from the results file alone, so that
#   PYTHONPATH=bench python3 -m memfault_bench render BUILDDIR/bench-results.json doc
# regenerates the same page from the same results file.
# Nothing is installed while benchmarking: tools/install-deps.sh installs
# valgrind, strace and python3-matplotlib (without it the plot is made with
# gnuplot, or left out).
# Exit status: 0 when every benchmark ran or was skipped for a stated
# reason (missed goals are results, not failures); 1 when one failed.

# The benchmark functions are called through step(): not unreachable.
# shellcheck disable=SC2317
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$src"
builddir=${1:-build}
mkdir -p "$builddir"
builddir=$(cd "$builddir" && pwd)
out=$builddir/bench-run
cache=${MEMFAULT_BENCH_CACHE:-$builddir/bench-cache}
docdir=${MEMFAULT_BENCH_DOC:-$src/doc}
sim=$builddir/tests/sim/libkvmsim.so
start_all=$SECONDS
failed=0
# other processes' load (1-minute average), at the start and at the end:
# wall-clock figures of a loaded machine say less
read -r load_start _ < /proc/loadavg || load_start=unknown

log() { printf '[run-all %s] %s\n' "$(date +%T)" "$*" >&2; }

if [ "${MEMFAULT_BENCH_REPORT_ONLY:-0}" = 1 ]; then
	[ -f "$out/durations" ] || { log "no $out/durations: run the benchmarks first"; exit 1; }
	read -r load_start < "$out/load-start" || load_start=unknown
	log "report only, from $out"
else
# ---- build ----
if [ ! -f "$builddir/build.ninja" ]; then
	log "configuring $builddir (-Dwerror=true)"
	meson setup "$builddir" -Dwerror=true > "$builddir/setup.log" 2>&1 || {
		cat "$builddir/setup.log" >&2
		exit 1
	}
fi
log "building $builddir"
ninja -C "$builddir" > "$builddir/bench-build.log" 2>&1 || {
	tail -30 "$builddir/bench-build.log" >&2
	exit 1
}
for t in valgrind strace; do
	command -v "$t" > /dev/null || {
		log "$t is needed (Debian: $t; tools/install-deps.sh installs it)"
		exit 1
	}
done
[ -x "$builddir/bench/run-overhead" ] || {
	log "$builddir has no benchmarks (the Check-based tests, hence bench/, are disabled)"
	exit 1
}

rm -rf "$out"
mkdir -p "$out"
: > "$out/durations"

# step NAME COMMAND...: run one benchmark, stdout to $out/NAME.jsonl,
# stderr to $out/NAME.log; exit 77 is "skipped", anything else non-zero a
# failure. The wall time goes to $out/durations.
step() {
	local name=$1 t0=$SECONDS rc=0
	shift
	log "$name: $*"
	"$@" > "$out/$name.jsonl" 2> "$out/$name.log" || rc=$?
	echo "$name $((SECONDS - t0)) $rc" >> "$out/durations"
	if [ "$rc" -eq 77 ]; then
		log "$name: skipped ($(tail -1 "$out/$name.log"))"
	elif [ "$rc" -ne 0 ]; then
		log "$name: FAILED ($rc), see $out/$name.log"
		failed=1
	fi
	return 0
}

# callgrind_ir OUT PROGRAM ARGS...: instructions inside bench_loop (and its
# callees) of one run, or nothing if the run failed.
callgrind_ir() {
	local cg=$1
	shift
	valgrind --tool=callgrind --callgrind-out-file="$cg" \
		--toggle-collect='*bench_loop*' "$@" > "$cg.out" 2> "$cg.err" || return 0
	sed -n 's/^summary: //p' "$cg" | awk '{print $1}'
}

# syscalls OUT PROGRAM ARGS...: system calls of the whole process (strace -c)
syscalls() {
	local st=$1
	shift
	strace -f -c -o "$st" "$@" > /dev/null 2>&1 || return 0
	awk '/total$/ {print $(NF-2)}' "$st" | tail -1
}

# ---- 1. simulator, instruction counts ----
step run_overhead bench/run-overhead.sh "$builddir"
step dispatch_overhead bench/dispatch-overhead.sh "$builddir"

# ---- 2. wall clock, baseline interleaved in the same process ----
bitmap_runs() {
	local i
	for i in 1 2 3 4 5; do
		"$builddir/bench/bitmap-bench" | sed "s/^{/{\"run\":$i,/"
	done
}
step bitmap bitmap_runs
step claim "$builddir/bench/claim-bench"
step region "$builddir/bench/region-bench"
# 1 TiB with its memslot on the host's /dev/kvm: KVM's part, the library's
step region_kvm "$builddir/bench/region-kvm-bench" 1024 5
uffd_runs() {
	local rc=0
	# More pairs than the default 21, and 4x the pages per repetition: at
	# 4096 pages one repetition lasts 20-40 ms, and the pair ratios spread
	# from 0.3 to 3 on a shared 2-CPU machine; at 16384 they last long
	# enough for the scheduler's noise to average out within each.
	"$builddir/bench/uffd-bench" --pages 16384 --reps 41 || rc=$?
	if [ "$rc" -eq 2 ]; then
		echo "uffd-bench: --reps refused, running with its defaults" >&2
		rc=0
		"$builddir/bench/uffd-bench" || rc=$?
	fi
	return "$rc"
}
if [ -x "$builddir/bench/uffd-bench" ]; then
	step uffd uffd_runs
else
	echo "uffd 0 77" >> "$out/durations"
	echo "no uffd-bench in $builddir" > "$out/uffd.log"
	log "uffd: skipped (no uffd-bench in $builddir)"
fi

# ---- 3. the host's /dev/kvm ----
host_kvm() {
	local bin=$builddir/bench/kvm-run-bench rc=0 kind r l
	"$bin" time || rc=$?
	[ "$rc" -eq 0 ] || return "$rc"
	# user-space instructions and system calls per exit, where the exit
	# kind ran (the timing lines say which)
	for kind in io mmio fault; do
		grep -q "\"exit\":\"$kind\",\"kernel\"" "$out/host_kvm.jsonl" || continue
		r=$(callgrind_ir "$out/cg.host.$kind.raw" "$bin" raw "$kind" 20000)
		l=$(callgrind_ir "$out/cg.host.$kind.lib" "$bin" lib "$kind" 20000)
		echo "{\"benchmark\":\"kvm_run_ir\",\"exit\":\"$kind\",\"runs\":20000,\"raw_ir\":${r:-null},\"lib_ir\":${l:-null}}"
		r=$(syscalls "$out/st.host.$kind.raw" "$bin" raw "$kind" 20000)
		l=$(syscalls "$out/st.host.$kind.lib" "$bin" lib "$kind" 20000)
		echo "{\"benchmark\":\"kvm_run_syscalls\",\"exit\":\"$kind\",\"runs\":20000,\"raw_syscalls\":${r:-null},\"lib_syscalls\":${l:-null}}"
	done
}
step host_kvm host_kvm

# ---- 4. peer: rust-vmm kvm-ioctls on the simulator and the host ----
# real_round SIDE ROUND: one process of SIDE timing its run() against its
# raw KVM_RUN loop on the host's /dev/kvm (IO exits), one JSON line
real_round() {
	local j
	if [ "$1" = libmemfault ]; then
		j=$("$builddir/bench/kvm-run-bench" time 50 51 | grep '"exit":"io"' | grep ratio) || j=
		[ -z "$j" ] || echo "{\"benchmark_peer\":\"peer_real_time\",\"side\":\"libmemfault\",\"round\":$2,${j#\{}"
	else
		j=$("$peer" real-time 50 51) || j=
		[ -z "$j" ] || echo "{\"benchmark\":\"peer_real_time\",\"round\":$2,${j#\{}"
	fi
}
peers() {
	local peer side bin s arch kind loop n=20000 ir
	peer=$(bench/peers/kvm-ioctls/build.sh "$cache/kvm-ioctls" 2> "$out/peer-build.log" | tail -1) || {
		tail -1 "$out/peer-build.log" >&2
		return 77
	}
	echo "{\"benchmark\":\"peer_build\",\"peer\":\"kvm-ioctls\",\"versions\":\"$(
		find "$cache/kvm-ioctls/registry/usr/share/cargo/registry" -mindepth 1 -maxdepth 1 -printf '%f ' | sed 's/ $//'
	)\"}"
	# the host's /dev/kvm (x86-64 IO exits): each side against its own raw
	# KVM_RUN loop in its process (alternating pairs of blocks), the two
	# processes alternating round by round; then callgrind of both loops
	if [ -w /dev/kvm ] && [ "$(uname -m)" = x86_64 ]; then
		local round
		for round in 1 2 3 4 5 6; do
			# which process goes first alternates
			if [ $((round % 2)) = 1 ]; then
				real_round libmemfault "$round"
				real_round kvm-ioctls "$round"
			else
				real_round kvm-ioctls "$round"
				real_round libmemfault "$round"
			fi
		done
		for side in libmemfault kvm-ioctls; do
			for loop in raw lib; do
				if [ "$side" = libmemfault ]; then
					ir=$(callgrind_ir "$out/cg.peer-real.$side.$loop" \
						"$builddir/bench/kvm-run-bench" "$loop" io 20000)
				else
					ir=$(callgrind_ir "$out/cg.peer-real.$side.$loop" "$peer" real io "$loop" 20000)
				fi
				echo "{\"benchmark\":\"peer_real_ir\",\"side\":\"$side\",\"exit\":\"io\",\"loop\":\"$loop\",\"runs\":20000,\"ir\":${ir:-null}}"
			done
		done
	fi
	for side in libmemfault kvm-ioctls; do
		bin=$builddir/bench/peer-scenarios
		[ "$side" = kvm-ioctls ] && bin=$peer
		for s in mmio gmem-efault gmem-hwpoison gmem-enomem gmem-eio vncr-ret0 stale-ie \
			bare-efault-stale bare-efault; do
			arch=x86_64
			[ "$s" = vncr-ret0 ] && arch=arm64
			KVMSIM_ARCH=$arch KVMSIM_LEVEL=7.2 LD_PRELOAD=$sim "$bin" scenario "$s" |
				sed "s/^{/{\"arch\":\"$arch\",/" || true
		done
		for kind in mmio fault; do
			for loop in raw lib; do
				ir=$(KVMSIM_ARCH=x86_64 KVMSIM_LEVEL=7.2 LD_PRELOAD=$sim \
					callgrind_ir "$out/cg.peer.$side.$kind.$loop" "$bin" bench "$kind" "$loop" "$n")
				echo "{\"benchmark\":\"peer_overhead\",\"side\":\"$side\",\"exit\":\"$kind\",\"loop\":\"$loop\",\"runs\":$n,\"ir\":${ir:-null}}"
			done
		done
	done
}
if [ "${MEMFAULT_BENCH_PEERS:-1}" = 1 ]; then
	step peers peers
else
	echo "peers 0 77" >> "$out/durations"
	echo "disabled (MEMFAULT_BENCH_PEERS=0)" > "$out/peers.log"
fi

# ---- 5. nested 7.2 kernels (QEMU TCG), one arch after the other ----
# (at once, the arm64 guest's two TCG threads and the x86 guest's one
# shared this machine's two CPUs, and each other's timings)
nested() {
	local rc1=0 rc2=0
	bench/nested/run-nested-bench.sh x86_64 > "$out/nested-x86_64.jsonl" 2> "$out/nested-x86_64.log" || rc1=$?
	bench/nested/run-nested-bench.sh arm64 > "$out/nested-arm64.jsonl" 2> "$out/nested-arm64.log" || rc2=$?
	cat "$out/nested-x86_64.jsonl" "$out/nested-arm64.jsonl"
	echo "nested x86_64: exit $rc1; arm64: exit $rc2" >&2
	if [ "$rc1" -eq 77 ] && [ "$rc2" -eq 77 ]; then return 77; fi
	if [ "$rc1" -ne 0 ] && [ "$rc1" -ne 77 ]; then return 1; fi
	if [ "$rc2" -ne 0 ] && [ "$rc2" -ne 77 ]; then return 1; fi
	return 0
}
if [ "${MEMFAULT_BENCH_NESTED:-1}" = 1 ]; then
	step nested nested
else
	echo "nested 0 77" >> "$out/durations"
	echo "disabled (MEMFAULT_BENCH_NESTED=0)" > "$out/nested.log"
fi

echo "$load_start" > "$out/load-start"
fi # MEMFAULT_BENCH_REPORT_ONLY
# ---- 6. the report (bench/memfault_bench: figures, page, plot) ----
# Debian's python3 first: it sees python3-matplotlib (tools/install-deps.sh);
# without matplotlib the report draws the plot with gnuplot, or leaves it out.
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3)

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
[ -n "$cpu" ] || cpu=$(lscpu 2> /dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
commit=$(git -C "$src" rev-parse --short HEAD 2> /dev/null || echo unknown)
if [ -n "$(git -C "$src" status --porcelain -- lib include bench 2> /dev/null)" ]; then
	commit="$commit+dirty"
fi
read -r load_end _ < /proc/loadavg || load_end=unknown
PYTHONPATH="$src/bench${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1 \
	"$py" -m memfault_bench report "$out" "$builddir/bench-results.json" "$docdir" \
	--nproc "$(nproc)" --cpu "$cpu" --kernel "$(uname -r)" \
	--date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --commit "$commit" \
	--elapsed "$((SECONDS - start_all))" --load-start "$load_start" --load-end "$load_end"
# The results file goes beside the page: test performance-doc-fresh checks
# that the page is exactly what it renders to.
cp "$builddir/bench-results.json" "$docdir/performance-results.json"
log "wrote $builddir/bench-results.json, $docdir/performance{.md,-results.json}, $docdir/performance-threads.png"
log "total $((SECONDS - start_all)) s"
exit "$failed"
