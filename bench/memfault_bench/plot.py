# SPDX-License-Identifier: MIT
"""The thread-scaling plot of a results object: claims and userfaultfd
faults/s at 1, 2, 4 and 8 threads.

Drawn with matplotlib (Debian: python3-matplotlib, which
tools/install-deps.sh installs), else with gnuplot; without either there is
no plot, and the page says so. Nothing is installed here.
"""
import os
import shutil
import subprocess
import tempfile


def _axes(ax, title, xlabel, ylabel, legend_size):
    """A panel: 1, 2, 4 and 8 threads on a log scale, from 0 up."""
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xscale("log", base=2)
    ax.set_xticks([1, 2, 4, 8], ["1", "2", "4", "8"])
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)


def _matplotlib(results, png):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    claim, uffd, m = results["claim"], results["uffd"], results["machine"]
    fig_, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    if claim:
        t = [j["threads"] for j in claim]
        ax.plot(t, [j["lib_ns_per_page"] for j in claim], "o-", label="libmemfault claim+publish")
        ax.plot(t, [j["raw_ns_per_page"] for j in claim], "s--", label="raw atomics (spin/yield)")
    _axes(ax, "Exactly-once claims: %d pages, every thread claims every page" % (claim[0]["pages"] if claim else 0),
          "threads", "ns per page (median)", 8)
    ax = axes[1]
    for mem in sorted({j["memory"] for j in uffd}):
        js = [j for j in uffd if j["memory"] == mem]
        t = [j["threads"] for j in js]
        p = ax.plot(t, [j["lib_faults_per_s"] / 1e3 for j in js], "o-", label="libmemfault, %s" % mem)
        ax.plot(t, [j["raw_faults_per_s"] / 1e3 for j in js], "s--", color=p[0].get_color(),
                label="raw loop, %s" % mem)
    _axes(ax, "userfaultfd faults/s (one service thread)" if uffd else "userfaultfd: not run",
          "faulting threads", "thousand faults/s (median)", 7)
    fig_.suptitle("libmemfault thread scaling, %s, %d CPUs, %s" % (m["cpu"], int(m["nproc"]), results["date"][:10]),
                  fontsize=10)
    fig_.tight_layout()
    fig_.savefig(png, dpi=110)
    return True


def _gnuplot(results, png):
    if not shutil.which("gnuplot"):
        return False
    claim, uffd = results["claim"], results["uffd"]
    with tempfile.TemporaryDirectory() as tmp:
        dat = os.path.join(tmp, "threads.dat")
        with open(dat, "w") as f:
            f.write("# threads claim_lib claim_raw\n")
            for j in claim:
                f.write("%d %f %f\n" % (j["threads"], j["lib_ns_per_page"], j["raw_ns_per_page"]))
            f.write("\n\n# threads lib raw (anon)\n")
            for j in uffd:
                if j["memory"] == "anon":
                    f.write("%d %f %f\n" % (j["threads"], j["lib_faults_per_s"] / 1e3, j["raw_faults_per_s"] / 1e3))
        gp = os.path.join(tmp, "threads.gp")
        with open(gp, "w") as f:
            f.write('set terminal pngcairo size 1100,420\nset output "%s"\nset multiplot layout 1,2\n'
                    'set logscale x 2\nset xlabel "threads"\nset ylabel "ns per page"\n'
                    'plot "%s" index 0 using 1:2 with linespoints title "libmemfault", '
                    '"" index 0 using 1:3 with linespoints title "raw atomics"\n'
                    'set ylabel "thousand faults/s (anon)"\n'
                    'plot "%s" index 1 using 1:2 with linespoints title "libmemfault", '
                    '"" index 1 using 1:3 with linespoints title "raw loop"\nunset multiplot\n' % (png, dat, dat))
        return subprocess.run(["gnuplot", gp], check=False).returncode == 0


def plot(results, png):
    """Draw PNG from RESULTS (collect.collect()); True if it was drawn."""
    if not (results["claim"] or results["uffd"]):
        return False
    return _matplotlib(results, png) or _gnuplot(results, png)
