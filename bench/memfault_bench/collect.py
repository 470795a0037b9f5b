# SPDX-License-Identifier: MIT
"""The figures of a run of bench/run-all.sh, from its raw outputs.

collect() reads BENCH_RUN_DIR (one NAME.jsonl and NAME.log per benchmark
step, and `durations`: "NAME SECONDS EXIT" lines) and returns the results
object that run-all.sh writes to BUILDDIR/bench-results.json: one figure per
row (baseline, library, ratio, goal, met, method, command), plus everything
the report needs besides (the steps' outcomes and skip reasons, the claim
and userfaultfd lines the tables and the plot are drawn from, the peer
scenarios). markdown.py and plot.py read only that object, so the same
results file always gives the same page.
"""
import json
import os
import statistics

# Every step run-all.sh may run, in its order.
STEPS = ("run_overhead", "dispatch_overhead", "bitmap", "claim", "region", "region_kvm",
         "uffd", "host_kvm", "peers", "nested")

RUN_GOAL, DISPATCH_GOAL = 60, 400  # instructions per run / per resolved fault
UFFD_GOAL = 0.95  # faults/s relative to the raw loop
TIME_GOAL = 0.98  # speed relative to the raw loop: time ratio <= 1/0.98

# The peer scenarios: what a correct run loop reports for each, and what
# KVM_RUN did in it.

PEER_EXPECTED = {
    "mmio": ({"kind": "exit", "exit": "MMIO"}, "0, exit MMIO"),
    "gmem-efault": ({"kind": "fault", "error": "EFAULT"}, "-1/EFAULT, exit 39"),
    "gmem-hwpoison": ({"kind": "fault", "error": "EHWPOISON"}, "-1/EHWPOISON, exit 39"),
    "gmem-enomem": ({"kind": "fault", "error": "ENOMEM"}, "-1/ENOMEM, exit 39"),
    "gmem-eio": ({"kind": "fault", "error": "EIO"}, "-1/EIO, exit 39"),
    "vncr-ret0": ({"kind": "fault", "error": "none"}, "0, exit 39 (arm64 VNCR)"),
    "stale-ie": ({"kind": "interrupted"}, "-1/EINTR, exit_reason left at 39"),
    "bare-efault-stale": ({"kind": "error", "error": "EFAULT"},
                          "-1/EFAULT without exit 39, after a fault"),
    "bare-efault": ({"kind": "error", "error": "EFAULT"}, "-1/EFAULT without exit 39"),
}


def status(steps, name):
    """ran, skipped, not run or FAILED (exit N), from the step durations."""
    d = steps.get(name)
    if d is None:
        return "not run"
    return {0: "ran", 77: "skipped"}.get(d["exit"], "FAILED (exit %d)" % d["exit"])


def ci_text(j):
    if j.get("boot_ratios"):
        return " (median of %d boots: %s)" % (
            len(j["boot_ratios"]), ", ".join("%.3f" % r for r in j["boot_ratios"]))
    if j.get("ratio_ci95_lo") is None:
        return ""
    return " [%.3f, %.3f]" % (j["ratio_ci95_lo"], j["ratio_ci95_hi"])


def boots_text(j):
    """The method's words for the nested runs' boots."""
    if not j.get("boots"):
        return ""
    return ("; %d boots of the guest, one after the other: the figure is the median of the "
            "boots' ratios, each boot's ratio [its 95%% CI] listed in the results file"
            " (boot_ratios, boot_ratio_ci95)" % j["boots"])


