//! Shared test helpers: seeded random data, poisoned buffers, relative-error checks.
#![allow(dead_code)]

pub mod gan_step;

use std::path::{Path, PathBuf};

use text2img::model::config::{DiscriminatorConfig, EncoderConfig, GeneratorConfig, RnnKind, TextConfig, ALPHABET};
use text2img::model::ModelConfig;

/// Renames class `from` of a CUB-layout dataset at `root` to `to` (class lists and folders),
/// e.g. to make a `shapes` class look like a CUB one.
pub fn rename_class(root: &Path, from: &str, to: &str) {
    for list in ["allclasses.txt", "trainvalclasses.txt", "testclasses.txt"] {
        let p = root.join(list);
        let s = std::fs::read_to_string(&p).expect("read class list").replace(from, to);
        std::fs::write(&p, s).expect("write class list");
    }
    for sub in ["images", "text_c10"] {
        std::fs::rename(root.join(sub).join(from), root.join(sub).join(to)).expect("rename class folder");
    }
}

/// Deterministic uniform values in [-1, 1) (xorshift64*), fresh per seed.
pub fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let r = s.wrapping_mul(0x2545_F491_4F6C_DD1D);
            ((r >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A buffer of NaNs: any element an op forgets to write stays NaN and fails `assert_close`.
pub fn poisoned(n: usize) -> Vec<f32> {
    vec![f32::NAN; n]
}

/// Max |a−b| / (max|b| + floor): error relative to the reference's scale.
pub fn rel_error(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let scale = b.iter().fold(0.0f64, |m, &x| m.max(x.abs() as f64)).max(1e-6);
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).abs()).fold(0.0, f64::max) / scale
}

/// Asserts every element is finite and the relative error is within `tol`.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    if let Some(i) = got.iter().position(|x| !x.is_finite()) {
        panic!("{what}: element {i} is {} (not written, or overflow)", got[i]);
    }
    let e = rel_error(got, want);
    assert!(e <= tol, "{what}: relative error {e:.3e} > {tol:.1e}");
}

/// The repository root: $CARGO_MANIFEST_DIR when run by cargo, else the working directory (so
/// test executables can run from a copy of the tree).
pub fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}

/// The micro config of the training tests and training goldens (named "tiny" there; scripts/reference.py
/// `train_config()`): every layer present, every size minimal (doc 60 → 2 GRU steps).
pub fn micro_config() -> ModelConfig {
    ModelConfig {
        name: "tiny".into(),
        text: TextConfig { alphabet: ALPHABET.into(), doc_length: 60 },
        encoder: EncoderConfig {
            conv_channels: [6, 8, 8],
            kernel_size: 4,
            pool_size: 3,
            final_pool: None,
            rnn: RnnKind::Gru,
            rnn_hidden: 8,
            embed_dim: 8,
        },
        generator: GeneratorConfig { nz: 4, nt: 4, ngf: 2, refine: false },
        discriminator: DiscriminatorConfig { ndf: 2, nt: 4, act_after_deep: false, batch_norm: true },
    }
}

/// Opens a training golden (scripts/reference.py): checks its format tag and that it was made
/// for `micro_config()`; returns the file and its `options` JSON.
pub fn open_train_golden(name: &str, format: &str) -> (text2img::weights::WeightFile, serde_json::Value) {
    use text2img::weights::{LoadMode, WeightFile};
    let path = repo_root().join(format!("tests/data/golden/{name}"));
    let file = WeightFile::open(&path, LoadMode::Read).expect("golden file (scripts/reference.py)");
    assert_eq!(file.metadata("format"), Some(format), "golden format");
    let config = ModelConfig::from_json(file.metadata("config").expect("config")).expect("config");
    assert_eq!(config, micro_config(), "golden config differs from micro_config()");
    let options = serde_json::from_str(file.metadata("options").expect("options")).expect("options");
    (file, options)
}

/// Asserts a training golden holds a `grad.` tensor for exactly `net`'s parameters (PyTorch's
/// named_parameters) and a `new.` tensor for exactly its parameters and buffers (its state_dict).
pub fn assert_same_names(file: &text2img::weights::WeightFile, net: &str, graph: &text2img::train::graph::TrainGraph) {
    use std::collections::BTreeSet;
    let prefix = format!("{net}.");
    let golden = |kind: &str| -> BTreeSet<String> {
        let names = file.header().tensors.iter().filter_map(|t| t.name.strip_prefix(kind).map(String::from));
        names.filter(|n| n.starts_with(&prefix)).collect()
    };
    let params: BTreeSet<String> = graph.params.iter().map(|s| s.name.clone()).collect();
    assert_eq!(params, golden("grad."), "{net}: parameter names differ from PyTorch's named_parameters");
    let state: BTreeSet<String> = params.iter().cloned().chain(graph.buffers.iter().map(|s| s.name.clone())).collect();
    assert_eq!(state, golden("new."), "{net}: parameters + buffers differ from PyTorch's state_dict");
}
