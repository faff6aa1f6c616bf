//! Graph construction: values with per-sample shapes, parameters (mapped or owned), and nodes
//! whose shapes are checked as they are added.

use std::ops::Range;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::ops::conv2d::Conv2dGeom;
use crate::ops::conv_transpose2d::ConvTranspose2dGeom;
use crate::ops::conv_winograd::WinogradConv;
use crate::ops::deconv_winograd::WinogradDeconv;
use crate::ops::gemm::PackedA;
use crate::ops::pool::maxpool1d_len;
use crate::ops::tap_conv::TapWeights;
use crate::ops::Activation;
use crate::weights::WeightFile;

/// Index of a value (a per-sample tensor living in the arena).
pub type ValueId = usize;
/// Index of a parameter.
pub type ParamId = usize;

/// Where a parameter's f32 data lives.
pub enum ParamData {
    /// Computed at load (folded or converted).
    Owned(Vec<f32>),
    /// A GEMM's left operand, packed once at load into the fast path's panel order.
    Packed(PackedA),
    /// In place in a mapped weights file (f32, aligned: checked when created).
    Mapped { file: Arc<WeightFile>, range: Range<usize> },
    /// A transposed convolution's kernel in phase + Winograd form (CPU fast path).
    Winograd(WinogradDeconv),
    /// A 3×3 convolution's kernel in Winograd form (CPU fast path).
    WinogradConv(WinogradConv),
    /// A batch-1 convolution's kernel in tap form (CPU fast path, `ops::tap_conv`).
    Taps(TapWeights),
}

/// A named parameter tensor.
pub struct Param {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: ParamData,
}

impl Param {
    /// The elements of a plain (unpacked) parameter. Packed weights are only read through
    /// `packed` (fast path) or `unpacked` (reference); asking otherwise is a programmer's bug.
    pub fn data(&self) -> &[f32] {
        match &self.data {
            ParamData::Owned(v) => v,
            // Alignment and length were checked by `WeightFile::zero_copy_range`.
            ParamData::Mapped { file, range } => bytemuck::cast_slice(&file.bytes()[range.clone()]),
            ParamData::Packed(_) | ParamData::Winograd(_) | ParamData::WinogradConv(_) | ParamData::Taps(_) => {
                panic!("parameter '{}' is packed", self.name)
            }
        }
    }

    /// The packed form of a GEMM weight (programmer's bug if it was not packed at build).
    pub fn packed(&self) -> &PackedA {
        match &self.data {
            ParamData::Packed(p) => p,
            _ => panic!("parameter '{}' is not packed", self.name),
        }
    }

    /// The elements in their logical row-major order, whatever the storage.
    pub fn unpacked(&self) -> std::borrow::Cow<'_, [f32]> {
        match &self.data {
            ParamData::Packed(p) => std::borrow::Cow::Owned(p.unpack()),
            ParamData::Winograd(w) => std::borrow::Cow::Owned(w.unpack()),
            ParamData::WinogradConv(w) => std::borrow::Cow::Owned(w.unpack()),
            ParamData::Taps(w) => std::borrow::Cow::Owned(w.unpack()),
            _ => std::borrow::Cow::Borrowed(self.data()),
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        match &self.data {
            ParamData::Packed(p) => p.rows() * p.cols(),
            ParamData::Winograd(w) => w.numel(),
            ParamData::WinogradConv(w) => w.numel(),
            ParamData::Taps(w) => w.numel(),
            _ => self.data().len(),
        }
    }

    pub fn is_mapped(&self) -> bool {
        matches!(self.data, ParamData::Mapped { .. })
    }
}

