//! Thin launch wrappers, one per kernel: check every buffer's length against what the kernel
//! will index (an `Error::Shape` otherwise), convert sizes to the kernel's integer types, pick the
//! launch shape of the kernel's contract (kernels/*.cu), enqueue on the device's stream.
//! Layouts are those of src/ops (row-major NCHW, conv1d [B, C, T], recurrences [B, T, H]).

use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::{depth_splits, driver_err, Buf, CudaDevice};
use crate::device::Precision;
use crate::error::{Error, Result};
use crate::ops::conv2d::Conv2dGeom;
use crate::ops::conv_transpose2d::ConvTranspose2dGeom;
use crate::ops::rnn::RnnDims;
use crate::ops::Activation;

/// Threads per block of the 1-D grid-stride kernels.
pub(super) const BLOCK: u32 = 256;
/// Most blocks a 1-D launch uses (the kernels stride over the rest).
const MAX_BLOCKS: usize = 1 << 16;
/// Threads per block of the per-step recurrence kernels (8 warps, one row of W_hh each).
const RNN_BLOCK: u32 = 256;
/// From this batch on, a GRU step's recurrent products run on the tile core (one GEMM each for
/// r, z and n: gru_step_*_tile_f32) rather than a warp per row of W_hh looping over the samples.
/// Below it the tile's 64 columns would be mostly empty; 8 is a guess until measured on a GPU.
const GRU_TILE_MIN_BATCH: usize = 8;

/// The kernel of `prec` among an op's (f32, bf16) pair.
fn pick(prec: Precision, (f32_kernel, bf16_kernel): (&'static str, &'static str)) -> &'static str {
    match prec {
        Precision::F32 => f32_kernel,
        Precision::Bf16 => bf16_kernel,
    }
}

/// The fused epilogue on the device: act(acc·scale[c] + shift[c] + residual[i]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Epi<'a> {
    pub scale: Option<&'a Buf>,
    pub shift: Option<&'a Buf>,
    pub residual: Option<&'a Buf>,
    pub act: Activation,
}

/// Element strides of one GEMM operand: (i, j) of batch entry z at z·bs + i·rs + j·cs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatLayout {
    pub rs: usize,
    pub cs: usize,
    pub bs: usize,
}

impl MatLayout {
    /// Row-major [rows, cols] with batch stride `bs`.
    pub fn row_major(cols: usize, bs: usize) -> MatLayout {
        MatLayout { rs: cols, cs: 1, bs }
    }

    /// The transpose of a row-major [cols, rows] (element (i, j) at j·ld + i), batch stride `bs`.
    pub fn transposed(ld: usize, bs: usize) -> MatLayout {
        MatLayout { rs: 1, cs: ld, bs }
    }

    /// Elements a buffer needs to hold a [rows, cols] operand for `batch` entries.
    fn span(&self, rows: usize, cols: usize, batch: usize) -> usize {
        (batch - 1) * self.bs + (rows - 1) * self.rs + (cols - 1) * self.cs + 1
    }
}

/// A size as the kernels' `int`.
pub(super) fn int(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::Shape(format!("CUDA {what}: {v} does not fit the kernels' 32-bit int")))
}

/// Sizes as the kernels' `int`s.
pub(super) fn ints<const N: usize>(vals: [usize; N], what: &str) -> Result<[i32; N]> {
    let mut out = [0; N];
    for (o, v) in out.iter_mut().zip(vals) {
        *o = int(v, what)?;
    }
    Ok(out)
}

/// A size as the kernels' `long long`.
pub(super) fn long(v: usize) -> i64 {
    v as i64
}

/// Fails unless `buf` holds at least `len` elements.
pub(super) fn need(buf: &Buf, len: usize, what: &str) -> Result<()> {
    if buf.len() < len {
        return Err(Error::Shape(format!("CUDA {what}: buffer of {} elements, the kernel indexes {len}", buf.len())));
    }
    Ok(())
}

/// Fails on an empty problem (every kernel's contract wants sizes ≥ 1).
pub(super) fn nonzero(sizes: &[usize], what: &str) -> Result<()> {
    if sizes.contains(&0) {
        return Err(Error::Shape(format!("CUDA {what}: zero-sized dimension in {sizes:?}")));
    }
    Ok(())
}

/// The pooled length (t − k)/s + 1 of a max-pool over `rows` rows of length t, after checking
/// no size is zero and the window fits.
pub(super) fn maxpool_out_len((rows, t, k, s): (usize, usize, usize, usize), what: &str) -> Result<usize> {
    nonzero(&[rows, t, k, s], what)?;
    crate::ops::pool::maxpool1d_len(t, k, s)
        .ok_or_else(|| Error::Shape(format!("{what}: window {k} longer than the input {t}")))
}

