//! Recurrences over time for the char-CNN-RNN: Reed's FixedGRU and the plain ReLU RNN
//! (equations in docs/WEIGHTS.md). Input x [B, C, T] (the conv stack's layout), output the
//! hidden states [B, T, H]. Fast path: the input projections of all steps as GEMMs, then per
//! step one batched GEMM against W_hh.
//!
//! Training: `*_train_forward_ref` writes the hidden states [B, T, H] and what backprop through
//! time needs (`saved`, `saved_len` elements); `*_backward_ref` takes dL/d(hidden states)
//! [B, T, H] and OVERWRITES dx [B, C, T] while ACCUMULATING dW_ih, db_ih, dW_hh, db_hh.
//! Fast backward: the recurrence runs step by step, batched over B (one or two GEMMs against
//! W_hh per step), and keeps every step's pre-activation gradients; the weight gradients and dx
//! then come from one GEMM per sample over all steps.

use super::activation::{fast_sigmoid, fast_tanh, sigmoid};
use super::gemm::{matmul, matmul_acc, matmul_packed, Mat, Out, PackedA};

/// Sizes of a recurrence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RnnDims {
    pub batch: usize,
    pub cin: usize,
    pub t: usize,
    pub hidden: usize,
}

/// Parameters of a recurrence (PyTorch-style names; GRU rows ordered r, z, n).
#[derive(Clone, Copy, Debug)]
pub struct RnnParams<'a> {
    pub w_ih: &'a [f32],
    pub b_ih: &'a [f32],
    pub w_hh: &'a [f32],
    pub b_hh: &'a [f32],
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// Reference GRU.
pub fn gru_ref(x: &[f32], p: &RnnParams, d: RnnDims, out: &mut [f32]) {
    let (c, t_len, h) = (d.cin, d.t, d.hidden);
    let mut hs = vec![0.0f32; h];
    let mut xt = vec![0.0f32; c];
    for b in 0..d.batch {
        for t in 0..t_len {
            for (ci, v) in xt.iter_mut().enumerate() {
                *v = x[(b * c + ci) * t_len + t];
            }
            let ih = |row: usize| dot(&p.w_ih[row * c..(row + 1) * c], &xt) + p.b_ih[row] as f64;
            let hh = |row: usize, v: &[f32]| dot(&p.w_hh[row * h..(row + 1) * h], v) + p.b_hh[row] as f64;
            let next: Vec<f32> = if t == 0 {
                (0..h).map(|j| ih(2 * h + j).tanh() as f32).collect()
            } else {
                let r: Vec<f64> = (0..h).map(|j| sigmoid((ih(j) + hh(j, &hs)) as f32) as f64).collect();
                let rh: Vec<f32> = hs.iter().zip(&r).map(|(&v, &r)| (v as f64 * r) as f32).collect();
                (0..h)
                    .map(|j| {
                        let z = sigmoid((ih(h + j) + hh(h + j, &hs)) as f32) as f64;
                        let n = (ih(2 * h + j) + hh(2 * h + j, &rh)).tanh();
                        (z * n + (1.0 - z) * hs[j] as f64) as f32
                    })
                    .collect()
            };
            hs.copy_from_slice(&next);
            out[(b * t_len + t) * h..][..h].copy_from_slice(&hs);
        }
    }
}

/// Reference ReLU RNN.
pub fn rnn_relu_ref(x: &[f32], p: &RnnParams, d: RnnDims, out: &mut [f32]) {
    let (c, t_len, h) = (d.cin, d.t, d.hidden);
    let mut hs = vec![0.0f32; h];
    let mut xt = vec![0.0f32; c];
    for b in 0..d.batch {
        for t in 0..t_len {
            for (ci, v) in xt.iter_mut().enumerate() {
                *v = x[(b * c + ci) * t_len + t];
            }
            let next: Vec<f32> = (0..h)
                .map(|j| {
                    let mut a = dot(&p.w_ih[j * c..(j + 1) * c], &xt) + p.b_ih[j] as f64;
                    if t > 0 {
                        a += dot(&p.w_hh[j * h..(j + 1) * h], &hs) + p.b_hh[j] as f64;
                    }
                    a.max(0.0) as f32
                })
                .collect();
            hs.copy_from_slice(&next);
            out[(b * t_len + t) * h..][..h].copy_from_slice(&hs);
        }
    }
}

