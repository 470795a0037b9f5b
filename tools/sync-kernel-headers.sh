#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# sync-kernel-headers.sh - refresh the private copy of the Linux uapi headers
# in lib/uapi/ from Debian sid's linux-libc-dev package.
#
# Usage:
#   tools/sync-kernel-headers.sh            # download linux-libc-dev from sid
#   tools/sync-kernel-headers.sh FILE.deb   # use an already-downloaded .deb
#   tools/sync-kernel-headers.sh DIR        # use an already-extracted tree
#                                           # (a dpkg-deb -x root, or a usr/include)
#
# Environment:
#   MEMFAULT_MIRROR Debian archive to use; default: the one the system's own
#                   apt configuration uses (tools/debian-mirror.sh)
#   EXPECT_SERIES   kernel series the package must belong to (default 7.2);
#                   set it to the empty string to accept any version.
#
# The download never touches the system apt configuration: apt runs with a
# private sources.list, list directory and cache in a temporary directory.
#
# What is copied: linux/kvm.h, linux/userfaultfd.h and asm/kvm.h for x86_64
# and aarch64, plus everything those include, transitively (every #include
# line is followed, whatever #if it sits under). Files are copied verbatim.
#   lib/uapi/linux/*.h, lib/uapi/asm-generic/*.h   arch-independent headers
#   lib/uapi/asm-x86/asm/*.h                        from x86_64-linux-gnu/asm
#   lib/uapi/asm-arm64/asm/*.h                      from aarch64-linux-gnu/asm
# Include flags: x86_64  -Ilib/uapi -Ilib/uapi/asm-x86
#                aarch64 -Ilib/uapi -Ilib/uapi/asm-arm64
#
# lib/uapi/README.md and lib/uapi/kvm-userfault-proposed.h are not touched.

set -euo pipefail

readonly SEEDS=(linux/kvm.h linux/userfaultfd.h asm/kvm.h)
# triplet:destination-directory-under-lib/uapi
readonly ARCHES=(x86_64-linux-gnu:asm-x86 aarch64-linux-gnu:asm-arm64)
EXPECT_SERIES=${EXPECT_SERIES-7.2}

die() {
	printf 'sync-kernel-headers: error: %s\n' "$*" >&2
	exit 1
}

note() {
	printf 'sync-kernel-headers: %s\n' "$*" >&2
}

script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
root=$(cd -- "$script_dir/.." && pwd)
uapi="$root/lib/uapi"

