//! Data movement and pointwise combination: residual add, channel concat, spatial replicate.
//! These are memory-bound copies; the plain loop is both the reference and the fast path.

/// out = a + b.
pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
    assert!(a.len() == b.len() && a.len() == out.len(), "add operand sizes");
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = x + y;
    }
}

/// Concatenates per-sample blocks along channels: a [B, Ca·S], b [B, Cb·S] → [B, (Ca+Cb)·S].
pub fn concat_channels(a: &[f32], a_len: usize, b: &[f32], b_len: usize, batch: usize, out: &mut [f32]) {
    for i in 0..batch {
        let o = &mut out[i * (a_len + b_len)..(i + 1) * (a_len + b_len)];
        o[..a_len].copy_from_slice(&a[i * a_len..(i + 1) * a_len]);
        o[a_len..].copy_from_slice(&b[i * b_len..(i + 1) * b_len]);
    }
}

/// Replicates x [B, C] over an H×W grid: out [B, C, H, W].
pub fn replicate_spatial(x: &[f32], batch: usize, c: usize, hw: usize, out: &mut [f32]) {
    for (i, &v) in x[..batch * c].iter().enumerate() {
        out[i * hw..(i + 1) * hw].fill(v);
    }
}
