//! The text encoder's trainer (DS-SJE, Reed et al. CVPR 2016): batches of distinct classes, one
//! image and one caption each; the char-CNN-RNN and a small image CNN (θ, trained jointly since
//! we cannot ship GoogLeNet features) are scored by s_ij = θ(v_i)·φ(t_j) under the symmetric
//! hinge; RMSprop, lr ×0.98 per epoch. Also the CVPR paper's zero-shot evaluation.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rayon::ThreadPool;
use serde::{Deserialize, Serialize};

use super::attributes::AttributeHeads;
use super::checkpoint::{load_net, save_net};
use super::graph::{TrainBuilder, TrainGraph};
use super::net::{train_graph, TrainNet};
use super::session::{Mode, TrainSession};
use crate::data::{DataResult, Dataset, DecodeLimits, Split};
use crate::error::{Error, Result};
use crate::graph::ValueId;
use crate::model::config::ModelConfig;
use crate::model::net::{image_to_vector, NetBuilder};
use crate::model::spec::Network;
use crate::model::text::{encode_into, ALPHABET_SIZE};
use crate::ops::loss::{sje_loss, sje_loss_cosine};
use crate::ops::optim::{lr_exponential, RmsProp};
use crate::tensor::DType;

/// Length of one [3, 64, 64] image.
use crate::model::pipeline::IMAGE_LEN;

/// Width of the image CNN's first layer.
pub const IMAGE_NF: usize = 32;

/// The image side θ: four strided convolutions 64→4 (BN and LeakyReLU as D's) and a 4×4
/// convolution to the embedding size. Parameters are named `image_encoder.*`.
pub fn image_encoder<B: NetBuilder>(b: &mut B, embed: usize) -> Result<(ValueId, ValueId)> {
    image_to_vector(b, "image_encoder", IMAGE_NF, "conv4", embed)
}

/// The image CNN's training graph.
pub fn image_encoder_graph(embed: usize) -> Result<TrainGraph> {
    let mut b = TrainBuilder::new();
    let (_, out) = image_encoder(&mut b, embed)?;
    Ok(b.finish(&[out]))
}

/// Settings of an encoder run (saved in checkpoints).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SjeOptions {
    /// Distinct classes per batch (40 in the paper).
    pub batch: usize,
    pub lr: f32,
    /// ×this per epoch (0.98).
    pub lr_decay: f32,
    /// Iterations per epoch (the number of training classes in the paper).
    pub iters_per_epoch: usize,
    pub seed: u64,
    /// Scores s_ij = scale · cos(θ(v_i), φ(t_j)) instead of the paper's dot product when > 0
    /// (`sje_loss_cosine`): the margins must then come from angles between classes.
    #[serde(default)]
    pub cosine_scale: f32,
    /// Weight of the auxiliary attribute cross-entropy (0: DS-SJE alone, the paper's loss).
    #[serde(default)]
    pub attribute_weight: f32,
    /// Classes of each labelled attribute (on `shapes`: [8 shapes, 10 colours]).
    #[serde(default)]
    pub attribute_sizes: Vec<usize>,
}

impl Default for SjeOptions {
    fn default() -> Self {
        SjeOptions {
            batch: 40,
            lr: 7e-4,
            lr_decay: 0.98,
            iters_per_epoch: 150,
            seed: 0,
            cosine_scale: 0.0,
            attribute_weight: 0.0,
            attribute_sizes: Vec::new(),
        }
    }
}

/// Text encoder φ, image encoder θ, their RMSprop state and sessions.
pub struct SjeTrainer {
    pub config: ModelConfig,
    pub options: SjeOptions,
    pub text: TrainNet,
    pub image: TrainNet,
    pub text_sq: Vec<f32>,
    pub image_sq: Vec<f32>,
    pub step: u64,
    text_s: TrainSession,
    image_s: TrainSession,
    d_text: Vec<f32>,
    d_img: Vec<f32>,
    /// Normalised embeddings and their gradients (cosine scores only).
    cosine_scratch: Vec<f32>,
    /// Attribute read-outs (when `attribute_weight` > 0).
    pub heads: Option<AttributeHeads>,
}

