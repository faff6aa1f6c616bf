// conv2d: direct 2-D convolution (cross-correlation, no bias) with the fused epilogue; the device
// twin of src/ops/conv2d.rs `conv2d_ref`. Straightforward first: one thread per output element.
// (An implicit GEMM on tensor cores replaces it once this one is the oracle on the GPU.)
#include "common.cuh"

// out[b, co, oy, ox] = epi(Σ_{ci, ky, kx} x[b, ci, oy·s − p + ky, ox·s − p + kx] · w[co, ci, ky, kx])
// x [B, Cin, H, W], w [Cout, Cin, kh, kw] (PyTorch layout, BN folded into scale/shift),
// out and residual [B, Cout, Ho, Wo].
//
// Launch contract: 1-D, any block size (256 is the tuned one), any grid (grid-stride loop over
// B·Cout·Ho·Wo); no shared memory. Every output element is written exactly once.
extern "C" __global__ void conv2d_fwd_f32(
    const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ out,
    int batch, int cin, int h, int wd, int cout, int kh, int kw, int stride, int pad, int ho, int wo,
    int flags, const float* __restrict__ scale, const float* __restrict__ shift,
    const float* __restrict__ residual, int act, float slope) {
    const long long total = (long long)batch * cout * ho * wo;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const Nchw o = nchw_index(i, cout, ho, wo);
        const int ox = o.x, oy = o.y, co = o.c, b = o.b;
        float acc = 0.0f;
        for (int ci = 0; ci < cin; ++ci) {
            const float* xp = x + ((long long)b * cin + ci) * h * wd;
            const float* wp = w + ((long long)co * cin + ci) * kh * kw;
            for (int ky = 0; ky < kh; ++ky) {
                int iy = oy * stride - pad + ky;
                if (iy < 0 || iy >= h) continue;
                for (int kx = 0; kx < kw; ++kx) {
                    int ix = ox * stride - pad + kx;
                    if (ix < 0 || ix >= wd) continue;
                    acc = fmaf(xp[iy * wd + ix], wp[ky * kw + kx], acc);
                }
            }
        }
        out[i] = epilogue(acc, co, i, flags, scale, shift, residual, act, slope);
    }
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
