// char_cnn_rnn: the text encoder's own kernels, the device twins of src/ops/conv1d.rs and
// src/ops/rnn.rs. conv1d runs direct (one thread per output); the recurrences take the input
// projection proj = W_ih·x (all steps at once, from gemm_fwd_f32 as a batched strided GEMM) and
// run the whole recurrence over time in ONE persistent kernel per sample: one block per sample,
// the hidden state in shared memory, one warp per row of W_hh for the dot products (coalesced),
// __syncthreads between the phases of a step. At batch 1 that is one launch for all T steps.
#include "common.cuh"

// out[b, co, t] = act(Σ_{ci, j} x[b, ci, t + j] · w[co, ci, j] + bias[co]) — bias via the
// epilogue's shift (flags EPI_SHIFT), as ops::conv1d. x [B, Cin, T], w [Cout, Cin, k],
// out [B, Cout, T − k + 1].
//
// Launch contract: 1-D, any block size (256 tuned), any grid (grid-stride loop); no shared
// memory; every output element written once.
extern "C" __global__ void conv1d_fwd_f32(
    const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ out,
    int batch, int cin, int t, int cout, int k,
    int flags, const float* __restrict__ scale, const float* __restrict__ shift, int act, float slope) {
    const int to = t - k + 1;
    const long long total = (long long)batch * cout * to;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        int s = (int)(i % to);
        int co = (int)((i / to) % cout);
        int b = (int)(i / ((long long)to * cout));
        float acc = 0.0f;
        for (int ci = 0; ci < cin; ++ci) {
            const float* xp = x + ((long long)b * cin + ci) * t + s;
            const float* wp = w + ((long long)co * cin + ci) * k;
            for (int j = 0; j < k; ++j) acc = fmaf(xp[j], wp[j], acc);
        }
        out[i] = epilogue(acc, co, i, flags, scale, shift, nullptr, act, slope);
    }
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

// Reed's FixedGRU over all steps (ops::rnn::gru_ref): with i = proj + b_ih,
//   t = 0: h = tanh(i_n)
//   t > 0: r = σ(i_r + W_r·h + b_r), z = σ(i_z + W_z·h + b_z),
//          n = tanh(i_n + W_n·(r⊙h) + b_n), h = z·n + (1 − z)·h.
// proj [B, T, 3H] (rows r, z, n; no bias), b_ih and b_hh [3H], w_hh [3H, H] row-major,
// out [B, T, H].
//
// Launch contract: grid (B), block (256) (any multiple of 32 up to 1024 works), dynamic shared
// memory 3·H floats; H ≤ 12 Ki floats of shared memory (H = 512 for reed-cub). Every element of
// out is written exactly once.
extern "C" __global__ void gru_fwd_f32(
    const float* __restrict__ proj, const float* __restrict__ b_ih, const float* __restrict__ w_hh,
    const float* __restrict__ b_hh, int t_len, int hid, float* __restrict__ out) {
    extern __shared__ float sh[];
    float* h = sh;             // h_{t−1}
    float* rh = sh + hid;      // r ⊙ h_{t−1}
    float* zs = sh + 2 * hid;  // z
    const int b = blockIdx.x, warp = threadIdx.x >> 5, warps = blockDim.x >> 5, lane = threadIdx.x & 31;
    for (int s = 0; s < t_len; ++s) {
        const float* p = proj + ((long long)b * t_len + s) * 3 * hid;
        float* o = out + ((long long)b * t_len + s) * hid;
        if (s == 0) {
            for (int j = threadIdx.x; j < hid; j += blockDim.x) {
                float v = tanhf(p[2 * hid + j] + b_ih[2 * hid + j]);
                h[j] = v;
                o[j] = v;
            }
            __syncthreads();
            continue;
        }
        // Phase 1: r and z (rows j and H + j of W_hh see h).
        for (int row = warp; row < 2 * hid; row += warps) {
            float d = warp_dot(w_hh + (long long)row * hid, h, hid);
            if (lane == 0) {
                float g = sigmoid_f32(p[row] + b_ih[row] + d + b_hh[row]);
                if (row < hid) {
                    rh[row] = g * h[row];
                } else {
                    zs[row - hid] = g;
                }
            }
        }
        __syncthreads();
        // Phase 2: the candidate n (rows 2H + j see r ⊙ h), then the new state, written to out.
        for (int j = warp; j < hid; j += warps) {
            int row = 2 * hid + j;
            float d = warp_dot(w_hh + (long long)row * hid, rh, hid);
            if (lane == 0) {
                float n = tanhf(p[row] + b_ih[row] + d + b_hh[row]);
                float z = zs[j];
                o[j] = z * n + (1.0f - z) * h[j];
            }
        }
        __syncthreads();
        for (int j = threadIdx.x; j < hid; j += blockDim.x) h[j] = o[j];
        __syncthreads();
    }
}

// The plain ReLU RNN over all steps (ops::rnn::rnn_relu_ref): h = relu(proj + b_ih
// [+ W_hh·h + b_hh for t > 0]). proj [B, T, H] (no bias), w_hh [H, H], out [B, T, H].
//
// Launch contract: grid (B), block (256) (any multiple of 32 up to 1024), dynamic shared memory
// H floats. Every element of out is written exactly once.
extern "C" __global__ void rnn_relu_fwd_f32(
    const float* __restrict__ proj, const float* __restrict__ b_ih, const float* __restrict__ w_hh,
    const float* __restrict__ b_hh, int t_len, int hid, float* __restrict__ out) {
    extern __shared__ float h[];
    const int b = blockIdx.x, warp = threadIdx.x >> 5, warps = blockDim.x >> 5, lane = threadIdx.x & 31;
    for (int s = 0; s < t_len; ++s) {
        const float* p = proj + ((long long)b * t_len + s) * hid;
        float* o = out + ((long long)b * t_len + s) * hid;
        for (int j = warp; j < hid; j += warps) {
            float a = p[j] + b_ih[j];
            if (s > 0) a += warp_dot(w_hh + (long long)j * hid, h, hid) + b_hh[j];
            if (lane == 0) o[j] = fmaxf(a, 0.0f);
        }
        __syncthreads();
        for (int j = threadIdx.x; j < hid; j += blockDim.x) h[j] = o[j];
        __syncthreads();
    }
}
