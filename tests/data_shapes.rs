//! The `shapes` generator: determinism, the class split, caption vocabulary, attributes.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::Path;

use text2img::data::inspect::{in_alphabet, DOC_LENGTH};
use text2img::data::shapes::{
    class_name, generate, is_held_out, make_shapes, Attributes, Shape, ShapesConfig, ATTRIBUTES_FILE,
    CAPTIONS_PER_IMAGE, COLOUR_JITTER, NUM_CLASSES, PALETTE,
};
use text2img::data::{Dataset, DatasetKind, Split};

/// Every file under `root` with its bytes, by relative path.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn make(images: usize, seed: u64) -> (tempfile::TempDir, BTreeMap<String, Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    make_shapes(dir.path(), &ShapesConfig { images, seed }).unwrap();
    let t = tree(dir.path());
    (dir, t)
}

#[test]
fn same_seed_gives_same_bytes_and_different_seed_differs() {
    let (_a, ta) = make(240, 7);
    let (_b, tb) = make(240, 7);
    let (_c, tc) = make(240, 8);
    assert_eq!(ta.len(), 240 * 2 + 5, "images + captions + 3 lists + attributes + meta");
    assert!(ta == tb, "same seed must give identical files");
    let differing = ta.iter().filter(|(k, v)| k.ends_with(".png") && tc.get(*k) != Some(*v)).count();
    assert_eq!(differing, 240, "a different seed must change every image");
}

#[test]
fn generation_does_not_depend_on_thread_count() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let one = pool.install(|| make(100, 3).1);
    let many = make(100, 3).1;
    assert!(one == many);
}

#[test]
fn split_is_60_20_disjoint_and_covers_every_word() {
    let held: Vec<usize> = (0..NUM_CLASSES).filter(|&c| is_held_out(c)).collect();
    assert_eq!(NUM_CLASSES, 80);
    assert_eq!(held.len(), 20);
    let train: Vec<usize> = (0..NUM_CLASSES).filter(|&c| !is_held_out(c)).collect();
    assert_eq!(train.len(), 60);
    let train_shapes: HashSet<usize> = train.iter().map(|c| c / PALETTE.len()).collect();
    let train_colours: HashSet<usize> = train.iter().map(|c| c % PALETTE.len()).collect();
    assert_eq!(train_shapes.len(), Shape::ALL.len(), "every shape among training classes");
    assert_eq!(train_colours.len(), PALETTE.len(), "every colour among training classes");
    // Held-out classes are new combinations of known words: both words seen in training.
    for c in held {
        assert!(train_shapes.contains(&(c / PALETTE.len())));
        assert!(train_colours.contains(&(c % PALETTE.len())));
    }
}

#[test]
fn written_class_lists_are_disjoint_and_reader_agrees() {
    let (dir, files) = make(160, 1);
    let list = |name: &str| -> Vec<String> {
        String::from_utf8(files[name].clone()).unwrap().lines().map(str::to_string).collect()
    };
    let (all, tv, test) = (list("allclasses.txt"), list("trainvalclasses.txt"), list("testclasses.txt"));
    assert_eq!((all.len(), tv.len(), test.len()), (80, 60, 20));
    let tv_set: HashSet<&String> = tv.iter().collect();
    assert!(test.iter().all(|c| !tv_set.contains(c)), "splits overlap");
    let ds = Dataset::open(dir.path()).unwrap();
    assert_eq!(ds.kind(), DatasetKind::Shapes);
    assert!(!ds.flip_allowed(), "captions say left/right: no flips");
    assert_eq!(ds.class_ids(Split::TrainVal).len(), 60);
    assert_eq!(ds.class_ids(Split::HeldOut).len(), 20);
    assert_eq!(ds.items().len(), 160);
    assert!(ds.problems().is_empty(), "{:?}", ds.problems());
    for item in ds.items() {
        assert_eq!(item.captions.len(), CAPTIONS_PER_IMAGE);
        let split = ds.classes()[item.class].split;
        assert_eq!(split == Split::HeldOut, is_held_out(class_index(&ds.classes()[item.class].name)));
    }
}

fn class_index(name: &str) -> usize {
    (0..NUM_CLASSES).find(|&c| class_name(c) == name).unwrap()
}

