"""avg_pool2d and avg_pool2d_backward over the case table, on every backend and dtype, against the loop
reference, PyTorch (when installed) and, for CuPy, the NumPy path."""

from __future__ import annotations

import numpy
import pytest

import cases
import gpuconv
import reference
from helpers import DTYPES, absolute, assert_array, assert_close, batch4, call_unchanged, unbatch_like


@pytest.fixture
def backend(pool_backend):
    """Pooling involves no convolution algorithm: one CuPy run instead of one per algorithm."""
    return pool_backend


def _forward_reference(case, x):
    return unbatch_like(reference.avg_pool2d(batch4(x), **case.kwargs()), x)


def _backward_reference(case, gy, input_shape):
    shape4 = input_shape if len(input_shape) == 4 else (1,) + tuple(input_shape)
    gx = reference.avg_pool2d_backward(batch4(gy), shape4, **case.kwargs())
    return gx if len(input_shape) == 4 else gx[0]


def _run_forward(backend, case, x):
    return call_unchanged(backend, case.layout, gpuconv.avg_pool2d, dict(input=x), **case.kwargs())


def _run_backward(backend, case, gy, input_shape):
    return call_unchanged(backend, case.layout, gpuconv.avg_pool2d_backward, dict(grad_output=gy), input_shape,
                          **case.kwargs())




@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", cases.AVG_POOL2D)
def test_avg_pool2d_forward(backend, case, dtype, rng):
    x, _ = case.arrays(rng, dtype)
    y = _run_forward(backend, case, x)
    assert_array(backend, y, dtype, case.output_shape(), "output")
    bound = _forward_reference(case, *absolute(x))
    expected = _forward_reference(case, x)
    assert_close(backend.get(y), expected, bound, dtype, case.n_terms(), "avg_pool2d vs reference")
    if backend.is_gpu:
        y_numpy = gpuconv.avg_pool2d(x, **case.kwargs())
        assert_close(backend.get(y), y_numpy, bound, dtype, case.n_terms(), "avg_pool2d vs NumPy path", slack=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", cases.AVG_POOL2D)
def test_avg_pool2d_backward(backend, case, dtype, rng):
    x, gy = case.arrays(rng, dtype)
    gx = _run_backward(backend, case, gy, x.shape)
    assert_array(backend, gx, dtype, x.shape, "grad_input")
    bound = _backward_reference(case, *absolute(gy), x.shape)
    assert_close(backend.get(gx), _backward_reference(case, gy, x.shape), bound, dtype, case.n_terms(),
                 "grad_input vs reference")
    if backend.is_gpu:
        gx_numpy = gpuconv.avg_pool2d_backward(gy, x.shape, **case.kwargs())
        assert_close(backend.get(gx), gx_numpy, bound, dtype, case.n_terms(), "grad_input vs NumPy path", slack=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", cases.AVG_POOL2D)
def test_avg_pool2d_matches_torch(backend, case, dtype, rng):
    pytest.importorskip("torch")
    import torch_oracle

    x, gy = case.arrays(rng, dtype)
    y, gx = backend.get(_run_forward(backend, case, x)), backend.get(_run_backward(backend, case, gy, x.shape))
    bound_y = torch_oracle.avg_pool2d(*absolute(x), **case.kwargs())
    bound_gx = torch_oracle.avg_pool2d_backward(*absolute(gy), x.shape, **case.kwargs())
    assert_close(y, torch_oracle.avg_pool2d(x.astype(numpy.float64), **case.kwargs()), bound_y, dtype,
                 case.n_terms(), "avg_pool2d vs torch")
    assert_close(gx, torch_oracle.avg_pool2d_backward(gy.astype(numpy.float64), x.shape, **case.kwargs()),
                 bound_gx, dtype, case.n_terms(), "grad_input vs torch")
    if backend.is_gpu and torch_oracle.cuda_available():
        assert_close(y, torch_oracle.avg_pool2d(x, **case.kwargs(), device="cuda"), bound_y, dtype,
                     case.n_terms(), "avg_pool2d vs torch CUDA", slack=2)
        assert_close(gx, torch_oracle.avg_pool2d_backward(gy, x.shape, **case.kwargs(), device="cuda"), bound_gx,
                     dtype, case.n_terms(), "grad_input vs torch CUDA", slack=2)


@pytest.mark.parametrize("case", [p for p in cases.AVG_POOL2D if p.id in ("3x3_s2_p1", "overlapping_s1_pad")])
@pytest.mark.parametrize("dtype", (numpy.float32, numpy.float16))
def test_avg_pool2d_deterministic(backend, case, dtype, rng):
    x, gy = case.arrays(rng, dtype)
    runs = [[backend.get(_run_forward(backend, case, x)), backend.get(_run_backward(backend, case, gy, x.shape))]
            for _ in range(2)]
    for name, a, b in zip(("output", "grad_input"), *runs):
        assert numpy.array_equal(a, b, equal_nan=True), f"{name} differs between runs"