class Run:
    """The raw outputs of one run, and the figures made of them."""

    def __init__(self, out, machine, date):
        self.out = out
        self.machine = machine
        self.date = date
        self.figures = []
        self.steps = {}
        with open(os.path.join(out, "durations")) as f:
            for l in f:
                n, t, rc = l.split()
                self.steps[n] = {"seconds": int(t), "exit": int(rc)}

    def lines(self, name):
        """The JSON objects of NAME.jsonl (other lines are left out)."""
        p = os.path.join(self.out, name + ".jsonl")
        res = []
        if os.path.exists(p):
            with open(p) as f:
                for l in f:
                    l = l.strip()
                    if l.startswith("{"):
                        try:
                            res.append(json.loads(l))
                        except ValueError:
                            pass
        return res

    def skip_reason(self, name):
        """The last line NAME.log, which says why a step was skipped or failed."""
        p = os.path.join(self.out, name + ".log")
        if os.path.exists(p):
            with open(p) as f:
                t = [l.strip() for l in f if l.strip()]
            if t:
                return t[-1]
        return ""

    def fig(self, section, fid, figure, baseline_name, base, lib, unit, goal, met,
            ratio="auto", method="", **extra):
        if ratio == "auto":
            ratio = (lib / base) if (isinstance(base, (int, float)) and
                                    isinstance(lib, (int, float)) and base) else None
        f = {"id": fid, "section": section, "figure": figure,
             "baseline": baseline_name, "baseline_value": base,
             "library_value": lib, "unit": unit, "ratio": ratio,
             "goal": goal, "met": met, "method": method,
             "machine": self.machine, "date": self.date}
        f.update(extra)
        self.figures.append(f)


def _sim(run):
    """Run loop and dispatch on the simulator: instruction and system call counts."""
    fig, lines = run.fig, run.lines
    for j in lines("run_overhead"):
        n = j["iterations"]
        cmd = "bench/run-overhead.sh BUILDDIR"
        nat = j.get("native_overhead_per_call")
        fig("sim", "vcpu_run.native", "memfault_vcpu_run(), native instructions per call over the raw loop",
            "raw ioctl(KVM_RUN) loop", j.get("native_raw_per_call"), j.get("native_lib_per_call"),
            "instructions/call, %d calls single-stepped" % j.get("native_iterations", 0),
            "<= +%d per call" % RUN_GOAL, None if nat is None else nat <= RUN_GOAL,
            method="ptrace single-step (bench/sstep-count), vDSO included", overhead=nat, cmd=cmd)
        fig("sim", "vcpu_run.instructions", "memfault_vcpu_run(), callgrind instructions per call over the raw loop",
            "raw ioctl(KVM_RUN) loop", j["raw_ir_per_call"], j["lib_ir_per_call"],
            "instructions/call", "<= +%d per call" % RUN_GOAL,
            j["overhead_ir_per_call"] <= RUN_GOAL, method="callgrind",
            overhead=j["overhead_ir_per_call"], cmd=cmd)
        ns = j.get("native_extra_syscalls_per_call")
        fig("sim", "vcpu_run.syscalls", "memfault_vcpu_run(), system calls per call beyond the raw loop's one KVM_RUN",
            "raw ioctl(KVM_RUN) loop", j["raw_syscalls"] / n, j["lib_syscalls"] / n,
            "syscalls/call (the simulator's KVM_RUN makes 4)", "exactly 1 (+0 over raw)",
            j["lib_syscalls"] == j["raw_syscalls"] and (ns is None or ns == 0),
            method="strace -c (whole process) and single-step (window: +%s/call)" % (
                "-" if ns is None else "%.3f" % ns),
            overhead=j["extra_syscalls_per_call"], cmd=cmd)
    for j in lines("dispatch_overhead"):
        cmd = "bench/dispatch-overhead.sh BUILDDIR"
        nat = j.get("native_over_raw_per_fault")
        fig("sim", "dispatch.native",
            "resolved KVM Userfault fault: native instructions over the hand-written loop",
            "hand-written loop (test-and-set, callback, clear)", None, nat,
            "instructions/fault, slope over %s faults single-stepped" % (
                "/".join(str(x) for x in j["native_faults"]) if isinstance(j.get("native_faults"), list)
                else j.get("native_faults")),
            "<= %d per fault" % DISPATCH_GOAL, None if nat is None else nat <= DISPATCH_GOAL, ratio=None,
            method="ptrace single-step (bench/sstep-count), vDSO included; +%s syscalls/fault" % (
                "-" if j.get("native_extra_syscalls_per_fault") is None else
                "%.3f" % j["native_extra_syscalls_per_fault"]), cmd=cmd)
        fig("sim", "dispatch.instructions",
            "resolved KVM Userfault fault: callgrind instructions over the hand-written loop",
            "hand-written loop (test-and-set, callback, clear)", None, j.get("over_raw_ir_per_fault"),
            "instructions/fault", "- (graded natively)", None, ratio=None, method="callgrind", cmd=cmd)
        fig("sim", "dispatch.total",
            "resolved KVM Userfault fault, callgrind instructions outside KVM_RUN and page_in()",
            "hand-written loop (test-and-set, callback, clear)",
            j["raw_ir_per_fault"], j["lib_ir_per_fault"], "instructions/fault",
            "-", None, method="callgrind", cmd=cmd)

