//! The eval judge: the analytic colour and size reader against the renderer's ground truth, and
//! `train-judge` + `eval` end to end on a small `shapes` set, with their one-line errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use text2img::data::render::Shape;
use text2img::data::shapes::{generate, PALETTE};
use text2img::eval::colour::{read, size_from_area, unit_area};
use text2img::eval::report::mean_pairwise_spread;
use text2img::model::loader::save_weights;
use text2img::model::synthetic::synthetic_weights;
use text2img::model::{ModelConfig, Network};
use text2img::tensor::DType;

fn chw(i: usize) -> (Vec<f32>, text2img::data::shapes::Attributes) {
    let s = generate(11, i);
    let mut out = vec![0.0; 3 * 64 * 64];
    s.image.to_chw(&mut out);
    (out, s.attributes)
}

#[test]
fn colour_reader_recovers_rendered_attributes() {
    let n = 400;
    let (mut bg, mut colour, mut size) = (0, 0, 0);
    for i in 0..n {
        let (img, a) = chw(i);
        let r = read(&img);
        bg += usize::from(PALETTE[r.background].name == a.background);
        colour += usize::from(r.colour.map(|c| PALETTE[c].name) == Some(a.colour.as_str()));
        let shape = Shape::ALL.iter().position(|&s| s == a.shape).expect("shape");
        size += usize::from(size_from_area(r.area, unit_area(Shape::ALL[shape])) == a.size);
        // The mask holds the shape: its area is within 35 % of the true one.
        let true_area = unit_area(a.shape) * a.radius * a.radius;
        assert!((r.area as f32 - true_area).abs() < 0.35 * true_area, "image {i}: area {} vs {true_area}", r.area);
    }
    assert_eq!(bg, n, "background right on {bg} of {n}");
    assert_eq!(colour, n, "shape colour right on {colour} of {n}");
    assert!(size * 100 >= n * 95, "size right on only {size} of {n}");
}

#[test]
fn shape_centres_and_their_spread() {
    // The judged centre is the rendered one within a pixel (anti-aliased edges, rotation),
    // except for hearts, whose drawing centre sits a quarter radius off their mask's centre.
    let mut centres = Vec::new();
    for i in 0..200 {
        let (img, a) = chw(i);
        let c = read(&img).centre().expect("a shape in every real image");
        let off = (c[0] - a.x).hypot(c[1] - a.y);
        let within = if a.shape == Shape::Heart { 0.3 * a.radius } else { 1.0 };
        assert!(off < within, "image {i} ({:?} at {}, {}): centre {c:?}", a.shape, a.x, a.y);
        centres.push(Some(c));
    }
    // Spread: the mean distance over the pairs within each group, unfound shapes left out.
    let groups = vec![vec![Some([0.0, 0.0]), Some([3.0, 4.0]), None], vec![Some([1.0, 1.0])], vec![None, None]];
    assert_eq!(mean_pairwise_spread(groups.into_iter()), 5.0);
    let one_place = vec![vec![Some([7.0, 9.0]); 4]];
    assert_eq!(mean_pairwise_spread(one_place.into_iter()), 0.0, "one place, no spread");
    assert!(mean_pairwise_spread(std::iter::once(centres)) > 10.0, "real shapes move");
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_text2img"));
    c.env_remove("T2I_MODEL");
    c
}

fn run(c: &mut Command) -> (i32, String, String) {
    let Output { status, stdout, stderr } = c.output().expect("run text2img");
    (status.code().unwrap_or(-1), String::from_utf8_lossy(&stdout).into(), String::from_utf8_lossy(&stderr).into())
}

fn ok(c: &mut Command) -> String {
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{err}");
    out
}

fn model(dir: &Path) -> PathBuf {
    let cfg = ModelConfig::builtin("shapes").expect("config");
    let nets = [Network::Encoder, Network::Generator];
    let path = dir.join("model.safetensors");
    save_weights(&path, &cfg, &nets, &synthetic_weights(&cfg, &nets), DType::F32).expect("save");
    path
}

