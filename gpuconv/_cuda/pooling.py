"""Max and average pooling on cupy arrays, as ``gpuconv._backend`` specifies them.

Each function makes its operands contiguous (RawKernel ignores strides; inputs are never modified), asks
``_algo`` for the variant (``_registry``: the verified kernels of ``pool``, the experimental wide ones) and runs
it on the input's device and CuPy's current stream.
"""

from __future__ import annotations

import numpy

from . import _algo, _runtime
from ._alloc import empty


def _pool(pass_name: str, g, x):
    with x.device:
        x = _runtime.xp().ascontiguousarray(x)
        return _algo.variant_for("pool", g, x.dtype, pass_name).run[pass_name](g, x)


def max_pool2d_fprop(g, x):
    """(y, indices): y (N, C, P, Q) of x's dtype and int64 indices, flat h*W + w within each plane."""
    return _pool("max_fprop", g, x)


def avg_pool2d_fprop(g, x):
    """y (N, C, P, Q): window means with count_include_pad / divisor_override as in g."""
    return _pool("avg_fprop", g, x)


def avg_pool2d_bprop(g, gy):
    """gx (N, C, H, W): each input element gathers gy / divisor over the windows that hold it."""
    return _pool("avg_bprop", g, gy)


def max_pool2d_bprop(gy, indices, input_shape):
    """gx of input_shape: gx[n, c].flat[i] = sum, in output order, of gy[n, c] where indices[n, c] == i."""
    N, C, H, W = input_shape
    HW, PQ = H * W, gy.shape[2] * gy.shape[3]
    with gy.device:
        gy = _runtime.xp().ascontiguousarray(gy).reshape(-1)
        indices = _runtime.xp().ascontiguousarray(indices, dtype=numpy.int64).reshape(-1)
        gx = empty(tuple(input_shape), gy.dtype)
        if N * C * HW == 0:
            return gx
        problem = (N * C, HW, PQ)
        _algo.variant_for("max_pool_bprop", problem, gy.dtype, "max_bprop").run["max_bprop"](
            gy, indices, gx.reshape(-1), *problem)
    return gx
