"""Convolution passes as per-tap multiply-adds over whole arrays, for groups with very few channels
(depthwise above all), where a GEMM per group would be a long run of tiny BLAS calls.

    fprop  y[n, g, j]               += w[g, j, c, r, s] * x_tap(r, s)[n, g, c]     for every c, r, s
    dgrad  frame_tap(r, s)[n, g, c] += w[g, j, c, r, s] * gy[n, g, j]              for every j, c, r, s

The work is cut into blocks of (images, groups) whose output fits in a core's L2 cache, so each of the
R*S*C/groups passes reads and writes cache rather than memory, and the blocks run on every core
(``_parallel``). Every output element is summed by one thread in the fixed order above: deterministic.

fprop computes rows of the full padded width Wn instead of Q: then tap (r, s) of a whole (P, Wn)
output plane is one contiguous run of the flattened zero frame, starting at r*dil_h*Wn + s*dil_w, and
NumPy's loops run over thousands of elements instead of Q. The Wn - Q extra columns per row are dropped at
the end. At stride > 1 the same holds on each stride phase of the frame. dgrad at stride 1 is that fprop
(``_flipped``); at other strides it scatter-adds (``conv`` may instead run it by phases, ``_phases``).
"""

from __future__ import annotations

import numpy

from . import _flipped, _parallel, _windows
from ._tiling import chunks

# Output elements per block: 256 KiB of float32, within a core's L2 on current x86 and ARM servers.
_BLOCK_ELEMENTS = 1 << 16


def _blocks(N: int, G: int, per_group: int):
    """(n0, n1, g0, g1) blocks of about _BLOCK_ELEMENTS output elements, per_group elements being one
    group's output for one image."""
    if per_group * G <= _BLOCK_ELEMENTS:
        nb = max(1, _BLOCK_ELEMENTS // (per_group * G))
        return [(n0, n1, 0, G) for n0, n1 in chunks(N, nb)]
    gb = max(1, _BLOCK_ELEMENTS // per_group)
    return [(n0, n0 + 1, g0, g1) for n0 in range(N) for g0, g1 in chunks(G, gb)]


def _multiply_add(out, tmp, a, b, first):
    """out = a*b when first, else out += a*b (through tmp: NumPy has no fused multiply-add)."""
    if first:
        numpy.multiply(a, b, out=out)
    else:
        numpy.multiply(a, b, out=tmp)
        numpy.add(out, tmp, out=out)


def fprop(g, x, w, dtype, out=None):
    """y (N, K, P, Q) in dtype, without bias; written into out (any strides) when given. At stride > 1
    the input is first split into its stride phases (``_windows.phase_frame``): each tap then reads a
    contiguous run of one phase plane, as at stride 1."""
    G, Kg, Cg = g.groups, g.k_per_group, g.c_per_group
    w5 = w.reshape(G, Kg, Cg, g.R, g.S)
    # One zero row below each plane: the extra columns of the last output row read up to
    # dil_w*(S-1) // stride_w elements past the plane's end.
    frame = _windows.phase_frame(g, x, dtype, extra_rows=1 if g.S > 1 else 0)
    sh, sw, Hs, Ws = frame.shape[2:]
    flat = frame.reshape(g.N, G, Cg, sh * sw, Hs * Ws)
    run = g.P * Ws
    y = numpy.empty(g.output_shape, dtype) if out is None else out
    y5 = y.reshape(g.N, G, Kg, g.P, g.Q)  # out's channel axis is one stride: a view

    def block(b):
        n0, n1, g0, g1 = b
        acc = numpy.empty((n1 - n0, g1 - g0, Kg, run), dtype)
        tmp = numpy.empty_like(acc)
        for c in range(Cg):
            for r in range(g.R):
                i0, a = divmod(r * g.dil_h, sh)
                for s in range(g.S):
                    j0, b_ = divmod(s * g.dil_w, sw)
                    start = i0 * Ws + j0
                    xv = flat[n0:n1, g0:g1, c, None, a * sw + b_, start:start + run]
                    wv = w5[g0:g1, :, c, r, s][None, :, :, None]
                    _multiply_add(acc, tmp, xv, wv, c == 0 and r == 0 and s == 0)
        y5[n0:n1, g0:g1] = acc.reshape(n1 - n0, g1 - g0, Kg, g.P, Ws)[..., :g.Q]

    _parallel.run(block, _blocks(g.N, G, Kg * run))
    return y


def dgrad(g, gy, w, dtype, gather=True):
    """gx (N, C, H, W) in dtype, without bias; gather=False: the scatter-adds at every stride (products of
    real gy only, never of a padding zero: what a non-finite weight needs)."""
    flipped = _flipped.dgrad_geometry(g) if gather else None
    if flipped is not None:
        return fprop(flipped, gy, _flipped.flipped_filters(g, w), dtype)
    G, Kg, Cg = g.groups, g.k_per_group, g.c_per_group
    w5 = w.reshape(G, Kg, Cg, g.R, g.S)
    gy5 = numpy.ascontiguousarray(gy, dtype=dtype).reshape(g.N, G, Kg, g.P, g.Q)
    padded = _windows.needs_padding(g)
    gx = numpy.zeros(g.input_shape, dtype)
    frame = _windows.gradient_frame(g, g.N, dtype) if padded else gx
    frame5 = frame.reshape(g.N, G, Cg, frame.shape[2], frame.shape[3])

    def block(b):
        n0, n1, g0, g1 = b
        tmp = numpy.empty((n1 - n0, g1 - g0, g.P, g.Q), dtype)
        for c in range(Cg):
            for r in range(g.R):
                for s in range(g.S):
                    slab = _windows.tap(g, frame5[n0:n1, g0:g1, c], r, s)
                    for j in range(Kg):
                        numpy.multiply(gy5[n0:n1, g0:g1, j], w5[g0:g1, j, c, r, s][None, :, None, None], out=tmp)
                        numpy.add(slab, tmp, out=slab)

    _parallel.run(block, _blocks(g.N, G, Cg * g.P * g.Q))
    if padded:
        _windows.crop_frame(g, frame, gx)
    return gx
