"""Convolution passes as per-tap multiply-adds over whole arrays, for groups with very few channels
(depthwise above all), where a GEMM per group would be a long run of tiny BLAS calls.

    fprop  y[n, g, j]            += w[g, j, c, r, s] * x_tap(r, s)[n, g, c]     for every c, r, s
    dgrad  frame_tap(r, s)[n, g, c] += w[g, j, c, r, s] * gy[n, g, j]           for every j, c, r, s

The work is cut into blocks of (images, groups) whose output fits in the CPU's L2 cache, so each of the
R*S*C/groups passes reads and writes cache rather than memory, and the blocks run on every core
(``_parallel``). Every output element is summed by one thread in the fixed order above: deterministic.
"""

from __future__ import annotations

import numpy

from . import _parallel, _windows
from ._tiling import chunks

# Output elements per block: 512 KiB of float32, within a core's L2 on current x86 and ARM servers.
_BLOCK_ELEMENTS = 1 << 17


def _blocks(N: int, G: int, per_group: int):
    """(n0, n1, g0, g1) blocks of about _BLOCK_ELEMENTS output elements, per_group elements being one
    group's output for one image."""
    if per_group * G <= _BLOCK_ELEMENTS:
        nb = max(1, _BLOCK_ELEMENTS // (per_group * G))
        return [(n0, n1, 0, G) for n0, n1 in chunks(N, nb)]
    gb = max(1, _BLOCK_ELEMENTS // per_group)
    return [(n0, n0 + 1, g0, g1) for n0 in range(N) for g0, g1 in chunks(G, gb)]


def fprop(g, x, w, dtype):
    """y (N, K, P, Q) in dtype, without bias."""
    G, Kg, Cg = g.groups, g.k_per_group, g.c_per_group
    w5 = w.reshape(G, Kg, Cg, g.R, g.S)
    y = numpy.empty(g.output_shape, dtype)
    y5 = y.reshape(g.N, G, Kg, g.P, g.Q)
    src = _windows.padded_source(g, x, dtype)
    src5 = src.reshape(g.N, G, Cg, src.shape[2], src.shape[3])

    def block(b):
        n0, n1, g0, g1 = b
        out = y5[n0:n1, g0:g1]
        tmp = numpy.empty_like(out)
        first = True
        for c in range(Cg):
            for r in range(g.R):
                for s in range(g.S):
                    xv = _windows.tap(g, src5[n0:n1, g0:g1, c], r, s)[:, :, None]
                    wv = w5[g0:g1, :, c, r, s][None, :, :, None, None]
                    if first:
                        numpy.multiply(xv, wv, out=out)
                        first = False
                    else:
                        numpy.multiply(xv, wv, out=tmp)
                        numpy.add(out, tmp, out=out)

    _parallel.run(block, _blocks(g.N, G, Kg * g.P * g.Q))
    return y


def dgrad(g, gy, w, dtype):
    """gx (N, C, H, W) in dtype, without bias."""
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
