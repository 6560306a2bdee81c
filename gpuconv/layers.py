"""Layer objects for training small networks on NumPy or CuPy arrays, without a framework.

Each layer has ``forward(x)``, which keeps what its backward needs, and ``backward(grad_output)``, which
returns the gradient of the loss with respect to ``x`` and leaves the gradients of its parameters in
``grads`` (aligned with ``params``; overwritten, not accumulated, by each backward). Parameters live in the
array module the layer was made with (``xp=numpy`` or ``xp=cupy``) and are updated in place by
:class:`SGD`. A minimal training step::

    model = Sequential(Conv2d(1, 8, 3, padding=1, xp=xp, rng=0), ReLU(), MaxPool2d(2), Flatten(),
                       Linear(8 * 4 * 4, 10, xp=xp, rng=1))
    loss_fn, opt = SoftmaxCrossEntropy(), SGD(model, lr=0.1, momentum=0.9)
    loss = loss_fn.forward(model.forward(x), labels)
    model.backward(loss_fn.backward())
    opt.step()

Weights are drawn with NumPy's generator (He initialisation) and then moved to ``xp``, so one seed gives the
same network on the CPU and on the GPU. Biases start at zero.

``dtype`` (layers with parameters) is float32 by default; float16, bfloat16 (``ml_dtypes.bfloat16``) and
float64 work too. bfloat16 layers keep bfloat16 parameters and activations and, like gpuconv's ops, compute
in float32 and round once: Linear's products, its bias gradient and the softmax cross-entropy (NumPy sums
bfloat16 in bfloat16, which loses badly).
"""

from __future__ import annotations

import math

import numpy

import gpuconv
from gpuconv._params import BFLOAT16

_F32 = numpy.dtype(numpy.float32)

__all__ = [
    "array_module", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d",
    "ReLU", "Flatten", "Linear", "Sequential", "SoftmaxCrossEntropy", "SGD",
]


def array_module(device: str):
    """numpy for ``"cpu"``, cupy for ``"cuda"``."""
    if device == "cpu":
        return numpy
    if device == "cuda":
        import cupy

        return cupy
    raise ValueError(f"device must be 'cpu' or 'cuda', but got {device!r}")


def _module_of(a):
    """numpy or cupy, whichever array module ``a`` belongs to."""
    if isinstance(a, numpy.ndarray):
        return numpy
    import cupy

    return cupy


def _ntuple(v, nd):
    return (v,) * nd if isinstance(v, int) else tuple(v)


def he_normal(shape, fan_in: int, *, xp=numpy, dtype=numpy.float32, rng=None):
    """Normal weights with standard deviation sqrt(2 / fan_in) (He et al., 2015), for layers followed by
    ReLU. ``rng`` is a numpy.random.Generator or a seed."""
    rng = numpy.random.default_rng(rng)
    w = rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)
    return xp.asarray(w.astype(dtype))


class Layer:
    """A layer without parameters; subclasses with parameters fill ``params`` and ``grads``."""

    params: tuple = ()
    grads: tuple = ()

    def __call__(self, x):
        return self.forward(x)

    def _saved(self, value):
        if value is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return value


class _WeightedConv(Layer):
    """What the convolution layers share: a weight, an optional bias, the saved input, and a backward that
    asks only for the gradients it needs. Subclasses set ``nd`` and ``transposed``; the op is
    gpuconv.conv{nd}d or gpuconv.conv_transpose{nd}d."""

    nd = 2
    transposed = False

    def _init_state(self, weight_shape, fan_in, out_channels, bias, conv_args, xp, dtype, rng):
        op = f"conv_transpose{self.nd}d" if self.transposed else f"conv{self.nd}d"
        self._forward_op, self._backward_op = getattr(gpuconv, op), getattr(gpuconv, op + "_backward")
        self.weight = he_normal(weight_shape, fan_in, xp=xp, dtype=dtype, rng=rng)
        self.bias = xp.zeros(out_channels, dtype=dtype) if bias else None
        self.conv_args = conv_args
        self.need_input_grad = True
        self.grads = []
        self._x = None

    @property
    def params(self):
        return [self.weight] + ([self.bias] if self.bias is not None else [])

    def forward(self, x):
        self._x = x
        return self._forward_op(x, self.weight, self.bias, **self.conv_args)

    def backward(self, grad_output):
        mask = (self.need_input_grad, True, self.bias is not None)
        gx, gw, gb = self._backward_op(grad_output, self._saved(self._x), self.weight, **self.conv_args,
                                       output_mask=mask)
        self.grads = [gw] + ([gb] if gb is not None else [])
        return gx


