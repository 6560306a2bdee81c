// bfloat16 for the host builds of the kernels (g++), bit for bit as cuda_bf16.h's __nv_bfloat16: the upper 16
// bits of a float32; float -> bfloat16 rounds to nearest even, and a NaN stays a NaN (the device gives 0x7fff).
#pragma once
#include <cstdint>
#include <cstring>

struct __nv_bfloat16 {
    unsigned short x;
};
inline float __bfloat162float(__nv_bfloat16 h) {
    const std::uint32_t u = (std::uint32_t)h.x << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return __nv_bfloat16{0x7fff};
    u += 0x7fffu + ((u >> 16) & 1u);
    return __nv_bfloat16{(unsigned short)(u >> 16)};
}
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return __nv_bfloat16{u}; }
