//! Every op's fast CPU path against its plain reference on fresh random inputs, at the shapes
//! the networks use (and a few awkward ones). Outputs are poisoned with NaN first, so an element
//! the fast path forgets to write fails the test.
//!
//! Tolerance 1e-5 relative to the output's largest magnitude: the reference accumulates in f64,
//! the fast path in f32 with K ≤ 4608 terms of size ≤ 1; f32's ε·√K ≈ 1e-5 bounds the expected
//! error of a blocked sum, and we observed ~1e-6.

mod common;

use common::{assert_close, poisoned, random};
use text2img::ops::conv1d::{conv1d, conv1d_ref};
use text2img::ops::conv2d::{conv2d, conv2d_ref, Conv2dGeom};
use text2img::ops::conv_transpose2d::{conv_transpose2d, conv_transpose2d_ref, pack_weight, ConvTranspose2dGeom};
use text2img::ops::conv_winograd::{self, WinogradConv};
use text2img::ops::deconv_winograd::{self, WinogradDeconv};
use text2img::ops::flip::{flip_images, flip_images_backward, flip_images_ref, inverse_flip};
use text2img::ops::gemm::{matmul, matmul_packed, matmul_ref, Mat, Out, PackedA};
use text2img::ops::linear::{linear, linear_ref};
use text2img::ops::rnn::{gru, gru_ref, pack_w_hh, rnn_relu, rnn_relu_ref, scratch_len, RnnDims, RnnPacked, RnnParams};
use text2img::ops::shift::{shift_images, shift_images_ref};
use text2img::ops::tap_conv::{self, TapShape, TapWeights};
use text2img::ops::{Activation, Epilogue};

const TOL: f64 = 1e-5;

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool")
}

#[test]
fn matmul_cpu_vs_reference_strided() {
    // Edge sizes around the tile (6×16/32), the k block (256) and the row block (96); narrow
    // products (n ≤ 16: one fork-join, rows split evenly) with an odd k and a ragged last panel.
    for &(m, k, n) in &[
        (1, 1, 1),
        (7, 13, 5),
        (64, 300, 33),
        (128, 1024, 16),
        (250, 777, 9),
        (61, 2305, 16),
        (97, 257, 65),
        (1, 1536, 3),
        (200, 700, 1),
        (1537, 513, 1),
        (5, 9, 16),
    ] {
        let a = random(m * k, 1);
        let b = random(k * n, 2);
        let mut want = vec![0.0; m * n];
        matmul_ref(Mat::row_major(&a, m, k), Mat::transposed(&b, k, n), &mut want, Out::rows(n));
        let mut got = poisoned(m * n);
        pool(2).install(|| matmul(Mat::row_major(&a, m, k), Mat::transposed(&b, k, n), &mut got, Out::rows(n), 2));
        assert_close(&format!("matmul {m}x{k}x{n}"), &got, &want, TOL);
        // Packed left operand, transposed destination (how linear layers call it).
        let packed = PackedA::from_row_major(&a, m, k);
        assert_eq!(packed.unpack(), a, "pack/unpack round trip");
        let mut want_t = vec![0.0; m * n];
        matmul_ref(Mat::row_major(&a, m, k), Mat::row_major(&b, k, n), &mut want_t, Out::cols(m));
        let mut got_t = poisoned(m * n);
        pool(2).install(|| matmul_packed(&packed, Mat::row_major(&b, k, n), &mut got_t, Out::cols(m), 2));
        assert_close(&format!("matmul_packed {m}x{k}x{n}"), &got_t, &want_t, TOL);
        // f16 panels: the reference multiplies the f16-rounded weights, so the only difference
        // left is summation order (same tolerance).
        let half = PackedA::from_row_major_f16(&a, m, k);
        assert!(half.is_f16() && half.bytes() * 2 == packed.bytes());
        let rounded: Vec<f32> = a.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect();
        assert_eq!(half.unpack(), rounded, "f16 pack/unpack round trip");
        let mut want_h = vec![0.0; m * n];
        matmul_ref(Mat::row_major(&rounded, m, k), Mat::row_major(&b, k, n), &mut want_h, Out::cols(m));
        for threads in [1, 2] {
            let mut got_h = poisoned(m * n);
            pool(threads).install(|| matmul_packed(&half, Mat::row_major(&b, k, n), &mut got_h, Out::cols(m), threads));
            assert_close(&format!("matmul_packed f16 {m}x{k}x{n} ({threads} threads)"), &got_h, &want_h, TOL);
        }
    }
}