/// The least depth of a forward convolution's split: 16 K steps of the tile core.
const FWD_MIN_SPLIT_DEPTH: usize = 256;

/// (code, slope) of an activation, as kernels/common.cuh numbers them.
pub(super) fn act_code(act: Activation) -> (i32, f32) {
    match act {
        Activation::None => (0, 0.0),
        Activation::Relu => (1, 0.0),
        Activation::LeakyRelu(a) => (2, a),
        Activation::Tanh => (3, 0.0),
        Activation::Sigmoid => (4, 0.0),
    }
}

/// The convolution kernels' integer arguments: (B, Cin, H, W, Cout, kh, kw, s, p, Ho, Wo),
/// after checking the geometry has an output and no zero size.
pub(super) fn conv_ints(batch: usize, g: &Conv2dGeom, what: &str) -> Result<[i32; 11]> {
    let (ho, wo) = g.out_hw().ok_or_else(|| Error::Shape(format!("{what}: kernel larger than input {g:?}")))?;
    nonzero(&[batch, g.cin, g.cout, g.stride, ho, wo], what)?;
    ints([batch, g.cin, g.h, g.w, g.cout, g.kh, g.kw, g.stride, g.pad, ho, wo], what)
}

/// A 1-D grid-stride launch over `total` elements.
pub(super) fn cfg_1d(total: usize) -> LaunchConfig {
    let blocks = total.div_ceil(BLOCK as usize).clamp(1, MAX_BLOCKS) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

/// The launch of the implicit-GEMM kernels (kernels/common.cuh `tile_gemm_f32`): 16×16 threads,
/// one 64×64 tile of C [m, n] per block, `z` independent problems.
pub(super) fn cfg_tiles(m: usize, n: usize, z: usize, what: &str) -> Result<LaunchConfig> {
    let dim = |v: usize| u32::try_from(v).map_err(|_| Error::Shape(format!("CUDA {what}: grid of {v} blocks")));
    Ok(LaunchConfig {
        grid_dim: (dim(n.div_ceil(64))?, dim(m.div_ceil(64))?, dim(z)?),
        block_dim: (16, 16, 1),
        shared_mem_bytes: 0,
    })
}

/// The epilogue's kernel arguments, lengths checked.
struct EpiArgs<'a> {
    flags: i32,
    scale: &'a Buf,
    shift: &'a Buf,
    residual: &'a Buf,
    act: i32,
    slope: f32,
}

impl CudaDevice {
    fn epi_args<'a>(&'a self, epi: &Epi<'a>, channels: usize, out_len: usize, what: &str) -> Result<EpiArgs<'a>> {
        let mut flags = 0;
        if let Some(s) = epi.scale {
            need(s, channels, &format!("{what} scale"))?;
            flags |= 1;
        }
        if let Some(s) = epi.shift {
            need(s, channels, &format!("{what} shift"))?;
            flags |= 2;
        }
        if let Some(r) = epi.residual {
            need(r, out_len, &format!("{what} residual"))?;
            flags |= 4;
        }
        let (act, slope) = act_code(epi.act);
        Ok(EpiArgs {
            flags,
            scale: epi.scale.unwrap_or(&self.dummy),
            shift: epi.shift.unwrap_or(&self.dummy),
            residual: epi.residual.unwrap_or(&self.dummy),
            act,
            slope,
        })
    }

    /// (splits, per_split) of a GEMM whose C is `tiles` 64×64 tiles (every parity class) of
    /// `len` elements, at most `depth` deep, each split at least `min_depth` deep
    /// (`depth_splits`): one split (per_split = depth) unless C alone would leave most SMs idle
    /// (batch 1); every split non-empty (splits = ceil(depth / per_split)).
    pub(super) fn split_plan(&self, tiles: usize, len: usize, depth: usize, min_depth: usize) -> (usize, usize) {
        let splits = depth_splits(tiles, len, depth, min_depth, 2 * self.sms);
        let per = depth.div_ceil(splits);
        (depth.div_ceil(per), per)
    }

