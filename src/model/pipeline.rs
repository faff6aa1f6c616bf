//! Caption → image: the encoder and generator sessions, the one-hot input, Philox noise. Image i
//! of seed s gets z(s, i) whatever the batch it is generated in.

use std::sync::Arc;

use rayon::ThreadPool;

use super::config::ModelConfig;
use super::encoder::build_encoder_for;
use super::generator::build_generator_for;
use super::loader::WeightSet;
use super::text::{check_caption, encode_into, CaptionReport, ALPHABET_SIZE};
use crate::error::Result;
use crate::graph::{Backend, Session};
use crate::rng::normal_noise;

/// Values of one image: 3·64·64.
pub const IMAGE_LEN: usize = 3 * 64 * 64;

/// The text-to-image pipeline (encoder + generator).
pub struct TextToImage {
    config: ModelConfig,
    encoder: Session,
    generator: Session,
}

impl TextToImage {
    /// Builds both graphs from `ws` (which must hold encoder and generator), planned for `batch`.
    pub fn new(ws: &WeightSet, batch: usize, pool: Arc<ThreadPool>, backend: Backend) -> Result<TextToImage> {
        let cpu_batch = (backend == Backend::Cpu).then_some(batch);
        let encoder = Session::new(Arc::new(build_encoder_for(ws, cpu_batch)?), batch, Arc::clone(&pool), backend);
        let generator = Session::new(Arc::new(build_generator_for(ws, cpu_batch)?), batch, pool, backend);
        Ok(TextToImage { config: ws.config().clone(), encoder, generator })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn encoder(&mut self) -> &mut Session {
        &mut self.encoder
    }

    pub fn generator(&mut self) -> &mut Session {
        &mut self.generator
    }

    /// Both sessions, encoder first.
    pub fn sessions_mut(&mut self) -> [&mut Session; 2] {
        [&mut self.encoder, &mut self.generator]
    }

    /// Re-plans both sessions for `batch` images.
    pub fn set_batch(&mut self, batch: usize) {
        self.encoder.set_batch(batch);
        self.generator.set_batch(batch);
    }

    /// Embeds `captions` (one batch); returns [B, E] and what the encoding noticed.
    pub fn embed(&mut self, captions: &[String]) -> Result<(Vec<f32>, Vec<CaptionReport>)> {
        let reports = self.load_captions(captions)?;
        self.encoder.run();
        Ok((self.encoder.output(0).to_vec(), reports))
    }

    fn load_captions(&mut self, captions: &[String]) -> Result<Vec<CaptionReport>> {
        for c in captions {
            check_caption(c)?;
        }
        self.set_batch(captions.len());
        let l = self.config.text.doc_length;
        let input = self.encoder.input_mut(0);
        Ok(captions.iter().zip(input.chunks_mut(ALPHABET_SIZE * l)).map(|(c, o)| encode_into(c, l, o)).collect())
    }

    /// Generates one image per caption; image j uses the noise of index `first_index + j`.
    /// Returns [B, 3, 64, 64] in [-1, 1].
    pub fn generate(
        &mut self,
        captions: &[String],
        seed: u64,
        first_index: u64,
    ) -> Result<(Vec<f32>, Vec<CaptionReport>)> {
        let reports = self.load_captions(captions)?;
        self.encoder.run();
        let indices: Vec<u64> = (0..captions.len() as u64).map(|j| first_index + j).collect();
        self.generate_loaded(seed, &indices);
        Ok((self.generator.output(0).to_vec(), reports))
    }

    /// Runs the generator on the encoder's current output, row j with the noise of
    /// `indices[j]` for `seed`. Allocates nothing (the benchmark's inner loop).
    pub fn generate_loaded(&mut self, seed: u64, indices: &[u64]) {
        let nz = self.config.generator.nz;
        for (z, &i) in self.generator.input_mut(0).chunks_mut(nz).zip(indices) {
            normal_noise(seed, i, z);
        }
        let emb = self.encoder.output(0);
        self.generator.input_mut(1).copy_from_slice(emb);
        self.generator.run();
    }

    /// Runs the generator on given noise [B, nz] and text embeddings [B, E] (B from their
    /// length); returns the images.
    pub fn generate_from(&mut self, z: &[f32], emb: &[f32]) -> Result<&[f32]> {
        self.generator.run_rows(&[z, emb], "generate_from")
    }

    /// The last generated images.
    pub fn images(&self) -> &[f32] {
        self.generator.output(0)
    }
}
