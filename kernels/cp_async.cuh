// Asynchronous global -> shared copies (cp.async, sm_80 and later), one set of wrappers for every kernel.
//
//   cp_async_4(smem, gmem, valid)    4 bytes (cp.async.ca), or 4 zero bytes when !valid (nothing is read)
//   cp_async_16(smem, gmem, valid)   16 bytes (cp.async.cg, both addresses 16-byte aligned), or 16 zero bytes
//   cp_async_commit()                closes this thread's group of copies
//   cp_async_wait<N>()               waits until at most N of this thread's committed groups are in flight
//
// commit and wait carry no "memory" clobber (the verified float32 kernels were built so, and a clobber changes
// their code): every caller follows a wait with __syncthreads, which orders the shared-memory accesses.
// Below sm_80, and in host builds, a copy is a plain synchronous load and store (which satisfies every
// wait); the CPU emulation of tests/host_cuda/implicit_gemm_emulation (IGEMM_HOST_EMULATION) defers the
// 16-byte copies to their wait instead, so that a missing wait shows.
#pragma once

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define GPUCONV_CP_ASYNC 1
#endif

__device__ __forceinline__ void cp_async_4(float* smem, const float* gmem, bool valid) {
#ifdef GPUCONV_CP_ASYNC
    unsigned dst = (unsigned)__cvta_generic_to_shared(smem);
    int src_bytes = valid ? 4 : 0;
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(gmem), "r"(src_bytes));
#else
    *smem = valid ? *gmem : 0.0f;
#endif
}

__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
#ifdef GPUCONV_CP_ASYNC
    unsigned dst = (unsigned)__cvta_generic_to_shared(smem);
    int src_bytes = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(src_bytes)
                 : "memory");
#elif defined(IGEMM_HOST_EMULATION)
    igemm_emulated_cp_async_16(smem, gmem, valid ? 16 : 0);
#else
    struct alignas(16) Bytes16 { unsigned w[4]; };
    *reinterpret_cast<Bytes16*>(smem) = valid ? *reinterpret_cast<const Bytes16*>(gmem) : Bytes16{{0u, 0u, 0u, 0u}};
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#ifdef GPUCONV_CP_ASYNC
    asm volatile("cp.async.commit_group;\n" ::);
#elif defined(IGEMM_HOST_EMULATION)
    igemm_emulated_cp_async_commit();
#endif
}

template <int N> __device__ __forceinline__ void cp_async_wait() {
#ifdef GPUCONV_CP_ASYNC
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#elif defined(IGEMM_HOST_EMULATION)
    igemm_emulated_cp_async_wait(N);
#endif
}
