//! The trainers as a user runs them: a run killed with SIGKILL (possibly mid-checkpoint) and
//! resumed ends with exactly the weights of an uninterrupted run; the checkpoint left behind is
//! always whole; bad resume files are refused with one line.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use text2img::data::shapes::IMAGE_LABEL_SIZES;
use text2img::model::discriminator::CLASSIFIER_WEIGHT;
use text2img::model::{Network, WeightSet};
use text2img::weights::LoadMode;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_text2img"))
}

fn ok(cmd: &mut Command) {
    let out = cmd.output().expect("run text2img");
    assert!(out.status.success(), "{:?} failed: {}", cmd, String::from_utf8_lossy(&out.stderr));
}

/// Runs `cmd`, which must fail with exit `code` and a one-line error containing `needle`.
fn fails_in_one_line(cmd: &mut Command, code: i32, needle: &str) {
    let out = cmd.output().expect("run text2img");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(err.contains(needle) && err.trim_end().lines().count() == 1, "{err}");
}

/// A small shapes set and a briefly trained tiny encoder.
fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let data = dir.join("shapes");
    ok(bin().args(["data", "make", "shapes", "--images", "240", "--seed", "3", "--out"]).arg(&data));
    let enc = dir.join("enc");
    ok(bin()
        .args([
            "-q",
            "train-encoder",
            "--config",
            "small",
            "--steps",
            "3",
            "--batch",
            "8",
            "--eval-every",
            "0",
            "--data",
        ])
        .arg(&data)
        .arg("--out")
        .arg(&enc));
    (data, enc.join("encoder.safetensors"))
}

fn gan(data: &Path, enc: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = bin();
    // Six steps unless `extra` says otherwise.
    let steps: &[&str] = if extra.contains(&"--steps") { &[] } else { &["--steps", "6"] };
    c.args(["-q", "train"])
        .args(steps)
        .args(["--batch", "8", "--checkpoint-every", "1", "--sample-every", "0", "-t", "2"])
        .arg("--data")
        .arg(data)
        .arg("--encoder")
        .arg(enc)
        .arg("--out")
        .arg(out)
        .args(extra);
    c
}

fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let ws = WeightSet::open(path, LoadMode::Read).expect("weights");
    assert!(ws.has(Network::Generator) && ws.has(Network::Encoder));
    file_tensors(path)
}