    /// out = epi(the sum of the split scratch's `splits` partial outputs of `len` elements, in
    /// split order) (`splitk_epilogue_f32`), the end of a split forward convolution whose output
    /// is [.., channels, plane].
    fn finish_splits(
        &self,
        splits: usize,
        len: usize,
        (channels, plane): (usize, usize),
        e: &EpiArgs,
        out: &mut Buf,
    ) -> Result<()> {
        const WHAT: &str = "splitk_epilogue_f32";
        let (si, ll, ci, pi) = (int(splits, WHAT)?, long(len), int(channels, WHAT)?, int(plane, WHAT)?);
        let f = self.function(WHAT)?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&self.splitk).arg(&si).arg(&ll).arg(out).arg(&ci).arg(&pi);
        l.arg(&e.flags).arg(e.scale).arg(e.shift).arg(e.residual).arg(&e.act).arg(&e.slope);
        // SAFETY: arguments match splitk_epilogue_f32 in kernels/conv2d.cu; the scratch holds
        // the splits·len partial sums the convolution launched just before wrote (same stream;
        // split_plan keeps splits·len within it), out and a flagged residual len elements, scale
        // and shift `channels` (epi_args checked them); grid-stride loop.
        unsafe { l.launch(cfg_1d(len)) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// C[z] = epi(A[z] × B[z]) for z < batch: A [m, k], B [k, n], C [m, n] with any strides
    /// (`gemm_fwd_f32`). The epilogue's channel is the row (`channel_axis` 0) or the column (1).
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_fwd(
        &self,
        (m, n, k, batch): (usize, usize, usize, usize),
        a: (&Buf, MatLayout),
        b: (&Buf, MatLayout),
        c: (&mut Buf, MatLayout),
        epi: &Epi,
        channel_axis: usize,
    ) -> Result<()> {
        const WHAT: &str = "gemm_fwd_f32";
        nonzero(&[m, n, k, batch], WHAT)?;
        need(a.0, a.1.span(m, k, batch), "gemm A")?;
        need(b.0, b.1.span(k, n, batch), "gemm B")?;
        let c_span = c.1.span(m, n, batch);
        need(c.0, c_span, "gemm C")?;
        let e = self.epi_args(epi, if channel_axis == 0 { m } else { n }, c_span, WHAT)?;
        let (mi, ni, ki) = (int(m, WHAT)?, int(n, WHAT)?, int(k, WHAT)?);
        let [a_rs, a_cs, a_bs, b_rs, b_cs, b_bs, c_rs, c_cs, c_bs] =
            [a.1.rs, a.1.cs, a.1.bs, b.1.rs, b.1.cs, b.1.bs, c.1.rs, c.1.cs, c.1.bs].map(long);
        let axis = i32::from(channel_axis != 0);
        let grid = (n.div_ceil(64) as u32, m.div_ceil(64) as u32, int(batch, WHAT)? as u32);
        let cfg = LaunchConfig { grid_dim: grid, block_dim: (16, 16, 1), shared_mem_bytes: 0 };
        let f = self.function(WHAT)?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&mi).arg(&ni).arg(&ki);
        l.arg(a.0).arg(&a_rs).arg(&a_cs).arg(&a_bs);
        l.arg(b.0).arg(&b_rs).arg(&b_cs).arg(&b_bs);
        l.arg(c.0).arg(&c_rs).arg(&c_cs).arg(&c_bs);
        l.arg(&e.flags).arg(e.scale).arg(e.shift).arg(e.residual).arg(&axis).arg(&e.act).arg(&e.slope);
        // SAFETY: the argument list matches gemm_fwd_f32's signature in kernels/gemm.cu type for
        // type; every index the kernel forms is below the spans checked above; the launch shape
        // is the kernel's contract (16×16 threads, one 64×64 tile of C per block and batch entry).
        unsafe { l.launch(cfg) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// y [B, O] = epi(x [B, I] · Wᵀ), W [O, I] row-major (ops::linear), epilogue per column.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_fwd(
        &self,
        x: &Buf,
        w: &Buf,
        batch: usize,
        in_f: usize,
        out_f: usize,
        epi: &Epi,
        y: &mut Buf,
    ) -> Result<()> {
        if epi.residual.is_some() {
            return Err(Error::Shape("CUDA linear: no residual input".into()));
        }
        self.gemm_fwd(
            (batch, out_f, in_f, 1),
            (x, MatLayout::row_major(in_f, 0)),
            (w, MatLayout::transposed(in_f, 0)),
            (y, MatLayout::row_major(out_f, 0)),
            epi,
            1,
        )
    }

    /// Convolution as an implicit GEMM in `prec` (`conv2d_fwd_f32` or `conv2d_fwd_bf16`):
    /// x [B, Cin, H, W], w [Cout, Cin, kh, kw], out [B, Cout, Ho, Wo], epilogue per output channel.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_fwd(
        &self,
        prec: Precision,
        x: &Buf,
        w: &Buf,
        batch: usize,
        g: &Conv2dGeom,
        epi: &Epi,
        out: &mut Buf,
    ) -> Result<()> {
        let what = pick(prec, ("conv2d_fwd_f32", "conv2d_fwd_bf16"));
        const WHAT: &str = "conv2d_fwd";
        let sizes = conv_ints(batch, g, WHAT)?;
        need(x, batch * g.in_len(), "conv2d x")?;
        need(w, g.cout * g.kdim(), "conv2d w")?;
        let total = batch * g.out_len();
        need(out, total, "conv2d out")?;
        let e = self.epi_args(epi, g.cout, total, WHAT)?;
        let f = self.function(what)?;
        let mut l = self.stream.launch_builder(f);
        l.arg(x).arg(w).arg(&*out);
        sizes.iter().for_each(|v| {
            l.arg(v);
        });
        // the kernel's offsets are ints: the whole input and output must fit
        int(batch * g.in_len(), WHAT)?;
        int(total, WHAT)?;
        let positions = total / g.cout;
        let tiles = positions.div_ceil(64) * g.cout.div_ceil(64);
        let (splits, per) = self.split_plan(tiles, total, g.kdim(), FWD_MIN_SPLIT_DEPTH);
        let per_i = int(per, WHAT)?;
        l.arg(&e.flags).arg(e.scale).arg(e.shift).arg(e.residual).arg(&e.act).arg(&e.slope);
        l.arg(&self.splitk).arg(&per_i);
        let cfg = cfg_tiles(g.cout, positions, splits, WHAT)?;
        // SAFETY: arguments match conv2d_fwd_f32 / conv2d_fwd_bf16 (one argument list) in kernels/conv2d.cu; x, w, out and the epilogue
        // buffers were checked to hold every element the kernel indexes for these sizes, whose
        // GEMM extents (B·Ho·Wo, Cin·kh·kw) fit int; the grid covers C [Cout, B·Ho·Wo] in 64×64
        // tiles of 16×16 threads per depth split, the kernel's contract; with several splits the
        // scratch holds splits·total floats (split_plan keeps it so).
        unsafe { l.launch(cfg) }.map_err(driver_err(what))?;
        if splits > 1 {
            self.finish_splits(splits, total, (g.cout, positions / batch), &e, out)?;
        }
        Ok(())
    }

