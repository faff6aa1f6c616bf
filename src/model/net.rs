//! The layer vocabulary the three networks are written in, once. Two builders speak it: the
//! inference builder (`layers.rs`: batch norm folded, epilogues fused, weights packed, a
//! `graph::Graph`) and the training builder (`train::TrainBuilder`: every layer unfused, batch
//! norm in training mode, parameters in one flat store).

use crate::error::Result;
use crate::graph::ValueId;
use crate::ops::conv2d::Conv2dGeom;
use crate::ops::conv_transpose2d::ConvTranspose2dGeom;
use crate::ops::Activation;

/// LeakyReLU slope of the paper.
pub const LRELU: Activation = Activation::LeakyRelu(0.2);

/// Builds one network's graph from named layers (names are the state_dict prefixes).
pub trait NetBuilder {
    /// A graph input with a per-sample shape.
    fn input(&mut self, shape: &[usize]) -> ValueId;
    /// Convolution `w` (no bias), optional batch norm `bn`, optional residual added, then `act`.
    fn conv(
        &mut self,
        x: ValueId,
        w: &str,
        bn: Option<&str>,
        geom: Conv2dGeom,
        act: Activation,
        residual: Option<ValueId>,
    ) -> Result<ValueId>;
    /// Transposed convolution `w` (no bias), optional batch norm, then `act`.
    fn deconv(
        &mut self,
        x: ValueId,
        w: &str,
        bn: Option<&str>,
        geom: ConvTranspose2dGeom,
        act: Activation,
    ) -> Result<ValueId>;
    /// Linear `prefix.weight`/`prefix.bias`, optional batch norm, then `act`.
    fn linear(
        &mut self,
        x: ValueId,
        prefix: &str,
        bn: Option<&str>,
        dims: (usize, usize),
        act: Activation,
    ) -> Result<ValueId>;
    /// Conv1d `prefix.weight`/`prefix.bias` over [cin, t], then `act`.
    fn conv1d(
        &mut self,
        x: ValueId,
        prefix: &str,
        dims: (usize, usize, usize, usize),
        act: Activation,
    ) -> Result<ValueId>;
    /// Max-pool over time of [channels, t].
    fn maxpool1d(&mut self, name: &str, x: ValueId, channels: usize, t: usize, k: usize, s: usize) -> Result<ValueId>;
    /// GRU (Reed's) or ReLU RNN `prefix.*` over [cin, t] → hidden states [t, hidden].
    fn rnn(&mut self, x: ValueId, prefix: &str, gru: bool, cin: usize, t: usize, hidden: usize) -> Result<ValueId>;
    /// Mean over time of [t, h].
    fn mean_time(&mut self, name: &str, x: ValueId, t: usize, h: usize) -> Result<ValueId>;
    /// Channel concat.
    fn concat(&mut self, name: &str, a: ValueId, b: ValueId) -> Result<ValueId>;
    /// [c] → [c, side, side] with hw = side².
    fn replicate(&mut self, name: &str, x: ValueId, c: usize, hw: usize) -> Result<ValueId>;
    /// Per-sample shape of a value.
    fn shape(&self, v: ValueId) -> &[usize];
}

/// A residual block: 1×1 c→mid, 3×3 mid→mid, 3×3 mid→c (each with BN when `batch_norm`),
/// added to its input, then `act`. `inner` is the activation inside the branch.
pub fn residual_block<B: NetBuilder>(
    b: &mut B,
    x: ValueId,
    name: &str,
    (c, mid, side): (usize, usize, usize),
    (inner, act): (Activation, Activation),
    batch_norm: bool,
) -> Result<ValueId> {
    let g = |cin, cout, k, pad| Conv2dGeom { cin, h: side, w: side, cout, kh: k, kw: k, stride: 1, pad };
    let w = |i: usize| format!("{name}.conv{i}.weight");
    let bn = |i: usize| batch_norm.then(|| format!("{name}.bn{i}"));
    let y = b.conv(x, &w(1), bn(1).as_deref(), g(c, mid, 1, 0), inner, None)?;
    let y = b.conv(y, &w(2), bn(2).as_deref(), g(mid, mid, 3, 1), inner, None)?;
    b.conv(y, &w(3), bn(3).as_deref(), g(mid, c, 3, 1), act, Some(x))
}

/// The image trunk of the DS-SJE image encoder and the style encoder (D's shape, without its
/// options): four stride-2 4×4 convolutions 64→32→16→8→4 (widths f, 2f, 4f, 8f; batch norm
/// after all but the first; LeakyReLU after each), then a 4×4 convolution over the 4×4 map to
/// `out` values — a linear layer. Parameters `{prefix}.conv0..3.weight`, `{prefix}.bn1..3`, `{prefix}.{last}.weight`.
pub fn image_to_vector<B: NetBuilder>(
    b: &mut B,
    prefix: &str,
    f: usize,
    last: &str,
    out: usize,
) -> Result<(ValueId, ValueId)> {
    let down = |cin, side, cout| Conv2dGeom { cin, h: side, w: side, cout, kh: 4, kw: 4, stride: 2, pad: 1 };
    let w = |name: &str| format!("{prefix}.{name}.weight");
    let bn = |i: usize| format!("{prefix}.bn{i}");
    let img = b.input(&[3, 64, 64]);
    let mut x = b.conv(img, &w("conv0"), None, down(3, 64, f), LRELU, None)?; // [f, 32, 32]
    for (i, (cin, side)) in [(f, 32), (2 * f, 16), (4 * f, 8)].into_iter().enumerate() {
        // → [2f, 16, 16], [4f, 8, 8], [8f, 4, 4]
        x = b.conv(x, &w(&format!("conv{}", i + 1)), Some(&bn(i + 1)), down(cin, side, 2 * cin), LRELU, None)?;
    }
    let g = Conv2dGeom { cin: 8 * f, h: 4, w: 4, cout: out, kh: 4, kw: 4, stride: 1, pad: 0 };
    let v = b.conv(x, &w(last), None, g, Activation::None, None)?; // [out, 1, 1]
    Ok((img, v))
}
