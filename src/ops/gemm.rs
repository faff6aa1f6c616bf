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

/// Fast: c[m, n] (row-major, row stride `ldc`) = a × b, parallel over blocks of rows on the
/// current rayon pool when `threads` > 1. BLIS-style: panels of b packed per (k, n) block,
/// panels of a packed per row block, an MR×NR register-tiled micro-kernel (AVX2+FMA when the
/// CPU has it, portable otherwise). Pack buffers are thread-local and only grow, so after the
/// first call of a given size nothing is allocated.
pub fn matmul(a: Mat, b: Mat, c: &mut [f32], ldc: usize, threads: usize) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "matmul inner dimensions");
    if m == 0 || n == 0 {
        return;
    }
    assert!(ldc >= n && c.len() >= (m - 1) * ldc + n, "dst too short");
    if k == 0 {
        c.chunks_mut(ldc).take(m).for_each(|row| row[..n].fill(0.0));
        return;
    }
    assert!(
        a.data.len() > a.last_index() && b.data.len() > b.last_index(),
        "operand too short"
    );
    let kernel = Kernel::detect();
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            PACK_B.with(|cell| {
                let mut bp = cell.borrow_mut();
                pack_b(&b, pc, kc, jc, nc, &mut bp);
                let ctx = Block {
                    a: &a,
                    bp: &bp,
                    pc,
                    kc,
                    jc,
                    nc,
                    accumulate: pc > 0,
                    kernel,
                };
                let blocks = m.div_ceil(MC);
                let c_ptr = SendPtr(c.as_mut_ptr());
                let run = |ib: usize| {
                    let ic = ib * MC;
                    let mc = MC.min(m - ic);
                    // SAFETY: row blocks [ic, ic+mc) are disjoint across ib, so each call writes
                    // rows no other call touches; every index written is < (m−1)·ldc + n ≤ len
                    // (asserted above). `c` is exclusively borrowed for this whole function.
                    let c_block = unsafe {
                        std::slice::from_raw_parts_mut(
                            c_ptr.get().add(ic * ldc),
                            (mc - 1) * ldc + n,
                        )
                    };
                    ctx.run_rows(ic, mc, c_block, ldc);
                };
                if threads > 1 && blocks > 1 && m * nc * kc >= 1 << 16 {
                    use rayon::prelude::*;
                    (0..blocks).into_par_iter().for_each(run);
                } else {
                    (0..blocks).for_each(run);
                }
            });
        }
    }
}

const MR: usize = 6;
const NR: usize = 16;
const KC: usize = 256;
const MC: usize = 72;
const NC: usize = 4096;

thread_local! {
    static PACK_A: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    static PACK_B: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A raw pointer that may cross to pool threads (see the SAFETY note where it is used).
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: only used to hand disjoint row blocks of one exclusively borrowed slice to workers.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Which micro-kernel runs.
#[derive(Clone, Copy, Debug)]
enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
}

impl Kernel {
    fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Kernel::Avx2Fma;
        }
        Kernel::Portable
    }
}

/// Packs b[pc..pc+kc, jc..jc+nc] into panels of NR columns, each kc × NR, zero-padded.
fn pack_b(b: &Mat, pc: usize, kc: usize, jc: usize, nc: usize, out: &mut Vec<f32>) {
    let panels = nc.div_ceil(NR);
    if out.len() < panels * kc * NR {
        out.resize(panels * kc * NR, 0.0);
    }
    for p in 0..panels {
        let dst = &mut out[p * kc * NR..(p + 1) * kc * NR];
        let j0 = jc + p * NR;
        let w = NR.min(jc + nc - j0);
        for kk in 0..kc {
            let row = &mut dst[kk * NR..(kk + 1) * NR];
            let base = (pc + kk) * b.rs + j0 * b.cs;
            if b.cs == 1 {
                row[..w].copy_from_slice(&b.data[base..base + w]);
            } else {
                for (j, v) in row[..w].iter_mut().enumerate() {
                    *v = b.data[base + j * b.cs];
                }
            }
            row[w..].fill(0.0);
        }
    }
}

