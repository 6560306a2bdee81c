// Implicit-GEMM convolution: the parts shared by fprop, dgrad and wgrad.
//
// Every pass is one GEMM per group, D[M x Ncols] = A[M x Kdim] * B[Kdim x Ncols], whose operands are views
// of the NCHW tensors that are never materialised (no im2col workspace): an "operand" object turns a
// (row, k) pair into a global offset, or -1 where the virtual matrix holds a zero (padding, a tap that
// misses, a row or k past the end). The mapping of each pass (CUTLASS's) lives in its own .cu file:
//
//   fprop  M = N*P*Q   Ncols = K/groups   Kdim = (C/groups)*R*S
//   dgrad  M = N*H*W   Ncols = C/groups   Kdim = (K/groups)*R*S   (only the taps that hit, per stride phase)
//   wgrad  M = K/groups Ncols = (C/groups)*R*S  Kdim = N*P*Q      (split into fixed chunks, reduced in order)
//
// What is here:
//   ConvSize           the problem, built from the kernel's int arguments
//   TileLoader         copies a BK x ROWS tile of an operand to shared memory, stored [BK][ROWS + pad]
//   SimtAccumulator    float32 register tiling on CUDA cores (TM x TN outputs per thread)
//   MmaAccumulator     tensor cores: mma.sync m16n8k16 (float16, bfloat16) or m16n8k8 (TF32), float32 accumulators
//   mainloop_*         the k loop: a multi-stage cp.async ring (4-byte elements) or a register-staged
//                      double buffer (2-byte elements: cp.async cannot move fewer than 4 bytes, and a
//                      gathered im2col element is a lone half)
//
// Index widths: sizes, GEMM row and k indices fit in int32 (the host checks it, see implicit_gemm.py);
// every offset into a tensor is int64, so tensors past 2^31 elements are addressed correctly.
#pragma once

#include "cp_async.cuh"
#include "types.cuh"

namespace igemm {

typedef long long int64;

// ------------------------------------------------------------------------------------------ problem

struct ConvSize {
    int N, C, H, W, K, R, S, P, Q;
    int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;  // pad_h / pad_w: top / left padding only
    int groups, Cg, Kg;                                   // Cg = C / groups, Kg = K / groups
    int64 HW, PQ, CHW, KPQ;                               // plane and image sizes, 64-bit
    int RS;
};

__device__ __forceinline__ ConvSize make_conv_size(int N, int C, int H, int W, int K, int R, int S, int P, int Q,
                                                   int stride_h, int stride_w, int pad_h, int pad_w,
                                                   int dil_h, int dil_w, int groups) {
    ConvSize z;
    z.N = N; z.C = C; z.H = H; z.W = W; z.K = K; z.R = R; z.S = S; z.P = P; z.Q = Q;
    z.stride_h = stride_h; z.stride_w = stride_w; z.pad_h = pad_h; z.pad_w = pad_w;
    z.dil_h = dil_h; z.dil_w = dil_w;
    z.groups = groups; z.Cg = C / groups; z.Kg = K / groups;
    z.HW = (int64)H * W; z.PQ = (int64)P * Q;
    z.CHW = (int64)C * z.HW; z.KPQ = (int64)K * z.PQ;
    z.RS = R * S;
    return z;
}

// ------------------------------------------------------------------------------------ element types

// Shared-memory rows are padded by 16 bytes: keeps 16-byte alignment and spreads the column stores of the
// k-fast loaders over the banks.
template <typename T> struct SmemPad { static constexpr int value = 16 / sizeof(T); };

// ------------------------------------------------------------------------------------- tile loader

// Copies the BK x ROWS tile of an operand whose k range starts at k0 into shared memory stored
// [BK][ROWS + pad] (row index fastest). The threads form a 32 x (THREADS/32) grid: 32 along rows and
// TK = THREADS/32 along k. K_FAST swaps which of the two a warp's lanes run along, so that a warp reads
// consecutive addresses of the tensor: rows (K_FAST false: im2col rows, output pixels) or k (K_FAST true:
// filter rows, whose k is contiguous). Each thread owns the same rows and the same k offsets in every tile:
// per-row index math (Op::row) runs once, per-k math (Op::k) once per tile and owned k.
//
// Op provides:  struct Row; struct K;  Row row(int r) const;  K k(int kk) const;
//               int64 offset(const Row&, const K&) const   (-1: the element is zero)
//               const T* ptr;
template <typename T, class Op, int ROWS, int BK, int THREADS, bool K_FAST>
struct TileLoader {
    static constexpr int TR = 32;                 // threads along rows
    static constexpr int TK = THREADS / 32;       // threads along k
    static constexpr int RJ = ROWS / TR;          // rows per thread
    static constexpr int KI = BK / TK;            // k values per thread
    static constexpr int LD = ROWS + SmemPad<T>::value;
    static_assert(THREADS % 32 == 0 && ROWS % TR == 0 && BK % TK == 0, "tile does not divide among threads");

