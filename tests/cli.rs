//! The command line as a user meets it: outputs, metadata, determinism, and one-line errors with
//! the documented exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use text2img::model::loader::save_weights;
use text2img::model::synthetic::synthetic_weights;
use text2img::model::{ModelConfig, Network};
use text2img::tensor::DType;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_text2img"));
    c.env_remove("T2I_MODEL");
    c
}

fn weights(dir: &Path, dtype: DType) -> PathBuf {
    let cfg = ModelConfig::builtin("shapes").expect("config");
    let nets = [Network::Encoder, Network::Generator];
    let path = dir.join(format!("shapes-{dtype}.safetensors"));
    save_weights(&path, &cfg, &nets, &synthetic_weights(&cfg, &nets), dtype).expect("save");
    path
}

fn run(c: &mut Command) -> (i32, String, String) {
    let Output { status, stdout, stderr } = c.output().expect("run text2img");
    (status.code().unwrap_or(-1), String::from_utf8_lossy(&stdout).into(), String::from_utf8_lossy(&stderr).into())
}

fn png_text(path: &Path) -> (Vec<u8>, Vec<(String, String)>) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).expect("png")));
    let mut reader = dec.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    reader.next_frame(&mut buf).expect("png data");
    let info = reader.info();
    let mut text: Vec<(String, String)> =
        info.uncompressed_latin1_text.iter().map(|t| (t.keyword.clone(), t.text.clone())).collect();
    text.extend(info.utf8_text.iter().map(|t| (t.keyword.clone(), t.get_text().expect("itxt"))));
    (buf, text)
}

#[test]
fn generate_writes_pngs_with_metadata_and_is_deterministic() {
    let dir = tempfile::tempdir().expect("tmp");
    let w = weights(dir.path(), DType::F32);
    let out = dir.path().join("img%d.png");
    let (code, _, err) = run(bin()
        .args(["generate", "a red circle", "-p", "a blue star é", "-b", "2", "-s", "7", "-t", "1"])
        .arg("-m")
        .arg(&w)
        .arg("-o")
        .arg(&out));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("outside the alphabet"), "warns about é: {err}");
    let files: Vec<PathBuf> = (0..4).map(|i| dir.path().join(format!("img{i}.png"))).collect();
    let (pixels, text) = png_text(&files[2]);
    assert_eq!(pixels.len(), 64 * 64 * 3);
    let params = &text.iter().find(|(k, _)| k == "parameters").expect("parameters chunk").1;
    assert!(params.contains("Seed: 7") && params.contains("Index: 0"), "{params}");
    let json = &text.iter().find(|(k, _)| k == "text2img").expect("json chunk").1;
    assert!(json.contains("a blue star é"), "UTF-8 caption in iTXt: {json}");
    // Same seed, other threads and batching: the same image. Not bit for bit: the batch size
    // picks the GEMM kernels (and the tap form runs per sample), whose sums differ in order by
    // ~2e-6, which can move a pixel across a rounding boundary.
    let out2 = dir.path().join("again%d.png");
    let (code, _, err) = run(bin()
        .args([
            "generate",
            "a red circle",
            "-p",
            "a blue star é",
            "-b",
            "2",
            "-s",
            "7",
            "-t",
            "2",
            "--batch-size",
            "3",
            "--no-mmap",
            "-q",
        ])
        .arg("-m")
        .arg(&w)
        .arg("-o")
        .arg(&out2));
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "-q prints nothing: {err}");
    for (i, f) in files.iter().enumerate() {
        let a = png_text(f).0;
        let b = png_text(&dir.path().join(format!("again{i}.png"))).0;
        let max_diff = a.iter().zip(&b).map(|(&x, &y)| (x as i32 - y as i32).abs()).max().unwrap_or(0);
        assert!(max_diff <= 1, "image {i} moved a pixel by {max_diff}/255 across threads/batching");
    }
    assert_ne!(png_text(&files[0]).0, png_text(&files[1]).0, "different noise, different image");
    // f16 weights load and give nearly the same image.
    let w16 = weights(dir.path(), DType::F16);
    let out3 = dir.path().join("half.png");
    let (code, _, err) =
        run(bin().args(["generate", "a red circle", "-s", "7"]).arg("-m").arg(&w16).arg("-o").arg(&out3));
    assert_eq!(code, 0, "{err}");
    let (a, b) = (png_text(&files[0]).0, png_text(&out3).0);
    let max_diff = a.iter().zip(&b).map(|(&x, &y)| (x as i32 - y as i32).abs()).max().unwrap_or(0);
    assert!(max_diff <= 8, "f16 weights moved a pixel by {max_diff}/255");
}

#[test]
fn grid_is_one_png() {
    let dir = tempfile::tempdir().expect("tmp");
    let w = weights(dir.path(), DType::F32);
    let out = dir.path().join("grid.png");
    let (code, _, err) =
        run(bin().args(["generate", "a", "b", "-b", "3", "--grid", "-s", "1"]).arg("-m").arg(&w).arg("-o").arg(&out));
    assert_eq!(code, 0, "{err}");
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&out).expect("grid")));
    let info = dec.read_info().expect("header").info().clone();
    assert_eq!((info.width, info.height), (3 * 64 + 4 * 2, 2 * 64 + 3 * 2));
}