class _ConvNd(_WeightedConv):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", *, xp=numpy, dtype=numpy.float32, rng=None):
        k = _ntuple(kernel_size, self.nd)
        self._init_state((out_channels, in_channels // groups) + k, in_channels // groups * math.prod(k),
                         out_channels, bias, dict(stride=stride, padding=padding, dilation=dilation,
                                                  groups=groups, padding_mode=padding_mode), xp, dtype, rng)


class _ConvTransposeNd(_WeightedConv):
    transposed = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, *, xp=numpy, dtype=numpy.float32, rng=None):
        k = _ntuple(kernel_size, self.nd)
        self._init_state((in_channels, out_channels // groups) + k, in_channels // groups * math.prod(k),
                         out_channels, bias, dict(stride=stride, padding=padding, output_padding=output_padding,
                                                  groups=groups, dilation=dilation), xp, dtype, rng)


class Conv1d(_ConvNd):
    """A convolution layer over ``gpuconv.conv1d``; arguments as ``torch.nn.Conv1d``'s."""

    nd = 1


class Conv2d(_ConvNd):
    """A convolution layer over ``gpuconv.conv2d``; arguments as ``torch.nn.Conv2d``'s. The weight is
    (out_channels, in_channels/groups, kH, kW) with fan-in in_channels/groups*kH*kW.

    Set ``need_input_grad = False`` on a network's first layer: its backward then skips the input
    gradient (and returns None). The same holds for every convolution layer."""

    nd = 2


class Conv3d(_ConvNd):
    """A convolution layer over ``gpuconv.conv3d``; arguments as ``torch.nn.Conv3d``'s."""

    nd = 3


class ConvTranspose1d(_ConvTransposeNd):
    """A transposed convolution layer over ``gpuconv.conv_transpose1d``; arguments as
    ``torch.nn.ConvTranspose1d``'s."""

    nd = 1


class ConvTranspose2d(_ConvTransposeNd):
    """A transposed convolution layer over ``gpuconv.conv_transpose2d``; arguments as
    ``torch.nn.ConvTranspose2d``'s. The weight is (in_channels, out_channels/groups, kH, kW); its fan-in
    is taken as in_channels/groups*kH*kW, the inputs that reach one output when the stride is 1."""

    nd = 2


class ConvTranspose3d(_ConvTransposeNd):
    """A transposed convolution layer over ``gpuconv.conv_transpose3d``; arguments as
    ``torch.nn.ConvTranspose3d``'s."""

    nd = 3


class _MaxPoolNd(Layer):
    """Max pooling; keeps the argmax indices for backward."""

    nd = 2

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        self.pool_args = dict(kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
                              ceil_mode=ceil_mode)
        self._indices = self._input_shape = None

    def _pool(self, x):
        return getattr(gpuconv, f"max_pool{self.nd}d")(x, return_indices=True, **self.pool_args)

    def forward(self, x):
        y, self._indices = self._pool(x)
        self._input_shape = x.shape
        return y

    def backward(self, grad_output):
        return getattr(gpuconv, f"max_pool{self.nd}d_backward")(grad_output, self._saved(self._indices),
                                                                 self._input_shape)


class _AvgPoolNd(Layer):
    nd = 2

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        self.pool_args = dict(kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                              count_include_pad=count_include_pad)
        if self.nd != 1:  # torch.nn.AvgPool1d has no divisor_override
            self.pool_args["divisor_override"] = divisor_override
        elif divisor_override is not None:
            raise TypeError("AvgPool1d takes no divisor_override (as torch.nn.AvgPool1d)")
        self._input_shape = None

    def forward(self, x):
        self._input_shape = x.shape
        return getattr(gpuconv, f"avg_pool{self.nd}d")(x, **self.pool_args)

    def backward(self, grad_output):
        return getattr(gpuconv, f"avg_pool{self.nd}d_backward")(grad_output, self._saved(self._input_shape),
                                                                **self.pool_args)


class _AdaptiveAvgPoolNd(Layer):
    nd = 2

    def __init__(self, output_size):
        self.output_size = output_size
        self._input_shape = None

    def forward(self, x):
        self._input_shape = x.shape
        return getattr(gpuconv, f"adaptive_avg_pool{self.nd}d")(x, self.output_size)

    def backward(self, grad_output):
        return getattr(gpuconv, f"adaptive_avg_pool{self.nd}d_backward")(grad_output,
                                                                         self._saved(self._input_shape))


class _AdaptiveMaxPoolNd(_MaxPoolNd):
    def __init__(self, output_size):
        self.output_size = output_size
        self._indices = self._input_shape = None

    def _pool(self, x):
        return getattr(gpuconv, f"adaptive_max_pool{self.nd}d")(x, self.output_size, return_indices=True)


def _pool_layer(base, name, nd, doc):
    return type(name, (base,), {"nd": nd, "__doc__": doc, "__module__": __name__})


MaxPool1d, MaxPool2d, MaxPool3d = (_pool_layer(_MaxPoolNd, f"MaxPool{d}d", d, f"""Max pooling over
    ``gpuconv.max_pool{d}d``; arguments as ``torch.nn.MaxPool{d}d``'s. Keeps the indices for backward.""")
                                   for d in (1, 2, 3))
AvgPool1d, AvgPool2d, AvgPool3d = (_pool_layer(_AvgPoolNd, f"AvgPool{d}d", d, f"""Average pooling over
    ``gpuconv.avg_pool{d}d``; arguments as ``torch.nn.AvgPool{d}d``'s.""") for d in (1, 2, 3))
AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d = (
    _pool_layer(_AdaptiveAvgPoolNd, f"AdaptiveAvgPool{d}d", d, f"""Adaptive average pooling over
    ``gpuconv.adaptive_avg_pool{d}d``; ``AdaptiveAvgPool2d(1)`` is a global average pool.""") for d in (1, 2, 3))
AdaptiveMaxPool1d, AdaptiveMaxPool2d, AdaptiveMaxPool3d = (
    _pool_layer(_AdaptiveMaxPoolNd, f"AdaptiveMaxPool{d}d", d, f"""Adaptive max pooling over
    ``gpuconv.adaptive_max_pool{d}d``; keeps the indices for backward.""") for d in (1, 2, 3))


class ReLU(Layer):
    def __init__(self):
        self._positive = None

    def forward(self, x):
        self._positive = x > 0
        return x * self._positive

    def backward(self, grad_output):
        return grad_output * self._saved(self._positive)


class Flatten(Layer):
    """(N, ...) -> (N, features), as ``torch.nn.Flatten``."""

    def __init__(self):
        self._shape = None

    def forward(self, x):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_output):
        return grad_output.reshape(self._saved(self._shape))


