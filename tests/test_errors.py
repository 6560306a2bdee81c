"""One test per bad input: the exception type (ValueError for values and shapes, TypeError for non-arrays,
non-float dtypes, mixed dtypes and mixed NumPy/CuPy) and a message that names the problem. Nothing else
may escape: the type must be exactly the one expected (no IndexError, AttributeError, ...).
"""

from __future__ import annotations

import re

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuconv
from helpers import cupy_with_gpu

_rng = numpy.random.default_rng(20261122)


def arr(*shape, dtype=numpy.float32):
    return _rng.uniform(-1, 1, size=shape).astype(dtype)


X = arr(2, 3, 6, 6)  # conv input (N, C, H, W)
W = arr(4, 3, 3, 3)  # conv weight (K, C, R, S)
GY = gpuconv.conv2d(X, W)  # (2, 4, 4, 4)
WT = arr(3, 2, 3, 3)  # conv_transpose2d weight (C_in, C_out, R, S) for input X
GYT = gpuconv.conv_transpose2d(X, WT)  # (2, 2, 8, 8)
POOLED, INDICES = gpuconv.max_pool2d(X, 2, return_indices=True)  # (2, 3, 3, 3)



def row(id, call, exc, pattern, marks=()):
    """call: a no-argument function making one bad call; pattern: a regex the message must match."""
    return pytest.param(call, exc, pattern, id=id, marks=marks)


