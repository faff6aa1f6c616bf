//! Data movement and pointwise combination: residual add, channel concat, spatial replicate.
//! These are memory-bound copies; the plain loop is both the reference and the fast path.
//! Backward passes OVERWRITE their input gradients (add's backward is dy itself for both
//! operands, so it has no function).

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

/// Backward of `concat_channels`: splits dy [B, a_len + b_len] into da [B, a_len] and
/// db [B, b_len] (both overwritten).
pub fn concat_channels_backward(dy: &[f32], a_len: usize, b_len: usize, batch: usize, da: &mut [f32], db: &mut [f32]) {
    for i in 0..batch {
        let g = &dy[i * (a_len + b_len)..(i + 1) * (a_len + b_len)];
        da[i * a_len..(i + 1) * a_len].copy_from_slice(&g[..a_len]);
        db[i * b_len..(i + 1) * b_len].copy_from_slice(&g[a_len..]);
    }
}

/// Backward of `replicate_spatial`: dx[b, c] = Σ over the grid of dy[b, c, :, :] (overwritten).
pub fn replicate_spatial_backward(dy: &[f32], batch: usize, c: usize, hw: usize, dx: &mut [f32]) {
    for (d, g) in dx[..batch * c].iter_mut().zip(dy.chunks(hw)) {
        *d = g.iter().sum();
    }
}
