// char_cnn_rnn: the text encoder's own kernels, the device twins of src/ops/conv1d.rs and
// src/ops/rnn.rs. conv1d is an implicit GEMM on the shared tile core; the recurrences take the input
// projection proj = W_ih·x (all steps at once, from gemm_fwd_f32 as a batched strided GEMM), then
// launch per time step across the whole GPU (one warp per row of W_hh, coalesced dot products);
// under a captured CUDA graph the per-step launches cost little.
#include "common.cuh"

// out[b, co, t] = act(Σ_{ci, j} x[b, ci, t + j] · w[co, ci, j] + bias[co]) — bias via the
// epilogue's shift (flags EPI_SHIFT), as ops::conv1d. x [B, Cin, T], w [Cout, Cin, k],
// out [B, Cout, T − k + 1]. An implicit GEMM on the shared tile core (common.cuh):
// C [Cout, B·To] = W [Cout, Cin·k] × X̂ [Cin·k, B·To], X̂ read from x on the fly.
struct Conv1dProblem {
    // A column (b, s): b·Cin·T + s and the offset of its channel-0 output; a depth q = (ci, j):
    // q and ci·T + j.
    struct Col {
        int in, out;
    };
    struct Tap {
        int q, off;
    };
    const float* __restrict__ x;
    const float* __restrict__ w;
    OutSink sink;
    int cin, t, cout, k, to;
    int q0;  // the depth split's first (ci, j) (common.cuh Split)
    __device__ __forceinline__ Col col(int j) const {
        int bb = j / to, s = j - bb * to;
        return Col{bb * cin * t + s, bb * cout * to + s};
    }
    __device__ __forceinline__ Tap tap(int q) const {
        q += q0;
        int ci = q / k;
        return Tap{q, ci * t + (q - ci * k)};
    }
    __device__ __forceinline__ float a(int co, const Tap& tp) const { return w[(long long)co * cin * k + tp.q]; }
    __device__ __forceinline__ float b(const Tap& tp, const Col& c) const { return x[c.in + tp.off]; }
    __device__ __forceinline__ void store(int co, const Col& c, float acc) const {
        int o = c.out + co * to;
        sink.put(acc, co, o);
    }
};

// Launch contract: block (16, 16, 1), grid (ceil(B·To / 64), ceil(Cout / 64), splits); static
// shared memory only. With one split (per_split ≥ Cin·k) every output element is written once;
// with several, split z writes every element of partial[z·len, (z + 1)·len) once (len =
// B·Cout·To; conv2d.cu's splitk_epilogue_f32 finishes). B·Cin·T and B·Cout·To fit int.
#define CONV1D_FWD_ARGS                                                                           \
    const float *__restrict__ x, const float *__restrict__ w, float *__restrict__ out, int batch, \
        int cin, int t, int cout, int k, int flags, const float *__restrict__ scale,             \
        const float *__restrict__ shift, int act, float slope, float *__restrict__ partial,      \
        int per_split
template <bool TC>
static __device__ __forceinline__ void conv1d_fwd(CONV1D_FWD_ARGS) {
    const int to = t - k + 1;
    const Split sp = depth_split(cin * k, per_split, blockIdx.z);
    float* part = gridDim.z > 1 ? partial + (long long)blockIdx.z * batch * cout * to : nullptr;
    const EpiArgs epi{flags, scale, shift, nullptr, act, slope};
    const Conv1dProblem pr{x, w, OutSink{out, part, epi}, cin, t, cout, k, to, sp.q0};
    tile_gemm<TC>(pr, cout, batch * to, sp.k, blockIdx.y * TG_M, blockIdx.x * TG_N);
}
#define CONV1D_FWD_PASS x, w, out, batch, cin, t, cout, k, flags, scale, shift, act, slope, partial, per_split
// `_f32` on the SIMT cores; `_bf16` with bf16 operands on the tensor cores (f32 accumulation).
extern "C" __global__ void __launch_bounds__(256, 2) conv1d_fwd_f32(CONV1D_FWD_ARGS) {
    conv1d_fwd<false>(CONV1D_FWD_PASS);
}
extern "C" __global__ void __launch_bounds__(256, 2) conv1d_fwd_bf16(CONV1D_FWD_ARGS) {
    conv1d_fwd<true>(CONV1D_FWD_PASS);
}

// Σ_q row[q]·v[q] over q < n by one warp: lanes stride over q (coalesced), then a shuffle
// reduction; every lane returns the full sum.
static __device__ __forceinline__ float warp_dot(const float* __restrict__ row, const float* v, int n) {
    float acc = 0.0f;
    for (int q = threadIdx.x & 31; q < n; q += 32) acc = fmaf(row[q], v[q], acc);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    return acc;
}

