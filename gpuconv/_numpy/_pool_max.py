"""Max pooling on NumPy: forward with PyTorch's indices, and the backward that scatters by index.

PyTorch's CPU kernel scans each window row-major from maxval = -inf, maxindex = the window's first in-bound
element, and takes a value when ``val > maxval or isnan(val)``. Its result therefore is:

* a window holding a NaN: the NaN, at the index of the window's LAST NaN;
* otherwise, if the maximum m > -inf: m at the index of its FIRST occurrence (ties keep the earliest);
* a window of only -inf (or, with dilation, one whose taps all fall in the padding): -inf at the first
  in-bound element's index, the index the scan started from.

The forward reproduces that in passes over the kh*kw taps, each a whole-array operation on one tap's
(n, c, P, Q) view (see ``_pool_windows``): a max pass for the values, a reverse pass that records the
first tap equal to the maximum, then fix-ups for the two rare cases, run only where they occur.
"""

from __future__ import annotations

import numpy

from .._params import PoolGeometry
from ._pool_windows import TapLayout, compute_dtype, plane_blocks

# Elements of input per block of planes: the phase buffer, the output and the offsets of one block stay in
# the CPU's cache through the tap passes.
_BLOCK_ELEMS = 1 << 17


def max_pool2d_fprop(g: PoolGeometry, x):
    lay = TapLayout.of(g)
    dt = compute_dtype(x.dtype)
    y = numpy.empty(g.output_shape, dtype=x.dtype)
    idx = numpy.empty(g.output_shape, dtype=numpy.int64)
    # offsets of taps from a window's origin fit int32 in all but giant planes; int32 halves the traffic
    off_dtype = numpy.int32 if g.H * g.W < 2**31 else numpy.int64
    origin = _window_origins(g)
    first_inbound = _first_inbound_offsets(g).astype(off_dtype)
    for ns, cs in plane_blocks(g.N, g.C, g.H * g.W, _BLOCK_ELEMS):
        buf = lay.fill(x[ns, cs], -numpy.inf, dt)
        yb, off = _block_max(lay, buf, off_dtype, first_inbound)
        y[ns, cs] = yb
        numpy.add(origin, off, out=idx[ns, cs])
    return y, idx


def _block_max(lay: TapLayout, buf, off_dtype, first_inbound):
    """Values and per-window tap offsets (i*dil_h*W + j*dil_w) of one block of planes."""
    g = lay.g
    taps = list(lay.taps())
    yb = lay.view(buf, *taps[0]).copy()
    for i, j in taps[1:]:
        numpy.maximum(yb, lay.view(buf, i, j), out=yb)  # NaN propagates
    off = numpy.empty(yb.shape, dtype=off_dtype)
    eq = numpy.empty(yb.shape, dtype=bool)
    # reverse order, each match overwriting: the first tap holding the maximum wins
    for i, j in reversed(taps):
        numpy.equal(lay.view(buf, i, j), yb, out=eq)
        numpy.copyto(off, i * g.dil_h * g.W + j * g.dil_w, where=eq)
    # every window whose maximum is neither NaN nor -inf has now been written; -inf matched the padding
    numpy.equal(yb, -numpy.inf, out=eq)
    if eq.any():
        numpy.copyto(off, first_inbound, where=eq)
    numpy.isnan(yb, out=eq)
    if eq.any():
        # forward order, each NaN overwriting: the last NaN wins (NaN never equals the maximum above)
        for i, j in taps:
            numpy.isnan(lay.view(buf, i, j), out=eq)
            numpy.copyto(off, i * g.dil_h * g.W + j * g.dil_w, where=eq)
    return yb, off


def _window_origins(g: PoolGeometry):
    """(P, Q) int64: the flat index of tap (0, 0) of each window, (p*sh - ph)*W + (q*sw - pw); negative or
    past the plane for windows that start in the padding (a tap offset brings them in bounds)."""
    rows = numpy.arange(g.P, dtype=numpy.int64) * g.stride_h - g.pad_h
    cols = numpy.arange(g.Q, dtype=numpy.int64) * g.stride_w - g.pad_w
    return rows[:, None] * g.W + cols[None, :]


def _first_inbound_offsets(g: PoolGeometry):
    """(P, Q) int64: the offset from each window's origin to its first tap at a row and column >= 0, where
    PyTorch's scan starts. With dilation that tap may lie past the input (all taps in the padding); PyTorch
    still reports its index, and so do we."""
    def first_tap(out, s, pad, d):
        start = numpy.arange(out, dtype=numpy.int64) * s - pad
        return -(-numpy.maximum(-start, 0) // d)  # ceil(max(0, -start) / d)

    ti = first_tap(g.P, g.stride_h, g.pad_h, g.dil_h)
    tj = first_tap(g.Q, g.stride_w, g.pad_w, g.dil_w)
    return (ti * g.dil_h)[:, None] * g.W + (tj * g.dil_w)[None, :]


def max_pool2d_bprop(gy, indices, input_shape):
    """gx[n, c].flat[i] = sum of gy[n, c, p, q] over the (p, q) with indices[n, c, p, q] == i, added in
    output order as PyTorch does (so float32 results match it bit for bit). float16 adds in float32."""
    N, C, H, W = input_shape
    acc = compute_dtype(gy.dtype)
    plane = numpy.arange(N * C, dtype=numpy.int64).reshape(N, C, 1, 1) * (H * W)
    keys = numpy.add(indices, plane, dtype=numpy.int64)
    gx = numpy.zeros(N * C * H * W, dtype=acc)
    # ufunc.at applies repeated keys one after another, in the order given (unlike gx[keys] += gy)
    numpy.add.at(gx, keys.reshape(-1), gy.astype(acc, copy=False).reshape(-1))
    return gx.reshape(N, C, H, W).astype(gy.dtype, copy=False)
