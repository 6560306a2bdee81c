"""One test per bad input for the 1-d, 3-d and adaptive ops, in the style of test_errors.py: the exact
exception type (ValueError for values and shapes, TypeError for non-arrays, non-float dtypes, mixed dtypes
and arguments of the wrong kind) and a message that names the argument and its value. Then hypothesis:
random arguments raise nothing but ValueError / TypeError.
"""

from __future__ import annotations

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuconv
from test_errors import _check, row

_rng = numpy.random.default_rng(20261207)


def arr(*shape, dtype=numpy.float32):
    return _rng.uniform(-1, 1, size=shape).astype(dtype)


X1, W1 = arr(2, 3, 8), arr(4, 3, 3)  # conv1d input (N, C, L), weight (K, C, k)
X3, W3 = arr(2, 3, 4, 5, 6), arr(4, 3, 3, 3, 3)  # conv3d input (N, C, D, H, W), weight (K, C, T, R, S)
WT1, WT3 = arr(3, 2, 3), arr(3, 2, 3, 3, 3)  # transposed weights (C_in, C_out, ...)
GY1, GY3 = gpuconv.conv1d(X1, W1), gpuconv.conv3d(X3, W3)  # (2, 4, 6), (2, 4, 2, 3, 4)
GYT3 = gpuconv.conv_transpose3d(X3, WT3)  # (2, 2, 6, 7, 8)
P3, I3 = gpuconv.max_pool3d(X3, 2, return_indices=True)  # (2, 3, 2, 2, 3)
P1, I1 = gpuconv.max_pool1d(X1, 2, return_indices=True)  # (2, 3, 4)
A3, J3 = gpuconv.adaptive_max_pool3d(X3, 2, return_indices=True)  # (2, 3, 2, 2, 2)


CONV1D_ERRORS = [
    row("input_1d", lambda: gpuconv.conv1d(arr(8), W1), ValueError, r"2-D.*3-D.*input.*\(8,\)"),
    row("input_4d", lambda: gpuconv.conv1d(arr(2, 3, 8, 8), W1), ValueError, r"2-D.*3-D.*input.*\(2, 3, 8, 8\)"),
    row("weight_4d", lambda: gpuconv.conv1d(X1, arr(4, 3, 3, 3)), ValueError, r"3-D weight.*kW.*\(4, 3, 3, 3\)"),
    row("weight_2d", lambda: gpuconv.conv1d(X1, arr(4, 3)), ValueError, r"3-D weight.*\(4, 3\)"),
    row("channel_mismatch", lambda: gpuconv.conv1d(X1, arr(4, 2, 3)), ValueError,
        r"groups=1.*\(4, 2, 3\).*2 channels.*got 3 channels"),
    row("groups_channel_mismatch", lambda: gpuconv.conv1d(X1, arr(4, 1, 3), groups=2), ValueError,
        r"groups=2.*2 channels.*got 3 channels"),
    row("groups_not_dividing_out_channels", lambda: gpuconv.conv1d(arr(2, 4, 8), arr(3, 2, 3), groups=2),
        ValueError, r"groups=2.*divisible by 2.*\(3, 2, 3\)"),
    row("stride_two_values", lambda: gpuconv.conv1d(X1, W1, stride=(1, 1)), ValueError,
        r"stride.*tuple of one int.*\(1, 1\)"),
    row("stride_zero", lambda: gpuconv.conv1d(X1, W1, stride=0), ValueError, r"stride.*positive.*\(0,\)"),
    row("stride_float", lambda: gpuconv.conv1d(X1, W1, stride=1.0), TypeError, r"stride.*int.*1\.0"),
    row("padding_two_values", lambda: gpuconv.conv1d(X1, W1, padding=(1, 1)), ValueError,
        r"padding.*tuple of one int.*\(1, 1\)"),
    row("padding_negative", lambda: gpuconv.conv1d(X1, W1, padding=-1), ValueError, r"padding.*non-negative.*-1"),
    row("padding_unknown_string", lambda: gpuconv.conv1d(X1, W1, padding="half"), ValueError,
        r"padding.*'valid'.*'same'.*'full'.*'half'"),
    row("padding_same_strided", lambda: gpuconv.conv1d(X1, W1, padding="same", stride=2), ValueError,
        r"same.*stride.*\(2,\)"),
    row("dilation_three_values", lambda: gpuconv.conv1d(X1, W1, dilation=(1, 1, 1)), ValueError,
        r"dilation.*\(1, 1, 1\)"),
    row("dilation_zero", lambda: gpuconv.conv1d(X1, W1, dilation=0), ValueError, r"dilation.*positive"),
    row("kernel_larger_than_input", lambda: gpuconv.conv1d(X1, arr(4, 3, 9)), ValueError,
        r"\(8\).*dilated kernel.*\(9\)"),
    row("dilated_kernel_larger_than_input", lambda: gpuconv.conv1d(X1, W1, dilation=4), ValueError,
        r"\(8\).*dilated kernel.*\(9\)"),
    row("bias_wrong_length", lambda: gpuconv.conv1d(X1, W1, arr(3)), ValueError, r"bias.*\(4,\).*\(3,\)"),
    row("input_zero_length", lambda: gpuconv.conv1d(arr(2, 3, 0), W1), ValueError, r"non-zero.*\(2, 3, 0\)"),
    row("input_int", lambda: gpuconv.conv1d(X1.astype(numpy.int32), W1), TypeError, r"input.*float.*int32"),
    row("mixed_dtypes", lambda: gpuconv.conv1d(X1, W1.astype(numpy.float64)), TypeError,
        r"one dtype.*float32.*weight.*float64"),
    row("input_list", lambda: gpuconv.conv1d(X1.tolist(), W1), TypeError, r"input.*ndarray.*list"),
    row("weight_none", lambda: gpuconv.conv1d(X1, None), TypeError, r"weight.*ndarray.*None"),
    row("padding_mode_unknown", lambda: gpuconv.conv1d(X1, W1, padding=1, padding_mode="mirror"), ValueError,
        r"padding_mode.*'reflect'.*'mirror'"),
    row("reflect_padding_not_below_size", lambda: gpuconv.conv1d(X1, W1, padding=8, padding_mode="reflect"),
        ValueError, r"reflect.*left=8.*width 8"),
    row("circular_padding_above_size", lambda: gpuconv.conv1d(X1, W1, padding=9, padding_mode="circular"),
        ValueError, r"circular.*left=9.*width 8"),
    row("backward_grad_output_shape", lambda: gpuconv.conv1d_backward(arr(2, 4, 5), X1, W1), ValueError,
        r"grad_output.*\(2, 4, 6\).*got \(2, 4, 5\)"),
    row("backward_grad_output_unbatched", lambda: gpuconv.conv1d_backward(GY1[0], X1, W1), ValueError,
        r"grad_output.*\(2, 4, 6\).*\(4, 6\)"),
    row("backward_grad_output_dtype", lambda: gpuconv.conv1d_backward(GY1.astype(numpy.float16), X1, W1),
        TypeError, r"one dtype.*grad_output.*float16"),
    row("backward_grad_output_none", lambda: gpuconv.conv1d_backward(None, X1, W1), TypeError,
        r"grad_output.*None"),
    row("backward_output_mask", lambda: gpuconv.conv1d_backward(GY1, X1, W1, output_mask=(True, False)), TypeError,
        r"output_mask.*three bools"),
    row("backward_reflect_too_big", lambda: gpuconv.conv1d_backward(GY1, X1, W1, padding=8, padding_mode="reflect"),
        ValueError, r"reflect.*width 8"),
]

