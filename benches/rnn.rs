//! The encoder's GRU (reed-cub: 512 in, 512 hidden, 18 steps) at batch 1 and 64.
//! Reports time; throughput in FLOPs (2·MACs forward, 4·MACs for dW + dx): criterion's
//! elements/s is GFLOP/s. See `bench --per-op` for whole networks.

mod common;

use common::{data, pool};
use criterion::{criterion_group, criterion_main, Criterion};
use text2img::ops::gemm::PackedA;
use text2img::ops::rnn::{gru, pack_w_hh, scratch_len, RnnDims, RnnPacked};

fn bench_gru(c: &mut Criterion) {
    let pool = pool();
    let (cin, t, h) = (512, 18, 512);
    let w_ih = PackedA::from_row_major(&data(3 * h * cin), 3 * h, cin);
    let (w_hh, w_n) = pack_w_hh(&data(3 * h * h), true, h);
    let (b_ih, b_hh) = (data(3 * h), data(3 * h));
    let p = RnnPacked { w_ih: &w_ih, b_ih: &b_ih, w_hh: &w_hh, w_hh_n: w_n.as_ref(), b_hh: &b_hh };
    let mut group = c.benchmark_group("cpu/gru_fwd");
    group.sample_size(10);
    for batch in [1usize, 64] {
        let d = RnnDims { batch, cin, t, hidden: h };
        let x = data(batch * cin * t);
        let mut out = vec![0.0; batch * t * h];
        let mut scratch = vec![0.0; scratch_len(true, d)];
        group.bench_function(format!("encoder.rnn/b{batch}"), |b| {
            b.iter(|| pool.install(|| gru(&x, &p, d, &mut scratch, &mut out, 2)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_gru);
criterion_main!(benches);
