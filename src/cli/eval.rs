//! `text2img eval`: caption fidelity of a model on `shapes`, by an independent judge, with the
//! judge's own accuracy on real images, sample diversity against real images, and the text
//! encoder's zero-shot retrieval. `text2img train-judge`: trains the judge's shape classifier.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use rayon::prelude::*;
use rayon::ThreadPool;
use serde::{Deserialize, Serialize};
use text2img::data::image_io::decode_rgb8;
use text2img::data::render::Shape;
use text2img::data::shapes::{class_labels, read_attributes, Attributes, SizeWord, PALETTE};
use text2img::data::{Dataset, DecodeLimits};
use text2img::eval::colour::read;
use text2img::eval::report::{
    all_four_rates, attribute_separation, eval_captions, mean_pairwise_distance, mean_pairwise_spread, read_and_crop,
    separation_captions, standard_error, AttributeSeparation, Attrs, CaptionSet, EvalCaption, Judge, Score, IMAGE_LEN,
};
use text2img::eval::shape_net::{JudgeTraining, ShapeJudge};
use text2img::graph::{thread_pool, Backend};
use text2img::image::{write_png, Rgb8};
use text2img::model::rerank::{best_of, Reranker, MAX_CANDIDATES};
use text2img::model::{Network, TextToImage, WeightSet};
use text2img::train::captions::embed_texts;
use text2img::train::sje::{load_image_encoder, HeldOut, ZeroShot};
use text2img::train::TrainNet;
use text2img::weights::LoadMode;

use super::eval_style::{self, StyleRow, TransferCheck};
use super::generate::{default_file, weights_path};
use super::style::DEFAULT_STYLE;
use super::{fail, Failure, Verbosity, EXIT_BAD_INPUT, EXIT_OUTPUT, EXIT_USAGE};

/// Where eval looks for the judge and the image encoder when not given.
pub const DEFAULT_JUDGE: &str = "weights/judge.safetensors";
pub const DEFAULT_IMAGE_ENCODER: &str = "weights/image_encoder.safetensors";

#[derive(Args)]
pub struct EvalArgs {
    /// Weights file (default as for generate).
    #[arg(short, long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// The judge's shape classifier (default: weights/judge.safetensors).
    #[arg(long, value_name = "FILE")]
    pub judge: Option<PathBuf>,
    /// A `shapes` dataset: the judge's accuracy on its held-out images, the real images'
    /// diversity, and zero-shot retrieval are measured on it.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Image encoder θ for zero-shot retrieval (default: weights/image_encoder.safetensors).
    #[arg(long, value_name = "FILE")]
    pub image_encoder: Option<PathBuf>,
    /// Eval captions per class. The caption is the independent unit (its noises share its
    /// outcome), so this, not --seeds, sets the standard error printed beside "all four".
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub per_class: u32,
    /// Images per caption (noise indices 0..N of the seed).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(2..=64))]
    pub seeds: u32,
    /// Judge the best of K candidates per image, as `generate --rerank K` makes them (the model's
    /// D picks; 1: plain generation).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=MAX_CANDIDATES as i64))]
    pub rerank: u32,
    /// Noise seed, and the seed of the eval captions.
    #[arg(short, long, default_value_t = 0)]
    pub seed: u64,
    /// Also run the disentangling evaluation (needs --data and a style encoder).
    #[arg(long)]
    pub style: bool,
    /// Style encoder S for --style (default: weights/style.safetensors).
    #[arg(long, value_name = "FILE")]
    pub style_model: Option<PathBuf>,
    /// With --style, write the ROC curves to PREFIX.png and PREFIX.csv.
    #[arg(long, value_name = "PREFIX")]
    pub roc: Option<PathBuf>,
    /// Write PREFIX-<set>.png (the first 16 eval captions' images) and PREFIX-<set>.txt (what
    /// the judge read in each).
    #[arg(long, value_name = "PREFIX")]
    pub samples: Option<PathBuf>,
    /// A previous eval's JSON, made with the same --per-class, --seeds and --seed: print each
    /// row's all-four difference from it, with its standard error paired over the same captions.
    #[arg(long, value_name = "FILE")]
    pub against: Option<PathBuf>,
    /// Also write the results as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// CPU threads (0: one per core).
    #[arg(short, long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub threads: u32,
}