/// The closed set of ops a graph can hold.
#[derive(Clone, Debug)]
pub enum Op {
    /// y = act(x·Wᵀ·scale + shift).
    Linear { w: ParamId, scale: Option<ParamId>, shift: Option<ParamId>, in_f: usize, out_f: usize, act: Activation },
    /// Conv with fused epilogue; with `residual` the second input is added before `act`.
    Conv2d {
        w: ParamId,
        scale: Option<ParamId>,
        shift: Option<ParamId>,
        geom: Conv2dGeom,
        act: Activation,
        residual: bool,
    },
    /// Transposed conv; `w` is packed [Cout·k·k, Cin].
    ConvTranspose2d {
        w: ParamId,
        scale: Option<ParamId>,
        shift: Option<ParamId>,
        geom: ConvTranspose2dGeom,
        act: Activation,
    },
    /// Conv1d [C, T] → [Cout, T−k+1], bias as shift.
    Conv1d { w: ParamId, shift: Option<ParamId>, cin: usize, t: usize, cout: usize, k: usize, act: Activation },
    /// Max-pool over time.
    MaxPool1d { channels: usize, t: usize, k: usize, s: usize },
    /// Recurrence [C, T] → hidden states [T, H]. W_hh is split: `w_hh` holds the rows that
    /// multiply h (GRU: r, z; RNN: all), `w_hh_n` the GRU's candidate rows.
    Rnn {
        gru: bool,
        w_ih: ParamId,
        b_ih: ParamId,
        w_hh: ParamId,
        w_hh_n: Option<ParamId>,
        b_hh: ParamId,
        cin: usize,
        t: usize,
        hidden: usize,
    },
    /// Mean over time [T, H] → [H].
    MeanTime { t: usize, h: usize },
    /// Channel concat of two inputs.
    Concat,
    /// [C] → [C, H, W].
    Replicate { c: usize, hw: usize },
    /// Elementwise sum of two inputs.
    Add,
    /// Elementwise activation.
    Act(Activation),
}

impl Op {
    /// Multiply-accumulates per sample (0 for data movement).
    pub fn macs(&self) -> usize {
        match self {
            Op::Linear { in_f, out_f, .. } => in_f * out_f,
            Op::Conv2d { geom, .. } => geom.macs(),
            Op::ConvTranspose2d { geom, .. } => geom.macs(),
            Op::Conv1d { cin, t, cout, k, .. } => cin * k * cout * (t + 1 - k),
            Op::Rnn { gru, cin, t, hidden, .. } => {
                let g = if *gru { 3 } else { 1 };
                t * g * hidden * (cin + hidden)
            }
            _ => 0,
        }
    }

    /// Largest inner (k) dimension of the GEMMs this op runs (sizes per-thread GEMM buffers).
    pub fn gemm_inner(&self) -> usize {
        match self {
            Op::Linear { in_f, .. } => *in_f,
            Op::Conv2d { geom, .. } => geom.kdim(),
            Op::ConvTranspose2d { geom, .. } => geom.cin,
            Op::Conv1d { cin, k, .. } => cin * k,
            Op::Rnn { cin, hidden, .. } => (*cin).max(*hidden),
            _ => 0,
        }
    }

    /// Short op name (for profiles and errors).
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Linear { .. } => "linear",
            Op::Conv2d { .. } => "conv2d",
            Op::ConvTranspose2d { .. } => "conv_transpose2d",
            Op::Conv1d { .. } => "conv1d",
            Op::MaxPool1d { .. } => "max_pool1d",
            Op::Rnn { gru: true, .. } => "gru",
            Op::Rnn { gru: false, .. } => "rnn_relu",
            Op::MeanTime { .. } => "mean_time",
            Op::Concat => "concat",
            Op::Replicate { .. } => "replicate",
            Op::Add => "add",
            Op::Act(_) => "activation",
        }
    }
}

/// A node: an op, its inputs, its output value and a name.
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub output: ValueId,
}

/// A value's per-sample shape.
#[derive(Clone, Debug)]
pub(crate) struct Value {
    pub shape: Vec<usize>,
}

impl Value {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A built graph.
pub struct Graph {
    pub(crate) values: Vec<Value>,
    pub nodes: Vec<Node>,
    pub params: Vec<Param>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
}

impl Graph {
    /// Per-sample shape of a value.
    pub fn shape(&self, v: ValueId) -> &[usize] {
        &self.values[v].shape
    }

    /// Total parameter elements.
    pub fn param_count(&self) -> usize {
        self.params.iter().map(Param::numel).sum()
    }

    /// Multiply-accumulates per sample.
    pub fn macs(&self) -> usize {
        self.nodes.iter().map(|n| n.op.macs()).sum()
    }
}

/// Records values, params and nodes, checking shapes as it goes.
#[derive(Default)]
pub struct GraphBuilder {
    values: Vec<Value>,
    nodes: Vec<Node>,
    params: Vec<Param>,
    inputs: Vec<ValueId>,
}

fn shape_err(node: &str, msg: String) -> Error {
    Error::Shape(format!("{node}: {msg}"))
}

impl GraphBuilder {
    pub fn new() -> GraphBuilder {
        GraphBuilder::default()
    }

