"""PyTorch as an oracle: each function takes NumPy arrays and gpuconv's arguments, runs
``torch.nn.functional`` (gradients through autograd) and returns NumPy arrays.

Callers skip when torch is missing (``pytest.importorskip("torch")``). ``device`` is "cpu" or "cuda";
computation runs in the arrays' dtype, so pass float64 arrays for a reference-grade answer. TF32 and
reduced-precision float16 reductions are turned off so CUDA results are what gpuconv promises.
"""

from __future__ import annotations

import ml_dtypes
import numpy
import torch
import torch.nn.functional as F

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False  # float16 sums in float32, as gpuconv


_BFLOAT16 = numpy.dtype(ml_dtypes.bfloat16)


def _t(a, device, grad=False):
    if a is None:
        return None
    a = numpy.ascontiguousarray(a)
    if a.dtype == _BFLOAT16:  # torch.from_numpy knows no ml_dtypes: cross as int16 bits
        t = torch.from_numpy(a.view(numpy.int16)).view(torch.bfloat16).to(device)
    else:
        t = torch.from_numpy(a).to(device)
    return t.requires_grad_(grad)


def _np(t):
    if t is None:
        return None
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(_BFLOAT16)
    return t.numpy()


def _pad_and_conv_args(padding, padding_mode, R, S, dilation):
    """torch's conv2d takes no 'full' and no padding_mode: turn both into an explicit F.pad."""
    from reference import conv_pads

    pads = conv_pads(padding, (R, S), dilation)
    if padding_mode == "zeros" and pads[0] == pads[1] and pads[2] == pads[3]:
        return None, (pads[0], pads[2])
    mode = "constant" if padding_mode == "zeros" else padding_mode
    return (pads[2], pads[3], pads[0], pads[1], mode), 0


def _conv2d(x, w, b, stride, padding, dilation, groups, padding_mode):
    explicit, pad = _pad_and_conv_args(padding, padding_mode, w.shape[2], w.shape[3], dilation)
    if explicit is not None:
        x = F.pad(x, explicit[:4], mode=explicit[4])
    return F.conv2d(x, w, b, stride, pad, dilation, groups)


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", device="cpu"):
    return _np(_conv2d(_t(x, device), _t(w, device), _t(b, device), stride, padding, dilation, groups,
                       padding_mode))


def conv2d_backward(gy, x, w, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", device="cpu"):
    xt, wt = _t(x, device, True), _t(w, device, True)
    bt = torch.zeros(w.shape[0], dtype=wt.dtype, device=device, requires_grad=True)
    _conv2d(xt, wt, bt, stride, padding, dilation, groups, padding_mode).backward(_t(gy, device))
    return _np(xt.grad), _np(wt.grad), _np(bt.grad)


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, device="cpu"):
    return _np(F.conv_transpose2d(_t(x, device), _t(w, device), _t(b, device), stride, padding, output_padding,
                                  groups, dilation))


def conv_transpose2d_backward(gy, x, w, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                              device="cpu"):
    xt, wt = _t(x, device, True), _t(w, device, True)
    bt = torch.zeros(w.shape[1] * groups, dtype=wt.dtype, device=device, requires_grad=True)
    F.conv_transpose2d(xt, wt, bt, stride, padding, output_padding, groups, dilation).backward(_t(gy, device))
    return _np(xt.grad), _np(wt.grad), _np(bt.grad)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, device="cpu"):
    """(values, indices)."""
    y, i = F.max_pool2d(_t(x, device), kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)
    return _np(y), _np(i)


def max_pool2d_backward(gy, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, device="cpu"):
    """Gradient of max_pool2d at x (autograd picks the same indices as the forward)."""
    xt = _t(x, device, True)
    F.max_pool2d(xt, kernel_size, stride, padding, dilation, ceil_mode).backward(_t(gy, device))
    return _np(xt.grad)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, device="cpu"):
    return _np(F.avg_pool2d(_t(x, device), kernel_size, stride, padding, ceil_mode, count_include_pad,
                            divisor_override))


def avg_pool2d_backward(gy, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None, device="cpu"):
    dtype = _t(gy, "cpu").dtype
    xt = torch.zeros(tuple(input_shape), dtype=dtype, device=device, requires_grad=True)
    F.avg_pool2d(xt, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override).backward(
        _t(gy, device))
    return _np(xt.grad)


def cuda_available() -> bool:
    return torch.cuda.is_available()
