#!/bin/bash
# SPDX-License-Identifier: MIT
#
# run-nested.sh ARCH - run the kernel suite (tests/kernel) against a real
# Linux KVM on a host without /dev/kvm: boot a Debian kernel under QEMU TCG
# with emulated virtualization (x86_64: AMD SVM + NPT; arm64: EL2/VHE +
# GICv3), with the suite's static test binaries in the initramfs.
#
#   tests/kernel/run-nested.sh x86_64
#   tests/kernel/run-nested.sh arm64
#
# Steps: (a) get a kernel, (b) build the test binaries statically with
# libmemfault and Check compiled in (arm64 also: test-bitmap-tsan, the
# concurrent bitmap tests under gcc's ThreadSanitizer, dynamic, its
# libraries in the initramfs; SKIP without an aarch64 libtsan.so.2),
# (c) build an initramfs, (d) boot it, print the kernel version, the result
# of every scenario and the guest time of every executable, and (e) compare
# the VMM-visible results (KRES lines) with the same scenarios run on the
# KVM simulator (tests/kernel/test-kernel-diff-sim-ARCH).
#
# Exit status: 0 all passed; 1 a test failed; 2 a guest never reported
# (panic, hang, timeout); 3 the tests passed but the kernel and the
# simulator disagree; 77 cannot run here (no kernel, QEMU or toolchain).
#
# Environment (defaults in brackets):
#   MEMFAULT_KERNEL_DIR      directory with debian-7.2.13/ARCH (pinned kernels)
#                            and x86_64-swprot/bzImage; without it the current
#                            Debian sid cloud kernel is downloaded with a
#                            private apt configuration. If it also has
#                            userfault-7.2.13/{x86_64/bzImage,arm64/Image}
#                            (7.2.13 with the KVM Userfault series), that
#                            kernel is booted too (QEMU -smp 2) and runs
#                            test-kernel-userfault; without it those
#                            scenarios are skipped, with the reason
#   MEMFAULT_NESTED_WORK     scratch directory [${TMPDIR:-/tmp}/memfault-nested]
#   MEMFAULT_NESTED_DIR      if set, write DIR/meson-logs/testlog.json: one
#                            result per scenario and one for the differential
#                            check, in meson's format (.ci/run counts them)
#   MEMFAULT_NESTED_CACHE    apt lists, .debs, the arm64 Check sysroot
#                            [${XDG_CACHE_HOME:-$HOME/.cache}/libmemfault-nested]
#   MEMFAULT_NESTED_TIMEOUT  seconds per boot before it counts as hung [240]
#   MEMFAULT_NESTED_DIFF     1: differential check against the simulator,
#                            0: skip it [1]
#   MEMFAULT_BUILD_DIR       a meson build directory of this tree that has
#                            built tests/kernel/test-kernel-diff-sim-ARCH;
#                            without it one is set up under the work directory
#   MEMFAULT_MIRROR          Debian mirror [the one this machine's own apt
#                            configuration uses: tools/debian-mirror.sh]
#   MEMFAULT_NESTED_DEBIAN   the kernel matrix: Debian suites whose current
#                            cloud kernel is booted too, each in a boot of
#                            its own, and compared with the simulator model
#                            of its level [bookworm trixie]; empty: none.
#                            The version is resolved from the suite's index
#                            on every run (a point release replaces the one
#                            seen before: the new one is downloaded) and
#                            recorded in WORK/kernels.txt and the report
#   MEMFAULT_NESTED_DEBIAN_ONLY
#                            executables run on those boots (a space list,
#                            ksuite.only) [every test-kernel-*]
#   MEMFAULT_NESTED_TSAN_LOOPS
#                            arm64: runs of each test-bitmap-tsan case [4]
#
# The system's apt configuration and state (/etc/apt, /var/lib/apt) are
# never touched: downloads use apt-get download with a private
# sources.list, lists and cache under MEMFAULT_NESTED_CACHE.
set -euo pipefail

usage() {
	sed -n '3,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

ARCH=${1:-}
case $ARCH in
x86_64 | arm64) ;;
-h | --help)
	usage
	exit 0
	;;
*)
	usage >&2
	exit 64
	;;
esac

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK_BASE=${MEMFAULT_NESTED_WORK:-${TMPDIR:-/tmp}/memfault-nested}
WORK=$WORK_BASE/$ARCH
CACHE=${MEMFAULT_NESTED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/libmemfault-nested}
TIMEOUT=${MEMFAULT_NESTED_TIMEOUT:-240}
# No registry host is named here: the mirror is the system's own.
MIRROR=$("$SRC/tools/debian-mirror.sh" 2> /dev/null || true)
DEBIAN_SUITES=${MEMFAULT_NESTED_DEBIAN-bookworm trixie}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
T_START=$(date +%s.%N)

log() { printf '[run-nested %s %s] %s\n' "$ARCH" "$(date +%T)" "$*" >&2; }
skip() {
	log "SKIP: $*"
	exit 77
}
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

if [ "$ARCH" = x86_64 ]; then
	DEBARCH=amd64
	QEMU=qemu-system-x86_64
	CC=${CC_X86_64:-gcc}
	UAPI_ARCH=asm-x86
	MULTIARCH=x86_64-linux-gnu
else
	DEBARCH=arm64
	QEMU=qemu-system-aarch64
	CC=${CC_ARM64:-aarch64-linux-gnu-gcc}
	UAPI_ARCH=asm-arm64
	MULTIARCH=aarch64-linux-gnu
fi

for tool in "$QEMU" "$CC" cpio gzip xz timeout; do
	command -v "$tool" > /dev/null ||
		skip "$tool not found (Debian: qemu-system-x86 qemu-system-arm gcc gcc-aarch64-linux-gnu libc6-dev-arm64-cross cpio xz-utils)"
done

mkdir -p "$WORK" "$CACHE"

# ---- private apt configuration ----------------------------------------------

