//! `text2img inspect FILE`: what a weights file holds, and whether it fits its config.

use std::path::PathBuf;

use clap::Args;
use text2img::model::spec::{parameter_count, Network};
use text2img::model::{ModelConfig, WeightSet};
use text2img::weights::{LoadMode, WeightFile};

use super::Failure;

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
