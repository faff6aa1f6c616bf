//! One full GAN-INT-CLS iteration against PyTorch (issue 4): `scripts/reference.py train-goldens`
//! runs the D step and the G step of DESIGN.md §2 / src/train/gan.rs in f64 (torch.optim.Adam,
//! BatchNorm momentum 0.1 with the unbiased running variance) from the synthetic weights of
//! docs/WEIGHTS.md on a fixed batch, at the `tiny` config of tests/train_graph.rs with B = 4, and
//! stores the inputs, the noise, the losses, D's accumulated D-step gradient, G's G-step gradient,
//! and every updated parameter and running statistic. Here `GanTrainer::step` runs on the same
//! batch from the same weights and is held to all of it.
//!
//! Regenerate: `.venv/bin/python scripts/reference.py train-goldens --out tests/data/golden`.

mod common;

use common::{assert_same_names, micro_config, open_train_golden};
use text2img::graph::thread_pool;
use text2img::model::synthetic::synthetic_weights;
use text2img::model::{ModelConfig, Network, WeightSet};
use text2img::rng::normal_noise;
use text2img::train::gan::{GanBatch, GanOptions, GanTrainer};
use text2img::train::TrainNet;
use text2img::weights::WeightFile;

/// Mirrors src/train/gan.rs: the noise seed is options.seed ^ NOISE_KEY; image i of step s uses
/// Philox index s·STRIDE + i in the D step and s·STRIDE + STRIDE/2 + i in the G step.
const NOISE_KEY: u64 = 0x6e6f_6973_6573_6565;
const NOISE_STRIDE: u64 = 1 << 16;

/// Losses: f32 forward vs the f64 golden. PyTorch's own f32 run of the same step differs from the
/// f64 one by < 1e-6 relative in the losses (reference.py train-goldens --stats); 1e-5 relative
/// leaves margin for our different summation order while a wrong term or weight moves a loss by
/// ≥ 1e-2.
const LOSS_TOL: f64 = 1e-5;
/// Gradients: max |ours − golden| / scale per tensor, scale = the tensor's max |golden| but at
/// least 1e-3 of the network's largest gradient (a tensor whose gradient vanishes in exact
/// arithmetic, D's text_proj.bias ahead of text_bn, holds only roundoff: ~1e-17 in f64, ~1e-9 in
/// f32). PyTorch f32 vs f64 measured ≤ 5.2e-6 per tensor (G's res1.bn2.bias); 3e-5 is ~6× that,
/// while a missing pass, a wrong weight or a wrong BN term is off by ≥ 1e-2.
const GRAD_TOL: f64 = 3e-5;
/// Updated weights, absolute. Adam's first step moves every element by lr·g/(|g| + ε) ≈ ±lr, so
/// the result is insensitive to the gradient's roundoff wherever |g| ≫ ε = 1e-8: what remains is
/// f32 rounding of the parameter (≤ 1.2e-7 for |p| < 2). 1e-6 = lr/200 catches a flipped or missing
/// update (2·lr or lr off). Where |g_golden| < GRAD_RESOLVED, g/(|g| + ε) is set by roundoff and
/// the step can be anything in [−lr, lr]: there only |ours − golden| ≤ 2·lr is required.
const WEIGHT_TOL: f64 = 1e-6;
const GRAD_RESOLVED: f64 = 1e-6;
/// Running statistics, absolute: f32 rounding of values ≤ 2 (PyTorch f32 vs f64 measured 2.4e-7).
const STAT_TOL: f64 = 1e-6;

struct Golden {
    file: WeightFile,
    config: ModelConfig,
    options: GanOptions,
}

impl Golden {
    fn load() -> Golden {
        let (file, o) = open_train_golden("train-gan.safetensors", "text2img/train-gan/1");
        let config = micro_config();
        let num = |k: &str| o[k].as_f64().unwrap_or_else(|| panic!("option {k}"));
        let flag = |k: &str| o[k].as_bool().unwrap_or_else(|| panic!("option {k}"));
        assert_eq!(num("step"), 0.0, "the golden is a first step");
        let options = GanOptions {
            batch: num("batch") as usize,
            cls: flag("cls"),
            int: flag("int"),
            cls_weight: num("cls_weight") as f32,
            interp_weight: num("interp_weight") as f32,
            lr: num("lr") as f32,
            beta1: num("beta1") as f32,
            seed: o["seed"].as_u64().expect("seed"),
            ..GanOptions::default()
        };
        let key = u64::from_str_radix(file.metadata("noise_key").expect("noise_key").trim_start_matches("0x"), 16);
        assert_eq!(key.expect("noise_key hex"), NOISE_KEY, "golden noise key");
        Golden { file, config, options }
    }

