//! Pooling over time: max-pool [B, C, T] → [B, C, (T − k)/s + 1] (a trailing partial window is
//! dropped, as in PyTorch) and the mean over time of [B, T, H] → [B, H]. Memory-bound; the plain
//! loops are the reference and the fast path.

/// Output length of a max-pool.
pub fn maxpool1d_len(t: usize, k: usize, s: usize) -> Option<usize> {
    t.checked_sub(k).map(|x| x / s + 1)
}

/// Max-pool over the last axis of rows of length `t`.
pub fn maxpool1d(x: &[f32], rows: usize, t: usize, k: usize, s: usize, out: &mut [f32]) {
    let Some(to) = maxpool1d_len(t, k, s) else {
        return;
    };
    for r in 0..rows {
        let src = &x[r * t..(r + 1) * t];
        for (j, o) in out[r * to..(r + 1) * to].iter_mut().enumerate() {
            *o = src[j * s..j * s + k].iter().copied().fold(f32::NEG_INFINITY, f32::max);
        }
    }
}

/// Mean over time: x [B, T, H] → out [B, H].
pub fn mean_time(x: &[f32], batch: usize, t: usize, h: usize, out: &mut [f32]) {
    for b in 0..batch {
        let o = &mut out[b * h..(b + 1) * h];
        o.fill(0.0);
        for step in x[b * t * h..(b + 1) * t * h].chunks(h) {
            o.iter_mut().zip(step).for_each(|(a, &v)| *a += v);
        }
        let inv = 1.0 / t as f32;
        o.iter_mut().for_each(|a| *a *= inv);
    }
}
