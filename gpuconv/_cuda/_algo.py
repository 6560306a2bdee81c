"""Which algorithm computes a convolution pass on the GPU, and how large a batch chunk im2col takes.

Algorithms:
    direct          conv_direct.cu: one thread per output element (wgrad: one block per weight), no
                    workspace. The simple kernels, also the GPU reference for the others.
    im2col          im2col.cu + cupy.matmul (cuBLAS, batched over groups); dgrad = GEMM then col2im.
    implicit_gemm   gpuconv._cuda.implicit_gemm (a separate kernel family), where it ``supports`` the pass.
    depthwise       conv_depthwise.cu: groups == C (any channel multiplier), tiles staged in shared
                    memory, memory-bound; where ``_conv_depthwise.supports`` the pass.

The environment variable ``GPUCONV_CONV_ALGO`` = auto | autotune | direct | im2col | implicit_gemm |
depthwise picks the rule; it is read at every call, so tests can cover each. A forced implicit_gemm or
depthwise that does not support a pass (its ``supports(g, dtype, pass_name)`` is False) falls back to the
auto rule for that pass.
``autotune`` times every candidate once per problem (geometry, dtype, pass, device) on the call's own
arrays and keeps the fastest for the rest of the process (gpuconv._cuda._autotune), as cuDNN's benchmark
mode does.

The auto rule, first match wins. The thresholds come from the H100 run of 2026-11-22
(bench/results/gpu-h100-2026-11-22/): over the 12 conv layers of the suite at their GPU batch, this rule
picks the faster of im2col and implicit GEMM in every pass (from that run's rows: geometric means float32
0.47 -> 0.65 fprop, 0.50 -> 0.61 dgrad, 0.41 -> 0.49 wgrad against the previous im2col-only rule; measured
in the next run, with faster im2col and depthwise kernels too: 0.74 / 0.82 / 0.61, gpu-h100-2026-11-22-r2).
1. depthwise where it supports the pass (groups == C), else direct, when the GEMM would be thin:
   c_per_group*R*S < 16 (the GEMM's reduction length; depthwise 3x3 has 9) or k_per_group < 8. Every GEMM
   formulation wastes most of each tile on such shapes.
2. direct when the problem is small, below SMALL_PROBLEM_FLOPS: launches cost more than the arithmetic.
2a. only with GPUCONV_UNVERIFIED=gemm_1x1: im2col for 1x1 stride-1 unpadded layers (run as cuBLAS GEMMs on
   the NCHW tensors, ``_conv_gemm1x1``; not yet measured).
3. implicit_gemm where it supports the pass, except a dgrad with fewer than MIN_DGRAD_CHANNELS input
   channels per group (its GEMM has c_per_group columns: the ResNet stem's C = 3 fills 3 of 64), and except
   float32 layers whose weight (per group, K/g*C/g*R*S) exceeds IGEMM_MAX_WEIGHT: there cuBLAS's large
   GEMMs beat the SIMT kernel (ResNet conv4_x 3x3, VGG conv4_2, DeepLabv3, U-Net's up-conv), and float32
   wgrads whose weight exceeds IGEMM_MAX_WGRAD_WEIGHT (the SIMT wgrad reads x at the conv's stride: in the
   r2 run, ResNet conv3_1 3x3/2 0.535 ms against im2col's 0.452, DCGAN's 4x4/2 0.626 against 0.500, while
   VGG conv1_2's 37k-element wgrad kept implicit GEMM ahead, 4.70 against 6.03). float16 takes the
   tensor-core kernels whatever the size (cuBLAS through im2col was slower on every layer but two).
4. direct when the im2col matrix of a single image exceeds WORKSPACE_BYTES: the batch cannot be chunked
   any finer, and the direct kernels need no workspace.
5. im2col otherwise.
"""

from __future__ import annotations

import numpy

from gpuconv._cuda import _env  # absolute: tests load this module by path, outside its package

ALGORITHMS = ("direct", "im2col", "implicit_gemm", "depthwise")
SPECIAL = ("implicit_gemm", "depthwise")  # algorithms that run only where their module supports the pass
RULES = ("auto", "autotune") + ALGORITHMS
PASSES = ("fprop", "dgrad", "wgrad")
ENV_VAR = "GPUCONV_CONV_ALGO"

