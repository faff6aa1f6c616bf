//! Every fast backward pass (and the GRU's fast training forward) against its plain reference
//! on fresh random inputs, at the shapes of G's, D's and the encoder's layers (small channel
//! counts), batch 1 and 3, plus a batch large enough to be cut into chunks. Input gradients are poisoned with NaN first (an element
//! the fast path forgets to write fails the test); parameter-gradient buffers start at a known
//! non-zero value in both runs, so a path that overwrites instead of accumulating fails too.
//!
//! Tolerance 1e-5 relative to the largest reference magnitude, as in ops_cpu_vs_reference.rs:
//! the references accumulate in f64, the fast paths in f32 over K terms of size ≤ 1 (K up to
//! B·Ho·Wo ≈ 3·10³ for weight gradients), and f32's ε·√K ≈ 1e-5 bounds a blocked sum's error.

mod common;

use common::{assert_close, poisoned, random, rel_error};
use text2img::ops::batch_norm::{batch_norm_backward, batch_norm_backward_ref, batch_norm_train, batch_norm_train_ref};
use text2img::ops::conv1d::{conv1d_backward, conv1d_backward_ref, conv1d_backward_scratch_len};
use text2img::ops::conv2d::{conv2d_backward, conv2d_backward_ref, Conv2dGeom};
use text2img::ops::conv_transpose2d::{conv_transpose2d_backward, conv_transpose2d_backward_ref, ConvTranspose2dGeom};
use text2img::ops::gemm::PackedA;
use text2img::ops::linear::{linear_backward, linear_backward_ref};
use text2img::ops::rnn::{
    backward_scratch_len, gru_backward, gru_backward_ref, gru_train_forward, gru_train_forward_ref, pack_w_hh,
    rnn_relu, rnn_relu_backward, rnn_relu_backward_ref, rnn_relu_train_forward_ref, saved_len, scratch_len, RnnDims,
    RnnPacked, RnnParams,
};

const TOL: f64 = 1e-5;
/// Starting value of every parameter-gradient buffer.
const PREFILL: f32 = 0.5;

/// `assert_close` at `TOL`, printing the error (`--nocapture` shows the measured margins).
#[track_caller]
fn close(what: &str, got: &[f32], want: &[f32]) {
    if got.iter().all(|v| v.is_finite()) {
        println!("{what}: rel error {:.2e}", rel_error(got, want));
    }
    assert_close(what, got, want, TOL);
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool")
}

#[test]
fn linear_backward_fast_vs_reference() {
    // G's and D's text projections (E → nt), the encoder's proj (H → E), an odd shape.
    for &(batch, in_f, out_f) in &[(1, 256, 128), (3, 256, 128), (3, 128, 256), (5, 33, 17)] {
        let (x, w, dy) = (random(batch * in_f, 1), random(out_f * in_f, 2), random(batch * out_f, 3));
        let (mut dx_ref, mut dw_ref, mut db_ref) =
            (vec![0.0; batch * in_f], vec![PREFILL; w.len()], vec![PREFILL; out_f]);
        linear_backward_ref(&x, &w, &dy, batch, in_f, out_f, Some(&mut dx_ref), &mut dw_ref, Some(&mut db_ref));
        let (mut dx, mut dw, mut db) = (poisoned(batch * in_f), vec![PREFILL; w.len()], vec![PREFILL; out_f]);
        pool(2).install(|| linear_backward(&x, &w, &dy, batch, in_f, out_f, Some(&mut dx), &mut dw, Some(&mut db), 2));
        let what = format!("linear b{batch} {in_f}->{out_f}");
        close(&format!("{what} dx"), &dx, &dx_ref);
        close(&format!("{what} dw"), &dw, &dw_ref);
        close(&format!("{what} db"), &db, &db_ref);
        // Without dx (the first layer of a network).
        let mut dw2 = vec![PREFILL; w.len()];
        pool(2).install(|| linear_backward(&x, &w, &dy, batch, in_f, out_f, None, &mut dw2, None, 2));
        close(&format!("{what} dw without dx"), &dw2, &dw_ref);
    }
}

