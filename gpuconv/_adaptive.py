"""Adaptive pooling with windows of uneven sizes, from plain array operations (NumPy or CuPy alike).

PyTorch's windows: along a dimension of size L pooled to O outputs, output i covers
[floor(i*L/O), ceil((i+1)*L/O)). A box of such windows is separable, so both reductions run one spatial
axis at a time, innermost first: each axis gathers its windows into a padded (O, M) block (M = the longest
window), masks the padding out with ``where`` (never a multiplication, so a NaN or inf cannot leak into a
neighbouring window), and reduces the block.

- Average: the window sum divided by its length, axis by axis; the adjoint spreads each gradient over its
  window, as a gather over the windows holding each input position (no scatter, no atomics).
- Max: PyTorch scans a window in row-major order and takes a value when it is larger than the current one
  or NaN; so the first maximum wins, and any NaN beats it, the last NaN winning. Per axis the same rule
  picks a position; across axes the rule composes (the first row holding the maximum, then its first
  column; the last row holding a NaN, then its last NaN), and the chosen coordinates give the flat index.

The public functions route the cases that are ordinary pooling (O divides L) or a global reduction (O = 1)
to those instead; what is here handles every output size.
"""

from __future__ import annotations

import numpy

from ._volume import _xp, compute_dtype, constant, quiet


