// conv2d weight gradient (wgrad), float16, groups == 1, as an implicit GEMM over channels-last (NHWC) copies
// of the operands, on tensor cores, with a deterministic split of the reduction. Opt-in
// (GPUCONV_UNVERIFIED=nhwc_wgrad, see gpuconv/_cuda/_igemm_nhwc_wgrad.py).
//
//   gw[k, c, r, s] = sum_{n < N, p < P, q < Q} gyh[n, p, q, k] * xh[n, h, w, c],
//       h = p*stride_h - pad_h + r*dil_h,  w = q*stride_w - pad_w + s*dil_w  (terms outside the image are 0)
//
// where xh (N, H, W, C) and gyh (N, P, Q, K) are x and gy transposed by nchw_to_nhwc (implicit_gemm_nhwc.cu).
//
// GEMM:  M = K rows (filters k);  Ncols = R*S*C columns j = (r*S + s)*C + c (channels fastest);
//        reduction over kd = (n*P + p)*Q + q < N*P*Q (output pixels).
// A[k, kd] = gyh[kd, k]: for a fixed kd, 8 consecutive k are one 16-byte chunk (K % 8 == 0).
// B[kd, j] = xh[n, h, w, c]: for a fixed kd and tap (r, s), 8 consecutive c are one 16-byte chunk (C % 8 == 0).
// Both tiles are stored k-major in shared memory, [BK pixels][BM (resp. BN) halves], and reach the mma.sync
// m16n8k16 fragments through ldmatrix.x4.trans.
//
// Split-K: the reduction is cut into `splits` chunks of k_chunk pixels (a multiple of BK); split
// sp = blockIdx.z covers kd in [sp*k_chunk, min((sp+1)*k_chunk, N*P*Q)) and writes its float32 partial sums to
// workspace[sp, k, j] (j in GEMM column order (r, s, c)). conv2d_wgrad_nhwc_reduce then adds the splits in
// order sp = 0, 1, ... and writes gw (K, C, R, S): no atomics, bitwise reproducible for any launch order.
//
// Blocks: blockIdx.x tiles K by BM, blockIdx.y tiles R*S*C by BN, blockIdx.z is the split; 256 threads = 8
// warps, float32 accumulators; k-tiles of BK = 32 pixels in a STAGES-deep cp.async ring in static shared
// memory (STAGES * 32 * (BM + BN) * 2 bytes <= 48 KB), one __syncthreads per k-tile.
// Copies (global -> shared), one cp.async.cg of 16 bytes each, zero-filled (src-size 0, nothing read) where
// the chunk is outside the matrix or in the padding:
//   A: thread t owns chunk column t % (BM/8), i.e. filters k = m0 + 8*(t % (BM/8)) .. +7, and tile rows
//      t / (BM/8) + i * 256/(BM/8); source gyh + kd*K + k (int64).
//   B: thread t owns chunk column t % (BN/8), i.e. GEMM column j = n0 + 8*(t % (BN/8)): its tap (r, s) and
//      channel c are fixed for the whole block (computed once, one division); tile rows t / (BN/8) + i *
//      256/(BN/8), whose pixel (n, p, q) is decoded once per block and then advanced by BK per k-tile with
//      two conditional carries (no division in the k loop); source xh + ((n*H + h)*W + w)*C + c (int64).
// Shared memory: tile row kd holds ROW = BM (or BN) halves, ROW/8 chunks; logical chunk ch of row kd sits at
// ch ^ (kd & 7) (XOR swizzle): an ldmatrix phase reads one chunk of 8 consecutive rows, which then fall in
// 8 distinct 16-byte bank groups.
// Fragments: A (16 x 16 at k-row kk, filter m): matrices (m, kk), (m + 8, kk), (m, kk + 8), (m + 8, kk + 8)
// -> a0..a3; B (two n-tiles at column n): (n, kk), (n, kk + 8), (n + 8, kk), (n + 8, kk + 8) -> b[j][0],
// b[j][1], b[j+1][0], b[j+1][1]; with .trans, register e of lane (g, t) holds (kd 2t, col g), (kd 2t+1, col g).
// Warps as WarpGrid<BM, BN> (implicit_gemm_nhwc.cuh).
// Epilogue: each accumulator pair (c0, c1) / (c2, c3) of a 16 x 8 mma tile goes to workspace as one float2
// (8-byte aligned: j even); every workspace element of the split is written by exactly one thread, once.
// Bounds: k < K (A chunks, epilogue); j < R*S*C (B chunks, epilogue); kd < split end (both); 0 <= h < H,
// 0 <= w < W per B chunk. Requirements (checked on the host): C % 8 == 0, K % 8 == 0, xh and gyh 16-byte
// aligned, N*P*Q (+ one k-tile), R*S*C, K, H + pad_h, W + pad_w within int32; tensor offsets are int64.
//
// Kernels:
//   conv2d_wgrad_implicit_gemm_nhwc<__half, BM, BN, STAGES>   (128,128,3), (128,64,4), (64,128,4), (64,64,4)
//   conv2d_wgrad_nhwc_reduce<__half>                          workspace (splits, K, R*S, C) -> gw (K, C, R, S)
#include "implicit_gemm_nhwc.cuh"

