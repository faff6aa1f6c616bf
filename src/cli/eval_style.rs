//! `text2img eval --style`: the paper's disentangling evaluation on `shapes` (ROC AUC of
//! style-vector similarity for "same background" and "same pose" pairs, against the caption
//! baseline), with the ROC curves as PNG and CSV.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use text2img::data::render::Shape;
use text2img::data::rng::Pcg32;
use text2img::data::shapes::{fix_articles, PALETTE};
use text2img::eval::colour::read;
use text2img::eval::report::{Attrs, Judge, IMAGE_LEN};
use text2img::eval::style::{kmeans, verify, Verification};
use text2img::graph::Backend;
use text2img::image::{write_png, Rgb8};
use text2img::model::TextToImage;
use text2img::model::WeightSet;
use text2img::train::captions::embed_texts;
use text2img::train::checkpoint::load_style_encoder;
use text2img::train::style::{names_scene, predict_styles};

use super::eval::RealImages;
use super::{fail, Failure, EXIT_BAD_INPUT, EXIT_OUTPUT};

/// Folds of the images (the paper averages over 5).
const FOLDS: usize = 5;
/// Clusters: one per palette colour for the background; the nine position cells for pose.
const BACKGROUND_CLUSTERS: usize = PALETTE.len();
const POSE_CLUSTERS: usize = 9;

/// Style transfer judged: how often G(S(image), φ(caption)) keeps the style image's background
/// and shows the caption's shape colour and kind.
#[derive(Serialize)]
pub struct TransferCheck {
    pub pairs: usize,
    pub background_of_style_image: f64,
    pub colour_of_caption: f64,
    pub shape_of_caption: f64,
    /// The same captions with noise from the prior instead of S(image) (seed 0): the caption's
    /// colour and shape as G draws them with no style image, the baseline of the two above.
    pub colour_of_caption_prior: f64,
    pub shape_of_caption_prior: f64,
    /// Mean distance (pixels) from the output's judged shape centre to the style image's shape
    /// centre, and the same to another pair's style image (the baseline: what a transfer that
    /// ignored the style's position would score); over the outputs with a shape found (None:
    /// none had one).
    pub position_distance: Option<f64>,
    pub position_distance_other_style: Option<f64>,
    /// Mean length of the style vectors S(image) handed to G, beside that of the prior's z
    /// (√nz): an S that shrinks towards the mean style gives G a "typical" z, whose background
    /// is the caption's most likely one.
    pub style_norm: f64,
    pub prior_norm: f64,
}

/// What one style-transfer output should show.
struct Want {
    background: usize,
    colour: usize,
    shape: usize,
}

/// Whether a judged output shows what one attribute of its pair asks for.
type Hit = fn(&Attrs, &Want) -> bool;

/// Pairs in the style-transfer check.
const TRANSFER_PAIRS: usize = 120;

/// Judges style transfer on TRANSFER_PAIRS (held-out image, "a <colour> <shape>") pairs; the
/// caption names no background, and its colour differs from the image's background.
pub fn transfer_check(
    ws: &WeightSet,
    real: &RealImages,
    style_model: &Path,
    judge: &mut Judge,
    pool: &Arc<rayon::ThreadPool>,
    seed: u64,
) -> Result<TransferCheck, Failure> {
    let held = real.split(true);
    let nz = ws.config().generator.nz;
    let mut s = load_style_encoder(style_model, nz)?;
    let mut rng = Pcg32::new(seed ^ 0x5452_4e53);
    let (mut images, mut captions, mut wants, mut centres) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..TRANSFER_PAIRS.min(held.len()) {
        let i = held[rng.index(held.len())];
        images.extend_from_slice(real.image(i));
        let bg = real.truth[i].background;
        let mut colour = rng.index(PALETTE.len() - 1);
        if colour >= bg {
            colour += 1;
        }
        let shape = rng.index(Shape::ALL.len());
        captions.push(fix_articles(&format!("a {} {}", PALETTE[colour].name, Shape::ALL[shape].name())));
        wants.push(Want { background: bg, colour, shape });
        centres.push([real.attrs[i].x, real.attrs[i].y]);
    }
    let styles = predict_styles(&mut s, &images, Arc::clone(pool));
    let norms: Vec<f64> =
        styles.chunks(nz).map(|v| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt()).collect();
    let style_norm = norms.iter().sum::<f64>() / norms.len().max(1) as f64;
    let mut t2i = TextToImage::new(ws, captions.len(), Arc::clone(pool), Backend::Cpu)?;
    let (emb, _) = t2i.embed(&captions)?;
    let out = t2i.generate_from(&styles, &emb)?.to_vec();
    let judged = judge.judge(&out);
    // The same embeddings (still the encoder's output) with noise indices 0..n of seed 0.
    let indices: Vec<u64> = (0..captions.len() as u64).collect();
    t2i.generate_loaded(0, &indices);
    let judged_prior = judge.judge(t2i.images());
    let found: Vec<Option<[f32; 2]>> = out.chunks(IMAGE_LEN).map(|x| read(x).centre()).collect();
    let distance = |shift: usize| mean_centre_distance(&found, &centres, shift);
    let n = judged.len().max(1) as f64;
    let rate_in = |judged: &[Attrs], hit: Hit| judged.iter().zip(&wants).filter(|(j, w)| hit(j, w)).count() as f64 / n;
    let rate = |hit| rate_in(&judged, hit);
    let (colour, shape): (Hit, Hit) = (|j, w| j.colour == Some(w.colour), |j, w| j.shape == w.shape);
    Ok(TransferCheck {
        pairs: judged.len(),
        background_of_style_image: rate(|j, w| j.background == w.background),
        colour_of_caption: rate(colour),
        shape_of_caption: rate(shape),
        colour_of_caption_prior: rate_in(&judged_prior, colour),
        shape_of_caption_prior: rate_in(&judged_prior, shape),
        position_distance: distance(0),
        position_distance_other_style: distance(1),
        style_norm,
        prior_norm: (nz as f64).sqrt(),
    })
}

