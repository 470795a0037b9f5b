#!/bin/sh
# SPDX-License-Identifier: MIT
#
# The SONAME of libmemfault is pinned.
#
# DO NOT MODIFY the expected value below. A change of SONAME breaks every
# program linked against the library; add symbols in a new node of
# lib/memfault.map instead (symbol versioning), and never remove one.
#
# usage: soname-test.sh READELF LIBRARY
set -eu

expected='libmemfault.so.0'   # DO NOT MODIFY

readelf=$1
lib=$2

soname=$("$readelf" -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
if [ "$soname" != "$expected" ]; then
	echo "soname-test: FAIL: $lib has SONAME '$soname', expected '$expected'"
	exit 1
fi
count=$("$readelf" -d "$lib" | grep -c '(SONAME)')
if [ "$count" != 1 ]; then
	echo "soname-test: FAIL: $count SONAME entries"
	exit 1
fi
echo "soname-test: ok: SONAME is $soname"
