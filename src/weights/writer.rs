//! Writes safetensors files atomically (temp file, fsync, rename) with the data region aligned
//! to 64 bytes, so every f32 tensor can later be used in place from a memory map.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Alignment of the data region (and of every tensor, since sizes are sorted by dtype).
const ALIGN: usize = 64;

/// Serialises `tensors` with `metadata` into safetensors bytes.
pub fn to_bytes(tensors: &[(String, Tensor)], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    // Larger dtypes first, then by name: keeps every tensor aligned to its element size.
    let mut order: Vec<&(String, Tensor)> = tensors.iter().collect();
    order.sort_by(|a, b| b.1.dtype().size().cmp(&a.1.dtype().size()).then(a.0.cmp(&b.0)));
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        let m = metadata.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())));
        header.insert("__metadata__".into(), serde_json::Value::Object(m.collect()));
    }
    let mut offset = 0usize;
    let mut data = Vec::new();
    for (name, t) in &order {
        let bytes = t.to_le_bytes();
        let entry = serde_json::json!({
            "dtype": t.dtype().safetensors_name(),
            "shape": t.shape(),
            "data_offsets": [offset, offset + bytes.len()],
        });
        header.insert(name.clone(), entry);
        offset += bytes.len();
        data.extend_from_slice(&bytes);
    }
    let mut json = serde_json::Value::Object(header).to_string().into_bytes();
    let padded = (8 + json.len()).div_ceil(ALIGN) * ALIGN - 8;
    json.resize(padded, b' ');
    let mut out = Vec::with_capacity(8 + json.len() + data.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&data);
    out
}

/// Writes `bytes` to `path` atomically: a temp file beside it, fsync, rename, fsync the folder.
/// A crash leaves either the old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io { path: path.to_path_buf(), reason: source };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| Error::Input(format!("{}: not a file path", path.display())))?;
    let tmp = dir.join(format!(".{}.tmp{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            d.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// Writes a safetensors file atomically.
pub fn write(path: &Path, tensors: &[(String, Tensor)], metadata: &BTreeMap<String, String>) -> Result<()> {
    write_atomic(path, &to_bytes(tensors, metadata))
}