#[test]
fn train_judge_then_eval_end_to_end() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let data = d.join("shapes");
    ok(bin().args(["data", "make", "shapes", "--images", "800", "--seed", "5", "--out"]).arg(&data));
    let judge = d.join("judge.safetensors");
    let out = ok(bin().args(["train-judge", "--epochs", "2", "--data"]).arg(&data).arg("-o").arg(&judge));
    assert!(out.contains("shape classifier:") && out.contains("real images, held-out classes"), "{out}");
    // θ for zero-shot, from a one-step encoder run.
    let enc = d.join("enc");
    ok(bin()
        .args(["-q", "train-encoder", "--config", "shapes", "--steps", "1", "--batch", "8", "--data"])
        .arg(&data)
        .arg("-o")
        .arg(&enc));
    let m = model(d);
    let json = d.join("eval.json");
    // eval on the tiny set: 1 caption per class, 2 noises.
    let eval = || {
        let mut c = bin();
        c.args(["eval", "--per-class", "1", "--seeds", "2", "-m"]).arg(&m).arg("--judge").arg(&judge);
        c.arg("--data").arg(&data).arg("--image-encoder").arg(enc.join("image_encoder.safetensors"));
        c
    };
    let out = ok(eval().arg("--json").arg(&json).arg("--samples").arg(d.join("judged")));
    let judged = std::fs::read_to_string(d.join("judged-held-out-classes.txt")).expect("samples text");
    assert_eq!(judged.lines().filter(|l| l.trim_start().starts_with("read:")).count(), 16, "{judged}");
    assert!(d.join("judged-unseen-templates.png").exists());
    for phrase in
        ["training-class captions", "held-out-class captions", "unseen caption templates", "diversity", "zero-shot"]
    {
        assert!(out.contains(phrase), "eval output lacks '{phrase}':\n{out}");
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0]["images"], 60 * 2);
    assert_eq!(rows[1]["images"], 20 * 2);
    for r in rows {
        let n = r["images"].as_u64().expect("n");
        for k in ["background", "colour", "shape", "size", "all"] {
            assert!(r[k].as_u64().expect(k) <= n, "{r}");
        }
    }
    // The judge reads the real held-out images almost perfectly even after two epochs.
    let real = &rows[3];
    assert!(real["colour"].as_u64() == real["images"].as_u64(), "{real}");
    let z = &v["zero_shot"];
    assert!(z["top1"].as_f64().is_some_and(|t| (0.0..=1.0).contains(&t)), "{z}");
    assert!(v["diversity_real"].as_f64().is_some_and(|x| x > 0.0));
    assert!(out.contains("shape position spread"), "{out}");
    // Real images of one description sit in different cells of a 3×3 grid: several pixels apart.
    assert!(v["position_spread_real"].as_f64().is_some_and(|x| x > 5.0), "{v}");
    assert!(v["position_spread_generated"].as_f64().is_some_and(|x| x >= 0.0));

    // One all-four rate per caption (per image for the real row); their mean is the row's rate.
    for r in rows {
        let per: Vec<f64> =
            r["all_four_per_caption"].as_array().expect("per caption").iter().filter_map(|x| x.as_f64()).collect();
        let rate = r["all"].as_f64().expect("all") / r["images"].as_f64().expect("n");
        assert!((per.iter().sum::<f64>() / per.len() as f64 - rate).abs() < 1e-9, "{r}");
        assert!(r["all_four_se"].as_f64().is_some_and(|se| (0.0..=0.5).contains(&se)), "{r}");
    }
    assert_eq!(rows[0]["all_four_per_caption"].as_array().map(Vec::len), Some(60));
    assert_eq!(rows[3]["all_four_per_caption"].as_array().map(|a| a.len() as u64), rows[3]["images"].as_u64());
    // --against: the same eval pairs to zero; against every caption wrong, the difference is the
    // rate and its error the rate's own.
    let out = ok(eval().arg("--against").arg(&json));
    assert!(out.contains("training-class captions: +0.0 points") && out.contains("± 0.0 over 60 captions"), "{out}");
    let mut zero = v.clone();
    for r in zero["rows"].as_array_mut().expect("rows") {
        let n = r["all_four_per_caption"].as_array().map_or(0, Vec::len);
        r["all_four_per_caption"] = serde_json::json!(vec![0.0; n]);
    }
    let (zero_json, paired_json) = (d.join("zero.json"), d.join("paired.json"));
    std::fs::write(&zero_json, zero.to_string()).expect("write");
    ok(eval().arg("--against").arg(&zero_json).arg("--json").arg(&paired_json));
    let p: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&paired_json).expect("json")).expect("parse");
    let against = p["against"].as_array().expect("against");
    assert_eq!(against.len(), 4);
    for (a, r) in against.iter().zip(rows) {
        let rate = r["all"].as_f64().expect("all") / r["images"].as_f64().expect("n");
        assert!((a["difference"].as_f64().expect("d") - rate).abs() < 1e-9, "{a} {r}");
        assert!((a["se"].as_f64().expect("se") - r["all_four_se"].as_f64().expect("se")).abs() < 1e-9, "{a} {r}");
    }
    let (code, _, err) = run(eval().args(["--seed", "1", "--against"]).arg(&json));
    assert_eq!(code, 3, "{err}");
    assert!(err.trim().lines().count() == 1 && err.contains("nothing to pair"), "{err}");

    // The style encoder: a run resumed after 2 of 4 steps ends where a straight run ends.
    let style = |out: &Path, steps: &str, resume: Option<&Path>| {
        let mut c = bin();
        c.args(["-q", "train-style", "--batch", "4", "--checkpoint-every", "1", "--steps", steps, "-m"])
            .arg(&m)
            .arg("--data")
            .arg(&data)
            .arg("-o")
            .arg(out);
        if let Some(r) = resume {
            c.arg("--resume").arg(r);
        }
        ok(&mut c);
    };
    let (straight, split) = (d.join("style-a"), d.join("style-b"));
    style(&straight, "4", None);
    style(&split, "2", None);
    style(&split, "4", Some(&split.join("checkpoint.safetensors")));
    let read = |p: &Path| std::fs::read(p.join("style.safetensors")).expect("style file");
    assert_eq!(read(&straight), read(&split), "resumed style run differs from the straight one");
    let log = std::fs::read_to_string(split.join("log.jsonl")).expect("log");
    assert_eq!(log.lines().count(), 4, "{log}");
    // Every caption instead of the default content ones: another S; a resume cannot switch.
    let content = d.join("style-c");
    ok(bin()
        .args(["-q", "train-style", "--captions", "all", "--batch", "4", "--steps", "4", "-m"])
        .arg(&m)
        .arg("--data")
        .arg(&data)
        .arg("-o")
        .arg(&content));
    assert_ne!(read(&content), read(&straight), "--captions all trained on the same captions");
    let (code, _, err) = run(bin()
        .args(["-q", "train-style", "--captions", "all", "--steps", "5", "-m"])
        .arg(&m)
        .arg("--data")
        .arg(&data)
        .arg("-o")
        .arg(d.join("style-d"))
        .arg("--resume")
        .arg(straight.join("checkpoint.safetensors")));
    assert!(code != 0 && err.trim().lines().count() == 1 && err.contains("--captions all"), "{code} {err}");

    // Style transfer: style images down, the style image then one column per caption.
    let real_image = |k: usize| {
        let class = std::fs::read_dir(data.join("images")).expect("images").flatten().nth(k).expect("class").path();
        std::fs::read_dir(class).expect("class dir").flatten().next().expect("image").path()
    };
    let grid = d.join("st.png");
    ok(bin()
        .args(["style-transfer", "a red circle", "a blue star on a white background", "-m"])
        .arg(&m)
        .arg("--style-model")
        .arg(straight.join("style.safetensors"))
        .arg("--style")
        .arg(real_image(0))
        .arg("--style")
        .arg(real_image(1))
        .arg("-o")
        .arg(&grid));
    let decoded = image::open(&grid).expect("png").to_rgb8();
    assert_eq!((decoded.width(), decoded.height()), (3 * 64 + 4 * 2, 2 * 64 + 3 * 2));

    // The disentangling evaluation writes its table and the ROC curves.
    let roc = d.join("roc");
    let out =
        ok(eval().arg("--style").arg("--style-model").arg(straight.join("style.safetensors")).arg("--roc").arg(&roc));
    assert!(out.contains("background AUC") && out.contains("caption embedding (baseline)"), "{out}");
    assert!(out.contains("style transfer, 120 pairs"), "{out}");
    assert!(out.contains("style transfer, shape position:"), "{out}");
    assert!(
        out.contains("the same captions with noise from the prior (no style image): colour of the caption"),
        "{out}"
    );
    let csv = std::fs::read_to_string(roc.with_extension("csv")).expect("csv");
    assert!(csv.starts_with("feature,property,fpr,tpr") && csv.lines().count() > 8, "{csv}");
    assert!(roc.with_extension("png").exists());
}

