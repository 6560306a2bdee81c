"""Convolution passes as BLAS matrix products over strided window views (im2col and per-tap GEMM).

Shapes per group g (G groups, Kg = K/G filters and Cg = C/G channels each, M = output pixels of a tile):

    fprop  y[n, g]        (Kg, M)      = w[g] (Kg, Cg*R*S) @ cols[n, g] (Cg*R*S, M)      one im2col GEMM
    dgrad  frame tap (r,s) (Cg, M)    += w[g, :, :, r, s]^T (Cg, Kg) @ gy[n, g] (Kg, M)    one GEMM per tap
    wgrad  gw[g, :, :, r, s] (Kg, Cg) += gy[g] (Kg, n*M) @ x_tap[g]^T (n*M, Cg)           one GEMM per tap

fprop copies each tile's windows into one buffer and makes one long GEMM per image and group (the product
lands straight in the output). dgrad and wgrad work one tap at a time, so their scratch is one tap's slab
rather than R*S of them, at the same number of flops: dgrad adds each tap's product into a zero-padded
frame (a col2im done tap by tap, in a fixed order), wgrad lays the batch next to the pixels so that one
GEMM covers a whole chunk. Every buffer is bounded by ``_tiling.WORKSPACE_BYTES``.

Arrays reaching these functions are (N, C, H, W) of any dtype and strides; ``dtype`` is the compute dtype
(float32 for float16 inputs), and w arrives already contiguous in that dtype.
"""

from __future__ import annotations

import numpy

from . import _windows
from ._tiling import chunks, tile_shape


def _as_matrices(view, shape, dtype, scratch):
    """view reshaped to shape, as a GEMM operand: without a copy where the view already is one (a 1x1
    stride-1 window over contiguous pixels), else copied (and cast) into the front of the flat scratch."""
    if view.dtype == dtype and view.strides[-1] == dtype.itemsize:
        try:
            return view.reshape(shape, copy=False)
        except ValueError:
            pass
    buf = scratch[:view.size].reshape(view.shape)
    numpy.copyto(buf, view)
    return buf.reshape(shape)


def fprop(g, x, w, dtype):
    """y (N, K, P, Q) in dtype, without bias."""
    G, Kg, Cg = g.groups, g.k_per_group, g.c_per_group
    crs = Cg * g.R * g.S
    wmat = w.reshape(G, Kg, crs)
    y = numpy.empty(g.output_shape, dtype)
    nb, rows = tile_shape(g.N, g.P, g.C * g.R * g.S * g.Q * dtype.itemsize)
    scratch = numpy.empty(nb * g.C * g.R * g.S * rows * g.Q, dtype)
    for n0, n1 in chunks(g.N, nb):
        src = _windows.padded_source(g, x[n0:n1], dtype)
        out = y[n0:n1].reshape(n1 - n0, G, Kg, g.P * g.Q)
        for p0, p1 in chunks(g.P, rows):
            cols = _as_matrices(_windows.windows(g, src, p0, p1), (n1 - n0, G, crs, (p1 - p0) * g.Q), dtype,
                                scratch)
            numpy.matmul(wmat, cols, out=out[..., p0 * g.Q:p1 * g.Q])
    return y


def dgrad(g, gy, w, dtype):
    """gx (N, C, H, W) in dtype, without bias."""
    G, Kg, Cg = g.groups, g.k_per_group, g.c_per_group
    # (R, S, G, Cg, Kg): the transposed filter matrix of each tap, contiguous for BLAS.
    wtap = numpy.ascontiguousarray(w.reshape(G, Kg, Cg, g.R, g.S).transpose(3, 4, 0, 2, 1))
    gx = numpy.zeros(g.input_shape, dtype)
    padded = _windows.needs_padding(g)
    nb, rows = tile_shape(g.N, g.P, (g.C + g.K) * g.Q * dtype.itemsize)
    scratch = numpy.empty(nb * g.C * rows * g.Q, dtype)
    for n0, n1 in chunks(g.N, nb):
        n = n1 - n0
        gyc = numpy.ascontiguousarray(gy[n0:n1], dtype=dtype).reshape(n, G, Kg, g.P * g.Q)
        frame = _windows.gradient_frame(g, n, dtype) if padded else gx[n0:n1]
        for p0, p1 in chunks(g.P, rows):
            m = (p1 - p0) * g.Q
            prod = scratch[:n * g.C * m].reshape(n, G, Cg, m)
            for r in range(g.R):
                for s in range(g.S):
                    numpy.matmul(wtap[r, s], gyc[..., p0 * g.Q:p1 * g.Q], out=prod)
                    slab = _windows.tap(g, frame, r, s, p0, p1)
                    numpy.add(slab, prod.reshape(slab.shape), out=slab)
        if padded:
            _windows.crop_frame(g, frame, gx[n0:n1])
    return gx


def wgrad(g, x, gy, dtype):
    """gw (K, C/groups, R, S) in dtype."""
    G, Kg, Cg = g.groups, g.k_per_group, g.c_per_group
    acc = numpy.zeros((g.R, g.S, G, Kg, Cg), dtype)
    prod = numpy.empty((G, Kg, Cg), dtype)
    nb, rows = tile_shape(g.N, g.P, (g.C + g.K) * g.Q * dtype.itemsize)
    scratch = numpy.empty(nb * g.C * rows * g.Q, dtype)
    gy_t = numpy.empty((G, Kg, nb, g.P * g.Q), dtype)
    for n0, n1 in chunks(g.N, nb):
        n = n1 - n0
        src = _windows.padded_source(g, x[n0:n1], dtype)
        # The chunk's gradient as (G, Kg, n, P*Q): batch beside pixels, one long GEMM per group and tap.
        gyn = gy_t[:, :, :n]
        numpy.copyto(gyn, gy[n0:n1].reshape(n, G, Kg, g.P * g.Q).transpose(1, 2, 0, 3))
        for p0, p1 in chunks(g.P, rows):
            m = n * (p1 - p0) * g.Q
            a = gyn[..., p0 * g.Q:p1 * g.Q].reshape(G, Kg, m)
            xt = scratch[:Cg * G * m].reshape(G, Cg, n, p1 - p0, g.Q)
            for r in range(g.R):
                for s in range(g.S):
                    view = _windows.tap(g, src, r, s, p0, p1)
                    numpy.copyto(xt, view.reshape(n, G, Cg, p1 - p0, g.Q).transpose(1, 2, 0, 3, 4))
                    numpy.matmul(a, xt.reshape(G, Cg, m).transpose(0, 2, 1), out=prod)
                    acc[r, s] += prod
    return numpy.ascontiguousarray(acc.transpose(2, 3, 4, 0, 1)).reshape(g.weight_shape)
