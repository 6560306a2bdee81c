// Pooling kernels that own runs of adjacent elements and move them with 16-byte loads and stores: the
// opt-in feature "pool_wide" (gpuconv._cuda._unverified). The kernels of pool.cu stay the default and the
// reference; every result here is bitwise equal to theirs (same selections, same sums in the same order).
//
// V = Lanes<T> = 16 bytes / sizeof(T) (8 __half, 4 float, 2 double). Each forward thread owns V adjacent
// outputs (n, c, p, q0 .. q0 + V - 1), q0 a multiple of V, and each avg-backward thread V adjacent inputs
// (n, c, h, w0 .. w0 + V - 1): one index decomposition per V elements (32-bit: the launcher checks that
// every index fits in 31 bits), the input row segment a group needs staged in registers with 16-byte loads
// of whole aligned chunks, V results written with one 16-byte store (two to eight for max's int64
// indices). The column geometry is compile-time: <KW, SW> = (kernel_w, stride_w), dilation_w 1, pad_w 0
// or 1 (pad <= kernel/2 allows nothing else for KW <= 3) as a template argument chosen per launch; rows
// (kernel_h, stride_h, pad_h, dilation_h) are loop bounds at run time. The launcher runs pool.cu's kernels
// for any other geometry.
// Loads and stores are vector ones when the data allow (checked here, uniform over the launch): inputs
// when W % V == 0 and x is 16-byte aligned (then every chunk of V columns starting at a multiple of V lies
// wholly inside a row or wholly outside it), outputs when Q % V == 0 (W for the backward) and the output
// pointers are 16-byte aligned; otherwise element by element with bounds tests, same arithmetic.
//
// The max-pool backward (no window geometry: indices only) is pool.cu's per-plane counting sort made
// cheaper: 16-bit counters packed two to a word (ResNet-50's max pool: 50 KB of shared arrays per plane,
// grad_output included, instead of 65 KB, so 4 planes per SM instead of 3), grad_output copied to shared
// memory (cp.async) while the indices are counted, index pairs loaded 16 bytes at a time in rounds of 4 per
// thread (all in flight at once), a warp-shuffle block scan (2 barriers instead of 18), and V adjacent gx
// written per thread with one store.

#include "../cp_async.cuh"
#include "../fast_divide.cuh"
#include "../pool.cu"

namespace gpuconv_pool_wide {

using gpuconv_pool::is_nan;
using gpuconv_pool::minus_infinity;

template <typename T> struct Lanes;
template <> struct Lanes<__half> { enum { value = 8 }; };
template <> struct Lanes<float> { enum { value = 4 }; };
template <> struct Lanes<double> { enum { value = 2 }; };

__host__ __device__ inline bool aligned16(const void* p) {
    return (reinterpret_cast<unsigned long long>(p) & 15ull) == 0;
}

// The Lanes<T> values at p (16-byte aligned) as they are stored, and V results (Accumulator<T>) stored as T.
__host__ __device__ inline void load16(const float* p, float* v) {
    const float4 u = *reinterpret_cast<const float4*>(p);
    v[0] = u.x; v[1] = u.y; v[2] = u.z; v[3] = u.w;
}
__host__ __device__ inline void load16(const double* p, double* v) {
    const double2 u = *reinterpret_cast<const double2*>(p);
    v[0] = u.x; v[1] = u.y;
}
__host__ __device__ inline void load16(const __half* p, __half* v) {
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    const unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int k = 0; k < 8; ++k) v[k] = __ushort_as_half(static_cast<unsigned short>(w[k >> 1] >> (16 * (k & 1))));
}
__host__ __device__ inline void store16(float* p, const float* v) {
    float4 u;
    u.x = v[0]; u.y = v[1]; u.z = v[2]; u.w = v[3];
    *reinterpret_cast<float4*>(p) = u;
}
__host__ __device__ inline void store16(double* p, const double* v) {
    double2 u;
    u.x = v[0]; u.y = v[1];
    *reinterpret_cast<double2*>(p) = u;
}
__host__ __device__ inline void store16(__half* p, const float* v) {
    unsigned w[4];
#pragma unroll
    for (int k = 0; k < 4; ++k)
        w[k] = pack2(Accumulator<__half>::store(v[2 * k]), Accumulator<__half>::store(v[2 * k + 1]));
    uint4 u;
    u.x = w[0]; u.y = w[1]; u.z = w[2]; u.w = w[3];
    *reinterpret_cast<uint4*>(p) = u;
}