/// Gate rows per hidden unit: 3 for the GRU, 1 for the ReLU RNN.
pub fn gates(gru: bool) -> usize {
    if gru {
        3
    } else {
        1
    }
}

/// Scratch elements the fast path needs.
pub fn scratch_len(gru: bool, d: RnnDims) -> usize {
    let g = gates(gru);
    d.batch * d.t * g * d.hidden + d.batch * d.hidden * (g + 2)
}

/// Weights of the fast path, packed: W_hh is split into the rows that multiply h (GRU: r and
/// z; RNN: all) and the GRU's candidate rows that multiply r ⊙ h.
#[derive(Clone, Copy)]
pub struct RnnPacked<'a> {
    pub w_ih: &'a PackedA,
    pub b_ih: &'a [f32],
    pub w_hh: &'a PackedA,
    pub w_hh_n: Option<&'a PackedA>,
    pub b_hh: &'a [f32],
}

/// Splits a row-major W_hh [g·H, H] into the packed (rows that see h, candidate rows).
pub fn pack_w_hh(w_hh: &[f32], gru: bool, h: usize) -> (PackedA, Option<PackedA>) {
    if gru {
        let rz = PackedA::from_row_major(&w_hh[..2 * h * h], 2 * h, h);
        let n = PackedA::from_row_major(&w_hh[2 * h * h..3 * h * h], h, h);
        (rz, Some(n))
    } else {
        (PackedA::from_row_major(w_hh, h, h), None)
    }
}

/// proj[b, t, :] = W_ih x[b, :, t] + b_ih for every sample and step (projᵀ = W_ih · x_b).
fn input_projections(x: &[f32], p: &RnnPacked, d: RnnDims, proj: &mut [f32], threads: usize) {
    let rows = p.w_ih.rows();
    for b in 0..d.batch {
        let xb = Mat::row_major(&x[b * d.cin * d.t..(b + 1) * d.cin * d.t], d.cin, d.t);
        let dst = &mut proj[b * d.t * rows..(b + 1) * d.t * rows];
        matmul_packed(p.w_ih, xb, dst, Out::cols(rows), threads);
        for step in dst.chunks_mut(rows) {
            step.iter_mut().zip(p.b_ih).for_each(|(v, &bias)| *v += bias);
        }
    }
}

/// Fast GRU (see module doc). `scratch` holds at least `scratch_len(true, d)`.
pub fn gru(x: &[f32], p: &RnnPacked, d: RnnDims, scratch: &mut [f32], out: &mut [f32], threads: usize) {
    let (bsz, t_len, h) = (d.batch, d.t, d.hidden);
    let w_n = p.w_hh_n.expect("GRU weights carry candidate rows");
    let (proj, rest) = scratch.split_at_mut(bsz * t_len * 3 * h);
    let (g1, rest) = rest.split_at_mut(bsz * 2 * h);
    let (rh, rest) = rest.split_at_mut(bsz * h);
    let (g2, rest) = rest.split_at_mut(bsz * h);
    let hs = &mut rest[..bsz * h];
    input_projections(x, p, d, proj, threads);
    for t in 0..t_len {
        if t == 0 {
            for b in 0..bsz {
                let pn = &proj[(b * t_len) * 3 * h + 2 * h..][..h];
                hs[b * h..(b + 1) * h].iter_mut().zip(pn).for_each(|(v, &a)| *v = fast_tanh(a));
            }
        } else {
            // g1ᵀ = W_hh[r, z] · hsᵀ, g2ᵀ = W_hh[n] · (r ⊙ h)ᵀ.
            matmul_packed(p.w_hh, Mat::transposed(hs, h, bsz), g1, Out::cols(2 * h), threads);
            for b in 0..bsz {
                let pr = &proj[(b * t_len + t) * 3 * h..][..h];
                for j in 0..h {
                    let r = fast_sigmoid(pr[j] + g1[b * 2 * h + j] + p.b_hh[j]);
                    rh[b * h + j] = r * hs[b * h + j];
                }
            }
            matmul_packed(w_n, Mat::transposed(rh, h, bsz), g2, Out::cols(h), threads);
            for b in 0..bsz {
                let pt = &proj[(b * t_len + t) * 3 * h..][..3 * h];
                for j in 0..h {
                    let z = fast_sigmoid(pt[h + j] + g1[b * 2 * h + h + j] + p.b_hh[h + j]);
                    let n = fast_tanh(pt[2 * h + j] + g2[b * h + j] + p.b_hh[2 * h + j]);
                    hs[b * h + j] = z * n + (1.0 - z) * hs[b * h + j];
                }
            }
        }
        for b in 0..bsz {
            out[(b * t_len + t) * h..][..h].copy_from_slice(&hs[b * h..(b + 1) * h]);
        }
    }
}

