"""Oracles that need no framework, in float64, for the 1-d, 3-d and adaptive ops on every backend:

- adjoints: <op(x, w), g> == <x, grad_input> == <w, grad_weight> for conv1d/3d (every padding mode) and
  conv_transpose1d/3d over their whole tables; <pool(x), g> == <x, grad_input> for average pooling,
  adaptive average pooling, and max / adaptive max pooling given their indices;
- finite differences of L = <op(...), g> along a random direction, on a few rows of each table;
- conv_transpose{1,3}d is conv{1,3}d's grad_input.
"""

from __future__ import annotations

import numpy
import pytest

import cases_nd
import gpuconv
import reference_nd
from helpers import random_array
from test_identities import _abs_dot, _assert_equal_sums, _check_directional, _dot

F64 = numpy.float64


def _table(**tables):
    return [pytest.param(p.values[0], id=f"{name}-{p.id}") for name, table in tables.items() for p in table]


def _op(name, nd):
    return getattr(gpuconv, name.format(nd=nd))


def _some(table, ids):
    chosen = [p for p in table if p.id.split("-", 1)[1] in ids]
    assert chosen, ids
    return chosen


CONV = _table(conv1d=cases_nd.CONV1D, conv3d=cases_nd.CONV3D)
CONV_TRANSPOSE = _table(conv_transpose1d=cases_nd.CONV_TRANSPOSE1D, conv_transpose3d=cases_nd.CONV_TRANSPOSE3D)
MAX_POOL = _table(max_pool1d=cases_nd.MAX_POOL1D, max_pool3d=cases_nd.MAX_POOL3D)
AVG_POOL = _table(avg_pool1d=cases_nd.AVG_POOL1D, avg_pool3d=cases_nd.AVG_POOL3D)
FD_IDS = ("basic", "stride2", "groups2", "same_dilated_odd_total", "reflect", "circular_stride_dilation_groups",
          "replicate", "unbatched", "k4_s2_p1", "k3_s2_p1_outpad", "output_padding_asym", "depthwise",
          "k3_s2_p1", "3x3x3_s2_p1", "ceil_mode_window_past_padding_exclude", "divisor_override",
          "dilation_asym_pad", "overlapping_s1")


# ---------------------------------------------------------------------------------------- convolution


@pytest.mark.parametrize("case", CONV)
def test_conv_adjoint(backend, case, rng):
    conv, conv_backward = _op("conv{nd}d", case.nd), _op("conv{nd}d_backward", case.nd)
    x, w, b, g = (backend.put(a) for a in case.arrays(rng, F64))
    y = conv(x, w, None, **case.kwargs())
    gx, gw, gb = conv_backward(g, x, w, **case.kwargs())
    scale = _abs_dot(backend, y, g) + _abs_dot(backend, x, gx) + _abs_dot(backend, w, gw)
    _assert_equal_sums([("<conv(x, w), g>", _dot(backend, y, g)), ("<x, grad_input>", _dot(backend, x, gx)),
                        ("<w, grad_weight>", _dot(backend, w, gw))], scale, "conv adjoint")
    if b is not None:
        yb = conv(x, w, b, **case.kwargs())
        _assert_equal_sums([("<conv(x, w, b) - conv(x, w), g>", _dot(backend, yb - y, g)),
                            ("<b, grad_bias>", _dot(backend, b, gb))],
                           _abs_dot(backend, yb - y, g) + _abs_dot(backend, b, gb), "conv bias adjoint")


@pytest.mark.parametrize("case", _some(CONV, FD_IDS))
def test_conv_finite_differences(backend, case, rng):
    conv, conv_backward = _op("conv{nd}d", case.nd), _op("conv{nd}d_backward", case.nd)
    x, w, b, g = case.arrays(rng, F64)
    if b is None:
        b = random_array(rng, (w.shape[0],), F64)
    gd = backend.put(g)

    def loss(x_, w_, b_):
        return _dot(backend, conv(x_, w_, b_, **case.kwargs()), gd)

    grads = conv_backward(gd, backend.put(x), backend.put(w), **case.kwargs())
    _check_directional(backend, loss, (x, w, b), grads, rng, f"conv{case.nd}d")


