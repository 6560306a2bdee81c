"""bfloat16: what the dtype tables (tests/test_conv2d.py and the others, which run bfloat16 against the float64
loop reference) do not show.

- Every op and gradient in bfloat16 against PyTorch's own CPU bfloat16 ops (not float64): two results each
  rounded once from a float32-accumulated sum agree within twice the tolerance.
- The tolerance is tight enough to matter: a planted backend that accumulates in bfloat16 fails it.
- The conversion is what DESIGN.md promises: a bfloat16 result is, bit for bit, the float32 path's result on
  the same (bfloat16-valued) inputs rounded once to bfloat16; indices stay int64; inputs are not modified.
"""

from __future__ import annotations

import dataclasses

import numpy
import pytest

import cases
import gpuconv
import reference
from gpuconv import _backend
from helpers import BFLOAT16, absolute, assert_close, batch4

F32 = numpy.dtype(numpy.float32)


def _f32(*arrays):
    return tuple(None if a is None else a.astype(F32) for a in arrays)


def _bf16(a):
    return None if a is None else a.astype(BFLOAT16)


# --------------------------------------------------------------------------------- against torch bfloat16


@pytest.mark.parametrize("case", cases.CONV2D)
def test_conv2d_matches_torch_bf16(case, rng):
    pytest.importorskip("torch")
    import torch_oracle

    x, w, b, gy = case.arrays(rng, BFLOAT16)
    kw = case.kwargs()
    y = gpuconv.conv2d(x, w, b, **kw)
    grads = gpuconv.conv2d_backward(gy, x, w, **kw)
    theirs = torch_oracle.conv2d(x, w, b, **kw)
    assert theirs.dtype == BFLOAT16 and y.dtype == BFLOAT16
    bound = torch_oracle.conv2d(*absolute(x, w, b), **kw)
    assert_close(y, theirs, bound, BFLOAT16, case.n_terms(), "conv2d vs torch bf16", slack=2)
    bounds = torch_oracle.conv2d_backward(*absolute(gy, x, w), **kw)
    for name, g, e, bd in zip(("grad_input", "grad_weight", "grad_bias"), grads,
                              torch_oracle.conv2d_backward(gy, x, w, **kw), bounds):
        assert g.dtype == BFLOAT16
        assert_close(g, e, bd, BFLOAT16, case.n_terms(), f"{name} vs torch bf16", slack=2)


@pytest.mark.parametrize("case", cases.CONV_TRANSPOSE2D)
def test_conv_transpose2d_matches_torch_bf16(case, rng):
    pytest.importorskip("torch")
    import torch_oracle

    x, w, b, gy = case.arrays(rng, BFLOAT16)
    kw = case.kwargs()
    y = gpuconv.conv_transpose2d(x, w, b, **kw)
    bound = torch_oracle.conv_transpose2d(*absolute(x, w, b), **kw)
    assert_close(y, torch_oracle.conv_transpose2d(x, w, b, **kw), bound, BFLOAT16, case.n_terms(),
                 "conv_transpose2d vs torch bf16", slack=2)
    grads = gpuconv.conv_transpose2d_backward(gy, x, w, **kw)
    bounds = torch_oracle.conv_transpose2d_backward(*absolute(gy, x, w), **kw)
    for name, g, e, bd in zip(("grad_input", "grad_weight", "grad_bias"), grads,
                              torch_oracle.conv_transpose2d_backward(gy, x, w, **kw), bounds):
        assert g.dtype == BFLOAT16
        assert_close(g, e, bd, BFLOAT16, case.n_terms(), f"{name} vs torch bf16", slack=2)


@pytest.mark.parametrize("case", cases.MAX_POOL2D)
def test_max_pool2d_matches_torch_bf16(case, rng):
    pytest.importorskip("torch")
    import torch_oracle

    x, gy = case.arrays(rng, BFLOAT16)
    kw = case.kwargs()
    y, idx = gpuconv.max_pool2d(x, return_indices=True, **kw)
    y_t, idx_t = torch_oracle.max_pool2d(x, **kw)
    assert y.dtype == BFLOAT16 and idx.dtype == numpy.int64
    numpy.testing.assert_array_equal(idx, idx_t)
    numpy.testing.assert_array_equal(y.astype(F32), y_t.astype(F32))
    gx = gpuconv.max_pool2d_backward(gy, idx, x.shape)
    bound = _routed(absolute(gy)[0], idx, x.shape)
    expected = torch_oracle.max_pool2d_backward(gy, x, **kw) if x.size else numpy.zeros(x.shape)
    assert gx.dtype == BFLOAT16
    assert_close(gx, expected, bound, BFLOAT16, case.n_terms(), "max_pool2d_backward vs torch bf16", slack=2)


