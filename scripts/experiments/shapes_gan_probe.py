#!/usr/bin/env python3
"""Recipe probe for the default model (issue 5): GAN-INT-CLS on `shapes` in PyTorch, with the
changes under test switchable, exporting G (with the encoder) so that `text2img eval` judges it.

PyTorch runs the shapes config's iteration about twice as fast as our trainer on 2 cores, so a
recipe is tried here first and built into the engine only when it pays. Not used by CI or by the
shipped weights. Follows our trainer's step (scripts/reference.py's networks; D step: real 1,
wrong 0.5, fake 0.5, three separate passes; G step on B + B/2 interpolated rows) and our sampler
on `shapes` (no zoom, a wrong image of another class, the mean of 4 of an image's 10 captions).

Switches:
  --sn            spectral norm (Miyato et al. 2018) on every conv and linear of D
  --classifier W  D's auxiliary classifier of shape kind, colour and size (AC-GAN), G's term W
  --ac-fake       the classifier also learns G's images with their captions' labels (AC-GAN)
  --cls-pretrain N  before the GAN, N steps training D's trunk and classifier on real images
                  alone (its own Adam, lr --cls-pretrain-lr), so G's class term starts from a
                  classifier that knows shapes instead of one G can fool
  --sep-cls       with --cls-pretrain: the pretrained classifier is a separate network (D's
                  trunk architecture), kept training on real images at --lr-d; G's class term
                  comes from it, while D (and its own classifier) train as without the switch
  --mbstd         minibatch standard deviation as one more channel of D's 4×4 features
  --proj          a projection discriminator (Miyato & Koyama 2018) in place of the 4×4 text
                  concatenation: logit = ψ(h) + <V φ(t), Σ h>, h = D's 4×4 features
  --r1 G, --r1-every N   R1 penalty (Mescheder et al. 2018): G/2 · E‖∇ₓ D(x, t)‖² on the real
                  pairs, every N D steps (weighted by N, lazily, as StyleGAN2 does)
  --hinge         hinge losses (D: relu(1 - real) + relu(1 + wrong)/2 + relu(1 + fake)/2; G: -D)
  --mode-seeking W, --ms-from N   our trainer's mode-seeking term, from step N
  --ms-pool K     the mode-seeking term measures image distance after K×K average pooling, so
                  that moving the shape counts and high-frequency stripes do not
  --ms-same-pass  both images of a mode-seeking pair come from one G forward pass of their own
                  (B rows: B/2 captions twice): without it one image comes from the G step's pass
                  (B + B/2 rows) and the other from a pass of B/2 rows, whose batch-norm statistics
                  differ, and G can satisfy the term through them (session 7)
  --vae W, --kl K  a conditional VAE path beside the GAN (cVAE-GAN, as in BicycleGAN, Zhu et al.
                  2017): an image encoder E (S's architecture, out 2·nz) gives q(z | x) for the real
                  images; G(z ~ q, φ(t)) must rebuild x (W · mean |Δ|) and q pays K · KL(q ‖ N(0, I))
                  (summed over nz, mean over the batch); E trains with G's optimizer
  --g-plus        G with a coordinate map (y, x) and a 16-wide projection of the caption concatenated to the
                  input of every upsampling layer (not the shipped architecture: a probe of
                  whether G learns outlines faster when every scale knows where it is and what
                  the caption asks; CoordConv, Liu et al. 2018). Exports are not engine-loadable.
  --no-gan        with --vae: no D and no adversarial term (a plain conditional VAE), to see how
                  fast G learns outlines from pixels alone; each export also writes
                  recon-<step>.png (real images, their reconstructions, prior samples)
  --shape-weight L  with --vae: pixels within 1.2 radii of the shape's centre (attributes.jsonl)
                  count 1 + L times in the rebuild term, so the outline is not drowned by the
                  background (the shape is 4–30 % of the image)
  --vae-fake      D also sees the reconstructions as fakes (weight 0.5, sharing the fake term)
  --lr-d/--lr-g, --beta1, --beta2, --ndf, --ngf

Usage (repository root; the venv of scripts/setup_venv.sh):
  .venv/bin/python scripts/experiments/shapes_gan_probe.py --data /tmp/shapes \
      --encoder /tmp/enc/encoder.safetensors --out /tmp/probe/sn --steps 2000 --sn --export-every 500
then `text2img eval -m /tmp/probe/sn/model-2000.safetensors --judge ... --data /tmp/shapes`.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import reference as ref  # noqa: E402

SIZES = ["small", "medium", "large"]


def read_lines(p):
    with open(p, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def load_encoder(path):
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        cfg = json.loads(f.metadata()["config"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    enc = ref.Encoder(cfg)
    enc.load_state_dict({k[len("encoder."):]: v.float() for k, v in tensors.items()})
    return cfg, enc.eval(), tensors


@torch.no_grad()
def embed(enc, cfg, caps, bs=512):
    out = []
    for i in range(0, len(caps), bs):
        out.append(enc(torch.from_numpy(ref.onehot(caps[i : i + bs], cfg))).numpy())
    return np.concatenate(out, 0)


def load_data(data, enc_path):
    """Training-class images [N, 3, 64, 64] uint8, labels [N, 3] (kind, colour, size), class
    ids, caption embeddings [N, 10, E]; cached beside the dataset per encoder."""
    key = hashlib.sha1(open(enc_path, "rb").read()).hexdigest()[:12]
    cache = os.path.join(data, f".probe-cache-{key}.npz")
    if os.path.exists(cache):
        d = np.load(cache)
        return d["imgs"], d["labels"], d["cls"], d["emb"]
    from PIL import Image

    cfg, enc, _ = load_encoder(enc_path)
    train = set(read_lines(f"{data}/trainvalclasses.txt"))
    meta = json.load(open(f"{data}/shapes.json"))
    palette, shapes = [c[0] for c in meta["palette"]], meta["shapes"]
    imgs, labels, cls, caps = [], [], [], []
    for line in open(f"{data}/attributes.jsonl", encoding="utf-8"):
        a = json.loads(line)
        if a["class"] not in train:
            continue
        imgs.append(np.asarray(Image.open(f"{data}/{a['image']}").convert("RGB")).transpose(2, 0, 1))
        labels.append([shapes.index(a["shape"]), palette.index(a["colour"]), SIZES.index(a["size"])])
        cls.append(a["class_id"])
        stem = a["image"][len("images/"):-4]
        cl = read_lines(f"{data}/text_c10/{stem}.txt")
        assert len(cl) == 10, stem
        caps.extend(cl)
    t0 = time.time()
    emb = embed(enc, cfg, caps).reshape(len(cls), 10, -1).astype(np.float32)
    print(f"embedded {len(caps)} captions in {time.time() - t0:.0f} s", flush=True)
    imgs, labels, cls = np.stack(imgs), np.array(labels), np.array(cls)
    np.savez(cache, imgs=imgs, labels=labels, cls=cls, emb=emb)
    return imgs, labels, cls, emb


def d_forward(D, img, emb, head):
    """Reed's D (reference.py) returning the logit and, with a head, the classifier's logits
    from the image trunk (before the text joins)."""
    x = ref._lrelu(D.conv0(img))
    x = ref._lrelu(D.bn1(D.conv1(x)))
    x = D.bn2(D.conv2(x))
    x = D.bn3(D.conv3(x))
    trunk = D.res(x)
    if getattr(D, "mbstd", False):
        # Minibatch standard deviation (Karras et al. 2018): the mean over features and
        # positions of the batch's per-feature std, as one more constant channel, so a batch of
        # near-identical fakes is visible to D.
        sd = trunk.std(0, unbiased=False).mean()
        trunk_d = torch.cat([trunk, sd.expand(trunk.shape[0], 1, trunk.shape[2], trunk.shape[3])], 1)
    else:
        trunk_d = trunk
    if getattr(D, "proj", None) is not None:
        h = ref._lrelu(D.conv4(trunk_d))
        logit = D.conv5(h).reshape(-1) + (h.sum((2, 3)) * D.proj(emb)).sum(1)
        return logit, (head(trunk).flatten(1) if head is not None else None)
    t = ref._lrelu(D.text_bn(D.text_proj(emb)))
    t = t[:, :, None, None].expand(-1, -1, trunk.shape[2], trunk.shape[3])
    x = ref._lrelu(D.bn4(D.conv4(torch.cat([trunk_d, t], 1))))
    logit = D.conv5(x).reshape(-1)
    return logit, (head(trunk).flatten(1) if head is not None else None)


def class_loss(logits, labels, sizes):
    loss, first = 0.0, 0
    for a, k in enumerate(sizes):
        loss = loss + F.cross_entropy(logits[:, first : first + k], labels[:, a])
        first += k
    return loss


PLUS_TEXT = 16


class GPlus(nn.Module):
    """--g-plus: Reed's G with (y, x) coordinates and the projected caption concatenated to the
    input of deconv1..deconv4."""

    def __init__(self, cfg):
        super().__init__()
        g = cfg["generator"]
        nz, nt, f = g["nz"], g["nt"], g["ngf"]
        extra = 2 + PLUS_TEXT
        self.text_proj = nn.Linear(cfg["encoder"]["embed_dim"], nt)
        # A narrow second projection of the caption for the later scales (cheap at 32×32).
        self.text_small = nn.Linear(cfg["encoder"]["embed_dim"], PLUS_TEXT)
        self.deconv0 = nn.ConvTranspose2d(nz + nt, 8 * f, 4, 1, 0, bias=False)
        self.bn0 = ref._bn2d(8 * f)
        self.res0 = ref.ResBlock(8 * f, 2 * f, torch.relu)
        self.deconv1 = nn.ConvTranspose2d(8 * f + extra, 4 * f, 4, 2, 1, bias=False)
        self.bn1 = ref._bn2d(4 * f)
        self.res1 = ref.ResBlock(4 * f, f, torch.relu)
        self.deconv2 = nn.ConvTranspose2d(4 * f + extra, 2 * f, 4, 2, 1, bias=False)
        self.bn2 = ref._bn2d(2 * f)
        self.deconv3 = nn.ConvTranspose2d(2 * f + extra, f, 4, 2, 1, bias=False)
        self.bn3 = ref._bn2d(f)
        self.deconv4 = nn.ConvTranspose2d(f + extra, 3, 4, 2, 1, bias=False)
        for m in self.modules():
            if isinstance(m, (nn.ConvTranspose2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.02)

    @staticmethod
    def aug(x, t):
        b, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h).view(1, 1, h, 1).expand(b, 1, h, w)
        xs = torch.linspace(-1, 1, w).view(1, 1, 1, w).expand(b, 1, h, w)
        return torch.cat([x, ys, xs, t[:, :, None, None].expand(-1, -1, h, w)], 1)

    def forward(self, z, emb):
        t = ref._lrelu(self.text_proj(emb))
        x = self.res0(self.bn0(self.deconv0(torch.cat([z, t], 1)[:, :, None, None])))
        t = ref._lrelu(self.text_small(emb))
        x = self.res1(self.bn1(self.deconv1(self.aug(x, t))))
        x = torch.relu(self.bn2(self.deconv2(self.aug(x, t))))
        x = torch.relu(self.bn3(self.deconv3(self.aug(x, t))))
        return torch.tanh(self.deconv4(self.aug(x, t)))


def shape_geometry(data):
    """(x, y, radius) of the training-class images, in load_data's order."""
    train = set(read_lines(f"{data}/trainvalclasses.txt"))
    rows = [json.loads(line) for line in open(f"{data}/attributes.jsonl", encoding="utf-8")]
    return torch.tensor([[a["x"], a["y"], a["radius"]] for a in rows if a["class"] in train], dtype=torch.float32)


