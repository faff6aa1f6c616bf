//! A planned run allocates nothing: a counting global allocator sees zero allocations (on any
//! thread) during repeated runs of the encoder, generator and discriminator after the first.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use text2img::graph::{thread_pool, Backend, Session};
use text2img::model::discriminator::build_discriminator;
use text2img::model::synthetic::synthetic_weights;
use text2img::model::{ModelConfig, Network, TextToImage, WeightSet};
use text2img::tensor::DType;

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn repeated_runs_allocate_nothing() {
    let cfg = ModelConfig::builtin("shapes").expect("config");
    let nets = Network::ALL;
    let f32_weights = synthetic_weights(&cfg, &nets);
    // f16 tensors keep f16 GEMM panels, which are widened on the fly: also allocation-free.
    let f16_weights = f32_weights.iter().map(|(n, t)| (n.clone(), t.to_dtype(DType::F16))).collect();
    for (dtype, tensors) in [("f32", f32_weights), ("f16", f16_weights)] {
        let ws = WeightSet::from_tensors(cfg.clone(), &nets, tensors).expect("weights");
        runs_allocate_nothing(&ws, dtype);
    }
}

fn runs_allocate_nothing(ws: &WeightSet, dtype: &str) {
    for threads in [1, 2] {
        // Winograd forms: the 8×8 residual block and deconv3 from batch 1, deconv2 from batch 4, the 4×4
        // residual block from batch 4.
        for batch in [1, 3, 8] {
            let pool = thread_pool(threads).expect("pool");
            let captions: Vec<String> = (0..batch).map(|i| format!("a small red circle number {i}")).collect();
            let mut t2i = TextToImage::new(ws, batch, Arc::clone(&pool), Backend::Cpu).expect("pipeline");
            let mut d = Session::new(Arc::new(build_discriminator(ws).expect("D")), batch, pool, Backend::Cpu);
            let indices: Vec<u64> = (0..batch as u64).collect();
            t2i.embed(&captions).expect("embed");
            // Warm-up: thread-local buffers of the pool and GEMM are created here.
            for _ in 0..2 {
                t2i.encoder().run();
                t2i.generate_loaded(7, &indices);
                d.run();
            }
            let before = ALLOCS.load(Ordering::SeqCst);
            for _ in 0..3 {
                t2i.encoder().run();
                t2i.generate_loaded(7, &indices);
                d.run();
            }
            let n = ALLOCS.load(Ordering::SeqCst) - before;
            assert_eq!(n, 0, "{n} allocations in 3 runs at batch {batch}, {threads} threads, {dtype} weights");
        }
    }
}
