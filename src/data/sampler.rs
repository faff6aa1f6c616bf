//! Training-time sampling: GAN batches (real image, "wrong" image, caption draws) and text
//! encoder batches (distinct classes), with Reed's augmentation, decoded off the training thread.
//!
//! Three layers, so resume is exact and decoding can run anywhere:
//! - a sampler ([`GanSampler`], [`EncoderSampler`]) draws a *plan* (item ids, caption ids, crop
//!   offsets, flips) from its own [`Pcg32`]; the plan depends only on the seed and the number of
//!   batches drawn, and [`SamplerState`] (serde) captures exactly that;
//! - a [`Loader`] turns a plan into pixels (decode, resize to `load_size`, crop, flip, scale to
//!   [-1, 1], NCHW), slots in parallel on rayon;
//! - a [`Prefetcher`] runs sampler + loader on its own thread, `depth` batches ahead, through a
//!   bounded channel. Each batch carries the sampler state *after* it: a checkpoint that saves
//!   `batch.state` resumes with the batch after the last one the trainer consumed.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::error::{DataError, DataResult};
use super::image_io::{DecodeLimits, Rgb8Image};
use super::rng::Pcg32;
use super::shapes::dataset_labels;
use super::{Dataset, Split, DEFAULT_MAX_BAD_FRACTION};

/// Augmentation, as in Reed's loader: resize the whole image to `load_size` (aspect ratio not
/// kept), take a `fine_size` crop at a random offset in `0..=load_size-fine_size` (centred when
/// `crop` is off), flip horizontally with p = 0.5 when `flip` is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Augment {
    pub load_size: u32,
    pub fine_size: u32,
    pub crop: bool,
    pub flip: bool,
}

impl Augment {
    /// Reed's training augmentation: 76 → random 64 crop, flip when `flip`.
    pub fn reed(flip: bool) -> Self {
        Augment { load_size: 76, fine_size: 64, crop: true, flip }
    }

    /// No augmentation: resize to `size`.
    pub fn none(size: u32) -> Self {
        Augment { load_size: size, fine_size: size, crop: false, flip: false }
    }

    fn validate(&self) -> DataResult<()> {
        if self.fine_size == 0 || self.fine_size > self.load_size {
            return Err(DataError::Config(format!(
                "augmentation crop {} must be between 1 and the load size {}",
                self.fine_size, self.load_size
            )));
        }
        Ok(())
    }
}

/// What a sampler draws and how.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplerConfig {
    pub batch_size: usize,
    /// Caption draws per image (with replacement); the trainer averages their embeddings.
    pub captions_per_image: usize,
    pub augment: Augment,
    pub split: Split,
    pub seed: u64,
    /// GAN batches: the fraction of wrong images drawn from a class of the same colour and
    /// another shape (`shapes` datasets; 0 = the paper's uniform draw). Not part of the
    /// fingerprint (the trainer keeps it in its options), so a run can switch it on resume.
    #[serde(skip)]
    pub hard_wrong: f32,
}

impl SamplerConfig {
    /// The GAN-INT-CLS defaults: batch 64, 4 captions, Reed's augmentation (flip only where
    /// the dataset allows it; none where zooming would falsify captions), train-val classes.
    pub fn gan(ds: &Dataset, seed: u64) -> Self {
        SamplerConfig {
            batch_size: 64,
            captions_per_image: 4,
            augment: if ds.zoom_allowed() { Augment::reed(ds.flip_allowed()) } else { Augment::none(64) },
            split: Split::TrainVal,
            seed,
            hard_wrong: 0.0,
        }
    }

    /// The text encoder defaults: 40 distinct classes, one image and one caption each,
    /// images resized to 64 without augmentation.
    pub fn encoder(seed: u64) -> Self {
        SamplerConfig {
            batch_size: 40,
            captions_per_image: 1,
            augment: Augment::none(64),
            split: Split::TrainVal,
            seed,
            hard_wrong: 0.0,
        }
    }
}

