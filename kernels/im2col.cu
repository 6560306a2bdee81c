// im2col and its adjoint col2im, the two data movers of the im2col + GEMM convolution.
//
// The column matrix has one row per filter tap (c, r, s) and one column per output pixel (n, p, q) of
// a batch chunk: cols is (C*R*S, N*P*Q), row-major, so group g's rows form the contiguous block
// [g*Cg*R*S, (g+1)*Cg*R*S) and the GEMMs see cols as (groups, Cg*R*S, N*P*Q).
//
// Geometry (ConvGeometry in gpuconv/_params.py): x is (N, C, H, W), the output (N, K, P, Q); the input
// row of output row p at tap r is p*stride_h - pad_top + r*dil_h (columns alike). Only pad_top and
// pad_left enter: pad_bottom / pad_right just fix P and Q.
//
// Index widths: a chunk's pixel count N*P*Q and one plane's H*W fit in int32 (the launcher checks it;
// a chunk's cols are capped far below 2^31 elements per row), so the per-element decompositions are
// 32-bit divisions; every offset into a tensor is 64-bit. The grids are 2-D, (pixels or plane elements)
// x (taps or planes): the row-level decomposition happens once per row, not once per element.
#include "common.cuh"

// cols[(c*R + r)*S + s][(n*P + p)*Q + q] = x[n, c, p*stride_h - pad_top + r*dil_h, q*stride_w - pad_left + s*dil_w],
// zero where that position lies in the padding.
// Threads: blockIdx.y (grid-stride) runs over the C*R*S rows of cols; along x, consecutive threads take
// consecutive pixels of the row (q fastest: coalesced writes, and reads along w for stride 1),
// grid-stride over N*P*Q.
// Bounds: the input row and column are checked against [0, H) and [0, W) before the read.
template <typename T>
__global__ void im2col(const T* __restrict__ x, T* __restrict__ cols,
                       int N, int C, int H, int W, int R, int S, int P, int Q,
                       int stride_h, int stride_w, int pad_top, int pad_left, int dil_h, int dil_w) {
    const int pixels = N * P * Q;  // < 2^31: checked by the launcher
    const int taps = C * R * S;
    const index_t plane = (index_t)H * W;
    for (int tap = blockIdx.y; tap < taps; tap += gridDim.y) {
        const int s = tap % S;
        const int r = (tap / S) % R;
        const int c = tap / (R * S);
        const T* x_c = x + (index_t)c * plane;
        T* row = cols + (index_t)tap * pixels;
        for (int pixel = blockIdx.x * blockDim.x + threadIdx.x; pixel < pixels; pixel += blockDim.x * gridDim.x) {
            const int q = pixel % Q;
            const int np = pixel / Q;
            const int p = np % P;
            const int n = np / P;
            const int h = input_coordinate(p, r, stride_h, pad_top, dil_h);
            const int w = input_coordinate(q, s, stride_w, pad_left, dil_w);
            T v = Accumulator<T>::store(0);
            if (h >= 0 && h < H && w >= 0 && w < W) {
                v = x_c[(index_t)n * C * plane + (index_t)h * W + w];
            }
            row[pixel] = v;
        }
    }
}

// x[n, c, h, w] = bias[c] + sum over taps (r, s) and output pixels (p, q) with
//     h == p*stride_h - pad_top + r*dil_h  and  w == q*stride_w - pad_left + s*dil_w
// of cols[(c*R + r)*S + s][(n*P + p)*Q + q]   (bias null: no bias term).
// This is a gather: for each tap there is at most one (p, q), found in closed form (output_coordinate),
// so each thread owns one output element and sums in a fixed order (r, then s): no atomics, results
// are bitwise reproducible. Sums run in Accumulator<T>::type.
// Threads: blockIdx.y (grid-stride) runs over the N*C planes of x; along x, consecutive threads take
// consecutive elements of the plane (w fastest), grid-stride over H*W.
// Bounds: p in [0, P) and q in [0, Q), and the stride divides the offset, before each read of cols.
template <typename T>
__global__ void col2im(const T* __restrict__ cols, const T* __restrict__ bias, T* __restrict__ x,
                       int N, int C, int H, int W, int R, int S, int P, int Q,
                       int stride_h, int stride_w, int pad_top, int pad_left, int dil_h, int dil_w) {
    typedef Accumulator<T> A;
    const index_t pixels = (index_t)N * P * Q;
    const int plane = H * W;  // < 2^31: checked by the launcher
    const index_t planes = (index_t)N * C;
    for (index_t nc = blockIdx.y; nc < planes; nc += gridDim.y) {
        const int c = (int)(nc % C);
        const int n = (int)(nc / C);
        const T* cols_n = cols + (index_t)n * P * Q;
        T* x_plane = x + nc * plane;
        const typename A::type b = bias_or_zero(bias, c);
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < plane; i += blockDim.x * gridDim.x) {
            const int w = i % W;
            const int h = i / W;
            typename A::type acc = b;
            for (int r = 0; r < R; ++r) {
                const int p = output_coordinate(h, r, stride_h, pad_top, dil_h, P);
                if (p < 0) continue;
                for (int s = 0; s < S; ++s) {
                    const int q = output_coordinate(w, s, stride_w, pad_left, dil_w, Q);
                    if (q < 0) continue;
                    const index_t tap = ((index_t)c * R + r) * S + s;
                    acc += A::load(cols_n[tap * pixels + (index_t)p * Q + q]);
                }
            }
            x_plane[i] = A::store(acc);
        }
    }
}
