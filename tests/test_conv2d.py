"""conv2d and conv2d_backward over the case table, on every backend and dtype, against the loop reference,
PyTorch (when installed) and, for CuPy, the NumPy path. Each call also checks that its inputs are left as
they were and that outputs have the input's array kind and dtype."""

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
        call = _params.conv2d_call("conv2d", x, w, None, case.stride, case.padding, case.dilation, case.groups,
                                   case.padding_mode)
        backend.skip_unsupported_conv(call.geometry, dtype, passes)


def _forward_reference(case, x, w, b):
    return unbatch_like(reference.conv2d_any_mode(batch4(x), w, b, *case.reference_args()), x)


def _backward_reference(case, gy, x, w):
    gx, gw, gb = reference.conv2d_backward_any_mode(batch4(gy), batch4(x), w, *case.reference_args())
    return unbatch_like(gx, x), gw, gb


def _run_forward(backend, case, x, w, b):
    return call_unchanged(backend, case.layout, gpuconv.conv2d, dict(input=x, weight=w, bias=b), **case.kwargs())


def _run_backward(backend, case, gy, x, w, output_mask=(True, True, True)):
    return call_unchanged(backend, case.layout, gpuconv.conv2d_backward, dict(grad_output=gy, input=x, weight=w),
                          **case.kwargs(), output_mask=output_mask)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", cases.CONV2D)
