//! Fully connected layer y[B, O] = x[B, I] · Wᵀ (W is [O, I], PyTorch's layout) with a fused
//! per-output epilogue (bias or folded batch norm as scale/shift, activation).

use super::gemm::{matmul_packed, matmul_ref, Mat, Out, PackedA};
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
