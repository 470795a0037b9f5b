#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Cargo runner (see .cargo/config.toml): runs test binaries on the KVM
# simulator, so that they are deterministic even where /dev/kvm exists.
#
# The simulator is $KVMSIM_PRELOAD, or else <builddir>/tests/sim/libkvmsim.so
# for the first <builddir>/meson-uninstalled in $PKG_CONFIG_PATH, i.e. the
# build tree memfault-sys links against. Without either, the binary runs
# as is and the simulator tests skip themselves.
if [ -z "${KVMSIM_PRELOAD:-}" ]; then
	old_ifs=$IFS
	IFS=:
	for d in ${PKG_CONFIG_PATH:-}; do
		case $d in
		*/meson-uninstalled | */meson-uninstalled/)
			f=${d%/}
			f=${f%/meson-uninstalled}/tests/sim/libkvmsim.so
			if [ -f "$f" ]; then
				KVMSIM_PRELOAD=$f
				break
			fi
			;;
		esac
	done
	IFS=$old_ifs
fi
if [ -n "${KVMSIM_PRELOAD:-}" ]; then
	LD_PRELOAD="$KVMSIM_PRELOAD${LD_PRELOAD:+:$LD_PRELOAD}"
	# a sanitizer build of the library: the preloaded simulator comes first
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
	export LD_PRELOAD ASAN_OPTIONS
fi
exec "$@"
