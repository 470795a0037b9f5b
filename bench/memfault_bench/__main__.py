# SPDX-License-Identifier: MIT
"""python3 -m memfault_bench collect|render|report ... (bench/ on PYTHONPATH)

  collect RUN_DIR RESULTS --nproc N --cpu CPU --kernel RELEASE --date DATE
          --commit COMMIT --elapsed SECONDS --load-start L --load-end L
      the results object of the run whose raw outputs are in RUN_DIR, to
      the file RESULTS
  render RESULTS DOCDIR
      DOCDIR/performance.md and DOCDIR/performance-threads.png from the
      results file alone: the same file always gives the same page
  report RUN_DIR RESULTS DOCDIR (collect's options)
      both, as bench/run-all.sh does
"""
import argparse
import json
import os
import sys

from .collect import collect
from .markdown import render
from .plot import plot


def write_results(args):
    machine = {"nproc": args.nproc, "cpu": args.cpu, "kernel": args.kernel}
    results = collect(args.run_dir, machine, args.date, args.commit, args.elapsed,
                      args.load_start, args.load_end)
    with open(args.results, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")


def write_page(args):
    with open(args.results) as f:
        results = json.load(f)
    os.makedirs(args.docdir, exist_ok=True)
    plotted = plot(results, os.path.join(args.docdir, "performance-threads.png"))
    text, missed = render(results, plotted)
    with open(os.path.join(args.docdir, "performance.md"), "w") as f:
        f.write(text)
    print("figures: %d, goals missed: %d, plot: %s" % (
        len(results["figures"]), len(missed), "yes" if plotted else "no"))


def main(argv):
    p = argparse.ArgumentParser(prog="python3 -m memfault_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("collect", "report"):
        c = sub.add_parser(name)
        c.add_argument("run_dir")
        c.add_argument("results")
        if name == "report":
            c.add_argument("docdir")
        c.add_argument("--nproc", type=int, required=True)
        c.add_argument("--cpu", required=True)
        c.add_argument("--kernel", required=True)
        c.add_argument("--date", required=True)
        c.add_argument("--commit", required=True)
        c.add_argument("--elapsed", type=int, required=True)
        c.add_argument("--load-start", required=True)
        c.add_argument("--load-end", required=True)
    r = sub.add_parser("render")
    r.add_argument("results")
    r.add_argument("docdir")
    args = p.parse_args(argv)
    if args.command in ("collect", "report"):
        write_results(args)
    if args.command in ("render", "report"):
        write_page(args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
