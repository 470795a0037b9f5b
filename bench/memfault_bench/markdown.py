# SPDX-License-Identifier: MIT
"""doc/performance.md from a results object (collect.collect()).

render() reads nothing but the results object and whether the plot was
drawn: the same results file always gives the same page, byte for byte.
"""
from .collect import PEER_EXPECTED, status

# The page's sections, in order, and the run-all.sh steps behind each.
SECTIONS = [
    ("sim", "Run loop and dispatch on the KVM simulator (instructions, system calls)"),
    ("host", "Run loop on this host's /dev/kvm"),
    ("nested", "Run loop on the pinned Debian 7.2.13 kernels (QEMU TCG, nested KVM)"),
    ("bitmap", "Bitmap operations (wall clock)"),
    ("claim", "Exactly-once claims under contention (wall clock)"),
    ("uffd", "userfaultfd backend (wall clock)"),
    ("region", "A 1 TiB region: memory per page and setup time (simulator; the host's /dev/kvm with its memslot)"),
    ("peer", "Peer: rust-vmm kvm-ioctls (simulator scenarios; the host's /dev/kvm)"),
]
STEP_OF = {"sim": ["run_overhead", "dispatch_overhead"], "host": ["host_kvm"], "nested": ["nested"],
           "bitmap": ["bitmap"], "claim": ["claim"], "uffd": ["uffd"], "region": ["region", "region_kvm"],
           "peer": ["peers"]}

METHOD = """\
Method: **instruction counts** wherever a figure must be stable: natively by single-stepping the measured
window with ptrace (`bench/sstep-count`; it runs the vDSO and counts each system call; perf counters are
not available on this machine) and with callgrind (`--toggle-collect` on the measured loop; it does not run
the vDSO). **Wall clock** only as medians of repeated trials with the baseline interleaved in the same process.
*ratio* is library / baseline in the figure's unit (so below 1 is faster for times and instructions,
above 1 is better for faults/s); where a benchmark pairs its trials, it is the median of the per-pair
ratios, with its distribution-free 95% confidence interval in brackets (uffd: also the quartiles of the
pair ratios). *grade* is PASS or **MISS** against the goal, on the median. The goals are issue 21's
(see *Goals* at the end); rows with goal `-` are shown, not graded. BUILDDIR in a command is the build
directory given to run-all.sh.
"""

GOALS = """\
- **Resolved KVM Userfault fault**: at most 400 instructions per fault over the hand-written loop, counted
  natively (single-stepping, vDSO included), handler timing off (its default). The callgrind count is shown
  next to it.
- **Run loop**: at most 60 instructions per `memfault_vcpu_run()` over the raw loop and exactly one system
  call (KVM_RUN): no system call beyond the raw loop's.
- **Bitmap range operations**: publish (clear), mark missing (set) and find at least 0.5x the bandwidth of
  memset/memchr over a large range (2^24 pages, a 2 MiB bitmap), with the release order the protocol needs
  (one release fence before a range's word stores).
- **userfaultfd**: at least 0.95x the faults/s of a raw loop on the same kernel path, as the median of
  interleaved pair ratios, at 1, 2, 4 and 8 threads.
- **Time on real KVM**: at least 0.98x the speed of the raw loop (time ratio at most 1/0.98 = 1.0204).
"""

