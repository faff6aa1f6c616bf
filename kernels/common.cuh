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

// ---- The tiled f32 GEMM core of the implicit-GEMM convolutions (conv2d.cu, conv_transpose2d.cu,
// char_cnn_rnn.cu) ----
// One block computes the 64×64 tile of C[m, n] = A[m, k] × B[k, n] at (row0, col0), reading the
// operands through a problem P. What is costly to work out from an index (divisions: which image,
// output position, input channel and tap) is worked out once per block and column
// (P::col(j) → P::Col) and once per K step and depth (P::tap(q) → P::Tap), kept in shared
// memory, so an element load is a few adds and compares: P::a(i, tap) and P::b(tap, col) (only
// called in range: 0 ≤ i < m, j < n, q < k), and P::store(i, col, acc) once for each in-range
// element of the tile, after the whole K loop. A convolution's problem gathers its input on the
// fly (no im2col buffer) and applies the fused epilogue in store.
// Launch contract: block (16, 16, 1); static shared memory only (about 9 KiB); k may be 0 (then
// every element of the tile is stored with acc = 0). Thread (tx, ty) owns rows ty + 16r and
// columns tx + 16s (r, s < 4): a warp's stores cover 16 consecutive columns.
#define TG_M 64
#define TG_N 64
#define TG_K 16
template <class P>
static __device__ __forceinline__ void tile_gemm_f32(const P& pr, int m, int n, int k, int row0, int col0) {
    // A is stored transposed (q major); the +1 keeps the q-fastest stores off one bank.
    __shared__ float as[TG_K][TG_M + 1];
    __shared__ float bs[TG_K][TG_N];
    __shared__ typename P::Col cols[TG_N];
    __shared__ typename P::Tap taps[TG_K];
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
    if (tid < TG_N && col0 + tid < n) cols[tid] = pr.col(col0 + tid);
    float acc[4][4] = {};
    for (int p0 = 0; p0 < k; p0 += TG_K) {
        if (tid < TG_K && p0 + tid < k) taps[tid] = pr.tap(p0 + tid);
        __syncthreads();
        // A: q fastest, so 16 neighbouring threads read 16 neighbouring weights of one row.
        for (int l = tid; l < TG_K * TG_M; l += 256) {
            int p = l % TG_K, i = l / TG_K;
            as[p][i] = (row0 + i < m && p0 + p < k) ? pr.a(row0 + i, taps[p]) : 0.0f;
        }
        // B: j fastest (neighbouring output positions read neighbouring inputs).
        for (int l = tid; l < TG_K * TG_N; l += 256) {
            int p = l / TG_N, j = l % TG_N;
            bs[p][j] = (col0 + j < n && p0 + p < k) ? pr.b(taps[p], cols[j]) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int p = 0; p < TG_K; ++p) {
            float av[4], bv[4];
#pragma unroll
            for (int r = 0; r < 4; ++r) av[r] = as[p][ty + 16 * r];
#pragma unroll
            for (int s = 0; s < 4; ++s) bv[s] = bs[p][tx + 16 * s];
#pragma unroll
            for (int r = 0; r < 4; ++r)
#pragma unroll
                for (int s = 0; s < 4; ++s) acc[r][s] = fmaf(av[r], bv[s], acc[r][s]);
        }
        __syncthreads();
    }
    if (k <= 0) __syncthreads();  // cols[] written above, read below
#pragma unroll
    for (int r = 0; r < 4; ++r) {
#pragma unroll
        for (int s = 0; s < 4; ++s) {
            int i = row0 + ty + 16 * r, j = tx + 16 * s;
            if (i < m && col0 + j < n) pr.store(i, cols[j], acc[r][s]);
        }
    }
}

// The fused epilogue's arguments, as the convolution problems carry them.
struct EpiArgs {
    int flags;
    const float* scale;
    const float* shift;
    const float* residual;
    int act;
    float slope;
    __device__ __forceinline__ float apply(float acc, int c, long long i) const {
        return epilogue(acc, c, i, flags, scale, shift, residual, act, slope);
    }
};