# apt_setup SUITE ARCH...: a sources.list, lists and cache of our own under
# $CACHE/apt-SUITE-ARCH...; sets APT_OPTS. Refreshed when older than a day.
APT_OPTS=()
apt_setup() {
	local suite=$1
	shift
	local d archs a
	archs=$(
		IFS=,
		echo "$*"
	)
	d=$CACHE/apt-$suite-${archs//,/-}
	[ -r "$KEYRING" ] || return 1
	[ -n "$MIRROR" ] || return 1
	command -v apt-get > /dev/null || return 1
	mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
	: > "$d/status"
	echo "deb [arch=$archs signed-by=$KEYRING] $MIRROR $suite main" > "$d/sources.list"
	APT_OPTS=(-q -o "Dir::Etc::SourceList=$d/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache"
		-o "Dir::State::status=$d/status"
		-o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
		-o "APT::Architecture=$1" -o Debug::NoLocking=1 -o APT::Sandbox::User=root
		-o Acquire::Languages=none)
	for a in "$@"; do APT_OPTS+=(-o "APT::Architectures::=$a"); done
	if [ -z "$(find "$d/lists" -maxdepth 1 -name '*Packages*' -mmin -1440 2> /dev/null)" ]; then
		log "apt-get update ($suite: $archs, private configuration)"
		apt-get "${APT_OPTS[@]}" update > "$d/update.log" 2>&1 || {
			cat "$d/update.log" >&2
			return 1
		}
	fi
}

# apt_download DIR PKG...: apt-get download into DIR (kept as a cache).
apt_download() {
	local dir=$1
	shift
	mkdir -p "$dir"
	(cd "$dir" && apt-get "${APT_OPTS[@]}" download "$@" > download.log 2>&1) || {
		cat "$dir/download.log" >&2
		return 1
	}
}

# ---- (a) kernel ---------------------------------------------------------------

KERNEL= # the image QEMU boots
KERNEL_DESC=
MODULES_DIR= # x86: plain .ko files to load
BUSYBOX=
SWPROT_KERNEL=
UF_KERNEL=
UF_SKIP=

pinned_kernel() {
	local kd=${MEMFAULT_KERNEL_DIR:-}/debian-7.2.13/$ARCH
	[ -n "${MEMFAULT_KERNEL_DIR:-}" ] || return 1
	if [ "$ARCH" = x86_64 ]; then
		[ -r "$kd/vmlinuz" ] && [ -d "$kd/modules" ] || return 1
		KERNEL=$kd/vmlinuz
		MODULES_DIR=$WORK/modules
		rm -rf "$MODULES_DIR"
		mkdir -p "$MODULES_DIR"
		local m
		for m in "$kd"/modules/*.ko.xz; do
			xz -dc "$m" > "$MODULES_DIR/$(basename "$m" .xz)"
		done
		if [ -r "$MEMFAULT_KERNEL_DIR/x86_64-swprot/bzImage" ]; then
			SWPROT_KERNEL=$MEMFAULT_KERNEL_DIR/x86_64-swprot/bzImage
		fi
	else
		[ -r "$kd/Image.xz" ] && [ -r "$kd/busybox.xz" ] || return 1
		KERNEL=$WORK/Image
		if [ ! -s "$KERNEL" ] || [ "$kd/Image.xz" -nt "$KERNEL" ]; then
			xz -dc "$kd/Image.xz" > "$KERNEL.tmp" && mv "$KERNEL.tmp" "$KERNEL"
		fi
		BUSYBOX=$WORK/busybox
		xz -dc "$kd/busybox.xz" > "$BUSYBOX"
		chmod +x "$BUSYBOX"
	fi
	KERNEL_DESC="pinned Debian 7.2.13 ($kd)"
}

sid_kernel() {
	log "no pinned kernel (MEMFAULT_KERNEL_DIR); trying Debian sid"
	apt_setup sid "$DEBARCH" || return 1
	local meta=linux-image-cloud-$DEBARCH abi kname
	abi=$(apt-cache "${APT_OPTS[@]}" depends "$meta:$DEBARCH" 2> /dev/null |
		sed -n "s/.*Depends: linux-image-\([0-9][^ :]*\)-cloud-$DEBARCH\(:$DEBARCH\)\{0,1\}\$/\1/p" | head -1)
	[ -n "$abi" ] || {
		log "cannot resolve the kernel ABI from $meta"
		return 1
	}
	kname=$abi-cloud-$DEBARCH
	local d=$CACHE/sid-$kname
	if [ ! -e "$d/ok" ]; then
		local pkgs=("linux-binary-$kname:$DEBARCH")
		[ "$ARCH" = x86_64 ] && pkgs+=("linux-modules-$kname:$DEBARCH")
		[ "$ARCH" = arm64 ] && pkgs+=("busybox-static:arm64")
		log "downloading ${pkgs[*]}"
		rm -rf "$d"
		apt_download "$d/debs" "${pkgs[@]}" || return 1
		local deb
		for deb in "$d"/debs/*.deb; do dpkg-deb -x "$deb" "$d/x"; done
		touch "$d/ok"
	fi
	KERNEL=$d/x/usr/lib/modules/$kname/vmlinuz
	[ -r "$KERNEL" ] || return 1
	if [ "$(head -c2 "$KERNEL" | od -An -tx1 | tr -d ' \n')" = 1f8b ]; then
		gzip -dc "$KERNEL" > "$WORK/Image"
		KERNEL=$WORK/Image
	fi
	if [ "$ARCH" = x86_64 ]; then
		MODULES_DIR=$WORK/modules
		rm -rf "$MODULES_DIR"
		mkdir -p "$MODULES_DIR"
		local m f
		for m in virt/lib/irqbypass arch/x86/kvm/kvm drivers/crypto/ccp/ccp arch/x86/kvm/kvm-amd; do
			f=$d/x/usr/lib/modules/$kname/kernel/$m.ko.xz
			if [ -e "$f" ]; then xz -dc "$f" > "$MODULES_DIR/$(basename "$m").ko"; fi
		done
	else
		BUSYBOX=$d/x/bin/busybox
		[ -x "$BUSYBOX" ] || BUSYBOX=$d/x/usr/bin/busybox
	fi
	KERNEL_DESC="Debian sid $kname"
}

# debian_kernel SUITE: the current cloud kernel of Debian SUITE (the matrix,
# MEMFAULT_NESTED_DEBIAN). Resolves the version from the suite's index, so
# that a point release that replaced the one seen before is fetched anew;
# caches the .debs and their extraction under $CACHE/SUITE-PKG-VERSION.
# Sets DK_IMAGE, DK_MODULES (x86: a directory of plain .ko) and DK_DESC.
debian_kernel() {
	local suite=$1 meta=linux-image-cloud-$DEBARCH pkg ver d
	DK_IMAGE='' DK_MODULES='' DK_DESC=''
	apt_setup "$suite" "$DEBARCH" || return 1
	pkg=$(apt-cache "${APT_OPTS[@]}" depends "$meta:$DEBARCH" 2> /dev/null |
		sed -n "s/.*Depends: \(linux-image-[0-9][^ :]*-cloud-$DEBARCH\)\(:$DEBARCH\)\{0,1\}\$/\1/p" | head -1)
	[ -n "$pkg" ] || {
		log "$suite: cannot resolve the kernel package from $meta"
		return 1
	}
	# linux-image-X-unsigned on arm64/amd64 when it exists: the same image
	ver=$(apt-cache "${APT_OPTS[@]}" show "$pkg:$DEBARCH" 2> /dev/null | sed -n 's/^Version: //p' | head -1)
	[ -n "$ver" ] || return 1
	d=$CACHE/$suite-$pkg-$ver
	if [ ! -e "$d/ok" ]; then
		log "$suite: downloading $pkg $ver"
		rm -rf "$d"
		apt_download "$d/debs" "$pkg:$DEBARCH" || return 1
		local deb
		for deb in "$d"/debs/*.deb; do dpkg-deb -x "$deb" "$d/x"; done
		touch "$d/ok"
	fi
	DK_IMAGE=$(find "$d/x" -name 'vmlinuz-*' -o -name vmlinuz | head -1)
	[ -r "$DK_IMAGE" ] || return 1
	if [ "$(head -c2 "$DK_IMAGE" | od -An -tx1 | tr -d ' \n')" = 1f8b ]; then
		gzip -dc "$DK_IMAGE" > "$WORK/Image-$suite"
		DK_IMAGE=$WORK/Image-$suite
	fi
	if [ "$ARCH" = x86_64 ]; then
		DK_MODULES=$WORK/modules-$suite
		rm -rf "$DK_MODULES"
		mkdir -p "$DK_MODULES"
		local m f
		for m in irqbypass kvm ccp kvm-amd; do
			f=$(find "$d/x" -name "$m.ko*" | head -1)
			[ -n "$f" ] || continue
			case $f in
			*.xz) xz -dc "$f" > "$DK_MODULES/$m.ko" ;;
			*) cp "$f" "$DK_MODULES/$m.ko" ;;
			esac
		done
	fi
	DK_DESC="Debian $suite $pkg $ver"
}

T0=$(date +%s.%N)
pinned_kernel || sid_kernel || skip "no kernel: set MEMFAULT_KERNEL_DIR or allow downloads from $MIRROR"
if [ "$ARCH" = x86_64 ]; then
	BUSYBOX=$(command -v busybox || true)
	# ldd fails on a static executable
	if [ -z "$BUSYBOX" ] || ldd "$BUSYBOX" > /dev/null 2>&1; then
		skip "need a static busybox on the host (Debian: busybox-static)"
	fi
fi
# The KVM Userfault kernel: optional, an additional boot of this arch.
uf_image=userfault-7.2.13/$ARCH/bzImage
[ "$ARCH" = arm64 ] && uf_image=userfault-7.2.13/$ARCH/Image
if [ -z "${MEMFAULT_KERNEL_DIR:-}" ]; then
	UF_SKIP="no MEMFAULT_KERNEL_DIR, so no $uf_image"
elif [ ! -r "$MEMFAULT_KERNEL_DIR/$uf_image" ]; then
	UF_SKIP="no $MEMFAULT_KERNEL_DIR/$uf_image"
else
	UF_KERNEL=$MEMFAULT_KERNEL_DIR/$uf_image
fi
# The kernel matrix: one boot per Debian suite, named deb-SUITE.
DEB_BOOTS=()
DEB_SKIPS=()
declare -A DEB_IMAGE DEB_MODULES DEB_DESC
for suite in $DEBIAN_SUITES; do
	if debian_kernel "$suite"; then
		DEB_BOOTS+=("deb-$suite")
		DEB_IMAGE[deb-$suite]=$DK_IMAGE
		DEB_MODULES[deb-$suite]=$DK_MODULES
		DEB_DESC[deb-$suite]=$DK_DESC
		log "kernel matrix: $DK_DESC"
	else
		DEB_SKIPS+=("$suite: no kernel (${MIRROR:-no Debian mirror in the apt configuration})")
	fi
done
log "kernel: $KERNEL_DESC${SWPROT_KERNEL:+; SW_PROTECTED kernel: $SWPROT_KERNEL}${UF_KERNEL:+; KVM Userfault kernel: $UF_KERNEL} ($(elapsed "$T0") s)"

# ---- (b) static test binaries ------------------------------------------------------

T0=$(date +%s.%N)
CHECK_INC=()
CHECK_LIBS=()
if [ "$ARCH" = x86_64 ]; then
	libdir=/usr/lib/$MULTIARCH
	if [ ! -e "$libdir/libsubunit.a" ] || [ ! -e "$libdir/libcheck_pic.a" ]; then
		if [ "$(id -u)" = 0 ]; then
			log "installing check libsubunit-dev (static Check for the guest binaries)"
			apt-get install -y -q --no-install-recommends check libsubunit-dev > "$WORK/apt-install.log" 2>&1 || true
		fi
		if [ ! -e "$libdir/libsubunit.a" ] || [ ! -e "$libdir/libcheck_pic.a" ]; then
			skip "need the static Check libraries (Debian: check libsubunit-dev)"
		fi
	fi
	CHECK_LIBS=("$libdir/libcheck_pic.a" "$libdir/libsubunit.a")
else
	# Debian bookworm's arm64 Check, unpacked into a sysroot of our own.
	sysroot=$CACHE/arm64-check-sysroot
	if [ ! -e "$sysroot/ok" ]; then
		log "fetching Check for arm64 (bookworm check, libsubunit-dev)"
		apt_setup bookworm arm64 ||
			skip "cannot reach $MIRROR for Debian bookworm arm64 (Check for the guest binaries)"
		rm -rf "$sysroot"
		apt_download "$CACHE/arm64-check-debs" check:arm64 libsubunit-dev:arm64 libsubunit0:arm64 ||
			skip "cannot download check:arm64 / libsubunit-dev:arm64"
		for deb in "$CACHE"/arm64-check-debs/*.deb; do dpkg-deb -x "$deb" "$sysroot"; done
		touch "$sysroot/ok"
	fi
	CHECK_INC=(-isystem "$sysroot/usr/include")
	CHECK_LIBS=("$sysroot/usr/lib/$MULTIARCH/libcheck_pic.a" "$sysroot/usr/lib/$MULTIARCH/libsubunit.a")
fi

# memfault-version.h, as meson generates it, from the project version.
version=$(sed -n "s/^[[:space:]]*version: '\([0-9]*\.[0-9]*\.[0-9]*\)',.*/\1/p" "$SRC/meson.build" | head -1)
[ -n "$version" ] || {
	log "cannot read the project version from meson.build"
	exit 1
}
IFS=. read -r v_major v_minor v_micro <<< "$version"
mkdir -p "$WORK/include/memfault"
sed -e "s/@MAJOR@/$v_major/" -e "s/@MINOR@/$v_minor/" -e "s/@MICRO@/$v_micro/" \
	"$SRC/include/memfault/memfault-version.h.in" > "$WORK/include/memfault/memfault-version.h"

CFLAGS=(-std=c11 -O2 -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE -fvisibility=hidden
	-I"$SRC/include" -I"$WORK/include" -I"$SRC/lib" -I"$SRC/tests/common"
	-isystem "$SRC/lib/uapi" -isystem "$SRC/lib/uapi/$UAPI_ARCH" "${CHECK_INC[@]}")
OBJ=$WORK/obj
BIN=$WORK/ktests
LIBS=$WORK/tsan-libs
rm -rf "$OBJ" "$BIN" "$LIBS"
mkdir -p "$OBJ/tsan" "$BIN" "$LIBS"

# arm64 only: test-bitmap-tsan (tests/kernel/test-bitmap-tsan.c), the
# concurrent cases of tests/unit/test-bitmap.c on the KVM simulator, built
# with gcc -fsanitize=thread. TSan cannot link statically, so it is a
# dynamic executable with its loader and libraries in the initramfs' /lib.
# It runs in the guest because TSan's runtime does not work under
# qemu-user (x86_64 runs it natively: the tsan job of .ci/run).
TSAN_SKIP=
TSAN_CFLAGS=()
tsan_objs=()
if [ "$ARCH" = arm64 ]; then
	tsan_rt=$("$CC" -print-file-name=libtsan.so.2)
	if [ "$tsan_rt" = libtsan.so.2 ] || [ ! -e "$tsan_rt" ]; then
		TSAN_SKIP="no $MULTIARCH libtsan.so.2 for $CC (Debian: libtsan2-arm64-cross)"
	elif ! command -v readelf > /dev/null; then
		TSAN_SKIP="no readelf (Debian: binutils)"
	fi
	if [ -n "$TSAN_SKIP" ]; then
		log "test-bitmap-tsan: SKIP ($TSAN_SKIP)"
	else
		# CFLAGS without -fvisibility=hidden: the simulator's open/ioctl/close
		# are exported, as meson's kvmsim_dep does.
		for f in "${CFLAGS[@]}"; do
			[ "$f" = -fvisibility=hidden ] || TSAN_CFLAGS+=("$f")
		done
		# -fno-builtin-mem*: gcc expands a constant-size memset/memcpy
		# inline, and those stores are not instrumented (gcc 12: the
		# reader-checker's 64-byte memset); as calls, TSan intercepts them.
		TSAN_CFLAGS+=(-O1 -g -fsanitize=thread -fno-builtin-memset -fno-builtin-memcpy
			-fno-builtin-memmove -I"$SRC/tests/sim")
	fi
fi
objs=()
lib_objs=()
for c in "$SRC"/lib/*.c "$SRC/tests/kernel/ktest.c" "$SRC/tests/kernel/kres.c" \
	"$SRC/tests/common/test-common.c"; do
	o=$OBJ/$(basename "$(dirname "$c")")-$(basename "$c" .c).o
	"$CC" "${CFLAGS[@]}" -c "$c" -o "$o" &
	objs+=("$o")
	case $c in "$SRC"/lib/*) lib_objs+=("$o") ;; esac
done
if [ ${#TSAN_CFLAGS[@]} -gt 0 ]; then
	# libmemfault and the simulator (tests/sim/meson.build: kvmsim_sources)
	for c in "$SRC"/lib/*.c "$SRC"/tests/sim/kvmsim.c "$SRC"/tests/sim/kvmsim-*.c \
		"$SRC"/tests/common/test-common.c "$SRC"/tests/common/sim-env.c \
		"$SRC/tests/kernel/test-bitmap-tsan.c"; do
		case $c in */kvmsim-probe.c) continue ;; esac
		o=$OBJ/tsan/$(basename "$(dirname "$c")")-$(basename "$c" .c).o
		"$CC" "${TSAN_CFLAGS[@]}" -c "$c" -o "$o" &
		tsan_objs+=("$o")
	done
fi
wait_all() {
	local rc=0 pid
	for pid in $(jobs -p); do wait "$pid" || rc=1; done
	return "$rc"
}
wait_all || {
	log "compiling libmemfault or the suite failed"
	exit 1
}
tests=()
for c in "$SRC"/tests/kernel/test-kernel-*.c; do
	name=$(basename "$c" .c)
	case $name in *-diff-sim) continue ;; esac
	tests+=("$name")
	"$CC" "${CFLAGS[@]}" -static -pthread -o "$BIN/$name" "$c" "${objs[@]}" "${CHECK_LIBS[@]}" -lm -lrt &
