//! Finite-difference checks of every reference backward pass. For an op y = f(θ) we take the
//! scalar L = Σ R ⊙ y with fixed random R (so dL/dy = R), run the backward with dy = R, and
//! compare each sampled element of every gradient with the central difference
//! (L(θ + ε) − L(θ − ε)) / (2ε), where 2ε is the step actually taken in f32.
//!
//! Tolerances. The forwards run in f32 (the references accumulate in f64 but round each output
//! to f32), so L carries a rounding error of about 2^-24 · √N · max|y| ≈ 1e-7 · √N; with
//! ε = 1e-2 that is ≲ 1e-4 of the gradient for our N ≤ 10³. Smooth ops add the truncation
//! error ε²·f'''/6 ≈ 2e-5. Errors are measured against the tensor's largest gradient (as
//! `common::rel_error` does) and held to 1e-3 relative, a factor ~10 above what the two sources
//! predict; linear ops (convolutions, linear, data movement) have no truncation error and meet
//! it by a wide margin. Piecewise-linear ops (ReLU RNN, max-pool, the SJE hinge) are checked
//! only at elements whose ±ε perturbation leaves every kink on the same side; the test skips
//! the others and requires that most were checked.

mod common;

use common::random;
use text2img::ops::activation::{activation_backward, activation_ref};
use text2img::ops::batch_norm::{batch_norm_backward_ref, batch_norm_train_ref};
use text2img::ops::conv1d::{conv1d_backward_ref, conv1d_ref};
use text2img::ops::conv2d::{conv2d_backward_ref, conv2d_ref, Conv2dGeom};
use text2img::ops::conv_transpose2d::{conv_transpose2d_backward_ref, conv_transpose2d_ref, ConvTranspose2dGeom};
use text2img::ops::elementwise::{
    concat_channels, concat_channels_backward, replicate_spatial, replicate_spatial_backward,
};
use text2img::ops::flip::{flip_images, flip_images_backward};
use text2img::ops::linear::{linear_backward_ref, linear_ref};
use text2img::ops::loss::{
    bce_with_logits, mode_seeking_loss, mse_loss, sje_loss, sje_loss_cosine, softmax_cross_entropy,
    softmax_cross_entropy_blocks, softmax_cross_entropy_twin, softmax_cross_entropy_uniform, ModeSeekingCells,
};
use text2img::ops::pool::{maxpool1d, maxpool1d_backward, maxpool1d_len, mean_time, mean_time_backward};
use text2img::ops::rnn::{
    gru_backward_ref, gru_ref, gru_train_forward_ref, rnn_relu_backward_ref, rnn_relu_train_forward_ref, saved_len,
    RnnDims, RnnParams,
};
use text2img::ops::shape_mask::ShapeMask;
use text2img::ops::shift::{shift_images, shift_images_backward};
use text2img::ops::{Activation, Epilogue};
use text2img::train::augment::DAugment;

/// Relative tolerance of every check (see the module doc).
const TOL: f64 = 1e-3;
/// Finite-difference step.
const EPS: f32 = 1e-2;
/// Elements sampled per tensor (all of them when the tensor is smaller).
const SAMPLES: usize = 40;

/// Σ r·y in f64.
fn weighted(y: &[f32], r: &[f32]) -> f64 {
    y.iter().zip(r).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Checks `grad` = dL/dθ at sampled elements of θ. `loss` evaluates L at a perturbed θ, or
/// returns None when the perturbation crosses a kink (the element is then skipped). Returns the
/// largest relative error seen, and asserts it is within `TOL`.
#[track_caller]
fn check(what: &str, theta: &[f32], grad: &[f32], seed: u64, loss: impl Fn(&[f32]) -> Option<f64>) -> f64 {
    assert_eq!(theta.len(), grad.len(), "{what}: gradient length");
    let n = theta.len();
    let idx: Vec<usize> = if n <= SAMPLES {
        (0..n).collect()
    } else {
        random(SAMPLES, seed).iter().map(|&u| (((u + 1.0) * 0.5 * n as f32) as usize).min(n - 1)).collect()
    };
    let scale = grad.iter().fold(0.0f64, |m, &g| m.max(g.abs() as f64)).max(1e-6);
    let (mut worst, mut checked) = (0.0f64, 0usize);
    let mut p = theta.to_vec();
    for &i in &idx {
        let x0 = theta[i];
        p[i] = x0 + EPS;
        let (hi, up) = (loss(&p), p[i]);
        p[i] = x0 - EPS;
        let (lo, down) = (loss(&p), p[i]);
        p[i] = x0;
        let (Some(hi), Some(lo)) = (hi, lo) else { continue };
        let num = (hi - lo) / (up as f64 - down as f64);
        let err = (num - grad[i] as f64).abs() / scale;
        assert!(err <= TOL, "{what}[{i}]: numeric {num:.6e} vs analytic {:.6e}, rel error {err:.2e}", grad[i]);
        worst = worst.max(err);
        checked += 1;
    }
    assert!(checked * 4 >= idx.len() * 3, "{what}: only {checked} of {} elements away from kinks", idx.len());
    println!("{what}: max rel error {worst:.2e} over {checked} elements");
    worst
}

#[test]
fn linear_backward_fd() {
    let (batch, in_f, out_f) = (3, 7, 5);
    let (x, w, bias, r) =
        (random(batch * in_f, 1), random(out_f * in_f, 2), random(out_f, 3), random(batch * out_f, 4));
    let fwd = |x: &[f32], w: &[f32], b: &[f32]| {
        let mut y = vec![0.0; batch * out_f];
        linear_ref(x, w, batch, in_f, out_f, &Epilogue { shift: Some(b), ..Default::default() }, &mut y);
        Some(weighted(&y, &r))
    };
    let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; out_f]);
    linear_backward_ref(&x, &w, &r, batch, in_f, out_f, Some(&mut dx), &mut dw, Some(&mut db));
    check("linear dx", &x, &dx, 10, |x| fwd(x, &w, &bias));
    check("linear dw", &w, &dw, 11, |w| fwd(&x, w, &bias));
    check("linear db", &bias, &db, 12, |b| fwd(&x, &w, b));
}