    /// A graph input with a per-sample shape.
    pub fn input(&mut self, shape: &[usize]) -> ValueId {
        let v = self.value(shape.to_vec());
        self.inputs.push(v);
        v
    }

    fn value(&mut self, shape: Vec<usize>) -> ValueId {
        self.values.push(Value { shape });
        self.values.len() - 1
    }

    /// Adds a parameter; its length must match its shape.
    pub fn param(&mut self, name: &str, shape: &[usize], data: ParamData) -> Result<ParamId> {
        let p = Param { name: name.to_string(), shape: shape.to_vec(), data };
        if p.numel() != shape.iter().product::<usize>() {
            return Err(shape_err(
                name,
                format!("has {} elements, shape {shape:?} needs {}", p.numel(), shape.iter().product::<usize>()),
            ));
        }
        self.params.push(p);
        Ok(self.params.len() - 1)
    }

    /// An owned parameter.
    pub fn owned(&mut self, name: &str, shape: &[usize], data: Vec<f32>) -> Result<ParamId> {
        self.param(name, shape, ParamData::Owned(data))
    }

    /// Per-sample shape of a value added so far.
    pub fn shape(&self, v: ValueId) -> &[usize] {
        &self.values[v].shape
    }

    /// A transposed convolution's kernel in phase + Winograd form.
    pub fn winograd(&mut self, name: &str, shape: &[usize], data: WinogradDeconv) -> Result<ParamId> {
        self.param(name, shape, ParamData::Winograd(data))
    }

    /// A 3×3 convolution's kernel in Winograd form.
    pub fn winograd_conv(&mut self, name: &str, shape: &[usize], data: WinogradConv) -> Result<ParamId> {
        self.param(name, shape, ParamData::WinogradConv(data))
    }

    /// A batch-1 convolution's kernel in tap form.
    pub fn taps(&mut self, name: &str, shape: &[usize], data: TapWeights) -> Result<ParamId> {
        self.param(name, shape, ParamData::Taps(data))
    }

    /// A GEMM weight packed at load.
    pub fn packed(&mut self, name: &str, shape: &[usize], data: PackedA) -> Result<ParamId> {
        self.param(name, shape, ParamData::Packed(data))
    }

    fn len(&self, v: ValueId) -> usize {
        self.values[v].len()
    }

    fn check_param(&self, node: &str, p: Option<ParamId>, n: usize) -> Result<()> {
        match p {
            Some(id) if self.params[id].numel() != n => Err(shape_err(
                node,
                format!("parameter '{}' has {} elements, expected {n}", self.params[id].name, self.params[id].numel()),
            )),
            _ => Ok(()),
        }
    }

    fn check_input(&self, node: &str, x: ValueId, n: usize) -> Result<()> {
        if self.len(x) != n {
            return Err(shape_err(node, format!("input has {} elements per sample, expected {n}", self.len(x))));
        }
        Ok(())
    }

    /// Adds a node after checking its input sizes; returns its output.
    pub fn node(&mut self, name: &str, op: Op, inputs: &[ValueId]) -> Result<ValueId> {
        let shape = self.infer(name, &op, inputs)?;
        let output = self.value(shape);
        self.nodes.push(Node { name: name.to_string(), op, inputs: inputs.to_vec(), output });
        Ok(output)
    }

