#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Reliability CI job (issue 12):
#
#   .ci/job-reliability.sh [OUTDIR]        (default OUTDIR: build-reliability)
#
# Steps, each in its own build directory under OUTDIR, each timed; a
# failing step does not stop the others, the job fails if any failed:
#
#   reliability  gcc -Dwerror=true, `meson test --suite reliability` with
#                MEMFAULT_SOAK=1: fault injection, the bad-input matrix, and
#                the soak variants (10^5 kicks from threads and in a signal
#                storm, 10^6 exits with flat RSS and fds)
#   valgrind     `meson test --setup=valgrind` over suite 'library' (less
#                the tests valgrind cannot run, see below; the simulator's
#                test less its hwpoison case): memcheck, full leak checking,
#                fds left open fail (tests/reliability/valgrind-run.sh),
#                --error-exitcode, suppressions in tests/valgrind.supp
#   fuzz         clang, the libFuzzer targets (ASan+UBSan) from their seed
#                corpora, suite 'fuzz', MEMFAULT_FUZZ_SECONDS per target
#                (the clang job of .ci/run runs them for 20000 inputs only)
#   scan-build   scan-build-14 meson setup + scan-build-14 --status-bugs
#                ninja (not meson's scan-build target, which exits 0 on bugs),
#                over the shipped code (-Dtests=disabled)
#
# The other reliability checks are jobs of .ci/run: TSan over every
# concurrent test (job tsan, the stress test included), the aarch64
# qemu-user run of suite 'library' (the bitmap reader-checker included),
# and job lint (codespell, and the shell linter).
#
# Every testlog.json left under OUTDIR counts in .ci/run's closing line
# (the valgrind setup's testlog-valgrind.json is renamed for that).
#
# Environment:
#   CI=true                  start every build directory afresh
#   MEMFAULT_SOAK=0          short variants instead of the soak (default 1)
#   MEMFAULT_FUZZ_SECONDS=N  seconds per fuzz target (default 20)
#   MEMFAULT_REL_STEPS="a b" run only these steps
# Budget: about 7 minutes on 2 cores.
# The steps below are called indirectly, through step():
# shellcheck disable=SC2317
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
out=${1:-build-reliability}
case $out in
/*) ;;
*) out=$root/$out ;;
esac
mkdir -p "$out"
steps=${MEMFAULT_REL_STEPS:-reliability valgrind fuzz scan-build}
export MESON_TESTTHREADS=2
common=(-Ddocumentation=disabled)

names=()
results=()
times=()
failed=0

# step NAME COMMAND...: run one step under a header, in a subshell with
# errexit, and record its result and wall time.
step() {
	local name=$1 start rc=0
	shift
	case " $steps " in
	*" $name "*) ;;
	*) return 0 ;;
	esac
	echo
	echo "-------- [reliability/$name] --------"
	start=$SECONDS
	set +e
	(set -e; "$@")
	rc=$?
	set -e
	names+=("$name")
	times+=("$((SECONDS - start))")
	if [ "$rc" -eq 0 ]; then
		results+=(PASS)
	elif [ "$rc" -eq 77 ]; then
		results+=(SKIP)
	else
		results+=("FAIL($rc)")
		failed=1
	fi
	echo "-------- [reliability/$name] ${results[-1]} in $((SECONDS - start)) s --------"
}

# setup DIR ARGS...: configure DIR afresh under CI, else reconfigure it.
setup() {
	local dir=$1
	shift
	if [ "${CI:-false}" = true ]; then
		rm -rf "$dir"
	fi
	if [ -f "$dir/meson-private/coredata.dat" ]; then
		meson setup --reconfigure "$dir" "$@" >"$dir.setup.log" 2>&1 ||
			{ cat "$dir.setup.log"; return 1; }
	else
		meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 ||
			{ cat "$dir.setup.log"; return 1; }
	fi
}

# fresh_log DIR: no testlog of an earlier run may count
fresh_log() {
	find "$1" -name 'testlog*.json' -delete 2>/dev/null || true
}

# ---- steps ----

reliability() {
	local d=$out/gcc
	setup "$d" "${common[@]}" -Dwerror=true -Dexamples=false
	fresh_log "$d"
	meson compile -C "$d"
	MEMFAULT_SOAK=${MEMFAULT_SOAK:-1} \
		meson test -C "$d" --suite reliability --print-errorlogs \
		--num-processes 2 --verbose
}

valgrind_job() {
	local d=$out/valgrind
	if ! command -v valgrind >/dev/null; then
		echo "no valgrind: skipped"
		return 77
	fi
	setup "$d" "${common[@]}" -Dexamples=false
	fresh_log "$d"
	meson compile -C "$d"
	# Every test of suite 'library' but these, which valgrind cannot run
	# as they are written (limitations, not findings):
	#   *uffd*             a host thread of the test touches registered
	#   kernel-diff-sim-*  memory in client code while another thread of
	#                      the same process serves the fault. valgrind runs
	#                      one thread at a time and releases its lock only
	#                      around system calls: the toucher blocks in
	#                      handle_userfault() holding it, the server never
	#                      runs (seen: hang, the toucher's wchan is
	#                      handle_userfault). Runnable once those touches go
	#                      through a system call under valgrind (e.g.
	#                      write() of the page to a pipe), where the kernel
	#                      takes the fault and valgrind has let go.
	#   kvmsim-memfaults   the simulator sends itself SIGBUS BUS_MCEERR_AR
	#                      (rt_tgsigqueueinfo, as the kernel's
	#                      send_sig_mceerr()); valgrind takes a positive
	#                      si_code for a fault of its own: "VALGRIND
	#                      INTERNAL ERROR: received a signal 7 (SIGBUS)".
	#                      The other kvmsim-* tests run under valgrind with
	#                      fds listed but not failed: they leave their
	#                      simulated fds to each forked test's exit (the
	#                      fd rule is for the library's tests).
	local tests=() sims=() rc=0
	mapfile -t tests < <(meson test -C "$d" --no-rebuild --list --suite library \
		2>/dev/null | sed -n 's|^[^ ]* / ||p' |
		grep -vxE 'kvmsim-(caps|memslots|guest|memfaults|userfault|control)|kernel-diff-sim-.*' |
		grep -v uffd)
	mapfile -t sims < <(meson test -C "$d" --no-rebuild --list --suite library \
		2>/dev/null | sed -n 's|^[^ ]* / ||p' |
		grep -xE 'kvmsim-(caps|memslots|guest|userfault|control)')
	echo "valgrind: ${#tests[@]} tests of suite 'library'," \
		"and ${#sims[@]} kvmsim tests (fds not failed) but kvmsim-memfaults"
	meson test -C "$d" --no-rebuild --setup=valgrind --print-errorlogs \
		--num-processes 2 "${tests[@]}" || rc=$?
	mv "$d/meson-logs/testlog-valgrind.json" "$d/valgrind-library.json" ||
		true
	rm -f "$d/valgrind-kvmsim.json"
	MEMFAULT_VALGRIND_FDS=0 meson test -C "$d" --no-rebuild --setup=valgrind \
		--print-errorlogs --num-processes 2 "${sims[@]}" || rc=$?
	mv "$d/meson-logs/testlog-valgrind.json" "$d/valgrind-kvmsim.json" ||
		true
	cat "$d/valgrind-library.json" "$d/valgrind-kvmsim.json" \
		>"$d/meson-logs/testlog-valgrind.json" 2>/dev/null || true
	rm -f "$d/valgrind-library.json" "$d/valgrind-kvmsim.json"
	# .ci/run counts files named testlog.json
	if [ -f "$d/meson-logs/testlog-valgrind.json" ]; then
		mv "$d/meson-logs/testlog-valgrind.json" "$d/meson-logs/testlog.json"
	fi
	return "$rc"
}

fuzz() {
	local d=$out/fuzz
	if ! command -v clang >/dev/null; then
		echo "no clang: skipped"
		return 77
	fi
	CC=clang setup "$d" "${common[@]}" -Dexamples=false
	fresh_log "$d"
	if [ ! -f "$d/build.ninja" ] || ! grep -q 'fuzz-classify' "$d/build.ninja"; then
		echo "clang has no -fsanitize=fuzzer here: skipped"
		return 77
	fi
	meson compile -C "$d" tests/fuzz/fuzz-classify tests/fuzz/fuzz-api \
		tests/fuzz/fuzz-bitmap
	# Bounded by time only (runs -1); meson's own timeout is off, as the
	# run may be longer than the suite's 120 s.
	MEMFAULT_FUZZ_ARTIFACTS=$d/fuzz-artifacts MEMFAULT_FUZZ_RUNS=-1 \
		MEMFAULT_FUZZ_SECONDS=${MEMFAULT_FUZZ_SECONDS:-20} \
		meson test -C "$d" --no-rebuild --suite fuzz --print-errorlogs \
		--num-processes 2 --timeout-multiplier 0
}

scan_build() {
	local d=$out/scan-build
	rm -rf "$d"
	# scan-build run directly on the compile: --status-bugs fails on a report.
	# The shipped code only (library, tools, bindings): with tests and
	# benchmarks the analysis takes 2.5 min of the job's 8.
	scan-build-14 meson setup "$d" "${common[@]}" -Dexamples=false \
		-Dtests=disabled \
		>"$d.setup.log" 2>&1 || { cat "$d.setup.log"; return 1; }
	scan-build-14 --status-bugs -o "$d/reports" ninja -C "$d"
}

step reliability reliability
step valgrind valgrind_job
step fuzz fuzz
step scan-build scan_build

echo
echo "-------- reliability summary --------"
for i in "${!names[@]}"; do
	printf '%-12s %-10s %5d s\n' "${names[$i]}" "${results[$i]}" "${times[$i]}"
done
printf '%-12s %-10s %5d s\n' total "" "$SECONDS"
exit "$failed"