CONV2D_ERRORS = [
    row("input_2d", lambda: gpuconv.conv2d(arr(6, 6), W), ValueError, r"3-D.*4-D.*input.*\(6, 6\)"),
    row("input_5d", lambda: gpuconv.conv2d(arr(1, 2, 3, 6, 6), W), ValueError, r"input.*\(1, 2, 3, 6, 6\)"),
    row("input_0d", lambda: gpuconv.conv2d(numpy.array(1.0, numpy.float32), W), ValueError, r"input.*\(\)"),
    row("weight_3d", lambda: gpuconv.conv2d(X, arr(4, 3, 3)), ValueError, r"4-D weight.*\(4, 3, 3\)"),
    row("channel_mismatch", lambda: gpuconv.conv2d(X, arr(4, 2, 3, 3)), ValueError,
        r"groups=1.*\(4, 2, 3, 3\).*2 channels.*got 3 channels"),
    row("groups_not_dividing_out_channels", lambda: gpuconv.conv2d(arr(2, 4, 6, 6), arr(3, 2, 3, 3), groups=2),
        ValueError, r"groups=2.*divisible by 2.*\(3, 2, 3, 3\)"),
    row("groups_channel_mismatch", lambda: gpuconv.conv2d(X, arr(4, 1, 3, 3), groups=2), ValueError,
        r"groups=2.*2 channels.*got 3 channels"),
    row("groups_zero", lambda: gpuconv.conv2d(X, W, groups=0), ValueError, r"groups.*positive.*0"),
    row("groups_negative", lambda: gpuconv.conv2d(X, W, groups=-1), ValueError, r"groups.*positive.*-1"),
    row("groups_float", lambda: gpuconv.conv2d(X, W, groups=1.0), TypeError, r"groups.*int.*1\.0"),
    row("stride_zero", lambda: gpuconv.conv2d(X, W, stride=0), ValueError, r"stride.*positive.*\(0, 0\)"),
    row("stride_negative", lambda: gpuconv.conv2d(X, W, stride=(1, -1)), ValueError, r"stride.*positive.*\(1, -1\)"),
    row("stride_string", lambda: gpuconv.conv2d(X, W, stride="1"), TypeError, r"stride.*int"),
    row("stride_three_values", lambda: gpuconv.conv2d(X, W, stride=(1, 1, 1)), ValueError, r"stride.*\(1, 1, 1\)"),
    row("stride_beyond_int64", lambda: gpuconv.conv2d(X, W, stride=2**70), ValueError, r"stride"),
    row("dilation_zero", lambda: gpuconv.conv2d(X, W, dilation=0), ValueError, r"dilation.*positive.*\(0, 0\)"),
    row("dilation_negative", lambda: gpuconv.conv2d(X, W, dilation=(-2, 1)), ValueError,
        r"dilation.*positive.*\(-2, 1\)"),
    row("padding_negative", lambda: gpuconv.conv2d(X, W, padding=-1), ValueError,
        r"padding.*non-negative.*\(-1, -1\)"),
    row("padding_negative_pair", lambda: gpuconv.conv2d(X, W, padding=(0, -2)), ValueError,
        r"padding.*non-negative.*\(0, -2\)"),
    row("padding_unknown_string", lambda: gpuconv.conv2d(X, W, padding="sam"), ValueError,
        r"padding.*'valid'.*'same'.*'full'.*'sam'"),
    row("padding_same_strided", lambda: gpuconv.conv2d(X, W, padding="same", stride=2), ValueError,
        r"same.*stride.*\(2, 2\)"),
    row("kernel_larger_than_input", lambda: gpuconv.conv2d(X, arr(4, 3, 7, 3)), ValueError,
        r"\(6 x 6\).*kernel.*\(7 x 3\)"),
    row("dilated_kernel_larger_than_input", lambda: gpuconv.conv2d(X, W, dilation=3), ValueError,
        r"\(6 x 6\).*dilated kernel.*\(7 x 7\)"),
    row("bias_wrong_length", lambda: gpuconv.conv2d(X, W, arr(3)), ValueError, r"bias.*\(4,\).*\(3,?\)"),
    row("bias_2d", lambda: gpuconv.conv2d(X, W, arr(4, 1)), ValueError, r"bias.*\(4,\).*\(4, 1\)"),
    row("input_int", lambda: gpuconv.conv2d(X.astype(numpy.int32), W), TypeError, r"input.*float.*int32"),
    row("input_bool", lambda: gpuconv.conv2d(X > 0, W), TypeError, r"input.*float.*bool"),
    row("input_complex", lambda: gpuconv.conv2d(X.astype(numpy.complex64), W), TypeError,
        r"input.*float.*complex64"),
    row("weight_int", lambda: gpuconv.conv2d(X, W.astype(numpy.int64)), TypeError, r"weight.*float.*int64"),
    row("mixed_dtypes", lambda: gpuconv.conv2d(X, W.astype(numpy.float64)), TypeError,
        r"one dtype.*float32.*weight.*float64"),
    row("bias_dtype", lambda: gpuconv.conv2d(X, W, arr(4, dtype=numpy.float16)), TypeError,
        r"one dtype.*bias.*float16"),
    row("input_list", lambda: gpuconv.conv2d(X.tolist(), W), TypeError, r"input.*ndarray.*list"),
    row("input_scalar", lambda: gpuconv.conv2d(1.0, W), TypeError, r"input.*ndarray.*float"),
    row("weight_list", lambda: gpuconv.conv2d(X, W.tolist()), TypeError, r"weight.*ndarray.*list"),
    row("input_none", lambda: gpuconv.conv2d(None, W), TypeError, r"input.*ndarray.*None"),
    row("weight_none", lambda: gpuconv.conv2d(X, None), TypeError, r"weight.*ndarray.*None"),
    row("input_zero_height", lambda: gpuconv.conv2d(arr(2, 3, 0, 6), W), ValueError,
        r"non-zero.*\(2, 3, 0, 6\)"),
    row("padding_mode_unknown", lambda: gpuconv.conv2d(X, W, padding=1, padding_mode="mirror"), ValueError,
        r"padding_mode.*'reflect'.*'mirror'"),
    row("reflect_padding_not_below_size", lambda: gpuconv.conv2d(X, W, padding=6, padding_mode="reflect"),
        ValueError, r"reflect.*padding.*6.*height 6"),
    row("reflect_padding_not_below_size_same", lambda: gpuconv.conv2d(
        arr(1, 3, 2, 8), arr(4, 3, 5, 1), padding="same", padding_mode="reflect"), ValueError, r"reflect.*height 2"),
    row("circular_padding_above_size", lambda: gpuconv.conv2d(X, W, padding=(7, 0), padding_mode="circular"),
        ValueError, r"circular.*top=7.*height 6"),
]

