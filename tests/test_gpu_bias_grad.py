"""bias_grad on the GPU (GPUCONV_UNVERIFIED=bias_grad, kernels/experimental/bias_grad.cu, gpuconv/_cuda/experimental/bias_grad.py):
conv2d_backward's and conv_transpose2d_backward's grad_bias on CuPy arrays against a float64 NumPy sum, over
shapes that take one launch and several splits, 16-byte and element units; outputs NaN-poisoned, bitwise
repeatable, the same bits from a strided grad_output, on a non-default stream, and proof that the kernels ran.
Skips without CuPy and a GPU. The same kernels run on the CPU in tests/test_bias_grad_on_host.py."""

from __future__ import annotations

import numpy
import pytest

import gpuconv
from helpers import assert_close, cupy_with_gpu, random_array, record_kernel_names

cupy = cupy_with_gpu()
pytestmark = pytest.mark.skipif(cupy is None, reason="needs CuPy and a GPU")

DTYPES = (numpy.float64, numpy.float32, numpy.float16)

# (N, K, P, Q): P*Q a multiple of 8 (16-byte units in every dtype) or odd (element units); channels up to
# 128 KiB take one launch, the larger ones (32x64x56x56, 4-16 splits by dtype) the split sums and reduction.
SHAPES = [(1, 16, 8, 8), (3, 5, 7, 7), (2, 3, 1, 1), (32, 64, 56, 56), (16, 3, 151, 151)]


@pytest.fixture
def bias_grad_env(monkeypatch):
    monkeypatch.setenv("GPUCONV_UNVERIFIED", "bias_grad")
    monkeypatch.setenv("GPUCONV_POISON", "1")
    return record_kernel_names(monkeypatch, [], ("experimental/bias_grad.cu",))


def _grad_bias(gy, N, K):
    x = cupy.zeros((N, 1) + gy.shape[2:], gy.dtype)  # a 1x1 conv: gy's shape is the output's
    w = cupy.zeros((K, 1, 1, 1), gy.dtype)
    return gpuconv.conv2d_backward(gy, x, w, output_mask=(False, False, True))[2]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: numpy.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_grad_bias_against_float64(bias_grad_env, dtype, shape):
    N, K, P, Q = shape
    gy_np = random_array(numpy.random.default_rng(7), shape, dtype)
    gy = cupy.asarray(gy_np)
    gb = _grad_bias(gy, N, K)
    assert gb.dtype == dtype and gb.shape == (K,)
    gy64 = gy_np.astype(numpy.float64)
    assert_close(cupy.asnumpy(gb), gy64.sum(axis=(0, 2, 3)), numpy.abs(gy64).sum(axis=(0, 2, 3)), dtype, N * P * Q,
                 "grad_bias")
    assert any(name.startswith("conv2d_bias_grad<") for name in bias_grad_env), bias_grad_env
    again = _grad_bias(gy, N, K)
    assert cupy.asnumpy(again).tobytes() == cupy.asnumpy(gb).tobytes()  # the same bits every call
    strided = cupy.asarray(numpy.ascontiguousarray(gy_np.transpose(1, 0, 2, 3))).transpose(1, 0, 2, 3)
    assert not strided.flags.c_contiguous
    assert cupy.asnumpy(_grad_bias(strided, N, K)).tobytes() == cupy.asnumpy(gb).tobytes()


def test_split_sums_and_reduction_ran(bias_grad_env):
    gy = cupy.asarray(random_array(numpy.random.default_rng(3), (32, 64, 56, 56), numpy.float32))
    _grad_bias(gy, 32, 64)
    assert "conv2d_bias_grad<float, 4>" in bias_grad_env and "conv2d_bias_grad_reduce<float>" in bias_grad_env


def test_conv_transpose2d_grad_bias_on_a_stream(bias_grad_env):
    rng = numpy.random.default_rng(5)
    x_np = random_array(rng, (2, 8, 9, 9), numpy.float32)
    w_np = random_array(rng, (8, 6, 4, 4), numpy.float32)
    kw = dict(stride=2, padding=1, output_padding=1)  # 19 x 19 outputs: element units
    y = gpuconv.conv_transpose2d(cupy.asarray(x_np), cupy.asarray(w_np), **kw)
    assert y.shape == (2, 6, 19, 19)
    gy_np = random_array(rng, y.shape, numpy.float32)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        _, _, gb = gpuconv.conv_transpose2d_backward(cupy.asarray(gy_np), cupy.asarray(x_np), cupy.asarray(w_np),
                                                     **kw)
        stream.synchronize()
    gy64 = gy_np.astype(numpy.float64)
    assert_close(cupy.asnumpy(gb), gy64.sum(axis=(0, 2, 3)), numpy.abs(gy64).sum(axis=(0, 2, 3)), numpy.float32,
                 gy_np.size // 6, "grad_bias")
    assert "conv2d_bias_grad<float, 1>" in bias_grad_env
