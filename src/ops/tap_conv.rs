//! Batch-1 convolutions (plain and transposed) as one product per kernel tap, over only the
//! pixel pairs that tap joins.
//!
//! At batch 1 the im2col GEMM of a layer on a 4×4 or 8×8 grid is narrow (n = 16 or 64 pixels)
//! and much of it is taps that land on the zero border: 23 % of a 4×4 → 8×8 up-sampling, 31 %
//! of a 3×3 convolution on 4×4. Here tap (ky, kx) is the product
//!   C[o, :] += Σ_ci x[ci, i] · W_tap[ci, :]   for each pair (input pixel i, output pixel o)
//! that the tap joins with both pixels inside, so no border tap is computed. The lanes are 64
//! output channels (four 16-lane vectors) and a micro-kernel call takes 6 pairs: per input
//! channel it loads 4 weight vectors and broadcasts 6 inputs for 24 FMAs (the narrow GEMM
//! kernel broadcast one weight per FMA). C is pixel-major [pixels, Cout]; the epilogue
//! transposes it into the NCHW output.

use rayon::prelude::*;

use super::conv2d::Conv2dGeom;
use super::conv_transpose2d::ConvTranspose2dGeom;
use super::gemm::{portable_forced, SendPtr};
use super::Epilogue;
use crate::tensor::convert::{narrow_f16, widen_f16};

/// Output channels per panel: the micro-kernel's four 16-lane vectors.
const LANES: usize = 64;
/// Pixel pairs per micro-kernel call: 6 × 4 = 24 accumulators of the 32 vector registers.
const ROWS: usize = 6;
/// Input channels per k block: a block's weights (128 × 64 f32, 32 KB) stay in L1 while every
/// pair tile of the tap reads them.
const KC: usize = 128;
/// Most pairs one tap may have for this form (an 8×8 grid): beyond that the layer has enough
/// pixels for the GEMM paths to run at full width.
const MAX_PAIRS: usize = 64;

/// A layer's shape as the tap products see it: input and output grids, kernel, and which way
/// the taps map pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TapShape {
    pub cin: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    pub h: usize,
    pub w: usize,
    pub ho: usize,
    pub wo: usize,
    /// Transposed: output (iy·s − p + ky, ix·s − p + kx) takes input (iy, ix). Plain: output
    /// (oy, ox) takes input (oy·s − p + ky, ox·s − p + kx).
    pub transposed: bool,
}

impl TapShape {
    /// A plain convolution's shape (None when the geometry has no output).
    pub fn conv(g: &Conv2dGeom) -> Option<TapShape> {
        let (ho, wo) = g.out_hw()?;
        let (cin, cout, kh, kw, stride, pad, h, w) = (g.cin, g.cout, g.kh, g.kw, g.stride, g.pad, g.h, g.w);
        Some(TapShape { cin, cout, kh, kw, stride, pad, h, w, ho, wo, transposed: false })
    }

    /// A transposed convolution's shape (None when the geometry has no output).
    pub fn deconv(g: &ConvTranspose2dGeom) -> Option<TapShape> {
        let (ho, wo) = g.out_hw()?;
        let (cin, cout, k, stride, pad, h, w) = (g.cin, g.cout, g.k, g.stride, g.pad, g.h, g.w);
        Some(TapShape { cin, cout, kh: k, kw: k, stride, pad, h, w, ho, wo, transposed: true })
    }

    fn taps(&self) -> usize {
        self.kh * self.kw
    }

    /// The grid whose pixels index a tap's pairs: the output for a plain convolution (each
    /// output pixel reads at most one input per tap), the input for a transposed one.
    fn pair_grid(&self) -> usize {
        if self.transposed {
            self.h * self.w
        } else {
            self.ho * self.wo
        }
    }

