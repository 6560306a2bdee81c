"""gpuconv.layers: every backward agrees with finite differences of its forward (float64), the optimizer
does torch.optim.SGD's update, and layers keep their arrays in the module they were made with."""

import numpy
import pytest

from gpuconv import layers as L


def _gpu_ready():
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


XPS = ["numpy", pytest.param("cupy", marks=pytest.mark.skipif(not _gpu_ready(), reason="needs CuPy and a GPU"))]


@pytest.fixture(params=XPS)
def xp(request):
    return pytest.importorskip(request.param)


def _directional_check(f, x, analytic, rng, eps=1e-6, directions=3):
    """<analytic, d> == (f(x + eps d) - f(x - eps d)) / (2 eps) for random directions d; f is a scalar
    function of the array x, which is restored afterwards."""
    xp = L._module_of(x)
    for _ in range(directions):
        d = xp.asarray(rng.standard_normal(x.shape))
        x0 = x.copy()
        x[...] = x0 + eps * d
        up = float(f())
        x[...] = x0 - eps * d
        down = float(f())
        x[...] = x0
        numeric = (up - down) / (2 * eps)
        exact = float((analytic * d).sum())
        assert numeric == pytest.approx(exact, rel=1e-6, abs=1e-8)


def _check_layer(layer, x, xp, seed=0):
    """Checks the input gradient and every parameter gradient of <layer(x), g> for a random g."""
    rng = numpy.random.default_rng(seed)
    y = layer.forward(x)
    g = xp.asarray(rng.standard_normal(y.shape))

    def loss():
        return (layer.forward(x) * g).sum()

    layer.forward(x)
    gx = layer.backward(g)
    grads = [a.copy() for a in layer.grads]
    assert gx.shape == x.shape and gx.dtype == x.dtype
    assert len(grads) == len(layer.params)
    _directional_check(loss, x, gx, rng)
    for p, gp in zip(layer.params, grads):
        assert gp.shape == p.shape
        _directional_check(loss, p, gp, rng)


def _rand(xp, shape, seed):
    return xp.asarray(numpy.random.default_rng(seed).standard_normal(shape))


def _untied(xp, shape, seed):
    n = int(numpy.prod(shape))
    return xp.asarray(numpy.random.default_rng(seed).permutation(n).reshape(shape) / n)


F64 = dict(dtype=numpy.float64)


@pytest.mark.parametrize("kwargs", [
    dict(in_channels=3, out_channels=4, kernel_size=3, padding=1),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2),
         groups=2, bias=False),
    dict(in_channels=2, out_channels=3, kernel_size=3, padding="same", padding_mode="reflect"),
])
def test_conv2d_gradients(xp, kwargs):
    layer = L.Conv2d(**kwargs, xp=xp, rng=1, **F64)
    layer.bias = None if layer.bias is None else _rand(xp, layer.bias.shape, 2)  # non-zero bias
    _check_layer(layer, _rand(xp, (2, kwargs["in_channels"], 6, 7), 3), xp)


def test_conv_transpose2d_gradients(xp):
    layer = L.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, xp=xp, rng=4, **F64)
    layer.bias = _rand(xp, layer.bias.shape, 5)
    _check_layer(layer, _rand(xp, (2, 4, 3, 4), 6), xp)


def test_pool_gradients(xp):
    _check_layer(L.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), _untied(xp, (2, 3, 7, 6), 7), xp)
    _check_layer(L.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), _rand(xp, (2, 3, 7, 6), 8), xp)


def test_relu_flatten_linear_gradients(xp):
    x = _rand(xp, (4, 2, 3, 3), 9)
    x[xp.abs(x) < 1e-3] = 0.5  # keep away from ReLU's kink
    _check_layer(L.ReLU(), x, xp)
    _check_layer(L.Flatten(), x, xp)
    layer = L.Linear(7, 5, xp=xp, rng=10, **F64)
    layer.bias = _rand(xp, (5,), 11)
    _check_layer(layer, _rand(xp, (4, 7), 12), xp)


def test_sequential_and_cross_entropy_gradients(xp):
    model = L.Sequential(L.Conv2d(1, 3, 3, padding=1, xp=xp, rng=13, **F64), L.ReLU(), L.AvgPool2d(2),
                         L.Flatten(), L.Linear(12, 4, xp=xp, rng=14, **F64))
    model.layers[0].need_input_grad = False
    x, labels = _rand(xp, (5, 1, 4, 4), 15), xp.asarray([0, 3, 1, 1, 2])
    loss_fn = L.SoftmaxCrossEntropy()

    def loss():
        return loss_fn.forward(model.forward(x), labels)

    loss()
    assert model.backward(loss_fn.backward()) is None  # first layer skips its input gradient
    rng = numpy.random.default_rng(16)
    for p, g in zip(model.params, [g.copy() for g in model.grads]):
        _directional_check(loss, p, g, rng)
    logits = _rand(xp, (5, 4), 17)
    _directional_check(lambda: loss_fn.forward(logits, labels), logits, (loss_fn.forward(logits, labels),
                                                                          loss_fn.backward())[1], rng)


def test_cross_entropy_matches_definition():
    logits = numpy.array([[1000.0, 0.0, -1000.0], [0.5, 0.25, 2.0]])
    labels = numpy.array([0, 1])
    expected = numpy.mean([0.0, -numpy.log(numpy.exp(0.25) / numpy.exp([0.5, 0.25, 2.0]).sum())])
    assert float(L.SoftmaxCrossEntropy().forward(logits, labels)) == pytest.approx(expected)


def test_sgd_momentum_update_is_torchs():
    class One:
        params = [numpy.array([1.0, -2.0])]
        grads = [numpy.array([0.5, 1.0])]

    model = One()
    opt = L.SGD(model, lr=0.1, momentum=0.9, weight_decay=0.01)
    p = model.params[0]
    opt.step()  # v = g + wd*p;  p -= lr*v
    v1 = numpy.array([0.5, 1.0]) + 0.01 * numpy.array([1.0, -2.0])
    p1 = numpy.array([1.0, -2.0]) - 0.1 * v1
    assert numpy.allclose(p, p1)
    opt.step()  # v = 0.9 v + g + wd*p
    v2 = 0.9 * v1 + numpy.array([0.5, 1.0]) + 0.01 * p1
    assert numpy.allclose(p, p1 - 0.1 * v2)
    assert p is model.params[0]  # updated in place


def test_layers_live_in_their_array_module_and_are_seeded(xp):
    a, b = L.Conv2d(2, 3, 3, xp=xp, rng=7), L.Conv2d(2, 3, 3, xp=xp, rng=7)
    assert isinstance(a.weight, xp.ndarray) and a.weight.dtype == numpy.float32
    assert bool((a.weight == b.weight).all())
    std = float(L.Conv2d(64, 64, 3, xp=xp, rng=0).weight.std())
    assert std == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.02)  # He initialisation


def test_backward_before_forward_is_an_error():
    with pytest.raises(RuntimeError, match="before forward"):
        L.MaxPool2d(2).backward(numpy.zeros((1, 1, 1, 1)))
