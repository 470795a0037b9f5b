#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Packaging job: Debian packages (native and arm64 cross), lintian, an
# install test against the installed packages, the ABI gate, and the RPM
# spec. Works in build-packaging/ (a copy of the tree: the checkout stays
# clean); installs what it lacks from Debian's archive (apt; the only other
# system change is `dpkg --add-architecture arm64`).
#
# Checks, in order (each one counts in the last line):
#   symbols-file   debian/libmemfault0.symbols lists exactly the global
#                  symbols of lib/memfault.map, each sym@NODE at NODE's release
#   deb-build      dpkg-buildpackage -us -uc -b (tests: debian/rules),
#                  DPKG_GENSYMBOLS_CHECK_LEVEL=4
#   deb-contents   the expected packages, each with its key files
#   metadata       no placeholder URL (example.invalid, example.com/.org)
#                  in debian/ or in the built packages' control fields
#   lintian        lintian --pedantic -I -E on the binary packages and on the
#                  source package (dpkg-source -b: the .dsc): no error or
#                  warning, no unused override, every override with a comment
#   abi            abi/check-abi.sh: the packaged library (+ -dbgsym, -dev
#                  headers) against abi/libmemfault.abi
#   deb-install    apt-get install of the built .debs
#   consumer       tests/abi/consumer/consumer.c and .cpp built with
#                  `pkg-config --cflags --libs libmemfault` against the
#                  installed packages, run against the installed library
#   examples       every example shipped in libmemfault-doc built as a
#                  user would (cc, default dialect, -Wall -Werror, from the
#                  files examples/meson.build uses) against the installed
#                  library (pkg-config), minimal-vmm run on the KVM
#                  simulator of the package build, both architectures
#   python3        python3-memfault imports with /usr/bin/python3, from
#                  dist-packages, loads the installed libmemfault.so.0, and
#                  reports the package's version
#   probe-json     memfault-probe --json (installed) prints valid JSON
#   man            man -w finds memfault-probe(1) and memfault_vcpu_run(3)
#   deb-remove     apt-get purge of the packages again
#   cross-arm64    dpkg-buildpackage -us -uc -B -aarm64 -Pcross,nocheck,nodoc
#   rpm            rpmbuild -bb packaging/libmemfault.spec on a tarball of
#                  the tree (--without check unless MEMFAULT_RPM_CHECK=1)
#
# Prints the package lists with sizes and the lintian result; the last line
# is `N passed, N failed`; exits non-zero if a check failed.
#
# Environment:
#   MEMFAULT_PKG_DIR    work directory (default: build-packaging)
#   MEMFAULT_PKG_CROSS=0  skip the arm64 cross build (counted as neither)
#   MEMFAULT_PKG_RPM=0    skip the RPM build (counted as neither)
#   MEMFAULT_RPM_CHECK=1  rpmbuild with %check (the library suite again;
#                         off by default: the .deb build has just run it)
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
root=$PWD
work=${MEMFAULT_PKG_DIR:-$root/build-packaging}
export DEBIAN_FRONTEND=noninteractive
export DPKG_GENSYMBOLS_CHECK_LEVEL=4
apt_opts=(-o DPkg::Lock::Timeout=600 -q)
native_arch=$(dpkg --print-architecture)
packages=(libmemfault0 libmemfault-dev libmemfault-doc memfault-tools python3-memfault)
arch_packages=(libmemfault0 libmemfault-dev memfault-tools)

passed=0 failed=0
failures=()
pass() {
	passed=$((passed + 1))
	echo "[PASS] $1"
}
fail() {
	failed=$((failed + 1))
	failures+=("$1")
	echo "[FAIL] $1${2:+: $2}"
}
section() {
	echo
	echo "-------- $* --------"
}
finish() {
	echo
	echo "-------- timing --------"
	printf '%s\n' "${timing[@]}"
	printf 'total %d s\n' "$SECONDS"
	[ "${#failures[@]}" -eq 0 ] || echo "failed: ${failures[*]}"
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	exit
}
timing=()
t0=$SECONDS
lap() {
	timing+=("$(printf '%-14s %4d s' "$1" $((SECONDS - t0)))")
	t0=$SECONDS
}