CONV2D_BACKWARD_ERRORS = [
    row("grad_output_shape", lambda: gpuconv.conv2d_backward(arr(2, 4, 3, 3), X, W), ValueError,
        r"grad_output.*\(2, 4, 4, 4\).*got \(2, 4, 3, 3\)"),
    row("grad_output_unbatched_for_batched", lambda: gpuconv.conv2d_backward(GY[0], X, W), ValueError,
        r"grad_output.*\(2, 4, 4, 4\).*\(4, 4, 4\)"),
    row("grad_output_dtype", lambda: gpuconv.conv2d_backward(GY.astype(numpy.float64), X, W), TypeError,
        r"one dtype.*grad_output.*float64"),
    row("grad_output_list", lambda: gpuconv.conv2d_backward(GY.tolist(), X, W), TypeError,
        r"grad_output.*ndarray.*list"),
    row("grad_output_none", lambda: gpuconv.conv2d_backward(None, X, W), TypeError,
        r"grad_output.*ndarray.*None"),
    row("channel_mismatch", lambda: gpuconv.conv2d_backward(GY, X, arr(4, 2, 3, 3)), ValueError,
        r"2 channels.*got 3 channels"),
    row("output_mask_two_entries", lambda: gpuconv.conv2d_backward(GY, X, W, output_mask=(True, True)),
        TypeError, r"output_mask.*three bools"),
    row("output_mask_ints", lambda: gpuconv.conv2d_backward(GY, X, W, output_mask=(1, 1, 1)), TypeError,
        r"output_mask.*three bools.*\(1, 1, 1\)"),
    row("output_mask_none", lambda: gpuconv.conv2d_backward(GY, X, W, output_mask=None), TypeError,
        r"output_mask.*None"),
    row("output_mask_string", lambda: gpuconv.conv2d_backward(GY, X, W, output_mask="yes"), TypeError,
        r"output_mask"),
    row("reflect_padding_not_below_size",
        lambda: gpuconv.conv2d_backward(GY, X, W, padding=6, padding_mode="reflect"), ValueError, r"reflect"),
]

