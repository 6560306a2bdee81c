"""The one module that decides which variant of the registry (``_registry``) runs a pass on the GPU.

A convolution pass first gets an algorithm (below), then the first variant of that algorithm's family that
the configuration allows (experimental ones only under GPUCONV_UNVERIFIED) and that supports the problem;
pooling, the bias gradient and padding take the first allowed, supporting variant of their family. Every
decision reads one ``_config.Config`` snapshot.

Algorithms:
    direct          conv_direct.cu: one thread per output element (wgrad: one block per weight), no
                    workspace. The simple kernels, also the GPU reference for the others.
    im2col          im2col.cu + cupy.matmul (cuBLAS, batched over groups); dgrad = GEMM then col2im.
    implicit_gemm   gpuconv._cuda.implicit_gemm (a separate kernel family), where it ``supports`` the pass.
    depthwise       conv_depthwise.cu: groups == C (any channel multiplier), tiles staged in shared
                    memory, memory-bound; where ``_conv_depthwise.supports`` the pass.

The environment variable ``GPUCONV_CONV_ALGO`` = auto | autotune | direct | im2col | implicit_gemm |
depthwise picks the rule (``Config.conv_algo``). A forced implicit_gemm or
depthwise that does not support a pass (its ``supports(g, dtype, pass_name)`` is False) falls back to the
auto rule for that pass.
``autotune`` times every candidate once per problem (geometry, dtype, pass, device) on the call's own
arrays and keeps the fastest for the rest of the process (gpuconv._cuda._autotune), as cuDNN's benchmark
mode does.

The auto rule, first match wins. The thresholds were measured on an H100; the runs and their numbers are in
bench/notes/history.md, "auto rule".
1. depthwise where it supports the pass (groups == C), else direct, when the GEMM would be thin:
   c_per_group*R*S < 16 (the GEMM's reduction length; depthwise 3x3 has 9) or k_per_group < 8. Every GEMM
   formulation wastes most of each tile on such shapes.
2. direct when the problem is small, below SMALL_PROBLEM_FLOPS: launches cost more than the arithmetic.
2a. only with GPUCONV_UNVERIFIED=gemm_1x1: im2col for 1x1 stride-1 unpadded layers (run as cuBLAS GEMMs on
   the NCHW tensors, ``experimental/gemm_1x1.py``; not yet measured).
3. implicit_gemm where it supports the pass, except a dgrad with fewer than MIN_DGRAD_CHANNELS input
   channels per group (its GEMM has c_per_group columns: the ResNet stem's C = 3 fills 3 of 64), and except
   float32 layers whose weight (per group, K/g*C/g*R*S) exceeds IGEMM_MAX_WEIGHT: there cuBLAS's large
   GEMMs beat the SIMT kernel, and float32 wgrads whose weight exceeds IGEMM_MAX_WGRAD_WEIGHT (the SIMT
   wgrad reads x at the conv's stride). float16 takes the tensor-core kernels whatever the size.
4. direct when the im2col matrix of a single image exceeds the workspace (``Config.workspace_bytes``): the
   batch cannot be chunked any finer, and the direct kernels need no workspace.
5. im2col otherwise.
"""

from __future__ import annotations

import numpy

from . import _autotune, _config, _runtime
from ._conv_im2col import fits as _im2col_fits
from ._registry import FAMILIES, GEMM_1X1

ALGORITHMS = _config.ALGORITHMS
SPECIAL = ("implicit_gemm", "depthwise")  # algorithms that run only where a variant supports the pass
RULES = _config.RULES
PASSES = ("fprop", "dgrad", "wgrad")
ENV_VAR = _config.ALGO_ENV

SMALL_PROBLEM_FLOPS = 1 << 24
MIN_GEMM_REDUCTION = 16
MIN_K_PER_GROUP = 8
MIN_DGRAD_CHANNELS = 32
IGEMM_MAX_WEIGHT = 160_000  # elements; between ResNet conv3_1 (147k, implicit GEMM won) and conv4_x (590k)
IGEMM_MAX_WGRAD_WEIGHT = 100_000  # float32 wgrad: between VGG conv1_2 (37k, implicit won) and DCGAN (131k)
AUTOTUNE_MAX_DIRECT_FLOPS = 1 << 30  # autotune does not time direct above this (unless thin)


# Decisions already made, for the configuration they were made under: (family or "conv", problem key, dtype,
# pass, device) -> (problem, config, variant). A geometry is keyed by identity (gpuconv._params hands out one object
# per distinct call), tuples by value; an entry counts only while its problem and configuration are the very
# objects of the call. This saves the rule's Python on every repeated call (a training step repeats them all).
_memo: dict = {}
_MEMO_LIMIT = 4096


def _recall(kind: str, problem, dtype, pass_name: str, config):
    key = (kind, problem if type(problem) is tuple else id(problem), dtype, pass_name, _runtime.current().device_id())
    hit = _memo.get(key)
    if hit is not None and hit[1] is config and (hit[0] is problem or type(problem) is tuple):
        return key, hit[2]
    return key, None


