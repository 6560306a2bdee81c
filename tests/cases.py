"""The case tables every backend runs: one small problem per row, named by what it exercises.

Shapes stay tiny because the reference is plain loops. Each table is a list of ``pytest.param(case, id=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import reference
from helpers import random_array, tie_free_array


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@dataclass(frozen=True)
class Conv2dCase:
    x: tuple  # input shape, (N, C, H, W) or unbatched (C, H, W)
    w: tuple  # (K, C/groups, R, S)
    bias: bool = True
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    groups: int = 1
    padding_mode: str = "zeros"
    layout: str = "contiguous"

    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups,
                    padding_mode=self.padding_mode)

    def pads(self):
        return reference.conv_pads(self.padding, self.w[2:], self.dilation)

    def reference_args(self):
        """The positional arguments after (x, w[, b]) of the reference conv2d*_any_mode functions."""
        return (self.stride, self.pads(), self.dilation, self.groups, self.padding_mode)

    def output_shape(self):
        (sh, sw), (dh, dw), (t, b, l, r) = _pair(self.stride), _pair(self.dilation), self.pads()
        P = reference.conv_out_size(self.x[-2], t, b, self.w[2], sh, dh)
        Q = reference.conv_out_size(self.x[-1], l, r, self.w[3], sw, dw)
        return self.x[:-3] + (self.w[0], P, Q)

    def n_terms(self):
        """The longest sum in any pass: C/groups*R*S (+ bias) forward, K/groups*R*S per copy of a padded
        pixel (up to 4 copies with padding modes) for grad_input, N*P*Q for grad_weight and grad_bias."""
        N, K, P, Q = ((1,) + self.output_shape())[-4:]
        C, (R, S) = self.x[-3], self.w[2:]
        return max(C // self.groups * R * S + 1, 4 * K // self.groups * R * S, N * P * Q)

    def arrays(self, rng, dtype):
        """Fresh x, w, b (or None) and grad_output, as NumPy arrays of dtype."""
        b = random_array(rng, (self.w[0],), dtype) if self.bias else None
        return (random_array(rng, self.x, dtype), random_array(rng, self.w, dtype), b,
                random_array(rng, self.output_shape(), dtype))


def _conv(id, x, w, **kw):
    return pytest.param(Conv2dCase(x, w, **kw), id=id)


CONV2D = [
    _conv("basic", (2, 3, 6, 7), (4, 3, 3, 3)),
    _conv("1x1", (2, 4, 5, 5), (3, 4, 1, 1)),
    _conv("no_bias", (2, 3, 5, 6), (2, 3, 3, 3), bias=False),
    _conv("stride2", (2, 3, 7, 8), (4, 3, 3, 3), stride=2),
    _conv("stride_asym_pad_pair", (2, 2, 7, 9), (3, 2, 3, 2), stride=(1, 2), padding=(1, 0)),
    _conv("stride_gt_kernel", (1, 2, 8, 7), (2, 2, 2, 2), stride=3),
    _conv("pad2_kernel2", (2, 2, 4, 5), (3, 2, 2, 2), padding=2),
    _conv("pad_pair_0_2", (1, 3, 5, 4), (2, 3, 3, 3), padding=(0, 2)),
    _conv("valid", (2, 3, 6, 5), (2, 3, 3, 2), padding="valid"),
    _conv("same_3x3", (2, 3, 5, 6), (4, 3, 3, 3), padding="same"),
    _conv("same_even_kernel", (1, 2, 6, 5), (3, 2, 4, 2), padding="same"),
    _conv("same_dilated_odd_total", (2, 2, 7, 6), (2, 2, 2, 3), padding="same", dilation=(3, 1)),
    _conv("full_3x3", (2, 2, 4, 5), (3, 2, 3, 3), padding="full"),
    _conv("full_dilated", (1, 2, 5, 5), (2, 2, 2, 3), padding="full", dilation=(2, 1)),
    _conv("dilation2_pad2", (2, 2, 7, 7), (3, 2, 3, 3), padding=2, dilation=2),
    _conv("dilation_asym", (1, 3, 6, 9), (2, 3, 2, 3), dilation=(1, 3), stride=(2, 1)),
    _conv("groups2", (2, 4, 6, 6), (6, 2, 3, 3), groups=2, padding=1),
    _conv("groups3_stride2", (1, 6, 7, 6), (3, 2, 3, 2), groups=3, stride=2),
    _conv("depthwise", (2, 3, 5, 5), (3, 1, 3, 3), groups=3, padding=1),
    _conv("depthwise_multiplier2", (2, 3, 5, 6), (6, 1, 3, 3), groups=3, stride=(2, 1)),
    _conv("depthwise_5x4_dilated", (1, 4, 11, 9), (4, 1, 5, 4), groups=4, padding=(4, 3), dilation=(2, 1)),
    _conv("depthwise_wide_s2", (3, 2, 7, 150), (2, 1, 3, 3), groups=2, stride=2, padding=1),
    _conv("depthwise_reflect", (2, 3, 6, 7), (3, 1, 3, 3), groups=3, padding=1, padding_mode="reflect"),
    _conv("kernel_1x5", (1, 2, 4, 7), (3, 2, 1, 5), padding=(0, 2)),
    _conv("kernel_5x1", (2, 2, 6, 3), (2, 2, 5, 1)),
    _conv("kernel_equals_input", (2, 3, 4, 3), (2, 3, 4, 3)),
    _conv("height_1", (2, 2, 1, 7), (3, 2, 1, 3)),
    _conv("wider_channels", (2, 16, 5, 5), (8, 16, 3, 3), padding=1),
    _conv("unbatched", (3, 6, 5), (2, 3, 3, 3), padding=1),
    _conv("unbatched_no_bias", (2, 5, 5), (3, 2, 2, 2), bias=False, stride=2),
    _conv("empty_batch", (0, 3, 5, 5), (2, 3, 3, 3), padding=1),
    _conv("layout_transposed", (2, 3, 6, 5), (4, 3, 3, 2), padding=1, layout="transposed"),
    _conv("layout_sliced", (2, 3, 5, 6), (4, 3, 3, 3), stride=2, layout="sliced"),
    _conv("layout_channels_last", (2, 4, 5, 5), (4, 2, 3, 3), groups=2, layout="channels_last"),
    _conv("layout_reversed", (2, 3, 5, 6), (2, 3, 2, 3), padding=(1, 0), stride=(1, 2), layout="reversed"),
    _conv("layout_reversed_unbatched", (3, 5, 5), (4, 3, 3, 3), padding="same", layout="reversed"),
    _conv("reflect", (2, 2, 5, 6), (3, 2, 3, 3), padding=1, padding_mode="reflect"),
    _conv("reflect_same_even", (1, 2, 5, 5), (2, 2, 4, 4), padding="same", padding_mode="reflect"),
    _conv("reflect_pad_size_minus_1", (1, 2, 3, 4), (2, 2, 3, 3), padding=(2, 3), padding_mode="reflect"),
    _conv("replicate", (2, 2, 5, 4), (3, 2, 3, 3), padding=(2, 1), padding_mode="replicate"),
    _conv("replicate_full_dilated", (1, 3, 4, 4), (2, 3, 2, 2), padding="full", dilation=2,
          padding_mode="replicate"),
    _conv("circular", (2, 2, 5, 6), (3, 2, 3, 3), padding=(1, 2), padding_mode="circular"),
    _conv("circular_pad_equals_size", (1, 2, 2, 3), (2, 2, 3, 3), padding=(2, 3), padding_mode="circular"),
    _conv("circular_stride_dilation_groups", (2, 4, 6, 6), (4, 2, 2, 3), padding=2, stride=2, dilation=(2, 1),
          groups=2, padding_mode="circular"),
    _conv("mode_without_padding", (1, 2, 5, 5), (2, 2, 3, 3), padding=0, padding_mode="reflect"),
    _conv("mode_unbatched", (2, 5, 4), (3, 2, 3, 3), padding=1, padding_mode="replicate"),
    _conv("mode_empty_batch", (0, 2, 5, 4), (3, 2, 3, 3), padding=1, padding_mode="circular"),
]


@dataclass(frozen=True)
class ConvTranspose2dCase:
    x: tuple  # (N, C_in, H, W) or (C_in, H, W)
    w: tuple  # (C_in, C_out/groups, R, S)
    bias: bool = True
    stride: object = 1
    padding: object = 0
    output_padding: object = 0
    groups: int = 1
    dilation: object = 1
    layout: str = "contiguous"

    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, output_padding=self.output_padding,
                    groups=self.groups, dilation=self.dilation)

    def output_shape(self):
        s, p, op, d = (_pair(v) for v in (self.stride, self.padding, self.output_padding, self.dilation))
        Hout = reference.transpose_out_size(self.x[-2], self.w[2], s[0], p[0], op[0], d[0])
        Wout = reference.transpose_out_size(self.x[-1], self.w[3], s[1], p[1], op[1], d[1])
        return self.x[:-3] + (self.w[1] * self.groups, Hout, Wout)

    def n_terms(self):
        """Longest sum: C_in/groups*R*S (+ bias) per output pixel, C_out/groups*R*S for grad_input,
        N*H_in*W_in for grad_weight, N*H_out*W_out for grad_bias."""
        N, Cin, H, W = ((1,) + self.x)[-4:]
        _, Cout, Ho, Wo = ((1,) + self.output_shape())[-4:]
        R, S = self.w[2:]
        return max(Cin // self.groups * R * S + 1, Cout // self.groups * R * S, N * H * W, N * Ho * Wo)

    def arrays(self, rng, dtype):
        b = random_array(rng, (self.w[1] * self.groups,), dtype) if self.bias else None
        return (random_array(rng, self.x, dtype), random_array(rng, self.w, dtype), b,
                random_array(rng, self.output_shape(), dtype))


def _convt(id, x, w, **kw):
    return pytest.param(ConvTranspose2dCase(x, w, **kw), id=id)


CONV_TRANSPOSE2D = [
    _convt("basic", (2, 3, 4, 5), (3, 2, 3, 3)),
    _convt("no_bias", (2, 2, 3, 3), (2, 3, 2, 2), bias=False),
    _convt("dcgan_4x4_s2_p1", (2, 3, 3, 4), (3, 4, 4, 4), stride=2, padding=1),
    _convt("unet_2x2_s2", (2, 4, 3, 3), (4, 2, 2, 2), stride=2),
    _convt("output_padding", (1, 2, 3, 4), (2, 3, 3, 3), stride=2, padding=1, output_padding=1),
    _convt("output_padding_asym", (2, 2, 3, 3), (2, 2, 3, 2), stride=(2, 3), padding=(1, 2),
           output_padding=(1, 0)),
    _convt("output_padding_gt_padding", (1, 2, 3, 3), (2, 2, 3, 3), stride=2, output_padding=1),
    _convt("output_padding_from_dilation", (1, 2, 4, 3), (2, 2, 3, 3), dilation=2, output_padding=1),
    _convt("stride_gt_kernel", (2, 2, 3, 3), (2, 2, 2, 2), stride=3),
    _convt("padding_crops", (1, 2, 5, 5), (2, 2, 3, 3), padding=2),
    _convt("dilation_asym", (2, 2, 3, 4), (2, 3, 2, 3), dilation=(2, 1), padding=(1, 0)),
    _convt("groups2", (2, 4, 3, 3), (4, 3, 3, 3), groups=2, stride=2),
    _convt("depthwise", (2, 3, 4, 4), (3, 1, 3, 3), groups=3, padding=1),
    _convt("depthwise_s2_outpad", (2, 4, 5, 4), (4, 1, 4, 4), groups=4, stride=2, padding=1, output_padding=1),
    _convt("kernel_1x3_stride_1x3", (1, 2, 3, 3), (2, 3, 1, 3), stride=(1, 3)),
    _convt("kernel_2x1", (2, 3, 3, 2), (3, 2, 2, 1), stride=2, output_padding=(1, 0)),
    _convt("wider_channels", (2, 16, 3, 3), (16, 4, 3, 3), stride=2, padding=1),
    _convt("unbatched", (3, 4, 3), (3, 2, 3, 3), stride=2),
    _convt("empty_batch", (0, 2, 3, 3), (2, 3, 3, 3)),
    _convt("layout_transposed", (2, 3, 4, 3), (3, 2, 3, 2), stride=2, layout="transposed"),
    _convt("layout_sliced", (2, 2, 3, 4), (2, 3, 3, 3), padding=1, layout="sliced"),
    _convt("layout_reversed", (2, 3, 3, 4), (3, 2, 3, 3), stride=(2, 1), padding=1, layout="reversed"),
    _convt("layout_channels_last", (2, 4, 3, 3), (4, 1, 2, 2), groups=2, stride=2, layout="channels_last"),
]


@dataclass(frozen=True)
class MaxPoolCase:
    x: tuple
    kernel_size: object
    stride: object = None
    padding: object = 0
    dilation: object = 1
    ceil_mode: bool = False
    layout: str = "contiguous"

    def kwargs(self):
        return dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
                    dilation=self.dilation, ceil_mode=self.ceil_mode)

    def output_shape(self):
        return _pool_output_shape(self.x, self.kernel_size, self.stride, self.padding, self.dilation,
                                  self.ceil_mode)

    def n_terms(self):
        """The most windows one input pixel can belong to: how many terms a grad_input element sums."""
        k = _pair(self.kernel_size)
        return k[0] * k[1]

    def arrays(self, rng, dtype):
        """A tie-free input and a grad_output."""
        return tie_free_array(rng, self.x, dtype), random_array(rng, self.output_shape(), dtype)


def _pool_output_shape(x, kernel_size, stride, padding, dilation, ceil_mode):
    k, p, d = _pair(kernel_size), _pair(padding), _pair(dilation)
    s = k if stride is None or stride == () else _pair(stride)
    P, Q = (reference.pool_out_size(x[-2 + i], k[i], s[i], p[i], d[i], ceil_mode) for i in range(2))
    return x[:-2] + (P, Q)


def _maxp(id, x, k, **kw):
    return pytest.param(MaxPoolCase(x, k, **kw), id=id)


MAX_POOL2D = [
    _maxp("2x2", (2, 3, 6, 6), 2),
    _maxp("resnet_3x3_s2_p1", (2, 2, 7, 8), 3, stride=2, padding=1),
    _maxp("kernel_asym_stride_asym", (1, 3, 6, 7), (2, 3), stride=(1, 2)),
    _maxp("overlapping_s1", (2, 2, 5, 5), 3, stride=1, padding=1),
    _maxp("stride_gt_kernel", (1, 2, 7, 8), 2, stride=3),
    _maxp("dilation2", (2, 2, 7, 7), 2, stride=1, dilation=2),
    _maxp("dilation_asym_pad", (1, 2, 7, 8), (3, 2), stride=2, padding=1, dilation=(1, 2)),
    _maxp("pad_pair", (2, 1, 5, 6), (2, 4), stride=(2, 3), padding=(1, 2)),
    _maxp("ceil_mode_partial", (2, 2, 7, 5), 2, ceil_mode=True),
    _maxp("ceil_mode_drop_last_in_padding", (1, 2, 5, 5), 2, stride=2, padding=1, ceil_mode=True),
    _maxp("ceil_mode_3x3_s2", (1, 2, 6, 8), 3, stride=2, padding=1, ceil_mode=True),
    _maxp("ceil_mode_dilated", (1, 1, 8, 7), 3, stride=2, dilation=2, ceil_mode=True),
    _maxp("kernel_1", (2, 2, 3, 4), 1),
    _maxp("kernel_equals_input", (2, 2, 4, 5), (4, 5)),
    _maxp("stride_empty_tuple", (1, 2, 4, 6), 2, stride=()),
    _maxp("unbatched", (3, 5, 6), 2, stride=1),
    _maxp("empty_batch", (0, 2, 4, 4), 2),
    _maxp("layout_transposed", (2, 2, 6, 5), 3, stride=2, padding=1, layout="transposed"),
    _maxp("layout_sliced", (2, 2, 5, 6), 2, layout="sliced"),
    _maxp("layout_reversed", (2, 2, 5, 7), 3, stride=2, padding=1, layout="reversed"),
    _maxp("layout_sliced_unbatched", (2, 5, 6), 2, stride=1, layout="sliced"),
    _maxp("layout_channels_last", (2, 3, 6, 6), 2, stride=1, layout="channels_last"),
]


@dataclass(frozen=True)
class AvgPoolCase:
    x: tuple
    kernel_size: object
    stride: object = None
    padding: object = 0
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: object = None
    layout: str = "contiguous"

    def kwargs(self):
        return dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
                    ceil_mode=self.ceil_mode, count_include_pad=self.count_include_pad,
                    divisor_override=self.divisor_override)

    def output_shape(self):
        return _pool_output_shape(self.x, self.kernel_size, self.stride, self.padding, 1, self.ceil_mode)

    def n_terms(self):
        """A window's sum (forward) and the windows reaching one pixel (backward): both at most kh*kw, plus
        the division."""
        k = _pair(self.kernel_size)
        return k[0] * k[1] + 1

    def arrays(self, rng, dtype):
        return random_array(rng, self.x, dtype), random_array(rng, self.output_shape(), dtype)


def _avgp(id, x, k, **kw):
    return pytest.param(AvgPoolCase(x, k, **kw), id=id)


AVG_POOL2D = [
    _avgp("2x2", (2, 3, 6, 6), 2),
    _avgp("3x3_s2_p1", (2, 2, 7, 8), 3, stride=2, padding=1),
    _avgp("3x3_s2_p1_exclude_pad", (2, 2, 7, 8), 3, stride=2, padding=1, count_include_pad=False),
    _avgp("kernel_asym_stride_asym", (1, 3, 6, 7), (2, 3), stride=(1, 2)),
    _avgp("overlapping_s1_pad", (2, 2, 5, 5), 3, stride=1, padding=1),
    _avgp("pad_pair_exclude_pad", (1, 2, 5, 6), (2, 4), stride=(2, 3), padding=(1, 2), count_include_pad=False),
    _avgp("stride_gt_kernel", (1, 2, 7, 8), 2, stride=3),
    _avgp("ceil_mode_partial", (2, 2, 7, 5), 2, ceil_mode=True),
    _avgp("ceil_mode_window_past_padding", (1, 2, 6, 6), 3, stride=2, padding=1, ceil_mode=True),
    _avgp("ceil_mode_window_past_padding_exclude", (1, 2, 6, 6), 3, stride=2, padding=1, ceil_mode=True,
          count_include_pad=False),
    _avgp("ceil_mode_drop_last_in_padding", (1, 2, 5, 5), 2, stride=2, padding=1, ceil_mode=True),
    _avgp("divisor_override", (2, 2, 5, 5), 3, stride=2, padding=1, divisor_override=3),
    _avgp("divisor_override_ceil_exclude", (1, 2, 6, 7), 2, ceil_mode=True, count_include_pad=False,
          divisor_override=5),
    _avgp("kernel_1", (2, 2, 3, 4), 1),
    _avgp("kernel_equals_input", (2, 2, 4, 5), (4, 5)),
    _avgp("unbatched", (3, 5, 6), 2, stride=1, padding=1),
    _avgp("empty_batch", (0, 2, 4, 4), 2),
    _avgp("layout_transposed", (2, 2, 6, 5), 3, stride=2, padding=1, layout="transposed"),
    _avgp("layout_sliced", (2, 2, 5, 6), 2, layout="sliced"),
    _avgp("layout_reversed", (2, 2, 5, 7), 3, stride=2, padding=1, count_include_pad=False, layout="reversed"),
    _avgp("layout_sliced_unbatched", (2, 5, 6), 2, stride=1, layout="sliced"),
    _avgp("layout_channels_last", (2, 3, 6, 6), 2, stride=1, layout="channels_last"),
]


# ----------------------------------------------------------------------------- the GPU workload's geometries
# bench/gpu_checks/workload.py runs these on the GPU (each call twice, against the NumPy path): plain tuples,
# (label, shapes..., keyword arguments, in the --small set), chosen to launch every kernel instantiation.

# (label, N, C, H, W, K, R, S, kwargs, small): conv2d geometries run under every algorithm
CONV_GEOMS = (
    ("3x3 pad1 bias", 2, 4, 9, 8, 6, 3, 3, dict(padding=1), True),
    ("3x2 s2 d2 g2 pad(2,1)", 2, 4, 11, 10, 6, 3, 2, dict(stride=2, dilation=2, groups=2, padding=(2, 1)), True),
    ("4x4 same (asymmetric)", 1, 3, 7, 9, 5, 4, 4, dict(padding="same"), True),
    ("depthwise 3x3 s2", 2, 6, 9, 9, 6, 3, 3, dict(stride=(2, 1), padding=1, groups=6), True),
    ("depthwise 5x3 m2 d(2,1)", 2, 4, 12, 11, 8, 5, 3, dict(padding=(4, 1), dilation=(2, 1), groups=4), True),
    ("1x1 s1", 3, 8, 5, 6, 16, 1, 1, dict(), False),
    ("5x5 full pad d(1,2)", 2, 5, 10, 12, 7, 5, 5, dict(padding="full", dilation=(1, 2)), False),
    ("unbatched 3x3 s(1,2)", None, 4, 8, 9, 6, 3, 3, dict(stride=(1, 2), padding=(0, 1)), False),
)

# (label, N, Cin, H, W, Cout/groups, R, S, kwargs, small): conv_transpose2d geometries
TRANSPOSED_GEOMS = (
    ("transposed 4x4 s2 pad1 outpad1", 2, 6, 5, 4, 3, 4, 4, dict(stride=2, padding=1, output_padding=1), True),
    ("transposed 3x3 s3 g2 d2", 1, 4, 4, 5, 3, 3, 3, dict(stride=3, groups=2, dilation=2, output_padding=(1, 2)), False),
    ("transposed depthwise 4x4 s2 pad1", 2, 4, 5, 4, 1, 4, 4, dict(stride=2, padding=1, groups=4), True),
)

# (label, N, C, H, W, K, R, S, kwargs): narrow = every GEMM has <= 64 columns (BN=64) except wgrad's CgRS=36;
# wide = > 64 columns in every pass (BN=128); split = wgrad reduction N*P*Q = 800 (several split-K chunks)
IGEMM_GEOMS = (
    ("narrow", 2, 4, 9, 8, 6, 3, 3, dict(padding=1)),
    ("wide", 1, 72, 6, 6, 72, 3, 3, dict(padding=1)),
    ("split-K", 2, 4, 20, 20, 8, 3, 3, dict(padding=1)),
)

NHWC_GEOMS = (
    ("narrow C8 K16", 2, 8, 9, 8, 16, 3, 3, dict(padding=1), True),
    ("wide C72 K136", 1, 72, 6, 6, 136, 3, 3, dict(padding=1), True),
    ("5x3 s(2,1) d(1,2) C16 K24", 2, 16, 11, 10, 24, 5, 3, dict(stride=(2, 1), dilation=(1, 2), padding=(2, 1)),
     False),
)

NHWC_WGRAD_GEOMS = (
    ("3x3 C16 K24 (64x128)", 2, 16, 9, 11, 24, 3, 3, dict(padding=1), True, 132),
    ("1x1 C64 K136 (128x64)", 3, 64, 10, 9, 136, 1, 1, dict(), True, 132),
    ("1x1 C32 K16 (64x64)", 2, 32, 7, 5, 16, 1, 1, dict(), True, 1),
    ("3x3 C72 K136 (128x128)", 1, 72, 7, 6, 136, 3, 3, dict(padding=1), True, 1),
    ("3x3 C32 K64 split-K", 4, 32, 24, 24, 64, 3, 3, dict(padding=1), False, 132),
    ("5x3 s(2,1) d(1,2) C8 K8", 2, 8, 13, 12, 8, 5, 3, dict(stride=(2, 1), dilation=(1, 2)), False, 132),
)

NHWC_DGRAD_GEOMS = (
    ("3x3 s2 C16 K24 (128x64)", 2, 16, 9, 11, 24, 3, 3, dict(stride=2, padding=1), True, 1),
    ("1x1 s2 C64 K32 (64x64)", 2, 64, 10, 9, 32, 1, 1, dict(stride=2), True, 1 << 20),
    ("3x3 s2 C72 K16 (64x128)", 1, 72, 12, 11, 16, 3, 3, dict(stride=2, padding=(1, 0)), True, 1 << 20),
    ("3x3 s3 d2 C8 K8 (phase taps)", 1, 8, 13, 12, 8, 3, 3, dict(stride=3, padding=2, dilation=2), False, 1),
)

NHWC_DGRAD_TRANSPOSED = (
    ("transposed 4x4 s2 p1 Cin16 Cout72 (128x128)", 2, 16, 5, 4, 72, 4, 4, dict(stride=2, padding=1), True, 1),
    ("transposed 2x2 s2 Cin16 Cout136 outpad1", 1, 16, 6, 5, 136, 2, 2, dict(stride=2, output_padding=1), False,
     1 << 20),
)

GEMM_1X1_GEOMS = (
    ("1x1 g1", 3, 16, 7, 9, 24, dict(), True),
    ("1x1 g2 N1", 1, 8, 5, 6, 12, dict(groups=2), True),
    ("1x1 g2 dilation 2", 4, 12, 3, 5, 10, dict(groups=2, dilation=2), False),
    ("1x1 unbatched", None, 6, 4, 5, 7, dict(), False),
)

BIAS_GRAD_GEOMS = (
    ("1x16x8x8 one launch, 16-byte units", 1, 16, 8, 8, None, True),
    ("3x4x5x7 one launch, element units", 3, 4, 5, 7, None, True),
    ("2x3x200x200 split, 16-byte units", 2, 3, 200, 200, None, True),
    ("3x2x151x151 split, element units", 3, 2, 151, 151, None, True),
    ("1x2x40x40 one unit per split", 1, 2, 40, 40, 16, False),
    ("300x5x1x1 P*Q 1", 300, 5, 1, 1, None, False),
)

# (label, N, C, H, W, kwargs, small)
MAX_POOL = (
    ("k3 s2 p1 d2 ceil", 2, 3, 11, 10, dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True), True),
    ("k(2,3) s(2,1) p(1,1)", 2, 3, 9, 8, dict(kernel_size=(2, 3), stride=(2, 1), padding=(1, 1)), True),
    ("k3 s1 overlapping ceil", 1, 2, 7, 7, dict(kernel_size=3, stride=1, ceil_mode=True), False),
    ("k2 default stride", 3, 2, 8, 6, dict(kernel_size=2), False),
)

AVG_POOL = (
    ("k3 s2 p1 ceil include_pad", 2, 3, 11, 10, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), True),
    ("k3 s2 p1 ceil exclude_pad", 2, 3, 11, 10,
     dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), True),
    ("k(2,3) s(1,2) p(1,1) divisor_override=5", 2, 3, 9, 8,
     dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), divisor_override=5), True),
    ("k2 default stride", 3, 2, 8, 6, dict(kernel_size=2), False),
)

WIDE_MAX_POOL = (
    ("wide k3 s2 p1 (ResNet-50)", 2, 3, 12, 16, dict(kernel_size=3, stride=2, padding=1), True),
    ("wide k2 s2 (VGG)", 2, 3, 8, 16, dict(kernel_size=2, stride=2), True),
    ("wide k3 s1 p1 ceil odd W", 2, 3, 9, 11, dict(kernel_size=3, stride=1, padding=1, ceil_mode=True), True),
    ("wide k(5,3) s(3,2) p(2,1) d(2,1) ceil", 1, 2, 11, 13,
     dict(kernel_size=(5, 3), stride=(3, 2), padding=(2, 1), dilation=(2, 1), ceil_mode=True), False),
)

WIDE_AVG_POOL = (
    ("wide k3 s2 p1 exclude_pad", 2, 3, 12, 16, dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
     True),
    ("wide k2 s2 (DenseNet-121)", 2, 3, 8, 16, dict(kernel_size=2, stride=2), True),
    ("wide k3 s1 p1 ceil divisor_override=5 odd W", 2, 3, 9, 11,
     dict(kernel_size=3, stride=1, padding=1, ceil_mode=True, divisor_override=5), True),
    ("wide k(3,2) s2 p1 ceil odd W", 1, 2, 11, 13, dict(kernel_size=(3, 2), stride=2, padding=1, ceil_mode=True),
     False),
)
