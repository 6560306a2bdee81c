// Runs CUDA kernels on the CPU: one std::thread per CUDA thread, one block at a time, __shared__ as
// function statics, __syncthreads as a std::barrier, mma.sync and ldmatrix emulated per warp from the PTX
// fragment tables. Checks index math, bounds, pipelines and fragment layouts; not timing. The 4-byte cp.async
// of the existing kernels runs as a plain synchronous copy (their #else branch); the 16-byte cp.async of the
// NHWC kernel is emulated with deferred or eager landing (below).
#pragma once
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>
#include "cuda_fp16.h"
#include "cuda_bf16.h"
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct dim3 { unsigned x = 1, y = 1, z = 1; };
inline thread_local dim3 threadIdx;
inline dim3 blockIdx, blockDim{256, 1, 1}, gridDim;
inline std::barrier<>* g_barrier;
inline void __syncthreads() { g_barrier->arrive_and_wait(); }
#define __global__
#define __device__
#define __forceinline__ inline
#define __host__
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__
template <class T> inline T __ldg(const T* p) { return *p; }
inline void __trap() { std::abort(); }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
using std::min;

struct WarpFragments { unsigned a[32][4]; unsigned b[32][2]; };
inline WarpFragments g_frag[8];

// d += A*B for one warp's 16 x ks x 8 tile, from the fragment layout of the PTX ISA. ks 16: 16-bit operands,
// float16 or (bf16) bfloat16, whose m16n8k16 fragments have the same layout; ks 8: TF32 in float32 registers.
inline void igemm_emulated_mma(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2], int ks,
                               bool bf16 = false) {
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    std::memcpy(g_frag[warp].a[lane], a, sizeof a);
    std::memcpy(g_frag[warp].b[lane], b, sizeof b);
    __syncthreads();
    float A[16][16] = {}, B[16][8] = {};
    auto value = [bf16](unsigned short u) {
        return bf16 ? __bfloat162float(__ushort_as_bfloat16(u)) : __half2float(__ushort_as_half(u));
    };
    auto lo = [&](unsigned u) { return value((unsigned short)(u & 0xffff)); };
    auto hi = [&](unsigned u) { return value((unsigned short)(u >> 16)); };
    for (int L = 0; L < 32; ++L) {
        int g = L / 4, t = L % 4;
        const unsigned* fa = g_frag[warp].a[L];
        const unsigned* fb = g_frag[warp].b[L];
        if (ks == 16) {
            A[g][2 * t] = lo(fa[0]); A[g][2 * t + 1] = hi(fa[0]);
            A[g + 8][2 * t] = lo(fa[1]); A[g + 8][2 * t + 1] = hi(fa[1]);
            A[g][2 * t + 8] = lo(fa[2]); A[g][2 * t + 9] = hi(fa[2]);
            A[g + 8][2 * t + 8] = lo(fa[3]); A[g + 8][2 * t + 9] = hi(fa[3]);
            B[2 * t][g] = lo(fb[0]); B[2 * t + 1][g] = hi(fb[0]);
            B[2 * t + 8][g] = lo(fb[1]); B[2 * t + 9][g] = hi(fb[1]);
        } else {
            A[g][t] = __uint_as_float(fa[0]); A[g + 8][t] = __uint_as_float(fa[1]);
            A[g][t + 4] = __uint_as_float(fa[2]); A[g + 8][t + 4] = __uint_as_float(fa[3]);
            B[t][g] = __uint_as_float(fb[0]); B[t + 4][g] = __uint_as_float(fb[1]);
        }
    }
    int g = lane / 4, t = lane % 4;
    int rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
    for (int e = 0; e < 4; ++e)
        for (int k = 0; k < ks; ++k) d[e] += A[rows[e]][k] * B[k][cols[e]];
    __syncthreads();
}

// ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 for one warp (PTX ISA, "Warp-level matrix load
// instruction: ldmatrix"): lane L gives the row address of row L % 8 of matrix L / 8; with .trans, register
// i of lane (g = L / 4, t = L % 4) holds (row 2t, column g) low and (row 2t + 1, column g) high of matrix i.
inline const unsigned short* g_ldm_rows[8][32];
inline void igemm_emulated_ldmatrix_x4_trans(unsigned (&r)[4], const void* row_) {
    const unsigned short* row = static_cast<const unsigned short*>(row_);  // 16-bit elements, any type
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (reinterpret_cast<std::uintptr_t>(row) % 16 != 0) std::abort();  // the hardware needs 16-byte rows
    g_ldm_rows[warp][lane] = row;
    __syncthreads();
    int g = lane / 4, t = lane % 4;
    for (int i = 0; i < 4; ++i) {
        const unsigned short* lo = g_ldm_rows[warp][8 * i + 2 * t];
        const unsigned short* hi = g_ldm_rows[warp][8 * i + 2 * t + 1];
        r[i] = (unsigned)lo[g] | ((unsigned)hi[g] << 16);
    }
    __syncthreads();
}

