"""conv1d / conv3d and conv_transpose1d / conv_transpose3d with their backward functions over the case tables,
on every backend and dtype, against the loop reference (reference_nd), PyTorch (when installed) and, for
CuPy, the NumPy path. Each call also checks that its inputs are left as they were and that outputs have the
input's array kind and dtype; GPU backends fill outputs with NaN first (conftest), so an unwritten element
fails."""

from __future__ import annotations

import itertools

import numpy
import pytest

import cases_nd
import gpuconv
import reference_nd as ref
from cases_nd import batch, call_unchanged, unbatch
from gpuconv import _params
from helpers import DTYPES, absolute, assert_array, assert_close

GRAD_NAMES = ("grad_input", "grad_weight", "grad_bias")


def _table(**tables):
    """One parameter list over several tables, ids prefixed by the table's name."""
    return [pytest.param(p.values[0], id=f"{name}-{p.id}") for name, table in tables.items() for p in table]


CONV = _table(conv1d=cases_nd.CONV1D, conv3d=cases_nd.CONV3D)
CONV_TRANSPOSE = _table(conv_transpose1d=cases_nd.CONV_TRANSPOSE1D, conv_transpose3d=cases_nd.CONV_TRANSPOSE3D)


def _op(name, nd):
    return getattr(gpuconv, name.format(nd=nd))


def _skip_unsupported(backend, case, x, w, dtype, passes):
    """1-d runs the 2-d kernels on a plane of height 1: skip where the forced algorithm does not take it.
    (3-d composes several 2-d problems; a forced algorithm that declines one falls back, which is harmless.)"""
    if case.nd == 1 and backend.algo in ("implicit_gemm", "depthwise"):
        call = _params.conv_call("conv1d", 1, x, w, None, case.stride, case.padding, case.dilation, case.groups,
                                 case.padding_mode)
        backend.skip_unsupported_conv(call.geometry, dtype, passes)


# ---------------------------------------------------------------------------------------- convolution


def _conv_reference(case, x, w, b):
    nd = case.nd
    return unbatch(ref.conv_any_mode(batch(x, nd), w, b, *case.reference_args()), nd, x.ndim)


def _conv_backward_reference(case, gy, x, w):
    nd = case.nd
    gx, gw, gb = ref.conv_backward_any_mode(batch(gy, nd), batch(x, nd), w, *case.reference_args())
    return unbatch(gx, nd, x.ndim), gw, gb


def _run_conv(backend, case, x, w, b):
    return call_unchanged(backend, case.layout, _op("conv{nd}d", case.nd), dict(input=x, weight=w, bias=b),
                          **case.kwargs())


def _run_conv_backward(backend, case, gy, x, w, output_mask=(True, True, True)):
    return call_unchanged(backend, case.layout, _op("conv{nd}d_backward", case.nd),
                          dict(grad_output=gy, input=x, weight=w), **case.kwargs(), output_mask=output_mask)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV)
def test_conv_forward(backend, case, dtype, rng):
    x, w, b, _ = case.arrays(rng, dtype)
    _skip_unsupported(backend, case, x, w, dtype, ["fprop"])
    y = _run_conv(backend, case, x, w, b)
    assert_array(backend, y, dtype, case.output_shape(), "output")
    expected, bound = _conv_reference(case, x, w, b), _conv_reference(case, *absolute(x, w, b))
    assert_close(backend.get(y), expected, bound, dtype, case.n_terms(), "conv vs reference")
    if backend.is_gpu:
        y_numpy = _op("conv{nd}d", case.nd)(x, w, b, **case.kwargs())
        assert_close(backend.get(y), y_numpy, bound, dtype, case.n_terms(), "conv vs NumPy path", slack=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV)
