//! The Rust forward passes against the PyTorch goldens of scripts/reference.py (computed in
//! f64 from the same synthetic weights; see docs/WEIGHTS.md). Caption → one-hot → embedding →
//! image and D's logits, at both encoder variants and both GAN sizes.
//!
//! Tolerance: 1e-5 of the output's largest magnitude. PyTorch's own f32 forward differs from the
//! f64 goldens by ≤ 1.4e-6 absolute (measured by the reference script); our f32 path with BN
//! folded and a different summation order measured below 3e-6; 1e-5 leaves a margin of ~3×
//! while catching any real error (a wrong tap or gate moves outputs by ≥ 1e-3).

mod common;

use std::sync::Arc;

use common::{assert_close, repo_root};
use text2img::graph::{thread_pool, Backend, Session};
use text2img::model::discriminator::build_discriminator;
use text2img::model::encoder::build_encoder;
use text2img::model::synthetic::synthetic_weights;
use text2img::model::text::encode_batch;
use text2img::model::{ModelConfig, Network, TextToImage, WeightSet};
use text2img::rng::normal_noise;
use text2img::weights::{LoadMode, WeightFile};

const TOL: f64 = 1e-5;

struct Golden {
    file: WeightFile,
    captions: Vec<String>,
    config: ModelConfig,
}

impl Golden {
    fn load(name: &str) -> Golden {
        let path = repo_root().join(format!("tests/data/golden/{name}.safetensors"));
        let file = WeightFile::open(&path, LoadMode::Read).expect("golden file");
        let captions: Vec<String> =
            serde_json::from_str(file.metadata("captions").expect("captions")).expect("captions JSON");
        let config = ModelConfig::from_json(file.metadata("config").expect("config")).expect("config");
        assert_eq!(config, ModelConfig::builtin(name).expect("builtin"), "golden config differs from the built-in");
        Golden { file, captions, config }
    }

    fn tensor(&self, name: &str) -> Vec<f32> {
        self.file.f32_data(name).expect(name).into_owned()
    }

    fn weights(&self, nets: &[Network]) -> WeightSet {
        WeightSet::from_tensors(self.config.clone(), nets, synthetic_weights(&self.config, nets)).expect("weights")
    }
}

fn check_encoder(name: &str, backend: Backend) {
    let g = Golden::load(name);
    let (onehot, _) = encode_batch(&g.captions, g.config.text.doc_length);
    assert_eq!(onehot, g.tensor("onehot"), "{name}: one-hot differs from PyTorch's");
    let ws = g.weights(&[Network::Encoder]);
    let mut s = Session::new(
        Arc::new(build_encoder(&ws).expect("encoder")),
        g.captions.len(),
        thread_pool(2).expect("pool"),
        backend,
    );
    s.input_mut(0).copy_from_slice(&onehot);
    s.run();
    assert_close(&format!("{name} embedding ({backend:?})"), s.output(0), &g.tensor("embedding"), TOL);
}

#[test]
fn encoder_gru18_matches_pytorch() {
    check_encoder("reed-cub", Backend::Cpu);
    check_encoder("shapes", Backend::Cpu);
}

#[test]
fn encoder_rnn8_matches_pytorch() {
    check_encoder("reed-flowers", Backend::Cpu);
    check_encoder("reed-flowers", Backend::Reference);
}

#[test]
fn noise_matches_pytorch_philox() {
    for name in ["reed-cub", "shapes"] {
        let g = Golden::load(name);
        let seed: u64 = g.file.metadata("seed").expect("seed").parse().expect("seed number");
        let nz = g.config.generator.nz;
        let mut z = vec![0.0; nz * g.captions.len()];
        for (i, c) in z.chunks_mut(nz).enumerate() {
            normal_noise(seed, i as u64, c);
        }
        assert_close(&format!("{name} z"), &z, &g.tensor("z"), 1e-6);
    }
}

fn check_end_to_end(name: &str) {
    let g = Golden::load(name);
    let ws = g.weights(&[Network::Encoder, Network::Generator, Network::Discriminator]);
    let pool = thread_pool(2).expect("pool");
    let mut t2i = TextToImage::new(&ws, 1, Arc::clone(&pool), Backend::Cpu).expect("pipeline");
    let seed: u64 = g.file.metadata("seed").expect("seed").parse().expect("seed number");
    // Caption → embedding → image, all ours: only the captions and the seed come from PyTorch.
    let (image, reports) = t2i.generate(&g.captions, seed, 0).expect("generate");
    assert!(reports.iter().any(|r| r.truncated_chars > 0), "a golden caption is longer than doc_length");
    assert_close(&format!("{name} image"), &image, &g.tensor("image"), TOL);
    let mut d = Session::new(Arc::new(build_discriminator(&ws).expect("D")), g.captions.len(), pool, Backend::Cpu);
    d.input_mut(0).copy_from_slice(&g.tensor("image"));
    d.input_mut(1).copy_from_slice(&g.tensor("embedding"));
    d.run();
    assert_close(&format!("{name} d_logits"), d.output(0), &g.tensor("d_logits"), TOL);
}

#[test]
fn reed_cub_caption_to_image_and_d_match_pytorch() {
    check_end_to_end("reed-cub");
}

#[test]
fn shapes_caption_to_image_and_d_match_pytorch() {
    check_end_to_end("shapes");
}
