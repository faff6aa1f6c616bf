//! Transposed convolution 4×4, stride 2, padding 1 (every up-sampling layer of G but the first)
//! by phases and Winograd F(2×2, 2×2): 9 multiplies per 2×2 output tile instead of 16, so the
//! GEMM work of these layers falls to 9/16.
//!
//! Phases: output pixel (2a + p, 2b + q) only ever meets kernel rows ky = 3 − p − 2t and columns
//! kx = 3 − q − 2s (t, s ∈ {0, 1}) at input (a + p − 1 + t, b + q − 1 + s). So each of the four
//! phases (p, q) is a plain 2×2 correlation of the input, with its own 2×2 slice of the kernel.
//!
//! Winograd F(2, 2) in one dimension, for outputs y0 = d0·g0 + d1·g1 and y1 = d1·g0 + d2·g1:
//!   V = Bᵀd = [d0 − d1, d1, d2 − d1],  U = Gg = [g0, g0 + g1, g1],  y = Aᵀ(U ⊙ V) = [m0 + m1, m1 + m2].
//! In two dimensions U = G g Gᵀ and V = Bᵀ d B are 3×3, and for each of the 9 points the sum over
//! input channels of U ⊙ V is one GEMM [Cout, Cin] × [Cin, tiles]. All coefficients are 0 or ±1,
//! so the transforms add no rounding beyond a few f32 additions.
//!
//! The transformed weights (36 matrices [Cout, Cin]: 4 phases × 9 points) are 2.25× the size of
//! the kernel, so the builder picks this path only where the layer is not bound by reading its
//! weights (enough tiles per phase, see `worth_it`).

use super::conv_transpose2d::ConvTranspose2dGeom;
use super::gemm::PackedA;
use super::winograd::{padded_rows, Layout, MAX_W, OUT_BLOCK};
use super::{ChannelRuns, Epilogue};

/// Phases × Winograd points.
const MATS: usize = 36;
/// Whether this geometry has the phase + Winograd form: 4×4, stride 2, padding 1, even input.
pub fn applies(g: &ConvTranspose2dGeom) -> bool {
    g.k == 4
        && g.stride == 2
        && g.pad == 1
        && g.h.is_multiple_of(2)
        && g.w.is_multiple_of(2)
        && g.h > 0
        && g.w > 0
        && g.w <= MAX_W
}

/// Whether the Winograd form pays at `batch`: at least 64 tiles per phase, and more than a
/// handful of output channels. With fewer tiles its products are 16 columns wide and reading
/// the weights, which this form makes 2.25× larger (and keeps in f32), costs more than the
/// multiplies it saves: on reed-cub at batch 1, deconv3 (64 tiles) gains, deconv2 (16) loses
/// (docs/PERF.md, session 7).
pub fn worth_it(g: &ConvTranspose2dGeom, batch: usize) -> bool {
    applies(g) && batch * tiles_per_sample(g) >= 64 && g.cout >= 8
}

fn tiles_per_sample(g: &ConvTranspose2dGeom) -> usize {
    (g.h / 2) * (g.w / 2)
}

