#!/usr/bin/env python3
"""PyTorch reference for text2img (GAN-INT-CLS, Reed et al. 2016, and its char-CNN-RNN encoder).

Implements docs/WEIGHTS.md to the letter: the three networks with the exact state_dict names,
caption -> one-hot, Philox4x32-10 noise with Box-Muller, synthetic weights by hash, the golden
files the Rust tests compare against, weight export in the text2img safetensors format and ONNX
export for the peer benchmark.

Usage (from the repository root, after `bash scripts/setup_venv.sh`):
    .venv/bin/python scripts/reference.py selftest
    .venv/bin/python scripts/reference.py goldens --out tests/data/golden
    .venv/bin/python scripts/reference.py train-goldens --out tests/data/golden
    .venv/bin/python scripts/reference.py sje-goldens --out tests/data/golden
    .venv/bin/python scripts/reference.py export --config reed-cub --out out/reed-cub.safetensors
    .venv/bin/python scripts/reference.py onnx --config reed-cub --out out/onnx
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time

import numpy as np

try:  # torch is only needed for the networks; Philox, one-hot and hashing are pure numpy.
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # pragma: no cover
    torch = None
    nn = None
    F = None

FORMAT = "text2img/1"
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-,;.!?:'\"/\\|_@#$%^&*~`+-=<>()[]{} "
assert len(ALPHABET) == 70
NETWORKS = ("encoder", "generator", "discriminator")

# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------


def _config(name, convs, rnn, hidden, embed, final_pool, ngf, ndf=64, d_batch_norm=True):
    return {
        "name": name,
        "text": {"alphabet": ALPHABET, "doc_length": 201},
        "encoder": {
            "conv_channels": list(convs),
            "kernel_size": 4,
            "pool_size": 3,
            "final_pool": final_pool,
            "rnn": rnn,
            "rnn_hidden": hidden,
            "embed_dim": embed,
        },
        "generator": {"nz": 100, "nt": 128, "ngf": ngf},
        "discriminator": {"ndf": ndf, "nt": 128, "act_after_deep": False, "batch_norm": d_batch_norm},
    }


CONFIGS = {
    "reed-cub": _config("reed-cub", (384, 512, 512), "gru", 512, 1024, None, 128),
    "reed-flowers": _config(
        "reed-flowers", (384, 512, 512), "relu", 512, 1024, {"kernel": 3, "stride": 2}, 128
    ),
    "shapes": _config("shapes", (128, 256, 256), "gru", 256, 256, None, 32, ndf=32, d_batch_norm=False),
}


def get_config(name_or_path: str) -> dict:
    """A built-in config name, or a path to a config JSON file."""
    if name_or_path in CONFIGS:
        return copy.deepcopy(CONFIGS[name_or_path])
    with open(name_or_path, encoding="utf-8") as f:
        return json.load(f)


def config_json(cfg: dict) -> str:
    return json.dumps(cfg, ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# Caption -> one-hot
# --------------------------------------------------------------------------------------------


def char_index(alphabet: str) -> dict:
    # Later occurrences win, like the Lua dict: '-' (index 36 and 59) maps to 59.
    return {c: i for i, c in enumerate(alphabet)}


def onehot(captions, cfg: dict) -> np.ndarray:
    """[B, len(alphabet), doc_length] float32. Lower-case (whole string, Unicode), truncate to
    doc_length code points, unknown characters and padding are zero columns."""
    alphabet = cfg["text"]["alphabet"]
    length = cfg["text"]["doc_length"]
    idx = char_index(alphabet)
    out = np.zeros((len(captions), len(alphabet), length), dtype=np.float32)
    for b, cap in enumerate(captions):
        for t, ch in enumerate(cap.lower()[:length]):
            j = idx.get(ch)
            if j is not None:
                out[b, j, t] = 1.0
    return out


# --------------------------------------------------------------------------------------------
# Philox4x32-10 and Box-Muller noise
# --------------------------------------------------------------------------------------------

PHILOX_M0 = np.uint64(0xD2511F53)
PHILOX_M1 = np.uint64(0xCD9E8D57)
PHILOX_W0 = np.uint32(0x9E3779B9)
PHILOX_W1 = np.uint32(0xBB67AE85)
_MASK32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


def philox4x32_10(counter, key) -> np.ndarray:
    """counter: [4, N] (or [4]) uint32, key: [2, N] (or [2]) uint32 -> [4, N] uint32."""
    c = np.array(counter, dtype=np.uint32).reshape(4, -1)
    k = np.array(key, dtype=np.uint32).reshape(2, -1)
    c0, c1, c2, c3 = (c[j].copy() for j in range(4))
    k0 = np.broadcast_to(k[0], c0.shape).copy()
    k1 = np.broadcast_to(k[1], c0.shape).copy()
    with np.errstate(over="ignore"):
        for r in range(10):
            if r > 0:
                k0 = k0 + PHILOX_W0
                k1 = k1 + PHILOX_W1
            p0 = PHILOX_M0 * c0.astype(np.uint64)
            p1 = PHILOX_M1 * c2.astype(np.uint64)
            hi0, lo0 = (p0 >> _S32).astype(np.uint32), (p0 & _MASK32).astype(np.uint32)
            hi1, lo1 = (p1 >> _S32).astype(np.uint32), (p1 & _MASK32).astype(np.uint32)
            c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return np.stack([c0, c1, c2, c3])


PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


def noise(seed: int, images, nz: int) -> np.ndarray:
    """z [len(images), nz] float32 per WEIGHTS.md: element k of image i from Philox with key
    [seed lo, seed hi], counter [k // 4, 0, i lo, i hi], Box-Muller in f64."""
    images = np.asarray(list(images), dtype=np.uint64)
    nblk = (nz + 3) // 4
    blk = np.tile(np.arange(nblk, dtype=np.uint64), len(images))
    img = np.repeat(images, nblk)
    ctr = np.stack(
        [
            blk.astype(np.uint32),
            np.zeros_like(blk, dtype=np.uint32),
            (img & _MASK32).astype(np.uint32),
            (img >> _S32).astype(np.uint32),
        ]
    )
    key = np.array([seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF], dtype=np.uint32)
    w = philox4x32_10(ctr, key)  # [4, n]
    u = ((w >> np.uint32(8)).astype(np.float64) + 1.0) * 2.0**-24  # (0, 1]
    r01 = np.sqrt(-2.0 * np.log(u[0]))
    r23 = np.sqrt(-2.0 * np.log(u[2]))
    a1 = 2.0 * math.pi * u[1]
    a3 = 2.0 * math.pi * u[3]
    n = np.stack([r01 * np.cos(a1), r01 * np.sin(a1), r23 * np.cos(a3), r23 * np.sin(a3)])
    z = n.T.reshape(len(images), nblk * 4)[:, :nz]
    return z.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Synthetic weights by hash
# --------------------------------------------------------------------------------------------

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)


