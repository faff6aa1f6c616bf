// Shared by every kernel file: activation codes and the fused epilogue, the device twins of
// src/ops/activation.rs and src/ops/mod.rs (Epilogue). No system headers, so that NVRTC can compile
// the sources as they are (build.rs inlines this file into each source it embeds for NVRTC).
#pragma once

// Activation codes (src/cuda/launch.rs `act_code` maps ops::Activation onto them).
#define ACT_NONE 0
#define ACT_RELU 1
#define ACT_LEAKY_RELU 2
#define ACT_TANH 3
#define ACT_SIGMOID 4

// Epilogue flags: which of scale, shift and residual are present (absent pointers may be null).
#define EPI_SCALE 1
#define EPI_SHIFT 2
#define EPI_RESIDUAL 4

// Element i of an NCHW tensor [batch, c, h, w] as (b, c, y, x): the convolution kernels'
// grid-stride loops walk their outputs in this order.
struct Nchw {
    int b, c, y, x;
};
static __device__ __forceinline__ Nchw nchw_index(long long i, int c, int h, int w) {
    Nchw p;
    p.x = (int)(i % w);
    p.y = (int)((i / w) % h);
    p.c = (int)((i / ((long long)w * h)) % c);
    p.b = (int)(i / ((long long)w * h * c));
    return p;
}

// Logistic sigmoid, stable for large |x| (the same branches as ops::activation::sigmoid).
static __device__ __forceinline__ float sigmoid_f32(float x) {
    if (x >= 0.0f) {
        return 1.0f / (1.0f + expf(-x));
    }
    float e = expf(x);
    return e / (1.0f + e);
}

static __device__ __forceinline__ float apply_act(int act, float slope, float x) {
    switch (act) {
    case ACT_RELU: return fmaxf(x, 0.0f);
    case ACT_LEAKY_RELU: return x > 0.0f ? x : slope * x;
    case ACT_TANH: return tanhf(x);
    case ACT_SIGMOID: return sigmoid_f32(x);
    default: return x;
    }
}

// act(acc·scale[c] + shift[c] + residual[i]), in that order (as Epilogue::apply_channel).
static __device__ __forceinline__ float epilogue(
    float acc, int c, long long i, int flags, const float* scale, const float* shift, const float* residual,
    int act, float slope) {
    float v = acc * ((flags & EPI_SCALE) ? scale[c] : 1.0f) + ((flags & EPI_SHIFT) ? shift[c] : 0.0f);
    if (flags & EPI_RESIDUAL) {
        v += residual[i];
    }
    return apply_act(act, slope, v);
}

// The sum of one value per thread over a block of `threads` threads (a power of two; the
// launch's blockDim.x), in f64 through `shared` (`threads` doubles); every thread gets the total.
// All threads of the block must call it (it synchronises).
static __device__ double block_sum_f64(double v, double* shared, int threads) {
    shared[threadIdx.x] = v;
    __syncthreads();
    for (int s = threads / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
        __syncthreads();
    }
    double total = shared[0];
    __syncthreads();
    return total;
}