ROW_CASES = [p for p in CONV if p.values[0].padding_mode == "zeros" and not isinstance(p.values[0].padding, str)
             and p.values[0].x[0] != 0]


@pytest.mark.parametrize("case", ROW_CASES)
def test_conv_transpose_is_conv_grad_input(backend, case, rng):
    """conv_transpose(grad_output, w) with the output_padding that restores the input size equals
    conv_backward's grad_input."""
    nd = case.nd
    x, w, _, g = case.arrays(rng, F64)
    xd, wd, gd = backend.put(x), backend.put(w), backend.put(g)
    gx = _op("conv{nd}d_backward", nd)(gd, xd, wd, **case.kwargs(), output_mask=(True, False, False))[0]
    s, p, d = (reference_nd.ntuple(v, nd) for v in (case.stride, case.padding, case.dilation))
    out_pad = tuple(size - ((n - 1) * si - 2 * pi + di * (k - 1) + 1)
                    for size, n, si, pi, di, k in zip(x.shape[-nd:], g.shape[-nd:], s, p, d, w.shape[2:]))
    y = _op("conv_transpose{nd}d", nd)(gd, wd, None, stride=case.stride, padding=case.padding,
                                       output_padding=out_pad, groups=case.groups, dilation=case.dilation)
    numpy.testing.assert_allclose(backend.get(y), backend.get(gx), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CONV_TRANSPOSE)
def test_conv_transpose_adjoint(backend, case, rng):
    convt, convt_backward = _op("conv_transpose{nd}d", case.nd), _op("conv_transpose{nd}d_backward", case.nd)
    x, w, b, g = (backend.put(a) for a in case.arrays(rng, F64))
    y = convt(x, w, None, **case.kwargs())
    gx, gw, gb = convt_backward(g, x, w, **case.kwargs())
    scale = _abs_dot(backend, y, g) + _abs_dot(backend, x, gx) + _abs_dot(backend, w, gw)
    _assert_equal_sums([("<conv_transpose(x, w), g>", _dot(backend, y, g)),
                        ("<x, grad_input>", _dot(backend, x, gx)), ("<w, grad_weight>", _dot(backend, w, gw))],
                       scale, "conv_transpose adjoint")
    if b is not None:
        yb = convt(x, w, b, **case.kwargs())
        _assert_equal_sums([("<bias part, g>", _dot(backend, yb - y, g)), ("<b, grad_bias>", _dot(backend, b, gb))],
                           _abs_dot(backend, yb - y, g) + _abs_dot(backend, b, gb), "conv_transpose bias adjoint")


@pytest.mark.parametrize("case", _some(CONV_TRANSPOSE, FD_IDS))
def test_conv_transpose_finite_differences(backend, case, rng):
    convt, convt_backward = _op("conv_transpose{nd}d", case.nd), _op("conv_transpose{nd}d_backward", case.nd)
    x, w, b, g = case.arrays(rng, F64)
    if b is None:
        b = random_array(rng, (w.shape[1] * case.groups,), F64)
    gd = backend.put(g)

    def loss(x_, w_, b_):
        return _dot(backend, convt(x_, w_, b_, **case.kwargs()), gd)

    grads = convt_backward(gd, backend.put(x), backend.put(w), **case.kwargs())
    _check_directional(backend, loss, (x, w, b), grads, rng, f"conv_transpose{case.nd}d")


# -------------------------------------------------------------------------------------------- pooling


@pytest.mark.parametrize("case", MAX_POOL)
def test_max_pool_adjoint(pool_backend, case, rng):
    backend = pool_backend
    """Given its indices max pooling is a selection, linear in x: <max_pool(x), g> == <x, grad_input>."""
    x, g = case.arrays(rng, F64)
    xd, gd = backend.put(x), backend.put(g)
    y, idx = _op("max_pool{nd}d", case.nd)(xd, **case.kwargs(), return_indices=True)
    gx = _op("max_pool{nd}d_backward", case.nd)(gd, idx, x.shape)
    _assert_equal_sums([("<max_pool(x), g>", _dot(backend, y, g)), ("<x, grad_input>", _dot(backend, xd, gx))],
                       _abs_dot(backend, y, g) + _abs_dot(backend, xd, gx), "max_pool adjoint")


