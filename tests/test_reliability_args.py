"""Issue 14, classes 4 and 6: extreme integer arguments and the kinds of arrays accepted.

Class 4: every integer argument of every op, past 32 bits (the kernels' size parameters), past int64 and
far past it (2**1100), is a ValueError that names the argument, as are the sizes a geometry implies (a
transposed convolution's output, a backward's input_shape): never OverflowError, MemoryError or NumPy's
"array is too big". The old code raised OverflowError for divisor_override=2**1100 and accepted 2**63.

Class 6: a non-native byte order float array ('>f4', as files hold them) computes like the native one and
gives native results; numpy.ma.MaskedArray is refused (its mask would be silently dropped), and so is
numpy.matrix (2-D only); other subclasses (numpy.memmap) compute as plain arrays.
"""

from __future__ import annotations

import re

import numpy
import pytest

import gpuconv

rng = numpy.random.default_rng(14)
X = rng.standard_normal((2, 3, 8, 8)).astype(numpy.float32)
W = rng.standard_normal((4, 3, 3, 3)).astype(numpy.float32)
WT = rng.standard_normal((3, 4, 3, 3)).astype(numpy.float32)
GY = gpuconv.conv2d(X, W, padding=1)
GYT = gpuconv.conv_transpose2d(X, WT, padding=1)
Y, IDX = gpuconv.max_pool2d(X, 2, return_indices=True)
GA = gpuconv.avg_pool2d(X, 2)

HUGE = [2**31, -(2**31) - 1, 2**63, 2**64 + 1, 2**1100, -(2**1100), numpy.uint64(2**63)]


def _calls(v):
    """(argument name, call with that argument = v)."""
    yield "stride", lambda: gpuconv.conv2d(X, W, stride=v)
    yield "padding", lambda: gpuconv.conv2d(X, W, padding=(1, v))
    yield "dilation", lambda: gpuconv.conv2d(X, W, dilation=v)
    yield "groups", lambda: gpuconv.conv2d(X, W, groups=v)
    yield "stride", lambda: gpuconv.conv2d_backward(GY, X, W, stride=v, padding=1)
    yield "groups", lambda: gpuconv.conv2d_backward(GY, X, W, padding=1, groups=v)
    yield "stride", lambda: gpuconv.conv_transpose2d(X, WT, stride=v)
    yield "padding", lambda: gpuconv.conv_transpose2d(X, WT, padding=v)
    yield "output_padding", lambda: gpuconv.conv_transpose2d(X, WT, output_padding=v)
    yield "dilation", lambda: gpuconv.conv_transpose2d(X, WT, dilation=v)
    yield "groups", lambda: gpuconv.conv_transpose2d(X, WT, groups=v)
    yield "dilation", lambda: gpuconv.conv_transpose2d_backward(GYT, X, WT, padding=1, dilation=v)
    yield "kernel_size", lambda: gpuconv.max_pool2d(X, v)
    yield "stride", lambda: gpuconv.max_pool2d(X, 2, (v, 1))
    yield "padding", lambda: gpuconv.max_pool2d(X, 2, 2, v)
    yield "dilation", lambda: gpuconv.max_pool2d(X, 2, 2, 0, v)
    yield "kernel_size", lambda: gpuconv.avg_pool2d(X, v)
    yield "stride", lambda: gpuconv.avg_pool2d(X, 2, v)
    yield "padding", lambda: gpuconv.avg_pool2d(X, 2, 2, v)
    yield "divisor_override", lambda: gpuconv.avg_pool2d(X, 2, divisor_override=v)
    yield "divisor_override", lambda: gpuconv.avg_pool2d_backward(GA, X.shape, 2, divisor_override=v)
    yield "kernel_size", lambda: gpuconv.avg_pool2d_backward(GA, X.shape, v)
    yield "input_shape", lambda: gpuconv.avg_pool2d_backward(GA, (2, 3, v, 8), 2)
    yield "input_shape", lambda: gpuconv.max_pool2d_backward(Y, IDX, (2, 3, 8, v))


CASES = [(name, v, call) for v in HUGE for name, call in _calls(v)]


@pytest.mark.parametrize("name, value, call", CASES, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(CASES)])
def test_huge_integer_argument_is_a_value_error_naming_it(name, value, call):
    with pytest.raises(ValueError) as info:
        call()
    assert name in str(info.value), str(info.value)
    assert len(str(info.value)) < 1000  # 2**1100 is not printed digit by digit


@pytest.mark.parametrize("value", [2**63, 2**1100])
def test_divisor_override_of_the_issue(value):
    """Was OverflowError (2**1100) and silently accepted (2**63); PyTorch refuses both."""
    with pytest.raises(ValueError, match="divisor_override"):
        gpuconv.avg_pool2d(X, 2, divisor_override=value)


IMPLIED = [
    ("output", lambda: gpuconv.conv_transpose2d(X, WT, stride=2**31 - 1)),  # (8-1)*(2^31-1) rows
    ("output", lambda: gpuconv.conv_transpose2d(X, WT, stride=(2**30, 2**30))),
    ("padded input", lambda: gpuconv.conv2d(X[:, :, :1, :1], W[..., :1, :1], padding=2**31 - 1)),
    ("input_shape", lambda: gpuconv.max_pool2d_backward(Y, IDX, (2, 3, 2**31 - 1, 2**31 - 1))),
    ("input_shape", lambda: gpuconv.avg_pool2d_backward(GA, (2, 3, 2**31 - 1, 2**31 - 1), 2**28, 2**28)),
]