    fn t(&self, name: &str) -> Vec<f32> {
        self.file.f32_data(name).unwrap_or_else(|e| panic!("golden tensor {name}: {e}")).into_owned()
    }

    fn scalar(&self, name: &str) -> f64 {
        self.t(name)[0] as f64
    }
}

fn max_abs(v: &[f32]) -> f64 {
    v.iter().fold(0.0f64, |m, &x| m.max(x.abs() as f64))
}

fn max_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).fold(0.0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()))
}

/// Worst errors seen, for the report at the end.
#[derive(Default)]
struct Worst {
    grad: f64,
    weight: f64,
    stat: f64,
}

/// Checks one network's gradient, updated parameters, running statistics and Adam moments.
fn check_net(g: &Golden, net: &str, tn: &TrainNet, m: &[f32], v: &[f32], worst: &mut Worst) {
    let graph = &tn.graph;
    assert_same_names(&g.file, net, graph);
    let net_scale = graph.params.iter().map(|s| max_abs(&g.t(&format!("grad.{}", s.name)))).fold(0.0, f64::max);
    let lr = g.options.lr as f64;
    let (b1, b2) = (g.options.beta1 as f64, 0.999f64);
    for s in &graph.params {
        let gg = g.t(&format!("grad.{}", s.name));
        let ours = &tn.grads[s.offset..][..s.len];
        let scale = max_abs(&gg).max(1e-3 * net_scale);
        let e = max_diff(ours, &gg) / scale;
        worst.grad = worst.grad.max(e);
        assert!(e <= GRAD_TOL, "gradient of {}: relative error {e:.3e} > {GRAD_TOL:.0e}", s.name);
        // Adam's first moments: m = (1 − β1)·g, v = (1 − β2)·g² (t = 1, from zero).
        let want_m: Vec<f32> = gg.iter().map(|&x| ((1.0 - b1) * x as f64) as f32).collect();
        let e = max_diff(&m[s.offset..][..s.len], &want_m) / ((1.0 - b1) * scale);
        assert!(e <= GRAD_TOL, "Adam m of {}: relative error {e:.3e}", s.name);
        let want_v: Vec<f32> = gg.iter().map(|&x| ((1.0 - b2) * (x as f64).powi(2)) as f32).collect();
        let e = max_diff(&v[s.offset..][..s.len], &want_v) / ((1.0 - b2) * scale * scale);
        assert!(e <= 2.0 * GRAD_TOL, "Adam v of {}: relative error {e:.3e}", s.name);
        // Updated weights, elementwise: tight where the gradient is resolved, else within 2·lr.
        let gn = g.t(&format!("new.{}", s.name));
        let ours = &tn.params.data[s.offset..][..s.len];
        for (i, ((&p, &q), &gi)) in ours.iter().zip(&gn).zip(&gg).enumerate() {
            let d = (p as f64 - q as f64).abs();
            if (gi as f64).abs() >= GRAD_RESOLVED {
                worst.weight = worst.weight.max(d);
                assert!(d <= WEIGHT_TOL, "updated {}[{i}]: ours {p} vs PyTorch {q} (|Δ| {d:.3e})", s.name);
            } else {
                assert!(d <= 2.0 * lr * (1.0 + 1e-3), "updated {}[{i}] (unresolved gradient): |Δ| {d:.3e}", s.name);
            }
        }
    }
    for s in &graph.buffers {
        let mut want = g.t(&format!("new.{}", s.name));
        let ours = &tn.buffers[s.offset..][..s.len];
        if s.name == "discriminator.text_bn.running_mean" {
            // Its last update (momentum 0.1) takes the batch mean of text_proj's output in the G
            // step, after the D update moved text_proj.bias by a roundoff-driven amount (see
            // WEIGHT_TOL): shift the golden by 0.1·(our bias − PyTorch's bias).
            let slot = graph.param("discriminator.text_proj.bias").expect("text_proj.bias");
            let gb = g.t("new.discriminator.text_proj.bias");
            for (c, w) in want.iter_mut().enumerate() {
                *w += 0.1 * (tn.params.data[slot.offset + c] - gb[c]);
            }
        }
        let e = max_diff(ours, &want);
        worst.stat = worst.stat.max(e);
        assert!(e <= STAT_TOL, "running statistic {}: max abs error {e:.3e} > {STAT_TOL:.0e}", s.name);
    }
}

