"""The NumPy backend: the functions of the interface in ``gpuconv._backend``, on numpy.ndarray.

Every entry point runs through :func:`_entry`, which gives the whole path two guarantees:

- NumPy's floating-point error state is the backend's own: Inf and NaN propagate as in PyTorch, and no
  value of a valid array makes an op warn or raise, whatever ``numpy.errstate`` or warning filters the
  caller has set;
- arrays reach the methods as plain ndarrays in native byte order: a subclass (numpy.memmap, say) is viewed
  as an ndarray, and a '>f4' array read from a file is converted once, so every result is native.
"""

import functools

import numpy

from . import conv as _conv
from . import pad as _pad
from . import pool as _pool


def _plain(a):
    if type(a) is numpy.ndarray and a.dtype.isnative:
        return a
    if not isinstance(a, numpy.ndarray):
        return a
    a = numpy.asarray(a)  # a subclass viewed as a plain ndarray
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def _entry(fn):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        args = tuple(_plain(a) for a in args)
        with numpy.errstate(all="ignore"):
            return fn(*args, **kwargs)
    return run


conv2d_fprop = _entry(_conv.conv2d_fprop)
conv2d_dgrad = _entry(_conv.conv2d_dgrad)
conv2d_wgrad = _entry(_conv.conv2d_wgrad)
conv2d_bias_grad = _entry(_conv.conv2d_bias_grad)
pad2d = _entry(_pad.pad2d)
pad2d_backward = _entry(_pad.pad2d_backward)
max_pool2d_fprop = _entry(_pool.max_pool2d_fprop)
max_pool2d_bprop = _entry(_pool.max_pool2d_bprop)
avg_pool2d_fprop = _entry(_pool.avg_pool2d_fprop)
avg_pool2d_bprop = _entry(_pool.avg_pool2d_bprop)
