//! The CUDA executor: the same `Graph` the CPU runs, with every parameter uploaded once
//! (in its logical row-major layout) and one device buffer per value for a fixed batch. `run`
//! enqueues one launch per node on the device's stream and returns without waiting; inputs and
//! outputs move with `set_input` / `output` (or stay on the device: `input_buf_mut`,
//! `output_buf`, so that the encoder's embedding feeds G without a round trip).

use std::sync::Arc;

use super::{
    driver_err, rnn_scratch_len, upload_exact, value_slot, value_slot_mut, Buf, CudaDevice, Epi, Precision, RnnBufs,
};
use crate::error::{Error, Result};
use crate::graph::{Graph, Node, Op};
use crate::ops::rnn::RnnDims;

/// A graph planned for one batch size on one GPU.
pub struct CudaSession {
    dev: Arc<CudaDevice>,
    graph: Arc<Graph>,
    batch: usize,
    /// Parameter i, uploaded (row-major, unpacked).
    params: Vec<Buf>,
    /// Per node: the recurrence's full W_hh (the graph splits the GRU's rows; the kernel wants
    /// PyTorch's [3H, H]) and its scratch (`rnn_scratch_len`).
    rnn: Vec<Option<(Buf, Buf)>>,
    /// Value v's buffer ([batch, per-sample shape]); taken out while a node writes it.
    values: Vec<Option<Buf>>,
    /// What the convolutions multiply in (`set_precision`).
    precision: Precision,
}

impl CudaSession {
    /// Uploads `graph`'s parameters and allocates its values for `batch` samples.
    pub fn new(dev: Arc<CudaDevice>, graph: Arc<Graph>, batch: usize) -> Result<CudaSession> {
        let batch = batch.max(1);
        let params = graph.params.iter().map(|p| dev.upload(&p.unpacked())).collect::<Result<Vec<_>>>()?;
        let mut rnn = Vec::with_capacity(graph.nodes.len());
        for node in &graph.nodes {
            rnn.push(match node.op {
                Op::Rnn { gru, w_hh, w_hh_n, cin, t, hidden, .. } => {
                    let mut full = graph.params[w_hh].unpacked().into_owned();
                    if let Some(n) = w_hh_n {
                        full.extend_from_slice(&graph.params[n].unpacked());
                    }
                    let dims = RnnDims { batch, cin, t, hidden };
                    let scratch =
                        dev.stream().alloc_zeros::<f32>(rnn_scratch_len(dims, gru)).map_err(driver_err("alloc"))?;
                    Some((dev.upload(&full)?, scratch))
                }
                _ => None,
            });
        }
        let values = graph
            .values
            .iter()
            .map(|v| dev.stream().alloc_zeros::<f32>(v.len() * batch).map(Some).map_err(driver_err("alloc")))
            .collect::<Result<Vec<_>>>()?;
        Ok(CudaSession { dev, graph, batch, params, rnn, values, precision: Precision::F32 })
    }

