//! `text2img generate`: captions in, PNG files out (one per image, or one grid).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use text2img::device::{Device, DeviceRequest};
use text2img::graph::{thread_pool, Backend};
use text2img::image::{write_png, PngText, Rgb8};
use text2img::model::config::IMAGE_SIZE;
use text2img::model::pipeline::IMAGE_LEN;
use text2img::model::rerank::{best_of, Reranker, MAX_CANDIDATES};
use text2img::model::text::CaptionReport;
use text2img::model::{TextToImage, WeightSet};
use text2img::train::captions::embed_texts;
use text2img::weights::LoadMode;

use super::{fail, Failure, Verbosity, EXIT_BAD_INPUT, EXIT_OUTPUT, EXIT_USAGE};

/// Where `generate` looks for weights when `-m` is not given.
pub const DEFAULT_WEIGHTS: &str = "weights/default.safetensors";
/// Most images one command makes.
const MAX_IMAGES: usize = 100_000;

#[derive(Args)]
pub struct GenerateArgs {
    /// Captions (also -p, repeatable, and --prompt-file).
    #[arg(value_name = "CAPTION")]
    pub captions: Vec<String>,
    /// A caption (repeatable).
    #[arg(short = 'p', long = "prompt", value_name = "CAPTION")]
    pub prompts: Vec<String>,
    /// A file with one caption per line (blank lines skipped).
    #[arg(long, value_name = "FILE")]
    pub prompt_file: Option<PathBuf>,
    /// Output PNG; `%d` is replaced by the image number when there are several.
    #[arg(short, long, default_value = "output.png")]
    pub output: PathBuf,
    /// Noise seed (random and printed when absent).
    #[arg(short, long)]
    pub seed: Option<u64>,
    /// Images per caption (image j uses noise index j of the seed).
    #[arg(short = 'b', long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_count: u32,
    /// Images per forward pass (a memory knob).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub batch_size: u32,
    /// Write one grid PNG: captions down, images across.
    #[arg(long)]
    pub grid: bool,
    /// Weights file (default: weights/default.safetensors, or $T2I_MODEL).
    #[arg(short, long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceRequest,
    /// CPU threads (0: one per core).
    #[arg(short, long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub threads: u32,
    /// Read the weights into memory instead of mapping them.
    #[arg(long)]
    pub no_mmap: bool,
    /// Do not write caption, seed and model into the PNG.
    #[arg(long)]
    pub no_metadata: bool,
    /// Draw K candidates per image and keep the one the model's discriminator rates highest as
    /// a real image of the caption (1: plain generation; needs weights that hold D).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=MAX_CANDIDATES as i64))]
    pub rerank: u32,
}

/// The weights path: -m, then $T2I_MODEL, then the shipped default.
pub fn weights_path(arg: &Option<PathBuf>) -> Result<PathBuf, Failure> {
    if let Some(p) = arg {
        return Ok(p.clone());
    }
    if let Some(p) = std::env::var_os("T2I_MODEL") {
        return Ok(PathBuf::from(p));
    }
    let default = default_file(DEFAULT_WEIGHTS);
    if default.exists() {
        return Ok(default);
    }
    Err(fail(
        EXIT_BAD_INPUT,
        format!(
            "no weights: {DEFAULT_WEIGHTS} is not there (run from the repository, or give -m FILE or \
             $T2I_MODEL); text2img never generates from random weights"
        ),
    ))
}

/// A shipped file (`weights/...`): under the working directory when it is there, else under the
/// source tree the binary was built from (so `text2img` works from any folder of a checkout).
pub fn default_file(rel: &str) -> PathBuf {
    let here = PathBuf::from(rel);
    if here.exists() {
        return here;
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    if built.exists() {
        built
    } else {
        here
    }
}

/// All captions from the three sources, checked.
fn collect_captions(a: &GenerateArgs) -> Result<Vec<String>, Failure> {
    let mut caps: Vec<String> = a.captions.iter().chain(&a.prompts).cloned().collect();
    if let Some(f) = &a.prompt_file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| fail(EXIT_BAD_INPUT, format!("prompt file {}: {e}", f.display())))?;
        caps.extend(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from));
    }
    if caps.is_empty() {
        return Err(fail(EXIT_USAGE, "no caption: give one as an argument, with -p, or with --prompt-file"));
    }
    for (i, c) in caps.iter().enumerate() {
        if c.trim().is_empty() {
            return Err(fail(EXIT_USAGE, format!("caption {} is empty or only whitespace", i + 1)));
        }
    }
    Ok(caps)
}

