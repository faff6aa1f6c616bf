//! Host tensors: a shape, a dtype and a buffer. Computation is f32; f16 and bf16 are storage
//! formats (weights files, exports) converted on load.

pub mod convert;
pub mod pages;

use half::{bf16, f16};

/// Element type of a stored tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// The safetensors spelling.
    pub fn safetensors_name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
        }
    }

    /// Parses the safetensors spelling of the dtypes text2img computes with.
    pub fn from_safetensors_name(s: &str) -> Option<DType> {
        match s {
            "F32" => Some(DType::F32),
            "F16" => Some(DType::F16),
            "BF16" => Some(DType::BF16),
            _ => None,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.safetensors_name())
    }
}

/// Typed element storage.
#[derive(Clone, Debug, PartialEq)]
pub enum Storage {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
}

/// A dense row-major tensor on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    storage: Storage,
}

impl Tensor {
    /// An f32 tensor; panics if the data length does not match the shape (a programmer's bug).
    pub fn from_f32(shape: &[usize], data: Vec<f32>) -> Tensor {
        assert_eq!(numel(shape), data.len(), "tensor data does not match shape {shape:?}");
        Tensor { shape: shape.to_vec(), storage: Storage::F32(data) }
    }

    /// A zero-filled f32 tensor.
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor::from_f32(shape, vec![0.0; numel(shape)])
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn dtype(&self) -> DType {
        match self.storage {
            Storage::F32(_) => DType::F32,
            Storage::F16(_) => DType::F16,
            Storage::BF16(_) => DType::BF16,
        }
    }

    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// The elements as f32 (converting f16/bf16).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.storage {
            Storage::F32(v) => v.clone(),
            Storage::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            Storage::BF16(v) => v.iter().map(|x| x.to_f32()).collect(),
        }
    }

    /// The f32 elements, if stored as f32.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.storage {
            Storage::F32(v) => Some(v),
            _ => None,
        }
    }

    /// Converts to another dtype (round to nearest even).
    pub fn to_dtype(&self, dtype: DType) -> Tensor {
        let v = self.to_f32_vec();
        let storage = match dtype {
            DType::F32 => Storage::F32(v),
            DType::F16 => Storage::F16(v.iter().map(|&x| f16::from_f32(x)).collect()),
            DType::BF16 => Storage::BF16(v.iter().map(|&x| bf16::from_f32(x)).collect()),
        };
        Tensor { shape: self.shape.clone(), storage }
    }

    /// Little-endian bytes of the elements (the safetensors layout).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match &self.storage {
            Storage::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Storage::F16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Storage::BF16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

/// Number of elements of a shape (1 for rank 0).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Decodes little-endian bytes of `dtype` into f32 (any alignment).
pub fn decode_le(dtype: DType, bytes: &[u8]) -> Vec<f32> {
    match dtype {
        DType::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        DType::F16 => {
            // Read a block of values, then widen the block at once (vcvtph2ps, 16 at a time):
            // one call per value was a quarter of `generate`'s run.
            const BLOCK: usize = 256;
            let mut out = vec![0.0f32; bytes.len() / 2];
            let mut block = [f16::ZERO; BLOCK];
            for (src, dst) in bytes.chunks(2 * BLOCK).zip(out.chunks_mut(BLOCK)) {
                let block = &mut block[..dst.len()];
                block.iter_mut().zip(src.chunks_exact(2)).for_each(|(h, c)| *h = f16::from_le_bytes([c[0], c[1]]));
                convert::widen_f16(block, dst);
            }
            out
        }
        DType::BF16 => bytes.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocked f16 decode against one value at a time, over more than one block and a
    /// partial last block, with every bit pattern's class (zeros, subnormals, normals, inf, NaN).
    #[test]
    fn f16_decode_matches_one_value_at_a_time() {
        let bits: Vec<u16> = (0..700u32)
            .map(|i| (i.wrapping_mul(40_503) % 65_536) as u16)
            .chain([0, 0x8000, 0x7C00, 0x7E00, 1])
            .collect();
        let bytes: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
        let got = decode_le(DType::F16, &bytes);
        assert_eq!(got.len(), bits.len());
        for (&b, g) in bits.iter().zip(&got) {
            let want = f16::from_bits(b).to_f32();
            assert!(g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()), "{b:#06x}: {g} against {want}");
        }
    }
}
