// Division by a run-time divisor without a division instruction, for index decoding in hot loops.
//
// n / d for 0 <= n < 2^31 and 1 <= d < 2^31, by a multiply and a shift (Granlund & Montgomery): the host
// gives shift = l = ceil(log2 d) and mul = floor(2^32 (2^l - d) / d) + 1 < 2^32 (gpuconv._cuda.pool
// .fast_divisor packs them as magic = mul | shift << 32), and n / d = (umulhi(n, mul) + n) >> l, exact for
// every n < 2^32; the sum stays below 2^32 for n < 2^31. A 32-bit division by a run-time divisor costs three
// quarter-rate conversion / reciprocal instructions and a dozen others; this costs three.
#pragma once

__host__ __device__ __forceinline__ int fast_divide(int n, unsigned mul, unsigned shift) {
    const unsigned un = static_cast<unsigned>(n);
#ifdef __CUDA_ARCH__
    const unsigned high = __umulhi(un, mul);
#else
    const unsigned high = static_cast<unsigned>((static_cast<unsigned long long>(un) * mul) >> 32);
#endif
    return static_cast<int>((high + un) >> shift);
}

// The same with the divisor packed as one 64-bit argument: magic = mul | shift << 32.
__host__ __device__ __forceinline__ int fast_divide(int n, long long magic) {
    return fast_divide(n, static_cast<unsigned>(magic), static_cast<unsigned>(magic >> 32));
}

// A divisor d with its (mul, shift), for quotient and remainder: q = div(n), n - q * d.
struct FastDivisor {
    int d;
    unsigned mul, shift;
    __host__ __device__ FastDivisor(int d_, int mul_, int shift_)
        : d(d_), mul(static_cast<unsigned>(mul_)), shift(static_cast<unsigned>(shift_)) {}
    __host__ __device__ __forceinline__ int div(int n) const { return fast_divide(n, mul, shift); }
};
