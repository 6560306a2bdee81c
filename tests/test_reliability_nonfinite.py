"""Issue 14, class 2: a NaN or Inf weight gives PyTorch's NaNs, no more.

A position of the input gradient (and of a transposed convolution's output) that a tap reaches only through
padding gets nothing from that tap. The old stride-1 dgrad (a forward convolution of zero-padded gy with the
flipped filter) multiplied padding zeros by the bad tap: 36 NaNs where PyTorch has 25 (the issue's case),
and NaNs from an Inf weight where PyTorch has none. Checked against PyTorch in float64: the same NaN
positions, the same values elsewhere, for the forward and all three gradients.

The GPU rows (cupy backends; skipped without a GPU) check the forward, the input gradient and the transposed
convolution's forward in float32 and float16 against PyTorch. The implicit-GEMM and depthwise dgrads multiply
padding zeros by the weight (test_implicit_gemm_on_host.py, "nonfinite") and the direct forward skips padding
taps (PyTorch's forward multiplies its zero padding: 0 * inf is NaN there); their repairs are the experimental
feature nonfinite_weights (test_reliability_nonfinite_repair_host.py), so those rows xfail unless
GPUCONV_UNVERIFIED turns it on (the one-run GPU check runs the tables with it on).
"""

from __future__ import annotations

import numpy
import pytest

import gpuconv

torch = pytest.importorskip("torch")
F = torch.nn.functional

# (x shape, w shape, stride, padding, dilation, groups, padding_mode)
CONV_CASES = [
    ((1, 4, 6, 6), (4, 4, 3, 3), 1, 1, 1, 1, "zeros"),  # the issue's case
    ((2, 4, 6, 6), (4, 4, 3, 3), 2, 1, 1, 1, "zeros"),
    ((1, 2, 9, 9), (6, 2, 3, 3), 1, 2, 1, 1, "zeros"),  # K > C: the GEMM methods
    ((1, 6, 9, 9), (2, 6, 3, 3), 2, 2, 1, 1, "zeros"),  # K < C at stride 2: the stride phases
    ((1, 4, 9, 9), (4, 1, 3, 3), 1, 1, 1, 4, "zeros"),  # depthwise: the direct method
    ((1, 4, 9, 9), (4, 1, 3, 3), 2, 1, 1, 4, "zeros"),
    ((1, 4, 9, 9), (4, 4, 3, 3), 1, 2, 2, 1, "zeros"),  # dilated
    ((1, 4, 9, 8), (4, 2, 5, 3), 1, (2, 1), 1, 2, "zeros"),
    ((2, 3, 9, 9), (6, 3, 3, 3), 3, 2, 1, 1, "zeros"),
    ((1, 4, 6, 6), (4, 4, 3, 3), 1, 1, 1, 1, "reflect"),
    ((1, 4, 6, 6), (4, 4, 3, 3), 1, 1, 1, 1, "circular"),
    ((1, 3, 7, 7), (4, 3, 3, 3), 1, 10**5, 10**5, 1, "zeros"),  # rows and columns gathered (_sparse_axes)
]

# (x shape, w shape (in, out/groups, R, S), stride, padding, output_padding, groups, dilation)
TRANSPOSE_CASES = [
    ((1, 4, 6, 6), (4, 4, 3, 3), 1, 1, 0, 1, 1),
    ((1, 4, 6, 6), (4, 2, 3, 3), 2, 1, 1, 1, 1),
    ((1, 4, 5, 5), (4, 1, 3, 3), 1, 0, 0, 4, 1),
    ((1, 2, 5, 5), (2, 4, 4, 4), 2, 1, 0, 1, 1),
    ((1, 4, 5, 5), (4, 4, 3, 3), 1, 2, 0, 1, 2),
]


def _assert_like_torch(got, want, what):
    numpy.testing.assert_array_equal(numpy.isnan(got), numpy.isnan(want), err_msg=f"{what}: NaN positions")
    numpy.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10, err_msg=what)


def _weights(shape, bad, seed):
    rng = numpy.random.default_rng(seed)
    w = rng.standard_normal(shape)
    w[(0, 0, shape[2] - 1, shape[3] - 1)] = bad  # the last tap: it reaches past gy's start
    w[(shape[0] - 1, shape[1] - 1, 0, 0)] = bad  # the first tap: past its end
    return w


@pytest.mark.parametrize("bad", [numpy.nan, numpy.inf, -numpy.inf])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_and_backward_with_a_non_finite_weight_match_torch(case, bad):
    x_shape, w_shape, stride, padding, dilation, groups, mode = case
    rng = numpy.random.default_rng(3)
    x = rng.standard_normal(x_shape)
    w = _weights(w_shape, bad, 4)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y = gpuconv.conv2d(x, w, padding_mode=mode, **kw)
    gy = rng.standard_normal(y.shape)
    gx, gw, gb = gpuconv.conv2d_backward(gy, x, w, padding_mode=mode, **kw)

    tx, tw = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
    if mode == "zeros":
        ty = F.conv2d(tx, tw, **kw)
    else:
        p = (padding, padding) if isinstance(padding, int) else padding
        ty = F.conv2d(F.pad(tx, (p[1], p[1], p[0], p[0]), mode=mode), tw, stride=stride, dilation=dilation,
                      groups=groups)
    ty.backward(torch.from_numpy(gy))
    _assert_like_torch(y, ty.detach().numpy(), "output")
    _assert_like_torch(gx, tx.grad.numpy(), "grad_input")
    _assert_like_torch(gw, tw.grad.numpy(), "grad_weight")
    _assert_like_torch(gb, gy.sum(axis=(0, 2, 3)), "grad_bias")


