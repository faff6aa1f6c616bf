//! `text2img train-encoder` (DS-SJE) and `text2img train` (GAN-INT-CLS): progress bar, JSON-lines
//! log, periodic atomic checkpoints, `--resume`, sample grids, and the final weights file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use text2img::data::rng::Pcg32;
use text2img::data::shapes::{dataset_labels, image_geometry, image_labels, IMAGE_LABEL_SIZES, LABEL_SIZES};
use text2img::data::{
    Augment, Dataset, DecodeLimits, EncoderSampler, GanSampler, Loader, Prefetcher, SamplerConfig, Split,
};
use text2img::device::{Device, DeviceRequest};
use text2img::graph::{thread_pool, Backend, Session};
use text2img::image::{write_png, Rgb8};
use text2img::model::discriminator::CLASSIFIER_WEIGHT;
use text2img::model::encoder::build_encoder;
use text2img::model::generator::build_generator_for;
use text2img::model::loader::save_weights;
use text2img::model::pipeline::IMAGE_LEN;
use text2img::model::text::encode_into;
use text2img::model::{ModelConfig, Network, WeightSet};
use text2img::rng::normal_noise;
use text2img::tensor::{DType, Tensor};
use text2img::train::captions::{embed_texts, CaptionTable, CACHE_FILE as CAPTION_CACHE};
use text2img::train::checkpoint::{load_gan, load_sje, load_style, save_gan, save_sje, save_style, save_style_encoder};
use text2img::train::gan::{GanBatch, GanOptions, GanTrainer, StepStats, VaeWeights};
use text2img::train::sje::{
    rescale_embeddings, save_image_encoder, training_embedding_rms, HeldOut, SjeOptions, SjeTrainer,
};
use text2img::train::style::{style_captions, StyleCaptions, StyleOptions, StyleTrainer};
use text2img::train::TrainNet;
use text2img::weights::writer::write_atomic;
use text2img::weights::LoadMode;

use super::generate::weights_path;
use super::{fail, Failure, Verbosity, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_OUTPUT, EXIT_USAGE};

/// Options both trainers share.
#[derive(Args)]
pub struct Common {
    /// Dataset folder (shapes, CUB/Oxford-102 layout, or a caption folder).
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder: checkpoint.safetensors, log.jsonl, samples, the final weights.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Training steps (iterations) in all, counting those of a resumed run.
    #[arg(long, default_value_t = 1000)]
    pub steps: u64,
    /// Seed of initial weights, noise and data order.
    #[arg(short, long, default_value_t = 0)]
    pub seed: u64,
    /// CPU threads (0: one per core).
    #[arg(short, long, default_value_t = 0)]
    pub threads: u32,
    /// Write a checkpoint every N steps (and at the end).
    #[arg(long, default_value_t = 200)]
    pub checkpoint_every: u64,
    /// Resume from this checkpoint (its options win over the flags).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Largest fraction of unreadable images tolerated in the dataset.
    #[arg(long, default_value_t = 0.01)]
    pub max_bad: f64,
}

#[derive(Args)]
pub struct TrainEncoderArgs {
    #[command(flatten)]
    pub common: Common,
    /// Model config whose encoder sizes to train (built-in name).
    #[arg(long, default_value = "shapes")]
    pub config: String,
    /// Distinct classes per batch.
    #[arg(long, default_value_t = 40)]
    pub batch: usize,
    #[arg(long, default_value_t = 7e-4)]
    pub lr: f32,
    /// Zero-shot evaluation on held-out classes every N steps (0: only at the end).
    #[arg(long, default_value_t = 500)]
    pub eval_every: u64,
    /// Score pairs by S·cos(θ(v), φ(t)) instead of the paper's dot product (0: the paper's), so
    /// that classes must differ in angle (see docs/RESULTS.md on shape).
    #[arg(long, default_value_t = 0.0, value_name = "S")]
    pub cosine_scale: f32,
    /// Also train a linear read-out of shape kind and colour, shared by the text and image
    /// embeddings, with this weight on its cross-entropy (0: DS-SJE alone). Needs a `shapes`
    /// dataset; it makes φ(t) carry shape for G (docs/RESULTS.md, "Why shapes fail").
    #[arg(long, default_value_t = 0.0, value_name = "W")]
    pub attribute_weight: f32,
    /// Export φ scaled to this RMS length over training captions, and θ by the inverse, so
    /// every score is unchanged (0: as trained). DS-SJE leaves |φ(t)| ≈ 0.3, too faint for G's
    /// unnormalised text projection to learn from quickly; 16 (z's per-dimension scale) makes G
    /// ignore z (docs/RESULTS.md).
    #[arg(long, default_value_t = 4.0, value_name = "R")]
    pub export_rms: f32,
}