def pixel_weights(geo, extra):
    """[B, 1, 64, 64]: 1 + extra inside 1.2 radii of each shape's centre."""
    ys = torch.arange(64, dtype=torch.float32).view(1, 64, 1) + 0.5
    xs = torch.arange(64, dtype=torch.float32).view(1, 1, 64) + 0.5
    d2 = (xs - geo[:, 0, None, None]) ** 2 + (ys - geo[:, 1, None, None]) ** 2
    inside = (d2 <= (1.2 * geo[:, 2, None, None]) ** 2).float()
    return (1.0 + extra * inside)[:, None]


def vae_only_step(G, E, opt, real, t, nz, args, w=None):
    """One step of the plain conditional VAE (--no-gan): rebuild + KL, no D."""
    b = real.shape[0]
    mu_lv = E(real).flatten(1)
    mu, logvar = mu_lv[:, :nz], mu_lv[:, nz:].clamp(-10, 10)
    z = mu + torch.randn(b, nz) * (0.5 * logvar).exp()
    x = G(z, t)
    diff = (x - real).abs()
    recon = diff.mean() if w is None else (diff * w).sum() / (w.sum() * 3)
    kl = (0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)).mean()
    loss = args.vae * recon + args.kl * kl
    out = {"recon": recon.detach(), "kl": kl.detach()}
    if args.edge_weight > 0:
        # --edge-weight: L1 between Sobel gradients, so the outline (not the area) carries the loss.
        ed = (sobel(x) - sobel(real)).abs()
        edge = ed.mean() if w is None else (ed * w).sum() / (w.sum() * 6)
        loss = loss + args.edge_weight * edge
        out["edge"] = edge.detach()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return out