/// Fast ReLU RNN. `scratch` holds at least `scratch_len(false, d)`.
pub fn rnn_relu(x: &[f32], p: &RnnPacked, d: RnnDims, scratch: &mut [f32], out: &mut [f32], threads: usize) {
    let (bsz, t_len, h) = (d.batch, d.t, d.hidden);
    let (proj, rest) = scratch.split_at_mut(bsz * t_len * h);
    let (g, rest) = rest.split_at_mut(bsz * h);
    let hs = &mut rest[..bsz * h];
    input_projections(x, p, d, proj, threads);
    for t in 0..t_len {
        if t > 0 {
            matmul_packed(p.w_hh, Mat::transposed(hs, h, bsz), g, Out::cols(h), threads);
        }
        for b in 0..bsz {
            let pt = &proj[(b * t_len + t) * h..][..h];
            for j in 0..h {
                let rec = if t > 0 { g[b * h + j] + p.b_hh[j] } else { 0.0 };
                hs[b * h + j] = (pt[j] + rec).max(0.0);
            }
        }
        for b in 0..bsz {
            out[(b * t_len + t) * h..][..h].copy_from_slice(&hs[b * h..(b + 1) * h]);
        }
    }
}

/// Elements of `saved` the training forward writes: the GRU's gates r, z, n per (b, t)
/// ([B, T, 3H]; r and z are 0 at the first step, which has none); the ReLU RNN needs nothing
/// beyond its output (its derivative is the sign of h), so 0.
pub fn saved_len(gru: bool, d: RnnDims) -> usize {
    if gru {
        d.batch * d.t * 3 * d.hidden
    } else {
        0
    }
}

/// x[b, :, t] into `xt`.
fn gather_step(x: &[f32], d: RnnDims, b: usize, t: usize, xt: &mut [f32]) {
    for (ci, v) in xt.iter_mut().enumerate() {
        *v = x[(b * d.cin + ci) * d.t + t];
    }
}

/// Reference GRU for training: `out` as `gru_ref` (same arithmetic, same values), and the gates
/// r, z, n into `saved` ([B, T, 3H]).
pub fn gru_train_forward_ref(x: &[f32], p: &RnnParams, d: RnnDims, out: &mut [f32], saved: &mut [f32]) {
    let (c, t_len, h) = (d.cin, d.t, d.hidden);
    let mut hs = vec![0.0f32; h];
    let mut rh = vec![0.0f32; h];
    let mut xt = vec![0.0f32; c];
    for b in 0..d.batch {
        for t in 0..t_len {
            gather_step(x, d, b, t, &mut xt);
            let ih = |row: usize| dot(&p.w_ih[row * c..(row + 1) * c], &xt) + p.b_ih[row] as f64;
            let hh = |row: usize, v: &[f32]| dot(&p.w_hh[row * h..(row + 1) * h], v) + p.b_hh[row] as f64;
            let sv = &mut saved[(b * t_len + t) * 3 * h..][..3 * h];
            if t == 0 {
                for j in 0..h {
                    let n = ih(2 * h + j).tanh();
                    (sv[j], sv[h + j], sv[2 * h + j]) = (0.0, 0.0, n as f32);
                    hs[j] = n as f32;
                }
            } else {
                for j in 0..h {
                    let r = sigmoid((ih(j) + hh(j, &hs)) as f32);
                    sv[j] = r;
                    rh[j] = (hs[j] as f64 * r as f64) as f32;
                }
                let next: Vec<f32> = (0..h)
                    .map(|j| {
                        let z = sigmoid((ih(h + j) + hh(h + j, &hs)) as f32);
                        let n = (ih(2 * h + j) + hh(2 * h + j, &rh)).tanh();
                        (sv[h + j], sv[2 * h + j]) = (z, n as f32);
                        (z as f64 * n + (1.0 - z as f64) * hs[j] as f64) as f32
                    })
                    .collect();
                hs.copy_from_slice(&next);
            }
            out[(b * t_len + t) * h..][..h].copy_from_slice(&hs);
        }
    }
}