def _bitmap(run):
    """Bitmap operations: median over the runs of each run's medians."""
    fig, lines = run.fig, run.lines
    bm = {}
    for j in lines("bitmap"):
        if "baseline" in j:
            bm.setdefault((j["benchmark"], j["baseline"]), []).append(j)
    # the goal: >= 0.5x the bandwidth of memset/memchr over large
    # ranges (time ratio lib/baseline <= 2); the other rows are not graded
    bitmap_goals = {
        ("range_publish", "memset"): 2.0, ("range_mark_missing", "memset"): 2.0,
        ("find_missing", "memchr"): 2.0,
    }
    bitmap_names = {
        "range_publish": "publish a whole range", "range_mark_missing": "mark a whole range missing",
        "find_missing": "find the only missing page (last)", "single_page_publish": "publish page by page",
    }
    for (b, base), js in bm.items():
        ratios = [x["lib_ns"] / x["baseline_ns"] for x in js]
        r = statistics.median(ratios)
        units = js[0].get("bytes") or js[0].get("pages")
        unit = "bytes" if "bytes" in js[0] else "pages"
        g = bitmap_goals.get((b, base))
        fig("bitmap", "bitmap.%s.%s" % (b, base),
            "%s (%d %s of bitmap); bandwidth %.2fx the baseline's" % (
                bitmap_names.get(b, b), units, unit, 1 / r), base,
            statistics.median(x["baseline_ns"] for x in js),
            statistics.median(x["lib_ns"] for x in js), "ns",
            ">= %.1fx bandwidth (time <= %.1fx)" % (1 / g, g) if g else "-",
            (r <= g) if g else None, ratio=r,
            method="wall clock, %d runs x median of 15 interleaved trials" % len(js),
            run_ratios=ratios, bandwidth_ratio=1 / r, cmd="BUILDDIR/bench/bitmap-bench")

def _claim(run):
    """Exactly-once claims under contention."""
    fig, lines = run.fig, run.lines
    claim = lines("claim")
    for j in claim:
        fig("claim", "claim.%dt" % j["threads"],
            "claim + publish, %d thread%s, %d pages" % (j["threads"], "s" if j["threads"] > 1 else "", j["pages"]),
            "raw atomics (test-and-set, spin/yield)", j["raw_ns_per_page"], j["lib_ns_per_page"],
            "ns/page", "every page exactly once (time: not graded)",
            bool(j["lib_exactly_once"]),
            ratio=j["ratio"], ratio_note=ci_text(j),
            method="wall clock: medians of %d interleaved trials; ratio: median of the per-trial "
                   "lib/raw ratios [95%% CI]" % j["trials"],
            lib_exactly_once=j["lib_exactly_once"], raw_exactly_once=j["raw_exactly_once"],
            lib_blocking_switches_per_page=j.get("lib_blocking_switches_per_page"),
            raw_blocking_switches_per_page=j.get("raw_blocking_switches_per_page"),
            cmd="BUILDDIR/bench/claim-bench")
    return claim

