// The channels-last kernels (kernels/implicit_gemm_nhwc*.cu) as a shared library for the Python launchers'
// host test (tests/test_igemm_nhwc_on_host.py): emu_launch(name, grid, pointers, integers) runs the kernel
// instantiation `name` (spelled as in gpuconv/_cuda/_kernel_table.py) over the grid with 256 threads per
// block on the CPU, under the warp emulation of shim.h (mma.sync, ldmatrix, deferred cp.async).
#include "shim.h"
#define IGEMM_HOST_EMULATION 1
#include "implicit_gemm_nhwc.cu"
#include "implicit_gemm_nhwc_wgrad.cu"
#include "implicit_gemm_nhwc_dgrad.cu"
#include <map>
#include <string>

namespace {

using Args = void* const*;
using Ints = const long long*;
using Entry = void (*)(dim3, Args, Ints);

const __half* in(Args p, int i) { return static_cast<const __half*>(p[i]); }
__half* out(Args p, int i) { return static_cast<__half*>(p[i]); }
int I(Ints s, int i) { return (int)s[i]; }

void layout(dim3 grid, Args p, Ints s) {
    launch(grid, [&] { nchw_to_nhwc<__half>(in(p, 0), out(p, 1), I(s, 0), I(s, 1), I(s, 2)); });
}

template <int BM, int BN, int ST> void fprop(dim3 grid, Args p, Ints s) {
    launch(grid, [&] {
        conv2d_fprop_implicit_gemm_nhwc<__half, BM, BN, ST>(in(p, 0), in(p, 1), in(p, 2), out(p, 3), I(s, 0), I(s, 1),
                                                            I(s, 2), I(s, 3), I(s, 4), I(s, 5), I(s, 6), I(s, 7),
                                                            I(s, 8), I(s, 9), I(s, 10), I(s, 11), I(s, 12), I(s, 13),
                                                            I(s, 14));
    });
}

template <int BM, int BN, int ST> void wgrad(dim3 grid, Args p, Ints s) {
    launch(grid, [&] {
        conv2d_wgrad_implicit_gemm_nhwc<__half, BM, BN, ST>(in(p, 0), in(p, 1), static_cast<float*>(p[2]), I(s, 0),
                                                            I(s, 1), I(s, 2), I(s, 3), I(s, 4), I(s, 5), I(s, 6),
                                                            I(s, 7), I(s, 8), I(s, 9), I(s, 10), I(s, 11), I(s, 12),
                                                            I(s, 13), I(s, 14), I(s, 15), I(s, 16));
    });
}

template <int BM, int BN, int ST> void dgrad(dim3 grid, Args p, Ints s) {
    launch(grid, [&] {
        conv2d_dgrad_implicit_gemm_nhwc<__half, BM, BN, ST>(in(p, 0), in(p, 1), in(p, 2), out(p, 3), I(s, 0), I(s, 1),
                                                            I(s, 2), I(s, 3), I(s, 4), I(s, 5), I(s, 6), I(s, 7),
                                                            I(s, 8), I(s, 9), I(s, 10), I(s, 11), I(s, 12), I(s, 13),
                                                            I(s, 14));
    });
}

void wgrad_reduce(dim3 grid, Args p, Ints s) {
    launch(grid, [&] {
        conv2d_wgrad_nhwc_reduce<__half>(static_cast<const float*>(p[0]), out(p, 1), I(s, 0), I(s, 1), I(s, 2),
                                         I(s, 3));
    });
}

const std::map<std::string, Entry>& table() {
    static const std::map<std::string, Entry> t = {
        {"nchw_to_nhwc<__half>", layout},
        {"conv2d_fprop_implicit_gemm_nhwc<__half, 128, 128, 3>", fprop<128, 128, 3>},
        {"conv2d_fprop_implicit_gemm_nhwc<__half, 128, 64, 4>", fprop<128, 64, 4>},
        {"conv2d_fprop_implicit_gemm_nhwc<__half, 64, 128, 4>", fprop<64, 128, 4>},
        {"conv2d_fprop_implicit_gemm_nhwc<__half, 64, 64, 4>", fprop<64, 64, 4>},
        {"conv2d_wgrad_implicit_gemm_nhwc<__half, 128, 128, 3>", wgrad<128, 128, 3>},
        {"conv2d_wgrad_implicit_gemm_nhwc<__half, 128, 64, 4>", wgrad<128, 64, 4>},
        {"conv2d_wgrad_implicit_gemm_nhwc<__half, 64, 128, 4>", wgrad<64, 128, 4>},
        {"conv2d_wgrad_implicit_gemm_nhwc<__half, 64, 64, 4>", wgrad<64, 64, 4>},
        {"conv2d_wgrad_nhwc_reduce<__half>", wgrad_reduce},
        {"conv2d_dgrad_implicit_gemm_nhwc<__half, 128, 128, 3>", dgrad<128, 128, 3>},
        {"conv2d_dgrad_implicit_gemm_nhwc<__half, 128, 64, 4>", dgrad<128, 64, 4>},
        {"conv2d_dgrad_implicit_gemm_nhwc<__half, 64, 128, 4>", dgrad<64, 128, 4>},
        {"conv2d_dgrad_implicit_gemm_nhwc<__half, 64, 64, 4>", dgrad<64, 64, 4>},
    };
    return t;
}

}  // namespace

// 0 when `name` ran, -1 when the library does not know it. The only exported symbol (the library is built
// with -fvisibility=hidden).
extern "C" __attribute__((visibility("default"))) int emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz, void* const* p,
                          const long long* s) {
    auto it = table().find(name);
    if (it == table().end()) return -1;
    it->second(dim3{gx, gy, gz}, p, s);
    return 0;
}
