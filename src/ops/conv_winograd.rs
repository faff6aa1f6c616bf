//! Convolution 3×3, stride 1, padding 1 (the residual blocks' two 3×3 layers) by Winograd
//! F(2×2, 3×3): 16 multiplies per 2×2 output tile instead of 36, so the GEMM work of these
//! layers falls to 4/9.
//!
//! In one dimension, for y0 = d0·g0 + d1·g1 + d2·g2 and y1 = d1·g0 + d2·g1 + d3·g2:
//!   V = Bᵀd = [d0 − d2, d1 + d2, d2 − d1, d1 − d3],  U = Gg = [g0, ½(g0 + g1 + g2),
//!   ½(g0 − g1 + g2), g2],  y = Aᵀ(U ⊙ V) = [m0 + m1 + m2, m1 − m2 − m3].
//! In two dimensions U = G g Gᵀ and V = Bᵀ d B are 4×4, and for each of the 16 points the sum over
//! input channels of U ⊙ V is one GEMM [Cout, Cin] × [Cin, tiles] (`winograd::Layout::forward`).
//! The data transforms only add and subtract; the weight transform halves (exact in binary).
//!
//! The transformed weights are 16/9 of the kernel (kept in f32), so the builder picks this form
//! only where the layer has enough tiles not to be bound by reading them (`worth_it`).

use super::conv2d::Conv2dGeom;
use super::gemm::PackedA;
use super::winograd::{padded_rows, Layout, MAX_W, OUT_BLOCK};
use super::{ChannelRuns, Epilogue};

/// Winograd points (4 × 4).
const MATS: usize = 16;
/// G (4×3): the weight transform.
const G: [[f64; 3]; 4] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];

/// Whether this geometry has the Winograd form: 3×3, stride 1, padding 1, even input.
pub fn applies(g: &Conv2dGeom) -> bool {
    (g.kh, g.kw, g.stride, g.pad) == (3, 3, 1, 1)
        && g.h > 0
        && g.w > 0
        && g.h.is_multiple_of(2)
        && g.w.is_multiple_of(2)
        && g.w <= MAX_W
}

/// Whether the Winograd form pays at `batch`: at least 16 tiles and more than a handful of
/// output channels. Measured on reed-cub: at batch 1 the 8×8 block's layers (16 tiles) run in
/// 0.33 ms instead of 0.58, while the 4×4 block's (4 tiles) would read 16/9 of their weights for
/// too little work to hide it.
pub fn worth_it(g: &Conv2dGeom, batch: usize) -> bool {
    applies(g) && batch * tiles_per_sample(g) >= 16 && g.cout >= 8
}

fn tiles_per_sample(g: &Conv2dGeom) -> usize {
    (g.h / 2) * (g.w / 2)
}

/// The layer's sizes in this form.
fn layout(g: &Conv2dGeom) -> Layout {
    Layout {
        cin: g.cin,
        cout: g.cout,
        points: MATS,
        tiles: tiles_per_sample(g),
        in_len: g.in_len(),
        out_len: g.out_len(),
    }
}

/// Samples per chunk (whole samples, so every output plane of a chunk is finished in it).
pub fn chunk(g: &Conv2dGeom, batch: usize) -> usize {
    layout(g).chunk(batch)
}

/// Scratch elements `forward` needs: V [Cin, 16, tiles] and M [16, Cout, tiles].
pub fn scratch_len(g: &Conv2dGeom, batch: usize) -> usize {
    if applies(g) {
        layout(g).scratch_len(batch)
    } else {
        0
    }
}

/// The weights of one 3×3 layer in Winograd form.
#[derive(Clone, Debug)]
pub struct WinogradConv {
    cin: usize,
    cout: usize,
    /// Index u·4 + v: U[co, ci] packed for the GEMM.
    u: Vec<PackedA>,
    /// The kernel as given (row-major [Cout, Cin·9]), for `unpack`: G's halves make the
    /// transformed values sums that do not give the taps back exactly.
    rows: Vec<f32>,
}

