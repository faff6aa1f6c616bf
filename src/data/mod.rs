//! Datasets of captioned images grouped in classes with a class-disjoint split.
//!
//! One [`Dataset`] type serves the three layouts: the built-in `shapes` set and CUB-200-2011 /
//! Oxford-102 as released with Reed's captions (both read by [`layout`]), and a plain folder of
//! images with a same-named `.txt` beside each ([`folder`]). Opening a dataset reads the folder
//! structure and every caption file but decodes no image; problems with single files are
//! collected as [`Problem`]s (each naming its path) and the affected samples left out, while a
//! dataset that cannot be opened at all is a [`DataError`]. [`Dataset::verify_images`] decodes
//! every image once and drops the broken ones; [`sampler`] draws training batches.
//!
//! A trainer's view:
//! ```no_run
//! use std::sync::Arc;
//! use text2img::data::{Dataset, DecodeLimits, GanSampler, Loader, Prefetcher, SamplerConfig};
//! # fn main() -> Result<(), text2img::data::DataError> {
//! let limits = DecodeLimits::default();
//! let ds = Arc::new(Dataset::open_for_training("data/shapes", &limits, 0.01)?);
//! let cfg = SamplerConfig::gan(&ds, 42); // batch 64, 4 captions, 76 -> 64 crops
//! let mut sampler = GanSampler::new(&ds, cfg)?;
//! # let saved = None;
//! if let Some(state) = saved {
//!     sampler.restore(state)?; // a `SamplerState` read back from a checkpoint
//! }
//! let batches = Prefetcher::gan(Arc::new(Loader::new(ds.clone())), sampler, 4);
//! let batch = batches.next()?; // real, wrong: [64, 3, 64, 64] f32 in [-1, 1]
//! let captions = batch.caption_texts(&ds, 0); // the 4 captions drawn for slot 0
//! let to_checkpoint = batch.state.clone(); // resume with the batch after this one
//! # let _ = (captions, to_checkpoint);
//! # Ok(()) }
//! ```

pub mod error;
pub mod folder;
pub mod image_io;
pub mod inspect;
pub mod layout;
pub mod render;
pub mod rng;
pub mod sampler;
pub mod shapes;

use std::fmt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use error::{DataError, DataResult};
pub use image_io::{DecodeLimits, Rgb8Image};
pub use sampler::{
    Augment, EncoderBatch, EncoderSampler, GanBatch, GanSampler, Loader, Prefetcher, SamplerConfig, SamplerState,
};

/// Largest caption file read (ten captions are about 1 KB).
pub const MAX_CAPTION_FILE_BYTES: u64 = 1 << 20;

/// Default largest fraction of bad samples before loading for training fails.
pub const DEFAULT_MAX_BAD_FRACTION: f64 = 0.01;

/// Which side of the class-disjoint split a class is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Train + validation classes (`trainvalclasses.txt`).
    TrainVal,
    /// Held-out classes (`testclasses.txt`), never seen in training.
    HeldOut,
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::TrainVal => "train-val",
            Split::HeldOut => "held-out",
        })
    }
}

/// The layout a dataset was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    /// Written by `data make shapes` (CUB layout plus `shapes.json` and `attributes.jsonl`).
    Shapes,
    /// CUB-200-2011 or Oxford-102 with Reed's `text_c10` captions.
    Cub,
    /// A plain folder of images, each with a same-named `.txt`.
    Folder,
}

/// One class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Class {
    pub name: String,
    pub split: Split,
}

/// One image with its captions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Path of the image file.
    pub image: PathBuf,
    /// Index into [`Dataset::classes`].
    pub class: usize,
    /// Non-empty, trimmed caption lines (at least one).
    pub captions: Vec<String>,
}

