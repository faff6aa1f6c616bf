//! Batch norm in inference mode (running statistics), and its folding into the preceding
//! convolution or linear layer at load time: y = γ(x − μ)/√(σ² + ε) + β = x·s + (β − μ·s).
//!
//! Training mode (PyTorch semantics): normalise with the batch mean and the BIASED batch
//! variance, keep (mean, 1/√(var + ε)) for the backward pass, and update the running statistics
//! with momentum 0.1 and the UNBIASED variance. Backward: dx is OVERWRITTEN, dγ and dβ
//! ACCUMULATE. x is [B, C, S] (S = spatial size, 1 for vectors); the fast paths run one rayon
//! task per channel and allocate nothing.

use rayon::prelude::*;

use super::ChannelRuns;

/// Epsilon of every batch norm (PyTorch and Torch default).
pub const BN_EPS: f32 = 1e-5;

/// Per-channel running statistics and affine parameters.
#[derive(Clone, Copy, Debug)]
pub struct BatchNormParams<'a> {
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub mean: &'a [f32],
    pub var: &'a [f32],
}

impl BatchNormParams<'_> {
    /// The (scale, shift) pair that replaces this batch norm.
    pub fn scale_shift(&self) -> (Vec<f32>, Vec<f32>) {
        let scale: Vec<f32> = self.gamma.iter().zip(self.var).map(|(&g, &v)| g / (v + BN_EPS).sqrt()).collect();
        let shift = self.beta.iter().zip(self.mean).zip(&scale).map(|((&b, &m), &s)| b - m * s).collect();
        (scale, shift)
    }
}

/// Reference: inference batch norm over x [B, C, S] (S = spatial size, 1 for vectors).
pub fn batch_norm_ref(x: &[f32], batch: usize, bn: &BatchNormParams, out: &mut [f32]) {
    let channels = bn.gamma.len();
    let spatial = x.len() / (batch * channels);
    assert_eq!(batch * channels * spatial, x.len(), "batch_norm input size");
    for (i, (o, &v)) in out.iter_mut().zip(x).enumerate() {
        let c = (i / spatial) % channels;
        *o = (v - bn.mean[c]) / (bn.var[c] + BN_EPS).sqrt() * bn.gamma[c] + bn.beta[c];
    }
}

/// Scales the rows of an out-channel-first weight [C, K] by `scale` (conv, linear).
pub fn fold_out_first(weight: &mut [f32], scale: &[f32]) {
    let k = weight.len() / scale.len();
    for (row, &s) in weight.chunks_mut(k).zip(scale) {
        row.iter_mut().for_each(|w| *w *= s);
    }
}

/// Merges a bias into a shift: shift += bias·scale.
pub fn fold_bias(shift: &mut [f32], bias: &[f32], scale: &[f32]) {
    for ((sh, &b), &s) in shift.iter_mut().zip(bias).zip(scale) {
        *sh += b * s;
    }
}

/// Momentum of the running statistics (PyTorch's default; Torch's 0.1 too).
pub const BN_MOMENTUM: f32 = 0.1;

/// (channels, spatial) of x for a batch norm with `channels` = γ's length.
fn dims(x_len: usize, batch: usize, channels: usize) -> usize {
    let spatial = x_len / (batch * channels).max(1);
    assert_eq!(batch * channels * spatial, x_len, "batch_norm input size");
    spatial
}

/// Channel `c`'s values of [B, C, S]: S-long runs, one per sample.
fn channel_runs(x: &[f32], batch: usize, channels: usize, spatial: usize, c: usize) -> impl Iterator<Item = &[f32]> {
    (0..batch).map(move |b| &x[(b * channels + c) * spatial..][..spatial])
}

/// (mean, 1/√(biased var + ε)) of one channel, in f64.
fn channel_stats(x: &[f32], batch: usize, channels: usize, spatial: usize, c: usize) -> (f64, f64) {
    let n = (batch * spatial) as f64;
    let mean = channel_runs(x, batch, channels, spatial, c).flatten().map(|&v| v as f64).sum::<f64>() / n;
    let var =
        channel_runs(x, batch, channels, spatial, c).flatten().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, 1.0 / (var + BN_EPS as f64).sqrt())
}

/// Reference training-mode batch norm: out = γ·(x − μ_B)·invstd + β; writes the batch `mean`
/// and `invstd` = 1/√(σ²_B + ε) (biased σ²_B) per channel.
pub fn batch_norm_train_ref(
    x: &[f32],
    batch: usize,
    gamma: &[f32],
    beta: &[f32],
    out: &mut [f32],
    mean: &mut [f32],
    invstd: &mut [f32],
) {
    let channels = gamma.len();
    let spatial = dims(x.len(), batch, channels);
    for c in 0..channels {
        let (m, is) = channel_stats(x, batch, channels, spatial, c);
        mean[c] = m as f32;
        invstd[c] = is as f32;
    }
    for (i, (o, &v)) in out.iter_mut().zip(x).enumerate() {
        let c = (i / spatial) % channels;
        *o = ((v as f64 - mean[c] as f64) * invstd[c] as f64 * gamma[c] as f64 + beta[c] as f64) as f32;
    }
}

