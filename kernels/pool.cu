// 2-D max and average pooling over contiguous NCHW tensors: forward, and backward as gathers.
//
// Semantics are PyTorch's (torch.nn.functional.max_pool2d / avg_pool2d and their backward), with the
// geometry gpuconv._params computes: input (N, C, H, W) -> output (N, C, P, Q); window of output (p, q)
// starts at input row p*sH - pH, column q*sW - pW.
//
// Layout of this file: per-element functions (__host__ __device__), then the __global__ kernels, each a
// grid-stride loop over the elements it owns. The file includes only types.cuh (no common.cuh, whose helpers
// are device-only) so that tests/test_cuda_pool_host.py can build it with g++ and run these very kernels
// on the CPU over an emulated grid.
// Index arithmetic: the forward and avg-backward functions are templated over the index type I, int when
// the launcher has checked that every tensor of the call and every window bound fits in 31 bits (32-bit
// division and multiplication are several times cheaper than 64-bit on the GPU), long long otherwise: a
// tensor, and even one plane, may pass 2^31 elements. The max-pool backward keys are int or long long too.
// Loads and stores convert through Accumulator<T> (types.cuh): sums run in float for the 16-bit types.
// CuPy compiles with -ftz=true: float32 subnormals count as zero in comparisons and sums.

#include "types.cuh"

