//! One GAN-INT-CLS iteration on the GPU (issue 8): the device twin of `GanTrainer::step` for the
//! paper's terms. D step: fakes from G (training mode, its noise drawn by the device's Philox,
//! the CPU's stream), then D on real, wrong and fake pairs with weighted BCE, gradients summed,
//! one Adam step. G step: B + B/2 rows (the interpolated texts after the batch's), BCE through D
//! with D's gradients discarded, one Adam step. Only the step's logits and losses come back to
//! the host (the statistics of the log line).
//!
//! The moving average of G (`--ema`), the auxiliary classifier (`--classifier`, its max-pooled
//! read-out and its twin), the mode-seeking term (`--mode-seeking`, its cells and target) and the
//! conditional-VAE rebuild (`--vae`, its KL and shape weight; `posterior.rs`) run on the device
//! too; the VAE term's latent regression (`--vae-latent`) does not yet.

use std::sync::Arc;

use super::posterior::CudaPosterior;
use super::{driver_err, Buf, CudaDevice, CudaTrainSession, DeviceSlots};
use crate::error::{Error, Result};
use crate::model::pipeline::IMAGE_LEN;
use crate::ops::loss::check_block_labels;
use crate::ops::optim::Adam;
use crate::train::gan::{
    all_right, interpolated_texts, logit_accuracy, pair_texts, AdamState, GanBatch, GanOptions, GanTrainer, StepStats,
    G_STEP_PASS, IMAGE_DIMS, NOISE_KEY, NOISE_STRIDE,
};
use crate::train::graph::TrainGraph;
use crate::train::net::TrainNet;
use crate::train::session::Mode;

/// One network on the device: parameters, their gradients, running statistics and Adam's moments.
pub(super) struct DeviceNet {
    pub(super) graph: Arc<TrainGraph>,
    pub(super) params: DeviceSlots,
    pub(super) grads: DeviceSlots,
    pub(super) buffers: DeviceSlots,
    m: DeviceSlots,
    v: DeviceSlots,
}

impl DeviceNet {
    pub(super) fn upload(dev: &CudaDevice, net: &TrainNet, adam: &AdamState) -> Result<DeviceNet> {
        let g = &net.graph;
        Ok(DeviceNet {
            params: DeviceSlots::upload(dev, &g.params, &net.params.data)?,
            grads: DeviceSlots::upload(dev, &g.params, &vec![0.0; g.param_len])?,
            buffers: DeviceSlots::upload(dev, &g.buffers, &net.buffers)?,
            m: DeviceSlots::upload(dev, &g.params, &adam.m)?,
            v: DeviceSlots::upload(dev, &g.params, &adam.v)?,
            graph: Arc::clone(g),
        })
    }

    pub(super) fn zero_grads(&mut self, dev: &CudaDevice) -> Result<()> {
        zero(dev, &mut self.grads)
    }

    /// One Adam step on every parameter slot.
    pub(super) fn adam(&mut self, dev: &CudaDevice, adam: Adam, step: u64) -> Result<()> {
        for (i, s) in self.graph.params.iter().enumerate() {
            let (m, v) = (&mut self.m.slots[i], &mut self.v.slots[i]);
            dev.adam_step(&adam, step + 1, s.len, &mut self.params.slots[i], &self.grads.slots[i], (m, v))?;
        }
        Ok(())
    }

    /// Parameters, running statistics and Adam's moments back into the host network.
    pub(super) fn download(&self, dev: &CudaDevice, net: &mut TrainNet, adam: &mut AdamState) -> Result<()> {
        let g = &self.graph;
        net.params.data_mut().copy_from_slice(&self.params.download(dev, &g.params, g.param_len)?);
        net.buffers = self.buffers.download(dev, &g.buffers, g.buffer_len)?;
        adam.m = self.m.download(dev, &g.params, g.param_len)?;
        adam.v = self.v.download(dev, &g.params, g.param_len)?;
        Ok(())
    }
}

