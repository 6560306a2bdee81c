"""3-d convolution and pooling composed from a backend's 2-d operations and plain array operations.

Every function takes the backend module ``be`` (``gpuconv._numpy`` or ``gpuconv._cuda``) and arrays of its
kind, so one composition serves both paths: on the GPU it runs the verified 2-d kernels plus CuPy's own
slicing, copies and element-wise arithmetic, nothing else. All sums run in a fixed order (no atomics):
results are bitwise reproducible.

Convolution: depth folded into channels ("vol2col" along depth only). For output depth z and depth tap t
the input depth is d = z*stride_d - pad_front + t*dil_d. Stacking, for every output depth z, the T input
depth slices it reads as channels (zeros where d falls in the padding) turns

    y[n, k, z] = sum over t, c of conv2d(x[n, c, d(z, t)], w[k, c, t])

into one 2-d convolution with T*C input channels over N*Z images, channel order (group, t, c) so that
grouped convolutions stay grouped. dgrad is that convolution's 2-d dgrad followed by a gather along depth
(each (z, t) result added onto its slice d, t ascending); wgrad is its 2-d wgrad, reshaped. The stacked input
is built in chunks of images and output depths so that it never exceeds ``WORKSPACE_BYTES``.

Pooling: a 3-d window is a box, so its max (or sum) is the max (or sum) over the depth taps of the 2-d
window results of each depth slice. The 2-d pass runs once over all D slices (viewed as C*D channels), the
depth taps combine afterwards. Max keeps PyTorch's rule across taps as within a slice: a larger value or a
NaN replaces the current one, so the first maximum and the last NaN in (d, h, w) order win.

16-bit inputs compute in float32 (the contract: float32 accumulation): every function here takes the raw
backend (never the bfloat16 proxy, which would round float32 intermediates), runs it on float32 arrays and
returns its result in the compute dtype; the caller rounds once, at the end.
"""

from __future__ import annotations

import functools

import numpy

WORKSPACE_BYTES = 64 << 20  # the largest stacked input one chunk may build


def _xp(a):
    """The array module of a: NumPy, or for a CuPy array the CUDA path's (CuPy, through its runtime seam)."""
    if isinstance(a, numpy.ndarray):
        return numpy
    from ._cuda import _runtime

    return _runtime.xp()


def quiet(fn):
    """fn with NumPy's floating-point warnings off: like PyTorch, inf and NaN simply propagate, and a caller's
    numpy.errstate(all="raise") cannot turn values in valid arrays into exceptions."""
    @functools.wraps(fn)
    def quietly(*args, **kwargs):
        with numpy.errstate(all="ignore"):
            return fn(*args, **kwargs)
    return quietly


@quiet
def cast(a, dtype):
    """a rounded once to the caller's dtype (float32 results of 16-bit calls may overflow to inf)."""
    return a.astype(dtype, copy=False)


_CONSTANTS: dict = {}  # (array module, device, key) -> a small read-only index / divisor array on that device


def constant(xp, key, make):
    """``make()``, a small NumPy array that depends on ``key`` alone, as an array of ``xp`` on its current
    device: copied there once, so that a repeated call makes no host-to-device copy (a step a CUDA graph can
    capture). Callers only read it."""
    if xp is numpy:
        return make()
    from ._cuda import _runtime

    k = (id(xp), _runtime.current().device_id(), key)
    found = _CONSTANTS.get(k)
    if found is None:
        if len(_CONSTANTS) >= 4096:
            _CONSTANTS.clear()
        found = _CONSTANTS[k] = xp.asarray(make())
    return found


def compute_dtype(dtype) -> numpy.dtype:
    dtype = numpy.dtype(dtype)
    return numpy.dtype(numpy.float32) if dtype.itemsize == 2 else dtype


def to_compute(a):
    """a in its compute dtype (float32 for 16-bit types; no copy otherwise)."""
    return a.astype(compute_dtype(a.dtype), copy=False)


