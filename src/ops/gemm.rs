//! Matrix multiply, our own: a plain reference and a BLIS-style fast path. Strides are in
//! elements: element (i, j) of a matrix with row stride rs and column stride cs is at i·rs + j·cs.
//!
//! Fast path: the left operand is cut into panels of MR rows × KC steps (weights are packed
//! this way once, at load: `PackedA`), the right operand into panels of KC × NR packed per call
//! into a thread-local buffer, and an MR×NR register tile is accumulated by the micro-kernel
//! (AVX-512F 6×32, AVX2+FMA 6×16, or portable 6×16, chosen at run time). Row blocks run in
//! parallel on the caller's rayon pool. Pack buffers only grow, so repeated calls of one size
//! allocate nothing. The destination may have any strides (C or Cᵀ layouts).

use std::cell::RefCell;

use rayon::prelude::*;

use crate::tensor::convert::{narrow_f16, widen_f16};

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
        Mat { data, rows, cols, rs: cols, cs: 1 }
    }

    /// The transpose of a row-major [cols, rows] matrix, viewed as [rows, cols].
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Mat<'a> {
        Mat { data, rows, cols, rs: 1, cs: rows }
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

/// Layout of a destination: element (i, j) at i·rs + j·cs.
#[derive(Clone, Copy, Debug)]
pub struct Out {
    pub rs: usize,
    pub cs: usize,
}

impl Out {
    /// Row-major with row stride `ld`.
    pub fn rows(ld: usize) -> Out {
        Out { rs: ld, cs: 1 }
    }

    /// Transposed: element (i, j) at j·ld + i (writes Cᵀ into a row-major buffer).
    pub fn cols(ld: usize) -> Out {
        Out { rs: 1, cs: ld }
    }

    fn last_index(&self, m: usize, n: usize) -> usize {
        (m - 1) * self.rs + (n - 1) * self.cs
    }
}

/// Reference: c = a × b, accumulating in f64.
pub fn matmul_ref(a: Mat, b: Mat, c: &mut [f32], out: Out) {
    assert_eq!(a.cols, b.rows, "matmul inner dimensions");
    for i in 0..a.rows {
        for j in 0..b.cols {
            let mut acc = 0.0f64;
            for k in 0..a.cols {
                acc += a.at(i, k) as f64 * b.at(k, j) as f64;
            }
            c[i * out.rs + j * out.cs] = acc as f32;
        }
    }
}

const MR: usize = 6;
const KC: usize = 256;
/// Rows per parallel block (a multiple of MR).
const MC: usize = 96;
const NC: usize = 4096;
/// Widest NR of any kernel (tile buffer size).
const NR_MAX: usize = 32;

/// A left operand packed once into the fast path's panel order: for each KC block of columns,
/// for each panel of MR rows, kc × MR values (rows past m are zero). Stored in f32, or in f16
/// (`from_row_major_f16`): half the bytes for the weight-bound layers of batch-1 inference, widened to f32
/// one block at a time as the kernels reach it (the arithmetic stays f32).
#[derive(Clone, Debug)]
pub struct PackedA {
    m: usize,
    k: usize,
    data: Panels,
}

#[derive(Clone, Debug)]
enum Panels {
    F32(Vec<f32>),
    F16(Vec<half::f16>),
}

/// A run of packed values in either storage.
#[derive(Clone, Copy)]
enum PanelRef<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
}

impl PanelRef<'_> {
    fn slice(self, start: usize, len: usize) -> Self {
        match self {
            PanelRef::F32(v) => PanelRef::F32(&v[start..start + len]),
            PanelRef::F16(v) => PanelRef::F16(&v[start..start + len]),
        }
    }

    fn len(self) -> usize {
        match self {
            PanelRef::F32(v) => v.len(),
            PanelRef::F16(v) => v.len(),
        }
    }

    /// The values as f32: borrowed, or widened into the front of `buf` (at least as long).
    fn widen<'b>(self, buf: &'b mut [f32]) -> &'b [f32]
    where
        Self: 'b,
    {
        match self {
            PanelRef::F32(v) => v,
            PanelRef::F16(v) => {
                let out = &mut buf[..v.len()];
                widen_f16(v, out);
                out
            }
        }
    }
}

/// The KC-column blocks of a packed [m, k] left operand: (first column, width, the block's
/// range in the packed storage, whose rows are padded to whole MR-row panels).
fn k_blocks(m: usize, k: usize) -> impl Iterator<Item = (usize, usize, std::ops::Range<usize>)> {
    let m_pad = m.div_ceil(MR) * MR;
    (0..k).step_by(KC).map(move |pc| {
        let kc = KC.min(k - pc);
        (pc, kc, pc * m_pad..(pc + kc) * m_pad)
    })
}