// -inf and -0.0 in T: the fill values of RowSegment (exact in every T).
template <typename T> __host__ __device__ inline T negative_infinity() {
    return static_cast<T>(minus_infinity<typename Accumulator<T>::type>());
}
template <> __host__ __device__ inline __half negative_infinity<__half>() { return __ushort_as_half(0xfc00); }
template <typename T> __host__ __device__ inline T negative_zero() { return static_cast<T>(-0.0); }
template <> __host__ __device__ inline __half negative_zero<__half>() { return __ushort_as_half(0x8000); }

// V results to out[0, V) (count <= V of them valid: the rest lie past the row): one 16-byte store when vec.
template <typename T>
__host__ __device__ inline void store_run(T* out, const typename Accumulator<T>::type* v, int count, bool vec) {
    if (vec) {
        store16(out, v);
        return;
    }
#pragma unroll
    for (int e = 0; e < Lanes<T>::value; ++e)
        if (e < count) out[e] = Accumulator<T>::store(v[e]);
}

// ------------------------------------------------------------------------------------------ forward

// One window row of the inputs a group of V outputs reads. Output q0 + v reads columns ws + v*SW + j
// (j < KW), ws = q0*SW - PW: all in [ws, ws + SPAN). buf[b] holds column cs + b, cs = ws - M with
// M = (V - PW) % V, which makes cs a multiple of V (q0 and V*SW are), so buf is NCH whole chunks of V
// columns and tap(v, j) = buf[M + v*SW + j] is a register after unrolling. Columns outside [0, W) read as
// `fill`, which the caller picks so that it changes nothing: -inf for max (it never wins), -0.0 for the sums of
// avg (s + (-0.0) == s bit for bit for every s, -0 included: a float32 sum is -0 when -ftz flushes a tiny
// negative result, and +0.0 would turn it into +0).
template <typename T, int KW, int SW, int PW>
struct RowSegment {
    typedef typename Accumulator<T>::type Acc;
    enum { V = Lanes<T>::value, SPAN = (V - 1) * SW + KW, M = (V - PW) % V, NCH = (M + SPAN + V - 1) / V };
    T buf[NCH * V];  // as stored (__half converts to float in tap: half the registers)

    // xr: the row's first element; vec: 16-byte chunk loads (W % V == 0 and x aligned), else one by one.
    __host__ __device__ inline void load(const T* xr, int cs, int W, bool vec, T fill) {
        if (vec) {
#pragma unroll
            for (int c = 0; c < NCH; ++c) {
                const int col = cs + c * V;
                if (0 <= col && col < W) {
                    load16(xr + col, buf + c * V);
                } else {
#pragma unroll
                    for (int e = 0; e < V; ++e) buf[c * V + e] = fill;
                }
            }
        } else {
#pragma unroll
            for (int b = 0; b < NCH * V; ++b) {
                const int col = cs + b;
                buf[b] = (b >= M && b < M + SPAN && 0 <= col && col < W) ? xr[col] : fill;
            }
        }
    }
    __host__ __device__ inline Acc tap(int v, int j) const { return Accumulator<T>::load(buf[M + v * SW + j]); }
};

// max_pool2d_fprop_one's rule: a value wins when `v > best || isnan(v)` (the last NaN wins).
template <typename Acc>
__host__ __device__ inline void max_take(Acc v, int index, Acc* best, int* best_index) {
    if (v > *best || is_nan(v)) {
        *best = v;
        *best_index = index;
    }
}

