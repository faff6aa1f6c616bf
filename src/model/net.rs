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
