//! Running a planned graph. `Session::run` allocates nothing: values live in one arena at the
//! offsets of the plan, ops borrow disjoint slices of it, and the thread pool is the session's.

use std::sync::Arc;
use std::time::Instant;

use rayon::ThreadPool;

use super::builder::{Graph, Node, Op, ParamData};
use super::plan::Plan;
use crate::error::{Error, Result};
use crate::ops::conv1d::{conv1d, conv1d_ref};
use crate::ops::conv2d::{conv2d, conv2d_ref};
use crate::ops::conv_transpose2d::{conv_transpose2d, conv_transpose2d_ref, ConvTranspose2dGeom};
use crate::ops::elementwise::{add, concat_channels, replicate_spatial};
use crate::ops::linear::{linear, linear_ref};
use crate::ops::pool::{maxpool1d, mean_time};
use crate::ops::rnn::{gru, gru_ref, rnn_relu, rnn_relu_ref, RnnDims, RnnPacked, RnnParams};
use crate::ops::{activation::activation_ref, Epilogue};
use crate::tensor::pages;

/// Which implementation of every op a session runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The plain loops (the oracle; slow, allocates).
    Reference,
    /// The fast CPU path.
    Cpu,
}

/// A graph, planned for one batch size, with its arena, scratch and thread pool.
pub struct Session {
    graph: Arc<Graph>,
    plan: Plan,
    arena: Vec<f32>,
    scratch: Vec<f32>,
    pool: Arc<ThreadPool>,
    threads: usize,
    backend: Backend,
}

