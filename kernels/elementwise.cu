// elementwise: activations, add, channel concat, spatial replicate, mean over time and the 1-D
// max-pool; the device twins of src/ops/{activation,elementwise,pool}.rs. All memory-bound: one
// thread per output element, grid-stride loops. Each is exact (bit for bit against the CPU)
// except the transcendental activations (tanh, sigmoid: expf/tanhf, ≤ 2 ulp).
#include "common.cuh"

// out[i] = act(x[i]). Launch contract (every kernel of this file unless it says otherwise):
// 1-D, any block size (256 tuned), any grid; no shared memory; every output element written once.
// out may alias x.
extern "C" __global__ void activation_fwd_f32(const float* x, float* out, long long n, int act, float slope) {
    GRID_STRIDE(i, n) out[i] = apply_act(act, slope, x[i]);
}

// out[i] = a[i] + b[i]; out may alias a or b.
extern "C" __global__ void add_fwd_f32(const float* a, const float* b, float* out, long long n) {
    GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}

// a [B, a_len], b [B, b_len] → out [B, a_len + b_len].
extern "C" __global__ void concat_channels_fwd_f32(
    const float* __restrict__ a, long long a_len, const float* __restrict__ b, long long b_len, int batch,
    float* __restrict__ out) {
    const long long row = a_len + b_len;
    GRID_STRIDE(i, (long long)batch * row) {
        long long s = i / row, j = i % row;
        out[i] = j < a_len ? a[s * a_len + j] : b[s * b_len + (j - a_len)];
    }
}

// x [rows] (rows = B·C) → out [rows, hw]: out[r, p] = x[r].
extern "C" __global__ void replicate_spatial_fwd_f32(
    const float* __restrict__ x, long long rows, long long hw, float* __restrict__ out) {
    GRID_STRIDE(i, rows * hw) out[i] = x[i / hw];
}

// x [B, T, H] → out [B, H], out = (Σ_t x[b, t, :]) · (1/T), summed in t order in f32 as the CPU
// does, so the result is bit-identical to ops::pool::mean_time.
extern "C" __global__ void mean_time_fwd_f32(
    const float* __restrict__ x, int batch, int t, int h, float* __restrict__ out) {
    const float inv = 1.0f / (float)t;
    GRID_STRIDE(i, (long long)batch * h) {
        long long b = i / h, j = i % h;
        const float* xp = x + b * t * h + j;
        float acc = 0.0f;
        for (int s = 0; s < t; ++s) acc += xp[(long long)s * h];
        out[i] = acc * inv;
    }
}

// x [rows, t] → out [rows, to], to = (t − k)/s + 1 (the host checks t ≥ k): the max of each
// window (NaN-free inputs; fmaxf as f32::max).
extern "C" __global__ void maxpool1d_fwd_f32(
    const float* __restrict__ x, long long rows, int t, int k, int s, int to, float* __restrict__ out) {
    GRID_STRIDE(i, rows * to) {
        long long r = i / to;
        int j = (int)(i % to);
        const float* w = x + r * t + (long long)j * s;
        float m = -__int_as_float(0x7f800000);  // −∞
        for (int q = 0; q < k; ++q) m = fmaxf(m, w[q]);
        out[i] = m;
    }
}

// ---- backward (training) ----

// Backward of maxpool1d_fwd_f32 (ops::pool::maxpool1d_backward): each window's gradient goes to
// its first maximum (strictly greater wins, as the CPU's scan), dx OVERWRITTEN. One thread per
// input element: it sums dy over the windows that contain it and pick it, in window order (the
// CPU's order of additions, so the result is bit-identical). Elements in no window get 0.
// Launch contract: 1-D, any block size (256 tuned), any grid (grid-stride loop over rows·t).
extern "C" __global__ void maxpool1d_bwd_f32(
    const float* __restrict__ x, const float* __restrict__ dy, long long rows, int t, int k, int s, int to,
    float* __restrict__ dx) {
    GRID_STRIDE(i, rows * t) {
        long long r = i / t;
        int p = (int)(i % t);
        const float* row = x + r * t;
        // windows j with j·s ≤ p < j·s + k
        int first = p - k + 1 > 0 ? (p - k + 1 + s - 1) / s : 0;
        int last = p / s < to - 1 ? p / s : to - 1;
        float acc = 0.0f;
        for (int j = first; j <= last; ++j) {
            const float* w = row + (long long)j * s;
            int arg = 0;
            for (int q = 1; q < k; ++q) {
                if (w[q] > w[arg]) arg = q;
            }
            if (j * s + arg == p) acc += dy[r * to + j];
        }
        dx[i] = acc;
    }
}

// dx[i] = dy[i]·act'(x[i]) from the output y = act(x), as ops::activation::activation_backward:
// ReLU and LeakyReLU by the sign of y (0 counts as the negative side), tanh 1 − y², sigmoid
// y(1 − y). Products rounded one at a time (no FMA contraction), so the result is bit-identical
// to the CPU's. dx may alias dy.
extern "C" __global__ void activation_bwd_f32(
    const float* __restrict__ y, const float* dy, float* dx, long long n, int act, float slope) {
    GRID_STRIDE(i, n) {
        float g = dy[i], v = y[i];
        float d;
        switch (act) {
        case ACT_RELU: d = v > 0.0f ? g : 0.0f; break;
        case ACT_LEAKY_RELU: d = v > 0.0f ? g : __fmul_rn(slope, g); break;
        case ACT_TANH: d = __fmul_rn(g, __fsub_rn(1.0f, __fmul_rn(v, v))); break;
        case ACT_SIGMOID: d = __fmul_rn(__fmul_rn(g, v), __fsub_rn(1.0f, v)); break;
        default: d = g; break;
        }
        dx[i] = d;
    }
}

