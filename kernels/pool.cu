// 2-D max and average pooling over contiguous NCHW tensors: forward, and backward as gathers.
//
// Semantics are PyTorch's (torch.nn.functional.max_pool2d / avg_pool2d and their backward), with the
// geometry gpuconv._params computes: input (N, C, H, W) -> output (N, C, P, Q); window of output (p, q)
// starts at input row p*sH - pH, column q*sW - pW.
//
// Layout of this file: per-element functions (__host__ __device__), then the __global__ kernels, each a
// grid-stride loop over the elements it owns. The file is self-contained (no common.cuh, whose helpers
// are device-only) so that tests/test_cuda_pool_host.py can build it with g++ and run these very kernels
// on the CPU over an emulated grid.
// Every size and flat index is 64-bit (long long): a tensor, and even one plane, may pass 2^31 elements.
// __half loads and stores convert through float; sums accumulate in AccOf<T> (float for __half).
// CuPy compiles with -ftz=true: float32 subnormals count as zero in comparisons and sums.

#include <cuda_fp16.h>

namespace gpuconv_pool {

template <typename T> struct AccOf { typedef T type; };
template <> struct AccOf<__half> { typedef float type; };

template <typename Acc, typename T> __host__ __device__ inline Acc load_as(const T* p, long long i) {
    return static_cast<Acc>(p[i]);
}
template <> __host__ __device__ inline float load_as<float, __half>(const __half* p, long long i) {
    return __half2float(p[i]);
}

template <typename T, typename Acc> __host__ __device__ inline T store_as(Acc v) { return static_cast<T>(v); }
template <> __host__ __device__ inline __half store_as<__half, float>(float v) { return __float2half_rn(v); }

template <typename Acc> __host__ __device__ inline bool is_nan(Acc v) { return v != v; }

template <typename Acc> __host__ __device__ inline Acc minus_infinity();
// NVRTC has no <cmath>: device code builds -inf from its bits; the host harness (nvcc) uses math.h's.
template <> __host__ __device__ inline float minus_infinity<float>() {
#ifdef __CUDA_ARCH__
    return __int_as_float(0xff800000);
#else
    return -HUGE_VALF;
#endif
}
template <> __host__ __device__ inline double minus_infinity<double>() {
#ifdef __CUDA_ARCH__
    return __longlong_as_double(0xfff0000000000000ULL);
#else
    return -HUGE_VAL;
#endif
}

// ------------------------------------------------------------------------------------------ max pool

// One output of max pooling, o = ((n*C + c)*P + p)*Q + q.
// The window rows are ih = p*sH - pH + i*dH, i < kH (columns alike); rows outside [0, H) are padding,
// which counts as -inf. As PyTorch: the first in-bounds element's index is the initial argmax (it stays
// when every value is -inf, and is even kept when no element is in bounds: a dilated window over a
// tiny input), a value wins when `v > max || isnan(v)`, so the last NaN in row-major order wins.
template <typename T>
__host__ __device__ inline void max_pool2d_fprop_one(
    const T* __restrict__ x, T* __restrict__ y, long long* __restrict__ indices, long long o,
    long long H, long long W, long long P, long long Q, long long kH, long long kW, long long sH,
    long long sW, long long pH, long long pW, long long dH, long long dW) {
    typedef typename AccOf<T>::type Acc;
    const long long q = o % Q;
    const long long p = (o / Q) % P;
    const long long plane = o / (P * Q);
    const T* xp = x + plane * H * W;

    long long h0 = p * sH - pH;
    long long w0 = q * sW - pW;
    const long long h1 = h0 + (kH - 1) * dH + 1 < H ? h0 + (kH - 1) * dH + 1 : H;  // exclusive ends
    const long long w1 = w0 + (kW - 1) * dW + 1 < W ? w0 + (kW - 1) * dW + 1 : W;
    if (h0 < 0) h0 += ((-h0 + dH - 1) / dH) * dH;  // first tap at or past row 0
    if (w0 < 0) w0 += ((-w0 + dW - 1) / dW) * dW;

    Acc best = minus_infinity<Acc>();
    long long best_index = h0 * W + w0;
    for (long long h = h0; h < h1; h += dH) {
        for (long long w = w0; w < w1; w += dW) {
            const Acc v = load_as<Acc>(xp, h * W + w);
            if (v > best || is_nan(v)) {
                best = v;
                best_index = h * W + w;
            }
        }
    }
    y[o] = store_as<T, Acc>(best);
    indices[o] = best_index;
}

// Key of output o for the backward sort: ((plane_in_chunk * H*W + indices[o]) * P*Q + j) where
// j = o mod P*Q is o's position in its plane. Keys are distinct, so sorting them (stably or not) gives one
// order: by plane, then by input position, then by output position. Key is int when the chunk's largest
// key fits in 31 bits (the host checks), long long otherwise.
template <typename Key>
__host__ __device__ inline void max_pool2d_bprop_key_one(
    const long long* __restrict__ indices, Key* __restrict__ keys, long long o, long long HW, long long PQ) {
    const long long plane = o / PQ;
    const long long j = o - plane * PQ;
    keys[o] = static_cast<Key>((plane * HW + indices[o]) * PQ + j);
}

// One input element of the max-pool gradient: t = plane*H*W + i (i its flat position in the plane).
// The sorted keys of this plane lie in sorted_keys[plane*PQ, (plane+1)*PQ) (each plane has exactly P*Q
// outputs and keys order by plane first); a binary search finds the first key >= t*PQ, and the run of keys
// k with k / PQ == t names, in increasing output order, the outputs that chose element t. Their gy are
// summed in that order in AccOf<T>: the same sum, bit for bit, on every run. No run: 0.
template <typename T, typename Key>
__host__ __device__ inline void max_pool2d_bprop_gather_one(
    const T* __restrict__ gy, const Key* __restrict__ sorted_keys, T* __restrict__ gx, long long t,
    long long HW, long long PQ) {
    typedef typename AccOf<T>::type Acc;
    const long long plane = t / HW;
    const long long first_key = t * PQ;
    long long lo = plane * PQ, hi = lo + PQ;  // lower_bound over [lo, hi)
    while (lo < hi) {
        const long long mid = lo + (hi - lo) / 2;
        if (static_cast<long long>(sorted_keys[mid]) < first_key) lo = mid + 1; else hi = mid;
    }
    Acc sum = Acc(0);
    const long long end = (plane + 1) * PQ;
    for (long long m = lo; m < end; ++m) {
        const long long key = static_cast<long long>(sorted_keys[m]);
        if (key / PQ != t) break;
        sum += load_as<Acc>(gy, plane * PQ + (key - first_key));
    }
    gx[t] = store_as<T, Acc>(sum);
}

// ------------------------------------------------------------------------------------------ avg pool

// The divisor of output window (p, q), as PyTorch: the window [p*sH - pH, +kH) is first clipped to the
// padded input [-pH, H + pH) (ceil_mode windows may run past it); count_include_pad divides by that
// clipped size, otherwise by the size clipped further to the real input [0, H). divisor_override != 0
// replaces both. h0..h1, w0..w1 return the window clipped to the real input.
__host__ __device__ inline long long avg_pool2d_window(
    long long p, long long q, long long H, long long W, long long kH, long long kW, long long sH,
    long long sW, long long pH, long long pW, bool count_include_pad, long long divisor_override,
    long long* h0, long long* h1, long long* w0, long long* w1) {
    long long hs = p * sH - pH, ws = q * sW - pW;
    long long he = hs + kH < H + pH ? hs + kH : H + pH;
    long long we = ws + kW < W + pW ? ws + kW : W + pW;
    const long long padded_size = (he - hs) * (we - ws);
    hs = hs > 0 ? hs : 0;
    ws = ws > 0 ? ws : 0;
    he = he < H ? he : H;
    we = we < W ? we : W;
    *h0 = hs; *h1 = he; *w0 = ws; *w1 = we;
    if (divisor_override != 0) return divisor_override;
    return count_include_pad ? padded_size : (he - hs) * (we - ws);
}

// One output of average pooling: y[o] = (sum of the window's in-bounds inputs) / divisor, summed row-major
// in AccOf<T>. A window with no in-bounds element gives 0 (PyTorch's rule; _params' output sizes and
// padding <= kernel/2 make it unreachable).
template <typename T>
__host__ __device__ inline void avg_pool2d_fprop_one(
    const T* __restrict__ x, T* __restrict__ y, long long o, long long H, long long W, long long P,
    long long Q, long long kH, long long kW, long long sH, long long sW, long long pH, long long pW,
    bool count_include_pad, long long divisor_override) {
    typedef typename AccOf<T>::type Acc;
    const long long q = o % Q;
    const long long p = (o / Q) % P;
    const long long plane = o / (P * Q);
    const T* xp = x + plane * H * W;
    long long h0, h1, w0, w1;
    const long long divisor = avg_pool2d_window(p, q, H, W, kH, kW, sH, sW, pH, pW, count_include_pad,
                                                divisor_override, &h0, &h1, &w0, &w1);
    if (h0 >= h1 || w0 >= w1) {
        y[o] = store_as<T, Acc>(Acc(0));
        return;
    }
    Acc sum = Acc(0);
    for (long long h = h0; h < h1; ++h)
        for (long long w = w0; w < w1; ++w) sum += load_as<Acc>(xp, h * W + w);
    y[o] = store_as<T, Acc>(sum / static_cast<Acc>(divisor));
}

// One input element of the average-pool gradient: t = ((n*C + c)*H + h)*W + w. The outputs whose window
// holds row h are p in [p_lo, p_hi): p*sH - pH <= h < p*sH - pH + kH, i.e.
//     p_lo = h + pH < kH ? 0 : (h + pH - kH) / sH + 1,     p_hi = min((h + pH) / sH + 1, P)
// (columns alike). gx[t] = sum over them, p then q ascending, of gy[p, q] / divisor(p, q), in AccOf<T>:
// PyTorch's CUDA gather, with no atomics.
template <typename T>
__host__ __device__ inline void avg_pool2d_bprop_one(
    const T* __restrict__ gy, T* __restrict__ gx, long long t, long long H, long long W, long long P,
    long long Q, long long kH, long long kW, long long sH, long long sW, long long pH, long long pW,
    bool count_include_pad, long long divisor_override) {
    typedef typename AccOf<T>::type Acc;
    const long long w = t % W;
    const long long h = (t / W) % H;
    const long long plane = t / (H * W);
    const T* gyp = gy + plane * P * Q;
    const long long hp = h + pH, wp = w + pW;
    const long long p_lo = hp < kH ? 0 : (hp - kH) / sH + 1;
    const long long q_lo = wp < kW ? 0 : (wp - kW) / sW + 1;
    const long long p_hi = hp / sH + 1 < P ? hp / sH + 1 : P;
    const long long q_hi = wp / sW + 1 < Q ? wp / sW + 1 : Q;
    Acc sum = Acc(0);
    for (long long p = p_lo; p < p_hi; ++p) {
        for (long long q = q_lo; q < q_hi; ++q) {
            long long h0, h1, w0, w1;
            const long long divisor = avg_pool2d_window(p, q, H, W, kH, kW, sH, sW, pH, pW,
                                                        count_include_pad, divisor_override, &h0, &h1, &w0, &w1);
            sum += load_as<Acc>(gyp, p * Q + q) / static_cast<Acc>(divisor);
        }
    }
    gx[t] = store_as<T, Acc>(sum);
}

}  // namespace gpuconv_pool

