// Depthwise convolution, second version (opt-in: GPUCONV_UNVERIFIED=depthwise_v2): fprop (also the
// stride-1 dgrad with channel multiplier 1, as an fprop of gy with the flipped filter), wgrad, and the
// stride-2 dgrad (multiplier 1, pads of the parity of (K-1)/2), for KR x KS filters (3x3 and 5x5
// instantiated), stride SH x SW (1x1 and 2x2 instantiated), dilation 1, any padding; float16 and
// float32, sums in float. Everything else stays on conv_depthwise.cu.
//
// Why a second version: conv_depthwise.cu stages tiles through shared memory with scalar loads and
// divides 64-bit indices per tile; on the H100 it was issue-bound (SM 79%, DRAM 21%). Here no shared
// memory holds data (wgrad uses it only for its final block sum) and a thread owns a whole strip:
// - A "unit" is DW2_ROWS output rows x V adjacent output columns of one output plane (V = 8 for the float16
//   3x3 stride-1 fprop, else 4). A thread loads the input rows the strip reads, one after another, into
//   registers (a vertical sliding window: each input row is loaded once per unit, not once per tap row)
//   and finishes output row j as soon as its last input row is in: no tap ever reads shared memory.
// - An input row segment is loaded as DW2_VEC-element vectors (16 bytes float, 8 bytes half) when the
//   rows are aligned (W % DW2_VEC == 0 and an aligned base: the launcher checks), else element by
//   element. Vectors start at a multiple of DW2_VEC: the first needed column sits O = (-pad_left) mod
//   DW2_VEC elements into the first vector (V*SW is a multiple of DW2_VEC, so O is the same for every
//   thread); each kernel is compiled for one O, so register indices stay constant.
//   A vector is either wholly inside the row or wholly outside (W % DW2_VEC == 0): one test per vector.
// - Neighbouring lanes own neighbouring column groups of the same rows: their loads are coalesced and
//   the halo columns a lane shares with its neighbours come from L1.
// - One body per kernel: the template arguments VEC, O pick the vector path (VEC = DW2_VEC) at column
//   offset O, or the element path (VEC = 1, O = 0). Instantiated: O = 0 and O = (-(KS-1)/2) mod DW2_VEC,
//   the offset of the usual padding (KS-1)/2 (and of the stride-1 dgrad's flipped pads then); other
//   offsets, W % DW2_VEC != 0 and misaligned arrays take the element path (the launcher decides). One
//   body per kernel lets ptxas allocate registers for that body alone.
// Units are numbered column group fastest, then strip, then plane (n * planes_out + k); the launcher
// checks that the unit count (plus one grid of threads) fits in an int, so the numbering is 32-bit;
// element offsets are 64-bit. The kernels are instantiated by conv_depthwise_v2.cu (3x3 filters) and
// conv_depthwise_v2_5x5.cu (5x5), so a network with one size compiles one file.
#pragma once

#include "../common.cuh"
#include "../fast_divide.cuh"
#include "../tunables.cuh"  // DW2_ROWS, DW2_VEC, DW2_THREADS, DW2_DGRAD_ROWS / _COLS (shared with the launcher)

// VN elements of T, loaded or stored as one access (VN * sizeof(T) = 8 or 16 bytes).
template <typename T, int VN>
struct alignas(sizeof(T) * VN) dw2_vec {
    T v[VN];
};

// Outputs per unit along a row: 8 for the float16 3x3 stride-1 fprop (a 16-byte store per row), else 4
// (wgrad keeps 4 as well: its gy rows stay in registers for KR input rows, and 8 would spill).
template <typename T, int KS, int SW, bool WGRAD = false>
struct Dw2Cols {
    static constexpr int V = (sizeof(T) == 2 && KS == 3 && SW == 1 && !WGRAD) ? 8 : 4;
};

// Blocks of DW2_THREADS per SM the register allocation must allow (__launch_bounds__), chosen from
// ptxas's reports so that the 3x3 vector kernels do not spill (nearly: wgrad stride 2, 12 bytes):
// 3x3 fprop 5 (96 registers) at stride 1, 6 (80) at stride 2 (the stride-2 dgrad too); wgrad and 5x5
// filters 4 (128), 5x5 at stride 2 3 (168). ptxas hoists the loads of a whole unit as far as the
// registers allow, so each warp keeps several rows (16-24 bytes a lane each) in flight: 12-24 warps per
// SM then hold the 32-48 KB of loads a memory-bound kernel needs in flight per SM.
template <int KR, int SH, bool WGRAD>
struct Dw2Blocks {
    static constexpr int MIN = KR > 3 && SH > 1 ? 3 : WGRAD || KR > 3 ? 4 : SH == 1 ? 5 : 6;
};

