#!/bin/bash
# SPDX-License-Identifier: MIT
#
# debian-mirror.sh - print the Debian archive URI this machine's own apt
# configuration uses (without a trailing slash), for scripts that fetch
# packages of other suites with a private apt configuration.
#
#   mirror=$(tools/debian-mirror.sh) || skip "no Debian mirror configured"
#
# MEMFAULT_MIRROR, when set, wins. Otherwise the answer comes from
# `apt-get indextargets` (every source apt knows, one-line and deb822 files
# alike): the URI of the first source whose suite is a plain release (not
# -security, -updates, -backports), else the first Debian source at all.
# The project names no registry host of its own: wherever the machine
# takes its packages from is where the other suites are taken from too.
# Nothing is written; the system's apt sources are only read.
#
# Exit status: 0 printed a URI; 1 none found.
set -euo pipefail

if [ -n "${MEMFAULT_MIRROR:-}" ]; then
	printf '%s\n' "${MEMFAULT_MIRROR%/}"
	exit 0
fi
command -v apt-get >/dev/null || exit 1

# The $(...) are apt's format fields, not shell expansions.
# shellcheck disable=SC2016
uri=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null |
	awk '$1 ~ /^(https?|file):/ { if (!any) any = $1;
	       if (!plain && $2 !~ /-(security|updates|backports|proposed-updates)$/ &&
	           $1 !~ /-security\/?$/) plain = $1 }
	     END { u = plain ? plain : any; if (u) print u }')
[ -n "$uri" ] || exit 1
printf '%s\n' "${uri%/}"
