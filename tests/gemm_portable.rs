//! The portable micro-kernels (what non-x86 and older x86 CPUs run) against the reference. A
//! separate test binary, because forcing the kernel is process-wide.

mod common;

use common::{assert_close, poisoned, random};
use text2img::ops::conv2d::{conv2d_ref, Conv2dGeom};
use text2img::ops::gemm::{force_portable_kernel, matmul, matmul_packed, matmul_ref, Mat, Out, PackedA};
use text2img::ops::tap_conv::{self, TapShape, TapWeights};
use text2img::ops::Epilogue;

#[test]
fn portable_kernel_matches_reference() {
    force_portable_kernel(true);
    for &(m, k, n) in &[(1, 1, 1), (13, 300, 17), (100, 513, 40)] {
        let a = random(m * k, 5);
        let b = random(k * n, 6);
        let mut want = vec![0.0; m * n];
        matmul_ref(Mat::row_major(&a, m, k), Mat::row_major(&b, k, n), &mut want, Out::rows(n));
        let mut got = poisoned(m * n);
        matmul(Mat::row_major(&a, m, k), Mat::row_major(&b, k, n), &mut got, Out::rows(n), 1);
        // Same tolerance and reason as tests/ops_cpu_vs_reference.rs.
        assert_close(&format!("portable {m}x{k}x{n}"), &got, &want, 1e-5);
        // f16 panels through the portable kernel (and, for n = 1, its matrix-vector path).
        let half = PackedA::from_row_major_f16(&a, m, k);
        let rounded: Vec<f32> = a.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect();
        for n in [n, 1] {
            let mut want = vec![0.0; m * n];
            matmul_ref(Mat::row_major(&rounded, m, k), Mat::row_major(&b[..k * n], k, n), &mut want, Out::rows(n));
            let mut got = poisoned(m * n);
            matmul_packed(&half, Mat::row_major(&b[..k * n], k, n), &mut got, Out::rows(n), 1);
            assert_close(&format!("portable f16 {m}x{k}x{n}"), &got, &want, 1e-5);
        }
    }
    // The batch-1 tap form's portable tile (the same switch): a 3×3 convolution on an odd grid.
    let g = Conv2dGeom { cin: 20, h: 5, w: 3, cout: 64, kh: 3, kw: 3, stride: 1, pad: 1 };
    let s = TapShape::conv(&g).expect("conv shape");
    let (x, w) = (random(g.in_len(), 7), random(g.cout * g.kdim(), 8));
    let epi = Epilogue::default();
    let mut want = vec![0.0; g.out_len()];
    conv2d_ref(&x, &w, 1, &g, &epi, &mut want);
    let mut got = poisoned(g.out_len());
    let mut scratch = poisoned(tap_conv::scratch_len(&s));
    TapWeights::new(&w, &s, false).forward(&x, 1, &epi, &mut scratch, &mut got);
    assert_close("portable tap form", &got, &want, 1e-5);
    force_portable_kernel(false);
}