namespace igemm {
namespace nhwc_wgrad {

constexpr int BK = 32;        // pixels (reduction steps) per k-tile: the tile rows
static_assert(BK % 16 == 0, "a k-tile holds whole m16n8k16 steps");
constexpr int THREADS = 256;
static_assert(THREADS == 8 * 32, "8 warps, as WarpGrid splits a tile");

// Offset (in halves) of 16-byte chunk `chunk` of tile row `row`, rows of ROW halves (ROW >= 64: at least 8
// chunks, so the swizzle stays inside the row).
template <int ROW> __device__ __forceinline__ int tile_offset(int row, int chunk) {
    static_assert(ROW % 64 == 0, "rows of at least 8 chunks");
    return row * ROW + ((chunk ^ (row & 7)) << 3);
}

// A pixel (n, p, q) of the reduction, advanced by a fixed number of pixels (BK) with two carries.
struct Pixel {
    int n, p, q;
};

__device__ __forceinline__ Pixel decode_pixel(int kd, int P, int Q) {
    int q = kd % Q, t = kd / Q;
    return Pixel{t / P, t % P, q};
}

// step = (dn, dp, dq), the decomposition of BK with dp < P, dq < Q: q + dq < 2Q and p + dp + 1 < 2P, so one
// subtraction each restores the ranges.
__device__ __forceinline__ void advance_pixel(Pixel& x, const Pixel& step, int P, int Q) {
    x.q += step.q;
    if (x.q >= Q) {
        x.q -= Q;
        ++x.p;
    }
    x.p += step.p;
    if (x.p >= P) {
        x.p -= P;
        ++x.n;
    }
    x.n += step.n;
}

}  // namespace nhwc_wgrad
}  // namespace igemm