#[derive(Args)]
pub struct TrainJudgeArgs {
    /// A `shapes` dataset (`text2img data make shapes`).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Output file.
    #[arg(short, long, default_value = DEFAULT_JUDGE)]
    pub out: PathBuf,
    /// Passes over the training-class images.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub epochs: u32,
    #[arg(short, long, default_value_t = 0)]
    pub seed: u64,
    /// CPU threads (0: one per core).
    #[arg(short, long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub threads: u32,
}

/// The ground truth of a real image as judged attributes.
fn truth(a: &Attributes) -> Result<Attrs, Failure> {
    Attrs::from_attributes(a)
        .ok_or_else(|| fail(EXIT_BAD_INPUT, format!("{}: unknown colour in its attributes", a.image)))
}

/// Real `shapes` images with their attributes: [N, 3, 64, 64] in [-1, 1].
pub struct RealImages {
    pub attrs: Vec<Attributes>,
    pub truth: Vec<Attrs>,
    images: Vec<f32>,
}

impl RealImages {
    fn load(root: &Path) -> Result<RealImages, Failure> {
        let attrs = read_attributes(root).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
        let truth = attrs.iter().map(truth).collect::<Result<Vec<_>, _>>()?;
        let mut images = vec![0.0f32; attrs.len() * IMAGE_LEN];
        let limits = DecodeLimits::default();
        images.par_chunks_mut(IMAGE_LEN).zip(attrs.par_iter()).try_for_each(|(dst, a)| {
            let img = decode_rgb8(&root.join(&a.image), &limits).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
            if img.width != 64 || img.height != 64 {
                return Err(fail(EXIT_BAD_INPUT, format!("{}: not a 64×64 shapes image", a.image)));
            }
            img.to_chw(dst);
            Ok(())
        })?;
        Ok(RealImages { attrs, truth, images })
    }

    pub fn image(&self, i: usize) -> &[f32] {
        &self.images[i * IMAGE_LEN..(i + 1) * IMAGE_LEN]
    }

    /// Indices of the held-out (or training) classes' images.
    pub fn split(&self, held_out: bool) -> Vec<usize> {
        (0..self.attrs.len()).filter(|&i| self.attrs[i].held_out == held_out).collect()
    }
}

pub fn run_train_judge(a: TrainJudgeArgs, v: Verbosity) -> Result<(), Failure> {
    let start = Instant::now();
    let pool = thread_pool(a.threads as usize)?;
    let real = RealImages::load(&a.data)?;
    let (train, val) = (real.split(false), real.split(true));
    let gather = |ids: &[usize]| -> (Vec<f32>, Vec<usize>) {
        let imgs: Vec<f32> = ids.iter().flat_map(|&i| real.image(i).iter().copied()).collect();
        (pool.install(|| read_and_crop(&imgs).1), ids.iter().map(|&i| real.truth[i].shape).collect())
    };
    let (train_crops, train_labels) = gather(&train);
    let o = JudgeTraining { epochs: a.epochs as usize, seed: a.seed, ..JudgeTraining::default() };
    let mut judge = ShapeJudge::train(&train_crops, &train_labels, o, Arc::clone(&pool), |epoch, loss| {
        if v > Verbosity::Quiet {
            eprintln!("epoch {epoch}: loss {loss:.4}");
        }
    })?;
    let (val_crops, val_labels) = gather(&val);
    let predicted = judge.predict(&val_crops);
    let correct = predicted.iter().zip(&val_labels).filter(|(p, l)| p == l).count();
    let accuracy = correct as f64 / val_labels.len().max(1) as f64;
    let meta = BTreeMap::from([
        ("validation_accuracy".to_string(), format!("{accuracy:.4}")),
        ("validation_images".to_string(), val_labels.len().to_string()),
        ("training_images".to_string(), train_labels.len().to_string()),
        ("epochs".to_string(), a.epochs.to_string()),
        ("seed".to_string(), a.seed.to_string()),
    ]);
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| fail(EXIT_OUTPUT, format!("{}: {e}", dir.display())))?;
    }
    judge.save(&a.out, &meta)?;
    println!(
        "shape classifier: {:.2}% correct on {} real images of the held-out classes ({} training images, {:.0} s)",
        100.0 * accuracy,
        val_labels.len(),
        train_labels.len(),
        start.elapsed().as_secs_f64()
    );
    print_table(&[judge_real(&mut Judge::new(judge), &real)]);
    if v > Verbosity::Quiet {
        eprintln!("wrote {}", a.out.display());
    }
    Ok(())
}

