//! Layer helpers shared by the three networks: each reads its weights by name, folds a
//! following batch norm into the weights and a shift (inference), packs what the fast path
//! wants packed, and adds one fused node.

use super::loader::WeightSet;
use crate::error::Result;
use crate::graph::{GraphBuilder, Op, ValueId};
use crate::ops::batch_norm::{fold_bias, fold_out_first, BatchNormParams};
use crate::ops::conv2d::Conv2dGeom;
use crate::ops::conv_transpose2d::{pack_weight, ConvTranspose2dGeom};
use crate::ops::gemm::PackedA;
use crate::ops::Activation;

/// LeakyReLU slope of the paper.
pub const LRELU: Activation = Activation::LeakyRelu(0.2);

/// (scale, shift) of batch norm `bn` (e.g. "generator.bn0").
fn bn_scale_shift(ws: &WeightSet, bn: &str) -> Result<(Vec<f32>, Vec<f32>)> {
    let get = |p: &str| ws.vec(&format!("{bn}.{p}"));
    let (gamma, beta, mean, var) = (get("weight")?, get("bias")?, get("running_mean")?, get("running_var")?);
    Ok(BatchNormParams { gamma: &gamma, beta: &beta, mean: &mean, var: &var }.scale_shift())
}

/// A convolution `w` (PyTorch layout) with an optional batch norm folded in and an optional
/// residual added before `act`.
#[allow(clippy::too_many_arguments)]
pub fn conv(
    b: &mut GraphBuilder,
    ws: &WeightSet,
    x: ValueId,
    w: &str,
    bn: Option<&str>,
    geom: Conv2dGeom,
    act: Activation,
    residual: Option<ValueId>,
) -> Result<ValueId> {
    let shape = [geom.cout, geom.cin, geom.kh, geom.kw];
    let mut wv = ws.vec(w)?;
    let shift = match bn {
        None => None,
        Some(bn) => {
            let (scale, shift) = bn_scale_shift(ws, bn)?;
            fold_out_first(&mut wv, &scale);
            Some(b.owned(&format!("{bn}.shift"), &[geom.cout], shift)?)
        }
    };
    let wid = b.packed(w, &shape, PackedA::from_row_major(&wv, geom.cout, geom.kdim()))?;
    let op = Op::Conv2d { w: wid, scale: None, shift, geom, act, residual: residual.is_some() };
    let inputs: Vec<ValueId> = std::iter::once(x).chain(residual).collect();
    b.node(w.trim_end_matches(".weight"), op, &inputs)
}

/// A transposed convolution with an optional batch norm folded in; the weight is packed.
pub fn deconv(
    b: &mut GraphBuilder,
    ws: &WeightSet,
    x: ValueId,
    w: &str,
    bn: Option<&str>,
    geom: ConvTranspose2dGeom,
    act: Activation,
) -> Result<ValueId> {
    let mut packed = pack_weight(&ws.vec(w)?, &geom);
    let shift = match bn {
        None => None,
        Some(bn) => {
            let (scale, shift) = bn_scale_shift(ws, bn)?;
            // Packed rows are (co, ky, kx): k·k rows per output channel.
            let per_channel: Vec<f32> = scale.iter().flat_map(|&s| std::iter::repeat_n(s, geom.k * geom.k)).collect();
            fold_out_first(&mut packed, &per_channel);
            Some(b.owned(&format!("{bn}.shift"), &[geom.cout], shift)?)
        }
    };
    let wid = b.packed(w, &[geom.rows(), geom.cin], PackedA::from_row_major(&packed, geom.rows(), geom.cin))?;
    let op = Op::ConvTranspose2d { w: wid, scale: None, shift, geom, act };
    b.node(w.trim_end_matches(".weight"), op, &[x])
}

/// A linear layer `prefix.weight` / `prefix.bias` with an optional batch norm folded in.
pub fn linear(
    b: &mut GraphBuilder,
    ws: &WeightSet,
    x: ValueId,
    prefix: &str,
    bn: Option<&str>,
    (in_f, out_f): (usize, usize),
    act: Activation,
) -> Result<ValueId> {
    let (wn, bname) = (format!("{prefix}.weight"), format!("{prefix}.bias"));
    let bias = ws.vec(&bname)?;
    let mut wv = ws.vec(&wn)?;
    let shift = match bn {
        None => bias,
        Some(bn) => {
            let (scale, mut shift) = bn_scale_shift(ws, bn)?;
            fold_out_first(&mut wv, &scale);
            fold_bias(&mut shift, &bias, &scale);
            shift
        }
    };
    let w = b.packed(&wn, &[out_f, in_f], PackedA::from_row_major(&wv, out_f, in_f))?;
    let shift = Some(b.owned(&bname, &[out_f], shift)?);
    b.node(prefix, Op::Linear { w, scale: None, shift, in_f, out_f, act }, &[x])
}

/// A residual block: 1×1 c→mid, 3×3 mid→mid, 3×3 mid→c (each with BN), added to its input,
/// then `act`. `inner` is the activation inside the branch.
#[allow(clippy::too_many_arguments)]
pub fn residual_block(
    b: &mut GraphBuilder,
    ws: &WeightSet,
    x: ValueId,
    name: &str,
    (c, mid, side): (usize, usize, usize),
    inner: Activation,
    act: Activation,
) -> Result<ValueId> {
    let g = |cin, cout, k, pad| Conv2dGeom { cin, h: side, w: side, cout, kh: k, kw: k, stride: 1, pad };
    let w = |i: usize| format!("{name}.conv{i}.weight");
    let bn = |i: usize| format!("{name}.bn{i}");
    let y = conv(b, ws, x, &w(1), Some(&bn(1)), g(c, mid, 1, 0), inner, None)?;
    let y = conv(b, ws, y, &w(2), Some(&bn(2)), g(mid, mid, 3, 1), inner, None)?;
    conv(b, ws, y, &w(3), Some(&bn(3)), g(mid, c, 3, 1), act, Some(x))
}
