// The repair of an input gradient whose kernel multiplied zeros by the weight (issue 14, class 2).
//
// The implicit-GEMM dgrads (NCHW and NHWC) and the depthwise dgrads stage gy into zero-filled tiles: where
// a tap (r, s) reaches an input pixel only through padding, the tile holds 0 and the kernel still adds
// 0 * w[k, c, r, s]. That is exact for a finite weight; a NaN or infinite one makes the pixel NaN where
// PyTorch (and conv2d_dgrad_direct, which visits only the taps that hit) adds nothing. Such a wrong result is
// always NaN, in a channel c whose weights w[g*Kg .. g*Kg + Kg - 1, c - g*Cg, :, :] are not all finite.
//
//   gx[n, c, h, col] = dgrad_gather(...) (dgrad_gather.cuh: bias[c] + the taps that hit, as the direct
//                      kernel sums them)   where !finite[c] and gx[n, c, h, col] is NaN;
//   left as the dgrad kernel wrote it      elsewhere.
//
// A NaN that PyTorch also has (a NaN weight on a tap that hits, a NaN in gy) is recomputed to NaN again.
// finite (C bools: channel c's weights are all finite) comes from the launcher (gpuconv/_cuda/experimental/dgrad_nonfinite.py).
// Threads: blockIdx.x grid-strides over the N*C planes (n, c) of gx; a block whose channel has only finite
// weights skips the plane after one read of finite[c] (the whole cost when every weight is finite); otherwise
// its threads stride over the plane's H*W pixels, one pixel each.
// Bounds: planes < N*C, pixels < H*W; dgrad_gather checks p in [0, P), q in [0, Q) before each read of gy.
#include "../common.cuh"
#include "../dgrad_gather.cuh"

template <typename T>
__global__ void conv2d_dgrad_nonfinite_repair(const T* __restrict__ gy, const T* __restrict__ w,
                                              const T* __restrict__ bias, const bool* __restrict__ finite,
                                              T* __restrict__ gx,
                                              int N, int C, int H, int W, int K, int R, int S, int P, int Q,
                                              int stride_h, int stride_w, int pad_top, int pad_left,
                                              int dil_h, int dil_w, int groups) {
    typedef Accumulator<T> A;
    const int Cg = C / groups;
    const int Kg = K / groups;
    const index_t planes = (index_t)N * C;
    const index_t plane_size = (index_t)H * W;
    for (index_t plane = blockIdx.x; plane < planes; plane += gridDim.x) {
        const int c = (int)(plane % C);
        if (finite[c]) continue;  // the same for the whole block: no divergence
        const int n = (int)(plane / C);
        T* out = gx + plane * plane_size;
        for (index_t j = threadIdx.x; j < plane_size; j += blockDim.x) {
            const typename A::type v = A::load(out[j]);
            if (v == v) continue;  // not NaN (no fast-math: NaN != NaN holds)
            const int h = (int)(j / W), col = (int)(j % W);
            out[j] = A::store(dgrad_gather(gy, w, bias, n, c, h, col, Cg, Kg, K, R, S, P, Q, stride_h, stride_w,
                                           pad_top, pad_left, dil_h, dil_w));
        }
    }
}