fn zero(dev: &CudaDevice, slots: &mut DeviceSlots) -> Result<()> {
    for s in &mut slots.slots {
        dev.stream().memset_zeros(s).map_err(driver_err("zero"))?;
    }
    Ok(())
}

/// Copies `src`'s first `dst.len()` values into `dst` on the device.
pub(super) fn copy(dev: &CudaDevice, src: &Buf, dst: &mut Buf) -> Result<()> {
    let n = dst.len();
    dev.stream().memcpy_dtod(&src.slice(0..n), dst).map_err(driver_err("copy"))
}

/// A GAN-INT-CLS run's state on one GPU.
pub struct CudaGan {
    dev: Arc<CudaDevice>,
    options: GanOptions,
    nz: usize,
    /// Completed steps.
    pub step: u64,
    g: DeviceNet,
    d: DeviceNet,
    g_b: CudaTrainSession,
    g_int: CudaTrainSession,
    d_b: CudaTrainSession,
    d_int: CudaTrainSession,
    d_discard: DeviceSlots,
    /// The moving average of G's parameters (`options.ema` > 0), as the CPU trainer's `g_ema`.
    g_ema: Option<DeviceSlots>,
    /// [real, wrong] images of the step, uploaded.
    images: [Buf; 2],
    /// The pass weights of the D step (B each: real 1, wrong cls_weight, fake the rest) and the
    /// G step's row weights (B ones, then interp_weight).
    weights: [Buf; 4],
    ones: Buf,
    zeros: Buf,
    dlogits: Buf,
    loss: Buf,
    text_int: Vec<f32>,
    /// The auxiliary classifier (`classifier_weight` > 0): the batch's labels as floats, and the
    /// gradient of D's class logits ([B + B/2, Σ sizes]).
    labels: Buf,
    dclass: Buf,
    /// The mode-seeking term (`mode_seeking` > 0): G on the first B/2 texts twice, and its buffers.
    ms: Option<ModeSeeking>,
    /// The conditional-VAE term (`vae` > 0): E and the rebuild pass.
    post: Option<CudaPosterior>,
    /// D's augmentation (`d_flip`, `d_shift` > 0): one pass's draws, G's image gradient taken back.
    augment: Option<DeviceAugment>,
}

/// D's augmentation on the device (the CPU step's `d_flip` and `d_shift`, the same draws): one
/// pass's transforms and offsets, the middle images when both are on, and G's image gradient
/// taken back.
struct DeviceAugment {
    flips: Option<Buf>,
    offsets: Option<Buf>,
    mid: Option<Buf>,
    d_images: Buf,
}

impl DeviceAugment {
    /// Buffers for `rows` images of `img` values (None: neither part on).
    fn new(dev: &CudaDevice, o: &GanOptions, rows: usize, img: usize) -> Result<Option<DeviceAugment>> {
        let zeros = |on: bool, n: usize| on.then(|| dev.upload(&vec![0.0; n])).transpose();
        let (flip, shift) = (o.d_flip, o.d_shift > 0);
        if !(flip || shift) {
            return Ok(None);
        }
        Ok(Some(DeviceAugment {
            flips: zeros(flip, rows)?,
            offsets: zeros(shift, 2 * rows)?,
            mid: zeros(flip && shift, rows * img)?,
            d_images: dev.upload(&vec![0.0; rows * img])?,
        }))
    }

    /// Uploads pass `pass`'s draws for `rows` images at `step` (`GanOptions::d_augment`).
    fn upload(&mut self, dev: &CudaDevice, o: &GanOptions, (step, pass): (u64, u64), rows: usize) -> Result<()> {
        let aug = o.d_augment(step, pass, rows);
        let stream = dev.stream();
        if let (Some(f), Some(buf)) = (&aug.flips, self.flips.as_mut()) {
            let flat: Vec<f32> = f.iter().map(|&t| f32::from(t)).collect();
            stream.memcpy_htod(&flat, buf).map_err(driver_err("upload transforms"))?;
        }
        if let (Some(s), Some(buf)) = (&aug.shifts, self.offsets.as_mut()) {
            let flat: Vec<f32> = s.iter().flatten().map(|&v| v as f32).collect();
            stream.memcpy_htod(&flat, buf).map_err(driver_err("upload offsets"))?;
        }
        Ok(())
    }