/// One image as the loader must produce it: which item, where to crop, whether to flip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    pub item: usize,
    pub dx: u32,
    pub dy: u32,
    pub flip: bool,
}

/// Which sampler a state belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplerKind {
    Gan,
    Encoder,
}

/// Everything needed to resume a sampler exactly: save it in checkpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerState {
    pub kind: SamplerKind,
    pub rng: Pcg32,
    /// Batches drawn so far.
    pub batches: u64,
    /// Hash of the dataset items and the configuration: a state restores only onto the same.
    pub fingerprint: u64,
}

/// The plan of one GAN batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GanPlan {
    pub real: Vec<View>,
    pub wrong: Vec<View>,
    /// `[B, K]` caption indices into the real item's captions.
    pub captions: Vec<u32>,
}

/// The plan of one encoder batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncoderPlan {
    pub views: Vec<View>,
    /// One caption index per slot.
    pub captions: Vec<u32>,
}

fn fnv1a(hash: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *hash ^= u64::from(*b);
        *hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
}

/// Items of the split grouped by class (only classes with items), plus a fingerprint.
fn group(ds: &Dataset, cfg: &SamplerConfig, kind: SamplerKind) -> (Vec<Vec<usize>>, Fingerprint) {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); ds.classes().len()];
    for i in ds.item_ids(cfg.split) {
        by_class[ds.items()[i].class].push(i);
    }
    by_class.retain(|v| !v.is_empty());
    let cfg_json = serde_json::to_string(&(cfg, kind)).unwrap_or_default();
    let hash = |relative: bool| {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for (i, item) in ds.items().iter().enumerate() {
            fnv1a(&mut h, &(i as u64).to_le_bytes());
            // Relative to the root: a dataset moved or reached by another path resumes as well.
            let path = if relative { item.image.strip_prefix(ds.root()).unwrap_or(&item.image) } else { &item.image };
            fnv1a(&mut h, path.to_string_lossy().as_bytes());
            fnv1a(&mut h, &(item.class as u64).to_le_bytes());
            fnv1a(&mut h, &(item.captions.len() as u64).to_le_bytes());
        }
        fnv1a(&mut h, cfg_json.as_bytes());
        h
    };
    (by_class, Fingerprint { current: hash(true), legacy: hash(false) })
}

/// What a saved state must match: the hash of the items (paths relative to the dataset root)
/// and the configuration, or the same with absolute paths (states saved before 2026-11-27).
#[derive(Clone, Copy, Debug)]
struct Fingerprint {
    current: u64,
    legacy: u64,
}

impl Fingerprint {
    fn matches(&self, saved: u64) -> bool {
        saved == self.current || saved == self.legacy
    }
}

/// For each grouped class, the grouped classes of the same colour and another shape (a
/// `shapes` dataset: every class name must be one of its names).
fn same_colour_other_shape(ds: &Dataset, by_class: &[Vec<usize>]) -> DataResult<Vec<Vec<usize>>> {
    let of_class = dataset_labels(ds, "--hard-wrong")?;
    let labels: Vec<[usize; 2]> = by_class.iter().map(|items| of_class[ds.items()[items[0]].class]).collect();
    let same = |a: [usize; 2], b: [usize; 2]| a[1] == b[1] && a[0] != b[0];
    Ok(labels.iter().map(|&a| (0..labels.len()).filter(|&j| same(a, labels[j])).collect()).collect())
}

fn draw_view(rng: &mut Pcg32, item: usize, aug: &Augment) -> View {
    let slack = aug.load_size - aug.fine_size;
    let (dx, dy) =
        if aug.crop && slack > 0 { (rng.below(slack + 1), rng.below(slack + 1)) } else { (slack / 2, slack / 2) };
    let flip = aug.flip && rng.chance(0.5);
    View { item, dx, dy, flip }
}

