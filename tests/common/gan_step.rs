//! One GAN-INT-CLS step (D step of three passes, G step of B + B/2 rows, both Adam steps) taken by
//! two trainers from the same state and batch, and the comparison of what they end with: the
//! GPU trainer against the CPU's (cuda_train_ops.rs), and the CPU's against itself from inputs and
//! weights nudged by one ulp (train_graph.rs), which is what sets the tolerances.
//!
//! Why the tolerances are loose for a comparison of f32 sums: the step is not continuous. A
//! (leaky) ReLU whose input lies within rounding of zero, or a max-pool whose two largest inputs
//! do, passes its gradient one way or the other depending on the last bit, and over ~3 M
//! activations at batch 8 a step often meets such a point. One-ulp nudges of the
//! CPU's own inputs and weights (session 25, 18 steps) move its gradients by 7e-7 when no such
//! point is met and by up to 4.8e-4 (one tensor: 1.4e-3, D's first layer 1.1e-3) when one is,
//! and then up to 0.23 % of G's weights step differently after Adam's first step (which moves
//! each weight by ±lr, so a gradient within that error of zero may take the other sign). The
//! GPU's differences from the CPU are the same events: session 16's unexplained D conv0 error
//! (1.12e-3, whole D 4.1e-4) and session 25's G errors (8.4e-5 with 2,082 weights apart) are, to
//! the digit, what nudged CPU steps give. A wrong index, fragment or race moves whole tensors by
//! O(1), far outside these bounds. The VAE rebuild's step is far more sensitive still (its own
//! bound below).
use text2img::model::ModelConfig;
use text2img::train::gan::{GanBatch, GanOptions, GanTrainer, StepStats};
use text2img::train::net::TrainNet;

use super::{random, rel_error};

/// The losses: sums through two networks and back, with no jump at a kink (1e-7 seen).
pub const TOL_LOSS: f64 = 1e-4;
/// Each parameter tensor's gradient (through Adam's first moment, m = (1 − β1)·g after one
/// step): 3.5× the largest nudged difference seen (1.4e-3).
pub const TOL_GRADIENT: f64 = 5e-3;
/// The same with the VAE rebuild on, whose nudged steps differ far more (G's deconv1 6.4e-2,
/// E's conv3 2.6e-2 in 4 nudges of 4; the GPU's step: 1.5e-5): 3× the largest.
pub const TOL_GRADIENT_VAE: f64 = 0.2;

/// The gradient tolerance of a configuration.
fn gradient_tolerance(options: &GanOptions) -> f64 {
    if options.vae > 0.0 {
        TOL_GRADIENT_VAE
    } else {
        TOL_GRADIENT
    }
}
/// The share of a network's weights whose step may differ by more than 1 % of the rate: 4× the
/// largest seen (0.23 %).
pub const MOVED_APART_SHARE: f64 = 0.01;
/// Batch-norm running statistics: forward sums only, continuous (2e-5 as the other sum checks).
pub const TOL_RUNNING: f64 = 2e-5;

/// The configurations compared: the paper's terms alone (and with D frozen, so G's step reads
/// the same D on both sides), the auxiliary classifier with mode seeking and the average, the
/// shipped recipe's classifier (max-pooled read-out and its twin), and each of its options.
pub fn cases() -> Vec<(&'static str, GanOptions)> {
    let sizes = text2img::data::shapes::IMAGE_LABEL_SIZES.to_vec();
    let plain = GanOptions { batch: 8, seed: 3, ..GanOptions::default() };
    let extras = GanOptions {
        classifier_sizes: sizes.clone(),
        classifier_weight: 2.0,
        ema: 0.999,
        mode_seeking: 0.1,
        mode_seeking_cell: 8,
        mode_seeking_target: 0.25,
        ..plain.clone()
    };
    let pooled_twin = GanOptions {
        classifier_sizes: sizes,
        classifier_weight: 1.0,
        classifier_pool: true,
        classifier_twin: true,
        classifier_twin_scale: 0.5,
        ..plain.clone()
    };
    let with = |f: &dyn Fn(&mut GanOptions)| {
        let mut o = pooled_twin.clone();
        f(&mut o);
        o
    };
    vec![
        ("plain, D frozen", GanOptions { lr_d_scale: 0.0, ..plain.clone() }),
        ("plain", plain),
        ("with classifier, mode seeking and average", extras),
        ("with the pooled classifier and its twin", pooled_twin.clone()),
        ("with the pooled classifier, its twin and --classifier-fake", with(&|o| o.classifier_fake = 1.0)),
        ("with the pooled classifier, its twin and --d-shift", with(&|o| o.d_shift = 5)),
        ("with the pooled classifier, its twin and --d-flip", with(&|o| o.d_flip = true)),
        (
            "with the pooled classifier, its twin, --d-flip and --d-shift",
            with(&|o| {
                o.d_flip = true;
                o.d_shift = 5
            }),
        ),
        // The conditional-VAE rebuild with its KL and shape weight (session 18's recipe stage).
        (
            "with the pooled classifier, its twin and the VAE term",
            with(&|o| {
                o.vae = 10.0;
                o.vae_kl = 0.05;
                o.vae_shape_weight = 10.0
            }),
        ),
    ]
}

