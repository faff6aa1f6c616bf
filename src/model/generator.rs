//! Generator G: text projection + LeakyReLU, concat with z, then transposed convolutions
//! 1→4→8→16→32→64 with two residual blocks (docs/WEIGHTS.md). Inputs z [nz] and the text
//! embedding [E]; output the image [3, 64, 64] in [-1, 1]. BN is folded (inference).

use super::config::ModelConfig;
use super::layers::{deconv, linear, residual_block, LRELU};
use super::loader::WeightSet;
use super::spec::Network;
use crate::error::Result;
use crate::graph::{Graph, GraphBuilder, Op};
use crate::ops::conv_transpose2d::ConvTranspose2dGeom;
use crate::ops::Activation;

/// Builds G's inference graph. Inputs: z, embedding. Output: image.
pub fn build_generator(ws: &WeightSet) -> Result<Graph> {
    ws.require(Network::Generator)?;
    let cfg: &ModelConfig = ws.config();
    let (nz, nt, f) = (cfg.generator.nz, cfg.generator.nt, cfg.generator.ngf);
    let e = cfg.encoder.embed_dim;
    let mut b = GraphBuilder::new();
    let z = b.input(&[nz]);
    let emb = b.input(&[e]);
    let t = linear(&mut b, ws, emb, "generator.text_proj", None, (e, nt), LRELU)?; // [nt]
    let x = b.node("generator.concat", Op::Concat, &[z, t])?; // [nz+nt]
    let up = |cin, side, cout, stride, pad| ConvTranspose2dGeom { cin, h: side, w: side, cout, k: 4, stride, pad };
    let x = deconv(
        &mut b,
        ws,
        x,
        "generator.deconv0.weight",
        Some("generator.bn0"),
        up(nz + nt, 1, 8 * f, 1, 0),
        Activation::None,
    )?; // [8f, 4, 4]
    let x = residual_block(&mut b, ws, x, "generator.res0", (8 * f, 2 * f, 4), Activation::Relu, Activation::Relu)?;
    let x = deconv(
        &mut b,
        ws,
        x,
        "generator.deconv1.weight",
        Some("generator.bn1"),
        up(8 * f, 4, 4 * f, 2, 1),
        Activation::None,
    )?; // [4f, 8, 8]
    let x = residual_block(&mut b, ws, x, "generator.res1", (4 * f, f, 8), Activation::Relu, Activation::Relu)?;
    let x = deconv(
        &mut b,
        ws,
        x,
        "generator.deconv2.weight",
        Some("generator.bn2"),
        up(4 * f, 8, 2 * f, 2, 1),
        Activation::Relu,
    )?; // [2f, 16, 16]
    let x = deconv(
        &mut b,
        ws,
        x,
        "generator.deconv3.weight",
        Some("generator.bn3"),
        up(2 * f, 16, f, 2, 1),
        Activation::Relu,
    )?; // [f, 32, 32]
    let img = deconv(&mut b, ws, x, "generator.deconv4.weight", None, up(f, 32, 3, 2, 1), Activation::Tanh)?; // [3, 64, 64]
    Ok(b.finish(&[img]))
}
