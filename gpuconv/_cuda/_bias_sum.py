"""The verified bias gradient: CuPy's reduction of gy (N, K, P, Q) over N, P and Q (float16 in float32).

Its host time: bench/notes/history.md, "bias gradient"; the experimental one-launch kernel is
``experimental/bias_grad.py``.
"""

from __future__ import annotations

import numpy


def bias_grad(gy):
    acc = numpy.float32 if gy.dtype == numpy.float16 else gy.dtype
    return gy.sum(axis=(0, 2, 3), dtype=acc).astype(gy.dtype, copy=False)