CONV_TRANSPOSE2D_ERRORS = [
    row("input_2d", lambda: gpuconv.conv_transpose2d(arr(6, 6), WT), ValueError, r"input.*\(6, 6\)"),
    row("weight_3d", lambda: gpuconv.conv_transpose2d(X, arr(3, 2, 3)), ValueError, r"4-D weight.*\(3, 2, 3\)"),
    row("channel_mismatch", lambda: gpuconv.conv_transpose2d(X, arr(4, 2, 3, 3)), ValueError,
        r"\(4, 2, 3, 3\).*4 channels.*got 3 channels"),
    row("groups_not_dividing_in_channels", lambda: gpuconv.conv_transpose2d(X, WT, groups=2), ValueError,
        r"groups=2.*divisible by 2.*\(3, 2, 3, 3\)"),
    row("stride_zero", lambda: gpuconv.conv_transpose2d(X, WT, stride=0), ValueError, r"stride.*positive"),
    row("dilation_zero", lambda: gpuconv.conv_transpose2d(X, WT, dilation=(1, 0)), ValueError,
        r"dilation.*positive.*\(1, 0\)"),
    row("padding_negative", lambda: gpuconv.conv_transpose2d(X, WT, padding=-1), ValueError,
        r"padding.*non-negative"),
    row("padding_string", lambda: gpuconv.conv_transpose2d(X, WT, padding="same"), ValueError,
        r"padding.*int.*'same'"),
    row("output_padding_not_below_stride_or_dilation",
        lambda: gpuconv.conv_transpose2d(X, WT, stride=2, output_padding=2), ValueError,
        r"output_padding.*smaller than.*stride.*dilation.*\(2, 2\)"),
    row("output_padding_without_stride", lambda: gpuconv.conv_transpose2d(X, WT, output_padding=(0, 1)),
        ValueError, r"output_padding.*\(0, 1\)"),
    row("output_padding_negative", lambda: gpuconv.conv_transpose2d(X, WT, output_padding=-1), ValueError,
        r"output_padding.*non-negative"),
    row("output_size_zero", lambda: gpuconv.conv_transpose2d(arr(1, 2, 1, 1), arr(2, 2, 2, 2), padding=1),
        ValueError, r"output size \(0 x 0\).*padding"),
    row("output_size_negative", lambda: gpuconv.conv_transpose2d(arr(1, 2, 2, 2), arr(2, 2, 2, 2), padding=3),
        ValueError, r"output size \(-3 x -3\)"),
    row("bias_wrong_length", lambda: gpuconv.conv_transpose2d(X, WT, arr(3)), ValueError, r"bias.*\(2,\)"),
    row("mixed_dtypes", lambda: gpuconv.conv_transpose2d(X, WT.astype(numpy.float16)), TypeError,
        r"one dtype.*float16"),
    row("input_int", lambda: gpuconv.conv_transpose2d(X.astype(numpy.int8), WT), TypeError, r"input.*int8"),
    row("input_list", lambda: gpuconv.conv_transpose2d(X.tolist(), WT), TypeError, r"input.*ndarray"),
    row("input_none", lambda: gpuconv.conv_transpose2d(None, WT), TypeError, r"input.*None"),
    row("backward_grad_output_shape", lambda: gpuconv.conv_transpose2d_backward(arr(2, 2, 7, 7), X, WT),
        ValueError, r"grad_output.*\(2, 2, 8, 8\).*\(2, 2, 7, 7\)"),
    row("backward_grad_output_none", lambda: gpuconv.conv_transpose2d_backward(None, X, WT), TypeError,
        r"grad_output.*None"),
    row("backward_output_mask", lambda: gpuconv.conv_transpose2d_backward(GYT, X, WT, output_mask=[True]),
        TypeError, r"output_mask"),
]

MAX_POOL2D_ERRORS = [
    row("input_2d", lambda: gpuconv.max_pool2d(arr(6, 6), 2), ValueError, r"input.*\(6, 6\)"),
    row("input_int", lambda: gpuconv.max_pool2d(X.astype(numpy.int64), 2), TypeError, r"input.*int64"),
    row("input_list", lambda: gpuconv.max_pool2d(X.tolist(), 2), TypeError, r"input.*ndarray.*list"),
    row("input_none", lambda: gpuconv.max_pool2d(None, 2), TypeError, r"input.*ndarray.*None"),
    row("kernel_zero", lambda: gpuconv.max_pool2d(X, 0), ValueError, r"kernel_size.*positive.*\(0, 0\)"),
    row("kernel_three_values", lambda: gpuconv.max_pool2d(X, (2, 2, 2)), ValueError, r"kernel_size.*\(2, 2, 2\)"),
    row("kernel_none", lambda: gpuconv.max_pool2d(X, None), TypeError, r"kernel_size.*None"),
    row("stride_zero", lambda: gpuconv.max_pool2d(X, 2, stride=0), ValueError, r"stride.*positive"),
    row("stride_beyond_int64", lambda: gpuconv.max_pool2d(X, 2, stride=2**70), ValueError, r"stride"),
    row("dilation_zero", lambda: gpuconv.max_pool2d(X, 2, dilation=0), ValueError, r"dilation.*positive"),
    row("padding_negative", lambda: gpuconv.max_pool2d(X, 2, padding=-1), ValueError, r"padding.*non-negative"),
    row("padding_over_half_kernel", lambda: gpuconv.max_pool2d(X, 2, padding=2), ValueError,
        r"padding.*half.*kernel.*\(2, 2\)"),
    row("padding_over_half_kernel_dilated", lambda: gpuconv.max_pool2d(X, 2, padding=2, dilation=3), ValueError,
        r"padding.*half.*kernel"),
    row("padding_string", lambda: gpuconv.max_pool2d(X, 2, padding="same"), ValueError, r"padding.*'same'"),
    row("kernel_larger_than_input", lambda: gpuconv.max_pool2d(X, 7), ValueError,
        r"output size \(0 x 0\).*too small.*kernel_size=\(7, 7\)"),
    row("ceil_mode_not_bool", lambda: gpuconv.max_pool2d(X, 2, ceil_mode=1), TypeError, r"ceil_mode.*bool"),
    row("return_indices_not_bool", lambda: gpuconv.max_pool2d(X, 2, return_indices="yes"), TypeError,
        r"return_indices.*bool"),
]