/// Mean distance from each found centre k to the style centre k + shift (cyclically); None when
/// no centre was found.
fn mean_centre_distance(found: &[Option<[f32; 2]>], style: &[[f32; 2]], shift: usize) -> Option<f64> {
    let n = style.len();
    let d: Vec<f64> = found
        .iter()
        .enumerate()
        .filter_map(|(k, c)| c.map(|c| (c, style[(k + shift) % n])))
        .map(|(c, s)| f64::from((c[0] - s[0]).hypot(c[1] - s[1])))
        .collect();
    (!d.is_empty()).then(|| d.iter().sum::<f64>() / d.len() as f64)
}

pub fn print_transfer(c: &TransferCheck) {
    println!(
        "style transfer, {} pairs (held-out image, \"a <colour> <shape>\"): background of the style image {:.1}%, \
         colour of the caption {:.1}%, shape of the caption {:.1}%",
        c.pairs,
        100.0 * c.background_of_style_image,
        100.0 * c.colour_of_caption,
        100.0 * c.shape_of_caption
    );
    println!(
        "the same captions with noise from the prior (no style image): colour of the caption {:.1}%, shape of the caption {:.1}%",
        100.0 * c.colour_of_caption_prior,
        100.0 * c.shape_of_caption_prior
    );
    match (c.position_distance, c.position_distance_other_style) {
        (Some(own), Some(other)) => println!(
            "style transfer, shape position: {own:.1} px from the style image's shape centre ({other:.1} px from another pair's)"
        ),
        _ => println!("style transfer, shape position: the judge found no shape in any output"),
    }
    println!("style vectors: mean length {:.2} (z ~ N(0, I): {:.2})", c.style_norm, c.prior_norm);
}

#[derive(Serialize)]
pub struct StyleRow {
    pub feature: String,
    pub background: Verification,
    pub pose: Verification,
}

/// Two captions of a real image (text_c10/<class>/<stem>.txt): its first, and its first that
/// does not name the background (the analogue of CUB's captions, which describe the bird and
/// not the scene; the first caption when every one names it).
fn captions_of(root: &Path, image: &str) -> Result<(String, String), Failure> {
    let rel = Path::new(image);
    let class = rel.parent().and_then(|p| p.file_name()).unwrap_or_default();
    let stem = rel.file_stem().unwrap_or_default();
    let path = root.join("text_c10").join(class).join(stem).with_extension("txt");
    let text = std::fs::read_to_string(&path).map_err(|e| fail(EXIT_BAD_INPUT, format!("{}: {e}", path.display())))?;
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.clone().next().ok_or_else(|| fail(EXIT_BAD_INPUT, format!("{}: no caption", path.display())))?;
    let content = lines.find(|l| !names_scene(l)).unwrap_or(first);
    Ok((first.to_string(), content.to_string()))
}

/// Runs the evaluation on the held-out classes' real images of `data`.
pub fn run(
    ws: &WeightSet,
    data: &Path,
    real: &RealImages,
    style_model: &Path,
    pool: &Arc<rayon::ThreadPool>,
    seed: u64,
) -> Result<Vec<StyleRow>, Failure> {
    let held = real.split(true);
    let mut images = Vec::with_capacity(held.len() * real.image(0).len());
    let (mut bg, mut pose, mut captions, mut content) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for &i in &held {
        images.extend_from_slice(real.image(i));
        let a = &real.attrs[i];
        bg.extend(a.background_rgb.map(|v| f32::from(v) / 255.0));
        pose.extend([a.x / 64.0, a.y / 64.0]);
        let (first, no_background) = captions_of(data, &a.image)?;
        captions.push(first);
        content.push(no_background);
    }
    let bg_clusters = kmeans(&bg, 3, BACKGROUND_CLUSTERS, seed, 100);
    let pose_clusters = kmeans(&pose, 2, POSE_CLUSTERS, seed, 100);
    let nz = ws.config().generator.nz;
    let mut s = load_style_encoder(style_model, nz)?;
    let styles = predict_styles(&mut s, &images, Arc::clone(pool));
    let embed = |caps: &[String]| {
        let texts: Vec<&str> = caps.iter().map(String::as_str).collect();
        embed_texts(ws, &texts, Arc::clone(pool))
    };
    let (text_emb, content_emb) = (embed(&captions)?, embed(&content)?);
    let e = ws.config().encoder.embed_dim;
    let row = |feature: &str, f: &[f32], dim: usize| StyleRow {
        feature: feature.to_string(),
        background: verify(f, dim, &bg_clusters, FOLDS, seed),
        pose: verify(f, dim, &pose_clusters, FOLDS, seed),
    };
    Ok(vec![
        row("style vector S(image)", &styles, nz),
        row("caption embedding (baseline)", &text_emb, e),
        row("caption embedding, a caption naming no background", &content_emb, e),
    ])
}

