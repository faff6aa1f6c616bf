//! Auxiliary attribute heads of the encoder trainer: one linear read-out of the joint embedding
//! per attribute (on `shapes`: shape kind and colour), shared by the text side φ(t) and the image
//! side θ(v), trained by softmax cross-entropy beside the DS-SJE hinge.
//!
//! Why: DS-SJE alone is met by memorising each (colour, shape) pair; shape then stays a small,
//! class-specific part of φ(t) that does not carry over to unseen pairs, and G never learns shape
//! from it (docs/RESULTS.md, "Why shapes fail"). A read-out shared by all colours asks for one
//! direction per shape word, in both modalities. The heads are for training only: they are
//! checkpointed (resume is exact) but never exported.

use std::sync::Arc;

use rayon::ThreadPool;

use super::graph::TrainBuilder;
use super::net::TrainNet;
use super::session::{Mode, TrainSession};
use crate::error::{Error, Result};
use crate::model::net::NetBuilder;
use crate::ops::loss::{check_block_labels, softmax_cross_entropy_blocks};
use crate::ops::optim::RmsProp;
use crate::ops::Activation;

/// Parameter prefix of the heads in checkpoints.
pub const HEADS_PREFIX: &str = "attribute_heads";

/// The heads read `SCALE` · x/‖x‖: the DS-SJE text embedding is tiny (norm ≈ 0.2, the hinge's
/// margin met by θ's norm), so raw logits would start at ≈ 0 and learn slowly; on unit rows
/// the attribute must show in the embedding's direction, which is what G is sensitive to.
const SCALE: f32 = 16.0;

/// The heads, their optimizer state and their session (batch: B text rows then B image rows).
pub struct AttributeHeads {
    /// Classes of each attribute, in label order (e.g. [8 shapes, 10 colours]).
    pub sizes: Vec<usize>,
    pub net: TrainNet,
    /// RMSprop running mean of squared gradients.
    pub sq: Vec<f32>,
    session: TrainSession,
    /// Norms of the 2B input rows.
    norms: Vec<f32>,
    /// Gradient of all logits, [2B, Σ sizes].
    d_logits: Vec<f32>,
    labels: Vec<usize>,
}

impl AttributeHeads {
    /// Fresh heads for embeddings of size `e`, batches of `b` pairs.
    pub fn new(sizes: &[usize], e: usize, b: usize, seed: u64, pool: Arc<ThreadPool>) -> Result<AttributeHeads> {
        let k: usize = sizes.iter().sum();
        if sizes.is_empty() || sizes.contains(&0) {
            return Err(Error::Input(format!("attribute heads need attributes of 1 class or more, got {sizes:?}")));
        }
        let mut tb = TrainBuilder::new();
        let x = tb.input(&[e]);
        let y = tb.linear(x, HEADS_PREFIX, None, (e, k), Activation::None)?;
        let net = TrainNet::init_graph(tb.finish(&[y]), seed)?;
        let mut session = TrainSession::new(Arc::clone(&net.graph), 2 * b, pool);
        session.set_input_grad(0, true);
        Ok(AttributeHeads {
            sizes: sizes.to_vec(),
            sq: vec![0.0; net.graph.param_len],
            net,
            session,
            norms: vec![0.0; 2 * b],
            d_logits: vec![0.0; 2 * b * k],
            labels: Vec::with_capacity(2 * b * sizes.len()),
        })
    }

    /// Adds `weight` · Σ_attributes mean cross-entropy of the heads on the text rows `txt` and
    /// image rows `img` ([B, E] each, row b labelled `labels[b·A..(b+1)·A]`) to the gradients
    /// `d_txt` and `d_img`, takes one RMSprop step on the heads at `lr`, and returns the
    /// unweighted loss (mean over rows, summed over attributes).
    pub fn step(
        &mut self,
        (txt, img): (&[f32], &[f32]),
        labels: &[usize],
        weight: f32,
        (d_txt, d_img): (&mut [f32], &mut [f32]),
        lr: f32,
    ) -> Result<f32> {
        let rows = self.session.batch();
        let b = rows / 2;
        check_block_labels(labels, b, &self.sizes, "attribute labels")?;
        let input = self.session.input_mut(0);
        let e = input.len() / rows;
        let sources = txt[..b * e].chunks(e).chain(img[..b * e].chunks(e));
        for ((u, x), n) in input.chunks_mut(e).zip(sources).zip(&mut self.norms) {
            *n = x.iter().map(|v| v * v).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
            u.iter_mut().zip(x).for_each(|(u, &v)| *u = SCALE * v / *n);
        }
        self.session.forward(&self.net.params, &mut self.net.buffers, Mode::Train);
        let loss = self.cross_entropy(labels, weight);
        self.net.zero_grad();
        self.session.backward(&self.net.params, &mut self.net.grads, &self.d_logits);
        let (u, du) = (self.session.input(0), self.session.input_grad(0));
        let targets = d_txt[..b * e].chunks_mut(e).chain(d_img[..b * e].chunks_mut(e));
        for (((d, u), du), &n) in targets.zip(u.chunks(e)).zip(du.chunks(e)).zip(&self.norms) {
            unit_backward(u, du, n, d);
        }
        let opt = RmsProp { lr, alpha: 0.99, eps: 1e-8 };
        opt.step(self.net.params.data_mut(), &self.net.grads, &mut self.sq);
        Ok(loss)
    }

