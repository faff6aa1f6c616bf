//! Every CUDA kernel against the CPU at the networks' real shapes (reed-cub; batch 1 and 64), on
//! fresh random inputs. Discipline: every output buffer is POISONED with NaN before the launch
//! and EVERY element is checked afterwards (a missed element stays NaN and fails), so a kernel
//! that skips a tile edge cannot pass. The oracle is the plain reference (f64 accumulation) at
//! batch 1, and the fast CPU path (itself tested against the reference in
//! ops_cpu_vs_reference.rs) at batch 64, where the reference would take minutes.
//!
//! Tolerances (relative to the reference's largest |value|, tests/common::rel_error): the GPU
//! accumulates in f32 with FMA in a different order than the CPU, so a sum of K terms of
//! |x·w| ≤ s differs by at most ~K·2⁻²⁴·s in the worst case and ~√K·2⁻²⁴·s typically. With
//! inputs in [−1, 1) and K ≤ 16 384 (conv 3×3 over 1024 channels is 9 216), √K·6e-8 ≈ 8e-6 and
//! the output scale is ~√K·⅓, so 2e-5 relative leaves room for the worst-case growth without
//! hiding a wrong tap (which moves the error to ~1e-2). Transcendental epilogues (tanh, sigmoid:
//! expf/tanhf ≤ 2 ulp) add nothing at that scale. Pure data movement (concat, replicate,
//! max-pool, mean over time in the CPU's order) is exact: compared bit for bit.
//!
//! Every GPU test is #[ignore]d here (no GPU): run them on the GPU machine with
//! `--include-ignored` (scripts/gpu-check.sh). The one test that runs everywhere checks that
//! asking for CUDA without a driver is a clean error.
#![cfg(feature = "cuda")]

mod common;

use common::{assert_close, random};
use text2img::cuda::{rnn_scratch_len, CudaDevice, Epi, Precision, RnnBufs};
use text2img::device::{Device, DeviceRequest};
use text2img::ops::conv2d::{conv2d, conv2d_ref, Conv2dGeom};
use text2img::ops::conv_transpose2d::{conv_transpose2d, conv_transpose2d_ref, pack_weight, ConvTranspose2dGeom};
use text2img::ops::gemm::PackedA;
use text2img::ops::rnn::{gru_ref, rnn_relu_ref, RnnDims, RnnParams};
use text2img::ops::{Activation, Epilogue};

/// See the module doc: f32 accumulation against the f64 reference.
const TOL_GEMM_LIKE: f64 = 2e-5;
/// The recurrences compound T = 18 steps of rounding through tanh/sigmoid (contractive, so the
/// error stays near one step's ~1e-6 times a small factor); 1e-4 is that with margin.
const TOL_RNN: f64 = 1e-4;
const LRELU: Activation = Activation::LeakyRelu(0.2);

fn dev() -> CudaDevice {
    match CudaDevice::new(0) {
        Ok(d) => d,
        Err(e) => panic!("CUDA device 0: {e}"),
    }
}

/// Uploads, or fails the test with the driver's message.
fn up(d: &CudaDevice, h: &[f32]) -> text2img::cuda::Buf {
    d.upload(h).expect("upload")
}

fn down(d: &CudaDevice, b: &text2img::cuda::Buf) -> Vec<f32> {
    d.download(b).expect("download")
}

/// Per-channel scale and shift as folded batch norm leaves them (scale near 1).
fn scale_shift(c: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let s = random(c, seed).iter().map(|v| 1.0 + 0.5 * v).collect();
    (s, random(c, seed + 1))
}

#[test]
fn device_cuda_without_driver_is_a_clean_error() {
    let r = std::panic::catch_unwind(|| DeviceRequest::Cuda(0).resolve());
    let r = r.expect("--device cuda must not panic");
    if !text2img::cuda::driver_present() {
        let e = r.expect_err("no driver: --device cuda is an error");
        assert!(e.to_string().contains("no CUDA driver"), "{e}");
        assert!(CudaDevice::new(0).is_err());
        assert_eq!(DeviceRequest::Auto.resolve().ok(), Some(Device::Cpu), "auto falls back to the CPU");
    } else {
        eprintln!("a CUDA driver is present: --device cuda resolved to {r:?}");
    }
}