#[test]
fn captions_cover_the_vocabulary_and_fit_the_encoder() {
    let samples: Vec<_> = (0..800).map(|i| generate(11, i)).collect();
    let text: String = samples.iter().flat_map(|s| s.captions.iter()).map(|c| format!(" {c} ")).collect();
    let words = [
        "circle",
        "square",
        "triangle",
        "star",
        "cross",
        "diamond",
        "heart",
        "ring",
        "red",
        "orange",
        "yellow",
        "green",
        "blue",
        "purple",
        "pink",
        "white",
        "black",
        "gray",
        "small",
        "medium",
        "large",
        "top",
        "bottom",
        "left",
        "right",
        "center",
        "corner",
        "background",
    ];
    for w in words {
        assert!(text.contains(&format!(" {w} ")) || text.contains(&format!(" {w},")), "{w} never used");
    }
    let (mut with_bg, mut with_pos, mut total) = (0, 0, 0);
    for s in &samples {
        let a = &s.attributes;
        assert_eq!(s.captions.len(), CAPTIONS_PER_IMAGE);
        let distinct: HashSet<&String> = s.captions.iter().collect();
        assert!(distinct.len() >= 8, "captions of one image should vary: {:?}", s.captions);
        for c in &s.captions {
            total += 1;
            assert!(c.len() <= DOC_LENGTH, "{c}");
            assert!(c.chars().all(in_alphabet), "{c}");
            assert!(c.contains(&a.colour) && c.contains(a.shape_name()), "{c} for {a:?}");
            with_bg += usize::from(c.contains("background") || c.contains("backdrop"));
            with_pos += usize::from(POS_WORDS.iter().any(|w| c.contains(w)));
        }
    }
    // Some captions mention the background and position and some do not (that is the style).
    let (bg, pos) = (with_bg as f64 / total as f64, with_pos as f64 / total as f64);
    assert!((0.3..0.8).contains(&bg), "background mentioned in {bg:.2}");
    assert!((0.3..0.8).contains(&pos), "position mentioned in {pos:.2}");
}

const POS_WORDS: [&str; 7] = ["top", "bottom", "left", "right", "center", "middle", "corner"];

trait ShapeName {
    fn shape_name(&self) -> &'static str;
}

impl ShapeName for Attributes {
    fn shape_name(&self) -> &'static str {
        self.shape.name()
    }
}

#[test]
fn attributes_are_consistent_with_the_picture() {
    for i in 0..400 {
        let s = generate(5, i);
        let a = &s.attributes;
        assert_ne!(a.colour, a.background, "background equals the shape colour");
        let pal = PALETTE.iter().find(|p| p.name == a.colour).unwrap();
        for c in 0..3 {
            assert!((i32::from(a.colour_rgb[c]) - i32::from(pal.rgb[c])).abs() <= COLOUR_JITTER);
        }
        assert!(a.x - a.radius >= 0.0 && a.x + a.radius <= 64.0, "shape leaves the image");
        assert!(a.y - a.radius >= 0.0 && a.y + a.radius <= 64.0, "shape leaves the image");
        assert_eq!((s.image.width, s.image.height), (64, 64));
        if matches!(a.shape, Shape::Circle | Shape::Square) {
            // The centre pixel shows the shape colour, up to jitter and shading (≤ 30 + 10).
            let p = s.image.pixel(a.x as u32, a.y as u32);
            for c in 0..3 {
                let d = (i32::from(p[c]) - i32::from(pal.rgb[c])).abs();
                assert!(d <= 45, "image {i}: centre {p:?} vs {:?}", pal.rgb);
            }
        }
        let (lo, hi) = a.size_range();
        assert!(a.radius >= lo - 1e-3 && a.radius <= hi + 1e-3);
    }
}

trait SizeRange {
    fn size_range(&self) -> (f32, f32);
}

impl SizeRange for Attributes {
    fn size_range(&self) -> (f32, f32) {
        self.size.radius_range()
    }
}

#[test]
fn attributes_file_has_one_line_per_image_in_order() {
    let (dir, _) = make(90, 2);
    let text = fs::read_to_string(dir.path().join(ATTRIBUTES_FILE)).unwrap();
    let rows: Vec<Attributes> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 90);
    for (i, a) in rows.iter().enumerate() {
        assert_eq!(a.class_id, i % NUM_CLASSES);
        assert!(dir.path().join(&a.image).is_file(), "{}", a.image);
        assert_eq!(*a, generate(2, i).attributes);
    }
}

#[test]
fn zero_images_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    assert!(make_shapes(dir.path(), &ShapesConfig { images: 0, seed: 0 }).is_err());
}