    /// Transposed convolution, gather form, as implicit GEMMs in `prec` (`conv_transpose2d_fwd_f32`
    /// or `_bf16`, one per output parity class; `conv_transpose2d_1px_fwd_*` for a one-pixel
    /// unpadded input): x [B, Cin, H, W], `w_packed` the graph's [Cout·k·k, Cin]
    /// (ops::conv_transpose2d::pack_weight), out [B, Cout, Ho, Wo].
    #[allow(clippy::too_many_arguments)]
    pub fn conv_transpose2d_fwd(
        &self,
        prec: Precision,
        x: &Buf,
        w_packed: &Buf,
        batch: usize,
        g: &ConvTranspose2dGeom,
        epi: &Epi,
        out: &mut Buf,
    ) -> Result<()> {
        const WHAT: &str = "conv_transpose2d_fwd";
        let (ho, wo) = g.out_hw().ok_or_else(|| Error::Shape(format!("{WHAT}: padding swallows the output {g:?}")))?;
        nonzero(&[batch, g.cin, g.cout, g.k, g.stride], WHAT)?;
        need(x, batch * g.in_len(), "conv_transpose2d x")?;
        need(w_packed, g.rows() * g.cin, "conv_transpose2d w")?;
        let total = batch * g.cout * ho * wo;
        need(out, total, "conv_transpose2d out")?;
        let e = self.epi_args(epi, g.cout, total, WHAT)?;
        let one_pixel = g.h == 1 && g.w == 1 && g.pad == 0;
        // The largest parity class's GEMM: B·ceil(Ho/s)·ceil(Wo/s) columns, Cin·ceil(k/s)² deep.
        let (hq, wq, kq) = (ho.div_ceil(g.stride), wo.div_ceil(g.stride), g.k.div_ceil(g.stride));
        int(g.cin * kq * kq, WHAT)?;
        int(batch * g.in_len(), WHAT)?;
        int(total, WHAT)?;
        let [b, ci, h, wd, co, k, s, p, hoi, woi] =
            ints([batch, g.cin, g.h, g.w, g.cout, g.k, g.stride, g.pad, ho, wo], WHAT)?;
        let classes = g.stride * g.stride;
        let (splits, per) = if one_pixel {
            (1, g.cin)
        } else {
            let tiles = (batch * hq * wq).div_ceil(64) * g.cout.div_ceil(64) * classes;
            self.split_plan(tiles, total, g.cin * kq * kq, FWD_MIN_SPLIT_DEPTH)
        };
        let per_i = int(per, WHAT)?;
        let (name, cfg) = if one_pixel {
            let name = pick(prec, ("conv_transpose2d_1px_fwd_f32", "conv_transpose2d_1px_fwd_bf16"));
            (name, cfg_tiles(g.rows(), batch, 1, WHAT)?)
        } else {
            let name = pick(prec, ("conv_transpose2d_fwd_f32", "conv_transpose2d_fwd_bf16"));
            (name, cfg_tiles(g.cout, batch * hq * wq, classes * splits, WHAT)?)
        };
        let f = self.function(name)?;
        let mut l = self.stream.launch_builder(f);
        l.arg(x).arg(w_packed).arg(&*out).arg(&b).arg(&ci);
        if one_pixel {
            l.arg(&co).arg(&k);
        } else {
            l.arg(&h).arg(&wd).arg(&co).arg(&k).arg(&s).arg(&p).arg(&hoi).arg(&woi);
        }
        l.arg(&e.flags).arg(e.scale).arg(e.shift).arg(e.residual).arg(&e.act).arg(&e.slope);
        if !one_pixel {
            l.arg(&self.splitk).arg(&per_i);
        }
        // SAFETY: arguments match conv_transpose2d_fwd_{f32,bf16} (or, for a 1×1 unpadded input,
        // where Ho = Wo = k, conv_transpose2d_1px_fwd_{f32,bf16}) in kernels/conv_transpose2d.cu; every buffer
        // holds what the kernel indexes for these sizes (checked above), whose GEMM extents fit
        // int; the grid covers every parity class's C [Cout, B·Hq·Wq] per depth split (z = s² ·
        // splits, per_split at least the largest class's depth when there is one split) or the
        // dense C [Cout·k·k, B] in 64×64 tiles of 16×16 threads, the kernels' contracts; with
        // several splits the scratch holds splits·total floats (split_plan keeps it so).
        unsafe { l.launch(cfg) }.map_err(driver_err(name))?;
        if splits > 1 {
            self.finish_splits(splits, total, (g.cout, ho * wo), &e, out)?;
        }
        Ok(())
    }

