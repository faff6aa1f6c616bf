// conv2d: 2-D convolution (cross-correlation, no bias) with the fused epilogue, the device twin of
// src/ops/conv2d.rs: forward as an f32 implicit GEMM on the shared tile core; the backward
// kernels below are still one thread per output element.
#include "common.cuh"

// out[b, co, oy, ox] = epi(Σ_{ci, ky, kx} x[b, ci, oy·s − p + ky, ox·s − p + kx] · w[co, ci, ky, kx])
// x [B, Cin, H, W], w [Cout, Cin, kh, kw] (PyTorch layout, BN folded into scale/shift),
// out and residual [B, Cout, Ho, Wo]. An implicit GEMM (common.cuh tile_gemm_f32): C [Cout,
// B·Ho·Wo] = W [Cout, Cin·kh·kw] × X̂ [Cin·kh·kw, B·Ho·Wo], X̂ gathered from x on the fly (zero
// outside the padded input), the epilogue applied as each element is stored.
struct Conv2dProblem {
    // A column (output position): its image's input offset, oy·s − p, ox·s − p, and the offset
    // of its channel-0 output. A depth q = (ci, ky, kx): q, ci·H·W, ky, kx.
    struct Col {
        int in, y, x, out;
    };
    struct Tap {
        int q, off, ky, kx;
    };
    const float* __restrict__ x;
    const float* __restrict__ w;
    float* __restrict__ out;
    int cin, h, wd, cout, kw, stride, pad, wo, khw, hwo;
    EpiArgs epi;
    __device__ __forceinline__ Col col(int j) const {
        int bb = j / hwo, pp = j - bb * hwo;
        int oy = pp / wo, ox = pp - oy * wo;
        return Col{bb * cin * h * wd, oy * stride - pad, ox * stride - pad, bb * cout * hwo + pp};
    }
    __device__ __forceinline__ Tap tap(int q) const {
        int ci = q / khw, r = q - ci * khw;
        int ky = r / kw;
        return Tap{q, ci * h * wd, ky, r - ky * kw};
    }
    __device__ __forceinline__ float a(int co, const Tap& t) const { return w[(long long)co * cin * khw + t.q]; }
    __device__ __forceinline__ float b(const Tap& t, const Col& c) const {
        int iy = c.y + t.ky, ix = c.x + t.kx;
        if (iy < 0 || iy >= h || ix < 0 || ix >= wd) return 0.0f;
        return x[c.in + t.off + iy * wd + ix];
    }
    __device__ __forceinline__ void store(int co, const Col& c, float acc) const {
        int o = c.out + co * hwo;
        out[o] = epi.apply(acc, co, o);
    }
};

// Launch contract: block (16, 16, 1), grid (ceil(B·Ho·Wo / 64), ceil(Cout / 64), 1); static
// shared memory only. Every output element is written exactly once. B·Cin·H·W and B·Cout·Ho·Wo
// fit int.
extern "C" __global__ void __launch_bounds__(256, 2) conv2d_fwd_f32(
    const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ out,
    int batch, int cin, int h, int wd, int cout, int kh, int kw, int stride, int pad, int ho, int wo,
    int flags, const float* __restrict__ scale, const float* __restrict__ shift,
    const float* __restrict__ residual, int act, float slope) {
    const Conv2dProblem pr{x, w, out, cin, h, wd, cout, kw, stride, pad, wo, kh * kw, ho * wo,
                           EpiArgs{flags, scale, shift, residual, act, slope}};
    tile_gemm_f32(pr, cout, batch * ho * wo, cin * kh * kw, blockIdx.y * TG_M, blockIdx.x * TG_N);
}

// ---- backward (training): the oracles for faster kernels, one thread per output element ----
// A transposed convolution's backward is these too: its dx is conv2d_fwd_f32 of dy with the
// same weight (ConvTranspose2dGeom::adjoint_conv), its dW is conv2d_bwd_weight_f32 with x and
// dy swapped under that adjoint geometry.

// dx[b, ci, iy, ix] = Σ dy[b, co, oy, ox]·w[co, ci, ky, kx] over the taps with
// iy = oy·s − p + ky, ix = ox·s − p + kx (OVERWRITTEN), as ops::conv2d::conv2d_backward_ref.
// Launch contract: 1-D, any block size (256 tuned), any grid over B·Cin·H·W; no shared memory.
extern "C" __global__ void conv2d_bwd_data_f32(
    const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx,
    int batch, int cin, int h, int wd, int cout, int kh, int kw, int stride, int pad, int ho, int wo) {
    const long long total = (long long)batch * cin * h * wd;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const Nchw p = nchw_index(i, cin, h, wd);
        float acc = 0.0f;
        for (int ky = 0; ky < kh; ++ky) {
            int ty = p.y + pad - ky;
            if (ty < 0 || ty % stride != 0 || ty / stride >= ho) continue;
            for (int kx = 0; kx < kw; ++kx) {
                int tx = p.x + pad - kx;
                if (tx < 0 || tx % stride != 0 || tx / stride >= wo) continue;
                const float* g = dy + (long long)p.b * cout * ho * wo + (long long)(ty / stride) * wo + tx / stride;
                const float* wp = w + ((long long)p.c * kh + ky) * kw + kx;
                for (int co = 0; co < cout; ++co) {
                    acc = fmaf(g[(long long)co * ho * wo], wp[(long long)co * cin * kh * kw], acc);
                }
            }
        }
        dx[i] = acc;
    }
}

// dw[co, ci, ky, kx] += Σ_{b, oy, ox} dy[b, co, oy, ox]·x[b, ci, oy·s − p + ky, ox·s − p + kx]
// (ACCUMULATES, as the CPU's parameter gradients do).
// Launch contract: 1-D, any block size (256 tuned), any grid over Cout·Cin·kh·kw; no shared memory.
extern "C" __global__ void conv2d_bwd_weight_f32(
    const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ dw,
    int batch, int cin, int h, int wd, int cout, int kh, int kw, int stride, int pad, int ho, int wo) {
    const long long total = (long long)cout * cin * kh * kw;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const Nchw t = nchw_index(i, cin, kh, kw);  // (co, ci, ky, kx) as (b, c, y, x)
        float acc = 0.0f;
        for (int b = 0; b < batch; ++b) {
            const float* xp = x + ((long long)b * cin + t.c) * h * wd;
            const float* g = dy + ((long long)b * cout + t.b) * ho * wo;
            for (int oy = 0; oy < ho; ++oy) {
                int iy = oy * stride - pad + t.y;
                if (iy < 0 || iy >= h) continue;
                for (int ox = 0; ox < wo; ++ox) {
                    int ix = ox * stride - pad + t.x;
                    if (ix < 0 || ix >= wd) continue;
                    acc = fmaf(g[oy * wo + ox], xp[iy * wd + ix], acc);
                }
            }
        }
        dw[i] += acc;
    }
}
