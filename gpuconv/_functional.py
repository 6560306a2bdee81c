"""The public functions: check the call (``_params``), run it on the array's backend, shape the result.

What lives here is the composition every backend shares: unbatched inputs, empty batches, explicit padding
for padding_mode, and transposed convolution as a dgrad.
"""

from __future__ import annotations

import numpy

from . import _backend, _params


def _batch4(a, unbatched):
    return a[None] if unbatched else a


def _unbatch(a, unbatched):
    return a[0] if (unbatched and a is not None) else a


def _zeros(like, shape, dtype=None):
    """A zero array of the same kind (NumPy / CuPy, device) as ``like``."""
    if isinstance(like, numpy.ndarray):
        return numpy.zeros(shape, dtype=numpy.dtype(dtype or like.dtype).newbyteorder("="))  # '>f4' in: native out
    import cupy

    with like.device:
        return cupy.zeros(shape, dtype=dtype or like.dtype)


def _zero_grads(mask, input, weight, n_bias):
    """The gradients of a convolution with nothing to sum (an empty batch or output): zeros, or None where
    output_mask turns one off."""
    shapes = (tuple(input.shape), tuple(weight.shape), (n_bias,))
    return tuple(_zeros(input, s) if m else None for m, s in zip(mask, shapes))


# ------------------------------------------------------------------------------------------- conv2d


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros"):
    """2-D convolution (cross-correlation) over an (N, C, H, W) or (C, H, W) input, as
    ``torch.nn.functional.conv2d`` (https://pytorch.org/docs/stable/generated/torch.nn.functional.conv2d.html).

    weight is (out_channels, in_channels/groups, kH, kW); bias is (out_channels,) or None. padding is an
    int, a pair, 'valid', 'same' (stride 1 only; an odd total puts the extra on the bottom/right) or 'full'
    (dilation*(k-1) on every side). padding_mode ('zeros', 'reflect', 'replicate', 'circular') is
    ``nn.Conv2d``'s, an extension of the functional API. Returns (N, out_channels, P, Q).
    """
    op = "conv2d"
    c = _params.conv2d_call(op, input, weight, bias, stride, padding, dilation, groups, padding_mode)
    g = c.geometry
    if g.N == 0:
        return _unbatch(_zeros(input, g.output_shape), c.unbatched)
    be = _backend.get(c.kind)
    x = _batch4(input, c.unbatched)
    if c.padding_mode != "zeros" and any(c.mode_pads):
        x = be.pad2d(x, c.mode_pads, c.padding_mode)
    return _unbatch(be.conv2d_fprop(g, x, weight, bias), c.unbatched)


def conv2d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1, *,
                    padding_mode="zeros", output_mask=(True, True, True)):
    """Gradients of :func:`conv2d` with respect to input, weight and bias, given grad_output (the gradient
    of the loss with respect to conv2d's output). Returns (grad_input, grad_weight, grad_bias); an entry
    that output_mask turns off is None. grad_bias is grad_output summed over N, H, W."""
    op = "conv2d_backward"
    mask = _params.check_output_mask(op, output_mask)
    c = _params.conv2d_call(op, input, weight, None, stride, padding, dilation, groups, padding_mode,
                            grad_output=grad_output, backward=True)
    g = c.geometry
    if g.empty:
        return _zero_grads(mask, input, weight, g.K)
    gx = gw = gb = None
    be = _backend.get(c.kind)
    x = _batch4(input, c.unbatched)
    gy = _batch4(grad_output, c.unbatched)
    padded = c.padding_mode != "zeros" and any(c.mode_pads)
    if mask[0]:
        gx = be.conv2d_dgrad(g, gy, weight)
        if padded:
            gx = be.pad2d_backward(gx, c.mode_pads, c.padding_mode)
        gx = _unbatch(gx, c.unbatched)
    if mask[1]:
        xk = be.pad2d(x, c.mode_pads, c.padding_mode) if padded else x
        gw = be.conv2d_wgrad(g, xk, gy)
    if mask[2]:
        gb = be.conv2d_bias_grad(gy)
    return gx, gw, gb


# --------------------------------------------------------------------------------- conv_transpose2d


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """2-D transposed convolution ("deconvolution"), as ``torch.nn.functional.conv_transpose2d``
    (https://pytorch.org/docs/stable/generated/torch.nn.functional.conv_transpose2d.html): the gradient of
    conv2d with respect to its input. weight is (in_channels, out_channels/groups, kH, kW). Output size
    (H - 1)*stride - 2*padding + dilation*(kH - 1) + output_padding + 1 (W alike)."""
    op = "conv_transpose2d"
    c = _params.conv_transpose2d_call(op, input, weight, bias, stride, padding, output_padding, groups, dilation)
    g = c.geometry
    if g.empty:
        return _unbatch(_zeros(input, g.input_shape), c.unbatched)  # an empty batch or a 0-wide output
    be = _backend.get(c.kind)
    return _unbatch(be.conv2d_dgrad(g, _batch4(input, c.unbatched), weight, bias), c.unbatched)


