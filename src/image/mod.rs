//! Images out: [-1, 1] CHW floats to 8-bit RGB, grids, and PNG files carrying their caption,
//! seed and model in text chunks.

pub mod png_out;

pub use png_out::{write_png, PngText};

/// An 8-bit RGB image, row-major HWC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rgb8 {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Rgb8 {
    /// Converts a [3, H, W] image in [-1, 1] (the generator's tanh range).
    pub fn from_chw(chw: &[f32], height: usize, width: usize) -> Rgb8 {
        assert_eq!(chw.len(), 3 * height * width, "image size");
        let plane = height * width;
        let mut data = vec![0u8; 3 * plane];
        for p in 0..plane {
            for c in 0..3 {
                let v = (chw[c * plane + p] + 1.0) * 0.5 * 255.0;
                data[3 * p + c] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
        Rgb8 { width, height, data }
    }

    /// Lays `images` (all the same size) out in `cols` columns with `gap` pixels of white
    /// between them.
    pub fn grid(images: &[Rgb8], cols: usize, gap: usize) -> Rgb8 {
        let cols = cols.clamp(1, images.len().max(1));
        let rows = images.len().div_ceil(cols);
        let (w, h) = images.first().map_or((0, 0), |i| (i.width, i.height));
        let width = cols * w + (cols + 1) * gap;
        let height = rows * h + (rows + 1) * gap;
        let mut data = vec![255u8; 3 * width * height];
        for (i, img) in images.iter().enumerate() {
            let (x0, y0) = (gap + (i % cols) * (w + gap), gap + (i / cols) * (h + gap));
            for y in 0..h {
                let dst = 3 * ((y0 + y) * width + x0);
                data[dst..dst + 3 * w].copy_from_slice(&img.data[3 * y * w..3 * (y + 1) * w]);
            }
        }
        Rgb8 { width, height, data }
    }

    /// A blank image of one colour.
    pub fn filled(width: usize, height: usize, rgb: [u8; 3]) -> Rgb8 {
        Rgb8 { width, height, data: rgb.repeat(width * height) }
    }

    /// Sets one pixel; points outside are ignored.
    pub fn put(&mut self, x: isize, y: isize, rgb: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = 3 * (y as usize * self.width + x as usize);
            self.data[i..i + 3].copy_from_slice(&rgb);
        }
    }

    /// A straight line between two points (inclusive), `thick` pixels wide.
    pub fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), rgb: [u8; 3], thick: isize) {
        let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
        for k in 0..=steps {
            let t = k as f64 / steps as f64;
            let (x, y) = ((x0 + t * (x1 - x0)).round() as isize, (y0 + t * (y1 - y0)).round() as isize);
            for dy in 0..thick {
                for dx in 0..thick {
                    self.put(x + dx - thick / 2, y + dy - thick / 2, rgb);
                }
            }
        }
    }
}
