//! The three networks of GAN-INT-CLS as graphs (char-CNN-RNN encoder, generator,
//! discriminator), their configs and parameter names, the caption encoding, loading weights
//! into graphs (BN folded, weights packed, mapped tensors used in place), and the
//! caption → image pipeline.

pub mod config;
pub mod discriminator;
pub mod encoder;
pub mod generator;
pub mod layers;
pub mod loader;
pub mod net;
pub mod pipeline;
pub mod rerank;
pub mod spec;
pub mod synthetic;
pub mod text;

pub use config::ModelConfig;
pub use loader::WeightSet;
pub use pipeline::TextToImage;
pub use spec::Network;