rm -rf "$work"
mkdir -p "$work"

# ---------------------------------------------------------------- tools
section "dependencies"
need=()
# installed NAME[:ARCH]
installed() {
	local name=${1%%:*} arch=${1#*:}
	[ "$arch" != "$1" ] || arch=$native_arch
	dpkg-query -W -f='${Architecture} ${db:Status-Status}\n' "$name" 2>/dev/null |
		grep -qE "^($arch|all) installed\$"
}
tools=(dpkg-dev debhelper lintian abigail-tools python3 g++ pkgconf man-db)
[ "${MEMFAULT_PKG_RPM:-1}" = 0 ] || tools+=(rpm)
cross=0
if [ "${MEMFAULT_PKG_CROSS:-1}" != 0 ] && [ "$native_arch" = amd64 ]; then
	cross=1
	tools+=(gcc-aarch64-linux-gnu g++-aarch64-linux-gnu pkgconf:arm64)
fi
for p in "${tools[@]}"; do
	installed "$p" || need+=("$p")
done
apt_updated=0
apt_update_once() {
	[ "$apt_updated" = 1 ] || apt-get "${apt_opts[@]}" update >/dev/null || return 1
	apt_updated=1
}
apt_install() {
	apt_update_once && apt-get "${apt_opts[@]}" install -y --no-install-recommends "$@"
}
if [ "${#need[@]}" -gt 0 ]; then
	echo "installing: ${need[*]}"
	if [[ " ${need[*]} " == *:arm64* ]] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
		dpkg --add-architecture arm64
	fi
	apt_install "${need[@]}" >"$work/apt.log" 2>&1 ||
		{ cat "$work/apt.log"; fail dependencies "apt-get install ${need[*]}"; finish; }
else
	echo "all tools installed"
fi

version=$(dpkg-parsechangelog -l debian/changelog -S Version)
upstream=${version%%-*}
echo "libmemfault $version"

# copy_tree DEST: the checkout's files (tracked and untracked, not ignored),
# without packaging leftovers, into DEST.
copy_tree() {
	local dest=$1
	mkdir -p "$dest"
	if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
		git -C "$root" ls-files -z -co --exclude-standard
	else
		find . -path './build*' -prune -o \( -type f -o -type l \) -printf '%P\0'
	fi | grep -zvE '^(obj-[^/]*/|debian/(tmp|\.debhelper|libmemfault[^/]*|memfault-tools[^/]*)/|debian/(files|debhelper-build-stamp|.*\.substvars|.*\.debhelper\.log)$)' |
		while IFS= read -r -d '' f; do
			[ -e "$f" ] || [ -L "$f" ] || continue
			printf '%s\0' "$f"
		done | xargs -0 -r cp -P --parents -t "$dest"
}

lap dependencies

# ---------------------------------------------------------------- symbols
section "symbols file against lib/memfault.map"
if python3 - lib/memfault.map debian/libmemfault0.symbols <<'EOF'; then
import re, sys
mapfile, symfile = sys.argv[1:]
text = re.sub(r'/\*.*?\*/', '', open(mapfile).read(), flags=re.S)
want = {}
for node, body in re.findall(r'(MEMFAULT_\d+\.\d+)\s*\{(.*?)\}', text, flags=re.S):
    release = node.split('_', 1)[1] + '.0'
    want[f'{node}@{node}'] = release
    glob = body.split('global:', 1)[1].split('local:', 1)[0]
    for s in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)\s*;', glob):
        want[f'{s}@{node}'] = release
