"""Every kernel instantiation gpuconv compiles, by source file under kernels/, and the NVRTC options.

The loader compiles each file once per device with all of its names (CuPy ``name_expressions``); the
NVRTC check in CI compiles exactly this list with exactly these options. Importing this module needs no
CuPy and no GPU.
"""

# Tunables that the launchers and the kernels share, defined here only: the kernels receive them as -D options
# (COMPILE_OPTIONS; a kernel source without them fails with #error), the launchers read them from here. The
# host builds of the tests pass the same options.
DEFINES = {
    # conv_depthwise.cu: the largest block, outputs per thread along a row, static shared memory per kernel.
    "DW_MAX_THREADS": 256, "DW_OUTPUTS_PER_THREAD": 4, "DW_SMEM_BYTES": 16384,
    # conv_depthwise_v2.cuh: output rows per unit, elements per vector load, block size; stride-2 dgrad tile.
    "DW2_ROWS": 7, "DW2_VEC": 4, "DW2_THREADS": 128, "DW2_DGRAD_ROWS": 8, "DW2_DGRAD_COLS": 8,
    # bias_grad.cu: the largest block (the shared tree's size, a power of two).
    "BG_THREADS": 256,
}

# Options passed to NVRTC by the loader (CuPy adds the architecture of the device).
COMPILE_OPTIONS = ("--std=c++17",) + tuple(f"-D{name}={value}" for name, value in DEFINES.items())

# The channels-last float16 implicit GEMMs' tiles (BM, BN) and the depth of their cp.async ring (static shared
# memory STAGES * (BM + BN) * 64 bytes <= 48 KB), for all three passes: their kernel names carry STAGES.
NHWC_STAGES = {(128, 128): 3, (128, 64): 4, (64, 128): 4, (64, 64): 4}