/// Grows a pack buffer to at least `n` values (buffers only grow, so steady state allocates nothing).
fn grow(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

impl PackedA {
    /// Packs `a` (any strides).
    pub fn new(a: Mat) -> PackedA {
        let mut p = PackedA { m: 0, k: 0, data: Panels::F32(Vec::new()) };
        p.repack(a);
        p
    }

    /// Packs `a` into this buffer, reusing its allocation when the size is unchanged (the
    /// trainer repacks weights after each optimizer step without allocating). The storage
    /// becomes f32.
    pub fn repack(&mut self, a: Mat) {
        let (m, k) = (a.rows, a.cols);
        let m_pad = m.div_ceil(MR) * MR;
        if !matches!(self.data, Panels::F32(_)) {
            self.data = Panels::F32(Vec::new());
        }
        let Panels::F32(data) = &mut self.data else { unreachable!("set to f32 above") };
        if data.capacity() < m_pad * k {
            *data = crate::tensor::pages::zeroed(m_pad * k);
        }
        data.resize(m_pad * k, 0.0);
        (self.m, self.k) = (m, k);
        for (pc, kc, range) in k_blocks(m, k) {
            pack_a_block(&a, 0, m, pc, kc, &mut data[range]);
        }
    }

    /// Packs a row-major [m, k] matrix.
    pub fn from_row_major(w: &[f32], m: usize, k: usize) -> PackedA {
        PackedA::new(Mat::row_major(w, m, k))
    }

    /// Packs a row-major [m, k] matrix straight into f16 panels (values rounded to nearest),
    /// one k block at a time, so no f32 copy of the whole packed matrix is ever held (it was
    /// the peak of `generate`'s memory for f16 files).
    pub fn from_row_major_f16(w: &[f32], m: usize, k: usize) -> PackedA {
        let a = Mat::row_major(w, m, k);
        let m_pad = m.div_ceil(MR) * MR;
        let mut half: Vec<half::f16> = crate::tensor::pages::zeroed(m_pad * k);
        let mut block = vec![0.0f32; m_pad * KC.min(k)];
        for (pc, kc, range) in k_blocks(m, k) {
            let block = &mut block[..range.len()];
            pack_a_block(&a, 0, m, pc, kc, block);
            narrow_f16(block, &mut half[range]);
        }
        PackedA { m, k, data: Panels::F16(half) }
    }

    /// Whether the panels are stored in f16.
    pub fn is_f16(&self) -> bool {
        matches!(self.data, Panels::F16(_))
    }

    /// Bytes of packed storage.
    pub fn bytes(&self) -> usize {
        match &self.data {
            Panels::F32(v) => 4 * v.len(),
            Panels::F16(v) => 2 * v.len(),
        }
    }

    pub fn rows(&self) -> usize {
        self.m
    }

    pub fn cols(&self) -> usize {
        self.k
    }

    fn panels(&self) -> PanelRef<'_> {
        match &self.data {
            Panels::F32(v) => PanelRef::F32(v),
            Panels::F16(v) => PanelRef::F16(v),
        }
    }

    /// Back to row-major [m, k] (for the reference backend).
    pub fn unpack(&self) -> Vec<f32> {
        let mut all = vec![0.0; self.panels().len()];
        let data = self.panels().widen(&mut all);
        let mut w = vec![0.0; self.m * self.k];
        for (pc, kc, range) in k_blocks(self.m, self.k) {
            let block = &data[range];
            for i in 0..self.m {
                let panel = &block[(i / MR) * kc * MR..];
                for kk in 0..kc {
                    w[i * self.k + pc + kk] = panel[kk * MR + i % MR];
                }
            }
        }
        w
    }

    /// Packed panels of rows [ic, ic+mc) for the KC block starting at pc.
    fn block(&self, ic: usize, mc: usize, pc: usize) -> PanelRef<'_> {
        let m_pad = self.m.div_ceil(MR) * MR;
        let kc = KC.min(self.k - pc);
        self.panels().slice(pc * m_pad + (ic / MR) * kc * MR, mc.div_ceil(MR) * MR * kc)
    }
}

/// Packs a[ic..ic+mc, pc..pc+kc] into panels of MR rows (kc × MR each), zero-padded. The loop
/// order follows the view's contiguous direction (a transposed view is read row by row).
fn pack_a_block(a: &Mat, ic: usize, mc: usize, pc: usize, kc: usize, out: &mut [f32]) {
    for p in 0..mc.div_ceil(MR) {
        let dst = &mut out[p * kc * MR..(p + 1) * kc * MR];
        let i0 = ic + p * MR;
        let h = MR.min(ic + mc - i0);
        if a.cs == 1 || h < MR {
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
        } else {
            for (kk, d) in dst.chunks_exact_mut(MR).enumerate() {
                let base = i0 * a.rs + (pc + kk) * a.cs;
                d.iter_mut().enumerate().for_each(|(i, v)| *v = a.data[base + i * a.rs]);
            }
        }
    }
}