impl SjeTrainer {
    /// Fresh networks (Torch default init, as the paper's U(±0.08) is close for these sizes).
    pub fn new(config: &ModelConfig, options: SjeOptions, pool: Arc<ThreadPool>) -> Result<SjeTrainer> {
        let text = TrainNet::init_graph(train_graph(config, Network::Encoder)?, options.seed)?;
        let image = TrainNet::init_graph(image_encoder_graph(config.encoder.embed_dim)?, options.seed.wrapping_add(7))?;
        SjeTrainer::from_nets(config, options, text, image, pool)
    }

    pub fn from_nets(
        config: &ModelConfig,
        options: SjeOptions,
        text: TrainNet,
        image: TrainNet,
        pool: Arc<ThreadPool>,
    ) -> Result<SjeTrainer> {
        let b = options.batch;
        if b < 2 {
            return Err(Error::Input("the encoder batch needs at least 2 classes".into()));
        }
        let e = config.encoder.embed_dim;
        let cosine_scratch = vec![0.0; if options.cosine_scale > 0.0 { 4 * b * e } else { 0 }];
        let heads = match options.attribute_weight > 0.0 {
            true => Some(AttributeHeads::new(
                &options.attribute_sizes,
                e,
                b,
                options.seed.wrapping_add(13),
                Arc::clone(&pool),
            )?),
            false => None,
        };
        Ok(SjeTrainer {
            config: config.clone(),
            text_s: TrainSession::new(Arc::clone(&text.graph), b, Arc::clone(&pool)),
            image_s: TrainSession::new(Arc::clone(&image.graph), b, pool),
            text_sq: vec![0.0; text.graph.param_len],
            image_sq: vec![0.0; image.graph.param_len],
            text,
            image,
            options,
            step: 0,
            d_text: vec![0.0; b * e],
            d_img: vec![0.0; b * e],
            cosine_scratch,
            heads,
        })
    }

    /// Learning rate at the current step.
    pub fn lr(&self) -> f32 {
        let epoch = (self.step / self.options.iters_per_epoch.max(1) as u64) as usize;
        lr_exponential(self.options.lr, epoch, self.options.lr_decay)
    }

    /// One step on B (image, caption) pairs of distinct classes, `labels` holding each pair's
    /// attributes when the trainer has attribute heads (else empty); returns the DS-SJE loss and
    /// the attribute loss (0 without heads).
    pub fn step(&mut self, images: &[f32], captions: &[String], labels: &[usize]) -> Result<(f32, f32)> {
        let (b, e, l) = (self.options.batch, self.config.encoder.embed_dim, self.config.text.doc_length);
        if images.len() != b * IMAGE_LEN || captions.len() != b {
            return Err(Error::Input(format!("encoder batch must hold {b} 64×64 images and captions")));
        }
        for (c, o) in captions.iter().zip(self.text_s.input_mut(0).chunks_mut(ALPHABET_SIZE * l)) {
            encode_into(c, l, o);
        }
        self.image_s.input_mut(0).copy_from_slice(images);
        self.text_s.forward(&self.text.params, &mut self.text.buffers, Mode::Train);
        self.image_s.forward(&self.image.params, &mut self.image.buffers, Mode::Train);
        let (img, txt) = (self.image_s.output(0), self.text_s.output(0));
        let loss = if self.options.cosine_scale > 0.0 {
            let scratch = &mut self.cosine_scratch;
            sje_loss_cosine(img, txt, (b, e), self.options.cosine_scale, scratch, &mut self.d_img, &mut self.d_text)
        } else {
            sje_loss(img, txt, b, e, &mut self.d_img, &mut self.d_text)
        };
        let lr = self.lr();
        let attribute_loss = match &mut self.heads {
            Some(h) => {
                let d = (&mut self.d_text[..], &mut self.d_img[..]);
                h.step((txt, img), labels, self.options.attribute_weight, d, lr)?
            }
            None => 0.0,
        };
        self.text.zero_grad();
        self.image.zero_grad();
        self.text_s.backward(&self.text.params, &mut self.text.grads, &self.d_text);
        self.image_s.backward(&self.image.params, &mut self.image.grads, &self.d_img);
        let opt = RmsProp { lr, alpha: 0.99, eps: 1e-8 };
        opt.step(self.text.params.data_mut(), &self.text.grads, &mut self.text_sq);
        opt.step(self.image.params.data_mut(), &self.image.grads, &mut self.image_sq);
        self.step += 1;
        Ok((loss, attribute_loss))
    }
}