fn restore_into(
    rng: &mut Pcg32,
    batches: &mut u64,
    kind: SamplerKind,
    fingerprint: Fingerprint,
    s: SamplerState,
) -> DataResult<()> {
    if s.kind != kind {
        return Err(DataError::StateMismatch(format!("state of a {:?} sampler given to a {kind:?} sampler", s.kind)));
    }
    if !fingerprint.matches(s.fingerprint) {
        return Err(DataError::StateMismatch(
            "the dataset or the sampler configuration changed since the state was saved".into(),
        ));
    }
    *rng = s.rng;
    *batches = s.batches;
    Ok(())
}

/// GAN-INT-CLS sampling (reference section 2): per slot two distinct classes drawn uniformly,
/// a real image from the first, a "wrong" image from the second, and `captions_per_image`
/// caption indices of the real image drawn with replacement. With `hard_wrong` > 0 that
/// fraction of wrong classes shares the real class's colour and differs in shape: drawn
/// uniformly, only ~8 % of `shapes` wrong pairs differ in shape alone, so D can judge matching
/// by colour (docs/RESULTS.md).
#[derive(Clone, Debug)]
pub struct GanSampler {
    cfg: SamplerConfig,
    by_class: Vec<Vec<usize>>,
    rng: Pcg32,
    batches: u64,
    fingerprint: Fingerprint,
    caption_counts: Vec<u32>,
    /// Per class (index into `by_class`): the classes of the same colour and another shape.
    hard: Vec<Vec<usize>>,
}

