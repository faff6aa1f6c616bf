//! `text2img interpolate`: the paper's GAN-INT views. Between two captions at fixed noise (the
//! text embedding moves, the style stays), or between two noises at one caption (the style
//! moves, the content stays). One PNG strip of N images.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use text2img::graph::{thread_pool, Backend};
use text2img::image::{write_png, Rgb8};
use text2img::model::config::IMAGE_SIZE;
use text2img::model::pipeline::IMAGE_LEN;
use text2img::model::{TextToImage, WeightSet};
use text2img::rng::normal_noise;
use text2img::weights::LoadMode;

use super::generate::weights_path;
use super::{fail, Failure, Verbosity, EXIT_OUTPUT, EXIT_USAGE};

#[derive(Args)]
pub struct InterpolateArgs {
    /// One caption (noise interpolation) or two (caption interpolation).
    #[arg(value_name = "CAPTION", num_args = 1..=2, required = true)]
    pub captions: Vec<String>,
    /// Images in the strip, ends included.
    #[arg(short = 'n', long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(2..=64))]
    pub steps: u32,
    /// Output PNG.
    #[arg(short, long, default_value = "interpolation.png")]
    pub output: PathBuf,
    /// Noise seed: caption interpolation uses noise 0 of it; noise interpolation goes from
    /// noise 0 to noise 1.
    #[arg(short, long, default_value_t = 0)]
    pub seed: u64,
    /// Weights file (default as for generate).
    #[arg(short, long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// CPU threads (0: one per core).
    #[arg(short, long, default_value_t = 0)]
    pub threads: u32,
}

pub fn run(a: InterpolateArgs, v: Verbosity) -> Result<(), Failure> {
    if a.captions.iter().any(|c| c.trim().is_empty()) {
        return Err(fail(EXIT_USAGE, "a caption is empty or only whitespace"));
    }
    let ws = WeightSet::open(&weights_path(&a.model)?, LoadMode::Mmap)?;
    let pool = thread_pool(a.threads as usize)?;
    let mut t2i = TextToImage::new(&ws, 1, Arc::clone(&pool), Backend::Cpu)?;
    let (nz, e) = (ws.config().generator.nz, ws.config().encoder.embed_dim);
    let (emb, _) = t2i.embed(&a.captions)?;
    let (mut z0, mut z1) = (vec![0.0; nz], vec![0.0; nz]);
    normal_noise(a.seed, 0, &mut z0);
    normal_noise(a.seed, 1, &mut z1);
    let n = a.steps as usize;
    let (mut z, mut t) = (Vec::with_capacity(n * nz), Vec::with_capacity(n * e));
    for i in 0..n {
        let w = i as f32 / (n - 1) as f32;
        let lerp = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (1.0 - w) * x + w * y).collect::<Vec<f32>>();
        if a.captions.len() == 2 {
            z.extend_from_slice(&z0);
            t.extend(lerp(&emb[..e], &emb[e..2 * e]));
        } else {
            z.extend(lerp(&z0, &z1));
            t.extend_from_slice(&emb[..e]);
        }
    }
    let images = t2i.generate_from(&z, &t)?;
    let tiles: Vec<Rgb8> = images.chunks(IMAGE_LEN).map(|x| Rgb8::from_chw(x, IMAGE_SIZE, IMAGE_SIZE)).collect();
    let what = if a.captions.len() == 2 { "captions" } else { "noise" };
    let text = vec![("interpolation".to_string(), format!("{what}: {} | seed {}", a.captions.join(" -> "), a.seed))];
    write_png(&a.output, &Rgb8::grid(&tiles, n, 2), &text)
        .map_err(|e| fail(EXIT_OUTPUT, format!("cannot write {}: {e}", a.output.display())))?;
    if v > Verbosity::Quiet {
        eprintln!("wrote {} ({n} images, {what} interpolation)", a.output.display());
    }
    Ok(())
}
