"""float64 references for any number of spatial dimensions (1-d and 3-d above all), written from the
definitions with plain loops: slow, tiny shapes only.

Each function takes batched NumPy arrays (N, C, *spatial) and computes in float64; spatial tuples run
outermost first. Loops run over output positions and kernel taps with ``itertools.product`` (row-major, the
order PyTorch scans a window in); at each (position, tap) a small matrix product sums over the channels of
one group. Output sizes come from PyTorch's documented formulas, independently of ``gpuconv._params``.
"""

from __future__ import annotations

import itertools
import math

import numpy

from reference import _source_index, pool_out_size


def _f64(a):
    return None if a is None else numpy.asarray(a, dtype=numpy.float64)


def ntuple(v, nd):
    return (v,) * nd if isinstance(v, int) else tuple(v)


def _inside(pos, size):
    return all(0 <= p < s for p, s in zip(pos, size))


# ----------------------------------------------------------------------------------------- convolution


def conv_pads(padding, kernel, dilation):
    """((lo, hi), ...) per spatial dimension for a convolution's padding argument (PyTorch's, and 'full')."""
    nd = len(kernel)
    dil = ntuple(dilation, nd)
    if padding == "valid":
        return ((0, 0),) * nd
    if padding == "same":  # total dilation*(k-1); an odd total puts the extra at the end
        return tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel, dil))
    if padding == "full":
        return tuple((d * (k - 1), d * (k - 1)) for k, d in zip(kernel, dil))
    return tuple((p, p) for p in ntuple(padding, nd))


def conv_out_size(size, lo, hi, k, stride, dilation):
    return (size + lo + hi - dilation * (k - 1) - 1) // stride + 1


def _conv_taps(size, kernel, pads, stride, dilation):
    """Output size and every (out position, tap, input position) whose input position lies inside the
    (unpadded) input: taps on zero padding contribute nothing."""
    nd = len(size)
    stride, dilation = ntuple(stride, nd), ntuple(dilation, nd)
    out = tuple(conv_out_size(n, lo, hi, k, s, d) for n, (lo, hi), k, s, d in zip(size, pads, kernel, stride,
                                                                                    dilation))
    taps = []
    for o in itertools.product(*map(range, out)):
        for t in itertools.product(*map(range, kernel)):
            i = tuple(oi * s - lo + ti * d for oi, s, (lo, _), ti, d in zip(o, stride, pads, t, dilation))
            if _inside(i, size):
                taps.append((o, t, i))
    return out, taps


def conv(x, w, b=None, stride=1, pads=None, dilation=1, groups=1):
    """y[n, k, o] = b[k] + sum over c in k's group and taps t of x[n, c, o*stride - pad_lo + t*dilation]
    * w[k, c, t], x being zero outside the input."""
    x, w, b = _f64(x), _f64(w), _f64(b)
    nd = x.ndim - 2
    pads = pads if pads is not None else ((0, 0),) * nd
    N, K, Cg = x.shape[0], w.shape[0], w.shape[1]
    Kg = K // groups
    out, taps = _conv_taps(x.shape[2:], w.shape[2:], pads, stride, dilation)
    y = numpy.zeros((N, K) + out)
    for o, t, i in taps:
        for g in range(groups):
            ks, cs = slice(g * Kg, (g + 1) * Kg), slice(g * Cg, (g + 1) * Cg)
            y[(slice(None), ks) + o] += x[(slice(None), cs) + i] @ w[(ks, slice(None)) + t].T
    if b is not None:
        y += b.reshape((1, K) + (1,) * nd)
    return y


