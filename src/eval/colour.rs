//! The analytic half of the judge: colours, the shape's mask and its size, read from one 64×64
//! image. The background is the nearest palette colour to the median of the image's border
//! (shapes never touch it in real images); the shape colour is the commonest nearest-palette
//! colour among the other pixels; the mask says, per pixel, how much closer it is to the
//! measured shape colour than to the measured background, and its largest connected part is
//! the shape.

use crate::data::render::Shape;
use crate::data::shapes::{SizeWord, PALETTE};

/// Image side the judge reads.
pub const SIDE: usize = 64;
const PLANE: usize = SIDE * SIDE;
/// Border width (pixels) whose median is the background.
const BORDER: usize = 2;
/// Fewest pixels of one non-background colour that count as a shape.
const MIN_SHAPE_PIXELS: usize = 12;

/// What the colour reader found in one image.
#[derive(Clone, Debug)]
pub struct Reading {
    /// Palette index of the background.
    pub background: usize,
    /// Palette index of the shape, None when no shape stands out from the background.
    pub colour: Option<usize>,
    /// Per pixel in [0, 1]: 1 = shape colour, 0 = background; zero outside the largest
    /// connected part of the thresholded mask.
    pub mask: Vec<f32>,
    /// Pixels of that part (mask > 0.5).
    pub area: usize,
    /// Its bounding box: x0, y0, x1, y1 (exclusive ends).
    pub bbox: [usize; 4],
}

impl Reading {
    /// The centre of the shape's mask in pixels (x, y); None when no shape was found.
    pub fn centre(&self) -> Option<[f32; 2]> {
        self.colour?;
        let (mut x, mut y, mut w) = (0.0f64, 0.0f64, 0.0f64);
        for (p, &m) in self.mask.iter().enumerate() {
            let m = f64::from(m);
            (x, y, w) = (x + m * (p % SIDE) as f64, y + m * (p / SIDE) as f64, w + m);
        }
        (w > 0.0).then(|| [(x / w) as f32, (y / w) as f32])
    }
}

/// Converts a [3, 64, 64] image in [-1, 1] (the generator's output) to 0..255 RGB triples.
pub fn to_rgb(chw: &[f32]) -> Vec<[f32; 3]> {
    assert_eq!(chw.len(), 3 * PLANE, "the judge reads 3×64×64 images");
    (0..PLANE).map(|p| [0, 1, 2].map(|c| ((chw[c * PLANE + p].clamp(-1.0, 1.0) + 1.0) * 127.5).round())).collect()
}

