#!/bin/sh
# SPDX-License-Identifier: MIT
#
# lint-man.sh [--map MAPFILE] PAGE...: check the manual pages; exit 1 on
# any problem.
#
# With --map, every symbol the version script exports must have a page of
# its own name among PAGE (a group's page, or a `.so` alias of it).
# With --version X.Y, every page's .TH must say "libmemfault X.Y" (the
# project's version, so that a release does not ship pages of the last one).
# For every page:
#   - a `.so` page (an alias) must name a page that exists beside it;
#   - otherwise .TH must give the file's name and section;
#   - groff (tbl, man macros, every warning: -ww) and man(1) at a terminal
#     width of 80 (which also catches tables wider than a terminal) must
#     format it without a single warning.
# Exits 77 (meson: SKIP) when groff or man is missing (Debian: groff-base,
# man-db).
set -u

for tool in groff man; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "lint-man.sh: $tool not found (install groff-base and man-db)"
		exit 77
	fi
done

LC_ALL=C.UTF-8
MANWIDTH=80
export LC_ALL MANWIDTH

status=0
fail() {
	echo "FAIL: $*"
	status=1
}

map=
version=
while :; do
	case ${1:-} in
	--map) map=$2; shift 2 ;;
	--version) version=$2; shift 2 ;;
	*) break ;;
	esac
done
if [ -n "$map" ]; then
	# the global: section of every node: lines like "	memfault_vm_new;"
	pages=" "
	for page in "$@"; do
		pages="$pages$(basename "$page") "
	done
	symbols=$(sed -n 's/^[[:space:]]*\(memfault_[a-z0-9_]*\);.*/\1/p' "$map")
	for sym in $symbols; do
		case $pages in
		*" $sym.3 "*) echo "ok: $sym has a page" ;;
		*) fail "$sym (exported by $(basename "$map")) has no page $sym.3" ;;
		esac
	done
fi

for page in "$@"; do
	name=$(basename "$page")
	dir=$(dirname "$page")
	# The first line that is not a comment (.\" or '\" t).
	first=$(grep -v -e '^\.\\"' -e "^'\\\\\"" "$page" | head -n 1)
	case $first in
	'.so '*)
		target=${first#.so }
		if [ -f "$dir/$(basename "$target")" ]; then
			echo "ok: $name -> $target"
		else
			fail "$name: .so target $target does not exist"
		fi
		continue
		;;
	esac

	before=$status
	section=${name##*.}
	read -r _ th_name th_section _ <<-EOF
	$(grep -m 1 '^\.TH ' "$page")
	EOF
	if [ "$th_name" != "${name%.*}" ] || [ "$th_section" != "$section" ]; then
		fail "$name: .TH says '$th_name $th_section', the file is '${name%.*}' section $section"
	fi
	if [ -n "$version" ] && ! grep -q -m 1 "^\.TH .*\"libmemfault $version\"" "$page"; then
		fail "$name: .TH does not say \"libmemfault $version\" (the project's version)"
	fi

	warnings=$(groff -t -man -ww -z -Tutf8 -rLL=80n "$page" 2>&1)
	if [ -n "$warnings" ]; then
		fail "$name: groff warns:"
		echo "$warnings"
	fi
	warnings=$(man --warnings=w -E UTF-8 -l "$page" 2>&1 >/dev/null)
	if [ -n "$warnings" ]; then
		fail "$name: man warns:"
		echo "$warnings"
	fi
	[ "$status" -ne "$before" ] || echo "ok: $name"
done
exit "$status"
