//! The CUDA backend (feature `cuda`): a device context that probes for the driver before cudarc
//! can panic, the kernel modules loaded from the embedded PTX (or compiled by NVRTC at run time),
//! and thin launch wrappers per kernel (launch.rs). Everything runs on one stream; a wrapper only
//! enqueues, so results are ready after `synchronize` (or a download, which waits).
//!
//! Invariant: every launch is preceded by length checks of every buffer it touches against the
//! sizes the kernel will index (typed `Error::Shape`), so no kernel ever reads or writes out of
//! bounds; that is the safety argument of each `unsafe` launch.

mod gan_step;
mod kernels;
mod launch;
mod pipeline;
mod posterior;
mod session;
mod train_launch;
mod train_session;

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, DriverError};
use cudarc::nvrtc::{CompileOptions, Ptx};

use crate::error::{Error, Result};

pub use crate::device::Precision;
pub use gan_step::CudaGan;
pub use kernels::{KernelFile, ALL as KERNEL_FILES, COMPILED_BY_NVCC, SYMBOLS};
pub use launch::{rnn_scratch_len, Epi, MatLayout, RnnBufs};
pub use pipeline::CudaTextToImage;
pub use session::CudaSession;
pub use train_launch::L1_BLOCKS;
pub use train_session::{CudaTrainSession, DeviceSlots};

/// A device buffer of f32.
pub type Buf = CudaSlice<f32>;

/// Where the loaded kernels came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelOrigin {
    /// PTX compiled by nvcc at build time, JIT-compiled by the driver.
    Ptx,
    /// Sources compiled by NVRTC at run time (no nvcc at build time, or the driver refused the PTX).
    Nvrtc,
}

/// True when the CUDA driver library (libcuda.so / nvcuda.dll) can be loaded.
pub fn driver_present() -> bool {
    // SAFETY: is_culib_present only tries to dlopen the driver library under its known names and
    // drops the handle; it calls no CUDA function and touches no global state of cudarc.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// True when NVRTC (libnvrtc.so) can be loaded.
fn nvrtc_present() -> bool {
    // SAFETY: as for `driver_present`: a dlopen attempt of the NVRTC library, nothing else.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// The error for a driver call that failed.
pub(crate) fn driver_err(what: &str) -> impl FnOnce(DriverError) -> Error + '_ {
    move |e| Error::Device(format!("CUDA {what}: {e}"))
}

/// Value `v` of a session's store: None while a node has taken it out to write it.
pub(crate) fn value_slot(values: &[Option<Buf>], v: usize) -> Result<&Buf> {
    values[v].as_ref().ok_or_else(|| Error::Device(format!("CUDA value {v} is in use")))
}

/// [`value_slot`], to be written.
pub(crate) fn value_slot_mut(values: &mut [Option<Buf>], v: usize) -> Result<&mut Buf> {
    values[v].as_mut().ok_or_else(|| Error::Device(format!("CUDA value {v} is in use")))
}

/// Copies `host`, which must hold exactly `want` values, into `dst` on `dev`'s stream; `what`
/// names the input in the error.
pub(crate) fn upload_exact(dev: &CudaDevice, host: &[f32], want: usize, dst: &mut Buf, what: &str) -> Result<()> {
    if host.len() != want {
        return Err(Error::Shape(format!("{what}: {} values for a buffer of {want}", host.len())));
    }
    dev.stream().memcpy_htod(host, dst).map_err(driver_err("upload"))
}

/// One GPU: context, stream, and every kernel function by symbol.
pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    functions: HashMap<&'static str, CudaFunction>,
    origin: KernelOrigin,
    name: String,
    capability: (i32, i32),
    /// A one-element buffer passed for absent optional operands (the kernel's flags say so).
    dummy: Buf,
    /// The split-depth weight gradient's partial tiles (`conv2d_bwd_weight`): one buffer for the
    /// device, safe because one stream orders every launch and the pair of kernels that use it
    /// runs back to back; the forward convolutions' depth splits use it the same way).
    splitk: Buf,
    /// Streaming multiprocessors: the depth splits aim at about two blocks per SM.
    sms: usize,
}

/// Floats of `CudaDevice`'s split-depth scratch (16 MiB).
pub(super) const SPLITK_LEN: usize = 1 << 22;

