// loss: GAN-INT-CLS's binary cross-entropy on logits, the device twin of
// ops::loss::bce_with_logits. The loss value is for logging; the gradient is what training needs.
#include "common.cuh"

#define LOSS_BLOCK 256

// loss[0] = (1/N) Σ w·(max(x, 0) − x·y + ln(1 + e^−|x|)) in f64, and dlogits[i] =
// w·(σ(x) − y)/N (overwritten); weights may be null (all 1).
//
// Launch contract: ONE block of LOSS_BLOCK = 256 threads (the logits of one D pass: a few
// hundred values); 2 KiB static shared memory. Every dlogits element and loss[0] written once.
extern "C" __global__ void __launch_bounds__(LOSS_BLOCK) bce_with_logits_f32(
    const float* __restrict__ logits, const float* __restrict__ targets, const float* __restrict__ weights,
    long long n, float* __restrict__ dlogits, float* __restrict__ loss) {
    __shared__ double shared[LOSS_BLOCK];
    double total = 0.0;
    for (long long i = threadIdx.x; i < n; i += LOSS_BLOCK) {
        double x = logits[i], y = targets[i];
        double w = weights ? (double)weights[i] : 1.0;
        total += w * (fmax(x, 0.0) - x * y + log1p(exp(-fabs(x))));
        dlogits[i] = (float)(w * ((double)sigmoid_f32(logits[i]) - y) / (double)n);
    }
    shared[threadIdx.x] = total;
    __syncthreads();
    for (int s = LOSS_BLOCK / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) loss[0] = (float)(shared[0] / (double)(n > 0 ? n : 1));
}
