//! The conditional-VAE path beside GAN-INT-CLS (not in the paper; the cVAE-GAN half of
//! BicycleGAN, Zhu et al. 2017): a posterior encoder E (S's architecture, 2·nz outputs) reads a
//! real image x and gives q(z | x) = N(μ, diag exp(log σ²)); G must rebuild x from
//! z = μ + σ·ε and the image's own caption embedding, paying `weight` · mean |G(z, φ(t)) − x|,
//! and q pays `kl` · KL(q ‖ N(0, I)) (summed over nz, averaged over the batch). With a shape
//! weight L (`shapes` datasets), pixels within 1.2 radii of each image's shape count 1 + L times
//! in that mean: the shape is 4–30 % of the image, and unweighted, every loss is met first by
//! the background (G drew faint smudges at 2,000 steps; with L = 10, solid blobs of the right
//! colour, place and size — the PyTorch probe of session 10, docs/RESULTS.md).
//!
//! With a latent weight R (BicycleGAN's cLR-GAN half), G also pays R · mean |μ(G(z, φ(t))) − z|
//! on the B G-step images it drew from prior codes z: E must find z again in G's picture, so G
//! has to use the prior's z visibly. Without it G used E's codes in the rebuild but let prior
//! samples collapse to one placement (session 11, docs/RESULTS.md). E is not trained by this
//! term, and its running statistics are left alone.
//!
//! Why: the adversarial terms alone never told G which outline a caption names (shape kind at
//! 26–30 % after every recipe of sessions 5–9, docs/RESULTS.md); the reconstruction shows G the
//! exact shape of each real image, while z, squeezed by the KL term towards the prior, is left
//! the image's style (position, rotation, background texture) — the attributes its caption does
//! not fix. At sampling time z comes from the prior as before; E is never exported with G.
//! E steps with G's Adam settings (same rate and schedule) right after G's gradients are
//! complete; G's running statistics also see the reconstruction batch.

use std::sync::Arc;

use rayon::ThreadPool;

use super::gan::AdamState;
use super::graph::{TrainBuilder, TrainGraph};
use super::net::TrainNet;
use super::session::{Mode, TrainSession};
use super::style::{style_graph, STYLE_PREFIX};
use crate::error::Result;
use crate::model::net::image_to_vector;
use crate::ops::optim::Adam;
use crate::rng::normal_noise;

/// Width of E's first layer (S's and D's for `shapes`).
pub const POSTERIOR_NF: usize = 32;
/// Parameter prefix of E.
pub const POSTERIOR_PREFIX: &str = "posterior";
/// log σ² is clamped to ±this before use (its gradient is zero outside), so an early, wild E
/// cannot overflow exp.
const LOGVAR_CLAMP: f32 = 10.0;
/// Pixels within this many radii (half-extents) of a shape's centre get the shape weight: the
/// shape and a rim of background around its outline (only a square's corners, at √2 radii,
/// fall outside), so that drawing too much counts as much as drawing too little.
pub const SHAPE_WEIGHT_RADII: f32 = 1.2;

/// Lays E out for training: image [3, 64, 64] → [2·nz, 1, 1] (μ, then log σ²).
pub fn posterior_graph(nz: usize) -> Result<TrainGraph> {
    let mut b = TrainBuilder::new();
    let (_, out) = image_to_vector(&mut b, POSTERIOR_PREFIX, POSTERIOR_NF, "proj", 2 * nz)?;
    Ok(b.finish(&[out]))
}

/// The reconstruction term's numbers of one step (unweighted).
#[derive(Clone, Copy, Debug, Default)]
pub struct PosteriorStats {
    /// mean |G(z, φ(t)) − x| over every pixel and channel.
    pub recon: f32,
    /// KL(q ‖ N(0, I)), summed over nz, averaged over the batch.
    pub kl: f32,
}

