#!/usr/bin/env python3
"""Builds the before/after table from a perf/compare.sh output folder.

    python3 perf/compare_table.py OUTDIR [OUTDIR...]

For every table row whose first cell starts with "stt" (and, for the scaling
workload, every row), it takes from each round's NN-before.txt and
NN-after.txt the throughput ("messages/s (median)") or the latency (p50 and
p99, the first figure of each cell), and prints: the median before, the median
after, their ratio, and the median and range of the ratios taken round by
round (before and after of one round ran back to back, so they share the
machine's noise). For throughput a ratio above 1 is faster after; for
latency, below 1 is faster after.
"""

import re
import statistics
import sys
from pathlib import Path


def cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def first_number(cell):
    m = re.match(r"[-+]?[0-9]*\.?[0-9]+", cell.replace(",", ""))
    return float(m.group(0)) if m else None


def rows(text, workload):
    """(row label, metric name, value) for every row of interest."""
    header = None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None if not line.strip() else header
            continue
        c = cells(line)
        if c[0] in ("contender", "sessions"):
            header = c
            continue
        if header is None or set(line) <= set("|- "):
            continue
        if not (c[0].startswith("stt") or workload == "scaling"):
            continue
        label = c[0]
        if "message" in header:
            label += ", " + c[header.index("message")]
        if workload == "scaling":
            label = f"stt, {c[0]} sessions"
        for name in ("messages/s (median)", "p50 µs", "p99 µs"):
            if name in header:
                v = first_number(c[header.index(name)])
                if v is not None:
                    yield label, name, v


def series(folder):
    folder = Path(folder)
    meta = (folder / "meta.txt").read_text()
    workload = re.search(r"^workload: (\S+)", meta, re.M).group(1)
    data = {}
    for f in sorted(folder.glob("[0-9][0-9]-before.txt")):
        rnd = f.name[:2]
        after = folder / f"{rnd}-after.txt"
        if not after.exists():
            continue
        for side, path in (("before", f), ("after", after)):
            for label, name, v in rows(path.read_text(), workload):
                data.setdefault((label, name), {}).setdefault(rnd, {})[side] = v
    return workload, data


def fmt(v):
    return f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def main(folders):
    print("| workload | contender | metric | before (median) | after (median) | after / before | per round (median, range) | rounds |")
    print("|---|---|---|---|---|---|---|---|")
    for folder in folders:
        workload, data = series(folder)
        for (label, name), by_round in data.items():
            pairs = [(r["before"], r["after"]) for r in by_round.values() if "before" in r and "after" in r]
            if not pairs:
                continue
            b = statistics.median(p[0] for p in pairs)
            a = statistics.median(p[1] for p in pairs)
            ratios = [p[1] / p[0] for p in pairs if p[0] > 0]
            per = (
                f"{statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f})"
                if ratios
                else "–"
            )
            ratio = f"{a / b:.2f}×" if b > 0 else "–"
            print(f"| {workload} | {label} | {name} | {fmt(b)} | {fmt(a)} | {ratio} | {per} | {len(pairs)} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1:])