MAX_POOL2D_BACKWARD_ERRORS = [
    row("indices_out_of_range", lambda: gpuconv.max_pool2d_backward(POOLED, INDICES + 100, X.shape), ValueError,
        r"indices.*\[0, 36\).*6 x 6"),
    row("indices_one_past_the_end", lambda: gpuconv.max_pool2d_backward(
        POOLED, numpy.full_like(INDICES, 36), X.shape), ValueError, r"indices.*\[0, 36\).*36"),
    row("indices_negative", lambda: gpuconv.max_pool2d_backward(POOLED, INDICES - 100, X.shape), ValueError,
        r"indices.*\[0, 36\)"),
    row("indices_float", lambda: gpuconv.max_pool2d_backward(POOLED, INDICES.astype(numpy.float32), X.shape),
        TypeError, r"indices.*int64.*float32"),
    row("indices_bool", lambda: gpuconv.max_pool2d_backward(POOLED, INDICES > 3, X.shape), TypeError,
        r"indices.*int64.*bool"),
    row("indices_list", lambda: gpuconv.max_pool2d_backward(POOLED, INDICES.tolist(), X.shape), TypeError,
        r"indices.*ndarray.*list"),
    row("indices_none", lambda: gpuconv.max_pool2d_backward(POOLED, None, X.shape), TypeError,
        r"indices.*ndarray.*None"),
    row("indices_shape", lambda: gpuconv.max_pool2d_backward(POOLED, INDICES[:, :, :2], X.shape), ValueError,
        r"indices.*grad_output.*one shape.*\(2, 3, 2, 3\).*\(2, 3, 3, 3\)"),
    row("grad_output_channels_vs_input_shape", lambda: gpuconv.max_pool2d_backward(POOLED, INDICES, (2, 4, 6, 6)),
        ValueError, r"grad_output.*\(2, 3, 3, 3\).*input_shape.*\(2, 4, 6, 6\)"),
    row("grad_output_rank_vs_input_shape", lambda: gpuconv.max_pool2d_backward(POOLED, INDICES, (3, 6, 6)),
        ValueError, r"grad_output.*input_shape.*rank"),
    row("grad_output_int", lambda: gpuconv.max_pool2d_backward(INDICES, INDICES, X.shape), TypeError,
        r"grad_output.*float.*int64"),
    row("grad_output_none", lambda: gpuconv.max_pool2d_backward(None, INDICES, X.shape), TypeError,
        r"grad_output.*ndarray.*None"),
    row("input_shape_rank", lambda: gpuconv.max_pool2d_backward(POOLED, INDICES, (6, 6)), ValueError,
        r"input_shape.*\(6, 6\)"),
    row("input_shape_negative", lambda: gpuconv.max_pool2d_backward(POOLED, INDICES, (2, 3, -6, 6)), ValueError,
        r"input_shape.*negative"),
    row("input_shape_zero", lambda: gpuconv.max_pool2d_backward(POOLED, INDICES, (2, 3, 0, 6)), ValueError,
        r"non-zero.*\(2, 3, 0, 6\)"),
    row("input_shape_float", lambda: gpuconv.max_pool2d_backward(POOLED, INDICES, (2, 3, 6.0, 6)), TypeError,
        r"input_shape.*ints"),
    row("input_shape_none", lambda: gpuconv.max_pool2d_backward(POOLED, INDICES, None), TypeError,
        r"input_shape.*None"),
]

