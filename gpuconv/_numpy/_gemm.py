"""Convolution passes as BLAS matrix products over strided window views (im2col and per-tap GEMM).

Shapes per group g (G groups, Kg = K/G filters and Cg = C/G channels each, M = output pixels of a tile):

    fprop  y[n, g]        (Kg, M)      = w[g] (Kg, R*S*Cg) @ cols[n, g] (R*S*Cg, M)      one im2col GEMM
    dgrad  frame tap (r,s) (Cg, M)    += w[g, :, :, r, s]^T (Cg, Kg) @ gy[n, g] (Kg, M)    one GEMM per tap
    wgrad  gw[g, :, :, r, s] (Kg, Cg) += gy[n, g] (Kg, M) @ x_tap[n, g]^T (M, Cg)         one GEMM per tap

fprop copies each tile's windows into one buffer (im2col, tap by tap, from the stride phases of the
input where that pays, see ``_windows.tap_source``) and makes one long GEMM per image and
group (the product lands straight in the output); at stride 1 with few filters per group and little
width padding, ``_flat`` builds the operand from contiguous runs of the flattened frame instead; on images of fewer than _FOLD_BATCH_PIXELS pixels it
makes one GEMM per chunk of images instead, the batch beside the pixels. dgrad at stride 1 is itself an fprop (of gy with the flipped, transposed
filters); at larger strides it multiplies a block of taps at a time and adds each tap's product onto its
slab of a zero-padded frame (col2im, in a fixed order). wgrad where its product is thin (few filters or
channels x taps per group) makes one GEMM per tile with every tap and the batch folded in, from contiguous
runs of the flattened stride phases (``_wgrad_runs``); a plain 1x1 conv multiplies x and gy as they are;
otherwise it is the im2col GEMM with the batch summed; at stride 1 it needs no im2col at all (each tap's
windows are contiguous runs of the flattened frame, see ``_wgrad_flat``); on small images it works one
tap at a time with the batch laid beside the pixels, so each GEMM stays long. Scratch buffers hold at most ``_tiling.WORKSPACE_BYTES`` (or one output row of one
image, or for ``_wgrad_flat`` one image's frame, if that is more); the window copies run on every core.

Arrays reaching these functions are (N, C, H, W) of any dtype and strides; ``dtype`` is the compute dtype
(float32 for float16 inputs), and w arrives already contiguous in that dtype.
"""

from __future__ import annotations

import numpy

from . import _flat, _flipped, _parallel, _wgrad_runs, _windows
from ._tiling import chunks, tile_shape

# wgrad makes one GEMM per image while an image has at least this many output pixels (the GEMM's inner
# dimension); below it, it copies the batch beside the pixels to keep the inner dimension long.
_WGRAD_PER_IMAGE_PIXELS = 1024

# fprop folds the batch into the GEMM's columns while an image has fewer output pixels than this (measured:
# 5% faster at 14x14, 10% slower at 16x16 where the extra transposing copy of the output costs more).
_FOLD_BATCH_PIXELS = 256

# dgrad's col2im multiplies this many output rows (channels x taps) per GEMM at least, so that a layer with
# few input channels (a network's stem) still makes GEMMs of useful size.
_MIN_GEMM_ROWS = 256


def _reshaped_view(a, shape):
    """a reshaped to shape without copying, or None where that needs a copy."""
    try:
        return a.reshape(shape, copy=False)  # NumPy >= 2.1
    except ValueError:
        return None
    except TypeError:  # older NumPy: reshape, then see whether it copied
        r = a.reshape(shape)
        return r if numpy.may_share_memory(r, a) else None


