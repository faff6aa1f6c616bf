//! Caption → image on the GPU: the encoder and generator graphs as CUDA sessions for a fixed
//! batch, the one-hot captions uploaded, the embedding handed from the encoder to G on the
//! device; the noise is the CPU's Philox stream (image j of seed s gets z(s, j) on both).

use std::sync::Arc;

use super::{driver_err, CudaDevice, CudaSession};
use crate::error::{Error, Result};
use crate::model::config::ModelConfig;
use crate::model::encoder::build_encoder;
use crate::model::generator::build_generator;
use crate::model::pipeline::IMAGE_LEN;
use crate::model::text::{check_caption, encode_into, CaptionReport, ALPHABET_SIZE};
use crate::model::WeightSet;
use crate::rng::normal_noise;

/// The text-to-image pipeline on one GPU, planned for `batch` captions per call.
pub struct CudaTextToImage {
    config: ModelConfig,
    encoder: CudaSession,
    generator: CudaSession,
    onehot: Vec<f32>,
    z: Vec<f32>,
}

impl CudaTextToImage {
    /// Uploads the encoder and generator of `ws` for batches of up to `batch` captions.
    pub fn new(dev: Arc<CudaDevice>, ws: &WeightSet, batch: usize) -> Result<CudaTextToImage> {
        let batch = batch.max(1);
        let encoder = CudaSession::new(Arc::clone(&dev), Arc::new(build_encoder(ws)?), batch)?;
        let generator = CudaSession::new(dev, Arc::new(build_generator(ws)?), batch)?;
        let onehot = vec![0.0; batch * ALPHABET_SIZE * ws.config().text.doc_length];
        let z = vec![0.0; batch * ws.config().generator.nz];
        Ok(CudaTextToImage { config: ws.config().clone(), encoder, generator, onehot, z })
    }

    pub fn batch(&self) -> usize {
        self.encoder.batch()
    }

    /// One image per caption (at most `batch` captions); image j uses the noise of index
    /// `indices[j]` for `seed` (drawn on the host: a few hundred values per image). Returns
    /// [n, 3, 64, 64] in [-1, 1].
    pub fn generate(
        &mut self,
        captions: &[String],
        seed: u64,
        indices: &[u64],
    ) -> Result<(Vec<f32>, Vec<CaptionReport>)> {
        let (b, n) = (self.batch(), captions.len());
        if n == 0 || n > b || indices.len() != n {
            return Err(Error::Input(format!(
                "CUDA pipeline: {n} captions and {} noise indices for a batch of {b}",
                indices.len()
            )));
        }
        for c in captions {
            check_caption(c)?;
        }
        let l = self.config.text.doc_length;
        self.onehot.fill(0.0);
        let reports =
            captions.iter().zip(self.onehot.chunks_mut(ALPHABET_SIZE * l)).map(|(c, o)| encode_into(c, l, o)).collect();
        let nz = self.config.generator.nz;
        self.z.fill(0.0);
        for (z, &i) in self.z.chunks_mut(nz).zip(indices) {
            normal_noise(seed, i, z);
        }
        self.encoder.set_input(0, &self.onehot)?;
        self.generator.set_input(0, &self.z)?;
        self.encoder.run()?;
        self.embedding_to_generator()?;
        self.generator.run()?;
        let mut images = self.generator.output(0)?;
        images.truncate(n * IMAGE_LEN);
        Ok((images, reports))
    }

    fn embedding_to_generator(&mut self) -> Result<()> {
        let dev = Arc::clone(self.encoder.device());
        dev.stream()
            .memcpy_dtod(self.encoder.output_buf(0)?, self.generator.input_buf_mut(1)?)
            .map_err(driver_err("copy embedding"))
    }

    /// Runs G alone on the loaded embedding, z drawn on the device (the benchmark's G timing).
    pub fn replay_generator(&mut self, seed: u64) -> Result<()> {
        let dev = Arc::clone(self.encoder.device());
        dev.philox_normal_fwd(seed, 0, (self.config.generator.nz, self.batch()), self.generator.input_buf_mut(0)?)?;
        self.generator.run()
    }

    /// Runs encoder and G on what is loaded, with z for images 0..batch of `seed` drawn on the
    /// device, copying nothing back (the benchmark's replay loop; `synchronize` to time it).
    pub fn replay(&mut self, seed: u64) -> Result<()> {
        self.encoder.run()?;
        self.embedding_to_generator()?;
        self.replay_generator(seed)
    }

    /// Waits for everything enqueued.
    pub fn synchronize(&self) -> Result<()> {
        self.encoder.device().synchronize()
    }
}