    const Op& op;
    int row_lane, k_lane;
    typename Op::Row rows[RJ];

    __device__ TileLoader(const Op& op_, int row0) : op(op_) {
        int t = threadIdx.x;
        row_lane = K_FAST ? (t / TK) % TR : t % TR;
        k_lane = K_FAST ? t % TK : t / TR;
#pragma unroll
        for (int j = 0; j < RJ; ++j) rows[j] = op.row(row0 + row_lane + j * TR);
    }

    __device__ __forceinline__ int smem_index(int i, int j) const {
        return (k_lane + i * TK) * LD + row_lane + j * TR;
    }

    // Calls f(element number, shared index, global offset or -1) for every element this thread owns.
    template <class F> __device__ __forceinline__ void for_each(int k0, F f) const {
#pragma unroll
        for (int i = 0; i < KI; ++i) {
            typename Op::K kinfo = op.k(k0 + k_lane + i * TK);
#pragma unroll
            for (int j = 0; j < RJ; ++j) f(i * RJ + j, smem_index(i, j), op.offset(rows[j], kinfo));
        }
    }

    // cp.async path (4-byte elements).
    __device__ __forceinline__ void issue_async(T* smem, int k0) const {
        const T* base = op.ptr;
        for_each(k0, [&](int, int s, int64 off) { cp_async_4(smem + s, off >= 0 ? base + off : base, off >= 0); });
    }

    // Register-staged path: fetch() loads this thread's elements of a tile into registers; store() writes
    // them to shared memory later, after the current tile's math has hidden the load latency.
    __device__ __forceinline__ void fetch(T (&regs)[KI * RJ], int k0) const {
        const T* base = op.ptr;
        for_each(k0, [&](int e, int, int64 off) { regs[e] = off >= 0 ? base[off] : Accumulator<T>::store(0.0f); });
    }
    __device__ __forceinline__ void store(const T (&regs)[KI * RJ], T* smem) const {
#pragma unroll
        for (int i = 0; i < KI; ++i)
#pragma unroll
            for (int j = 0; j < RJ; ++j) smem[smem_index(i, j)] = regs[i * RJ + j];
    }
};

// ------------------------------------------------------------------------------------- epilogue

// The accumulators hand each output to an Epilogue with
//   struct Row; struct Col;  Row row(int m) const;  Col col(int n) const;  void store(Row, Col, float);
// row()/col() carry their own bounds flag, so the per-element work is one add and one store.

// --------------------------------------------------------------------------- SIMT register tiling

// float32 on CUDA cores. 256 threads as a 16 x 16 grid; thread (tx = t % 16, ty = t / 16) owns
// TM = BM/16 rows and TN = BN/16 columns, in groups of 4 spaced BM/(TM/4) (resp. BN/(TN/4)) apart, so a
// warp's float4 reads of a shared-memory k row are conflict-free (A: 16 distinct float4, B: broadcast).
// Lanes run along M so that the epilogue's stores of one instruction fall close together along P*Q.
template <int BM, int BN, int BK>
struct SimtAccumulator {
    static constexpr int THREADS = 256;
    static constexpr int TM = BM / 16, TN = BN / 16;
    static_assert(TM % 4 == 0 && TN % 4 == 0, "SIMT tile needs BM, BN multiples of 64");
    static constexpr int LDA = BM + 4, LDB = BN + 4;
    float acc[TM][TN];
    int tx, ty;

