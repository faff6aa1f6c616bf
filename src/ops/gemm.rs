//! Matrix multiply: a plain reference and the fast path through the `gemm` crate (AVX2/AVX-512
//! kernels, threads from the caller's rayon pool). Strides are in elements: element (i, j) of a
//! matrix with row stride rs and column stride cs is at i·rs + j·cs.

/// A strided matrix view.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major [rows, cols] matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Mat<'a> {
        Mat {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major [cols, rows] matrix, viewed as [rows, cols].
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Mat<'a> {
        Mat {
            data,
            rows,
            cols,
            rs: 1,
            cs: rows,
        }
    }

    fn last_index(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * self.rs + (self.cols - 1) * self.cs
        }
    }

    #[inline]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }
}

/// Reference: c[m, n] (row-major, row stride `ldc`) = a × b, accumulating in f64.
pub fn matmul_ref(a: Mat, b: Mat, c: &mut [f32], ldc: usize) {
    assert_eq!(a.cols, b.rows, "matmul inner dimensions");
    for i in 0..a.rows {
        for j in 0..b.cols {
            let mut acc = 0.0f64;
            for k in 0..a.cols {
                acc += a.at(i, k) as f64 * b.at(k, j) as f64;
            }
            c[i * ldc + j] = acc as f32;
        }
    }
}

/// Fast: c[m, n] (row-major, row stride `ldc`) = a × b, using `threads` threads of the
/// current rayon pool.
pub fn matmul(a: Mat, b: Mat, c: &mut [f32], ldc: usize, threads: usize) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "matmul inner dimensions");
    if m == 0 || n == 0 {
        return;
    }
    assert!(a.data.len() > a.last_index() || k == 0, "lhs too short");
    assert!(b.data.len() > b.last_index() || k == 0, "rhs too short");
    assert!(ldc >= n && c.len() >= (m - 1) * ldc + n, "dst too short");
    if k == 0 {
        for row in c.chunks_mut(ldc).take(m) {
            row[..n].fill(0.0);
        }
        return;
    }
    let par = if threads > 1 && m * n * k >= 1 << 15 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above bound every element the call reads or writes: lhs (i, k) at
    // i·rs + k·cs ≤ last_index < len, the same for rhs, and dst (i, j) at i·ldc + j <
    // (m−1)·ldc + n ≤ len. `c` is a unique borrow, so dst aliases neither input. read_dst is
    // false, so dst needs no initial value (alpha is ignored).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            false,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}