[[ $# -le 1 ]] || die "usage: $0 [FILE.deb | EXTRACTED-DIR]"

for tool in dpkg-deb find; do
	command -v "$tool" >/dev/null || die "$tool not found"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/sync-kernel-headers.XXXXXX")
trap 'rm -rf -- "$work"' EXIT

# Download linux-libc-dev from sid into $work/debs with a private apt setup.
download() {
	local d="$work/apt"
	mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$work/debs"
	local mirror
	# The machine's own mirror: no registry host is named here.
	mirror=$("$root/tools/debian-mirror.sh") ||
		die "no Debian mirror in the system's apt configuration (set MEMFAULT_MIRROR)"
	printf 'deb [arch=amd64,arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s sid main\n' \
		"$mirror" >"$d/sources.list"
	local -a opts=(
		-o "Dir::Etc::SourceList=$d/sources.list"
		-o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$d/lists"
		-o "Dir::Cache=$d/cache"
		-o Dir::Etc::Preferences=/dev/null
		-o Dir::Etc::PreferencesParts=/dev/null
		-o APT::Architectures::=amd64
		-o APT::Architectures::=arm64
		-o Debug::NoLocking=1
		-o APT::Sandbox::User=root
	)
	command -v apt-get >/dev/null || die "apt-get not found"
	[[ -r /usr/share/keyrings/debian-archive-keyring.gpg ]] ||
		die "/usr/share/keyrings/debian-archive-keyring.gpg missing (apt-get install debian-archive-keyring)"

	note "apt-get update (private lists in $d)"
	apt-get "${opts[@]}" update >&2

	# Up to 6.x linux-libc-dev was built per architecture; since then sid
	# ships one Architecture: all package carrying the asm/ headers of
	# every architecture under /usr/include/<triplet>/asm.
	note "apt-get download linux-libc-dev:amd64 linux-libc-dev:arm64"
	if ! (cd "$work/debs" && apt-get "${opts[@]}" download \
		linux-libc-dev:amd64 linux-libc-dev:arm64 >&2); then
		note "per-architecture download failed; trying the Architecture: all package"
		rm -f "$work/debs"/*.deb
		(cd "$work/debs" && apt-get "${opts[@]}" download linux-libc-dev >&2)
	fi
}

# Extract every .deb given into $work/tree; echo the package version.
extract_debs() {
	local deb ver="" v
	mkdir -p "$work/tree"
	for deb in "$@"; do
		[[ "$(dpkg-deb -f "$deb" Package)" == linux-libc-dev ]] ||
			die "$deb is not a linux-libc-dev package"
		v=$(dpkg-deb -f "$deb" Version)
		[[ -z "$ver" || "$ver" == "$v" ]] || die "version mismatch: $ver vs $v"
		ver=$v
		note "extracting $(basename -- "$deb") ($(dpkg-deb -f "$deb" Architecture))"
		dpkg-deb -x "$deb" "$work/tree"
	done
	printf '%s\n' "$ver"
}

version=""
if [[ $# -eq 0 ]]; then
	download
	shopt -s nullglob
	debs=("$work/debs"/*.deb)
	shopt -u nullglob
	[[ ${#debs[@]} -gt 0 ]] || die "no .deb downloaded"
	version=$(extract_debs "${debs[@]}")
	incdir="$work/tree/usr/include"
elif [[ -f "$1" ]]; then
	version=$(extract_debs "$1")
	incdir="$work/tree/usr/include"
elif [[ -d "$1" ]]; then
	if [[ -d "$1/usr/include/linux" ]]; then
		incdir=$(cd -- "$1/usr/include" && pwd)
		treeroot=$(cd -- "$1" && pwd)
	elif [[ -d "$1/linux" ]]; then
		incdir=$(cd -- "$1" && pwd)
		treeroot=$(cd -- "$1/../.." && pwd)
	else
		die "$1: neither DIR/usr/include/linux nor DIR/linux exists"
	fi
	changelog="$treeroot/usr/share/doc/linux-libc-dev/changelog.Debian.gz"
	if [[ -r "$changelog" ]]; then
		v=$(gzip -dc "$changelog" | sed -n '1s/^linux[^ ]* (\([^)]*\)).*/\1/p')
		[[ -n "$v" ]] && version=$v
	fi
	if [[ -z "$version" ]]; then
		[[ -r "$incdir/linux/version.h" ]] || die "cannot tell the version of $1"
		version=$(sed -n \
			-e 's/^#define LINUX_VERSION_MAJOR \([0-9]*\).*/\1/p' \
			-e 's/^#define LINUX_VERSION_PATCHLEVEL \([0-9]*\).*/\1/p' \
			-e 's/^#define LINUX_VERSION_SUBLEVEL \([0-9]*\).*/\1/p' \
			"$incdir/linux/version.h" | paste -sd. -)
		version="$version (from linux/version.h of $1)"
	fi
else
	die "$1: no such file or directory"
fi

[[ -n "$version" ]] || die "could not determine the package version"
if [[ -n "$EXPECT_SERIES" && "$version" != "$EXPECT_SERIES".* ]]; then
	die "got linux-libc-dev $version, expected the $EXPECT_SERIES series" \
		"(set EXPECT_SERIES= to accept it)"
fi

for a in "${ARCHES[@]}"; do
	[[ -f "$incdir/${a%%:*}/asm/kvm.h" ]] ||
		die "$incdir/${a%%:*}/asm/kvm.h missing: this linux-libc-dev lacks ${a%%:*} headers"
done

# resolve HEADER ARCHDIR: print the file an #include <HEADER> finds (arch
# directory first, as the compiler would), or nothing.
resolve() {
	local h=$1 archdir=$2
	if [[ -e "$archdir/$h" ]]; then
		printf '%s\n' "$archdir/$h"
	elif [[ -e "$incdir/$h" ]]; then
		printf '%s\n' "$incdir/$h"
	fi
}

# Stage into $work/out, then swap in, so a failure leaves lib/uapi untouched.
out="$work/out"
mkdir -p "$out"
for a in "${ARCHES[@]}"; do
	triplet=${a%%:*}
	dest=${a#*:}
	archdir="$incdir/$triplet"
	declare -A seen=()
	queue=("${SEEDS[@]}")
	while [[ ${#queue[@]} -gt 0 ]]; do
		h=${queue[0]}
		queue=("${queue[@]:1}")
		[[ -z "${seen[$h]+x}" ]] || continue
		seen[$h]=1
		src=$(resolve "$h" "$archdir")
		[[ -n "$src" ]] || die "<$h> ($triplet) not found in linux-libc-dev"
		if [[ "$src" == "$archdir/"* ]]; then
			dst="$out/$dest/$h"
		else
			dst="$out/$h"
		fi
		mkdir -p "$(dirname -- "$dst")"
		if [[ -e "$dst" ]]; then
			cmp -s "$src" "$dst" || die "$h differs between architectures"
		else
			cp -L -- "$src" "$dst"
			chmod 0644 "$dst"
		fi
		while IFS= read -r inc; do
			queue+=("$inc")
		done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*<\([^>]*\)>.*/\1/p' "$src")
	done
	unset seen
done

# Every vendored header must carry its own SPDX line (we copy, never edit).
while IFS= read -r f; do
	grep -q 'SPDX-License-Identifier' "$f" || note "note: no SPDX line in ${f#"$out"/} (as upstream: kbuild-generated wrapper)"
done < <(find "$out" -type f -name '*.h')

{
	printf 'linux-libc-dev %s\n' "$version"
	printf 'synced %s by tools/sync-kernel-headers.sh\n' "$(date -u +%Y-%m-%d)"
} >"$out/KERNEL_VERSION"

mkdir -p "$uapi"
rm -rf -- "$uapi/linux" "$uapi/asm-generic" "$uapi/asm-x86" "$uapi/asm-arm64"
cp -R -- "$out"/. "$uapi"/

note "linux-libc-dev $version -> lib/uapi:"
(cd "$uapi" && find linux asm-generic asm-x86 asm-arm64 -type f | LC_ALL=C sort) >&2