// Backward of concat_channels_fwd_f32: dy [B, a_len + b_len] split into da [B, a_len] and
// db [B, b_len] (both overwritten; one thread per dy element).
extern "C" __global__ void concat_channels_bwd_f32(
    const float* __restrict__ dy, long long a_len, long long b_len, int batch, float* __restrict__ da,
    float* __restrict__ db) {
    const long long row = a_len + b_len;
    GRID_STRIDE(i, (long long)batch * row) {
        long long s = i / row, j = i % row;
        if (j < a_len) {
            da[s * a_len + j] = dy[i];
        } else {
            db[s * b_len + (j - a_len)] = dy[i];
        }
    }
}

// Backward of replicate_spatial_fwd_f32: dx[r] = Σ_p dy[r, p], summed in p order in f32 (one
// thread per row), as ops::elementwise::replicate_spatial_backward: bit-identical.
extern "C" __global__ void replicate_spatial_bwd_f32(
    const float* __restrict__ dy, long long rows, long long hw, float* __restrict__ dx) {
    GRID_STRIDE(r, rows) {
        const float* g = dy + r * hw;
        float acc = 0.0f;
        for (long long p = 0; p < hw; ++p) acc = __fadd_rn(acc, g[p]);
        dx[r] = acc;
    }
}

// dst[i] += src[i] (a value's gradient from its second consumer). dst may not alias src.
extern "C" __global__ void accumulate_f32(float* __restrict__ dst, const float* __restrict__ src, long long n) {
    GRID_STRIDE(i, n) dst[i] = __fadd_rn(dst[i], src[i]);
}

// D's translation augmentation (ops::shift::shift_images): image i of x [B, C, H, W] moved by
// shifts[2i] rows and shifts[2i + 1] columns (floats holding exact integers), zero where nothing
// lands: out[i, c, y, x] = x[i, c, y − dy, x − dx]. Its backward is the same kernel with the
// offsets negated (`negate` set). out may not alias x. Exact.
extern "C" __global__ void shift_images_f32(const float* __restrict__ x, const float* __restrict__ shifts, int batch,
                                            int channels, int height, int width, int negate,
                                            float* __restrict__ out) {
    const long long plane = (long long)height * width;
    GRID_STRIDE(i, (long long)batch * channels * plane) {
        const long long b = i / (channels * plane);
        const int y = (int)((i / width) % height), xx = (int)(i % width);
        const int sign = negate ? -1 : 1;
        const int sy = y - sign * (int)shifts[2 * b], sx = xx - sign * (int)shifts[2 * b + 1];
        const bool inside = sy >= 0 && sy < height && sx >= 0 && sx < width;
        out[i] = inside ? x[i + (long long)(sy - y) * width + (sx - xx)] : 0.0f;
    }
}

// D's symmetries (ops::flip::flip_images): image i of x [B, C, H, H] under transform flips[i]
// (a float holding 0..7: bit 0 mirrors columns, bit 1 rows, bit 2 transposes, read from the
// output side: out[y][x] = x[sy][sx], (a, b) = (x, y) if transposed else (y, x), sy = H−1−a if
// bit 1 else a, sx = H−1−b if bit 0 else b). With `inverse` set, each transform's inverse
// (ops::flip::inverse_flip: a transposed one with its mirror bits swapped), which is the
// backward pass. Square images only. out may not alias x. Exact.
extern "C" __global__ void flip_images_f32(const float* __restrict__ x, const float* __restrict__ flips, int batch,
                                           int channels, int side, int width, int inverse,
                                           float* __restrict__ out) {
    (void)width;  // = side: the signature of shift_images_f32, so one launcher serves both
    const long long plane = (long long)side * side;
    GRID_STRIDE(i, (long long)batch * channels * plane) {
        const long long b = i / (channels * plane);
        const int y = (int)((i / side) % side), xx = (int)(i % side);
        int t = (int)flips[b];
        if (inverse && (t & 4)) t = 4 | ((t & 1) << 1) | ((t & 2) >> 1);
        const int a = (t & 4) ? xx : y, c = (t & 4) ? y : xx;
        const int sy = (t & 2) ? side - 1 - a : a, sx = (t & 1) ? side - 1 - c : c;
        out[i] = x[i + (long long)(sy - y) * side + (sx - xx)];
    }
}

// Captions on the device: idx [B, L] holds each position's alphabet index as a float (−1: an
// all-zero row; model::text::encode_indices) and out [B, A, L] gets the one-hot rows
// (model::text::encode_into): out[b, a, t] = (idx[b, t] == a). Every output element written.
extern "C" __global__ void onehot_f32(const float* __restrict__ idx, int batch, int alphabet, int len,
                                      float* __restrict__ out) {
    GRID_STRIDE(i, (long long)batch * alphabet * len) {
        long long b = i / ((long long)alphabet * len);
        int a = (int)((i / len) % alphabet), t = (int)(i % len);
        out[i] = idx[b * len + t] == (float)a ? 1.0f : 0.0f;
    }
}