/// Zero-shot results on held-out classes (the CVPR protocol).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ZeroShot {
    /// Fraction of held-out images whose nearest class vector is their own class.
    pub top1: f32,
    /// Mean over classes of the fraction of the class vector's 50 best images that are its own.
    pub precision_at_50: f32,
    pub classes: usize,
    pub images: usize,
}

/// Zero-shot top-1 and precision@50: class vector = mean text embedding of all its captions;
/// images scored by θ(v)·class, or by their cosine when `cosine` (encoders trained on cosine
/// scores).
pub fn zero_shot(
    text_emb: &[f32],
    caption_class: &[usize],
    image_emb: &[f32],
    image_class: &[usize],
    classes: &[usize],
    (e, cosine): (usize, bool),
) -> ZeroShot {
    let k = classes.len();
    let mut centroids = vec![0.0f32; k * e];
    let mut counts = vec![0usize; k];
    for (t, &c) in text_emb.chunks(e).zip(caption_class) {
        if let Some(ci) = classes.iter().position(|&x| x == c) {
            centroids[ci * e..(ci + 1) * e].iter_mut().zip(t).for_each(|(a, &v)| *a += v);
            counts[ci] += 1;
        }
    }
    for (ci, n) in counts.iter().enumerate() {
        centroids[ci * e..(ci + 1) * e].iter_mut().for_each(|a| *a /= (*n).max(1) as f32);
    }
    let mut image_emb = std::borrow::Cow::Borrowed(image_emb);
    if cosine {
        unit_rows(&mut centroids, e);
        unit_rows(image_emb.to_mut(), e);
    }
    let score =
        |img: &[f32], ci: usize| -> f32 { img.iter().zip(&centroids[ci * e..(ci + 1) * e]).map(|(a, b)| a * b).sum() };
    let imgs: Vec<&[f32]> = image_emb.chunks(e).collect();
    let mut correct = 0;
    for (img, &c) in imgs.iter().zip(image_class) {
        let best = (0..k).max_by(|&a, &b| score(img, a).total_cmp(&score(img, b)));
        correct += usize::from(best.map(|ci| classes[ci]) == Some(c));
    }
    let mut prec = 0.0f32;
    for (ci, &class) in classes.iter().enumerate() {
        let mut order: Vec<usize> = (0..imgs.len()).collect();
        order.sort_by(|&a, &b| score(imgs[b], ci).total_cmp(&score(imgs[a], ci)));
        let top = order.len().min(50);
        let hits = order[..top].iter().filter(|&&i| image_class[i] == class).count();
        prec += hits as f32 / top.max(1) as f32;
    }
    ZeroShot {
        top1: correct as f32 / imgs.len().max(1) as f32,
        precision_at_50: prec / k.max(1) as f32,
        classes: k,
        images: imgs.len(),
    }
}

/// Scales every row of length `e` to unit length (zero rows stay zero).
fn unit_rows(v: &mut [f32], e: usize) {
    for r in v.chunks_mut(e) {
        let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
        if n > 0.0 {
            r.iter_mut().for_each(|x| *x /= n);
        }
    }
}

