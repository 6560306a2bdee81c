// Primitives shared by the channels-last (NHWC) float16 implicit-GEMM kernels
// (implicit_gemm_nhwc.cu, implicit_gemm_nhwc_wgrad.cu, implicit_gemm_nhwc_dgrad.cu); their 16-byte copies
// are cp_async.cuh's cp_async_16 / cp_async_commit / cp_async_wait:
//
//   ldmatrix_x4            four 8x8 16-bit matrices, not transposed (the .trans form is ldmatrix_x4_trans in
//                          implicit_gemm.cuh)
//   WarpGrid<BM, BN>       how the 8 warps of a block split a BM x BN tile
//   MinBlocks<BM, BN>      the blocks per SM asked of ptxas
//   BK, tile_offset, mma_k_tile   k-contiguous [row][32 halves] tiles and the warp's mma step over one of
//                          them (fprop, dgrad)
//   WarpMma<BM, BN>        a warp's accumulators, ldmatrix lanes and mma step (fprop, dgrad)
//   cp_async_ring<STAGES>  the k loop of all three: a STAGES-deep ring of tiles in shared memory
//
// Each has a branch for the CPU emulation under tests/host_cuda/implicit_gemm_emulation (IGEMM_HOST_EMULATION)
// and traps elsewhere below sm_80 (the host never launches these kernels there).
#pragma once

#include "../implicit_gemm.cuh"

