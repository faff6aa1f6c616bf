//! Checkpoints: the networks of a run (state_dict names), their optimizer state, the step, the
//! options, and whatever the caller adds (the data sampler's state), in one safetensors file
//! written atomically (temp file, fsync, rename). Loading one resumes the run exactly.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rayon::ThreadPool;
use serde::de::DeserializeOwned;

use super::gan::{GanOptions, GanTrainer};
use super::net::{train_graph, TrainNet};
use super::posterior::{posterior_graph, Posterior};
use super::sje::{image_encoder_graph, SjeOptions, SjeTrainer};
use super::style::{style_graph, StyleOptions, StyleTrainer};
use crate::error::Result;
use crate::model::config::ModelConfig;
use crate::model::spec::Network;
use crate::model::WeightSet;
use crate::tensor::Tensor;
use crate::weights::{writer, LoadMode, WeightFile, WeightsError};

/// Format tag of checkpoints (weights files use `text2img/1`).
pub const CHECKPOINT_FORMAT: &str = "text2img-checkpoint/1";

fn flat(name: &str, v: &[f32]) -> (String, Tensor) {
    (name.to_string(), Tensor::from_f32(&[v.len()], v.to_vec()))
}

/// Writes a checkpoint of `kind` with the given tensors and metadata.
fn write(
    path: &Path,
    kind: &str,
    config: &ModelConfig,
    options: String,
    step: u64,
    tensors: Vec<(String, Tensor)>,
    extra: &BTreeMap<String, String>,
) -> Result<()> {
    let mut meta = extra.clone();
    meta.insert("format".into(), CHECKPOINT_FORMAT.into());
    meta.insert("kind".into(), kind.into());
    meta.insert("config".into(), config.to_json());
    meta.insert("options".into(), options);
    meta.insert("step".into(), step.to_string());
    writer::write(path, &tensors, &meta)
}

/// An opened checkpoint of `kind`: the file, its config, options and step.
struct Opened<O> {
    file: WeightFile,
    config: ModelConfig,
    options: O,
    step: u64,
}

impl<O> Opened<O> {
    fn find(&self, name: &str) -> Option<Vec<f32>> {
        self.file.f32_data(name).ok().map(|c| c.into_owned())
    }

    fn vec(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        self.find(name).filter(|v| v.len() == len).ok_or_else(|| {
            self.file.error(WeightsError::Metadata(format!("checkpoint lacks '{name}' of {len} values")))
        })
    }

    fn net(&self, mut net: TrainNet) -> Result<TrainNet> {
        self.load_into(&mut net)?;
        Ok(net)
    }

    fn load_into(&self, net: &mut TrainNet) -> Result<()> {
        net.load_tensors(&|n| self.find(n)).map_err(|e| self.file.error(WeightsError::Metadata(e.to_string())))
    }

    fn metadata(&self) -> BTreeMap<String, String> {
        self.file.header().metadata.clone()
    }
}

fn open<O: DeserializeOwned>(path: &Path, kind: &str) -> Result<Opened<O>> {
    let file = WeightFile::open(path, LoadMode::Read)?;
    let bad = |m: String| file.error(WeightsError::Metadata(m));
    if file.metadata("format") != Some(CHECKPOINT_FORMAT) || file.metadata("kind") != Some(kind) {
        let found = format!("{} {}", file.metadata("format").unwrap_or("none"), file.metadata("kind").unwrap_or(""));
        return Err(bad(format!("not a {kind} checkpoint (found '{}')", found.trim())));
    }
    let config = ModelConfig::from_json(file.metadata("config").unwrap_or_default()).map_err(|e| bad(e.to_string()))?;
    let options =
        serde_json::from_str(file.metadata("options").unwrap_or_default()).map_err(|e| bad(format!("options: {e}")))?;
    let step = file.metadata("step").and_then(|s| s.parse().ok()).ok_or_else(|| bad("no step".into()))?;
    Ok(Opened { file, config, options, step })
}

/// The checkpoint tensor of the moving average of G's parameters.
const EMA_GENERATOR: &str = "ema.generator";