/// Whole networks: the CUDA session of a graph against the CPU session of the same graph.
/// Twenty-odd layers of f32 accumulated in a different order (plus batch norm folded the same
/// way on both) keep each layer's ~1e-6 relative difference from growing much past 1e-5 at the
/// output (the normalisations rescale, they do not amplify); 1e-4 of the largest magnitude is
/// that with margin, while a wrong layer moves whole outputs (errors ≥ 1e-2).
const TOL_NETWORK: f64 = 1e-4;

fn network_cuda_vs_cpu(cfg_name: &str, batch: usize) {
    use std::sync::Arc;
    use text2img::cuda::CudaSession;
    use text2img::graph::{thread_pool, Backend, Session};
    use text2img::model::discriminator::build_discriminator;
    use text2img::model::encoder::build_encoder;
    use text2img::model::generator::build_generator;
    use text2img::model::synthetic::synthetic_weights;
    use text2img::model::{ModelConfig, Network, WeightSet};

    let cfg = ModelConfig::builtin(cfg_name).expect("config");
    let ws = WeightSet::from_tensors(cfg.clone(), &Network::ALL, synthetic_weights(&cfg, &Network::ALL)).expect("ws");
    let d = Arc::new(dev());
    let pool = thread_pool(0).expect("pool");
    for (name, graph) in [
        ("encoder", build_encoder(&ws)),
        ("generator", build_generator(&ws)),
        ("discriminator", build_discriminator(&ws)),
    ] {
        let graph = Arc::new(graph.expect("graph"));
        let mut cpu = Session::new(Arc::clone(&graph), batch, Arc::clone(&pool), Backend::Cpu);
        let mut gpu = CudaSession::new(Arc::clone(&d), Arc::clone(&graph), batch).expect("cuda session");
        for (i, _) in graph.inputs.iter().enumerate() {
            let n = cpu.input_mut(i).len();
            let x = if name == "encoder" {
                random(n, 40 + i as u64).iter().map(|v| f32::from(u8::from(*v > 0.9))).collect()
            } else {
                random(n, 40 + i as u64)
            };
            cpu.input_mut(i).copy_from_slice(&x);
            gpu.set_input(i, &x).expect("upload");
        }
        cpu.run();
        gpu.run().expect("cuda run");
        let got = gpu.output(0).expect("download");
        assert!(got.iter().all(|v| v.is_finite()), "{cfg_name} {name}: non-finite output");
        assert_close(&format!("{cfg_name} {name} b{batch} cuda vs cpu"), &got, cpu.output(0), TOL_NETWORK);
    }
}

#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored on the GPU machine"]
fn networks_cuda_session_vs_cpu_b1() {
    network_cuda_vs_cpu("reed-cub", 1);
    network_cuda_vs_cpu("shapes", 1);
}

#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored on the GPU machine"]
fn networks_cuda_session_vs_cpu_b16() {
    network_cuda_vs_cpu("reed-cub", 16);
}

