"""gemm_1x1 on the GPU (GPUCONV_UNVERIFIED=gemm_1x1, gpuconv/_cuda/experimental/cublas.py and gemm_1x1.py): the
strided-batched cuBLAS wrapper against cupy.matmul / NumPy (transposes, sliced and shared operands, float16
to float32 output, beta), on a non-default stream; 1x1 conv2d / conv2d_backward / conv_transpose2d on CuPy
arrays with the im2col algorithm forced, against the float64 NumPy path, outputs NaN-poisoned, bitwise
repeatable, and proof that the GEMM path ran (no im2col kernel launched). Skips without CuPy and a GPU.
The same code runs on the CPU against an emulator of cuBLAS in tests/test_gemm_1x1_on_host.py."""

from __future__ import annotations

import numpy
import pytest

import gpuconv
from helpers import assert_close, cupy_with_gpu, random_array, record_kernel_names, set_tunables

cupy = cupy_with_gpu()
pytestmark = pytest.mark.skipif(cupy is None, reason="needs CuPy and a GPU")

DTYPES = (numpy.float64, numpy.float32, numpy.float16)


@pytest.fixture
def gemm_env(monkeypatch):
    monkeypatch.setenv("GPUCONV_UNVERIFIED", "gemm_1x1")
    monkeypatch.setenv("GPUCONV_CONV_ALGO", "im2col")
    monkeypatch.setenv("GPUCONV_POISON", "1")
    return record_kernel_names(monkeypatch, [], ("im2col.cu",))


def test_enum_values_match_cupy():
    from cupy_backends.cuda.api import runtime
    from cupy_backends.cuda.libs import cublas

    from gpuconv._cuda.experimental import cublas as _cublas

    assert (_cublas.OP_N, _cublas.OP_T) == (cublas.CUBLAS_OP_N, cublas.CUBLAS_OP_T)
    assert (_cublas.COMPUTE_32F, _cublas.COMPUTE_64F) == (cublas.CUBLAS_COMPUTE_32F, cublas.CUBLAS_COMPUTE_64F)
    assert _cublas.GEMM_DEFAULT == cublas.CUBLAS_GEMM_DEFAULT
    assert (_cublas.CUDA_R_16F, _cublas.CUDA_R_32F, _cublas.CUDA_R_64F) == (
        runtime.CUDA_R_16F, runtime.CUDA_R_32F, runtime.CUDA_R_64F)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: numpy.dtype(d).name)
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_wrapper_against_numpy(dtype, trans_a, trans_b):
    from gpuconv._cuda.experimental import cublas as _cublas

    rng = numpy.random.default_rng(1)
    batch, m, n, k = 4, 37, 29, 45
    a_np = random_array(rng, (1,) + ((k, m) if trans_a else (m, k)), dtype)  # shared by the batch
    b_wide = random_array(rng, (batch,) + ((n, k + 3) if trans_b else (k, n + 3)), dtype)
    b_np = b_wide[..., 1:-2]  # ld > cols
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        out_full = cupy.full((batch, m, n + 5), numpy.nan, dtype)
        out = out_full[..., 2:2 + n]
        _cublas.gemm_strided_batched(cupy.asarray(a_np), cupy.asarray(b_wide)[..., 1:-2], out, trans_a=trans_a,
                                     trans_b=trans_b)
        got, full = cupy.asnumpy(out, stream=stream), cupy.asnumpy(out_full, stream=stream)
    stream.synchronize()
    f64 = lambda x, t: (x.swapaxes(1, 2) if t else x).astype(numpy.float64)
    expected = numpy.matmul(f64(a_np, trans_a), f64(b_np, trans_b))
    bound = numpy.matmul(numpy.abs(f64(a_np, trans_a)), numpy.abs(f64(b_np, trans_b)))
    assert_close(got, expected, bound, dtype, k, "gemm_strided_batched")
    assert numpy.isnan(full[..., :2]).all() and numpy.isnan(full[..., 2 + n:]).all()


def test_wrapper_float16_into_float32_with_beta():
    from gpuconv._cuda.experimental import cublas as _cublas

    rng = numpy.random.default_rng(2)
    a = random_array(rng, (3, 40, 24), numpy.float16)
    b = random_array(rng, (3, 24, 32), numpy.float16)
    c = random_array(rng, (3, 40, 32), numpy.float32)
    out = cupy.asarray(c)
    _cublas.gemm_strided_batched(cupy.asarray(a), cupy.asarray(b), out, alpha=0.5, beta=2.0)
    expected = 0.5 * numpy.matmul(a.astype(numpy.float64), b.astype(numpy.float64)) + 2.0 * c
    numpy.testing.assert_allclose(cupy.asnumpy(out), expected, rtol=1e-5, atol=1e-5)


