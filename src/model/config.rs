//! Model configs: every size of the three networks. A weights file carries its config in its
//! metadata; the built-in ones are the paper's ("reed-cub", "reed-flowers") and our "shapes".

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The 70-character alphabet of Reed's char-CNN-RNN ('-' appears twice; see text.rs).
pub const ALPHABET: &str = "abcdefghijklmnopqrstuvwxyz0123456789-,;.!?:'\"/\\|_@#$%^&*~`+-=<>()[]{} ";

/// Text input settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextConfig {
    pub alphabet: String,
    pub doc_length: usize,
}

/// Recurrent cell of the char-CNN-RNN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RnnKind {
    /// Reed's FixedGRU (CUB).
    Gru,
    /// Plain ReLU RNN (flowers).
    Relu,
}

/// A max-pool window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub kernel: usize,
    pub stride: usize,
}

/// char-CNN-RNN sizes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderConfig {
    pub conv_channels: [usize; 3],
    pub kernel_size: usize,
    pub pool_size: usize,
    pub final_pool: Option<Pool>,
    pub rnn: RnnKind,
    pub rnn_hidden: usize,
    pub embed_dim: usize,
}

/// Generator sizes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    pub nz: usize,
    pub nt: usize,
    pub ngf: usize,
    /// A residual block after the 16×16 and after the 32×32 transposed convolution
    /// (`generator.res2`, `generator.res3`), where the original G has none: layers at the
    /// scales where a shape's outline is drawn (`train --g-refine`). Written only when on, so
    /// files of the original G keep their bytes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refine: bool,
}

impl GeneratorConfig {
    /// The middle width of a refinement block of `c` channels (`refine`): half of it, where
    /// G's other residual blocks take a quarter (these are narrow already).
    pub fn refine_mid(c: usize) -> usize {
        c.div_ceil(2)
    }
}

/// Discriminator sizes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscriminatorConfig {
    pub ndf: usize,
    pub nt: usize,
    /// LeakyReLU after the 8×8 and 4×4 convolutions (the original has none there).
    pub act_after_deep: bool,
    /// Batch norm after D's convolutions and text projection, as in the paper. Off, D is a plain
    /// conv/LeakyReLU stack: with batch norm, D's separate real/wrong/fake batches let it win
    /// within a hundred steps on `shapes` and G never leaves noise (docs/runs/README.md).
    #[serde(default = "default_true")]
    pub batch_norm: bool,
}

fn default_true() -> bool {
    true
}

/// A whole model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub name: String,
    pub text: TextConfig,
    pub encoder: EncoderConfig,
    pub generator: GeneratorConfig,
    pub discriminator: DiscriminatorConfig,
}

/// Image side of every config (the networks' strides fix it).
pub const IMAGE_SIZE: usize = 64;

/// Largest channel count accepted from a file (guards plans against absurd sizes).
const MAX_CHANNELS: usize = 1 << 14;

