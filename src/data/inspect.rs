//! `data inspect`: counts per split, caption statistics, characters outside the encoder's
//! alphabet, every problem with its path, and a PNG contact sheet of samples.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::{DataError, DataResult};
use super::image_io::{write_png, DecodeLimits, Rgb8Image};
use super::{Dataset, DatasetKind, Problem, Split};

/// The char-CNN-RNN alphabet (Reed): text is lower-cased first; anything else is unknown.
/// ('-' is listed twice in the original; it is one character here.)
pub const ALPHABET: &str = "abcdefghijklmnopqrstuvwxyz0123456789-,;.!?:'\"/\\|_@#$%^&*~`+-=<>()[]{} ";

/// Captions longer than this are truncated by the text encoder.
pub const DOC_LENGTH: usize = 201;

/// True when `c` (already lower-cased) is in [`ALPHABET`].
pub fn in_alphabet(c: char) -> bool {
    ALPHABET.contains(c)
}

/// Counts on one side of the split.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SplitCounts {
    pub classes: usize,
    pub images: usize,
    pub captions: usize,
}

/// Everything `data inspect` reports.
#[derive(Clone, Debug, Serialize)]
pub struct InspectReport {
    pub root: PathBuf,
    pub kind: DatasetKind,
    pub train_val: SplitCounts,
    pub held_out: SplitCounts,
    /// Caption length (characters) histogram: (label, count).
    pub caption_lengths: Vec<(String, usize)>,
    pub mean_caption_length: f64,
    pub longest_caption: usize,
    /// Characters outside the alphabet after lower-casing, with counts, most frequent first.
    pub unknown_chars: Vec<(char, usize)>,
    pub total_samples: usize,
    pub bad_samples: usize,
    pub problems: Vec<Problem>,
}

/// Verifies every image of `ds` (dropping the broken ones) and gathers the report.
pub fn inspect(ds: &mut Dataset, limits: &DecodeLimits) -> InspectReport {
    ds.verify_images(limits);
    let mut lengths = Vec::new();
    let mut unknown: BTreeMap<char, usize> = BTreeMap::new();
    for item in ds.items() {
        for cap in &item.captions {
            lengths.push(cap.chars().count());
            for c in cap.chars().flat_map(char::to_lowercase) {
                if !in_alphabet(c) {
                    *unknown.entry(c).or_default() += 1;
                }
            }
        }
    }
    let mut unknown: Vec<(char, usize)> = unknown.into_iter().collect();
    unknown.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    InspectReport {
        root: ds.root().to_path_buf(),
        kind: ds.kind(),
        train_val: counts(ds, Split::TrainVal),
        held_out: counts(ds, Split::HeldOut),
        caption_lengths: histogram(&lengths),
        mean_caption_length: if lengths.is_empty() {
            0.0
        } else {
            lengths.iter().sum::<usize>() as f64 / lengths.len() as f64
        },
        longest_caption: lengths.iter().copied().max().unwrap_or(0),
        unknown_chars: unknown,
        total_samples: ds.total_samples(),
        bad_samples: ds.bad_samples(),
        problems: ds.problems().to_vec(),
    }
}

fn counts(ds: &Dataset, split: Split) -> SplitCounts {
    let items = ds.item_ids(split);
    SplitCounts {
        classes: ds.class_ids(split).len(),
        images: items.len(),
        captions: items.iter().map(|&i| ds.items()[i].captions.len()).sum(),
    }
}

/// Bins of 20 characters up to 200, then one bin past the encoder's 201.
fn histogram(lengths: &[usize]) -> Vec<(String, usize)> {
    let mut bins: Vec<(String, usize)> = (0..10)
        .map(|i| {
            let hi = if i == 9 { DOC_LENGTH } else { i * 20 + 19 };
            (format!("{:>3}-{:<3}", i * 20, hi), 0)
        })
        .collect();
    bins.push((format!(">{DOC_LENGTH}"), 0));
    for &l in lengths {
        let i = if l > DOC_LENGTH { 10 } else { (l / 20).min(9) };
        bins[i].1 += 1;
    }
    bins
}

impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "dataset   {} ({:?})", self.root.display(), self.kind)?;
        writeln!(f, "split       classes   images  captions")?;
        for (name, c) in [("train-val", &self.train_val), ("held-out", &self.held_out)] {
            writeln!(f, "{name:<10} {:>8} {:>8} {:>9}", c.classes, c.images, c.captions)?;
        }
        writeln!(
            f,
            "samples   {} usable, {} bad of {}",
            self.total_samples - self.bad_samples,
            self.bad_samples,
            self.total_samples
        )?;
        self.fmt_lengths(f)?;
        self.fmt_unknown(f)?;
        writeln!(f, "problems  {}", self.problems.len())?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

impl InspectReport {
    fn fmt_lengths(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "caption length (characters): mean {:.1}, longest {} (the encoder reads {DOC_LENGTH})",
            self.mean_caption_length, self.longest_caption
        )?;
        let max = self.caption_lengths.iter().map(|b| b.1).max().unwrap_or(0).max(1);
        for (label, n) in &self.caption_lengths {
            let bar = "#".repeat((n * 40).div_ceil(max));
            let line = format!("  {label:>8} {n:>8} {bar}");
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }

    fn fmt_unknown(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unknown_chars.is_empty() {
            return writeln!(f, "characters outside the alphabet: none");
        }
        let total: usize = self.unknown_chars.iter().map(|c| c.1).sum();
        write!(f, "characters outside the alphabet: {total} (encoded as zero rows):")?;
        for (c, n) in self.unknown_chars.iter().take(20) {
            write!(f, " {:?}×{n}", c)?;
        }
        writeln!(f)
    }
}

/// Writes a `cols`×`rows` contact sheet of samples spread evenly over the dataset (train-val
/// first, then held-out) as a PNG at `path`, each cell `cell` pixels with a 2-pixel border,
/// and the first caption of each cell into `path` with extension `.txt`. Returns the text path.
pub fn contact_sheet(
    ds: &Dataset,
    path: &Path,
    cols: u32,
    rows: u32,
    cell: u32,
    limits: &DecodeLimits,
) -> DataResult<PathBuf> {
    let mut ids = ds.item_ids(Split::TrainVal);
    ids.extend(ds.item_ids(Split::HeldOut));
    if ids.is_empty() {
        return Err(DataError::Empty {
            path: ds.root().to_path_buf(),
            reason: "no images to put on a contact sheet".into(),
        });
    }
    let n = (cols * rows) as usize;
    let picks: Vec<usize> = (0..n.min(ids.len())).map(|k| ids[k * ids.len() / n.min(ids.len())]).collect();
    let pad = 2;
    let (w, h) = (cols * (cell + pad) + pad, rows * (cell + pad) + pad);
    let mut sheet = Rgb8Image::new(w, h);
    sheet.pixels.fill(255);
    let mut text = String::new();
    for (k, &item) in picks.iter().enumerate() {
        let (r, c) = (k as u32 / cols, k as u32 % cols);
        let it = &ds.items()[item];
        let class = &ds.classes()[it.class];
        text += &format!(
            "row {} col {}  [{} | {}]  {}\n",
            r + 1,
            c + 1,
            class.name,
            class.split,
            it.captions.first().map(String::as_str).unwrap_or("")
        );
        // A broken image leaves its cell grey; inspect lists it among the problems.
        let img = ds.load_resized(item, cell, limits).unwrap_or_else(|_| grey(cell));
        blit(&mut sheet, &img, pad + c * (cell + pad), pad + r * (cell + pad));
    }
    write_png(path, &sheet)?;
    let txt = path.with_extension("txt");
    std::fs::write(&txt, text).map_err(|e| DataError::io(&txt, e))?;
    Ok(txt)
}

fn grey(size: u32) -> Rgb8Image {
    let mut img = Rgb8Image::new(size, size);
    img.pixels.fill(128);
    img
}

fn blit(dst: &mut Rgb8Image, src: &Rgb8Image, x0: u32, y0: u32) {
    for y in 0..src.height {
        let s = (y * src.width * 3) as usize;
        let d = (((y0 + y) * dst.width + x0) * 3) as usize;
        let len = (src.width * 3) as usize;
        dst.pixels[d..d + len].copy_from_slice(&src.pixels[s..s + len]);
    }
}