#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub common: Common,
    /// The trained text encoder (a weights file holding `encoder`); its config sets G and D too,
    /// unless --config is given.
    #[arg(long)]
    pub encoder: PathBuf,
    /// Take G's and D's sizes from this built-in config (its text and encoder parts must equal
    /// the encoder file's).
    #[arg(long, value_name = "NAME")]
    pub config: Option<String>,
    /// G's width (ngf: channels of its last hidden layer; the others are multiples) for a new
    /// run, in place of the config's.
    #[arg(long, value_name = "N")]
    pub ngf: Option<usize>,
    /// D's width (ndf) for a new run, in place of the config's.
    #[arg(long, value_name = "N")]
    pub ndf: Option<usize>,
    /// LeakyReLU after D's 8×8 and 4×4 convolutions for a new run (the original, and the
    /// built-in configs, have none there: without batch norm those two layers are one linear map).
    #[arg(long)]
    pub d_act_after_deep: bool,
    /// G with a residual block after its 16×16 and 32×32 transposed convolutions, for a new run
    /// (the original has layers there only to up-sample).
    #[arg(long)]
    pub g_refine: bool,
    /// Real images per step.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// G's learning rate (D's is this times --lr-d-scale) [default: 2e-4, the paper's]. With
    /// --resume, switches it from the checkpoint's step.
    #[arg(long, value_name = "LR")]
    pub lr: Option<f32>,
    /// Halve the learning rate every N epochs.
    #[arg(long, default_value_t = 100)]
    pub lr_halve_every: usize,
    /// Let both learning rates fall linearly to zero from step START to step END (on top of
    /// the halving; not in the paper). With --resume, switches it from the checkpoint's step.
    #[arg(long, value_name = "START:END", value_parser = parse_step_range)]
    pub lr_decay: Option<[u64; 2]>,
    /// D's learning rate as a multiple of --lr (not in the paper: 1; > 1 is the two-time-scale
    /// rule). With --resume, switches it from the checkpoint's step.
    #[arg(long, value_name = "X")]
    pub lr_d_scale: Option<f32>,
    /// Train without the matching-aware term (GAN-INT or GAN).
    #[arg(long)]
    pub no_cls: bool,
    /// Train without interpolated embeddings (GAN-CLS or GAN).
    #[arg(long)]
    pub no_int: bool,
    /// Weight of the mode-seeking term (not in the paper; 0: off): keeps G from drawing one
    /// image per caption. With --resume, switches it on or off from the checkpoint's step.
    #[arg(long, value_name = "W")]
    pub mode_seeking: Option<f32>,
    /// The mode-seeking term measures image distance between K×K cell averages (1: per pixel;
    /// 8 counts a moved shape and not pixel-level stripes). K divides 64. With --resume,
    /// switches it from the checkpoint's step.
    #[arg(long, value_name = "K")]
    pub mode_seeking_cell: Option<usize>,
    /// A mode-seeking pair whose images differ by this ratio to their noises' distance earns
    /// nothing more (0: no cap, the MSGAN term, which G can satisfy with noise D rejects). With
    /// --resume, switches it from the checkpoint's step.
    #[arg(long, value_name = "R")]
    pub mode_seeking_target: Option<f32>,
    /// The mode-seeking term ignores a tint of the whole image: each channel's mean difference is
    /// taken out of the cell differences, so only moving or reshaping something counts. With
    /// --resume, switches it on from the checkpoint's step.
    #[arg(long)]
    pub mode_seeking_centred: bool,
    /// The mode-seeking term compares soft shape masks (the pixels unlike each image's own
    /// border), not the images, so that moving the shape counts and tinting or shading the
    /// background does not. With --resume, switches it on from the checkpoint's step. Cell and
    /// target then apply to the masks (one channel, values in [0, 1]).
    #[arg(long)]
    pub mode_seeking_mask: bool,
    /// Draw this fraction of D's wrong images from a class of the same colour and another
    /// shape (`shapes` datasets; not in the paper; 0: uniform over the other classes). With
    /// --resume, switches it from the checkpoint's step.
    #[arg(long, value_name = "F")]
    pub hard_wrong: Option<f32>,
    /// Weight W of an auxiliary classifier (AC-GAN, Odena et al. 2017; not in the paper; 0:
    /// none): D also learns the shape kind, colour and size of real images (`shapes` datasets,
    /// from attributes.jsonl), and G is pushed, with weight W, to draw what D classifies as the
    /// shape, colour and size of the image whose captions it was given.
    /// With --resume, switches it on (D gets a fresh classifier) or changes W.
    #[arg(long, value_name = "W")]
    pub classifier: Option<f32>,
    /// The classifier reads D's 4×4 features max-pooled over positions, through one 1×1
    /// convolution (not in AC-GAN, whose read-out has a weight per position). New runs, or a
    /// run whose D gets its classifier on this resume.
    #[arg(long)]
    pub classifier_pool: bool,
    /// TAC-GAN's twin classifier (Gong et al. 2019): D learns the same classes a second time on
    /// G's images, and G's term becomes W·(CE(classifier) − CE(twin)), which takes away the
    /// plain term's pull towards the easiest-classified image of each class. New runs, or a
    /// run whose D gets its classifier on this resume.
    #[arg(long)]
    pub classifier_twin: bool,
    /// G's twin term as a multiple S of its classifier term: W·(CE(classifier) − S·CE(twin));
    /// 1 (TAC-GAN's) unless given; below 1 trades some of the twin's diversity for class
    /// fidelity. New runs and resumes (needs the twin).
    #[arg(long, value_name = "S")]
    pub classifier_twin_scale: Option<f32>,
    /// Weight W of D's classifier learning G's images as no shape kind (not in AC-GAN or
    /// TAC-GAN; 0: off): on the D step's fakes its shape-kind logits are pulled towards the
    /// uniform distribution, so that it stops reading G's blobs as the stars and rings asked for
    /// (docs/RESULTS.md, session 21). Needs the twin. New runs and resumes.
    #[arg(long, value_name = "W")]
    pub classifier_fake: Option<f32>,
    /// Translate every image D sees (real, mismatched and G's) by up to N pixels each way, zero
    /// padded, a fresh offset per image and step (DiffAugment's translation, Zhao et al. 2020;
    /// not in the paper; 0: off, at most 16): D can no longer memorise the real images pixel for
    /// pixel. New runs and resumes.
    #[arg(long, value_name = "N")]
    pub d_shift: Option<u32>,
    /// Show D every image (real, mismatched and G's) under one of the square's eight symmetries,
    /// mirrors and quarter turns, a fresh one per image and step, before any --d-shift (not in
    /// the paper): D cannot memorise the real images, and a centred shape stays centred. The
    /// shapes are drawn at any rotation, so no label changes; captions that name a position
    /// become noise for D's matching term. New runs and resumes (`--d-flip false`: off).
    #[arg(long, value_name = "ON", num_args = 0..=1, default_missing_value = "true")]
    pub d_flip: Option<bool>,
    /// The chance that an image D sees is augmented at all by --d-flip and --d-shift (default 1:
    /// every image; below 1 as ADA's p): the others reach D as they are. New runs and resumes.
    #[arg(long, value_name = "P")]
    pub d_augment_p: Option<f32>,
    /// Keep an exponential moving average of G's parameters with this decay (not in the paper;
    /// e.g. 0.999; 0: off) and export it, with batch-norm statistics re-estimated for it; each
    /// export then also writes the raw G as <name>-raw.safetensors (sample grids show the raw
    /// G). With --resume, switches it on (from the current G) or off.
    #[arg(long, value_name = "DECAY")]
    pub ema: Option<f32>,
    /// Weight W of a conditional-VAE reconstruction term (not in the paper; 0: off; the cVAE-GAN
    /// of BicycleGAN): an image encoder E reads a code z from each real image and G must
    /// rebuild the image from z and its caption (W · mean |Δ|), which shows G the exact shape a
    /// caption names. With --resume, switches it on (a fresh E) or changes W.
    #[arg(long, value_name = "W")]
    pub vae: Option<f32>,
    /// Weight of the codes' KL divergence from N(0, I) in the --vae term (default 0.01), which
    /// keeps z, the style, close to the noise G samples from.
    #[arg(long, value_name = "K")]
    pub vae_kl: Option<f32>,
    /// Extra weight L of the shape's own pixels in the --vae term's rebuild (`shapes` datasets,
    /// from attributes.jsonl; 0: every pixel alike): pixels within 1.2 radii of the shape's
    /// centre count 1 + L times, so the outline is not drowned by the background. With
    /// --resume, switches it from the checkpoint's step.
    #[arg(long, value_name = "L")]
    pub vae_shape_weight: Option<f32>,
    /// Weight R of a latent regression beside the --vae term (BicycleGAN's cLR-GAN; 0: off): E
    /// must find the noise z again in the image G drew from it, R · mean |μ(G(z, φ(t))) − z|, so
    /// G cannot let its samples ignore z. With --resume, switches it from the checkpoint's step.
    #[arg(long, value_name = "R")]
    pub vae_latent: Option<f32>,
    /// Write a sample grid every N steps (0: only at the end).
    #[arg(long, default_value_t = 100)]
    pub sample_every: u64,
    /// Weights file dtype of the final export.
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16"])]
    pub export_dtype: String,
    /// Device of the GAN steps: cpu, cuda or cuda:N (auto: a GPU when one opens). Every term
    /// runs on the GPU; checkpoints, exports and sample grids are the CPU trainer's, from the
    /// GPU's state.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceRequest,
    /// Also export the model every N steps, as out/model-<step>.safetensors, for picking the
    /// best point of a run with `eval` (0: only model.safetensors at the end).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub export_every: u64,
    /// Stop the run when D's or G's loss exceeds this (or is not a number; G's without the VAE
    /// term's KL, whose first steps with a fresh encoder run in the thousands): a diverged run then
    /// writes no checkpoint or export, so its last checkpoint stays the one before the blow-up
    /// (normal runs stay below about 15). 0: never stop.
    #[arg(long, default_value_t = 100.0, value_name = "LOSS")]
    pub max_loss: f32,
}