namespace gpuconv_pool {

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

// One output of max pooling, o = ((n*C + c)*P + p)*Q + q, in index type I (see the file header).
// The window rows are ih = p*sH - pH + i*dH, i < kH (columns alike); rows outside [0, H) are padding,
// which counts as -inf. As PyTorch: the first in-bounds element's index is the initial argmax (it stays
// when every value is -inf, and is even kept when no element is in bounds: a dilated window over a
// tiny input), a value wins when `v > max || isnan(v)`, so the last NaN in row-major order wins.
template <typename T, typename I>
__host__ __device__ inline void max_pool2d_fprop_one(
    const T* __restrict__ x, T* __restrict__ y, long long* __restrict__ indices, I o, I H, I W, I P, I Q,
    I kH, I kW, I sH, I sW, I pH, I pW, I dH, I dW) {
    typedef typename Accumulator<T>::type Acc;
    const I row = o / Q;  // plane*P + p
    const I q = o - row * Q;
    const I plane = row / P;
    const I p = row - plane * P;
    const T* xp = x + plane * H * W;

    I h0 = p * sH - pH;
    I w0 = q * sW - pW;
    const I h1 = h0 + (kH - 1) * dH + 1 < H ? h0 + (kH - 1) * dH + 1 : H;  // exclusive ends
    const I w1 = w0 + (kW - 1) * dW + 1 < W ? w0 + (kW - 1) * dW + 1 : W;
    if (h0 < 0) h0 += ((-h0 + dH - 1) / dH) * dH;  // first tap at or past row 0
    if (w0 < 0) w0 += ((-w0 + dW - 1) / dW) * dW;

    Acc best = minus_infinity<Acc>();
    I best_index = h0 * W + w0;
    for (I h = h0; h < h1; h += dH) {
        const T* xr = xp + h * W;
        for (I w = w0; w < w1; w += dW) {
            const Acc v = Accumulator<T>::load(xr[w]);
            if (v > best || is_nan(v)) {
                best = v;
                best_index = h * W + w;
            }
        }
    }
    y[o] = Accumulator<T>::store(best);
    indices[o] = static_cast<long long>(best_index);
}

// Key of output o for the backward sort (the path for planes too large for max_pool2d_bprop_plane):
// ((plane_in_chunk * (H*W + 1) + i) * P*Q + j) where i = indices[o], or H*W for an index outside [0, H*W)
// (a slot past the plane's elements, which no gather reads: that gradient is dropped, and the key stays
// inside its plane's key range), and j = o mod P*Q is o's position in its plane. Keys are distinct, so
// sorting them (stably or not) gives one order: by plane, then by input position, then by output position;
// each plane's P*Q keys land at sorted positions [plane*P*Q, (plane + 1)*P*Q). Key is int when the chunk's
// largest key fits in 31 bits (the host checks), long long otherwise.
template <typename Key>
__host__ __device__ inline void max_pool2d_bprop_key_one(
    const long long* __restrict__ indices, Key* __restrict__ keys, long long o, long long HW, long long PQ) {
    const long long plane = o / PQ;
    const long long j = o - plane * PQ;
    const long long i = indices[o];
    const long long slot = (0 <= i && i < HW) ? i : HW;
    keys[o] = static_cast<Key>((plane * (HW + 1) + slot) * PQ + j);
}

// One input element of the max-pool gradient from sorted keys: t = plane*H*W + i (i its flat position in
// the plane). The sorted keys of this plane lie in sorted_keys[plane*PQ, (plane+1)*PQ) (each plane has
// exactly P*Q outputs and keys order by plane first); a binary search finds the first key >= row*PQ with
// row = plane*(H*W + 1) + i, and the run of keys k with k / PQ == row names, in increasing output order,
// the outputs that chose element t (k - row*PQ in [0, PQ): their positions, always inside the plane). Their
// gy are summed in that order in Accumulator<T>: the same sum, bit for bit, on every run. No run: 0.
template <typename T, typename Key>
__host__ __device__ inline void max_pool2d_bprop_gather_one(
    const T* __restrict__ gy, const Key* __restrict__ sorted_keys, T* __restrict__ gx, long long t,
    long long HW, long long PQ) {
    typedef typename Accumulator<T>::type Acc;
    const long long plane = t / HW;
    const long long row = t + plane;  // plane*(HW + 1) + (t - plane*HW)
    const long long first_key = row * PQ;
    long long lo = plane * PQ, hi = lo + PQ;  // lower_bound over [lo, hi)
    while (lo < hi) {
        const long long mid = lo + (hi - lo) / 2;
        if (static_cast<long long>(sorted_keys[mid]) < first_key) lo = mid + 1; else hi = mid;
    }
    Acc sum = Acc(0);
    const long long end = (plane + 1) * PQ;
    for (long long m = lo; m < end; ++m) {
        const long long key = static_cast<long long>(sorted_keys[m]);
        if (key / PQ != row) break;
        sum += Accumulator<T>::load(gy[plane * PQ + (key - first_key)]);
    }
    gx[t] = Accumulator<T>::store(sum);
}

// Sift-down of a max-heap over a[0, n) from root r (heapsort's step).
__host__ __device__ inline void sift_down(int* a, int r, int n) {
    for (;;) {
        int c = 2 * r + 1;
        if (c >= n) return;
        if (c + 1 < n && a[c + 1] > a[c]) ++c;
        if (a[r] >= a[c]) return;
        const int tmp = a[r]; a[r] = a[c]; a[c] = tmp;
        r = c;
    }
}

// Sorts pos[0, count) ascending in place: insertion sort for the usual handful (a max-pool input element
// is chosen by at most ceil(kH/sH)*ceil(kW/sW) windows), heapsort beyond, so that made-up indices that
// send thousands of outputs to one element cost count*log(count), not count^2.
__host__ __device__ inline void sort_positions(int* pos, int count) {
    if (count <= 16) {
        for (int k = 1; k < count; ++k) {
            const int v = pos[k];
            int m = k;
            for (; m > 0 && pos[m - 1] > v; --m) pos[m] = pos[m - 1];
            pos[m] = v;
        }
        return;
    }
    for (int r = count / 2 - 1; r >= 0; --r) sift_down(pos, r, count);
    for (int end = count - 1; end > 0; --end) {
        const int tmp = pos[0]; pos[0] = pos[end]; pos[end] = tmp;
        sift_down(pos, 0, end);
    }
}

// Exclusive prefix sum, in place, of a[0, n) (n >= 0) by the whole block; partial holds blockDim.x ints.
// Thread t owns the contiguous segment [t*L, min((t+1)*L, n)), L = ceil(n / blockDim.x): it sums the
// segment, the block scans the segment sums (Hillis-Steele over partial, log2(blockDim.x) steps), and
// the thread rewrites its segment. Integer sums: the result does not depend on any ordering. Every
// thread of the block must call it (it holds __syncthreads); it returns after a final barrier.
__device__ inline void block_exclusive_scan(int* a, int n, int* partial) {
    const int tid = threadIdx.x, nt = blockDim.x;
    const int per = (n + nt - 1) / nt;
    const int s0 = tid * per < n ? tid * per : n;
    const int s1 = s0 + per < n ? s0 + per : n;
    int sum = 0;
    for (int i = s0; i < s1; ++i) sum += a[i];
    partial[tid] = sum;
    __syncthreads();
    for (int d = 1; d < nt; d <<= 1) {
        const int v = tid >= d ? partial[tid - d] : 0;
        __syncthreads();
        partial[tid] += v;
        __syncthreads();
    }
    int run = tid > 0 ? partial[tid - 1] : 0;  // partial now holds inclusive sums of segment sums
    for (int i = s0; i < s1; ++i) {
        const int c = a[i];
        a[i] = run;
        run += c;
    }
    __syncthreads();
}

// ------------------------------------------------------------------------------------------ avg pool

// The divisor of output window (p, q), as PyTorch: the window [p*sH - pH, +kH) is first clipped to the
// padded input [-pH, H + pH) (ceil_mode windows may run past it); count_include_pad divides by that
// clipped size, otherwise by the size clipped further to the real input [0, H). divisor_override != 0
// replaces both. h0..h1, w0..w1 return the window clipped to the real input.
template <typename I>
__host__ __device__ inline I avg_pool2d_window(I p, I q, I H, I W, I kH, I kW, I sH, I sW, I pH, I pW,
                                               bool count_include_pad, I divisor_override, I* h0, I* h1,
                                               I* w0, I* w1) {
    I hs = p * sH - pH, ws = q * sW - pW;
    I he = hs + kH < H + pH ? hs + kH : H + pH;
    I we = ws + kW < W + pW ? ws + kW : W + pW;
    const I padded_size = (he - hs) * (we - ws);
    hs = hs > 0 ? hs : 0;
    ws = ws > 0 ? ws : 0;
    he = he < H ? he : H;
    we = we < W ? we : W;
    *h0 = hs; *h1 = he; *w0 = ws; *w1 = we;
    if (divisor_override != 0) return divisor_override;
    return count_include_pad ? padded_size : (he - hs) * (we - ws);
}

// One output of average pooling: y[o] = (sum of the window's in-bounds inputs) / divisor, summed row-major
// in Accumulator<T>. A window with no in-bounds element gives 0 (PyTorch's rule; _params' output sizes and
// padding <= kernel/2 make it unreachable).
template <typename T, typename I>
__host__ __device__ inline void avg_pool2d_fprop_one(
    const T* __restrict__ x, T* __restrict__ y, I o, I H, I W, I P, I Q, I kH, I kW, I sH, I sW, I pH, I pW,
    bool count_include_pad, I divisor_override) {
    typedef typename Accumulator<T>::type Acc;
    const I row = o / Q;  // plane*P + p
    const I q = o - row * Q;
    const I plane = row / P;
    const I p = row - plane * P;
    const T* xp = x + plane * H * W;
    I h0, h1, w0, w1;
    const I divisor = avg_pool2d_window(p, q, H, W, kH, kW, sH, sW, pH, pW, count_include_pad, divisor_override,
                                        &h0, &h1, &w0, &w1);
    if (h0 >= h1 || w0 >= w1) {
        y[o] = Accumulator<T>::store(Acc(0));
        return;
    }
    Acc sum = Acc(0);
    for (I h = h0; h < h1; ++h) {
        const T* xr = xp + h * W;
        for (I w = w0; w < w1; ++w) sum += Accumulator<T>::load(xr[w]);
    }
    y[o] = Accumulator<T>::store(sum / static_cast<Acc>(divisor));
}

// One input element of the average-pool gradient: t = ((n*C + c)*H + h)*W + w. The outputs whose window
// holds row h are p in [p_lo, p_hi): p*sH - pH <= h < p*sH - pH + kH, i.e.
//     p_lo = h + pH < kH ? 0 : (h + pH - kH) / sH + 1,     p_hi = min((h + pH) / sH + 1, P)
// (columns alike). gx[t] = sum over them, p then q ascending, of gy[p, q] / divisor(p, q), in Accumulator<T>:
// PyTorch's CUDA gather, with no atomics.
template <typename T, typename I>
__host__ __device__ inline void avg_pool2d_bprop_one(
    const T* __restrict__ gy, T* __restrict__ gx, I t, I H, I W, I P, I Q, I kH, I kW, I sH, I sW, I pH, I pW,
    bool count_include_pad, I divisor_override) {
    typedef typename Accumulator<T>::type Acc;
    const I row = t / W;  // plane*H + h
    const I w = t - row * W;
    const I plane = row / H;
    const I h = row - plane * H;
    const T* gyp = gy + plane * P * Q;
    const I hp = h + pH, wp = w + pW;
    const I p_lo = hp < kH ? 0 : (hp - kH) / sH + 1;
    const I q_lo = wp < kW ? 0 : (wp - kW) / sW + 1;
    const I p_hi = hp / sH + 1 < P ? hp / sH + 1 : P;
    const I q_hi = wp / sW + 1 < Q ? wp / sW + 1 : Q;
    Acc sum = Acc(0);
    for (I p = p_lo; p < p_hi; ++p) {
        for (I q = q_lo; q < q_hi; ++q) {
            I h0, h1, w0, w1;
            const I divisor = avg_pool2d_window(p, q, H, W, kH, kW, sH, sW, pH, pW, count_include_pad,
                                                divisor_override, &h0, &h1, &w0, &w1);
            sum += Accumulator<T>::load(gyp[p * Q + q]) / static_cast<Acc>(divisor);
        }
    }
    gx[t] = Accumulator<T>::store(sum);
}

}  // namespace gpuconv_pool