// Reed's FixedGRU, one step s per pair of launches (ops::rnn::gru_ref): with i = proj + b_ih,
//   s = 0: h = tanh(i_n)
//   s > 0: r = σ(i_r + W_r·h + b_r), z = σ(i_z + W_z·h + b_z),
//          n = tanh(i_n + W_n·(r⊙h) + b_n), h = z·n + (1 − z)·h.
// proj [B, T, 3H] (rows r, z, n; no bias), b_ih and b_hh [3H], w_hh [3H, H] row-major,
// out [B, T, H]; h_{s−1} is read back from out. Every step is spread over the whole GPU: one warp
// per row of W_hh, looping over the batch (the row stays in L1), instead of one block per sample
// walking all steps (one SM busy at batch 1: 7 ms per caption on an H200).
// scratch holds proj [B, T, 3H] and after it (scratch + B·T·3H) rh = r ⊙ h_{s−1} and z as
// [2, B, H], between the two launches of a step.
//
// Launch contract (both): block 256 (8 warps; any multiple of 32 works), grid ceil(rows / warps)
// with rows = 2H for gru_step_rz_f32 (s ≥ 1 only) and H for gru_step_n_f32 (every s). No shared
// memory. gru_step_n_f32 writes every element of out[:, s, :] exactly once.
extern "C" __global__ void gru_step_rz_f32(
    float* scratch, const float* __restrict__ b_ih, const float* __restrict__ w_hh,
    const float* __restrict__ b_hh, int batch, int t_len, int hid, int s, const float* __restrict__ out) {
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= 2 * hid) return;
    const float* w = w_hh + (long long)row * hid;
    const float bias = b_ih[row] + b_hh[row];
    const float* proj = scratch;
    float* rz = scratch + (long long)batch * t_len * 3 * hid;  // past every step's projections
    for (int b = 0; b < batch; ++b) {
        const float* h = out + ((long long)b * t_len + s - 1) * hid;
        float d = warp_dot(w, h, hid);
        if (lane == 0) {
            float g = sigmoid_f32(proj[((long long)b * t_len + s) * 3 * hid + row] + bias + d);
            if (row < hid) {
                rz[(long long)b * hid + row] = g * h[row];
            } else {
                rz[((long long)batch + b) * hid + row - hid] = g;
            }
        }
    }
}

extern "C" __global__ void gru_step_n_f32(
    const float* __restrict__ scratch, const float* __restrict__ b_ih, const float* __restrict__ w_hh,
    const float* __restrict__ b_hh, int batch, int t_len, int hid, int s, float* __restrict__ out) {
    const int j = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (j >= hid) return;
    const int row = 2 * hid + j;
    const float* w = w_hh + (long long)row * hid;
    const float *proj = scratch, *rz = scratch + (long long)batch * t_len * 3 * hid;
    for (int b = 0; b < batch; ++b) {
        const long long at = (long long)b * t_len + s;
        const float in = proj[at * 3 * hid + row] + b_ih[row];
        if (s == 0) {
            if (lane == 0) out[at * hid + j] = tanhf(in);
            continue;
        }
        float d = warp_dot(w, rz + (long long)b * hid, hid);
        if (lane == 0) {
            float n = tanhf(in + d + b_hh[row]);
            float z = rz[((long long)batch + b) * hid + j];
            out[at * hid + j] = z * n + (1.0f - z) * out[(at - 1) * hid + j];
        }
    }
}