def test_conv_backward(backend, case, dtype, rng):
    x, w, _, gy = case.arrays(rng, dtype)
    _skip_unsupported(backend, case, x, w, dtype, ["dgrad", "wgrad"])
    grads = _run_conv_backward(backend, case, gy, x, w)
    for name, g, shape in zip(GRAD_NAMES, grads, (x.shape, w.shape, w.shape[:1])):
        assert_array(backend, g, dtype, shape, name)
    expected = _conv_backward_reference(case, gy, x, w)
    bounds = _conv_backward_reference(case, *absolute(gy, x, w))
    for name, g, e, bound in zip(GRAD_NAMES, grads, expected, bounds):
        assert_close(backend.get(g), e, bound, dtype, case.n_terms(), f"{name} vs reference")
    if backend.is_gpu:
        numpy_grads = _op("conv{nd}d_backward", case.nd)(gy, x, w, **case.kwargs())
        for name, g, e, bound in zip(GRAD_NAMES, grads, numpy_grads, bounds):
            assert_close(backend.get(g), e, bound, dtype, case.n_terms(), f"{name} vs NumPy path", slack=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV)
def test_conv_matches_torch(backend, case, dtype, rng):
    """Forward and every gradient against torch.nn.functional in float64 on the same (dtype-rounded) data;
    on a GPU also against torch's CUDA ops in dtype."""
    torch_oracle_nd = pytest.importorskip("torch_oracle_nd", reason="needs torch")
    nd, kw = case.nd, case.kwargs()
    x, w, b, gy = case.arrays(rng, dtype)
    _skip_unsupported(backend, case, x, w, dtype, ["fprop", "dgrad", "wgrad"])
    y = backend.get(_run_conv(backend, case, x, w, b))
    grads = [backend.get(g) for g in _run_conv_backward(backend, case, gy, x, w)]
    x64, w64, b64, gy64 = (None if a is None else a.astype(numpy.float64) for a in (x, w, b, gy))
    bound = torch_oracle_nd.conv(nd, *absolute(x, w, b), **kw)
    assert_close(y, torch_oracle_nd.conv(nd, x64, w64, b64, **kw), bound, dtype, case.n_terms(), "conv vs torch")
    bounds = torch_oracle_nd.conv_backward(nd, *absolute(gy, x, w), **kw)
    for name, g, e, bd in zip(GRAD_NAMES, grads, torch_oracle_nd.conv_backward(nd, gy64, x64, w64, **kw), bounds):
        assert_close(g, e, bd, dtype, case.n_terms(), f"{name} vs torch")
    if backend.is_gpu and torch_oracle_nd.cuda_available():
        assert_close(y, torch_oracle_nd.conv(nd, x, w, b, **kw, device="cuda"), bound, dtype, case.n_terms(),
                     "conv vs torch CUDA", slack=2)
        for name, g, e, bd in zip(GRAD_NAMES, grads,
                                  torch_oracle_nd.conv_backward(nd, gy, x, w, **kw, device="cuda"), bounds):
            assert_close(g, e, bd, dtype, case.n_terms(), f"{name} vs torch CUDA", slack=2)


MASK_CASES = [p for p in CONV if p.id.split("-", 1)[1] in ("basic", "groups2", "reflect", "unbatched", "empty_batch")]


@pytest.mark.parametrize("case", MASK_CASES)
@pytest.mark.parametrize("mask", list(itertools.product((False, True), repeat=3)), ids=str)
def test_conv_backward_output_mask(backend, case, mask, rng):
    """Gradients the mask turns off are None; the others equal the full call's."""
    x, w, _, gy = case.arrays(rng, numpy.float64)
    _skip_unsupported(backend, case, x, w, numpy.float64, ["dgrad", "wgrad"])
    full = _run_conv_backward(backend, case, gy, x, w)
    masked = _run_conv_backward(backend, case, gy, x, w, output_mask=mask)
    assert len(masked) == 3
    for name, on, g, g_full in zip(GRAD_NAMES, mask, masked, full):
        if not on:
            assert g is None, f"{name} should be None when output_mask turns it off"
        else:
            numpy.testing.assert_allclose(backend.get(g), backend.get(g_full), rtol=1e-13, atol=1e-13,
                                          err_msg=name)


DETERMINISM_CASES = [p for p in CONV if p.id.split("-", 1)[1] in (
    "basic", "stride2", "groups3_stride2", "depthwise", "dilation2_pad2", "circular", "wider_channels",
    "stride_depth_gt_kernel")]


