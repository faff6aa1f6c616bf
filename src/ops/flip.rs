//! The eight symmetries of a square image (the dihedral group: mirrors and quarter turns): D's
//! augmentation (`train --d-flip`). The `shapes` images are drawn at random rotations, so every
//! symmetry keeps every label, and unlike a translation it keeps a centred shape centred.
//!
//! Transform t ∈ 0..8 of a [C, H, W] image: bit 0 mirrors columns, bit 1 mirrors rows, bit 2
//! transposes (after the mirrors, read from the output side): out[y][x] = in[sy][sx] with
//! (a, b) = (x, y) if transposed else (y, x), sy = H−1−a if bit 1 else a, sx = W−1−b if bit 0
//! else b. Each is a permutation of pixels, so its adjoint (the backward pass) is its inverse
//! (`inverse_flip`), applied by the same function.

/// Number of transforms.
pub const FLIPS: u32 = 8;

/// The transform undoing `t`: a transposed one with its two mirror bits swapped, else `t`.
pub fn inverse_flip(t: u8) -> u8 {
    match t & 4 {
        0 => t,
        _ => 4 | (t & 1) << 1 | (t & 2) >> 1,
    }
}

/// `out` = each image of `x` ([B, c, h, w], B = flips.len()) under its transform; every element
/// of `out` written. Transposing transforms need h = w.
pub fn flip_images(x: &[f32], (c, h, w): (usize, usize, usize), flips: &[u8], out: &mut [f32]) {
    let plane = h * w;
    assert!(x.len() == flips.len() * c * plane && out.len() == x.len(), "flip_images sizes");
    for (i, &t) in flips.iter().enumerate() {
        assert!(t < 8 && (t < 4 || h == w), "flip_images: transform {t} of a {h}×{w} image");
        for ch in 0..c {
            let at = (i * c + ch) * plane;
            let (src, dst) = (&x[at..at + plane], &mut out[at..at + plane]);
            for (y, row) in dst.chunks_exact_mut(w).enumerate() {
                flip_row(src, (h, w), t, y, row);
            }
        }
    }
}

/// Output row `y` of one plane under transform `t`.
fn flip_row(src: &[f32], (h, w): (usize, usize), t: u8, y: usize, row: &mut [f32]) {
    let mirror = |v: usize, n: usize, on: bool| if on { n - 1 - v } else { v };
    if t & 4 == 0 {
        // A whole source row, reversed when columns are mirrored.
        let sy = mirror(y, h, t & 2 != 0);
        let line = &src[sy * w..(sy + 1) * w];
        match t & 1 {
            0 => row.copy_from_slice(line),
            _ => row.iter_mut().zip(line.iter().rev()).for_each(|(o, &v)| *o = v),
        }
    } else {
        // A source column: x walks the rows.
        let sx = mirror(y, w, t & 1 != 0);
        for (x, o) in row.iter_mut().enumerate() {
            *o = src[mirror(x, h, t & 2 != 0) * w + sx];
        }
    }
}

/// dx = the gradient of `flip_images` with respect to its input, given dy of its output: the
/// inverse transforms (overwrites dx).
pub fn flip_images_backward(dy: &[f32], dims: (usize, usize, usize), flips: &[u8], dx: &mut [f32]) {
    let back: Vec<u8> = flips.iter().map(|&t| inverse_flip(t)).collect();
    flip_images(dy, dims, &back, dx);
}

/// The plain reference: each transform as its elementary steps (mirror columns, mirror rows,
/// then transpose), one pixel at a time.
pub fn flip_images_ref(x: &[f32], (c, h, w): (usize, usize, usize), flips: &[u8], out: &mut [f32]) {
    let plane = h * w;
    for (i, &t) in flips.iter().enumerate() {
        for ch in 0..c {
            let at = (i * c + ch) * plane;
            let mut img: Vec<Vec<f32>> = (0..h).map(|y| x[at + y * w..at + (y + 1) * w].to_vec()).collect();
            if t & 1 != 0 {
                img.iter_mut().for_each(|r| r.reverse());
            }
            if t & 2 != 0 {
                img.reverse();
            }
            if t & 4 != 0 {
                img = (0..w).map(|col| img.iter().map(|r| r[col]).collect()).collect();
            }
            for (y, r) in img.iter().enumerate() {
                out[at + y * w..at + (y + 1) * w].copy_from_slice(r);
            }
        }
    }
}
