"""adaptive_avg_pool{1,2,3}d and adaptive_max_pool{1,2,3}d with their backward functions over the case table
(output sizes that divide the input, that don't, larger than it, 1, None entries, 0), on every backend and
dtype, against the loop reference (PyTorch's windows [floor(i*L/O), ceil((i+1)*L/O)) written out), PyTorch
(when installed) and, for CuPy, the NumPy path; NaN and -inf for the max; determinism.

The table's rows reach every route of the implementation: regular pooling (O divides L), the global
reduction (O = 1 everywhere) and the gathers of uneven windows."""

from __future__ import annotations

import numpy
import pytest

import cases_nd
import gpuconv
import reference_nd as ref
from cases_nd import batch, batched_shape, call_unchanged, unbatch
from helpers import DTYPES, absolute, assert_array, assert_close


@pytest.fixture
def backend(pool_backend):
    """Pooling involves no convolution algorithm: one CuPy run instead of one per algorithm."""
    return pool_backend


ADAPTIVE = cases_nd.ADAPTIVE


def _op(name, nd):
    return getattr(gpuconv, name.format(nd=nd))


def _avg_reference(case, x):
    nd = case.nd
    return unbatch(ref.adaptive_avg_pool(batch(x, nd), case.output_size), nd, x.ndim)


def _avg_backward_reference(case, gy, input_shape):
    nd = case.nd
    gx = ref.adaptive_avg_pool_backward(batch(gy, nd), batched_shape(input_shape, nd))
    return unbatch(gx, nd, len(input_shape))


def _max_reference(case, x):
    nd = case.nd
    y, idx = ref.adaptive_max_pool(batch(x, nd), case.output_size)
    return unbatch(y, nd, x.ndim), unbatch(idx, nd, x.ndim)


def _route(case, gy, idx, input_shape):
    nd = case.nd
    gx = ref.max_pool_backward(batch(gy, nd), batch(idx, nd), batched_shape(input_shape, nd))
    return unbatch(gx, nd, len(input_shape))


def _run_avg(backend, case, x):
    return call_unchanged(backend, case.layout, _op("adaptive_avg_pool{nd}d", case.nd), dict(input=x),
                          case.output_size)


def _run_avg_backward(backend, case, gy, input_shape):
    return call_unchanged(backend, case.layout, _op("adaptive_avg_pool{nd}d_backward", case.nd),
                          dict(grad_output=gy), input_shape)


def _run_max(backend, case, x, return_indices=True):
    return call_unchanged(backend, case.layout, _op("adaptive_max_pool{nd}d", case.nd), dict(input=x),
                          case.output_size, return_indices=return_indices)


def _run_max_backward(backend, case, gy, idx, input_shape):
    return call_unchanged(backend, case.layout, _op("adaptive_max_pool{nd}d_backward", case.nd),
                          dict(grad_output=gy, indices=idx), input_shape)


# ---------------------------------------------------------------------------------------------- average


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ADAPTIVE)
def test_adaptive_avg_forward(backend, case, dtype, rng):
    x, _ = case.avg_arrays(rng, dtype)
    y = _run_avg(backend, case, x)
    assert_array(backend, y, dtype, case.output_shape(), "output")
    bound = _avg_reference(case, *absolute(x))
    assert_close(backend.get(y), _avg_reference(case, x), bound, dtype, case.n_terms(), "vs reference")
    if backend.is_gpu:
        y_numpy = _op("adaptive_avg_pool{nd}d", case.nd)(x, case.output_size)
        assert_close(backend.get(y), y_numpy, bound, dtype, case.n_terms(), "vs NumPy path", slack=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ADAPTIVE)
def test_adaptive_avg_backward(backend, case, dtype, rng):
    x, gy = case.avg_arrays(rng, dtype)
    gx = _run_avg_backward(backend, case, gy, x.shape)
    assert_array(backend, gx, dtype, x.shape, "grad_input")
    bound = _avg_backward_reference(case, *absolute(gy), x.shape)
    assert_close(backend.get(gx), _avg_backward_reference(case, gy, x.shape), bound, dtype, case.n_terms(),
                 "grad_input vs reference")
    if backend.is_gpu:
        gx_numpy = _op("adaptive_avg_pool{nd}d_backward", case.nd)(gy, x.shape)
        assert_close(backend.get(gx), gx_numpy, bound, dtype, case.n_terms(), "grad_input vs NumPy path", slack=2)


