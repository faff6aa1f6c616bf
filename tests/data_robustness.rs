//! Never a panic on user data: decoding mangled images, and reading odd caption folders.

use std::fs;
use std::path::PathBuf;

use proptest::prelude::*;
use text2img::data::image_io::decode_rgb8;
use text2img::data::{Dataset, DecodeLimits, ProblemKind};

fn fixture(rel: &str) -> PathBuf {
    let base = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    PathBuf::from(base).join("tests/data/fixtures").join(rel)
}

fn good_files() -> Vec<Vec<u8>> {
    ["cub/images/001.Red_Bird/Red_Bird_0001.jpg", "folder/cat.png", "folder/birds/a.png"]
        .iter()
        .map(|p| fs::read(fixture(p)).unwrap())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Truncations and byte flips of valid PNG/JPEG files decode or fail; they never panic.
    #[test]
    fn mangled_images_never_panic(which in 0usize..3, cut in 0.0f64..1.0, flips in proptest::collection::vec((0.0f64..1.0, any::<u8>()), 0..6)) {
        let mut bytes = good_files()[which].clone();
        for (at, v) in flips {
            let i = ((bytes.len() - 1) as f64 * at) as usize;
            bytes[i] = v;
        }
        let keep = ((bytes.len() as f64) * (0.5 + cut / 2.0)) as usize;
        bytes.truncate(keep.max(1));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(if which == 0 { "x.jpg" } else { "x.png" });
        fs::write(&path, &bytes).unwrap();
        if let Ok(img) = decode_rgb8(&path, &DecodeLimits::default()) {
            prop_assert_eq!(img.pixels.len(), (img.width * img.height * 3) as usize);
        }
    }

    /// Arbitrary bytes under an image name are rejected with the path, not a panic.
    #[test]
    fn random_bytes_are_rejected(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("random.png");
        fs::write(&path, &bytes).unwrap();
        if let Err(e) = decode_rgb8(&path, &DecodeLimits::default()) {
            prop_assert!(e.to_string().contains("random.png"));
        }
    }
}

#[test]
fn oversized_caption_files_and_duplicate_classes_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::copy(fixture("folder/cat.png"), root.join("big.png")).unwrap();
    fs::write(root.join("big.txt"), vec![b'a'; 2 << 20]).unwrap();
    fs::copy(fixture("folder/cat.png"), root.join("ok.png")).unwrap();
    fs::write(root.join("ok.txt"), "a caption\r\n").unwrap();
    fs::write(root.join("orphan.txt"), "no image for me\n").unwrap();
    let ds = Dataset::open(root).unwrap();
    assert_eq!(ds.items().len(), 1);
    assert_eq!(ds.items()[0].captions, ["a caption"]);
    let kinds: Vec<(String, ProblemKind)> =
        ds.problems().iter().map(|p| (p.path.file_name().unwrap().to_string_lossy().into_owned(), p.kind)).collect();
    assert!(kinds.contains(&("big.txt".into(), ProblemKind::UnreadableCaptions)), "{kinds:?}");
    assert!(kinds.contains(&("orphan.txt".into(), ProblemKind::MissingImage)), "{kinds:?}");

    let cub = tempfile::tempdir().unwrap();
    fs::write(cub.path().join("allclasses.txt"), "a\na\n").unwrap();
    fs::create_dir_all(cub.path().join("text_c10/a")).unwrap();
    fs::create_dir_all(cub.path().join("images/a")).unwrap();
    let ds = Dataset::open(cub.path()).unwrap();
    assert_eq!(ds.classes().len(), 1);
    assert!(ds.problems().iter().any(|p| p.kind == ProblemKind::BadClassList));
}

#[test]
fn an_empty_dataset_cannot_be_opened_for_training() {
    let dir = tempfile::tempdir().unwrap();
    let err = Dataset::open_for_training(dir.path(), &DecodeLimits::default(), 0.01).unwrap_err();
    assert!(err.to_string().contains("no usable image"), "{err}");
}
