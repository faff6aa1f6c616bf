//! What D's auxiliary classifier (and its TAC-GAN twin) reads in real images of each shape kind
//! and in G's images for captions of that kind, against the same checkpoint's D.
//!
//! ```sh
//! cargo run --release --example probe_classifier -- CHECKPOINT MODEL DATA
//! ```
//!
//! CHECKPOINT is a `train` checkpoint with the classifier (`--classifier`, with or without the
//! twin); MODEL the weights whose encoder and G draw the images (an export of the same run);
//! DATA the `shapes` dataset. Per kind: 64 training-class images and as many captions
//! "a <size> <colour> <kind> on a <background> background" built from their attributes; each
//! row prints how often the classifier's shape block (then the twin's) takes each kind as its
//! argmax, and D's mean real/fake logit. Session 21 used it to find that D's classifier reads
//! G's blobs as the stars and rings asked for while `eval`'s judge does not (docs/RESULTS.md).

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Result};
use text2img::data::image_io::{decode_rgb8, DecodeLimits};
use text2img::data::render::Shape;
use text2img::data::shapes::{read_attributes, Attributes};
use text2img::graph::{thread_pool, Backend};
use text2img::model::pipeline::TextToImage;
use text2img::model::WeightSet;
use text2img::train::checkpoint::load_gan;
use text2img::train::gan::GanTrainer;
use text2img::train::{Mode, TrainSession};
use text2img::weights::file::LoadMode;

/// Images per kind (one batch).
const ROWS: usize = 64;
const IMAGE_LEN: usize = 3 * 64 * 64;

fn main() -> std::process::ExitCode {
    match probe() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The library's errors name the file at fault; their sources would repeat the OS message.
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn probe() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [ckpt, model, data] = args.as_slice() else {
        bail!("usage: probe_classifier CHECKPOINT MODEL DATA");
    };
    let pool = thread_pool(0)?;
    let (t, _) = load_gan(Path::new(ckpt), Arc::clone(&pool))?;
    if t.options.classifier_weight <= 0.0 {
        bail!("{ckpt}: D has no classifier (trained without --classifier)");
    }
    let ws = WeightSet::open(Path::new(model), LoadMode::Read)?;
    let mut pipeline = TextToImage::new(&ws, ROWS, Arc::clone(&pool), Backend::Cpu)?;
    let mut d = TrainSession::new(Arc::new(t.options.discriminator_graph(&t.config)?), ROWS, pool);
    let attrs = read_attributes(Path::new(data))?;
    println!("per kind asked: argmax of D's shape block [real images | G's], the twin's, D's mean logit");
    for kind in Shape::ALL {
        let rows: Vec<&Attributes> = attrs.iter().filter(|a| a.shape == kind && !a.held_out).take(ROWS).collect();
        if rows.len() < ROWS {
            bail!("{data}: fewer than {ROWS} training-class images of {}", kind.name());
        }
        let captions: Vec<String> = rows.iter().map(|a| caption(a, kind)).collect();
        let (text, _) = pipeline.embed(&captions)?;
        let real = real_images(Path::new(data), &rows)?;
        let (fake, _) = pipeline.generate(&captions, 0, 0)?;
        let mut line = format!("{:>8}:", kind.name());
        for (what, images) in [("real", &real), ("G", &fake)] {
            line += &format!(" {what} {}", read_out(&mut d, &t, images, &text));
        }
        println!("{line}");
    }
    Ok(())
}

fn caption(a: &Attributes, kind: Shape) -> String {
    format!("a {} {} {} on a {} background", a.size.word(), a.colour, kind.name(), a.background)
}

fn real_images(root: &Path, rows: &[&Attributes]) -> Result<Vec<f32>> {
    let mut out = vec![0.0f32; rows.len() * IMAGE_LEN];
    for (a, chw) in rows.iter().zip(out.chunks_mut(IMAGE_LEN)) {
        let path = root.join(&a.image);
        let img = decode_rgb8(&path, &DecodeLimits::default())?;
        if (img.width, img.height) != (64, 64) {
            bail!("{}: {}×{} pixels, not 64×64", path.display(), img.width, img.height);
        }
        img.to_chw(chw);
    }
    Ok(out)
}

/// D on one batch: the argmax counts of the classifier's shape block and the twin's, and the
/// mean real/fake logit.
fn read_out(d: &mut TrainSession, t: &GanTrainer, images: &[f32], text: &[f32]) -> String {
    d.input_mut(0).copy_from_slice(images);
    d.input_mut(1).copy_from_slice(text);
    // D of the shapes configs has no batch norm, so its buffers are not touched in eval mode.
    d.forward(&t.d.params, &mut t.d.buffers.clone(), Mode::Eval);
    let (outputs, kinds) = (t.options.class_outputs(), Shape::ALL.len());
    let logits = d.output(1);
    let blocks: &[usize] = if t.options.classifier_twin { &[0, outputs / 2] } else { &[0] };
    let counts: Vec<String> = blocks
        .iter()
        .map(|&at| {
            let mut n = vec![0usize; kinds];
            for row in logits.chunks(outputs) {
                n[argmax(&row[at..at + kinds])] += 1;
            }
            let seen = n.iter().zip(Shape::ALL).filter(|(&c, _)| c > 0);
            seen.map(|(c, k)| format!("{} {c}", k.name())).collect::<Vec<_>>().join(", ")
        })
        .collect();
    let mean = d.output(0).iter().sum::<f32>() / ROWS as f32;
    format!("[{}] D {mean:.2}", counts.join(" | twin "))
}

fn argmax(x: &[f32]) -> usize {
    x.iter().enumerate().fold(0, |best, (i, &v)| if v > x[best] { i } else { best })
}
