// conv2d forward (fprop) as an implicit GEMM, per group g (blockIdx.z):
//
//   y[n, g*Kg + k, p, q] = bias[g*Kg + k]
//       + sum_{c < Cg, r < R, s < S} x[n, g*Cg + c, p*stride_h - pad_h + r*dil_h, q*stride_w - pad_w + s*dil_w]
//                                    * w[g*Kg + k, c, r, s]
//
// GEMM:  M = N*P*Q rows m = (n, p, q);  Ncols = Kg columns k;  Kdim = Cg*R*S, kd = (c, r, s) = w's own
// order, so B is w viewed as a row-major Kg x Kdim matrix and A is the virtual im2col matrix of x.
// Blocks: blockIdx.x tiles M by BM, blockIdx.y tiles Kg by BN, blockIdx.z = g. 256 threads.
// Loads: A tile with a warp along m (consecutive q: coalesced at stride 1), B tile with a warp along kd.
// Bounds: m < M, k < Kg, kd < Kdim, and 0 <= h < H, 0 <= w < W per element (zero-filled otherwise);
// pad_bottom / pad_right never enter (they only fixed P and Q on the host).
//
// Kernels (each a step of optimisation; the simpler ones stay as the reference for the faster):
//   conv2d_fprop_implicit_gemm_simt<float, BM, BN, 1>      tiled, register-tiled, unpipelined
//   conv2d_fprop_implicit_gemm_simt<float, BM, BN, STAGES> the same with a STAGES-deep cp.async ring
//   conv2d_fprop_implicit_gemm_mma<__half, BM, BN, 2>      tensor cores, mma.m16n8k16, float32 accumulation
//   conv2d_fprop_implicit_gemm_mma<float, BM, BN, STAGES>  tensor cores in TF32 (only when the user opts in)
#include "implicit_gemm.cuh"

namespace igemm {

// A: the im2col matrix of x for group g. Row m = (n, p, q), k = (c, r, s).
template <typename T>
struct FpropActivation {
    const T* ptr;
    ConvSize z;
    int M, Kdim;
    int64 group_offset;  // g*Cg*H*W

    struct Row { int64 base; int h0, w0; bool valid; };
    struct K { int64 coff; int dr, ds; bool valid; };

    __device__ Row row(int m) const {
        Row r;
        r.valid = m < M;
        int mm = r.valid ? m : 0;
        int q = mm % z.Q, t = mm / z.Q;
        int p = t % z.P, n = t / z.P;
        r.base = n * z.CHW + group_offset;
        r.h0 = p * z.stride_h - z.pad_h;
        r.w0 = q * z.stride_w - z.pad_w;
        return r;
    }
    __device__ K k(int kd) const {
        K k;
        k.valid = kd < Kdim;
        int c = kd / z.RS, rs = kd - c * z.RS;
        int r = rs / z.S, s = rs - r * z.S;
        k.coff = c * z.HW;
        k.dr = r * z.dil_h;
        k.ds = s * z.dil_w;
        return k;
    }
    __device__ __forceinline__ int64 offset(const Row& row, const K& k) const {
        int h = row.h0 + k.dr, w = row.w0 + k.ds;
        bool inside = row.valid && k.valid && (unsigned)h < (unsigned)z.H && (unsigned)w < (unsigned)z.W;
        return inside ? row.base + k.coff + (int64)h * z.W + w : -1;
    }
};

// B: the filters of group g, row n = filter, k = (c, r, s): w viewed as Kg x (Cg*R*S), contiguous in k.
template <typename T>
struct FpropFilter {
    const T* ptr;
    int rows, Kdim;
    int64 group_offset;  // g*Kg*Cg*R*S

    struct Row { int64 base; bool valid; };
    struct K { int kd; bool valid; };