/// f64 copies of the parameter gradients (accumulated into, written back at the end).
struct GradAcc {
    w_ih: Vec<f64>,
    b_ih: Vec<f64>,
    w_hh: Vec<f64>,
    b_hh: Vec<f64>,
}

impl GradAcc {
    fn new(w_ih: &[f32], b_ih: &[f32], w_hh: &[f32], b_hh: &[f32]) -> GradAcc {
        let f = |s: &[f32]| s.iter().map(|&v| v as f64).collect();
        GradAcc { w_ih: f(w_ih), b_ih: f(b_ih), w_hh: f(w_hh), b_hh: f(b_hh) }
    }

    fn store(&self, w_ih: &mut [f32], b_ih: &mut [f32], w_hh: &mut [f32], b_hh: &mut [f32]) {
        for (dst, src) in [(w_ih, &self.w_ih), (b_ih, &self.b_ih), (w_hh, &self.w_hh), (b_hh, &self.b_hh)] {
            dst.iter_mut().zip(src).for_each(|(d, &a)| *d = a as f32);
        }
    }

    /// The input side of step (b, t) given the pre-activation gradients `gi` [rows]:
    /// dW_ih += gi ⊗ x_t, db_ih += gi, dx[b, :, t] = W_ihᵀ gi.
    #[allow(clippy::too_many_arguments)]
    fn input_side(
        &mut self,
        p: &RnnParams,
        d: RnnDims,
        xt: &[f32],
        gi: &[f64],
        dx: Option<&mut [f32]>,
        b: usize,
        t: usize,
    ) {
        let c = d.cin;
        for (j, &g) in gi.iter().enumerate() {
            self.b_ih[j] += g;
            for (ci, &xv) in xt.iter().enumerate() {
                self.w_ih[j * c + ci] += g * xv as f64;
            }
        }
        if let Some(dx) = dx {
            for ci in 0..c {
                let v: f64 = gi.iter().enumerate().map(|(j, &g)| p.w_ih[j * c + ci] as f64 * g).sum();
                dx[(b * c + ci) * d.t + t] = v as f32;
            }
        }
    }
}

