#!/bin/bash
# SPDX-License-Identifier: MIT
#
# run-nested-bench.sh ARCH [OUT] - bench/kvm-run-bench.c on the pinned Debian
# 7.2.13 kernel, under QEMU TCG with nested KVM: the same initramfs mechanism
# as tests/kernel/run-nested.sh (static binary + busybox + /init), with one
# static program, `kvm-run-bench time`, instead of the kernel suite. The
# stock kernel runs the io/mmio and fault exits; then, in a second boot, the
# KVM Userfault kernel of the arch (userfault-7.2.13: 7.2.13 with the KVM
# Userfault series, KVM built in) runs the `uf` kind, the library's userfault
# round trip against a raw one. Without that kernel its line is a skip with
# the reason.
#
#   bench/nested/run-nested-bench.sh x86_64
#   bench/nested/run-nested-bench.sh arm64 results.jsonl
#
# Prints (and appends to OUT) the benchmark's JSON lines, each with "nested",
# "arch", "kernel_dir" (debian-7.2.13 or userfault-7.2.13) and "boot" (1..N)
# added. Wall-clock ratios only: the guest runs under TCG, so the absolute
# times say nothing about hardware; the interleaved median ratio of the
# library loop to the raw loop still shows what the library adds per exit
# on that kernel. Each kernel is booted MEMFAULT_NESTED_BOOTS times (default
# 3), one boot after the other: the median ratio of one boot moves by about
# +-1% from boot to boot (where the guest's heap, stack and page tables
# land), more than within a boot, so one boot is one sample; the report
# (bench/memfault_bench) takes the median of the boots.
#
# Only the pinned kernels are used (MEMFAULT_KERNEL_DIR, or ../shared/kernel
# beside the repository): nothing is downloaded. Exit status: 0 ran; 1 the
# guest printed no result or a loop saw other exits than expected ("error"
# lines); 77 cannot run here (no kernel, QEMU, compiler or
# static busybox; the stock kernel only: a missing KVM Userfault kernel is
# a skip line, not an exit status).
#
# Environment: MEMFAULT_KERNEL_DIR, MEMFAULT_NESTED_BENCH_WORK (scratch,
# default ${TMPDIR:-/tmp}/memfault-nested-bench), MEMFAULT_NESTED_TIMEOUT
# (seconds per boot, default 300), KVM_BENCH_ARGS (default "50 201": BLOCK
# and TRIALS of `kvm-run-bench time`), MEMFAULT_NESTED_BOOTS (boots per
# kernel, default 3), MEMFAULT_NESTED_BENCH_UF (0: leave the KVM Userfault
# kernel out).
set -euo pipefail

ARCH=${1:-}
OUT=${2:-}
case $ARCH in
x86_64 | arm64) ;;
*)
	sed -n '3,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
	exit 64
	;;
esac

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if [ -z "${MEMFAULT_KERNEL_DIR:-}" ] && [ -d "$(dirname "$SRC")/shared/kernel" ]; then
	MEMFAULT_KERNEL_DIR=$(dirname "$SRC")/shared/kernel
fi
WORK=${MEMFAULT_NESTED_BENCH_WORK:-${TMPDIR:-/tmp}/memfault-nested-bench}/$ARCH
TIMEOUT=${MEMFAULT_NESTED_TIMEOUT:-300}
BENCH_ARGS=${KVM_BENCH_ARGS:-50 201}
BOOTS=${MEMFAULT_NESTED_BOOTS:-3}
case $BOOTS in
'' | *[!0-9]* | 0) echo "MEMFAULT_NESTED_BOOTS must be a positive number" >&2; exit 64 ;;
esac

log() { printf '[nested-bench %s %s] %s\n' "$ARCH" "$(date +%T)" "$*" >&2; }
skip() {
	log "SKIP: $*"
	exit 77
}

