//! The training sampler: determinism, exact resume from a saved state, the GAN-INT-CLS rules
//! (wrong image from another class, caption draws, train-val classes only), encoder batches of
//! distinct classes, augmentation bounds, and the prefetch thread.

mod common;

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use text2img::data::render::Shape;
use text2img::data::sampler::{Augment, EncoderPlan, GanPlan, View};
use text2img::data::shapes::{
    image_geometry, image_labels, make_shapes, palette_index, read_attributes, Attributes, ShapesConfig, SizeWord,
    IMAGE_LABEL_SIZES,
};
use text2img::data::{
    DataError, Dataset, DecodeLimits, EncoderSampler, GanSampler, Loader, Prefetcher, SamplerConfig, SamplerState,
    Split,
};

fn shapes(images: usize) -> (tempfile::TempDir, Arc<Dataset>) {
    let dir = tempfile::tempdir().unwrap();
    make_shapes(dir.path(), &ShapesConfig { images, seed: 3 }).unwrap();
    let ds = Dataset::open(dir.path()).unwrap();
    (dir, Arc::new(ds))
}

fn plans(s: &mut GanSampler, n: usize) -> Vec<GanPlan> {
    (0..n).map(|_| s.next_plan()).collect()
}

#[test]
fn same_seed_same_batches_different_seed_different() {
    let (_d, ds) = shapes(240);
    let mut a = GanSampler::new(&ds, SamplerConfig::gan(&ds, 9)).unwrap();
    let mut b = GanSampler::new(&ds, SamplerConfig::gan(&ds, 9)).unwrap();
    let mut c = GanSampler::new(&ds, SamplerConfig::gan(&ds, 10)).unwrap();
    let (pa, pb, pc) = (plans(&mut a, 5), plans(&mut b, 5), plans(&mut c, 5));
    assert_eq!(pa, pb);
    assert_ne!(pa, pc);
}

#[test]
fn state_round_trips_through_json_and_resumes_exactly() {
    let (_d, ds) = shapes(240);
    let cfg = SamplerConfig::gan(&ds, 4);
    let mut s = GanSampler::new(&ds, cfg).unwrap();
    plans(&mut s, 3);
    let saved = serde_json::to_string(&s.state()).unwrap();
    let expected = plans(&mut s, 4);
    let mut resumed = GanSampler::new(&ds, cfg).unwrap();
    resumed.restore(serde_json::from_str::<SamplerState>(&saved).unwrap()).unwrap();
    assert_eq!(resumed.state().batches, 3);
    assert_eq!(plans(&mut resumed, 4), expected);

    // The same for the encoder sampler.
    let ecfg = SamplerConfig::encoder(4);
    let mut e = EncoderSampler::new(&ds, ecfg).unwrap();
    e.next_plan();
    let st = e.state();
    let want: Vec<EncoderPlan> = (0..3).map(|_| e.next_plan()).collect();
    let mut e2 = EncoderSampler::new(&ds, ecfg).unwrap();
    e2.restore(st).unwrap();
    let got: Vec<EncoderPlan> = (0..3).map(|_| e2.next_plan()).collect();
    assert_eq!(got, want);
}

#[test]
fn a_state_does_not_restore_onto_another_configuration_or_sampler() {
    let (_d, ds) = shapes(160);
    let cfg = SamplerConfig::gan(&ds, 1);
    let state = GanSampler::new(&ds, cfg).unwrap().state();
    let mut other = cfg;
    other.batch_size = 32;
    let mut s = GanSampler::new(&ds, other).unwrap();
    assert!(matches!(s.restore(state.clone()), Err(DataError::StateMismatch(_))));
    let mut e = EncoderSampler::new(&ds, SamplerConfig::encoder(1)).unwrap();
    assert!(matches!(e.restore(state), Err(DataError::StateMismatch(_))));
}

#[test]
fn a_state_restores_onto_the_same_dataset_moved_elsewhere() {
    let (d, ds) = shapes(160);
    let cfg = SamplerConfig::gan(&ds, 1);
    let mut s = GanSampler::new(&ds, cfg).unwrap();
    plans(&mut s, 2);
    let state = s.state();
    let moved = tempfile::tempdir().unwrap();
    let to = moved.path().join("elsewhere");
    fs::rename(d.path(), &to).unwrap();
    let ds2 = Dataset::open(&to).unwrap();
    let mut r = GanSampler::new(&ds2, cfg).unwrap();
    r.restore(state).unwrap();
    assert_eq!(plans(&mut r, 3), plans(&mut s, 3));
}