// ldmatrix.sync.aligned.m8n8.x4.shared.b16 (not transposed) for one warp: lane L gives the row address of
// row L % 8 of matrix L / 8; register i of lane (g = L / 4, t = L % 4) holds (row g, column 2t) low and
// (row g, column 2t + 1) high of matrix i.
inline void igemm_emulated_ldmatrix_x4(unsigned (&r)[4], const void* row_) {
    const unsigned short* row = static_cast<const unsigned short*>(row_);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (reinterpret_cast<std::uintptr_t>(row) % 16 != 0) std::abort();  // the hardware needs 16-byte rows
    g_ldm_rows[warp][lane] = row;
    __syncthreads();
    int g = lane / 4, t = lane % 4;
    for (int i = 0; i < 4; ++i) {
        const unsigned short* rp = g_ldm_rows[warp][8 * i + g];
        r[i] = (unsigned)rp[2 * t] | ((unsigned)rp[2 * t + 1] << 16);
    }
    __syncthreads();
}

// cp.async of 16 bytes (cp.async.cg ... 16, src_size): src_size bytes copied, the rest of the 16 zero-filled;
// both addresses must be 16-byte aligned (abort otherwise, as the hardware would fault). Two modes, picked by
// g_cp_async_eager for the whole run:
//   deferred (default): a copy lands only when a cp.async.wait_group retires its group, the latest moment
//     the hardware may deliver it: a read of a tile before its wait sees stale data (an earlier tile's, or
//     zeros), so a missing or too-weak wait fails the comparison;
//   eager: a copy lands at once, the earliest moment: a copy into a slot another warp is still reading
//     (a missing barrier, a wrong ring slot) corrupts that warp's fragments.
// commit_group closes this thread's open group; wait_group(N) lands all but the N newest committed groups.
// The source is read when the copy lands (for the kernels here global memory is read-only, so it does
// not matter). Neither mode models the hardware's freedom to land a copy at any moment between the two.
struct CpAsyncCopy { void* dst; const void* src; int bytes; };
inline bool g_cp_async_eager = false;
inline thread_local std::vector<CpAsyncCopy> t_cp_open;
inline thread_local std::vector<std::vector<CpAsyncCopy>> t_cp_groups;
inline void igemm_cp_async_land(const CpAsyncCopy& c) {
    std::memset(c.dst, 0, 16);
    if (c.bytes) std::memcpy(c.dst, c.src, c.bytes);
}
inline void igemm_emulated_cp_async_16(void* dst, const void* src, int src_bytes) {
    if (reinterpret_cast<std::uintptr_t>(dst) % 16 || (src_bytes && reinterpret_cast<std::uintptr_t>(src) % 16))
        std::abort();
    CpAsyncCopy c{dst, src, src_bytes};
    if (g_cp_async_eager) igemm_cp_async_land(c);
    else t_cp_open.push_back(c);
}
inline void igemm_emulated_cp_async_commit() {
    t_cp_groups.push_back(std::move(t_cp_open));
    t_cp_open.clear();
}
inline void igemm_emulated_cp_async_wait(int n) {
    while ((int)t_cp_groups.size() > n) {
        for (auto& c : t_cp_groups.front()) igemm_cp_async_land(c);
        t_cp_groups.erase(t_cp_groups.begin());
    }
}
// A thread that ends with copies never waited for is a kernel bug (its data would land after exit).
inline void igemm_cp_async_check_drained() {
    if (!t_cp_open.empty() || !t_cp_groups.empty()) {
        std::fprintf(stderr, "cp.async copies still pending at thread exit\n");
        std::abort();
    }
}

// Runs body() as a grid of 256-thread blocks, one block after another.
template <class F> void launch(dim3 grid, F body) {
    gridDim = grid;
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                blockIdx = dim3{x, y, z};
                std::barrier<> bar(256);
                g_barrier = &bar;
                std::vector<std::thread> ts;
                for (unsigned t = 0; t < 256; ++t)
                    ts.emplace_back([&, t] { threadIdx = dim3{t, 0, 0}; body(); igemm_cp_async_check_drained(); });
                for (auto& th : ts) th.join();
            }
}
