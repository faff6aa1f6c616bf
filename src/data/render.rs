//! Rasterising one shape on a background for the `shapes` dataset.
//!
//! Shapes are signed distance functions in a unit frame (the shape fits the unit circle; y points
//! up), placed by centre, radius in pixels and rotation. Anti-aliasing is adaptive: a pixel whose
//! centre is more than one pixel from the edge is fully in or out (the SDFs are exact distances,
//! and a pixel's corners lie within 0.71 px of its centre); edge pixels are supersampled 4×4.
//! All randomness comes from the caller's generator, so one seed gives identical bytes.

use super::image_io::Rgb8Image;
use super::rng::Pcg32;

/// The eight shapes, in class order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Star,
    Cross,
    Diamond,
    Heart,
    Ring,
}

impl Shape {
    /// Position in `ALL` (the class order).
    pub fn index(self) -> usize {
        Shape::ALL.iter().position(|&s| s == self).unwrap_or_default()
    }

    /// All shapes in class order.
    pub const ALL: [Shape; 8] = [
        Shape::Circle,
        Shape::Square,
        Shape::Triangle,
        Shape::Star,
        Shape::Cross,
        Shape::Diamond,
        Shape::Heart,
        Shape::Ring,
    ];

    /// The word captions use.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Star => "star",
            Shape::Cross => "cross",
            Shape::Diamond => "diamond",
            Shape::Heart => "heart",
            Shape::Ring => "ring",
        }
    }

    /// Largest rotation in degrees either way. Square, cross and diamond stay near upright so a
    /// rotated square is not a diamond and a rotated cross is not an X; round shapes spin freely.
    pub fn max_rotation_deg(self) -> f32 {
        match self {
            Shape::Circle | Shape::Ring => 180.0,
            Shape::Star => 36.0,
            Shape::Triangle => 25.0,
            Shape::Square | Shape::Cross | Shape::Diamond | Shape::Heart => 20.0,
        }
    }

    /// Signed distance (in unit-frame units) from `(x, y)` (y up) to the shape's edge.
    pub fn sdf(self, x: f32, y: f32) -> f32 {
        match self {
            Shape::Circle => (x * x + y * y).sqrt() - 1.0,
            Shape::Square => sd_box(x, y, 0.8, 0.8),
            Shape::Triangle => sd_equilateral_triangle(x, y, 0.866),
            Shape::Star => sd_star5(x, y, 1.0, 0.45),
            Shape::Cross => sd_cross(x, y, 0.95, 0.32),
            Shape::Diamond => sd_rhombus(x, y, 0.62, 1.0),
            Shape::Heart => {
                // The unit heart spans y in [0, 1.1]: scale and centre it on the origin.
                let s = 0.6;
                sd_heart(x * s, y * s + 0.552) / s
            }
            Shape::Ring => ((x * x + y * y).sqrt() - 0.75).abs() - 0.25,
        }
    }
}

// The SDFs below follow Inigo Quilez's exact 2-D distance functions (iquilezles.org).

fn sd_box(x: f32, y: f32, bx: f32, by: f32) -> f32 {
    let dx = x.abs() - bx;
    let dy = y.abs() - by;
    let ox = dx.max(0.0);
    let oy = dy.max(0.0);
    (ox * ox + oy * oy).sqrt() + dx.max(dy).min(0.0)
}

fn sd_equilateral_triangle(x: f32, y: f32, r: f32) -> f32 {
    let k = 3f32.sqrt();
    let mut px = x.abs() - r;
    let mut py = y + r / k;
    if px + k * py > 0.0 {
        let nx = (px - k * py) / 2.0;
        let ny = (-k * px - py) / 2.0;
        px = nx;
        py = ny;
    }
    px -= px.clamp(-2.0 * r, 0.0);
    -(px * px + py * py).sqrt() * py.signum()
}

