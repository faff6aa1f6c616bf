#!/usr/bin/env python3
"""How fast can D's image trunk learn shape kind? (issue 5, session 13)

D's auxiliary classifier learns the 60 training classes slowly inside the GAN (class accuracy on
real images 23 % at step 1,000, 72 % at 4,000), while G's class term is already lower than D's:
G can fool a classifier that does not know shapes yet. This probe trains D's trunk (conv0..conv3,
the residual block) and the classifier head alone, supervised, on real training-class images
(shape kind and colour, as `--classifier` does), and reports the shape-kind accuracy on 1,000
images it did not train on, for variants of the `shapes` D:

  base      the shipped config: no batch norm, no conv bias, no activation after conv2/conv3
  deep      LeakyReLU after conv2 and conv3 (`train --d-act-after-deep`)
  bias      a bias on every convolution (what batch norm's shift gave the paper's D)
  deep+bias both
  …+avg / …+max  the head reads a global average / max pool of the 4×4 features through one
            linear map, instead of D's 4×4 convolution (a weight per position)
  …+lr1e-3  Adam at 1e-3 instead of the GAN's 2e-4
  …+bn      batch norm after conv1..conv3 (the paper's D)
  …+kaiming He initialisation (gain for LeakyReLU 0.2) instead of N(0, 0.02)

Same optimiser as the GAN's D (Adam, lr 2e-4, betas 0.5/0.999), batch 64.

  .venv/bin/python scripts/experiments/d_trunk_probe.py --data /tmp/shapes \
      --encoder /work/runs/enc/encoder.safetensors --steps 1500 --threads 1
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shapes_gan_probe import load_data  # noqa: E402


class Head(nn.Module):
    """The classifier read-out of the 4×4 features: D's 4×4 convolution (one weight per
    position), or a global average / max pool and a linear map (the same weights everywhere)."""

    def __init__(self, c, k, pool, conv):
        super().__init__()
        self.pool = pool
        self.out = conv(c, k, 4, 1, 0) if pool is None else conv(c, k, 1, 1, 0)

    def forward(self, x):
        if self.pool == "avg":
            x = x.mean((2, 3), keepdim=True)
        elif self.pool == "max":
            x = x.amax((2, 3), keepdim=True)
        return self.out(x)


def trunk(ndf, deep, bias, pool, bn=False, kaiming=False):
    def conv(cin, cout, k, s, p):
        c = nn.Conv2d(cin, cout, k, s, p, bias=bias)
        return nn.Sequential(c, nn.BatchNorm2d(cout)) if bn and cout in (2 * ndf, 4 * ndf) else c

    act = nn.LeakyReLU(0.2)
    layers = [conv(3, ndf, 4, 2, 1), act, conv(ndf, 2 * ndf, 4, 2, 1), act]
    layers += [conv(2 * ndf, 4 * ndf, 4, 2, 1)] + ([act] if deep else [])
    layers += [conv(4 * ndf, 8 * ndf, 4, 2, 1)] + ([act] if deep else [])
    net = nn.Sequential(*layers, Res(8 * ndf, 2 * ndf, conv), Head(8 * ndf, 8 + 10, pool, conv))
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            if kaiming:
                nn.init.kaiming_normal_(m.weight, a=0.2)
            else:
                nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net


class Res(nn.Module):
    """The residual block of D (1×1 down, 3×3, 3×3 up, LeakyReLU after each and after the add)."""

    def __init__(self, c, mid, conv):
        super().__init__()
        self.a, self.b, self.c = conv(c, mid, 1, 1, 0), conv(mid, mid, 3, 1, 1), conv(mid, c, 3, 1, 1)

    def forward(self, x):
        y = F.leaky_relu(self.a(x), 0.2)
        y = F.leaky_relu(self.b(y), 0.2)
        return F.leaky_relu(x + self.c(y), 0.2)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--encoder", required=True)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--every", type=int, default=250)
    p.add_argument("--ndf", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--variants", default="base,deep,bias,deep+bias")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    imgs, labels, _, _ = load_data(a.data, a.encoder)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(imgs))
    test, train = order[:1000], order[1000:]
    to_x = lambda idx: torch.from_numpy(imgs[idx].astype(np.float32) / 127.5 - 1.0)  # noqa: E731
    xt, kt = to_x(test), torch.from_numpy(labels[test, 0])
    print("variant         " + "  ".join(f"{s:>6}" for s in range(a.every, a.steps + 1, a.every)) + "   (kind accuracy, held-back images)")
    for v in a.variants.split(","):
        torch.manual_seed(0)
        pool = "avg" if "avg" in v else "max" if "max" in v else None
        net = trunk(a.ndf, "deep" in v, "bias" in v, pool, bn="bn" in v, kaiming="kaiming" in v)
        lr = 1e-3 if "lr1e-3" in v else 2e-4
        opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.5, 0.999))
        brng = np.random.default_rng(1)
        accs, t0 = [], time.time()
        for step in range(1, a.steps + 1):
            idx = train[brng.integers(0, len(train), 64)]
            out = net(to_x(idx)).flatten(1)
            lab = torch.from_numpy(labels[idx])
            loss = F.cross_entropy(out[:, :8], lab[:, 0]) + F.cross_entropy(out[:, 8:], lab[:, 1])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % a.every == 0:
                with torch.no_grad():
                    pred = torch.cat([net(xt[i : i + 250]).flatten(1)[:, :8].argmax(1) for i in range(0, 1000, 250)])
                accs.append((pred == kt).float().mean().item())
        print(f"{v:<16}" + "  ".join(f"{x * 100:5.1f}%" for x in accs) + f"   ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
