#!/bin/bash
# SPDX-License-Identifier: MIT
#
#   abi/public-headers.sh HEADERS_DIR OUTDIR
#
# Copy into OUTDIR the public headers in HEADERS_DIR (an installed
# include/memfault) and every system header they include (<stdint.h>,
# <stddef.h> and theirs), for abidw --headers-dir and abidiff --headers-dir2.
#
# libabigail takes a type declared in a file that is not in that directory
# for a private type and hides its changes, matching files by base name
# (libabigail 2.2; --header-file2 has no effect there). With HEADERS_DIR
# alone, a parameter going from uint64_t to uint32_t would pass unseen.
set -euo pipefail
headers=${1%/} out=$2
mkdir -p "$out"
cp -f "$headers"/*.h "$out"/
"${CC:-cc}" -M -I"$headers/.." "$headers/memfault.h" |
	awk '{ for (i = 1; i <= NF; i++) if ($i ~ /\.h$/) print $i }' |
	grep -v "^$headers/" | sort -u | while read -r h; do
	# Only base names matter; two files may share one (stdint.h).
	cat "$h" >"$out/$(basename "$h")"
done
