//! The learned half of the judge: a small CNN that names the shape kind from the colour
//! reader's mask, cropped to the shape's bounding box and scaled to 32×32, so that it sees form
//! only (not colour, size or place). It is trained by the project on real `shapes` images of the
//! training classes and validated on the held-out classes' images; its file is a standalone
//! safetensors (format `text2img-judge/1`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rayon::ThreadPool;

use super::colour::{Reading, SIDE};
use crate::data::render::Shape;
use crate::data::rng::Pcg32;
use crate::error::{Error, Result};
use crate::graph::ValueId;
use crate::model::net::{NetBuilder, LRELU};
use crate::ops::conv2d::Conv2dGeom;
use crate::ops::loss::softmax_cross_entropy;
use crate::ops::optim::Adam;
use crate::ops::Activation;
use crate::tensor::DType;
use crate::train::checkpoint::{load_net, save_net};
use crate::train::graph::TrainBuilder;
use crate::train::net::TrainNet;
use crate::train::session::{Mode, TrainSession};
use crate::train::sje::eval_outputs;

/// Side of the classifier's input crop.
pub const CROP: usize = 32;
/// Per-sample input length.
pub const CROP_LEN: usize = CROP * CROP;
/// Shape kinds, in `Shape::ALL` order.
pub const KINDS: usize = Shape::ALL.len();
/// Format tag of judge files.
pub const JUDGE_FORMAT: &str = "text2img-judge/1";

/// Lays the classifier out: [1, 32, 32] crop → 8 logits.
pub fn classifier<B: NetBuilder>(b: &mut B) -> Result<(ValueId, ValueId)> {
    let down = |cin, side, cout| Conv2dGeom { cin, h: side, w: side, cout, kh: 4, kw: 4, stride: 2, pad: 1 };
    let x = b.input(&[1, CROP, CROP]);
    let y = b.conv(x, "judge.conv0.weight", None, down(1, 32, 32), LRELU, None)?; // [32, 16, 16]
    let y = b.conv(y, "judge.conv1.weight", Some("judge.bn1"), down(32, 16, 64), LRELU, None)?; // [64, 8, 8]
    let y = b.conv(y, "judge.conv2.weight", Some("judge.bn2"), down(64, 8, 128), LRELU, None)?; // [128, 4, 4]
    let last = Conv2dGeom { cin: 128, h: 4, w: 4, cout: KINDS, kh: 4, kw: 4, stride: 1, pad: 0 };
    let logits = b.conv(y, "judge.conv3.weight", None, last, Activation::None, None)?; // [8, 1, 1]
    Ok((x, logits))
}

fn classifier_net(seed: u64) -> Result<TrainNet> {
    let mut b = TrainBuilder::new();
    let (_, out) = classifier(&mut b)?;
    TrainNet::init_graph(b.finish(&[out]), seed)
}

/// The mask of `r` cropped square around its bounding box (10 % margin), resampled bilinearly to
/// 32×32 and mapped to [-1, 1]. An empty reading gives an all −1 crop.
pub fn crop(r: &Reading, out: &mut [f32]) {
    assert_eq!(out.len(), CROP_LEN, "crop size");
    let [x0, y0, x1, y1] = r.bbox.map(|v| v as f32);
    if r.area == 0 {
        out.fill(-1.0);
        return;
    }
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    let half = (x1 - x0).max(y1 - y0) / 2.0 * 1.1 + 1.0;
    let step = 2.0 * half / CROP as f32;
    let at = |x: isize, y: isize| {
        if x < 0 || y < 0 || x >= SIDE as isize || y >= SIDE as isize {
            0.0
        } else {
            r.mask[y as usize * SIDE + x as usize]
        }
    };
    for (i, o) in out.iter_mut().enumerate() {
        // Source position in pixel units, pixel centres at k + 0.5.
        let sx = cx - half + (i % CROP) as f32 * step + step / 2.0 - 0.5;
        let sy = cy - half + (i / CROP) as f32 * step + step / 2.0 - 0.5;
        let (fx, fy) = (sx.floor(), sy.floor());
        let (ax, ay) = (sx - fx, sy - fy);
        let (ix, iy) = (fx as isize, fy as isize);
        let top = at(ix, iy) * (1.0 - ax) + at(ix + 1, iy) * ax;
        let bottom = at(ix, iy + 1) * (1.0 - ax) + at(ix + 1, iy + 1) * ax;
        *o = 2.0 * (top * (1.0 - ay) + bottom * ay) - 1.0;
    }
}

