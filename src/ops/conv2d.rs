//! 2-D convolution (cross-correlation, no bias: biases and folded batch norm come through the
//! epilogue). Fast path: im2col over a chunk of the batch, one GEMM, then the epilogue pass that
//! also permutes [Cout, B·HW] back to NCHW. 1×1 stride-1 convolutions at batch 1 skip im2col.
//!
//! Backward: dx is OVERWRITTEN, dW ACCUMULATES (dW += …), so the parameter gradients of
//! several calls (or several uses of one weight) add up. Fast path per chunk of the batch:
//! col = im2col(x), dW += dY · colᵀ, then dcol = Wᵀ · dY into the same buffer and dx =
//! col2im(dcol) (a gather per input plane, so no two threads touch one element).

use rayon::prelude::*;

use super::conv_transpose2d::{gather_plane_up2, UP2_MAX_W};
use super::gemm::{matmul, matmul_acc, matmul_packed, Mat, Out, PackedA};
use super::Epilogue;

/// Shape of a convolution (square stride and padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeom {
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
}

/// Scratch elements a chunk may use at most; chunks of the batch are sized to stay below it.
const CHUNK_ELEMS: usize = 1 << 22;

impl Conv2dGeom {
    /// Output height and width, or None if the kernel does not fit.
    pub fn out_hw(&self) -> Option<(usize, usize)> {
        let ho = (self.h + 2 * self.pad).checked_sub(self.kh)? / self.stride + 1;
        let wo = (self.w + 2 * self.pad).checked_sub(self.kw)? / self.stride + 1;
        Some((ho, wo))
    }

    fn out_hw_checked(&self) -> (usize, usize) {
        self.out_hw().expect("conv2d geometry was checked when the graph was built")
    }

    pub fn in_len(&self) -> usize {
        self.cin * self.h * self.w
    }

    pub fn out_len(&self) -> usize {
        let (ho, wo) = self.out_hw_checked();
        self.cout * ho * wo
    }

    /// Rows of the im2col matrix (the GEMM's inner dimension).
    pub fn kdim(&self) -> usize {
        self.cin * self.kh * self.kw
    }

    /// A 4×4, stride-2, padding-1 convolution of an even-sized image (out = in / 2), whose
    /// im2col and col2im have the even/odd-column forms.
    fn is_down2(&self, ho: usize, wo: usize) -> bool {
        (self.kh, self.kw, self.stride, self.pad) == (4, 4, 2, 1)
            && (self.h, self.w) == (2 * ho, 2 * wo)
            && (1..=UP2_MAX_W).contains(&wo)
    }

    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }

    /// Samples per chunk of the fast path.
    pub fn chunk(&self, batch: usize) -> usize {
        let (ho, wo) = self.out_hw_checked();
        let per = (self.kdim() + self.cout) * ho * wo;
        (CHUNK_ELEMS / per.max(1)).clamp(1, batch.max(1))
    }

    /// Scratch elements the fast path needs at this batch size.
    pub fn scratch_len(&self, batch: usize) -> usize {
        let (ho, wo) = self.out_hw_checked();
        let nb = self.chunk(batch);
        (self.kdim() + self.cout) * nb * ho * wo
    }

    /// Multiply-accumulates per sample.
    pub fn macs(&self) -> usize {
        self.out_len() * self.kdim()
    }

    /// Scratch elements `conv2d_backward` needs at this batch size: per chunk, the im2col
    /// matrix (reused for dcol) and dY regrouped as [Cout, nb·HoWo].
    pub fn backward_scratch_len(&self, batch: usize) -> usize {
        self.scratch_len(batch)
    }
}

/// Reference convolution: out[b, co, oy, ox] = epi(Σ x·w), f64 accumulation.
pub fn conv2d_ref(x: &[f32], w: &[f32], batch: usize, g: &Conv2dGeom, epi: &Epilogue, out: &mut [f32]) {
    let (ho, wo) = g.out_hw_checked();
    for b in 0..batch {
        for co in 0..g.cout {
            let base = (b * g.cout + co) * ho * wo;
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = 0.0f64;
                    for ci in 0..g.cin {
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                                let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let xv = x[((b * g.cin + ci) * g.h + iy as usize) * g.w + ix as usize];
                                let wv = w[((co * g.cin + ci) * g.kh + ky) * g.kw + kx];
                                acc += xv as f64 * wv as f64;
                            }
                        }
                    }
                    out[base + oy * wo + ox] = acc as f32;
                }
            }
            let res = epi.residual.map(|r| &r[base..base + ho * wo]);
            epi.apply_channel_ref(co, &mut out[base..base + ho * wo], res);
        }
    }
}