CONV3D_ERRORS = [
    row("input_3d", lambda: gpuconv.conv3d(arr(3, 4, 5), W3), ValueError, r"4-D.*5-D.*input.*\(3, 4, 5\)"),
    row("input_6d", lambda: gpuconv.conv3d(arr(1, 2, 3, 4, 5, 6), W3), ValueError, r"input.*\(1, 2, 3, 4, 5, 6\)"),
    row("weight_4d", lambda: gpuconv.conv3d(X3, arr(4, 3, 3, 3)), ValueError,
        r"5-D weight.*kT, kH, kW.*\(4, 3, 3, 3\)"),
    row("weight_zero_size", lambda: gpuconv.conv3d(X3, arr(4, 3, 0, 3, 3)), ValueError,
        r"weight.*non-zero.*\(4, 3, 0, 3, 3\)"),
    row("channel_mismatch", lambda: gpuconv.conv3d(X3, arr(4, 2, 3, 3, 3)), ValueError,
        r"groups=1.*\(4, 2, 3, 3, 3\).*2 channels.*got 3 channels"),
    row("unbatched_channel_mismatch", lambda: gpuconv.conv3d(arr(2, 4, 5, 6), W3), ValueError,
        r"\(2, 4, 5, 6\).*3 channels.*got 2 channels"),
    row("groups_channel_mismatch", lambda: gpuconv.conv3d(X3, arr(4, 1, 3, 3, 3), groups=2), ValueError,
        r"groups=2.*2 channels.*got 3 channels"),
    row("groups_zero", lambda: gpuconv.conv3d(X3, W3, groups=0), ValueError, r"groups.*positive.*0"),
    row("stride_two_values", lambda: gpuconv.conv3d(X3, W3, stride=(1, 1)), ValueError,
        r"stride.*triple of ints.*\(1, 1\)"),
    row("stride_negative", lambda: gpuconv.conv3d(X3, W3, stride=(1, -1, 1)), ValueError,
        r"stride.*positive.*\(1, -1, 1\)"),
    row("padding_two_values", lambda: gpuconv.conv3d(X3, W3, padding=(1, 1)), ValueError,
        r"padding.*triple of ints.*\(1, 1\)"),
    row("padding_negative", lambda: gpuconv.conv3d(X3, W3, padding=(0, -1, 0)), ValueError,
        r"padding.*non-negative.*\(0, -1, 0\)"),
    row("padding_same_strided", lambda: gpuconv.conv3d(X3, W3, padding="same", stride=(1, 2, 1)), ValueError,
        r"same.*stride.*\(1, 2, 1\)"),
    row("dilation_four_values", lambda: gpuconv.conv3d(X3, W3, dilation=(1, 1, 1, 1)), ValueError,
        r"dilation.*triple of ints.*\(1, 1, 1, 1\)"),
    row("dilation_zero", lambda: gpuconv.conv3d(X3, W3, dilation=(1, 0, 1)), ValueError,
        r"dilation.*positive.*\(1, 0, 1\)"),
    row("kernel_deeper_than_input", lambda: gpuconv.conv3d(X3, arr(4, 3, 5, 3, 3)), ValueError,
        r"\(4 x 5 x 6\).*dilated kernel.*\(5 x 3 x 3\)"),
    row("bias_2d", lambda: gpuconv.conv3d(X3, W3, arr(4, 1)), ValueError, r"bias.*\(4,\).*\(4, 1\)"),
    row("input_zero_depth", lambda: gpuconv.conv3d(arr(2, 3, 0, 5, 6), W3), ValueError,
        r"non-zero.*depth.*\(2, 3, 0, 5, 6\)"),
    row("input_bool", lambda: gpuconv.conv3d(X3 > 0, W3), TypeError, r"input.*float.*bool"),
    row("bias_dtype", lambda: gpuconv.conv3d(X3, W3, arr(4, dtype=numpy.float64)), TypeError,
        r"one dtype.*bias.*float64"),
    row("input_none", lambda: gpuconv.conv3d(None, W3), TypeError, r"input.*ndarray.*None"),
    row("padding_mode_unknown", lambda: gpuconv.conv3d(X3, W3, padding=1, padding_mode="symmetric"), ValueError,
        r"padding_mode.*'circular'.*'symmetric'"),
    row("reflect_padding_not_below_depth", lambda: gpuconv.conv3d(X3, W3, padding=(4, 1, 1), padding_mode="reflect"),
        ValueError, r"reflect.*front=4.*depth 4"),
    row("reflect_padding_not_below_width", lambda: gpuconv.conv3d(X3, W3, padding=(1, 1, 6),
                                                                  padding_mode="reflect"),
        ValueError, r"reflect.*left=6.*width 6"),
    row("reflect_same_too_big", lambda: gpuconv.conv3d(arr(1, 3, 2, 5, 5), arr(4, 3, 5, 1, 1), padding="same",
                                                       padding_mode="reflect"), ValueError, r"reflect.*depth 2"),
    row("circular_padding_above_depth", lambda: gpuconv.conv3d(X3, W3, padding=(5, 0, 0), padding_mode="circular"),
        ValueError, r"circular.*front=5.*depth 4"),
    row("backward_grad_output_shape", lambda: gpuconv.conv3d_backward(arr(2, 4, 2, 3, 3), X3, W3), ValueError,
        r"grad_output.*\(2, 4, 2, 3, 4\).*got \(2, 4, 2, 3, 3\)"),
    row("backward_grad_output_list", lambda: gpuconv.conv3d_backward(GY3.tolist(), X3, W3), TypeError,
        r"grad_output.*ndarray.*list"),
    row("backward_output_mask_ints", lambda: gpuconv.conv3d_backward(GY3, X3, W3, output_mask=(1, 0, 1)), TypeError,
        r"output_mask.*three bools.*\(1, 0, 1\)"),
    row("backward_reflect_too_big", lambda: gpuconv.conv3d_backward(
        GY3, X3, W3, padding=(4, 0, 0), padding_mode="reflect"), ValueError, r"reflect.*depth 4"),
]