// How many input rows a thread loads ahead of the row its arithmetic has reached: about 50-70 bytes in
// flight per thread (see Dw2Blocks); 2 on the element path (VEC = 1), whose rows take more registers.
template <typename T, int SPAN, int VEC>
struct Dw2Ahead {
    static constexpr int ROWS = VEC > 1 && SPAN * (int)sizeof(T) <= 24 ? 3 : 2;
};

// One piece of an input row (VEC elements, loaded as one access when VEC > 1) as it sits in registers
// between its load and its conversion to float: loaded under a predicate, zeros otherwise.
template <typename T, int VEC>
struct Dw2Piece {
    dw2_vec<T, VEC> e;
    __device__ __forceinline__ void load(const T* p, bool ok) {
        if (ok)
            e = *reinterpret_cast<const dw2_vec<T, VEC>*>(p);
        else
            e = dw2_vec<T, VEC>{};  // value-initialised: zeros
    }
    __device__ __forceinline__ float get(int i) const { return Accumulator<T>::load(e.v[i]); }
};

// One input row segment of a unit: NV pieces of VEC elements (VEC = DW2_VEC: aligned vectors; VEC = 1:
// single elements), piece i from p + i*VEC; pieces whose bit in `mask` is clear, or all when !row_ok,
// read as 0 (padding).
template <typename T, int VEC, int NV>
__device__ __forceinline__ void dw2_load_row(Dw2Piece<T, VEC> (&out)[NV], const T* p, bool row_ok, unsigned mask) {
#pragma unroll
    for (int i = 0; i < NV; ++i) out[i].load(p + i * VEC, row_ok && ((mask >> i) & 1u));
}

// The row as floats.
template <typename T, int VEC, int NV>
__device__ __forceinline__ void dw2_convert(float (&out)[NV * VEC], const Dw2Piece<T, VEC> (&raw)[NV]) {
#pragma unroll
    for (int i = 0; i < NV; ++i)
#pragma unroll
        for (int e = 0; e < VEC; ++e) out[i * VEC + e] = raw[i].get(e);
}

// Stores V outputs, columns q0 .. q0+V-1 of a row of Q (out points at column q0), those with q < Q.
// vec_out (Q % DW2_VEC == 0, the array aligned to DW2_VEC elements; q0 a multiple of DW2_VEC): in
// DW2_VEC-element vectors, each wholly inside or outside the row; else element by element.
template <typename T, int V>
__device__ __forceinline__ void dw2_store_row(T* out, const float (&acc)[V], bool vec_out, int q0, int Q) {
    if (vec_out) {
#pragma unroll
        for (int c = 0; c < V / DW2_VEC; ++c) {
            dw2_vec<T, DW2_VEC> o;
#pragma unroll
            for (int e = 0; e < DW2_VEC; ++e) o.v[e] = Accumulator<T>::store(acc[c * DW2_VEC + e]);
            if (q0 + c * DW2_VEC < Q) *reinterpret_cast<dw2_vec<T, DW2_VEC>*>(out + c * DW2_VEC) = o;
        }
    } else {
#pragma unroll
        for (int v = 0; v < V; ++v)
            if (q0 + v < Q) out[v] = Accumulator<T>::store(acc[v]);
    }
}

// Bit i set when piece i (columns a + i*VEC .. a + i*VEC + VEC-1) lies in [0, W).
template <int VEC, int NV>
__device__ __forceinline__ unsigned dw2_column_mask(int a, int W) {
    unsigned mask = 0;
#pragma unroll
    for (int i = 0; i < NV; ++i)
        if (a + i * VEC >= 0 && a + i * VEC < W) mask |= 1u << i;
    return mask;
}