/// How many depth splits a GEMM gets whose C is `tiles` 64×64 tiles of `len` elements in all,
/// `depth` deep: enough blocks for about `wanted` (two per SM), each split at least `min_depth`
/// deep, all of them within the device's split scratch; none when C alone gives every SM a
/// block (splitting then costs more in partial sums than it gains).
pub(super) fn depth_splits(tiles: usize, len: usize, depth: usize, min_depth: usize, wanted: usize) -> usize {
    if 2 * tiles >= wanted {
        return 1;
    }
    wanted.div_ceil(tiles.max(1)).min(depth.div_ceil(min_depth.max(1))).min(SPLITK_LEN / len.max(1)).max(1)
}

impl CudaDevice {
    /// Opens GPU `ordinal`: probes the driver first (absence is an `Error::Device`, never a
    /// panic), creates the context and loads every kernel.
    pub fn new(ordinal: usize) -> Result<CudaDevice> {
        if !driver_present() {
            return Err(Error::Device(
                "no CUDA driver (libcuda.so) found: this machine has no NVIDIA driver, or it is not on the \
                 library path (use --device cpu or auto)"
                    .into(),
            ));
        }
        let count = CudaContext::device_count().map_err(driver_err("device count"))?;
        if ordinal >= count.max(0) as usize {
            return Err(Error::Device(format!("no CUDA device {ordinal}: the driver reports {count} device(s)")));
        }
        let ctx = CudaContext::new(ordinal).map_err(driver_err("context creation"))?;
        let name = ctx.name().map_err(driver_err("device name"))?;
        let capability = ctx.compute_capability().map_err(driver_err("compute capability"))?;
        if capability.0 < 8 {
            return Err(Error::Device(format!(
                "{name} has compute capability {}.{}; text2img's kernels need 8.0 or newer",
                capability.0, capability.1
            )));
        }
        // Everything runs on this one stream, so its order is the only synchronisation needed:
        // no per-buffer events (which a captured graph could not wait on). Not the legacy
        // default stream, which cannot be captured into a CUDA graph.
        // SAFETY: event tracking is off before any buffer exists, and every buffer is used on
        // this one stream only (uploads, launches, downloads), so no cross-stream ordering is lost.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(driver_err("stream creation"))?;
        let (functions, origin) = load_all(&ctx, capability)?;
        let dummy = stream.alloc_zeros::<f32>(1).map_err(driver_err("alloc"))?;
        let splitk = stream.alloc_zeros::<f32>(SPLITK_LEN).map_err(driver_err("alloc"))?;
        let sms = ctx
            .attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(driver_err("multiprocessor count"))?;
        let sms = usize::try_from(sms).unwrap_or(1).max(1);
        Ok(CudaDevice { ctx, stream, functions, origin, name, capability, dummy, splitk, sms })
    }

    /// GPU `ordinal`, opened once per process: resolving `--device` opens it (that is the probe)
    /// and the pipeline then takes the same device, instead of creating a second context and
    /// loading every kernel again.
    pub fn shared(ordinal: usize) -> Result<Arc<CudaDevice>> {
        static OPEN: std::sync::Mutex<Vec<(usize, Arc<CudaDevice>)>> = std::sync::Mutex::new(Vec::new());
        let mut open = OPEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, dev)) = open.iter().find(|(n, _)| *n == ordinal) {
            return Ok(Arc::clone(dev));
        }
        let dev = Arc::new(CudaDevice::new(ordinal)?);
        open.push((ordinal, Arc::clone(&dev)));
        Ok(dev)
    }

    /// The device's name (e.g. "NVIDIA H100 80GB HBM3").
    pub fn name(&self) -> &str {
        &self.name
    }

    /// (major, minor) compute capability.
    pub fn capability(&self) -> (i32, i32) {
        self.capability
    }

    /// Where the kernels came from.
    pub fn origin(&self) -> KernelOrigin {
        self.origin
    }

    /// The stream every launch goes to.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Copies `host` to a new device buffer.
    pub fn upload(&self, host: &[f32]) -> Result<Buf> {
        self.stream.clone_htod(host).map_err(driver_err("upload"))
    }

    /// Copies a device buffer back (waits for the stream).
    pub fn download(&self, d: &Buf) -> Result<Vec<f32>> {
        self.stream.clone_dtoh(d).map_err(driver_err("download"))
    }

    /// A new buffer of `len` elements, every one NaN: a kernel that misses an element leaves a
    /// NaN that the tests see (the poison-then-check discipline).
    pub fn alloc_poisoned(&self, len: usize) -> Result<Buf> {
        self.upload(&vec![f32::NAN; len])
    }

    /// Waits until every launch so far has finished; reports asynchronous kernel errors.
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(driver_err("synchronize"))
    }

    fn function(&self, sym: &'static str) -> Result<&CudaFunction> {
        self.functions.get(sym).ok_or_else(|| Error::Device(format!("CUDA kernel {sym} was not loaded")))
    }
}

