//! The training graphs as wholes: (1) in eval mode they compute what the fused inference graphs
//! compute from the same weights; (2) their backward passes match finite differences through
//! the whole network (every op's backward composed, batch norm in training mode); (3) a GAN
//! step changes the weights and an interrupted run resumes exactly.

mod common;

use std::sync::Arc;

use common::gan_step::{self, StepInputs};
use common::{assert_close, micro_config, random};
use text2img::eval::shape_net::classifier;
use text2img::graph::{thread_pool, Backend, Session};
use text2img::model::discriminator::build_discriminator;
use text2img::model::discriminator::CLASSIFIER_WEIGHT;
use text2img::model::encoder::build_encoder;
use text2img::model::generator::build_generator;
use text2img::model::net::image_to_vector;
use text2img::model::synthetic::synthetic_weights;
use text2img::model::{ModelConfig, Network, WeightSet};
use text2img::ops::loss::bce_with_logits;
use text2img::train::checkpoint::{load_gan, save_gan};
use text2img::train::gan::{
    interpolated_texts, GanBatch, GanOptions, GanTrainer, VaeWeights, G_STEP_PASS, NOISE_KEY, NOISE_STRIDE,
};
use text2img::train::graph::{TrainBuilder, TrainGraph};
use text2img::train::net::{smooth_discriminator_graph, smooth_train_graph};
use text2img::train::posterior::{
    code_gradients, l1_loss, sample_codes, shape_pixel_weights, Posterior, POSTERIOR_PREFIX, SHAPE_WEIGHT_RADII,
};
use text2img::train::style::style_encoder;
use text2img::train::{Mode, TrainNet, TrainSession};

const FD_EPS: f32 = 1e-3;

fn inputs(net: Network, cfg: &ModelConfig, batch: usize, seed: u64) -> Vec<Vec<f32>> {
    match net {
        Network::Encoder => {
            // A one-hot-like input: sparse non-negative values.
            let x = random(batch * 70 * cfg.text.doc_length, seed);
            vec![x.iter().map(|v| if *v > 0.8 { 1.0 } else { 0.0 }).collect()]
        }
        Network::Generator => {
            vec![random(batch * cfg.generator.nz, seed), random(batch * cfg.encoder.embed_dim, seed + 1)]
        }
        Network::Discriminator => {
            vec![random(batch * 3 * 64 * 64, seed), random(batch * cfg.encoder.embed_dim, seed + 1)]
        }
    }
}

#[test]
fn eval_mode_training_graph_matches_inference_graph() {
    eval_mode_matches_inference(ModelConfig::builtin("shapes").expect("config"));
}

/// The same with G's refinement blocks at 16×16 and 32×32 (`train --g-refine`).
#[test]
fn eval_mode_training_graph_matches_inference_graph_refined_generator() {
    eval_mode_matches_inference(refined(ModelConfig::builtin("shapes").expect("config")));
}

fn refined(mut cfg: ModelConfig) -> ModelConfig {
    cfg.generator.refine = true;
    cfg
}

fn eval_mode_matches_inference(cfg: ModelConfig) {
    let nets = Network::ALL;
    let ws = WeightSet::from_tensors(cfg.clone(), &nets, synthetic_weights(&cfg, &nets)).expect("weights");
    let pool = thread_pool(2).expect("pool");
    let batch = 2;
    for net in nets {
        let graph = match net {
            Network::Encoder => build_encoder(&ws),
            Network::Generator => build_generator(&ws),
            Network::Discriminator => build_discriminator(&ws),
        }
        .expect("graph");
        let mut inf = Session::new(Arc::new(graph), batch, Arc::clone(&pool), Backend::Cpu);
        let mut tn = TrainNet::from_weights(&ws, net).expect("train net");
        let mut tr = TrainSession::new(Arc::clone(&tn.graph), batch, Arc::clone(&pool));
        for (i, x) in inputs(net, &cfg, batch, 3).iter().enumerate() {
            inf.input_mut(i).copy_from_slice(x);
            tr.input_mut(i).copy_from_slice(x);
        }
        inf.run();
        tr.forward(&tn.params, &mut tn.buffers, Mode::Eval);
        // Folding BN reorders the arithmetic: same 1e-5 bound as the PyTorch parity tests.
        assert_close(&format!("{net:?} train-graph eval vs inference"), tr.output(0), inf.output(0), 1e-5);
    }
}

/// Loss L = Σ_outputs Σ out·r; checks dL/dθ for a sample of parameters against central differences.
fn grad_check(net: Network, batch: usize) {
    let cfg = micro_config();
    grad_check_config(&cfg, net, batch);
}

fn grad_check_config(cfg: &ModelConfig, net: Network, batch: usize) {
    // tanh for every ReLU: finite differences need a smooth function (see the builder).
    let graph = smooth_train_graph(cfg, net).expect("graph");
    grad_check_graph(&format!("{net:?}"), graph, inputs(net, cfg, batch, 5), batch);
}

fn grad_check_graph(net: &str, graph: TrainGraph, xs: Vec<Vec<f32>>, batch: usize) {
    let pool = thread_pool(1).expect("pool");
    let mut tn = TrainNet::init_graph(graph, 11).expect("init");
    let mut s = TrainSession::new(Arc::clone(&tn.graph), batch, pool);
    let loss = |tn: &mut TrainNet, s: &mut TrainSession, r: &[Vec<f32>]| -> f64 {
        for (i, x) in xs.iter().enumerate() {
            s.input_mut(i).copy_from_slice(x);
        }
        let mut buffers = tn.buffers.clone();
        s.forward(&tn.params, &mut buffers, Mode::Train);
        let dot = |o: usize| -> f64 { s.output(o).iter().zip(&r[o]).map(|(&o, &r)| o as f64 * r as f64).sum() };
        (0..r.len()).map(dot).sum()
    };
    let outputs = &tn.graph.outputs;
    let r: Vec<Vec<f32>> = outputs.iter().zip(99..).map(|(&o, seed)| random(tn.graph.len(o) * batch, seed)).collect();
    loss(&mut tn, &mut s, &r);
    tn.zero_grad();
    let douts: Vec<(usize, &[f32])> = r.iter().enumerate().map(|(i, r)| (i, &r[..])).collect();
    s.backward_outputs(&tn.params, &mut tn.grads, &douts);
    let grads = tn.grads.clone();
    let n = tn.graph.param_len;
    let fd_at = |tn: &mut TrainNet, s: &mut TrainSession, i: usize, eps: f32| -> f64 {
        let orig = tn.params.data[i];
        tn.params.data_mut()[i] = orig + eps;
        let lp = loss(tn, s, &r);
        tn.params.data_mut()[i] = orig - eps;
        let lm = loss(tn, s, &r);
        tn.params.data_mut()[i] = orig;
        (lp - lm) / (2.0 * eps as f64)
    };
    let rel = |a: f64, b: f64| (a - b).abs() / a.abs().max(b.abs()).max(1e-2);
    let (mut worst, mut checked, mut kinks) = (0.0f64, 0, 0);
    // 60 points spread over the store, and 8 in the last parameter (a head added last).
    let last = tn.graph.params.last().map_or(0, |p| p.offset);
    let points: Vec<usize> =
        (0..60).map(|k| (k * 7919 + 13) % n).chain((0..8).map(|k| last + (k * 37) % (n - last))).collect();
    for i in points {
        // Two step sizes: where they disagree, a ReLU/LeakyReLU kink lies within ±eps and the
        // difference quotient is not a derivative there (an O(1) error, not a backward bug):
        // such points are skipped and counted.
        let (fd1, fd2) = (fd_at(&mut tn, &mut s, i, FD_EPS), fd_at(&mut tn, &mut s, i, FD_EPS / 2.0));
        if rel(fd1, fd2) > 1e-2 {
            kinks += 1;
            continue;
        }
        checked += 1;
        let err = rel(fd1, grads[i] as f64);
        worst = worst.max(err);
        // f32 forward through ~20 layers with batch statistics: roundoff in the quotient is
        // ~1e-6/eps ≈ 1e-3 relative, curvature O(eps²); 2e-2 bounds both while a wrong or missing
        // gradient term is off by O(1).
        assert!(err < 2e-2, "{net} param {i} ({}): fd {fd1:.6} vs backward {:.6}", slot_name(&tn, i), grads[i]);
    }
    assert!(checked >= 50, "{net}: only {checked} of 68 points were smooth ({kinks} kinks)");
    eprintln!("{net}: worst relative gradient error {worst:.2e} over {checked} points ({kinks} kinks skipped)");
}