    /// out = the `rows` images transformed, then moved (the uploaded draws).
    fn apply(&mut self, dev: &CudaDevice, (images, rows): (&Buf, usize), out: &mut Buf) -> Result<()> {
        let dims = (rows, IMAGE_DIMS);
        match (&self.flips, &self.offsets, &mut self.mid) {
            (Some(f), Some(s), Some(mid)) => {
                dev.flip_images(images, f, dims, false, mid)?;
                dev.shift_images(mid, s, dims, false, out)
            }
            (Some(f), None, _) => dev.flip_images(images, f, dims, false, out),
            (None, Some(s), _) => dev.shift_images(images, s, dims, false, out),
            _ => copy(dev, images, out),
        }
    }

    /// The gradient `dy` of the augmented images taken back to G's (moved back, then
    /// transformed back), in `d_images`.
    fn backward(&mut self, dev: &CudaDevice, dy: &Buf, rows: usize) -> Result<&Buf> {
        let dims = (rows, IMAGE_DIMS);
        let dx = &mut self.d_images;
        match (&self.flips, &self.offsets, &mut self.mid) {
            (Some(f), Some(s), Some(mid)) => {
                dev.shift_images(dy, s, dims, true, mid)?;
                dev.flip_images(mid, f, dims, true, dx)?;
            }
            (Some(f), None, _) => dev.flip_images(dy, f, dims, true, dx)?,
            (None, Some(s), _) => dev.shift_images(dy, s, dims, true, dx)?,
            _ => copy(dev, dy, dx)?,
        }
        Ok(&self.d_images)
    }
}

/// `images` (`rows` of them) into D's input `dst`: augmented with pass `pass`'s draws when
/// `d_flip` or `d_shift` is on, else copied.
fn into_d_input(
    dev: &CudaDevice,
    augment: &mut Option<DeviceAugment>,
    (o, step, pass): (&GanOptions, u64, u64),
    (images, rows): (&Buf, usize),
    dst: &mut Buf,
) -> Result<()> {
    match augment {
        Some(a) => {
            a.upload(dev, o, (step, pass), rows)?;
            a.apply(dev, (images, rows), dst)
        }
        None => copy(dev, images, dst),
    }
}

/// G's pass for the mode-seeking pairs (B rows: the first B/2 texts, then the same again, each
/// row with its own noise) and the term's buffers.
struct ModeSeeking {
    session: CudaTrainSession,
    texts: Vec<f32>,
    cells: Buf,
    dx: Buf,
    terms: Buf,
}

fn classifier_on(o: &GanOptions) -> bool {
    o.classifier_weight > 0.0 && !o.classifier_sizes.is_empty()
}

