//! Weights for graph building: from a validated file (f32 tensors used in place from the map
//! when aligned) or from memory (synthetic weights, tests). Also the check of a file against a
//! config, which lists every problem at once.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use super::config::ModelConfig;
use super::spec::{specs, Network};
use crate::error::{Error, Result};
use crate::graph::{GraphBuilder, ParamData, ParamId};
use crate::tensor::Tensor;
use crate::weights::{LoadMode, WeightFile, WeightsError};

enum Source {
    File(Arc<WeightFile>),
    Memory(HashMap<String, Tensor>),
}

/// A set of named weights to build graphs from.
pub struct WeightSet {
    source: Source,
    config: ModelConfig,
    networks: Vec<Network>,
}

/// Most problems listed in one mismatch error.
const MAX_PROBLEMS: usize = 24;

impl WeightSet {
    /// Opens a weights file: header, format, config and every tensor checked.
    pub fn open(path: &Path, mode: LoadMode) -> Result<WeightSet> {
        let file = WeightFile::open(path, mode)?;
        file.check_format()?;
        let config_json = file.metadata("config").ok_or_else(|| {
            file.error(WeightsError::Metadata("no 'config' entry: not a text2img weights file".into()))
        })?;
        let config =
            ModelConfig::from_json(config_json).map_err(|e| file.error(WeightsError::Metadata(e.to_string())))?;
        let networks = parse_networks(file.metadata("networks")).map_err(|m| file.error(WeightsError::Metadata(m)))?;
        let present: Vec<(&str, &[usize])> =
            file.header().tensors.iter().map(|t| (t.name.as_str(), t.shape.as_slice())).collect();
        check_tensors(&config, &networks, &present).map_err(|e| file.error(e))?;
        Ok(WeightSet { source: Source::File(Arc::new(file)), config, networks })
    }

    /// Weights held in memory; checked like a file's.
    pub fn from_tensors(
        config: ModelConfig,
        networks: &[Network],
        tensors: Vec<(String, Tensor)>,
    ) -> Result<WeightSet> {
        let present: Vec<(&str, &[usize])> = tensors.iter().map(|(n, t)| (n.as_str(), t.shape())).collect();
        check_tensors(&config, networks, &present)
            .map_err(|e| Error::Weights { path: "(memory)".into(), reason: e })?;
        let map = tensors.into_iter().collect();
        Ok(WeightSet { source: Source::Memory(map), config, networks: networks.to_vec() })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn networks(&self) -> &[Network] {
        &self.networks
    }

    pub fn has(&self, net: Network) -> bool {
        self.networks.contains(&net)
    }

    /// The file behind this set, if any.
    pub fn file(&self) -> Option<&WeightFile> {
        match &self.source {
            Source::File(f) => Some(f),
            Source::Memory(_) => None,
        }
    }

    /// Fails unless the set holds `net`.
    pub fn require(&self, net: Network) -> Result<()> {
        if self.has(net) {
            return Ok(());
        }
        let held: Vec<&str> = self.networks.iter().map(|n| n.name()).collect();
        Err(Error::Input(format!("weights hold [{}] but the {} is needed", held.join(", "), net.name())))
    }

    /// The storage dtype of tensor `name` (None when it is not there).
    pub fn dtype(&self, name: &str) -> Option<crate::tensor::DType> {
        match &self.source {
            Source::File(f) => f.info(name).ok().map(|i| i.dtype),
            Source::Memory(m) => m.get(name).map(Tensor::dtype),
        }
    }

    /// An owned f32 copy of a tensor (to be folded or packed).
    pub fn vec(&self, name: &str) -> Result<Vec<f32>> {
        match &self.source {
            Source::File(f) => {
                let copy = f.f32_data(name)?.into_owned();
                // The copy is what the graph keeps: the map's pages of it are dead weight.
                f.release(f.info(name)?);
                Ok(copy)
            }
            Source::Memory(m) => {
                m.get(name).map(Tensor::to_f32_vec).ok_or_else(|| Error::Config(format!("no tensor '{name}'")))
            }
        }
    }

    /// Adds a tensor to `b` as a parameter, in place from the map when possible.
    pub fn param(&self, b: &mut GraphBuilder, name: &str, shape: &[usize]) -> Result<ParamId> {
        if let Source::File(f) = &self.source {
            if let Some(range) = f.zero_copy_range(name) {
                return b.param(name, shape, ParamData::Mapped { file: Arc::clone(f), range });
            }
        }
        b.owned(name, shape, self.vec(name)?)
    }
}

/// Parses the `networks` metadata (absent: all three, for files written by other tools).
fn parse_networks(meta: Option<&str>) -> std::result::Result<Vec<Network>, String> {
    let Some(s) = meta else {
        return Ok(Network::ALL.to_vec());
    };
    let mut nets = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let n = Network::from_name(part).ok_or_else(|| format!("unknown network '{part}' in 'networks'"))?;
        if !nets.contains(&n) {
            nets.push(n);
        }
    }
    if nets.is_empty() {
        return Err("'networks' lists no network".into());
    }
    Ok(nets)
}

/// Compares present tensors with those `networks` need under `cfg`; lists all problems.
pub fn check_tensors(
    cfg: &ModelConfig,
    networks: &[Network],
    present: &[(&str, &[usize])],
) -> std::result::Result<(), WeightsError> {
    let have: HashMap<&str, &[usize]> = present.iter().copied().collect();
    let mut problems = Vec::new();
    let mut expected = BTreeSet::new();
    for &net in networks {
        for (name, shape) in specs(cfg, net) {
            match have.get(name.as_str()) {
                None => problems.push(format!("missing '{name}' {shape:?}")),
                Some(s) if *s != shape.as_slice() => {
                    problems.push(format!("'{name}' has shape {s:?}, config needs {shape:?}"))
                }
                Some(_) => {}
            }
            expected.insert(name);
        }
    }
    let mut extra: Vec<&str> = present.iter().map(|(n, _)| *n).filter(|n| !expected.contains(*n)).collect();
    extra.sort_unstable();
    problems.extend(extra.into_iter().map(|n| format!("unexpected '{n}'")));
    if problems.is_empty() {
        return Ok(());
    }
    let total = problems.len();
    if total > MAX_PROBLEMS {
        problems.truncate(MAX_PROBLEMS);
        problems.push(format!("and {} more", total - MAX_PROBLEMS));
    }
    Err(WeightsError::Mismatch { config: cfg.name.clone(), problems })
}

/// Writes `tensors` of `networks` under `cfg` as a text2img weights file (atomically), in
/// `dtype`, after checking they fit the config.
pub fn save_weights(
    path: &Path,
    cfg: &ModelConfig,
    networks: &[Network],
    tensors: &[(String, Tensor)],
    dtype: crate::tensor::DType,
) -> Result<()> {
    let present: Vec<(&str, &[usize])> = tensors.iter().map(|(n, t)| (n.as_str(), t.shape())).collect();
    check_tensors(cfg, networks, &present).map_err(|e| Error::Weights { path: path.to_path_buf(), reason: e })?;
    let converted: Vec<(String, Tensor)> = tensors.iter().map(|(n, t)| (n.clone(), t.to_dtype(dtype))).collect();
    let mut meta = std::collections::BTreeMap::new();
    meta.insert("format".to_string(), crate::weights::FORMAT.to_string());
    meta.insert("config".to_string(), cfg.to_json());
    let names: Vec<&str> = networks.iter().map(|n| n.name()).collect();
    meta.insert("networks".to_string(), names.join(","));
    crate::weights::writer::write(path, &converted, &meta)
}
