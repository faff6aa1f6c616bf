//! G forward (reed-cub, synthetic weights, BN folded) at batch 1 and 64, and caption → image
//! at batch 1, on the CPU with 2 threads (the machine's cores). Names follow
//! `cpu/<what>/b<batch>`.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use text2img::graph::{thread_pool, Backend};
use text2img::model::synthetic::synthetic_weights;
use text2img::model::{ModelConfig, Network, TextToImage, WeightSet};

fn bench(c: &mut Criterion) {
    let cfg = ModelConfig::builtin("reed-cub").expect("config");
    let nets = [Network::Encoder, Network::Generator];
    let ws = WeightSet::from_tensors(cfg.clone(), &nets, synthetic_weights(&cfg, &nets)).expect("weights");
    let threads = std::env::var("T2I_BENCH_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2);
    let pool = thread_pool(threads).expect("pool");
    let mut group = c.benchmark_group("cpu");
    group.sample_size(20).measurement_time(std::time::Duration::from_secs(8));
    for batch in [1usize, 64] {
        let mut t2i = TextToImage::new(&ws, batch, Arc::clone(&pool), Backend::Cpu).expect("pipeline");
        let captions: Vec<String> = (0..batch).map(|i| format!("this bird is red with a black crown {i}")).collect();
        t2i.embed(&captions).expect("embed");
        let indices: Vec<u64> = (0..batch as u64).collect();
        group.bench_function(format!("generator_fwd/b{batch}"), |b| b.iter(|| t2i.generate_loaded(42, &indices)));
        if batch == 1 {
            group.bench_function("caption_to_image/b1", |b| {
                b.iter(|| {
                    t2i.encoder().run();
                    t2i.generate_loaded(42, &indices)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