/// Packs b[pc..pc+kc, jc..jc+nc] into panels of `nr` columns (kc × nr each), zero-padded; the
/// panels in parallel when `parallel` (a big right operand would otherwise be packed by one
/// thread while the others wait).
#[allow(clippy::too_many_arguments)]
fn pack_b(b: &Mat, pc: usize, kc: usize, jc: usize, nc: usize, nr: usize, out: &mut Vec<f32>, parallel: bool) {
    let panels = nc.div_ceil(nr);
    grow(out, panels * kc * nr);
    let pack = |(p, dst): (usize, &mut [f32])| {
        let j0 = jc + p * nr;
        pack_b_panel(b, pc, kc, j0, nr.min(jc + nc - j0), dst);
    };
    let dst = &mut out[..panels * kc * nr];
    if parallel && panels > 1 {
        dst.par_chunks_mut(kc * nr).enumerate().for_each(pack);
    } else {
        dst.chunks_mut(kc * nr).enumerate().for_each(pack);
    }
}

/// Columns used per step of the transposed read: each a sequential stream.
const TB: usize = 8;

/// One panel (kc × nr, the first `w` columns from b[pc.., j0..]). A transposed view (columns
/// contiguous) is read TB columns at a time, TB values of each, and written as TB rows of TB
/// contiguous values: reads stay sequential and writes whole runs of the L1-resident panel.
fn pack_b_panel(b: &Mat, pc: usize, kc: usize, j0: usize, w: usize, dst: &mut [f32]) {
    let nr = dst.len() / kc;
    if b.cs == 1 || b.rs != 1 {
        for kk in 0..kc {
            let row = &mut dst[kk * nr..(kk + 1) * nr];
            let base = (pc + kk) * b.rs + j0 * b.cs;
            if b.cs == 1 {
                copy_row(&b.data[base..base + w], &mut row[..w]);
            } else {
                row[..w].iter_mut().enumerate().for_each(|(j, v)| *v = b.data[base + j * b.cs]);
            }
            row[w..].fill(0.0);
        }
        return;
    }
    let col = |j: usize| &b.data[(j0 + j) * b.cs + pc..][..kc];
    let full = w / TB * TB;
    let kfull = kc / TB * TB;
    for jb in (0..full).step_by(TB) {
        let cols: [&[f32]; TB] = std::array::from_fn(|t| col(jb + t));
        for kb in (0..kfull).step_by(TB) {
            let mut block = [[0.0f32; TB]; TB];
            block.iter_mut().zip(&cols).for_each(|(r, c)| r.copy_from_slice(&c[kb..kb + TB]));
            for (i, row) in dst[kb * nr..(kb + TB) * nr].chunks_exact_mut(nr).enumerate() {
                let run: [f32; TB] = std::array::from_fn(|t| block[t][i]);
                row[jb..jb + TB].copy_from_slice(&run);
            }
        }
        for kk in kfull..kc {
            (0..TB).for_each(|t| dst[kk * nr + jb + t] = cols[t][kk]);
        }
    }
    for j in full..nr {
        if j >= w {
            (0..kc).for_each(|kk| dst[kk * nr + j] = 0.0);
            continue;
        }
        col(j).iter().enumerate().for_each(|(kk, &v)| dst[kk * nr + j] = v);
    }
}

/// dst = src for a whole panel row; the kernels' widths get fixed-size copies. (They compile to
/// a `memcpy` call per row all the same; inlined AVX-512 masked moves instead measured 10 %
/// slower on a training step, docs/PERF.md.)
#[inline]
fn copy_row(src: &[f32], dst: &mut [f32]) {
    match (<&[f32; 32]>::try_from(src), <&mut [f32; 32]>::try_from(&mut *dst)) {
        (Ok(s), Ok(d)) => *d = *s,
        _ => match (<&[f32; 16]>::try_from(src), <&mut [f32; 16]>::try_from(&mut *dst)) {
            (Ok(s), Ok(d)) => *d = *s,
            _ => dst.copy_from_slice(src),
        },
    }
}