def _uffd(run):
    """userfaultfd backend against a raw loop."""
    fig, lines = run.fig, run.lines
    uffd = [j for j in lines("uffd") if j.get("bench") == "uffd"]
    for j in uffd:
        lo, hi = j.get("ratio_ci95_lo"), j.get("ratio_ci95_hi")
        fig("uffd", "uffd.%s.%dt" % (j["memory"], j["threads"]),
            "userfaultfd faults/s, %s (both %s), %d thread%s" % (
                j["memory"], j["lib_mode"], j["threads"], "s" if j["threads"] > 1 else ""),
            "raw uffd loop (%s)" % j["raw_mode"], j["raw_faults_per_s"], j["lib_faults_per_s"],
            "faults/s", ">= %.2fx (median pair ratio)" % UFFD_GOAL, j["ratio"] >= UFFD_GOAL, ratio=j["ratio"],
            ratio_note=(" [CI %.2f-%.2f; p25-p75 %.2f-%.2f]" % (lo, hi, j["ratio_p25"], j["ratio_p75"])
                        if lo is not None and "ratio_p25" in j else ""),
            method="wall clock, median of %d per-pair ratios, pairs in alternating order" % j["reps"],
            cmd="BUILDDIR/bench/uffd-bench --pages 16384 --reps 41",
            lib_p50_us=j["lib_p50_us"], lib_p99_us=j["lib_p99_us"],
            raw_p50_us=j["raw_p50_us"], raw_p99_us=j["raw_p99_us"])
    return uffd

def _region(run):
    """A 1 TiB region: memory and setup time (simulator; /dev/kvm with its memslot)."""
    fig, lines = run.fig, run.lines
    for j in lines("region"):
        m = j["missing"]
        tag = "MISSING" if m else "no MISSING"
        tib = j["size"] / 2**40
        if m:
            fig("region", "region.missing.memory",
                "%g TiB region, %s: committed bitmap memory" % (tib, tag),
                "1 bit per page, memset", j["baseline_bytes_per_page"], j["lib_bytes_per_page"],
                "bytes/page", "-", None, method="RssAnon delta, median of %d" % j["trials"],
                cmd="BUILDDIR/bench/region-bench",
                lib_bytes=j["lib_bytes"], baseline_bytes=j["baseline_bytes"])
            fig("region", "region.missing.time", "%g TiB region, %s: memfault_region_new()" % (tib, tag),
                "mmap + memset of 1 bit/page", j["baseline_ns"] / 1e3, j["lib_ns"] / 1e3, "us",
                "-", None, ratio=j["time_ratio"], cmd="BUILDDIR/bench/region-bench",
                method="wall clock, median of %d interleaved trials (simulator, no memslot)" % j["trials"])
        else:
            fig("region", "region.nomissing.memory",
                "%g TiB region, %s: committed bitmap memory" % (tib, tag),
                "1 bit per page, mmap(MAP_NORESERVE)", j["baseline_bytes_per_page"], j["lib_bytes_per_page"],
                "bytes/page", "-", None, ratio=None, cmd="BUILDDIR/bench/region-bench",
                method="RssAnon delta, median of %d" % j["trials"],
                lib_bytes=j["lib_bytes"], baseline_bytes=j["baseline_bytes"])
            fig("region", "region.nomissing.time", "%g TiB region, %s: memfault_region_new()" % (tib, tag),
                "mmap(MAP_NORESERVE)", j["baseline_ns"] / 1e3, j["lib_ns"] / 1e3, "us",
                "-", None, ratio=j["time_ratio"], cmd="BUILDDIR/bench/region-bench",
                method="wall clock, median of %d interleaved trials (simulator, no memslot)" % j["trials"])
    region_kvm = lines("region_kvm")
    for j in region_kvm:
        if "skip" in j:
            continue
        tib = j["size"] / 2**40
        fig("region", "region.kvm.%s.new" % j["mode"],
            "%g TiB region with its memslot (%s), /dev/kvm: memfault_region_new(), the library's part" % (
                tib, j["mode"]),
            "KVM_SET_USER_MEMORY_REGION2 alone", j["kvm_set_ns"] / 1e3, j["lib_part_new_ns"] / 1e3, "us",
            "-", None, method="wall clock, median of %d alternating trials; the library's part is the "
            "call minus its own %d memslot ioctls (timed through an interposed ioctl())" % (
                j["trials"], j["lib_memslot_ioctls"]), cmd="BUILDDIR/bench/region-kvm-bench 1024 5")
        fig("region", "region.kvm.%s.free" % j["mode"],
            "%g TiB region with its memslot (%s), /dev/kvm: memfault_region_free(), the library's part" % (
                tib, j["mode"]),
            "KVM_SET_USER_MEMORY_REGION2 (delete) alone", j["kvm_delete_ns"] / 1e3, j["lib_part_free_ns"] / 1e3,
            "us", "-", None, method="as above", cmd="BUILDDIR/bench/region-kvm-bench 1024 5")