#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored on the GPU machine"]
fn caption_to_image_cuda_vs_cpu() {
    use std::sync::Arc;
    use text2img::cuda::CudaTextToImage;
    use text2img::graph::{thread_pool, Backend};
    use text2img::model::synthetic::synthetic_weights;
    use text2img::model::{ModelConfig, Network, TextToImage, WeightSet};

    let cfg = ModelConfig::builtin("reed-cub").expect("config");
    let nets = [Network::Encoder, Network::Generator];
    let ws = WeightSet::from_tensors(cfg.clone(), &nets, synthetic_weights(&cfg, &nets)).expect("ws");
    let caps: Vec<String> =
        ["a small bird with a red head", "this bird is blue", "x"].iter().map(|s| s.to_string()).collect();
    let indices = [0u64, 5, 2];
    let mut gpu = CudaTextToImage::new(Arc::new(dev()), &ws, 4).expect("cuda pipeline");
    let (got, _) = gpu.generate(&caps, 42, &indices).expect("cuda images");
    let mut cpu = TextToImage::new(&ws, 3, thread_pool(0).expect("pool"), Backend::Cpu).expect("cpu pipeline");
    cpu.embed(&caps).expect("embed");
    cpu.generate_loaded(42, &indices);
    assert_eq!(got.len(), cpu.images().len(), "three images, not the batch of four");
    assert_close("caption → image cuda vs cpu", &got, cpu.images(), TOL_NETWORK);
    // The same on the tensor cores: about twenty layers each ~2.4e-3 off (TOL_BF16), partly
    // renormalised by batch norm and squashed by tanh at the end: within 5e-2 of the f32 images,
    // where a broken layer gives errors of order 1.
    gpu.set_precision(Precision::Bf16);
    let (got, _) = gpu.generate(&caps, 42, &indices).expect("cuda bf16 images");
    assert_close("caption → image cuda bf16 vs cpu", &got, cpu.images(), 5e-2);
}

/// The forward captured as CUDA graphs gives what the eager replay gives (same kernels, same
/// buffers: bit for bit), and a later `generate` (new captions in the same input buffers) is
/// seen by the next launch.
#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored on the GPU machine"]
fn captured_graph_replays_the_eager_forward() {
    use std::sync::Arc;
    use text2img::cuda::CudaTextToImage;
    use text2img::model::synthetic::synthetic_weights;
    use text2img::model::{ModelConfig, Network, WeightSet};

    let cfg = ModelConfig::builtin("shapes").expect("config");
    let nets = [Network::Encoder, Network::Generator];
    let ws = WeightSet::from_tensors(cfg.clone(), &nets, synthetic_weights(&cfg, &nets)).expect("ws");
    let caps = |s: &str| vec![s.to_string(), format!("{s}, big")];
    let mut gpu = CudaTextToImage::new(Arc::new(dev()), &ws, 2).expect("cuda pipeline");
    gpu.generate(&caps("a red circle"), 7, &[0, 1]).expect("generate");
    gpu.replay(7).expect("eager replay");
    let eager = gpu.images().expect("eager images");
    gpu.capture(7).expect("capture");
    assert_eq!(gpu.captured_seed(), Some(7));
    gpu.launch_graph(false).expect("launch");
    assert_eq!(gpu.images().expect("graph images"), eager, "the whole forward as a graph");
    gpu.launch_graph(true).expect("launch G");
    assert_eq!(gpu.images().expect("graph images"), eager, "G alone as a graph");
    // New captions loaded into the same buffers: the graph sees them.
    gpu.generate(&caps("a blue star"), 7, &[0, 1]).expect("generate");
    gpu.replay(7).expect("eager replay");
    let eager_blue = gpu.images().expect("eager images");
    assert_ne!(eager_blue, eager, "other captions, other images");
    gpu.launch_graph(false).expect("launch");
    assert_eq!(gpu.images().expect("graph images"), eager_blue);
}

/// bf16 operands (8 significant bits each, f32 accumulation): a product is off by up to 2^-8
/// relative and the errors of a sum do not cancel against its size, so a layer lands about
/// 2.4e-3 from the f32 result in norm (numpy emulation of the kernel's tile, any depth); 1e-2 is
/// that with margin, while a wrong fragment or index moves whole outputs.
const TOL_BF16: f64 = 1e-2;

/// The tolerance of one layer computed in `prec` against the CPU's f32.
fn layer_tol(prec: Precision) -> f64 {
    match prec {
        Precision::F32 => TOL_GEMM_LIKE,
        Precision::Bf16 => TOL_BF16,
    }
}

