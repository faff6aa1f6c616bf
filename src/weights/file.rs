//! A weights file opened for reading: memory-mapped (zero-copy) or read into memory
//! (`--no-mmap`), with its header validated before any tensor is touched.

use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, UncheckedAdvice};

use super::safetensors::{self, Header, TensorInfo};
use super::WeightsError;
use crate::error::{Error, Result};
use crate::tensor::{decode_le, DType};

/// The format version this build reads and writes.
pub const FORMAT: &str = "text2img/1";

/// How the file's bytes are held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadMode {
    /// Map the file; f32 tensors are used in place when aligned.
    Mmap,
    /// Read the whole file into memory (safe against the file changing underneath).
    Read,
}

enum Backing {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

/// An open, validated weights file.
pub struct WeightFile {
    path: PathBuf,
    backing: Backing,
    header: Header,
}

impl WeightFile {
    /// Opens and validates `path`.
    pub fn open(path: &Path, mode: LoadMode) -> Result<WeightFile> {
        let io = |source| Error::Io { path: path.to_path_buf(), reason: source };
        let backing = match mode {
            LoadMode::Mmap => {
                let file = File::open(path).map_err(io)?;
                // SAFETY: the map is read-only and private to this process. If another process
                // truncates or rewrites the file while it is mapped, reads may fault or see new
                // bytes; this is documented (README) and `--no-mmap` avoids it.
                let map = unsafe { Mmap::map(&file) }.map_err(io)?;
                Backing::Mapped(map)
            }
            LoadMode::Read => Backing::Owned(std::fs::read(path).map_err(io)?),
        };
        let bytes: &[u8] = match &backing {
            Backing::Mapped(m) => m,
            Backing::Owned(v) => v,
        };
        let header =
            safetensors::parse(bytes).map_err(|source| Error::Weights { path: path.to_path_buf(), reason: source })?;
        Ok(WeightFile { path: path.to_path_buf(), backing, header })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        match &self.backing {
            Backing::Mapped(m) => m,
            Backing::Owned(v) => v,
        }
    }

    /// Whether tensors are served from a memory map.
    pub fn is_mapped(&self) -> bool {
        matches!(self.backing, Backing::Mapped(_))
    }

    /// A metadata value.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.header.metadata.get(key).map(String::as_str)
    }

    /// Checks the `format` metadata.
    pub fn check_format(&self) -> Result<()> {
        match self.metadata("format") {
            Some(FORMAT) => Ok(()),
            found => Err(self.error(WeightsError::Format {
                found: found.unwrap_or("(none)").to_string(),
                expected: FORMAT.to_string(),
            })),
        }
    }

    /// Wraps a weights error with this file's path.
    pub fn error(&self, source: WeightsError) -> Error {
        Error::Weights { path: self.path.clone(), reason: source }
    }

    /// The entry of tensor `name`.
    pub fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.header.get(name).ok_or_else(|| self.error(WeightsError::Missing(name.to_string())))
    }

    /// The raw little-endian bytes of a tensor.
    pub fn raw(&self, info: &TensorInfo) -> &[u8] {
        let start = self.header.data_start;
        // In bounds: the parser checked every tensor lies inside the data region.
        &self.bytes()[start + info.begin..start + info.end]
    }

    /// Drops a mapped tensor's resident pages once its data has been copied out (packed,
    /// folded or converted), so that the copy and the file's pages are not both counted in the
    /// process's memory. Later reads of the tensor fault its pages back in from the file. Only
    /// the pages wholly inside the tensor are dropped; nothing happens for a file read into
    /// memory.
    pub fn release(&self, info: &TensorInfo) {
        let Backing::Mapped(map) = &self.backing else { return };
        let page = page_size();
        let start = (self.header.data_start + info.begin).next_multiple_of(page);
        let end = (self.header.data_start + info.end) / page * page;
        if end > start {
            // SAFETY: the map is private and read-only, so no page of it was ever written:
            // MADV_DONTNEED drops clean copies of file pages, and the next read of any byte
            // faults in the same bytes from the file. Slices borrowed from the map stay valid
            // and see the same values (under the assumption `open` already states: the file is
            // not rewritten while mapped). A failure only leaves the pages resident.
            let _ = unsafe { map.unchecked_advise_range(UncheckedAdvice::DontNeed, start, end - start) };
        }
    }

    /// A tensor as f32: borrowed from the file when it is f32 and 4-byte aligned, else converted.
    pub fn f32_data(&self, name: &str) -> Result<Cow<'_, [f32]>> {
        let info = self.info(name)?;
        let raw = self.raw(info);
        if info.dtype == DType::F32 {
            if let Ok(s) = bytemuck::try_cast_slice::<u8, f32>(raw) {
                return Ok(Cow::Borrowed(s));
            }
        }
        Ok(Cow::Owned(decode_le(info.dtype, raw)))
    }

    /// Byte range (absolute) of an f32 tensor usable in place, if it is one.
    pub fn zero_copy_range(&self, name: &str) -> Option<std::ops::Range<usize>> {
        let info = self.header.get(name)?;
        let start = self.header.data_start + info.begin;
        let end = self.header.data_start + info.end;
        let ok = info.dtype == DType::F32 && bytemuck::try_cast_slice::<u8, f32>(&self.bytes()[start..end]).is_ok();
        ok.then_some(start..end)
    }
}

// Tensors are little-endian on disk and read in place: refuse to build where that is wrong.
#[cfg(target_endian = "big")]
compile_error!("text2img reads little-endian weights in place and needs a little-endian target");

/// The system's page size (4 KB on x86-64; 16 or 64 KB on some arm64 kernels), read once.
/// madvise needs page-aligned ranges: with a 4 KB guess on a 16 KB system it failed and the
/// pages stayed resident.
fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf reads a system constant; it has no preconditions and touches no memory
        // of ours. A failure (-1) or an absurd value falls back to 4 KB.
        let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(v).ok().filter(|p| p.is_power_of_two() && *p >= 4096).unwrap_or(4096)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn page_size_is_the_kernels() {
        let p = super::page_size();
        assert!(p.is_power_of_two() && p >= 4096, "page size {p}");
        // Against an independent reading where the machine has getconf.
        if let Ok(out) = std::process::Command::new("getconf").arg("PAGESIZE").output() {
            let s = String::from_utf8_lossy(&out.stdout);
            if let Ok(want) = s.trim().parse::<usize>() {
                assert_eq!(p, want, "sysconf vs getconf");
            }
        }
    }
}
