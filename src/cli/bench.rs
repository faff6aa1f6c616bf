//! `text2img bench`: latency and throughput in the manner of llama-bench: a row per
//! (batch size, threads), as a table, CSV or JSON lines, with per-op times on request.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, ValueEnum};
use text2img::device::{DeviceRequest, Precision};
use text2img::graph::{thread_pool, Backend};
use text2img::model::synthetic::synthetic_weights;
use text2img::model::{ModelConfig, Network, TextToImage, WeightSet};
use text2img::weights::LoadMode;

use super::{fail, Failure, EXIT_USAGE};

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Jsonl,
}

#[derive(Args)]
pub struct BenchArgs {
    /// A weights file, or a built-in config name (reed-cub, reed-flowers, shapes) for freshly
    /// made synthetic weights (timing only).
    #[arg(short, long, default_value = "reed-cub")]
    pub model: String,
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceRequest,
    /// Batch sizes, comma-separated.
    #[arg(short = 'b', long, value_delimiter = ',', default_value = "1")]
    pub batch_size: Vec<usize>,
    /// Thread counts, comma-separated (0: one per core).
    #[arg(short, long, value_delimiter = ',', default_value = "0")]
    pub threads: Vec<usize>,
    /// Timed repetitions per row.
    #[arg(short, long, default_value_t = 20)]
    pub reps: usize,
    /// Untimed warm-up repetitions per row.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Also print per-op times (median) with achieved GFLOP/s.
    #[arg(long)]
    pub per_op: bool,
    /// The GPU's convolution arithmetic, comma-separated for a row each: f32, or bf16 operands
    /// on the tensor cores (f32 accumulation). The CPU runs f32 only.
    #[arg(long, value_delimiter = ',', default_value = "f32")]
    pub precision: Vec<Precision>,
}

/// One measured row.
struct Row {
    device: String,
    precision: &'static str,
    batch: usize,
    threads: usize,
    first_ms: f64,
    median_ms: f64,
    p10_ms: f64,
    p90_ms: f64,
    g_median_ms: f64,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Peak resident set size of this process in MB (Linux; 0 elsewhere).
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn load(model: &str) -> Result<(WeightSet, f64), Failure> {
    let t = Instant::now();
    let ws = if ModelConfig::BUILTIN.contains(&model) {
        let cfg = ModelConfig::builtin(model)?;
        let nets = [Network::Encoder, Network::Generator];
        WeightSet::from_tensors(cfg.clone(), &nets, synthetic_weights(&cfg, &nets))?
    } else {
        WeightSet::open(&PathBuf::from(model), LoadMode::Mmap)?
    };
    Ok((ws, t.elapsed().as_secs_f64() * 1e3))
}

pub fn run(a: BenchArgs) -> Result<(), Failure> {
    let device = a.device.resolve()?;
    if a.reps == 0 || a.batch_size.iter().any(|&b| b == 0 || b > 4096) {
        return Err(fail(EXIT_USAGE, "--reps must be ≥ 1 and batch sizes in 1..=4096"));
    }
    let (ws, load_ms) = load(&a.model)?;
    let name = ws.config().name.clone();
    let mut rows = Vec::new();
    #[cfg(feature = "cuda")]
    if let text2img::device::Device::Cuda(n) = device {
        let dev = text2img::cuda::CudaDevice::shared(n)?;
        for &batch in &a.batch_size {
            let mut t2i = text2img::cuda::CudaTextToImage::new(Arc::clone(&dev), &ws, batch)?;
            for &p in &a.precision {
                t2i.set_precision(p);
                rows.extend(measure_cuda(&mut t2i, batch, &a, &format!("cuda:{n} {}", dev.name()), p)?);
            }
        }
        print_rows(&a, &name, load_ms, &rows);
        return Ok(());
    }
    let _ = device;
    if let Some(p) = a.precision.iter().find(|&&p| p != Precision::F32) {
        let msg = format!("--precision {} is the GPU's (tensor cores); the CPU runs f32 only", p.name());
        return Err(fail(EXIT_USAGE, msg));
    }
    for &threads in &a.threads {
        let pool = thread_pool(threads)?;
        for &batch in &a.batch_size {
            let mut t2i = TextToImage::new(&ws, batch, Arc::clone(&pool), Backend::Cpu)?;
            rows.push(measure(&mut t2i, batch, pool.current_num_threads(), &a)?);
            if a.per_op {
                per_op(&mut t2i, &a);
            }
        }
    }
    print_rows(&a, &name, load_ms, &rows);
    Ok(())
}

fn bench_captions(batch: usize) -> Vec<String> {
    (0..batch).map(|i| format!("this bird is red with a black crown and a short beak {i}")).collect()
}

/// Times a closure `reps` times after `warmup` untimed calls; returns sorted milliseconds.
fn timed(reps: usize, warmup: usize, mut f: impl FnMut() -> Result<(), Failure>) -> Result<Vec<f64>, Failure> {
    for _ in 0..warmup {
        f()?;
    }
    let mut ms = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms)
}

