"""Max pooling on NumPy: forward with PyTorch's indices, and the backward that scatters by index.

PyTorch's CPU kernel scans each window row-major from maxval = -inf, maxindex = the window's first in-bound
element, and takes a value when ``val > maxval or isnan(val)``. Its result therefore is:

* a window holding a NaN: the NaN, at the index of the window's LAST NaN;
* otherwise, if the maximum m > -inf: m at the index of its FIRST occurrence (ties keep the earliest);
* a window of only -inf (or, with dilation, one whose taps all fall in the padding): -inf at the first
  in-bound element's index, the index the scan started from.

The forward reproduces that in passes over the kh*kw taps, each a whole-array operation on one tap's
(n, c, P, Q) view (see ``_pool_windows``): a max pass for the values, a pass that finds the first tap equal
to the maximum, then fix-ups for the two rare cases, run only where they occur.
"""

from __future__ import annotations

import numpy

from .._params import PoolGeometry
from . import _pool_split
from ._pool_windows import BLOCK_BYTES, TapLayout, compute_dtype, plane_blocks


def max_pool2d_fprop(g: PoolGeometry, x):
    axis = _pool_split.wide_axis(g)
    if axis is not None:  # windows far apart: one output row / column at a time
        return _pool_split.max_fprop(g, x, axis, max_pool2d_fprop)
    lay = TapLayout.of(g)
    dt = compute_dtype(x.dtype)
    y = numpy.empty(g.output_shape, dtype=x.dtype)
    idx = numpy.empty(g.output_shape, dtype=numpy.int64)
    taps = list(lay.taps())
    # a tap's offset from its window's origin; int32 (the usual case) makes the lookup twice as fast
    offsets = [i * g.dil_h * g.W + j * g.dil_w for i, j in taps]
    off_dtype = numpy.int32 if max(offsets) < 2**31 else numpy.int64
    tap_offset = numpy.array(offsets, dtype=off_dtype)
    code_dtype = _code_dtype(2 * len(taps) + 1)
    origin = _window_origins(g)
    first_index = origin + _first_inbound_offsets(g)  # the index of a window whose maximum is -inf
    for ns, cs in plane_blocks(g.N, g.C, g.H * g.W, BLOCK_BYTES // dt.itemsize):
        buf = lay.fill(x[ns, cs], -numpy.inf, dt)
        yb, tap, minus_inf = _block_max(lay, buf, code_dtype)
        y[ns, cs] = yb
        numpy.add(origin, numpy.take(tap_offset, tap), out=idx[ns, cs])
        if minus_inf is not None:
            numpy.copyto(idx[ns, cs], first_index, where=minus_inf)
    return y, idx


def _code_dtype(largest: int):
    """The smallest unsigned dtype that holds codes up to largest."""
    for dt in (numpy.uint8, numpy.uint16, numpy.uint32):
        if largest <= numpy.iinfo(dt).max:
            return numpy.dtype(dt)
    return numpy.dtype(numpy.uint64)


def _block_max(lay: TapLayout, buf, code_dtype):
    """Values, the number t of each window's winning tap (in ``lay.taps()`` order) for one block, and the
    mask of windows whose maximum is -inf (None when there are none): their index is the first in-bound
    element's, which the caller sets (that tap may be one the layout skips)."""
    taps = list(lay.taps())
    yb = lay.view(buf, *taps[0]).copy()
    for i, j in taps[1:]:
        numpy.maximum(yb, lay.view(buf, i, j), out=yb)  # NaN propagates
    tap = _first_taps_equal(lay, buf, yb, code_dtype)
    # every window whose maximum is neither NaN nor -inf now has its tap; -inf matched the padding
    minus_inf = numpy.equal(yb, -numpy.inf)
    if not minus_inf.any():
        minus_inf = None
    special = numpy.isnan(yb)
    if special.any():
        numpy.copyto(tap, _last_nan_taps(lay, buf, code_dtype), where=special)
    return yb, tap, minus_inf


def _first_taps_equal(lay: TapLayout, buf, yb, code_dtype):
    """Per window, the first tap t whose value equals yb. Masked assignments are slow on irregular masks,
    so each tap instead contributes the code eq * (T - t) and a running maximum keeps the first match.

    numpy.maximum may return either of -0.0 and 0.0, where PyTorch returns the first zero the window
    holds. When yb has zeros, the code carries the matching tap's sign bit in its lowest bit,
    eq * (2*(T - t) + signbit), and yb takes that sign."""
    T = len(lay.rows) * len(lay.cols)
    signed_zeros = not yb.all()
    code = numpy.zeros(yb.shape, dtype=code_dtype)
    term = numpy.empty(yb.shape, dtype=code_dtype)
    eq = numpy.empty(yb.shape, dtype=bool)
    sign = numpy.empty(yb.shape, dtype=bool) if signed_zeros else None
    for t, (i, j) in enumerate(lay.taps()):
        v = lay.view(buf, i, j)
        numpy.equal(v, yb, out=eq)
        if signed_zeros:
            numpy.signbit(v, out=sign)
            numpy.add(sign.view(numpy.uint8), code_dtype.type(2 * (T - t)), out=term, dtype=code_dtype)
            numpy.multiply(term, eq.view(numpy.uint8), out=term, dtype=code_dtype)
        else:
            numpy.multiply(eq.view(numpy.uint8), code_dtype.type(T - t), out=term, dtype=code_dtype)
        numpy.maximum(code, term, out=code)
    if signed_zeros:
        numpy.copysign(yb, numpy.where(code & 1, yb.dtype.type(-1), yb.dtype.type(1)), out=yb)
        code >>= 1
    # code = T - t where a tap matched; windows without a match get fixed by the caller
    return numpy.subtract(code_dtype.type(T), code, out=code)


def _last_nan_taps(lay: TapLayout, buf, code_dtype):
    """Per window, the last tap holding a NaN (as _first_taps_equal, with code isnan * (t + 1))."""
    code = None
    isnan = None
    term = None
    for t, (i, j) in enumerate(lay.taps()):
        v = lay.view(buf, i, j)
        if code is None:
            code = numpy.zeros(v.shape, dtype=code_dtype)
            term = numpy.empty(v.shape, dtype=code_dtype)
            isnan = numpy.empty(v.shape, dtype=bool)
        numpy.isnan(v, out=isnan)
        numpy.multiply(isnan.view(numpy.uint8), code_dtype.type(t + 1), out=term, dtype=code_dtype)
        numpy.maximum(code, term, out=code)
    return code - code_dtype.type(1)  # wraps in windows without NaN, which the caller does not use


def _window_origins(g: PoolGeometry):
    """(P, Q) int64: the flat index of tap (0, 0) of each window, (p*sh - ph)*W + (q*sw - pw); negative or
    past the plane for windows that start in the padding (a tap offset brings them in bounds)."""
    rows = numpy.arange(g.P, dtype=numpy.int64) * g.stride_h - g.pad_h
    cols = numpy.arange(g.Q, dtype=numpy.int64) * g.stride_w - g.pad_w
    return rows[:, None] * g.W + cols[None, :]


def _first_inbound_offsets(g: PoolGeometry):
    """(P, Q) int64: the offset ti*dil_h*W + tj*dil_w from its origin of each window's first tap at a row
    and column >= 0, where PyTorch's scan starts. With dilation that tap may lie past the input (all taps in
    the padding); PyTorch still reports its index, and so do we."""
    def first_tap(out, s, pad, d):
        start = numpy.arange(out, dtype=numpy.int64) * s - pad
        return -(-numpy.maximum(-start, 0) // d)  # ceil(max(0, -start) / d)

    ti = first_tap(g.P, g.stride_h, g.pad_h, g.dil_h)
    tj = first_tap(g.Q, g.stride_w, g.pad_w, g.dil_w)
    return (ti * g.dil_h * g.W)[:, None] + (tj * g.dil_w)[None, :]


def max_pool2d_bprop(gy, indices, input_shape):
    """gx[n, c].flat[i] = sum of gy[n, c, p, q] over the (p, q) with indices[n, c, p, q] == i, added in
    output order as PyTorch does (so float32 results match it bit for bit). float16 adds in float32."""
    N, C, H, W = input_shape
    planes, HW = N * C, H * W
    acc = compute_dtype(gy.dtype)
    gx = numpy.empty((planes, HW), dtype=gy.dtype)
    gy2 = gy.reshape(planes, -1)
    idx2 = indices.reshape(planes, -1)
    # blocks of planes whose gradient stays in cache while the scatter lands in it
    per_block = max(1, BLOCK_BYTES // (HW * acc.itemsize))
    plane_start = numpy.arange(min(per_block, planes), dtype=numpy.int64)[:, None] * HW
    for p0 in range(0, planes, per_block):
        p1 = min(planes, p0 + per_block)
        keys = idx2[p0:p1].astype(numpy.int64, copy=False) + plane_start[:p1 - p0]
        block = gx[p0:p1].reshape(-1) if acc == gx.dtype else numpy.empty((p1 - p0) * HW, dtype=acc)
        block[...] = 0
        # ufunc.at applies repeated keys one after another, in the order given (unlike block[keys] += ...)
        numpy.add.at(block, keys.reshape(-1), gy2[p0:p1].astype(acc, copy=False).reshape(-1))
        if acc != gx.dtype:
            gx[p0:p1] = block.reshape(p1 - p0, HW)
    return gx.reshape(N, C, H, W)
