//! The built-in `shapes` dataset: 64×64 images of one coloured shape on a background, with 10
//! captions each, written in the CUB layout.
//!
//! Determinism: image `i` draws everything (attributes, captions, texture) from its own stream
//! `Pcg32::derive(seed, i)`, so the bytes depend only on (seed, i) and not on thread count or
//! order. Classes are (shape, colour) pairs, class id = shape × 10 + colour; the held-out split
//! is fixed (not seeded) and leaves every shape and colour in the training classes.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::error::{DataError, DataResult};
use super::image_io::{encode_png, Rgb8Image};
use super::render::{render, Scene};
pub use super::render::{Background, Shape};
use super::rng::Pcg32;
use super::Dataset;

/// A palette colour: the caption word and its nominal sRGB value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamedColour {
    pub name: &'static str,
    pub rgb: [u8; 3],
}

/// The ten colours, in class order. Images jitter these by at most [`COLOUR_JITTER`] per channel
/// before shading; an evaluation judge can classify a pixel by its nearest palette entry.
pub const PALETTE: [NamedColour; 10] = [
    NamedColour { name: "red", rgb: [220, 30, 30] },
    NamedColour { name: "orange", rgb: [245, 140, 20] },
    NamedColour { name: "yellow", rgb: [245, 225, 35] },
    NamedColour { name: "green", rgb: [40, 165, 55] },
    NamedColour { name: "blue", rgb: [35, 80, 220] },
    NamedColour { name: "purple", rgb: [135, 50, 185] },
    NamedColour { name: "pink", rgb: [250, 145, 195] },
    NamedColour { name: "white", rgb: [245, 245, 245] },
    NamedColour { name: "black", rgb: [20, 20, 20] },
    NamedColour { name: "gray", rgb: [128, 128, 128] },
];

/// Largest per-channel jitter applied to a palette colour.
pub const COLOUR_JITTER: i32 = 10;

/// Image side in pixels.
pub const IMAGE_SIZE: u32 = 64;

/// Number of classes: 8 shapes × 10 colours.
pub const NUM_CLASSES: usize = Shape::ALL.len() * PALETTE.len();

/// Captions per image.
pub const CAPTIONS_PER_IMAGE: usize = 10;

/// Default number of images for `data make shapes`.
pub const DEFAULT_IMAGES: usize = 12_000;

/// The three size words, from the continuous radius (pixels, on a 64-pixel image).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SizeWord {
    Small,
    Medium,
    Large,
}

impl SizeWord {
    pub const ALL: [SizeWord; 3] = [SizeWord::Small, SizeWord::Medium, SizeWord::Large];

    /// Position in `ALL`.
    pub fn index(self) -> usize {
        SizeWord::ALL.iter().position(|&s| s == self).unwrap_or_default()
    }

    /// Radius range in pixels, [lo, hi).
    pub fn radius_range(self) -> (f32, f32) {
        match self {
            SizeWord::Small => (7.0, 10.5),
            SizeWord::Medium => (10.5, 14.5),
            SizeWord::Large => (14.5, 19.5),
        }
    }

    /// The word whose range holds `radius` (below the smallest range: small; above: large).
    pub fn from_radius(radius: f32) -> SizeWord {
        if radius < SizeWord::Small.radius_range().1 {
            SizeWord::Small
        } else if radius < SizeWord::Medium.radius_range().1 {
            SizeWord::Medium
        } else {
            SizeWord::Large
        }
    }

    /// The caption word (the first synonym).
    pub fn word(self) -> &'static str {
        self.synonyms()[0]
    }

    fn synonyms(self) -> &'static [&'static str] {
        match self {
            SizeWord::Small => &["small", "little", "tiny"],
            SizeWord::Medium => &["medium", "medium-sized", "mid-sized"],
            SizeWord::Large => &["large", "big", "huge"],
        }
    }
}

/// Class id of a (shape, colour) pair.
pub fn class_id(shape: usize, colour: usize) -> usize {
    shape * PALETTE.len() + colour
}

/// (shape, colour) of a class id: the inverse of `class_id`.
pub fn class_parts(class: usize) -> (usize, usize) {
    (class / PALETTE.len(), class % PALETTE.len())
}

/// CUB-style class folder name, e.g. `001.red_circle`.
pub fn class_name(class: usize) -> String {
    let (shape, colour) = class_parts(class);
    format!("{:03}.{}_{}", class + 1, PALETTE[colour].name, Shape::ALL[shape].name())
}