// ---------------------------------------------------------------------------------------------- kernels
// Each kernel gives consecutive elements to consecutive threads (so stores are coalesced, and the window
// loads of neighbouring threads share cache lines) and strides by the whole grid, so any grid size covers
// any element count. The element count is checked against every index; nothing else is read or written
// out of bounds because the per-element functions clip their windows to [0, H) x [0, W).

__device__ inline long long pool_first_element() {
    return static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ inline long long pool_grid_stride() { return static_cast<long long>(gridDim.x) * blockDim.x; }

// max_pool2d_fprop<T>: y (N, C, P, Q) and int64 indices (flat h*W + w in the plane) of x (N, C, H, W).
// Thread: one output o (q fastest) per grid stride, o < total = N*C*P*Q. Formula: max_pool2d_fprop_one.
template <typename T>
__global__ void max_pool2d_fprop(const T* __restrict__ x, T* __restrict__ y, long long* __restrict__ indices,
                                 long long total, long long H, long long W, long long P, long long Q,
                                 long long kH, long long kW, long long sH, long long sW, long long pH,
                                 long long pW, long long dH, long long dW) {
    for (long long o = pool_first_element(); o < total; o += pool_grid_stride())
        gpuconv_pool::max_pool2d_fprop_one(x, y, indices, o, H, W, P, Q, kH, kW, sH, sW, pH, pW, dH, dW);
}

// max_pool2d_bprop_keys<Key>: keys[o] for the outputs o < total of one chunk of planes.
// Thread: one output o per grid stride. Formula: max_pool2d_bprop_key_one.
template <typename Key>
__global__ void max_pool2d_bprop_keys(const long long* __restrict__ indices, Key* __restrict__ keys,
                                      long long total, long long HW, long long PQ) {
    for (long long o = pool_first_element(); o < total; o += pool_grid_stride())
        gpuconv_pool::max_pool2d_bprop_key_one(indices, keys, o, HW, PQ);
}

// max_pool2d_bprop_gather<T, Key>: gx (chunk of planes, H, W) from gy and the chunk's sorted keys.
// Thread: one input element t < total = planes*H*W per grid stride. Formula: max_pool2d_bprop_gather_one.
template <typename T, typename Key>
__global__ void max_pool2d_bprop_gather(const T* __restrict__ gy, const Key* __restrict__ sorted_keys,
                                        T* __restrict__ gx, long long total, long long HW, long long PQ) {
    for (long long t = pool_first_element(); t < total; t += pool_grid_stride())
        gpuconv_pool::max_pool2d_bprop_gather_one(gy, sorted_keys, gx, t, HW, PQ);
}

// avg_pool2d_fprop<T>: y (N, C, P, Q) of x (N, C, H, W). count_include_pad is passed as an int (0 or 1),
// divisor_override as 0 for none.
// Thread: one output o (q fastest) per grid stride, o < total = N*C*P*Q. Formula: avg_pool2d_fprop_one.
template <typename T>
__global__ void avg_pool2d_fprop(const T* __restrict__ x, T* __restrict__ y, long long total, long long H,
                                 long long W, long long P, long long Q, long long kH, long long kW,
                                 long long sH, long long sW, long long pH, long long pW, int count_include_pad,
                                 long long divisor_override) {
    for (long long o = pool_first_element(); o < total; o += pool_grid_stride())
        gpuconv_pool::avg_pool2d_fprop_one(x, y, o, H, W, P, Q, kH, kW, sH, sW, pH, pW, count_include_pad != 0,
                                           divisor_override);
}

// avg_pool2d_bprop<T>: gx (N, C, H, W) of gy (N, C, P, Q), same geometry arguments as avg_pool2d_fprop.
// Thread: one input element t (w fastest) per grid stride, t < total = N*C*H*W. Formula:
// avg_pool2d_bprop_one.
template <typename T>
__global__ void avg_pool2d_bprop(const T* __restrict__ gy, T* __restrict__ gx, long long total, long long H,
                                 long long W, long long P, long long Q, long long kH, long long kW,
                                 long long sH, long long sW, long long pH, long long pW, int count_include_pad,
                                 long long divisor_override) {
    for (long long t = pool_first_element(); t < total; t += pool_grid_stride())
        gpuconv_pool::avg_pool2d_bprop_one(gy, gx, t, H, W, P, Q, kH, kW, sH, sW, pH, pW, count_include_pad != 0,
                                           divisor_override);
}