/// Writes a GAN trainer's whole state (plus `extra` metadata) to `path` atomically.
pub fn save_gan(path: &Path, t: &GanTrainer, extra: &BTreeMap<String, String>) -> Result<()> {
    let mut tensors = t.g.tensors();
    tensors.extend(t.d.tensors());
    tensors.push(flat("optim.generator.m", &t.g_adam.m));
    tensors.push(flat("optim.generator.v", &t.g_adam.v));
    tensors.push(flat("optim.discriminator.m", &t.d_adam.m));
    tensors.push(flat("optim.discriminator.v", &t.d_adam.v));
    if let Some(ema) = &t.g_ema {
        tensors.push(flat(EMA_GENERATOR, ema));
    }
    if let Some(p) = &t.posterior {
        tensors.extend(p.net.tensors());
        tensors.push(flat("optim.posterior.m", &p.adam.m));
        tensors.push(flat("optim.posterior.v", &p.adam.v));
    }
    let options = serde_json::to_string(&t.options).unwrap_or_default();
    write(path, "gan", &t.config, options, t.step, tensors, extra)
}

/// Reads a GAN checkpoint: the trainer at its saved step and the file's metadata.
pub fn load_gan(path: &Path, pool: Arc<ThreadPool>) -> Result<(GanTrainer, BTreeMap<String, String>)> {
    let o: Opened<GanOptions> = open(path, "gan")?;
    let g = o.net(TrainNet::init(&o.config, Network::Generator, 0)?)?;
    let d = o.net(TrainNet::init_graph(o.options.discriminator_graph(&o.config)?, 0)?)?;
    let mut t = GanTrainer::from_nets(&o.config, o.options.clone(), g, d, Arc::clone(&pool))?;
    t.g_adam.m = o.vec("optim.generator.m", t.g_adam.m.len())?;
    t.g_adam.v = o.vec("optim.generator.v", t.g_adam.v.len())?;
    t.d_adam.m = o.vec("optim.discriminator.m", t.d_adam.m.len())?;
    t.d_adam.v = o.vec("optim.discriminator.v", t.d_adam.v.len())?;
    if t.g_ema.is_some() {
        t.g_ema = Some(o.vec(EMA_GENERATOR, t.g.params.data.len())?);
    }
    if o.file.info("optim.posterior.m").is_ok() {
        // E exists once the term was on, also when its weight is 0 now.
        let (nz, b) = (o.config.generator.nz, t.options.batch);
        let net = o.net(TrainNet::init_graph(posterior_graph(nz)?, 0)?)?;
        let mut p = Posterior::from_net(net, &t.g, b, pool);
        p.adam.m = o.vec("optim.posterior.m", p.adam.m.len())?;
        p.adam.v = o.vec("optim.posterior.v", p.adam.v.len())?;
        t.posterior = Some(p);
    }
    t.step = o.step;
    Ok((t, o.metadata()))
}

/// Writes an encoder trainer's whole state.
pub fn save_sje(path: &Path, t: &SjeTrainer, extra: &BTreeMap<String, String>) -> Result<()> {
    let mut tensors = t.text.tensors();
    tensors.extend(t.image.tensors());
    tensors.push(flat("optim.encoder.sq", &t.text_sq));
    tensors.push(flat("optim.image_encoder.sq", &t.image_sq));
    if let Some(h) = &t.heads {
        tensors.extend(h.net.tensors());
        tensors.push(flat("optim.attribute_heads.sq", &h.sq));
    }
    let options = serde_json::to_string(&t.options).unwrap_or_default();
    write(path, "sje", &t.config, options, t.step, tensors, extra)
}

/// Reads an encoder checkpoint.
pub fn load_sje(path: &Path, pool: Arc<ThreadPool>) -> Result<(SjeTrainer, BTreeMap<String, String>)> {
    let o: Opened<SjeOptions> = open(path, "sje")?;
    let text = o.net(TrainNet::init_graph(train_graph(&o.config, Network::Encoder)?, 0)?)?;
    let image = o.net(TrainNet::init_graph(image_encoder_graph(o.config.encoder.embed_dim)?, 0)?)?;
    let mut t = SjeTrainer::from_nets(&o.config, o.options.clone(), text, image, pool)?;
    t.text_sq = o.vec("optim.encoder.sq", t.text_sq.len())?;
    t.image_sq = o.vec("optim.image_encoder.sq", t.image_sq.len())?;
    if let Some(h) = &mut t.heads {
        o.load_into(&mut h.net)?;
        h.sq = o.vec("optim.attribute_heads.sq", h.sq.len())?;
    }
    t.step = o.step;
    Ok((t, o.metadata()))
}