// y[n, k, p, q] = bias[k] + sum over r < KR, s < KS of
//     x[n, k / m, p*SH - pad_top + r, q*SW - pad_left + s] * w[k, 0, r', s']
// with m = K / C, (r', s') = (r, s), or (KR-1-r, KS-1-s) when flip (bias null: no bias term; taps in the
// padding contribute 0). x is (N, C, H, W), y (N, K, P, Q). With flip, K == C, x = gy and y = gx, pads
// KR-1-pad_top / KS-1-pad_left and H x W = P x Q of the conv, this is the stride-1 dgrad.
// Threads: one unit per loop iteration (top of file); per unit the thread loads the KR*KS weights, then
// input rows i = 0 .. (DW2_ROWS-1)*SH + KR-1 of its window (input row p0*SH - pad_top + i, columns
// q0*SW - pad_left .. + SPAN-1), and after row j*SH + KR-1 sums output row j: bias, then taps r-major,
// s-minor (the reference order), in float. Bounds: rows outside [0, H), pieces outside [0, W) read 0;
// stores only p < P and q < Q (dw2_store_row).
template <typename T, int KR, int KS, int SH, int SW, int VEC, int O>
__device__ __forceinline__ void dw2_fprop_body(const T* __restrict__ x, const T* __restrict__ w,
                                               const T* __restrict__ bias, T* __restrict__ y, int C, int H, int W,
                                               int K, int P, int Q, int pad_top, int pad_left, bool flip,
                                               bool vec_out, int units, const FastDivisor& groups,
                                               const FastDivisor& strips, const FastDivisor& planes,
                                               const FastDivisor& mult) {
    typedef Accumulator<T> A;
    constexpr int V = Dw2Cols<T, KS, SW>::V;
    constexpr int SPAN = (V - 1) * SW + KS;                    // input columns a unit reads
    constexpr int NV = (O + SPAN + VEC - 1) / VEC;             // pieces per input row
    constexpr int IN_ROWS = (DW2_ROWS - 1) * SH + KR;          // input rows a unit reads
    constexpr int AHEAD = Dw2Ahead<T, SPAN, VEC>::ROWS;             // rows loaded ahead of the one in use
    const index_t plane_in = (index_t)H * W, plane_out = (index_t)P * Q;
    for (int unit = (int)(blockIdx.x * blockDim.x + threadIdx.x); unit < units; unit += (int)(gridDim.x * blockDim.x)) {
        const int rest = groups.div(unit);
        const int g = unit - rest * groups.d;
        const int plane = strips.div(rest);  // n * K + k
        const int strip = rest - plane * strips.d;
        const int n = planes.div(plane);
        const int k = plane - n * K;
        const int p0 = strip * DW2_ROWS, q0 = g * V;
        float wt[KR * KS];
#pragma unroll
        for (int i = 0; i < KR * KS; ++i) wt[i] = A::load(w[(index_t)k * (KR * KS) + (flip ? KR * KS - 1 - i : i)]);
        const float b0 = bias_or_zero(bias, k);
        const int row0 = p0 * SH - pad_top;
        const int a = q0 * SW - pad_left - O;  // first column of piece 0 (a multiple of VEC)
        const unsigned mask = dw2_column_mask<VEC, NV>(a, W);
        const T* xrow = x + ((index_t)n * C + mult.div(k)) * plane_in + (index_t)row0 * W + a;
        T* yrow = y + (index_t)plane * plane_out + (index_t)p0 * Q + q0;
        Dw2Piece<T, VEC> raw[IN_ROWS][NV];
        float in[IN_ROWS][NV * VEC];
#pragma unroll
        for (int i = 0; i < IN_ROWS + AHEAD; ++i) {  // load row i; convert row i - AHEAD, finish outputs ending there
            if (i < IN_ROWS)
                dw2_load_row<T, VEC, NV>(raw[i], xrow + (index_t)i * W, row0 + i >= 0 && row0 + i < H, mask);
            const int last = i - AHEAD;
            if (last >= 0) dw2_convert<T, VEC, NV>(in[last], raw[last]);
            if (last >= KR - 1 && (last - (KR - 1)) % SH == 0 && (last - (KR - 1)) / SH < DW2_ROWS) {
                const int j = (last - (KR - 1)) / SH;
                if (p0 + j < P) {
                    float acc[V];
#pragma unroll
                    for (int v = 0; v < V; ++v) acc[v] = b0;
#pragma unroll
                    for (int r = 0; r < KR; ++r)
#pragma unroll
                        for (int s = 0; s < KS; ++s)
#pragma unroll
                            for (int v = 0; v < V; ++v) acc[v] += wt[r * KS + s] * in[j * SH + r][O + v * SW + s];
                    dw2_store_row<T, V>(yrow + (index_t)j * Q, acc, vec_out, q0, Q);
                }
            }
        }
    }
}

