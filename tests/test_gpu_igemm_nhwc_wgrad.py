"""The opt-in channels-last float16 wgrad (GPUCONV_UNVERIFIED=nhwc_wgrad, kernels/implicit_gemm_nhwc_wgrad.cu)
and strided dgrad (GPUCONV_UNVERIFIED=nhwc_dgrad, kernels/implicit_gemm_nhwc_dgrad.cu) on the GPU:
conv2d_backward's grad_weight / grad_input and conv_transpose2d (whose forward is a dgrad) on CuPy float16
arrays against the float64 NumPy path and against the existing implicit-GEMM kernels, outputs and
workspaces NaN-poisoned, every tile instantiation (and for wgrad several split counts) reached, bitwise
repeatable; the switch off (or an unsupported problem) leaves the existing kernels in charge. Skips without
CuPy and a GPU of compute capability 8.0 or newer."""

from __future__ import annotations

import numpy
import pytest

import gpuconv
from helpers import assert_close, cupy_with_gpu, random_array, record_kernel_names, set_tunables

cupy = cupy_with_gpu()
pytestmark = pytest.mark.skipif(cupy is None, reason="needs CuPy and a GPU")

WGRAD_PREFIX = "conv2d_wgrad_implicit_gemm_nhwc<"
REDUCE = "conv2d_wgrad_nhwc_reduce<__half>"

# (x shape, w shape, kwargs, pretended SM count): C and K multiples of 8. K <= 64 gives BM = 64, else 128;
# R*S*C <= 64 gives BN = 64, else 128; the SM count steers the number of splits (1: few, 132: many).
WGRAD_CASES = {
    "3x3_pad1_C16_K24": ((2, 16, 9, 11), (24, 16, 3, 3), dict(padding=1), 132),            # 64 x 128
    "1x1_C64_K136": ((3, 64, 10, 9), (136, 64, 1, 1), dict(), 132),                         # 128 x 64
    "1x1_C32_K16": ((2, 32, 7, 5), (16, 32, 1, 1), dict(), 1),                              # 64 x 64
    "3x3_C72_K136": ((1, 72, 7, 6), (136, 72, 3, 3), dict(padding=1), 1),                   # 128 x 128
    "5x3_s21_d12_valid_C8_K8": ((2, 8, 13, 12), (8, 8, 5, 3), dict(stride=(2, 1), dilation=(1, 2),
                                                                   padding="valid"), 132),
    "4x4_same_asym_C8_K16": ((2, 8, 9, 10), (16, 8, 4, 4), dict(padding="same"), 132),
    "3x3_pad1_C32_K64_many_splits": ((4, 32, 32, 32), (64, 32, 3, 3), dict(padding=1), 132),
    "3x3_d2_pad2_C16_K16_Q45": ((1, 16, 5, 45), (16, 16, 3, 3), dict(padding=2, dilation=2), 132),
    "unbatched_3x3_s2_C32_K64": ((32, 17, 15), (64, 32, 3, 3), dict(stride=2, padding=(1, 2)), 132),
}


def _switched_on(monkeypatch, feature, module_name):
    """GPUCONV_UNVERIFIED=feature, implicit GEMM forced, outputs poisoned; records the kernels that
    igemm_nhwc (layout copies) and gpuconv._cuda.experimental.<module_name> launch."""
    import importlib

    from gpuconv._cuda import implicit_gemm
    from gpuconv._cuda.experimental import igemm_nhwc

    if implicit_gemm._compute_capability() < 80:
        pytest.skip("the NHWC kernels need sm_80 or newer")
    monkeypatch.setenv("GPUCONV_UNVERIFIED", feature)
    monkeypatch.setenv("GPUCONV_CONV_ALGO", "implicit_gemm")
    monkeypatch.setenv("GPUCONV_POISON", "1")
    module = importlib.import_module(f"gpuconv._cuda.experimental.{module_name}")
    launched = record_kernel_names(monkeypatch, [], (igemm_nhwc.SOURCE, module.SOURCE))
    return monkeypatch, launched, implicit_gemm


@pytest.fixture
def nhwc_env(monkeypatch):
    return _switched_on(monkeypatch, "nhwc_wgrad", "igemm_nhwc_wgrad")