# Cap on the im2col matrix of one batch chunk (the CPU path caps its workspace the same way).
WORKSPACE_BYTES = 256 << 20
SMALL_PROBLEM_FLOPS = 1 << 24
MIN_GEMM_REDUCTION = 16
MIN_K_PER_GROUP = 8
MIN_DGRAD_CHANNELS = 32
IGEMM_MAX_WEIGHT = 160_000  # elements; between ResNet conv3_1 (147k, implicit GEMM won) and conv4_x (590k)
IGEMM_MAX_WGRAD_WEIGHT = 100_000  # float32 wgrad: between VGG conv1_2 (37k, implicit won) and DCGAN (131k)


def requested() -> str:
    """The rule GPUCONV_CONV_ALGO asks for ('auto' when unset or empty)."""
    value = _env.get(ENV_VAR).strip().lower() or "auto"
    if value not in RULES:
        raise ValueError(f"{ENV_VAR} must be one of {', '.join(RULES)}, but got {_env.get(ENV_VAR)!r}")
    return value


def im2col_bytes_per_image(g, dtype) -> int:
    """Bytes of one image's im2col matrix: (C*R*S) x (P*Q) elements."""
    return g.C * g.R * g.S * g.P * g.Q * numpy.dtype(dtype).itemsize


def batch_chunk(g, dtype) -> int:
    """Images per im2col chunk: as many as fit WORKSPACE_BYTES, at least one."""
    per_image = max(1, im2col_bytes_per_image(g, dtype))
    return max(1, min(g.N, WORKSPACE_BYTES // per_image))


def _implicit_gemm_supports(g, dtype, pass_name: str) -> bool:
    from . import implicit_gemm

    return implicit_gemm.supports(g, numpy.dtype(dtype), pass_name)


def _depthwise_supports(g, dtype, pass_name: str) -> bool:
    from . import _conv_depthwise

    return _conv_depthwise.supports(g, numpy.dtype(dtype), pass_name)


def _supports(name: str, g, dtype, pass_name: str) -> bool:
    check = _implicit_gemm_supports if name == "implicit_gemm" else _depthwise_supports
    return check(g, dtype, pass_name)


def _gemm_1x1(g) -> bool:
    """A 1x1 stride-1 unpadded layer while GPUCONV_UNVERIFIED turns on gemm_1x1: the im2col algorithm then
    runs it as cuBLAS GEMMs on the NCHW tensors (no im2col; predicted faster than implicit GEMM, not yet
    measured)."""
    from . import _conv_gemm1x1

    return _conv_gemm1x1.use(g)


def _thin(g) -> bool:
    return g.c_per_group * g.R * g.S < MIN_GEMM_REDUCTION or g.k_per_group < MIN_K_PER_GROUP


def auto(g, dtype, pass_name: str = "fprop") -> str:
    """The auto rule of the module docstring."""
    if _thin(g):
        return "depthwise" if _depthwise_supports(g, dtype, pass_name) else "direct"
    if g.flops < SMALL_PROBLEM_FLOPS:
        return "direct"
    if _gemm_1x1(g):
        return "im2col"
    if _implicit_gemm_supports(g, dtype, pass_name):
        narrow_dgrad = pass_name == "dgrad" and g.c_per_group < MIN_DGRAD_CHANNELS
        weight = g.k_per_group * g.c_per_group * g.R * g.S
        limit = IGEMM_MAX_WGRAD_WEIGHT if pass_name == "wgrad" else IGEMM_MAX_WEIGHT
        large_float32 = numpy.dtype(dtype) != numpy.float16 and weight > limit
        if not narrow_dgrad and not large_float32:
            return "implicit_gemm"
    if im2col_bytes_per_image(g, dtype) > WORKSPACE_BYTES:
        return "direct"
    return "im2col"


def candidates(g, dtype, pass_name: str) -> tuple:
    """The algorithms autotune times for a pass: every one that runs it, except direct on large problems
    that are not thin (it would be timed at seconds there and never win)."""
    found = []
    if _thin(g) or g.flops < (1 << 30):
        found.append("direct")
    if im2col_bytes_per_image(g, dtype) <= WORKSPACE_BYTES:
        found.append("im2col")
    for name in SPECIAL:
        if _supports(name, g, dtype, pass_name):
            found.append(name)
    return tuple(found) or ("direct",)


def choose(g, dtype, pass_name: str) -> str:
    """The algorithm (or 'autotune') for one pass ('fprop', 'dgrad' or 'wgrad') of geometry g in dtype."""
    if pass_name not in PASSES:
        raise ValueError(f"pass_name must be one of {PASSES}, got {pass_name!r}")
    wanted = requested()
    if wanted in SPECIAL and not _supports(wanted, g, dtype, pass_name):
        wanted = "auto"
    return auto(g, dtype, pass_name) if wanted == "auto" else wanted