#[test]
fn sigkilled_run_resumes_to_the_uninterrupted_weights() {
    let dir = tempfile::tempdir().expect("tmp");
    let (data, enc) = setup(dir.path());
    let straight = dir.path().join("straight");
    ok(&mut gan(&data, &enc, &straight, &["--export-every", "4"]));
    // The intermediate export is a whole model; the last step's is model.safetensors alone.
    assert!(tensors(&straight.join("model-000004.safetensors")).len() > 10);
    assert!(!straight.join("model-000006.safetensors").exists());

    // Kill the second run with SIGKILL once it has checkpointed at least twice.
    let killed = dir.path().join("killed");
    let mut child = gan(&data, &enc, &killed, &[]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
    let log = killed.join("log.jsonl");
    let t0 = Instant::now();
    loop {
        let lines = std::fs::read_to_string(&log).map(|s| s.lines().count()).unwrap_or(0);
        if lines >= 3 || t0.elapsed() > Duration::from_secs(300) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    let ckpt = killed.join("checkpoint.safetensors");
    assert!(ckpt.exists(), "a checkpoint was written before the kill");
    assert!(!killed.join("model.safetensors").exists(), "the run was killed before it finished");
    // Whatever step it died in, the checkpoint is whole and resumes to the same end.
    ok(&mut gan(&data, &enc, &killed, &["--resume", ckpt.to_str().expect("utf8")]));
    // The log holds each step once: lines the killed run wrote after its last checkpoint are
    // dropped on resume (the resumed run writes those steps again).
    let steps: Vec<u64> = log_rows(&killed).iter().map(|r| r["step"].as_u64().expect("step")).collect();
    assert_eq!(steps, (1..=6).collect::<Vec<u64>>(), "log steps after kill + resume");
    let (a, b) = (tensors(&straight.join("model.safetensors")), tensors(&killed.join("model.safetensors")));
    assert_eq!(a.len(), b.len());
    for ((na, va), (nb, vb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(va == vb, "{na} differs after kill + resume");
    }
}

#[test]
fn resume_refuses_a_wrong_file_with_one_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let (data, enc) = setup(dir.path());
    // An encoder checkpoint is not a GAN checkpoint.
    let wrong = dir.path().join("enc/checkpoint.safetensors");
    let mut cmd = gan(&data, &enc, &dir.path().join("x"), &["--resume", wrong.to_str().expect("utf8")]);
    fails_in_one_line(&mut cmd, 3, "not a gan checkpoint");
}

#[test]
fn a_fresh_run_refuses_a_folder_that_holds_a_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let (data, enc) = setup(dir.path());
    // setup's encoder run left its checkpoint in enc/: starting again there would overwrite it.
    let enc_dir = dir.path().join("enc");
    let before = std::fs::read(enc_dir.join("checkpoint.safetensors")).expect("checkpoint");
    fails_in_one_line(&mut encoder_run(&data, &enc_dir, &[]), 2, "already holds a training run");
    assert!(before == std::fs::read(enc_dir.join("checkpoint.safetensors")).expect("checkpoint"), "untouched");
    // A GAN run likewise, even one that only got as far as its log.
    let out = dir.path().join("gan");
    std::fs::create_dir_all(&out).expect("mkdir");
    std::fs::write(out.join("log.jsonl"), "{\"step\":1}\n").expect("log");
    fails_in_one_line(&mut gan(&data, &enc, &out, &["--steps", "2"]), 2, "--resume");
    assert_eq!(std::fs::read_to_string(out.join("log.jsonl")).expect("log"), "{\"step\":1}\n");
    assert!(!out.join("checkpoint.safetensors").exists());
}

#[test]
fn ngf_ndf_and_d_act_after_deep_shape_a_new_run_and_are_refused_on_resume() {
    let dir = tempfile::tempdir().expect("tmp");
    let (data, enc) = setup(dir.path());
    let out = dir.path().join("wide");
    ok(&mut gan(&data, &enc, &out, &["--steps", "2", "--ngf", "12", "--ndf", "6", "--d-act-after-deep"]));
    let ws = WeightSet::open(&out.join("model.safetensors"), LoadMode::Read).expect("weights");
    assert_eq!((ws.config().generator.ngf, ws.config().discriminator.ndf), (12, 6));
    assert!(ws.config().discriminator.act_after_deep);
    // G's last layer maps ngf channels to RGB: its weight has ngf · 3 · 4 · 4 values.
    let last = file_tensors(&out.join("model.safetensors"))
        .into_iter()
        .find(|(n, _)| n == "generator.deconv4.weight")
        .expect("generator.deconv4.weight");
    assert_eq!(last.1.len(), 12 * 3 * 4 * 4);
    let ckpt = out.join("checkpoint.safetensors");
    let resume = ["--resume", ckpt.to_str().expect("utf8"), "--steps", "3"];
    fails_in_one_line(&mut gan(&data, &enc, &out, &[&resume[..], &["--ngf", "16"]].concat()), 2, "--ngf");
    let deep = &[&resume[..], &["--d-act-after-deep"]].concat();
    fails_in_one_line(&mut gan(&data, &enc, &out, deep), 2, "--d-act-after-deep");
    // Resumed without the flags, the run keeps the networks its checkpoint describes.
    ok(&mut gan(&data, &enc, &out, &resume));
    let ws = WeightSet::open(&out.join("model.safetensors"), LoadMode::Read).expect("weights");
    assert!(ws.config().discriminator.act_after_deep && ws.config().generator.ngf == 12);
    fails_in_one_line(&mut gan(&data, &enc, &dir.path().join("z"), &["--ngf", "0"]), 2, "generator.ngf = 0");
}

#[test]
fn g_refine_adds_two_blocks_that_generate_reads_and_is_refused_on_resume() {
    let dir = tempfile::tempdir().expect("tmp");
    let (data, enc) = setup(dir.path());
    let out = dir.path().join("refined");
    ok(&mut gan(&data, &enc, &out, &["--steps", "2", "--g-refine"]));
    let model = out.join("model.safetensors");
    let ws = WeightSet::open(&model, LoadMode::Read).expect("weights");
    assert!(ws.config().generator.refine);
    let names: Vec<String> = file_tensors(&model).into_iter().map(|(n, _)| n).collect();
    for block in ["generator.res2", "generator.res3"] {
        assert!(names.iter().any(|n| n == &format!("{block}.conv3.weight")), "{block} in {names:?}");
    }
    // The refined model generates (its config read from the file).
    let png = dir.path().join("r.png");
    let mut cmd = bin();
    cmd.args(["generate", "a red circle", "-m", model.to_str().expect("utf8"), "-o", png.to_str().expect("utf8")]);
    ok(&mut cmd);
    assert!(png.exists());
    let ckpt = out.join("checkpoint.safetensors");
    let resume = ["--resume", ckpt.to_str().expect("utf8"), "--steps", "3", "--g-refine"];
    fails_in_one_line(&mut gan(&data, &enc, &out, &resume), 2, "--g-refine");
    // A file of the original G says nothing of `refine` (its bytes are as before the option).
    let plain = dir.path().join("plain");
    ok(&mut gan(&data, &enc, &plain, &["--steps", "1"]));
    let bytes = std::fs::read(plain.join("model.safetensors")).expect("model");
    assert!(!String::from_utf8_lossy(&bytes[..4096.min(bytes.len())]).contains("refine"));
}

/// `train-encoder` with the flags of `setup` plus `extra`, writing into `out`.
fn encoder_run(data: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = bin();
    c.args([
        "-q",
        "train-encoder",
        "--config",
        "small",
        "--batch",
        "8",
        "--eval-every",
        "0",
        "--checkpoint-every",
        "1",
    ])
    .arg("--data")
    .arg(data)
    .arg("--out")
    .arg(out)
    .args(extra);
    c
}

fn file_tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let file = text2img::weights::WeightFile::open(path, LoadMode::Read).expect("weights");
    file.header().tensors.iter().map(|t| (t.name.clone(), file.f32_data(&t.name).expect("data").into_owned())).collect()
}

