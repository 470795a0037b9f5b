#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Meson test wrapper for the Rust bindings (suite `bindings`):
#
#   run-cargo.sh test|clippy|package <source dir bindings/rust> <cargo target dir>
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
	# The simulator and layout tests are #[ignore]d, so that a plain
	# `cargo test` reports them as ignored, never as passed; here the
	# simulator and the layout dump are there (MEMFAULT_REQUIRE_SIM=1 from
	# meson): run them, and any that cannot run fails.
	ignored=
	[ "${MEMFAULT_REQUIRE_SIM:-}" != 1 ] || ignored=--include-ignored
	if [ -n "${MEMFAULT_CARGO_NO_DOCTESTS:-}" ]; then
		# doctest binaries run without the runner, hence without the
		# sanitizer runtime preloaded
		exec cargo test --offline --locked --workspace --lib --tests -- $ignored
	fi
	exec cargo test --offline --locked --workspace -- $ignored
	;;
package)
	# Both crates as they would be published (the workspace at once: cargo
	# verifies memfault against the memfault-sys it has just packaged), and
	# their documentation built the way docs.rs builds it, without the C
	# library (DOCS_RS=1, no pkg-config).
	cargo package --offline --locked --workspace --allow-dirty
	exec env -u PKG_CONFIG_PATH PKG_CONFIG=false DOCS_RS=1 \
		cargo doc --offline --locked --workspace --no-deps
	;;
clippy) exec cargo clippy --offline --locked --workspace --all-targets -- -D warnings ;;
*)
	echo "run-cargo.sh: unknown mode $mode" >&2
	exit 2
	;;
esac