// ---------------------------------------------------------------------------------------------- kernels
// The elementwise kernels give consecutive elements to consecutive threads (so stores are coalesced, and
// the window loads of neighbouring threads share cache lines) and stride by the whole grid, so any grid
// size covers any element count. The element count is checked against every index; nothing else is read
// or written out of bounds because the per-element functions clip their windows to [0, H) x [0, W).

template <typename I> __device__ inline I pool_first_element() {
    return static_cast<I>(blockIdx.x) * static_cast<I>(blockDim.x) + static_cast<I>(threadIdx.x);
}
template <typename I> __device__ inline I pool_grid_stride() {
    return static_cast<I>(gridDim.x) * static_cast<I>(blockDim.x);
}

// The dynamic shared memory of a block (the launch's shared_mem bytes). The host test harness defines
// this macro first, to hand each emulated block a buffer of its own.
#ifndef GPUCONV_POOL_DYNAMIC_SMEM
#define GPUCONV_POOL_DYNAMIC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]
#endif

// max_pool2d_fprop<T, I>: y (N, C, P, Q) and int64 indices (flat h*W + w in the plane) of x (N, C, H, W).
// Thread: one output o (q fastest) per grid stride, o < total = N*C*P*Q. Formula: max_pool2d_fprop_one.
// I is int when total, N*C*H*W and (H + 2pH + kH*dH) * (W + 2pW + kW*dW) fit in 31 bits (the host
// checks; grid-stride steps then stay below 2^31 too, as the grid has at most 2^28 threads and the loop
// stops at total), long long otherwise.
template <typename T, typename I>
__global__ void max_pool2d_fprop(const T* __restrict__ x, T* __restrict__ y, long long* __restrict__ indices,
                                 I total, I H, I W, I P, I Q, I kH, I kW, I sH, I sW, I pH, I pW, I dH, I dW) {
    for (long long o = pool_first_element<long long>(); o < total; o += pool_grid_stride<long long>())
        gpuconv_pool::max_pool2d_fprop_one<T, I>(x, y, indices, static_cast<I>(o), H, W, P, Q, kH, kW, sH, sW,
                                                 pH, pW, dH, dW);
}