    /// The convolutions' arithmetic from now on (f32 unless set); a captured CUDA graph keeps the
    /// kernels it was captured with.
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.dev
    }

    fn value(&self, v: usize) -> Result<&Buf> {
        value_slot(&self.values, v)
    }

    /// Copies `host` ([batch, per-sample shape]) into graph input `i`.
    pub fn set_input(&mut self, i: usize, host: &[f32]) -> Result<()> {
        let v = self.graph.inputs[i];
        let want = self.graph.values[v].len() * self.batch;
        let dst = value_slot_mut(&mut self.values, v)?;
        upload_exact(&self.dev, host, want, dst, &format!("CUDA input {i}"))
    }

    /// Graph input `i`'s device buffer, to be written by a kernel (e.g. device-side noise).
    pub fn input_buf_mut(&mut self, i: usize) -> Result<&mut Buf> {
        value_slot_mut(&mut self.values, self.graph.inputs[i])
    }

    /// Graph output `i`'s device buffer (valid once the stream reaches it).
    pub fn output_buf(&self, i: usize) -> Result<&Buf> {
        self.value(self.graph.outputs[i])
    }

    /// Downloads graph output `i` (waits for the stream).
    pub fn output(&self, i: usize) -> Result<Vec<f32>> {
        self.dev.download(self.output_buf(i)?)
    }

    /// Enqueues every node in order.
    pub fn run(&mut self) -> Result<()> {
        let graph = Arc::clone(&self.graph);
        for (i, node) in graph.nodes.iter().enumerate() {
            let mut out = self.values[node.output]
                .take()
                .ok_or_else(|| Error::Device(format!("CUDA node {}: output in use", node.name)))?;
            // The recurrence's scratch is written too: out of the session while the node runs.
            let mut rnn = self.rnn[i].take();
            let r = self.run_node(node, &mut out, rnn.as_mut());
            self.values[node.output] = Some(out);
            self.rnn[i] = rnn;
            r.map_err(|e| Error::Device(format!("CUDA node {}: {e}", node.name)))?;
        }
        Ok(())
    }

    fn run_node(&self, node: &Node, out: &mut Buf, rnn: Option<&mut (Buf, Buf)>) -> Result<()> {
        let d = &self.dev;
        let b = self.batch;
        let x = self.value(node.inputs[0])?;
        let y = node.inputs.get(1).map(|&v| self.value(v)).transpose()?;
        let p = |id: usize| &self.params[id];
        let epi = |scale: Option<usize>, shift: Option<usize>, act, residual| Epi {
            scale: scale.map(p),
            shift: shift.map(p),
            residual,
            act,
        };
        let per = |v: usize| self.graph.values[v].len();
        match node.op {
            Op::Linear { w, scale, shift, in_f, out_f, act } => {
                d.linear_fwd(x, p(w), b, in_f, out_f, &epi(scale, shift, act, None), out)
            }
            Op::Conv2d { w, scale, shift, geom, act, residual } => {
                let res = if residual { y } else { None };
                d.conv2d_fwd(self.precision, x, p(w), b, &geom, &epi(scale, shift, act, res), out)
            }
            Op::ConvTranspose2d { w, scale, shift, geom, act } => {
                d.conv_transpose2d_fwd(self.precision, x, p(w), b, &geom, &epi(scale, shift, act, None), out)
            }
            Op::Conv1d { w, shift, cin, t, cout, k, act } => {
                d.conv1d_fwd(self.precision, x, p(w), (b, cin, t, cout, k), &epi(None, shift, act, None), out)
            }
            Op::MaxPool1d { channels, t, k, s } => d.maxpool1d_fwd(x, (b * channels, t, k, s), out),
            Op::Rnn { gru, w_ih, b_ih, b_hh, cin, t, hidden, .. } => {
                let Some((w_hh, proj)) = rnn else {
                    return Err(Error::Device("recurrence without its device weights".into()));
                };
                let bufs = RnnBufs { w_ih: p(w_ih), b_ih: p(b_ih), w_hh, b_hh: p(b_hh) };
                d.rnn_fwd(x, &bufs, gru, RnnDims { batch: b, cin, t, hidden }, proj, out)
            }
            Op::MeanTime { t, h } => d.mean_time_fwd(x, (b, t, h), out),
            Op::Concat => {
                let y = y.ok_or_else(|| Error::Shape("concat needs two inputs".into()))?;
                d.concat_channels_fwd((x, per(node.inputs[0])), (y, per(node.inputs[1])), b, out)
            }
            Op::Replicate { c, hw } => d.replicate_spatial_fwd(x, b * c, hw, out),
            Op::Add => {
                let y = y.ok_or_else(|| Error::Shape("add needs two inputs".into()))?;
                d.add_fwd(x, y, b * per(node.output), out)
            }
            Op::Act(act) => d.activation_fwd(x, b * per(node.output), act, out),
        }
    }
}