CONV_TRANSPOSE_ERRORS = [
    row("1d_input_4d", lambda: gpuconv.conv_transpose1d(arr(2, 3, 8, 1), WT1), ValueError,
        r"2-D.*3-D.*input.*\(2, 3, 8, 1\)"),
    row("1d_weight_4d", lambda: gpuconv.conv_transpose1d(X1, arr(3, 2, 3, 3)), ValueError,
        r"3-D weight.*in_channels.*\(3, 2, 3, 3\)"),
    row("1d_channel_mismatch", lambda: gpuconv.conv_transpose1d(X1, arr(4, 2, 3)), ValueError,
        r"\(4, 2, 3\).*4 channels.*got 3 channels"),
    row("1d_stride_two_values", lambda: gpuconv.conv_transpose1d(X1, WT1, stride=(2, 2)), ValueError,
        r"stride.*tuple of one int.*\(2, 2\)"),
    row("1d_padding_string", lambda: gpuconv.conv_transpose1d(X1, WT1, padding="same"), ValueError,
        r"padding.*int.*'same'"),
    row("1d_output_padding_not_below", lambda: gpuconv.conv_transpose1d(X1, WT1, stride=2, output_padding=2),
        ValueError, r"output_padding.*smaller than.*stride.*dilation.*\(2,\)"),
    row("1d_output_size_negative", lambda: gpuconv.conv_transpose1d(arr(1, 3, 1), arr(3, 2, 2), padding=2),
        ValueError, r"output size \(-2\).*padding"),
    row("1d_backward_grad_output_shape", lambda: gpuconv.conv_transpose1d_backward(arr(2, 2, 9), X1, WT1),
        ValueError, r"grad_output.*\(2, 2, 10\).*\(2, 2, 9\)"),
    row("3d_input_3d", lambda: gpuconv.conv_transpose3d(arr(3, 4, 5), WT3), ValueError, r"input.*\(3, 4, 5\)"),
    row("3d_weight_4d", lambda: gpuconv.conv_transpose3d(X3, arr(3, 2, 3, 3)), ValueError,
        r"5-D weight.*\(3, 2, 3, 3\)"),
    row("3d_groups_not_dividing_in_channels", lambda: gpuconv.conv_transpose3d(X3, WT3, groups=2), ValueError,
        r"groups=2.*divisible by 2"),
    row("3d_stride_two_values", lambda: gpuconv.conv_transpose3d(X3, WT3, stride=(2, 2)), ValueError,
        r"stride.*triple of ints.*\(2, 2\)"),
    row("3d_output_padding_two_values", lambda: gpuconv.conv_transpose3d(X3, WT3, stride=2, output_padding=(1, 1)),
        ValueError, r"output_padding.*triple of ints.*\(1, 1\)"),
    row("3d_output_padding_negative", lambda: gpuconv.conv_transpose3d(X3, WT3, output_padding=-1), ValueError,
        r"output_padding.*non-negative"),
    row("3d_dilation_zero", lambda: gpuconv.conv_transpose3d(X3, WT3, dilation=(1, 1, 0)), ValueError,
        r"dilation.*positive.*\(1, 1, 0\)"),
    row("3d_output_size_zero", lambda: gpuconv.conv_transpose3d(arr(1, 3, 1, 1, 1), arr(3, 2, 2, 2, 2), padding=1),
        ValueError, r"output size \(0 x 0 x 0\)"),
    row("3d_bias_wrong_length", lambda: gpuconv.conv_transpose3d(X3, WT3, arr(3)), ValueError, r"bias.*\(2,\)"),
    row("3d_mixed_dtypes", lambda: gpuconv.conv_transpose3d(X3, WT3.astype(numpy.float16)), TypeError,
        r"one dtype.*float16"),
    row("3d_backward_grad_output_shape", lambda: gpuconv.conv_transpose3d_backward(arr(2, 2, 6, 7, 7), X3, WT3),
        ValueError, r"grad_output.*\(2, 2, 6, 7, 8\).*\(2, 2, 6, 7, 7\)"),
    row("3d_backward_output_mask", lambda: gpuconv.conv_transpose3d_backward(GYT3, X3, WT3, output_mask=None),
        TypeError, r"output_mask.*None"),
]