# (x shape, K, kwargs)
CASES = {
    "g1": ((3, 16, 7, 9), 24, dict()),
    "g2_N1": ((1, 8, 5, 6), 12, dict(groups=2)),
    "g3_N5": ((5, 12, 3, 5), 9, dict(groups=3)),
    "unbatched": ((6, 4, 5), 7, dict()),
    "bottleneck_small": ((2, 64, 14, 14), 256, dict()),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: numpy.dtype(d).name)
@pytest.mark.parametrize("case", sorted(CASES))
def test_conv_1x1_against_numpy(gemm_env, case, dtype):
    x_shape, K, kwargs = CASES[case]
    rng = numpy.random.default_rng(3)
    groups = kwargs.get("groups", 1)
    C = x_shape[-3]
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, (K, C // groups, 1, 1), dtype)
    b = random_array(rng, (K,), dtype)
    y_ref = gpuconv.conv2d(x.astype(numpy.float64), w.astype(numpy.float64), b.astype(numpy.float64), **kwargs)
    gy = random_array(rng, y_ref.shape, dtype)
    refs = gpuconv.conv2d_backward(gy.astype(numpy.float64), x.astype(numpy.float64), w.astype(numpy.float64),
                                   **kwargs)
    runs = []
    for _ in range(2):
        xd, wd, bd, gyd = (cupy.asarray(a) for a in (x, w, b, gy))
        y = gpuconv.conv2d(xd, wd, bd, **kwargs)
        gx, gw, gb = gpuconv.conv2d_backward(gyd, xd, wd, **kwargs)
        runs.append([cupy.asnumpy(a) for a in (y, gx, gw)])
    assert gemm_env == [], f"the im2col kernels ran: {gemm_env}"
    for first, second in zip(*runs):
        assert numpy.array_equal(first, second, equal_nan=True), "not bitwise repeatable"
    y, gx, gw = runs[0]
    pixels = int(numpy.prod(y_ref.shape[-2:])) * (x_shape[0] if len(x_shape) == 4 else 1)
    mag = lambda a: numpy.abs(a).max()
    assert_close(y, y_ref, mag(y_ref) + 1, dtype, C // groups, "fprop", slack=2)
    assert_close(gx, refs[0], mag(refs[0]) + 1, dtype, K // groups, "dgrad", slack=2)
    assert_close(gw, refs[1], mag(refs[1]) + 1, dtype, pixels, "wgrad", slack=2)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: numpy.dtype(d).name)
def test_transposed_1x1_and_chunked_wgrad(gemm_env, monkeypatch, dtype):
    set_tunables(workspace_bytes=2 * 8 * 3 * 8)  # wgrad in several chunks (2 or 4 images)
    rng = numpy.random.default_rng(4)
    x = random_array(rng, (5, 6, 5, 3), dtype)
    w = random_array(rng, (6, 4, 1, 1), dtype)  # (Cin, Cout/groups, 1, 1), groups 2
    b = random_array(rng, (8,), dtype)
    f64 = lambda a: a.astype(numpy.float64)
    y_ref = gpuconv.conv_transpose2d(f64(x), f64(w), f64(b), groups=2)
    gy = random_array(rng, y_ref.shape, dtype)
    gx_ref, gw_ref, _ = gpuconv.conv_transpose2d_backward(f64(gy), f64(x), f64(w), groups=2)
    y = gpuconv.conv_transpose2d(cupy.asarray(x), cupy.asarray(w), cupy.asarray(b), groups=2)
    gx, gw, _ = gpuconv.conv_transpose2d_backward(cupy.asarray(gy), cupy.asarray(x), cupy.asarray(w), groups=2)
    assert gemm_env == []
    for got, ref, terms, what in ((y, y_ref, 3, "fprop"), (gx, gx_ref, 4, "dgrad"), (gw, gw_ref, 75, "wgrad")):
        assert_close(cupy.asnumpy(got), ref, numpy.abs(ref).max() + 1, dtype, terms, what, slack=2)


def test_float16_many_groups_through_im2col(gemm_env):
    """A 3x3 conv with 18 groups: im2col kernels plus one float16 strided-batched GEMM per pass."""
    rng = numpy.random.default_rng(5)
    x = random_array(rng, (2, 36, 6, 7), numpy.float16)
    w = random_array(rng, (36, 2, 3, 3), numpy.float16)
    y_ref = gpuconv.conv2d(x.astype(numpy.float64), w.astype(numpy.float64), padding=1, groups=18)
    y = cupy.asnumpy(gpuconv.conv2d(cupy.asarray(x), cupy.asarray(w), padding=1, groups=18))
    assert "im2col" in gemm_env
    assert_close(y, y_ref, numpy.abs(y_ref).max() + 1, numpy.float16, 18, "fprop", slack=2)