    /// Index of weight (co, ci, tap) in the layer's GEMM rows: plain [Cout, Cin·kh·kw],
    /// transposed [Cout·k·k, Cin] (`conv_transpose2d::pack_weight`).
    fn row_index(&self, co: usize, ci: usize, tap: usize) -> usize {
        if self.transposed {
            (co * self.taps() + tap) * self.cin + ci
        } else {
            (co * self.cin + ci) * self.taps() + tap
        }
    }

    /// The stored weights in storage order, [Cout / 64 panels][taps][Cin][64 lanes], as runs of
    /// 64 lanes: the GEMM-row index of each run's first lane (its lanes are `lane_stride` apart).
    /// `TapWeights::new` packs by it, `unpack` reverses it.
    fn lane_runs(self) -> impl Iterator<Item = usize> {
        (0..self.cout / LANES).flat_map(move |p| {
            (0..self.taps()).flat_map(move |t| (0..self.cin).map(move |ci| self.row_index(p * LANES, ci, t)))
        })
    }

    /// The GEMM-row distance between consecutive output channels (the lanes of a run).
    fn lane_stride(&self) -> usize {
        self.row_index(1, 0, 0) - self.row_index(0, 0, 0)
    }

    /// Appends tap (ky, kx)'s (input pixel, output pixel) pairs with both pixels inside.
    fn push_pairs(&self, ky: usize, kx: usize, pairs: &mut Vec<[u32; 2]>) {
        // Coordinate `b` of the pair grid maps to `b·s + k − p` on the other grid, inside [0, n).
        let map = |b: usize, k: usize, n: usize| (b * self.stride + k).checked_sub(self.pad).filter(|&v| v < n);
        let (gh, gw, nh, nw) =
            if self.transposed { (self.h, self.w, self.ho, self.wo) } else { (self.ho, self.wo, self.h, self.w) };
        for by in 0..gh {
            let Some(my) = map(by, ky, nh) else { continue };
            for bx in 0..gw {
                let Some(mx) = map(bx, kx, nw) else { continue };
                let (grid, mapped) = (by * gw + bx, my * nw + mx);
                let (i, o) = if self.transposed { (grid, mapped) } else { (mapped, grid) };
                pairs.push([i as u32, o as u32]);
            }
        }
    }
}

/// Whether the tap form pays: batch 1 on a grid of at most 64 pixels, a kernel wider than one
/// tap (a 1×1 convolution has no border to skip), output channels in whole 64-lane panels, and
/// the AVX-512 micro-kernel (elsewhere the GEMM paths are the faster ones).
pub fn worth_it(s: &TapShape, batch: usize) -> bool {
    batch == 1 && s.taps() > 1 && s.pair_grid() <= MAX_PAIRS && s.cout.is_multiple_of(LANES) && s.cin > 0 && avx512()
}

fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Scratch elements `TapWeights::forward` needs: C, [output pixels, Cout].
pub fn scratch_len(s: &TapShape) -> usize {
    s.ho * s.wo * s.cout
}

#[derive(Clone, Debug)]
enum Lanes {
    F32(Vec<f32>),
    F16(Vec<half::f16>),
}

/// A layer's kernel in tap form: [Cout / 64 panels][taps][Cin][64 lanes], f32 or f16, and each
/// tap's pixel pairs.
#[derive(Clone, Debug)]
pub struct TapWeights {
    shape: TapShape,
    data: Lanes,
    pairs: Vec<[u32; 2]>,
    /// Tap t's pairs are pairs[starts[t]..starts[t + 1]].
    starts: Vec<usize>,
}

