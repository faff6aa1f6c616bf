//! The style encoder S of the ICML paper (§4.4; DESIGN.md §1): a convolutional trunk like D's
//! ending in a linear map to nz, trained to invert a frozen generator,
//! L = mean over the batch and the nz outputs of (z − S(G(z, φ(t))))², with fresh noise each step
//! and training captions. G runs as at inference (batch norm folded, running statistics), so S
//! inverts exactly the generator that `style-transfer` drives.

use std::sync::Arc;

use rayon::ThreadPool;
use serde::{Deserialize, Serialize};

use super::gan::AdamState;
use super::graph::{TrainBuilder, TrainGraph};
use super::net::TrainNet;
use super::session::{Mode, TrainSession};
use super::sje::eval_outputs;
use crate::error::{Error, Result};
use crate::graph::{Backend, Session, ValueId};
use crate::model::config::ModelConfig;
use crate::model::generator::build_generator_for;
use crate::model::net::{image_to_vector, NetBuilder};
use crate::model::WeightSet;
use crate::ops::loss::mse_loss;
use crate::ops::optim::Adam;
use crate::rng::normal_noise;

/// Width of S's first layer (D's for `shapes`).
pub const STYLE_NF: usize = 32;
/// Length of one [3, 64, 64] image.
use crate::model::pipeline::IMAGE_LEN;
/// Noise indices: row i of step s uses s·NOISE_STRIDE + i (a resumed run draws the same noise).
const NOISE_STRIDE: u64 = 1 << 16;
/// Mixed into the seed so S's noise differs from the GAN trainer's and from weight init.
const STYLE_KEY: u64 = 0x7374_796c_655f_6b65;

/// Parameter prefix of S.
pub const STYLE_PREFIX: &str = "style";

/// Lays S out: image [3, 64, 64] → style vector [nz, 1, 1]. Parameters are `style.*`.
pub fn style_encoder<B: NetBuilder>(b: &mut B, nz: usize) -> Result<(ValueId, ValueId)> {
    image_to_vector(b, STYLE_PREFIX, STYLE_NF, "proj", nz)
}

/// S's training graph for noise size `nz`.
pub fn style_graph(nz: usize) -> Result<TrainGraph> {
    let mut b = TrainBuilder::new();
    let (_, out) = style_encoder(&mut b, nz)?;
    Ok(b.finish(&[out]))
}

/// Which training captions S sees with G's images.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StyleCaptions {
    /// Only captions that name no background ([`names_scene`]): the background is then z's to
    /// set, as in the paper, whose CUB captions describe the bird and not the scene.
    #[default]
    Content,
    /// Every caption (about half of `shapes`' name the background, which then carries no style).
    All,
}

/// Settings of a style run (saved in checkpoints).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StyleOptions {
    pub batch: usize,
    pub lr: f32,
    pub seed: u64,
    /// Checkpoints written before the choice existed trained on every caption.
    #[serde(default = "all_captions")]
    pub captions: StyleCaptions,
}

impl StyleCaptions {
    pub fn name(self) -> &'static str {
        match self {
            StyleCaptions::Content => "content",
            StyleCaptions::All => "all",
        }
    }
}

impl std::str::FromStr for StyleCaptions {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        [StyleCaptions::Content, StyleCaptions::All]
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("unknown caption choice '{s}' (expected content or all)"))
    }
}

fn all_captions() -> StyleCaptions {
    StyleCaptions::All
}

impl Default for StyleOptions {
    fn default() -> Self {
        StyleOptions { batch: 64, lr: 2e-4, seed: 0, captions: StyleCaptions::default() }
    }
}

/// S, its optimizer, and the frozen G it inverts.
pub struct StyleTrainer {
    pub config: ModelConfig,
    pub options: StyleOptions,
    pub s: TrainNet,
    pub adam: AdamState,
    /// Completed steps.
    pub step: u64,
    session: TrainSession,
    g: Session,
    z: Vec<f32>,
    dout: Vec<f32>,
}

impl StyleTrainer {
    /// A fresh S (seeded) against the generator of `ws`.
    pub fn new(ws: &WeightSet, options: StyleOptions, pool: Arc<ThreadPool>) -> Result<StyleTrainer> {
        let s = TrainNet::init_graph(style_graph(ws.config().generator.nz)?, options.seed)?;
        StyleTrainer::from_net(ws, options, s, pool)
    }

    /// A trainer around an existing S (fresh optimizer state).
    pub fn from_net(ws: &WeightSet, options: StyleOptions, s: TrainNet, pool: Arc<ThreadPool>) -> Result<StyleTrainer> {
        let (b, nz) = (options.batch, ws.config().generator.nz);
        if b < 2 || b as u64 > NOISE_STRIDE {
            return Err(Error::Input(format!("style batch {b}: must be in 2..={NOISE_STRIDE}")));
        }
        let g = Session::new(Arc::new(build_generator_for(ws, Some(b))?), b, Arc::clone(&pool), Backend::Cpu);
        Ok(StyleTrainer {
            config: ws.config().clone(),
            adam: AdamState { m: vec![0.0; s.graph.param_len], v: vec![0.0; s.graph.param_len] },
            session: TrainSession::new(Arc::clone(&s.graph), b, pool),
            s,
            g,
            options,
            step: 0,
            z: vec![0.0; b * nz],
            dout: vec![0.0; b * nz],
        })
    }

