"""Issue 14, class 3: no op warns or raises because of the values in valid arrays.

Every public op and backward on the NumPy path, with inputs holding inf, -inf and NaN (inf and -inf in one
window), and float16 values whose products and sums overflow, under a caller's numpy.errstate(all="raise")
and with warnings turned into errors. The old code raised FloatingPointError in pooling (forward and
backward), max_pool2d_backward and conv2d_backward with padding_mode="reflect".
"""

from __future__ import annotations

import warnings

import numpy
import pytest

import gpuconv

DTYPES = [numpy.float16, numpy.float32, numpy.float64]


def _special(shape, dtype, seed):
    """Random values with inf, -inf and NaN sprinkled in, and (float16) values near its maximum, so that
    sums, products and divisions overflow and meet inf - inf."""
    rng = numpy.random.default_rng(seed)
    a = rng.standard_normal(shape)
    if dtype == numpy.float16:
        a *= 6e4
    flat = a.reshape(-1)
    flat[::7] = numpy.inf
    flat[3::7] = -numpy.inf
    flat[5::11] = numpy.nan
    with numpy.errstate(over="ignore"):  # float16: the largest values become inf, as intended
        return a.astype(dtype)


def _ops(dtype):
    x = _special((2, 4, 7, 7), dtype, 1)
    w = _special((4, 4, 3, 3), dtype, 2)
    wd = _special((4, 1, 3, 3), dtype, 3)
    b = _special((4,), dtype, 4)
    gy = _special((2, 4, 7, 7), dtype, 5)  # conv2d with padding 1 keeps 7x7
    gy2 = _special((2, 4, 4, 4), dtype, 6)  # stride 2
    gyt = _special((2, 4, 13, 13), dtype, 7)  # conv_transpose2d stride 2 -> 13x13
    gyp = _special((2, 4, 3, 3), dtype, 8)  # pool 3 stride 2 -> 3x3
    _, idx = gpuconv.max_pool2d(numpy.arange(x.size, dtype=dtype).reshape(x.shape) % 97, 3, 2,
                                return_indices=True)
    ops = {
        "conv2d": lambda: gpuconv.conv2d(x, w, b, padding=1),
        "conv2d_stride2": lambda: gpuconv.conv2d(x, w, b, stride=2, padding=1),
        "conv2d_depthwise": lambda: gpuconv.conv2d(x, wd, b, padding=1, groups=4),
        "conv2d_dilated": lambda: gpuconv.conv2d(x, w, b, padding=2, dilation=2),
        "conv2d_transpose": lambda: gpuconv.conv_transpose2d(x, w, b, stride=2, padding=1),
        "conv2d_transpose_1": lambda: gpuconv.conv_transpose2d(x, w, b, padding=1),
        "max_pool2d": lambda: gpuconv.max_pool2d(x, 3, 2, 1, return_indices=True),
        "max_pool2d_dilated": lambda: gpuconv.max_pool2d(x, 2, 1, 1, dilation=2, ceil_mode=True),
        "avg_pool2d": lambda: gpuconv.avg_pool2d(x, 3, 2, 1),
        "avg_pool2d_ceil": lambda: gpuconv.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
        "avg_pool2d_divisor": lambda: gpuconv.avg_pool2d(x, 2, divisor_override=3),
        "avg_pool2d_tiles": lambda: gpuconv.avg_pool2d(x, 2, 2),
        "max_pool2d_backward": lambda: gpuconv.max_pool2d_backward(gyp, idx, x.shape),
        "avg_pool2d_backward": lambda: gpuconv.avg_pool2d_backward(gyp, x.shape, 3, 2),
        "avg_pool2d_backward_pad": lambda: gpuconv.avg_pool2d_backward(gy2, x.shape, 3, 2, 1),
    }
    for mode in ("zeros", "reflect", "replicate", "circular"):
        ops[f"conv2d_{mode}"] = lambda mode=mode: gpuconv.conv2d(x, w, b, padding=1, padding_mode=mode)
        ops[f"conv2d_backward_{mode}"] = lambda mode=mode: gpuconv.conv2d_backward(
            gy, x, w, padding=1, padding_mode=mode)
    ops["conv2d_backward_stride2"] = lambda: gpuconv.conv2d_backward(gy2, x, w, stride=2, padding=1)
    ops["conv2d_backward_depthwise"] = lambda: gpuconv.conv2d_backward(gy, x, wd, padding=1, groups=4)
    ops["conv_transpose2d_backward"] = lambda: gpuconv.conv_transpose2d_backward(gyt, x, w, stride=2, padding=1)
    return ops


CASES = [(dtype, name) for dtype in DTYPES for name in _ops(numpy.float64)]


@pytest.mark.parametrize("dtype, name", CASES, ids=[f"{numpy.dtype(d).name}-{n}" for d, n in CASES])
def test_no_warning_and_no_raise_from_values(dtype, name):
    call = _ops(dtype)[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with numpy.errstate(all="raise"):
            first = call()
        with numpy.errstate(all="warn"):
            second = call()
    # and the caller's state is left as it was
    assert numpy.geterr()["invalid"] in ("warn", "raise", "ignore", "call", "print", "log")
    for a, b in zip(first if isinstance(first, tuple) else (first,), second if isinstance(second, tuple) else (second,)):
        if a is not None:
            numpy.testing.assert_array_equal(a, b)


def test_the_callers_state_is_untouched():
    x = _special((1, 2, 5, 5), numpy.float32, 9)
    with numpy.errstate(all="raise"):
        gpuconv.avg_pool2d(x, 2)
        assert numpy.geterr() == {"divide": "raise", "over": "raise", "under": "raise", "invalid": "raise"}
        with pytest.raises(FloatingPointError):
            numpy.float32(numpy.inf) - numpy.float32(numpy.inf)