#[derive(Args)]
pub struct TrainStyleArgs {
    #[command(flatten)]
    pub common: Common,
    /// The model whose generator S learns to invert (default as for generate).
    #[arg(short, long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f32,
    /// Captions S trains on: `content`, those that name no background ("background" or
    /// "backdrop"), so that the scene is z's to set, as with CUB's captions, which describe only
    /// the bird; or `all` [default: content; a resumed run keeps its own]
    #[arg(long, value_name = "content|all")]
    pub captions: Option<StyleCaptions>,
}

/// Every caption's embedding by the frozen encoder, from out/caption-embeddings.safetensors when
/// an earlier run left the same captions by the same encoder there (saves the encoder passes at
/// every start and resume).
fn caption_table(
    enc: &WeightSet,
    enc_path: &Path,
    ds: &Dataset,
    out: &Path,
    pool: &Arc<rayon::ThreadPool>,
    v: Verbosity,
) -> Result<CaptionTable, Failure> {
    let cache = out.join(CAPTION_CACHE);
    let n: usize = ds.items().iter().map(|i| i.captions.len()).sum();
    if v > Verbosity::Quiet {
        eprintln!("caption embeddings: {n} captions, encoder {} (cache {})", enc_path.display(), cache.display());
    }
    let start = Instant::now();
    let (table, hit) = CaptionTable::build_cached(enc, ds, Arc::clone(pool), &cache)?;
    if v > Verbosity::Quiet {
        let how = if hit { "read from the cache" } else { "embedded" };
        eprintln!("caption embeddings {how} in {:.1} s", start.elapsed().as_secs_f64());
    }
    Ok(table)
}

/// `START:END` steps, START < END.
fn parse_step_range(v: &str) -> Result<[u64; 2], String> {
    let bad = || format!("expected START:END steps with START < END, got '{v}'");
    let (a, b) = v.split_once(':').ok_or_else(bad)?;
    let (a, b) = (a.trim().parse::<u64>().map_err(|_| bad())?, b.trim().parse::<u64>().map_err(|_| bad())?);
    if a < b {
        Ok([a, b])
    } else {
        Err(bad())
    }
}

fn io_fail(path: &Path, e: impl std::fmt::Display) -> Failure {
    fail(EXIT_OUTPUT, format!("{}: {e}", path.display()))
}

/// Appends JSON lines to out/log.jsonl.
struct Log(std::fs::File, PathBuf);

impl Log {
    /// Opens the log for a run at `step` (> 0 when resumed): lines of later steps, written by a
    /// run that was interrupted after its last checkpoint, are dropped (atomically), since the
    /// resumed run writes those steps again.
    fn open(out: &Path, step: u64) -> Result<Log, Failure> {
        let path = out.join(LOG_FILE);
        if step > 0 && path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| io_fail(&path, e))?;
            let later = |line: &&str| {
                let row = serde_json::from_str::<serde_json::Value>(line).ok();
                row.and_then(|r| r["step"].as_u64()).is_some_and(|s| s > step)
            };
            if text.lines().any(|l| later(&l)) {
                let kept: String = text.lines().filter(|l| !later(l)).flat_map(|l| [l, "\n"]).collect();
                write_atomic(&path, kept.as_bytes()).map_err(|e| fail(EXIT_OUTPUT, e))?;
            }
        }
        let f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| io_fail(&path, e))?;
        Ok(Log(f, path))
    }

    fn write(&mut self, v: serde_json::Value) -> Result<(), Failure> {
        writeln!(self.0, "{v}").map_err(|e| io_fail(&self.1, e))
    }
}

fn progress(total: u64, done: u64, v: Verbosity) -> ProgressBar {
    let bar = if v == Verbosity::Quiet { ProgressBar::hidden() } else { ProgressBar::new(total) };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(done);
    bar
}

fn open_dataset(c: &Common) -> Result<Arc<Dataset>, Failure> {
    refuse_earlier_run(c)?;
    let ds = Dataset::open_for_training(&c.data, &DecodeLimits::default(), c.max_bad)
        .map_err(|e| fail(EXIT_BAD_INPUT, e))?;
    std::fs::create_dir_all(&c.out).map_err(|e| io_fail(&c.out, e))?;
    Ok(Arc::new(ds))
}

/// A fresh run (no --resume) would overwrite the checkpoint, log, samples and exports of a run
/// already in --out: refused, naming what is there and how to continue it.
fn refuse_earlier_run(c: &Common) -> Result<(), Failure> {
    if c.resume.is_some() {
        return Ok(());
    }
    let held = [CHECKPOINT_FILE, LOG_FILE].into_iter().find(|f| c.out.join(f).exists());
    match held {
        Some(f) => Err(fail(
            EXIT_USAGE,
            format!(
                "{}: already holds a training run ({f}); continue it with --resume {} or choose another --out",
                c.out.display(),
                c.checkpoint().display()
            ),
        )),
        None => Ok(()),
    }
}

fn sampler_meta(state: &impl serde::Serialize) -> BTreeMap<String, String> {
    BTreeMap::from([("sampler".to_string(), serde_json::to_string(state).unwrap_or_default())])
}

fn restore_state<T: serde::de::DeserializeOwned>(meta: &BTreeMap<String, String>) -> Result<T, Failure> {
    let s = meta.get("sampler").ok_or_else(|| fail(EXIT_BAD_INPUT, "checkpoint has no sampler state"))?;
    serde_json::from_str(s).map_err(|e| fail(EXIT_BAD_INPUT, format!("checkpoint sampler state: {e}")))
}

// ---------------------------------------------------------------- train-encoder