fn sd_star5(x: f32, y: f32, r: f32, rf: f32) -> f32 {
    let (k1x, k1y) = (0.809_017_f32, -0.587_785_3_f32);
    let (k2x, k2y) = (-k1x, k1y);
    let mut px = x.abs();
    let mut py = y;
    let d1 = 2.0 * (k1x * px + k1y * py).max(0.0);
    px -= d1 * k1x;
    py -= d1 * k1y;
    let d2 = 2.0 * (k2x * px + k2y * py).max(0.0);
    px -= d2 * k2x;
    py -= d2 * k2y;
    px = px.abs();
    py -= r;
    let (bax, bay) = (rf * -k1y, rf * k1x - 1.0);
    let h = ((px * bax + py * bay) / (bax * bax + bay * bay)).clamp(0.0, r);
    let (dx, dy) = (px - h * bax, py - h * bay);
    (dx * dx + dy * dy).sqrt() * (py * bax - px * bay).signum()
}

fn sd_cross(x: f32, y: f32, bx: f32, by: f32) -> f32 {
    let (mut px, mut py) = (x.abs(), y.abs());
    if py > px {
        std::mem::swap(&mut px, &mut py);
    }
    let (qx, qy) = (px - bx, py - by);
    let k = qx.max(qy);
    let (wx, wy) = if k > 0.0 { (qx, qy) } else { (by - px, -k) };
    let (wx, wy) = (wx.max(0.0), wy.max(0.0));
    k.signum() * (wx * wx + wy * wy).sqrt()
}

fn sd_rhombus(x: f32, y: f32, bx: f32, by: f32) -> f32 {
    let (px, py) = (x.abs(), y.abs());
    // ndot(b - 2p, b) / dot(b, b)
    let h = (((bx - 2.0 * px) * bx - (by - 2.0 * py) * by) / (bx * bx + by * by)).clamp(-1.0, 1.0);
    let (dx, dy) = (px - 0.5 * bx * (1.0 - h), py - 0.5 * by * (1.0 + h));
    (dx * dx + dy * dy).sqrt() * (px * by + py * bx - bx * by).signum()
}

fn sd_heart(x: f32, y: f32) -> f32 {
    let px = x.abs();
    let py = y;
    if py + px > 1.0 {
        let (dx, dy) = (px - 0.25, py - 0.75);
        return (dx * dx + dy * dy).sqrt() - 2f32.sqrt() / 4.0;
    }
    let a = px * px + (py - 1.0) * (py - 1.0);
    let m = 0.5 * (px + py).max(0.0);
    let b = (px - m) * (px - m) + (py - m) * (py - m);
    a.min(b).sqrt() * (px - py).signum()
}

/// How the background is painted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Background {
    Flat,
    Gradient,
    Radial,
    Stripes,
    Checker,
}

impl Background {
    const ALL: [Background; 5] =
        [Background::Flat, Background::Gradient, Background::Radial, Background::Stripes, Background::Checker];

    /// A uniformly drawn style.
    pub fn draw(rng: &mut Pcg32) -> Self {
        Self::ALL[rng.index(Self::ALL.len())]
    }
}

/// Everything the rasteriser needs, all in pixels and degrees.
#[derive(Clone, Debug)]
pub struct Scene {
    pub size: u32,
    pub shape: Shape,
    pub shape_rgb: [u8; 3],
    pub background_rgb: [u8; 3],
    pub background: Background,
    /// Centre of the shape, pixels from the top-left corner.
    pub cx: f32,
    pub cy: f32,
    /// Half-extent of the shape in pixels.
    pub radius: f32,
    pub rotation_deg: f32,
}

/// Draws `scene`; `rng` supplies the texture, shading direction and noise.
pub fn render(scene: &Scene, rng: &mut Pcg32) -> Rgb8Image {
    let mut img = Rgb8Image::new(scene.size, scene.size);
    paint_background(&mut img, scene, rng);
    paint_shape(&mut img, scene, rng);
    img
}

fn clamp_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