/// The judge's own row: real images of the held-out classes.
const REAL_ROW: &str = "real images, held-out classes (the judge's accuracy)";

/// The judge against the ground truth of the real held-out images (each its own unit).
fn judge_real(judge: &mut Judge, real: &RealImages) -> Row {
    let held = real.split(true);
    let imgs: Vec<f32> = held.iter().flat_map(|&i| real.image(i).iter().copied()).collect();
    let judged = judge.judge(&imgs);
    let mut score = Score::default();
    for (j, &i) in judged.iter().zip(&held) {
        score.add(j, &real.truth[i]);
    }
    let rates = all_four_rates(judged.iter().zip(&held).map(|(j, &i)| vec![(j, &real.truth[i])]));
    Row::new(REAL_ROW, score, rates)
}

/// One row of the results table.
#[derive(Serialize)]
struct Row {
    what: String,
    #[serde(flatten)]
    score: Score,
    /// One standard error of the all-four rate (captions as the independent unit).
    all_four_se: f64,
    /// Each caption's all-four rate over its noises (real images: 0 or 1 each), in eval order:
    /// what `--against` pairs.
    all_four_per_caption: Vec<f64>,
}

impl Row {
    fn new(what: &str, score: Score, rates: Vec<f64>) -> Row {
        Row { what: what.to_string(), score, all_four_se: standard_error(&rates), all_four_per_caption: rates }
    }
}

#[derive(Serialize)]
struct Results {
    model: String,
    judge_validation_accuracy: Option<String>,
    rows: Vec<Row>,
    diversity_generated: f32,
    diversity_real: Option<f32>,
    /// Mean pairwise distance (pixels) of the judged shape centres, one description.
    position_spread_generated: f32,
    position_spread_real: Option<f32>,
    zero_shot: Option<ZeroShot>,
    text_attribute_separation: AttributeSeparation,
    image_attribute_separation: Option<AttributeSeparation>,
    style: Option<Vec<StyleRow>>,
    style_transfer: Option<TransferCheck>,
    against: Option<Vec<Paired>>,
    seeds: u32,
    /// Candidates per judged image (the best by D; 1: plain generation).
    rerank: u32,
    per_class: u32,
    seed: u64,
    seconds: f64,
}

/// Generates `seeds` images per caption (each the best of `rerank`'s candidates when given);
/// returns [caption][seed] images, concatenated in caption-major order.
fn generate_all(
    t2i: &mut TextToImage,
    caps: &[EvalCaption],
    (seeds, seed): (u32, u64),
    rerank: &mut Option<(Reranker, usize)>,
) -> Result<Vec<f32>, Failure> {
    const BATCH: usize = 64;
    let s = seeds as usize;
    let mut out = vec![0.0f32; caps.len() * s * IMAGE_LEN];
    for (chunk_i, chunk) in caps.chunks(BATCH).enumerate() {
        let texts: Vec<String> = chunk.iter().map(|c| c.text.clone()).collect();
        let (emb, _) = t2i.embed(&texts)?;
        for k in 0..s {
            let indices = vec![k as u64; chunk.len()];
            let mut draw = |cand: &[u64]| -> Result<Vec<f32>, Failure> {
                t2i.generate_loaded(seed, cand);
                Ok(t2i.images().to_vec())
            };
            let images = match rerank {
                Some((r, n)) => best_of(r, &emb, &indices, *n, draw)?.0,
                None => draw(&indices)?,
            };
            for (j, img) in images.chunks(IMAGE_LEN).enumerate() {
                let at = ((chunk_i * BATCH + j) * s + k) * IMAGE_LEN;
                out[at..at + IMAGE_LEN].copy_from_slice(img);
            }
        }
    }
    Ok(out)
}