/// The rows of a run's log.jsonl, in order.
fn log_rows(out: &Path) -> Vec<serde_json::Value> {
    let log = std::fs::read_to_string(out.join("log.jsonl")).expect("log");
    log.lines().map(|l| serde_json::from_str(l).expect("json")).collect()
}

/// The trainer options a checkpoint holds (its "options" metadata, JSON).
fn checkpoint_options(path: &Path) -> serde_json::Value {
    let file = text2img::weights::WeightFile::open(path, LoadMode::Read).expect("checkpoint");
    let options = file.header().metadata.get("options").cloned().unwrap_or_default();
    serde_json::from_str(&options).expect("options JSON")
}

#[test]
fn encoder_with_attribute_heads_resumes_exactly() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("shapes");
    ok(bin().args(["data", "make", "shapes", "--images", "240", "--seed", "3", "--out"]).arg(&data));
    let heads = ["--attribute-weight", "1"];
    let straight = dir.path().join("straight");
    ok(&mut encoder_run(&data, &straight, &[&heads[..], &["--steps", "4"]].concat()));
    let split = dir.path().join("split");
    ok(&mut encoder_run(&data, &split, &[&heads[..], &["--steps", "2"]].concat()));
    let ckpt = split.join("checkpoint.safetensors");
    assert!(file_tensors(&ckpt).iter().any(|(n, _)| n.starts_with("attribute_heads.")), "heads are checkpointed");
    ok(&mut encoder_run(&data, &split, &["--steps", "4", "--resume", ckpt.to_str().expect("utf8")]));
    for name in ["encoder.safetensors", "image_encoder.safetensors", "checkpoint.safetensors"] {
        let (a, b) = (file_tensors(&straight.join(name)), file_tensors(&split.join(name)));
        assert_eq!(a.len(), b.len(), "{name}");
        assert!(!a.iter().any(|(n, _)| n.starts_with("attribute_heads.")) || name == "checkpoint.safetensors");
        for ((na, va), (nb, vb)) in a.iter().zip(&b) {
            assert!(na == nb && va == vb, "{name}: {na} differs after resume");
        }
    }
}

#[test]
fn attribute_heads_refuse_a_dataset_without_shapes_classes() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("birds");
    ok(bin().args(["data", "make", "shapes", "--images", "240", "--seed", "3", "--out"]).arg(&data));
    // Rename one class the CUB way: its number stays, its name no longer says shape and colour.
    common::rename_class(&data, "002.orange_circle", "002.albatross");
    let mut cmd = encoder_run(&data, &dir.path().join("enc"), &["--steps", "2", "--attribute-weight", "1"]);
    fails_in_one_line(&mut cmd, 2, "002.albatross");
}