#[test]
fn gan_plans_follow_the_reed_rules() {
    let (_d, ds) = shapes(400);
    let cfg = SamplerConfig::gan(&ds, 2);
    assert_eq!((cfg.batch_size, cfg.captions_per_image), (64, 4));
    assert!(!cfg.augment.flip, "no flips on shapes");
    let mut s = GanSampler::new(&ds, cfg).unwrap();
    let mut real_classes = HashSet::new();
    for plan in plans(&mut s, 20) {
        assert_eq!((plan.real.len(), plan.wrong.len(), plan.captions.len()), (64, 64, 256));
        for (b, (r, w)) in plan.real.iter().zip(&plan.wrong).enumerate() {
            let (rc, wc) = (ds.items()[r.item].class, ds.items()[w.item].class);
            assert_ne!(rc, wc, "wrong image from the same class");
            assert_eq!(ds.classes()[rc].split, Split::TrainVal, "held-out class sampled");
            assert_eq!(ds.classes()[wc].split, Split::TrainVal);
            real_classes.insert(rc);
            for &c in &plan.captions[b * 4..b * 4 + 4] {
                assert!((c as usize) < ds.items()[r.item].captions.len());
            }
            for v in [r, w] {
                assert!(v.dx <= 12 && v.dy <= 12 && !v.flip, "{v:?}");
            }
        }
    }
    assert_eq!(real_classes.len(), 60, "every training class gets sampled");
}

#[test]
fn flips_and_crops_vary_where_allowed() {
    let (_d, ds) = shapes(160);
    let mut cfg = SamplerConfig::gan(&ds, 5);
    cfg.augment = Augment::reed(true);
    let mut s = GanSampler::new(&ds, cfg).unwrap();
    let views: Vec<View> = plans(&mut s, 4).into_iter().flat_map(|p| p.real).collect();
    let flips = views.iter().filter(|v| v.flip).count();
    assert!(flips > 80 && flips < 176, "{flips} flips of 256");
    let dxs: HashSet<u32> = views.iter().map(|v| v.dx).collect();
    assert_eq!(dxs.len(), 13, "crop offsets 0..=12");
}

#[test]
fn shapes_images_are_not_zoomed() {
    // "small" and "large" are pixel sizes in shapes captions: the real images D sees must be
    // the files as they are (Reed's 76/64 zoom would move a third of the small shapes to medium).
    let (_d, ds) = shapes(160);
    let cfg = SamplerConfig::gan(&ds, 5);
    assert_eq!(cfg.augment, Augment::none(64));
    let mut s = GanSampler::new(&ds, cfg).unwrap();
    let plan = s.next_plan();
    let batch = Loader::new(Arc::clone(&ds)).gan_batch(&plan, &cfg, s.state()).unwrap();
    let per = 3 * 64 * 64;
    for (b, view) in plan.real.iter().enumerate().take(4) {
        let img = ds.load_image(view.item, &DecodeLimits::default()).unwrap();
        let (w, h) = (img.width, img.height);
        assert_eq!((w, h), (64, 64));
        let got = &batch.real[b * per..(b + 1) * per];
        for (c, plane) in got.chunks(64 * 64).enumerate() {
            for (i, &v) in plane.iter().enumerate() {
                let want = img.pixel((i % 64) as u32, (i / 64) as u32)[c] as f32 / 127.5 - 1.0;
                assert!((v - want).abs() < 1e-5, "image {b} channel {c} pixel {i}: {v} vs {want}");
            }
        }
    }
}

#[test]
fn encoder_batches_hold_distinct_classes() {
    let (_d, ds) = shapes(240);
    let cfg = SamplerConfig::encoder(8);
    let mut s = EncoderSampler::new(&ds, cfg).unwrap();
    for _ in 0..10 {
        let plan = s.next_plan();
        let classes: HashSet<usize> = plan.views.iter().map(|v| ds.items()[v.item].class).collect();
        assert_eq!(classes.len(), 40);
        assert!(classes.iter().all(|&c| ds.classes()[c].split == Split::TrainVal));
    }
    let mut too_big = cfg;
    too_big.batch_size = 61;
    assert!(matches!(EncoderSampler::new(&ds, too_big), Err(DataError::Config(_))));
}