// Group g of max pooling: outputs (plane, p, q0 + v), v < V, with row = plane*P + p = g / QV, q0 = V*(g mod QV),
// QV = ceil(Q / V). Per output exactly max_pool2d_fprop_one (dW = 1): window rows h = h0 + i*dH clipped to
// [0, H) and visited in order, columns ws + v*SW + j ascending within a row; padding columns read -inf,
// which never wins, so the same element wins as there; the initial index is the first in-bounds element's.
template <typename T, int KW, int SW, int PW>
__host__ __device__ inline void max_pool2d_fprop_group(
    const T* __restrict__ x, T* __restrict__ y, long long* __restrict__ indices, int g, int H, int W, int P, int Q,
    int QV, int kH, int sH, int pH, int dH, long long div_QV, long long div_P, bool vec_in, bool vec_out) {
    typedef RowSegment<T, KW, SW, PW> Segment;
    typedef typename Accumulator<T>::type Acc;
    enum { V = Segment::V };
    const int row = fast_divide(g, div_QV);
    const int q0 = (g - row * QV) * V;
    const int plane = fast_divide(row, div_P);
    const int p = row - plane * P;
    const T* xp = x + plane * H * W;

    int h0 = p * sH - pH;  // as max_pool2d_fprop_one
    const int h1 = h0 + (kH - 1) * dH + 1 < H ? h0 + (kH - 1) * dH + 1 : H;
    if (h0 < 0) h0 += ((-h0 + dH - 1) / dH) * dH;
    const int ws = q0 * SW - PW;

    Acc best[V];
    int best_index[V];
#pragma unroll
    for (int v = 0; v < V; ++v) {
        best[v] = minus_infinity<Acc>();
        best_index[v] = h0 * W + (ws + v * SW > 0 ? ws + v * SW : 0);
    }
    for (int h = h0; h < h1; h += dH) {
        Segment seg;
        seg.load(xp + h * W, ws - Segment::M, W, vec_in, negative_infinity<T>());
        const int hw = h * W + ws;
#pragma unroll
        for (int v = 0; v < V; ++v) {
#pragma unroll
            for (int j = 0; j < KW; ++j) max_take(seg.tap(v, j), hw + v * SW + j, &best[v], &best_index[v]);
        }
    }

    const int o = row * Q + q0;
    const int count = Q - q0 < V ? Q - q0 : V;
    store_run<T>(y + o, best, count, vec_out);
    if (vec_out) {
#pragma unroll
        for (int v = 0; v < V; v += 2) {
            longlong2 pair;
            pair.x = best_index[v];
            pair.y = best_index[v + 1];
            *reinterpret_cast<longlong2*>(indices + o + v) = pair;
        }
    } else {
#pragma unroll
        for (int v = 0; v < V; ++v)
            if (v < count) indices[o + v] = best_index[v];
    }
}

// Group g of average pooling (same mapping as max_pool2d_fprop_group). Per output exactly avg_pool2d_fprop_one:
// avg_pool2d_window gives the clipped window and the divisor; the in-bounds elements are summed row by row,
// columns ascending, from Acc(0); the taps outside [0, W) add -0.0, which leaves every sum as it was.
template <typename T, int KW, int SW, int PW>
__host__ __device__ inline void avg_pool2d_fprop_group(
    const T* __restrict__ x, T* __restrict__ y, int g, int H, int W, int P, int Q, int QV, int kH, int sH, int pH,
    bool count_include_pad, int divisor_override, long long div_QV, long long div_P, bool vec_in, bool vec_out) {
    typedef RowSegment<T, KW, SW, PW> Segment;
    typedef typename Accumulator<T>::type Acc;
    enum { V = Segment::V };
    const int row = fast_divide(g, div_QV);
    const int q0 = (g - row * QV) * V;
    const int plane = fast_divide(row, div_P);
    const int p = row - plane * P;
    const T* xp = x + plane * H * W;
    const int ws = q0 * SW - PW;

    int h0, h1, w0, w1;  // the rows, the same for every v
    gpuconv_pool::avg_pool2d_window<int>(p, q0, H, W, kH, KW, sH, SW, pH, PW, count_include_pad, divisor_override,
                                         &h0, &h1, &w0, &w1);
    Acc sum[V];
#pragma unroll
    for (int v = 0; v < V; ++v) sum[v] = Acc(0);
    for (int h = h0; h < h1; ++h) {
        Segment seg;
        seg.load(xp + h * W, ws - Segment::M, W, vec_in, negative_zero<T>());
#pragma unroll
        for (int v = 0; v < V; ++v) {
#pragma unroll
            for (int j = 0; j < KW; ++j) sum[v] += seg.tap(v, j);
        }
    }
#pragma unroll
    for (int v = 0; v < V; ++v) {
        const int divisor = gpuconv_pool::avg_pool2d_window<int>(p, q0 + v, H, W, kH, KW, sH, SW, pH, PW,
                                                                 count_include_pad, divisor_override, &h0, &h1, &w0,
                                                                 &w1);
        sum[v] = h0 >= h1 || w0 >= w1 ? Acc(0) : sum[v] / static_cast<Acc>(divisor);
    }
    const int count = Q - q0 < V ? Q - q0 : V;
    store_run<T>(y + row * Q + q0, sum, count, vec_out);
}

