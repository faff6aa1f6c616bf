//! A training graph on the GPU (issue 8): the device twin of `train::session::TrainSession` for
//! the ops of G and D (linear, convolutions, transposed convolutions, training-mode batch norm,
//! activations, add, concat, replicate). Forward keeps every value for the backward pass;
//! backward runs the nodes in reverse, overwriting a value's gradient at its first consumer and
//! adding at the others, and ACCUMULATES parameter gradients, as the CPU session does. Nothing
//! waits for the GPU: results are read back with `DeviceSlots::download` / `output`.
//!
//! Not yet on the GPU (an `Error::Device` naming the op): the encoder's ops (conv1d, max-pool,
//! mean over time, recurrences) and eval-mode batch norm.

use std::sync::Arc;

use super::{driver_err, upload_exact, value_slot, value_slot_mut, Buf, CudaDevice, Epi, MatLayout, Precision};
use crate::error::{Error, Result};
use crate::train::graph::{Slot, TOp, TrainGraph};
use crate::train::session::{Mode, BN_MOMENTUM};

/// Parameters, their gradients or the running statistics of a training graph on the device:
/// one buffer per slot, in the order of the graph's slot list.
pub struct DeviceSlots {
    pub slots: Vec<Buf>,
}

impl DeviceSlots {
    /// Uploads `flat` (the host store's layout: slot i at slots[i].offset).
    pub fn upload(dev: &CudaDevice, slots: &[Slot], flat: &[f32]) -> Result<DeviceSlots> {
        let slots = slots.iter().map(|s| dev.upload(&flat[s.offset..s.offset + s.len])).collect::<Result<_>>()?;
        Ok(DeviceSlots { slots })
    }

    /// Downloads into the host store's flat layout (waits for the stream).
    pub fn download(&self, dev: &CudaDevice, slots: &[Slot], len: usize) -> Result<Vec<f32>> {
        let mut flat = vec![0.0; len];
        for (s, buf) in slots.iter().zip(&self.slots) {
            flat[s.offset..s.offset + s.len].copy_from_slice(&dev.download(buf)?);
        }
        Ok(flat)
    }
}

/// A training graph planned for one batch size on one GPU.
pub struct CudaTrainSession {
    dev: Arc<CudaDevice>,
    graph: Arc<TrainGraph>,
    batch: usize,
    /// Value v ([batch, per-sample shape]); taken out while a node writes it.
    values: Vec<Option<Buf>>,
    grads: Vec<Buf>,
    live: Vec<bool>,
    /// Per batch-norm node: the batch's mean and invstd (saved for backward).
    stats: Vec<Option<(Buf, Buf)>>,
    /// Input gradients of the node being run, before they reach their values.
    tmp: [Buf; 2],
    /// `batch` ones: a linear layer's bias gradient is onesᵀ · dy.
    ones: Buf,
    /// A parameter-sized product before it is added into the parameter's gradient.
    wtmp: Buf,
    input_grads: Vec<bool>,
    trained: bool,
}