impl GanSampler {
    /// A sampler over `cfg.split` of `ds`; needs two classes with images.
    pub fn new(ds: &Dataset, cfg: SamplerConfig) -> DataResult<Self> {
        cfg.augment.validate()?;
        if cfg.batch_size == 0 || cfg.captions_per_image == 0 {
            return Err(DataError::Config("batch size and captions per image must be at least 1".into()));
        }
        let (by_class, fingerprint) = group(ds, &cfg, SamplerKind::Gan);
        if by_class.len() < 2 {
            return Err(DataError::Config(format!(
                "{}: the {} split has {} class(es) with images; GAN batches need 2 (the wrong \
                 image comes from another class)",
                ds.root().display(),
                cfg.split,
                by_class.len()
            )));
        }
        let caption_counts = ds.items().iter().map(|i| i.captions.len().min(u32::MAX as usize) as u32).collect();
        let hard = if cfg.hard_wrong > 0.0 { same_colour_other_shape(ds, &by_class)? } else { Vec::new() };
        Ok(GanSampler { rng: Pcg32::new(cfg.seed), cfg, by_class, batches: 0, fingerprint, caption_counts, hard })
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Draws the next batch's plan.
    pub fn next_plan(&mut self) -> GanPlan {
        let (b, k, aug) = (self.cfg.batch_size, self.cfg.captions_per_image, self.cfg.augment);
        let mut plan =
            GanPlan { real: Vec::with_capacity(b), wrong: Vec::with_capacity(b), captions: Vec::with_capacity(b * k) };
        let n = self.by_class.len();
        for _ in 0..b {
            let c1 = self.rng.index(n);
            let c2 = self.wrong_class(c1);
            let real = self.by_class[c1][self.rng.index(self.by_class[c1].len())];
            let wrong = self.by_class[c2][self.rng.index(self.by_class[c2].len())];
            for _ in 0..k {
                plan.captions.push(self.rng.below(self.caption_counts[real].max(1)));
            }
            plan.real.push(draw_view(&mut self.rng, real, &aug));
            plan.wrong.push(draw_view(&mut self.rng, wrong, &aug));
        }
        self.batches += 1;
        plan
    }

    /// A class other than `c1`: uniform, or (with chance `hard_wrong`, when there is one) of
    /// the same colour and another shape. No extra draw when `hard_wrong` is 0.
    fn wrong_class(&mut self, c1: usize) -> usize {
        let hard = self.hard.get(c1).filter(|h| !h.is_empty());
        if let Some(h) = hard.filter(|_| self.rng.chance(f64::from(self.cfg.hard_wrong))) {
            return h[self.rng.index(h.len())];
        }
        let c2 = self.rng.index(self.by_class.len() - 1);
        c2 + usize::from(c2 >= c1)
    }

    /// The state after the batches drawn so far.
    pub fn state(&self) -> SamplerState {
        SamplerState {
            kind: SamplerKind::Gan,
            rng: self.rng.clone(),
            batches: self.batches,
            fingerprint: self.fingerprint.current,
        }
    }

    /// Continues from a saved state (same dataset and configuration only).
    pub fn restore(&mut self, s: SamplerState) -> DataResult<()> {
        restore_into(&mut self.rng, &mut self.batches, SamplerKind::Gan, self.fingerprint, s)
    }
}

/// Text encoder sampling (DS-SJE): `batch_size` distinct classes, one image and one caption
/// each.
#[derive(Clone, Debug)]
pub struct EncoderSampler {
    cfg: SamplerConfig,
    by_class: Vec<Vec<usize>>,
    rng: Pcg32,
    batches: u64,
    fingerprint: Fingerprint,
    caption_counts: Vec<u32>,
}

impl EncoderSampler {
    /// A sampler over `cfg.split`; needs at least `batch_size` classes with images.
    pub fn new(ds: &Dataset, cfg: SamplerConfig) -> DataResult<Self> {
        cfg.augment.validate()?;
        let (by_class, fingerprint) = group(ds, &cfg, SamplerKind::Encoder);
        if cfg.batch_size == 0 || cfg.batch_size > by_class.len() {
            return Err(DataError::Config(format!(
                "{}: encoder batches of {} distinct classes, but the {} split has {} class(es) \
                 with images",
                ds.root().display(),
                cfg.batch_size,
                cfg.split,
                by_class.len()
            )));
        }
        let caption_counts = ds.items().iter().map(|i| i.captions.len().min(u32::MAX as usize) as u32).collect();
        Ok(EncoderSampler { rng: Pcg32::new(cfg.seed), cfg, by_class, batches: 0, fingerprint, caption_counts })
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Draws the next batch's plan.
    pub fn next_plan(&mut self) -> EncoderPlan {
        let n = self.by_class.len();
        let mut order: Vec<usize> = (0..n).collect();
        let mut plan = EncoderPlan {
            views: Vec::with_capacity(self.cfg.batch_size),
            captions: Vec::with_capacity(self.cfg.batch_size),
        };
        for slot in 0..self.cfg.batch_size {
            // Partial Fisher–Yates: the first `batch_size` entries are distinct classes.
            let j = slot + self.rng.index(n - slot);
            order.swap(slot, j);
            let class = &self.by_class[order[slot]];
            let item = class[self.rng.index(class.len())];
            plan.captions.push(self.rng.below(self.caption_counts[item].max(1)));
            plan.views.push(draw_view(&mut self.rng, item, &self.cfg.augment));
        }
        self.batches += 1;
        plan
    }

    /// The state after the batches drawn so far.
    pub fn state(&self) -> SamplerState {
        SamplerState {
            kind: SamplerKind::Encoder,
            rng: self.rng.clone(),
            batches: self.batches,
            fingerprint: self.fingerprint.current,
        }
    }

    /// Continues from a saved state (same dataset and configuration only).
    pub fn restore(&mut self, s: SamplerState) -> DataResult<()> {
        restore_into(&mut self.rng, &mut self.batches, SamplerKind::Encoder, self.fingerprint, s)
    }
}

/// A GAN batch, images NCHW f32 in [-1, 1].
#[derive(Clone, Debug)]
pub struct GanBatch {
    pub batch_size: usize,
    /// Side of the images (the augmentation's `fine_size`).
    pub size: u32,
    /// `[B, 3, size, size]` real images.
    pub real: Vec<f32>,
    /// `[B, 3, size, size]` images of another class.
    pub wrong: Vec<f32>,
    /// Item id of each real image (a bad image is replaced by another of its class).
    pub items: Vec<usize>,
    pub wrong_items: Vec<usize>,
    pub classes: Vec<usize>,
    pub wrong_classes: Vec<usize>,
    /// `[B, K]` indices into `dataset.items()[items[b]].captions`.
    pub captions: Vec<u32>,
    pub captions_per_image: usize,
    /// The sampler state after this batch: save it to resume with the next batch.
    pub state: SamplerState,
}

impl GanBatch {
    /// The K caption indices of slot `b`.
    pub fn caption_ids(&self, b: usize) -> &[u32] {
        let k = self.captions_per_image;
        &self.captions[b * k..(b + 1) * k]
    }

