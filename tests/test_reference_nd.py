"""The oracle's oracle for the 1-d, 3-d and adaptive ops: the loop references of reference_nd.py agree with
PyTorch on every table row (float64), and, with two spatial dimensions, with the 2-d references of
reference.py. A failure here means the reference or the table is wrong, not gpuconv."""

from __future__ import annotations

import numpy
import pytest

import cases
import cases_nd
import reference
import reference_nd as ref
from cases_nd import batch, unbatch
from helpers import batch4

F64 = numpy.float64


def _close(a, b, what):
    numpy.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=what)


# ---------------------------------------------------------------- two spatial dims: the 2-d references

@pytest.mark.parametrize("case", [p for p in cases.CONV2D if p.id in ("basic", "stride_asym_pad_pair", "groups2",
                                                                      "same_dilated_odd_total", "reflect",
                                                                      "circular_stride_dilation_groups")])
def test_conv_reference_matches_2d_reference(case, rng):
    x, w, b, gy = (batch4(a) if a is not None and a.ndim == 3 else a for a in case.arrays(rng, F64))
    pads2 = case.pads()
    pads = ((pads2[0], pads2[1]), (pads2[2], pads2[3]))
    args = (case.stride, pads, case.dilation, case.groups, case.padding_mode)
    _close(ref.conv_any_mode(x, w, b, *args), reference.conv2d_any_mode(x, w, b, *case.reference_args()), "fwd")
    for a, e in zip(ref.conv_backward_any_mode(gy, x, w, *args),
                    reference.conv2d_backward_any_mode(gy, x, w, *case.reference_args())):
        _close(a, e, "backward")


@pytest.mark.parametrize("case", [p for p in cases.MAX_POOL2D if p.id in ("resnet_3x3_s2_p1", "dilation_asym_pad",
                                                                          "ceil_mode_partial")])
def test_pool_references_match_2d_references(case, rng):
    x, _ = case.arrays(rng, F64)
    x = batch4(x)
    y, idx = ref.max_pool(x, **case.kwargs())
    y2, idx2 = reference.max_pool2d(x, **case.kwargs())
    numpy.testing.assert_array_equal(y, y2)
    numpy.testing.assert_array_equal(idx, idx2)
    kw = dict(kernel_size=case.kernel_size, stride=case.stride, padding=case.padding, ceil_mode=case.ceil_mode,
              count_include_pad=False)
    _close(ref.avg_pool(x, **kw), reference.avg_pool2d(x, **kw), "avg")


# ------------------------------------------------------------------------------------------ torch

torch_oracle_nd = pytest.importorskip("torch_oracle_nd", reason="needs torch")


@pytest.mark.parametrize("case", cases_nd.CONV1D + cases_nd.CONV3D)
def test_conv_reference(case, rng):
    nd = case.nd
    x, w, b, gy = case.arrays(rng, F64)
    y = unbatch(ref.conv_any_mode(batch(x, nd), w, b, *case.reference_args()), nd, x.ndim)
    _close(y, torch_oracle_nd.conv(nd, x, w, b, **case.kwargs()), "forward")
    grads = ref.conv_backward_any_mode(batch(gy, nd), batch(x, nd), w, *case.reference_args())
    expected = torch_oracle_nd.conv_backward(nd, gy, x, w, **case.kwargs())
    for name, ours, theirs in zip(("input", "weight", "bias"), grads, expected):
        _close(ours.reshape(theirs.shape), theirs, f"grad_{name}")


@pytest.mark.parametrize("case", cases_nd.CONV_TRANSPOSE1D + cases_nd.CONV_TRANSPOSE3D)
def test_conv_transpose_reference(case, rng):
    nd = case.nd
    x, w, b, gy = case.arrays(rng, F64)
    y = unbatch(ref.conv_transpose(batch(x, nd), w, b, **case.kwargs()), nd, x.ndim)
    _close(y, torch_oracle_nd.conv_transpose(nd, x, w, b, **case.kwargs()), "forward")
    grads = ref.conv_transpose_backward(batch(gy, nd), batch(x, nd), w, **case.kwargs())
    expected = torch_oracle_nd.conv_transpose_backward(nd, gy, x, w, **case.kwargs())
    for name, ours, theirs in zip(("input", "weight", "bias"), grads, expected):
        _close(ours.reshape(theirs.shape), theirs, f"grad_{name}")