pub fn run_encoder(a: TrainEncoderArgs, v: Verbosity) -> Result<(), Failure> {
    let c = &a.common;
    non_negative("--attribute-weight", a.attribute_weight)?;
    non_negative("--export-rms", a.export_rms)?;
    let ds = open_dataset(c)?;
    let pool = thread_pool(c.threads as usize)?;
    let train_classes = ds.class_ids(Split::TrainVal).len();
    let (mut t, state) = match &c.resume {
        Some(p) => {
            let (t, meta) = load_sje(p, Arc::clone(&pool))?;
            (t, Some(restore_state(&meta)?))
        }
        None => {
            let cfg = ModelConfig::builtin(&a.config)?;
            if a.batch > train_classes {
                return Err(fail(
                    EXIT_USAGE,
                    format!("--batch {} exceeds the {train_classes} training classes", a.batch),
                ));
            }
            let o = SjeOptions {
                batch: a.batch,
                lr: a.lr,
                iters_per_epoch: train_classes,
                seed: c.seed,
                cosine_scale: a.cosine_scale,
                attribute_weight: a.attribute_weight,
                attribute_sizes: if a.attribute_weight > 0.0 { LABEL_SIZES.to_vec() } else { Vec::new() },
                ..SjeOptions::default()
            };
            (SjeTrainer::new(&cfg, o, Arc::clone(&pool))?, None)
        }
    };
    let cfg = t.config.clone();
    let labels_of_class = match t.heads.is_some() {
        true => dataset_labels(&ds, "--attribute-weight").map_err(|e| fail(EXIT_USAGE, e))?,
        false => Vec::new(),
    };
    let mut labels = Vec::new();
    let mut scfg = SamplerConfig::encoder(t.options.seed);
    scfg.batch_size = t.options.batch;
    let mut sampler = EncoderSampler::new(&ds, scfg).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
    if let Some(s) = state {
        sampler.restore(s).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
    }
    let batches = Prefetcher::encoder(Arc::new(Loader::new(Arc::clone(&ds))), sampler, 4);
    let mut held = HeldOut::load(&ds, &cfg).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
    held.cosine = t.options.cosine_scale > 0.0;
    let mut log = Log::open(&c.out, t.step)?;
    let ckpt = c.checkpoint();
    let bar = progress(c.steps, t.step, v);
    let start = Instant::now();
    while t.step < c.steps {
        let batch = batches.next().map_err(|e| fail(EXIT_BAD_INPUT, e))?;
        labels.clear();
        labels.extend(batch.classes.iter().filter_map(|&c| labels_of_class.get(c)).flatten());
        let (loss, attribute_loss) = t.step(&batch.images, &batch.texts, &labels)?;
        bar.set_position(t.step);
        bar.set_message(format!("loss {loss:.4} lr {:.2e}", t.lr()));
        let elapsed_s = start.elapsed().as_secs_f64();
        let mut entry = serde_json::json!({"step": t.step, "loss": loss, "lr": t.lr(), "elapsed_s": elapsed_s});
        if t.heads.is_some() {
            entry["attribute_loss"] = attribute_loss.into();
        }
        log.write(entry)?;
        let done = t.step == c.steps;
        if (a.eval_every > 0 && t.step % a.eval_every == 0) || done {
            let z = held.evaluate(&mut t.text, &mut t.image, &cfg, &pool);
            bar.println(format!(
                "step {}: zero-shot top-1 {:.3}, precision@50 {:.3} ({} held-out classes, {} images)",
                t.step, z.top1, z.precision_at_50, z.classes, z.images
            ));
            log.write(serde_json::json!({"step": t.step, "zero_shot": z}))?;
        }
        if t.step % c.checkpoint_every.max(1) == 0 || done {
            save_sje(&ckpt, &t, &sampler_meta(&batch.state))?;
        }
    }
    bar.finish_and_clear();
    // Exported at the asked scale with every score unchanged (the checkpoint keeps the trained
    // values, so resuming is exact).
    let rms = training_embedding_rms(&ds, &mut t.text, &cfg, &pool);
    if a.export_rms > 0.0 {
        if !(rms.is_finite() && rms > 0.0) {
            let m = format!("text embeddings of the training captions have RMS length {rms}: cannot rescale");
            return Err(fail(EXIT_BAD_INPUT, m));
        }
        rescale_embeddings(&mut t.text, &mut t.image, a.export_rms / rms)?;
    }
    let out = c.out.join("encoder.safetensors");
    save_weights(&out, &cfg, &[Network::Encoder], &t.text.tensors(), DType::F32)?;
    // θ beside φ: `text2img eval` scores zero-shot retrieval with both.
    let image_out = c.out.join("image_encoder.safetensors");
    save_image_encoder(&image_out, &t.image, &cfg, DType::F32, t.options.cosine_scale > 0.0)?;
    if v > Verbosity::Quiet {
        eprintln!(
            "wrote {}, {} and {} ({} steps, {:.0} s; text embeddings of RMS length {rms:.3} exported at {})",
            out.display(),
            image_out.display(),
            ckpt.display(),
            t.step,
            start.elapsed().as_secs_f64(),
            if a.export_rms > 0.0 { a.export_rms } else { rms }
        );
    }
    Ok(())
}

/// A usage error unless `v` is a finite number ≥ 0.
fn non_negative(flag: &str, v: f32) -> Result<(), Failure> {
    match v.is_finite() && v >= 0.0 {
        true => Ok(()),
        false => Err(fail(EXIT_USAGE, format!("{flag} must be a finite number ≥ 0, got {v}"))),
    }
}

/// A usage error unless `v` is a finite number > 0 (`what`: "rate", "multiple").
fn positive(flag: &str, what: &str, v: f32) -> Result<(), Failure> {
    match v.is_finite() && v > 0.0 {
        true => Ok(()),
        false => Err(fail(EXIT_USAGE, format!("{flag} must be a positive {what}, got {v}"))),
    }
}

// ---------------------------------------------------------------- train (GAN)

/// Captions of the sample grid: some of training classes, some of held-out ones.
fn sample_captions(ds: &Dataset) -> Vec<String> {
    let mut out = Vec::new();
    for split in [Split::TrainVal, Split::HeldOut] {
        let classes = ds.class_ids(split);
        for &c in classes.iter().step_by((classes.len() / 4).max(1)).take(4) {
            if let Some(item) = ds.items().iter().find(|it| it.class == c) {
                out.push(item.captions[0].clone());
            }
        }
    }
    out
}

/// Writes a grid (captions down, 8 noises across) from G's current weights, BN folded.
/// Returns the mean pairwise distance of images of one caption (a collapse signal).
fn sample_grid(
    t: &GanTrainer,
    enc: &WeightSet,
    captions: &[String],
    path: &Path,
    pool: &Arc<rayon::ThreadPool>,
) -> Result<f32, Failure> {
    let cfg = &t.config;
    let ws = WeightSet::from_tensors(cfg.clone(), &[Network::Generator], t.g.tensors())?;
    let mut encoder = Session::new(Arc::new(build_encoder(enc)?), captions.len(), Arc::clone(pool), Backend::Cpu);
    let (l, per) = (cfg.text.doc_length, 70 * cfg.text.doc_length);
    for (c, o) in captions.iter().zip(encoder.input_mut(0).chunks_mut(per)) {
        encode_into(c, l, o);
    }
    encoder.run();
    let emb = encoder.output(0).to_vec();
    let cols = 8;
    let rows = captions.len() * cols;
    let mut g = Session::new(Arc::new(build_generator_for(&ws, Some(rows))?), rows, Arc::clone(pool), Backend::Cpu);
    let (nz, e) = (cfg.generator.nz, cfg.encoder.embed_dim);
    for (r, row) in emb.chunks(e).enumerate() {
        for j in 0..cols {
            let idx = r * cols + j;
            normal_noise(0x5a4d_504c_4553, j as u64, &mut g.input_mut(0)[idx * nz..(idx + 1) * nz]);
            g.input_mut(1)[idx * e..(idx + 1) * e].copy_from_slice(row);
        }
    }
    g.run();
    let imgs: Vec<&[f32]> = g.output(0).chunks(IMAGE_LEN).collect();
    let tiles: Vec<Rgb8> = imgs.iter().map(|x| Rgb8::from_chw(x, 64, 64)).collect();
    write_png(path, &Rgb8::grid(&tiles, cols, 2), &[("captions".into(), captions.join(" | "))])
        .map_err(|e| io_fail(path, e))?;
    Ok(diversity(&imgs, cols))
}

