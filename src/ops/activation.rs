//! Pointwise activations (fused into epilogues; also usable alone). The backward pass reads the
//! activation's OUTPUT y (what a fused epilogue leaves behind) and OVERWRITES dx.

/// An activation function.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Activation {
    #[default]
    None,
    Relu,
    /// LeakyReLU with the given negative slope (0.2 in the paper).
    LeakyRelu(f32),
    Tanh,
    Sigmoid,
}

impl Activation {
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::LeakyRelu(a) => {
                if x > 0.0 {
                    x
                } else {
                    a * x
                }
            }
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => sigmoid(x),
        }
    }
}

/// Where `fast_tanh` is ±1 to within f32 rounding.
const TANH_CLAMP: f32 = 7.905_311;
/// Odd numerator (x¹ … x¹³) and even denominator (x⁰ … x⁶) of `fast_tanh`.
const TANH_P: [f32; 7] =
    [4.893_524_6e-3, 6.372_619_3e-4, 1.485_722_4e-5, 5.122_297e-8, -8.604_672e-11, 2.000_188e-13, -2.760_768_5e-16];
const TANH_Q: [f32; 4] = [4.893_525e-3, 2.268_434_6e-3, 1.185_347_1e-4, 1.198_258_4e-6];

/// tanh as a 13/6 rational function of the clamped input (the minimax form Eigen uses):
/// branch-free and vectorisable, where libm's `tanhf` is a call per element (the last layer of
/// G, 3·64·64 values per image, spent more time in it than in its GEMM). Within 4e-7 of tanh
/// (`tests`: every input on a fine grid).
#[inline]
pub fn fast_tanh(x: f32) -> f32 {
    let x = x.clamp(-TANH_CLAMP, TANH_CLAMP);
    let x2 = x * x;
    let p = TANH_P.iter().rev().fold(0.0f32, |acc, &c| acc * x2 + c);
    let q = TANH_Q.iter().rev().fold(0.0f32, |acc, &c| acc * x2 + c);
    x * p / q
}

/// Logistic sigmoid by `fast_tanh` (σ(x) = ½ + ½·tanh(x/2), exactly): within 2e-7 of it.
#[inline]
pub fn fast_sigmoid(x: f32) -> f32 {
    0.5 + 0.5 * fast_tanh(0.5 * x)
}

/// Logistic sigmoid, stable for large |x|.
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Reference: applies `act` to every element.
pub fn activation_ref(act: Activation, x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len());
    for (o, &v) in out.iter_mut().zip(x) {
        *o = act.apply(v);
    }
}

/// Fast path of `activation_ref`: one loop per activation (so each is a plain vectorisable
/// map), tanh and sigmoid by `fast_tanh` (within 4e-7), in parallel chunks on the caller's pool.
/// The training graphs' activations: G's tanh over 3·64·64 values per image took more time in
/// libm's tanhf than in its GEMM's share.
pub fn activation(act: Activation, x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len(), "activation sizes");
    match act {
        Activation::None => out.copy_from_slice(x),
        Activation::Relu => par_map(x, out, |v| v.max(0.0)),
        Activation::LeakyRelu(a) => par_map(x, out, |v| if v > 0.0 { v } else { a * v }),
        Activation::Tanh => par_map(x, out, fast_tanh),
        Activation::Sigmoid => par_map(x, out, fast_sigmoid),
    }
}

/// out[i] = f(x[i]) in chunks of 16 K values on the caller's pool.
fn par_map(x: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    use rayon::prelude::*;
    out.par_chunks_mut(1 << 14).zip(x.par_chunks(1 << 14)).for_each(|(o, x)| {
        o.iter_mut().zip(x).for_each(|(o, &v)| *o = f(v));
    });
}

/// dx = dy · act'(x), computed from the output y = act(x): ReLU and LeakyReLU by the sign of y
/// (0 counts as the negative side, as PyTorch's threshold does), tanh 1 − y², sigmoid y(1 − y).
pub fn activation_backward(act: Activation, y: &[f32], dy: &[f32], dx: &mut [f32]) {
    assert!(y.len() == dy.len() && y.len() == dx.len(), "activation_backward sizes");
    let it = dx.iter_mut().zip(y.iter().zip(dy));
    match act {
        Activation::None => it.for_each(|(d, (_, &g))| *d = g),
        Activation::Relu => it.for_each(|(d, (&y, &g))| *d = if y > 0.0 { g } else { 0.0 }),
        Activation::LeakyRelu(a) => it.for_each(|(d, (&y, &g))| *d = if y > 0.0 { g } else { a * g }),
        Activation::Tanh => it.for_each(|(d, (&y, &g))| *d = g * (1.0 - y * y)),
        Activation::Sigmoid => it.for_each(|(d, (&y, &g))| *d = g * y * (1.0 - y)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every f32 in [−10, 10] on a 1e-4 grid (and the extremes): within 4e-7 of tanh in f64
    /// absolute terms and 1e-6 relative, odd, never past ±1 (and within the same distance of it at the largest inputs), NaN kept.
    #[test]
    fn fast_tanh_is_tanh() {
        let mut worst = (0.0f64, 0.0f64);
        for i in -100_000..=100_000 {
            let x = i as f32 * 1e-4;
            let (got, want) = (fast_tanh(x) as f64, (x as f64).tanh());
            let err = (got - want).abs();
            worst = (worst.0.max(err), worst.1.max(err / want.abs().max(1e-30)));
            assert!(got.abs() <= 1.0 && fast_tanh(-x) == -fast_tanh(x), "x = {x}");
        }
        assert!(worst.0 < 4e-7 && worst.1 < 1e-6, "worst absolute / relative error {worst:?}");
        assert!((1.0 - fast_tanh(f32::MAX)) < 4e-7 && fast_tanh(f32::MIN) == -fast_tanh(f32::MAX));
        assert!(fast_tanh(f32::NAN).is_nan());
    }

    #[test]
    fn fast_sigmoid_is_sigmoid() {
        for i in -200_000..=200_000 {
            let x = i as f32 * 1e-4;
            let want = 1.0 / (1.0 + (-(x as f64)).exp());
            assert!((fast_sigmoid(x) as f64 - want).abs() < 2.5e-7, "x = {x}");
        }
    }
}