#[test]
fn gan_int_cls_step_matches_pytorch() {
    let g = Golden::load();
    let (cfg, opts) = (g.config.clone(), g.options.clone());
    let b = opts.batch;
    let (real, wrong, text) = (g.t("real"), g.t("wrong"), g.t("text"));
    assert_eq!(real.len(), b * 3 * 64 * 64, "golden batch size");

    // The noise the trainer draws (same Philox stream as reference.py's `noise`).
    let nz = cfg.generator.nz;
    let seed = opts.seed ^ NOISE_KEY;
    let draw = |first: u64, n: usize| {
        let mut z = vec![0.0; n * nz];
        z.chunks_mut(nz).enumerate().for_each(|(i, c)| normal_noise(seed, first + i as u64, c));
        z
    };
    // Philox + Box-Muller are computed in f64 and rounded once on both sides: ≤ 1 ulp apart.
    let ez = max_diff(&draw(0, b), &g.t("z_d"));
    assert!(ez <= 1e-6, "D-step noise differs from PyTorch's: {ez:.3e}");
    let ez2 = max_diff(&draw(NOISE_STRIDE / 2, b + b / 2), &g.t("z_g"));
    assert!(ez2 <= 1e-6, "G-step noise differs from PyTorch's: {ez2:.3e}");

    let nets = [Network::Generator, Network::Discriminator];
    let ws = WeightSet::from_tensors(cfg.clone(), &nets, synthetic_weights(&cfg, &nets)).expect("weights");
    let gn = TrainNet::from_weights(&ws, Network::Generator).expect("G");
    let dn = TrainNet::from_weights(&ws, Network::Discriminator).expect("D");
    let mut t = GanTrainer::from_nets(&cfg, opts, gn, dn, thread_pool(2).expect("pool")).expect("trainer");
    let st = t.step(&GanBatch { real: &real, wrong: &wrong, text: &text, labels: &[], shapes: &[] }).expect("step");

    let rel = |ours: f32, want: f64| (ours as f64 - want).abs() / want.abs().max(1e-3);
    let (e_d, e_g) = (rel(st.d_loss, g.scalar("d_loss")), rel(st.g_loss, g.scalar("g_loss")));
    assert!(e_d <= LOSS_TOL, "D loss {} vs PyTorch {} (rel {e_d:.3e})", st.d_loss, g.scalar("d_loss"));
    assert!(e_g <= LOSS_TOL, "G loss {} vs PyTorch {} (rel {e_g:.3e})", st.g_loss, g.scalar("g_loss"));
    // D's accuracy per pass from the golden logits (none lies within roundoff of 0).
    let acc = |name: &str, real: bool| {
        let l = g.t(&format!("d_logits_{name}"));
        assert!(l.iter().all(|x| x.abs() > 1e-4), "golden logit near 0");
        l.iter().filter(|&&x| (x > 0.0) == real).count() as f32 / l.len() as f32
    };
    assert_eq!(st.d_real_acc, acc("real", true), "D accuracy on real pairs");
    assert_eq!(st.d_wrong_acc, acc("wrong", false), "D accuracy on wrong pairs");
    assert_eq!(st.d_fake_acc, acc("fake", false), "D accuracy on fakes");

    let mut worst = Worst::default();
    check_net(&g, "discriminator", &t.d, &t.d_adam.m, &t.d_adam.v, &mut worst);
    check_net(&g, "generator", &t.g, &t.g_adam.m, &t.g_adam.v, &mut worst);
    eprintln!(
        "GAN step vs PyTorch f64: loss rel D {e_d:.2e} G {e_g:.2e}; gradients max rel {:.2e}; \
         updated weights max abs {:.2e} (lr {:.0e}); running stats max abs {:.2e}; noise {:.1e}",
        worst.grad,
        worst.weight,
        t.options.lr,
        worst.stat,
        ez.max(ez2)
    );
}