#[test]
fn conv2d_backward_fd() {
    let cases = [
        (Conv2dGeom { cin: 3, h: 5, w: 6, cout: 4, kh: 3, kw: 3, stride: 2, pad: 1 }, 2),
        (Conv2dGeom { cin: 2, h: 8, w: 8, cout: 3, kh: 4, kw: 4, stride: 2, pad: 1 }, 2),
        (Conv2dGeom { cin: 4, h: 4, w: 4, cout: 1, kh: 4, kw: 4, stride: 1, pad: 0 }, 3),
    ];
    for (c, (g, batch)) in cases.into_iter().enumerate() {
        let s = 20 + 10 * c as u64;
        let (x, w, r) =
            (random(batch * g.in_len(), s), random(g.cout * g.kdim(), s + 1), random(batch * g.out_len(), s + 2));
        let fwd = |x: &[f32], w: &[f32]| {
            let mut y = vec![0.0; batch * g.out_len()];
            conv2d_ref(x, w, batch, &g, &Epilogue::default(), &mut y);
            Some(weighted(&y, &r))
        };
        let (mut dx, mut dw) = (vec![0.0; x.len()], vec![0.0; w.len()]);
        conv2d_backward_ref(&x, &w, &r, batch, &g, Some(&mut dx), &mut dw);
        check(&format!("conv2d case {c} dx"), &x, &dx, s + 3, |x| fwd(x, &w));
        check(&format!("conv2d case {c} dw"), &w, &dw, s + 4, |w| fwd(&x, w));
    }
}

#[test]
fn conv_transpose2d_backward_fd() {
    let cases = [
        (ConvTranspose2dGeom { cin: 3, h: 3, w: 4, cout: 2, k: 4, stride: 2, pad: 1 }, 2),
        (ConvTranspose2dGeom { cin: 5, h: 1, w: 1, cout: 3, k: 4, stride: 1, pad: 0 }, 3),
        (ConvTranspose2dGeom { cin: 2, h: 3, w: 2, cout: 2, k: 3, stride: 2, pad: 0 }, 1),
    ];
    for (c, (g, batch)) in cases.into_iter().enumerate() {
        let s = 60 + 10 * c as u64;
        let (x, w, r) =
            (random(batch * g.in_len(), s), random(g.cin * g.rows(), s + 1), random(batch * g.out_len(), s + 2));
        let fwd = |x: &[f32], w: &[f32]| {
            let mut y = vec![0.0; batch * g.out_len()];
            conv_transpose2d_ref(x, w, batch, &g, &Epilogue::default(), &mut y);
            Some(weighted(&y, &r))
        };
        let (mut dx, mut dw) = (vec![0.0; x.len()], vec![0.0; w.len()]);
        conv_transpose2d_backward_ref(&x, &w, &r, batch, &g, Some(&mut dx), &mut dw);
        check(&format!("conv_transpose2d case {c} dx"), &x, &dx, s + 3, |x| fwd(x, &w));
        check(&format!("conv_transpose2d case {c} dw"), &w, &dw, s + 4, |w| fwd(&x, w));
    }
}

#[test]
fn conv1d_backward_fd() {
    let (batch, cin, t, cout, k) = (2, 3, 9, 4, 4);
    let to = t + 1 - k;
    let (x, w, bias, r) =
        (random(batch * cin * t, 100), random(cout * cin * k, 101), random(cout, 102), random(batch * cout * to, 103));
    let fwd = |x: &[f32], w: &[f32], b: &[f32]| {
        let mut y = vec![0.0; batch * cout * to];
        conv1d_ref(x, w, batch, cin, t, cout, k, &Epilogue { shift: Some(b), ..Default::default() }, &mut y);
        Some(weighted(&y, &r))
    };
    let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; cout]);
    conv1d_backward_ref(&x, &w, &r, batch, cin, t, cout, k, Some(&mut dx), &mut dw, Some(&mut db));
    check("conv1d dx", &x, &dx, 104, |x| fwd(x, &w, &bias));
    check("conv1d dw", &w, &dw, 105, |w| fwd(&x, w, &bias));
    check("conv1d db", &bias, &db, 106, |b| fwd(&x, &w, b));
}

#[test]
fn batch_norm_backward_fd() {
    // Images [B, C, H·W] and vectors [B, C] (D's text_bn).
    for (c, &(batch, ch, spatial)) in [(3usize, 4usize, 5usize), (4, 3, 1), (2, 2, 9)].iter().enumerate() {
        let s = 200 + 10 * c as u64;
        let n = batch * ch * spatial;
        let x = random(n, s);
        let gamma: Vec<f32> = random(ch, s + 1).iter().map(|v| 1.0 + 0.5 * v).collect();
        let (beta, r) = (random(ch, s + 2), random(n, s + 3));
        let fwd = |x: &[f32], g: &[f32], b: &[f32]| {
            let (mut y, mut m, mut is) = (vec![0.0; n], vec![0.0; ch], vec![0.0; ch]);
            batch_norm_train_ref(x, batch, g, b, &mut y, &mut m, &mut is);
            Some(weighted(&y, &r))
        };
        let (mut y, mut mean, mut invstd) = (vec![0.0; n], vec![0.0; ch], vec![0.0; ch]);
        batch_norm_train_ref(&x, batch, &gamma, &beta, &mut y, &mut mean, &mut invstd);
        let (mut dx, mut dg, mut db) = (vec![0.0; n], vec![0.0; ch], vec![0.0; ch]);
        batch_norm_backward_ref(&x, &r, batch, &gamma, &mean, &invstd, &mut dx, &mut dg, &mut db);
        check(&format!("batch_norm {batch}x{ch}x{spatial} dx"), &x, &dx, s + 4, |x| fwd(x, &gamma, &beta));
        check(&format!("batch_norm {batch}x{ch}x{spatial} dgamma"), &gamma, &dg, s + 5, |g| fwd(&x, g, &beta));
        check(&format!("batch_norm {batch}x{ch}x{spatial} dbeta"), &beta, &db, s + 6, |b| fwd(&x, &gamma, b));
    }
}

