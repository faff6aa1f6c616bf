//! text2img: the GAN-INT-CLS text-to-image model (Reed et al., ICML 2016) and its char-CNN-RNN
//! text encoder (CVPR 2016), on a CPU backend behind one graph executor, with mapped weights.

pub mod data;
pub mod error;

pub use error::{Error, Result};
