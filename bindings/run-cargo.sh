#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Meson test wrapper for the Rust bindings (suite `bindings`):
#
#   run-cargo.sh test|clippy <source dir bindings/rust> <cargo target dir>
#
# The environment comes from bindings/meson.build: PKG_CONFIG_PATH (the
# build tree's meson-uninstalled), KVMSIM_PRELOAD (the simulator, preloaded
# into test binaries by kvmsim-runner.sh), MEMFAULT_REQUIRE_SIM=1,
# MEMFAULT_LAYOUT_DUMP; in sanitizer builds MEMFAULT_CARGO_NO_DOCTESTS=1,
# MEMFAULT_CARGO_RUSTFLAGS (clang: link the runtime) or
# MEMFAULT_BINDINGS_SKIP=<why>. Exits 77 (skip) without cargo (or clippy).
set -eu
mode=$1 src=$2 target=$3

if [ -n "${MEMFAULT_BINDINGS_SKIP:-}" ]; then
	echo "run-cargo.sh: SKIP: $MEMFAULT_BINDINGS_SKIP" >&2
	exit 77
fi

if ! command -v cargo >/dev/null 2>&1; then
	echo "run-cargo.sh: SKIP: no cargo" >&2
	exit 77
fi
if [ "$mode" = clippy ] && ! cargo clippy --version >/dev/null 2>&1; then
	echo "run-cargo.sh: SKIP: no cargo clippy" >&2
	exit 77
fi
export CARGO_TARGET_DIR="$target" CARGO_TERM_COLOR=never
if [ -n "${MEMFAULT_CARGO_RUSTFLAGS:-}" ]; then
	export RUSTFLAGS="$MEMFAULT_CARGO_RUSTFLAGS"
fi
cd "$src"
case $mode in
test)
	if [ -n "${MEMFAULT_CARGO_NO_DOCTESTS:-}" ]; then
		# doctest binaries run without the runner, hence without the
		# sanitizer runtime preloaded
		exec cargo test --offline --locked --workspace --lib --tests
	fi
	exec cargo test --offline --locked --workspace
	;;
clippy) exec cargo clippy --offline --locked --workspace --all-targets -- -D warnings ;;
*)
	echo "run-cargo.sh: unknown mode $mode" >&2
	exit 2
	;;
esac