#[test]
fn activation_backward_fd() {
    // Inputs kept ≥ 0.05 away from 0 (> ε), so ReLU's and LeakyReLU's kink is never crossed.
    let x: Vec<f32> = random(50, 300).iter().map(|&v| v.signum() * (0.05 + 2.0 * v.abs())).collect();
    let r = random(50, 301);
    for act in [Activation::None, Activation::Relu, Activation::LeakyRelu(0.2), Activation::Tanh, Activation::Sigmoid] {
        let mut y = vec![0.0; x.len()];
        activation_ref(act, &x, &mut y);
        let mut dx = vec![f32::NAN; x.len()];
        activation_backward(act, &y, &r, &mut dx);
        check(&format!("activation {act:?}"), &x, &dx, 302, |x| {
            let mut y = vec![0.0; x.len()];
            activation_ref(act, x, &mut y);
            Some(weighted(&y, &r))
        });
    }
}

#[test]
fn concat_and_replicate_backward_fd() {
    let (batch, a_len, b_len) = (3, 4, 6);
    let (a, b, r) = (random(batch * a_len, 400), random(batch * b_len, 401), random(batch * (a_len + b_len), 402));
    let fwd = |a: &[f32], b: &[f32]| {
        let mut y = vec![0.0; r.len()];
        concat_channels(a, a_len, b, b_len, batch, &mut y);
        Some(weighted(&y, &r))
    };
    let (mut da, mut db) = (vec![f32::NAN; a.len()], vec![f32::NAN; b.len()]);
    concat_channels_backward(&r, a_len, b_len, batch, &mut da, &mut db);
    check("concat da", &a, &da, 403, |a| fwd(a, &b));
    check("concat db", &b, &db, 404, |b| fwd(&a, b));

    let (c, hw) = (5, 16);
    let (x, r) = (random(batch * c, 405), random(batch * c * hw, 406));
    let mut dx = vec![f32::NAN; x.len()];
    replicate_spatial_backward(&r, batch, c, hw, &mut dx);
    check("replicate_spatial dx", &x, &dx, 407, |x| {
        let mut y = vec![0.0; r.len()];
        replicate_spatial(x, batch, c, hw, &mut y);
        Some(weighted(&y, &r))
    });
}

#[test]
fn pool_backward_fd() {
    // Distinct values 0.1 apart (a shuffled ramp), so with ε = 0.01 no window's maximum changes.
    let (rows, t) = (3, 11);
    let n = rows * t;
    let x: Vec<f32> = (0..n).map(|i| ((i * 17) % n) as f32 * 0.1 - 1.5).collect();
    for (k, s) in [(3, 2), (3, 3), (2, 1)] {
        let to = maxpool1d_len(t, k, s).expect("window fits");
        let r = random(rows * to, 500 + k as u64 * 10 + s as u64);
        let mut dx = vec![f32::NAN; n];
        maxpool1d_backward(&x, &r, rows, t, k, s, &mut dx);
        check(&format!("maxpool1d k{k} s{s}"), &x, &dx, 510, |x| {
            let mut y = vec![0.0; rows * to];
            maxpool1d(x, rows, t, k, s, &mut y);
            Some(weighted(&y, &r))
        });
    }
    let (batch, steps, h) = (2, 5, 3);
    let (x, r) = (random(batch * steps * h, 520), random(batch * h, 521));
    let mut dx = vec![f32::NAN; x.len()];
    mean_time_backward(&r, batch, steps, h, &mut dx);
    check("mean_time", &x, &dx, 522, |x| {
        let mut y = vec![0.0; batch * h];
        mean_time(x, batch, steps, h, &mut y);
        Some(weighted(&y, &r))
    });
}

/// Random recurrence parameters (weights scaled so the gates are neither saturated nor linear).
fn rnn_params(gates: usize, d: RnnDims, seed: u64) -> [Vec<f32>; 4] {
    let h = d.hidden;
    let scaled = |n: usize, s: u64, k: f32| random(n, s).iter().map(|v| v * k).collect::<Vec<f32>>();
    [
        scaled(gates * h * d.cin, seed, 0.8),
        scaled(gates * h, seed + 1, 0.5),
        scaled(gates * h * h, seed + 2, 0.8),
        scaled(gates * h, seed + 3, 0.5),
    ]
}

#[test]
fn gru_backward_through_time_fd() {
    for (c, d) in [RnnDims { batch: 2, cin: 3, t: 4, hidden: 5 }, RnnDims { batch: 1, cin: 2, t: 1, hidden: 3 }]
        .into_iter()
        .enumerate()
    {
        let s = 600 + 20 * c as u64;
        let x = random(d.batch * d.cin * d.t, s);
        let params = rnn_params(3, d, s + 1);
        let r = random(d.batch * d.t * d.hidden, s + 9);
        let fwd = |x: &[f32], ps: [&[f32]; 4]| {
            let p = RnnParams { w_ih: ps[0], b_ih: ps[1], w_hh: ps[2], b_hh: ps[3] };
            let mut out = vec![0.0; r.len()];
            gru_ref(x, &p, d, &mut out);
            Some(weighted(&out, &r))
        };
        let p = RnnParams { w_ih: &params[0], b_ih: &params[1], w_hh: &params[2], b_hh: &params[3] };
        let (mut out, mut saved) = (vec![0.0; r.len()], vec![f32::NAN; saved_len(true, d)]);
        gru_train_forward_ref(&x, &p, d, &mut out, &mut saved);
        let mut plain = vec![0.0; r.len()];
        gru_ref(&x, &p, d, &mut plain);
        assert_eq!(out, plain, "training forward and inference forward agree bit for bit");
        let mut grads: [Vec<f32>; 4] = params.clone().map(|v| vec![0.0; v.len()]);
        let mut dx = vec![f32::NAN; x.len()];
        let [gw_ih, gb_ih, gw_hh, gb_hh] = &mut grads;
        gru_backward_ref(&x, &p, d, &out, &saved, &r, Some(&mut dx), gw_ih, gb_ih, gw_hh, gb_hh);
        let pr = [&params[0][..], &params[1][..], &params[2][..], &params[3][..]];
        check(&format!("gru {d:?} dx"), &x, &dx, s + 10, |x| fwd(x, pr));
        for (k, name) in ["w_ih", "b_ih", "w_hh", "b_hh"].iter().enumerate() {
            check(&format!("gru {d:?} d{name}"), &params[k], &grads[k], s + 11 + k as u64, |v| {
                let mut ps = pr;
                ps[k] = v;
                fwd(&x, ps)
            });
        }
    }
}

