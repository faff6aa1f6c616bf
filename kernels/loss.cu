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
    total = block_sum_f64(total, shared, LOSS_BLOCK);
    if (threadIdx.x == 0) loss[0] = (float)(total / (double)(n > 0 ? n : 1));
}

// The auxiliary classifier's loss (ops::loss::softmax_cross_entropy_blocks, and one half of
// softmax_cross_entropy_twin): row r of logits is `stride` wide and holds, from column `offset`
// on, one block of sizes[a] logits per attribute a (at most 4: s0..s3, unused 0), K in all;
// labels [labeled, A] as floats (exact small integers). For r < labeled, per block:
// loss += logsumexp(x) − x_y (f64), dlogits = scale·(softmax(x) − onehot(y))/labeled; rows past
// `labeled` get a zero gradient (the G step's interpolated rows). loss[0] = the sum of the
// blocks' means over the labeled rows (unscaled). Columns outside [offset, offset + K) are not
// touched (the twin's other half). With `uniform` set the target is uniform over each block
// instead of onehot(y) (--classifier-fake: G's images as no class), loss += logsumexp(x) − mean(x),
// and labels is not read (it may be null).
//
// Launch contract: ONE block of LOSS_BLOCK = 256 threads (a few hundred rows); 2 KiB static
// shared memory; offset + K ≤ stride. Every dlogits element of columns [offset, offset + K) of
// the `rows` rows and loss[0] written once.
extern "C" __global__ void __launch_bounds__(LOSS_BLOCK) softmax_ce_blocks_f32(
    const float* __restrict__ logits, const float* __restrict__ labels, int rows, int labeled, int stride,
    int offset, int s0, int s1, int s2, int s3, int uniform, float scale, float* __restrict__ dlogits,
    float* __restrict__ loss) {
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
        int first = r * stride + offset;
        for (int q = 0; q < a; ++q) first += sizes[q];
        const float* x = logits + first;
        float* d = dlogits + first;
        if (r >= labeled) {
            for (int c = 0; c < sizes[a]; ++c) d[c] = 0.0f;
            continue;
        }
        const int y = uniform ? -1 : (int)labels[r * attrs + a];
        const double spread = 1.0 / (double)sizes[a];
        float mx = x[0];
        for (int c = 1; c < sizes[a]; ++c) mx = fmaxf(mx, x[c]);
        double sum = 0.0, target_dot = 0.0;
        for (int c = 0; c < sizes[a]; ++c) {
            sum += exp((double)x[c] - (double)mx);
            target_dot += uniform ? spread * (double)x[c] : (c == y ? (double)x[c] : 0.0);
        }
        total += (double)mx + log(sum) - target_dot;
        for (int c = 0; c < sizes[a]; ++c) {
            const double p = exp((double)x[c] - (double)mx) / sum;
            const double t = uniform ? spread : (c == y ? 1.0 : 0.0);
            d[c] = (float)((double)scale * (p - t) / (double)labeled);
        }
    }
    total = block_sum_f64(total, shared, LOSS_BLOCK);
    if (threadIdx.x == 0) loss[0] = (float)(total / (double)(labeled > 0 ? labeled : 1));
}

// The mode-seeking term (ops::loss::mode_seeking_loss) over P pairs of images made from one text
// with two noises: x and dx [2P, n] (pair p: rows p and P + p), z [2P, nz]. Per pair:
// dist = Σ_cells |Σ_cell (x1 − x2)| / n over k×k cells of each h×w channel plane (f64),
// dz = max(mean|z1 − z2|, ε), r = dist/dz + ε, term = max(0, 1/r − floor) (floor = 1/target or 0);
// dx1 = −sign(cell sum)·scale/(r²·dz·n·P) on every element of the cell (0 past the target),
// dx2 = −dx1. `cells` holds P × (n/k²) cell sums; term_out[p] the pair's term (the host averages).
//
// Launch contract: one block of LOSS_BLOCK = 256 threads per pair (grid = P); 2 KiB static
// shared memory. Every dx element and term_out[p] written once.
#define MS_EPS 1e-5
extern "C" __global__ void __launch_bounds__(LOSS_BLOCK) mode_seeking_f32(
    const float* __restrict__ x, const float* __restrict__ z, int pairs, int n, int nz, int h, int w, int k,
    float floor_, float scale, float* __restrict__ cells, float* __restrict__ dx, float* __restrict__ term_out) {
    __shared__ double shared[LOSS_BLOCK];
    const int p = blockIdx.x;
    const float* x1 = x + (long long)p * n;
    const float* x2 = x + (long long)(pairs + p) * n;
    const int cw = w / k, ch = h / k, per_plane = cw * ch, ncells = n / (k * k);
    float* cs = cells + (long long)p * ncells;
    double dist = 0.0;
    for (int c = threadIdx.x; c < ncells; c += LOSS_BLOCK) {
        const int plane = c / per_plane, ci = (c % per_plane) / cw, cj = c % cw;
        double s = 0.0;
        for (int di = 0; di < k; ++di) {
            for (int dj = 0; dj < k; ++dj) {
                const int e = plane * h * w + (ci * k + di) * w + cj * k + dj;
                s += (double)(x1[e] - x2[e]);
            }
        }
        cs[c] = (float)s;
        dist += fabs(s);
    }
    dist = block_sum_f64(dist, shared, LOSS_BLOCK) / (double)n;
    const float* z1 = z + (long long)p * nz;
    const float* z2 = z + (long long)(pairs + p) * nz;
    double dzs = 0.0;
    for (int i = threadIdx.x; i < nz; i += LOSS_BLOCK) dzs += (double)fabsf(z1[i] - z2[i]);
    const double dz = fmax(block_sum_f64(dzs, shared, LOSS_BLOCK) / (double)nz, MS_EPS);
    const double r = dist / dz + MS_EPS;
    const bool reached = 1.0 / r <= (double)floor_;
    if (threadIdx.x == 0) term_out[p] = (float)fmax(1.0 / r - (double)floor_, 0.0);
    const float g = reached ? 0.0f : (float)(-(double)scale / (r * r * dz * (double)n * (double)pairs));
    float* d1 = dx + (long long)p * n;
    float* d2 = dx + (long long)(pairs + p) * n;
    __syncthreads();  // the cell sums of this pair are all written
    for (int e = threadIdx.x; e < n; e += LOSS_BLOCK) {
        const int plane = e / (h * w), yy = (e % (h * w)) / w, xx = e % w;
        const float d = cs[plane * per_plane + (yy / k) * cw + xx / k];
        const float s = d > 0.0f ? g : (d < 0.0f ? -g : 0.0f);
        d1[e] = s;
        d2[e] = -s;
    }
}