impl TapWeights {
    /// From the layer's GEMM rows (see `TapShape::row_index`); stored in f16 when `half`.
    /// Panics unless Cout is a multiple of 64 (`worth_it` checks it).
    pub fn new(rows: &[f32], s: &TapShape, half: bool) -> TapWeights {
        assert!(s.cout.is_multiple_of(LANES), "tap form needs Cout in 64-lane panels");
        assert_eq!(rows.len(), s.cout * s.cin * s.taps(), "tap form: weight size");
        // On huge pages, as the packed GEMM weights: the layer streams them once per image.
        let mut data = if half {
            Lanes::F16(crate::tensor::pages::zeroed(rows.len()))
        } else {
            Lanes::F32(crate::tensor::pages::zeroed(rows.len()))
        };
        let stride = s.lane_stride();
        let mut lane = [0.0f32; LANES];
        for (i, base) in s.lane_runs().enumerate() {
            lane.iter_mut().enumerate().for_each(|(l, v)| *v = rows[base + l * stride]);
            let at = i * LANES..(i + 1) * LANES;
            match &mut data {
                Lanes::F32(v) => v[at].copy_from_slice(&lane),
                Lanes::F16(v) => narrow_f16(&lane, &mut v[at]),
            }
        }
        let (mut pairs, mut starts) = (Vec::new(), vec![0]);
        for t in 0..s.taps() {
            s.push_pairs(t / s.kw, t % s.kw, &mut pairs);
            starts.push(pairs.len());
        }
        TapWeights { shape: *s, data, pairs, starts }
    }

    pub fn shape(&self) -> &TapShape {
        &self.shape
    }

    pub fn numel(&self) -> usize {
        self.shape.cout * self.shape.cin * self.shape.taps()
    }

    pub fn is_f16(&self) -> bool {
        matches!(self.data, Lanes::F16(_))
    }

    /// Back to the GEMM rows `new` was given (exactly, after the f16 rounding when stored so).
    pub fn unpack(&self) -> Vec<f32> {
        let s = &self.shape;
        let mut rows = vec![0.0; self.numel()];
        let value = |i: usize| match &self.data {
            Lanes::F32(v) => v[i],
            Lanes::F16(v) => v[i].to_f32(),
        };
        let stride = s.lane_stride();
        for (i, base) in s.lane_runs().enumerate() {
            (0..LANES).for_each(|l| rows[base + l * stride] = value(i * LANES + l));
        }
        rows
    }

    /// out (NCHW) = epilogue(conv(x)). The form is chosen for batch 1; a graph re-planned for
    /// more images (a grid from a session built for one) runs it sample by sample, each reading
    /// the weights again. `scratch` holds at least `scratch_len`.
    pub fn forward(&self, x: &[f32], batch: usize, epi: &Epilogue, scratch: &mut [f32], out: &mut [f32]) {
        let s = &self.shape;
        let (in_len, out_len) = (s.cin * s.h * s.w, s.cout * s.ho * s.wo);
        assert!(x.len() >= batch * in_len && out.len() >= batch * out_len, "tap form: buffer sizes");
        for b in 0..batch {
            let res = epi.residual.map(|r| &r[b * out_len..(b + 1) * out_len]);
            let epi = Epilogue { residual: res, ..*epi };
            let out = &mut out[b * out_len..(b + 1) * out_len];
            self.forward_one(&x[b * in_len..(b + 1) * in_len], &epi, scratch, out);
        }
    }

    fn forward_one(&self, x: &[f32], epi: &Epilogue, scratch: &mut [f32], out: &mut [f32]) {
        let s = &self.shape;
        let (pin, pout) = (s.h * s.w, s.ho * s.wo);
        assert!(x.len() >= s.cin * pin && out.len() >= s.cout * pout, "tap form: buffer sizes");
        let c = &mut scratch[..pout * s.cout];
        let cp = SendPtr(c.as_mut_ptr());
        (0..s.cout / LANES).into_par_iter().for_each(|p| {
            // SAFETY: panel p writes only columns [64p, 64p + 64) of C's rows: disjoint between
            // the tasks, and C (pout × Cout) is exclusively borrowed until they all return.
            unsafe { self.panel(&x[..s.cin * pin], p, cp) }
        });
        let c: &[f32] = c;
        // C is [pixel, Cout]: each task transposes 16 channels' columns into their planes.
        out[..s.cout * pout].par_chunks_mut(16 * pout).enumerate().for_each(|(g, planes)| {
            for (op, row) in c.chunks_exact(s.cout).enumerate() {
                for (j, &v) in row[16 * g..16 * g + planes.len() / pout].iter().enumerate() {
                    planes[j * pout + op] = v;
                }
            }
            for (j, plane) in planes.chunks_exact_mut(pout).enumerate() {
                let co = 16 * g + j;
                epi.apply_channel(co, plane, epi.residual.map(|r| &r[co * pout..(co + 1) * pout]));
            }
        });
    }

