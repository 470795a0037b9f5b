#!/bin/bash
# SPDX-License-Identifier: MIT
#
# run-guest-boot.sh - boot a real Linux guest whose RAM is served lazily
# through libmemfault (examples/linux-vmm/), inside nested KVM: QEMU TCG
# boots the KVM Userfault kernel (L1), whose initramfs holds a static
# linux-vmm; linux-vmm boots the same bzImage as the guest (L2) with every
# page of its 128 MiB served on demand by a page-source process.
#
#   tests/guest/run-guest-boot.sh            the test: 1 and 2 guest vCPUs,
#                                            and a lazy snapshot restore
#   tests/guest/run-guest-boot.sh bench N    figures: N eager and N lazy boots
#
# Asserted per run (linux-vmm exits 0 only if all hold): the guest reset
# itself (reboot=k) after its /init ran; every page fetched exactly once
# (the page source counts requests per page); pages fetched = pages
# resident in the guest memory = pages present in the bitmap; every
# fetched page's checksum equals the source's. And from the guest's
# console: its /init ran, its sha256sum of a file in its initramfs equals
# the value baked in, and it saw as many CPUs as it was given. The
# snapshot run (linux-vmm --snapshot-at 3): the guest counts ticks 1..6;
# after tick 3 it is paused, saved and restored into a fresh VM with all
# RAM missing; ticks 4..6 must follow, in order, from the restored VM,
# and the exactly-once and checksum checks hold before and after.
#
# Exit status: 0 all passed, 1 a check failed, 2 L1 never reported (panic,
# hang, timeout), 77 cannot run here (no kernel, QEMU, gcc or static
# busybox).
#
# Environment (defaults in brackets):
#   MEMFAULT_KERNEL_DIR   directory with userfault-7.2.13/x86_64/bzImage
#                         (.ci/run sets it to ../shared/kernel)
#   MEMFAULT_GUEST_WORK   scratch directory [${TMPDIR:-/tmp}/memfault-guest]
#   MEMFAULT_GUEST_DIR    if set, write DIR/meson-logs/testlog.json (one
#                         result per run, meson's format)
#   MEMFAULT_GUEST_TIMEOUT  seconds for the QEMU run [165]
#   MEMFAULT_GUEST_L1_SMP  QEMU -smp for L1 [2]
#   MEMFAULT_GUEST_RUNS   the guest runs, MODE:VCPUS with MODE lazy, eager
#                         or snap [lazy:1 lazy:2 snap:1]
#   MEMFAULT_LINUX_VMM_MUTANT  passed to linux-vmm (test of the test)
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MODE=${1:-test}
NBENCH=${2:-3}
WORK=${MEMFAULT_GUEST_WORK:-${TMPDIR:-/tmp}/memfault-guest}
TIMEOUT=${MEMFAULT_GUEST_TIMEOUT:-165}
T_START=$(date +%s.%N)

log() { printf '[run-guest-boot %s] %s\n' "$(date +%T)" "$*" >&2; }
skip() {
	log "SKIP: $*"
	exit 77
}
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

[ "$(uname -m)" = x86_64 ] || skip "x86_64 hosts only (the L1 kernel and linux-vmm are x86-64)"
for tool in qemu-system-x86_64 gcc cpio gzip timeout sha256sum; do
	command -v "$tool" > /dev/null || skip "$tool not found (Debian: qemu-system-x86 gcc cpio gzip)"
done
BUSYBOX=$(command -v busybox || true)
if [ -z "$BUSYBOX" ] || ldd "$BUSYBOX" > /dev/null 2>&1; then
	skip "need a static busybox on the host (Debian: busybox-static)"
fi
[ -n "${MEMFAULT_KERNEL_DIR:-}" ] || skip "no MEMFAULT_KERNEL_DIR, so no userfault-7.2.13/x86_64/bzImage"
KERNEL=$MEMFAULT_KERNEL_DIR/userfault-7.2.13/x86_64/bzImage
[ -r "$KERNEL" ] || skip "no $KERNEL"

rm -rf "$WORK"
mkdir -p "$WORK/include/memfault" "$WORK/obj"

# ---- linux-vmm, static, with libmemfault compiled in (as run-nested.sh
# builds its guest binaries: the project version into memfault-version.h,
# the library's sources with the project's uapi copy) ----
T0=$(date +%s.%N)
version=$(sed -n "s/^[[:space:]]*version: '\([0-9]*\.[0-9]*\.[0-9]*\)',.*/\1/p" "$SRC/meson.build" | head -1)
IFS=. read -r v_major v_minor v_micro <<< "$version"
sed -e "s/@MAJOR@/$v_major/" -e "s/@MINOR@/$v_minor/" -e "s/@MICRO@/$v_micro/" \
	"$SRC/include/memfault/memfault-version.h.in" > "$WORK/include/memfault/memfault-version.h"
