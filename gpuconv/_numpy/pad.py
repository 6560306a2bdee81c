"""Explicit padding for conv2d's padding_mode ('reflect', 'replicate', 'circular') and its adjoint.

Both directions go through one index map per axis: padded position i reads source position ``src[i]``.
The forward pass gathers with that map; the backward pass sums every padded position onto its source,
grouped with a stable sort and ``add.reduceat`` so that the order of the sums is fixed (deterministic).
"""

from __future__ import annotations

import numpy


def _source_index(size: int, before: int, after: int, mode: str) -> numpy.ndarray:
    """For each position of a padded axis (length before + size + after), the source position it copies,
    as torch.nn.functional.pad does for that mode."""
    j = numpy.arange(-before, size + after)
    if mode == "replicate":
        return numpy.clip(j, 0, size - 1)
    if mode == "circular":
        return j % size
    if mode == "reflect":
        # Mirror about the edge elements without repeating them (needs before, after < size).
        j = numpy.abs(j)
        return numpy.where(j >= size, 2 * (size - 1) - j, j)
    raise ValueError(f"pad2d: unknown mode {mode!r}")


def pad2d(x, pads, mode):
    """x (N, C, H, W) padded by pads = (top, bottom, left, right) in mode reflect / replicate / circular."""
    top, bottom, left, right = pads
    rows = _source_index(x.shape[2], top, bottom, mode)
    cols = _source_index(x.shape[3], left, right, mode)
    return numpy.take(numpy.take(x, rows, axis=2), cols, axis=3)


def _sum_onto_sources(g, src: numpy.ndarray, axis: int, acc_dtype):
    """The adjoint of ``take(x, src, axis)``: entry t of the result is the sum of g's entries at every i with
    src[i] == t, added in increasing i."""
    if g.shape[axis] == src.size and (src == numpy.arange(src.size)).all():  # nothing padded on this axis
        return g.astype(acc_dtype)  # a copy: never hand back the caller's array
    order = numpy.argsort(src, kind="stable")
    starts = numpy.flatnonzero(numpy.r_[True, numpy.diff(src[order]) != 0])
    return numpy.add.reduceat(numpy.take(g, order, axis=axis), starts, axis=axis, dtype=acc_dtype)


def pad2d_backward(gxp, pads, mode):
    """Gradient of :func:`pad2d`: gxp (N, C, H + top + bottom, W + left + right) -> (N, C, H, W)."""
    top, bottom, left, right = pads
    H = gxp.shape[2] - top - bottom
    W = gxp.shape[3] - left - right
    acc = numpy.float32 if gxp.dtype == numpy.float16 else gxp.dtype
    g = _sum_onto_sources(gxp, _source_index(H, top, bottom, mode), 2, acc)
    g = _sum_onto_sources(g, _source_index(W, left, right, mode), 3, acc)
    return g.astype(gxp.dtype, copy=False)