/// Held-out data of the zero-shot evaluation (every caption and image of the held-out
/// classes), loaded once.
pub struct HeldOut {
    captions: Vec<f32>,
    caption_class: Vec<usize>,
    images: Vec<f32>,
    image_class: Vec<usize>,
    classes: Vec<usize>,
    /// Score by cosine (for an encoder trained on cosine scores).
    pub cosine: bool,
}

impl HeldOut {
    pub fn load(ds: &Dataset, cfg: &ModelConfig) -> DataResult<HeldOut> {
        let l = cfg.text.doc_length;
        let per = ALPHABET_SIZE * l;
        let (mut captions, mut caption_class, mut images, mut image_class) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in ds.item_ids(Split::HeldOut) {
            let item = &ds.items()[i];
            for c in &item.captions {
                let start = captions.len();
                captions.resize(start + per, 0.0);
                encode_into(c, l, &mut captions[start..]);
                caption_class.push(item.class);
            }
            let img = ds.load_resized(i, 64, &DecodeLimits::default())?;
            let start = images.len();
            images.resize(start + IMAGE_LEN, 0.0);
            img.to_chw(&mut images[start..]);
            image_class.push(item.class);
        }
        Ok(HeldOut {
            captions,
            caption_class,
            images,
            image_class,
            classes: ds.class_ids(Split::HeldOut),
            cosine: false,
        })
    }

    /// Zero-shot scores of a text encoder and an image encoder (both run in eval mode).
    pub fn evaluate(
        &self,
        text: &mut TrainNet,
        image: &mut TrainNet,
        cfg: &ModelConfig,
        pool: &Arc<ThreadPool>,
    ) -> ZeroShot {
        let ie = self.embed_images(image, pool);
        self.evaluate_embedded(text, &ie, cfg, pool)
    }

    /// `evaluate` for image embeddings already computed by `embed_images`.
    pub fn evaluate_embedded(
        &self,
        text: &mut TrainNet,
        image_emb: &[f32],
        cfg: &ModelConfig,
        pool: &Arc<ThreadPool>,
    ) -> ZeroShot {
        let mut ts = TrainSession::new(Arc::clone(&text.graph), 64, Arc::clone(pool));
        let te = eval_outputs(text, &mut ts, &self.captions, ALPHABET_SIZE * cfg.text.doc_length);
        let (e, cosine) = (cfg.encoder.embed_dim, self.cosine);
        zero_shot(&te, &self.caption_class, image_emb, &self.image_class, &self.classes, (e, cosine))
    }

    /// θ(v) of every held-out image (eval mode), in `image_classes` order.
    pub fn embed_images(&self, image: &mut TrainNet, pool: &Arc<ThreadPool>) -> Vec<f32> {
        let mut is = TrainSession::new(Arc::clone(&image.graph), 64, Arc::clone(pool));
        eval_outputs(image, &mut is, &self.images, IMAGE_LEN)
    }

    /// The class of each held-out image.
    pub fn image_classes(&self) -> &[usize] {
        &self.image_class
    }
}

/// Format tag of a standalone image encoder θ file (written beside encoder.safetensors).
pub const IMAGE_ENCODER_FORMAT: &str = "text2img-image-encoder/1";

/// Metadata key of a θ file naming how pairs were scored in training ("dot" or "cosine").
const SCORES_KEY: &str = "scores";

/// Writes θ alone (f16 or f32), with the config it was trained with and its scoring (`cosine`:
/// trained on cosine scores, so zero-shot ranks by cosine too).
pub fn save_image_encoder(path: &Path, image: &TrainNet, cfg: &ModelConfig, dtype: DType, cosine: bool) -> Result<()> {
    let scores = if cosine { "cosine" } else { "dot" };
    let meta = BTreeMap::from([("config".to_string(), cfg.to_json()), (SCORES_KEY.to_string(), scores.to_string())]);
    save_net(path, IMAGE_ENCODER_FORMAT, image, dtype, &meta)
}

