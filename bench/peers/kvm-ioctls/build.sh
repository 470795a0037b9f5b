#!/bin/bash
# SPDX-License-Identifier: MIT
#
# build.sh CACHEDIR - build the kvm-ioctls peer benchmark (bench/peers/
# kvm-ioctls) offline, from Debian sid's librust-*-dev source packages.
#
# The crate sources come from tools/fetch-rust-crates.sh CACHEDIR (Debian sid's
# librust-*-dev packages of kvm-ioctls 0.25 and its dependencies, through a
# private apt configuration under CACHEDIR/apt; downloaded once, then
# cached), as a cargo `directory` source replacing crates-io, with
# `cargo build --offline`. The crate's sources are copied to CACHEDIR/src so
# that nothing (Cargo.lock, target/) is written into the repository.
#
# Prints the path of the binary on the last line of stdout.
# Exit status: 0 built; 77 cannot be built here (no cargo/rustc >= 1.85, the
# mirror unreachable, a package gone from sid): the caller skips the peer.
#
# Environment: MEMFAULT_MIRROR (default: the mirror of the system's own apt
# configuration, tools/debian-mirror.sh), CARGO (default cargo).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=${1:?usage: build.sh CACHEDIR}
cargo=${CARGO:-cargo}

skip() {
	echo "kvm-ioctls peer: SKIP: $*" >&2
	exit 77
}

command -v "$cargo" > /dev/null || skip "no cargo"
command -v rustc > /dev/null || skip "no rustc"
read -r rmaj rmin < <(rustc --version | sed -n 's/^rustc \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
if [ "${rmaj:-0}" -lt 1 ] || { [ "$rmaj" -eq 1 ] && [ "${rmin:-0}" -lt 85 ]; }; then
	skip "rustc >= 1.85 needed (kvm-ioctls uses edition 2024): $(rustc --version)"
fi

mkdir -p "$work"
work=$(cd "$work" && pwd)

# ---- 1. the crates (exit 77 from the fetch: skip, its reason on stderr) ----
rc=0
crates=$("$here/../../../tools/fetch-rust-crates.sh" "$work" | tail -n 1) || rc=$?
[ "$rc" -eq 0 ] || skip "no kvm-ioctls crate sources (tools/fetch-rust-crates.sh exited $rc)"

# ---- 2. build a copy of the crate ----
src=$work/src
rm -rf "$src"
mkdir -p "$src/.cargo"
cp -r "$here/Cargo.toml" "$here/src" "$src/"
cat > "$src/.cargo/config.toml" << EOF
[source.crates-io]
replace-with = "debian-sid"

[source.debian-sid]
directory = "$crates"

[net]
offline = true
EOF
(cd "$src" && "$cargo" build --offline --release --quiet --target-dir "$work/target" >&2) ||
	skip "cargo build failed"
echo "$work/target/release/kvm-ioctls-bench"
