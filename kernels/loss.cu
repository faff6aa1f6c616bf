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

// The auxiliary classifier's loss (ops::loss::softmax_cross_entropy_blocks): row r of logits
// [rows, K] holds one block of sizes[a] logits per attribute a (at most 4: s0..s3, unused 0),
// labels [labeled, A] as floats (exact small integers). For r < labeled, per block:
// loss += logsumexp(x) − x_y (f64), dlogits = scale·(softmax(x) − onehot(y))/labeled; rows past
// `labeled` get a zero gradient (the G step's interpolated rows). loss[0] = the sum of the
// blocks' means over the labeled rows (unscaled).
//
// Launch contract: ONE block of LOSS_BLOCK = 256 threads (a few hundred rows); 2 KiB static
// shared memory. Every dlogits element of the `rows` rows and loss[0] written once.
extern "C" __global__ void __launch_bounds__(LOSS_BLOCK) softmax_ce_blocks_f32(
    const float* __restrict__ logits, const float* __restrict__ labels, int rows, int labeled, int s0, int s1,
    int s2, int s3, float scale, float* __restrict__ dlogits, float* __restrict__ loss) {
    __shared__ double shared[LOSS_BLOCK];
    const int sizes[4] = {s0, s1, s2, s3};
    int attrs = 0, k = 0;
    for (int a = 0; a < 4; ++a) {
        if (sizes[a] > 0) {
            attrs = a + 1;
            k += sizes[a];
        }
    }
    double total = 0.0;
    for (int pair = threadIdx.x; pair < rows * attrs; pair += LOSS_BLOCK) {
        const int r = pair / attrs, a = pair % attrs;
        int first = r * k;
        for (int q = 0; q < a; ++q) first += sizes[q];
        const float* x = logits + first;
        float* d = dlogits + first;
        if (r >= labeled) {
            for (int c = 0; c < sizes[a]; ++c) d[c] = 0.0f;
            continue;
        }
        const int y = (int)labels[r * attrs + a];
        float mx = x[0];
        for (int c = 1; c < sizes[a]; ++c) mx = fmaxf(mx, x[c]);
        double sum = 0.0;
        for (int c = 0; c < sizes[a]; ++c) sum += exp((double)x[c] - (double)mx);
        total += (double)mx + log(sum) - (double)x[y];
        for (int c = 0; c < sizes[a]; ++c) {
            double p = exp((double)x[c] - (double)mx) / sum;
            d[c] = (float)((double)scale * (p - (c == y ? 1.0 : 0.0)) / (double)labeled);
        }
    }
    shared[threadIdx.x] = total;
    __syncthreads();
    for (int s = LOSS_BLOCK / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) loss[0] = (float)(shared[0] / (double)(labeled > 0 ? labeled : 1));
}