POOL_ERRORS = [
    row("max1d_input_4d", lambda: gpuconv.max_pool1d(arr(2, 3, 8, 8), 2), ValueError,
        r"2-D.*3-D.*input.*\(2, 3, 8, 8\)"),
    row("max1d_kernel_two_values", lambda: gpuconv.max_pool1d(X1, (2, 2)), ValueError,
        r"kernel_size.*tuple of one int.*\(2, 2\)"),
    row("max1d_stride_two_values", lambda: gpuconv.max_pool1d(X1, 2, stride=(2, 2)), ValueError,
        r"stride.*\(2, 2\)"),
    row("max1d_padding_over_half_kernel", lambda: gpuconv.max_pool1d(X1, 2, padding=2), ValueError,
        r"padding.*half.*kernel.*\(2,\)"),
    row("max1d_kernel_larger_than_input", lambda: gpuconv.max_pool1d(X1, 9), ValueError,
        r"output size \(0\).*too small.*kernel_size=\(9,\)"),
    row("max1d_return_indices_not_bool", lambda: gpuconv.max_pool1d(X1, 2, return_indices=None), TypeError,
        r"return_indices.*bool"),
    row("max3d_input_3d", lambda: gpuconv.max_pool3d(arr(2, 3, 4), 2), ValueError, r"4-D.*5-D.*input.*\(2, 3, 4\)"),
    row("max3d_kernel_two_values", lambda: gpuconv.max_pool3d(X3, (2, 2)), ValueError,
        r"kernel_size.*triple of ints.*\(2, 2\)"),
    row("max3d_kernel_zero", lambda: gpuconv.max_pool3d(X3, (2, 0, 2)), ValueError,
        r"kernel_size.*positive.*\(2, 0, 2\)"),
    row("max3d_kernel_none", lambda: gpuconv.max_pool3d(X3, None), TypeError, r"kernel_size.*None"),
    row("max3d_stride_four_values", lambda: gpuconv.max_pool3d(X3, 2, stride=(1, 1, 1, 1)), ValueError,
        r"stride.*\(1, 1, 1, 1\)"),
    row("max3d_dilation_zero", lambda: gpuconv.max_pool3d(X3, 2, dilation=(1, 0, 1)), ValueError,
        r"dilation.*positive.*\(1, 0, 1\)"),
    row("max3d_padding_two_values", lambda: gpuconv.max_pool3d(X3, 2, padding=(1, 1)), ValueError,
        r"padding.*triple of ints.*\(1, 1\)"),
    row("max3d_padding_string", lambda: gpuconv.max_pool3d(X3, 2, padding="same"), ValueError, r"padding.*'same'"),
    row("max3d_kernel_deeper_than_input", lambda: gpuconv.max_pool3d(X3, (5, 2, 2)), ValueError,
        r"output size \(0 x 2 x 3\).*too small"),
    row("max3d_ceil_mode_not_bool", lambda: gpuconv.max_pool3d(X3, 2, ceil_mode="no"), TypeError,
        r"ceil_mode.*bool"),
    row("max3d_input_int", lambda: gpuconv.max_pool3d(X3.astype(numpy.int64), 2), TypeError, r"input.*int64"),
    row("max3d_backward_indices_shape", lambda: gpuconv.max_pool3d_backward(P3, I3[..., :2], X3.shape), ValueError,
        r"indices.*grad_output.*one shape.*\(2, 3, 2, 2, 2\).*\(2, 3, 2, 2, 3\)"),
    row("max3d_backward_indices_out_of_range", lambda: gpuconv.max_pool3d_backward(P3, I3 + 120, X3.shape),
        ValueError, r"indices.*\[0, 120\).*4 x 5 x 6"),
    row("max3d_backward_indices_negative", lambda: gpuconv.max_pool3d_backward(P3, I3 - 200, X3.shape), ValueError,
        r"indices.*\[0, 120\)"),
    row("max3d_backward_indices_float", lambda: gpuconv.max_pool3d_backward(P3, I3.astype(numpy.float64), X3.shape),
        TypeError, r"indices.*int64.*float64"),
    row("max3d_backward_input_shape_rank", lambda: gpuconv.max_pool3d_backward(P3, I3, (2, 3, 4, 5)), ValueError,
        r"grad_output.*\(2, 3, 2, 2, 3\).*input_shape.*\(2, 3, 4, 5\)"),
    row("max3d_backward_input_shape_6d", lambda: gpuconv.max_pool3d_backward(P3, I3, (1, 2, 3, 4, 5, 6)),
        ValueError, r"4-D.*5-D.*input_shape.*\(1, 2, 3, 4, 5, 6\)"),
    row("max3d_backward_channels_vs_input_shape", lambda: gpuconv.max_pool3d_backward(P3, I3, (2, 4, 4, 5, 6)),
        ValueError, r"grad_output.*input_shape.*\(2, 4, 4, 5, 6\)"),
    row("max3d_backward_input_shape_float", lambda: gpuconv.max_pool3d_backward(P3, I3, (2, 3, 4, 5, 6.0)),
        TypeError, r"input_shape.*4 or 5 ints"),
    row("max1d_backward_input_shape_negative", lambda: gpuconv.max_pool1d_backward(P1, I1, (2, 3, -8)), ValueError,
        r"input_shape.*negative"),
    row("max1d_backward_indices_one_past_the_end", lambda: gpuconv.max_pool1d_backward(
        P1, numpy.full_like(I1, 8), X1.shape), ValueError, r"indices.*\[0, 8\).*\[8, 8\]"),
    row("max1d_backward_input_shape_none", lambda: gpuconv.max_pool1d_backward(P1, I1, None), TypeError,
        r"input_shape.*2 or 3 ints.*None"),
    row("avg1d_input_4d", lambda: gpuconv.avg_pool1d(arr(2, 3, 8, 1), 2), ValueError, r"input.*\(2, 3, 8, 1\)"),
    row("avg1d_kernel_float", lambda: gpuconv.avg_pool1d(X1, 2.0), TypeError, r"kernel_size.*2\.0"),
    row("avg1d_count_include_pad_not_bool", lambda: gpuconv.avg_pool1d(X1, 2, count_include_pad=1), TypeError,
        r"count_include_pad.*bool"),
    row("avg1d_backward_input_shape_float", lambda: gpuconv.avg_pool1d_backward(P1, (2, 3, 8.0), 2), TypeError,
        r"input_shape.*2 or 3 ints"),
    row("avg1d_backward_grad_output_shape", lambda: gpuconv.avg_pool1d_backward(arr(2, 3, 3), X1.shape, 2),
        ValueError, r"grad_output.*\(2, 3, 4\).*\(2, 3, 3\)"),
    row("avg3d_kernel_two_values", lambda: gpuconv.avg_pool3d(X3, (2, 2)), ValueError,
        r"kernel_size.*triple of ints.*\(2, 2\)"),
    row("avg3d_padding_over_half_kernel", lambda: gpuconv.avg_pool3d(X3, 2, padding=(0, 2, 0)), ValueError,
        r"padding.*half.*kernel.*\(0, 2, 0\)"),
    row("avg3d_divisor_override_zero", lambda: gpuconv.avg_pool3d(X3, 2, divisor_override=0), ValueError,
        r"divisor_override.*non-zero"),
    row("avg3d_divisor_override_float", lambda: gpuconv.avg_pool3d(X3, 2, divisor_override=2.0), TypeError,
        r"divisor_override.*2\.0"),
    row("avg3d_kernel_larger_than_input", lambda: gpuconv.avg_pool3d(X3, (2, 2, 7)), ValueError,
        r"output size.*too small"),
    row("avg3d_input_none", lambda: gpuconv.avg_pool3d(None, 2), TypeError, r"input.*ndarray.*None"),
    row("avg3d_backward_grad_output_shape", lambda: gpuconv.avg_pool3d_backward(arr(2, 3, 1, 1, 1), X3.shape, 2),
        ValueError, r"grad_output.*\(2, 3, 2, 2, 3\).*\(2, 3, 1, 1, 1\)"),
    row("avg3d_backward_input_shape_6d", lambda: gpuconv.avg_pool3d_backward(P3, (1,) + X3.shape, 2), ValueError,
        r"4-D.*5-D.*input_shape"),
    row("avg3d_backward_input_shape_float", lambda: gpuconv.avg_pool3d_backward(P3, (2, 3, 4, 5, 6.0), 2),
        TypeError, r"input_shape.*4 or 5 ints"),
    row("avg3d_backward_input_shape_zero", lambda: gpuconv.avg_pool3d_backward(P3, (2, 3, 0, 5, 6), 2), ValueError,
        r"non-zero.*\(2, 3, 0, 5, 6\)"),
    row("avg3d_backward_grad_output_int", lambda: gpuconv.avg_pool3d_backward(I3, X3.shape, 2), TypeError,
        r"grad_output.*int64"),
]

