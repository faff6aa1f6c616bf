//! Training graphs: the same networks (model::net) laid out unfused — every convolution,
//! batch norm, residual add and activation is its own node, so each has a backward — with the
//! trainable parameters as slots of one flat store (llm.c style) and the batch-norm running
//! statistics as slots of a buffer store.

use crate::error::{Error, Result};
use crate::graph::ValueId;
use crate::model::net::NetBuilder;
use crate::ops::conv2d::Conv2dGeom;
use crate::ops::conv_transpose2d::ConvTranspose2dGeom;
use crate::ops::pool::maxpool1d_len;
use crate::ops::Activation;

/// Index of a parameter slot.
pub type SlotId = usize;

/// A named range of a flat store.
#[derive(Clone, Debug)]
pub struct Slot {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
    pub len: usize,
}

/// Initialisation rule of a parameter (Reed's code: convs N(0, 0.02); BN γ N(1, 0.02), β 0;
/// linears and the encoder U(±1/√fan_in) as Torch's default).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    Normal { mean: f32, std: f32 },
    Uniform { bound: f32 },
    Zero,
}

/// Training ops (unfused).
#[derive(Clone, Debug)]
pub enum TOp {
    Linear {
        w: SlotId,
        b: SlotId,
        in_f: usize,
        out_f: usize,
    },
    Conv2d {
        w: SlotId,
        geom: Conv2dGeom,
    },
    ConvTranspose2d {
        w: SlotId,
        geom: ConvTranspose2dGeom,
    },
    Conv1d {
        w: SlotId,
        b: SlotId,
        cin: usize,
        t: usize,
        cout: usize,
        k: usize,
    },
    /// Batch norm over [C, S]; `mean` and `var` are buffer slots (running statistics).
    BatchNorm {
        gamma: SlotId,
        beta: SlotId,
        mean: SlotId,
        var: SlotId,
        channels: usize,
    },
    Act(Activation),
    Add,
    Concat,
    Replicate {
        c: usize,
        hw: usize,
    },
    MaxPool1d {
        channels: usize,
        t: usize,
        k: usize,
        s: usize,
    },
    Rnn {
        gru: bool,
        w_ih: SlotId,
        b_ih: SlotId,
        w_hh: SlotId,
        b_hh: SlotId,
        cin: usize,
        t: usize,
        hidden: usize,
    },
    MeanTime {
        t: usize,
        h: usize,
    },
}

/// A training node.
#[derive(Clone, Debug)]
pub struct TNode {
    pub name: String,
    pub op: TOp,
    pub inputs: Vec<ValueId>,
    pub output: ValueId,
}

/// A built training graph.
#[derive(Clone, Debug, Default)]
pub struct TrainGraph {
    pub shapes: Vec<Vec<usize>>,
    pub nodes: Vec<TNode>,
    pub params: Vec<Slot>,
    pub inits: Vec<Init>,
    pub buffers: Vec<Slot>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    pub param_len: usize,
    pub buffer_len: usize,
}

impl TrainGraph {
    /// Elements per sample of a value.
    pub fn len(&self, v: ValueId) -> usize {
        self.shapes[v].iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The slot of a parameter by name.
    pub fn param(&self, name: &str) -> Option<&Slot> {
        self.params.iter().find(|s| s.name == name)
    }
}

/// Lays a network out unfused (implements the shared layer vocabulary).
#[derive(Default)]
pub struct TrainBuilder {
    g: TrainGraph,
    smooth: bool,
}

impl TrainBuilder {
    pub fn new() -> TrainBuilder {
        TrainBuilder::default()
    }

    /// Replaces ReLU and LeakyReLU by the smooth `tanh` — for gradient checks
    /// only, where kinks make finite differences meaningless.
    #[doc(hidden)]
    pub fn smooth_activations(mut self) -> TrainBuilder {
        self.smooth = true;
        self
    }

    pub fn finish(mut self, outputs: &[ValueId]) -> TrainGraph {
        self.g.outputs = outputs.to_vec();
        self.g
    }

    fn value(&mut self, shape: Vec<usize>) -> ValueId {
        self.g.shapes.push(shape);
        self.g.shapes.len() - 1
    }

