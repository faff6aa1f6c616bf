// conv_transpose2d: transposed 2-D convolution (no bias) with the fused epilogue, in gather form
// (each output element sums the taps that reach it), the device twin of src/ops/conv_transpose2d.rs,
// as implicit GEMMs on the shared tile core (common.cuh; f32, or bf16 operands on the tensor
// cores); the same GEMM gives a convolution's input gradient.
#include "common.cuh"

// out[b, co, oy, ox] = epi(Σ x[b, ci, iy, ix] · W[ci, co, ky, kx]) over oy = iy·s − p + ky,
// ox = ix·s − p + kx. x [B, Cin, H, W]; wp is the graph's PACKED weight [Cout·k·k, Cin]
// (ops::conv_transpose2d::pack_weight: wp[((co·k + ky)·k + kx)·Cin + ci] = W[ci, co, ky, kx]);
// out and residual [B, Cout, Ho, Wo].
//
// Gather form as implicit GEMMs, one per output parity class (oy mod s, ox mod s): in a class
// only the taps ky ≡ oy + p (mod s) reach an output, so the class is C [Cout, B·Hq·Wq] =
// Wc [Cout, nky·nkx·Cin] × X̂c, with no multiply spent on taps that cannot land (a stride-2,
// k = 4 layer does 4 of the 16 taps per output instead of all 16 with zeros).
struct DeconvProblem {
    // A column (output position of the class): its image's input offset, cy = (oy + p − ky0)/s
    // and cx (exact: the class's taps make oy + p − ky a multiple of s; then iy = cy − jy), and
    // the offset of its channel-0 output. A depth q = (jy, jx, ci), ci fastest: the weight's
    // offset within an output channel's row, ci·H·W, jy, jx.
    struct Col {
        int in, cy, cx, out;
    };
    struct Tap {
        int woff, off, jy, jx;
    };
    const float* __restrict__ x;
    const float* __restrict__ w;
    OutSink sink;
    int cin, h, wd, cout, stride, pad, ho, wo;
    // The weight of (output channel o, tap ky, kx, input channel ci) is at
    // w[o·w_o + ky·w_ky + kx·w_kx + ci·w_ci]: the packed [Cout·k·k, Cin] of a transposed
    // convolution, or a convolution's [Cout, Cin, kh, kw] read as its own adjoint.
    int w_o, w_ky, w_kx, w_ci;
    int py, px, ky0, kx0, nkx, hq, wq;
    int q0;  // the depth split's first (jy, jx, ci) (common.cuh Split)
    __device__ __forceinline__ Col col(int j) const {
        int plane = hq * wq;
        int bb = j / plane, r = j - bb * plane;
        int oy = py + (r / wq) * stride, ox = px + (r % wq) * stride;
        return Col{bb * cin * h * wd, (oy + pad - ky0) / stride, (ox + pad - kx0) / stride,
                   (bb * cout * ho + oy) * wo + ox};
    }
    __device__ __forceinline__ Tap tap(int q) const {
        q += q0;
        int ci = q % cin, t = q / cin;
        int jx = t % nkx, jy = t / nkx;
        int ky = ky0 + jy * stride, kx = kx0 + jx * stride;
        return Tap{ky * w_ky + kx * w_kx + ci * w_ci, ci * h * wd, jy, jx};
    }
    __device__ __forceinline__ float a(int co, const Tap& t) const { return w[(long long)co * w_o + t.woff]; }
    __device__ __forceinline__ float b(const Tap& t, const Col& c) const {
        int iy = c.cy - t.jy, ix = c.cx - t.jx;
        if (iy < 0 || iy >= h || ix < 0 || ix >= wd) return 0.0f;
        return x[c.in + t.off + iy * wd + ix];
    }
    __device__ __forceinline__ void store(int co, const Col& c, float acc) const {
        int o = c.out + co * ho * wo;
        sink.put(acc, co, o);
    }
};