ADAPTIVE_ERRORS = [
    row("avg1d_input_4d", lambda: gpuconv.adaptive_avg_pool1d(arr(2, 3, 8, 1), 2), ValueError,
        r"2-D.*3-D.*input.*\(2, 3, 8, 1\)"),
    row("avg1d_output_size_negative", lambda: gpuconv.adaptive_avg_pool1d(X1, -1), ValueError,
        r"output_size.*non-negative.*-1"),
    row("avg1d_output_size_two_values", lambda: gpuconv.adaptive_avg_pool1d(X1, (2, 2)), ValueError,
        r"output_size.*\(2, 2\)"),
    row("avg2d_output_size_float", lambda: gpuconv.adaptive_avg_pool2d(arr(2, 3, 4, 4), 2.0), TypeError,
        r"output_size.*2\.0"),
    row("avg2d_output_size_float_entry", lambda: gpuconv.adaptive_avg_pool2d(arr(2, 3, 4, 4), (2, 2.5)), TypeError,
        r"output_size.*\(2, 2\.5\)"),
    row("avg2d_output_size_string", lambda: gpuconv.adaptive_avg_pool2d(arr(2, 3, 4, 4), "2"), TypeError,
        r"output_size.*'2'"),
    row("avg2d_output_size_none", lambda: gpuconv.adaptive_avg_pool2d(arr(2, 3, 4, 4), None), TypeError,
        r"output_size.*None"),
    row("avg2d_output_size_bool", lambda: gpuconv.adaptive_avg_pool2d(arr(2, 3, 4, 4), True), TypeError,
        r"output_size.*True"),
    row("avg2d_input_5d", lambda: gpuconv.adaptive_avg_pool2d(X3, 2), ValueError,
        r"3-D.*4-D.*input.*\(2, 3, 4, 5, 6\)"),
    row("avg3d_output_size_two_values", lambda: gpuconv.adaptive_avg_pool3d(X3, (2, 2)), ValueError,
        r"output_size.*3 ints.*\(2, 2\)"),
    row("avg3d_input_zero_height", lambda: gpuconv.adaptive_avg_pool3d(arr(2, 3, 4, 0, 6), 2), ValueError,
        r"non-zero.*\(2, 3, 4, 0, 6\)"),
    row("avg3d_input_int", lambda: gpuconv.adaptive_avg_pool3d(X3.astype(numpy.int16), 2), TypeError,
        r"input.*float.*int16"),
    row("avg3d_input_list", lambda: gpuconv.adaptive_avg_pool3d(X3.tolist(), 2), TypeError, r"input.*ndarray.*list"),
    row("max3d_output_size_negative_entry", lambda: gpuconv.adaptive_max_pool3d(X3, (2, -1, 2)), ValueError,
        r"output_size.*non-negative.*\(2, -1, 2\)"),
    row("max2d_return_indices_not_bool", lambda: gpuconv.adaptive_max_pool2d(arr(2, 3, 4, 4), 2, return_indices=1),
        TypeError, r"return_indices.*bool"),
    row("max1d_output_size_float", lambda: gpuconv.adaptive_max_pool1d(X1, 1.5), TypeError, r"output_size.*1\.5"),
    row("avg3d_backward_input_shape_rank", lambda: gpuconv.adaptive_avg_pool3d_backward(A3, (2, 3, 4, 5)),
        ValueError, r"grad_output.*\(2, 3, 2, 2, 2\).*input_shape.*\(2, 3, 4, 5\)"),
    row("avg3d_backward_input_shape_6d", lambda: gpuconv.adaptive_avg_pool3d_backward(A3, (1, 2, 3, 4, 5, 6)),
        ValueError, r"4-D.*5-D.*input_shape"),
    row("avg3d_backward_channels", lambda: gpuconv.adaptive_avg_pool3d_backward(A3, (2, 4, 4, 5, 6)), ValueError,
        r"grad_output.*input_shape.*\(2, 4, 4, 5, 6\)"),
    row("avg1d_backward_input_shape_none", lambda: gpuconv.adaptive_avg_pool1d_backward(P1, None), TypeError,
        r"input_shape.*2 or 3 ints.*None"),
    row("avg1d_backward_input_shape_float", lambda: gpuconv.adaptive_avg_pool1d_backward(P1, (2, 3, 8.0)),
        TypeError, r"input_shape.*\(2, 3, 8\.0\)"),
    row("avg1d_backward_input_shape_negative", lambda: gpuconv.adaptive_avg_pool1d_backward(P1, (2, 3, -8)),
        ValueError, r"input_shape.*negative"),
    row("avg1d_backward_input_shape_zero", lambda: gpuconv.adaptive_avg_pool1d_backward(P1, (2, 3, 0)), ValueError,
        r"non-zero.*\(2, 3, 0\)"),
    row("avg2d_backward_grad_output_none", lambda: gpuconv.adaptive_avg_pool2d_backward(None, (2, 3, 4, 4)),
        TypeError, r"grad_output.*None"),
    row("max3d_backward_indices_shape", lambda: gpuconv.adaptive_max_pool3d_backward(A3, J3[..., :1], X3.shape),
        ValueError, r"indices.*grad_output.*one shape"),
    row("max3d_backward_input_shape_rank", lambda: gpuconv.adaptive_max_pool3d_backward(A3, J3, (2, 3, 4, 5)),
        ValueError, r"grad_output.*input_shape.*\(2, 3, 4, 5\)"),
    row("max3d_backward_indices_out_of_range", lambda: gpuconv.adaptive_max_pool3d_backward(A3, J3 + 120, X3.shape),
        ValueError, r"indices.*\[0, 120\)"),
    row("max1d_backward_indices_float", lambda: gpuconv.adaptive_max_pool1d_backward(
        P1, I1.astype(numpy.float32), X1.shape), TypeError, r"indices.*int64.*float32"),
]