impl WinogradConv {
    /// From the kernel, row-major [Cout, Cin·3·3].
    pub fn new(rows: &[f32], g: &Conv2dGeom) -> WinogradConv {
        assert!(applies(g) && rows.len() == g.cout * g.cin * 9, "not a 3×3 stride-1 padding-1 convolution");
        let (cin, cout) = (g.cin, g.cout);
        let u = (0..MATS)
            .map(|k| {
                let (gu, gv) = (G[k / 4], G[k % 4]);
                let mut m = vec![0.0f32; cout * cin];
                for (i, v) in m.iter_mut().enumerate() {
                    let tap = |ky: usize, kx: usize| f64::from(rows[i * 9 + ky * 3 + kx]);
                    let sum: f64 = (0..9).map(|t| gu[t / 3] * gv[t % 3] * tap(t / 3, t % 3)).sum();
                    *v = sum as f32;
                }
                PackedA::from_row_major(&m, cout, cin)
            })
            .collect();
        WinogradConv { cin, cout, u, rows: rows.to_vec() }
    }

    /// Elements of the kernel this stands for.
    pub fn numel(&self) -> usize {
        self.rows.len()
    }

    /// The kernel, row-major [Cout, Cin·9].
    pub fn unpack(&self) -> Vec<f32> {
        self.rows.clone()
    }

    /// Same contract as `conv2d` (epilogue and residual fused, every output element written);
    /// `scratch` holds at least `scratch_len(g, batch)`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: &[f32],
        batch: usize,
        g: &Conv2dGeom,
        epi: &Epilogue,
        scratch: &mut [f32],
        out: &mut [f32],
        threads: usize,
    ) {
        assert!(applies(g) && g.cin == self.cin && g.cout == self.cout, "Winograd weights do not match {g:?}");
        let input = |xc: &[f32], nb, ci, vc: &mut [f32]| input_transform(xc, nb, ci, g, vc);
        let output = |m: &[f32], co, nb, b0, runs: &ChannelRuns| {
            let res = epi.residual.map(|r| &r[b0 * g.out_len()..(b0 + nb) * g.out_len()]);
            output_channel(m, (g.cout, co), nb, g, epi, res, runs)
        };
        layout(g).forward(&self.u, x, batch, scratch, out, threads, input, output);
    }
}

/// V [16, nb·tiles] of input channel `ci`, `nb` samples of x: per tile, the 4×4 input window at
/// (2·ty − 1, 2·tx − 1) (zero outside), transformed to Bᵀ d B. Per tile row, the four input rows
/// are copied into zero-padded buffers and combined (Bᵀ) once; each combined row is split into
/// even and odd columns so the column transform reads unit-stride runs.
fn input_transform(x: &[f32], nb: usize, ci: usize, g: &Conv2dGeom, vc: &mut [f32]) {
    let (h, w) = (g.h, g.w);
    let (th, tw) = (h / 2, w / 2);
    let tc = nb * th * tw;
    // Input row 2·ty − 1 + i at d[i][1..=w]; padded column c at d[i][c].
    let mut d = [[0.0f32; MAX_W + 2]; 4];
    let (mut e, mut o) = ([0.0f32; MAX_W / 2 + 1], [0.0f32; MAX_W / 2 + 1]);
    for bi in 0..nb {
        let plane = &x[(bi * g.cin + ci) * h * w..][..h * w];
        for ty in 0..th {
            padded_rows(plane, (h, w), ty, &mut d);
            let base = (bi * th + ty) * tw;
            for u in 0..4 {
                // Bᵀ on the rows: d0 − d2, d1 + d2, d2 − d1, d1 − d3.
                let comb = |c: usize| match u {
                    0 => d[0][c] - d[2][c],
                    1 => d[1][c] + d[2][c],
                    2 => d[2][c] - d[1][c],
                    _ => d[1][c] - d[3][c],
                };
                for k in 0..=tw {
                    (e[k], o[k]) = (comb(2 * k), comb(2 * k + 1));
                }
                // B on the columns, window columns 2·tx .. 2·tx + 3 (padded): r0 − r2, r1 + r2,
                // r2 − r1, r1 − r3 with r0 = e[tx], r1 = o[tx], r2 = e[tx + 1], r3 = o[tx + 1].
                let (v0, rest) = vc[u * 4 * tc + base..].split_at_mut(tc);
                let (v1, rest) = rest.split_at_mut(tc);
                let (v2, v3) = rest.split_at_mut(tc);
                for tx in 0..tw {
                    let (r0, r1, r2, r3) = (e[tx], o[tx], e[tx + 1], o[tx + 1]);
                    (v0[tx], v1[tx], v2[tx], v3[tx]) = (r0 - r2, r1 + r2, r2 - r1, r1 - r3);
                }
            }
        }
    }
}

