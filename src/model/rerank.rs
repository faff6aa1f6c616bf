//! Best of K: draw K images for a caption and keep the one the model's own discriminator rates
//! highest as a real image of that caption, D(x, φ(t)) (discriminator rejection sampling, Azadi
//! et al. 2019, as a ranking; DALL·E ranked by CLIP the same way). `eval`'s judge is never asked.
//!
//! Image j of a caption draws its candidates from noise indices j·K … j·K+K−1, so an image
//! never depends on the batch it was made in, and K = 1 is plain generation.

use std::sync::Arc;

use rayon::ThreadPool;

use super::discriminator::build_discriminator;
use super::pipeline::IMAGE_LEN;
use super::WeightSet;
use crate::error::{Error, Result};
use crate::graph::{Backend, Session};

/// Most candidates per image (`--rerank`).
pub const MAX_CANDIDATES: usize = 64;

/// Scores images against their captions' embeddings with D.
pub struct Reranker {
    d: Session,
}

impl Reranker {
    /// D of `ws` (the weights must hold the discriminator), on the CPU.
    pub fn new(ws: &WeightSet, pool: Arc<ThreadPool>) -> Result<Reranker> {
        let d = Session::new(Arc::new(build_discriminator(ws)?), 1, pool, Backend::Cpu);
        Ok(Reranker { d })
    }

    /// D's logit for each image row i of `images` [N, 3, 64, 64] with text row i of `text`
    /// [N, E].
    pub fn scores(&mut self, images: &[f32], text: &[f32]) -> Result<Vec<f32>> {
        Ok(self.d.run_rows(&[images, text], "rerank")?.to_vec())
    }
}

/// Noise index of candidate `c` of `k` for image `index`.
pub fn candidate_index(index: u64, k: usize, c: usize) -> Result<u64> {
    index
        .checked_mul(k as u64)
        .and_then(|i| i.checked_add(c as u64))
        .ok_or_else(|| Error::Input(format!("noise index {index} × {k} candidates does not fit in 64 bits")))
}