/// Reference backprop through time of the GRU (`out` and `saved` from `gru_train_forward_ref`,
/// `dout` = dL/d(out) [B, T, H]). With dh the total gradient reaching h_t:
/// dn = dh·z, dz = dh·(n − h_{t−1}), dh_{t−1} = dh·(1 − z) + W_hh[n]ᵀ(dn')·r + W_hh[r,z]ᵀ(dr', dz'),
/// where dn' = dn·(1 − n²), dz' = dz·z(1 − z), dr' = (W_hh[n]ᵀ dn')·h_{t−1}·r(1 − r).
#[allow(clippy::too_many_arguments)]
pub fn gru_backward_ref(
    x: &[f32],
    p: &RnnParams,
    d: RnnDims,
    out: &[f32],
    saved: &[f32],
    dout: &[f32],
    mut dx: Option<&mut [f32]>,
    dw_ih: &mut [f32],
    db_ih: &mut [f32],
    dw_hh: &mut [f32],
    db_hh: &mut [f32],
) {
    let (c, t_len, h) = (d.cin, d.t, d.hidden);
    let mut acc = GradAcc::new(&dw_ih[..3 * h * c], &db_ih[..3 * h], &dw_hh[..3 * h * h], &db_hh[..3 * h]);
    let mut xt = vec![0.0f32; c];
    let mut g = vec![0.0f64; 3 * h];
    let mut dh = vec![0.0f64; h];
    let mut dhp = vec![0.0f64; h];
    for b in 0..d.batch {
        dhp.fill(0.0);
        for t in (0..t_len).rev() {
            let base = (b * t_len + t) * h;
            for j in 0..h {
                dh[j] = dout[base + j] as f64 + dhp[j];
            }
            gather_step(x, d, b, t, &mut xt);
            let sv = &saved[(b * t_len + t) * 3 * h..][..3 * h];
            let (r, z, n) = (&sv[..h], &sv[h..2 * h], &sv[2 * h..]);
            g.fill(0.0);
            if t == 0 {
                for j in 0..h {
                    let n = n[j] as f64;
                    g[2 * h + j] = dh[j] * (1.0 - n * n);
                }
            } else {
                let hp = &out[base - h..base];
                for j in 0..h {
                    let (z, n) = (z[j] as f64, n[j] as f64);
                    g[h + j] = dh[j] * (n - hp[j] as f64) * z * (1.0 - z);
                    g[2 * h + j] = dh[j] * z * (1.0 - n * n);
                    dhp[j] = dh[j] * (1.0 - z);
                }
                // Through the candidate: d(r ⊙ h) = W_hh[n]ᵀ dn'.
                for k in 0..h {
                    let drh: f64 = (0..h).map(|j| p.w_hh[(2 * h + j) * h + k] as f64 * g[2 * h + j]).sum();
                    let rk = r[k] as f64;
                    g[k] = drh * hp[k] as f64 * rk * (1.0 - rk);
                    dhp[k] += drh * rk;
                }
                // Through the r and z rows: W_hh[r, z]ᵀ (dr', dz').
                for (k, v) in dhp.iter_mut().enumerate() {
                    *v += (0..2 * h).map(|j| p.w_hh[j * h + k] as f64 * g[j]).sum::<f64>();
                }
                for (j, &gj) in g.iter().enumerate() {
                    acc.b_hh[j] += gj;
                    let row = &mut acc.w_hh[j * h..(j + 1) * h];
                    if j < 2 * h {
                        row.iter_mut().zip(hp).for_each(|(a, &v)| *a += gj * v as f64);
                    } else {
                        row.iter_mut()
                            .zip(hp.iter().zip(r))
                            .for_each(|(a, (&v, &rk))| *a += gj * (rk as f64 * v as f64));
                    }
                }
            }
            acc.input_side(p, d, &xt, &g, dx.as_deref_mut(), b, t);
        }
    }
    acc.store(dw_ih, db_ih, dw_hh, db_hh);
}

/// Reference ReLU RNN for training: `out` as `rnn_relu_ref`; nothing is saved (`saved_len` 0).
pub fn rnn_relu_train_forward_ref(x: &[f32], p: &RnnParams, d: RnnDims, out: &mut [f32], _saved: &mut [f32]) {
    rnn_relu_ref(x, p, d, out);
}

/// Reference backprop through time of the ReLU RNN: da = dh·[h_t > 0], dh_{t−1} = W_hhᵀ da.
#[allow(clippy::too_many_arguments)]
pub fn rnn_relu_backward_ref(
    x: &[f32],
    p: &RnnParams,
    d: RnnDims,
    out: &[f32],
    _saved: &[f32],
    dout: &[f32],
    mut dx: Option<&mut [f32]>,
    dw_ih: &mut [f32],
    db_ih: &mut [f32],
    dw_hh: &mut [f32],
    db_hh: &mut [f32],
) {
    let (c, t_len, h) = (d.cin, d.t, d.hidden);
    let mut acc = GradAcc::new(&dw_ih[..h * c], &db_ih[..h], &dw_hh[..h * h], &db_hh[..h]);
    let mut xt = vec![0.0f32; c];
    let mut da = vec![0.0f64; h];
    let mut dhp = vec![0.0f64; h];
    for b in 0..d.batch {
        dhp.fill(0.0);
        for t in (0..t_len).rev() {
            let base = (b * t_len + t) * h;
            for j in 0..h {
                da[j] = if out[base + j] > 0.0 { dout[base + j] as f64 + dhp[j] } else { 0.0 };
            }
            gather_step(x, d, b, t, &mut xt);
            if t > 0 {
                let hp = &out[base - h..base];
                for (j, &g) in da.iter().enumerate() {
                    acc.b_hh[j] += g;
                    acc.w_hh[j * h..(j + 1) * h].iter_mut().zip(hp).for_each(|(a, &v)| *a += g * v as f64);
                }
                for (k, v) in dhp.iter_mut().enumerate() {
                    *v = (0..h).map(|j| p.w_hh[j * h + k] as f64 * da[j]).sum();
                }
            }
            acc.input_side(p, d, &xt, &da, dx.as_deref_mut(), b, t);
        }
    }
    acc.store(dw_ih, db_ih, dw_hh, db_hh);
}

