//! Weights: the safetensors parser, mapped files, the writer, and the check of a file against a
//! model config.

mod error;
pub mod file;
pub mod safetensors;
pub mod writer;

pub use error::WeightsError;
pub use file::{LoadMode, WeightFile, FORMAT};
