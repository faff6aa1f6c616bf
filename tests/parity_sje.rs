//! One DS-SJE iteration of the text encoder's trainer against PyTorch (issue 4):
//! `scripts/reference.py sje-goldens` runs `SjeTrainer::step` (src/train/sje.rs) in f64 —
//! one-hot of four captions (upper case, '-', unknown characters, truncation), the char-CNN-RNN
//! with Reed's FixedGRU and the image CNN both in training mode (batch statistics, running
//! statistics updated, BatchNorm momentum 0.1 with the unbiased running variance), the symmetric
//! hinge of src/ops/loss.rs, backward, one torch.optim.RMSprop step (α 0.99, ε 1e-8, lr 7e-4) on
//! each network — from synthetic weights on a fixed batch, at the `tiny` config of
//! tests/train_graph.rs with B = 4. The text encoder's weights are those of docs/WEIGHTS.md; the
//! image CNN (no rule there) takes `synthetic_tensor` of its names, its last layer ×6 (metadata
//! `conv4_gain`, so that 5 of the 24 hinge terms are inactive and both branches of max(0, ·) are
//! exercised). It stores the inputs, both embeddings, the scores, the loss, every gradient and
//! every updated parameter and running statistic; tensors over 4096 elements (the image CNN's
//! conv1–conv4) as a fixed sample of 4096 elements plus the gradient's sums over all axes but 0,
//! all axes but 1, and its L2 norm, which keeps the file at ~450 kB. Here `SjeTrainer::step` runs
//! on the same batch from the same weights and is held to all of it.
//!
//! Regenerate: `.venv/bin/python scripts/reference.py sje-goldens --out tests/data/golden`
//! (`--stats` prints PyTorch's own f32-vs-f64 differences in the metrics used below).

mod common;

use std::collections::HashMap;

use common::{assert_same_names, micro_config, open_train_golden};
use text2img::graph::thread_pool;
use text2img::model::synthetic::{synthetic_tensor, synthetic_weights};
use text2img::model::text::encode_batch;
use text2img::model::{ModelConfig, Network, WeightSet};
use text2img::train::sje::{image_encoder_graph, SjeOptions, SjeTrainer, IMAGE_NF};
use text2img::train::{Mode, TrainNet, TrainSession};
use text2img::weights::WeightFile;

/// Loss, relative. PyTorch's f32 run of the same step matches the f64 one to 2.5e-7 relative (a
/// sum of 19 active O(1) margins); 1e-5 leaves room for our summation order, while a wrong
/// margin, a missing term or a wrong 1/B² moves it by ≥ 1e-2.
const LOSS_TOL: f64 = 1e-5;
/// Embeddings and scores (forward only), max |ours − golden| / max |golden|. PyTorch f32 vs f64
/// measured ≤ 1.2e-6 (the scores); 1e-5 is ~10× that. A wrong one-hot column, GRU equation or
/// BN statistic is off by ≥ 1e-2.
const FWD_TOL: f64 = 1e-5;
/// Gradients: max |ours − golden| / scale per tensor, scale = the stored golden's max |g| but at
/// least 1e-3 of the network's largest gradient (tiny gradients hold mostly roundoff). PyTorch
/// f32 vs f64 measured ≤ 1.9e-6 (image_encoder.conv0), also for the sums over all axes but 0 or
/// 1 (relative to their own max, same floor) and ≤ 5.1e-6 for the L2 norms (relative; there
/// PyTorch's own f32 reduction over 524k elements dominates, ours is f64). 3e-5 (as in
/// tests/parity_train.rs) is ≥ 6× those, while a missing hinge branch, a wrong BN backward term or
/// a GRU gate mix-up is off by ≥ 1e-2.
const GRAD_TOL: f64 = 3e-5;
/// Updated weights, absolute. RMSprop's first step from zero moves an element by
/// lr·g/(√(0.01·g²) + ε) ≈ ±10·lr = ±7e-3 wherever 0.1·|g| ≫ ε = 1e-8, insensitive to the
/// gradient's roundoff: what remains is f32 rounding of the parameter (≤ 1.2e-7 for |p| < 2;
/// PyTorch f32 vs f64 measured 1.0e-7 where |g| ≥ 1e-5). Below that the step is
/// f(g) = lr·g/(0.1·|g| + ε) with f' = lr·ε/(0.1·|g| + ε)², so each element is allowed
/// WEIGHT_TOL + |f'(g_min)|·|g_ours − g_golden| (g_min the smaller magnitude of the two, 0 if
/// their signs differ), capped at the largest possible difference 20·lr. 1e-6 ≈ lr/700 catches a
/// flipped, missing or doubled update (≥ 7e-3 off).
const WEIGHT_TOL: f64 = 1e-6;
/// Running statistics, absolute: f32 rounding of values ≤ 2 (PyTorch f32 vs f64 measured 1.2e-7).
const STAT_TOL: f64 = 1e-6;
/// RMSprop's ε and α (src/train/sje.rs).
const EPS: f64 = 1e-8;
const ALPHA: f64 = 0.99;