/// Every output plane of channel `co` in the chunk's `nb` samples from M [16, Cout, tc]
/// (`res`: the chunk's residual input, if any): the channel's rows of the 16 products are read
/// as contiguous runs, a block of whole tile rows at a time, combined into Y = Aᵀ M A by vector
/// adds, and written out row by row; each finished plane then gets the epilogue.
fn output_channel(
    m: &[f32],
    (cout, co): (usize, usize),
    nb: usize,
    g: &Conv2dGeom,
    epi: &Epilogue,
    res: Option<&[f32]>,
    runs: &ChannelRuns,
) {
    let (th, tw, w) = (g.h / 2, g.w / 2, g.w);
    let (tc, plane_len) = (nb * th * tw, g.h * g.w);
    let rows_per_block = (OUT_BLOCK / tw).max(1);
    let mut y = [[0.0f32; OUT_BLOCK]; 4];
    let mut r0 = 0;
    while r0 < nb * th {
        let r1 = (r0 + rows_per_block).min(nb * th);
        let (t0, n) = (r0 * tw, (r1 - r0) * tw);
        let row = |u: usize, v: usize| &m[((u * 4 + v) * cout + co) * tc + t0..][..n];
        // Aᵀ on the rows (s0 = m0 + m1 + m2, s1 = m1 − m2 − m3), then A on the columns.
        let mv: [[&[f32]; 4]; 4] = std::array::from_fn(|u| std::array::from_fn(|v| row(u, v)));
        let [y00, y01, y10, y11] = &mut y;
        for t in 0..n {
            let s0: [f32; 4] = std::array::from_fn(|v| mv[0][v][t] + mv[1][v][t] + mv[2][v][t]);
            let s1: [f32; 4] = std::array::from_fn(|v| mv[1][v][t] - mv[2][v][t] - mv[3][v][t]);
            (y00[t], y01[t]) = (s0[0] + s0[1] + s0[2], s0[1] - s0[2] - s0[3]);
            (y10[t], y11[t]) = (s1[0] + s1[1] + s1[2], s1[1] - s1[2] - s1[3]);
        }
        for r in r0..r1 {
            let (bi, ty, tl) = (r / th, r % th, (r - r0) * tw);
            // SAFETY: `runs` covers the chunk's output, exclusively borrowed by `forward` for
            // the duration of these tasks; plane (bi, co) is written by channel co's task alone.
            let plane = unsafe { runs.run(bi, co, cout, plane_len) };
            for (i, (ya, yb)) in [(&*y00, &*y01), (&*y10, &*y11)].into_iter().enumerate() {
                let out = &mut plane[(2 * ty + i) * w..][..w];
                for (tx, pair) in out.chunks_exact_mut(2).enumerate() {
                    pair.copy_from_slice(&[ya[tl + tx], yb[tl + tx]]);
                }
            }
            if ty == th - 1 {
                let r = res.map(|r| &r[(bi * cout + co) * plane_len..][..plane_len]);
                epi.apply_channel(co, plane, r);
            }
        }
        r0 = r1;
    }
}
