//! PNG writing with the `png` crate, so text chunks can be added: ASCII values as tEXt, others
//! as UTF-8 iTXt (tEXt is Latin-1). Written to a temp file and renamed, so a failed write never
//! leaves a torn image.

use std::path::Path;

use super::Rgb8;
use crate::error::{Error, Result};
use crate::weights::writer::write_atomic;

/// A key/value text chunk.
pub type PngText = (String, String);

/// Encodes `img` as PNG bytes with `text` chunks.
pub fn encode_png(img: &Rgb8, text: &[PngText]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let err = |e: png::EncodingError| Error::Input(format!("PNG encoding failed: {e}"));
    {
        let mut enc = png::Encoder::new(&mut out, img.width as u32, img.height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        for (k, v) in text {
            if v.is_ascii() && !v.contains('\0') {
                enc.add_text_chunk(k.clone(), v.clone()).map_err(err)?;
            } else {
                enc.add_itxt_chunk(k.clone(), v.clone()).map_err(err)?;
            }
        }
        let mut writer = enc.write_header().map_err(err)?;
        writer.write_image_data(&img.data).map_err(err)?;
        writer.finish().map_err(err)?;
    }
    Ok(out)
}

/// Writes `img` to `path` as PNG with `text` chunks, atomically.
pub fn write_png(path: &Path, img: &Rgb8, text: &[PngText]) -> Result<()> {
    write_atomic(path, &encode_png(img, text)?)
}
