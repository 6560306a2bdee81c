"""Average pooling on NumPy, forward and backward, in PyTorch's summation order.

PyTorch's CPU kernel sums each window row-major (skipping the padding) and divides by

* divisor_override, when given;
* else, with count_include_pad, the window's cells inside input plus padding: a ceil_mode window that runs
  past the padding is clipped there first;
* else the window's cells inside the input.

The backward adds grad_output / divisor to every input cell of the window, for the outputs in row-major
order. Both loops below visit the taps so that each sum sees its terms in that same order (the padding
holds 0, and x + 0 == x), so float32 and float64 results match PyTorch's bit for bit. The sign of zero
too: PyTorch's sums start from +0.0, so a window (or a gradient cell) of -0.0 gives +0.0; ours start from
+0.0 as well (the first term is added to 0 rather than copied).
"""

from __future__ import annotations

import numpy

from .._params import PoolGeometry
from . import _pool_split
from ._pool_windows import BLOCK_BYTES, TapLayout, axis_window_counts, compute_dtype, plane_blocks


def _divisor(g: PoolGeometry, dtype):
    """(P, Q) array (or scalar) each window's sum is divided by."""
    if g.divisor_override is not None:
        return dtype.type(g.divisor_override)
    rows_pad, rows_in = axis_window_counts(g.H, g.P, g.kernel_h, g.stride_h, g.pad_h)
    cols_pad, cols_in = axis_window_counts(g.W, g.Q, g.kernel_w, g.stride_w, g.pad_w)
    rows, cols = (rows_pad, cols_pad) if g.count_include_pad else (rows_in, cols_in)
    # a window with no input cell gets 0 (PyTorch's rule); _params' padding limit makes that impossible
    count = numpy.maximum(rows[:, None] * cols[None, :], 1)
    return count.astype(dtype)


def avg_pool2d_fprop(g: PoolGeometry, x):
    dt = compute_dtype(x.dtype)
    divisor = _divisor(g, dt)
    axis = _pool_split.wide_axis(g)
    if axis is not None:  # windows far apart: one output row / column at a time
        return _pool_split.avg_fprop(g, x, axis, avg_pool2d_fprop, divisor)
    lay = TapLayout.of(g)
    y = numpy.empty(g.output_shape, dtype=x.dtype)
    taps = list(lay.taps())
    for ns, cs in plane_blocks(g.N, g.C, g.H * g.W, BLOCK_BYTES // dt.itemsize):
        buf = lay.fill(x[ns, cs], 0, dt)
        acc = numpy.add(lay.view(buf, *taps[0]), dt.type(0))  # +0.0 + x: a -0.0 sum becomes +0.0, as PyTorch's
        for i, j in taps[1:]:
            numpy.add(acc, lay.view(buf, i, j), out=acc)
        numpy.divide(acc, divisor, out=acc)
        y[ns, cs] = acc
    return y


def avg_pool2d_bprop(g: PoolGeometry, gy):
    dt = compute_dtype(gy.dtype)
    divisor = _divisor(g, dt)
    axis = _pool_split.wide_axis(g)
    if axis is not None:  # windows far apart: one output row / column at a time
        return _pool_split.avg_bprop(g, gy, axis, avg_pool2d_bprop, divisor)
    lay = TapLayout.of(g)
    gx = numpy.empty(g.input_shape, dtype=gy.dtype)
    # A cell reached by tap (i, j) of output (p, q) is reached by larger p for smaller i: visiting the taps
    # in reverse row-major order adds each cell's terms in the outputs' row-major order, as PyTorch does.
    taps = list(reversed(list(lay.taps())))
    # With stride == kernel the taps' views tile the buffer exactly: each cell gets one term, assigned.
    tiles = g.stride_h == g.kernel_h and g.stride_w == g.kernel_w
    for ns, cs in plane_blocks(g.N, g.C, g.H * g.W, BLOCK_BYTES // dt.itemsize):
        share = numpy.divide(gy[ns, cs], divisor, dtype=dt)
        n, c = share.shape[:2]
        buf = lay.empty_buffer(n, c, dt)
        if tiles:
            for i, j in taps:
                numpy.add(share, dt.type(0), out=lay.view(buf, i, j))  # +0.0 + share, as PyTorch's zeroed gx
        else:
            buf[...] = 0
            for i, j in taps:
                v = lay.view(buf, i, j)
                numpy.add(v, share, out=v)
        lay.unfill(buf, gx[ns, cs])
    return gx
