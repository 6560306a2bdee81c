"""Output allocation for every kernel launch of the CUDA backend.

``empty`` is ``cupy.empty`` on the current device, except that with the environment variable
``GPUCONV_POISON=1`` the new array is filled with NaN (integers: their most negative value). A kernel that
leaves an element unwritten then fails the tests instead of passing on whatever the allocator held.
The variable is read at each call, so a test can set it for its own duration.
"""

from __future__ import annotations

import cupy
import numpy

from . import _env


def poisoning() -> bool:
    return _env.get("GPUCONV_POISON") == "1"


def empty(shape, dtype):
    """A new C-contiguous cupy array on the current device: uninitialised, or poisoned (see above)."""
    out = cupy.empty(shape, dtype=dtype)
    if poisoning():
        dtype = numpy.dtype(dtype)
        out.fill(numpy.nan if dtype.kind == "f" else numpy.iinfo(dtype).min)
    return out
