//! One GAN-INT-CLS iteration, as Reed's main_cls_int.lua does it (DESIGN.md §2):
//! D step — three separate passes (real image + its text → 1; wrong image + the text → 0, weight
//! cls_weight; G's image + the text → 0, weight 1 − cls_weight), each with its own batch
//! statistics, gradients summed, one Adam step; G step — the B text vectors plus B/2
//! interpolations ½(t_i + t_{i+B/2}), fresh noise for every row, BCE(D(G(z, t), t), 1) averaged
//! over all rows, D in training mode but not updated, one Adam step.
//! Switches give the paper's four variants: GAN (no CLS, no INT), GAN-CLS, GAN-INT, GAN-INT-CLS.

use std::sync::Arc;

use rayon::ThreadPool;
use serde::{Deserialize, Serialize};

pub use super::augment::{IMAGE_DIMS, SHIFT_KEY};
use super::graph::TrainGraph;
use super::net::{discriminator_graph, TrainNet};
use super::posterior::{Posterior, PosteriorStats, ReconInputs};
use super::session::{Mode, ParamStore, TrainSession, BN_MOMENTUM};
use crate::error::{Error, Result};
use crate::model::config::ModelConfig;
use crate::model::pipeline::IMAGE_LEN;
use crate::model::spec::Network;
use crate::ops::loss::{
    bce_with_logits, check_block_labels, mode_seeking_loss, softmax_cross_entropy_blocks, softmax_cross_entropy_twin,
    softmax_cross_entropy_uniform, ModeSeekingCells,
};
use crate::ops::optim::{linear_decay, lr_halving, Adam};
use crate::ops::shape_mask::ShapeMask;
use crate::rng::normal_noise;

/// The trainer's settings (saved in checkpoints).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GanOptions {
    /// Real images per step (64 in the paper).
    pub batch: usize,
    /// Matching-aware discriminator (the wrong-image term).
    pub cls: bool,
    /// Interpolated text embeddings in the G step.
    pub int: bool,
    /// Weight of the wrong-image term (the fake term gets 1 − this); 0.5 in the paper.
    pub cls_weight: f32,
    /// Weight of the interpolated rows in G's loss; 1 in the paper.
    pub interp_weight: f32,
    pub lr: f32,
    pub beta1: f32,
    /// Halve the learning rate every this many epochs (100 in the paper).
    pub lr_halve_every: usize,
    /// Iterations per epoch (⌈training images / batch⌉).
    pub iters_per_epoch: usize,
    /// Seed of the noise and the initial weights.
    pub seed: u64,
    /// Weight of the mode-seeking term (Mao et al. 2019; not in the paper, 0 = off): the first
    /// B/2 captions of the G step are drawn a second time with other noise, and G is pushed to
    /// make the two images differ. Without it G learns one image per caption once the text
    /// embedding carries every attribute (docs/RESULTS.md).
    #[serde(default)]
    pub mode_seeking: f32,
    /// Side of the square cells the mode-seeking term measures image distance on (0 or 1:
    /// every pixel). Cells of 8 count a moved shape and not high-frequency stripes, which G made
    /// to satisfy the per-pixel term (docs/RESULTS.md, sessions 5 and 7).
    #[serde(default)]
    pub mode_seeking_cell: usize,
    /// Distance ratio (image distance / noise distance) past which a mode-seeking pair earns
    /// nothing (0: no target, the MSGAN term). Without one, G made z move noise that D rejected
    /// wholesale after ~4,500 steps (docs/RESULTS.md, session 8).
    #[serde(default)]
    pub mode_seeking_target: f32,
    /// The mode-seeking term takes each channel's mean difference out of the cell differences
    /// (`ModeSeekingCells::centred`): a tint of the whole image no longer counts, so the term
    /// pays for moving the shape (at 0.5, G bought it with background tints: session 14).
    #[serde(default)]
    pub mode_seeking_centred: bool,
    /// The mode-seeking term measures soft shape masks (`ShapeMask`: pixels unlike each image's
    /// own border), not the images: moving the shape counts, tinting or shading the background
    /// does not (plain and centred, G answered the term with the background: session 14).
    #[serde(default)]
    pub mode_seeking_mask: bool,
    /// Fraction of wrong images of the same colour and another shape (the sampler's
    /// `hard_wrong`; not in the paper, 0 = off).
    #[serde(default)]
    pub hard_wrong: f32,
    /// Classes of each attribute of D's auxiliary classifier (AC-GAN; not in the paper; empty =
    /// no classifier), e.g. [8 shape kinds, 10 colours]. D learns them on real images; G is
    /// pushed to make images D classifies as its caption's attributes.
    #[serde(default)]
    pub classifier_sizes: Vec<usize>,
    /// Weight of G's classifier term (D's own classifier loss has weight 1 while this is > 0).
    #[serde(default)]
    pub classifier_weight: f32,
    /// The classifier reads D's trunk max-pooled over the 4×4 positions (not in AC-GAN): it
    /// learns shape kinds on real images 2× faster than the per-position read-out (session 13).
    #[serde(default)]
    pub classifier_pool: bool,
    /// TAC-GAN's twin classifier (Gong et al. 2019; not in the paper): D's classifier has a
    /// second set of the same classes that D trains on G's images (labelled with their
    /// captions' attributes), and G's term becomes CE(classifier) − CE(twin). The plain AC
    /// term rewards G for the easiest-classified image of each class; the twin cancels that
    /// bias (session 14: the class term's weight traded diversity for fidelity monotonically).
    #[serde(default)]
    pub classifier_twin: bool,
    /// G's twin term as a multiple of its classifier term: G's classifier loss is
    /// W·(CE(classifier) − S·CE(twin)). 1 is TAC-GAN's; below 1 G pleases the classifier more
    /// than it defeats the twin (class fidelity bought with some of the twin's diversity).
    #[serde(default = "one")]
    pub classifier_twin_scale: f32,
    /// Weight of D's classifier learning G's images as no shape kind (not in AC-GAN or TAC-GAN;
    /// 0: off): the classifier's shape-kind block is pulled towards the uniform distribution on
    /// the D step's fakes. Trained on real images alone, the classifier reads G's blobs as the
    /// stars and rings asked for (session 21's probe), so G's class term stops teaching shape;
    /// this makes "ring" an answer only ring-like images earn. Needs the twin.
    #[serde(default)]
    pub classifier_fake: f32,
    /// Largest translation, in pixels, of every image D sees (DiffAugment's translation, Zhao
    /// et al. 2020; not in the paper; 0: off): real, wrong and G's images alike, each by its own
    /// offset in [−N, N]² (zero padding), drawn from the seed per step and pass, so a resumed run
    /// draws the same; G's gradient is shifted back. D and its classifier otherwise memorise the
    /// 12,000 real images (the classifier's loss ~0.01 by 7,000 steps, session 21) and learn
    /// features G's blobs can satisfy.
    #[serde(default)]
    pub d_shift: u32,
    /// Every image D sees under one of the square's eight symmetries (mirrors and quarter
    /// turns, `ops::flip`; not in the paper; false: off), drawn like `d_shift`'s offsets and
    /// applied before them. Unlike a translation it keeps a centred shape centred, so D still
    /// sees where G puts its shapes (session 22: translations of 8 pixels froze G's placement).
    /// Captions that name a position become noise for D's matching term.
    #[serde(default)]
    pub d_flip: bool,
    /// Chance that an image D sees is augmented at all (`d_flip`, `d_shift`; 1: every image, as
    /// DiffAugment; below 1 as ADA's p, Karras et al. 2020): the rest reach D as they are, drawn
    /// per image like the augmentation.
    #[serde(default = "one")]
    pub d_augment_p: f32,
    /// D's learning rate as a multiple of G's (1 in the paper; the two-time-scale rule of Heusel
    /// et al. 2017 when > 1): D's trunk learns shape kinds slowly at 2e-4 (session 13).
    #[serde(default = "one")]
    pub lr_d_scale: f32,
    /// Decay of an exponential moving average of G's parameters (not in the paper; 0 = off,
    /// e.g. 0.999; Yazıcı et al. 2019): exports are the average, with batch-norm statistics
    /// re-estimated for it, which smooths the swings of G's quality from one export to the next.
    #[serde(default)]
    pub ema: f32,
    /// Steps [start, end) over which both learning rates fall linearly to zero, on top of the
    /// halving (not in the paper; None: off). Runs on `shapes` broke after ~4,300 steps at a
    /// constant rate (docs/RESULTS.md, session 9).
    #[serde(default)]
    pub lr_decay: Option<[u64; 2]>,
    /// Weight of the conditional-VAE reconstruction term (`posterior`; not in the paper; 0 =
    /// off): G rebuilds each real image from its caption and a code E reads off the image.
    #[serde(default)]
    pub vae: f32,
    /// Weight of the codes' KL divergence from the prior N(0, I) in that term.
    #[serde(default)]
    pub vae_kl: f32,
    /// Extra weight L of the shape's pixels in that term's rebuild mean (`shapes` datasets; 0 =
    /// every pixel alike): pixels within 1.2 radii of the shape's centre count 1 + L times.
    #[serde(default)]
    pub vae_shape_weight: f32,
    /// Weight of the latent regression beside that term (BicycleGAN's cLR-GAN; 0 = off): E must
    /// find the prior code z again in the image G drew from it, mean |μ(G(z, φ(t))) − z|.
    #[serde(default)]
    pub vae_latent: f32,
}