// max_pool2d_bprop_plane<T>: gx of a max pool, one (n, c) plane per block (grid-stride over planes), for
// planes small enough that H*W + P*Q + blockDim.x ints fit in shared memory (the host checks, and that
// H*W and P*Q fit in 31 bits). Formula: gx[plane][i] = sum over the outputs j of the plane with
// indices[plane][j] == i, in increasing j, of gy[plane][j] (Accumulator<T>); 0 where no output chose i. Indices
// outside [0, H*W) are ignored. Deterministic, with integer atomics only (a counting sort):
//   1. count[i] = number of outputs that chose i        (shared atomicAdd; threads stride over j)
//   2. start[i] = exclusive prefix sum of count         (block_exclusive_scan)
//   3. slots[atomicAdd(&start[i], 1)] = j for every j   (the order within one i's slots is arbitrary;
//      afterwards start[i] holds the end of i's range, which is the start of i + 1's)
//   4. thread per i (threads stride over i): sort its slots [start[i-1], start[i]) ascending
//      (sort_positions), sum gy over them in that order, write gx[i] (every element, coalesced).
// Shared memory: offsets[H*W], slots[P*Q], partial[blockDim.x] (int). Global reads: indices (twice, the
// second time from cache) and gy once; writes: gx once.
template <typename T>
__global__ void max_pool2d_bprop_plane(const T* __restrict__ gy, const long long* __restrict__ indices,
                                       T* __restrict__ gx, long long planes, int HW, int PQ) {
    typedef typename Accumulator<T>::type Acc;
    GPUCONV_POOL_DYNAMIC_SMEM(smem);
    int* offsets = reinterpret_cast<int*>(smem);
    int* slots = offsets + HW;
    int* partial = slots + PQ;
    const int tid = threadIdx.x, nt = blockDim.x;
    for (long long plane = blockIdx.x; plane < planes; plane += gridDim.x) {
        const long long* ip = indices + plane * PQ;
        const T* gyp = gy + plane * PQ;
        T* gxp = gx + plane * HW;
        for (int i = tid; i < HW; i += nt) offsets[i] = 0;
        __syncthreads();
        for (int j = tid; j < PQ; j += nt) {
            const long long i = ip[j];
            if (0 <= i && i < HW) atomicAdd(&offsets[i], 1);
        }
        __syncthreads();
        gpuconv_pool::block_exclusive_scan(offsets, HW, partial);
        for (int j = tid; j < PQ; j += nt) {
            const long long i = ip[j];
            if (0 <= i && i < HW) slots[atomicAdd(&offsets[i], 1)] = j;
        }
        __syncthreads();
        for (int i = tid; i < HW; i += nt) {
            const int begin = i > 0 ? offsets[i - 1] : 0;
            const int count = offsets[i] - begin;
            gpuconv_pool::sort_positions(slots + begin, count);
            Acc sum = Acc(0);
            for (int k = 0; k < count; ++k) sum += Accumulator<T>::load(gyp[slots[begin + k]]);
            gxp[i] = Accumulator<T>::store(sum);
        }
        __syncthreads();  // the next plane reuses the shared arrays
    }
}