#[test]
fn errors_are_one_line_with_exit_codes() {
    let dir = tempfile::tempdir().expect("tmp");
    let w = weights(dir.path(), DType::F32);
    let bad = text2img_root().join("tests/data/bad_weights/overlap.safetensors");
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (vec!["generate".into(), "x".into(), "-m".into(), "/no/such/model.safetensors".into()], 3, "/no/such/model"),
        (vec!["generate".into(), "x".into(), "-m".into(), bad.display().to_string()], 3, "overlap"),
        (vec!["generate".into(), "   ".into(), "-m".into(), w.display().to_string()], 2, "empty"),
        (
            vec!["generate".into(), "x".into(), "--device".into(), "cuda".into(), "-m".into(), w.display().to_string()],
            5,
            "CUDA",
        ),
        (
            vec![
                "generate".into(),
                "x".into(),
                "-o".into(),
                "/no/such/dir/a.png".into(),
                "-m".into(),
                w.display().to_string(),
            ],
            4,
            "/no/such/dir",
        ),
        (
            vec![
                "generate".into(),
                "x".into(),
                "--prompt-file".into(),
                "/no/such/prompts.txt".into(),
                "-m".into(),
                w.display().to_string(),
            ],
            3,
            "prompts.txt",
        ),
        (vec!["inspect".into(), bad.display().to_string()], 3, "overlap"),
        (
            vec![
                "bench".into(),
                "--device".into(),
                "cpu".into(),
                "--precision".into(),
                "f32,bf16".into(),
                "-m".into(),
                w.display().to_string(),
            ],
            2,
            "--precision bf16",
        ),
    ];
    for (args, want, phrase) in cases {
        let (code, _, err) = run(bin().current_dir(dir.path()).args(&args));
        assert_eq!(code, want, "{args:?}: {err}");
        assert!(err.contains(phrase), "{args:?}: '{err}' lacks '{phrase}'");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: not one line: {err}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
    // clap's own usage errors exit 2 too, on one line naming the flag (and the values it takes,
    // or the arguments missing); help and version still print in full and succeed.
    for (args, phrase) in [
        (&["generate", "x", "-b", "0"][..], "'0' for '--batch-count"),
        (&["generate", "x", "--steps-nope"], "--steps-nope"),
        (&["generate", "x", "--device", "tpu"], "unknown device 'tpu'"),
        (&["train", "--steps", "1"], "required arguments were not provided: --data"),
    ] {
        let (code, _, err) = run(bin().args(args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(phrase) && err.trim_end().lines().count() == 1, "{args:?}: '{err}' lacks '{phrase}'");
    }
    let (code, help, _) = run(bin().args(["generate", "--help"]));
    assert!(code == 0 && help.lines().count() > 10 && help.contains("Usage:"), "help in full: {help}");
}

#[test]
fn long_captions_warn_and_inspect_reports() {
    let dir = tempfile::tempdir().expect("tmp");
    let w = weights(dir.path(), DType::F32);
    let long = "a very long caption ".repeat(20);
    let (code, _, err) =
        run(bin().args(["generate", &long, "-s", "3"]).arg("-m").arg(&w).arg("-o").arg(dir.path().join("l.png")));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("longer than 201"), "{err}");
    let (code, out, err) = run(bin().arg("inspect").arg(&w));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("config:   shapes") && out.contains("check:    ok") && out.contains("generator.deconv0.weight"),
        "{out}"
    );
}

fn text2img_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}

#[test]
fn interpolate_writes_a_strip() {
    let dir = tempfile::tempdir().expect("tmp");
    let w = weights(dir.path(), DType::F32);
    let out = dir.path().join("strip.png");
    let (code, _, err) = run(bin()
        .args(["interpolate", "a red circle", "a blue star", "-n", "5"])
        .arg("-m")
        .arg(&w)
        .arg("-o")
        .arg(&out));
    assert_eq!(code, 0, "{err}");
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&out).expect("strip")));
    let info = dec.read_info().expect("header").info().clone();
    assert_eq!((info.width, info.height), (5 * 64 + 6 * 2, 64 + 2 * 2));
    let (code, _, _) = run(bin().args(["interpolate", "a", "b", "c"]).arg("-m").arg(&w));
    assert_eq!(code, 2, "three captions are a usage error");
}

/// `init-weights` writes a config's synthetic weights that the other commands load (here
/// `generate`, from the f16 file of two networks); a wrong config or network name is one line
/// and a usage or input exit code.
#[test]
fn init_weights_writes_a_loadable_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let w = dir.path().join("shapes-f16.safetensors");
    let args = ["init-weights", "--config", "shapes", "--networks", "encoder,generator", "--dtype", "f16", "-q", "-o"];
    let (code, _, err) = run(bin().args(args).arg(&w));
    assert_eq!(code, 0, "{err}");
    let png = dir.path().join("x.png");
    let (code, _, err) = run(bin().args(["generate", "a red circle", "-q", "-m"]).arg(&w).arg("-o").arg(&png));
    assert_eq!(code, 0, "{err}");
    assert!(png.exists());
    for (bad, code_want) in
        [(["--config", "nope", "--networks", "encoder"], 3), (["--config", "shapes", "--networks", "gen"], 2)]
    {
        let (code, _, err) = run(bin().arg("init-weights").args(bad).arg("-o").arg(dir.path().join("y.safetensors")));
        assert_eq!(code, code_want, "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    }
}