// ----------------------------------------------------------------------------------------- avg backward

// Which windows cover which of the V inputs w0 + v of an avg-backward group (w0 a multiple of V, hence of SW).
// Input w lies in window q when q*SW <= w + PW < q*SW + KW. The group's windows are q = qa + k, k < NQ,
// qa = w0/SW + C0 (C0 = floor((PW - KW)/SW) + 1: the first window that holds w0), and window qa + k covers input
// w0 + v exactly when 0 <= v + PW - (C0 + k)*SW < KW: a constant of the template, so every (v, k) that does
// not cover costs nothing.
template <typename T, int KW, int SW, int PW>
struct ColumnCover {
    enum {
        V = Lanes<T>::value,
        C0 = 1 - (KW - PW + SW - 1) / SW,  // PW < KW: floor of a negative quotient
        NQ = (V - 1 + PW - C0 * SW) / SW + 1
    };
    __host__ __device__ static constexpr bool covers(int v, int k) {
        return 0 <= v + PW - (C0 + k) * SW && v + PW - (C0 + k) * SW < KW;
    }
};

// Group g of the average-pool gradient: inputs (plane, h, w0 + v), v < V, row = plane*H + h = g / WV,
// w0 = V*(g mod WV), WV = ceil(W / V). Per input exactly avg_pool2d_bprop_one: rows p in [p_lo, p_hi) (its
// formulas), and for each p the windows q ascending; d = gy[p, q] / divisor(p, q) is computed once per window
// and added to every input it covers; a window outside [0, Q) adds -0.0 (no change), as pool.cu skips it.
template <typename T, int KW, int SW, int PW>
__host__ __device__ inline void avg_pool2d_bprop_group(
    const T* __restrict__ gy, T* __restrict__ gx, int g, int H, int W, int P, int Q, int WV, int kH, int sH, int pH,
    bool count_include_pad, int divisor_override, long long div_WV, long long div_H, long long div_sH,
    bool vec_out) {
    typedef ColumnCover<T, KW, SW, PW> Cover;
    typedef typename Accumulator<T>::type Acc;
    enum { V = Cover::V, NQ = Cover::NQ };
    const int row = fast_divide(g, div_WV);
    const int w0 = (g - row * WV) * V;
    const int plane = fast_divide(row, div_H);
    const int h = row - plane * H;
    const T* gyp = gy + plane * P * Q;
    const int hp = h + pH;  // avg_pool2d_bprop_one's p_lo, p_hi
    const int p_lo = hp < kH ? 0 : fast_divide(hp - kH, div_sH) + 1;
    const int p_hi = fast_divide(hp, div_sH) + 1 < P ? fast_divide(hp, div_sH) + 1 : P;
    const int qa = w0 / SW + Cover::C0;

    Acc sum[V];
#pragma unroll
    for (int v = 0; v < V; ++v) sum[v] = Acc(0);
    for (int p = p_lo; p < p_hi; ++p) {
        Acc d[NQ];
#pragma unroll
        for (int k = 0; k < NQ; ++k) {
            const int q = qa + k;
            d[k] = Acc(-0.0);
            if (0 <= q && q < Q) {
                int h0, h1, c0, c1;
                const int divisor = gpuconv_pool::avg_pool2d_window<int>(
                    p, q, H, W, kH, KW, sH, SW, pH, PW, count_include_pad, divisor_override, &h0, &h1, &c0, &c1);
                d[k] = Accumulator<T>::load(gyp[p * Q + q]) / static_cast<Acc>(divisor);
            }
        }
#pragma unroll
        for (int v = 0; v < V; ++v) {
#pragma unroll
            for (int k = 0; k < NQ; ++k)
                if (Cover::covers(v, k)) sum[v] += d[k];
        }
    }
    const int count = W - w0 < V ? W - w0 : V;
    store_run<T>(gx + row * W + w0, sum, count, vec_out);
}

