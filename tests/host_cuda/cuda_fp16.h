// Host stand-in for the CUDA device environment, so that tests/test_kernels_on_host.py can compile the
// kernels of kernels/*.cu with g++ and run them on the CPU. The kernels include <cuda_fp16.h> first (via
// common.cuh); with this directory on the include path they get this file instead.
//
// A launch runs every block in turn; inside a block, either every thread in turn (kernels without
// __syncthreads) or one std::thread per CUDA thread meeting at a std::barrier (kernels with it).
// __shared__ becomes a function-local static: one copy, shared by the threads of the running block.
#pragma once

#include <algorithm>
#include <barrier>
#include <cstddef>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __shared__ static

using std::max;
using std::min;

struct HostDim3 {
    unsigned x = 1, y = 1, z = 1;
};
inline thread_local HostDim3 threadIdx;
inline thread_local HostDim3 blockIdx;
inline HostDim3 blockDim;
inline HostDim3 gridDim;
inline std::barrier<>* host_block_barrier = nullptr;

inline void __syncthreads() { host_block_barrier->arrive_and_wait(); }

// IEEE binary16 with round-to-nearest-even conversions, as the device's __half.
struct __half {
    _Float16 value;
};
inline float __half2float(__half h) { return (float)h.value; }
inline __half __float2half_rn(float f) { return __half{(_Float16)f}; }
inline unsigned short __half_as_ushort(__half h) {
    unsigned short u;
    __builtin_memcpy(&u, &h, 2);
    return u;
}
inline __half __ushort_as_half(unsigned short u) {
    __half h;
    __builtin_memcpy(&h, &u, 2);
    return h;
}
