// The input gradient of one element by gathering, shared by conv2d_dgrad_direct (conv_direct.cu) and the
// experimental non-finite-weight repair (experimental/dgrad_nonfinite.cu), so both sum the same terms in the
// same order.
#pragma once

#include "common.cuh"

// Cg = C / groups and Kg = K / groups are the caller's (computed once per thread).
// bias[c] + sum over taps (r, s) and output channels k of c's group of
//     gy[n, k, p, q] * w[k, c - g*Cg, r, s],  where h == p*stride_h - pad_top + r*dil_h and
//     col == q*stride_w - pad_left + s*dil_w for some 0 <= p < P, 0 <= q < Q
// (bias null: no bias term), accumulated in Accumulator<T>::type in the order r, s, k. Only the taps that
// hit (h, col) are read: a tap that reaches it through padding or a stride hole adds nothing, not 0 * w.
// Bounds: p in [0, P), q in [0, Q), and the stride divides the offset, before each read of gy.
template <typename T>
__device__ __forceinline__ typename Accumulator<T>::type dgrad_gather(
    const T* __restrict__ gy, const T* __restrict__ w, const T* __restrict__ bias, int n, int c, int h, int col,
    int Cg, int Kg, int K, int R, int S, int P, int Q, int stride_h, int stride_w, int pad_top, int pad_left,
    int dil_h, int dil_w) {
    typedef Accumulator<T> A;
    const int g = c / Cg;
    const int c_in_group = c - g * Cg;
    typename A::type acc = bias_or_zero(bias, c);
    for (int r = 0; r < R; ++r) {
        const int p = output_coordinate(h, r, stride_h, pad_top, dil_h, P);
        if (p < 0) continue;
        for (int s = 0; s < S; ++s) {
            const int q = output_coordinate(col, s, stride_w, pad_left, dil_w, Q);
            if (q < 0) continue;
            for (int kk = 0; kk < Kg; ++kk) {
                const int k = g * Kg + kk;
                const index_t gy_index = (((index_t)n * K + k) * P + p) * Q + q;
                const index_t w_index = (((index_t)k * Cg + c_in_group) * R + r) * S + s;
                acc += A::load(gy[gy_index]) * A::load(w[w_index]);
            }
        }
    }
    return acc;
}