impl ModelConfig {
    /// The built-in config names.
    pub const BUILTIN: [&'static str; 4] = ["reed-cub", "reed-flowers", "shapes", "small"];

    /// A built-in config by name.
    pub fn builtin(name: &str) -> Result<ModelConfig> {
        let text = TextConfig { alphabet: ALPHABET.to_string(), doc_length: 201 };
        let reed_encoder = EncoderConfig {
            conv_channels: [384, 512, 512],
            kernel_size: 4,
            pool_size: 3,
            final_pool: None,
            rnn: RnnKind::Gru,
            rnn_hidden: 512,
            embed_dim: 1024,
        };
        let reed_g = GeneratorConfig { nz: 100, nt: 128, ngf: 128, refine: false };
        let d = DiscriminatorConfig { ndf: 64, nt: 128, act_after_deep: false, batch_norm: true };
        let cfg = match name {
            "reed-cub" => {
                ModelConfig { name: name.into(), text, encoder: reed_encoder, generator: reed_g, discriminator: d }
            }
            "reed-flowers" => ModelConfig {
                name: name.into(),
                text,
                encoder: EncoderConfig {
                    final_pool: Some(Pool { kernel: 3, stride: 2 }),
                    rnn: RnnKind::Relu,
                    ..reed_encoder
                },
                generator: reed_g,
                discriminator: d,
            },
            "shapes" => ModelConfig {
                name: name.into(),
                text,
                encoder: EncoderConfig {
                    conv_channels: [128, 256, 256],
                    rnn_hidden: 256,
                    embed_dim: 256,
                    ..reed_encoder
                },
                // Sized for a 2-core CPU to train in about an hour; D without batch norm is
                // what makes GAN-INT-CLS learn here (docs/runs/README.md).
                generator: GeneratorConfig { nz: 100, nt: 128, ngf: 32, refine: false },
                discriminator: DiscriminatorConfig { ndf: 32, batch_norm: false, ..d },
            },
            // For smoke tests and quick experiments: minutes of CPU, not hours.
            "small" => ModelConfig {
                name: name.into(),
                text,
                encoder: EncoderConfig { conv_channels: [32, 64, 64], rnn_hidden: 64, embed_dim: 64, ..reed_encoder },
                generator: GeneratorConfig { nz: 32, nt: 32, ngf: 8, refine: false },
                discriminator: DiscriminatorConfig { ndf: 8, nt: 32, act_after_deep: false, batch_norm: true },
            },
            other => {
                return Err(Error::Config(format!(
                    "unknown model config '{other}' (built in: {})",
                    Self::BUILTIN.join(", ")
                )))
            }
        };
        Ok(cfg)
    }

    /// Parses a config from JSON and checks it.
    pub fn from_json(s: &str) -> Result<ModelConfig> {
        let cfg: ModelConfig = serde_json::from_str(s).map_err(|e| Error::Config(format!("config JSON: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn to_json(&self) -> String {
        // Serialising plain structs of strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Checks every size is usable: alphabet, positive and bounded channels, enough time steps.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("config '{}': {m}", self.name)));
        if self.text.alphabet != ALPHABET {
            return bad("alphabet differs from Reed's 70-character alphabet".into());
        }
        if self.text.doc_length == 0 || self.text.doc_length > 4096 {
            return bad(format!("doc_length {} outside 1..=4096", self.text.doc_length));
        }
        let e = &self.encoder;
        let g = &self.generator;
        let d = &self.discriminator;
        let sizes = [
            ("encoder.conv_channels[0]", e.conv_channels[0]),
            ("encoder.conv_channels[1]", e.conv_channels[1]),
            ("encoder.conv_channels[2]", e.conv_channels[2]),
            ("encoder.rnn_hidden", e.rnn_hidden),
            ("encoder.embed_dim", e.embed_dim),
            ("encoder.kernel_size", e.kernel_size),
            ("encoder.pool_size", e.pool_size),
            ("generator.nz", g.nz),
            ("generator.nt", g.nt),
            ("generator.ngf", g.ngf),
            ("discriminator.ndf", d.ndf),
            ("discriminator.nt", d.nt),
        ];
        for (name, v) in sizes {
            if v == 0 || v > MAX_CHANNELS {
                return bad(format!("{name} = {v} outside 1..={MAX_CHANNELS}"));
            }
        }
        if let Some(p) = e.final_pool {
            if p.kernel == 0 || p.stride == 0 || p.kernel > 64 || p.stride > 64 {
                return bad("final_pool kernel and stride must be in 1..=64".into());
            }
        }
        if self.encoder_steps().is_none() {
            return bad(format!("doc_length {} leaves no time steps for the RNN", self.text.doc_length));
        }
        Ok(())
    }

    /// Time steps left after the conv/pool stack, or None if the text is too short.
    pub fn encoder_steps(&self) -> Option<usize> {
        let e = &self.encoder;
        let conv = |t: usize| t.checked_sub(e.kernel_size - 1).filter(|&t| t > 0);
        let pool = |t: usize, k: usize, s: usize| t.checked_sub(k).map(|x| x / s + 1);
        let t = conv(self.text.doc_length)?;
        let t = pool(t, e.pool_size, e.pool_size)?;
        let t = conv(t)?;
        let t = pool(t, e.pool_size, e.pool_size)?;
        let mut t = conv(t)?;
        if let Some(p) = e.final_pool {
            t = pool(t, p.kernel, p.stride)?;
        }
        (t > 0).then_some(t)
    }
}