done
if [ ${#tsan_objs[@]} -gt 0 ]; then
	tsan_link=(-fsanitize=thread -pthread)
	for sym in open open64 openat openat64 __open_2 __open64_2 __openat_2 __openat64_2 ioctl close; do
		tsan_link+=("-Wl,--export-dynamic-symbol=$sym")
	done
	"$CC" "${tsan_link[@]}" -o "$BIN/test-bitmap-tsan" "${tsan_objs[@]}" "${CHECK_LIBS[@]}" -ldl -lm -lrt &
fi
# The postcopy example, with its page server, runs on the KVM Userfault
# kernel's boot (ksuite.postcopy=1).
EXAMPLES=$WORK/examples
rm -rf "$EXAMPLES"
mkdir -p "$EXAMPLES"
if [ -e "$SRC/examples/postcopy.c" ]; then
	"$CC" "${CFLAGS[@]}" -static -pthread -o "$EXAMPLES/postcopy" \
		"$SRC"/examples/{postcopy,postcopy-pages,postcopy-source,example-vm}.c \
		"${lib_objs[@]}" 2> "$WORK/postcopy-link.log" &
fi
wait_all || {
	log "linking the static test binaries (or test-bitmap-tsan, or examples/postcopy) failed"
	cat "$WORK/postcopy-link.log" >&2
	exit 1
}
log "built ${#tests[@]} static test binaries with $CC ($(elapsed "$T0") s)"

# tsan_libs FILE: copy the libraries FILE needs (DT_NEEDED, recursively, as
# $CC finds them) and its ELF interpreter into $LIBS.
tsan_libs() {
	local lib path
	for lib in $(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p') \
		$(readelf -l "$1" | sed -n 's/.*program interpreter: .*\/\([^/]*\)\]$/\1/p'); do
		[ -e "$LIBS/$lib" ] && continue
		path=$("$CC" -print-file-name="$lib")
		[ -e "$path" ] || {
			log "test-bitmap-tsan: cannot find $lib for $CC"
			return 1
		}
		cp -L "$path" "$LIBS/$lib"
		tsan_libs "$LIBS/$lib" || return 1
	done
}
if [ -e "$BIN/test-bitmap-tsan" ]; then
	tsan_libs "$BIN/test-bitmap-tsan" || exit 1
	log "built test-bitmap-tsan (gcc -fsanitize=thread; in the guest's /lib: $(cd "$LIBS" && echo *))"
fi

# ---- (c) initramfs ------------------------------------------------------------

T0=$(date +%s.%N)
ROOT=$WORK/root
rm -rf "$ROOT"
mkdir -p "$ROOT"/bin "$ROOT"/dev "$ROOT"/proc "$ROOT"/sys "$ROOT"/tmp "$ROOT"/lib/modules
cp "$BUSYBOX" "$ROOT/bin/busybox"
cp -a "$BIN" "$ROOT/ktests"
cp -a "$EXAMPLES" "$ROOT/examples"
if [ -e "$BIN/test-bitmap-tsan" ]; then cp "$LIBS"/* "$ROOT/lib/"; fi
# test-bitmap-tsan under TCG on 2 busy host cores: ~1.8 s of guest time per
# run of a case, so the default 4 runs of each cost ~14 s (3.9 s for 1).
echo "export MEMFAULT_BITMAP_TSAN_LOOPS=${MEMFAULT_NESTED_TSAN_LOOPS:-4}" > "$ROOT/ksuite.env"
if [ -n "$MODULES_DIR" ]; then cp "$MODULES_DIR"/*.ko "$ROOT/lib/modules/"; fi
cat > "$ROOT/init" << 'EOF'
#!/bin/busybox sh
# SPDX-License-Identifier: MIT
# /init of the kernel-suite initramfs (written by tests/kernel/run-nested.sh)
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# Only errors from the kernel on the console while the tests print.
dmesg -n 3
only=
postcopy=
for arg in $(cat /proc/cmdline); do
	case $arg in
	ksuite.only=*) only=${arg#ksuite.only=} ;;
	ksuite.postcopy=*) postcopy=${arg#ksuite.postcopy=} ;;
	esac
done
if [ ! -e /dev/kvm ]; then
	for m in irqbypass kvm ccp kvm-amd; do
		if [ -e /lib/modules/$m.ko ]; then
			insmod /lib/modules/$m.ko || echo "KSUITE: insmod $m failed"
		fi
	done
fi
echo "KSUITE: uname $(uname -r) $(uname -m)"
echo "KSUITE: kvm $(ls -l /dev/kvm 2>&1)"
export CK_VERBOSITY=verbose CK_DEFAULT_TIMEOUT=120 MEMFAULT_KTEST_ANY_KERNEL=1
# test-bitmap-tsan: a data race report fails the test at once
export TSAN_OPTIONS=halt_on_error=1
. /ksuite.env
rc=0
for t in /ktests/*; do
	name=${t##*/}
	# ksuite.only=a,b: only those executables
	case ",$only," in ,,) ;; *",$name,"*) ;; *) continue ;; esac
	echo "KSUITE: run $name"
	t0=$(cut -d' ' -f1 /proc/uptime)
	"$t"
	r=$?
	t1=$(cut -d' ' -f1 /proc/uptime)
	case $r in
	0) res=PASS ;;
	77) res=SKIP ;;
	*) res=FAIL; rc=1 ;;
	esac
	# the last field: seconds of guest uptime the executable took
	echo "KSUITE: result $name $res $r $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2fs", b - a }')"