@pytest.mark.parametrize("call, exc, pattern", CONV1D_ERRORS)
def test_conv1d_error(call, exc, pattern):
    _check(call, exc, pattern)


@pytest.mark.parametrize("call, exc, pattern", CONV3D_ERRORS)
def test_conv3d_error(call, exc, pattern):
    _check(call, exc, pattern)


@pytest.mark.parametrize("call, exc, pattern", CONV_TRANSPOSE_ERRORS)
def test_conv_transpose_nd_error(call, exc, pattern):
    _check(call, exc, pattern)


@pytest.mark.parametrize("call, exc, pattern", POOL_ERRORS)
def test_pool_nd_error(call, exc, pattern):
    _check(call, exc, pattern)


@pytest.mark.parametrize("call, exc, pattern", ADAPTIVE_ERRORS)
def test_adaptive_pool_error(call, exc, pattern):
    _check(call, exc, pattern)


# ------------------------------------------------------------------------------------ nothing else escapes

sizes = st.integers(0, 4)
shapes = st.lists(sizes, min_size=1, max_size=6).map(tuple)
small_ints = st.integers(-1, 4)
int_args = st.one_of(small_ints, st.lists(small_ints, max_size=4).map(tuple))
paddings = st.one_of(int_args, st.sampled_from(("valid", "same", "full", "bad")))
float_dtypes = st.sampled_from((numpy.float16, numpy.float32, numpy.float64))
modes = st.sampled_from(("zeros", "reflect", "replicate", "circular", "bad"))
nds = st.sampled_from((1, 3))