impl CudaGan {
    /// The CPU trainer's state (networks, Adam moments, step) uploaded to `dev`.
    pub fn from_trainer(dev: Arc<CudaDevice>, t: &GanTrainer) -> Result<CudaGan> {
        let o = t.options.clone();
        let sizes = t.options.classifier_sizes.clone();
        if classifier_on(&t.options) && sizes.len() > 4 {
            return Err(Error::Device(format!("the GPU classifier takes at most 4 attributes, not {}", sizes.len())));
        }
        if o.mode_seeking_mask && o.mode_seeking > 0.0 {
            return Err(Error::Device(
                "the shape-mask mode-seeking term runs on the CPU only so far (train without --device cuda)".into(),
            ));
        }
        if o.mode_seeking_centred && o.mode_seeking > 0.0 {
            return Err(Error::Device(
                "the centred mode-seeking term runs on the CPU only so far (train without --device cuda)".into(),
            ));
        }
        if o.vae > 0.0 && o.vae_latent > 0.0 {
            return Err(Error::Device(
                "the --vae-latent regression runs on the CPU only so far (train without --device cuda)".into(),
            ));
        }
        let b = o.batch;
        let bi = o.g_rows();
        let session = |net: &TrainNet, rows| CudaTrainSession::new(Arc::clone(&dev), Arc::clone(&net.graph), rows);
        let (g_b, g_int, d_b) = (session(&t.g, b)?, session(&t.g, bi)?, session(&t.d, b)?);
        let mut d_int = session(&t.d, bi)?;
        d_int.set_input_grad(0, true);
        let img = IMAGE_LEN;
        let zeros = |n: usize| dev.upload(&vec![0.0; n]);
        let g = DeviceNet::upload(&dev, &t.g, &t.g_adam)?;
        let post = match (&t.posterior, o.vae > 0.0) {
            (Some(p), true) => Some(CudaPosterior::upload(&dev, p, &g, b)?),
            (None, true) => return Err(Error::Input("the --vae term is on but the trainer has no E".into())),
            (_, false) => None,
        };
        Ok(CudaGan {
            nz: t.config.generator.nz,
            step: t.step,
            g,
            post,
            d: DeviceNet::upload(&dev, &t.d, &t.d_adam)?,
            d_discard: DeviceSlots::upload(&dev, &t.d.graph.params, &vec![0.0; t.d.graph.param_len])?,
            g_ema: t.g_ema.as_ref().map(|e| DeviceSlots::upload(&dev, &t.g.graph.params, e)).transpose()?,
            images: [zeros(b * img)?, zeros(b * img)?],
            weights: [
                dev.upload(&vec![1.0; b])?,
                dev.upload(&vec![o.cls_weight; b])?,
                dev.upload(&vec![o.fake_weight(); b])?,
                dev.upload(&o.g_row_weights())?,
            ],
            ones: dev.upload(&vec![1.0; bi])?,
            zeros: zeros(bi)?,
            dlogits: zeros(bi)?,
            loss: zeros(1)?,
            text_int: vec![0.0; bi * t.config.encoder.embed_dim],
            labels: zeros(b * sizes.len().max(1))?,
            dclass: zeros(bi * o.class_outputs().max(1))?,
            ms: match o.mode_seeking > 0.0 {
                true => Some(ModeSeeking {
                    session: session(&t.g, b)?,
                    texts: vec![0.0; b * t.config.encoder.embed_dim],
                    cells: zeros(b / 2 * img)?,
                    dx: zeros(b * img)?,
                    terms: zeros(b / 2)?,
                }),
                false => None,
            },
            augment: DeviceAugment::new(&dev, &o, bi, img)?,
            g_b,
            g_int,
            d_b,
            d_int,
            options: o,
            dev,
        })
    }

    /// Networks, optimizer state and step back into the CPU trainer (for its checkpoints and
    /// exports).
    pub fn write_back(&self, t: &mut GanTrainer) -> Result<()> {
        self.g.download(&self.dev, &mut t.g, &mut t.g_adam)?;
        self.d.download(&self.dev, &mut t.d, &mut t.d_adam)?;
        if let (Some(ema), Some(host)) = (&self.g_ema, t.g_ema.as_mut()) {
            *host = ema.download(&self.dev, &self.g.graph.params, self.g.graph.param_len)?;
        }
        if let (Some(post), Some(host)) = (&self.post, t.posterior.as_mut()) {
            post.download(&self.dev, host)?;
        }
        t.step = self.step;
        Ok(())
    }