def _im2col(g, source, n, p0, p1, dtype, scratch):
    """The windows of output rows p0..p1-1 as GEMM operands (n, G, R*S*Cg, M), rows in (r, s, c) order:
    tap by tap copied (and cast) into the front of the flat scratch, the taps shared among the workers.
    Tap-major rows make each tap's copy land in one contiguous (Cg, M) block per image and group, which
    NumPy writes twice as fast as the (c, r, s) order's scattered rows. A 1x1 stride-1 tap over contiguous
    pixels already is the operand: then it is returned as a view."""
    G, Cg, m = g.groups, g.c_per_group, (p1 - p0) * g.Q
    shape = (n, G, g.R * g.S * Cg, m)
    if g.R == 1 and g.S == 1:
        view = _windows.tap_view(g, source, 0, 0, p0, p1)
        if view.dtype == dtype and view.strides[-1] == dtype.itemsize:
            r = _reshaped_view(view, shape)
            if r is not None:
                return r
    cols = scratch[:n * g.C * g.R * g.S * m].reshape(n, G, g.R, g.S, Cg, p1 - p0, g.Q)

    def copy(taps):
        for r, s in taps:
            tap = _windows.tap_view(g, source, r, s, p0, p1)
            numpy.copyto(cols[:, :, r, s], tap.reshape(n, G, Cg, p1 - p0, g.Q))

    taps = [(r, s) for r in range(g.R) for s in range(g.S)]
    if len(taps) >= _parallel.workers():
        _parallel.run_parts(copy, taps)
    else:  # few taps (a 1x1 conv): split each copy instead
        for r, s in taps:
            _parallel.copyto(cols[:, :, r, s],
                             _windows.tap_view(g, source, r, s, p0, p1).reshape(n, G, Cg, p1 - p0, g.Q))
    return cols.reshape(shape)


def _tap_major(w):
    """w (K, Cg, R, S) -> (K, R*S*Cg), columns in the (r, s, c) order of :func:`_im2col`'s rows."""
    K, Cg, R, S = w.shape
    return numpy.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(K, R * S * Cg)


def fprop(g, x, w, dtype, out=None):
    """y (N, K, P, Q) in dtype, without bias; written into out (any strides) when given."""
    if _flat.wins(g):
        return _flat.fprop(g, x, w, dtype, out)
    if g.N > 1 and g.P * g.Q < _FOLD_BATCH_PIXELS:
        return _fprop_batch_beside_pixels(g, x, w, dtype, out)
    G, Kg, Cg = g.groups, g.k_per_group, g.c_per_group
    wmat = _tap_major(w).reshape(G, Kg, Cg * g.R * g.S)
    y = numpy.empty(g.output_shape, dtype)
    nb, rows = tile_shape(g.N, g.P, g.C * g.R * g.S * g.Q * dtype.itemsize)
    scratch = numpy.empty(nb * g.C * g.R * g.S * rows * g.Q, dtype)
    for n0, n1 in chunks(g.N, nb):
        n = n1 - n0
        source = _windows.tap_source(g, x[n0:n1], dtype)
        dst = y[n0:n1].reshape(n, G, Kg, g.P * g.Q)
        for p0, p1 in chunks(g.P, rows):
            cols = _im2col(g, source, n, p0, p1, dtype, scratch)
            numpy.matmul(wmat, cols, out=dst[..., p0 * g.Q:p1 * g.Q])
    if out is None:
        return y
    _parallel.copyto(out, y)
    return out


def _fprop_batch_beside_pixels(g, x, w, dtype, out):
    """Small images: y[:, g] (Kg, n*M) = w[g] (Kg, R*S*Cg) @ cols[g] (R*S*Cg, n*M), one GEMM per chunk of
    images and group whose columns are every image's pixels (a per-image GEMM would be too short to run
    BLAS at speed); the product is then copied, transposed back to (n, K, P, Q), into the output."""
    G, Kg, Cg = g.groups, g.k_per_group, g.c_per_group
    wmat = _tap_major(w).reshape(G, Kg, Cg * g.R * g.S)
    y = numpy.empty(g.output_shape, dtype) if out is None else out
    M = g.P * g.Q
    nb, _ = tile_shape(g.N, g.P, (g.C * g.R * g.S + g.K) * g.Q * dtype.itemsize)
    scratch = numpy.empty(g.C * g.R * g.S * nb * M, dtype)
    prod = numpy.empty(G * Kg * nb * M, dtype)
    for n0, n1 in chunks(g.N, nb):
        n = n1 - n0
        source = _windows.tap_source(g, x[n0:n1], dtype)
        c = scratch[:g.C * g.R * g.S * n * M].reshape(G, g.R, g.S, Cg, n, g.P, g.Q)

        def copy(taps):
            for r, s in taps:
                view = _windows.tap_view(g, source, r, s).reshape(n, G, Cg, g.P, g.Q)
                numpy.copyto(c[:, r, s], view.transpose(1, 2, 0, 3, 4))

        _parallel.run_parts(copy, [(r, s) for r in range(g.R) for s in range(g.S)])
        pr = prod[:g.K * n * M].reshape(G, Kg, n * M)
        numpy.matmul(wmat, c.reshape(G, g.R * g.S * Cg, n * M), out=pr)
        _parallel.copyto(y[n0:n1].reshape(n, G, Kg, g.P, g.Q),
                         pr.reshape(G, Kg, n, g.P, g.Q).transpose(2, 0, 1, 3, 4))
    return y


