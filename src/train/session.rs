//! Running a training graph at one batch size: forward (batch norm in training or eval mode,
//! every value kept for the backward pass) and backward (nodes in reverse; gradients of values
//! overwritten by the first consumer and accumulated by the others; parameter gradients always
//! accumulated, so several passes can add into one step, as the D step does).

use std::ops::Range;
use std::sync::Arc;

use rayon::ThreadPool;

use super::graph::{TOp, TrainGraph};
use crate::ops::activation::{activation, activation_backward};
use crate::ops::batch_norm::{batch_norm_backward, batch_norm_ref, batch_norm_train, update_running, BatchNormParams};
use crate::ops::conv1d::{as_conv2d, conv1d, conv1d_backward, conv1d_backward_scratch_len};
use crate::ops::conv2d::{conv2d, conv2d_backward};
use crate::ops::conv_transpose2d::{conv_transpose2d, conv_transpose2d_backward};
use crate::ops::elementwise::{
    add, concat_channels, concat_channels_backward, replicate_spatial, replicate_spatial_backward,
};
use crate::ops::gemm::{matmul, Mat, Out, PackedA};
use crate::ops::linear::linear_backward;
use crate::ops::pool::{maxpool1d, maxpool1d_backward, mean_time, mean_time_backward};
use crate::ops::rnn::{
    backward_scratch_len, gru_backward, gru_train_forward, rnn_relu, rnn_relu_backward, saved_len, scratch_len,
    RnnDims, RnnPacked, RnnParams,
};
use crate::ops::Epilogue;

/// Momentum of the running statistics (Torch's default).
pub const BN_MOMENTUM: f32 = 0.1;

/// Trainable parameters in one flat buffer, with a version that changes whenever they do (so
/// sessions know when to repack their GEMM weights).
#[derive(Clone, Debug, Default)]
pub struct ParamStore {
    pub data: Vec<f32>,
    version: u64,
}

impl ParamStore {
    pub fn new(data: Vec<f32>) -> ParamStore {
        ParamStore { data, version: 1 }
    }

    /// Mutable access; marks the parameters changed.
    pub fn data_mut(&mut self) -> &mut [f32] {
        self.version += 1;
        &mut self.data
    }

    pub fn version(&self) -> u64 {
        self.version
    }
}

/// Batch-norm mode of a forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics; running statistics updated.
    Train,
    /// Running statistics (no update).
    Eval,
}

/// Mutable slices of disjoint ranges of one buffer.
fn disjoint_mut<const N: usize>(buf: &mut [f32], ranges: [Range<usize>; N]) -> [&mut [f32]; N] {
    for (i, a) in ranges.iter().enumerate() {
        assert!(a.end <= buf.len(), "range past the buffer");
        for b in &ranges[i + 1..] {
            assert!(a.end <= b.start || b.end <= a.start || a.is_empty() || b.is_empty(), "ranges overlap");
        }
    }
    let ptr = buf.as_mut_ptr();
    // SAFETY: every range lies inside `buf` and no two overlap (asserted above), so the slices
    // alias nothing; their lifetime is tied to the unique borrow of `buf`.
    ranges.map(|r| unsafe { std::slice::from_raw_parts_mut(ptr.add(r.start), r.len()) })
}

/// The output range mutably and two input ranges (which may coincide) immutably.
fn split_out(buf: &mut [f32], out: Range<usize>, a: Range<usize>, b: Range<usize>) -> (&mut [f32], &[f32], &[f32]) {
    let (lo, rest) = buf.split_at_mut(out.start);
    let (o, hi) = rest.split_at_mut(out.len());
    let get = |r: Range<usize>| -> &[f32] {
        if r.is_empty() {
            &[]
        } else if r.end <= out.start {
            &lo[r]
        } else {
            assert!(r.start >= out.end, "an input overlaps the output");
            &hi[r.start - out.end..r.end - out.end]
        }
    };
    let (x, y) = (get(a), get(b));
    (o, x, y)
}

