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


@dataclass(frozen=True)
class TapLayout:
    """Where each tap of a pooling geometry sits in the padded phase buffer."""

    g: PoolGeometry
    Hp: int  # padded rows the windows reach: (P-1)*stride_h + (kh-1)*dil_h + 1
    Wp: int  # padded columns the windows reach
    Wq: int  # columns per phase: ceil(Wp / stride_w)

    @classmethod
    def of(cls, g: PoolGeometry) -> "TapLayout":
        Hp = (g.P - 1) * g.stride_h + (g.kernel_h - 1) * g.dil_h + 1
        Wp = (g.Q - 1) * g.stride_w + (g.kernel_w - 1) * g.dil_w + 1
        return cls(g, Hp, Wp, -(-Wp // g.stride_w))

    def taps(self):
        """(i, j) in row-major window order, PyTorch's scan order."""
        for i in range(self.g.kernel_h):
            for j in range(self.g.kernel_w):
                yield i, j

    def view(self, buf, i: int, j: int):
        """The (n, c, P, Q) view of tap (i, j) in a phase buffer ``buf`` of shape (s, n, c, Hp, Wq)."""
        g = self.g
        row0 = i * g.dil_h
        col = j * g.dil_w
        phase, col0 = col % g.stride_w, col // g.stride_w
        return buf[phase, :, :, row0:row0 + (g.P - 1) * g.stride_h + 1:g.stride_h, col0:col0 + g.Q]

    def empty_buffer(self, n: int, c: int, dtype):
        return numpy.empty((self.g.stride_w, n, c, self.Hp, self.Wq), dtype=dtype)

    # -- the input region of each phase ----------------------------------------------------------------

    def _rows(self):
        """(first padded row holding input, number of input rows copied)."""
        g = self.g
        return g.pad_h, max(0, min(g.H, self.Hp - g.pad_h))

    def _phase_cols(self, r: int):
        """For phase r: (first phase column holding input, number of them, first input column)."""
        g = self.g
        s = g.stride_w
        c_lo = max(0, -(-(g.pad_w - r) // s))  # first c with c*s + r - pad_w >= 0
        c_hi = min(self.Wq, (g.W - 1 + g.pad_w - r) // s + 1, -(-(self.Wp - r) // s))
        c_hi = max(c_hi, c_lo)
        return c_lo, c_hi - c_lo, c_lo * s + r - g.pad_w

    def fill(self, x, fill_value, dtype):
        """The phase buffer of input block x (n, c, H, W): the input where the windows read it, fill_value
        in the padding, cast to dtype. A copy (one strided read of x per phase), except where x itself
        already has the layout: then a read-only view of x."""
        g = self.g
        n, c = x.shape[0], x.shape[1]
        if g.stride_w == 1 and g.pad_h == g.pad_w == 0 and self.Hp <= g.H and self.Wp <= g.W and x.dtype == dtype:
            return x[None]
        buf = self.empty_buffer(n, c, dtype)
        r0, nr = self._rows()
        s = g.stride_w
        buf[:, :, :, :r0, :] = fill_value
        buf[:, :, :, r0 + nr:, :] = fill_value
        for r in range(s):
            c0, nc, w0 = self._phase_cols(r)
            body = buf[r, :, :, r0:r0 + nr]
            body[..., :c0] = fill_value
            body[..., c0 + nc:] = fill_value
            if nr and nc:
                body[..., c0:c0 + nc] = x[:, :, :nr, w0:w0 + (nc - 1) * s + 1:s]
        return buf

    def unfill(self, buf, out):
        """The adjoint of :meth:`fill` for the input region: copies each input pixel's entry of the phase
        buffer into out (n, c, H, W); input pixels no window reaches get zero."""
        g = self.g
        r0, nr = self._rows()
        s = g.stride_w
        covered = numpy.zeros(g.W, dtype=bool)
        for r in range(s):
            c0, nc, w0 = self._phase_cols(r)
            if nr and nc:
                out[:, :, :nr, w0:w0 + (nc - 1) * s + 1:s] = buf[r, :, :, r0:r0 + nr, c0:c0 + nc]
                covered[w0:w0 + (nc - 1) * s + 1:s] = True
        if nr < g.H:
            out[:, :, nr:, :] = 0
        if not covered.all():
            out[:, :, :nr, ~covered] = 0
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