/// The running-statistics update of a training step (PyTorch), with momentum m:
/// running_mean ← (1 − m)·running_mean + m·mean and
/// running_var ← (1 − m)·running_var + m·var·count/(count − 1), var recovered from `invstd`
/// and `count` = batch·spatial values per channel.
pub fn update_running(
    running_mean: &mut [f32],
    running_var: &mut [f32],
    mean: &[f32],
    invstd: &[f32],
    count: usize,
    momentum: f32,
) {
    let m = momentum as f64;
    let unbias = if count > 1 { count as f64 / (count - 1) as f64 } else { 1.0 };
    for c in 0..mean.len() {
        let var = 1.0 / (invstd[c] as f64).powi(2) - BN_EPS as f64;
        running_mean[c] = ((1.0 - m) * running_mean[c] as f64 + m * mean[c] as f64) as f32;
        running_var[c] = ((1.0 - m) * running_var[c] as f64 + m * var.max(0.0) * unbias) as f32;
    }
}

/// Reference backward of training-mode batch norm, with x̂ = (x − μ)·invstd and N = B·S:
/// dβ += Σ dy, dγ += Σ dy·x̂, dx = γ·invstd/N · (N·dy − Σ dy − x̂·Σ dy·x̂) (OVERWRITTEN).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward_ref(
    x: &[f32],
    dy: &[f32],
    batch: usize,
    gamma: &[f32],
    mean: &[f32],
    invstd: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let channels = gamma.len();
    let spatial = dims(x.len(), batch, channels);
    let n = (batch * spatial) as f64;
    for c in 0..channels {
        let (mu, is) = (mean[c] as f64, invstd[c] as f64);
        let (mut sdy, mut sdyx) = (0.0f64, 0.0f64);
        for b in 0..batch {
            for s in 0..spatial {
                let i = (b * channels + c) * spatial + s;
                sdy += dy[i] as f64;
                sdyx += dy[i] as f64 * (x[i] as f64 - mu) * is;
            }
        }
        dbeta[c] = (dbeta[c] as f64 + sdy) as f32;
        dgamma[c] = (dgamma[c] as f64 + sdyx) as f32;
        let k = gamma[c] as f64 * is / n;
        for b in 0..batch {
            for s in 0..spatial {
                let i = (b * channels + c) * spatial + s;
                let xhat = (x[i] as f64 - mu) * is;
                dx[i] = (k * (n * dy[i] as f64 - sdy - xhat * sdyx)) as f32;
            }
        }
    }
}

/// Fast training-mode batch norm (one task per channel, f32 two-pass statistics with f64
/// sums); same contract as `batch_norm_train_ref`.
pub fn batch_norm_train(
    x: &[f32],
    batch: usize,
    gamma: &[f32],
    beta: &[f32],
    out: &mut [f32],
    mean: &mut [f32],
    invstd: &mut [f32],
) {
    let channels = gamma.len();
    let spatial = dims(x.len(), batch, channels);
    assert!(out.len() >= x.len(), "batch_norm output size");
    let o = ChannelRuns::new(out);
    mean[..channels].par_iter_mut().zip(&mut invstd[..channels]).enumerate().for_each(|(c, (m, is))| {
        let (mu, s) = channel_stats(x, batch, channels, spatial, c);
        (*m, *is) = (mu as f32, s as f32);
        let k = gamma[c] * *is;
        let shift = beta[c] - *m * k;
        for (b, src) in channel_runs(x, batch, channels, spatial, c).enumerate() {
            // SAFETY: `out` holds B·C·S elements (asserted) and is exclusively borrowed for
            // this call; run (b, c) is written by task c alone.
            let dst = unsafe { o.run(b, c, channels, spatial) };
            dst.iter_mut().zip(src).for_each(|(d, &v)| *d = v * k + shift);
        }
    });
}

/// Fast backward (one task per channel); same contract as `batch_norm_backward_ref`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward(
    x: &[f32],
    dy: &[f32],
    batch: usize,
    gamma: &[f32],
    mean: &[f32],
    invstd: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let channels = gamma.len();
    let spatial = dims(x.len(), batch, channels);
    assert!(dx.len() >= x.len() && dy.len() >= x.len(), "batch_norm gradient sizes");
    let n = (batch * spatial) as f32;
    let d = ChannelRuns::new(dx);
    dgamma[..channels].par_iter_mut().zip(&mut dbeta[..channels]).enumerate().for_each(|(c, (dg, dbt))| {
        let (mu, is) = (mean[c], invstd[c]);
        let (mut sdy, mut sdyx) = (0.0f64, 0.0f64);
        for (xr, dr) in channel_runs(x, batch, channels, spatial, c).zip(channel_runs(dy, batch, channels, spatial, c))
        {
            let (a, b) = xr.iter().zip(dr).fold((0.0f32, 0.0f32), |(a, b), (&v, &g)| (a + g, b + g * (v - mu)));
            sdy += a as f64;
            sdyx += b as f64;
        }
        let (sdy, sdyx) = (sdy as f32, sdyx as f32 * is);
        *dbt += sdy;
        *dg += sdyx;
        let k = gamma[c] * is / n;
        for (b, (xr, dr)) in
            channel_runs(x, batch, channels, spatial, c).zip(channel_runs(dy, batch, channels, spatial, c)).enumerate()
        {
            // SAFETY: `dx` holds B·C·S elements (asserted) and is exclusively borrowed for this
            // call; run (b, c) is written by task c alone.
            let dst = unsafe { d.run(b, c, channels, spatial) };
            for ((o, &v), &g) in dst.iter_mut().zip(xr).zip(dr) {
                *o = k * (n * g - sdy - (v - mu) * is * sdyx);
            }
        }
    });
}
