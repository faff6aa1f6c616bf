// conv2d: 2-D convolution (cross-correlation, no bias) with the fused epilogue, the device twin of
// src/ops/conv2d.rs: the forward (f32 or bf16 tile) and the weight gradient as implicit GEMMs on
// the shared tile core (common.cuh), one gather for both; the input gradient is in
// conv_transpose2d.cu.
#include "common.cuh"

// The convolution's gather, shared by the forward and the weight gradient (which take its two
// index records as opposite operands): an output position (b, oy, ox) as its image's input
// offset, oy·s − p, ox·s − p and the offset of its channel-0 output (or dy); a window element
// (ci, ky, kx) as its index, ci·H·W, ky and kx; x at the window element of a position, 0 in the
// padding.
struct ConvGather {
    struct Pos {
        int in, y, x, out;
    };
    struct Win {
        int idx, off, ky, kx;
    };
    const float* __restrict__ x;
    int cin, h, wd, cout, kw, stride, pad, wo, khw, hwo;
    __device__ __forceinline__ Pos pos(int j) const {
        int bb = j / hwo, pp = j - bb * hwo;
        int oy = pp / wo, ox = pp - oy * wo;
        return Pos{bb * cin * h * wd, oy * stride - pad, ox * stride - pad, bb * cout * hwo + pp};
    }
    __device__ __forceinline__ Win win(int q) const {
        int ci = q / khw, r = q - ci * khw;
        int ky = r / kw;
        return Win{q, ci * h * wd, ky, r - ky * kw};
    }
    __device__ __forceinline__ float at(const Win& t, const Pos& c) const {
        int iy = c.y + t.ky, ix = c.x + t.kx;
        if (iy < 0 || iy >= h || ix < 0 || ix >= wd) return 0.0f;
        return x[c.in + t.off + iy * wd + ix];
    }
};

// out[b, co, oy, ox] = epi(Σ_{ci, ky, kx} x[b, ci, oy·s − p + ky, ox·s − p + kx] · w[co, ci, ky, kx])
// x [B, Cin, H, W], w [Cout, Cin, kh, kw] (PyTorch layout, BN folded into scale/shift),
// out and residual [B, Cout, Ho, Wo]. An implicit GEMM (common.cuh tile_gemm): C [Cout,
// B·Ho·Wo] = W [Cout, Cin·kh·kw] × X̂ [Cin·kh·kw, B·Ho·Wo], X̂ gathered from x on the fly (zero
// outside the padded input), the epilogue applied as each element is stored.
struct Conv2dProblem {
    using Col = ConvGather::Pos;
    using Tap = ConvGather::Win;
    ConvGather g;
    const float* __restrict__ w;
    OutSink sink;
    int q0;  // the depth split's first window element (common.cuh Split)
    __device__ __forceinline__ Col col(int j) const { return g.pos(j); }
    __device__ __forceinline__ Tap tap(int q) const { return g.win(q + q0); }
    __device__ __forceinline__ float a(int co, const Tap& t) const { return w[(long long)co * g.cin * g.khw + t.idx]; }
    __device__ __forceinline__ float b(const Tap& t, const Col& c) const { return g.at(t, c); }
    __device__ __forceinline__ void store(int co, const Col& c, float acc) const {
        int o = c.out + co * g.hwo;
        sink.put(acc, co, o);
    }
};

// Launch contract: block (16, 16, 1), grid (ceil(B·Ho·Wo / 64), ceil(Cout / 64), splits); static
// shared memory only. With one split (per_split ≥ Cin·kh·kw) every output element is written
// exactly once; with several, split z writes every element of partial[z·len, (z + 1)·len)
// (len = B·Cout·Ho·Wo) exactly once, out untouched (splitk_epilogue_f32 finishes). B·Cin·H·W and
// B·Cout·Ho·Wo fit int. `_f32` multiplies in f32 on the SIMT cores, `_bf16` rounds both operands
// to bf16 and multiplies on the tensor cores (sm_80 and newer), both accumulating in f32.
#define CONV2D_FWD_ARGS                                                                            \
    const float *__restrict__ x, const float *__restrict__ w, float *__restrict__ out, int batch, \
        int cin, int h, int wd, int cout, int kh, int kw, int stride, int pad, int ho, int wo,    \
        int flags, const float *__restrict__ scale, const float *__restrict__ shift,              \
        const float *__restrict__ residual, int act, float slope, float *__restrict__ partial,    \
        int per_split
template <bool TC>
static __device__ __forceinline__ void conv2d_fwd(CONV2D_FWD_ARGS) {
    const ConvGather g{x, cin, h, wd, cout, kw, stride, pad, wo, kh * kw, ho * wo};
    const Split sp = depth_split(cin * kh * kw, per_split, blockIdx.z);
    float* part = gridDim.z > 1 ? partial + (long long)blockIdx.z * batch * cout * ho * wo : nullptr;
    const Conv2dProblem pr{g, w, OutSink{out, part, EpiArgs{flags, scale, shift, residual, act, slope}}, sp.q0};
    tile_gemm<TC>(pr, cout, batch * ho * wo, sp.k, blockIdx.y * TG_M, blockIdx.x * TG_N);
}
#define CONV2D_FWD_PASS \
    x, w, out, batch, cin, h, wd, cout, kh, kw, stride, pad, ho, wo, flags, scale, shift, residual, act, slope, partial, per_split
