//! Launch wrappers of the training kernels (issue 8): backward passes, the GAN loss and the
//! optimizers, with the same checks as `launch.rs` (every buffer's length against what the
//! kernel indexes, sizes converted to the kernels' integer types). The semantics are those of
//! the CPU functions named on each: overwritten input gradients, accumulated parameter gradients.

use cudarc::driver::{LaunchArgs, LaunchConfig, PushKernelArg};

use super::launch::{act_code, cfg_1d, cfg_tiles, conv_ints, int, ints, long, maxpool_out_len, need, nonzero, BLOCK};
use super::{driver_err, Buf, CudaDevice, Precision};
use crate::error::{Error, Result};
use crate::ops::conv2d::Conv2dGeom;
use crate::ops::conv_transpose2d::ConvTranspose2dGeom;
use crate::ops::optim::{Adam, RmsProp};
use crate::ops::Activation;

/// `blocks` blocks of BLOCK = 256 threads: one per channel (the batch-norm kernels), per
/// mode-seeking pair, or a single one (the losses' reductions).
fn cfg_blocks(blocks: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

/// Pushes `buf`'s device pointer, or a null pointer when it is absent: the loss kernels read
/// null weights as "all weights 1" (the classifier's kernel is told by its `uniform` flag).
fn arg_or_null<'a>(l: &mut LaunchArgs<'a>, buf: Option<&'a Buf>) {
    static NULL: u64 = 0;
    match buf {
        Some(b) => l.arg(b),
        None => l.arg(&NULL),
    };
}

/// Blocks of the rebuild's L1 kernel: enough to fill a GPU's SMs for B × 12,288 elements, few
/// enough that the partial sums are one small download.
pub const L1_BLOCKS: usize = 264;

