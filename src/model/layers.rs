//! The inference builder: each layer reads its weights by name, folds a following batch norm
//! into the weights and a shift, packs GEMM weights once into the fast path's panel order, and
//! adds one fused node (conv + BN + residual + activation is one node).
//!
//! Weights stored in f16 in the file stay f16 in the packed panels (half the bytes to stream at
//! batch 1); their batch norm is then applied as the epilogue's per-channel scale instead of
//! being folded in, so the f16 values are used exactly as stored.

use super::loader::WeightSet;
use super::net::NetBuilder;
use crate::error::Result;
use crate::graph::{Graph, GraphBuilder, Op, ValueId};
use crate::ops::batch_norm::{fold_bias, fold_out_first, BatchNormParams};
use crate::ops::conv1d::as_conv2d;
use crate::ops::conv2d::Conv2dGeom;
use crate::ops::conv_transpose2d::{pack_weight, ConvTranspose2dGeom};
use crate::ops::conv_winograd::{self, WinogradConv};
use crate::ops::deconv_winograd::{self, WinogradDeconv};
use crate::ops::gemm::PackedA;
use crate::ops::rnn::pack_w_hh;
use crate::ops::tap_conv::{self, TapShape, TapWeights};
use crate::ops::Activation;

/// Builds an inference graph from a weight set.
pub struct InferenceBuilder<'a> {
    b: GraphBuilder,
    ws: &'a WeightSet,
    /// The batch size of the CPU fast path this graph is for, when known: transposed
    /// convolutions that pay in phase + Winograd form at that batch get their kernel in that
    /// form (`deconv_winograd::worth_it`). None: the plain packed form everywhere (the reference
    /// and CUDA backends read it).
    cpu_batch: Option<usize>,
}

