//! Image decoding with limits, conversion to RGB8, resizing, and PNG writing.
//!
//! Every decode goes through [`decode_rgb8`]: the header is read first and its size checked
//! against [`DecodeLimits`] before any pixel buffer is allocated (a PNG that claims 100000×100000
//! is rejected without decoding), then `image`'s own `Limits` cap the decoder's allocations. Any
//! colour type and bit depth (grey, grey+alpha, RGBA, 16-bit, CMYK JPEG, palette) becomes RGB8;
//! alpha is dropped, as PIL's `convert("RGB")` does.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek};
use std::path::Path;

use super::error::{DataError, DataResult};

/// An RGB image with 8 bits per channel, rows top to bottom, pixels interleaved (HWC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rgb8Image {
    pub width: u32,
    pub height: u32,
    /// `width * height * 3` bytes.
    pub pixels: Vec<u8>,
}

impl Rgb8Image {
    /// A black image.
    pub fn new(width: u32, height: u32) -> Self {
        Rgb8Image { width, height, pixels: vec![0; width as usize * height as usize * 3] }
    }

    /// The three bytes of pixel (x, y).
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }

    /// Resized to `width`×`height` (aspect ratio not kept, as Reed's loader does) with a
    /// triangle (bilinear) filter whose support widens when shrinking, so large photos do not
    /// alias. Returns a copy when the size already matches.
    /// Writes the image as planes [3, H, W] in [-1, 1] (the networks' input layout).
    pub fn to_chw(&self, out: &mut [f32]) {
        let plane = self.width as usize * self.height as usize;
        assert_eq!(out.len(), 3 * plane, "to_chw output size");
        for (p, px) in self.pixels.chunks_exact(3).enumerate() {
            for (c, &v) in px.iter().enumerate() {
                out[c * plane + p] = f32::from(v) / 127.5 - 1.0;
            }
        }
    }

    pub fn resized(&self, width: u32, height: u32) -> Rgb8Image {
        if self.width == width && self.height == height {
            return self.clone();
        }
        let Some(buf) = image::RgbImage::from_raw(self.width, self.height, self.pixels.clone()) else {
            // Unreachable for images built by this module: the buffer length is always w*h*3.
            return Rgb8Image::new(width, height);
        };
        let out = image::imageops::resize(&buf, width, height, image::imageops::FilterType::Triangle);
        Rgb8Image { width, height, pixels: out.into_raw() }
    }
}

/// Size limits applied to every decoded image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted width or height in pixels.
    pub max_side: u32,
    /// Largest accepted pixel count (width × height).
    pub max_pixels: u64,
    /// Smallest accepted width or height: smaller images are reported as too small.
    pub min_side: u32,
    /// Cap on the decoder's allocations in bytes.
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits { max_side: 8192, max_pixels: 32 * 1024 * 1024, min_side: 8, max_alloc: 512 * 1024 * 1024 }
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::BadImage { path: path.to_path_buf(), reason: reason.into() }
}

/// Decodes the image file at `path` to RGB8, checking `limits` before decoding.
pub fn decode_rgb8(path: &Path, limits: &DecodeLimits) -> DataResult<Rgb8Image> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
    if len == 0 {
        return Err(bad(path, "empty file (0 bytes)"));
    }
    let mut reader = BufReader::new(file);
    check_jpeg_complete(path, &mut reader, len)?;
    let (w, h) = read_dimensions(path, &mut reader)?;
    check_dimensions(path, w, h, limits)?;
    reader.rewind().map_err(|e| DataError::io(path, e))?;
    let mut decoder = image::ImageReader::new(reader).with_guessed_format().map_err(|e| DataError::io(path, e))?;
    decoder.limits(image_limits(limits));
    let img = decoder.decode().map_err(|e| bad(path, format!("cannot decode: {e}")))?;
    let rgb = img.to_rgb8();
    let (width, height) = rgb.dimensions();
    Ok(Rgb8Image { width, height, pixels: rgb.into_raw() })
}

fn image_limits(limits: &DecodeLimits) -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    l.max_alloc = Some(limits.max_alloc);
    l
}

fn read_dimensions(path: &Path, reader: &mut BufReader<File>) -> DataResult<(u32, u32)> {
    let probe = image::ImageReader::new(&mut *reader).with_guessed_format().map_err(|e| DataError::io(path, e))?;
    if probe.format().is_none() {
        return Err(bad(path, "not an image (unknown format)"));
    }
    probe.into_dimensions().map_err(|e| bad(path, format!("cannot read image header: {e}")))
}

fn check_dimensions(path: &Path, w: u32, h: u32, limits: &DecodeLimits) -> DataResult<()> {
    if w > limits.max_side || h > limits.max_side || u64::from(w) * u64::from(h) > limits.max_pixels {
        return Err(bad(
            path,
            format!(
                "image header claims {w}×{h} pixels, over the limit of {} per side / {} in all \
                 (possible decompression bomb)",
                limits.max_side, limits.max_pixels
            ),
        ));
    }
    if w < limits.min_side || h < limits.min_side {
        return Err(bad(path, format!("image is {w}×{h} pixels, smaller than {} per side", limits.min_side)));
    }
    Ok(())
}

/// JPEG decoders tolerate a missing tail (they grey-fill it), so a truncated JPEG would train
/// silently on a half-grey picture. A complete JPEG ends with the EOI marker FF D9, possibly
/// followed by padding or a camera's trailer; require it within the last 64 KiB.
fn check_jpeg_complete(path: &Path, reader: &mut BufReader<File>, len: u64) -> DataResult<()> {
    let mut magic = [0u8; 3];
    let n = read_up_to(reader, &mut magic).map_err(|e| DataError::io(path, e))?;
    reader.rewind().map_err(|e| DataError::io(path, e))?;
    if n < 3 || magic != [0xFF, 0xD8, 0xFF] {
        return Ok(());
    }
    let tail_len = len.min(64 * 1024);
    reader.seek(std::io::SeekFrom::Start(len - tail_len)).map_err(|e| DataError::io(path, e))?;
    let mut tail = vec![0u8; tail_len as usize];
    let n = read_up_to(reader, &mut tail).map_err(|e| DataError::io(path, e))?;
    reader.rewind().map_err(|e| DataError::io(path, e))?;
    if tail[..n].windows(2).any(|w| w == [0xFF, 0xD9]) {
        Ok(())
    } else {
        Err(bad(path, "truncated JPEG (no end-of-image marker)"))
    }
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Writes an RGB8 image as PNG with the `png` crate (fast compression: datasets are written
/// once and read many times, but the generator must stay fast).
pub fn write_png(path: &Path, img: &Rgb8Image) -> DataResult<()> {
    let file = File::create(path).map_err(|e| DataError::io(path, e))?;
    let w = BufWriter::new(file);
    encode_png(w, img).map_err(|e| DataError::PngWrite { path: path.to_path_buf(), reason: e.to_string() })
}

/// Encodes an RGB8 image as PNG bytes into `out`.
pub fn encode_png<W: std::io::Write>(out: W, img: &Rgb8Image) -> Result<(), png::EncodingError> {
    let mut enc = png::Encoder::new(out, img.width, img.height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut writer = enc.write_header()?;
    writer.write_image_data(&img.pixels)?;
    writer.finish()
}

/// True when the file name has an image extension this crate decodes.
pub fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg" | "gif" | "bmp" | "webp"))
        .unwrap_or(false)
}