/// The class id of a folder name written by `class_name` (its number), if it is one.
pub fn parse_class_name(name: &str) -> Option<usize> {
    let id = name.split('.').next()?.parse::<usize>().ok()?.checked_sub(1)?;
    (id < NUM_CLASSES).then_some(id)
}

/// Classes of each attribute that `class_labels` gives: shape kind, then colour.
pub const LABEL_SIZES: [usize; 2] = [Shape::ALL.len(), PALETTE.len()];

/// [shape kind, colour] of a class folder name written by `class_name`, if it is exactly one
/// (a CUB name such as `001.Black_footed_Albatross` is not).
pub fn class_labels(name: &str) -> Option<[usize; 2]> {
    let id = parse_class_name(name).filter(|&id| class_name(id) == name)?;
    let (shape, colour) = class_parts(id);
    Some([shape, colour])
}

/// `class_labels` of every class of `ds`, by class id; an error naming the first class that is
/// not a `shapes` class (`what` says what needs the labels).
pub fn dataset_labels(ds: &Dataset, what: &str) -> DataResult<Vec<[usize; 2]>> {
    let labels = |name: &str| {
        class_labels(name).ok_or_else(|| {
            DataError::Config(format!("{what} needs a shapes dataset; class '{name}' names no shape and colour"))
        })
    };
    ds.classes().iter().map(|c| labels(&c.name)).collect()
}

/// Classes of each attribute that `image_labels` gives: shape kind, colour, size word.
pub const IMAGE_LABEL_SIZES: [usize; 3] = [Shape::ALL.len(), PALETTE.len(), SizeWord::ALL.len()];

/// Index of a palette colour name.
pub fn palette_index(name: &str) -> Option<usize> {
    PALETTE.iter().position(|c| c.name == name)
}

/// [shape kind, colour, size word] of every item of a `shapes` dataset, from its
/// `attributes.jsonl` (sizes are per image, not per class). An error names the first item
/// without a record, or a record that contradicts its image's class folder (`what` says what
/// needs the labels).
pub fn image_labels(ds: &Dataset, what: &str) -> DataResult<Vec<[usize; 3]>> {
    item_attributes(ds, what, |_, l| l)
}

/// (x, y, radius) in pixels of the shape in every item of a `shapes` dataset, by item id, from
/// its `attributes.jsonl` (errors as for `image_labels`).
pub fn image_geometry(ds: &Dataset, what: &str) -> DataResult<Vec<[f32; 3]>> {
    item_attributes(ds, what, |a, _| [a.x, a.y, a.radius])
}

/// `pick(record, labels)` for every item's attributes record, after checking that the record
/// exists and agrees with the item's class folder.
fn item_attributes<T>(ds: &Dataset, what: &str, pick: impl Fn(&Attributes, [usize; 3]) -> T) -> DataResult<Vec<T>> {
    let classes = dataset_labels(ds, what)?;
    let records = read_attributes(ds.root()).map_err(|e| DataError::Config(format!("{what}: {e}")))?;
    let by_path: HashMap<PathBuf, &Attributes> = records.iter().map(|a| (ds.root().join(&a.image), a)).collect();
    let label = |a: &Attributes| Some([a.shape.index(), palette_index(&a.colour)?, a.size.index()]);
    let item_record = |item: &super::Item| {
        let a = by_path.get(&item.image).ok_or_else(|| {
            DataError::Config(format!("{what}: {} has no line in {ATTRIBUTES_FILE}", item.image.display()))
        })?;
        let l = label(a).filter(|l| l[..2] == classes[item.class]).ok_or_else(|| {
            DataError::Config(format!(
                "{what}: the {ATTRIBUTES_FILE} record of {} ({} {}) contradicts its class folder",
                a.image,
                a.colour,
                a.shape.name()
            ))
        })?;
        Ok(pick(a, l))
    };
    ds.items().iter().map(item_record).collect()
}

/// True for the 20 held-out classes: (3·shape + colour) mod 4 = 0. Each colour is held out with
/// exactly 2 shapes and each shape with 2 or 3 colours, so every word appears in training.
pub fn is_held_out(class: usize) -> bool {
    let (shape, colour) = class_parts(class);
    (3 * shape + colour) % 4 == 0
}