done
# examples/postcopy against its page server (a child process): on demand
# and prefetched pages, each exactly once, checksum checked
if [ "$postcopy" = 1 ] && [ -x /examples/postcopy ]; then
	echo "KSUITE: run example-postcopy"
	t0=$(cut -d' ' -f1 /proc/uptime)
	/examples/postcopy --pages 128 --latency-us 100
	r=$?
	t1=$(cut -d' ' -f1 /proc/uptime)
	case $r in
	0) res=PASS ;;
	77) res=SKIP ;;
	*) res=FAIL; rc=1 ;;
	esac
	echo "KSUITE: result example-postcopy $res $r $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2fs", b - a }')"
fi
dmesg | grep -E 'BUG|WARNING|Oops|Call Trace|kvm' | sed 's/^/KSUITE-dmesg: /'
echo "KSUITE_RC=$rc"
reboot -f
EOF
chmod +x "$ROOT/init"
(cd "$ROOT" && find . | cpio -o -H newc --quiet | gzip -1 > "$WORK/initrd.gz")
log "initramfs $WORK/initrd.gz, $(du -h "$WORK/initrd.gz" | cut -f1) ($(elapsed "$T0") s)"
# The matrix kernels (x86): the same initramfs with their own KVM modules.
for b in "${DEB_BOOTS[@]}"; do
	[ -n "${DEB_MODULES[$b]}" ] || continue
	rm -f "$ROOT"/lib/modules/*.ko
	cp "${DEB_MODULES[$b]}"/*.ko "$ROOT/lib/modules/" 2> /dev/null || true
	(cd "$ROOT" && find . | cpio -o -H newc --quiet | gzip -1 > "$WORK/initrd-$b.gz")
done

# ---- (d) boot -------------------------------------------------------------------

# qemu_cmd KERNEL EXTRA_APPEND [SMP [INITRD]]: the QEMU command line in QCMD.
QCMD=()
qemu_cmd() {
	if [ "$ARCH" = x86_64 ]; then
		# TCG "max" is an AuthenticAMD CPU with svm and npt; -smp 1 because
		# x86 MTTCG hit a text_poke int3 oops in the L1 kernel once.
		QCMD=("$QEMU" -accel tcg -cpu max -m 2G -smp "${3:-1}")
		local append="console=ttyS0"
	else
		# pauth-impdef: QEMU's default QARMA5 emulation doubles boot time.
		local machine=virt,virtualization=on,gic-version=3 cpu=max,pauth-impdef=on
		QCMD=("$QEMU" -accel tcg -M "$machine" -cpu "$cpu" -m 2G -smp "${3:-2}")
		local append="console=ttyAMA0"
	fi
	QCMD+=(-nographic -no-reboot -nic none -kernel "$1" -initrd "${4:-$WORK/initrd.gz}"
		-append "$append panic=-1 quiet $2")
}

# The serial console without CRs and the firmware's terminal escapes.
console_filter() {
	tr -d '\r' | sed -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1b[A-Za-z]//g'
}

# boot NAME KERNEL EXTRA_APPEND [tee] [SMP [INITRD]]: run QEMU, console to
# $WORK/NAME.log (and to stdout with "tee"); writes $WORK/NAME.rc
# (KSUITE_RC, or 2) and $WORK/NAME.time.
boot() {
	local name=$1 kernel=$2 extra=$3 show=${4:-} log=$WORK/$1.log t0 rc
	qemu_cmd "$kernel" "$extra" "${5:-}" "${6:-}"
	log "boot $name: ${QCMD[*]}"
	t0=$(date +%s.%N)
	if [ "$show" = tee ]; then
		timeout "$TIMEOUT" "${QCMD[@]}" < /dev/null 2>&1 | console_filter | tee "$log" || true
	else
		timeout "$TIMEOUT" "${QCMD[@]}" < /dev/null 2>&1 | console_filter > "$log" || true
	fi
	elapsed "$t0" > "$WORK/$name.time"
	rc=$(sed -n 's/^KSUITE_RC=\([0-9]*\).*/\1/p' "$log" | tail -1)
	echo "${rc:-2}" > "$WORK/$name.rc"
}