thread_local! {
    static PACK_A: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static PACK_B: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Grows this thread's pack buffers to the largest any product with inner size ≤ `max_k` can
/// need. Sessions call it on every thread of their pool when they are made, so that which
/// thread ends up running which block can never cause an allocation in a later run.
pub fn reserve_thread_buffers(max_k: usize) {
    PACK_A.with(|c| grow(&mut c.borrow_mut(), MC * KC));
    PACK_B.with(|c| grow(&mut c.borrow_mut(), (KC * NC.div_ceil(NR_MAX)).max(max_k) * NR_MAX));
    X_EXPANDED.with(|c| grow(&mut c.borrow_mut(), max_k * MR));
}

/// The left operand: packed once, or packed per block from a view.
#[derive(Clone, Copy)]
enum Lhs<'a> {
    Packed(&'a PackedA),
    View(Mat<'a>),
}

/// Fast: c = a × b for a view `a`.
pub fn matmul(a: Mat, b: Mat, c: &mut [f32], out: Out, threads: usize) {
    assert!(a.rows == 0 || a.cols == 0 || a.data.len() > a.last_index(), "lhs too short");
    gemm(Lhs::View(a), a.rows, a.cols, b, c, out, false, threads);
}

/// Fast: c += a × b for a view `a` (gradient accumulation in the backward passes).
pub fn matmul_acc(a: Mat, b: Mat, c: &mut [f32], out: Out, threads: usize) {
    assert!(a.rows == 0 || a.cols == 0 || a.data.len() > a.last_index(), "lhs too short");
    gemm(Lhs::View(a), a.rows, a.cols, b, c, out, true, threads);
}

/// Fast: c = a × b for a packed `a`.
pub fn matmul_packed(a: &PackedA, b: Mat, c: &mut [f32], out: Out, threads: usize) {
    gemm(Lhs::Packed(a), a.m, a.k, b, c, out, false, threads);
}

/// c = a × b, or c += a × b when `acc`.
#[allow(clippy::too_many_arguments)]
fn gemm(a: Lhs, m: usize, k: usize, b: Mat, c: &mut [f32], out: Out, acc: bool, threads: usize) {
    let n = b.cols;
    assert_eq!(k, b.rows, "matmul inner dimensions");
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() > out.last_index(m, n), "dst too short");
    assert!(out.rs != out.cs || m == 1 || n == 1, "dst rows and columns alias");
    if k == 0 {
        if acc {
            return;
        }
        (0..m).for_each(|i| (0..n).for_each(|j| c[i * out.rs + j * out.cs] = 0.0));
        return;
    }
    assert!(b.data.len() > b.last_index(), "rhs too short");
    let kernel = Kernel::detect(n);
    if let (Lhs::Packed(pa), 1, false, false) = (a, n, kernel == Kernel::Portable, acc) {
        return gemv_packed(pa, &b, c, out, kernel, threads);
    }
    let nr = kernel.nr();
    let c_ptr = SendPtr(c.as_mut_ptr());
    if threads > 1 && n <= nr && m >= 2 * MR && m * n * k >= 1 << 15 {
        return gemm_narrow(a, m, k, b, c_ptr, out, acc, kernel, threads);
    }
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            PACK_B.with(|cell| {
                let mut bp = cell.borrow_mut();
                let parallel = threads > 1 && m * nc * kc >= 1 << 15;
                pack_b(&b, pc, kc, jc, nc, nr, &mut bp, parallel && kc * nc >= 1 << 14);
                let blk = Block { a, bp: &bp, pc, kc, jc, nc, accumulate: acc || pc > 0, kernel, out, c: c_ptr };
                let blocks = m.div_ceil(MC);
                let panels = nc.div_ceil(nr);
                // Short, wide products (few row blocks) are also cut by column panels, so every
                // thread has work: tasks are (row block, run of panels).
                let splits =
                    if parallel && blocks < 2 * threads { (2 * threads).div_ceil(blocks).min(panels) } else { 1 };
                let per = panels.div_ceil(splits);
                let run = |task: usize| {
                    let (ib, part) = (task / splits, task % splits);
                    let cols = part * per..((part + 1) * per).min(panels);
                    blk.rows(ib * MC, MC.min(m - ib * MC), cols);
                };
                if parallel && blocks * splits > 1 {
                    (0..blocks * splits).into_par_iter().for_each(run);
                } else {
                    (0..blocks * splits).for_each(run);
                }
            });
        }
    }
}

/// A product whose right operand is one panel (batch-1 convolutions): that panel is packed
/// whole, for every k block, and each thread takes an equal run of rows through all the k
/// blocks: one fork-join per product (not one per k block), and no thread left with one more
/// MC block than the other (256 rows were 96 + 96 against 64).
#[allow(clippy::too_many_arguments)]
fn gemm_narrow(a: Lhs, m: usize, k: usize, b: Mat, c: SendPtr, out: Out, acc: bool, kernel: Kernel, threads: usize) {
    let nr = kernel.nr();
    PACK_B.with(|cell| {
        let mut bp = cell.borrow_mut();
        grow(&mut bp, k * nr);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            pack_b_panel(&b, pc, kc, 0, b.cols, &mut bp[pc * nr..(pc + kc) * nr]);
        }
        let packed: &[f32] = &bp;
        let per = m.div_ceil(MR).div_ceil(threads) * MR;
        let run = |task: usize| {
            let (r0, r1) = (task * per, ((task + 1) * per).min(m));
            for ic in (r0..r1).step_by(MC) {
                let mc = MC.min(r1 - ic);
                for pc in (0..k).step_by(KC) {
                    let kc = KC.min(k - pc);
                    let bp = &packed[pc * nr..(pc + kc) * nr];
                    let blk = Block { a, bp, pc, kc, jc: 0, nc: b.cols, accumulate: acc || pc > 0, kernel, out, c };
                    blk.rows(ic, mc, 0..1);
                }
            }
        };
        (0..m.div_ceil(per)).into_par_iter().for_each(run);
    })
}

/// The destination pointer, shared by the row-block workers (and `tap_conv`'s panel tasks).
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: tasks write disjoint regions of one exclusively borrowed buffer: here a (row block,
// panel run) each (see `Block::rows_with`), in `tap_conv` a 64-column panel each (see
// `TapWeights::forward_one`).
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so closures capture the whole Send + Sync wrapper).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// One (k, n) block of the product.
struct Block<'a> {
    a: Lhs<'a>,
    bp: &'a [f32],
    pc: usize,
    kc: usize,
    jc: usize,
    nc: usize,
    accumulate: bool,
    kernel: Kernel,
    out: Out,
    c: SendPtr,
}

