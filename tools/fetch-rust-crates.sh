#!/bin/bash
# SPDX-License-Identifier: MIT
#
# fetch-rust-crates.sh CACHEDIR [PACKAGE=VERSION...] - Debian sid's
# librust-*-dev crate sources as a cargo directory source, for building
# against rust-vmm's kvm-ioctls offline (the kvm-ioctls peer benchmark,
# bench/peers/kvm-ioctls/build.sh, and the rust-vmm bridge test,
# bindings/rust/run-kvm-ioctls.sh).
#
# A private apt configuration under CACHEDIR/apt (sid only, the host
# architecture, its own lists, cache and empty dpkg status: /etc/apt,
# /var/lib/apt and /var/cache/apt are read for the mirror only, never
# written), `apt-get download` of the packages into CACHEDIR/debs, and
# `dpkg-deb -x` of them into CACHEDIR/registry. Nothing is installed.
#
# Prints the crate directory, CACHEDIR/registry/usr/share/cargo/registry
# (one <crate>-<version>/ each), on the last line of stdout: give it to cargo
# as a `directory` source replacing crates-io, with --offline.
#
# Cached: once every .deb is in CACHEDIR/debs nothing is downloaded (no
# index either), and the extraction is reused while the set of .debs is the
# same. The sid index is refreshed when older than a day, and only when a
# .deb is missing.
#
# Without PACKAGE=VERSION arguments: kvm-ioctls 0.25 and what it needs
# (the pinned set below). A pinned version gone from sid is replaced by
# sid's current one, with a warning.
#
# Exit status: 0 fetched (or cached); 77 cannot be fetched here (no apt-get,
# no keyring, no mirror in the system's apt configuration, the mirror
# unreachable, a package not in sid), with the reason on stderr.
#
# Environment: MEMFAULT_MIRROR (default: the system's own mirror,
# tools/debian-mirror.sh).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

skip() {
	echo "fetch-rust-crates.sh: SKIP: $*" >&2
	exit 77
}