fn check_deconv(batch: usize, g: ConvTranspose2dGeom, act: Activation, bn: bool, seed: u64, prec: Precision) {
    let d = dev();
    let x = random(batch * g.in_len(), seed);
    let w = random(g.cin * g.rows(), seed + 1);
    let (s, b) = scale_shift(g.cout, seed + 2);
    let epi = Epilogue { scale: bn.then_some(&s[..]), shift: bn.then_some(&b[..]), residual: None, act };
    let mut want = vec![0.0; batch * g.out_len()];
    if batch == 1 {
        conv_transpose2d_ref(&x, &w, batch, &g, &epi, &mut want);
    } else {
        let packed = pack_weight(&w, &g);
        let pa = PackedA::from_row_major(&packed, g.rows(), g.cin);
        let mut scratch = vec![0.0; g.scratch_len(batch)];
        conv_transpose2d(&x, &pa, batch, &g, &epi, &mut scratch, &mut want, 0);
    }
    let (xd, wd, sd, bd) = (up(&d, &x), up(&d, &pack_weight(&w, &g)), up(&d, &s), up(&d, &b));
    let mut out = d.alloc_poisoned(want.len()).expect("alloc");
    let depi = Epi { scale: bn.then_some(&sd), shift: bn.then_some(&bd), residual: None, act };
    d.conv_transpose2d_fwd(prec, &xd, &wd, batch, &g, &depi, &mut out).expect("launch");
    let what = format!("conv_transpose2d {} b{batch} {g:?}", prec.name());
    assert_close(
        &what,
        &down(&d, &out),
        &want,
        layer_tol(prec)
            * squash(&want, act, || {
                let plain = Epilogue { act: Activation::None, ..epi };
                let mut pre = vec![0.0; want.len()];
                conv_transpose2d_ref(&x, &w, batch, &g, &plain, &mut pre);
                pre
            }),
    );
}

/// How much a saturating activation shrank the output's scale: max |pre-activation| over
/// max |output| for tanh, else 1. The tolerance is relative to the largest output, but the
/// sum's error is relative to the largest sum, and tanh is 1-Lipschitz: it passes an error near
/// zero whole while capping the largest output at 1. G's last layer (512 terms, sums up to ~30)
/// in bf16 lands 2.1e-3 of its largest sum from f32 and 4.1e-2 of 1 after tanh (emulated,
/// 12,288 outputs), so the bound is the pre-activation's scale.
fn squash(out: &[f32], act: Activation, pre: impl FnOnce() -> Vec<f32>) -> f64 {
    if act != Activation::Tanh {
        return 1.0;
    }
    let max = |v: &[f32]| v.iter().fold(0.0f64, |m, &x| m.max(x.abs() as f64));
    max(&pre()) / max(out).max(1e-6)
}

/// G's five transposed convolutions (reed-cub: nz + nt = 228, ngf = 128).
fn generator_deconvs(batch: usize, prec: Precision) {
    let up = |cin, side, cout, stride, pad| ConvTranspose2dGeom { cin, h: side, w: side, cout, k: 4, stride, pad };
    check_deconv(batch, up(228, 1, 1024, 1, 0), Activation::None, true, 10, prec);
    check_deconv(batch, up(1024, 4, 512, 2, 1), Activation::None, true, 20, prec);
    check_deconv(batch, up(512, 8, 256, 2, 1), Activation::Relu, true, 30, prec);
    check_deconv(batch, up(256, 16, 128, 2, 1), Activation::Relu, true, 40, prec);
    check_deconv(batch, up(128, 32, 3, 2, 1), Activation::Tanh, false, 50, prec);
}

#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored on the GPU machine"]
fn conv_transpose2d_fwd_cuda_vs_cpu_b1() {
    generator_deconvs(1, Precision::F32);
}

#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored on the GPU machine"]
fn conv_transpose2d_fwd_cuda_vs_cpu_b64() {
    generator_deconvs(64, Precision::F32);
}

/// Every convolution of the networks on the tensor cores (bf16 operands), batch 1 and 64.
#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored on the GPU machine"]
fn convolutions_bf16_tensor_cores_vs_cpu() {
    for batch in [1, 64] {
        generator_deconvs(batch, Precision::Bf16);
        convs(batch, Precision::Bf16);
        encoder_conv1d(batch, Precision::Bf16);
    }
}