rm -f "$WORK"/*.log "$WORK"/*.rc "$WORK"/*.time "$WORK/kernels.txt"
T0=$(date +%s.%N)
boots=(stock)
[ -n "$SWPROT_KERNEL" ] && boots+=(swprot)
[ -n "$UF_KERNEL" ] && boots+=(uf)
boots+=("${DEB_BOOTS[@]}")
# boot_deb NAME: a matrix kernel, with its initramfs (x86: its modules)
boot_deb() {
	local initrd=
	[ -e "$WORK/initrd-$1.gz" ] && initrd=$WORK/initrd-$1.gz
	boot "$1" "${DEB_IMAGE[$1]}" "ksuite.only=$DEB_ONLY" "" "" "$initrd"
}
# Not test-bitmap-tsan (arm64): it tests the library on the simulator, the
# same on every kernel, and costs 13-25 s of each arm64 boot.
DEB_ONLY=${MEMFAULT_NESTED_DEBIAN_ONLY:-${tests[*]}}
DEB_ONLY=${DEB_ONLY// /,}
# In parallel with the stock boot, one after the other: the SW_PROTECTED
# boot (one TCG thread) and the KVM Userfault one (-smp 2: two vCPUs of
# the nested guests fault on the same pages at once in test-kernel-userfault).
# The matrix kernels go on whichever of the two chains is shorter: the
# first after the stock boot, the others after the KVM Userfault one.
if [ -n "$SWPROT_KERNEL$UF_KERNEL${DEB_BOOTS[*]}" ]; then
	(
		if [ -n "$SWPROT_KERNEL" ]; then
			boot swprot "$SWPROT_KERNEL" ksuite.only=test-kernel-swprot
		fi
		if [ -n "$UF_KERNEL" ]; then
			boot uf "$UF_KERNEL" "ksuite.only=test-kernel-userfault ksuite.postcopy=1" "" 2
		fi
		for b in "${DEB_BOOTS[@]:1}"; do boot_deb "$b"; done
	) &
fi
boot stock "$KERNEL" "" tee
if [ ${#DEB_BOOTS[@]} -gt 0 ]; then boot_deb "${DEB_BOOTS[0]}"; fi
wait
for b in "${DEB_BOOTS[@]}"; do
	log "console of the $b boot ($WORK/$b.log, ${DEB_DESC[$b]}):"
	grep -E '^(KSUITE|KSKIP|#|[^ ]+\.c:[0-9]+:[FE]:)' "$WORK/$b.log" || true
done
for sk in "${DEB_SKIPS[@]}"; do log "kernel matrix: SKIP $sk"; done
if [ -n "$UF_SKIP" ]; then
	log "KVM Userfault scenarios on a KVM Userfault kernel: SKIP ($UF_SKIP)"
fi
if [ "$ARCH" = x86_64 ] && [ -z "$SWPROT_KERNEL" ]; then
	log "SW_PROTECTED scenarios: SKIP (no \$MEMFAULT_KERNEL_DIR/x86_64-swprot/bzImage)"
fi
if [ -n "$SWPROT_KERNEL" ]; then
	log "console of the SW_PROTECTED boot ($WORK/swprot.log):"
	grep -E '^(KSUITE|KRES|#|[^ ]+\.c:[0-9]+:[PFE]:)' "$WORK/swprot.log" || true
fi
if [ -n "$UF_KERNEL" ]; then
	log "console of the KVM Userfault boot ($WORK/uf.log):"
	grep -E '^(KSUITE|KRES|#|[^ ]+\.c:[0-9]+:[PFE]:)' "$WORK/uf.log" || true
fi
BOOT_WALL=$(elapsed "$T0")

# ---- report -------------------------------------------------------------------------

RC=0
printf '\n== kernel suite, %s ==\n' "$ARCH"
for b in "${boots[@]}"; do
	log_f=$WORK/$b.log
	brc=$(cat "$WORK/$b.rc")
	kver=$(sed -n 's/.*KSUITE: uname \([^ ]*\).*/\1/p' "$log_f" | head -1)
	printf 'boot %-12s kernel %-32s QEMU wall %5s s  KSUITE_RC=%s\n' "$b" "${kver:-?}" \
		"$(cat "$WORK/$b.time")" "$brc"
	# the exact kernel of every boot, for the results and the kernel table
	case $b in
	stock) desc=$KERNEL_DESC ;;
	swprot) desc="x86_64-swprot ($SWPROT_KERNEL)" ;;
	uf) desc="userfault-7.2.13 ($UF_KERNEL)" ;;
	*) desc=${DEB_DESC[$b]} ;;
	esac
	printf '%s %s %s %s\n' "$ARCH" "$b" "${kver:-?}" "$desc" >> "$WORK/kernels.txt"
	printf '  kernel: %s\n' "$desc"
	# guest time per executable (the last field of its result line)
	awk '/^KSUITE: result / { n = $3; sub(/^test-kernel-/, "", n); t = t " " n "=" $NF }
		END { if (t != "") print "  guest time per executable:" t }' "$log_f"
	[ "$brc" = 0 ] || {
		[ "$brc" = 2 ] && log "boot $b: the guest never reported (panic or timeout): see $log_f"
		if [ "$RC" = 0 ] || [ "$brc" = 2 ]; then RC=$brc; fi
	}
