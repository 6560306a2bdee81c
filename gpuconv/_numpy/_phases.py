"""dgrad (a transposed convolution's forward) at any stride, as one stride-1 forward convolution per
stride phase of the input gradient: no scatter-adds, every phase a gather that the fprop methods compute
at their full speed.

Input row h = a + stride_h*i (phase a) gets gy row p through tap r exactly when p*stride_h + r*dil_h -
pad_top = h, i.e. when (a + pad_top - r*dil_h) is a multiple of stride_h, and then p = i + o_r with
o_r = (a + pad_top - r*dil_h) // stride_h. The taps of phase a are therefore every (stride_h / gcd)-th
tap, their offsets o_r evenly spaced by d = dil_h / gcd(stride_h, dil_h), decreasing in r. So

    gx[:, :, a::stride_h] (rows i) = sum_j w_a[j]^T gy[i + o_min + j*d]          (taps j in increasing o)

is a stride-1 correlation of gy with that sub-kernel (flipped, channels <-> filters per group), dilation
d, top padding -o_min (or, when o_min > 0, gy with its first o_min rows dropped). Columns alike. At stride
1 there is one phase, the whole gx: the classic flipped-kernel dgrad.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy

from .._params import ConvGeometry


@dataclass(frozen=True)
class _Axis:
    """One phase along one axis: output positions a, a + stride, ... (count of them), its taps in the
    order the sub-convolution uses them, and the sub-convolution's dilation, top padding and the number of
    leading gy positions dropped."""

    start: int
    count: int
    taps: tuple
    dil: int
    pad: int
    skip: int


def _axis_phases(size, out_size, k, stride, dil, pad_lo):
    """The phases of one axis: size = input extent (H), out_size = gy extent (P), k taps."""
    phases = []
    step_d = dil // math.gcd(stride, dil)
    for a in range(min(stride, size)):
        count = -(-(size - a) // stride)
        taps = [r for r in range(k) if (a + pad_lo - r * dil) % stride == 0]
        taps.reverse()  # increasing offset o_r
        if not taps:
            phases.append(_Axis(a, count, (), step_d, 0, 0))
            continue
        o_min = (a + pad_lo - taps[0] * dil) // stride
        skip, pad = (o_min, 0) if o_min > 0 else (0, -o_min)
        if skip >= out_size:  # every tap reads past gy's end: no contribution
            taps = []
        phases.append(_Axis(a, count, tuple(taps), step_d, pad, skip))
    return phases


@dataclass(frozen=True)
class Phase:
    """One output phase of a dgrad: gx[:, :, rows.start::stride_h, cols.start::stride_w] is the forward
    convolution ``geometry`` of gy[:, :, rows.skip:, cols.skip:] with ``filters(w)``; geometry is None
    where no tap reaches this phase (its gradient is zero)."""

    rows: _Axis
    cols: _Axis
    geometry: ConvGeometry | None


def dgrad_phases(g) -> list:
    """The stride_h * stride_w phases of g's dgrad (fewer where the input is smaller than the stride)."""
    out = []
    for ra in _axis_phases(g.H, g.P, g.R, g.stride_h, g.dil_h, g.pad_top):
        for ca in _axis_phases(g.W, g.Q, g.S, g.stride_w, g.dil_w, g.pad_left):
            sub = None
            if ra.taps and ca.taps:
                H, W = g.P - ra.skip, g.Q - ca.skip
                R, S = len(ra.taps), len(ca.taps)
                # pad_bottom / pad_right only make the output size come out right (they may be negative)
                sub = ConvGeometry(N=g.N, C=g.K, H=H, W=W, K=g.C, R=R, S=S, P=ra.count, Q=ca.count,
                                   pad_top=ra.pad, pad_bottom=ra.count + ra.dil * (R - 1) - H - ra.pad,
                                   pad_left=ca.pad, pad_right=ca.count + ca.dil * (S - 1) - W - ca.pad,
                                   dil_h=ra.dil, dil_w=ca.dil, groups=g.groups)
            out.append(Phase(ra, ca, sub))
    return out


def filters(g, phase, w):
    """The phase's sub-kernel: w (K, C/groups, R, S) -> (C, K/groups, R', S'), contiguous, per group
    transposed, taps in the phase's order."""
    G, Kg, Cg = g.groups, g.k_per_group, g.c_per_group
    w5 = w.reshape(G, Kg, Cg, g.R, g.S)
    # the taps are evenly spaced, so a phase's sub-kernel is a (possibly reversed) strided slice
    sub = w5[:, :, :, _as_slice(phase.rows.taps)][..., _as_slice(phase.cols.taps)]
    return numpy.ascontiguousarray(sub.transpose(0, 2, 1, 3, 4)).reshape(g.C, Kg, len(phase.rows.taps), len(phase.cols.taps))


def _as_slice(taps):
    step = taps[1] - taps[0] if len(taps) > 1 else 1
    stop = taps[-1] + step
    return slice(taps[0], stop if stop >= 0 else None, step)