fn epilogue_params(c: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    (random(c, seed).iter().map(|x| 1.0 + 0.5 * x).collect(), random(c, seed + 1))
}

#[test]
fn conv2d_cpu_vs_reference() {
    // (geometry, batch): G's residual convs, D's strided convs, D's 1×1 and valid 4×4, odd sizes.
    let cases = [
        (Conv2dGeom { cin: 64, h: 4, w: 4, cout: 16, kh: 1, kw: 1, stride: 1, pad: 0 }, 1),
        (Conv2dGeom { cin: 16, h: 4, w: 4, cout: 16, kh: 3, kw: 3, stride: 1, pad: 1 }, 3),
        (Conv2dGeom { cin: 3, h: 64, w: 64, cout: 8, kh: 4, kw: 4, stride: 2, pad: 1 }, 2),
        (Conv2dGeom { cin: 24, h: 8, w: 8, cout: 32, kh: 4, kw: 4, stride: 2, pad: 1 }, 5),
        (Conv2dGeom { cin: 40, h: 4, w: 4, cout: 1, kh: 4, kw: 4, stride: 1, pad: 0 }, 4),
        (Conv2dGeom { cin: 5, h: 7, w: 9, cout: 6, kh: 3, kw: 2, stride: 2, pad: 1 }, 2),
        (Conv2dGeom { cin: 2, h: 2, w: 6, cout: 3, kh: 4, kw: 4, stride: 2, pad: 1 }, 3),
        (Conv2dGeom { cin: 3, h: 7, w: 5, cout: 4, kh: 4, kw: 4, stride: 2, pad: 1 }, 2),
    ];
    for (i, (g, batch)) in cases.into_iter().enumerate() {
        let (ho, wo) = g.out_hw().expect("geometry");
        let x = random(batch * g.in_len(), 10 + i as u64);
        let w = random(g.cout * g.kdim(), 20 + i as u64);
        let res = random(batch * g.cout * ho * wo, 30 + i as u64);
        let (scale, shift) = epilogue_params(g.cout, 40 + i as u64);
        for (act, residual) in
            [(Activation::None, None), (Activation::LeakyRelu(0.2), Some(&res[..])), (Activation::Relu, None)]
        {
            let epi = Epilogue { scale: Some(&scale), shift: Some(&shift), residual, act };
            check_conv2d(&format!("conv2d case {i} {act:?}"), (&x, &w), batch, &g, &epi);
        }
    }
}

/// The fast convolution against the reference, its output poisoned first.
fn check_conv2d(what: &str, (x, w): (&[f32], &[f32]), batch: usize, g: &Conv2dGeom, epi: &Epilogue) {
    let mut want = vec![0.0; batch * g.out_len()];
    conv2d_ref(x, w, batch, g, epi, &mut want);
    let mut got = poisoned(batch * g.out_len());
    let mut scratch = poisoned(g.scratch_len(batch));
    let wp = PackedA::from_row_major(w, g.cout, g.kdim());
    pool(2).install(|| conv2d(x, &wp, batch, g, epi, &mut scratch, &mut got, 2));
    assert_close(what, &got, &want, TOL);
}

/// A batch cut into chunks (each chunk's im2col and GEMM, then its slice of the output).
#[test]
fn conv2d_large_batch_uses_chunks() {
    let g = Conv2dGeom { cin: 2, h: 64, w: 64, cout: 64, kh: 3, kw: 3, stride: 1, pad: 1 };
    let batch = 20;
    assert!(g.chunk(batch) < batch, "test must exercise chunking");
    let (x, w) = (random(batch * g.in_len(), 90), random(g.cout * g.kdim(), 91));
    let epi = Epilogue { act: Activation::Relu, ..Default::default() };
    check_conv2d("conv2d chunked", (&x, &w), batch, &g, &epi);
}

