//! Transposed 2-D convolution (no bias). PyTorch weight layout [Cin, Cout, k, k]. Fast path:
//! one GEMM cols[Cout·k·k, B·HW] = Wᵀ · x, then a gather (col2im written as a gather, so every
//! output element is written exactly once and the epilogue is fused), per chunk of the batch.
//!
//! Backward: dx is OVERWRITTEN, dW (PyTorch layout [Cin, Cout, k, k]) ACCUMULATES. dx is the
//! plain convolution of dy with w (same stride and padding; w's layout is already the conv's
//! [Cin, Cout·k·k]); dW += x · im2col(dy)ᵀ. Both share one im2col of dy per chunk.

use rayon::prelude::*;

use super::conv2d::{im2col, tap_range, Conv2dGeom};
use super::gemm::{matmul, matmul_acc, matmul_packed, Mat, Out, PackedA};
use super::{ChannelRuns, Epilogue};

/// Shape of a transposed convolution (square kernel, stride and padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose2dGeom {
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

const CHUNK_ELEMS: usize = 1 << 22;

impl ConvTranspose2dGeom {
    /// Output height and width, or None when the padding swallows the output.
    pub fn out_hw(&self) -> Option<(usize, usize)> {
        let f = |n: usize| ((n.checked_sub(1)? * self.stride + self.k).checked_sub(2 * self.pad)).filter(|&o| o > 0);
        Some((f(self.h)?, f(self.w)?))
    }

    fn out_hw_checked(&self) -> (usize, usize) {
        self.out_hw().expect("conv_transpose2d geometry was checked when the graph was built")
    }

    pub fn in_len(&self) -> usize {
        self.cin * self.h * self.w
    }

    pub fn out_len(&self) -> usize {
        let (ho, wo) = self.out_hw_checked();
        self.cout * ho * wo
    }

    /// Rows of the packed weight: Cout·k·k.
    pub fn rows(&self) -> usize {
        self.cout * self.k * self.k
    }

    /// Samples per chunk of the fast path.
    pub fn chunk(&self, batch: usize) -> usize {
        let per = (self.rows() + self.cin) * self.h * self.w;
        (CHUNK_ELEMS / per.max(1)).clamp(1, batch.max(1))
    }

    /// Scratch elements the fast path needs at this batch size.
    pub fn scratch_len(&self, batch: usize) -> usize {
        (self.rows() + self.cin) * self.chunk(batch) * self.h * self.w
    }

    /// Multiply-accumulates per sample.
    pub fn macs(&self) -> usize {
        self.cin * self.h * self.w * self.rows()
    }

    /// The convolution that maps this op's output back to its input (dy → dx): Cout → Cin
    /// channels, Ho×Wo → H×W, same kernel, stride and padding.
    pub fn adjoint_conv(&self) -> Conv2dGeom {
        let (ho, wo) = self.out_hw_checked();
        let cg = Conv2dGeom {
            cin: self.cout,
            h: ho,
            w: wo,
            cout: self.cin,
            kh: self.k,
            kw: self.k,
            stride: self.stride,
            pad: self.pad,
        };
        assert_eq!(cg.out_hw(), Some((self.h, self.w)), "transposed conv without output padding");
        cg
    }

    /// Scratch elements `conv_transpose2d_backward` needs: per chunk, im2col(dy) [Cout·k·k,
    /// nb·HW] and x (then dx) regrouped as [Cin, nb·HW].
    pub fn backward_scratch_len(&self, batch: usize) -> usize {
        self.scratch_len(batch)
    }
}

/// Packs a PyTorch weight [Cin, Cout, k, k] into the GEMM's [Cout·k·k, Cin].
pub fn pack_weight(w: &[f32], g: &ConvTranspose2dGeom) -> Vec<f32> {
    let rows = g.rows();
    let mut packed = vec![0.0; rows * g.cin];
    // A transpose, in 16 × 16 tiles so that both sides stay in cache lines already loaded (the
    // plain column walk wrote one value per line: a fifth of `generate`'s run).
    const T: usize = 16;
    for c0 in (0..g.cin).step_by(T) {
        for r0 in (0..rows).step_by(T) {
            for ci in c0..(c0 + T).min(g.cin) {
                for r in r0..(r0 + T).min(rows) {
                    packed[r * g.cin + ci] = w[ci * rows + r];
                }
            }
        }
    }
    packed
}