// ----------------------------------------------------------------------------------------- max backward

// Exclusive prefix sum of one int per thread over the block; every thread calls it. warp_sums holds
// ceil(blockDim.x / 32) <= 32 ints. Two barriers; warp_sums is free again after the caller's next one.
__device__ inline int block_exclusive_sum(int value, int* warp_sums) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int nwarps = (static_cast<int>(blockDim.x) + 31) >> 5;
    int x = value;  // inclusive scan within the warp
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
        const int y = __shfl_up_sync(0xffffffffu, x, d);
        if (lane >= d) x += y;
    }
    if (lane == 31 || tid == static_cast<int>(blockDim.x) - 1) warp_sums[warp] = x;
    __syncthreads();
    int s = lane < nwarps ? warp_sums[lane] : 0;  // every warp scans the warp totals
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
        const int y = __shfl_up_sync(0xffffffffu, s, d);
        if (lane >= d) s += y;
    }
    const int before = __shfl_sync(0xffffffffu, s, warp > 0 ? warp - 1 : 0);
    return x - value + (warp > 0 ? before : 0);
}

// The keys of outputs 2u and 2u + 1 of a plane: the input element each chose, or -1 when it chose none
// inside [0, HW) or lies past the plane (2u + 1 == PQ). With vec, one 16-byte load (PQ even, indices aligned).
__device__ inline void load_key_pair(const long long* __restrict__ ip, int u, int PQ, int HW, bool vec, int* k0,
                                     int* k1) {
    long long a = -1, b = -1;
    if (vec) {
        const longlong2 pair = *reinterpret_cast<const longlong2*>(ip + 2 * u);
        a = pair.x;
        b = pair.y;
    } else {
        a = ip[2 * u];
        if (2 * u + 1 < PQ) b = ip[2 * u + 1];
    }
    *k0 = 0 <= a && a < HW ? static_cast<int>(a) : -1;
    *k1 = 0 <= b && b < HW ? static_cast<int>(b) : -1;
}

// The ends of elements 2*i .. 2*i + 2*NW - 1 from the packed counters (p: NW words, 4*NW-byte aligned).
__device__ inline void load_words(const unsigned* p, unsigned (&w)[4]) {
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    w[0] = u.x; w[1] = u.y; w[2] = u.z; w[3] = u.w;
}
__device__ inline void load_words(const unsigned* p, unsigned (&w)[2]) {
    const uint2 u = *reinterpret_cast<const uint2*>(p);
    w[0] = u.x; w[1] = u.y;
}
__device__ inline void load_words(const unsigned* p, unsigned (&w)[1]) { w[0] = *p; }

// Adds one to the 16-bit counter of element key (two per word: element 2w in the low half of word w, 2w + 1
// in the high half); returns the counter's value before.
__device__ inline int packed_increment(unsigned* counters, int key) {
    const int shift = (key & 1) << 4;
    return static_cast<int>((atomicAdd(&counters[key >> 1], 1u << shift) >> shift) & 0xffffu);
}

}  // namespace gpuconv_pool_wide

// ---------------------------------------------------------------------------------------------- kernels
// Grid-stride loops over groups (of V outputs or inputs), consecutive groups to consecutive threads, so that
// 16-byte accesses of a warp are contiguous. Every group index is below `groups` (< 2^31, the launcher
// checks), and every element index is clipped by the group functions: rows to [0, H), columns to [0, W)
// (loads) and [0, Q) / [0, W) (stores).

