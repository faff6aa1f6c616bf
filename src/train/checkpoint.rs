//! Checkpoints of a GAN run: G and D (state_dict names), their Adam moments, the step, the
//! options, and whatever the caller adds (the data sampler's state), in one safetensors file
//! written atomically (temp file, fsync, rename). Loading one resumes the run exactly.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rayon::ThreadPool;

use super::gan::{GanOptions, GanTrainer};
use super::net::TrainNet;
use crate::error::{Error, Result};
use crate::model::config::ModelConfig;
use crate::model::spec::Network;
use crate::tensor::Tensor;
use crate::weights::{writer, LoadMode, WeightFile, WeightsError};

/// Format tag of checkpoints (weights files use `text2img/1`).
pub const CHECKPOINT_FORMAT: &str = "text2img-checkpoint/1";

fn flat(name: &str, v: &[f32]) -> (String, Tensor) {
    (name.to_string(), Tensor::from_f32(&[v.len()], v.to_vec()))
}

/// Writes `t`'s whole state (plus `extra` metadata) to `path` atomically.
pub fn save_gan(path: &Path, t: &GanTrainer, extra: &BTreeMap<String, String>) -> Result<()> {
    let mut tensors = t.g.tensors();
    tensors.extend(t.d.tensors());
    tensors.push(flat("optim.generator.m", &t.g_adam.m));
    tensors.push(flat("optim.generator.v", &t.g_adam.v));
    tensors.push(flat("optim.discriminator.m", &t.d_adam.m));
    tensors.push(flat("optim.discriminator.v", &t.d_adam.v));
    let mut meta = extra.clone();
    meta.insert("format".into(), CHECKPOINT_FORMAT.into());
    meta.insert("kind".into(), "gan".into());
    meta.insert("config".into(), t.config.to_json());
    meta.insert("options".into(), serde_json::to_string(&t.options).unwrap_or_default());
    meta.insert("step".into(), t.step.to_string());
    writer::write(path, &tensors, &meta)
}

/// Reads a GAN checkpoint: the trainer at its saved step and the file's metadata.
pub fn load_gan(path: &Path, pool: Arc<ThreadPool>) -> Result<(GanTrainer, BTreeMap<String, String>)> {
    let file = WeightFile::open(path, LoadMode::Read)?;
    let bad = |m: String| file.error(WeightsError::Metadata(m));
    if file.metadata("format") != Some(CHECKPOINT_FORMAT) || file.metadata("kind") != Some("gan") {
        return Err(bad(format!("not a GAN checkpoint (format '{}')", file.metadata("format").unwrap_or("none"))));
    }
    let config = ModelConfig::from_json(file.metadata("config").unwrap_or_default()).map_err(|e| bad(e.to_string()))?;
    let options: GanOptions =
        serde_json::from_str(file.metadata("options").unwrap_or_default()).map_err(|e| bad(format!("options: {e}")))?;
    let step: u64 = file.metadata("step").and_then(|s| s.parse().ok()).ok_or_else(|| bad("no step".into()))?;
    let find = |n: &str| file.f32_data(n).ok().map(|c| c.into_owned());
    let mut g = TrainNet::init(&config, Network::Generator, 0)?;
    let mut d = TrainNet::init(&config, Network::Discriminator, 0)?;
    g.load_tensors(&find).map_err(|e| bad(e.to_string()))?;
    d.load_tensors(&find).map_err(|e| bad(e.to_string()))?;
    let mut t = GanTrainer::from_nets(&config, options, g, d, pool)?;
    let moment = |n: &str, len: usize| {
        find(n)
            .filter(|v| v.len() == len)
            .ok_or_else(|| Error::Input(format!("{}: checkpoint lacks '{n}'", path.display())))
    };
    t.g_adam.m = moment("optim.generator.m", t.g_adam.m.len())?;
    t.g_adam.v = moment("optim.generator.v", t.g_adam.v.len())?;
    t.d_adam.m = moment("optim.discriminator.m", t.d_adam.m.len())?;
    t.d_adam.v = moment("optim.discriminator.v", t.d_adam.v.len())?;
    t.step = step;
    Ok((t, file.header().metadata.clone()))
}