/// Reads θ for an encoder of embedding size `embed`; also whether it was trained on cosine
/// scores (files without the note were trained on dot products).
pub fn load_image_encoder(path: &Path, embed: usize) -> Result<(TrainNet, bool)> {
    let mut net = TrainNet::init_graph(image_encoder_graph(embed)?, 0)?;
    let meta = load_net(path, IMAGE_ENCODER_FORMAT, &mut net)?;
    Ok((net, meta.get(SCORES_KEY).map(String::as_str) == Some("cosine")))
}

/// Captions used to measure the embedding scale: the first of at most this many training items.
const SCALE_CAPTIONS: usize = 2000;

/// RMS length of φ(t) over training captions (the first caption of up to 2,000 items spread
/// over the training split).
pub fn training_embedding_rms(ds: &Dataset, text: &mut TrainNet, cfg: &ModelConfig, pool: &Arc<ThreadPool>) -> f32 {
    let (l, per) = (cfg.text.doc_length, ALPHABET_SIZE * cfg.text.doc_length);
    let ids = ds.item_ids(Split::TrainVal);
    let every = ids.len().div_ceil(SCALE_CAPTIONS).max(1);
    let mut onehot = Vec::new();
    for &i in ids.iter().step_by(every) {
        if let Some(c) = ds.items()[i].captions.first() {
            let start = onehot.len();
            onehot.resize(start + per, 0.0);
            encode_into(c, l, &mut onehot[start..]);
        }
    }
    let mut ts = TrainSession::new(Arc::clone(&text.graph), 64, Arc::clone(pool));
    let emb = eval_outputs(text, &mut ts, &onehot, per);
    let n = (emb.len() / cfg.encoder.embed_dim).max(1);
    (emb.iter().map(|v| f64::from(*v) * f64::from(*v)).sum::<f64>() / n as f64).sqrt() as f32
}

/// Multiplies φ's output by `c` (its final linear) and θ's by 1/c (its last convolution, which
/// has no bias): every score θ(v)·φ(t) and every cosine stays as it was, but G and D, which
/// read φ(t) alone, see it at a chosen scale. Why: DS-SJE meets its margin through θ's length and
/// leaves |φ(t)| ≈ 0.2, while G's text projection has no normalisation, so at that scale the
/// caption is a whisper beside z (|z| ≈ 10).
pub fn rescale_embeddings(text: &mut TrainNet, image: &mut TrainNet, c: f32) -> Result<()> {
    let scale = |net: &mut TrainNet, name: &str, by: f32| -> Result<()> {
        let slot = net.graph.param(name).ok_or_else(|| Error::Input(format!("encoder has no '{name}'")))?;
        let range = slot.offset..slot.offset + slot.len;
        net.params.data_mut()[range].iter_mut().for_each(|w| *w *= by);
        Ok(())
    };
    scale(text, "encoder.proj.weight", c)?;
    scale(text, "encoder.proj.bias", c)?;
    scale(image, "image_encoder.conv4.weight", 1.0 / c)
}