fn one() -> f32 {
    1.0
}

/// The conditional-VAE term's four weights, as `GanTrainer::set_vae` takes them (named, so no
/// caller can swap two).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VaeWeights {
    /// `GanOptions::vae`.
    pub rebuild: f32,
    /// `GanOptions::vae_kl`.
    pub kl: f32,
    /// `GanOptions::vae_shape_weight`.
    pub shape: f32,
    /// `GanOptions::vae_latent`.
    pub latent: f32,
}

impl GanOptions {
    /// The mode-seeking term's cells of these options (G's 64×64 images).
    pub fn mode_seeking_cells(&self) -> ModeSeekingCells {
        ModeSeekingCells {
            height: 64,
            width: 64,
            cell: self.mode_seeking_cell,
            target: self.mode_seeking_target,
            centred: self.mode_seeking_centred,
        }
    }

    /// Width of D's classifier output: the classes of every attribute, twice with the twin.
    pub fn class_outputs(&self) -> usize {
        self.classifier_sizes.iter().sum::<usize>() * (1 + usize::from(self.classifier_twin))
    }

    /// D's graph for these options (its classifier's width and read-out).
    pub fn discriminator_graph(&self, config: &ModelConfig) -> Result<TrainGraph> {
        discriminator_graph(config, self.class_outputs(), self.classifier_pool)
    }

    /// The VAE term's weights of these options.
    pub fn vae_weights(&self) -> VaeWeights {
        VaeWeights { rebuild: self.vae, kl: self.vae_kl, shape: self.vae_shape_weight, latent: self.vae_latent }
    }

    /// Whether the VAE term runs with its shape weight (each batch then needs the real images'
    /// shapes).
    pub fn shape_weight_on(&self) -> bool {
        self.vae > 0.0 && self.vae_shape_weight > 0.0
    }

    /// Fails unless a batch of B real images has their B shapes when the shape weight is on
    /// (the CPU and GPU steps alike).
    pub fn check_batch_shapes(&self, shapes: &[[f32; 3]]) -> Result<()> {
        let (b, n) = (self.batch, shapes.len());
        if self.shape_weight_on() && n != b {
            return Err(Error::Input(format!("the VAE term's shape weight needs {b} shapes a batch, got {n}")));
        }
        Ok(())
    }

