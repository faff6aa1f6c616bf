//! Which device runs the graphs. The CPU backend is always there; asking for CUDA where it is
//! not available is a clear error, and `auto` falls back to the CPU.

use std::str::FromStr;

use crate::error::{Error, Result};

/// What the GPU's convolution kernels multiply in (`--precision f32|bf16`): f32 on the SIMT
/// cores (the CPU's numerics, within rounding), or bf16 operands on the tensor cores with f32
/// accumulation (about 2e-3 relative per layer: each operand rounded to 8 significant bits).
/// Linear layers and the recurrences stay f32 either way; the CPU runs f32 only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

impl Precision {
    /// `f32` or `bf16`, as the kernels' names end and the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        [Precision::F32, Precision::Bf16]
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown precision '{s}' (expected f32 or bf16)"))
    }
}

/// What the user asked for (`--device auto|cpu|cuda[:N]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceRequest {
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceRequest {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(DeviceRequest::Auto),
            "cpu" => Ok(DeviceRequest::Cpu),
            "cuda" => Ok(DeviceRequest::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceRequest::Cuda)
                .ok_or_else(|| format!("unknown device '{s}' (expected auto, cpu, cuda or cuda:N)")),
        }
    }
}

/// The device that will run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    /// GPU n (builds with the `cuda` feature only).
    Cuda(usize),
}

impl DeviceRequest {
    /// Resolves the request. Without the `cuda` feature, `cuda` is an error and `auto` the CPU.
    /// With it, `cuda` probes the driver and the device (a missing driver is an error, never a
    /// panic) and `auto` takes GPU 0 when it opens, else the CPU with one notice on stderr.
    pub fn resolve(self) -> Result<Device> {
        match self {
            DeviceRequest::Cpu => Ok(Device::Cpu),
            DeviceRequest::Auto => {
                #[cfg(feature = "cuda")]
                match cuda_unavailable(0) {
                    None => return Ok(Device::Cuda(0)),
                    Some(e) => notice_once(&format!("--device auto: no usable GPU ({e}); running on the CPU")),
                }
                Ok(Device::Cpu)
            }
            DeviceRequest::Cuda(n) => cuda_device(n),
        }
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(n: usize) -> Result<Device> {
    Err(Error::Device(format!(
        "--device cuda:{n}: this build of text2img has no CUDA backend (build with --features cuda); \
         use --device cpu or auto"
    )))
}

#[cfg(feature = "cuda")]
fn cuda_device(n: usize) -> Result<Device> {
    match cuda_unavailable(n) {
        Some(e) => Err(Error::Device(format!("--device cuda:{n}: {e}"))),
        None => Ok(Device::Cuda(n)),
    }
}

/// Why GPU `n` cannot be opened, or None when it can (driver, device, kernels all load); the
/// opened device is kept for the pipeline (`CudaDevice::shared`).
#[cfg(feature = "cuda")]
fn cuda_unavailable(n: usize) -> Option<String> {
    crate::cuda::CudaDevice::shared(n).err().map(|e| e.to_string())
}

/// Prints `msg` to stderr the first time only.
#[cfg(feature = "cuda")]
fn notice_once(msg: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| eprintln!("note: {msg}"));
}
