// Direct convolution: fprop, dgrad and wgrad straight from the definition, one output element per
// thread (wgrad: per block). Used for depthwise and few-channels-per-group layers, for small problems,
// and as the reference the GEMM-based paths are checked against on the GPU.
//
// Geometry (ConvGeometry in gpuconv/_params.py): x (N, C, H, W), w (K, Cg, R, S), y (N, K, P, Q), with
// Cg = C / groups and Kg = K / groups; output channel k belongs to group g = k / Kg and reads input
// channels [g*Cg, (g+1)*Cg). Input row of output row p at tap r: p*stride_h - pad_top + r*dil_h
// (columns alike); only pad_top and pad_left enter, pad_bottom / pad_right just fix P and Q.
// Every array is contiguous. Sums run in Accumulator<T>::type (float for __half), in a fixed order:
// results are bitwise reproducible.
#include "common.cuh"
#include "dgrad_gather.cuh"

// y[n, k, p, q] = bias[k] + sum over c < Cg, r < R, s < S of
//     x[n, g*Cg + c, p*stride_h - pad_top + r*dil_h, q*stride_w - pad_left + s*dil_w] * w[k, c, r, s]
// (bias null: no bias term; taps in the padding contribute nothing).
// Threads: one per element of y (N*K*P*Q, q fastest), grid-stride loop.
// Bounds: each input row / column is checked against [0, H) / [0, W) before the read.
template <typename T>
__global__ void conv2d_fprop_direct(const T* __restrict__ x, const T* __restrict__ w,
                                    const T* __restrict__ bias, T* __restrict__ y,
                                    int N, int C, int H, int W, int K, int R, int S, int P, int Q,
                                    int stride_h, int stride_w, int pad_top, int pad_left,
                                    int dil_h, int dil_w, int groups) {
    typedef Accumulator<T> A;
    const int Cg = C / groups;
    const int Kg = K / groups;
    const index_t total = (index_t)N * K * P * Q;
    for (index_t i = first_thread_index(); i < total; i += thread_count()) {
        const int q = (int)(i % Q);
        const int p = (int)((i / Q) % P);
        const int k = (int)((i / ((index_t)P * Q)) % K);
        const int n = (int)(i / ((index_t)K * P * Q));
        const int c0 = (k / Kg) * Cg;
        typename A::type acc = bias_or_zero(bias, k);
        for (int c = 0; c < Cg; ++c) {
            const T* x_plane = x + ((index_t)n * C + c0 + c) * H * W;
            const T* w_filter = w + ((index_t)k * Cg + c) * R * S;
            for (int r = 0; r < R; ++r) {
                const int h = input_coordinate(p, r, stride_h, pad_top, dil_h);
                if (h < 0 || h >= H) continue;
                for (int s = 0; s < S; ++s) {
                    const int col = input_coordinate(q, s, stride_w, pad_left, dil_w);
                    if (col < 0 || col >= W) continue;
                    acc += A::load(x_plane[(index_t)h * W + col]) * A::load(w_filter[r * S + s]);
                }
            }
        }
        y[i] = A::store(acc);
    }
}

// gx[n, c, h, col] = dgrad_gather(...) (dgrad_gather.cuh): bias[c] + the sum over the taps (r, s) and the
// output channels k of c's group of gy[n, k, p, q] * w[k, c - g*Cg, r, s] for the (p, q) that read (h, col).
// It is the adjoint of fprop in x, and a transposed convolution's forward. A gather: for each tap the one
// (p, q) that reads (h, col) comes in closed form (output_coordinate).
// Threads: one per element of gx (N*C*H*W, w fastest), grid-stride loop.
// Bounds: p in [0, P), q in [0, Q), and the stride divides the offset, before each read of gy.
template <typename T>
__global__ void conv2d_dgrad_direct(const T* __restrict__ gy, const T* __restrict__ w,
                                    const T* __restrict__ bias, T* __restrict__ gx,
                                    int N, int C, int H, int W, int K, int R, int S, int P, int Q,
                                    int stride_h, int stride_w, int pad_top, int pad_left,
                                    int dil_h, int dil_w, int groups) {
    typedef Accumulator<T> A;
    const int Cg = C / groups;
    const int Kg = K / groups;
    const index_t total = (index_t)N * C * H * W;
    for (index_t i = first_thread_index(); i < total; i += thread_count()) {
        const int col = (int)(i % W);
        const int h = (int)((i / W) % H);
        const int c = (int)((i / ((index_t)H * W)) % C);
        const int n = (int)(i / ((index_t)C * H * W));
        gx[i] = A::store(dgrad_gather(gy, w, bias, n, c, h, col, Cg, Kg, K, R, S, P, Q, stride_h, stride_w,
                                      pad_top, pad_left, dil_h, dil_w));
    }
}