    /// The reconstruction pass's inputs for `batch` at 0-based step `step` (its ε from the VAE
    /// noise stream; the shapes only with the shape weight on).
    pub fn recon_inputs<'a>(&self, batch: &GanBatch<'a>, step: u64) -> ReconInputs<'a> {
        ReconInputs {
            real: batch.real,
            text: batch.text,
            noise: (self.seed ^ VAE_NOISE_KEY, step * NOISE_STRIDE),
            weights: (self.vae, self.vae_kl),
            shapes: self.shape_weight_on().then_some((batch.shapes, self.vae_shape_weight)),
        }
    }

    /// Learning rate after `step` completed steps: halved every `lr_halve_every` epochs, times the
    /// linear decay when set.
    pub fn lr_at(&self, step: u64) -> f32 {
        let epoch = (step / self.iters_per_epoch.max(1) as u64) as usize;
        let decay = self.lr_decay.map_or(1.0, |[start, end]| linear_decay(step, start, end));
        lr_halving(self.lr, epoch, self.lr_halve_every) * decay
    }

    /// The moving average's decay at the G step after `step` completed steps: `ema`, ramped in
    /// as (1 + t)/(10 + t) with t = step + 1.
    pub fn ema_decay_at(&self, step: u64) -> f32 {
        let t = (step + 1) as f32;
        self.ema.min((1.0 + t) / (10.0 + t))
    }

    /// Rows of the G step: the B batch rows, plus B/2 interpolated ones with `int`.
    pub fn g_rows(&self) -> usize {
        if self.int {
            self.batch + self.batch / 2
        } else {
            self.batch
        }
    }

    /// Weight of the D step's fake pass: 1 − cls_weight with the matching-aware term, else 1.
    pub fn fake_weight(&self) -> f32 {
        if self.cls {
            1.0 - self.cls_weight
        } else {
            1.0
        }
    }

    /// Per-row weights of the G step's loss: 1 for the batch rows, `interp_weight` after.
    pub fn g_row_weights(&self) -> Vec<f32> {
        (0..self.g_rows()).map(|i| if i < self.batch { 1.0 } else { self.interp_weight }).collect()
    }

    /// G's (and E's) Adam after `step` completed steps (β2 0.999, ε 1e-8).
    pub fn adam_at(&self, step: u64) -> Adam {
        Adam { lr: self.lr_at(step), beta1: self.beta1, beta2: 0.999, eps: 1e-8 }
    }

    /// D's Adam after `step` completed steps: G's at `lr_d_scale` times the rate.
    pub fn adam_d_at(&self, step: u64) -> Adam {
        Adam { lr: self.lr_at(step) * self.lr_d_scale, ..self.adam_at(step) }
    }
}

impl Default for GanOptions {
    fn default() -> Self {
        GanOptions {
            batch: 64,
            cls: true,
            int: true,
            cls_weight: 0.5,
            interp_weight: 1.0,
            lr: 2e-4,
            beta1: 0.5,
            lr_halve_every: 100,
            iters_per_epoch: 100,
            seed: 0,
            mode_seeking: 0.0,
            mode_seeking_cell: 0,
            mode_seeking_target: 0.0,
            mode_seeking_centred: false,
            mode_seeking_mask: false,
            hard_wrong: 0.0,
            classifier_sizes: Vec::new(),
            classifier_weight: 0.0,
            classifier_pool: false,
            classifier_twin: false,
            classifier_twin_scale: 1.0,
            classifier_fake: 0.0,
            d_shift: 0,
            d_flip: false,
            d_augment_p: 1.0,
            lr_d_scale: 1.0,
            ema: 0.0,
            lr_decay: None,
            vae: 0.0,
            vae_kl: 0.0,
            vae_shape_weight: 0.0,
            vae_latent: 0.0,
        }
    }
}

/// One step's numbers (losses, and D's accuracy on each kind of input).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct StepStats {
    pub step: u64,
    pub d_loss: f32,
    pub g_loss: f32,
    /// Fraction of real pairs D calls real; of wrong pairs D calls fake; of fakes D calls fake.
    pub d_real_acc: f32,
    pub d_wrong_acc: f32,
    pub d_fake_acc: f32,
    pub lr: f32,
    /// The mode-seeking term (unweighted; 0 when off).
    pub mode_seeking: f32,
    /// D's classifier on the real images: cross-entropy (summed over attributes) and the
    /// fraction with every attribute right; G's classifier term (unweighted). 0 when off.
    pub d_class: f32,
    pub d_class_acc: f32,
    pub g_class: f32,
    /// With the twin classifier: its cross-entropy on the D step's fakes (D's), and on G's
    /// (G's term is g_class − g_twin). 0 when off.
    pub d_twin: f32,
    pub g_twin: f32,
    /// With `classifier_fake`: the classifier's shape-kind cross-entropy against the uniform
    /// distribution on the D step's fakes (unweighted; 0 when off).
    pub d_fake_class: f32,
    /// The conditional-VAE term (unweighted; 0 when off): mean |G(z ~ q) − x| and KL(q ‖ p).
    pub recon: f32,
    pub kl: f32,
    /// The latent regression (unweighted; 0 when off): mean |μ(G(z, φ(t))) − z|.
    pub latent: f32,
}

impl StepStats {
    /// Records one reconstruction pass's numbers and adds its weighted terms to G's loss.
    pub fn add_recon(&mut self, o: &GanOptions, s: PosteriorStats) {
        (self.recon, self.kl) = (s.recon, s.kl);
        self.g_loss += o.vae * s.recon + o.vae_kl * s.kl;
    }

