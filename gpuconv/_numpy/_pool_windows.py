"""Pooling windows as whole-array views: the padded, column-phase layout both pooling ops loop over.

A pooling output (p, q) reads input rows ``p*stride_h - pad_h + i*dil_h`` and columns
``q*stride_w - pad_w + j*dil_w`` for taps (i, j). The ops loop over the kh*kw taps and, per tap, run one
whole-array NumPy operation on an (n, c, P, Q) view. Two details keep those operations on NumPy's fast
(SIMD, contiguous inner loop) path:

* the input is copied once into a padded buffer, so every tap's view covers all P x Q outputs (no partial
  views at the borders, no masks); the padding holds a fill value (-inf for max, 0 for average);
* a column stride s > 1 would make every view strided in its innermost axis, which NumPy's inner loops
  handle several times slower. The padded buffer is therefore stored as s column phases: phase r holds
  padded columns r, r + s, r + 2s, ..., so a tap's view is contiguous along Q.

The buffer has shape (s, n, c, Hp, Wq): Hp padded rows, Wq columns per phase.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy

from .._params import PoolGeometry


# Bytes of compute-dtype input per block of (n, c) planes: the tap loops run block by block, so that a
# block's buffers stay in the CPU's L2/L3 cache through all the passes over its taps (2 MiB measured best
# on a 1 MiB-L2 EPYC, within 10% from 1 to 4 MiB).
BLOCK_BYTES = 1 << 21


def compute_dtype(dtype) -> numpy.dtype:
    """float16 computes in float32; float32 and float64 compute in themselves."""
    return numpy.dtype(numpy.float32) if dtype == numpy.float16 else numpy.dtype(dtype)


def _useful_taps(k: int, d: int, s: int, pad: int, size: int, out: int) -> tuple:
    """The taps i < k (ascending) that read an input position for at least one output along one axis:
    0 <= i*d - pad + p*s < size for some p < out. The others read padding for every output: they add 0 to a
    sum and -inf to a maximum, so the ops skip them (and their buffer rows), which keeps time and memory
    independent of a kernel size, dilation or padding far larger than the input. Never empty: where no tap
    reaches the input (possible with dilation), tap 0 stays, reading only padding."""
    if k <= 4096:
        i = numpy.arange(k, dtype=numpy.int64)
        a = i * d - pad  # first position of tap i (output 0)
        p0 = numpy.maximum(0, -(a // s))  # first output whose position is >= 0: ceil(-a / s)
        useful = (p0 < out) & (a + p0 * s <= size - 1)
        taps = tuple(int(t) for t in numpy.flatnonzero(useful))
    else:  # a huge kernel: per output the taps inside the input form a short run; out is bounded by size
        found = set()
        for p in range(out):
            lo = max(0, -((p * s - pad) // d))  # ceil((pad - p*s) / d)
            hi = min(k, -((p * s - pad - size) // d))  # ceil((pad - p*s + size) / d)
            found.update(range(lo, hi))
        taps = tuple(sorted(found))
    return taps or (0,)


@dataclass(frozen=True)
class TapLayout:
    """Where each useful tap of a pooling geometry sits in the padded phase buffer.

    The buffer starts at padded row ``row0`` and column ``col0`` (the first useful tap's offsets), so that
    rows and columns no useful tap reads are never stored; ``pad_h`` / ``pad_w`` are the input's offsets in
    the buffer (negative where the buffer starts inside the input). A stride along an axis with a single
    output is irrelevant (no second window), so it counts as 1: the buffer does not grow with it."""

    g: PoolGeometry
    rows: tuple  # useful taps i along the height, ascending
    cols: tuple  # useful taps j along the width, ascending
    row0: int
    col0: int
    pad_h: int
    pad_w: int
    stride_h: int
    stride_w: int
    Hp: int  # buffer rows the windows reach
    Wp: int  # buffer columns the windows reach
    Wq: int  # columns per phase: ceil(Wp / stride_w)

    @classmethod
    def of(cls, g: PoolGeometry) -> "TapLayout":
        sh = g.stride_h if g.P > 1 else 1
        sw = g.stride_w if g.Q > 1 else 1
        rows = _useful_taps(g.kernel_h, g.dil_h, sh, g.pad_h, g.H, g.P)
        cols = _useful_taps(g.kernel_w, g.dil_w, sw, g.pad_w, g.W, g.Q)
        row0, col0 = rows[0] * g.dil_h, cols[0] * g.dil_w
        Hp = (g.P - 1) * sh + rows[-1] * g.dil_h - row0 + 1
        Wp = (g.Q - 1) * sw + cols[-1] * g.dil_w - col0 + 1
        return cls(g, rows, cols, row0, col0, g.pad_h - row0, g.pad_w - col0, sh, sw, Hp, Wp, -(-Wp // sw))

    def taps(self):
        """(i, j) in row-major window order, PyTorch's scan order (the useful ones)."""
        for i in self.rows:
            for j in self.cols:
                yield i, j

    def view(self, buf, i: int, j: int):
        """The (n, c, P, Q) view of tap (i, j) in a phase buffer ``buf`` of shape (s, n, c, Hp, Wq)."""
        g = self.g
        row0 = i * g.dil_h - self.row0
        col = j * g.dil_w - self.col0
        phase, col0 = col % self.stride_w, col // self.stride_w
        return buf[phase, :, :, row0:row0 + (g.P - 1) * self.stride_h + 1:self.stride_h, col0:col0 + g.Q]

    def empty_buffer(self, n: int, c: int, dtype):
        return numpy.empty((self.stride_w, n, c, self.Hp, self.Wq), dtype=dtype)

    # -- the input region of each phase ----------------------------------------------------------------

    def _rows(self):
        """(first buffer row holding input, number of input rows copied, first input row copied)."""
        h0 = max(0, -self.pad_h)
        r0 = max(0, self.pad_h)
        return r0, max(0, min(self.g.H - h0, self.Hp - r0)), h0

    def _phase_cols(self, r: int):
        """For phase r: (first phase column holding input, number of them, first input column)."""
        g = self.g
        s, pad = self.stride_w, self.pad_w
        c_lo = max(0, -(-(pad - r) // s))  # first c with c*s + r - pad >= 0
        c_hi = min(self.Wq, (g.W - 1 + pad - r) // s + 1, -(-(self.Wp - r) // s))
        c_hi = max(c_hi, c_lo)
        return c_lo, c_hi - c_lo, c_lo * s + r - pad

    def _in_place(self, x, dtype) -> bool:
        g = self.g
        return (self.stride_w == 1 and self.pad_h == self.pad_w == 0 and self.Hp <= g.H and self.Wp <= g.W
                and x.dtype == dtype)

    def fill(self, x, fill_value, dtype):
        """The phase buffer of input block x (n, c, H, W): the input where the windows read it, fill_value
        in the padding, cast to dtype. A copy (one strided read of x per phase), except where x itself
        already has the layout: then a read-only view of x."""
        n, c = x.shape[0], x.shape[1]
        if self._in_place(x, dtype):
            return x[None]
        buf = self.empty_buffer(n, c, dtype)
        r0, nr, h0 = self._rows()
        s = self.stride_w
        buf[:, :, :, :r0, :] = fill_value
        buf[:, :, :, r0 + nr:, :] = fill_value
        for r in range(s):
            c0, nc, w0 = self._phase_cols(r)
            body = buf[r, :, :, r0:r0 + nr]
            body[..., :c0] = fill_value
            body[..., c0 + nc:] = fill_value
            if nr and nc:
                body[..., c0:c0 + nc] = x[:, :, h0:h0 + nr, w0:w0 + (nc - 1) * s + 1:s]
        return buf

    def unfill(self, buf, out):
        """The adjoint of :meth:`fill` for the input region: copies each input pixel's entry of the phase
        buffer into out (n, c, H, W); input pixels no window reaches get zero."""
        g = self.g
        r0, nr, h0 = self._rows()
        s = self.stride_w
        covered = numpy.zeros(g.W, dtype=bool)
        for r in range(s):
            c0, nc, w0 = self._phase_cols(r)
            if nr and nc:
                out[:, :, h0:h0 + nr, w0:w0 + (nc - 1) * s + 1:s] = buf[r, :, :, r0:r0 + nr, c0:c0 + nc]
                covered[w0:w0 + (nc - 1) * s + 1:s] = True
        out[:, :, :h0, :] = 0
        out[:, :, h0 + nr:, :] = 0
        if not covered.all():
            out[:, :, h0:h0 + nr, ~covered] = 0
        return out


def axis_window_counts(size: int, out: int, k: int, s: int, pad: int):
    """Per output position along one axis (dilation 1, average pooling): (cells of the window inside input
    plus padding, cells inside the input). As PyTorch's avg_pool2d, a ceil_mode window is clipped at the end
    of the padding, so cells past it count in neither."""
    start = numpy.arange(out, dtype=numpy.int64) * s - pad
    end = numpy.minimum(start + k, size + pad)
    with_pad = end - start
    inside = numpy.minimum(end, size) - numpy.maximum(start, 0)
    return with_pad, numpy.maximum(inside, 0)


def plane_blocks(N: int, C: int, plane_elems: int, budget_elems: int):
    """(n-slice, c-slice) blocks that tile N x C planes, each about budget_elems elements or one plane, so
    that a tap loop's buffers stay in cache."""
    per_block = max(1, budget_elems // max(1, plane_elems))
    if per_block >= C:
        nb = max(1, per_block // C)
        for n0 in range(0, N, nb):
            yield slice(n0, min(N, n0 + nb)), slice(0, C)
    else:
        for n0 in range(N):
            for c0 in range(0, C, per_block):
                yield slice(n0, n0 + 1), slice(c0, min(C, c0 + per_block))