def fnv1a64(name: str) -> int:
    h = FNV_OFFSET
    for b in name.encode("utf-8"):
        h ^= b
        h = (h * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h


def hash_uniform(name: str, n: int) -> np.ndarray:
    """s in [-1, 1) for flat elements 0..n-1 of tensor `name`, float64 (exact)."""
    with np.errstate(over="ignore"):
        i1 = np.arange(1, n + 1, dtype=np.uint64)
        x = np.uint64(fnv1a64(name)) + i1 * GOLDEN_GAMMA
        x = (x ^ (x >> np.uint64(30))) * MIX1
        x = (x ^ (x >> np.uint64(27))) * MIX2
        x = x ^ (x >> np.uint64(31))
    return 2.0 * (x >> np.uint64(40)).astype(np.float64) / 2.0**24 - 1.0


def synthetic_tensor(name: str, shape) -> np.ndarray:
    shape = tuple(int(d) for d in shape)
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    s = hash_uniform(name, n)
    parts = name.split(".")
    layer = parts[-2] if len(parts) >= 2 else ""
    leaf = parts[-1]
    is_bn = layer.startswith("bn") or layer == "text_bn"
    if is_bn and leaf == "weight":
        v = 1.0 + 0.1 * s
    elif is_bn and leaf in ("bias", "running_mean"):
        v = 0.1 * s
    elif is_bn and leaf == "running_var":
        v = 1.0 + 0.25 * (s + 1.0)
    elif len(shape) == 1:
        v = 0.1 * s
    elif layer == "rnn":
        v = s * math.sqrt(1.0 / shape[1])
    else:
        rest = int(np.prod(shape[2:], dtype=np.int64)) if len(shape) > 2 else 1
        if layer.startswith("deconv"):
            fan_in = shape[0] * rest / 4
        else:
            fan_in = shape[1] * rest
        v = s * math.sqrt(6.0 / fan_in)
    return v.astype(np.float32).reshape(shape)


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------

if torch is not None:

    def _bn2d(c):
        return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)

    class FixedGRU(nn.Module):
        """Reed's FixedGRU (cvpr2016 modules/FixedGRU.lua) with PyTorch's r, z, n row order.
        Not nn.GRU: the first step is h1 = tanh(W_ih[n] x1 + b_ih[n]) and the recurrent bias of
        the candidate stays outside the reset gate product (it is added after)."""

        def __init__(self, inp, hidden):
            super().__init__()
            self.hidden = hidden
            self.weight_ih = nn.Parameter(torch.empty(3 * hidden, inp))
            self.bias_ih = nn.Parameter(torch.empty(3 * hidden))
            self.weight_hh = nn.Parameter(torch.empty(3 * hidden, hidden))
            self.bias_hh = nn.Parameter(torch.empty(3 * hidden))

        def forward(self, x):  # x [B, T, C] -> all hidden states [B, T, H]
            H = self.hidden
            a_ih = F.linear(x, self.weight_ih, self.bias_ih)  # [B, T, 3H]
            w_hr, w_hz, w_hn = self.weight_hh.split(H, 0)
            b_hr, b_hz, b_hn = self.bias_hh.split(H, 0)
            w_hrz = self.weight_hh[: 2 * H]
            b_hrz = self.bias_hh[: 2 * H]
            h = torch.tanh(a_ih[:, 0, 2 * H :])
            hs = [h]
            for t in range(1, x.shape[1]):
                a = a_ih[:, t]
                rz = torch.sigmoid(a[:, : 2 * H] + F.linear(h, w_hrz, b_hrz))
                r, z = rz[:, :H], rz[:, H:]
                n = torch.tanh(a[:, 2 * H :] + F.linear(r * h, w_hn, b_hn))
                h = z * n + (1 - z) * h
                hs.append(h)
            return torch.stack(hs, 1)

    class ReluRNN(nn.Module):
        """Reed's FixedRNN: h1 = relu(W_ih x1 + b_ih), h_t = relu(W_ih x_t + b_ih + W_hh h + b_hh)."""

        def __init__(self, inp, hidden):
            super().__init__()
            self.weight_ih = nn.Parameter(torch.empty(hidden, inp))
            self.bias_ih = nn.Parameter(torch.empty(hidden))
            self.weight_hh = nn.Parameter(torch.empty(hidden, hidden))
            self.bias_hh = nn.Parameter(torch.empty(hidden))

        def forward(self, x):
            a_ih = F.linear(x, self.weight_ih, self.bias_ih)
            h = torch.relu(a_ih[:, 0])
            hs = [h]
            for t in range(1, x.shape[1]):
                h = torch.relu(a_ih[:, t] + F.linear(h, self.weight_hh, self.bias_hh))
                hs.append(h)
            return torch.stack(hs, 1)

    class Encoder(nn.Module):
        """char-CNN-RNN: onehot [B, 70, L] -> embedding [B, E]."""

        def __init__(self, cfg):
            super().__init__()
            e = cfg["encoder"]
            a = len(cfg["text"]["alphabet"])
            c0, c1, c2 = e["conv_channels"]
            k = e["kernel_size"]
            self.pool = e["pool_size"]
            fp = e.get("final_pool")
            self.final_pool = (fp["kernel"], fp["stride"]) if fp else None
            self.conv1 = nn.Conv1d(a, c0, k)
            self.conv2 = nn.Conv1d(c0, c1, k)
            self.conv3 = nn.Conv1d(c1, c2, k)
            if e["rnn"] == "gru":
                self.rnn = FixedGRU(c2, e["rnn_hidden"])
            elif e["rnn"] == "relu":
                self.rnn = ReluRNN(c2, e["rnn_hidden"])
            else:
                raise ValueError(f"unknown rnn {e['rnn']!r}")
            self.proj = nn.Linear(e["rnn_hidden"], e["embed_dim"])

        def forward(self, x):
            x = F.max_pool1d(torch.relu(self.conv1(x)), self.pool, self.pool)
            x = F.max_pool1d(torch.relu(self.conv2(x)), self.pool, self.pool)
            x = torch.relu(self.conv3(x))
            if self.final_pool is not None:
                x = F.max_pool1d(x, self.final_pool[0], self.final_pool[1])
            hs = self.rnn(x.transpose(1, 2))  # [B, T, H]
            return self.proj(hs.mean(1))

    class ResBlock(nn.Module):
        """1x1 c->m, BN, act; 3x3 m->m, BN, act; 3x3 m->c, BN; add the input; act."""

        def __init__(self, c, m, act):
            super().__init__()
            self.act = act
            self.conv1 = nn.Conv2d(c, m, 1, bias=False)
            self.bn1 = _bn2d(m)
            self.conv2 = nn.Conv2d(m, m, 3, padding=1, bias=False)
            self.bn2 = _bn2d(m)
            self.conv3 = nn.Conv2d(m, c, 3, padding=1, bias=False)
            self.bn3 = _bn2d(c)

        def forward(self, x):
            y = self.act(self.bn1(self.conv1(x)))
            y = self.act(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
            return self.act(x + y)

    def _lrelu(x):
        return F.leaky_relu(x, 0.2)

    class Generator(nn.Module):
        """G(z [B, nz], embedding [B, E]) -> image [B, 3, 64, 64] in [-1, 1]."""

        def __init__(self, cfg):
            super().__init__()
            g = cfg["generator"]
            E = cfg["encoder"]["embed_dim"]
            nz, nt, f = g["nz"], g["nt"], g["ngf"]
            self.text_proj = nn.Linear(E, nt)
            self.deconv0 = nn.ConvTranspose2d(nz + nt, 8 * f, 4, 1, 0, bias=False)
            self.bn0 = _bn2d(8 * f)
            self.res0 = ResBlock(8 * f, 2 * f, torch.relu)
            self.deconv1 = nn.ConvTranspose2d(8 * f, 4 * f, 4, 2, 1, bias=False)
            self.bn1 = _bn2d(4 * f)
            self.res1 = ResBlock(4 * f, f, torch.relu)
            self.deconv2 = nn.ConvTranspose2d(4 * f, 2 * f, 4, 2, 1, bias=False)
            self.bn2 = _bn2d(2 * f)
            self.deconv3 = nn.ConvTranspose2d(2 * f, f, 4, 2, 1, bias=False)
            self.bn3 = _bn2d(f)
            self.deconv4 = nn.ConvTranspose2d(f, 3, 4, 2, 1, bias=False)
            # `refine` (train --g-refine): a residual block at 16x16 and at 32x32, middle half as
            # wide (GeneratorConfig::refine_mid).
            self.refine = bool(g.get("refine", False))
            if self.refine:
                self.res2 = ResBlock(2 * f, (2 * f + 1) // 2, torch.relu)
                self.res3 = ResBlock(f, (f + 1) // 2, torch.relu)

        def forward(self, z, emb):
            t = _lrelu(self.text_proj(emb))
            x = torch.cat([z, t], 1)[:, :, None, None]
            x = self.res0(self.bn0(self.deconv0(x)))
            x = self.res1(self.bn1(self.deconv1(x)))
            x = torch.relu(self.bn2(self.deconv2(x)))
            if self.refine:
                x = self.res2(x)
            x = torch.relu(self.bn3(self.deconv3(x)))
            if self.refine:
                x = self.res3(x)
            return torch.tanh(self.deconv4(x))

    class Discriminator(nn.Module):
        """D(image [B, 3, 64, 64], embedding [B, E]) -> logit [B]."""

        def __init__(self, cfg):
            super().__init__()
            d_cfg = cfg["discriminator"]
            E = cfg["encoder"]["embed_dim"]
            d, nt = d_cfg["ndf"], d_cfg["nt"]
            self.act_after_deep = bool(d_cfg.get("act_after_deep", False))
            self.conv0 = nn.Conv2d(3, d, 4, 2, 1, bias=False)
            self.conv1 = nn.Conv2d(d, 2 * d, 4, 2, 1, bias=False)
            self.bn1 = _bn2d(2 * d)
            self.conv2 = nn.Conv2d(2 * d, 4 * d, 4, 2, 1, bias=False)
            self.bn2 = _bn2d(4 * d)
            self.conv3 = nn.Conv2d(4 * d, 8 * d, 4, 2, 1, bias=False)
            self.bn3 = _bn2d(8 * d)
            self.res = ResBlock(8 * d, 2 * d, _lrelu)
            self.text_proj = nn.Linear(E, nt)
            self.text_bn = nn.BatchNorm1d(nt, eps=1e-5, momentum=0.1)
            self.conv4 = nn.Conv2d(8 * d + nt, 8 * d, 1, bias=False)
            self.bn4 = _bn2d(8 * d)
            self.conv5 = nn.Conv2d(8 * d, 1, 4, 1, 0, bias=False)
            if not d_cfg.get("batch_norm", True):  # a plain conv/LeakyReLU stack (the shapes D)
                for name in ("bn1", "bn2", "bn3", "bn4", "text_bn"):
                    setattr(self, name, nn.Identity())
                for name in ("bn1", "bn2", "bn3"):
                    setattr(self.res, name, nn.Identity())

        def forward(self, img, emb):
            x = _lrelu(self.conv0(img))
            x = _lrelu(self.bn1(self.conv1(x)))
            x = self.bn2(self.conv2(x))
            if self.act_after_deep:
                x = _lrelu(x)
            x = self.bn3(self.conv3(x))
            if self.act_after_deep:
                x = _lrelu(x)
            x = self.res(x)
            t = _lrelu(self.text_bn(self.text_proj(emb)))
            t = t[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
            x = _lrelu(self.bn4(self.conv4(torch.cat([x, t], 1))))
            return self.conv5(x).reshape(-1)

    class Text2Img(nn.Module):
        """The three networks under the prefixes encoder. / generator. / discriminator."""

        def __init__(self, cfg, networks=NETWORKS):
            super().__init__()
            self.cfg = cfg
            if "encoder" in networks:
                self.encoder = Encoder(cfg)
            if "generator" in networks:
                self.generator = Generator(cfg)
            if "discriminator" in networks:
                self.discriminator = Discriminator(cfg)

    class CaptionToImage(nn.Module):
        """onehot [B, 70, L] + z [B, nz] -> image (encoder then G)."""

        def __init__(self, encoder, generator):
            super().__init__()
            self.encoder = encoder
            self.generator = generator

        def forward(self, onehot, z):
            return self.generator(z, self.encoder(onehot))


def text2img_state_dict(model) -> dict:
    """state_dict without num_batches_tracked (not in the file format)."""
    return {
        k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")
    }


def param_count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def load_synthetic(model) -> None:
    sd = text2img_state_dict(model)
    new = {k: torch.from_numpy(synthetic_tensor(k, v.shape)) for k, v in sd.items()}
    load_text2img(model, new)


def load_text2img(model, tensors: dict) -> None:
    """Loads a {name: tensor} map (e.g. from a text2img safetensors file) strictly, except for
    num_batches_tracked, which the format does not carry."""
    missing, unexpected = model.load_state_dict(
        {k: v.float() for k, v in tensors.items()}, strict=False
    )
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"missing {missing}, unexpected {unexpected}")


def build(cfg, networks=NETWORKS, init="synthetic"):
    model = Text2Img(cfg, networks)
    if init == "synthetic":
        load_synthetic(model)
    elif init == "torch":
        # The paper's init: convs N(0, 0.02), BN gamma N(1, 0.02) beta 0; linears keep the
        # PyTorch default. Running stats stay 0 / 1.
        torch.manual_seed(0)
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, (FixedGRU, ReluRNN)):
                for p in m.parameters():
                    nn.init.uniform_(p, -0.08, 0.08)
    else:
        raise ValueError(f"unknown init {init!r}")
    return model.eval()


# --------------------------------------------------------------------------------------------
# Golden files
# --------------------------------------------------------------------------------------------

GOLDEN_SEED = 42
GOLDEN_CAPTIONS = [
    "this bird is red with a black crown and a short beak.",
    "A Small RED triangle -- near the TOP-left; ON a blue background!!! é ü 🐦",
    (
        "this particular bird has a belly that is gray and white, with a long pointed bill, "
        "dark brown wings with white wingbars, a light yellow throat and breast, black eyes "
        "ringed in white, and tail feathers that are long and forked at the tip -- it sits "
        "on a branch 2 meters up."
    ),
]
assert len(GOLDEN_CAPTIONS[2]) > 201


def golden_outputs(cfg, captions, seed, dtype=torch.float64 if torch else None):
    """Returns {name: np.float32 array}. dtype=float64: weights and inputs are the f32 synthetic
    values widened to f64 (the 'exact' answer); float32: the plain f32 forward."""
    full = cfg["name"] != "reed-flowers"
    nets = NETWORKS if full else ("encoder",)
    model = build(cfg, nets).to(dtype)
    oh = onehot(captions, cfg)
    out = {"onehot": oh}
    with torch.no_grad():
        emb = model.encoder(torch.from_numpy(oh).to(dtype))
        out["embedding"] = emb
        if full:
            z = noise(seed, range(len(captions)), cfg["generator"]["nz"])
            out["z"] = z
            img = model.generator(torch.from_numpy(z).to(dtype), emb)
            out["image"] = img
            out["d_logits"] = model.discriminator(img, emb)
    return {
        k: (v.float().numpy() if torch.is_tensor(v) else v.astype(np.float32))
        for k, v in out.items()
    }


def save_safetensors_sorted(tensors: dict, path: str, metadata: dict) -> None:
    """Writes a safetensors file byte-for-byte reproducibly (the safetensors package orders the
    metadata keys at random): header keys sorted, tensors laid out in name order, header padded
    with spaces to a multiple of 8 bytes. Little-endian f32 only (what the goldens need)."""
    header = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


def cmd_goldens(args):
    from safetensors import safe_open
    from safetensors.numpy import load_file

    os.makedirs(args.out, exist_ok=True)
    for name in args.configs.split(","):
        cfg = get_config(name)
        t0 = time.time()
        out = golden_outputs(cfg, GOLDEN_CAPTIONS, GOLDEN_SEED, torch.float64)
        meta = {
            "format": FORMAT,
            "config": config_json(cfg),
            "captions": json.dumps(GOLDEN_CAPTIONS, ensure_ascii=False),
            "seed": str(GOLDEN_SEED),
        }
        path = os.path.join(args.out, f"{cfg['name']}.safetensors")
        save_safetensors_sorted(out, path, meta)
        back = load_file(path)
        with safe_open(path, "np") as f:
            assert f.metadata() == meta
        assert set(back) == set(out)
        for k in out:
            assert back[k].dtype == np.float32 and np.array_equal(back[k], out[k]), k
        print(
            f"{path}: {os.path.getsize(path)} bytes, tensors "
            + ", ".join(f"{k}{list(v.shape)}" for k, v in out.items())
            + f" ({time.time() - t0:.1f} s)"
        )
        if args.stats:
            print_golden_stats(cfg, out)


# --------------------------------------------------------------------------------------------
# One GAN-INT-CLS training iteration (tests/parity_train.rs)
# --------------------------------------------------------------------------------------------

# The Rust trainer's noise stream (src/train/gan.rs): image i of step s uses Philox index
# s*NOISE_STRIDE + i in the D step and s*NOISE_STRIDE + NOISE_STRIDE/2 + i in the G step, with the
# seed options.seed XOR NOISE_KEY.
NOISE_STRIDE = 1 << 16
NOISE_KEY = 0x6E6F_6973_6573_6565
TRAIN_FORMAT = "text2img/train-gan/1"


def train_config() -> dict:
    """The `tiny()` config of tests/train_graph.rs (the encoder is not used by the GAN step)."""
    cfg = _config("tiny", (6, 8, 8), "gru", 8, 8, None, 2)
    cfg["text"]["doc_length"] = 60
    cfg["generator"] = {"nz": 4, "nt": 4, "ngf": 2}
    cfg["discriminator"] = {"ndf": 2, "nt": 4, "act_after_deep": False}
    return cfg


TRAIN_OPTIONS = {
    "batch": 4, "cls": True, "int": True, "cls_weight": 0.5, "interp_weight": 1.0,
    "lr": 2e-4, "beta1": 0.5, "seed": 7, "step": 0,
}
TRAIN_DATA_SEED = 20160517


def train_batch(cfg, b, seed=TRAIN_DATA_SEED):
    """A fixed batch: real and wrong images uniform in [-1, 1), text vectors N(0, 1); f32."""
    rng = np.random.default_rng(seed)
    real = rng.uniform(-1.0, 1.0, (b, 3, 64, 64)).astype(np.float32)
    wrong = rng.uniform(-1.0, 1.0, (b, 3, 64, 64)).astype(np.float32)
    text = rng.standard_normal((b, cfg["encoder"]["embed_dim"])).astype(np.float32)
    return real, wrong, text


def gan_int_cls_step(cfg, opts, dtype=torch.float64 if torch else None):
    """Runs one GAN-INT-CLS iteration exactly as GanTrainer::step does (src/train/gan.rs, DESIGN.md
    §2) from the synthetic weights and returns {name: np.float32 array}:
    inputs (real, wrong, text), noise (z_d, z_g), losses (d_loss = the weighted sum, its three
    terms, g_loss), D's logits per pass, D's accumulated D-step gradient and G's G-step gradient
    (grad.<name>), the updated parameters and running statistics (new.<name>)."""
    b, step = opts["batch"], opts["step"]
    nz = cfg["generator"]["nz"]
    model = build(cfg, ("generator", "discriminator")).to(dtype)
    G, D = model.generator.train(), model.discriminator.train()
    real, wrong, text = train_batch(cfg, b)
    noise_seed = (opts["seed"] ^ NOISE_KEY) & 0xFFFFFFFFFFFFFFFF
    base = step * NOISE_STRIDE
    z_d = noise(noise_seed, range(base, base + b), nz)
    bi = b + b // 2
    z_g = noise(noise_seed, range(base + NOISE_STRIDE // 2, base + NOISE_STRIDE // 2 + bi), nz)
    T = lambda a: torch.from_numpy(a).to(dtype)  # noqa: E731
    adam = dict(lr=opts["lr"], betas=(opts["beta1"], 0.999), eps=1e-8)
    opt_d = torch.optim.Adam(D.parameters(), **adam)
    opt_g = torch.optim.Adam(G.parameters(), **adam)
    # Fresh Adam state: the golden is the trainer's first step (Adam t = 1); `step` only moves
    # the noise indices.
    out = {"real": real, "wrong": wrong, "text": text, "z_d": z_d, "z_g": z_g}
    gan_iteration(G, D, opt_d, opt_g, T(real), T(wrong), T(text), T(z_d), T(z_g), opts, out)
    for k, v in text2img_state_dict(model).items():
        out[f"new.{k}"] = v
    return {
        k: (v.detach().to(torch.float32).numpy() if torch.is_tensor(v) else np.asarray(v, np.float32))
        for k, v in out.items()
    }


def gan_iteration(G, D, opt_d, opt_g, real, wrong, t, z_d, z_g, opts, out=None):
    """The D step and the G step of one GAN-INT-CLS iteration (GanTrainer::step), on tensors of
    the networks' dtype: real, wrong [B, 3, 64, 64], t [B, E], z_d [B, nz], z_g [B + B/2, nz].
    With `out`, records the losses, logits and gradients there (gan_int_cls_step); without, it is
    the timed loop of scripts/bench_train.py."""
    b = real.shape[0]
    dtype = real.dtype
    bce = F.binary_cross_entropy_with_logits

    # D step: fakes from G in training mode (batch statistics, running stats updated), detached.
    fake = G(z_d, t).detach()
    opt_d.zero_grad(set_to_none=False)
    cw = opts["cls_weight"]
    d_loss = 0.0
    for name, imgs, target, w in (("real", real, 1.0, 1.0), ("wrong", wrong, 0.0, cw),
                                  ("fake", fake, 0.0, 1.0 - cw)):
        logits = D(imgs, t)  # its own batch statistics; running stats updated
        loss = bce(logits, torch.full_like(logits, target))
        (w * loss).backward()
        if out is not None:
            d_loss = d_loss + w * loss.item()
            out[f"d_loss_{name}"] = np.array([loss.item()])
            out[f"d_logits_{name}"] = logits.detach()
    if out is not None:
        out["d_loss"] = np.array([d_loss])  # losses are [1]: the golden files hold no 0-d tensors
        for k, p in D.named_parameters():
            out[f"grad.discriminator.{k}"] = p.grad.detach().clone()
    opt_d.step()

    # G step: B text rows + B/2 interpolations, fresh noise, D in training mode but not updated.
    t_int = torch.cat([t, 0.5 * (t[: b // 2] + t[b // 2 : b])], 0)
    bi = t_int.shape[0]
    opt_g.zero_grad(set_to_none=False)
    logits = D(G(z_g, t_int), t_int)
    dev = real.device
    w = torch.cat([torch.ones(b, dtype=dtype, device=dev),
                   torch.full((bi - b,), opts["interp_weight"], dtype=dtype, device=dev)])
    g_loss = bce(logits, torch.ones_like(logits), weight=w)  # mean over the B + B/2 rows
    g_loss.backward()
    if out is not None:
        out["g_loss"] = np.array([g_loss.item()])
        out["g_logits"] = logits.detach()
        for k, p in G.named_parameters():
            out[f"grad.generator.{k}"] = p.grad.detach().clone()
    opt_g.step()  # D's gradients from this pass are never applied


def cmd_train_goldens(args):
    from safetensors import safe_open
    from safetensors.numpy import load_file

    cfg, opts = train_config(), dict(TRAIN_OPTIONS)
    t0 = time.time()
    out = gan_int_cls_step(cfg, opts, torch.float64)
    meta = {
        "format": TRAIN_FORMAT,
        "config": config_json(cfg),
        "options": json.dumps(opts, sort_keys=True),
        "data_seed": str(TRAIN_DATA_SEED),
        "noise_key": f"{NOISE_KEY:#x}",
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "train-gan.safetensors")
    save_safetensors_sorted(out, path, meta)
    back = load_file(path)
    with safe_open(path, "np") as f:
        assert f.metadata() == meta
    assert set(back) == set(out) and all(np.array_equal(back[k], out[k]) for k in out)
    assert all(np.isfinite(v).all() for v in out.values())
    print(f"{path}: {os.path.getsize(path)} bytes, {len(out)} tensors ({time.time() - t0:.1f} s)")
    print(f"  d_loss {out['d_loss'][0]:.6f} (real {out['d_loss_real'][0]:.6f}, wrong "
          f"{out['d_loss_wrong'][0]:.6f}, fake {out['d_loss_fake'][0]:.6f}), g_loss {out['g_loss'][0]:.6f}")
    if args.stats:
        f32 = gan_int_cls_step(cfg, opts, torch.float32)
        for k in sorted(out):
            a, r = f32[k].astype(np.float64), out[k].astype(np.float64)
            d = np.abs(a - r).max() if a.size else 0.0
            scale = max(np.abs(r).max(), 1e-30) if r.size else 1.0
            print(f"  f32 vs f64 {k}: max abs {d:.3e}, / max|ref| {d / scale:.3e} (max|ref| {scale:.3e})")


def print_golden_stats(cfg, ref):
    for k in ("embedding", "z", "image", "d_logits"):
        if k in ref:
            v = ref[k]
            assert np.isfinite(v).all(), f"{k} not finite"
            print(
                f"  {k}: mean {v.mean():+.4f} std {v.std():.4f} min {v.min():+.4f} "
                f"max {v.max():+.4f} mean|x| {np.abs(v).mean():.4f}"
            )
    if "image" in ref:
        img = ref["image"]
        print(
            f"  image: fraction |x|>0.99 {np.mean(np.abs(img) > 0.99):.4f}, "
            f"|x|>0.999 {np.mean(np.abs(img) > 0.999):.4f}, per-image std "
            + " ".join(f"{s:.3f}" for s in img.reshape(len(img), -1).std(1))
        )
    if "d_logits" in ref:
        print(f"  d_logits: {ref['d_logits'].tolist()}")
    f32 = golden_outputs(cfg, GOLDEN_CAPTIONS, GOLDEN_SEED, torch.float32)
    for k in ("embedding", "image", "d_logits"):
        if k in ref:
            a, b = f32[k].astype(np.float64), ref[k].astype(np.float64)
            d = np.abs(a - b)
            rel = d.max() / max(np.abs(b).max(), 1e-30)
            print(
                f"  f32 vs f64 {k}: max abs {d.max():.3e}, mean abs {d.mean():.3e}, "
                f"max abs / max|ref| {rel:.3e}, max elementwise rel "
                f"{(d / np.maximum(np.abs(b), 1e-3)).max():.3e}"
            )


# --------------------------------------------------------------------------------------------
# One DS-SJE iteration of the text encoder's trainer (tests/parity_sje.rs)
# --------------------------------------------------------------------------------------------

SJE_FORMAT = "text2img/train-sje/1"
IMAGE_NF = 32  # src/train/sje.rs IMAGE_NF
SJE_OPTIONS = {"batch": 4, "lr": 7e-4, "lr_decay": 0.98, "iters_per_epoch": 150, "seed": 0, "step": 0}
SJE_DATA_SEED = 20160520
# Upper case, '-' (-> 59), unknown characters (é, ü, em dash, emoji, 'İ' which lower-cases to
# two code points), and one caption past doc_length = 60 (truncation).
SJE_CAPTIONS = [
    "A Red Bird with a BLACK crown -- and a short, pointed beak.",
    "Small grey-blue bird; white belly & İris? ü é 🐦 — ok!",
    "THIS PARTICULAR FLOWER HAS LONG PURPLE PETALS WITH A YELLOW CENTER AND MANY STAMENS.",
    "x",
]
# Tensors with more than SJE_SAMPLE elements are stored as a sample: element k of the stored
# tensor is flat element (k * SJE_SAMPLE_MUL) mod n (distinct, as the multiplier is an odd prime
# and no n here is a multiple of it), with their gradient's sums over every axis but 0
# (grad_sum0.<name>), every axis but 1 (grad_sum1.<name>) and their L2 norm (grad_norm.<name>).
SJE_SAMPLE = 4096
SJE_SAMPLE_MUL = 2654435761

if torch is not None:

    class ImageEncoder(nn.Module):
        """src/train/sje.rs image_encoder: four 4x4 stride-2 convolutions 64 -> 4 (no bias; BN on
        all but the first; LeakyReLU 0.2) and a 4x4 convolution to the embedding size."""

        def __init__(self, embed, f=IMAGE_NF):
            super().__init__()
            self.conv0 = nn.Conv2d(3, f, 4, 2, 1, bias=False)
            self.conv1 = nn.Conv2d(f, 2 * f, 4, 2, 1, bias=False)
            self.bn1 = _bn2d(2 * f)
            self.conv2 = nn.Conv2d(2 * f, 4 * f, 4, 2, 1, bias=False)
            self.bn2 = _bn2d(4 * f)
            self.conv3 = nn.Conv2d(4 * f, 8 * f, 4, 2, 1, bias=False)
            self.bn3 = _bn2d(8 * f)
            self.conv4 = nn.Conv2d(8 * f, embed, 4, 1, 0, bias=False)

        def forward(self, img):
            x = _lrelu(self.conv0(img))
            x = _lrelu(self.bn1(self.conv1(x)))
            x = _lrelu(self.bn2(self.conv2(x)))
            x = _lrelu(self.bn3(self.conv3(x)))
            return self.conv4(x).reshape(img.shape[0], -1)

    class SjeNets(nn.Module):
        """The text encoder and the image CNN under the prefixes encoder. / image_encoder."""

        def __init__(self, cfg):
            super().__init__()
            self.encoder = Encoder(cfg)
            self.image_encoder = ImageEncoder(cfg["encoder"]["embed_dim"])


def sje_loss_torch(img, txt):
    """src/ops/loss.rs sje_loss: s_ij = img_i . txt_j,
    L = (1/B^2) sum_i sum_{j != i} [max(0, 1 + s_ij - s_ii) + max(0, 1 + s_ji - s_ii)]."""
    b = img.shape[0]
    s = img @ txt.T
    diag = s.diagonal()
    off = 1.0 - torch.eye(b, dtype=s.dtype)
    wrong_text = torch.relu(1.0 + s - diag[:, None]) * off  # [i, j]: 1 + s_ij - s_ii
    wrong_image = torch.relu(1.0 + s.T - diag[:, None]) * off  # [i, j]: 1 + s_ji - s_ii
    return (wrong_text.sum() + wrong_image.sum()) / (b * b), s


# The image CNN has no rule in docs/WEIGHTS.md: it takes synthetic_tensor of its names, with the
# last layer's weight times SJE_CONV4_GAIN (multiplied in f32, exact on both sides' IEEE f32), so
# that the image embeddings (|x| up to ~14) make 5 of the 24 hinge terms inactive (at gain 1 every
# term is active: the max(0, .) branch is never exercised and the text projection's bias gradient
# vanishes identically).
SJE_CONV4_GAIN = 6.0


def sje_synthetic(nets) -> dict:
    out = {}
    for k, v in text2img_state_dict(nets).items():
        t = synthetic_tensor(k, v.shape)
        if k == "image_encoder.conv4.weight":
            t = t * np.float32(SJE_CONV4_GAIN)
        assert t.dtype == np.float32
        out[k] = torch.from_numpy(t)
    return out


def sje_sample_index(n: int) -> np.ndarray:
    assert math.gcd(SJE_SAMPLE_MUL, n) == 1
    return (np.arange(SJE_SAMPLE, dtype=np.uint64) * np.uint64(SJE_SAMPLE_MUL)) % np.uint64(n)


def sje_step(cfg, opts, dtype=torch.float64 if torch else None, full=False):
    """Runs one step of SjeTrainer::step (src/train/sje.rs) from the synthetic weights (the
    image CNN's too: the WEIGHTS.md hash rule applied to its names) and returns
    {name: np.float32 array}: inputs (images, onehot), both embeddings, the scores, the loss, the
    gradients (grad.<name>), updated parameters and running statistics (new.<name>); tensors over
    SJE_SAMPLE elements sampled (see SJE_SAMPLE) unless `full`."""
    b = opts["batch"]
    nets = SjeNets(cfg)
    load_text2img(nets, sje_synthetic(nets))
    nets = nets.to(dtype).train()  # batch statistics, running statistics updated
    rng = np.random.default_rng(SJE_DATA_SEED)
    images = rng.uniform(-1.0, 1.0, (b, 3, 64, 64)).astype(np.float32)
    captions = SJE_CAPTIONS[:b]
    oh = onehot(captions, cfg)
    # SjeTrainer::lr() at step 0: lr_exponential(lr, 0, decay) = lr, as f32.
    lr = float(np.float32(opts["lr"] * opts["lr_decay"] ** (opts["step"] // opts["iters_per_epoch"])))
    params = list(nets.encoder.parameters()) + list(nets.image_encoder.parameters())
    opt = torch.optim.RMSprop(params, lr=lr, alpha=0.99, eps=1e-8)
    opt.zero_grad(set_to_none=False)
    txt = nets.encoder(torch.from_numpy(oh).to(dtype))
    img = nets.image_encoder(torch.from_numpy(images).to(dtype))
    loss, s = sje_loss_torch(img, txt)
    loss.backward()
    out = {
        "images": images, "onehot": oh, "txt_emb": txt.detach(), "img_emb": img.detach(),
        "scores": s.detach(), "loss": np.array([loss.item()]),
    }
    grads = {k: p.grad.detach().clone() for k, p in nets.named_parameters()}
    opt.step()
    for k, p in nets.named_parameters():  # torch's RMSprop state: v = (1 - alpha) g^2 at step 1
        sq = opt.state[p]["square_avg"]
        assert torch.allclose(sq, 0.01 * grads[k] ** 2, rtol=1e-12 if dtype == torch.float64 else 1e-5, atol=0)
    new = text2img_state_dict(nets)
    for k, g in grads.items():
        n = g.numel()
        if n <= SJE_SAMPLE or full:
            out[f"grad.{k}"] = g
            out[f"new.{k}"] = new[k]
        else:
            idx = torch.from_numpy(sje_sample_index(n).astype(np.int64))
            out[f"grad.{k}"] = g.reshape(-1)[idx]
            out[f"new.{k}"] = new[k].reshape(-1)[idx]
            dims = list(range(g.dim()))
            out[f"grad_sum0.{k}"] = g.sum([d for d in dims if d != 0])
            out[f"grad_sum1.{k}"] = g.sum([d for d in dims if d != 1])
            out[f"grad_norm.{k}"] = g.norm().reshape(1)
    for k, v in new.items():
        if k not in grads:
            out[f"new.{k}"] = v  # running statistics (small)
    return {
        k: (v.detach().to(torch.float32).numpy() if torch.is_tensor(v) else np.asarray(v, np.float32))
        for k, v in out.items()
    }


def cmd_sje_goldens(args):
    from safetensors import safe_open
    from safetensors.numpy import load_file

    cfg, opts = train_config(), dict(SJE_OPTIONS)
    t0 = time.time()
    out = sje_step(cfg, opts, torch.float64)
    meta = {
        "format": SJE_FORMAT,
        "config": config_json(cfg),
        "options": json.dumps(opts, sort_keys=True),
        "captions": json.dumps(SJE_CAPTIONS[: opts["batch"]], ensure_ascii=False),
        "data_seed": str(SJE_DATA_SEED),
        "image_nf": str(IMAGE_NF),
        "conv4_gain": str(SJE_CONV4_GAIN),
        "sample": json.dumps({"max": SJE_SAMPLE, "mul": SJE_SAMPLE_MUL}),
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "train-sje.safetensors")
    save_safetensors_sorted(out, path, meta)
    back = load_file(path)
    with safe_open(path, "np") as f:
        assert f.metadata() == meta
    assert set(back) == set(out) and all(np.array_equal(back[k], out[k]) for k in out)
    assert all(np.isfinite(v).all() for v in out.values())
    s = out["scores"].astype(np.float64)
    b = len(s)
    m1 = 1 + s - np.diag(s)[:, None]
    m2 = 1 + s.T - np.diag(s)[:, None]
    off = ~np.eye(b, dtype=bool)
    margins = np.concatenate([m1[off], m2[off]])
    print(f"{path}: {os.path.getsize(path)} bytes, {len(out)} tensors ({time.time() - t0:.1f} s)")
    print(f"  loss {out['loss'][0]:.6f}; {np.sum(margins > 0)} of {margins.size} hinge terms active, "
          f"min |margin| {np.abs(margins).min():.3e}; |emb| txt {np.abs(out['txt_emb']).max():.3f} "
          f"img {np.abs(out['img_emb']).max():.3f}")
    if args.stats:
        print_sje_stats(cfg, opts, out)


def print_sje_stats(cfg, opts, ref):
    """PyTorch f32 vs the f64 golden, in the metrics of tests/parity_sje.rs: gradients (stored
    elements) and their sums relative to the stored max (at least 1e-3 of the network's largest
    gradient), norms relative; updated weights absolute where |g| >= 1e-5; statistics absolute."""
    f32 = sje_step(cfg, opts, torch.float32)
    full64 = sje_step(cfg, opts, torch.float64, full=True)
    net_scale = {}
    for k, g in full64.items():
        if k.startswith("grad."):
            net = k.split(".")[1]
            net_scale[net] = max(net_scale.get(net, 0.0), float(np.abs(g).max()))
    print("  largest gradient per network: " + ", ".join(f"{n} {v:.3e}" for n, v in net_scale.items()))
    worst = {}
    for k in sorted(ref):
        a, r = f32[k].astype(np.float64), ref[k].astype(np.float64)
        d = np.abs(a - r)
        kind = k.split(".")[0]
        if k.startswith("grad"):
            name = k.split(".", 1)[1]
            floor = 1e-3 * net_scale[name.split(".")[0]]
            if kind == "grad_norm":
                e = d.max() / r.max()
            else:
                e = d.max() / max(np.abs(r).max(), floor)
        elif kind == "new":
            g = ref.get("grad." + k[4:])
            if g is None:
                kind, e = "stat", d.max()
            else:
                resolved = np.abs(g.astype(np.float64)) >= 1e-5
                e = d[resolved].max() if resolved.any() else 0.0
                print(f"    {k}: {np.sum(~resolved)} of {g.size} elements with |g| < 1e-5, "
                      f"max |delta| there {d[~resolved].max() if (~resolved).any() else 0:.2e}")
        else:
            kind, e = "forward", d.max() / max(np.abs(r).max(), 1e-30)
        if e >= worst.get(kind, (-1.0, ""))[0]:
            worst[kind] = (e, k)
        print(f"  f32 vs f64 {k}: {e:.3e}")
    for kind, (e, k) in sorted(worst.items()):
        print(f"  worst {kind}: {e:.3e} ({k})")


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def cmd_export(args):
    from safetensors.torch import save_file

    cfg = get_config(args.config)
    nets = tuple(n.strip() for n in args.networks.split(",") if n.strip())
    for n in nets:
        if n not in NETWORKS:
            sys.exit(f"unknown network {n!r}; expected some of {','.join(NETWORKS)}")
    model = build(cfg, nets, args.init)
    dt = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    tensors = {k: v.to(dt).contiguous() for k, v in text2img_state_dict(model).items()}
    meta = {"format": FORMAT, "config": config_json(cfg), "networks": ",".join(nets)}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_file(tensors, args.out, metadata=meta)
    print(f"{args.out}: {len(tensors)} tensors, {os.path.getsize(args.out)} bytes, {meta['networks']}")


def export_onnx(model_cfg_name, out_dir, opset=17, quiet=True):
    """Writes generator.onnx (z, embedding -> image), encoder.onnx (onehot -> embedding) and
    caption_to_image.onnx (onehot, z -> image), dynamic batch axis, eval mode, synthetic weights.
    Returns the three paths."""
    cfg = get_config(model_cfg_name)
    model = build(cfg, ("encoder", "generator"))
    os.makedirs(out_dir, exist_ok=True)
    B = 2
    nz, E = cfg["generator"]["nz"], cfg["encoder"]["embed_dim"]
    A, L = len(cfg["text"]["alphabet"]), cfg["text"]["doc_length"]
    z = torch.randn(B, nz)
    emb = torch.randn(B, E)
    oh = torch.from_numpy(onehot(["a red bird", "x"], cfg))
    jobs = [
        ("generator.onnx", model.generator, (z, emb), ["z", "embedding"], ["image"]),
        ("encoder.onnx", model.encoder, (oh,), ["onehot"], ["embedding"]),
        (
            "caption_to_image.onnx",
            CaptionToImage(model.encoder, model.generator).eval(),
            (oh, z),
            ["onehot", "z"],
            ["image"],
        ),
    ]
    paths = []
    for fname, mod, inputs, in_names, out_names in jobs:
        path = os.path.join(out_dir, fname)
        axes = {n: {0: "batch"} for n in in_names + out_names}
        with torch.no_grad():
            _onnx_export(mod, inputs, path, in_names, out_names, axes, opset, quiet)
        paths.append(path)
    return paths


def _onnx_export(mod, inputs, path, in_names, out_names, axes, opset, quiet):
    import contextlib
    import io
    import warnings

    sink = io.StringIO()
    ctx = contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext()
    with warnings.catch_warnings(), ctx:
        warnings.simplefilter("ignore")
        try:  # TorchScript exporter: plain unrolled graph, no onnxscript needed.
            torch.onnx.export(
                mod, inputs, path, input_names=in_names, output_names=out_names,
                dynamic_axes=axes, opset_version=opset, dynamo=False,
            )
            return
        except Exception as e:  # noqa: BLE001  (removed in some torch versions)
            legacy_err = e
        try:
            batch = torch.export.Dim("batch", min=1, max=4096)
            shapes = {n: {0: batch} for n in in_names}
            prog = torch.onnx.export(
                mod, inputs, input_names=in_names, output_names=out_names,
                dynamic_shapes=shapes, opset_version=max(opset, 18), dynamo=True,
            )
            prog.save(path)
        except Exception as e:  # noqa: BLE001
            raise RuntimeError(f"ONNX export failed: legacy: {legacy_err}; dynamo: {e}") from e


def cmd_onnx(args):
    paths = export_onnx(args.config, args.out, args.opset, quiet=not args.verbose)
    import onnx

    for p in paths:
        onnx.checker.check_model(onnx.load(p))
        print(f"{p}: {os.path.getsize(p)} bytes")
    if not args.no_check:
        check_onnx(args.config, args.out)


def check_onnx(config, out_dir):
    """Compares onnxruntime with PyTorch eager at batch 1 and 3."""
    import onnxruntime as ort

    cfg = get_config(config)
    model = build(cfg, ("encoder", "generator"))
    for B in (1, 3):
        caps = GOLDEN_CAPTIONS[:B]
        oh = onehot(caps, cfg)
        z = noise(GOLDEN_SEED, range(B), cfg["generator"]["nz"])
        with torch.no_grad():
            emb = model.encoder(torch.from_numpy(oh))
            img = model.generator(torch.from_numpy(z), emb).numpy()
            emb = emb.numpy()
        sess = {
            n: ort.InferenceSession(os.path.join(out_dir, n + ".onnx"), providers=["CPUExecutionProvider"])
            for n in ("encoder", "generator", "caption_to_image")
        }
        e2 = sess["encoder"].run(None, {"onehot": oh})[0]
        i2 = sess["generator"].run(None, {"z": z, "embedding": emb})[0]
        i3 = sess["caption_to_image"].run(None, {"onehot": oh, "z": z})[0]
        print(
            f"  onnxruntime vs torch, batch {B}: encoder max abs {np.abs(e2 - emb).max():.2e}, "
            f"G {np.abs(i2 - img).max():.2e}, caption->image {np.abs(i3 - img).max():.2e}"
        )


# --------------------------------------------------------------------------------------------
# Self-test
# --------------------------------------------------------------------------------------------

EXPECTED_COUNTS = {
    ("reed-cub", "generator"): 18_905_472,
    ("reed-cub", "discriminator"): 4_030_080,
    ("reed-cub", "encoder"): 4_045_184,
    ("reed-flowers", "encoder"): 2_994_560,
}


def cmd_selftest(args):
    ok = True

    def check(cond, msg):
        nonlocal ok
        print(("ok   " if cond else "FAIL ") + msg)
        ok &= bool(cond)

    for ctr, key, want in PHILOX_KAT:
        got = tuple(int(v) for v in philox4x32_10(ctr, key)[:, 0])
        check(got == want, "philox4x32-10 KAT ctr=" + " ".join(f"{c:08x}" for c in ctr)
              + " -> " + " ".join(f"{v:08x}" for v in got))
    # Vectorised Philox equals the per-counter one.
    ctrs = np.array([[1, 2, 3, 0xFFFFFFFF], [5, 0, 7, 8], [0, 0, 0, 1], [9, 9, 9, 9]], np.uint32)
    vec = philox4x32_10(ctrs, [7, 11])
    one = np.stack([philox4x32_10(ctrs[:, j], [7, 11])[:, 0] for j in range(4)], 1)
    check(np.array_equal(vec, one), "philox vectorised == scalar")
    # Noise: independent of the batch composition, roughly N(0, 1).
    z = noise(42, range(4), 100)
    z2 = noise(42, [2], 100)
    check(np.array_equal(z[2], z2[0]), "noise of image 2 independent of the batch")
    big = noise(7, range(2000), 100)
    check(abs(big.mean()) < 0.01 and abs(big.std() - 1) < 0.01,
          f"noise mean {big.mean():+.4f} std {big.std():.4f}")
    hi = noise(1 << 33, [1 << 40], 8)
    check(np.isfinite(hi).all(), "noise with 64-bit seed and image index")
    # One-hot rules.
    cfg = get_config("reed-cub")
    oh = onehot(["Ab-é", "x" * 300, ""], cfg)
    check(oh[0, 0, 0] == 1 and oh[0, 1, 1] == 1 and oh[0, 59, 2] == 1 and oh[0, 36].sum() == 0
          and oh[0, :, 3].sum() == 0 and oh[0, :, 4:].sum() == 0, "onehot: case, '-'->59, unknown, padding")
    check(oh[1].sum() == 201 and oh[2].sum() == 0, "onehot: truncation at 201, empty caption")
    # Hash: FNV-1a of "" and "a" (published values).
    check(fnv1a64("") == 0xCBF29CE484222325 and fnv1a64("a") == 0xAF63DC4C8601EC8C, "fnv1a64")
    def hash_py(name, i):  # plain Python ints, independent of numpy's uint64 wrapping
        m = (1 << 64) - 1
        x = (fnv1a64(name) + (i + 1) * 0x9E3779B97F4A7C15) & m
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
        x ^= x >> 31
        return 2.0 * (x >> 40) / 2.0**24 - 1.0

    name = "encoder.rnn.weight_hh"
    s = hash_uniform(name, 5000)
    check(all(s[i] == hash_py(name, i) for i in (0, 1, 2, 4097, 4999)), "hash numpy == python ints")
    w = synthetic_tensor("generator.deconv1.weight", (1024, 512, 4, 4)).reshape(-1)
    w_py = np.float32(hash_py("generator.deconv1.weight", 77) * math.sqrt(6.0 / (1024 * 16 / 4)))
    v = synthetic_tensor("discriminator.text_bn.running_var", (128,))
    check(w[77] == w_py and v[5] == np.float32(1 + 0.25 * (hash_py("discriminator.text_bn.running_var", 5) + 1)),
          "synthetic value rules (deconv fan_in, text_bn running_var)")
    s = hash_uniform("generator.deconv0.weight", 100000)
    check(s.min() >= -1 and s.max() < 1 and abs(s.mean()) < 0.01, f"hash uniform mean {s.mean():+.4f}")
    # Parameter counts and state_dict names / shapes.
    if torch is not None:
        for cname in ("reed-cub", "reed-flowers", "shapes"):
            model = build(get_config(cname), init="synthetic")
            sd = text2img_state_dict(model)
            counts = {n: param_count(getattr(model, n)) for n in NETWORKS}
            for n in NETWORKS:
                want = EXPECTED_COUNTS.get((cname, n))
                if want is not None:
                    check(counts[n] == want, f"{cname} {n} parameters {counts[n]:,} (want {want:,})")
            print(f"     {cname}: " + ", ".join(f"{n} {c:,}" for n, c in counts.items())
                  + f"; {len(sd)} tensors")
        sd = text2img_state_dict(build(get_config("reed-cub")))
        shapes = {k: list(v.shape) for k, v in sd.items()}
        check(shapes["encoder.rnn.weight_ih"] == [1536, 512]
              and shapes["generator.deconv0.weight"] == [228, 1024, 4, 4]
              and shapes["discriminator.conv4.weight"] == [512, 640, 1, 1]
              and shapes["generator.res1.conv3.weight"] == [512, 128, 3, 3]
              and "discriminator.text_bn.running_var" in shapes
              and not any(k.endswith("num_batches_tracked") for k in shapes), "state_dict names")
        # Encoder time steps: 18 (cub), 8 (flowers).
        for cname, T in (("reed-cub", 18), ("reed-flowers", 8)):
            enc = build(get_config(cname), ("encoder",)).encoder
            seen = {}
            h = enc.rnn.register_forward_hook(lambda m, i, o: seen.update(T=o.shape[1]))
            with torch.no_grad():
                enc(torch.zeros(1, 70, 201))
            h.remove()
            check(seen["T"] == T, f"{cname} encoder time steps {seen['T']}")
        # FixedGRU against an explicit per-element loop of the WEIGHTS.md equations.
        g = FixedGRU(3, 2).double()
        with torch.no_grad():
            for p in g.parameters():
                p.uniform_(-1, 1)
            x = torch.randn(1, 4, 3, dtype=torch.float64)
            got = g(x)[0]
        Wi, bi, Wh, bh = (p.detach().numpy() for p in (g.weight_ih, g.bias_ih, g.weight_hh, g.bias_hh))
        xs = x[0].numpy()
        sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
        h = np.tanh(Wi[4:6] @ xs[0] + bi[4:6])
        hs = [h]
        for t in range(1, 4):
            aih, ahh = Wi @ xs[t] + bi, Wh @ h + bh
            r, zz = sig(aih[0:2] + ahh[0:2]), sig(aih[2:4] + ahh[2:4])
            n = np.tanh(aih[4:6] + Wh[4:6] @ (r * h) + bh[4:6])
            h = zz * n + (1 - zz) * h
            hs.append(h)
        check(np.allclose(got.numpy(), np.stack(hs), atol=1e-12), "FixedGRU equations")
    if not ok:
        sys.exit("selftest FAILED")
    print("selftest passed")


# --------------------------------------------------------------------------------------------


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("selftest", help="Philox KATs, one-hot rules, parameter counts")
    s.set_defaults(fn=cmd_selftest)
    s = sub.add_parser("goldens", help="write tests/data/golden/<config>.safetensors")
    s.add_argument("--out", default="tests/data/golden")
    s.add_argument("--configs", default="reed-cub,reed-flowers,shapes")
    s.add_argument("--stats", action="store_true", help="print statistics and f32-vs-f64 differences")
    s.set_defaults(fn=cmd_goldens)
    s = sub.add_parser("train-goldens", help="write tests/data/golden/train-gan.safetensors (one GAN step)")
    s.add_argument("--out", default="tests/data/golden")
    s.add_argument("--stats", action="store_true", help="print the f32-vs-f64 differences of every tensor")
    s.set_defaults(fn=cmd_train_goldens)
    s = sub.add_parser("sje-goldens", help="write tests/data/golden/train-sje.safetensors (one DS-SJE step)")
    s.add_argument("--out", default="tests/data/golden")
    s.add_argument("--stats", action="store_true", help="print the f32-vs-f64 differences of every tensor")
    s.set_defaults(fn=cmd_sje_goldens)
    s = sub.add_parser("export", help="write a weights file in the text2img format")
    s.add_argument("--config", required=True, help="built-in config name or config JSON path")
    s.add_argument("--out", required=True)
    s.add_argument("--init", choices=("synthetic", "torch"), default="synthetic")
    s.add_argument("--networks", default=",".join(NETWORKS))
    s.add_argument("--dtype", choices=("f32", "f16", "bf16"), default="f32")
    s.set_defaults(fn=cmd_export)
    s = sub.add_parser("onnx", help="export encoder, G and caption->image to ONNX")
    s.add_argument("--config", required=True)
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument("--opset", type=int, default=17)
    s.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    s.add_argument("--verbose", action="store_true")
    s.set_defaults(fn=cmd_onnx)
    args = p.parse_args(argv)
    if torch is None and args.cmd != "selftest":
        sys.exit("torch is not installed: run scripts/setup_venv.sh and use .venv/bin/python")
    args.fn(args)


if __name__ == "__main__":
    main()
