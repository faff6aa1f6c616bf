//! f16 ⇄ f32 for runs of values, with AVX-512F's conversion instructions where the CPU has them
//! (16 lanes at a time; the `half` crate converts one value per call on a portable build):
//! loading an f16 file, f16 GEMM panels and tap-form weights, and their widening as the kernels
//! read them.

/// f16 → f32 for a run of values (a file's tensors, packed weights): 16 lanes at a time with
/// AVX-512F's vcvtph2ps where the CPU has it, else `half`'s slice conversion.
pub(crate) fn widen_f16(src: &[half::f16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "widen sizes");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above).
        return unsafe { widen_f16_avx512(src, dst) };
    }
    widen_f16_portable(src, dst);
}

/// The portable widening (`half`'s slice conversion): a CPU without AVX-512F, and the tail.
fn widen_f16_portable(src: &[half::f16], dst: &mut [f32]) {
    half::slice::HalfFloatSliceExt::convert_to_f32_slice(src, dst);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn widen_f16_avx512(src: &[half::f16], dst: &mut [f32]) {
    use std::arch::x86_64::{__m256i, _mm256_loadu_si256, _mm512_cvtph_ps, _mm512_storeu_ps};
    let n = src.len() / 16 * 16;
    for i in (0..n).step_by(16) {
        // SAFETY: i + 16 ≤ n ≤ src.len() = dst.len(): 32 bytes read from src and 64 written to
        // dst, both in bounds; unaligned loads and stores.
        unsafe {
            let h = _mm256_loadu_si256(src.as_ptr().add(i) as *const __m256i);
            _mm512_storeu_ps(dst.as_mut_ptr().add(i), _mm512_cvtph_ps(h));
        }
    }
    widen_f16_portable(&src[n..], &mut dst[n..]);
}

/// f32 → f16, rounded to nearest even, for a run of values: 16 lanes at a time with AVX-512F's
/// vcvtps2ph where the CPU has it (the same instruction and rounding `half` uses one value at a
/// time), else `half`'s slice conversion.
pub(crate) fn narrow_f16(src: &[f32], dst: &mut [half::f16]) {
    assert_eq!(src.len(), dst.len(), "narrow sizes");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above).
        return unsafe { narrow_f16_avx512(src, dst) };
    }
    narrow_f16_portable(src, dst);
}

/// The portable narrowing (`half`'s slice conversion): a CPU without AVX-512F, and the tail.
fn narrow_f16_portable(src: &[f32], dst: &mut [half::f16]) {
    half::slice::HalfFloatSliceExt::convert_from_f32_slice(dst, src);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn narrow_f16_avx512(src: &[f32], dst: &mut [half::f16]) {
    use std::arch::x86_64::_MM_FROUND_TO_NEAREST_INT;
    use std::arch::x86_64::{__m256i, _mm256_storeu_si256, _mm512_cvtps_ph, _mm512_loadu_ps, _MM_FROUND_NO_EXC};
    let n = src.len() / 16 * 16;
    for i in (0..n).step_by(16) {
        // SAFETY: i + 16 ≤ n ≤ src.len() = dst.len(): 64 bytes read from src and 32 written to
        // dst, both in bounds; unaligned loads and stores.
        unsafe {
            let v = _mm512_loadu_ps(src.as_ptr().add(i));
            let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
            _mm256_storeu_si256(dst.as_mut_ptr().add(i) as *mut __m256i, h);
        }
    }
    narrow_f16_portable(&src[n..], &mut dst[n..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    /// Values that exercise every branch of the f16 conversion: signed zeros, infinities, NaN,
    /// the largest finite f16 and past it, subnormals, ties of round-to-nearest-even, and a
    /// spread of magnitudes; 83 of them, so the vector loop and its scalar tail both run.
    fn specials() -> Vec<f32> {
        let mut v = vec![0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 65504.0, 65520.0, 1e6, -7e4];
        v.extend([6e-8, 5.96e-8, 2.98e-8, 1e-6, -3e-5, 6.1e-5, 1.0 + 1.0 / 2048.0, 1.0 + 3.0 / 2048.0]);
        let mut s = 0x2545_F491u32;
        while v.len() < 83 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let e = (s >> 24) as i32 % 40 - 20;
            v.push(((s & 0xFFFF) as f32 / 65536.0 - 0.5) * 2f32.powi(e));
        }
        v
    }

    /// The dispatching conversion (AVX-512F where this CPU has it) and the portable one, so a
    /// machine with AVX-512F tests both branches.
    type Narrow = fn(&[f32], &mut [f16]);
    type Widen = fn(&[f16], &mut [f32]);
    const NARROWS: [(&str, Narrow); 2] = [("dispatch", narrow_f16), ("portable", narrow_f16_portable)];
    const WIDENS: [(&str, Widen); 2] = [("dispatch", widen_f16), ("portable", widen_f16_portable)];

    #[test]
    fn narrow_f16_rounds_as_half_does_one_value_at_a_time() {
        let src = specials();
        for (what, narrow) in NARROWS {
            let mut got = vec![f16::from_bits(0x7E01); src.len()];
            narrow(&src, &mut got);
            for (x, g) in src.iter().zip(&got) {
                let want = f16::from_f32(*x);
                assert!(
                    g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                    "{what} {x}: {g} against {want}"
                );
            }
        }
    }

    #[test]
    fn widen_f16_is_exact() {
        let half: Vec<f16> = specials().iter().map(|&x| f16::from_f32(x)).collect();
        for (what, widen) in WIDENS {
            let mut got = vec![f32::NAN; half.len()];
            widen(&half, &mut got);
            for (h, g) in half.iter().zip(&got) {
                assert!(g.to_bits() == h.to_f32().to_bits() || (g.is_nan() && h.is_nan()), "{what} {h}: {g}");
            }
        }
    }
}
