//! The three readers on their committed miniature fixtures.

use std::path::PathBuf;

use text2img::data::{DataError, Dataset, DatasetKind, DecodeLimits, Split};

fn fixture(name: &str) -> PathBuf {
    let base = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    PathBuf::from(base).join("tests/data/fixtures").join(name)
}

fn class_names(ds: &Dataset, split: Split) -> Vec<String> {
    ds.class_ids(split).into_iter().map(|c| ds.classes()[c].name.clone()).collect()
}

fn loads_everything(ds: &Dataset) {
    let limits = DecodeLimits::default();
    for i in 0..ds.items().len() {
        let img = ds.load_resized(i, 64, &limits).unwrap();
        assert_eq!((img.width, img.height, img.pixels.len()), (64, 64, 64 * 64 * 3));
        let own = ds.load_image(i, &limits).unwrap();
        assert_eq!(own.pixels.len(), (own.width * own.height * 3) as usize);
    }
}

#[test]
fn cub_layout() {
    let ds = Dataset::open(fixture("cub")).unwrap();
    assert_eq!(ds.kind(), DatasetKind::Cub);
    assert!(ds.flip_allowed());
    assert!(ds.problems().is_empty(), "{:?}", ds.problems());
    assert_eq!(class_names(&ds, Split::TrainVal), ["001.Red_Bird", "002.Blue_Bird"]);
    assert_eq!(class_names(&ds, Split::HeldOut), ["003.Green_Bird"]);
    assert_eq!(ds.items().len(), 6);
    assert_eq!(ds.item_ids(Split::HeldOut).len(), 2);
    let first = &ds.items()[0];
    assert!(first.image.ends_with("images/001.Red_Bird/Red_Bird_0001.jpg"));
    assert_eq!(first.captions.len(), 11);
    assert_eq!(first.captions[10], "A Bird With Ünusual Colours");
    loads_everything(&ds);
}

#[test]
fn oxford_102_layout_with_flat_jpg_folder() {
    let ds = Dataset::open(fixture("oxford")).unwrap();
    assert_eq!(ds.kind(), DatasetKind::Cub);
    assert!(ds.problems().is_empty(), "{:?}", ds.problems());
    assert_eq!(class_names(&ds, Split::HeldOut), ["class_00003"]);
    assert_eq!(ds.items().len(), 6);
    for (i, item) in ds.items().iter().enumerate() {
        assert!(item.image.ends_with(format!("jpg/image_{:05}.jpg", i + 1)));
        assert_eq!(item.class, i / 2);
        assert_eq!(item.captions.len(), 10);
    }
    loads_everything(&ds); // image_00004 is a grey JPEG: converted to RGB
}

#[test]
fn caption_folder() {
    let ds = Dataset::open(fixture("folder")).unwrap();
    assert_eq!(ds.kind(), DatasetKind::Folder);
    assert!(ds.problems().is_empty(), "{:?}", ds.problems());
    let names: Vec<&str> = ds.classes().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["birds", "cat", "dog"]);
    assert_eq!(class_names(&ds, Split::HeldOut), ["dog"]);
    assert_eq!(ds.items().len(), 4);
    let dog = ds.items().iter().find(|i| i.image.ends_with("dog.jpg")).unwrap();
    assert_eq!(dog.captions, ["a brown dog", "a dog running"], "blank lines dropped, trimmed");
    let birds: Vec<_> = ds.items().iter().filter(|i| i.class == 0).collect();
    assert_eq!(birds.len(), 2, "a sub-folder is one class");
    loads_everything(&ds); // 16-bit RGBA and grey+alpha PNGs
}

#[test]
fn sixteen_bit_rgba_becomes_rgb8() {
    let ds = Dataset::open(fixture("folder")).unwrap();
    let i = ds.items().iter().position(|i| i.image.ends_with("birds/a.png")).unwrap();
    let img = ds.load_image(i, &DecodeLimits::default()).unwrap();
    assert_eq!((img.width, img.height), (12, 12));
    // Pixel (1, 2) was (5000, 10000, 30000) of 65535: 8-bit ≈ (19, 39, 117).
    let p = img.pixel(1, 2);
    assert!((i32::from(p[0]) - 19).abs() <= 1 && (i32::from(p[1]) - 39).abs() <= 1, "{p:?}");
    assert!((i32::from(p[2]) - 117).abs() <= 1, "{p:?}");
}

#[test]
fn missing_folder_is_a_typed_error() {
    let err = Dataset::open(fixture("does_not_exist")).unwrap_err();
    assert!(matches!(err, DataError::MissingFolder { ref path } if path.ends_with("does_not_exist")));
    assert!(err.to_string().contains("does_not_exist"));
}

#[test]
fn missing_class_list_is_a_typed_error_naming_the_file() {
    let err = Dataset::open(fixture("no_class_list")).unwrap_err();
    match err {
        DataError::MissingClassList { path } => assert!(path.ends_with("allclasses.txt")),
        other => panic!("unexpected {other}"),
    }
}
