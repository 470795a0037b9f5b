#!/bin/bash
# SPDX-License-Identifier: MIT
#
# bench/linux-guest.sh [N | --log console.log] - figures for a real Linux
# guest booted by examples/linux-vmm in nested KVM (the KVM Userfault
# kernel under QEMU TCG, see tests/guest/run-guest-boot.sh): N boots with
# the RAM copied up front (eager) and N with every page served lazily by
# the page source (lazy), interleaved, all in one L1 boot, 1 vCPU.
#
# Printed, as median [min-max] over the boots:
#   - time from the VMM's start to the guest's /init, eager and lazy;
#   - pages fetched (each one KVM Userfault exit, or a userfaultfd fault);
#   - faults served per second of lazy boot, and per second of the extra
#     time the lazy boot took over the eager one;
#   - per fault: the extra time (lazy - eager) / faults, the time in the
#     page_in() handler (memfault_vcpu_stats::handler_ns, library-timed),
#     the part of it spent on the page source's pipe round trip, and the
#     rest of the extra time: KVM's exit and re-entry plus the library's
#     own work (classify, claim, UFFDIO_COPY install, publish). The
#     library's share is bounded by that remainder; it is not measured
#     apart from KVM here.
# --log FILE only summarizes the console of an earlier run.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ "${1:-}" = --log ]; then
	LOG=$2
else
	N=${1:-4}
	WORK=${MEMFAULT_GUEST_WORK:-${TMPDIR:-/tmp}/memfault-guest-bench}
	rc=0
	MEMFAULT_GUEST_WORK=$WORK MEMFAULT_GUEST_TIMEOUT=${MEMFAULT_GUEST_TIMEOUT:-$((N * 120 + 60))} \
		"$SRC/tests/guest/run-guest-boot.sh" bench "$N" > "$WORK.out" 2>&1 || rc=$?
	if [ "$rc" = 77 ]; then
		tail -1 "$WORK.out"
		exit 77
	fi
	LOG=$WORK/console.log
fi
echo "host: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), load $(cut -d' ' -f1-3 /proc/loadavg)"
awk '
function med(a, n,   i, j, t) {
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function stat(name, a, n, unit, fmt) {
	if (n == 0) { printf "%-44s (no data)\n", name; return }
	m = med(a, n)
	printf "%-44s " fmt " [" fmt "-" fmt "] %s (n=%d)\n", name, m, a[1], a[n], unit, n
}
/^L1: run / { mode = $3; next }
/^timing: init at / {
	t = $4 + 0
	if (t < 0) next
	if (mode == "eager") e[++ne] = t
	if (mode == "lazy") {
		l[++nl] = t
		f = $9; fetch_ms = $12; handler_ms = $18
		faults[nl] = f; fms[nl] = fetch_ms; hms[nl] = handler_ms
	}
}
END {
	em = med(e, ne)
	for (i = 1; i <= nl; i++) {
		n = faults[i]
		fps[i] = n / l[i]
		extra = l[i] - em
		per[i] = extra > 0 ? extra * 1e6 / n : 0
		xfps[i] = extra > 0 ? n / extra : 0
		hper[i] = hms[i] * 1e3 / n
		sper[i] = fms[i] * 1e3 / n
		rest[i] = per[i] - hper[i]
		fl[i] = n
	}
	stat("time to /init, eager", e, ne, "s", "%.2f")
	stat("time to /init, lazy", l, nl, "s", "%.2f")
	stat("pages fetched (lazy)", fl, nl, "", "%d")
	stat("faults served per s of lazy boot", fps, nl, "/s", "%.0f")
	stat("faults per s of extra time (lazy - eager med)", xfps, nl, "/s", "%.0f")
	stat("extra time per fault", per, nl, "us", "%.0f")
	stat("  in page_in() (library-timed handler)", hper, nl, "us", "%.0f")
	stat("    of it the page source pipe round trip", sper, nl, "us", "%.0f")
	stat("  rest: KVM exit/entry + library", rest, nl, "us", "%.0f")
}' "$LOG"