/// Builds a thread pool of `threads` workers (0: one per available core).
pub fn thread_pool(threads: usize) -> Result<Arc<ThreadPool>> {
    let n = if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("text2img-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| Error::Input(format!("cannot start {n} threads: {e}")))
}

impl Session {
    /// Plans `graph` for `batch` samples on `pool`.
    pub fn new(graph: Arc<Graph>, batch: usize, pool: Arc<ThreadPool>, backend: Backend) -> Session {
        let plan = Plan::new(&graph, batch.max(1));
        let threads = pool.current_num_threads();
        let max_k = graph.nodes.iter().map(|n| n.op.gemm_inner()).max().unwrap_or(0);
        pool.broadcast(|_| crate::ops::gemm::reserve_thread_buffers(max_k));
        Session {
            arena: pages::zeroed(plan.arena_len),
            scratch: pages::zeroed(plan.scratch_len),
            graph,
            plan,
            pool,
            threads,
            backend,
        }
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn batch(&self) -> usize {
        self.plan.batch
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Re-plans for another batch size (allocates only when the size changes).
    pub fn set_batch(&mut self, batch: usize) {
        if batch.max(1) != self.plan.batch {
            self.plan = Plan::new(&self.graph, batch.max(1));
            self.arena = pages::zeroed(self.plan.arena_len);
            self.scratch = pages::zeroed(self.plan.scratch_len);
        }
    }

    fn range(&self, v: usize) -> std::ops::Range<usize> {
        let start = self.plan.offsets[v];
        start..start + self.graph.values[v].len() * self.plan.batch
    }

    /// The buffer of graph input `i` ([batch, per-sample shape]), to be filled before `run`.
    pub fn input_mut(&mut self, i: usize) -> &mut [f32] {
        let r = self.range(self.graph.inputs[i]);
        &mut self.arena[r]
    }

    /// The buffer of graph output `i` after `run`.
    pub fn output(&self, i: usize) -> &[f32] {
        &self.arena[self.range(self.graph.outputs[i])]
    }

    /// Runs the graph on whole rows of every input (the batch from their lengths) and returns
    /// output 0; `what` names the caller in the error for inputs that are not one batch.
    pub fn run_rows(&mut self, inputs: &[&[f32]], what: &str) -> Result<&[f32]> {
        let rows: Vec<usize> = self.graph.inputs.iter().map(|&v| self.graph.values[v].len()).collect();
        let n = inputs.first().zip(rows.first()).map_or(0, |(x, &r)| x.len() / r.max(1));
        let whole = inputs.len() == rows.len() && inputs.iter().zip(&rows).all(|(x, &r)| x.len() == n * r);
        if n == 0 || !whole {
            let lens: Vec<String> = inputs.iter().map(|x| x.len().to_string()).collect();
            return Err(Error::Input(format!(
                "{what}: inputs of {} values are not whole rows of one batch",
                lens.join(" and ")
            )));
        }
        self.set_batch(n);
        for (i, x) in inputs.iter().enumerate() {
            self.input_mut(i).copy_from_slice(x);
        }
        self.run();
        Ok(self.output(0))
    }

    /// Runs every node in order.
    pub fn run(&mut self) {
        let pool = Arc::clone(&self.pool);
        pool.install(|| {
            for i in 0..self.graph.nodes.len() {
                self.run_node(i);
            }
        });
    }

    /// Runs every node, returning each node's wall time in seconds (same order as the nodes).
    pub fn run_profiled(&mut self, times: &mut Vec<f64>) {
        times.clear();
        let pool = Arc::clone(&self.pool);
        pool.install(|| {
            for i in 0..self.graph.nodes.len() {
                let t = Instant::now();
                self.run_node(i);
                times.push(t.elapsed().as_secs_f64());
            }
        });
    }

    fn run_node(&mut self, i: usize) {
        let graph = Arc::clone(&self.graph);
        let node = &graph.nodes[i];
        let out_range = self.range(node.output);
        let in_ranges: [Option<std::ops::Range<usize>>; 2] =
            [node.inputs.first().map(|&v| self.range(v)), node.inputs.get(1).map(|&v| self.range(v))];
        // The plan gives an output space disjoint from its inputs: split the arena around it.
        let (lo, rest) = self.arena.split_at_mut(out_range.start);
        let (out, hi) = rest.split_at_mut(out_range.len());
        let hi_start = out_range.end;
        let get = |r: &Option<std::ops::Range<usize>>| -> &[f32] {
            match r {
                None => &[],
                Some(r) if r.end <= out_range.start => &lo[r.clone()],
                Some(r) => &hi[r.start - hi_start..r.end - hi_start],
            }
        };
        let (x, y) = (get(&in_ranges[0]), get(&in_ranges[1]));
        let ctx = Ctx { graph: &graph, batch: self.plan.batch, threads: self.threads, scratch: &mut self.scratch };
        match self.backend {
            Backend::Cpu => ctx.fast(node, x, y, out),
            Backend::Reference => ctx.reference(node, x, y, out),
        }
    }
}

struct Ctx<'a> {
    graph: &'a Graph,
    batch: usize,
    threads: usize,
    scratch: &'a mut [f32],
}

impl Ctx<'_> {
    fn p(&self, id: usize) -> &[f32] {
        self.graph.params[id].data()
    }

    fn opt(&self, id: Option<usize>) -> Option<&[f32]> {
        id.map(|i| self.p(i))
    }

    /// A weight in its logical row-major layout (unpacked for the reference).
    fn w(&self, id: usize) -> std::borrow::Cow<'_, [f32]> {
        self.graph.params[id].unpacked()
    }

    fn epi<'b>(
        &'b self,
        scale: Option<usize>,
        shift: Option<usize>,
        act: crate::ops::Activation,
        res: Option<&'b [f32]>,
    ) -> Epilogue<'b> {
        Epilogue { scale: self.opt(scale), shift: self.opt(shift), residual: res, act }
    }

    fn fast(self, node: &Node, x: &[f32], y: &[f32], out: &mut [f32]) {
        let Ctx { graph, batch: b, threads: t, scratch } = self;
        let p = |id: usize| graph.params[id].data();
        let pk = |id: usize| graph.params[id].packed();
        let epi = |scale: Option<usize>, shift: Option<usize>, act, residual| Epilogue {
            scale: scale.map(p),
            shift: shift.map(p),
            residual,
            act,
        };
        match node.op {
            Op::Linear { w, scale, shift, in_f, out_f, act } => {
                linear(x, pk(w), b, in_f, out_f, &epi(scale, shift, act, None), out, t)
            }
            Op::Conv2d { w, scale, shift, geom, act, residual } => {
                let e = epi(scale, shift, act, residual.then_some(y));
                match &graph.params[w].data {
                    ParamData::WinogradConv(wc) => wc.forward(x, b, &geom, &e, scratch, out, t),
                    ParamData::Taps(tw) => tw.forward(x, b, &e, scratch, out),
                    _ => conv2d(x, pk(w), b, &geom, &e, scratch, out, t),
                }
            }
            Op::ConvTranspose2d { w, scale, shift, geom, act } => {
                let e = epi(scale, shift, act, None);
                match &graph.params[w].data {
                    ParamData::Winograd(wd) => wd.forward(x, b, &geom, &e, scratch, out, t),
                    ParamData::Taps(tw) => tw.forward(x, b, &e, scratch, out),
                    _ => conv_transpose2d(x, pk(w), b, &geom, &e, scratch, out, t),
                }
            }
            Op::Conv1d { w, shift, cin, t: steps, cout, k, act } => {
                let e = epi(None, shift, act, None);
                match &graph.params[w].data {
                    ParamData::Taps(tw) => tw.forward(x, b, &e, scratch, out),
                    _ => conv1d(x, pk(w), b, cin, steps, cout, k, &e, scratch, out, t),
                }
            }
            Op::Rnn { gru: is_gru, w_ih, b_ih, w_hh, w_hh_n, b_hh, cin, t: steps, hidden } => {
                let d = RnnDims { batch: b, cin, t: steps, hidden };
                let rp =
                    RnnPacked { w_ih: pk(w_ih), b_ih: p(b_ih), w_hh: pk(w_hh), w_hh_n: w_hh_n.map(pk), b_hh: p(b_hh) };
                if is_gru {
                    gru(x, &rp, d, scratch, out, t)
                } else {
                    rnn_relu(x, &rp, d, scratch, out, t)
                }
            }
            _ => movement(&node.op, b, x, y, out),
        }
    }

    fn reference(self, node: &Node, x: &[f32], y: &[f32], out: &mut [f32]) {
        let b = self.batch;
        match node.op {
            Op::Linear { w, scale, shift, in_f, out_f, act } => {
                linear_ref(x, &self.w(w), b, in_f, out_f, &self.epi(scale, shift, act, None), out)
            }
            Op::Conv2d { w, scale, shift, geom, act, residual } => {
                conv2d_ref(x, &self.w(w), b, &geom, &self.epi(scale, shift, act, residual.then_some(y)), out)
            }
            Op::ConvTranspose2d { w, scale, shift, geom, act } => {
                let unpacked = unpack_weight(&self.w(w), &geom);
                conv_transpose2d_ref(x, &unpacked, b, &geom, &self.epi(scale, shift, act, None), out)
            }
            Op::Conv1d { w, shift, cin, t, cout, k, act } => {
                conv1d_ref(x, &self.w(w), b, cin, t, cout, k, &self.epi(None, shift, act, None), out)
            }
            Op::Rnn { gru: is_gru, w_ih, b_ih, w_hh, w_hh_n, b_hh, cin, t, hidden } => {
                let d = RnnDims { batch: b, cin, t, hidden };
                // W_hh was split at build: put the rows back together for the reference.
                let mut whh = self.w(w_hh).into_owned();
                if let Some(n) = w_hh_n {
                    whh.extend_from_slice(&self.w(n));
                }
                let rp = RnnParams { w_ih: &self.w(w_ih), b_ih: self.p(b_ih), w_hh: &whh, b_hh: self.p(b_hh) };
                if is_gru {
                    gru_ref(x, &rp, d, out)
                } else {
                    rnn_relu_ref(x, &rp, d, out)
                }
            }
            _ => movement(&node.op, b, x, y, out),
        }
    }
}

/// Ops whose one implementation serves both backends (memory-bound data movement).
fn movement(op: &Op, b: usize, x: &[f32], y: &[f32], out: &mut [f32]) {
    match *op {
        Op::MaxPool1d { channels, t, k, s } => maxpool1d(x, b * channels, t, k, s, out),
        Op::MeanTime { t, h } => mean_time(x, b, t, h, out),
        Op::Concat => concat_channels(x, x.len() / b, y, y.len() / b, b, out),
        Op::Replicate { c, hw } => replicate_spatial(x, b, c, hw, out),
        Op::Add => add(x, y, out),
        Op::Act(a) => activation_ref(a, x, out),
        _ => unreachable!("compute ops are dispatched by fast() and reference()"),
    }
}

/// Inverse of `pack_weight`: [Cout·k·k, Cin] → PyTorch's [Cin, Cout, k, k].
fn unpack_weight(packed: &[f32], g: &ConvTranspose2dGeom) -> Vec<f32> {
    let rows = g.rows();
    let mut w = vec![0.0; rows * g.cin];
    for ci in 0..g.cin {
        for r in 0..rows {
            w[ci * rows + r] = packed[r * g.cin + ci];
        }
    }
    w
}
