// Depthwise convolution (groups == C, K == C * m: output channel k reads input channel c = k / m only),
// fprop, dgrad and wgrad, tiled through shared memory for memory bandwidth.
//
// Geometry as in conv_direct.cu: x (N, C, H, W), w (K, 1, R, S), y (N, K, P, Q); input row of output row p
// at tap r: p*stride_h - pad_top + r*dil_h (columns alike); pad_bottom / pad_right only fix P and Q.
// Every array is contiguous. Sums run in Accumulator<T>::type (float for __half) in a fixed order: the
// results are bitwise reproducible for a given launch plan (the plan depends on the geometry only).
//
// The tiling, shared by the three passes (the launcher, gpuconv/_cuda/_conv_depthwise.py, picks it):
// - A tile is `tile_images` (PB) images x `tile_rows` (TY) rows x TW = threads_x * DW_OUTPUTS_PER_THREAD
//   columns of one channel's output plane (dgrad: of gx). A block takes tiles in a grid-stride loop
//   over a flat item index (column tile fastest, then row tile, image group, channel), so gridDim.x
//   alone carries the whole problem and neighbouring blocks share halo rows in L2.
// - Thread t computes image t / (TY*TX), row (t / TX) % TY and columns tx + j*TX, j < DW_OUTPUTS_PER_THREAD,
//   tx = t % TX: consecutive lanes read consecutive shared-memory words (stride 1) and write consecutive
//   outputs (coalesced). Threads t >= PB*TY*TX only help staging (and the wgrad reduction).
// - The block first stages what the tile reads (input window with halo, zero outside the image) into
//   shared memory as the accumulator type, all threads copying row-major (coalesced), DW_STAGE_UNROLL
//   loads in flight per thread; rows of the staged window are `pitch` elements apart (the launcher pads
//   the pitch to avoid bank conflicts between rows).
// - KR, KS > 0: the kernel is specialised for an R x S = KR x KS filter (tap loops unrolled, constant
//   shared-memory offsets for the weights); KR = KS = 0: any R, S. The channel's R*S weights are staged
//   in shared memory after the window.
#include "common.cuh"
#include "tunables.cuh"  // DW_MAX_THREADS, DW_OUTPUTS_PER_THREAD, DW_SMEM_BYTES (shared with the launcher)
// Blocks per SM the register allocation must allow (__launch_bounds__): 4 x 256 threads (64 registers)
// for float and __half, 2 x 256 (128 registers) for double.
#define DW_MIN_BLOCKS(T) (sizeof(typename Accumulator<T>::type) == 8 ? 2 : 4)
// Global loads each thread keeps in flight while staging.
#define DW_STAGE_UNROLL 8
// Taps accumulated per pass by the generic (KR = KS = 0) wgrad kernel.
#define DW_WGRAD_GENERIC_TAPS 4