#[test]
fn eval_errors_are_one_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let m = model(d);
    std::fs::create_dir_all(d.join("notshapes")).expect("mkdir");
    let cases: Vec<(Vec<PathBuf>, i32, &str)> = vec![
        // A weights file is not a judge file.
        (vec!["eval".into(), "-m".into(), m.clone(), "--judge".into(), m.clone()], 3, "text2img-judge/1"),
        (
            vec!["eval".into(), "-m".into(), m.clone(), "--judge".into(), d.join("none.safetensors")],
            3,
            "none.safetensors",
        ),
        (
            vec!["train-judge".into(), "--data".into(), d.join("notshapes"), "-o".into(), d.join("j.safetensors")],
            3,
            "attributes.jsonl",
        ),
        (vec!["eval".into(), "-m".into(), m.clone(), "--style".into()], 2, "--style needs --data"),
        (
            vec![
                "style-transfer".into(),
                "x".into(),
                "-m".into(),
                m.clone(),
                "--style-model".into(),
                m.clone(),
                "--style".into(),
                m.clone(),
            ],
            3,
            "text2img-style/1",
        ),
    ];
    for (args, want, phrase) in cases {
        let (code, _, err) = run(bin().args(&args));
        assert_eq!(code, want, "{args:?}: {err}");
        assert!(err.contains(phrase), "{args:?}: '{err}' lacks '{phrase}'");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: not one line: {err}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
}
