//! f16 weights files keep their GEMM weights in f16 panels (half the bytes to stream), with batch
//! norm moved to the epilogue's scale so the stored values are used as they are. The images
//! must equal those of an f32 file holding the same (f16-rounded) values, on both backends.

mod common;

use std::sync::Arc;

use common::assert_close;
use text2img::graph::{thread_pool, Backend};
use text2img::model::generator::{build_generator, build_generator_for};
use text2img::model::loader::save_weights;
use text2img::model::synthetic::synthetic_weights;
use text2img::model::{ModelConfig, Network, TextToImage, WeightSet};
use text2img::tensor::DType;
use text2img::weights::LoadMode;

#[test]
fn f16_file_generates_what_the_same_values_in_f32_generate() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = ModelConfig::builtin("shapes").expect("config");
    let nets = [Network::Encoder, Network::Generator];
    // Round once to f16, then write those exact values as f16 and as f32.
    let rounded: Vec<_> = synthetic_weights(&cfg, &nets)
        .into_iter()
        .map(|(n, t)| (n, t.to_dtype(DType::F16).to_dtype(DType::F32)))
        .collect();
    let (p16, p32) = (dir.path().join("h.safetensors"), dir.path().join("f.safetensors"));
    save_weights(&p16, &cfg, &nets, &rounded, DType::F16).expect("save f16");
    save_weights(&p32, &cfg, &nets, &rounded, DType::F32).expect("save f32");
    let (w16, w32) =
        (WeightSet::open(&p16, LoadMode::Mmap).expect("open"), WeightSet::open(&p32, LoadMode::Mmap).expect("open"));

    let g = build_generator(&w16).expect("graph");
    let half: Vec<&str> = g
        .params
        .iter()
        .filter(|p| matches!(&p.data, text2img::graph::ParamData::Packed(pa) if pa.is_f16()))
        .map(|p| p.name.as_str())
        .collect();
    assert!(half.len() >= 8, "G's GEMM weights should stay f16, got {half:?}");
    // At batch 8 the CPU pipeline below runs deconv3 (16×16 input) in phase + Winograd form and
    // both residual blocks' 3×3 convolutions in Winograd form.
    let g8 = build_generator_for(&w16, Some(8)).expect("graph");
    assert!(g8.params.iter().any(|p| matches!(p.data, text2img::graph::ParamData::Winograd(_))));
    assert!(g8.params.iter().any(|p| matches!(p.data, text2img::graph::ParamData::WinogradConv(_))));
    // At batch 1 the layers on small grids run in tap form, with their weights kept in f16.
    let g1 = build_generator_for(&w16, Some(1)).expect("graph");
    assert!(g1.params.iter().any(|p| matches!(&p.data, text2img::graph::ParamData::Taps(t) if t.is_f16())));

    let caps: Vec<String> =
        ["a small red circle on a blue background", "white ring", "a huge green star, black background"]
            .iter()
            .cycle()
            .take(8)
            .map(|s| s.to_string())
            .collect();
    let pool = thread_pool(2).expect("pool");
    for (backend, batch) in [(Backend::Cpu, 8), (Backend::Cpu, 1), (Backend::Reference, 8)] {
        let mut a = TextToImage::new(&w16, batch, Arc::clone(&pool), backend).expect("f16 pipeline");
        let mut b = TextToImage::new(&w32, batch, Arc::clone(&pool), backend).expect("f32 pipeline");
        let (ia, _) = a.generate(&caps[..batch], 9, 0).expect("f16 images");
        let (ib, _) = b.generate(&caps[..batch], 9, 0).expect("f32 images");
        // Only the order of operations differs (scale after the product instead of folded into
        // the weights): the parity tests' 1e-5 of the largest magnitude.
        assert_close(&format!("{backend:?} batch {batch} f16 vs f32 file"), &ia, &ib, 1e-5);
    }
}