AVG_POOL2D_ERRORS = [
    row("input_2d", lambda: gpuconv.avg_pool2d(arr(6, 6), 2), ValueError, r"input.*\(6, 6\)"),
    row("input_int", lambda: gpuconv.avg_pool2d(X.astype(numpy.int16), 2), TypeError, r"input.*int16"),
    row("input_none", lambda: gpuconv.avg_pool2d(None, 2), TypeError, r"input.*ndarray.*None"),
    row("kernel_zero", lambda: gpuconv.avg_pool2d(X, (2, 0)), ValueError, r"kernel_size.*positive.*\(2, 0\)"),
    row("kernel_float", lambda: gpuconv.avg_pool2d(X, 2.0), TypeError, r"kernel_size.*2\.0"),
    row("stride_negative", lambda: gpuconv.avg_pool2d(X, 2, stride=-1), ValueError, r"stride.*positive"),
    row("padding_over_half_kernel", lambda: gpuconv.avg_pool2d(X, 3, padding=2), ValueError,
        r"padding.*half.*kernel"),
    row("kernel_larger_than_input", lambda: gpuconv.avg_pool2d(X, (2, 7)), ValueError, r"output size.*too small"),
    row("divisor_override_zero", lambda: gpuconv.avg_pool2d(X, 2, divisor_override=0), ValueError,
        r"divisor_override.*non-zero"),
    row("divisor_override_float", lambda: gpuconv.avg_pool2d(X, 2, divisor_override=1.5), TypeError,
        r"divisor_override.*1\.5"),
    row("count_include_pad_not_bool", lambda: gpuconv.avg_pool2d(X, 2, count_include_pad=None), TypeError,
        r"count_include_pad.*bool"),
    row("backward_grad_output_shape", lambda: gpuconv.avg_pool2d_backward(arr(2, 3, 2, 2), X.shape, 2),
        ValueError, r"grad_output.*\(2, 3, 3, 3\).*\(2, 3, 2, 2\)"),
    row("backward_input_shape_rank", lambda: gpuconv.avg_pool2d_backward(POOLED, (3, 6), 2), ValueError,
        r"input_shape.*\(3, 6\)"),
    row("backward_input_shape_zero", lambda: gpuconv.avg_pool2d_backward(POOLED, (2, 3, 0, 6), 2), ValueError,
        r"non-zero.*\(2, 3, 0, 6\)"),
    row("backward_input_shape_none", lambda: gpuconv.avg_pool2d_backward(POOLED, None, 2), TypeError,
        r"input_shape.*None"),
    row("backward_grad_output_int", lambda: gpuconv.avg_pool2d_backward(INDICES, X.shape, 2), TypeError,
        r"grad_output.*int64"),
    row("backward_grad_output_none", lambda: gpuconv.avg_pool2d_backward(None, X.shape, 2), TypeError,
        r"grad_output.*None"),
]


def _check(call, exc, pattern):
    with pytest.raises(Exception) as info:
        call()
    assert type(info.value) is exc, f"raised {type(info.value).__name__}: {info.value}, expected {exc.__name__}"
    assert re.search(pattern, str(info.value), re.DOTALL), f"message {str(info.value)!r} does not match {pattern!r}"


@pytest.mark.parametrize("call, exc, pattern", CONV2D_ERRORS)
def test_conv2d_error(call, exc, pattern):
    _check(call, exc, pattern)


@pytest.mark.parametrize("call, exc, pattern", CONV2D_BACKWARD_ERRORS)
def test_conv2d_backward_error(call, exc, pattern):
    _check(call, exc, pattern)


@pytest.mark.parametrize("call, exc, pattern", CONV_TRANSPOSE2D_ERRORS)
def test_conv_transpose2d_error(call, exc, pattern):
    _check(call, exc, pattern)


@pytest.mark.parametrize("call, exc, pattern", MAX_POOL2D_ERRORS)
def test_max_pool2d_error(call, exc, pattern):
    _check(call, exc, pattern)


