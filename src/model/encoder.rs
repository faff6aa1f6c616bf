//! The char-CNN-RNN text encoder: three conv1d (+ReLU, max-pools), a GRU or ReLU RNN over the
//! remaining steps, the mean of the hidden states, a linear to the embedding.

use super::config::RnnKind;
use super::loader::WeightSet;
use super::spec::Network;
use super::text::ALPHABET_SIZE;
use crate::error::{Error, Result};
use crate::graph::{Graph, GraphBuilder, Op};
use crate::ops::gemm::PackedA;
use crate::ops::rnn::pack_w_hh;
use crate::ops::Activation;

/// Builds the encoder's graph. Input: one-hot [70, doc_length]. Output: embedding [E].
pub fn build_encoder(ws: &WeightSet) -> Result<Graph> {
    ws.require(Network::Encoder)?;
    let cfg = ws.config();
    let e = &cfg.encoder;
    let k = e.kernel_size;
    let mut b = GraphBuilder::new();
    let mut t = cfg.text.doc_length;
    let mut x = b.input(&[ALPHABET_SIZE, t]);
    let mut cin = ALPHABET_SIZE;
    for (i, &cout) in e.conv_channels.iter().enumerate() {
        let name = format!("encoder.conv{}", i + 1);
        let wv = ws.vec(&format!("{name}.weight"))?;
        let w = b.packed(&format!("{name}.weight"), &[cout, cin, k], PackedA::from_row_major(&wv, cout, cin * k))?;
        let bias = ws.param(&mut b, &format!("{name}.bias"), &[cout])?;
        let op = Op::Conv1d { w, shift: Some(bias), cin, t, cout, k, act: Activation::Relu };
        x = b.node(&name, op, &[x])?; // [cout, t-k+1]
        t = t + 1 - k;
        let pool = match i {
            0 | 1 => Some((e.pool_size, e.pool_size)),
            _ => e.final_pool.map(|p| (p.kernel, p.stride)),
        };
        if let Some((pk, ps)) = pool {
            x = b.node(&format!("encoder.pool{}", i + 1), Op::MaxPool1d { channels: cout, t, k: pk, s: ps }, &[x])?;
            t = b_len(&b, x, cout)?;
        }
        cin = cout;
    }
    let (h, g) = (e.rnn_hidden, if e.rnn == RnnKind::Gru { 3 } else { 1 });
    let gru = e.rnn == RnnKind::Gru;
    let w_ih_v = ws.vec("encoder.rnn.weight_ih")?;
    let w_ih = b.packed("encoder.rnn.weight_ih", &[g * h, cin], PackedA::from_row_major(&w_ih_v, g * h, cin))?;
    let b_ih = ws.param(&mut b, "encoder.rnn.bias_ih", &[g * h])?;
    let (w_rz, w_n) = pack_w_hh(&ws.vec("encoder.rnn.weight_hh")?, gru, h);
    let rows = if gru { 2 * h } else { h };
    let w_hh = b.packed("encoder.rnn.weight_hh", &[rows, h], w_rz)?;
    let w_hh_n = w_n.map(|n| b.packed("encoder.rnn.weight_hh.n", &[h, h], n)).transpose()?;
    let b_hh = ws.param(&mut b, "encoder.rnn.bias_hh", &[g * h])?;
    let op = Op::Rnn { gru, w_ih, b_ih, w_hh, w_hh_n, b_hh, cin, t, hidden: h };
    let x = b.node("encoder.rnn", op, &[x])?; // [t, h]
    let x = b.node("encoder.mean", Op::MeanTime { t, h }, &[x])?; // [h]
    let wv = ws.vec("encoder.proj.weight")?;
    let w = b.packed("encoder.proj.weight", &[e.embed_dim, h], PackedA::from_row_major(&wv, e.embed_dim, h))?;
    let bias = ws.param(&mut b, "encoder.proj.bias", &[e.embed_dim])?;
    let op = Op::Linear { w, scale: None, shift: Some(bias), in_f: h, out_f: e.embed_dim, act: Activation::None };
    let out = b.node("encoder.proj", op, &[x])?; // [E]
    Ok(b.finish(&[out]))
}

/// Time steps of a [C, T] value.
fn b_len(b: &GraphBuilder, v: usize, c: usize) -> Result<usize> {
    let shape = b.shape(v);
    if shape.len() != 2 || shape[0] != c {
        return Err(Error::Shape(format!("encoder: unexpected shape {shape:?}")));
    }
    Ok(shape[1])
}
