"""Which algorithm computes a convolution pass on the GPU, and how large a batch chunk im2col takes.

Algorithms:
    direct          conv_direct.cu: one thread per output element (wgrad: one block per weight), no
                    workspace. The simple kernels, also the GPU reference for the others.
    im2col          im2col.cu + cupy.matmul (cuBLAS, batched over groups); dgrad = GEMM then col2im.
    implicit_gemm   gpuconv._cuda.implicit_gemm (a separate kernel family), where it ``supports`` the pass.

The environment variable ``GPUCONV_CONV_ALGO`` = auto | direct | im2col | implicit_gemm forces one; it is
read at every call, so tests can cover each. A forced implicit_gemm that does not support a pass (its
``supports(g, dtype, pass_name)`` is False) falls back to the auto rule for that pass.

The auto rule, first match wins:
1. direct when the GEMM would be thin: c_per_group*R*S < 16 (the GEMM's reduction length; depthwise 3x3
   has 9) or k_per_group < 8. cuBLAS wastes most of each tile on such shapes, while im2col still copies
   R*S times the input.
2. direct when the problem is small, below SMALL_PROBLEM_FLOPS: there im2col + GEMM + a layout copy cost
   more in launches than the arithmetic.
3. direct when the im2col matrix of a single image exceeds WORKSPACE_BYTES: the batch cannot be chunked
   any finer, and the direct kernels need no workspace.
4. im2col otherwise.
Auto never picks implicit_gemm yet: it has not been verified on a GPU.
"""

from __future__ import annotations

import os

import numpy

ALGORITHMS = ("direct", "im2col", "implicit_gemm")
PASSES = ("fprop", "dgrad", "wgrad")
ENV_VAR = "GPUCONV_CONV_ALGO"

# Cap on the im2col matrix of one batch chunk (the CPU path caps its workspace the same way).
WORKSPACE_BYTES = 256 << 20
SMALL_PROBLEM_FLOPS = 1 << 24
MIN_GEMM_REDUCTION = 16
MIN_K_PER_GROUP = 8


def requested() -> str:
    """The algorithm GPUCONV_CONV_ALGO asks for ('auto' when unset or empty)."""
    value = os.environ.get(ENV_VAR, "").strip().lower() or "auto"
    if value != "auto" and value not in ALGORITHMS:
        raise ValueError(
            f"{ENV_VAR} must be one of auto, {', '.join(ALGORITHMS)}, but got {os.environ.get(ENV_VAR)!r}"
        )
    return value


def im2col_bytes_per_image(g, dtype) -> int:
    """Bytes of one image's im2col matrix: (C*R*S) x (P*Q) elements."""
    return g.C * g.R * g.S * g.P * g.Q * numpy.dtype(dtype).itemsize


def batch_chunk(g, dtype) -> int:
    """Images per im2col chunk: as many as fit WORKSPACE_BYTES, at least one."""
    per_image = max(1, im2col_bytes_per_image(g, dtype))
    return max(1, min(g.N, WORKSPACE_BYTES // per_image))


def auto(g, dtype) -> str:
    """The auto rule of the module docstring."""
    if g.c_per_group * g.R * g.S < MIN_GEMM_REDUCTION or g.k_per_group < MIN_K_PER_GROUP:
        return "direct"
    if g.flops < SMALL_PROBLEM_FLOPS:
        return "direct"
    if im2col_bytes_per_image(g, dtype) > WORKSPACE_BYTES:
        return "direct"
    return "im2col"


def choose(g, dtype, pass_name: str) -> str:
    """The algorithm for one pass ('fprop', 'dgrad' or 'wgrad') of geometry g in dtype."""
    if pass_name not in PASSES:
        raise ValueError(f"pass_name must be one of {PASSES}, got {pass_name!r}")
    wanted = requested()
    if wanted == "implicit_gemm":
        from . import implicit_gemm

        if implicit_gemm.supports(g, numpy.dtype(dtype), pass_name):
            return "implicit_gemm"
        wanted = "auto"
    return auto(g, dtype) if wanted == "auto" else wanted
