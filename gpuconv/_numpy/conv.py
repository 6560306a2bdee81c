"""conv2d's three passes on NumPy arrays, as ``gpuconv._backend`` specifies them.

This module owns the dtype rule (float16 computes in float32 and returns float16), the bias, and the
choice of method:

- ``_direct`` (per-tap multiply-adds over whole arrays) when a group has so few channels and filters that
  (C/groups) * (K/groups) <= 4, depthwise above all: there a GEMM per group would be a long run of tiny
  BLAS calls, and the multiply-adds do the same arithmetic in a few cache-resident passes. fprop uses it
  at stride 1 only: at larger strides the multiply-adds run over short strided rows, and im2col's copy,
  which gathers those rows once, measured faster (MobileNetV2's 3x3/2 depthwise: 1.8 ms against 2.5);
- ``_gemm`` (im2col / per-tap GEMM over strided window views, workspace capped by ``_tiling``) otherwise.

wgrad always uses ``_gemm``: its per-tap products have a whole image as inner dimension, long even for
depthwise. Inputs are never written: every method reads through views and writes only arrays it allocates.
"""

from __future__ import annotations

import functools

import numpy

from . import _direct, _gemm, _parallel

_DIRECT_MAX_CHANNEL_PRODUCT = 4


def _few_channels(g) -> bool:
    return g.c_per_group * g.k_per_group <= _DIRECT_MAX_CHANNEL_PRODUCT


def _fprop_method(g):
    return _direct if _few_channels(g) and g.stride_h == 1 and g.stride_w == 1 else _gemm


def _dgrad_method(g):
    return _direct if _few_channels(g) else _gemm


def _ieee(fn):
    """Runs fn with NumPy's floating-point warnings off: like PyTorch, Inf and NaN simply propagate."""
    @functools.wraps(fn)
    def quiet(*args, **kwargs):
        with numpy.errstate(all="ignore"):
            return fn(*args, **kwargs)
    return quiet


def _compute_dtype(dtype) -> numpy.dtype:
    return numpy.dtype(numpy.float32) if dtype == numpy.float16 else numpy.dtype(dtype)


def _contiguous(a, dtype):
    return numpy.ascontiguousarray(a, dtype=dtype)


def _finish(out, bias, dtype):
    """Adds bias along axis 1 (in the compute dtype) and returns out in the caller's dtype."""
    if bias is not None:
        _parallel.add(out, bias.astype(out.dtype, copy=False).reshape(1, -1, 1, 1))
    return out.astype(dtype, copy=False)


@_ieee
def conv2d_fprop(g, x, w, bias=None):
    """y (N, K, P, Q) = conv2d of x (N, C, H, W) with w (K, C/groups, R, S), plus bias[k] when given."""
    dt = _compute_dtype(x.dtype)
    return _finish(_fprop_method(g).fprop(g, x, _contiguous(w, dt), dt), bias, x.dtype)


@_ieee
def conv2d_dgrad(g, gy, w, bias=None):
    """gx (N, C, H, W): the gradient of conv2d's input given gy (N, K, P, Q), plus bias[c] when given (a
    transposed convolution's forward)."""
    dt = _compute_dtype(gy.dtype)
    return _finish(_dgrad_method(g).dgrad(g, gy, _contiguous(w, dt), dt), bias, gy.dtype)


@_ieee
def conv2d_wgrad(g, x, gy):
    """gw (K, C/groups, R, S): the gradient of conv2d's weight given input x and gy (N, K, P, Q)."""
    dt = _compute_dtype(x.dtype)
    return _gemm.wgrad(g, x, gy, dt).astype(x.dtype, copy=False)
