//! Generator G: text projection + LeakyReLU, concat with z, then transposed convolutions
//! 1→4→8→16→32→64 with two residual blocks (docs/WEIGHTS.md), and with `refine` two more, at
//! 16×16 and 32×32. Inputs z [nz] and the text embedding [E]; output the image [3, 64, 64] in
//! [-1, 1].

use super::config::{GeneratorConfig, ModelConfig};
use super::layers::InferenceBuilder;
use super::loader::WeightSet;
use super::net::{residual_block, NetBuilder, LRELU};
use super::spec::Network;
use crate::error::Result;
use crate::graph::{Graph, ValueId};
use crate::ops::conv_transpose2d::ConvTranspose2dGeom;
use crate::ops::Activation;

/// Lays G out on `b`. Returns the inputs (z, embedding) and the image.
pub fn generator<B: NetBuilder>(b: &mut B, cfg: &ModelConfig) -> Result<([ValueId; 2], ValueId)> {
    let (nz, nt, f) = (cfg.generator.nz, cfg.generator.nt, cfg.generator.ngf);
    let e = cfg.encoder.embed_dim;
    let none = Activation::None;
    let relu = Activation::Relu;
    let up = |cin, side, cout, stride, pad| ConvTranspose2dGeom { cin, h: side, w: side, cout, k: 4, stride, pad };
    let z = b.input(&[nz]);
    let emb = b.input(&[e]);
    let t = b.linear(emb, "generator.text_proj", None, (e, nt), LRELU)?; // [nt]
    let x = b.concat("generator.concat", z, t)?; // [nz+nt]
    let x = b.deconv(x, "generator.deconv0.weight", Some("generator.bn0"), up(nz + nt, 1, 8 * f, 1, 0), none)?; // [8f, 4, 4]
    let x = residual_block(b, x, "generator.res0", (8 * f, 2 * f, 4), (relu, relu), true)?; // [8f, 4, 4]
    let x = b.deconv(x, "generator.deconv1.weight", Some("generator.bn1"), up(8 * f, 4, 4 * f, 2, 1), none)?; // [4f, 8, 8]
    let x = residual_block(b, x, "generator.res1", (4 * f, f, 8), (relu, relu), true)?; // [4f, 8, 8]
    let x = b.deconv(x, "generator.deconv2.weight", Some("generator.bn2"), up(4 * f, 8, 2 * f, 2, 1), relu)?; // [2f, 16, 16]
    let x = refine(b, x, cfg, "generator.res2", (2 * f, 16))?;
    let x = b.deconv(x, "generator.deconv3.weight", Some("generator.bn3"), up(2 * f, 16, f, 2, 1), relu)?; // [f, 32, 32]
    let x = refine(b, x, cfg, "generator.res3", (f, 32))?;
    let img = b.deconv(x, "generator.deconv4.weight", None, up(f, 32, 3, 2, 1), Activation::Tanh)?; // [3, 64, 64]
    Ok(([z, emb], img))
}

/// With `generator.refine`, a residual block of `c` channels at `side` (its middle
/// `GeneratorConfig::refine_mid` wide); else `x` as it is.
fn refine<B: NetBuilder>(
    b: &mut B,
    x: ValueId,
    cfg: &ModelConfig,
    name: &str,
    (c, side): (usize, usize),
) -> Result<ValueId> {
    if !cfg.generator.refine {
        return Ok(x);
    }
    let relu = Activation::Relu;
    residual_block(b, x, name, (c, GeneratorConfig::refine_mid(c), side), (relu, relu), true)
}

/// Builds G's inference graph (BN folded). Inputs: z, embedding. Output: image.
pub fn build_generator(ws: &WeightSet) -> Result<Graph> {
    build_generator_for(ws, None)
}

/// G's inference graph; with `cpu_batch`, laid out for the CPU fast path at that batch size
/// (`InferenceBuilder::for_cpu`).
pub fn build_generator_for(ws: &WeightSet, cpu_batch: Option<usize>) -> Result<Graph> {
    ws.require(Network::Generator)?;
    let mut b = InferenceBuilder::for_cpu(ws, cpu_batch);
    let (_, img) = generator(&mut b, ws.config())?;
    Ok(b.finish(&[img]))
}
