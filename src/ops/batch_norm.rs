//! Batch norm in inference mode (running statistics), and its folding into the preceding
//! convolution or linear layer at load time: y = γ(x − μ)/√(σ² + ε) + β = x·s + (β − μ·s).

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