    /// Shape inference and checks for one node.
    fn infer(&self, name: &str, op: &Op, inputs: &[ValueId]) -> Result<Vec<usize>> {
        let arity = match op {
            Op::Concat | Op::Add => 2,
            Op::Conv2d { residual: true, .. } => 2,
            _ => 1,
        };
        if inputs.len() != arity {
            return Err(shape_err(name, format!("takes {arity} inputs, got {}", inputs.len())));
        }
        let x = inputs[0];
        Ok(match *op {
            Op::Linear { w, scale, shift, in_f, out_f, .. } => {
                self.check_input(name, x, in_f)?;
                self.check_param(name, Some(w), in_f * out_f)?;
                self.check_param(name, scale, out_f)?;
                self.check_param(name, shift, out_f)?;
                vec![out_f]
            }
            Op::Conv2d { w, scale, shift, geom: g, residual, .. } => {
                let (ho, wo) = g
                    .out_hw()
                    .filter(|_| g.stride > 0)
                    .ok_or_else(|| shape_err(name, format!("kernel does not fit {g:?}")))?;
                self.check_input(name, x, g.in_len())?;
                self.check_param(name, Some(w), g.cout * g.kdim())?;
                self.check_param(name, scale, g.cout)?;
                self.check_param(name, shift, g.cout)?;
                if residual {
                    self.check_input(name, inputs[1], g.cout * ho * wo)?;
                }
                vec![g.cout, ho, wo]
            }
            Op::ConvTranspose2d { w, scale, shift, geom: g, .. } => {
                let (ho, wo) = g
                    .out_hw()
                    .filter(|_| g.stride > 0)
                    .ok_or_else(|| shape_err(name, format!("bad geometry {g:?}")))?;
                self.check_input(name, x, g.in_len())?;
                self.check_param(name, Some(w), g.rows() * g.cin)?;
                self.check_param(name, scale, g.cout)?;
                self.check_param(name, shift, g.cout)?;
                vec![g.cout, ho, wo]
            }
            Op::Conv1d { w, shift, cin, t, cout, k, .. } => {
                if k == 0 || k > t {
                    return Err(shape_err(name, format!("kernel {k} does not fit {t} steps")));
                }
                self.check_input(name, x, cin * t)?;
                self.check_param(name, Some(w), cout * cin * k)?;
                self.check_param(name, shift, cout)?;
                vec![cout, t + 1 - k]
            }
            Op::MaxPool1d { channels, t, k, s } => {
                self.check_input(name, x, channels * t)?;
                let to = maxpool1d_len(t, k, s)
                    .filter(|_| k > 0 && s > 0)
                    .ok_or_else(|| shape_err(name, format!("window {k}/{s} does not fit {t} steps")))?;
                vec![channels, to]
            }
            Op::Rnn { gru, w_ih, b_ih, w_hh, w_hh_n, b_hh, cin, t, hidden } => {
                let g = if gru { 3 } else { 1 };
                self.check_input(name, x, cin * t)?;
                let (rows, n_rows) = if gru { (2 * hidden, hidden) } else { (hidden, 0) };
                if gru != w_hh_n.is_some() {
                    return Err(shape_err(name, "a GRU needs candidate rows w_hh_n, a ReLU RNN none".into()));
                }
                self.check_param(name, Some(w_ih), g * hidden * cin)?;
                self.check_param(name, Some(b_ih), g * hidden)?;
                self.check_param(name, Some(w_hh), rows * hidden)?;
                self.check_param(name, w_hh_n, n_rows * hidden)?;
                self.check_param(name, Some(b_hh), g * hidden)?;
                vec![t, hidden]
            }
            Op::MeanTime { t, h } => {
                self.check_input(name, x, t * h)?;
                vec![h]
            }
            Op::Concat => {
                let (a, b) = (&self.values[x].shape, &self.values[inputs[1]].shape);
                if a.len() != b.len() || a[1..] != b[1..] {
                    return Err(shape_err(name, format!("cannot concat {a:?} and {b:?} on channels")));
                }
                let mut s = a.clone();
                s[0] += b[0];
                s
            }
            Op::Replicate { c, hw } => {
                self.check_input(name, x, c)?;
                let side = (hw as f64).sqrt() as usize;
                if side * side != hw {
                    return Err(shape_err(name, format!("replicate grid {hw} is not square")));
                }
                vec![c, side, side]
            }
            Op::Add => {
                if self.values[x].shape != self.values[inputs[1]].shape {
                    return Err(shape_err(name, "add of different shapes".into()));
                }
                self.values[x].shape.clone()
            }
            Op::Act(_) => self.values[x].shape.clone(),
        })
    }

    /// Finishes the graph with the given outputs.
    pub fn finish(self, outputs: &[ValueId]) -> Graph {
        Graph {
            values: self.values,
            nodes: self.nodes,
            params: self.params,
            inputs: self.inputs,
            outputs: outputs.to_vec(),
        }
    }
}
