//! Caption fidelity of a text-to-image model on `shapes`, judged independently: the eval
//! captions (each names shape, colour, background and size), the judge that reads those four
//! back from an image, the per-attribute scores, and sample diversity.

use rayon::prelude::*;
use serde::Serialize;

use super::colour::{read, size_from_area, unit_area, Reading};
use super::shape_net::{crop, ShapeJudge, CROP_LEN, KINDS};
use crate::data::render::Shape;
use crate::data::rng::Pcg32;
use crate::data::shapes::{
    describe, fix_articles, is_held_out, palette_index, Attributes, SizeWord, NUM_TEMPLATES, PALETTE,
};

/// Length of one [3, 64, 64] image.
pub use crate::model::pipeline::IMAGE_LEN;

/// The four judged attributes of one image (palette and `Shape::ALL` indices).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Attrs {
    pub background: usize,
    /// None when no shape was found.
    pub colour: Option<usize>,
    pub shape: usize,
    pub size: SizeWord,
}

impl Attrs {
    /// The ground truth of a real image (None when a colour name is not a palette colour).
    pub fn from_attributes(a: &Attributes) -> Option<Attrs> {
        Some(Attrs {
            background: palette_index(&a.background)?,
            colour: Some(palette_index(&a.colour)?),
            shape: a.shape.index(),
            size: a.size,
        })
    }
}

/// Reads colours and mask of each [3, 64, 64] image (in parallel) and crops each mask for the
/// shape classifier: the readings and the crops [N, 32, 32].
pub fn read_and_crop(images: &[f32]) -> (Vec<Reading>, Vec<f32>) {
    let readings: Vec<Reading> = images.par_chunks(IMAGE_LEN).map(read).collect();
    let mut crops = vec![0.0; readings.len() * CROP_LEN];
    crops.par_chunks_mut(CROP_LEN).zip(&readings).for_each(|(c, r)| crop(r, c));
    (readings, crops)
}

/// The judge: the colour reader and the shape classifier.
pub struct Judge {
    shapes: ShapeJudge,
    unit_areas: Vec<f32>,
}

impl Judge {
    pub fn new(shapes: ShapeJudge) -> Judge {
        Judge { shapes, unit_areas: Shape::ALL.iter().map(|&s| unit_area(s)).collect() }
    }

    /// Reads the attributes of each [3, 64, 64] image in `images` (concatenated, in [-1, 1]).
    pub fn judge(&mut self, images: &[f32]) -> Vec<Attrs> {
        let (readings, crops) = read_and_crop(images);
        let kinds = self.shapes.predict(&crops);
        readings
            .iter()
            .zip(kinds)
            .map(|(r, shape)| Attrs {
                background: r.background,
                colour: r.colour,
                shape,
                size: size_from_area(r.area, self.unit_areas[shape]),
            })
            .collect()
    }
}

/// Whether `judged` has each attribute of `truth`: background, shape colour, shape kind, size.
fn matches(judged: &Attrs, truth: &Attrs) -> [bool; 4] {
    [
        judged.background == truth.background,
        judged.colour.is_some() && judged.colour == truth.colour,
        judged.shape == truth.shape,
        judged.size == truth.size,
    ]
}

/// The all-four rate of each group of images judged against one truth each (`groups`: each
/// group's (judged, truth) pairs; empty groups skipped). The images of one caption share its
/// outcome, so the caption, not the image, is the independent unit of `standard_error`.
pub fn all_four_rates<'a>(groups: impl Iterator<Item = Vec<(&'a Attrs, &'a Attrs)>>) -> Vec<f64> {
    groups
        .filter(|g| !g.is_empty())
        .map(|g| g.iter().filter(|(j, t)| matches(j, t).iter().all(|&m| m)).count() as f64 / g.len() as f64)
        .collect()
}

/// Standard error of the mean of `values`: their sample standard deviation over √n (0 for
/// fewer than two values). Of per-caption rates, the error of a rate; of per-caption
/// differences between two models on the same captions, the paired error of the difference.
pub fn standard_error(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>() / (n - 1.0);
    (var / n).sqrt()
}

/// Correct counts per attribute over some judged images.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Score {
    pub images: usize,
    pub background: usize,
    pub colour: usize,
    pub shape: usize,
    pub size: usize,
    pub all: usize,
    /// Shape kinds as judged, per kind asked for: `shape_confusion[asked][judged]`.
    pub shape_confusion: [[usize; KINDS]; KINDS],
    /// Sizes as judged, per size asked for: `size_confusion[asked][judged]` (small, medium, large).
    pub size_confusion: [[usize; 3]; 3],
}

