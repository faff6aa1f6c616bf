//! The char-CNN-RNN text encoder: three conv1d (+ReLU, max-pools), a GRU or ReLU RNN over the
//! remaining steps, the mean of the hidden states, a linear to the embedding.

use super::config::{ModelConfig, RnnKind};
use super::layers::InferenceBuilder;
use super::loader::WeightSet;
use super::net::NetBuilder;
use super::spec::Network;
use super::text::ALPHABET_SIZE;
use crate::error::{Error, Result};
use crate::graph::{Graph, ValueId};
use crate::ops::Activation;

/// Lays the encoder out on `b`. Returns the input (one-hot [70, doc_length]) and the embedding.
pub fn encoder<B: NetBuilder>(b: &mut B, cfg: &ModelConfig) -> Result<(ValueId, ValueId)> {
    let e = &cfg.encoder;
    let k = e.kernel_size;
    let mut t = cfg.text.doc_length;
    let input = b.input(&[ALPHABET_SIZE, t]);
    let (mut x, mut cin) = (input, ALPHABET_SIZE);
    for (i, &cout) in e.conv_channels.iter().enumerate() {
        x = b.conv1d(x, &format!("encoder.conv{}", i + 1), (cin, t, cout, k), Activation::Relu)?; // [cout, t-k+1]
        t = t + 1 - k;
        let pool = match i {
            0 | 1 => Some((e.pool_size, e.pool_size)),
            _ => e.final_pool.map(|p| (p.kernel, p.stride)),
        };
        if let Some((pk, ps)) = pool {
            x = b.maxpool1d(&format!("encoder.pool{}", i + 1), x, cout, t, pk, ps)?;
            t = steps(b, x, cout)?;
        }
        cin = cout;
    }
    let h = e.rnn_hidden;
    let x = b.rnn(x, "encoder.rnn", e.rnn == RnnKind::Gru, cin, t, h)?; // [t, h]
    let x = b.mean_time("encoder.mean", x, t, h)?; // [h]
    let out = b.linear(x, "encoder.proj", None, (h, e.embed_dim), Activation::None)?; // [E]
    Ok((input, out))
}

/// Builds the encoder's inference graph. Input: one-hot [70, doc_length]. Output: embedding [E].
pub fn build_encoder(ws: &WeightSet) -> Result<Graph> {
    build_encoder_for(ws, None)
}

/// The encoder's inference graph; with `cpu_batch`, laid out for the CPU fast path at that batch
/// size (`InferenceBuilder::for_cpu`: at batch 1 its later 1-D convolutions take the tap form).
pub fn build_encoder_for(ws: &WeightSet, cpu_batch: Option<usize>) -> Result<Graph> {
    ws.require(Network::Encoder)?;
    let mut b = InferenceBuilder::for_cpu(ws, cpu_batch);
    let (_, out) = encoder(&mut b, ws.config())?;
    Ok(b.finish(&[out]))
}

/// Time steps of a [C, T] value.
fn steps<B: NetBuilder>(b: &B, v: ValueId, c: usize) -> Result<usize> {
    let shape = b.shape(v);
    if shape.len() != 2 || shape[0] != c {
        return Err(Error::Shape(format!("encoder: unexpected shape {shape:?}")));
    }
    Ok(shape[1])
}