def conv_backward(gy, x, w, stride=1, pads=None, dilation=1, groups=1):
    """(grad_input, grad_weight, grad_bias): the forward's loop, each product sent back to its operands."""
    gy, x, w = _f64(gy), _f64(x), _f64(w)
    nd = x.ndim - 2
    pads = pads if pads is not None else ((0, 0),) * nd
    K, Cg = w.shape[:2]
    Kg = K // groups
    _, taps = _conv_taps(x.shape[2:], w.shape[2:], pads, stride, dilation)
    gx, gw = numpy.zeros_like(x), numpy.zeros_like(w)
    for o, t, i in taps:
        for g in range(groups):
            ks, cs = slice(g * Kg, (g + 1) * Kg), slice(g * Cg, (g + 1) * Cg)
            gx[(slice(None), cs) + i] += gy[(slice(None), ks) + o] @ w[(ks, slice(None)) + t]
            gw[(ks, slice(None)) + t] += gy[(slice(None), ks) + o].T @ x[(slice(None), cs) + i]
    return gx, gw, gy.sum(axis=(0,) + tuple(range(2, gy.ndim)))


def pad(x, pads, mode):
    """x padded by pads ((lo, hi) per spatial dimension) in mode reflect / replicate / circular: every padded
    position copies the input position ``reference._source_index`` names along each axis."""
    x = _f64(x)
    size = x.shape[2:]
    out = numpy.empty(x.shape[:2] + tuple(n + lo + hi for n, (lo, hi) in zip(size, pads)))
    for p in itertools.product(*map(range, out.shape[2:])):
        src = tuple(_source_index(pi - lo, n, mode) for pi, (lo, _), n in zip(p, pads, size))
        out[(Ellipsis,) + p] = x[(Ellipsis,) + src]
    return out


def pad_backward(gxp, pads, mode, size):
    gxp = _f64(gxp)
    gx = numpy.zeros(gxp.shape[:2] + tuple(size))
    for p in itertools.product(*map(range, gxp.shape[2:])):
        src = tuple(_source_index(pi - lo, n, mode) for pi, (lo, _), n in zip(p, pads, size))
        gx[(Ellipsis,) + src] += gxp[(Ellipsis,) + p]
    return gx


def conv_any_mode(x, w, b, stride, pads, dilation, groups, mode):
    """conv with padding_mode: an explicit pad, then an unpadded convolution (zeros: ordinary padding)."""
    if mode == "zeros":
        return conv(x, w, b, stride, pads, dilation, groups)
    return conv(pad(x, pads, mode), w, b, stride, None, dilation, groups)


def conv_backward_any_mode(gy, x, w, stride, pads, dilation, groups, mode):
    if mode == "zeros":
        return conv_backward(gy, x, w, stride, pads, dilation, groups)
    gxp, gw, gb = conv_backward(gy, pad(x, pads, mode), w, stride, None, dilation, groups)
    return pad_backward(gxp, pads, mode, x.shape[2:]), gw, gb


# ------------------------------------------------------------------------------- transposed convolution


