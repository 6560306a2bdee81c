"""The public functions: check the call (``_params``), run it on the array's backend, shape the result.

What lives here is the composition every backend shares: unbatched inputs, empty batches, explicit padding
for padding_mode, transposed convolution as a dgrad, 1-d operations as 2-d ones of height 1 (views, no
copies) and 3-d ones composed from 2-d ones (``_volume``). Pooling's public functions are in ``_pooling``.
"""

from __future__ import annotations

import numpy

from . import _backend, _params, _volume


def _batch4(a, unbatched):
    """The batched view of an input (a batch of one for an unbatched one; any rank)."""
    return a[None] if unbatched else a


def _as_plane(a, nd):
    """A 1-d array (N, C, L) (or weight (K, C, k)) as the 2-d one of height 1 it is: a view."""
    return a[:, :, None] if nd == 1 else a


def _from_plane(a, nd):
    return a[:, :, 0] if (nd == 1 and a is not None) else a


def _pads2d(mode_pads, nd):
    """The (top, bottom, left, right) of a 1-d or 2-d call's explicit padding."""
    return (0, 0) + tuple(mode_pads) if nd == 1 else tuple(mode_pads)


def _bias_grad_3d(kind, gy):
    """grad_bias of a 3-d call: the backend's 2-d bias gradient over the (depth x height) rows as one axis."""
    N, K, Z, P, Q = gy.shape
    return _backend.get(kind, gy.dtype).conv2d_bias_grad(gy.reshape(N, K, Z * P, Q))


def _raw_backend(kind):
    """The backend itself, for the compositions that convert 16-bit arrays to float32 on their own
    (``_volume``): through the proxy, their float32 intermediates would be rounded to bfloat16."""
    return _backend.get(kind)


def _unbatch(a, unbatched):
    return a[0] if (unbatched and a is not None) else a


def _zeros(like, shape, dtype=None):
    """A zero array of the same kind (NumPy / CuPy, device) as ``like``."""
    if isinstance(like, numpy.ndarray):
        return numpy.zeros(shape, dtype=numpy.dtype(dtype or like.dtype).newbyteorder("="))  # '>f4' in: native out
    from ._cuda import _runtime  # CuPy, through the CUDA path's one seam

    with like.device:
        return _runtime.xp().zeros(shape, dtype=dtype or like.dtype)


def _zero_grads(mask, input, weight, n_bias):
    """The gradients of a convolution with nothing to sum (an empty batch or output): zeros, or None where
    output_mask turns one off."""
    shapes = (tuple(input.shape), tuple(weight.shape), (n_bias,))
    return tuple(_zeros(input, s) if m else None for m, s in zip(mask, shapes))


# ---------------------------------------------------------------------------------------- convolution


def _conv(op, nd, input, weight, bias, stride, padding, dilation, groups, padding_mode):
    c = _params.conv_call(op, nd, input, weight, bias, stride, padding, dilation, groups, padding_mode)
    s = c.spec
    if s.N == 0:
        return _unbatch(_zeros(input, s.output_shape), c.unbatched)
    x = _batch4(input, c.unbatched)
    if nd == 3:
        be = _raw_backend(c.kind)
        x = _volume.to_compute(x)
        if c.padded:
            x = _volume.pad3d(be, x, c.mode_pads, c.padding_mode)
        return _unbatch(_volume.cast(_volume.conv3d_fprop(be, s, x, weight, bias), input.dtype), c.unbatched)
    be = _backend.get(c.kind, input.dtype)
    x, weight = _as_plane(x, nd), _as_plane(weight, nd)
    if c.padded:
        x = be.pad2d(x, _pads2d(c.mode_pads, nd), c.padding_mode)
    y = be.conv2d_fprop(c.geometry, x, weight, bias)
    return _unbatch(_from_plane(y, nd), c.unbatched)