#[test]
fn classifier_switches_on_at_resume_and_stays_out_of_the_model_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let (data, enc) = setup(dir.path());
    let out = dir.path().join("gan");
    ok(&mut gan(&data, &enc, &out, &["--steps", "3"]));
    let ckpt = out.join("checkpoint.safetensors");
    ok(&mut gan(&data, &enc, &out, &["--classifier", "1", "--resume", ckpt.to_str().expect("utf8")]));
    let names: Vec<String> = file_tensors(&ckpt).into_iter().map(|(n, _)| n).collect();
    assert!(names.iter().any(|n| n == CLASSIFIER_WEIGHT), "the checkpoint keeps D's classifier");
    let classes: Vec<f64> = log_rows(&out).iter().map(|r| r["d_class"].as_f64().unwrap_or(-1.0)).collect();
    assert_eq!(classes.len(), 6);
    assert!(classes[..3].iter().all(|&c| c == 0.0) && classes[3..].iter().all(|&c| c > 0.0), "{classes:?}");
    let model: Vec<String> = tensors(&out.join("model.safetensors")).into_iter().map(|(n, _)| n).collect();
    assert!(!model.iter().any(|n| n == CLASSIFIER_WEIGHT), "the model file has no classifier");
    assert!(model.iter().any(|n| n.starts_with("discriminator.")), "it has D");
}

#[test]
fn pooled_classifier_and_d_learning_rate_scale_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let (data, enc) = setup(dir.path());
    fails_in_one_line(&mut gan(&data, &enc, &dir.path().join("a"), &["--classifier-pool"]), 2, "--classifier-pool");
    fails_in_one_line(&mut gan(&data, &enc, &dir.path().join("b"), &["--lr-d-scale", "0"]), 2, "--lr-d-scale");
    fails_in_one_line(&mut gan(&data, &enc, &dir.path().join("c"), &["--lr", "0"]), 2, "--lr");
    let out = dir.path().join("gan");
    let flags = ["--steps", "2", "--classifier", "1", "--classifier-pool", "--lr-d-scale", "2"];
    ok(&mut gan(&data, &enc, &out, &flags));
    // The pooled read-out is a 1×1 conv: classes × 8·ndf weights (the per-position one has 16×).
    let ndf =
        WeightSet::open(&out.join("model.safetensors"), LoadMode::Read).expect("model").config().discriminator.ndf;
    let ckpt = out.join("checkpoint.safetensors");
    let head = file_tensors(&ckpt).into_iter().find(|(n, _)| n == CLASSIFIER_WEIGHT).expect("classifier");
    assert_eq!(head.1.len(), IMAGE_LABEL_SIZES.iter().sum::<usize>() * 8 * ndf);
    // A resumed run keeps it (and may change the rate); a D with a per-position read-out refuses it.
    let resume = ["--resume", ckpt.to_str().expect("utf8"), "--steps", "3", "--lr-d-scale", "1", "--lr", "1e-4"];
    ok(&mut gan(&data, &enc, &out, &resume));
    // G's rate is switched from the resumed step on (the log's lr is G's).
    let rates: Vec<f64> = log_rows(&out).iter().map(|r| r["lr"].as_f64().unwrap_or(-1.0)).collect();
    assert_eq!(rates.len(), 3);
    assert!(rates[..2].iter().all(|&r| (r - 2e-4).abs() < 1e-9) && (rates[2] - 1e-4).abs() < 1e-9, "{rates:?}");
    // The centred mode-seeking term is switched on at a resume and kept in the checkpoint.
    assert_eq!(checkpoint_options(&ckpt)["mode_seeking_centred"], false);
    let centred = ["--resume", ckpt.to_str().expect("utf8"), "--steps", "4", "--mode-seeking", "0.1"];
    ok(&mut gan(&data, &enc, &out, &[&centred[..], &["--mode-seeking-centred"]].concat()));
    assert_eq!(checkpoint_options(&ckpt)["mode_seeking_centred"], true);
    assert!(log_rows(&out)[3]["mode_seeking"].as_f64().unwrap_or(0.0) > 0.0, "the term is on at step 4");
    // So is the shape-mask form (CPU only: the GPU trainer refuses it).
    let masked = ["--resume", ckpt.to_str().expect("utf8"), "--steps", "5", "--mode-seeking-mask"];
    ok(&mut gan(&data, &enc, &out, &masked));
    assert_eq!(checkpoint_options(&ckpt)["mode_seeking_mask"], true);
    assert!(log_rows(&out)[4]["mode_seeking"].as_f64().unwrap_or(0.0) > 0.0, "the term is on at step 5");
    let plain = dir.path().join("plain");
    ok(&mut gan(&data, &enc, &plain, &["--steps", "1", "--classifier", "1"]));
    let ckpt = plain.join("checkpoint.safetensors");
    let resume = ["--resume", ckpt.to_str().expect("utf8"), "--steps", "2", "--classifier-pool"];
    fails_in_one_line(&mut gan(&data, &enc, &plain, &resume), 2, "not pooled");
}

