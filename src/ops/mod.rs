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
pub mod conv_winograd;
pub mod deconv_winograd;
pub mod elementwise;
pub mod flip;
pub mod gemm;
pub mod linear;
pub mod loss;
pub mod optim;
pub mod pool;
pub mod rnn;
pub mod shape_mask;
pub mod shift;
pub mod tap_conv;
mod winograd;

pub use activation::Activation;

/// v = f(v·s + b + res).
#[inline]
fn affine(v: &mut [f32], res: Option<&[f32]>, s: f32, b: f32, f: impl Fn(f32) -> f32) {
    match res {
        Some(r) => v.iter_mut().zip(r).for_each(|(x, &r)| *x = f(*x * s + b + r)),
        None => v.iter_mut().for_each(|x| *x = f(*x * s + b)),
    }
}

/// A [B, C, S] buffer shared by per-channel tasks, each of which writes only its own channel's
/// runs (batch norm, the Winograd output transforms, the transposed convolution's gather).
#[derive(Clone, Copy)]
pub(crate) struct ChannelRuns {
    ptr: *mut f32,
    len: usize,
}
// SAFETY: the tasks write disjoint elements (run (b, c) belongs to the task of channel c alone;
// see `run`'s contract), and the buffer is exclusively borrowed while they run.
unsafe impl Send for ChannelRuns {}
// SAFETY: as above.
unsafe impl Sync for ChannelRuns {}

impl ChannelRuns {
    pub(crate) fn new(buf: &mut [f32]) -> ChannelRuns {
        ChannelRuns { ptr: buf.as_mut_ptr(), len: buf.len() }
    }

    /// Channel `c`'s run of sample `b` (`spatial` elements at (b·channels + c)·spatial).
    ///
    /// # Safety
    /// The buffer `new` was given is still exclusively borrowed by the caller, and no other live
    /// reference touches this run while the returned slice lives.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn run(&self, b: usize, c: usize, channels: usize, spatial: usize) -> &mut [f32] {
        let start = (b * channels + c) * spatial;
        assert!(c < channels && start + spatial <= self.len, "run ({b}, {c}) past the buffer");
        // SAFETY: the range lies inside the buffer (asserted); exclusivity is the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), spatial) }
    }
}

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
    /// The references' form of `apply_channel`: every activation exactly (libm's tanh).
    pub fn apply_channel_ref(&self, c: usize, v: &mut [f32], res: Option<&[f32]>) {
        let (s, b) = (self.scale.map_or(1.0, |s| s[c]), self.shift.map_or(0.0, |b| b[c]));
        affine(v, res, s, b, |x| self.act.apply(x));
    }

    /// Applies the epilogue to one channel's values `v` (channel `c`), whose residual, if any,
    /// is `res` (same length); tanh by `activation::fast_tanh`.
    #[inline]
    pub fn apply_channel(&self, c: usize, v: &mut [f32], res: Option<&[f32]>) {
        let s = self.scale.map_or(1.0, |s| s[c]);
        let b = self.shift.map_or(0.0, |b| b[c]);
        // One loop per activation, so each is a plain vectorisable map.
        match self.act {
            Activation::None => affine(v, res, s, b, |x| x),
            Activation::Relu => affine(v, res, s, b, |x| x.max(0.0)),
            Activation::Tanh => affine(v, res, s, b, activation::fast_tanh),
            act => affine(v, res, s, b, |x| act.apply(x)),
        }
    }
}