def _taps(z0: int, z1: int, t: int, D: int, stride: int, pad: int, dil: int):
    """For depth tap t and output depths [z0, z1): the sub-range [za, zb) whose input depth
    d = z*stride - pad + t*dil lies in [0, D), and the input depth of za. An empty range has za == zb."""
    off = t * dil - pad
    za = max(z0, 0 if off >= 0 else -(off // stride))  # the first z with d >= 0
    zb = max(za, min(z1, (D - 1 - off) // stride + 1))  # one past the last z with d < D
    return za, zb, za * stride + off


def _chunks(N: int, Z: int, row_bytes: int):
    """(n0, n1, z0, z1) blocks covering N x Z with at most WORKSPACE_BYTES of stacked rows each."""
    rows = max(1, WORKSPACE_BYTES // max(1, row_bytes))
    if rows >= N * Z:
        yield 0, N, 0, Z
        return
    if rows >= Z:
        nb = rows // Z
        for n0 in range(0, N, nb):
            yield n0, min(N, n0 + nb), 0, Z
        return
    for n0 in range(N):
        for z0 in range(0, Z, rows):
            yield n0, n0 + 1, z0, min(Z, z0 + rows)


class _Conv3d:
    """The fold of one 3-d convolution spec (``_params.ConvSpec`` with nd == 3) into 2-d problems."""

    def __init__(self, spec):
        self.spec = spec
        (self.D, self.H, self.W), (self.T, _, _) = spec.size, spec.kernel
        self.Z = spec.out[0]
        self.Cg = spec.C // spec.groups

    def plane(self, rows: int):
        return self.spec.plane(N=rows, C=self.T * self.spec.C)

    def taps(self, z0, z1, t):
        s = self.spec
        return _taps(z0, z1, t, self.D, s.stride[0], s.pad_lo[0], s.dilation[0])

    def folded_weight(self, w, dtype):
        """w (K, Cg, T, R, S) -> (K, T*Cg, R, S), channel t*Cg + c."""
        K, Cg, T, R, S = w.shape
        xp = _xp(w)
        return xp.ascontiguousarray(w.transpose(0, 2, 1, 3, 4).reshape(K, T * Cg, R, S), dtype=dtype)

    def stacked_input(self, x, n0, n1, z0, z1, dtype):
        """The input slices output depths [z0, z1) of images [n0, n1) read, as (rows, groups*T*Cg, H, W)."""
        xp = _xp(x)
        s, nb, zb = self.spec, n1 - n0, z1 - z0
        buf = xp.zeros((nb, zb, s.groups, self.T, self.Cg, self.H, self.W), dtype)
        for t in range(self.T):
            za, zb_, d0 = self.taps(z0, z1, t)
            if za == zb_:
                continue
            src = x[n0:n1, :, d0:d0 + (zb_ - za - 1) * s.stride[0] + 1:s.stride[0]]  # (nb, C, nz, H, W)
            src = src.reshape(nb, s.groups, self.Cg, zb_ - za, self.H, self.W).transpose(0, 3, 1, 2, 4, 5)
            buf[:, za - z0:zb_ - z0, :, t] = src
        return buf.reshape(nb * zb, s.groups * self.T * self.Cg, self.H, self.W)

    def rows_of(self, a, n0, n1, z0, z1, dtype):
        """a (N, K, Z, P, Q) -> the rows of images [n0, n1), depths [z0, z1) as (rows, K, P, Q)."""
        xp = _xp(a)
        part = a[n0:n1, :, z0:z1].transpose(0, 2, 1, 3, 4)
        return xp.ascontiguousarray(part.reshape(((n1 - n0) * (z1 - z0),) + part.shape[2:]), dtype=dtype)


@quiet
def conv3d_fprop(be, spec, x, w, bias=None):
    """y (N, K, Z, P, Q) = conv3d of x (N, C, D, H, W) with w (K, C/groups, T, R, S), plus bias[k]."""
    f = _Conv3d(spec)
    xp, dt = _xp(x), compute_dtype(x.dtype)
    wf = f.folded_weight(w, dt)
    b = None if bias is None else xp.ascontiguousarray(bias, dtype=dt)
    N, K, Z, P, Q = spec.output_shape
    y = xp.empty((N, Z, K, P, Q), dt)
    row_bytes = f.T * spec.C * f.H * f.W * dt.itemsize
    for n0, n1, z0, z1 in _chunks(N, Z, row_bytes):
        xs = f.stacked_input(x, n0, n1, z0, z1, dt)
        out = be.conv2d_fprop(f.plane(xs.shape[0]), xs, wf, b)
        y[n0:n1, z0:z1] = out.reshape(n1 - n0, z1 - z0, K, P, Q)
    return xp.ascontiguousarray(y.transpose(0, 2, 1, 3, 4))


@quiet
def conv3d_dgrad(be, spec, gy, w, bias=None):
    """gx (N, C, D, H, W): the gradient of conv3d in its input given gy (N, K, Z, P, Q), plus bias[c] (a
    transposed convolution's forward)."""
    f = _Conv3d(spec)
    xp, dt = _xp(gy), compute_dtype(gy.dtype)
    wf = f.folded_weight(w, dt)
    N, C = spec.N, spec.C
    gx = xp.zeros((N, C, f.D, f.H, f.W), dt)
    stride = spec.stride[0]
    row_bytes = max(f.T * C * f.H * f.W, spec.K * spec.out[1] * spec.out[2]) * dt.itemsize
    for n0, n1, z0, z1 in _chunks(N, f.Z, row_bytes):
        rows = f.rows_of(gy, n0, n1, z0, z1, dt)
        g = be.conv2d_dgrad(f.plane(rows.shape[0]), rows, wf)  # (rows, groups*T*Cg, H, W)
        g = g.reshape(n1 - n0, z1 - z0, spec.groups, f.T, f.Cg, f.H, f.W)
        for t in range(f.T):
            za, zb, d0 = f.taps(z0, z1, t)
            if za == zb:
                continue
            part = g[:, za - z0:zb - z0, :, t].transpose(0, 2, 3, 1, 4, 5)  # (nb, groups, Cg, nz, H, W)
            gx[n0:n1, :, d0:d0 + (zb - za - 1) * stride + 1:stride] += part.reshape(n1 - n0, C, zb - za, f.H, f.W)
    if bias is not None:
        gx += xp.asarray(bias, dtype=dt).reshape(1, -1, 1, 1, 1)
    return gx


@quiet
def conv3d_wgrad(be, spec, x, gy):
    """gw (K, C/groups, T, R, S): the gradient of conv3d in its weight."""
    f = _Conv3d(spec)
    xp, dt = _xp(x), compute_dtype(x.dtype)
    K, Cg, T, R, S = spec.weight_shape
    gw = None
    row_bytes = (f.T * spec.C * f.H * f.W + K * spec.out[1] * spec.out[2]) * dt.itemsize
    for n0, n1, z0, z1 in _chunks(spec.N, f.Z, row_bytes):
        xs = f.stacked_input(x, n0, n1, z0, z1, dt)
        rows = f.rows_of(gy, n0, n1, z0, z1, dt)
        part = be.conv2d_wgrad(f.plane(xs.shape[0]), xs, rows)  # (K, T*Cg, R, S)
        gw = part if gw is None else gw + part
    gw = gw.reshape(K, T, Cg, R, S).transpose(0, 2, 1, 3, 4)
    return xp.ascontiguousarray(gw)


# ------------------------------------------------------------------------------------ explicit padding


def _depth_source(D: int, front: int, back: int, mode: str) -> numpy.ndarray:
    """For each position of the padded depth axis, the source depth it copies (torch.nn.functional.pad)."""
    j = numpy.arange(-front, D + back)
    if mode == "replicate":
        return numpy.clip(j, 0, D - 1)
    if mode == "circular":
        return j % D
    j = numpy.abs(j)  # reflect: mirror about the edge slices without repeating them
    return numpy.where(j >= D, 2 * (D - 1) - j, j)


@quiet
def pad3d(be, x, pads, mode):
    """x (N, C, D, H, W) padded by pads = (front, back, top, bottom, left, right) in mode reflect /
    replicate / circular: height and width by the backend's pad2d, depth by a gather of whole slices."""
    xp = _xp(x)
    N, C, D, H, W = x.shape
    front, back = pads[:2]
    if any(pads[2:]):
        x = be.pad2d(x.reshape(N, C * D, H, W), pads[2:], mode)
        x = x.reshape(N, C, D, x.shape[-2], x.shape[-1])
    if front or back:
        source = constant(xp, ("depth source", D, front, back, mode), lambda: _depth_source(D, front, back, mode))
        x = xp.take(x, source, axis=2)
    return x


@quiet
def pad3d_backward(be, gxp, pads, mode):
    """The adjoint of pad3d: every padded copy's gradient summed onto its source, in a fixed order."""
    xp = _xp(gxp)
    front, back = pads[:2]
    N, C, Dp, Hp, Wp = gxp.shape
    D = Dp - front - back
    g = gxp
    if front or back:
        src = _depth_source(D, front, back, mode)
        g = xp.array(gxp[:, :, front:front + D])
        for i in [*range(front), *range(front + D, Dp)]:  # fixed order: front slices, then back
            g[:, :, int(src[i])] += gxp[:, :, i]
    if any(pads[2:]):
        g = be.pad2d_backward(xp.ascontiguousarray(g).reshape(N, C * D, Hp, Wp), pads[2:], mode)
        g = g.reshape(N, C, D, g.shape[-2], g.shape[-1])
    return g


# ------------------------------------------------------------------------------------------ pooling


def _depth_taps(spec):
    """(t, za, zb, d0) for every depth tap of a 3-d pooling with a window touching the input."""
    D, Z = spec.size[0], spec.out[0]
    k, s, p, dil = spec.kernel[0], spec.stride[0], spec.pad[0], spec.dilation[0]
    if k <= 4 * (D + Z):
        candidates = range(k)
    else:  # a kernel far past the input: only the taps some window reads the input with (time follows sizes)
        found = set()
        for z in range(Z):
            lo = max(0, -((z * s - p) // dil))  # ceil((p - z*s) / dil): the first tap at depth >= 0
            hi = min(k, -((z * s - p - D) // dil))  # ceil((p - z*s + D) / dil): past the last below D
            found.update(range(lo, hi))
        candidates = sorted(found)
    for t in candidates:
        za, zb, d0 = _taps(0, Z, t, D, s, p, dil)
        if za < zb:
            yield t, za, zb, d0


def _flat_view(a, N, C, D, H, W):
    return a.reshape(N, C * D, H, W)


@quiet
def max_pool3d_fprop(be, spec, x):
    """(y, indices int64) of a 3-d max pooling, indices flat d*H*W + h*W + w within each (n, c) volume."""
    xp, dt = _xp(x), compute_dtype(x.dtype)  # 16-bit values compare in float32 (exact)
    N, C, (D, H, W), (Z, P, Q) = spec.N, spec.C, spec.size, spec.out
    y2, i2 = be.max_pool2d_fprop(spec.plane(C=C * D), _flat_view(to_compute(x), N, C, D, H, W))
    y2, i2 = y2.reshape(N, C, D, P, Q), i2.reshape(N, C, D, P, Q)
    y = xp.full((N, C, Z, P, Q), -numpy.inf, dtype=dt)  # stays so (and idx -1) where no tap reads the input
    idx = xp.full((N, C, Z, P, Q), -1, dtype=numpy.int64)
    stride = spec.stride[0]
    filled = numpy.zeros(Z, dtype=bool)  # output depths some tap has written (validity depends on z alone)
    for _t, za, zb, d0 in _depth_taps(spec):
        for z0, z1, first in _runs(filled, za, zb):
            a = d0 + (z0 - za) * stride  # the input depth of output depth z0
            depths = slice(a, a + (z1 - z0 - 1) * stride + 1, stride)
            v = y2[:, :, depths]
            offsets = xp.arange(a, a + (z1 - z0) * stride, stride, dtype=numpy.int64) * (H * W)
            offsets = offsets.reshape(1, 1, -1, 1, 1)  # the flat index of each depth slice's first element
            if first:  # the first tap in range takes over (its value may be -inf)
                y[:, :, z0:z1] = v
                idx[:, :, z0:z1] = i2[:, :, depths]
                idx[:, :, z0:z1] += offsets
                continue
            i = i2[:, :, depths] + offsets
            take = (v > y[:, :, z0:z1]) | (v != v)  # later ones by PyTorch's rule: larger, or NaN
            xp.copyto(y[:, :, z0:z1], v, where=take)
            xp.copyto(idx[:, :, z0:z1], i, where=take)
        filled[za:zb] = True
    return y, idx


def _runs(filled, za, zb):
    """[za, zb) split into runs (z0, z1, first): first when no tap has written those depths yet."""
    z0 = za
    while z0 < zb:
        z1 = z0 + 1
        while z1 < zb and filled[z1] == filled[z0]:
            z1 += 1
        yield z0, z1, not filled[z0]
        z0 = z1


def _sum_box_divisor(spec, xp, dtype):
    """The divisor of every 3-d average window, (Z, P, Q): divisor_override, or the product of the
    per-axis window lengths (clipped to the padded input, or to the input without count_include_pad)."""
    return constant(xp, ("box divisor", spec, numpy.dtype(dtype).str), lambda: _box_divisor(spec, dtype))


def _box_divisor(spec, dtype):
    if spec.divisor_override is not None:
        return numpy.full(spec.out, spec.divisor_override, dtype=dtype)
    lengths = []
    for size, out, k, s, p in zip(spec.size, spec.out, spec.kernel, spec.stride, spec.pad):
        start = numpy.arange(out, dtype=numpy.int64) * s - p
        end = numpy.minimum(start + k, size + p)
        if not spec.count_include_pad:
            start, end = numpy.maximum(start, 0), numpy.minimum(end, size)
        lengths.append(end - start)
    div = lengths[0][:, None, None] * lengths[1][None, :, None] * lengths[2][None, None, :]
    return div.astype(dtype)


@quiet
def avg_pool3d_fprop(be, spec, x):
    """A 3-d average pooling: 2-d window sums per depth slice, summed over the depth taps in order, divided
    by the 3-d divisor (``_sum_box_divisor``)."""
    xp, dt = _xp(x), compute_dtype(x.dtype)
    N, C, (D, H, W), (Z, P, Q) = spec.N, spec.C, spec.size, spec.out
    xs = _flat_view(x, N, C, D, H, W).astype(dt, copy=False)
    s2 = be.avg_pool2d_fprop(spec.plane(C=C * D, divisor_override=1), xs).reshape(N, C, D, P, Q)
    total = xp.zeros((N, C, Z, P, Q), dt)  # starts at +0.0, as PyTorch's sums do
    stride = spec.stride[0]
    for _t, za, zb, d0 in _depth_taps(spec):
        total[:, :, za:zb] += s2[:, :, d0:d0 + (zb - za - 1) * stride + 1:stride]
    return total / _sum_box_divisor(spec, xp, dt)


@quiet
def avg_pool3d_bprop(be, spec, gy):
    """The adjoint of avg_pool3d_fprop: divide by the divisor, spread along depth (a gather over the taps
    that read each slice, in tap order), then the 2-d window-sum adjoint of every depth slice."""
    xp, dt = _xp(gy), compute_dtype(gy.dtype)
    N, C, (D, H, W), (Z, P, Q) = spec.N, spec.C, spec.size, spec.out
    a = gy.astype(dt, copy=False) / _sum_box_divisor(spec, xp, dt)
    b = xp.zeros((N, C, D, P, Q), dt)
    stride = spec.stride[0]
    for _t, za, zb, d0 in _depth_taps(spec):
        b[:, :, d0:d0 + (zb - za - 1) * stride + 1:stride] += a[:, :, za:zb]
    gx = be.avg_pool2d_bprop(spec.plane(C=C * D, divisor_override=1), b.reshape(N, C * D, P, Q))
    return gx.reshape(N, C, D, H, W)
