"""dgrad at stride 1 as a forward convolution: gx[h] = sum_r w[r] gy[h + pad_top - r*dil], which is conv2d
of gy with each group's filters transposed (channels <-> filters) and rotated 180 degrees, padded by
dil*(R-1) - pad_top. A gather with no scatter-adds: the forward methods compute it at their full speed."""

from __future__ import annotations

import numpy

from .._params import ConvGeometry


def dgrad_geometry(g):
    """The forward geometry that computes g's dgrad, or None where the stride is not 1 or the padding
    would be negative (padding beyond the kernel's reach)."""
    top, left = g.dil_h * (g.R - 1) - g.pad_top, g.dil_w * (g.S - 1) - g.pad_left
    if g.stride_h != 1 or g.stride_w != 1 or top < 0 or left < 0:
        return None
    return ConvGeometry(N=g.N, C=g.K, H=g.P, W=g.Q, K=g.C, R=g.R, S=g.S, P=g.H, Q=g.W,
                        pad_top=top, pad_bottom=g.H - g.P - top + g.dil_h * (g.R - 1),
                        pad_left=left, pad_right=g.W - g.Q - left + g.dil_w * (g.S - 1),
                        dil_h=g.dil_h, dil_w=g.dil_w, groups=g.groups)


def flipped_filters(g, w):
    """w (K, C/groups, R, S) -> (C, K/groups, R, S), contiguous: per group, transposed and rotated."""
    G, Kg, Cg = g.groups, g.k_per_group, g.c_per_group
    wf = w.reshape(G, Kg, Cg, g.R, g.S).transpose(0, 2, 1, 3, 4)[:, :, :, ::-1, ::-1]
    return numpy.ascontiguousarray(wf).reshape(g.C, Kg, g.R, g.S)