# -------------------------------------------------------------------------------------------------- max


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ADAPTIVE)
def test_adaptive_max_forward(backend, case, dtype, rng):
    x, _ = case.max_arrays(rng, dtype)
    y, idx = _run_max(backend, case, x)
    assert_array(backend, y, dtype, case.output_shape(), "output")
    assert_array(backend, idx, numpy.int64, case.output_shape(), "indices")
    expected_y, expected_idx = _max_reference(case, x)
    numpy.testing.assert_array_equal(backend.get(idx), expected_idx, err_msg="indices vs reference")
    numpy.testing.assert_array_equal(backend.get(y), expected_y.astype(dtype), err_msg="values vs reference")
    y_only = _run_max(backend, case, x, return_indices=False)
    assert_array(backend, y_only, dtype, case.output_shape(), "output without indices")
    numpy.testing.assert_array_equal(backend.get(y_only), backend.get(y))
    if backend.is_gpu:
        y_numpy, idx_numpy = _op("adaptive_max_pool{nd}d", case.nd)(x, case.output_size, return_indices=True)
        numpy.testing.assert_array_equal(backend.get(y), y_numpy, err_msg="values vs NumPy path")
        numpy.testing.assert_array_equal(backend.get(idx), idx_numpy, err_msg="indices vs NumPy path")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ADAPTIVE)
def test_adaptive_max_backward(backend, case, dtype, rng):
    """The gradient routed by the reference's indices (windows larger than the input overlap: sums)."""
    x, gy = case.max_arrays(rng, dtype)
    _, idx = _max_reference(case, x)
    gx = _run_max_backward(backend, case, gy, idx, x.shape)
    assert_array(backend, gx, dtype, x.shape, "grad_input")
    expected, bound = _route(case, gy, idx, x.shape), _route(case, *absolute(gy), idx, x.shape)
    assert_close(backend.get(gx), expected, bound, dtype, case.n_terms(), "grad_input vs reference")
    if backend.is_gpu:
        gx_numpy = _op("adaptive_max_pool{nd}d_backward", case.nd)(gy, idx, x.shape)
        assert_close(backend.get(gx), gx_numpy, bound, dtype, case.n_terms(), "grad_input vs NumPy path", slack=2)


# ---------------------------------------------------------------------------------------------- torch


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ADAPTIVE)
def test_adaptive_matches_torch(backend, case, dtype, rng):
    """Average and max, forward, indices and grad_input, against torch in float64 on the dtype-rounded data
    (torch's backward refuses an empty output: those rows compare the forward only)."""
    torch_oracle_nd = pytest.importorskip("torch_oracle_nd", reason="needs torch")
    nd, out, n = case.nd, case.output_size, case.n_terms()
    with_backward = 0 not in case.out()
    x, gy = case.avg_arrays(rng, dtype)
    x64, gy64 = x.astype(numpy.float64), gy.astype(numpy.float64)
    y = backend.get(_run_avg(backend, case, x))
    assert_close(y, torch_oracle_nd.adaptive_avg_pool(nd, x64, out), torch_oracle_nd.adaptive_avg_pool(
        nd, *absolute(x), out), dtype, n, "adaptive_avg vs torch")
    if with_backward:
        gx = backend.get(_run_avg_backward(backend, case, gy, x.shape))
        assert_close(gx, torch_oracle_nd.adaptive_avg_pool_backward(nd, gy64, x64, out),
                     torch_oracle_nd.adaptive_avg_pool_backward(nd, *absolute(gy), x64, out), dtype, n,
                     "adaptive_avg grad_input vs torch")
    x, gy = case.max_arrays(rng, dtype)
    x64, gy64 = x.astype(numpy.float64), gy.astype(numpy.float64)
    y, idx = (backend.get(a) for a in _run_max(backend, case, x))
    ty, tidx = torch_oracle_nd.adaptive_max_pool(nd, x64, out)
    numpy.testing.assert_array_equal(y, ty.astype(dtype), err_msg="adaptive_max values vs torch")
    numpy.testing.assert_array_equal(idx, tidx, err_msg="adaptive_max indices vs torch")
    if with_backward:
        gx = backend.get(_run_max_backward(backend, case, gy, idx, x.shape))
        assert_close(gx, torch_oracle_nd.adaptive_max_pool_backward(nd, gy64, x64, out),
                     _route(case, *absolute(gy), idx, x.shape), dtype, n, "adaptive_max grad_input vs torch")
    if backend.is_gpu and torch_oracle_nd.cuda_available():
        xa, _ = case.avg_arrays(numpy.random.default_rng(0), dtype)
        ya = backend.get(_run_avg(backend, case, xa))
        assert_close(ya, torch_oracle_nd.adaptive_avg_pool(nd, xa, out, device="cuda"),
                     torch_oracle_nd.adaptive_avg_pool(nd, *absolute(xa), out), dtype, n,
                     "adaptive_avg vs torch CUDA", slack=2)
        ty, tidx = torch_oracle_nd.adaptive_max_pool(nd, x, out, device="cuda")
        numpy.testing.assert_array_equal(y, ty, err_msg="adaptive_max values vs torch CUDA")
        numpy.testing.assert_array_equal(idx, tidx, err_msg="adaptive_max indices vs torch CUDA")


