"""Float64 references from the definition, small enough to read at a glance, for ``python -m gpuconv``.

Each loops over output (or window) positions and does the arithmetic of one position with NumPy; they are
slow and meant for tiny shapes. The test suite has its own, independent references (tests/reference.py).
"""

from __future__ import annotations

import itertools

import numpy as np


def _pad_zero(x, top, bottom, left, right):
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))


def conv2d(x, w, b, stride, pad, dil, groups):
    """y[n, k, p, q] = b[k] + sum_{c in group(k), r, s} x_pad[n, c, p*sh + r*dh, q*sw + s*dw] * w[k, c', r, s]."""
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dil
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    xp = _pad_zero(x, ph, ph, pw, pw)
    P = (H + 2 * ph - dh * (R - 1) - 1) // sh + 1
    Q = (W + 2 * pw - dw * (S - 1) - 1) // sw + 1
    Kg = K // groups
    y = np.zeros((N, K, P, Q))
    for k in range(K):
        c0 = (k // Kg) * Cg
        for p in range(P):
            for q in range(Q):
                win = xp[:, c0:c0 + Cg, p * sh:p * sh + dh * (R - 1) + 1:dh, q * sw:q * sw + dw * (S - 1) + 1:dw]
                y[:, k, p, q] = np.einsum("ncrs,crs->n", win, w[k])
    if b is not None:
        y += b[None, :, None, None]
    return y


def conv2d_grads(gy, x, w, stride, pad, dil, groups):
    """The adjoint of :func:`conv2d`: every product x*w of the forward sends gy back to both factors."""
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dil
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    xp = _pad_zero(x, ph, ph, pw, pw)
    gxp = np.zeros_like(xp)
    gw = np.zeros(w.shape)
    Kg = K // groups
    P, Q = gy.shape[2:]
    for k in range(K):
        c0 = (k // Kg) * Cg
        for p in range(P):
            for q in range(Q):
                rows = slice(p * sh, p * sh + dh * (R - 1) + 1, dh)
                cols = slice(q * sw, q * sw + dw * (S - 1) + 1, dw)
                g = gy[:, k, p, q]
                gxp[:, c0:c0 + Cg, rows, cols] += np.einsum("n,crs->ncrs", g, w[k])
                gw[k] += np.einsum("n,ncrs->crs", g, xp[:, c0:c0 + Cg, rows, cols])
    gx = gxp[:, :, ph:ph + H, pw:pw + W]
    return gx, gw, gy.sum(axis=(0, 2, 3))


def max_pool2d(x, k, stride, pad, dil):
    """y[n, c, p, q] = max over the window (padding is -inf); the index of the winner, flat in the plane."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = k, stride, pad, dil
    N, C, H, W = x.shape
    P = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Q = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.full((N, C, P, Q), -np.inf)
    idx = np.zeros((N, C, P, Q), dtype=np.int64)
    for p in range(P):
        for q in range(Q):
            for i in range(kh):
                for j in range(kw):
                    h, w_ = p * sh - ph + i * dh, q * sw - pw + j * dw
                    if 0 <= h < H and 0 <= w_ < W:
                        better = x[:, :, h, w_] > y[:, :, p, q]
                        y[:, :, p, q] = np.where(better, x[:, :, h, w_], y[:, :, p, q])
                        idx[:, :, p, q] = np.where(better, h * W + w_, idx[:, :, p, q])
    return y, idx


def avg_pool2d(x, k, stride, pad):
    """y[n, c, p, q] = sum of the window's in-bounds values / window area including padding."""
    (kh, kw), (sh, sw), (ph, pw) = k, stride, pad
    xp = _pad_zero(x, ph, ph, pw, pw)
    N, C, Hp, Wp = xp.shape
    P, Q = (Hp - kh) // sh + 1, (Wp - kw) // sw + 1
    y = np.zeros((N, C, P, Q))
    for p in range(P):
        for q in range(Q):
            y[:, :, p, q] = xp[:, :, p * sh:p * sh + kh, q * sw:q * sw + kw].sum(axis=(2, 3)) / (kh * kw)
    return y


def avg_pool2d_grad(gy, x_shape, k, stride, pad):
    """The adjoint of :func:`avg_pool2d`: each window sends gy / area to each of its positions."""
    (kh, kw), (sh, sw), (ph, pw) = k, stride, pad
    N, C, H, W = x_shape
    gxp = np.zeros((N, C, H + 2 * ph, W + 2 * pw))
    P, Q = gy.shape[2:]
    for p in range(P):
        for q in range(Q):
            gxp[:, :, p * sh:p * sh + kh, q * sw:q * sw + kw] += gy[:, :, p, q, None, None] / (kh * kw)
    return gxp[:, :, ph:ph + H, pw:pw + W]


def max_pool2d_grad(gy, idx, x_shape):
    """Each output's gradient goes to the input position its index names."""
    N, C, H, W = x_shape
    gx = np.zeros((N, C, H * W))
    for n in range(N):
        for c in range(C):
            np.add.at(gx[n, c], idx[n, c].ravel(), gy[n, c].ravel())
    return gx.reshape(x_shape)


# ------------------------------------------------------------------ any number of spatial dimensions


def _positions(shape):
    return itertools.product(*(range(s) for s in shape))


def conv_nd(x, w, b, stride, pad, dil, groups):
    """The n-d definition: y[n, k, o] = b[k] + sum over c in group(k) and taps t of
    x_pad[n, c, o*stride + t*dil] * w[k, c', t]; every tuple argument has one entry per spatial dimension."""
    nd = x.ndim - 2
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple((p, p) for p in pad))
    K, Cg = w.shape[:2]
    out = tuple((s + 2 * p - d * (k - 1) - 1) // st + 1
                for s, p, d, k, st in zip(x.shape[2:], pad, dil, w.shape[2:], stride))
    y = np.zeros((x.shape[0], K) + out)
    Kg = K // groups
    for k in range(K):
        c0 = (k // Kg) * Cg
        for o in _positions(out):
            win = xp[(slice(None), slice(c0, c0 + Cg)) + tuple(
                slice(i * st, i * st + d * (kk - 1) + 1, d) for i, st, d, kk in zip(o, stride, dil, w.shape[2:]))]
            y[(slice(None), k) + o] = (win * w[k]).reshape(x.shape[0], -1).sum(axis=1)
    if b is not None:
        y += b.reshape((1, -1) + (1,) * nd)
    return y


def conv_nd_grads(gy, x, w, stride, pad, dil, groups):
    """The adjoint of :func:`conv_nd`: every product x*w sends gy back to both factors."""
    nd = x.ndim - 2
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple((p, p) for p in pad))
    gxp, gw = np.zeros_like(xp), np.zeros(w.shape)
    K, Cg = w.shape[:2]
    Kg = K // groups
    for k in range(K):
        c0 = (k // Kg) * Cg
        for o in _positions(gy.shape[2:]):
            idx = (slice(None), slice(c0, c0 + Cg)) + tuple(
                slice(i * st, i * st + d * (kk - 1) + 1, d) for i, st, d, kk in zip(o, stride, dil, w.shape[2:]))
            g = gy[(slice(None), k) + o].reshape((-1,) + (1,) * (nd + 1))
            gxp[idx] += g * w[k]
            gw[k] += (g * xp[idx]).sum(axis=0)
    gx = gxp[(slice(None), slice(None)) + tuple(slice(p, p + s) for p, s in zip(pad, x.shape[2:]))]
    return gx, gw, gy.sum(axis=(0,) + tuple(range(2, gy.ndim)))


def pool_nd(x, k, stride, pad, kind):
    """Max (with flat indices) or average (padding counted in the divisor) pooling in n dimensions."""
    size = x.shape[2:]
    out = tuple((s + 2 * p - kk) // st + 1 for s, p, kk, st in zip(size, pad, k, stride))
    y = np.zeros(x.shape[:2] + out)
    idx = np.zeros(x.shape[:2] + out, dtype=np.int64)
    flat = x.reshape(x.shape[:2] + (-1,))
    for o in _positions(out):
        taps = [tuple(i * st - p + t for i, st, p, t in zip(o, stride, pad, tap)) for tap in _positions(k)]
        inside = [t for t in taps if all(0 <= c < s for c, s in zip(t, size))]
        where = [int(np.ravel_multi_index(t, size)) for t in inside]
        vals = flat[:, :, where]
        if kind == "max":
            best = np.argmax(vals, axis=2)  # first maximum (the inputs here have no ties or NaN)
            y[(Ellipsis,) + o] = np.take_along_axis(vals, best[..., None], 2)[..., 0]
            idx[(Ellipsis,) + o] = np.asarray(where)[best]
        else:
            y[(Ellipsis,) + o] = vals.sum(axis=2) / np.prod(k)
    return y, idx


def adaptive_avg_nd(x, out):
    """Average over PyTorch's adaptive windows [floor(i*L/O), ceil((i+1)*L/O)) along every axis."""
    y = np.zeros(x.shape[:2] + tuple(out))
    for o in _positions(out):
        win = tuple(slice((i * s) // n, -((-(i + 1) * s) // n)) for i, s, n in zip(o, x.shape[2:], out))
        y[(Ellipsis,) + o] = x[(Ellipsis,) + win].reshape(x.shape[:2] + (-1,)).mean(axis=2)
    return y