    /// G's loss without its weighted KL term: what the divergence guard reads. A fresh
    /// conditional-VAE encoder's first codes lie far from the prior (KL 500–2,100 for a few
    /// steps, sessions 19 and 23), which is the encoder starting, not the GAN blowing up.
    pub fn g_loss_without_kl(&self, o: &GanOptions) -> f32 {
        self.g_loss - o.vae_kl * self.kl
    }
}

/// The inputs of one step: B real images, B wrong images, B text vectors, (only with the
/// classifier on) the real images' labels, [B, attributes], and (only with the VAE term's
/// shape weight on) the real images' shapes, (x, y, radius) in pixels.
pub struct GanBatch<'a> {
    pub real: &'a [f32],
    pub wrong: &'a [f32],
    pub text: &'a [f32],
    pub labels: &'a [usize],
    pub shapes: &'a [[f32; 3]],
}

/// The three passes of the D step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    Real,
    Wrong,
    Fake,
}
/// The G step's pass index for `GanOptions::d_shifts` (after the D step's real, wrong, fake).
pub const G_STEP_PASS: u64 = 3;

/// Adam state of one network.
pub struct AdamState {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

impl AdamState {
    fn new(n: usize) -> AdamState {
        AdamState { m: vec![0.0; n], v: vec![0.0; n] }
    }
}

/// G, D, their optimizers and the sessions of one GAN-INT-CLS run.
pub struct GanTrainer {
    pub config: ModelConfig,
    pub options: GanOptions,
    pub g: TrainNet,
    pub d: TrainNet,
    pub g_adam: AdamState,
    pub d_adam: AdamState,
    /// Completed steps.
    pub step: u64,
    /// The moving average of G's parameters (`options.ema` > 0).
    pub g_ema: Option<Vec<f32>>,
    /// The posterior encoder E and its pass (`options.vae` > 0, or once it was on).
    pub posterior: Option<Posterior>,
    g_b: TrainSession,
    g_int: TrainSession,
    d_b: TrainSession,
    d_int: TrainSession,
    /// G on the mode-seeking pairs (the first B/2 captions twice, each time with its own noise,
    /// B rows in one pass), when that term is on.
    g_ms: Option<TrainSession>,
    /// D's parameter gradients from the G step (discarded: D is not updated there).
    d_discard: Vec<f32>,
    scratch: Scratch,
}

/// Per-step buffers, allocated once.
struct Scratch {
    text_int: Vec<f32>,
    fake: Vec<f32>,
    dlogits: Vec<f32>,
    targets_one: Vec<f32>,
    targets_zero: Vec<f32>,
    weights_int: Vec<f32>,
    /// Mode-seeking gradients of `g_ms`'s images.
    d_images_ms: Vec<f32>,
    /// Gradient of the classifier's logits, [B + B/2, Σ classes] (rows past B stay zero).
    d_class: Vec<f32>,
    /// Gradient of the G step's images, taken back through D's augmentation and with the latent
    /// regression's added (when they are on).
    d_images_int: Vec<f32>,
    /// The middle of D's augmentation when both its parts are on (grown on first use).
    augment_mid: Vec<f32>,
}

/// Noise indices: image i of step s in the D step uses s·NOISE_STRIDE + i, in the G step
/// s·NOISE_STRIDE + NOISE_STRIDE/2 + i, on the mode-seeking rows (B of them) s·NOISE_STRIDE +
/// 7·NOISE_STRIDE/8 + i, so a resumed run draws the same noise.
pub const NOISE_STRIDE: u64 = 1 << 16;
/// Mixed into the seed for the noise stream, so it differs from the weight initialisation's.
pub const NOISE_KEY: u64 = 0x6e6f_6973_6573_6565;
/// Mixed into the seed for the noise of the averaged G's batch-norm estimate (pass p, row i:
/// noise index p·B + i).
pub const EMA_NOISE_KEY: u64 = 0x656d_615f_7374_6174;
/// Mixed into the seed for the ε of the conditional-VAE codes (row i of step s: s·NOISE_STRIDE + i).
pub const VAE_NOISE_KEY: u64 = 0x7661_655f_6e6f_6973;

impl GanTrainer {
    /// A trainer with G and D initialised from `options.seed` (Reed's init rules).
    pub fn new(config: &ModelConfig, options: GanOptions, pool: Arc<ThreadPool>) -> Result<GanTrainer> {
        let g = TrainNet::init(config, Network::Generator, options.seed)?;
        let d = TrainNet::init_graph(options.discriminator_graph(config)?, options.seed.wrapping_add(1))?;
        GanTrainer::from_nets(config, options, g, d, pool)
    }

    /// A trainer around existing networks (fresh optimizer state).
    pub fn from_nets(
        config: &ModelConfig,
        options: GanOptions,
        g: TrainNet,
        d: TrainNet,
        pool: Arc<ThreadPool>,
    ) -> Result<GanTrainer> {
        let b = options.batch;
        if b < 2 || !b.is_multiple_of(2) || b as u64 > NOISE_STRIDE / 8 {
            return Err(Error::Input(format!("batch {b}: must be even and in 2..={}", NOISE_STRIDE / 8)));
        }
        let bi = options.g_rows();
        let (d_b, d_int) = d_sessions(&d, b, bi, &pool);
        let e = config.encoder.embed_dim;
        let scratch = Scratch {
            text_int: vec![0.0; bi * e],
            fake: vec![0.0; b * IMAGE_LEN],
            dlogits: vec![0.0; bi],
            targets_one: vec![1.0; bi],
            targets_zero: vec![0.0; bi],
            weights_int: options.g_row_weights(),
            d_images_ms: Vec::new(),
            d_class: Vec::new(),
            d_images_int: vec![0.0; bi * IMAGE_LEN],
            augment_mid: Vec::new(),
        };
        let (mode_seeking, ema) = (options.mode_seeking, options.ema);
        let vae = options.vae_weights();
        let classifier = (options.classifier_sizes.clone(), options.classifier_weight);
        let mut t = GanTrainer {
            config: config.clone(),
            g_b: TrainSession::new(Arc::clone(&g.graph), b, Arc::clone(&pool)),
            g_int: TrainSession::new(Arc::clone(&g.graph), bi, Arc::clone(&pool)),
            d_b,
            d_int,
            g_ms: None,
            d_discard: vec![0.0; d.graph.param_len],
            g_adam: AdamState::new(g.graph.param_len),
            d_adam: AdamState::new(d.graph.param_len),
            g,
            d,
            options,
            step: 0,
            g_ema: None,
            posterior: None,
            scratch,
        };
        t.set_ema(ema)?;
        t.set_mode_seeking(mode_seeking, Arc::clone(&pool));
        t.set_classifier(&classifier.0, classifier.1, Arc::clone(&pool))?;
        t.set_vae(vae, pool)?;
        Ok(t)
    }