fn slot_name(tn: &TrainNet, i: usize) -> String {
    tn.graph.params.iter().find(|s| s.offset <= i && i < s.offset + s.len).map_or("?".into(), |s| s.name.clone())
}

#[test]
fn generator_gradients_match_finite_differences() {
    grad_check(Network::Generator, 8);
}

#[test]
fn refined_generator_gradients_match_finite_differences() {
    grad_check_config(&refined(micro_config()), Network::Generator, 2);
}

#[test]
fn discriminator_gradients_match_finite_differences() {
    grad_check(Network::Discriminator, 8);
}

#[test]
fn discriminator_with_classifier_gradients_match_finite_differences() {
    // Both outputs (the logit and the classifier's logits) carry gradient into the shared trunk;
    // the classifier's weight is the last parameter, so the sampled points reach it too.
    let cfg = micro_config();
    let graph = smooth_discriminator_graph(&cfg, 5, false).expect("graph");
    assert_eq!(graph.outputs.len(), 2);
    let last = graph.params.last().expect("params");
    assert_eq!(last.name, CLASSIFIER_WEIGHT);
    grad_check_graph("D + classifier", graph, inputs(Network::Discriminator, &cfg, 3, 5), 3);
}

#[test]
fn discriminator_with_pooled_classifier_gradients_match_finite_differences() {
    // The max over the 4×4 positions routes the classifier's gradient to one position per
    // channel; its read-out is a 1×1 conv ([classes, 8·ndf, 1, 1]).
    let cfg = micro_config();
    let graph = smooth_discriminator_graph(&cfg, 5, true).expect("graph");
    let last = graph.params.last().expect("params");
    assert_eq!((last.name.as_str(), last.len), (CLASSIFIER_WEIGHT, 5 * 8 * cfg.discriminator.ndf));
    grad_check_graph("D + pooled classifier", graph, inputs(Network::Discriminator, &cfg, 3, 6), 3);
}

#[test]
fn encoder_gradients_match_finite_differences() {
    grad_check(Network::Encoder, 2);
}

#[test]
fn discriminator_without_batch_norm_gradients_match_finite_differences() {
    let mut cfg = micro_config();
    cfg.discriminator.batch_norm = false;
    grad_check_config(&cfg, Network::Discriminator, 4);
}

#[test]
fn style_encoder_gradients_match_finite_differences() {
    let mut b = TrainBuilder::new().smooth_activations();
    let (_, out) = style_encoder(&mut b, 6).expect("S");
    grad_check_graph("style encoder", b.finish(&[out]), vec![random(4 * 3 * 64 * 64, 31)], 4);
}

#[test]
fn judge_classifier_gradients_match_finite_differences() {
    let mut b = TrainBuilder::new().smooth_activations();
    let (_, out) = classifier(&mut b).expect("judge");
    grad_check_graph("judge classifier", b.finish(&[out]), vec![random(4 * 32 * 32, 32)], 4);
}

fn gan_batch(cfg: &ModelConfig, b: usize, step: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let img = 3 * 64 * 64;
    let real: Vec<f32> = random(b * img, 1000 + step).iter().map(|v| v * 0.9).collect();
    let wrong: Vec<f32> = random(b * img, 2000 + step).iter().map(|v| v * 0.9).collect();
    (real, wrong, random(b * cfg.encoder.embed_dim, 3000 + step))
}

/// Labels of step `s` for a classifier of `sizes` (none when it is off).
fn gan_labels(t: &GanTrainer, s: u64) -> Vec<usize> {
    let sizes = &t.options.classifier_sizes;
    if t.options.classifier_weight == 0.0 {
        return Vec::new();
    }
    (0..t.options.batch)
        .flat_map(|i| sizes.iter().enumerate().map(move |(a, &c)| (s as usize + (a + 1) * i) % c))
        .collect()
}

/// Shapes of step `s`'s real images, (x, y, radius) in pixels.
fn gan_shapes(b: usize, s: u64) -> Vec<[f32; 3]> {
    random(3 * b, 4000 + s).chunks(3).map(|v| [32.0 + 20.0 * v[0], 32.0 + 20.0 * v[1], 8.0 + 4.0 * v[2]]).collect()
}

fn run_steps(t: &mut GanTrainer, cfg: &ModelConfig, steps: std::ops::Range<u64>) {
    for s in steps {
        let (real, wrong, text) = gan_batch(cfg, t.options.batch, s);
        let labels = gan_labels(t, s);
        let shapes = gan_shapes(t.options.batch, s);
        let st = t
            .step(&GanBatch { real: &real, wrong: &wrong, text: &text, labels: &labels, shapes: &shapes })
            .expect("step");
        let classified = t.options.classifier_weight > 0.0;
        assert!(
            [st.d_class, st.g_class].iter().all(|&l| l.is_finite() && (l > 0.0) == classified),
            "classifier terms {} {}",
            st.d_class,
            st.g_class
        );
        assert!(st.d_loss.is_finite() && st.g_loss.is_finite(), "losses finite at step {s}");
        let vae = t.options.vae > 0.0;
        assert!(st.recon.is_finite() && (st.recon > 0.0) == vae && (st.kl > 0.0) == vae, "VAE terms {st:?}");
        let latent = vae && t.options.vae_latent > 0.0;
        assert!(st.latent.is_finite() && (st.latent > 0.0) == latent, "latent regression {st:?}");
        let seeking = t.options.mode_seeking > 0.0;
        assert!(
            st.mode_seeking.is_finite() && (st.mode_seeking > 0.0) == seeking,
            "mode-seeking term {}",
            st.mode_seeking
        );
    }
}

