"""gpuconv's ops as PyTorch autograd functions, so a ``torch.nn.Module`` can run gpuconv's kernels.

The plain functions have the signatures of their ``torch.nn.functional`` namesakes (``conv2d`` also takes
``nn.Conv2d``'s ``padding_mode`` as a keyword) and give the same results and gradients::

    import gpuconv.torch as gF
    y = gF.conv2d(x, w, b, padding=1, padding_mode="reflect")

How tensors cross over, without copies:

- CUDA tensors go to CuPy through DLPack, and gpuconv's kernels run on PyTorch's current CUDA stream of the
  tensor's device, so they are ordered with the surrounding PyTorch work without any synchronisation.
- CPU tensors go to NumPy (``Tensor.numpy()`` shares memory) and run on gpuconv's NumPy path. NumPy has no
  bfloat16 of its own and ``Tensor.numpy()`` refuses one: a bfloat16 tensor crosses as a view of its bits
  (``int16``, then ``ml_dtypes.bfloat16``), still without a copy; results come back the same way.

Autocast: under ``torch.autocast`` each op casts its arguments exactly as its ``torch.nn.functional``
namesake would (``_AUTOCAST_POLICY`` below, torch's cast policies for these ops): convolutions run in the
autocast dtype, pooling in its input's dtype (except the CPU's 3-d pooling, which torch runs in float32).
The casts are ordinary differentiable ``Tensor.to`` calls, so each gradient reaches its leaf in the leaf's
own dtype (a float32 weight gets a float32 gradient), as with torch's own ops.

On CUDA, results live in CuPy's memory pool (released to it when the tensor dies), allocated on PyTorch's
current stream: using them on another stream needs the same care as any tensor made there.

Any strides are accepted (gpuconv copies to contiguous where a kernel needs it). The backward passes are
gpuconv's own ``*_backward`` functions and are not differentiable again (no double backward).

This module is optional: ``import gpuconv`` never imports torch; only ``import gpuconv.torch`` does.
"""

from __future__ import annotations

import contextlib

import ml_dtypes
import numpy

try:
    import torch
    from torch.autograd.function import once_differentiable
except ImportError as exc:  # pragma: no cover - exercised only where torch is absent
    raise ImportError("gpuconv.torch needs PyTorch; install it (pip install torch) or use gpuconv directly") from exc

import gpuconv

