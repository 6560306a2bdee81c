"""conv_transpose2d and conv_transpose2d_backward over the case table, on every backend and dtype, against
the loop reference, PyTorch (when installed) and, for CuPy, the NumPy path."""

from __future__ import annotations

import itertools

import numpy
import pytest

import cases
import gpuconv
import reference
from gpuconv import _params
from helpers import DTYPES, absolute, assert_array, assert_close, batch4, call_unchanged, unbatch_like

GRAD_NAMES = ("grad_input", "grad_weight", "grad_bias")




def _skip_unsupported(backend, case, x, w, dtype, passes):
    if backend.algo in ("implicit_gemm", "depthwise"):
        call = _params.conv_transpose2d_call("conv_transpose2d", x, w, None, case.stride, case.padding,
                                             case.output_padding, case.groups, case.dilation)
        backend.skip_unsupported_conv(call.geometry, dtype, passes)


def _forward_reference(case, x, w, b):
    return unbatch_like(reference.conv_transpose2d(batch4(x), w, b, **case.kwargs()), x)


def _backward_reference(case, gy, x, w):
    gx, gw, gb = reference.conv_transpose2d_backward(batch4(gy), batch4(x), w, **case.kwargs())
    return unbatch_like(gx, x), gw, gb


def _run_forward(backend, case, x, w, b):
    return call_unchanged(backend, case.layout, gpuconv.conv_transpose2d, dict(input=x, weight=w, bias=b),
                          **case.kwargs())


def _run_backward(backend, case, gy, x, w, output_mask=(True, True, True)):
    return call_unchanged(backend, case.layout, gpuconv.conv_transpose2d_backward,
                          dict(grad_output=gy, input=x, weight=w), **case.kwargs(), output_mask=output_mask)