fn dist2(a: [f32; 3], b: [f32; 3]) -> f32 {
    a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Palette index nearest to an RGB value.
pub fn nearest_palette(rgb: [f32; 3]) -> usize {
    let d = |i: usize| dist2(rgb, PALETTE[i].rgb.map(f32::from));
    (0..PALETTE.len()).min_by(|&a, &b| d(a).total_cmp(&d(b))).unwrap_or(0)
}

/// Per-channel median of some pixels.
fn median(pixels: impl Iterator<Item = [f32; 3]>) -> [f32; 3] {
    let all: Vec<[f32; 3]> = pixels.collect();
    [0, 1, 2].map(|c| {
        let mut v: Vec<f32> = all.iter().map(|p| p[c]).collect();
        v.sort_by(f32::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    })
}

fn on_border(p: usize) -> bool {
    let (x, y) = (p % SIDE, p / SIDE);
    x < BORDER || y < BORDER || x >= SIDE - BORDER || y >= SIDE - BORDER
}

/// Reads colours and the mask of one [3, 64, 64] image in [-1, 1].
pub fn read(chw: &[f32]) -> Reading {
    let rgb = to_rgb(chw);
    let bg_rgb = median((0..PLANE).filter(|&p| on_border(p)).map(|p| rgb[p]));
    let background = nearest_palette(bg_rgb);
    let nearest: Vec<usize> = rgb.iter().map(|&p| nearest_palette(p)).collect();
    let mut counts = [0usize; PALETTE.len()];
    for (p, &n) in nearest.iter().enumerate() {
        if n != background && !on_border(p) {
            counts[n] += 1;
        }
    }
    let best = (0..PALETTE.len()).max_by_key(|&i| counts[i]).filter(|&i| counts[i] >= MIN_SHAPE_PIXELS);
    let Some(colour) = best else {
        return Reading { background, colour: None, mask: vec![0.0; PLANE], area: 0, bbox: [0; 4] };
    };
    let fg_rgb = median((0..PLANE).filter(|&p| nearest[p] == colour).map(|p| rgb[p]));
    let mut mask: Vec<f32> = rgb
        .iter()
        .map(|&p| {
            let (b, f) = (dist2(p, bg_rgb), dist2(p, fg_rgb));
            if b + f > 0.0 {
                b / (b + f)
            } else {
                0.5
            }
        })
        .collect();
    let (keep, bbox) = largest_component(&mask);
    let area = keep.iter().filter(|&&k| k).count();
    // Outside the kept part only the fringe next to it may stay (anti-aliased edges).
    for (p, m) in mask.iter_mut().enumerate() {
        let (x, y) = (p % SIDE, p / SIDE);
        let near = x + 1 >= bbox[0] && x <= bbox[2] && y + 1 >= bbox[1] && y <= bbox[3];
        if !keep[p] && (*m > 0.5 || !near) {
            *m = 0.0;
        }
    }
    Reading { background, colour: Some(colour), mask, area, bbox }
}

/// The largest 4-connected set of pixels with mask > 0.5, and its bounding box.
fn largest_component(mask: &[f32]) -> (Vec<bool>, [usize; 4]) {
    let mut label = vec![0u32; PLANE];
    let (mut best, mut best_size, mut next) = (0u32, 0usize, 1u32);
    let mut stack = Vec::new();
    for start in 0..PLANE {
        if mask[start] <= 0.5 || label[start] != 0 {
            continue;
        }
        label[start] = next;
        stack.push(start);
        let mut size = 0;
        while let Some(p) = stack.pop() {
            size += 1;
            let (x, y) = (p % SIDE, p / SIDE);
            let neighbours = [
                (x > 0).then(|| p - 1),
                (x + 1 < SIDE).then(|| p + 1),
                (y > 0).then(|| p - SIDE),
                (y + 1 < SIDE).then(|| p + SIDE),
            ];
            for q in neighbours.into_iter().flatten() {
                if mask[q] > 0.5 && label[q] == 0 {
                    label[q] = next;
                    stack.push(q);
                }
            }
        }
        if size > best_size {
            (best, best_size) = (next, size);
        }
        next += 1;
    }
    let keep: Vec<bool> = label.iter().map(|&l| best_size > 0 && l == best).collect();
    let mut bbox = [SIDE, SIDE, 0, 0];
    for p in (0..PLANE).filter(|&p| keep[p]) {
        let (x, y) = (p % SIDE, p / SIDE);
        bbox = [bbox[0].min(x), bbox[1].min(y), bbox[2].max(x + 1), bbox[3].max(y + 1)];
    }
    if best_size == 0 {
        bbox = [0; 4];
    }
    (keep, bbox)
}

/// Area of `shape` at radius 1 (the unit frame of `Shape::sdf`), by sampling.
pub fn unit_area(shape: Shape) -> f32 {
    const N: usize = 400;
    let step = 3.0 / N as f32;
    let inside = (0..N * N)
        .filter(|i| {
            let (x, y) = (-1.5 + (i % N) as f32 * step, -1.5 + (i / N) as f32 * step);
            shape.sdf(x + step / 2.0, y + step / 2.0) <= 0.0
        })
        .count();
    inside as f32 * step * step
}

/// The size word whose radius range holds the radius that gives `area` pixels to `shape`.
pub fn size_from_area(area: usize, unit_area: f32) -> SizeWord {
    let r = (area as f32 / unit_area).sqrt();
    SizeWord::from_radius(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_areas_match_closed_forms() {
        let circle = unit_area(Shape::Circle);
        assert!((circle - std::f32::consts::PI).abs() < 0.02, "circle {circle}");
        let square = unit_area(Shape::Square);
        assert!((square - 2.56).abs() < 0.02, "square {square}");
        let ring = unit_area(Shape::Ring);
        assert!((ring - std::f32::consts::PI * 0.75).abs() < 0.03, "ring {ring}");
    }

    #[test]
    fn flat_image_has_no_shape() {
        let blue = PALETTE[4].rgb.map(|v| f32::from(v) / 127.5 - 1.0);
        let img: Vec<f32> = (0..3 * PLANE).map(|i| blue[i / PLANE]).collect();
        let r = read(&img);
        assert_eq!(r.background, 4);
        assert_eq!(r.colour, None);
        assert_eq!(r.area, 0);
    }
}
