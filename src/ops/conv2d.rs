//! 2-D convolution (cross-correlation, no bias: biases and folded batch norm come through the
//! epilogue). Fast path: im2col over a chunk of the batch, one GEMM, then the epilogue pass that
//! also permutes [Cout, B·HW] back to NCHW. 1×1 stride-1 convolutions at batch 1 skip im2col.

use rayon::prelude::*;

use super::gemm::{matmul_packed, Mat, Out, PackedA};
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
            epi.apply_channel(co, &mut out[base..base + ho * wo], res);
        }
    }
}

/// im2col of samples [b0, b0+nb) into col [kdim, nb·HoWo].
fn im2col(x: &[f32], b0: usize, nb: usize, g: &Conv2dGeom, col: &mut [f32]) {
    let (ho, wo) = g.out_hw_checked();
    let ncols = nb * ho * wo;
    col[..g.kdim() * ncols].par_chunks_mut(ncols).enumerate().for_each(|(r, row)| {
        let ci = r / (g.kh * g.kw);
        let ky = (r / g.kw) % g.kh;
        let kx = r % g.kw;
        for bi in 0..nb {
            let plane = &x[((b0 + bi) * g.cin + ci) * g.h * g.w..][..g.h * g.w];
            let dst = &mut row[bi * ho * wo..(bi + 1) * ho * wo];
            for oy in 0..ho {
                let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                let drow = &mut dst[oy * wo..(oy + 1) * wo];
                if iy < 0 || iy >= g.h as isize {
                    drow.fill(0.0);
                    continue;
                }
                let srow = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                for (ox, d) in drow.iter_mut().enumerate() {
                    let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                    *d = if ix < 0 || ix >= g.w as isize { 0.0 } else { srow[ix as usize] };
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