KD=${MEMFAULT_KERNEL_DIR:-/nonexistent}/debian-7.2.13/$ARCH
if [ "$ARCH" = x86_64 ]; then
	QEMU=qemu-system-x86_64 CC=${CC_X86_64:-gcc} UAPI_ARCH=asm-x86 ORDINARY=io
	if [ ! -r "$KD/vmlinuz" ] || [ ! -d "$KD/modules" ]; then skip "no pinned kernel in $KD"; fi
	UF_KERNEL=${MEMFAULT_KERNEL_DIR:-/nonexistent}/userfault-7.2.13/$ARCH/bzImage
else
	QEMU=qemu-system-aarch64 CC=${CC_ARM64:-aarch64-linux-gnu-gcc} UAPI_ARCH=asm-arm64 ORDINARY=mmio
	if [ ! -r "$KD/Image.xz" ] || [ ! -r "$KD/busybox.xz" ]; then skip "no pinned kernel in $KD"; fi
	UF_KERNEL=${MEMFAULT_KERNEL_DIR:-/nonexistent}/userfault-7.2.13/$ARCH/Image
fi
UF_SKIP=
if [ "${MEMFAULT_NESTED_BENCH_UF:-1}" = 0 ]; then
	UF_SKIP="MEMFAULT_NESTED_BENCH_UF=0"
elif [ ! -r "$UF_KERNEL" ]; then
	UF_SKIP="no KVM Userfault kernel: $UF_KERNEL not found"
fi
for tool in "$QEMU" "$CC" cpio gzip xz timeout; do
	command -v "$tool" > /dev/null || skip "$tool not found"
done

rm -rf "$WORK"
mkdir -p "$WORK/root/bin" "$WORK/root/dev" "$WORK/root/proc" "$WORK/root/sys" \
	"$WORK/root/lib/modules" "$WORK/obj"
ROOT=$WORK/root

# ---- kernel, busybox, modules ----
if [ "$ARCH" = x86_64 ]; then
	KERNEL=$KD/vmlinuz
	BUSYBOX=$(command -v busybox || true)
	if [ -z "$BUSYBOX" ] || ldd "$BUSYBOX" > /dev/null 2>&1; then
		skip "need a static busybox on the host (Debian: busybox-static)"
	fi
	cp "$BUSYBOX" "$ROOT/bin/busybox"
	for m in irqbypass kvm kvm-amd; do
		xz -dc "$KD/modules/$m.ko.xz" > "$ROOT/lib/modules/$m.ko"
	done
else
	KERNEL=$WORK/Image
	xz -dc "$KD/Image.xz" > "$KERNEL"
	xz -dc "$KD/busybox.xz" > "$ROOT/bin/busybox"
	chmod +x "$ROOT/bin/busybox"
fi

# ---- the static benchmark: libmemfault compiled in ----
version=$(sed -n "s/^[[:space:]]*version: '\([0-9]*\.[0-9]*\.[0-9]*\)',.*/\1/p" "$SRC/meson.build" | head -1)
IFS=. read -r v_major v_minor v_micro <<< "$version"
mkdir -p "$WORK/include/memfault"
sed -e "s/@MAJOR@/$v_major/" -e "s/@MINOR@/$v_minor/" -e "s/@MICRO@/$v_micro/" \
	"$SRC/include/memfault/memfault-version.h.in" > "$WORK/include/memfault/memfault-version.h"
CFLAGS=(-std=c11 -O2 -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE -fvisibility=hidden
	-I"$SRC/include" -I"$WORK/include" -I"$SRC/lib"
	-isystem "$SRC/lib/uapi" -isystem "$SRC/lib/uapi/$UAPI_ARCH")
