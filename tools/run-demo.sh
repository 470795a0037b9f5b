#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Build and run the demo, examples/minimal-vmm (the README's first command):
#
#   tools/run-demo.sh
#
# Installs missing build dependencies, configures $BUILDDIR (build/) unless
# it is configured already, builds the demo, then runs it:
#   - on real KVM when /dev/kvm can be opened, for the host's architecture,
#     then on the KVM simulator for the other architecture (real KVM only
#     runs guests of the host's architecture);
#   - otherwise on the KVM simulator (LD_PRELOAD of tests/sim/libkvmsim.so),
#     for the host's architecture, then for the other one.
# Exits non-zero if a run of the demo fails.
#
# Environment:
#   BUILDDIR=build              build directory (relative to the repository)
#   MEMFAULT_SKIP_DEPS=1        do not install dependencies
#   MEMFAULT_DEMO_BACKEND=auto  auto | kvm | sim: force real KVM or the simulator
set -euo pipefail

cd "$(dirname "$0")/.."
builddir=${BUILDDIR:-build}
backend=${MEMFAULT_DEMO_BACKEND:-auto}
demo=$builddir/examples/minimal-vmm
sim_lib=$builddir/tests/sim/libkvmsim.so

say() { echo "run-demo.sh: $*"; }
die() {
	echo "run-demo.sh: $*" >&2
	exit 1
}

case $backend in
auto | kvm | sim) ;;
*) die "MEMFAULT_DEMO_BACKEND must be auto, kvm or sim, not '$backend'" ;;
esac

# ---- dependencies ----
install_deps() {
	if [ -f tools/install-deps.sh ]; then
		# MEMFAULT_DEPS=build asks for the build dependencies only, where
		# the script knows it; older versions install everything.
		if grep -q 'MEMFAULT_DEPS' tools/install-deps.sh; then
			MEMFAULT_DEPS=build bash tools/install-deps.sh
		else
			bash tools/install-deps.sh
		fi
		return
	fi
	local p missing=() sudo=()
	for p in meson ninja-build pkgconf gcc libc6-dev check; do
		dpkg-query -W -f='${db:Status-Status}\n' "$p" 2>/dev/null |
			grep -qx installed || missing+=("$p")
	done
	if [ "${#missing[@]}" -eq 0 ]; then
		return
	fi
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 ||
			die "not root and no sudo: install ${missing[*]} first"
		sudo=(sudo)
	fi
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get update
	"${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
}

if [ "${MEMFAULT_SKIP_DEPS:-0}" != 1 ]; then
	install_deps
fi

# ---- build ----
if [ -f "$builddir/meson-private/coredata.dat" ]; then
	say "reusing the configured $builddir/"
else
	meson setup "$builddir"
fi
# Build only what the demo needs: the example and, when the tests are
# configured (they need Check), the simulator.
targets=(examples/minimal-vmm)
if ninja -C "$builddir" -t query tests/sim/libkvmsim.so >/dev/null 2>&1; then
	targets+=(tests/sim/libkvmsim.so)
fi
ninja -C "$builddir" "${targets[@]}"

# ---- backend ----
case $(uname -m) in
x86_64) host_arch=x86_64 other_arch=arm64 ;;
aarch64 | arm64) host_arch=arm64 other_arch=x86_64 ;;
*) die "unsupported host architecture $(uname -m)" ;;
esac

# Whether /dev/kvm can be opened read-write; the reason why not on stdout.
kvm_unusable_reason() {
	if [ ! -e /dev/kvm ]; then
		echo "there is no /dev/kvm"
	elif ! (exec 3<>/dev/kvm) 2>/dev/null; then
		echo "/dev/kvm cannot be opened read-write"
	else
		return 1
	fi
}

use_kvm=0 why=
case $backend in
kvm) use_kvm=1 ;;
sim) why="MEMFAULT_DEMO_BACKEND=sim" ;;
auto) if why=$(kvm_unusable_reason); then :; else use_kvm=1; fi ;;
esac

failures=0
# run_demo LABEL [LD_PRELOAD] [ARGS...]: one run of the demo, counted.
run_demo() {
	local label=$1 preload=$2 rc=0
	shift 2
	echo
	say "== $label"
	if [ -n "$preload" ]; then
		# the simulator runs no machine code: the guest's steps, as
		# minimal-vmm.c writes them beside its instructions ("$2" is
		# the architecture after --arch)
		KVMSIM_ARCH=$2 KVMSIM_SCRIPT=$(cat "examples/minimal-vmm.$2.kvmsim") \
			LD_PRELOAD=$preload "$demo" "$@" || rc=$?
	else
		"$demo" "$@" || rc=$?
	fi
	if [ "$rc" -ne 0 ]; then
		say "$label: FAILED (exit status $rc)"
		failures=$((failures + 1))
	fi
}

need_sim() {
	[ -f "$sim_lib" ] ||
		die "$sim_lib was not built: the simulator is part of the tests, which need Check (package check)"
}

if [ "$use_kvm" = 1 ]; then
	say "/dev/kvm is usable: the demo runs on real KVM"
	run_demo "$host_arch guest on real KVM" ""
	if [ -f "$sim_lib" ]; then
		run_demo "$other_arch guest on the KVM simulator (real KVM runs $host_arch guests only)" \
			"$PWD/$sim_lib" --arch "$other_arch"
	fi
else
	need_sim
	say "$why: the demo runs on the KVM simulator ($sim_lib)"
	run_demo "$host_arch guest on the KVM simulator" "$PWD/$sim_lib" --arch "$host_arch"
	run_demo "$other_arch guest on the KVM simulator" "$PWD/$sim_lib" --arch "$other_arch"
fi

echo
if [ "$failures" -ne 0 ]; then
	die "$failures demo run(s) failed"
fi
say "every demo run passed"
