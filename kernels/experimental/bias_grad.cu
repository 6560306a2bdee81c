// Bias gradient of a convolution, deterministic (the launcher is gpuconv/_cuda/_bias_grad.py):
//
//     gb[k] = sum over n < N, pq < PQ of gy[n, k, pq]        gy (N, K, P, Q) contiguous, PQ = P*Q, gb (K,)
//
// summed in Accumulator<T>::type (float for __half and float, double for double) and rounded once to T.
//
// The split. Channel k's N*PQ elements, taken in (n, pq) order, are grouped into units of VEC adjacent
// elements (VEC = 1, or 16 / sizeof(T) when PQ % VEC == 0: a unit then never straddles two rows),
// L = PQ / VEC units per row, M = N*L units per channel. They are cut into `splits` contiguous chunks of
// chunk = ceil(M / splits) units: split s owns units [s*chunk, min(M, (s+1)*chunk)) (possibly none).
// One block per item = k*splits + s (a grid-stride loop over the K*splits items).
//
// The thread mapping. Block of B = blockDim.x threads (a power of two, 32 .. BG_THREADS). Thread t takes
// the units s*chunk + t + i*B, i = 0, 1, ... of its split, in increasing i (consecutive threads read
// consecutive units: coalesced), and adds each unit's VEC elements in order to one accumulator that starts
// at 0. BG_UNROLL units are loaded before they are added (independent loads in flight); the additions stay
// in unit order. No division per unit: each thread finds (n, l) of its first unit with one division per
// item, then steps B units at a time (l += B % L, n += B / L, with one carry when l >= L), moving its element
// pointer alongside. A unit is one 16-byte load when gy is 16-byte aligned (then every unit is: its offset
// is a multiple of VEC), VEC element loads otherwise: the same values in the same order.
// The block then adds its B sums with a fixed binary tree in shared memory (bg_block_sum). One split
// (splits == 1): thread 0 writes gb[k] (one launch in all). Several: thread 0 writes the float/double
// partial[k*splits + s], and conv2d_bias_grad_reduce adds channel k's splits (in a fixed order as well,
// same tree) and writes gb[k].
//
// Deterministic: every sum runs in an order fixed by (N, K, PQ, VEC, splits, B), which the launcher derives
// from the shape and dtype only (not from the device); no atomics: the same bits on every call and GPU.
//
// Bounds: a thread loads a unit only while it lies below its split's end and M (per-thread unit count);
// the item loop keeps k < K; shared-memory indices stay below B <= BG_THREADS. Every thread of a block
// runs the same items and every barrier (the tree is outside any per-thread condition). Offsets and unit
// counts are 64-bit (a tensor, or a channel, may pass 2^31 elements); N, K, PQ and splits are int. An empty
// channel (N*PQ == 0) sums to 0; L == 0 is never divided by.
#include "../common.cuh"
#include "../tunables.cuh"  // BG_THREADS, the largest block (shared with the launcher)
// Units each thread loads before adding them: 128 bytes per thread in flight on the 16-byte path.
#define BG_UNROLL 8
// Blocks per SM the register allocation must allow (__launch_bounds__): 4 x 256 threads, 64 registers.
// Without it ptxas keeps 40 registers and sinks the loads to their additions (two 16-byte loads in flight
// per thread instead of eight); with it, 4 x 256 threads x 128 bytes = 128 KB in flight per SM.
#define BG_MIN_BLOCKS 4

// VEC adjacent elements (VEC = 1, or 16 bytes of T), loaded as one access when VEC > 1 and the address is
// 16-byte aligned.
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) bg_unit {
    static_assert(VEC == 1 || VEC * sizeof(T) == 16, "a unit is one element or 16 bytes");
    T v[VEC];
};

template <typename T, int VEC, bool VECTOR>
__device__ __forceinline__ bg_unit<T, VEC> bg_load(const T* p) {
    bg_unit<T, VEC> u;
    if (VECTOR) {
        u = *reinterpret_cast<const bg_unit<T, VEC>*>(p);
    } else {
#pragma unroll
        for (int e = 0; e < VEC; ++e) u.v[e] = p[e];
    }
    return u;
}

// A thread's position in its channel: the element pointer p of unit (n, l), l < L units into row n, and
// the step of B units: step_l = B % L, `step` elements for (B / L rows, step_l units), and `carry` elements
// more when the step crosses a row end (to the start of the channel's next row: K*PQ - L*VEC).
template <typename T, int VEC>
struct BgWalk {
    const T* p;
    int l;
    int L, step_l;
    index_t step, carry;

    __device__ __forceinline__ void next() {
        p += step;
        l += step_l;
        if (l >= L) {
            l -= L;
            p += carry;
        }
    }
};