    __device__ SimtAccumulator() {
        tx = threadIdx.x % 16;
        ty = threadIdx.x / 16;
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;
    }
    __device__ __forceinline__ int row(int i) const { return (i / 4) * (BM / (TM / 4)) + tx * 4 + i % 4; }
    __device__ __forceinline__ int col(int j) const { return (j / 4) * (BN / (TN / 4)) + ty * 4 + j % 4; }

    __device__ __forceinline__ void step(const float* As, const float* Bs) {
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            float a[TM], b[TN];
#pragma unroll
            for (int i = 0; i < TM; i += 4) {
                float4 v = *reinterpret_cast<const float4*>(As + kk * LDA + row(i));
                a[i] = v.x; a[i + 1] = v.y; a[i + 2] = v.z; a[i + 3] = v.w;
            }
#pragma unroll
            for (int j = 0; j < TN; j += 4) {
                float4 v = *reinterpret_cast<const float4*>(Bs + kk * LDB + col(j));
                b[j] = v.x; b[j + 1] = v.y; b[j + 2] = v.z; b[j + 3] = v.w;
            }
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
    }

    template <class Epi> __device__ __forceinline__ void store(const Epi& epi, int m0, int n0) const {
        typename Epi::Col cols[TN];
#pragma unroll
        for (int j = 0; j < TN; ++j) cols[j] = epi.col(n0 + col(j));
#pragma unroll
        for (int i = 0; i < TM; ++i) {
            typename Epi::Row r = epi.row(m0 + row(i));
#pragma unroll
            for (int j = 0; j < TN; ++j) epi.store(r, cols[j], acc[i][j]);
        }
    }
};

// ---------------------------------------------------------------------------------- tensor cores

// 8 warps as WARPS_M x WARPS_N = 2 x 4; warp (wm = warp % 2, wn = warp / 2) owns a WM x WN = BM/2 x BN/4
// block made of MT x NT mma tiles of 16 x 8. float16: mma.m16n8k16, BK a multiple of 16; float (TF32,
// opt-in): mma.m16n8k8, values rounded to TF32 (cvt.rna) as they leave shared memory.
// Fragments (PTX ISA, "Matrix Fragments for mma.m16n8k16 / m16n8k8"), g = lane / 4, t = lane % 4:
//   A 16x16 f16: a0 (g, 2t..2t+1) a1 (g+8, 2t..) a2 (g, 2t+8..) a3 (g+8, 2t+8..)
//   B 16x8  f16: b0 (k 2t..2t+1, n g) b1 (k 2t+8.., n g)
//   A 16x8 tf32: a0 (g, t) a1 (g+8, t) a2 (g, t+4) a3 (g+8, t+4);  B 8x8 tf32: b0 (k t, n g) b1 (k t+4, n g)
//   C 16x8  f32: c0 (g, 2t) c1 (g, 2t+1) c2 (g+8, 2t) c3 (g+8, 2t+1)
// Shared memory holds the tiles [k][row]; float16 fragments come through ldmatrix.trans (wgrad: element by
// element, see LDMATRIX below), TF32 ones element by element (ldmatrix.trans moves 16-bit elements only).
// bfloat16 (experimental, GPUCONV_UNVERIFIED=bf16_native): mma.m16n8k16 with .bf16 operands, whose fragments
// are laid out as float16's (PTX ISA): the same tiles, ldmatrix and packing, another instruction.
template <typename T> struct MmaShape;

__device__ __forceinline__ unsigned to_tf32(float v) {
    unsigned r;
#if __CUDA_ARCH__ >= 800
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(v));
#else
    r = __float_as_uint(v);
#endif
    return r;
}