// max_pool2d_bprop_keys<Key>: keys[o] for the outputs o < total of one chunk of planes (the sort path,
// for planes too large for max_pool2d_bprop_plane).
// Thread: one output o per grid stride. Formula: max_pool2d_bprop_key_one.
template <typename Key>
__global__ void max_pool2d_bprop_keys(const long long* __restrict__ indices, Key* __restrict__ keys,
                                      long long total, long long HW, long long PQ) {
    for (long long o = pool_first_element<long long>(); o < total; o += pool_grid_stride<long long>())
        gpuconv_pool::max_pool2d_bprop_key_one(indices, keys, o, HW, PQ);
}

// max_pool2d_bprop_gather<T, Key>: gx (chunk of planes, H, W) from gy and the chunk's sorted keys.
// Thread: one input element t < total = planes*H*W per grid stride. Formula: max_pool2d_bprop_gather_one.
template <typename T, typename Key>
__global__ void max_pool2d_bprop_gather(const T* __restrict__ gy, const Key* __restrict__ sorted_keys,
                                        T* __restrict__ gx, long long total, long long HW, long long PQ) {
    for (long long t = pool_first_element<long long>(); t < total; t += pool_grid_stride<long long>())
        gpuconv_pool::max_pool2d_bprop_gather_one(gy, sorted_keys, gx, t, HW, PQ);
}

// avg_pool2d_fprop<T, I>: y (N, C, P, Q) of x (N, C, H, W). count_include_pad is passed as an int (0 or 1),
// divisor_override as 0 for none. I as in max_pool2d_fprop (the host also checks divisor_override).
// Thread: one output o (q fastest) per grid stride, o < total = N*C*P*Q. Formula: avg_pool2d_fprop_one.
template <typename T, typename I>
__global__ void avg_pool2d_fprop(const T* __restrict__ x, T* __restrict__ y, I total, I H, I W, I P, I Q, I kH,
                                 I kW, I sH, I sW, I pH, I pW, int count_include_pad, I divisor_override) {
    for (long long o = pool_first_element<long long>(); o < total; o += pool_grid_stride<long long>())
        gpuconv_pool::avg_pool2d_fprop_one<T, I>(x, y, static_cast<I>(o), H, W, P, Q, kH, kW, sH, sW, pH, pW,
                                                 count_include_pad != 0, divisor_override);
}

// avg_pool2d_bprop<T, I>: gx (N, C, H, W) of gy (N, C, P, Q), same geometry arguments as avg_pool2d_fprop.
// Thread: one input element t (w fastest) per grid stride, t < total = N*C*H*W. Formula:
// avg_pool2d_bprop_one.
template <typename T, typename I>
__global__ void avg_pool2d_bprop(const T* __restrict__ gy, T* __restrict__ gx, I total, I H, I W, I P, I Q, I kH,
                                 I kW, I sH, I sW, I pH, I pW, int count_include_pad, I divisor_override) {
    for (long long t = pool_first_element<long long>(); t < total; t += pool_grid_stride<long long>())
        gpuconv_pool::avg_pool2d_bprop_one<T, I>(gy, gx, static_cast<I>(t), H, W, P, Q, kH, kW, sH, sW, pH, pW,
                                                 count_include_pad != 0, divisor_override);
}
