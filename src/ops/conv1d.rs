//! 1-D convolution over time, [B, Cin, T] → [B, Cout, T − k + 1] (no padding, stride 1), with a
//! bias through the epilogue. The fast path is the 2-D convolution with a 1×k kernel.

use super::conv2d::{conv2d, Conv2dGeom};
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
            epi.apply_channel(co, o, None);
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