impl CudaTrainSession {
    pub fn new(dev: Arc<CudaDevice>, graph: Arc<TrainGraph>, batch: usize) -> Result<CudaTrainSession> {
        let batch = batch.max(1);
        let zeros = |n: usize| dev.stream().alloc_zeros::<f32>(n.max(1)).map_err(driver_err("alloc"));
        let lens: Vec<usize> = (0..graph.shapes.len()).map(|v| graph.len(v) * batch).collect();
        let values = lens.iter().map(|&n| zeros(n).map(Some)).collect::<Result<_>>()?;
        let grads = lens.iter().map(|&n| zeros(n)).collect::<Result<_>>()?;
        let stats = graph
            .nodes
            .iter()
            .map(|n| match n.op {
                TOp::BatchNorm { channels, .. } => Ok(Some((zeros(channels)?, zeros(channels)?))),
                _ => Ok(None),
            })
            .collect::<Result<_>>()?;
        let max = lens.iter().copied().max().unwrap_or(1);
        let tmp = [zeros(max)?, zeros(max)?];
        let ones = dev.upload(&vec![1.0; batch])?;
        let wtmp = zeros(graph.params.iter().map(|s| s.len).max().unwrap_or(1))?;
        Ok(CudaTrainSession {
            live: vec![false; graph.shapes.len()],
            input_grads: vec![false; graph.inputs.len()],
            trained: false,
            dev,
            graph,
            batch,
            values,
            grads,
            stats,
            tmp,
            ones,
            wtmp,
        })
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    fn value(&self, v: usize) -> Result<&Buf> {
        value_slot(&self.values, v)
    }

    /// Copies `host` into graph input `i`.
    pub fn set_input(&mut self, i: usize, host: &[f32]) -> Result<()> {
        let v = self.graph.inputs[i];
        let want = self.graph.len(v) * self.batch;
        let dst = value_slot_mut(&mut self.values, v)?;
        upload_exact(&self.dev, host, want, dst, &format!("CUDA training input {i}"))
    }

    /// Graph input `i`'s device buffer, to be written on the device (noise, copied images).
    pub fn input_buf_mut(&mut self, i: usize) -> Result<&mut Buf> {
        value_slot_mut(&mut self.values, self.graph.inputs[i])
    }

    /// Graph input `i`'s device buffer as last written.
    pub fn input_buf(&self, i: usize) -> Result<&Buf> {
        self.value(self.graph.inputs[i])
    }

    /// Values of graph input `i` for the whole batch.
    pub fn input_len(&self, i: usize) -> usize {
        self.graph.len(self.graph.inputs[i]) * self.batch
    }

    /// Graph output `i`'s device buffer after `forward`.
    pub fn output_buf(&self, i: usize) -> Result<&Buf> {
        self.value(self.graph.outputs[i])
    }

    /// Graph input `i`'s gradient on the device after `backward` (when enabled).
    pub fn input_grad_buf(&self, i: usize) -> &Buf {
        &self.grads[self.graph.inputs[i]]
    }

    /// Downloads graph output `i` (waits for the stream).
    pub fn output(&self, i: usize) -> Result<Vec<f32>> {
        self.dev.download(self.value(self.graph.outputs[i])?)
    }

    /// Whether `backward` computes the gradient of graph input `i` (off by default).
    pub fn set_input_grad(&mut self, i: usize, on: bool) {
        self.input_grads[i] = on;
    }

    /// Downloads the gradient of graph input `i` after `backward` (when enabled).
    pub fn input_grad(&self, i: usize) -> Result<Vec<f32>> {
        self.dev.download(&self.grads[self.graph.inputs[i]])
    }

    /// Runs every node forward (training-mode batch norm: batch statistics, running statistics
    /// in `buffers` updated).
    pub fn forward(&mut self, params: &DeviceSlots, buffers: &mut DeviceSlots, mode: Mode) -> Result<()> {
        if mode == Mode::Eval && self.graph.nodes.iter().any(|n| matches!(n.op, TOp::BatchNorm { .. })) {
            return Err(Error::Device("eval-mode batch norm is not on the GPU yet".into()));
        }
        self.trained = mode == Mode::Train;
        let graph = Arc::clone(&self.graph);
        for (i, node) in graph.nodes.iter().enumerate() {
            let mut out = self.values[node.output]
                .take()
                .ok_or_else(|| Error::Device(format!("CUDA training node {i}: output in use")))?;
            let r = self.forward_node(i, params, buffers, &mut out);
            self.values[node.output] = Some(out);
            r?;
        }
        Ok(())
    }

    fn forward_node(&mut self, i: usize, params: &DeviceSlots, buffers: &mut DeviceSlots, out: &mut Buf) -> Result<()> {
        let CudaTrainSession { dev: d, graph, batch: b, values, stats, .. } = self;
        let b = *b;
        let node = &graph.nodes[i];
        let value = |v: usize| value_slot(values, v);
        let x = value(node.inputs[0])?;
        let y = node.inputs.get(1).map(|&v| value(v)).transpose()?;
        let p = |id: usize| &params.slots[id];
        let per = |v: usize| graph.len(v);
        match node.op {
            TOp::Linear { w, b: bias, in_f, out_f } => {
                let epi = Epi { shift: Some(p(bias)), ..Epi::default() };
                d.linear_fwd(x, p(w), b, in_f, out_f, &epi, out)
            }
            TOp::Conv2d { w, geom } => d.conv2d_fwd(Precision::F32, x, p(w), b, &geom, &Epi::default(), out),
            // Its forward is the backward-data of the adjoint convolution, on PyTorch's [Cin, Cout, k, k].
            TOp::ConvTranspose2d { w, geom } => d.conv2d_bwd_data(x, p(w), b, &geom.adjoint_conv(), out),
            TOp::BatchNorm { gamma, beta, mean, var, channels } => {
                let spatial = per(node.inputs[0]) / channels;
                let Some((bm, bi)) = stats[i].as_mut() else {
                    return Err(Error::Device("batch norm without its statistics buffers".into()));
                };
                d.batch_norm_train_fwd(x, (b, channels, spatial), p(gamma), p(beta), out, bm, bi)?;
                let [rm, rv] = two_mut(&mut buffers.slots, mean, var)?;
                d.batch_norm_update_running((rm, rv), (bm, bi), channels, b * spatial, BN_MOMENTUM)
            }
            TOp::Act(a) => d.activation_fwd(x, b * per(node.output), a, out),
            TOp::Add => d.add_fwd(x, need_second(y)?, b * per(node.output), out),
            TOp::Concat => {
                d.concat_channels_fwd((x, per(node.inputs[0])), (need_second(y)?, per(node.inputs[1])), b, out)
            }
            TOp::Replicate { c, hw } => d.replicate_spatial_fwd(x, b * c, hw, out),
            TOp::MaxPool1d { channels, t, k, s } => d.maxpool1d_fwd(x, (b * channels, t, k, s), out),
            ref op => Err(not_yet(op)),
        }
    }

    /// Backpropagates `dout` (graph output 0's gradient), ACCUMULATING parameter gradients.
    pub fn backward(&mut self, params: &DeviceSlots, grads: &mut DeviceSlots, dout: &Buf) -> Result<()> {
        self.backward_outputs(params, grads, &[(0, dout)])
    }

    /// As `backward`, from the gradients of several graph outputs (index, gradient); outputs
    /// not listed get none (D's logit and classifier heads).
    pub fn backward_outputs(
        &mut self,
        params: &DeviceSlots,
        grads: &mut DeviceSlots,
        douts: &[(usize, &Buf)],
    ) -> Result<()> {
        if !self.trained {
            return Err(Error::Device("backward needs a training-mode forward first".into()));
        }
        self.live.fill(false);
        let stream = Arc::clone(self.dev.stream());
        for &(i, dout) in douts {
            let out_v = self.graph.outputs[i];
            let n = self.graph.len(out_v) * self.batch;
            stream.memcpy_dtod(&dout.slice(0..n), &mut self.grads[out_v]).map_err(driver_err("copy dout"))?;
            self.live[out_v] = true;
        }
        let graph = Arc::clone(&self.graph);
        for i in (0..graph.nodes.len()).rev() {
            if self.live[graph.nodes[i].output] {
                self.backward_node(i, params, grads)?;
            }
        }
        Ok(())
    }

    fn wants_grad(&self, v: usize) -> bool {
        match self.graph.inputs.iter().position(|&x| x == v) {
            Some(i) => self.input_grads[i],
            None => true,
        }
    }

    fn backward_node(&mut self, i: usize, params: &DeviceSlots, grads: &mut DeviceSlots) -> Result<()> {
        let graph = Arc::clone(&self.graph);
        let node = &graph.nodes[i];
        let (b, x_v) = (self.batch, node.inputs[0]);
        let want_x = self.wants_grad(x_v);
        let [t0, t1] = &mut self.tmp;
        let (d, wtmp) = (&self.dev, &mut self.wtmp);
        let p = |id: usize| &params.slots[id];
        let x = self.values[x_v].as_ref().ok_or_else(|| Error::Device("CUDA value in use".into()))?;
        let y = self.values[node.output].as_ref().ok_or_else(|| Error::Device("CUDA value in use".into()))?;
        let dy = &self.grads[node.output];
        let (n_x, n_y) = (b * graph.len(x_v), b * graph.len(node.output));
        match node.op {
            TOp::Linear { w, b: bias, in_f, out_f } => {
                // dW [out, in] += dyᵀ [out, B] · x [B, in]; db [1, out] += onesᵀ [1, B] · dy [B, out]:
                // each product into wtmp, then added (the GEMM's residual cannot alias its output here).
                d.gemm_fwd(
                    (out_f, in_f, b, 1),
                    (dy, MatLayout::transposed(out_f, 0)),
                    (x, MatLayout::row_major(in_f, 0)),
                    (&mut *wtmp, MatLayout::row_major(in_f, 0)),
                    &Epi::default(),
                    0,
                )?;
                d.accumulate(&mut grads.slots[w], wtmp, out_f * in_f)?;
                d.gemm_fwd(
                    (1, out_f, b, 1),
                    (&self.ones, MatLayout::row_major(b, 0)),
                    (dy, MatLayout::row_major(out_f, 0)),
                    (&mut *wtmp, MatLayout::row_major(out_f, 0)),
                    &Epi::default(),
                    0,
                )?;
                d.accumulate(&mut grads.slots[bias], wtmp, out_f)?;
                if want_x {
                    // dx [B, in] = dy [B, out] · W [out, in].
                    d.gemm_fwd(
                        (b, in_f, out_f, 1),
                        (dy, MatLayout::row_major(out_f, 0)),
                        (p(w), MatLayout::row_major(in_f, 0)),
                        (t0, MatLayout::row_major(in_f, 0)),
                        &Epi::default(),
                        0,
                    )?;
                }
            }
            TOp::Conv2d { w, geom } => {
                d.conv2d_bwd_weight(x, dy, b, &geom, &mut grads.slots[w])?;
                if want_x {
                    d.conv2d_bwd_data(dy, p(w), b, &geom, t0)?;
                }
            }
            TOp::ConvTranspose2d { w, geom } => {
                d.conv_transpose2d_bwd(x, p(w), dy, b, &geom, want_x.then_some(&mut *t0), &mut grads.slots[w])?
            }
            TOp::BatchNorm { gamma, beta, channels, .. } => {
                let Some((bm, bi)) = self.stats[i].as_ref() else {
                    return Err(Error::Device("batch norm without its statistics buffers".into()));
                };
                let spatial = n_x / (b * channels);
                let [dg, dbeta] = two_mut(&mut grads.slots, gamma, beta)?;
                d.batch_norm_bwd(x, dy, (b, channels, spatial), p(gamma), (bm, bi), t0, (dg, dbeta))?;
            }
            TOp::Act(a) => d.activation_bwd(y, dy, n_y, a, t0)?,
            TOp::Add => {
                let stream = Arc::clone(d.stream());
                for t in [&mut *t0, &mut *t1] {
                    stream.memcpy_dtod(dy, t).map_err(driver_err("copy gradient"))?;
                }
            }
            TOp::Concat => {
                let b_len = graph.len(node.inputs[1]);
                d.concat_channels_bwd(dy, (n_x / b, b_len), b, t0, t1)?
            }
            TOp::Replicate { c, hw } => d.replicate_spatial_bwd(dy, b * c, hw, t0)?,
            TOp::MaxPool1d { channels, t, k, s } => d.maxpool1d_bwd(x, dy, (b * channels, t, k, s), t0)?,
            ref op => return Err(not_yet(op)),
        }
        if want_x {
            self.deposit(x_v, 0)?;
        }
        if let Some(&v2) = node.inputs.get(1) {
            if self.wants_grad(v2) {
                self.deposit(v2, 1)?;
            }
        }
        Ok(())
    }

    /// Moves the input gradient in tmp[k] into value v's gradient (copied by the first consumer
    /// to reach it, added by the others).
    fn deposit(&mut self, v: usize, k: usize) -> Result<()> {
        let n = self.graph.len(v) * self.batch;
        let src = &self.tmp[k];
        if self.live[v] {
            self.dev.accumulate(&mut self.grads[v], src, n)
        } else {
            self.live[v] = true;
            let stream = Arc::clone(self.dev.stream());
            stream.memcpy_dtod(&src.slice(0..n), &mut self.grads[v]).map_err(driver_err("copy gradient"))
        }
    }
}

/// Two distinct slots mutably.
fn two_mut(slots: &mut [Buf], a: usize, b: usize) -> Result<[&mut Buf; 2]> {
    if a == b || a.max(b) >= slots.len() {
        return Err(Error::Shape(format!("CUDA training: slots {a} and {b} are not two distinct slots")));
    }
    let (lo, hi) = slots.split_at_mut(a.max(b));
    let (first, second) = (&mut lo[a.min(b)], &mut hi[0]);
    Ok(if a < b { [first, second] } else { [second, first] })
}

fn need_second(y: Option<&Buf>) -> Result<&Buf> {
    y.ok_or_else(|| Error::Shape("a two-input node with one input".into()))
}

fn not_yet(op: &TOp) -> Error {
    Error::Device(format!("{op:?} is not on the GPU trainer yet (the GAN's ops are)"))
}
