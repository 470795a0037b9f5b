#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Build and test memfault-kvm-ioctls (the rust-vmm bridge) against Debian's
# own kvm-ioctls sources, offline, on the KVM simulator:
#
#   run-kvm-ioctls.sh <meson build dir> [cargo target dir]
#
# MEMFAULT_KVM_IOCTLS_REGISTRY: a directory of crate sources as Debian ships
# them (usr/share/cargo/registry of `dpkg-deb -x` of librust-kvm-ioctls-dev
# 0.25, librust-kvm-bindings-dev 0.14, librust-vmm-sys-util-dev,
# librust-libc-dev, librust-bitflags-dev and librust-bitflags-1-dev; sid has
# them, bookworm does not). Cargo reads it as a directory source in place
# of crates.io, so nothing is downloaded. Exits 77 (skip) without it, or
# without cargo >= 1.85 (the kvm-ioctls crates are edition 2024).
set -eu
if [ -n "${MEMFAULT_BINDINGS_SKIP:-}" ]; then
	echo "run-kvm-ioctls.sh: SKIP: $MEMFAULT_BINDINGS_SKIP" >&2
	exit 77
fi
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd)
target=${2:-$build/bindings/cargo-target-kvm-ioctls}
reg=${MEMFAULT_KVM_IOCTLS_REGISTRY:-}
if [ -z "$reg" ] || [ ! -d "$reg/kvm-ioctls-0.25.1" ] && ! ls -d "$reg"/kvm-ioctls-0.25.* >/dev/null 2>&1; then
	echo "run-kvm-ioctls.sh: SKIP: MEMFAULT_KVM_IOCTLS_REGISTRY is not a directory of Debian's librust-*-dev crates (kvm-ioctls 0.25)" >&2
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
	echo "== $arch, the simulator's Linux 7.2 + KVM Userfault model"
	KVMSIM_ARCH=$arch KVMSIM_LEVEL=7.2-uf cargo test "$@" -- --include-ignored --test-threads 1
	script='load:0x20000000:1; mmio_write:0x10000000:1:acc'
	[ "$arch" = arm64 ] || script="$script; hlt"
	KVMSIM_ARCH=$arch KVMSIM_LEVEL=7.2-uf KVMSIM_SCRIPT=$script cargo run "$@" --example rust_vmm
done