/// Output path of image `n` of `total`: `%d` replaced, or `_n` before the extension.
pub fn numbered(path: &Path, n: usize, total: usize) -> PathBuf {
    let s = path.to_string_lossy();
    if s.contains("%d") {
        return PathBuf::from(s.replace("%d", &n.to_string()));
    }
    if total == 1 {
        return path.to_path_buf();
    }
    let stem = path.file_stem().map_or("output".into(), |s| s.to_string_lossy().into_owned());
    let ext = path.extension().map_or("png".into(), |e| e.to_string_lossy().into_owned());
    path.with_file_name(format!("{stem}_{n}.{ext}"))
}

/// Fails early when the output's folder does not exist or is not writable.
fn check_output_dir(path: &Path) -> Result<(), Failure> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let meta =
        std::fs::metadata(dir).map_err(|e| fail(EXIT_OUTPUT, format!("output folder {}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(fail(EXIT_OUTPUT, format!("output folder {} is not a folder", dir.display())));
    }
    if meta.permissions().readonly() {
        return Err(fail(EXIT_OUTPUT, format!("output folder {} is read-only", dir.display())));
    }
    Ok(())
}

fn warn_caption(i: usize, r: &CaptionReport, doc_length: usize, v: Verbosity) {
    if v == Verbosity::Quiet {
        return;
    }
    if r.truncated_chars > 0 {
        eprintln!(
            "warning: caption {} is longer than {doc_length} characters; the last {} are ignored",
            i + 1,
            r.truncated_chars
        );
    }
    if !r.unknown.is_empty() {
        let list: Vec<String> = r.unknown.iter().map(|c| format!("{c:?}")).collect();
        eprintln!("warning: caption {}: characters outside the alphabet are read as blanks: {}", i + 1, list.join(" "));
    }
}

/// One generated image and what made it.
struct Made {
    caption: usize,
    index: usize,
    image: Rgb8,
}

/// What made every image of a run (written into each PNG).
struct Provenance<'a> {
    seed: u64,
    model: &'a str,
    rerank: u32,
}

fn metadata(caption: &str, index: usize, p: &Provenance) -> Vec<PngText> {
    let (seed, model, engine) = (p.seed, p.model, format!("text2img {}", env!("CARGO_PKG_VERSION")));
    let rerank = if p.rerank > 1 { format!(", Rerank: {}", p.rerank) } else { String::new() };
    let params =
        format!("{caption}\nSeed: {seed}, Index: {index}{rerank}, Size: 64x64, Model: {model}, Engine: {engine}");
    let json = serde_json::json!({ "caption": caption, "seed": seed, "index": index, "rerank": p.rerank, "model": model, "engine": engine });
    vec![("parameters".into(), params), ("text2img".into(), json.to_string())]
}

pub fn run(a: GenerateArgs, v: Verbosity) -> Result<(), Failure> {
    let captions = collect_captions(&a)?;
    let per = a.batch_count as usize;
    let total = captions.len().checked_mul(per).filter(|&t| t <= MAX_IMAGES).ok_or_else(|| {
        fail(EXIT_USAGE, format!("{} captions × {per} images is more than {MAX_IMAGES} images", captions.len()))
    })?;
    check_output_dir(&a.output)?;
    let device = a.device.resolve()?;
    let path = weights_path(&a.model)?;
    let start = Instant::now();
    let mode = if a.no_mmap { LoadMode::Read } else { LoadMode::Mmap };
    let ws = WeightSet::open(&path, mode)?;
    let model = ws.config().name.clone();
    let pool = thread_pool(a.threads as usize)?;
    let mut t2i = Pipeline::new(device, &ws, a.batch_size as usize, &pool)?;
    let doc_length = ws.config().text.doc_length;
    let seed = a.seed.unwrap_or_else(random_seed);
    if a.seed.is_none() && v > Verbosity::Quiet {
        eprintln!("seed: {seed}");
    }
    if v == Verbosity::Verbose {
        eprintln!("loaded {} ({model}) in {:.1} ms", path.display(), start.elapsed().as_secs_f64() * 1e3);
    }
    let mut rerank = open_reranker(&a, &ws, &pool)?;
    // Work list: (caption, index); run in forward batches of --batch-size.
    let jobs: Vec<(usize, usize)> = (0..captions.len()).flat_map(|c| (0..per).map(move |j| (c, j))).collect();
    let mut made = Vec::with_capacity(total);
    let gen_start = Instant::now();
    for chunk in jobs.chunks(a.batch_size as usize) {
        made.extend(generate_chunk(&mut t2i, (&captions, chunk), seed, &mut rerank, (doc_length, v))?);
    }
    if v == Verbosity::Verbose {
        let ms = gen_start.elapsed().as_secs_f64() * 1e3;
        eprintln!(
            "generated {total} image(s) in {ms:.1} ms ({:.2} ms/image, {} threads)",
            ms / total as f64,
            pool.current_num_threads()
        );
    }
    write_outputs(&a, &captions, &made, &Provenance { seed, model: &model, rerank: a.rerank }, v)
}

