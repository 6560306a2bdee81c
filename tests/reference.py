"""float64 references written from the definitions, with plain loops: slow, tiny shapes only.

Each function takes and returns NumPy arrays and computes in float64. Output sizes are worked out here from
PyTorch's documented formulas, independently of ``gpuconv._params``, so the tests check those too. The
loops run over output positions and kernel taps; at each (position, tap) a small matrix product sums over
the channels of one group, which keeps the code short without hiding the definition.
"""

from __future__ import annotations

import math

import numpy


def _f64(a):
    return None if a is None else numpy.asarray(a, dtype=numpy.float64)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


# ----------------------------------------------------------------------------------------- conv2d


def conv_pads(padding, kernel, dilation):
    """(top, bottom, left, right) for conv2d's padding argument, from PyTorch's docs (and 'full')."""
    (R, S), (dh, dw) = kernel, _pair(dilation)
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":  # total dilation*(k-1); an odd total puts the extra row/column at the end
        th, tw = dh * (R - 1), dw * (S - 1)
        return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    if padding == "full":
        return (dh * (R - 1), dh * (R - 1), dw * (S - 1), dw * (S - 1))
    ph, pw = _pair(padding)
    return (ph, ph, pw, pw)


def conv_out_size(size, pad_lo, pad_hi, k, stride, dilation):
    return (size + pad_lo + pad_hi - dilation * (k - 1) - 1) // stride + 1


def _conv_taps(H, W, R, S, pads, stride, dilation):
    """Output size (P, Q) and every (p, q, r, s, h, w): output position, kernel tap and the input pixel the
    tap reads, for taps that land inside the (unpadded) input; taps on zero padding contribute nothing."""
    top, bottom, left, right = pads
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    P, Q = conv_out_size(H, top, bottom, R, sh, dh), conv_out_size(W, left, right, S, sw, dw)
    taps = []
    for p in range(P):
        for q in range(Q):
            for r in range(R):
                for s in range(S):
                    h, w = p * sh - top + r * dh, q * sw - left + s * dw
                    if 0 <= h < H and 0 <= w < W:
                        taps.append((p, q, r, s, h, w))
    return (P, Q), taps


def conv2d(x, w, b=None, stride=1, pads=(0, 0, 0, 0), dilation=1, groups=1):
    """y[n, k, p, q] = b[k] + sum over c in k's group, r, s of x[n, c, p*sh - top + r*dh, q*sw - left + s*dw]
    * w[k, c, r, s], with x zero outside the input."""
    x, w, b = _f64(x), _f64(w), _f64(b)
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    Kg = K // groups
    (P, Q), taps = _conv_taps(H, W, R, S, pads, stride, dilation)
    y = numpy.zeros((N, K, P, Q))
    for p, q, r, s, h, ww in taps:
        for g in range(groups):
            ks, cs = slice(g * Kg, (g + 1) * Kg), slice(g * Cg, (g + 1) * Cg)
            y[:, ks, p, q] += x[:, cs, h, ww] @ w[ks, :, r, s].T
    if b is not None:
        y += b[None, :, None, None]
    return y


def conv2d_backward(gy, x, w, stride=1, pads=(0, 0, 0, 0), dilation=1, groups=1):
    """(grad_input, grad_weight, grad_bias) of conv2d: the same loop as the forward, each product sent back
    to the two operands it multiplied."""
    gy, x, w = _f64(gy), _f64(x), _f64(w)
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    Kg = K // groups
    _, taps = _conv_taps(H, W, R, S, pads, stride, dilation)
    gx, gw = numpy.zeros_like(x), numpy.zeros_like(w)
    for p, q, r, s, h, ww in taps:
        for g in range(groups):
            ks, cs = slice(g * Kg, (g + 1) * Kg), slice(g * Cg, (g + 1) * Cg)
            gx[:, cs, h, ww] += gy[:, ks, p, q] @ w[ks, :, r, s]
            gw[ks, :, r, s] += gy[:, ks, p, q].T @ x[:, cs, h, ww]
    return gx, gw, gy.sum(axis=(0, 2, 3))


# ------------------------------------------------------------------------------------ padding modes


def _source_index(i, size, mode):
    """The input row (or column) that padded position i (may be < 0 or >= size) copies."""
    if mode == "reflect":  # mirror without repeating the edge
        return -i if i < 0 else (2 * (size - 1) - i if i >= size else i)
    if mode == "replicate":
        return min(max(i, 0), size - 1)
    if mode == "circular":
        return i % size
    raise ValueError(mode)