    fn param(&mut self, name: &str, shape: &[usize], init: Init) -> SlotId {
        let len = shape.iter().product();
        self.g.params.push(Slot { name: name.into(), shape: shape.to_vec(), offset: self.g.param_len, len });
        self.g.inits.push(init);
        self.g.param_len += len;
        self.g.params.len() - 1
    }

    fn buffer(&mut self, name: &str, c: usize) -> SlotId {
        self.g.buffers.push(Slot { name: name.into(), shape: vec![c], offset: self.g.buffer_len, len: c });
        self.g.buffer_len += c;
        self.g.buffers.len() - 1
    }

    fn node(&mut self, name: &str, op: TOp, inputs: &[ValueId], shape: Vec<usize>) -> ValueId {
        let output = self.value(shape);
        self.g.nodes.push(TNode { name: name.into(), op, inputs: inputs.to_vec(), output });
        output
    }

    fn check(&self, name: &str, x: ValueId, n: usize) -> Result<()> {
        if self.g.len(x) != n {
            return Err(Error::Shape(format!("{name}: input has {} elements per sample, expected {n}", self.g.len(x))));
        }
        Ok(())
    }

    /// Batch norm `bn` over x [C, ...] (γ, β trainable; running statistics as buffers).
    fn batch_norm(&mut self, bn: &str, x: ValueId, channels: usize) -> ValueId {
        let gamma = self.param(&format!("{bn}.weight"), &[channels], Init::Normal { mean: 1.0, std: 0.02 });
        let beta = self.param(&format!("{bn}.bias"), &[channels], Init::Zero);
        let mean = self.buffer(&format!("{bn}.running_mean"), channels);
        let var = self.buffer(&format!("{bn}.running_var"), channels);
        let shape = self.g.shapes[x].clone();
        self.node(bn, TOp::BatchNorm { gamma, beta, mean, var, channels }, &[x], shape)
    }

    fn act(&mut self, name: &str, x: ValueId, act: Activation) -> ValueId {
        if act == Activation::None {
            return x;
        }
        let act = match act {
            Activation::Relu | Activation::LeakyRelu(_) if self.smooth => Activation::Tanh,
            a => a,
        };
        let shape = self.g.shapes[x].clone();
        self.node(&format!("{name}.act"), TOp::Act(act), &[x], shape)
    }
}

/// Torch's default bound for a layer with `fan_in` inputs.
fn torch_uniform(fan_in: usize) -> Init {
    Init::Uniform { bound: 1.0 / (fan_in as f32).sqrt() }
}

const CONV_INIT: Init = Init::Normal { mean: 0.0, std: 0.02 };

impl NetBuilder for TrainBuilder {
    fn input(&mut self, shape: &[usize]) -> ValueId {
        let v = self.value(shape.to_vec());
        self.g.inputs.push(v);
        v
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
        let name = w.trim_end_matches(".weight");
        self.check(name, x, geom.in_len())?;
        let (ho, wo) = geom.out_hw().ok_or_else(|| Error::Shape(format!("{name}: kernel does not fit")))?;
        let wid = self.param(w, &[geom.cout, geom.cin, geom.kh, geom.kw], CONV_INIT);
        let mut y = self.node(name, TOp::Conv2d { w: wid, geom }, &[x], vec![geom.cout, ho, wo]);
        if let Some(bn) = bn {
            y = self.batch_norm(bn, y, geom.cout);
        }
        if let Some(r) = residual {
            self.check(name, r, geom.out_len())?;
            let shape = self.g.shapes[y].clone();
            y = self.node(&format!("{name}.add"), TOp::Add, &[y, r], shape);
        }
        Ok(self.act(name, y, act))
    }

    fn deconv(
        &mut self,
        x: ValueId,
        w: &str,
        bn: Option<&str>,
        geom: ConvTranspose2dGeom,
        act: Activation,
    ) -> Result<ValueId> {
        let name = w.trim_end_matches(".weight");
        self.check(name, x, geom.in_len())?;
        let (ho, wo) = geom.out_hw().ok_or_else(|| Error::Shape(format!("{name}: bad geometry")))?;
        let wid = self.param(w, &[geom.cin, geom.cout, geom.k, geom.k], CONV_INIT);
        let mut y = self.node(name, TOp::ConvTranspose2d { w: wid, geom }, &[x], vec![geom.cout, ho, wo]);
        if let Some(bn) = bn {
            y = self.batch_norm(bn, y, geom.cout);
        }
        Ok(self.act(name, y, act))
    }

