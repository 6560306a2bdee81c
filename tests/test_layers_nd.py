"""gpuconv.layers' 1-d, 3-d and adaptive layers against torch.nn's modules with the same weights: outputs,
input gradients and parameter gradients (float64)."""

import numpy
import pytest

torch = pytest.importorskip("torch")

from gpuconv import layers  # noqa: E402

CASES = [
    ("Conv1d", (2, 4, 9), (4, 6, 3), dict(stride=2, padding=1, groups=2)),
    ("Conv3d", (2, 4, 5, 6, 5), (4, 6, (3, 2, 3)), dict(padding=1, padding_mode="replicate")),
    ("ConvTranspose1d", (2, 4, 6), (4, 3, 3), dict(stride=2, output_padding=1)),
    ("ConvTranspose3d", (2, 4, 3, 4, 3), (4, 2, 2), dict(stride=2)),
    ("MaxPool1d", (2, 3, 11), (3,), dict(stride=2, padding=1)),
    ("MaxPool3d", (2, 3, 5, 6, 7), (2,), dict(ceil_mode=True)),
    ("AvgPool1d", (2, 3, 11), (3,), dict(stride=2, count_include_pad=False)),
    ("AvgPool3d", (2, 3, 5, 6, 7), (3,), dict(stride=2, padding=1, divisor_override=7)),
    ("AdaptiveAvgPool1d", (2, 3, 11), (4,), {}),
    ("AdaptiveAvgPool2d", (2, 3, 7, 9), (1,), {}),
    ("AdaptiveAvgPool3d", (2, 3, 5, 7, 6), ((2, None, 4),), {}),
    ("AdaptiveMaxPool1d", (2, 3, 11), (4,), {}),
    ("AdaptiveMaxPool2d", (2, 3, 7, 9), ((3, 5),), {}),
    ("AdaptiveMaxPool3d", (2, 3, 5, 7, 6), (2,), {}),
]


@pytest.mark.parametrize("name, x_shape, args, kw", CASES, ids=[c[0] for c in CASES])
def test_layer_matches_torch_module(name, x_shape, args, kw):
    rng = numpy.random.default_rng(3)
    x = rng.permutation(int(numpy.prod(x_shape))).reshape(x_shape) / 7.0  # tie-free for the max pools
    ours = getattr(layers, name)(*args, **kw, **({"dtype": numpy.float64, "rng": 0} if "Conv" in name else {}))
    theirs = getattr(torch.nn, name)(*args, **kw).double()
    if "Conv" in name:
        with torch.no_grad():
            theirs.weight.copy_(torch.from_numpy(ours.weight))
            theirs.bias.copy_(torch.from_numpy(rng.standard_normal(ours.bias.shape)))
            ours.bias[...] = theirs.bias.numpy()
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    y = ours.forward(x)
    numpy.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-10)
    g = rng.standard_normal(y.shape)
    ty.backward(torch.from_numpy(g))
    numpy.testing.assert_allclose(ours.backward(g), tx.grad.numpy(), rtol=1e-10, atol=1e-10)
    for mine, p in zip(ours.grads, [theirs.weight, theirs.bias] if "Conv" in name else []):
        numpy.testing.assert_allclose(mine, p.grad.numpy(), rtol=1e-10, atol=1e-10)


def test_avg_pool1d_rejects_divisor_override():
    with pytest.raises(TypeError, match="divisor_override"):
        layers.AvgPool1d(2, divisor_override=3)


def test_a_small_3d_network_learns():
    """Conv3d -> ReLU -> MaxPool3d -> AdaptiveAvgPool3d(1) -> Flatten -> Linear, a few SGD steps on a fixed
    batch: the loss falls."""
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((8, 2, 4, 6, 6)).astype(numpy.float32)
    labels = numpy.arange(8) % 3
    model = layers.Sequential(layers.Conv3d(2, 6, 3, padding=1, rng=1), layers.ReLU(), layers.MaxPool3d(2),
                              layers.AdaptiveAvgPool3d(1), layers.Flatten(), layers.Linear(6, 3, rng=2))
    loss_fn, opt = layers.SoftmaxCrossEntropy(), layers.SGD(model, lr=0.5, momentum=0.9)
    losses = []
    for _ in range(15):
        losses.append(float(loss_fn.forward(model.forward(x), labels)))
        model.backward(loss_fn.backward())
        opt.step()
    assert losses[-1] < 0.7 * losses[0], losses