#[test]
fn gan_step_updates_and_resume_is_exact() {
    let plain = gan_resume_case(0.0, 0.0, 1);
    // The mode-seeking term (its own noise rows, its gradient added to G's) resumes exactly too,
    // and changes G; so does D's classifier (its head, its labels, G's term).
    let seeking = gan_resume_case(1.0, 0.0, 1);
    assert_ne!(plain, seeking, "the mode-seeking term changes G");
    // Over 8×8 cell averages it is another gradient, resumed exactly as well.
    let cells = gan_resume_case(1.0, 0.0, 8);
    assert_ne!(seeking, cells, "the mode-seeking cells change G");
    let classified = gan_resume_case(0.0, 1.0, 1);
    assert_ne!(plain, classified, "the classifier term changes G");
    // The moving average of G resumes exactly and leaves G's own training alone.
    let averaged = gan_resume_case_ema(0.0, 0.0, 1, 0.9);
    assert_eq!(plain, averaged, "the average does not change G");
    // The conditional-VAE term (E, its optimizer, its ε rows) resumes exactly and changes G.
    let vae = gan_resume_with(GanOptions { vae: 10.0, vae_kl: 0.01, ..resume_options() });
    assert_ne!(plain, vae, "the reconstruction term changes G");
    // Weighting the shapes' pixels is another gradient, resumed exactly as well.
    let shaped = gan_resume_with(GanOptions { vae: 10.0, vae_kl: 0.01, vae_shape_weight: 10.0, ..resume_options() });
    assert_ne!(vae, shaped, "the shape weight changes G");
    // So does the latent regression (E reading G's prior images).
    let latent = gan_resume_with(GanOptions { vae: 10.0, vae_kl: 0.01, vae_latent: 1.0, ..resume_options() });
    assert_ne!(vae, latent, "the latent regression changes G");
    // D's translations (their offsets drawn per step and pass) resume exactly and change G; with
    // the latent regression they are undone on G's image gradient before it adds its own.
    let shifted = gan_resume_with(GanOptions { d_shift: 4, ..resume_options() });
    assert_ne!(plain, shifted, "D's translations change G");
    let both = gan_resume_with(GanOptions { vae: 10.0, vae_kl: 0.01, vae_latent: 1.0, d_shift: 4, ..resume_options() });
    assert_ne!(latent, both, "D's translations change G with the latent regression on");
    // So do D's symmetries, alone and before the translations.
    let flipped = gan_resume_with(GanOptions { d_flip: true, ..resume_options() });
    assert_ne!(plain, flipped, "D's symmetries change G");
    let flipped_shifted = gan_resume_with(GanOptions { d_flip: true, d_shift: 4, ..resume_options() });
    assert_ne!(shifted, flipped_shifted, "D's symmetries change G with the translations on");
    let half = gan_resume_with(GanOptions { d_flip: true, d_shift: 4, d_augment_p: 0.5, ..resume_options() });
    assert_ne!(flipped_shifted, half, "augmenting half the images changes G");
}

/// D's augmentation in the G step: G's gradient, read from Adam's first moment after one step
/// ((1 − β1)·g), is the one built here by hand: G's images augmented as the G step draws them,
/// D as the D step left it and G's loss, D's image gradient taken back, G's backward pass. The
/// same without taking the gradient back is far from it (the test sees the difference). For
/// the translations, the symmetries, and both.
#[test]
fn d_augment_gradient_reaches_g_taken_back() {
    let base = GanOptions { batch: 4, seed: 13, ..GanOptions::default() };
    check_augment_gradient(GanOptions { d_shift: 6, ..base.clone() });
    check_augment_gradient(GanOptions { d_flip: true, ..base.clone() });
    check_augment_gradient(GanOptions { d_shift: 6, d_flip: true, ..base });
}

fn check_augment_gradient(o: GanOptions) {
    let cfg = micro_config();
    let pool = thread_pool(2).expect("pool");
    let mut t = GanTrainer::new(&cfg, o.clone(), Arc::clone(&pool)).expect("trainer");
    let (g0, mut g_buffers) = (t.g.params.clone(), t.g.buffers.clone());
    run_steps(&mut t, &cfg, 0..1);
    let (b, bi, nz, e) = (o.batch, o.g_rows(), cfg.generator.nz, cfg.encoder.embed_dim);
    let mut g = TrainSession::new(Arc::clone(&t.g.graph), bi, Arc::clone(&pool));
    for (i, z) in g.input_mut(0).chunks_mut(nz).enumerate() {
        text2img::rng::normal_noise(o.seed ^ NOISE_KEY, NOISE_STRIDE / 2 + i as u64, z);
    }
    let (_, _, text) = gan_batch(&cfg, b, 0);
    let mut text_int = vec![0.0; bi * e];
    interpolated_texts(&text, b, e, &mut text_int);
    g.input_mut(1).copy_from_slice(&text_int);
    g.forward(&g0, &mut g_buffers, Mode::Train);
    let aug = o.d_augment(0, G_STEP_PASS, bi);
    let mut d = TrainSession::new(Arc::clone(&t.d.graph), bi, pool);
    d.set_input_grad(0, true);
    aug.apply(g.output(0), d.input_mut(0), &mut Vec::new());
    d.input_mut(1).copy_from_slice(&text_int);
    d.forward(&t.d.params, &mut t.d.buffers.clone(), Mode::Train);
    let mut dlogits = vec![0.0; bi];
    bce_with_logits(d.output(0), &vec![1.0; bi], Some(&o.g_row_weights()), &mut dlogits);
    d.backward(&t.d.params, &mut vec![0.0; t.d.graph.param_len], &dlogits);
    let mut m_of = |d_images: &[f32]| -> Vec<f32> {
        let mut grads = vec![0.0; t.g.graph.param_len];
        g.backward(&g0, &mut grads, d_images);
        grads.iter().map(|v| (1.0 - o.beta1) * v).collect()
    };
    let mut taken_back = vec![0.0; d.input_grad(0).len()];
    aug.backward(d.input_grad(0), &mut taken_back, &mut Vec::new());
    let what = format!("G's gradient through D's augmentation {aug:?}");
    assert_close(&what, &t.g_adam.m, &m_of(&taken_back), 1e-5);
    let not_taken_back = common::rel_error(&t.g_adam.m, &m_of(d.input_grad(0)));
    assert!(not_taken_back > 1e-2, "{what}: the gradient not taken back differs: {not_taken_back:.2e}");
}

