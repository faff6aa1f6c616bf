//! `text2img inspect FILE`: what a weights file holds, and whether it fits its config; and
//! `text2img init-weights`: a built-in config's synthetic weights written as a file.

use std::path::PathBuf;

use clap::Args;
use text2img::model::loader::save_weights;
use text2img::model::spec::{parameter_count, Network};
use text2img::model::synthetic::synthetic_weights;
use text2img::model::{ModelConfig, WeightSet};
use text2img::tensor::DType;
use text2img::weights::{LoadMode, WeightFile};

use super::{fail, Failure, Verbosity, EXIT_USAGE};

#[derive(Args)]
pub struct InspectArgs {
    /// A weights file (.safetensors).
    pub file: PathBuf,
    /// Do not list the tensors.
    #[arg(long)]
    pub summary: bool,
}

pub fn run(a: InspectArgs) -> Result<(), Failure> {
    let file = WeightFile::open(&a.file, LoadMode::Mmap)?;
    let h = file.header();
    println!("file:     {} ({} bytes)", a.file.display(), file.bytes().len());
    println!("format:   {}", file.metadata("format").unwrap_or("(none)"));
    println!("networks: {}", file.metadata("networks").unwrap_or("(not stated)"));
    let total: usize = h.tensors.iter().map(|t| t.shape.iter().product::<usize>()).sum();
    println!("tensors:  {} ({} elements, data at byte {})", h.tensors.len(), total, h.data_start);
    for (k, v) in &h.metadata {
        if k != "config" && k != "format" && k != "networks" {
            println!("meta:     {k} = {}", v.chars().take(200).collect::<String>());
        }
    }
    if let Some(cfg) = file.metadata("config").and_then(|c| ModelConfig::from_json(c).ok()) {
        println!("config:   {}", cfg.name);
        println!("{}", serde_json::to_string_pretty(&cfg).unwrap_or_default());
        for net in Network::ALL {
            println!("{:>14}: {} parameters", net.name(), parameter_count(&cfg, net));
        }
    }
    if !a.summary {
        println!("{:<48} {:>5} {:>18} {:>10} in place", "name", "dtype", "shape", "bytes");
        for t in &h.tensors {
            let in_place = if file.zero_copy_range(&t.name).is_some() { "yes" } else { "no" };
            println!(
                "{:<48} {:>5} {:>18} {:>10} {}",
                t.name,
                t.dtype,
                format!("{:?}", t.shape),
                t.end - t.begin,
                in_place
            );
        }
    }
    drop(file);
    WeightSet::open(&a.file, LoadMode::Mmap)?;
    println!("check:    ok (every tensor matches the config)");
    Ok(())
}

#[derive(Args)]
pub struct InitWeightsArgs {
    /// Built-in config (reed-cub, reed-flowers, shapes, small).
    #[arg(long, value_name = "NAME")]
    pub config: String,
    /// The weights file to write.
    #[arg(short, long, value_name = "FILE")]
    pub out: PathBuf,
    /// Networks to include, comma-separated (encoder, generator, discriminator).
    #[arg(long, default_value = "encoder,generator,discriminator")]
    pub networks: String,
    /// Storage dtype.
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16"])]
    pub dtype: String,
}

/// Writes the config's synthetic weights (the deterministic values `bench -m NAME` and the tests
/// use; docs/WEIGHTS.md): an untrained model, for timing runs that need a file (e.g. `train
/// --encoder` at the paper's sizes on a GPU) and for other tools to read.
pub fn run_init(a: InitWeightsArgs, v: Verbosity) -> Result<(), Failure> {
    let cfg = ModelConfig::builtin(&a.config)?;
    let nets = a
        .networks
        .split(',')
        .map(|n| {
            Network::from_name(n.trim()).ok_or_else(|| {
                fail(EXIT_USAGE, format!("--networks: no network '{}' (encoder, generator, discriminator)", n.trim()))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let dtype = if a.dtype == "f16" { DType::F16 } else { DType::F32 };
    save_weights(&a.out, &cfg, &nets, &synthetic_weights(&cfg, &nets), dtype)?;
    if v > Verbosity::Quiet {
        let names: Vec<&str> = nets.iter().map(|n| n.name()).collect();
        eprintln!("wrote {} ({}: {}, synthetic, {})", a.out.display(), cfg.name, names.join(", "), a.dtype);
    }
    Ok(())
}