    /// The K caption texts of slot `b`.
    pub fn caption_texts<'a>(&self, ds: &'a Dataset, b: usize) -> Vec<&'a str> {
        let caps = &ds.items()[self.items[b]].captions;
        self.caption_ids(b).iter().map(|&c| caps[c as usize % caps.len()].as_str()).collect()
    }
}

/// A text encoder batch: one image and one caption of each of B distinct classes.
#[derive(Clone, Debug)]
pub struct EncoderBatch {
    pub batch_size: usize,
    pub size: u32,
    /// `[B, 3, size, size]` images in [-1, 1].
    pub images: Vec<f32>,
    pub items: Vec<usize>,
    pub classes: Vec<usize>,
    /// One caption index per slot into `dataset.items()[items[b]].captions`.
    pub captions: Vec<u32>,
    /// The caption texts, in slot order.
    pub texts: Vec<String>,
    pub state: SamplerState,
}

/// Turns plans into pixels. Shared (`Arc`) between the prefetch thread and whoever inspects
/// the bad-file count.
#[derive(Debug)]
pub struct Loader {
    ds: Arc<Dataset>,
    limits: DecodeLimits,
    max_bad_fraction: f64,
    cache: Option<Vec<OnceLock<Arc<Rgb8Image>>>>,
    bad: Mutex<BTreeSet<usize>>,
    class_items: Vec<Vec<usize>>,
}

impl Loader {
    /// A loader with default limits and bad fraction, no cache.
    pub fn new(ds: Arc<Dataset>) -> Self {
        Self::with_options(ds, DecodeLimits::default(), DEFAULT_MAX_BAD_FRACTION, false)
    }

