#!/usr/bin/env python3
"""Issue 7's table from one gpu-check run: caption -> image on the GPU, ours (text2img bench
--device cuda, bench-cuda-*.jsonl) against PyTorch (bench-peers-cuda.jsonl) per batch: median ms,
images/s, and the ratios PyTorch eager / ours and PyTorch's best / ours (> 1: ours is faster).
Usage: python3 scripts/gpu_summary.py OUT_DIR
       python3 scripts/gpu_summary.py --ncu NCU.csv   (ncu --csv --page raw with
       gpu__time_duration.sum, launch__grid_size, launch__registers_per_thread: device time per
       kernel and grid, summed over every launch ncu saw, largest first)
"""

from __future__ import annotations

import collections
import csv
import glob
import json
import os
import sys


def json_lines(path):
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass
    except OSError:
        pass
    return rows


def ours(out):
    """{(label, batch): row}, label like 'graph f32 weights, bf16', from bench-cuda-b*-DTYPE.jsonl."""
    found = {}
    for path in sorted(glob.glob(os.path.join(out, "bench-cuda-b*.jsonl"))):
        weights = os.path.basename(path).rsplit("-", 1)[-1].split(".")[0]
        for r in json_lines(path):
            kind = "graph" if "(graph)" in r.get("device", "") else "eager"
            # weights stored in `weights` (the file name), multiplied in r["precision"]
            label = f"{kind} {weights} weights, {r.get('precision', 'f32')}"
            found[(label, int(r["batch"]))] = r
    return found


def peers(out):
    for obj in reversed(json_lines(os.path.join(out, "bench-peers-cuda.jsonl"))):
        if "rows" in obj:
            return [r for r in obj["rows"] if "median_ms" in r]
    return []


def ncu_table(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        rows = [r for r in csv.reader(f) if len(r) >= 5]
    if len(rows) < 3 or "Kernel Name" not in rows[0]:
        print(f"gpu_summary: no ncu rows in {path}")
        return
    h = rows[0]
    ki, ti = h.index("Kernel Name"), h.index("gpu__time_duration.sum")
    gi, ri = h.index("launch__grid_size"), h.index("launch__registers_per_thread")
    unit = rows[1][ti]
    agg = collections.OrderedDict()
    for r in rows[2:]:
        try:
            t = float(r[ti].replace(",", ""))
        except ValueError:
            continue
        a = agg.setdefault((r[ki].split("(")[0], r[gi], r[ri]), [0, 0.0])
        a[0] += 1
        a[1] += t
    total = sum(v[1] for v in agg.values())
    print(f"device time per kernel and grid over every launch ncu saw ({unit}; total {total:.0f})")
    print(f"{'kernel':34} {'grid':>8} {'regs':>5} {'launches':>8} {'total':>12} {'per launch':>11} {'share':>6}")
    for (name, grid, regs), (n, t) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
        print(f"{name[:34]:34} {grid:>8} {regs:>5} {n:8d} {t:12.0f} {t / n:11.0f} {100 * t / total:5.1f}%")


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--ncu":
        ncu_table(sys.argv[2])
        return
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/out"
    mine, theirs = ours(out), peers(out)
    batches = sorted({b for _, b in mine} | {r["batch"] for r in theirs})
    if not batches:
        print("gpu_summary: no benchmark rows found in", out)
        return
    print("caption -> image on the GPU (median ms per call; ratio > 1: ours faster)")
    hdr = f"{'batch':>5} {'runtime':40} {'median ms':>10} {'images/s':>11} {'eager/this':>10} {'best/this':>9}"
    print(hdr)
    print("-" * len(hdr))
    for b in batches:
        th = [r for r in theirs if r["batch"] == b]
        eager = next((r["median_ms"] for r in th if r["mode"] == "eager-f32"), None)
        best = min(th, key=lambda r: r["median_ms"], default=None)
        lines = [(f"pytorch {r['mode']}", r["median_ms"]) for r in th]
        lines += [(f"text2img {k}", r["median_ms"]) for (k, bb), r in sorted(mine.items()) if bb == b]
        for label, ms in lines:
            e = f"{eager / ms:10.2f}" if eager else f"{'-':>10}"
            bs = f"{best['median_ms'] / ms:9.2f}" if best else f"{'-':>9}"
            print(f"{b:5d} {label:40} {ms:10.4f} {b / (ms / 1e3):11.1f} {e} {bs}")
        if best:
            print(f"{'':5} (PyTorch's best at batch {b}: {best['mode']})")


if __name__ == "__main__":
    main()
