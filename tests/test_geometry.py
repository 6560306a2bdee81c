"""Geometry facts of gpuconv._params checked against the float64 definition references."""

from __future__ import annotations

import numpy
import pytest

import reference
from gpuconv import _params


@pytest.mark.parametrize("kw", [dict(padding=1), dict(padding=0), dict(padding=(2, 0), dilation=(2, 1)),
                                dict(padding="same"), dict(padding=(3, 4)), dict(padding="full", dilation=2)],
                         ids=["pad1", "valid", "dilated", "same", "pad_beyond_filter", "full_dilated"])
def test_dgrad_as_fprop_is_the_input_gradient(kw):
    """ConvGeometry.dgrad_as_fprop: the forward convolution of gy with the flipped, channel-swapped filter
    and pads dil*(R-1) - pad gives conv2d's input gradient (float64 definition references on both sides)."""
    rng = numpy.random.default_rng(4)
    x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((5, 3, 3, 4))
    call = _params.conv2d_call("conv2d", x, w, None, 1, kw.get("padding", 0), kw.get("dilation", 1), 1, "zeros")
    g = call.geometry
    gy = rng.standard_normal(g.output_shape)
    gx, _, _ = reference.conv2d_backward(gy, x, w, 1, (g.pad_top, g.pad_bottom, g.pad_left, g.pad_right),
                                         (g.dil_h, g.dil_w))
    f = g.dgrad_as_fprop()
    assert (f.N, f.C, f.H, f.W, f.K, f.P, f.Q) == (g.N, g.K, g.P, g.Q, g.C, g.H, g.W)
    w_flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    y = reference.conv2d(gy, w_flipped, None, 1, (f.pad_top, f.pad_bottom, f.pad_left, f.pad_right),
                         (f.dil_h, f.dil_w))
    assert y.shape == gx.shape
    numpy.testing.assert_allclose(y, gx, rtol=1e-12, atol=1e-12)