/// Mean RMS distance between images in the same row of `cols`.
pub fn diversity(imgs: &[&[f32]], cols: usize) -> f32 {
    let (mut sum, mut n) = (0.0f64, 0usize);
    for row in imgs.chunks(cols) {
        for i in 0..row.len() {
            for j in i + 1..row.len() {
                let d: f64 = row[i].iter().zip(row[j]).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
                sum += (d / row[i].len() as f64).sqrt();
                n += 1;
            }
        }
    }
    (sum / n.max(1) as f64) as f32
}

fn gan_message(s: &StepStats) -> String {
    format!(
        "D {:.3} G {:.3} acc r/w/f {:.2}/{:.2}/{:.2}{}",
        s.d_loss,
        s.g_loss,
        s.d_real_acc,
        s.d_wrong_acc,
        s.d_fake_acc,
        if s.d_class > 0.0 { format!(" class {:.2}", s.d_class_acc) } else { String::new() }
    )
}

/// The model config of a new GAN run: the encoder file's, or --config's G and D around it, with
/// --ngf and --ndf in place of its widths and --d-act-after-deep and --g-refine switched on
/// where given.
fn gan_config(a: &TrainArgs, enc: &WeightSet) -> Result<ModelConfig, Failure> {
    let mut cfg = match &a.config {
        None => enc.config().clone(),
        Some(name) => {
            let cfg = ModelConfig::builtin(name)?;
            if cfg.encoder != enc.config().encoder || cfg.text != enc.config().text {
                return Err(fail(
                    EXIT_BAD_INPUT,
                    format!("--config {name}: its encoder differs from that of {}", a.encoder.display()),
                ));
            }
            cfg
        }
    };
    cfg.generator.ngf = a.ngf.unwrap_or(cfg.generator.ngf);
    cfg.discriminator.ndf = a.ndf.unwrap_or(cfg.discriminator.ndf);
    cfg.discriminator.act_after_deep |= a.d_act_after_deep;
    cfg.generator.refine |= a.g_refine;
    cfg.validate().map_err(|e| fail(EXIT_USAGE, e))?;
    Ok(cfg)
}

/// G's and D's learning rate in the paper (Adam, β1 0.5).
const PAPER_LR: f32 = 2e-4;

/// The --vae-kl weight when only --vae is given (BicycleGAN's λ_KL).
const DEFAULT_VAE_KL: f32 = 0.01;
/// The largest `--d-shift`: a quarter of the image, past which the shape often leaves it.
const MAX_D_SHIFT: u32 = 16;