/// Best-of-K reranking: D (on the CPU) and K. The CPU pipeline lends D its own caption
/// embeddings; for a GPU pipeline every caption's φ(t) is embedded once on the CPU, when the
/// first chunk needs it.
struct Rerank<'w> {
    scorer: Reranker,
    k: usize,
    ws: &'w WeightSet,
    pool: Arc<rayon::ThreadPool>,
    text: Option<Vec<f32>>,
}

impl Rerank<'_> {
    /// The CPU-made embeddings of a chunk's captions (all captions embedded on the first call).
    fn rows(&mut self, captions: &[String], chunk: &[(usize, usize)]) -> Result<Vec<f32>, Failure> {
        let dim = self.ws.config().encoder.embed_dim;
        let text: &[f32] = match self.text {
            Some(ref text) => text,
            None => {
                let texts: Vec<&str> = captions.iter().map(String::as_str).collect();
                self.text.insert(embed_texts(self.ws, &texts, Arc::clone(&self.pool))?)
            }
        };
        Ok(chunk.iter().flat_map(|&(c, _)| &text[c * dim..(c + 1) * dim]).copied().collect())
    }
}

fn open_reranker<'w>(
    a: &GenerateArgs,
    ws: &'w WeightSet,
    pool: &Arc<rayon::ThreadPool>,
) -> Result<Option<Rerank<'w>>, Failure> {
    if a.rerank <= 1 {
        return Ok(None);
    }
    let scorer = Reranker::new(ws, Arc::clone(pool)).map_err(|e| fail(EXIT_BAD_INPUT, format!("--rerank: {e}")))?;
    Ok(Some(Rerank { scorer, k: a.rerank as usize, ws, pool: Arc::clone(pool), text: None }))
}

/// Caption embeddings [B, E] and what encoding them noticed.
type Embedded = (Vec<f32>, Vec<CaptionReport>);

/// The caption → image pipeline on the device that runs.
enum Pipeline {
    Cpu(TextToImage),
    #[cfg(feature = "cuda")]
    Cuda(text2img::cuda::CudaTextToImage),
}

