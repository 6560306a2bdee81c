// conv2d forward (fprop), float16, groups == 1, as an implicit GEMM over channels-last (NHWC) copies of the
// operands, on tensor cores. Opt-in (GPUCONV_UNVERIFIED=igemm_nhwc, see gpuconv/_cuda/_igemm_nhwc.py).
//
//   y[n, k, p, q] = bias[k] + sum_{r < R, s < S, c < C} xh[n, h, w, c] * wh[k, r, s, c],
//       h = p*stride_h - pad_h + r*dil_h,  w = q*stride_w - pad_w + s*dil_w  (terms outside the image are 0)
//
// where xh (N, H, W, C) and wh (K, R, S, C) are x and w transposed by nchw_to_nhwc below; y stays NCHW.
//
// GEMM:  M = N*P*Q rows m = (n, p, q);  Ncols = K columns;  Kdim = R*S*C, kd = (r*S + s)*C + c (channels
// fastest). With C % 8 == 0, every run of 8 consecutive kd is 8 consecutive channels of one input pixel (and
// of one filter row): one 16-byte chunk in global memory. A is the virtual im2col matrix of xh, B is wh
// viewed as a row-major K x Kdim matrix (contiguous in kd).
//
// Blocks: blockIdx.x tiles M by BM, blockIdx.y tiles K by BN; 256 threads = 8 warps, float32 accumulators.
// k-tiles of BK = 32 (four 16-byte chunks per tile row), a STAGES-deep cp.async ring in static shared
// memory (STAGES * (BM + BN) * 64 bytes <= 48 KB), one __syncthreads per k-tile.
//
// Copies (global -> shared): thread t owns chunk column kc = t % 4 and tile rows t / 4 + 64 i
// (i < BM / 64 for A, < BN / 64 for B): one cp.async.cg of 16 bytes per owned row and k-tile, with src-size
// 0 (16 zero bytes, nothing read) where the element block is outside the matrix or in the padding.
//   per row, once per block:  A: (n, p, q) -> base offset of pixel (h0, w0) in xh (int64), h0, w0;
//                             B: offset k*Kdim of filter k (int64), and Kdim or 0 (a row past K);
//   per k-tile (the thread's filter position, advanced incrementally, no division in the k loop):
//                             kd, c, s, dr = r*dil_h, ds = s*dil_w, and koff = (dr*W + ds)*C + c.
// Shared memory: each tile stored [row][32 halves] (64-byte rows, k contiguous); the 16-byte chunk kc of
// row r sits at chunk position kc ^ ((r >> 1) & 3) (XOR swizzle): the 8 rows an ldmatrix phase reads (same
// logical chunk, 8 consecutive rows) then fall in 8 distinct 16-byte bank groups, and a warp's cp.async
// stores cover 512 contiguous bytes.
// Fragments: ldmatrix.x4 (not transposed), rows = m for A and n for B, 8 halves = 16 bytes each;
// mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32. Warps WARPS_M x WARPS_N = 4 x 2 when BM >= 2 BN,
// else 2 x 4; warp (wm = warp % WARPS_M, wn = warp / WARPS_M) owns a (BM/WARPS_M) x (BN/WARPS_N) block.
// Epilogue: each accumulator goes straight from registers to y (NCHW) with bias added in float32 and one
// rounding to half; every output element is written by exactly one thread, once (deterministic).
// Bounds: m < M and k < K (epilogue, and zero-filled tile rows); kd < Kdim (a k-tile past the end); and
// 0 <= h < H, 0 <= w < W per chunk; pad_bottom / pad_right only fixed P and Q on the host.
// Requirements (checked on the host): C % 8 == 0, K % 8 == 0, xh and wh 16-byte aligned (every chunk
// then is), M, Kdim, N*H*W, H + pad_h, W + pad_w within int32; tensor offsets are int64.
//
// Kernels:
//   nchw_to_nhwc<T>                                  a (B, C, L) -> (B, L, C) transpose per batch slice b:
//                                                    x -> xh with (N, C, H*W), w -> wh with (K, C, R*S)
//   conv2d_fprop_implicit_gemm_nhwc<__half, BM, BN, STAGES>   (128,128,3), (128,64,4), (64,128,4), (64,64,4)
#include "implicit_gemm_nhwc.cuh"  // copies, ldmatrix, tile layout, warp grid and mma step (shared)