/// A step's inputs (batch 8, `shapes` sizes), owned.
pub struct StepInputs {
    pub real: Vec<f32>,
    pub wrong: Vec<f32>,
    pub text: Vec<f32>,
    labels: Vec<usize>,
    geometry: Vec<[f32; 3]>,
    options: GanOptions,
}

impl StepInputs {
    pub fn new(cfg: &ModelConfig, options: &GanOptions) -> Self {
        let sizes = text2img::data::shapes::IMAGE_LABEL_SIZES;
        let (img, e) = (3 * 64 * 64, cfg.encoder.embed_dim);
        StepInputs {
            real: random(8 * img, 900),
            wrong: random(8 * img, 901),
            text: random(8 * e, 902),
            labels: (0..8 * sizes.len()).map(|i| (i * 7 + 3) % sizes[i % sizes.len()]).collect(),
            geometry: (0..8).map(|i| [20.0 + 3.0 * i as f32, 30.0, 6.0 + i as f32]).collect(),
            options: options.clone(),
        }
    }

    /// The same inputs with a random half of the images' and captions' values one ulp larger.
    pub fn nudged(&self, seed: u64) -> Self {
        StepInputs {
            real: nudge(&self.real, seed),
            wrong: nudge(&self.wrong, seed + 1),
            text: nudge(&self.text, seed + 2),
            labels: self.labels.clone(),
            geometry: self.geometry.clone(),
            options: self.options.clone(),
        }
    }

    pub fn batch(&self) -> GanBatch<'_> {
        let labels = if self.options.classifier_weight > 0.0 { &self.labels[..] } else { &[] };
        let shapes = if self.options.vae_shape_weight > 0.0 { &self.geometry[..] } else { &[] };
        GanBatch { real: &self.real, wrong: &self.wrong, text: &self.text, labels, shapes }
    }
}

/// `v` with a random half of its values one ulp larger in magnitude.
pub fn nudge(v: &[f32], seed: u64) -> Vec<f32> {
    let coin = random(v.len(), seed);
    v.iter().zip(&coin).map(|(&x, &c)| if c > 0.0 { f32::from_bits(x.to_bits() + 1) } else { x }).collect()
}

/// G's and D's weights of `t` with a random half of each one ulp larger in magnitude.
pub fn nudge_weights(t: &mut GanTrainer, seed: u64) {
    let g = nudge(&t.g.params.data, seed);
    t.g.params.data_mut().copy_from_slice(&g);
    let d = nudge(&t.d.params.data, seed + 10);
    t.d.params.data_mut().copy_from_slice(&d);
}

/// The weights a trainer starts from (G, D, and E when the VAE term is on), to measure its step.
pub struct Start {
    g: Vec<f32>,
    d: Vec<f32>,
    e: Option<Vec<f32>>,
}

impl Start {
    pub fn of(t: &GanTrainer) -> Self {
        Start {
            g: t.g.params.data.clone(),
            d: t.d.params.data.clone(),
            e: t.posterior.as_ref().map(|p| p.net.params.data.clone()),
        }
    }
}

