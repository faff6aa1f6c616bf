#!/usr/bin/env python3
"""Training throughput of one GAN-INT-CLS iteration: PyTorch eager f32 vs text2img (docs/PERF.md).

PyTorch runs `reference.gan_int_cls_step`'s iteration (`reference.gan_iteration`: the D step with
its three passes real / wrong / fake and one Adam step, the G step on B text rows + B/2
interpolations and one Adam step, both networks in training mode) in f32 from the synthetic
weights of the config, on a fixed random batch (real and wrong images uniform in [-1, 1), text
vectors N(0, 1)), fresh torch.randn noise every iteration. No data loading, no text embedding:
the pure step. Reported: median seconds per iteration after one warm-up iteration, and
images/s = batch / median.

With --ours, also times `text2img train` on --data with --encoder for --steps steps (same batch,
same threads) and reads `images_per_s` from the last line of its log.jsonl: the trainer's own
figure, steps done × batch / wall time of the training loop, which includes the first (warm-up)
iteration, batch loading on the prefetcher's background threads (PNG decoding, on the same cores)
and the caption-table lookups; the final sample grid, checkpoint and export come after it.

Usage (from the repository root):
    .venv/bin/python scripts/bench_train.py --config shapes --batch 64 --threads 2 --steps 5 \\
        --ours target/release/text2img --data /tmp/shapes --encoder /tmp/enc/encoder.safetensors
Data and an encoder file:
    target/release/text2img data make shapes --out /tmp/shapes --images 2000
    target/release/text2img train-encoder --config shapes --data /tmp/shapes --out /tmp/enc \\
        --steps 2 --eval-every 0
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import reference as R  # noqa: E402


def bench_torch(cfg_name: str, batch: int, steps: int, threads: int, device: str = "cpu") -> dict:
    torch.set_num_threads(threads)
    cfg = R.get_config(cfg_name)
    opts = dict(R.TRAIN_OPTIONS, batch=batch)
    model = R.build(cfg, ("generator", "discriminator")).float().to(device)  # synthetic weights
    G, D = model.generator.train(), model.discriminator.train()
    rng = np.random.default_rng(R.TRAIN_DATA_SEED)
    E, nz = cfg["encoder"]["embed_dim"], cfg["generator"]["nz"]
    real = torch.from_numpy(rng.uniform(-1.0, 1.0, (batch, 3, 64, 64)).astype(np.float32)).to(device)
    wrong = torch.from_numpy(rng.uniform(-1.0, 1.0, (batch, 3, 64, 64)).astype(np.float32)).to(device)
    text = torch.from_numpy(rng.standard_normal((batch, E)).astype(np.float32)).to(device)
    adam = dict(lr=opts["lr"], betas=(opts["beta1"], 0.999), eps=1e-8)
    opt_d = torch.optim.Adam(D.parameters(), **adam)
    opt_g = torch.optim.Adam(G.parameters(), **adam)
    gen = torch.Generator(device=device).manual_seed(0)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    for i in range(steps + 1):  # iteration 0 is the warm-up
        sync()
        t0 = time.perf_counter()
        z_d = torch.randn(batch, nz, generator=gen, device=device)
        z_g = torch.randn(batch + batch // 2, nz, generator=gen, device=device)
        R.gan_iteration(G, D, opt_d, opt_g, real, wrong, text, z_d, z_g, opts)
        sync()
        dt = time.perf_counter() - t0
        if i > 0:
            times.append(dt)
        print(f"  pytorch iteration {i}{' (warm-up)' if i == 0 else ''}: {dt:.3f} s", file=sys.stderr)
    med = statistics.median(times)
    return {
        "s_per_iter_median": med,
        "s_per_iter_min": min(times),
        "s_per_iter_max": max(times),
        "images_per_s": batch / med,
        "iterations": steps,
    }


def bench_ours(
    exe: str, config: str, data: str, encoder: str, batch: int, steps: int, threads: int, device: str = "cpu"
) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        out = os.path.join(tmp, "run")
        cmd = [
            exe, "train", "--config", config, "--data", data, "--encoder", encoder, "--out", out, "--steps", str(steps),
            "--batch", str(batch), "--threads", str(threads), "--sample-every", "0",
            "--checkpoint-every", "100000", "--device", device, "-q",
        ]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - t0
        with open(os.path.join(out, "log.jsonl"), encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    ips = float(rows[-1]["images_per_s"])
    # Per-iteration figures from the running average: images_per_s after step k covers steps 1..k.
    cum = [r["images_per_s"] for r in rows]
    secs = [(k + 1) * batch / v for k, v in enumerate(cum)]
    per_iter = [secs[0]] + [b - a for a, b in zip(secs, secs[1:])]
    return {
        "images_per_s": ips,
        "s_per_iter_mean": batch / ips,
        "s_per_iter_median_after_first": statistics.median(per_iter[1:]) if len(per_iter) > 1 else per_iter[0],
        "s_per_iter_each": [round(s, 3) for s in per_iter],
        "iterations": len(rows),
        "process_wall_s": wall,
        "cmd": " ".join(cmd),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="shapes")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="timed iterations each")
    p.add_argument("--ours", help="path of the text2img binary (also time our trainer)")
    p.add_argument("--data", help="dataset folder for --ours")
    p.add_argument("--encoder", help="encoder weights file for --ours (its encoder must be --config's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (both runtimes on that device)")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    a = p.parse_args(argv)
    if a.ours and not (a.data and a.encoder):
        p.error("--ours needs --data and --encoder")
    load = os.getloadavg()
    res = {
        "config": a.config, "batch": a.batch, "threads": a.threads, "device": a.device,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "loadavg_before": [round(x, 2) for x in load],
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
    }
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", file=sys.stderr)
    if a.ours:
        ours = bench_ours(a.ours, a.config, a.data, a.encoder, a.batch, a.steps, a.threads, a.device)
        res["ours"] = ours
        print(f"ours:    {ours['images_per_s']:.2f} images/s ({ours['s_per_iter_mean']:.3f} s/iteration mean over "
              f"{ours['iterations']}, median after the first {ours['s_per_iter_median_after_first']:.3f} s; "
              f"each {ours['s_per_iter_each']})")
    pt = bench_torch(a.config, a.batch, a.steps, a.threads, a.device)
    res["pytorch"] = pt
    print(f"pytorch: {pt['images_per_s']:.2f} images/s ({pt['s_per_iter_median']:.3f} s/iteration median of "
          f"{pt['iterations']}, min {pt['s_per_iter_min']:.3f}, max {pt['s_per_iter_max']:.3f}; "
          f"torch {torch.__version__}, {a.threads} threads)")
    if a.ours:
        r = res["ours"]["images_per_s"] / pt["images_per_s"]
        res["ratio_ours_over_pytorch"] = r
        steady = a.batch / res["ours"]["s_per_iter_median_after_first"] / pt["images_per_s"]
        res["ratio_steady_ours_over_pytorch"] = steady
        print(f"ours / pytorch: {r:.2f}x (the trainer's figure, warm-up included); {steady:.2f}x "
              f"(medians without the first iteration on both sides)")
    res["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    if a.json:
        print(json.dumps(res))


if __name__ == "__main__":
    main()
