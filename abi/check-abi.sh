#!/bin/bash
# SPDX-License-Identifier: MIT
#
# ABI gate: compare a freshly built libmemfault.so.0 against the committed
# baseline abi/libmemfault.abi with abidiff (libabigail).
#
#   abi/check-abi.sh LIBRARY HEADERS_DIR [DEBUG_INFO_DIR]
#
#   LIBRARY         the new libmemfault.so.0[.x.y] (with DWARF, or stripped
#                   with its debug info under DEBUG_INFO_DIR)
#   HEADERS_DIR     the new public headers (an installed include/memfault)
#   DEBUG_INFO_DIR  e.g. the usr/lib/debug of an unpacked -dbgsym package
#
# Passes when abidiff finds nothing, or only added functions/variables (they
# are listed; debian/libmemfault0.symbols and tests/abi make sure they sit
# in a new map node). Fails on
#   - an incompatible change (abidiff exit bit 8: a removed or retyped
#     symbol),
#   - any other ABI change once additions are set aside (bit 4 of a second
#     run with --no-added-syms: a changed struct, enum or signature), unless
#     abi/libmemfault.abignore suppresses it with a reason,
#   - abidiff errors (bits 1 and 2), and a library without debug info.
# Exit status: 0 pass, 1 fail, 2 usage.
#
# Blind spot: a type that no exported function reaches is not compared (the
# enums passed as uint32_t, the MEMFAULT_* macros). tests/abi/test-abi.c
# pins those.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
baseline=$here/libmemfault.abi
suppr=$here/libmemfault.abignore

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
	echo "usage: $0 LIBRARY HEADERS_DIR [DEBUG_INFO_DIR]" >&2
	exit 2
fi
lib=$1 headers=${2%/}
debug_dw=() debug_diff=()
if [ $# -eq 3 ]; then
	debug_dw=(--debug-info-dir "$3")
	debug_diff=(--debug-info-dir2 "$3")
fi
for t in abidiff abidw "${CC:-cc}"; do
	command -v "$t" >/dev/null || { echo "check-abi: FAIL: $t not found (apt-get install abigail-tools gcc)"; exit 1; }
done

# abidiff reads a library without DWARF as "no functions, no types" and then
# finds no change at all (--fail-no-debug-info does not catch it when the
# other side is ABIXML): require debug info for every exported function.
dump=$(abidw "${debug_dw[@]}" --exported-interfaces-only "$lib") ||
	{ echo "check-abi: FAIL: abidw cannot read $lib"; exit 1; }
nsyms=$(grep -c "<elf-symbol .*type='func-type'" <<<"$dump")
ndecls=$(grep -c '<function-decl ' <<<"$dump")
if [ "$nsyms" -eq 0 ] || [ "$ndecls" -lt "$nsyms" ]; then
	echo "check-abi: FAIL: no debug info for $lib ($ndecls of $nsyms exported functions described)"
	exit 1
fi

# The public surface: the public headers and the system headers they
# include (see public-headers.sh).
tmp=$(mktemp -d "${TMPDIR:-/tmp}/memfault-abi.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$here/public-headers.sh" "$headers" "$tmp/public" ||
	{ echo "check-abi: FAIL: cannot collect the public headers of $headers"; exit 1; }
opts=(--headers-dir2 "$tmp/public")
opts+=("${debug_diff[@]}")
[ ! -f "$suppr" ] || opts+=(--suppressions "$suppr")

echo "check-abi: abidiff abi/$(basename "$baseline") $lib ($ndecls functions)"
rc=0
abidiff "${opts[@]}" "$baseline" "$lib" || rc=$?
echo "check-abi: abidiff exit status $rc"
if [ $((rc & 3)) -ne 0 ]; then
	echo "check-abi: FAIL: abidiff could not compare (exit bits 1/2)"
	exit 1
fi
if [ $((rc & 8)) -ne 0 ]; then
	echo "check-abi: FAIL: incompatible ABI change (a symbol removed or changed)"
	exit 1
fi
if [ $((rc & 4)) -ne 0 ]; then
	rc2=0
	abidiff "${opts[@]}" --no-added-syms "$baseline" "$lib" >/dev/null || rc2=$?
	if [ "$rc2" -ne 0 ]; then
		echo "check-abi: FAIL: ABI changes besides additions (exit $rc2 with --no-added-syms)"
		exit 1
	fi
	echo "check-abi: OK: only additions (they need a new MEMFAULT_0.x map node: doc/ADDING-SYMBOLS.md)"
	exit 0
fi
echo "check-abi: OK: no ABI change"
