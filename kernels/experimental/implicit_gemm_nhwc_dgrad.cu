// conv2d input gradient (dgrad; also conv_transpose2d's forward), float16, groups == 1, as one implicit GEMM
// per stride phase over channels-last copies of the operands, on tensor cores. Opt-in
// (GPUCONV_UNVERIFIED=nhwc_dgrad, see gpuconv/_cuda/_igemm_nhwc_dgrad.py).
//
//   gx[n, c, h, w] = bias[c] + sum over k < K and the taps (r, s) with p = (h + pad_h - r*dil_h) / stride_h an
//       integer in [0, P) and q = (w + pad_w - s*dil_w) / stride_w an integer in [0, Q) of
//       gyh[n, p, q, k] * wt[c, r, s, k]
//
// where gyh (N, P, Q, K) is gy and wt (C, R, S, K) is w (K, C*R*S) transposed by nchw_to_nhwc
// (implicit_gemm_nhwc.cu); gx stays NCHW.
//
// Stride phases (as implicit_gemm_dgrad.cu): pixels split into stride_h*stride_w phases by (ph, pw) =
// ((h + pad_h) mod stride_h, (w + pad_w) mod stride_w). In a phase exactly the taps r = r_first + jr*step_r
// (step_r = stride_h / gcd(stride_h, dil_h)) hit, for every pixel of the phase; so each phase is a dense GEMM
// with no zero tap multiplied:
//   M = N*Hph*Wph rows m = (n, i, j): h = h_first + i*stride_h, w = w_first + j*stride_w;
//   Ncols = C columns c;  Kdim = Rph*Sph*K, kd = (jr*Sph + js)*K + k (filters fastest: with K % 8 == 0, 8
//   consecutive kd are 8 filters of one tap, one 16-byte chunk of gyh and of wt);
//   p = hp - tr with hp = (h + pad_h - ph) / stride_h = hp_first + i per row and tr = (r*dil_h - ph) / stride_h
//   = tr_first + jr*(step_r*dil_h / stride_h) per tap (all exact): no division in the k loop.
// A phase without taps (Rph or Sph 0) still writes its pixels (bias or 0). Stride 1 is one phase holding
// every pixel and every tap.
//
// Blocks: blockIdx.x tiles M of the largest phase (blocks past their phase's M exit at once), blockIdx.y
// tiles C by BN, blockIdx.z = phase = ph*stride_w + pw. 256 threads = 8 warps, float32 accumulators; the
// k-contiguous tiles, cp.async ring, ldmatrix.x4 fragments and mma step of the fprop kernel
// (implicit_gemm_nhwc.cuh: STAGES * (BM + BN) * 64 bytes <= 48 KB static, one __syncthreads per k-tile).
// Copies: thread t owns chunk column kc = t % 4 of every k-tile and tile rows t / 4 + 64 i; one cp.async.cg
// of 16 bytes per owned row, zero-filled (src-size 0, nothing read) outside the matrix:
//   per row, once per block:  A: (n, i, j) -> hp, wp and the gyh pixel index (n*P + hp)*Q + wp (int32);
//                             B: the channel c (valid while c < C);
//   per k-tile, this thread's tap state advanced incrementally (k += 32 carried into the taps, no division):
//   tr, ts and w_tap = (r*S + s)*K; then per chunk the int64 offsets ((pixel - tr*Q - ts)*K + k into gyh,
//   c*R*S*K + w_tap + k into wt.
// Epilogue: each accumulator goes from registers to gx (NCHW) with bias added in float32 and one rounding
// to half; every gx element is written by exactly one thread of one phase, once (deterministic).
// Bounds: m < M (phase), c < C, kd < Kdim (phase), 0 <= p < P, 0 <= q < Q per chunk.
// Requirements (checked on the host): C % 8 == 0, K % 8 == 0, pad_h >= 0, pad_w >= 0, gyh and wt 16-byte
// aligned, N*H*W, N*P*Q, C*R*S*K, H + pad_h, W + pad_w within int32; tensor offsets are int64.
//
// Kernels:
//   conv2d_dgrad_implicit_gemm_nhwc<__half, BM, BN, STAGES>   (128,128,3), (128,64,4), (64,128,4), (64,64,4)
#include "implicit_gemm_nhwc.cuh"