def _only_value_or_type_errors(call):
    """The call either works or raises ValueError / TypeError: never IndexError, ZeroDivisionError, ..."""
    try:
        call()
    except (ValueError, TypeError):
        pass


@given(nd=nds, x=shapes, w=shapes, bias=st.booleans(), stride=int_args, padding=paddings, dilation=int_args,
       groups=st.integers(-1, 3), mode=modes, output_padding=int_args, dtype=float_dtypes)
def test_conv_nd_random_arguments_raise_only_value_or_type_errors(nd, x, w, bias, stride, padding, dilation, groups,
                                                                   mode, output_padding, dtype):
    xa, wa = numpy.ones(x, dtype), numpy.ones(w, dtype)
    b = numpy.ones(w[:1], dtype) if bias else None
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    conv, conv_backward = getattr(gpuconv, f"conv{nd}d"), getattr(gpuconv, f"conv{nd}d_backward")
    _only_value_or_type_errors(lambda: conv(xa, wa, b, **kw, padding_mode=mode))
    _only_value_or_type_errors(lambda: conv_backward(numpy.ones(x, dtype), xa, wa, **kw, padding_mode=mode))
    kw = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
    convt, convt_backward = getattr(gpuconv, f"conv_transpose{nd}d"), getattr(gpuconv, f"conv_transpose{nd}d_backward")
    _only_value_or_type_errors(lambda: convt(xa, wa, **kw))
    _only_value_or_type_errors(lambda: convt_backward(numpy.ones(x, dtype), xa, wa, **kw))


