// conv_transpose2d: transposed 2-D convolution (no bias) with the fused epilogue, in gather form
// (each output element sums the taps that reach it), the device twin of src/ops/conv_transpose2d.rs.
// Straightforward first: one thread per output element; the implicit GEMM on tensor cores
// (f16/bf16 in, f32 accumulation) comes next and is tested against this one and the CPU.
#include "common.cuh"

// out[b, co, oy, ox] = epi(Σ x[b, ci, iy, ix] · W[ci, co, ky, kx]) over oy = iy·s − p + ky,
// ox = ix·s − p + kx. x [B, Cin, H, W]; wp is the graph's PACKED weight [Cout·k·k, Cin]
// (ops::conv_transpose2d::pack_weight: wp[((co·k + ky)·k + kx)·Cin + ci] = W[ci, co, ky, kx]);
// out and residual [B, Cout, Ho, Wo].
//
// Launch contract: 1-D, any block size (256 tuned), any grid (grid-stride loop over
// B·Cout·Ho·Wo); no shared memory. Every output element is written exactly once.
extern "C" __global__ void conv_transpose2d_fwd_f32(
    const float* __restrict__ x, const float* __restrict__ wp, float* __restrict__ out,
    int batch, int cin, int h, int wd, int cout, int k, int stride, int pad, int ho, int wo,
    int flags, const float* __restrict__ scale, const float* __restrict__ shift,
    const float* __restrict__ residual, int act, float slope) {
    const long long total = (long long)batch * cout * ho * wo;
    const long long plane = (long long)h * wd;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const Nchw o = nchw_index(i, cout, ho, wo);
        const int ox = o.x, oy = o.y, co = o.c, b = o.b;
        const float* xb = x + (long long)b * cin * plane;
        float acc = 0.0f;
        for (int ky = 0; ky < k; ++ky) {
            int ty = oy + pad - ky;  // = iy·s when this tap reaches oy
            if (ty < 0 || ty % stride != 0) continue;
            int iy = ty / stride;
            if (iy >= h) continue;
            for (int kx = 0; kx < k; ++kx) {
                int tx = ox + pad - kx;
                if (tx < 0 || tx % stride != 0) continue;
                int ix = tx / stride;
                if (ix >= wd) continue;
                const float* wr = wp + (((long long)co * k + ky) * k + kx) * cin;
                const float* xr = xb + (long long)iy * wd + ix;
                for (int ci = 0; ci < cin; ++ci) acc = fmaf(xr[ci * plane], wr[ci], acc);
            }
        }
        out[i] = epilogue(acc, co, i, flags, scale, shift, residual, act, slope);
    }
}
