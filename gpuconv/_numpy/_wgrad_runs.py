"""wgrad as one GEMM per tile with every tap and the batch folded in, the operand copied from contiguous
runs of the flattened stride phases of the zero frame.

Split into stride phases (``_windows.phase_frame``; at stride 1 the frame itself), tap (r, s) reads plane
(a, b) = (r*dil_h % stride_h, s*dil_w % stride_w) at rows i0 + p and columns j0 + q (i0, j0 the quotients).
With each plane flattened to rows of its width Ws, output rows p0..p1-1 of tap (r, s) are one contiguous
run of (p1 - p0)*Ws elements starting at (i0 + p0)*Ws + j0: laid out as wide rows of Ws columns, the first
Q columns of each are the tap's windows, the rest read past the row's end. So with gy widened to Ws
columns (zeros in the extra ones) and laid out with the batch beside the pixels,

    gw[g]^T (R*S*Cg, Kg) = cols[g] (R*S*Cg, n*m) @ gy_wide[g]^T (n*m, Kg),   m = (p1 - p0)*Ws,

summed over tiles in a fixed order (the (Kg, R*S*Cg) orientation where Kg is the larger: BLAS runs a
product with few output columns faster when the long side is its rows). Against per-tap products
(Kg x Cg outputs, 140 GFLOP/s at 64 x 64 on 2 cores) the folded product runs at BLAS's speed for big
outputs (about 300); against ``_gemm``'s im2col the copies are long contiguous runs instead of one output
row at a time. The zero columns of gy_wide cancel what the runs read past each row's end, unless that is
Inf or NaN: where Ws > Q the caller checks the result and redoes a non-finite one the exact way.

Scratch: the chunk's phase frame (one image's if that is more than ``WORKSPACE_BYTES``) plus the tile's
cols and gy_wide, under ``WORKSPACE_BYTES`` (or one wide output row of one image, if that is more).
"""

from __future__ import annotations

import numpy

from . import _parallel, _windows
from ._tiling import WORKSPACE_BYTES, chunks