// ----------------------------------------------------------------------------------- layout kernel

// y[b, l, c] = x[b, c, l] for b < B, c < C, l < L: the (C x L) -> (L x C) transpose of every slice b.
// Block (32 x 8 threads as 256, tx = t % 32, ty = t / 32) transposes a 32 (c) x 32 (l) tile through shared
// memory: reads run along l and writes along c, 32 consecutive elements per warp each. blockIdx.x tiles L,
// blockIdx.y tiles C, blockIdx.z strides over b (gridDim.z may be smaller than B). Bounds: c < C, l < L.
template <typename T>
__global__ void __launch_bounds__(256) nchw_to_nhwc(const T* __restrict__ x, T* __restrict__ y, int B, int C,
                                                     int L) {
    __shared__ T tile[32][33];
    const int tx = threadIdx.x % 32, ty = threadIdx.x / 32;
    const int l0 = blockIdx.x * 32, c0 = blockIdx.y * 32;
    for (int b = blockIdx.z; b < B; b += gridDim.z) {
        const long long slice = (long long)b * C * L;
        for (int j = ty; j < 32; j += 8) {
            int c = c0 + j, l = l0 + tx;
            if (c < C && l < L) tile[j][tx] = x[slice + (long long)c * L + l];
        }
        __syncthreads();
        for (int j = ty; j < 32; j += 8) {
            int l = l0 + j, c = c0 + tx;
            if (l < L && c < C) y[slice + (long long)l * C + c] = tile[tx][j];
        }
        __syncthreads();
    }
}

// ------------------------------------------------------------------------------------- fprop kernel