@pytest.mark.parametrize("bad", [numpy.nan, numpy.inf])
@pytest.mark.parametrize("case", TRANSPOSE_CASES)
def test_conv_transpose2d_and_backward_with_a_non_finite_weight_match_torch(case, bad):
    x_shape, w_shape, stride, padding, output_padding, groups, dilation = case
    rng = numpy.random.default_rng(5)
    x = rng.standard_normal(x_shape)
    w = _weights(w_shape, bad, 6)
    kw = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
    y = gpuconv.conv_transpose2d(x, w, **kw)
    gy = rng.standard_normal(y.shape)
    gx, gw, _ = gpuconv.conv_transpose2d_backward(gy, x, w, **kw)
    tx, tw = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
    ty = F.conv_transpose2d(tx, tw, **kw)
    ty.backward(torch.from_numpy(gy))
    _assert_like_torch(y, ty.detach().numpy(), "output")
    _assert_like_torch(gx, tx.grad.numpy(), "grad_input")
    _assert_like_torch(gw, tw.grad.numpy(), "grad_weight")


@pytest.mark.parametrize("bad", [numpy.nan, numpy.inf])
@pytest.mark.parametrize("nd", [1, 3])
@pytest.mark.parametrize("stride, padding, dilation", [(1, 1, 1), (2, 1, 1), (1, 2, 2), (2, 2, 1)])
@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "transposed"])
def test_1d_and_3d_convolutions_with_a_non_finite_weight_match_torch(nd, stride, padding, dilation, transposed, bad):
    """The 1-d ops (height-1 2-d views) and the 3-d composition (depth folded into channels, depth padding
    as zero slices): forward and all gradients with PyTorch's NaNs."""
    rng = numpy.random.default_rng(13)
    x = rng.standard_normal((2, 3) + (7,) * nd)
    w = rng.standard_normal(((3, 4) if transposed else (4, 3)) + (3,) * nd)
    w[(0, 0) + (2,) * nd] = bad
    w[(-1, -1) + (0,) * nd] = -bad
    kind = "conv_transpose" if transposed else "conv"
    forward, backward = getattr(gpuconv, f"{kind}{nd}d"), getattr(gpuconv, f"{kind}{nd}d_backward")
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    y = forward(x, w, **kw)
    gy = rng.standard_normal(y.shape)
    gx, gw, _ = backward(gy, x, w, **kw)
    tx, tw = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
    ty = getattr(F, f"{kind}{nd}d")(tx, tw, **kw)
    ty.backward(torch.from_numpy(gy))
    _assert_like_torch(y, ty.detach().numpy(), "output")
    _assert_like_torch(gx, tx.grad.numpy(), "grad_input")
    _assert_like_torch(gw, tw.grad.numpy(), "grad_weight")


def test_the_issues_count():
    """x (1,4,6,6), w (4,4,3,3), w[0,0,2,2] = NaN, padding 1: 25 NaNs in grad_input (were 36); Inf: none."""
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((1, 4, 6, 6))
    w = rng.standard_normal((4, 4, 3, 3))
    gy = rng.standard_normal((1, 4, 6, 6))
    w[0, 0, 2, 2] = numpy.nan
    assert numpy.isnan(gpuconv.conv2d_backward(gy, x, w, padding=1)[0]).sum() == 25
    w[0, 0, 2, 2] = numpy.inf
    assert numpy.isnan(gpuconv.conv2d_backward(gy, x, w, padding=1)[0]).sum() == 0


def _default_gap(g, dtype, pass_name) -> bool:
    """Whether the CUDA kernel that runs this pass of g has NaNs of its own for a non-finite weight (a dgrad
    that multiplies padding zeros by it, the direct fprop that skips padding taps) with no repair switched on."""
    from gpuconv._cuda import _algo, _config

    config = _config.current()
    variant = _algo.conv_variant(g, numpy.dtype(dtype), pass_name, config)
    return pass_name in variant.nonfinite_repair and _algo.nonfinite_repair(
        variant, g, numpy.dtype(dtype), pass_name, config) is None


GPU_TOLERANCE = {numpy.float32: 1e-4, numpy.float16: 2e-2}
GPU_CONV_CASES = [c for c in CONV_CASES if c[-1] == "zeros" and c[3] != 10**5]


