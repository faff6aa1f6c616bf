//! Soft shape masks: how unlike its own border each pixel of an image is, squashed to [0, 1].
//! The mode-seeking term measured on these masks pays G for moving the shape, not for tinting or
//! shading the background (a tint moves the border too; shading stays under the threshold):
//! docs/RESULTS.md, sessions 14–15.
//!
//! For an image x [C, H, W] with border colour b (each channel's mean over the outer `ring`
//! pixels), pixel p's distance is d_p = √(Σ_c (x_cp − b_c)² + ε) and its mask value
//! m_p = σ((d_p − threshold) / softness).

/// Keeps d_p differentiable where a pixel equals the border colour.
const DIST_EPS: f64 = 1e-6;

/// The mask's geometry and squashing: images [channels, height, width], the border ring's
/// width in pixels, and the distance (in the images' units) at which a pixel is half shape.
#[derive(Clone, Copy, Debug)]
pub struct ShapeMask {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub ring: usize,
    pub threshold: f32,
    pub softness: f32,
}

impl ShapeMask {
    /// The `shapes` images in [−1, 1]: a 2-pixel ring (shapes keep 1.5 px clear of the edge),
    /// half shape at 0.35 (the closest palette pair, orange and yellow, is 0.67 apart; the
    /// backgrounds' shading stays within about 0.15 of their mean).
    pub fn shapes(channels: usize, height: usize, width: usize) -> ShapeMask {
        ShapeMask { channels, height, width, ring: 2, threshold: 0.35, softness: 0.08 }
    }

    fn pixels(&self) -> usize {
        self.height * self.width
    }

    /// Whether pixel (i, j) lies in the border ring.
    fn in_ring(&self, i: usize, j: usize) -> bool {
        let r = self.ring;
        i < r || j < r || i + r >= self.height || j + r >= self.width
    }

    /// Pixels in the ring.
    fn ring_len(&self) -> usize {
        let inner = |n: usize| n.saturating_sub(2 * self.ring);
        self.pixels() - inner(self.height) * inner(self.width)
    }

    /// Each channel's mean over the ring of one image.
    fn border(&self, x: &[f32]) -> Vec<f64> {
        let (w, n) = (self.width, self.ring_len().max(1) as f64);
        let ring = |p: &usize| self.in_ring(p / w, p % w);
        let plane = |c: usize| &x[c * self.pixels()..(c + 1) * self.pixels()];
        let mean = |c: usize| (0..self.pixels()).filter(ring).map(|p| f64::from(plane(c)[p])).sum::<f64>() / n;
        (0..self.channels).map(mean).collect()
    }

    /// Pixel p's distance from the border colour.
    fn distance(&self, x: &[f32], b: &[f64], p: usize) -> f64 {
        let hw = self.pixels();
        let sq: f64 = b.iter().enumerate().map(|(c, &bc)| (f64::from(x[c * hw + p]) - bc).powi(2)).sum();
        (sq + DIST_EPS).sqrt()
    }

    fn squash(&self, d: f64) -> f64 {
        1.0 / (1.0 + (-(d - f64::from(self.threshold)) / f64::from(self.softness)).exp())
    }

    fn check(&self, x: &[f32], masks: &[f32]) -> usize {
        let (hw, c) = (self.pixels(), self.channels);
        assert!(hw > 0 && c > 0 && self.ring > 0 && self.softness > 0.0, "shape mask geometry {self:?}");
        let images = x.len() / (c * hw);
        assert!(x.len() == images * c * hw && masks.len() == images * hw, "shape mask sizes");
        images
    }

    /// The masks [N, H, W] of images [N, C, H, W].
    pub fn forward(&self, x: &[f32], masks: &mut [f32]) {
        self.check(x, masks);
        let (hw, chw) = (self.pixels(), self.channels * self.pixels());
        for (img, m) in x.chunks(chw).zip(masks.chunks_mut(hw)) {
            let b = self.border(img);
            for (p, mp) in m.iter_mut().enumerate() {
                *mp = self.squash(self.distance(img, &b, p)) as f32;
            }
        }
    }

    /// dx (overwritten) from dmasks, through each pixel's own distance and through the border
    /// colour every distance is taken from.
    pub fn backward(&self, x: &[f32], dmasks: &[f32], dx: &mut [f32]) {
        self.check(x, dmasks);
        assert_eq!(dx.len(), x.len(), "shape mask gradient size");
        let (hw, chw, w) = (self.pixels(), self.channels * self.pixels(), self.width);
        let ring_share = 1.0 / self.ring_len().max(1) as f64;
        for ((img, dm), dimg) in x.chunks(chw).zip(dmasks.chunks(hw)).zip(dx.chunks_mut(chw)) {
            let b = self.border(img);
            let mut db = vec![0.0f64; self.channels];
            for (p, &g) in dm.iter().enumerate() {
                let d = self.distance(img, &b, p);
                let m = self.squash(d);
                // ∂m/∂x_cp = m(1 − m)/softness · (x_cp − b_c)/d.
                let a = f64::from(g) * m * (1.0 - m) / f64::from(self.softness) / d;
                for (c, &bc) in b.iter().enumerate() {
                    let v = a * (f64::from(img[c * hw + p]) - bc);
                    dimg[c * hw + p] = v as f32;
                    db[c] -= v;
                }
            }
            // Each ring pixel is 1/|ring| of the border colour.
            for p in (0..hw).filter(|&p| self.in_ring(p / w, p % w)) {
                for (c, &g) in db.iter().enumerate() {
                    dimg[c * hw + p] += (g * ring_share) as f32;
                }
            }
        }
    }
}
