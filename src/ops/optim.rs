//! Optimizers and learning-rate schedules, PyTorch's formulas to the operation (so one step
//! matches `torch.optim` to rounding). Steps update `param` and the optimizer state in place;
//! the gradient is only read. Elementwise and parallel over chunks on the caller's rayon pool.
//!
//! Hyperparameters are f32 (the trainers' options are). The per-step coefficients (1 − β2,
//! lr/(1 − β1ᵗ), …) are formed in f64 from them and rounded to f32 once, as PyTorch forms them
//! from Python floats. So a step equals PyTorch's to rounding when PyTorch is given the same
//! f32-rounded hyperparameters; given the double 0.999 instead, its 1 − β2 is 0.001 where ours
//! is 1 − 0.999f32 = 0.00099998713, and v differs by 1.3e-5 relative (p by about half that).

use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// Adam (Kingma & Ba) with bias correction and ε outside the square root, as `torch.optim.Adam`
/// (no weight decay, no amsgrad). GAN-INT-CLS uses lr 2e-4, β1 0.5, β2 0.999, ε 1e-8.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

impl Adam {
    /// One step at 1-based step count `t`: m ← β1·m + (1 − β1)·g, v ← β2·v + (1 − β2)·g²,
    /// p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε).
    pub fn step(&self, t: u64, param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]) {
        let n = param.len();
        assert!(grad.len() == n && m.len() == n && v.len() == n, "Adam state sizes");
        let AdamCoefficients { step_size, c1, b2, c2, bc2_sqrt, eps } = self.coefficients(t);
        param
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| {
                for i in 0..p.len() {
                    let g = g[i];
                    m[i] += (g - m[i]) * c1;
                    v[i] = v[i] * b2 + c2 * g * g;
                    p[i] -= step_size * m[i] / (v[i].sqrt() / bc2_sqrt + eps);
                }
            });
    }
}

/// One Adam step's f32 coefficients (formed in f64 and rounded once): the CPU step and the
/// CUDA kernel (kernels/optim.cu) use the same.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamCoefficients {
    /// lr / (1 − β1ᵗ).
    pub step_size: f32,
    /// 1 − β1.
    pub c1: f32,
    /// β2.
    pub b2: f32,
    /// 1 − β2.
    pub c2: f32,
    /// √(1 − β2ᵗ).
    pub bc2_sqrt: f32,
    pub eps: f32,
}

impl Adam {
    /// The coefficients of step `t` (1-based).
    pub fn coefficients(&self, t: u64) -> AdamCoefficients {
        assert!(t >= 1, "Adam steps count from 1");
        let t = i32::try_from(t).unwrap_or(i32::MAX);
        let (lr, beta1, beta2) = (self.lr as f64, self.beta1 as f64, self.beta2 as f64);
        AdamCoefficients {
            step_size: (lr / (1.0 - beta1.powi(t))) as f32,
            c1: (1.0 - beta1) as f32,
            b2: self.beta2,
            c2: (1.0 - beta2) as f32,
            bc2_sqrt: (1.0 - beta2.powi(t)).sqrt() as f32,
            eps: self.eps,
        }
    }
}

/// RMSprop as `torch.optim.RMSprop` (no momentum, not centered): v ← α·v + (1 − α)·g²,
/// p ← p − lr·g/(√v + ε).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsProp {
    pub lr: f32,
    pub alpha: f32,
    pub eps: f32,
}

impl RmsProp {
    /// 1 − α, formed in f64 and rounded once (the CPU step and the CUDA kernel use it).
    pub fn one_minus_alpha(&self) -> f32 {
        (1.0 - self.alpha as f64) as f32
    }

    /// One step; `sq` is the running average of squared gradients.
    pub fn step(&self, param: &mut [f32], grad: &[f32], sq: &mut [f32]) {
        let n = param.len();
        assert!(grad.len() == n && sq.len() == n, "RMSprop state sizes");
        let (lr, a, c, eps) = (self.lr, self.alpha, self.one_minus_alpha(), self.eps);
        param.par_chunks_mut(CHUNK).zip(grad.par_chunks(CHUNK)).zip(sq.par_chunks_mut(CHUNK)).for_each(
            |((p, g), v)| {
                for i in 0..p.len() {
                    let g = g[i];
                    v[i] = v[i] * a + c * g * g;
                    p[i] -= lr * g / (v[i].sqrt() + eps);
                }
            },
        );
    }
}

/// Step schedule: `base` halved every `every` epochs (epoch counts from 0): base·0.5^⌊epoch/every⌋.
pub fn lr_halving(base: f32, epoch: usize, every: usize) -> f32 {
    let halvings = epoch / every.max(1);
    (base as f64 * 0.5f64.powi(i32::try_from(halvings).unwrap_or(i32::MAX))) as f32
}

/// Linear decay to zero over steps [start, end): 1 before `start`, (end − step)/(end − start)
/// inside, 0 from `end` on (pix2pix's closing epochs; not in the paper).
pub fn linear_decay(step: u64, start: u64, end: u64) -> f32 {
    match step {
        s if s < start => 1.0,
        s if s >= end => 0.0,
        s => ((end - s) as f64 / (end - start) as f64) as f32,
    }
}

/// Exponential decay, ×`factor` at the end of every epoch from the first on (Reed's encoder:
/// learning_rate_decay 0.98, learning_rate_decay_after 1). Epoch counts from 0, so epoch 0
/// trains at `base`, epoch n at base·factorⁿ.
pub fn lr_exponential(base: f32, epoch: usize, factor: f32) -> f32 {
    (base as f64 * (factor as f64).powi(i32::try_from(epoch).unwrap_or(i32::MAX))) as f32
}