#[test]
fn conv2d_backward_fast_vs_reference() {
    let d = 8; // ndf, g = ngf
    let cases = [
        // D: conv0, conv1, conv3, the residual block at 4×4, conv4 (1×1 on the concat), conv5.
        Conv2dGeom { cin: 3, h: 64, w: 64, cout: d, kh: 4, kw: 4, stride: 2, pad: 1 },
        Conv2dGeom { cin: d, h: 32, w: 32, cout: 2 * d, kh: 4, kw: 4, stride: 2, pad: 1 },
        Conv2dGeom { cin: 4 * d, h: 8, w: 8, cout: 8 * d, kh: 4, kw: 4, stride: 2, pad: 1 },
        Conv2dGeom { cin: 8 * d, h: 4, w: 4, cout: 2 * d, kh: 1, kw: 1, stride: 1, pad: 0 },
        Conv2dGeom { cin: 2 * d, h: 4, w: 4, cout: 2 * d, kh: 3, kw: 3, stride: 1, pad: 1 },
        Conv2dGeom { cin: 8 * d + 16, h: 4, w: 4, cout: 8 * d, kh: 1, kw: 1, stride: 1, pad: 0 },
        Conv2dGeom { cin: 8 * d, h: 4, w: 4, cout: 1, kh: 4, kw: 4, stride: 1, pad: 0 },
        // G: res1's 3×3 at 8×8; an odd shape.
        Conv2dGeom { cin: d, h: 8, w: 8, cout: 4 * d, kh: 3, kw: 3, stride: 1, pad: 1 },
        // 4×4 stride 2 halving a 2×6 image (a one-row output), and one of odd size (the
        // generic path: the output is not half the input).
        Conv2dGeom { cin: 2, h: 2, w: 6, cout: 3, kh: 4, kw: 4, stride: 2, pad: 1 },
        Conv2dGeom { cin: 3, h: 7, w: 5, cout: 4, kh: 4, kw: 4, stride: 2, pad: 1 },
        Conv2dGeom { cin: 5, h: 7, w: 9, cout: 6, kh: 3, kw: 2, stride: 2, pad: 1 },
    ];
    for (i, g) in cases.into_iter().enumerate() {
        for batch in [1, 3] {
            check_conv2d(&format!("conv2d case {i} b{batch}"), g, batch, 10 + i as u64);
        }
    }
    // Large enough that the batch is cut into chunks.
    let g = Conv2dGeom { cin: 16, h: 64, w: 64, cout: 16, kh: 3, kw: 3, stride: 1, pad: 1 };
    assert!(g.chunk(8) < 8, "test must exercise chunking");
    check_conv2d("conv2d chunked", g, 8, 40);
}

fn check_conv2d(what: &str, g: Conv2dGeom, batch: usize, seed: u64) {
    let (x, w, dy) =
        (random(batch * g.in_len(), seed), random(g.cout * g.kdim(), seed + 1), random(batch * g.out_len(), seed + 2));
    let (mut dx_ref, mut dw_ref) = (vec![0.0; x.len()], vec![PREFILL; w.len()]);
    conv2d_backward_ref(&x, &w, &dy, batch, &g, Some(&mut dx_ref), &mut dw_ref);
    let (mut dx, mut dw) = (poisoned(x.len()), vec![PREFILL; w.len()]);
    let mut scratch = poisoned(g.backward_scratch_len(batch));
    pool(2).install(|| conv2d_backward(&x, &w, &dy, batch, &g, Some(&mut dx), &mut dw, &mut scratch, 2));
    close(&format!("{what} dx"), &dx, &dx_ref);
    close(&format!("{what} dw"), &dw, &dw_ref);
    let mut dw2 = vec![PREFILL; w.len()];
    pool(2).install(|| conv2d_backward(&x, &w, &dy, batch, &g, None, &mut dw2, &mut scratch, 2));
    close(&format!("{what} dw without dx"), &dw2, &dw_ref);
}

#[test]
fn conv_transpose2d_backward_fast_vs_reference() {
    let g8 = 8; // ngf
    let cases = [
        // G: deconv0 (concat [z, text] 1×1 → 4×4), deconv1, deconv3, deconv4 (→ 64×64 RGB), an odd one.
        ConvTranspose2dGeom { cin: 36, h: 1, w: 1, cout: 8 * g8, k: 4, stride: 1, pad: 0 },
        ConvTranspose2dGeom { cin: 8 * g8, h: 4, w: 4, cout: 4 * g8, k: 4, stride: 2, pad: 1 },
        ConvTranspose2dGeom { cin: 2 * g8, h: 16, w: 16, cout: g8, k: 4, stride: 2, pad: 1 },
        ConvTranspose2dGeom { cin: g8, h: 32, w: 32, cout: 3, k: 4, stride: 2, pad: 1 },
        ConvTranspose2dGeom { cin: 3, h: 5, w: 3, cout: 4, k: 3, stride: 2, pad: 0 },
    ];
    for (i, g) in cases.into_iter().enumerate() {
        for batch in [1, 3] {
            check_conv_transpose2d(&format!("conv_transpose2d case {i} b{batch}"), g, batch, 50 + i as u64);
        }
    }
    let g = ConvTranspose2dGeom { cin: 8, h: 32, w: 32, cout: 8, k: 4, stride: 2, pad: 1 };
    assert!(g.chunk(32) < 32, "test must exercise chunking");
    check_conv_transpose2d("conv_transpose2d chunked", g, 32, 70);
}

