//! Fully connected layer y[B, O] = x[B, I] · Wᵀ (W is [O, I], PyTorch's layout) with a fused
//! per-output epilogue (bias or folded batch norm as scale/shift, activation).
//!
//! Backward (of the bare product plus bias; the epilogue's activation and batch norm have their
//! own backward ops): dx = dy · W is OVERWRITTEN, dW += dyᵀ · x and db += Σ_b dy ACCUMULATE.

use super::gemm::{matmul, matmul_acc, matmul_packed, matmul_ref, Mat, Out, PackedA};
use super::Epilogue;

/// Applies a per-column epilogue to y [B, O].
fn epilogue_rows(y: &mut [f32], out_features: usize, epi: &Epilogue) {
    for row in y.chunks_mut(out_features) {
        for (c, v) in row.iter_mut().enumerate() {
            let s = epi.scale.map_or(1.0, |s| s[c]);
            let b = epi.shift.map_or(0.0, |b| b[c]);
            *v = epi.act.apply(*v * s + b);
        }
    }
}

/// Reference linear.
pub fn linear_ref(x: &[f32], w: &[f32], batch: usize, in_f: usize, out_f: usize, epi: &Epilogue, y: &mut [f32]) {
    assert!(epi.residual.is_none(), "linear has no residual input");
    matmul_ref(Mat::row_major(x, batch, in_f), Mat::transposed(w, in_f, out_f), y, Out::rows(out_f));
    epilogue_rows(&mut y[..batch * out_f], out_f, epi);
}

/// Fast linear (`w` packed [O, I]).
#[allow(clippy::too_many_arguments)]
pub fn linear(
    x: &[f32],
    w: &PackedA,
    batch: usize,
    in_f: usize,
    out_f: usize,
    epi: &Epilogue,
    y: &mut [f32],
    threads: usize,
) {
    assert!(epi.residual.is_none(), "linear has no residual input");
    // yᵀ = W · xᵀ: the weights are the packed left operand, y is written transposed.
    matmul_packed(w, Mat::transposed(x, in_f, batch), y, Out::cols(out_f), threads);
    epilogue_rows(&mut y[..batch * out_f], out_f, epi);
}

/// Reference backward of y = x·Wᵀ + b, f64 accumulation. x [B, I], w [O, I], dy [B, O].
/// `dx` [B, I] is overwritten; `dw` [O, I] and `db` [O] are accumulated into.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward_ref(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    batch: usize,
    in_f: usize,
    out_f: usize,
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    if let Some(dx) = dx {
        for b in 0..batch {
            for i in 0..in_f {
                let acc: f64 = (0..out_f).map(|o| dy[b * out_f + o] as f64 * w[o * in_f + i] as f64).sum();
                dx[b * in_f + i] = acc as f32;
            }
        }
    }
    for o in 0..out_f {
        for i in 0..in_f {
            let acc: f64 = (0..batch).map(|b| dy[b * out_f + o] as f64 * x[b * in_f + i] as f64).sum();
            dw[o * in_f + i] = (dw[o * in_f + i] as f64 + acc) as f32;
        }
    }
    if let Some(db) = db {
        for (o, v) in db[..out_f].iter_mut().enumerate() {
            let acc: f64 = (0..batch).map(|b| dy[b * out_f + o] as f64).sum();
            *v = (*v as f64 + acc) as f32;
        }
    }
}

/// Fast backward (two GEMMs on strided views, `w` row-major [O, I]); same contract as
/// `linear_backward_ref`. Allocates nothing.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    batch: usize,
    in_f: usize,
    out_f: usize,
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    threads: usize,
) {
    if let Some(dx) = dx {
        // dx [B, I] = dy [B, O] · W [O, I].
        let (dy, w) =
            (Mat::row_major(&dy[..batch * out_f], batch, out_f), Mat::row_major(&w[..out_f * in_f], out_f, in_f));
        matmul(dy, w, &mut dx[..batch * in_f], Out::rows(in_f), threads);
    }
    // dW [O, I] += dyᵀ [O, B] · x [B, I].
    let dyt = Mat::transposed(&dy[..batch * out_f], out_f, batch);
    matmul_acc(dyt, Mat::row_major(&x[..batch * in_f], batch, in_f), &mut dw[..out_f * in_f], Out::rows(in_f), threads);
    if let Some(db) = db {
        for row in dy[..batch * out_f].chunks(out_f) {
            db[..out_f].iter_mut().zip(row).for_each(|(d, &g)| *d += g);
        }
    }
}