// max_pool2d_fprop_wide<T, KW, SW>: y (N, C, P, Q) and int64 indices of x (N, C, H, W) for kernel_w = KW,
// stride_w = SW, dilation_w = 1, pad_w = pW (0 or 1). Thread: group g (V outputs along q) per grid stride,
// g < groups = N*C*P*ceil(Q/V). Formula: max_pool2d_fprop_group. Every index fits in int (the launcher checks
// N*C*H*W, N*C*P*ceil(Q/V)*V and the padded, dilated window extent, as pool.index_ctype). div_QV, div_P: the
// magic numbers of QV = ceil(Q/V) and P (fast_divide()).
template <typename T, int KW, int SW>
__global__ void max_pool2d_fprop_wide(const T* __restrict__ x, T* __restrict__ y, long long* __restrict__ indices,
                                      int groups, int H, int W, int P, int Q, int QV, int kH, int sH, int pH, int dH,
                                      int pW, long long div_QV, long long div_P) {
    enum { V = gpuconv_pool_wide::Lanes<T>::value };
    const bool vec_in = W % V == 0 && gpuconv_pool_wide::aligned16(x);
    const bool vec_out = Q % V == 0 && gpuconv_pool_wide::aligned16(y) && gpuconv_pool_wide::aligned16(indices);
    for (long long g = pool_first_element<long long>(); g < groups; g += pool_grid_stride<long long>()) {
        if (pW == 0)
            gpuconv_pool_wide::max_pool2d_fprop_group<T, KW, SW, 0>(x, y, indices, static_cast<int>(g), H, W, P, Q,
                                                                    QV, kH, sH, pH, dH, div_QV, div_P, vec_in,
                                                                    vec_out);
        else
            gpuconv_pool_wide::max_pool2d_fprop_group<T, KW, SW, 1>(x, y, indices, static_cast<int>(g), H, W, P, Q,
                                                                    QV, kH, sH, pH, dH, div_QV, div_P, vec_in,
                                                                    vec_out);
    }
}

// avg_pool2d_fprop_wide<T, KW, SW>: y (N, C, P, Q) of x (N, C, H, W), kernel_w = KW, stride_w = SW, pad_w = pW
// (0 or 1); count_include_pad 0 or 1, divisor_override 0 for none. Thread: group g per grid stride,
// g < groups = N*C*P*ceil(Q/V). Formula: avg_pool2d_fprop_group. Indices in int, div_QV and div_P as
// max_pool2d_fprop_wide.
template <typename T, int KW, int SW>
__global__ void avg_pool2d_fprop_wide(const T* __restrict__ x, T* __restrict__ y, int groups, int H, int W, int P,
                                      int Q, int QV, int kH, int sH, int pH, int pW, int count_include_pad,
                                      int divisor_override, long long div_QV, long long div_P) {
    enum { V = gpuconv_pool_wide::Lanes<T>::value };
    const bool vec_in = W % V == 0 && gpuconv_pool_wide::aligned16(x);
    const bool vec_out = Q % V == 0 && gpuconv_pool_wide::aligned16(y);
    for (long long g = pool_first_element<long long>(); g < groups; g += pool_grid_stride<long long>()) {
        if (pW == 0)
            gpuconv_pool_wide::avg_pool2d_fprop_group<T, KW, SW, 0>(x, y, static_cast<int>(g), H, W, P, Q, QV, kH, sH,
                                                                    pH, count_include_pad != 0, divisor_override,
                                                                    div_QV, div_P, vec_in, vec_out);
        else
            gpuconv_pool_wide::avg_pool2d_fprop_group<T, KW, SW, 1>(x, y, static_cast<int>(g), H, W, P, Q, QV, kH, sH,
                                                                    pH, count_include_pad != 0, divisor_override,
                                                                    div_QV, div_P, vec_in, vec_out);
    }
}