// The fprop kernel (formula, threads and bounds: dw2_fprop_body), one body per kernel: <VEC = DW2_VEC,
// O> reads aligned vectors (W % DW2_VEC == 0, x aligned, O == (-pad_left) mod DW2_VEC: the launcher picks
// it); <1, 0> reads elements. vec_out: Q % DW2_VEC == 0 and y aligned to DW2_VEC elements (dw2_store_row);
// flip: see dw2_fprop_body.
// units = N*K*strips*groups, with strips = ceil(P / DW2_ROWS) and groups = ceil(Q / V); the launcher
// checks units + gridDim.x*blockDim.x < 2^31. Each divisor comes as (d, mul, shift) (FastDivisor): groups,
// strips, K (planes per image) and m = K / C.
template <typename T, int KR, int KS, int SH, int SW, int VEC, int O>
__global__ void __launch_bounds__(DW2_THREADS, (Dw2Blocks<KR, SH, false>::MIN))
conv2d_fprop_depthwise_v2(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                          T* __restrict__ y, int C, int H, int W, int K, int P, int Q, int pad_top, int pad_left,
                          int flip, int vec_out, int units, int groups, int groups_mul, int groups_shift, int strips,
                          int strips_mul, int strips_shift, int K_mul, int K_shift, int m, int m_mul, int m_shift) {
    dw2_fprop_body<T, KR, KS, SH, SW, VEC, O>(x, w, bias, y, C, H, W, K, P, Q, pad_top, pad_left, flip != 0,
                                              vec_out != 0, units, FastDivisor(groups, groups_mul, groups_shift),
                                              FastDivisor(strips, strips_mul, strips_shift),
                                              FastDivisor(K, K_mul, K_shift), FastDivisor(m, m_mul, m_shift));
}


// Compile-time shape of the stride-2 dgrad along one axis: gx position h = h0 + j (h0 even) with pad
// pad = 2*B + PAR reads gy position (h + pad - r) / 2 = h0/2 + B + (j + PAR - r) / 2 at the taps r < KR
// with j + PAR - r even. LO, HI: the range of (j + PAR - r) / 2 over j < N; COUNT = HI - LO + 1.
template <int KR, int PAR, int N>
struct Dw2Phase {
    static constexpr int LO = -((KR - 1 - PAR) / 2);  // ceil((PAR - (KR-1)) / 2), KR - 1 >= PAR
    static constexpr int HI = (N - 1 + PAR) / 2;
    static constexpr int COUNT = HI - LO + 1;
};