/// The layer's sizes in this form.
fn layout(g: &ConvTranspose2dGeom) -> Layout {
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
pub fn chunk(g: &ConvTranspose2dGeom, batch: usize) -> usize {
    layout(g).chunk(batch)
}

/// Scratch elements `forward` needs: V [Cin, 36, tiles] and M [36, Cout, tiles].
pub fn scratch_len(g: &ConvTranspose2dGeom, batch: usize) -> usize {
    if applies(g) {
        layout(g).scratch_len(batch)
    } else {
        0
    }
}

/// The kernel row (or column) of phase `p`, tap `t`.
fn tap(p: usize, t: usize) -> usize {
    3 - p - 2 * t
}

/// The four (p, q) phases, and likewise the four (t, s) taps of a phase's 2×2 kernel.
const PAIRS: [(usize, usize); 4] = [(0, 0), (0, 1), (1, 0), (1, 1)];

/// G (3×2): the Winograd weight transform, rows [1, 0], [1, 1], [0, 1].
const G: [[f32; 2]; 3] = [[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];

/// The weights of one layer in phase + Winograd form.
#[derive(Clone, Debug)]
pub struct WinogradDeconv {
    cin: usize,
    cout: usize,
    /// Index (phase p·2 + q)·9 + u·3 + v: U[co, ci] packed for the GEMM.
    u: Vec<PackedA>,
}

impl WinogradDeconv {
    /// From the kernel as packed GEMM rows [Cout·16, Cin] (row (co·4 + ky)·4 + kx: the layout of
    /// `conv_transpose2d::pack_weight`).
    pub fn new(rows: &[f32], g: &ConvTranspose2dGeom) -> WinogradDeconv {
        assert!(applies(g), "not a 4×4 stride-2 padding-1 transposed convolution");
        let (cin, cout) = (g.cin, g.cout);
        let w = |co: usize, ky: usize, kx: usize, ci: usize| rows[((co * 4 + ky) * 4 + kx) * cin + ci];
        let mut u = Vec::with_capacity(MATS);
        for (p, q) in PAIRS {
            for (gu, gv) in (0..9).map(|xi| (G[xi / 3], G[xi % 3])) {
                let mut m = vec![0.0f32; cout * cin];
                for co in 0..cout {
                    for (t, s) in PAIRS {
                        let c = gu[t] * gv[s];
                        if c == 0.0 {
                            continue;
                        }
                        let dst = &mut m[co * cin..(co + 1) * cin];
                        dst.iter_mut().enumerate().for_each(|(ci, d)| *d += c * w(co, tap(p, t), tap(q, s), ci));
                    }
                }
                u.push(PackedA::from_row_major(&m, cout, cin));
            }
        }
        WinogradDeconv { cin, cout, u }
    }

    /// Elements of the kernel this stands for (Cout·16·Cin).
    pub fn numel(&self) -> usize {
        self.cout * 16 * self.cin
    }

    /// Back to the packed GEMM rows [Cout·16, Cin], exactly: the corner points (u, v ∈ {0, 2})
    /// of each phase hold the kernel's taps untouched.
    pub fn unpack(&self) -> Vec<f32> {
        let (cin, cout) = (self.cin, self.cout);
        let mut rows = vec![0.0; cout * 16 * cin];
        for (ph, (p, q)) in PAIRS.into_iter().enumerate() {
            for (t, s) in PAIRS {
                let m = self.u[ph * 9 + (2 * t) * 3 + 2 * s].unpack();
                for co in 0..cout {
                    let r = (co * 4 + tap(p, t)) * 4 + tap(q, s);
                    rows[r * cin..(r + 1) * cin].copy_from_slice(&m[co * cin..(co + 1) * cin]);
                }
            }
        }
        rows
    }

    /// Same contract as `conv_transpose2d` (epilogue fused, every output element written);
    /// `scratch` holds at least `scratch_len(g, batch)`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: &[f32],
        batch: usize,
        g: &ConvTranspose2dGeom,
        epi: &Epilogue,
        scratch: &mut [f32],
        out: &mut [f32],
        threads: usize,
    ) {
        assert!(applies(g) && g.cin == self.cin && g.cout == self.cout, "Winograd weights do not match {g:?}");
        let input = |xc: &[f32], nb, ci, vc: &mut [f32]| input_transform(xc, nb, ci, g, vc);
        let output = |m: &[f32], co, nb, _b0, runs: &ChannelRuns| output_channel(m, (g.cout, co), nb, g, epi, runs);
        layout(g).forward(&self.u, x, batch, scratch, out, threads, input, output);
    }
}

/// V [4 phases, 9, nb·tiles] of input channel `ci`, `nb` samples of x: per phase (p, q) and
/// tile, the 3×3 input window at (2·ty + p − 1, 2·tx + q − 1) (zero outside), transformed to
/// Bᵀ d B. Both row phases share the four input rows 2·ty − 1 ..= 2·ty + 2, copied once per tile
/// row into zero-padded buffers; each combined row (Bᵀ) is split into its even and odd columns, so
/// the column transform of both column phases reads unit-stride runs.
fn input_transform(x: &[f32], nb: usize, ci: usize, g: &ConvTranspose2dGeom, vc: &mut [f32]) {
    let (h, w) = (g.h, g.w);
    let (th, tw) = (h / 2, w / 2);
    let tc = nb * th * tw;
    // Input row 2·ty − 1 + i at d[i][1..=w] (column c of the padded row at d[i][c]).
    let mut d = [[0.0f32; MAX_W + 2]; 4];
    // Even and odd columns of one combined row: e[k] = r[2k], o[k] = r[2k + 1], k ≤ tw.
    let (mut e, mut o) = ([0.0f32; MAX_W / 2 + 1], [0.0f32; MAX_W / 2 + 1]);
    for bi in 0..nb {
        let plane = &x[(bi * g.cin + ci) * h * w..][..h * w];
        for ty in 0..th {
            padded_rows(plane, (h, w), ty, &mut d);
            let base = (bi * th + ty) * tw;
            for p in 0..2 {
                let (r0, r1, r2) = (&d[p], &d[p + 1], &d[p + 2]);
                for u in 0..3 {
                    // Bᵀ on the rows: d0 − d1, d1, d2 − d1.
                    let comb = |c: usize| match u {
                        0 => r0[c] - r1[c],
                        1 => r1[c],
                        _ => r2[c] - r1[c],
                    };
                    for k in 0..=tw {
                        (e[k], o[k]) = (comb(2 * k), comb(2 * k + 1));
                    }
                    // B on the columns, window column c = 2·tx + q: r[c] − r[c + 1], r[c + 1],
                    // r[c + 2] − r[c + 1]; for q = 0 that is e/o/e, for q = 1 o/e/o shifted.
                    for q in 0..2 {
                        let (a, b) = if q == 0 { (&e, &o) } else { (&o, &e) };
                        let first = ((2 * p + q) * 9 + u * 3) * tc + base;
                        let (v0, rest) = vc[first..].split_at_mut(tc);
                        let (v1, v2) = rest.split_at_mut(tc);
                        for tx in 0..tw {
                            let mid = b[tx + q];
                            v0[tx] = a[tx] - mid;
                            v1[tx] = mid;
                            v2[tx] = a[tx + 1] - mid;
                        }
                    }
                }
            }
        }
    }
}

/// Every output plane of channel `co` (of `cout`) in the chunk's `nb` samples, from M [36, Cout,
/// tc]. The channel's rows of the 36 products are read as contiguous runs, a block of whole tile
/// rows at a time, combined into Y = Aᵀ M A (16 values per tile: phase × (i, j)) by vector adds,
/// and written out one output row at a time; each finished plane then gets the epilogue. (Reading
/// M per tile instead, 36 scattered runs of a few floats, made this pass as slow as the products.)
fn output_channel(
    m: &[f32],
    (cout, co): (usize, usize),
    nb: usize,
    g: &ConvTranspose2dGeom,
    epi: &Epilogue,
    runs: &ChannelRuns,
) {
    let (th, tw, wo) = (g.h / 2, g.w / 2, 2 * g.w);
    let (tc, plane_len) = (nb * th * tw, 4 * g.h * g.w);
    let rows_per_block = (OUT_BLOCK / tw).max(1);
    let mut y = [[0.0f32; OUT_BLOCK]; 16];
    let mut r0 = 0;
    while r0 < nb * th {
        let r1 = (r0 + rows_per_block).min(nb * th);
        let (t0, n) = (r0 * tw, (r1 - r0) * tw);
        for ph in 0..4 {
            let row = |u: usize, v: usize| &m[((ph * 9 + u * 3 + v) * cout + co) * tc + t0..][..n];
            for i in 0..2 {
                // Aᵀ on rows i, i + 1 (s_v = M[i][v] + M[i + 1][v]), then A on columns.
                let (a, b) = ([row(i, 0), row(i, 1), row(i, 2)], [row(i + 1, 0), row(i + 1, 1), row(i + 1, 2)]);
                let (y0, y1) = y[(ph * 2 + i) * 2..][..2].split_at_mut(1);
                for (t, (o0, o1)) in y0[0][..n].iter_mut().zip(&mut y1[0][..n]).enumerate() {
                    let s = [a[0][t] + b[0][t], a[1][t] + b[1][t], a[2][t] + b[2][t]];
                    (*o0, *o1) = (s[0] + s[1], s[1] + s[2]);
                }
            }
        }
        for r in r0..r1 {
            let (bi, ty, tl) = (r / th, r % th, (r - r0) * tw);
            // SAFETY: `runs` covers the chunk's output, exclusively borrowed by `forward` for
            // the duration of these tasks; plane (bi, co) is written by channel co's task alone.
            let plane = unsafe { runs.run(bi, co, cout, plane_len) };
            for (i, p) in PAIRS {
                let out = &mut plane[(4 * ty + 2 * i + p) * wo..][..wo];
                // One tile's four outputs of this row: columns 2j + q for (j, q) = (0, 0), (0, 1),
                // (1, 0), (1, 1); phase (p, q) is 2p + q.
                let yv = |q: usize, j: usize| &y[((2 * p + q) * 2 + i) * 2 + j][tl..tl + tw];
                let (y00, y01, y10, y11) = (yv(0, 0), yv(1, 0), yv(0, 1), yv(1, 1));
                for (tx, o) in out.chunks_exact_mut(4).enumerate() {
                    o.copy_from_slice(&[y00[tx], y01[tx], y10[tx], y11[tx]]);
                }
            }
            if ty == th - 1 {
                epi.apply_channel(co, plane, None);
            }
        }
        r0 = r1;
    }
}