NOTES = """\
- The machine is a 2-CPU virtual machine (kvm_pvm) shared with other work; wall-clock figures move from run
  to run (bitmap-bench: `run_ratios` in bench-results.json, 5 runs; uffd: the pair-ratio interval and
  quartiles in each row). Instruction counts do not move.
- Native counts: `bench/sstep-count PROGRAM ARGS` runs PROGRAM with MEMFAULT_BENCH_SSTEP=1; the program
  marks its window with an int3 on each side (`bench_sstep_mark()`, bench-stats.h), which costs the same on
  both sides of a comparison. A step over `syscall` is reported by the kernel as TRAP_BRKPT and counted as
  one instruction and one system call. Single-stepping runs about 15,000 instructions/s here, so the windows
  are small (200 runs; 20 and 120 faults). The dispatch figure is the slope between the two window sizes: the
  first fault's one-time cost (lazy PLT binding of the library's calls, one first-use system call) is the
  intercept (`native_over_raw_once` in bench-results.json). The simulator's KVM_RUN runs in user space and
  is counted on both sides alike; it cancels in the difference.
- Bitmap: find scans whole blocks of words with vector loads (16 words per test with AVX2, 8 otherwise;
  the word loop under ThreadSanitizer). Range publish and the plain-bits range mark store whole words with
  vector stores (same widths), after the release fence that orders the page contents before the whole range
  (publish); each aligned word of a vector store is written as a relaxed word store would be.
- userfaultfd: both sides take the same kernel path in every row (anon and memfd-copy: MISSING +
  UFFDIO_COPY; memfd-minor: MINOR (and MISSING for the memfd's holes) + a write through the alias +
  UFFDIO_CONTINUE). Each fault costs 5-50 us on this machine and runs with more threads than CPUs from 4
  threads on; single pairs spread widely, so only the median and its interval mean something.
- Host /dev/kvm: an exit costs about 10-15 us on this kvm_pvm host and varies between blocks; the ratio is
  the median of the lib/raw ratios of adjacent blocks. A load from a closed guest_memfd does not give a
  memory-fault exit there, so the memory-fault exit is measured on the simulator and in the nested guests.
- Nested (QEMU TCG with nested KVM, the pinned 7.2.13 kernels): each exit and each invalidation flushes the
  emulated TLB, so what the library costs there follows the pages and calls it touches after an exit more
  than its instructions (doc/architecture.md, "The hot path"). A boot's median ratio moves by about +-1%
  from boot to boot, more than its own interval: each kernel is booted three times, one after the other,
  and the figure is the median of the three boots' ratios, each listed.
- 1 TiB with its memslot: KVM_SET_USER_MEMORY_REGION2 of 1 TiB takes hundreds of ms on this host and its
  time moves by as much between calls, so the library's part is measured inside the library's own call
  (`region-kvm-bench` interposes ioctl() and subtracts the memslot ioctls' time). With MISSING, the
  library's part is committing the 32 MiB bitmap (every page of it faulted in and set), which costs page
  faults of this PVM guest; the simulator row (no memslot) is the same work on the same machine.
- Peer: kvm-ioctls follows api.rst literally. It reports a memory fault only for -1 with EFAULT or
  EHWPOISON and exit 39, without the errno, so it loses the fault of a guest_memfd ENOMEM/EIO (a plain
  error without gpa), cannot tell a poisoned page from a conversion request, and returns
  `Unsupported(39)` for the arm64 VNCR fault that KVM_RUN returns with 0. On the host's /dev/kvm each side
  is timed against its own raw KVM_RUN loop in its own process (the raw loops make the same ioctl), the
  two processes alternating round by round; a cross-language run in one process is not attempted.
"""