@pytest.mark.parametrize("dtype", (numpy.float32, numpy.float16))
@pytest.mark.parametrize("case", DETERMINISM_CASES)
def test_conv_deterministic(backend, case, dtype, rng):
    """The same call twice gives bitwise identical results, backward included (no atomics)."""
    x, w, b, gy = case.arrays(rng, dtype)
    _skip_unsupported(backend, case, x, w, dtype, ["fprop", "dgrad", "wgrad"])
    runs = [[_run_conv(backend, case, x, w, b), *_run_conv_backward(backend, case, gy, x, w)] for _ in range(2)]
    for name, a, b_ in zip(("output",) + GRAD_NAMES, *runs):
        assert numpy.array_equal(backend.get(a), backend.get(b_), equal_nan=True), f"{name} differs between runs"


CHUNK_CASES = [
    pytest.param(cases_nd.ConvCase((3, 2, 5, 4, 5), (3, 2, 3, 3, 3), stride=2, padding=1), id="stride2_pad1"),
    pytest.param(cases_nd.ConvCase((2, 4, 6, 3, 4), (4, 2, 2, 2, 3), dilation=(2, 1, 1), groups=2,
                                   padding=(1, 0, 1), padding_mode="reflect"), id="dilated_groups_reflect"),
]


@pytest.mark.parametrize("case", CHUNK_CASES)
def test_conv3d_chunked_workspace(monkeypatch, case, rng):
    """3-d builds its stacked input in chunks of WORKSPACE_BYTES: a tiny cap (one row per chunk: images and
    depths split) gives the reference's answers, forward, backward and the transposed forward."""
    from gpuconv import _volume

    monkeypatch.setattr(_volume, "WORKSPACE_BYTES", 1)
    x, w, b, gy = case.arrays(rng, numpy.float64)
    close = dict(rtol=1e-12, atol=1e-12)
    numpy.testing.assert_allclose(gpuconv.conv3d(x, w, b, **case.kwargs()), _conv_reference(case, x, w, b), **close)
    for g, e in zip(gpuconv.conv3d_backward(gy, x, w, **case.kwargs()), _conv_backward_reference(case, gy, x, w)):
        numpy.testing.assert_allclose(g, e, **close)
    if case.padding_mode == "zeros":
        kw = dict(stride=case.stride, padding=case.padding, dilation=case.dilation)
        numpy.testing.assert_allclose(gpuconv.conv_transpose3d(gy, w, None, **kw), ref.conv_transpose(gy, w, **kw),
                                      **close)


# ------------------------------------------------------------------------------ transposed convolution


def _convt_reference(case, x, w, b):
    nd = case.nd
    return unbatch(ref.conv_transpose(batch(x, nd), w, b, **case.kwargs()), nd, x.ndim)


def _convt_backward_reference(case, gy, x, w):
    nd = case.nd
    gx, gw, gb = ref.conv_transpose_backward(batch(gy, nd), batch(x, nd), w, **case.kwargs())
    return unbatch(gx, nd, x.ndim), gw, gb


def _run_convt(backend, case, x, w, b):
    return call_unchanged(backend, case.layout, _op("conv_transpose{nd}d", case.nd),
                          dict(input=x, weight=w, bias=b), **case.kwargs())


def _run_convt_backward(backend, case, gy, x, w, output_mask=(True, True, True)):
    return call_unchanged(backend, case.layout, _op("conv_transpose{nd}d_backward", case.nd),
                          dict(grad_output=gy, input=x, weight=w), **case.kwargs(), output_mask=output_mask)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_TRANSPOSE)
def test_conv_transpose_forward(backend, case, dtype, rng):
    x, w, b, _ = case.arrays(rng, dtype)
    y = _run_convt(backend, case, x, w, b)
    assert_array(backend, y, dtype, case.output_shape(), "output")
    bound = _convt_reference(case, *absolute(x, w, b))
    assert_close(backend.get(y), _convt_reference(case, x, w, b), bound, dtype, case.n_terms(),
                 "conv_transpose vs reference")
    if backend.is_gpu:
        y_numpy = _op("conv_transpose{nd}d", case.nd)(x, w, b, **case.kwargs())
        assert_close(backend.get(y), y_numpy, bound, dtype, case.n_terms(), "vs NumPy path", slack=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_TRANSPOSE)
