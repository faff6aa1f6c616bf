//! Random numbers: a counter-based generator (Philox4x32-10), so that noise depends only on
//! (seed, image index, element), never on batch size, threads or device.

pub mod philox;

pub use philox::{normal_noise, philox4x32_10};

/// SplitMix64's finaliser: a bijective 64-bit mix (seeds, hashes).
pub fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}
