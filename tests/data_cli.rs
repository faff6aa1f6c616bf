//! `text2img data make` and `data inspect` end to end, through the built binary.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The binary next to this test executable (target/<profile>/text2img), found at run time so a
/// copied tree still works.
fn bin() -> PathBuf {
    if let Ok(p) = std::env::var("CARGO_BIN_EXE_text2img") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    dir.join(format!("text2img{}", std::env::consts::EXE_SUFFIX))
}

fn fixture(name: &str) -> PathBuf {
    let base = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    PathBuf::from(base).join("tests/data/fixtures").join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn make_then_inspect_with_a_contact_sheet() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("shapes");
    let o = run(&["data", "make", "shapes", "--out", out.to_str().unwrap(), "--images", "160", "--seed", "4"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sheet = dir.path().join("sheet.png");
    let o = run(&["data", "inspect", out.to_str().unwrap(), "--sheet", sheet.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = stdout(&o);
    assert!(text.contains("train-val        60      120      1200"), "{text}");
    assert!(text.contains("held-out         20       40       400"), "{text}");
    assert!(text.contains("characters outside the alphabet: none"), "{text}");
    assert!(text.contains("problems  0"), "{text}");
    let img = image::open(&sheet).unwrap();
    assert_eq!((img.width(), img.height()), (8 * 66 + 2, 8 * 66 + 2));
    let captions = std::fs::read_to_string(sheet.with_extension("txt")).unwrap();
    assert_eq!(captions.lines().count(), 64);
}

#[test]
fn inspect_lists_every_broken_file_and_the_threshold_sets_the_exit_code() {
    let broken = fixture("broken");
    let o = run(&["data", "inspect", broken.to_str().unwrap()]);
    assert!(o.status.success());
    let text = stdout(&o);
    for name in [
        "truncated_png.png",
        "truncated_jpeg.jpg",
        "zero_bytes.png",
        "one_pixel.png",
        "bomb.png",
        "no_captions.png",
        "empty_captions.txt",
        "missing_image.txt",
        "testclasses.txt",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    let o = run(&["data", "inspect", broken.to_str().unwrap(), "--max-bad-fraction", "0.01"]);
    assert_eq!(o.status.code(), Some(3));
    let json = run(&["data", "inspect", broken.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["bad_samples"], 10);
}

#[test]
fn errors_are_one_line_with_the_path_and_exit_3() {
    let o = run(&["data", "inspect", "/definitely/not/here"]);
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("/definitely/not/here"), "{err}");
    let o = run(&["data", "make", "shapes", "--out", "/tmp/x", "--images", "0"]);
    assert_eq!(o.status.code(), Some(2), "clap usage error");
}