    /// `cache` keeps every image resized to the load size in memory after its first decode
    /// (load_size² × 3 bytes an image: 208 MB for 12,000 images at 76).
    pub fn with_options(ds: Arc<Dataset>, limits: DecodeLimits, max_bad_fraction: f64, cache: bool) -> Self {
        let mut class_items = vec![Vec::new(); ds.classes().len()];
        for (i, item) in ds.items().iter().enumerate() {
            class_items[item.class].push(i);
        }
        let cache = cache.then(|| (0..ds.items().len()).map(|_| OnceLock::new()).collect());
        Loader { ds, limits, max_bad_fraction, cache, bad: Mutex::new(BTreeSet::new()), class_items }
    }

    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.ds
    }

    /// Images that failed to load during training so far.
    pub fn bad_count(&self) -> usize {
        self.bad.lock().map(|b| b.len()).unwrap_or(0)
    }

    fn load_base(&self, item: usize, load_size: u32) -> DataResult<Arc<Rgb8Image>> {
        let decode =
            || -> DataResult<Arc<Rgb8Image>> { Ok(Arc::new(self.ds.load_resized(item, load_size, &self.limits)?)) };
        let Some(slots) = &self.cache else {
            return decode();
        };
        if let Some(img) = slots[item].get().filter(|i| i.width == load_size) {
            return Ok(img.clone());
        }
        // A cache holds one size: a second load size decodes every time.
        let img = decode()?;
        let _ = slots[item].set(img.clone());
        Ok(img)
    }

    /// Loads `item`, or when it is bad, the next good item of its class (recording the bad one
    /// and failing when too many are bad). Returns the item used.
    fn load_or_substitute(&self, item: usize, load_size: u32) -> DataResult<(usize, Arc<Rgb8Image>)> {
        let class = &self.class_items[self.ds.items()[item].class];
        let start = class.iter().position(|&i| i == item).unwrap_or(0);
        let mut last_err = None;
        for step in 0..class.len() {
            let candidate = class[(start + step) % class.len()];
            match self.load_base(candidate, load_size) {
                Ok(img) => return Ok((candidate, img)),
                Err(e) => {
                    self.mark_bad(candidate)?;
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| DataError::Config(format!("item {item} has no class"))))
    }

    fn mark_bad(&self, item: usize) -> DataResult<()> {
        let mut bad = self.bad.lock().map_err(|_| DataError::LoaderStopped("bad-file list poisoned".into()))?;
        bad.insert(item);
        let total = self.ds.total_samples();
        let count = bad.len() + self.ds.bad_samples();
        if count as f64 > self.max_bad_fraction * total as f64 {
            return Err(DataError::TooManyBad {
                path: self.ds.root().to_path_buf(),
                bad: count,
                total,
                max_fraction: self.max_bad_fraction,
            });
        }
        Ok(())
    }

    /// Writes view `v` as CHW f32 in [-1, 1] into `out` (3·fine² values); returns the item used.
    pub fn load_view(&self, v: &View, aug: &Augment, out: &mut [f32]) -> DataResult<usize> {
        let (item, base) = self.load_or_substitute(v.item, aug.load_size)?;
        crop_flip_normalise(&base, v, aug.fine_size, out);
        Ok(item)
    }

    /// Materialises a GAN plan.
    pub fn gan_batch(&self, plan: &GanPlan, cfg: &SamplerConfig, state: SamplerState) -> DataResult<GanBatch> {
        let aug = cfg.augment;
        let per = 3 * (aug.fine_size as usize).pow(2);
        let b = plan.real.len();
        let mut real = vec![0f32; b * per];
        let mut wrong = vec![0f32; b * per];
        let items = self.fill(&plan.real, &aug, &mut real, per)?;
        let wrong_items = self.fill(&plan.wrong, &aug, &mut wrong, per)?;
        let class_of = |v: &Vec<usize>| v.iter().map(|&i| self.ds.items()[i].class).collect();
        Ok(GanBatch {
            batch_size: b,
            size: aug.fine_size,
            classes: class_of(&items),
            wrong_classes: class_of(&wrong_items),
            real,
            wrong,
            items,
            wrong_items,
            captions: plan.captions.clone(),
            captions_per_image: cfg.captions_per_image,
            state,
        })
    }

    /// Materialises an encoder plan.
    pub fn encoder_batch(
        &self,
        plan: &EncoderPlan,
        cfg: &SamplerConfig,
        state: SamplerState,
    ) -> DataResult<EncoderBatch> {
        let aug = cfg.augment;
        let per = 3 * (aug.fine_size as usize).pow(2);
        let b = plan.views.len();
        let mut images = vec![0f32; b * per];
        let items = self.fill(&plan.views, &aug, &mut images, per)?;
        let texts = items
            .iter()
            .zip(&plan.captions)
            .map(|(&i, &c)| {
                let caps = &self.ds.items()[i].captions;
                caps[c as usize % caps.len()].clone()
            })
            .collect();
        Ok(EncoderBatch {
            batch_size: b,
            size: aug.fine_size,
            classes: items.iter().map(|&i| self.ds.items()[i].class).collect(),
            images,
            items,
            captions: plan.captions.clone(),
            texts,
            state,
        })
    }

    fn fill(&self, views: &[View], aug: &Augment, out: &mut [f32], per: usize) -> DataResult<Vec<usize>> {
        out.par_chunks_mut(per).zip(views.par_iter()).map(|(dst, v)| self.load_view(v, aug, dst)).collect()
    }
}

