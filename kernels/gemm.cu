// gemm: a tiled f32 SGEMM on strided, batched operands with the fused epilogue. The device twin
// of src/ops/gemm.rs (`matmul` with `Mat`/`Out` strides) and of src/ops/linear.rs (y = x·Wᵀ
// through strides, the epilogue per output column). Tensor-core f16/bf16 paths come later.
#include "common.cuh"

#define GEMM_TM 64   // rows of C per block
#define GEMM_TN 64   // columns of C per block
#define GEMM_TK 16   // inner steps per shared-memory stage
#define GEMM_RM 4    // rows of C per thread
#define GEMM_RN 4    // columns of C per thread

// C[z] = epi(A[z] × B[z]) for z < gridDim.z, with element (i, j) of X at
// x + z·x_bs + i·x_rs + j·x_cs (strides in elements; any layout, transposes included).
// The epilogue's channel is the row i (channel_axis 0: conv-style [Cout, N]) or the column j
// (channel_axis 1: linear-style [B, O]); a residual is read at C's own offset.
//
// Launch contract: block (16, 16, 1); grid (ceil(n/64), ceil(m/64), batch); no dynamic shared
// memory (8 KiB static). Every element of every C[z] is written exactly once. m, n, k ≥ 1.
extern "C" __global__ void __launch_bounds__(256) gemm_fwd_f32(
    int m, int n, int k,
    const float* __restrict__ a, long long a_rs, long long a_cs, long long a_bs,
    const float* __restrict__ b, long long b_rs, long long b_cs, long long b_bs,
    float* __restrict__ c, long long c_rs, long long c_cs, long long c_bs,
    int flags, const float* __restrict__ scale, const float* __restrict__ shift,
    const float* __restrict__ residual, int channel_axis, int act, float slope) {
    __shared__ float as[GEMM_TK][GEMM_TM];
    __shared__ float bs[GEMM_TK][GEMM_TN];
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
    const int row0 = blockIdx.y * GEMM_TM, col0 = blockIdx.x * GEMM_TN;
    const long long z = blockIdx.z;
    a += z * a_bs;
    b += z * b_bs;
    float acc[GEMM_RM][GEMM_RN] = {};
    for (int p0 = 0; p0 < k; p0 += GEMM_TK) {
        // 256 threads load the 16×64 slices of A (transposed into as[p][i]) and B, 4 values each.
        for (int l = tid; l < GEMM_TK * GEMM_TM; l += 256) {
            int p = l / GEMM_TM, i = l % GEMM_TM;
            int gi = row0 + i, gp = p0 + p;
            as[p][i] = (gi < m && gp < k) ? a[gi * a_rs + gp * a_cs] : 0.0f;
        }
        for (int l = tid; l < GEMM_TK * GEMM_TN; l += 256) {
            int p = l / GEMM_TN, j = l % GEMM_TN;
            int gj = col0 + j, gp = p0 + p;
            bs[p][j] = (gj < n && gp < k) ? b[gp * b_rs + gj * b_cs] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int p = 0; p < GEMM_TK; ++p) {
            float av[GEMM_RM], bv[GEMM_RN];
#pragma unroll
            for (int r = 0; r < GEMM_RM; ++r) av[r] = as[p][ty + 16 * r];
#pragma unroll
            for (int s = 0; s < GEMM_RN; ++s) bv[s] = bs[p][tx + 16 * s];
#pragma unroll
            for (int r = 0; r < GEMM_RM; ++r)
#pragma unroll
                for (int s = 0; s < GEMM_RN; ++s) acc[r][s] = fmaf(av[r], bv[s], acc[r][s]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int r = 0; r < GEMM_RM; ++r) {
#pragma unroll
        for (int s = 0; s < GEMM_RN; ++s) {
            int i = row0 + ty + 16 * r, j = col0 + tx + 16 * s;
            if (i < m && j < n) {
                long long off = z * c_bs + i * c_rs + j * c_cs;
                int ch = channel_axis == 0 ? i : j;
                c[off] = epilogue(acc[r][s], ch, off, flags, scale, shift, residual, act, slope);
            }
        }
    }
}
