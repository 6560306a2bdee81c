"""Oracles that need no framework, in float64 over the whole case tables on every backend:

- adjoints: for an op linear in each argument, <op(x, w), g> == <x, grad_input> == <w, grad_weight>
  (conv2d with every padding mode, conv_transpose2d, avg pooling; max pooling given its indices);
- finite differences: the directional derivative of L = <op(...), g> along a random direction v,
  (L(a + h v) - L(a - h v)) / 2h, equals <grad_a, v>;
- conv_transpose2d is conv2d's grad_input.
"""

from __future__ import annotations

import numpy
import pytest

import cases
import gpuconv
from helpers import random_array

F64 = numpy.float64
H = 1e-4  # finite-difference step; max-pool inputs are 1/8 apart, so the winners cannot change


def _dot(backend, a, b):
    return float(numpy.vdot(backend.get(a), backend.get(b)))


def _abs_dot(backend, a, b):
    return float(numpy.vdot(numpy.abs(backend.get(a)), numpy.abs(backend.get(b))))


def _assert_equal_sums(values, scale, what, rtol=1e-12):
    """Every value in ``values`` equals the first, relative to ``scale`` (a sum of absolute terms)."""
    for name, v in values[1:]:
        assert abs(v - values[0][1]) <= rtol * scale + 1e-300, (
            f"{what}: {values[0][0]} = {values[0][1]!r} but {name} = {v!r} (scale {scale:.3g})")


def _check_directional(backend, loss, args, grads, rng, what):
    """For each argument i with a gradient: (loss(.., a_i + h v, ..) - loss(.., a_i - h v, ..)) / 2h ==
    <grad_i, v> for a random direction v. ``args`` are NumPy arrays; loss takes backend arrays."""
    for i, (a, g) in enumerate(zip(args, grads)):
        if g is None or a.size == 0:
            continue
        v = random_array(rng, a.shape, F64)
        plus = [backend.put(b) for b in args]
        minus = list(plus)
        plus[i], minus[i] = backend.put(a + H * v), backend.put(a - H * v)
        numeric = (loss(*plus) - loss(*minus)) / (2 * H)
        analytic = float(numpy.vdot(backend.get(g), v))
        scale = float(numpy.vdot(numpy.abs(backend.get(g)), numpy.abs(v)))
        assert abs(numeric - analytic) <= 1e-8 * scale + 1e-12, (
            f"{what}, argument {i}: finite difference {numeric!r}, gradient gives {analytic!r}")


# ------------------------------------------------------------------------------------------- conv2d


@pytest.mark.parametrize("case", cases.CONV2D)
def test_conv2d_adjoint(backend, case, rng):
    x, w, b, g = (backend.put(a) for a in case.arrays(rng, F64))
    y = gpuconv.conv2d(x, w, None, **case.kwargs())
    gx, gw, gb = gpuconv.conv2d_backward(g, x, w, **case.kwargs())
    scale = _abs_dot(backend, y, g) + _abs_dot(backend, x, gx) + _abs_dot(backend, w, gw)
    _assert_equal_sums([("<conv2d(x, w), g>", _dot(backend, y, g)), ("<x, grad_input>", _dot(backend, x, gx)),
                        ("<w, grad_weight>", _dot(backend, w, gw))], scale, "conv2d adjoint")
    if b is not None:
        yb = gpuconv.conv2d(x, w, b, **case.kwargs())
        _assert_equal_sums([("<conv2d(x, w, b) - conv2d(x, w), g>", _dot(backend, yb - y, g)),
                            ("<b, grad_bias>", _dot(backend, b, gb))],
                           _abs_dot(backend, yb - y, g) + _abs_dot(backend, b, gb), "conv2d bias adjoint")


@pytest.mark.parametrize("case", cases.CONV2D)
def test_conv2d_finite_differences(backend, case, rng):
    x, w, b, g = case.arrays(rng, F64)
    if b is None:
        b = random_array(rng, (w.shape[0],), F64)
    gd = backend.put(g)

    def loss(x_, w_, b_):
        return _dot(backend, gpuconv.conv2d(x_, w_, b_, **case.kwargs()), gd)

    grads = gpuconv.conv2d_backward(gd, backend.put(x), backend.put(w), **case.kwargs())
    _check_directional(backend, loss, (x, w, b), grads, rng, "conv2d")


ROW_CASES = [p for p in cases.CONV2D
             if p.values[0].padding_mode == "zeros" and not isinstance(p.values[0].padding, str)]


