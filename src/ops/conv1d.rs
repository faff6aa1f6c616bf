//! 1-D convolution over time, [B, Cin, T] → [B, Cout, T − k + 1] (no padding, stride 1), with a
//! bias through the epilogue. The fast path is the 2-D convolution with a 1×k kernel.
//!
//! Backward: dx is OVERWRITTEN; dW [Cout, Cin·k] and db [Cout] ACCUMULATE.

use super::conv2d::{conv2d, conv2d_backward, Conv2dGeom};
use super::gemm::PackedA;
use super::Epilogue;

/// The 2-D geometry of a conv1d.
pub fn as_conv2d(cin: usize, t: usize, cout: usize, k: usize) -> Conv2dGeom {
    Conv2dGeom { cin, h: 1, w: t, cout, kh: 1, kw: k, stride: 1, pad: 0 }
}

/// Reference conv1d: out[b, co, t] = epi(Σ_ci Σ_j x[b, ci, t + j] · w[co, ci, j]).
#[allow(clippy::too_many_arguments)]
pub fn conv1d_ref(
    x: &[f32],
    w: &[f32],
    batch: usize,
    cin: usize,
    t: usize,
    cout: usize,
    k: usize,
    epi: &Epilogue,
    out: &mut [f32],
) {
    let to = t + 1 - k;
    for b in 0..batch {
        for co in 0..cout {
            let o = &mut out[(b * cout + co) * to..][..to];
            for (ti, v) in o.iter_mut().enumerate() {
                let mut acc = 0.0f64;
                for ci in 0..cin {
                    for j in 0..k {
                        acc += x[(b * cin + ci) * t + ti + j] as f64 * w[(co * cin + ci) * k + j] as f64;
                    }
                }
                *v = acc as f32;
            }
            epi.apply_channel_ref(co, o, None);
        }
    }
}

/// Fast conv1d (`w` is [Cout, Cin·k], PyTorch's [Cout, Cin, k] flattened, packed).
#[allow(clippy::too_many_arguments)]
pub fn conv1d(
    x: &[f32],
    w: &PackedA,
    batch: usize,
    cin: usize,
    t: usize,
    cout: usize,
    k: usize,
    epi: &Epilogue,
    scratch: &mut [f32],
    out: &mut [f32],
    threads: usize,
) {
    conv2d(x, w, batch, &as_conv2d(cin, t, cout, k), epi, scratch, out, threads);
}

/// Reference backward of conv1d plus bias, f64 accumulation: dx (OVERWRITTEN), dw += Σ dy·x,
/// db += Σ dy.
#[allow(clippy::too_many_arguments)]
pub fn conv1d_backward_ref(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    batch: usize,
    cin: usize,
    t: usize,
    cout: usize,
    k: usize,
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    let to = t + 1 - k;
    let mut acc_x = vec![0.0f64; batch * cin * t];
    let mut acc_w: Vec<f64> = dw[..cout * cin * k].iter().map(|&v| v as f64).collect();
    for b in 0..batch {
        for co in 0..cout {
            for ti in 0..to {
                let d = dy[(b * cout + co) * to + ti] as f64;
                for ci in 0..cin {
                    for j in 0..k {
                        let (xi, wi) = ((b * cin + ci) * t + ti + j, (co * cin + ci) * k + j);
                        acc_x[xi] += d * w[wi] as f64;
                        acc_w[wi] += d * x[xi] as f64;
                    }
                }
            }
        }
    }
    dw[..acc_w.len()].iter_mut().zip(&acc_w).for_each(|(d, &a)| *d = a as f32);
    if let Some(dx) = dx {
        dx[..acc_x.len()].iter_mut().zip(&acc_x).for_each(|(d, &a)| *d = a as f32);
    }
    if let Some(db) = db {
        for (co, v) in db[..cout].iter_mut().enumerate() {
            let s: f64 = (0..batch).flat_map(|b| &dy[(b * cout + co) * to..][..to]).map(|&g| g as f64).sum();
            *v = (*v as f64 + s) as f32;
        }
    }
}

/// Scratch elements `conv1d_backward` needs.
pub fn conv1d_backward_scratch_len(batch: usize, cin: usize, t: usize, cout: usize, k: usize) -> usize {
    as_conv2d(cin, t, cout, k).backward_scratch_len(batch)
}

/// Fast backward (the 2-D convolution's with kh = 1); same contract as `conv1d_backward_ref`,
/// `w` row-major [Cout, Cin·k]. `scratch` holds at least `conv1d_backward_scratch_len`.
#[allow(clippy::too_many_arguments)]
pub fn conv1d_backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    batch: usize,
    cin: usize,
    t: usize,
    cout: usize,
    k: usize,
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    scratch: &mut [f32],
    threads: usize,
) {
    conv2d_backward(x, w, dy, batch, &as_conv2d(cin, t, cout, k), dx, dw, scratch, threads);
    if let Some(db) = db {
        let to = t + 1 - k;
        for (i, row) in dy[..batch * cout * to].chunks(to).enumerate() {
            db[i % cout] += row.iter().sum::<f32>();
        }
    }
}
