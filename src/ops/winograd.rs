//! What the two Winograd forms (`conv_winograd`, 3×3 convolutions; `deconv_winograd`, 4×4
//! stride-2 transposed convolutions) share: how a batch is cut into chunks, the chunk loop with
//! its products, the padded-row load, and the sizes their transforms keep on the stack.

use rayon::prelude::*;

use super::gemm::{matmul_packed, Mat, Out, PackedA};
use super::ChannelRuns;

/// Tiles per product a chunk aims for (narrower GEMMs lose efficiency; the products have a few
/// hundred FLOPs per byte of V and M, so a chunk need not fit in cache).
const CHUNK_TILES: usize = 512;
/// Most elements of V and M one chunk may use.
const CHUNK_ELEMS: usize = 1 << 24;
/// Widest input row handled (the transforms keep padded rows on the stack).
pub(crate) const MAX_W: usize = 256;
/// Tiles per block of the output transforms (≥ MAX_W / 2, so a block holds a whole tile row).
pub(crate) const OUT_BLOCK: usize = 256;

/// The input rows 2·ty − 1 ..= 2·ty + 2 of a [h, w] plane at d[i][1..=w], zero outside the
/// plane (d[i][0] and d[i][w + 1] stay zero): the windows of tile row ty of both forms.
pub(crate) fn padded_rows(plane: &[f32], (h, w): (usize, usize), ty: usize, d: &mut [[f32; MAX_W + 2]; 4]) {
    for (i, row) in d.iter_mut().enumerate() {
        match (2 * ty + i).checked_sub(1).filter(|&y| y < h) {
            Some(y) => row[1..=w].copy_from_slice(&plane[y * w..(y + 1) * w]),
            None => row[1..=w].fill(0.0),
        }
    }
}

/// The sizes of one layer in a Winograd form: channels, points (products per tile group) and
/// tiles per sample, and the per-sample lengths of its input and output.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub cin: usize,
    pub cout: usize,
    pub points: usize,
    pub tiles: usize,
    pub in_len: usize,
    pub out_len: usize,
}

impl Layout {
    /// Samples per chunk (whole samples, so every output plane of a chunk is finished in it):
    /// about `CHUNK_TILES` tiles, at most `CHUNK_ELEMS` elements of V and M.
    pub(crate) fn chunk(&self, batch: usize) -> usize {
        let per_sample = self.points * (self.cin + self.cout) * self.tiles;
        CHUNK_TILES.div_ceil(self.tiles.max(1)).min(CHUNK_ELEMS / per_sample.max(1)).clamp(1, batch.max(1))
    }

    /// Scratch elements `forward` needs: V [Cin, points, tiles] and M [points, Cout, tiles].
    pub(crate) fn scratch_len(&self, batch: usize) -> usize {
        self.points * (self.cin + self.cout) * self.tiles * self.chunk(batch)
    }

    /// The chunk loop of both forms. Per chunk of `nb` whole samples from `b0`: V by
    /// `input(x of the chunk, nb, ci, V of ci)` (one task per input channel), the products with
    /// `u` (one per point), then `output(M, co, nb, b0, the chunk's output)` once per output
    /// channel, which writes channel co's planes through the `ChannelRuns`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &self,
        u: &[PackedA],
        x: &[f32],
        batch: usize,
        scratch: &mut [f32],
        out: &mut [f32],
        threads: usize,
        input: impl Fn(&[f32], usize, usize, &mut [f32]) + Sync,
        output: impl Fn(&[f32], usize, usize, usize, &ChannelRuns) + Sync,
    ) {
        assert_eq!(u.len(), self.points, "one transformed weight per point");
        let (points, chunk) = (self.points, self.chunk(batch));
        let mut b0 = 0;
        while b0 < batch {
            let nb = chunk.min(batch - b0);
            let tc = nb * self.tiles;
            let (v, rest) = scratch.split_at_mut(points * self.cin * tc);
            let m = &mut rest[..points * self.cout * tc];
            let xc = &x[b0 * self.in_len..(b0 + nb) * self.in_len];
            v.par_chunks_mut(points * tc).enumerate().for_each(|(ci, vc)| input(xc, nb, ci, vc));
            products(u, v, (self.cin, points, tc), m, self.cout, threads);
            let m = &*m;
            let runs = ChannelRuns::new(&mut out[b0 * self.out_len..(b0 + nb) * self.out_len]);
            (0..self.cout).into_par_iter().for_each(|co| output(m, co, nb, b0, &runs));
            b0 += nb;
        }
    }
}

/// The Winograd products of one chunk: M[k] [Cout, tc] = U[k] · V[k] for every point k, where V
/// holds [Cin, points, tc] (so V[k] has rows of stride points·tc). The products are independent:
/// one task each (a GEMM of these sizes is too small to split well, and one fork-join for all of
/// them costs least).
fn products(
    u: &[PackedA],
    v: &[f32],
    (cin, points, tc): (usize, usize, usize),
    m: &mut [f32],
    cout: usize,
    threads: usize,
) {
    let product = |(k, mk): (usize, &mut [f32])| {
        let rhs = Mat { data: &v[k * tc..], rows: cin, cols: tc, rs: points * tc, cs: 1 };
        matmul_packed(&u[k], rhs, mk, Out::rows(tc), 1);
    };
    let m = &mut m[..points * cout * tc];
    if threads > 1 {
        m.par_chunks_mut(cout * tc).enumerate().for_each(product);
    } else {
        m.chunks_mut(cout * tc).enumerate().for_each(product);
    }
}
