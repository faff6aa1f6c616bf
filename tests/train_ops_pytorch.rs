//! Optimizers, losses and training-mode batch norm against numbers computed with PyTorch 2.x
//! (the generating snippet sits beside each set of expected values; run it with the reference
//! venv's python). Tolerance 2e-6 relative to the largest expected magnitude: both sides compute
//! in f32 with the same formulas, so they differ only by a few ulps of operation-order rounding
//! (the expected values are printed to 9 significant digits, below f32's resolution).
//! Measured: ≤ 1e-7 for Adam, RMSprop, BCE and SJE, 1.9e-7 for batch norm.
// The expected values are pasted as PyTorch printed them (9 digits, more than f32 holds).
#![allow(clippy::excessive_precision)]

mod common;

use common::assert_close;
use text2img::ops::batch_norm::{batch_norm_train, batch_norm_train_ref, update_running, BN_MOMENTUM};
use text2img::ops::loss::{bce_with_logits, sje_loss};
use text2img::ops::optim::{linear_decay, lr_exponential, lr_halving, Adam, RmsProp};

const TOL: f64 = 2e-6;

const P0: [f32; 5] = [0.5, -1.25, 2.0, 0.0, 1e-3];
const GRADS: [[f32; 5]; 3] = [[0.1, -0.2, 3.0, 0.0, -1e-4], [-0.3, 0.25, 2.5, 1e-6, 5.0], [0.05, 0.0, -1.0, 2.0, 0.5]];

// import torch
// f32 = lambda v: torch.tensor(v, dtype=torch.float32).item()  # the hyperparameter as Rust holds it
// p = torch.tensor([0.5, -1.25, 2.0, 0.0, 1e-3], requires_grad=True)
// grads = [[0.1, -0.2, 3.0, 0.0, -1e-4], [-0.3, 0.25, 2.5, 1e-6, 5.0], [0.05, 0.0, -1.0, 2.0, 0.5]]
// opt = torch.optim.Adam([p], lr=f32(2e-4), betas=(0.5, f32(0.999)), eps=f32(1e-8))
// for g in grads: p.grad = torch.tensor(g); opt.step()
// print(p, opt.state[p]["exp_avg"], opt.state[p]["exp_avg_sq"])
// Hyperparameters go to PyTorch rounded to f32 (see src/ops/optim.rs: with the double 0.999,
// PyTorch's v would be 1.3e-5 relative larger).
#[test]
fn adam_matches_pytorch() {
    let adam = Adam { lr: 2e-4, beta1: 0.5, beta2: 0.999, eps: 1e-8 };
    let (mut p, mut m, mut v) = (P0.to_vec(), vec![0.0; 5], vec![0.0; 5]);
    for (t, g) in GRADS.iter().enumerate() {
        adam.step(t as u64 + 1, &mut p, g, &mut m, &mut v);
    }
    assert_close("adam param", &p, &[0.49999541, -1.24993467, 1.99955773, -0.000383736216, 0.000893289107], TOL);
    assert_close("adam m", &m, &[-0.0374999978, 0.0375000015, 0.5, 1.00000024, 1.49998748], TOL);
    assert_close("adam v", &v, &[0.000102388702, 0.000102356222, 0.0162255503, 0.0039999485, 0.0252246764], TOL);
}

// p = torch.tensor([0.5, -1.25, 2.0, 0.0, 1e-3], requires_grad=True)
// opt = torch.optim.RMSprop([p], lr=f32(1e-3), alpha=f32(0.9), eps=f32(1e-8))
// for g in grads: p.grad = torch.tensor(g); opt.step()
// print(p, opt.state[p]["square_avg"])
#[test]
fn rmsprop_matches_pytorch() {
    let rms = RmsProp { lr: 1e-3, alpha: 0.9, eps: 1e-8 };
    let (mut p, mut sq) = (P0.to_vec(), vec![0.0; 5]);
    for g in &GRADS {
        rms.step(&mut p, g, &mut sq);
    }
    assert_close("rmsprop param", &p, &[0.499330401, -1.24935675, 1.99559844, -0.00622762041, 0.00066750322], TOL);
    assert_close("rmsprop sq", &sq, &[0.00916000269, 0.00886500254, 1.39150023, 0.400000095, 2.27500057], TOL);
}

// x = torch.tensor([-30.0, -2.5, -0.1, 0.0, 0.7, 3.0, 25.0], requires_grad=True)
// y = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.5, 1.0, 0.0])
// w = torch.tensor([1.0, 0.5, 0.5, 1.0, 2.0, 0.25, 1.0])
// for ww in [None, w]:
//     x.grad = None
//     l = torch.nn.functional.binary_cross_entropy_with_logits(x, y, weight=ww); l.backward()
//     print(l, x.grad)
#[test]
fn bce_with_logits_matches_pytorch() {
    let x = [-30.0, -2.5, -0.1, 0.0, 0.7, 3.0, 25.0];
    let y = [0.0, 1.0, 0.0, 1.0, 0.5, 1.0, 0.0];
    let w = [1.0, 0.5, 0.5, 1.0, 2.0, 0.25, 1.0];
    let mut g = vec![f32::NAN; 7];
    let l = bce_with_logits(&x, &y, None, &mut g);
    assert_close("bce loss", &[l], &[4.24545813], TOL);
    let want = [1.33680341e-14, -0.132020265, 0.0678601116, -0.0714285746, 0.0240268204, -0.00677512353, 0.142857149];
    assert_close("bce grad", &g, &want, TOL);
    let l = bce_with_logits(&x, &y, Some(&w), &mut g);
    assert_close("weighted bce loss", &[l], &[4.1176157], TOL);
    let want = [1.33680341e-14, -0.0660101324, 0.0339300558, -0.0714285746, 0.0480536409, -0.00169378088, 0.142857149];
    assert_close("weighted bce grad", &g, &want, TOL);
}