CFLAGS=(-std=c11 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -fvisibility=hidden
	-I"$SRC/include" -I"$WORK/include" -I"$SRC/lib"
	-isystem "$SRC/lib/uapi" -isystem "$SRC/lib/uapi/asm-x86")
objs=()
for c in "$SRC"/lib/*.c; do
	o=$WORK/obj/$(basename "$c" .c).o
	gcc "${CFLAGS[@]}" -c "$c" -o "$o" &
	objs+=("$o")
done
for pid in $(jobs -p); do wait "$pid" || {
	log "compiling libmemfault failed"
	exit 1
}; done
# The example uses the public header and the system's <linux/kvm.h> only;
# the project's warnings (meson.build).
VMM_CFLAGS=(-std=c11 -O2 -Wall -Wextra -Werror -Wno-unused-parameter -Wmissing-prototypes
	-Wstrict-prototypes -Wmissing-declarations -Wformat=2 -Wimplicit-fallthrough -Wundef -Wshadow
	-I"$SRC/include" -I"$WORK/include")
VMM_SRC=(main.c image.c source.c vm.c devices.c snapshot.c)
gcc "${VMM_CFLAGS[@]}" -static -pthread -o "$WORK/linux-vmm" \
	"${VMM_SRC[@]/#/$SRC/examples/linux-vmm/}" "${objs[@]}" || {
	log "building linux-vmm failed"
	exit 1
}
log "built a static linux-vmm with libmemfault $version ($(elapsed "$T0") s)"

# ---- the guest's (L2) initramfs: busybox, a file and its sha256 ----
L2=$WORK/l2root
mkdir -p "$L2/bin" "$L2/data" "$L2/proc"
cp "$BUSYBOX" "$L2/bin/busybox"
head -c 1048576 /dev/urandom > "$L2/data/blob"
want=$(sha256sum "$L2/data/blob" | cut -d' ' -f1)
cat > "$L2/init" << EOF
#!/bin/busybox sh
# SPDX-License-Identifier: MIT
# /init of the L2 guest (written by tests/guest/run-guest-boot.sh)
B=/bin/busybox
\$B mount -t proc proc /proc
echo "GUEST: init reached, uptime \$(\$B cut -d' ' -f1 /proc/uptime)"
got=\$(\$B sha256sum /data/blob | \$B cut -d' ' -f1)
if [ "\$got" = $want ]; then echo "GUEST: sha256 OK"; else echo "GUEST: sha256 BAD \$got"; fi
echo "GUEST: cpus=\$(\$B grep -c ^processor /proc/cpuinfo)"
# guest.ticks=N: a counter the snapshot run pauses and restores
ticks=\$(\$B sed -n 's/.*guest.ticks=\\([0-9]*\\).*/\\1/p' /proc/cmdline)
i=0
while [ "\$i" -lt "\${ticks:-0}" ]; do
	i=\$((i + 1))
	echo "GUEST: tick \$i"
	\$B usleep 200000
done
\$B reboot -f
EOF
chmod +x "$L2/init"
(cd "$L2" && find . | cpio -o -H newc --quiet | gzip -1 > "$WORK/l2-initrd.gz")

# ---- L1's initramfs: busybox, linux-vmm, the guest's kernel and initrd ----
L1=$WORK/l1root
mkdir -p "$L1/bin" "$L1/proc" "$L1/sys" "$L1/dev" "$L1/guest"
cp "$BUSYBOX" "$L1/bin/busybox"
cp "$WORK/linux-vmm" "$L1/linux-vmm"
cp "$KERNEL" "$L1/guest/bzImage"
cp "$WORK/l2-initrd.gz" "$L1/guest/initrd.gz"
if [ "$MODE" = bench ]; then
	runs=""
	for _ in $(seq "$NBENCH"); do runs="$runs eager:1 lazy:1"; done
else
	runs=${MEMFAULT_GUEST_RUNS:-lazy:1 lazy:2 snap:1}
fi
echo "RUNS='$runs'" > "$L1/runs.env"
echo "export MEMFAULT_LINUX_VMM_MUTANT='${MEMFAULT_LINUX_VMM_MUTANT:-}'" >> "$L1/runs.env"
cat > "$L1/init" << 'EOF'
#!/bin/busybox sh
# SPDX-License-Identifier: MIT
# /init of L1 (written by tests/guest/run-guest-boot.sh)
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
dmesg -n 3
. /runs.env
[ -n "$MEMFAULT_LINUX_VMM_MUTANT" ] || unset MEMFAULT_LINUX_VMM_MUTANT
echo "L1: uname $(uname -r), $(ls -l /dev/kvm 2>&1)"
# a heartbeat: tells a hung L1 from a hung VMM in the console
while sleep 15; do echo "L1: alive at $(cut -d' ' -f1 /proc/uptime) s"; done &
for r in $RUNS; do
	mode=${r%:*} cpus=${r#*:}
	echo "L1: run $mode $cpus"
	set -- --kernel /guest/bzImage --initrd /guest/initrd.gz --cpus "$cpus" --timeout 60
	case $mode in
	eager) set -- "$@" --eager ;;
	snap) set -- "$@" --snapshot-at 3 --append "console=ttyS0 noxsave lpj=700000 no_timer_check reboot=k panic=-1 quiet guest.ticks=6" ;;
	esac
	# a hung VMM is killed, so that the runs after it still report
	timeout -s KILL 150 /linux-vmm "$@"
	echo "L1: result $mode $cpus rc=$?"
