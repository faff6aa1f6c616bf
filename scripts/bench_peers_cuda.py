#!/usr/bin/env python3
"""PyTorch on the GPU, the peer of `text2img bench --device cuda` (issue 7): caption -> image on
the same synthetic reed-cub weights (docs/WEIGHTS.md, scripts/reference.py), in one process.

What one call measures (the same work as text2img's replay): the captions' one-hot rows already
on the device, the noise drawn on the device, encoder then G, then a device synchronise; wall
time per call on the host (time.perf_counter), median and p10/p90. Modes, each at every batch:
  eager-f32         fp32 everywhere, TF32 off (the numerics text2img's f32 path has)
  eager-tf32        TF32 matmuls and convolutions (PyTorch's fast fp32)
  eager-bf16-cl     autocast to bf16, G in channels-last
  graph-*           the same three captured once as a CUDA graph (torch.cuda.graph) and replayed
  compile           torch.compile(mode="max-autotune-no-cudagraphs") then CUDA graph, when
                    --compile is given (slow to compile; skipped past --budget seconds)
Each mode is tried on its own: one that fails prints a row saying why and the rest go on. The
last line is a JSON object with every row (what scripts/gpu-check.sh parses).

Usage (on a machine with a CUDA GPU and torch):
    python3 scripts/bench_peers_cuda.py --config reed-cub --batch 1,64,256 --reps 1000,50,50
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402

CAPTION = "this bird is red with a black crown and a short beak {}"


def parse_list(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def timed(fn, reps: int, warmup: int, sync) -> dict:
    for _ in range(warmup):
        fn()
    sync()
    ts = np.empty(reps)
    for i in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        ts[i] = (time.perf_counter() - t0) * 1e3
    return {
        "median_ms": float(np.median(ts)),
        "p10_ms": float(np.percentile(ts, 10)),
        "p90_ms": float(np.percentile(ts, 90)),
        "reps": reps,
    }


def make_forward(torch, model, onehot, nz, mode, device="cuda"):
    """A no-argument callable doing one caption -> image forward in `mode` (eager part only)."""
    torch.backends.cuda.matmul.allow_tf32 = mode != "f32"
    torch.backends.cudnn.allow_tf32 = mode != "f32"
    B = onehot.shape[0]
    z = torch.empty(B, nz, device=device)
    if mode == "bf16-cl":
        model.generator.to(memory_format=torch.channels_last)

        def fwd():
            with torch.autocast(device, dtype=torch.bfloat16):
                z.normal_()
                return model.generator(z, model.encoder(onehot))
    else:
        model.generator.to(memory_format=torch.contiguous_format)

        def fwd():
            z.normal_()
            return model.generator(z, model.encoder(onehot))

    return fwd


def graphed(torch, fwd):
    """`fwd` captured as a CUDA graph (after warm-up on a side stream, as PyTorch asks)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fwd()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fwd()
    return g.replay


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="reed-cub")
    p.add_argument("--batch", default="1,64,256")
    p.add_argument("--reps", default="1000,50,50", help="one number, or one per --batch entry")
    p.add_argument("--warmup", default="50,5,5", help="one number, or one per --batch entry")
    p.add_argument("--compile", action="store_true", help="also torch.compile (minutes to compile)")
    p.add_argument("--budget", type=float, default=150.0,
                   help="seconds: modes not started by then are skipped (and say so)")
    args = p.parse_args(argv)
    start = time.time()

    import torch

    if not torch.cuda.is_available():
        sys.exit("bench_peers_cuda: torch finds no CUDA device")
    batches = parse_list(args.batch)
    per = lambda s: (parse_list(s) * len(batches))[: len(batches)] if len(parse_list(s)) == 1 else parse_list(s)  # noqa: E731
    reps, warm = dict(zip(batches, per(args.reps))), dict(zip(batches, per(args.warmup)))
    cfg = ref.get_config(args.config)
    model = ref.build(cfg, ("encoder", "generator")).cuda()
    nz = cfg["generator"]["nz"]
    name = torch.cuda.get_device_name()
    print(f"# PyTorch {torch.__version__} on {name}, {cfg['name']}, cudnn {torch.backends.cudnn.version()}",
          file=sys.stderr)
    torch.backends.cudnn.benchmark = True
    modes = ["eager-f32", "eager-tf32", "eager-bf16-cl", "graph-f32", "graph-tf32", "graph-bf16-cl"]
    if args.compile:
        modes.append("compile")
    rows = []
    sync = torch.cuda.synchronize
    with torch.inference_mode():
        for B in batches:
            onehot = torch.from_numpy(ref.onehot([CAPTION.format(i) for i in range(B)], cfg)).cuda()
            for mode in modes:
                row = {"runtime": "pytorch", "mode": mode, "batch": B, "device": name}
                if time.time() - start > args.budget:
                    row["skipped"] = f"over the {args.budget:.0f}s budget"
                    rows.append(row)
                    continue
                try:
                    kind, _, prec = mode.partition("-")
                    if kind == "compile":
                        fwd = make_forward(torch, model, onehot, nz, "tf32")
                        cfwd = torch.compile(fwd, mode="max-autotune-no-cudagraphs")
                        fn = graphed(torch, cfwd)
                    else:
                        fwd = make_forward(torch, model, onehot, nz, prec)
                        fn = graphed(torch, fwd) if kind == "graph" else fwd
                    row.update(timed(fn, reps[B], warm[B], sync))
                    row["images_per_s"] = B / (row["median_ms"] / 1e3)
                except Exception as e:  # noqa: BLE001 - one failing mode must not hide the rest
                    row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
                rows.append(row)
                msg = (f"{row['median_ms']:9.4f} ms median, {row['images_per_s']:10.1f} images/s"
                       if "median_ms" in row else row.get("error") or row.get("skipped"))
                print(f"pytorch {mode:14s} batch {B:4d}: {msg}", file=sys.stderr, flush=True)
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