// ---- The conditional-VAE term (train::posterior; `train --vae`) ----

// log σ² is clamped to ±this before use (train::posterior's LOGVAR_CLAMP).
#define LOGVAR_CLAMP 10.0f

// Codes z = μ + exp(½·clamp(log σ²))·ε (train::posterior::sample_codes): mu_logvar [rows, 2·nz]
// (μ first), eps and z [rows, nz].
//
// Launch contract: 1-D, any block size, any grid (grid-stride); every z element written once.
extern "C" __global__ void sample_codes_f32(const float* __restrict__ mu_logvar, const float* __restrict__ eps,
                                            int rows, int nz, float* __restrict__ z) {
    GRID_STRIDE(i, (long long)rows * nz) {
        const long long r = i / nz, j = i % nz;
        const float mu = mu_logvar[r * 2 * nz + j];
        const float lv = fminf(fmaxf(mu_logvar[r * 2 * nz + nz + j], -LOGVAR_CLAMP), LOGVAR_CLAMP);
        z[i] = __fadd_rn(mu, __fmul_rn(expf(0.5f * lv), eps[i]));
    }
}

// The rebuild's weighted L1 (train::posterior::l1_loss): dx[i] = g·w_i·sign(x_i − t_i) with
// g = weight / Σw formed on the host (w null: all 1), and partial[block] = this block's share of
// Σ w_i·|x_i − t_i| (f64 within the block; the host adds the partials and divides by Σw).
//
// Launch contract: `blocks` blocks of LOSS_BLOCK = 256 threads (partial holds `blocks` values),
// grid-stride over n; 2 KiB static shared memory. Every dx element and every partial written once.
extern "C" __global__ void __launch_bounds__(LOSS_BLOCK) l1_loss_f32(
    const float* __restrict__ x, const float* __restrict__ target, const float* __restrict__ w, long long n,
    float g, float* __restrict__ dx, float* __restrict__ partial) {
    __shared__ double shared[LOSS_BLOCK];
    double total = 0.0;
    GRID_STRIDE(i, n) {
        const float wi = w ? w[i] : 1.0f;
        const float diff = __fsub_rn(x[i], target[i]);
        total += (double)__fmul_rn(wi, fabsf(diff));
        const float s = diff > 0.0f ? 1.0f : (diff < 0.0f ? -1.0f : 0.0f);
        dx[i] = __fmul_rn(__fmul_rn(g, wi), s);
    }
    total = block_sum_f64(total, shared, LOSS_BLOCK);
    if (threadIdx.x == 0) partial[blockIdx.x] = (float)total;
}

// Gradients of E's output from the codes' gradient dz and kl_weight · KL(q ‖ N(0, I)) averaged
// over the rows (train::posterior::code_gradients): per element, dμ = dz + (kl_weight/rows)·μ,
// d log σ² = dz·ε·½·exp(½l) + (kl_weight/rows)·½·(exp(l) − 1) inside the clamp (0 outside);
// kl_rows[r] = row r's KL, Σ ½(μ² + exp(l) − 1 − l) (f64 within the row; the host averages).
//
// Launch contract: one block of LOSS_BLOCK = 256 threads per row (grid = rows); 2 KiB static
// shared memory. Every d_out element ([rows, 2·nz]) and every kl_rows value written once.
extern "C" __global__ void __launch_bounds__(LOSS_BLOCK) code_gradients_f32(
    const float* __restrict__ mu_logvar, const float* __restrict__ eps, const float* __restrict__ dz, int rows,
    int nz, float kl_weight, float* __restrict__ d_out, float* __restrict__ kl_rows) {
    __shared__ double shared[LOSS_BLOCK];
    const long long r = blockIdx.x;
    const float w = kl_weight / (float)rows;
    const float* mu = mu_logvar + r * 2 * nz;
    const float* lv = mu + nz;
    float* dmu = d_out + r * 2 * nz;
    float* dlv = dmu + nz;
    double kl = 0.0;
    for (int j = threadIdx.x; j < nz; j += LOSS_BLOCK) {
        const bool inside = fabsf(lv[j]) <= LOGVAR_CLAMP;
        const float l = fminf(fmaxf(lv[j], -LOGVAR_CLAMP), LOGVAR_CLAMP);
        const float var = expf(l);
        const float m = mu[j], d = dz[r * nz + j], e = eps[r * nz + j];
        kl += (double)(0.5f * (m * m + var - 1.0f - l));
        dmu[j] = d + w * m;
        dlv[j] = inside ? d * e * 0.5f * expf(0.5f * l) + w * 0.5f * (var - 1.0f) : 0.0f;
    }
    kl = block_sum_f64(kl, shared, LOSS_BLOCK);
    if (threadIdx.x == 0) kl_rows[r] = (float)kl;
}