#[test]
fn rnn_relu_backward_through_time_fd() {
    let d = RnnDims { batch: 2, cin: 3, t: 5, hidden: 4 };
    let x = random(d.batch * d.cin * d.t, 700);
    let params = rnn_params(1, d, 701);
    let r = random(d.batch * d.t * d.hidden, 709);
    let p = RnnParams { w_ih: &params[0], b_ih: &params[1], w_hh: &params[2], b_hh: &params[3] };
    let mut out = vec![0.0; r.len()];
    rnn_relu_train_forward_ref(&x, &p, d, &mut out, &mut []);
    let mask: Vec<bool> = out.iter().map(|&v| v > 0.0).collect();
    assert!(mask.iter().filter(|&&m| m).count() * 4 >= mask.len(), "enough active units to test");
    // L at perturbed parameters, or None when a unit switched on or off (a kink was crossed).
    let fwd = |x: &[f32], ps: [&[f32]; 4]| {
        let p = RnnParams { w_ih: ps[0], b_ih: ps[1], w_hh: ps[2], b_hh: ps[3] };
        let mut o = vec![0.0; r.len()];
        rnn_relu_train_forward_ref(x, &p, d, &mut o, &mut []);
        o.iter().zip(&mask).all(|(&v, &m)| (v > 0.0) == m).then(|| weighted(&o, &r))
    };
    let mut grads: [Vec<f32>; 4] = params.clone().map(|v| vec![0.0; v.len()]);
    let mut dx = vec![f32::NAN; x.len()];
    let [gw_ih, gb_ih, gw_hh, gb_hh] = &mut grads;
    rnn_relu_backward_ref(&x, &p, d, &out, &[], &r, Some(&mut dx), gw_ih, gb_ih, gw_hh, gb_hh);
    let pr = [&params[0][..], &params[1][..], &params[2][..], &params[3][..]];
    check("rnn_relu dx", &x, &dx, 710, |x| fwd(x, pr));
    for (k, name) in ["w_ih", "b_ih", "w_hh", "b_hh"].iter().enumerate() {
        check(&format!("rnn_relu d{name}"), &params[k], &grads[k], 711 + k as u64, |v| {
            let mut ps = pr;
            ps[k] = v;
            fwd(&x, ps)
        });
    }
}

#[test]
fn bce_with_logits_fd() {
    let n = 12;
    let logits: Vec<f32> = random(n, 800).iter().map(|v| 4.0 * v).collect();
    // Hard labels for the first half, soft (as in label smoothing) for the rest.
    let targets: Vec<f32> = random(n, 801)
        .iter()
        .enumerate()
        .map(|(i, v)| if i < n / 2 { (*v > 0.0) as u8 as f32 } else { 0.5 + 0.5 * v })
        .collect();
    let weights: Vec<f32> = random(n, 802).iter().map(|v| 0.75 + 0.25 * v).collect();
    for w in [None, Some(&weights[..])] {
        let mut dl = vec![f32::NAN; n];
        bce_with_logits(&logits, &targets, w, &mut dl);
        check(&format!("bce_with_logits weighted={}", w.is_some()), &logits, &dl, 803, |l| {
            Some(bce_with_logits(l, &targets, w, &mut vec![0.0; n]) as f64)
        });
    }
}

#[test]
fn softmax_cross_entropy_fd() {
    let (b, c) = (5, 8);
    // Large logits too: the loss must stay finite where a naive exp would overflow.
    let logits: Vec<f32> =
        random(b * c, 810).iter().enumerate().map(|(i, v)| if i < c { 60.0 * v } else { 3.0 * v }).collect();
    let labels: Vec<usize> = (0..b).map(|i| (i * 3) % c).collect();
    let mut dl = vec![f32::NAN; b * c];
    let l = softmax_cross_entropy(&logits, &labels, c, &mut dl);
    assert!(l.is_finite() && l > 0.0, "loss {l}");
    // Each row of the gradient sums to zero (softmax minus a one-hot, over B).
    for row in dl.chunks(c) {
        assert!(row.iter().sum::<f32>().abs() < 1e-6, "row sum {row:?}");
    }
    check("softmax_cross_entropy", &logits, &dl, 811, |x| {
        Some(softmax_cross_entropy(x, &labels, c, &mut vec![0.0; b * c]) as f64)
    });
}

#[test]
fn softmax_cross_entropy_blocks_fd() {
    // Two attributes side by side (3 and 5 classes): the sum of each block's own loss.
    let (b, sizes) = (4, [3, 5]);
    let logits: Vec<f32> = random(b * 8, 812).iter().map(|v| 4.0 * v).collect();
    let labels: Vec<usize> = (0..b).flat_map(|i| [i % 3, (2 * i + 1) % 5]).collect();
    let mut dl = vec![f32::NAN; b * 8];
    let l = softmax_cross_entropy_blocks(&logits, &sizes, &labels, &mut dl);
    let mut want = 0.0;
    for (a, (first, c)) in [(0, 3), (3, 5)].into_iter().enumerate() {
        let block: Vec<f32> = logits.chunks(8).flat_map(|r| r[first..first + c].to_vec()).collect();
        let ls: Vec<usize> = labels.chunks(2).map(|r| r[a]).collect();
        let mut d = vec![0.0; b * c];
        want += softmax_cross_entropy(&block, &ls, c, &mut d);
        let got: Vec<f32> = dl.chunks(8).flat_map(|r| r[first..first + c].to_vec()).collect();
        assert_eq!(got, d, "block {a}'s gradient is its own cross-entropy's");
    }
    assert!((l - want).abs() < 1e-6, "loss {l} vs {want}");
    check("softmax_cross_entropy_blocks", &logits, &dl, 813, |x| {
        Some(softmax_cross_entropy_blocks(x, &sizes, &labels, &mut vec![0.0; b * 8]) as f64)
    });
}