    /// One GAN iteration (D step then G step), as `GanTrainer::step`.
    pub fn step(&mut self, batch: &GanBatch) -> Result<StepStats> {
        let b = self.options.batch;
        let img = IMAGE_LEN;
        let e = self.text_int.len() / self.g_int.batch();
        if batch.real.len() != b * img || batch.wrong.len() != b * img || batch.text.len() != b * e {
            return Err(Error::Input(format!("GAN batch sizes do not match batch {b}")));
        }
        self.options.check_batch_shapes(batch.shapes)?;
        if classifier_on(&self.options) {
            let sizes = &self.options.classifier_sizes;
            check_block_labels(batch.labels, b, sizes, "classifier labels")?;
            let as_f32: Vec<f32> = batch.labels.iter().map(|&l| l as f32).collect();
            self.dev.stream().memcpy_htod(&as_f32, &mut self.labels).map_err(driver_err("upload labels"))?;
        }
        let mut stats = StepStats { step: self.step + 1, lr: self.options.lr_at(self.step), ..StepStats::default() };
        self.d_step(batch, &mut stats)?;
        self.g_step(batch, &mut stats)?;
        self.step += 1;
        Ok(stats)
    }

    fn d_step(&mut self, batch: &GanBatch, stats: &mut StepStats) -> Result<()> {
        let (dev, b, o) = (Arc::clone(&self.dev), self.options.batch, self.options.clone());
        let noise_seed = o.seed ^ NOISE_KEY;
        dev.philox_normal_fwd(noise_seed, self.step * NOISE_STRIDE, (self.nz, b), self.g_b.input_buf_mut(0)?)?;
        self.g_b.set_input(1, batch.text)?;
        self.g_b.forward(&self.g.params, &mut self.g.buffers, Mode::Train)?;
        let stream = Arc::clone(dev.stream());
        stream.memcpy_htod(batch.real, &mut self.images[0]).map_err(driver_err("upload real"))?;
        stream.memcpy_htod(batch.wrong, &mut self.images[1]).map_err(driver_err("upload wrong"))?;
        self.d.zero_grads(&dev)?;
        for pass in 0..3 {
            if pass == 1 && !o.cls {
                continue;
            }
            let images = match pass {
                0 | 1 => &self.images[pass],
                _ => self.g_b.output_buf(0)?,
            };
            let at = (&o, self.step, pass as u64);
            into_d_input(&dev, &mut self.augment, at, (images, b), self.d_b.input_buf_mut(0)?)?;
            self.d_b.set_input(1, batch.text)?;
            self.d_b.forward(&self.d.params, &mut self.d.buffers, Mode::Train)?;
            let real = pass == 0;
            let targets = if real { &self.ones } else { &self.zeros };
            let logits = self.d_b.output_buf(0)?;
            dev.bce_with_logits(logits, targets, Some(&self.weights[pass]), b, &mut self.dlogits, &mut self.loss)?;
            // The log line's numbers (the only waits of the step).
            stats.d_loss += dev.download(&self.loss)?[0];
            let logits = dev.download(logits)?;
            let acc = logit_accuracy(&logits, real);
            *[&mut stats.d_real_acc, &mut stats.d_wrong_acc, &mut stats.d_fake_acc][pass] = acc;
            let twin = o.classifier_twin && pass == 2;
            if (real || twin) && classifier_on(&o) {
                // D's classifier learns the real images' attributes (weight 1), its twin (with
                // --classifier-twin) G's images of this batch's captions, as the CPU step.
                let class_logits = self.d_b.output_buf(1)?;
                let halves = if real { [1.0, 0.0] } else { [0.0, 1.0] };
                let [first, second] = classifier_loss(
                    &dev,
                    &o,
                    class_logits,
                    &self.labels,
                    (b, b),
                    halves,
                    &mut self.dclass,
                    &mut self.loss,
                )?;
                if real {
                    stats.d_class = first;
                    stats.d_class_acc = all_right(&dev.download(class_logits)?, &o.classifier_sizes, batch.labels);
                    stats.d_loss += stats.d_class;
                } else {
                    stats.d_twin = second;
                    stats.d_loss += second;
                    if o.classifier_fake > 0.0 {
                        // The shape-kind block learns G's images as no kind (uniform target),
                        // written over the first half's zero gradient, as the CPU step.
                        let (kinds, width) = (o.classifier_sizes[0], o.class_outputs());
                        let (w, dclass) = (o.classifier_fake, &mut self.dclass);
                        dev.softmax_ce_blocks(
                            class_logits,
                            None,
                            &[kinds],
                            (b, b),
                            (width, 0),
                            w,
                            dclass,
                            &mut self.loss,
                        )?;
                        stats.d_fake_class = dev.download(&self.loss)?[0];
                        stats.d_loss += o.classifier_fake * stats.d_fake_class;
                    }
                }
                let douts = [(0, &self.dlogits), (1, &self.dclass)];
                self.d_b.backward_outputs(&self.d.params, &mut self.d.grads, &douts)?;
            } else {
                self.d_b.backward(&self.d.params, &mut self.d.grads, &self.dlogits)?;
            }
        }
        self.d.adam(&dev, o.adam_d_at(self.step), self.step)
    }

