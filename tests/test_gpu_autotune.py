"""GPUCONV_CONV_ALGO=autotune on the GPU: the measured choice gives the NumPy path's answer, is cached per
problem, and repeats bitwise. Skips without CuPy and a GPU."""

from __future__ import annotations

import numpy
import pytest

import gpuconv
from helpers import cupy_with_gpu, random_array

cupy = cupy_with_gpu()
pytestmark = pytest.mark.skipif(cupy is None, reason="needs CuPy and a GPU")

CASES = {  # (x shape, w shape, kwargs)
    "3x3": ((4, 16, 20, 20), (32, 16, 3, 3), dict(padding=1)),
    "strided_grouped": ((2, 12, 17, 15), (8, 6, 3, 5), dict(stride=2, padding=(1, 2), groups=2)),
    "depthwise": ((2, 8, 16, 16), (8, 1, 3, 3), dict(padding=1, groups=8)),
}


@pytest.mark.parametrize("dtype", (numpy.float32, numpy.float16), ids=("float32", "float16"))
@pytest.mark.parametrize("case", CASES)
def test_autotune_matches_numpy_and_caches(monkeypatch, case, dtype):
    from gpuconv._cuda import _autotune

    monkeypatch.setenv("GPUCONV_CONV_ALGO", "autotune")
    monkeypatch.setenv("GPUCONV_POISON", "1")
    _autotune.clear()
    xs, ws, kw = CASES[case]
    rng = numpy.random.default_rng(11)
    x, w = random_array(rng, xs, dtype), random_array(rng, ws, dtype)
    y_ref = gpuconv.conv2d(x.astype(numpy.float64), w.astype(numpy.float64), **kw)
    gy = random_array(rng, y_ref.shape, dtype)
    g_ref = gpuconv.conv2d_backward(gy.astype(numpy.float64), x.astype(numpy.float64), w.astype(numpy.float64),
                                    **kw)
    xg, wg, gyg = cupy.asarray(x), cupy.asarray(w), cupy.asarray(gy)

    first = [gpuconv.conv2d(xg, wg, **kw), *gpuconv.conv2d_backward(gyg, xg, wg, **kw)]
    assert len(_autotune.cached()) == 3  # fprop, dgrad, wgrad: one measured choice each
    assert set(_autotune.cached().values()) <= {"direct", "im2col", "implicit_gemm", "depthwise"}
    second = [gpuconv.conv2d(xg, wg, **kw), *gpuconv.conv2d_backward(gyg, xg, wg, **kw)]
    assert len(_autotune.cached()) == 3

    tol = 2e-2 if dtype == numpy.float16 else 1e-5
    for got, again, ref in zip(first, second, [y_ref, *g_ref]):
        got, again = cupy.asnumpy(got), cupy.asnumpy(again)
        assert numpy.array_equal(got, again), "the cached choice is not bitwise repeatable"
        scale = numpy.abs(ref).max()
        assert numpy.abs(got.astype(numpy.float64) - ref).max() <= tol * scale