@pytest.mark.parametrize("case", _some(MAX_POOL, FD_IDS))
def test_max_pool_finite_differences(pool_backend, case, rng):
    backend = pool_backend
    x, g = case.arrays(rng, F64)  # values 1/8 apart: a step of 1e-4 changes no winner
    gd = backend.put(g)
    pool = _op("max_pool{nd}d", case.nd)
    idx = pool(backend.put(x), **case.kwargs(), return_indices=True)[1]
    gx = _op("max_pool{nd}d_backward", case.nd)(gd, idx, x.shape)
    _check_directional(backend, lambda x_: _dot(backend, pool(x_, **case.kwargs()), gd), (x,), (gx,), rng,
                       f"max_pool{case.nd}d")


@pytest.mark.parametrize("case", AVG_POOL)
def test_avg_pool_adjoint_and_finite_differences(pool_backend, case, rng):
    backend = pool_backend
    x, g = case.arrays(rng, F64)
    xd, gd = backend.put(x), backend.put(g)
    pool = _op("avg_pool{nd}d", case.nd)
    y = pool(xd, **case.kwargs())
    gx = _op("avg_pool{nd}d_backward", case.nd)(gd, x.shape, **case.kwargs())
    _assert_equal_sums([("<avg_pool(x), g>", _dot(backend, y, g)), ("<x, grad_input>", _dot(backend, xd, gx))],
                       _abs_dot(backend, y, g) + _abs_dot(backend, xd, gx), "avg_pool adjoint")
    _check_directional(backend, lambda x_: _dot(backend, pool(x_, **case.kwargs()), gd), (x,), (gx,), rng,
                       f"avg_pool{case.nd}d")


@pytest.mark.parametrize("case", cases_nd.ADAPTIVE)
def test_adaptive_avg_adjoint_and_finite_differences(pool_backend, case, rng):
    backend = pool_backend
    x, g = case.avg_arrays(rng, F64)
    xd, gd = backend.put(x), backend.put(g)
    pool = _op("adaptive_avg_pool{nd}d", case.nd)
    y = pool(xd, case.output_size)
    gx = _op("adaptive_avg_pool{nd}d_backward", case.nd)(gd, x.shape)
    _assert_equal_sums([("<adaptive_avg(x), g>", _dot(backend, y, g)), ("<x, grad_input>", _dot(backend, xd, gx))],
                       _abs_dot(backend, y, g) + _abs_dot(backend, xd, gx), "adaptive_avg adjoint")
    _check_directional(backend, lambda x_: _dot(backend, pool(x_, case.output_size), gd), (x,), (gx,), rng,
                       f"adaptive_avg_pool{case.nd}d")


@pytest.mark.parametrize("case", cases_nd.ADAPTIVE)
def test_adaptive_max_adjoint_and_finite_differences(pool_backend, case, rng):
    backend = pool_backend
    x, g = case.max_arrays(rng, F64)
    xd, gd = backend.put(x), backend.put(g)
    pool = _op("adaptive_max_pool{nd}d", case.nd)
    y, idx = pool(xd, case.output_size, return_indices=True)
    gx = _op("adaptive_max_pool{nd}d_backward", case.nd)(gd, idx, x.shape)
    _assert_equal_sums([("<adaptive_max(x), g>", _dot(backend, y, g)), ("<x, grad_input>", _dot(backend, xd, gx))],
                       _abs_dot(backend, y, g) + _abs_dot(backend, xd, gx), "adaptive_max adjoint")
    _check_directional(backend, lambda x_: _dot(backend, pool(x_, case.output_size), gd), (x,), (gx,), rng,
                       f"adaptive_max_pool{case.nd}d")