def _kvm_figures(fig, section, js, where):
    """Real KVM: the host's /dev/kvm, or the nested 7.2 kernels."""
    cmd_t = "BUILDDIR/bench/kvm-run-bench time" if section == "host" else "bench/nested/run-nested-bench.sh ARCH"
    for j in js:
        if j.get("benchmark") == "kvm_run" and j.get("exit") == "uf" and "ratio" in j:
            _uf_figure(fig, section, j, where, cmd_t)
        elif j.get("benchmark") == "kvm_run" and "ratio" in j:
            fig(section, "%s.%s.%s.time" % (section, j.get("arch", "host"), j["exit"]),
                "memfault_vcpu_run(), %s exit, %s (%s)" % (j["exit"], where, j["kernel"]),
                "raw ioctl(KVM_RUN) loop", j["raw_ns_per_exit"] / 1e3, j["lib_ns_per_exit"] / 1e3,
                "us/exit", ">= %.2fx speed (time ratio <= %.4f)" % (TIME_GOAL, 1 / TIME_GOAL),
                j["ratio"] <= 1 / TIME_GOAL, ratio=j["ratio"], ratio_note=ci_text(j), cmd=cmd_t,
                method="wall clock: medians of %d interleaved pairs of %d-run blocks; ratio: median "
                       "of the per-pair lib/raw ratios [95%% CI]%s" % (j["trials"], j["block"], boots_text(j)),
                ratio_p25=j["ratio_p25"], ratio_p75=j["ratio_p75"],
                ratio_ci95=[j.get("ratio_ci95_lo"), j.get("ratio_ci95_hi")],
                **({"boot_ratios": j["boot_ratios"], "boot_ratio_ci95": j["boot_ratio_ci95"]}
                   if j.get("boots") else {}))
        elif j.get("benchmark") == "kvm_run_ir" and j.get("raw_ir") and j.get("lib_ir"):
            n = j["runs"]
            fig(section, "%s.%s.instructions" % (section, j["exit"]),
                "memfault_vcpu_run(), %s exit, %s: user-space instructions" % (j["exit"], where),
                "raw ioctl(KVM_RUN) loop", j["raw_ir"] / n, j["lib_ir"] / n, "instructions/exit",
                "<= +%d per exit" % RUN_GOAL if j["exit"] != "fault" else "-",
                ((j["lib_ir"] - j["raw_ir"]) / n <= RUN_GOAL) if j["exit"] != "fault" else None,
                method="callgrind", overhead=(j["lib_ir"] - j["raw_ir"]) / n,
                cmd="valgrind --tool=callgrind --toggle-collect='*bench_loop*' BUILDDIR/bench/kvm-run-bench raw|lib %s 20000" % j["exit"])
        elif j.get("benchmark") == "kvm_run_syscalls" and j.get("raw_syscalls") is not None \
                and j.get("lib_syscalls") is not None:
            n = j["runs"]
            fig(section, "%s.%s.syscalls" % (section, j["exit"]),
                "memfault_vcpu_run(), %s exit, %s: system calls" % (j["exit"], where),
                "raw ioctl(KVM_RUN) loop", j["raw_syscalls"] / n, j["lib_syscalls"] / n,
                "syscalls/exit", "exactly 1 (+0 over raw)", j["raw_syscalls"] == j["lib_syscalls"],
                method="strace -c, whole process",
                cmd="strace -f -c BUILDDIR/bench/kvm-run-bench raw|lib %s 20000" % j["exit"])