// The sum, in order, of the `count` units the walk visits (each unit's elements in order), from 0.
template <typename T, int VEC, bool VECTOR>
__device__ __forceinline__ typename Accumulator<T>::type bg_thread_sum(BgWalk<T, VEC> w, index_t count) {
    typedef Accumulator<T> A;
    typename A::type acc = 0;
    index_t i = 0;
    for (; i + BG_UNROLL <= count; i += BG_UNROLL) {
        bg_unit<T, VEC> u[BG_UNROLL];
#pragma unroll
        for (int r = 0; r < BG_UNROLL; ++r) {
            u[r] = bg_load<T, VEC, VECTOR>(w.p);
            w.next();
        }
#pragma unroll
        for (int r = 0; r < BG_UNROLL; ++r)
#pragma unroll
            for (int e = 0; e < VEC; ++e) acc += A::load(u[r].v[e]);
    }
    for (; i < count; ++i) {
        const bg_unit<T, VEC> u = bg_load<T, VEC, VECTOR>(w.p);
        w.next();
#pragma unroll
        for (int e = 0; e < VEC; ++e) acc += A::load(u.v[e]);
    }
    return acc;
}

// The sum of v over the block's B = blockDim.x threads (a power of two <= BG_THREADS) by a fixed tree:
// red[t] = v; then for w = B/2, B/4, .., 1: red[t] += red[t + w] for t < w. Returned in thread 0, 0 in the
// others. Call from every thread. After the last barrier only thread 0 reads red, and only red[0], which no
// other thread writes: the next call needs no barrier before its stores (and racecheck sees no hazard).
template <typename Acc>
__device__ __forceinline__ Acc bg_block_sum(Acc v, Acc* red) {
    const int t = (int)threadIdx.x;
    red[t] = v;
    __syncthreads();
    for (int w = (int)blockDim.x / 2; w > 0; w /= 2) {
        if (t < w) red[t] += red[t + w];
        __syncthreads();
    }
    return t == 0 ? red[0] : Acc(0);
}

// Block item = k*splits + s sums split s of channel k (see the file header); splits == 1: gb[k] = sum as T,
// otherwise partial[item] = sum (the accumulator type; partial may be null when splits == 1).
template <typename T, int VEC>
__global__ void __launch_bounds__(BG_THREADS, BG_MIN_BLOCKS)
conv2d_bias_grad(const T* __restrict__ gy, typename Accumulator<T>::type* __restrict__ partial,
                 T* __restrict__ gb, int N, int K, int PQ, int splits) {
    typedef Accumulator<T> A;
    typedef typename A::type acc_t;
    __shared__ acc_t red[BG_THREADS];
    const int t = (int)threadIdx.x;
    const int B = (int)blockDim.x;
    const int L = PQ / VEC;                              // units per row
    const index_t M = (index_t)N * L;                    // units per channel
    const index_t chunk = (M + splits - 1) / splits;     // units per split
    BgWalk<T, VEC> walk;
    walk.L = L;
    walk.step_l = L > 0 ? B % L : 0;
    walk.step = (index_t)(L > 0 ? B / L : 0) * K * PQ + (index_t)walk.step_l * VEC;
    walk.carry = (index_t)K * PQ - (index_t)L * VEC;
    const bool vector = VEC > 1 && (reinterpret_cast<unsigned long long>(gy) & 15ull) == 0;
    const index_t items = (index_t)K * splits;
    for (index_t item = blockIdx.x; item < items; item += gridDim.x) {
        const int k = (int)(item / splits);
        const index_t s = item - (index_t)k * splits;
        const index_t first = s * chunk + t;             // this thread's first unit
        const index_t end = (s + 1) * chunk < M ? (s + 1) * chunk : M;
        acc_t acc = 0;
        if (first < end) {                               // then L > 0
            const index_t count = (end - first + B - 1) / B;
            const index_t n = first / L;
            walk.l = (int)(first - n * L);
            walk.p = gy + (n * K + k) * PQ + (index_t)walk.l * VEC;
            acc = vector ? bg_thread_sum<T, VEC, true>(walk, count) : bg_thread_sum<T, VEC, false>(walk, count);
        }
        acc = bg_block_sum(acc, red);
        if (t == 0) {
            if (splits == 1)
                gb[k] = A::store(acc);
            else
                partial[item] = acc;
        }
    }
}

// gb[k] = the sum of partial[k*splits + s] over s < splits, as T. One block per k (grid-stride loop over k):
// thread t adds s = t, t + B, ... in order, then the block tree (bg_block_sum). Bounds: s < splits, k < K.
template <typename T>
__global__ void __launch_bounds__(BG_THREADS, BG_MIN_BLOCKS)
conv2d_bias_grad_reduce(const typename Accumulator<T>::type* __restrict__ partial, T* __restrict__ gb, int K,
                        int splits) {
    typedef Accumulator<T> A;
    typedef typename A::type acc_t;
    __shared__ acc_t red[BG_THREADS];
    const int t = (int)threadIdx.x;
    for (index_t k = blockIdx.x; k < K; k += gridDim.x) {
        const acc_t* row = partial + k * splits;
        acc_t acc = 0;
        for (int s = t; s < splits; s += (int)blockDim.x) acc += row[s];
        acc = bg_block_sum(acc, red);
        if (t == 0) gb[k] = A::store(acc);
    }
}
