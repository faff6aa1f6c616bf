//! What the two Winograd forms (`conv_winograd`, 3×3 convolutions; `deconv_winograd`, 4×4
//! stride-2 transposed convolutions) share: how a batch is cut into chunks, the products, and
//! the sizes their transforms keep on the stack.

use rayon::prelude::*;

use super::gemm::{matmul_packed, Mat, Out, PackedA};

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

/// Samples per chunk (whole samples, so every output plane of a chunk is finished in it), for a
/// form with `per_tile` elements of V and M per tile (points × (Cin + Cout)) and `tiles` tiles
/// per sample.
pub(crate) fn chunk_samples(per_tile: usize, tiles: usize, batch: usize) -> usize {
    let per_sample = per_tile * tiles;
    CHUNK_TILES.div_ceil(tiles.max(1)).min(CHUNK_ELEMS / per_sample.max(1)).clamp(1, batch.max(1))
}

/// The Winograd products of one chunk: M[k] [Cout, tc] = U[k] · V[k] for every point k, where V
/// holds [Cin, points, tc] (so V[k] has rows of stride points·tc). The products are independent:
/// one task each (a GEMM of these sizes is too small to split well, and one fork-join for all of
/// them costs least).
pub(crate) fn products(
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