fn score_set(what: &str, judged: &[Attrs], caps: &[EvalCaption], seeds: usize) -> Row {
    let mut score = Score::default();
    for (i, j) in judged.iter().enumerate() {
        score.add(j, &caps[i / seeds].truth);
    }
    let groups = judged.chunks(seeds.max(1)).zip(caps).map(|(g, c)| g.iter().map(|j| (j, &c.truth)).collect());
    Row::new(what, score, all_four_rates(groups))
}

/// What `--against` reads of a previous eval's JSON.
#[derive(Deserialize)]
struct Prior {
    model: String,
    rows: Vec<PriorRow>,
    seeds: u32,
    per_class: u32,
    seed: u64,
}

#[derive(Deserialize)]
struct PriorRow {
    what: String,
    all_four_per_caption: Vec<f64>,
}

/// One row's all-four difference from a previous eval on the same captions.
#[derive(Serialize)]
struct Paired {
    what: String,
    this: f64,
    that: f64,
    /// this − that, and its standard error over the captions' differences.
    difference: f64,
    se: f64,
    captions: usize,
}

/// Reads `--against`'s file; it must have been made on the same captions and noises.
fn read_prior(path: &Path, a: &EvalArgs) -> Result<Prior, Failure> {
    let bad = |why: String| fail(EXIT_BAD_INPUT, format!("--against {}: {why}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let p: Prior = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not an eval --json file ({e})")))?;
    if (p.per_class, p.seeds, p.seed) != (a.per_class, a.seeds, a.seed) {
        return Err(bad(format!(
            "made with --per-class {} --seeds {} --seed {}, this eval with {} / {} / {}: other captions, nothing to pair",
            p.per_class, p.seeds, p.seed, a.per_class, a.seeds, a.seed
        )));
    }
    Ok(p)
}

/// Differences of the rows both evals have, caption by caption.
fn pair_rows(prior: &Prior, rows: &[Row]) -> Vec<Paired> {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let pair = |r: &Row| {
        let this = &r.all_four_per_caption;
        let that = &prior.rows.iter().find(|p| p.what == r.what)?.all_four_per_caption;
        if that.len() != this.len() || this.is_empty() {
            return None;
        }
        let diffs: Vec<f64> = this.iter().zip(that).map(|(a, b)| a - b).collect();
        let (this, that) = (mean(this), mean(that));
        let (se, captions) = (standard_error(&diffs), diffs.len());
        Some(Paired { what: r.what.clone(), this, that, difference: this - that, se, captions })
    };
    rows.iter().filter_map(pair).collect()
}

fn print_paired(path: &Path, model: &str, rows: &[Paired]) {
    println!("\nagainst {} ({model}), all four, paired over the same captions:", path.display());
    if rows.is_empty() {
        println!("  no row of it has this eval's captions");
    }
    for p in rows {
        println!(
            "  {}: {:+.1} points ({} against {}), ± {:.1} over {} captions",
            p.what,
            100.0 * p.difference,
            pct(p.this),
            pct(p.that),
            100.0 * p.se,
            p.captions
        );
    }
}

/// Attributes as words: "small red circle on blue" ("nothing" when no shape was found).
fn describe_attrs(a: &Attrs) -> String {
    let colour = a.colour.map_or("no shape", |c| PALETTE[c].name);
    let shape = Shape::ALL[a.shape].name();
    format!("{} {colour} {shape} on {}", a.size.word(), PALETTE[a.background].name)
}