/// Packs a[ic..ic+mc, pc..pc+kc] into panels of MR rows, each kc × MR, zero-padded.
fn pack_a(a: &Mat, ic: usize, mc: usize, pc: usize, kc: usize, out: &mut Vec<f32>) {
    let panels = mc.div_ceil(MR);
    if out.len() < panels * kc * MR {
        out.resize(panels * kc * MR, 0.0);
    }
    for p in 0..panels {
        let dst = &mut out[p * kc * MR..(p + 1) * kc * MR];
        let i0 = ic + p * MR;
        let h = MR.min(ic + mc - i0);
        for i in 0..MR {
            if i >= h {
                (0..kc).for_each(|kk| dst[kk * MR + i] = 0.0);
                continue;
            }
            let base = (i0 + i) * a.rs + pc * a.cs;
            for kk in 0..kc {
                dst[kk * MR + i] = a.data[base + kk * a.cs];
            }
        }
    }
}

/// One (k, n) block of the product, shared by the row-block workers.
struct Block<'a> {
    a: &'a Mat<'a>,
    bp: &'a [f32],
    pc: usize,
    kc: usize,
    jc: usize,
    nc: usize,
    accumulate: bool,
    kernel: Kernel,
}

impl Block<'_> {
    /// Computes rows [ic, ic+mc) of this block into `c` (which starts at row ic).
    fn run_rows(&self, ic: usize, mc: usize, c: &mut [f32], ldc: usize) {
        PACK_A.with(|cell| {
            let mut ap = cell.borrow_mut();
            pack_a(self.a, ic, mc, self.pc, self.kc, &mut ap);
            let mut tile = [0.0f32; MR * NR];
            for jp in 0..self.nc.div_ceil(NR) {
                let j0 = self.jc + jp * NR;
                let w = NR.min(self.jc + self.nc - j0);
                let bpanel = &self.bp[jp * self.kc * NR..(jp + 1) * self.kc * NR];
                for ip in 0..mc.div_ceil(MR) {
                    let h = MR.min(mc - ip * MR);
                    let apanel = &ap[ip * self.kc * MR..(ip + 1) * self.kc * MR];
                    micro(self.kernel, self.kc, apanel, bpanel, &mut tile);
                    for i in 0..h {
                        let dst = &mut c[(ip * MR + i) * ldc + j0..][..w];
                        let src = &tile[i * NR..i * NR + w];
                        if self.accumulate {
                            dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
                        } else {
                            dst.copy_from_slice(src);
                        }
                    }
                }
            }
        });
    }
}

/// tile[MR×NR] = Σ_p a[p, 0..MR] ⊗ b[p, 0..NR] over kc packed steps.
#[inline]
fn micro(kernel: Kernel, kc: usize, a: &[f32], b: &[f32], tile: &mut [f32; MR * NR]) {
    assert!(a.len() >= kc * MR && b.len() >= kc * NR);
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2 and FMA (checked by Kernel::detect), and the lengths of a
        // and b are asserted above.
        Kernel::Avx2Fma => unsafe { micro_avx2(kc, a, b, tile) },
        Kernel::Portable => micro_portable(kc, a, b, tile),
    }
}

fn micro_portable(kc: usize, a: &[f32], b: &[f32], tile: &mut [f32; MR * NR]) {
    tile.fill(0.0);
    for p in 0..kc {
        let bp = &b[p * NR..(p + 1) * NR];
        for i in 0..MR {
            let av = a[p * MR + i];
            let row = &mut tile[i * NR..(i + 1) * NR];
            row.iter_mut().zip(bp).for_each(|(t, &bv)| *t += av * bv);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn micro_avx2(kc: usize, a: &[f32], b: &[f32], tile: &mut [f32; MR * NR]) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    let (ap, bp) = (a.as_ptr(), b.as_ptr());
    for p in 0..kc {
        // SAFETY: p < kc, so p·NR + 16 ≤ kc·NR ≤ b.len() and p·MR + i < kc·MR ≤ a.len().
        unsafe {
            let b0 = _mm256_loadu_ps(bp.add(p * NR));
            let b1 = _mm256_loadu_ps(bp.add(p * NR + 8));
            for (i, row) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*ap.add(p * MR + i));
                row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                row[1] = _mm256_fmadd_ps(av, b1, row[1]);
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: i·NR + 16 ≤ MR·NR, the tile's length.
        unsafe {
            _mm256_storeu_ps(tile.as_mut_ptr().add(i * NR), row[0]);
            _mm256_storeu_ps(tile.as_mut_ptr().add(i * NR + 8), row[1]);
        }
    }
}
