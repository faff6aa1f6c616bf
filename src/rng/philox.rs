//! Philox4x32-10 (Salmon et al., SC'11, as in Random123 and cuRAND) and the Box–Muller noise of
//! docs/WEIGHTS.md: element k of z for image i of seed s uses counter [k/4, 0, i_lo, i_hi].

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

#[inline]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = (a as u64) * (b as u64);
    ((p >> 32) as u32, p as u32)
}

/// Ten rounds of Philox4x32 on `counter` with `key`.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let (hi0, lo0) = mulhilo(M0, c[0]);
        let (hi1, lo1) = mulhilo(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// Uniform in (0, 1] from the top 24 bits of a word.
#[inline]
fn unit(w: u32) -> f64 {
    ((w >> 8) as f64 + 1.0) * (1.0 / 16_777_216.0)
}

/// Four standard normals from one Philox block.
fn block_normals(seed: u64, image: u64, block: u32) -> [f32; 4] {
    let key = [seed as u32, (seed >> 32) as u32];
    let w = philox4x32_10([block, 0, image as u32, (image >> 32) as u32], key);
    let mut out = [0.0f32; 4];
    for p in 0..2 {
        let r = (-2.0 * unit(w[2 * p]).ln()).sqrt();
        let theta = std::f64::consts::TAU * unit(w[2 * p + 1]);
        out[2 * p] = (r * theta.cos()) as f32;
        out[2 * p + 1] = (r * theta.sin()) as f32;
    }
    out
}

/// Fills `z` (length nz) with the noise of image `image` for `seed`.
pub fn normal_noise(seed: u64, image: u64, z: &mut [f32]) {
    for (b, chunk) in z.chunks_mut(4).enumerate() {
        let n = block_normals(seed, image, b as u32);
        chunk.copy_from_slice(&n[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors of Random123 (kat_vectors, philox4x32_10).
    #[test]
    fn philox_known_answers() {
        assert_eq!(philox4x32_10([0; 4], [0; 2]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
        assert_eq!(philox4x32_10([u32::MAX; 4], [u32::MAX; 2]), [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]);
        assert_eq!(
            philox4x32_10([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn noise_is_per_image_and_normal() {
        let mut a = vec![0.0; 100];
        let mut b = vec![0.0; 100];
        normal_noise(42, 3, &mut a);
        normal_noise(42, 3, &mut b);
        assert_eq!(a, b);
        normal_noise(42, 4, &mut b);
        assert_ne!(a, b);
        // Moments over many draws: mean 0, variance 1 (tolerance ~5 standard errors).
        let mut all = vec![0.0f32; 100 * 400];
        for (i, c) in all.chunks_mut(100).enumerate() {
            normal_noise(7, i as u64, c);
        }
        let n = all.len() as f64;
        let mean = all.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = all.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 5.0 / n.sqrt(), "mean {mean}");
        assert!((var - 1.0).abs() < 5.0 * (2.0 / n).sqrt(), "var {var}");
    }
}