/// A training graph planned for one batch size.
pub struct TrainSession {
    graph: Arc<TrainGraph>,
    batch: usize,
    pool: Arc<ThreadPool>,
    threads: usize,
    offsets: Vec<usize>,
    values: Vec<f32>,
    grads: Vec<f32>,
    live: Vec<bool>,
    aux_offsets: Vec<usize>,
    aux: Vec<f32>,
    /// GEMM weights of each node, packed (convs: one; recurrences: W_ih, W_hh's h rows, the
    /// GRU's candidate rows).
    packed: Vec<Vec<PackedA>>,
    packed_version: u64,
    scratch: Vec<f32>,
    tmp: Vec<f32>,
    input_grads: Vec<bool>,
    /// Whether the last forward ran in training mode (backward needs its batch statistics).
    trained: bool,
}

impl TrainSession {
    pub fn new(graph: Arc<TrainGraph>, batch: usize, pool: Arc<ThreadPool>) -> TrainSession {
        let mut offsets = Vec::with_capacity(graph.shapes.len());
        let mut total = 0;
        for v in 0..graph.shapes.len() {
            offsets.push(total);
            total += (graph.len(v) * batch).div_ceil(16) * 16;
        }
        let max_value = (0..graph.shapes.len()).map(|v| graph.len(v) * batch).max().unwrap_or(0);
        let mut aux_offsets = Vec::with_capacity(graph.nodes.len());
        let mut aux_len = 0;
        for n in &graph.nodes {
            aux_offsets.push(aux_len);
            aux_len += aux_size(&n.op, batch);
        }
        let scratch_len = graph.nodes.iter().map(|n| scratch_size(&n.op, batch)).max().unwrap_or(0);
        let threads = pool.current_num_threads();
        TrainSession {
            offsets,
            values: vec![0.0; total],
            grads: vec![0.0; total],
            live: vec![false; graph.shapes.len()],
            aux_offsets,
            aux: vec![0.0; aux_len],
            packed: graph.nodes.iter().map(|_| Vec::new()).collect(),
            packed_version: 0,
            scratch: vec![0.0; scratch_len],
            tmp: vec![0.0; 2 * max_value],
            trained: false,
            input_grads: vec![false; graph.inputs.len()],
            graph,
            batch,
            pool,
            threads,
        }
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn graph(&self) -> &TrainGraph {
        &self.graph
    }

    fn range(&self, v: usize) -> Range<usize> {
        self.offsets[v]..self.offsets[v] + self.graph.len(v) * self.batch
    }

    /// Buffer of graph input `i`.
    pub fn input_mut(&mut self, i: usize) -> &mut [f32] {
        let r = self.range(self.graph.inputs[i]);
        &mut self.values[r]
    }

    /// Graph input `i` as last written.
    pub fn input(&self, i: usize) -> &[f32] {
        &self.values[self.range(self.graph.inputs[i])]
    }

    /// Graph output `i` after `forward`.
    pub fn output(&self, i: usize) -> &[f32] {
        &self.values[self.range(self.graph.outputs[i])]
    }

    /// Whether `backward` computes the gradient of graph input `i` (off by default).
    pub fn set_input_grad(&mut self, i: usize, on: bool) {
        self.input_grads[i] = on;
    }

    /// Gradient of graph input `i` after `backward` (when enabled).
    pub fn input_grad(&self, i: usize) -> &[f32] {
        &self.grads[self.range(self.graph.inputs[i])]
    }

    /// Repacks the GEMM weights when the parameters changed since the last forward.
    fn repack(&mut self, params: &ParamStore) {
        if self.packed_version == params.version() {
            return;
        }
        for (node, slots) in self.graph.nodes.iter().zip(&mut self.packed) {
            let p = |id: usize| &params.data[self.graph.params[id].offset..][..self.graph.params[id].len];
            let views: Vec<Mat> = match node.op {
                TOp::Conv2d { w, geom } => vec![Mat::row_major(p(w), geom.cout, geom.kdim())],
                // [Cin, Cout·k·k] viewed as its transpose [Cout·k·k, Cin].
                TOp::ConvTranspose2d { w, geom } => vec![Mat::transposed(p(w), geom.rows(), geom.cin)],
                TOp::Conv1d { w, cin, cout, k, .. } => vec![Mat::row_major(p(w), cout, cin * k)],
                TOp::Rnn { gru, w_ih, w_hh, cin, hidden: h, .. } => {
                    let g = if gru { 3 } else { 1 };
                    let rows = if gru { 2 * h } else { h };
                    let mut v =
                        vec![Mat::row_major(p(w_ih), g * h, cin), Mat::row_major(&p(w_hh)[..rows * h], rows, h)];
                    if gru {
                        v.push(Mat::row_major(&p(w_hh)[rows * h..], h, h));
                    }
                    v
                }
                _ => continue,
            };
            if slots.len() != views.len() {
                *slots = views.into_iter().map(PackedA::new).collect();
            } else {
                slots.iter_mut().zip(views).for_each(|(s, v)| s.repack(v));
            }
        }
        self.packed_version = params.version();
    }

    /// Runs every node forward. `buffers` holds the running statistics (updated in Train mode).
    pub fn forward(&mut self, params: &ParamStore, buffers: &mut [f32], mode: Mode) {
        self.repack(params);
        self.trained = mode == Mode::Train;
        let pool = Arc::clone(&self.pool);
        pool.install(|| {
            for i in 0..self.graph.nodes.len() {
                self.forward_node(i, params, buffers, mode);
            }
        });
    }

    fn forward_node(&mut self, i: usize, params: &ParamStore, buffers: &mut [f32], mode: Mode) {
        let graph = Arc::clone(&self.graph);
        let node = &graph.nodes[i];
        let (b, threads) = (self.batch, self.threads);
        let p = |id: usize| &params.data[graph.params[id].offset..][..graph.params[id].len];
        let out_r = self.range(node.output);
        let in0 = self.range(node.inputs[0]);
        let in1 = node.inputs.get(1).map_or(0..0, |&v| self.range(v));
        let aux_r = self.aux_offsets[i]..self.aux_offsets[i] + aux_size(&node.op, b);
        let (out, x, y) = split_out(&mut self.values, out_r, in0, in1);
        let aux = &mut self.aux[aux_r];
        let scratch = &mut self.scratch;
        let packed = self.packed[i].as_slice();
        let none = Epilogue::default();
        match node.op {
            TOp::Linear { w, b: bias, in_f, out_f } => {
                matmul(Mat::row_major(x, b, in_f), Mat::transposed(p(w), in_f, out_f), out, Out::rows(out_f), threads);
                for row in out.chunks_mut(out_f) {
                    row.iter_mut().zip(p(bias)).for_each(|(v, &c)| *v += c);
                }
            }
            TOp::Conv2d { geom, .. } => conv2d(x, &packed[0], b, &geom, &none, scratch, out, threads),
            TOp::ConvTranspose2d { geom, .. } => {
                conv_transpose2d(x, &packed[0], b, &geom, &none, scratch, out, threads)
            }
            TOp::Conv1d { b: bias, cin, t, cout, k, .. } => {
                let epi = Epilogue { shift: Some(p(bias)), ..Epilogue::default() };
                conv1d(x, &packed[0], b, cin, t, cout, k, &epi, scratch, out, threads)
            }
            TOp::BatchNorm { gamma, beta, mean, var, channels } => {
                let buf = |id: usize| graph.buffers[id].offset..graph.buffers[id].offset + channels;
                let [rm, rv] = disjoint_mut(buffers, [buf(mean), buf(var)]);
                match mode {
                    Mode::Train => {
                        let (bm, bi) = aux.split_at_mut(channels);
                        batch_norm_train(x, b, p(gamma), p(beta), out, bm, bi);
                        update_running(rm, rv, bm, bi, x.len() / channels, BN_MOMENTUM);
                    }
                    Mode::Eval => {
                        let bn = BatchNormParams { gamma: p(gamma), beta: p(beta), mean: rm, var: rv };
                        batch_norm_ref(x, b, &bn, out);
                    }
                }
            }
            TOp::Act(a) => activation(a, x, out),
            TOp::Add => add(x, y, out),
            TOp::Concat => concat_channels(x, x.len() / b, y, y.len() / b, b, out),
            TOp::Replicate { c, hw } => replicate_spatial(x, b, c, hw, out),
            TOp::MaxPool1d { channels, t, k, s } => maxpool1d(x, b * channels, t, k, s, out),
            TOp::MeanTime { t, h } => mean_time(x, b, t, h, out),
            TOp::Rnn { gru: is_gru, b_ih, b_hh, cin, t, hidden, .. } => {
                let d = RnnDims { batch: b, cin, t, hidden };
                let rp = RnnPacked {
                    w_ih: &packed[0],
                    b_ih: p(b_ih),
                    w_hh: &packed[1],
                    w_hh_n: packed.get(2),
                    b_hh: p(b_hh),
                };
                if is_gru {
                    gru_train_forward(x, &rp, d, out, aux, scratch, threads)
                } else {
                    rnn_relu(x, &rp, d, scratch, out, threads)
                }
            }
        }
    }

    /// Backpropagates `dout` (the gradient of graph output 0) through every node, accumulating
    /// parameter gradients into `grads` (same layout as the parameters).
    pub fn backward(&mut self, params: &ParamStore, grads: &mut [f32], dout: &[f32]) {
        self.backward_outputs(params, grads, &[(0, dout)]);
    }

    /// As `backward`, from the gradients of several graph outputs (index, gradient); outputs
    /// not listed get none.
    pub fn backward_outputs(&mut self, params: &ParamStore, grads: &mut [f32], douts: &[(usize, &[f32])]) {
        assert_eq!(grads.len(), params.data.len(), "gradient store size");
        assert!(self.trained, "backward needs a training-mode forward first");
        self.live.fill(false);
        for &(i, dout) in douts {
            let out_v = self.graph.outputs[i];
            let r = self.range(out_v);
            self.grads[r].copy_from_slice(dout);
            self.live[out_v] = true;
        }
        let pool = Arc::clone(&self.pool);
        pool.install(|| {
            for i in (0..self.graph.nodes.len()).rev() {
                if self.live[self.graph.nodes[i].output] {
                    self.backward_node(i, params, grads);
                }
            }
        });
    }

    /// Whether the gradient of value `v` is wanted (graph inputs only when enabled).
    fn wants_grad(&self, v: usize) -> bool {
        match self.graph.inputs.iter().position(|&x| x == v) {
            Some(i) => self.input_grads[i],
            None => true,
        }
    }

    fn backward_node(&mut self, i: usize, params: &ParamStore, grads: &mut [f32]) {
        let graph = Arc::clone(&self.graph);
        let node = &graph.nodes[i];
        let (b, threads) = (self.batch, self.threads);
        let p = |id: usize| &params.data[graph.params[id].offset..][..graph.params[id].len];
        let slot = |id: usize| graph.params[id].offset..graph.params[id].offset + graph.params[id].len;
        let x_v = node.inputs[0];
        let want_x = self.wants_grad(x_v);
        let (x_r, out_r) = (self.range(x_v), self.range(node.output));
        let x = &self.values[x_r.clone()];
        let y = &self.values[out_r.clone()];
        let aux = &self.aux[self.aux_offsets[i]..self.aux_offsets[i] + aux_size(&node.op, b)];
        let n_x = x.len();
        // The first consumer to reach x (in reverse order) writes x's gradient in place; the
        // others compute into tmp and add (`deposit`). The second input's gradient goes through
        // tmp[n_x..] always.
        let direct = want_x && !self.live[x_v];
        let (tmp_dx, rest) = self.tmp.split_at_mut(n_x);
        let (dx, dy): (&mut [f32], &[f32]) = if direct {
            let (dx, dy, _) = split_out(&mut self.grads, x_r, out_r, 0..0);
            (dx, dy)
        } else {
            (tmp_dx, &self.grads[out_r])
        };
        let dx_opt = want_x.then_some(&mut *dx);
        let scratch = &mut self.scratch;
        match node.op {
            TOp::Linear { w, b: bias, in_f, out_f } => {
                let [dw, db] = disjoint_mut(grads, [slot(w), slot(bias)]);
                linear_backward(x, p(w), dy, b, in_f, out_f, dx_opt, dw, Some(db), threads);
            }
            TOp::Conv2d { w, geom } => {
                conv2d_backward(x, p(w), dy, b, &geom, dx_opt, &mut grads[slot(w)], scratch, threads)
            }
            TOp::ConvTranspose2d { w, geom } => {
                conv_transpose2d_backward(x, p(w), dy, b, &geom, dx_opt, &mut grads[slot(w)], scratch, threads)
            }
            TOp::Conv1d { w, b: bias, cin, t, cout, k } => {
                let [dw, db] = disjoint_mut(grads, [slot(w), slot(bias)]);
                conv1d_backward(x, p(w), dy, b, cin, t, cout, k, dx_opt, dw, Some(db), scratch, threads)
            }
            TOp::BatchNorm { gamma, beta, channels, .. } => {
                let (bm, bi) = aux.split_at(channels);
                let [dg, dbeta] = disjoint_mut(grads, [slot(gamma), slot(beta)]);
                batch_norm_backward(x, dy, b, p(gamma), bm, bi, dx, dg, dbeta);
            }
            TOp::Act(a) => activation_backward(a, y, dy, dx),
            TOp::Add => {
                dx.copy_from_slice(dy);
                rest[..dy.len()].copy_from_slice(dy);
            }
            TOp::Concat => {
                let (a_len, b_len) = (x.len() / b, self.graph.len(node.inputs[1]));
                concat_channels_backward(dy, a_len, b_len, b, dx, &mut rest[..b_len * b]);
            }
            TOp::Replicate { c, hw } => replicate_spatial_backward(dy, b, c, hw, dx),
            TOp::MaxPool1d { channels, t, k, s } => maxpool1d_backward(x, dy, b * channels, t, k, s, dx),
            TOp::MeanTime { t, h } => mean_time_backward(dy, b, t, h, dx),
            TOp::Rnn { gru, w_ih, b_ih, w_hh, b_hh, cin, t, hidden } => {
                let d = RnnDims { batch: b, cin, t, hidden };
                let rp = RnnParams { w_ih: p(w_ih), b_ih: p(b_ih), w_hh: p(w_hh), b_hh: p(b_hh) };
                let [dwi, dbi, dwh, dbh] = disjoint_mut(grads, [slot(w_ih), slot(b_ih), slot(w_hh), slot(b_hh)]);
                if gru {
                    gru_backward(x, &rp, d, y, aux, dy, dx_opt, dwi, dbi, dwh, dbh, scratch, threads)
                } else {
                    rnn_relu_backward(x, &rp, d, y, aux, dy, dx_opt, dwi, dbi, dwh, dbh, scratch, threads)
                }
            }
        }
        if direct {
            self.live[x_v] = true;
        } else if want_x {
            self.deposit(x_v, 0);
        }
        if let Some(&v2) = node.inputs.get(1) {
            if self.wants_grad(v2) {
                self.deposit(v2, n_x);
            }
        }
    }

    /// Moves the input gradient held in tmp[start..] into value `v`'s gradient.
    fn deposit(&mut self, v: usize, start: usize) {
        let r = self.range(v);
        let src = &self.tmp[start..start + r.len()];
        let dst = &mut self.grads[r];
        if self.live[v] {
            dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
        } else {
            dst.copy_from_slice(src);
            self.live[v] = true;
        }
    }
}

/// Saved values a node keeps for its backward: batch-norm statistics, recurrent gates.
fn aux_size(op: &TOp, batch: usize) -> usize {
    match *op {
        TOp::BatchNorm { channels, .. } => 2 * channels,
        TOp::Rnn { gru, cin, t, hidden, .. } => saved_len(gru, RnnDims { batch, cin, t, hidden }),
        _ => 0,
    }
}

/// Scratch a node needs forward or backward.
fn scratch_size(op: &TOp, batch: usize) -> usize {
    match *op {
        TOp::Conv2d { geom, .. } => geom.scratch_len(batch).max(geom.backward_scratch_len(batch)),
        TOp::ConvTranspose2d { geom, .. } => geom.scratch_len(batch).max(geom.backward_scratch_len(batch)),
        TOp::Rnn { gru, cin, t, hidden, .. } => {
            let d = RnnDims { batch, cin, t, hidden };
            scratch_len(gru, d).max(backward_scratch_len(gru, d))
        }
        TOp::Conv1d { cin, t, cout, k, .. } => {
            as_conv2d(cin, t, cout, k).scratch_len(batch).max(conv1d_backward_scratch_len(batch, cin, t, cout, k))
        }
        _ => 0,
    }
}