namespace igemm {
namespace nhwc {

// Four 8x8 matrices of 16-bit elements from shared memory, not transposed: lane L gives the address of row
// L % 8 of matrix L / 8 (16 contiguous bytes, 16-byte aligned); register i of lane (g = L / 4, t = L % 4)
// receives elements (row g, column 2t) low and (row g, column 2t + 1) high of matrix i.
__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const __half* row) {
#if __CUDA_ARCH__ >= 800
    unsigned addr = (unsigned)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
#elif defined(IGEMM_HOST_EMULATION)
    igemm_emulated_ldmatrix_x4(r, row);  // the CPU test harness's warp emulation
#else
    __trap();
#endif
}

// 8 warps in a WarpGrid::M x WarpGrid::N grid (4 x 2 when BM >= 2 BN, else 2 x 4); each warp owns a WM x WN
// block of the BM x BN tile, MT x NT mma tiles of 16 x 8.
template <int BM, int BN> struct WarpGrid {
    static constexpr int M = BM >= 2 * BN ? 4 : 2, N = 8 / M;
    static constexpr int WM = BM / M, WN = BN / N;  // warp tile
    static constexpr int MT = WM / 16, NT = WN / 8;  // mma tiles per warp
    static_assert(WM % 16 == 0 && WN % 16 == 0, "warp tile must hold whole ldmatrix.x4 loads");
};

// Blocks per SM asked of ptxas (__launch_bounds__): registers <= 65536 / (256 * value), i.e. 128 / 80 / 64.
// Shared memory allows them: 2 x 48 KB, 3 x 48 KB, 4 x 32 KB of the H100's 228 KB (A100: 164 KB).
template <int BM, int BN> struct MinBlocks {
    static constexpr int value = BM * BN >= 128 * 128 ? 2 : (BM * BN >= 128 * 64 ? 3 : 4);
};

// ------------------------------------------------------- k-contiguous tiles (the fprop and dgrad kernels)
// Both operand tiles stored [row][BK halves], k contiguous (rows: GEMM rows m for A, columns n for B), so a
// tile row holds CHUNKS 16-byte chunks of 8 consecutive k; each thread copies chunk column t % CHUNKS of rows
// t / CHUNKS + ROWS_PER_PASS * i.
constexpr int BK = 32;             // halves per tile row
constexpr int CHUNKS = BK / 8;     // 16-byte chunks per tile row
constexpr int THREADS = 256;
constexpr int ROWS_PER_PASS = THREADS / CHUNKS;  // 64 tile rows copied per pass of the block

// Offset (in halves) of 16-byte chunk `chunk` of tile row `row`: rows of BK halves, XOR-swizzled chunks
// (chunk kc of row r sits at kc ^ ((r >> 1) & 3): the 8 rows an ldmatrix phase reads fall in 8 distinct
// 16-byte bank groups, and a warp's cp.async stores cover 512 contiguous bytes).
__device__ __forceinline__ int tile_offset(int row, int chunk) {
    return row * BK + ((chunk ^ ((row >> 1) & (CHUNKS - 1))) << 3);
}

// acc += As * Bs^T over one k-tile for this warp's MT x NT mma tiles (m16n8k16, float32 accumulators), from
// k-contiguous tiles through ldmatrix.x4 (not transposed). The lane's ldmatrix rows and chunks:
//   A (16 x 16 at m, k16): matrices (m, k), (m + 8, k), (m, k + 8), (m + 8, k + 8) -> a0..a3, i.e.
//       a_row = wm0 + lane % 8 + 8 * ((lane / 8) % 2), a_chunk = lane / 16;
//   B (two 8-column n-tiles at n, k16): matrices (n, k), (n, k + 8), (n + 8, k), (n + 8, k + 8) -> b[j][0],
//       b[j][1], b[j+1][0], b[j+1][1], i.e. b_row = wn0 + lane % 8 + 8 * (lane / 16), b_chunk = (lane / 8) % 2.
template <int MT, int NT>
__device__ __forceinline__ void mma_k_tile(float (&acc)[MT][NT][4], const __half* As, const __half* Bs, int a_row,
                                           int a_chunk, int b_row, int b_chunk) {
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
        unsigned a[MT][4], b[NT][2];
#pragma unroll
        for (int i = 0; i < MT; ++i) ldmatrix_x4(a[i], As + tile_offset(a_row + i * 16, 2 * kk + a_chunk));
#pragma unroll
        for (int j = 0; j < NT; j += 2) {
            unsigned v[4];
            ldmatrix_x4(v, Bs + tile_offset(b_row + j * 8, 2 * kk + b_chunk));
            b[j][0] = v[0];
            b[j][1] = v[1];
            b[j + 1][0] = v[2];
            b[j + 1][1] = v[3];
        }
#pragma unroll
        for (int i = 0; i < MT; ++i)
#pragma unroll
            for (int j = 0; j < NT; ++j) mma_16x8x16(acc[i][j], a[i], b[j]);
    }
}
// One warp's share of a BM x BN tile on k-contiguous tiles (fprop, dgrad): its position (wm0, wn0) in the
// WarpGrid, its float32 accumulators (zeroed), its ldmatrix rows and chunks (see mma_k_tile), and step(),
// the mma over one k-tile pair.
template <int BM, int BN> struct WarpMma {
    using WG = WarpGrid<BM, BN>;
    int lane, wm0, wn0, a_row, a_chunk, b_row, b_chunk;
    float acc[WG::MT][WG::NT][4];

    __device__ __forceinline__ explicit WarpMma(int tid) {
        const int warp = tid / 32;
        lane = tid % 32;
        wm0 = (warp % WG::M) * WG::WM;
        wn0 = (warp / WG::M) * WG::WN;
#pragma unroll
        for (int i = 0; i < WG::MT; ++i)
#pragma unroll
            for (int j = 0; j < WG::NT; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;
        a_row = wm0 + lane % 8 + 8 * ((lane / 8) % 2);
        a_chunk = lane / 16;
        b_row = wn0 + lane % 8 + 8 * (lane / 16);
        b_chunk = (lane / 8) % 2;
    }
    __device__ __forceinline__ void step(const __half* As, const __half* Bs) {
        mma_k_tile(acc, As, Bs, a_row, a_chunk, b_row, b_chunk);
    }
};

// The k loop of every NHWC kernel: tiles 0 .. STAGES-2 in flight before the loop; in step kt, wait for tile
// kt, barrier (publishes tile kt to every warp and retires the slot read in step kt - 1), refill that slot
// with tile kt + STAGES - 1, multiply tile kt; at the end, no copy left in flight. issue(slot) copies the
// NEXT tile in k order into a slot (the loaders advance their filter / pixel position themselves, so the
// calls come in tile order); compute(slot) multiplies the tile in a slot. Where no tile is left to copy an
// empty group is committed, so that wait_group<STAGES - 2> always means "tile kt has landed".
// Every thread of the block must call it with the same `tiles` (it holds __syncthreads).
template <int STAGES, class Issue, class Compute>
__device__ __forceinline__ void cp_async_ring(int tiles, Issue& issue, Compute& compute) {
#pragma unroll
    for (int st = 0; st < STAGES - 1; ++st) {
        if (st < tiles) issue(st);
        cp_async_commit();
    }
    for (int kt = 0; kt < tiles; ++kt) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        const int next = kt + STAGES - 1;
        if (next < tiles) issue(next % STAGES);
        cp_async_commit();
        compute(kt % STAGES);
    }
    cp_async_wait<0>();
}

}  // namespace nhwc
}  // namespace igemm