/// Compares trainer `got` (after one step from `got_start`, returning `got_stats`) with `want`
/// (likewise), passing each check's verdict and line to `check`: every loss, each network's
/// gradients per tensor (through Adam's m), running statistics and step (the share of weights
/// moved apart by more than 1 % of the rate, none by more than 2·lr), G's average, E's.
pub fn compare(
    what: &str,
    (want, want_start, want_stats): (&GanTrainer, &Start, &StepStats),
    (got, got_start, got_stats): (&GanTrainer, &Start, &StepStats),
    check: &mut dyn FnMut(bool, String),
) {
    for (name, g, w) in [
        ("d_loss", got_stats.d_loss, want_stats.d_loss),
        ("g_loss", got_stats.g_loss, want_stats.g_loss),
        ("d_class", got_stats.d_class, want_stats.d_class),
        ("g_class", got_stats.g_class, want_stats.g_class),
        ("mode_seeking", got_stats.mode_seeking, want_stats.mode_seeking),
        ("d_twin", got_stats.d_twin, want_stats.d_twin),
        ("g_twin", got_stats.g_twin, want_stats.g_twin),
        ("d_fake_class", got_stats.d_fake_class, want_stats.d_fake_class),
        ("recon", got_stats.recon, want_stats.recon),
        ("kl", got_stats.kl, want_stats.kl),
    ] {
        let e = rel_error(&[g], &[w]);
        check(g.is_finite() && e <= TOL_LOSS, format!("{what}: {name} {g} against {w}: relative error {e:.2e}"));
    }
    // Each network's first step is ±its own rate (D's is G's times lr_d_scale; 0 when frozen,
    // kept positive so that "apart" means any difference).
    let tol = gradient_tolerance(&want.options);
    let (lr, lr_d) = (want.options.adam_at(0).lr as f64, (want.options.adam_d_at(0).lr as f64).max(f64::MIN_POSITIVE));
    let nets = [
        ("G", lr, &want.g, &want.g_adam.m, &want_start.g, &got.g, &got.g_adam.m, &got_start.g),
        ("D", lr_d, &want.d, &want.d_adam.m, &want_start.d, &got.d, &got.d_adam.m, &got_start.d),
    ];
    for (net, rate, wn, wm, w0, gn, gm, g0) in nets {
        network(&format!("{what}: {net}"), (wn, wm, w0), (gn, gm, g0), (rate, tol), check);
    }
    if let (Some(w), Some(g)) = (&want.g_ema, &got.g_ema) {
        check_moves(&format!("{what}: G's average"), (&want_start.g, w), (&got_start.g, g), lr, check);
    }
    if let (Some(w), Some(g), Some(w0), Some(g0)) = (&want.posterior, &got.posterior, &want_start.e, &got_start.e) {
        network(&format!("{what}: E"), (&w.net, &w.adam.m, w0), (&g.net, &g.adam.m, g0), (lr, tol), check);
    }
}

/// One network: each tensor's gradient (within `tol`), the running statistics and the step.
fn network(
    what: &str,
    (want, want_m, want_start): (&TrainNet, &[f32], &[f32]),
    (got, got_m, got_start): (&TrainNet, &[f32], &[f32]),
    (lr, tol): (f64, f64),
    check: &mut dyn FnMut(bool, String),
) {
    let mut worst = (0.0, "");
    for slot in &want.graph.params {
        let r = slot.offset..slot.offset + slot.len;
        let e = rel_error(&got_m[r.clone()], &want_m[r]);
        if e > worst.0 {
            worst = (e, &slot.name);
        }
    }
    check(
        worst.0 <= tol,
        format!("{what} gradients (Adam's m): largest relative error {:.2e}, in {}", worst.0, worst.1),
    );
    let e = rel_error(&got.buffers, &want.buffers);
    check(e <= TOL_RUNNING, format!("{what} running statistics: relative error {e:.2e}"));
    check_moves(what, (want_start, &want.params.data), (got_start, &got.params.data), lr, check);
}

/// The step each weight took on both sides.
fn check_moves(
    what: &str,
    want: (&[f32], &[f32]),
    got: (&[f32], &[f32]),
    lr: f64,
    check: &mut dyn FnMut(bool, String),
) {
    let diffs: Vec<f64> =
        (0..want.0.len()).map(|i| ((got.1[i] - got.0[i]) as f64 - (want.1[i] - want.0[i]) as f64).abs()).collect();
    let apart = diffs.iter().filter(|&&x| x > 0.01 * lr).count();
    let worst = diffs.iter().fold(0.0f64, |m, &x| m.max(x));
    let share = apart as f64 / diffs.len().max(1) as f64;
    check(
        share <= MOVED_APART_SHARE && worst <= 2.0 * lr * 1.001,
        format!(
            "{what}: {apart} of {} weights stepped apart ({:.3} %), at most {:.3}·lr",
            diffs.len(),
            100.0 * share,
            worst / lr
        ),
    );
}

/// Runs `each` on every configuration of `cases` with a `check` that prints every verdict and
/// keeps the failures, so one run shows them all; then fails if any check did.
pub fn run_cases(mut each: impl FnMut(&str, &GanOptions, &mut dyn FnMut(bool, String))) {
    let mut failures = Vec::new();
    let mut check = |ok: bool, msg: String| {
        println!("{} {msg}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            failures.push(msg);
        }
    };
    for (what, options) in cases() {
        each(what, &options, &mut check);
    }
    assert!(failures.is_empty(), "{} checks failed:\n{}", failures.len(), failures.join("\n"));
}