def conv_transpose2d_backward(grad_output, input, weight, stride=1, padding=0, output_padding=0, groups=1,
                              dilation=1, *, output_mask=(True, True, True)):
    """Gradients of :func:`conv_transpose2d` with respect to input, weight and bias. Returns (grad_input,
    grad_weight, grad_bias); an entry that output_mask turns off is None."""
    op = "conv_transpose2d_backward"
    mask = _params.check_output_mask(op, output_mask)
    c = _params.conv_transpose2d_call(op, input, weight, None, stride, padding, output_padding, groups,
                                      dilation, grad_output=grad_output, backward=True)
    g = c.geometry
    if g.empty:
        return _zero_grads(mask, input, weight, g.C)
    gx = gw = gb = None
    be = _backend.get(c.kind)
    x = _batch4(input, c.unbatched)  # plays the conv's output (N, K, P, Q)
    gy = _batch4(grad_output, c.unbatched)  # plays the conv's input (N, C, H, W)
    if mask[0]:
        gx = _unbatch(be.conv2d_fprop(g, gy, weight), c.unbatched)
    if mask[1]:
        gw = be.conv2d_wgrad(g, gy, x)
    if mask[2]:
        gb = be.conv2d_bias_grad(gy)
    return gx, gw, gb


# ------------------------------------------------------------------------------------------ pooling


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """2-D max pooling, as ``torch.nn.functional.max_pool2d``
    (https://pytorch.org/docs/stable/generated/torch.nn.functional.max_pool2d.html). Padding counts as
    -inf; a NaN in a window wins (the last NaN in row-major window order gives the index, as PyTorch).
    With return_indices, also returns int64 indices, flat h*W + w within each (n, c) plane."""
    op = "max_pool2d"
    return_indices = _params._bool(op, "return_indices", return_indices)
    c = _params.pool2d_call(op, input, kernel_size, stride, padding, dilation, ceil_mode, max_pool=True)
    g = c.geometry
    if g.N == 0:
        y, idx = _zeros(input, g.output_shape), _zeros(input, g.output_shape, numpy.int64)
    else:
        y, idx = _backend.get(c.kind).max_pool2d_fprop(g, _batch4(input, c.unbatched))
    y, idx = _unbatch(y, c.unbatched), _unbatch(idx, c.unbatched)
    return (y, idx) if return_indices else y


def max_pool2d_backward(grad_output, indices, input_shape):
    """Gradient of :func:`max_pool2d` with respect to its input: each grad_output element is added to the
    input position its index names (flat within its (n, c) plane). Returns an array of input_shape."""
    op = "max_pool2d_backward"
    c = _params.max_pool2d_backward_call(op, grad_output, indices, input_shape)
    N = c.input_shape[0]
    if N == 0 or grad_output.size == 0:
        out = _zeros(grad_output, c.input_shape)
    else:
        out = _backend.get(c.kind).max_pool2d_bprop(
            _batch4(grad_output, c.unbatched), _batch4(indices, c.unbatched), c.input_shape)
    return _unbatch(out, c.unbatched)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """2-D average pooling, as ``torch.nn.functional.avg_pool2d``
    (https://pytorch.org/docs/stable/generated/torch.nn.functional.avg_pool2d.html)."""
    op = "avg_pool2d"
    c = _params.pool2d_call(op, input, kernel_size, stride, padding, 1, ceil_mode, max_pool=False,
                            count_include_pad=count_include_pad, divisor_override=divisor_override)
    g = c.geometry
    if g.N == 0:
        return _unbatch(_zeros(input, g.output_shape), c.unbatched)
    return _unbatch(_backend.get(c.kind).avg_pool2d_fprop(g, _batch4(input, c.unbatched)), c.unbatched)


def avg_pool2d_backward(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    """Gradient of :func:`avg_pool2d` with respect to its input. Returns an array of input_shape."""
    op = "avg_pool2d_backward"
    c = _params.pool2d_call(op, None, kernel_size, stride, padding, 1, ceil_mode, max_pool=False,
                            count_include_pad=count_include_pad, divisor_override=divisor_override,
                            grad_output=grad_output, input_shape=input_shape, backward=True)
    g = c.geometry
    if g.N == 0:
        return _unbatch(_zeros(grad_output, g.input_shape), c.unbatched)
    return _unbatch(_backend.get(c.kind).avg_pool2d_bprop(g, _batch4(grad_output, c.unbatched)), c.unbatched)