def sobel(x):
    """[B, 6, H, W]: horizontal and vertical Sobel gradients of each channel (/8, edge-replicated)."""
    k = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8
    c = x.shape[1]
    kern = torch.stack([k, k.t()]).repeat(c, 1, 1)[:, None]
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kern, groups=c)


@torch.no_grad()
def recon_png(G, E, real, t, nz, path):
    """Rows: 8 real images, their reconstructions (z = μ), and samples from the prior."""
    from PIL import Image

    G.eval(), E.eval()
    x = real[:8]
    mu = E(x).flatten(1)[:, :nz]
    rows = [x, G(mu, t[:8]), G(torch.randn(8, nz), t[:8])]
    G.train(), E.train()
    grid = torch.cat([torch.cat(list(r), 2) for r in rows], 1)
    arr = ((grid.clamp(-1, 1) + 1) * 127.5).byte().permute(1, 2, 0).numpy()
    Image.fromarray(arr).save(path)


def record(rec, acc, it, every, log, t_start):
    """Adds a step's numbers to `acc`; every `every` steps writes their means and starts over."""
    for k, v in rec.items():
        acc.setdefault(k, []).append(float(v.detach()) if torch.is_tensor(v) else float(v))
    if it % every:
        return acc
    out = {"step": it, "s_per_it": round((time.time() - t_start) / it, 3)}
    out.update({k: round(float(np.mean(v)), 4) for k, v in acc.items()})
    log.write(json.dumps(out) + "\n")
    log.flush()
    print(json.dumps(out), flush=True)
    return {}