#[test]
fn softmax_cross_entropy_twin_fd() {
    // TAC-GAN's two classifiers side by side (blocks of 3 and 5 classes, twice): each half's
    // loss is its own block cross-entropy, and the gradient is each half's, weighted — G's
    // [w, −w] (pleasing the classifier, defeating the twin) and D's [1, 0] / [0, 1].
    let (b, sizes, k) = (4, [3, 5], 8);
    let logits: Vec<f32> = random(b * 2 * k, 814).iter().map(|v| 4.0 * v).collect();
    let labels: Vec<usize> = (0..b).flat_map(|i| [(i + 1) % 3, (3 * i) % 5]).collect();
    let half = |h: usize| -> Vec<f32> { logits.chunks(2 * k).flat_map(|r| r[h * k..(h + 1) * k].to_vec()).collect() };
    let mut want = [0.0; 2];
    let mut want_d = [vec![0.0; b * k], vec![0.0; b * k]];
    for h in 0..2 {
        want[h] = softmax_cross_entropy_blocks(&half(h), &sizes, &labels, &mut want_d[h]);
    }
    assert!((want[0] - want[1]).abs() > 0.1, "the halves differ, so a swap would show");
    for weights in [[1.5, -1.5], [1.0, 0.0], [0.0, 1.0]] {
        let mut dl = vec![f32::NAN; b * 2 * k];
        let l = softmax_cross_entropy_twin(&logits, &sizes, &labels, weights, &mut dl);
        assert_eq!(l, want, "each half's loss, unweighted");
        for (h, w) in weights.into_iter().enumerate() {
            let got: Vec<f32> = dl.chunks(2 * k).flat_map(|r| r[h * k..(h + 1) * k].to_vec()).collect();
            let scaled: Vec<f32> = want_d[h].iter().map(|&d| w * d).collect();
            let off = got.iter().zip(&scaled).fold(0.0f32, |m, (g, s)| m.max((g - s).abs()));
            assert!(off < 1e-6, "half {h}'s gradient at weight {w}: off by {off}");
        }
        check("softmax_cross_entropy_twin", &logits, &dl, 815, |x| {
            let [a, c] = softmax_cross_entropy_twin(x, &sizes, &labels, weights, &mut vec![0.0; b * 2 * k]);
            Some(f64::from(weights[0]) * f64::from(a) + f64::from(weights[1]) * f64::from(c))
        });
    }
}

#[test]
fn softmax_cross_entropy_uniform_fd() {
    // One block of 3 classes, 2 elements into rows of 8 (TAC-GAN's halves side by side): the
    // loss is the mean of the cross-entropies against each class (each class's label, averaged),
    // the gradient lands in that block alone, and it is zero where the block is already uniform.
    let (b, row, at, c) = (4, 8, 2, 3);
    let logits: Vec<f32> = random(b * row, 816).iter().map(|v| 4.0 * v).collect();
    let mut dl = vec![f32::NAN; b * row];
    let l = softmax_cross_entropy_uniform(&logits, (row, at), c, 0.5, &mut dl);
    let block: Vec<f32> = logits.chunks(row).flat_map(|r| r[at..at + c].to_vec()).collect();
    let want: f32 =
        (0..c).map(|y| softmax_cross_entropy(&block, &vec![y; b], c, &mut vec![0.0; b * c])).sum::<f32>() / c as f32;
    assert!((l - want).abs() < 1e-5, "loss {l} vs {want}");
    for (i, d) in dl.iter().enumerate() {
        let inside = (at..at + c).contains(&(i % row));
        assert_eq!(d.is_nan(), !inside, "element {i}: written only in the block");
    }
    let written: Vec<f32> = dl.iter().map(|d| if d.is_nan() { 0.0 } else { *d }).collect();
    check("softmax_cross_entropy_uniform", &logits, &written, 817, |x| {
        Some(0.5 * f64::from(softmax_cross_entropy_uniform(x, (row, at), c, 1.0, &mut vec![0.0; b * row])))
    });
    let flat = vec![1.5f32; b * row];
    let mut d0 = vec![0.0; b * row];
    let l0 = softmax_cross_entropy_uniform(&flat, (row, at), c, 1.0, &mut d0);
    assert!(
        (l0 - (c as f32).ln()).abs() < 1e-6 && d0.iter().all(|&d| d.abs() < 1e-7),
        "uniform logits: ln C, no gradient"
    );
}

#[test]
fn shift_images_fd() {
    // L = ⟨y, shift(x)⟩ for a random y: its gradient with respect to x is the backward pass
    // (the shift by the negated offsets), at offsets inside, at and past the image's edge.
    let dims = (2, 5, 7);
    let shifts = [[1, -2], [0, 0], [-4, 3], [5, 7], [-2, -8]];
    let n = shifts.len() * 2 * 5 * 7;
    let (x, y) = (random(n, 830), random(n, 831));
    let mut dx = vec![f32::NAN; n];
    shift_images_backward(&y, dims, &shifts, &mut dx);
    check("shift_images", &x, &dx, 832, |x| {
        let mut out = vec![0.0; n];
        shift_images(x, dims, &shifts, &mut out);
        Some(out.iter().zip(&y).map(|(&o, &y)| f64::from(o) * f64::from(y)).sum())
    });
}

#[test]
fn flip_images_fd() {
    // L = ⟨y, flip(x)⟩: its gradient with respect to x is the inverse transforms of y.
    let dims = (2, 5, 5);
    let flips = [0, 1, 2, 3, 4, 5, 6, 7];
    let n = flips.len() * 2 * 5 * 5;
    let (x, y) = (random(n, 833), random(n, 834));
    let mut dx = vec![f32::NAN; n];
    flip_images_backward(&y, dims, &flips, &mut dx);
    check("flip_images", &x, &dx, 835, |x| {
        let mut out = vec![0.0; n];
        flip_images(x, dims, &flips, &mut out);
        Some(out.iter().zip(&y).map(|(&o, &y)| f64::from(o) * f64::from(y)).sum())
    });
}