/// Indices i < n whose position i·stride + k − pad lies in [0, len): the outputs a kernel tap k
/// reads from an input of length `len` (convolution), or the inputs whose scatter lands in an
/// output of length `len` (transposed convolution). Empty when there are none.
#[inline]
pub(crate) fn tap_range(k: usize, stride: usize, pad: usize, n: usize, len: usize) -> std::ops::Range<usize> {
    // i·s + k ≥ pad  and  i·s + k ≤ len − 1 + pad.
    let lo = pad.saturating_sub(k).div_ceil(stride);
    let hi = match (len + pad).checked_sub(k + 1) {
        Some(t) => (t / stride + 1).min(n),
        None => 0,
    };
    lo..hi.max(lo)
}

/// im2col of samples [b0, b0+nb) into col [kdim, nb·HoWo]. Per tap, the valid output rows and
/// columns are computed once, so the copy has no per-element bounds tests (stride 1 is a
/// memcpy per row).
pub(crate) fn im2col(x: &[f32], b0: usize, nb: usize, g: &Conv2dGeom, col: &mut [f32]) {
    let (ho, wo) = g.out_hw_checked();
    let ncols = nb * ho * wo;
    if g.is_down2(ho, wo) {
        return im2col_down2(x, b0, nb, g, col);
    }
    col[..g.kdim() * ncols].par_chunks_mut(ncols).enumerate().for_each(|(r, row)| {
        let ci = r / (g.kh * g.kw);
        let ky = (r / g.kw) % g.kh;
        let kx = r % g.kw;
        let (rows, cols) = (tap_range(ky, g.stride, g.pad, ho, g.h), tap_range(kx, g.stride, g.pad, wo, g.w));
        for bi in 0..nb {
            let plane = &x[((b0 + bi) * g.cin + ci) * g.h * g.w..][..g.h * g.w];
            let dst = &mut row[bi * ho * wo..(bi + 1) * ho * wo];
            dst[..rows.start * wo].fill(0.0);
            dst[rows.end * wo..].fill(0.0);
            for oy in rows.clone() {
                let drow = &mut dst[oy * wo..(oy + 1) * wo];
                drow[..cols.start].fill(0.0);
                drow[cols.end..].fill(0.0);
                let iy = oy * g.stride + ky - g.pad;
                let ix0 = cols.start * g.stride + kx - g.pad;
                let srow = &plane[iy * g.w + ix0..(iy + 1) * g.w];
                let drow = &mut drow[cols.clone()];
                if g.stride == 1 {
                    drow.copy_from_slice(&srow[..drow.len()]);
                } else {
                    drow.iter_mut().zip(srow.iter().step_by(g.stride)).for_each(|(d, &v)| *d = v);
                }
            }
        }
    });
}

/// `im2col` for the 4×4, stride-2, padding-1 convolutions that halve the image (D's layers): each
/// input row is split into its even and odd columns once, and every tap row of the output is a
/// shifted contiguous copy of one of them (kx = 0: odd[ox − 1], 1: even[ox], 2: odd[ox], 3:
/// even[ox + 1]). The generic path gathered with a runtime stride, element by element.
fn im2col_down2(x: &[f32], b0: usize, nb: usize, g: &Conv2dGeom, col: &mut [f32]) {
    let (ho, wo) = (g.h / 2, g.w / 2);
    let (hw, ncols) = (ho * wo, nb * ho * wo);
    col[..g.kdim() * ncols].par_chunks_mut(16 * ncols).enumerate().for_each(|(ci, rows)| {
        let (mut even, mut odd) = ([0.0f32; UP2_MAX_W], [0.0f32; UP2_MAX_W]);
        let (even, odd) = (&mut even[..wo], &mut odd[..wo]);
        for bi in 0..nb {
            let plane = &x[((b0 + bi) * g.cin + ci) * g.h * g.w..][..g.h * g.w];
            // Output row oy reads input row 2·oy + ky − 1: row −1 (ky 0, oy 0) and row h (ky 3,
            // oy ho − 1) are padding.
            for kx in 0..4 {
                rows[kx * ncols + bi * hw..][..wo].fill(0.0);
                rows[(12 + kx) * ncols + bi * hw + (ho - 1) * wo..][..wo].fill(0.0);
            }
            for (iy, src) in plane.chunks_exact(g.w).enumerate() {
                for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(src.chunks_exact(2)) {
                    (*e, *o) = (pair[0], pair[1]);
                }
                // The taps ky with iy + 1 − ky even, and output row oy = (iy + 1 − ky) / 2.
                for ky in ((iy + 1) % 2..4).step_by(2) {
                    let Some(oy) = (iy + 1).checked_sub(ky).map(|d| d / 2).filter(|&oy| oy < ho) else {
                        continue;
                    };
                    let at = |kx: usize| (ky * 4 + kx) * ncols + bi * hw + oy * wo;
                    let d = &mut rows[at(0)..][..wo];
                    d[0] = 0.0;
                    d[1..].copy_from_slice(&odd[..wo - 1]);
                    rows[at(1)..][..wo].copy_from_slice(even);
                    rows[at(2)..][..wo].copy_from_slice(odd);
                    let d = &mut rows[at(3)..][..wo];
                    d[..wo - 1].copy_from_slice(&even[1..]);
                    d[wo - 1] = 0.0;
                }
            }
        }
    });
}