/// PREFIX-<set>.png: the first 16 captions down, their images across; PREFIX-<set>.txt: each
/// caption and what the judge read in each image.
fn write_samples(
    prefix: &Path,
    set: CaptionSet,
    caps: &[EvalCaption],
    images: &[f32],
    judged: &[Attrs],
    s: usize,
) -> Result<(), Failure> {
    const ROWS: usize = 16;
    let name = |ext: &str| {
        let mut p = prefix.as_os_str().to_owned();
        p.push(format!("-{}.{ext}", set.slug()));
        PathBuf::from(p)
    };
    let n = caps.len().min(ROWS);
    let tiles: Vec<Rgb8> = images.chunks(IMAGE_LEN).take(n * s).map(|x| Rgb8::from_chw(x, 64, 64)).collect();
    let png = name("png");
    write_png(&png, &Rgb8::grid(&tiles, s, 2), &[])
        .map_err(|e| fail(EXIT_OUTPUT, format!("cannot write {}: {e}", png.display())))?;
    let mut text = String::new();
    for (i, c) in caps.iter().take(n).enumerate() {
        let reads: Vec<String> = judged[i * s..(i + 1) * s].iter().map(describe_attrs).collect();
        text += &format!("{}\n  want: {}\n  read: {}\n", c.text, describe_attrs(&c.truth), reads.join(" | "));
    }
    let txt = name("txt");
    std::fs::write(&txt, text).map_err(|e| fail(EXIT_OUTPUT, format!("cannot write {}: {e}", txt.display())))
}

/// The real training-class images grouped by full description (class, background and size).
fn real_groups(real: &RealImages) -> Vec<Vec<usize>> {
    let mut groups: BTreeMap<(usize, usize, u8), Vec<usize>> = BTreeMap::new();
    for i in real.split(false) {
        let (a, t) = (&real.attrs[i], &real.truth[i]);
        groups.entry((a.class_id, t.background, t.size as u8)).or_default().push(i);
    }
    groups.into_values().collect()
}

/// Mean pairwise RMS distance, and mean pairwise distance of the judged shape centres, within
/// the real images of one description.
fn real_diversity(real: &RealImages) -> (f32, f32) {
    let groups = real_groups(real);
    let rms = mean_pairwise_distance(groups.iter().map(|g| g.iter().map(|&i| real.image(i)).collect()));
    let centres = |g: &Vec<usize>| g.par_iter().map(|&i| read(real.image(i)).centre()).collect();
    (rms, mean_pairwise_spread(groups.iter().map(centres)))
}

/// Mean pairwise distance of the judged shape centres across the seeds of each caption.
fn generated_spread(images: &[f32], seeds: usize) -> f32 {
    let centres: Vec<Option<[f32; 2]>> = images.par_chunks(IMAGE_LEN).map(|x| read(x).centre()).collect();
    mean_pairwise_spread(centres.chunks(seeds.max(1)).map(|g| g.to_vec()))
}

/// The encoders' zero-shot scores on the held-out classes, and how much colour and shape the
/// image encoder θ carries (class-mean embeddings of the held-out images).
fn zero_shot_of(
    ws: &WeightSet,
    data: &Path,
    image_encoder: &Path,
    pool: &Arc<rayon::ThreadPool>,
) -> Result<(ZeroShot, AttributeSeparation), Failure> {
    let cfg = ws.config();
    let ds = Dataset::open(data).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
    let mut held = HeldOut::load(&ds, cfg).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
    let mut text = TrainNet::from_weights(ws, Network::Encoder)?;
    let (mut image, cosine) = load_image_encoder(image_encoder, cfg.encoder.embed_dim)?;
    held.cosine = cosine;
    let ie = held.embed_images(&mut image, pool);
    let zs = held.evaluate_embedded(&mut text, &ie, cfg, pool);
    let dim = cfg.encoder.embed_dim;
    let mut means: BTreeMap<usize, (Vec<f32>, usize)> = BTreeMap::new();
    for (row, &class) in ie.chunks(dim).zip(held.image_classes()) {
        let (sum, n) = means.entry(class).or_insert_with(|| (vec![0.0; dim], 0));
        sum.iter_mut().zip(row).for_each(|(a, &v)| *a += v);
        *n += 1;
    }
    let (mut emb, mut labels) = (Vec::new(), Vec::new());
    for (class, (sum, n)) in means {
        let Some([shape, colour]) = class_labels(&ds.classes()[class].name) else { continue };
        emb.extend(sum.iter().map(|v| v / n as f32));
        labels.push((colour, shape));
    }
    Ok((zs, attribute_separation(&emb, dim, &labels)))
}

/// How much colour and shape the model's text embedding carries (`attribute_separation`).
fn text_separation(ws: &WeightSet, pool: &Arc<ThreadPool>) -> Result<AttributeSeparation, Failure> {
    let (caps, labels) = separation_captions();
    let texts: Vec<&str> = caps.iter().map(String::as_str).collect();
    let emb = embed_texts(ws, &texts, Arc::clone(pool))?;
    Ok(attribute_separation(&emb, ws.config().encoder.embed_dim, &labels))
}

