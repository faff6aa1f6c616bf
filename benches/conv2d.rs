//! Convolution: forward at reed-cub G's residual layers and D's first strided layer (batch 1 and 64;
//! the packed GEMM form and the Winograd and tap forms where the executor picks them), backward
//! at the `shapes` config's D.
//! Reports time; throughput in FLOPs (2·MACs forward, 4·MACs for dW + dx): criterion's
//! elements/s is GFLOP/s. See `bench --per-op` for whole networks.

mod common;

use common::{data, pool};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use text2img::ops::conv2d::{conv2d, conv2d_backward, Conv2dGeom};
use text2img::ops::conv_winograd::{self, WinogradConv};
use text2img::ops::gemm::PackedA;
use text2img::ops::tap_conv::{self, TapShape, TapWeights};
use text2img::ops::Epilogue;

fn bench_conv2d(c: &mut Criterion) {
    let pool = pool();
    let layers = [
        ("g.res0.conv3", Conv2dGeom { cin: 256, h: 4, w: 4, cout: 1024, kh: 3, kw: 3, stride: 1, pad: 1 }),
        ("g.res1.conv3", Conv2dGeom { cin: 128, h: 8, w: 8, cout: 512, kh: 3, kw: 3, stride: 1, pad: 1 }),
        ("d.conv1", Conv2dGeom { cin: 64, h: 32, w: 32, cout: 128, kh: 4, kw: 4, stride: 2, pad: 1 }),
    ];
    let mut group = c.benchmark_group("cpu/conv2d_fwd");
    group.sample_size(10);
    for (name, g) in layers {
        let rows = data(g.cout * g.kdim());
        let w = PackedA::from_row_major(&rows, g.cout, g.kdim());
        for batch in [1usize, 64] {
            let x = data(batch * g.in_len());
            let mut out = vec![0.0; batch * g.out_len()];
            let mut scratch = vec![0.0; g.scratch_len(batch).max(conv_winograd::scratch_len(&g, batch))];
            group.throughput(Throughput::Elements((2 * g.macs() * batch) as u64));
            let epi = Epilogue::default();
            group.bench_function(format!("{name}/b{batch}"), |b| {
                b.iter(|| pool.install(|| conv2d(&x, &w, batch, &g, &epi, &mut scratch, &mut out, 2)))
            });
            if conv_winograd::worth_it(&g, batch) {
                let wc = WinogradConv::new(&rows, &g);
                group.bench_function(format!("{name}/b{batch}/winograd"), |b| {
                    b.iter(|| pool.install(|| wc.forward(&x, batch, &g, &epi, &mut scratch, &mut out, 2)))
                });
            }
            if let Some(s) = TapShape::conv(&g).filter(|s| tap_conv::worth_it(s, batch)) {
                let tw = TapWeights::new(&rows, &s, false);
                let mut c = vec![0.0; tap_conv::scratch_len(&s)];
                group.bench_function(format!("{name}/b{batch}/taps"), |b| {
                    b.iter(|| pool.install(|| tw.forward(&x, batch, &epi, &mut c, &mut out)))
                });
            }
        }
    }
    group.finish();
}

/// Training's backward convolutions at the `shapes` config's batch-64 shapes (D's strided
/// convolutions): dW and dx, as one GAN step runs them.
fn bench_conv2d_backward(c: &mut Criterion) {
    let pool = pool();
    let batch = 64;
    let mut group = c.benchmark_group("cpu/conv2d_bwd");
    group.sample_size(10);
    for (name, g) in [
        ("shapes.d.conv0", Conv2dGeom { cin: 3, h: 64, w: 64, cout: 32, kh: 4, kw: 4, stride: 2, pad: 1 }),
        ("shapes.d.conv1", Conv2dGeom { cin: 32, h: 32, w: 32, cout: 64, kh: 4, kw: 4, stride: 2, pad: 1 }),
        ("shapes.d.conv2", Conv2dGeom { cin: 64, h: 16, w: 16, cout: 128, kh: 4, kw: 4, stride: 2, pad: 1 }),
        ("shapes.d.conv3", Conv2dGeom { cin: 128, h: 8, w: 8, cout: 256, kh: 4, kw: 4, stride: 2, pad: 1 }),
    ] {
        let (x, w, dy) = (data(batch * g.in_len()), data(g.cout * g.kdim()), data(batch * g.out_len()));
        let (mut dx, mut dw) = (vec![0.0; batch * g.in_len()], vec![0.0; g.cout * g.kdim()]);
        let mut scratch = vec![0.0; g.backward_scratch_len(batch)];
        group.throughput(Throughput::Elements((4 * g.macs() * batch) as u64));
        group.bench_function(format!("{name}/b{batch}"), |b| {
            b.iter(|| pool.install(|| conv2d_backward(&x, &w, &dy, batch, &g, Some(&mut dx), &mut dw, &mut scratch, 2)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_conv2d, bench_conv2d_backward);
criterion_main!(benches);
