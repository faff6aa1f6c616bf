// rng: Philox4x32-10 and the Box–Muller noise of docs/WEIGHTS.md, the device twin of
// src/rng/philox.rs: element k of z for image i of seed s comes from block k/4 of
// philox4x32_10([k/4, 0, i_lo, i_hi], [s_lo, s_hi]); words (w0, w1) and (w2, w3) give two
// normals each, r = √(−2 ln u(w_even)), θ = 2π·u(w_odd), u(w) = ((w >> 8) + 1)·2⁻²⁴, in f64,
// rounded to f32 once. The integer part is exact; f64 log/sin/cos are within 1–2 ulp of f64 of
// the CPU's, so the f32 results agree bit for bit except, rarely, by 1 ulp of f32.
#include "common.cuh"

static __device__ __forceinline__ void philox4x32_10(unsigned c[4], unsigned k0, unsigned k1) {
    const unsigned M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
#pragma unroll
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += W0;
            k1 += W1;
        }
        unsigned hi0 = __umulhi(M0, c[0]), lo0 = M0 * c[0];
        unsigned hi1 = __umulhi(M1, c[2]), lo1 = M1 * c[2];
        unsigned n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = lo1;
        c[2] = n2;
        c[3] = lo0;
    }
}

static __device__ __forceinline__ double unit01(unsigned w) {
    return ((double)(w >> 8) + 1.0) * (1.0 / 16777216.0);
}

// z [batch, nz]: row b holds the noise of image image0 + b for `seed`.
//
// Launch contract: 1-D, any block size (128 tuned), any grid (grid-stride loop over the
// batch·ceil(nz/4) Philox blocks); no shared memory. Every element of z is written exactly once.
extern "C" __global__ void philox_normal_fwd_f32(
    unsigned long long seed, unsigned long long image0, int nz, int batch, float* __restrict__ z) {
    const int blocks = (nz + 3) / 4;
    const long long total = (long long)batch * blocks;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        long long b = i / blocks;
        int blk = (int)(i % blocks);
        unsigned long long image = image0 + (unsigned long long)b;
        unsigned c[4] = {(unsigned)blk, 0u, (unsigned)image, (unsigned)(image >> 32)};
        philox4x32_10(c, (unsigned)seed, (unsigned)(seed >> 32));
        float* row = z + b * nz;
#pragma unroll
        for (int p = 0; p < 2; ++p) {
            double r = sqrt(-2.0 * log(unit01(c[2 * p])));
            double theta = 6.283185307179586 * unit01(c[2 * p + 1]);
            int k0 = blk * 4 + 2 * p;
            if (k0 < nz) row[k0] = (float)(r * cos(theta));
            if (k0 + 1 < nz) row[k0 + 1] = (float)(r * sin(theta));
        }
    }
}