def test_conv_transpose_backward(backend, case, dtype, rng):
    x, w, _, gy = case.arrays(rng, dtype)
    grads = _run_convt_backward(backend, case, gy, x, w)
    for name, g, shape in zip(GRAD_NAMES, grads, (x.shape, w.shape, (w.shape[1] * case.groups,))):
        assert_array(backend, g, dtype, shape, name)
    expected = _convt_backward_reference(case, gy, x, w)
    bounds = _convt_backward_reference(case, *absolute(gy, x, w))
    for name, g, e, bound in zip(GRAD_NAMES, grads, expected, bounds):
        assert_close(backend.get(g), e, bound, dtype, case.n_terms(), f"{name} vs reference")
    if backend.is_gpu:
        numpy_grads = _op("conv_transpose{nd}d_backward", case.nd)(gy, x, w, **case.kwargs())
        for name, g, e, bound in zip(GRAD_NAMES, grads, numpy_grads, bounds):
            assert_close(backend.get(g), e, bound, dtype, case.n_terms(), f"{name} vs NumPy path", slack=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_TRANSPOSE)
def test_conv_transpose_matches_torch(backend, case, dtype, rng):
    torch_oracle_nd = pytest.importorskip("torch_oracle_nd", reason="needs torch")
    nd, kw = case.nd, case.kwargs()
    x, w, b, gy = case.arrays(rng, dtype)
    y = backend.get(_run_convt(backend, case, x, w, b))
    grads = [backend.get(g) for g in _run_convt_backward(backend, case, gy, x, w)]
    x64, w64, b64, gy64 = (None if a is None else a.astype(numpy.float64) for a in (x, w, b, gy))
    bound = torch_oracle_nd.conv_transpose(nd, *absolute(x, w, b), **kw)
    assert_close(y, torch_oracle_nd.conv_transpose(nd, x64, w64, b64, **kw), bound, dtype, case.n_terms(),
                 "conv_transpose vs torch")
    bounds = torch_oracle_nd.conv_transpose_backward(nd, *absolute(gy, x, w), **kw)
    expected = torch_oracle_nd.conv_transpose_backward(nd, gy64, x64, w64, **kw)
    for name, g, e, bd in zip(GRAD_NAMES, grads, expected, bounds):
        assert_close(g, e, bd, dtype, case.n_terms(), f"{name} vs torch")
    if backend.is_gpu and torch_oracle_nd.cuda_available():
        assert_close(y, torch_oracle_nd.conv_transpose(nd, x, w, b, **kw, device="cuda"), bound, dtype,
                     case.n_terms(), "conv_transpose vs torch CUDA", slack=2)
        for name, g, e, bd in zip(GRAD_NAMES, grads,
                                  torch_oracle_nd.conv_transpose_backward(nd, gy, x, w, **kw, device="cuda"), bounds):
            assert_close(g, e, bd, dtype, case.n_terms(), f"{name} vs torch CUDA", slack=2)


CONVT_MASK_CASES = [p for p in CONV_TRANSPOSE if p.id.split("-", 1)[1] in ("basic", "groups2", "unbatched",
                                                                          "empty_batch")]


@pytest.mark.parametrize("case", CONVT_MASK_CASES)
@pytest.mark.parametrize("mask", [(True, False, False), (False, True, False), (False, False, True)], ids=str)
def test_conv_transpose_backward_output_mask(backend, case, mask, rng):
    x, w, _, gy = case.arrays(rng, numpy.float64)
    full = _run_convt_backward(backend, case, gy, x, w)
    masked = _run_convt_backward(backend, case, gy, x, w, output_mask=mask)
    for name, on, g, g_full in zip(GRAD_NAMES, mask, masked, full):
        if not on:
            assert g is None, f"{name} should be None when output_mask turns it off"
        else:
            numpy.testing.assert_allclose(backend.get(g), backend.get(g_full), rtol=1e-13, atol=1e-13,
                                          err_msg=name)


CONVT_DETERMINISM_CASES = [p for p in CONV_TRANSPOSE if p.id.split("-", 1)[1] in (
    "basic", "k4_s2_p1", "unet_2x2x2_s2", "k3_s2_p1_outpad", "groups2", "depthwise")]