fn paint_background(img: &mut Rgb8Image, scene: &Scene, rng: &mut Pcg32) {
    let n = scene.size as f32;
    let angle = rng.range(0.0, std::f32::consts::TAU);
    let (dx, dy) = (angle.cos(), angle.sin());
    let amp = rng.range(10.0, 28.0);
    let period = rng.range(5.0, 12.0);
    let noise = rng.range(1.0, 5.0);
    let (ox, oy) = (rng.range(0.0, n), rng.range(0.0, n));
    let base = scene.background_rgb.map(f32::from);
    for y in 0..scene.size {
        for x in 0..scene.size {
            let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
            let t = match scene.background {
                Background::Flat => 0.0,
                Background::Gradient => ((fx - n / 2.0) * dx + (fy - n / 2.0) * dy) / n,
                Background::Radial => {
                    let r = ((fx - ox).powi(2) + (fy - oy).powi(2)).sqrt() / n;
                    0.5 - r
                }
                Background::Stripes => {
                    let s = (fx * dx + fy * dy) / period;
                    0.25 * (s * std::f32::consts::TAU).sin()
                }
                Background::Checker => {
                    let cx = ((fx + ox) / period).floor() as i32;
                    let cy = ((fy + oy) / period).floor() as i32;
                    if (cx + cy) % 2 == 0 {
                        0.2
                    } else {
                        -0.2
                    }
                }
            };
            let jitter = (rng.unit() as f32 - 0.5) * 2.0 * noise;
            let off = amp * t * 2.0 + jitter;
            let i = (y as usize * scene.size as usize + x as usize) * 3;
            for (dst, b) in img.pixels[i..i + 3].iter_mut().zip(base) {
                *dst = clamp_u8(b + off);
            }
        }
    }
}

fn paint_shape(img: &mut Rgb8Image, scene: &Scene, rng: &mut Pcg32) {
    let light = rng.range(0.0, std::f32::consts::TAU);
    let (lx, ly) = (light.cos(), light.sin());
    let shade = rng.range(6.0, 30.0);
    let (sin, cos) = scene.rotation_deg.to_radians().sin_cos();
    let r = scene.radius;
    let base = scene.shape_rgb.map(f32::from);
    let n = scene.size as i32;
    let x0 = ((scene.cx - r * 1.2 - 2.0).floor() as i32).clamp(0, n);
    let x1 = ((scene.cx + r * 1.2 + 2.0).ceil() as i32).clamp(0, n);
    let y0 = ((scene.cy - r * 1.2 - 2.0).floor() as i32).clamp(0, n);
    let y1 = ((scene.cy + r * 1.2 + 2.0).ceil() as i32).clamp(0, n);
    // Unit-frame coordinates of an image point: rotate by -rotation, flip y so it points up.
    let to_unit = |px: f32, py: f32| {
        let (dx, dy) = ((px - scene.cx) / r, (scene.cy - py) / r);
        (cos * dx + sin * dy, -sin * dx + cos * dy)
    };
    let dist_px = |px: f32, py: f32| {
        let (ux, uy) = to_unit(px, py);
        scene.shape.sdf(ux, uy) * r
    };
    for y in y0..y1 {
        for x in x0..x1 {
            let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
            let d = dist_px(fx, fy);
            let cover = if d <= -1.0 {
                1.0
            } else if d >= 1.0 {
                0.0
            } else {
                supersample(&dist_px, fx, fy)
            };
            if cover <= 0.0 {
                continue;
            }
            let (ux, uy) = to_unit(fx, fy);
            let lit = shade * (ux * lx + uy * ly).clamp(-1.2, 1.2);
            let i = (y as usize * scene.size as usize + x as usize) * 3;
            for (dst, b) in img.pixels[i..i + 3].iter_mut().zip(base) {
                let fg = (b + lit).clamp(0.0, 255.0);
                let bg = f32::from(*dst);
                *dst = clamp_u8(bg + (fg - bg) * cover);
            }
        }
    }
}

/// Fraction of a 4×4 grid of sub-pixel points inside the shape.
fn supersample(dist_px: &impl Fn(f32, f32) -> f32, fx: f32, fy: f32) -> f32 {
    let mut inside = 0u32;
    for sy in 0..4 {
        for sx in 0..4 {
            let ox = (sx as f32 + 0.5) / 4.0 - 0.5;
            let oy = (sy as f32 + 0.5) / 4.0 - 0.5;
            if dist_px(fx + ox, fy + oy) < 0.0 {
                inside += 1;
            }
        }
    }
    inside as f32 / 16.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_contains_its_centre_and_not_far_points() {
        for s in Shape::ALL {
            let centre = if s == Shape::Ring { s.sdf(0.75, 0.0) } else { s.sdf(0.0, 0.0) };
            assert!(centre < 0.0, "{s:?} centre outside");
            assert!(s.sdf(1.3, 1.3) > 0.0, "{s:?} corner inside");
            assert!(s.sdf(0.0, 1.25) > 0.0, "{s:?} top inside");
        }
    }
}