// xh (N, H, W, C), gyh (N, P, Q, K), both contiguous and 16-byte aligned; workspace float32 (splits, K, R*S*C);
// the sizes as int32; splits and k_chunk (a multiple of BK, splits = ceil(N*P*Q / k_chunk)). See the header
// comment for the mapping.
template <typename T, int BM, int BN, int STAGES>
__global__ void __launch_bounds__(256, igemm::nhwc::MinBlocks<BM, BN>::value) conv2d_wgrad_implicit_gemm_nhwc(
    const T* __restrict__ xh, const T* __restrict__ gyh, float* __restrict__ workspace, int N, int C, int H, int W,
    int K, int R, int S, int P, int Q, int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w,
    int splits, int k_chunk) {
    using namespace igemm;
    using namespace igemm::nhwc_wgrad;
    using nhwc::cp_async_ring;
    static_assert(sizeof(T) == 2, "16-bit elements (float16) only");
    using WG = nhwc::WarpGrid<BM, BN>;
    constexpr int MT = WG::MT, NT = WG::NT;
    constexpr int A_CHUNKS = BM / 8, B_CHUNKS = BN / 8;  // 16-byte chunks per tile row
    constexpr int A_RPP = THREADS / A_CHUNKS, B_RPP = THREADS / B_CHUNKS;  // tile rows per pass of the block
    constexpr int A_PASSES = BK / A_RPP, B_PASSES = BK / B_RPP;
    static_assert(A_PASSES * A_RPP == BK && B_PASSES * B_RPP == BK && STAGES >= 2, "tile shape");
    constexpr int A_TILE = BK * BM, B_TILE = BK * BN, STAGE = A_TILE + B_TILE;  // halves
    __shared__ __align__(128) T smem[STAGES * STAGE];

    const int tid = threadIdx.x;
    const int Kred = N * P * Q, RSC = R * S * C;  // int32: checked on the host
    const int k_begin = min((int)blockIdx.z * k_chunk, Kred);
    const int k_end = k_begin + min(k_chunk, Kred - k_begin);
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;

    // A: this thread's 8 filters, and the tile rows it copies.
    const int a_col = tid % A_CHUNKS, a_row = tid / A_CHUNKS;
    const int a_k = m0 + a_col * 8;
    const bool a_ok = a_k < K;  // K % 8 == 0: the chunk is wholly in or out

    // B: this thread's GEMM column chunk j = (r, s, c..c+7), fixed for the block; padding folded into dr, ds.
    const int b_col = tid % B_CHUNKS, b_row = tid / B_CHUNKS;
    const int j = n0 + b_col * 8;
    const bool b_ok = j < RSC;  // RSC % 8 == 0
    int c = 0, dr = 0, ds = 0;
    if (b_ok) {
        int rs = j / C, r = rs / S;
        c = j - rs * C;
        dr = r * dil_h - pad_h;
        ds = (rs - r * S) * dil_w - pad_w;
    }
    // The pixels of this thread's B rows in the next k-tile to copy, and the step of BK pixels.
    const int PQ = P * Q;
    const Pixel step{BK / PQ, (BK % PQ) / Q, BK % Q};
    Pixel pix[B_PASSES];
#pragma unroll
    for (int i = 0; i < B_PASSES; ++i) pix[i] = decode_pixel(k_begin + b_row + i * B_RPP, P, Q);
    int k0 = k_begin;  // first pixel of the next k-tile to copy

    auto issue = [&](int slot) {
        T* As = smem + slot * STAGE;
        T* Bs = As + A_TILE;
#pragma unroll
        for (int i = 0; i < A_PASSES; ++i) {
            int row = a_row + i * A_RPP, kd = k0 + row;
            bool ok = a_ok && kd < k_end;
            cp_async_16(As + tile_offset<BM>(row, a_col), ok ? gyh + ((int64)kd * K + a_k) : gyh, ok);
        }
#pragma unroll
        for (int i = 0; i < B_PASSES; ++i) {
            int row = b_row + i * B_RPP, kd = k0 + row;
            int h = pix[i].p * stride_h + dr, w = pix[i].q * stride_w + ds;
            bool ok = b_ok && kd < k_end && (unsigned)h < (unsigned)H && (unsigned)w < (unsigned)W;
            const T* src = xh + ((((int64)pix[i].n * H + h) * W + w) * C + c);
            cp_async_16(Bs + tile_offset<BN>(row, b_col), ok ? src : xh, ok);
            advance_pixel(pix[i], step, P, Q);
        }
        k0 += BK;
    };

    // Warp tiling and fragments.
    const int warp = tid / 32, lane = tid % 32;
    const int wm0 = (warp % WG::M) * WG::WM, wn0 = (warp / WG::M) * WG::WN;
    float acc[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int jj = 0; jj < NT; ++jj)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][jj][e] = 0.0f;

    // ldmatrix row (tile row kd) and chunk (column / 8) of this lane, for matrix L / 8 (see the header).
    const int a_lrow = lane % 8 + 8 * (lane / 16), a_lchunk = (wm0 + 8 * ((lane / 8) % 2)) / 8;
    const int b_lrow = lane % 8 + 8 * ((lane / 8) % 2), b_lchunk = (wn0 + 8 * (lane / 16)) / 8;

    auto compute = [&](int slot) {
        const T* As = smem + slot * STAGE;
        const T* Bs = As + A_TILE;
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            unsigned a[MT][4], b[NT][2];
#pragma unroll
            for (int i = 0; i < MT; ++i) ldmatrix_x4_trans(a[i], As + tile_offset<BM>(kk + a_lrow, a_lchunk + 2 * i));
#pragma unroll
            for (int jj = 0; jj < NT; jj += 2) {
                unsigned v[4];
                ldmatrix_x4_trans(v, Bs + tile_offset<BN>(kk + b_lrow, b_lchunk + jj));
                b[jj][0] = v[0];
                b[jj][1] = v[1];
                b[jj + 1][0] = v[2];
                b[jj + 1][1] = v[3];
            }
#pragma unroll
            for (int i = 0; i < MT; ++i)
#pragma unroll
                for (int jj = 0; jj < NT; ++jj) mma_16x8x16(acc[i][jj], a[i], b[jj]);
        }
    };

    cp_async_ring<STAGES>((k_end - k_begin + BK - 1) / BK, issue, compute);

    // Epilogue: workspace[sp, k, j] = acc (float32). Fragment c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t),
    // c3 (g+8, 2t+1) of each 16 x 8 mma tile.
    const int g = lane / 4, t4 = lane % 4;
    float* split_ws = workspace + (int64)blockIdx.z * K * RSC;
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            int k = m0 + wm0 + i * 16 + g + 8 * h;
            if (k >= K) continue;
            float* row = split_ws + (int64)k * RSC;