@pytest.mark.parametrize("dtype", (numpy.float32, numpy.float16))
@pytest.mark.parametrize("case", CONVT_DETERMINISM_CASES)
def test_conv_transpose_deterministic(backend, case, dtype, rng):
    x, w, b, gy = case.arrays(rng, dtype)
    runs = [[_run_convt(backend, case, x, w, b), *_run_convt_backward(backend, case, gy, x, w)] for _ in range(2)]
    for name, a, b_ in zip(("output",) + GRAD_NAMES, *runs):
        assert numpy.array_equal(backend.get(a), backend.get(b_), equal_nan=True), f"{name} differs between runs"


@pytest.mark.parametrize("dtype", (numpy.float32, numpy.float16))
@pytest.mark.parametrize("nd, groups", [(1, 1), (1, 4), (3, 1), (3, 4)], ids=("1d", "1d_depthwise", "3d",
                                                                              "3d_depthwise"))
def test_conv_backward_ignores_inputs_no_window_reads(backend, nd, groups, dtype, rng):
    """Kernel 3, stride 2, no padding over size 8: no window reads the last position along any axis. NaN
    and inf there (the last depth slice, the last column) stay out of the output and of grad_weight, as in
    PyTorch: the 3-d composition must not stack unread slices with a multiplication by zero."""
    size = (8,) * nd
    x = rng.standard_normal((2, 4) + size).astype(dtype)
    w = rng.standard_normal((4, 4 // groups) + (3,) * nd).astype(dtype)
    gy = rng.standard_normal((2, 4) + (3,) * nd).astype(dtype)
    x[..., 7] = numpy.nan
    if nd == 3:
        x[:, :, 7] = numpy.inf
    clean = numpy.where(numpy.isfinite(x), x, 0)
    kw = dict(stride=2, groups=groups)
    if nd == 1 and backend.algo in ("implicit_gemm", "depthwise"):
        call = _params.conv_call("conv1d", 1, x, w, None, 2, 0, 1, groups, "zeros")
        backend.skip_unsupported_conv(call.geometry, dtype, ["fprop", "wgrad"])
    y = backend.get(_op("conv{nd}d", nd)(backend.put(x), backend.put(w), **kw))
    gw = backend.get(_op("conv{nd}d_backward", nd)(backend.put(gy), backend.put(x), backend.put(w), **kw,
                                                  output_mask=(False, True, False))[1])
    assert numpy.isfinite(y).all(), "a value no window reads reached the output"
    assert numpy.isfinite(gw).all(), "a value no window reads reached grad_weight"
    args = (2, None, 1, groups)
    _, expected, _ = ref.conv_backward(gy, clean, w, *args)
    _, bound, _ = ref.conv_backward(*absolute(gy, clean, w), *args)
    assert_close(gw, expected, bound, dtype, 2 * 3**nd, "grad_weight vs reference")


@pytest.mark.parametrize("nd", (1, 3))
def test_conv_transpose_backward_ignores_grad_output_no_tap_reaches(backend, nd, rng):
    """With output_padding 1 (stride 2, kernel 2) the last output position along each axis gets only the
    bias: NaN in grad_output there reaches grad_bias (a sum over everything) but neither grad_input nor
    grad_weight, as in PyTorch."""
    x = rng.standard_normal((2, 3) + (3,) * nd)
    w = rng.standard_normal((3, 2) + (2,) * nd)
    gy = rng.standard_normal((2, 2) + (7,) * nd)
    gy[..., 6] = numpy.nan
    kw = dict(stride=2, output_padding=1)
    gx, gw, gb = (backend.get(g) for g in _op("conv_transpose{nd}d_backward", nd)(
        backend.put(gy), backend.put(x), backend.put(w), **kw))
    assert numpy.isfinite(gx).all() and numpy.isfinite(gw).all()
    assert numpy.isnan(gb).all()
    clean = numpy.where(numpy.isnan(gy), 0, gy)
    for g, e in zip((gx, gw), ref.conv_transpose_backward(clean, x, w, **kw)[:2]):
        numpy.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)
