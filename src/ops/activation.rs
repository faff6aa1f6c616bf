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