fn check_conv_transpose2d(what: &str, g: ConvTranspose2dGeom, batch: usize, seed: u64) {
    let (x, w, dy) =
        (random(batch * g.in_len(), seed), random(g.cin * g.rows(), seed + 1), random(batch * g.out_len(), seed + 2));
    let (mut dx_ref, mut dw_ref) = (vec![0.0; x.len()], vec![PREFILL; w.len()]);
    conv_transpose2d_backward_ref(&x, &w, &dy, batch, &g, Some(&mut dx_ref), &mut dw_ref);
    let (mut dx, mut dw) = (poisoned(x.len()), vec![PREFILL; w.len()]);
    let mut scratch = poisoned(g.backward_scratch_len(batch));
    pool(2).install(|| conv_transpose2d_backward(&x, &w, &dy, batch, &g, Some(&mut dx), &mut dw, &mut scratch, 2));
    close(&format!("{what} dx"), &dx, &dx_ref);
    close(&format!("{what} dw"), &dw, &dw_ref);
}

#[test]
fn conv1d_backward_fast_vs_reference() {
    // The encoder's conv1 on the one-hot text (70 × 201) and conv2 after the first pool.
    for &(cin, t, cout, k) in &[(70, 201, 32, 4), (32, 66, 48, 4), (5, 4, 3, 4)] {
        for batch in [1, 3] {
            let to = t + 1 - k;
            let (x, w, dy) = (random(batch * cin * t, 80), random(cout * cin * k, 81), random(batch * cout * to, 82));
            let (mut dx_ref, mut dw_ref, mut db_ref) =
                (vec![0.0; x.len()], vec![PREFILL; w.len()], vec![PREFILL; cout]);
            conv1d_backward_ref(&x, &w, &dy, batch, cin, t, cout, k, Some(&mut dx_ref), &mut dw_ref, Some(&mut db_ref));
            let (mut dx, mut dw, mut db) = (poisoned(x.len()), vec![PREFILL; w.len()], vec![PREFILL; cout]);
            let mut scratch = poisoned(conv1d_backward_scratch_len(batch, cin, t, cout, k));
            pool(2).install(|| {
                conv1d_backward(
                    &x,
                    &w,
                    &dy,
                    batch,
                    cin,
                    t,
                    cout,
                    k,
                    Some(&mut dx),
                    &mut dw,
                    Some(&mut db),
                    &mut scratch,
                    2,
                )
            });
            let what = format!("conv1d b{batch} {cin}x{t}->{cout}");
            close(&format!("{what} dx"), &dx, &dx_ref);
            close(&format!("{what} dw"), &dw, &dw_ref);
            close(&format!("{what} db"), &db, &db_ref);
        }
    }
}

#[test]
fn batch_norm_train_and_backward_fast_vs_reference() {
    // [B, C, H·W] of G's and D's feature maps, D's text_bn [B, nt], batch 1 with a spatial extent.
    for &(batch, ch, spatial) in &[(3, 16, 64), (3, 64, 16), (3, 128, 1), (1, 8, 256), (2, 3, 4096)] {
        let n = batch * ch * spatial;
        let x: Vec<f32> = random(n, 90).iter().map(|v| 2.0 * v + 0.3).collect();
        let gamma: Vec<f32> = random(ch, 91).iter().map(|v| 1.0 + 0.2 * v).collect();
        let (beta, dy) = (random(ch, 92), random(n, 93));
        let what = format!("batch_norm {batch}x{ch}x{spatial}");
        let (mut y_ref, mut m_ref, mut is_ref) = (vec![0.0; n], vec![0.0; ch], vec![0.0; ch]);
        batch_norm_train_ref(&x, batch, &gamma, &beta, &mut y_ref, &mut m_ref, &mut is_ref);
        let (mut y, mut m, mut is) = (poisoned(n), poisoned(ch), poisoned(ch));
        pool(2).install(|| batch_norm_train(&x, batch, &gamma, &beta, &mut y, &mut m, &mut is));
        close(&format!("{what} out"), &y, &y_ref);
        close(&format!("{what} mean"), &m, &m_ref);
        close(&format!("{what} invstd"), &is, &is_ref);

        let (mut dx_ref, mut dg_ref, mut db_ref) = (vec![0.0; n], vec![PREFILL; ch], vec![PREFILL; ch]);
        batch_norm_backward_ref(&x, &dy, batch, &gamma, &m_ref, &is_ref, &mut dx_ref, &mut dg_ref, &mut db_ref);
        let (mut dx, mut dg, mut db) = (poisoned(n), vec![PREFILL; ch], vec![PREFILL; ch]);
        pool(2).install(|| batch_norm_backward(&x, &dy, batch, &gamma, &m_ref, &is_ref, &mut dx, &mut dg, &mut db));
        close(&format!("{what} dx"), &dx, &dx_ref);
        close(&format!("{what} dgamma"), &dg, &dg_ref);
        close(&format!("{what} dbeta"), &db, &db_ref);
    }
}