    /// Columns [64p, 64p + 64) of C, over every tap and input channel.
    ///
    /// # Safety
    /// `c` points at the pout × Cout C buffer, and no one else touches these columns meanwhile.
    unsafe fn panel(&self, x: &[f32], p: usize, c: SendPtr) {
        let s = &self.shape;
        let (pin, cout) = (s.h * s.w, s.cout);
        for o in 0..s.ho * s.wo {
            // SAFETY: row o's panel columns lie inside C (o < pout, 64p + 64 ≤ Cout) and belong
            // to this task (the caller's contract).
            unsafe { std::ptr::write_bytes(c.get().add(o * cout + p * LANES), 0, LANES) };
        }
        let mut wide = [0.0f32; KC * LANES];
        for t in 0..s.taps() {
            let pairs = &self.pairs[self.starts[t]..self.starts[t + 1]];
            if pairs.is_empty() {
                continue;
            }
            let base = (p * s.taps() + t) * s.cin * LANES;
            for k0 in (0..s.cin).step_by(KC) {
                let kc = KC.min(s.cin - k0);
                let range = base + k0 * LANES..base + (k0 + kc) * LANES;
                // The stored block's end, where the next block of this thread's stream starts.
                let (b, next, bytes): (&[f32], *const i8, usize) = match &self.data {
                    Lanes::F32(v) => (&v[range.clone()], v.as_ptr().wrapping_add(range.end).cast(), 4),
                    Lanes::F16(v) => {
                        widen_f16(&v[range.clone()], &mut wide[..kc * LANES]);
                        (&wide[..kc * LANES], v.as_ptr().wrapping_add(range.end).cast(), 2)
                    }
                };
                // The tiles of this block together prefetch the next one, spread over all their
                // k steps, so the memory streams while the later tiles compute from L1.
                let tiles = pairs.len().div_ceil(ROWS);
                let per_k = (kc * LANES * bytes / 64).div_ceil(tiles * kc);
                let xk = &x[k0 * pin..(k0 + kc) * pin];
                for (n, tile) in pairs.chunks(ROWS).enumerate() {
                    let fetch = Fetch { at: next.wrapping_add(n * kc * per_k * 64), per_k };
                    // SAFETY: every pair's output pixel is < pout, so its row's panel columns are
                    // in C and this task's (the caller's contract); the pairs of one tap have
                    // distinct output pixels (a pixel meets one input per tap), so the tile's
                    // rows do not alias.
                    unsafe { tile_dispatch(kc, xk, pin, tile, b, c.get().add(p * LANES), cout, fetch) };
                }
            }
        }
    }
}

/// Cache lines a micro-kernel call prefetches: `per_k` per k step, from `at` on.
#[derive(Clone, Copy)]
struct Fetch {
    at: *const i8,
    per_k: usize,
}

