//! The portable micro-kernel (what non-x86 and older x86 CPUs run) against the reference. A
//! separate test binary, because forcing the kernel is process-wide.

mod common;

use common::{assert_close, poisoned, random};
use text2img::ops::gemm::{force_portable_kernel, matmul, matmul_packed, matmul_ref, Mat, Out, PackedA};

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
    force_portable_kernel(false);
}