    /// The epilogue as its own pass over x [B, C, S] (`batch_norm_fwd_f32`): inference batch
    /// norm with (scale, shift) from BatchNormParams::scale_shift, plus residual and activation.
    pub fn batch_norm_fwd(
        &self,
        x: &Buf,
        (batch, channels, spatial): (usize, usize, usize),
        epi: &Epi,
        out: &mut Buf,
    ) -> Result<()> {
        const WHAT: &str = "batch_norm_fwd_f32";
        nonzero(&[batch, channels, spatial], WHAT)?;
        let n = batch * channels * spatial;
        need(x, n, "batch_norm x")?;
        need(out, n, "batch_norm out")?;
        let e = self.epi_args(epi, channels, n, WHAT)?;
        let (nl, c, s) = (long(n), int(channels, WHAT)?, long(spatial));
        let f = self.function(WHAT)?;
        let mut l = self.stream.launch_builder(f);
        l.arg(x).arg(out).arg(&nl).arg(&c).arg(&s);
        l.arg(&e.flags).arg(e.scale).arg(e.shift).arg(e.residual).arg(&e.act).arg(&e.slope);
        // SAFETY: arguments match batch_norm_fwd_f32 in kernels/batch_norm.cu; x, out and the
        // epilogue buffers hold n = B·C·S elements (or C per channel); grid-stride loop.
        unsafe { l.launch(cfg_1d(n)) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// out = act(x), elementwise over x's first `n` elements.
    pub fn activation_fwd(&self, x: &Buf, n: usize, act: Activation, out: &mut Buf) -> Result<()> {
        const WHAT: &str = "activation_fwd_f32";
        nonzero(&[n], WHAT)?;
        need(x, n, "activation x")?;
        need(out, n, "activation out")?;
        let (code, slope) = act_code(act);
        let nl = long(n);
        let f = self.function(WHAT)?;
        let mut l = self.stream.launch_builder(f);
        l.arg(x).arg(out).arg(&nl).arg(&code).arg(&slope);
        // SAFETY: arguments match activation_fwd_f32 in kernels/elementwise.cu; both buffers hold
        // n elements; grid-stride loop.
        unsafe { l.launch(cfg_1d(n)) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// Caption rows from their alphabet indices: idx [B, L] (−1: a zero row) → out [B, A, L]
    /// one-hot (model::text::encode_indices / encode_into).
    pub fn onehot_fwd(&self, idx: &Buf, (batch, alphabet, len): (usize, usize, usize), out: &mut Buf) -> Result<()> {
        const WHAT: &str = "onehot_f32";
        nonzero(&[batch, alphabet, len], WHAT)?;
        need(idx, batch * len, "onehot indices")?;
        need(out, batch * alphabet * len, "onehot out")?;
        let [b, a, l] = ints([batch, alphabet, len], WHAT)?;
        let f = self.function(WHAT)?;
        let mut lb = self.stream.launch_builder(f);
        lb.arg(idx).arg(&b).arg(&a).arg(&l).arg(out);
        // SAFETY: arguments match onehot_f32 in kernels/elementwise.cu; idx holds B·L values and
        // out B·A·L (checked); grid-stride loop over out.
        unsafe { lb.launch(cfg_1d(batch * alphabet * len)) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// out = a + b over the first `n` elements.
    pub fn add_fwd(&self, a: &Buf, b: &Buf, n: usize, out: &mut Buf) -> Result<()> {
        const WHAT: &str = "add_fwd_f32";
        nonzero(&[n], WHAT)?;
        need(a, n, "add a")?;
        need(b, n, "add b")?;
        need(out, n, "add out")?;
        let nl = long(n);
        let f = self.function(WHAT)?;
        let mut l = self.stream.launch_builder(f);
        l.arg(a).arg(b).arg(out).arg(&nl);
        // SAFETY: arguments match add_fwd_f32 in kernels/elementwise.cu; all three buffers hold n
        // elements; grid-stride loop.
        unsafe { l.launch(cfg_1d(n)) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// a [B, a_len], b [B, b_len] → out [B, a_len + b_len] (ops::elementwise::concat_channels).
    pub fn concat_channels_fwd(&self, a: (&Buf, usize), b: (&Buf, usize), batch: usize, out: &mut Buf) -> Result<()> {
        const WHAT: &str = "concat_channels_fwd_f32";
        nonzero(&[batch, a.1 + b.1], WHAT)?;
        need(a.0, batch * a.1, "concat a")?;
        need(b.0, batch * b.1, "concat b")?;
        let total = batch * (a.1 + b.1);
        need(out, total, "concat out")?;
        let (al, bl, bi) = (long(a.1), long(b.1), int(batch, WHAT)?);
        let f = self.function(WHAT)?;
        let mut l = self.stream.launch_builder(f);
        l.arg(a.0).arg(&al).arg(b.0).arg(&bl).arg(&bi).arg(out);
        // SAFETY: arguments match concat_channels_fwd_f32 in kernels/elementwise.cu; a, b and
        // out hold B·a_len, B·b_len and B·(a_len + b_len) elements; grid-stride loop.
        unsafe { l.launch(cfg_1d(total)) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// x [B·C] → out [B·C, hw] (ops::elementwise::replicate_spatial).
    pub fn replicate_spatial_fwd(&self, x: &Buf, rows: usize, hw: usize, out: &mut Buf) -> Result<()> {
        const WHAT: &str = "replicate_spatial_fwd_f32";
        nonzero(&[rows, hw], WHAT)?;
        need(x, rows, "replicate x")?;
        need(out, rows * hw, "replicate out")?;
        let (r, h) = (long(rows), long(hw));
        let f = self.function(WHAT)?;
        let mut l = self.stream.launch_builder(f);
        l.arg(x).arg(&r).arg(&h).arg(out);
        // SAFETY: arguments match replicate_spatial_fwd_f32 in kernels/elementwise.cu; x holds
        // rows elements and out rows·hw; grid-stride loop.
        unsafe { l.launch(cfg_1d(rows * hw)) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// x [B, T, H] → out [B, H], the mean over time (ops::pool::mean_time).
    pub fn mean_time_fwd(&self, x: &Buf, (batch, t, h): (usize, usize, usize), out: &mut Buf) -> Result<()> {
        const WHAT: &str = "mean_time_fwd_f32";
        nonzero(&[batch, t, h], WHAT)?;
        need(x, batch * t * h, "mean_time x")?;
        need(out, batch * h, "mean_time out")?;
        let (bi, ti, hi) = (int(batch, WHAT)?, int(t, WHAT)?, int(h, WHAT)?);
        let f = self.function(WHAT)?;
        let mut l = self.stream.launch_builder(f);
        l.arg(x).arg(&bi).arg(&ti).arg(&hi).arg(out);
        // SAFETY: arguments match mean_time_fwd_f32 in kernels/elementwise.cu; x holds B·T·H and
        // out B·H elements; grid-stride loop.
        unsafe { l.launch(cfg_1d(batch * h)) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// Max-pool over rows of length t: out [rows, (t − k)/s + 1] (ops::pool::maxpool1d).
    pub fn maxpool1d_fwd(&self, x: &Buf, (rows, t, k, s): (usize, usize, usize, usize), out: &mut Buf) -> Result<()> {
        const WHAT: &str = "maxpool1d_fwd_f32";
        let to = maxpool_out_len((rows, t, k, s), WHAT)?;
        need(x, rows * t, "maxpool x")?;
        need(out, rows * to, "maxpool out")?;
        let (r, ti, ki, si, toi) = (long(rows), int(t, WHAT)?, int(k, WHAT)?, int(s, WHAT)?, int(to, WHAT)?);
        let f = self.function(WHAT)?;
        let mut l = self.stream.launch_builder(f);
        l.arg(x).arg(&r).arg(&ti).arg(&ki).arg(&si).arg(&toi).arg(out);
        // SAFETY: arguments match maxpool1d_fwd_f32 in kernels/elementwise.cu; the last window
        // ends at (to − 1)·s + k ≤ t, x holds rows·t and out rows·to elements; grid-stride loop.
        unsafe { l.launch(cfg_1d(rows * to)) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// conv1d in `prec` (`conv1d_fwd_f32` or `conv1d_fwd_bf16`): x [B, Cin, T], w [Cout, Cin, k],
    /// out [B, Cout, T − k + 1], bias as the epilogue's shift (ops::conv1d).
    pub fn conv1d_fwd(
        &self,
        prec: Precision,
        x: &Buf,
        w: &Buf,
        (batch, cin, t, cout, k): (usize, usize, usize, usize, usize),
        epi: &Epi,
        out: &mut Buf,
    ) -> Result<()> {
        let what = pick(prec, ("conv1d_fwd_f32", "conv1d_fwd_bf16"));
        const WHAT: &str = "conv1d_fwd";
        nonzero(&[batch, cin, t, cout, k], WHAT)?;
        if epi.residual.is_some() || k > t {
            return Err(Error::Shape(format!("{WHAT}: no residual, and k {k} ≤ T {t}")));
        }
        let to = t + 1 - k;
        need(x, batch * cin * t, "conv1d x")?;
        need(w, cout * cin * k, "conv1d w")?;
        need(out, batch * cout * to, "conv1d out")?;
        let e = self.epi_args(epi, cout, batch * cout * to, WHAT)?;
        let [b, ci, ti, co, ki] = ints([batch, cin, t, cout, k], WHAT)?;
        let f = self.function(what)?;
        let mut l = self.stream.launch_builder(f);
        int(batch * cin * t, WHAT)?;
        let total = batch * cout * to;
        int(total, WHAT)?;
        let tiles = (batch * to).div_ceil(64) * cout.div_ceil(64);
        let (splits, per) = self.split_plan(tiles, total, cin * k, FWD_MIN_SPLIT_DEPTH);
        let per_i = int(per, WHAT)?;
        l.arg(x).arg(w).arg(&*out).arg(&b).arg(&ci).arg(&ti).arg(&co).arg(&ki);
        l.arg(&e.flags).arg(e.scale).arg(e.shift).arg(&e.act).arg(&e.slope);
        l.arg(&self.splitk).arg(&per_i);
        let cfg = cfg_tiles(cout, batch * to, splits, WHAT)?;
        // SAFETY: arguments match conv1d_fwd_f32 / conv1d_fwd_bf16 in kernels/char_cnn_rnn.cu; x, w, out and the
        // epilogue's per-channel buffers hold what the kernel indexes (sizes fit int); the grid
        // covers C [Cout, B·To] in 64×64 tiles of 16×16 threads per depth split, the kernel's
        // contract; with several splits the scratch holds splits·total floats (split_plan).
        unsafe { l.launch(cfg) }.map_err(driver_err(what))?;
        if splits > 1 {
            self.finish_splits(splits, total, (cout, to), &e, out)?;
        }
        Ok(())
    }

    /// The recurrence over time (ops::rnn::gru_ref or rnn_relu_ref): x [B, C, T] → out
    /// [B, T, H]. `scratch` holds `rnn_scratch_len(d, gru)` elements: proj = W_ih·x for every
    /// step (one batched GEMM), then, for the GRU, r ⊙ h and z between the two launches of a
    /// step. Each step is launched across the GPU (one warp per row of W_hh, or from
    /// GRU_TILE_MIN_BATCH samples on the GRU two tile GEMMs), T steps in order on the stream.
    /// Weights row-major as PyTorch's: w_ih [gH, C], w_hh [gH, H].
    pub fn rnn_fwd(&self, x: &Buf, p: &RnnBufs, gru: bool, d: RnnDims, scratch: &mut Buf, out: &mut Buf) -> Result<()> {
        let what = if gru { "gru_step_n_f32" } else { "rnn_relu_step_f32" };
        let (c, t, h) = (d.cin, d.t, d.hidden);
        let g = if gru { 3 } else { 1 };
        nonzero(&[d.batch, c, t, h], what)?;
        need(p.b_ih, g * h, "rnn b_ih")?;
        need(p.w_hh, g * h * h, "rnn w_hh")?;
        need(p.b_hh, g * h, "rnn b_hh")?;
        need(out, d.batch * t * h, "rnn out")?;
        need(scratch, rnn_scratch_len(d, gru), "rnn scratch")?;
        // proj_b [T, gH] = x_bᵀ [T, C] · W_ihᵀ [C, gH] for every sample b.
        self.gemm_fwd(
            (t, g * h, c, d.batch),
            (x, MatLayout { rs: 1, cs: t, bs: c * t }),
            (p.w_ih, MatLayout::transposed(c, 0)),
            (scratch, MatLayout::row_major(g * h, t * g * h)),
            &Epi::default(),
            1,
        )?;
        int(rnn_scratch_len(d, gru), what)?;
        let [bi, ti, hi] = ints([d.batch, t, h], what)?;
        let warps = (RNN_BLOCK / 32) as usize;
        let blocks = |rows: usize| LaunchConfig {
            grid_dim: (rows.div_ceil(warps) as u32, 1, 1),
            block_dim: (RNN_BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let tiles = gru && d.batch >= GRU_TILE_MIN_BATCH;
        let tile = |name: &'static str, rows: usize| Ok::<_, Error>((name, cfg_tiles(rows, d.batch, 1, name)?));
        for s in 0..t {
            let si = int(s, what)?;
            // This step's launches in order: r and z (GRU, from step 1), then n (or the ReLU RNN's).
            let (steps, n) = match (gru && s > 0, tiles) {
                (false, _) => ([(what, blocks(h)); 2], 1),
                (true, false) => ([("gru_step_rz_f32", blocks(2 * h)), (what, blocks(h))], 2),
                (true, true) => ([tile("gru_step_rz_tile_f32", 2 * h)?, tile("gru_step_n_tile_f32", h)?], 2),
            };
            for &(name, cfg) in &steps[..n] {
                let f = self.function(name)?;
                let mut l = self.stream.launch_builder(f);
                l.arg(&*scratch).arg(p.b_ih).arg(p.w_hh).arg(p.b_hh).arg(&bi).arg(&ti).arg(&hi).arg(&si);
                l.arg(&*out);
                // SAFETY: the step kernels of kernels/char_cnn_rnn.cu (gru_step_rz_f32,
                // gru_step_n_f32, rnn_relu_step_f32, gru_step_rz_tile_f32, gru_step_n_tile_f32)
                // share these arguments; scratch holds the B·T·gH projections (and, for the GRU,
                // 2·B·H for r ⊙ h and z after them), out B·T·H, the biases gH and w_hh gH·H
                // (checked above, offsets fit int); each grid is its kernel's contract (a warp
                // per row of W_hh, or 64×64 tiles of C [rows, B]). One stream orders the launches:
                // a step reads step s − 1 of out and the r ⊙ h and z the launch before it wrote.
                unsafe { l.launch(cfg) }.map_err(driver_err(name))?;
            }
        }
        Ok(())
    }

    /// z [batch, nz]: row b is the Philox noise of image `image0 + b` for `seed`
    /// (rng::normal_noise, docs/WEIGHTS.md).
    pub fn philox_normal_fwd(&self, seed: u64, image0: u64, (nz, batch): (usize, usize), z: &mut Buf) -> Result<()> {
        const WHAT: &str = "philox_normal_fwd_f32";
        nonzero(&[nz, batch], WHAT)?;
        need(z, nz * batch, "philox z")?;
        let (nzi, bi) = (int(nz, WHAT)?, int(batch, WHAT)?);
        let f = self.function(WHAT)?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&seed).arg(&image0).arg(&nzi).arg(&bi).arg(z);
        // SAFETY: arguments match philox_normal_fwd_f32 in kernels/rng.cu; z holds batch·nz
        // elements; grid-stride loop over the Philox blocks.
        unsafe { l.launch(cfg_1d(batch * nz.div_ceil(4))) }.map_err(driver_err(WHAT))?;
        Ok(())
    }
}

/// Elements of `CudaDevice::rnn_fwd`'s scratch: the W_ih·x projections of every step (B·T·gH),
/// and for the GRU r ⊙ h and z of the current step (2·B·H).
pub fn rnn_scratch_len(d: RnnDims, gru: bool) -> usize {
    if gru {
        d.batch * d.t * 3 * d.hidden + 2 * d.batch * d.hidden
    } else {
        d.batch * d.t * d.hidden
    }
}

/// A recurrence's parameters on the device (PyTorch's layout; GRU rows r, z, n).
#[derive(Clone, Copy, Debug)]
pub struct RnnBufs<'a> {
    pub w_ih: &'a Buf,
    pub b_ih: &'a Buf,
    pub w_hh: &'a Buf,
    pub b_hh: &'a Buf,
}
