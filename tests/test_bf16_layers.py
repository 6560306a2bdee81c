"""gpuconv.layers in bfloat16, end to end: parameters, activations and gradients stay bfloat16, Linear and the
cross-entropy compute in float32 and round once, and a few training steps follow the same network in
float32 to bfloat16's precision."""

from __future__ import annotations

import numpy
import pytest

from gpuconv import layers as L
from helpers import BFLOAT16

F32 = numpy.dtype(numpy.float32)


def _net(dtype):
    return L.Sequential(
        L.Conv2d(2, 6, 3, padding=1, padding_mode="reflect", dtype=dtype, rng=0), L.ReLU(), L.MaxPool2d(2),
        L.ConvTranspose2d(6, 4, 2, stride=2, dtype=dtype, rng=1), L.ReLU(), L.AvgPool2d(2), L.Flatten(),
        L.Linear(4 * 4 * 4, 5, dtype=dtype, rng=2))


def test_linear_is_float32_rounded_once(rng):
    layer = L.Linear(7, 3, dtype=BFLOAT16, rng=3)
    layer.bias[...] = rng.standard_normal(3).astype(BFLOAT16)
    x = rng.standard_normal((4, 7)).astype(BFLOAT16)
    y = layer.forward(x)
    expected = (x.astype(F32) @ layer.weight.astype(F32).T + layer.bias.astype(F32)).astype(BFLOAT16)
    assert y.dtype == BFLOAT16
    numpy.testing.assert_array_equal(y.view(numpy.uint16), expected.view(numpy.uint16))
    gy = rng.standard_normal((4, 3)).astype(BFLOAT16)
    gx = layer.backward(gy)
    assert gx.dtype == BFLOAT16 and all(g.dtype == BFLOAT16 for g in layer.grads)
    numpy.testing.assert_array_equal(
        gx.view(numpy.uint16), (gy.astype(F32) @ layer.weight.astype(F32)).astype(BFLOAT16).view(numpy.uint16))


def test_cross_entropy_sums_in_float32():
    """5000 rows of equal logits: the mean of a bfloat16 running sum would be off by far more than bfloat16's
    rounding of the true value, log(3)."""
    logits = numpy.zeros((5000, 3), BFLOAT16)
    labels = numpy.zeros(5000, numpy.int64)
    loss_fn = L.SoftmaxCrossEntropy()
    loss = loss_fn.forward(logits, labels)
    assert loss.dtype == BFLOAT16
    assert abs(float(loss) - numpy.log(3)) <= 2 ** -8 * numpy.log(3)
    grad = loss_fn.backward()
    assert grad.dtype == BFLOAT16 and grad.shape == logits.shape


def test_training_in_bfloat16_follows_float32():
    rng = numpy.random.default_rng(5)
    x = rng.standard_normal((8, 2, 8, 8))
    labels = rng.integers(0, 5, 8)
    losses = {}
    for dtype in (F32, BFLOAT16):
        model, loss_fn = _net(dtype), L.SoftmaxCrossEntropy()
        opt = L.SGD(model, lr=0.05, momentum=0.9)
        run = []
        for _ in range(6):
            loss = loss_fn.forward(model.forward(x.astype(dtype)), labels)
            gx = model.backward(loss_fn.backward())
            assert gx.dtype == dtype
            assert all(p.dtype == dtype for p in model.params) and all(g.dtype == dtype for g in model.grads)
            opt.step()
            run.append(float(loss))
        losses[dtype] = run
    f32, bf16 = losses[F32], losses[BFLOAT16]
    assert f32[-1] < f32[0] and bf16[-1] < bf16[0], losses
    assert numpy.allclose(bf16, f32, rtol=0.05, atol=0.02), losses


@pytest.mark.parametrize("dtype", [numpy.float16, numpy.float64])
def test_other_dtypes_unchanged(dtype):
    layer = L.Linear(3, 2, dtype=dtype, rng=0)
    x = numpy.ones((2, 3), dtype)
    assert layer.forward(x).dtype == dtype and layer.backward(numpy.ones((2, 2), dtype)).dtype == dtype