// The stride-2 dgrad, channel multiplier 1 (K == C), dilation 1:
//     gx[n, c, h, col] = bias[c] + sum over r < KR, s < KS with h + pad_top - r and col + pad_left - s even
//         of gy[n, c, (h + pad_top - r) / 2, (col + pad_left - s) / 2] * w[c, 0, r, s]
// (gy positions outside P x Q contribute 0; bias null: no bias term): a gather, each gx element summing
// only the taps that reach it (about a quarter of R*S), no atomics.
// The parities of the pads are compile-time (the usual padding (K-1)/2: PT = ((KR-1)/2) % 2,
// PL = ((KS-1)/2) % 2; the launcher checks pad_top % 2 == PT and pad_left % 2 == PL), so each gx row and
// column knows its taps at compile time. Threads: one unit of DW2_DGRAD_ROWS x DW2_DGRAD_COLS gx elements
// per loop iteration, units numbered as fprop's (column group, strip, plane n*C + c); the thread loads
// the gy rows its unit reads (Dw2Phase over rows), each once, as pieces of VEC elements (VEC = DW2_VEC:
// aligned vectors, the first needed column O elements into piece 0, O == (A + LO) mod DW2_VEC with
// pad_left = 2*A + PL: the launcher checks; VEC = 1: elements), and finishes gx row j as soon as the last
// gy row it reads is in. Bounds: gy rows outside [0, P) and pieces outside [0, Q) read 0; stores only
// h < H and col < W (dw2_store_row; vec_out: W % DW2_VEC == 0 and gx aligned).
template <typename T, int KR, int KS, int VEC, int O>
__global__ void __launch_bounds__(DW2_THREADS, (Dw2Blocks<KR, 2, false>::MIN))
conv2d_dgrad_depthwise_v2(const T* __restrict__ gy, const T* __restrict__ w, const T* __restrict__ bias,
                          T* __restrict__ gx, int C, int H, int W, int P, int Q, int pad_top, int pad_left,
                          int vec_out, int units, int groups, int groups_mul, int groups_shift, int strips,
                          int strips_mul, int strips_shift, int C_mul, int C_shift) {
    typedef Accumulator<T> A;
    constexpr int PT = ((KR - 1) / 2) % 2, PL = ((KS - 1) / 2) % 2;
    constexpr int V = DW2_DGRAD_COLS;
    typedef Dw2Phase<KR, PT, DW2_DGRAD_ROWS> Rows;
    typedef Dw2Phase<KS, PL, V> Cols;
    constexpr int NV = (O + Cols::COUNT + VEC - 1) / VEC;  // pieces per gy row
    const FastDivisor dg(groups, groups_mul, groups_shift), ds(strips, strips_mul, strips_shift), dc(C, C_mul, C_shift);
    const index_t plane_x = (index_t)H * W, plane_y = (index_t)P * Q;
    const int B = (pad_top - PT) / 2, Acol = (pad_left - PL) / 2;  // pad_top - PT, pad_left - PL are even
    for (int unit = (int)(blockIdx.x * blockDim.x + threadIdx.x); unit < units; unit += (int)(gridDim.x * blockDim.x)) {
        const int rest = dg.div(unit);
        const int g = unit - rest * groups;
        const int plane = ds.div(rest);  // n * C + c
        const int strip = rest - plane * strips;
        const int c = plane - dc.div(plane) * C;
        const int h0 = strip * DW2_DGRAD_ROWS, c0 = g * V;
        float wt[KR * KS];
#pragma unroll
        for (int i = 0; i < KR * KS; ++i) wt[i] = A::load(w[(index_t)c * (KR * KS) + i]);
        const float b0 = bias_or_zero(bias, c);
        const int row0 = h0 / 2 + B + Rows::LO;      // gy row of local row 0
        const int a = c0 / 2 + Acol + Cols::LO - O;  // first gy column of piece 0
        const unsigned mask = dw2_column_mask<VEC, NV>(a, Q);
        const T* grow = gy + (index_t)plane * plane_y + (index_t)row0 * Q + a;
        T* xrow = gx + (index_t)plane * plane_x + (index_t)h0 * W + c0;
        Dw2Piece<T, VEC> raw[Rows::COUNT][NV];
        float in[Rows::COUNT][NV * VEC];
#pragma unroll
        for (int i = 0; i < Rows::COUNT; ++i) {  // gy row LO + i; then the gx rows whose last gy row it is
            dw2_load_row<T, VEC, NV>(raw[i], grow + (index_t)i * Q, row0 + i >= 0 && row0 + i < P, mask);
            dw2_convert<T, VEC, NV>(in[i], raw[i]);
#pragma unroll
            for (int j = 0; j < DW2_DGRAD_ROWS; ++j) {
                if ((j + PT) / 2 - Rows::LO != i || h0 + j >= H) continue;  // the last gy row of gx row j: tap (j+PT)%2
                float acc[V];
#pragma unroll
                for (int v = 0; v < V; ++v) acc[v] = b0;
#pragma unroll
                for (int r = 0; r < KR; ++r) {
                    if ((j + PT - r) % 2 != 0) continue;
                    const int row = (j + PT - r) / 2 - Rows::LO;
#pragma unroll
                    for (int s = 0; s < KS; ++s)
#pragma unroll
                        for (int v = 0; v < V; ++v)
                            if ((v + PL - s) % 2 == 0)
                                acc[v] += wt[r * KS + s] * in[row][O + (v + PL - s) / 2 - Cols::LO];
                }
                dw2_store_row<T, V>(xrow + (index_t)j * W, acc, vec_out, c0, W);
            }
        }
    }
}