#[test]
fn conv_transpose2d_cpu_vs_reference() {
    let cases = [
        (ConvTranspose2dGeom { cin: 20, h: 1, w: 1, cout: 32, k: 4, stride: 1, pad: 0 }, 3),
        (ConvTranspose2dGeom { cin: 32, h: 4, w: 4, cout: 16, k: 4, stride: 2, pad: 1 }, 1),
        (ConvTranspose2dGeom { cin: 16, h: 8, w: 8, cout: 8, k: 4, stride: 2, pad: 1 }, 4),
        (ConvTranspose2dGeom { cin: 8, h: 32, w: 32, cout: 3, k: 4, stride: 2, pad: 1 }, 2),
        (ConvTranspose2dGeom { cin: 3, h: 5, w: 3, cout: 4, k: 3, stride: 2, pad: 0 }, 2),
        // The up-sampling gather's odd and one-wide rows; few channels over several samples
        // (the tasks are runs of samples per channel).
        (ConvTranspose2dGeom { cin: 5, h: 3, w: 5, cout: 2, k: 4, stride: 2, pad: 1 }, 3),
        (ConvTranspose2dGeom { cin: 4, h: 2, w: 1, cout: 3, k: 4, stride: 2, pad: 1 }, 9),
    ];
    for (i, (g, batch)) in cases.into_iter().enumerate() {
        let x = random(batch * g.in_len(), 50 + i as u64);
        let w = random(g.cin * g.rows(), 60 + i as u64);
        let (scale, shift) = epilogue_params(g.cout, 70 + i as u64);
        for act in [Activation::None, Activation::Relu, Activation::Tanh] {
            let epi = Epilogue { scale: Some(&scale), shift: Some(&shift), residual: None, act };
            let mut want = vec![0.0; batch * g.out_len()];
            conv_transpose2d_ref(&x, &w, batch, &g, &epi, &mut want);
            let packed = PackedA::from_row_major(&pack_weight(&w, &g), g.rows(), g.cin);
            let mut got = poisoned(batch * g.out_len());
            let mut scratch = poisoned(g.scratch_len(batch));
            pool(2).install(|| conv_transpose2d(&x, &packed, batch, &g, &epi, &mut scratch, &mut got, 2));
            assert_close(&format!("conv_transpose2d case {i} {act:?}"), &got, &want, TOL);
        }
    }
}

#[test]
fn conv_transpose2d_large_batch_uses_chunks() {
    // Large enough that the batch is split into several chunks.
    let g = ConvTranspose2dGeom { cin: 64, h: 16, w: 16, cout: 64, k: 4, stride: 2, pad: 1 };
    let batch = 30;
    assert!(g.chunk(batch) < batch, "test must exercise chunking");
    let x = random(batch * g.in_len(), 80);
    let w = random(g.cin * g.rows(), 81);
    let epi = Epilogue { act: Activation::Relu, ..Default::default() };
    let mut want = vec![0.0; batch * g.out_len()];
    conv_transpose2d_ref(&x, &w, batch, &g, &epi, &mut want);
    let mut got = poisoned(batch * g.out_len());
    let mut scratch = poisoned(g.scratch_len(batch));
    let packed = PackedA::from_row_major(&pack_weight(&w, &g), g.rows(), g.cin);
    pool(2).install(|| conv_transpose2d(&x, &packed, batch, &g, &epi, &mut scratch, &mut got, 2));
    assert_close("conv_transpose2d chunked", &got, &want, TOL);
}