fn print_separation(what: &str, s: &AttributeSeparation) {
    println!(
        "{what}, mean cosine: same colour, other shape {:.3}; same shape, other colour {:.3}; neither {:.3}",
        s.same_colour_other_shape, s.same_shape_other_colour, s.neither
    );
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn print_table(rows: &[Row]) {
    println!("| images judged | n | background | shape colour | shape kind | size | all four | ± 1 SE |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let [b, c, s, z, all] = r.score.rates().map(pct);
        let se = 100.0 * r.all_four_se;
        println!("| {} | {} | {b} | {c} | {s} | {z} | **{all}** | {se:.1} |", r.what, r.score.images);
    }
    if let Some(r) = rows.first() {
        let kinds = r.score.judged_kinds().into_iter().zip(Shape::ALL).map(|(f, k)| format!("{} {}", k.name(), pct(f)));
        println!("\nshape kinds as judged ({}): {}", r.what, kinds.collect::<Vec<_>>().join(", "));
    }
    // Training and held-out classes: which kinds G cannot draw.
    for r in rows.iter().take(2) {
        let right = r.score.kind_accuracy().into_iter().zip(Shape::ALL);
        let right = right.filter_map(|(f, k)| f.map(|f| format!("{} {}", k.name(), pct(f))));
        println!("shape kind right, per kind asked for ({}): {}", r.what, right.collect::<Vec<_>>().join(", "));
    }
    if let Some(r) = rows.first() {
        let judged = |row: &[usize; 3]| {
            let n = row.iter().sum::<usize>().max(1) as f64;
            let parts = row.iter().zip(SizeWord::ALL).map(|(&k, w)| format!("{} {}", w.word(), pct(k as f64 / n)));
            parts.collect::<Vec<_>>().join(" / ")
        };
        let rows =
            r.score.size_confusion.iter().zip(SizeWord::ALL).map(|(row, w)| format!("{}: {}", w.word(), judged(row)));
        println!("sizes as judged, per size asked for ({}): {}", r.what, rows.collect::<Vec<_>>().join("; "));
    }
}

pub fn run_eval(a: EvalArgs, v: Verbosity) -> Result<(), Failure> {
    if a.style && a.data.is_none() {
        return Err(fail(EXIT_USAGE, "--style needs --data (a shapes dataset)"));
    }
    let start = Instant::now();
    let prior = a.against.as_ref().map(|p| read_prior(p, &a).map(|r| (p.clone(), r))).transpose()?;
    let model = weights_path(&a.model)?;
    let ws = WeightSet::open(&model, LoadMode::Mmap)?;
    let pool = thread_pool(a.threads as usize)?;
    let judge_path = a.judge.clone().unwrap_or_else(|| default_file(DEFAULT_JUDGE));
    let (shape_judge, judge_meta) = ShapeJudge::open(&judge_path, Arc::clone(&pool))?;
    let mut judge = Judge::new(shape_judge);
    let mut t2i = TextToImage::new(&ws, 64, Arc::clone(&pool), Backend::Cpu)?;
    let mut reranker = match a.rerank {
        1 => None,
        k => {
            let r =
                Reranker::new(&ws, Arc::clone(&pool)).map_err(|e| fail(EXIT_BAD_INPUT, format!("--rerank: {e}")))?;
            Some((r, k as usize))
        }
    };
    let s = a.seeds as usize;
    let mut rows = Vec::new();
    let mut generated_train = Vec::new();
    for set in CaptionSet::ALL {
        let caps = eval_captions(set, a.per_class as usize, a.seed);
        let images = generate_all(&mut t2i, &caps, (a.seeds, a.seed), &mut reranker)?;
        let judged = judge.judge(&images);
        rows.push(score_set(set.label(), &judged, &caps, s));
        if let Some(prefix) = &a.samples {
            write_samples(prefix, set, &caps, &images, &judged, s)?;
        }
        if set == CaptionSet::TrainClasses {
            generated_train = images;
        }
        if v == Verbosity::Verbose {
            eprintln!("{}: {} captions × {s} seeds judged", set.label(), caps.len());
        }
    }
    let separation = text_separation(&ws, &pool)?;
    let diversity_generated =
        mean_pairwise_distance(generated_train.chunks(s * IMAGE_LEN).map(|g| g.chunks(IMAGE_LEN).collect()));
    let spread_generated = generated_spread(&generated_train, s);
    let (mut diversity_real, mut spread_real) = (None, None);
    let (mut zero_shot, mut style, mut image_separation) = (None, None, None);
    let mut real_held = 0;
    let mut transfer = None;
    if let Some(data) = &a.data {
        let real = RealImages::load(data)?;
        rows.push(judge_real(&mut judge, &real));
        let (rms, spread) = real_diversity(&real);
        (diversity_real, spread_real) = (Some(rms), Some(spread));
        let ie = a.image_encoder.clone().unwrap_or_else(|| default_file(DEFAULT_IMAGE_ENCODER));
        let (zs, image_sep) = zero_shot_of(&ws, data, &ie, &pool)?;
        (zero_shot, image_separation) = (Some(zs), Some(image_sep));
        if a.style {
            let sm = a.style_model.clone().unwrap_or_else(|| default_file(DEFAULT_STYLE));
            style = Some(eval_style::run(&ws, data, &real, &sm, &pool, a.seed)?);
            transfer = Some(eval_style::transfer_check(&ws, &real, &sm, &mut judge, &pool, a.seed)?);
        }
        real_held = real.split(true).len();
    }
    print_table(&rows);
    println!();
    match diversity_real {
        Some(r) => println!(
            "diversity (mean pairwise RMS distance, one description): generated {diversity_generated:.4}, real {r:.4} (ratio {:.2})",
            diversity_generated / r.max(1e-9)
        ),
        None => println!("diversity: generated {diversity_generated:.4} (real not measured: no --data)"),
    }
    let what = "shape position spread (mean pairwise distance of the judged shape centres, one description)";
    match spread_real {
        Some(r) => println!(
            "{what}: generated {spread_generated:.1} px, real {r:.1} px (ratio {:.2})",
            spread_generated / r.max(1e-9)
        ),
        None => println!("{what}: generated {spread_generated:.1} px (real not measured: no --data)"),
    }
    match &zero_shot {
        Some(z) => println!(
            "encoder zero-shot on {} held-out classes ({} images): top-1 {}, precision@50 {}",
            z.classes,
            z.images,
            pct(z.top1.into()),
            pct(z.precision_at_50.into())
        ),
        None => println!("encoder zero-shot: not measured (no --data)"),
    }
    print_separation("text embedding of \"a <colour> <shape>\"", &separation);
    if let Some(s) = &image_separation {
        print_separation("image encoder, class means of held-out images", s);
    }
    if let Some(rows) = &style {
        println!();
        eval_style::print(rows, real_held);
        if let Some(prefix) = &a.roc {
            eval_style::write_roc(prefix, rows)?;
        }
        if let Some(c) = &transfer {
            eval_style::print_transfer(c);
        }
    }
    let paired = prior.map(|(path, p)| {
        let v = pair_rows(&p, &rows);
        print_paired(&path, &p.model, &v);
        v
    });
    if let Some(acc) = judge_meta.get("validation_accuracy") {
        println!(
            "judge: shape classifier {acc} correct on real held-out images when trained ({})",
            judge_path.display()
        );
    }
    let results = Results {
        model: model.display().to_string(),
        judge_validation_accuracy: judge_meta.get("validation_accuracy").cloned(),
        rows,
        diversity_generated,
        diversity_real,
        position_spread_generated: spread_generated,
        position_spread_real: spread_real,
        zero_shot,
        text_attribute_separation: separation,
        image_attribute_separation: image_separation,
        style,
        style_transfer: transfer,
        against: paired,
        seeds: a.seeds,
        rerank: a.rerank,
        per_class: a.per_class,
        seed: a.seed,
        seconds: start.elapsed().as_secs_f64(),
    };
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&results).unwrap_or_default();
        std::fs::write(path, text).map_err(|e| fail(EXIT_OUTPUT, format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}