@pytest.mark.parametrize("call, exc, pattern", MAX_POOL2D_BACKWARD_ERRORS)
def test_max_pool2d_backward_error(call, exc, pattern):
    _check(call, exc, pattern)


@pytest.mark.parametrize("dtype", ["<i8", ">i8"])
def test_max_pool2d_backward_indices_int64_in_either_byte_order(dtype):
    """int64 indices in either byte order give the same gradient; a single -1 or H*W anywhere is refused
    with the two-sided range."""
    expected = gpuconv.max_pool2d_backward(POOLED, INDICES, X.shape)
    indices = INDICES.astype(dtype)
    assert numpy.array_equal(gpuconv.max_pool2d_backward(POOLED, indices, X.shape), expected)
    for bad in (-1, 36, -(2**63), 2**63 - 1):
        wrong = indices.copy()
        wrong[1, 2, 0, 1] = bad
        lo, hi = min(int(INDICES.min()), bad), max(int(INDICES.max()), bad)
        _check(lambda: gpuconv.max_pool2d_backward(POOLED, wrong, X.shape), ValueError,
               rf"\[0, 36\).*found values in \[{lo}, {hi}\]")


@pytest.mark.parametrize("dtype", ["<i4", ">i4", "i2", "i1", "<u8", ">u4", "u1", "bool"])
def test_max_pool2d_backward_indices_other_than_int64_are_refused(dtype):
    """Only int64, as PyTorch: the old range check viewed int8 -1 as 255 and let it misroute the gradient."""
    _check(lambda: gpuconv.max_pool2d_backward(POOLED, INDICES.astype(dtype), X.shape), TypeError,
           rf"indices must have dtype int64.*{numpy.dtype(dtype)}")


@pytest.mark.parametrize("call, exc, pattern", AVG_POOL2D_ERRORS)
def test_avg_pool2d_error(call, exc, pattern):
    _check(call, exc, pattern)


# ------------------------------------------------------------------------------- NumPy mixed with CuPy


class _StandInCupyArray:
    """Looks like a cupy.ndarray to gpuconv's array-kind check (module and class name), so the NumPy/CuPy
    mix is checked without a GPU; the check must fire before anything touches the array's data."""

    __module__ = "cupy._core.core"
    dtype = numpy.dtype(numpy.float32)
    ndim = 4

    def __init__(self, shape):
        self.shape = shape
        self.size = int(numpy.prod(shape))


_StandInCupyArray.__name__ = _StandInCupyArray.__qualname__ = "ndarray"

F32, I64 = numpy.dtype(numpy.float32), numpy.dtype(numpy.int64)

# (call, dtype of the CuPy-side array): each call gets a function making that array from a shape.
MIXED_KIND_CALLS = [
    pytest.param(lambda c: gpuconv.conv2d(X, c(W.shape)), F32, id="conv2d_weight"),
    pytest.param(lambda c: gpuconv.conv2d(X, W, c((4,))), F32, id="conv2d_bias"),
    pytest.param(lambda c: gpuconv.conv2d_backward(c(GY.shape), X, W), F32, id="conv2d_backward_grad_output"),
    pytest.param(lambda c: gpuconv.conv_transpose2d(X, c(WT.shape)), F32, id="conv_transpose2d_weight"),
    pytest.param(lambda c: gpuconv.conv_transpose2d_backward(GYT, X, c(WT.shape)), F32,
                 id="conv_transpose2d_backward_weight"),
    pytest.param(lambda c: gpuconv.max_pool2d_backward(POOLED, c(INDICES.shape), X.shape), I64,
                 id="max_pool2d_backward_indices"),
]


@pytest.mark.parametrize("call, dtype", MIXED_KIND_CALLS)
def test_numpy_mixed_with_cupy_stand_in(call, dtype):
    def stand_in(shape):
        a = _StandInCupyArray(shape)
        a.dtype = dtype
        return a

    _check(lambda: call(stand_in), TypeError, r"numpy.*cupy|cupy.*numpy")