done
# results_table: one line per scenario (arch, scenario, PASS|FAIL|ERROR|SKIP,
# note), from the guests' Check output.
results_table() {
	printf '%-8s %-24s %-7s %s\n' arch scenario result note
	if [ -n "$TSAN_SKIP" ]; then
		printf '%-8s %-24s %-7s %s\n' "$ARCH" "(test-bitmap-tsan)" SKIP "$TSAN_SKIP"
	fi
	if [ -n "$UF_SKIP" ]; then
		printf '%-8s %-24s %-7s %s\n' "$ARCH" "(userfault-kernel)" SKIP "[uf kernel] $UF_SKIP"
	fi
	for b in "${boots[@]}"; do
		# Check verbose lines: file:line:P|F|E:tcase:test:iter: message; and
		# the executables that exited 77 as a whole.
		awk -v arch="$ARCH" -v boot="$b" '
		BEGIN { note = boot == "stock" ? "" : "[" boot " kernel] " }
		# a scenario skipped for a missing need (kt_require()): its
		# Check test returned at once, and "passed"
		/^KSKIP / {
			need = $4; sub(/^need=/, "", need)
			why = $0; for (i = 0; i < 4; i++) why = substr(why, index(why, " ") + 1)
			kskip[$3] = (kskip[$3] ? kskip[$3] "; " : "") "needs " need ": " why
		}
		/^[^ :]+\.c:[0-9]+:[PFE]:[^:]+:[^:]+:[0-9]+:/ {
			split($0, p, ":")
			res = p[3] == "P" ? "PASS" : (p[3] == "F" ? "FAIL" : "ERROR")
			name = p[5]; gsub("_", "-", name)
			msg = ""
			if (res == "PASS" && (name in kskip)) {
				printf "%-8s %-24s %-7s %s%s\n", arch, name, "SKIP", note, kskip[name]
				next
			}
			if (res != "PASS") {
				msg = $0
				for (i = 0; i < 6; i++) msg = substr(msg, index(msg, ":") + 1)
				sub(/^ /, "", msg)
			}
			printf "%-8s %-24s %-7s %s%s\n", arch, name, res, note, msg
		}
		/^# SKIP:/ { why = $0; sub(/^# SKIP: /, "", why) }
		/^KSUITE: run / { why = "" }
		/^KSUITE: result [^ ]+ SKIP/ {
			printf "%-8s %-24s %-7s %s%s: %s\n", arch, "(" $3 ")", "SKIP", note, $3, why
		}
		/^KSUITE: result example-[^ ]+ PASS/ {
			printf "%-8s %-24s %-7s %s%s\n", arch, $3, "PASS", note, $NF
		}
		/^KSUITE: result [^ ]+ FAIL/ {
			printf "%-8s %-24s %-7s %s%s exited %s\n", arch, "(" $3 ")", "FAIL", note, $3, $5
		}
		' "$WORK/$b.log"
	done
}
results_table | tee "$WORK/results.txt"