objs=()
for c in "$SRC"/lib/*.c; do
	o=$WORK/obj/$(basename "$c" .c).o
	"$CC" "${CFLAGS[@]}" -c "$c" -o "$o"
	objs+=("$o")
done
"$CC" "${CFLAGS[@]}" -static -pthread -o "$ROOT/kvm-run-bench" \
	"$SRC/bench/kvm-run-bench.c" "${objs[@]}" || skip "cannot link a static $ARCH binary with $CC"
log "built a static kvm-run-bench with $CC"

# ---- initramfs ----
cat > "$ROOT/init" << EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
dmesg -n 3
# the KVM Userfault kernel has KVM built in (and no modules)
if [ ! -e /dev/kvm ]; then
	for m in irqbypass kvm kvm-amd; do
		[ -e /lib/modules/\$m.ko ] && insmod /lib/modules/\$m.ko
	done
fi
# kbench.kinds=KIND,... on the kernel command line: the exits to time
kinds=\$(sed -n 's/.*kbench\.kinds=\([^ ]*\).*/\1/p' /proc/cmdline)
echo "KBENCH-uname: \$(uname -r) \$(uname -m)"
/kvm-run-bench time $BENCH_ARGS "\$kinds" | sed 's/^/KBENCH: /'
echo "KBENCH-done"
reboot -f
EOF
chmod +x "$ROOT/init"
(cd "$ROOT" && find . | cpio -o -H newc --quiet | gzip -1 > "$WORK/initrd.gz")

# ---- boot ----
# emit LINE: print it (and append it to OUT)
emit() {
	echo "$1"
	if [ -n "$OUT" ]; then echo "$1" >> "$OUT"; fi
}
# bench NAME KERNEL KINDS BOOT: boot KERNEL, time KINDS, print the JSON
# lines with NAME as kernel_dir; 1 if the guest printed none. One boot
# after the other: two at once would share the host's cores and each
# other's timings.
bench() {
	local name=$1 kernel=$2 kinds=$3 boot=$4 append lines l t0
	local log=$WORK/console-$1-$4.log
	if [ "$ARCH" = x86_64 ]; then
		# TCG "max": AuthenticAMD with svm and npt, so the L1 kernel has kvm_amd
		QCMD=("$QEMU" -accel tcg -cpu max -m 1G -smp 1)
		append="console=ttyS0"
	else
		# pauth-impdef: QEMU's default QARMA5 emulation doubles boot time
		local machine=virt,virtualization=on,gic-version=3 cpu=max,pauth-impdef=on
		QCMD=("$QEMU" -accel tcg -M "$machine" -cpu "$cpu" -m 1G -smp 2)
		append="console=ttyAMA0"
	fi
	QCMD+=(-nographic -no-reboot -nic none -kernel "$kernel" -initrd "$WORK/initrd.gz"
		-append "$append panic=-1 quiet kbench.kinds=$kinds")
	log "boot $name: ${QCMD[*]}"
	t0=$SECONDS
	timeout "$TIMEOUT" "${QCMD[@]}" < /dev/null 2>&1 | tr -d '\r' > "$log" || true
	log "guest finished in $((SECONDS - t0)) s (console: $log)"

	lines=$(sed -n 's/^.*KBENCH: \({.*}\)$/\1/p' "$log")
	if [ -z "$lines" ]; then
		log "no result from the $name guest"
		tail -20 "$log" >&2
		return 1
	fi
	while IFS= read -r l; do
		emit "{\"nested\":true,\"arch\":\"$ARCH\",\"kernel_dir\":\"$name\",\"boot\":$boot,${l#\{}"
	done <<< "$lines"
	# a loop that did not see the exits it expected (kvm-run-bench's
	# "error" lines; uf: an iteration without exactly one userfault exit)
	if grep -q '"error"' <<< "$lines"; then
		log "the $name guest reported an error"
		return 1
	fi
}

rc=0
for boot in $(seq 1 "$BOOTS"); do
	bench debian-7.2.13 "$KERNEL" "$ORDINARY,fault" "$boot" || rc=1
	if [ -z "$UF_SKIP" ]; then
		bench userfault-7.2.13 "$UF_KERNEL" uf "$boot" || rc=1
	fi
done
if [ -n "$UF_SKIP" ]; then
	log "KVM Userfault round trip: SKIP ($UF_SKIP)"
	emit "{\"nested\":true,\"arch\":\"$ARCH\",\"kernel_dir\":\"userfault-7.2.13\",\"benchmark\":\"kvm_run\",\"exit\":\"uf\",\"skip\":\"$UF_SKIP\"}"
fi
exit "$rc"