def dgrad(g, gy, w, dtype, gather=True):
    """gx (N, C, H, W) in dtype, without bias; gather=False: the col2im scatter at every stride (it multiplies
    real gy only, never a padding zero: what a non-finite weight needs)."""
    flipped = _flipped.dgrad_geometry(g) if gather else None
    if flipped is not None:
        return fprop(flipped, gy, _flipped.flipped_filters(g, w), dtype)
    return _dgrad_scatter(g, gy, w, dtype)


def _dgrad_scatter(g, gy, w, dtype):
    """col2im, a block of taps at a time: prod = w^T @ gy for the block's taps, then each tap's slice added
    onto its strided slab of a zero-padded frame, in tap order."""
    G, Kg, Cg = g.groups, g.k_per_group, g.c_per_group
    taps = g.R * g.S
    # Enough taps per GEMM that its output has at least _MIN_GEMM_ROWS rows (all taps when Cg is small).
    block = min(taps, -(-_MIN_GEMM_ROWS // Cg))
    # (G, R*S*Cg, Kg): row t*Cg + c holds w[g, :, c, tap t], so a block of taps is a block of rows.
    wcat = numpy.ascontiguousarray(w.reshape(G, Kg, Cg, taps).transpose(0, 3, 2, 1)).reshape(G, taps * Cg, Kg)
    gx = numpy.zeros(g.input_shape, dtype)
    padded = _windows.needs_padding(g)
    nb, rows = tile_shape(g.N, g.P, (block * g.C + g.K) * g.Q * dtype.itemsize)
    scratch = numpy.empty(nb * block * g.C * rows * g.Q, dtype)
    for n0, n1 in chunks(g.N, nb):
        n = n1 - n0
        gyc = numpy.ascontiguousarray(gy[n0:n1], dtype=dtype).reshape(n, G, Kg, g.P * g.Q)
        frame = _windows.gradient_frame(g, n, dtype) if padded else gx[n0:n1]
        frame5 = frame.reshape(n, G, Cg, frame.shape[2], frame.shape[3])  # contiguous: a view
        for p0, p1 in chunks(g.P, rows):
            m = (p1 - p0) * g.Q
            for t0, t1 in chunks(taps, block):
                prod = scratch[:n * G * (t1 - t0) * Cg * m].reshape(n, G, (t1 - t0) * Cg, m)
                numpy.matmul(wcat[:, t0 * Cg:t1 * Cg], gyc[..., p0 * g.Q:p1 * g.Q], out=prod)
                prod6 = prod.reshape(n, G, t1 - t0, Cg, p1 - p0, g.Q)
                for t in range(t0, t1):
                    _parallel.add(_windows.tap(g, frame5, t // g.S, t % g.S, p0, p1), prod6[:, :, t - t0])
        if padded:
            _windows.crop_frame(g, frame, gx[n0:n1])
    return gx


def wgrad(g, x, gy, dtype):
    """gw (K, C/groups, R, S) in dtype."""
    if _plain_1x1(g) and g.P * g.Q >= _WGRAD_PER_IMAGE_PIXELS:
        return _wgrad_1x1(g, x, gy, dtype)
    if _wgrad_runs.wins(g):
        gw = _wgrad_runs.wgrad(g, x, gy, dtype)
        # The wide rows multiply input pixels outside each tap's reach by zero; an Inf or NaN there turns
        # that zero into NaN. Only a non-finite result can hide that, so only then redo it the exact way.
        if not _wgrad_runs.has_junk(g) or numpy.isfinite(gw).all():
            return gw
        return _wgrad_per_image(g, x, gy, dtype)
    if g.P * g.Q < _WGRAD_PER_IMAGE_PIXELS:
        return _wgrad_batch_beside_pixels(g, x, gy, dtype)
    if g.stride_h == 1 and g.stride_w == 1:
        gw = _wgrad_flat(g, x, gy, dtype)
        # The flat runs multiply input pixels outside each tap's reach by zero; an Inf or NaN there turns
        # that zero into NaN. Only a non-finite result can hide that, so only then redo it the exact way.
        if numpy.isfinite(gw).all():
            return gw
    return _wgrad_per_image(g, x, gy, dtype)


def _plain_1x1(g) -> bool:
    """A 1x1 stride-1 conv whose windows are the whole input: x and gy are the GEMM's operands as they are."""
    return (g.R == 1 and g.S == 1 and g.stride_h == 1 and g.stride_w == 1 and g.pad_top == 0
            and g.pad_left == 0 and g.H == g.P and g.W == g.Q)


def _wgrad_1x1(g, x, gy, dtype):
    """gw[g] = sum over images of gy[n, g] (Kg, HW) @ x[n, g]^T (HW, Cg) (or its transpose, the longer side
    as rows), straight from x and gy where they are contiguous in dtype, else from chunks cast under the
    workspace cap."""
    G, Kg, Cg = g.groups, g.k_per_group, g.c_per_group
    M = g.P * g.Q
    rows_first = Cg > Kg
    acc = numpy.zeros((G, Cg, Kg) if rows_first else (G, Kg, Cg), dtype)
    nb, _ = tile_shape(g.N, 1, (g.C + g.K) * M * dtype.itemsize)
    for n0, n1 in chunks(g.N, nb):
        n = n1 - n0
        xs = numpy.ascontiguousarray(x[n0:n1], dtype=dtype).reshape(n, G, Cg, M)
        ys = numpy.ascontiguousarray(gy[n0:n1], dtype=dtype).reshape(n, G, Kg, M)
        for i in range(n):
            if rows_first:
                acc += numpy.matmul(xs[i], ys[i].transpose(0, 2, 1))
            else:
                acc += numpy.matmul(ys[i], xs[i].transpose(0, 2, 1))
    gw = acc.transpose(0, 2, 1) if rows_first else acc
    return numpy.ascontiguousarray(gw).reshape(g.weight_shape)


def _wgrad_flat(g, x, gy, dtype):
    """Stride 1 without im2col: with gy widened to the frame's width Wn (zeros in the extra columns), tap
    (r, s) of a whole image is one contiguous run of the flattened zero frame, starting at
    r*dil_h*Wn + s*dil_w, so gw[g, :, :, r, s] = sum over images of gy_wide[n, g] @ run[n, g]^T straight
    from the frame (the zero columns cancel what the runs read past each row's end)."""
    G, Kg, Cg = g.groups, g.k_per_group, g.c_per_group
    Hn, Wn = _windows.padded_extent(g)
    extra = 1 if g.S > 1 else 0  # the runs of the last row reach dil_w*(S-1) past the frame's end
    m = g.P * Wn
    acc = numpy.zeros((G, Kg, Cg, g.R, g.S), dtype)
    nb, _ = tile_shape(g.N, 1, (g.C * (Hn + extra) + g.K * g.P) * Wn * dtype.itemsize)
    for n0, n1 in chunks(g.N, nb):
        n = n1 - n0
        flat = _windows.zero_frame(g, x[n0:n1], dtype, extra).reshape(n, G, Cg, -1)
        wide = numpy.zeros((n, g.K, g.P, Wn), dtype)
        _parallel.copyto(wide[..., :g.Q], gy[n0:n1])
        wide = wide.reshape(n, G, Kg, m)
        for r in range(g.R):
            for s in range(g.S):
                start = r * g.dil_h * Wn + s * g.dil_w
                run = flat[..., start:start + m]
                acc[..., r, s] += numpy.matmul(wide, run.transpose(0, 1, 3, 2)).sum(axis=0)
    return acc.reshape(g.weight_shape)


def _wgrad_per_image(g, x, gy, dtype):
    """gw[g] (Kg, R*S*Cg) = sum over images of gy[n, g] (Kg, M) @ cols[n, g]^T (M, R*S*Cg)."""
    G, Kg, Cg = g.groups, g.k_per_group, g.c_per_group
    acc = numpy.zeros((G, Kg, g.R * g.S * Cg), dtype)
    nb, rows = tile_shape(g.N, g.P, g.C * g.R * g.S * g.Q * dtype.itemsize)
    scratch = numpy.empty(nb * g.C * g.R * g.S * rows * g.Q, dtype)
    for n0, n1 in chunks(g.N, nb):
        n = n1 - n0
        source = _windows.tap_source(g, x[n0:n1], dtype)
        gyc = numpy.ascontiguousarray(gy[n0:n1], dtype=dtype).reshape(n, G, Kg, g.P * g.Q)
        for p0, p1 in chunks(g.P, rows):
            cols = _im2col(g, source, n, p0, p1, dtype, scratch)
            acc += numpy.matmul(gyc[..., p0 * g.Q:p1 * g.Q], cols.transpose(0, 1, 3, 2)).sum(axis=0)
    # (K, R, S, Cg) -> (K, Cg, R, S)
    return numpy.ascontiguousarray(acc.reshape(g.K, g.R, g.S, Cg).transpose(0, 3, 1, 2))


def _wgrad_batch_beside_pixels(g, x, gy, dtype):
    """gw[g, :, :, r, s] (Kg, Cg) = gy[g] (Kg, n*M) @ x_tap[g]^T (n*M, Cg), summed over chunks of images."""
    G, Kg, Cg = g.groups, g.k_per_group, g.c_per_group
    acc = numpy.zeros((g.R, g.S, G, Kg, Cg), dtype)
    prod = numpy.empty((G, Kg, Cg), dtype)
    nb, rows = tile_shape(g.N, g.P, (g.C + g.K) * g.Q * dtype.itemsize)
    scratch = numpy.empty(nb * g.C * rows * g.Q, dtype)
    gy_t = numpy.empty((G, Kg, nb, g.P * g.Q), dtype)
    for n0, n1 in chunks(g.N, nb):
        n = n1 - n0
        source = _windows.tap_source(g, x[n0:n1], dtype)
        # The chunk's gradient as (G, Kg, n, P*Q): batch beside pixels, one long GEMM per group and tap.
        gyn = gy_t[:, :, :n]
        _parallel.copyto(gyn, gy[n0:n1].reshape(n, G, Kg, g.P * g.Q).transpose(1, 2, 0, 3))
        for p0, p1 in chunks(g.P, rows):
            m = n * (p1 - p0) * g.Q
            a = gyn[..., p0 * g.Q:p1 * g.Q].reshape(G, Kg, m)
            xt = scratch[:Cg * G * m].reshape(G, Cg, n, p1 - p0, g.Q)
            for r in range(g.R):
                for s in range(g.S):
                    view = _windows.tap_view(g, source, r, s, p0, p1)
                    _parallel.copyto(xt, view.reshape(n, G, Cg, p1 - p0, g.Q).transpose(1, 2, 0, 3, 4))
                    numpy.matmul(a, xt.reshape(G, Cg, m).transpose(0, 2, 1), out=prod)
                    acc[r, s] += prod
    return numpy.ascontiguousarray(acc.transpose(2, 3, 4, 0, 1)).reshape(g.weight_shape)