__all__ = [
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_BFLOAT16 = numpy.dtype(ml_dtypes.bfloat16)


# ------------------------------------------------------------------------------------------- autocast

# torch's autocast cast policy for each op of this module, per device type, as torch's autocast registers
# them (aten/src/ATen/autocast_mode.cpp; the tables of https://pytorch.org/docs/stable/amp.html):
# "lower_precision_fp" casts to the autocast dtype (torch.get_autocast_dtype), "fp32" to float32; an op not
# listed runs in its inputs' dtype. On CUDA and CPU alike every convolution is lower_precision_fp; no 2-d or
# 1-d pooling has a policy; the CPU puts max_pool3d, avg_pool3d and the adaptive 3-d pools in fp32.
# tests/test_torch_autocast.py checks this table against torch's own ops on every device present.
_CONVOLUTIONS = ("conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
_AUTOCAST_POLICY = {
    "cpu": {**dict.fromkeys(_CONVOLUTIONS, "lower_precision_fp"),
            **dict.fromkeys(("max_pool3d", "avg_pool3d", "adaptive_avg_pool3d", "adaptive_max_pool3d"), "fp32")},
    "cuda": dict.fromkeys(_CONVOLUTIONS, "lower_precision_fp"),
}


def _autocast(op: str, *tensors):
    """``tensors`` (None allowed) as torch's autocast would hand them to ``op``: unchanged unless autocast is
    on for their device type and the op has a policy there; then every floating-point tensor on that device
    type but float64 (which autocast never touches) is cast to the policy's dtype."""
    first = next((t for t in tensors if isinstance(t, torch.Tensor)), None)
    if first is None:
        return tensors
    device_type = first.device.type
    policy = _AUTOCAST_POLICY.get(device_type, {}).get(op)
    if policy is None or not torch.is_autocast_enabled(device_type):
        return tensors
    dtype = torch.get_autocast_dtype(device_type) if policy == "lower_precision_fp" else torch.float32
    return tuple(
        t.to(dtype) if (isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64
                        and t.device.type == device_type) else t
        for t in tensors)


def _conv_like(op: str, function, input, weight, bias, *args, nd: int):
    """``function.apply(nd, input, weight, bias, *args)`` after ``op``'s autocast casts."""
    input, weight, bias = _autocast(op, input, weight, bias)
    return function.apply(nd, input, weight, bias, *args)


def _pool_like(op: str, function, input, *args, nd: int, adaptive: bool):
    """``function.apply(nd, adaptive, input, *args)`` after ``op``'s autocast cast (none for 1-d / 2-d
    pooling)."""
    (input,) = _autocast(op, input)
    return function.apply(nd, adaptive, input, *args)


# ------------------------------------------------------------------------------------ tensor <-> array


def _check_tensors(op: str, named: dict) -> torch.device:
    """The one device all non-None tensors live on; a clear error for anything gpuconv cannot take."""
    device = first = None
    for name, t in named.items():
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, but got {type(t).__qualname__}")
        if t.dtype not in _FLOAT_DTYPES:
            raise TypeError(
                f"{op}: {name} must have dtype float16, bfloat16, float32 or float64, but got {t.dtype}")
        if t.device.type not in ("cpu", "cuda"):
            raise TypeError(f"{op}: {name} is on {t.device}; gpuconv runs on CPU and CUDA tensors only")
        if device is None:
            device, first = t.device, name
        elif t.device != device:
            raise ValueError(
                f"{op}: expected all tensors to be on one device, but {first} is on {device} and {name} is on "
                f"{t.device}"
            )
    return device


def _to_array(t):
    """A NumPy or CuPy array sharing the tensor's memory (None stays None). For CUDA tensors, call inside
    :func:`_on_device` so the array is tied to the right device and stream."""
    if t is None:
        return None
    t = t.detach()
    if t.device.type == "cuda":
        import cupy

        return cupy.from_dlpack(t)  # bfloat16 included: CuPy >= 14 reads DLPack's bfloat16
    if t.dtype == torch.bfloat16:  # Tensor.numpy() refuses bfloat16: view the same bits
        return t.view(torch.int16).numpy().view(_BFLOAT16)
    return t.numpy()


def _to_tensor(a):
    """A tensor sharing the memory of a NumPy or CuPy result (None stays None)."""
    if a is None:
        return None
    if isinstance(a, numpy.ndarray):
        # torch.from_numpy refuses negative strides and warns on read-only arrays; gpuconv's results are
        # fresh arrays, so this copy is only a guard.
        if not a.flags.writeable or any(s < 0 for s in a.strides):
            a = a.copy()
        if a.dtype == _BFLOAT16:
            return torch.from_numpy(a.view(numpy.int16)).view(torch.bfloat16)
        return torch.from_numpy(a)
    return torch.from_dlpack(a)


def _cupy_stream(cupy, stream):
    """CuPy's view of a PyTorch CUDA stream. CuPy 14 replaced ExternalStream by Stream.from_external,
    which reads the stream through the CUDA stream protocol that torch.cuda.Stream implements."""
    if hasattr(cupy.cuda.Stream, "from_external"):
        return cupy.cuda.Stream.from_external(stream)
    return cupy.cuda.ExternalStream(stream.cuda_stream, stream.device_index)


@contextlib.contextmanager
def _on_device(device: torch.device):
    """For a CUDA device: makes it current for PyTorch and CuPy, and makes CuPy launch on PyTorch's current
    stream there. Array conversions must happen inside too: DLPack hands data over between the two
    libraries' *current* streams, which are then one and the same, so no synchronisation is needed."""
    if device.type != "cuda":
        yield
        return
    import cupy

    with torch.cuda.device(device), cupy.cuda.Device(device.index):
        with _cupy_stream(cupy, torch.cuda.current_stream(device)):
            yield


# ------------------------------------------------------------------------------------ autograd functions


class ConvFunction(torch.autograd.Function):
    """conv{nd}d with gpuconv's forward and backward: apply(nd, input, weight, bias, stride, padding,
    dilation, groups, padding_mode)."""

    @staticmethod
    def forward(ctx, nd, input, weight, bias, stride, padding, dilation, groups, padding_mode):
        device = _check_tensors(f"conv{nd}d", {"input": input, "weight": weight, "bias": bias})
        ctx.nd, ctx.conv_args, ctx.padding_mode = nd, (stride, padding, dilation, groups), padding_mode
        ctx.save_for_backward(input, weight)
        with _on_device(device):
            y = getattr(gpuconv, f"conv{nd}d")(_to_array(input), _to_array(weight), _to_array(bias), stride,
                                               padding, dilation, groups, padding_mode=padding_mode)
            return _to_tensor(y)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        mask = tuple(ctx.needs_input_grad[1:4])  # the bias entry is False when bias is None
        grads = (None, None, None)
        if any(mask):
            with _on_device(input.device):
                grads = getattr(gpuconv, f"conv{ctx.nd}d_backward")(
                    _to_array(grad_output), _to_array(input), _to_array(weight), *ctx.conv_args,
                    padding_mode=ctx.padding_mode, output_mask=mask)
                grads = tuple(_to_tensor(g) for g in grads)
        return (None,) + grads + (None,) * 5


class ConvTransposeFunction(torch.autograd.Function):
    """conv_transpose{nd}d with gpuconv's forward and backward: apply(nd, input, weight, bias, stride,
    padding, output_padding, groups, dilation)."""

    @staticmethod
    def forward(ctx, nd, input, weight, bias, stride, padding, output_padding, groups, dilation):
        device = _check_tensors(f"conv_transpose{nd}d", {"input": input, "weight": weight, "bias": bias})
        ctx.nd, ctx.conv_args = nd, (stride, padding, output_padding, groups, dilation)
        ctx.save_for_backward(input, weight)
        with _on_device(device):
            y = getattr(gpuconv, f"conv_transpose{nd}d")(_to_array(input), _to_array(weight), _to_array(bias),
                                                         *ctx.conv_args)
            return _to_tensor(y)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        mask = tuple(ctx.needs_input_grad[1:4])
        grads = (None, None, None)
        if any(mask):
            with _on_device(input.device):
                grads = getattr(gpuconv, f"conv_transpose{ctx.nd}d_backward")(
                    _to_array(grad_output), _to_array(input), _to_array(weight), *ctx.conv_args, output_mask=mask)
                grads = tuple(_to_tensor(g) for g in grads)
        return (None,) + grads + (None,) * 5


class MaxPoolFunction(torch.autograd.Function):
    """max_pool{nd}d (adaptive=False: apply(nd, False, input, kernel_size, stride, padding, dilation,
    ceil_mode)) or adaptive_max_pool{nd}d (apply(nd, True, input, output_size)), returning (output, indices);
    the indices are not differentiable. Both backwards are the max-pool backward of the indices."""

    @staticmethod
    def forward(ctx, nd, adaptive, input, *args):
        op = f"adaptive_max_pool{nd}d" if adaptive else f"max_pool{nd}d"
        device = _check_tensors(op, {"input": input})
        ctx.nd, ctx.input_shape = nd, tuple(input.shape)
        with _on_device(device):
            y, indices = getattr(gpuconv, op)(_to_array(input), *args, return_indices=True)
            y, indices = _to_tensor(y), _to_tensor(indices)
        ctx.mark_non_differentiable(indices)
        ctx.save_for_backward(indices)
        return y, indices

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output, _grad_indices):
        (indices,) = ctx.saved_tensors
        grad_input = None
        if ctx.needs_input_grad[2]:
            with _on_device(indices.device):
                grad_input = _to_tensor(getattr(gpuconv, f"max_pool{ctx.nd}d_backward")(
                    _to_array(grad_output), _to_array(indices), ctx.input_shape))
        return (None, None, grad_input) + (None,) * 5


class AvgPoolFunction(torch.autograd.Function):
    """avg_pool{nd}d (adaptive=False: apply(nd, False, input, kernel_size, stride, padding, ceil_mode,
    count_include_pad[, divisor_override])) or adaptive_avg_pool{nd}d (apply(nd, True, input, output_size))
    with gpuconv's forward and backward."""

    @staticmethod
    def forward(ctx, nd, adaptive, input, *args):
        op = f"adaptive_avg_pool{nd}d" if adaptive else f"avg_pool{nd}d"
        device = _check_tensors(op, {"input": input})
        ctx.op, ctx.adaptive, ctx.input_shape, ctx.device, ctx.pool_args = op, adaptive, tuple(input.shape), device, args
        with _on_device(device):
            return _to_tensor(getattr(gpuconv, op)(_to_array(input), *args))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        grad_input = None
        if ctx.needs_input_grad[2]:
            with _on_device(ctx.device):
                backward = getattr(gpuconv, ctx.op + "_backward")
                args = () if ctx.adaptive else ctx.pool_args
                grad_input = _to_tensor(backward(_to_array(grad_output), ctx.input_shape, *args))
        return (None, None, grad_input) + (None,) * 6


# ------------------------------------------------------------------------- torch.nn.functional signatures


def _named(fn, name, doc):
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


def _make(nd):
    def conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros"):
        return _conv_like(f"conv{nd}d", ConvFunction, input, weight, bias, stride, padding, dilation, groups,
                          padding_mode, nd=nd)

    def conv_transpose(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
        return _conv_like(f"conv_transpose{nd}d", ConvTransposeFunction, input, weight, bias, stride, padding,
                          output_padding, groups, dilation, nd=nd)

    def max_pool(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        output, indices = _pool_like(f"max_pool{nd}d", MaxPoolFunction, input, kernel_size, stride, padding,
                                     dilation, ceil_mode, nd=nd, adaptive=False)
        return (output, indices) if return_indices else output

    if nd == 1:  # torch's avg_pool1d has no divisor_override
        def avg_pool(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
            return _pool_like("avg_pool1d", AvgPoolFunction, input, kernel_size, stride, padding, ceil_mode,
                              count_include_pad, nd=1, adaptive=False)
    else:
        def avg_pool(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                     divisor_override=None):
            return _pool_like(f"avg_pool{nd}d", AvgPoolFunction, input, kernel_size, stride, padding, ceil_mode,
                              count_include_pad, divisor_override, nd=nd, adaptive=False)

    def adaptive_avg_pool(input, output_size):
        return _pool_like(f"adaptive_avg_pool{nd}d", AvgPoolFunction, input, output_size, nd=nd, adaptive=True)

    def adaptive_max_pool(input, output_size, return_indices=False):
        output, indices = _pool_like(f"adaptive_max_pool{nd}d", MaxPoolFunction, input, output_size, nd=nd,
                                     adaptive=True)
        return (output, indices) if return_indices else output

    same = "``torch.nn.functional.{}`` on gpuconv's kernels{}."
    return (
        _named(conv, f"conv{nd}d", same.format(f"conv{nd}d", f"; ``padding_mode`` as ``nn.Conv{nd}d``'s")),
        _named(conv_transpose, f"conv_transpose{nd}d", same.format(f"conv_transpose{nd}d", "")),
        _named(max_pool, f"max_pool{nd}d", same.format(f"max_pool{nd}d", "; indices are int64, flat per (n, c)")),
        _named(avg_pool, f"avg_pool{nd}d", same.format(f"avg_pool{nd}d", "")),
        _named(adaptive_avg_pool, f"adaptive_avg_pool{nd}d", same.format(f"adaptive_avg_pool{nd}d", "")),
        _named(adaptive_max_pool, f"adaptive_max_pool{nd}d", same.format(f"adaptive_max_pool{nd}d", "")),
    )


conv1d, conv_transpose1d, max_pool1d, avg_pool1d, adaptive_avg_pool1d, adaptive_max_pool1d = _make(1)
conv2d, conv_transpose2d, max_pool2d, avg_pool2d, adaptive_avg_pool2d, adaptive_max_pool2d = _make(2)
conv3d, conv_transpose3d, max_pool3d, avg_pool3d, adaptive_avg_pool3d, adaptive_max_pool3d = _make(3)