    /// Classes of D's classifier (0 when it has none).
    pub fn classes(&self) -> usize {
        self.options.classifier_sizes.iter().sum()
    }

    /// Sets the weight of G's classifier term, also on a resumed run; gives D a fresh classifier
    /// of `sizes` when it has none (D's trained parameters and optimizer state are kept). A D
    /// that has one keeps it (a weight of 0 stops its training).
    pub fn set_classifier(&mut self, sizes: &[usize], weight: f32, pool: Arc<ThreadPool>) -> Result<()> {
        if sizes.contains(&0) {
            return Err(Error::Input(format!("classifier attributes need 1 class or more, got {sizes:?}")));
        }
        let has = self.d.graph.outputs.len() > 1;
        if !has && !sizes.is_empty() {
            let graph = GanOptions { classifier_sizes: sizes.to_vec(), ..self.options.clone() };
            let graph = graph.discriminator_graph(&self.config)?;
            let mut d = TrainNet::init_graph(graph, self.options.seed.wrapping_add(1))?;
            let mut adam = AdamState::new(d.graph.param_len);
            let old = &self.d.graph;
            for s in &old.params {
                let n = d.graph.param(&s.name).map(|n| n.offset..n.offset + n.len);
                let n = n.ok_or_else(|| Error::Input(format!("D lost parameter '{}'", s.name)))?;
                let o = s.offset..s.offset + s.len;
                d.params.data_mut()[n.clone()].copy_from_slice(&self.d.params.data[o.clone()]);
                adam.m[n.clone()].copy_from_slice(&self.d_adam.m[o.clone()]);
                adam.v[n].copy_from_slice(&self.d_adam.v[o]);
            }
            d.buffers.copy_from_slice(&self.d.buffers);
            self.options.classifier_sizes = sizes.to_vec();
            (self.d_b, self.d_int) = d_sessions(&d, self.options.batch, self.g_int.batch(), &pool);
            self.d_discard = vec![0.0; d.graph.param_len];
            (self.d, self.d_adam) = (d, adam);
        } else if has && !sizes.is_empty() && sizes != self.options.classifier_sizes {
            return Err(Error::Input(format!(
                "D's classifier has attributes {:?}, not {sizes:?}",
                self.options.classifier_sizes
            )));
        }
        self.options.classifier_weight = weight;
        self.scratch.d_class = vec![0.0; self.g_int.batch() * self.options.class_outputs()];
        Ok(())
    }

    /// Whether the VAE term runs with its shape weight (each batch then needs the real images'
    /// shapes).
    pub fn shape_weight_on(&self) -> bool {
        self.options.shape_weight_on()
    }

    /// Whether the VAE term runs with its latent regression.
    fn latent_on(&self) -> bool {
        self.options.vae > 0.0 && self.options.vae_latent > 0.0
    }

    /// Whether the classifier terms are on.
    fn classifier_on(&self) -> bool {
        self.classes() > 0 && self.options.classifier_weight > 0.0
    }

    /// Turns the mode-seeking term on (weight > 0) or off, also on a resumed run.
    pub fn set_mode_seeking(&mut self, weight: f32, pool: Arc<ThreadPool>) {
        self.options.mode_seeking = weight;
        let (b, img) = (self.options.batch, IMAGE_LEN);
        let on = weight > 0.0;
        self.g_ms = on.then(|| TrainSession::new(Arc::clone(&self.g.graph), b, pool));
        self.scratch.d_images_ms = vec![0.0; if on { b * img } else { 0 }];
    }

    /// Sets the conditional-VAE term's weights, also on a resumed run: a fresh E (seeded) when the
    /// term turns on for the first time; an E that exists is kept (rebuild weight 0 pauses it, and
    /// the latent regression with it).
    pub fn set_vae(&mut self, w: VaeWeights, pool: Arc<ThreadPool>) -> Result<()> {
        let named = [("rebuild", w.rebuild), ("KL", w.kl), ("shape", w.shape), ("latent", w.latent)];
        if let Some((name, v)) = named.into_iter().find(|(_, v)| !(*v >= 0.0 && v.is_finite())) {
            return Err(Error::Input(format!("VAE {name} weight must be finite and ≥ 0, got {v}")));
        }
        let o = &mut self.options;
        (o.vae, o.vae_kl, o.vae_shape_weight, o.vae_latent) = (w.rebuild, w.kl, w.shape, w.latent);
        if w.rebuild > 0.0 && self.posterior.is_none() {
            let (nz, seed) = (self.config.generator.nz, self.options.seed.wrapping_add(2));
            self.posterior = Some(Posterior::new(&self.g, nz, self.options.batch, seed, pool)?);
        }
        Ok(())
    }

    /// Turns the moving average of G's parameters on (decay in (0, 1); it starts from G's current
    /// parameters unless it is already on) or off (0), also on a resumed run.
    pub fn set_ema(&mut self, decay: f32) -> Result<()> {
        if !(0.0..1.0).contains(&decay) {
            return Err(Error::Input(format!("EMA decay must be in [0, 1), got {decay}")));
        }
        self.options.ema = decay;
        self.g_ema = match (decay > 0.0, self.g_ema.take()) {
            (false, _) => None,
            (true, Some(e)) => Some(e),
            (true, None) => Some(self.g.params.data.clone()),
        };
        Ok(())
    }