@pytest.mark.parametrize("case", cases_nd.MAX_POOL1D + cases_nd.MAX_POOL3D)
def test_max_pool_reference(case, rng):
    nd = case.nd
    x, gy = case.arrays(rng, F64)
    y, idx = ref.max_pool(batch(x, nd), **case.kwargs())
    ty, tidx = torch_oracle_nd.max_pool(nd, x, **case.kwargs())
    _close(unbatch(y, nd, x.ndim), ty, "values")
    numpy.testing.assert_array_equal(unbatch(idx, nd, x.ndim), tidx)
    gx = ref.max_pool_backward(batch(gy, nd), idx, batch(x, nd).shape)
    _close(unbatch(gx, nd, x.ndim), torch_oracle_nd.max_pool_backward(nd, gy, x, **case.kwargs()), "grad_input")


@pytest.mark.parametrize("case", cases_nd.AVG_POOL1D + cases_nd.AVG_POOL3D)
def test_avg_pool_reference(case, rng):
    nd = case.nd
    x, gy = case.arrays(rng, F64)
    y = ref.avg_pool(batch(x, nd), **case.reference_kwargs())
    _close(unbatch(y, nd, x.ndim), torch_oracle_nd.avg_pool(nd, x, **case.kwargs()), "forward")
    gx = ref.avg_pool_backward(batch(gy, nd), batch(x, nd).shape, **case.reference_kwargs())
    _close(unbatch(gx, nd, x.ndim), torch_oracle_nd.avg_pool_backward(nd, gy, x.shape, **case.kwargs()),
           "grad_input")


@pytest.mark.parametrize("case", cases_nd.ADAPTIVE)
def test_adaptive_references(case, rng):
    nd = case.nd
    x, gy = case.max_arrays(rng, F64)
    y, idx = ref.adaptive_max_pool(batch(x, nd), case.output_size)
    ty, tidx = torch_oracle_nd.adaptive_max_pool(nd, x, case.output_size)
    _close(unbatch(y, nd, x.ndim), ty, "max values")
    numpy.testing.assert_array_equal(unbatch(idx, nd, x.ndim), tidx)
    if 0 not in case.out():  # torch's adaptive max backward refuses an empty grad_output; its forward takes it
        gx = ref.max_pool_backward(batch(gy, nd), idx, batch(x, nd).shape)
        _close(unbatch(gx, nd, x.ndim), torch_oracle_nd.adaptive_max_pool_backward(nd, gy, x, case.output_size),
               "max grad_input")
    x, gy = case.avg_arrays(rng, F64)
    y = ref.adaptive_avg_pool(batch(x, nd), case.output_size)
    _close(unbatch(y, nd, x.ndim), torch_oracle_nd.adaptive_avg_pool(nd, x, case.output_size), "avg")
    if 0 not in case.out():
        gx = ref.adaptive_avg_pool_backward(batch(gy, nd), batch(x, nd).shape)
        _close(unbatch(gx, nd, x.ndim), torch_oracle_nd.adaptive_avg_pool_backward(nd, gy, x, case.output_size),
               "avg grad_input")


def test_max_pool3d_reference_nan_and_inf():
    """NaN wins (the last NaN in (d, h, w) order gives the index); an all -inf window points at its first
    position inside the input."""
    x = numpy.arange(2 * 4 * 4 * 4, dtype=F64).reshape(1, 2, 4, 4, 4)
    x[0, 0, 0, 0, 1] = x[0, 0, 1, 0, 0] = x[0, 0, 3, 3, 3] = numpy.nan
    x[0, 1, :2, :2, :2] = -numpy.inf
    kw = dict(kernel_size=3, stride=2, padding=1)
    y, idx = ref.max_pool(x, **kw)
    ty, tidx = torch_oracle_nd.max_pool(3, x, **kw)
    numpy.testing.assert_array_equal(y, ty)
    numpy.testing.assert_array_equal(idx, tidx)
    y, idx = ref.adaptive_max_pool(x, (3, 2, 3))
    ty, tidx = torch_oracle_nd.adaptive_max_pool(3, x, (3, 2, 3))
    numpy.testing.assert_array_equal(y, ty)
    numpy.testing.assert_array_equal(idx, tidx)
