//! The frozen text encoder's embeddings of every caption of a dataset, computed once before
//! GAN training (Reed's loader reads them precomputed too), and the per-slot mean of the K
//! drawn captions that the GAN conditions on.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rayon::ThreadPool;

use crate::data::Dataset;
use crate::error::Result;
use crate::graph::{Backend, Session};
use crate::model::encoder::build_encoder;
use crate::model::text::{encode_into, ALPHABET_SIZE};
use crate::model::WeightSet;
use crate::tensor::Tensor;
use crate::weights::{writer, LoadMode, WeightFile};

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
        let texts: Vec<&str> = ds.items().iter().flat_map(|i| i.captions.iter().map(String::as_str)).collect();
        let emb = embed_texts(ws, &texts, pool)?;
        Ok(CaptionTable { dim: ws.config().encoder.embed_dim, offsets: caption_offsets(ds), emb })
    }

    /// `build`, or the embeddings saved in `cache` when it holds these captions embedded by this
    /// encoder (a resumed or repeated run skips the minute of encoder passes); a fresh table is
    /// written there (atomically) for the next run. Returns the table and whether the cache served
    /// it. A cache that cannot be read or written is only a lost shortcut.
    pub fn build_cached(
        ws: &WeightSet,
        ds: &Dataset,
        pool: Arc<ThreadPool>,
        cache: &Path,
    ) -> Result<(CaptionTable, bool)> {
        let key = cache_key(ws, ds);
        let dim = ws.config().encoder.embed_dim;
        let offsets = caption_offsets(ds);
        let rows = offsets[offsets.len() - 1];
        if let Some(emb) = read_cache(cache, &key, rows * dim) {
            return Ok((CaptionTable { dim, offsets, emb }, true));
        }
        let table = CaptionTable::build(ws, ds, pool)?;
        let meta = BTreeMap::from([(CACHE_KEY.to_string(), key)]);
        // Best effort: the run goes on without the shortcut.
        let _ =
            writer::write(cache, &[("embeddings".into(), Tensor::from_f32(&[rows, dim], table.emb.clone()))], &meta);
        Ok((table, false))
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

/// Where each item's captions start among all of the dataset's, in order, and the total last.
fn caption_offsets(ds: &Dataset) -> Vec<usize> {
    std::iter::once(0)
        .chain(ds.items().iter().scan(0, |n, item| {
            *n += item.captions.len();
            Some(*n)
        }))
        .collect()
}

/// The cache's file name in a training run's output folder.
pub const CACHE_FILE: &str = "caption-embeddings.safetensors";

/// Metadata key of the cache's identity.
const CACHE_KEY: &str = "caption_embeddings_key";

/// What the embeddings depend on: the encoder file's bytes, the text length, and every caption
/// in order (64-bit FNV-1a over each, lengths included so runs cannot shift between fields).
fn cache_key(ws: &WeightSet, ds: &Dataset) -> String {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    match ws.file() {
        Some(f) => h.field(f.bytes()),
        None => h.field(b"in-memory weights"),
    }
    h.field(&(ws.config().text.doc_length as u64).to_le_bytes());
    for item in ds.items() {
        h.field(&(item.captions.len() as u64).to_le_bytes());
        item.captions.iter().for_each(|c| h.field(c.as_bytes()));
    }
    format!("fnv1a64:{:016x}", h.0)
}

/// 64-bit FNV-1a.
struct Fnv(u64);

impl Fnv {
    /// Hashes `bytes` preceded by their length.
    fn field(&mut self, bytes: &[u8]) {
        for &b in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// The cached embeddings, when `path` is a cache for `key` holding `len` values.
fn read_cache(path: &Path, key: &str, len: usize) -> Option<Vec<f32>> {
    let f = WeightFile::open(path, LoadMode::Read).ok()?;
    if f.metadata(CACHE_KEY) != Some(key) {
        return None;
    }
    let emb = f.f32_data("embeddings").ok()?.into_owned();
    (emb.len() == len).then_some(emb)
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