def _operands(shapes, kw, seed, grad):
    """float16 x, w, gy of a conv2d with x and w shapes `shapes`, and the float64 reference of one gradient
    (grad 0: grad_input, 1: grad_weight) with its bound (the same sum over |terms|)."""
    xs, ws = shapes
    rng = numpy.random.default_rng(seed)
    x = random_array(rng, xs, numpy.float16)
    w = random_array(rng, ws, numpy.float16)
    gy = random_array(rng, gpuconv.conv2d(x.astype(numpy.float64), w.astype(numpy.float64), **kw).shape,
                      numpy.float16)
    f64 = [a.astype(numpy.float64) for a in (gy, x, w)]
    mask = tuple(i == grad for i in range(3))
    ref = gpuconv.conv2d_backward(*f64, output_mask=mask, **kw)[grad]
    bound = gpuconv.conv2d_backward(*[numpy.abs(a) for a in f64], output_mask=mask, **kw)[grad]
    return x, w, gy, ref, bound


def _problem(case, seed=5):
    xs, ws, kw, _ = WGRAD_CASES[case]
    x, w, gy, ref, bound = _operands((xs, ws), kw, seed, grad=1)
    n_terms = int(numpy.prod(gy.shape)) // ws[0]  # N*P*Q
    return x, w, gy, kw, ref, bound, n_terms


def _wgrad(gy, x, w, kw):
    _, gw, _ = gpuconv.conv2d_backward(cupy.asarray(gy), cupy.asarray(x), cupy.asarray(w),
                                       output_mask=(False, True, False), **kw)
    return cupy.asnumpy(gw)


@pytest.mark.parametrize("case", WGRAD_CASES)
def test_nhwc_wgrad_matches_float64_and_repeats_bitwise(nhwc_env, case):
    monkeypatch, launched, implicit_gemm = nhwc_env
    set_tunables(sm_count=WGRAD_CASES[case][3])
    x, w, gy, kw, ref, bound, n_terms = _problem(case)
    first = _wgrad(gy, x, w, kw)
    assert any(n.startswith(WGRAD_PREFIX) for n in launched), launched
    assert REDUCE in launched and "nchw_to_nhwc<__half>" in launched
    second = _wgrad(gy, x, w, kw)
    assert first.dtype == numpy.float16 and first.shape == w.shape
    assert_close(first, ref, bound, numpy.float16, n_terms, f"nhwc wgrad {case}")
    assert numpy.array_equal(first, second), "NHWC wgrad is not bitwise repeatable"
    # the existing kernel (switch off) agrees within the same tolerance
    monkeypatch.delenv("GPUCONV_UNVERIFIED")
    launched.clear()
    old = _wgrad(gy, x, w, kw)
    assert launched == []
    assert_close(first, old.astype(numpy.float64), bound, numpy.float16, n_terms, f"nhwc vs old wgrad {case}",
                 slack=2.0)


def test_every_tile_and_several_splits_are_reached(nhwc_env):
    """The cases above launch every instantiation of implicit_gemm_nhwc_wgrad.cu, with 1 and > 1 splits."""
    from gpuconv import _params
    from gpuconv._cuda.experimental import igemm_nhwc_wgrad as _igemm_nhwc_wgrad

    monkeypatch, launched, implicit_gemm = nhwc_env
    splits = set()
    for case, (xs, ws, kw, sms) in WGRAD_CASES.items():
        set_tunables(sm_count=sms)
        x, w, gy, kw, *_ = _problem(case)
        _wgrad(gy, x, w, kw)
        x4 = numpy.empty(((1,) if len(xs) == 3 else ()) + xs, numpy.float16)
        g = _params.conv2d_call("t", x4, numpy.empty(ws, numpy.float16), None, kw.get("stride", 1),
                                kw.get("padding", 0), kw.get("dilation", 1), 1, "zeros").geometry
        splits.add(_igemm_nhwc_wgrad.plan(g)[2])
    assert set(_igemm_nhwc_wgrad.kernel_names()) <= set(launched), sorted(
        set(_igemm_nhwc_wgrad.kernel_names()) - set(launched))
    assert 1 in splits and max(splits) >= 8, splits