impl CudaDevice {
    /// dx = the convolution's input gradient (overwritten; ops::conv2d::conv2d_backward's dx).
    /// dy [B, Cout, Ho, Wo], w [Cout, Cin, kh, kw], dx [B, Cin, H, W].
    pub fn conv2d_bwd_data(&self, dy: &Buf, w: &Buf, batch: usize, g: &Conv2dGeom, dx: &mut Buf) -> Result<()> {
        const WHAT: &str = "conv2d_bwd_data_f32";
        let v = conv_ints(batch, g, WHAT)?;
        need(dy, batch * g.out_len(), "conv2d dy")?;
        need(w, g.cout * g.kdim(), "conv2d w")?;
        need(dx, batch * g.in_len(), "conv2d dx")?;
        let f = self.function(WHAT)?;
        let mut l = self.stream().launch_builder(f);
        l.arg(dy).arg(w).arg(dx);
        v.iter().for_each(|a| {
            l.arg(a);
        });
        int(batch * g.in_len(), WHAT)?;
        int(batch * g.out_len(), WHAT)?;
        let cells = batch * g.h.div_ceil(g.stride) * g.w.div_ceil(g.stride);
        let cfg = cfg_tiles(g.cin, cells, g.stride * g.stride, WHAT)?;
        // SAFETY: arguments match conv2d_bwd_data_f32 in kernels/conv_transpose2d.cu; dy, w and
        // dx hold what the geometry indexes (checked above; both activations fit int); the grid
        // covers every parity class's C [Cin, B·ceil(H/s)·ceil(W/s)] (z = s²) in 64×64 tiles of
        // 16×16 threads, the kernel's contract.
        unsafe { l.launch(cfg) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// dw += the convolution's weight gradient (ops::conv2d::conv2d_backward's dW).
    /// x [B, Cin, H, W], dy [B, Cout, Ho, Wo], dw [Cout, Cin, kh, kw]. The GEMM's depth
    /// (B·Ho·Wo) is split so that about two blocks per SM have work; the splits' tiles are
    /// summed in a fixed order (`conv2d_splitk_sum_f32`), so the result is the same every run.
    pub fn conv2d_bwd_weight(&self, x: &Buf, dy: &Buf, batch: usize, g: &Conv2dGeom, dw: &mut Buf) -> Result<()> {
        const WHAT: &str = "conv2d_bwd_weight_f32";
        let v = conv_ints(batch, g, WHAT)?;
        need(x, batch * g.in_len(), "conv2d x")?;
        need(dy, batch * g.out_len(), "conv2d dy")?;
        let len = g.cout * g.kdim();
        need(dw, len, "conv2d dw")?;
        int(batch * g.in_len(), WHAT)?;
        int(batch * g.out_len(), WHAT)?;
        let depth = batch * g.out_len() / g.cout;
        let tiles = g.cout.div_ceil(64) * g.kdim().div_ceil(64);
        // Each split at least 512 deep.
        let (splits, per_split) = self.split_plan(tiles, len, depth, 512);
        let per = int(per_split, WHAT)?;
        let cfg = cfg_tiles(g.cout, g.kdim(), splits, WHAT)?;
        let f = self.function(WHAT)?;
        let mut l = self.stream().launch_builder(f);
        l.arg(x).arg(dy).arg(&*dw).arg(&self.splitk);
        v.iter().for_each(|a| {
            l.arg(a);
        });
        l.arg(&per);
        // SAFETY: arguments match conv2d_bwd_weight_f32 in kernels/conv2d.cu; x, dy and dw hold
        // what the geometry indexes (checked above; both activations fit int); every split is
        // non-empty (splits = ceil(depth / per_split)) and, when there are several, the scratch
        // holds splits·len floats (split_plan keeps it so); the grid covers dw's
        // [Cout, Cin·kh·kw] in 64×64 tiles of 16×16 threads per split, the kernel's contract.
        unsafe { l.launch(cfg) }.map_err(driver_err(WHAT))?;
        if splits > 1 {
            const SUM: &str = "conv2d_splitk_sum_f32";
            let (si, ll) = (int(splits, SUM)?, long(len));
            let f = self.function(SUM)?;
            let mut l = self.stream().launch_builder(f);
            l.arg(&self.splitk).arg(&si).arg(&ll).arg(dw);
            // SAFETY: arguments match conv2d_splitk_sum_f32 in kernels/conv2d.cu; the scratch
            // holds the splits·len partial sums the launch before it wrote (same stream), dw len
            // elements; grid-stride loop.
            unsafe { l.launch(cfg_1d(len)) }.map_err(driver_err(SUM))?;
        }
        Ok(())
    }

    /// The transposed convolution's backward (ops::conv_transpose2d::conv_transpose2d_backward):
    /// dx (overwritten, when given) is the plain convolution of dy with w under the adjoint
    /// geometry, dw (accumulated) that convolution's weight gradient with x and dy swapped.
    /// w and dw in PyTorch's layout [Cin, Cout, k, k].
    #[allow(clippy::too_many_arguments)]
    pub fn conv_transpose2d_bwd(
        &self,
        x: &Buf,
        w: &Buf,
        dy: &Buf,
        batch: usize,
        g: &ConvTranspose2dGeom,
        dx: Option<&mut Buf>,
        dw: &mut Buf,
    ) -> Result<()> {
        g.out_hw().ok_or_else(|| Error::Shape(format!("conv_transpose2d backward: no output for {g:?}")))?;
        let adj = g.adjoint_conv();
        if let Some(dx) = dx {
            self.conv2d_fwd(Precision::F32, dy, w, batch, &adj, &super::Epi::default(), dx)?;
        }
        self.conv2d_bwd_weight(dy, x, batch, &adj, dw)
    }

    /// Training-mode batch norm (ops::batch_norm::batch_norm_train): out, and the batch's mean
    /// and invstd per channel. x and out [B, C, S].
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm_train_fwd(
        &self,
        x: &Buf,
        (batch, channels, spatial): (usize, usize, usize),
        gamma: &Buf,
        beta: &Buf,
        out: &mut Buf,
        mean: &mut Buf,
        invstd: &mut Buf,
    ) -> Result<()> {
        const WHAT: &str = "batch_norm_train_fwd_f32";
        nonzero(&[batch, channels, spatial], WHAT)?;
        let n = batch * channels * spatial;
        need(x, n, "batch_norm x")?;
        need(out, n, "batch_norm out")?;
        for (b, what) in [(gamma, "gamma"), (beta, "beta")] {
            need(b, channels, what)?;
        }
        need(mean, channels, "batch_norm mean")?;
        need(invstd, channels, "batch_norm invstd")?;
        // The kernels index a channel's B·S values with 32-bit ints.
        let [b, c, s, _] = ints([batch, channels, spatial, batch * spatial], WHAT)?;
        let f = self.function(WHAT)?;
        let mut l = self.stream().launch_builder(f);
        l.arg(x).arg(&b).arg(&c).arg(&s).arg(gamma).arg(beta).arg(out).arg(mean).arg(invstd);
        // SAFETY: arguments match batch_norm_train_fwd_f32 in kernels/batch_norm.cu; x and out
        // hold B·C·S elements, the per-channel buffers C (checked above); one block per channel.
        unsafe { l.launch(cfg_blocks(channels)) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// Backward of training-mode batch norm (ops::batch_norm::batch_norm_backward): dx
    /// overwritten, dγ and dβ accumulated.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm_bwd(
        &self,
        x: &Buf,
        dy: &Buf,
        (batch, channels, spatial): (usize, usize, usize),
        gamma: &Buf,
        (mean, invstd): (&Buf, &Buf),
        dx: &mut Buf,
        (dgamma, dbeta): (&mut Buf, &mut Buf),
    ) -> Result<()> {
        const WHAT: &str = "batch_norm_bwd_f32";
        nonzero(&[batch, channels, spatial], WHAT)?;
        let n = batch * channels * spatial;
        for (b, what) in [(x, "batch_norm x"), (dy, "batch_norm dy")] {
            need(b, n, what)?;
        }
        need(dx, n, "batch_norm dx")?;
        for (b, what) in [(gamma, "gamma"), (mean, "mean"), (invstd, "invstd")] {
            need(b, channels, what)?;
        }
        need(dgamma, channels, "dgamma")?;
        need(dbeta, channels, "dbeta")?;
        // The kernels index a channel's B·S values with 32-bit ints.
        let [b, c, s, _] = ints([batch, channels, spatial, batch * spatial], WHAT)?;
        let f = self.function(WHAT)?;
        let mut l = self.stream().launch_builder(f);
        l.arg(x).arg(dy).arg(&b).arg(&c).arg(&s).arg(gamma).arg(mean).arg(invstd).arg(dx).arg(dgamma).arg(dbeta);
        // SAFETY: arguments match batch_norm_bwd_f32 in kernels/batch_norm.cu; the [B, C, S]
        // buffers hold B·C·S elements and the per-channel ones C (checked); one block per channel.
        unsafe { l.launch(cfg_blocks(channels)) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// dx = dy·act'(x) from y = act(x) over the first n elements
    /// (ops::activation::activation_backward).
    pub fn activation_bwd(&self, y: &Buf, dy: &Buf, n: usize, act: Activation, dx: &mut Buf) -> Result<()> {
        const WHAT: &str = "activation_bwd_f32";
        nonzero(&[n], WHAT)?;
        need(y, n, "activation y")?;
        need(dy, n, "activation dy")?;
        need(dx, n, "activation dx")?;
        let (code, slope) = act_code(act);
        let nl = long(n);
        let f = self.function(WHAT)?;
        let mut l = self.stream().launch_builder(f);
        l.arg(y).arg(dy).arg(dx).arg(&nl).arg(&code).arg(&slope);
        // SAFETY: arguments match activation_bwd_f32 in kernels/elementwise.cu; all three buffers
        // hold n elements; grid-stride loop.
        unsafe { l.launch(cfg_1d(n)) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// dy [B, a_len + b_len] split into da [B, a_len] and db [B, b_len]
    /// (ops::elementwise::concat_channels_backward).
    pub fn concat_channels_bwd(
        &self,
        dy: &Buf,
        (a_len, b_len): (usize, usize),
        batch: usize,
        da: &mut Buf,
        db: &mut Buf,
    ) -> Result<()> {
        const WHAT: &str = "concat_channels_bwd_f32";
        nonzero(&[batch, a_len + b_len], WHAT)?;
        need(dy, batch * (a_len + b_len), "concat dy")?;
        need(da, batch * a_len, "concat da")?;
        need(db, batch * b_len, "concat db")?;
        let (al, bl) = (long(a_len), long(b_len));
        let [b] = ints([batch], WHAT)?;
        let f = self.function(WHAT)?;
        let mut l = self.stream().launch_builder(f);
        l.arg(dy).arg(&al).arg(&bl).arg(&b).arg(da).arg(db);
        // SAFETY: arguments match concat_channels_bwd_f32 in kernels/elementwise.cu; sizes
        // checked above; grid-stride loop over dy.
        unsafe { l.launch(cfg_1d(batch * (a_len + b_len))) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// dx[r] = Σ_p dy[r, p] over `rows` rows of `hw` (ops::elementwise::replicate_spatial_backward).
    pub fn replicate_spatial_bwd(&self, dy: &Buf, rows: usize, hw: usize, dx: &mut Buf) -> Result<()> {
        const WHAT: &str = "replicate_spatial_bwd_f32";
        nonzero(&[rows, hw], WHAT)?;
        need(dy, rows * hw, "replicate dy")?;
        need(dx, rows, "replicate dx")?;
        let (r, h) = (long(rows), long(hw));
        let f = self.function(WHAT)?;
        let mut l = self.stream().launch_builder(f);
        l.arg(dy).arg(&r).arg(&h).arg(dx);
        // SAFETY: arguments match replicate_spatial_bwd_f32 in kernels/elementwise.cu; dy holds
        // rows·hw elements and dx rows; grid-stride loop over rows.
        unsafe { l.launch(cfg_1d(rows)) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// Mean weighted BCE on logits into loss[0], its gradient into dlogits (overwritten)
    /// (ops::loss::bce_with_logits).
    pub fn bce_with_logits(
        &self,
        logits: &Buf,
        targets: &Buf,
        weights: Option<&Buf>,
        n: usize,
        dlogits: &mut Buf,
        loss: &mut Buf,
    ) -> Result<()> {
        const WHAT: &str = "bce_with_logits_f32";
        nonzero(&[n], WHAT)?;
        need(logits, n, "bce logits")?;
        need(targets, n, "bce targets")?;
        if let Some(w) = weights {
            need(w, n, "bce weights")?;
        }
        need(dlogits, n, "bce dlogits")?;
        need(loss, 1, "bce loss")?;
        let nl = long(n);
        let f = self.function(WHAT)?;
        let mut l = self.stream().launch_builder(f);
        l.arg(logits).arg(targets);
        arg_or_null(&mut l, weights);
        l.arg(&nl).arg(dlogits).arg(loss);
        // SAFETY: arguments match bce_with_logits_f32 in kernels/loss.cu (weights a device
        // pointer or null); every buffer holds n elements, loss one; one block of 256 threads.
        unsafe { l.launch(cfg_blocks(1)) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// The running statistics after a training-mode batch norm of `count` values per channel
    /// (ops::batch_norm::update_running).
    pub fn batch_norm_update_running(
        &self,
        running: (&mut Buf, &mut Buf),
        (mean, invstd): (&Buf, &Buf),
        channels: usize,
        count: usize,
        momentum: f32,
    ) -> Result<()> {
        const WHAT: &str = "batch_norm_update_running_f32";
        nonzero(&[channels, count], WHAT)?;
        let (rm, rv) = running;
        for (b, what) in [(&*rm, "running mean"), (&*rv, "running var"), (mean, "mean"), (invstd, "invstd")] {
            need(b, channels, what)?;
        }
        let [c] = ints([channels], WHAT)?;
        let n = long(count);
        let f = self.function(WHAT)?;
        let mut l = self.stream().launch_builder(f);
        l.arg(rm).arg(rv).arg(mean).arg(invstd).arg(&c).arg(&n).arg(&momentum);
        // SAFETY: arguments match batch_norm_update_running_f32 in kernels/batch_norm.cu; the
        // four buffers hold C elements (checked); grid-stride loop over channels.
        unsafe { l.launch(cfg_1d(channels)) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// Max-pool's backward (ops::pool::maxpool1d_backward): x [rows, t] the pool's input, dy
    /// [rows, (t − k)/s + 1], dx [rows, t] overwritten (each window's gradient at its first max).
    pub fn maxpool1d_bwd(
        &self,
        x: &Buf,
        dy: &Buf,
        (rows, t, k, s): (usize, usize, usize, usize),
        dx: &mut Buf,
    ) -> Result<()> {
        const WHAT: &str = "maxpool1d_bwd_f32";
        let to = maxpool_out_len((rows, t, k, s), WHAT)?;
        need(x, rows * t, "maxpool x")?;
        need(dy, rows * to, "maxpool dy")?;
        need(dx, rows * t, "maxpool dx")?;
        let (r, [ti, ki, si, toi]) = (long(rows), ints([t, k, s, to], WHAT)?);
        let f = self.function(WHAT)?;
        let mut l = self.stream().launch_builder(f);
        l.arg(x).arg(dy).arg(&r).arg(&ti).arg(&ki).arg(&si).arg(&toi).arg(dx);
        // SAFETY: arguments match maxpool1d_bwd_f32 in kernels/elementwise.cu; the last window
        // ends at (to − 1)·s + k ≤ t, x and dx hold rows·t and dy rows·to elements (checked);
        // grid-stride loop over dx.
        unsafe { l.launch(cfg_1d(rows * t)) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// dst += src over the first n elements.
    pub fn accumulate(&self, dst: &mut Buf, src: &Buf, n: usize) -> Result<()> {
        const WHAT: &str = "accumulate_f32";
        nonzero(&[n], WHAT)?;
        need(dst, n, "accumulate dst")?;
        need(src, n, "accumulate src")?;
        let nl = long(n);
        let f = self.function(WHAT)?;
        let mut l = self.stream().launch_builder(f);
        l.arg(dst).arg(src).arg(&nl);
        // SAFETY: arguments match accumulate_f32 in kernels/elementwise.cu; both buffers hold n
        // elements and are distinct allocations (one &mut, one &); grid-stride loop.
        unsafe { l.launch(cfg_1d(n)) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// out = each [c, h, w] image of x moved by its [dy, dx] of `shifts` ([B, 2] as floats), zero
    /// padded (ops::shift::shift_images); with `back` by the negated offsets, which is the
    /// backward pass (ops::shift::shift_images_backward). Every element of out written.
    pub fn shift_images(
        &self,
        x: &Buf,
        shifts: &Buf,
        (batch, dims): (usize, (usize, usize, usize)),
        back: bool,
        out: &mut Buf,
    ) -> Result<()> {
        self.image_map("shift_images_f32", x, (shifts, 2), (batch, dims), back, out)
    }

    /// out = each square [c, h, h] image of x under its transform of `flips` ([B] as floats,
    /// ops::flip); with `back` under its inverse, which is the backward pass
    /// (ops::flip::flip_images_backward). Every element of out written.
    pub fn flip_images(
        &self,
        x: &Buf,
        flips: &Buf,
        (batch, dims): (usize, (usize, usize, usize)),
        back: bool,
        out: &mut Buf,
    ) -> Result<()> {
        let (_, h, w) = dims;
        if h != w {
            return Err(Error::Shape(format!("flip_images_f32: a {h}×{w} image is not square")));
        }
        self.image_map("flip_images_f32", x, (flips, 1), (batch, dims), back, out)
    }

    /// D's augmentation kernels (`what`: shift_images_f32, flip_images_f32), each a gather of
    /// every output pixel from one pixel of the same image plane (or zero): x and out [B, c, h,
    /// w], `per` values of `params` per image, `back` the kernel's backward flag.
    fn image_map(
        &self,
        what: &'static str,
        x: &Buf,
        (params, per): (&Buf, usize),
        (batch, (c, h, w)): (usize, (usize, usize, usize)),
        back: bool,
        out: &mut Buf,
    ) -> Result<()> {
        nonzero(&[batch, c, h, w], what)?;
        let n = batch * c * h * w;
        need(x, n, "augment x")?;
        need(params, per * batch, "augment draws")?;
        need(out, n, "augment out")?;
        let [bi, ci, hi, wi] = ints([batch, c, h, w], what)?;
        let back = i32::from(back);
        let f = self.function(what)?;
        let mut l = self.stream().launch_builder(f);
        l.arg(x).arg(params).arg(&bi).arg(&ci).arg(&hi).arg(&wi).arg(&back).arg(out);
        // SAFETY: arguments match shift_images_f32 and flip_images_f32 in
        // kernels/elementwise.cu (same signature); x and out hold B·C·H·W elements and are
        // distinct allocations (one &, one &mut), params per·B (checked); each kernel reads x
        // only at pixels of the same plane (flip: H = W, checked by the caller); grid-stride loop.
        unsafe { l.launch(cfg_1d(n)) }.map_err(driver_err(what))?;
        Ok(())
    }

    /// The auxiliary classifier's softmax cross-entropy (ops::loss::softmax_cross_entropy_blocks)
    /// over the first `labeled` of `rows` rows of logits [rows, stride] whose Σ sizes blocks
    /// start at column `offset` (0 and Σ sizes for the plain classifier; the twin's halves at 0
    /// and Σ sizes of rows 2·Σ sizes wide), labels [labeled, sizes.len()] as floats: loss[0]
    /// (unscaled), dlogits = scale × the gradient in those columns (rows past `labeled`: zero),
    /// the other columns untouched. At most 4 attributes. `labels` None: the target is uniform
    /// over each block (ops::loss::softmax_cross_entropy_uniform, --classifier-fake).
    #[allow(clippy::too_many_arguments)]
    pub fn softmax_ce_blocks(
        &self,
        logits: &Buf,
        labels: Option<&Buf>,
        sizes: &[usize],
        (rows, labeled): (usize, usize),
        (stride, offset): (usize, usize),
        scale: f32,
        dlogits: &mut Buf,
        loss: &mut Buf,
    ) -> Result<()> {
        const WHAT: &str = "softmax_ce_blocks_f32";
        let k: usize = sizes.iter().sum();
        if sizes.is_empty() || sizes.len() > 4 || sizes.contains(&0) || labeled > rows || offset + k > stride {
            return Err(Error::Shape(format!(
                "{WHAT}: {} attributes {sizes:?} at column {offset} of rows {stride} wide, {labeled} of {rows} rows labeled",
                sizes.len()
            )));
        }
        nonzero(&[rows, labeled], WHAT)?;
        need(logits, rows * stride, "classifier logits")?;
        if let Some(labels) = labels {
            need(labels, labeled * sizes.len(), "classifier labels")?;
        }
        need(dlogits, rows * stride, "classifier dlogits")?;
        need(loss, 1, "classifier loss")?;
        let s: [usize; 4] = std::array::from_fn(|i| sizes.get(i).copied().unwrap_or(0));
        let [r, lab, st, off] = ints([rows, labeled, stride, offset], WHAT)?;
        let [s0, s1, s2, s3] = ints(s, WHAT)?;
        let uniform = i32::from(labels.is_none());
        let f = self.function(WHAT)?;
        let mut l = self.stream().launch_builder(f);
        l.arg(logits);
        arg_or_null(&mut l, labels);
        l.arg(&r).arg(&lab).arg(&st).arg(&off);
        l.arg(&s0).arg(&s1).arg(&s2).arg(&s3).arg(&uniform).arg(&scale);
        l.arg(dlogits).arg(loss);
        // SAFETY: arguments match softmax_ce_blocks_f32 in kernels/loss.cu; logits and dlogits
        // hold rows·stride values with the blocks inside each row (offset + K ≤ stride), labels
        // labeled·A (checked) or null with `uniform` set (the kernel then never reads it), loss
        // one (checked); one block of 256 threads.
        unsafe { l.launch(cfg_blocks(1)) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// The mode-seeking term (ops::loss::mode_seeking_loss) of `pairs` pairs: x and dx [2P, n]
    /// (pair p: rows p and P + p), z [2P, nz], images of (3, h, w) measured on k×k cells;
    /// dx = scale × the gradient (overwritten), term_out[p] each pair's term (unscaled; the
    /// loss is their mean), `cells` P·n/k² values of scratch.
    #[allow(clippy::too_many_arguments)]
    pub fn mode_seeking(
        &self,
        (x, z): (&Buf, &Buf),
        (pairs, n, nz): (usize, usize, usize),
        (h, w, k): (usize, usize, usize),
        (target, scale): (f32, f32),
        cells: &mut Buf,
        dx: &mut Buf,
        term_out: &mut Buf,
    ) -> Result<()> {
        const WHAT: &str = "mode_seeking_f32";
        nonzero(&[pairs, n, nz, h, w, k], WHAT)?;
        if n % (h * w) != 0 || h % k != 0 || w % k != 0 {
            return Err(Error::Shape(format!("{WHAT}: cells of {k} do not tile {n} values of {h}×{w} planes")));
        }
        need(x, 2 * pairs * n, "mode-seeking x")?;
        need(z, 2 * pairs * nz, "mode-seeking z")?;
        need(dx, 2 * pairs * n, "mode-seeking dx")?;
        need(cells, pairs * n / (k * k), "mode-seeking cells")?;
        need(term_out, pairs, "mode-seeking terms")?;
        let floor = if target > 0.0 { (1.0 / target as f64) as f32 } else { 0.0 };
        let [p, ni, nzi, hi, wi, ki] = ints([pairs, n, nz, h, w, k], WHAT)?;
        let f = self.function(WHAT)?;
        let mut l = self.stream().launch_builder(f);
        l.arg(x).arg(z).arg(&p).arg(&ni).arg(&nzi).arg(&hi).arg(&wi).arg(&ki).arg(&floor).arg(&scale);
        l.arg(cells).arg(dx).arg(term_out);
        // SAFETY: arguments match mode_seeking_f32 in kernels/loss.cu; every buffer holds what the
        // sizes index (checked); one block of 256 threads per pair.
        unsafe { l.launch(cfg_blocks(pairs)) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// One Adam step at 1-based step `t` over the first n elements (ops::optim::Adam::step:
    /// the same f32 coefficients, every operation rounded alone: bit-identical).
    pub fn adam_step(
        &self,
        adam: &Adam,
        t: u64,
        n: usize,
        p: &mut Buf,
        g: &Buf,
        state: (&mut Buf, &mut Buf),
    ) -> Result<()> {
        const WHAT: &str = "adam_step_f32";
        nonzero(&[n], WHAT)?;
        let (m, v) = state;
        need(p, n, "adam p")?;
        need(g, n, "adam g")?;
        need(m, n, "adam m")?;
        need(v, n, "adam v")?;
        let c = adam.coefficients(t);
        let nl = long(n);
        let f = self.function(WHAT)?;
        let mut l = self.stream().launch_builder(f);
        l.arg(p).arg(g).arg(m).arg(v).arg(&nl);
        l.arg(&c.step_size).arg(&c.c1).arg(&c.b2).arg(&c.c2).arg(&c.bc2_sqrt).arg(&c.eps);
        // SAFETY: arguments match adam_step_f32 in kernels/optim.cu; all four buffers hold n
        // elements; grid-stride loop.
        unsafe { l.launch(cfg_1d(n)) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// ema ← d·ema + (1 − d)·p over the first n elements (GanTrainer's moving average of G;
    /// 1 − d formed in f32 as the CPU does, so the update is bit-identical).
    pub fn ema_update(&self, ema: &mut Buf, p: &Buf, n: usize, d: f32) -> Result<()> {
        const WHAT: &str = "ema_update_f32";
        nonzero(&[n], WHAT)?;
        need(ema, n, "ema")?;
        need(p, n, "ema p")?;
        let (nl, c) = (long(n), 1.0 - d);
        let f = self.function(WHAT)?;
        let mut l = self.stream().launch_builder(f);
        l.arg(ema).arg(p).arg(&nl).arg(&d).arg(&c);
        // SAFETY: arguments match ema_update_f32 in kernels/optim.cu; both buffers hold n
        // elements; grid-stride loop.
        unsafe { l.launch(cfg_1d(n)) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// One RMSprop step over the first n elements (ops::optim::RmsProp::step, bit-identical).
    pub fn rmsprop_step(&self, opt: &RmsProp, n: usize, p: &mut Buf, g: &Buf, sq: &mut Buf) -> Result<()> {
        const WHAT: &str = "rmsprop_step_f32";
        nonzero(&[n], WHAT)?;
        need(p, n, "rmsprop p")?;
        need(g, n, "rmsprop g")?;
        need(sq, n, "rmsprop sq")?;
        let (nl, c) = (long(n), opt.one_minus_alpha());
        let f = self.function(WHAT)?;
        let mut l = self.stream().launch_builder(f);
        l.arg(p).arg(g).arg(sq).arg(&nl).arg(&opt.lr).arg(&opt.alpha).arg(&c).arg(&opt.eps);
        // SAFETY: arguments match rmsprop_step_f32 in kernels/optim.cu; all three buffers hold n
        // elements; grid-stride loop.
        unsafe { l.launch(cfg_1d(n)) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// The conditional-VAE codes z = μ + exp(½ log σ²)·ε (train::posterior::sample_codes):
    /// mu_logvar [rows, 2·nz], eps and z [rows, nz] (z overwritten).
    pub fn sample_codes(&self, mu_logvar: &Buf, eps: &Buf, (rows, nz): (usize, usize), z: &mut Buf) -> Result<()> {
        const WHAT: &str = "sample_codes_f32";
        nonzero(&[rows, nz], WHAT)?;
        need(mu_logvar, 2 * rows * nz, "codes mu_logvar")?;
        need(eps, rows * nz, "codes eps")?;
        need(z, rows * nz, "codes z")?;
        let [r, n] = ints([rows, nz], WHAT)?;
        let f = self.function(WHAT)?;
        let mut l = self.stream().launch_builder(f);
        l.arg(mu_logvar).arg(eps).arg(&r).arg(&n).arg(z);
        // SAFETY: arguments match sample_codes_f32 in kernels/loss.cu; the buffers hold what
        // rows and nz index (checked); grid-stride loop.
        unsafe { l.launch(cfg_1d(rows * nz)) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// The rebuild's weighted L1 (train::posterior::l1_loss) over n elements: dx = g·w·sign(x −
    /// target) (overwritten; `g` is the term's weight over Σw, formed by the caller; w None: all
    /// 1), and Σ w·|x − target| in `partial`'s first [`L1_BLOCKS`] values (summed by the caller).
    pub fn l1_loss(
        &self,
        (x, target): (&Buf, &Buf),
        w: Option<&Buf>,
        n: usize,
        g: f32,
        dx: &mut Buf,
        partial: &mut Buf,
    ) -> Result<()> {
        const WHAT: &str = "l1_loss_f32";
        nonzero(&[n], WHAT)?;
        need(x, n, "l1 x")?;
        need(target, n, "l1 target")?;
        if let Some(w) = w {
            need(w, n, "l1 weights")?;
        }
        need(dx, n, "l1 dx")?;
        need(partial, L1_BLOCKS, "l1 partial sums")?;
        let nl = long(n);
        let f = self.function(WHAT)?;
        let mut l = self.stream().launch_builder(f);
        l.arg(x).arg(target);
        arg_or_null(&mut l, w);
        l.arg(&nl).arg(&g).arg(dx).arg(partial);
        // SAFETY: arguments match l1_loss_f32 in kernels/loss.cu (w a device pointer or null);
        // x, target, w and dx hold n elements, partial L1_BLOCKS; L1_BLOCKS blocks of 256 threads.
        unsafe { l.launch(cfg_blocks(L1_BLOCKS)) }.map_err(driver_err(WHAT))?;
        Ok(())
    }

    /// Gradients of E's output [rows, 2·nz] (dμ, d log σ²; overwritten) from the codes' gradient
    /// dz [rows, nz] and `kl_weight` · KL(q ‖ N(0, I)) averaged over the rows
    /// (train::posterior::code_gradients); each row's KL into kl_rows (the caller averages).
    pub fn code_gradients(
        &self,
        (mu_logvar, eps, dz): (&Buf, &Buf, &Buf),
        (rows, nz): (usize, usize),
        kl_weight: f32,
        d_out: &mut Buf,
        kl_rows: &mut Buf,
    ) -> Result<()> {
        const WHAT: &str = "code_gradients_f32";
        nonzero(&[rows, nz], WHAT)?;
        need(mu_logvar, 2 * rows * nz, "code mu_logvar")?;
        need(eps, rows * nz, "code eps")?;
        need(dz, rows * nz, "code dz")?;
        need(d_out, 2 * rows * nz, "code d_out")?;
        need(kl_rows, rows, "code kl_rows")?;
        let [r, n] = ints([rows, nz], WHAT)?;
        let f = self.function(WHAT)?;
        let mut l = self.stream().launch_builder(f);
        l.arg(mu_logvar).arg(eps).arg(dz).arg(&r).arg(&n).arg(&kl_weight).arg(d_out).arg(kl_rows);
        // SAFETY: arguments match code_gradients_f32 in kernels/loss.cu; the buffers hold what
        // rows and nz index (checked); one block of 256 threads per row.
        unsafe { l.launch(cfg_blocks(rows)) }.map_err(driver_err(WHAT))?;
        Ok(())
    }
}
