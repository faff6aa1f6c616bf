//! The inference builder: each layer reads its weights by name, folds a following batch norm
//! into the weights and a shift, packs GEMM weights once into the fast path's panel order, and
//! adds one fused node (conv + BN + residual + activation is one node).

use super::loader::WeightSet;
use super::net::NetBuilder;
use crate::error::Result;
use crate::graph::{Graph, GraphBuilder, Op, ValueId};
use crate::ops::batch_norm::{fold_bias, fold_out_first, BatchNormParams};
use crate::ops::conv2d::Conv2dGeom;
use crate::ops::conv_transpose2d::{pack_weight, ConvTranspose2dGeom};
use crate::ops::gemm::PackedA;
use crate::ops::rnn::pack_w_hh;
use crate::ops::Activation;

/// Builds an inference graph from a weight set.
pub struct InferenceBuilder<'a> {
    b: GraphBuilder,
    ws: &'a WeightSet,
}

impl<'a> InferenceBuilder<'a> {
    pub fn new(ws: &'a WeightSet) -> InferenceBuilder<'a> {
        InferenceBuilder { b: GraphBuilder::new(), ws }
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

    /// Folds `bn` (if any) into out-channel-first rows of `w` (`rows_per_channel` rows each);
    /// returns the shift parameter.
    fn fold(
        &mut self,
        w: &mut [f32],
        bn: Option<&str>,
        rows_per_channel: usize,
        bias: Option<(&str, Vec<f32>)>,
    ) -> Result<Option<usize>> {
        let Some(bn) = bn else {
            return bias.map(|(name, b)| self.b.owned(name, &[b.len()], b)).transpose();
        };
        let bias = bias.map(|(_, b)| b);
        let (scale, mut shift) = self.bn_scale_shift(bn)?;
        let per_row: Vec<f32> = scale.iter().flat_map(|&s| std::iter::repeat_n(s, rows_per_channel)).collect();
        fold_out_first(w, &per_row);
        if let Some(bias) = bias {
            fold_bias(&mut shift, &bias, &scale);
        }
        Ok(Some(self.b.owned(&format!("{bn}.shift"), &[scale.len()], shift)?))
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
        let shift = self.fold(&mut wv, bn, 1, None)?;
        let shape = [geom.cout, geom.cin, geom.kh, geom.kw];
        let wid = self.b.packed(w, &shape, PackedA::from_row_major(&wv, geom.cout, geom.kdim()))?;
        let op = Op::Conv2d { w: wid, scale: None, shift, geom, act, residual: residual.is_some() };
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
        let shift = self.fold(&mut rows, bn, geom.k * geom.k, None)?;
        let wid = self.b.packed(w, &[geom.rows(), geom.cin], PackedA::from_row_major(&rows, geom.rows(), geom.cin))?;
        let op = Op::ConvTranspose2d { w: wid, scale: None, shift, geom, act };
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
        let shift = self.fold(&mut wv, bn, 1, Some((bias_name.as_str(), bias)))?;
        let w = self.b.packed(&wn, &[out_f, in_f], PackedA::from_row_major(&wv, out_f, in_f))?;
        self.b.node(prefix, Op::Linear { w, scale: None, shift, in_f, out_f, act }, &[x])
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
        let w = self.b.packed(&wn, &[cout, cin, k], PackedA::from_row_major(&wv, cout, cin * k))?;
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
        let w_ih = self.b.packed(&name("weight_ih"), &[g * h, cin], PackedA::from_row_major(&w_ih_v, g * h, cin))?;
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