/// E, its optimizer state and the sessions of the reconstruction pass.
pub struct Posterior {
    pub net: TrainNet,
    pub adam: AdamState,
    /// E on the B real images.
    e: TrainSession,
    /// G on the B sampled codes (gradient of z on).
    g: TrainSession,
    eps: Vec<f32>,
    /// Gradients of E's output (dμ, d log σ²) and of G's image.
    d_out: Vec<f32>,
    d_image: Vec<f32>,
    /// Per-element weights of the rebuild term ([B, 3, 64, 64]; empty: uniform).
    pixel_w: Vec<f32>,
    /// E on G's B prior images (image gradient on) for the latent regression, made on first use,
    /// with scratch copies of E's running statistics and parameter gradients (both discarded).
    latent: Option<LatentPass>,
    pool: Arc<ThreadPool>,
}

/// The latent regression's E pass and its scratch.
struct LatentPass {
    e: TrainSession,
    buffers: Vec<f32>,
    grads: Vec<f32>,
    mu: Vec<f32>,
    d_mu: Vec<f32>,
    d_out: Vec<f32>,
}

/// Borrowed pieces of one reconstruction pass.
pub struct ReconInputs<'a> {
    pub real: &'a [f32],
    pub text: &'a [f32],
    /// Noise seed and the index of row 0's ε.
    pub noise: (u64, u64),
    /// Reconstruction and KL weights.
    pub weights: (f32, f32),
    /// The shapes' (x, y, radius) in pixels, one per real image, and the extra weight L of
    /// their pixels (None: every pixel counts once).
    pub shapes: Option<(&'a [[f32; 3]], f32)>,
}

impl Posterior {
    /// A fresh E (seeded) for batch `b` against G's training graph.
    pub fn new(g: &TrainNet, nz: usize, b: usize, seed: u64, pool: Arc<ThreadPool>) -> Result<Posterior> {
        Ok(Posterior::from_net(TrainNet::init_graph(posterior_graph(nz)?, seed)?, g, b, pool))
    }

    /// The reconstruction pass around an existing E (fresh optimizer state).
    pub fn from_net(net: TrainNet, g: &TrainNet, b: usize, pool: Arc<ThreadPool>) -> Posterior {
        let mut gs = TrainSession::new(Arc::clone(&g.graph), b, Arc::clone(&pool));
        gs.set_input_grad(0, true);
        let e = TrainSession::new(Arc::clone(&net.graph), b, Arc::clone(&pool));
        let out = e.output(0).len();
        let image = gs.output(0).len();
        Posterior {
            adam: AdamState { m: vec![0.0; net.graph.param_len], v: vec![0.0; net.graph.param_len] },
            net,
            eps: vec![0.0; out / 2],
            d_out: vec![0.0; out],
            d_image: vec![0.0; image],
            pixel_w: Vec::new(),
            latent: None,
            pool,
            e,
            g: gs,
        }
    }

    /// E's mean half as a style encoder S (`style-transfer`, `eval --style`): the same trunk,
    /// the last layer's first nz output channels (μ). S(x) is then the code E would hand G for
    /// x, so a style image's background and placement come back as E learnt them.
    pub fn style_encoder(&self, nz: usize) -> Result<TrainNet> {
        let mut s = TrainNet::init_graph(style_graph(nz)?, 0)?;
        let src = &self.net;
        let find = |name: &str| -> Option<Vec<f32>> {
            let own = format!("{POSTERIOR_PREFIX}{}", name.strip_prefix(STYLE_PREFIX)?);
            let g = &src.graph;
            let (data, slot) = match (g.param(&own), g.buffers.iter().find(|b| b.name == own)) {
                (Some(p), _) => (&src.params.data, p),
                (None, Some(b)) => (&src.buffers, b),
                (None, None) => return None,
            };
            let v = &data[slot.offset..slot.offset + slot.len];
            // μ is the first half of the last layer's output channels (the leading dimension).
            Some(if own.ends_with(".proj.weight") { v[..v.len() / 2].to_vec() } else { v.to_vec() })
        };
        s.load_tensors(&find)?;
        Ok(s)
    }

