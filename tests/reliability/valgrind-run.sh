#!/bin/sh
# SPDX-License-Identifier: MIT
#
# The exe_wrapper of `meson test --setup=valgrind` (meson.build):
#
#   valgrind-run.sh VALGRIND [VALGRIND-OPTIONS...] -- TEST [ARGS...]
#
# memcheck with --track-fds=yes, where an fd left open at exit fails the
# test: valgrind 3.19 lists such fds but its exit code does not count
# them. Each process valgrind runs (every child check forks included)
# writes its own log, printed on stderr at the end; an fd open at exit
# there fails the run with valgrind's error code (3) unless
#   - the process inherited it (valgrind says "<inherited from parent>"),
#   - it is check's result file (/tmp/check_*), which the runner opens
#     before it forks each test and which every test child holds.
# MEMFAULT_VALGRIND_FDS=0 lists the fds without failing (the simulator's
# own test, which leaves its simulated fds to each forked child's exit).
# Scripts (python, sh) are not ours to check: they run without valgrind.
set -u

vg=$1
shift
opts=
while [ $# -gt 0 ] && [ "$1" != -- ]; do
	opts="$opts $1"
	shift
done
[ $# -gt 0 ] && shift
if [ $# -eq 0 ]; then
	echo "usage: valgrind-run.sh VALGRIND [OPTIONS...] -- TEST [ARGS...]" >&2
	exit 2
fi
case $(head -c 2 "$1" 2>/dev/null) in
'#!') exec "$@" ;;
esac

logs=$(mktemp -d "${TMPDIR:-/tmp}/valgrind-run.XXXXXX") || exit 2
# shellcheck disable=SC2086 # $opts: one word per option, none with spaces
"$vg" $opts --track-fds=yes --log-file="$logs/vg.%p" "$@"
rc=$?
leaks=0
for f in "$logs"/vg.*; do
	[ -e "$f" ] || continue
	cat "$f" >&2
	n=$(awk '
		/ Open [^:]* [0-9]+: ?/ {
			if (pending) bad++
			pending = ($0 !~ /\/tmp\/check_/)
			next
		}
		pending && /<inherited from parent>/ { pending = 0; next }
		pending && /==[0-9]+== *$/ { bad++; pending = 0 }
		END { if (pending) bad++; print bad + 0 }' "$f")
	leaks=$((leaks + n))
done
rm -rf "$logs"
if [ "$leaks" -gt 0 ] && [ "${MEMFAULT_VALGRIND_FDS:-1}" != 0 ]; then
	echo "valgrind-run.sh: $leaks file descriptor(s) left open at exit (listed above)" >&2
	[ "$rc" -eq 0 ] && rc=3
fi
exit "$rc"