/// D's offsets: within [−N, N], the same for the same step and pass, different across passes,
/// steps and seeds, and spread over the whole range.
#[test]
fn d_shifts_are_reproducible_and_cover_the_range() {
    let o = GanOptions { d_shift: 3, seed: 11, ..GanOptions::default() };
    let a = o.d_shifts(5, 1, 64);
    assert_eq!(a, o.d_shifts(5, 1, 64), "same step and pass");
    assert_ne!(a, o.d_shifts(5, 2, 64), "another pass");
    assert_ne!(a, o.d_shifts(6, 1, 64), "another step");
    assert_ne!(a, GanOptions { seed: 12, ..o.clone() }.d_shifts(5, 1, 64), "another seed");
    let all: Vec<i32> = (0..20).flat_map(|s| o.d_shifts(s, 0, 64)).flatten().collect();
    assert!(all.iter().all(|v| (-3..=3).contains(v)), "within ±3");
    for v in -3..=3 {
        assert!(all.contains(&v), "offset {v} drawn");
    }
}

/// D's symmetries: in 0..8, reproducible per step and pass, all eight drawn, independent of the
/// translations (turning them on leaves the offsets as they were); off: no augmentation.
#[test]
fn d_flips_are_reproducible_and_cover_the_group() {
    let o = GanOptions { d_flip: true, seed: 11, ..GanOptions::default() };
    let a = o.d_flips(5, 1, 64);
    assert_eq!(a, o.d_flips(5, 1, 64), "same step and pass");
    assert_ne!(a, o.d_flips(5, 2, 64), "another pass");
    assert_ne!(a, o.d_flips(6, 1, 64), "another step");
    assert_ne!(a, GanOptions { seed: 12, ..o.clone() }.d_flips(5, 1, 64), "another seed");
    let all: Vec<u8> = (0..4).flat_map(|s| o.d_flips(s, 0, 64)).collect();
    for t in 0..8 {
        assert!(all.contains(&t), "transform {t} drawn");
    }
    assert!(all.iter().all(|&t| t < 8), "in 0..8");
    let both = GanOptions { d_shift: 3, ..o.clone() }.d_augment(5, 1, 64);
    assert_eq!(both.shifts, Some(GanOptions { d_shift: 3, d_flip: false, ..o.clone() }.d_shifts(5, 1, 64)));
    assert_eq!(both.flips, Some(a), "the symmetries with the translations on");
    assert!(GanOptions { d_flip: false, ..o }.d_augment(5, 1, 64).is_identity(), "off: none");
}

/// `d_augment_p`: the images left alone get the identity in both parts (the same images), the
/// others the draws of p = 1; about p of them augmented; p = 0 leaves every image alone.
#[test]
fn d_augment_p_leaves_images_alone() {
    let all = GanOptions { d_flip: true, d_shift: 3, seed: 11, ..GanOptions::default() };
    let full = all.d_augment(7, 2, 400);
    let half = GanOptions { d_augment_p: 0.5, ..all.clone() }.d_augment(7, 2, 400);
    let (flips, shifts) = (half.flips.expect("flips"), half.shifts.expect("shifts"));
    let on = GanOptions { d_augment_p: 0.5, ..all.clone() }.d_augmented(7, 2, 400).expect("drawn");
    for (i, &on) in on.iter().enumerate() {
        match on {
            true => assert_eq!(
                (flips[i], shifts[i]),
                (full.flips.as_ref().expect("f")[i], full.shifts.as_ref().expect("s")[i])
            ),
            false => assert_eq!((flips[i], shifts[i]), (0, [0, 0]), "image {i} left alone"),
        }
    }
    let n = on.iter().filter(|&&v| v).count();
    assert!((160..=240).contains(&n), "{n} of 400 augmented at p = 0.5");
    assert_eq!(all.d_augmented(7, 2, 400), None, "p = 1: nothing drawn");
    let none = GanOptions { d_augment_p: 0.0, ..all }.d_augment(7, 2, 50);
    assert!(none.flips.expect("f").iter().all(|&t| t == 0) && none.shifts.expect("s").iter().all(|&s| s == [0, 0]));
}

/// The latent regression's image gradient against finite differences of mean |μ(E(x)) − z|
/// through a smooth E in training mode; E's parameters, state and running statistics stay put.
#[test]
fn latent_regression_image_gradient_matches_finite_differences() {
    let cfg = micro_config();
    let (b, nz) = (3, cfg.generator.nz);
    let pool = thread_pool(1).expect("pool");
    let mut tb = TrainBuilder::new().smooth_activations();
    let (_, out) = image_to_vector(&mut tb, POSTERIOR_PREFIX, 8, "proj", 2 * nz).expect("E");
    let e = TrainNet::init_graph(tb.finish(&[out]), 21).expect("init");
    let g = TrainNet::init_graph(smooth_train_graph(&cfg, Network::Generator).expect("G"), 22).expect("init");
    let mut post = Posterior::from_net(e, &g, b, Arc::clone(&pool));
    let (params, buffers) = (post.net.params.data.clone(), post.net.buffers.clone());
    let images = random(b * 3 * 64 * 64, 23);
    // Codes far from E's outputs, so no |·| kink lies within a finite-difference step.
    let z: Vec<f32> = random(b * nz, 24).iter().map(|v| v + 3.0 * v.signum()).collect();
    let mut d = vec![0.0; images.len()];
    let loss = post.latent_regression(&images, &z, 2.0, &mut d);
    assert!(loss > 1.0 && d.iter().all(|v| v.is_finite()) && d.iter().any(|&v| v != 0.0), "loss {loss}");
    assert_eq!(post.net.params.data, params, "E is not trained by the term");
    assert_eq!(post.net.buffers, buffers, "E's running statistics are untouched");
    // Added, not overwritten.
    let mut twice = d.clone();
    post.latent_regression(&images, &z, 2.0, &mut twice);
    assert!(twice.iter().zip(&d).all(|(t, d)| (t - 2.0 * d).abs() <= 1e-6 * d.abs().max(1e-3)), "accumulates");
    // Directional derivatives (one pixel moves the f32 mean by less than its rounding): along
    // sign(d), and along random ±1 directions.
    let h = 1e-2f32;
    let signs = |seed: u64| -> Vec<f32> { random(images.len(), seed).iter().map(|v| v.signum()).collect() };
    let directions = [d.iter().map(|v| v.signum()).collect(), signs(25), signs(26), signs(27)];
    for (k, u) in directions.iter().enumerate() {
        let mut at = |delta: f32| {
            let x: Vec<f32> = images.iter().zip(u).map(|(x, u)| x + delta * u).collect();
            f64::from(post.latent_regression(&x, &z, 2.0, &mut vec![0.0; x.len()]))
        };
        let fd = 2.0 * (at(h) - at(-h)) / (2.0 * f64::from(h));
        let analytic: f64 = d.iter().zip(u).map(|(&d, &u)| f64::from(d * u)).sum();
        let err = (fd - analytic).abs() / fd.abs().max(analytic.abs()).max(1e-3);
        assert!(err < 5e-2, "direction {k}: fd {fd} vs analytic {analytic}");
    }
}