impl Block<'_> {
    /// Rows [ic, ic+mc) of this block, column panels `panels`.
    fn rows(&self, ic: usize, mc: usize, panels: std::ops::Range<usize>) {
        match self.a {
            Lhs::Packed(p) => match p.block(ic, mc, self.pc) {
                PanelRef::F32(ap) => self.rows_with(ic, mc, ap, panels),
                // One column panel (batch-1 convolutions): widen each row panel just before
                // its micro-kernel call, so the f32 copy never leaves L1.
                PanelRef::F16(h) if panels.len() == 1 => {
                    let mut wide = [0.0f32; KC * MR];
                    for ip in 0..mc.div_ceil(MR) {
                        let ap = PanelRef::F16(&h[ip * self.kc * MR..(ip + 1) * self.kc * MR]).widen(&mut wide);
                        let (ic, mc) = (ic + ip * MR, MR.min(mc - ip * MR));
                        self.rows_with(ic, mc, ap, panels.clone());
                    }
                }
                wide => PACK_A.with(|cell| {
                    let mut buf = cell.borrow_mut();
                    grow(&mut buf, wide.len());
                    self.rows_with(ic, mc, wide.widen(&mut buf), panels)
                }),
            },
            Lhs::View(a) => PACK_A.with(|cell| {
                let mut ap = cell.borrow_mut();
                grow(&mut ap, mc.div_ceil(MR) * MR * self.kc);
                pack_a_block(&a, ic, mc, self.pc, self.kc, &mut ap);
                self.rows_with(ic, mc, &ap, panels);
            }),
        }
    }

    fn rows_with(&self, ic: usize, mc: usize, ap: &[f32], panels: std::ops::Range<usize>) {
        let nr = self.kernel.nr();
        let mut tile = [0.0f32; MR * NR_MAX];
        for jp in panels {
            let j0 = self.jc + jp * nr;
            let w = nr.min(self.jc + self.nc - j0);
            let bpanel = &self.bp[jp * self.kc * nr..(jp + 1) * self.kc * nr];
            for ip in 0..mc.div_ceil(MR) {
                let h = MR.min(mc - ip * MR);
                let a_panel = &ap[ip * self.kc * MR..(ip + 1) * self.kc * MR];
                if h == MR && w == nr && self.out.cs == 1 {
                    let first = (ic + ip * MR) * self.out.rs + j0;
                    // SAFETY: rows ic + ip·MR + i (i < MR) of this task's row block, columns
                    // [j0, j0 + nr) of its panels: in C (the last ends at most at
                    // out.last_index(m, n) < c.len(), asserted in gemm) and written by this task
                    // alone.
                    let c = unsafe { self.c.get().add(first) };
                    // SAFETY: as above, per `micro_direct`'s contract.
                    if unsafe { micro_direct(self.kernel, self.kc, a_panel, bpanel, c, self.out.rs, self.accumulate) } {
                        continue;
                    }
                }
                micro(self.kernel, self.kc, a_panel, bpanel, &mut tile);
                for i in 0..h {
                    let row = ic + ip * MR + i;
                    let src = &tile[i * nr..i * nr + w];
                    if self.out.cs == 1 {
                        // SAFETY: the row's w elements start at row·rs + j0 and end at most at
                        // out.last_index(m, n) < c.len() (asserted in gemm); the (rows [ic,
                        // ic+mc), columns of this task's panels) region belongs to this task alone.
                        let dst =
                            unsafe { std::slice::from_raw_parts_mut(self.c.get().add(row * self.out.rs + j0), w) };
                        if self.accumulate {
                            dst.iter_mut().zip(src).for_each(|(d, &v)| *d += v);
                        } else {
                            copy_row(src, dst);
                        }
                        continue;
                    }
                    for (j, &v) in src.iter().enumerate() {
                        let idx = row * self.out.rs + (j0 + j) * self.out.cs;
                        // SAFETY: idx ≤ out.last_index(m, n) < c.len() (asserted in gemm); the
                        // (row block, panel run) region belongs to this task alone and distinct
                        // (row, col) pairs map to distinct indices (rs ≠ cs), so no two threads
                        // write one element.
                        unsafe {
                            let p = self.c.get().add(idx);
                            *p = if self.accumulate { *p + v } else { v };
                        }
                    }
                }
            }
        }
    }
}

/// Which micro-kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// AVX-512 with one 16-lane vector per row: for narrow right operands (n ≤ 16).
    #[cfg(target_arch = "x86_64")]
    Avx512N16,
}