    fn g_step(&mut self, batch: &GanBatch, stats: &mut StepStats) -> Result<()> {
        let (dev, b, o) = (Arc::clone(&self.dev), self.options.batch, self.options.clone());
        let bi = self.g_int.batch();
        let e = self.text_int.len() / bi;
        interpolated_texts(batch.text, b, e, &mut self.text_int);
        let first = self.step * NOISE_STRIDE + NOISE_STRIDE / 2;
        dev.philox_normal_fwd(o.seed ^ NOISE_KEY, first, (self.nz, bi), self.g_int.input_buf_mut(0)?)?;
        self.g_int.set_input(1, &self.text_int)?;
        self.g_int.forward(&self.g.params, &mut self.g.buffers, Mode::Train)?;
        let (images, at) = (self.g_int.output_buf(0)?, (&o, self.step, G_STEP_PASS));
        into_d_input(&dev, &mut self.augment, at, (images, bi), self.d_int.input_buf_mut(0)?)?;
        self.d_int.set_input(1, &self.text_int)?;
        self.d_int.forward(&self.d.params, &mut self.d.buffers, Mode::Train)?;
        let weights = (bi > b).then_some(&self.weights[3]);
        let logits = self.d_int.output_buf(0)?;
        dev.bce_with_logits(logits, &self.ones, weights, bi, &mut self.dlogits, &mut self.loss)?;
        stats.g_loss = dev.download(&self.loss)?[0];
        zero(&dev, &mut self.d_discard)?;
        if classifier_on(&o) {
            // G's rows < B have the real images' captions and labels; the interpolated rows none.
            // With the twin (TAC-GAN), G pleases the classifier and defeats its twin (at S times
            // the weight), as the CPU step.
            let (w, wt) = (o.classifier_weight, o.classifier_weight * o.classifier_twin_scale);
            let class_logits = self.d_int.output_buf(1)?;
            let halves = [w, -wt];
            let [first, second] = classifier_loss(
                &dev,
                &o,
                class_logits,
                &self.labels,
                (bi, b),
                halves,
                &mut self.dclass,
                &mut self.loss,
            )?;
            stats.g_class = first;
            stats.g_loss += w * first;
            if o.classifier_twin {
                stats.g_twin = second;
                stats.g_loss -= wt * second;
            }
            let douts = [(0, &self.dlogits), (1, &self.dclass)];
            self.d_int.backward_outputs(&self.d.params, &mut self.d_discard, &douts)?;
        } else {
            self.d_int.backward(&self.d.params, &mut self.d_discard, &self.dlogits)?;
        }
        self.g.zero_grads(&dev)?;
        if let Some(ms) = self.ms.as_mut() {
            stats.mode_seeking = mode_seeking_pass(&dev, ms, &mut self.g, batch.text, &o, self.step)?;
        }
        let d_images = match self.augment.as_mut() {
            // D saw G's images augmented: their gradient goes back through the same draws, still
            // uploaded from the G pass's `into_d_input` (nothing uploads between).
            Some(a) => a.backward(&dev, self.d_int.input_grad_buf(0), bi)?,
            None => self.d_int.input_grad_buf(0),
        };
        self.g_int.backward(&self.g.params, &mut self.g.grads, d_images)?;
        if let Some(ms) = self.ms.as_mut() {
            ms.session.backward(&self.g.params, &mut self.g.grads, &ms.dx)?;
        }
        if let Some(post) = self.post.as_mut() {
            let inputs = o.recon_inputs(batch, self.step);
            let s = post.step(&dev, &mut self.g, &self.images[0], &inputs, (o.adam_at(self.step), self.step))?;
            stats.add_recon(&o, s);
        }
        self.g.adam(&dev, o.adam_at(self.step), self.step)?;
        if let Some(ema) = self.g_ema.as_mut() {
            let decay = o.ema_decay_at(self.step);
            for (i, s) in self.g.graph.params.iter().enumerate() {
                dev.ema_update(&mut ema.slots[i], &self.g.params.slots[i], s.len, decay)?;
            }
        }
        Ok(())
    }
}