#[test]
fn twin_classifier_doubles_the_head_and_logs_both_halves() {
    let dir = tempfile::tempdir().expect("tmp");
    let (data, enc) = setup(dir.path());
    fails_in_one_line(&mut gan(&data, &enc, &dir.path().join("a"), &["--classifier-twin"]), 2, "--classifier-twin");
    let out = dir.path().join("gan");
    ok(&mut gan(&data, &enc, &out, &["--steps", "2", "--classifier", "1", "--classifier-pool", "--classifier-twin"]));
    let ndf =
        WeightSet::open(&out.join("model.safetensors"), LoadMode::Read).expect("model").config().discriminator.ndf;
    let ckpt = out.join("checkpoint.safetensors");
    let head = file_tensors(&ckpt).into_iter().find(|(n, _)| n == CLASSIFIER_WEIGHT).expect("classifier");
    assert_eq!(head.1.len(), 2 * IMAGE_LABEL_SIZES.iter().sum::<usize>() * 8 * ndf, "classifier and twin rows");
    assert_eq!(checkpoint_options(&ckpt)["classifier_twin"], true);
    assert_eq!(checkpoint_options(&ckpt)["classifier_twin_scale"], 1.0, "TAC-GAN's weight unless given");
    // A resume keeps the twin without the flag; both halves' losses are logged at every step.
    ok(&mut gan(&data, &enc, &out, &["--resume", ckpt.to_str().expect("utf8"), "--steps", "3"]));
    // G's twin term can be scaled at a resume (and not below 0).
    let scaled = ["--resume", ckpt.to_str().expect("utf8"), "--steps", "4", "--classifier-twin-scale", "0.5"];
    ok(&mut gan(&data, &enc, &out, &scaled));
    assert_eq!(checkpoint_options(&ckpt)["classifier_twin_scale"], 0.5);
    let negative = ["--resume", ckpt.to_str().expect("utf8"), "--steps", "5", "--classifier-twin-scale=-1"];
    fails_in_one_line(&mut gan(&data, &enc, &out, &negative), 2, "--classifier-twin-scale");
    // The classifier can be taught G's images as no shape kind from a resume on; logged per step.
    let fake = ["--resume", ckpt.to_str().expect("utf8"), "--steps", "5", "--classifier-fake", "1"];
    ok(&mut gan(&data, &enc, &out, &fake));
    assert_eq!(checkpoint_options(&ckpt)["classifier_fake"], 1.0);
    let rows = log_rows(&out);
    assert!(rows[4]["d_fake_class"].as_f64().unwrap_or(0.0) > 0.0, "the term is on at step 5");
    assert_eq!(rows[3]["d_fake_class"].as_f64(), Some(0.0), "and was off before");
    let negative = ["--resume", ckpt.to_str().expect("utf8"), "--steps", "6", "--classifier-fake=-1"];
    fails_in_one_line(&mut gan(&data, &enc, &out, &negative), 2, "--classifier-fake");
    // D's translation augmentation from a resume on, saved with the options; at most 16 pixels.
    let shifted = ["--resume", ckpt.to_str().expect("utf8"), "--steps", "6", "--d-shift", "4"];
    ok(&mut gan(&data, &enc, &out, &shifted));
    assert_eq!(checkpoint_options(&ckpt)["d_shift"], 4);
    let far = ["--resume", ckpt.to_str().expect("utf8"), "--steps", "7", "--d-shift", "17"];
    fails_in_one_line(&mut gan(&data, &enc, &out, &far), 2, "--d-shift 17");
    // D's symmetries likewise, switched on by the bare flag and off by `false`.
    let flipped = ["--resume", ckpt.to_str().expect("utf8"), "--steps", "7", "--d-flip"];
    ok(&mut gan(&data, &enc, &out, &flipped));
    assert_eq!(checkpoint_options(&ckpt)["d_flip"], true);
    let unflipped = ["--resume", ckpt.to_str().expect("utf8"), "--steps", "8", "--d-flip", "false"];
    ok(&mut gan(&data, &enc, &out, &unflipped));
    assert_eq!(checkpoint_options(&ckpt)["d_flip"], false);
    let odd = ["--resume", ckpt.to_str().expect("utf8"), "--steps", "9", "--d-flip", "maybe"];
    fails_in_one_line(&mut gan(&data, &enc, &out, &odd), 2, "'maybe' for '--d-flip");
    let half = ["--resume", ckpt.to_str().expect("utf8"), "--steps", "9", "--d-augment-p", "0.5"];
    ok(&mut gan(&data, &enc, &out, &half));
    assert_eq!(checkpoint_options(&ckpt)["d_augment_p"], 0.5);
    let more = ["--resume", ckpt.to_str().expect("utf8"), "--steps", "10", "--d-augment-p", "1.5"];
    fails_in_one_line(&mut gan(&data, &enc, &out, &more), 2, "--d-augment-p 1.5");
    for row in log_rows(&out) {
        for key in ["d_class", "d_twin", "g_class", "g_twin"] {
            assert!(row[key].as_f64().unwrap_or(0.0) > 0.0, "{key} in {row}");
        }
    }
    // A D whose classifier has no twin cannot get one at a resume.
    let plain = dir.path().join("plain");
    ok(&mut gan(&data, &enc, &plain, &["--steps", "1", "--classifier", "1"]));
    let ckpt = plain.join("checkpoint.safetensors");
    let resume = ["--resume", ckpt.to_str().expect("utf8"), "--steps", "2", "--classifier-twin"];
    fails_in_one_line(&mut gan(&data, &enc, &plain, &resume), 2, "without a twin");
    let resume = ["--resume", ckpt.to_str().expect("utf8"), "--steps", "2", "--classifier-twin-scale", "0.5"];
    fails_in_one_line(&mut gan(&data, &enc, &plain, &resume), 2, "no twin");
    let resume = ["--resume", ckpt.to_str().expect("utf8"), "--steps", "2", "--classifier-fake", "1"];
    fails_in_one_line(&mut gan(&data, &enc, &plain, &resume), 2, "no twin");
    assert_eq!(log_rows(&plain)[0]["d_twin"], 0.0, "no twin, no twin loss");
}