struct Golden {
    file: WeightFile,
    config: ModelConfig,
    options: SjeOptions,
    captions: Vec<String>,
    conv4_gain: f32,
    /// Tensors over `sample_max` elements hold elements (k·sample_mul) mod n, k < sample_max.
    sample_max: usize,
    sample_mul: u64,
}

impl Golden {
    fn load() -> Golden {
        let (file, o) = open_train_golden("train-sje.safetensors", "text2img/train-sje/1");
        let config = micro_config();
        let json = |k: &str| -> serde_json::Value {
            serde_json::from_str(file.metadata(k).unwrap_or_else(|| panic!("metadata {k}"))).expect(k)
        };
        let num = |k: &str| o[k].as_f64().unwrap_or_else(|| panic!("option {k}"));
        assert_eq!(num("step"), 0.0, "the golden is a first step");
        let options = SjeOptions {
            batch: num("batch") as usize,
            lr: num("lr") as f32,
            lr_decay: num("lr_decay") as f32,
            iters_per_epoch: num("iters_per_epoch") as usize,
            seed: o["seed"].as_u64().expect("seed"),
            ..SjeOptions::default()
        };
        let captions: Vec<String> = serde_json::from_value(json("captions")).expect("captions");
        let nf: usize = file.metadata("image_nf").expect("image_nf").parse().expect("image_nf");
        assert_eq!(nf, IMAGE_NF, "golden image CNN width");
        let conv4_gain = file.metadata("conv4_gain").expect("conv4_gain").parse().expect("conv4_gain");
        let s = json("sample");
        let sample_max = s["max"].as_u64().expect("sample max") as usize;
        let sample_mul = s["mul"].as_u64().expect("sample mul");
        Golden { file, config, options, captions, conv4_gain, sample_max, sample_mul }
    }

    fn t(&self, name: &str) -> Vec<f32> {
        self.file.f32_data(name).unwrap_or_else(|e| panic!("golden tensor {name}: {e}")).into_owned()
    }

    fn has(&self, name: &str) -> bool {
        self.file.header().tensors.iter().any(|t| t.name == name)
    }

    /// The flat indices a golden tensor of a slot with `n` elements holds.
    fn index(&self, name: &str, n: usize, stored: usize) -> Vec<usize> {
        if n <= self.sample_max {
            assert_eq!(stored, n, "{name}: golden holds {stored} of {n} elements");
            (0..n).collect()
        } else {
            assert_eq!(stored, self.sample_max, "{name}: golden sample size");
            (0..self.sample_max as u64).map(|k| ((k as u128 * self.sample_mul as u128) % n as u128) as usize).collect()
        }
    }
}

fn max_abs(v: &[f32]) -> f64 {
    v.iter().fold(0.0f64, |m, &x| m.max(x.abs() as f64))
}

fn max_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).fold(0.0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()))
}

fn rel(a: &[f32], b: &[f32]) -> f64 {
    max_diff(a, b) / max_abs(b).max(1e-30)
}

/// Sums of a row-major tensor over every axis but `axis`, in f64.
fn axis_sums(x: &[f32], shape: &[usize], axis: usize) -> Vec<f32> {
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let mut s = vec![0.0f64; shape[axis]];
    for o in 0..outer {
        for (c, acc) in s.iter_mut().enumerate() {
            let base = (o * shape[axis] + c) * inner;
            *acc += x[base..base + inner].iter().map(|&v| v as f64).sum::<f64>();
        }
    }
    s.into_iter().map(|v| v as f32).collect()
}