/// Fast GRU for training: `gru` that also writes the gates r, z, n into `saved` (values as
/// `gru_train_forward_ref`'s to f32 rounding). `scratch` holds at least `scratch_len(true, d)`.
#[allow(clippy::too_many_arguments)]
pub fn gru_train_forward(
    x: &[f32],
    p: &RnnPacked,
    d: RnnDims,
    out: &mut [f32],
    saved: &mut [f32],
    scratch: &mut [f32],
    threads: usize,
) {
    let (bsz, t_len, h) = (d.batch, d.t, d.hidden);
    let w_n = p.w_hh_n.expect("GRU weights carry candidate rows");
    let (proj, rest) = scratch.split_at_mut(bsz * t_len * 3 * h);
    let (g1, rest) = rest.split_at_mut(bsz * 2 * h);
    let (rh, rest) = rest.split_at_mut(bsz * h);
    let (g2, rest) = rest.split_at_mut(bsz * h);
    let hs = &mut rest[..bsz * h];
    input_projections(x, p, d, proj, threads);
    for t in 0..t_len {
        if t == 0 {
            for b in 0..bsz {
                let pn = &proj[(b * t_len) * 3 * h + 2 * h..][..h];
                let sv = &mut saved[(b * t_len) * 3 * h..][..3 * h];
                sv[..2 * h].fill(0.0);
                for j in 0..h {
                    let n = pn[j].tanh();
                    (hs[b * h + j], sv[2 * h + j]) = (n, n);
                }
            }
        } else {
            matmul_packed(p.w_hh, Mat::transposed(hs, h, bsz), g1, Out::cols(2 * h), threads);
            for b in 0..bsz {
                let pr = &proj[(b * t_len + t) * 3 * h..][..h];
                let sv = &mut saved[(b * t_len + t) * 3 * h..][..h];
                for j in 0..h {
                    let r = sigmoid(pr[j] + g1[b * 2 * h + j] + p.b_hh[j]);
                    sv[j] = r;
                    rh[b * h + j] = r * hs[b * h + j];
                }
            }
            matmul_packed(w_n, Mat::transposed(rh, h, bsz), g2, Out::cols(h), threads);
            for b in 0..bsz {
                let pt = &proj[(b * t_len + t) * 3 * h..][..3 * h];
                let sv = &mut saved[(b * t_len + t) * 3 * h..][..3 * h];
                for j in 0..h {
                    let z = sigmoid(pt[h + j] + g1[b * 2 * h + h + j] + p.b_hh[h + j]);
                    let n = (pt[2 * h + j] + g2[b * h + j] + p.b_hh[2 * h + j]).tanh();
                    (sv[h + j], sv[2 * h + j]) = (z, n);
                    hs[b * h + j] = z * n + (1.0 - z) * hs[b * h + j];
                }
            }
        }
        for b in 0..bsz {
            out[(b * t_len + t) * h..][..h].copy_from_slice(&hs[b * h..(b + 1) * h]);
        }
    }
}

/// Scratch elements `gru_backward` (gru = true) or `rnn_relu_backward` needs: the
/// pre-activation gradients of every step [B, T, gates·H], for the GRU r ⊙ h_{t−1} [B, T, H],
/// and three [B, H] carries.
pub fn backward_scratch_len(gru: bool, d: RnnDims) -> usize {
    let bth = d.batch * d.t * d.hidden;
    gates(gru) * bth + if gru { bth } else { 0 } + 3 * d.batch * d.hidden
}

