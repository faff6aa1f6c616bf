//! Pooling over time: max-pool [B, C, T] → [B, C, (T − k)/s + 1] (a trailing partial window is
//! dropped, as in PyTorch) and the mean over time of [B, T, H] → [B, H]. Memory-bound; the plain
//! loops are the reference and the fast path. Backward passes OVERWRITE dx.

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

/// Backward of `maxpool1d`: dx is zeroed, then each window's gradient goes to its FIRST maximum
/// (PyTorch's choice on ties); overlapping windows (k > s) add up.
pub fn maxpool1d_backward(x: &[f32], dy: &[f32], rows: usize, t: usize, k: usize, s: usize, dx: &mut [f32]) {
    dx[..rows * t].fill(0.0);
    let Some(to) = maxpool1d_len(t, k, s) else {
        return;
    };
    for r in 0..rows {
        let src = &x[r * t..(r + 1) * t];
        let d = &mut dx[r * t..(r + 1) * t];
        for (j, &g) in dy[r * to..(r + 1) * to].iter().enumerate() {
            let win = &src[j * s..j * s + k];
            let arg = (1..k).fold(0, |best, i| if win[i] > win[best] { i } else { best });
            d[j * s + arg] += g;
        }
    }
}

/// Backward of `mean_time`: dx[b, t, :] = dy[b, :] / T for every step (overwritten).
pub fn mean_time_backward(dy: &[f32], batch: usize, t: usize, h: usize, dx: &mut [f32]) {
    let inv = 1.0 / t as f32;
    for b in 0..batch {
        let g = &dy[b * h..(b + 1) * h];
        for step in dx[b * t * h..(b + 1) * t * h].chunks_mut(h) {
            step.iter_mut().zip(g).for_each(|(d, &v)| *d = v * inv);
        }
    }
}