    /// Folds G's new parameters into the average. The decay ramps up from 0.1 as (1 + t) /
    /// (10 + t) to `options.ema`, so the first steps' weights do not linger.
    fn update_ema(&mut self) {
        let Some(ema) = self.g_ema.as_mut() else { return };
        let d = self.options.ema_decay_at(self.step);
        ema.iter_mut().zip(&self.g.params.data).for_each(|(e, &p)| *e = d * *e + (1.0 - d) * p);
    }

    /// The averaged G with batch-norm statistics estimated for it: the mean over training-mode
    /// forward passes of B rows of `texts` each (one pass per whole B rows, at least one; rows
    /// cycled), each with fresh noise (with no text rows, G's own running statistics). None when
    /// the average is off.
    pub fn ema_generator(&self, texts: &[f32], pool: Arc<ThreadPool>) -> Option<TrainNet> {
        let ema = self.g_ema.as_ref()?;
        let (b, nz, e) = (self.options.batch, self.config.generator.nz, self.config.encoder.embed_dim);
        let graph = Arc::clone(&self.g.graph);
        let params = ParamStore::new(ema.clone());
        if texts.len() < e {
            return Some(TrainNet { graph, params, grads: Vec::new(), buffers: self.g.buffers.clone() });
        }
        let mut session = TrainSession::new(Arc::clone(&graph), b, pool);
        let mut buffers = vec![0.0; self.g.buffers.len()];
        let mut sum = vec![0.0f64; buffers.len()];
        let rows = texts.len() / e;
        let passes = (rows / b).max(1);
        for pass in 0..passes {
            Self::noise(&mut session, self.options.seed ^ EMA_NOISE_KEY, (pass * b) as u64, nz);
            for (i, t) in session.input_mut(1).chunks_mut(e).enumerate() {
                let r = (pass * b + i) % rows;
                t.copy_from_slice(&texts[r * e..(r + 1) * e]);
            }
            // From zero, one update leaves momentum · (this batch's statistics).
            buffers.fill(0.0);
            session.forward(&params, &mut buffers, Mode::Train);
            sum.iter_mut().zip(&buffers).for_each(|(s, &v)| *s += (v / BN_MOMENTUM) as f64);
        }
        let buffers = sum.iter().map(|&s| (s / passes as f64) as f32).collect();
        Some(TrainNet { graph, params, grads: Vec::new(), buffers })
    }

    /// Learning rate at the current step.
    pub fn lr(&self) -> f32 {
        self.options.lr_at(self.step)
    }

    fn adam(&self) -> Adam {
        self.options.adam_at(self.step)
    }

    /// One GAN iteration (D step then G step).
    pub fn step(&mut self, batch: &GanBatch) -> Result<StepStats> {
        let b = self.options.batch;
        let e = self.config.encoder.embed_dim;
        let img = IMAGE_LEN;
        if batch.real.len() != b * img || batch.wrong.len() != b * img || batch.text.len() != b * e {
            return Err(Error::Input(format!("GAN batch sizes do not match batch {b}")));
        }
        if self.classifier_on() {
            check_block_labels(batch.labels, b, &self.options.classifier_sizes, "classifier labels")?;
        }
        self.options.check_batch_shapes(batch.shapes)?;
        let mut stats = StepStats { step: self.step + 1, lr: self.lr(), ..StepStats::default() };
        self.d_step(batch, &mut stats);
        self.g_step(batch, &mut stats);
        self.step += 1;
        Ok(stats)
    }

    /// Fills a session's z input (input 0) with the noise of indices first..first+B.
    fn noise(session: &mut TrainSession, seed: u64, first: u64, nz: usize) {
        for (i, z) in session.input_mut(0).chunks_mut(nz).enumerate() {
            normal_noise(seed, first + i as u64, z);
        }
    }