impl Score {
    pub fn add(&mut self, judged: &Attrs, truth: &Attrs) {
        let [b, c, s, z] = matches(judged, truth);
        if let Some(row) = self.shape_confusion.get_mut(truth.shape) {
            row[judged.shape.min(KINDS - 1)] += 1;
        }
        self.size_confusion[truth.size.index()][judged.size.index()] += 1;
        self.images += 1;
        self.background += usize::from(b);
        self.colour += usize::from(c);
        self.shape += usize::from(s);
        self.size += usize::from(z);
        self.all += usize::from(b && c && s && z);
    }

    /// How often each shape kind was judged, over all images (fractions, `Shape::ALL` order):
    /// a G that draws one blob for every caption shows as one kind taking most of it.
    pub fn judged_kinds(&self) -> [f64; KINDS] {
        let n = self.images.max(1) as f64;
        std::array::from_fn(|k| self.shape_confusion.iter().map(|row| row[k]).sum::<usize>() as f64 / n)
    }

    /// Per kind asked for, the share judged that kind (None where none was asked for).
    pub fn kind_accuracy(&self) -> [Option<f64>; KINDS] {
        std::array::from_fn(|k| {
            let row = &self.shape_confusion[k];
            let n: usize = row.iter().sum();
            (n > 0).then(|| row[k] as f64 / n as f64)
        })
    }

    /// The rates, in the order background, colour, shape, size, all.
    pub fn rates(&self) -> [f64; 5] {
        let n = self.images.max(1) as f64;
        [self.background, self.colour, self.shape, self.size, self.all].map(|k| k as f64 / n)
    }
}

/// Which eval captions: training classes, held-out classes, or templates never seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaptionSet {
    TrainClasses,
    HeldOutClasses,
    UnseenTemplates,
}

impl CaptionSet {
    pub const ALL: [CaptionSet; 3] =
        [CaptionSet::TrainClasses, CaptionSet::HeldOutClasses, CaptionSet::UnseenTemplates];

    /// A file-name word.
    pub fn slug(self) -> &'static str {
        match self {
            CaptionSet::TrainClasses => "train-classes",
            CaptionSet::HeldOutClasses => "held-out-classes",
            CaptionSet::UnseenTemplates => "unseen-templates",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            CaptionSet::TrainClasses => "training-class captions",
            CaptionSet::HeldOutClasses => "held-out-class captions",
            CaptionSet::UnseenTemplates => "unseen caption templates",
        }
    }
}

/// One eval caption and what an image of it must show.
#[derive(Clone, Debug, Serialize)]
pub struct EvalCaption {
    pub set: CaptionSet,
    pub text: String,
    pub truth: Attrs,
}

/// Sentence shapes the dataset's 18 templates never use (same attribute words).
const UNSEEN_TEMPLATES: [&str; 6] = [
    "look: a {size} {colour} {shape} over a {bg} field",
    "{bg} behind a {size} {colour} {shape}",
    "my drawing has a {size} {shape} painted {colour} on {bg}",
    "{colour}, {shape}, {size}; background {bg}",
    "here we have a {size} {colour} {shape} and the rest is {bg}",
    "a {bg} picture with one {size} {colour} {shape} in it",
];

fn unseen(t: usize, a: &Attrs, colour: usize) -> String {
    let s = UNSEEN_TEMPLATES[t % UNSEEN_TEMPLATES.len()]
        .replace("{size}", a.size.word())
        .replace("{colour}", PALETTE[colour].name)
        .replace("{shape}", Shape::ALL[a.shape].name())
        .replace("{bg}", PALETTE[a.background].name);
    fix_articles(&s)
}

/// `per_class` captions for each class of `set` (deterministic in `seed`): a random background
/// (never the shape's colour) and size, and a template (seen ones for the class sets).
pub fn eval_captions(set: CaptionSet, per_class: usize, seed: u64) -> Vec<EvalCaption> {
    let mut rng = Pcg32::derive(seed, set as u64);
    let mut out = Vec::new();
    for shape in 0..Shape::ALL.len() {
        for colour in 0..PALETTE.len() {
            let held = is_held_out(shape * PALETTE.len() + colour);
            if held != (set == CaptionSet::HeldOutClasses) {
                continue;
            }
            for k in 0..per_class {
                let mut background = rng.index(PALETTE.len() - 1);
                if background >= colour {
                    background += 1;
                }
                let size = SizeWord::ALL[rng.index(3)];
                let truth = Attrs { background, colour: Some(colour), shape, size };
                let text = match set {
                    CaptionSet::UnseenTemplates => unseen(k + rng.index(UNSEEN_TEMPLATES.len()), &truth, colour),
                    _ => describe(Shape::ALL[shape], colour, background, size, rng.index(NUM_TEMPLATES), &mut rng),
                };
                out.push(EvalCaption { set, text, truth });
            }
        }
    }
    out
}

