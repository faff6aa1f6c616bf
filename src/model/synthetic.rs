//! Synthetic weights from a hash of each tensor's name and element index (docs/WEIGHTS.md), so
//! tests and benchmarks at any size need no committed weights, and the PyTorch reference script
//! computes the very same values.

use super::config::ModelConfig;
use super::spec::{specs, Network};
use crate::tensor::Tensor;

/// FNV-1a, 64 bits.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

/// SplitMix64's output function applied to seed + (i + 1)·γ, mapped to [-1, 1).
pub fn unit_hash(seed: u64, i: u64) -> f64 {
    let x = crate::rng::mix64(seed.wrapping_add((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    2.0 * ((x >> 40) as f64) / 16_777_216.0 - 1.0
}

/// The value rule for a tensor, by kind.
fn value(name: &str, shape: &[usize], s: f64) -> f64 {
    let parts: Vec<&str> = name.split('.').collect();
    let param = parts[parts.len() - 1];
    let layer = if parts.len() >= 2 { parts[parts.len() - 2] } else { "" };
    let is_bn = layer.starts_with("bn") || layer == "text_bn";
    if is_bn {
        return match param {
            "weight" => 1.0 + 0.1 * s,
            "running_var" => 1.0 + 0.25 * (s + 1.0),
            _ => 0.1 * s,
        };
    }
    if shape.len() < 2 {
        return 0.1 * s;
    }
    let tail: usize = shape[2..].iter().product();
    if layer == "rnn" {
        return s * (1.0 / shape[1] as f64).sqrt();
    }
    let fan_in = if layer.starts_with("deconv") { (shape[0] * tail) as f64 / 4.0 } else { (shape[1] * tail) as f64 };
    s * (6.0 / fan_in).sqrt()
}

/// One synthetic tensor.
pub fn synthetic_tensor(name: &str, shape: &[usize]) -> Tensor {
    let seed = fnv1a64(name.as_bytes());
    let n: usize = shape.iter().product();
    let data = (0..n).map(|i| value(name, shape, unit_hash(seed, i as u64)) as f32).collect();
    Tensor::from_f32(shape, data)
}

/// Every tensor of the given networks.
pub fn synthetic_weights(cfg: &ModelConfig, nets: &[Network]) -> Vec<(String, Tensor)> {
    nets.iter()
        .flat_map(|&n| specs(cfg, n))
        .map(|(name, shape)| {
            let t = synthetic_tensor(&name, &shape);
            (name, t)
        })
        .collect()
}