def _uf_figure(fig, section, j, where, cmd_t):
    """kvm-run-bench's uf kind: a KVM Userfault round trip, library against a raw loop."""
    label = ", ".join(x for x in (j.get("kernel_dir"), j.get("arch"), j.get("kernel")) if x)
    fig(section, "%s.%s.uf.time" % (section, j.get("arch", "host")),
        "KVM Userfault round trip, %s (%s)" % (where, label),
        "raw KVM Userfault loop", j["raw_ns_per_exit"] / 1e3, j["lib_ns_per_exit"] / 1e3,
        "us/fault", ">= %.2fx speed (time ratio <= %.4f)" % (TIME_GOAL, 1 / TIME_GOAL),
        j["ratio"] <= 1 / TIME_GOAL, ratio=j["ratio"], ratio_note=ci_text(j), cmd=cmd_t,
        method="KVM Userfault round trip: re-arm the page (bit, full fence, MADV_DONTNEED), KVM_RUN to "
               "its USERFAULT exit, fill the page, clear the bit (store-release), KVM_RUN to the io/mmio "
               "exit; library: memfault_region_mark_missing() + memfault_vcpu_run_dispatch() with a "
               "page_in handler; same VM, region and page, exactly one userfault exit per iteration "
               "checked on both sides; wall clock: medians of %d interleaved pairs of %d-iteration "
               "blocks; ratio: median of the per-pair lib/raw ratios [95%% CI]%s" % (
                   j["trials"], j["block"], boots_text(j)),
        ratio_p25=j["ratio_p25"], ratio_p75=j["ratio_p75"],
        ratio_ci95=[j.get("ratio_ci95_lo"), j.get("ratio_ci95_hi")],
        lib_userfaults=j.get("lib_userfaults"), lib_page_ins=j.get("lib_page_ins"),
        **({"boot_ratios": j["boot_ratios"], "boot_ratio_ci95": j["boot_ratio_ci95"]}
           if j.get("boots") else {}))


def _merge_boots(js):
    """One line per (arch, exit, kernel) of the nested runs: with several
    boots ("boot" 1..N), their median. A boot's median ratio moves more
    from boot to boot than within one, so the figure is the median of the
    boots' ratios, and each boot's ratio is kept beside it."""
    groups, order = {}, []
    for j in js:
        if j.get("benchmark") != "kvm_run" or "ratio" not in j:
            order.append(j)
            continue
        key = (j.get("arch"), j.get("exit"), j.get("kernel_dir"), j.get("kernel"))
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(j)
    out = []
    for k in order:
        if not isinstance(k, tuple):
            out.append(k)
            continue
        g = groups[k]
        if len(g) == 1:
            out.append(g[0])
            continue
        m = dict(g[0])
        for f in ("ratio", "raw_ns_per_exit", "lib_ns_per_exit"):
            m[f] = statistics.median([x[f] for x in g])
        m["boots"] = len(g)
        m["boot_ratios"] = [x["ratio"] for x in g]
        m["boot_ratio_ci95"] = [[x.get("ratio_ci95_lo"), x.get("ratio_ci95_hi")] for x in g]
        # the spread shown is the boots' range, not one boot's CI
        m["ratio_ci95_lo"] = m["ratio_ci95_hi"] = None
        m["ratio_p25"] = statistics.median([x["ratio_p25"] for x in g])
        m["ratio_p75"] = statistics.median([x["ratio_p75"] for x in g])
        out.append(m)
    return out


def _kvm(run):
    """The host's /dev/kvm and the nested kernels; their skipped exits."""
    host = run.lines("host_kvm")
    nested = _merge_boots(run.lines("nested"))
    _kvm_figures(run.fig, "host", host, "this host's /dev/kvm")
    _kvm_figures(run.fig, "nested", nested, "nested")
    return [j for j in host if "skip" in j], [j for j in nested if "skip" in j]

