//! The parameter names and shapes each network expects (docs/WEIGHTS.md), derived from the
//! config: the single source for validation, synthetic weights and the graph builders' checks.

use super::config::{GeneratorConfig, ModelConfig, RnnKind};
use super::text::ALPHABET_SIZE;

/// One of the three networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Network {
    Encoder,
    Generator,
    Discriminator,
}

impl Network {
    pub const ALL: [Network; 3] = [Network::Encoder, Network::Generator, Network::Discriminator];

    /// The name used in the `networks` metadata and as the parameter prefix.
    pub fn name(self) -> &'static str {
        match self {
            Network::Encoder => "encoder",
            Network::Generator => "generator",
            Network::Discriminator => "discriminator",
        }
    }

    pub fn from_name(s: &str) -> Option<Network> {
        Network::ALL.into_iter().find(|n| n.name() == s)
    }
}

/// A tensor's name and shape.
pub type Spec = (String, Vec<usize>);

struct Specs {
    prefix: &'static str,
    /// Whether this network's `bn` entries exist (D can be built without batch norm).
    batch_norm: bool,
    out: Vec<Spec>,
}

impl Specs {
    fn add(&mut self, name: &str, shape: &[usize]) {
        self.out.push((format!("{}.{name}", self.prefix), shape.to_vec()));
    }

    fn bn(&mut self, name: &str, c: usize) {
        if !self.batch_norm {
            return;
        }
        for p in ["weight", "bias", "running_mean", "running_var"] {
            self.add(&format!("{name}.{p}"), &[c]);
        }
    }

    fn res(&mut self, name: &str, c: usize, mid: usize) {
        self.add(&format!("{name}.conv1.weight"), &[mid, c, 1, 1]);
        self.bn(&format!("{name}.bn1"), mid);
        self.add(&format!("{name}.conv2.weight"), &[mid, mid, 3, 3]);
        self.bn(&format!("{name}.bn2"), mid);
        self.add(&format!("{name}.conv3.weight"), &[c, mid, 3, 3]);
        self.bn(&format!("{name}.bn3"), c);
    }
}

/// Expected tensors of `net` under `cfg`, in a stable order.
pub fn specs(cfg: &ModelConfig, net: Network) -> Vec<Spec> {
    let batch_norm = net != Network::Discriminator || cfg.discriminator.batch_norm;
    let mut s = Specs { prefix: net.name(), batch_norm, out: Vec::new() };
    match net {
        Network::Encoder => {
            let e = &cfg.encoder;
            let [c0, c1, c2] = e.conv_channels;
            let k = e.kernel_size;
            for (i, (cin, cout)) in [(ALPHABET_SIZE, c0), (c0, c1), (c1, c2)].into_iter().enumerate() {
                s.add(&format!("conv{}.weight", i + 1), &[cout, cin, k]);
                s.add(&format!("conv{}.bias", i + 1), &[cout]);
            }
            let g = match e.rnn {
                RnnKind::Gru => 3,
                RnnKind::Relu => 1,
            };
            let h = e.rnn_hidden;
            s.add("rnn.weight_ih", &[g * h, c2]);
            s.add("rnn.bias_ih", &[g * h]);
            s.add("rnn.weight_hh", &[g * h, h]);
            s.add("rnn.bias_hh", &[g * h]);
            s.add("proj.weight", &[e.embed_dim, h]);
            s.add("proj.bias", &[e.embed_dim]);
        }
        Network::Generator => {
            let g = &cfg.generator;
            let f = g.ngf;
            s.add("text_proj.weight", &[g.nt, cfg.encoder.embed_dim]);
            s.add("text_proj.bias", &[g.nt]);
            s.add("deconv0.weight", &[g.nz + g.nt, 8 * f, 4, 4]);
            s.bn("bn0", 8 * f);
            s.res("res0", 8 * f, 2 * f);
            s.add("deconv1.weight", &[8 * f, 4 * f, 4, 4]);
            s.bn("bn1", 4 * f);
            s.res("res1", 4 * f, f);
            s.add("deconv2.weight", &[4 * f, 2 * f, 4, 4]);
            s.bn("bn2", 2 * f);
            if g.refine {
                s.res("res2", 2 * f, GeneratorConfig::refine_mid(2 * f));
            }
            s.add("deconv3.weight", &[2 * f, f, 4, 4]);
            s.bn("bn3", f);
            if g.refine {
                s.res("res3", f, GeneratorConfig::refine_mid(f));
            }
            s.add("deconv4.weight", &[f, 3, 4, 4]);
        }
        Network::Discriminator => {
            let d = &cfg.discriminator;
            let f = d.ndf;
            s.add("conv0.weight", &[f, 3, 4, 4]);
            for (i, (cin, cout)) in [(f, 2 * f), (2 * f, 4 * f), (4 * f, 8 * f)].into_iter().enumerate() {
                s.add(&format!("conv{}.weight", i + 1), &[cout, cin, 4, 4]);
                s.bn(&format!("bn{}", i + 1), cout);
            }
            s.res("res", 8 * f, 2 * f);
            s.add("text_proj.weight", &[d.nt, cfg.encoder.embed_dim]);
            s.add("text_proj.bias", &[d.nt]);
            s.bn("text_bn", d.nt);
            s.add("conv4.weight", &[8 * f, 8 * f + d.nt, 1, 1]);
            s.bn("bn4", 8 * f);
            s.add("conv5.weight", &[1, 8 * f, 4, 4]);
        }
    }
    s.out
}

/// Trainable parameter count of `net` (batch-norm running statistics excluded).
pub fn parameter_count(cfg: &ModelConfig, net: Network) -> usize {
    specs(cfg, net)
        .iter()
        .filter(|(n, _)| !n.ends_with("running_mean") && !n.ends_with("running_var"))
        .map(|(_, s)| s.iter().product::<usize>())
        .sum()
}