/// Fast convolution. `w` is the packed [Cout, Cin·kh·kw]; `scratch` holds at least
/// `g.scratch_len(batch)`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    x: &[f32],
    w: &PackedA,
    batch: usize,
    g: &Conv2dGeom,
    epi: &Epilogue,
    scratch: &mut [f32],
    out: &mut [f32],
    threads: usize,
) {
    let (ho, wo) = g.out_hw_checked();
    let hw = ho * wo;
    let (in_len, out_len) = (g.in_len(), g.out_len());
    if batch == 1 {
        // GEMM straight into the output, then the epilogue in place.
        let (col, _) = scratch.split_at_mut(g.kdim() * hw);
        let rhs = if g.is_pointwise() {
            Mat::row_major(&x[..in_len], g.kdim(), hw)
        } else {
            im2col(x, 0, 1, g, col);
            Mat::row_major(col, g.kdim(), hw)
        };
        matmul_packed(w, rhs, &mut out[..out_len], Out::rows(hw), threads);
        out[..out_len].par_chunks_mut(hw).enumerate().for_each(|(co, v)| {
            let res = epi.residual.map(|r| &r[co * hw..(co + 1) * hw]);
            epi.apply_channel(co, v, res);
        });
        return;
    }
    let chunk = g.chunk(batch);
    let mut b0 = 0;
    while b0 < batch {
        let nb = chunk.min(batch - b0);
        let ncols = nb * hw;
        let (col, rest) = scratch.split_at_mut(g.kdim() * ncols);
        let tmp = &mut rest[..g.cout * ncols];
        im2col(x, b0, nb, g, col);
        matmul_packed(w, Mat::row_major(col, g.kdim(), ncols), tmp, Out::rows(ncols), threads);
        let dst = &mut out[b0 * out_len..(b0 + nb) * out_len];
        dst.par_chunks_mut(hw).enumerate().for_each(|(i, v)| {
            let (bi, co) = (i / g.cout, i % g.cout);
            v.copy_from_slice(&tmp[co * ncols + bi * hw..][..hw]);
            let res = epi.residual.map(|r| &r[(b0 * g.cout + i) * hw..][..hw]);
            epi.apply_channel(co, v, res);
        });
        b0 += nb;
    }
}

