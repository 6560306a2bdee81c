"""The direct convolution passes: launchers of ``kernels/conv_direct.cu``.

Same interface as the other algorithms (``_conv_im2col``, ``implicit_gemm``): geometry plus contiguous
arrays on the current device; outputs from ``_alloc.empty``, every element written by one kernel.
"""

from __future__ import annotations

from ._alloc import empty
from ._launch import MAX_BLOCKS, geometry_args, launch, pointer_or_null

SOURCE = "conv_direct.cu"
KERNELS = {SOURCE: tuple(f"{k}<{t}>" for k in ("conv2d_fprop_direct", "conv2d_dgrad_direct", "conv2d_wgrad_direct")
                         for t in ("__half", "float", "double"))}
WGRAD_THREADS = 256  # WGRAD_DIRECT_THREADS in conv_direct.cu: its shared-memory reduction assumes it


def conv2d_fprop(g, x, w, bias=None):
    """y (N, K, P, Q), plus bias[k] when given (None: a null pointer, no bias term)."""
    y = empty(g.output_shape, x.dtype)
    args = (x, w, pointer_or_null(bias), y) + geometry_args(g)
    launch(SOURCE, "conv2d_fprop_direct", x.dtype, y.size, args)
    return y


def conv2d_dgrad(g, gy, w, bias=None):
    """gx (N, C, H, W), plus bias[c] when given (a transposed convolution's forward)."""
    gx = empty(g.input_shape, gy.dtype)
    args = (gy, w, pointer_or_null(bias), gx) + geometry_args(g)
    launch(SOURCE, "conv2d_dgrad_direct", gy.dtype, gx.size, args)
    return gx


def conv2d_wgrad(g, x, gy):
    """gw (K, C/groups, R, S): one block of WGRAD_THREADS per weight element."""
    gw = empty(g.weight_shape, x.dtype)
    launch(SOURCE, "conv2d_wgrad_direct", x.dtype, gw.size, (x, gy, gw) + geometry_args(g),
           blocks=min(gw.size, MAX_BLOCKS), threads=WGRAD_THREADS)
    return gw