def _routed(gy, idx, shape):
    """|grad_output| added at the indices each came from, in float64: the bound of max_pool2d's gradient."""
    out = numpy.zeros(batch4(numpy.zeros(shape)).shape)
    gy4, idx4 = batch4(gy), batch4(idx)
    for n in range(gy4.shape[0]):
        for c in range(gy4.shape[1]):
            numpy.add.at(out[n, c].reshape(-1), idx4[n, c].reshape(-1), gy4[n, c].reshape(-1))
    return out.reshape(shape)


@pytest.mark.parametrize("case", cases.AVG_POOL2D)
def test_avg_pool2d_matches_torch_bf16(case, rng):
    pytest.importorskip("torch")
    import torch_oracle

    x, gy = case.arrays(rng, BFLOAT16)
    kw = case.kwargs()
    y = gpuconv.avg_pool2d(x, **kw)
    bound = torch_oracle.avg_pool2d(*absolute(x), **kw)
    assert_close(y, torch_oracle.avg_pool2d(x, **kw), bound, BFLOAT16, case.n_terms(), "avg_pool2d vs torch bf16",
                 slack=2)
    gx = gpuconv.avg_pool2d_backward(gy, x.shape, **kw)
    bound = torch_oracle.avg_pool2d_backward(*absolute(gy), x.shape, **kw)
    assert gx.dtype == BFLOAT16
    assert_close(gx, torch_oracle.avg_pool2d_backward(gy, x.shape, **kw), bound, BFLOAT16, case.n_terms(),
                 "avg_pool2d_backward vs torch bf16", slack=2)


# ---------------------------------------------------------------------- one rounding from float32, exactly


@pytest.mark.parametrize("case", cases.CONV2D)
def test_conv2d_is_float32_rounded_once(case, rng):
    """Bit for bit: bfloat16 in, float32 arithmetic, one rounding out (zeros padding: one backend call per
    result; padding modes' grad_input takes two and is left to the tolerance tests)."""
    x, w, b, gy = case.arrays(rng, BFLOAT16)
    kw = case.kwargs()
    before = [a.copy() for a in (x, w, gy)]
    y = gpuconv.conv2d(x, w, b, **kw)
    y32 = gpuconv.conv2d(*_f32(x, w, b), **kw)
    numpy.testing.assert_array_equal(y.view(numpy.uint16), _bf16(y32).view(numpy.uint16))
    grads = gpuconv.conv2d_backward(gy, x, w, **kw)
    grads32 = gpuconv.conv2d_backward(*_f32(gy, x, w), **kw)
    for i, (g, g32) in enumerate(zip(grads, grads32)):
        if i == 0 and case.padding_mode != "zeros":
            continue
        numpy.testing.assert_array_equal(g.view(numpy.uint16), _bf16(g32).view(numpy.uint16))
    for a, a0 in zip((x, w, gy), before):
        numpy.testing.assert_array_equal(a.view(numpy.uint16), a0.view(numpy.uint16))


@pytest.mark.parametrize("case", cases.MAX_POOL2D[:4] + cases.AVG_POOL2D[:4])
def test_pooling_is_float32_rounded_once(case, rng):
    x, gy = case.arrays(rng, BFLOAT16)
    kw = case.kwargs()
    x32, gy32 = _f32(x, gy)
    if isinstance(case, cases.MaxPoolCase):
        y, idx = gpuconv.max_pool2d(x, return_indices=True, **kw)
        y32, idx32 = gpuconv.max_pool2d(x32, return_indices=True, **kw)
        assert idx.dtype == numpy.int64
        numpy.testing.assert_array_equal(idx, idx32)
        gx, gx32 = gpuconv.max_pool2d_backward(gy, idx, x.shape), gpuconv.max_pool2d_backward(gy32, idx, x.shape)
    else:
        y, y32 = gpuconv.avg_pool2d(x, **kw), gpuconv.avg_pool2d(x32, **kw)
        gx, gx32 = gpuconv.avg_pool2d_backward(gy, x.shape, **kw), gpuconv.avg_pool2d_backward(gy32, x.shape, **kw)
    for a, a32 in ((y, y32), (gx, gx32)):
        assert a.dtype == BFLOAT16
        numpy.testing.assert_array_equal(a.view(numpy.uint16), _bf16(a32).view(numpy.uint16))