// xh (N, H, W, C), wh (K, R, S, C), bias (K) or a null pointer, y (N, K, P, Q); all contiguous, xh and wh
// 16-byte aligned; then the sizes as int32. See the header comment for the mapping.
template <typename T, int BM, int BN, int STAGES>
__global__ void __launch_bounds__(256, igemm::nhwc::MinBlocks<BM, BN>::value) conv2d_fprop_implicit_gemm_nhwc(
    const T* __restrict__ xh, const T* __restrict__ wh, const T* __restrict__ bias, T* __restrict__ y, int N,
    int C, int H, int W, int K, int R, int S, int P, int Q, int stride_h, int stride_w, int pad_h, int pad_w,
    int dil_h, int dil_w) {
    using namespace igemm;
    using namespace igemm::nhwc;
    static_assert(sizeof(T) == 2, "16-bit elements (float16) only");
    static_assert(BM % ROWS_PER_PASS == 0 && BN % ROWS_PER_PASS == 0 && STAGES >= 2, "tile shape");
    using WG = WarpGrid<BM, BN>;
    constexpr int MT = WG::MT, NT = WG::NT;
    constexpr int A_ROWS = BM / ROWS_PER_PASS, B_ROWS = BN / ROWS_PER_PASS;  // rows copied per thread
    constexpr int A_TILE = BM * BK, B_TILE = BN * BK, STAGE = A_TILE + B_TILE;  // halves
    __shared__ __align__(128) T smem[STAGES * STAGE];

    const int tid = threadIdx.x;
    const int kc = tid % CHUNKS, row_lane = tid / CHUNKS;
    const int M = N * P * Q, Kdim = R * S * C;  // int32: checked on the host
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
    const int64 HWC = (int64)H * W * C;

    // Per-row state of the A rows this thread copies. A row past M gets h0 = INT_MIN: h0 + dr < 0 for every
    // dr >= 0, so its chunks are always zero-filled.
    int64 a_base[A_ROWS];
    int a_h0[A_ROWS], a_w0[A_ROWS];
#pragma unroll
    for (int i = 0; i < A_ROWS; ++i) {
        int m = m0 + row_lane + i * ROWS_PER_PASS;
        if (m < M) {
            int q = m % Q, t = m / Q;
            int p = t % P, n = t / P;
            a_h0[i] = p * stride_h - pad_h;
            a_w0[i] = q * stride_w - pad_w;
            a_base[i] = n * HWC + ((int64)a_h0[i] * W + a_w0[i]) * C;
        } else {
            a_h0[i] = -2147483647 - 1;
            a_w0[i] = 0;
            a_base[i] = 0;
        }
    }
    // Per-row state of the B rows: a filter past K gets the limit 0, so its chunks are zero-filled.
    int64 b_base[B_ROWS];
    int b_limit[B_ROWS];
#pragma unroll
    for (int j = 0; j < B_ROWS; ++j) {
        int k = n0 + row_lane + j * ROWS_PER_PASS;
        bool valid = k < K;
        b_base[j] = valid ? (int64)k * Kdim : 0;
        b_limit[j] = valid ? Kdim : 0;
    }
    // This thread's filter position: kd = (r*S + s)*C + c of its chunk in the current k-tile.
    int kd = kc * 8;
    int c = kd % C, s, dr, ds;
    {
        int rs = kd / C, r = rs / S;
        s = rs - r * S;
        dr = r * dil_h;
        ds = s * dil_w;
    }
    int64 koff = ((int64)dr * W + ds) * C + c;

    // Copies this thread's chunks of the current k-tile into ring slot `slot`, then steps the position to
    // the next k-tile (kd += BK: c += BK, carried into s and r; C may be smaller than BK).
    auto issue = [&](int slot) {
        T* As = smem + slot * STAGE;
        T* Bs = As + A_TILE;
        const bool k_valid = kd < Kdim;
#pragma unroll
        for (int i = 0; i < A_ROWS; ++i) {
            int h = a_h0[i] + dr, w = a_w0[i] + ds;
            bool ok = k_valid && (unsigned)h < (unsigned)H && (unsigned)w < (unsigned)W;
            cp_async_16(As + tile_offset(row_lane + i * ROWS_PER_PASS, kc), ok ? xh + a_base[i] + koff : xh, ok);
        }
#pragma unroll
        for (int j = 0; j < B_ROWS; ++j) {
            bool ok = kd < b_limit[j];
            cp_async_16(Bs + tile_offset(row_lane + j * ROWS_PER_PASS, kc), ok ? wh + b_base[j] + kd : wh, ok);
        }
        kd += BK;
        c += BK;
        while (c >= C) {
            c -= C;
            ds += dil_w;
            if (++s == S) {
                s = 0;
                ds = 0;
                dr += dil_h;
            }
        }
        koff = ((int64)dr * W + ds) * C + c;
    };

    // Warp tiling, accumulators and fragments (WarpMma in implicit_gemm_nhwc.cuh).
    WarpMma<BM, BN> warp_mma(tid);
    auto& acc = warp_mma.acc;
    const int lane = warp_mma.lane, wm0 = warp_mma.wm0, wn0 = warp_mma.wn0;
    auto compute = [&](int slot) {
        const T* As = smem + slot * STAGE;
        warp_mma.step(As, As + A_TILE);
    };
    cp_async_ring<STAGES>((Kdim + BK - 1) / BK, issue, compute);

    // Epilogue: y[n, k, p, q] = acc + bias[k], rounded once. Fragment c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t),
    // c3 (g+8, 2t+1) of each 16 x 8 mma tile.
    const int g = lane / 4, t4 = lane % 4;
    const int PQi = P * Q;
    const int64 PQ = PQi, KPQ = (int64)K * PQ;
    int64 col_off[NT][2];
    float col_bias[NT][2];
    bool col_ok[NT][2];
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            int k = n0 + wn0 + j * 8 + 2 * t4 + e;
            col_ok[j][e] = k < K;
            int kk = col_ok[j][e] ? k : 0;
            col_off[j][e] = kk * PQ;
            col_bias[j][e] = (bias != nullptr && col_ok[j][e]) ? Accumulator<T>::load(bias[kk]) : 0.0f;
        }
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            int m = m0 + wm0 + i * 16 + g + 8 * h;
            if (m >= M) continue;
            int n = m / PQi, pq = m - n * PQi;  // m < M: int32
            T* yrow = y + n * KPQ + pq;
#pragma unroll
            for (int j = 0; j < NT; ++j)
#pragma unroll
                for (int e = 0; e < 2; ++e)
                    if (col_ok[j][e]) yrow[col_off[j][e]] = Accumulator<T>::store(acc[i][j][2 * h + e] + col_bias[j][e]);
        }
}