#[test]
fn classifier_and_shape_weight_refuse_a_dataset_without_shapes_classes_and_a_negative_weight() {
    let dir = tempfile::tempdir().expect("tmp");
    let (data, enc) = setup(dir.path());
    common::rename_class(&data, "002.orange_circle", "002.albatross");
    fails_in_one_line(&mut gan(&data, &enc, &dir.path().join("a"), &["--classifier", "1"]), 2, "002.albatross");
    fails_in_one_line(&mut gan(&data, &enc, &dir.path().join("b"), &["--classifier=-1"]), 2, "--classifier");
    let shape_weighted = ["--vae", "1", "--vae-shape-weight", "5"];
    fails_in_one_line(&mut gan(&data, &enc, &dir.path().join("d"), &shape_weighted), 2, "002.albatross");
    fails_in_one_line(
        &mut gan(&data, &enc, &dir.path().join("c"), &["--mode-seeking", "0.1", "--mode-seeking-cell", "3"]),
        2,
        "--mode-seeking-cell",
    );
}

#[test]
fn ema_exports_the_average_beside_the_raw_generator() {
    let dir = tempfile::tempdir().expect("tmp");
    let (data, enc) = setup(dir.path());
    let out = dir.path().join("gan");
    ok(&mut gan(&data, &enc, &out, &["--steps", "4", "--ema", "0.5", "--export-every", "2"]));
    for stem in ["model-000002", "model"] {
        let (avg, raw) =
            (tensors(&out.join(format!("{stem}.safetensors"))), tensors(&out.join(format!("{stem}-raw.safetensors"))));
        assert_eq!(avg.len(), raw.len());
        let differ = |prefix: &str| avg.iter().zip(&raw).any(|((n, a), (_, r))| n.starts_with(prefix) && a != r);
        assert!(differ("generator."), "{stem}: the averaged G is not the raw one");
        assert!(!differ("discriminator.") && !differ("encoder."), "{stem}: only G differs");
    }
    // Switched off on resume: one model file again.
    let ckpt = out.join("checkpoint.safetensors");
    ok(&mut gan(&data, &enc, &out, &["--steps", "5", "--ema", "0", "--resume", ckpt.to_str().expect("utf8")]));
    assert!(!file_tensors(&ckpt).iter().any(|(n, _)| n == "ema.generator"), "the average left the checkpoint");
    fails_in_one_line(&mut gan(&data, &enc, &dir.path().join("b"), &["--ema", "1"]), 2, "--ema");
}