// Four 8x8 matrices of 16-bit elements from shared memory, transposed: lane L gives the address of row
// L % 8 of matrix L / 8 (16 contiguous bytes, 16-byte aligned); register i of lane (g = L / 4, t = L % 4)
// receives elements (row 2t, column g) and (row 2t + 1, column g) of matrix i, low half first.
template <typename H> __device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const H* row) {
    static_assert(sizeof(H) == 2, "ldmatrix moves 16-bit elements");
#if __CUDA_ARCH__ >= 800
    unsigned addr = (unsigned)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
#elif defined(IGEMM_HOST_EMULATION)
    igemm_emulated_ldmatrix_x4_trans(r, row);  // the CPU test harness's warp emulation
#else
    __trap();
#endif
}

__device__ __forceinline__ void mma_16x8x16(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
#if __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(IGEMM_HOST_EMULATION)
    igemm_emulated_mma(d, a, b, 16);  // the CPU test harness's warp emulation (never in a GPU build)
#else
    __trap();  // the host never launches tensor-core kernels below sm_80
#endif
}

__device__ __forceinline__ void mma_16x8x16_bf16(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
#if __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(IGEMM_HOST_EMULATION)
    igemm_emulated_mma(d, a, b, 16, true);
#else
    __trap();
#endif
}

__device__ __forceinline__ void mma_16x8x8_tf32(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
#if __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(IGEMM_HOST_EMULATION)
    igemm_emulated_mma(d, a, b, 8);
#else
    __trap();
#endif
}

// The mma step of each element type: k per instruction, and the instruction.
template <> struct MmaShape<__half> {
    static constexpr int K = 16;
    static __device__ __forceinline__ void mma(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
        mma_16x8x16(d, a, b);
    }
};
template <> struct MmaShape<__nv_bfloat16> {
    static constexpr int K = 16;
    static __device__ __forceinline__ void mma(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
        mma_16x8x16_bf16(d, a, b);
    }
};
template <> struct MmaShape<float> {
    static constexpr int K = 8;
    static __device__ __forceinline__ void mma(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
        mma_16x8x8_tf32(d, a, b);
    }
};

// LDMATRIX (16-bit types only): fragments through ldmatrix.x4.trans (fprop, dgrad: measured 1.06-1.19x faster
// on the H100) or gathered element by element from shared memory (wgrad: ldmatrix measured slower there,
// 0.69-1.10x, cause not established; bench/notes/implicit_gemm.md).
template <typename T, int BM, int BN, int BK, bool LDMATRIX = true>
struct MmaAccumulator {
    static constexpr int THREADS = 256, WARPS_M = 2, WARPS_N = 4;
    static constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;
    static constexpr int MT = WM / 16, NT = WN / 8, KS = MmaShape<T>::K;
    static_assert(WM % 16 == 0 && WN % 8 == 0 && BK % KS == 0, "tile does not fit the mma shape");
    static constexpr int LDA = BM + SmemPad<T>::value, LDB = BN + SmemPad<T>::value;
    float acc[MT][NT][4];
    int wm0, wn0, g, t;