@given(nd=nds, x=shapes, kernel=int_args, stride=st.one_of(st.none(), int_args), padding=int_args, dilation=int_args,
       ceil_mode=st.booleans(), divisor=st.one_of(st.none(), small_ints), count_include_pad=st.booleans(),
       indices=st.lists(st.integers(-2, 70), min_size=1, max_size=8), dtype=float_dtypes)
def test_pool_nd_random_arguments_raise_only_value_or_type_errors(nd, x, kernel, stride, padding, dilation, ceil_mode,
                                                                   divisor, count_include_pad, indices, dtype):
    xa = numpy.ones(x, dtype)
    pool = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)
    _only_value_or_type_errors(lambda: getattr(gpuconv, f"max_pool{nd}d")(xa, **pool, dilation=dilation,
                                                                        return_indices=True))
    avg = dict(pool, count_include_pad=count_include_pad)
    if nd == 3:
        avg["divisor_override"] = divisor
    _only_value_or_type_errors(lambda: getattr(gpuconv, f"avg_pool{nd}d")(xa, **avg))
    _only_value_or_type_errors(lambda: getattr(gpuconv, f"avg_pool{nd}d_backward")(xa, x, **avg))
    idx = numpy.resize(numpy.array(indices, dtype=numpy.int64), x)
    _only_value_or_type_errors(lambda: getattr(gpuconv, f"max_pool{nd}d_backward")(xa, idx, x))


@given(nd=st.sampled_from((1, 2, 3)), x=shapes, g=shapes,
       output_size=st.one_of(small_ints, st.lists(st.one_of(st.none(), small_ints), max_size=4).map(tuple)),
       indices=st.lists(st.integers(-2, 70), min_size=1, max_size=8), dtype=float_dtypes)
def test_adaptive_random_arguments_raise_only_value_or_type_errors(nd, x, g, output_size, indices, dtype):
    xa, ga = numpy.ones(x, dtype), numpy.ones(g, dtype)
    _only_value_or_type_errors(lambda: getattr(gpuconv, f"adaptive_avg_pool{nd}d")(xa, output_size))
    _only_value_or_type_errors(lambda: getattr(gpuconv, f"adaptive_max_pool{nd}d")(xa, output_size,
                                                                                 return_indices=True))
    _only_value_or_type_errors(lambda: getattr(gpuconv, f"adaptive_avg_pool{nd}d_backward")(ga, x))
    idx = numpy.resize(numpy.array(indices, dtype=numpy.int64), g)
    _only_value_or_type_errors(lambda: getattr(gpuconv, f"adaptive_max_pool{nd}d_backward")(ga, idx, x))