def pad2d(x, pads, mode):
    x = _f64(x)
    top, bottom, left, right = pads
    H, W = x.shape[-2:]
    out = numpy.empty(x.shape[:-2] + (H + top + bottom, W + left + right))
    for i in range(out.shape[-2]):
        for j in range(out.shape[-1]):
            out[..., i, j] = x[..., _source_index(i - top, H, mode), _source_index(j - left, W, mode)]
    return out


def pad2d_backward(gxp, pads, mode, H, W):
    gxp = _f64(gxp)
    top, _, left, _ = pads
    gx = numpy.zeros(gxp.shape[:-2] + (H, W))
    for i in range(gxp.shape[-2]):
        for j in range(gxp.shape[-1]):
            gx[..., _source_index(i - top, H, mode), _source_index(j - left, W, mode)] += gxp[..., i, j]
    return gx


def conv2d_any_mode(x, w, b, stride, pads, dilation, groups, mode):
    """conv2d with padding_mode: an explicit pad, then an unpadded convolution (zeros: ordinary padding)."""
    if mode == "zeros":
        return conv2d(x, w, b, stride, pads, dilation, groups)
    return conv2d(pad2d(x, pads, mode), w, b, stride, (0, 0, 0, 0), dilation, groups)


def conv2d_backward_any_mode(gy, x, w, stride, pads, dilation, groups, mode):
    if mode == "zeros":
        return conv2d_backward(gy, x, w, stride, pads, dilation, groups)
    gxp, gw, gb = conv2d_backward(gy, pad2d(x, pads, mode), w, stride, (0, 0, 0, 0), dilation, groups)
    return pad2d_backward(gxp, pads, mode, *x.shape[-2:]), gw, gb


# ------------------------------------------------------------------------------------ conv_transpose2d


