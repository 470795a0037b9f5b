#!/bin/bash
# SPDX-License-Identifier: MIT
#
# build.sh CACHEDIR - build the kvm-ioctls peer benchmark (bench/peers/
# kvm-ioctls) offline, from Debian sid's librust-*-dev source packages.
#
# Follows the team's recipe (shared/peers/kvm-ioctls.md): a private apt
# configuration under CACHEDIR/apt (sid only, its own lists and cache; /etc/apt,
# /var/lib/apt and /var/cache/apt are never written), `apt-get download` of
# six pinned packages, `dpkg-deb -x` into CACHEDIR/registry, and a cargo
# `directory` source replacing crates-io, with `cargo build --offline`.
# The crate's sources are copied to CACHEDIR/src so that nothing (Cargo.lock,
# target/) is written into the repository.
#
# Prints the path of the binary on the last line of stdout.
# Exit status: 0 built; 77 cannot be built here (no cargo/rustc >= 1.85, the
# mirror unreachable, a package gone from sid): the caller skips the peer.
#
# Environment: MEMFAULT_MIRROR (default: the mirror of the system's own apt
# configuration, tools/debian-mirror.sh),
# APT_UPDATE=0 to reuse an index younger than a day, CARGO (default cargo).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=${1:?usage: build.sh CACHEDIR}
cargo=${CARGO:-cargo}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

skip() {
	echo "kvm-ioctls peer: SKIP: $*" >&2
	exit 77
}

# The machine's own mirror: no registry host is named in the repository.
mirror=$("$here/../../../tools/debian-mirror.sh") ||
	skip "no Debian mirror in the system's apt configuration (set MEMFAULT_MIRROR)"

# Debian package=version pairs in sid (kvm-ioctls.md, "Packages").
pkgs=(
	librust-kvm-ioctls-dev=0.25.1-1
	librust-kvm-bindings-dev=0.14.2-1
	librust-vmm-sys-util-dev=0.15.0-4
	librust-libc-dev=0.2.186-1
	librust-bitflags-dev=2.13.2-1
	librust-bitflags-1-dev=1.3.2-8+b1
)

command -v "$cargo" > /dev/null || skip "no cargo"
command -v rustc > /dev/null || skip "no rustc"
command -v apt-get > /dev/null || skip "no apt-get"
command -v dpkg-deb > /dev/null || skip "no dpkg-deb"
[ -r "$keyring" ] || skip "no $keyring"
read -r rmaj rmin < <(rustc --version | sed -n 's/^rustc \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
if [ "${rmaj:-0}" -lt 1 ] || { [ "$rmaj" -eq 1 ] && [ "${rmin:-0}" -lt 85 ]; }; then
	skip "rustc >= 1.85 needed (kvm-ioctls uses edition 2024): $(rustc --version)"
fi

mkdir -p "$work"
work=$(cd "$work" && pwd)
arch=$(dpkg --print-architecture)
apt=$work/apt
crates=$work/registry/usr/share/cargo/registry

# ---- 1. private apt configuration (sid) ----
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$work/debs"
: > "$apt/status"
echo "deb [arch=$arch signed-by=$keyring] $mirror sid main" > "$apt/sources.list"
apto=(-q -o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
	-o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
	-o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
	-o "Dir::Cache::pkgcache=$apt/cache/pkgcache.bin"
	-o "Dir::Cache::srcpkgcache=$apt/cache/srcpkgcache.bin"
	-o "Dir::State::status=$apt/status" -o Debug::NoLocking=1
	-o "APT::Architecture=$arch" -o "APT::Architectures::=$arch"
	-o "APT::Sandbox::User=$(id -un)" -o Acquire::Languages=none)

have_debs() {
	local pv pkg ver
	for pv in "${pkgs[@]}"; do
		pkg=${pv%%=*} ver=${pv#*=}
		ver=${ver//:/%3a}
		[ -e "$work/debs/${pkg}_${ver}_$arch.deb" ] || [ -e "$work/debs/${pkg}_${ver}_all.deb" ] || return 1
	done
}

if ! have_debs; then
	if [ "${APT_UPDATE:-1}" = 1 ] ||
		[ -z "$(find "$apt/lists" -maxdepth 1 -name '*Packages*' -mmin -1440 2> /dev/null)" ]; then
		echo "kvm-ioctls peer: apt-get update (sid, private configuration)" >&2
		apt-get "${apto[@]}" update > "$apt/update.log" 2>&1 ||
			skip "apt-get update of sid failed (see $apt/update.log)"
	fi
	# apt-get update succeeds even when the mirror cannot be reached
	[ -n "$(find "$apt/lists" -maxdepth 1 -name '*Packages*' 2> /dev/null)" ] ||
		skip "no sid package index from $mirror (see $apt/update.log)"
	for pv in "${pkgs[@]}"; do
		pkg=${pv%%=*} ver=${pv#*=}
		ver=${ver//:/%3a}
		if [ -e "$work/debs/${pkg}_${ver}_$arch.deb" ] || [ -e "$work/debs/${pkg}_${ver}_all.deb" ]; then
			continue
		fi
		if ! (cd "$work/debs" && apt-get "${apto[@]}" download "$pv" >> "$apt/download.log" 2>&1); then
			echo "kvm-ioctls peer: WARNING: $pv is no longer in sid; taking sid's current $pkg" >&2
			(cd "$work/debs" && apt-get "${apto[@]}" download "$pkg/sid" >> "$apt/download.log" 2>&1) ||
				skip "cannot download $pkg (see $apt/download.log)"
		fi
	done
fi

# ---- 2. a cargo directory source ----
rm -rf "$work/registry"
mkdir -p "$work/registry"
for d in "$work"/debs/*.deb; do dpkg-deb -x "$d" "$work/registry"; done
[ -d "$crates" ] || skip "no crates in the downloaded packages"
for c in "$crates"/*/; do
	# cargo wants .cargo-checksum.json in every directory-source crate
	[ -f "$c/.cargo-checksum.json" ] || echo '{"files":{},"package":null}' > "$c/.cargo-checksum.json"
done

# ---- 3. build a copy of the crate ----
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
