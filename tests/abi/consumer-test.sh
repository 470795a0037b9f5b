#!/bin/bash
# SPDX-License-Identifier: MIT
#
# External consumer: install the build (install tags runtime and devel: the
# library, headers and .pc; not the docs, which `meson test` alone does not
# build) into a temporary DESTDIR, then build
# tests/abi/consumer/consumer.c (and consumer.cpp when a C++ compiler is
# given) with nothing but `pkg-config --cflags --libs libmemfault` pointed
# into that DESTDIR, run them against the installed library and check that
# the installed headers and library agree on the version (as liburing's
# test_build.c job does against an installed tree).
#
# usage: consumer-test.sh MESON BUILDDIR SRCDIR PREFIX LIBDIR VERSION \
#                         SANITIZE BUILT_LIBRARY 'CC ...' ['CXX ...']
# In a cross build meson sets MESON_EXE_WRAPPER, used to run the programs.
set -euo pipefail

meson=$1 builddir=$2 srcdir=$3 prefix=$4 libdir=$5 version=$6 sanitize=$7
built_lib=$(basename "$8")
read -ra cc <<<"$9"
cxx=()
[ $# -lt 10 ] || read -ra cxx <<<"${10}"
wrapper=()
[ -z "${MESON_EXE_WRAPPER:-}" ] || read -ra wrapper <<<"$MESON_EXE_WRAPPER"

case $libdir in
/*) ;;
*) libdir=$prefix/$libdir ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/memfault-consumer.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
dest=$tmp/destdir

fail() {
	echo "consumer-test: FAIL: $*"
	exit 1
}

"$meson" install -C "$builddir" --no-rebuild --quiet --tags runtime,devel --destdir "$dest" >"$tmp/install.log" 2>&1 ||
	{ cat "$tmp/install.log"; fail "meson install --destdir failed"; }

[ -f "$dest$prefix/include/memfault/memfault.h" ] || fail "memfault/memfault.h not installed"
[ -f "$dest$prefix/include/memfault/memfault-version.h" ] || fail "memfault/memfault-version.h not installed"
[ -L "$dest$libdir/libmemfault.so" ] || fail "libmemfault.so (dev symlink) not installed in $libdir"
[ -e "$dest$libdir/libmemfault.so.0" ] || fail "libmemfault.so.0 not installed in $libdir"
[ -f "$dest$libdir/$built_lib" ] || fail "$built_lib (the library built) not installed in $libdir"
# The vendored kernel uapi is private: it must never reach an include dir.
leaked=$(find "$dest" \( -name kvm.h -o -name userfaultfd.h -o -name '*-private.h' \) -print)
[ -z "$leaked" ] || fail "private headers installed: $leaked"

export PKG_CONFIG_LIBDIR=$dest$libdir/pkgconfig
export PKG_CONFIG_SYSROOT_DIR=$dest
unset PKG_CONFIG_PATH
# Keep -I/-L even when the prefix is a system one (/usr): the sysroot moves it.
export PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1 PKG_CONFIG_ALLOW_SYSTEM_LIBS=1
[ -f "$PKG_CONFIG_LIBDIR/libmemfault.pc" ] || fail "libmemfault.pc not installed in $libdir/pkgconfig"
modversion=$(pkg-config --modversion libmemfault) || fail "pkg-config does not find libmemfault"
[ "$modversion" = "$version" ] || fail "pkg-config --modversion is $modversion, expected $version"
read -ra pc_flags <<<"$(pkg-config --cflags --libs libmemfault)"
echo "consumer-test: pkg-config --cflags --libs libmemfault: ${pc_flags[*]}"
for f in "${pc_flags[@]}"; do
	case $f in
	-I"$dest"* | -L"$dest"* | -l* | -pthread) ;;
	*) fail "unexpected pkg-config flag '$f' (only the installed tree may be used)" ;;
	esac
done

san=()
[ "$sanitize" = none ] || [ -z "$sanitize" ] || san=("-fsanitize=$sanitize")

export LD_LIBRARY_PATH=$dest$libdir
run() {
	local out rc=0
	out=$("${wrapper[@]}" "$@") || rc=$?
	echo "$out"
	[ "$rc" -eq 0 ] || fail "$1 exited $rc"
	grep -q "library ${version%.*}\$" <<<"$out" || fail "$1 did not report library ${version%.*}"
}

"${cc[@]}" -std=c99 -pedantic -Wall -Wextra -Werror "${san[@]}" \
	"$srcdir/consumer/consumer.c" -o "$tmp/consumer" "${pc_flags[@]}" ||
	fail "C consumer does not build"
run "$tmp/consumer"

if [ ${#cxx[@]} -gt 0 ]; then
	"${cxx[@]}" -std=c++11 -pedantic -Wall -Wextra -Werror "${san[@]}" \
		"$srcdir/consumer/consumer.cpp" -o "$tmp/consumer-cxx" "${pc_flags[@]}" ||
		fail "C++ consumer does not build"
	run "$tmp/consumer-cxx"
else
	echo "consumer-test: no C++ compiler: C++ consumer not built"
fi
echo "consumer-test: ok"