/// What is wrong with a file or folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A folder the layout needs is missing (e.g. `text_c10/<class>/`).
    MissingFolder,
    /// A class list (`trainvalclasses.txt`, `testclasses.txt`) is missing.
    MissingClassList,
    /// A class list names a class that is not in `allclasses.txt`, or a class is in no split.
    BadClassList,
    /// A caption file without its image.
    MissingImage,
    /// An image without a caption file.
    NoCaptions,
    /// A caption file with no non-blank line.
    EmptyCaptions,
    /// A caption file that cannot be read.
    UnreadableCaptions,
    /// An image that cannot be decoded, is truncated, empty, too small or too large.
    BadImage,
}

impl ProblemKind {
    /// True when the problem costs one sample (and counts against the bad fraction).
    pub fn is_sample(self) -> bool {
        !matches!(self, ProblemKind::MissingFolder | ProblemKind::MissingClassList | ProblemKind::BadClassList)
    }
}

/// A file or folder at fault and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub path: PathBuf,
    pub kind: ProblemKind,
    pub reason: String,
}

impl Problem {
    pub fn new(path: impl Into<PathBuf>, kind: ProblemKind, reason: impl Into<String>) -> Self {
        Problem { path: path.into(), kind, reason: reason.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// A dataset: classes with their split, items, and the problems met while reading it.
#[derive(Clone, Debug)]
pub struct Dataset {
    root: PathBuf,
    kind: DatasetKind,
    classes: Vec<Class>,
    items: Vec<Item>,
    problems: Vec<Problem>,
}

/// What [`Dataset::verify_images`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Images that decoded.
    pub good: usize,
    /// Images that did not (now in [`Dataset::problems`]).
    pub bad: usize,
}

impl Dataset {
    /// Opens `root`, choosing the layout: a folder with `text_c10/` or `allclasses.txt` is a
    /// CUB/Oxford-102 layout (a `shapes` set when `shapes.json` is there too), anything else a
    /// plain caption folder.
    pub fn open(root: impl AsRef<Path>) -> DataResult<Dataset> {
        let root = root.as_ref();
        if !root.is_dir() {
            return Err(DataError::MissingFolder { path: root.to_path_buf() });
        }
        if root.join("text_c10").is_dir() || root.join("allclasses.txt").exists() {
            layout::open(root)
        } else {
            folder::open(root)
        }
    }

    /// Builds a dataset from parts (used by the readers).
    pub fn from_parts(
        root: PathBuf,
        kind: DatasetKind,
        classes: Vec<Class>,
        items: Vec<Item>,
        problems: Vec<Problem>,
    ) -> Dataset {
        Dataset { root, kind, classes, items, problems }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn kind(&self) -> DatasetKind {
        self.kind
    }

    pub fn classes(&self) -> &[Class] {
        &self.classes
    }

    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// Every problem met so far, in the order found.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Ids of the classes on one side of the split.
    pub fn class_ids(&self, split: Split) -> Vec<usize> {
        (0..self.classes.len()).filter(|&c| self.classes[c].split == split).collect()
    }

    /// Indices of the items whose class is on one side of the split.
    pub fn item_ids(&self, split: Split) -> Vec<usize> {
        (0..self.items.len()).filter(|&i| self.classes[self.items[i].class].split == split).collect()
    }

    /// Horizontal flips keep captions true: false for `shapes`, whose captions say left/right.
    pub fn flip_allowed(&self) -> bool {
        self.kind != DatasetKind::Shapes
    }

    /// Zooming keeps captions true: false for `shapes`, whose captions give the size in pixels'
    /// terms (Reed's 76/64 zoom makes a third of the small shapes medium-sized).
    pub fn zoom_allowed(&self) -> bool {
        self.kind != DatasetKind::Shapes
    }

    /// Decodes item `index`'s image to RGB8 at its own size.
    pub fn load_image(&self, index: usize, limits: &DecodeLimits) -> DataResult<Rgb8Image> {
        let item = self
            .items
            .get(index)
            .ok_or_else(|| DataError::Config(format!("item {index} out of range ({})", self.items.len())))?;
        image_io::decode_rgb8(&item.image, limits)
    }

    /// Decodes item `index`'s image and resizes it to `size`×`size` (64 for the model).
    pub fn load_resized(&self, index: usize, size: u32, limits: &DecodeLimits) -> DataResult<Rgb8Image> {
        Ok(self.load_image(index, limits)?.resized(size, size))
    }

    /// Number of samples that were or are in the dataset: items plus sample problems.
    pub fn total_samples(&self) -> usize {
        self.items.len() + self.bad_samples()
    }

    /// Number of samples left out because of a problem.
    pub fn bad_samples(&self) -> usize {
        self.problems.iter().filter(|p| p.kind.is_sample()).count()
    }

    /// Fails with [`DataError::TooManyBad`] when more than `max_fraction` of the samples are bad.
    pub fn check_bad_fraction(&self, max_fraction: f64) -> DataResult<()> {
        let (bad, total) = (self.bad_samples(), self.total_samples());
        if bad as f64 > max_fraction * total as f64 {
            return Err(DataError::TooManyBad { path: self.root.clone(), bad, total, max_fraction });
        }
        Ok(())
    }

    /// Decodes every image once (in parallel), moves the broken ones to [`Self::problems`] and
    /// drops their items. Item indices change when an item is dropped.
    pub fn verify_images(&mut self, limits: &DecodeLimits) -> VerifyReport {
        let results: Vec<Option<Problem>> = self
            .items
            .par_iter()
            .map(|item| match image_io::decode_rgb8(&item.image, limits) {
                Ok(_) => None,
                Err(e) => Some(Problem::new(&item.image, ProblemKind::BadImage, bad_image_reason(&e))),
            })
            .collect();
        let mut report = VerifyReport::default();
        let mut kept = Vec::with_capacity(self.items.len());
        for (item, problem) in std::mem::take(&mut self.items).into_iter().zip(results) {
            match problem {
                Some(p) => {
                    report.bad += 1;
                    self.problems.push(p);
                }
                None => {
                    report.good += 1;
                    kept.push(item);
                }
            }
        }
        self.items = kept;
        report
    }

    /// Opens `root` for training: verifies every image, then fails when more than
    /// `max_bad_fraction` of the samples are bad. The problems stay listed in the result.
    pub fn open_for_training(
        root: impl AsRef<Path>,
        limits: &DecodeLimits,
        max_bad_fraction: f64,
    ) -> DataResult<Dataset> {
        let mut ds = Dataset::open(root)?;
        ds.verify_images(limits);
        ds.check_bad_fraction(max_bad_fraction)?;
        if ds.items.is_empty() {
            return Err(DataError::Empty { path: ds.root.clone(), reason: "no usable image with captions".into() });
        }
        Ok(ds)
    }
}

/// The reason part of an image error (the path is already in the [`Problem`]).
fn bad_image_reason(e: &DataError) -> String {
    match e {
        DataError::BadImage { reason, .. } => reason.clone(),
        DataError::Io { reason, .. } => reason.to_string(),
        other => other.to_string(),
    }
}

/// Reads a caption file: trimmed non-blank lines, invalid UTF-8 replaced. A missing, unreadable
/// or empty file is a [`Problem`].
pub fn read_captions(path: &Path) -> Result<Vec<String>, Problem> {
    let unreadable = |reason: String| Problem::new(path, ProblemKind::UnreadableCaptions, reason);
    let len = std::fs::metadata(path).map_err(|e| unreadable(format!("cannot read captions: {e}")))?.len();
    if len > MAX_CAPTION_FILE_BYTES {
        return Err(unreadable(format!(
            "caption file is {len} bytes, more than the {MAX_CAPTION_FILE_BYTES} accepted"
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| unreadable(format!("cannot read captions: {e}")))?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
    if lines.is_empty() {
        return Err(Problem::new(path, ProblemKind::EmptyCaptions, "caption file is empty"));
    }
    Ok(lines)
}