extern "C" __global__ void __launch_bounds__(256, 2) conv2d_fwd_f32(CONV2D_FWD_ARGS) {
    conv2d_fwd<false>(CONV2D_FWD_PASS);
}
extern "C" __global__ void __launch_bounds__(256, 2) conv2d_fwd_bf16(CONV2D_FWD_ARGS) {
    conv2d_fwd<true>(CONV2D_FWD_PASS);
}

// ---- backward (training) ----
// A transposed convolution's backward is these too: its dx is conv2d_fwd_f32 of dy with the
// same weight (ConvTranspose2dGeom::adjoint_conv), its dW is conv2d_bwd_weight_f32 with x and
// dy swapped under that adjoint geometry.

// (The input gradient, conv2d_bwd_data_f32, is a transposed convolution of dy: it lives in
// conv_transpose2d.cu on that file's implicit GEMM.)

// dw[co, ci, ky, kx] += Σ_{b, oy, ox} dy[b, co, oy, ox]·x[b, ci, oy·s − p + ky, ox·s − p + kx]
// (ACCUMULATES, as the CPU's parameter gradients do). An implicit GEMM C [Cout, Cin·kh·kw] =
// dy [Cout, B·Ho·Wo] × X̂ [B·Ho·Wo, Cin·kh·kw] whose depth (every position of every image) is
// long and whose C is small (D's first layer: 64 × 48), so the depth is split over blockIdx.z:
// with one split the tile is added to dw directly; with several each split writes its tile to
// `partial` [splits, Cout·Cin·kh·kw] and conv2d_splitk_sum_f32 adds them to dw in split order
// (the same sum every run: no atomics).
struct Conv2dWeightGradProblem {
    // The depth runs over output positions (b, oy, ox) from q0 on, the columns over window
    // elements (ci, ky, kx): the gather's records as the forward's, in the other roles.
    using Tap = ConvGather::Pos;
    using Col = ConvGather::Win;
    ConvGather g;
    const float* __restrict__ dy;
    float* __restrict__ dw;       // with one split
    float* __restrict__ partial;  // with several: this split's [Cout, Cin·kh·kw]
    int q0;
    __device__ __forceinline__ Tap tap(int q) const { return g.pos(q + q0); }
    __device__ __forceinline__ Col col(int j) const { return g.win(j); }
    __device__ __forceinline__ float a(int co, const Tap& t) const { return dy[t.out + co * g.hwo]; }
    __device__ __forceinline__ float b(const Tap& t, const Col& c) const { return g.at(c, t); }
    __device__ __forceinline__ void store(int co, const Col& c, float acc) const {
        long long o = (long long)co * g.cin * g.khw + c.idx;
        if (partial) {
            partial[o] = acc;
        } else {
            dw[o] += acc;
        }
    }
};

// Launch contract: block (16, 16, 1), grid (ceil(Cin·kh·kw / 64), ceil(Cout / 64), splits); split z
// covers depths [z·per_split, min((z + 1)·per_split, B·Ho·Wo)), every split non-empty; `partial`
// holds splits·Cout·Cin·kh·kw floats when splits > 1 (unused otherwise). Every element of dw (one
// split) or of each split's partial is written exactly once. B·Cin·H·W and B·Cout·Ho·Wo fit int.
extern "C" __global__ void __launch_bounds__(256, 2) conv2d_bwd_weight_f32(
    const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ dw,
    float* __restrict__ partial, int batch, int cin, int h, int wd, int cout, int kh, int kw,
    int stride, int pad, int ho, int wo, int per_split) {
    const Split sp = depth_split(batch * ho * wo, per_split, blockIdx.z);
    const int n = cin * kh * kw;
    float* mine = gridDim.z > 1 ? partial + (long long)blockIdx.z * cout * n : nullptr;
    const ConvGather g{x, cin, h, wd, cout, kw, stride, pad, wo, kh * kw, ho * wo};
    const Conv2dWeightGradProblem pr{g, dy, dw, mine, sp.q0};
    tile_gemm_f32(pr, cout, n, sp.k, blockIdx.y * TG_M, blockIdx.x * TG_N);
}

// out[i] = epi(Σ_z partial[z·len + i]) for z = 0, 1, … in that order: the forward convolutions'
// depth splits (common.cuh Split) finished, the channel of element i being (i / plane) % channels
// (plane: Ho·Wo, or To for conv1d). Launch contract: 1-D, any block size (256 tuned), any grid
// (grid-stride loop over len); residual, when flagged, holds len elements.
extern "C" __global__ void splitk_epilogue_f32(
    const float* __restrict__ partial, int splits, long long len, float* __restrict__ out, int channels, int plane,
    int flags, const float* __restrict__ scale, const float* __restrict__ shift, const float* __restrict__ residual,
    int act, float slope) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < len;
         i += (long long)gridDim.x * blockDim.x) {
        float acc = 0.0f;
        for (int z = 0; z < splits; ++z) acc += partial[z * len + i];
        const int c = (int)((i / plane) % channels);
        out[i] = epilogue(acc, c, i, flags, scale, shift, residual, act, slope);
    }
}

// dw[i] += Σ_z partial[z·len + i] for z = 0, 1, … in that order (conv2d_bwd_weight_f32's splits).
// Launch contract: 1-D, any block size (256 tuned), any grid (grid-stride loop over len).
extern "C" __global__ void conv2d_splitk_sum_f32(
    const float* __restrict__ partial, int splits, long long len, float* __restrict__ dw) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < len;
         i += (long long)gridDim.x * blockDim.x) {
        float acc = 0.0f;
        for (int z = 0; z < splits; ++z) acc += partial[z * len + i];
        dw[i] += acc;
    }
}