def transpose_out_size(size, k, stride, padding, output_padding, dilation):
    return (size - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1


def _transpose_taps(Hin, Win, R, S, stride, padding, output_padding, dilation):
    """Output size and every (h, w, r, s, oh, ow): input pixel, tap, and the output pixel it adds to, kept
    when the output pixel is inside the output (padding crops the full result)."""
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = (_pair(v) for v in (stride, padding, output_padding, dilation))
    Hout = transpose_out_size(Hin, R, sh, ph, oph, dh)
    Wout = transpose_out_size(Win, S, sw, pw, opw, dw)
    taps = []
    for h in range(Hin):
        for w in range(Win):
            for r in range(R):
                for s in range(S):
                    oh, ow = h * sh - ph + r * dh, w * sw - pw + s * dw
                    if 0 <= oh < Hout and 0 <= ow < Wout:
                        taps.append((h, w, r, s, oh, ow))
    return (Hout, Wout), taps


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """y[n, co, h*sh - ph + r*dh, w*sw - pw + s*dw] += x[n, ci, h, w] * w[ci, co', r, s] for ci and co in
    one group (co = group*Cout_g + co'), plus bias[co]."""
    x, w, b = _f64(x), _f64(w), _f64(b)
    N, Cin, Hin, Win = x.shape
    _, Coutg, R, S = w.shape
    Cing = Cin // groups
    (Hout, Wout), taps = _transpose_taps(Hin, Win, R, S, stride, padding, output_padding, dilation)
    y = numpy.zeros((N, Coutg * groups, Hout, Wout))
    for h, ww, r, s, oh, ow in taps:
        for g in range(groups):
            ci, co = slice(g * Cing, (g + 1) * Cing), slice(g * Coutg, (g + 1) * Coutg)
            y[:, co, oh, ow] += x[:, ci, h, ww] @ w[ci, :, r, s]
    if b is not None:
        y += b[None, :, None, None]
    return y


def conv_transpose2d_backward(gy, x, w, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    gy, x, w = _f64(gy), _f64(x), _f64(w)
    N, Cin, Hin, Win = x.shape
    _, Coutg, R, S = w.shape
    Cing = Cin // groups
    _, taps = _transpose_taps(Hin, Win, R, S, stride, padding, output_padding, dilation)
    gx, gw = numpy.zeros_like(x), numpy.zeros_like(w)
    for h, ww, r, s, oh, ow in taps:
        for g in range(groups):
            ci, co = slice(g * Cing, (g + 1) * Cing), slice(g * Coutg, (g + 1) * Coutg)
            gx[:, ci, h, ww] += gy[:, co, oh, ow] @ w[ci, :, r, s].T
            gw[ci, :, r, s] += x[:, ci, h, ww].T @ gy[:, co, oh, ow]
    return gx, gw, gy.sum(axis=(0, 2, 3))


# -------------------------------------------------------------------------------------------- pooling


def pool_out_size(size, k, s, p, d, ceil_mode):
    """PyTorch's pooling output size: with ceil_mode the last window must start inside the input or its
    left/top padding, never wholly in the right/bottom padding."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (math.ceil(span / s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(values, int64 indices): the max over each window of the input padded with -inf, scanned row by row;
    a value replaces the best so far when it is greater or NaN, so the first maximum wins and the last NaN
    wins. An index is h*W + w in its (n, c) plane."""
    x = _f64(x)
    N, C, H, W = x.shape
    (kh, kw) = _pair(kernel_size)
    (sh, sw) = (kh, kw) if stride is None or stride == () else _pair(stride)  # () means the default, as torch
    (ph, pw), (dh, dw) = _pair(padding), _pair(dilation)
    P, Q = pool_out_size(H, kh, sh, ph, dh, ceil_mode), pool_out_size(W, kw, sw, pw, dw, ceil_mode)
    y = numpy.empty((N, C, P, Q))
    idx = numpy.empty((N, C, P, Q), dtype=numpy.int64)
    for n in range(N):
        for c in range(C):
            for p in range(P):
                for q in range(Q):
                    inside = [(p * sh - ph + i * dh, q * sw - pw + j * dw) for i in range(kh) for j in range(kw)]
                    inside = [(h, w) for h, w in inside if 0 <= h < H and 0 <= w < W]
                    best, best_at = -numpy.inf, inside[0][0] * W + inside[0][1]
                    for h, w in inside:
                        v = x[n, c, h, w]
                        if v > best or numpy.isnan(v):
                            best, best_at = v, h * W + w
                    y[n, c, p, q], idx[n, c, p, q] = best, best_at
    return y, idx


def max_pool2d_backward(gy, indices, input_shape):
    gy = _f64(gy)
    N, C, H, W = input_shape
    gx = numpy.zeros((N, C, H * W))
    for n in range(N):
        for c in range(C):
            for g, i in zip(gy[n, c].ravel(), indices[n, c].ravel()):
                gx[n, c, i] += g
    return gx.reshape(input_shape)


def _avg_windows(H, W, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    """Output size and, per output (p, q): the input rows and columns the window covers, and its divisor.
    As PyTorch: the padded size counts the part of the window inside input + padding (a ceil_mode window
    can reach past it); the divisor is that padded size, the count of real pixels, or divisor_override."""
    (kh, kw) = _pair(kernel_size)
    (sh, sw) = (kh, kw) if stride is None or stride == () else _pair(stride)  # () means the default, as torch
    (ph, pw) = _pair(padding)
    P, Q = pool_out_size(H, kh, sh, ph, 1, ceil_mode), pool_out_size(W, kw, sw, pw, 1, ceil_mode)
    windows = {}
    for p in range(P):
        for q in range(Q):
            h0, w0 = p * sh - ph, q * sw - pw
            h1, w1 = min(h0 + kh, H + ph), min(w0 + kw, W + pw)
            padded_size = (h1 - h0) * (w1 - w0)
            rows, cols = range(max(h0, 0), min(h1, H)), range(max(w0, 0), min(w1, W))
            if divisor_override is not None:
                divisor = divisor_override
            else:
                divisor = padded_size if count_include_pad else len(rows) * len(cols)
            windows[p, q] = (rows, cols, divisor)
    return (P, Q), windows


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    x = _f64(x)
    N, C, H, W = x.shape
    (P, Q), windows = _avg_windows(H, W, kernel_size, stride, padding, ceil_mode, count_include_pad,
                                   divisor_override)
    y = numpy.zeros((N, C, P, Q))
    for (p, q), (rows, cols, divisor) in windows.items():
        if len(rows) and len(cols):  # a window wholly in padding averages to 0
            y[:, :, p, q] = x[:, :, rows.start:rows.stop, cols.start:cols.stop].sum(axis=(2, 3)) / divisor
    return y


def avg_pool2d_backward(gy, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    gy = _f64(gy)
    N, C, H, W = input_shape
    _, windows = _avg_windows(H, W, kernel_size, stride, padding, ceil_mode, count_include_pad,
                              divisor_override)
    gx = numpy.zeros(input_shape)
    for (p, q), (rows, cols, divisor) in windows.items():
        gx[:, :, rows.start:rows.stop, cols.start:cols.stop] += (gy[:, :, p, q] / divisor)[:, :, None, None]
    return gx