def test_unset_or_unsupported_keeps_the_existing_kernels(nhwc_env):
    monkeypatch, launched, _ = nhwc_env
    x, w, gy, kw, ref, bound, n_terms = _problem("3x3_pad1_C16_K24")
    monkeypatch.setenv("GPUCONV_UNVERIFIED", "igemm_nhwc")  # the fprop feature alone: wgrad stays old
    assert_close(_wgrad(gy, x, w, kw), ref, bound, numpy.float16, n_terms, "existing wgrad")
    assert not any(n.startswith(WGRAD_PREFIX) for n in launched)
    monkeypatch.setenv("GPUCONV_UNVERIFIED", "nhwc_wgrad")
    rng = numpy.random.default_rng(1)
    x12 = random_array(rng, (1, 12, 6, 6), numpy.float16)  # C % 8 != 0: not supported, falls back
    w12 = random_array(rng, (16, 12, 3, 3), numpy.float16)
    gy12 = random_array(rng, (1, 16, 6, 6), numpy.float16)
    launched.clear()
    got = _wgrad(gy12, x12, w12, dict(padding=1))
    assert launched == []
    f64 = [a.astype(numpy.float64) for a in (gy12, x12, w12)]
    _, ref, _ = gpuconv.conv2d_backward(*f64, padding=1, output_mask=(False, True, False))
    _, bound, _ = gpuconv.conv2d_backward(*[numpy.abs(a) for a in f64], padding=1, output_mask=(False, True, False))
    assert_close(got, ref, bound, numpy.float16, 36, "fallback wgrad")


# ------------------------------------------------------------------------------------ strided dgrad

DGRAD_PREFIX = "conv2d_dgrad_implicit_gemm_nhwc<"

# conv2d grad_input: (x shape, w shape, kwargs, pretended SM count). C <= 64 gives BN = 64, else 128; the SM
# count steers BM (1: 128, huge: 64).
DGRAD_CASES = {
    "3x3_s2_pad1_C16_K24": ((2, 16, 9, 11), (24, 16, 3, 3), dict(stride=2, padding=1), 1),            # 128 x 64
    "1x1_s2_C64_K32": ((2, 64, 10, 9), (32, 64, 1, 1), dict(stride=2), 1 << 20),                       # 64 x 64
    "3x3_s2_C72_K16": ((1, 72, 12, 11), (16, 72, 3, 3), dict(stride=2, padding=(1, 0)), 1 << 20),     # 64 x 128
    "5x3_s23_d21_C8_K40": ((2, 8, 11, 10), (40, 8, 5, 3), dict(stride=(2, 3), padding=(3, 0), dilation=(2, 1)), 1),
    "3x3_s3_d2_phase_taps_C8_K8": ((1, 8, 13, 12), (8, 8, 3, 3), dict(stride=3, padding=2, dilation=2), 1),
    "unbatched_3x3_s2_C32_K64": ((32, 17, 15), (64, 32, 3, 3), dict(stride=2, padding=(1, 2)), 1),
}
# conv_transpose2d forward: (x shape (N, Cin, H, W), w shape (Cin, Cout, R, S), kwargs, SM count); the dgrad
# has C = Cout, K = Cin.
TRANSPOSED_CASES = {
    "dcgan_4x4_s2_p1_Cin16_Cout72": ((2, 16, 5, 4), (16, 72, 4, 4), dict(stride=2, padding=1), 1),    # 128 x 128
    "4x4_s2_p1_outpad1_Cin24_Cout8": ((2, 24, 5, 6), (24, 8, 4, 4), dict(stride=2, padding=1, output_padding=1),
                                      1 << 20),
    "unet_2x2_s2_Cin16_Cout136": ((1, 16, 6, 5), (16, 136, 2, 2), dict(stride=2), 1 << 20),
}


@pytest.fixture
def dgrad_env(monkeypatch):
    return _switched_on(monkeypatch, "nhwc_dgrad", "igemm_nhwc_dgrad")


def _dgrad_problem(case, seed=7):
    xs, ws, kw, _ = DGRAD_CASES[case]
    x, w, gy, ref, bound = _operands((xs, ws), kw, seed, grad=0)
    return x, w, gy, kw, ref, bound, ws[0] * ws[2] * ws[3]


def _dgrad(gy, x, w, kw):
    gx, _, _ = gpuconv.conv2d_backward(cupy.asarray(gy), cupy.asarray(x), cupy.asarray(w),
                                       output_mask=(True, False, False), **kw)
    return cupy.asnumpy(gx)


@pytest.mark.parametrize("case", DGRAD_CASES)
def test_nhwc_dgrad_matches_float64_and_repeats_bitwise(dgrad_env, case):
    monkeypatch, launched, implicit_gemm = dgrad_env
    set_tunables(sm_count=DGRAD_CASES[case][3])
    x, w, gy, kw, ref, bound, n_terms = _dgrad_problem(case)
    first = _dgrad(gy, x, w, kw)
    assert any(n.startswith(DGRAD_PREFIX) for n in launched), launched
    second = _dgrad(gy, x, w, kw)
    assert first.dtype == numpy.float16 and first.shape == x.shape
    assert_close(first, ref, bound, numpy.float16, n_terms, f"nhwc dgrad {case}")
    assert numpy.array_equal(first, second), "NHWC dgrad is not bitwise repeatable"
    monkeypatch.delenv("GPUCONV_UNVERIFIED")  # the existing kernel agrees within the same tolerance
    launched.clear()
    old = _dgrad(gy, x, w, kw)
    assert launched == []
    assert_close(first, old.astype(numpy.float64), bound, numpy.float16, n_terms, f"nhwc vs old dgrad {case}",
                 slack=2.0)


