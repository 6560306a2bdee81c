"""Stride-1 fprop with the im2col operand copied from contiguous runs of the flattened zero frame.

With an image's zero frame (C, Hn + 1, Wn) flattened to (C, (Hn + 1)*Wn), tap (r, s) of a stride-1 conv
over output rows p0..p1-1 is one contiguous run of (p1 - p0)*Wn elements per channel, starting at
(p0 + r*dil_h)*Wn + s*dil_w. Laid out as wide output rows of Wn columns, the run's first Q columns of each
row are exactly the tap's windows; the other Wn - Q columns read across the row's end (the extra zero row
at the bottom keeps the last tap's run inside the frame). So

    y_wide[n, g] (Kg, m*Wn) = w[g] (Kg, R*S*Cg) @ cols[n, g] (R*S*Cg, m*Wn),   cols = the taps' runs,

and y[n, :, p0:p1] is y_wide's first Q columns of each wide row. Every GEMM column is its own dot
product, so the junk columns never mix into the kept ones (unlike wgrad, no Inf/NaN caveat).

Against ``_gemm``'s im2col this trades (Wn - Q)/Q more GEMM columns and one copy of the output for tap
copies that are long contiguous runs instead of one short row at a time: it wins where the im2col copy is
a large share of the time, i.e. where few filters share each copied element (see :func:`wins`).
"""

from __future__ import annotations

import numpy

from . import _parallel, _windows
from ._tiling import chunks, tile_shape

# Use the flat runs while filters per group Kg * (Wn - Q) / Q, the GEMM work the junk columns add per copied
# element, stays at or below this (see wins()). Measured (OpenBLAS, 2 cores with ~10% run-to-run noise,
# 3x3 pad 1, flat / im2col time): 0.6-0.87 at Kg*junk 0.57 (VGG conv1_2 and C=K=32 at 112x112), 0.75-1.0 at
# 2.3 (ResNet-50 conv2_x), 0.85-1.1 at 4.6 (C=K=64 at 28x28, 128 at 56x56), about 1.0 at 9.1 and 18, 1.05 at
# 37 (256 at 14x14), 1.13 at 37 (512 at 28x28), 1.10 at 62 (DeepLabv3's dilated 3x3). The cap sits below the
# mixed results at 4.6: the path is kept only where it won beyond the noise.
_MAX_JUNK_FILTERS = 4.0


def wins(g) -> bool:
    """Whether the flat runs beat ``_gemm``'s im2col for g's fprop: stride 1, more than one tap, and the
    extra GEMM columns cheap next to the copying they save."""
    if g.stride_h != 1 or g.stride_w != 1 or g.R * g.S < 2:
        return False
    Wn = _windows.padded_extent(g)[1]
    return g.k_per_group * (Wn - g.Q) / g.Q <= _MAX_JUNK_FILTERS


def fprop(g, x, w, dtype, out=None):
    """y (N, K, P, Q) in dtype, without bias, written into out (any strides) when given; g has stride 1.
    w is (K, Cg, R, S), contiguous in dtype."""
    G, Kg, Cg = g.groups, g.k_per_group, g.c_per_group
    taps = g.R * g.S
    Hn, Wn = _windows.padded_extent(g)
    extra = 1 if g.S > 1 else 0  # the last tap's run reaches dil_w*(S-1) past the frame's end
    # (G, Kg, R*S*Cg), columns in (r, s, c) order: the rows of cols.
    wmat = numpy.ascontiguousarray(w.reshape(G, Kg, Cg, taps).transpose(0, 1, 3, 2)).reshape(G, Kg, taps * Cg)
    y = numpy.empty(g.output_shape, dtype) if out is None else out
    nb, rows = tile_shape(g.N, g.P, (g.C * taps + g.K) * Wn * dtype.itemsize)
    scratch = numpy.empty(nb * g.C * taps * rows * Wn, dtype)
    wide = numpy.empty(nb * g.K * rows * Wn, dtype)
    starts = [r * g.dil_h * Wn + s * g.dil_w for r in range(g.R) for s in range(g.S)]
    for n0, n1 in chunks(g.N, nb):
        n = n1 - n0
        flat = _windows.zero_frame(g, x[n0:n1], dtype, extra).reshape(n, G, Cg, (Hn + extra) * Wn)
        for p0, p1 in chunks(g.P, rows):
            m = (p1 - p0) * Wn
            cols = scratch[:n * g.C * taps * m].reshape(n, G, taps, Cg, m)

            def copy(ts, cols=cols, p0=p0, m=m):
                for t in ts:
                    start = p0 * Wn + starts[t]
                    numpy.copyto(cols[:, :, t], flat[..., start:start + m])

            _parallel.run_parts(copy, range(taps))
            prod = wide[:n * g.K * m].reshape(n, G, Kg, m)
            numpy.matmul(wmat, cols.reshape(n, G, taps * Cg, m), out=prod)
            _parallel.copyto(y[n0:n1, :, p0:p1],
                             prod.reshape(n, g.K, p1 - p0, Wn)[..., :g.Q])
    return y