/// The Winograd F(2×2, 3×3) form of 3×3 convolutions against the direct reference, with the
/// residual epilogue the residual blocks use: G's two 3×3 layers (shapes config) at batch 1–3, a
/// non-square odd-channel case, and a batch cut into chunks. The weight transform's halves are
/// exact; the sums of up to 9 taps and of 16 products add a few roundings, well inside 1e-5.
#[test]
fn conv2d_winograd_vs_reference() {
    let c3 = |cin, h, w, cout| Conv2dGeom { cin, h, w, cout, kh: 3, kw: 3, stride: 1, pad: 1 };
    let cases = [
        (c3(64, 4, 4, 256), 1),
        (c3(64, 4, 4, 64), 3),
        (c3(32, 8, 8, 128), 2),
        (c3(7, 2, 6, 10), 5),
        (c3(16, 16, 16, 16), 30),
    ];
    for (i, (g, batch)) in cases.into_iter().enumerate() {
        assert!(conv_winograd::applies(&g));
        if batch == 30 {
            assert!(conv_winograd::chunk(&g, batch) < batch, "the last case must exercise chunking");
        }
        let x = random(batch * g.in_len(), 250 + i as u64);
        let w = random(g.cout * g.kdim(), 260 + i as u64);
        let res = random(batch * g.out_len(), 265 + i as u64);
        let wc = WinogradConv::new(&w, &g);
        assert_eq!(wc.unpack(), w, "case {i}: unpack must give the kernel back");
        let (scale, shift) = epilogue_params(g.cout, 270 + i as u64);
        for (act, residual) in [(Activation::None, None), (Activation::Relu, Some(&res[..]))] {
            let epi = Epilogue { scale: Some(&scale), shift: Some(&shift), residual, act };
            let mut want = vec![0.0; batch * g.out_len()];
            conv2d_ref(&x, &w, batch, &g, &epi, &mut want);
            let mut got = poisoned(batch * g.out_len());
            let mut scratch = poisoned(conv_winograd::scratch_len(&g, batch));
            pool(2).install(|| wc.forward(&x, batch, &g, &epi, &mut scratch, &mut got, 2));
            assert_close(&format!("conv winograd case {i} (batch {batch}) {act:?}"), &got, &want, TOL);
        }
    }
    // Only 3×3, stride 1, padding 1 with an even input has this form.
    assert!(!conv_winograd::applies(&c3(8, 3, 4, 8)));
    assert!(!conv_winograd::applies(&Conv2dGeom { cin: 8, h: 8, w: 8, cout: 8, kh: 3, kw: 3, stride: 2, pad: 1 }));
}

/// The phase + Winograd form of 4×4 stride-2 transposed convolutions against the scatter
/// reference: G's layers (shapes config) at batch 1–3, a non-square odd-channel case, and a
/// batch large enough to be cut into chunks. The transforms only add and subtract (coefficients
/// 0, ±1), so the same 1e-5 bound holds.
#[test]
fn conv_transpose2d_winograd_vs_reference() {
    let up = |cin, h, w, cout| ConvTranspose2dGeom { cin, h, w, cout, k: 4, stride: 2, pad: 1 };
    let cases = [
        (up(256, 4, 4, 128), 1),
        (up(256, 4, 4, 128), 3),
        (up(128, 8, 8, 64), 1),
        (up(64, 16, 16, 32), 2),
        (up(32, 32, 32, 3), 1),
        (up(7, 2, 6, 10), 5),
        (up(64, 16, 16, 64), 30),
    ];
    for (i, (g, batch)) in cases.into_iter().enumerate() {
        assert!(deconv_winograd::applies(&g));
        if batch == 30 {
            assert!(deconv_winograd::chunk(&g, batch) < batch, "the last case must exercise chunking");
        }
        let x = random(batch * g.in_len(), 150 + i as u64);
        let w = random(g.cin * g.rows(), 160 + i as u64);
        let rows = pack_weight(&w, &g);
        let wd = WinogradDeconv::new(&rows, &g);
        assert_eq!(wd.unpack(), rows, "case {i}: unpack must give the kernel back exactly");
        let (scale, shift) = epilogue_params(g.cout, 170 + i as u64);
        for act in [Activation::None, Activation::Relu] {
            let epi = Epilogue { scale: Some(&scale), shift: Some(&shift), residual: None, act };
            let mut want = vec![0.0; batch * g.out_len()];
            conv_transpose2d_ref(&x, &w, batch, &g, &epi, &mut want);
            let mut got = poisoned(batch * g.out_len());
            let mut scratch = poisoned(deconv_winograd::scratch_len(&g, batch));
            pool(2).install(|| wd.forward(&x, batch, &g, &epi, &mut scratch, &mut got, 2));
            assert_close(&format!("winograd case {i} (batch {batch}) {act:?}"), &got, &want, TOL);
        }
    }
    // Only the 4×4 stride-2 padding-1 shape with an even input has this form.
    assert!(!deconv_winograd::applies(&up(8, 3, 4, 8)));
    assert!(!deconv_winograd::applies(&ConvTranspose2dGeom { cin: 8, h: 1, w: 1, cout: 8, k: 4, stride: 1, pad: 0 }));
}