fn check_conv(batch: usize, g: Conv2dGeom, act: Activation, residual: bool, seed: u64, prec: Precision) {
    let d = dev();
    let x = random(batch * g.in_len(), seed);
    let w = random(g.cout * g.kdim(), seed + 1);
    let (s, b) = scale_shift(g.cout, seed + 2);
    let r = random(batch * g.out_len(), seed + 3);
    let epi = Epilogue { scale: Some(&s), shift: Some(&b), residual: residual.then_some(&r[..]), act };
    let mut want = vec![0.0; batch * g.out_len()];
    if batch == 1 {
        conv2d_ref(&x, &w, batch, &g, &epi, &mut want);
    } else {
        let pa = PackedA::from_row_major(&w, g.cout, g.kdim());
        let mut scratch = vec![0.0; g.scratch_len(batch)];
        conv2d(&x, &pa, batch, &g, &epi, &mut scratch, &mut want, 0);
    }
    let (xd, wd, sd, bd, rd) = (up(&d, &x), up(&d, &w), up(&d, &s), up(&d, &b), up(&d, &r));
    let mut out = d.alloc_poisoned(want.len()).expect("alloc");
    let depi = Epi { scale: Some(&sd), shift: Some(&bd), residual: residual.then_some(&rd), act };
    d.conv2d_fwd(prec, &xd, &wd, batch, &g, &depi, &mut out).expect("launch");
    assert_close(&format!("conv2d {} b{batch} {g:?}", prec.name()), &down(&d, &out), &want, layer_tol(prec));
}

/// The residual blocks' convolutions (res0 at 4×4: 1024 → 256 → 256 → 1024; res1 at 8×8:
/// 512 → 128 → 128 → 512) and D's strided 4×4 convolutions.
fn convs(batch: usize, prec: Precision) {
    let g = |cin, side, cout, k, stride, pad| Conv2dGeom { cin, h: side, w: side, cout, kh: k, kw: k, stride, pad };
    check_conv(batch, g(1024, 4, 256, 1, 1, 0), Activation::Relu, false, 60, prec);
    check_conv(batch, g(256, 4, 256, 3, 1, 1), Activation::Relu, false, 70, prec);
    check_conv(batch, g(256, 4, 1024, 3, 1, 1), Activation::Relu, true, 80, prec);
    check_conv(batch, g(128, 8, 512, 3, 1, 1), Activation::Relu, true, 90, prec);
    check_conv(batch, g(3, 64, 64, 4, 2, 1), LRELU, false, 100, prec);
    check_conv(batch, g(256, 16, 512, 4, 2, 1), LRELU, false, 110, prec);
}

#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored on the GPU machine"]
fn conv2d_fwd_cuda_vs_cpu_b1() {
    convs(1, Precision::F32);
}

#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored on the GPU machine"]
fn conv2d_fwd_cuda_vs_cpu_b64() {
    convs(64, Precision::F32);
}

fn check_linear(batch: usize, (in_f, out_f): (usize, usize), act: Activation, seed: u64) {
    let d = dev();
    let x = random(batch * in_f, seed);
    let w = random(out_f * in_f, seed + 1);
    let b = random(out_f, seed + 2);
    let epi = Epilogue { scale: None, shift: Some(&b), residual: None, act };
    let mut want = vec![0.0; batch * out_f];
    text2img::ops::linear::linear_ref(&x, &w, batch, in_f, out_f, &epi, &mut want);
    let (xd, wd, bd) = (up(&d, &x), up(&d, &w), up(&d, &b));
    let mut y = d.alloc_poisoned(want.len()).expect("alloc");
    d.linear_fwd(&xd, &wd, batch, in_f, out_f, &Epi { shift: Some(&bd), act, ..Epi::default() }, &mut y)
        .expect("launch");
    assert_close(&format!("linear b{batch} {in_f}→{out_f}"), &down(&d, &y), &want, TOL_GEMM_LIKE);
}