#[test]
fn loader_makes_nchw_batches_in_range_and_prefetch_matches_direct_loading() {
    let (_d, ds) = shapes(240);
    let mut cfg = SamplerConfig::gan(&ds, 6);
    cfg.batch_size = 8;
    let loader = Arc::new(Loader::new(ds.clone()));
    let mut direct = GanSampler::new(&ds, cfg).unwrap();
    let mut expected = Vec::new();
    for _ in 0..3 {
        let plan = direct.next_plan();
        expected.push(loader.gan_batch(&plan, &cfg, direct.state()).unwrap());
    }
    let pf = Prefetcher::gan(loader.clone(), GanSampler::new(&ds, cfg).unwrap(), 2);
    for want in &expected {
        let got = pf.next().unwrap();
        assert_eq!(got.real.len(), 8 * 3 * 64 * 64);
        assert!(got.real.iter().chain(&got.wrong).all(|x| (-1.0..=1.0).contains(x)));
        assert_eq!(got.real, want.real);
        assert_eq!(got.wrong, want.wrong);
        assert_eq!(got.items, want.items);
        assert_eq!(got.captions, want.captions);
        assert_eq!(got.state, want.state);
        assert_eq!(got.caption_texts(&ds, 0).len(), 4);
    }
    drop(pf); // stops the thread without hanging
}

#[test]
fn resuming_a_prefetcher_from_a_batch_state_continues_with_the_next_batch() {
    let (_d, ds) = shapes(160);
    let mut cfg = SamplerConfig::gan(&ds, 8);
    cfg.batch_size = 4;
    let loader = Arc::new(Loader::new(ds.clone()));
    let pf = Prefetcher::gan(loader.clone(), GanSampler::new(&ds, cfg).unwrap(), 3);
    let b1 = pf.next().unwrap();
    let b2 = pf.next().unwrap();
    drop(pf);
    let mut s = GanSampler::new(&ds, cfg).unwrap();
    s.restore(b1.state.clone()).unwrap();
    let resumed = Prefetcher::gan(loader, s, 3).next().unwrap();
    assert_eq!(resumed.real, b2.real);
    assert_eq!(resumed.items, b2.items);
}

#[test]
fn encoder_batches_carry_texts_and_images() {
    let (_d, ds) = shapes(160);
    let mut cfg = SamplerConfig::encoder(3);
    cfg.batch_size = 10;
    let loader = Arc::new(Loader::with_options(ds.clone(), DecodeLimits::default(), 0.01, true));
    let pf = Prefetcher::encoder(loader, EncoderSampler::new(&ds, cfg).unwrap(), 2);
    let b = pf.next().unwrap();
    assert_eq!(b.images.len(), 10 * 3 * 64 * 64);
    for slot in 0..10 {
        let item = &ds.items()[b.items[slot]];
        assert_eq!(b.texts[slot], item.captions[b.captions[slot] as usize]);
    }
}

#[test]
fn an_image_that_breaks_after_opening_is_replaced_by_another_of_its_class() {
    let (dir, _) = shapes(240);
    let ds = Arc::new(Dataset::open(dir.path()).unwrap());
    let victim = 0;
    fs::write(&ds.items()[victim].image, b"").unwrap();
    let loader = Loader::with_options(ds.clone(), DecodeLimits::default(), 0.5, false);
    let mut out = vec![0f32; 3 * 64 * 64];
    let v = View { item: victim, dx: 0, dy: 0, flip: false };
    let used = loader.load_view(&v, &Augment::none(64), &mut out).unwrap();
    assert_ne!(used, victim);
    assert_eq!(ds.items()[used].class, ds.items()[victim].class);
    assert_eq!(loader.bad_count(), 1);
    assert!(Path::new(&ds.items()[used].image).is_file());
}

#[test]
fn sampler_refuses_a_split_with_one_class() {
    let base = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let ds = Dataset::open(Path::new(&base).join("tests/data/fixtures/cub")).unwrap();
    let mut cfg = SamplerConfig::gan(&ds, 0);
    cfg.split = Split::HeldOut;
    assert!(matches!(GanSampler::new(&ds, cfg), Err(DataError::Config(_))));
}

