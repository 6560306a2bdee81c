"""The opt-in channels-last float16 fprop and stride-1 dgrad (GPUCONV_UNVERIFIED=igemm_nhwc,
kernels/implicit_gemm_nhwc.cu) on the GPU: gpuconv.conv2d (and conv2d_backward's grad_input) on CuPy
float16 arrays against the float64 NumPy path, outputs and workspaces NaN-poisoned, every tile
instantiation reached, bitwise repeatable; the variable unset (or an unsupported problem) leaves the
existing kernels in charge. Skips without CuPy and a GPU of compute capability 8.0 or newer."""

from __future__ import annotations

import numpy
import pytest

import gpuconv
from helpers import assert_close, cupy_with_gpu, random_array, record_kernel_names, set_tunables

cupy = cupy_with_gpu()
pytestmark = pytest.mark.skipif(cupy is None, reason="needs CuPy and a GPU")

NHWC_PREFIX = "conv2d_fprop_implicit_gemm_nhwc<"

# (x shape, w shape, kwargs, pretended SM count): C and K multiples of 8; the SM count steers BM (1: 128,
# huge: 64), K steers BN (<= 64: 64, else 128), so the four tiles are all reached.
CASES = {
    "3x3_pad1_C16_K24_bm128": ((2, 16, 9, 11), (24, 16, 3, 3), dict(padding=1), 1),
    "3x3_pad1_C16_K24_bm64": ((2, 16, 9, 11), (24, 16, 3, 3), dict(padding=1), 1 << 20),
    "1x1_C64_K136_bm128": ((3, 64, 10, 9), (136, 64, 1, 1), dict(), 1),
    "3x3_C72_K136_bm64": ((1, 72, 7, 6), (136, 72, 3, 3), dict(padding=1), 1 << 20),
    "5x3_s21_d12_asym_C8_K8": ((2, 8, 13, 12), (8, 8, 5, 3), dict(stride=(2, 1), dilation=(1, 2), padding="valid"), 1),
    "4x4_same_asym_C8_K16": ((2, 8, 9, 10), (16, 8, 4, 4), dict(padding="same"), 1 << 20),
    "unbatched_3x3_s2_C32_K64": ((32, 17, 15), (64, 32, 3, 3), dict(stride=2, padding=(1, 2)), 1),
}


@pytest.fixture
def nhwc_env(monkeypatch):
    """GPUCONV_UNVERIFIED=igemm_nhwc, implicit GEMM forced, outputs poisoned; records the kernels the NHWC module
    launches."""
    from gpuconv._cuda import implicit_gemm

    if implicit_gemm._compute_capability() < 80:
        pytest.skip("the NHWC kernel needs sm_80 or newer")
    monkeypatch.setenv("GPUCONV_UNVERIFIED", "igemm_nhwc")
    monkeypatch.setenv("GPUCONV_CONV_ALGO", "implicit_gemm")
    monkeypatch.setenv("GPUCONV_POISON", "1")
    return monkeypatch, record_kernel_names(monkeypatch, [], ("experimental/implicit_gemm_nhwc.cu",)), implicit_gemm


def _problem(case, seed=5):
    xs, ws, kw, _ = CASES[case]
    rng = numpy.random.default_rng(seed)
    x = random_array(rng, xs, numpy.float16)
    w = random_array(rng, ws, numpy.float16)
    b = random_array(rng, (ws[0],), numpy.float16)
    x64, w64, b64 = (a.astype(numpy.float64) for a in (x, w, b))
    ref = gpuconv.conv2d(x64, w64, b64, **kw)
    bound = gpuconv.conv2d(numpy.abs(x64), numpy.abs(w64), numpy.abs(b64), **kw)
    return x, w, b, kw, ref, bound, ws[1] * ws[2] * ws[3]


@pytest.mark.parametrize("case", CASES)
def test_nhwc_fprop_matches_float64_and_repeats_bitwise(nhwc_env, case):
    monkeypatch, launched, implicit_gemm = nhwc_env
    set_tunables(sm_count=CASES[case][3])
    x, w, b, kw, ref, bound, n_terms = _problem(case)
    xg, wg, bg = cupy.asarray(x), cupy.asarray(w), cupy.asarray(b)
    first = cupy.asnumpy(gpuconv.conv2d(xg, wg, bg, **kw))
    assert any(n.startswith(NHWC_PREFIX) for n in launched), launched
    assert "nchw_to_nhwc<__half>" in launched
    second = cupy.asnumpy(gpuconv.conv2d(xg, wg, bg, **kw))
    assert first.dtype == numpy.float16 and first.shape == ref.shape
    assert_close(first, ref, bound, numpy.float16, n_terms, f"nhwc fprop {case}")
    assert numpy.array_equal(first, second), "NHWC fprop is not bitwise repeatable"
    # inputs unchanged
    assert numpy.array_equal(cupy.asnumpy(xg), x) and numpy.array_equal(cupy.asnumpy(wg), w)


