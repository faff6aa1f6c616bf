//! Whole-image translation with zero padding: D's augmentation (`train --d-shift`, DiffAugment's
//! translation, Zhao et al. 2020). Image i of a [B, C, H, W] batch moves by shifts[i] = [dy, dx]
//! pixels: out[y][x] = in[y − dy][x − dx], 0 where that falls outside. The map is linear and its
//! adjoint is the shift by [−dy, −dx], so the backward pass is the same function with the shifts
//! negated (`shift_images_backward`).

/// `out` = each image of `x` ([B, c, h, w], B = shifts.len()) moved by its [dy, dx]; every
/// element of `out` written (0 where nothing lands).
pub fn shift_images(x: &[f32], (c, h, w): (usize, usize, usize), shifts: &[[i32; 2]], out: &mut [f32]) {
    let plane = h * w;
    assert!(x.len() == shifts.len() * c * plane && out.len() == x.len(), "shift_images sizes");
    for (i, &[dy, dx]) in shifts.iter().enumerate() {
        let image = i * c * plane;
        // Output columns [x0, x1) read input columns x − dx, all inside [0, w).
        let x0 = dx.clamp(0, w as i32) as usize;
        let x1 = (w as i32 + dx).clamp(0, w as i32) as usize;
        for ch in 0..c {
            for y in 0..h {
                let row = image + ch * plane + y * w;
                let dst = &mut out[row..row + w];
                let sy = y as i32 - dy;
                if sy < 0 || sy >= h as i32 || x0 >= x1 {
                    dst.fill(0.0);
                    continue;
                }
                let src = image + ch * plane + sy as usize * w;
                let s0 = (x0 as i32 - dx) as usize;
                dst[..x0].fill(0.0);
                dst[x0..x1].copy_from_slice(&x[src + s0..src + s0 + (x1 - x0)]);
                dst[x1..].fill(0.0);
            }
        }
    }
}

/// dx = the gradient of `shift_images` with respect to its input, given dy of its output: the
/// shift by the negated offsets (overwrites dx).
pub fn shift_images_backward(dy: &[f32], dims: (usize, usize, usize), shifts: &[[i32; 2]], dx: &mut [f32]) {
    let back: Vec<[i32; 2]> = shifts.iter().map(|&[a, b]| [-a, -b]).collect();
    shift_images(dy, dims, &back, dx);
}

/// The plain reference: one pixel at a time, straight from the definition.
pub fn shift_images_ref(x: &[f32], (c, h, w): (usize, usize, usize), shifts: &[[i32; 2]], out: &mut [f32]) {
    for (i, &[dy, dx]) in shifts.iter().enumerate() {
        for ch in 0..c {
            for y in 0..h as i32 {
                for xx in 0..w as i32 {
                    let (sy, sx) = (y - dy, xx - dx);
                    let inside = (0..h as i32).contains(&sy) && (0..w as i32).contains(&sx);
                    let at = |yy: i32, xv: i32| ((i * c + ch) * h + yy as usize) * w + xv as usize;
                    out[at(y, xx)] = if inside { x[at(sy, sx)] } else { 0.0 };
                }
            }
        }
    }
}
