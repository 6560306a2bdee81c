"""Issue 14, classes 5 and 7: cost that grows with an argument instead of the work, and the sign of zero.

Class 5: valid calls with a stride, dilation or pooling kernel far larger than the input (so one output
along that axis, or windows that mostly read padding) must cost what the input and output sizes say. The
old code took seconds at stride 10**6 (avg_pool2d: one buffer phase per stride step), tried to allocate
298 GiB for max_pool2d with stride = dilation = 10**5, raised OverflowError at 2**31 - 1 (int32 tap offsets)
and NumPy's "array is too big" in conv2d_backward. No time is asserted: each call's answer is checked
against PyTorch, and the peak of the memory NumPy allocates (tracemalloc sees NumPy's allocations) must stay
under a bound that a workspace growing with the argument would break (the inputs here are a few KiB).

Class 7: PyTorch's average pooling sums from +0.0, so a window of -0.0 gives +0.0 (forward and backward).
"""

from __future__ import annotations

import tracemalloc

import numpy
import pytest

import gpuconv

torch = pytest.importorskip("torch")
F = torch.nn.functional

PEAK_BYTES = 8 << 20  # 8 MiB: the arrays here hold about 2 KiB; a workspace scaling with 10**5 would not fit


def _with_peak(call):
    tracemalloc.start()
    try:
        result = call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak


def _x(shape=(2, 3, 9, 9), seed=0):
    """A shuffled range: no ties, so max-pool indices are unique."""
    rng = numpy.random.default_rng(seed)
    return rng.permutation(int(numpy.prod(shape))).astype(numpy.float64).reshape(shape) - 40.0


BIG = [10**5, 10**6, 2**31 - 1]

POOL_CASES = [  # (op, kwargs)
    *[("avg", dict(kernel_size=2, stride=s)) for s in BIG],
    *[("avg", dict(kernel_size=3, stride=(1, s), padding=1, ceil_mode=True)) for s in BIG],
    *[("avg", dict(kernel_size=3, stride=(s, 2), padding=1, count_include_pad=False)) for s in BIG],
    *[("max", dict(kernel_size=2, stride=s, dilation=s, ceil_mode=True)) for s in BIG],
    *[("max", dict(kernel_size=2, stride=s)) for s in BIG],
    *[("max", dict(kernel_size=2, stride=(1, s), padding=1, dilation=(1, s), ceil_mode=True)) for s in BIG],
    *[("max", dict(kernel_size=(2, 3), stride=(s, 2), padding=1, dilation=(s, 2), ceil_mode=True)) for s in BIG],
    ("max", dict(kernel_size=2**20, stride=1, padding=2**19)),  # windows of mostly padding
    ("avg", dict(kernel_size=2**20, stride=1, padding=2**19)),
    ("avg", dict(kernel_size=(2**20, 3), stride=(1, 2), padding=(2**19, 1), count_include_pad=False)),
    ("max", dict(kernel_size=(3, 2**18), stride=(2, 5), padding=(1, 2**17), ceil_mode=True)),
    # kernel and padding far past the input with two outputs per axis: windows far apart (_pool_split)
    ("max", dict(kernel_size=2**13, stride=2**12, padding=2**12, ceil_mode=True)),
    ("avg", dict(kernel_size=2**13, stride=2**12, padding=2**12, ceil_mode=True)),
    ("avg", dict(kernel_size=(2**12, 3), stride=(2**11 - 3, 2), padding=(2**11, 1), ceil_mode=True,
                 count_include_pad=False)),
    ("max", dict(kernel_size=(3, 2**14), stride=(2, 2**13 - 1), padding=(1, 2**13), dilation=(2, 1),
                 ceil_mode=True)),
]


@pytest.mark.parametrize("op, kwargs", POOL_CASES, ids=[f"{op}-{i}" for i, (op, _) in enumerate(POOL_CASES)])
def test_pooling_with_huge_arguments_matches_torch_in_bounded_memory(op, kwargs):
    x = _x()
    tx = torch.from_numpy(x).requires_grad_()
    if op == "max":
        (y, idx), peak = _with_peak(lambda: gpuconv.max_pool2d(x, **kwargs, return_indices=True))
        ty, tidx = F.max_pool2d(tx, **kwargs, return_indices=True)
        numpy.testing.assert_array_equal(idx, tidx.numpy())
        numpy.testing.assert_array_equal(y, ty.detach().numpy())
        gy = numpy.random.default_rng(1).standard_normal(y.shape)
        if (idx < 81).all():  # PyTorch's out-of-plane index of an all-padding window has no backward
            gx, peak_b = _with_peak(lambda: gpuconv.max_pool2d_backward(gy, idx, x.shape))
            ty.backward(torch.from_numpy(gy))
            numpy.testing.assert_array_equal(gx, tx.grad.numpy())
            peak = max(peak, peak_b)
    else:
        y, peak = _with_peak(lambda: gpuconv.avg_pool2d(x, **kwargs))
        ty = F.avg_pool2d(tx, **kwargs)
        numpy.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-13, atol=0)
        gy = numpy.random.default_rng(1).standard_normal(y.shape)
        gx, peak_b = _with_peak(lambda: gpuconv.avg_pool2d_backward(gy, x.shape, **kwargs))
        ty.backward(torch.from_numpy(gy))
        numpy.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-13, atol=1e-300)
        peak = max(peak, peak_b)
    assert peak < PEAK_BYTES, f"peak NumPy allocation {peak} bytes"


