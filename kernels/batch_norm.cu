// batch_norm: the inference batch norm as a standalone epilogue pass, y = act(x·scale[c] +
// shift[c] + residual) over x [B, C, S] (scale = γ/√(σ² + ε), shift = β − μ·scale, as
// BatchNormParams::scale_shift). Convolutions fuse this epilogue; this kernel serves where no
// producer can (and is the oracle for the fused ones).
#include "common.cuh"

// Launch contract: 1-D, any block size (256 tuned), any grid (grid-stride loop over n = B·C·S);
// no shared memory; out may alias x (each element is read, then written, by one thread).
extern "C" __global__ void batch_norm_fwd_f32(
    const float* x, float* out, long long n, int channels, long long spatial,
    int flags, const float* __restrict__ scale, const float* __restrict__ shift,
    const float* __restrict__ residual, int act, float slope) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        int c = (int)((i / spatial) % channels);
        out[i] = epilogue(x[i], c, i, flags, scale, shift, residual, act, slope);
    }
}

// ---- training ----

#define BN_BLOCK 256
#define BN_EPS 1e-5

// Training-mode batch norm over x [B, C, S]: per channel the batch mean μ and
// invstd = 1/√(σ²_B + ε) (biased σ², two passes, f64 sums as ops::batch_norm::batch_norm_train),
// then out = x·(γ·invstd) + (β − μ·γ·invstd). Writes mean[c] and invstd[c] for the backward
// pass and the running-statistics update (done on the host side of the trainer).
//
// Launch contract: one block per channel (grid = C), block BN_BLOCK = 256 threads, 2 KiB static
// shared memory. Every element of out and of mean/invstd written once. out may not alias x.
extern "C" __global__ void __launch_bounds__(BN_BLOCK) batch_norm_train_fwd_f32(
    const float* __restrict__ x, int batch, int channels, int spatial,
    const float* __restrict__ gamma, const float* __restrict__ beta,
    float* __restrict__ out, float* __restrict__ mean, float* __restrict__ invstd) {
    __shared__ double shared[BN_BLOCK];
    const int c = blockIdx.x;
    const int n = batch * spatial;  // the host checks that it fits
    double s = 0.0;
    for (int j = threadIdx.x; j < n; j += BN_BLOCK) {
        s += (double)x[((long long)(j / spatial) * channels + c) * spatial + j % spatial];
    }
    const double mu = __ddiv_rn(block_sum_f64(s, shared, BN_BLOCK), (double)n);
    double q = 0.0;
    for (int j = threadIdx.x; j < n; j += BN_BLOCK) {
        double d = (double)x[((long long)(j / spatial) * channels + c) * spatial + j % spatial] - mu;
        q += d * d;
    }
    const double var = __ddiv_rn(block_sum_f64(q, shared, BN_BLOCK), (double)n);
    // IEEE-rounded intrinsics: the same value as 1/√(σ² + ε) in f64, without the generic
    // sqrt/division slow paths (which spilled).
    const float m = (float)mu, is = (float)__ddiv_rn(1.0, __dsqrt_rn(__dadd_rn(var, BN_EPS)));
    if (threadIdx.x == 0) {
        mean[c] = m;
        invstd[c] = is;
    }
    const float k = __fmul_rn(gamma[c], is);
    const float shift = __fsub_rn(beta[c], __fmul_rn(m, k));
    for (int j = threadIdx.x; j < n; j += BN_BLOCK) {
        long long i = ((long long)(j / spatial) * channels + c) * spatial + j % spatial;
        out[i] = __fadd_rn(__fmul_rn(x[i], k), shift);
    }
}

// Backward of training-mode batch norm, with x̂ = (x − μ)·invstd and N = B·S:
// dβ += Σ dy, dγ += Σ dy·x̂, dx = γ·invstd/N · (N·dy − Σ dy − x̂·Σ dy·x̂) (dx OVERWRITTEN), as
// ops::batch_norm::batch_norm_backward (sums in f64 here: within f32 rounding of the CPU's).
//
// Launch contract: as batch_norm_train_fwd_f32 (grid = C, 256 threads). dx may not alias x or dy.
extern "C" __global__ void __launch_bounds__(BN_BLOCK) batch_norm_bwd_f32(
    const float* __restrict__ x, const float* __restrict__ dy, int batch, int channels, int spatial,
    const float* __restrict__ gamma, const float* __restrict__ mean, const float* __restrict__ invstd,
    float* __restrict__ dx, float* __restrict__ dgamma, float* __restrict__ dbeta) {
    __shared__ double shared[BN_BLOCK];
    const int c = blockIdx.x;
    const int n = batch * spatial;  // the host checks that it fits
    const float mu = mean[c], is = invstd[c];
    double a = 0.0, b = 0.0;
    for (int j = threadIdx.x; j < n; j += BN_BLOCK) {
        long long i = ((long long)(j / spatial) * channels + c) * spatial + j % spatial;
        a += (double)dy[i];
        b += (double)dy[i] * (double)(x[i] - mu);
    }
    const float sdy = (float)block_sum_f64(a, shared, BN_BLOCK);
    const float sdyx = (float)block_sum_f64(b, shared, BN_BLOCK) * is;
    if (threadIdx.x == 0) {
        dbeta[c] += sdy;
        dgamma[c] += sdyx;
    }
    const float nf = (float)n;
    const float k = gamma[c] * is / nf;
    for (int j = threadIdx.x; j < n; j += BN_BLOCK) {
        long long i = ((long long)(j / spatial) * channels + c) * spatial + j % spatial;
        dx[i] = k * (nf * dy[i] - sdy - (x[i] - mu) * is * sdyx);
    }
}

// The running-statistics update of a training step, as ops::batch_norm::update_running (f64):
// rm ← (1 − m)·rm + m·mean, rv ← (1 − m)·rv + m·max(var, 0)·count/(count − 1), var recovered
// from invstd. Launch contract: 1-D, any block size, any grid over the C channels.
extern "C" __global__ void batch_norm_update_running_f32(
    float* __restrict__ running_mean, float* __restrict__ running_var, const float* __restrict__ mean,
    const float* __restrict__ invstd, int channels, long long count, float momentum) {
    const double m = momentum;
    const double unbias = count > 1 ? (double)count / (double)(count - 1) : 1.0;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < channels; c += gridDim.x * blockDim.x) {
        double is = invstd[c];
        double var = __dsub_rn(__ddiv_rn(1.0, __dmul_rn(is, is)), BN_EPS);
        running_mean[c] = (float)((1.0 - m) * (double)running_mean[c] + m * (double)mean[c]);
        running_var[c] = (float)((1.0 - m) * (double)running_var[c] + m * fmax(var, 0.0) * unbias);
    }
}