# ---- (e) differential check against the simulator ---------------------------------

diff_check() {
	local sim_bin bdir
	if [ -n "${MEMFAULT_BUILD_DIR:-}" ]; then
		sim_bin=$MEMFAULT_BUILD_DIR/tests/kernel/test-kernel-diff-sim-$ARCH
		if [ ! -x "$sim_bin" ]; then
			log "differential check: $sim_bin not built"
			return 1
		fi
	else
		if [ ! -e "$SRC/tests/sim/meson.build" ]; then
			log "differential check: SKIP (no simulator in tests/sim)"
			return 0
		fi
		command -v meson > /dev/null || {
			log "differential check: SKIP (no meson)"
			return 0
		}
		bdir=$WORK_BASE/build-sim
		# Shared by both arches, which may run at the same time.
		: > "$WORK/sim-build.log"
		if ! (
			if command -v flock > /dev/null; then flock 9; fi
			if [ ! -e "$bdir/build.ninja" ]; then
				meson setup "$bdir" "$SRC" -Dexamples=false >> "$WORK/sim-build.log" 2>&1 || exit 1
			fi
			ninja -C "$bdir" "tests/kernel/test-kernel-diff-sim-$ARCH" >> "$WORK/sim-build.log" 2>&1
		) 9> "$WORK_BASE/build-sim.lock"; then
			cat "$WORK/sim-build.log" >&2
			return 1
		fi
		sim_bin=$bdir/tests/kernel/test-kernel-diff-sim-$ARCH
	fi
	# Each boot is compared with the model of its kernel's level (the
	# simulator's levels: 6.1, 6.8 for 6.8-6.17, 7.2 for 6.18 on, whose
	# guest_memfd MMAP/INIT_SHARED the 7.2 model has); the SW_PROTECTED
	# and KVM Userfault kernels are 7.2 kernels.
	local b lvl lvls=() ok=0 rel
	: > "$WORK/diff.txt"
	: > "$WORK/diff-levels.txt"
	for b in "${boots[@]}"; do
		rel=$(sed -n 's/.*KSUITE: uname \([^ ]*\).*/\1/p' "$WORK/$b.log" | head -1)
		lvl=$(kernel_level "$rel")
		echo "$b $lvl" >> "$WORK/diff-levels.txt"
		case " ${lvls[*]} " in *" $lvl "*) ;; *) lvls+=("$lvl") ;; esac
	done
	for lvl in "${lvls[@]}"; do
		local sim_rc=0 nk ns
		KT_SIM_LEVEL=$lvl CK_VERBOSITY=verbose "$sim_bin" > "$WORK/sim-$lvl.log" 2>&1 || sim_rc=$?
		grep -E "^(KRES|KSKIP) $ARCH " "$WORK/sim-$lvl.log" > "$WORK/sim-$lvl.kres" || true
		while read -r b l; do
			[ "$l" = "$lvl" ] || continue
			grep -hE "^(KRES|KSKIP) $ARCH " "$WORK/$b.log" || true
		done < "$WORK/diff-levels.txt" > "$WORK/kernel-$lvl.kres"
		if [ "$sim_rc" != 0 ]; then
			log "differential check: the simulator run at $lvl failed its own assertions ($WORK/sim-$lvl.log):"
			grep -E '^[^ ]+\.c:[0-9]+:[FE]:' "$WORK/sim-$lvl.log" >&2 || true
			ok=1
		fi
		# Step by step, key by key (kres-diff.awk); scenarios the kernel
		# did not run (a SKIP) are not compared.
		awk -f "$SRC/tests/kernel/kres-diff.awk" "$WORK/sim-$lvl.kres" \
			"$WORK/kernel-$lvl.kres" | sed "s/^DIFF /DIFF [model $lvl] /" >> "$WORK/diff.txt" || true
		nk=$(wc -l < "$WORK/kernel-$lvl.kres")
		ns=$(wc -l < "$WORK/sim-$lvl.kres")
		if [ "$nk" = 0 ]; then
			log "differential check: no KRES lines from the kernels of level $lvl"
			ok=1
		fi
		log "differential check, model $lvl ($(awk -v l="$lvl" '$2 == l { printf "%s ", $1 }' "$WORK/diff-levels.txt")): $nk kernel lines, $ns simulator lines"
	done
	if [ -s "$WORK/diff.txt" ]; then
		sort "$WORK/diff.txt"
		log "differential check: FAILED, kernel and simulator differ"
		return 1
	fi
	[ "$ok" = 0 ] && log "differential check: every kernel result line equal to its model's"
	return "$ok"
}