// avg_pool2d_bprop_wide<T, KW, SW>: gx (N, C, H, W) of gy (N, C, P, Q), arguments as avg_pool2d_fprop_wide.
// Thread: group g (V inputs along w) per grid stride, g < groups = N*C*H*ceil(W/V). Formula:
// avg_pool2d_bprop_group. div_WV, div_H, div_sH: the magic numbers of WV = ceil(W/V), H and stride_h.
template <typename T, int KW, int SW>
__global__ void avg_pool2d_bprop_wide(const T* __restrict__ gy, T* __restrict__ gx, int groups, int H, int W, int P,
                                      int Q, int WV, int kH, int sH, int pH, int pW, int count_include_pad,
                                      int divisor_override, long long div_WV, long long div_H, long long div_sH) {
    enum { V = gpuconv_pool_wide::Lanes<T>::value };
    const bool vec_out = W % V == 0 && gpuconv_pool_wide::aligned16(gx);
    for (long long g = pool_first_element<long long>(); g < groups; g += pool_grid_stride<long long>()) {
        if (pW == 0)
            gpuconv_pool_wide::avg_pool2d_bprop_group<T, KW, SW, 0>(gy, gx, static_cast<int>(g), H, W, P, Q, WV, kH,
                                                                    sH, pH, count_include_pad != 0, divisor_override,
                                                                    div_WV, div_H, div_sH, vec_out);
        else
            gpuconv_pool_wide::avg_pool2d_bprop_group<T, KW, SW, 1>(gy, gx, static_cast<int>(g), H, W, P, Q, WV, kH,
                                                                    sH, pH, count_include_pad != 0, divisor_override,
                                                                    div_WV, div_H, div_sH, vec_out);
    }
}