/// Reference backward, f64 accumulation: dx[b, ci, iy, ix] = Σ dy[b, co, oy, ox] · w[co, ci,
/// ky, kx] over the taps that read (iy, ix), OVERWRITTEN; dw[co, ci, ky, kx] += Σ dy · x.
/// `w` row-major [Cout, Cin·kh·kw].
pub fn conv2d_backward_ref(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    batch: usize,
    g: &Conv2dGeom,
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
) {
    let (ho, wo) = g.out_hw_checked();
    let mut acc_w: Vec<f64> = dw[..g.cout * g.kdim()].iter().map(|&v| v as f64).collect();
    let mut acc_x = vec![0.0f64; batch * g.in_len()];
    for b in 0..batch {
        for co in 0..g.cout {
            for oy in 0..ho {
                for ox in 0..wo {
                    let d = dy[((b * g.cout + co) * ho + oy) * wo + ox] as f64;
                    for ci in 0..g.cin {
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                                let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let i = ((b * g.cin + ci) * g.h + iy as usize) * g.w + ix as usize;
                                let k = ((co * g.cin + ci) * g.kh + ky) * g.kw + kx;
                                acc_w[k] += d * x[i] as f64;
                                acc_x[i] += d * w[k] as f64;
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

/// col2im of samples [b0, b0+nb): dx planes = Σ over taps of dcol [kdim, nb·HoWo]. Each input
/// plane (sample, channel) is gathered by one task, so every element is written once.
fn col2im(dcol: &[f32], b0: usize, nb: usize, g: &Conv2dGeom, dx: &mut [f32]) {
    let (ho, wo) = g.out_hw_checked();
    let ncols = nb * ho * wo;
    let plane_len = g.h * g.w;
    let down2 = g.is_down2(ho, wo);
    dx[b0 * g.in_len()..(b0 + nb) * g.in_len()].par_chunks_mut(plane_len).enumerate().for_each(|(i, plane)| {
        let (bi, ci) = (i / g.cin, i % g.cin);
        if down2 {
            return gather_plane_up2(dcol, ncols, bi, ci, (ho, wo), plane);
        }
        plane.fill(0.0);
        for ky in 0..g.kh {
            let rows = tap_range(ky, g.stride, g.pad, ho, g.h);
            for kx in 0..g.kw {
                let cols = tap_range(kx, g.stride, g.pad, wo, g.w);
                let r = (ci * g.kh + ky) * g.kw + kx;
                let src = &dcol[r * ncols + bi * ho * wo..][..ho * wo];
                for oy in rows.clone() {
                    let iy = oy * g.stride + ky - g.pad;
                    let ix0 = cols.start * g.stride + kx - g.pad;
                    let drow = &mut plane[iy * g.w + ix0..(iy + 1) * g.w];
                    let srow = &src[oy * wo + cols.start..oy * wo + cols.end];
                    drow.iter_mut().step_by(g.stride).zip(srow).for_each(|(d, &v)| *d += v);
                }
            }
        }
    });
}

/// Fast backward; same contract as `conv2d_backward_ref`. `w` row-major [Cout, Cin·kh·kw];
/// `scratch` holds at least `g.backward_scratch_len(batch)`. Allocates nothing.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    batch: usize,
    g: &Conv2dGeom,
    mut dx: Option<&mut [f32]>,
    dw: &mut [f32],
    scratch: &mut [f32],
    threads: usize,
) {
    let (ho, wo) = g.out_hw_checked();
    let (hw, kdim, out_len) = (ho * wo, g.kdim(), g.out_len());
    let dw = &mut dw[..g.cout * kdim];
    let chunk = g.chunk(batch);
    let mut b0 = 0;
    while b0 < batch {
        let nb = chunk.min(batch - b0);
        let ncols = nb * hw;
        let (col, rest) = scratch.split_at_mut(kdim * ncols);
        // dY of the chunk as [Cout, nb·HoWo] (batch 1 is that already).
        let dyc: &[f32] = if nb == 1 {
            &dy[b0 * out_len..(b0 + 1) * out_len]
        } else {
            let dyt = &mut rest[..g.cout * ncols];
            dyt.par_chunks_mut(ncols).enumerate().for_each(|(co, row)| {
                for bi in 0..nb {
                    row[bi * hw..(bi + 1) * hw].copy_from_slice(&dy[((b0 + bi) * g.cout + co) * hw..][..hw]);
                }
            });
            dyt
        };
        im2col(x, b0, nb, g, col);
        // dW [Cout, kdim] += dY [Cout, ncols] · colᵀ [ncols, kdim].
        let dym = Mat::row_major(dyc, g.cout, ncols);
        matmul_acc(dym, Mat::transposed(col, ncols, kdim), dw, Out::rows(kdim), threads);
        if let Some(dx) = dx.as_deref_mut() {
            // dcol [kdim, ncols] = Wᵀ [kdim, Cout] · dY, into the im2col buffer, then col2im.
            matmul(Mat::transposed(&w[..g.cout * kdim], kdim, g.cout), dym, col, Out::rows(ncols), threads);
            col2im(col, b0, nb, g, dx);
        }
        b0 += nb;
    }
}
