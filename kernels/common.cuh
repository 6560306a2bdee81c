// Shared device helpers for gpuconv's kernels: 64-bit index type, grid-stride loop bounds, bias and
// coordinate helpers; element types and conversions (Accumulator<T>) come from types.cuh.
//
// The loader inlines this header into each .cu file before compiling (CuPy's cache key ignores
// #include'd files), so it must compile as plain text at the top of a translation unit.
#pragma once

#include "types.cuh"

// Flat indices and element counts: a tensor may pass 2^31 elements.
typedef long long index_t;

// First flat index this thread handles, and the stride of a grid-stride loop: a launch with fewer
// threads than elements still covers every element.
__device__ __forceinline__ index_t first_thread_index() {
    return (index_t)blockIdx.x * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ index_t thread_count() {
    return (index_t)blockDim.x * gridDim.x;
}

// The value a bias pointer contributes to channel c: zero when the pointer is null (no bias).
template <typename T>
__device__ __forceinline__ typename Accumulator<T>::type bias_or_zero(const T* bias, int c) {
    typedef Accumulator<T> A;
    return bias != nullptr ? A::load(bias[c]) : typename A::type(0);
}

// The input coordinate of output position `out` at filter tap `tap` along one axis of a convolution:
// out * stride - pad + tap * dilation (may fall outside [0, size): padding).
__device__ __forceinline__ int input_coordinate(int out, int tap, int stride, int pad, int dilation) {
    return out * stride - pad + tap * dilation;
}

// The inverse along one axis: the output position whose tap `tap` reads input coordinate `in`, or -1
// when no output position does (the offset is negative, not a multiple of the stride, or past `out_size`).
__device__ __forceinline__ int output_coordinate(int in, int tap, int stride, int pad, int dilation,
                                                 int out_size) {
    const int offset = in + pad - tap * dilation;
    if (offset < 0) return -1;
    if (stride == 1) return offset < out_size ? offset : -1;  // the common case, without a division
    if (offset % stride != 0) return -1;
    const int out = offset / stride;
    return out < out_size ? out : -1;
}