/// A direct reference: (x, weights in its layout, batch, epilogue, out).
type Reference = dyn Fn(&[f32], &[f32], usize, &Epilogue, &mut [f32]);

/// The batch-1 tap form (one product per kernel tap over the pixel pairs it joins) against the
/// direct references, f32 and f16-stored: G's 4×4 residual convolutions and up-samplings at
/// reed-cub's channel counts (input channels past one k block), an odd grid, a strided
/// convolution (D's shape), the encoder's 1-D convolutions, a 1×1 input (G's first layer) and a
/// partial last k block. Sums are
/// over at most Cin·taps ≤ 4608 terms, as for the GEMM paths: same 1e-5 bound.
#[test]
fn conv_tap_form_vs_reference() {
    let c = |cin, h, w, cout, k, stride, pad| Conv2dGeom { cin, h, w, cout, kh: k, kw: k, stride, pad };
    let up = |cin, h, w, cout| ConvTranspose2dGeom { cin, h, w, cout, k: 4, stride: 2, pad: 1 };
    // The encoder's later 1-D convolutions are 1×4 kernels over a 1×T grid (ops::conv1d::as_conv2d).
    let conv1d = |cin, t, cout| Conv2dGeom { cin, h: 1, w: t, cout, kh: 1, kw: 4, stride: 1, pad: 0 };
    let convs = [
        c(256, 4, 4, 256, 3, 1, 1),
        c(200, 5, 3, 64, 3, 1, 1),
        c(64, 8, 8, 128, 4, 2, 1),
        conv1d(512, 21, 128),
        conv1d(130, 66, 64),
    ];
    let deconvs = [
        up(512, 4, 4, 128),
        up(130, 8, 8, 64),
        ConvTranspose2dGeom { cin: 70, h: 1, w: 1, cout: 64, k: 4, stride: 1, pad: 0 },
    ];
    let mut case = 0u64;
    // `rows`: the layer's GEMM rows (what the tap form is built from); `w`: the same weights in
    // the reference's layout.
    let round = |v: &[f32], half: bool| -> Vec<f32> {
        v.iter().map(|&v| if half { half::f16::from_f32(v).to_f32() } else { v }).collect()
    };
    let mut check = |s: TapShape, rows: Vec<f32>, w: Vec<f32>, want_of: &Reference| {
        case += 1;
        assert!(tap_conv::worth_it(&s, 1) && !tap_conv::worth_it(&s, 2), "case {case}: batch 1 only");
        let (in_len, out_len) = (s.cin * s.h * s.w, s.cout * s.ho * s.wo);
        // Batch 2: a session planned for one image and re-planned for a grid runs it per sample.
        let x = random(2 * in_len, 400 + case);
        let res = random(2 * out_len, 410 + case);
        let (scale, shift) = epilogue_params(s.cout, 420 + case);
        for (half, batch) in [(false, 1), (true, 1), (false, 2)] {
            let (x, res, out_len) = (&x[..batch * in_len], &res[..batch * out_len], batch * out_len);
            let tw = TapWeights::new(&rows, &s, half);
            assert_eq!(tw.unpack(), round(&rows, half), "case {case}: unpack gives the (rounded) rows back");
            let w = round(&w, half);
            for (act, residual) in [(Activation::None, None), (Activation::Relu, Some(res))] {
                let epi = Epilogue { scale: Some(&scale), shift: Some(&shift), residual, act };
                let mut want = vec![0.0; out_len];
                want_of(x, &w, batch, &epi, &mut want);
                let mut got = poisoned(out_len);
                let mut scratch = poisoned(tap_conv::scratch_len(&s));
                pool(2).install(|| tw.forward(x, batch, &epi, &mut scratch, &mut got));
                assert_close(&format!("tap form case {case} {s:?} f16 {half} b{batch} {act:?}"), &got, &want, TOL);
            }
        }
    };
    for g in convs {
        let s = TapShape::conv(&g).expect("conv shape");
        let w = random(g.cout * g.kdim(), 430);
        check(s, w.clone(), w, &move |x, w, b, epi, out| conv2d_ref(x, w, b, &g, epi, out));
    }
    for g in deconvs {
        let s = TapShape::deconv(&g).expect("deconv shape");
        let w = random(g.cin * g.rows(), 440);
        let rows = pack_weight(&w, &g);
        check(s, rows, w, &move |x, w, b, epi, out| conv_transpose2d_ref(x, w, b, &g, epi, out));
    }
    // No border to skip, channels not in 64-lane panels, or a grid too large: not this form.
    assert!(!tap_conv::worth_it(&TapShape::conv(&c(64, 4, 4, 64, 1, 1, 0)).expect("1x1"), 1));
    assert!(!tap_conv::worth_it(&TapShape::conv(&c(64, 4, 4, 48, 3, 1, 1)).expect("48"), 1));
    assert!(!tap_conv::worth_it(&TapShape::deconv(&up(64, 16, 16, 64)).expect("16x16"), 1));
}