    __device__ MmaAccumulator() {
        int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
        wm0 = (warp % WARPS_M) * WM;
        wn0 = (warp / WARPS_M) * WN;
        g = lane / 4;
        t = lane % 4;
#pragma unroll
        for (int i = 0; i < MT; ++i)
#pragma unroll
            for (int j = 0; j < NT; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;
    }

    // A(m, k) = As[k * LDA + m];  B(k, n) = Bs[k * LDB + n]. float16: ldmatrix.x4.trans, one instruction per
    // 16x16 A block and per two 16x8 B blocks. The tiles are stored [k][row] (row fastest), so each 8x8
    // matrix ldmatrix reads has 8 k rows of 8 consecutive m (or n), 16 bytes each; .trans hands lane
    // (g, t) the pair (k 2t, 2t+1) of column g, which is the A fragment (row g) and the B fragment
    // (column g). Lane L supplies the row address of matrix L / 8, row L % 8:
    //   A: matrices (k0, m), (k0, m + 8), (k0 + 8, m), (k0 + 8, m + 8)  ->  a0, a1, a2, a3
    //   B: matrices (k0, n), (k0 + 8, n), (k0, n + 8), (k0 + 8, n + 8)  ->  b[j][0], b[j][1], b[j+1][0], b[j+1][1]
    // Rows are 2 * LD bytes apart with LD = rows + 8 halves: a multiple of 16 bytes (ldmatrix's alignment)
    // and 4 banks apart modulo 32, so the 8 rows of one matrix fall in distinct banks.
    template <typename H>
    __device__ __forceinline__ void fragments(const H* As, const H* Bs, int k0, unsigned (&a)[MT][4],
                                              unsigned (&b)[NT][2]) const {
        if constexpr (!LDMATRIX) {
            gathered_fragments(As, Bs, k0, a, b);
            return;
        }
        static_assert(NT % 2 == 0, "B fragments are loaded two n-tiles at a time");
        const int lane = 4 * g + t, quad = lane / 8, r = lane % 8;
#pragma unroll
        for (int i = 0; i < MT; ++i)
            ldmatrix_x4_trans(a[i], As + (k0 + r + 8 * (quad / 2)) * LDA + wm0 + i * 16 + 8 * (quad % 2));
#pragma unroll
        for (int j = 0; j < NT; j += 2) {
            unsigned v[4];
            ldmatrix_x4_trans(v, Bs + (k0 + r + 8 * (quad % 2)) * LDB + wn0 + j * 8 + 8 * (quad / 2));
            b[j][0] = v[0]; b[j][1] = v[1]; b[j + 1][0] = v[2]; b[j + 1][1] = v[3];
        }
    }

    // The same fragments, element by element (two 16-bit shared loads per register), per the table above.
    template <typename H>
    __device__ __forceinline__ void gathered_fragments(const H* As, const H* Bs, int k0,
                                                       unsigned (&a)[MT][4], unsigned (&b)[NT][2]) const {
#pragma unroll
        for (int i = 0; i < MT; ++i) {
            int m = wm0 + i * 16 + g;
#pragma unroll
            for (int h = 0; h < 2; ++h) {  // h = 0: k columns 2t, 2t+1;  h = 1: 2t+8, 2t+9
                int k = k0 + 2 * t + 8 * h;
                a[i][2 * h] = pack2(As[k * LDA + m], As[(k + 1) * LDA + m]);
                a[i][2 * h + 1] = pack2(As[k * LDA + m + 8], As[(k + 1) * LDA + m + 8]);
            }
        }
#pragma unroll
        for (int j = 0; j < NT; ++j) {
            int n = wn0 + j * 8 + g;
            int k = k0 + 2 * t;
            b[j][0] = pack2(Bs[k * LDB + n], Bs[(k + 1) * LDB + n]);
            b[j][1] = pack2(Bs[(k + 8) * LDB + n], Bs[(k + 9) * LDB + n]);
        }
    }

    __device__ __forceinline__ void fragments(const float* As, const float* Bs, int k0, unsigned (&a)[MT][4],
                                              unsigned (&b)[NT][2]) const {
#pragma unroll
        for (int i = 0; i < MT; ++i) {
            int m = wm0 + i * 16 + g;
            a[i][0] = to_tf32(As[(k0 + t) * LDA + m]);
            a[i][1] = to_tf32(As[(k0 + t) * LDA + m + 8]);
            a[i][2] = to_tf32(As[(k0 + t + 4) * LDA + m]);
            a[i][3] = to_tf32(As[(k0 + t + 4) * LDA + m + 8]);
        }
#pragma unroll
        for (int j = 0; j < NT; ++j) {
            int n = wn0 + j * 8 + g;
            b[j][0] = to_tf32(Bs[(k0 + t) * LDB + n]);
            b[j][1] = to_tf32(Bs[(k0 + t + 4) * LDB + n]);
        }
    }

    __device__ __forceinline__ void mma(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) const {
        MmaShape<T>::mma(d, a, b);
    }

    __device__ __forceinline__ void step(const T* As, const T* Bs) {
#pragma unroll
        for (int k0 = 0; k0 < BK; k0 += KS) {
            unsigned a[MT][4], b[NT][2];
            fragments(As, Bs, k0, a, b);
#pragma unroll
            for (int i = 0; i < MT; ++i)
#pragma unroll
                for (int j = 0; j < NT; ++j) mma(acc[i][j], a[i], b[j]);
        }
    }

    template <class Epi> __device__ __forceinline__ void store(const Epi& epi, int m0, int n0) const {
        typename Epi::Col cols[NT][2];
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
            for (int e = 0; e < 2; ++e) cols[j][e] = epi.col(n0 + wn0 + j * 8 + 2 * t + e);
#pragma unroll
        for (int i = 0; i < MT; ++i)
#pragma unroll
            for (int h = 0; h < 2; ++h) {  // h = 0: row g (c0, c1);  h = 1: row g + 8 (c2, c3)
                typename Epi::Row r = epi.row(m0 + wm0 + i * 16 + g + 8 * h);
#pragma unroll
                for (int j = 0; j < NT; ++j)
#pragma unroll
                    for (int e = 0; e < 2; ++e) epi.store(r, cols[j][e], acc[i][j][2 * h + e]);
            }
    }
};

// ---------------------------------------------------------------------------------------- mainloops

// Runs the k loop over [k_begin, k_end) in tiles of BK. Both loaders were built for this block's rows;
// the accumulator consumes one shared-memory tile pair per step.

// cp.async ring of STAGES tiles (4-byte T only). STAGES == 1 is the plain tiled loop (copy, wait, compute)
// kept as the reference for the pipelined one. With STAGES >= 2 the copies of tile kt + STAGES - 1 are in
// flight while tile kt is multiplied; the barrier at the top of each step both publishes tile kt and
// retires the slot that the new copies overwrite (it was read in the previous step).
template <typename T, int BM, int BN, int BK, int STAGES, class LA, class LB, class Acc>
__device__ __forceinline__ void mainloop_cp_async(const LA& la, const LB& lb, int k_begin, int k_end, Acc& acc) {
    static_assert(sizeof(T) == 4, "cp.async path copies 4-byte elements");
    constexpr int A_TILE = BK * LA::LD, B_TILE = BK * LB::LD;
    __shared__ __align__(16) T As[STAGES * A_TILE];
    __shared__ __align__(16) T Bs[STAGES * B_TILE];
    const int tiles = (k_end - k_begin + BK - 1) / BK;

    if constexpr (STAGES == 1) {
        for (int kt = 0; kt < tiles; ++kt) {
            la.issue_async(As, k_begin + kt * BK);
            lb.issue_async(Bs, k_begin + kt * BK);
            cp_async_commit();
            cp_async_wait<0>();
            __syncthreads();
            acc.step(As, Bs);
            __syncthreads();
        }
    } else {
#pragma unroll
        for (int s = 0; s < STAGES - 1; ++s) {
            if (s < tiles) {
                la.issue_async(As + s * A_TILE, k_begin + s * BK);
                lb.issue_async(Bs + s * B_TILE, k_begin + s * BK);
            }
            cp_async_commit();  // an empty group keeps the group count uniform
        }
        for (int kt = 0; kt < tiles; ++kt) {
            cp_async_wait<(STAGES >= 2 ? STAGES - 2 : 0)>();
            __syncthreads();
            int next = kt + STAGES - 1;
            if (next < tiles) {
                int slot = next % STAGES;
                la.issue_async(As + slot * A_TILE, k_begin + next * BK);
                lb.issue_async(Bs + slot * B_TILE, k_begin + next * BK);
            }
            cp_async_commit();
            int slot = kt % STAGES;
            acc.step(As + slot * A_TILE, Bs + slot * B_TILE);
        }
        cp_async_wait<0>();
    }
}

// Register-staged double buffer (any T): tile kt + 1 is loaded into registers before tile kt is multiplied,
// and written to the other buffer afterwards; one barrier per tile.
template <typename T, int BM, int BN, int BK, class LA, class LB, class Acc>
__device__ __forceinline__ void mainloop_register_staged(const LA& la, const LB& lb, int k_begin, int k_end,
                                                         Acc& acc) {
    constexpr int A_TILE = BK * LA::LD, B_TILE = BK * LB::LD;
    __shared__ __align__(16) T As[2 * A_TILE];
    __shared__ __align__(16) T Bs[2 * B_TILE];
    T ra[LA::KI * LA::RJ], rb[LB::KI * LB::RJ];
    const int tiles = (k_end - k_begin + BK - 1) / BK;
    if (tiles == 0) return;

    la.fetch(ra, k_begin);
    lb.fetch(rb, k_begin);
    la.store(ra, As);
    lb.store(rb, Bs);
    __syncthreads();
    for (int kt = 0; kt < tiles; ++kt) {
        bool more = kt + 1 < tiles;
        if (more) {
            la.fetch(ra, k_begin + (kt + 1) * BK);
            lb.fetch(rb, k_begin + (kt + 1) * BK);
        }
        int slot = kt & 1;
        acc.step(As + slot * A_TILE, Bs + slot * B_TILE);
        if (more) {
            // The other buffer was last read in step kt - 1, which every thread finished before the barrier
            // that ended it.
            la.store(ra, As + (slot ^ 1) * A_TILE);
            lb.store(rb, Bs + (slot ^ 1) * B_TILE);
        }
        __syncthreads();
    }
}

// ------------------------------------------------------------------------------------- tile configs

// The kernel templates take (T, BM, BN, STAGES); these pick BK, the accumulator and the copy path.
//   SIMT (float32):          BK 8,  SimtAccumulator, cp.async ring of STAGES (1 = unpipelined reference)
//   MMA float16, bfloat16:   BK 32, MmaAccumulator m16n8k16, register-staged double buffer (STAGES ignored)
//   MMA float32 (TF32):      BK 16, MmaAccumulator m16n8k8,  cp.async ring of STAGES
template <typename T> struct MmaBK;
template <> struct MmaBK<__half> { static constexpr int value = 32; };
template <> struct MmaBK<__nv_bfloat16> { static constexpr int value = 32; };
template <> struct MmaBK<float> { static constexpr int value = 16; };

constexpr int SIMT_BK = 8;

// Runs the mainloop with the copy path that suits T.
template <typename T, int BM, int BN, int BK, int STAGES, class LA, class LB, class Acc>
__device__ __forceinline__ void mainloop(const LA& la, const LB& lb, int k_begin, int k_end, Acc& acc) {
    if constexpr (sizeof(T) == 4) {
        mainloop_cp_async<T, BM, BN, BK, STAGES>(la, lb, k_begin, k_end, acc);
    } else {
        mainloop_register_staged<T, BM, BN, BK>(la, lb, k_begin, k_end, acc);
    }
}

}  // namespace igemm