/// One micro-kernel call: for each pair (i, o) of `tile`, c[o·ldc .. o·ldc + 64] +=
/// Σ_k x[k·xs + i] · b[k·64 .. k·64 + 64] over k < kc, prefetching `fetch.per_k` cache lines
/// from `fetch.at` per k step.
///
/// # Safety
/// For each pair, the 64 elements at c + o·ldc are valid for reads and writes, not aliased by
/// another pair of the tile, and not accessed by anyone else during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn tile_dispatch(
    kc: usize,
    x: &[f32],
    xs: usize,
    tile: &[[u32; 2]],
    b: &[f32],
    c: *mut f32,
    ldc: usize,
    fetch: Fetch,
) {
    assert!(b.len() >= kc * LANES && tile.iter().all(|&[i, _]| (i as usize) < xs) && x.len() >= kc * xs);
    #[cfg(target_arch = "x86_64")]
    if avx512() && !portable_forced() {
        let a: [usize; ROWS] = std::array::from_fn(|r| tile.get(r).map_or(0, |p| p[0] as usize));
        let o: [usize; ROWS] = std::array::from_fn(|r| tile.get(r).map_or(0, |p| p[1] as usize * ldc));
        let (x, b) = (x.as_ptr(), b.as_ptr());
        // SAFETY: AVX-512F detected; x holds kc·xs values and every input pixel is < xs, b
        // holds kc·64 (asserted above); C's rows per the caller's contract.
        unsafe {
            match tile.len() {
                6 => tile_avx512::<6>(kc, x, xs, &a, b, c, &o, fetch),
                5 => tile_avx512::<5>(kc, x, xs, &a, b, c, &o, fetch),
                4 => tile_avx512::<4>(kc, x, xs, &a, b, c, &o, fetch),
                3 => tile_avx512::<3>(kc, x, xs, &a, b, c, &o, fetch),
                2 => tile_avx512::<2>(kc, x, xs, &a, b, c, &o, fetch),
                _ => tile_avx512::<1>(kc, x, xs, &a, b, c, &o, fetch),
            }
        }
        return;
    }
    for &[i, o] in tile {
        // SAFETY: the 64 elements at c + o·ldc are this call's alone (the caller's contract).
        let row = unsafe { std::slice::from_raw_parts_mut(c.add(o as usize * ldc), LANES) };
        for k in 0..kc {
            let xv = x[k * xs + i as usize];
            row.iter_mut().zip(&b[k * LANES..(k + 1) * LANES]).for_each(|(r, &w)| *r += xv * w);
        }
    }
}

/// `tile_dispatch` for R pairs: 4R accumulators (at least 8 independent FMA chains for R ≥ 2).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_avx512<const R: usize>(
    kc: usize,
    x: *const f32,
    xs: usize,
    a: &[usize; ROWS],
    b: *const f32,
    c: *mut f32,
    o: &[usize; ROWS],
    fetch: Fetch,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 4]; R];
    for (r, row) in acc.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            // SAFETY: C's row o[r] holds 64 elements (the caller's contract).
            *v = unsafe { _mm512_loadu_ps(c.add(o[r] + 16 * j)) };
        }
    }
    for k in 0..kc {
        // SAFETY: k < kc: b holds kc·64 values and x kc·xs, with every a[r] < xs (asserted by
        // tile_dispatch).
        unsafe {
            let bk = b.add(k * LANES);
            // A prefetch never faults, so running past the weights' end is harmless.
            for line in 0..fetch.per_k {
                _mm_prefetch::<_MM_HINT_T0>(fetch.at.wrapping_add((k * fetch.per_k + line) * 64));
            }
            let w = [
                _mm512_loadu_ps(bk),
                _mm512_loadu_ps(bk.add(16)),
                _mm512_loadu_ps(bk.add(32)),
                _mm512_loadu_ps(bk.add(48)),
            ];
            let xk = x.add(k * xs);
            for (r, row) in acc.iter_mut().enumerate() {
                let v = _mm512_set1_ps(*xk.add(a[r]));
                for (j, s) in row.iter_mut().enumerate() {
                    *s = _mm512_fmadd_ps(v, w[j], *s);
                }
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            // SAFETY: as for the loads.
            unsafe { _mm512_storeu_ps(c.add(o[r] + 16 * j), *v) };
        }
    }
}
