"""Output allocation for every kernel launch of the CUDA backend.

``empty`` is ``cupy.empty`` on the current device, except that with the environment variable
``GPUCONV_POISON=1`` (``_config``) the new array is filled with NaN (integers: their most negative value). A
kernel that leaves an element unwritten then fails the tests instead of passing on whatever the allocator held.
"""

from __future__ import annotations

import numpy

from . import _config, _runtime


def poisoning() -> bool:
    return _config.current().poison


def empty(shape, dtype):
    """A new C-contiguous cupy array on the current device: uninitialised, or poisoned (see above)."""
    out = _runtime.xp().empty(shape, dtype=dtype)
    if poisoning():
        dtype = numpy.dtype(dtype)
        out.fill(numpy.nan if dtype.kind == "f" else numpy.iinfo(dtype).min)
    return out