// Per-thread part of wgrad: for each unit f = first, first + step, ... < last of channel k (units of one
// channel numbered column group fastest, then strip, then image), acc[r*KS + s] += gy[n, k, p, q] *
// x[n, c, p*SH - pad_top + r, q*SW - pad_left + s] (c = k / m) over the unit's outputs with p < P, in a
// fixed order (unit, input row, output row, s, column). gy columns q >= Q read 0 (their products are 0);
// output rows p >= P are skipped. Bounds as fprop's for x; gy reads are checked against P and Q.
template <typename T, int KR, int KS, int SH, int SW, int VEC, int O>
__device__ __forceinline__ void dw2_wgrad_body(float (&acc)[KR * KS], const T* __restrict__ x,
                                               const T* __restrict__ gy, int C, int H, int W, int K, int P, int Q,
                                               int pad_top, int pad_left, int k, int c, int first, int last,
                                               int step, bool vec_gy, const FastDivisor& groups,
                                               const FastDivisor& strips) {
    typedef Accumulator<T> A;
    constexpr int V = Dw2Cols<T, KS, SW, true>::V;
    constexpr int SPAN = (V - 1) * SW + KS;
    constexpr int NV = (O + SPAN + VEC - 1) / VEC;
    constexpr int IN_ROWS = (DW2_ROWS - 1) * SH + KR;
    constexpr int AHEAD = Dw2Ahead<T, SPAN, VEC>::ROWS;
    const index_t plane_in = (index_t)H * W, plane_out = (index_t)P * Q;
    for (int f = first; f < last; f += step) {
        const int rest = groups.div(f);
        const int g = f - rest * groups.d;
        const int n = strips.div(rest);
        const int strip = rest - n * strips.d;
        const int p0 = strip * DW2_ROWS, q0 = g * V;
        const int row0 = p0 * SH - pad_top;
        const int a = q0 * SW - pad_left - O;
        const unsigned mask = dw2_column_mask<VEC, NV>(a, W);
        const T* xrow = x + ((index_t)n * C + c) * plane_in + (index_t)row0 * W + a;
        const T* grow = gy + ((index_t)n * K + k) * plane_out + (index_t)p0 * Q + q0;
        constexpr int GV = V / DW2_VEC;  // gy pieces per row
        const unsigned gmask = dw2_column_mask<DW2_VEC, GV>(q0, Q);
        // Columns of `in` that only the outputs past Q read (their gy is 0) are zeroed after loading, so that
        // an Inf or NaN of x that no window reads cannot reach gw as 0 * Inf (PyTorch's gw stays finite).
        const int q_valid = Q - q0;
        const int in_limit = q_valid >= V ? NV * VEC : O + (q_valid - 1) * SW + KS;
        Dw2Piece<T, DW2_VEC> graw[DW2_ROWS][GV];
        float gv[DW2_ROWS][V];
        Dw2Piece<T, VEC> raw[IN_ROWS][NV];
        float in[IN_ROWS][NV * VEC];
#pragma unroll
        for (int i = 0; i < IN_ROWS + AHEAD; ++i) {  // load rows i; convert rows i - AHEAD and add their products
            if (i < IN_ROWS) {
                if (i % SH == 0 && i / SH < DW2_ROWS) {  // gy row j = i / SH is first needed with input row i
                    const int j = i / SH;
                    const T* gp = grow + (index_t)j * Q;
                    const bool ok = p0 + j < P;
                    if (vec_gy) {
                        dw2_load_row<T, DW2_VEC, GV>(graw[j], gp, ok, gmask);
                    } else {
#pragma unroll
                        for (int v = 0; v < V; ++v) gv[j][v] = ok && q0 + v < Q ? Accumulator<T>::load(gp[v]) : 0.f;
                    }
                }
                dw2_load_row<T, VEC, NV>(raw[i], xrow + (index_t)i * W, row0 + i >= 0 && row0 + i < H, mask);
            }
            const int ready = i - AHEAD;
            if (ready < 0) continue;
            if (ready % SH == 0 && ready / SH < DW2_ROWS && vec_gy)
                dw2_convert<T, DW2_VEC, GV>(gv[ready / SH], graw[ready / SH]);
            dw2_convert<T, VEC, NV>(in[ready], raw[ready]);
            if (in_limit < NV * VEC) {  // a column group past Q: see in_limit
#pragma unroll
                for (int e = 0; e < NV * VEC; ++e)
                    if (e >= in_limit) in[ready][e] = 0.f;
            }
#pragma unroll
            for (int j = 0; j < DW2_ROWS; ++j) {
                const int r = ready - j * SH;
                if (r >= 0 && r < KR && p0 + j < P) {
#pragma unroll
                    for (int s = 0; s < KS; ++s)
#pragma unroll
                        for (int v = 0; v < V; ++v) acc[r * KS + s] += gv[j][v] * in[ready][O + v * SW + s];
                }
            }
        }
    }
}