// max_pool2d_bprop_plane_wide<T>: gx of a max pool, one (n, c) plane per block (grid-stride over planes), for
// planes with P*Q <= 65535 (16-bit counters; the host checks) whose shared arrays fit. Same result, bit for bit,
// as max_pool2d_bprop_plane: gx[plane][i] = sum over the outputs j with indices[plane][j] == i, in increasing j,
// of gy[plane][j] (Accumulator<T>, from 0); indices outside [0, H*W) are ignored. Per plane:
//   1. zero the packed counters                                                              | barrier
//   2. gy -> shared memory with cp.async (16-byte chunks, no registers) while the indices are counted in
//      rounds of 4 pairs per thread (16-byte loads, all in flight at once): count[i] += 1 per output
//      (shared atomics on the 16-bit halves)                                                 | barrier
//   3. counters -> exclusive prefix sums (start[i] <= P*Q fits 16 bits), each thread a contiguous run of
//      words, block_exclusive_sum over the runs                                      | barriers (3 in all)
//   4. the index pairs again (from L2): slots[start[i]++] = j; start[i] ends as the end of i's range | barrier
//   5. thread per V adjacent elements (two to four counter words in one shared load): i's outputs are
//      slots[end(i - 1), end(i)), sorted ascending (sort_positions: their order from the atomics varies),
//      summed from the staged gy; one 16-byte store of gx
//                                                                                            | barrier
// Shared memory: gy (P*Q T, rounded to 16 bytes), counters (ceil(H*W / 2) words rounded to 4), slots (P*Q int),
// 32 warp sums. Global traffic per plane: indices twice (the second from L2), gy and gx once.
template <typename T>
__global__ void __launch_bounds__(512, 4) max_pool2d_bprop_plane_wide(
    const T* __restrict__ gy, const long long* __restrict__ indices, T* __restrict__ gx, long long planes, int HW,
    int PQ) {
    typedef typename Accumulator<T>::type Acc;
    enum { V = gpuconv_pool_wide::Lanes<T>::value, ROUND = 4 };
    GPUCONV_POOL_DYNAMIC_SMEM(smem);
    const int gy_bytes = (PQ * static_cast<int>(sizeof(T)) + 15) & ~15;
    const int words = (((HW + 1) >> 1) + 3) & ~3;
    T* gys = reinterpret_cast<T*>(smem);
    unsigned* counters = reinterpret_cast<unsigned*>(smem + gy_bytes);
    int* slots = reinterpret_cast<int*>(counters + words);
    int* warp_sums = slots + PQ;

    const int tid = threadIdx.x, nt = blockDim.x;
    const int pairs = (PQ + 1) >> 1;
    const bool vec_pairs = (PQ & 1) == 0 && gpuconv_pool_wide::aligned16(indices);
    const bool vec_gy = PQ % V == 0 && gpuconv_pool_wide::aligned16(gy);
    const bool vec_gx = HW % V == 0 && gpuconv_pool_wide::aligned16(gx);
    for (long long plane = blockIdx.x; plane < planes; plane += gridDim.x) {
        const long long* ip = indices + plane * PQ;
        const T* gyp = gy + plane * PQ;
        T* gxp = gx + plane * HW;

        uint4 zero;
        zero.x = zero.y = zero.z = zero.w = 0u;
        for (int c = tid; c < words / 4; c += nt) reinterpret_cast<uint4*>(counters)[c] = zero;
        __syncthreads();

        if (vec_gy) {  // gy -> shared memory, in the background while the indices are counted
            for (int c = tid; c < PQ / V; c += nt) cp_async_16(gys + c * V, gyp + c * V, true);
        } else {
            for (int j = tid; j < PQ; j += nt) gys[j] = gyp[j];
        }
        for (int base = tid; base < pairs; base += ROUND * nt) {
            int key[2 * ROUND];
#pragma unroll
            for (int r = 0; r < ROUND; ++r) {
                key[2 * r] = key[2 * r + 1] = -1;
                if (base + r * nt < pairs)
                    gpuconv_pool_wide::load_key_pair(ip, base + r * nt, PQ, HW, vec_pairs, &key[2 * r],
                                                     &key[2 * r + 1]);
            }
#pragma unroll
            for (int e = 0; e < 2 * ROUND; ++e)
                if (key[e] >= 0) gpuconv_pool_wide::packed_increment(counters, key[e]);
        }
        cp_async_commit();
        cp_async_wait<0>();
        __syncthreads();

        {  // counters -> starts: thread t rewrites words [t*per, (t + 1)*per)
            const int used = (HW + 1) >> 1;
            const int per = (used + nt - 1) / nt;
            const int w0 = tid * per < used ? tid * per : used;
            const int w1 = w0 + per < used ? w0 + per : used;
            int total = 0;
            for (int w = w0; w < w1; ++w) total += static_cast<int>((counters[w] & 0xffffu) + (counters[w] >> 16));
            int run = gpuconv_pool_wide::block_exclusive_sum(total, warp_sums);
            for (int w = w0; w < w1; ++w) {
                const unsigned c = counters[w];
                const int lo = static_cast<int>(c & 0xffffu), hi = static_cast<int>(c >> 16);
                counters[w] = static_cast<unsigned>(run) | (static_cast<unsigned>(run + lo) << 16);
                run += lo + hi;
            }
        }
        __syncthreads();

        for (int base = tid; base < pairs; base += ROUND * nt) {
            int key[2 * ROUND];
#pragma unroll
            for (int r = 0; r < ROUND; ++r) {
                key[2 * r] = key[2 * r + 1] = -1;
                if (base + r * nt < pairs)
                    gpuconv_pool_wide::load_key_pair(ip, base + r * nt, PQ, HW, vec_pairs, &key[2 * r],
                                                     &key[2 * r + 1]);
            }
#pragma unroll
            for (int r = 0; r < ROUND; ++r) {
#pragma unroll
                for (int e = 0; e < 2; ++e)
                    if (key[2 * r + e] >= 0)
                        slots[gpuconv_pool_wide::packed_increment(counters, key[2 * r + e])] = 2 * (base + r * nt) + e;
            }
        }
        __syncthreads();

        for (int i0 = tid * V; i0 < HW; i0 += nt * V) {
            unsigned w[V / 2];  // ends of elements i0 .. i0 + V - 1
            gpuconv_pool_wide::load_words(counters + i0 / 2, w);
            int begin = i0 > 0 ? static_cast<int>(counters[i0 / 2 - 1] >> 16) : 0;
            Acc out[V];
#pragma unroll
            for (int e = 0; e < V; ++e) {
                const int end = static_cast<int>((w[e >> 1] >> ((e & 1) << 4)) & 0xffffu);
                const int count = i0 + e < HW ? end - begin : 0;
                gpuconv_pool::sort_positions(slots + begin, count);
                Acc sum = Acc(0);
                for (int k = 0; k < count; ++k) sum += Accumulator<T>::load(gys[slots[begin + k]]);
                out[e] = sum;
                begin = end;
            }
            gpuconv_pool_wide::store_run<T>(gxp + i0, out, HW - i0 < V ? HW - i0 : V, vec_gx);
        }
        __syncthreads();  // the next plane reuses the shared arrays
    }
}