/// The GEMM part of both backward passes, from the pre-activation gradients `g` [B, T, rows]
/// (rows = gates·H): dx, dW_ih, db_ih, and dW_hh, db_hh over steps t ≥ 1, where the GRU's
/// candidate rows multiply `rh` (r ⊙ h_{t−1}) and every other row h_{t−1}.
#[allow(clippy::too_many_arguments)]
fn backward_gemms(
    x: &[f32],
    p: &RnnParams,
    d: RnnDims,
    out: &[f32],
    g: &[f32],
    rh: Option<&[f32]>,
    mut dx: Option<&mut [f32]>,
    dw_ih: &mut [f32],
    db_ih: &mut [f32],
    dw_hh: &mut [f32],
    db_hh: &mut [f32],
    threads: usize,
) {
    let (c, t_len, h) = (d.cin, d.t, d.hidden);
    let rows = if rh.is_some() { 3 * h } else { h };
    let (dw_ih, db_ih, dw_hh, db_hh) =
        (&mut dw_ih[..rows * c], &mut db_ih[..rows], &mut dw_hh[..rows * h], &mut db_hh[..rows]);
    // Rows of W_hh that multiply h_{t−1} (the rest, the GRU's candidate rows, multiply r ⊙ h).
    let rows_h = if rh.is_some() { 2 * h } else { h };
    for b in 0..d.batch {
        let gb = &g[b * t_len * rows..(b + 1) * t_len * rows];
        let xb = &x[b * c * t_len..(b + 1) * c * t_len];
        // dW_ih [rows, C] += G_bᵀ [rows, T] · x_bᵀ [T, C].
        matmul_acc(Mat::transposed(gb, rows, t_len), Mat::transposed(xb, t_len, c), dw_ih, Out::rows(c), threads);
        if let Some(dx) = dx.as_deref_mut() {
            // dx_b [C, T] = W_ihᵀ [C, rows] · G_bᵀ [rows, T].
            let dxb = &mut dx[b * c * t_len..(b + 1) * c * t_len];
            matmul(Mat::transposed(p.w_ih, c, rows), Mat::transposed(gb, rows, t_len), dxb, Out::rows(t_len), threads);
        }
        for step in gb.chunks(rows) {
            db_ih.iter_mut().zip(step).for_each(|(a, &v)| *a += v);
        }
        if t_len < 2 {
            continue;
        }
        // Steps 1..T: G rows at t against h_{t−1} (rows 0..T−1 of out_b).
        let g1 = &gb[rows..];
        let hprev = Mat::row_major(&out[b * t_len * h..(b * t_len + t_len - 1) * h], t_len - 1, h);
        let lhs = Mat { data: g1, rows: rows_h, cols: t_len - 1, rs: 1, cs: rows };
        matmul_acc(lhs, hprev, &mut dw_hh[..rows_h * h], Out::rows(h), threads);
        if let Some(rh) = rh {
            let rhb = Mat::row_major(&rh[(b * t_len + 1) * h..(b + 1) * t_len * h], t_len - 1, h);
            let lhs = Mat { data: &g1[2 * h..], rows: h, cols: t_len - 1, rs: 1, cs: rows };
            matmul_acc(lhs, rhb, &mut dw_hh[2 * h * h..3 * h * h], Out::rows(h), threads);
        }
        for step in g1.chunks(rows) {
            db_hh.iter_mut().zip(step).for_each(|(a, &v)| *a += v);
        }
    }
}

