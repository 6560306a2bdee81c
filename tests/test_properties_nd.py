"""Property tests for the 1-d, 3-d and adaptive ops: hypothesis draws random valid configurations (sizes,
strides, paddings, dilations, groups, padding modes, output sizes, dtypes, layouts) and every op and gradient
must match PyTorch when it is installed, else the loop reference (reference_nd). Examples per test stay
modest (3-d ones fewer) so the suite stays fast; a failure prints the drawn case, ready to paste into
cases_nd.py.
"""

from __future__ import annotations

import numpy
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import gpuconv
import reference_nd as ref
from cases_nd import (AdaptiveCase, AvgPoolCase, ConvCase, ConvTransposeCase, MaxPoolCase, batch, batched_shape,
                      on_backend, unbatch)
from helpers import DTYPES, LAYOUTS, absolute, assert_close

try:
    import torch_oracle_nd
except ImportError:  # no torch: the loop reference is the oracle
    torch_oracle_nd = None

# The backend fixtures only set environment variables, so reusing them across examples is safe.
_health = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
settings_1d = settings(suppress_health_check=_health)
settings_3d = settings(suppress_health_check=_health, max_examples=settings.default.max_examples // 2)  # 20 in CI

small = st.integers(1, 3)
dtypes = st.sampled_from(DTYPES)
layouts = st.sampled_from(LAYOUTS)
seeds = st.integers(0, 2**32 - 1)
nds = st.sampled_from((1, 3))


def _tuple_or_int(draw, nd, elements):
    """An int, or a tuple of nd ints (sometimes a 1-tuple for 1-d)."""
    if draw(st.booleans()):
        return draw(elements)
    return tuple(draw(elements) for _ in range(nd))


def _batch_prefix(draw):
    """() for an unbatched input, else (N,) with N mostly 1 or 2, sometimes 0."""
    return draw(st.sampled_from([(), (1,), (2,), (2,), (0,)]))


def _f64(*arrays):
    return tuple(None if a is None else a.astype(numpy.float64) for a in arrays)


def _compare_all(backend, names, results, oracle, oracle_of_abs, dtype, n_terms, case):
    for name, got, expected, bound in zip(names, results, oracle, oracle_of_abs):
        assert got.dtype == numpy.dtype(dtype), f"{name}: dtype {got.dtype}"
        assert_close(backend.get(got), expected, bound, dtype, n_terms, f"{name} for {case}")


# ---------------------------------------------------------------------------------------- convolution


@st.composite
def conv_cases(draw, nd):
    groups = draw(st.integers(1, 3))
    C, K = groups * draw(small), groups * draw(small)
    kmax = 4 if nd == 1 else 3
    kernel = tuple(draw(st.integers(1, kmax)) for _ in range(nd))
    dilation = _tuple_or_int(draw, nd, small)
    padding_mode = draw(st.sampled_from(("zeros", "zeros", "reflect", "replicate", "circular")))
    padding = draw(st.one_of(st.integers(0, 3), st.tuples(*[st.integers(0, 3)] * nd),
                             st.sampled_from(("valid", "same", "full"))))
    stride = 1 if padding == "same" else _tuple_or_int(draw, nd, small)
    pads = ref.conv_pads(padding, kernel, dilation)
    d, reflect = ref.ntuple(dilation, nd), padding_mode == "reflect"
    # The input must hold the dilated kernel once padded; padding modes limit padding by the input size.
    size = []
    for (lo, hi), k, di in zip(pads, kernel, d):
        mode_min = max(lo, hi) + reflect if padding_mode != "zeros" else 1
        low = max(1, di * (k - 1) + 1 - lo - hi, mode_min)
        size.append(draw(st.integers(low, low + (4 if nd == 1 else 2))))
    return ConvCase(_batch_prefix(draw) + (C,) + tuple(size), (K, C // groups) + kernel, bias=draw(st.booleans()),
                    stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode,
                    layout=draw(layouts))


def _conv_oracle(case, x, w, b, gy):
    nd = case.nd
    if torch_oracle_nd is not None:
        return (torch_oracle_nd.conv(nd, x, w, b, **case.kwargs()),) + tuple(
            torch_oracle_nd.conv_backward(nd, gy, x, w, **case.kwargs()))
    y = unbatch(ref.conv_any_mode(batch(x, nd), w, b, *case.reference_args()), nd, x.ndim)
    gx, gw, gb = ref.conv_backward_any_mode(batch(gy, nd), batch(x, nd), w, *case.reference_args())
    return y, unbatch(gx, nd, x.ndim), gw, gb


def _check_conv(backend, case, dtype, seed):
    nd = case.nd
    x, w, b, gy = case.arrays(numpy.random.default_rng(seed), dtype)
    xd, wd, bd, gyd = (on_backend(backend, a, case.layout) for a in (x, w, b, gy))
    results = (getattr(gpuconv, f"conv{nd}d")(xd, wd, bd, **case.kwargs()),) + tuple(
        getattr(gpuconv, f"conv{nd}d_backward")(gyd, xd, wd, **case.kwargs()))
    _compare_all(backend, ("output", "grad_input", "grad_weight", "grad_bias"), results,
                 _conv_oracle(case, *_f64(x, w, b, gy)), _conv_oracle(case, *absolute(x, w, b, gy)), dtype,
                 case.n_terms(), case)


@settings_1d
@given(case=conv_cases(1), dtype=dtypes, seed=seeds)
def test_conv1d_random_configurations(backend, case, dtype, seed):
    _check_conv(backend, case, dtype, seed)


@settings_3d
@given(case=conv_cases(3), dtype=dtypes, seed=seeds)
def test_conv3d_random_configurations(backend, case, dtype, seed):
    _check_conv(backend, case, dtype, seed)


@st.composite
def conv_transpose_cases(draw, nd):
    groups = draw(st.integers(1, 3))
    Cin, Cout = groups * draw(small), groups * draw(small)
    kmax = 4 if nd == 1 else 3
    kernel = tuple(draw(st.integers(1, kmax)) for _ in range(nd))
    stride = tuple(draw(small) for _ in range(nd))
    dilation = tuple(draw(small) for _ in range(nd))
    # output_padding below stride or dilation (either one suffices, as PyTorch)
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    size = tuple(draw(st.integers(1, 4 if nd == 1 else 3)) for _ in range(nd))
    # padding small enough that the output keeps at least one position along each dimension
    padding = tuple(draw(st.integers(0, max(0, ((n - 1) * s + d * (k - 1) + op) // 2)))
                    for n, s, d, k, op in zip(size, stride, dilation, kernel, output_padding))
    return ConvTransposeCase(_batch_prefix(draw) + (Cin,) + size, (Cin, Cout // groups) + kernel,
                             bias=draw(st.booleans()), stride=stride, padding=padding, output_padding=output_padding,
                             groups=groups, dilation=dilation, layout=draw(layouts))


def _conv_transpose_oracle(case, x, w, b, gy):
    nd = case.nd
    if torch_oracle_nd is not None:
        return (torch_oracle_nd.conv_transpose(nd, x, w, b, **case.kwargs()),) + tuple(
            torch_oracle_nd.conv_transpose_backward(nd, gy, x, w, **case.kwargs()))
    y = unbatch(ref.conv_transpose(batch(x, nd), w, b, **case.kwargs()), nd, x.ndim)
    gx, gw, gb = ref.conv_transpose_backward(batch(gy, nd), batch(x, nd), w, **case.kwargs())
    return y, unbatch(gx, nd, x.ndim), gw, gb


def _check_conv_transpose(backend, case, dtype, seed):
    nd = case.nd
    x, w, b, gy = case.arrays(numpy.random.default_rng(seed), dtype)
    xd, wd, bd, gyd = (on_backend(backend, a, case.layout) for a in (x, w, b, gy))
    results = (getattr(gpuconv, f"conv_transpose{nd}d")(xd, wd, bd, **case.kwargs()),) + tuple(
        getattr(gpuconv, f"conv_transpose{nd}d_backward")(gyd, xd, wd, **case.kwargs()))
    _compare_all(backend, ("output", "grad_input", "grad_weight", "grad_bias"), results,
                 _conv_transpose_oracle(case, *_f64(x, w, b, gy)),
                 _conv_transpose_oracle(case, *absolute(x, w, b, gy)), dtype, case.n_terms(), case)


@settings_1d
@given(case=conv_transpose_cases(1), dtype=dtypes, seed=seeds)
def test_conv_transpose1d_random_configurations(backend, case, dtype, seed):
    _check_conv_transpose(backend, case, dtype, seed)


@settings_3d
@given(case=conv_transpose_cases(3), dtype=dtypes, seed=seeds)
def test_conv_transpose3d_random_configurations(backend, case, dtype, seed):
    _check_conv_transpose(backend, case, dtype, seed)


# -------------------------------------------------------------------------------------------- pooling


@st.composite
def _pool_geometry(draw, nd, dilated):
    k = tuple(draw(st.integers(1, 4 if nd == 1 else 3)) for _ in range(nd))
    stride = draw(st.one_of(st.none(), st.tuples(*[small] * nd)))
    padding = tuple(draw(st.integers(0, ki // 2)) for ki in k)
    dilation = tuple(draw(small) for _ in range(nd)) if dilated else (1,) * nd
    # at least one whole window inside input + padding
    low = [max(1, d * (ki - 1) + 1 - 2 * p) for ki, p, d in zip(k, padding, dilation)]
    size = tuple(draw(st.integers(lo, lo + (5 if nd == 1 else 3))) for lo in low)
    return k, stride, padding, dilation, (draw(small),) + size, draw(st.booleans())


def _window_touches_input(size, k, s, p, d, ceil_mode):
    n_out = ref.pool_out_size(size, k, s, p, d, ceil_mode)
    return all(any(0 <= o * s - p + i * d < size for i in range(k)) for o in range(n_out))


@st.composite
def max_pool_cases(draw, nd):
    k, stride, padding, dilation, csize, ceil_mode = draw(_pool_geometry(nd, True))
    # A dilated window can straddle a small input and touch none of its positions; PyTorch then returns -inf
    # with an index outside the input. That is no behaviour to test, so such draws are discarded.
    assume(all(_window_touches_input(size, ki, si, p, d, ceil_mode)
               for size, ki, si, p, d in zip(csize[1:], k, stride or k, padding, dilation)))
    return MaxPoolCase(nd, _batch_prefix(draw) + csize, k, stride=stride, padding=padding, dilation=dilation,
                       ceil_mode=ceil_mode, layout=draw(layouts))


@st.composite
def avg_pool_cases(draw, nd):
    k, stride, padding, _, csize, ceil_mode = draw(_pool_geometry(nd, False))
    # PyTorch's avg_pool3d (alone: not avg_pool1d/2d, not max_pool3d) refuses an input smaller than the kernel
    # even where padding makes the windows fit; gpuconv computes it as avg_pool2d would. Not compared here.
    assume(nd != 3 or all(n >= ki for n, ki in zip(csize[1:], k)))
    divisor = None if nd == 1 else draw(st.one_of(st.none(), st.integers(-3, 9).filter(lambda v: v != 0)))
    return AvgPoolCase(nd, _batch_prefix(draw) + csize, k, stride=stride, padding=padding, ceil_mode=ceil_mode,
                       count_include_pad=draw(st.booleans()), divisor_override=divisor, layout=draw(layouts))


def _check_max_pool(backend, case, dtype, seed):
    nd = case.nd
    x, gy = case.arrays(numpy.random.default_rng(seed), dtype)
    y, idx = getattr(gpuconv, f"max_pool{nd}d")(on_backend(backend, x, case.layout), **case.kwargs(),
                                                 return_indices=True)
    if torch_oracle_nd is not None:
        expected_y, expected_idx = torch_oracle_nd.max_pool(nd, x.astype(numpy.float64), **case.kwargs())
    else:
        expected_y, expected_idx = (unbatch(a, nd, x.ndim) for a in ref.max_pool(batch(x, nd), **case.kwargs()))
    numpy.testing.assert_array_equal(backend.get(y), expected_y.astype(dtype), err_msg=f"values for {case}")
    numpy.testing.assert_array_equal(backend.get(idx), expected_idx, err_msg=f"indices for {case}")
    gx = getattr(gpuconv, f"max_pool{nd}d_backward")(on_backend(backend, gy, case.layout), idx, x.shape)

    def route(g):
        return unbatch(ref.max_pool_backward(batch(g, nd), batch(expected_idx, nd), batched_shape(x.shape, nd)), nd,
                       x.ndim)

    assert_close(backend.get(gx), route(gy), route(*absolute(gy)), dtype, case.n_terms(), f"grad_input for {case}")


@settings_1d
@given(case=max_pool_cases(1), dtype=dtypes, seed=seeds)
def test_max_pool1d_random_configurations(pool_backend, case, dtype, seed):
    _check_max_pool(pool_backend, case, dtype, seed)


@settings_3d
@given(case=max_pool_cases(3), dtype=dtypes, seed=seeds)
def test_max_pool3d_random_configurations(pool_backend, case, dtype, seed):
    _check_max_pool(pool_backend, case, dtype, seed)


def _check_avg_pool(backend, case, dtype, seed):
    nd = case.nd
    x, gy = case.arrays(numpy.random.default_rng(seed), dtype)
    y = getattr(gpuconv, f"avg_pool{nd}d")(on_backend(backend, x, case.layout), **case.kwargs())
    gx = getattr(gpuconv, f"avg_pool{nd}d_backward")(on_backend(backend, gy, case.layout), x.shape, **case.kwargs())

    def oracle(x_, gy_):
        if torch_oracle_nd is not None:
            return (torch_oracle_nd.avg_pool(nd, x_, **case.kwargs()),
                    torch_oracle_nd.avg_pool_backward(nd, gy_, x.shape, **case.kwargs()))
        kw = case.reference_kwargs()
        gx_ = ref.avg_pool_backward(batch(gy_, nd), batched_shape(x.shape, nd), **kw)
        return unbatch(ref.avg_pool(batch(x_, nd), **kw), nd, x.ndim), unbatch(gx_, nd, x.ndim)

    _compare_all(backend, ("output", "grad_input"), (y, gx), oracle(*_f64(x, gy)), oracle(*absolute(x, gy)), dtype,
                 case.n_terms(), case)


@settings_1d
@given(case=avg_pool_cases(1), dtype=dtypes, seed=seeds)
def test_avg_pool1d_random_configurations(pool_backend, case, dtype, seed):
    _check_avg_pool(pool_backend, case, dtype, seed)


@settings_3d
@given(case=avg_pool_cases(3), dtype=dtypes, seed=seeds)
def test_avg_pool3d_random_configurations(pool_backend, case, dtype, seed):
    _check_avg_pool(pool_backend, case, dtype, seed)


# ----------------------------------------------------------------------------------- adaptive pooling


@st.composite
def adaptive_cases(draw):
    nd = draw(st.sampled_from((1, 2, 3)))
    size = tuple(draw(st.integers(1, 7 if nd < 3 else 5)) for _ in range(nd))
    sizes = st.integers(1, 8 if nd < 3 else 6)
    if draw(st.booleans()):
        out = draw(sizes)
    else:
        out = tuple(draw(st.one_of(st.none(), sizes)) for _ in range(nd))
    return AdaptiveCase(nd, _batch_prefix(draw) + (draw(small),) + size, out, layout=draw(layouts))


@settings_1d
@given(case=adaptive_cases(), dtype=dtypes, seed=seeds)
def test_adaptive_pool_random_configurations(pool_backend, case, dtype, seed):
    backend, nd, out = pool_backend, case.nd, case.output_size
    rng = numpy.random.default_rng(seed)
    x, gy = case.avg_arrays(rng, dtype)
    y = getattr(gpuconv, f"adaptive_avg_pool{nd}d")(on_backend(backend, x, case.layout), out)
    gx = getattr(gpuconv, f"adaptive_avg_pool{nd}d_backward")(on_backend(backend, gy, case.layout), x.shape)

    def avg_oracle(x_, gy_):
        if torch_oracle_nd is not None:
            return (torch_oracle_nd.adaptive_avg_pool(nd, x_, out),
                    torch_oracle_nd.adaptive_avg_pool_backward(nd, gy_, x_, out))
        gx_ = ref.adaptive_avg_pool_backward(batch(gy_, nd), batched_shape(x.shape, nd))
        return unbatch(ref.adaptive_avg_pool(batch(x_, nd), out), nd, x.ndim), unbatch(gx_, nd, x.ndim)

    _compare_all(backend, ("avg output", "avg grad_input"), (y, gx), avg_oracle(*_f64(x, gy)),
                 avg_oracle(*absolute(x, gy)), dtype, case.n_terms(), case)
    x, gy = case.max_arrays(rng, dtype)
    y, idx = getattr(gpuconv, f"adaptive_max_pool{nd}d")(on_backend(backend, x, case.layout), out,
                                                          return_indices=True)
    if torch_oracle_nd is not None:
        expected_y, expected_idx = torch_oracle_nd.adaptive_max_pool(nd, x.astype(numpy.float64), out)
    else:
        expected_y, expected_idx = (unbatch(a, nd, x.ndim) for a in ref.adaptive_max_pool(batch(x, nd), out))
    numpy.testing.assert_array_equal(backend.get(y), expected_y.astype(dtype), err_msg=f"max values for {case}")
    numpy.testing.assert_array_equal(backend.get(idx), expected_idx, err_msg=f"max indices for {case}")
    gx = getattr(gpuconv, f"adaptive_max_pool{nd}d_backward")(on_backend(backend, gy, case.layout), idx, x.shape)

    def route(g):
        return unbatch(ref.max_pool_backward(batch(g, nd), batch(expected_idx, nd), batched_shape(x.shape, nd)), nd,
                       x.ndim)

    assert_close(backend.get(gx), route(gy), route(*absolute(gy)), dtype, case.n_terms(), f"max grad for {case}")


# ------------------------------------------------------------------------------ accepted exactly as torch


@pytest.mark.skipif(torch_oracle_nd is None, reason="needs torch")
@settings(max_examples=40)
@given(nd=nds, seed=seeds, n=st.integers(1, 2), size=st.integers(1, 6), kernel=st.integers(1, 4),
       stride=st.integers(-1, 3), padding=st.integers(-1, 3), dilation=st.integers(0, 3), ceil_mode=st.booleans())
def test_pools_accept_what_torch_accepts(nd, seed, n, size, kernel, stride, padding, dilation, ceil_mode):
    """With arbitrary sizes, strides, paddings and dilations, max and average pooling raise ValueError exactly
    when PyTorch refuses."""
    x = numpy.random.default_rng(seed).standard_normal((n, 2) + (size,) * nd)
    kw = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)
    for name, extra in (("max_pool", dict(dilation=dilation)), ("avg_pool", {})):
        try:
            getattr(torch_oracle_nd, name)(nd, x, **kw, **extra)
            torch_ok = True
        except (RuntimeError, ValueError) as e:
            if "smaller than kernel size" in str(e) and name == "avg_pool" and nd == 3 and padding >= 0:
                continue  # torch's avg_pool3d alone refuses an input smaller than the kernel; see above
            torch_ok = False
        if torch_ok:
            getattr(gpuconv, f"{name}{nd}d")(x, **kw, **extra)
        else:
            with pytest.raises(ValueError):
                getattr(gpuconv, f"{name}{nd}d")(x, **kw, **extra)


@pytest.mark.skipif(torch_oracle_nd is None, reason="needs torch")
@settings(max_examples=40)
@given(nd=nds, seed=seeds, size=st.integers(1, 5), kernel=st.integers(1, 3), stride=st.integers(-1, 3),
       padding=st.integers(-1, 4), dilation=st.integers(0, 3), groups=st.integers(1, 2))
def test_conv_accepts_what_torch_accepts(nd, seed, size, kernel, stride, padding, dilation, groups):
    """With arbitrary stride, padding and dilation, conv raises ValueError exactly when PyTorch refuses."""
    rng = numpy.random.default_rng(seed)
    x, w = rng.standard_normal((1, 2) + (size,) * nd), rng.standard_normal((2, 2 // groups) + (kernel,) * nd)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    try:
        torch_ok = padding >= 0  # the oracle pads explicitly for padding_mode; F.pad would crop
        torch_oracle_nd.conv(nd, x, w, None, **kw)
    except (RuntimeError, ValueError):
        torch_ok = False
    if torch_ok:
        getattr(gpuconv, f"conv{nd}d")(x, w, None, **kw)
    else:
        with pytest.raises(ValueError):
            getattr(gpuconv, f"conv{nd}d")(x, w, None, **kw)
