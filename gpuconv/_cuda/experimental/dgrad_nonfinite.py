"""The repair that follows a dgrad kernel which multiplies the zeros of padding by the weight: the launcher of
``kernels/experimental/dgrad_nonfinite.cu`` (issue 14: a NaN or infinite weight).

The implicit-GEMM and depthwise dgrads (``_registry``'s variants with ``zero_times_weight``) add
``0 * w[k, c, r, s]`` where a tap reaches an input pixel only through padding: NaN for a non-finite weight,
where PyTorch adds nothing. ``repair`` finds the input channels whose weights are not all finite (two of
CuPy's own operations on the weight, no host synchronisation) and recomputes, in place, only the NaN pixels
of those channels by the direct gather (``kernels/dgrad_gather.cuh``, the sum conv2d_dgrad_direct makes).
With finite weights it leaves gx untouched: each block of the kernel reads one flag and moves on.
"""

from __future__ import annotations

from .. import _launch, _runtime
from .._conv_direct import _geometry_args

SOURCE = "experimental/dgrad_nonfinite.cu"
KERNEL = "conv2d_dgrad_nonfinite_repair"
MAX_BLOCKS = 4096  # blocks stride over the N*C planes; a clean plane costs a block one flag read


def kernel_names() -> tuple:
    """Every instantiation ``repair`` may launch, spelled as in ``_kernel_table.KERNELS``."""
    return tuple(_launch.kernel_name(KERNEL, d) for d in _launch.CTYPES)


def finite_channels(g, w):
    """(C,) bool: whether every weight that input channel c meets (w[g*Kg:(g+1)*Kg, c - g*Cg]) is finite."""
    taps = _runtime.xp().isfinite(w).reshape(g.groups, g.k_per_group, g.c_per_group, g.R * g.S)
    return taps.all(axis=(1, 3)).reshape(g.C)


def repair(g, gy, w, bias, gx):
    """Recomputes, in place, the NaN pixels of gx (N, C, H, W) in channels with a non-finite weight; returns gx."""
    planes = g.N * g.C
    if planes == 0 or g.H * g.W == 0:
        return gx
    args = (gy, w, _launch.pointer_or_null(bias), finite_channels(g, w), gx) + _geometry_args(g)
    _launch.launch(SOURCE, KERNEL, gx.dtype, planes, args, blocks=min(planes, MAX_BLOCKS))
    return gx
