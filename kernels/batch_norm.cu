// batch_norm: the inference batch norm as a standalone epilogue pass, y = act(x·scale[c] +
// shift[c] + residual) over x [B, C, S] (scale = γ/√(σ² + ε), shift = β − μ·scale, as
// BatchNormParams::scale_shift). Convolutions fuse this epilogue; this kernel serves where no
// producer can (and is the oracle for the fused ones).
#include "common.cuh"

// Launch contract: 1-D, any block size (256 tuned), any grid (grid-stride loop over n = B·C·S);
// no shared memory; out may alias x (each element is read, then written, by one thread).
extern "C" __global__ void batch_norm_fwd_f32(
    const float* x, float* out, long long n, int channels, long long spatial,
    int flags, const float* __restrict__ scale, const float* __restrict__ shift,
    const float* __restrict__ residual, int act, float slope) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        int c = (int)((i / spatial) % channels);
        out[i] = epilogue(x[i], c, i, flags, scale, shift, residual, act, slope);
    }
}
