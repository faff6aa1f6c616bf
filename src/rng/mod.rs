//! Random numbers: a counter-based generator (Philox4x32-10), so that noise depends only on
//! (seed, image index, element), never on batch size, threads or device.

pub mod philox;

pub use philox::{normal_noise, philox4x32_10};