#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored on the GPU machine"]
fn gemm_fwd_cuda_vs_cpu_linears() {
    for batch in [1, 64] {
        check_linear(batch, (1024, 128), LRELU, 120); // G's text projection
        check_linear(batch, (512, 1024), Activation::None, 130); // the encoder's projection
        check_linear(batch, (1024, 128), LRELU, 140); // D's text projection
        check_linear(batch, (37, 53), Activation::Sigmoid, 150); // ragged tile edges
    }
}

#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored on the GPU machine"]
fn batch_norm_fwd_cuda_vs_cpu() {
    let d = dev();
    for (batch, c, s) in [(1, 1024, 16), (64, 512, 64), (64, 128, 1)] {
        let x = random(batch * c * s, 160);
        let (gamma, beta) = scale_shift(c, 161);
        let mean = random(c, 163);
        let var: Vec<f32> = random(c, 164).iter().map(|v| 1.0 + v.abs()).collect();
        let bn = text2img::ops::batch_norm::BatchNormParams { gamma: &gamma, beta: &beta, mean: &mean, var: &var };
        let mut want = vec![0.0; x.len()];
        text2img::ops::batch_norm::batch_norm_ref(&x, batch, &bn, &mut want);
        let (sc, sh) = bn.scale_shift();
        let (xd, sd, hd) = (up(&d, &x), up(&d, &sc), up(&d, &sh));
        let mut out = d.alloc_poisoned(x.len()).expect("alloc");
        let epi = Epi { scale: Some(&sd), shift: Some(&hd), ..Epi::default() };
        d.batch_norm_fwd(&xd, (batch, c, s), &epi, &mut out).expect("launch");
        // (x − μ)/σ·γ + β against x·s + (β − μ·s): a few f32 roundings on values of size ~3.
        assert_close("batch_norm", &down(&d, &out), &want, 1e-6);
    }
}

#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored on the GPU machine"]
fn elementwise_fwd_cuda_vs_cpu() {
    use text2img::ops::{activation, elementwise, pool};
    let d = dev();
    for batch in [1, 64] {
        // Activations over D's 4×4×512 maps; ≤ 2 ulp for tanh/sigmoid, exact for the others.
        let x: Vec<f32> = random(batch * 512 * 16, 170).iter().map(|v| 4.0 * v).collect();
        let xd = up(&d, &x);
        for act in [Activation::None, Activation::Relu, LRELU, Activation::Tanh, Activation::Sigmoid] {
            let mut want = vec![0.0; x.len()];
            activation::activation_ref(act, &x, &mut want);
            let mut out = d.alloc_poisoned(x.len()).expect("alloc");
            d.activation_fwd(&xd, x.len(), act, &mut out).expect("launch");
            assert_close(&format!("activation {act:?}"), &down(&d, &out), &want, 1e-6);
        }
        // add, concat (z ‖ text: 100 + 128), replicate (D: 128 over 4×4): exact.
        let y = random(x.len(), 171);
        let mut want = vec![0.0; x.len()];
        elementwise::add(&x, &y, &mut want);
        let mut out = d.alloc_poisoned(x.len()).expect("alloc");
        d.add_fwd(&xd, &up(&d, &y), x.len(), &mut out).expect("launch");
        assert_eq!(down(&d, &out), want, "add");
        let (za, tb) = (random(batch * 100, 172), random(batch * 128, 173));
        let mut want = vec![0.0; batch * 228];
        elementwise::concat_channels(&za, 100, &tb, 128, batch, &mut want);
        let mut out = d.alloc_poisoned(want.len()).expect("alloc");
        d.concat_channels_fwd((&up(&d, &za), 100), (&up(&d, &tb), 128), batch, &mut out).expect("launch");
        assert_eq!(down(&d, &out), want, "concat");
        let mut want = vec![0.0; batch * 128 * 16];
        elementwise::replicate_spatial(&tb, batch, 128, 16, &mut want);
        let mut out = d.alloc_poisoned(want.len()).expect("alloc");
        d.replicate_spatial_fwd(&up(&d, &tb), batch * 128, 16, &mut out).expect("launch");
        assert_eq!(down(&d, &out), want, "replicate");
        // The encoder's pools: [384, 198] and [512, 63] by 3/3; mean over [18, 512]: exact.
        for (c, t) in [(384, 198), (512, 63)] {
            let x = random(batch * c * t, 174);
            let to = pool::maxpool1d_len(t, 3, 3).expect("fits");
            let mut want = vec![0.0; batch * c * to];
            pool::maxpool1d(&x, batch * c, t, 3, 3, &mut want);
            let mut out = d.alloc_poisoned(want.len()).expect("alloc");
            d.maxpool1d_fwd(&up(&d, &x), (batch * c, t, 3, 3), &mut out).expect("launch");
            assert_eq!(down(&d, &out), want, "maxpool1d {c}×{t}");
        }
        let h = random(batch * 18 * 512, 175);
        let mut want = vec![0.0; batch * 512];
        pool::mean_time(&h, batch, 18, 512, &mut want);
        let mut out = d.alloc_poisoned(want.len()).expect("alloc");
        d.mean_time_fwd(&up(&d, &h), (batch, 18, 512), &mut out).expect("launch");
        assert_eq!(down(&d, &out), want, "mean_time");
    }
}