# kernel_level RELEASE: the simulator level that models the kernel RELEASE.
kernel_level() {
	local IFS=.- ma mi
	read -r ma mi _ <<< "$1"
	ma=${ma:-0} mi=${mi:-0}
	if [ "$ma" -lt 6 ] || { [ "$ma" = 6 ] && [ "$mi" -lt 8 ]; }; then
		echo 6.1
	elif [ "$ma" = 6 ] && [ "$mi" -lt 18 ]; then
		echo 6.8
	else
		echo 7.2
	fi
}

DIFF_RESULT=
if [ "${MEMFAULT_NESTED_DIFF:-1}" = 1 ]; then
	T0=$(date +%s.%N)
	DIFF_RESULT=OK
	if ! diff_check; then
		DIFF_RESULT=FAIL
		if [ "$RC" = 0 ]; then RC=3; fi
	fi
	log "differential check took $(elapsed "$T0") s"
fi

# A meson-style testlog.json (one JSON object per line, as meson writes it)
# under $MEMFAULT_NESTED_DIR/meson-logs, so that .ci/run counts every
# scenario, and the differential check, as a test of its own. Written only
# when a scenario passed: a run that tested nothing leaves none.
write_testlog() {
	local dir=$MEMFAULT_NESTED_DIR/meson-logs
	grep -q '^[^ ]* *[^ ]* *PASS ' "$WORK/results.txt" || return 0
	mkdir -p "$dir"
	{
		awk 'NR > 1 {
			r = $3 == "PASS" ? "OK" : ($3 == "SKIP" ? "SKIP" : "FAIL")
			name = $1 "/" $2
			if ($4 ~ /^\[/) name = name " " $4 " " $5
			gsub(/["\\]/, "", name)
			printf "{\"name\": \"%s\", \"result\": \"%s\"}\n", name, r
		}' "$WORK/results.txt"
		if [ -n "$DIFF_RESULT" ]; then
			printf '{"name": "%s/differential-check", "result": "%s"}\n' "$ARCH" "$DIFF_RESULT"
		fi
	} > "$dir/testlog.json"
	log "wrote $dir/testlog.json ($(wc -l < "$dir/testlog.json") results)"
}
if [ -n "${MEMFAULT_NESTED_DIR:-}" ]; then
	write_testlog
fi

log "boots $BOOT_WALL s, total $(elapsed "$T_START") s, exit $RC"
exit "$RC"
