//! A network being trained: its training graph, parameters, gradients and running statistics,
//! with initialisation (Reed's rules, from a seed), loading from and saving to state_dict-named
//! tensors.

use std::sync::Arc;

use super::graph::{Init, TrainBuilder, TrainGraph};
use super::session::ParamStore;
use crate::error::{Error, Result};
use crate::model::config::ModelConfig;
use crate::model::discriminator::{discriminator, discriminator_with_classifier};
use crate::model::encoder::encoder;
use crate::model::generator::generator;
use crate::model::spec::Network;
use crate::model::synthetic::{fnv1a64, unit_hash};
use crate::model::WeightSet;
use crate::rng::normal_noise;
use crate::tensor::Tensor;

/// One network's trainable state.
pub struct TrainNet {
    pub graph: Arc<TrainGraph>,
    pub params: ParamStore,
    pub grads: Vec<f32>,
    pub buffers: Vec<f32>,
}

/// Lays `net` out for training.
pub fn train_graph(cfg: &ModelConfig, net: Network) -> Result<TrainGraph> {
    build(TrainBuilder::new(), cfg, net)
}

/// Lays D out for training with an auxiliary classifier of `classes` logits as output 1 (none
/// when 0: then it is `train_graph`'s D), reading max-pooled features when `pooled`.
pub fn discriminator_graph(cfg: &ModelConfig, classes: usize, pooled: bool) -> Result<TrainGraph> {
    classified(TrainBuilder::new(), cfg, classes, pooled)
}

/// `discriminator_graph` with tanh in place of every ReLU (gradient checks only).
#[doc(hidden)]
pub fn smooth_discriminator_graph(cfg: &ModelConfig, classes: usize, pooled: bool) -> Result<TrainGraph> {
    classified(TrainBuilder::new().smooth_activations(), cfg, classes, pooled)
}

fn classified(mut b: TrainBuilder, cfg: &ModelConfig, classes: usize, pooled: bool) -> Result<TrainGraph> {
    let (_, logit, classifier) = discriminator_with_classifier(&mut b, cfg, classes, pooled)?;
    let outputs: Vec<_> = std::iter::once(logit).chain(classifier).collect();
    Ok(b.finish(&outputs))
}

/// Lays `net` out with tanh in place of every ReLU (gradient checks only).
#[doc(hidden)]
pub fn smooth_train_graph(cfg: &ModelConfig, net: Network) -> Result<TrainGraph> {
    build(TrainBuilder::new().smooth_activations(), cfg, net)
}

fn build(mut b: TrainBuilder, cfg: &ModelConfig, net: Network) -> Result<TrainGraph> {
    let out = match net {
        Network::Encoder => encoder(&mut b, cfg)?.1,
        Network::Generator => generator(&mut b, cfg)?.1,
        Network::Discriminator => discriminator(&mut b, cfg)?.1,
    };
    Ok(b.finish(&[out]))
}

impl TrainNet {
    /// A freshly initialised network (deterministic in `seed`).
    pub fn init(cfg: &ModelConfig, network: Network, seed: u64) -> Result<TrainNet> {
        TrainNet::init_graph(train_graph(cfg, network)?, seed)
    }

    /// Initialises the parameters of a given training graph.
    pub fn init_graph(graph: TrainGraph, seed: u64) -> Result<TrainNet> {
        let mut data = vec![0.0; graph.param_len];
        for (slot, init) in graph.params.iter().zip(&graph.inits) {
            let dst = &mut data[slot.offset..slot.offset + slot.len];
            let key = seed ^ fnv1a64(slot.name.as_bytes());
            match *init {
                Init::Zero => dst.fill(0.0),
                Init::Normal { mean, std } => {
                    normal_noise(key, 0, dst);
                    dst.iter_mut().for_each(|v| *v = mean + std * *v);
                }
                Init::Uniform { bound } => {
                    dst.iter_mut().enumerate().for_each(|(i, v)| *v = bound * unit_hash(key, i as u64) as f32);
                }
            }
        }
        let mut buffers = vec![0.0; graph.buffer_len];
        for slot in graph.buffers.iter().filter(|s| s.name.ends_with("running_var")) {
            buffers[slot.offset..slot.offset + slot.len].fill(1.0);
        }
        Ok(TrainNet {
            grads: vec![0.0; graph.param_len],
            graph: Arc::new(graph),
            params: ParamStore::new(data),
            buffers,
        })
    }

    /// A network initialised from `ws` (which must hold it).
    pub fn from_weights(ws: &WeightSet, network: Network) -> Result<TrainNet> {
        ws.require(network)?;
        let mut net = TrainNet::init(ws.config(), network, 0)?;
        let graph = Arc::clone(&net.graph);
        let data = net.params.data_mut();
        for slot in &graph.params {
            data[slot.offset..slot.offset + slot.len].copy_from_slice(&ws.vec(&slot.name)?);
        }
        for slot in &graph.buffers {
            net.buffers[slot.offset..slot.offset + slot.len].copy_from_slice(&ws.vec(&slot.name)?);
        }
        Ok(net)
    }

    /// Parameters and running statistics as state_dict-named tensors.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        let g = &self.graph;
        let params = g
            .params
            .iter()
            .map(|s| (s.name.clone(), Tensor::from_f32(&s.shape, self.params.data[s.offset..][..s.len].to_vec())));
        let bufs = g
            .buffers
            .iter()
            .map(|s| (s.name.clone(), Tensor::from_f32(&s.shape, self.buffers[s.offset..][..s.len].to_vec())));
        params.chain(bufs).collect()
    }

    /// Copies named tensors (parameters and buffers) back in; every slot must be present.
    pub fn load_tensors(&mut self, find: &dyn Fn(&str) -> Option<Vec<f32>>) -> Result<()> {
        let graph = Arc::clone(&self.graph);
        let missing = |n: &str| Error::Input(format!("checkpoint has no tensor '{n}'"));
        let data = self.params.data_mut();
        for s in &graph.params {
            let v = find(&s.name).filter(|v| v.len() == s.len).ok_or_else(|| missing(&s.name))?;
            data[s.offset..s.offset + s.len].copy_from_slice(&v);
        }
        for s in &graph.buffers {
            let v = find(&s.name).filter(|v| v.len() == s.len).ok_or_else(|| missing(&s.name))?;
            self.buffers[s.offset..s.offset + s.len].copy_from_slice(&v);
        }
        Ok(())
    }

    pub fn zero_grad(&mut self) {
        self.grads.fill(0.0);
    }
}