/// Set by `force_portable_kernel` (tests of the portable path).
static FORCE_PORTABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes every later call in this process use the portable micro-kernel (for its tests).
#[doc(hidden)]
pub fn force_portable_kernel(on: bool) {
    FORCE_PORTABLE.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether `force_portable_kernel` is on (the other fast paths' kernels follow it too).
pub(crate) fn portable_forced() -> bool {
    FORCE_PORTABLE.load(std::sync::atomic::Ordering::Relaxed)
}

impl Kernel {
    /// The kernel for a product with `n` columns.
    fn detect(n: usize) -> Kernel {
        if portable_forced() {
            return Kernel::Portable;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return if n > 16 { Kernel::Avx512 } else { Kernel::Avx512N16 };
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return Kernel::Avx2Fma;
            }
        }
        Kernel::Portable
    }

    fn nr(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => 32,
            _ => 16,
        }
    }
}

/// tile[MR×nr] = Σ_p a[p, 0..MR] ⊗ b[p, 0..nr] over kc packed steps.
#[inline]
fn micro(kernel: Kernel, kc: usize, a: &[f32], b: &[f32], tile: &mut [f32; MR * NR_MAX]) {
    assert!(a.len() >= kc * MR && b.len() >= kc * kernel.nr());
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512F (Kernel::detect) and the lengths are asserted above.
        Kernel::Avx512 => unsafe { micro_avx512(kc, a, b, tile.as_mut_ptr(), 32, false) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2 and FMA (Kernel::detect) and the lengths are asserted above.
        Kernel::Avx2Fma => unsafe { micro_avx2(kc, a, b, tile) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512F (Kernel::detect) and the lengths are asserted above.
        Kernel::Avx512N16 => unsafe { micro_avx512_n16(kc, a, b, tile.as_mut_ptr(), 16, false) },
        Kernel::Portable => micro_portable(kc, a, b, tile),
    }
}

/// A whole MR × nr tile written (or added, when `acc`) straight into C at `c` with row stride
/// `rs`, skipping the tile buffer and its copy. Returns false (nothing done) for kernels
/// without this form.
///
/// # Safety
/// For each i < MR, the nr elements at c + i·rs must be valid for reads and writes and not
/// accessed by anyone else during the call.
#[inline]
unsafe fn micro_direct(kernel: Kernel, kc: usize, a: &[f32], b: &[f32], c: *mut f32, rs: usize, acc: bool) -> bool {
    assert!(a.len() >= kc * MR && b.len() >= kc * kernel.nr());
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512F detected (Kernel::detect), lengths asserted, C's rows per the caller.
        Kernel::Avx512 => unsafe { micro_avx512(kc, a, b, c, rs, acc) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Kernel::Avx512N16 => unsafe { micro_avx512_n16(kc, a, b, c, rs, acc) },
        _ => return false,
    }
    true
}

fn micro_portable(kc: usize, a: &[f32], b: &[f32], tile: &mut [f32; MR * NR_MAX]) {
    const NR: usize = 16;
    tile[..MR * NR].fill(0.0);
    for p in 0..kc {
        let bp = &b[p * NR..(p + 1) * NR];
        for i in 0..MR {
            let av = a[p * MR + i];
            tile[i * NR..(i + 1) * NR].iter_mut().zip(bp).for_each(|(t, &bv)| *t += av * bv);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn micro_avx2(kc: usize, a: &[f32], b: &[f32], tile: &mut [f32; MR * NR_MAX]) {
    use std::arch::x86_64::*;
    const NR: usize = 16;
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
        // SAFETY: i·NR + 16 ≤ MR·NR ≤ the tile's length.
        unsafe {
            _mm256_storeu_ps(tile.as_mut_ptr().add(i * NR), row[0]);
            _mm256_storeu_ps(tile.as_mut_ptr().add(i * NR + 8), row[1]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn micro_avx512(kc: usize, a: &[f32], b: &[f32], c: *mut f32, rs: usize, acc: bool) {
    use std::arch::x86_64::*;
    const NR: usize = 32;
    let mut sums = [[_mm512_setzero_ps(); 2]; MR];
    let (ap, bp) = (a.as_ptr(), b.as_ptr());
    for p in 0..kc {
        // SAFETY: p < kc, so p·NR + 32 ≤ kc·NR ≤ b.len() and p·MR + i < kc·MR ≤ a.len().
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add((p + PREFETCH_K) * MR) as *const i8);
            let b0 = _mm512_loadu_ps(bp.add(p * NR));
            let b1 = _mm512_loadu_ps(bp.add(p * NR + 16));
            for (i, row) in sums.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*ap.add(p * MR + i));
                row[0] = _mm512_fmadd_ps(av, b0, row[0]);
                row[1] = _mm512_fmadd_ps(av, b1, row[1]);
            }
        }
    }
    for (i, row) in sums.iter().enumerate() {
        // SAFETY: row i of C holds NR = 32 elements at c + i·rs (the caller's contract).
        unsafe {
            let p = c.add(i * rs);
            let (mut r0, mut r1) = (row[0], row[1]);
            if acc {
                r0 = _mm512_add_ps(r0, _mm512_loadu_ps(p));
                r1 = _mm512_add_ps(r1, _mm512_loadu_ps(p.add(16)));
            }
            _mm512_storeu_ps(p, r0);
            _mm512_storeu_ps(p.add(16), r1);
        }
    }
}

/// How many k-steps ahead the AVX-512 kernels prefetch their left operand (measured on reed-cub
/// at batch 1 with the narrow kernel: 64 gains half of what 128 and 256 do; 256 slightly best;
/// in the wide kernel too it cut deconv2 at batch 1 from 1.12 to 0.79 ms).
#[cfg(target_arch = "x86_64")]
const PREFETCH_K: usize = 256;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn micro_avx512_n16(kc: usize, a: &[f32], b: &[f32], c: *mut f32, rs: usize, acc: bool) {
    use std::arch::x86_64::*;
    const NR: usize = 16;
    // Even and odd k steps accumulate separately: 6 rows are 6 dependent FMA chains, and an FMA
    // unit pair with 4 cycles of latency needs 8 in flight, so one set alone ran at 3/4 of peak.
    let mut even = [_mm512_setzero_ps(); MR];
    let mut odd = [_mm512_setzero_ps(); MR];
    let (ap, bp) = (a.as_ptr(), b.as_ptr());
    for p in (0..kc / 2 * 2).step_by(2) {
        // SAFETY: p + 1 < kc, so (p + 1)·NR + 16 ≤ kc·NR ≤ b.len() and (p + 1)·MR + i < kc·MR ≤
        // a.len().
        unsafe {
            // Batch-1 layers stream their packed weights once (about 6 k-steps per cache
            // line): fetch ahead explicitly, the hardware prefetcher alone kept deconv1 at ~29 GB/s.
            // A prefetch never faults, so reading past the panel's end is harmless.
            _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add((p + PREFETCH_K) * MR) as *const i8);
            let b0 = _mm512_loadu_ps(bp.add(p * NR));
            let b1 = _mm512_loadu_ps(bp.add((p + 1) * NR));
            for i in 0..MR {
                even[i] = _mm512_fmadd_ps(_mm512_set1_ps(*ap.add(p * MR + i)), b0, even[i]);
                odd[i] = _mm512_fmadd_ps(_mm512_set1_ps(*ap.add((p + 1) * MR + i)), b1, odd[i]);
            }
        }
    }
    if kc % 2 == 1 {
        let p = kc - 1;
        // SAFETY: p < kc, as above.
        unsafe {
            let b0 = _mm512_loadu_ps(bp.add(p * NR));
            for (i, row) in even.iter_mut().enumerate() {
                *row = _mm512_fmadd_ps(_mm512_set1_ps(*ap.add(p * MR + i)), b0, *row);
            }
        }
    }
    for (i, (e, o)) in even.iter().zip(&odd).enumerate() {
        let row = _mm512_add_ps(*e, *o);
        // SAFETY: row i of C holds NR = 16 elements at c + i·rs (the caller's contract).
        unsafe {
            let p = c.add(i * rs);
            let r = if acc { _mm512_add_ps(row, _mm512_loadu_ps(p)) } else { row };
            _mm512_storeu_ps(p, r);
        }
    }
}

thread_local! {
    /// x expanded to the packed panel order (x[kk] repeated MR times) for `gemv_packed`.
    static X_EXPANDED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// c[:, 0] = a · x for one right-hand column: a streaming dot product over each packed panel
/// against x expanded to the panel's order, so every FMA uses all lanes (the tiled kernel
/// would waste all but one column). Batch-1 linears, the GRU's recurrence, G's first layer.
fn gemv_packed(a: &PackedA, x: &Mat, c: &mut [f32], out: Out, kernel: Kernel, threads: usize) {
    let (m, k) = (a.m, a.k);
    let m_pad = m.div_ceil(MR) * MR;
    X_EXPANDED.with(|cell| {
        let mut xe = cell.borrow_mut();
        grow(&mut xe, k * MR);
        for kk in 0..k {
            xe[kk * MR..(kk + 1) * MR].fill(x.data[kk * x.rs]);
        }
        let xe = &xe[..k * MR];
        let c_ptr = SendPtr(c.as_mut_ptr());
        let panel = |ip: usize| {
            let mut y = [0.0f32; MR];
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                let (ap, xs) = (a.panels().slice(pc * m_pad + ip * kc * MR, kc * MR), &xe[pc * MR..(pc + kc) * MR]);
                let part = match ap {
                    PanelRef::F32(v) => dot_mod6(kernel, v, xs),
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: the CPU has AVX-512F (Kernel::detect); the lengths match.
                    PanelRef::F16(v) if matches!(kernel, Kernel::Avx512 | Kernel::Avx512N16) => unsafe {
                        dot_mod6_f16_avx512(v, xs)
                    },
                    // Widened on the stack only here: zeroing this 6 KB buffer for every panel
                    // cost as much memory traffic as the panel's weights.
                    wide16 => dot_mod6(kernel, wide16.widen(&mut [0.0f32; KC * MR]), xs),
                };
                y.iter_mut().zip(part).for_each(|(acc, v)| *acc += v);
            }
            for (i, &v) in y.iter().enumerate().take(MR.min(m - ip * MR)) {
                // SAFETY: row ip·MR + i < m, so the index is ≤ out.last_index(m, 1) < c.len()
                // (asserted in gemm); each panel writes its own rows only.
                unsafe { *c_ptr.get().add((ip * MR + i) * out.rs) = v };
            }
        };
        let panels = m.div_ceil(MR);
        if threads > 1 && m * k >= 1 << 15 {
            (0..panels).into_par_iter().with_min_len(8).for_each(panel);
        } else {
            (0..panels).for_each(panel);
        }
    });
}

/// y[i] = Σ_l a[l]·x[l] over l ≡ i (mod 6): the dot of a packed panel with expanded x.
#[inline]
fn dot_mod6(kernel: Kernel, a: &[f32], x: &[f32]) -> [f32; MR] {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512F (Kernel::detect).
        Kernel::Avx512 | Kernel::Avx512N16 => unsafe { dot_mod6_avx512(a, x) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2 and FMA (Kernel::detect).
        Kernel::Avx2Fma => unsafe { dot_mod6_avx2(a, x) },
        Kernel::Portable => dot_mod6_body(a, x),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn dot_mod6_avx512(a: &[f32], x: &[f32]) -> [f32; MR] {
    dot_mod6_body(a, x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_mod6_avx2(a: &[f32], x: &[f32]) -> [f32; MR] {
    dot_mod6_body(a, x)
}

/// dot_mod6 of f16 panels, widened in registers (16 halves per vcvtph2ps) rather than through
/// a buffer, so a weight is read once, at half the bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn dot_mod6_f16_avx512(a: &[half::f16], x: &[f32]) -> [f32; MR] {
    use std::arch::x86_64::*;
    assert_eq!(a.len(), x.len(), "dot lengths");
    const W: usize = GEMV_W;
    let n = a.len() / W * W;
    let mut acc = [_mm512_setzero_ps(); W / 16];
    let (ap, xp) = (a.as_ptr(), x.as_ptr());
    for l in (0..n).step_by(W) {
        for (c, v) in acc.iter_mut().enumerate() {
            // SAFETY: l + 16c + 16 ≤ n ≤ a.len() = x.len(): 32 bytes of a and 64 of x in bounds.
            unsafe {
                let h = _mm256_loadu_si256(ap.add(l + 16 * c) as *const __m256i);
                *v = _mm512_fmadd_ps(_mm512_cvtph_ps(h), _mm512_loadu_ps(xp.add(l + 16 * c)), *v);
            }
        }
    }
    let mut lanes = [0.0f32; W];
    for (c, v) in acc.iter().enumerate() {
        // SAFETY: 16 floats written at 16c, within the W-lane array.
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr().add(16 * c), *v) };
    }
    let mut y = [0.0f32; MR];
    for (l, v) in lanes.iter().enumerate() {
        y[l % MR] += v;
    }
    // The remainder starts at a multiple of W, itself a multiple of 6.
    for (l, (va, &vx)) in a[n..].iter().zip(&x[n..]).enumerate() {
        y[l % MR] += va.to_f32() * vx;
    }
    y
}

/// How far ahead (elements) `dot_mod6_body` prefetches the weights.
const GEMV_PREFETCH: usize = 1024;

/// Lanes per step of the GEMV's dot products: lcm(16, MR), one vector per 8 k steps of a panel.
/// (96, twice the FMA chains, measured slower: deconv0 at batch 1 0.32 → 0.44 ms.)
const GEMV_W: usize = 48;

/// Chunks of GEMV_W lanes accumulate independently, so the compiler vectorises
/// the loop for whatever features the caller enables.
#[inline(always)]
fn dot_mod6_body(a: &[f32], x: &[f32]) -> [f32; MR] {
    const W: usize = GEMV_W;
    let mut acc = [0.0f32; W];
    let (ac, xc) = (a.chunks_exact(W), x.chunks_exact(W));
    let (ar, xr) = (ac.remainder(), xc.remainder());
    for (ca, cx) in ac.zip(xc) {
        // The weights are streamed once: fetch a few KB ahead (see PREFETCH_K). A prefetch
        // never faults, so addresses past the panel are harmless.
        #[cfg(target_arch = "x86_64")]
        for line in 0..W / 16 {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            // SAFETY: SSE is part of x86_64; prefetching reads nothing architecturally.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(ca.as_ptr().wrapping_add(GEMV_PREFETCH + 16 * line) as *const i8) };
        }
        for l in 0..W {
            acc[l] = ca[l].mul_add(cx[l], acc[l]);
        }
    }
    let mut y = [0.0f32; MR];
    for (l, v) in acc.iter().enumerate() {
        y[l % MR] += v;
    }
    // The remainder starts at a multiple of W, itself a multiple of 6.
    for (l, (&va, &vx)) in ar.iter().zip(xr).enumerate() {
        y[l % MR] += va * vx;
    }
    y
}