/// Reference: scatter form, out[b, co, iy·s − p + ky, ix·s − p + kx] += x[b, ci, iy, ix] ·
/// w[ci, co, ky, kx], f64 accumulation. `w` in PyTorch layout.
pub fn conv_transpose2d_ref(
    x: &[f32],
    w: &[f32],
    batch: usize,
    g: &ConvTranspose2dGeom,
    epi: &Epilogue,
    out: &mut [f32],
) {
    let (ho, wo) = g.out_hw_checked();
    let mut acc = vec![0.0f64; g.cout * ho * wo];
    for b in 0..batch {
        acc.fill(0.0);
        for ci in 0..g.cin {
            for iy in 0..g.h {
                for ix in 0..g.w {
                    let xv = x[((b * g.cin + ci) * g.h + iy) * g.w + ix] as f64;
                    for co in 0..g.cout {
                        for ky in 0..g.k {
                            for kx in 0..g.k {
                                let oy = (iy * g.stride + ky) as isize - g.pad as isize;
                                let ox = (ix * g.stride + kx) as isize - g.pad as isize;
                                if oy < 0 || ox < 0 || oy >= ho as isize || ox >= wo as isize {
                                    continue;
                                }
                                let wv = w[((ci * g.cout + co) * g.k + ky) * g.k + kx] as f64;
                                acc[(co * ho + oy as usize) * wo + ox as usize] += xv * wv;
                            }
                        }
                    }
                }
            }
        }
        let base = b * g.cout * ho * wo;
        for co in 0..g.cout {
            let plane = &mut out[base + co * ho * wo..base + (co + 1) * ho * wo];
            for (o, &a) in plane.iter_mut().zip(&acc[co * ho * wo..]) {
                *o = a as f32;
            }
            let res = epi.residual.map(|r| &r[base + co * ho * wo..][..ho * wo]);
            epi.apply_channel_ref(co, plane, res);
        }
    }
}

/// Gathers one output plane (sample `bi` of the chunk, channel `co`) from cols. Per output
/// row, only the taps ky that reach it; per tap kx, the contiguous run of inputs that lands in
/// the row (a strided add), so no per-element index checks remain.
fn gather_plane(cols: &[f32], ncols: usize, bi: usize, co: usize, g: &ConvTranspose2dGeom, plane: &mut [f32]) {
    if (g.k, g.stride, g.pad) == (4, 2, 1) && (1..=UP2_MAX_W).contains(&g.w) {
        return gather_plane_up2(cols, ncols, bi, co, (g.h, g.w), plane);
    }
    let (_, wo) = g.out_hw_checked();
    if g.h == 1 && g.w == 1 {
        // A 1×1 input (G's first layer): each output pixel is one tap, (oy + pad, ox + pad).
        for (i, v) in plane.iter_mut().enumerate() {
            let (ky, kx) = (i / wo + g.pad, i % wo + g.pad);
            *v = cols[((co * g.k + ky) * g.k + kx) * ncols + bi];
        }
        return;
    }
    let hw = g.h * g.w;
    for (oy, row) in plane.chunks_mut(wo).enumerate() {
        row.fill(0.0);
        let first_ky = (oy + g.pad) % g.stride;
        for ky in (first_ky..g.k.min(oy + g.pad + 1)).step_by(g.stride) {
            let iy = (oy + g.pad - ky) / g.stride;
            if iy >= g.h {
                continue;
            }
            for kx in 0..g.k {
                let r = (co * g.k + ky) * g.k + kx;
                let src = &cols[r * ncols + bi * hw + iy * g.w..][..g.w];
                let range = tap_range(kx, g.stride, g.pad, g.w, wo);
                let start = range.start * g.stride + kx - g.pad;
                let dst = row[start..].iter_mut().step_by(g.stride);
                dst.zip(&src[range]).for_each(|(d, &v)| *d += v);
            }
        }
    }
}

/// Widest input row of `gather_plane_up2` (its even/odd sums live on the stack).
pub(crate) const UP2_MAX_W: usize = 512;

