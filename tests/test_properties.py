"""Property tests: hypothesis draws random valid configurations (sizes, strides, paddings, dilations,
groups, padding modes, dtypes, layouts) and every op and gradient must match PyTorch when it is installed,
else the loop reference. The examples per test are kept modest (the profile in conftest.py) so the suite
stays fast; a failure prints the drawn case, which can be pasted into cases.py.
"""

from __future__ import annotations

import numpy
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import gpuconv
import reference
from cases import AvgPoolCase, Conv2dCase, ConvTranspose2dCase, MaxPoolCase
from helpers import DTYPES, LAYOUTS, absolute, assert_close, batch4, on_backend, unbatch_like

try:
    import torch_oracle
except ImportError:  # no torch: the loop reference is the oracle
    torch_oracle = None

# The backend fixture only sets environment variables, so reusing it across examples is safe.
property_settings = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

small = st.integers(1, 3)
pairs = st.one_of(small, st.tuples(small, small))
dtypes = st.sampled_from(DTYPES)
layouts = st.sampled_from(LAYOUTS)
seeds = st.integers(0, 2**32 - 1)


def _pair(v):
    return (v, v) if isinstance(v, int) else v


def _batch_prefix(draw):
    """() for an unbatched input, else (N,) with N mostly 1 or 2, sometimes 0."""
    return draw(st.sampled_from([(), (1,), (2,), (2,), (0,)]))


