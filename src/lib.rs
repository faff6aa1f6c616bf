//! text2img: the GAN-INT-CLS text-to-image model (Reed et al., ICML 2016) and its char-CNN-RNN
//! text encoder (CVPR 2016), on a CPU backend behind one graph executor, with mapped weights.
//!
//! Layers of the system, bottom up: `tensor` (host tensors), `ops` (reference and fast CPU
//! kernels), `graph` (construct / plan / run), `weights` (safetensors, mapped), `model` (the
//! three networks as graphs, configs, text encoding), `rng` (Philox noise), `image` (PNG out).

#[cfg(feature = "cuda")]
pub mod cuda;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod graph;
pub mod image;
pub mod model;
pub mod ops;
pub mod rng;
pub mod tensor;
pub mod train;
pub mod weights;

pub use error::{Error, Result};