def _conv_backward(op, nd, grad_output, input, weight, stride, padding, dilation, groups, padding_mode,
                   output_mask):
    mask = _params.check_output_mask(op, output_mask)
    c = _params.conv_call(op, nd, input, weight, None, stride, padding, dilation, groups, padding_mode,
                          grad_output=grad_output, backward=True)
    s = c.spec
    if s.empty:
        return _zero_grads(mask, input, weight, s.K)
    gx = gw = gb = None
    x = _batch4(input, c.unbatched)
    gy = _batch4(grad_output, c.unbatched)
    if nd == 3:
        be, dtype = _raw_backend(c.kind), input.dtype
        if mask[0]:
            gx = _volume.conv3d_dgrad(be, s, gy, weight)
            if c.padded:
                gx = _volume.pad3d_backward(be, gx, c.mode_pads, c.padding_mode)
            gx = _unbatch(_volume.cast(gx, dtype), c.unbatched)
        if mask[1]:
            xk = _volume.pad3d(be, _volume.to_compute(x), c.mode_pads, c.padding_mode) if c.padded else x
            gw = _volume.cast(_volume.conv3d_wgrad(be, s, xk, gy), dtype)
        if mask[2]:
            gb = _bias_grad_3d(c.kind, gy)
        return gx, gw, gb
    be = _backend.get(c.kind, input.dtype)
    x, gy, w, g = _as_plane(x, nd), _as_plane(gy, nd), _as_plane(weight, nd), c.geometry
    pads = _pads2d(c.mode_pads, nd)
    if mask[0]:
        gx = be.conv2d_dgrad(g, gy, w)
        if c.padded:
            gx = be.pad2d_backward(gx, pads, c.padding_mode)
        gx = _unbatch(_from_plane(gx, nd), c.unbatched)
    if mask[1]:
        xk = be.pad2d(x, pads, c.padding_mode) if c.padded else x
        gw = _from_plane(be.conv2d_wgrad(g, xk, gy), nd)
    if mask[2]:
        gb = be.conv2d_bias_grad(gy)
    return gx, gw, gb


def _conv_transpose(op, nd, input, weight, bias, stride, padding, output_padding, groups, dilation):
    c = _params.conv_transpose_call(op, nd, input, weight, bias, stride, padding, output_padding, groups,
                                    dilation)
    s = c.spec
    if s.empty:
        return _unbatch(_zeros(input, s.input_shape), c.unbatched)  # an empty batch or a 0-wide output
    x = _batch4(input, c.unbatched)
    if nd == 3:
        y = _volume.conv3d_dgrad(_raw_backend(c.kind), s, x, weight, bias)
        return _unbatch(_volume.cast(y, input.dtype), c.unbatched)
    y = _backend.get(c.kind, input.dtype).conv2d_dgrad(c.geometry, _as_plane(x, nd), _as_plane(weight, nd), bias)
    return _unbatch(_from_plane(y, nd), c.unbatched)


def _conv_transpose_backward(op, nd, grad_output, input, weight, stride, padding, output_padding, groups,
                             dilation, output_mask):
    mask = _params.check_output_mask(op, output_mask)
    c = _params.conv_transpose_call(op, nd, input, weight, None, stride, padding, output_padding, groups,
                                    dilation, grad_output=grad_output, backward=True)
    s = c.spec
    if s.empty:
        return _zero_grads(mask, input, weight, s.C)
    gx = gw = gb = None
    x = _batch4(input, c.unbatched)  # plays the conv's output (N, K, *out)
    gy = _batch4(grad_output, c.unbatched)  # plays the conv's input (N, C, *size)
    if nd == 3:
        be, dtype = _raw_backend(c.kind), input.dtype
        if mask[0]:
            gx = _unbatch(_volume.cast(_volume.conv3d_fprop(be, s, gy, weight), dtype), c.unbatched)
        if mask[1]:
            gw = _volume.cast(_volume.conv3d_wgrad(be, s, gy, x), dtype)
        if mask[2]:
            gb = _bias_grad_3d(c.kind, gy)
        return gx, gw, gb
    be = _backend.get(c.kind, input.dtype)
    x, gy, w, g = _as_plane(x, nd), _as_plane(gy, nd), _as_plane(weight, nd), c.geometry
    if mask[0]:
        gx = _unbatch(_from_plane(be.conv2d_fprop(g, gy, w), nd), c.unbatched)
    if mask[1]:
        gw = _from_plane(be.conv2d_wgrad(g, gy, x), nd)
    if mask[2]:
        gb = be.conv2d_bias_grad(gy)
    return gx, gw, gb


