//! `text2img style-transfer`: the content of a caption in the style of an image, G(S(image),
//! φ(caption)) (the ICML paper's §5.3 figure). Style images down, captions across; the first
//! column is the style image itself.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use text2img::data::image_io::decode_rgb8;
use text2img::data::DecodeLimits;
use text2img::graph::{thread_pool, Backend};
use text2img::image::{write_png, Rgb8};
use text2img::model::config::IMAGE_SIZE;
use text2img::model::pipeline::IMAGE_LEN;
use text2img::model::{TextToImage, WeightSet};
use text2img::train::checkpoint::load_style_encoder;
use text2img::train::style::predict_styles;
use text2img::weights::LoadMode;

use super::generate::{default_file, weights_path};
use super::{fail, Failure, Verbosity, EXIT_BAD_INPUT, EXIT_OUTPUT, EXIT_USAGE};

/// Where style-transfer looks for S when not given.
pub const DEFAULT_STYLE: &str = "weights/style.safetensors";

#[derive(Args)]
pub struct StyleTransferArgs {
    /// Captions (one column each).
    #[arg(value_name = "CAPTION", required = true)]
    pub captions: Vec<String>,
    /// Style images (one row each; resized to 64×64).
    #[arg(long = "style", value_name = "IMAGE", required = true)]
    pub styles: Vec<PathBuf>,
    /// Output PNG.
    #[arg(short, long, default_value = "style-transfer.png")]
    pub output: PathBuf,
    /// Weights file (default as for generate).
    #[arg(short, long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Style encoder S (default: weights/style.safetensors).
    #[arg(long, value_name = "FILE")]
    pub style_model: Option<PathBuf>,
    /// CPU threads (0: one per core).
    #[arg(short, long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub threads: u32,
}

pub fn run(a: StyleTransferArgs, v: Verbosity) -> Result<(), Failure> {
    if a.captions.iter().any(|c| c.trim().is_empty()) {
        return Err(fail(EXIT_USAGE, "a caption is empty or only whitespace"));
    }
    let ws = WeightSet::open(&weights_path(&a.model)?, LoadMode::Mmap)?;
    let pool = thread_pool(a.threads as usize)?;
    let nz = ws.config().generator.nz;
    let e = ws.config().encoder.embed_dim;
    let mut s = load_style_encoder(&a.style_model.clone().unwrap_or_else(|| default_file(DEFAULT_STYLE)), nz)?;
    let mut images = vec![0.0f32; a.styles.len() * IMAGE_LEN];
    for (p, dst) in a.styles.iter().zip(images.chunks_mut(IMAGE_LEN)) {
        let img = decode_rgb8(p, &DecodeLimits::default()).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
        let side = IMAGE_SIZE as u32;
        let img = if img.width == side && img.height == side { img } else { img.resized(side, side) };
        img.to_chw(dst);
    }
    let styles = predict_styles(&mut s, &images, Arc::clone(&pool));
    let mut t2i = TextToImage::new(&ws, a.captions.len(), Arc::clone(&pool), Backend::Cpu)?;
    let (emb, _) = t2i.embed(&a.captions)?;
    let n = a.captions.len();
    let mut tiles = Vec::with_capacity(a.styles.len() * (n + 1));
    for (row, z) in styles.chunks(nz).enumerate() {
        tiles.push(Rgb8::from_chw(&images[row * IMAGE_LEN..(row + 1) * IMAGE_LEN], IMAGE_SIZE, IMAGE_SIZE));
        let zs: Vec<f32> = (0..n).flat_map(|_| z.iter().copied()).collect();
        let out = t2i.generate_from(&zs, &emb[..n * e])?;
        tiles.extend(out.chunks(IMAGE_LEN).map(|x| Rgb8::from_chw(x, IMAGE_SIZE, IMAGE_SIZE)));
    }
    let text = vec![("style-transfer".to_string(), a.captions.join(" | "))];
    write_png(&a.output, &Rgb8::grid(&tiles, n + 1, 2), &text)
        .map_err(|e| fail(EXIT_OUTPUT, format!("cannot write {}: {e}", a.output.display())))?;
    if v > Verbosity::Quiet {
        eprintln!("wrote {} ({} styles × {n} captions)", a.output.display(), a.styles.len());
    }
    Ok(())
}