// workspace[k, chunk, r*KS + s] = sum over the units [chunk*units_per_chunk, (chunk+1)*units_per_chunk)
// of channel k (dw2_wgrad_body's numbering; per_channel = N*strips*groups of them) of gy[n, k, p, q] *
// x[n, k / m, p*SH - pad_top + r, q*SW - pad_left + s]; conv2d_wgrad_depthwise_reduce (conv_depthwise.cu)
// then adds the chunks in order.
// Threads: one item (k, chunk) per block iteration (grid-stride over K*chunks, which the launcher checks
// is below 2^31); thread t takes units first + t, first + t + blockDim.x, ... (dw2_wgrad_body), then the
// block adds its threads' sums in a fixed order: per tap, lane l < 32 adds the sums of threads l, l+32,
// ... in turn, then one thread adds the 32 lane sums in turn. No atomics: bitwise reproducible.
// blockDim.x is a multiple of 32, at most DW2_THREADS. VEC and O as fprop's; vec_gy: Q % DW2_VEC == 0 and
// gy aligned to DW2_VEC elements (gy rows read as DW2_VEC-element vectors, each wholly in or out of the row).
// Divisors as (d, mul, shift) (FastDivisor): groups, strips, chunks, m = K / C.
template <typename T, int KR, int KS, int SH, int SW, int VEC, int O>
__global__ void __launch_bounds__(DW2_THREADS, (Dw2Blocks<KR, SH, true>::MIN))
conv2d_wgrad_depthwise_v2(const T* __restrict__ x, const T* __restrict__ gy,
                          typename Accumulator<T>::type* __restrict__ workspace, int C, int H, int W, int K, int P,
                          int Q, int pad_top, int pad_left, int vec_gy, int per_channel,
                          int units_per_chunk, int groups, int groups_mul, int groups_shift, int strips,
                          int strips_mul, int strips_shift, int chunks, int chunks_mul, int chunks_shift, int m,
                          int m_mul, int m_shift) {
    constexpr int TAPS = KR * KS;
    __shared__ float red[TAPS * DW2_THREADS];
    const FastDivisor dg(groups, groups_mul, groups_shift), ds(strips, strips_mul, strips_shift),
        dc(chunks, chunks_mul, chunks_shift), dm(m, m_mul, m_shift);
    const int t = (int)threadIdx.x, B = (int)blockDim.x;
    const int items = K * chunks;
    for (int item = (int)blockIdx.x; item < items; item += (int)gridDim.x) {
        const int k = dc.div(item);
        const int chunk = item - k * chunks;
        const int c = dm.div(k);
        const int first = chunk * units_per_chunk;
        const int last = per_channel - first < units_per_chunk ? per_channel : first + units_per_chunk;
        float acc[TAPS];
#pragma unroll
        for (int i = 0; i < TAPS; ++i) acc[i] = 0.f;
        dw2_wgrad_body<T, KR, KS, SH, SW, VEC, O>(acc, x, gy, C, H, W, K, P, Q, pad_top, pad_left, k, c, first + t,
                                                  last, B, vec_gy != 0, dg, ds);
#pragma unroll
        for (int i = 0; i < TAPS; ++i) red[i * DW2_THREADS + t] = acc[i];
        __syncthreads();
        for (int e = t; e < TAPS * 32; e += B) {  // (tap, lane): lane adds threads lane, lane + 32, ...
            const int i = e / 32, lane = e % 32;
            float sum = 0.f;
            for (int src = lane; src < B; src += 32) sum += red[i * DW2_THREADS + src];
            red[i * DW2_THREADS + lane] = sum;  // entry `lane` of tap i: read and written by this thread only
        }
        __syncthreads();
        for (int i = t; i < TAPS; i += B) {
            float sum = 0.f;
            for (int lane = 0; lane < 32; ++lane) sum += red[i * DW2_THREADS + lane];
            workspace[(index_t)item * TAPS + i] = sum;
        }
        __syncthreads();  // the next item overwrites red
    }
}