/// Runs a network in eval mode over `inputs` (per-sample length `per`) in batches of the
/// session's size (the last one padded); returns the outputs.
pub fn eval_outputs(net: &mut TrainNet, session: &mut TrainSession, inputs: &[f32], per: usize) -> Vec<f32> {
    let b = session.batch();
    let n = inputs.len() / per;
    let out_len = net.graph.len(net.graph.outputs[0]);
    let mut out = Vec::with_capacity(n * out_len);
    for start in (0..n).step_by(b) {
        let m = b.min(n - start);
        let dst = session.input_mut(0);
        dst[..m * per].copy_from_slice(&inputs[start * per..(start + m) * per]);
        dst[m * per..].fill(0.0);
        session.forward(&net.params, &mut net.buffers, Mode::Eval);
        out.extend_from_slice(&session.output(0)[..m * out_len]);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{
        eval_outputs, image_encoder_graph, load_image_encoder, rescale_embeddings, save_image_encoder, zero_shot,
    };
    use crate::model::config::ModelConfig;
    use crate::model::spec::Network;
    use crate::model::text::{encode_into, ALPHABET_SIZE};
    use crate::tensor::DType;
    use crate::train::net::train_graph;
    use crate::train::{TrainNet, TrainSession};

    #[test]
    fn rescaled_embeddings_keep_every_score() {
        let cfg = ModelConfig::builtin("small").expect("config");
        let (e, l) = (cfg.encoder.embed_dim, cfg.text.doc_length);
        let pool = Arc::new(rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool"));
        let mut text = TrainNet::init_graph(train_graph(&cfg, Network::Encoder).expect("graph"), 1).expect("text");
        let mut image = TrainNet::init_graph(image_encoder_graph(e).expect("graph"), 2).expect("image");
        let per = ALPHABET_SIZE * l;
        let mut captions = vec![0.0; 3 * per];
        for (c, o) in
            ["a red circle", "a big blue star", "a tiny green heart on pink"].iter().zip(captions.chunks_mut(per))
        {
            encode_into(c, l, o);
        }
        let images: Vec<f32> = (0..3 * super::IMAGE_LEN).map(|i| ((i * 7919) % 200) as f32 / 100.0 - 1.0).collect();
        let embed = |text: &mut TrainNet, image: &mut TrainNet| {
            let mut ts = TrainSession::new(Arc::clone(&text.graph), 3, Arc::clone(&pool));
            let mut is = TrainSession::new(Arc::clone(&image.graph), 3, Arc::clone(&pool));
            (eval_outputs(text, &mut ts, &captions, per), eval_outputs(image, &mut is, &images, super::IMAGE_LEN))
        };
        let (t0, v0) = embed(&mut text, &mut image);
        rescale_embeddings(&mut text, &mut image, 40.0).expect("rescale");
        let (t1, v1) = embed(&mut text, &mut image);
        for (a, b) in t0.iter().zip(&t1) {
            assert!((40.0 * a - b).abs() <= 1e-4 * b.abs().max(1.0), "text embedding scaled by 40: {a} → {b}");
        }
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f32>();
        for (i, (x0, x1)) in t0.chunks(e).zip(t1.chunks(e)).enumerate() {
            for (j, (y0, y1)) in v0.chunks(e).zip(v1.chunks(e)).enumerate() {
                let (s0, s1) = (dot(x0, y0), dot(x1, y1));
                assert!((s0 - s1).abs() <= 1e-4 * s0.abs().max(1e-2), "score ({i}, {j}): {s0} → {s1}");
            }
        }
    }

    #[test]
    fn image_encoder_file_keeps_its_scoring() {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = ModelConfig::builtin("shapes").expect("config");
        let e = cfg.encoder.embed_dim;
        let net = TrainNet::init_graph(image_encoder_graph(e).expect("graph"), 3).expect("net");
        for cosine in [false, true] {
            let path = dir.path().join(format!("theta-{cosine}.safetensors"));
            save_image_encoder(&path, &net, &cfg, DType::F32, cosine).expect("save");
            let (loaded, scored_by_cosine) = load_image_encoder(&path, e).expect("load");
            assert_eq!(scored_by_cosine, cosine);
            assert_eq!(loaded.params.data, net.params.data, "weights round-trip");
        }
    }

    #[test]
    fn zero_shot_by_dot_product_or_cosine() {
        // Class 0's text vector is short and points along x; class 1's is long and diagonal. An
        // image of class 0 near the x axis wins by angle but loses by dot product.
        let text = [1.0, 0.0, 10.0, 10.0];
        let image = [1.0, 0.1, 0.0, 1.0];
        let (caption_class, image_class, classes) = ([0, 1], [0, 1], [0, 1]);
        let dot = zero_shot(&text, &caption_class, &image, &image_class, &classes, (2, false));
        let cos = zero_shot(&text, &caption_class, &image, &image_class, &classes, (2, true));
        assert_eq!(dot.top1, 0.5, "by dot product both images go to the long class vector");
        assert_eq!(cos.top1, 1.0, "by cosine each image finds its class");
        assert_eq!((cos.classes, cos.images), (2, 2));
    }
}
