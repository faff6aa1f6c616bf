// optim: the optimizers' steps, the device twins of ops::optim (Adam, RMSprop). The host forms
// the per-step coefficients exactly as the CPU does (f64, rounded to f32 once); every operation
// here is rounded on its own (no FMA contraction), so a step is bit-identical to the CPU's.
#include "common.cuh"

// m ← m + (g − m)·c1, v ← v·b2 + c2·g·g, p ← p − step·m / (√v / bc2_sqrt + ε).
// Launch contract: 1-D, any block size (256 tuned), any grid; every element updated once.
extern "C" __global__ void adam_step_f32(
    float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m, float* __restrict__ v, long long n,
    float step, float c1, float b2, float c2, float bc2_sqrt, float eps) {
    GRID_STRIDE(i, n) {
        float gi = g[i];
        float mi = __fadd_rn(m[i], __fmul_rn(__fsub_rn(gi, m[i]), c1));
        float vi = __fadd_rn(__fmul_rn(v[i], b2), __fmul_rn(__fmul_rn(c2, gi), gi));
        m[i] = mi;
        v[i] = vi;
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2_sqrt), eps);
        p[i] = __fsub_rn(p[i], __fdiv_rn(__fmul_rn(step, mi), denom));
    }
}

// sq ← sq·α + c·g·g (c = 1 − α), p ← p − lr·g / (√sq + ε). Launch contract as adam_step_f32.
extern "C" __global__ void rmsprop_step_f32(
    float* __restrict__ p, const float* __restrict__ g, float* __restrict__ sq, long long n, float lr, float alpha,
    float c, float eps) {
    GRID_STRIDE(i, n) {
        float gi = g[i];
        float s = __fadd_rn(__fmul_rn(sq[i], alpha), __fmul_rn(__fmul_rn(c, gi), gi));
        sq[i] = s;
        p[i] = __fsub_rn(p[i], __fdiv_rn(__fmul_rn(lr, gi), __fadd_rn(__fsqrt_rn(s), eps)));
    }
}

// The moving average of G's parameters: e ← d·e + c·p (c = 1 − d, formed by the host in f32 as
// GanTrainer::update_ema does), each operation rounded alone: bit-identical to the CPU.
// Launch contract as adam_step_f32.
extern "C" __global__ void ema_update_f32(
    float* __restrict__ ema, const float* __restrict__ p, long long n, float d, float c) {
    GRID_STRIDE(i, n) ema[i] = __fadd_rn(__fmul_rn(d, ema[i]), __fmul_rn(c, p[i]));
}
