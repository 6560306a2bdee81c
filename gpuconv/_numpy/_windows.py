"""Zero-padded input slices and strided views of the convolution windows, for the NumPy conv methods.

Coordinates follow ``_params``: output pixel (p, q) with tap (r, s) reads input row
``p*stride_h + r*dil_h - pad_top`` and column ``q*stride_w + s*dil_w - pad_left``; reads outside the input
are zeros. Only pad_top / pad_left place the windows; pad_bottom / pad_right just fix P and Q (they may be
negative), so the padded extent a backend needs is computed from P and Q, never from the pads.
"""

from __future__ import annotations

import numpy
from numpy.lib.stride_tricks import as_strided

from . import _parallel


def padded_extent(g) -> tuple:
    """(Hn, Wn): rows and columns of the zero-padded input that the P x Q windows reach."""
    return ((g.P - 1) * g.stride_h + g.dil_h * (g.R - 1) + 1,
            (g.Q - 1) * g.stride_w + g.dil_w * (g.S - 1) + 1)


def needs_padding(g) -> bool:
    """Whether some window reaches outside the input (so the input must be copied into a zero frame)."""
    Hn, Wn = padded_extent(g)
    return g.pad_top > 0 or g.pad_left > 0 or Hn > g.H or Wn > g.W


def _overlap(g) -> tuple:
    """Rows and columns of the input that land inside the padded extent."""
    Hn, Wn = padded_extent(g)
    return max(0, min(g.H, Hn - g.pad_top)), max(0, min(g.W, Wn - g.pad_left))


def padded_source(g, x, dtype):
    """x (n, C, H, W) placed in its zero frame: an (n, C, Hn, Wn) array whose element (i, j) is input
    (i - pad_top, j - pad_left). Without padding this is x itself (a view, any dtype and strides), and the
    caller's copy into its workspace does the cast."""
    if not needs_padding(g):
        return x
    return zero_frame(g, x, dtype)


def zero_frame(g, x, dtype, extra_rows=0):
    """A fresh contiguous (n, C, Hn + extra_rows, Wn) array in dtype: x in its zero frame, as
    :func:`padded_source`, with extra zero rows below."""
    Hn, Wn = padded_extent(g)
    hh, ww = _overlap(g)
    xp = numpy.zeros((x.shape[0], x.shape[1], Hn + extra_rows, Wn), dtype)
    _parallel.copyto(xp[:, :, g.pad_top:g.pad_top + hh, g.pad_left:g.pad_left + ww], x[:, :, :hh, :ww])
    return xp


def gradient_frame(g, n, dtype):
    """A zero (n, C, Hn, Wn) accumulator for dgrad in the padded frame of :func:`padded_source`."""
    Hn, Wn = padded_extent(g)
    return numpy.zeros((n, g.C, Hn, Wn), dtype)


def crop_frame(g, frame, gx):
    """Writes the input part of a padded-frame gradient into gx (n, C, H, W), which the caller zeroed (input
    rows and columns that no window reaches keep their zero gradient)."""
    hh, ww = _overlap(g)
    _parallel.copyto(gx[:, :, :hh, :ww], frame[:, :, g.pad_top:g.pad_top + hh, g.pad_left:g.pad_left + ww])


def tap(g, src, r, s, p0=0, p1=None):
    """The (..., p1 - p0, Q) view of src (padded frame, rows and columns last) that tap (r, s) reads for
    output rows p0..p1-1."""
    p1 = g.P if p1 is None else p1
    h0, w0 = r * g.dil_h + p0 * g.stride_h, s * g.dil_w
    return src[..., h0:h0 + (p1 - p0 - 1) * g.stride_h + 1:g.stride_h,
               w0:w0 + (g.Q - 1) * g.stride_w + 1:g.stride_w]


def windows(g, src, p0=0, p1=None):
    """The read-only (n, C, R, S, p1 - p0, Q) view of every window of src (padded frame) for output rows
    p0..p1-1: element (n, c, r, s, p, q) is src[n, c, (p0 + p)*stride_h + r*dil_h, q*stride_w + s*dil_w]."""
    p1 = g.P if p1 is None else p1
    base = src[:, :, p0 * g.stride_h:, :]
    sn, sc, sh, sw = base.strides
    shape = (base.shape[0], base.shape[1], g.R, g.S, p1 - p0, g.Q)
    strides = (sn, sc, sh * g.dil_h, sw * g.dil_w, sh * g.stride_h, sw * g.stride_w)
    return as_strided(base, shape, strides, writeable=False)