// The same step's recurrent products on the tile core, for batches of GRU_TILE_MIN_BATCH
// (src/cuda/launch.rs) and more: the warp-per-row kernels above read each W_hh row once but do
// one dot product per sample after another (at batch 64 on an H200 the two took 237 and 216 µs
// a step, 40 % of caption → image: 0.2 TFLOP/s). Here C [rows, B] = W [rows, H] × V [H, B], V's
// column b the vector sample b multiplies (h_{s−1} for r and z: rows 0..2H of W_hh; r ⊙ h_{s−1}
// for n: rows 2H..3H), and each element gets the step's gate arithmetic as it is stored, in the
// same order of operations as the warp kernels (only the dot products' summation order differs).
// Arguments, scratch layout and what is written: as gru_step_rz_f32 / gru_step_n_f32 (s ≥ 1
// for both; step 0, which has no product, stays with gru_step_n_f32).
enum GruGate { GRU_RZ, GRU_N };
template <GruGate GATE>
struct GruStepProblem {
    using Col = int;  // the sample b
    using Tap = int;  // the depth q, a hidden unit
    float* scratch;   // proj [B, T, 3H], then r ⊙ h and z [2, B, H] (GRU_RZ writes them, GRU_N reads)
    const float* __restrict__ b_ih;
    const float* __restrict__ w_hh;
    const float* __restrict__ b_hh;
    float* out;  // [B, T, H]: step s − 1 read, step s written by GRU_N
    int batch, t_len, hid, s;
    __device__ __forceinline__ long long at(int b) const { return (long long)b * t_len + s; }
    __device__ __forceinline__ float* rz() const { return scratch + (long long)batch * t_len * 3 * hid; }
    __device__ __forceinline__ Col col(int j) const { return j; }
    __device__ __forceinline__ Tap tap(int q) const { return q; }
    __device__ __forceinline__ float a(int i, Tap q) const {
        const int row = GATE == GRU_RZ ? i : 2 * hid + i;
        return w_hh[(long long)row * hid + q];
    }
    __device__ __forceinline__ float b(Tap q, Col smp) const {
        return GATE == GRU_RZ ? out[(at(smp) - 1) * hid + q] : rz()[(long long)smp * hid + q];
    }
    __device__ __forceinline__ void store(int i, Col smp, float acc) const {
        const long long now = at(smp), before = now - 1;
        const float* proj = scratch;
        if (GATE == GRU_RZ) {
            const float bias = b_ih[i] + b_hh[i];
            const float g = sigmoid_f32(proj[now * 3 * hid + i] + bias + acc);
            if (i < hid) {
                rz()[(long long)smp * hid + i] = g * out[before * hid + i];
            } else {
                rz()[((long long)batch + smp) * hid + i - hid] = g;
            }
        } else {
            const int row = 2 * hid + i;
            const float in = proj[now * 3 * hid + row] + b_ih[row];
            const float n = tanhf(in + acc + b_hh[row]);
            const float z = rz()[((long long)batch + smp) * hid + i];
            out[now * hid + i] = z * n + (1.0f - z) * out[before * hid + i];
        }
    }
};

// Launch contract (both): block (16, 16, 1), grid (ceil(B / 64), ceil(rows / 64), 1) with rows =
// 2H for gru_step_rz_tile_f32 and H for gru_step_n_tile_f32, s ≥ 1; static shared memory only;
// every element of r ⊙ h and z (rz) or of out[:, s, :] (n) written exactly once.
#define GRU_TILE_ARGS                                                                             \
    float *scratch, const float *__restrict__ b_ih, const float *__restrict__ w_hh,              \
        const float *__restrict__ b_hh, int batch, int t_len, int hid, int s, float *out
extern "C" __global__ void __launch_bounds__(256, 2) gru_step_rz_tile_f32(GRU_TILE_ARGS) {
    const GruStepProblem<GRU_RZ> pr{scratch, b_ih, w_hh, b_hh, out, batch, t_len, hid, s};
    tile_gemm_f32(pr, 2 * hid, batch, hid, blockIdx.y * TG_M, blockIdx.x * TG_N);
}
extern "C" __global__ void __launch_bounds__(256, 2) gru_step_n_tile_f32(GRU_TILE_ARGS) {
    const GruStepProblem<GRU_N> pr{scratch, b_ih, w_hh, b_hh, out, batch, t_len, hid, s};
    tile_gemm_f32(pr, hid, batch, hid, blockIdx.y * TG_M, blockIdx.x * TG_N);
}

// The plain ReLU RNN, one launch per step (ops::rnn::rnn_relu_ref): h = relu(proj + b_ih
// [+ W_hh·h_{s−1} + b_hh for s > 0]). proj [B, T, H] (no bias), w_hh [H, H], out [B, T, H].
//
// Launch contract: block 256 (any multiple of 32), grid ceil(H / warps); no shared memory.
// Every element of out[:, s, :] is written exactly once.
extern "C" __global__ void rnn_relu_step_f32(
    const float* __restrict__ proj, const float* __restrict__ b_ih, const float* __restrict__ w_hh,
    const float* __restrict__ b_hh, int batch, int t_len, int hid, int s, float* __restrict__ out) {
    const int j = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (j >= hid) return;
    const float* w = w_hh + (long long)j * hid;
    for (int b = 0; b < batch; ++b) {
        const long long at = (long long)b * t_len + s;
        float a = proj[at * hid + j] + b_ih[j];
        if (s > 0) a += warp_dot(w, out + (at - 1) * hid, hid) + b_hh[j];
        if (lane == 0) out[at * hid + j] = fmaxf(a, 0.0f);
    }
}