#[test]
fn d_augment_fd() {
    // D's whole augmentation at the real image shape, each part alone and both (a symmetry, then
    // a translation): L = ⟨y, augment(x)⟩ against its backward pass.
    let rows = 8;
    let flips: Vec<u8> = (0..rows as u8).collect();
    let shifts: Vec<[i32; 2]> = (0..rows as i32).map(|i| [i * 3 - 10, 7 - i * 2]).collect();
    let n = rows * 3 * 64 * 64;
    let (x, y) = (random(n, 836), random(n, 837));
    for (what, aug) in [
        ("symmetries", DAugment { flips: Some(flips.clone()), shifts: None }),
        ("translations", DAugment { flips: None, shifts: Some(shifts.clone()) }),
        ("both", DAugment { flips: Some(flips.clone()), shifts: Some(shifts.clone()) }),
    ] {
        let (mut dx, mut mid) = (vec![f32::NAN; n], Vec::new());
        aug.backward(&y, &mut dx, &mut mid);
        check(what, &x, &dx, 838, |x| {
            let mut out = vec![f32::NAN; n];
            aug.apply(x, &mut out, &mut Vec::new());
            Some(out.iter().zip(&y).map(|(&o, &y)| f64::from(o) * f64::from(y)).sum())
        });
    }
}

#[test]
fn mse_loss_fd() {
    let n = 17;
    let (pred, target) = (random(n, 820), random(n, 821));
    let mut d = vec![f32::NAN; n];
    let l = mse_loss(&pred, &target, &mut d);
    let direct: f64 = pred.iter().zip(&target).map(|(&p, &t)| f64::from(p - t).powi(2)).sum::<f64>() / n as f64;
    assert!((f64::from(l) - direct).abs() < 1e-6, "loss {l} vs {direct}");
    check("mse_loss", &pred, &d, 822, |p| Some(mse_loss(p, &target, &mut vec![0.0; n]) as f64));
}

/// Which of DS-SJE's hinges are active (margin > 0) for scores s(i, j), both directions.
fn hinge_pattern(b: usize, s: impl Fn(usize, usize) -> f64) -> Vec<(bool, bool)> {
    (0..b * b)
        .map(|ij| (ij / b, ij % b))
        .filter(|(i, j)| i != j)
        .map(|(i, j)| (1.0 + s(i, j) - s(i, i) > 0.0, 1.0 + s(j, i) - s(i, i) > 0.0))
        .collect()
}

#[test]
fn sje_loss_cosine_fd() {
    let (b, e, scale) = (4, 6, 5.0f32);
    let (img, txt) = (random(b * e, 910), random(b * e, 911));
    let cos = |img: &[f32], txt: &[f32], i: usize, j: usize| {
        let (x, y) = (&img[i * e..(i + 1) * e], &txt[j * e..(j + 1) * e]);
        let d = |a: &[f32], c: &[f32]| a.iter().zip(c).map(|(&p, &q)| f64::from(p) * f64::from(q)).sum::<f64>();
        d(x, y) / (d(x, x) * d(y, y)).sqrt()
    };
    // Which hinges are active at given embeddings (finite differences must not cross a kink).
    let pattern = |img: &[f32], txt: &[f32]| hinge_pattern(b, |i, j| f64::from(scale) * cos(img, txt, i, j));
    let base = pattern(&img, &txt);
    let active = base.iter().filter(|(a, b)| *a || *b).count();
    assert!(active > 0 && active < b * (b - 1), "a mix of active and inactive hinges");
    let (mut di, mut dt) = (vec![f32::NAN; b * e], vec![f32::NAN; b * e]);
    let mut scratch = vec![f32::NAN; 4 * b * e];
    let l = sje_loss_cosine(&img, &txt, (b, e), scale, &mut scratch, &mut di, &mut dt);
    // The loss is sje_loss of the rows scaled to length √scale.
    let unit = |x: &[f32]| -> Vec<f32> {
        x.chunks(e)
            .flat_map(|r| {
                let n = r.iter().map(|v| v * v).sum::<f32>().sqrt();
                r.iter().map(move |v| v * scale.sqrt() / n).collect::<Vec<_>>()
            })
            .collect()
    };
    let plain = sje_loss(&unit(&img), &unit(&txt), b, e, &mut vec![0.0; b * e], &mut vec![0.0; b * e]);
    assert!((l - plain).abs() < 1e-5, "cosine loss {l} vs sje_loss of unit rows {plain}");
    let loss = |img: &[f32], txt: &[f32]| {
        (pattern(img, txt) == base).then(|| {
            let mut s = vec![0.0; 4 * b * e];
            sje_loss_cosine(img, txt, (b, e), scale, &mut s, &mut vec![0.0; b * e], &mut vec![0.0; b * e]) as f64
        })
    };
    check("sje cosine d_img", &img, &di, 912, |v| loss(v, &txt));
    check("sje cosine d_txt", &txt, &dt, 913, |v| loss(&img, v));
}

#[test]
fn sje_loss_fd() {
    let (b, e) = (4, 6);
    // Scaled so that scores spread over ±3 and some margins are negative.
    let scaled = |s: u64| random(b * e, s).iter().map(|v| 2.0 * v).collect::<Vec<f32>>();
    let (img, txt) = (scaled(900), scaled(901));
    // The hinge pattern (which margins are positive) at given embeddings.
    let pattern = |img: &[f32], txt: &[f32]| {
        hinge_pattern(b, |i, j| (0..e).map(|k| img[i * e + k] as f64 * txt[j * e + k] as f64).sum::<f64>())
    };
    let base = pattern(&img, &txt);
    let active = base.iter().filter(|(a, b)| *a || *b).count();
    assert!(active > 0 && active < b * (b - 1), "a mix of active and inactive hinges");
    let (mut di, mut dt) = (vec![f32::NAN; b * e], vec![f32::NAN; b * e]);
    sje_loss(&img, &txt, b, e, &mut di, &mut dt);
    let loss = |img: &[f32], txt: &[f32]| {
        (pattern(img, txt) == base)
            .then(|| sje_loss(img, txt, b, e, &mut vec![0.0; b * e], &mut vec![0.0; b * e]) as f64)
    };
    check("sje d_img", &img, &di, 902, |v| loss(v, &txt));
    check("sje d_txt", &txt, &dt, 903, |v| loss(&img, v));
}