impl Pipeline {
    fn new(device: Device, ws: &WeightSet, batch: usize, pool: &Arc<rayon::ThreadPool>) -> Result<Pipeline, Failure> {
        match device {
            Device::Cpu => Ok(Pipeline::Cpu(TextToImage::new(ws, 1, Arc::clone(pool), Backend::Cpu)?)),
            #[cfg(feature = "cuda")]
            Device::Cuda(n) => {
                let dev = text2img::cuda::CudaDevice::shared(n)?;
                Ok(Pipeline::Cuda(text2img::cuda::CudaTextToImage::new(dev, ws, batch)?))
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(n) => {
                let _ = batch;
                Err(fail(super::EXIT_DEVICE, format!("--device cuda:{n}: this build has no CUDA backend")))
            }
        }
    }

    /// On the CPU: embeds `texts` and keeps them loaded for `redraw`; None on a GPU.
    fn cpu_embeddings(&mut self, texts: &[String]) -> Result<Option<Embedded>, Failure> {
        match self {
            Pipeline::Cpu(t2i) => Ok(Some(t2i.embed(texts)?)),
            #[cfg(feature = "cuda")]
            Pipeline::Cuda(_) => Ok(None),
        }
    }

    /// The images of the texts last embedded (CPU) or given (GPU) again, with other noise indices.
    fn redraw(&mut self, texts: &[String], seed: u64, indices: &[u64]) -> Result<Vec<f32>, Failure> {
        match self {
            Pipeline::Cpu(t2i) => {
                let _ = texts; // the CPU pipeline keeps the embeddings of the last call
                t2i.generate_loaded(seed, indices);
                Ok(t2i.images().to_vec())
            }
            #[cfg(feature = "cuda")]
            Pipeline::Cuda(t2i) => Ok(t2i.generate(texts, seed, indices)?.0),
        }
    }

    /// Images of `texts`, image j with noise index `indices[j]` of `seed`.
    fn generate(
        &mut self,
        texts: &[String],
        seed: u64,
        indices: &[u64],
    ) -> Result<(Vec<f32>, Vec<CaptionReport>), Failure> {
        match self {
            Pipeline::Cpu(t2i) => {
                let (_, reports) = t2i.embed(texts)?;
                t2i.generate_loaded(seed, indices);
                Ok((t2i.images().to_vec(), reports))
            }
            #[cfg(feature = "cuda")]
            Pipeline::Cuda(t2i) => Ok(t2i.generate(texts, seed, indices)?),
        }
    }
}

/// Generates the images of one forward batch. Every image uses noise index j of the seed (with
/// --rerank, candidates j·K … j·K+K−1).
fn generate_chunk(
    t2i: &mut Pipeline,
    (captions, chunk): (&[String], &[(usize, usize)]),
    seed: u64,
    rerank: &mut Option<Rerank<'_>>,
    (doc_length, v): (usize, Verbosity),
) -> Result<Vec<Made>, Failure> {
    let texts: Vec<String> = chunk.iter().map(|&(c, _)| captions[c].clone()).collect();
    // Noise per image by its own index, so batching never changes an image.
    let indices: Vec<u64> = chunk.iter().map(|&(_, j)| j as u64).collect();
    let (out, reports) = match rerank {
        None => t2i.generate(&texts, seed, &indices)?,
        Some(r) => {
            let (emb, mut reports) = match t2i.cpu_embeddings(&texts)? {
                Some((emb, reports)) => (emb, Some(reports)),
                None => (r.rows(captions, chunk)?, None),
            };
            let draw = |cand: &[u64]| -> Result<Vec<f32>, Failure> {
                if reports.is_some() {
                    return t2i.redraw(&texts, seed, cand);
                }
                let (images, rep) = t2i.generate(&texts, seed, cand)?;
                reports = Some(rep);
                Ok(images)
            };
            let (images, _) = best_of(&mut r.scorer, &emb, &indices, r.k, draw)?;
            (images, reports.unwrap_or_default())
        }
    };
    for (&(c, j), r) in chunk.iter().zip(&reports) {
        if j == 0 {
            warn_caption(c, r, doc_length, v);
        }
    }
    Ok(chunk
        .iter()
        .zip(out.chunks(IMAGE_LEN))
        .map(|(&(caption, index), img)| Made { caption, index, image: Rgb8::from_chw(img, IMAGE_SIZE, IMAGE_SIZE) })
        .collect())
}

fn write_outputs(
    a: &GenerateArgs,
    captions: &[String],
    made: &[Made],
    p: &Provenance,
    v: Verbosity,
) -> Result<(), Failure> {
    let out_err = |p: &Path, e: text2img::Error| fail(EXIT_OUTPUT, format!("cannot write {}: {e}", p.display()));
    if a.grid {
        let images: Vec<Rgb8> = made.iter().map(|m| m.image.clone()).collect();
        let grid = Rgb8::grid(&images, a.batch_count as usize, 2);
        let text = if a.no_metadata { vec![] } else { metadata(&captions.join(" | "), 0, p) };
        let path = numbered(&a.output, 0, 1);
        write_png(&path, &grid, &text).map_err(|e| out_err(&path, e))?;
        if v > Verbosity::Quiet {
            eprintln!("wrote {} ({} captions × {} images)", path.display(), captions.len(), a.batch_count);
        }
        return Ok(());
    }
    for (n, m) in made.iter().enumerate() {
        let path = numbered(&a.output, n, made.len());
        let text = if a.no_metadata { vec![] } else { metadata(&captions[m.caption], m.index, p) };
        write_png(&path, &m.image, &text).map_err(|e| out_err(&path, e))?;
        if v > Verbosity::Quiet {
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

/// A seed from the clock and the process id (printed, so a result can be reproduced).
fn random_seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    text2img::rng::mix64(t ^ ((std::process::id() as u64) << 32))
}