/// The encoder's three conv1d (+bias, ReLU): 70→384 over 201, 384→512 over 66, 512→512 over 21.
fn encoder_conv1d(batch: usize, prec: Precision) {
    let d = dev();
    for (i, (cin, t, cout)) in [(70, 201, 384), (384, 66, 512), (512, 21, 512)].into_iter().enumerate() {
        let seed = 180 + 10 * i as u64;
        let x = random(batch * cin * t, seed);
        let w = random(cout * cin * 4, seed + 1);
        let b = random(cout, seed + 2);
        let epi = Epilogue { shift: Some(&b), act: Activation::Relu, ..Epilogue::default() };
        let mut want = vec![0.0; batch * cout * (t - 3)];
        text2img::ops::conv1d::conv1d_ref(&x, &w, batch, cin, t, cout, 4, &epi, &mut want);
        let mut out = d.alloc_poisoned(want.len()).expect("alloc");
        let (bd, xd, wd) = (up(&d, &b), up(&d, &x), up(&d, &w));
        let depi = Epi { shift: Some(&bd), act: Activation::Relu, ..Epi::default() };
        d.conv1d_fwd(prec, &xd, &wd, (batch, cin, t, cout, 4), &depi, &mut out).expect("launch");
        let what = format!("conv1d {} b{batch} {cin}→{cout} T{t}", prec.name());
        assert_close(&what, &down(&d, &out), &want, layer_tol(prec));
    }
}

#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored on the GPU machine"]
fn conv1d_fwd_cuda_vs_cpu() {
    for batch in [1, 64] {
        encoder_conv1d(batch, Precision::F32);
    }
}

fn check_rnn(gru: bool, batch: usize) {
    let d = dev();
    let (c, t, h) = (512, 18, 512);
    let g = if gru { 3 } else { 1 };
    // Weights scaled like PyTorch's init (U(−1/√H, 1/√H)) so the gates are not saturated.
    let sc = 1.0 / (h as f32).sqrt();
    let w = |n, s| random(n, s).iter().map(|v| v * sc).collect::<Vec<f32>>();
    let (w_ih, b_ih, w_hh, b_hh) = (w(g * h * c, 200), w(g * h, 201), w(g * h * h, 202), w(g * h, 203));
    let x = random(batch * c * t, 204);
    let p = RnnParams { w_ih: &w_ih, b_ih: &b_ih, w_hh: &w_hh, b_hh: &b_hh };
    let dims = RnnDims { batch, cin: c, t, hidden: h };
    let mut want = vec![0.0; batch * t * h];
    if gru {
        gru_ref(&x, &p, dims, &mut want);
    } else {
        rnn_relu_ref(&x, &p, dims, &mut want);
    }
    let (a, b, cc, dd) = (up(&d, &w_ih), up(&d, &b_ih), up(&d, &w_hh), up(&d, &b_hh));
    let bufs = RnnBufs { w_ih: &a, b_ih: &b, w_hh: &cc, b_hh: &dd };
    let mut proj = d.alloc_poisoned(rnn_scratch_len(dims, gru)).expect("alloc");
    let mut out = d.alloc_poisoned(want.len()).expect("alloc");
    d.rnn_fwd(&up(&d, &x), &bufs, gru, dims, &mut proj, &mut out).expect("launch");
    assert_close(&format!("rnn gru={gru} b{batch}"), &down(&d, &out), &want, TOL_RNN);
}