CONV_CASES = [  # (x shape, w shape, stride, padding, dilation, groups)
    *[((2, 4, 9, 9), (4, 1, 3, 3), s, 1, 1, 4) for s in BIG],  # depthwise
    *[((2, 3, 9, 9), (5, 3, 3, 3), s, 1, 1, 1) for s in BIG],
    *[((2, 6, 9, 9), (2, 6, 3, 3), (s, 1), 1, 1, 1) for s in BIG],  # K < C: dgrad by stride phases
    *[((2, 3, 9, 9), (4, 3, 3, 3), (2, s), (1, 0), 1, 1) for s in BIG],
    ((1, 2, 9, 9), (4, 1, 3, 3), (10**6, 3), 1, 2, 2),
    # windows that mostly read padding: padding with dilation (or stride) far past the input
    ((2, 3, 9, 9), (4, 3, 3, 3), 1, 10**6, 10**6, 1),
    ((2, 4, 9, 9), (4, 1, 3, 3), 1, 10**5, 10**5, 4),
    ((2, 3, 9, 9), (4, 3, 3, 3), 10**6, 10**6, 1, 1),
    ((2, 6, 9, 9), (2, 6, 3, 3), (10**6, 1), (10**6, 1), (10**6, 1), 1),
    ((1, 2, 7, 8), (3, 2, 3, 3), 2, (10**5, 2), (10**5, 1), 1),
    ((2, 3, 9, 9), (4, 3, 2, 2), 10**5, 10**5, 10**5, 1),  # input row 0 read by two (output, tap) pairs
]


@pytest.mark.parametrize("case", CONV_CASES, ids=[f"conv-{i}" for i in range(len(CONV_CASES))])
def test_convolutions_with_huge_strides_match_torch_in_bounded_memory(case):
    x_shape, w_shape, stride, padding, dilation, groups = case
    rng = numpy.random.default_rng(2)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y, peak_f = _with_peak(lambda: gpuconv.conv2d(x, w, **kw))
    gy = rng.standard_normal(y.shape)
    (gx, gw, gb), peak_b = _with_peak(lambda: gpuconv.conv2d_backward(gy, x, w, **kw))
    tx, tw = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
    ty = F.conv2d(tx, tw, **kw)
    ty.backward(torch.from_numpy(gy))
    for got, want, what in ((y, ty.detach(), "output"), (gx, tx.grad, "grad_input"), (gw, tw.grad, "grad_weight")):
        numpy.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-12, err_msg=what)
    # the transposed convolution of gy (whose dgrad this is) alike
    ct, peak_t = _with_peak(lambda: gpuconv.conv_transpose2d(gy, w, **kw))
    want = F.conv_transpose2d(torch.from_numpy(gy), torch.from_numpy(w), **kw).numpy()
    numpy.testing.assert_allclose(ct, want, rtol=1e-10, atol=1e-12)
    assert max(peak_f, peak_b, peak_t) < PEAK_BYTES, (peak_f, peak_b, peak_t)


# ---------------------------------------------------------------------------------------- class 7

AVG_KWARGS = [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=1),
              dict(kernel_size=2, divisor_override=3), dict(kernel_size=3, stride=2, ceil_mode=True,
                                                             count_include_pad=False)]


@pytest.mark.parametrize("dtype", [numpy.float16, numpy.float32, numpy.float64])
@pytest.mark.parametrize("kwargs", AVG_KWARGS)
def test_average_pooling_of_negative_zero_is_positive_zero(kwargs, dtype):
    x = numpy.full((1, 2, 5, 5), -0.0, dtype)
    y = gpuconv.avg_pool2d(x, **kwargs)
    tx = torch.from_numpy(x.astype(numpy.float32)).requires_grad_()
    ty = F.avg_pool2d(tx, **kwargs)
    numpy.testing.assert_array_equal(numpy.signbit(y), numpy.signbit(ty.detach().numpy()))
    assert not numpy.signbit(y).any()
    gy = numpy.full(y.shape, -0.0, dtype)
    gx = gpuconv.avg_pool2d_backward(gy, x.shape, **kwargs)
    ty.backward(torch.from_numpy(gy.astype(numpy.float32)))
    numpy.testing.assert_array_equal(numpy.signbit(gx), numpy.signbit(tx.grad.numpy()))
    assert not numpy.signbit(gx).any()


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=(2**24, 2, 2), padding=(2**23, 0, 0)),
    dict(kernel_size=(2**12, 2, 3), stride=(2**11, 1, 2), padding=(2**11, 0, 1), ceil_mode=True),
], ids=["one-output", "two-outputs"])
def test_3d_max_pooling_with_a_huge_depth_kernel_visits_only_the_taps_that_read_the_input(kwargs):
    """The 3-d composition combines depth taps one by one: it must visit the few that read the input (the
    old loop ran over every tap of the kernel: 2**24 Python iterations here), with PyTorch's answer."""
    x = _x((1, 2, 5, 6, 6))
    (y, idx), peak = _with_peak(lambda: gpuconv.max_pool3d(x, **kwargs, return_indices=True))
    ty, tidx = F.max_pool3d(torch.from_numpy(x), **kwargs, return_indices=True)
    numpy.testing.assert_array_equal(y, ty.numpy())
    numpy.testing.assert_array_equal(idx, tidx.numpy())
    assert peak < PEAK_BYTES