// The parity class blockIdx.z % s² (its depth split blockIdx.z / s²) of an output [Ho, Wo] under stride s and padding p with a kh × kw
// kernel, and its GEMM: C [Cout, B·Hq·Wq] × depth Cin·nky·nkx, or the split's part of that depth
// (per_split at most; `partial` [splits, len] used when gridDim.z > s², len = B·Cout·Ho·Wo).
template <bool TC = false>
static __device__ __forceinline__ void deconv_gemm(DeconvProblem pr, int batch, int kh, int kw, float* partial, int per_split) {
    const int s = pr.stride, cls = blockIdx.z % (s * s), split = blockIdx.z / (s * s);
    pr.py = cls / s;
    pr.px = cls % s;
    pr.ky0 = (pr.py + pr.pad) % s;
    pr.kx0 = (pr.px + pr.pad) % s;
    const int nky = pr.ky0 < kh ? (kh - pr.ky0 + s - 1) / s : 0;
    const int nkx = pr.kx0 < kw ? (kw - pr.kx0 + s - 1) / s : 0;
    pr.nkx = nkx > 0 ? nkx : 1;
    pr.hq = pr.py < pr.ho ? (pr.ho - pr.py + s - 1) / s : 0;
    pr.wq = pr.px < pr.wo ? (pr.wo - pr.px + s - 1) / s : 0;
    const Split sp = depth_split(pr.cin * nky * nkx, per_split, split);
    pr.q0 = sp.q0;
    if (gridDim.z > s * s) pr.sink.part = partial + (long long)split * batch * pr.cout * pr.ho * pr.wo;
    tile_gemm<TC>(pr, pr.cout, batch * pr.hq * pr.wq, sp.k, blockIdx.y * TG_M, blockIdx.x * TG_N);
}

// Launch contract: block (16, 16, 1), grid (ceil(B·ceil(Ho/s)·ceil(Wo/s) / 64), ceil(Cout / 64),
// s·s·splits): blockIdx.z % s² is the parity class (py·s + px), blockIdx.z / s² the depth split
// (common.cuh Split; per_split ≥ the largest class's depth for one); a class with fewer
// positions leaves the grid's extra columns idle, and a class no tap reaches (k < s) stores the
// epilogue of 0 (or 0 sums). With one split every output element is written exactly once; with
// several, split z writes every element of partial[z·len, (z + 1)·len) once (len = B·Cout·Ho·Wo;
// splitk_epilogue_f32 finishes). Static shared memory only. B·Cin·H·W and B·Cout·Ho·Wo fit int.
#define DECONV_FWD_ARGS                                                                            \
    const float *__restrict__ x, const float *__restrict__ wp, float *__restrict__ out, int batch, \
        int cin, int h, int wd, int cout, int k, int stride, int pad, int ho, int wo, int flags,   \
        const float *__restrict__ scale, const float *__restrict__ shift,                         \
        const float *__restrict__ residual, int act, float slope, float *__restrict__ partial,    \
        int per_split
template <bool TC>
static __device__ __forceinline__ void deconv_fwd(DECONV_FWD_ARGS) {
    const EpiArgs epi{flags, scale, shift, residual, act, slope};
    DeconvProblem pr{x, wp, OutSink{out, nullptr, epi}, cin, h, wd, cout, stride, pad, ho, wo, k * k * cin, k * cin, cin, 1};
    deconv_gemm<TC>(pr, batch, k, k, partial, per_split);
}
#define DECONV_FWD_PASS \
    x, wp, out, batch, cin, h, wd, cout, k, stride, pad, ho, wo, flags, scale, shift, residual, act, slope, partial, per_split
// `_f32` on the SIMT cores; `_bf16` with bf16 operands on the tensor cores (f32 accumulation).
extern "C" __global__ void __launch_bounds__(256, 2) conv_transpose2d_fwd_f32(DECONV_FWD_ARGS) {
    deconv_fwd<false>(DECONV_FWD_PASS);
}
extern "C" __global__ void __launch_bounds__(256, 2) conv_transpose2d_fwd_bf16(DECONV_FWD_ARGS) {
    deconv_fwd<true>(DECONV_FWD_PASS);
}