/// The trained classifier and a session to run it.
pub struct ShapeJudge {
    net: TrainNet,
    session: TrainSession,
}

/// Training settings of the classifier.
#[derive(Clone, Copy, Debug)]
pub struct JudgeTraining {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    pub seed: u64,
}

impl Default for JudgeTraining {
    fn default() -> Self {
        JudgeTraining { epochs: 6, batch: 64, lr: 1e-3, seed: 0 }
    }
}

impl ShapeJudge {
    /// Trains on crops [N, 32, 32] with shape labels; `progress` gets (epoch, mean loss).
    pub fn train(
        crops: &[f32],
        labels: &[usize],
        o: JudgeTraining,
        pool: Arc<ThreadPool>,
        mut progress: impl FnMut(usize, f32),
    ) -> Result<ShapeJudge> {
        let n = labels.len();
        if crops.len() != n * CROP_LEN || n < o.batch || o.batch == 0 {
            return Err(Error::Input(format!("the judge needs at least {} labelled crops, got {n}", o.batch.max(1))));
        }
        let mut net = classifier_net(o.seed)?;
        let mut session = TrainSession::new(Arc::clone(&net.graph), o.batch, pool);
        let (mut m, mut v) = (vec![0.0; net.graph.param_len], vec![0.0; net.graph.param_len]);
        let mut dlogits = vec![0.0; o.batch * KINDS];
        let mut batch_labels = vec![0usize; o.batch];
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = Pcg32::new(o.seed);
        let mut t = 0u64;
        for epoch in 0..o.epochs {
            rng.shuffle(&mut order);
            let mut total = 0.0f64;
            let steps = n / o.batch;
            // Cosine-free schedule: the last third of the epochs at a tenth of the rate.
            let lr = if epoch * 3 >= o.epochs * 2 { o.lr * 0.1 } else { o.lr };
            for chunk in order.chunks_exact(o.batch) {
                for (k, &i) in chunk.iter().enumerate() {
                    session.input_mut(0)[k * CROP_LEN..(k + 1) * CROP_LEN]
                        .copy_from_slice(&crops[i * CROP_LEN..(i + 1) * CROP_LEN]);
                    batch_labels[k] = labels[i];
                }
                session.forward(&net.params, &mut net.buffers, Mode::Train);
                total += f64::from(softmax_cross_entropy(session.output(0), &batch_labels, KINDS, &mut dlogits));
                net.zero_grad();
                session.backward(&net.params, &mut net.grads, &dlogits);
                t += 1;
                let adam = Adam { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8 };
                adam.step(t, net.params.data_mut(), &net.grads, &mut m, &mut v);
            }
            progress(epoch + 1, (total / steps.max(1) as f64) as f32);
        }
        Ok(ShapeJudge { net, session })
    }

    /// Predicted shape kind (index into `Shape::ALL`) of each crop.
    pub fn predict(&mut self, crops: &[f32]) -> Vec<usize> {
        let logits = eval_outputs(&mut self.net, &mut self.session, crops, CROP_LEN);
        logits.chunks(KINDS).map(|l| (0..KINDS).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap_or(0)).collect()
    }

    /// Writes the classifier (with `meta`, e.g. its validation accuracy) atomically.
    pub fn save(&self, path: &Path, meta: &BTreeMap<String, String>) -> Result<()> {
        save_net(path, JUDGE_FORMAT, &self.net, DType::F32, meta)
    }

    /// Opens a judge file; returns it and its metadata.
    pub fn open(path: &Path, pool: Arc<ThreadPool>) -> Result<(ShapeJudge, BTreeMap<String, String>)> {
        let mut net = classifier_net(0)?;
        let meta = load_net(path, JUDGE_FORMAT, &mut net)?;
        let session = TrainSession::new(Arc::clone(&net.graph), 64, pool);
        Ok((ShapeJudge { net, session }, meta))
    }
}