    /// The latent regression on B images G drew from the codes `z` ([B, 3, 64, 64] and [B, nz]):
    /// returns mean |μ(E(images)) − z| and adds `weight` times its gradient with respect to the
    /// images into `d_images`. E runs in training mode (batch statistics, as on the real images)
    /// on a copy of its running statistics; its parameters and state do not change.
    pub fn latent_regression(&mut self, images: &[f32], z: &[f32], weight: f32, d_images: &mut [f32]) -> f32 {
        let b = self.e.batch();
        let nz = self.eps.len() / b;
        let (net, pool) = (&self.net, &self.pool);
        let pass = self.latent.get_or_insert_with(|| {
            let mut e = TrainSession::new(Arc::clone(&net.graph), b, Arc::clone(pool));
            e.set_input_grad(0, true);
            let out = e.output(0).len();
            LatentPass {
                e,
                buffers: Vec::new(),
                grads: vec![0.0; net.graph.param_len],
                mu: vec![0.0; out / 2],
                d_mu: vec![0.0; out / 2],
                d_out: vec![0.0; out],
            }
        });
        pass.buffers.clone_from(&net.buffers);
        pass.e.input_mut(0).copy_from_slice(images);
        pass.e.forward(&net.params, &mut pass.buffers, Mode::Train);
        for (m, row) in pass.mu.chunks_mut(nz).zip(pass.e.output(0).chunks(2 * nz)) {
            m.copy_from_slice(&row[..nz]);
        }
        let loss = l1_loss(&pass.mu, z, None, weight, &mut pass.d_mu);
        // Only μ is regressed: the log σ² half of d_out stays at its initial zeros.
        for (d, dm) in pass.d_out.chunks_mut(2 * nz).zip(pass.d_mu.chunks(nz)) {
            d[..nz].copy_from_slice(dm);
        }
        pass.grads.fill(0.0);
        pass.e.backward(&net.params, &mut pass.grads, &pass.d_out);
        d_images.iter_mut().zip(pass.e.input_grad(0)).for_each(|(d, &g)| *d += g);
        loss
    }

    /// One reconstruction pass: adds the term's gradients to `g.grads` (G's, not zeroed here)
    /// and steps E with `adam` at step `t`.
    pub fn step(&mut self, g: &mut TrainNet, inputs: &ReconInputs, adam: &Adam, t: u64) -> PosteriorStats {
        let b = self.e.batch();
        let nz = self.eps.len() / b;
        self.e.input_mut(0).copy_from_slice(inputs.real);
        self.e.forward(&self.net.params, &mut self.net.buffers, Mode::Train);
        for (i, eps) in self.eps.chunks_mut(nz).enumerate() {
            normal_noise(inputs.noise.0, inputs.noise.1 + i as u64, eps);
        }
        sample_codes(self.e.output(0), &self.eps, nz, self.g.input_mut(0));
        self.g.input_mut(1).copy_from_slice(inputs.text);
        self.g.forward(&g.params, &mut g.buffers, Mode::Train);
        let (w_recon, w_kl) = inputs.weights;
        let pixel_w = match inputs.shapes {
            Some((geometry, extra)) => {
                self.pixel_w.resize(self.d_image.len(), 0.0);
                shape_pixel_weights(geometry, extra, 64, &mut self.pixel_w);
                Some(&self.pixel_w[..])
            }
            None => None,
        };
        let recon = l1_loss(self.g.output(0), inputs.real, pixel_w, w_recon, &mut self.d_image);
        self.g.backward(&g.params, &mut g.grads, &self.d_image);
        let kl = code_gradients(self.e.output(0), &self.eps, self.g.input_grad(0), nz, w_kl, &mut self.d_out);
        self.net.zero_grad();
        self.e.backward(&self.net.params, &mut self.net.grads, &self.d_out);
        adam.step(t, self.net.params.data_mut(), &self.net.grads, &mut self.adam.m, &mut self.adam.v);
        PosteriorStats { recon, kl }
    }
}

