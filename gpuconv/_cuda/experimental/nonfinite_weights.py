"""PyTorch's NaNs and infinities for a NaN or infinite weight, after the verified kernels whose differ: the
launchers of ``kernels/experimental/nonfinite_weights.cu`` (issue 14, class 2).

PyTorch's forward multiplies the zero padding by the weight (0 * inf is NaN there); its input gradient adds
only the taps that hit. The implicit-GEMM and depthwise dgrads add 0 * w for the padding too (NaN where
PyTorch has a value), and conv2d_fprop_direct skips padding taps (a value where PyTorch has NaN): ``_registry``
lists them in each variant's ``nonfinite_repair``. ``repair_dgrad`` recomputes, by the direct gather
(``kernels/dgrad_gather.cuh``), the NaN pixels of input channels with a non-finite weight; ``repair_fprop``
adds the skipped 0 * w (NaN) where a non-finite weight meets padding. Both work in place on the kernel's
fresh output. The flags come from two of CuPy's own operations on the weight (no host synchronisation); with
finite weights each block of the repair reads one flag and moves on, leaving the output bit for bit.
"""

from __future__ import annotations

from .. import _launch, _runtime

SOURCE = "experimental/nonfinite_weights.cu"
KERNELS = ("conv2d_dgrad_nonfinite_repair", "conv2d_fprop_nonfinite_repair")
MAX_BLOCKS = 4096  # blocks stride over the planes; a plane whose channel is finite costs a block one flag read


def kernel_names() -> tuple:
    """Every instantiation the repairs may launch, spelled as in ``_kernel_table.KERNELS``."""
    return tuple(_launch.kernel_name(k, d) for k in KERNELS for d in _launch.CTYPES)


def finite_flags(g, w, channels: str):
    """One bool per channel, whether every weight it meets is finite: per input channel c = group*Cg + ci
    (``channels="input"``, C flags: w[group*Kg:(group+1)*Kg, ci]) or per output channel k (K flags: w[k])."""
    taps = _runtime.xp().isfinite(w).reshape(g.groups, g.k_per_group, g.c_per_group, g.R * g.S)
    return taps.all(axis=(1, 3) if channels == "input" else (2, 3)).reshape(-1)


def repair_dgrad(g, gy, w, bias, gx):
    """gx (N, C, H, W) with its NaN pixels of channels that meet a non-finite weight recomputed; returns gx."""
    planes = g.N * g.C
    if planes and g.H * g.W:
        finite = finite_flags(g, w, "input")
        args = (gy, w, _launch.pointer_or_null(bias), finite, gx) + _launch.geometry_args(g)
        _launch.launch(SOURCE, KERNELS[0], gx.dtype, planes, args, blocks=min(planes, MAX_BLOCKS))
    return gx


def repair_fprop(g, x, w, bias, y):
    """y (N, K, P, Q) with NaN where a non-finite weight meets the zero padding; returns y."""
    planes = g.N * g.K
    if planes and g.P * g.Q:
        finite = finite_flags(g, w, "output")
        _launch.launch(SOURCE, KERNELS[1], y.dtype, planes, (w, finite, y) + _launch.geometry_args(g),
                       blocks=min(planes, MAX_BLOCKS))
    return y