def _peers(run):
    """Peer: rust-vmm kvm-ioctls (simulator scenarios; the host's /dev/kvm)."""
    fig, lines = run.fig, run.lines
    peers = lines("peers")
    scen_rows = {}
    for j in peers:
        if "scenario" not in j:
            continue
        exp, _ = PEER_EXPECTED[j["scenario"]]
        ok = j["kind"] == exp["kind"]
        if ok and exp["kind"] == "exit":
            ok = j.get("exit") == exp["exit"]
        if ok and exp["kind"] in ("fault", "error"):
            got = j.get("error")
            # kvm-ioctls' MemoryFault carries no errno: api.rst's EFAULT reading
            ok = got == exp["error"] or (got == "unreported" and exp["error"] == "EFAULT")
        if ok and exp["kind"] == "fault":
            ok = j.get("gpa") == "0x100000" and j.get("size") == "0x1000"
        j["correct"] = ok
        scen_rows.setdefault(j["scenario"], {})[j["side"]] = j
    peer_ir = {}
    for j in peers:
        if j.get("benchmark") == "peer_overhead":
            peer_ir[(j["side"], j["exit"], j["loop"])] = j
    peer_versions = next((j["versions"] for j in peers if j.get("benchmark") == "peer_build"), "")
    for side in ("libmemfault", "kvm-ioctls"):
        rows = [r[side] for r in scen_rows.values() if side in r]
        if rows:
            good = sum(1 for r in rows if r["correct"])
            fig("peer", "peer.classification.%s" % side,
                "%s: scenarios classified correctly" % side, "-", None, good,
                "of %d" % len(rows), "all" if side == "libmemfault" else "- (peer)",
                good == len(rows) if side == "libmemfault" else None, ratio=None,
                method="KVM simulator 7.2 via LD_PRELOAD")
        for kind, limit in (("mmio", RUN_GOAL), ("fault", None)):
            r, l = peer_ir.get((side, kind, "raw")), peer_ir.get((side, kind, "lib"))
            if r and l and r["ir"] and l["ir"]:
                n = r["runs"]
                api = "memfault_vcpu_run()" if side == "libmemfault" else "VcpuFd::run()"
                if kind == "fault" and side == "libmemfault":
                    api += " + memfault_vcpu_get_fault()"
                fig("peer", "peer.%s.%s.instructions" % (side, kind),
                    "%s, %s exit, instructions per exit" % (api, "MMIO" if kind == "mmio" else "memory-fault"),
                    "raw loop (%s)" % ("C" if side == "libmemfault" else "Rust libc::ioctl"),
                    r["ir"] / n, l["ir"] / n, "instructions/exit",
                    ("<= +%d per exit" % limit) if side == "libmemfault" and limit else "- (peer)" if side != "libmemfault" else "-",
                    ((l["ir"] - r["ir"]) / n <= limit) if side == "libmemfault" and limit else None,
                    method="callgrind, KVM simulator via LD_PRELOAD", overhead=(l["ir"] - r["ir"]) / n,
                    cmd="LD_PRELOAD=BUILDDIR/tests/sim/libkvmsim.so valgrind --tool=callgrind --toggle-collect='*bench_loop*' %s bench %s raw|lib 20000" % (
                        "BUILDDIR/bench/peer-scenarios" if side == "libmemfault" else "kvm-ioctls-bench", kind))

    # the host's /dev/kvm: each side against its own raw loop, per round
    real_t = [j for j in peers if j.get("benchmark") == "peer_real_time" or j.get("benchmark_peer") == "peer_real_time"]
    real_ir = {(j["side"], j["loop"]): j for j in peers if j.get("benchmark") == "peer_real_ir"}
    for side in ("libmemfault", "kvm-ioctls"):
        js = [j for j in real_t if j.get("side") == side]
        if js:
            r = statistics.median(j["ratio"] for j in js)
            api = "memfault_vcpu_run()" if side == "libmemfault" else "VcpuFd::run()"
            fig("peer", "peer.real.%s.time" % side,
                "%s, IO exit, the host's /dev/kvm: time per exit against a raw loop in the same process" % api,
                "raw KVM_RUN loop (%s)" % ("C" if side == "libmemfault" else "Rust"),
                statistics.median(j["raw_ns_per_exit"] for j in js) / 1e3,
                statistics.median(j["lib_ns_per_exit"] for j in js) / 1e3, "us/exit",
                (">= %.2fx speed" % TIME_GOAL) if side == "libmemfault" else "- (peer)",
                (r <= 1 / TIME_GOAL) if side == "libmemfault" else None, ratio=r,
                ratio_note=" [rounds %s]" % ", ".join("%.3f" % j["ratio"] for j in js),
                method="wall clock: %d rounds (the two processes alternating), each the median of 51 "
                       "alternating pairs of 50-exit blocks; ratio: median over the rounds" % len(js),
                cmd="BUILDDIR/bench/kvm-run-bench time 50 51 / kvm-ioctls-bench real-time 50 51")
    lm = [j for j in real_t if j.get("side") == "libmemfault"]
    km = [j for j in real_t if j.get("side") == "kvm-ioctls"]
    if lm and km:
        # like for like: each side's ratio to its own raw loop, the raw loops
        # being the same ioctl in both languages
        a = statistics.median(j["ratio"] for j in lm)
        b = statistics.median(j["ratio"] for j in km)
        fig("peer", "peer.real.vs", "libmemfault against kvm-ioctls, IO exit, /dev/kvm: time ratio to each "
            "one's raw loop", "kvm-ioctls VcpuFd::run() (ratio to its raw loop)", b, a, "ratio", "- (peer)", None,
            ratio=a / b, method="the two ratios above; below 1: libmemfault adds less than kvm-ioctls",
            cmd="as above")
    for side in ("libmemfault", "kvm-ioctls"):
        r, l = real_ir.get((side, "raw")), real_ir.get((side, "lib"))
        if r and l and r["ir"] and l["ir"]:
            n = r["runs"]
            api = "memfault_vcpu_run()" if side == "libmemfault" else "VcpuFd::run()"
            fig("peer", "peer.real.%s.instructions" % side,
                "%s, IO exit, the host's /dev/kvm: user-space instructions per exit" % api,
                "raw loop (%s)" % ("C" if side == "libmemfault" else "Rust libc::ioctl"),
                r["ir"] / n, l["ir"] / n, "instructions/exit",
                ("<= +%d per exit" % RUN_GOAL) if side == "libmemfault" else "- (peer)",
                ((l["ir"] - r["ir"]) / n <= RUN_GOAL) if side == "libmemfault" else None,
                method="callgrind on the host's /dev/kvm", overhead=(l["ir"] - r["ir"]) / n,
                cmd=("valgrind --tool=callgrind --toggle-collect='*bench_loop*' " +
                     ("BUILDDIR/bench/kvm-run-bench raw|lib io 20000" if side == "libmemfault"
                      else "kvm-ioctls-bench real io raw|lib 20000")))
    return scen_rows, peer_versions