/// Mean |a − b| over all elements (the noises' distance of the mode-seeking term).
fn ms_mean_abs(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(p, q)| f64::from((p - q).abs())).sum::<f64>() / a.len() as f64
}

/// Cell averages of a − b over [2, 4, 4] images with cells of k, each less its channel's mean
/// difference when `centred`.
fn ms_cell_means(a: &[f32], b: &[f32], k: usize, centred: bool) -> Vec<f64> {
    let mut out = Vec::new();
    for c in 0..2 {
        let channel = (c * 16..(c + 1) * 16).map(|e| f64::from(a[e] - b[e])).sum::<f64>() / 16.0;
        for i in (0..4).step_by(k) {
            for j in (0..4).step_by(k) {
                let cell = (0..k).flat_map(|di| (0..k).map(move |dj| c * 16 + (i + di) * 4 + j + dj));
                let mean = cell.map(|e| f64::from(a[e] - b[e])).sum::<f64>() / (k * k) as f64;
                out.push(if centred { mean - channel } else { mean });
            }
        }
    }
    out
}

/// The mode-seeking loss of three random pairs of [2, 4, 4] images, per element and over 2×2
/// cells, against a direct computation (mean over pairs of the noises' distance over the mean
/// |cell difference|), with finite-difference gradients; returns the inputs for further checks.
fn mode_seeking_fd_case(centred: bool, seed: u64) -> [Vec<f32>; 4] {
    let (pairs, n, nz) = (3, 32, 4);
    let (x1, x2) = (random(pairs * n, seed), random(pairs * n, seed + 1));
    let (z1, z2) = (random(pairs * nz, seed + 2), random(pairs * nz, seed + 3));
    for k in [1, 2] {
        let cells = ModeSeekingCells { height: 4, width: 4, cell: k, target: 0.0, centred };
        let (mut d1, mut d2) = (vec![f32::NAN; pairs * n], vec![f32::NAN; pairs * n]);
        let l = mode_seeking_loss((&x1, &x2), (&z1, &z2), pairs, cells, (&mut d1, &mut d2));
        let direct: f64 = (0..pairs)
            .map(|p| {
                let m = ms_cell_means(&x1[p * n..][..n], &x2[p * n..][..n], k, centred);
                ms_mean_abs(&z1[p * nz..][..nz], &z2[p * nz..][..nz])
                    / (m.iter().map(|v| v.abs()).sum::<f64>() / m.len() as f64)
            })
            .sum::<f64>()
            / pairs as f64;
        let case = format!("cells {k}, centred {centred}");
        assert!((f64::from(l) - direct).abs() < 1e-4 * direct, "{case}: loss {l} vs {direct}");
        assert!(d1.iter().zip(&d2).all(|(a, b)| a.is_finite() && *a == -*b), "{case}: ∂x2 = −∂x1, all written");
        // |cell difference| has a kink where it is 0: skip perturbations that cross it.
        let sign = |a: &[f32], b: &[f32]| {
            (0..pairs)
                .flat_map(|p| ms_cell_means(&a[p * n..][..n], &b[p * n..][..n], k, centred))
                .map(|v| v > 0.0)
                .collect::<Vec<_>>()
        };
        let base = sign(&x1, &x2);
        let loss_at = |x: &[f32]| {
            let (mut s1, mut s2) = (vec![0.0; pairs * n], vec![0.0; pairs * n]);
            mode_seeking_loss((x, &x2), (&z1, &z2), pairs, cells, (&mut s1, &mut s2))
        };
        check(&format!("mode_seeking_loss x1, {case}"), &x1, &d1, seed + 4, |x| {
            (sign(x, &x2) == base).then(|| loss_at(x) as f64)
        });
        // Pushing the images apart lowers the loss: the gradient points towards x1 = x2.
        let apart: Vec<f32> = x1.iter().zip(&x2).map(|(a, b)| a + 0.5 * (a - b)).collect();
        assert!(loss_at(&apart) < l, "{case}: images further apart score {}, not below {l}", loss_at(&apart));
    }
    [x1, x2, z1, z2]
}

#[test]
fn mode_seeking_centred_fd() {
    let [x1, _, z1, z2] = mode_seeking_fd_case(true, 940);
    // A tint of the whole image (another constant per channel) is no distance at all once
    // centred, and the whole distance uncentred; a moved blob is a distance either way.
    let (n, nz) = (32, 4);
    let tinted: Vec<f32> = x1[..n].iter().enumerate().map(|(e, v)| v + if e < 16 { 0.4 } else { -0.3 }).collect();
    let blob = |at: usize| (0..n).map(|e| if e % 16 == at { 1.0 } else { 0.0 }).collect::<Vec<f32>>();
    let (z1, z2) = (&z1[..nz], &z2[..nz]);
    let score = |a: &[f32], b: &[f32], centred: bool| {
        let cells = ModeSeekingCells { height: 4, width: 4, cell: 2, target: 0.0, centred };
        mode_seeking_loss((a, b), (z1, z2), 1, cells, (&mut vec![0.0; n], &mut vec![0.0; n]))
    };
    assert!(score(&x1[..n], &tinted, true) > 1e3 && score(&x1[..n], &tinted, false) < 20.0);
    assert!(score(&blob(0), &blob(15), true) < 20.0, "a moved blob counts centred");
}