done
dmesg | grep -E 'BUG|WARNING|Oops|Call Trace' | sed 's/^/L1-dmesg: /'
echo "L1: done"
reboot -f
EOF
chmod +x "$L1/init"
(cd "$L1" && find . | cpio -o -H newc --quiet | gzip -1 > "$WORK/l1-initrd.gz")
log "initramfs: L1 $(du -h "$WORK/l1-initrd.gz" | cut -f1), guest $(du -h "$WORK/l2-initrd.gz" | cut -f1)"

# ---- boot L1 ----
QCMD=(qemu-system-x86_64 -accel tcg -cpu max -m 1G -smp "${MEMFAULT_GUEST_L1_SMP:-2}" -nographic -no-reboot -nic none
	-kernel "$KERNEL" -initrd "$WORK/l1-initrd.gz" -append "console=ttyS0 panic=-1 quiet")
log "${QCMD[*]}"
T0=$(date +%s.%N)
timeout "$TIMEOUT" "${QCMD[@]}" < /dev/null 2>&1 | tr -d '\r' | tee "$WORK/console.log" || true
BOOT_WALL=$(elapsed "$T0")
log "QEMU wall time $BOOT_WALL s"

# ---- verdicts: one per guest run, from the console ----
# A run passes when linux-vmm exited 0 and the guest printed its markers
# between "L1: run" and "L1: result".
awk -v mode="$MODE" '
/^L1: run / { m = $3; c = $4; init = sha = 0; cpus = -1; tick = 0; tickbad = 0; restored = -1; next }
/GUEST: tick / { t = $3 + 0; if (t != tick + 1) tickbad = 1; tick = t }
/^linux-vmm: restored into a fresh VM/ { restored = tick }
/GUEST: init reached/ { init = 1 }
/GUEST: sha256 OK/ { sha = 1 }
/GUEST: cpus=/ { split($0, a, "cpus="); cpus = a[2] + 0 }
/^L1: result / {
	rc = $5; sub(/rc=/, "", rc)
	why = ""
	if (rc != 0) why = why " linux-vmm exited " rc
	if (!init) why = why " no /init marker"
	if (!sha) why = why " sha256 check of the initramfs file failed"
	if (cpus != c) why = why " guest saw " cpus " CPUs, not " c
	# the snapshot run: ticks 1..6 in order, restored after tick 3
	if (m == "snap" && (tickbad || tick != 6 || restored != 3))
		why = why " counter: last tick " tick ", restored after tick " restored (tickbad ? ", ticks out of order" : "")
	printf "%s-%scpu %s%s\n", m, c, why == "" ? "PASS" : "FAIL", why
	n++
}
' "$WORK/console.log" > "$WORK/results.txt"
cat "$WORK/results.txt"
RC=0
if ! grep -q '^L1: done' "$WORK/console.log"; then
	log "L1 never finished (panic, hang or timeout): see $WORK/console.log"
	RC=2
fi
expected=$(echo "$runs" | wc -w)
[ "$MODE" = bench ] && expected=$((NBENCH * 2))
if [ "$(wc -l < "$WORK/results.txt")" -ne "$expected" ]; then
	log "expected $expected guest runs, got $(wc -l < "$WORK/results.txt")"
	[ "$RC" = 0 ] && RC=1
fi
if grep -q FAIL "$WORK/results.txt"; then
	[ "$RC" = 0 ] && RC=1
fi
if [ -n "${MEMFAULT_GUEST_DIR:-}" ] && [ -s "$WORK/results.txt" ]; then
	mkdir -p "$MEMFAULT_GUEST_DIR/meson-logs"
	awk '{ printf "{\"name\": \"x86_64/linux-guest-%s\", \"result\": \"%s\"}\n", $1, $2 == "PASS" ? "OK" : "FAIL" }' \
		"$WORK/results.txt" > "$MEMFAULT_GUEST_DIR/meson-logs/testlog.json"
	if [ "$RC" = 2 ]; then
		echo '{"name": "x86_64/linux-guest-l1", "result": "FAIL"}' >> "$MEMFAULT_GUEST_DIR/meson-logs/testlog.json"
	fi
	log "wrote $MEMFAULT_GUEST_DIR/meson-logs/testlog.json"
fi
log "total $(elapsed "$T_START") s, exit $RC"
exit "$RC"
