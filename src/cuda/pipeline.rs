//! Caption → image on the GPU: the encoder and generator graphs as CUDA sessions for a fixed
//! batch, the one-hot captions uploaded, the embedding handed from the encoder to G on the
//! device; the noise is the CPU's Philox stream (image j of seed s gets z(s, j) on both). The
//! benchmark's fixed-shape forward can be captured as CUDA graphs and replayed (`capture`).

use std::sync::Arc;

use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::CudaGraph;

use super::{driver_err, CudaDevice, CudaSession};
use crate::error::{Error, Result};
use crate::model::config::ModelConfig;
use crate::model::encoder::build_encoder;
use crate::model::generator::build_generator;
use crate::model::pipeline::IMAGE_LEN;
use crate::model::text::{check_caption, encode_indices, CaptionReport, ALPHABET_SIZE};
use crate::model::WeightSet;
use crate::rng::normal_noise;

/// The text-to-image pipeline on one GPU, planned for `batch` captions per call.
pub struct CudaTextToImage {
    config: ModelConfig,
    encoder: CudaSession,
    generator: CudaSession,
    /// Each caption position's alphabet index (host side, and on the device: what a run
    /// uploads; the one-hot rows are made on the device, inside the captured graph).
    indices: Vec<f32>,
    indices_dev: super::Buf,
    z: Vec<f32>,
    /// `replay` and `replay_generator` captured as CUDA graphs (`capture`), with their seed.
    graphs: Option<Captured>,
}

/// The fixed-shape forward as two CUDA graphs: the whole of `replay` (encoder, embedding copy,
/// device noise, G) and G alone with its noise. Launching one re-runs every kernel on the
/// buffers they were captured with: the loaded captions, fresh results in the same places.
struct Captured {
    seed: u64,
    full: CudaGraph,
    generator: CudaGraph,
}

impl CudaTextToImage {
    /// Uploads the encoder and generator of `ws` for batches of up to `batch` captions.
    pub fn new(dev: Arc<CudaDevice>, ws: &WeightSet, batch: usize) -> Result<CudaTextToImage> {
        let batch = batch.max(1);
        let encoder = CudaSession::new(Arc::clone(&dev), Arc::new(build_encoder(ws)?), batch)?;
        let generator = CudaSession::new(Arc::clone(&dev), Arc::new(build_generator(ws)?), batch)?;
        let indices = vec![-1.0; batch * ws.config().text.doc_length];
        let indices_dev = dev.upload(&indices)?;
        let z = vec![0.0; batch * ws.config().generator.nz];
        Ok(CudaTextToImage { config: ws.config().clone(), encoder, generator, indices, indices_dev, z, graphs: None })
    }

    pub fn batch(&self) -> usize {
        self.encoder.batch()
    }

    /// The convolutions' arithmetic in both networks (f32 unless set: `Precision`); forgets any
    /// captured graph, which holds the kernels it was captured with.
    pub fn set_precision(&mut self, precision: super::Precision) {
        self.encoder.set_precision(precision);
        self.generator.set_precision(precision);
        self.graphs = None;
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
        self.indices.fill(-1.0);
        let reports = captions.iter().zip(self.indices.chunks_mut(l)).map(|(c, o)| encode_indices(c, l, o)).collect();
        let nz = self.config.generator.nz;
        self.z.fill(0.0);
        for (z, &i) in self.z.chunks_mut(nz).zip(indices) {
            normal_noise(seed, i, z);
        }
        let stream = std::sync::Arc::clone(self.encoder.device().stream());
        stream.memcpy_htod(&self.indices, &mut self.indices_dev).map_err(driver_err("upload captions"))?;
        self.generator.set_input(0, &self.z)?;
        self.captions_to_rows()?;
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

    /// The encoder's one-hot input from the uploaded caption indices.
    fn captions_to_rows(&mut self) -> Result<()> {
        let dev = Arc::clone(self.encoder.device());
        let dims = (self.batch(), ALPHABET_SIZE, self.config.text.doc_length);
        dev.onehot_fwd(&self.indices_dev, dims, self.encoder.input_buf_mut(0)?)
    }

    /// Runs encoder and G on the loaded captions (their indices: the one-hot rows are made
    /// here), with z for images 0..batch of `seed` drawn on the device, copying nothing back
    /// (the benchmark's replay loop; `synchronize` to time it).
    pub fn replay(&mut self, seed: u64) -> Result<()> {
        self.captions_to_rows()?;
        self.encoder.run()?;
        self.embedding_to_generator()?;
        self.replay_generator(seed)
    }

    /// Captures `replay(seed)` and `replay_generator(seed)` as CUDA graphs (nothing runs while
    /// capturing), for `launch_graph` to replay with one launch each instead of one per kernel.
    /// The graphs read the session's input buffers, so later `generate` calls (which reload
    /// them) are seen by later launches; the seed is fixed at capture.
    pub fn capture(&mut self, seed: u64) -> Result<()> {
        self.graphs = None;
        let full = self.capture_one(|t| t.replay(seed))?;
        let generator = self.capture_one(|t| t.replay_generator(seed))?;
        self.graphs = Some(Captured { seed, full, generator });
        Ok(())
    }

    fn capture_one(&mut self, enqueue: impl FnOnce(&mut Self) -> Result<()>) -> Result<CudaGraph> {
        let stream = Arc::clone(self.encoder.device().stream());
        stream
            .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(driver_err("begin capture"))?;
        let enqueued = enqueue(self);
        // The capture is ended whatever happened, so the stream is usable again.
        let graph = stream.end_capture(CUgraphInstantiate_flags(0)).map_err(driver_err("end capture"));
        enqueued?;
        let graph = graph?.ok_or_else(|| Error::Device("CUDA graph capture was invalidated".into()))?;
        graph.upload().map_err(driver_err("graph upload"))?;
        Ok(graph)
    }

    /// The seed the graphs were captured with (None before `capture`).
    pub fn captured_seed(&self) -> Option<u64> {
        self.graphs.as_ref().map(|g| g.seed)
    }

    /// Enqueues the captured whole forward (`generator_only`: G and its noise alone).
    pub fn launch_graph(&self, generator_only: bool) -> Result<()> {
        let g = self.graphs.as_ref().ok_or_else(|| Error::Device("no CUDA graph captured yet".into()))?;
        let graph = if generator_only { &g.generator } else { &g.full };
        graph.launch().map_err(driver_err("graph launch"))
    }

    /// Downloads the images of the last run or launch ([batch, 3, 64, 64], waits for the stream).
    pub fn images(&self) -> Result<Vec<f32>> {
        self.generator.output(0)
    }

    /// Waits for everything enqueued.
    pub fn synchronize(&self) -> Result<()> {
        self.encoder.device().synchronize()
    }
}