/// The GPU rows: the first call with uploads and download, then replays of the device-resident
/// forward (encoder, embedding copy, device noise, G), each waited for: one kernel launch per
/// node from the host ("eager"), then the same forward captured once as a CUDA graph and
/// launched whole ("graph").
#[cfg(feature = "cuda")]
fn measure_cuda(
    t2i: &mut text2img::cuda::CudaTextToImage,
    batch: usize,
    a: &BenchArgs,
    device: &str,
    precision: Precision,
) -> Result<[Row; 2], Failure> {
    let captions = bench_captions(batch);
    let indices: Vec<u64> = (0..batch as u64).collect();
    let t = Instant::now();
    t2i.generate(&captions, 42, &indices)?;
    let first_ms = t.elapsed().as_secs_f64() * 1e3;
    let row = |kind: &str, total: Vec<f64>, g_only: Vec<f64>| Row {
        device: format!("{device} ({kind})"),
        precision: precision.name(),
        batch,
        threads: 0,
        first_ms,
        median_ms: percentile(&total, 0.5),
        p10_ms: percentile(&total, 0.1),
        p90_ms: percentile(&total, 0.9),
        g_median_ms: percentile(&g_only, 0.5),
    };
    let total = timed(a.reps, a.warmup, || Ok(t2i.replay(42).and_then(|_| t2i.synchronize())?))?;
    let g_only = timed(a.reps, a.warmup, || Ok(t2i.replay_generator(42).and_then(|_| t2i.synchronize())?))?;
    let eager = row("eager", total, g_only);
    t2i.capture(42)?;
    let total = timed(a.reps, a.warmup, || Ok(t2i.launch_graph(false).and_then(|_| t2i.synchronize())?))?;
    let g_only = timed(a.reps, a.warmup, || Ok(t2i.launch_graph(true).and_then(|_| t2i.synchronize())?))?;
    Ok([eager, row("graph", total, g_only)])
}

fn measure(t2i: &mut TextToImage, batch: usize, threads: usize, a: &BenchArgs) -> Result<Row, Failure> {
    let captions = bench_captions(batch);
    let indices: Vec<u64> = (0..batch as u64).collect();
    let t = Instant::now();
    t2i.generate(&captions, 42, 0)?;
    let first_ms = t.elapsed().as_secs_f64() * 1e3;
    let total = timed(a.reps, a.warmup, || {
        t2i.encoder().run();
        t2i.generate_loaded(42, &indices);
        Ok(())
    })?;
    let g_only = timed(a.reps, a.warmup, || {
        t2i.generate_loaded(42, &indices);
        Ok(())
    })?;
    Ok(Row {
        device: "cpu".into(),
        precision: "f32",
        batch,
        threads,
        first_ms,
        median_ms: percentile(&total, 0.5),
        p10_ms: percentile(&total, 0.1),
        p90_ms: percentile(&total, 0.9),
        g_median_ms: percentile(&g_only, 0.5),
    })
}

/// Per-node medians of the encoder and generator, with GFLOP/s (2 FLOPs per MAC).
fn per_op(t2i: &mut TextToImage, a: &BenchArgs) {
    let batch = t2i.generator().batch();
    for session in t2i.sessions_mut() {
        let n = session.graph().nodes.len();
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); n];
        let mut times = Vec::with_capacity(n);
        for _ in 0..a.reps.max(3) {
            session.run_profiled(&mut times);
            samples.iter_mut().zip(&times).for_each(|(s, &t)| s.push(t));
        }
        for (node, s) in session.graph().nodes.iter().zip(&mut samples) {
            s.sort_by(f64::total_cmp);
            let med = percentile(s, 0.5);
            let flops = 2.0 * (node.op.macs() * batch) as f64;
            let gflops = if flops > 0.0 { format!("{:8.1} GFLOP/s", flops / med / 1e9) } else { String::new() };
            eprintln!("  b{batch:<4} {:<28} {:<17} {:9.3} ms {gflops}", node.name, node.op.kind(), med * 1e3);
        }
    }
}

fn print_rows(a: &BenchArgs, model: &str, load_ms: f64, rows: &[Row]) {
    let rss = peak_rss_mb();
    match a.format {
        Format::Table => {
            println!("| model | device | precision | batch | threads | load ms | first ms | median ms | p10 ms | p90 ms | G ms | images/s | peak RSS MB |");
            println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            for r in rows {
                println!(
                    "| {model} | {} | {} | {} | {} | {load_ms:.1} | {:.2} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} | {rss:.0} |",
                    r.device,
                    r.precision,
                    r.batch, r.threads, r.first_ms, r.median_ms, r.p10_ms, r.p90_ms, r.g_median_ms, images_per_s(r)
                );
            }
        }
        Format::Csv => {
            println!("model,device,precision,batch,threads,load_ms,first_ms,median_ms,p10_ms,p90_ms,g_median_ms,images_per_s,peak_rss_mb");
            for r in rows {
                println!(
                    "{model},{},{},{},{},{load_ms:.3},{:.3},{:.4},{:.4},{:.4},{:.4},{:.2},{rss:.1}",
                    r.device,
                    r.precision,
                    r.batch,
                    r.threads,
                    r.first_ms,
                    r.median_ms,
                    r.p10_ms,
                    r.p90_ms,
                    r.g_median_ms,
                    images_per_s(r)
                );
            }
        }
        Format::Jsonl => {
            for r in rows {
                let j = serde_json::json!({
                    "model": model, "device": r.device, "precision": r.precision, "batch": r.batch, "threads": r.threads,
                    "load_ms": load_ms, "first_ms": r.first_ms, "median_ms": r.median_ms,
                    "p10_ms": r.p10_ms, "p90_ms": r.p90_ms, "g_median_ms": r.g_median_ms,
                    "images_per_s": images_per_s(r), "peak_rss_mb": rss,
                });
                println!("{j}");
            }
        }
    }
}

fn images_per_s(r: &Row) -> f64 {
    r.batch as f64 / (r.median_ms / 1e3)
}