/// Writes one trained network alone (no optimizer state), tagged `format`, in `dtype`, with
/// `meta` added: the image encoder θ beside a text encoder, the eval judge's classifier.
pub fn save_net(
    path: &Path,
    format: &str,
    net: &TrainNet,
    dtype: crate::tensor::DType,
    meta: &BTreeMap<String, String>,
) -> Result<()> {
    let tensors: Vec<(String, Tensor)> = net.tensors().into_iter().map(|(n, t)| (n, t.to_dtype(dtype))).collect();
    let mut meta = meta.clone();
    meta.insert("format".into(), format.into());
    writer::write(path, &tensors, &meta)
}

/// Reads a file written by [`save_net`] into `net` (whose graph names every tensor the file
/// must hold); returns the file's metadata. A file of another format is refused by name.
pub fn load_net(path: &Path, format: &str, net: &mut TrainNet) -> Result<BTreeMap<String, String>> {
    let file = WeightFile::open(path, LoadMode::Read)?;
    if file.metadata("format") != Some(format) {
        let found = file.metadata("format").unwrap_or("none").to_string();
        return Err(file.error(WeightsError::Metadata(format!("not a {format} file (format '{found}')"))));
    }
    net.load_tensors(&|n| file.f32_data(n).ok().map(|c| c.into_owned()))
        .map_err(|e| file.error(WeightsError::Metadata(e.to_string())))?;
    Ok(file.header().metadata.clone())
}

/// Writes a style-encoder trainer's whole state (S, Adam, step, options; G is not copied: the
/// model file is given again on resume).
pub fn save_style(path: &Path, t: &StyleTrainer, extra: &BTreeMap<String, String>) -> Result<()> {
    let mut tensors = t.s.tensors();
    tensors.push(flat("optim.style.m", &t.adam.m));
    tensors.push(flat("optim.style.v", &t.adam.v));
    let options = serde_json::to_string(&t.options).unwrap_or_default();
    write(path, "style", &t.config, options, t.step, tensors, extra)
}

/// Reads a style checkpoint against the model `ws` whose generator it inverts.
pub fn load_style(
    path: &Path,
    ws: &WeightSet,
    pool: Arc<ThreadPool>,
) -> Result<(StyleTrainer, BTreeMap<String, String>)> {
    let o: Opened<StyleOptions> = open(path, "style")?;
    if o.config.generator != ws.config().generator || o.config.encoder != ws.config().encoder {
        return Err(o
            .file
            .error(WeightsError::Metadata("the checkpoint was trained against another model config".into())));
    }
    let s = o.net(TrainNet::init_graph(style_graph(o.config.generator.nz)?, 0)?)?;
    let mut t = StyleTrainer::from_net(ws, o.options.clone(), s, pool)?;
    t.adam.m = o.vec("optim.style.m", t.adam.m.len())?;
    t.adam.v = o.vec("optim.style.v", t.adam.v.len())?;
    t.step = o.step;
    Ok((t, o.metadata()))
}

/// Format tag of a standalone style encoder S.
pub const STYLE_FORMAT: &str = "text2img-style/1";

/// Writes S alone, with the config of the model it inverts.
pub fn save_style_encoder(path: &Path, s: &TrainNet, cfg: &ModelConfig) -> Result<()> {
    let meta = BTreeMap::from([("config".to_string(), cfg.to_json())]);
    save_net(path, STYLE_FORMAT, s, crate::tensor::DType::F32, &meta)
}

/// Reads S for a generator of noise size `nz`.
pub fn load_style_encoder(path: &Path, nz: usize) -> Result<TrainNet> {
    let mut s = TrainNet::init_graph(style_graph(nz)?, 0)?;
    load_net(path, STYLE_FORMAT, &mut s)?;
    Ok(s)
}
