"""The NumPy backend's pooling entry points (signatures in ``gpuconv._backend``).

Max pooling lives in ``_pool_max``, average pooling in ``_pool_avg``; both loop over the window taps with
whole-array operations on the padded phase layout of ``_pool_windows``.
"""

from ._pool_avg import avg_pool2d_bprop, avg_pool2d_fprop
from ._pool_max import max_pool2d_bprop, max_pool2d_fprop

__all__ = ["max_pool2d_fprop", "max_pool2d_bprop", "avg_pool2d_fprop", "avg_pool2d_bprop"]