/// Crops `fine`×`fine` at (dx, dy) from `base`, flips if asked, writes CHW in [-1, 1].
fn crop_flip_normalise(base: &Rgb8Image, v: &View, fine: u32, out: &mut [f32]) {
    let (f, w) = (fine as usize, base.width as usize);
    let plane = f * f;
    for y in 0..f {
        for x in 0..f {
            let sx = if v.flip { f - 1 - x } else { x } + v.dx as usize;
            let sy = y + v.dy as usize;
            let src = (sy * w + sx) * 3;
            for c in 0..3 {
                out[c * plane + y * f + x] = f32::from(base.pixels[src + c]) / 127.5 - 1.0;
            }
        }
    }
}

/// Runs a producer on its own thread, `depth` results ahead, through a bounded channel. The
/// producer stops at its first error (which is delivered) or when the prefetcher is dropped.
pub struct Prefetcher<B> {
    rx: Option<Receiver<DataResult<B>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl<B: Send + 'static> Prefetcher<B> {
    /// Starts `produce` on a new thread.
    pub fn spawn<F>(depth: usize, mut produce: F) -> Self
    where
        F: FnMut() -> DataResult<B> + Send + 'static,
    {
        let (tx, rx) = sync_channel(depth.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle = std::thread::Builder::new()
            .name("text2img-data".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    let r = produce();
                    let failed = r.is_err();
                    if tx.send(r).is_err() || failed {
                        break;
                    }
                }
            })
            .ok();
        Prefetcher { rx: Some(rx), stop, handle }
    }

    /// The next result, waiting for it if the producer is behind.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&self) -> DataResult<B> {
        let rx = self.rx.as_ref().ok_or_else(|| DataError::LoaderStopped("prefetcher closed".into()))?;
        rx.recv().map_err(|_| {
            DataError::LoaderStopped(if self.handle.is_none() {
                "could not start the loader thread".into()
            } else {
                "the producer ended".into()
            })
        })?
    }
}

impl Prefetcher<GanBatch> {
    /// GAN batches from `sampler` (fresh or restored) and `loader`, `depth` batches ahead.
    pub fn gan(loader: Arc<Loader>, mut sampler: GanSampler, depth: usize) -> Self {
        Self::spawn(depth, move || {
            let plan = sampler.next_plan();
            loader.gan_batch(&plan, sampler.config(), sampler.state())
        })
    }
}

impl Prefetcher<EncoderBatch> {
    /// Encoder batches from `sampler` and `loader`, `depth` batches ahead.
    pub fn encoder(loader: Arc<Loader>, mut sampler: EncoderSampler, depth: usize) -> Self {
        Self::spawn(depth, move || {
            let plan = sampler.next_plan();
            loader.encoder_batch(&plan, sampler.config(), sampler.state())
        })
    }
}

impl<B> Drop for Prefetcher<B> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver wakes a producer blocked on a full channel.
        self.rx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::shapes::{make_shapes, ShapesConfig};

    #[test]
    fn states_saved_with_absolute_paths_still_restore() {
        let dir = tempfile::tempdir().expect("tmp");
        make_shapes(dir.path(), &ShapesConfig { images: 60, seed: 1 }).expect("shapes");
        let ds = Dataset::open(dir.path()).expect("open");
        let cfg = SamplerConfig::gan(&ds, 3);
        let mut s = GanSampler::new(&ds, cfg).expect("sampler");
        s.next_plan();
        let mut state = s.state();
        assert_ne!(s.fingerprint.current, s.fingerprint.legacy, "the two hashes differ");
        // The hash of the absolute paths, as states were saved before: still accepted.
        state.fingerprint = s.fingerprint.legacy;
        let mut r = GanSampler::new(&ds, cfg).expect("sampler");
        r.restore(state.clone()).expect("legacy state");
        assert_eq!(r.next_plan(), s.next_plan());
        state.fingerprint ^= 1;
        assert!(matches!(r.restore(state), Err(DataError::StateMismatch(_))));
    }
}