# ------------------------------------------------------------------------------------------ NaN and -inf

NAN_CASES = [p for p in ADAPTIVE if p.id in (
    "1d_divides", "1d_not_dividing", "1d_larger_than_input", "1d_global", "2d_divides", "2d_not_dividing",
    "2d_larger_than_input", "2d_global_resnet_head", "2d_none_h", "2d_unbatched", "3d_divides", "3d_not_dividing",
    "3d_larger_than_input", "3d_global", "3d_mixed")]


def _with_nans_and_infs(rng, x, nd):
    """x with NaNs at random places (several in some windows, some windows all NaN), a corner of
    neighbouring NaNs, and a corner of -inf (windows holding nothing else return -inf)."""
    x = x.copy()
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, size=max(2, flat.size // 6), replace=False)] = numpy.nan
    x[(Ellipsis,) + (slice(0, 2),) * nd] = numpy.nan
    x[(Ellipsis,) + (slice(-2, None),) * nd] = -numpy.inf
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", NAN_CASES)
def test_adaptive_max_nan_and_inf(backend, case, dtype, rng):
    """A NaN in a window wins, the last NaN in row-major window order giving the index; a window of -inf
    returns -inf at its first position; the backward follows the indices. Against the reference and torch."""
    nd = case.nd
    x, gy = case.max_arrays(rng, dtype)
    x = _with_nans_and_infs(rng, x, nd)
    y, idx = _run_max(backend, case, x)
    expected_y, expected_idx = _max_reference(case, x)
    numpy.testing.assert_array_equal(backend.get(y), expected_y.astype(dtype), err_msg="values vs reference")
    numpy.testing.assert_array_equal(backend.get(idx), expected_idx, err_msg="indices vs reference")
    gx = _run_max_backward(backend, case, gy, backend.get(idx), x.shape)
    expected, bound = _route(case, gy, expected_idx, x.shape), _route(case, *absolute(gy), expected_idx, x.shape)
    assert_close(backend.get(gx), expected, bound, dtype, case.n_terms(), "grad_input")
    try:
        import torch_oracle_nd
    except ImportError:
        return
    ty, tidx = torch_oracle_nd.adaptive_max_pool(nd, x.astype(numpy.float64), case.output_size)
    numpy.testing.assert_array_equal(backend.get(y), ty.astype(dtype), err_msg="values vs torch")
    numpy.testing.assert_array_equal(backend.get(idx), tidx, err_msg="indices vs torch")


@pytest.mark.parametrize("output_size", (1, 2, 3), ids=("global", "regular", "uneven"))
def test_adaptive_max2d_nan_placement(backend, output_size):
    """Hand-placed NaNs in a 6x6 plane pooled to 1, 2 or 3 (global, regular and uneven routes; 6 to 3 is
    regular too, so also 7x7): in window (0, 0) NaNs at (0, 2) and (1, 0): row-major order makes (1, 0) the
    last, though it lies in an earlier column; a NaN first in one row and a larger value later must still
    give the NaN."""
    for H in (6, 7):
        x = (numpy.arange(H * H, dtype=numpy.float64).reshape(1, 1, H, H) - 20) * 0.125
        x[0, 0, 0, 2] = numpy.nan
        x[0, 0, 1, 0] = numpy.nan
        y, idx = gpuconv.adaptive_max_pool2d(backend.put(x), output_size, return_indices=True)
        expected_y, expected_idx = ref.adaptive_max_pool(x, output_size)
        numpy.testing.assert_array_equal(backend.get(y), expected_y)
        numpy.testing.assert_array_equal(backend.get(idx), expected_idx)
        assert backend.get(idx)[0, 0, 0, 0] == H  # (1, 0)


@pytest.mark.parametrize("nd", (1, 2, 3))
def test_adaptive_max_all_minus_inf_windows(backend, nd):
    """Windows holding only -inf return -inf at their first position (PyTorch's scan starts from -inf and
    keeps its first position), on the uneven route (5 -> 3) and the global one."""
    size = (5,) * nd
    x = numpy.full((1, 2) + size, -numpy.inf)
    x[0, 1, (0,) * nd] = 1.0  # channel 1: one finite value, at the very first position
    for out in (3, 1):
        y, idx = _op("adaptive_max_pool{nd}d", nd)(backend.put(x), out, return_indices=True)
        expected_y, expected_idx = ref.adaptive_max_pool(x, out)
        numpy.testing.assert_array_equal(backend.get(y), expected_y)
        numpy.testing.assert_array_equal(backend.get(idx), expected_idx)


# ---------------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("case", [p for p in ADAPTIVE if p.id in (
    "1d_not_dividing", "2d_larger_than_input", "2d_global_resnet_head", "3d_not_dividing", "3d_divides")])
