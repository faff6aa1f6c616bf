#!/usr/bin/env python3
"""Peer benchmark for text2img: PyTorch eager and onnxruntime on the CPU, same synthetic weights
(docs/WEIGHTS.md), in one process.

Measures
  g_forward         G(z, embedding) -> image, at each --batch
  caption_to_image  caption string -> one-hot -> encoder -> G -> image (z from the Philox noise),
                    at batch 1 (--c2i-batch to change)
and reports the median and p10/p90 in ms and images/s. Every runtime is measured --rounds times
(3 by default), the runtimes alternating, and the table gives the median over rounds and each
round's own ratio to onnxruntime (this VM's speed drifts by 10-20 % within minutes, so one
measurement per runtime compares two moments as much as two runtimes). With --ours PATH it also runs
`PATH bench --model CONFIG --batch-size B,.. --threads T --reps N --format jsonl` and prints the
ratios ours/peer.

Usage (from the repository root, after `bash scripts/setup_venv.sh`):
    .venv/bin/python scripts/bench_peers.py --config reed-cub --threads 2 --batch 1,64 \
        --reps 30,5 --warmup 3 [--format table|jsonl] [--ours target/release/text2img]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402

CAPTION = "this bird is red with a black crown and a short beak."


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def measure(fn, reps: int, warmup: int) -> dict:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts = np.array(ts)
    return {
        "median_ms": float(np.median(ts)),
        "p10_ms": float(np.percentile(ts, 10)),
        "p90_ms": float(np.percentile(ts, 90)),
        "reps": reps,
    }


def parse_list(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def run_ours(path, cfg_name, batches, threads, reps, timeout):
    """Runs the text2img bench command; returns a list of dict rows (possibly empty)."""
    cmd = [
        path, "bench", "--model", cfg_name, "--batch-size", ",".join(map(str, batches)),
        "--threads", str(threads), "--reps", str(reps), "--format", "jsonl",
    ]
    print(f"# running: {' '.join(cmd)}", file=sys.stderr)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"# skipping text2img rows: {e}", file=sys.stderr)
        return []
    rows = []
    for line in p.stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(r, dict):
            continue
        b = r.get("batch", r.get("batch_size"))
        try:
            r["batch"] = int(b)
        except (TypeError, ValueError):
            continue
        rows.append(r)
    if p.returncode != 0 or not rows:
        tail = (p.stderr or p.stdout or "").strip().splitlines()[-5:]
        print(f"# text2img bench exited {p.returncode} with {len(rows)} usable rows; "
              f"last output: {' | '.join(tail)}", file=sys.stderr)
    return rows


def aggregate(per_round):
    """Rows of several rounds -> (peer rows, our rows): per (runtime, what, batch), the median of
    the rounds' medians (and p10/p90), the rounds' medians, and each round's ratio to the peers."""
    groups = {}
    for rows in per_round:
        peers = {(r["what"], r["batch"], r["runtime"]): r for r in rows}
        for r in rows:
            for name, peer in (("pytorch", "pytorch"), ("ort", "onnxruntime")):
                o = peers.get((r["what"], r["batch"], peer))
                r[f"round_vs_{name}"] = r["median_ms"] / o["median_ms"] if o else None
            groups.setdefault((r["runtime"], r["what"], r["batch"]), []).append(r)
    peers, ours = [], []
    for (runtime, _, batch), rs in groups.items():
        out = dict(rs[0])
        out.pop("raw", None)
        for k in ("median_ms", "p10_ms", "p90_ms"):
            vals = [r[k] for r in rs if r.get(k) is not None]
            out[k] = float(np.median(vals)) if vals else None
        out["images_per_s"] = batch / (out["median_ms"] / 1e3)
        out["round_medians_ms"] = [r["median_ms"] for r in rs]
        for name in ("pytorch", "ort"):
            vals = [r[f"round_vs_{name}"] for r in rs if r.get(f"round_vs_{name}") is not None]
            out[f"round_vs_{name}"] = vals
        (ours if runtime == "text2img" else peers).append(out)
    return peers, ours