/// `gather_plane` for the 4×4, stride-2, padding-1 layers (G's up-sampling; also col2im of D's
/// strided convolutions, the same sum): `cols` holds taps of an h×w grid, `plane` is 2h×2w.
/// Output column 2b takes taps kx = 1 (input b) and 3 (input b − 1), column 2b + 1 taps kx = 0
/// (b + 1) and 2 (b), so each parity is a sum of shifted contiguous runs (vector adds),
/// interleaved once per row.
pub(crate) fn gather_plane_up2(
    cols: &[f32],
    ncols: usize,
    bi: usize,
    co: usize,
    (h, w): (usize, usize),
    plane: &mut [f32],
) {
    let (mut even, mut odd) = ([0.0f32; UP2_MAX_W], [0.0f32; UP2_MAX_W]);
    let (even, odd) = (&mut even[..w], &mut odd[..w]);
    for (oy, row) in plane.chunks_exact_mut(2 * w).enumerate() {
        even.fill(0.0);
        odd.fill(0.0);
        // Taps ky with oy + 1 − ky even and input row iy = (oy + 1 − ky) / 2 inside the image.
        for ky in ((oy + 1) % 2..4).step_by(2) {
            let Some(iy) = (oy + 1).checked_sub(ky).map(|d| d / 2).filter(|&iy| iy < h) else {
                continue;
            };
            let src = |kx: usize| &cols[((co * 4 + ky) * 4 + kx) * ncols + bi * h * w + iy * w..][..w];
            let (s0, s1, s2, s3) = (src(0), src(1), src(2), src(3));
            even.iter_mut().zip(s1).for_each(|(e, &v)| *e += v);
            even[1..].iter_mut().zip(s3).for_each(|(e, &v)| *e += v);
            odd.iter_mut().zip(s2).for_each(|(o, &v)| *o += v);
            odd.iter_mut().zip(&s0[1..]).for_each(|(o, &v)| *o += v);
        }
        for (pair, (&e, &o)) in row.chunks_exact_mut(2).zip(even.iter().zip(odd.iter())) {
            pair.copy_from_slice(&[e, o]);
        }
    }
}

/// Fast transposed convolution. `wt` is the weight as [Cout·k·k, Cin] (see `pack_weight`),
/// packed for the GEMM;
/// `scratch` holds at least `g.scratch_len(batch)`.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose2d(
    x: &[f32],
    wt: &PackedA,
    batch: usize,
    g: &ConvTranspose2dGeom,
    epi: &Epilogue,
    scratch: &mut [f32],
    out: &mut [f32],
    threads: usize,
) {
    let hw = g.h * g.w;
    let (in_len, out_len) = (g.in_len(), g.out_len());
    let (ho, wo) = g.out_hw_checked();
    let plane_len = ho * wo;
    let chunk = g.chunk(batch);
    let mut b0 = 0;
    while b0 < batch {
        let nb = chunk.min(batch - b0);
        let ncols = nb * hw;
        let (cols, rest) = scratch.split_at_mut(g.rows() * ncols);
        let rhs = if nb == 1 {
            Mat::row_major(&x[b0 * in_len..(b0 + 1) * in_len], g.cin, hw)
        } else {
            let xt = &mut rest[..g.cin * ncols];
            xt.par_chunks_mut(ncols).enumerate().for_each(|(ci, row)| {
                for bi in 0..nb {
                    row[bi * hw..(bi + 1) * hw].copy_from_slice(&x[((b0 + bi) * g.cin + ci) * hw..][..hw]);
                }
            });
            Mat::row_major(xt, g.cin, ncols)
        };
        let cols = &mut cols[..];
        matmul_packed(wt, rhs, cols, Out::rows(ncols), threads);
        let cols = &*cols;
        // Tasks are (channel, run of samples): a channel's k² rows of cols are then read front to
        // back (one task per output plane read a few values from each of k² rows far apart: slow
        // for the 1×1 → 4×4 first layer), and a layer with few channels still has a task per
        // thread or more.
        let per = nb.div_ceil((4 * threads).div_ceil(g.cout).clamp(1, nb));
        let runs = ChannelRuns::new(&mut out[b0 * out_len..(b0 + nb) * out_len]);
        (0..g.cout * nb.div_ceil(per)).into_par_iter().for_each(|task| {
            let (co, part) = (task % g.cout, task / g.cout);
            for bi in part * per..((part + 1) * per).min(nb) {
                // SAFETY: `runs` covers this chunk's output, exclusively borrowed here while the
                // tasks run; plane (bi, co) belongs to the one task of (co, bi's run).
                let plane = unsafe { runs.run(bi, co, g.cout, plane_len) };
                gather_plane(cols, ncols, bi, co, g, plane);
                let res = epi.residual.map(|r| &r[((b0 + bi) * g.cout + co) * plane_len..][..plane_len]);
                epi.apply_channel(co, plane, res);
            }
        });
        b0 += nb;
    }
}

