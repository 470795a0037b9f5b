#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Build and test memfault-kvm-ioctls (the rust-vmm bridge) against Debian's
# own kvm-ioctls sources, offline:
#
#   run-kvm-ioctls.sh <meson build dir> [cargo target dir]
#
# 1. cargo build and clippy (-D warnings) of the crate, its test and its
#    example, against the uninstalled libmemfault of the build dir;
# 2. its tests on the KVM simulator, x86-64 and arm64 models (7.2 + KVM
#    Userfault): kvm-ioctls' VcpuFd::run() and libmemfault on a wrapped
#    VcpuFd see the same exits; a page-in through a closure;
# 3. the rust-vmm example (examples/rust_vmm.rs: kvm-ioctls creates the VM
#    and the vCPU, libmemfault runs and classifies it, RAM paged in on
#    demand) on the simulator, both models, with KVM Userfault (7.2-uf) and
#    with userfaultfd (7.2); each run must end in `result: OK` with the
#    guest's page-in, device write and end exit;
# 4. the same example on this machine's /dev/kvm (its real x86 guest), when
#    /dev/kvm can be opened read-write on an x86-64 host: must end in
#    `result: OK`, or exit 77 (it says why: no VM can be created here); not
#    run otherwise, and the log says so.
#
# MEMFAULT_KVM_IOCTLS_REGISTRY: a directory of crate sources as Debian ships
# them (usr/share/cargo/registry of `dpkg-deb -x` of librust-kvm-ioctls-dev
# 0.25 and its dependencies: what tools/fetch-rust-crates.sh prints; sid has
# them, bookworm does not). Cargo reads it as a directory source in place
# of crates.io, so nothing is downloaded. .ci/run fetches it.
# MEMFAULT_KVM_IOCTLS_SKIP: why it could not be fetched (set by .ci/run).
# Exits 77 (skip, with the reason) without the registry, or without cargo.
set -eu
if [ -n "${MEMFAULT_BINDINGS_SKIP:-}" ]; then
	echo "run-kvm-ioctls.sh: SKIP: $MEMFAULT_BINDINGS_SKIP" >&2
	exit 77
fi
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd)
target=${2:-$build/bindings/cargo-target-kvm-ioctls}
reg=${MEMFAULT_KVM_IOCTLS_REGISTRY:-}
if [ -n "${MEMFAULT_KVM_IOCTLS_SKIP:-}" ]; then
	echo "run-kvm-ioctls.sh: SKIP: no kvm-ioctls crate sources: $MEMFAULT_KVM_IOCTLS_SKIP" >&2
	exit 77
fi
if [ -z "$reg" ] || ! ls -d "$reg"/kvm-ioctls-0.25.* >/dev/null 2>&1; then
	echo "run-kvm-ioctls.sh: SKIP: MEMFAULT_KVM_IOCTLS_REGISTRY${reg:+=$reg} is not a directory of Debian's librust-*-dev crates (kvm-ioctls 0.25): tools/fetch-rust-crates.sh makes one" >&2
	exit 77
fi
if ! command -v cargo >/dev/null 2>&1; then
	echo "run-kvm-ioctls.sh: SKIP: no cargo" >&2
	exit 77
fi
sim=$build/tests/sim/libkvmsim.so
[ -f "$sim" ] || { echo "run-kvm-ioctls.sh: no simulator at $sim (build the tests)" >&2; exit 1; }
reg=$(cd "$reg" && pwd)
export CARGO_TARGET_DIR="$target" CARGO_TERM_COLOR=never
export PKG_CONFIG_PATH="$build/meson-uninstalled" KVMSIM_PRELOAD="$sim"
# the uninstalled library (an installed one is on the default path)
export LD_LIBRARY_PATH="$build/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cd "$here/memfault-kvm-ioctls"
set -- --offline --config "source.crates-io.replace-with=\"debian\"" \
	--config "source.debian.directory=\"$reg\""
# the lock file is made here, from the crates Debian has
rm -f Cargo.lock
cargo build "$@" --all-targets
if cargo clippy --version >/dev/null 2>&1; then
	cargo clippy "$@" --all-targets -- -D warnings
fi
for arch in x86_64 arm64; do
	echo "== tests, $arch, the simulator's Linux 7.2 + KVM Userfault model"
	KVMSIM_ARCH=$arch KVMSIM_LEVEL=7.2-uf cargo test "$@" -- --include-ignored --test-threads 1
done

example=$CARGO_TARGET_DIR/debug/examples/rust_vmm
out=$CARGO_TARGET_DIR/rust_vmm.out
# check_run: the example's output ($out) shows the guest's steps and OK
check_run() {
	for line in "page-in gpa 0x20000" "mmio write 0xd0000 \[42\]" "^result: OK"; do
		grep -q "$line" "$out" || { echo "run-kvm-ioctls.sh: FAIL: $1: no '$line' in the output" >&2; return 1; }
	done
	if [ "$2" = x86_64 ]; then
		if ! grep -q 'out 0xe0 \[42\]' "$out" || ! grep -q '^Hlt: the guest is done' "$out"; then
			echo "run-kvm-ioctls.sh: FAIL: $1: no IO-port write or HLT" >&2
			return 1
		fi
	fi
}
for arch in x86_64 arm64; do
	for level in 7.2-uf 7.2; do
		echo "== examples/rust_vmm --arch $arch, the simulator at $level"
		# through the cargo runner, which preloads the simulator
		rc=0
		KVMSIM_LEVEL=$level cargo run "$@" --example rust_vmm -- --arch "$arch" >"$out" || rc=$?
		cat "$out"
		[ "$rc" -eq 0 ] || { echo "run-kvm-ioctls.sh: FAIL: rust_vmm exited $rc" >&2; exit 1; }
		check_run "$arch $level" "$arch"
	done
done

echo "== examples/rust_vmm on this machine's /dev/kvm"
if [ "$(uname -m)" != x86_64 ]; then
	echo "not run: the example's real guest is x86 code, this host is $(uname -m)"
elif [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
	echo "not run: no read-write /dev/kvm here"
else
	rc=0
	env -u LD_PRELOAD -u KVMSIM_PRELOAD "$example" >"$out" || rc=$?
	cat "$out"
	if [ "$rc" -eq 77 ]; then
		echo "not run: the example cannot run on this /dev/kvm (its reason is above)"
	elif [ "$rc" -ne 0 ]; then
		echo "run-kvm-ioctls.sh: FAIL: rust_vmm on /dev/kvm exited $rc" >&2
		exit 1
	else
		grep -q "^KVM: /dev/kvm" "$out" || { echo "run-kvm-ioctls.sh: FAIL: not on /dev/kvm" >&2; exit 1; }
		check_run /dev/kvm x86_64
	fi
fi
