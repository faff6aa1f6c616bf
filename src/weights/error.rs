//! Why a weights file was refused. Every variant names the tensor or field at fault.

/// A malformed or mismatched weights file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeightsError {
    #[error("file is {len} bytes, too short for a safetensors header (8-byte length first)")]
    TooShort { len: usize },
    #[error("header length {len} exceeds the {max}-byte limit: not a safetensors file, or a hostile one")]
    HeaderTooLarge { len: u64, max: u64 },
    #[error("header claims {header_len} bytes but only {available} follow the length field: file truncated")]
    HeaderPastEnd { header_len: u64, available: usize },
    #[error("header is not valid UTF-8")]
    HeaderNotUtf8,
    #[error("header is not valid JSON: {0}")]
    HeaderJson(String),
    #[error("header names tensor '{0}' more than once")]
    DuplicateName(String),
    #[error("tensor '{name}': {reason}")]
    BadEntry { name: String, reason: String },
    #[error("tensor '{name}' has dtype {dtype}, which text2img does not read (it reads F32, F16, BF16)")]
    UnsupportedDtype { name: String, dtype: String },
    #[error("tensor '{name}': shape {shape:?} of {dtype} overflows the address space")]
    Overflow { name: String, shape: Vec<u64>, dtype: String },
    #[error("tensor '{name}': shape {shape:?} of {dtype} needs {expected} bytes but its offsets span {actual}")]
    SizeMismatch { name: String, shape: Vec<u64>, dtype: String, expected: u64, actual: u64 },
    #[error("tensor '{name}': data offsets [{begin}, {end}] are reversed")]
    ReversedOffsets { name: String, begin: u64, end: u64 },
    #[error("tensors '{first}' and '{second}' overlap")]
    Overlap { first: String, second: String },
    #[error("{gap} unclaimed bytes before tensor '{name}' (holes are not allowed)")]
    Hole { name: String, gap: u64 },
    #[error("tensor '{name}' ends at byte {end} of the data but the file holds only {available}: file truncated")]
    OutOfBounds { name: String, end: u64, available: u64 },
    #[error("{extra} trailing bytes after the last tensor")]
    TrailingBytes { extra: u64 },
    #[error("metadata: {0}")]
    Metadata(String),
    #[error("format '{found}' is not supported (this build reads '{expected}')")]
    Format { found: String, expected: String },
    #[error("weights do not match the model config '{config}': {}", .problems.join("; "))]
    Mismatch { config: String, problems: Vec<String> },
    #[error("no tensor named '{0}'")]
    Missing(String),
}
