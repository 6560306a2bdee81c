// conv2d input gradient (dgrad; also conv_transpose2d's forward) as an implicit GEMM, per group g and
// stride phase:
//
//   gx[n, g*Cg + c, h, w] = bias[g*Cg + c]
//       + sum over k < Kg and the taps (r, s) with p = (h + pad_h - r*dil_h) / stride_h an integer in [0, P)
//         and q = (w + pad_w - s*dil_w) / stride_w an integer in [0, Q) of  gy[n, g*Kg + k, p, q] * w[g*Kg + k, c, r, s]
//
// Strided dgrad without wasted taps (CUTLASS's "strided dgrad"): pixels are split into stride_h*stride_w
// phases by (ph, pw) = ((h + pad_h) mod stride_h, (w + pad_w) mod stride_w). Within a phase exactly the taps
// with r*dil_h = ph (mod stride_h) hit, i.e. r = r_first + j*step_r with step_r = stride_h / gcd(stride_h,
// dil_h) (s alike), and they hit for every pixel of the phase; only the p, q range checks remain. So each
// phase is a dense GEMM:
//   M = N*Hph*Wph rows m = (n, i, j), h = h_first + i*stride_h, w = w_first + j*stride_w
//   Ncols = Cg columns c;  Kdim = Kg*Rph*Sph, kd = (k, jr, js)
// and p = hp - tr with hp = (h + pad_h - ph) / stride_h per row and tr = (r*dil_h - ph) / stride_h per tap
// (both exact): no division per element. A phase with no tap (Rph or Sph 0) still writes its pixels
// (bias or 0). Stride 1 is one phase holding every pixel and every tap.
// Blocks: blockIdx.x tiles M of the largest phase (blocks past their phase's M exit), blockIdx.y tiles Cg by
// BN, blockIdx.z = g*stride_h*stride_w + phase. 256 threads.
// Bounds: m < M, c < Cg, kd < Kdim, 0 <= p < P, 0 <= q < Q per element.
//
// Kernels (steps of optimisation, as in implicit_gemm_fprop.cu):
//   conv2d_dgrad_implicit_gemm_simt<float, BM, BN, STAGES>  (STAGES 1: unpipelined reference)
//   conv2d_dgrad_implicit_gemm_mma<__half, BM, BN, 2>, conv2d_dgrad_implicit_gemm_mma<float, BM, BN, STAGES> (TF32)
#include "implicit_gemm.cuh"

namespace igemm {

// One stride phase along one axis: the pixels h = first + i*stride (i < count) and the taps
// r = tap_first + j*tap_step (j < taps) that reach them.
struct AxisPhase {
    int first, count, tap_first, tap_step, taps, residue;
};

__device__ __forceinline__ int gcd_int(int a, int b) {
    while (b != 0) {
        int t = a % b;
        a = b;
        b = t;
    }
    return a;
}

__device__ AxisPhase make_axis_phase(int residue, int size, int pad, int stride, int taps, int dil) {
    AxisPhase a;
    a.residue = residue;
    a.first = ((residue - pad) % stride + stride) % stride;
    a.count = a.first < size ? (size - 1 - a.first) / stride + 1 : 0;
    a.tap_step = stride / gcd_int(stride, dil);  // tap*dil mod stride repeats with this period
    a.tap_first = -1;
    for (int r = 0; r < taps && r < a.tap_step; ++r)
        if ((r * dil) % stride == residue) {
            a.tap_first = r;
            break;
        }
    a.taps = a.tap_first < 0 ? 0 : (taps - 1 - a.tap_first) / a.tap_step + 1;
    return a;
}

// The pixel of GEMM row m of a phase.
struct PhasePixel { int n, h, w; };

__device__ __forceinline__ PhasePixel phase_pixel(int m, const AxisPhase& ph, const AxisPhase& pw, int stride_h,
                                                  int stride_w) {
    int j = m % pw.count, t = m / pw.count;
    int i = t % ph.count, n = t / ph.count;
    return PhasePixel{n, ph.first + i * stride_h, pw.first + j * stride_w};
}

// A: gy gathered for one phase. Row m = pixel (n, h, w), k = (k, jr, js).
template <typename T>
struct DgradGradOutput {
    const T* ptr;
    ConvSize z;
    AxisPhase ph, pw;
    int M, Kdim;
    int64 group_offset;  // g*Kg*P*Q

    struct Row { int64 base; int hp, wp; bool valid; };
    struct K { int64 koff; int tr, ts; bool valid; };

    __device__ Row row(int m) const {
        Row r;
        r.valid = m < M;
        PhasePixel px = phase_pixel(r.valid ? m : 0, ph, pw, z.stride_h, z.stride_w);
        r.base = px.n * z.KPQ + group_offset;
        r.hp = (px.h + z.pad_h - ph.residue) / z.stride_h;
        r.wp = (px.w + z.pad_w - pw.residue) / z.stride_w;
        return r;
    }
    __device__ K k(int kd) const {
        K k;
        k.valid = kd < Kdim;
        int taps = ph.taps * pw.taps;
        int kk = kd / taps, rem = kd - kk * taps;
        int jr = rem / pw.taps, js = rem - jr * pw.taps;
        int r = ph.tap_first + jr * ph.tap_step, s = pw.tap_first + js * pw.tap_step;
        k.koff = kk * z.PQ;
        k.tr = (r * z.dil_h - ph.residue) / z.stride_h;
        k.ts = (s * z.dil_w - pw.residue) / z.stride_w;
        return k;
    }
    __device__ __forceinline__ int64 offset(const Row& row, const K& k) const {
        int p = row.hp - k.tr, q = row.wp - k.ts;
        bool inside = row.valid && k.valid && (unsigned)p < (unsigned)z.P && (unsigned)q < (unsigned)z.Q;
        return inside ? row.base + k.koff + (int64)p * z.Q + q : -1;
    }
};

// B: w[g*Kg + k, c, r, s] as a Kdim x Cg matrix, row (GEMM column) c, k = (k, jr, js).
template <typename T>
struct DgradFilter {
    const T* ptr;
    ConvSize z;
    AxisPhase ph, pw;
    int Kdim;
    int64 group_offset;  // g*Kg*Cg*R*S

