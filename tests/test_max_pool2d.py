"""max_pool2d and max_pool2d_backward over the case table, on every backend and dtype, against the loop
reference, PyTorch (when installed) and, for CuPy, the NumPy path; plus NaN and -inf inputs.

Inputs are a shuffled range (no ties), so values and indices must match exactly in every dtype."""

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


def _reference(case, x):
    y, idx = reference.max_pool2d(batch4(x), **case.kwargs())
    return unbatch_like(y, x), unbatch_like(idx, x)


def _backward_reference(gy, idx, x):
    """grad_input routed by ``idx`` onto an input shaped like x (3-D or 4-D)."""
    return unbatch_like(reference.max_pool2d_backward(batch4(gy), batch4(idx), batch4(x).shape), x)


def _run_forward(backend, case, x, return_indices=True):
    return call_unchanged(backend, case.layout, gpuconv.max_pool2d, dict(input=x), **case.kwargs(),
                          return_indices=return_indices)


def _run_backward(backend, case, gy, idx, input_shape):
    return call_unchanged(backend, case.layout, gpuconv.max_pool2d_backward, dict(grad_output=gy, indices=idx),
                          input_shape)




@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", cases.MAX_POOL2D)
def test_max_pool2d_forward(backend, case, dtype, rng):
    x, _ = case.arrays(rng, dtype)
    y, idx = _run_forward(backend, case, x)
    assert_array(backend, y, dtype, case.output_shape(), "output")
    assert_array(backend, idx, numpy.int64, case.output_shape(), "indices")
    expected_y, expected_idx = _reference(case, x)
    numpy.testing.assert_array_equal(backend.get(idx), expected_idx, err_msg="indices vs reference")
    numpy.testing.assert_array_equal(backend.get(y), expected_y.astype(dtype), err_msg="values vs reference")
    y_only = _run_forward(backend, case, x, return_indices=False)
    assert_array(backend, y_only, dtype, case.output_shape(), "output without indices")
    numpy.testing.assert_array_equal(backend.get(y_only), backend.get(y))
    if backend.is_gpu:
        y_numpy, idx_numpy = gpuconv.max_pool2d(x, **case.kwargs(), return_indices=True)
        numpy.testing.assert_array_equal(backend.get(y), y_numpy, err_msg="values vs NumPy path")
        numpy.testing.assert_array_equal(backend.get(idx), idx_numpy, err_msg="indices vs NumPy path")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", cases.MAX_POOL2D)
def test_max_pool2d_backward(backend, case, dtype, rng):
    """The gradient routed by the reference's indices; windows overlap in some rows, so sums are checked."""
    x, gy = case.arrays(rng, dtype)
    _, idx = _reference(case, x)
    gx = _run_backward(backend, case, gy, idx, x.shape)
    assert_array(backend, gx, dtype, x.shape, "grad_input")
    expected, bound = _backward_reference(gy, idx, x), _backward_reference(*absolute(gy), idx, x)
    assert_close(backend.get(gx), expected, bound, dtype, case.n_terms(), "grad_input vs reference")
    if backend.is_gpu:
        gx_numpy = gpuconv.max_pool2d_backward(gy, idx, x.shape)
        assert_close(backend.get(gx), gx_numpy, bound, dtype, case.n_terms(), "grad_input vs NumPy path",
                     slack=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", cases.MAX_POOL2D)
def test_max_pool2d_matches_torch(backend, case, dtype, rng):
    pytest.importorskip("torch")
    import torch_oracle

    x, gy = case.arrays(rng, dtype)
    y, idx = _run_forward(backend, case, x)
    gx = _run_backward(backend, case, gy, backend.get(idx), x.shape)
    bound = _backward_reference(*absolute(gy), backend.get(idx), x)
    devices = ["cpu"] + (["cuda"] if backend.is_gpu and torch_oracle.cuda_available() else [])
    for device in devices:
        # float64 on the CPU (the tie-free inputs are exact in every dtype), the dtype itself on CUDA
        xt, gyt = (x, gy) if device == "cuda" else (x.astype(numpy.float64), gy.astype(numpy.float64))
        ty, tidx = torch_oracle.max_pool2d(xt, **case.kwargs(), device=device)
        numpy.testing.assert_array_equal(backend.get(y), ty.astype(dtype), err_msg=f"values vs torch {device}")
        numpy.testing.assert_array_equal(backend.get(idx), tidx, err_msg=f"indices vs torch {device}")
        tgx = torch_oracle.max_pool2d_backward(gyt, xt, **case.kwargs(), device=device)
        assert_close(backend.get(gx), tgx, bound, dtype, case.n_terms(), f"grad_input vs torch {device}",
                     slack=2)


NAN_CASES = [p for p in cases.MAX_POOL2D
             if p.id in ("2x2", "resnet_3x3_s2_p1", "overlapping_s1", "dilation_asym_pad", "ceil_mode_partial")]


def _with_nans_and_infs(rng, x):
    """x with NaNs at random places (some windows get several, some all NaN) and a block of -inf."""
    x = x.copy()
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, size=max(2, flat.size // 5), replace=False)] = numpy.nan
    x[..., :2, -3:] = numpy.nan  # neighbours: windows with more than one NaN
    x[..., -2:, :2] = -numpy.inf
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", NAN_CASES)
def test_max_pool2d_nan_and_inf(backend, case, dtype, rng):
    """A NaN in a window wins, the last NaN in row-major window order giving the index (as PyTorch); a
    window of -inf returns -inf at its first pixel inside the input. The backward follows the indices."""
    x, gy = case.arrays(rng, dtype)
    x = _with_nans_and_infs(rng, x)
    y, idx = _run_forward(backend, case, x)
    expected_y, expected_idx = _reference(case, x)
    numpy.testing.assert_array_equal(backend.get(y), expected_y.astype(dtype), err_msg="values vs reference")
    numpy.testing.assert_array_equal(backend.get(idx), expected_idx, err_msg="indices vs reference")
    gx = _run_backward(backend, case, gy, backend.get(idx), x.shape)
    expected, bound = _backward_reference(gy, expected_idx, x), _backward_reference(*absolute(gy), expected_idx, x)
    assert_close(backend.get(gx), expected, bound, dtype, case.n_terms(), "grad_input")
    try:
        import torch_oracle
    except ImportError:
        return
    ty, tidx = torch_oracle.max_pool2d(x.astype(numpy.float64), **case.kwargs())
    numpy.testing.assert_array_equal(backend.get(y), ty.astype(dtype), err_msg="values vs torch")
    numpy.testing.assert_array_equal(backend.get(idx), tidx, err_msg="indices vs torch")


@pytest.mark.parametrize("case", [p for p in cases.MAX_POOL2D if p.id in ("resnet_3x3_s2_p1", "overlapping_s1")])
@pytest.mark.parametrize("dtype", (numpy.float32, numpy.float16))
def test_max_pool2d_deterministic(backend, case, dtype, rng):
    x, gy = case.arrays(rng, dtype)
    runs = []
    for _ in range(2):
        y, idx = _run_forward(backend, case, x)
        gx = _run_backward(backend, case, gy, backend.get(idx), x.shape)
        runs.append([backend.get(y), backend.get(idx), backend.get(gx)])
    for name, a, b in zip(("output", "indices", "grad_input"), *runs):
        assert numpy.array_equal(a, b, equal_nan=True), f"{name} differs between runs"