    fn d_step(&mut self, batch: &GanBatch, stats: &mut StepStats) {
        let (b, nz, o) = (self.options.batch, self.config.generator.nz, self.options.clone());
        let noise_seed = o.seed ^ NOISE_KEY;
        // Fakes for this step: G in training mode (its batch statistics), no gradient.
        Self::noise(&mut self.g_b, noise_seed, self.step * NOISE_STRIDE, nz);
        self.g_b.input_mut(1).copy_from_slice(batch.text);
        self.g_b.forward(&self.g.params, &mut self.g.buffers, Mode::Train);
        self.scratch.fake.copy_from_slice(self.g_b.output(0));
        self.d.zero_grad();
        let passes = [(Pass::Real, 1.0), (Pass::Wrong, o.cls_weight), (Pass::Fake, o.fake_weight())];
        for (pass, weight) in passes {
            let images = match pass {
                Pass::Real => batch.real,
                Pass::Wrong if !o.cls => continue,
                Pass::Wrong => batch.wrong,
                Pass::Fake => &self.scratch.fake[..],
            };
            let aug = o.d_augment(self.step, pass as u64, b);
            aug.apply(images, self.d_b.input_mut(0), &mut self.scratch.augment_mid);
            self.d_b.input_mut(1).copy_from_slice(batch.text);
            self.d_b.forward(&self.d.params, &mut self.d.buffers, Mode::Train);
            let logits = self.d_b.output(0);
            let real = pass == Pass::Real;
            let targets = if real { &self.scratch.targets_one[..b] } else { &self.scratch.targets_zero[..b] };
            let dl = &mut self.scratch.dlogits[..b];
            let loss = bce_with_logits(logits, targets, None, dl);
            dl.iter_mut().for_each(|g| *g *= weight);
            stats.d_loss += weight * loss;
            let acc = logit_accuracy(logits, real);
            match pass {
                Pass::Real => stats.d_real_acc = acc,
                Pass::Wrong => stats.d_wrong_acc = acc,
                Pass::Fake => stats.d_fake_acc = acc,
            }
            let dl = &self.scratch.dlogits[..b];
            let twin = o.classifier_twin && pass == Pass::Fake;
            if (real || twin) && self.classifier_on() {
                let dc = &mut self.scratch.d_class[..b * o.class_outputs()];
                let (sizes, logits) = (&o.classifier_sizes, self.d_b.output(1));
                if !o.classifier_twin {
                    stats.d_class = softmax_cross_entropy_blocks(logits, sizes, batch.labels, dc);
                } else {
                    // D's classifier learns the real images, its twin G's images of this batch's
                    // captions (so the real images' labels).
                    let w = if real { [1.0, 0.0] } else { [0.0, 1.0] };
                    let [first, second] = softmax_cross_entropy_twin(logits, sizes, batch.labels, w, dc);
                    match real {
                        true => stats.d_class = first,
                        false => (stats.d_twin, stats.d_loss) = (second, stats.d_loss + second),
                    }
                    if !real && o.classifier_fake > 0.0 {
                        let (row, kinds) = (o.class_outputs(), sizes[0]);
                        let u = softmax_cross_entropy_uniform(logits, (row, 0), kinds, o.classifier_fake, dc);
                        (stats.d_fake_class, stats.d_loss) = (u, stats.d_loss + o.classifier_fake * u);
                    }
                }
                if real {
                    stats.d_class_acc = all_right(logits, sizes, batch.labels);
                    stats.d_loss += stats.d_class;
                }
                self.d_b.backward_outputs(&self.d.params, &mut self.d.grads, &[(0, dl), (1, dc)]);
            } else {
                self.d_b.backward(&self.d.params, &mut self.d.grads, dl);
            }
        }
        let adam = self.options.adam_d_at(self.step);
        let t = self.step + 1;
        adam.step(t, self.d.params.data_mut(), &self.d.grads, &mut self.d_adam.m, &mut self.d_adam.v);
    }