have, bad = {}, []
lines = open(symfile).read().splitlines()
if not lines or not lines[0].startswith('libmemfault.so.0 libmemfault0 '):
    bad.append('first line must be "libmemfault.so.0 libmemfault0 #MINVER#"')
if '* Build-Depends-Package: libmemfault-dev' not in lines:
    bad.append('no "* Build-Depends-Package: libmemfault-dev"')
for l in lines[1:]:
    if l.startswith(' '):
        f = l.split()
        have[f[0]] = f[1] if len(f) > 1 else ''
for k in sorted(set(want) - set(have)):
    bad.append(f'missing: {k} {want[k]}')
for k in sorted(set(have) - set(want)):
    bad.append(f'not in the map: {k}')
for k in sorted(set(want) & set(have)):
    if have[k] != want[k]:
        bad.append(f'{k}: version {have[k]}, the node says {want[k]}')
for b in bad:
    print('  ' + b)
print(f'{len(want)} map entries, {len(have)} symbols-file entries')
sys.exit(1 if bad else 0)
EOF
	pass symbols-file
else
	fail symbols-file "see doc/ADDING-SYMBOLS.md"
fi
lap symbols

# ---------------------------------------------------------------- deb build
section "dpkg-buildpackage -us -uc -b"
src=$work/deb/libmemfault-$upstream
copy_tree "$src"
log=$work/deb-build.log
echo "source copy: $src; log: $log"
if ! (cd "$src" && dpkg-checkbuilddeps) >/dev/null 2>&1; then
	echo "installing the build dependencies (apt-get build-dep)"
	{ apt_update_once && apt-get "${apt_opts[@]}" build-dep -y --no-install-recommends "$src"; } \
		>"$work/build-dep.log" 2>&1 || cat "$work/build-dep.log"
fi
if (cd "$src" && dpkg-buildpackage -us -uc -b) >"$log" 2>&1; then
	pass deb-build
	# meson test's summaries: the library suite, then the Python bindings
	grep -E '^(Ok|Fail|Skipped|Timeout):' "$log" |
		awk '{ printf "%s%s %s", (NR % 4 == 1 ? (NR > 1 ? "; " : "tests run by the build: ") : ", "), $1, $2 } END { print "" }'
else
	tail -n 60 "$log"
	fail deb-build "see $log"
fi
lap deb-build