#pragma unroll
            for (int jj = 0; jj < NT; ++jj) {
                int col = n0 + wn0 + jj * 8 + 2 * t4;
                if (col < RSC) {  // RSC even: col + 1 < RSC too
                    float2 v;
                    v.x = acc[i][jj][2 * h];
                    v.y = acc[i][jj][2 * h + 1];
                    *reinterpret_cast<float2*>(row + col) = v;
                }
            }
        }
}

// gw[k, c, rs] = sum_{sp = 0 .. splits-1} workspace[sp, k, rs, c], added in that order and rounded once to T
// (RS = R*S; the workspace columns j = rs*C + c are the GEMM's). The (RS x C) -> (C x RS) transpose of each
// filter k goes through a shared 32 (c) x 32 (rs) tile: blockIdx.x tiles C, blockIdx.y tiles RS, blockIdx.z
// strides over k (gridDim.z may be smaller than K). Reads: element e of the tile is (rs e / 32, c e % 32), 32
// consecutive floats per warp; writes: element e is (c e / rsn, rs e % rsn) for the tile's rsn taps, so that
// with RS <= 32 a block writes one contiguous run of gw. Bounds: c < C, rs < RS.
template <typename T>
__global__ void __launch_bounds__(256) conv2d_wgrad_nhwc_reduce(const float* __restrict__ workspace,
                                                                T* __restrict__ gw, int splits, int K, int C,
                                                                int RS) {
    __shared__ float tile[32][33];
    const int c0 = blockIdx.x * 32, rs0 = blockIdx.y * 32;
    const int cn = min(32, C - c0), rsn = min(32, RS - rs0);
    const igemm::int64 slab = (igemm::int64)K * RS * C;  // one split
    for (int k = blockIdx.z; k < K; k += gridDim.z) {
        const float* src = workspace + (igemm::int64)k * RS * C + (igemm::int64)rs0 * C + c0;
        for (int e = threadIdx.x; e < 32 * rsn; e += 256) {
            int rl = e / 32, cl = e % 32;
            if (cl < cn) {
                const float* p = src + (igemm::int64)rl * C + cl;
                float sum = 0.0f;
                for (int sp = 0; sp < splits; ++sp) sum += p[sp * slab];
                tile[cl][rl] = sum;
            }
        }
        __syncthreads();
        T* dst = gw + ((igemm::int64)k * C + c0) * RS + rs0;
        for (int e = threadIdx.x; e < cn * rsn; e += 256) {
            int cl = e / rsn, rl = e - cl * rsn;
            dst[(igemm::int64)cl * RS + rl] = Accumulator<T>::store(tile[cl][rl]);
        }
        __syncthreads();
    }
}