/// The true attributes of one image, as written to `attributes.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attributes {
    /// Path relative to the dataset root, e.g. `images/001.red_circle/red_circle_00000.png`.
    pub image: String,
    pub class: String,
    pub class_id: usize,
    pub held_out: bool,
    pub shape: Shape,
    pub colour: String,
    /// The jittered colour the shape was painted with (before shading).
    pub colour_rgb: [u8; 3],
    pub background: String,
    pub background_rgb: [u8; 3],
    pub background_style: Background,
    pub size: SizeWord,
    /// Half-extent of the shape in pixels.
    pub radius: f32,
    /// Centre in pixels from the top-left corner.
    pub x: f32,
    pub y: f32,
    /// Position word: `top-left`, `top`, `top-right`, `left`, `center`, `right`,
    /// `bottom-left`, `bottom`, `bottom-right`.
    pub position: String,
    pub rotation_deg: f32,
}

/// One generated example.
#[derive(Clone, Debug)]
pub struct ShapeSample {
    pub attributes: Attributes,
    pub image: Rgb8Image,
    pub captions: Vec<String>,
}

const POSITION_KEYS: [[&str; 3]; 3] =
    [["top-left", "top", "top-right"], ["left", "center", "right"], ["bottom-left", "bottom", "bottom-right"]];

fn round3(v: f32) -> f32 {
    (v * 1000.0).round() / 1000.0
}

fn jitter(rgb: [u8; 3], rng: &mut Pcg32) -> [u8; 3] {
    rgb.map(|c| {
        let d = rng.below((2 * COLOUR_JITTER + 1) as u32) as i32 - COLOUR_JITTER;
        (i32::from(c) + d).clamp(0, 255) as u8
    })
}

/// Image name inside its class folder, without extension.
pub fn image_stem(class: usize, k: usize) -> String {
    let (shape, colour) = class_parts(class);
    format!("{}_{}_{:05}", PALETTE[colour].name, Shape::ALL[shape].name(), k)
}

/// Generates image `index` of the dataset with `seed`: class `index % 80`, the
/// `index / 80`-th image of that class.
pub fn generate(seed: u64, index: usize) -> ShapeSample {
    let mut rng = Pcg32::derive(seed, index as u64);
    let class = index % NUM_CLASSES;
    let k = index / NUM_CLASSES;
    let (shape_i, colour_i) = class_parts(class);
    let shape = Shape::ALL[shape_i];
    let mut bg_i = rng.index(PALETTE.len() - 1);
    if bg_i >= colour_i {
        bg_i += 1; // never the shape's colour
    }
    let size = SizeWord::ALL[rng.index(3)];
    let (rlo, rhi) = size.radius_range();
    let radius = rng.range(rlo, rhi);
    let (col, row) = (rng.index(3), rng.index(3));
    let margin = radius + 1.5;
    let span = IMAGE_SIZE as f32 - 2.0 * margin;
    let x = margin + span * rng.range(col as f32 / 3.0, (col as f32 + 1.0) / 3.0);
    let y = margin + span * rng.range(row as f32 / 3.0, (row as f32 + 1.0) / 3.0);
    let max_rot = shape.max_rotation_deg();
    let rotation_deg = rng.range(-max_rot, max_rot);
    let background = Background::draw(&mut rng);
    let colour_rgb = jitter(PALETTE[colour_i].rgb, &mut rng);
    let background_rgb = jitter(PALETTE[bg_i].rgb, &mut rng);
    let scene = Scene {
        size: IMAGE_SIZE,
        shape,
        shape_rgb: colour_rgb,
        background_rgb,
        background,
        cx: x,
        cy: y,
        radius,
        rotation_deg,
    };
    let image = render(&scene, &mut rng);
    let attributes = Attributes {
        image: format!("images/{}/{}.png", class_name(class), image_stem(class, k)),
        class: class_name(class),
        class_id: class,
        held_out: is_held_out(class),
        shape,
        colour: PALETTE[colour_i].name.to_string(),
        colour_rgb,
        background: PALETTE[bg_i].name.to_string(),
        background_rgb,
        background_style: background,
        size,
        radius: round3(radius),
        x: round3(x),
        y: round3(y),
        position: POSITION_KEYS[row][col].to_string(),
        rotation_deg: round3(rotation_deg),
    };
    let captions = captions(&attributes, (col, row), &mut rng);
    ShapeSample { attributes, image, captions }
}

// ---------------------------------------------------------------------------------------------
// Captions

