# SPDX-License-Identifier: MIT
"""The report of bench/run-all.sh: figures, Markdown page and plot.

collect.py turns the raw outputs of a run (BUILDDIR/bench-run/) into a
results object, which run-all.sh writes to BUILDDIR/bench-results.json;
markdown.py and plot.py make doc/performance.md and
doc/performance-threads.png from that object alone. Standard library only,
and matplotlib where Debian's python3-matplotlib is installed (else the
plot is made with gnuplot, or left out). `python3 -m memfault_bench --help`
(with bench/ on PYTHONPATH) says how to run it.
"""
