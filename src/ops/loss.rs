//! Losses of the two trainers, each returning the loss and OVERWRITING the gradient of that loss
//! with respect to its inputs: binary cross-entropy on logits (GAN-INT-CLS's D and G) and the
//! symmetric structured joint embedding hinge (DS-SJE, the char-CNN-RNN's objective).
//! Sums are in f64; both are O(N) or O(B²·E) plain loops, which is the fast path too.

use super::activation::sigmoid;
use crate::error::{Error, Result};

/// Mean over the N elements of w·BCE(σ(logit), target), numerically stable:
/// BCE = max(x, 0) − x·y + ln(1 + e^−|x|). Weights default to 1; dividing by N (not by Σw) is
/// what Torch's weighted BCECriterion and PyTorch's `binary_cross_entropy_with_logits(weight=…)`
/// do. `dlogits` = d(mean)/d(logit) = w·(σ(x) − y)/N.
pub fn bce_with_logits(logits: &[f32], targets: &[f32], weights: Option<&[f32]>, dlogits: &mut [f32]) -> f32 {
    let n = logits.len();
    assert!(targets.len() == n && dlogits.len() == n, "bce_with_logits sizes");
    assert!(weights.is_none_or(|w| w.len() == n), "bce_with_logits weight size");
    let mut total = 0.0f64;
    for i in 0..n {
        let (x, y) = (logits[i] as f64, targets[i] as f64);
        let w = weights.map_or(1.0, |w| w[i] as f64);
        total += w * (x.max(0.0) - x * y + (-x.abs()).exp().ln_1p());
        dlogits[i] = (w * (sigmoid(logits[i]) as f64 - y) / n as f64) as f32;
    }
    (total / n.max(1) as f64) as f32
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// DS-SJE over a batch of B matching (image, text) embedding pairs [B, E] (row i of each is one
/// class): s_ij = img_i·txt_j,
/// L = (1/B²) Σ_i Σ_{j≠i} [max(0, 1 + s_ij − s_ii) + max(0, 1 + s_ji − s_ii)]
/// (text retrieval for image i, and image retrieval for text i). Gradients are overwritten; at a
/// hinge's kink (margin exactly 0) the zero subgradient is taken. Allocates nothing.
pub fn sje_loss(img: &[f32], txt: &[f32], b: usize, e: usize, d_img: &mut [f32], d_txt: &mut [f32]) -> f32 {
    assert!(img.len() >= b * e && txt.len() >= b * e && d_img.len() >= b * e && d_txt.len() >= b * e, "sje sizes");
    d_img[..b * e].fill(0.0);
    d_txt[..b * e].fill(0.0);
    let row = |i: usize| i * e..(i + 1) * e;
    let scale = 1.0 / (b * b) as f64;
    let sc = scale as f32;
    let mut total = 0.0f64;
    for i in 0..b {
        let s_ii = dot(&img[row(i)], &txt[row(i)]);
        for j in (0..b).filter(|&j| j != i) {
            // Image i against the wrong text j: dL/ds_ij = +1, dL/ds_ii = −1.
            let m1 = 1.0 + dot(&img[row(i)], &txt[row(j)]) - s_ii;
            if m1 > 0.0 {
                total += m1;
                for k in 0..e {
                    d_img[i * e + k] += sc * (txt[j * e + k] - txt[i * e + k]);
                    d_txt[j * e + k] += sc * img[i * e + k];
                    d_txt[i * e + k] -= sc * img[i * e + k];
                }
            }
            // Text i against the wrong image j: dL/ds_ji = +1, dL/ds_ii = −1.
            let m2 = 1.0 + dot(&img[row(j)], &txt[row(i)]) - s_ii;
            if m2 > 0.0 {
                total += m2;
                for k in 0..e {
                    d_img[j * e + k] += sc * txt[i * e + k];
                    d_img[i * e + k] -= sc * txt[i * e + k];
                    d_txt[i * e + k] += sc * (img[j * e + k] - img[i * e + k]);
                }
            }
        }
    }
    (total * scale) as f32
}

/// `sje_loss` on cosine scores: s_ij = scale · cos(img_i, txt_j). Each row is normalised
/// (times √scale) into `scratch` (at least 4·B·E), the hinge loss runs there, and its gradients
/// are taken back through the normalisation: for x̂ = x/‖x‖, dx = √scale (dx̂ − x̂ (x̂·dx̂)) / ‖x‖.
/// The margin of 1 then needs an angle between classes, not merely longer vectors (the plain
/// dot product lets DS-SJE meet its margins with tiny angles and large norms). Zero rows get
/// zero gradients. Allocates nothing.
#[allow(clippy::too_many_arguments)]
pub fn sje_loss_cosine(
    img: &[f32],
    txt: &[f32],
    (b, e): (usize, usize),
    scale: f32,
    scratch: &mut [f32],
    d_img: &mut [f32],
    d_txt: &mut [f32],
) -> f32 {
    let n = b * e;
    assert!(img.len() >= n && txt.len() >= n && d_img.len() >= n && d_txt.len() >= n, "sje sizes");
    assert!(scratch.len() >= 4 * n, "sje_loss_cosine scratch");
    let (unit, grads) = scratch.split_at_mut(2 * n);
    let (ui, ut) = unit.split_at_mut(n);
    let (gi, gt) = grads[..2 * n].split_at_mut(n);
    let root = scale.sqrt();
    let norms = |x: &[f32], u: &mut [f32]| {
        for (xr, ur) in x[..n].chunks(e).zip(u.chunks_mut(e)) {
            let len = dot(xr, xr).sqrt() as f32;
            let k = if len > 0.0 { root / len } else { 0.0 };
            ur.iter_mut().zip(xr).for_each(|(o, &v)| *o = v * k);
        }
    };
    norms(img, ui);
    norms(txt, ut);
    let loss = sje_loss(ui, ut, b, e, gi, gt);
    // Back through u = √s·x/‖x‖ (u already holds √s·x̂): dx = (du − û(û·du))·√s/‖x‖.
    let back = |x: &[f32], u: &[f32], du: &[f32], dx: &mut [f32]| {
        for (((xr, ur), dur), dxr) in x[..n].chunks(e).zip(u.chunks(e)).zip(du.chunks(e)).zip(dx.chunks_mut(e)) {
            let len = dot(xr, xr).sqrt();
            if len == 0.0 {
                dxr.fill(0.0);
                continue;
            }
            let along = dot(ur, dur) / f64::from(scale);
            let k = f64::from(root) / len;
            for ((d, &g), &uv) in dxr.iter_mut().zip(dur).zip(ur) {
                *d = ((f64::from(g) - f64::from(uv) * along) * k) as f32;
            }
        }
    };
    back(img, ui, gi, d_img);
    back(txt, ut, gt, d_txt);
    loss
}

/// Mean over B rows of softmax cross-entropy on logits [B, C] against class `labels` (the shape
/// judge's classifier): L = (1/B) Σ_b [logsumexp(x_b) − x_b,y_b], stable (max subtracted).
/// `dlogits` = (softmax(x_b) − onehot(y_b)) / B. Labels must be < C.
pub fn softmax_cross_entropy(logits: &[f32], labels: &[usize], classes: usize, dlogits: &mut [f32]) -> f32 {
    softmax_cross_entropy_blocks(logits, &[classes], labels, dlogits)
}

/// Checks labels for `softmax_cross_entropy_blocks`: `rows` rows of one label per attribute,
/// each below its attribute's class count (`what` names the labels in the error).
pub fn check_block_labels(labels: &[usize], rows: usize, sizes: &[usize], what: &str) -> Result<()> {
    let a = sizes.len();
    if labels.len() != rows * a {
        return Err(Error::Input(format!("{what}: expected {} ({rows} rows × {a}), got {}", rows * a, labels.len())));
    }
    match labels.iter().enumerate().find(|&(i, &l)| l >= sizes[i % a]) {
        Some((i, &l)) => Err(Error::Input(format!("{what}: label {l} of attribute {} is out of range", i % a))),
        None => Ok(()),
    }
}

/// Softmax cross-entropy of several attributes side by side: row b of `logits` holds one block of
/// `sizes[a]` logits per attribute a, `labels` is [B, A] row-major. Each block's loss is averaged
/// over the rows and the blocks' losses are summed; `dlogits` is overwritten.
pub fn softmax_cross_entropy_blocks(logits: &[f32], sizes: &[usize], labels: &[usize], dlogits: &mut [f32]) -> f32 {
    let k = sizes.iter().sum::<usize>();
    blocks_in_rows(logits, (k, 0), sizes, labels, 1.0, dlogits)
}

/// The block cross-entropy of two classifiers side by side (TAC-GAN's classifier and its twin,
/// Gong et al. 2019): row b of `logits` is the classifier's Σ sizes logits, then the twin's,
/// both against the same `labels`. Returns [classifier's loss, twin's loss], unweighted;
/// `dlogits` is overwritten with `weights[0]`·∂(first)/∂x beside `weights[1]`·∂(second)/∂x
/// (D trains one half at a time with [1, 0] or [0, 1]; G takes [w, −w]).
pub fn softmax_cross_entropy_twin(
    logits: &[f32],
    sizes: &[usize],
    labels: &[usize],
    weights: [f32; 2],
    dlogits: &mut [f32],
) -> [f32; 2] {
    let k = sizes.iter().sum::<usize>();
    [0, 1].map(|h| blocks_in_rows(logits, (2 * k, h * k), sizes, labels, weights[h], dlogits))
}

/// Cross-entropy of one block of `classes` logits, `at` elements into each row of `row`
/// elements, against the uniform distribution: mean over rows of logsumexp(x) − mean(x), the
/// loss of a classifier taught that a row belongs to no class. Writes `scale` times its gradient,
/// (softmax − 1/classes)/rows, into that block and nothing elsewhere; returns the unscaled loss.
pub fn softmax_cross_entropy_uniform(
    logits: &[f32],
    (row, at): (usize, usize),
    classes: usize,
    scale: f32,
    dlogits: &mut [f32],
) -> f32 {
    let b = logits.len() / row.max(1);
    assert!(at + classes <= row && logits.len() == b * row && dlogits.len() == b * row, "uniform-target sizes");
    let uniform = |_| 1.0 / classes as f64;
    let mut total = 0.0f64;
    for (x, d) in logits.chunks(row).zip(dlogits.chunks_mut(row)) {
        total += block_cross_entropy(&x[at..at + classes], uniform, (scale, b), &mut d[at..at + classes]);
    }
    (total / b.max(1) as f64) as f32
}

/// Cross-entropy of one block of logits `x` against the target distribution `t` (class c's
/// probability t(c)): logsumexp(x) − Σ t(c)·x_c, stable (max subtracted). Writes
/// scale·(softmax(x) − t)/rows into `d`. Classes of target 0 add nothing to the loss, so a one-hot t
/// gives exactly logsumexp(x) − x_y.
fn block_cross_entropy(x: &[f32], t: impl Fn(usize) -> f64, (scale, rows): (f32, usize), d: &mut [f32]) -> f64 {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let sum: f64 = x.iter().map(|&v| (v as f64 - max).exp()).sum();
    let mut target_dot = 0.0f64;
    for (c, (dc, &xc)) in d.iter_mut().zip(x).enumerate() {
        let (p, tc) = ((xc as f64 - max).exp() / sum, t(c));
        if tc != 0.0 {
            target_dot += tc * xc as f64;
        }
        *dc = (scale as f64 * (p - tc) / rows as f64) as f32;
    }
    max + sum.ln() - target_dot
}

/// `softmax_cross_entropy_blocks` on the blocks that start `at` elements into each row of `row`
/// elements; writes `scale` times their gradient there and nothing elsewhere. Returns the
/// unscaled loss.
fn blocks_in_rows(
    logits: &[f32],
    (row, at): (usize, usize),
    sizes: &[usize],
    labels: &[usize],
    scale: f32,
    dlogits: &mut [f32],
) -> f32 {
    let a = sizes.len();
    let b = labels.len() / a.max(1);
    assert!(labels.len() == b * a && logits.len() == b * row && dlogits.len() == b * row, "cross-entropy sizes");
    let mut total = 0.0f64;
    for (i, row_labels) in labels.chunks(a).enumerate() {
        let mut first = i * row + at;
        for (&classes, &y) in sizes.iter().zip(row_labels) {
            assert!(y < classes, "softmax_cross_entropy label {y} of {classes}");
            let (x, d) = (&logits[first..first + classes], &mut dlogits[first..first + classes]);
            let one_hot = |c| f64::from(u8::from(c == y));
            total += block_cross_entropy(x, one_hot, (scale, b), d);
            first += classes;
        }
    }
    (total / b.max(1) as f64) as f32
}

/// Keeps 1/(r + ε) finite when two images are equal.
const MODE_SEEKING_EPS: f64 = 1e-5;

/// The images of the mode-seeking term as [C, H, W], the side of the cells their distance is
/// measured on (1: every element), the distance ratio past which a pair earns nothing (0:
/// none), and whether each channel's mean difference is taken out first (`centred`).
#[derive(Clone, Copy, Debug)]
pub struct ModeSeekingCells {
    pub height: usize,
    pub width: usize,
    pub cell: usize,
    pub target: f32,
    pub centred: bool,
}

/// Mode-seeking term (Mao et al., CVPR 2019) over P pairs of images made from one text with two
/// noises: r_p = mean|x1_p − x2_p| / mean|z1_p − z2_p|, L = (1/P) Σ_p 1/(r_p + ε). Minimising it
/// pushes G's images apart when only the noise differs, against one image per caption. With
/// cells of side k > 1 the image distance is taken between the k×k averages (mean over cells of
/// |avg(x1 − x2)|): moving the shape counts, high-frequency stripes that average out do not
/// (not in the MSGAN paper; docs/RESULTS.md, session 7). With a target τ > 0 each pair scores
/// max(0, 1/(r_p + ε) − 1/τ): a pair already τ apart earns nothing, so G cannot buy the term
/// with ever larger differences (it did, with noise D rejected: docs/RESULTS.md, session 8).
/// Centred, each cell's difference is taken less the channel's mean difference (k² · mean of
/// x1 − x2 over the channel): a tint of the whole image earns nothing, a moved shape does (G
/// bought a stronger term with background tints: docs/RESULTS.md, session 14).
/// Gradients are overwritten: ∂L/∂x1 = −(1/P) s / ((r + ε)² · mean|z1 − z2| · N), the same for
/// every element of a cell, with s the sign of the cell's difference (centred: less k²/(H·W)
/// times the sum of the channel's cell signs), ∂L/∂x2 = −∂L/∂x1 (0 where the difference is 0,
/// and for a pair at or past the target).
pub fn mode_seeking_loss(
    x: (&[f32], &[f32]),
    z: (&[f32], &[f32]),
    pairs: usize,
    cells: ModeSeekingCells,
    dx: (&mut [f32], &mut [f32]),
) -> f32 {
    let (n, nz) = (x.0.len() / pairs.max(1), z.0.len() / pairs.max(1));
    assert!(x.1.len() == x.0.len() && z.1.len() == z.0.len() && dx.0.len() == x.0.len() && dx.1.len() == x.0.len());
    let (h, w, k) = (cells.height, cells.width, cells.cell.max(1));
    assert!(h * w > 0 && n % (h * w) == 0 && h % k == 0 && w % k == 0, "mode-seeking cells {h}×{w}/{k} of {n}");
    let mean_abs =
        |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| f64::from((p - q).abs())).sum::<f64>() / a.len() as f64;
    // Each cell: its element indices within an image (channel c, cell row i, cell column j).
    let cell_elems = |c: usize, i: usize, j: usize| {
        (0..k).flat_map(move |di| (0..k).map(move |dj| c * h * w + (i * k + di) * w + j * k + dj))
    };
    let channels = n / (h * w);
    let cells_of = (0..channels).flat_map(|c| (0..h / k).flat_map(move |i| (0..w / k).map(move |j| (c, i, j))));
    let per_channel = (h / k) * (w / k);
    // Centred: the share of a channel's mean difference in one cell's sum (k² elements of h·w).
    let share = if cells.centred { (k * k) as f64 / (h * w) as f64 } else { 0.0 };
    let mut total = 0.0;
    // A pair scoring 1/r at or below this has reached the target.
    let floor = if cells.target > 0.0 { 1.0 / f64::from(cells.target) } else { 0.0 };
    // The cell sums of x1 − x2 of one pair, computed once for the distance and the signs.
    let mut diffs = Vec::with_capacity(n / (k * k));
    for p in 0..pairs {
        let (x1, x2) = (&x.0[p * n..(p + 1) * n], &x.1[p * n..(p + 1) * n]);
        let diff = |(c, i, j)| cell_elems(c, i, j).map(|e| f64::from(x1[e] - x2[e])).sum::<f64>();
        diffs.clear();
        diffs.extend(cells_of.clone().map(diff));
        if cells.centred {
            centre_cells(&mut diffs, per_channel, share);
        }
        let dist = diffs.iter().map(|d| d.abs()).sum::<f64>() / n as f64;
        let dz = mean_abs(&z.0[p * nz..(p + 1) * nz], &z.1[p * nz..(p + 1) * nz]).max(MODE_SEEKING_EPS);
        let r = dist / dz + MODE_SEEKING_EPS;
        let reached = 1.0 / r <= floor;
        total += (1.0 / r - floor).max(0.0);
        let g = if reached { 0.0 } else { (-1.0 / (r * r * dz * n as f64 * pairs as f64)) as f32 };
        let (d1, d2) = (&mut dx.0[p * n..(p + 1) * n], &mut dx.1[p * n..(p + 1) * n]);
        let sign = |d: f64| {
            if d > 0.0 {
                1.0
            } else if d < 0.0 {
                -1.0
            } else {
                0.0
            }
        };
        for (c, channel) in diffs.chunks(per_channel).enumerate() {
            // Every element also moves the channel's mean, and so every cell's centred difference.
            let mean_sign = share * channel.iter().map(|&d| sign(d)).sum::<f64>();
            for (j, &d) in channel.iter().enumerate() {
                let s = g * (sign(d) - mean_sign) as f32;
                for e in cell_elems(c, j / (w / k), j % (w / k)) {
                    (d1[e], d2[e]) = (s, -s);
                }
            }
        }
    }
    (total / pairs.max(1) as f64) as f32
}

/// Takes each channel's mean difference out of its cells' sums: the channel's sums (of
/// `per_channel` cells) total k² · H · W · mean, so each cell loses `share` (k² / (H·W)) of it.
fn centre_cells(diffs: &mut [f64], per_channel: usize, share: f64) {
    for channel in diffs.chunks_mut(per_channel) {
        let owed = share * channel.iter().sum::<f64>();
        channel.iter_mut().for_each(|d| *d -= owed);
    }
}

/// Mean squared error over all N elements: L = (1/N) Σ (pred − target)² (the style encoder's
/// objective, ‖z − S(G(z, t))‖² averaged). `dpred` = 2 (pred − target) / N.
pub fn mse_loss(pred: &[f32], target: &[f32], dpred: &mut [f32]) -> f32 {
    let n = pred.len();
    assert!(target.len() == n && dpred.len() == n, "mse_loss sizes");
    let mut total = 0.0f64;
    for ((d, &p), &t) in dpred.iter_mut().zip(pred).zip(target) {
        let e = f64::from(p) - f64::from(t);
        total += e * e;
        *d = (2.0 * e / n as f64) as f32;
    }
    (total / n.max(1) as f64) as f32
}