/// With the shape weight on, a batch without one shape per real image is refused.
#[test]
fn vae_shape_weight_needs_the_batch_shapes() {
    let cfg = micro_config();
    let opts = GanOptions { batch: 4, vae: 1.0, vae_kl: 0.01, vae_shape_weight: 5.0, ..GanOptions::default() };
    let mut t = GanTrainer::new(&cfg, opts, thread_pool(2).expect("pool")).expect("trainer");
    let (real, wrong, text) = gan_batch(&cfg, 4, 0);
    let shapes = gan_shapes(4, 0);
    for bad in [&shapes[..0], &shapes[..3]] {
        let err = t.step(&GanBatch { real: &real, wrong: &wrong, text: &text, labels: &[], shapes: bad }).err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("shape weight") && msg.contains("4 shapes"), "{} shapes: {msg:?}", bad.len());
    }
    assert_eq!(t.step, 0, "nothing was stepped");
    t.step(&GanBatch { real: &real, wrong: &wrong, text: &text, labels: &[], shapes: &shapes }).expect("4 shapes");
}

/// `set_vae` names the weight it refuses and changes nothing; a good set turns E on.
#[test]
fn set_vae_refuses_a_bad_weight_by_name() {
    let cfg = micro_config();
    let mut t = GanTrainer::new(&cfg, GanOptions { batch: 4, ..GanOptions::default() }, thread_pool(2).expect("pool"))
        .expect("trainer");
    let good = VaeWeights { rebuild: 1.0, kl: 0.01, shape: 0.0, latent: 0.5 };
    for (bad, name) in [
        (VaeWeights { rebuild: -1.0, ..good }, "rebuild"),
        (VaeWeights { kl: f32::NAN, ..good }, "KL"),
        (VaeWeights { shape: f32::INFINITY, ..good }, "shape"),
        (VaeWeights { latent: -0.5, ..good }, "latent"),
    ] {
        let msg = t.set_vae(bad, thread_pool(2).expect("pool")).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains(&format!("VAE {name} weight")), "{bad:?}: {msg:?}");
        assert_eq!(t.options.vae_weights(), GanOptions::default().vae_weights(), "unchanged after {name}");
        assert!(t.posterior.is_none());
    }
    t.set_vae(good, thread_pool(2).expect("pool")).expect("good weights");
    assert_eq!(t.options.vae_weights(), good);
    assert!(t.posterior.is_some(), "E made when the rebuild turns on");
}

fn gan_resume_case(mode_seeking: f32, classifier_weight: f32, mode_seeking_cell: usize) -> Vec<f32> {
    gan_resume_case_ema(mode_seeking, classifier_weight, mode_seeking_cell, 0.0)
}

fn resume_options() -> GanOptions {
    GanOptions { batch: 4, seed: 5, ..GanOptions::default() }
}

fn gan_resume_case_ema(mode_seeking: f32, classifier_weight: f32, mode_seeking_cell: usize, ema: f32) -> Vec<f32> {
    let classifier_sizes = if classifier_weight > 0.0 { vec![3, 4] } else { Vec::new() };
    gan_resume_with(GanOptions {
        mode_seeking,
        mode_seeking_cell,
        classifier_sizes,
        classifier_weight,
        ema,
        ..resume_options()
    })
}

/// Three steps straight, and one step + checkpoint + two steps: equal. Returns G's parameters.
fn gan_resume_with(opts: GanOptions) -> Vec<f32> {
    let cfg = micro_config();
    let pool = thread_pool(2).expect("pool");
    let (mode_seeking, ema, vae) = (opts.mode_seeking, opts.ema, opts.vae);
    let mut a = GanTrainer::new(&cfg, opts.clone(), Arc::clone(&pool)).expect("trainer");
    let g0 = a.g.params.data.clone();
    run_steps(&mut a, &cfg, 0..3);
    assert_ne!(a.g.params.data, g0, "G changed");
    // Interrupted: 1 step, checkpoint, fresh process state, 2 more.
    let mut b = GanTrainer::new(&cfg, opts, Arc::clone(&pool)).expect("trainer");
    run_steps(&mut b, &cfg, 0..1);
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("ckpt.safetensors");
    save_gan(&path, &b, &Default::default()).expect("save");
    drop(b);
    let (mut c, _) = load_gan(&path, pool).expect("load");
    assert_eq!(c.step, 1);
    assert_eq!(c.options.mode_seeking, mode_seeking, "options restored");
    run_steps(&mut c, &cfg, 1..3);
    assert_eq!(c.g.params.data, a.g.params.data, "G after resume");
    assert_eq!(c.d.params.data, a.d.params.data, "D after resume");
    assert_eq!(c.g.buffers, a.g.buffers, "G running statistics after resume");
    assert_eq!(c.d_adam.v, a.d_adam.v, "D Adam moments after resume");
    assert_eq!(c.g_ema, a.g_ema, "G's moving average after resume");
    assert_eq!(a.g_ema.is_some(), ema > 0.0, "the average is kept when on");
    assert_eq!(a.posterior.is_some(), vae > 0.0, "E exists when the VAE term is on");
    if let (Some(pa), Some(pc)) = (&a.posterior, &c.posterior) {
        assert_eq!(pc.net.params.data, pa.net.params.data, "E after resume");
        assert_eq!(pc.net.buffers, pa.net.buffers, "E's running statistics after resume");
        assert_eq!(pc.adam.v, pa.adam.v, "E's Adam moments after resume");
    }
    a.g.params.data.clone()
}