# list_debs DIR: name, architecture, .deb size, Installed-Size
list_debs() {
	local f
	printf '%-34s %-6s %10s %14s\n' package arch deb-bytes installed-KiB
	for f in "$1"/*.deb; do
		[ -e "$f" ] || continue
		printf '%-34s %-6s %10s %14s\n' "$(dpkg-deb -f "$f" Package)" \
			"$(dpkg-deb -f "$f" Architecture)" "$(stat -c %s "$f")" \
			"$(dpkg-deb -f "$f" Installed-Size)"
	done
}
debs=$work/deb
deb_of() { echo "$debs/${1}_${version}_$2.deb"; }

section "packages ($native_arch)"
list_debs "$debs"
contents_ok=1
# has PACKAGE ARCH PATH...: every PATH (a grep -x pattern) is in the package
has() {
	local pkg=$1 arch=$2 f deb list
	shift 2
	deb=$(deb_of "$pkg" "$arch")
	[ -f "$deb" ] || { echo "  missing package: $(basename "$deb")"; contents_ok=0; return; }
	list=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./||')
	for f in "$@"; do
		grep -qxE "$f" <<<"$list" || { echo "  $pkg: no $f"; contents_ok=0; }
	done
}
ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
has libmemfault0 "$native_arch" "usr/lib/$ma/libmemfault\.so\.0" "usr/lib/$ma/libmemfault\.so\.$upstream"
# section-3 pages go with the headers (Debian policy 12.1: in -dev)
has libmemfault-dev "$native_arch" "usr/include/memfault/memfault\.h" \
	"usr/include/memfault/memfault-version\.h" "usr/lib/$ma/libmemfault\.so" \
	"usr/lib/$ma/pkgconfig/libmemfault\.pc" \
	"usr/share/man/man3/memfault\.3\.gz" "usr/share/man/man3/memfault_vcpu_run\.3\.gz"
has libmemfault-doc all "usr/share/doc/libmemfault-doc/html/index\.html" \
	"usr/share/doc/libmemfault-doc/examples/minimal-vmm\.c(\.gz)?" \
	"usr/share/doc/libmemfault-doc/examples/example-vm\.h(\.gz)?" \
	"usr/share/doc/libmemfault-doc/examples/postcopy\.c(\.gz)?" \
	"usr/share/doc/libmemfault-doc/examples/conversion\.c(\.gz)?" \
	"usr/share/doc/libmemfault-doc/examples/linux-vmm/main\.c(\.gz)?"
has python3-memfault all "usr/lib/python3/dist-packages/memfault/__init__\.py" \
	"usr/lib/python3/dist-packages/memfault/_core\.py" \
	"usr/lib/python3/dist-packages/memfault-$upstream\.dist-info/METADATA"
has memfault-tools "$native_arch" "usr/bin/memfault-probe" "usr/share/man/man1/memfault-probe\.1\.gz"
has libmemfault0-dbgsym "$native_arch" "usr/lib/debug/\.build-id/.*\.debug"
if [ -f "$(deb_of libmemfault-dev "$native_arch")" ]; then
	# the vendored kernel uapi stays private; the HTML has no doc/ repeated
	if dpkg-deb -c "$(deb_of libmemfault-dev "$native_arch")" | grep -E 'kvm\.h|userfaultfd\.h|private'; then
		echo "  libmemfault-dev: private headers installed"
		contents_ok=0
	fi
	if dpkg-deb -c "$(deb_of libmemfault-doc all)" | grep -q 'libmemfault-doc/doc/'; then
		echo "  libmemfault-doc: repeated doc/ path segment"
		contents_ok=0
	fi
	if dpkg-deb -c "$(deb_of libmemfault-doc all)" | grep -q 'share/man/'; then
		echo "  libmemfault-doc: manual pages (they belong in libmemfault-dev)"
		contents_ok=0
	fi
	dpkg-deb -I "$(deb_of libmemfault0 "$native_arch")" symbols >"$work/symbols.deb" 2>/dev/null
	if ! grep -q '^ memfault_vcpu_run@MEMFAULT_0\.1 ' "$work/symbols.deb"; then
		echo "  libmemfault0: no symbols control file with MEMFAULT_0.1 entries"
		contents_ok=0
	fi
	dep=$(dpkg-deb -f "$(deb_of memfault-tools "$native_arch")" Depends)
	echo "memfault-tools Depends: $dep"
	grep -q 'libmemfault0 (>= ' <<<"$dep" || { echo "  memfault-tools does not depend on libmemfault0"; contents_ok=0; }
fi
if [ "$contents_ok" = 1 ]; then pass deb-contents; else fail deb-contents; fi
lap deb-contents

# ---------------------------------------------------------------- metadata
section "no placeholder metadata"
# A field left out is better than a made-up address that looks real.
placeholder='example\.invalid|https?://(www\.)?example\.(com|org|net)'
meta_ok=1
if grep -rnE "$placeholder" debian/ bindings/rust/*/Cargo.toml bindings/rust/Cargo.toml \
	bindings/python/pyproject.toml; then
	meta_ok=0
fi
for f in "$debs"/*.deb; do
	[ -e "$f" ] || continue
	if dpkg-deb -f "$f" | grep -E "$placeholder"; then
		echo "  $(basename "$f"): placeholder in the control fields"
		meta_ok=0
	fi
done
if [ "$meta_ok" = 1 ]; then pass metadata; else fail metadata; fi
lap metadata

# ---------------------------------------------------------------- lintian
section "lintian --pedantic -I -E (binary and source packages)"
changes=$debs/libmemfault_${version}_$native_arch.changes
# The source package as dpkg-source builds it from a clean copy of the
# tree (3.0 (native): one tarball and the .dsc), not from the one the
# binary build has filled.
srcpkg=$work/source
copy_tree "$srcpkg/libmemfault-$upstream"
dsc=$srcpkg/libmemfault_${version}.dsc
if ! (cd "$srcpkg" && dpkg-source -b "libmemfault-$upstream") >"$work/source.log" 2>&1; then
	cat "$work/source.log"
fi
if [ -f "$changes" ] && [ -f "$dsc" ]; then
	# shellcheck disable=SC2054 # --fail-on takes a comma-separated list
	lintian_cmd=(lintian --pedantic -I -E --show-overrides --fail-on error,warning "$changes" "$dsc")
	# lintian warns when run as root: run it as nobody when possible.
	if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
		chmod -R a+rX "$work"
		lintian_cmd=(setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME=/tmp "${lintian_cmd[@]}")
	fi
	lrc=0
	"${lintian_cmd[@]}" >"$work/lintian.txt" 2>&1 || lrc=$?
	# (not the hundred overridden lines of the fuzz corpora)
	grep -v -e '^N: ' -e '^O: .*\[tests/fuzz/corpus/' "$work/lintian.txt" | sed 's/^/  /'
	count() { grep -c "^$1: " "$work/lintian.txt"; }
	echo "lintian: exit $lrc; E $(count E), W $(count W), I $(count I), P $(count P), X $(count X), overridden $(count O)"
	lint_ok=1
	[ "$lrc" -eq 0 ] || lint_ok=0
	if grep -E '^[EWIPX]: .*(unused-override|mismatched-override)' "$work/lintian.txt"; then
		lint_ok=0
	fi
	# Every override needs a comment saying why (the lines just above it).
	for f in debian/*.lintian-overrides debian/source/lintian-overrides; do
		[ -f "$f" ] || continue
		awk -v f="$f" '/^[[:space:]]*$/ { c = 0; next }
			/^#/ { c = 1; next }
			!c { print "  " f ": override without a comment: " $0; bad = 1 }
			END { exit bad }' "$f" || lint_ok=0
	done
	if [ "$lint_ok" = 1 ]; then pass lintian; else fail lintian; fi
else
	fail lintian "no $changes or no $dsc"
fi
lap lintian

# ---------------------------------------------------------------- ABI
section "ABI: abi/check-abi.sh on the packaged library"
if [ "$native_arch" != amd64 ]; then
	echo "the baseline is x86_64: not checked on $native_arch"
elif [ -f "$(deb_of libmemfault0 "$native_arch")" ]; then
	x=$work/abi-unpacked
	for p in libmemfault0 libmemfault0-dbgsym libmemfault-dev; do
		dpkg-deb -x "$(deb_of "$p" "$native_arch")" "$x"
	done
	if abi/check-abi.sh "$x/usr/lib/$ma/libmemfault.so.$upstream" \
		"$x/usr/include/memfault" "$x/usr/lib/debug"; then
		pass abi
	else
		fail abi "see doc/ADDING-SYMBOLS.md"
	fi
else
	fail abi "no packages"
fi
lap abi

# ---------------------------------------------------------------- install
section "install the packages, use them, remove them"
preinstalled=()
for p in "${packages[@]}"; do
	installed "$p" && preinstalled+=("$p")
done
[ "${#preinstalled[@]}" -eq 0 ] ||
	echo "note: already installed before this job (replaced, then removed): ${preinstalled[*]}"
remove_packages() {
	local left=()
	apt-get "${apt_opts[@]}" purge -y "${packages[@]}" >"$work/purge.log" 2>&1
	for p in "${packages[@]}"; do
		installed "$p" && left+=("$p")
	done
	[ "${#left[@]}" -eq 0 ] && [ ! -e /usr/include/memfault ]
}
install_ok=0
files=()
for p in "${packages[@]}"; do
	a=$native_arch
	case $p in libmemfault-doc | python3-*) a=all ;; esac
	files+=("$(deb_of "$p" "$a")")
done
if apt-get "${apt_opts[@]}" install -y --no-install-recommends "${files[@]}" >"$work/install.log" 2>&1; then
	install_ok=1
	trap 'remove_packages' EXIT
	pass deb-install
	dpkg-query -W "${packages[@]}" | sed 's/^/  /'
else
	tail -n 30 "$work/install.log"
	fail deb-install
fi

if [ "$install_ok" = 1 ]; then
	# consumer: pkg-config as a user's shell has it (no PKG_CONFIG_*)
	c=$work/consumer
	mkdir -p "$c"
	cons_ok=1
	flags=$(env -u PKG_CONFIG_PATH -u PKG_CONFIG_LIBDIR -u PKG_CONFIG_SYSROOT_DIR \
		pkg-config --cflags --libs libmemfault) || cons_ok=0
	modversion=$(env -u PKG_CONFIG_PATH -u PKG_CONFIG_LIBDIR pkg-config --modversion libmemfault)
	echo "pkg-config libmemfault: version $modversion, flags: $flags"
	[ "$modversion" = "$upstream" ] || { echo "  modversion $modversion, expected $upstream"; cons_ok=0; }
	read -ra pc <<<"$flags"
	if [ "$cons_ok" = 1 ] &&
		cc -std=c99 -pedantic -Wall -Wextra -Werror tests/abi/consumer/consumer.c \
			-o "$c/consumer" "${pc[@]}" &&
		c++ -std=c++11 -pedantic -Wall -Wextra -Werror tests/abi/consumer/consumer.cpp \
			-o "$c/consumer-cxx" "${pc[@]}"; then
		# the headers too must be the installed ones (not /usr/local/include)
		hdr=$(cc -M tests/abi/consumer/consumer.c "${pc[@]}" 2>/dev/null |
			awk '{ for (i = 1; i <= NF; i++) if ($i ~ /\/memfault\.h$/) print $i }')
		echo "  memfault.h: $hdr"
		[ "$hdr" = /usr/include/memfault/memfault.h ] || { echo "  not the installed header"; cons_ok=0; }
		for prog in consumer consumer-cxx; do
			lib=$(env -u LD_LIBRARY_PATH ldd "$c/$prog" | awk '$1 == "libmemfault.so.0" { print $3 }')
			out=$(env -u LD_LIBRARY_PATH -u LD_PRELOAD "$c/$prog") || { echo "  $prog failed"; cons_ok=0; }
			echo "  $prog: $out (libmemfault.so.0 => $lib)"
			grep -q "library ${upstream%.*}\$" <<<"$out" || cons_ok=0
			[ "$(readlink -f "$lib")" = "/usr/lib/$ma/libmemfault.so.$upstream" ] ||
				{ echo "  $prog does not use the installed library"; cons_ok=0; }
		done
	else
		cons_ok=0
	fi
	if [ "$cons_ok" = 1 ]; then pass consumer; else fail consumer; fi

	# the examples as a user gets them from libmemfault-doc, each built
	# from the files examples/meson.build builds it from, against the
	# installed library (pkg-config) and the system's <linux/kvm.h>
	ex_ok=1
	exdir=/usr/share/doc/libmemfault-doc/examples
	rm -rf "${c:?}/examples" "${c:?}/bin"
	mkdir -p "$c/bin"
	cp -r "$exdir" "$c/examples"
	find "$c/examples" -name '*.gz' -exec gzip -d {} +
	# build_example NAME SOURCE...
	build_example() {
		local name=$1 f
		shift
		for f in "$@"; do
			[ -f "$c/examples/$f" ] || { echo "  no $exdir/$f"; ex_ok=0; return; }
		done
		# as a user would: the compiler's default C dialect, no defines
		if (cd "$c/examples" && cc -Wall -Werror "$@" -o "$c/bin/$name" "${pc[@]}" -pthread); then
			echo "  $name: built from $*"
		else
			echo "  $name does not build"
			ex_ok=0
		fi
	}
	build_example minimal-vmm minimal-vmm.c example-vm.c
	build_example postcopy postcopy.c postcopy-pages.c postcopy-source.c example-vm.c
	build_example conversion conversion.c example-vm.c
	if [ "$native_arch" = amd64 ]; then
		# linux-vmm/other-arch.c is the stub for other architectures
		mapfile -t lvmm < <(cd "$c/examples" && find linux-vmm -name '*.c' ! -name other-arch.c | sort)
		build_example linux-vmm "${lvmm[@]}"
	fi
	# minimal-vmm on the simulator of the package build: its guest's steps
	# as a script (examples/minimal-vmm.ARCH.kvmsim, which the example
	# tests use too; the example checks every step, so a script that no
	# longer matches fails here)
	sim=$(find "$src"/obj-* -name libkvmsim.so -path '*tests/sim*' 2>/dev/null | head -n 1)
	if [ -x "$c/bin/minimal-vmm" ] && [ -n "$sim" ]; then
		for arch in x86_64 arm64; do
			if env -u LD_LIBRARY_PATH LD_PRELOAD="$sim" KVMSIM_LEVEL=7.2 KVMSIM_ARCH="$arch" \
				KVMSIM_SCRIPT="$(cat "$src/examples/minimal-vmm.$arch.kvmsim")" \
				"$c/bin/minimal-vmm" --arch "$arch" >"$c/bin/run-$arch.log" 2>&1; then
				echo "  minimal-vmm --arch $arch (installed library, simulator): exit 0"
			else
				tail -n 5 "$c/bin/run-$arch.log"
				echo "  minimal-vmm --arch $arch failed"
				ex_ok=0
			fi
		done
	elif [ -x "$c/bin/minimal-vmm" ]; then
		echo "  minimal-vmm not run: no simulator in the build tree (nocheck build?)"
	fi
	if [ "$ex_ok" = 1 ]; then pass examples; else fail examples; fi

	# python3-memfault: the module Debian's python3 imports, and the library
	# it loads (no LIBMEMFAULT_PATH: found by soname)
	if env -u LIBMEMFAULT_PATH -u PYTHONPATH -u LD_LIBRARY_PATH /usr/bin/python3 - "$upstream" <<'EOF'; then
import importlib.metadata, sys
import memfault
upstream = sys.argv[1]
assert memfault.__file__.startswith('/usr/lib/python3/dist-packages/memfault/'), memfault.__file__
assert memfault.__version__ == upstream, memfault.__version__
assert importlib.metadata.version('memfault') == upstream
assert memfault.version() == tuple(int(x) for x in upstream.split('.')[:2])
print(f'  python3-memfault {memfault.__version__}: {memfault.__file__}, library {memfault.library_path()}')
EOF
		pass python3
	else
		fail python3
	fi

	# memfault-probe --json: 0 usable, 1 no KVM, 3 no VM all print a report
	prc=0
	env -u LD_PRELOAD /usr/bin/memfault-probe --json >"$work/probe.json" 2>"$work/probe.err" || prc=$?
	if [[ $prc =~ ^[013]$ ]] && python3 - "$work/probe.json" "$prc" <<'EOF'; then
import json, sys
d = json.load(open(sys.argv[1]))
if not isinstance(d, dict) or not d:
    sys.exit('not a JSON object')
top = ', '.join(list(d)[:8])
print(f'memfault-probe --json: exit {sys.argv[2]}, valid JSON, {len(d)} top-level keys ({top}, ...)')
EOF
		pass probe-json
	else
		head -c 600 "$work/probe.json"
		cat "$work/probe.err"
		fail probe-json "exit $prc"
	fi

	man_ok=1
	for page in "1 memfault-probe" "3 memfault_vcpu_run" "3 memfault_vm_free"; do
		read -r sec name <<<"$page"
		# shellcheck disable=SC2086
		m=$(man -w $sec "$name" 2>/dev/null) || { echo "  no man page $name($sec)"; man_ok=0; continue; }
		echo "  $name($sec): $m"
	done
	if [ "$man_ok" = 1 ]; then pass man; else fail man; fi

	if remove_packages; then
		pass deb-remove
	else
		tail -n 20 "$work/purge.log"
		fail deb-remove
	fi
	trap - EXIT
fi
lap install-test

# ---------------------------------------------------------------- cross
if [ "$cross" = 1 ]; then
	section "dpkg-buildpackage -us -uc -B -aarm64 -Pcross,nocheck,nodoc"
	xsrc=$work/cross/libmemfault-$upstream
	copy_tree "$xsrc"
	xlog=$work/cross-build.log
	if (cd "$xsrc" && dpkg-buildpackage -us -uc -B -aarm64 -Pcross,nocheck,nodoc) >"$xlog" 2>&1; then
		list_debs "$work/cross"
		x_ok=1
		for p in "${arch_packages[@]}"; do
			[ -f "$work/cross/${p}_${version}_arm64.deb" ] || { echo "  missing ${p}_${version}_arm64.deb"; x_ok=0; }
		done
		xd=$work/cross-unpacked
		dpkg-deb -x "$work/cross/libmemfault0_${version}_arm64.deb" "$xd" 2>/dev/null
		machine=$(readelf -h "$xd/usr/lib/aarch64-linux-gnu/libmemfault.so.$upstream" 2>/dev/null |
			awk -F: '/Machine:/ { gsub(/^ +/, "", $2); print $2 }')
		echo "arm64 libmemfault.so.$upstream: $machine"
		[ "$machine" = AArch64 ] || x_ok=0
		if [ "$x_ok" = 1 ]; then pass cross-arm64; else fail cross-arm64; fi
	else
		tail -n 40 "$xlog"
		fail cross-arm64 "see $xlog"
	fi
	lap cross-arm64
fi

# ---------------------------------------------------------------- RPM
if [ "${MEMFAULT_PKG_RPM:-1}" != 0 ]; then
	section "rpmbuild -bb packaging/libmemfault.spec"
	top=$work/rpm
	mkdir -p "$top/SOURCES"
	copy_tree "$top/tree/libmemfault-$upstream"
	rm -rf "$top/tree/libmemfault-$upstream/debian"
	tar -C "$top/tree" -czf "$top/SOURCES/libmemfault-$upstream.tar.gz" "libmemfault-$upstream"
	rpm_opts=(--define "_topdir $top" --nodeps)
	[ "${MEMFAULT_RPM_CHECK:-0}" = 1 ] || rpm_opts+=(--without check)
	# Debian's rpm has no BuildRequires database: --nodeps; the same tools
	# are there from the Debian build dependencies.
	if rpmbuild -bb "${rpm_opts[@]}" packaging/libmemfault.spec >"$work/rpm.log" 2>&1; then
		printf '%-44s %10s\n' rpm bytes
		rpms=("$top"/RPMS/*/*.rpm)
		for f in "${rpms[@]}"; do
			printf '%-44s %10s\n' "$(basename "$f")" "$(stat -c %s "$f")"
		done
		grep -E '^(Ok|Fail|Skipped):' "$work/rpm.log" |
			awk '{ printf "%s%s %s", (NR == 1 ? "%check: " : ", "), $1, $2 } END { if (NR) print "" }'
		if [ "${#rpms[@]}" -eq 4 ]; then pass rpm; else fail rpm "expected 4 RPMs"; fi
	else
		tail -n 40 "$work/rpm.log"
		fail rpm "see $work/rpm.log"
	fi
	lap rpm
fi

finish
