"""Pooling whose windows lie far apart, one output row (or column) at a time.

The tap loops of ``_pool_max`` / ``_pool_avg`` read a padded buffer that spans every window of an axis:
(P - 1)*stride plus the span of the useful taps. A kernel and padding far larger than the input with two or
more outputs (kernel 2^16, padding and stride 2^15 on a 9 x 9 input: 24 GiB) make that span grow with the
stride while the windows read only the input between them. Along such an axis each output is pooled on its
own: a geometry with one output there, its window's origin expressed through the padding (negative where
the window starts inside the input) and its stride irrelevant, whose buffer spans that window's useful taps
only. Average pooling divides by the original geometry's divisors (the sub-geometries sum: divisor 1), so
ceil_mode and count_include_pad keep their meaning; its backward adds the rows' shares in output order
(rounding may differ from PyTorch's single pass by an ulp, in this corner only).
"""

from __future__ import annotations

import dataclasses

import numpy

from ._pool_windows import TapLayout, compute_dtype

_SLACK = 16  # a buffer axis longer than this many times (input + outputs) + 64 is split


def wide_axis(g):
    """'rows' or 'cols' when that axis's buffer would outgrow its input and outputs, else None."""
    lay = TapLayout.of(g)
    if g.P > 1 and lay.Hp > _SLACK * (g.H + g.P) + 64:
        return "rows"
    if g.Q > 1 and lay.Wp > _SLACK * (g.W + g.Q) + 64:
        return "cols"
    return None


def parts(g, axis: str):
    """(sub-geometry, output index) for every output along ``axis``: one output there, same windows."""
    for o in range(g.P if axis == "rows" else g.Q):
        if axis == "rows":
            yield dataclasses.replace(g, P=1, pad_h=g.pad_h - o * g.stride_h, stride_h=1), o
        else:
            yield dataclasses.replace(g, Q=1, pad_w=g.pad_w - o * g.stride_w, stride_w=1), o


def _at(axis: str, o: int):
    return (Ellipsis, slice(o, o + 1), slice(None)) if axis == "rows" else (Ellipsis, slice(o, o + 1))


def max_fprop(g, x, axis, fprop):
    """(y, indices) of a max pooling split along ``axis``; ``fprop`` pools each part (and splits it again
    along the other axis if needed)."""
    y = numpy.empty(g.output_shape, x.dtype)
    idx = numpy.empty(g.output_shape, numpy.int64)
    for sub, o in parts(g, axis):
        y[_at(axis, o)], idx[_at(axis, o)] = fprop(sub, x)
    return y, idx


def avg_fprop(g, x, axis, fprop, divisor):
    """An average pooling split along ``axis``: each part's window sums (in the compute dtype), divided by
    the original geometry's ``divisor`` (P, Q) or scalar, rounded once."""
    dt = compute_dtype(x.dtype)
    xs = x.astype(dt, copy=False)
    total = numpy.empty(g.output_shape, dt)
    for sub, o in parts(g, axis):
        total[_at(axis, o)] = fprop(dataclasses.replace(sub, divisor_override=1), xs)
    return numpy.divide(total, divisor, out=total).astype(x.dtype, copy=False)


def avg_bprop(g, gy, axis, bprop, divisor):
    """The adjoint of :func:`avg_fprop`: each output row's (column's) share gy / divisor spread over its
    windows, the rows added in output order."""
    dt = compute_dtype(gy.dtype)
    share = numpy.divide(gy, divisor, dtype=dt)
    gx = numpy.zeros(g.input_shape, dt)
    for sub, o in parts(g, axis):
        gx += bprop(dataclasses.replace(sub, divisor_override=1), share[_at(axis, o)])
    return gx.astype(gy.dtype, copy=False)