def windows(size: int, out: int):
    """(idx (out, M) int64, valid (out, M) bool, length (out,) int64) of the adaptive windows along one axis;
    idx repeats the window's last position where valid is False."""
    i = numpy.arange(out, dtype=numpy.int64)
    start = (i * size) // out
    end = -((-(i + 1) * size) // out)
    length = end - start
    m = numpy.arange(int(length.max()), dtype=numpy.int64)
    valid = m[None, :] < length[:, None]
    idx = numpy.minimum(start[:, None] + m[None, :], end[:, None] - 1)
    return idx, valid, length


def holders(size: int, out: int):
    """The adjoint's map: for each input position l, the windows i that contain it, as (jdx (size, J)
    int64, valid (size, J) bool)."""
    i = numpy.arange(out, dtype=numpy.int64)
    start = (i * size) // out
    end = -((-(i + 1) * size) // out)
    l = numpy.arange(size, dtype=numpy.int64)
    first = numpy.searchsorted(end, l, side="right")  # the first window ending after l
    last = numpy.searchsorted(start, l, side="right") - 1  # the last window starting at or before l
    count = last - first + 1
    j = numpy.arange(int(count.max()), dtype=numpy.int64)
    valid = j[None, :] < count[:, None]
    jdx = numpy.minimum(first[:, None] + j[None, :], last[:, None])
    return jdx, valid


def _on(xp, kind: str, size: int, out: int):
    """windows() or holders() (kind) on xp's device, copied there once per shape (see _volume.constant)."""
    make = windows if kind == "windows" else holders
    return tuple(constant(xp, (kind, size, out, i), lambda i=i: make(size, out)[i])
                 for i in range(3 if kind == "windows" else 2))


def _gather(xp, a, axis: int, idx, valid):
    """a with ``axis`` replaced by the blocks (rows, M) that idx names, and the mask broadcast to them."""
    rows, m = idx.shape
    block = xp.take(a, idx.reshape(-1), axis=axis)
    block = block.reshape(a.shape[:axis] + (rows, m) + a.shape[axis + 1:])
    mask = valid.reshape((rows, m) + (1,) * (a.ndim - axis - 1))
    return block, mask


@quiet
def avg_fprop(x, out: tuple):
    """Adaptive average pooling of x (N, C, *size) to (N, C, *out), in float32 for 16-bit types."""
    xp, dt = _xp(x), compute_dtype(x.dtype)
    a = x.astype(dt, copy=False)
    for axis in range(x.ndim - 1, 1, -1):
        size, o = a.shape[axis], out[axis - 2]
        idx, valid, length = _on(xp, "windows", size, o)
        block, mask = _gather(xp, a, axis, idx, valid)
        total = xp.where(mask, block, dt.type(0)).sum(axis=axis + 1) + dt.type(0)  # +0.0: -0.0 sums to +0.0
        a = total / length.astype(dt).reshape((o,) + (1,) * (x.ndim - axis - 1))
    return a.astype(x.dtype, copy=False)


@quiet
def avg_bprop(gy, input_shape: tuple):
    """The adjoint of avg_fprop: each gradient divided by its window's length and gathered onto the input
    positions of its window (axis by axis, outermost first)."""
    xp, dt = _xp(gy), compute_dtype(gy.dtype)
    g = gy.astype(dt, copy=False)
    for axis in range(2, gy.ndim):
        size, o = input_shape[axis], g.shape[axis]
        length = _on(xp, "windows", size, o)[2]
        g = g / length.astype(dt).reshape((o,) + (1,) * (gy.ndim - axis - 1))
        jdx, valid = _on(xp, "holders", size, o)
        block, mask = _gather(xp, g, axis, jdx, valid)
        g = xp.where(mask, block, dt.type(0)).sum(axis=axis + 1)
    return g.astype(gy.dtype, copy=False)


def _pick(xp, block, mask, axis: int):
    """Per window (axis ``axis`` of the (..., rows, M, ...) block): the position PyTorch's scan keeps, the
    last NaN if there is one, else the first maximum; masked entries (the window's padding) never win."""
    m_axis = axis + 1
    block = xp.where(mask, block, -numpy.inf)
    nan = block != block
    has_nan = nan.any(axis=m_axis)
    m = block.shape[m_axis]
    last_nan = (m - 1) - xp.argmax(xp.flip(nan, axis=m_axis), axis=m_axis)
    first_max = xp.argmax(xp.where(nan, -numpy.inf, block), axis=m_axis)
    return xp.where(has_nan, last_nan, first_max)


def _take_picked(xp, block, pos, axis: int):
    return xp.take_along_axis(block, xp.expand_dims(pos, axis + 1), axis=axis + 1).squeeze(axis + 1)


@quiet
def max_fprop(x, out: tuple):
    """(y, indices int64) of adaptive max pooling of x (N, C, *size) to (N, C, *out); indices flat within
    each (n, c) plane or volume."""
    xp = _xp(x)
    size = x.shape[2:]
    vals = x.astype(compute_dtype(x.dtype), copy=False)  # exact: a max only moves values
    coords = []  # per reduced axis (innermost first): the input coordinate kept, shaped like vals
    for axis in range(x.ndim - 1, 1, -1):
        idx, valid, _ = _on(xp, "windows", vals.shape[axis], out[axis - 2])
        block, mask = _gather(xp, vals, axis, idx, valid)
        pos = _pick(xp, block, mask, axis)
        vals = _take_picked(xp, block, pos, axis)
        # Coordinates already chosen along inner axes follow the pick; this axis's own is idx[i, pos].
        coords = [_take_picked(xp, _gather(xp, c, axis, idx, valid)[0], pos, axis) for c in coords]
        here = idx[xp.arange(idx.shape[0]).reshape((-1,) + (1,) * (x.ndim - axis - 1)), pos]
        coords.append(here)
    flat = xp.zeros(vals.shape, dtype=numpy.int64)
    stride = 1
    for axis, c in zip(range(x.ndim - 1, 1, -1), coords):
        flat += c.astype(numpy.int64) * stride
        stride *= size[axis - 2]
    return vals.astype(x.dtype, copy=False), flat


@quiet
def global_max(x):
    """(y, indices) of adaptive max pooling to size 1 along every spatial axis: one window, the flat plane."""
    xp = _xp(x)
    N, C = x.shape[:2]
    flat = x.astype(compute_dtype(x.dtype), copy=False).reshape(N, C, 1, -1)
    mask = xp.ones((1, flat.shape[-1]), dtype=bool)
    pos = _pick(xp, flat, mask, 2)  # (N, C, 1)
    vals = _take_picked(xp, flat, pos, 2)
    shape = (N, C) + (1,) * (x.ndim - 2)
    return vals.astype(x.dtype, copy=False).reshape(shape), pos.astype(numpy.int64).reshape(shape)


@quiet
def global_avg(x):
    """Adaptive average pooling to size 1 along every spatial axis: the mean over each plane."""
    dt = compute_dtype(x.dtype)
    count = 1
    for s in x.shape[2:]:
        count *= s
    if isinstance(x, numpy.ndarray):  # BLAS's matrix-vector product: about 10x NumPy's sum over two axes
        rows = numpy.ascontiguousarray(x, dtype=dt).reshape(-1, count)
        total = (rows @ numpy.ones(count, dt)).reshape(x.shape[:2] + (1,) * (x.ndim - 2)) + dt.type(0)
    else:  # CuPy's reduction (fixed order, deterministic)
        total = x.sum(axis=tuple(range(2, x.ndim)), dtype=dt, keepdims=True) + dt.type(0)
    return (total / dt.type(count)).astype(x.dtype, copy=False)


@quiet
def global_avg_bprop(gy, input_shape):
    xp, dt = _xp(gy), compute_dtype(gy.dtype)
    count = 1
    for s in input_shape[2:]:
        count *= s
    g = gy.astype(dt, copy=False) / dt.type(count)
    return xp.ascontiguousarray(xp.broadcast_to(g, tuple(input_shape))).astype(gy.dtype, copy=False)