/// Root-mean-square distance between two images.
pub fn rms_distance(a: &[f32], b: &[f32]) -> f32 {
    let s: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    (s / a.len().max(1) as f64).sqrt() as f32
}

/// Mean pairwise RMS distance within each group of images (groups of fewer than two skipped).
pub fn mean_pairwise_distance<'a>(groups: impl Iterator<Item = Vec<&'a [f32]>>) -> f32 {
    let (mut total, mut pairs) = (0.0f64, 0usize);
    for g in groups {
        for i in 0..g.len() {
            for j in i + 1..g.len() {
                total += f64::from(rms_distance(g[i], g[j]));
                pairs += 1;
            }
        }
    }
    (total / pairs.max(1) as f64) as f32
}

/// Mean pairwise distance (pixels) between the shape centres within each group: how far the
/// shape moves across images of one description. Images with no shape found, and groups of
/// fewer than two, are left out. The RMS diversity counts a moved background as much as a
/// moved shape; this counts only the shape.
pub fn mean_pairwise_spread(groups: impl Iterator<Item = Vec<Option<[f32; 2]>>>) -> f32 {
    let (mut total, mut pairs) = (0.0f64, 0usize);
    for g in groups {
        let found: Vec<[f32; 2]> = g.into_iter().flatten().collect();
        for (i, a) in found.iter().enumerate() {
            for b in &found[i + 1..] {
                total += f64::from((a[0] - b[0]).hypot(a[1] - b[1]));
                pairs += 1;
            }
        }
    }
    (total / pairs.max(1) as f64) as f32
}

/// How much of each attribute the text embedding carries: the mean cosine similarity of the
/// embeddings of bare captions "a <colour> <shape>" (every palette colour × every shape) over
/// the pairs that share only their colour, only their shape, or neither. An encoder that carries
/// the shape keeps same-colour pairs well below 1; one that carries only the colour puts them
/// near 1, and then G cannot learn shapes from it, whatever its training.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct AttributeSeparation {
    pub same_colour_other_shape: f32,
    pub same_shape_other_colour: f32,
    pub neither: f32,
}

/// The bare captions "a <colour> <shape>" for every palette colour and shape, with their
/// (colour, shape) labels.
pub fn separation_captions() -> (Vec<String>, Vec<(usize, usize)>) {
    let labels: Vec<(usize, usize)> =
        (0..PALETTE.len()).flat_map(|c| (0..Shape::ALL.len()).map(move |s| (c, s))).collect();
    let caps =
        labels.iter().map(|&(c, s)| fix_articles(&format!("a {} {}", PALETTE[c].name, Shape::ALL[s].name()))).collect();
    (caps, labels)
}

