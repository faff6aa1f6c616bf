//! The linear layers (reed-cub: the encoder's projection 512 → 1024, G's text projection
//! 1024 → 128) at batch 1 and 64.
//! Reports time; throughput in FLOPs (2·MACs): criterion's elements/s is GFLOP/s. See
//! `bench --per-op` for whole networks.

mod common;

use common::{data, pool};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use text2img::ops::gemm::PackedA;
use text2img::ops::linear::linear;
use text2img::ops::{Activation, Epilogue};

fn bench_linear(c: &mut Criterion) {
    let pool = pool();
    let layers =
        [("encoder.proj", 512, 1024, Activation::None), ("generator.text_proj", 1024, 128, Activation::LeakyRelu(0.2))];
    let mut group = c.benchmark_group("cpu/linear_fwd");
    group.sample_size(10);
    for (name, in_f, out_f, act) in layers {
        let w = PackedA::from_row_major(&data(out_f * in_f), out_f, in_f);
        let bias = data(out_f);
        let epi = Epilogue { shift: Some(&bias), act, ..Epilogue::default() };
        for batch in [1usize, 64] {
            let x = data(batch * in_f);
            let mut out = vec![0.0; batch * out_f];
            group.throughput(Throughput::Elements((2 * batch * in_f * out_f) as u64));
            group.bench_function(format!("{name}/b{batch}"), |b| {
                b.iter(|| pool.install(|| linear(&x, &w, batch, in_f, out_f, &epi, &mut out, 2)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_linear);
criterion_main!(benches);
