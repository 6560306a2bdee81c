"""Kernels written in a session without a GPU: off until a session with one has run and timed them.

Each feature below is compiled by NVRTC in CI and run on the CPU (the g++ host harness or the CUDA
emulation under tests/host_cuda/), but has never been launched on a device. The CUDA path uses it only
when ``GPUCONV_UNVERIFIED`` names it: ``GPUCONV_UNVERIFIED=all`` (or ``1``) turns on every feature,
``GPUCONV_UNVERIFIED=pool_wide,depthwise_v2`` the named ones; unknown names raise, so a typo cannot
silently measure the old kernels. A feature leaves this table in the session that runs the whole GPU
test table, the workload (determinism), compute-sanitizer and the old-vs-new timing with it on; the
code path then becomes the default (or is deleted, if it lost).
"""

from __future__ import annotations

from gpuconv._cuda import _env  # absolute: tests load this module by path, outside its package

ENV = "GPUCONV_UNVERIFIED"

FEATURES = {
    "igemm_nhwc": "float16 implicit-GEMM fprop and stride-1 dgrad over channels-last copies "
                  "(kernels/implicit_gemm_nhwc.cu, gpuconv/_cuda/_igemm_nhwc.py)",
    "nhwc_wgrad": "float16 implicit-GEMM wgrad over channels-last copies (kernels/implicit_gemm_nhwc_wgrad.cu)",
    "nhwc_dgrad": "float16 implicit-GEMM dgrad of strided convolutions over channels-last copies, one GEMM per "
                  "stride phase (kernels/implicit_gemm_nhwc_dgrad.cu)",
    "pool_wide": "pooling kernels that own runs of adjacent outputs / inputs with vector loads and stores "
                 "(kernels/pool_wide.cu, gpuconv/_cuda/pool.py)",
    "depthwise_v2": "depthwise kernels without shared-memory staging: a register sliding window and vector "
                    "loads (kernels/conv_depthwise_v2*.cu, gpuconv/_cuda/_conv_depthwise.py)",
    "gemm_1x1": "im2col algorithm: 1x1 stride-1 convolutions as cuBLAS strided-batched GEMMs on NCHW, float16 "
                "group-batched GEMMs in float16 (gpuconv/_cuda/_cublas.py, _conv_gemm1x1.py)",
    "bias_grad": "conv2d / conv_transpose2d grad_bias by a deterministic split-sum kernel, one launch for small "
                 "tensors, instead of CuPy's reduction (kernels/bias_grad.cu, gpuconv/_cuda/_bias_grad.py)",
    "bf16_native": "native bfloat16 kernels (float accumulation, one rounding on store) beside the float16 ones: "
                   "direct, im2col/col2im, depthwise v1, pooling, padding, bias grad, and mma.sync bf16 implicit "
                   "GEMMs (kernels/experimental/bf16_*.cu; _kernel_table.BF16_FAMILIES); not yet chosen by a "
                   "launcher",
}


def enabled_set() -> frozenset:
    """The features GPUCONV_UNVERIFIED turns on (read on every call: tests and benchmarks flip it)."""
    raw = _env.get(ENV).strip()
    if not raw or raw == "0":
        return frozenset()
    if raw in ("1", "all"):
        return frozenset(FEATURES)
    names = frozenset(part.strip() for part in raw.split(",") if part.strip())
    unknown = sorted(names - FEATURES.keys())
    if unknown:
        raise ValueError(f"{ENV}={raw!r} names unknown features {unknown}; known: {sorted(FEATURES)} or 'all'")
    return names


def enabled(feature: str) -> bool:
    """True when GPUCONV_UNVERIFIED turns ``feature`` (a key of FEATURES) on."""
    if feature not in FEATURES:
        raise KeyError(f"unknown unverified feature {feature!r}")
    return feature in enabled_set()
