//! Caption → one-hot: lower-case, Reed's 70-character alphabet ('-' → index 59 as in the Lua
//! dictionary; index 36 is never produced), unknown characters and padding as all-zero rows,
//! truncation at `doc_length` characters.

use super::config::ALPHABET;
use crate::error::{Error, Result};

/// Number of symbols in the alphabet.
pub const ALPHABET_SIZE: usize = 70;

/// What encoding a caption noticed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptionReport {
    /// Characters (after lower-casing) past `doc_length` that were dropped.
    pub truncated_chars: usize,
    /// Distinct characters outside the alphabet, in order of first appearance.
    pub unknown: Vec<char>,
}

/// Alphabet index of a (lower-cased) character, if it has one.
pub fn char_index(c: char) -> Option<usize> {
    if c == '-' {
        return Some(59);
    }
    ALPHABET.chars().position(|a| a == c)
}

/// Checks a caption is usable: not empty or whitespace only.
pub fn check_caption(caption: &str) -> Result<()> {
    if caption.trim().is_empty() {
        return Err(Error::Input("caption is empty or only whitespace".into()));
    }
    Ok(())
}

/// Writes the one-hot encoding of `caption` into `out` ([70, doc_length], zero-filled here).
pub fn encode_into(caption: &str, doc_length: usize, out: &mut [f32]) -> CaptionReport {
    assert_eq!(out.len(), ALPHABET_SIZE * doc_length, "one-hot buffer size");
    out.fill(0.0);
    positions(caption, doc_length, |t, i| out[i * doc_length + t] = 1.0)
}

/// The alphabet index of each of the caption's first `doc_length` positions, as floats into
/// `out` ([doc_length]; −1 where the row stays zero: an unknown character or padding): the form
/// the GPU expands into the one-hot rows (`onehot_f32`), 1/70 of their size to upload.
pub fn encode_indices(caption: &str, doc_length: usize, out: &mut [f32]) -> CaptionReport {
    assert_eq!(out.len(), doc_length, "index buffer size");
    out.fill(-1.0);
    positions(caption, doc_length, |t, i| out[t] = i as f32)
}

/// Calls `hit(position, alphabet index)` for every known character among the caption's first
/// `doc_length` (lower-cased) characters; reports the rest.
fn positions(caption: &str, doc_length: usize, mut hit: impl FnMut(usize, usize)) -> CaptionReport {
    let mut report = CaptionReport::default();
    let lower = caption.chars().flat_map(char::to_lowercase);
    for (t, c) in lower.enumerate() {
        if t >= doc_length {
            report.truncated_chars += 1;
            continue;
        }
        match char_index(c) {
            Some(i) => hit(t, i),
            None if !report.unknown.contains(&c) => report.unknown.push(c),
            None => {}
        }
    }
    report
}

/// One-hot encodings of several captions, [B, 70, doc_length].
pub fn encode_batch(captions: &[String], doc_length: usize) -> (Vec<f32>, Vec<CaptionReport>) {
    let per = ALPHABET_SIZE * doc_length;
    let mut out = vec![0.0; per * captions.len()];
    let reports = captions.iter().zip(out.chunks_mut(per)).map(|(c, o)| encode_into(c, doc_length, o)).collect();
    (out, reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index form expands to exactly the one-hot rows, with the same report.
    #[test]
    fn indices_expand_to_the_one_hot_rows() {
        let l = 24;
        for caption in ["A red circle, on BLUE!", "ünknown – chars ∑ here", "", &"x".repeat(40)] {
            let (mut onehot, mut idx) = (vec![9.0; ALPHABET_SIZE * l], vec![9.0; l]);
            let r1 = encode_into(caption, l, &mut onehot);
            let r2 = encode_indices(caption, l, &mut idx);
            assert_eq!(r1, r2, "{caption}");
            let mut expanded = vec![0.0; ALPHABET_SIZE * l];
            for (t, &i) in idx.iter().enumerate() {
                if i >= 0.0 {
                    expanded[i as usize * l + t] = 1.0;
                }
            }
            assert_eq!(expanded, onehot, "{caption}");
        }
    }

    #[test]
    fn alphabet_has_70_symbols_and_dash_maps_to_59() {
        assert_eq!(ALPHABET.chars().count(), ALPHABET_SIZE);
        assert_eq!(ALPHABET.chars().nth(36), Some('-'));
        assert_eq!(ALPHABET.chars().nth(59), Some('-'));
        assert_eq!(char_index('-'), Some(59));
        assert_eq!(char_index('a'), Some(0));
        assert_eq!(char_index(' '), Some(69));
        assert_eq!(char_index('A'), None);
    }

    #[test]
    fn encodes_lowercases_truncates_and_reports() {
        let mut out = vec![0.0; 70 * 4];
        let r = encode_into("Ab-é!x", 4, &mut out);
        assert_eq!(r.truncated_chars, 2);
        assert_eq!(r.unknown, vec!['é']);
        assert_eq!(out[0], 1.0); // 'a' at t=0
        assert_eq!(out[4 + 1], 1.0); // 'b' at t=1
        assert_eq!(out[59 * 4 + 2], 1.0); // '-' at t=2
        assert!((0..70).all(|i| out[i * 4 + 3] == 0.0)); // 'é' is a zero row
        assert_eq!(out.iter().sum::<f32>(), 3.0);
    }

    #[test]
    fn rejects_blank_captions() {
        assert!(check_caption("  \t\n").is_err());
        assert!(check_caption("").is_err());
        assert!(check_caption(" a ").is_ok());
    }
}