// A convolution's input gradient is the transposed convolution of dy with the same weight:
// dx[b, ci, iy, ix] = Σ dy[b, co, oy, ox]·w[co, ci, ky, kx] over iy = oy·s − p + ky (OVERWRITTEN),
// as ops::conv2d::conv2d_backward_ref. dy [B, Cout, Ho, Wo], w [Cout, Cin, kh, kw] (read in
// place: output channel ci at stride kh·kw, input channel co at Cin·kh·kw), dx [B, Cin, H, W];
// dx's size is the convolution's input, not what the transposed geometry would make of dy.
// Launch contract: block (16, 16, 1), grid (ceil(B·ceil(H/s)·ceil(W/s) / 64), ceil(Cin / 64), s·s);
// every element of dx written exactly once; B·Cout·Ho·Wo and B·Cin·H·W fit int.
extern "C" __global__ void __launch_bounds__(256, 2) conv2d_bwd_data_f32(
    const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx,
    int batch, int cin, int h, int wd, int cout, int kh, int kw, int stride, int pad, int ho, int wo) {
    const EpiArgs none{0, nullptr, nullptr, nullptr, ACT_NONE, 0.0f};
    DeconvProblem pr{dy, w, OutSink{dx, nullptr, none}, cout, ho, wo, cin, stride, pad, h, wd, kh * kw, kw, 1, cin * kh * kw};
    deconv_gemm(pr, batch, kh, kw, nullptr, cout * kh * kw);
}

// The same layer when its input is one pixel with no padding (G's first layer, z‖φ → 4×4):
// every output (oy, ox) = (ky, kx) gets exactly one tap, so it is one dense GEMM over the packed
// rows: C [Cout·k·k, B] = wp [Cout·k·k, Cin] × xᵀ [Cin, B], the channel of row r being r / k².
struct DenseDeconvProblem {
    struct Col {
        int b;
    };
    struct Tap {
        int ci;
    };
    const float* __restrict__ x;
    const float* __restrict__ wp;
    float* __restrict__ out;
    int cin, rows, kk;
    EpiArgs epi;
    __device__ __forceinline__ Col col(int bb) const { return Col{bb}; }
    __device__ __forceinline__ Tap tap(int ci) const { return Tap{ci}; }
    __device__ __forceinline__ float a(int r, const Tap& t) const { return wp[(long long)r * cin + t.ci]; }
    __device__ __forceinline__ float b(const Tap& t, const Col& c) const { return x[(long long)c.b * cin + t.ci]; }
    __device__ __forceinline__ void store(int r, const Col& c, float acc) const {
        long long o = (long long)c.b * rows + r;
        out[o] = epi.apply(acc, r / kk, o);
    }
};

// Launch contract: H = W = 1 and pad = 0 (so Ho = Wo = k); block (16, 16, 1), grid
// (ceil(B / 64), ceil(Cout·k·k / 64), 1). Every output element is written exactly once.
#define DECONV_1PX_ARGS                                                                              \
    const float *__restrict__ x, const float *__restrict__ wp, float *__restrict__ out, int batch,   \
        int cin, int cout, int k, int flags, const float *__restrict__ scale,                       \
        const float *__restrict__ shift, const float *__restrict__ residual, int act, float slope
template <bool TC>
static __device__ __forceinline__ void deconv_1px_fwd(DECONV_1PX_ARGS) {
    const DenseDeconvProblem pr{x, wp, out, cin, cout * k * k, k * k, EpiArgs{flags, scale, shift, residual, act, slope}};
    tile_gemm<TC>(pr, cout * k * k, batch, cin, blockIdx.y * TG_M, blockIdx.x * TG_N);
}
#define DECONV_1PX_PASS x, wp, out, batch, cin, cout, k, flags, scale, shift, residual, act, slope
extern "C" __global__ void __launch_bounds__(256, 2) conv_transpose2d_1px_fwd_f32(DECONV_1PX_ARGS) {
    deconv_1px_fwd<false>(DECONV_1PX_PASS);
}
extern "C" __global__ void __launch_bounds__(256, 2) conv_transpose2d_1px_fwd_bf16(DECONV_1PX_ARGS) {
    deconv_1px_fwd<true>(DECONV_1PX_PASS);
}