/// `AttributeSeparation` of embeddings (dimension `dim`, one row per (colour, shape) label).
pub fn attribute_separation(emb: &[f32], dim: usize, labels: &[(usize, usize)]) -> AttributeSeparation {
    let rows: Vec<&[f32]> = emb.chunks(dim).collect();
    let mut sums = [(0.0f64, 0usize); 3];
    for i in 0..rows.len().min(labels.len()) {
        for j in i + 1..rows.len().min(labels.len()) {
            let (same_colour, same_shape) = (labels[i].0 == labels[j].0, labels[i].1 == labels[j].1);
            let bucket = match (same_colour, same_shape) {
                (true, false) => 0,
                (false, true) => 1,
                (false, false) => 2,
                (true, true) => continue,
            };
            sums[bucket].0 += f64::from(super::style::cosine(rows[i], rows[j]));
            sums[bucket].1 += 1;
        }
    }
    let mean = |(s, n): (f64, usize)| (s / n.max(1) as f64) as f32;
    AttributeSeparation {
        same_colour_other_shape: mean(sums[0]),
        same_shape_other_colour: mean(sums[1]),
        neither: mean(sums[2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_captions_cover_their_classes() {
        let train = eval_captions(CaptionSet::TrainClasses, 2, 0);
        let held = eval_captions(CaptionSet::HeldOutClasses, 2, 0);
        assert_eq!(train.len(), 60 * 2);
        assert_eq!(held.len(), 20 * 2);
        for c in train.iter().chain(&held) {
            let colour = c.truth.colour.unwrap_or(usize::MAX);
            assert_ne!(c.truth.background, colour, "{}", c.text);
            for word in [PALETTE[colour].name, PALETTE[c.truth.background].name, Shape::ALL[c.truth.shape].name()] {
                assert!(c.text.contains(word), "'{}' lacks '{word}'", c.text);
            }
        }
        for c in eval_captions(CaptionSet::UnseenTemplates, 3, 0) {
            assert!(c.text.contains(c.truth.size.word()), "{}", c.text);
        }
    }

    #[test]
    fn score_counts_each_attribute_and_which_kind_was_judged() {
        let truth = |shape| Attrs { background: 0, colour: Some(1), shape, size: SizeWord::Small };
        let mut s = Score::default();
        s.add(&truth(0), &truth(0));
        s.add(&truth(3), &truth(0));
        s.add(&Attrs { size: SizeWord::Large, ..truth(3) }, &truth(2));
        assert_eq!((s.images, s.background, s.colour, s.shape, s.size, s.all), (3, 3, 3, 1, 2, 1));
        assert_eq!(s.shape_confusion[0][0], 1);
        assert_eq!(s.shape_confusion[0][3], 1);
        assert_eq!(s.shape_confusion[2][3], 1);
        let kinds = s.judged_kinds();
        assert!((kinds[0] - 1.0 / 3.0).abs() < 1e-12 && (kinds[3] - 2.0 / 3.0).abs() < 1e-12);
        assert!((kinds.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let right = s.kind_accuracy();
        assert_eq!((right[0], right[2], right[1]), (Some(0.5), Some(0.0), None));
        assert_eq!(s.size_confusion, [[2, 0, 1], [0; 3], [0; 3]]);
    }

    #[test]
    fn standard_error_counts_captions_not_images() {
        let t = Attrs { background: 0, colour: Some(1), shape: 2, size: SizeWord::Small };
        let wrong = Attrs { shape: 3, ..t };
        // Four captions of two images each, all right or all wrong: rates 1, 0, 1, 0.
        let group = |ok: bool| vec![(if ok { &t } else { &wrong }, &t); 2];
        let rates = all_four_rates([true, false, true, false].map(group).into_iter());
        assert_eq!(rates, vec![1.0, 0.0, 1.0, 0.0]);
        let se = standard_error(&rates);
        assert!((se - (1.0f64 / 12.0).sqrt()).abs() < 1e-12, "{se}");
        // The same eight images as eight captions of one image: a smaller error (more units).
        let single = all_four_rates((0..8).map(|i| vec![(if i % 2 == 0 { &t } else { &wrong }, &t)]));
        let se8 = standard_error(&single);
        assert!((se8 - (0.25f64 / 7.0).sqrt()).abs() < 1e-12, "{se8}");
        // A half-right caption; every value alike: no spread; one value: no estimate.
        assert_eq!(all_four_rates([vec![(&t, &t), (&wrong, &t)], vec![]].into_iter()), vec![0.5]);
        assert_eq!(standard_error(&[0.5, 0.5, 0.5]), 0.0);
        assert_eq!(standard_error(&[1.0]), 0.0);
    }

    #[test]
    fn pairwise_distance_of_identical_images_is_zero() {
        let a = [0.5f32; 12];
        let b = [-0.5f32; 12];
        assert_eq!(mean_pairwise_distance([vec![&a[..], &a[..]]].into_iter()), 0.0);
        assert!((mean_pairwise_distance([vec![&a[..], &b[..]]].into_iter()) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn attribute_separation_of_hand_made_embeddings() {
        let (colours, shapes) = (PALETTE.len(), Shape::ALL.len());
        let (caps, labels) = separation_captions();
        assert_eq!(caps.len(), colours * shapes);
        assert_eq!(caps[1], format!("a {} {}", PALETTE[0].name, Shape::ALL[1].name()));
        assert_eq!(labels[1], (0, 1));
        // Colour only: same-colour pairs identical, the rest orthogonal.
        let dim = colours + shapes;
        let embed = |shape_weight: f32| -> Vec<f32> {
            (0..colours * shapes)
                .flat_map(|i| {
                    let mut e = vec![0.0; dim];
                    e[i / shapes] = 1.0;
                    e[colours + i % shapes] = shape_weight;
                    e
                })
                .collect()
        };
        let s = attribute_separation(&embed(0.0), dim, &labels);
        assert!((s.same_colour_other_shape - 1.0).abs() < 1e-6 && s.same_shape_other_colour.abs() < 1e-6);
        assert!(s.neither.abs() < 1e-6);
        // Both attributes at equal weight: each shared attribute gives cosine 1/2.
        let s = attribute_separation(&embed(1.0), dim, &labels);
        assert!((s.same_colour_other_shape - 0.5).abs() < 1e-6 && (s.same_shape_other_colour - 0.5).abs() < 1e-6);
        assert!(s.neither.abs() < 1e-6);
    }
}
