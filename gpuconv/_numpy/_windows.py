"""Zero-padded input slices and views of what each filter tap reads, for the NumPy conv methods.

Coordinates follow ``_params``: output pixel (p, q) with tap (r, s) reads input row
``p*stride_h + r*dil_h - pad_top`` and column ``q*stride_w + s*dil_w - pad_left``; reads outside the input
are zeros. Only pad_top / pad_left place the windows; pad_bottom / pad_right just fix P and Q (they may be
negative), so the padded extent a backend needs is computed from P and Q, never from the pads.

At stride > 1 a tap's view of the padded input skips columns, and NumPy copies such rows several times
slower than contiguous ones (3x on a ResNet stem). Where the taps read the input many times over,
:func:`tap_source` therefore splits the padded input into its stride phases once, plane (a, b) holding
rows a, a + stride_h, ... and columns b, b + stride_w, ...; every tap then reads whole contiguous rows of
one plane (:func:`tap_view`).
"""

from __future__ import annotations

import numpy

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


# Split into stride phases when the taps read each input element at least this many times: the split
# costs one pass over the input, the faster copies save about half of R*S / (stride_h*stride_w) passes.
_PHASE_MIN_READS = 4


def tap_source(g, x, dtype):
    """What :func:`tap_view` reads for x (n, C, H, W): the zero-padded input (x itself when no padding is
    needed), or where the stride is above 1 and the taps read each element _PHASE_MIN_READS times or more,
    its stride phases: a contiguous (n, C, stride_h, stride_w, Hs, Ws) array whose element (a, b, i, j) is
    padded input (i*stride_h + a, j*stride_w + b)."""
    src = padded_source(g, x, dtype)
    if g.R * g.S < _PHASE_MIN_READS * g.stride_h * g.stride_w:
        return src
    Hn, Wn = padded_extent(g)
    sh, sw = g.stride_h, g.stride_w
    phases = numpy.zeros((x.shape[0], x.shape[1], sh, sw, -(-Hn // sh), -(-Wn // sw)), dtype)
    for a in range(sh):
        for b in range(sw):
            plane = src[:, :, a:Hn:sh, b:Wn:sw]
            _parallel.copyto(phases[:, :, a, b, :plane.shape[2], :plane.shape[3]], plane)
    return phases


def phase_frame(g, x, dtype, extra_rows=0):
    """x (n, C, H, W) in its zero frame split into stride phases: a fresh contiguous
    (n, C, stride_h, stride_w, Hs + extra_rows, Ws) array whose element (a, b, i, j) is padded input
    (i*stride_h + a, j*stride_w + b), extra zero rows below each plane. At stride 1, :func:`zero_frame`."""
    sh, sw = g.stride_h, g.stride_w
    if sh == 1 and sw == 1:
        frame = zero_frame(g, x, dtype, extra_rows)
        return frame.reshape(frame.shape[0], frame.shape[1], 1, 1, frame.shape[2], frame.shape[3])
    src = padded_source(g, x, dtype)
    Hn, Wn = padded_extent(g)
    phases = numpy.zeros((x.shape[0], x.shape[1], sh, sw, -(-Hn // sh) + extra_rows, -(-Wn // sw)), dtype)
    for a in range(sh):
        for b in range(sw):
            plane = src[:, :, a:Hn:sh, b:Wn:sw]
            _parallel.copyto(phases[:, :, a, b, :plane.shape[2], :plane.shape[3]], plane)
    return phases


def tap_view(g, source, r, s, p0=0, p1=None):
    """The (n, C, p1 - p0, Q) view of a :func:`tap_source` that tap (r, s) reads for output rows
    p0..p1-1 (with unit stride along each row where the source is split into phases)."""
    if source.ndim == 4:  # the padded input itself
        return tap(g, source, r, s, p0, p1)
    p1 = g.P if p1 is None else p1
    a, i0 = (r * g.dil_h) % g.stride_h, (r * g.dil_h) // g.stride_h
    b, j0 = (s * g.dil_w) % g.stride_w, (s * g.dil_w) // g.stride_w
    return source[:, :, a, b, i0 + p0:i0 + p1, j0:j0 + g.Q]