# A transposed convolution's forward is the dgrad of the convolution it transposes; its grad_input is that
# convolution's fprop and its grad_weight that convolution's wgrad.
FORWARD_PASSES, BACKWARD_PASSES = ["dgrad"], ["fprop", "wgrad"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", cases.CONV_TRANSPOSE2D)
def test_conv_transpose2d_forward(backend, case, dtype, rng):
    x, w, b, _ = case.arrays(rng, dtype)
    _skip_unsupported(backend, case, x, w, dtype, FORWARD_PASSES)
    y = _run_forward(backend, case, x, w, b)
    assert_array(backend, y, dtype, case.output_shape(), "output")
    expected, bound = _forward_reference(case, x, w, b), _forward_reference(case, *absolute(x, w, b))
    assert_close(backend.get(y), expected, bound, dtype, case.n_terms(), "conv_transpose2d vs reference")
    if backend.is_gpu:
        y_numpy = gpuconv.conv_transpose2d(x, w, b, **case.kwargs())
        assert_close(backend.get(y), y_numpy, bound, dtype, case.n_terms(), "conv_transpose2d vs NumPy path",
                     slack=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", cases.CONV_TRANSPOSE2D)
def test_conv_transpose2d_backward(backend, case, dtype, rng):
    x, w, _, gy = case.arrays(rng, dtype)
    _skip_unsupported(backend, case, x, w, dtype, BACKWARD_PASSES)
    grads = _run_backward(backend, case, gy, x, w)
    bias_shape = (case.w[1] * case.groups,)
    for name, g, shape in zip(GRAD_NAMES, grads, (x.shape, w.shape, bias_shape)):
        assert_array(backend, g, dtype, shape, name)
    expected = _backward_reference(case, gy, x, w)
    bounds = _backward_reference(case, *absolute(gy, x, w))
    for name, g, e, bound in zip(GRAD_NAMES, grads, expected, bounds):
        assert_close(backend.get(g), e, bound, dtype, case.n_terms(), f"{name} vs reference")
    if backend.is_gpu:
        numpy_grads = gpuconv.conv_transpose2d_backward(gy, x, w, **case.kwargs())
        for name, g, e, bound in zip(GRAD_NAMES, grads, numpy_grads, bounds):
            assert_close(backend.get(g), e, bound, dtype, case.n_terms(), f"{name} vs NumPy path", slack=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", cases.CONV_TRANSPOSE2D)
def test_conv_transpose2d_matches_torch(backend, case, dtype, rng):
    pytest.importorskip("torch")
    import torch_oracle

    x, w, b, gy = case.arrays(rng, dtype)
    _skip_unsupported(backend, case, x, w, dtype, FORWARD_PASSES + BACKWARD_PASSES)
    y = backend.get(_run_forward(backend, case, x, w, b))
    grads = [backend.get(g) for g in _run_backward(backend, case, gy, x, w)]
    x64, w64, b64, gy64 = (None if a is None else a.astype(numpy.float64) for a in (x, w, b, gy))
    kw = case.kwargs()
    bound = torch_oracle.conv_transpose2d(*absolute(x, w, b), **kw)
    assert_close(y, torch_oracle.conv_transpose2d(x64, w64, b64, **kw), bound, dtype, case.n_terms(),
                 "conv_transpose2d vs torch")
    bounds = torch_oracle.conv_transpose2d_backward(*absolute(gy, x, w), **kw)
    for name, g, e, bd in zip(GRAD_NAMES, grads, torch_oracle.conv_transpose2d_backward(gy64, x64, w64, **kw),
                              bounds):
        assert_close(g, e, bd, dtype, case.n_terms(), f"{name} vs torch")
    if backend.is_gpu and torch_oracle.cuda_available():
        y_cuda = torch_oracle.conv_transpose2d(x, w, b, **kw, device="cuda")
        assert_close(y, y_cuda, bound, dtype, case.n_terms(), "conv_transpose2d vs torch CUDA", slack=2)
        cuda_grads = torch_oracle.conv_transpose2d_backward(gy, x, w, **kw, device="cuda")
        for name, g, e, bd in zip(GRAD_NAMES, grads, cuda_grads, bounds):
            assert_close(g, e, bd, dtype, case.n_terms(), f"{name} vs torch CUDA", slack=2)


MASK_CASES = [p for p in cases.CONV_TRANSPOSE2D if p.id in ("basic", "groups2", "unbatched", "empty_batch")]


@pytest.mark.parametrize("case", MASK_CASES)
@pytest.mark.parametrize("mask", list(itertools.product((False, True), repeat=3)), ids=str)
def test_conv_transpose2d_backward_output_mask(backend, case, mask, rng):
    x, w, _, gy = case.arrays(rng, numpy.float64)
    _skip_unsupported(backend, case, x, w, numpy.float64, BACKWARD_PASSES)
    full = _run_backward(backend, case, gy, x, w)
    masked = _run_backward(backend, case, gy, x, w, output_mask=mask)
    assert len(masked) == 3
    for name, on, g, g_full in zip(GRAD_NAMES, mask, masked, full):
        if not on:
            assert g is None, f"{name} should be None when output_mask turns it off"
        else:
            numpy.testing.assert_allclose(backend.get(g), backend.get(g_full), rtol=1e-13, atol=1e-13,
                                          err_msg=name)


DETERMINISM_CASES = [p for p in cases.CONV_TRANSPOSE2D
                     if p.id in ("dcgan_4x4_s2_p1", "unet_2x2_s2", "groups2", "output_padding_gt_padding")]


@pytest.mark.parametrize("dtype", (numpy.float32, numpy.float16))
@pytest.mark.parametrize("case", DETERMINISM_CASES)
def test_conv_transpose2d_deterministic(backend, case, dtype, rng):
    x, w, b, gy = case.arrays(rng, dtype)
    _skip_unsupported(backend, case, x, w, dtype, FORWARD_PASSES + BACKWARD_PASSES)
    first = [_run_forward(backend, case, x, w, b), *_run_backward(backend, case, gy, x, w)]
    second = [_run_forward(backend, case, x, w, b), *_run_backward(backend, case, gy, x, w)]
    for name, a, b_ in zip(("output",) + GRAD_NAMES, first, second):
        assert numpy.array_equal(backend.get(a), backend.get(b_), equal_nan=True), f"{name} differs between runs"