fn position_phrases(col: usize, row: usize) -> &'static [&'static str] {
    match (row, col) {
        (0, 0) => &["in the top left corner", "in the upper left corner", "at the top left"],
        (0, 1) => &["near the top", "at the top", "in the upper part of the image"],
        (0, 2) => &["in the top right corner", "in the upper right corner", "at the top right"],
        (1, 0) => &["on the left", "near the left edge", "on the left side of the image"],
        (1, 1) => &["in the center", "in the middle", "at the center of the image"],
        (1, 2) => &["on the right", "near the right edge", "on the right side of the image"],
        (2, 0) => &["in the bottom left corner", "in the lower left corner", "at the bottom left"],
        (2, 1) => &["near the bottom", "at the bottom", "in the lower part of the image"],
        _ => &["in the bottom right corner", "in the lower right corner", "at the bottom right"],
    }
}

const BG_PHRASES: [&str; 4] =
    ["on a {} background", "against a {} backdrop", "with a {} background", "in front of a {} background"];

/// The words one caption may use, already drawn.
struct Parts {
    size: String,
    colour: String,
    shape: &'static str,
    pos: String,
    bg_word: String,
    bg: String,
}

/// Which optional parts a caption includes.
#[derive(Clone, Copy)]
struct Include {
    size: bool,
    pos: bool,
    bg: bool,
}

/// Number of caption templates.
pub const NUM_TEMPLATES: usize = 18;

fn opt(on: bool, text: &str) -> String {
    if on {
        format!(" {text}")
    } else {
        String::new()
    }
}

fn sized(inc: Include, p: &Parts) -> String {
    if inc.size {
        format!("{} {} {}", p.size, p.colour, p.shape)
    } else {
        format!("{} {}", p.colour, p.shape)
    }
}

/// Template `t` filled with `p`; templates that need a part use it whatever `inc` says.
fn template(t: usize, p: &Parts, inc: Include) -> String {
    let np = sized(inc, p);
    let (pos, bg) = (opt(inc.pos, &p.pos), opt(inc.bg, &p.bg));
    match t {
        0 => format!("a {np}{pos}{bg}"),
        1 => format!("this picture shows a {np}{pos}{bg}"),
        2 => format!("there is a {np}{pos}{bg}"),
        3 => format!("the background is {} and the shape is a {np}{pos}", p.bg_word),
        4 => format!("{}, there is a {np}{bg}", p.pos),
        5 => format!("an image of a {np}{bg}{pos}"),
        6 => format!("a {} background with a {np}{pos}", p.bg_word),
        7 => {
            let mut s = format!("the {} is {}", p.shape, p.colour);
            if inc.size {
                s += &format!(" and {}", p.size);
            }
            if inc.pos {
                s += &format!(" and sits {}", p.pos);
            }
            if inc.bg {
                s += &format!(", the background is {}", p.bg_word);
            }
            s
        }
        8 => {
            let size = if inc.size { format!("{} ", p.size) } else { String::new() };
            format!("a {size}{} colored {}{pos}{bg}", p.shape, p.colour)
        }
        9 => format!("we see a {np}{pos}{bg}"),
        10 => {
            let tail = opt(inc.bg, &format!("the background is {}.", p.bg_word));
            format!("a picture of a {np}{pos}.{tail}")
        }
        11 => {
            let mut s = format!("{} {}", p.colour, p.shape);
            if inc.size {
                s += &format!(", {}", p.size);
            }
            if inc.pos {
                s += &format!(", {}", p.pos);
            }
            if inc.bg {
                s += &format!(", {} background", p.bg_word);
            }
            s
        }
        12 => format!("the {np} is {}{bg}", p.pos),
        13 => format!("one {np} can be seen{pos}{bg}"),
        14 => format!("a {np} drawn{pos}{bg}"),
        15 => format!("in this image a {np} appears{pos}{bg}"),
        16 => format!("a {} {} that is {}{pos}{bg}", p.colour, p.shape, p.size),
        _ => format!("{}, a {np}{pos}", capital_bg(p)),
    }
}

fn capital_bg(p: &Parts) -> String {
    format!("on a {} background", p.bg_word)
}

/// Turns "a" into "an" before a vowel and normalises spaces.
pub fn fix_articles(s: &str) -> String {
    let words: Vec<&str> = s.split_whitespace().collect();
    let mut out = Vec::with_capacity(words.len());
    for (i, w) in words.iter().enumerate() {
        let next_vowel = words.get(i + 1).and_then(|n| n.chars().next()).is_some_and(|c| "aeiou".contains(c));
        out.push(if *w == "a" && next_vowel { "an" } else { w });
    }
    out.join(" ")
}