    fn g_step(&mut self, batch: &GanBatch, stats: &mut StepStats) {
        let (b, nz, e) = (self.options.batch, self.config.generator.nz, self.config.encoder.embed_dim);
        let bi = self.g_int.batch();
        let noise_seed = self.options.seed ^ NOISE_KEY;
        let text = &mut self.scratch.text_int;
        interpolated_texts(batch.text, b, e, text);
        Self::noise(&mut self.g_int, noise_seed, self.step * NOISE_STRIDE + NOISE_STRIDE / 2, nz);
        self.g_int.input_mut(1).copy_from_slice(text);
        self.g_int.forward(&self.g.params, &mut self.g.buffers, Mode::Train);
        let aug = self.options.d_augment(self.step, G_STEP_PASS, bi);
        aug.apply(self.g_int.output(0), self.d_int.input_mut(0), &mut self.scratch.augment_mid);
        self.d_int.input_mut(1).copy_from_slice(text);
        self.d_int.forward(&self.d.params, &mut self.d.buffers, Mode::Train);
        let dl = &mut self.scratch.dlogits[..bi];
        let weights = if bi > b { Some(&self.scratch.weights_int[..]) } else { None };
        stats.g_loss = bce_with_logits(self.d_int.output(0), &self.scratch.targets_one[..bi], weights, dl);
        self.d_discard.fill(0.0);
        let dl = &self.scratch.dlogits[..bi];
        if self.classifier_on() {
            // G's rows < B have the captions of the real images; the interpolated ones no labels.
            let (k, w) = (self.options.class_outputs(), self.options.classifier_weight);
            let (dc, rest) = self.scratch.d_class.split_at_mut(b * k);
            let (sizes, logits) = (&self.options.classifier_sizes, &self.d_int.output(1)[..b * k]);
            if self.options.classifier_twin {
                // TAC-GAN: G pleases the classifier and defeats its twin (at S times the weight).
                let wt = w * self.options.classifier_twin_scale;
                let [first, second] = softmax_cross_entropy_twin(logits, sizes, batch.labels, [w, -wt], dc);
                (stats.g_class, stats.g_twin) = (first, second);
                stats.g_loss += w * first - wt * second;
            } else {
                stats.g_class = softmax_cross_entropy_blocks(logits, sizes, batch.labels, dc);
                stats.g_loss += w * stats.g_class;
                dc.iter_mut().for_each(|d| *d *= w);
            }
            rest.fill(0.0);
            self.d_int.backward_outputs(&self.d.params, &mut self.d_discard, &[(0, dl), (1, &self.scratch.d_class)]);
        } else {
            self.d_int.backward(&self.d.params, &mut self.d_discard, dl);
        }
        self.g.zero_grad();
        let latent_on = self.latent_on();
        let d_images = if latent_on || !aug.is_identity() {
            let d = &mut self.scratch.d_images_int;
            aug.backward(self.d_int.input_grad(0), d, &mut self.scratch.augment_mid);
            if let Some(post) = self.posterior.as_mut().filter(|_| latent_on) {
                // The first B rows are the batch's captions with prior codes; the interpolated
                // rows have no caption of their own and are left to D.
                let (images, z) = (&self.g_int.output(0)[..b * IMAGE_LEN], &self.g_int.input(0)[..b * nz]);
                stats.latent = post.latent_regression(images, z, self.options.vae_latent, &mut d[..b * IMAGE_LEN]);
                stats.g_loss += self.options.vae_latent * stats.latent;
            }
            &self.scratch.d_images_int[..]
        } else {
            self.d_int.input_grad(0)
        };
        match self.g_ms.as_mut() {
            None => self.g_int.backward(&self.g.params, &mut self.g.grads, d_images),
            Some(ms) => {
                stats.mode_seeking = mode_seeking_pairs(
                    ms,
                    (&mut self.g, batch.text),
                    (noise_seed, self.step * NOISE_STRIDE + NOISE_STRIDE / 8 * 7),
                    (self.options.mode_seeking, self.options.mode_seeking_cells()),
                    self.options.mode_seeking_mask.then(|| ShapeMask::shapes(3, 64, 64)),
                    &mut self.scratch.d_images_ms,
                );
                self.g_int.backward(&self.g.params, &mut self.g.grads, d_images);
                ms.backward(&self.g.params, &mut self.g.grads, &self.scratch.d_images_ms);
            }
        }
        let adam = self.adam();
        let t = self.step + 1;
        if let Some(post) = self.posterior.as_mut().filter(|_| self.options.vae > 0.0) {
            let inputs = self.options.recon_inputs(batch, self.step);
            stats.add_recon(&self.options, post.step(&mut self.g, &inputs, &adam, t));
        }
        adam.step(t, self.g.params.data_mut(), &self.g.grads, &mut self.g_adam.m, &mut self.g_adam.v);
        self.update_ema();
    }
}

/// The G step's text rows into `out` ([rows, e], rows ≥ B): the B vectors of `text`, then
/// ½(t_i + t_{i+B/2}) for i < rows − B (GAN-INT's interpolations).
pub fn interpolated_texts(text: &[f32], b: usize, e: usize, out: &mut [f32]) {
    let rows = out.len() / e.max(1);
    out[..b * e].copy_from_slice(&text[..b * e]);
    for i in 0..rows - b {
        for j in 0..e {
            out[(b + i) * e + j] = 0.5 * (text[i * e + j] + text[(i + b / 2) * e + j]);
        }
    }
}

/// The mode-seeking pass's text rows into `out` ([2p, e]): the first `p` vectors of `text`, twice.
pub fn pair_texts(text: &[f32], p: usize, e: usize, out: &mut [f32]) {
    out[..p * e].copy_from_slice(&text[..p * e]);
    out[p * e..2 * p * e].copy_from_slice(&text[..p * e]);
}

/// Fraction of `logits` on `real`'s side of 0 (D's accuracy on one pass).
pub fn logit_accuracy(logits: &[f32], real: bool) -> f32 {
    logits.iter().filter(|&&l| (l > 0.0) == real).count() as f32 / logits.len().max(1) as f32
}

/// D's sessions: the D step's (batch `b`) and the G step's (`bi` rows, with the image gradient
/// that reaches G).
fn d_sessions(d: &TrainNet, b: usize, bi: usize, pool: &Arc<ThreadPool>) -> (TrainSession, TrainSession) {
    let mut d_int = TrainSession::new(Arc::clone(&d.graph), bi, Arc::clone(pool));
    d_int.set_input_grad(0, true);
    (TrainSession::new(Arc::clone(&d.graph), b, Arc::clone(pool)), d_int)
}

/// Fraction of rows of `logits` ([B, Σ sizes], or wider: only each row's first Σ sizes are
/// read, the classifier half of the twin's) whose every attribute block has its largest logit at
/// the row's label.
pub fn all_right(logits: &[f32], sizes: &[usize], labels: &[usize]) -> f32 {
    let rows = (labels.len() / sizes.len().max(1)).max(1);
    let rows = labels.chunks(sizes.len()).zip(logits.chunks(logits.len() / rows));
    let right = rows.filter(|(ls, row)| {
        let mut first = 0;
        sizes.iter().zip(*ls).all(|(&c, &l)| {
            let block = &row[first..first + c];
            first += c;
            block.iter().all(|&v| v <= block[l])
        })
    });
    right.count() as f32 / (labels.len() / sizes.len().max(1)).max(1) as f32
}

/// Runs G on the mode-seeking pairs, the first B/2 texts twice with noise from `first` (rows i
/// and B/2 + i make pair i), and fills `d_ms` with the weighted gradient of the mode-seeking
/// term; returns the term. Both images of a pair come from this one pass, so they see the same
/// batch-norm statistics: with one image taken from the G step's pass (B + B/2 rows) and the
/// other from a pass of B/2 rows, G made the pairs differ through the two batches' statistics
/// and still drew one image per caption in eval mode (docs/RESULTS.md, session 7).
fn mode_seeking_pairs(
    ms: &mut TrainSession,
    (g, text): (&mut TrainNet, &[f32]),
    (seed, first): (u64, u64),
    (weight, cells): (f32, ModeSeekingCells),
    mask: Option<ShapeMask>,
    d_ms: &mut [f32],
) -> f32 {
    let rows = ms.batch();
    let p = rows / 2;
    let (nz, e) = (ms.input(0).len() / rows, text.len() / rows);
    GanTrainer::noise(ms, seed, first, nz);
    let texts = ms.input_mut(1);
    pair_texts(text, p, e, texts);
    ms.forward(&g.params, &mut g.buffers, Mode::Train);
    let (x, z) = (ms.output(0).split_at(p * IMAGE_LEN), ms.input(0).split_at(p * nz));
    let loss = match mask {
        None => {
            let (d1, d2) = d_ms.split_at_mut(p * IMAGE_LEN);
            mode_seeking_loss(x, z, p, cells, (d1, d2))
        }
        Some(mask) => {
            let images = ms.output(0);
            let hw = images.len() / rows / mask.channels;
            let (mut masks, mut dmasks) = (vec![0.0; rows * hw], vec![0.0; rows * hw]);
            mask.forward(images, &mut masks);
            let (m, (d1, d2)) = (masks.split_at(p * hw), dmasks.split_at_mut(p * hw));
            let loss = mode_seeking_loss(m, z, p, cells, (d1, d2));
            mask.backward(images, &dmasks, d_ms);
            loss
        }
    };
    d_ms.iter_mut().for_each(|v| *v *= weight);
    loss
}
