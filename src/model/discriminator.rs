//! Discriminator D: strided convolutions 64→32→16→8→4, a residual block, the text projected
//! (linear + BN1d + LeakyReLU) and replicated over 4×4, concatenated, a 1×1 conv and a 4×4
//! conv to one logit (the sigmoid is left to the loss).

use super::config::ModelConfig;
use super::layers::InferenceBuilder;
use super::loader::WeightSet;
use super::net::{residual_block, NetBuilder, LRELU};
use super::spec::Network;
use crate::error::Result;
use crate::graph::{Graph, ValueId};
use crate::ops::conv2d::Conv2dGeom;
use crate::ops::Activation;

/// Lays D out on `b`. Returns the inputs (image, embedding) and the logit [1, 1, 1].
pub fn discriminator<B: NetBuilder>(b: &mut B, cfg: &ModelConfig) -> Result<([ValueId; 2], ValueId)> {
    let (inputs, logit, _) = discriminator_with_classifier(b, cfg, 0, false)?;
    Ok((inputs, logit))
}

/// Parameter name of the auxiliary classifier (training only; never exported).
pub const CLASSIFIER_WEIGHT: &str = "discriminator.classifier.weight";

/// D with, when `classes` > 0, an auxiliary classifier (AC-GAN, Odena et al. 2017; not in the
/// paper): a 4×4 conv from the image trunk, before the text joins, to `classes` logits
/// [classes, 1, 1]. Its parameter comes after all of D's, so D's own keep their offsets.
/// `pooled`: the classifier reads the trunk's per-channel maximum over the 4×4 positions through
/// a 1×1 conv instead (one weight for every position: a shape is recognised wherever it is, which
/// D's own 4×4 read-out must learn once per position; docs/RESULTS.md, session 13).
pub fn discriminator_with_classifier<B: NetBuilder>(
    b: &mut B,
    cfg: &ModelConfig,
    classes: usize,
    pooled: bool,
) -> Result<([ValueId; 2], ValueId, Option<ValueId>)> {
    let (f, nt, e) = (cfg.discriminator.ndf, cfg.discriminator.nt, cfg.encoder.embed_dim);
    let deep = if cfg.discriminator.act_after_deep { LRELU } else { Activation::None };
    let down = |cin, side, cout| Conv2dGeom { cin, h: side, w: side, cout, kh: 4, kw: 4, stride: 2, pad: 1 };
    let one = |cin, cout, k| Conv2dGeom { cin, h: 4, w: 4, cout, kh: k, kw: k, stride: 1, pad: 0 };
    let norm = cfg.discriminator.batch_norm;
    let bn = |name: &'static str| norm.then_some(name);
    let img = b.input(&[3, 64, 64]);
    let emb = b.input(&[e]);
    let x = b.conv(img, "discriminator.conv0.weight", None, down(3, 64, f), LRELU, None)?; // [f, 32, 32]
    let x = b.conv(x, "discriminator.conv1.weight", bn("discriminator.bn1"), down(f, 32, 2 * f), LRELU, None)?; // [2f, 16, 16]
    let x = b.conv(x, "discriminator.conv2.weight", bn("discriminator.bn2"), down(2 * f, 16, 4 * f), deep, None)?; // [4f, 8, 8]
    let x = b.conv(x, "discriminator.conv3.weight", bn("discriminator.bn3"), down(4 * f, 8, 8 * f), deep, None)?; // [8f, 4, 4]
    let trunk = residual_block(b, x, "discriminator.res", (8 * f, 2 * f, 4), (LRELU, LRELU), norm)?; // [8f, 4, 4]
    let t = b.linear(emb, "discriminator.text_proj", bn("discriminator.text_bn"), (e, nt), LRELU)?; // [nt]
    let t = b.replicate("discriminator.replicate", t, nt, 16)?; // [nt, 4, 4]
    let x = b.concat("discriminator.concat", trunk, t)?; // [8f+nt, 4, 4]
    let x = b.conv(x, "discriminator.conv4.weight", bn("discriminator.bn4"), one(8 * f + nt, 8 * f, 1), LRELU, None)?; // [8f, 4, 4]
    let logit = b.conv(x, "discriminator.conv5.weight", None, one(8 * f, 1, 4), Activation::None, None)?; // [1, 1, 1]
    let classifier = match (classes, pooled) {
        (0, _) => None,
        (k, false) => Some(b.conv(trunk, CLASSIFIER_WEIGHT, None, one(8 * f, k, 4), Activation::None, None)?),
        (k, true) => {
            let max = b.maxpool1d("discriminator.classifier.pool", trunk, 8 * f, 16, 16, 16)?; // [8f, 1]
            let geom = Conv2dGeom { cin: 8 * f, h: 1, w: 1, cout: k, kh: 1, kw: 1, stride: 1, pad: 0 };
            Some(b.conv(max, CLASSIFIER_WEIGHT, None, geom, Activation::None, None)?)
        }
    };
    Ok(([img, emb], logit, classifier))
}

/// Builds D's inference graph (BN folded). Inputs: image [3, 64, 64], embedding. Output: logit.
pub fn build_discriminator(ws: &WeightSet) -> Result<Graph> {
    ws.require(Network::Discriminator)?;
    let mut b = InferenceBuilder::new(ws);
    let (_, logit) = discriminator(&mut b, ws.config())?;
    Ok(b.finish(&[logit]))
}
