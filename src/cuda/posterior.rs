//! The conditional-VAE term of the GAN step on the GPU (`train --vae`; the device twin of
//! `train::posterior::Posterior::step`): E reads the batch's real images, codes z = μ + σ·ε (ε
//! from the CPU's noise stream, drawn by the device's Philox), G rebuilds each image from its code
//! and caption (training mode: G's running statistics see this batch, as on the CPU), the
//! weighted L1 and the codes' KL give G's and E's gradients, and E takes its Adam step. The shape
//! weights are formed on the host by the CPU's own function and uploaded with the batch.
//! The latent regression (`--vae-latent`) stays on the CPU for now.

use std::sync::Arc;

use super::gan_step::DeviceNet;
use super::train_launch::L1_BLOCKS;
use super::{Buf, CudaDevice, CudaTrainSession};
use crate::error::Result;
use crate::model::pipeline::IMAGE_LEN;
use crate::ops::optim::Adam;
use crate::train::posterior::{shape_pixel_weights, Posterior, PosteriorStats, ReconInputs};
use crate::train::session::Mode;

/// E on the device, its sessions and the term's buffers.
pub(super) struct CudaPosterior {
    pub(super) e: DeviceNet,
    /// E on the B real images.
    session: CudaTrainSession,
    /// G on the B codes (the gradient of z on).
    g: CudaTrainSession,
    nz: usize,
    eps: Buf,
    d_out: Buf,
    d_image: Buf,
    /// The shape weights of the batch (host copy, uploaded each step) and their device twin.
    pixel_w: Vec<f32>,
    pixel_w_dev: Buf,
    partial: Buf,
    kl_rows: Buf,
}

impl CudaPosterior {
    /// The CPU trainer's E (and its Adam moments) uploaded, with sessions for batch `b` against
    /// G's training graph.
    pub(super) fn upload(dev: &Arc<CudaDevice>, post: &Posterior, g: &DeviceNet, b: usize) -> Result<CudaPosterior> {
        let session = CudaTrainSession::new(Arc::clone(dev), Arc::clone(&post.net.graph), b)?;
        let mut gs = CudaTrainSession::new(Arc::clone(dev), Arc::clone(&g.graph), b)?;
        gs.set_input_grad(0, true);
        let nz = gs.input_len(0) / b;
        let image = b * IMAGE_LEN;
        let zeros = |n: usize| dev.upload(&vec![0.0; n]);
        Ok(CudaPosterior {
            e: DeviceNet::upload(dev, &post.net, &post.adam)?,
            eps: zeros(b * nz)?,
            d_out: zeros(2 * b * nz)?,
            d_image: zeros(image)?,
            pixel_w: Vec::new(),
            pixel_w_dev: zeros(image)?,
            partial: zeros(L1_BLOCKS)?,
            kl_rows: zeros(b)?,
            nz,
            session,
            g: gs,
        })
    }

    /// One reconstruction pass on the real images already on the device (`real`): adds the
    /// term's gradients to G's (not zeroed here) and steps E with `adam` at 0-based step `step`,
    /// as the CPU's `Posterior::step`. `inputs.real` is not read (its device copy is `real`).
    pub(super) fn step(
        &mut self,
        dev: &CudaDevice,
        g: &mut DeviceNet,
        real: &Buf,
        inputs: &ReconInputs,
        (adam, step): (Adam, u64),
    ) -> Result<PosteriorStats> {
        let (b, nz) = (self.g.batch(), self.nz);
        let n = self.d_image.len();
        super::gan_step::copy(dev, real, self.session.input_buf_mut(0)?)?;
        self.session.forward(&self.e.params, &mut self.e.buffers, Mode::Train)?;
        dev.philox_normal_fwd(inputs.noise.0, inputs.noise.1, (nz, b), &mut self.eps)?;
        dev.sample_codes(self.session.output_buf(0)?, &self.eps, (b, nz), self.g.input_buf_mut(0)?)?;
        self.g.set_input(1, inputs.text)?;
        self.g.forward(&g.params, &mut g.buffers, Mode::Train)?;
        let (w_recon, w_kl) = inputs.weights;
        let total = match inputs.shapes {
            Some((geometry, extra)) => {
                self.pixel_w.resize(n, 0.0);
                shape_pixel_weights(geometry, extra, 64, &mut self.pixel_w);
                dev.stream().memcpy_htod(&self.pixel_w, &mut self.pixel_w_dev).map_err(super::driver_err("upload"))?;
                self.pixel_w.iter().map(|&v| f64::from(v)).sum::<f64>()
            }
            None => n as f64,
        }
        .max(f64::MIN_POSITIVE);
        let w = inputs.shapes.is_some().then_some(&self.pixel_w_dev);
        let grad = (f64::from(w_recon) / total) as f32;
        dev.l1_loss((self.g.output_buf(0)?, real), w, n, grad, &mut self.d_image, &mut self.partial)?;
        self.g.backward(&g.params, &mut g.grads, &self.d_image)?;
        let codes = (self.session.output_buf(0)?, &self.eps, self.g.input_grad_buf(0));
        dev.code_gradients(codes, (b, nz), w_kl, &mut self.d_out, &mut self.kl_rows)?;
        self.e.zero_grads(dev)?;
        self.session.backward(&self.e.params, &mut self.e.grads, &self.d_out)?;
        self.e.adam(dev, adam, step)?;
        // The log line's numbers (the step's only waits for this term).
        let sum = |v: Vec<f32>| v.iter().map(|&x| f64::from(x)).sum::<f64>();
        let recon = (sum(dev.download(&self.partial)?) / total) as f32;
        let kl = (sum(dev.download(&self.kl_rows)?) / b as f64) as f32;
        Ok(PosteriorStats { recon, kl })
    }

    /// E's parameters, running statistics and Adam moments back into the CPU trainer's.
    pub(super) fn download(&self, dev: &CudaDevice, post: &mut Posterior) -> Result<()> {
        self.e.download(dev, &mut post.net, &mut post.adam)
    }
}
