// im2col and its adjoint col2im, the two data movers of the im2col + GEMM convolution.
//
// The column matrix has one row per filter tap (c, r, s) and one column per output pixel (n, p, q) of
// a batch chunk: cols is (C*R*S, N*P*Q), row-major, so group g's rows form the contiguous block
// [g*Cg*R*S, (g+1)*Cg*R*S) and the GEMMs see cols as (groups, Cg*R*S, N*P*Q).
//
// Geometry (ConvGeometry in gpuconv/_params.py): x is (N, C, H, W), the output (N, K, P, Q); the input
// row of output row p at tap r is p*stride_h - pad_top + r*dil_h (columns alike). Only pad_top and
// pad_left enter: pad_bottom / pad_right just fix P and Q.
#include "common.cuh"

// cols[(c*R + r)*S + s][(n*P + p)*Q + q] = x[n, c, p*stride_h - pad_top + r*dil_h, q*stride_w - pad_left + s*dil_w],
// zero where that position lies in the padding.
// Threads: one per element of cols, flat in cols' row-major order (q fastest: neighbouring threads
// write neighbouring addresses), grid-stride loop over C*R*S*N*P*Q.
// Bounds: the input row and column are checked against [0, H) and [0, W) before the read.
template <typename T>
__global__ void im2col(const T* __restrict__ x, T* __restrict__ cols,
                       int N, int C, int H, int W, int R, int S, int P, int Q,
                       int stride_h, int stride_w, int pad_top, int pad_left, int dil_h, int dil_w) {
    const index_t pixels = (index_t)N * P * Q;
    const index_t total = (index_t)C * R * S * pixels;
    for (index_t i = first_thread_index(); i < total; i += thread_count()) {
        const index_t pixel = i % pixels;
        const index_t tap = i / pixels;
        const int q = (int)(pixel % Q);
        const int p = (int)((pixel / Q) % P);
        const int n = (int)(pixel / ((index_t)P * Q));
        const int s = (int)(tap % S);
        const int r = (int)((tap / S) % R);
        const int c = (int)(tap / ((index_t)R * S));
        const int h = input_coordinate(p, r, stride_h, pad_top, dil_h);
        const int w = input_coordinate(q, s, stride_w, pad_left, dil_w);
        T v = Accumulator<T>::store(0);
        if (h >= 0 && h < H && w >= 0 && w < W) {
            v = x[(((index_t)n * C + c) * H + h) * W + w];
        }
        cols[i] = v;
    }
}

// x[n, c, h, w] = bias[c] + sum over taps (r, s) and output pixels (p, q) with
//     h == p*stride_h - pad_top + r*dil_h  and  w == q*stride_w - pad_left + s*dil_w
// of cols[(c*R + r)*S + s][(n*P + p)*Q + q]   (bias null: no bias term).
// This is a gather: for each tap there is at most one (p, q), found in closed form (output_coordinate),
// so each thread owns one output element and sums in a fixed order (r, then s): no atomics, results
// are bitwise reproducible. Sums run in Accumulator<T>::type.
// Threads: one per element of x (N*C*H*W, w fastest), grid-stride loop.
// Bounds: p in [0, P) and q in [0, Q), and the stride divides the offset, before each read of cols.
template <typename T>
__global__ void col2im(const T* __restrict__ cols, const T* __restrict__ bias, T* __restrict__ x,
                       int N, int C, int H, int W, int R, int S, int P, int Q,
                       int stride_h, int stride_w, int pad_top, int pad_left, int dil_h, int dil_w) {
    typedef Accumulator<T> A;
    const index_t pixels = (index_t)N * P * Q;
    const index_t total = (index_t)N * C * H * W;
    for (index_t i = first_thread_index(); i < total; i += thread_count()) {
        const int w = (int)(i % W);
        const int h = (int)((i / W) % H);
        const int c = (int)((i / ((index_t)H * W)) % C);
        const int n = (int)(i / ((index_t)C * H * W));
        typename A::type acc = bias_or_zero(bias, c);
        for (int r = 0; r < R; ++r) {
            const int p = output_coordinate(h, r, stride_h, pad_top, dil_h, P);
            if (p < 0) continue;
            for (int s = 0; s < S; ++s) {
                const int q = output_coordinate(w, s, stride_w, pad_left, dil_w, Q);
                if (q < 0) continue;
                const index_t tap = ((index_t)c * R + r) * S + s;
                const index_t pixel = ((index_t)n * P + p) * Q + q;
                acc += A::load(cols[tap * pixels + pixel]);
            }
        }
        x[i] = A::store(acc);
    }
}
