//! Recurrences over time for the char-CNN-RNN: Reed's FixedGRU and the plain ReLU RNN
//! (equations in docs/WEIGHTS.md). Input x [B, C, T] (the conv stack's layout), output the
//! hidden states [B, T, H]. Fast path: the input projections of all steps as GEMMs, then per
//! step one batched GEMM against W_hh.

use super::activation::sigmoid;
use super::gemm::{matmul_packed, Mat, Out, PackedA};

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
                hs[b * h..(b + 1) * h].iter_mut().zip(pn).for_each(|(v, &a)| *v = a.tanh());
            }
        } else {
            // g1ᵀ = W_hh[r, z] · hsᵀ, g2ᵀ = W_hh[n] · (r ⊙ h)ᵀ.
            matmul_packed(p.w_hh, Mat::transposed(hs, h, bsz), g1, Out::cols(2 * h), threads);
            for b in 0..bsz {
                let pr = &proj[(b * t_len + t) * 3 * h..][..h];
                for j in 0..h {
                    let r = sigmoid(pr[j] + g1[b * 2 * h + j] + p.b_hh[j]);
                    rh[b * h + j] = r * hs[b * h + j];
                }
            }
            matmul_packed(w_n, Mat::transposed(rh, h, bsz), g2, Out::cols(h), threads);
            for b in 0..bsz {
                let pt = &proj[(b * t_len + t) * 3 * h..][..3 * h];
                for j in 0..h {
                    let z = sigmoid(pt[h + j] + g1[b * 2 * h + h + j] + p.b_hh[h + j]);
                    let n = (pt[2 * h + j] + g2[b * h + j] + p.b_hh[2 * h + j]).tanh();
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