namespace igemm {
namespace nhwc_dgrad {

// One stride phase along one axis: the pixels h = first + i*stride (i < count) and the taps
// r = tap_first + j*tap_step (j < taps) that reach them; for those, hp = hp_first + i and
// tr = tr_first + j*tr_step.
struct AxisPhase {
    int first, count, tap_first, tap_step, taps, hp_first, tr_first, tr_step;
};

__device__ __forceinline__ int gcd_int(int a, int b) {
    while (b != 0) {
        int t = a % b;
        a = b;
        b = t;
    }
    return a;
}

// residue = (h + pad) mod stride of the phase; size = H, taps = R along this axis. pad >= 0.
__device__ AxisPhase make_axis_phase(int residue, int size, int pad, int stride, int taps, int dil) {
    AxisPhase a;
    a.first = ((residue - pad) % stride + stride) % stride;
    a.count = a.first < size ? (size - 1 - a.first) / stride + 1 : 0;
    a.tap_step = stride / gcd_int(stride, dil);  // r*dil mod stride repeats with this period
    a.tap_first = -1;
    for (int r = 0; r < taps && r < a.tap_step; ++r)
        if ((r * dil) % stride == residue) {
            a.tap_first = r;
            break;
        }
    a.taps = a.tap_first < 0 ? 0 : (taps - 1 - a.tap_first) / a.tap_step + 1;
    a.hp_first = (a.first + pad - residue) / stride;  // exact: first + pad = residue (mod stride)
    a.tr_first = a.tap_first < 0 ? 0 : (a.tap_first * dil - residue) / stride;  // exact, >= 0
    a.tr_step = a.tap_step * dil / stride;  // exact: tap_step*dil is a multiple of stride
    return a;
}

}  // namespace nhwc_dgrad
}  // namespace igemm

