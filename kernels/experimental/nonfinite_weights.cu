// PyTorch's NaNs and infinities for a NaN or infinite weight, where a verified kernel's differ (issue 14,
// class 2). PyTorch pads the input with zeros and multiplies them by the weight in the forward (0 * inf and
// 0 * NaN are NaN), but its input gradient gathers only the taps that hit. Two kernel families disagree:
//
// - the implicit-GEMM dgrads (NCHW and NHWC) and the depthwise dgrads stage gy into zero-filled tiles and add
//   0 * w[k, c, r, s] where a tap reaches an input pixel only through padding: NaN where PyTorch adds nothing.
//   Such a wrong result is always NaN, in a channel c whose weights are not all finite.
// - conv2d_fprop_direct skips the taps that read padding, where PyTorch adds 0 * w: a finite value (or an
//   infinity) where PyTorch has NaN, in an output channel k whose weights are not all finite.
//
// Each repair runs after its kernel, on that kernel's output, in place. The flags (one bool per channel:
// its weights are all finite) come from the launcher (gpuconv/_cuda/experimental/nonfinite_weights.py).
// Threads (both): blockIdx.x grid-strides over the N*C (dgrad) or N*K (fprop) planes; a block whose channel
// has only finite weights skips the plane after one read of its flag (the whole cost when every weight is
// finite); otherwise its threads stride over the plane's pixels, one each.
#include "../common.cuh"
#include "../dgrad_gather.cuh"

// gx[n, c, h, col] = dgrad_gather(...) (dgrad_gather.cuh: bias[c] + the taps that hit, summed as
//                    conv2d_dgrad_direct sums them)   where !finite[c] and gx[n, c, h, col] is NaN;
//                    left as the dgrad kernel wrote it elsewhere.
// A NaN that PyTorch also has (a NaN weight on a tap that hits, a NaN in gy) is recomputed to NaN again.
// Bounds: planes < N*C, pixels < H*W; dgrad_gather checks p in [0, P), q in [0, Q) before each read of gy.
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

// y[n, k, p, q] += 0 * w[k, c, r, s] for the first tap (r, s) and channel c, in that order, whose weight is
// not finite and whose input position (p*stride_h - pad_top + r*dil_h, q*stride_w - pad_left + s*dil_w) lies
// in the padding: NaN, as PyTorch's sum over the zero-padded input has it; where !finite[k] only. Every
// other element is left as the fprop kernel wrote it.
// Bounds: planes < N*K, pixels < P*Q, c < Cg, r < R, s < S; reads only w and y.
template <typename T>
__global__ void conv2d_fprop_nonfinite_repair(const T* __restrict__ w, const bool* __restrict__ finite,
                                              T* __restrict__ y,
                                              int N, int C, int H, int W, int K, int R, int S, int P, int Q,
                                              int stride_h, int stride_w, int pad_top, int pad_left,
                                              int dil_h, int dil_w, int groups) {
    typedef Accumulator<T> A;
    const int Cg = C / groups;
    const index_t planes = (index_t)N * K;
    const index_t plane_size = (index_t)P * Q;
    for (index_t plane = blockIdx.x; plane < planes; plane += gridDim.x) {
        const int k = (int)(plane % K);
        if (finite[k]) continue;  // the same for the whole block: no divergence
        const T* w_k = w + (index_t)k * Cg * R * S;
        T* out = y + plane * plane_size;
        for (index_t j = threadIdx.x; j < plane_size; j += blockDim.x) {
            const int p = (int)(j / Q), q = (int)(j % Q);
            typename A::type skipped = 0;  // 0 * w of the first non-finite padding tap (NaN), else 0
            for (int r = 0; r < R && skipped == 0; ++r) {
                const int h = input_coordinate(p, r, stride_h, pad_top, dil_h);
                const bool row_padded = h < 0 || h >= H;
                for (int s = 0; s < S && skipped == 0; ++s) {
                    const int col = input_coordinate(q, s, stride_w, pad_left, dil_w);
                    if (!row_padded && col >= 0 && col < W) continue;  // a tap the fprop kernel summed
                    for (int c = 0; c < Cg; ++c) {
                        const typename A::type wv = A::load(w_k[((index_t)c * R + r) * S + s]);
                        if (wv - wv != 0) {  // NaN or infinite (inf - inf is NaN)
                            skipped = typename A::type(0) * wv;
                            break;
                        }
                    }
                }
            }
            if (skipped != 0) out[j] = A::store(A::load(out[j]) + skipped);  // NaN != 0 holds
        }
    }
}
