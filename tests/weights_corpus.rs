//! The malformed-weights corpus (tests/data/bad_weights, written by scripts/make_bad_weights.py):
//! every file is refused with a one-line error containing the expected phrase, never a panic.

mod common;

use std::collections::BTreeMap;

use common::repo_root;
use text2img::model::WeightSet;
use text2img::weights::LoadMode;

#[test]
fn every_malformed_file_is_refused_with_its_reason() {
    let dir = repo_root().join("tests/data/bad_weights");
    let manifest: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).expect("manifest"))
            .expect("manifest JSON");
    assert!(manifest.len() >= 25, "corpus shrank");
    for (file, phrase) in &manifest {
        for mode in [LoadMode::Mmap, LoadMode::Read] {
            let path = dir.join(file);
            let err = match WeightSet::open(&path, mode) {
                Ok(_) => panic!("{file}: accepted"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(phrase), "{file}: error '{err}' lacks '{phrase}'");
            assert!(err.contains(file.as_str()), "{file}: error '{err}' does not name the file");
            assert!(!err.contains('\n'), "{file}: error is not one line: {err}");
        }
    }
}

#[test]
fn mismatch_lists_every_problem_at_once() {
    let path = repo_root().join("tests/data/bad_weights/wrong_tensors.safetensors");
    let err = WeightSet::open(&path, LoadMode::Read).err().expect("refused").to_string();
    for phrase in
        ["'encoder.conv1.weight' has shape [2, 2]", "missing 'encoder.proj.bias'", "unexpected 'extra.weight'"]
    {
        assert!(err.contains(phrase), "'{err}' lacks '{phrase}'");
    }
}

#[test]
fn missing_file_names_the_path() {
    let err = WeightSet::open(std::path::Path::new("/no/such/weights.safetensors"), LoadMode::Mmap)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("/no/such/weights.safetensors"), "{err}");
}
