#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Install what libmemfault needs to build and test, from Debian's archive.
# Idempotent: when every package is already installed it touches nothing and
# does not even run apt-get update, so calling it on every test run is cheap.
#
# Environment:
#   MEMFAULT_NO_ARM64=1   do not add the arm64 architecture nor install
#                         check:arm64 (the aarch64 qemu-user test run then
#                         builds no tests)
#
# Never edits /etc/apt: the only system-wide change besides packages is
# `dpkg --add-architecture arm64` (dpkg's architecture list).
set -euo pipefail

packages=(
	# build
	meson ninja-build pkgconf check gcc g++ clang libclang-rt-14-dev
	# tests, docs, hygiene
	valgrind doxygen graphviz shellcheck codespell abigail-tools
	# static analysis (.ci/job-reliability.sh: scan-build-14)
	clang-tools-14
	# aarch64 cross build, tests under qemu-user
	qemu-user-static gcc-aarch64-linux-gnu libc6-dev-arm64-cross
	g++-aarch64-linux-gnu
	# real-kernel suite (tests/kernel): nested QEMU guests
	qemu-system-x86 qemu-system-arm busybox-static cpio xz-utils
	debian-archive-keyring ca-certificates libsubunit-dev
	libtsan2-arm64-cross # tests/kernel test-bitmap-tsan (arm64 guest)
	# bindings (Rust: bindgen; Python: pytest, hypothesis), benchmarks
	bindgen python3-pytest python3-hypothesis strace
	python3-matplotlib # bench/run-all.sh's thread-scaling plot
	# man page checks
	groff-base man-db
)
# Multiarch Check for the aarch64 test binaries. It brings libc6:arm64, so the
# cross file runs qemu-aarch64-static without -L (see cross/aarch64-linux-gnu.ini).
arm64_packages=(check:arm64)

if [ "$(id -u)" -eq 0 ]; then
	sudo=()
elif command -v sudo >/dev/null 2>&1; then
	sudo=(sudo)
else
	echo "install-deps.sh: not root and no sudo: cannot install packages" >&2
	exit 1
fi

native_arch=$(dpkg --print-architecture)

# installed NAME[:ARCH]: an unqualified NAME means the native (or "all") one;
# with multiarch, `dpkg-query -W check` also lists check:arm64.
installed() {
	local name=${1%%:*} arch=${1#*:} status
	[ "$arch" != "$1" ] || arch=$native_arch
	status=$(dpkg-query -W -f='${Architecture} ${db:Status-Status}\n' "$name" 2>/dev/null) || true
	grep -qE "^($arch|all) installed\$" <<<"$status"
}

missing=()
for p in "${packages[@]}"; do
	installed "$p" || missing+=("$p")
done

want_arm64=0
if [ "${MEMFAULT_NO_ARM64:-0}" != 1 ] && [ "$native_arch" != arm64 ]; then
	want_arm64=1
	for p in "${arm64_packages[@]}"; do
		installed "$p" || missing+=("$p")
	done
fi

if [ "${#missing[@]}" -eq 0 ]; then
	echo "install-deps.sh: all packages already installed"
	exit 0
fi

echo "install-deps.sh: installing ${missing[*]}"
if [ "$want_arm64" = 1 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
	"${sudo[@]}" dpkg --add-architecture arm64
fi

export DEBIAN_FRONTEND=noninteractive
# Wait for a concurrent apt or dpkg instead of failing at once.
apt_opts=(-o DPkg::Lock::Timeout=600)
"${sudo[@]}" apt-get "${apt_opts[@]}" update
"${sudo[@]}" apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}"