// Threads per block of conv2d_wgrad_direct; the launcher must use exactly this block size (a power of
// two: the reduction halves it).
#define WGRAD_DIRECT_THREADS 256

// gw[k, c, r, s] = sum over n < N, p < P, q < Q of
//     gy[n, k, p, q] * x[n, g*Cg + c, p*stride_h - pad_top + r*dil_h, q*stride_w - pad_left + s*dil_w]
// (taps in the padding contribute nothing).
// Threads: one block per element of gw (K*Cg*R*S, grid-stride over blocks). The block's threads take
// the N*P*Q terms in turn (thread t sums terms t, t + 256, ...), then a tree reduction in shared memory
// of fixed shape adds the 256 partial sums: the order never depends on timing, so results are bitwise
// reproducible, without atomics.
// Bounds: each input row / column is checked against [0, H) / [0, W) before the read.
template <typename T>
__global__ void __launch_bounds__(WGRAD_DIRECT_THREADS)
conv2d_wgrad_direct(const T* __restrict__ x, const T* __restrict__ gy, T* __restrict__ gw,
                    int N, int C, int H, int W, int K, int R, int S, int P, int Q,
                    int stride_h, int stride_w, int pad_top, int pad_left, int dil_h, int dil_w,
                    int groups) {
    typedef Accumulator<T> A;
    __shared__ typename A::type partial[WGRAD_DIRECT_THREADS];
    const int Cg = C / groups;
    const int Kg = K / groups;
    const index_t weights = (index_t)K * Cg * R * S;
    const index_t terms = (index_t)N * P * Q;
    const int t = threadIdx.x;
    for (index_t e = blockIdx.x; e < weights; e += gridDim.x) {
        const int s = (int)(e % S);
        const int r = (int)((e / S) % R);
        const int c = (int)((e / ((index_t)R * S)) % Cg);
        const int k = (int)(e / ((index_t)Cg * R * S));
        const int x_channel = (k / Kg) * Cg + c;
        typename A::type acc = 0;
        for (index_t j = t; j < terms; j += WGRAD_DIRECT_THREADS) {
            const int q = (int)(j % Q);
            const int p = (int)((j / Q) % P);
            const int n = (int)(j / ((index_t)P * Q));
            const int h = input_coordinate(p, r, stride_h, pad_top, dil_h);
            const int col = input_coordinate(q, s, stride_w, pad_left, dil_w);
            if (h < 0 || h >= H || col < 0 || col >= W) continue;
            const index_t x_index = (((index_t)n * C + x_channel) * H + h) * W + col;
            const index_t gy_index = (((index_t)n * K + k) * P + p) * Q + q;
            acc += A::load(gy[gy_index]) * A::load(x[x_index]);
        }
        partial[t] = acc;
        __syncthreads();
        for (int half = WGRAD_DIRECT_THREADS / 2; half > 0; half >>= 1) {
            if (t < half) partial[t] += partial[t + half];
            __syncthreads();
        }
        if (t == 0) gw[e] = A::store(partial[0]);
        // partial[0] must be read before the next element's partial sums overwrite it.
        __syncthreads();
    }
}
