//! The frozen text encoder's embeddings of every caption of a dataset, computed once before
//! GAN training (Reed's loader reads them precomputed too), and the per-slot mean of the K
//! drawn captions that the GAN conditions on.

use std::sync::Arc;

use rayon::ThreadPool;

use crate::data::Dataset;
use crate::error::Result;
use crate::graph::{Backend, Session};
use crate::model::encoder::build_encoder;
use crate::model::text::{encode_into, ALPHABET_SIZE};
use crate::model::WeightSet;

/// Batch of the encoder passes.
const BATCH: usize = 64;

/// Embeddings of every caption of every item: item i's captions are rows offsets[i]..offsets[i+1].
pub struct CaptionTable {
    pub dim: usize,
    pub offsets: Vec<usize>,
    pub emb: Vec<f32>,
}

impl CaptionTable {
    /// Embeds every caption of `ds` with the encoder of `ws`.
    pub fn build(ws: &WeightSet, ds: &Dataset, pool: Arc<ThreadPool>) -> Result<CaptionTable> {
        let mut offsets = vec![0];
        let mut texts: Vec<&str> = Vec::new();
        for item in ds.items() {
            texts.extend(item.captions.iter().map(String::as_str));
            offsets.push(texts.len());
        }
        let emb = embed_texts(ws, &texts, pool)?;
        Ok(CaptionTable { dim: ws.config().encoder.embed_dim, offsets, emb })
    }

    /// Embedding of caption `c` of item `item` (indices wrap like the sampler's).
    pub fn get(&self, item: usize, c: usize) -> &[f32] {
        let (a, b) = (self.offsets[item], self.offsets[item + 1]);
        let row = a + c % (b - a).max(1);
        &self.emb[row * self.dim..(row + 1) * self.dim]
    }

    /// out[slot] = mean of the embeddings of `ids` (K per slot) of item `items[slot]`.
    pub fn mean_into(&self, items: &[usize], ids: &[u32], k: usize, out: &mut [f32]) {
        for (slot, o) in out.chunks_mut(self.dim).enumerate().take(items.len()) {
            o.fill(0.0);
            for &c in &ids[slot * k..(slot + 1) * k] {
                o.iter_mut().zip(self.get(items[slot], c as usize)).for_each(|(a, &v)| *a += v);
            }
            o.iter_mut().for_each(|a| *a /= k as f32);
        }
    }
}

/// Embeds `texts` with the encoder of `ws` (inference graph, batches of 64): [N, E].
pub fn embed_texts(ws: &WeightSet, texts: &[&str], pool: Arc<ThreadPool>) -> Result<Vec<f32>> {
    let graph = Arc::new(build_encoder(ws)?);
    let mut s = Session::new(graph, BATCH, pool, Backend::Cpu);
    let (l, dim) = (ws.config().text.doc_length, ws.config().encoder.embed_dim);
    let mut emb = Vec::with_capacity(texts.len() * dim);
    for chunk in texts.chunks(BATCH) {
        let input = s.input_mut(0);
        input.fill(0.0);
        for (t, o) in chunk.iter().zip(input.chunks_mut(ALPHABET_SIZE * l)) {
            encode_into(t, l, o);
        }
        s.run();
        emb.extend_from_slice(&s.output(0)[..chunk.len() * dim]);
    }
    Ok(emb)
}