/// Loads every kernel file: its PTX for the device's architecture when there is one and the
/// driver accepts it, otherwise its source through NVRTC.
fn load_all(ctx: &Arc<CudaContext>, cc: (i32, i32)) -> Result<(HashMap<&'static str, CudaFunction>, KernelOrigin)> {
    let mut functions = HashMap::new();
    let mut origin = KernelOrigin::Ptx;
    for file in KERNEL_FILES {
        let ptx = if cc.0 >= 9 { file.ptx_sm90 } else { file.ptx_sm80 };
        let module = match ptx.map(|p| ctx.load_module(Ptx::from_src(p))) {
            Some(Ok(m)) => m,
            Some(Err(_)) | None => {
                origin = KernelOrigin::Nvrtc;
                let ptx = compile_nvrtc(file, cc)?;
                ctx.load_module(ptx).map_err(driver_err(file.name))?
            }
        };
        for &(f, sym) in SYMBOLS.iter().filter(|(f, _)| *f == file.name) {
            let func = module.load_function(sym).map_err(|e| Error::Device(format!("CUDA kernel {f}/{sym}: {e}")))?;
            functions.insert(sym, func);
        }
    }
    Ok((functions, origin))
}

/// The NVRTC target for a compute capability.
fn nvrtc_arch(cc: (i32, i32)) -> &'static str {
    match cc {
        (8, 0) => "compute_80",
        (8, 6) => "compute_86",
        (8, 7) => "compute_87",
        (8, 9) => "compute_89",
        (9, _) => "compute_90",
        (10, _) => "compute_100",
        (12, _) => "compute_120",
        _ => "compute_80",
    }
}

fn compile_nvrtc(file: &KernelFile, cc: (i32, i32)) -> Result<Ptx> {
    if !nvrtc_present() {
        return Err(Error::Device(format!(
            "kernels/{}.cu: no PTX was embedded at build time (nvcc not found) and NVRTC (libnvrtc.so) is \
             not on this machine; rebuild with nvcc (scripts/setup_nvcc.sh)",
            file.name
        )));
    }
    let opts = CompileOptions {
        arch: Some(nvrtc_arch(cc)),
        options: vec!["-std=c++17".into()],
        name: Some(format!("{}.cu", file.name)),
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(file.source, opts)
        .map_err(|e| Error::Device(format!("NVRTC compiling kernels/{}.cu: {e}", file.name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The splits the launchers choose for the layers the GPU tests run at batch 1 on an H200
    /// (132 SMs: 264 blocks wanted), so that those tests do go through the split path.
    #[test]
    fn depth_splits_fill_the_gpu_only_when_c_cannot() {
        let wanted = 264;
        // G's res-block convolution at 4×4, batch 1: C [256, 16] is 4 tiles, 2,304 deep.
        assert_eq!(depth_splits(4, 256 * 16, 256 * 9, 256, wanted), 9);
        // 1024 → 512 at 4×4 → 8×8, batch 1: 4 parity classes of 8 tiles, 4,096 deep.
        assert_eq!(depth_splits(32, 512 * 64, 1024 * 4, 256, wanted), 9);
        // The encoder's third conv1d at batch 1: C [512, 18] is 8 tiles, 2,048 deep.
        assert_eq!(depth_splits(8, 512 * 18, 512 * 4, 256, wanted), 8);
        // Batch 64 fills the GPU without splits.
        assert_eq!(depth_splits(132, 1024 * 1024, 256 * 9, 256, wanted), 1);
        assert_eq!(depth_splits(131, 64 * 64 * 131, 256 * 9, 256, wanted), 3);
        assert_eq!(depth_splits(512, 1 << 20, 1 << 12, 256, wanted), 1);
        // Shallow depths and the scratch bound the splits.
        assert_eq!(depth_splits(1, 64, 300, 256, wanted), 2);
        assert_eq!(depth_splits(1, SPLITK_LEN / 3, 1 << 20, 256, wanted), 3);
        assert_eq!(depth_splits(1, SPLITK_LEN * 2, 1 << 20, 256, wanted), 1);
    }
}
