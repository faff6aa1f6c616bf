//! The library's typed errors: one enum, each variant naming the thing at fault.

use std::path::PathBuf;

/// Result with the library's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the library, by cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Input the user gave that cannot be used (captions, sizes, flags).
    #[error("{0}")]
    Input(String),
    /// A dataset problem (bad folder, class list, image or sampler state).
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
}
