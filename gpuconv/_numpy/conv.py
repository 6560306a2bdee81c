"""conv2d's three passes on NumPy arrays, as ``gpuconv._backend`` specifies them.

This module owns the dtype rule (float16 computes in float32 and returns float16), the bias, and the
choice of method:

- ``_direct`` (per-tap multiply-adds over whole arrays) when a group has so few channels and filters that
  (C/groups) * (K/groups) <= 4, depthwise above all: there a GEMM per group would be a long run of tiny
  BLAS calls, and the multiply-adds do the same arithmetic in a few cache-resident passes (at stride > 1
  over the input's stride phases, so that every pass still runs over long contiguous rows);
- ``_gemm`` (im2col / per-tap GEMM over strided window views, workspace capped by ``_tiling``) otherwise.

Before any method, two rewrites keep time and memory proportional to the work (issue 14): a stride along an
axis with a single output counts as 1, and an axis whose windows mostly read padding (padding with a
dilation or stride far past the input) runs on the rows actually read (``_sparse_axes``). dgrad with a
non-finite weight runs the scatter methods (the gathers would multiply padding zeros by it).

Strided dgrad where K/groups <= C/groups runs one stride-1 fprop per stride phase of gx (``_phases``).
wgrad always uses ``_gemm``: its per-tap products have a whole image as inner dimension, long even for
depthwise. Inputs are never written: every method reads through views and writes only arrays it allocates.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy

from . import _direct, _gemm, _parallel, _phases, _sparse_axes

_DIRECT_MAX_CHANNEL_PRODUCT = 4


def _few_channels(g) -> bool:
    return g.c_per_group * g.k_per_group <= _DIRECT_MAX_CHANNEL_PRODUCT


def _fprop_method(g):
    return _direct if _few_channels(g) else _gemm


def _by_phases(g):
    """Strided dgrad by stride phases where gy has no more channels per group than gx: the phases' im2col
    copies gy's channels, the scatter's col2im adds gx's, so the phases win when K <= C (measured: ResNet's
    3x3/2 and MobileNetV2's depthwise 3x3/2 a little faster; with K = 2C, DCGAN's 4x4/2 and U-Net's 2x2/2,
    slower, and the 7x7/2 stem with K = 21C six times slower). At stride 1 ``_flipped`` does the same."""
    return (g.stride_h > 1 or g.stride_w > 1) and g.k_per_group <= g.c_per_group


def _dgrad_method(g):
    return _direct if _few_channels(g) else _gemm


def _ieee(fn):
    """Runs fn with NumPy's floating-point warnings off: like PyTorch, Inf and NaN simply propagate."""
    @functools.wraps(fn)
    def quiet(*args, **kwargs):
        with numpy.errstate(all="ignore"):
            return fn(*args, **kwargs)
    return quiet


def _single_output_strides(g):
    """g with stride 1 along an axis that has one output (P == 1 or Q == 1): the stride then moves no window
    (there is no second one), and every method's workspace (stride phases, padded frames) would otherwise
    grow with it; pad_bottom / pad_right are recomputed so that the geometry stays self-consistent."""
    if (g.P > 1 or g.stride_h == 1) and (g.Q > 1 or g.stride_w == 1):
        return g
    changes = {}
    if g.P == 1 and g.stride_h != 1:
        changes.update(stride_h=1, pad_bottom=g.P - g.H - g.pad_top + g.dil_h * (g.R - 1))
    if g.Q == 1 and g.stride_w != 1:
        changes.update(stride_w=1, pad_right=g.Q - g.W - g.pad_left + g.dil_w * (g.S - 1))
    return dataclasses.replace(g, **changes)


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
    g = _single_output_strides(g)
    sparse = _sparse_axes.plan(g)
    if sparse is not None:
        g, x = sparse.geometry, _sparse_axes.gather(sparse, x)
    dt = _compute_dtype(x.dtype)
    return _finish(_fprop_method(g).fprop(g, x, _contiguous(w, dt), dt), bias, x.dtype)


def _dgrad_by_phases(g, gy, w, dtype):
    """gx as one stride-1 forward convolution per stride phase (``_phases``), each written straight into
    its strided slice of gx."""
    phases = _phases.dgrad_phases(g)
    gx = numpy.empty(g.input_shape, dtype)
    for ph in phases:
        dst = gx[:, :, ph.rows.start::g.stride_h, ph.cols.start::g.stride_w]
        sub = ph.geometry
        if sub is None:
            dst.fill(0)
        else:
            _fprop_method(sub).fprop(sub, gy[:, :, ph.rows.skip:, ph.cols.skip:], _phases.filters(g, ph, w),
                                     dtype, out=dst)
    return gx


@_ieee
def conv2d_dgrad(g, gy, w, bias=None):
    """gx (N, C, H, W): the gradient of conv2d's input given gy (N, K, P, Q), plus bias[c] when given (a
    transposed convolution's forward).

    The gather methods (stride-1 flipped fprop, stride phases) read gy through a zero frame, so a tap that
    reaches past gy multiplies a padding zero by its weight: 0 * NaN and 0 * Inf would put NaN on positions
    that tap never touches, where PyTorch (a scatter of real products) has finite values. With a non-finite
    weight the scatter methods run instead; checking w costs one pass over the (small) filter."""
    g = _single_output_strides(g)
    dt = _compute_dtype(gy.dtype)
    w = _contiguous(w, dt)
    sparse = _sparse_axes.plan(g)
    if sparse is not None:  # the gathered input's gradient, summed back onto the input (in dt)
        gx = _sparse_axes.scatter(sparse, _dgrad(sparse.geometry, gy, w, dt), g.input_shape)
    else:
        gx = _dgrad(g, gy, w, dt)
    return _finish(gx, bias, gy.dtype)


def _dgrad(g, gy, w, dt):
    if not numpy.isfinite(w).all():
        return _dgrad_method(g).dgrad(g, gy, w, dt, gather=False)
    if _by_phases(g):
        return _dgrad_by_phases(g, gy, w, dt)
    return _dgrad_method(g).dgrad(g, gy, w, dt)


@_ieee
def conv2d_bias_grad(gy):
    """gb (K,): gy (N, K, P, Q) summed over N, P and Q (float16 in float32)."""
    return gy.sum(axis=(0, 2, 3), dtype=_compute_dtype(gy.dtype)).astype(gy.dtype, copy=False)


@_ieee
def conv2d_wgrad(g, x, gy):
    """gw (K, C/groups, R, S): the gradient of conv2d's weight given input x and gy (N, K, P, Q)."""
    g = _single_output_strides(g)
    sparse = _sparse_axes.plan(g)
    if sparse is not None:
        g, x = sparse.geometry, _sparse_axes.gather(sparse, x)
    dt = _compute_dtype(x.dtype)
    return _gemm.wgrad(g, x, gy, dt).astype(x.dtype, copy=False)