/// The average follows G's parameters after each step with the decay min(D, (1 + t)/(10 + t)).
#[test]
fn ema_follows_g_with_a_ramped_decay() {
    let cfg = micro_config();
    let pool = thread_pool(2).expect("pool");
    let decay = 0.25;
    let opts = GanOptions { batch: 4, seed: 7, ema: decay, ..GanOptions::default() };
    let mut t = GanTrainer::new(&cfg, opts, pool).expect("trainer");
    let mut want = t.g.params.data.clone();
    assert_eq!(t.g_ema.as_ref(), Some(&want), "starts at G");
    for s in 0..4u64 {
        run_steps(&mut t, &cfg, s..s + 1);
        let ts = (s + 1) as f32;
        let d = decay.min((1.0 + ts) / (10.0 + ts));
        want.iter_mut().zip(&t.g.params.data).for_each(|(e, &p)| *e = d * *e + (1.0 - d) * p);
    }
    let got = t.g_ema.as_ref().expect("on");
    assert_close("EMA after 4 steps", got, &want, 1e-6);
    assert_ne!(got, &t.g.params.data, "the average lags G");
    t.set_ema(0.0).expect("off");
    assert!(t.g_ema.is_none(), "switched off");
    assert!(t.set_ema(1.0).is_err(), "decay 1 refused");
}

/// The averaged G's batch-norm statistics from one pass are that pass's batch statistics: in
/// eval mode it reproduces what training mode drew on the same rows (up to the unbiased
/// variance's count / (count − 1)).
#[test]
fn ema_generator_statistics_reproduce_the_batch() {
    let cfg = micro_config();
    let pool = thread_pool(2).expect("pool");
    let b = 8;
    let opts = GanOptions { batch: b, seed: 9, ema: 0.5, ..GanOptions::default() };
    let mut t = GanTrainer::new(&cfg, opts, Arc::clone(&pool)).expect("trainer");
    run_steps(&mut t, &cfg, 0..2);
    let e = cfg.encoder.embed_dim;
    let texts = random(b * e, 77);
    let g = t.ema_generator(&texts, Arc::clone(&pool)).expect("on");
    assert_eq!(g.params.data, *t.g_ema.as_ref().expect("on"), "the averaged parameters");
    let mut s = TrainSession::new(Arc::clone(&g.graph), b, pool);
    let nz = cfg.generator.nz;
    for (i, z) in s.input_mut(0).chunks_mut(nz).enumerate() {
        text2img::rng::normal_noise(9 ^ text2img::train::gan::EMA_NOISE_KEY, i as u64, z);
    }
    s.input_mut(1).copy_from_slice(&texts);
    let mut scratch_buffers = g.buffers.clone();
    s.forward(&g.params, &mut scratch_buffers, Mode::Train);
    let trained = s.output(0).to_vec();
    let mut buffers = g.buffers.clone();
    s.forward(&g.params, &mut buffers, Mode::Eval);
    assert_close("eval with the estimated statistics", s.output(0), &trained, 0.05);
    assert_ne!(g.buffers, t.g.buffers, "statistics of the average, not G's running ones");
}

#[test]
fn classifier_switched_on_keeps_d_and_its_optimizer() {
    let cfg = micro_config();
    let pool = thread_pool(2).expect("pool");
    let mut t = GanTrainer::new(&cfg, GanOptions { batch: 4, seed: 2, ..GanOptions::default() }, Arc::clone(&pool))
        .expect("trainer");
    run_steps(&mut t, &cfg, 0..2);
    let before: Vec<(String, Vec<f32>, Vec<f32>)> = t
        .d
        .graph
        .params
        .iter()
        .map(|s| {
            (s.name.clone(), t.d.params.data[s.offset..][..s.len].to_vec(), t.d_adam.v[s.offset..][..s.len].to_vec())
        })
        .collect();
    let buffers = t.d.buffers.clone();
    t.set_classifier(&[3, 4], 0.5, Arc::clone(&pool)).expect("switch on");
    for (name, params, v) in &before {
        let s = t.d.graph.param(name).expect("slot kept");
        assert_eq!(&t.d.params.data[s.offset..][..s.len], &params[..], "{name} kept");
        assert_eq!(&t.d_adam.v[s.offset..][..s.len], &v[..], "{name}'s Adam moment kept");
    }
    assert_eq!(t.d.buffers, buffers, "running statistics kept");
    let head = t.d.graph.param(CLASSIFIER_WEIGHT).expect("a classifier");
    assert!(t.d.params.data[head.offset..][..head.len].iter().any(|&v| v != 0.0), "initialised");
    run_steps(&mut t, &cfg, 2..4);
    // Another set of attributes for the same head is refused; a weight of 0 keeps the head.
    assert!(t.set_classifier(&[2, 4], 1.0, Arc::clone(&pool)).is_err());
    assert!(t.set_classifier(&[0], 1.0, Arc::clone(&pool)).is_err());
    t.set_classifier(&[], 0.0, pool).expect("off");
    assert!(t.d.graph.param(CLASSIFIER_WEIGHT).is_some());
    run_steps(&mut t, &cfg, 4..5);
}

#[test]
fn classifier_labels_are_checked() {
    let cfg = micro_config();
    let pool = thread_pool(1).expect("pool");
    let o = GanOptions { batch: 2, classifier_sizes: vec![3], classifier_weight: 1.0, ..GanOptions::default() };
    let mut t = GanTrainer::new(&cfg, o, pool).expect("trainer");
    let (real, wrong, text) = gan_batch(&cfg, 2, 0);
    for labels in [&[0usize][..], &[0, 3], &[]] {
        let err = t.step(&GanBatch { real: &real, wrong: &wrong, text: &text, labels, shapes: &[] }).err();
        assert!(err.is_some(), "labels {labels:?} accepted");
    }
    assert_eq!(t.step, 0, "a refused batch takes no step");
    t.step(&GanBatch { real: &real, wrong: &wrong, text: &text, labels: &[2, 0], shapes: &[] }).expect("good labels");
}

#[test]
fn classifier_learns_labels_that_show_in_the_image() {
    // Label 1: a bright image, label 0: a dark one. D's classifier has to find that out.
    let cfg = micro_config();
    let pool = thread_pool(2).expect("pool");
    let b = 8;
    let o =
        GanOptions { batch: b, seed: 3, classifier_sizes: vec![2], classifier_weight: 1.0, ..GanOptions::default() };
    let mut t = GanTrainer::new(&cfg, o, pool).expect("trainer");
    let img = 3 * 64 * 64;
    let mut accs = Vec::new();
    for s in 0..60u64 {
        let (noise, wrong, text) = gan_batch(&cfg, b, s);
        let labels: Vec<usize> = (0..b).map(|i| (i + s as usize) % 2).collect();
        let real: Vec<f32> =
            noise.iter().enumerate().map(|(j, v)| 0.3 * v + if labels[j / img] == 1 { 0.5 } else { -0.5 }).collect();
        let st =
            t.step(&GanBatch { real: &real, wrong: &wrong, text: &text, labels: &labels, shapes: &[] }).expect("step");
        accs.push(st.d_class_acc);
    }
    let late = accs[50..].iter().sum::<f32>() / 10.0;
    assert!(late >= 0.9, "classifier accuracy over the last 10 steps {late} ({accs:?})");
}