@pytest.mark.parametrize("name, call", IMPLIED, ids=[f"{n}-{i}" for i, (n, _) in enumerate(IMPLIED)])
def test_implied_sizes_past_the_limits_are_value_errors(name, call):
    with pytest.raises(ValueError, match=name):
        call()


def test_numpy_integer_scalars_are_checked_too():
    with pytest.raises(ValueError, match="stride"):
        gpuconv.conv2d(X, W, stride=numpy.int64(2**40))
    y = gpuconv.conv2d(X, W, stride=numpy.int64(2), padding=numpy.int32(1))
    numpy.testing.assert_array_equal(y, gpuconv.conv2d(X, W, stride=2, padding=1))


# ---------------------------------------------------------------------------------------- class 6


def _all_ops(x, w, wt, gy, gyt, idx, ga):
    """Every op and backward, as a dict name -> result (tuples flattened)."""
    out = {
        "conv2d": gpuconv.conv2d(x, w, None, padding=1),
        "conv2d_backward": gpuconv.conv2d_backward(gy, x, w, padding=1),
        "conv_transpose2d": gpuconv.conv_transpose2d(x, wt, padding=1),
        "conv_transpose2d_backward": gpuconv.conv_transpose2d_backward(gyt, x, wt, padding=1),
        "max_pool2d": gpuconv.max_pool2d(x, 2, return_indices=True),
        "max_pool2d_backward": gpuconv.max_pool2d_backward(ga, idx, x.shape),
        "avg_pool2d": gpuconv.avg_pool2d(x, 3, 2, 1),
        "avg_pool2d_backward": gpuconv.avg_pool2d_backward(ga, x.shape, 2),
        "conv2d_reflect": gpuconv.conv2d(x, w, padding=1, padding_mode="reflect"),
        "conv2d_backward_reflect": gpuconv.conv2d_backward(gy, x, w, padding=1, padding_mode="reflect"),
    }
    return {k: (v if isinstance(v, tuple) else (v,)) for k, v in out.items()}


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_non_native_byte_order_computes_like_native(dtype):
    swapped = numpy.dtype(dtype).newbyteorder("S")
    native = [a.astype(dtype) for a in (X, W, WT, GY, GYT)] + [IDX, GA.astype(dtype)]
    other = [a.astype(swapped) for a in native[:5]] + [IDX, native[6].astype(swapped)]
    expected, got = _all_ops(*native), _all_ops(*other)
    for name in expected:
        for e, g in zip(expected[name], got[name]):
            assert g.dtype == e.dtype and g.dtype.isnative, (name, g.dtype)
            numpy.testing.assert_array_equal(g, e, err_msg=name)


def test_mixed_byte_orders_of_one_dtype_are_one_dtype():
    y = gpuconv.conv2d(X.astype(">f4"), W, padding=1)
    numpy.testing.assert_array_equal(y, gpuconv.conv2d(X, W, padding=1))


def test_masked_arrays_are_refused():
    xm = numpy.ma.masked_array(X, mask=X > 1)
    for call in (lambda: gpuconv.conv2d(xm, W), lambda: gpuconv.conv2d(X, numpy.ma.masked_array(W)),
                 lambda: gpuconv.max_pool2d(xm, 2), lambda: gpuconv.avg_pool2d(xm, 2),
                 lambda: gpuconv.max_pool2d_backward(numpy.ma.masked_array(GA), IDX, X.shape),
                 lambda: gpuconv.max_pool2d_backward(GA, numpy.ma.masked_array(IDX), X.shape),
                 lambda: gpuconv.conv2d_backward(numpy.ma.masked_array(GY), X, W, padding=1)):
        with pytest.raises(TypeError, match=r"MaskedArray.*masks are not supported"):
            call()


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_matrices_are_refused():
    with pytest.raises(TypeError, match=re.escape("numpy.matrix")):
        gpuconv.conv2d(X, numpy.matrix(W[0, 0]))


def test_memmap_computes_as_a_plain_array(tmp_path):
    path = tmp_path / "x.bin"
    mm = numpy.memmap(path, dtype=numpy.float32, mode="w+", shape=X.shape)
    mm[...] = X
    y = gpuconv.conv2d(mm, W, padding=1)
    assert type(y) is numpy.ndarray
    numpy.testing.assert_array_equal(y, gpuconv.conv2d(X, W, padding=1))
    gx, gw, gb = gpuconv.conv2d_backward(GY, mm, W, padding=1)
    assert type(gb) is numpy.ndarray and type(gw) is numpy.ndarray


def test_empty_batches_in_the_other_byte_order_give_native_zeros():
    x = numpy.zeros((0, 3, 8, 8), ">f4")
    outs = (gpuconv.conv2d(x, W.astype(">f4")), gpuconv.avg_pool2d(x, 2), gpuconv.max_pool2d(x, 2),
            *gpuconv.conv2d_backward(numpy.zeros((0, 4, 6, 6), ">f4"), x, W))
    for out in outs:
        assert out.dtype == numpy.float32 and out.dtype.isnative, out.dtype
