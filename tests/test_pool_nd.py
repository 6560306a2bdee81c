"""max_pool1d / max_pool3d and avg_pool1d / avg_pool3d with their backward functions over the case tables, on
every backend and dtype, against the loop reference (reference_nd), PyTorch (when installed) and, for CuPy,
the NumPy path; NaN and -inf inputs for the max pools; determinism.

Max-pool inputs are a shuffled range (no ties), so values and indices must match exactly in every dtype."""

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


def _table(**tables):
    return [pytest.param(p.values[0], id=f"{name}-{p.id}") for name, table in tables.items() for p in table]


MAX_POOL = _table(max_pool1d=cases_nd.MAX_POOL1D, max_pool3d=cases_nd.MAX_POOL3D)
AVG_POOL = _table(avg_pool1d=cases_nd.AVG_POOL1D, avg_pool3d=cases_nd.AVG_POOL3D)


def _op(name, nd):
    return getattr(gpuconv, name.format(nd=nd))


# ------------------------------------------------------------------------------------------ max pooling


def _max_reference(case, x):
    nd = case.nd
    y, idx = ref.max_pool(batch(x, nd), **case.kwargs())
    return unbatch(y, nd, x.ndim), unbatch(idx, nd, x.ndim)


def _route(case, gy, idx, x_shape):
    """grad_input routed by ``idx`` onto an input of x_shape (batched or not)."""
    nd = case.nd
    gx = ref.max_pool_backward(batch(gy, nd), batch(idx, nd), batched_shape(x_shape, nd))
    return unbatch(gx, nd, len(x_shape))


def _run_max(backend, case, x, return_indices=True):
    return call_unchanged(backend, case.layout, _op("max_pool{nd}d", case.nd), dict(input=x), **case.kwargs(),
                          return_indices=return_indices)