def _assert_like_torch_within(got, want, tol, what):
    numpy.testing.assert_array_equal(numpy.isnan(got), numpy.isnan(want), err_msg=f"{what}: NaN positions")
    numpy.testing.assert_array_equal(got[numpy.isinf(want)], want[numpy.isinf(want)], err_msg=f"{what}: infinities")
    finite = numpy.isfinite(want)
    if finite.any():
        scale = numpy.abs(want[finite]).max()
        numpy.testing.assert_allclose(got[finite], want[finite], rtol=tol, atol=tol * scale, err_msg=what)


GAP_REASONS = {"dgrad": "this dgrad kernel multiplies padding zeros by the weight",
               "fprop": "the direct forward skips padding taps"}


def _gpu_conv_case(backend, case, bad, dtype, pass_name, seed):
    """(rng, x, w, kw, g) of a CONV_CASES row on a GPU backend; skips on NumPy (the tests above) and where the
    forced algorithm does not run the pass, xfails where the default kernel keeps its own NaNs."""
    from gpuconv import _params

    if not backend.is_gpu:
        pytest.skip("the NumPy path: test_conv2d_and_backward_with_a_non_finite_weight_match_torch")
    x_shape, w_shape, stride, padding, dilation, groups, _ = case
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = _weights(w_shape, bad, seed + 1).astype(dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    g = _params.conv2d_call("conv2d", x, w, None, stride, padding, dilation, groups, "zeros").geometry
    backend.skip_unsupported_conv(g, dtype, (pass_name,))
    if _default_gap(g, dtype, pass_name):
        pytest.xfail(f"{GAP_REASONS[pass_name]}; GPUCONV_UNVERIFIED=nonfinite_weights")
    return rng, x, w, kw, g


def _f64(*arrays):
    return tuple(torch.from_numpy(a.astype(numpy.float64)) for a in arrays)


@pytest.mark.parametrize("dtype", list(GPU_TOLERANCE))
@pytest.mark.parametrize("bad", [numpy.nan, numpy.inf])
@pytest.mark.parametrize("case", GPU_CONV_CASES)
def test_gpu_grad_input_with_a_non_finite_weight_matches_torch(backend, case, bad, dtype):
    rng, x, w, kw, g = _gpu_conv_case(backend, case, bad, dtype, "dgrad", seed=7)
    gy = rng.standard_normal(g.output_shape).astype(dtype)
    gx = backend.get(gpuconv.conv2d_backward(*map(backend.put, (gy, x, w)), output_mask=(True, False, False), **kw)[0])
    tx, tw, tgy = _f64(x, w, gy)
    tx.requires_grad_()
    F.conv2d(tx, tw, **kw).backward(tgy)
    _assert_like_torch_within(gx.astype(numpy.float64), tx.grad.numpy(), GPU_TOLERANCE[dtype], "grad_input")


@pytest.mark.parametrize("dtype", list(GPU_TOLERANCE))
@pytest.mark.parametrize("bad", [numpy.nan, numpy.inf])
@pytest.mark.parametrize("case", GPU_CONV_CASES)
def test_gpu_conv2d_with_a_non_finite_weight_matches_torch(backend, case, bad, dtype):
    _, x, w, kw, _ = _gpu_conv_case(backend, case, bad, dtype, "fprop", seed=11)
    y = backend.get(gpuconv.conv2d(backend.put(x), backend.put(w), **kw))
    want = F.conv2d(*_f64(x, w), **kw).numpy()
    _assert_like_torch_within(y.astype(numpy.float64), want, GPU_TOLERANCE[dtype], "output")


@pytest.mark.parametrize("dtype", list(GPU_TOLERANCE))
@pytest.mark.parametrize("bad", [numpy.nan, numpy.inf])
@pytest.mark.parametrize("case", TRANSPOSE_CASES)
def test_gpu_conv_transpose2d_with_a_non_finite_weight_matches_torch(backend, case, bad, dtype):
    from gpuconv import _params

    if not backend.is_gpu:
        pytest.skip("the NumPy path: test_conv_transpose2d_and_backward_with_a_non_finite_weight_match_torch")
    x_shape, w_shape, stride, padding, output_padding, groups, dilation = case
    rng = numpy.random.default_rng(9)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = _weights(w_shape, bad, 10).astype(dtype)
    b = rng.standard_normal(w_shape[1] * groups).astype(dtype)
    kw = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
    g = _params.conv_transpose2d_call("conv_transpose2d", x, w, b, stride, padding, output_padding, groups,
                                      dilation).geometry
    backend.skip_unsupported_conv(g, dtype, ("dgrad",))
    if _default_gap(g, dtype, "dgrad"):
        pytest.xfail(f"{GAP_REASONS['dgrad']}; GPUCONV_UNVERIFIED=nonfinite_weights")
    y = backend.get(gpuconv.conv_transpose2d(backend.put(x), backend.put(w), backend.put(b), **kw))
    want = F.conv_transpose2d(*_f64(x, w, b), **kw).numpy()
    _assert_like_torch_within(y.astype(numpy.float64), want, GPU_TOLERANCE[dtype], "output")
