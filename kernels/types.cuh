// Element types and conversions, one vocabulary for every kernel family.
//
//   Accumulator<T>        the type sums of T run in (float for __half, __nv_bfloat16 and float, double for
//                         double), load(T) into it and store() back to T: the 16-bit types convert exactly
//                         on the way in and round once, to nearest even, on the way out
//   bits16 / from_bits16  the 16 bits of a 16-bit float and back (mma fragments, vector stores)
//   pack2<T>(lo, hi)      two 16-bit floats in one 32-bit register, lo in the low half (mma fragment order)
//
// Everything here is __host__ __device__: the CPU stand-ins (tests/host_cuda, the pool harness) build the
// kernels as host C++. The loader inlines this header into each .cu file before compiling.
#pragma once

#include <cuda_fp16.h>
#include <cuda_bf16.h>

template <typename T>
struct Accumulator;

template <>
struct Accumulator<float> {
    typedef float type;
    static __host__ __device__ __forceinline__ float load(float v) { return v; }
    static __host__ __device__ __forceinline__ float store(float v) { return v; }
};

template <>
struct Accumulator<double> {
    typedef double type;
    static __host__ __device__ __forceinline__ double load(double v) { return v; }
    static __host__ __device__ __forceinline__ double store(double v) { return v; }
};

template <>
struct Accumulator<__half> {
    typedef float type;
    static __host__ __device__ __forceinline__ float load(__half v) { return __half2float(v); }
    static __host__ __device__ __forceinline__ __half store(float v) { return __float2half_rn(v); }
};

template <>
struct Accumulator<__nv_bfloat16> {
    typedef float type;
    static __host__ __device__ __forceinline__ float load(__nv_bfloat16 v) { return __bfloat162float(v); }
    static __host__ __device__ __forceinline__ __nv_bfloat16 store(float v) { return __float2bfloat16_rn(v); }
};

__host__ __device__ __forceinline__ unsigned short bits16(__half v) { return __half_as_ushort(v); }
__host__ __device__ __forceinline__ unsigned short bits16(__nv_bfloat16 v) { return __bfloat16_as_ushort(v); }

template <typename T> __host__ __device__ __forceinline__ T from_bits16(unsigned short u);
template <> __host__ __device__ __forceinline__ __half from_bits16<__half>(unsigned short u) {
    return __ushort_as_half(u);
}
template <> __host__ __device__ __forceinline__ __nv_bfloat16 from_bits16<__nv_bfloat16>(unsigned short u) {
    return __ushort_as_bfloat16(u);
}

template <typename T> __host__ __device__ __forceinline__ unsigned pack2(T lo, T hi) {
    return (unsigned)bits16(lo) | ((unsigned)bits16(hi) << 16);
}