def test_every_tile_is_reached(nhwc_env):
    """The CASES above launch every instantiation of the kernel table's implicit_gemm_nhwc.cu."""
    from gpuconv._cuda.experimental import igemm_nhwc as _igemm_nhwc

    monkeypatch, launched, implicit_gemm = nhwc_env
    for case in CASES:
        set_tunables(sm_count=CASES[case][3])
        x, w, b, kw, *_ = _problem(case)
        gpuconv.conv2d(cupy.asarray(x), cupy.asarray(w), cupy.asarray(b), **kw)
    assert set(_igemm_nhwc.kernel_names()) <= set(launched), sorted(set(_igemm_nhwc.kernel_names()) - set(launched))


def test_no_bias_and_non_contiguous_input(nhwc_env):
    monkeypatch, launched, _ = nhwc_env
    x, w, b, kw, ref, bound, n_terms = _problem("3x3_pad1_C16_K24_bm64")
    ref = ref - b.astype(numpy.float64)[:, None, None]
    xg = cupy.asarray(numpy.ascontiguousarray(x.swapaxes(-1, -2))).swapaxes(-1, -2)
    y = cupy.asnumpy(gpuconv.conv2d(xg, cupy.asarray(w), None, **kw))
    assert any(n.startswith(NHWC_PREFIX) for n in launched)
    assert_close(y, ref, bound, numpy.float16, n_terms, "nhwc fprop without bias, transposed x")


def test_unset_or_unsupported_keeps_the_existing_kernels(nhwc_env):
    monkeypatch, launched, _ = nhwc_env
    x, w, b, kw, ref, bound, n_terms = _problem("3x3_pad1_C16_K24_bm64")
    monkeypatch.delenv("GPUCONV_UNVERIFIED")
    y = cupy.asnumpy(gpuconv.conv2d(cupy.asarray(x), cupy.asarray(w), cupy.asarray(b), **kw))
    assert launched == []
    assert_close(y, ref, bound, numpy.float16, n_terms, "existing fprop")
    monkeypatch.setenv("GPUCONV_UNVERIFIED", "igemm_nhwc")
    rng = numpy.random.default_rng(1)
    x12 = random_array(rng, (1, 12, 6, 6), numpy.float16)  # C % 8 != 0: not supported, falls back
    w12 = random_array(rng, (16, 12, 3, 3), numpy.float16)
    y = cupy.asnumpy(gpuconv.conv2d(cupy.asarray(x12), cupy.asarray(w12), padding=1))
    assert launched == []
    ref = gpuconv.conv2d(x12.astype(numpy.float64), w12.astype(numpy.float64), padding=1)
    bound = gpuconv.conv2d(numpy.abs(x12.astype(numpy.float64)), numpy.abs(w12.astype(numpy.float64)), padding=1)
    assert_close(y, ref, bound, numpy.float16, 12 * 9, "fallback fprop")


@pytest.mark.parametrize("case", ["3x3_pad1_C16_K24_bm128", "1x1_C64_K136_bm128", "4x4_same_asym_C8_K16"])
def test_nhwc_dgrad_at_stride_1_matches_float64(nhwc_env, case):
    """conv2d_backward's grad_input through the same kernel (gy with the flipped filter) at stride 1."""
    monkeypatch, launched, implicit_gemm = nhwc_env
    set_tunables(sm_count=CASES[case][3])
    x, w, _, kw, *_ = _problem(case)
    rng = numpy.random.default_rng(9)
    gy = random_array(rng, gpuconv.conv2d(x.astype(numpy.float64), w.astype(numpy.float64), **kw).shape,
                      numpy.float16)
    ref, _, _ = gpuconv.conv2d_backward(gy.astype(numpy.float64), x.astype(numpy.float64), w.astype(numpy.float64),
                                        output_mask=(True, False, False), **kw)
    bound, _, _ = gpuconv.conv2d_backward(numpy.abs(gy.astype(numpy.float64)), numpy.abs(x.astype(numpy.float64)),
                                          numpy.abs(w.astype(numpy.float64)), output_mask=(True, False, False), **kw)
    args = (cupy.asarray(gy), cupy.asarray(x), cupy.asarray(w))
    first, _, _ = gpuconv.conv2d_backward(*args, output_mask=(True, False, False), **kw)
    assert any(n.startswith(NHWC_PREFIX) for n in launched), launched
    second, _, _ = gpuconv.conv2d_backward(*args, output_mask=(True, False, False), **kw)
    first, second = cupy.asnumpy(first), cupy.asnumpy(second)
    assert_close(first, ref, bound, numpy.float16, w.shape[0] * w.shape[2] * w.shape[3], f"nhwc dgrad {case}")
    assert numpy.array_equal(first, second), "NHWC dgrad is not bitwise repeatable"