#[test]
fn lr_d_scale_multiplies_ds_first_update_only() {
    // Adam's first update is lr · g / (|g| + ε): D's moves 3× as far at lr_d_scale 3; G's first
    // update (its own rate) stays the size it was, though it follows a different D.
    let cfg = micro_config();
    let pool = thread_pool(2).expect("pool");
    let run = |x: f32| {
        let o = GanOptions { batch: 4, seed: 9, lr_d_scale: x, ..GanOptions::default() };
        let mut t = GanTrainer::new(&cfg, o, Arc::clone(&pool)).expect("trainer");
        let (g0, d0) = (t.g.params.data.clone(), t.d.params.data.clone());
        run_steps(&mut t, &cfg, 0..1);
        let delta = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| (a - b).abs() as f64).sum::<f64>();
        (delta(&t.g.params.data, &g0), delta(&t.d.params.data, &d0))
    };
    let ((g1, d1), (g3, d3)) = (run(1.0), run(3.0));
    assert!((d3 / d1 - 3.0).abs() < 0.01, "D moved {d1} at scale 1, {d3} at scale 3");
    assert!((g3 / g1 - 1.0).abs() < 0.1, "G moved {g1} at scale 1, {g3} at scale 3");
}

#[test]
fn classifier_weight_reaches_g_and_only_g() {
    // D's own classifier loss has weight 1 whatever W is, so after one step D is the same for
    // W = 1 and W = 2 while G, pushed by W times its classifier term, is not.
    let cfg = micro_config();
    let pool = thread_pool(2).expect("pool");
    let run = |w: f32| {
        let o = GanOptions {
            batch: 4,
            seed: 9,
            classifier_sizes: vec![3, 2],
            classifier_weight: w,
            ..GanOptions::default()
        };
        let mut t = GanTrainer::new(&cfg, o, Arc::clone(&pool)).expect("trainer");
        run_steps(&mut t, &cfg, 0..1);
        (t.g.params.data.clone(), t.d.params.data.clone())
    };
    let ((g1, d1), (g2, d2)) = (run(1.0), run(2.0));
    assert_eq!(d1, d2, "D's step does not depend on G's classifier weight");
    assert_ne!(g1, g2, "G's step does");
}

/// Both images of a mode-seeking pair come from one forward pass: when G ignores its noise (the
/// z rows of its first layer zeroed), the two are the same image and the term is at its ceiling
/// 1/ε. (With one image from the G step's pass of B + B/2 rows and the other from a pass of its
/// own, their batch-norm statistics differed and so did the "pair", which G learnt to exploit.)
#[test]
fn mode_seeking_pairs_share_one_pass() {
    let cfg = micro_config();
    let pool = thread_pool(2).expect("pool");
    let opts = GanOptions { batch: 4, seed: 3, mode_seeking: 1.0, ..GanOptions::default() };
    let mut t = GanTrainer::new(&cfg, opts, Arc::clone(&pool)).expect("trainer");
    let slot = t.g.graph.param("generator.deconv0.weight").expect("deconv0").clone();
    // [nz + nt, Cout, 4, 4]: the first nz input rows take the noise.
    let z_part = cfg.generator.nz * slot.len / (cfg.generator.nz + cfg.generator.nt);
    t.g.params.data_mut()[slot.offset..slot.offset + z_part].fill(0.0);
    let (real, wrong, text) = gan_batch(&cfg, 4, 0);
    let st = t.step(&GanBatch { real: &real, wrong: &wrong, text: &text, labels: &[], shapes: &[] }).expect("step");
    assert!(st.mode_seeking > 1e4, "pairs of a noise-blind G differ: term {}", st.mode_seeking);
}

/// The reparameterised codes' gradients (`code_gradients` after `sample_codes`) against finite
/// differences of L(μ, log σ²) = Σ r·z(μ, log σ²) + K · KL(q ‖ N(0, I)), whose dL/dz is r.
#[test]
fn posterior_code_gradients_match_finite_differences() {
    let (rows, nz, k) = (3, 5, 0.3);
    let ml: Vec<f32> = random(rows * 2 * nz, 41).iter().map(|v| 1.5 * v).collect();
    let eps = random(rows * nz, 42);
    let r = random(rows * nz, 43);
    let loss = |ml: &[f32]| -> f64 {
        let mut z = vec![0.0; rows * nz];
        sample_codes(ml, &eps, nz, &mut z);
        let mut d = vec![0.0; ml.len()];
        let kl = code_gradients(ml, &eps, &r, nz, k, &mut d);
        z.iter().zip(&r).map(|(&z, &r)| z as f64 * r as f64).sum::<f64>() + k as f64 * kl as f64
    };
    let mut d = vec![0.0; ml.len()];
    code_gradients(&ml, &eps, &r, nz, k, &mut d);
    for i in 0..ml.len() {
        let h = 1e-2;
        let (mut p, mut m) = (ml.clone(), ml.clone());
        p[i] += h;
        m[i] -= h;
        let fd = (loss(&p) - loss(&m)) / (2.0 * h as f64);
        // f32 values, a smooth function (exp, squares): the quotient is good to ~1e-4 here.
        assert!((fd - d[i] as f64).abs() < 2e-3 * fd.abs().max(1.0), "output {i}: fd {fd} vs {}", d[i]);
    }
    // Mean |Δ| and its sign gradient.
    let (x, t) = (random(6, 44), random(6, 45));
    let mut dx = vec![0.0; 6];
    let l = l1_loss(&x, &t, None, 2.0, &mut dx);
    let want: f32 = x.iter().zip(&t).map(|(a, b)| (a - b).abs()).sum::<f32>() / 6.0;
    assert!((l - want).abs() < 1e-6, "L1 {l} vs {want}");
    assert!(dx.iter().zip(x.iter().zip(&t)).all(|(&d, (a, b))| d == 2.0 / 6.0 * (a - b).signum()), "{dx:?}");
    // Weighted: Σ w|Δ| / Σ w, gradient 2 · w · sign(Δ) / Σ w (uniform weights: the plain mean).
    let w = [1.0, 3.0, 1.0, 1.0, 11.0, 1.0];
    let l = l1_loss(&x, &t, Some(&w), 2.0, &mut dx);
    let want: f32 = x.iter().zip(&t).zip(&w).map(|((a, b), w)| w * (a - b).abs()).sum::<f32>() / 18.0;
    assert!((l - want).abs() < 1e-6, "weighted L1 {l} vs {want}");
    for (i, &d) in dx.iter().enumerate() {
        assert!((d - 2.0 * w[i] / 18.0 * (x[i] - t[i]).signum()).abs() < 1e-7, "weighted dx[{i}] {d}");
    }
    let plain = l1_loss(&x, &t, Some(&[4.0; 6]), 2.0, &mut dx);
    assert!((plain - l1_loss(&x, &t, None, 2.0, &mut [0.0; 6])).abs() < 1e-6, "uniform weights");
}