/// A caption in training template `t` that names all four judged attributes (shape,
/// colour, background, size; the position, where the template needs one, is random). The
/// evaluation's captions for training and held-out classes.
pub fn describe(shape: Shape, colour: usize, background: usize, size: SizeWord, t: usize, rng: &mut Pcg32) -> String {
    let syn = size.synonyms();
    let pos = position_phrases(rng.index(3), rng.index(3));
    let bg_word = PALETTE[background].name.to_string();
    let parts = Parts {
        size: syn[rng.index(syn.len())].to_string(),
        colour: PALETTE[colour].name.to_string(),
        shape: shape.name(),
        pos: pos[rng.index(pos.len())].to_string(),
        bg: BG_PHRASES[rng.index(BG_PHRASES.len())].replace("{}", &bg_word),
        bg_word,
    };
    fix_articles(&template(t % NUM_TEMPLATES, &parts, Include { size: true, pos: false, bg: true }))
}

fn captions(a: &Attributes, (col, row): (usize, usize), rng: &mut Pcg32) -> Vec<String> {
    let mut order: Vec<usize> = (0..NUM_TEMPLATES).collect();
    rng.shuffle(&mut order);
    order
        .into_iter()
        .take(CAPTIONS_PER_IMAGE)
        .map(|t| {
            let syn = a.size.synonyms();
            let pos = position_phrases(col, row);
            let bg_fmt = BG_PHRASES[rng.index(BG_PHRASES.len())];
            let parts = Parts {
                size: syn[rng.index(syn.len())].to_string(),
                colour: a.colour.clone(),
                shape: a.shape.name(),
                pos: pos[rng.index(pos.len())].to_string(),
                bg_word: a.background.clone(),
                bg: bg_fmt.replace("{}", &a.background),
            };
            let inc = Include { size: rng.chance(0.7), pos: rng.chance(0.5), bg: rng.chance(0.5) };
            fix_articles(&template(t, &parts, inc))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Writing the dataset

/// What `data make shapes` asks for.
#[derive(Clone, Copy, Debug)]
pub struct ShapesConfig {
    pub images: usize,
    pub seed: u64,
}

impl Default for ShapesConfig {
    fn default() -> Self {
        ShapesConfig { images: DEFAULT_IMAGES, seed: 0 }
    }
}

/// The generator's note at the dataset root (`shapes.json`); its presence marks a shapes set.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShapesMeta {
    pub generator: String,
    pub version: u32,
    pub seed: u64,
    pub images: usize,
    pub image_size: u32,
    pub palette: Vec<(String, [u8; 3])>,
    pub shapes: Vec<String>,
}

/// File name of the generator's note.
pub const META_FILE: &str = "shapes.json";

/// File name of the per-image attributes (one JSON object per line, in image index order).
pub const ATTRIBUTES_FILE: &str = "attributes.jsonl";

/// Reads `attributes.jsonl` of a shapes dataset at `root` (the ground truth for evaluation).
/// A line that does not parse is an error naming the file and the line.
pub fn read_attributes(root: &Path) -> DataResult<Vec<Attributes>> {
    let path = root.join(ATTRIBUTES_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let a: Attributes = serde_json::from_str(line).map_err(|e| DataError::Empty {
            path: path.clone(),
            reason: format!("line {}: not an attributes record ({e})", i + 1),
        })?;
        if a.image.contains("..") || Path::new(&a.image).is_absolute() {
            return Err(DataError::Empty {
                path: path.clone(),
                reason: format!("line {}: image path '{}' leaves the dataset", i + 1, a.image),
            });
        }
        out.push(a);
    }
    if out.is_empty() {
        return Err(DataError::Empty { path, reason: "no attribute records".into() });
    }
    Ok(out)
}

/// Writes the dataset to `out` (created if missing) in the CUB layout. Returns the number of
/// images written.
pub fn make_shapes(out: &Path, cfg: &ShapesConfig) -> DataResult<usize> {
    if cfg.images == 0 {
        return Err(DataError::Config("--images must be at least 1".into()));
    }
    create_dirs(out)?;
    write_class_lists(out)?;
    let lines: Vec<String> =
        (0..cfg.images).into_par_iter().map(|i| write_one(out, cfg.seed, i)).collect::<DataResult<_>>()?;
    let mut jsonl = lines.join("\n");
    jsonl.push('\n');
    write_file(&out.join(ATTRIBUTES_FILE), jsonl.as_bytes())?;
    write_meta(out, cfg)?;
    Ok(cfg.images)
}

fn write_file(path: &Path, bytes: &[u8]) -> DataResult<()> {
    fs::write(path, bytes).map_err(|e| DataError::io(path, e))
}

fn create_dirs(out: &Path) -> DataResult<()> {
    for class in 0..NUM_CLASSES {
        for top in ["images", "text_c10"] {
            let dir = out.join(top).join(class_name(class));
            fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
        }
    }
    Ok(())
}

fn write_class_lists(out: &Path) -> DataResult<()> {
    let names = |pred: &dyn Fn(usize) -> bool| -> String {
        (0..NUM_CLASSES).filter(|&c| pred(c)).map(|c| class_name(c) + "\n").collect()
    };
    write_file(&out.join("allclasses.txt"), names(&|_| true).as_bytes())?;
    write_file(&out.join("trainvalclasses.txt"), names(&|c| !is_held_out(c)).as_bytes())?;
    write_file(&out.join("testclasses.txt"), names(&is_held_out).as_bytes())
}

fn write_one(out: &Path, seed: u64, index: usize) -> DataResult<String> {
    let sample = generate(seed, index);
    let a = &sample.attributes;
    let img_path: PathBuf = out.join(&a.image);
    let mut png = Vec::with_capacity(8 * 1024);
    encode_png(&mut png, &sample.image)
        .map_err(|e| DataError::PngWrite { path: img_path.clone(), reason: e.to_string() })?;
    write_file(&img_path, &png)?;
    let stem = image_stem(a.class_id, index / NUM_CLASSES);
    let txt_path = out.join("text_c10").join(&a.class).join(stem + ".txt");
    let mut txt = Vec::new();
    for c in &sample.captions {
        writeln!(txt, "{c}").map_err(|e| DataError::io(&txt_path, e))?;
    }
    write_file(&txt_path, &txt)?;
    serde_json::to_string(a).map_err(|e| DataError::io(&img_path, std::io::Error::other(e)))
}

fn write_meta(out: &Path, cfg: &ShapesConfig) -> DataResult<()> {
    let meta = ShapesMeta {
        generator: "text2img shapes".into(),
        version: 1,
        seed: cfg.seed,
        images: cfg.images,
        image_size: IMAGE_SIZE,
        palette: PALETTE.iter().map(|c| (c.name.to_string(), c.rgb)).collect(),
        shapes: Shape::ALL.iter().map(|s| s.name().to_string()).collect(),
    };
    let path = out.join(META_FILE);
    let json = serde_json::to_string_pretty(&meta).map_err(|e| DataError::io(&path, std::io::Error::other(e)))?;
    write_file(&path, json.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_labels_read_only_shapes_names() {
        for class in 0..NUM_CLASSES {
            let (shape, colour) = class_parts(class);
            assert_eq!(class_labels(&class_name(class)), Some([shape, colour]));
        }
        assert_eq!(class_labels("002.albatross"), None, "a number alone is not a shapes class");
        assert_eq!(class_labels("001.Black_footed_Albatross"), None);
        assert_eq!(class_labels("081.red_circle"), None);
        assert!(LABEL_SIZES.iter().zip([Shape::ALL.len(), PALETTE.len()]).all(|(a, b)| *a == b));
    }

    #[test]
    fn articles() {
        assert_eq!(fix_articles("a orange  star"), "an orange star");
        assert_eq!(fix_articles("a red star"), "a red star");
    }

    #[test]
    fn every_template_renders() {
        let s = generate(1, 5);
        let p = Parts {
            size: "small".into(),
            colour: "red".into(),
            shape: "star",
            pos: "at the top".into(),
            bg_word: "blue".into(),
            bg: "on a blue background".into(),
        };
        for t in 0..NUM_TEMPLATES {
            for bits in 0..8 {
                let inc = Include { size: bits & 1 != 0, pos: bits & 2 != 0, bg: bits & 4 != 0 };
                let c = fix_articles(&template(t, &p, inc));
                assert!(c.contains("red") && c.contains("star"), "{c}");
            }
        }
        assert_eq!(s.captions.len(), CAPTIONS_PER_IMAGE);
    }
}
