#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""check-doc-fresh.py DOCDIR: doc/performance.md is exactly what its
results file (DOCDIR/performance-results.json, written by bench/run-all.sh)
renders to, so that nobody edits a figure, a goal or a grade by hand.
Exit 0 when equal, 1 with a unified diff when not, 77 when the results file
is missing (a page generated before results files were kept)."""
import difflib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from memfault_bench.markdown import render  # noqa: E402


def main(docdir):
    results_path = os.path.join(docdir, "performance-results.json")
    page_path = os.path.join(docdir, "performance.md")
    if not os.path.exists(results_path):
        print("SKIP: no %s" % results_path)
        return 77
    with open(results_path) as f:
        results = json.load(f)
    with open(page_path) as f:
        page = f.read()
    plotted = os.path.exists(os.path.join(docdir, "performance-threads.png"))
    text, _missed = render(results, plotted)
    if text == page:
        print("ok: %s is what %s renders to (%d figures)" % (
            page_path, results_path, len(results["figures"])))
        return 0
    sys.stdout.writelines(difflib.unified_diff(
        page.splitlines(True), text.splitlines(True),
        "performance.md (in the tree)", "rendered from performance-results.json"))
    print("FAIL: doc/performance.md differs from what its results file renders to: "
          "regenerate it with bench/run-all.sh, never by hand")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "doc"))