#[test]
fn mode_seeking_loss_fd() {
    let [x1, x2, z1, z2] = mode_seeking_fd_case(false, 930);
    let (pairs, n, nz) = (3, 32, 4);
    // Stripes that cancel within each 2×2 cell leave the cell distance at 0 and the pixel
    // distance large.
    let stripes: Vec<f32> = (0..n).map(|e| if e % 2 == 0 { 1.0 } else { -1.0 }).collect();
    let zeros = vec![0.0; n];
    let (mut d1, mut d2) = (vec![0.0; n], vec![0.0; n]);
    let pixel = ModeSeekingCells { height: 4, width: 4, cell: 1, target: 0.0, centred: false };
    let cell = ModeSeekingCells { cell: 2, ..pixel };
    let per_pixel = mode_seeking_loss((&stripes, &zeros), (&z1[..nz], &z2[..nz]), 1, pixel, (&mut d1, &mut d2));
    let per_cell = mode_seeking_loss((&stripes, &zeros), (&z1[..nz], &z2[..nz]), 1, cell, (&mut d1, &mut d2));
    assert!(per_pixel < 10.0 && per_cell > 1e3, "stripes: per pixel {per_pixel}, per cell {per_cell}");
    // A target: pairs whose ratio r reaches it score 0 with no gradient; the others score
    // 1/r − 1/target with the untargeted gradient.
    let ratios: Vec<f64> = (0..pairs)
        .map(|p| {
            let m = ms_cell_means(&x1[p * n..][..n], &x2[p * n..][..n], 1, false);
            (m.iter().map(|v| v.abs()).sum::<f64>() / m.len() as f64)
                / ms_mean_abs(&z1[p * nz..][..nz], &z2[p * nz..][..nz])
        })
        .collect();
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    let target = ((sorted[0] + sorted[1]) / 2.0) as f32; // the smallest ratio alone falls short
    let (mut u1, mut u2) = (vec![0.0; pairs * n], vec![0.0; pairs * n]);
    mode_seeking_loss((&x1, &x2), (&z1, &z2), pairs, pixel, (&mut u1, &mut u2));
    let aimed = ModeSeekingCells { target, ..pixel };
    let (mut t1, mut t2) = (vec![f32::NAN; pairs * n], vec![f32::NAN; pairs * n]);
    let l = mode_seeking_loss((&x1, &x2), (&z1, &z2), pairs, aimed, (&mut t1, &mut t2));
    let want = (1.0 / sorted[0] - 1.0 / f64::from(target)) / pairs as f64;
    assert!((f64::from(l) - want).abs() < 1e-4 * want, "targeted loss {l} vs {want}");
    for (p, &r) in ratios.iter().enumerate() {
        let (got, full) = (&t1[p * n..][..n], &u1[p * n..][..n]);
        if r < f64::from(target) {
            assert_eq!(got, full, "pair {p} short of the target keeps its gradient");
        } else {
            assert!(got.iter().all(|&g| g == 0.0), "pair {p} past the target: no gradient");
        }
    }
}

#[test]
fn shape_mask_fd() {
    // Random images (two, 3×10×12, ring 2, a soft squash so the sampled points see curvature):
    // L = Σ_p w_p m_p through each pixel's distance and through the border colour.
    let mask = ShapeMask { channels: 3, height: 10, width: 12, ring: 2, threshold: 0.6, softness: 0.3 };
    let (n, hw) = (2 * 3 * 120, 120);
    let x = random(n, 950);
    let w = random(2 * hw, 951);
    let mut m = vec![f32::NAN; 2 * hw];
    mask.forward(&x, &mut m);
    assert!(m.iter().all(|v| (0.0..=1.0).contains(v)), "every mask value written, in [0, 1]");
    let mut dx = vec![f32::NAN; n];
    mask.backward(&x, &w, &mut dx);
    assert!(dx.iter().all(|v| v.is_finite()), "every gradient element written");
    check("shape_mask", &x, &dx, 952, |x| {
        let mut m = vec![0.0; 2 * hw];
        mask.forward(x, &mut m);
        Some(m.iter().zip(&w).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum())
    });
}

/// A `shapes`-like 3×16×16 image: background `bg` shaded by `shade` across the columns, with a
/// 4×4 square of `fg` whose top-left corner is (at, at).
fn square_on(bg: [f32; 3], fg: [f32; 3], at: usize, shade: f32) -> Vec<f32> {
    let px = |c: usize, i: usize, j: usize| {
        let inside = (at..at + 4).contains(&i) && (at..at + 4).contains(&j);
        if inside {
            fg[c]
        } else {
            bg[c] + shade * (j as f32 / 15.0 - 0.5)
        }
    };
    (0..3).flat_map(|c| (0..16).flat_map(move |i| (0..16).map(move |j| px(c, i, j)))).collect()
}

#[test]
fn shape_mask_sees_the_shape_and_ignores_tints_and_shading() {
    let mask = ShapeMask::shapes(3, 16, 16);
    // Orange on yellow, the closest palette pair, in [−1, 1].
    let (yellow, orange) = ([0.92, 0.76, -0.73], [0.92, 0.10, -0.84]);
    let masks = |x: &[f32]| {
        let mut m = vec![0.0; 256];
        mask.forward(x, &mut m);
        m
    };
    let m = masks(&square_on(yellow, orange, 6, 0.0));
    for (p, &v) in m.iter().enumerate() {
        let inside = (6..10).contains(&(p / 16)) && (6..10).contains(&(p % 16));
        assert!(if inside { v > 0.95 } else { v < 0.05 }, "pixel {p}: {v}");
    }
    // A whole-image tint moves the border colour too; a shading of 0.15 stays under the
    // threshold: the masks do not move. A moved square does.
    let tinted = square_on(yellow.map(|v| v - 0.3), orange.map(|v| v - 0.3), 6, 0.0);
    let shaded = square_on(yellow, orange, 6, 0.15);
    let moved = square_on(yellow, orange, 3, 0.0);
    let gap = |a: &[f32]| a.iter().zip(&m).map(|(x, y)| (x - y).abs()).sum::<f32>() / 256.0;
    assert!(gap(&masks(&tinted)) < 1e-4, "tint: {}", gap(&masks(&tinted)));
    assert!(gap(&masks(&shaded)) < 0.02, "shading: {}", gap(&masks(&shaded)));
    assert!(gap(&masks(&moved)) > 0.1, "moved: {}", gap(&masks(&moved)));
}
