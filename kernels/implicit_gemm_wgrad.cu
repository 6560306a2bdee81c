// conv2d weight gradient (wgrad) as an implicit GEMM, per group g, with a deterministic split of the
// reduction:
//
//   gw[g*Kg + k, c, r, s] = sum_{n, p, q} gy[n, g*Kg + k, p, q]
//                                        * x[n, g*Cg + c, p*stride_h - pad_h + r*dil_h, q*stride_w - pad_w + s*dil_w]
//
// GEMM:  M = Kg rows k;  Ncols = Cg*R*S columns (c, r, s) (gw's own order);  Kdim = N*P*Q, kd = (n, p, q).
// A is gy viewed as Kg x (N*P*Q) (contiguous along p, q), B is the transposed im2col matrix of x.
// Split-K: Kdim is cut into `splits` chunks of k_chunk (a multiple of BK); split sp of group g
// (blockIdx.z = g*splits + sp) writes its partial sums, float32, to workspace[sp, g*Kg + k, (c, r, s)].
// conv2d_wgrad_reduce_splits then adds the splits in order sp = 0, 1, ... : no atomics, bitwise
// reproducible, and the same result for any launch order.
// Blocks: blockIdx.x tiles Kg by BM, blockIdx.y tiles Cg*R*S by BN. 256 threads. Both tiles are loaded with a
// warp along kd (consecutive q).
// Bounds: k < Kg, (c, r, s) < Cg*R*S, kd < min(Kdim, chunk end), 0 <= h < H, 0 <= w < W per element.
//
// Kernels (steps of optimisation, as in implicit_gemm_fprop.cu):
//   conv2d_wgrad_implicit_gemm_simt<float, BM, BN, STAGES>  (STAGES 1: unpipelined reference)
//   conv2d_wgrad_implicit_gemm_mma<__half, BM, BN, 2>, conv2d_wgrad_implicit_gemm_mma<float, BM, BN, STAGES> (TF32)
//   conv2d_wgrad_reduce_splits<T>
#include "implicit_gemm.cuh"

namespace igemm {

// A: gy of group g as Kg x (N*P*Q). Row = filter k, k = (n, p, q).
template <typename T>
struct WgradGradOutput {
    const T* ptr;
    ConvSize z;
    int k_end;
    int64 group_offset;  // g*Kg*P*Q

    struct Row { int64 base; bool valid; };
    struct K { int64 koff; bool valid; };

    __device__ Row row(int k) const { return Row{group_offset + k * z.PQ, k < z.Kg}; }
    __device__ K k(int kd) const {
        int64 n = kd / z.PQ, pq = kd - n * z.PQ;
        return K{n * z.KPQ + pq, kd < k_end};
    }
    __device__ __forceinline__ int64 offset(const Row& row, const K& k) const {
        return row.valid && k.valid ? row.base + k.koff : -1;
    }
};

// B: the transposed im2col matrix of x for group g. Row = (c, r, s), k = (n, p, q).
template <typename T>
struct WgradActivation {
    const T* ptr;
    ConvSize z;
    int k_end;
    int64 group_offset;  // g*Cg*H*W

    struct Row { int64 coff; int dr, ds; bool valid; };
    struct K { int64 base; int h0, w0; bool valid; };

    __device__ Row row(int crs) const {
        Row r;
        r.valid = crs < z.Cg * z.RS;
        int c = crs / z.RS, rs = crs - c * z.RS;
        int rr = rs / z.S, s = rs - rr * z.S;
        r.coff = group_offset + c * z.HW;
        r.dr = rr * z.dil_h;
        r.ds = s * z.dil_w;
        return r;
    }
    __device__ K k(int kd) const {
        K k;
        k.valid = kd < k_end;
        int q = kd % z.Q, t = kd / z.Q;
        int p = t % z.P, n = t / z.P;
        k.base = n * z.CHW;
        k.h0 = p * z.stride_h - z.pad_h;
        k.w0 = q * z.stride_w - z.pad_w;
        return k;
    }
    __device__ __forceinline__ int64 offset(const Row& row, const K& k) const {
        int h = k.h0 + row.dr, w = k.w0 + row.ds;
        bool inside = row.valid && k.valid && (unsigned)h < (unsigned)z.H && (unsigned)w < (unsigned)z.W;
        return inside ? k.base + row.coff + (int64)h * z.W + w : -1;
    }
};

// Writes the split's partial sums: workspace[sp, g*Kg + k, crs] (float32).
struct WgradEpilogue {
    float* workspace;
    int64 row0;  // (sp*K + g*Kg)
    int rows, cols;