    /// One step on B caption embeddings [B, E]; returns the loss.
    pub fn step(&mut self, text: &[f32]) -> Result<f32> {
        let (b, nz, e) = (self.options.batch, self.config.generator.nz, self.config.encoder.embed_dim);
        if text.len() != b * e {
            return Err(Error::Input(format!("style step needs {b} embeddings of {e}, got {} values", text.len())));
        }
        let first = self.step * NOISE_STRIDE;
        for (i, z) in self.z.chunks_mut(nz).enumerate() {
            normal_noise(self.options.seed ^ STYLE_KEY, first + i as u64, z);
        }
        self.g.input_mut(0).copy_from_slice(&self.z);
        self.g.input_mut(1).copy_from_slice(text);
        self.g.run();
        self.session.input_mut(0).copy_from_slice(self.g.output(0));
        self.session.forward(&self.s.params, &mut self.s.buffers, Mode::Train);
        let loss = mse_loss(self.session.output(0), &self.z, &mut self.dout);
        self.s.zero_grad();
        self.session.backward(&self.s.params, &mut self.s.grads, &self.dout);
        self.step += 1;
        let adam = Adam { lr: self.options.lr, beta1: 0.5, beta2: 0.999, eps: 1e-8 };
        adam.step(self.step, self.s.params.data_mut(), &self.s.grads, &mut self.adam.m, &mut self.adam.v);
        Ok(loss)
    }
}

/// Whether a caption describes the scene rather than the object (a "background" or "backdrop"
/// word): with `shapes`, about half the captions name the background; CUB's describe the bird
/// only, which is what leaves the background to z in the paper.
pub fn names_scene(caption: &str) -> bool {
    caption
        .split(|c: char| !c.is_alphanumeric())
        .any(|w| w.eq_ignore_ascii_case("background") || w.eq_ignore_ascii_case("backdrop"))
}

/// The captions S trains on: the first `per_image` of each image's (`All`), or the first
/// `per_image` that do not name the scene (`Content`; an image whose every caption names it
/// gives none).
pub fn style_captions<'a>(
    captions: impl Iterator<Item = &'a [String]>,
    per_image: usize,
    which: StyleCaptions,
) -> Vec<&'a str> {
    let keep = move |t: &&String| which == StyleCaptions::All || !names_scene(t);
    captions.flat_map(|c| c.iter().filter(keep).take(per_image).map(String::as_str)).collect()
}

/// Style vectors [N, nz] of images [N, 3, 64, 64] (S in eval mode).
pub fn predict_styles(s: &mut TrainNet, images: &[f32], pool: Arc<ThreadPool>) -> Vec<f32> {
    let mut session = TrainSession::new(Arc::clone(&s.graph), 64, pool);
    eval_outputs(s, &mut session, images, IMAGE_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scene_captions_are_told_from_content_captions() {
        assert!(names_scene("a red circle on a blue background"));
        assert!(names_scene("Against a white Backdrop, a star"));
        assert!(names_scene("red circle, big, blue background."));
        assert!(!names_scene("a big red circle drawn near the right edge"));
        // A word that merely contains one is not it.
        assert!(!names_scene("a backgrounded circle"));
    }

    #[test]
    fn content_only_takes_the_first_captions_that_name_no_scene() {
        let a: Vec<String> = ["x on a blue background", "a x", "b x", "c x"].map(String::from).to_vec();
        let b: Vec<String> = ["y with a red backdrop", "the background is red"].map(String::from).to_vec();
        let items = [a.as_slice(), b.as_slice()];
        let all = style_captions(items.into_iter(), 2, StyleCaptions::All);
        assert_eq!(all, ["x on a blue background", "a x", "y with a red backdrop", "the background is red"]);
        assert_eq!(style_captions(items.into_iter(), 2, StyleCaptions::Content), ["a x", "b x"]);
    }

    #[test]
    fn checkpoints_from_before_the_choice_trained_on_every_caption() {
        let old: StyleOptions = serde_json::from_str(r#"{"batch": 64, "lr": 0.0002, "seed": 0}"#).expect("parse");
        assert_eq!(old.captions, StyleCaptions::All);
        assert_eq!(StyleOptions::default().captions, StyleCaptions::Content);
        assert_eq!("all".parse::<StyleCaptions>(), Ok(StyleCaptions::All));
        assert!("every".parse::<StyleCaptions>().is_err());
    }
}