/// The best of `k` candidates for each row. `draw(indices)` generates one image per row with
/// the given noise indices and returns them [B, 3, 64, 64]; `text` holds the rows' caption
/// embeddings [B, E]. Returns the kept images and, per row, the candidate kept. `draw`'s own
/// error type passes through (this module's errors convert into it).
pub fn best_of<F, E>(
    reranker: &mut Reranker,
    text: &[f32],
    indices: &[u64],
    k: usize,
    mut draw: F,
) -> std::result::Result<(Vec<f32>, Vec<usize>), E>
where
    F: FnMut(&[u64]) -> std::result::Result<Vec<f32>, E>,
    E: From<Error>,
{
    if k == 0 || k > MAX_CANDIDATES {
        return Err(Error::Input(format!("rerank: {k} candidates (1 to {MAX_CANDIDATES})")).into());
    }
    let rows = indices.len();
    let mut kept = vec![0.0f32; rows * IMAGE_LEN];
    let mut best = vec![(f32::NEG_INFINITY, 0usize); rows];
    for c in 0..k {
        let cand: Vec<u64> = indices.iter().map(|&i| candidate_index(i, k, c)).collect::<Result<_>>()?;
        let images = draw(&cand)?;
        let scores = if k == 1 { vec![0.0; rows] } else { reranker.scores(&images, text)? };
        for (r, (&s, img)) in scores.iter().zip(images.chunks(IMAGE_LEN)).enumerate() {
            // `>` keeps the first of equal scores; a NaN score never beats a number.
            let s = if s.is_nan() { f32::NEG_INFINITY } else { s };
            if c == 0 || s > best[r].0 {
                best[r] = (s, c);
                kept[r * IMAGE_LEN..(r + 1) * IMAGE_LEN].copy_from_slice(img);
            }
        }
    }
    Ok((kept, best.into_iter().map(|(_, c)| c).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::thread_pool;
    use crate::model::config::ModelConfig;
    use crate::model::spec::Network;
    use crate::model::synthetic::synthetic_weights;
    use crate::rng::normal_noise;

    /// The `shapes` config's embedding size.
    const E: usize = 256;

    fn reranker() -> Reranker {
        let cfg = ModelConfig::builtin("shapes").expect("config");
        assert_eq!(cfg.encoder.embed_dim, E);
        let nets = [Network::Discriminator];
        let ws = WeightSet::from_tensors(cfg.clone(), &nets, synthetic_weights(&cfg, &nets)).expect("weights");
        Reranker::new(&ws, thread_pool(2).expect("pool")).expect("D")
    }

    /// A deterministic image per noise index, as G gives: values in [-1, 1].
    fn image_of(index: u64) -> Vec<f32> {
        let mut v = vec![0.0f32; IMAGE_LEN];
        normal_noise(11, index, &mut v);
        v.iter_mut().for_each(|x| *x = x.tanh());
        v
    }

    fn draw(cand: &[u64]) -> Result<Vec<f32>> {
        Ok(cand.iter().flat_map(|&i| image_of(i)).collect())
    }

    fn texts(rows: usize) -> Vec<f32> {
        let mut t = vec![0.0f32; rows * E];
        normal_noise(5, 0, &mut t);
        t
    }

    #[test]
    fn keeps_the_candidate_with_the_highest_score() {
        let mut r = reranker();
        let (k, indices) = (5, [0u64, 3, 7]);
        let text = texts(indices.len());
        let (kept, chosen) = best_of(&mut r, &text, &indices, k, draw).expect("best of");
        for (row, &i) in indices.iter().enumerate() {
            let t = &text[row * E..(row + 1) * E];
            let scores: Vec<f32> = (0..k)
                .map(|c| r.scores(&image_of(candidate_index(i, k, c).expect("index")), t).expect("score")[0])
                .collect();
            let best = (0..k).max_by(|&a, &b| scores[a].total_cmp(&scores[b])).expect("k > 0");
            assert!(scores.iter().any(|&s| s != scores[0]), "candidates must differ: {scores:?}");
            assert_eq!(chosen[row], best, "row {row}: {scores:?}");
            let want = image_of(candidate_index(i, k, best).expect("index"));
            assert_eq!(&kept[row * IMAGE_LEN..(row + 1) * IMAGE_LEN], want.as_slice());
        }
    }

    #[test]
    fn an_image_does_not_depend_on_its_batch() {
        let mut r = reranker();
        let (k, indices) = (4, [2u64, 9]);
        let text = texts(2);
        let (both, _) = best_of(&mut r, &text, &indices, k, draw).expect("batch of two");
        for row in 0..2 {
            let t = &text[row * E..(row + 1) * E];
            let (alone, _) = best_of(&mut r, t, &indices[row..row + 1], k, draw).expect("alone");
            assert_eq!(alone.as_slice(), &both[row * IMAGE_LEN..(row + 1) * IMAGE_LEN]);
        }
    }

    #[test]
    fn one_candidate_is_plain_generation() {
        let mut r = reranker();
        let (kept, chosen) = best_of(&mut r, &texts(2), &[4, 6], 1, draw).expect("k = 1");
        assert_eq!(kept, draw(&[4, 6]).expect("draw"));
        assert_eq!(chosen, vec![0, 0]);
    }

    #[test]
    fn scores_read_the_caption_and_are_per_row() {
        let mut r = reranker();
        let img = image_of(1);
        let (t, u) = (texts(1), texts(2)[E..].to_vec());
        let (a, b) = (r.scores(&img, &t).expect("a")[0], r.scores(&img, &u).expect("b")[0]);
        assert!(a.is_finite() && b.is_finite() && a != b, "D must read the text: {a} {b}");
        // Two rows at once give each row's own score.
        let both: Vec<f32> = img.iter().chain(&image_of(2)).copied().collect();
        let tt: Vec<f32> = t.iter().chain(&u).copied().collect();
        let pair = r.scores(&both, &tt).expect("pair");
        let second = r.scores(&image_of(2), &u).expect("second")[0];
        assert!(
            (pair[0] - a).abs() <= 1e-4 * a.abs().max(1.0) && (pair[1] - second).abs() <= 1e-4 * second.abs().max(1.0)
        );
    }

    #[test]
    fn bad_requests_are_errors() {
        let mut r = reranker();
        assert!(r.scores(&image_of(0), &texts(2)).is_err(), "one image, two texts");
        assert!(r.scores(&image_of(0)[1..], &texts(1)).is_err(), "a partial image");
        assert!(r.scores(&[], &[]).is_err(), "no rows");
        assert!(best_of(&mut r, &texts(1), &[0], 0, draw).is_err(), "no candidates");
        assert!(best_of(&mut r, &texts(1), &[0], MAX_CANDIDATES + 1, draw).is_err(), "too many");
        assert!(candidate_index(u64::MAX / 2, 4, 0).is_err(), "index overflow");
        assert_eq!(candidate_index(3, 4, 2).expect("fits"), 14);
        // A drawing error passes through unchanged.
        let fails = |_: &[u64]| -> Result<Vec<f32>> { Err(Error::Input("drawing failed".into())) };
        let e = best_of(&mut r, &texts(1), &[0], 2, fails).err().map(|e| e.to_string());
        assert!(e.is_some_and(|m| m.contains("drawing failed")));
    }
}
