//! The broken-file fixture: every kind of bad input is reported with its path, and loading for
//! training skips and counts bad samples, failing past the allowed fraction. Never a panic.

use std::path::PathBuf;
use std::sync::Arc;

use text2img::data::inspect::inspect;
use text2img::data::{DataError, Dataset, DecodeLimits, GanSampler, Loader, Prefetcher, ProblemKind, SamplerConfig};

fn fixture(name: &str) -> PathBuf {
    let base = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    PathBuf::from(base).join("tests/data/fixtures").join(name)
}

/// (file name, kind) the reader and the verifier must report.
const EXPECTED: [(&str, ProblemKind); 12] = [
    ("testclasses.txt", ProblemKind::MissingClassList),
    ("003.no_caption_folder", ProblemKind::MissingFolder),
    ("empty_captions.txt", ProblemKind::EmptyCaptions),
    ("missing_image.txt", ProblemKind::MissingImage),
    ("no_captions.png", ProblemKind::NoCaptions),
    ("lonely.png", ProblemKind::NoCaptions),
    ("truncated_png.png", ProblemKind::BadImage),
    ("truncated_jpeg.jpg", ProblemKind::BadImage),
    ("zero_bytes.png", ProblemKind::BadImage),
    ("one_pixel.png", ProblemKind::BadImage),
    ("bomb.png", ProblemKind::BadImage),
    ("not_an_image.png", ProblemKind::BadImage),
];

#[test]
fn every_broken_file_is_reported_with_its_path() {
    let mut ds = Dataset::open(fixture("broken")).unwrap();
    let report = inspect(&mut ds, &DecodeLimits::default());
    for (name, kind) in EXPECTED {
        let hit = report.problems.iter().find(|p| p.path.ends_with(name));
        let p = hit.unwrap_or_else(|| panic!("{name} not reported: {:#?}", report.problems));
        assert_eq!(p.kind, kind, "{name}");
        assert!(p.path.starts_with(fixture("broken")), "{}", p.path.display());
        assert!(p.to_string().starts_with(&p.path.display().to_string()));
    }
    assert_eq!(report.problems.len(), EXPECTED.len(), "{:#?}", report.problems);
    assert_eq!(ds.items().len(), 3, "only the three good images stay");
    assert_eq!(report.bad_samples, 10);
    let text = report.to_string();
    for (name, _) in EXPECTED {
        assert!(text.contains(name), "inspect output lacks {name}");
    }
}

#[test]
fn reasons_say_what_is_wrong() {
    let mut ds = Dataset::open(fixture("broken")).unwrap();
    ds.verify_images(&DecodeLimits::default());
    let reason = |name: &str| ds.problems().iter().find(|p| p.path.ends_with(name)).map(|p| p.reason.clone()).unwrap();
    assert!(reason("bomb.png").contains("100000×100000"));
    assert!(reason("one_pixel.png").contains("1×1"));
    assert!(reason("zero_bytes.png").contains("0 bytes"));
    assert!(reason("truncated_jpeg.jpg").contains("truncated"));
}

#[test]
fn training_load_fails_past_the_bad_fraction_and_passes_under_it() {
    let limits = DecodeLimits::default();
    let err = Dataset::open_for_training(fixture("broken"), &limits, 0.01).unwrap_err();
    match &err {
        DataError::TooManyBad { bad, total, .. } => assert_eq!((*bad, *total), (10, 13)),
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("broken"), "{err}");
    let ds = Dataset::open_for_training(fixture("broken"), &limits, 0.9).unwrap();
    assert_eq!(ds.items().len(), 3);
    assert_eq!(ds.bad_samples(), 10);
}

#[test]
fn the_loader_stops_training_with_an_error_not_a_panic() {
    // Without the up-front verification, the bad images are met while sampling.
    let ds = Arc::new(Dataset::open(fixture("broken")).unwrap());
    let mut cfg = SamplerConfig::gan(&ds, 1);
    cfg.batch_size = 16;
    let sampler = GanSampler::new(&ds, cfg).unwrap();
    let loader = Arc::new(Loader::with_options(ds.clone(), DecodeLimits::default(), 0.01, false));
    let pf = Prefetcher::gan(loader, sampler, 2);
    let mut saw_error = false;
    for _ in 0..4 {
        match pf.next() {
            Err(DataError::TooManyBad { .. }) => {
                saw_error = true;
                break;
            }
            Err(DataError::LoaderStopped(_)) => break,
            Err(other) => panic!("unexpected {other}"),
            Ok(_) => {}
        }
    }
    assert!(saw_error);
}

#[test]
fn a_bad_image_is_replaced_by_a_good_one_of_its_class() {
    use text2img::data::sampler::{Augment, View};
    let ds = Arc::new(Dataset::open(fixture("broken")).unwrap());
    let loader = Loader::with_options(ds.clone(), DecodeLimits::default(), 1.0, false);
    // Put a bad image between good ones of the same class by picking the good class's item and
    // checking a direct load; then a bad-class item fails over its whole class.
    let good = ds.items().iter().position(|i| i.image.ends_with("good_2.png")).unwrap();
    let mut out = vec![0f32; 3 * 64 * 64];
    let aug = Augment::none(64);
    let v = View { item: good, dx: 0, dy: 0, flip: false };
    assert_eq!(loader.load_view(&v, &aug, &mut out).unwrap(), good);
    assert!(out.iter().all(|x| (-1.0..=1.0).contains(x)));
    let bad = ds.items().iter().position(|i| i.image.ends_with("bomb.png")).unwrap();
    let v = View { item: bad, dx: 0, dy: 0, flip: false };
    let err = loader.load_view(&v, &aug, &mut out).unwrap_err();
    assert!(matches!(err, DataError::BadImage { .. }), "{err}");
    assert_eq!(loader.bad_count(), 6, "every image of the bad class was tried and counted");
}