/// Checks the GAN flags' values before anything is read, so a bad flag fails at once; returns the
/// VAE weights given, by flag.
fn check_gan_flags(a: &TrainArgs) -> Result<[(&'static str, Option<f32>); 4], Failure> {
    non_negative("--max-loss", a.max_loss)?;
    if let Some(w) = a.mode_seeking {
        non_negative("--mode-seeking", w)?;
    }
    if let Some(k) = a.mode_seeking_cell.filter(|&k| k == 0 || 64 % k != 0) {
        return Err(fail(EXIT_USAGE, format!("--mode-seeking-cell must divide 64 (1, 2, 4, …, 64), got {k}")));
    }
    if let Some(w) = a.classifier {
        non_negative("--classifier", w)?;
    }
    if let Some(x) = a.lr_d_scale {
        positive("--lr-d-scale", "multiple", x)?;
    }
    if let Some(lr) = a.lr {
        positive("--lr", "rate", lr)?;
    }
    if let Some(r) = a.mode_seeking_target {
        non_negative("--mode-seeking-target", r)?;
    }
    if let Some(f) = a.hard_wrong.filter(|f| !(0.0..=1.0).contains(f)) {
        return Err(fail(EXIT_USAGE, format!("--hard-wrong must be a fraction in [0, 1], got {f}")));
    }
    if let Some(d) = a.ema.filter(|d| !(0.0..1.0).contains(d)) {
        return Err(fail(EXIT_USAGE, format!("--ema must be a decay in [0, 1), got {d}")));
    }
    let size_flags = [
        ("--ngf", a.ngf.is_some()),
        ("--ndf", a.ndf.is_some()),
        ("--d-act-after-deep", a.d_act_after_deep),
        ("--g-refine", a.g_refine),
    ];
    if let (Some(_), Some(flag)) = (&a.common.resume, size_flags.iter().find(|f| f.1)) {
        return Err(fail(EXIT_USAGE, format!("{}: a resumed run keeps its checkpoint's networks", flag.0)));
    }
    let vae_flags = [
        ("--vae", a.vae),
        ("--vae-kl", a.vae_kl),
        ("--vae-shape-weight", a.vae_shape_weight),
        ("--vae-latent", a.vae_latent),
    ];
    for (flag, w) in vae_flags {
        if let Some(w) = w {
            non_negative(flag, w)?;
        }
    }
    Ok(vae_flags)
}

pub fn run_gan(a: TrainArgs, v: Verbosity) -> Result<(), Failure> {
    let c = &a.common;
    // Before the data and the caption embeddings: a missing GPU fails at once.
    let device = a.device.resolve()?;
    let vae_flags = check_gan_flags(&a)?;
    let enc = WeightSet::open(&a.encoder, LoadMode::Mmap)?;
    enc.require(Network::Encoder)?;
    let ds = open_dataset(c)?;
    let pool = thread_pool(c.threads as usize)?;
    let (mut t, state) = match &c.resume {
        Some(p) => {
            let (t, meta) = load_gan(p, Arc::clone(&pool))?;
            if t.config.encoder != enc.config().encoder {
                return Err(fail(EXIT_BAD_INPUT, "the checkpoint's encoder config differs from --encoder's"));
            }
            (t, Some(restore_state(&meta)?))
        }
        None => {
            let train_items = ds.item_ids(Split::TrainVal).len();
            let o = GanOptions {
                batch: a.batch,
                cls: !a.no_cls,
                int: !a.no_int,
                lr: a.lr.unwrap_or(PAPER_LR),
                lr_halve_every: a.lr_halve_every,
                iters_per_epoch: train_items.div_ceil(a.batch.max(1)),
                seed: c.seed,
                mode_seeking: a.mode_seeking.unwrap_or(0.0),
                mode_seeking_cell: a.mode_seeking_cell.unwrap_or(1),
                mode_seeking_target: a.mode_seeking_target.unwrap_or(0.0),
                hard_wrong: a.hard_wrong.unwrap_or(0.0),
                ema: a.ema.unwrap_or(0.0),
                lr_decay: a.lr_decay,
                lr_d_scale: a.lr_d_scale.unwrap_or(1.0),
                ..GanOptions::default()
            };
            (GanTrainer::new(&gan_config(&a, &enc)?, o, Arc::clone(&pool))?, None)
        }
    };
    if let (Some(w), Some(_)) = (a.mode_seeking, &c.resume) {
        t.set_mode_seeking(w, Arc::clone(&pool));
    }
    if let (Some(k), Some(_)) = (a.mode_seeking_cell, &c.resume) {
        t.options.mode_seeking_cell = k;
    }
    if let (Some(r), Some(_)) = (a.mode_seeking_target, &c.resume) {
        t.options.mode_seeking_target = r;
    }
    // Bool flags switch on (new runs and resumes alike) but never off.
    t.options.mode_seeking_centred |= a.mode_seeking_centred;
    t.options.mode_seeking_mask |= a.mode_seeking_mask;
    if let (Some(f), Some(_)) = (a.hard_wrong, &c.resume) {
        t.options.hard_wrong = f;
    }
    if let (Some(d), Some(_)) = (a.lr_decay, &c.resume) {
        t.options.lr_decay = Some(d);
    }
    if let (Some(lr), Some(_)) = (a.lr, &c.resume) {
        t.options.lr = lr;
    }
    if let (Some(x), Some(_)) = (a.lr_d_scale, &c.resume) {
        t.options.lr_d_scale = x;
    }
    if let (Some(d), Some(_)) = (a.ema, &c.resume) {
        t.set_ema(d)?;
    }
    if vae_flags.iter().any(|(_, w)| w.is_some()) {
        let now = t.options.vae_weights();
        let w = VaeWeights {
            rebuild: a.vae.unwrap_or(now.rebuild),
            kl: a.vae_kl.unwrap_or(if now.kl > 0.0 { now.kl } else { DEFAULT_VAE_KL }),
            shape: a.vae_shape_weight.unwrap_or(now.shape),
            latent: a.vae_latent.unwrap_or(now.latent),
        };
        t.set_vae(w, Arc::clone(&pool))?;
    }
    // The classifier's read-out and width are fixed once D has one.
    let shaped = [
        (a.classifier_pool, t.options.classifier_pool, "--classifier-pool", "not pooled"),
        (a.classifier_twin, t.options.classifier_twin, "--classifier-twin", "without a twin"),
    ];
    for (asked, has, flag, what) in shaped {
        if asked && t.classes() > 0 && !has {
            return Err(fail(EXIT_USAGE, format!("{flag}: the checkpoint's D already has its classifier, {what}")));
        }
    }
    t.options.classifier_pool |= a.classifier_pool;
    t.options.classifier_twin |= a.classifier_twin;
    if let Some(sc) = a.classifier_twin_scale {
        if !(sc.is_finite() && sc >= 0.0) {
            return Err(fail(EXIT_USAGE, format!("--classifier-twin-scale must be ≥ 0, got {sc}")));
        }
        if !t.options.classifier_twin {
            return Err(fail(EXIT_USAGE, "--classifier-twin-scale: no twin classifier (add --classifier-twin)"));
        }
        t.options.classifier_twin_scale = sc;
    }
    if let Some(w) = a.classifier_fake {
        if !(w.is_finite() && w >= 0.0) {
            return Err(fail(EXIT_USAGE, format!("--classifier-fake must be ≥ 0, got {w}")));
        }
        if w > 0.0 && !t.options.classifier_twin {
            return Err(fail(EXIT_USAGE, "--classifier-fake: no twin classifier (add --classifier-twin)"));
        }
        t.options.classifier_fake = w;
    }
    if let Some(n) = a.d_shift {
        if n > MAX_D_SHIFT {
            return Err(fail(EXIT_USAGE, format!("--d-shift {n}: at most {MAX_D_SHIFT} pixels of a 64-pixel image")));
        }
        t.options.d_shift = n;
    }
    if let Some(on) = a.d_flip {
        t.options.d_flip = on;
    }
    if let Some(p) = a.d_augment_p {
        if !(0.0..=1.0).contains(&p) {
            return Err(fail(EXIT_USAGE, format!("--d-augment-p {p}: a chance, in [0, 1]")));
        }
        t.options.d_augment_p = p;
    }
    if let Some(w) = a.classifier.filter(|&w| w > 0.0 || c.resume.is_some()) {
        let sizes = if w > 0.0 { IMAGE_LABEL_SIZES.to_vec() } else { Vec::new() };
        t.set_classifier(&sizes, w, Arc::clone(&pool))?;
    }
    for (on, flag) in [(a.classifier_pool, "--classifier-pool"), (a.classifier_twin, "--classifier-twin")] {
        if on && t.classes() == 0 {
            return Err(fail(EXIT_USAGE, format!("{flag}: D has no classifier (add --classifier W)")));
        }
    }
    let labels_of_item = match t.options.classifier_weight > 0.0 {
        true => image_labels(&ds, "--classifier").map_err(|e| fail(EXIT_USAGE, e))?,
        false => Vec::new(),
    };
    let mut labels = Vec::new();
    let table = caption_table(&enc, &a.encoder, &ds, &c.out, &pool, v)?;
    let mut scfg = SamplerConfig::gan(&ds, t.options.seed);
    let shapes_of_item = shape_geometry(&t, &ds, &scfg)?;
    let mut shapes = Vec::new();
    scfg.hard_wrong = t.options.hard_wrong;
    scfg.batch_size = t.options.batch;
    let mut sampler = GanSampler::new(&ds, scfg).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
    if let Some(s) = state {
        sampler.restore(s).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
    }
    let k = scfg.captions_per_image;
    let batches = Prefetcher::gan(Arc::new(Loader::new(Arc::clone(&ds))), sampler, 4);
    let captions = sample_captions(&ds);
    let mut log = Log::open(&c.out, t.step)?;
    let ckpt = c.checkpoint();
    let bar = progress(c.steps, t.step, v);
    let start = Instant::now();
    let first = t.step;
    let mut text = vec![0.0; t.options.batch * enc.config().encoder.embed_dim];
    let mut recent = RecentTexts::new(text.len());
    let mut gpu = GpuSteps::open(device, &t)?;
    let mut saved = t.step;
    while t.step < c.steps {
        let batch = batches.next().map_err(|e| fail(EXIT_BAD_INPUT, e))?;
        table.mean_into(&batch.items, &batch.captions, k, &mut text);
        recent.push(&text);
        labels.clear();
        labels.extend(batch.items.iter().filter_map(|&i| labels_of_item.get(i)).flatten());
        shapes.clear();
        shapes.extend(batch.items.iter().filter_map(|&i| shapes_of_item.get(i)));
        let inputs = GanBatch { real: &batch.real, wrong: &batch.wrong, text: &text, labels: &labels, shapes: &shapes };
        let s = gpu.step(&mut t, &inputs)?;
        let ips = ((t.step - first) * t.options.batch as u64) as f64 / start.elapsed().as_secs_f64();
        bar.set_position(t.step);
        bar.set_message(format!("{} {ips:.1} img/s", gan_message(&s)));
        let mut row = serde_json::to_value(s).unwrap_or_default();
        row["images_per_s"] = serde_json::json!(ips);
        let done = t.step == c.steps;
        let sample = (a.sample_every > 0 && t.step % a.sample_every == 0) || done;
        let export_now = a.export_every > 0 && t.step % a.export_every == 0;
        let checkpoint_now = t.step % c.checkpoint_every.max(1) == 0 || done;
        if sample || export_now || checkpoint_now {
            // What follows reads the trainer's networks: bring them back from the GPU.
            gpu.sync(&mut t)?;
        }
        if sample {
            let path = c.out.join(format!("samples_{:06}.png", t.step));
            let div = sample_grid(&t, &enc, &captions, &path, &pool)?;
            row["sample_diversity"] = serde_json::json!(div);
            if div < 0.02 {
                bar.println(format!(
                    "step {}: samples of one caption barely differ (diversity {div:.4}): mode collapse?",
                    t.step
                ));
            }
        }
        log.write(row)?;
        if let Some(msg) = divergence(&s, &t.options, a.max_loss) {
            bar.finish_and_clear();
            let kept = format!("the checkpoint {} (step {saved}) and the exports are kept", ckpt.display());
            return Err(fail(EXIT_DIVERGED, format!("step {}: {msg}: the run diverged; {kept}", t.step)));
        }
        if export_now {
            export(&a, &t, &enc, (&recent, &pool), &format!("model-{:06}", t.step), v)?;
        }
        if checkpoint_now {
            save_gan(&ckpt, &t, &sampler_meta(&batch.state))?;
            saved = t.step;
        }
    }
    bar.finish_and_clear();
    export(&a, &t, &enc, (&recent, &pool), "model", v)?;
    if v > Verbosity::Quiet {
        eprintln!(
            "trained to step {} in {:.0} s; checkpoint {}",
            t.step,
            start.elapsed().as_secs_f64(),
            ckpt.display()
        );
    }
    Ok(())
}

/// Why a step's losses say the run diverged (D's loss, or G's without its KL term, above
/// `max_loss`; or either, or the KL, not a number), or None; `max_loss` 0 turns the check off.
fn divergence(s: &StepStats, o: &GanOptions, max_loss: f32) -> Option<String> {
    if max_loss <= 0.0 {
        return None;
    }
    if s.kl.is_nan() {
        return Some("the VAE term's KL is not a number".into());
    }
    let g = if o.vae_kl > 0.0 { "G (less its KL term)" } else { "G" };
    [("D", s.d_loss), (g, s.g_loss_without_kl(o))]
        .into_iter()
        .find(|&(_, l)| l.is_nan() || l > max_loss)
        .map(|(who, l)| format!("{who}'s loss {l} is above --max-loss {max_loss}"))
}

/// The shapes of every item, (x, y, radius) in pixels of the training images, when the --vae
/// term runs with its shape weight (else none). The images must reach G as they are on disk
/// (64 × 64, no crop or flip), or the shapes would not be where the map says.
fn shape_geometry(t: &GanTrainer, ds: &Dataset, scfg: &SamplerConfig) -> Result<Vec<[f32; 3]>, Failure> {
    if !t.shape_weight_on() {
        return Ok(Vec::new());
    }
    if scfg.augment != Augment::none(64) {
        return Err(fail(EXIT_USAGE, "--vae-shape-weight needs images used as they are (a shapes dataset)"));
    }
    image_geometry(ds, "--vae-shape-weight").map_err(|e| fail(EXIT_USAGE, e))
}

/// Where the GAN steps run: the CPU trainer itself, or its state on a GPU (`CudaGan`), which is
/// written back into the trainer before anything reads its networks.
enum GpuSteps {
    Cpu,
    #[cfg(feature = "cuda")]
    Cuda(Box<text2img::cuda::CudaGan>),
}

impl GpuSteps {
    #[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
    fn open(device: Device, t: &GanTrainer) -> Result<GpuSteps, Failure> {
        match device {
            Device::Cpu => Ok(GpuSteps::Cpu),
            #[cfg(feature = "cuda")]
            Device::Cuda(n) => {
                let dev = text2img::cuda::CudaDevice::shared(n)?;
                Ok(GpuSteps::Cuda(Box::new(text2img::cuda::CudaGan::from_trainer(dev, t)?)))
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => {
                Err(fail(super::EXIT_DEVICE, "this build has no CUDA backend (build with --features cuda)"))
            }
        }
    }

    fn step(&mut self, t: &mut GanTrainer, batch: &GanBatch) -> Result<StepStats, Failure> {
        match self {
            GpuSteps::Cpu => Ok(t.step(batch)?),
            #[cfg(feature = "cuda")]
            GpuSteps::Cuda(g) => {
                let s = g.step(batch)?;
                t.step = g.step;
                Ok(s)
            }
        }
    }

    /// The trainer's networks, optimizer state and step up to date.
    #[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
    fn sync(&self, t: &mut GanTrainer) -> Result<(), Failure> {
        match self {
            GpuSteps::Cpu => Ok(()),
            #[cfg(feature = "cuda")]
            GpuSteps::Cuda(g) => Ok(g.write_back(t)?),
        }
    }
}

/// Batches of text vectors whose rows estimate the averaged G's batch-norm statistics.
const EMA_BN_PASSES: usize = 32;

/// The text vectors of the last `EMA_BN_PASSES` training batches (a ring).
struct RecentTexts {
    data: Vec<f32>,
    per_batch: usize,
    pushed: usize,
}

impl RecentTexts {
    fn new(per_batch: usize) -> RecentTexts {
        RecentTexts { data: vec![0.0; EMA_BN_PASSES * per_batch], per_batch, pushed: 0 }
    }

    fn push(&mut self, text: &[f32]) {
        let slot = (self.pushed % EMA_BN_PASSES) * self.per_batch;
        self.data[slot..slot + self.per_batch].copy_from_slice(text);
        self.pushed += 1;
    }

    /// The batches held so far (whole rows).
    fn rows(&self) -> &[f32] {
        &self.data[..self.pushed.min(EMA_BN_PASSES) * self.per_batch]
    }
}

/// out/`stem`.safetensors: encoder + generator + discriminator, ready for `generate`. With the
/// moving average on, that generator is the average and out/`stem`-raw.safetensors the raw G.
fn export(
    a: &TrainArgs,
    t: &GanTrainer,
    enc: &WeightSet,
    (recent, pool): (&RecentTexts, &Arc<rayon::ThreadPool>),
    stem: &str,
    v: Verbosity,
) -> Result<(), Failure> {
    if let Some(p) = &t.posterior {
        // E's mean as a style encoder, for `style-transfer` / `eval --style` on this export.
        let path = a.common.out.join(format!("{stem}-style.safetensors"));
        save_style_encoder(&path, &p.style_encoder(t.config.generator.nz)?, &t.config)?;
    }
    match t.ema_generator(recent.rows(), Arc::clone(pool)) {
        Some(g_ema) => {
            write_model(a, t, &g_ema, enc, &format!("{stem}.safetensors"), v)?;
            write_model(a, t, &t.g, enc, &format!("{stem}-raw.safetensors"), v)
        }
        None => write_model(a, t, &t.g, enc, &format!("{stem}.safetensors"), v),
    }
}

/// out/`name`: the encoder, generator `g` and t's discriminator.
fn write_model(
    a: &TrainArgs,
    t: &GanTrainer,
    g: &TrainNet,
    enc: &WeightSet,
    name: &str,
    v: Verbosity,
) -> Result<(), Failure> {
    let mut tensors: Vec<(String, Tensor)> = g.tensors();
    tensors.extend(t.d.tensors().into_iter().filter(|(n, _)| n != CLASSIFIER_WEIGHT));
    let enc_net = TrainNet::from_weights(enc, Network::Encoder)?;
    tensors.extend(enc_net.tensors());
    let dtype = if a.export_dtype == "f16" { DType::F16 } else { DType::F32 };
    let path = a.common.out.join(name);
    save_weights(&path, &t.config, &Network::ALL, &tensors, dtype)?;
    if v > Verbosity::Quiet {
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

// ---------------------------------------------------------------- train-style

/// Captions per training image that S's steps draw from (embedded once).
/// A run's checkpoint and log, in its --out folder.
const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
const LOG_FILE: &str = "log.jsonl";

impl Common {
    /// Where this run's checkpoint is written.
    fn checkpoint(&self) -> PathBuf {
        self.out.join(CHECKPOINT_FILE)
    }
}

const STYLE_CAPTIONS_PER_IMAGE: usize = 2;

pub fn run_style(a: TrainStyleArgs, v: Verbosity) -> Result<(), Failure> {
    let c = &a.common;
    let ws = WeightSet::open(&weights_path(&a.model)?, LoadMode::Mmap)?;
    ws.require(Network::Encoder)?;
    ws.require(Network::Generator)?;
    let ds = open_dataset(c)?;
    let pool = thread_pool(c.threads as usize)?;
    let mut t = match &c.resume {
        Some(p) => {
            let t = load_style(p, &ws, Arc::clone(&pool))?.0;
            if let Some(c) = a.captions.filter(|&c| c != t.options.captions) {
                let was = t.options.captions.name();
                let msg = format!("{}: trained on {was} captions, not --captions {}", p.display(), c.name());
                return Err(fail(EXIT_BAD_INPUT, msg));
            }
            t
        }
        None => {
            let captions = a.captions.unwrap_or_default();
            let o = StyleOptions { batch: a.batch, lr: a.lr, seed: c.seed, captions };
            StyleTrainer::new(&ws, o, Arc::clone(&pool))?
        }
    };
    let ids = ds.item_ids(Split::TrainVal);
    let captions = ids.iter().map(|&i| ds.items()[i].captions.as_slice());
    let texts = style_captions(captions, STYLE_CAPTIONS_PER_IMAGE, t.options.captions);
    if texts.is_empty() {
        let which = if t.options.captions == StyleCaptions::Content {
            "training captions that name no background"
        } else {
            "training captions"
        };
        return Err(fail(EXIT_BAD_INPUT, format!("{}: no {which}", c.data.display())));
    }
    let table = embed_texts(&ws, &texts, Arc::clone(&pool))?;
    let e = ws.config().encoder.embed_dim;
    let mut batch = vec![0.0f32; t.options.batch * e];
    let mut log = Log::open(&c.out, t.step)?;
    let ckpt = c.checkpoint();
    let bar = progress(c.steps, t.step, v);
    let start = Instant::now();
    while t.step < c.steps {
        // Captions of step s are a pure function of (seed, s): a resumed run draws the same.
        let mut rng = Pcg32::derive(t.options.seed ^ 0x5354_594c, t.step);
        for row in batch.chunks_mut(e) {
            let k = rng.index(texts.len());
            row.copy_from_slice(&table[k * e..(k + 1) * e]);
        }
        let loss = t.step(&batch)?;
        bar.set_position(t.step);
        bar.set_message(format!("loss {loss:.4}"));
        log.write(serde_json::json!({"step": t.step, "loss": loss, "elapsed_s": start.elapsed().as_secs_f64()}))?;
        if t.step % c.checkpoint_every.max(1) == 0 || t.step == c.steps {
            save_style(&ckpt, &t, &BTreeMap::new())?;
        }
    }
    bar.finish_and_clear();
    let out = c.out.join("style.safetensors");
    save_style_encoder(&out, &t.s, &t.config)?;
    if v > Verbosity::Quiet {
        eprintln!(
            "wrote {} and {} ({} steps, {:.0} s)",
            out.display(),
            ckpt.display(),
            t.step,
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(d: f32, g_gan: f32, kl: f32, o: &GanOptions) -> StepStats {
        StepStats { d_loss: d, g_loss: g_gan + o.vae_kl * kl, kl, ..StepStats::default() }
    }

    #[test]
    fn the_guard_reads_g_without_the_kl_term() {
        let o = GanOptions { vae: 10.0, vae_kl: 0.05, ..GanOptions::default() };
        // Session 23's step 7,004: a fresh encoder's KL 2,127, G's loss 114 with it, 8 without.
        assert_eq!(divergence(&stats(1.3, 8.0, 2127.0, &o), &o, 100.0), None);
        let g = divergence(&stats(1.3, 150.0, 1.0, &o), &o, 100.0).expect("G past the limit");
        assert!(g.starts_with("G (less its KL term)'s loss 150"), "{g}");
        let d = divergence(&stats(101.0, 1.0, 1.0, &o), &o, 100.0).expect("D past the limit");
        assert!(d.starts_with("D's loss 101"), "{d}");
        let kl = divergence(&stats(1.0, 1.0, f32::NAN, &o), &o, 100.0).expect("a NaN KL");
        assert!(kl.contains("KL is not a number"), "{kl}");
        assert_eq!(divergence(&stats(f32::NAN, f32::NAN, f32::NAN, &o), &o, 0.0), None, "0 turns it off");
    }

    #[test]
    fn without_the_vae_term_the_guard_reads_g_whole() {
        let o = GanOptions::default();
        let g = divergence(&stats(1.0, f32::NAN, 0.0, &o), &o, 100.0).expect("a NaN G");
        assert!(g.starts_with("G's loss NaN"), "{g}");
        assert_eq!(divergence(&stats(99.0, 99.0, 0.0, &o), &o, 100.0), None);
    }
}