def _remember(key, problem, config, variant):
    if len(_memo) >= _MEMO_LIMIT:
        _memo.clear()
    _memo[key] = (problem, config, variant)
    return variant


def allowed(variant, config) -> bool:
    """Whether the configuration lets ``variant`` run: verified, or its experimental feature turned on; and
    its switch (TF32, reference kernel) on where it has one."""
    return config.allows(variant.feature) and (variant.switch is None or getattr(config, variant.switch))


def first(family: str, problem, dtype, pass_name: str, config=None):
    """The first variant of ``family`` that the configuration allows and that supports the pass, or None."""
    config = config or _config.current()
    for variant in FAMILIES[family]:
        if pass_name in variant.run and allowed(variant, config) and variant.supports(problem, dtype, pass_name):
            return variant
    return None


def variant_for(family: str, problem, dtype, pass_name: str):
    """``first`` for a call of the CUDA path (pooling, the bias gradient), remembered per problem and
    configuration; raises when no variant runs the pass."""
    config = _config.current()
    key, found = _recall(family, problem, dtype, pass_name, config)
    if found is None:
        found = first(family, problem, dtype, pass_name, config)
        if found is None:
            raise ValueError(f"gpuconv: no {family} variant runs {pass_name} of {problem} in {dtype}")
        _remember(key, problem, config, found)
    return found


def nonfinite_repair(variant, g, dtype, pass_name: str, config):
    """The variant that follows ``variant``'s pass (the "nonfinite_repair" family, where the configuration
    allows it and ``variant`` lists the pass in its ``nonfinite_repair``), or None."""
    if not config.unverified or pass_name not in variant.nonfinite_repair:  # the default: nothing to look up
        return None
    return first("nonfinite_repair", g, dtype, pass_name, config)


def _supports(name: str, g, dtype, pass_name: str, config) -> bool:
    return first(name, g, dtype, pass_name, config) is not None


def _thin(g) -> bool:
    return g.c_per_group * g.R * g.S < MIN_GEMM_REDUCTION or g.k_per_group < MIN_K_PER_GROUP


def auto(g, dtype, pass_name: str = "fprop", config=None) -> str:
    """The auto rule of the module docstring."""
    config = config or _config.current()
    dtype = numpy.dtype(dtype)
    if _thin(g):
        return "depthwise" if _supports("depthwise", g, dtype, pass_name, config) else "direct"
    if g.flops < SMALL_PROBLEM_FLOPS:
        return "direct"
    if allowed(GEMM_1X1, config) and GEMM_1X1.supports(g, dtype, pass_name):  # 2a
        return "im2col"
    if _supports("implicit_gemm", g, dtype, pass_name, config):
        narrow_dgrad = pass_name == "dgrad" and g.c_per_group < MIN_DGRAD_CHANNELS
        weight = g.k_per_group * g.c_per_group * g.R * g.S
        limit = IGEMM_MAX_WGRAD_WEIGHT if pass_name == "wgrad" else IGEMM_MAX_WEIGHT
        large_float32 = dtype != numpy.float16 and weight > limit
        if not narrow_dgrad and not large_float32:
            return "implicit_gemm"
    if not _im2col_fits(g, dtype):
        return "direct"
    return "im2col"


def candidates(g, dtype, pass_name: str, config=None) -> tuple:
    """The algorithms autotune times for a pass: every one that runs it, except direct on large problems
    that are not thin (it would be timed at seconds there and never win)."""
    config = config or _config.current()
    dtype = numpy.dtype(dtype)
    found = []
    if _thin(g) or g.flops < AUTOTUNE_MAX_DIRECT_FLOPS:
        found.append("direct")
    if _im2col_fits(g, dtype):
        found.append("im2col")
    for name in SPECIAL:
        if _supports(name, g, dtype, pass_name, config):
            found.append(name)
    return tuple(found) or ("direct",)


def choose(g, dtype, pass_name: str, config=None) -> str:
    """The algorithm (or 'autotune') for one pass ('fprop', 'dgrad' or 'wgrad') of geometry g in dtype."""
    if pass_name not in PASSES:
        raise ValueError(f"pass_name must be one of {PASSES}, got {pass_name!r}")
    config = config or _config.current()
    wanted = config.conv_algo
    if wanted in SPECIAL and not _supports(wanted, g, numpy.dtype(dtype), pass_name, config):
        wanted = "auto"
    return auto(g, dtype, pass_name, config) if wanted == "auto" else wanted


def conv_variant(g, dtype, pass_name: str, config, arrays: tuple = ()):
    """The variant that runs a convolution pass; under autotune, each candidate algorithm's variant runs the
    pass on ``arrays`` (the call's own operands) to be timed, once per problem."""
    key, found = _recall("conv", g, dtype, pass_name, config)
    if found is not None:
        return found
    name = choose(g, dtype, pass_name, config)
    if name == "autotune":
        switches = (config.allow_tf32, config.igemm_reference, config.unverified)
        name = _autotune.choose(g, dtype, pass_name, switches, candidates(g, dtype, pass_name, config),
                                lambda n: first(n, g, dtype, pass_name, config).run[pass_name](g, *arrays))
    return _remember(key, g, config, first(name, g, dtype, pass_name, config))