def test_empty_results_are_bfloat16():
    x = numpy.ones((0, 2, 5, 5), BFLOAT16)
    w = numpy.ones((3, 2, 3, 3), BFLOAT16)
    outs = [gpuconv.conv2d(x, w), *gpuconv.conv2d_backward(numpy.ones((0, 3, 3, 3), BFLOAT16), x, w),
            gpuconv.conv_transpose2d(numpy.ones((0, 3, 3, 3), BFLOAT16), w), gpuconv.avg_pool2d(x, 2),
            gpuconv.max_pool2d(x, 2), gpuconv.avg_pool2d_backward(numpy.ones((0, 2, 2, 2), BFLOAT16), x.shape, 2),
            gpuconv.max_pool2d_backward(numpy.ones((0, 2, 2, 2), BFLOAT16), numpy.zeros((0, 2, 2, 2), numpy.int64),
                                        x.shape)]
    assert all(o.dtype == BFLOAT16 for o in outs), [o.dtype for o in outs]


def test_get_returns_the_module_itself_but_for_bfloat16():
    import gpuconv._numpy as module

    for dtype in (numpy.float16, numpy.float32, numpy.float64):
        assert _backend.get("numpy", numpy.dtype(dtype)) is module
    assert _backend.get("numpy") is module
    proxy = _backend.get("numpy", BFLOAT16)
    assert isinstance(proxy, _backend.Float32Proxy) and _backend.get("numpy", BFLOAT16) is proxy


def test_mixing_bfloat16_with_another_dtype_is_a_type_error():
    x = numpy.ones((1, 2, 5, 5), BFLOAT16)
    with pytest.raises(TypeError, match="one dtype.*input is bfloat16 and weight is float16"):
        gpuconv.conv2d(x, numpy.ones((3, 2, 3, 3), numpy.float16))
    with pytest.raises(TypeError, match="one dtype.*bias is float32"):
        gpuconv.conv2d(x, numpy.ones((3, 2, 3, 3), BFLOAT16), numpy.ones(3, numpy.float32))
    with pytest.raises(TypeError, match="float16, bfloat16, float32 or float64.*int16"):
        gpuconv.max_pool2d(x.view(numpy.int16), 2)


# --------------------------------------------------------------- the tolerance catches bf16 accumulation


class _Bf16Accumulating(_backend.Float32Proxy):
    """A planted defect: conv2d_fprop sums over input channels with a bfloat16 running sum (each channel's
    taps in float32, the running total rounded to bfloat16 after every channel), as a kernel that kept its
    accumulator in bfloat16 would."""

    def conv2d_fprop(self, g, x, w, bias=None):
        fprop = super().__getattr__("conv2d_fprop")
        total = None
        for c in range(g.C):
            gc = dataclasses.replace(g, C=1)
            part = fprop(gc, numpy.ascontiguousarray(x[:, c:c + 1]), numpy.ascontiguousarray(w[:, c:c + 1]))
            total = part if total is None else (total.astype(F32) + part.astype(F32)).astype(BFLOAT16)
        if bias is not None:
            total = (total.astype(F32) + bias.astype(F32)[None, :, None, None]).astype(BFLOAT16)
        return total


@pytest.mark.parametrize("accumulator", ["float32", "bfloat16"])
def test_tolerance_rejects_bfloat16_accumulation(monkeypatch, accumulator, rng):
    """A long sum of positive terms (256 channels of a 1x1 conv): float32 accumulation passes the bfloat16
    tolerance; a bfloat16 running sum (the planted proxy) drifts by far more and fails it."""
    if accumulator == "bfloat16":
        import gpuconv._numpy as module

        monkeypatch.setitem(_backend._proxies, "numpy", _Bf16Accumulating(module))
    C = 256
    x = rng.uniform(0.5, 1.0, (2, C, 4, 4)).astype(BFLOAT16)
    w = rng.uniform(0.5, 1.0, (3, C, 1, 1)).astype(BFLOAT16)
    y = gpuconv.conv2d(x, w)
    expected = reference.conv2d(x, w)
    check = lambda: assert_close(y, expected, expected, BFLOAT16, C, "conv2d")  # noqa: E731 (all terms > 0)
    if accumulator == "float32":
        check()
    else:
        with pytest.raises(AssertionError, match="elements off"):
            check()


def test_planted_defect_runs_through_the_proxy(monkeypatch):
    """The plant above really replaces the bfloat16 path (else its failure would prove nothing about it)."""
    import gpuconv._numpy as module

    plant = _Bf16Accumulating(module)
    monkeypatch.setitem(_backend._proxies, "numpy", plant)
    assert _backend.get("numpy", BFLOAT16) is plant