#[test]
fn resume_drops_log_lines_past_the_checkpoint() {
    let dir = tempfile::tempdir().expect("tmp");
    let (data, enc) = setup(dir.path());
    let out = dir.path().join("gan");
    ok(&mut gan(&data, &enc, &out, &["--steps", "3"]));
    // As if the run had gone on to step 5 and died before checkpointing again.
    let log = out.join("log.jsonl");
    let mut text = std::fs::read_to_string(&log).expect("log");
    text.push_str("{\"step\":4,\"d_loss\":9}\n{\"step\":5,\"d_loss\":9}\n");
    std::fs::write(&log, text).expect("write");
    let ckpt = out.join("checkpoint.safetensors");
    ok(&mut gan(&data, &enc, &out, &["--resume", ckpt.to_str().expect("utf8")]));
    let rows = log_rows(&out);
    let steps: Vec<u64> = rows.iter().map(|r| r["step"].as_u64().expect("step")).collect();
    assert_eq!(steps, (1..=6).collect::<Vec<u64>>());
    assert!(rows.iter().all(|r| r["d_loss"].as_f64() != Some(9.0)), "the stale lines are gone");
}

/// Runs `cmd` (without -q) and returns its stderr, which says whether the caption embeddings
/// came from the run folder's cache.
fn stderr_of(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run text2img");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{cmd:?} failed: {err}");
    err
}

#[test]
fn caption_embeddings_are_cached_per_run_folder_and_rebuilt_when_stale() {
    let dir = tempfile::tempdir().expect("tmp");
    let (data, enc) = setup(dir.path());
    let out = dir.path().join("gan");
    let ckpt = out.join("checkpoint.safetensors");
    let cache = out.join("caption-embeddings.safetensors");
    let run = |steps: &str, resume: bool| {
        let c = gan(&data, &enc, &out, &["--steps", steps]);
        let args: Vec<String> = c.get_args().map(|a| a.to_string_lossy().into_owned()).filter(|a| a != "-q").collect();
        let mut v = bin();
        v.args(args);
        if resume {
            v.arg("--resume").arg(&ckpt);
        }
        stderr_of(&mut v)
    };
    assert!(run("2", false).contains("embedded"), "first run embeds");
    assert!(cache.exists(), "and leaves the cache");
    assert!(run("3", true).contains("read from the cache"), "a resumed run reads it");
    // A damaged cache is only a lost shortcut: embedded again and rewritten.
    std::fs::write(&cache, b"not a safetensors file").expect("damage");
    assert!(run("4", true).contains("embedded"));
    assert!(run("5", true).contains("read from the cache"));
    // Another caption (or encoder) makes the cache stale.
    let txt = std::fs::read_dir(data.join("text_c10"))
        .expect("captions")
        .filter_map(|d| d.ok())
        .flat_map(|d| std::fs::read_dir(d.path()).expect("class").filter_map(|f| f.ok()).map(|f| f.path()))
        .find(|p| p.extension().is_some_and(|e| e == "txt"))
        .expect("a caption file");
    let text = std::fs::read_to_string(&txt).expect("read");
    std::fs::write(&txt, text.replacen(' ', "  ", 1)).expect("edit");
    assert!(run("6", true).contains("embedded"), "an edited caption is embedded afresh");
}

