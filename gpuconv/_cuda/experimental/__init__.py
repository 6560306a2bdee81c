"""Experimental variants: kernels written in a session without a GPU, off until a session with one has run them.

Each feature below is compiled by NVRTC in CI and run on the CPU (the g++ host harness or the CUDA emulation
under tests/host_cuda/), but has never been launched on a device. Its kernels live in kernels/experimental/,
its launchers in this folder; ``gpuconv._cuda._registry`` registers them unverified, so the CUDA path uses one
only when ``GPUCONV_UNVERIFIED`` names its feature (``all`` or ``1``: every feature; ``pool_wide,depthwise_v2``:
the named ones; unknown names raise, so a typo cannot silently measure the old kernels).

Promotion (DESIGN.md, "Verified and experimental"): a feature whose variants pass the one-run GPU check
(bench/gpu_checks/) moves its files out of the experimental folders and drops its ``feature=`` in the
registry; a feature that lost is deleted.
"""

FEATURES = {
    "igemm_nhwc": "float16 implicit-GEMM fprop and stride-1 dgrad over channels-last copies "
                  "(kernels/experimental/implicit_gemm_nhwc.cu, igemm_nhwc.py)",
    "nhwc_wgrad": "float16 implicit-GEMM wgrad over channels-last copies "
                  "(kernels/experimental/implicit_gemm_nhwc_wgrad.cu, igemm_nhwc_wgrad.py)",
    "nhwc_dgrad": "float16 implicit-GEMM dgrad of strided convolutions over channels-last copies, one GEMM per "
                  "stride phase (kernels/experimental/implicit_gemm_nhwc_dgrad.cu, igemm_nhwc_dgrad.py)",
    "pool_wide": "pooling kernels that own runs of adjacent outputs / inputs with vector loads and stores "
                 "(kernels/experimental/pool_wide.cu, pool_wide.py)",
    "depthwise_v2": "depthwise kernels without shared-memory staging: a register sliding window and vector "
                    "loads (kernels/experimental/conv_depthwise_v2*.cu, depthwise_v2.py)",
    "gemm_1x1": "im2col algorithm: 1x1 stride-1 convolutions as cuBLAS strided-batched GEMMs on NCHW, float16 "
                "group-batched GEMMs in float16 (gemm_1x1.py, cublas.py)",
    "bias_grad": "conv2d / conv_transpose2d grad_bias by a deterministic split-sum kernel, one launch for small "
                 "tensors, instead of CuPy's reduction (kernels/experimental/bias_grad.cu, bias_grad.py)",
    "nonfinite_weights": "PyTorch's NaNs for a NaN or infinite weight: after an implicit-GEMM or depthwise dgrad "
                         "(which multiply padding zeros by it) the NaN pixels of its channels recomputed by the direct "
                         "gather; after the direct fprop (which skips padding taps) the 0 * w PyTorch adds "
                         "(kernels/experimental/nonfinite_weights.cu, nonfinite_weights.py)",
    "bf16_native": "native bfloat16 kernels (float accumulation, one rounding on store) beside the float16 ones: "
                   "direct, im2col/col2im, depthwise v1, pooling, padding, bias grad, and mma.sync bf16 implicit "
                   "GEMMs (kernels/experimental/bf16_*.cu; _registry.BF16_NATIVE); compiled and host-tested, not "
                   "yet chosen by a launcher (bfloat16 runs through float32 until a GPU run promotes them)",
}
