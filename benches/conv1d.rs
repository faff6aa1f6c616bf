//! The encoder's 1-D convolutions (reed-cub: 70 → 384 → 512 → 512 channels, kernel 4, over 201,
//! 66 and 21 steps between the max-pools) at batch 1 and 64.
//! Reports time; throughput in FLOPs (2·MACs): criterion's elements/s is GFLOP/s. See
//! `bench --per-op` for whole networks.

mod common;

use common::{data, pool};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use text2img::ops::conv1d::{as_conv2d, conv1d};
use text2img::ops::gemm::PackedA;
use text2img::ops::{Activation, Epilogue};

fn bench_conv1d(c: &mut Criterion) {
    let pool = pool();
    // (name, cin, input steps, cout, kernel)
    let layers =
        [("encoder.conv1", 70, 201, 384, 4), ("encoder.conv2", 384, 66, 512, 4), ("encoder.conv3", 512, 21, 512, 4)];
    let mut group = c.benchmark_group("cpu/conv1d_fwd");
    group.sample_size(10);
    for (name, cin, t, cout, k) in layers {
        let w = PackedA::from_row_major(&data(cout * cin * k), cout, cin * k);
        let bias = data(cout);
        let epi = Epilogue { shift: Some(&bias), act: Activation::Relu, ..Epilogue::default() };
        let steps = t - k + 1;
        for batch in [1usize, 64] {
            let x = data(batch * cin * t);
            let mut out = vec![0.0; batch * cout * steps];
            let mut scratch = vec![0.0; as_conv2d(cin, t, cout, k).scratch_len(batch)];
            group.throughput(Throughput::Elements((2 * batch * cout * cin * k * steps) as u64));
            group.bench_function(format!("{name}/b{batch}"), |b| {
                b.iter(|| pool.install(|| conv1d(&x, &w, batch, cin, t, cout, k, &epi, &mut scratch, &mut out, 2)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_conv1d);
criterion_main!(benches);
