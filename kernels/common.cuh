// Shared by every kernel file: activation codes and the fused epilogue, the device twins of
// src/ops/activation.rs and src/ops/mod.rs (Epilogue). No system headers, so that NVRTC can compile
// the sources as they are (build.rs inlines this file into each source it embeds for NVRTC).
#pragma once

// A grid-stride loop over n elements: any block size, any grid.
#define GRID_STRIDE(i, n)                                                                      \
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n);              \
         i += (long long)gridDim.x * blockDim.x)

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
// The K loop is software-pipelined: each thread loads its share of step p + 1 into registers
// right after the barrier of step p, and those loads are in flight while step p's multiply-adds
// run (batch 1 has a block or two per SM, so nothing else hides a load's latency).
// Launch contract: block (16, 16, 1); static shared memory only (about 9 KiB); k may be 0 (then
// every element of the tile is stored with acc = 0). Thread (tx, ty) owns rows ty + 16r and
// columns tx + 16s (r, s < 4): a warp's stores cover 16 consecutive columns.
#define TG_M 64
#define TG_N 64
#define TG_K 16
// The prologue every tile shares: the block's column records, the first K step's depth records,
// and the barrier that publishes both.
template <class P>
static __device__ __forceinline__ void tile_prologue(
    const P& pr, int n, int k, int col0, int tid, typename P::Col* cols, typename P::Tap* taps) {
    if (tid < TG_N && col0 + tid < n) cols[tid] = pr.col(col0 + tid);
    if (tid < TG_K && tid < k) taps[tid] = pr.tap(tid);
    __syncthreads();
}

template <class P>
static __device__ __forceinline__ void tile_gemm_f32(const P& pr, int m, int n, int k, int row0, int col0) {
    // A is stored transposed (q major); the +1 keeps the q-fastest stores off one bank.
    __shared__ float as[TG_K][TG_M + 1];
    __shared__ float bs[TG_K][TG_N];
    __shared__ typename P::Col cols[TG_N];
    __shared__ typename P::Tap taps[2][TG_K];  // this K step's and the next one's
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
    // This thread's share of a K step: A (q fastest, so 16 neighbouring threads read 16
    // neighbouring weights of one row) at depth qa, rows ia + 16u; B (j fastest: neighbouring
    // output positions read neighbouring inputs) at depths qb + 4u, column jb.
    const int qa = tid % TG_K, ia = tid / TG_K, qb = tid / TG_N, jb = tid % TG_N;
    float ra[4], rb[4];
    auto load = [&](int p0, const typename P::Tap* tp) {
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            const int i = ia + 16 * u, q = qb + 4 * u;
            ra[u] = (row0 + i < m && p0 + qa < k) ? pr.a(row0 + i, tp[qa]) : 0.0f;
            rb[u] = (col0 + jb < n && p0 + q < k) ? pr.b(tp[q], cols[jb]) : 0.0f;
        }
    };
    tile_prologue(pr, n, k, col0, tid, cols, taps[0]);
    if (k > 0) load(0, taps[0]);
    float acc[4][4] = {};
    for (int p0 = 0, cur = 0; p0 < k; p0 += TG_K, cur ^= 1) {
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            as[qa][ia + 16 * u] = ra[u];
            bs[qb + 4 * u][jb] = rb[u];
        }
        const int next = p0 + TG_K;
        if (tid < TG_K && next + tid < k) taps[cur ^ 1][tid] = pr.tap(next + tid);
        __syncthreads();
        if (next < k) load(next, taps[cur ^ 1]);
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
#pragma unroll
    for (int r = 0; r < 4; ++r) {
#pragma unroll
        for (int s = 0; s < 4; ++s) {
            int i = row0 + ty + 16 * r, j = tx + 16 * s;
            if (i < m && col0 + j < n) pr.store(i, cols[j], acc[r][s]);
        }
    }
}

// ---- The same tile on tensor cores: bf16 operands, f32 accumulation (sm_80 and newer) ----
// The problem interface, launch shape and stores are tile_gemm_f32's; the operands are rounded
// to bf16 (nearest even) as they enter shared memory, and each K step of 16 is four
// mma.sync.m16n8k16 per warp: the 8 warps as 2 (rows) × 4 (columns), each owning a 32 × 16 block
// of the tile (two m16 by two n8 accumulators). Inline PTX, so no header is needed.

// f32 → bf16 bits, round to nearest even (NaN-free inputs).
static __device__ __forceinline__ unsigned int bf16_bits(float f) {
    unsigned int u = __float_as_uint(f);
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}
// Two bf16 in one register, `lo` in the low half (the lower k of a fragment pair).
static __device__ __forceinline__ unsigned int bf16_pair(float lo, float hi) {
    return bf16_bits(lo) | (bf16_bits(hi) << 16);
}