/// The shape weight map: 1 + L exactly at the pixels whose centre lies within 1.2 radii of the
/// shape's centre, the same in every channel, per image.
#[test]
fn shape_pixel_weights_cover_each_shape() {
    let (side, extra) = (16, 4.0);
    let geometry = [[4.0, 5.0, 2.0], [12.5, 10.0, 3.5]];
    let mut w = vec![f32::NAN; 2 * 3 * side * side];
    shape_pixel_weights(&geometry, extra, side, &mut w);
    for (img, &[cx, cy, r]) in w.chunks(3 * side * side).zip(&geometry) {
        let plane = &img[..side * side];
        let mut inside = 0;
        for (p, &v) in plane.iter().enumerate() {
            let (dx, dy) = ((p % side) as f32 + 0.5 - cx, (p / side) as f32 + 0.5 - cy);
            let want = if dx * dx + dy * dy <= (SHAPE_WEIGHT_RADII * r).powi(2) { 1.0 + extra } else { 1.0 };
            assert_eq!(v, want, "pixel {p} of the shape at ({cx}, {cy}) r {r}");
            inside += usize::from(v > 1.0);
        }
        // Area ≈ π (1.2 r)²: within a ring of pixels of it.
        let area = std::f32::consts::PI * (SHAPE_WEIGHT_RADII * r).powi(2);
        assert!(
            (inside as f32 - area).abs() < 2.0 * std::f32::consts::PI * SHAPE_WEIGHT_RADII * r,
            "{inside} vs {area}"
        );
        assert!(img.chunks(side * side).all(|c| c == plane), "every channel alike");
    }
}

/// G's gradient with respect to its noise input (what reaches E in the reconstruction term)
/// against finite differences through the whole (smooth) generator in training mode.
#[test]
fn generator_noise_gradient_matches_finite_differences() {
    let cfg = micro_config();
    let b = 3;
    let pool = thread_pool(1).expect("pool");
    let g = TrainNet::init_graph(smooth_train_graph(&cfg, Network::Generator).expect("graph"), 4).expect("init");
    let mut s = TrainSession::new(Arc::clone(&g.graph), b, pool);
    s.set_input_grad(0, true);
    let xs = inputs(Network::Generator, &cfg, b, 8);
    let r = random(s.output(0).len(), 9);
    let loss = |s: &mut TrainSession, z: &[f32]| -> f64 {
        s.input_mut(0).copy_from_slice(z);
        s.input_mut(1).copy_from_slice(&xs[1]);
        let mut buffers = g.buffers.clone();
        s.forward(&g.params, &mut buffers, Mode::Train);
        s.output(0).iter().zip(&r).map(|(&o, &r)| o as f64 * r as f64).sum()
    };
    loss(&mut s, &xs[0]);
    let mut grads = vec![0.0; g.graph.param_len];
    s.backward(&g.params, &mut grads, &r);
    let dz = s.input_grad(0).to_vec();
    assert!(dz.iter().any(|&v| v != 0.0), "a gradient reaches z");
    for i in (0..dz.len()).step_by(3) {
        let (mut p, mut m) = (xs[0].clone(), xs[0].clone());
        p[i] += FD_EPS;
        m[i] -= FD_EPS;
        let fd = (loss(&mut s, &p) - loss(&mut s, &m)) / (2.0 * FD_EPS as f64);
        // As in grad_check_graph: roundoff ~1e-3 relative through the network.
        let err = (fd - dz[i] as f64).abs() / fd.abs().max(dz[i].abs() as f64).max(1e-2);
        assert!(err < 2e-2, "z[{i}]: fd {fd} vs backward {}", dz[i]);
    }
}

/// E's mean half exported as a style encoder S gives, in eval mode, exactly the μ rows E gives.
#[test]
fn posterior_mean_exports_as_a_style_encoder() {
    let cfg = micro_config();
    let pool = thread_pool(2).expect("pool");
    let opts = GanOptions { batch: 4, seed: 6, vae: 5.0, vae_kl: 0.1, ..GanOptions::default() };
    let mut t = GanTrainer::new(&cfg, opts, Arc::clone(&pool)).expect("trainer");
    run_steps(&mut t, &cfg, 0..2);
    let nz = cfg.generator.nz;
    let post = t.posterior.as_mut().expect("E");
    let mut s = post.style_encoder(nz).expect("S");
    let images = random(4 * 3 * 64 * 64, 12);
    let run = |net: &mut TrainNet| {
        let mut session = TrainSession::new(Arc::clone(&net.graph), 4, Arc::clone(&pool));
        session.input_mut(0).copy_from_slice(&images);
        session.forward(&net.params, &mut net.buffers, Mode::Eval);
        session.output(0).to_vec()
    };
    let (mu_logvar, style) = (run(&mut post.net), run(&mut s));
    assert_eq!(style.len(), 4 * nz);
    let mu: Vec<f32> = mu_logvar.chunks(2 * nz).flat_map(|r| r[..nz].to_vec()).collect();
    assert_close("S(x) = μ(x)", &style, &mu, 1e-6);
    assert!(mu_logvar.chunks(2 * nz).any(|r| r[nz..] != r[..nz]), "log σ² rows are not copied");
}

/// The CPU's GAN step against itself from inputs and G's and D's weights nudged by one ulp, in
/// every configuration the GPU step is compared in: it stays within the tolerances the GPU is
/// held to (common/gan_step.rs), which are set from this spread. The step is not continuous (a
/// ReLU or max-pool input within rounding of a kink passes its gradient one way or the other),
/// so these are the differences rounding alone makes; if a change of the CPU step widens them,
/// this fails here before a GPU run does for no fault of its kernels.
#[test]
fn gan_step_nudged_by_one_ulp_stays_within_the_gpu_tolerances() {
    let cfg = ModelConfig::builtin("shapes").expect("config");
    gan_step::run_cases(|what, options, check| {
        let trainer = || GanTrainer::new(&cfg, options.clone(), thread_pool(2).expect("pool")).expect("trainer");
        let inputs = StepInputs::new(&cfg, options);
        let mut want = trainer();
        let start = gan_step::Start::of(&want);
        let stats = want.step(&inputs.batch()).expect("step");
        for k in 0..4u64 {
            let mut got = trainer();
            let seed = 1000 * (k + 1);
            gan_step::nudge_weights(&mut got, seed);
            let got_start = gan_step::Start::of(&got);
            let got_stats = got.step(&inputs.nudged(seed + 20).batch()).expect("nudged step");
            let label = format!("{what}, nudge {k}");
            gan_step::compare(&label, (&want, &start, &stats), (&got, &got_start, &got_stats), check);
        }
    });
}