/// `train --device cuda` where no GPU can run (no driver here, or a build without the CUDA
/// backend): one line and the device exit code (5), before any data is read.
#[test]
fn train_on_a_missing_gpu_is_a_clean_device_error() {
    if text2img_has_usable_gpu() {
        eprintln!("SKIPPED train_on_a_missing_gpu_is_a_clean_device_error: this machine has an NVIDIA driver");
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("gan");
    let mut cmd = gan(&dir.path().join("no-data"), &dir.path().join("no-encoder"), &out, &["--device", "cuda"]);
    fails_in_one_line(&mut cmd, 5, "CUDA");
    assert!(!out.join("log.jsonl").exists(), "nothing was trained");
}

/// Whether this test run sits on a machine where `--device cuda` would open a GPU (never on the
/// development or CI machines; the GPU machine runs only the CUDA suites).
fn text2img_has_usable_gpu() -> bool {
    std::path::Path::new("/proc/driver/nvidia").exists()
}

#[test]
fn vae_switches_on_at_resume_and_exports_its_style_encoder() {
    let dir = tempfile::tempdir().expect("tmp");
    let (data, enc) = setup(dir.path());
    let out = dir.path().join("gan");
    ok(&mut gan(&data, &enc, &out, &["--steps", "2"]));
    assert!(!out.join("model-style.safetensors").exists(), "no E, no style encoder");
    let ckpt = out.join("checkpoint.safetensors");
    let resume = ["--resume", ckpt.to_str().expect("utf8")];
    let on = ["--steps", "3", "--vae", "5", "--vae-kl", "0.1", "--vae-shape-weight", "10", "--vae-latent", "0.5"];
    ok(&mut gan(&data, &enc, &out, &[&on[..], &resume].concat()));
    let meta = checkpoint_options(&ckpt);
    assert_eq!(meta["vae_shape_weight"], 10.0, "the shape weight is saved: {meta}");
    assert_eq!(meta["vae_latent"], 0.5, "the latent weight is saved: {meta}");
    let last = log_rows(&out).pop().expect("a line");
    assert!(last["latent"].as_f64().is_some_and(|l| l > 0.0), "the latent term is logged: {last}");
    let names: Vec<String> = file_tensors(&ckpt).into_iter().map(|(n, _)| n).collect();
    assert!(names.iter().any(|n| n == "posterior.proj.weight"), "E is checkpointed: {names:?}");
    assert!(names.iter().any(|n| n == "optim.posterior.v"), "E's optimizer is checkpointed");
    let style = file_tensors(&out.join("model-style.safetensors"));
    assert!(style.iter().any(|(n, _)| n == "style.proj.weight"), "the style encoder is exported");
    assert!(!tensors(&out.join("model.safetensors")).iter().any(|(n, _)| n.starts_with("posterior.")), "E stays out");
    // Paused (weight 0) on resume: E and its state stay in the checkpoint.
    ok(&mut gan(&data, &enc, &out, &[&["--steps", "4", "--vae", "0"][..], &resume].concat()));
    assert!(file_tensors(&ckpt).iter().any(|(n, _)| n == "posterior.proj.weight"), "E kept while paused");
    fails_in_one_line(&mut gan(&data, &enc, &dir.path().join("b"), &["--vae=-1"]), 2, "--vae");
    fails_in_one_line(&mut gan(&data, &enc, &dir.path().join("c"), &["--vae", "1", "--vae-kl", "nan"]), 2, "--vae-kl");
    let negative = ["--vae", "1", "--vae-shape-weight=-2"];
    fails_in_one_line(&mut gan(&data, &enc, &dir.path().join("d"), &negative), 2, "--vae-shape-weight");
    let negative = ["--vae", "1", "--vae-latent=-1"];
    fails_in_one_line(&mut gan(&data, &enc, &dir.path().join("e"), &negative), 2, "--vae-latent");
}

#[test]
fn a_diverged_run_stops_and_keeps_its_last_checkpoint() {
    let dir = tempfile::tempdir().expect("tmp");
    let (data, enc) = setup(dir.path());
    let out = dir.path().join("run");
    ok(&mut gan(&data, &enc, &out, &["--steps", "2"]));
    let ckpt = out.join("checkpoint.safetensors");
    let before = std::fs::read(&ckpt).expect("checkpoint");
    let model_before = std::fs::read(out.join("model.safetensors")).expect("model");
    // Any loss is above 1e-4: the first step past the checkpoint counts as a blow-up.
    let resume =
        ["--steps", "4", "--max-loss", "0.0001", "--export-every", "1", "--resume", ckpt.to_str().expect("utf8")];
    fails_in_one_line(&mut gan(&data, &enc, &out, &resume), 6, "step 3: D's loss");
    assert_eq!(std::fs::read(&ckpt).expect("checkpoint"), before, "a diverged step overwrote the checkpoint");
    assert!(!out.join("model-000003.safetensors").exists(), "a diverged step was exported");
    assert_eq!(std::fs::read(out.join("model.safetensors")).expect("model"), model_before);
    // The diverged step is in the log (to see what happened), the run is not.
    let steps: Vec<u64> = log_rows(&out).iter().map(|r| r["step"].as_u64().expect("step")).collect();
    assert_eq!(steps, [1, 2, 3]);
    fails_in_one_line(&mut gan(&data, &enc, &dir.path().join("bad"), &["--max-loss=-1"]), 2, "--max-loss");
}