/// The image CNN's weights: `synthetic_tensor` of its names, conv4 ×gain (in f32, as
/// reference.py), running statistics by their WEIGHTS.md rule.
fn image_net(g: &Golden, embed: usize) -> TrainNet {
    let mut net = TrainNet::init_graph(image_encoder_graph(embed).expect("image graph"), 0).expect("image net");
    let graph = net.graph.clone();
    let mut w: HashMap<String, Vec<f32>> = HashMap::new();
    for s in graph.params.iter().chain(&graph.buffers) {
        let mut v = synthetic_tensor(&s.name, &s.shape).to_f32_vec();
        if s.name == "image_encoder.conv4.weight" {
            v.iter_mut().for_each(|x| *x *= g.conv4_gain);
        }
        w.insert(s.name.clone(), v);
    }
    net.load_tensors(&|n| w.get(n).cloned()).expect("image weights");
    net
}

/// Worst errors seen, for the report at the end.
#[derive(Default)]
struct Worst {
    grad: f64,
    sums: f64,
    weight: f64,
    stat: f64,
    sq: f64,
}

/// Checks one network's gradient, RMSprop state, updated parameters and running statistics.
fn check_net(g: &Golden, net: &str, tn: &TrainNet, sq: &[f32], lr: f64, worst: &mut Worst) {
    let graph = &tn.graph;
    assert_same_names(&g.file, net, graph);
    let net_scale = graph.params.iter().map(|s| max_abs(&g.t(&format!("grad.{}", s.name)))).fold(0.0, f64::max);
    let floor = 1e-3 * net_scale;
    let c = 1.0 - ALPHA;
    for s in &graph.params {
        let gg = g.t(&format!("grad.{}", s.name));
        let idx = g.index(&s.name, s.len, gg.len());
        let full = &tn.grads[s.offset..][..s.len];
        let ours: Vec<f32> = idx.iter().map(|&i| full[i]).collect();
        let scale = max_abs(&gg).max(floor);
        let e = max_diff(&ours, &gg) / scale;
        worst.grad = worst.grad.max(e);
        assert!(e <= GRAD_TOL, "gradient of {}: relative error {e:.3e} > {GRAD_TOL:.0e}", s.name);
        if idx.len() < s.len {
            // The sample leaves most elements out: their per-axis sums and the norm see them all.
            for axis in 0..2 {
                let want = g.t(&format!("grad_sum{axis}.{}", s.name));
                let got = axis_sums(full, &s.shape, axis);
                let e = max_diff(&got, &want) / max_abs(&want).max(floor);
                worst.sums = worst.sums.max(e);
                assert!(e <= GRAD_TOL, "sums over all axes but {axis} of {}'s gradient: {e:.3e}", s.name);
            }
            let want = g.t(&format!("grad_norm.{}", s.name))[0] as f64;
            let got = full.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
            let e = (got - want).abs() / want;
            worst.sums = worst.sums.max(e);
            assert!(e <= GRAD_TOL, "L2 norm of {}'s gradient: ours {got} vs PyTorch {want} ({e:.3e})", s.name);
        } else {
            assert!(!g.has(&format!("grad_norm.{}", s.name)), "{}: stored whole and as a sample", s.name);
        }
        // RMSprop's square average after one step from zero: (1 − α)·g².
        let want_sq: Vec<f32> = gg.iter().map(|&x| (c * (x as f64).powi(2)) as f32).collect();
        let ours_sq: Vec<f32> = idx.iter().map(|&i| sq[s.offset + i]).collect();
        let e = max_diff(&ours_sq, &want_sq) / (c * scale * scale);
        worst.sq = worst.sq.max(e);
        assert!(e <= 2.0 * GRAD_TOL, "RMSprop square average of {}: relative error {e:.3e}", s.name);
        // Updated weights, elementwise, within f32 rounding plus the propagated gradient difference.
        let gn = g.t(&format!("new.{}", s.name));
        let params = &tn.params.data[s.offset..][..s.len];
        for (k, &i) in idx.iter().enumerate() {
            let (p, q, go, gg) = (params[i] as f64, gn[k] as f64, ours[k] as f64, gg[k] as f64);
            let g_min = if go * gg > 0.0 { go.abs().min(gg.abs()) } else { 0.0 };
            let slope = lr * EPS / (c.sqrt() * g_min + EPS).powi(2);
            let allowed = (WEIGHT_TOL + slope * (go - gg).abs()).min(2.0 * lr / c.sqrt() * (1.0 + 1e-3));
            let d = (p - q).abs();
            if allowed <= 1.01 * WEIGHT_TOL {
                worst.weight = worst.weight.max(d);
            }
            assert!(
                d <= allowed,
                "updated {}[{i}]: ours {p} vs PyTorch {q} (|Δ| {d:.3e} > {allowed:.3e}; gradient ours {go:e}, PyTorch {gg:e})",
                s.name
            );
        }
    }
    for s in &graph.buffers {
        let want = g.t(&format!("new.{}", s.name));
        let e = max_diff(&tn.buffers[s.offset..][..s.len], &want);
        worst.stat = worst.stat.max(e);
        assert!(e <= STAT_TOL, "running statistic {}: max abs error {e:.3e} > {STAT_TOL:.0e}", s.name);
    }
}