pub fn print(rows: &[StyleRow], images: usize) {
    println!(
        "| feature (cosine similarity, {images} real held-out images, {FOLDS} folds) | background AUC | pose AUC |"
    );
    println!("|---|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.3} ± {:.3} | {:.3} ± {:.3} |",
            r.feature, r.background.auc_mean, r.background.auc_std, r.pose.auc_mean, r.pose.auc_std
        );
    }
}

/// Writes PREFIX.csv (method, property, fpr, tpr) and PREFIX.png (the curves; background solid
/// colours, pose lighter; the diagonal is chance).
pub fn write_roc(prefix: &Path, rows: &[StyleRow]) -> Result<(), Failure> {
    let mut csv = String::from("feature,property,fpr,tpr\n");
    for r in rows {
        for (prop, v) in [("background", &r.background), ("pose", &r.pose)] {
            for (x, y) in &v.curve {
                let _ = writeln!(csv, "\"{}\",{prop},{x:.5},{y:.5}", r.feature);
            }
        }
    }
    let csv_path = prefix.with_extension("csv");
    std::fs::write(&csv_path, csv)
        .map_err(|e| fail(EXIT_OUTPUT, format!("cannot write {}: {e}", csv_path.display())))?;
    const SIDE: f64 = 256.0;
    const M: f64 = 16.0;
    let mut img = Rgb8::filled((SIDE + 2.0 * M) as usize, (SIDE + 2.0 * M) as usize, [255, 255, 255]);
    let at = |(x, y): (f64, f64)| (M + x * SIDE, M + (1.0 - y) * SIDE);
    let grey = [160, 160, 160];
    for (a, b) in
        [((0.0, 0.0), (1.0, 0.0)), ((0.0, 0.0), (0.0, 1.0)), ((1.0, 0.0), (1.0, 1.0)), ((0.0, 1.0), (1.0, 1.0))]
    {
        img.line(at(a), at(b), [0, 0, 0], 1);
    }
    img.line(at((0.0, 0.0)), at((1.0, 1.0)), grey, 1);
    let colours =
        [([200, 30, 30], [240, 150, 150]), ([30, 60, 200], [150, 170, 240]), ([30, 150, 60], [150, 220, 160])];
    for (r, (solid, light)) in rows.iter().zip(colours) {
        for (v, c) in [(&r.pose, light), (&r.background, solid)] {
            for w in v.curve.windows(2) {
                img.line(at(w[0]), at(w[1]), c, 2);
            }
        }
    }
    let png_path = prefix.with_extension("png");
    let legend =
        rows.iter().zip(["red", "blue", "green"]).map(|(r, c)| format!("{c}: {}", r.feature)).collect::<Vec<_>>();
    let text = vec![("roc".to_string(), format!("{} (dark: background, light: pose)", legend.join("; ")))];
    write_png(&png_path, &img, &text)
        .map_err(|e| fail(EXIT_OUTPUT, format!("cannot write {}: {e}", png_path.display())))
}

#[cfg(test)]
mod tests {
    use super::mean_centre_distance;

    #[test]
    fn centre_distance_to_own_and_to_another_style() {
        let style = [[10.0, 10.0], [40.0, 50.0], [10.0, 40.0]];
        // Outputs at their own style's centre but one (off by 3, 4) and one with no shape found.
        let found = [Some([10.0, 10.0]), Some([43.0, 54.0]), None];
        let own = mean_centre_distance(&found, &style, 0).expect("found");
        assert!((own - 2.5).abs() < 1e-9);
        // Shifted by one: (10,10)→(40,50) is 50 px, (43,54)→(10,40) is √(33² + 14²).
        let want = (50.0 + (33.0f64 * 33.0 + 14.0 * 14.0).sqrt()) / 2.0;
        let other = mean_centre_distance(&found, &style, 1).expect("found");
        assert!((other - want).abs() < 1e-6);
        assert_eq!(mean_centre_distance(&[None, None, None], &style, 0), None);
    }
}
