#!/usr/bin/env python3
"""Does Reed's GAN-INT-CLS recipe learn on `shapes` in a few hundred iterations (PyTorch, f32)?

Experiment for issue 5 (default GAN recipe). Networks and the exact step come from
scripts/reference.py (shapes config: G ngf 64, D ndf 64, nz 100, nt 128, embed 256); the data
pipeline follows DESIGN §2 / reed2016 §1.3-2 (mean of 4 caption embeddings per slot, wrong image
from another class, resize 76 + random 64 crop, no flip).

Modes (--mode):
  reed       Reed's recipe: D step = three separate D passes (real / wrong / fake, each with its
             own BN batch statistics), weights 1 / 0.5 / 0.5; G step = D(G(z, t_int)) on the 96
             fakes alone.
  joint      The same losses, but D sees real and fakes in ONE batch for BN purposes:
             D step = one D forward on cat[real, wrong, fake] (per-part BCE means weighted 1/.5/.5);
             G step = one D forward on cat[96 fakes, the 64 real images] with the loss on the fake
             rows only (the real rows only contribute to the BN statistics). In practice the
             G-step batch is 60% fakes against 33% in the D step, and G learns to exploit the
             difference (D calls >90% of G-step fakes real while rejecting 100% in the D step).
  joint2     As joint, but the G step's D batch mirrors the D step's: cat[real, wrong, 96 fakes]
             (43% fakes), loss on the fake rows only.
  nobn1      Reed's recipe with D's bn1 (after conv1) removed.
  dlr4       Reed's recipe with D's learning rate / 4.

Usage (from the repository root):
  .venv/bin/python scripts/experiments/reed_recipe_shapes.py --mode reed --out /tmp/recipe/reed
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import reference as ref  # noqa: E402

DATA = "/tmp/shapes"
ENC = "/tmp/enc2/encoder.safetensors"
CACHE = "/tmp/recipe/cache.npz"


def read_lines(p):
    with open(p, encoding="utf-8") as f:
        return [l.strip() for l in f if l.strip()]


def load_encoder():
    from safetensors import safe_open

    with safe_open(ENC, "pt") as f:
        cfg = json.loads(f.metadata()["config"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    enc = ref.Encoder(cfg)
    enc.load_state_dict({k[len("encoder."):]: v.float() for k, v in tensors.items()})
    return cfg, enc.eval()


@torch.no_grad()
def embed(enc, cfg, caps, bs=512):
    out = []
    for i in range(0, len(caps), bs):
        out.append(enc(torch.from_numpy(ref.onehot(caps[i : i + bs], cfg))).numpy())
    return np.concatenate(out, 0)


def build_cache():
    """images resized to 76 (uint8 [N,3,76,76]), class ids, caption embeddings [N,10,E] for the
    train-val classes; grid captions (4 train-class, 4 held-out-class images) with their 64x64
    real images."""
    from PIL import Image

    cfg, enc = load_encoder()
    train = read_lines(f"{DATA}/trainvalclasses.txt")
    test = read_lines(f"{DATA}/testclasses.txt")
    imgs, cls, caps = [], [], []
    for ci, c in enumerate(train):
        for fn in sorted(os.listdir(f"{DATA}/images/{c}")):
            im = Image.open(f"{DATA}/images/{c}/{fn}").convert("RGB")
            imgs.append(np.asarray(im.resize((76, 76), Image.BILINEAR)).transpose(2, 0, 1))
            cl = read_lines(f"{DATA}/text_c10/{c}/{fn[:-4]}.txt")
            assert len(cl) == 10, (c, fn, len(cl))
            caps.extend(cl)
            cls.append(ci)
    imgs = np.stack(imgs)
    t0 = time.time()
    emb = embed(enc, cfg, caps).reshape(len(cls), 10, -1).astype(np.float32)
    print(f"embedded {len(caps)} captions in {time.time() - t0:.0f}s", flush=True)

    # Grid rows: 4 train classes and 4 held-out classes of different colours, first image,
    # first caption.
    def pick(classes, n):
        out, seen = [], set()
        for c in classes:
            colour = c.split(".", 1)[1].split("_")[0]
            if colour not in seen:
                seen.add(colour)
                out.append(c)
            if len(out) == n:
                break
        return out

    grid_cls = pick(train, 4) + pick(test, 4)
    gcap, gimg = [], []
    for c in grid_cls:
        fn = sorted(os.listdir(f"{DATA}/images/{c}"))[0]
        gcap.append(read_lines(f"{DATA}/text_c10/{c}/{fn[:-4]}.txt")[0])
        gimg.append(np.asarray(Image.open(f"{DATA}/images/{c}/{fn}").convert("RGB")).transpose(2, 0, 1))
    gemb = embed(enc, cfg, gcap)
    os.makedirs(os.path.dirname(CACHE), exist_ok=True)
    np.savez(CACHE, imgs=imgs, cls=np.array(cls), emb=emb, gemb=gemb, gimg=np.stack(gimg),
             gcap=np.array(gcap))
    with open(os.path.join(os.path.dirname(CACHE), "grid_captions.txt"), "w") as f:
        for c, cap in zip(grid_cls, gcap):
            f.write(f"{c}\t{cap}\n")


def save_grid(path, rows):
    """rows: list of [n, 3, 64, 64] float arrays in [-1, 1] -> one PNG, 2px gaps."""
    from PIL import Image

    n_r, n_c = len(rows), rows[0].shape[0]
    g = 2
    canvas = np.full((n_r * (64 + g) + g, n_c * (64 + g) + g, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c in range(n_c):
            im = ((np.clip(row[c], -1, 1) + 1) * 127.5 + 0.5).astype(np.uint8).transpose(1, 2, 0)
            y, x = g + r * (64 + g), g + c * (64 + g)
            canvas[y : y + 64, x : x + 64] = im
    Image.fromarray(canvas).save(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["reed", "joint", "joint2", "nobn1", "dlr4"], default="reed")
    ap.add_argument("--out", required=True)
    ap.add_argument("--iters", type=int, default=400)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--grid-every", type=int, default=100)
    ap.add_argument("--ngf", type=int, default=None)
    ap.add_argument("--ndf", type=int, default=None)
    ap.add_argument("--d-bn", choices=["all", "none"], default="all")
    ap.add_argument("--inst-noise", type=float, default=0.0)
    ap.add_argument("--lr-d", type=float, default=None)
    ap.add_argument("--lr-g", type=float, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    if not os.path.exists(CACHE):
        build_cache()
    d = np.load(CACHE)
    imgs = torch.from_numpy(d["imgs"])  # uint8 [N,3,76,76]
    cls = d["cls"]
    emb = torch.from_numpy(d["emb"])  # [N,10,E]
    gemb = torch.from_numpy(d["gemb"])
    gimg = d["gimg"].astype(np.float32) / 127.5 - 1
    N = len(cls)

    cfg = ref.get_config("shapes")
    if args.ngf:
        cfg["generator"]["ngf"] = args.ngf
    if args.ndf:
        cfg["discriminator"]["ndf"] = args.ndf
    model = ref.build(cfg, ("generator", "discriminator"), init="torch")
    G, D = model.generator.train(), model.discriminator.train()
    if args.mode == "nobn1":
        D.bn1 = torch.nn.Identity()
    if args.d_bn == "none":
        for name in ("bn1", "bn2", "bn3", "bn4", "text_bn"):
            setattr(D, name, torch.nn.Identity())
        for name in ("bn1", "bn2", "bn3"):
            setattr(D.res, name, torch.nn.Identity())
    lr_d = 2e-4 / 4 if args.mode == "dlr4" else 2e-4
    lr_d = args.lr_d or lr_d
    opt_d = torch.optim.Adam(D.parameters(), lr=lr_d, betas=(0.5, 0.999), eps=1e-8)
    opt_g = torch.optim.Adam(G.parameters(), lr=args.lr_g or 2e-4, betas=(0.5, 0.999), eps=1e-8)
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed + 1)
    b, nz = args.batch, cfg["generator"]["nz"]
    bce = F.binary_cross_entropy_with_logits
    gz = torch.randn(8, nz, generator=torch.Generator().manual_seed(123))  # grid noises

    def crop(idx):
        out = torch.empty(len(idx), 3, 64, 64)
        ox, oy = rng.integers(0, 13, len(idx)), rng.integers(0, 13, len(idx))
        for k, i in enumerate(idx):
            out[k] = imgs[i, :, oy[k] : oy[k] + 64, ox[k] : ox[k] + 64].float()
        return out / 127.5 - 1

    def batch():
        ri = rng.integers(0, N, b)
        wi = rng.integers(0, N, b)
        bad = cls[wi] == cls[ri]
        while bad.any():  # wrong image: another class
            wi[bad] = rng.integers(0, N, bad.sum())
            bad = cls[wi] == cls[ri]
        capi = rng.integers(0, 10, (b, 4))  # 4 captions with replacement
        t = emb[torch.from_numpy(ri)[:, None], torch.from_numpy(capi)].mean(1)
        return crop(ri), crop(wi), t

    def grid(it):
        stats = {}
        with torch.no_grad():
            rows_e, rows_t = [], []
            for r in range(8):
                e = gemb[r : r + 1].expand(8, -1)
                G.eval()
                ge = G(gz, e).numpy()
                G.train()
                # train mode: batch statistics over the 8 noises of one caption; save/restore the
                # running stats so the grid does not touch training.
                saved = {k: v.clone() for k, v in G.state_dict().items() if "running" in k or "num_batches" in k}
                gt = G(gz, e).numpy()
                G.load_state_dict({**G.state_dict(), **saved})
                rows_e.append(np.concatenate([gimg[r : r + 1], ge], 0))
                rows_t.append(np.concatenate([gimg[r : r + 1], gt], 0))
            save_grid(f"{args.out}/grid_eval_{it:04d}.png", rows_e)
            save_grid(f"{args.out}/grid_train_{it:04d}.png", rows_t)
            for name, rows in (("eval", rows_e), ("train", rows_t)):
                s = np.stack(rows)[:, 1:]  # [8 caps, 8 noises, 3, 64, 64]
                stats[f"div_{name}"] = float(s.std(1).mean())  # per-pixel std across noises
                # per-caption mean colour error vs the row's real image, and the spread of the
                # per-caption mean colours (do rows differ by caption?)
                mc = s.mean((1, 3, 4))  # [8, 3]
                stats[f"colour_err_{name}"] = float(np.abs(mc - gimg.mean((2, 3))).mean())
                stats[f"row_colour_spread_{name}"] = float(mc.std(0).mean())
                # high-frequency energy: mean |x - its 2x2 neighbour|
                hf = np.abs(np.diff(s, axis=-1)).mean() + np.abs(np.diff(s, axis=-2)).mean()
                stats[f"hf_{name}"] = float(hf / 2)
        stats["hf_real"] = float((np.abs(np.diff(gimg, axis=-1)).mean() + np.abs(np.diff(gimg, axis=-2)).mean()) / 2)
        return stats

    log = open(f"{args.out}/log.jsonl", "w")
    acc = {k: [] for k in ("dl", "gl", "ar", "aw", "af", "gf")}
    t_start = time.time()
    it = 0
    rec = grid(0)
    rec.update(step=0, elapsed_s=0.0)
    log.write(json.dumps(rec) + "\n")
    print(json.dumps(rec), flush=True)
    while it < args.iters and time.time() - t_start < args.minutes * 60:
        real, wrong, t = batch()
        if args.inst_noise:
            real = real + args.inst_noise * torch.randn_like(real)
            wrong = wrong + args.inst_noise * torch.randn_like(wrong)
        z_d = torch.randn(b, nz)
        z_g = torch.randn(b + b // 2, nz)

        # ---- D step ----
        for p in D.parameters():
            p.requires_grad_(True)
        with torch.no_grad():
            fake = G(z_d, t)  # training mode: batch stats, running stats updated
            if args.inst_noise:
                fake = fake + args.inst_noise * torch.randn_like(fake)
        opt_d.zero_grad(set_to_none=True)
        if args.mode in ("joint", "joint2"):
            lg = D(torch.cat([real, wrong, fake]), torch.cat([t, t, t]))
            l_r, l_w, l_f = lg[:b], lg[b : 2 * b], lg[2 * b :]
            lr_, lw_, lf_ = bce(l_r, torch.ones_like(l_r)), bce(l_w, torch.zeros_like(l_w)), bce(l_f, torch.zeros_like(l_f))
            d_loss = lr_ + 0.5 * lw_ + 0.5 * lf_
            d_loss.backward()
        else:
            outs = []
            d_loss = 0.0
            for imgs_, tgt, w in ((real, 1.0, 1.0), (wrong, 0.0, 0.5), (fake, 0.0, 0.5)):
                lg_ = D(imgs_, t)
                l = bce(lg_, torch.full_like(lg_, tgt))
                (w * l).backward()
                d_loss = d_loss + w * l.item()
                outs.append(lg_.detach())
            l_r, l_w, l_f = outs
            d_loss = torch.tensor(d_loss)
        opt_d.step()

        # ---- G step ----
        for p in D.parameters():
            p.requires_grad_(False)  # D is not updated; skips D's weight gradients only
        t_int = torch.cat([t, 0.5 * (t[: b // 2] + t[b // 2 : b])], 0)
        opt_g.zero_grad(set_to_none=True)
        fk = G(z_g, t_int)
        if args.inst_noise:
            fk = fk + args.inst_noise * torch.randn_like(fk)
        if args.mode == "joint":
            lg = D(torch.cat([fk, real]), torch.cat([t_int, t]))[: len(t_int)]
        elif args.mode == "joint2":
            lg = D(torch.cat([real, wrong, fk]), torch.cat([t, t, t_int]))[2 * b :]
        else:
            lg = D(fk, t_int)
        g_loss = bce(lg, torch.ones_like(lg))
        g_loss.backward()
        opt_g.step()
        it += 1

        acc["dl"].append(d_loss.item())
        acc["gl"].append(g_loss.item())
        acc["ar"].append((l_r > 0).float().mean().item())
        acc["aw"].append((l_w < 0).float().mean().item())
        acc["af"].append((l_f < 0).float().mean().item())
        acc["gf"].append((lg > 0).float().mean().item())  # fakes D calls real in the G step
        if it % args.log_every == 0 or it % args.grid_every == 0:
            el = time.time() - t_start
            rec = {"step": it, "elapsed_s": round(el, 1), "s_per_it": round(el / it, 2)}
            rec.update({k: round(float(np.mean(v)), 4) for k, v in acc.items()})
            rec.update(fake_std=round(fk.std().item(), 3), fake_mean_rgb=[round(x, 3) for x in fk.mean((0, 2, 3)).tolist()],
                       real_mean_rgb=[round(x, 3) for x in real.mean((0, 2, 3)).tolist()])
            acc = {k: [] for k in acc}
            if it % args.grid_every == 0:
                rec.update(grid(it))
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(json.dumps(rec), flush=True)
    if it % args.grid_every != 0:
        rec = grid(it)
        rec.update(step=it, elapsed_s=round(time.time() - t_start, 1), final=True)
        log.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)
    log.close()


if __name__ == "__main__":
    main()
