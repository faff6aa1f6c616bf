//! The portable micro-kernel (what non-x86 and older x86 CPUs run) against the reference. A
//! separate test binary, because forcing the kernel is process-wide.

mod common;

use common::{assert_close, poisoned, random};
use text2img::ops::gemm::{force_portable_kernel, matmul, matmul_ref, Mat, Out};

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
    }
    force_portable_kernel(false);
}