/// The classifier's cross-entropy of `logits` (rows × `o.class_outputs()`, the first `labeled`
/// rows labeled) into `dclass`: the plain read-out scaled by `weights[0]`, or with the twin both
/// halves, each scaled by its weight (0 writes a zero gradient: D trains one half at a time).
/// Returns the halves' unscaled losses (the second 0 without the twin).
#[allow(clippy::too_many_arguments)]
fn classifier_loss(
    dev: &CudaDevice,
    o: &GanOptions,
    logits: &Buf,
    labels: &Buf,
    rows: (usize, usize),
    weights: [f32; 2],
    dclass: &mut Buf,
    loss: &mut Buf,
) -> Result<[f32; 2]> {
    let sizes = &o.classifier_sizes;
    let (k, width) = (sizes.iter().sum::<usize>(), o.class_outputs());
    let halves = if o.classifier_twin { 2 } else { 1 };
    let mut out = [0.0; 2];
    for (h, w) in weights.into_iter().enumerate().take(halves) {
        dev.softmax_ce_blocks(logits, Some(labels), sizes, rows, (width, h * k), w, dclass, loss)?;
        out[h] = dev.download(loss)?[0];
    }
    Ok(out)
}

/// The mode-seeking pairs through G (as the CPU's `mode_seeking_pairs`: the first B/2 texts
/// twice, noise from index step·STRIDE + 7·STRIDE/8 on), the term's gradient of the images
/// (weighted) into `ms.dx`; returns the term (mean over pairs, unweighted).
fn mode_seeking_pass(
    dev: &CudaDevice,
    ms: &mut ModeSeeking,
    g: &mut DeviceNet,
    text: &[f32],
    o: &GanOptions,
    step: u64,
) -> Result<f32> {
    let rows = ms.session.batch();
    let (p, e) = (rows / 2, ms.texts.len() / rows);
    let nz = ms.session.input_len(0) / rows;
    let first = step * NOISE_STRIDE + NOISE_STRIDE / 8 * 7;
    dev.philox_normal_fwd(o.seed ^ NOISE_KEY, first, (nz, rows), ms.session.input_buf_mut(0)?)?;
    pair_texts(text, p, e, &mut ms.texts);
    ms.session.set_input(1, &ms.texts)?;
    ms.session.forward(&g.params, &mut g.buffers, Mode::Train)?;
    let (x, z) = (ms.session.output_buf(0)?, ms.session.input_buf(0)?);
    let k = o.mode_seeking_cell.max(1);
    let sizes = (p, IMAGE_LEN, nz);
    let weights = (o.mode_seeking_target, o.mode_seeking);
    dev.mode_seeking((x, z), sizes, (64, 64, k), weights, &mut ms.cells, &mut ms.dx, &mut ms.terms)?;
    let terms = dev.download(&ms.terms)?;
    Ok(terms[..p].iter().map(|&t| t as f64).sum::<f64>() as f32 / p.max(1) as f32)
}