#[test]
fn hard_wrong_pairs_share_the_colour_and_not_the_shape() {
    use text2img::data::shapes::class_labels;
    let (_d, ds) = shapes(480);
    let labels = |item: usize| class_labels(&ds.classes()[ds.items()[item].class].name).expect("shapes class");
    let count = |hard: f32| {
        let mut cfg = SamplerConfig::gan(&ds, 7);
        cfg.hard_wrong = hard;
        let mut s = GanSampler::new(&ds, cfg).unwrap();
        let (mut same_colour, mut total) = (0, 0);
        for p in plans(&mut s, 20) {
            for (r, w) in p.real.iter().zip(&p.wrong) {
                let (a, b) = (labels(r.item), labels(w.item));
                assert_ne!(a, b, "the wrong image is of another class");
                same_colour += usize::from(a[1] == b[1]);
                total += 1;
            }
        }
        same_colour as f64 / total as f64
    };
    // Uniform: ~5 of 59 other classes share the colour. All hard: every one does.
    let (uniform, half, all) = (count(0.0), count(0.5), count(1.0));
    assert!(uniform < 0.2, "uniform draw: {uniform}");
    assert!((0.4..0.65).contains(&half), "half hard: {half}");
    assert_eq!(all, 1.0);
    // A state saved without hard pairs restores onto a sampler with them (switched on resume).
    let mut plain = GanSampler::new(&ds, SamplerConfig::gan(&ds, 7)).unwrap();
    plans(&mut plain, 2);
    let mut cfg = SamplerConfig::gan(&ds, 7);
    cfg.hard_wrong = 0.5;
    let mut switched = GanSampler::new(&ds, cfg).unwrap();
    switched.restore(plain.state()).expect("same dataset, same sampler otherwise");
}

#[test]
fn hard_wrong_pairs_need_shapes_class_names() {
    let (d, _) = shapes(240);
    common::rename_class(d.path(), "002.orange_circle", "002.albatross");
    let ds = Dataset::open(d.path()).unwrap();
    let mut cfg = SamplerConfig::gan(&ds, 1);
    assert!(GanSampler::new(&ds, cfg).is_ok(), "uniform draws need no labels");
    cfg.hard_wrong = 0.5;
    let err = GanSampler::new(&ds, cfg).expect_err("albatross is no shapes class").to_string();
    assert!(err.contains("002.albatross"), "{err}");
}

#[test]
fn image_labels_come_from_attributes_and_bad_records_are_named() {
    let (dir, ds) = shapes(120);
    let labels = image_labels(&ds, "--classifier").unwrap();
    let geometry = image_geometry(&ds, "--vae-shape-weight").unwrap();
    assert_eq!(labels.len(), ds.items().len());
    assert_eq!(geometry.len(), ds.items().len());
    let records = read_attributes(dir.path()).unwrap();
    for ((item, l), g) in ds.items().iter().zip(&labels).zip(&geometry) {
        let a = records.iter().find(|a| dir.path().join(&a.image) == item.image).unwrap();
        assert_eq!(*g, [a.x, a.y, a.radius], "{}", a.image);
        assert_eq!(l[1], palette_index(&a.colour).unwrap());
        assert_eq!(Shape::ALL[l[0]], a.shape);
        assert_eq!(SizeWord::ALL[l[2]], a.size);
        assert!(l.iter().zip(IMAGE_LABEL_SIZES).all(|(&v, n)| v < n));
    }
    let sizes: HashSet<usize> = labels.iter().map(|l| l[2]).collect();
    assert_eq!(sizes.len(), 3, "all three sizes occur");

    // A record missing, then one that contradicts its folder: one-line errors naming the image.
    let path = dir.path().join("attributes.jsonl");
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let first: Attributes = serde_json::from_str(lines[0]).unwrap();
    fs::write(&path, lines[1..].join("\n")).unwrap();
    let err = image_labels(&ds, "--classifier").unwrap_err().to_string();
    assert!(err.contains(first.image.rsplit('/').next().unwrap()) && err.contains("no line"), "{err}");
    let mut wrong = first.clone();
    wrong.colour = if first.colour == "red" { "blue".into() } else { "red".into() };
    let mut all = vec![serde_json::to_string(&wrong).unwrap()];
    all.extend(lines[1..].iter().map(|l| l.to_string()));
    fs::write(&path, all.join("\n")).unwrap();
    let err = image_labels(&ds, "--classifier").unwrap_err().to_string();
    assert!(err.contains(&first.image) && err.contains("contradicts") && !err.contains('\n'), "{err}");
    let err = image_geometry(&ds, "--vae-shape-weight").unwrap_err().to_string();
    assert!(err.starts_with("--vae-shape-weight") && err.contains("contradicts"), "{err}");
}