@st.composite
def conv2d_cases(draw):
    groups = draw(st.integers(1, 3))
    C, K = groups * draw(small), groups * draw(small)
    R, S = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dilation, padding_mode = draw(pairs), draw(st.sampled_from(("zeros", "zeros", "reflect", "replicate", "circular")))
    padding = draw(st.one_of(st.integers(0, 3), st.tuples(st.integers(0, 3), st.integers(0, 3)),
                             st.sampled_from(("valid", "same", "full"))))
    stride = 1 if padding == "same" else draw(pairs)
    pads = reference.conv_pads(padding, (R, S), dilation)
    # The input must hold the dilated kernel once padded, and padding modes limit padding by the input size.
    d, reflect = _pair(dilation), padding_mode == "reflect"
    mode_h, mode_w = ((max(pads[:2]) + reflect, max(pads[2:]) + reflect) if padding_mode != "zeros" else (1, 1))
    min_h = max(1, d[0] * (R - 1) + 1 - pads[0] - pads[1], mode_h)
    min_w = max(1, d[1] * (S - 1) + 1 - pads[2] - pads[3], mode_w)
    H, W = draw(st.integers(min_h, min_h + 4)), draw(st.integers(min_w, min_w + 4))
    return Conv2dCase(_batch_prefix(draw) + (C, H, W), (K, C // groups, R, S), bias=draw(st.booleans()),
                      stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode,
                      layout=draw(layouts))


@st.composite
def conv_transpose2d_cases(draw):
    groups = draw(st.integers(1, 3))
    Cin, Cout = groups * draw(small), groups * draw(small)
    R, S = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride, dilation = _pair(draw(pairs)), _pair(draw(pairs))
    # output_padding below stride or dilation (either one suffices, as PyTorch)
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    H, W = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    # padding small enough that the output keeps at least one row and column
    padding = tuple(draw(st.integers(0, max(0, ((n - 1) * s + d * (k - 1) + op) // 2)))
                    for n, s, d, k, op in zip((H, W), stride, dilation, (R, S), output_padding))
    return ConvTranspose2dCase(_batch_prefix(draw) + (Cin, H, W), (Cin, Cout // groups, R, S),
                               bias=draw(st.booleans()), stride=stride, padding=padding,
                               output_padding=output_padding, groups=groups, dilation=dilation, layout=draw(layouts))


@st.composite
def _pool_geometry(draw, dilated):
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = draw(st.one_of(st.none(), st.tuples(small, small)))
    padding = tuple(draw(st.integers(0, ki // 2)) for ki in k)
    dilation = (draw(small), draw(small)) if dilated else (1, 1)
    # at least one whole window inside input + padding
    low = [max(1, d * (ki - 1) + 1 - 2 * p) for ki, p, d in zip(k, padding, dilation)]
    H, W = (draw(st.integers(lo, lo + 5)) for lo in low)
    return k, stride, padding, dilation, (draw(small), H, W), draw(st.booleans())


def _window_touches_input(size, k, s, p, d, ceil_mode):
    n_out = reference.pool_out_size(size, k, s, p, d, ceil_mode)
    return all(any(0 <= o * s - p + i * d < size for i in range(k)) for o in range(n_out))


@st.composite
def max_pool2d_cases(draw):
    k, stride, padding, dilation, chw, ceil_mode = draw(_pool_geometry(True))
    # A dilated window can straddle a small input and touch none of its pixels; PyTorch then returns -inf
    # with an index outside the plane. That is no behaviour to test, so such draws are discarded.
    assume(all(_window_touches_input(size, ki, si, p, d, ceil_mode)
               for size, ki, si, p, d in zip(chw[1:], k, stride or k, padding, dilation)))
    return MaxPoolCase(_batch_prefix(draw) + chw, k, stride=stride, padding=padding, dilation=dilation,
                       ceil_mode=ceil_mode, layout=draw(layouts))


@st.composite
def avg_pool2d_cases(draw):
    k, stride, padding, _, chw, ceil_mode = draw(_pool_geometry(False))
    divisor = draw(st.one_of(st.none(), st.integers(-3, 9).filter(lambda v: v != 0)))
    return AvgPoolCase(_batch_prefix(draw) + chw, k, stride=stride, padding=padding, ceil_mode=ceil_mode,
                       count_include_pad=draw(st.booleans()), divisor_override=divisor, layout=draw(layouts))


# ------------------------------------------------------------------------------------------ oracles
# Each returns float64 NumPy results for the dtype-rounded inputs: torch when installed, else the reference.


def _f64(*arrays):
    return tuple(None if a is None else a.astype(numpy.float64) for a in arrays)


def _conv2d_oracle(case, x, w, b, gy):
    if torch_oracle is not None:
        return (torch_oracle.conv2d(x, w, b, **case.kwargs()),) + tuple(
            torch_oracle.conv2d_backward(gy, x, w, **case.kwargs()))
    args = case.reference_args()
    y = unbatch_like(reference.conv2d_any_mode(batch4(x), w, b, *args), x)
    gx, gw, gb = reference.conv2d_backward_any_mode(batch4(gy), batch4(x), w, *args)
    return y, unbatch_like(gx, x), gw, gb


def _conv_transpose2d_oracle(case, x, w, b, gy):
    if torch_oracle is not None:
        return (torch_oracle.conv_transpose2d(x, w, b, **case.kwargs()),) + tuple(
            torch_oracle.conv_transpose2d_backward(gy, x, w, **case.kwargs()))
    y = unbatch_like(reference.conv_transpose2d(batch4(x), w, b, **case.kwargs()), x)
    gx, gw, gb = reference.conv_transpose2d_backward(batch4(gy), batch4(x), w, **case.kwargs())
    return y, unbatch_like(gx, x), gw, gb


def _compare_all(backend, names, results, oracle, oracle_of_abs, dtype, n_terms, case):
    for name, got, expected, bound in zip(names, results, oracle, oracle_of_abs):
        assert got.dtype == numpy.dtype(dtype), f"{name}: dtype {got.dtype}"
        assert_close(backend.get(got), expected, bound, dtype, n_terms, f"{name} for {case}")


# -------------------------------------------------------------------------------------------- tests


@property_settings
@given(case=conv2d_cases(), dtype=dtypes, seed=seeds)
def test_conv2d_random_configurations(backend, case, dtype, seed):
    x, w, b, gy = case.arrays(numpy.random.default_rng(seed), dtype)
    xd, wd, bd, gyd = (on_backend(backend, a, case.layout) for a in (x, w, b, gy))
    results = (gpuconv.conv2d(xd, wd, bd, **case.kwargs()),) + tuple(
        gpuconv.conv2d_backward(gyd, xd, wd, **case.kwargs()))
    _compare_all(backend, ("output", "grad_input", "grad_weight", "grad_bias"), results,
                 _conv2d_oracle(case, *_f64(x, w, b, gy)), _conv2d_oracle(case, *absolute(x, w, b, gy)),
                 dtype, case.n_terms(), case)


@property_settings
@given(case=conv_transpose2d_cases(), dtype=dtypes, seed=seeds)
def test_conv_transpose2d_random_configurations(backend, case, dtype, seed):
    x, w, b, gy = case.arrays(numpy.random.default_rng(seed), dtype)
    xd, wd, bd, gyd = (on_backend(backend, a, case.layout) for a in (x, w, b, gy))
    results = (gpuconv.conv_transpose2d(xd, wd, bd, **case.kwargs()),) + tuple(
        gpuconv.conv_transpose2d_backward(gyd, xd, wd, **case.kwargs()))
    _compare_all(backend, ("output", "grad_input", "grad_weight", "grad_bias"), results,
                 _conv_transpose2d_oracle(case, *_f64(x, w, b, gy)),
                 _conv_transpose2d_oracle(case, *absolute(x, w, b, gy)), dtype, case.n_terms(), case)


@property_settings
@given(case=max_pool2d_cases(), dtype=dtypes, seed=seeds)
def test_max_pool2d_random_configurations(backend, case, dtype, seed):
    x, gy = case.arrays(numpy.random.default_rng(seed), dtype)
    y, idx = gpuconv.max_pool2d(on_backend(backend, x, case.layout), **case.kwargs(), return_indices=True)
    if torch_oracle is not None:
        expected_y, expected_idx = torch_oracle.max_pool2d(x.astype(numpy.float64), **case.kwargs())
    else:
        expected_y, expected_idx = (unbatch_like(a, x) for a in reference.max_pool2d(batch4(x), **case.kwargs()))
    numpy.testing.assert_array_equal(backend.get(y), expected_y.astype(dtype), err_msg=f"values for {case}")
    numpy.testing.assert_array_equal(backend.get(idx), expected_idx, err_msg=f"indices for {case}")
    gx = gpuconv.max_pool2d_backward(on_backend(backend, gy, case.layout), idx, x.shape)

    def route(g):
        return unbatch_like(reference.max_pool2d_backward(batch4(g), batch4(expected_idx), batch4(x).shape), x)

    assert_close(backend.get(gx), route(gy), route(*absolute(gy)), dtype, case.n_terms(), f"grad_input for {case}")


@property_settings
@given(case=avg_pool2d_cases(), dtype=dtypes, seed=seeds)
def test_avg_pool2d_random_configurations(backend, case, dtype, seed):
    x, gy = case.arrays(numpy.random.default_rng(seed), dtype)
    y = gpuconv.avg_pool2d(on_backend(backend, x, case.layout), **case.kwargs())
    gx = gpuconv.avg_pool2d_backward(on_backend(backend, gy, case.layout), x.shape, **case.kwargs())

    def oracle(x_, gy_):
        if torch_oracle is not None:
            return (torch_oracle.avg_pool2d(x_, **case.kwargs()),
                    torch_oracle.avg_pool2d_backward(gy_, x.shape, **case.kwargs()))
        gx_ = reference.avg_pool2d_backward(batch4(gy_), batch4(x).shape, **case.kwargs())
        return unbatch_like(reference.avg_pool2d(batch4(x_), **case.kwargs()), x), unbatch_like(gx_, x)

    _compare_all(backend, ("output", "grad_input"), (y, gx), oracle(*_f64(x, gy)), oracle(*absolute(x, gy)),
                 dtype, case.n_terms(), case)


@pytest.mark.skipif(torch_oracle is None, reason="needs torch")
@settings(max_examples=60)
@given(case=conv2d_cases(), seed=seeds, stride=st.integers(-1, 3), padding=st.integers(-1, 4))
def test_conv2d_accepts_what_torch_accepts(case, seed, stride, padding):
    """With arbitrary stride and padding, gpuconv raises ValueError exactly when PyTorch refuses."""
    assume(case.x[0] != 0 or len(case.x) == 3)  # PyTorch skips some checks on an empty batch; gpuconv does not
    x, w, b, _ = case.arrays(numpy.random.default_rng(seed), numpy.float64)
    kw = dict(case.kwargs(), stride=stride, padding=padding)
    try:
        # the oracle pads explicitly for padding_mode, and F.pad crops where padding is negative
        torch_ok = padding >= 0
        torch_oracle.conv2d(x, w, b, **kw)
    except (RuntimeError, ValueError, NotImplementedError):
        torch_ok = False
    if torch_ok:
        gpuconv.conv2d(x, w, b, **kw)
    else:
        with pytest.raises(ValueError):
            gpuconv.conv2d(x, w, b, **kw)


@pytest.mark.skipif(torch_oracle is None, reason="needs torch")
@settings(max_examples=60)
@given(seed=seeds, shape=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 6), st.integers(1, 6)),
       kernel=st.integers(1, 4), stride=st.integers(1, 3), padding=st.integers(0, 3), dilation=st.integers(1, 3),
       ceil_mode=st.booleans())
def test_max_pool2d_accepts_what_torch_accepts(seed, shape, kernel, stride, padding, dilation, ceil_mode):
    """With arbitrary sizes and padding, gpuconv raises ValueError exactly when PyTorch refuses."""
    x = numpy.random.default_rng(seed).standard_normal(shape)
    kw = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
    try:
        torch_oracle.max_pool2d(x, **kw)
        torch_ok = True
    except (RuntimeError, ValueError):
        torch_ok = False
    if torch_ok:
        gpuconv.max_pool2d(x, **kw)
    else:
        with pytest.raises(ValueError):
            gpuconv.max_pool2d(x, **kw)


@pytest.mark.skipif(torch_oracle is None, reason="needs torch")
@settings(max_examples=60)
@given(case=conv_transpose2d_cases(), seed=seeds, padding=st.integers(-1, 4), output_padding=st.integers(-1, 3),
       stride=st.integers(0, 3))
def test_conv_transpose2d_accepts_what_torch_accepts(case, seed, padding, output_padding, stride):
    """With arbitrary stride, padding and output_padding, gpuconv raises ValueError exactly when PyTorch
    refuses."""
    assume(case.x[0] != 0 or len(case.x) == 3)  # PyTorch skips some checks on an empty batch; gpuconv does not
    x, w, b, _ = case.arrays(numpy.random.default_rng(seed), numpy.float64)
    kw = dict(case.kwargs(), stride=stride, padding=padding, output_padding=output_padding)
    try:
        torch_oracle.conv_transpose2d(x, w, b, **kw)
        torch_ok = True
    except (RuntimeError, ValueError):
        torch_ok = False
    if torch_ok:
        gpuconv.conv_transpose2d(x, w, b, **kw)
    else:
        with pytest.raises(ValueError):
            gpuconv.conv_transpose2d(x, w, b, **kw)


@pytest.mark.skipif(torch_oracle is None, reason="needs torch")
@settings(max_examples=60)
@given(seed=seeds, shape=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 6), st.integers(1, 6)),
       kernel=st.integers(1, 4), stride=st.integers(1, 3), padding=st.integers(0, 3), ceil_mode=st.booleans(),
       divisor_override=st.one_of(st.none(), st.integers(-2, 3)))
def test_avg_pool2d_accepts_what_torch_accepts(seed, shape, kernel, stride, padding, ceil_mode, divisor_override):
    x = numpy.random.default_rng(seed).standard_normal(shape)
    kw = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode,
              divisor_override=divisor_override)
    try:
        torch_oracle.avg_pool2d(x, **kw)
        torch_ok = True
    except (RuntimeError, ValueError):
        torch_ok = False
    if torch_ok:
        gpuconv.avg_pool2d(x, **kw)
    else:
        with pytest.raises(ValueError):
            gpuconv.avg_pool2d(x, **kw)