// img = torch.tensor([[0.5, -1.0, 0.25], [1.0, 0.5, -0.5], [-0.75, 0.25, 1.0]], requires_grad=True)
// txt = torch.tensor([[0.25, -0.5, 1.0], [0.5, 1.0, 0.0], [-1.0, -0.25, 0.625]], requires_grad=True)
// s = img @ txt.T; B = s.shape[0]; d = s.diag(); off = 1 - torch.eye(B)
// l = ((torch.clamp(1 + s - d[:, None], min=0) + torch.clamp(1 + s.T - d[:, None], min=0)) * off).sum() / B**2
// l.backward(); print(l, img.grad, txt.grad)
// (No margin is within 0.03 of a kink.)
#[test]
fn sje_loss_matches_pytorch() {
    let img = [0.5, -1.0, 0.25, 1.0, 0.5, -0.5, -0.75, 0.25, 1.0];
    let txt = [0.25, -0.5, 1.0, 0.5, 1.0, 0.0, -1.0, -0.25, 0.625];
    let (mut di, mut dt) = (vec![f32::NAN; 9], vec![f32::NAN; 9]);
    let l = sje_loss(&img, &txt, 3, 3, &mut di, &mut dt);
    assert_close("sje loss", &[l], &[0.135416672], TOL);
    let want_di = [-0.166666672, 0.0833333358, -0.152777776, 0.0, 0.0, 0.0, 0.166666672, -0.0833333358, 0.152777776];
    let want_dt = [-0.277777791, 0.277777791, 0.166666672, 0.0, 0.0, 0.0, 0.138888896, -0.138888896, -0.0833333358];
    assert_close("sje d_img", &di, &want_di, TOL);
    assert_close("sje d_txt", &dt, &want_dt, TOL);
}

// x = torch.tensor([0.5, -1.0, 2.0, 0.25, 0.0, 1.5, -0.5, 1.0, 3.0, -2.0, 0.75, 0.125]).reshape(2, 2, 3)
// bn = torch.nn.BatchNorm1d(2); bn.weight.data = torch.tensor([1.5, 0.5]); bn.bias.data = torch.tensor([0.1, -0.2])
// bn.running_mean.data = torch.tensor([0.2, -0.1]); bn.running_var.data = torch.tensor([1.2, 0.8])
// out = bn(x); print(out, bn.running_mean, bn.running_var)
#[test]
fn batch_norm_train_matches_pytorch() {
    let x = [0.5, -1.0, 2.0, 0.25, 0.0, 1.5, -0.5, 1.0, 3.0, -2.0, 0.75, 0.125];
    let (gamma, beta) = ([1.5, 0.5], [0.1, -0.2]);
    let want_out = [
        -0.263802469,
        -1.90091372,
        1.3733089,
        -0.131635189,
        -0.248832002,
        0.454348862,
        -1.35521007,
        0.2819013,
        2.46471643,
        -1.18640649,
        0.102758437,
        -0.190233588,
    ];
    for fast in [false, true] {
        let (mut out, mut mean, mut invstd) = (vec![f32::NAN; 12], vec![f32::NAN; 2], vec![f32::NAN; 2]);
        if fast {
            batch_norm_train(&x, 2, &gamma, &beta, &mut out, &mut mean, &mut invstd);
        } else {
            batch_norm_train_ref(&x, 2, &gamma, &beta, &mut out, &mut mean, &mut invstd);
        }
        assert_close(&format!("bn out fast={fast}"), &out, &want_out, TOL);
        let (mut rm, mut rv) = (vec![0.2, -0.1], vec![1.2, 0.8]);
        update_running(&mut rm, &mut rv, &mean, &invstd, 2 * 3, BN_MOMENTUM);
        assert_close("bn running_mean", &rm, &[0.263333321, -0.0795833319], TOL);
        assert_close("bn running_var", &rv, &[1.30666673, 0.856510401], TOL);
    }
}

#[test]
fn learning_rate_schedules() {
    // Halving every 100 epochs (GAN-INT-CLS's lr_decay_step style): epochs 0..99 at base.
    assert_eq!(lr_halving(2e-4, 0, 100), 2e-4);
    assert_eq!(lr_halving(2e-4, 99, 100), 2e-4);
    assert_eq!(lr_halving(2e-4, 100, 100), 1e-4);
    assert_eq!(lr_halving(2e-4, 250, 100), 5e-5);
    // Reed's encoder: ×0.98 after every epoch from the first; epoch 0 trains at the base rate.
    assert_eq!(lr_exponential(4e-4, 0, 0.98), 4e-4);
    assert!((lr_exponential(4e-4, 1, 0.98) - 4e-4 * 0.98).abs() < 1e-10);
    assert!((lr_exponential(4e-4, 10, 0.98) as f64 - 4e-4 * 0.98f64.powi(10)).abs() < 1e-10);
    // Linear decay over [4000, 6000): full rate before, half way at 5000, zero from 6000.
    assert_eq!(linear_decay(0, 4000, 6000), 1.0);
    assert_eq!(linear_decay(3999, 4000, 6000), 1.0);
    assert_eq!(linear_decay(4000, 4000, 6000), 1.0);
    assert_eq!(linear_decay(5000, 4000, 6000), 0.5);
    assert_eq!(linear_decay(5500, 4000, 6000), 0.25);
    assert_eq!(linear_decay(6000, 4000, 6000), 0.0);
    assert_eq!(linear_decay(9000, 4000, 6000), 0.0);
}