    struct Row { int64 base; bool valid; };
    struct Col { int n; bool valid; };

    __device__ Row row(int k) const { return Row{(row0 + k) * cols, k < rows}; }
    __device__ Col col(int n) const { return Col{n, n < cols}; }
    __device__ __forceinline__ void store(const Row& r, const Col& c, float v) const {
        if (r.valid && c.valid) workspace[r.base + c.n] = v;
    }
};

template <typename T, int BM, int BN, int BK, int STAGES, class Acc>
__device__ __forceinline__ void wgrad_body(const T* x, const T* gy, float* workspace, const ConvSize& z,
                                           int splits, int k_chunk) {
    const int g = blockIdx.z / splits, sp = blockIdx.z % splits;
    const int Kdim = z.N * z.P * z.Q;  // fits in int32: checked on the host
    const int k_begin = min(sp * k_chunk, Kdim), k_end = min(k_begin + k_chunk, Kdim);
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;

    WgradGradOutput<T> a{gy, z, k_end, (int64)g * z.Kg * z.PQ};
    WgradActivation<T> b{x, z, k_end, (int64)g * z.Cg * z.HW};
    TileLoader<T, WgradGradOutput<T>, BM, BK, 256, true> la(a, m0);
    TileLoader<T, WgradActivation<T>, BN, BK, 256, true> lb(b, n0);
    Acc acc;
    mainloop<T, BM, BN, BK, STAGES>(la, lb, k_begin, k_end, acc);
    acc.store(WgradEpilogue{workspace, (int64)sp * z.K + (int64)g * z.Kg, z.Kg, z.Cg * z.RS}, m0, n0);
}

}  // namespace igemm

// Arguments common to the wgrad kernels: x (N, C, H, W), gy (N, K, P, Q), contiguous; workspace float32
// (splits, K, C/groups*R*S); the sizes as int32; splits and k_chunk (a multiple of the kernel's BK, with
// splits*k_chunk >= N*P*Q).
#define IGEMM_WGRAD_PARAMS                                                                                      \
    const T *__restrict__ x, const T *__restrict__ gy, float *__restrict__ workspace, int N, int C, int H, int W, \
        int K, int R, int S, int P, int Q, int stride_h, int stride_w, int pad_h, int pad_w, int dil_h,          \
        int dil_w, int groups, int splits, int k_chunk
#define IGEMM_CONV_SIZE \
    igemm::make_conv_size(N, C, H, W, K, R, S, P, Q, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups)

template <typename T, int BM, int BN, int STAGES>
__global__ void __launch_bounds__(256) conv2d_wgrad_implicit_gemm_simt(IGEMM_WGRAD_PARAMS) {
    using namespace igemm;
    static_assert(sizeof(T) == 4, "the SIMT kernel is float32");
    wgrad_body<T, BM, BN, SIMT_BK, STAGES, SimtAccumulator<BM, BN, SIMT_BK>>(x, gy, workspace, IGEMM_CONV_SIZE,
                                                                            splits, k_chunk);
}

template <typename T, int BM, int BN, int STAGES>
__global__ void __launch_bounds__(256) conv2d_wgrad_implicit_gemm_mma(IGEMM_WGRAD_PARAMS) {
    using namespace igemm;
    constexpr int BK = MmaBK<T>::value;
    // float16 fragments gathered element by element: ldmatrix measured slower in wgrad (MmaAccumulator)
    wgrad_body<T, BM, BN, BK, STAGES, MmaAccumulator<T, BM, BN, BK, false>>(x, gy, workspace, IGEMM_CONV_SIZE,
                                                                            splits, k_chunk);
}

// gw[i] = sum_{sp = 0 .. splits-1} workspace[sp, i], in that order, rounded once to T.
// One thread per element of gw (grid-stride); count = K * C/groups * R * S.
template <typename T>
__global__ void conv2d_wgrad_reduce_splits(const float *__restrict__ workspace, T *__restrict__ gw, int splits,
                                           long long count) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < count;
         i += (long long)gridDim.x * blockDim.x) {
        float sum = 0.0f;
        for (int sp = 0; sp < splits; ++sp) sum += workspace[sp * count + i];
        gw[i] = Accumulator<T>::store(sum);
    }
}
