//! The library's typed errors: one enum, each variant naming the thing at fault.

use std::path::PathBuf;

use crate::weights::WeightsError;

/// Result with the library's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the library, by cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named file. (The cause is in the message, not a `source`, so an
    /// error chain printer does not repeat it.)
    #[error("{}: {reason}", path.display())]
    Io { path: PathBuf, reason: std::io::Error },
    /// A weights file that is malformed or does not fit the model.
    #[error("{}: {reason}", path.display())]
    Weights { path: PathBuf, reason: WeightsError },
    /// A model config that cannot be used.
    #[error("{0}")]
    Config(String),
    /// Shapes that do not fit together while a graph is built.
    #[error("shape error in {0}")]
    Shape(String),
    /// Input the user gave that cannot be used (captions, sizes, flags).
    #[error("{0}")]
    Input(String),
    /// A device that was asked for and is not there.
    #[error("{0}")]
    Device(String),
    /// A dataset problem (bad folder, class list, image or sampler state).
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
}
