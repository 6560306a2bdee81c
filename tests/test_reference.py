"""The oracle's oracle: the loop references of reference.py agree with PyTorch on every table row.

If one of these fails the reference (or the table) is wrong, not gpuconv; the gpuconv tests trust the
reference when torch is absent.
"""

from __future__ import annotations

import numpy
import pytest

import cases
import reference
from helpers import batch4, unbatch_like

pytest.importorskip("torch")
import torch_oracle  # noqa: E402  (after the skip: it imports torch)

F64 = numpy.float64


def _close(a, b, what):
    numpy.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=what)


@pytest.mark.parametrize("case", cases.CONV2D)
def test_conv2d_reference(case, rng):
    x, w, b, gy = case.arrays(rng, F64)
    args = case.reference_args()
    y = unbatch_like(reference.conv2d_any_mode(batch4(x), w, b, *args), x)
    _close(y, torch_oracle.conv2d(x, w, b, **case.kwargs()), "forward")
    grads = reference.conv2d_backward_any_mode(batch4(gy), batch4(x), w, *args)
    expected = torch_oracle.conv2d_backward(gy, x, w, **case.kwargs())
    for name, ours, theirs in zip(("input", "weight", "bias"), grads, expected):
        _close(ours.reshape(theirs.shape), theirs, f"grad_{name}")


@pytest.mark.parametrize("case", cases.CONV_TRANSPOSE2D)
def test_conv_transpose2d_reference(case, rng):
    x, w, b, gy = case.arrays(rng, F64)
    y = unbatch_like(reference.conv_transpose2d(batch4(x), w, b, **case.kwargs()), x)
    _close(y, torch_oracle.conv_transpose2d(x, w, b, **case.kwargs()), "forward")
    grads = reference.conv_transpose2d_backward(batch4(gy), batch4(x), w, **case.kwargs())
    expected = torch_oracle.conv_transpose2d_backward(gy, x, w, **case.kwargs())
    for name, ours, theirs in zip(("input", "weight", "bias"), grads, expected):
        _close(ours.reshape(theirs.shape), theirs, f"grad_{name}")


@pytest.mark.parametrize("case", cases.MAX_POOL2D)
def test_max_pool2d_reference(case, rng):
    x, gy = case.arrays(rng, F64)
    y, idx = reference.max_pool2d(batch4(x), **case.kwargs())
    ty, tidx = torch_oracle.max_pool2d(x, **case.kwargs())
    _close(unbatch_like(y, x), ty, "values")
    numpy.testing.assert_array_equal(unbatch_like(idx, x), tidx)
    gx = reference.max_pool2d_backward(batch4(gy), idx, batch4(x).shape)
    _close(unbatch_like(gx, x), torch_oracle.max_pool2d_backward(gy, x, **case.kwargs()), "grad_input")


@pytest.mark.parametrize("case", cases.AVG_POOL2D)
def test_avg_pool2d_reference(case, rng):
    x, gy = case.arrays(rng, F64)
    y = reference.avg_pool2d(batch4(x), **case.kwargs())
    _close(unbatch_like(y, x), torch_oracle.avg_pool2d(x, **case.kwargs()), "forward")
    gx = reference.avg_pool2d_backward(batch4(gy), batch4(x).shape, **case.kwargs())
    _close(unbatch_like(gx, x), torch_oracle.avg_pool2d_backward(gy, x.shape, **case.kwargs()), "grad_input")


def test_max_pool2d_reference_nan_and_inf():
    """NaN wins (the last NaN in window order gives the index); an all -inf window points at its first
    pixel inside the input."""
    x = numpy.arange(2 * 6 * 6, dtype=F64).reshape(1, 2, 6, 6)
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = numpy.nan
    x[0, 0, 4, 4] = numpy.nan
    x[0, 1, :3, :3] = -numpy.inf
    kw = dict(kernel_size=3, stride=2, padding=1)
    y, idx = reference.max_pool2d(x, **kw)
    ty, tidx = torch_oracle.max_pool2d(x, **kw)
    numpy.testing.assert_array_equal(y, ty)
    numpy.testing.assert_array_equal(idx, tidx)