[ $# -ge 1 ] || { echo "usage: fetch-rust-crates.sh CACHEDIR [PACKAGE=VERSION...]" >&2; exit 64; }
work=$1
shift
if [ $# -gt 0 ]; then
	pkgs=("$@")
else
	# kvm-ioctls 0.25 and its dependencies in sid: bitflags 2 for
	# kvm-ioctls, bitflags 1 for vmm-sys-util (>= 0.14, <= 0.15).
	pkgs=(
		librust-kvm-ioctls-dev=0.25.1-1
		librust-kvm-bindings-dev=0.14.2-1
		librust-vmm-sys-util-dev=0.15.0-4
		librust-libc-dev=0.2.186-1
		librust-bitflags-dev=2.13.2-1
		librust-bitflags-1-dev=1.3.2-8+b1
	)
fi

command -v apt-get >/dev/null || skip "no apt-get"
command -v dpkg-deb >/dev/null || skip "no dpkg-deb"
[ -r "$keyring" ] || skip "no $keyring (Debian: debian-archive-keyring)"

mkdir -p "$work"
work=$(cd "$work" && pwd)
arch=$(dpkg --print-architecture)
apt=$work/apt
debs=$work/debs
crates=$work/registry/usr/share/cargo/registry

# deb_file PACKAGE=VERSION: the .deb of that pair in $debs, if there
deb_file() {
	local pkg=${1%%=*} ver=${1#*=} f
	ver=${ver//:/%3a}
	for f in "$debs/${pkg}_${ver}_$arch.deb" "$debs/${pkg}_${ver}_all.deb"; do
		[ -e "$f" ] && { echo "$f"; return 0; }
	done
	return 1
}

missing=()
for pv in "${pkgs[@]}"; do
	deb_file "$pv" >/dev/null || missing+=("$pv")
done

if [ "${#missing[@]}" -gt 0 ]; then
	# The machine's own mirror: no registry host is named in the repository.
	mirror=$("$here/debian-mirror.sh") ||
		skip "no Debian mirror in the system's apt configuration (set MEMFAULT_MIRROR)"
	mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$debs"
	: >"$apt/status"
	echo "deb [arch=$arch signed-by=$keyring] $mirror sid main" >"$apt/sources.list"
	apto=(-q -o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
		-o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
		-o "Dir::Cache::pkgcache=$apt/cache/pkgcache.bin"
		-o "Dir::Cache::srcpkgcache=$apt/cache/srcpkgcache.bin"
		-o "Dir::State::status=$apt/status" -o Debug::NoLocking=1
		-o "APT::Architecture=$arch" -o "APT::Architectures::=$arch"
		-o "APT::Sandbox::User=$(id -un)" -o Acquire::Languages=none
		-o Acquire::Retries=1 -o Acquire::http::Timeout=20 -o Acquire::https::Timeout=20)
	if [ -z "$(find "$apt/lists" -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null)" ]; then
		echo "fetch-rust-crates.sh: apt-get update (sid at $mirror, private configuration)" >&2
		# apt-get update exits 0 when the mirror cannot be reached (a
		# warning only): the index check below is what decides.
		apt-get "${apto[@]}" update >"$apt/update.log" 2>&1 ||
			skip "apt-get update of sid failed (see $apt/update.log)"
	fi
	[ -n "$(find "$apt/lists" -maxdepth 1 -name '*Packages*' 2>/dev/null)" ] ||
		skip "no sid package index from $mirror (unreachable? see $apt/update.log)"
	: >"$apt/download.log"
	for pv in "${missing[@]}"; do
		if ! (cd "$debs" && apt-get "${apto[@]}" download "$pv" >>"$apt/download.log" 2>&1); then
			pkg=${pv%%=*}
			echo "fetch-rust-crates.sh: WARNING: $pv is no longer in sid; taking sid's current $pkg" >&2
			(cd "$debs" && apt-get "${apto[@]}" download "$pkg/sid" >>"$apt/download.log" 2>&1) ||
				skip "cannot download $pkg from $mirror (see $apt/download.log)"
		fi
	done
fi

# The .debs to extract: the pinned ones, or sid's current one of a package
# whose pin is gone (the newest of that name).
files=()
for pv in "${pkgs[@]}"; do
	if f=$(deb_file "$pv"); then
		files+=("$f")
	else
		f=$(find "$debs" -maxdepth 1 -name "${pv%%=*}_*.deb" | sort -V | tail -n 1)
		[ -n "$f" ] || skip "no .deb of ${pv%%=*} in $debs"
		files+=("$f")
	fi
done
stamp=$(printf '%s\n' "${files[@]##*/}" | sort)

# ---- a cargo directory source, extracted once per set of .debs ----
if [ ! -d "$crates" ] || [ "$(cat "$work/registry/.debs" 2>/dev/null)" != "$stamp" ]; then
	# Extracted beside and renamed into place, so that a reader never sees
	# a half-extracted registry (a bench and a test may share the cache).
	tmp=$(mktemp -d "$work/registry.XXXXXX")
	for f in "${files[@]}"; do dpkg-deb -x "$f" "$tmp"; done
	[ -d "$tmp/usr/share/cargo/registry" ] || { rm -rf "$tmp"; skip "no crates in the downloaded packages"; }
	for c in "$tmp"/usr/share/cargo/registry/*/; do
		# cargo wants .cargo-checksum.json in every directory-source crate
		# (an empty "files" verifies nothing; a null package means no
		# checksum line in Cargo.lock)
		[ -f "$c/.cargo-checksum.json" ] || echo '{"files":{},"package":null}' >"$c/.cargo-checksum.json"
	done
	printf '%s\n' "$stamp" >"$tmp/.debs"
	chmod -R a+rX "$tmp"
	old=
	if [ -e "$work/registry" ]; then
		old=$work/registry.old.$$
		mv "$work/registry" "$old"
	fi
	mv "$tmp" "$work/registry"
	[ -z "$old" ] || rm -rf "$old"
fi
echo "fetch-rust-crates.sh: $(find "$crates" -mindepth 1 -maxdepth 1 -printf '%f ' | sed 's/ $//')" >&2
echo "$crates"