// floor(a / b) for b > 0 and any a.
__device__ __forceinline__ int dw_floor_div(int a, int b) {
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

// Stages a window of `images` planes into shared memory. Plane i starts at src + i*src_plane_stride and is
// src_rows x src_cols, row-major; the window is rows [row0, row0 + rows) x columns [col0, col0 + cols)
// (it may stick out of the plane). Element (i, a, b) of the window goes to
//     dst[i*dst_plane + a*dst_row + b*dst_col]
// as the accumulator type; elements outside the plane, and planes i >= valid_images, are written as 0.
// Threads: the block's threads take window elements t, t + blockDim.x, ... in row-major order (coalesced
// global reads), DW_STAGE_UNROLL loads issued before their stores; (i, a, b) advance by carries, without
// divisions. Bounds: each read is checked against the plane and valid_images. Call from every thread.
template <typename T>
__device__ __forceinline__ void dw_stage(typename Accumulator<T>::type* dst, int dst_plane, int dst_row,
                                         int dst_col, const T* src, index_t src_plane_stride, int src_rows,
                                         int src_cols, int images, int valid_images, int rows, int cols,
                                         int row0, int col0) {
    typedef Accumulator<T> A;
    typedef typename A::type acc_t;
    if (rows <= 0 || cols <= 0) return;
    const int per_image = rows * cols;
    const int step = (int)blockDim.x;
    const int step_b = step % cols;
    const int step_a = (step / cols) % rows;
    const int step_i = step / per_image;
    int b = (int)threadIdx.x % cols;
    int a = ((int)threadIdx.x / cols) % rows;
    int i = (int)threadIdx.x / per_image;
    while (i < images) {
        acc_t v[DW_STAGE_UNROLL];
        int at[DW_STAGE_UNROLL];
#pragma unroll
        for (int u = 0; u < DW_STAGE_UNROLL; ++u) {
            v[u] = acc_t(0);
            at[u] = -1;
            if (i < images) {
                const int h = row0 + a;
                const int c = col0 + b;
                if (i < valid_images && h >= 0 && h < src_rows && c >= 0 && c < src_cols)
                    v[u] = A::load(src[i * src_plane_stride + (index_t)h * src_cols + c]);
                at[u] = i * dst_plane + a * dst_row + b * dst_col;
                b += step_b;
                a += step_a;
                i += step_i;
                if (b >= cols) { b -= cols; ++a; }
                if (a >= rows) { a -= rows; ++i; }
            }
        }
#pragma unroll
        for (int u = 0; u < DW_STAGE_UNROLL; ++u)
            if (at[u] >= 0) dst[at[u]] = v[u];
    }
}

// y[n, k, p, q] = bias[k] + sum over r < R, s < S of
//     x[n, k / m, p*stride_h - pad_top + r*dil_h, q*stride_w - pad_left + s*dil_w] * w[k, 0, r, s]
// (m = K / C; bias null: no bias term; taps in the padding contribute nothing).
// Threads: one tile per block iteration (see the top of the file); the block stages the input window
// IH x IW, IH = (TY-1)*stride_h + (R-1)*dil_h + 1, IW = (TW-1)*stride_w + (S-1)*dil_w + 1, of each of
// its PB images (zero outside the image), then each thread sums R*S taps for each of its outputs from
// shared memory. Bounds: staging checks rows / columns against [0, H) / [0, W) and images against N;
// each store checks n < N, p < P, q < Q. The launcher guarantees PB*IH*pitch + R*S fits DW_SMEM_BYTES.
template <typename T, int KR, int KS>
__global__ void __launch_bounds__(DW_MAX_THREADS, DW_MIN_BLOCKS(T))
conv2d_fprop_depthwise(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                       T* __restrict__ y, int N, int C, int H, int W, int K, int R, int S, int P, int Q,
                       int stride_h, int stride_w, int pad_top, int pad_left, int dil_h, int dil_w,
                       int tile_rows, int threads_x, int tile_images, int pitch) {
    typedef Accumulator<T> A;
    typedef typename A::type acc_t;
    constexpr bool FIXED = KR > 0 && KS > 0;
    constexpr int V = DW_OUTPUTS_PER_THREAD;
    __shared__ acc_t smem[DW_SMEM_BYTES / sizeof(acc_t)];
    const int RR = FIXED ? KR : R;
    const int SS = FIXED ? KS : S;
    const int TY = tile_rows, TX = threads_x, TW = threads_x * V, PB = tile_images;
    const int IH = (TY - 1) * stride_h + (RR - 1) * dil_h + 1;
    const int IW = (TW - 1) * stride_w + (SS - 1) * dil_w + 1;
    const int m = K / C;
    const int image_groups = (N + PB - 1) / PB;
    const int row_tiles = (P + TY - 1) / TY;
    const int col_tiles = (Q + TW - 1) / TW;
    const index_t items = (index_t)K * image_groups * row_tiles * col_tiles;
    acc_t* const tile = smem;                      // PB x IH x pitch
    acc_t* const taps = smem + PB * IH * pitch;    // the R*S weights of the channel
    const int t = (int)threadIdx.x;
    const int ti = t / (TY * TX), ty = (t / TX) % TY, tx = t % TX;
    const index_t plane_x = (index_t)H * W, plane_y = (index_t)P * Q;

    for (index_t item = blockIdx.x; item < items; item += gridDim.x) {
        const int ct = (int)(item % col_tiles);
        index_t rest = item / col_tiles;
        const int rt = (int)(rest % row_tiles);
        rest /= row_tiles;
        const int ng = (int)(rest % image_groups);
        const int k = (int)(rest / image_groups);
        const int n0 = ng * PB, p0 = rt * TY, q0 = ct * TW;

        for (int i = t; i < RR * SS; i += blockDim.x) taps[i] = A::load(w[(index_t)k * RR * SS + i]);
        dw_stage<T>(tile, IH * pitch, pitch, 1, x + ((index_t)n0 * C + k / m) * plane_x, (index_t)C * plane_x,
                    H, W, PB, N - n0, IH, IW, p0 * stride_h - pad_top, q0 * stride_w - pad_left);
        __syncthreads();

        const int n = n0 + ti, p = p0 + ty;
        if (ti < PB && n < N && p < P) {
            acc_t acc[V];
            const acc_t b0 = bias_or_zero(bias, k);
#pragma unroll
            for (int j = 0; j < V; ++j) acc[j] = b0;
            const acc_t* base = tile + (ti * IH + ty * stride_h) * pitch + tx * stride_w;
            const int jstep = TX * stride_w;
            if (FIXED) {
#pragma unroll
                for (int r = 0; r < (FIXED ? KR : 1); ++r) {
#pragma unroll
                    for (int s = 0; s < (FIXED ? KS : 1); ++s) {
                        const acc_t* in = base + r * dil_h * pitch + s * dil_w;
                        const acc_t wv = taps[r * (FIXED ? KS : 1) + s];
#pragma unroll
                        for (int j = 0; j < V; ++j) acc[j] += wv * in[j * jstep];
                    }
                }
            } else {
                for (int r = 0; r < RR; ++r) {
                    for (int s = 0; s < SS; ++s) {
                        const acc_t* in = base + r * dil_h * pitch + s * dil_w;
                        const acc_t wv = taps[r * SS + s];
#pragma unroll
                        for (int j = 0; j < V; ++j) acc[j] += wv * in[j * jstep];
                    }
                }
            }
            T* out = y + ((index_t)n * K + k) * plane_y + (index_t)p * Q;
#pragma unroll
            for (int j = 0; j < V; ++j) {
                const int q = q0 + tx + j * TX;
                if (q < Q) out[q] = A::store(acc[j]);
            }
        }
        __syncthreads();  // the next tile overwrites shared memory
    }
}

// gx[n, c, h, col] = bias[c] + sum over kk < m, taps (r, s) of gy[n, c*m + kk, p, q] * w[c*m + kk, 0, r, s]
// where h == p*stride_h - pad_top + r*dil_h and col == q*stride_w - pad_left + s*dil_w, 0 <= p < P,
// 0 <= q < Q (bias null: no bias term): the adjoint of fprop in x, a transposed convolution's forward.
// A gather, written as a stride-1 correlation with the flipped filter over U, gy spread out by the
// strides: U[u, v] = gy[u / stride_h, v / stride_w] where both divide and the position lies in gy, else 0;
// gx[h, col] = sum over r, s of U[h + pad_top - r*dil_h, col + pad_left - s*dil_w] * w[r, s].
// Threads: one gx tile per block iteration (see the top of the file). For each kk the block stages the
// U window of the tile, IH x IW with IH = TY + (R-1)*dil_h, IW = TW + (S-1)*dil_w (stride > 1: zero-fill
// it once per tile, then scatter the gy elements that land in it), then each thread sums the R*S taps of
// each of its outputs; sums carry over kk in registers. Bounds: staging checks p / q against [0, P) /
// [0, Q) and images against N; each store checks n < N, h < H, col < W.
template <typename T, int KR, int KS>
__global__ void __launch_bounds__(DW_MAX_THREADS, DW_MIN_BLOCKS(T))
conv2d_dgrad_depthwise(const T* __restrict__ gy, const T* __restrict__ w, const T* __restrict__ bias,
                       T* __restrict__ gx, int N, int C, int H, int W, int K, int R, int S, int P, int Q,
                       int stride_h, int stride_w, int pad_top, int pad_left, int dil_h, int dil_w,
                       int tile_rows, int threads_x, int tile_images, int pitch) {
    typedef Accumulator<T> A;
    typedef typename A::type acc_t;
    constexpr bool FIXED = KR > 0 && KS > 0;
    constexpr int V = DW_OUTPUTS_PER_THREAD;
    __shared__ acc_t smem[DW_SMEM_BYTES / sizeof(acc_t)];
    const int RR = FIXED ? KR : R;
    const int SS = FIXED ? KS : S;
    const int TY = tile_rows, TX = threads_x, TW = threads_x * V, PB = tile_images;
    const int IH = TY + (RR - 1) * dil_h;
    const int IW = TW + (SS - 1) * dil_w;
    const int m = K / C;
    const int image_groups = (N + PB - 1) / PB;
    const int row_tiles = (H + TY - 1) / TY;
    const int col_tiles = (W + TW - 1) / TW;
    const index_t items = (index_t)C * image_groups * row_tiles * col_tiles;
    const bool strided = stride_h > 1 || stride_w > 1;
    acc_t* const tile = smem;                      // PB x IH x pitch
    acc_t* const taps = smem + PB * IH * pitch;    // the R*S weights of the channel
    const int t = (int)threadIdx.x;
    const int ti = t / (TY * TX), ty = (t / TX) % TY, tx = t % TX;
    const index_t plane_x = (index_t)H * W, plane_y = (index_t)P * Q;

    for (index_t item = blockIdx.x; item < items; item += gridDim.x) {
        const int ct = (int)(item % col_tiles);
        index_t rest = item / col_tiles;
        const int rt = (int)(rest % row_tiles);
        rest /= row_tiles;
        const int ng = (int)(rest % image_groups);
        const int c = (int)(rest / image_groups);
        const int n0 = ng * PB, h0 = rt * TY, w0 = ct * TW;
        const int u0 = h0 + pad_top - (RR - 1) * dil_h;   // U row of tile row 0
        const int v0 = w0 + pad_left - (SS - 1) * dil_w;  // U column of tile column 0
        // gy rows / columns that land in the window, and where the first lands.
        const int p_lo = strided ? -dw_floor_div(-u0, stride_h) : u0;
        const int q_lo = strided ? -dw_floor_div(-v0, stride_w) : v0;
        const int rows = strided ? dw_floor_div(u0 + IH - 1, stride_h) - p_lo + 1 : IH;
        const int cols = strided ? dw_floor_div(v0 + IW - 1, stride_w) - q_lo + 1 : IW;
        acc_t* const dst = tile + (p_lo * stride_h - u0) * pitch + (q_lo * stride_w - v0);
        if (strided) {
            for (int i = t; i < PB * IH * pitch; i += blockDim.x) tile[i] = acc_t(0);
            __syncthreads();
        }

        const int n = n0 + ti, h = h0 + ty;
        const bool computes = ti < PB && n < N && h < H;
        acc_t acc[V];
        {
            const acc_t b0 = bias_or_zero(bias, c);
#pragma unroll
            for (int j = 0; j < V; ++j) acc[j] = b0;
        }
        const acc_t* base = tile + (ti * IH + ty) * pitch + tx;
        for (int kk = 0; kk < m; ++kk) {
            const int k = c * m + kk;
            for (int i = t; i < RR * SS; i += blockDim.x) taps[i] = A::load(w[(index_t)k * RR * SS + i]);
            dw_stage<T>(dst, IH * pitch, stride_h * pitch, stride_w, gy + ((index_t)n0 * K + k) * plane_y,
                        (index_t)K * plane_y, P, Q, PB, N - n0, rows, cols, p_lo, q_lo);
            __syncthreads();
            if (computes) {
                if (FIXED) {
#pragma unroll
                    for (int r = 0; r < (FIXED ? KR : 1); ++r) {
#pragma unroll
                        for (int s = 0; s < (FIXED ? KS : 1); ++s) {
                            const acc_t* in = base + (RR - 1 - r) * dil_h * pitch + (SS - 1 - s) * dil_w;
                            const acc_t wv = taps[r * (FIXED ? KS : 1) + s];
#pragma unroll
                            for (int j = 0; j < V; ++j) acc[j] += wv * in[j * TX];
                        }
                    }
                } else {
                    for (int r = 0; r < RR; ++r) {
                        for (int s = 0; s < SS; ++s) {
                            const acc_t* in = base + (RR - 1 - r) * dil_h * pitch + (SS - 1 - s) * dil_w;
                            const acc_t wv = taps[r * SS + s];
#pragma unroll
                            for (int j = 0; j < V; ++j) acc[j] += wv * in[j * TX];
                        }
                    }
                }
            }
            __syncthreads();  // the next kk (or tile) overwrites shared memory
        }
        if (computes) {
            T* out = gx + ((index_t)n * C + c) * plane_x + (index_t)h * W;
#pragma unroll
            for (int j = 0; j < V; ++j) {
                const int col = w0 + tx + j * TX;
                if (col < W) out[col] = A::store(acc[j]);
            }
        }
    }
}

// Partial sums of the weight gradient, by chunk of tiles:
//     workspace[k, chunk, r*S + s] = sum over the tiles of the chunk, and the (n, p, q) of each tile, of
//         gy[n, k, p, q] * x[n, k / m, p*stride_h - pad_top + r*dil_h, q*stride_w - pad_left + s*dil_w]
// (taps in the padding contribute nothing); conv2d_wgrad_depthwise_reduce adds the chunks.
// The tiles of channel k (image group, row tile, column tile; as fprop's, over gy) are numbered
// 0 .. tiles-1 and cut into chunks of tiles_per_chunk; one block iteration per (k, chunk).
// Threads: per tile the block stages x's window (as fprop's) and the gy tile PB x TY x TW (zero outside gy);
// each thread multiplies its outputs' gy values by the input of every tap, into one register sum per tap.
// The taps go in passes of TAPS (KR*KS for the specialised kernel, DW_WGRAD_GENERIC_TAPS otherwise; each
// pass re-reads the chunk). After a pass the block adds its threads' sums in a fixed order: per tap,
// thread l < 32 adds the sums of threads l, l+32, ... in turn, then one thread adds those 32 in turn. No
// atomics: bitwise reproducible. Bounds: staging checks rows / columns against the planes and images
// against N (zero otherwise, so every product outside the problem is 0 * 0).
template <typename T, int KR, int KS>
__global__ void __launch_bounds__(DW_MAX_THREADS, DW_MIN_BLOCKS(T))
conv2d_wgrad_depthwise(const T* __restrict__ x, const T* __restrict__ gy,
                       typename Accumulator<T>::type* __restrict__ workspace, int N, int C, int H, int W,
                       int K, int R, int S, int P, int Q, int stride_h, int stride_w, int pad_top, int pad_left,
                       int dil_h, int dil_w, int tile_rows, int threads_x, int tile_images, int pitch,
                       int tiles_per_chunk) {
    typedef Accumulator<T> A;
    typedef typename A::type acc_t;
    constexpr bool FIXED = KR > 0 && KS > 0;
    constexpr int V = DW_OUTPUTS_PER_THREAD;
    constexpr int TAPS = FIXED ? KR * KS : DW_WGRAD_GENERIC_TAPS;
    constexpr int CAPACITY = DW_SMEM_BYTES / sizeof(acc_t);
    __shared__ acc_t smem[CAPACITY];
    const int RR = FIXED ? KR : R;
    const int SS = FIXED ? KS : S;
    const int RS = RR * SS;
    const int TY = tile_rows, TX = threads_x, TW = threads_x * V, PB = tile_images;
    const int IH = (TY - 1) * stride_h + (RR - 1) * dil_h + 1;
    const int IW = (TW - 1) * stride_w + (SS - 1) * dil_w + 1;
    const int m = K / C;
    const int image_groups = (N + PB - 1) / PB;
    const int row_tiles = (P + TY - 1) / TY;
    const int col_tiles = (Q + TW - 1) / TW;
    const index_t tiles = (index_t)image_groups * row_tiles * col_tiles;
    const index_t chunks = (tiles + tiles_per_chunk - 1) / tiles_per_chunk;
    const index_t items = (index_t)K * chunks;
    const int passes = (RS + TAPS - 1) / TAPS;
    acc_t* const xt = smem;                        // PB x IH x pitch
    acc_t* const gt = smem + PB * IH * pitch;      // PB x TY x TW
    const int t = (int)threadIdx.x;
    const int B = (int)blockDim.x;
    const int ti = t / (TY * TX), ty = (t / TX) % TY, tx = t % TX;
    const bool computes = ti < PB;
    const index_t plane_x = (index_t)H * W, plane_y = (index_t)P * Q;
    const acc_t* const xbase = xt + (ti * IH + ty * stride_h) * pitch + tx * stride_w;
    const acc_t* const gbase = gt + (ti * TY + ty) * TW + tx;

    for (index_t item = blockIdx.x; item < items; item += gridDim.x) {
        const index_t chunk = item % chunks;
        const int k = (int)(item / chunks);
        const index_t first = chunk * tiles_per_chunk;
        const index_t last = first + tiles_per_chunk < tiles ? first + tiles_per_chunk : tiles;
        for (int pass = 0; pass < passes; ++pass) {
            const int r0 = pass * TAPS / SS, s0 = pass * TAPS % SS;  // the pass's first tap
            acc_t acc[TAPS];
#pragma unroll
            for (int i = 0; i < TAPS; ++i) acc[i] = acc_t(0);
            for (index_t tile_index = first; tile_index < last; ++tile_index) {
                const int ct = (int)(tile_index % col_tiles);
                const index_t rest = tile_index / col_tiles;
                const int rt = (int)(rest % row_tiles);
                const int ng = (int)(rest / row_tiles);
                const int n0 = ng * PB, p0 = rt * TY, q0 = ct * TW;
                dw_stage<T>(xt, IH * pitch, pitch, 1, x + ((index_t)n0 * C + k / m) * plane_x,
                            (index_t)C * plane_x, H, W, PB, N - n0, IH, IW, p0 * stride_h - pad_top,
                            q0 * stride_w - pad_left);
                dw_stage<T>(gt, TY * TW, TW, 1, gy + ((index_t)n0 * K + k) * plane_y, (index_t)K * plane_y,
                            P, Q, PB, N - n0, TY, TW, p0, q0);
                __syncthreads();
                // Outputs past the last image, row or column have gy = 0 but may meet real inputs: they add
                // nothing, so that an Inf or NaN in x that no window reads stays out of gw (as in PyTorch).
                const int q_end = Q - q0 - tx;  // column j of this thread lies in the plane when j * TX < q_end
                if (computes && n0 + ti < N && p0 + ty < P) {
                    // Offset in the x window of each tap of this pass (taps past R*S: 0, summed but unused).
                    int off[TAPS];
                    int r = r0, s = s0;
#pragma unroll
                    for (int i = 0; i < TAPS; ++i) {
                        off[i] = pass * TAPS + i < RS ? r * dil_h * pitch + s * dil_w : 0;
                        if (++s == SS) { s = 0; ++r; }
                    }
#pragma unroll
                    for (int j = 0; j < V; ++j) {
                        if (j * TX >= q_end) break;
                        const acc_t g = gbase[j * TX];
                        const acc_t* in = xbase + j * TX * stride_w;
#pragma unroll
                        for (int i = 0; i < TAPS; ++i) acc[i] += g * in[off[i]];
                    }
                }
                __syncthreads();  // the next tile overwrites shared memory
            }
            // Block sum of acc[i] for each tap, in rounds of `round` taps that fit the shared memory.
            const int round = CAPACITY / B < TAPS ? CAPACITY / B : TAPS;
            for (int first_tap = 0; first_tap < TAPS; first_tap += round) {
                const int count = TAPS - first_tap < round ? TAPS - first_tap : round;
#pragma unroll
                for (int i = 0; i < TAPS; ++i)
                    if (i >= first_tap && i < first_tap + count) smem[(i - first_tap) * B + t] = acc[i];
                __syncthreads();
                for (int e = t; e < count * 32; e += B) {  // (tap, lane): lane adds threads lane, lane + 32, ...
                    const int i = e / 32, lane = e % 32;
                    if (lane >= B) continue;
                    acc_t sum = acc_t(0);
                    for (int u = lane; u < B; u += 32) sum += smem[i * B + u];
                    smem[i * B + lane] = sum;  // only this thread reads or writes entry `lane` of tap i here
                }
                __syncthreads();
                for (int i = t; i < count; i += B) {
                    const int tap = pass * TAPS + first_tap + i;
                    acc_t sum = acc_t(0);
                    for (int lane = 0; lane < 32 && lane < B; ++lane) sum += smem[i * B + lane];
                    if (tap < RS) workspace[((index_t)k * chunks + chunk) * RS + tap] = sum;
                }
                __syncthreads();  // the next round (or tile) overwrites shared memory
            }
        }
    }
}

// gw[k, 0, r, s] = sum over chunk < chunks, in order, of workspace[k, chunk, r*S + s], rounded once to T.
// Threads: one per element of gw (K*R*S, grid-stride loop); consecutive threads read consecutive words.
template <typename T>
__global__ void conv2d_wgrad_depthwise_reduce(const typename Accumulator<T>::type* __restrict__ workspace,
                                              T* __restrict__ gw, int K, int taps, long long chunks) {
    typedef Accumulator<T> A;
    const index_t total = (index_t)K * taps;
    for (index_t e = first_thread_index(); e < total; e += thread_count()) {
        const index_t k = e / taps;
        const int tap = (int)(e % taps);
        typename A::type sum = 0;
        for (index_t chunk = 0; chunk < chunks; ++chunk) sum += workspace[(k * chunks + chunk) * taps + tap];
        gw[e] = A::store(sum);
    }
}