def num(v):
    """A value as the tables show it: thousands separated, 2-4 significant digits."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return "{:,}".format(v)
    a = abs(v)
    if a >= 1e5:
        return "{:,.0f}".format(v)
    if a >= 100:
        return "%.0f" % v
    if a >= 10:
        return "%.1f" % v
    if a >= 0.1 or a == 0:
        return "%.2f" % v
    return "%.4f" % v


def met(m):
    if m == "inconclusive":
        return "**MISS** (not shown: the 95% CI straddles the goal)"
    return "-" if m is None else ("PASS" if m else "**MISS**")


def ratio_text(f):
    return ("-" if f["ratio"] is None else "%.3f" % f["ratio"]) + f.get("ratio_note", "")


def _header(w, results):
    m = results["machine"]
    load = results["load_average_1min"]
    busy = max(float(x) if x.replace(".", "", 1).isdigit() else 0
               for x in (load["start"], load["end"])) > 0.5 * int(m["nproc"])
    w("<!-- Generated by bench/run-all.sh: do not edit by hand. -->")
    w("# libmemfault performance")
    w("")
    w("Every figure is measured against its baseline in the same run of `bench/run-all.sh`.")
    w("Regenerate this page (and `BUILDDIR/bench-results.json`, `doc/performance-threads.png`) with:")
    w("")
    w("```sh")
    w("bench/run-all.sh [BUILDDIR]")
    w("```")
    w("")
    w("| | |")
    w("|---|---|")
    w("| date | %s |" % results["date"])
    w("| machine | %s CPUs, %s, Linux %s |" % (m["nproc"], m["cpu"], m["kernel"]))
    w("| commit | %s |" % results["commit"])
    w("| run-all.sh wall time | %s s |" % results["run_all_seconds"])
    w("| load average (1 min), start / end | %s / %s%s |" % (
        load["start"], load["end"],
        " (other work shared the %s CPUs: wall-clock figures are less reliable)" % m["nproc"] if busy else ""))
    w("")
    w(METHOD)


def _figures(w, fs, missed):
    """The section's table of figures; the missed ones are added to MISSED."""
    w("| figure | baseline | library | ratio | goal | grade | command |")
    w("|---|---|---:|---:|---|---|---|")
    for f in fs:
        base = f["baseline"] if f["baseline_value"] is None else \
            "%s: %s" % (f["baseline"], num(f["baseline_value"]))
        w("| %s (%s) | %s | %s | %s | %s | %s | %s |" % (
            f["figure"], f["unit"], base, num(f["library_value"]), ratio_text(f),
            f["goal"], met(f["met"]), ("`%s`" % f["cmd"]) if f.get("cmd") else "-"))
        if f["met"] is False or f["met"] == "inconclusive":
            missed.append(f)
    w("")
    methods = sorted({f["method"] for f in fs if f["method"]})
    if methods:
        w("Measured with: " + "; ".join(methods) + ".")
        w("")