// gyh (N, P, Q, K), wt (C, R, S, K), bias (C) or a null pointer, gx (N, C, H, W); all contiguous, gyh and wt
// 16-byte aligned; then the sizes as int32. See the header comment for the mapping.
template <typename T, int BM, int BN, int STAGES>
__global__ void __launch_bounds__(256, igemm::nhwc::MinBlocks<BM, BN>::value) conv2d_dgrad_implicit_gemm_nhwc(
    const T* __restrict__ gyh, const T* __restrict__ wt, const T* __restrict__ bias, T* __restrict__ gx, int N,
    int C, int H, int W, int K, int R, int S, int P, int Q, int stride_h, int stride_w, int pad_h, int pad_w,
    int dil_h, int dil_w) {
    using namespace igemm;
    using namespace igemm::nhwc;
    using igemm::nhwc_dgrad::AxisPhase;
    static_assert(sizeof(T) == 2, "16-bit elements (float16) only");
    static_assert(BM % ROWS_PER_PASS == 0 && BN % ROWS_PER_PASS == 0 && STAGES >= 2, "tile shape");
    using WG = WarpGrid<BM, BN>;
    constexpr int MT = WG::MT, NT = WG::NT;
    constexpr int A_ROWS = BM / ROWS_PER_PASS, B_ROWS = BN / ROWS_PER_PASS;  // rows copied per thread
    constexpr int A_TILE = BM * BK, B_TILE = BN * BK, STAGE = A_TILE + B_TILE;  // halves
    __shared__ __align__(128) T smem[STAGES * STAGE];

    const int phase = blockIdx.z;
    const AxisPhase ph = nhwc_dgrad::make_axis_phase(phase / stride_w, H, pad_h, stride_h, R, dil_h);
    const AxisPhase pw = nhwc_dgrad::make_axis_phase(phase % stride_w, W, pad_w, stride_w, S, dil_w);
    const int M = N * ph.count * pw.count;  // int32: checked on the host
    const int Kdim = ph.taps * pw.taps * K;
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
    if (m0 >= M) return;  // the whole block: this phase has fewer pixels than the largest

    const int tid = threadIdx.x;
    const int kc = tid % CHUNKS, row_lane = tid / CHUNKS;

    // Per-row state of the A rows this thread copies: hp, wp and the pixel index (n*P + hp)*Q + wp of gyh
    // (int32: N*P*Q is checked on the host; the element offset is formed in 64 bits at each copy). A row past
    // M gets hp = -2^30: hp - tr < 0 for every tr >= 0, so its chunks are always zero-filled.
    int a_pix[A_ROWS], a_hp[A_ROWS], a_wp[A_ROWS];
#pragma unroll
    for (int i = 0; i < A_ROWS; ++i) {
        int m = m0 + row_lane + i * ROWS_PER_PASS;
        if (m < M) {
            int jj = m % pw.count, t = m / pw.count;
            int ii = t % ph.count, n = t / ph.count;
            a_hp[i] = ph.hp_first + ii;
            a_wp[i] = pw.hp_first + jj;
            a_pix[i] = (n * P + a_hp[i]) * Q + a_wp[i];
        } else {
            a_hp[i] = -(1 << 30);
            a_wp[i] = 0;
            a_pix[i] = 0;
        }
    }
    const int RSK = R * S * K;  // one channel's filter taps in wt
    const int b_c = n0 + row_lane;  // the channel of this thread's first B row; row j is b_c + j*ROWS_PER_PASS

    // This thread's tap position: kd = (jr*Sph + js)*K + k of its chunk in the current k-tile, kept as
    // kd_left = Kdim - kd (the chunk is valid while positive), k, the tap's (tr, ts), and w_tap = (r*S + s)*K
    // for the tap (r, s) = (tap_first + jr*tap_step, ...) of each axis. A step of js moves w_tap by ds_tap and
    // ts by pw.tr_step; when ts reaches ts_end (js == Sph) it wraps to pw.tr_first, jr + 1 moves w_tap by
    // dr_tap and tr by ph.tr_step (tr_step >= 1: tap_step*dil is a positive multiple of the stride).
    const int ds_tap = pw.tap_step * K;
    const int dr_tap = ph.tap_step * S * K - pw.taps * ds_tap;
    const int ts_end = pw.tr_first + pw.taps * pw.tr_step;
    int kd_left = Kdim - kc * 8, k = 0, tr = ph.tr_first, ts = pw.tr_first;
    int w_tap = (ph.tap_first * S + pw.tap_first) * K;
    if (Kdim > 0) {
        k = (kc * 8) % K;
        int t = (kc * 8) / K, jr = t / pw.taps, js = t - jr * pw.taps;
        w_tap += jr * ph.tap_step * S * K + js * ds_tap;
        tr += jr * ph.tr_step;
        ts += js * pw.tr_step;
    }

    // Copies this thread's chunks of the current k-tile into ring slot `slot`, then steps the position to
    // the next k-tile (k += BK, carried into the taps; K may be smaller than BK).
    auto issue = [&](int slot) {
        T* As = smem + slot * STAGE;
        T* Bs = As + A_TILE;
        const bool k_valid = kd_left > 0;
        const int tap_pix = tr * Q + ts;
#pragma unroll
        for (int i = 0; i < A_ROWS; ++i) {
            int p = a_hp[i] - tr, q = a_wp[i] - ts;
            bool ok = k_valid && (unsigned)p < (unsigned)P && (unsigned)q < (unsigned)Q;
            const T* src = gyh + ((int64)(a_pix[i] - tap_pix) * K + k);  // pixel (n, p, q), filters k..k+7
            cp_async_16(As + tile_offset(row_lane + i * ROWS_PER_PASS, kc), ok ? src : gyh, ok);
        }
        const int b_koff = w_tap + k;
#pragma unroll
        for (int j = 0; j < B_ROWS; ++j) {
            int c = b_c + j * ROWS_PER_PASS;
            bool ok = k_valid && c < C;
            const T* src = wt + ((int64)c * RSK + b_koff);  // channel c, tap (r, s), filters k..k+7
            cp_async_16(Bs + tile_offset(row_lane + j * ROWS_PER_PASS, kc), ok ? src : wt, ok);
        }
        kd_left -= BK;
        k += BK;
        while (k >= K) {
            k -= K;
            w_tap += ds_tap;
            ts += pw.tr_step;
            if (ts == ts_end) {
                ts = pw.tr_first;
                w_tap += dr_tap;
                tr += ph.tr_step;
            }
        }
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

    // Epilogue: gx[n, c, h, w] = acc + bias[c], rounded once. Fragment c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t),
    // c3 (g+8, 2t+1) of each 16 x 8 mma tile. Column offsets c*H*W are formed at each store (fewer registers
    // held than a table of them).
    const int g = lane / 4, t4 = lane % 4;
    const int64 HW = (int64)H * W, CHW = (int64)C * HW;
    const int c_lane = n0 + wn0 + 2 * t4;  // column of c0 in n-tile 0
    float col_bias[NT][2];
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            int c = c_lane + j * 8 + e;
            col_bias[j][e] = (bias != nullptr && c < C) ? Accumulator<T>::load(bias[c]) : 0.0f;
        }
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int h2 = 0; h2 < 2; ++h2) {
            int m = m0 + wm0 + i * 16 + g + 8 * h2;
            if (m >= M) continue;
            int jj = m % pw.count, t = m / pw.count;
            int ii = t % ph.count, n = t / ph.count;
            T* px = gx + n * CHW + (int64)(ph.first + ii * stride_h) * W + (pw.first + jj * stride_w);
#pragma unroll
            for (int j = 0; j < NT; ++j)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    int c = c_lane + j * 8 + e;
                    if (c < C) px[c * HW] = Accumulator<T>::store(acc[i][j][2 * h2 + e] + col_bias[j][e]);
                }
        }
}