/// Fast backprop through time of the GRU; same contract as `gru_backward_ref` (row-major
/// weights). `scratch` holds at least `backward_scratch_len(true, d)`. Allocates nothing.
#[allow(clippy::too_many_arguments)]
pub fn gru_backward(
    x: &[f32],
    p: &RnnParams,
    d: RnnDims,
    out: &[f32],
    saved: &[f32],
    dout: &[f32],
    dx: Option<&mut [f32]>,
    dw_ih: &mut [f32],
    db_ih: &mut [f32],
    dw_hh: &mut [f32],
    db_hh: &mut [f32],
    scratch: &mut [f32],
    threads: usize,
) {
    let (bsz, t_len, h) = (d.batch, d.t, d.hidden);
    let rows = 3 * h;
    let (g, rest) = scratch.split_at_mut(bsz * t_len * rows);
    let (rh, rest) = rest.split_at_mut(bsz * t_len * h);
    let (dh, rest) = rest.split_at_mut(bsz * h);
    let (dhp, rest) = rest.split_at_mut(bsz * h);
    let drh = &mut rest[..bsz * h];
    dhp.fill(0.0);
    // Step t's gradients as [B, cols], gate rows [off, off + cols).
    fn gstep(g: &[f32], t: usize, off: usize, cols: usize, d: RnnDims) -> Mat<'_> {
        let rows = 3 * d.hidden;
        Mat { data: &g[t * rows + off..], rows: d.batch, cols, rs: d.t * rows, cs: 1 }
    }
    for t in (0..t_len).rev() {
        for b in 0..bsz {
            for j in 0..h {
                dh[b * h + j] = dout[(b * t_len + t) * h + j] + dhp[b * h + j];
            }
        }
        if t == 0 {
            for b in 0..bsz {
                let sv = &saved[(b * t_len) * rows..][..rows];
                let gb = &mut g[(b * t_len) * rows..][..rows];
                gb[..2 * h].fill(0.0);
                for j in 0..h {
                    gb[2 * h + j] = dh[b * h + j] * (1.0 - sv[2 * h + j] * sv[2 * h + j]);
                }
                rh[b * t_len * h..][..h].fill(0.0);
            }
            continue;
        }
        for b in 0..bsz {
            let sv = &saved[(b * t_len + t) * rows..][..rows];
            let hp = &out[(b * t_len + t - 1) * h..][..h];
            let gb = &mut g[(b * t_len + t) * rows..][..rows];
            for j in 0..h {
                let (r, z, n, dhj) = (sv[j], sv[h + j], sv[2 * h + j], dh[b * h + j]);
                gb[h + j] = dhj * (n - hp[j]) * z * (1.0 - z);
                gb[2 * h + j] = dhj * z * (1.0 - n * n);
                dhp[b * h + j] = dhj * (1.0 - z);
                rh[(b * t_len + t) * h + j] = r * hp[j];
            }
        }
        // d(r ⊙ h) [B, H] = G_n [B, H] · W_hh[n] [H, H].
        let w_n = Mat::row_major(&p.w_hh[2 * h * h..3 * h * h], h, h);
        matmul(gstep(g, t, 2 * h, h, d), w_n, drh, Out::rows(h), threads);
        for b in 0..bsz {
            let sv = &saved[(b * t_len + t) * rows..][..h];
            let hp = &out[(b * t_len + t - 1) * h..][..h];
            for j in 0..h {
                let (r, v) = (sv[j], drh[b * h + j]);
                g[(b * t_len + t) * rows + j] = v * hp[j] * r * (1.0 - r);
                dhp[b * h + j] += v * r;
            }
        }
        // dh_{t−1} += G_rz [B, 2H] · W_hh[r, z] [2H, H].
        let w_rz = Mat::row_major(&p.w_hh[..2 * h * h], 2 * h, h);
        matmul_acc(gstep(g, t, 0, 2 * h, d), w_rz, dhp, Out::rows(h), threads);
    }
    backward_gemms(x, p, d, out, g, Some(rh), dx, dw_ih, db_ih, dw_hh, db_hh, threads);
}

/// Fast backprop through time of the ReLU RNN; same contract as `rnn_relu_backward_ref`.
/// `scratch` holds at least `backward_scratch_len(false, d)`. Allocates nothing.
#[allow(clippy::too_many_arguments)]
pub fn rnn_relu_backward(
    x: &[f32],
    p: &RnnParams,
    d: RnnDims,
    out: &[f32],
    _saved: &[f32],
    dout: &[f32],
    dx: Option<&mut [f32]>,
    dw_ih: &mut [f32],
    db_ih: &mut [f32],
    dw_hh: &mut [f32],
    db_hh: &mut [f32],
    scratch: &mut [f32],
    threads: usize,
) {
    let (bsz, t_len, h) = (d.batch, d.t, d.hidden);
    let (g, rest) = scratch.split_at_mut(bsz * t_len * h);
    let dhp = &mut rest[..bsz * h];
    dhp.fill(0.0);
    for t in (0..t_len).rev() {
        for b in 0..bsz {
            for j in 0..h {
                let i = (b * t_len + t) * h + j;
                g[i] = if out[i] > 0.0 { dout[i] + dhp[b * h + j] } else { 0.0 };
            }
        }
        if t > 0 {
            // dh_{t−1} [B, H] = G_t [B, H] · W_hh [H, H].
            let gt = Mat { data: &g[t * h..], rows: bsz, cols: h, rs: t_len * h, cs: 1 };
            matmul(gt, Mat::row_major(&p.w_hh[..h * h], h, h), dhp, Out::rows(h), threads);
        }
    }
    backward_gemms(x, p, d, out, g, None, dx, dw_ih, db_ih, dw_hh, db_hh, threads);
}