#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored on the GPU machine"]
fn gru_fwd_cuda_vs_cpu() {
    // 1 and 7: a warp per row of W_hh; from 8 the tile GEMMs (GRU_TILE_MIN_BATCH), 100 with a
    // partial column tile.
    for batch in [1, 7, 8, 64, 100] {
        check_rnn(true, batch);
    }
}

#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored on the GPU machine"]
fn rnn_relu_fwd_cuda_vs_cpu() {
    check_rnn(false, 1);
    check_rnn(false, 64);
}

/// z on the device equals rng::normal_noise: bit for bit expected; at most 1 ulp of f32 on rare
/// elements (f64 log/sin/cos of CUDA are within 1–2 ulp of f64 of the CPU's libm, which changes
/// the f32 rounding only when the f64 value sits within that of a rounding boundary: about
/// 2⁻²⁸ of elements).
#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored on the GPU machine"]
fn philox_normal_fwd_cuda_vs_cpu() {
    let d = dev();
    for (seed, image0, nz, batch) in
        [(42u64, 0u64, 100, 1), (0xDEAD_BEEF_1234, 7, 100, 64), (1, u32::MAX as u64, 33, 256)]
    {
        let mut want = vec![0.0; nz * batch];
        for (b, row) in want.chunks_mut(nz).enumerate() {
            text2img::rng::normal_noise(seed, image0 + b as u64, row);
        }
        let mut z = d.alloc_poisoned(want.len()).expect("alloc");
        d.philox_normal_fwd(seed, image0, (nz, batch), &mut z).expect("launch");
        let got = down(&d, &z);
        let mut differ = 0;
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let ulps = (g.to_bits() as i64 - w.to_bits() as i64).abs();
            assert!(g.is_finite() && ulps <= 1, "z[{i}] = {g} vs CPU {w} ({ulps} ulp)");
            differ += usize::from(ulps != 0);
        }
        eprintln!("philox seed {seed}: {differ} of {} elements differ by 1 ulp", got.len());
    }
}

/// The one-hot rows made on the device from the caption indices are the CPU's encoding, bit for
/// bit (unknown characters, padding and truncation included).
#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored on the GPU machine"]
fn onehot_cuda_is_the_cpu_encoding() {
    use text2img::model::text::{encode_indices, encode_into, ALPHABET_SIZE};
    let d = dev();
    let l = 201;
    let caps = ["a small red circle on a blue background", "ünknown ∑ chars, UPPER case", &"long ".repeat(60)];
    let (mut want, mut idx) = (vec![0.0; caps.len() * ALPHABET_SIZE * l], vec![0.0; caps.len() * l]);
    for (i, c) in caps.iter().enumerate() {
        encode_into(c, l, &mut want[i * ALPHABET_SIZE * l..(i + 1) * ALPHABET_SIZE * l]);
        encode_indices(c, l, &mut idx[i * l..(i + 1) * l]);
    }
    let mut out = d.alloc_poisoned(want.len()).expect("alloc");
    d.onehot_fwd(&up(&d, &idx), (caps.len(), ALPHABET_SIZE, l), &mut out).expect("onehot");
    assert_eq!(down(&d, &out), want);
}