#[test]
fn gru_and_rnn_backward_fast_vs_reference() {
    // The encoder's recurrence (CUB: T 18 after the conv stack; flowers: T 8) at small widths.
    for d in [
        RnnDims { batch: 3, cin: 32, t: 18, hidden: 16 },
        RnnDims { batch: 1, cin: 24, t: 8, hidden: 12 },
        RnnDims { batch: 2, cin: 8, t: 1, hidden: 8 },
    ] {
        for is_gru in [true, false] {
            let gates = if is_gru { 3 } else { 1 };
            let h = d.hidden;
            let x = random(d.batch * d.cin * d.t, 120);
            let scaled = |n: usize, s: u64| random(n, s).iter().map(|v| v * 0.4).collect::<Vec<f32>>();
            let (w_ih, b_ih) = (scaled(gates * h * d.cin, 121), scaled(gates * h, 122));
            let (w_hh, b_hh) = (scaled(gates * h * h, 123), scaled(gates * h, 124));
            let p = RnnParams { w_ih: &w_ih, b_ih: &b_ih, w_hh: &w_hh, b_hh: &b_hh };
            let dout = random(d.batch * d.t * h, 125);
            let what = format!("gru={is_gru} {d:?}");

            // Training forward: reference, then the fast path (GRU) against it.
            let (mut out, mut saved) = (vec![0.0; dout.len()], vec![0.0; saved_len(is_gru, d)]);
            let w_ih_p = PackedA::from_row_major(&w_ih, gates * h, d.cin);
            let (w_hh_p, w_n_p) = pack_w_hh(&w_hh, is_gru, h);
            let pp = RnnPacked { w_ih: &w_ih_p, b_ih: &b_ih, w_hh: &w_hh_p, w_hh_n: w_n_p.as_ref(), b_hh: &b_hh };
            let mut scratch = poisoned(scratch_len(is_gru, d));
            let (mut out_f, mut saved_f) = (poisoned(dout.len()), poisoned(saved_len(is_gru, d)));
            if is_gru {
                gru_train_forward_ref(&x, &p, d, &mut out, &mut saved);
                pool(2).install(|| gru_train_forward(&x, &pp, d, &mut out_f, &mut saved_f, &mut scratch, 2));
                close(&format!("{what} saved"), &saved_f, &saved);
            } else {
                rnn_relu_train_forward_ref(&x, &p, d, &mut out, &mut []);
                pool(2).install(|| rnn_relu(&x, &pp, d, &mut scratch, &mut out_f, 2));
            }
            close(&format!("{what} out"), &out_f, &out);

            // Backward from the reference's forward values.
            let mut want: [Vec<f32>; 5] = [
                vec![0.0; x.len()],
                vec![PREFILL; w_ih.len()],
                vec![PREFILL; b_ih.len()],
                vec![PREFILL; w_hh.len()],
                vec![PREFILL; b_hh.len()],
            ];
            let mut got: [Vec<f32>; 5] = [
                poisoned(x.len()),
                vec![PREFILL; w_ih.len()],
                vec![PREFILL; b_ih.len()],
                vec![PREFILL; w_hh.len()],
                vec![PREFILL; b_hh.len()],
            ];
            let mut scratch = poisoned(backward_scratch_len(is_gru, d));
            let [dx, dwi, dbi, dwh, dbh] = &mut want;
            if is_gru {
                gru_backward_ref(&x, &p, d, &out, &saved, &dout, Some(dx), dwi, dbi, dwh, dbh);
            } else {
                rnn_relu_backward_ref(&x, &p, d, &out, &saved, &dout, Some(dx), dwi, dbi, dwh, dbh);
            }
            let [dx, dwi, dbi, dwh, dbh] = &mut got;
            pool(2).install(|| {
                if is_gru {
                    gru_backward(&x, &p, d, &out, &saved, &dout, Some(dx), dwi, dbi, dwh, dbh, &mut scratch, 2);
                } else {
                    rnn_relu_backward(&x, &p, d, &out, &saved, &dout, Some(dx), dwi, dbi, dwh, dbh, &mut scratch, 2);
                }
            });
            for (k, name) in ["dx", "dw_ih", "db_ih", "dw_hh", "db_hh"].iter().enumerate() {
                close(&format!("{what} {name}"), &got[k], &want[k]);
            }
        }
    }
}