KERNELS = {
    # Conv and padding kernels (gpuconv._cuda.conv / .pad), each for the three dtypes.
    "im2col.cu": tuple(f"{k}<{t}>" for k in ("im2col", "col2im") for t in ("__half", "float", "double")),
    "conv_direct.cu": tuple(
        f"{k}<{t}>" for k in ("conv2d_fprop_direct", "conv2d_dgrad_direct", "conv2d_wgrad_direct")
        for t in ("__half", "float", "double")
    ),
    "pad.cu": tuple(f"{k}<{t}>" for k in ("pad2d", "pad2d_backward") for t in ("__half", "float", "double")),
    # Depthwise family (gpuconv._cuda._conv_depthwise; its kernel_names() must equal this): <T, KR, KS>
    # specialised for 3x3 filters, <T, 0, 0> for any; wgrad's chunk reduction per dtype.
    "conv_depthwise.cu": tuple(
        f"conv2d_{p}_depthwise<{t}, {r}, {s}>" for p in ("fprop", "dgrad", "wgrad")
        for t in ("__half", "float", "double") for r, s in ((3, 3), (0, 0))
    ) + tuple(f"conv2d_wgrad_depthwise_reduce<{t}>" for t in ("__half", "float", "double")),
    # Depthwise version 2, opt-in (GPUCONV_UNVERIFIED=depthwise_v2; gpuconv._cuda._conv_depthwise.kernel_names_v2(file)
    # must equal these), float16 and float32, one file per filter size. fprop / wgrad <T, KR, KS, SH, SW, VEC, O>
    # for strides 1 / 2, one body each: aligned 4-vectors at column offset O = (-(K-1)/2) mod 4 or 0, or
    # elements (1, 0). Stride-2 dgrad <T, KR, KS, VEC, O>: vectors at the offset of padding (K-1)/2, or elements.
    **{file: tuple(f"conv2d_{p}_depthwise_v2<{t}, {k}, {k}, {s}, {s}, {vec}, {o}>" for p in ("fprop", "wgrad")
                   for t in ("__half", "float") for s in (1, 2) for vec, o in ((V, (-(k // 2)) % V), (V, 0), (1, 0)))
       + tuple(f"conv2d_dgrad_depthwise_v2<{t}, {k}, {k}, {vec}, {o}>" for t in ("__half", "float")
               for vec, o in ((V, o2), (1, 0)))
       for file, k, o2 in (("conv_depthwise_v2.cu", 3, 0), ("conv_depthwise_v2_5x5.cu", 5, 3))
       for V in (DEFINES["DW2_VEC"],)},
    "pool.cu": (  # owned by the pooling kernels; gpuconv._cuda.pool.kernel_names() must equal this
        "max_pool2d_fprop<__half, long long>", "max_pool2d_fprop<float, long long>",
        "max_pool2d_fprop<double, long long>",
        "max_pool2d_bprop_plane<__half>", "max_pool2d_bprop_plane<float>", "max_pool2d_bprop_plane<double>",
        "max_pool2d_bprop_keys<int>", "max_pool2d_bprop_keys<long long>",
        "max_pool2d_bprop_gather<__half, int>", "max_pool2d_bprop_gather<__half, long long>",
        "max_pool2d_bprop_gather<float, int>", "max_pool2d_bprop_gather<float, long long>",
        "max_pool2d_bprop_gather<double, int>", "max_pool2d_bprop_gather<double, long long>",
        *(f"{k}<{t}, {i}>" for k in ("avg_pool2d_fprop", "avg_pool2d_bprop") for t in ("__half", "float", "double")
          for i in ("int", "long long")),
    ),
    # Opt-in wide pooling kernels (GPUCONV_UNVERIFIED=pool_wide; the file includes pool.cu;
    # gpuconv._cuda.pool.wide_kernel_names() must equal this): <T, kernel_w, stride_w>, and the max backward.
    "pool_wide.cu": tuple(
        f"{k}<{t}, {kw}, {sw}>" for k in ("max_pool2d_fprop_wide", "avg_pool2d_fprop_wide", "avg_pool2d_bprop_wide")
        for t in ("__half", "float", "double") for kw, sw in ((2, 2), (3, 2), (3, 1))
    ) + tuple(f"max_pool2d_bprop_plane_wide<{t}>" for t in ("__half", "float", "double")),
    # Bias gradient (gpuconv._cuda._bias_grad; its kernel_names() must equal this): the split sums
    # <T, VEC> with VEC = 1 (elements) or 16 bytes of T (PQ % VEC == 0), and the ordered split reduction.
    "bias_grad.cu": tuple(
        f"conv2d_bias_grad<{t}, {vec}>" for t, lanes in (("__half", 8), ("float", 4), ("double", 2))
        for vec in (1, lanes)
    ) + tuple(f"conv2d_bias_grad_reduce<{t}>" for t in ("__half", "float", "double")),
    # Implicit-GEMM family (gpuconv._cuda.implicit_gemm; its kernel_names(pass) must equal these):
    # SIMT float <BM, BN, STAGES> (64x64x1 is the unpipelined reference), tensor cores <__half|float(TF32), ...>.
    **{
        f"implicit_gemm_{p}.cu": (f"conv2d_{p}_implicit_gemm_simt<float, 64, 64, 1>",)
        + tuple(f"conv2d_{p}_implicit_gemm_simt<float, {bm}, {bn}, 3>" for bm, bn in ((128, 128), (128, 64), (64, 128), (64, 64)))
        + tuple(
            f"conv2d_{p}_implicit_gemm_mma<{t}, {bm}, {bn}, 2>"
            for t in ("__half", "float") for bm, bn in ((128, 128), (128, 64), (64, 128), (64, 64))
        )
        + (("conv2d_wgrad_reduce_splits<float>", "conv2d_wgrad_reduce_splits<__half>") if p == "wgrad" else ())
        for p in ("fprop", "dgrad", "wgrad")
    },
    # Opt-in channels-last float16 fprop (gpuconv._cuda._igemm_nhwc; its kernel_names() must equal this):
    # the layout transpose, then <__half, BM, BN, STAGES>.
    "implicit_gemm_nhwc.cu": ("nchw_to_nhwc<__half>",) + tuple(
        f"conv2d_fprop_implicit_gemm_nhwc<__half, {bm}, {bn}, {st}>" for (bm, bn), st in NHWC_STAGES.items()
    ),
    # Opt-in channels-last float16 wgrad (gpuconv._cuda._igemm_nhwc_wgrad; its kernel_names() must equal this):
    # the split-K GEMM <__half, BM, BN, STAGES>, then the ordered split reduction that writes gw (K, C, R, S).
    "implicit_gemm_nhwc_wgrad.cu": tuple(
        f"conv2d_wgrad_implicit_gemm_nhwc<__half, {bm}, {bn}, {st}>" for (bm, bn), st in NHWC_STAGES.items()
    ) + ("conv2d_wgrad_nhwc_reduce<__half>",),
    # Opt-in channels-last float16 dgrad of strided convolutions (gpuconv._cuda._igemm_nhwc_dgrad; its
    # kernel_names() must equal this): one GEMM per stride phase, <__half, BM, BN, STAGES>.
    "implicit_gemm_nhwc_dgrad.cu": tuple(
        f"conv2d_dgrad_implicit_gemm_nhwc<__half, {bm}, {bn}, {st}>" for (bm, bn), st in NHWC_STAGES.items()
    ),
}

# Experimental native bfloat16 kernels (GPUCONV_UNVERIFIED=bf16_native; gpuconv/_cuda/_unverified.py), one file per
# family under kernels/experimental/ that includes the family's source: every float16 instantiation of the
# family with T = __nv_bfloat16 (float accumulation, one rounding on store; the implicit GEMMs on mma.sync
# m16n8k16 .bf16). Kept apart so that compiling a verified file does not compile them.
BF16_FAMILIES = ("im2col.cu", "conv_direct.cu", "pad.cu", "conv_depthwise.cu", "pool.cu", "bias_grad.cu",
                 "implicit_gemm_fprop.cu", "implicit_gemm_dgrad.cu", "implicit_gemm_wgrad.cu")


def bf16_source(source_file: str) -> str:
    """The experimental file holding the bfloat16 instantiations of ``source_file``'s kernels."""
    return f"experimental/bf16_{source_file}"


KERNELS.update({
    bf16_source(f): tuple(n.replace("__half", "__nv_bfloat16") for n in KERNELS[f] if "__half" in n)
    for f in BF16_FAMILIES
})