def test_conv2d_forward(backend, case, dtype, rng):
    x, w, b, _ = case.arrays(rng, dtype)
    _skip_unsupported(backend, case, x, w, dtype, ["fprop"])
    y = _run_forward(backend, case, x, w, b)
    assert_array(backend, y, dtype, case.output_shape(), "output")
    expected, bound = _forward_reference(case, x, w, b), _forward_reference(case, *absolute(x, w, b))
    assert_close(backend.get(y), expected, bound, dtype, case.n_terms(), "conv2d vs reference")
    if backend.is_gpu:
        y_numpy = gpuconv.conv2d(x, w, b, **case.kwargs())
        assert_close(backend.get(y), y_numpy, bound, dtype, case.n_terms(), "conv2d vs NumPy path", slack=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", cases.CONV2D)
def test_conv2d_backward(backend, case, dtype, rng):
    x, w, _, gy = case.arrays(rng, dtype)
    _skip_unsupported(backend, case, x, w, dtype, ["dgrad", "wgrad"])
    grads = _run_backward(backend, case, gy, x, w)
    for name, g, like in zip(GRAD_NAMES, grads, (x, w, w[:, 0, 0, 0])):
        assert_array(backend, g, dtype, like.shape, name)
    expected = _backward_reference(case, gy, x, w)
    bounds = _backward_reference(case, *absolute(gy, x, w))
    for name, g, e, bound in zip(GRAD_NAMES, grads, expected, bounds):
        assert_close(backend.get(g), e, bound, dtype, case.n_terms(), f"{name} vs reference")
    if backend.is_gpu:
        numpy_grads = gpuconv.conv2d_backward(gy, x, w, **case.kwargs())
        for name, g, e, bound in zip(GRAD_NAMES, grads, numpy_grads, bounds):
            assert_close(backend.get(g), e, bound, dtype, case.n_terms(), f"{name} vs NumPy path", slack=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", cases.CONV2D)
def test_conv2d_matches_torch(backend, case, dtype, rng):
    """Forward and every gradient against torch.nn.functional in float64 on the same (dtype-rounded) data;
    on a GPU also against torch's CUDA ops in dtype."""
    pytest.importorskip("torch")
    import torch_oracle

    x, w, b, gy = case.arrays(rng, dtype)
    _skip_unsupported(backend, case, x, w, dtype, ["fprop", "dgrad", "wgrad"])
    y = backend.get(_run_forward(backend, case, x, w, b))
    grads = [backend.get(g) for g in _run_backward(backend, case, gy, x, w)]
    x64, w64, b64, gy64 = (None if a is None else a.astype(numpy.float64) for a in (x, w, b, gy))
    kw = case.kwargs()
    bound = torch_oracle.conv2d(*absolute(x, w, b), **kw)
    assert_close(y, torch_oracle.conv2d(x64, w64, b64, **kw), bound, dtype, case.n_terms(), "conv2d vs torch")
    bounds = torch_oracle.conv2d_backward(*absolute(gy, x, w), **kw)
    expected = torch_oracle.conv2d_backward(gy64, x64, w64, **kw)
    for name, g, e, bd in zip(GRAD_NAMES, grads, expected, bounds):
        assert_close(g, e, bd, dtype, case.n_terms(), f"{name} vs torch")
    if backend.is_gpu and torch_oracle.cuda_available():
        y_cuda = torch_oracle.conv2d(x, w, b, **kw, device="cuda")
        assert_close(y, y_cuda, bound, dtype, case.n_terms(), "conv2d vs torch CUDA", slack=2)
        for name, g, e, bd in zip(GRAD_NAMES, grads, torch_oracle.conv2d_backward(gy, x, w, **kw, device="cuda"),
                                  bounds):
            assert_close(g, e, bd, dtype, case.n_terms(), f"{name} vs torch CUDA", slack=2)


MASK_CASES = [p for p in cases.CONV2D if p.id in ("basic", "groups2", "reflect", "unbatched", "empty_batch")]


@pytest.mark.parametrize("case", MASK_CASES)
@pytest.mark.parametrize("mask", list(itertools.product((False, True), repeat=3)), ids=str)
def test_conv2d_backward_output_mask(backend, case, mask, rng):
    """Gradients the mask turns off are None; the others equal the full call's."""
    x, w, _, gy = case.arrays(rng, numpy.float64)
    _skip_unsupported(backend, case, x, w, numpy.float64, ["dgrad", "wgrad"])
    full = _run_backward(backend, case, gy, x, w)
    masked = _run_backward(backend, case, gy, x, w, output_mask=mask)
    assert len(masked) == 3
    for name, on, g, g_full in zip(GRAD_NAMES, mask, masked, full):
        if not on:
            assert g is None, f"{name} should be None when output_mask turns it off"
        else:
            numpy.testing.assert_allclose(backend.get(g), backend.get(g_full), rtol=1e-13, atol=1e-13,
                                          err_msg=name)


DETERMINISM_CASES = [p for p in cases.CONV2D if p.id in ("basic", "stride2", "groups3_stride2", "depthwise",
                                                          "dilation2_pad2", "circular", "wider_channels")]


@pytest.mark.parametrize("dtype", (numpy.float32, numpy.float16))
@pytest.mark.parametrize("case", DETERMINISM_CASES)
def test_conv2d_deterministic(backend, case, dtype, rng):
    """The same call twice gives bitwise identical results, backward included (no atomics)."""
    x, w, b, gy = case.arrays(rng, dtype)
    _skip_unsupported(backend, case, x, w, dtype, ["fprop", "dgrad", "wgrad"])
    first = [_run_forward(backend, case, x, w, b), *_run_backward(backend, case, gy, x, w)]
    second = [_run_forward(backend, case, x, w, b), *_run_backward(backend, case, gy, x, w)]
    for name, a, b_ in zip(("output",) + GRAD_NAMES, first, second):
        assert numpy.array_equal(backend.get(a), backend.get(b_), equal_nan=True), f"{name} differs between runs"


@pytest.mark.parametrize("dtype", (numpy.float32, numpy.float16))
@pytest.mark.parametrize("groups", (1, 4), ids=("dense", "depthwise"))
def test_conv2d_backward_ignores_inputs_no_window_reads(backend, dtype, groups, rng):
    """3x3/2 without padding on 10x8: no window reads x's row 9 or column 7. NaN / Inf there stay out of
    grad_weight (as in PyTorch): kernels that compute past the last output must add nothing there."""
    x = rng.standard_normal((2, 4, 10, 8)).astype(dtype)
    w = rng.standard_normal((4, 4 // groups, 3, 3)).astype(dtype)
    gy = rng.standard_normal((2, 4, 4, 3)).astype(dtype)
    x[..., :, 7] = numpy.nan
    x[..., 9, :] = numpy.inf
    clean = numpy.where(numpy.isfinite(x), x, 0)
    call = _params.conv2d_call("conv2d", x, w, None, 2, 0, 1, groups, "zeros")
    if backend.algo in ("implicit_gemm", "depthwise"):
        backend.skip_unsupported_conv(call.geometry, dtype, ["wgrad"])
    gw = backend.get(gpuconv.conv2d_backward(backend.put(gy), backend.put(x), backend.put(w), stride=2,
                                             groups=groups, output_mask=(False, True, False))[1])
    args = (2, (0, 0, 0, 0), 1, groups)
    _, expected, _ = reference.conv2d_backward(gy.astype(numpy.float64), clean.astype(numpy.float64),
                                               w.astype(numpy.float64), *args)
    _, bound, _ = reference.conv2d_backward(*absolute(gy, clean, w), *args)
    assert numpy.isfinite(gw).all(), "a value no window reads reached grad_weight"
    assert_close(gw, expected, bound, dtype, 2 * 4 * 3, "grad_weight vs reference")