/// z = μ + exp(½ log σ²)·ε per row; `mu_logvar` is [B, 2·nz] (μ first), `eps` and `z` [B, nz]
/// (log σ² clamped to ±10).
pub fn sample_codes(mu_logvar: &[f32], eps: &[f32], nz: usize, z: &mut [f32]) {
    let rows = mu_logvar.chunks(2 * nz).zip(eps.chunks(nz)).zip(z.chunks_mut(nz));
    for ((ml, e), z) in rows {
        let (mu, lv) = ml.split_at(nz);
        for j in 0..nz {
            z[j] = mu[j] + (0.5 * lv[j].clamp(-LOGVAR_CLAMP, LOGVAR_CLAMP)).exp() * e[j];
        }
    }
}

/// `weight` · the mean of |x − target| weighted by `w` (per element, None: all 1, the plain
/// mean), Σ wᵢ|Δᵢ| / Σ wᵢ, into the return value (unweighted by `weight`), its gradient into `dx`.
pub fn l1_loss(x: &[f32], target: &[f32], w: Option<&[f32]>, weight: f32, dx: &mut [f32]) -> f32 {
    let total = w.map_or(x.len() as f64, |w| w.iter().map(|&v| f64::from(v)).sum()).max(f64::MIN_POSITIVE);
    let g = (f64::from(weight) / total) as f32;
    let mut sum = 0.0f64;
    for (i, ((d, &a), &b)) in dx.iter_mut().zip(x).zip(target).enumerate() {
        let wi = w.map_or(1.0, |w| w[i]);
        let diff = a - b;
        sum += f64::from(wi * diff.abs());
        *d = if diff == 0.0 { 0.0 } else { g * wi * diff.signum() };
    }
    (sum / total) as f32
}

/// Per-element weights of the rebuild term into `out` ([B, C, side, side], B = `geometry.len()`):
/// 1, plus `extra` at the pixels whose centre lies within SHAPE_WEIGHT_RADII radii of the
/// image's shape centre (x, y, radius in pixels from the top-left corner), in every channel.
pub fn shape_pixel_weights(geometry: &[[f32; 3]], extra: f32, side: usize, out: &mut [f32]) {
    let plane = side * side;
    let per = out.len() / geometry.len().max(1);
    for (img, &[cx, cy, r]) in out.chunks_mut(per).zip(geometry) {
        let reach = (SHAPE_WEIGHT_RADII * r).powi(2);
        let (first, rest) = img.split_at_mut(plane);
        for (p, v) in first.iter_mut().enumerate() {
            let (x, y) = ((p % side) as f32 + 0.5 - cx, (p / side) as f32 + 0.5 - cy);
            *v = if x * x + y * y <= reach { 1.0 + extra } else { 1.0 };
        }
        rest.chunks_mut(plane).for_each(|c| c.copy_from_slice(first));
    }
}

/// Gradients of E's output ([B, 2·nz]: dμ, d log σ²) from the gradient of the sampled codes
/// `dz` and `kl_weight` · KL(q ‖ N(0, I)) averaged over the batch; returns that KL (unweighted).
pub fn code_gradients(mu_logvar: &[f32], eps: &[f32], dz: &[f32], nz: usize, kl_weight: f32, d_out: &mut [f32]) -> f32 {
    let rows = eps.len() / nz.max(1);
    let w = kl_weight / rows.max(1) as f32;
    let mut kl = 0.0f64;
    let parts = mu_logvar.chunks(2 * nz).zip(eps.chunks(nz)).zip(dz.chunks(nz)).zip(d_out.chunks_mut(2 * nz));
    for (((ml, e), dz), d) in parts {
        let (mu, lv) = ml.split_at(nz);
        let (dmu, dlv) = d.split_at_mut(nz);
        for j in 0..nz {
            let inside = lv[j].abs() <= LOGVAR_CLAMP;
            let l = lv[j].clamp(-LOGVAR_CLAMP, LOGVAR_CLAMP);
            let var = l.exp();
            kl += 0.5 * (mu[j] * mu[j] + var - 1.0 - l) as f64;
            dmu[j] = dz[j] + w * mu[j];
            dlv[j] = if inside { dz[j] * e[j] * 0.5 * (0.5 * l).exp() + w * 0.5 * (var - 1.0) } else { 0.0 };
        }
    }
    (kl / rows.max(1) as f64) as f32
}