def _num(r, k):
    v = r.get(k)
    try:
        return float(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="reed-cub")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", default="1,64", help="comma-separated G batch sizes")
    p.add_argument("--c2i-batch", default="1", help="batch sizes for caption_to_image")
    p.add_argument("--reps", default="20",
                   help="timed repetitions: one number, or one per --batch entry (e.g. 30,5)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3,
                   help="measure every runtime this many times, alternating; report the median")
    p.add_argument("--format", choices=("table", "jsonl"), default="table")
    p.add_argument("--ours", help="path to the text2img binary (optional)")
    p.add_argument("--ours-reps", type=int, help="--reps passed to text2img (default: max of --reps)")
    p.add_argument("--ours-timeout", type=float, default=1800)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--no-prewarm", action="store_true",
                   help="skip the largest-batch forward before timing (cold allocator state)")
    args = p.parse_args(argv)

    import torch
    import onnxruntime as ort

    batches = parse_list(args.batch)
    reps_list = parse_list(args.reps)
    if len(reps_list) == 1:
        reps_list = reps_list * len(batches)
    if len(reps_list) != len(batches):
        sys.exit("--reps needs one value or one per --batch entry")
    reps_of = dict(zip(batches, reps_list))
    c2i_batches = parse_list(args.c2i_batch)

    load0 = os.getloadavg()
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass

    cfg = ref.get_config(args.config)
    model = ref.build(cfg, ("encoder", "generator"))  # synthetic weights, eval mode
    nz = cfg["generator"]["nz"]

    tmp = tempfile.TemporaryDirectory(prefix="text2img-onnx-")
    ref.export_onnx(args.config, tmp.name)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess_g = ort.InferenceSession(os.path.join(tmp.name, "generator.onnx"), so,
                                  providers=["CPUExecutionProvider"])
    sess_c2i = ort.InferenceSession(os.path.join(tmp.name, "caption_to_image.onnx"), so,
                                    providers=["CPUExecutionProvider"])

    base = {"model": cfg["name"], "threads": args.threads}

    def add(runtime, what, batch, m):
        r = dict(base, runtime=runtime, what=what, batch=batch, **m)
        r["images_per_s"] = batch / (r["median_ms"] / 1e3)
        rows.append(r)
        if args.format == "table":
            print(f"# round {rnd + 1}: {what:16s} {runtime:12s} batch {batch:3d}: median "
                  f"{r['median_ms']:9.3f} ms", file=sys.stderr)

    # --- G forward -------------------------------------------------------------------------
    with torch.inference_mode():
        emb1 = model.encoder(torch.from_numpy(ref.onehot([CAPTION], cfg)))
    if not args.no_prewarm:
        # One G forward at the largest batch before any timing, in both runtimes. PyTorch eager
        # allocates its intermediates with glibc malloc, whose mmap threshold is dynamic: until
        # a large block has been freed, every buffer over 128 KiB is a fresh mmap (page faults on
        # each call), which makes a cold batch-1 G forward ~1.8x slower on this machine. A
        # long-running process is in the warm state; --no-prewarm shows the cold one.
        Bmax = max(batches + c2i_batches)
        zb = ref.noise(args.seed, range(Bmax), nz)
        eb = emb1.expand(Bmax, -1).contiguous().numpy()
        with torch.inference_mode():
            model.generator(torch.from_numpy(zb), torch.from_numpy(eb))
        sess_g.run(None, {"z": zb, "embedding": eb})
    # Each round measures every runtime once, ours last; with several rounds the table gives
    # the median over rounds and each round's ratio, so that a VM whose speed drifts within a
    # minute does not decide a comparison made between two moments.
    per_round = []
    for rnd in range(args.rounds):
        rows = []
        for B in batches:
            z = ref.noise(args.seed, range(B), nz)
            emb = emb1.expand(B, -1).contiguous().numpy()
            zt, et = torch.from_numpy(z), torch.from_numpy(emb)
            with torch.inference_mode():
                a = model.generator(zt, et).numpy()

                def g_torch():
                    return model.generator(zt, et)

                add("pytorch", "g_forward", B, measure(g_torch, reps_of[B], args.warmup))
            feeds = {"z": z, "embedding": emb}
            b = sess_g.run(None, feeds)[0]
            diff = float(np.abs(a - b).max())
            assert diff < 1e-3, f"onnxruntime and PyTorch disagree at batch {B}: {diff}"
            add("onnxruntime", "g_forward", B, measure(lambda: sess_g.run(None, feeds), reps_of[B],
                                                        args.warmup))

        # --- caption -> image (one-hot + Philox noise + encoder + G) ---------------------------
        for B in c2i_batches:
            caps = [CAPTION] * B
            reps = reps_of.get(B, max(reps_list))

            def c2i_torch():
                oh = torch.from_numpy(ref.onehot(caps, cfg))
                z = torch.from_numpy(ref.noise(args.seed, range(B), nz))
                with torch.inference_mode():
                    return model.generator(z, model.encoder(oh)).numpy()

            def c2i_ort():
                oh = ref.onehot(caps, cfg)
                z = ref.noise(args.seed, range(B), nz)
                return sess_c2i.run(None, {"onehot": oh, "z": z})[0]

            diff = float(np.abs(c2i_torch() - c2i_ort()).max())
            assert diff < 1e-3, f"caption_to_image: onnxruntime and PyTorch disagree: {diff}"
            add("pytorch", "caption_to_image", B, measure(c2i_torch, reps, args.warmup))
            add("onnxruntime", "caption_to_image", B, measure(c2i_ort, reps, args.warmup))

        # --- ours ------------------------------------------------------------------------------
        ours = []
        if args.ours:
            ours_reps = args.ours_reps or max(reps_list)
            for r in run_ours(args.ours, cfg["name"], batches, args.threads, ours_reps,
                              args.ours_timeout):
                B = r["batch"]
                med, gmed = _num(r, "median_ms"), _num(r, "g_median_ms")
                if gmed is not None:
                    ours.append(dict(base, runtime="text2img", what="g_forward", batch=B,
                                     median_ms=gmed, p10_ms=_num(r, "g_p10_ms"),
                                     p90_ms=_num(r, "g_p90_ms"), images_per_s=B / (gmed / 1e3),
                                     raw=r))
                if med is not None:
                    ips = _num(r, "images_per_s") or B / (med / 1e3)
                    ours.append(dict(base, runtime="text2img", what="caption_to_image", batch=B,
                                     median_ms=med, p10_ms=_num(r, "p10_ms"), p90_ms=_num(r, "p90_ms"),
                                     images_per_s=ips, raw=r))
        per_round.append(rows + ours)
    rows, ours = aggregate(per_round)
    all_rows = rows + ours

    peer = {(r["what"], r["batch"], r["runtime"]): r for r in rows}
    for r in all_rows:
        t = peer.get((r["what"], r["batch"], "pytorch"))
        o = peer.get((r["what"], r["batch"], "onnxruntime"))
        r["vs_pytorch"] = r["median_ms"] / t["median_ms"] if t else None
        r["vs_onnxruntime"] = r["median_ms"] / o["median_ms"] if o else None

    if args.format == "jsonl":
        for r in all_rows:
            print(json.dumps(r))
        return

    print(f"# {cfg['name']}, {args.threads} threads, {cpu_name()}, "
          f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; torch {torch.__version__} "
          f"(intra {torch.get_num_threads()}), onnxruntime {ort.__version__}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '-')}; "
          f"load average before/after {load0[0]:.2f}/{os.getloadavg()[0]:.2f}; "
          f"{'no prewarm' if args.no_prewarm else 'prewarmed at the largest batch'}")
    print(f"# ratio = this row's median / the peer's median at the same batch (<1: faster); "
          f"{args.rounds} round(s), medians over rounds; 'rounds /ort': each round's own ratio")
    hdr = (f"{'what':17s} {'batch':>5s} {'runtime':12s} {'median ms':>10s} {'p10 ms':>10s} "
           f"{'p90 ms':>10s} {'images/s':>9s} {'reps':>5s} {'/pytorch':>9s} {'/ort':>7s}  rounds /ort")
    print(hdr)
    print("-" * len(hdr))
    fmt = lambda v, f: (format(v, f) if v is not None else "-")  # noqa: E731
    for r in sorted(all_rows, key=lambda r: (r["what"] != "g_forward", r["batch"])):
        print(f"{r['what']:17s} {r['batch']:5d} {r['runtime']:12s} {fmt(r['median_ms'], '10.3f')} "
              f"{fmt(r.get('p10_ms'), '10.3f'):>10s} {fmt(r.get('p90_ms'), '10.3f'):>10s} "
              f"{r['images_per_s']:9.1f} {str(r.get('reps', '-')):>5s} "
              f"{fmt(r['vs_pytorch'], '9.3f'):>9s} {fmt(r['vs_onnxruntime'], '7.3f'):>7s}  "
              f"{' '.join(format(v, '.3f') for v in r.get('round_vs_ort', [])) if r['runtime'] == 'text2img' else ''}")


if __name__ == "__main__":
    main()