class Linear(Layer):
    """y = x @ weight.T + bias, weight (out_features, in_features), as ``torch.nn.Linear``."""

    def __init__(self, in_features, out_features, bias=True, *, xp=numpy, dtype=numpy.float32, rng=None):
        self.weight = he_normal((out_features, in_features), in_features, xp=xp, dtype=dtype, rng=rng)
        self.bias = xp.zeros(out_features, dtype=dtype) if bias else None
        self.grads = []
        self._x = None

    @property
    def params(self):
        return [self.weight] + ([self.bias] if self.bias is not None else [])

    def forward(self, x):
        self._x = x
        if x.dtype == BFLOAT16:  # float32 products, one rounding (NumPy's bfloat16 matmul returns float32)
            y = _f32(x) @ _f32(self.weight).T
            return (y + _f32(self.bias) if self.bias is not None else y).astype(BFLOAT16)
        y = x @ self.weight.T
        return y + self.bias if self.bias is not None else y

    def backward(self, grad_output):
        x = self._saved(self._x)
        if grad_output.dtype == BFLOAT16:
            g = _f32(grad_output)
            self.grads = [(g.T @ _f32(x)).astype(BFLOAT16)] + (
                [g.sum(axis=0).astype(BFLOAT16)] if self.bias is not None else [])
            return (g @ _f32(self.weight)).astype(BFLOAT16)
        self.grads = [grad_output.T @ x] + ([grad_output.sum(axis=0)] if self.bias is not None else [])
        return grad_output @ self.weight