def _transposed_problem(case, seed=8):
    xs, ws, kw, _ = TRANSPOSED_CASES[case]
    rng = numpy.random.default_rng(seed)
    x = random_array(rng, xs, numpy.float16)
    w = random_array(rng, ws, numpy.float16)
    b = random_array(rng, (ws[1],), numpy.float16)
    x64, w64, b64 = (a.astype(numpy.float64) for a in (x, w, b))
    ref = gpuconv.conv_transpose2d(x64, w64, b64, **kw)
    bound = gpuconv.conv_transpose2d(numpy.abs(x64), numpy.abs(w64), numpy.abs(b64), **kw)
    return x, w, b, kw, ref, bound, ws[0] * ws[2] * ws[3]


@pytest.mark.parametrize("case", TRANSPOSED_CASES)
def test_nhwc_dgrad_runs_conv_transpose2d(dgrad_env, case):
    monkeypatch, launched, implicit_gemm = dgrad_env
    set_tunables(sm_count=TRANSPOSED_CASES[case][3])
    x, w, b, kw, ref, bound, n_terms = _transposed_problem(case)
    xg, wg, bg = cupy.asarray(x), cupy.asarray(w), cupy.asarray(b)
    first = cupy.asnumpy(gpuconv.conv_transpose2d(xg, wg, bg, **kw))
    assert any(n.startswith(DGRAD_PREFIX) for n in launched), launched
    second = cupy.asnumpy(gpuconv.conv_transpose2d(xg, wg, bg, **kw))
    assert_close(first, ref, bound, numpy.float16, n_terms, f"nhwc conv_transpose2d {case}")
    assert numpy.array_equal(first, second), "NHWC conv_transpose2d is not bitwise repeatable"
    assert numpy.array_equal(cupy.asnumpy(xg), x) and numpy.array_equal(cupy.asnumpy(wg), w)


def test_every_dgrad_tile_is_reached(dgrad_env):
    from gpuconv._cuda.experimental import igemm_nhwc_dgrad as _igemm_nhwc_dgrad

    monkeypatch, launched, implicit_gemm = dgrad_env
    for case, (_, _, kw, sms) in DGRAD_CASES.items():
        set_tunables(sm_count=sms)
        x, w, gy, kw, *_ = _dgrad_problem(case)
        _dgrad(gy, x, w, kw)
    for case, (_, _, kw, sms) in TRANSPOSED_CASES.items():
        set_tunables(sm_count=sms)
        x, w, b, kw, *_ = _transposed_problem(case)
        gpuconv.conv_transpose2d(cupy.asarray(x), cupy.asarray(w), cupy.asarray(b), **kw)
    assert set(_igemm_nhwc_dgrad.kernel_names()) <= set(launched), sorted(
        set(_igemm_nhwc_dgrad.kernel_names()) - set(launched))


def test_dgrad_unit_stride_or_unsupported_keeps_the_other_kernels(dgrad_env):
    monkeypatch, launched, _ = dgrad_env
    rng = numpy.random.default_rng(2)
    x = random_array(rng, (1, 16, 6, 6), numpy.float16)
    w = random_array(rng, (16, 16, 3, 3), numpy.float16)
    gy = random_array(rng, (1, 16, 6, 6), numpy.float16)
    _dgrad(gy, x, w, dict(padding=1))  # stride 1: not this feature's
    x12 = random_array(rng, (1, 12, 7, 7), numpy.float16)  # C % 8 != 0
    w12 = random_array(rng, (16, 12, 3, 3), numpy.float16)
    gy12 = random_array(rng, (1, 16, 3, 3), numpy.float16)
    got = _dgrad(gy12, x12, w12, dict(stride=2))
    assert not any(n.startswith(DGRAD_PREFIX) for n in launched), launched
    f64 = [a.astype(numpy.float64) for a in (gy12, x12, w12)]
    ref, _, _ = gpuconv.conv2d_backward(*f64, stride=2, output_mask=(True, False, False))
    bound, _, _ = gpuconv.conv2d_backward(*[numpy.abs(a) for a in f64], stride=2, output_mask=(True, False, False))
    assert_close(got, ref, bound, numpy.float16, 16 * 9, "fallback dgrad")