    fn linear(
        &mut self,
        x: ValueId,
        prefix: &str,
        bn: Option<&str>,
        (in_f, out_f): (usize, usize),
        act: Activation,
    ) -> Result<ValueId> {
        self.check(prefix, x, in_f)?;
        let w = self.param(&format!("{prefix}.weight"), &[out_f, in_f], torch_uniform(in_f));
        let b = self.param(&format!("{prefix}.bias"), &[out_f], torch_uniform(in_f));
        let mut y = self.node(prefix, TOp::Linear { w, b, in_f, out_f }, &[x], vec![out_f]);
        if let Some(bn) = bn {
            y = self.batch_norm(bn, y, out_f);
        }
        Ok(self.act(prefix, y, act))
    }

    fn conv1d(
        &mut self,
        x: ValueId,
        prefix: &str,
        (cin, t, cout, k): (usize, usize, usize, usize),
        act: Activation,
    ) -> Result<ValueId> {
        self.check(prefix, x, cin * t)?;
        if k == 0 || k > t {
            return Err(Error::Shape(format!("{prefix}: kernel {k} does not fit {t} steps")));
        }
        let w = self.param(&format!("{prefix}.weight"), &[cout, cin, k], torch_uniform(cin * k));
        let b = self.param(&format!("{prefix}.bias"), &[cout], torch_uniform(cin * k));
        let y = self.node(prefix, TOp::Conv1d { w, b, cin, t, cout, k }, &[x], vec![cout, t + 1 - k]);
        Ok(self.act(prefix, y, act))
    }

    fn maxpool1d(&mut self, name: &str, x: ValueId, channels: usize, t: usize, k: usize, s: usize) -> Result<ValueId> {
        self.check(name, x, channels * t)?;
        let to = maxpool1d_len(t, k, s)
            .filter(|_| k > 0 && s > 0)
            .ok_or_else(|| Error::Shape(format!("{name}: window does not fit")))?;
        Ok(self.node(name, TOp::MaxPool1d { channels, t, k, s }, &[x], vec![channels, to]))
    }

    fn rnn(&mut self, x: ValueId, prefix: &str, gru: bool, cin: usize, t: usize, hidden: usize) -> Result<ValueId> {
        self.check(prefix, x, cin * t)?;
        let g = if gru { 3 } else { 1 };
        let init = torch_uniform(hidden);
        let w_ih = self.param(&format!("{prefix}.weight_ih"), &[g * hidden, cin], init);
        let b_ih = self.param(&format!("{prefix}.bias_ih"), &[g * hidden], init);
        let w_hh = self.param(&format!("{prefix}.weight_hh"), &[g * hidden, hidden], init);
        let b_hh = self.param(&format!("{prefix}.bias_hh"), &[g * hidden], init);
        let op = TOp::Rnn { gru, w_ih, b_ih, w_hh, b_hh, cin, t, hidden };
        Ok(self.node(prefix, op, &[x], vec![t, hidden]))
    }

    fn mean_time(&mut self, name: &str, x: ValueId, t: usize, h: usize) -> Result<ValueId> {
        self.check(name, x, t * h)?;
        Ok(self.node(name, TOp::MeanTime { t, h }, &[x], vec![h]))
    }

    fn concat(&mut self, name: &str, a: ValueId, b: ValueId) -> Result<ValueId> {
        let (sa, sb) = (self.g.shapes[a].clone(), self.g.shapes[b].clone());
        if sa.len() != sb.len() || sa[1..] != sb[1..] {
            return Err(Error::Shape(format!("{name}: cannot concat {sa:?} and {sb:?}")));
        }
        let mut s = sa;
        s[0] += sb[0];
        Ok(self.node(name, TOp::Concat, &[a, b], s))
    }

    fn replicate(&mut self, name: &str, x: ValueId, c: usize, hw: usize) -> Result<ValueId> {
        self.check(name, x, c)?;
        let side = (hw as f64).sqrt() as usize;
        if side * side != hw {
            return Err(Error::Shape(format!("{name}: grid {hw} is not square")));
        }
        Ok(self.node(name, TOp::Replicate { c, hw }, &[x], vec![c, side, side]))
    }

    fn shape(&self, v: ValueId) -> &[usize] {
        &self.g.shapes[v]
    }
}
