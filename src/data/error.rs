//! Typed errors of the data module: each variant names the file or folder at fault.
//!
//! Fatal errors (a dataset cannot be opened, too many bad files) are `DataError`s; a single bad
//! file inside a usable dataset is a [`Problem`](super::Problem) that is reported and skipped.

use std::path::PathBuf;

/// Result with the data module's error.
pub type DataResult<T> = std::result::Result<T, DataError>;

/// Everything that stops a dataset from being made, opened or sampled.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An I/O error on a named file or folder. (The cause is in the message, not a `source`, so
    /// an error chain printer such as anyhow's `{:#}` does not repeat it.)
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: std::io::Error },
    /// The dataset folder does not exist or is not a folder.
    #[error("{path}: dataset folder not found")]
    MissingFolder { path: PathBuf },
    /// A CUB/Oxford-102 layout without its class list.
    #[error("{path}: class list not found (a CUB/Oxford-102 layout needs allclasses.txt)")]
    MissingClassList { path: PathBuf },
    /// An image that cannot be used (corrupt, truncated, too small, too large, empty file).
    #[error("{path}: {reason}")]
    BadImage { path: PathBuf, reason: String },
    /// A dataset that holds nothing usable.
    #[error("{path}: {reason}")]
    Empty { path: PathBuf, reason: String },
    /// More bad files than the allowed fraction.
    #[error(
        "{path}: {bad} of {total} samples are bad ({pct:.2}%), more than the allowed {max_pct:.2}%; \
         run `text2img data inspect {path}` to list them",
        pct = 100.0 * *bad as f64 / (*total).max(1) as f64,
        max_pct = 100.0 * max_fraction
    )]
    TooManyBad { path: PathBuf, bad: usize, total: usize, max_fraction: f64 },
    /// A sampler configuration the dataset cannot serve (batch larger than the class count, ...).
    #[error("{0}")]
    Config(String),
    /// A saved sampler state that does not belong to this dataset or configuration.
    #[error("sampler state does not match: {0}")]
    StateMismatch(String),
    /// Writing a PNG failed.
    #[error("{path}: cannot write PNG: {reason}")]
    PngWrite { path: PathBuf, reason: String },
    /// The prefetch thread stopped.
    #[error("the data loader thread stopped: {0}")]
    LoaderStopped(String),
}

impl DataError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io { path: path.into(), reason: source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_name_the_path_and_say_the_cause_once() {
        let e = DataError::io("/data/x.png", std::io::Error::new(std::io::ErrorKind::NotFound, "gone"));
        assert_eq!(format!("{:#}", anyhow::Error::new(e)), "/data/x.png: gone", "one line, the cause once");
    }
}