def transpose_out_size(size, k, stride, padding, output_padding, dilation):
    return (size - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1


def _transpose_taps(size_in, kernel, stride, padding, output_padding, dilation):
    """Output size and every (input position, tap, output position) with the output position inside the
    output (padding crops the full result)."""
    nd = len(size_in)
    s, p, op, d = (ntuple(v, nd) for v in (stride, padding, output_padding, dilation))
    out = tuple(transpose_out_size(*a) for a in zip(size_in, kernel, s, p, op, d))
    taps = []
    for i in itertools.product(*map(range, size_in)):
        for t in itertools.product(*map(range, kernel)):
            o = tuple(ii * si - pi + ti * di for ii, si, pi, ti, di in zip(i, s, p, t, d))
            if _inside(o, out):
                taps.append((i, t, o))
    return out, taps


def conv_transpose(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """y[n, co, i*stride - padding + t*dilation] += x[n, ci, i] * w[ci, co', t] for ci and co in one group
    (co = group*Cout_g + co'), plus bias[co]."""
    x, w, b = _f64(x), _f64(w), _f64(b)
    nd = x.ndim - 2
    N, Cin = x.shape[:2]
    Coutg = w.shape[1]
    Cing = Cin // groups
    out, taps = _transpose_taps(x.shape[2:], w.shape[2:], stride, padding, output_padding, dilation)
    y = numpy.zeros((N, Coutg * groups) + out)
    for i, t, o in taps:
        for g in range(groups):
            ci, co = slice(g * Cing, (g + 1) * Cing), slice(g * Coutg, (g + 1) * Coutg)
            y[(slice(None), co) + o] += x[(slice(None), ci) + i] @ w[(ci, slice(None)) + t]
    if b is not None:
        y += b.reshape((1, -1) + (1,) * nd)
    return y


def conv_transpose_backward(gy, x, w, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    gy, x, w = _f64(gy), _f64(x), _f64(w)
    Cin, Coutg = x.shape[1], w.shape[1]
    Cing = Cin // groups
    _, taps = _transpose_taps(x.shape[2:], w.shape[2:], stride, padding, output_padding, dilation)
    gx, gw = numpy.zeros_like(x), numpy.zeros_like(w)
    for i, t, o in taps:
        for g in range(groups):
            ci, co = slice(g * Cing, (g + 1) * Cing), slice(g * Coutg, (g + 1) * Coutg)
            gx[(slice(None), ci) + i] += gy[(slice(None), co) + o] @ w[(ci, slice(None)) + t].T
            gw[(ci, slice(None)) + t] += x[(slice(None), ci) + i].T @ gy[(slice(None), co) + o]
    return gx, gw, gy.sum(axis=(0,) + tuple(range(2, gy.ndim)))


# -------------------------------------------------------------------------------------------- pooling


def _flat(pos, size):
    """Row-major flat index of pos within size: l; h*W + w; d*H*W + h*W + w."""
    f = 0
    for p, n in zip(pos, size):
        f = f * n + p
    return f


def _scan_max(x, n, c, positions, size):
    """PyTorch's scan of one window, in the order given: a value replaces the best so far when it is greater
    or NaN (the first maximum wins, the last NaN wins); starting from -inf at the first position, so an
    all -inf window points at its first pixel."""
    best, best_at = -numpy.inf, _flat(positions[0], size)
    for pos in positions:
        v = x[(n, c) + pos]
        if v > best or numpy.isnan(v):
            best, best_at = v, _flat(pos, size)
    return best, best_at


def pool_output_size(size, kernel_size, stride, padding, dilation, ceil_mode):
    nd = len(size)
    k = ntuple(kernel_size, nd)
    s = k if stride is None else ntuple(stride, nd)
    p, d = ntuple(padding, nd), ntuple(dilation, nd)
    return tuple(pool_out_size(*a, ceil_mode) for a in zip(size, k, s, p, d)), k, s, p, d


def max_pool(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(values, int64 indices) of max pooling with -inf padding; indices flat within each (n, c) input."""
    x = _f64(x)
    N, C, size = x.shape[0], x.shape[1], x.shape[2:]
    out, k, s, p, d = pool_output_size(size, kernel_size, stride, padding, dilation, ceil_mode)
    y = numpy.empty((N, C) + out)
    idx = numpy.empty((N, C) + out, dtype=numpy.int64)
    for o in itertools.product(*map(range, out)):
        window = [tuple(oi * si - pi + ti * di for oi, si, pi, ti, di in zip(o, s, p, t, d))
                  for t in itertools.product(*map(range, k))]
        window = [pos for pos in window if _inside(pos, size)]
        for n in range(N):
            for c in range(C):
                y[(n, c) + o], idx[(n, c) + o] = _scan_max(x, n, c, window, size)
    return y, idx


def max_pool_backward(gy, indices, input_shape):
    """Each gradient added to the input position its index names (flat within its (n, c) input)."""
    gy = _f64(gy)
    N, C = input_shape[:2]
    gx = numpy.zeros((N, C, math.prod(input_shape[2:])))
    for n in range(N):
        for c in range(C):
            for g, i in zip(gy[n, c].ravel(), indices[n, c].ravel()):
                gx[n, c, i] += g
    return gx.reshape(input_shape)


def _avg_windows(size, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    """Output size and, per output position: the input ranges its window covers, and its divisor. As
    PyTorch: the padded size counts the part of the window inside input + padding (a ceil_mode window can
    reach past it); the divisor is that padded size, the count of real pixels, or divisor_override."""
    out, k, s, p, _ = pool_output_size(size, kernel_size, stride, padding, 1, ceil_mode)
    windows = {}
    for o in itertools.product(*map(range, out)):
        lo = [oi * si - pi for oi, si, pi in zip(o, s, p)]
        hi = [min(l + ki, n + pi) for l, ki, n, pi in zip(lo, k, size, p)]
        ranges = tuple(range(max(l, 0), min(h, n)) for l, h, n in zip(lo, hi, size))
        if divisor_override is not None:
            divisor = divisor_override
        elif count_include_pad:
            divisor = math.prod(h - l for l, h in zip(lo, hi))
        else:
            divisor = math.prod(len(r) for r in ranges)
        windows[o] = (ranges, divisor)
    return out, windows


def avg_pool(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
             divisor_override=None):
    x = _f64(x)
    out, windows = _avg_windows(x.shape[2:], kernel_size, stride, padding, ceil_mode, count_include_pad,
                                divisor_override)
    y = numpy.zeros(x.shape[:2] + out)
    for o, (ranges, divisor) in windows.items():
        for i in itertools.product(*ranges):
            y[(Ellipsis,) + o] += x[(Ellipsis,) + i] / divisor
    return y


def avg_pool_backward(gy, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                      count_include_pad=True, divisor_override=None):
    gy = _f64(gy)
    _, windows = _avg_windows(tuple(input_shape[2:]), kernel_size, stride, padding, ceil_mode,
                              count_include_pad, divisor_override)
    gx = numpy.zeros(input_shape)
    for o, (ranges, divisor) in windows.items():
        for i in itertools.product(*ranges):
            gx[(Ellipsis,) + i] += gy[(Ellipsis,) + o] / divisor
    return gx


# ----------------------------------------------------------------------------------- adaptive pooling


def adaptive_output_size(size, output_size):
    """output_size (an int or a tuple with None entries keeping the input's size) as a tuple."""
    nd = len(size)
    values = (output_size,) * nd if not isinstance(output_size, (tuple, list)) else output_size
    return tuple(n if v is None else v for v, n in zip(values, size))


def _adaptive_ranges(size, out, o):
    """The input ranges output position o pools: [floor(i*L/O), ceil((i+1)*L/O)) along each dimension."""
    return tuple(range(math.floor(i * L / O), math.ceil((i + 1) * L / O)) for i, L, O in zip(o, size, out))


def adaptive_avg_pool(x, output_size):
    x = _f64(x)
    size = x.shape[2:]
    out = adaptive_output_size(size, output_size)
    y = numpy.zeros(x.shape[:2] + out)
    for o in itertools.product(*map(range, out)):
        ranges = _adaptive_ranges(size, out, o)
        count = math.prod(len(r) for r in ranges)
        for i in itertools.product(*ranges):
            y[(Ellipsis,) + o] += x[(Ellipsis,) + i] / count
    return y


def adaptive_avg_pool_backward(gy, input_shape):
    gy = _f64(gy)
    size, out = tuple(input_shape[2:]), gy.shape[2:]
    gx = numpy.zeros(input_shape)
    for o in itertools.product(*map(range, out)):
        ranges = _adaptive_ranges(size, out, o)
        count = math.prod(len(r) for r in ranges)
        for i in itertools.product(*ranges):
            gx[(Ellipsis,) + i] += gy[(Ellipsis,) + o] / count
    return gx


def adaptive_max_pool(x, output_size):
    """(values, int64 indices): the max over each adaptive window, scanned in row-major order with
    PyTorch's rule (see ``_scan_max``); the backward is ``max_pool_backward``."""
    x = _f64(x)
    N, C, size = x.shape[0], x.shape[1], x.shape[2:]
    out = adaptive_output_size(size, output_size)
    y = numpy.empty((N, C) + out)
    idx = numpy.empty((N, C) + out, dtype=numpy.int64)
    for o in itertools.product(*map(range, out)):
        window = list(itertools.product(*_adaptive_ranges(size, out, o)))
        for n in range(N):
            for c in range(C):
                y[(n, c) + o], idx[(n, c) + o] = _scan_max(x, n, c, window, size)
    return y, idx