def _run_max_backward(backend, case, gy, idx, input_shape):
    return call_unchanged(backend, case.layout, _op("max_pool{nd}d_backward", case.nd),
                          dict(grad_output=gy, indices=idx), input_shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", MAX_POOL)
def test_max_pool_forward(backend, case, dtype, rng):
    x, _ = case.arrays(rng, dtype)
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
        y_numpy, idx_numpy = _op("max_pool{nd}d", case.nd)(x, **case.kwargs(), return_indices=True)
        numpy.testing.assert_array_equal(backend.get(y), y_numpy, err_msg="values vs NumPy path")
        numpy.testing.assert_array_equal(backend.get(idx), idx_numpy, err_msg="indices vs NumPy path")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", MAX_POOL)
def test_max_pool_backward(backend, case, dtype, rng):
    """The gradient routed by the reference's indices; overlapping windows make some sums."""
    x, gy = case.arrays(rng, dtype)
    _, idx = _max_reference(case, x)
    gx = _run_max_backward(backend, case, gy, idx, x.shape)
    assert_array(backend, gx, dtype, x.shape, "grad_input")
    expected, bound = _route(case, gy, idx, x.shape), _route(case, *absolute(gy), idx, x.shape)
    assert_close(backend.get(gx), expected, bound, dtype, case.n_terms(), "grad_input vs reference")
    if backend.is_gpu:
        gx_numpy = _op("max_pool{nd}d_backward", case.nd)(gy, idx, x.shape)
        assert_close(backend.get(gx), gx_numpy, bound, dtype, case.n_terms(), "grad_input vs NumPy path", slack=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", MAX_POOL)
def test_max_pool_matches_torch(backend, case, dtype, rng):
    torch_oracle_nd = pytest.importorskip("torch_oracle_nd", reason="needs torch")
    x, gy = case.arrays(rng, dtype)
    nd = case.nd
    y, idx = _run_max(backend, case, x)
    gx = _run_max_backward(backend, case, gy, backend.get(idx), x.shape)
    bound = _route(case, *absolute(gy), backend.get(idx), x.shape)
    devices = ["cpu"] + (["cuda"] if backend.is_gpu and torch_oracle_nd.cuda_available() else [])
    for device in devices:
        # float64 on the CPU (the tie-free inputs are exact in every dtype), the dtype itself on CUDA
        xt, gyt = (x, gy) if device == "cuda" else (x.astype(numpy.float64), gy.astype(numpy.float64))
        ty, tidx = torch_oracle_nd.max_pool(nd, xt, **case.kwargs(), device=device)
        numpy.testing.assert_array_equal(backend.get(y), ty.astype(dtype), err_msg=f"values vs torch {device}")
        numpy.testing.assert_array_equal(backend.get(idx), tidx, err_msg=f"indices vs torch {device}")
        tgx = torch_oracle_nd.max_pool_backward(nd, gyt, xt, **case.kwargs(), device=device)
        assert_close(backend.get(gx), tgx, bound, dtype, case.n_terms(), f"grad_input vs torch {device}", slack=2)


NAN_CASES = [p for p in MAX_POOL if p.id.split("-", 1)[1] in (
    "k2", "k3_s2_p1", "overlapping_s1", "dilation2_pad1", "ceil_mode_partial", "c3d_2x2x2", "3x3x3_s2_p1",
    "dilation_asym_pad", "unbatched")]


def _with_nans_and_infs(rng, x, nd):
    """x with NaNs at random places (some windows get several, some all NaN) and a block of -inf."""
    x = x.copy()
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, size=max(2, flat.size // 5), replace=False)] = numpy.nan
    head = (Ellipsis,) + (slice(0, 2),) * nd  # a corner of neighbours: windows with more than one NaN
    tail = (Ellipsis,) + (slice(-2, None),) * nd
    x[head] = numpy.nan
    x[tail] = -numpy.inf
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", NAN_CASES)
def test_max_pool_nan_and_inf(backend, case, dtype, rng):
    """A NaN in a window wins, the last NaN in window order giving the index (as PyTorch); a window of -inf
    returns -inf at its first position inside the input. The backward follows the indices."""
    nd = case.nd
    x, gy = case.arrays(rng, dtype)
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
    ty, tidx = torch_oracle_nd.max_pool(nd, x.astype(numpy.float64), **case.kwargs())
    numpy.testing.assert_array_equal(backend.get(y), ty.astype(dtype), err_msg="values vs torch")
    numpy.testing.assert_array_equal(backend.get(idx), tidx, err_msg="indices vs torch")


@pytest.mark.parametrize("nd", (1, 3))
def test_max_pool_nan_order_across_depth(backend, nd):
    """Hand-placed: NaNs in two depth slices (3-d) or two positions (1-d) of one window, the later one must
    give the index; a maximum in an earlier slice than a second equal one must win (the first maximum)."""
    size = (4,) * nd
    x = numpy.arange(numpy.prod(size), dtype=numpy.float64).reshape((1, 1) + size) * 0.125
    window0 = (0, 0) + (0,) * nd
    if nd == 3:
        x[0, 0, 0, 1, 1] = numpy.nan
        x[0, 0, 1, 0, 0] = numpy.nan  # later in (d, h, w) order: wins
        x[0, 0, 2:, :2, 2:] = 100.0  # ties across depth in window (1, 0, 1): the first one (d=2, h=0, w=2) wins
    else:
        x[0, 0, 0] = numpy.nan
        x[0, 0, 1] = numpy.nan
        x[0, 0, 2:] = 100.0
    y, idx = _op("max_pool{nd}d", nd)(backend.put(x), 2, return_indices=True)
    y, idx = backend.get(y), backend.get(idx)
    expected_y, expected_idx = ref.max_pool(x, 2)
    numpy.testing.assert_array_equal(y, expected_y)
    numpy.testing.assert_array_equal(idx, expected_idx)
    assert numpy.isnan(y[window0])
    assert idx[window0] == (16 if nd == 3 else 1)
    second = (0, 0, 1, 0, 1) if nd == 3 else (0, 0, 1)
    assert idx[second] == (2 * 16 + 2 if nd == 3 else 2)


@pytest.mark.parametrize("case", [p for p in MAX_POOL if p.id.split("-", 1)[1] in (
    "k3_s2_p1", "overlapping_s1", "3x3x3_s2_p1")])
@pytest.mark.parametrize("dtype", (numpy.float32, numpy.float16))
def test_max_pool_deterministic(backend, case, dtype, rng):
    x, gy = case.arrays(rng, dtype)
    runs = []
    for _ in range(2):
        y, idx = _run_max(backend, case, x)
        gx = _run_max_backward(backend, case, gy, backend.get(idx), x.shape)
        runs.append([backend.get(y), backend.get(idx), backend.get(gx)])
    for name, a, b in zip(("output", "indices", "grad_input"), *runs):
        assert numpy.array_equal(a, b, equal_nan=True), f"{name} differs between runs"


# -------------------------------------------------------------------------------------- average pooling


def _avg_reference(case, x):
    nd = case.nd
    return unbatch(ref.avg_pool(batch(x, nd), **case.reference_kwargs()), nd, x.ndim)


def _avg_backward_reference(case, gy, input_shape):
    nd = case.nd
    gx = ref.avg_pool_backward(batch(gy, nd), batched_shape(input_shape, nd), **case.reference_kwargs())
    return unbatch(gx, nd, len(input_shape))


def _run_avg(backend, case, x):
    return call_unchanged(backend, case.layout, _op("avg_pool{nd}d", case.nd), dict(input=x), **case.kwargs())


def _run_avg_backward(backend, case, gy, input_shape):
    return call_unchanged(backend, case.layout, _op("avg_pool{nd}d_backward", case.nd), dict(grad_output=gy),
                          input_shape, **case.kwargs())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", AVG_POOL)
def test_avg_pool_forward(backend, case, dtype, rng):
    x, _ = case.arrays(rng, dtype)
    y = _run_avg(backend, case, x)
    assert_array(backend, y, dtype, case.output_shape(), "output")
    bound = _avg_reference(case, *absolute(x))
    assert_close(backend.get(y), _avg_reference(case, x), bound, dtype, case.n_terms(), "avg_pool vs reference")
    if backend.is_gpu:
        y_numpy = _op("avg_pool{nd}d", case.nd)(x, **case.kwargs())
        assert_close(backend.get(y), y_numpy, bound, dtype, case.n_terms(), "avg_pool vs NumPy path", slack=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", AVG_POOL)
def test_avg_pool_backward(backend, case, dtype, rng):
    x, gy = case.arrays(rng, dtype)
    gx = _run_avg_backward(backend, case, gy, x.shape)
    assert_array(backend, gx, dtype, x.shape, "grad_input")
    bound = _avg_backward_reference(case, *absolute(gy), x.shape)
    assert_close(backend.get(gx), _avg_backward_reference(case, gy, x.shape), bound, dtype, case.n_terms(),
                 "grad_input vs reference")
    if backend.is_gpu:
        gx_numpy = _op("avg_pool{nd}d_backward", case.nd)(gy, x.shape, **case.kwargs())
        assert_close(backend.get(gx), gx_numpy, bound, dtype, case.n_terms(), "grad_input vs NumPy path", slack=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", AVG_POOL)
def test_avg_pool_matches_torch(backend, case, dtype, rng):
    torch_oracle_nd = pytest.importorskip("torch_oracle_nd", reason="needs torch")
    x, gy = case.arrays(rng, dtype)
    nd, kw = case.nd, case.kwargs()
    y, gx = backend.get(_run_avg(backend, case, x)), backend.get(_run_avg_backward(backend, case, gy, x.shape))
    bound_y = torch_oracle_nd.avg_pool(nd, *absolute(x), **kw)
    bound_gx = torch_oracle_nd.avg_pool_backward(nd, *absolute(gy), x.shape, **kw)
    assert_close(y, torch_oracle_nd.avg_pool(nd, x.astype(numpy.float64), **kw), bound_y, dtype, case.n_terms(),
                 "avg_pool vs torch")
    assert_close(gx, torch_oracle_nd.avg_pool_backward(nd, gy.astype(numpy.float64), x.shape, **kw), bound_gx,
                 dtype, case.n_terms(), "grad_input vs torch")
    if backend.is_gpu and torch_oracle_nd.cuda_available():
        assert_close(y, torch_oracle_nd.avg_pool(nd, x, **kw, device="cuda"), bound_y, dtype, case.n_terms(),
                     "avg_pool vs torch CUDA", slack=2)
        assert_close(gx, torch_oracle_nd.avg_pool_backward(nd, gy, x.shape, **kw, device="cuda"), bound_gx, dtype,
                     case.n_terms(), "grad_input vs torch CUDA", slack=2)


@pytest.mark.parametrize("case", [p for p in AVG_POOL if p.id.split("-", 1)[1] in (
    "k3_s2_p1", "overlapping_s1_pad", "3x3x3_s2_p1", "overlapping_s1_pad_exclude")])
@pytest.mark.parametrize("dtype", (numpy.float32, numpy.float16))
def test_avg_pool_deterministic(backend, case, dtype, rng):
    x, gy = case.arrays(rng, dtype)
    runs = [[backend.get(_run_avg(backend, case, x)), backend.get(_run_avg_backward(backend, case, gy, x.shape))]
            for _ in range(2)]
    for name, a, b in zip(("output", "grad_input"), *runs):
        assert numpy.array_equal(a, b, equal_nan=True), f"{name} differs between runs"


def test_avg_pool1d_takes_no_divisor_override():
    """PyTorch's avg_pool1d has no divisor_override; neither has gpuconv's (the fixed API)."""
    with pytest.raises(TypeError):
        gpuconv.avg_pool1d(numpy.ones((1, 1, 4)), 2, divisor_override=2)


@pytest.mark.parametrize("dtype", ["<i8", ">i8"])
@pytest.mark.parametrize("nd", (1, 3))
def test_max_pool_backward_indices_in_either_byte_order(backend, nd, dtype, rng):
    """The 1-d and 3-d backward (the flattened 2-d one) takes int64 indices in either byte order."""
    case = cases_nd.MaxPoolCase(nd, (2, 3) + (4,) * nd, 3, stride=1, padding=1)
    x, gy = case.arrays(rng, numpy.float64)
    _, idx = _max_reference(case, x)
    backward = _op("max_pool{nd}d_backward", nd)
    got = backend.get(backward(backend.put(gy), backend.put(idx.astype(dtype)), x.shape))
    numpy.testing.assert_allclose(got, _route(case, gy, idx, x.shape), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", ["<i4", "i2", "<u8", "u2"])
@pytest.mark.parametrize("nd", (1, 3))
def test_max_pool_backward_refuses_other_index_dtypes(nd, dtype, rng):
    """Only int64 indices, as PyTorch (a narrower dtype would need range rules of its own)."""
    case = cases_nd.MaxPoolCase(nd, (2, 3) + (4,) * nd, 3, stride=1, padding=1)
    x, gy = case.arrays(rng, numpy.float64)
    _, idx = _max_reference(case, x)
    with pytest.raises(TypeError, match=r"indices.*int64"):
        _op("max_pool{nd}d_backward", nd)(gy, idx.astype(dtype), x.shape)


@pytest.mark.parametrize("case", [p for p in MAX_POOL if p.id.split("-", 1)[1] in (
    "k3_s2_p1", "overlapping_s1", "dilation2_pad1", "c3d_2x2x2", "3x3x3_s2_p1", "dilation_asym_pad",
    "ceil_mode_window_past_padding")])
def test_max_pool_ties_first_maximum_wins(backend, case, rng):
    """Ties everywhere (values in {0, 1, 2}, like ReLU outputs): the first maximum in window order (depth,
    then row, then column) gives the index, as the reference and PyTorch say."""
    nd = case.nd
    x = rng.integers(0, 3, size=case.x).astype(numpy.float32)
    y, idx = _run_max(backend, case, x)
    expected_y, expected_idx = _max_reference(case, x)
    numpy.testing.assert_array_equal(backend.get(y), expected_y)
    numpy.testing.assert_array_equal(backend.get(idx), expected_idx)
    try:
        import torch_oracle_nd
    except ImportError:
        return
    numpy.testing.assert_array_equal(backend.get(idx), torch_oracle_nd.max_pool(nd, x, **case.kwargs())[1])


@pytest.mark.parametrize("nd", (1, 3))
def test_avg_pool_float16_accumulates_in_float32(backend, nd):
    """Averages of values near float16's largest are representable, their window sums are not: float32
    accumulation (the contract) gives the average instead of inf."""
    x = numpy.full((1, 2) + (6,) * nd, 60000.0, dtype=numpy.float16)
    y = backend.get(_op("avg_pool{nd}d", nd)(backend.put(x), 3, stride=1, padding=1, count_include_pad=False))
    numpy.testing.assert_array_equal(y, numpy.full(y.shape, 60000.0, dtype=numpy.float16))
