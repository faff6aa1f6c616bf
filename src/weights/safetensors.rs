//! A strict safetensors header parser. Every number in the header is checked (with checked
//! arithmetic) before it is used; the data region must be tiled exactly by the tensors.

use std::collections::BTreeMap;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::WeightsError;
use crate::tensor::DType;

/// Largest header accepted (the reference reader allows 100 MB; our models need a few KB).
pub const MAX_HEADER_LEN: u64 = 16 << 20;

/// One tensor's entry, offsets relative to the start of the data region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub begin: usize,
    pub end: usize,
}

/// A validated header.
#[derive(Clone, Debug, Default)]
pub struct Header {
    /// Tensors sorted by offset.
    pub tensors: Vec<TensorInfo>,
    pub metadata: BTreeMap<String, String>,
    /// Absolute offset of the data region in the file.
    pub data_start: usize,
}

impl Header {
    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Map entries in file order, duplicates kept (serde_json's map would drop them silently).
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Entries, A::Error> {
                let mut v = Vec::new();
                while let Some(kv) = m.next_entry::<String, serde_json::Value>()? {
                    v.push(kv);
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

/// Element size in bits of every byte-sized safetensors dtype (sub-byte ones are refused).
fn dtype_bits(s: &str) -> Option<u64> {
    Some(match s {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" | "F8_E4M3FNUZ" | "F8_E5M2FNUZ" => 8,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" => 32,
        "I64" | "U64" | "F64" | "C64" => 64,
        _ => return None,
    })
}

/// Parses and validates the header of a whole safetensors file held in `bytes`.
pub fn parse(bytes: &[u8]) -> Result<Header, WeightsError> {
    let (header_len, data_start) = header_bounds(bytes)?;
    let text = std::str::from_utf8(&bytes[8..data_start]).map_err(|_| WeightsError::HeaderNotUtf8)?;
    let entries: Entries =
        serde_json::from_str(text.trim_end_matches(' ')).map_err(|e| WeightsError::HeaderJson(e.to_string()))?;
    let _ = header_len;
    let mut metadata = BTreeMap::new();
    let mut tensors = Vec::with_capacity(entries.0.len());
    let mut seen = std::collections::HashSet::new();
    for (name, value) in entries.0 {
        if !seen.insert(name.clone()) {
            return Err(WeightsError::DuplicateName(name));
        }
        if name == "__metadata__" {
            metadata = parse_metadata(value)?;
        } else {
            tensors.push(parse_entry(name, value)?);
        }
    }
    check_tiling(&mut tensors, bytes.len() - data_start)?;
    Ok(Header { tensors, metadata, data_start })
}

/// Reads the length field; returns (header length, absolute data start).
fn header_bounds(bytes: &[u8]) -> Result<(u64, usize), WeightsError> {
    let len_field: [u8; 8] =
        bytes.get(..8).and_then(|s| s.try_into().ok()).ok_or(WeightsError::TooShort { len: bytes.len() })?;
    let header_len = u64::from_le_bytes(len_field);
    if header_len > MAX_HEADER_LEN {
        return Err(WeightsError::HeaderTooLarge { len: header_len, max: MAX_HEADER_LEN });
    }
    let available = bytes.len() - 8;
    // header_len <= 16 MiB, so the cast and the addition cannot overflow.
    if header_len as usize > available {
        return Err(WeightsError::HeaderPastEnd { header_len, available });
    }
    Ok((header_len, 8 + header_len as usize))
}

fn parse_metadata(value: serde_json::Value) -> Result<BTreeMap<String, String>, WeightsError> {
    let Entries(entries) = serde_json::from_value(value)
        .map_err(|e| WeightsError::Metadata(format!("__metadata__ is not an object: {e}")))?;
    let mut map = BTreeMap::new();
    for (k, v) in entries {
        let serde_json::Value::String(s) = v else {
            return Err(WeightsError::Metadata(format!("value of '{k}' is not a string")));
        };
        if map.insert(k.clone(), s).is_some() {
            return Err(WeightsError::Metadata(format!("key '{k}' appears more than once")));
        }
    }
    Ok(map)
}

fn parse_entry(name: String, value: serde_json::Value) -> Result<TensorInfo, WeightsError> {
    let raw: RawEntry = serde_json::from_value(value)
        .map_err(|e| WeightsError::BadEntry { name: name.clone(), reason: e.to_string() })?;
    let Some(bits) = dtype_bits(&raw.dtype) else {
        return Err(WeightsError::BadEntry { name, reason: format!("unknown dtype '{}'", raw.dtype) });
    };
    let (begin, end) = raw.data_offsets;
    if end < begin {
        return Err(WeightsError::ReversedOffsets { name, begin, end });
    }
    let overflow = || WeightsError::Overflow { name: name.clone(), shape: raw.shape.clone(), dtype: raw.dtype.clone() };
    let elements = raw.shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).ok_or_else(overflow)?;
    let expected = elements.checked_mul(bits / 8).ok_or_else(overflow)?;
    if expected != end - begin {
        return Err(WeightsError::SizeMismatch {
            name,
            shape: raw.shape,
            dtype: raw.dtype,
            expected,
            actual: end - begin,
        });
    }
    let Some(dtype) = DType::from_safetensors_name(&raw.dtype) else {
        return Err(WeightsError::UnsupportedDtype { name, dtype: raw.dtype });
    };
    // Sizes fit in u64 and end <= file length is checked by the tiling; convert with checks.
    let to_usize = |x: u64| usize::try_from(x).map_err(|_| overflow());
    let shape = raw.shape.iter().map(|&d| to_usize(d)).collect::<Result<Vec<_>, _>>()?;
    Ok(TensorInfo { dtype, shape, begin: to_usize(begin)?, end: to_usize(end)?, name })
}

/// Sorts by offset and checks the tensors tile `[0, data_len)` exactly.
fn check_tiling(tensors: &mut [TensorInfo], data_len: usize) -> Result<(), WeightsError> {
    tensors.sort_by_key(|t| (t.begin, t.end));
    let mut pos = 0usize;
    let mut prev: Option<&TensorInfo> = None;
    for t in tensors.iter() {
        if t.begin < pos {
            let first = prev.map(|p| p.name.clone()).unwrap_or_default();
            return Err(WeightsError::Overlap { first, second: t.name.clone() });
        }
        if t.begin > pos {
            return Err(WeightsError::Hole { name: t.name.clone(), gap: (t.begin - pos) as u64 });
        }
        if t.end > data_len {
            return Err(WeightsError::OutOfBounds {
                name: t.name.clone(),
                end: t.end as u64,
                available: data_len as u64,
            });
        }
        pos = t.end;
        prev = Some(t);
    }
    if pos < data_len {
        return Err(WeightsError::TrailingBytes { extra: (data_len - pos) as u64 });
    }
    Ok(())
}
