//! Per-op-family benchmarks at the reed-cub networks' real shapes (batch 1 and 64), fast path,
//! 2 threads: `cpu/<op>_fwd/<layer>/b<batch>` (and `cpu/<op>_bwd` at the `shapes` training shapes). Reports time; GFLOP/s = 2·MACs / time (the
//! MAC counts are in the bench names' layers: see `bench --per-op` for the whole network).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use text2img::ops::conv2d::{conv2d, conv2d_backward, Conv2dGeom};
use text2img::ops::conv_transpose2d::{conv_transpose2d, conv_transpose2d_backward, pack_weight, ConvTranspose2dGeom};
use text2img::ops::conv_winograd::{self, WinogradConv};
use text2img::ops::deconv_winograd::{self, WinogradDeconv};
use text2img::ops::gemm::PackedA;
use text2img::ops::rnn::{gru, pack_w_hh, scratch_len, RnnDims, RnnPacked};
use text2img::ops::tap_conv::{self, TapShape, TapWeights};
use text2img::ops::Epilogue;

fn data(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect()
}

fn pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool")
}

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

/// Training's backward convolutions at the `shapes` config's batch-64 shapes (D's strided convs,
/// G's deconvs): dW and dx, as one GAN step runs them.
fn bench_conv_backward(c: &mut Criterion) {
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

criterion_group!(benches, bench_conv_transpose2d, bench_conv2d, bench_gru, bench_conv_backward);
criterion_main!(benches);