/// Reference backward (scatter form, f64 accumulation), `w` in PyTorch layout [Cin, Cout, k, k]:
/// dx[b, ci, iy, ix] = Σ dy[b, co, oy, ox] · w[ci, co, ky, kx] (OVERWRITTEN), dw += Σ x · dy.
pub fn conv_transpose2d_backward_ref(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    batch: usize,
    g: &ConvTranspose2dGeom,
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
) {
    let (ho, wo) = g.out_hw_checked();
    let mut acc_w: Vec<f64> = dw[..g.cin * g.rows()].iter().map(|&v| v as f64).collect();
    let mut acc_x = vec![0.0f64; batch * g.in_len()];
    for b in 0..batch {
        for ci in 0..g.cin {
            for iy in 0..g.h {
                for ix in 0..g.w {
                    let i = ((b * g.cin + ci) * g.h + iy) * g.w + ix;
                    for co in 0..g.cout {
                        for ky in 0..g.k {
                            for kx in 0..g.k {
                                let oy = (iy * g.stride + ky) as isize - g.pad as isize;
                                let ox = (ix * g.stride + kx) as isize - g.pad as isize;
                                if oy < 0 || ox < 0 || oy >= ho as isize || ox >= wo as isize {
                                    continue;
                                }
                                let d = dy[((b * g.cout + co) * ho + oy as usize) * wo + ox as usize] as f64;
                                let k = ((ci * g.cout + co) * g.k + ky) * g.k + kx;
                                acc_w[k] += x[i] as f64 * d;
                                acc_x[i] += w[k] as f64 * d;
                            }
                        }
                    }
                }
            }
        }
    }
    dw[..acc_w.len()].iter_mut().zip(&acc_w).for_each(|(d, &a)| *d = a as f32);
    if let Some(dx) = dx {
        dx[..acc_x.len()].iter_mut().zip(&acc_x).for_each(|(d, &a)| *d = a as f32);
    }
}

/// Fast backward; same contract as `conv_transpose2d_backward_ref` (`w` in PyTorch layout,
/// unpacked). `scratch` holds at least `g.backward_scratch_len(batch)`. Allocates nothing.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose2d_backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    batch: usize,
    g: &ConvTranspose2dGeom,
    mut dx: Option<&mut [f32]>,
    dw: &mut [f32],
    scratch: &mut [f32],
    threads: usize,
) {
    let cg = g.adjoint_conv();
    let (hw, rows, in_len) = (g.h * g.w, g.rows(), g.in_len());
    let (w, dw) = (&w[..g.cin * rows], &mut dw[..g.cin * rows]);
    let chunk = g.chunk(batch);
    let mut b0 = 0;
    while b0 < batch {
        let nb = chunk.min(batch - b0);
        let ncols = nb * hw;
        let (col, rest) = scratch.split_at_mut(rows * ncols);
        let xt = &mut rest[..g.cin * ncols];
        im2col(dy, b0, nb, &cg, col);
        // x of the chunk as [Cin, nb·HW] (batch 1 is that already).
        let xc: &[f32] = if nb == 1 {
            &x[b0 * in_len..(b0 + 1) * in_len]
        } else {
            xt.par_chunks_mut(ncols).enumerate().for_each(|(ci, row)| {
                for bi in 0..nb {
                    row[bi * hw..(bi + 1) * hw].copy_from_slice(&x[((b0 + bi) * g.cin + ci) * hw..][..hw]);
                }
            });
            &*xt
        };
        // dW [Cin, Cout·k·k] += x [Cin, ncols] · colᵀ [ncols, Cout·k·k].
        matmul_acc(Mat::row_major(xc, g.cin, ncols), Mat::transposed(col, ncols, rows), dw, Out::rows(rows), threads);
        if let Some(dx) = dx.as_deref_mut() {
            // dx [Cin, ncols] = W [Cin, Cout·k·k] · col: the adjoint convolution.
            let wm = Mat::row_major(w, g.cin, rows);
            let colm = Mat::row_major(col, rows, ncols);
            if nb == 1 {
                matmul(wm, colm, &mut dx[b0 * in_len..(b0 + 1) * in_len], Out::rows(hw), threads);
            } else {
                matmul(wm, colm, xt, Out::rows(ncols), threads);
                let xt = &*xt;
                dx[b0 * in_len..(b0 + nb) * in_len].par_chunks_mut(hw).enumerate().for_each(|(i, plane)| {
                    let (bi, ci) = (i / g.cin, i % g.cin);
                    plane.copy_from_slice(&xt[ci * ncols + bi * hw..][..hw]);
                });
            }
        }
        b0 += nb;
    }
}
