"""Convolutions whose windows mostly read padding: padding and dilation (or stride) far past the input.

Output row p reads, through tap r, padded row p*stride + r*dil - pad_top. The methods of ``_gemm`` and
``_direct`` work on the zero-padded frame of all rows from the first to the last of those, whose height
(P-1)*stride + dil*(R-1) + 1 grows with the arguments, not with the work: padding=10**6 with dilation=10**6
on a 9-row input gives 9 output rows but a frame of 2*10**6 rows. Along such an axis this module gathers
the R*P rows that are actually read, row r*P + p holding padded row p*stride + r*dil - pad_top (zero in the
padding), into a new input; the convolution of that input with stride 1, dilation P and no padding reads
exactly the same values in the same places (output row p, tap r reads row p + r*P), so every pass is the
same computation on an input of R*P rows. The input gradient is gathered back (each gathered row adds onto
its source row; padding rows are dropped: a tap that reaches a position only through padding gives it
nothing, as in PyTorch).

Used only where it shrinks the frame a lot (see :func:`plan`): ordinary layers never take it.
"""

from __future__ import annotations

import dataclasses

import numpy

# Gather an axis only when its frame is at least this many times the gathered rows and this long.
_MIN_SHRINK = 4
_MIN_EXTENT = 1024


@dataclasses.dataclass(frozen=True)
class Plan:
    geometry: object  # the convolution on the gathered input
    rows: numpy.ndarray  # source row of each gathered row, H (the zero row) for padding; or None
    cols: numpy.ndarray  # alike for columns; or None


def _axis(size, out, taps, stride, dil, pad):
    """The gathered rows' sources along one axis, or None where gathering does not pay."""
    extent = (out - 1) * stride + dil * (taps - 1) + 1
    if extent < _MIN_EXTENT or extent < _MIN_SHRINK * taps * out:
        return None
    r = numpy.arange(taps, dtype=numpy.int64)[:, None]
    p = numpy.arange(out, dtype=numpy.int64)[None, :]
    src = (p * stride + r * dil - pad).reshape(-1)
    return numpy.where((src >= 0) & (src < size), src, size)


def plan(g):
    """How to run g on gathered rows / columns, or None when neither axis needs it."""
    rows = _axis(g.H, g.P, g.R, g.stride_h, g.dil_h, g.pad_top)
    cols = _axis(g.W, g.Q, g.S, g.stride_w, g.dil_w, g.pad_left)
    if rows is None and cols is None:
        return None
    changes = {}
    if rows is not None:
        changes.update(H=g.R * g.P, stride_h=1, dil_h=g.P, pad_top=0, pad_bottom=0)
    if cols is not None:
        changes.update(W=g.S * g.Q, stride_w=1, dil_w=g.Q, pad_left=0, pad_right=0)
    return Plan(dataclasses.replace(g, **changes), rows, cols)


def gather(pl: Plan, x):
    """x (N, C, H, W) -> the gathered input of pl.geometry (zeros where the source is padding)."""
    N, C, H, W = x.shape
    ext = numpy.zeros((N, C, H + 1, W + 1), x.dtype)  # one zero row and column for the padding sources
    ext[:, :, :H, :W] = x
    if pl.rows is not None:
        ext = numpy.take(ext, pl.rows, axis=2)
    else:
        ext = ext[:, :, :H]
    if pl.cols is not None:
        ext = numpy.take(ext, pl.cols, axis=3)
    else:
        ext = ext[:, :, :, :W]
    return ext


def scatter(pl: Plan, gxg, shape):
    """The adjoint of :func:`gather`: gxg (N, C, H', W') summed back onto an (N, C, H, W) gradient."""
    N, C, H, W = shape
    g = gxg
    if pl.cols is not None:
        out = numpy.zeros((N, C, g.shape[2], W + 1), g.dtype)
        numpy.add.at(out, (slice(None), slice(None), slice(None), pl.cols), g)
        g = out[..., :W]
    if pl.rows is not None:
        out = numpy.zeros((N, C, H + 1, W), g.dtype)
        numpy.add.at(out, (slice(None), slice(None), pl.rows), g)
        g = out[:, :, :H]
    return numpy.ascontiguousarray(g)
