#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Regenerate abi/libmemfault.abi, the ABI baseline that abi/check-abi.sh
# (run by .ci/job-packaging.sh) compares every build against.
#
#   abi/update-baseline.sh [BUILDDIR]
#
# Builds the library (x86_64, debug info on, no tests, docs or examples) in
# BUILDDIR (default: a temporary directory), installs it into a DESTDIR and
# writes the abidw dump of libmemfault.so.0 restricted to the types of the
# installed public headers. Run it when a release is cut (doc/ADDING-SYMBOLS.md),
# never to silence a failing ABI check.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=$here/libmemfault.abi

[ "$(uname -m)" = x86_64 ] || { echo "update-baseline.sh: the baseline is an x86_64 dump" >&2; exit 1; }
for t in meson ninja abidw; do
	command -v "$t" >/dev/null || { echo "update-baseline.sh: $t not found (apt-get install meson ninja-build abigail-tools)" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/memfault-abi.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
build=${1:-$tmp/build}
dest=$tmp/destdir

wipe=()
[ ! -f "$build/meson-private/coredata.dat" ] || wipe=(--wipe)
meson setup "$build" "$root" "${wipe[@]}" --buildtype=debugoptimized --prefix=/usr \
	--libdir=lib/x86_64-linux-gnu -Dtests=disabled -Ddocumentation=disabled \
	-Dexamples=false >"$tmp/setup.log" 2>&1 || { cat "$tmp/setup.log"; exit 1; }
meson compile -C "$build" >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; exit 1; }
meson install -C "$build" --no-rebuild --quiet --tags runtime,devel --destdir "$dest"

lib=$(readlink -f "$dest/usr/lib/x86_64-linux-gnu/libmemfault.so.0")
"$here/public-headers.sh" "$dest/usr/include/memfault" "$tmp/public"
abidw --headers-dir "$tmp/public" --drop-private-types \
	--exported-interfaces-only \
	--no-corpus-path --no-comp-dir-path --short-locs --type-id-style hash \
	--out-file "$out" "$lib"
echo "update-baseline.sh: wrote ${out#"$root"/} from $(basename "$lib")" \
	"($(grep -c '<elf-symbol ' "$out") ELF symbols)"
