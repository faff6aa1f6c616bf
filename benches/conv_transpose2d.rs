//! Transposed convolution: forward at reed-cub G's layers (batch 1 and 64; the packed GEMM form and
//! the Winograd and tap forms where the executor picks them), backward at the `shapes` config's.
//! Reports time; throughput in FLOPs (2·MACs forward, 4·MACs for dW + dx): criterion's
//! elements/s is GFLOP/s. See `bench --per-op` for whole networks.

mod common;

use common::{data, pool};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use text2img::ops::conv_transpose2d::{conv_transpose2d, conv_transpose2d_backward, pack_weight, ConvTranspose2dGeom};
use text2img::ops::deconv_winograd::{self, WinogradDeconv};
use text2img::ops::gemm::PackedA;
use text2img::ops::tap_conv::{self, TapShape, TapWeights};
use text2img::ops::Epilogue;

fn bench_conv_transpose2d(c: &mut Criterion) {
    let pool = pool();
    let layers = [
        ("deconv0", ConvTranspose2dGeom { cin: 228, h: 1, w: 1, cout: 1024, k: 4, stride: 1, pad: 0 }),
        ("deconv1", ConvTranspose2dGeom { cin: 1024, h: 4, w: 4, cout: 512, k: 4, stride: 2, pad: 1 }),
        ("deconv2", ConvTranspose2dGeom { cin: 512, h: 8, w: 8, cout: 256, k: 4, stride: 2, pad: 1 }),
        ("deconv3", ConvTranspose2dGeom { cin: 256, h: 16, w: 16, cout: 128, k: 4, stride: 2, pad: 1 }),
        ("deconv4", ConvTranspose2dGeom { cin: 128, h: 32, w: 32, cout: 3, k: 4, stride: 2, pad: 1 }),
    ];
    let mut group = c.benchmark_group("cpu/conv_transpose2d_fwd");
    group.sample_size(10);
    for (name, g) in layers {
        let rows = pack_weight(&data(g.cin * g.rows()), &g);
        let w = PackedA::from_row_major(&rows, g.rows(), g.cin);
        for batch in [1usize, 64] {
            let x = data(batch * g.in_len());
            let mut out = vec![0.0; batch * g.out_len()];
            let mut scratch = vec![0.0; g.scratch_len(batch).max(deconv_winograd::scratch_len(&g, batch))];
            group.throughput(Throughput::Elements((2 * g.macs() * batch) as u64));
            let epi = Epilogue::default();
            group.bench_function(format!("{name}/b{batch}"), |b| {
                b.iter(|| pool.install(|| conv_transpose2d(&x, &w, batch, &g, &epi, &mut scratch, &mut out, 2)))
            });
            // The forms the executor picks where they pay (same FLOP count, for comparable rates).
            if deconv_winograd::worth_it(&g, batch) {
                let wd = WinogradDeconv::new(&rows, &g);
                group.bench_function(format!("{name}/b{batch}/winograd"), |b| {
                    b.iter(|| pool.install(|| wd.forward(&x, batch, &g, &epi, &mut scratch, &mut out, 2)))
                });
            }
            if let Some(s) = TapShape::deconv(&g).filter(|s| tap_conv::worth_it(s, batch)) {
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

/// Training's backward transposed convolutions at the `shapes` config's batch-64 shapes (G's
/// up-samplings): dW and dx, as one GAN step runs them.
fn bench_conv_transpose2d_backward(c: &mut Criterion) {
    let pool = pool();
    let batch = 64;
    let mut group = c.benchmark_group("cpu/conv_transpose2d_bwd");
    group.sample_size(10);
    for (name, g) in [
        ("shapes.g.deconv1", ConvTranspose2dGeom { cin: 256, h: 4, w: 4, cout: 128, k: 4, stride: 2, pad: 1 }),
        ("shapes.g.deconv2", ConvTranspose2dGeom { cin: 128, h: 8, w: 8, cout: 64, k: 4, stride: 2, pad: 1 }),
        ("shapes.g.deconv3", ConvTranspose2dGeom { cin: 64, h: 16, w: 16, cout: 32, k: 4, stride: 2, pad: 1 }),
        ("shapes.g.deconv4", ConvTranspose2dGeom { cin: 32, h: 32, w: 32, cout: 3, k: 4, stride: 2, pad: 1 }),
    ] {
        let (x, w, dy) = (data(batch * g.in_len()), data(g.cin * g.rows()), data(batch * g.out_len()));
        let (mut dx, mut dw) = (vec![0.0; batch * g.in_len()], vec![0.0; g.cin * g.rows()]);
        let mut scratch = vec![0.0; g.backward_scratch_len(batch)];
        group.throughput(Throughput::Elements((4 * g.macs() * batch) as u64));
        group.bench_function(format!("{name}/b{batch}"), |b| {
            b.iter(|| {
                pool.install(|| {
                    conv_transpose2d_backward(&x, &w, &dy, batch, &g, Some(&mut dx), &mut dw, &mut scratch, 2)
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_conv_transpose2d, bench_conv_transpose2d_backward);
criterion_main!(benches);