@pytest.mark.parametrize("call, dtype", MIXED_KIND_CALLS)
def test_numpy_mixed_with_cupy(call, dtype):
    cupy = cupy_with_gpu()
    if cupy is None:
        pytest.skip("needs CuPy and a GPU")
    _check(lambda: call(lambda shape: cupy.zeros(shape, dtype=dtype)), TypeError, r"numpy.*cupy|cupy.*numpy")


# ------------------------------------------------------------------------------------ nothing else escapes

sizes = st.integers(0, 4)
shapes = st.lists(sizes, min_size=1, max_size=5).map(tuple)
small_ints = st.integers(-1, 4)
int_args = st.one_of(small_ints, st.tuples(small_ints, small_ints), st.lists(small_ints, max_size=3).map(tuple))
paddings = st.one_of(int_args, st.sampled_from(("valid", "same", "full", "bad")))
float_dtypes = st.sampled_from((numpy.float16, numpy.float32, numpy.float64))
modes = st.sampled_from(("zeros", "reflect", "replicate", "circular", "bad"))


def _only_value_or_type_errors(call):
    """The call either works or raises ValueError / TypeError: never IndexError, ZeroDivisionError, ..."""
    try:
        call()
    except (ValueError, TypeError):
        pass


@given(x=shapes, w=shapes, bias=st.booleans(), stride=int_args, padding=paddings, dilation=int_args,
       groups=st.integers(-1, 3), mode=modes, dtype=float_dtypes)
def test_conv2d_random_arguments_raise_only_value_or_type_errors(x, w, bias, stride, padding, dilation, groups,
                                                                  mode, dtype):
    xa, wa = numpy.ones(x, dtype), numpy.ones(w, dtype)
    b = numpy.ones(w[:1], dtype) if bias else None
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    _only_value_or_type_errors(lambda: gpuconv.conv2d(xa, wa, b, **kw, padding_mode=mode))
    _only_value_or_type_errors(lambda: gpuconv.conv2d_backward(numpy.ones(x, dtype), xa, wa, **kw, padding_mode=mode))


@given(x=shapes, w=shapes, stride=int_args, padding=int_args, output_padding=int_args, dilation=int_args,
       groups=st.integers(-1, 3), dtype=float_dtypes)
def test_conv_transpose2d_random_arguments_raise_only_value_or_type_errors(x, w, stride, padding, output_padding,
                                                                            dilation, groups, dtype):
    xa, wa = numpy.ones(x, dtype), numpy.ones(w, dtype)
    kw = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
    _only_value_or_type_errors(lambda: gpuconv.conv_transpose2d(xa, wa, **kw))
    _only_value_or_type_errors(lambda: gpuconv.conv_transpose2d_backward(numpy.ones(x, dtype), xa, wa, **kw))


@given(x=shapes, kernel=int_args, stride=st.one_of(st.none(), int_args), padding=int_args, dilation=int_args,
       ceil_mode=st.booleans(), divisor=st.one_of(st.none(), small_ints), count_include_pad=st.booleans(),
       indices=st.lists(st.integers(-2, 40), min_size=1, max_size=8), dtype=float_dtypes)
def test_pooling_random_arguments_raise_only_value_or_type_errors(x, kernel, stride, padding, dilation, ceil_mode,
                                                                   divisor, count_include_pad, indices, dtype):
    xa = numpy.ones(x, dtype)
    pool = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)
    _only_value_or_type_errors(lambda: gpuconv.max_pool2d(xa, **pool, dilation=dilation, return_indices=True))
    avg = dict(pool, count_include_pad=count_include_pad, divisor_override=divisor)
    _only_value_or_type_errors(lambda: gpuconv.avg_pool2d(xa, **avg))
    _only_value_or_type_errors(lambda: gpuconv.avg_pool2d_backward(xa, x, **avg))
    idx = numpy.resize(numpy.array(indices, dtype=numpy.int64), x)
    _only_value_or_type_errors(lambda: gpuconv.max_pool2d_backward(xa, idx, x))
