"""The case tables of the 1-d and 3-d ops and of adaptive pooling (1-, 2- and 3-d): one small problem per row,
named by what it exercises. Shapes stay tiny because the reference (``reference_nd``) is plain loops.

Each case knows its number of spatial dimensions ``nd``; an input shape of nd + 1 entries is unbatched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy
import pytest

import helpers
import reference_nd as ref
from helpers import random_array, tie_free_array


def on_backend(backend, a, layout="contiguous"):
    """helpers.on_backend, with 'channels_last' for 5-d arrays too (channels innermost in memory)."""
    if layout == "channels_last" and a is not None and a.ndim == 5:
        order = (0, 2, 3, 4, 1)
        return backend.put(numpy.ascontiguousarray(a.transpose(order))).transpose(tuple(numpy.argsort(order)))
    return helpers.on_backend(backend, a, layout)


def call_unchanged(backend, layout, op, arrays: dict, *more_args, **kwargs):
    """helpers.call_unchanged with the n-d layouts above: the named arrays moved to the backend in layout,
    op called, inputs checked unchanged and outputs checked not to share memory with them."""
    moved = {name: on_backend(backend, a, layout) for name, a in arrays.items()}
    guard = helpers.Unchanged(backend, **moved)
    out = op(*moved.values(), *more_args, **kwargs)
    guard.check(out)
    return out


def batch(a, nd):
    """An unbatched NumPy array (nd + 1 dims) as a batch of one; batched arrays unchanged."""
    return a if a is None or a.ndim == nd + 2 else a[None]


def unbatch(a, nd, like_ndim):
    return a[0] if like_ndim == nd + 1 else a


def batched_shape(shape, nd):
    return tuple(shape) if len(shape) == nd + 2 else (1,) + tuple(shape)


# ---------------------------------------------------------------------------------------- convolution


@dataclass(frozen=True)
class ConvCase:
    x: tuple  # input (N, C, *size) or unbatched (C, *size)
    w: tuple  # (K, C/groups, *kernel)
    bias: bool = True
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    groups: int = 1
    padding_mode: str = "zeros"
    layout: str = "contiguous"

    @property
    def nd(self):
        return len(self.w) - 2

    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups,
                    padding_mode=self.padding_mode)

    def pads(self):
        return ref.conv_pads(self.padding, self.w[2:], self.dilation)

    def reference_args(self):
        """The arguments after (x, w[, b]) of reference_nd.conv*_any_mode."""
        return (self.stride, self.pads(), self.dilation, self.groups, self.padding_mode)

    def output_shape(self):
        nd = self.nd
        s, d = ref.ntuple(self.stride, nd), ref.ntuple(self.dilation, nd)
        out = tuple(ref.conv_out_size(n, lo, hi, k, si, di)
                    for n, (lo, hi), k, si, di in zip(self.x[-nd:], self.pads(), self.w[2:], s, d))
        return self.x[:-nd - 1] + (self.w[0],) + out

    def n_terms(self):
        """Longest sum: C/groups*prod(kernel) (+ bias) forward; K/groups*prod(kernel) per copy of a padded
        position (up to 2**nd copies with padding modes) for grad_input; N*prod(out) for grad_weight/bias."""
        nd, taps = self.nd, math.prod(self.w[2:])
        out = self.output_shape()
        N = out[0] if len(out) == nd + 2 else 1
        return max(self.x[-nd - 1] // self.groups * taps + 1, 2**nd * self.w[0] // self.groups * taps,
                   N * math.prod(out[-nd:]))

    def arrays(self, rng, dtype):
        """Fresh x, w, b (or None) and grad_output, as NumPy arrays of dtype."""
        b = random_array(rng, (self.w[0],), dtype) if self.bias else None
        return (random_array(rng, self.x, dtype), random_array(rng, self.w, dtype), b,
                random_array(rng, self.output_shape(), dtype))


def _conv(id, x, w, **kw):
    return pytest.param(ConvCase(x, w, **kw), id=id)


CONV1D = [
    _conv("basic", (2, 3, 9), (4, 3, 3)),
    _conv("kernel_1", (2, 4, 5), (3, 4, 1)),
    _conv("no_bias", (2, 3, 7), (2, 3, 3), bias=False),
    _conv("stride2", (2, 3, 10), (4, 3, 3), stride=2),
    _conv("stride_tuple_gt_kernel", (1, 2, 11), (2, 2, 2), stride=(3,)),
    _conv("pad2_kernel2", (2, 2, 5), (3, 2, 2), padding=2),
    _conv("pad_tuple", (1, 3, 6), (2, 3, 3), padding=(1,)),
    _conv("valid", (2, 3, 6), (2, 3, 3), padding="valid"),
    _conv("same_odd", (2, 3, 7), (4, 3, 3), padding="same"),
    _conv("same_even_kernel", (1, 2, 6), (3, 2, 4), padding="same"),
    _conv("same_dilated_odd_total", (2, 2, 7), (2, 2, 2), padding="same", dilation=3),
    _conv("full", (2, 2, 5), (3, 2, 3), padding="full"),
    _conv("full_dilated", (1, 2, 5), (2, 2, 3), padding="full", dilation=(2,)),
    _conv("dilation2_pad2", (2, 2, 9), (3, 2, 3), padding=2, dilation=2),
    _conv("wavenet_dilated_k2", (2, 3, 12), (3, 3, 2), padding=4, dilation=4),
    _conv("dilation_stride", (1, 3, 13), (2, 3, 3), dilation=3, stride=2),
    _conv("groups2", (2, 4, 8), (6, 2, 3), groups=2, padding=1),
    _conv("groups3_stride2", (1, 6, 9), (3, 2, 3), groups=3, stride=2),
    _conv("depthwise", (2, 3, 8), (3, 1, 3), groups=3, padding=1),
    _conv("depthwise_multiplier2", (2, 3, 7), (6, 1, 3), groups=3, stride=2),
    _conv("kernel_equals_input", (2, 3, 4), (2, 3, 4)),
    _conv("length_1", (2, 2, 1), (3, 2, 1)),
    _conv("wider_channels", (2, 16, 6), (8, 16, 3), padding=1),
    _conv("unbatched", (3, 7), (2, 3, 3), padding=1),
    _conv("unbatched_no_bias", (2, 6), (3, 2, 2), bias=False, stride=2),
    _conv("empty_batch", (0, 3, 5), (2, 3, 3), padding=1),
    _conv("reflect", (2, 2, 6), (3, 2, 3), padding=1, padding_mode="reflect"),
    _conv("reflect_pad_size_minus_1", (1, 2, 4), (2, 2, 3), padding=3, padding_mode="reflect"),
    _conv("reflect_same_even", (1, 2, 5), (2, 2, 4), padding="same", padding_mode="reflect"),
    _conv("replicate", (2, 2, 5), (3, 2, 3), padding=2, padding_mode="replicate"),
    _conv("replicate_full_dilated", (1, 3, 4), (2, 3, 2), padding="full", dilation=2, padding_mode="replicate"),
    _conv("circular", (2, 2, 6), (3, 2, 3), padding=2, padding_mode="circular"),
    _conv("circular_pad_equals_size", (1, 2, 3), (2, 2, 3), padding=3, padding_mode="circular"),
    _conv("circular_stride_dilation_groups", (2, 4, 7), (4, 2, 2), padding=2, stride=2, dilation=2, groups=2,
          padding_mode="circular"),
    _conv("mode_without_padding", (1, 2, 5), (2, 2, 3), padding=0, padding_mode="reflect"),
    _conv("mode_unbatched", (2, 5), (3, 2, 3), padding=1, padding_mode="replicate"),
    _conv("mode_empty_batch", (0, 2, 5), (3, 2, 3), padding=1, padding_mode="circular"),
    _conv("layout_transposed", (2, 3, 6), (4, 3, 3), padding=1, layout="transposed"),
    _conv("layout_sliced", (2, 3, 7), (4, 3, 3), stride=2, layout="sliced"),
    _conv("layout_channels_last", (2, 4, 6), (4, 2, 3), groups=2, layout="channels_last"),
    _conv("layout_reversed", (2, 3, 6), (2, 3, 2), padding=1, stride=2, layout="reversed"),
    _conv("layout_sliced_reflect", (2, 2, 6), (3, 2, 3), padding=2, padding_mode="reflect", layout="sliced"),
]

CONV3D = [
    _conv("basic", (2, 3, 4, 5, 4), (4, 3, 3, 3, 3)),
    _conv("kernel_1", (2, 4, 3, 3, 2), (3, 4, 1, 1, 1)),
    _conv("no_bias", (1, 2, 4, 4, 4), (2, 2, 2, 2, 2), bias=False),
    _conv("stride2", (2, 2, 5, 5, 5), (3, 2, 3, 3, 3), stride=2),
    _conv("stride_asym", (1, 2, 5, 4, 6), (2, 2, 2, 2, 3), stride=(2, 1, 3)),
    _conv("stride_depth_gt_kernel", (1, 2, 7, 3, 3), (2, 2, 2, 2, 2), stride=(3, 1, 1)),
    _conv("pad1_r3d_3x3x3", (2, 3, 4, 4, 4), (4, 3, 3, 3, 3), padding=1),
    _conv("pad_asym", (1, 2, 3, 4, 3), (3, 2, 2, 3, 2), padding=(2, 0, 1)),
    _conv("r2plus1d_temporal_3x1x1", (2, 3, 5, 3, 3), (2, 3, 3, 1, 1), padding=(1, 0, 0)),
    _conv("r2plus1d_spatial_1x3x3", (2, 3, 3, 4, 4), (2, 3, 1, 3, 3), padding=(0, 1, 1)),
    _conv("valid", (2, 2, 4, 4, 3), (2, 2, 3, 2, 2), padding="valid"),
    _conv("same", (1, 2, 4, 4, 4), (3, 2, 3, 3, 3), padding="same"),
    _conv("same_even_kernel", (1, 2, 4, 3, 5), (2, 2, 2, 3, 4), padding="same"),
    _conv("same_dilated_odd_total", (1, 2, 5, 4, 4), (2, 2, 2, 2, 3), padding="same", dilation=(3, 1, 1)),
    _conv("full", (1, 2, 3, 3, 3), (2, 2, 2, 3, 2), padding="full"),
    _conv("full_dilated", (1, 2, 3, 3, 4), (2, 2, 2, 2, 2), padding="full", dilation=(2, 1, 2)),
    _conv("dilation2_pad2", (1, 2, 5, 5, 5), (2, 2, 3, 3, 3), padding=2, dilation=2),
    _conv("dilation_asym_stride", (1, 2, 7, 4, 6), (2, 2, 2, 2, 2), dilation=(3, 1, 2), stride=(2, 1, 1)),
    _conv("groups2", (2, 4, 3, 4, 4), (6, 2, 3, 3, 3), groups=2, padding=1),
    _conv("groups3_stride2", (1, 6, 5, 4, 5), (3, 2, 3, 2, 3), groups=3, stride=2),
    _conv("depthwise", (2, 3, 4, 4, 4), (3, 1, 3, 3, 3), groups=3, padding=1),
    _conv("depthwise_multiplier2", (1, 2, 4, 5, 4), (4, 1, 2, 3, 2), groups=2, stride=(1, 2, 1)),
    _conv("kernel_equals_input", (2, 2, 3, 2, 3), (2, 2, 3, 2, 3)),
    _conv("depth_1", (2, 2, 1, 4, 4), (3, 2, 1, 3, 3), padding=(0, 1, 1)),
    _conv("wider_channels", (1, 16, 3, 3, 3), (8, 16, 3, 3, 3), padding=1),
    _conv("unbatched", (3, 4, 4, 3), (2, 3, 3, 3, 3), padding=1),
    _conv("unbatched_no_bias", (2, 4, 5, 4), (3, 2, 2, 2, 2), bias=False, stride=2),
    _conv("empty_batch", (0, 3, 4, 4, 4), (2, 3, 3, 3, 3), padding=1),
    _conv("reflect", (2, 2, 4, 4, 5), (3, 2, 3, 3, 3), padding=1, padding_mode="reflect"),
    _conv("reflect_asym_pad_size_minus_1", (1, 2, 3, 4, 3), (2, 2, 3, 3, 3), padding=(2, 1, 2),
          padding_mode="reflect"),
    _conv("reflect_same_even", (1, 2, 4, 4, 4), (2, 2, 2, 4, 2), padding="same", padding_mode="reflect"),
    _conv("replicate", (2, 2, 3, 4, 4), (3, 2, 3, 3, 3), padding=(2, 1, 1), padding_mode="replicate"),
    _conv("replicate_depth_only", (1, 2, 3, 3, 3), (2, 2, 3, 1, 1), padding=(2, 0, 0), padding_mode="replicate"),
    _conv("circular", (2, 2, 4, 3, 4), (3, 2, 3, 3, 3), padding=(1, 2, 1), padding_mode="circular"),
    _conv("circular_pad_equals_size", (1, 2, 2, 3, 2), (2, 2, 3, 3, 3), padding=(2, 3, 2),
          padding_mode="circular"),
    _conv("circular_stride_dilation_groups", (1, 4, 5, 4, 5), (4, 2, 2, 2, 2), padding=2, stride=2,
          dilation=(2, 1, 1), groups=2, padding_mode="circular"),
    _conv("mode_without_padding", (1, 2, 4, 4, 4), (2, 2, 3, 3, 3), padding=0, padding_mode="reflect"),
    _conv("mode_unbatched", (2, 3, 4, 3), (3, 2, 3, 3, 3), padding=1, padding_mode="replicate"),
    _conv("mode_empty_batch", (0, 2, 3, 3, 3), (3, 2, 3, 3, 3), padding=1, padding_mode="circular"),
    _conv("layout_transposed", (2, 3, 3, 4, 5), (4, 3, 2, 3, 2), padding=1, layout="transposed"),
    _conv("layout_sliced", (2, 3, 4, 4, 5), (4, 3, 3, 3, 3), stride=2, layout="sliced"),
    _conv("layout_channels_last", (2, 4, 3, 4, 4), (4, 2, 3, 3, 3), groups=2, padding=1, layout="channels_last"),
    _conv("layout_reversed", (2, 3, 4, 4, 4), (2, 3, 2, 3, 2), padding=(1, 0, 1), stride=(1, 2, 1),
          layout="reversed"),
    _conv("layout_sliced_circular", (1, 2, 3, 4, 4), (2, 2, 3, 3, 3), padding=1, padding_mode="circular",
          layout="sliced"),
]


@dataclass(frozen=True)
class ConvTransposeCase:
    x: tuple  # (N, C_in, *size) or (C_in, *size)
    w: tuple  # (C_in, C_out/groups, *kernel)
    bias: bool = True
    stride: object = 1
    padding: object = 0
    output_padding: object = 0
    groups: int = 1
    dilation: object = 1
    layout: str = "contiguous"

    @property
    def nd(self):
        return len(self.w) - 2

    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, output_padding=self.output_padding,
                    groups=self.groups, dilation=self.dilation)

    def output_shape(self):
        nd = self.nd
        s, p, op, d = (ref.ntuple(v, nd) for v in (self.stride, self.padding, self.output_padding, self.dilation))
        out = tuple(ref.transpose_out_size(*a) for a in zip(self.x[-nd:], self.w[2:], s, p, op, d))
        return self.x[:-nd - 1] + (self.w[1] * self.groups,) + out

    def n_terms(self):
        """Longest sum: C_in/groups*prod(kernel) (+ bias) per output element, C_out/groups*prod(kernel) for
        grad_input, N*prod(input size) for grad_weight, N*prod(output size) for grad_bias."""
        nd, taps = self.nd, math.prod(self.w[2:])
        N = self.x[0] if len(self.x) == nd + 2 else 1
        return max(self.x[-nd - 1] // self.groups * taps + 1, self.w[1] * taps, N * math.prod(self.x[-nd:]),
                   N * math.prod(self.output_shape()[-nd:]))

    def arrays(self, rng, dtype):
        b = random_array(rng, (self.w[1] * self.groups,), dtype) if self.bias else None
        return (random_array(rng, self.x, dtype), random_array(rng, self.w, dtype), b,
                random_array(rng, self.output_shape(), dtype))


def _convt(id, x, w, **kw):
    return pytest.param(ConvTransposeCase(x, w, **kw), id=id)


CONV_TRANSPOSE1D = [
    _convt("basic", (2, 3, 5), (3, 2, 3)),
    _convt("no_bias", (2, 2, 4), (2, 3, 2), bias=False),
    _convt("k4_s2_p1", (2, 3, 5), (3, 4, 4), stride=2, padding=1),
    _convt("k2_s2", (2, 4, 4), (4, 2, 2), stride=2),
    _convt("output_padding", (1, 2, 4), (2, 3, 3), stride=2, padding=1, output_padding=1),
    _convt("output_padding_gt_padding", (1, 2, 3), (2, 2, 3), stride=3, output_padding=2),
    _convt("output_padding_from_dilation", (1, 2, 4), (2, 2, 3), dilation=2, output_padding=1),
    _convt("stride_gt_kernel", (2, 2, 3), (2, 2, 2), stride=(3,)),
    _convt("padding_crops", (1, 2, 5), (2, 2, 3), padding=2),
    _convt("dilation_padding", (2, 2, 4), (2, 3, 3), dilation=3, padding=(2,)),
    _convt("groups2", (2, 4, 4), (4, 3, 3), groups=2, stride=2),
    _convt("depthwise", (2, 3, 5), (3, 1, 3), groups=3, padding=1),
    _convt("depthwise_s2_outpad", (2, 4, 5), (4, 1, 4), groups=4, stride=2, padding=1, output_padding=1),
    _convt("wider_channels", (2, 16, 4), (16, 4, 3), stride=2, padding=1),
    _convt("unbatched", (3, 4), (3, 2, 3), stride=2),
    _convt("empty_batch", (0, 2, 3), (2, 3, 3)),
    _convt("layout_transposed", (2, 3, 4), (3, 2, 3), stride=2, layout="transposed"),
    _convt("layout_sliced", (2, 2, 5), (2, 3, 3), padding=1, layout="sliced"),
    _convt("layout_reversed", (2, 3, 4), (3, 2, 3), stride=2, padding=1, layout="reversed"),
    _convt("layout_channels_last", (2, 4, 3), (4, 1, 2), groups=2, stride=2, layout="channels_last"),
]

CONV_TRANSPOSE3D = [
    _convt("basic", (2, 3, 3, 3, 3), (3, 2, 3, 3, 3)),
    _convt("no_bias", (1, 2, 2, 3, 2), (2, 3, 2, 2, 2), bias=False),
    _convt("unet_2x2x2_s2", (2, 4, 2, 3, 2), (4, 2, 2, 2, 2), stride=2),
    _convt("k3_s2_p1_outpad", (1, 2, 3, 2, 3), (2, 3, 3, 3, 3), stride=2, padding=1, output_padding=1),
    _convt("output_padding_asym", (1, 2, 2, 3, 2), (2, 2, 3, 2, 3), stride=(2, 3, 2), padding=(1, 0, 1),
           output_padding=(1, 2, 0)),
    _convt("output_padding_from_dilation", (1, 2, 3, 2, 2), (2, 2, 2, 3, 2), dilation=(2, 1, 3),
           output_padding=(1, 0, 2)),
    _convt("stride_gt_kernel", (1, 2, 2, 2, 3), (2, 2, 2, 2, 2), stride=(3, 3, 1)),
    _convt("padding_crops", (1, 2, 3, 4, 3), (2, 2, 3, 3, 3), padding=(1, 2, 1)),
    _convt("dilation_asym", (1, 2, 3, 2, 3), (2, 3, 2, 2, 2), dilation=(2, 1, 2), padding=(1, 0, 0)),
    _convt("groups2", (2, 4, 2, 2, 3), (4, 3, 2, 3, 2), groups=2, stride=2),
    _convt("depthwise", (2, 3, 3, 3, 3), (3, 1, 3, 3, 3), groups=3, padding=1),
    _convt("kernel_1x1x3", (1, 2, 2, 3, 3), (2, 3, 1, 1, 3), stride=(1, 1, 3)),
    _convt("wider_channels", (1, 16, 2, 2, 2), (16, 4, 3, 3, 3), stride=2, padding=1),
    _convt("unbatched", (3, 2, 3, 2), (3, 2, 3, 3, 3), stride=2),
    _convt("empty_batch", (0, 2, 2, 2, 2), (2, 3, 3, 3, 3)),
    _convt("layout_transposed", (2, 3, 2, 3, 2), (3, 2, 2, 3, 2), stride=2, layout="transposed"),
    _convt("layout_sliced", (1, 2, 3, 2, 3), (2, 3, 3, 3, 3), padding=1, layout="sliced"),
    _convt("layout_reversed", (2, 3, 2, 3, 3), (3, 2, 3, 3, 3), stride=(2, 1, 2), padding=1, layout="reversed"),
    _convt("layout_channels_last", (2, 4, 2, 3, 2), (4, 1, 2, 2, 2), groups=2, stride=2, layout="channels_last"),
]


# -------------------------------------------------------------------------------------------- pooling


@dataclass(frozen=True)
class MaxPoolCase:
    nd: int
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
        out = ref.pool_output_size(self.x[-self.nd:], self.kernel_size, self.stride, self.padding, self.dilation,
                                   self.ceil_mode)[0]
        return self.x[:-self.nd] + out

    def n_terms(self):
        """Backward: the windows that reach one input position (at most prod(kernel)) are summed."""
        return math.prod(ref.ntuple(self.kernel_size, self.nd))

    def arrays(self, rng, dtype):
        """A tie-free input (exact in every dtype) and a random grad_output."""
        return tie_free_array(rng, self.x, dtype), random_array(rng, self.output_shape(), dtype)


@dataclass(frozen=True)
class AvgPoolCase:
    nd: int
    x: tuple
    kernel_size: object
    stride: object = None
    padding: object = 0
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: object = None
    layout: str = "contiguous"

    def kwargs(self):
        kw = dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding, ceil_mode=self.ceil_mode,
                  count_include_pad=self.count_include_pad)
        if self.nd != 1:  # avg_pool1d takes no divisor_override, as PyTorch's
            kw["divisor_override"] = self.divisor_override
        return kw

    def reference_kwargs(self):
        return dict(self.kwargs(), divisor_override=self.divisor_override)

    def output_shape(self):
        out = ref.pool_output_size(self.x[-self.nd:], self.kernel_size, self.stride, self.padding, 1,
                                   self.ceil_mode)[0]
        return self.x[:-self.nd] + out

    def n_terms(self):
        return math.prod(ref.ntuple(self.kernel_size, self.nd)) + 1

    def arrays(self, rng, dtype):
        return random_array(rng, self.x, dtype), random_array(rng, self.output_shape(), dtype)


def _maxp(id, nd, x, k, **kw):
    return pytest.param(MaxPoolCase(nd, x, k, **kw), id=id)


def _avgp(id, nd, x, k, **kw):
    return pytest.param(AvgPoolCase(nd, x, k, **kw), id=id)


MAX_POOL1D = [
    _maxp("k2", 1, (2, 3, 8), 2),
    _maxp("k3_s2_p1", 1, (2, 2, 9), 3, stride=2, padding=1),
    _maxp("overlapping_s1", 1, (2, 2, 7), 3, stride=1),
    _maxp("stride_gt_kernel", 1, (1, 2, 10), 2, stride=3),
    _maxp("dilation2_pad1", 1, (2, 2, 9), 3, dilation=2, padding=1),
    _maxp("dilation3_tuple_args", 1, (1, 3, 11), (2,), stride=(2,), padding=(1,), dilation=(3,)),
    _maxp("ceil_mode_partial", 1, (2, 2, 7), 2, ceil_mode=True),
    _maxp("ceil_mode_window_past_padding", 1, (1, 2, 6), 3, stride=2, padding=1, ceil_mode=True),
    _maxp("ceil_mode_drop_last_in_padding", 1, (1, 2, 5), 2, stride=2, padding=1, ceil_mode=True),
    _maxp("kernel_equals_input", 1, (2, 2, 5), 5),
    _maxp("kernel_1", 1, (2, 2, 4), 1),
    _maxp("unbatched", 1, (3, 8), 2, stride=1, padding=1),
    _maxp("empty_batch", 1, (0, 2, 6), 2),
    _maxp("layout_transposed", 1, (2, 3, 7), 3, stride=2, padding=1, layout="transposed"),
    _maxp("layout_sliced", 1, (2, 2, 8), 2, layout="sliced"),
    _maxp("layout_reversed", 1, (2, 2, 9), 3, stride=2, layout="reversed"),
    _maxp("layout_channels_last", 1, (2, 3, 6), 2, stride=1, layout="channels_last"),
]

MAX_POOL3D = [
    _maxp("c3d_2x2x2", 3, (2, 3, 4, 4, 4), 2),
    _maxp("c3d_pool1_1x2x2", 3, (2, 2, 3, 4, 4), (1, 2, 2)),
    _maxp("3x3x3_s2_p1", 3, (1, 2, 5, 5, 5), 3, stride=2, padding=1),
    _maxp("overlapping_s1", 3, (1, 2, 4, 4, 4), 3, stride=1, padding=1),
    _maxp("stride_asym", 3, (1, 2, 5, 4, 6), (2, 2, 3), stride=(1, 2, 2)),
    _maxp("stride_gt_kernel", 3, (1, 2, 7, 5, 5), 2, stride=3),
    _maxp("dilation_asym_pad", 3, (1, 2, 6, 5, 7), (2, 2, 3), dilation=(2, 1, 2), padding=(1, 1, 1)),
    _maxp("ceil_mode_partial", 3, (1, 2, 5, 3, 5), 2, ceil_mode=True),
    _maxp("ceil_mode_window_past_padding", 3, (1, 2, 6, 4, 6), 3, stride=2, padding=1, ceil_mode=True),
    _maxp("ceil_mode_drop_last_in_padding", 3, (1, 2, 5, 5, 3), 2, stride=2, padding=1, ceil_mode=True),
    _maxp("kernel_equals_input", 3, (2, 2, 3, 2, 3), (3, 2, 3)),
    _maxp("depth_1", 3, (2, 2, 1, 4, 4), (1, 2, 2)),
    _maxp("unbatched", 3, (2, 4, 4, 4), 2, stride=1, padding=1),
    _maxp("empty_batch", 3, (0, 2, 4, 4, 4), 2),
    _maxp("layout_transposed", 3, (1, 2, 5, 4, 5), 3, stride=2, padding=1, layout="transposed"),
    _maxp("layout_sliced", 3, (2, 2, 4, 4, 4), 2, layout="sliced"),
    _maxp("layout_reversed", 3, (1, 2, 4, 5, 5), 3, stride=2, layout="reversed"),
    _maxp("layout_channels_last", 3, (2, 3, 4, 4, 4), 2, stride=1, layout="channels_last"),
]

AVG_POOL1D = [
    _avgp("k2", 1, (2, 3, 8), 2),
    _avgp("k3_s2_p1", 1, (2, 2, 9), 3, stride=2, padding=1),
    _avgp("k3_s2_p1_exclude_pad", 1, (2, 2, 9), 3, stride=2, padding=1, count_include_pad=False),
    _avgp("overlapping_s1_pad", 1, (2, 2, 6), 3, stride=1, padding=1),
    _avgp("tuple_args", 1, (1, 2, 10), (4,), stride=(3,), padding=(2,), count_include_pad=False),
    _avgp("stride_gt_kernel", 1, (1, 2, 10), 2, stride=3),
    _avgp("ceil_mode_partial", 1, (2, 2, 7), 2, ceil_mode=True),
    _avgp("ceil_mode_window_past_padding", 1, (1, 2, 6), 3, stride=2, padding=1, ceil_mode=True),
    _avgp("ceil_mode_window_past_padding_exclude", 1, (1, 2, 6), 3, stride=2, padding=1, ceil_mode=True,
          count_include_pad=False),
    _avgp("ceil_mode_drop_last_in_padding", 1, (1, 2, 5), 2, stride=2, padding=1, ceil_mode=True),
    _avgp("kernel_equals_input", 1, (2, 2, 5), 5),
    _avgp("unbatched", 1, (3, 7), 2, stride=1, padding=1),
    _avgp("empty_batch", 1, (0, 2, 6), 2),
    _avgp("layout_transposed", 1, (2, 2, 7), 3, stride=2, padding=1, layout="transposed"),
    _avgp("layout_sliced", 1, (2, 2, 8), 2, layout="sliced"),
    _avgp("layout_reversed", 1, (2, 2, 9), 3, stride=2, padding=1, count_include_pad=False, layout="reversed"),
    _avgp("layout_channels_last", 1, (2, 3, 6), 2, stride=1, layout="channels_last"),
]

AVG_POOL3D = [
    _avgp("2x2x2", 3, (2, 3, 4, 4, 4), 2),
    _avgp("3x3x3_s2_p1", 3, (1, 2, 5, 5, 5), 3, stride=2, padding=1),
    _avgp("3x3x3_s2_p1_exclude_pad", 3, (1, 2, 5, 5, 5), 3, stride=2, padding=1, count_include_pad=False),
    _avgp("asym_kernel_stride_pad", 3, (1, 2, 5, 4, 6), (2, 3, 2), stride=(1, 2, 2), padding=(1, 1, 0)),
    _avgp("overlapping_s1_pad_exclude", 3, (1, 2, 4, 3, 4), 3, stride=1, padding=1, count_include_pad=False),
    _avgp("stride_gt_kernel", 3, (1, 2, 7, 5, 5), 2, stride=3),
    _avgp("ceil_mode_partial", 3, (1, 2, 5, 3, 5), 2, ceil_mode=True),
    _avgp("ceil_mode_window_past_padding", 3, (1, 2, 6, 4, 6), 3, stride=2, padding=1, ceil_mode=True),
    _avgp("ceil_mode_window_past_padding_exclude", 3, (1, 2, 6, 4, 6), 3, stride=2, padding=1, ceil_mode=True,
          count_include_pad=False),
    _avgp("ceil_mode_drop_last_in_padding", 3, (1, 2, 5, 5, 3), 2, stride=2, padding=1, ceil_mode=True),
    _avgp("divisor_override", 3, (1, 2, 5, 5, 5), 3, stride=2, padding=1, divisor_override=5),
    _avgp("divisor_override_negative", 3, (1, 2, 4, 4, 4), 2, divisor_override=-3),
    _avgp("divisor_override_ceil_exclude", 3, (1, 2, 5, 4, 5), 2, ceil_mode=True, count_include_pad=False,
          divisor_override=7),
    _avgp("kernel_1", 3, (2, 2, 2, 3, 2), 1),
    _avgp("kernel_equals_input", 3, (2, 2, 3, 2, 3), (3, 2, 3)),
    _avgp("global_head", 3, (2, 4, 2, 3, 3), (2, 3, 3)),
    _avgp("unbatched", 3, (2, 4, 4, 4), 2, stride=1, padding=1),
    _avgp("empty_batch", 3, (0, 2, 4, 4, 4), 2),
    _avgp("layout_transposed", 3, (1, 2, 5, 4, 5), 3, stride=2, padding=1, layout="transposed"),
    _avgp("layout_sliced", 3, (2, 2, 4, 4, 4), 2, layout="sliced"),
    _avgp("layout_reversed", 3, (1, 2, 4, 5, 5), 3, stride=2, padding=1, count_include_pad=False,
          layout="reversed"),
    _avgp("layout_channels_last", 3, (2, 3, 4, 4, 4), 2, stride=1, layout="channels_last"),
]


# ----------------------------------------------------------------------------------- adaptive pooling


@dataclass(frozen=True)
class AdaptiveCase:
    nd: int
    x: tuple
    output_size: object
    layout: str = "contiguous"

    def out(self):
        return ref.adaptive_output_size(self.x[-self.nd:], self.output_size)

    def output_shape(self):
        return self.x[:-self.nd] + self.out()

    def n_terms(self):
        """The longest window (forward) and the most windows holding one input position (backward), plus
        the division: both at most prod(ceil(L/O) + 1)."""
        return math.prod(-(-L // O) + 1 for L, O in zip(self.x[-self.nd:], self.out()) if O) + 1

    def avg_arrays(self, rng, dtype):
        return random_array(rng, self.x, dtype), random_array(rng, self.output_shape(), dtype)

    def max_arrays(self, rng, dtype):
        return tie_free_array(rng, self.x, dtype), random_array(rng, self.output_shape(), dtype)


def _ad(id, nd, x, out, **kw):
    return pytest.param(AdaptiveCase(nd, x, out, **kw), id=id)


ADAPTIVE = [
    _ad("1d_divides", 1, (2, 3, 8), 4),
    _ad("1d_divides_tuple", 1, (2, 3, 9), (3,)),
    _ad("1d_not_dividing", 1, (2, 2, 7), 3),
    _ad("1d_not_dividing_5_to_3", 1, (2, 2, 5), 3),
    _ad("1d_larger_than_input", 1, (2, 2, 3), 5),
    _ad("1d_global", 1, (2, 4, 7), 1),
    _ad("1d_identity", 1, (2, 2, 5), 5),
    _ad("1d_none", 1, (2, 2, 6), (None,)),
    _ad("1d_unbatched", 1, (3, 7), 4),
    _ad("1d_empty_batch", 1, (0, 2, 7), 3),
    _ad("1d_zero_output", 1, (2, 2, 7), 0),
    _ad("1d_layout_sliced", 1, (2, 2, 9), 4, layout="sliced"),
    _ad("1d_layout_reversed", 1, (2, 2, 10), 3, layout="reversed"),
    _ad("2d_divides", 2, (2, 3, 6, 4), (3, 2)),
    _ad("2d_not_dividing", 2, (2, 2, 7, 5), (3, 2)),
    _ad("2d_mixed", 2, (2, 2, 6, 5), (3, 3)),
    _ad("2d_larger_than_input", 2, (1, 2, 3, 2), (5, 4)),
    _ad("2d_global_resnet_head", 2, (2, 8, 7, 7), 1),
    _ad("2d_global_tuple", 2, (2, 3, 5, 4), (1, 1)),
    _ad("2d_none_h", 2, (2, 2, 5, 7), (None, 3)),
    _ad("2d_none_w", 2, (2, 2, 7, 5), (2, None)),
    _ad("2d_one_and_many", 2, (1, 2, 5, 6), (1, 4)),
    _ad("2d_unbatched", 2, (3, 7, 6), (3, 4)),
    _ad("2d_empty_batch", 2, (0, 2, 5, 5), 3),
    _ad("2d_zero_output", 2, (1, 2, 4, 4), (0, 2)),
    _ad("2d_layout_transposed", 2, (2, 2, 7, 6), (3, 4), layout="transposed"),
    _ad("2d_layout_sliced", 2, (2, 2, 6, 7), 3, layout="sliced"),
    _ad("2d_layout_channels_last", 2, (2, 3, 5, 5), (2, 3), layout="channels_last"),
    _ad("2d_layout_reversed", 2, (2, 2, 5, 7), (4, 2), layout="reversed"),
    _ad("3d_divides", 3, (2, 2, 4, 6, 4), (2, 3, 2)),
    _ad("3d_not_dividing", 3, (1, 2, 5, 7, 5), (3, 3, 2)),
    _ad("3d_larger_than_input", 3, (1, 2, 2, 3, 2), (3, 4, 3)),
    _ad("3d_global", 3, (2, 4, 3, 4, 3), 1),
    _ad("3d_none", 3, (1, 2, 4, 5, 3), (None, 2, None)),
    _ad("3d_mixed", 3, (1, 2, 5, 4, 6), (2, 4, 4)),
    _ad("3d_unbatched", 3, (2, 5, 4, 5), (3, 2, 2)),
    _ad("3d_empty_batch", 3, (0, 2, 4, 4, 4), 2),
    _ad("3d_layout_transposed", 3, (1, 2, 4, 5, 6), (3, 2, 4), layout="transposed"),
    _ad("3d_layout_sliced", 3, (1, 2, 5, 4, 5), 3, layout="sliced"),
    _ad("3d_layout_channels_last", 3, (2, 3, 4, 4, 5), (2, 3, 2), layout="channels_last"),
    _ad("3d_layout_reversed", 3, (1, 2, 5, 5, 4), (2, 2, 3), layout="reversed"),
]