#[test]
fn linear_cpu_vs_reference() {
    for &(batch, in_f, out_f) in &[(1, 1024, 128), (5, 33, 17), (64, 256, 128)] {
        let x = random(batch * in_f, 90);
        let w = random(in_f * out_f, 91);
        let (scale, shift) = epilogue_params(out_f, 92);
        let epi =
            Epilogue { scale: Some(&scale), shift: Some(&shift), residual: None, act: Activation::LeakyRelu(0.2) };
        let mut want = vec![0.0; batch * out_f];
        linear_ref(&x, &w, batch, in_f, out_f, &epi, &mut want);
        let mut got = poisoned(batch * out_f);
        let wp = PackedA::from_row_major(&w, out_f, in_f);
        pool(2).install(|| linear(&x, &wp, batch, in_f, out_f, &epi, &mut got, 2));
        assert_close(&format!("linear {batch}x{in_f}->{out_f}"), &got, &want, TOL);
    }
}

#[test]
fn conv1d_cpu_vs_reference() {
    for &(batch, cin, t, cout, k) in &[(1, 70, 201, 32, 4), (3, 16, 63, 24, 4), (2, 5, 4, 3, 4)] {
        let x = random(batch * cin * t, 100);
        let w = random(cout * cin * k, 101);
        let bias = random(cout, 102);
        let epi = Epilogue { shift: Some(&bias), act: Activation::Relu, ..Default::default() };
        let to = t + 1 - k;
        let mut want = vec![0.0; batch * cout * to];
        conv1d_ref(&x, &w, batch, cin, t, cout, k, &epi, &mut want);
        let g = text2img::ops::conv1d::as_conv2d(cin, t, cout, k);
        let mut got = poisoned(batch * cout * to);
        let mut scratch = poisoned(g.scratch_len(batch));
        let wp = PackedA::from_row_major(&w, cout, cin * k);
        pool(2).install(|| conv1d(&x, &wp, batch, cin, t, cout, k, &epi, &mut scratch, &mut got, 2));
        assert_close(&format!("conv1d b{batch} {cin}x{t}->{cout}"), &got, &want, TOL);
    }
}

#[test]
fn gru_and_rnn_cpu_vs_reference() {
    for &(batch, cin, t, hidden) in &[(1, 24, 18, 16), (3, 8, 5, 12), (2, 16, 1, 8)] {
        for is_gru in [true, false] {
            let g = if is_gru { 3 } else { 1 };
            let x = random(batch * cin * t, 110);
            let w_ih: Vec<f32> = random(g * hidden * cin, 111).iter().map(|v| v * 0.3).collect();
            let b_ih = random(g * hidden, 112);
            let w_hh: Vec<f32> = random(g * hidden * hidden, 113).iter().map(|v| v * 0.3).collect();
            let b_hh = random(g * hidden, 114);
            let p = RnnParams { w_ih: &w_ih, b_ih: &b_ih, w_hh: &w_hh, b_hh: &b_hh };
            let d = RnnDims { batch, cin, t, hidden };
            let mut want = vec![0.0; batch * t * hidden];
            let mut got = poisoned(batch * t * hidden);
            let mut scratch = poisoned(scratch_len(is_gru, d));
            let w_ih_p = PackedA::from_row_major(&w_ih, g * hidden, cin);
            let (w_hh_p, w_n_p) = pack_w_hh(&w_hh, is_gru, hidden);
            let pp = RnnPacked { w_ih: &w_ih_p, b_ih: &b_ih, w_hh: &w_hh_p, w_hh_n: w_n_p.as_ref(), b_hh: &b_hh };
            if is_gru {
                gru_ref(&x, &p, d, &mut want);
                pool(2).install(|| gru(&x, &pp, d, &mut scratch, &mut got, 2));
            } else {
                rnn_relu_ref(&x, &p, d, &mut want);
                pool(2).install(|| rnn_relu(&x, &pp, d, &mut scratch, &mut got, 2));
            }
            assert_close(&format!("rnn gru={is_gru} {d:?}"), &got, &want, TOL);
        }
    }
}