    /// Cross-entropy of each attribute's block of logits; fills `d_logits` (× `weight`).
    fn cross_entropy(&mut self, labels: &[usize], weight: f32) -> f32 {
        // Rows < B are the texts of the pairs, rows ≥ B their images: the labels twice.
        self.labels.clear();
        self.labels.extend_from_slice(labels);
        self.labels.extend_from_slice(labels);
        let loss = softmax_cross_entropy_blocks(self.session.output(0), &self.sizes, &self.labels, &mut self.d_logits);
        self.d_logits.iter_mut().for_each(|d| *d *= weight);
        loss
    }
}

/// Adds to `dx` the gradient through u = SCALE · x/‖x‖ (`n` = ‖x‖):
/// dx = (SCALE/n) (du − û (û·du)), û = u/SCALE.
fn unit_backward(u: &[f32], du: &[f32], n: f32, dx: &mut [f32]) {
    let dot: f32 = u.iter().zip(du).map(|(a, b)| a * b).sum::<f32>() / (SCALE * SCALE);
    for ((d, &ui), &gi) in dx.iter_mut().zip(u).zip(du) {
        *d += SCALE / n * (gi - ui * dot);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::AttributeHeads;

    fn pool() -> Arc<rayon::ThreadPool> {
        Arc::new(rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool"))
    }

    fn random(n: usize, seed: u64) -> Vec<f32> {
        (0..n as u64).map(|i| (crate::rng::mix64(seed * 1_000_003 + i) % 2001) as f32 / 1000.0 - 1.0).collect()
    }

    /// Loss and input gradients at `lr` 0 (the heads stay put).
    fn eval(h: &mut AttributeHeads, txt: &[f32], img: &[f32], labels: &[usize]) -> (f64, Vec<f32>, Vec<f32>) {
        let (mut dt, mut di) = (vec![0.0; txt.len()], vec![0.0; img.len()]);
        let l = h.step((txt, img), labels, 0.5, (&mut dt, &mut di), 0.0).expect("step");
        (0.5 * f64::from(l), dt, di)
    }

    #[test]
    fn input_gradients_match_finite_differences() {
        let (b, e, sizes) = (3, 5, [3, 4]);
        let mut h = AttributeHeads::new(&sizes, e, b, 1, pool()).expect("heads");
        let (txt, img) = (random(b * e, 1), random(b * e, 2));
        let labels = [0, 3, 2, 1, 1, 0];
        let (_, dt, di) = eval(&mut h, &txt, &img, &labels);
        assert!(dt.iter().chain(&di).all(|g| g.is_finite()) && dt.iter().any(|g| g.abs() > 1e-4));
        let step = 1e-2f32;
        for (which, grad) in [(0, &dt), (1, &di)] {
            for i in 0..b * e {
                let mut at = |delta: f32| {
                    let (mut t, mut m) = (txt.clone(), img.clone());
                    [&mut t, &mut m][which][i] += delta;
                    eval(&mut h, &t, &m, &labels).0
                };
                let fd = (at(step) - at(-step)) / (2.0 * f64::from(step));
                let err = (fd - f64::from(grad[i])).abs() / (fd.abs() + 1e-3);
                assert!(err < 2e-2, "input {which} element {i}: analytic {} vs finite difference {fd}", grad[i]);
            }
        }
    }

    #[test]
    fn heads_learn_labels_that_show_in_the_direction() {
        // Attribute 0 is the sign of x₀, attribute 1 that of x₁; the rows' lengths vary widely.
        let (b, e) = (8, 4);
        let mut h = AttributeHeads::new(&[2, 2], e, b, 3, pool()).expect("heads");
        let txt: Vec<f32> = random(b * e, 5).iter().enumerate().map(|(i, v)| v * (1 + i / e) as f32).collect();
        let img = random(b * e, 6);
        let label = |x: &[f32], k: usize| usize::from(x[k] > 0.0);
        let labels: Vec<usize> = (0..b).flat_map(|r| [label(&txt[r * e..], 0), label(&txt[r * e..], 1)]).collect();
        // Image rows get their pair's labels: make them agree.
        let img: Vec<f32> = img
            .chunks(e)
            .zip(labels.chunks(2))
            .flat_map(|(x, l)| [if l[0] == 1 { 1.0 } else { -1.0 }, if l[1] == 1 { 1.0 } else { -1.0 }, x[2], x[3]])
            .collect();
        let (mut dt, mut di) = (vec![0.0; b * e], vec![0.0; b * e]);
        let first = h.step((&txt, &img), &labels, 1.0, (&mut dt, &mut di), 1e-2).expect("step");
        let mut last = first;
        for _ in 0..300 {
            last = h.step((&txt, &img), &labels, 1.0, (&mut dt, &mut di), 1e-2).expect("step");
        }
        assert!(first > 1.0 && last < 0.1, "attribute loss {first} → {last}");
    }

    #[test]
    fn bad_labels_are_rejected() {
        let mut h = AttributeHeads::new(&[2, 3], 4, 2, 0, pool()).expect("heads");
        let x = vec![1.0; 8];
        let (mut dt, mut di) = (vec![0.0; 8], vec![0.0; 8]);
        let err = h.step((&x, &x), &[0, 3, 1, 1], 1.0, (&mut dt, &mut di), 0.0).expect_err("label 3 of 3 classes");
        assert!(err.to_string().contains("out of range"), "{err}");
        assert!(h.step((&x, &x), &[0, 1], 1.0, (&mut dt, &mut di), 0.0).is_err(), "too few labels");
        assert!(AttributeHeads::new(&[2, 0], 4, 2, 0, pool()).is_err(), "an attribute of no class");
    }
}