def collect(out, machine, date, commit, elapsed, load_start, load_end):
    """The results object of the run whose raw outputs are in OUT."""
    run = Run(out, machine, date)
    _sim(run)
    _bitmap(run)
    claim = _claim(run)
    uffd = _uffd(run)
    _region(run)
    host_skips, nested_skips = _kvm(run)
    scen_rows, peer_versions = _peers(run)
    steps = run.steps
    # the members up to uffd_p50_p99 are those of the first results files
    return {"machine": machine, "date": date, "commit": commit,
            "run_all_seconds": int(elapsed), "steps": steps,
            "load_average_1min": {"start": load_start, "end": load_end},
            "figures": run.figures,
            "peer_scenarios": [dict(v, expected=PEER_EXPECTED[k][1])
                               for k, r in scen_rows.items() for v in r.values()],
            "uffd_p50_p99": [{k: j[k] for k in ("memory", "threads", "lib_p50_us", "lib_p99_us",
                                                 "raw_p50_us", "raw_p99_us", "lib_service_p50_us",
                                                 "lib_service_p99_us") if k in j} for j in uffd],
            "skip_reasons": {s: run.skip_reason(s) for s in STEPS if status(steps, s) != "ran"},
            "host_skips": host_skips,
            "nested_skips": nested_skips,
            "claim": claim,
            "uffd": uffd,
            "peer_versions": peer_versions}