def _uffd_latency(w, uffd):
    w("Latency per fault, as seen by the faulting thread (all repetitions), and the library's own service")
    w("histogram (reading the fault to installing the page, last repetition):")
    w("")
    w("| memory | threads | lib p50 us | lib p99 us | raw p50 us | raw p99 us | lib service p50 us | lib service p99 us |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    for j in uffd:
        w("| %s | %d | %s | %s | %s | %s | %s | %s |" % (
            j["memory"], j["threads"], num(j["lib_p50_us"]), num(j["lib_p99_us"]), num(j["raw_p50_us"]),
            num(j["raw_p99_us"]), num(j.get("lib_service_p50_us")), num(j.get("lib_service_p99_us"))))
    w("")


def _claim_switches(w, claim):
    once = all(j["lib_exactly_once"] and j["raw_exactly_once"] for j in claim)
    w("Every page was fetched exactly once: %s. Voluntary context switches per page (a waiter that"
      % ("yes, on both sides, in every trial" if once else "**NO**, see bench-results.json"))
    w("slept in the library's futex, or a spinner's yield that let another thread run):")
    w("")
    w("| threads | library | raw atomics |")
    w("|---:|---:|---:|")
    for j in claim:
        w("| %d | %.4f | %.4f |" % (j["threads"], j["lib_blocking_switches_per_page"],
                                    j["raw_blocking_switches_per_page"]))
    w("")


def _scenario_result(j):
    """What one side returned in a scenario, and whether that was correct."""
    if not j:
        return "-", "-"
    what = j["kind"]
    if j.get("exit"):
        what += " " + j["exit"]
    if j.get("error") == "unreported":
        what += ", errno not reported"
    elif j.get("error"):
        what += " " + j["error"]
    if j.get("origin"):
        what += " (origin %s)" % {1: "ERRNO", 2: "RET0", 3: "OTHER_ERRNO"}.get(j["origin"], "?")
    return "`%s` -> %s" % (j["api"].split(" = ", 1)[1], what), ("yes" if j["correct"] else "**no**")


def _peer_scenarios(w, results):
    rows = {}
    for j in results["peer_scenarios"]:
        rows.setdefault(j["scenario"], {})[j["side"]] = j
    if not rows:
        return
    w("kvm-ioctls from Debian sid (%s), built offline by `bench/peers/kvm-ioctls/build.sh`."
      % results["peer_versions"])
    w("Each scenario runs in a fresh process under `LD_PRELOAD=libkvmsim.so` (x86-64 model at 7.2,")
    w("vncr-ret0: arm64 model); the C side is `peer-scenarios`, the Rust side `kvm-ioctls-bench`.")
    w("")
    w("| scenario | what KVM_RUN did | correct result | libmemfault | ok | kvm-ioctls | ok |")
    w("|---|---|---|---|---|---|---|")
    for s, (exp, did) in PEER_EXPECTED.items():
        r = rows.get(s)
        if not r:
            continue
        want = " ".join([exp["kind"]] + [v for k, v in exp.items() if k != "kind"])
        a, ao = _scenario_result(r.get("libmemfault"))
        b, bo = _scenario_result(r.get("kvm-ioctls"))
        w("| %s | %s | %s | %s | %s | %s | %s |" % (s, did, want, a, ao, b, bo))
    w("")


def _section(w, results, sec, title, plotted, missed):
    steps, claim, uffd = results["steps"], results["claim"], results["uffd"]
    w("## %s" % title)
    w("")
    for s in STEP_OF[sec]:
        st = status(steps, s)
        if st != "ran":
            reason = results["skip_reasons"].get(s, "")
            w("*%s: %s%s.*" % (s, st, (" - " + reason.replace("|", "/")) if reason else ""))
            w("")
    if sec == "host" and results["host_skips"]:
        for j in results["host_skips"]:
            w("*%s exit: not measured - %s.*" % (j.get("exit", "?"), j["skip"]))
        w("")
    # results files before the KVM Userfault rows have no nested_skips
    if sec == "nested" and results.get("nested_skips"):
        for j in results["nested_skips"]:
            what = "KVM Userfault round trip" if j.get("exit") == "uf" else "%s exit" % j.get("exit", "?")
            w("*%s (%s): not measured - %s.*" % (
                what, ", ".join(x for x in (j.get("kernel_dir"), j.get("arch")) if x), j["skip"]))
        w("")
    fs = [f for f in results["figures"] if f["section"] == sec]
    if fs:
        _figures(w, fs, missed)
    if sec == "uffd" and uffd:
        _uffd_latency(w, uffd)
    if sec == "claim" and claim and "lib_blocking_switches_per_page" in claim[0]:
        _claim_switches(w, claim)
    if sec == "claim" and (claim or uffd):
        w("Thread scaling of claims and of userfaultfd faults: " +
          ("![thread scaling](performance-threads.png)" if plotted else "(no plot: neither matplotlib nor gnuplot)"))
        w("")
    if sec == "peer":
        _peer_scenarios(w, results)


def render(results, plotted):
    """The page's text, and the figures that missed their goal."""
    md = []
    w = md.append
    missed = []
    _header(w, results)
    for sec, title in SECTIONS:
        _section(w, results, sec, title, plotted, missed)
    w("## Goals missed (or not shown to be met)")
    w("")
    for f in missed:
        w("- %s%s: %s %s vs baseline %s (ratio %s), goal %s." % (
            "(inconclusive) " if f["met"] == "inconclusive" else "",
            f["figure"], num(f["library_value"]), f["unit"], num(f["baseline_value"]),
            ratio_text(f), f["goal"]))
    if not missed:
        w("None.")
    w("")
    w("## Goals (issue 21)")
    w("")
    w(GOALS)
    w("## Notes")
    w("")
    w(NOTES)
    w("## Time taken")
    w("")
    w("| step | seconds | result |")
    w("|---|---:|---|")
    for n, d in results["steps"].items():
        w("| %s | %d | %s |" % (n, d["seconds"], status(results["steps"], n)))
    w("| **total** | %s | |" % results["run_all_seconds"])
    w("")
    return "\n".join(md), missed