impl<'a> InferenceBuilder<'a> {
    pub fn new(ws: &'a WeightSet) -> InferenceBuilder<'a> {
        InferenceBuilder::for_cpu(ws, None)
    }

    /// A builder for the CPU fast path at `cpu_batch`, when given (see the field).
    pub fn for_cpu(ws: &'a WeightSet, cpu_batch: Option<usize>) -> InferenceBuilder<'a> {
        InferenceBuilder { b: GraphBuilder::new(), ws, cpu_batch }
    }

    pub fn finish(self, outputs: &[ValueId]) -> Graph {
        self.b.finish(outputs)
    }

    /// (scale, shift) of batch norm `bn` (e.g. "generator.bn0").
    fn bn_scale_shift(&self, bn: &str) -> Result<(Vec<f32>, Vec<f32>)> {
        let get = |p: &str| self.ws.vec(&format!("{bn}.{p}"));
        let (gamma, beta, mean, var) = (get("weight")?, get("bias")?, get("running_mean")?, get("running_var")?);
        Ok(BatchNormParams { gamma: &gamma, beta: &beta, mean: &mean, var: &var }.scale_shift())
    }

    /// Whether `name` keeps f16 storage (it is stored in f16 in the file).
    fn half(&self, name: &str) -> bool {
        self.ws.dtype(name) == Some(crate::tensor::DType::F16)
    }

    /// Packs row-major [m, k] `w`, in f16 when `half`.
    fn pack(&mut self, name: &str, shape: &[usize], w: &[f32], (m, k): (usize, usize), half: bool) -> Result<usize> {
        let p = if half { PackedA::from_row_major_f16(w, m, k) } else { PackedA::from_row_major(w, m, k) };
        self.b.packed(name, shape, p)
    }

    /// The layer's shape when the tap form pays at this builder's CPU batch (`tap_conv::worth_it`).
    fn tap_form(&self, shape: Option<TapShape>) -> Option<TapShape> {
        let batch = self.cpu_batch?;
        shape.filter(|s| tap_conv::worth_it(s, batch))
    }

    /// Applies `bn` (if any) to the out-channel-first rows of `w` (`rows_per_channel` rows
    /// each): folded into `w`, or, when `keep_w`, left to the epilogue's scale. Returns the
    /// (scale, shift) parameters; a bias (linear layers) is folded into the shift.
    fn fold(
        &mut self,
        w: &mut [f32],
        bn: Option<&str>,
        rows_per_channel: usize,
        bias: Option<(&str, Vec<f32>)>,
        keep_w: bool,
    ) -> Result<(Option<usize>, Option<usize>)> {
        let Some(bn) = bn else {
            return Ok((None, bias.map(|(name, b)| self.b.owned(name, &[b.len()], b)).transpose()?));
        };
        let bias = bias.map(|(_, b)| b);
        let (scale, mut shift) = self.bn_scale_shift(bn)?;
        if let Some(bias) = bias {
            fold_bias(&mut shift, &bias, &scale);
        }
        let scale_id = if keep_w {
            Some(self.b.owned(&format!("{bn}.scale"), &[scale.len()], scale.clone())?)
        } else {
            let per_row: Vec<f32> = scale.iter().flat_map(|&s| std::iter::repeat_n(s, rows_per_channel)).collect();
            fold_out_first(w, &per_row);
            None
        };
        Ok((scale_id, Some(self.b.owned(&format!("{bn}.shift"), &[scale.len()], shift)?)))
    }
}

impl NetBuilder for InferenceBuilder<'_> {
    fn input(&mut self, shape: &[usize]) -> ValueId {
        self.b.input(shape)
    }

    fn conv(
        &mut self,
        x: ValueId,
        w: &str,
        bn: Option<&str>,
        geom: Conv2dGeom,
        act: Activation,
        residual: Option<ValueId>,
    ) -> Result<ValueId> {
        let mut wv = self.ws.vec(w)?;
        let half = self.half(w);
        let (scale, shift) = self.fold(&mut wv, bn, 1, None, half)?;
        let shape = [geom.cout, geom.cin, geom.kh, geom.kw];
        let tap = self.tap_form(TapShape::conv(&geom));
        let wid = match (self.cpu_batch, tap) {
            // The transformed weights are sums of the stored values, kept in f32.
            (Some(batch), _) if conv_winograd::worth_it(&geom, batch) => {
                self.b.winograd_conv(w, &shape, WinogradConv::new(&wv, &geom))?
            }
            (_, Some(s)) => self.b.taps(w, &shape, TapWeights::new(&wv, &s, half))?,
            _ => self.pack(w, &shape, &wv, (geom.cout, geom.kdim()), half)?,
        };
        let op = Op::Conv2d { w: wid, scale, shift, geom, act, residual: residual.is_some() };
        let inputs: Vec<ValueId> = std::iter::once(x).chain(residual).collect();
        self.b.node(w.trim_end_matches(".weight"), op, &inputs)
    }

    fn deconv(
        &mut self,
        x: ValueId,
        w: &str,
        bn: Option<&str>,
        geom: ConvTranspose2dGeom,
        act: Activation,
    ) -> Result<ValueId> {
        // Packed rows are (co, ky, kx): k·k rows per output channel.
        let mut rows = pack_weight(&self.ws.vec(w)?, &geom);
        let half = self.half(w);
        let (scale, shift) = self.fold(&mut rows, bn, geom.k * geom.k, None, half)?;
        let shape = [geom.rows(), geom.cin];
        let tap = self.tap_form(TapShape::deconv(&geom));
        let wid = match (self.cpu_batch, tap) {
            // The transformed weights are sums of the stored values, kept in f32.
            (Some(batch), _) if deconv_winograd::worth_it(&geom, batch) => {
                self.b.winograd(w, &shape, WinogradDeconv::new(&rows, &geom))?
            }
            (_, Some(s)) => self.b.taps(w, &shape, TapWeights::new(&rows, &s, half))?,
            _ => self.pack(w, &shape, &rows, (geom.rows(), geom.cin), half)?,
        };
        let op = Op::ConvTranspose2d { w: wid, scale, shift, geom, act };
        self.b.node(w.trim_end_matches(".weight"), op, &[x])
    }

    fn linear(
        &mut self,
        x: ValueId,
        prefix: &str,
        bn: Option<&str>,
        (in_f, out_f): (usize, usize),
        act: Activation,
    ) -> Result<ValueId> {
        let wn = format!("{prefix}.weight");
        let mut wv = self.ws.vec(&wn)?;
        let bias_name = format!("{prefix}.bias");
        let bias = self.ws.vec(&bias_name)?;
        let half = self.half(&wn);
        let (scale, shift) = self.fold(&mut wv, bn, 1, Some((bias_name.as_str(), bias)), half)?;
        let w = self.pack(&wn, &[out_f, in_f], &wv, (out_f, in_f), half)?;
        self.b.node(prefix, Op::Linear { w, scale, shift, in_f, out_f, act }, &[x])
    }

    fn conv1d(
        &mut self,
        x: ValueId,
        prefix: &str,
        (cin, t, cout, k): (usize, usize, usize, usize),
        act: Activation,
    ) -> Result<ValueId> {
        let wn = format!("{prefix}.weight");
        let wv = self.ws.vec(&wn)?;
        let half = self.half(&wn);
        let shape = [cout, cin, k];
        let tap = self.tap_form(TapShape::conv(&as_conv2d(cin, t, cout, k)));
        let w = match tap {
            Some(s) => self.b.taps(&wn, &shape, TapWeights::new(&wv, &s, half))?,
            None => self.pack(&wn, &shape, &wv, (cout, cin * k), half)?,
        };
        let bias = self.ws.param(&mut self.b, &format!("{prefix}.bias"), &[cout])?;
        self.b.node(prefix, Op::Conv1d { w, shift: Some(bias), cin, t, cout, k, act }, &[x])
    }

    fn maxpool1d(&mut self, name: &str, x: ValueId, channels: usize, t: usize, k: usize, s: usize) -> Result<ValueId> {
        self.b.node(name, Op::MaxPool1d { channels, t, k, s }, &[x])
    }

    fn rnn(&mut self, x: ValueId, prefix: &str, gru: bool, cin: usize, t: usize, h: usize) -> Result<ValueId> {
        let g = if gru { 3 } else { 1 };
        let name = |p: &str| format!("{prefix}.{p}");
        let w_ih_v = self.ws.vec(&name("weight_ih"))?;
        let half = self.half(&name("weight_ih"));
        let w_ih = self.pack(&name("weight_ih"), &[g * h, cin], &w_ih_v, (g * h, cin), half)?;
        let b_ih = self.ws.param(&mut self.b, &name("bias_ih"), &[g * h])?;
        let (w_rz, w_n) = pack_w_hh(&self.ws.vec(&name("weight_hh"))?, gru, h);
        let rows = if gru { 2 * h } else { h };
        let w_hh = self.b.packed(&name("weight_hh"), &[rows, h], w_rz)?;
        let w_hh_n = w_n.map(|n| self.b.packed(&name("weight_hh.n"), &[h, h], n)).transpose()?;
        let b_hh = self.ws.param(&mut self.b, &name("bias_hh"), &[g * h])?;
        self.b.node(prefix, Op::Rnn { gru, w_ih, b_ih, w_hh, w_hh_n, b_hh, cin, t, hidden: h }, &[x])
    }

    fn mean_time(&mut self, name: &str, x: ValueId, t: usize, h: usize) -> Result<ValueId> {
        self.b.node(name, Op::MeanTime { t, h }, &[x])
    }

    fn concat(&mut self, name: &str, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.b.node(name, Op::Concat, &[a, b])
    }

    fn replicate(&mut self, name: &str, x: ValueId, c: usize, hw: usize) -> Result<ValueId> {
        self.b.node(name, Op::Replicate { c, hw }, &[x])
    }

    fn shape(&self, v: ValueId) -> &[usize] {
        self.b.shape(v)
    }
}