template <class P>
static __device__ __forceinline__ void tile_gemm_bf16(const P& pr, int m, int n, int k, int row0, int col0) {
    // [row or column][k pair], 12 words a line: fragment loads of 8 lines × 4 pairs hit 32 banks.
    __shared__ unsigned int as[TG_M][12];
    __shared__ unsigned int bs[TG_N][12];
    __shared__ typename P::Col cols[TG_N];
    __shared__ typename P::Tap taps[2][TG_K];  // this K step's and the next one's
    const int tid = threadIdx.y * 16 + threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;                  // the fragments' group and thread in group
    const int wm = (warp >> 2) * 32, wn = (warp & 3) * 16;  // this warp's block of the tile
    // This thread's share of a K step, pipelined as in tile_gemm_f32: two pairs of A (64 rows ×
    // 8 k pairs, pairs fastest) at pair ka, rows ia + 32u; two of B (columns fastest) at pairs
    // kb + 4u, column jb; each pair rounded to bf16 as it is loaded.
    const int ka = tid & 7, ia = tid >> 3, kb = tid >> 6, jb = tid & 63;
    unsigned int ra[2], rb[2];
    auto load = [&](int p0, const typename P::Tap* tp) {
#pragma unroll
        for (int u = 0; u < 2; ++u) {
            const int i = ia + 32 * u, qa = p0 + 2 * ka;
            const bool row = row0 + i < m;
            const float alo = (row && qa < k) ? pr.a(row0 + i, tp[2 * ka]) : 0.0f;
            const float ahi = (row && qa + 1 < k) ? pr.a(row0 + i, tp[2 * ka + 1]) : 0.0f;
            ra[u] = bf16_pair(alo, ahi);
            const int kp = kb + 4 * u, qb = p0 + 2 * kp;
            const bool col = col0 + jb < n;
            const float blo = (col && qb < k) ? pr.b(tp[2 * kp], cols[jb]) : 0.0f;
            const float bhi = (col && qb + 1 < k) ? pr.b(tp[2 * kp + 1], cols[jb]) : 0.0f;
            rb[u] = bf16_pair(blo, bhi);
        }
    };
    tile_prologue(pr, n, k, col0, tid, cols, taps[0]);
    if (k > 0) load(0, taps[0]);
    float acc[2][2][4] = {};
    for (int p0 = 0, cur = 0; p0 < k; p0 += TG_K, cur ^= 1) {
#pragma unroll
        for (int u = 0; u < 2; ++u) {
            as[ia + 32 * u][ka] = ra[u];
            bs[jb][kb + 4 * u] = rb[u];
        }
        const int next = p0 + TG_K;
        if (tid < TG_K && next + tid < k) taps[cur ^ 1][tid] = pr.tap(next + tid);
        __syncthreads();
        if (next < k) load(next, taps[cur ^ 1]);
        unsigned int a[2][4], b[2][2];
#pragma unroll
        for (int mi = 0; mi < 2; ++mi) {
            const int r = wm + 16 * mi + g;
            a[mi][0] = as[r][t];
            a[mi][1] = as[r + 8][t];
            a[mi][2] = as[r][t + 4];
            a[mi][3] = as[r + 8][t + 4];
        }
#pragma unroll
        for (int ni = 0; ni < 2; ++ni) {
            const int c = wn + 8 * ni + g;
            b[ni][0] = bs[c][t];
            b[ni][1] = bs[c][t + 4];
        }
#pragma unroll
        for (int mi = 0; mi < 2; ++mi)
#pragma unroll
            for (int ni = 0; ni < 2; ++ni) {
                float* d = acc[mi][ni];
                asm volatile(
                    "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                    "{%8, %9}, {%0, %1, %2, %3};\n"
                    : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                    : "r"(a[mi][0]), "r"(a[mi][1]), "r"(a[mi][2]), "r"(a[mi][3]), "r"(b[ni][0]), "r"(b[ni][1]));
            }
        __syncthreads();
    }
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < 2; ++ni)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                // c0, c1: row g, columns 2t and 2t + 1; c2, c3: row g + 8.
                int i = row0 + wm + 16 * mi + g + 8 * (e >> 1), j = wn + 8 * ni + 2 * t + (e & 1);
                if (i < m && col0 + j < n) pr.store(i, cols[j], acc[mi][ni][e]);
            }
}

// The tile on the SIMT cores (f32) or on the tensor cores (bf16 operands), as a kernel asks.
template <bool TENSOR_CORES, class P>
static __device__ __forceinline__ void tile_gemm(const P& pr, int m, int n, int k, int row0, int col0) {
    if constexpr (TENSOR_CORES) {
        tile_gemm_bf16(pr, m, n, k, row0, col0);
    } else {
        tile_gemm_f32(pr, m, n, k, row0, col0);
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

// ---- Split depth (split-K) for grids too small to fill the GPU ----
// At batch 1 a convolution's C has a few 64×64 tiles (G's 4×4 and 8×8 layers: 16–32 blocks on
// 132 SMs) and a long depth, so the launcher may split the depth over blockIdx.z: split z takes
// depths [z·per_split, min((z + 1)·per_split, K)) (possibly none) and stores its raw sums to
// partial[z·len + o]; splitk_epilogue_f32 (conv2d.cu) then adds the splits in order and applies
// the epilogue, so the result is the same every run (no atomics).
struct Split {
    int q0;  // this split's first depth
    int k;   // its depth (0 when the split is past K)
};
static __device__ __forceinline__ Split depth_split(int depth, int per_split, int z) {
    long long q0 = (long long)z * per_split;
    long long k = depth - q0 < per_split ? depth - q0 : per_split;
    return Split{(int)(q0 < depth ? q0 : depth), (int)(k > 0 ? k : 0)};
}

// Where a problem's finished sums go: through the epilogue into out, or raw into this split's
// partial sums (`part`, non-null when the depth is split).
struct OutSink {
    float* __restrict__ out;
    float* __restrict__ part;
    EpiArgs epi;
    __device__ __forceinline__ void put(float acc, int c, long long o) const {
        if (part) {
            part[o] = acc;
        } else {
            out[o] = epi.apply(acc, c, o);
        }
    }
};
