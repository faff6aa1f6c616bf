//! Which device runs the graphs. The CPU backend is always there; asking for CUDA where it is
//! not available is a clear error, and `auto` falls back to the CPU.

use std::str::FromStr;

use crate::error::{Error, Result};

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
}

impl DeviceRequest {
    /// Resolves the request: `auto` is the CPU until the CUDA backend lands.
    pub fn resolve(self) -> Result<Device> {
        match self {
            DeviceRequest::Auto | DeviceRequest::Cpu => Ok(Device::Cpu),
            DeviceRequest::Cuda(n) => Err(Error::Device(format!(
                "--device cuda:{n}: this build of text2img has no CUDA backend yet (the CPU backend \
                 serves; use --device cpu or auto)"
            ))),
        }
    }
}