    __device__ Row row(int n) const { return Row{group_offset + (int64)n * Kdim, n < rows}; }
    __device__ K k(int kd) const { return K{kd, kd < Kdim}; }
    __device__ __forceinline__ int64 offset(const Row& row, const K& k) const {
        return row.valid && k.valid ? row.base + k.kd : -1;
    }
};

// Writes y[n, g*Kg + k, p, q] = acc + bias.
template <typename T>
struct FpropEpilogue {
    T* y;
    const T* bias;  // nullptr: no bias
    ConvSize z;
    int M, g;

    struct Row { int64 base; bool valid; };
    struct Col { int64 off; float bias; bool valid; };

    __device__ Row row(int m) const {
        bool valid = m < M;
        int mm = valid ? m : 0;
        int64 n = mm / z.PQ, pq = mm - n * z.PQ;
        return Row{n * z.KPQ + pq, valid};
    }
    __device__ Col col(int k) const {
        bool valid = k < z.Kg;
        int kk = g * z.Kg + (valid ? k : 0);
        return Col{kk * z.PQ, (bias != nullptr && valid) ? Accumulator<T>::load(bias[kk]) : 0.0f, valid};
    }
    __device__ __forceinline__ void store(const Row& r, const Col& c, float v) const {
        if (r.valid && c.valid) y[r.base + c.off] = Accumulator<T>::store(v + c.bias);
    }
};

// The kernel body shared by every variant: Acc picks CUDA cores or tensor cores, BK and STAGES the copy.
template <typename T, int BM, int BN, int BK, int STAGES, class Acc>
__device__ __forceinline__ void fprop_body(const T* x, const T* w, const T* bias, T* y, const ConvSize& z) {
    const int g = blockIdx.z;
    const int M = z.N * z.P * z.Q;  // fits in int32: checked on the host
    const int Kdim = z.Cg * z.RS;
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;

    FpropActivation<T> a{x, z, M, Kdim, (int64)g * z.Cg * z.HW};
    FpropFilter<T> b{w, z.Kg, Kdim, (int64)g * z.Kg * Kdim};
    TileLoader<T, FpropActivation<T>, BM, BK, 256, false> la(a, m0);
    TileLoader<T, FpropFilter<T>, BN, BK, 256, true> lb(b, n0);
    Acc acc;
    mainloop<T, BM, BN, BK, STAGES>(la, lb, 0, Kdim, acc);
    acc.store(FpropEpilogue<T>{y, bias, z, M, g}, m0, n0);
}

}  // namespace igemm

// Arguments common to the fprop kernels: x (N, C, H, W), w (K, C/groups, R, S), bias (K) or a null pointer,
// y (N, K, P, Q), all contiguous; then the sizes as int32.
#define IGEMM_FPROP_PARAMS                                                                                   \
    const T *__restrict__ x, const T *__restrict__ w, const T *__restrict__ bias, T *__restrict__ y, int N, \
        int C, int H, int W, int K, int R, int S, int P, int Q, int stride_h, int stride_w, int pad_h,      \
        int pad_w, int dil_h, int dil_w, int groups
#define IGEMM_CONV_SIZE \
    igemm::make_conv_size(N, C, H, W, K, R, S, P, Q, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups)

template <typename T, int BM, int BN, int STAGES>
__global__ void __launch_bounds__(256) conv2d_fprop_implicit_gemm_simt(IGEMM_FPROP_PARAMS) {
    using namespace igemm;
    static_assert(sizeof(T) == 4, "the SIMT kernel is float32");
    fprop_body<T, BM, BN, SIMT_BK, STAGES, SimtAccumulator<BM, BN, SIMT_BK>>(x, w, bias, y, IGEMM_CONV_SIZE);
}

template <typename T, int BM, int BN, int STAGES>
__global__ void __launch_bounds__(256) conv2d_fprop_implicit_gemm_mma(IGEMM_FPROP_PARAMS) {
    using namespace igemm;
    constexpr int BK = MmaBK<T>::value;
    fprop_body<T, BM, BN, BK, STAGES, MmaAccumulator<T, BM, BN, BK>>(x, w, bias, y, IGEMM_CONV_SIZE);
}