@pytest.mark.parametrize("case", ROW_CASES)
def test_conv_transpose2d_is_conv2d_grad_input(backend, case, rng):
    """conv_transpose2d(grad_output, w) with the output_padding that restores the input size equals
    conv2d_backward's grad_input."""
    c = case
    x, w, _, g = c.arrays(rng, F64)
    if x.shape[0] == 0:
        pytest.skip("empty batch")
    xd, wd, gd = backend.put(x), backend.put(w), backend.put(g)
    gx = gpuconv.conv2d_backward(gd, xd, wd, **c.kwargs(), output_mask=(True, False, False))[0]
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    (sh, sw), (ph, pw), (dh, dw) = pair(c.stride), pair(c.padding), pair(c.dilation)
    P, Q = g.shape[-2:]
    out_pad = tuple(size - ((n - 1) * s - 2 * p + d * (k - 1) + 1)
                    for size, n, s, p, d, k in ((x.shape[-2], P, sh, ph, dh, w.shape[2]),
                                                (x.shape[-1], Q, sw, pw, dw, w.shape[3])))
    y = gpuconv.conv_transpose2d(gd, wd, None, stride=c.stride, padding=c.padding, output_padding=out_pad,
                                 groups=c.groups, dilation=c.dilation)
    numpy.testing.assert_allclose(backend.get(y), backend.get(gx), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------- conv_transpose2d


@pytest.mark.parametrize("case", cases.CONV_TRANSPOSE2D)
def test_conv_transpose2d_adjoint(backend, case, rng):
    x, w, b, g = (backend.put(a) for a in case.arrays(rng, F64))
    y = gpuconv.conv_transpose2d(x, w, None, **case.kwargs())
    gx, gw, gb = gpuconv.conv_transpose2d_backward(g, x, w, **case.kwargs())
    scale = _abs_dot(backend, y, g) + _abs_dot(backend, x, gx) + _abs_dot(backend, w, gw)
    _assert_equal_sums([("<conv_transpose2d(x, w), g>", _dot(backend, y, g)),
                        ("<x, grad_input>", _dot(backend, x, gx)), ("<w, grad_weight>", _dot(backend, w, gw))],
                       scale, "conv_transpose2d adjoint")
    if b is not None:
        yb = gpuconv.conv_transpose2d(x, w, b, **case.kwargs())
        sums = [("<bias part, g>", _dot(backend, yb - y, g)), ("<b, grad_bias>", _dot(backend, b, gb))]
        scale = _abs_dot(backend, yb - y, g) + _abs_dot(backend, b, gb)
        _assert_equal_sums(sums, scale, "conv_transpose2d bias adjoint")


@pytest.mark.parametrize("case", cases.CONV_TRANSPOSE2D)
def test_conv_transpose2d_finite_differences(backend, case, rng):
    x, w, b, g = case.arrays(rng, F64)
    if b is None:
        b = random_array(rng, (w.shape[1] * case.groups,), F64)
    gd = backend.put(g)

    def loss(x_, w_, b_):
        return _dot(backend, gpuconv.conv_transpose2d(x_, w_, b_, **case.kwargs()), gd)

    grads = gpuconv.conv_transpose2d_backward(gd, backend.put(x), backend.put(w), **case.kwargs())
    _check_directional(backend, loss, (x, w, b), grads, rng, "conv_transpose2d")


# -------------------------------------------------------------------------------------------- pooling


@pytest.mark.parametrize("case", cases.MAX_POOL2D)
def test_max_pool2d_adjoint_and_finite_differences(backend, case, rng):
    """Given its indices max pooling is a selection, linear in x: <max_pool2d(x), g> == <x, grad_input>."""
    x, g = case.arrays(rng, F64)
    xd, gd = backend.put(x), backend.put(g)
    y, idx = gpuconv.max_pool2d(xd, **case.kwargs(), return_indices=True)
    gx = gpuconv.max_pool2d_backward(gd, idx, x.shape)
    _assert_equal_sums([("<max_pool2d(x), g>", _dot(backend, y, g)), ("<x, grad_input>", _dot(backend, xd, gx))],
                       _abs_dot(backend, y, g) + _abs_dot(backend, xd, gx), "max_pool2d adjoint")

    def loss(x_):
        return _dot(backend, gpuconv.max_pool2d(x_, **case.kwargs()), gd)

    _check_directional(backend, loss, (x,), (gx,), rng, "max_pool2d")


@pytest.mark.parametrize("case", cases.AVG_POOL2D)
def test_avg_pool2d_adjoint_and_finite_differences(backend, case, rng):
    x, g = case.arrays(rng, F64)
    xd, gd = backend.put(x), backend.put(g)
    y = gpuconv.avg_pool2d(xd, **case.kwargs())
    gx = gpuconv.avg_pool2d_backward(gd, x.shape, **case.kwargs())
    _assert_equal_sums([("<avg_pool2d(x), g>", _dot(backend, y, g)), ("<x, grad_input>", _dot(backend, xd, gx))],
                       _abs_dot(backend, y, g) + _abs_dot(backend, xd, gx), "avg_pool2d adjoint")

    def loss(x_):
        return _dot(backend, gpuconv.avg_pool2d(x_, **case.kwargs()), gd)

    _check_directional(backend, loss, (x,), (gx,), rng, "avg_pool2d")