#[test]
fn ds_sje_step_matches_pytorch() {
    let g = Golden::load();
    let (cfg, opts) = (g.config.clone(), g.options.clone());
    let (b, e, l) = (opts.batch, cfg.encoder.embed_dim, cfg.text.doc_length);
    let images = g.t("images");
    assert_eq!(images.len(), b * 3 * 64 * 64, "golden batch size");
    assert_eq!(g.captions.len(), b, "golden captions");

    // The one-hot rules (src/model/text.rs vs reference.py's `onehot`): exact.
    let (onehot, _) = encode_batch(&g.captions, l);
    assert_eq!(onehot, g.t("onehot"), "one-hot of the captions differs from PyTorch's");

    let nets = [Network::Encoder];
    let ws = WeightSet::from_tensors(cfg.clone(), &nets, synthetic_weights(&cfg, &nets)).expect("weights");
    let text = TrainNet::from_weights(&ws, Network::Encoder).expect("text encoder");
    let image = image_net(&g, e);
    let pool = thread_pool(2).expect("pool");

    // Forward alone first (on copies of the running statistics), so that a mismatch is located.
    let fwd = |net: &TrainNet, input: &[f32]| {
        let mut s = TrainSession::new(net.graph.clone(), b, pool.clone());
        s.input_mut(0).copy_from_slice(input);
        let mut bufs = net.buffers.clone();
        s.forward(&net.params, &mut bufs, Mode::Train);
        s.output(0)[..b * e].to_vec()
    };
    let txt = fwd(&text, &onehot);
    let img = fwd(&image, &images);
    let e_txt = rel(&txt, &g.t("txt_emb"));
    let e_img = rel(&img, &g.t("img_emb"));
    assert!(e_txt <= FWD_TOL, "text embeddings: relative error {e_txt:.3e}");
    assert!(e_img <= FWD_TOL, "image embeddings: relative error {e_img:.3e}");
    let scores: Vec<f32> = (0..b * b)
        .map(|ij| {
            let (i, j) = (ij / b, ij % b);
            (0..e).map(|k| img[i * e + k] as f64 * txt[j * e + k] as f64).sum::<f64>() as f32
        })
        .collect();
    let e_s = rel(&scores, &g.t("scores"));
    assert!(e_s <= FWD_TOL, "scores: relative error {e_s:.3e}");

    let mut t = SjeTrainer::from_nets(&cfg, opts, text, image, pool).expect("trainer");
    let lr = t.lr();
    assert_eq!(lr, g.options.lr, "learning rate at step 0");
    let (loss, _) = t.step(&images, &g.captions, &[]).expect("step");
    let want = g.t("loss")[0] as f64;
    let e_loss = (loss as f64 - want).abs() / want.abs().max(1e-3);
    assert!(e_loss <= LOSS_TOL, "loss {loss} vs PyTorch {want} (rel {e_loss:.3e})");

    let mut worst = Worst::default();
    check_net(&g, "encoder", &t.text, &t.text_sq, lr as f64, &mut worst);
    check_net(&g, "image_encoder", &t.image, &t.image_sq, lr as f64, &mut worst);
    eprintln!(
        "DS-SJE step vs PyTorch f64: loss rel {e_loss:.2e}; embeddings rel text {e_txt:.2e} image {e_img:.2e}, \
         scores {e_s:.2e}; gradients max rel {:.2e} (sums/norms {:.2e}); RMSprop v max rel {:.2e}; \
         updated weights max abs {:.2e} (lr {lr:.0e}); running stats max abs {:.2e}",
        worst.grad, worst.sums, worst.sq, worst.weight, worst.stat
    );
}
