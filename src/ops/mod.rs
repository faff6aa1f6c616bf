//! Ops. Each file holds one op family: a plain reference (loops, the oracle the tests trust)
//! and the fast CPU path (GEMM-based, multi-threaded through the caller's rayon pool), forward
//! and backward. Layouts are row-major NCHW; conv1d data is [B, C, T]. Backward passes
//! OVERWRITE gradients with respect to inputs (dx) and ACCUMULATE gradients with respect to
//! parameters (dW += …). `loss` holds the training losses, `optim` the optimizers.

pub mod activation;
pub mod batch_norm;
pub mod conv1d;
pub mod conv2d;
pub mod conv_transpose2d;
pub mod deconv_winograd;
pub mod elementwise;
pub mod gemm;
pub mod linear;
pub mod loss;
pub mod optim;
pub mod pool;
pub mod rnn;

pub use activation::Activation;

/// What is applied to an accumulator before it is stored: `act(acc·scale + shift + residual)`,
/// per output channel for scale and shift. This is where batch norm (folded), biases,
/// activations and residual adds are fused into convolutions and linears.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    pub scale: Option<&'a [f32]>,
    pub shift: Option<&'a [f32]>,
    pub residual: Option<&'a [f32]>,
    pub act: Activation,
}

impl Epilogue<'_> {
    /// Applies the epilogue to one channel's values `v` (channel `c`), whose residual, if any,
    /// is `res` (same length).
    #[inline]
    pub fn apply_channel(&self, c: usize, v: &mut [f32], res: Option<&[f32]>) {
        let s = self.scale.map_or(1.0, |s| s[c]);
        let b = self.shift.map_or(0.0, |b| b[c]);
        match res {
            Some(r) => v.iter_mut().zip(r).for_each(|(x, &r)| *x = self.act.apply(*x * s + b + r)),
            None => v.iter_mut().for_each(|x| *x = self.act.apply(*x * s + b)),
        }
    }
}
