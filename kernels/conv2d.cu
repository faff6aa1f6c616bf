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