_CONV_DOC = """{nd}-D convolution (cross-correlation) over an {batched} or {unbatched} input, as
    ``torch.nn.functional.conv{nd}d`` (https://pytorch.org/docs/stable/generated/torch.nn.functional.conv{nd}d.html).

    weight is (out_channels, in_channels/groups, {kernel}); bias is (out_channels,) or None. stride,
    dilation and an int padding take an int or a tuple of {nd}; padding also takes 'valid', 'same' (stride 1
    only; an odd total puts the extra at the end) or 'full' (dilation*(k-1) on every side). padding_mode
    ('zeros', 'reflect', 'replicate', 'circular') is ``nn.Conv{nd}d``'s, an extension of the functional API.
    Returns (N, out_channels, *output size).{extra}
    """

_CONV_BACKWARD_DOC = """Gradients of :func:`conv{nd}d` with respect to input, weight and bias, given
    grad_output (the gradient of the loss with respect to conv{nd}d's output). Returns (grad_input,
    grad_weight, grad_bias); an entry that output_mask turns off is None. grad_bias is grad_output summed over
    every axis but the channel one."""

_CONV_TRANSPOSE_DOC = """{nd}-D transposed convolution ("deconvolution"), as
    ``torch.nn.functional.conv_transpose{nd}d``
    (https://pytorch.org/docs/stable/generated/torch.nn.functional.conv_transpose{nd}d.html): the gradient of
    conv{nd}d with respect to its input. weight is (in_channels, out_channels/groups, {kernel}). Output size
    along each dimension: (L - 1)*stride - 2*padding + dilation*(k - 1) + output_padding + 1."""

_CONV_TRANSPOSE_BACKWARD_DOC = """Gradients of :func:`conv_transpose{nd}d` with respect to input, weight and
    bias. Returns (grad_input, grad_weight, grad_bias); an entry that output_mask turns off is None."""

_SHAPES = {1: ("(N, C, L)", "(C, L)", "kW"), 2: ("(N, C, H, W)", "(C, H, W)", "kH, kW"),
           3: ("(N, C, D, H, W)", "(C, D, H, W)", "kT, kH, kW")}
_EXTRA = {1: "", 2: "", 3: """

    On the CUDA path a 3-d convolution runs as 2-d convolutions of its depth slices stacked as channels
    (``gpuconv._volume``); float16 and bfloat16 compute in float32 there."""}


def _documented(fn, template, nd):
    batched, unbatched, kernel = _SHAPES[nd]
    fn.__doc__ = template.format(nd=nd, batched=batched, unbatched=unbatched, kernel=kernel, extra=_EXTRA[nd])
    return fn


def _make_conv(nd):
    names = (f"conv{nd}d", f"conv{nd}d_backward", f"conv_transpose{nd}d", f"conv_transpose{nd}d_backward")
    op_conv, op_conv_backward, op_transpose, op_transpose_backward = names

    def conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros"):
        return _conv(op_conv, nd, input, weight, bias, stride, padding, dilation, groups, padding_mode)

    def conv_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1, *,
                      padding_mode="zeros", output_mask=(True, True, True)):
        return _conv_backward(op_conv_backward, nd, grad_output, input, weight, stride, padding, dilation,
                              groups, padding_mode, output_mask)

    def conv_transpose(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
        return _conv_transpose(op_transpose, nd, input, weight, bias, stride, padding, output_padding, groups,
                               dilation)

    def conv_transpose_backward(grad_output, input, weight, stride=1, padding=0, output_padding=0, groups=1,
                                dilation=1, *, output_mask=(True, True, True)):
        return _conv_transpose_backward(op_transpose_backward, nd, grad_output, input, weight, stride, padding,
                                        output_padding, groups, dilation, output_mask)

    fns = (conv, conv_backward, conv_transpose, conv_transpose_backward)
    docs = (_CONV_DOC, _CONV_BACKWARD_DOC, _CONV_TRANSPOSE_DOC, _CONV_TRANSPOSE_BACKWARD_DOC)
    for fn, name, doc in zip(fns, names, docs):
        fn.__name__ = fn.__qualname__ = name
        fn.__module__ = "gpuconv"
        _documented(fn, doc, nd)
    return fns


conv1d, conv1d_backward, conv_transpose1d, conv_transpose1d_backward = _make_conv(1)
conv2d, conv2d_backward, conv_transpose2d, conv_transpose2d_backward = _make_conv(2)
conv3d, conv3d_backward, conv_transpose3d, conv_transpose3d_backward = _make_conv(3)