#[test]
fn shift_images_cpu_vs_reference() {
    // D's augmentation at the real shape (3 × 64 × 64, up to ±16 pixels) and offsets past the
    // edge (nothing lands: all zeros); every element written (poisoned first), exact copies.
    let dims = (3, 64, 64);
    let shifts = [[0, 0], [16, -16], [-3, 5], [64, 0], [0, -70], [-63, 63], [7, 2], [-16, 16]];
    let n = shifts.len() * 3 * 64 * 64;
    let x = random(n, 840);
    let (mut fast, mut want) = (poisoned(n), poisoned(n));
    shift_images(&x, dims, &shifts, &mut fast);
    shift_images_ref(&x, dims, &shifts, &mut want);
    assert!(fast.iter().all(|v| v.is_finite()), "every element written");
    assert_eq!(fast, want, "exact copies and zeros");
    let plane = 3 * 64 * 64;
    assert_eq!(&fast[..plane], &x[..plane], "offset 0 is the identity");
    assert!(fast[3 * plane..5 * plane].iter().all(|&v| v == 0.0), "moved out of the image: zeros");
}

#[test]
fn flip_images_cpu_vs_reference() {
    // All eight symmetries at the real shape (3 × 64 × 64), and the four without a transpose on
    // a non-square image; every element written (poisoned first), exact copies.
    for (dims, flips) in [((3, 64, 64), vec![0u8, 1, 2, 3, 4, 5, 6, 7, 5, 0]), ((2, 5, 7), vec![3, 0, 2, 1])] {
        let n = flips.len() * dims.0 * dims.1 * dims.2;
        let x = random(n, 850);
        let (mut fast, mut want) = (poisoned(n), poisoned(n));
        flip_images(&x, dims, &flips, &mut fast);
        flip_images_ref(&x, dims, &flips, &mut want);
        assert!(fast.iter().all(|v| v.is_finite()), "every element written");
        assert_eq!(fast, want, "{dims:?}: exact copies");
    }
}

#[test]
fn flip_images_are_the_eight_symmetries() {
    // Eight different images of one picture; each undone by its inverse; a quarter turn (5)
    // four times, or a mirror twice, is the identity.
    let dims = (3, 16, 16);
    let x = random(3 * 16 * 16, 851);
    let flip = |t: u8, x: &[f32]| {
        let mut out = poisoned(x.len());
        flip_images(x, dims, &[t], &mut out);
        out
    };
    let images: Vec<Vec<f32>> = (0..8).map(|t| flip(t, &x)).collect();
    for (t, a) in images.iter().enumerate() {
        assert!(images[..t].iter().all(|b| b != a), "transform {t} differs from those before it");
        let mut back = poisoned(x.len());
        flip_images_backward(a, dims, &[t as u8], &mut back);
        assert_eq!(back, x, "transform {t} undone by {}", inverse_flip(t as u8));
    }
    let turned = (0..4).fold(x.clone(), |y, _| flip(5, &y));
    assert_eq!(turned, x, "four quarter turns");
    assert_eq!(flip(5, &flip(5, &x)), flip(3, &x), "two quarter turns: both mirrors");
    assert_eq!(flip(1, &flip(1, &x)), x, "a mirror twice");
}