def _f32(a):
    return a.astype(_F32)


class Sequential(Layer):
    """Layers applied in order; ``params`` and ``grads`` are those of all layers, in order."""

    def __init__(self, *layers):
        self.layers = list(layers)

    @property
    def params(self):
        return [p for layer in self.layers for p in layer.params]

    @property
    def grads(self):
        return [g for layer in self.layers for g in layer.grads]

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_output):
        for layer in reversed(self.layers):
            grad_output = layer.backward(grad_output)
        return grad_output


class SoftmaxCrossEntropy:
    """Mean cross-entropy of softmax(logits) against integer class labels, as
    ``torch.nn.functional.cross_entropy``. ``forward(logits, labels)`` returns the loss as a 0-d array;
    ``backward()`` returns its gradient with respect to the logits. bfloat16 logits are computed in float32
    (the loss and gradient come back in bfloat16)."""

    def __init__(self):
        self._probs = self._labels = None
        self._dtype = None

    def forward(self, logits, labels):
        xp = _module_of(logits)
        self._dtype = logits.dtype
        if logits.dtype == BFLOAT16:
            logits = _f32(logits)
        shifted = logits - logits.max(axis=1, keepdims=True)  # exp cannot overflow
        log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        self._probs, self._labels = xp.exp(log_probs), labels
        return (-log_probs[xp.arange(len(labels)), labels].mean()).astype(self._dtype)

    def backward(self):
        if self._probs is None:
            raise RuntimeError("SoftmaxCrossEntropy.backward called before forward")
        grad = self._probs.copy()
        n = len(self._labels)
        grad[_module_of(grad).arange(n), self._labels] -= 1
        return (grad / n).astype(self._dtype, copy=False)


class SGD:
    """Stochastic gradient descent with momentum, as ``torch.optim.SGD``: v = momentum*v + g (+ weight_decay*p),
    p -= lr*v. Reads ``model.params`` / ``model.grads`` at each step and updates the parameters in place."""

    def __init__(self, model, lr, momentum=0.0, weight_decay=0.0):
        self.model, self.lr, self.momentum, self.weight_decay = model, lr, momentum, weight_decay
        self._velocity = None

    def step(self):
        params, grads = self.model.params, self.model.grads
        if len(grads) != len(params):
            raise RuntimeError(f"SGD.step: {len(params)} parameters but {len(grads)} gradients; call backward first")
        if self._velocity is None:
            self._velocity = [_module_of(g).zeros_like(g) for g in grads]
        for p, g, v in zip(params, grads, self._velocity):
            if self.weight_decay:
                g = g + self.weight_decay * p
            v *= self.momentum
            v += g
            p -= self.lr * v
