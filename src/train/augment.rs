//! D's augmentation (DiffAugment, Zhao et al. 2020; not in the paper): every image D sees, real,
//! wrong and G's alike, is transformed by one of the square's symmetries (`d_flip`) and then
//! moved (`d_shift`), each image by its own draw from the seed per step and pass, so a resumed
//! run draws the same. Both maps are linear; G's image gradient goes back through their
//! adjoints in reverse order.

use super::gan::GanOptions;
use crate::data::rng::Pcg32;
use crate::ops::flip::{flip_images, flip_images_backward, FLIPS};
use crate::ops::shift::{shift_images, shift_images_backward};

/// Mixed into the seed for D's translations (`d_shift`; pass p of step s: stream 4·s + p).
pub const SHIFT_KEY: u64 = 0x7368_6966_745f_6478;
/// Mixed into the seed for D's symmetries (`d_flip`; pass p of step s: stream 4·s + p).
pub const FLIP_KEY: u64 = 0x666c_6970_5f64_3468;
/// Mixed into the seed for which images are augmented (`d_augment_p` < 1; same streams).
pub const AUGMENT_P_KEY: u64 = 0x6175_676d_5f70_7072;
/// An image's (channels, height, width): `model::pipeline::IMAGE_LEN` values.
pub const IMAGE_DIMS: (usize, usize, usize) = (3, 64, 64);
const _: () = assert!(IMAGE_DIMS.0 * IMAGE_DIMS.1 * IMAGE_DIMS.2 == crate::model::pipeline::IMAGE_LEN);

/// One pass's augmentation of its rows: a symmetry and/or an offset per image (None: off).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DAugment {
    pub flips: Option<Vec<u8>>,
    pub shifts: Option<Vec<[i32; 2]>>,
}

impl GanOptions {
    /// The `d_shift` offsets [dy, dx], each in [−N, N], of the `rows` images of pass `pass` (0
    /// real, 1 wrong, 2 G's in the D step, 3 the G step) at `step`.
    pub fn d_shifts(&self, step: u64, pass: u64, rows: usize) -> Vec<[i32; 2]> {
        let n = self.d_shift;
        let mut rng = Pcg32::derive(self.seed ^ SHIFT_KEY, step * 4 + pass);
        let mut offset = || rng.below(2 * n + 1) as i32 - n as i32;
        (0..rows).map(|_| [offset(), offset()]).collect()
    }

    /// The `d_flip` transforms (`ops::flip`, each in 0..8) of pass `pass`'s `rows` images.
    pub fn d_flips(&self, step: u64, pass: u64, rows: usize) -> Vec<u8> {
        let mut rng = Pcg32::derive(self.seed ^ FLIP_KEY, step * 4 + pass);
        (0..rows).map(|_| rng.below(FLIPS) as u8).collect()
    }

    /// Which of pass `pass`'s `rows` images are augmented (`d_augment_p`; None: all). Drawn
    /// apart from the augmentation itself, so p = 1 draws what it drew before p existed.
    pub fn d_augmented(&self, step: u64, pass: u64, rows: usize) -> Option<Vec<bool>> {
        let p = f64::from(self.d_augment_p);
        (p < 1.0).then(|| {
            let mut rng = Pcg32::derive(self.seed ^ AUGMENT_P_KEY, step * 4 + pass);
            (0..rows).map(|_| rng.chance(p)).collect()
        })
    }

    /// D's augmentation of pass `pass` at `step` (both parts off: the identity); images left
    /// as they are (`d_augment_p`) get transform 0 and offset 0.
    pub fn d_augment(&self, step: u64, pass: u64, rows: usize) -> DAugment {
        let on = self.d_augmented(step, pass, rows);
        let on = on.as_deref();
        DAugment {
            flips: self.d_flip.then(|| only_on(self.d_flips(step, pass, rows), on, 0)),
            shifts: (self.d_shift > 0).then(|| only_on(self.d_shifts(step, pass, rows), on, [0, 0])),
        }
    }
}

impl DAugment {
    /// Neither part on.
    pub fn is_identity(&self) -> bool {
        self.flips.is_none() && self.shifts.is_none()
    }

    /// `out` = the images of `x` transformed, then moved. `tmp` holds the middle when both are
    /// on (grown to x's size as needed).
    pub fn apply(&self, x: &[f32], out: &mut [f32], tmp: &mut Vec<f32>) {
        match (&self.flips, &self.shifts) {
            (None, None) => out.copy_from_slice(x),
            (Some(f), None) => flip_images(x, IMAGE_DIMS, f, out),
            (None, Some(s)) => shift_images(x, IMAGE_DIMS, s, out),
            (Some(f), Some(s)) => {
                let mid = middle(tmp, x.len());
                flip_images(x, IMAGE_DIMS, f, mid);
                shift_images(mid, IMAGE_DIMS, s, out);
            }
        }
    }

    /// dx = the gradient of `apply` with respect to its input given dy of its output: moved
    /// back, then transformed back (overwrites dx).
    pub fn backward(&self, dy: &[f32], dx: &mut [f32], tmp: &mut Vec<f32>) {
        match (&self.flips, &self.shifts) {
            (None, None) => dx.copy_from_slice(dy),
            (Some(f), None) => flip_images_backward(dy, IMAGE_DIMS, f, dx),
            (None, Some(s)) => shift_images_backward(dy, IMAGE_DIMS, s, dx),
            (Some(f), Some(s)) => {
                let mid = middle(tmp, dy.len());
                shift_images_backward(dy, IMAGE_DIMS, s, mid);
                flip_images_backward(mid, IMAGE_DIMS, f, dx);
            }
        }
    }
}

/// `draws` with those of the images not augmented (`on` false) replaced by `identity`.
fn only_on<T: Copy>(mut draws: Vec<T>, on: Option<&[bool]>, identity: T) -> Vec<T> {
    if let Some(on) = on {
        draws.iter_mut().zip(on).filter(|(_, &on)| !on).for_each(|(d, _)| *d = identity);
    }
    draws
}

/// The first `n` elements of `tmp`, grown if it is shorter.
fn middle(tmp: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if tmp.len() < n {
        tmp.resize(n, 0.0);
    }
    &mut tmp[..n]
}