@pytest.mark.parametrize("dtype", (numpy.float32, numpy.float16))
def test_adaptive_deterministic(backend, case, dtype, rng):
    x, gy = case.max_arrays(rng, dtype)
    runs = []
    for _ in range(2):
        y, idx = _run_max(backend, case, x)
        runs.append([backend.get(a) for a in (
            y, idx, _run_max_backward(backend, case, gy, backend.get(idx), x.shape), _run_avg(backend, case, x),
            _run_avg_backward(backend, case, gy, x.shape))])
    for name, a, b in zip(("max", "indices", "max grad_input", "avg", "avg grad_input"), *runs):
        assert numpy.array_equal(a, b, equal_nan=True), f"{name} differs between runs"


@pytest.mark.parametrize("case", [p for p in ADAPTIVE if p.id in (
    "1d_not_dividing", "1d_global", "2d_divides", "2d_not_dividing", "2d_larger_than_input", "2d_global_tuple",
    "3d_divides", "3d_not_dividing", "3d_global", "3d_mixed")])
def test_adaptive_max_ties_first_maximum_wins(backend, case, rng):
    """Ties everywhere (values in {0, 1, 2}, like ReLU outputs): the first maximum in row-major window order
    gives the index on every route, as the reference and PyTorch say (the separable gathers pick per axis;
    the first row holding the maximum, then its first column, is the row-major first)."""
    x = rng.integers(0, 3, size=case.x).astype(numpy.float32)
    y, idx = _run_max(backend, case, x)
    expected_y, expected_idx = _max_reference(case, x)
    numpy.testing.assert_array_equal(backend.get(y), expected_y)
    numpy.testing.assert_array_equal(backend.get(idx), expected_idx)
    try:
        import torch_oracle_nd
    except ImportError:
        return
    numpy.testing.assert_array_equal(backend.get(idx), torch_oracle_nd.adaptive_max_pool(
        case.nd, x, case.output_size)[1])


@pytest.mark.parametrize("output_size", (1, 2, 3), ids=("global", "regular", "uneven"))
@pytest.mark.parametrize("nd", (1, 2, 3))
def test_adaptive_avg_float16_accumulates_in_float32(backend, nd, output_size):
    """Averages of values near float16's largest (65504) are representable, their sums are not: a float16
    accumulator overflows to inf; the contract's float32 accumulation gives the average. Backward likewise
    (gradients that large divided by the window size)."""
    x = numpy.full((1, 2) + (6 if output_size != 3 else 7,) * nd, 60000.0, dtype=numpy.float16)
    y = backend.get(_op("adaptive_avg_pool{nd}d", nd)(backend.put(x), output_size))
    numpy.testing.assert_array_equal(y, numpy.full(y.shape, 60000.0, dtype=numpy.float16))
    gy = numpy.full(y.shape, 60000.0, dtype=numpy.float16)
    gx = backend.get(_op("adaptive_avg_pool{nd}d_backward", nd)(backend.put(gy), x.shape))
    assert numpy.isfinite(gx).all()
    expected = ref.adaptive_avg_pool_backward(gy, x.shape)
    numpy.testing.assert_allclose(gx.astype(numpy.float64), expected, rtol=2e-3)