def export(G, enc_tensors, cfg, path):
    from safetensors.torch import save_file

    tensors = {k: v for k, v in enc_tensors.items()}
    for k, v in G.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            tensors[f"generator.{k}"] = v.detach().float().contiguous()
    meta = {"format": ref.FORMAT, "config": json.dumps(cfg), "networks": "encoder,generator"}
    save_file(tensors, path, metadata=meta)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--encoder", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--export-every", type=int, default=500)
    ap.add_argument("--sn", action="store_true")
    ap.add_argument("--classifier", type=float, default=0.0)
    ap.add_argument("--ac-fake", action="store_true")
    ap.add_argument("--cls-pretrain", type=int, default=0)
    ap.add_argument("--cls-pretrain-lr", type=float, default=1e-3)
    ap.add_argument("--sep-cls", action="store_true")
    ap.add_argument("--mbstd", action="store_true")
    ap.add_argument("--proj", action="store_true")
    ap.add_argument("--hinge", action="store_true")
    ap.add_argument("--r1", type=float, default=0.0)
    ap.add_argument("--r1-every", type=int, default=4)
    ap.add_argument("--mode-seeking", type=float, default=0.0)
    ap.add_argument("--ms-from", type=int, default=0)
    ap.add_argument("--ms-pool", type=int, default=1)
    ap.add_argument("--ms-same-pass", action="store_true")
    ap.add_argument("--vae", type=float, default=0.0)
    ap.add_argument("--kl", type=float, default=0.01)
    ap.add_argument("--vae-fake", action="store_true")
    ap.add_argument("--no-gan", action="store_true")
    ap.add_argument("--g-plus", action="store_true")
    ap.add_argument("--shape-weight", type=float, default=0.0)
    ap.add_argument("--edge-weight", type=float, default=0.0)
    ap.add_argument("--oracle", type=float, default=0.0)
    ap.add_argument("--lr-d", type=float, default=2e-4)
    ap.add_argument("--lr-g", type=float, default=2e-4)
    ap.add_argument("--beta1", type=float, default=0.5)
    ap.add_argument("--beta2", type=float, default=0.999)
    ap.add_argument("--ndf", type=int, default=None)
    ap.add_argument("--ngf", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    imgs, labels, cls, emb = load_data(args.data, args.encoder)
    imgs, labels, emb = torch.from_numpy(imgs), torch.from_numpy(labels), torch.from_numpy(emb)
    n = len(cls)
    _, _, enc_tensors = load_encoder(args.encoder)
    from safetensors import safe_open

    with safe_open(args.encoder, "pt") as f:
        cfg = json.loads(f.metadata()["config"])
    if args.ngf:
        cfg["generator"]["ngf"] = args.ngf
    if args.ndf:
        cfg["discriminator"]["ndf"] = args.ndf
    model = ref.build(cfg, ("generator", "discriminator"), init="torch")
    G, D = model.generator.train(), model.discriminator.train()
    if args.oracle > 0:
        assert args.no_gan, "--oracle is for the --no-gan probe (D reads the caption alone)"
        g_cfg = copy.deepcopy(cfg)
        g_cfg["encoder"]["embed_dim"] += 8 + 10 + len(SIZES)
        G = ref.build(g_cfg, ("generator",), init="torch").generator.train()
    if args.g_plus:
        G = GPlus(cfg).train()
    sizes = [8, 10, len(SIZES)]
    ndf = cfg["discriminator"]["ndf"]
    head = nn.Conv2d(8 * ndf, sum(sizes), 4, 1, 0, bias=False) if args.classifier > 0 else None
    if head is not None:
        nn.init.normal_(head.weight, 0.0, 0.02)
        D.add_module("classifier", head)
    if args.mbstd:
        D.mbstd = True
        nt = cfg["discriminator"]["nt"]
        D.conv4 = nn.Conv2d(8 * ndf + 1 + nt, 8 * ndf, 1, bias=False)
        nn.init.normal_(D.conv4.weight, 0.0, 0.02)
    D.proj = None
    if args.proj:
        extra = 1 if args.mbstd else 0
        D.conv4 = nn.Conv2d(8 * ndf + extra, 8 * ndf, 1, bias=False)
        nn.init.normal_(D.conv4.weight, 0.0, 0.02)
        D.proj = nn.Linear(cfg["encoder"]["embed_dim"], 8 * ndf, bias=False)
        nn.init.normal_(D.proj.weight, 0.0, 0.02)
        del D.text_proj
    if args.sn:
        for name, m in list(D.named_modules()):
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.utils.parametrizations.spectral_norm(m)
    opt_d = torch.optim.Adam(D.parameters(), lr=args.lr_d, betas=(args.beta1, args.beta2), eps=1e-8)
    E = None
    if args.vae > 0:
        f = 32
        layers = [nn.Conv2d(3, f, 4, 2, 1, bias=False), nn.LeakyReLU(0.2)]
        for cin in (f, 2 * f, 4 * f):
            layers += [nn.Conv2d(cin, 2 * cin, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * cin), nn.LeakyReLU(0.2)]
        layers += [nn.Conv2d(8 * f, 2 * cfg["generator"]["nz"], 4, 1, 0)]
        E = nn.Sequential(*layers)
        for m in E.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
    g_params = list(G.parameters()) + (list(E.parameters()) if E is not None else [])
    opt_g = torch.optim.Adam(g_params, lr=args.lr_g, betas=(args.beta1, args.beta2), eps=1e-8)
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed + 1)
    b, nz = args.batch, cfg["generator"]["nz"]
    bce = F.binary_cross_entropy_with_logits
    if args.hinge:
        # Hinge losses through the same call sites: target 1 -> relu(1 - x) (D) or -x (G's term
        # is marked by g=True), target 0 -> relu(1 + x).
        def bce(lg, tgt, g=False):
            if g:
                return -lg.mean()
            return torch.where(tgt > 0.5, F.relu(1 - lg), F.relu(1 + lg)).mean()

    last_rows = [None]
    geo = shape_geometry(args.data) if args.shape_weight > 0 else None
    if geo is not None:
        assert len(geo) == n, (len(geo), n)

    def batch():
        ri = rng.integers(0, n, b)
        wi = rng.integers(0, n, b)
        bad = cls[wi] == cls[ri]
        while bad.any():
            wi[bad] = rng.integers(0, n, bad.sum())
            bad = cls[wi] == cls[ri]
        capi = rng.integers(0, 10, (b, 4))
        t = emb[torch.from_numpy(ri)[:, None], torch.from_numpy(capi)].mean(1)
        as_float = lambda idx: imgs[torch.from_numpy(idx)].float() / 127.5 - 1
        last_rows[0] = ri
        return as_float(ri), as_float(wi), t, labels[torch.from_numpy(ri)]

    log = open(f"{args.out}/log.jsonl", "w")
    if args.cls_pretrain > 0:
        assert head is not None, "--cls-pretrain needs --classifier"
    C, c_head = (D, head)
    if args.sep_cls:
        C = copy.deepcopy(D)
        c_head = C.classifier
    if args.cls_pretrain > 0:
        opt_c = torch.optim.Adam(C.parameters(), lr=args.cls_pretrain_lr, betas=(0.9, 0.999))
        losses, rights = [], []
        for it in range(1, args.cls_pretrain + 1):
            real, _, t, lab = batch()
            _, cl = d_forward(C, real, t, c_head)
            loss = class_loss(cl, lab, sizes)
            opt_c.zero_grad(set_to_none=True)
            loss.backward()
            opt_c.step()
            losses.append(float(loss))
            kind = cl[:, :8].argmax(1) == lab[:, 0]
            rights.append(float(kind.float().mean()))
            if it % args.log_every == 0:
                out = {"pretrain_step": it, "d_class": round(np.mean(losses), 4), "kind_acc": round(np.mean(rights), 4)}
                losses, rights = [], []
                log.write(json.dumps(out) + "\n")
                print(json.dumps(out), flush=True)
    if args.sep_cls:
        opt_c = torch.optim.Adam(C.parameters(), lr=args.lr_d, betas=(args.beta1, args.beta2), eps=1e-8)
    acc = {}
    t_start = time.time()
    for it in range(1, args.steps + 1):
        real, wrong, t, lab = batch()
        z_d, z_g = torch.randn(b, nz), torch.randn(b + b // 2, nz)
        if args.oracle > 0:
            # --oracle S: the true kind, colour and size as one-hots (× S) after the caption, so
            # G is told the shape outright (a probe of how much the embedding's shape signal limits G).
            hot = [F.one_hot(lab[:, i].long(), n) for i, n in enumerate(sizes)]
            t = torch.cat([t, args.oracle * torch.cat(hot, 1).float()], 1)
        if args.no_gan:
            w = None if geo is None else pixel_weights(geo[torch.from_numpy(last_rows[0])], args.shape_weight)
            rec = vae_only_step(G, E, opt_g, real, t, nz, args, w)
            acc = record(rec, acc, it, args.log_every, log, t_start)
            if it % args.export_every == 0 or it == args.steps:
                recon_png(G, E, real, t, nz, f"{args.out}/recon-{it}.png")
            continue
        # D step
        D.requires_grad_(True)
        with torch.no_grad():
            fake = G(z_d, t)
            if E is not None and args.vae_fake:
                mu_lv = E(real).flatten(1)
                z_e = mu_lv[:, :nz] + torch.randn(b, nz) * (0.5 * mu_lv[:, nz:]).exp()
                fake = torch.cat([fake[: b // 2], G(z_e[: b // 2], t[: b // 2])], 0)
        opt_d.zero_grad(set_to_none=True)
        rec = {}
        for name, x, tgt, w in (("real", real, 1.0, 1.0), ("wrong", wrong, 0.0, 0.5), ("fake", fake, 0.0, 0.5)):
            r1_now = name == "real" and args.r1 > 0 and it % args.r1_every == 0
            if r1_now:
                x = x.detach().requires_grad_(True)
            lg, cl = d_forward(D, x, t, head if name != "wrong" else None)
            loss = w * bce(lg, torch.full_like(lg, tgt))
            if r1_now:
                (grad,) = torch.autograd.grad(lg.sum(), x, create_graph=True)
                rec["r1"] = grad.pow(2).sum((1, 2, 3)).mean()
                loss = loss + 0.5 * args.r1 * args.r1_every * rec["r1"]
            if cl is not None and name == "real":
                rec["d_class"] = class_loss(cl, lab, sizes)
                loss = loss + rec["d_class"]
            if cl is not None and name == "fake" and args.ac_fake:
                loss = loss + class_loss(cl, lab, sizes)
            loss.backward()
            rec[f"acc_{name}"] = ((lg > 0) == (tgt > 0.5)).float().mean()
            rec[f"d_{name}"] = loss.detach()
        opt_d.step()
        if args.sep_cls:
            C.requires_grad_(True)
            _, cl = d_forward(C, real, t, c_head)
            rec["c_class"] = class_loss(cl, lab, sizes)
            opt_c.zero_grad(set_to_none=True)
            rec["c_class"].backward()
            opt_c.step()
            C.requires_grad_(False)
        # G step
        D.requires_grad_(False)
        t_int = torch.cat([t, 0.5 * (t[: b // 2] + t[b // 2 : b])], 0)
        opt_g.zero_grad(set_to_none=True)
        fk = G(z_g, t_int)
        lg, cl = d_forward(D, fk, t_int, head)
        g_loss = bce(lg, torch.ones_like(lg), g=True) if args.hinge else bce(lg, torch.ones_like(lg))
        rec["g_adv"] = g_loss.detach()
        if args.sep_cls:
            _, cl = d_forward(C, fk[:b], t, c_head)
        if cl is not None:
            rec["g_class"] = class_loss(cl[:b], lab, sizes)
            g_loss = g_loss + args.classifier * rec["g_class"]
        if args.mode_seeking > 0 and it > args.ms_from:
            # Our trainer's term (Mao et al. 2019): the first B/2 captions again with other noise.
            pool = (lambda x: F.avg_pool2d(x, args.ms_pool)) if args.ms_pool > 1 else (lambda x: x)
            if args.ms_same_pass:
                # Both images of a pair from one forward pass: G's batch norm uses the same batch
                # statistics for both, so G cannot make them differ through the batch's make-up.
                z1, z2 = torch.randn(b // 2, nz), torch.randn(b // 2, nz)
                both = G(torch.cat([z1, z2]), torch.cat([t[: b // 2], t[: b // 2]]))
                x1, x2 = both[: b // 2], both[b // 2 :]
            else:
                z1, z2 = z_g[: b // 2], torch.randn(b // 2, nz)
                x1, x2 = fk[: b // 2], G(z2, t[: b // 2])
            r = (pool(x1) - pool(x2)).abs().mean((1, 2, 3)) / (z1 - z2).abs().mean(1)
            rec["mode_seeking"] = (1.0 / (r + 1e-5)).mean()
            g_loss = g_loss + args.mode_seeking * rec["mode_seeking"]
        if E is not None:
            mu_lv = E(real).flatten(1)
            mu, logvar = mu_lv[:, :nz], mu_lv[:, nz:].clamp(-10, 10)
            z_e = mu + torch.randn(b, nz) * (0.5 * logvar).exp()
            recon = G(z_e, t)
            rec["recon"] = (recon - real).abs().mean()
            rec["kl"] = (0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)).mean()
            g_loss = g_loss + args.vae * rec["recon"] + args.kl * rec["kl"]
            if args.vae_fake:
                lg_r, _ = d_forward(D, recon, t, None)
                g_loss = g_loss + 0.5 * bce(lg_r, torch.ones_like(lg_r))
        g_loss.backward()
        opt_g.step()
        acc = record(rec, acc, it, args.log_every, log, t_start)
        if it % args.export_every == 0 or it == args.steps:
            G.eval()
            export(G, enc_tensors, cfg, f"{args.out}/model-{it}.safetensors")
            G.train()
    log.close()


if __name__ == "__main__":
    main()