    struct Row { int64 base; bool valid; };
    struct K { int64 koff; bool valid; };

    __device__ Row row(int c) const { return Row{(int64)c * z.RS, c < z.Cg}; }
    __device__ K k(int kd) const {
        int taps = ph.taps * pw.taps;
        int valid = kd < Kdim;
        int kk = kd / taps, rem = kd - kk * taps;
        int jr = rem / pw.taps, js = rem - jr * pw.taps;
        int r = ph.tap_first + jr * ph.tap_step, s = pw.tap_first + js * pw.tap_step;
        return K{group_offset + (int64)kk * z.Cg * z.RS + r * z.S + s, valid != 0};
    }
    __device__ __forceinline__ int64 offset(const Row& row, const K& k) const {
        return row.valid && k.valid ? row.base + k.koff : -1;
    }
};

// Writes gx[n, g*Cg + c, h, w] = acc + bias.
template <typename T>
struct DgradEpilogue {
    T* gx;
    const T* bias;  // nullptr: no bias
    ConvSize z;
    AxisPhase ph, pw;
    int M, g;

    struct Row { int64 base; bool valid; };
    struct Col { int64 off; float bias; bool valid; };

    __device__ Row row(int m) const {
        bool valid = m < M;
        PhasePixel px = phase_pixel(valid ? m : 0, ph, pw, z.stride_h, z.stride_w);
        return Row{px.n * z.CHW + (int64)px.h * z.W + px.w, valid};
    }
    __device__ Col col(int c) const {
        bool valid = c < z.Cg;
        int cc = g * z.Cg + (valid ? c : 0);
        return Col{cc * z.HW, (bias != nullptr && valid) ? Accumulator<T>::load(bias[cc]) : 0.0f, valid};
    }
    __device__ __forceinline__ void store(const Row& r, const Col& c, float v) const {
        if (r.valid && c.valid) gx[r.base + c.off] = Accumulator<T>::store(v + c.bias);
    }
};

template <typename T, int BM, int BN, int BK, int STAGES, class Acc>
__device__ __forceinline__ void dgrad_body(const T* gy, const T* w, const T* bias, T* gx, const ConvSize& z) {
    const int phases = z.stride_h * z.stride_w;
    const int g = blockIdx.z / phases, phase = blockIdx.z % phases;
    const AxisPhase ph = make_axis_phase(phase / z.stride_w, z.H, z.pad_h, z.stride_h, z.R, z.dil_h);
    const AxisPhase pw = make_axis_phase(phase % z.stride_w, z.W, z.pad_w, z.stride_w, z.S, z.dil_w);
    const int M = z.N * ph.count * pw.count;  // fits in int32: checked on the host
    const int Kdim = z.Kg * ph.taps * pw.taps;
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
    if (m0 >= M) return;  // the whole block: this phase has fewer pixels than the largest

    DgradGradOutput<T> a{gy, z, ph, pw, M, Kdim, (int64)g * z.Kg * z.PQ};
    DgradFilter<T> b{w, z, ph, pw, Kdim, (int64)g * z.Kg * z.Cg * z.RS};
    TileLoader<T, DgradGradOutput<T>, BM, BK, 256, false> la(a, m0);
    TileLoader<T, DgradFilter<T>, BN, BK, 256, false> lb(b, n0);  // c has the smaller stride (R*S)
    Acc acc;
    mainloop<T, BM, BN, BK, STAGES>(la, lb, 0, Kdim, acc);
    acc.store(DgradEpilogue<T>{gx, bias, z, ph, pw, M, g}, m0, n0);
}

}  // namespace igemm

// Arguments common to the dgrad kernels: gy (N, K, P, Q), w (K, C/groups, R, S), bias (C) or a null
// pointer, gx (N, C, H, W), all contiguous; then the sizes as int32.
#define IGEMM_DGRAD_PARAMS                                                                                     \
    const T *__restrict__ gy, const T *__restrict__ w, const T *__restrict__ bias, T *__restrict__ gx, int N, \
        int C, int H, int W, int K, int R, int S, int P, int Q, int stride_h, int stride_w, int pad_h,        \
        int pad_w, int dil_h, int dil_w, int groups
#define IGEMM_CONV_SIZE \
    igemm::make_conv_size(N, C, H, W, K, R, S, P, Q, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups)

template <typename T, int BM, int BN, int STAGES>
__global__ void __launch_bounds__(256) conv2d_dgrad_implicit_gemm_simt(IGEMM_DGRAD_PARAMS) {
    using namespace igemm;
    static_assert(sizeof(T) == 4, "the SIMT kernel is float32");
    dgrad_body<T, BM, BN, SIMT_BK, STAGES, SimtAccumulator<BM, BN, SIMT_BK>>(gy, w, bias, gx, IGEMM_CONV_SIZE);
}

template <typename T, int BM, int BN, int STAGES>
__global__ void __launch_bounds__(256) conv2d_dgrad_implicit_gemm_mma(IGEMM_DGRAD_PARAMS) {
    using namespace igemm;
    constexpr int BK = MmaBK<T>::value;
    dgrad_body<T, BM, BN, BK, STAGES, MmaAccumulator<T, BM, BN, BK>>(gy, w, bias, gx, IGEMM_CONV_SIZE);
}