def extent(g) -> tuple:
    """(Hs, Ws, extra): rows and columns of each stride phase plane, and the extra zero rows below it that
    the last run reads into."""
    Hn, Wn = _windows.padded_extent(g)
    Hs, Ws = -(-Hn // g.stride_h), -(-Wn // g.stride_w)
    extra = 1 if (g.S - 1) * g.dil_w >= g.stride_w else 0  # some j0 > 0: the last run ends past the plane
    return Hs, Ws, extra


# Use the runs while the product is thin: at most this many filters per group or this many taps times
# channels per group (see wins()).
_MAX_THIN = 128


def wins(g) -> bool:
    """Whether the folded runs beat ``_gemm``'s per-image im2col and per-tap products for g's wgrad: where
    the product (Kg x R*S*Cg) has a short side of at most _MAX_THIN. There the old products are thin and run
    at half of BLAS's speed, and the copies are a large share of the time. Measured (2 cores, ~10-20% noise,
    runs / old time): ResNet-50 conv2_x 3x3 0.5-0.9, conv3_1 3x3/2 0.6-0.9, VGG conv1_2 0.55-0.85, DCGAN
    4x4/2 0.6-0.85, depthwise 3x3/2 0.6-0.7; with Kg = 512 (VGG conv4_2, DeepLabv3, U-Net) about 1.4-2.7
    slower before the final transpose was fixed and no faster after: the old products are already wide."""
    if g.k_per_group * g.c_per_group <= 4:  # depthwise and the like: cols would be R*S copies of x for
        return False                         # products of a few columns (measured 0.8-1.0x)
    return min(g.k_per_group, g.R * g.S * g.c_per_group) <= _MAX_THIN


def has_junk(g) -> bool:
    """Whether the wide rows have columns beyond Q (whose zero gradient an Inf or NaN input turns to NaN)."""
    return extent(g)[1] > g.Q


def _tiles(g, itemsize, cap=WORKSPACE_BYTES):
    """(images per chunk, output rows per tile): a chunk's frame and its tiles under cap while whole images
    fit; else one image, and tiles of rows whose cols and gy_wide fit under cap."""
    Hs, Ws, extra = extent(g)
    frame = g.C * g.stride_h * g.stride_w * (Hs + extra) * Ws * itemsize
    row = (g.R * g.S * g.C + g.K) * Ws * itemsize
    per_image = frame + row * g.P
    if per_image <= cap:
        return max(1, min(g.N, cap // per_image)), g.P
    return 1, max(1, min(g.P, cap // row))


def wgrad(g, x, gy, dtype):
    """gw (K, Cg, R, S) in dtype; the caller checks it for NaN where :func:`has_junk`."""
    G, Kg, Cg = g.groups, g.k_per_group, g.c_per_group
    sh, sw = g.stride_h, g.stride_w
    T = g.R * g.S
    Hs, Ws, extra = extent(g)
    plane = (Hs + extra) * Ws
    # (a, b, start of the run of output row 0) per tap, in (r, s) order.
    taps = []
    for r in range(g.R):
        for s in range(g.S):
            a, i0 = (r * g.dil_h) % sh, (r * g.dil_h) // sh
            b, j0 = (s * g.dil_w) % sw, (s * g.dil_w) // sw
            taps.append((a, b, i0 * Ws + j0))
    rows_first = T * Cg > Kg  # product (T*Cg, Kg), else (Kg, T*Cg): the long side as rows
    acc = numpy.zeros((G, T * Cg, Kg) if rows_first else (G, Kg, T * Cg), dtype)
    prod = numpy.empty_like(acc)
    nb, rows = _tiles(g, dtype.itemsize)
    cols_buf = numpy.empty(G * T * Cg * nb * rows * Ws, dtype)
    gyw_buf = numpy.zeros((G, Kg, nb, rows, Ws), dtype)  # the columns past Q stay zero
    for n0, n1 in chunks(g.N, nb):
        n = n1 - n0
        frame = _windows.phase_frame(g, x[n0:n1], dtype, extra).reshape(n, G, Cg, sh, sw, plane)
        for p0, p1 in chunks(g.P, rows):
            m = (p1 - p0) * Ws
            cols = cols_buf[:G * T * Cg * n * m].reshape(G, T, Cg, n, m)

            def copy(ts, cols=cols, p0=p0, m=m):
                for t in ts:
                    a, b, start = taps[t]
                    start += p0 * Ws
                    numpy.copyto(cols[:, t], frame[:, :, :, a, b, start:start + m].transpose(1, 2, 0, 3))

            if T >= _parallel.workers():
                _parallel.run_parts(copy, range(T))
            else:
                for t in range(T):
                    a, b, start = taps[t]
                    start += p0 * Ws
                    _parallel.copyto(cols[:, t], frame[:, :, :, a, b, start:start + m].transpose(1, 2, 0, 3))
            gyw = gyw_buf[:, :, :n, :p1 - p0]
            _parallel.copyto(gyw[..., :g.Q],
                             gy[n0:n1, :, p0:p1].reshape(n, G, Kg, p1 - p0, g.Q).transpose(1, 2, 0, 3, 4))
            c2 = cols.reshape(G, T * Cg, n * m)
            y2 = gyw.reshape(G, Kg, n * m)
            if rows_first:
                numpy.matmul(c2, y2.transpose(0, 2, 1), out=prod)
            else:
                numpy.matmul(y2, c2.transpose(0, 2, 1), out=prod)
            acc += prod
    # (G, T, Cg, Kg) or (G, Kg, T, Cg) -> (K, Cg, R, S)
    if rows_first:
        gw = acc.reshape(G, g.R, g.S, Cg, Kg).transpose(0, 4, 3, 1, 2)
    else:
        gw = acc.reshape(G, Kg, g.R, g.S, Cg).transpose(0, 1, 4, 2, 3)
    out = numpy.empty((G, Kg, Cg, g.R, g.S), dtype)
    _parallel.copyto(out, gw)
    return out.reshape(g.weight_shape)
