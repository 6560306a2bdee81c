"""PyTorch as an oracle for the 1-d, 3-d and adaptive ops: each function takes NumPy arrays and gpuconv's
arguments, runs ``torch.nn.functional`` (gradients through autograd) and returns NumPy arrays. Inputs are
batched or unbatched as gpuconv's; the oracle batches them for torch and unbatches the results.

Callers skip when torch is missing (``pytest.importorskip("torch")``). Computation runs in the arrays' dtype
on ``device``; pass float64 arrays for a reference-grade answer.
"""

from __future__ import annotations

import warnings

import numpy
import torch
import torch.nn.functional as F

import torch_oracle  # noqa: F401  (its import turns off TF32 and reduced-precision reductions)
from reference_nd import conv_pads

# The oracle's tensors are tiny: with several intra-op threads on a shared machine one call took ~160 ms
# instead of ~0.3 ms (measured on the 2-core CI-like box). One thread for the whole test process.
torch.set_num_threads(1)

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONVT = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_AAVG = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}
_AMAX = {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d}


def _t(a, device, grad=False, batch=False):
    if a is None:
        return None
    t = torch.from_numpy(numpy.ascontiguousarray(a)).to(device)
    if batch:
        t = t[None]
    return t.detach().requires_grad_(grad) if grad else t


def _np(t, unbatch=False):
    if t is None:
        return None
    a = t.detach().cpu().numpy()
    return a[0] if unbatch else a


def _unbatched(x, nd):
    return x.ndim == nd + 1


def _conv(nd, x, w, b, stride, padding, dilation, groups, padding_mode):
    """torch's conv takes no 'full' and no padding_mode: both become an explicit F.pad. 'same' and 'valid'
    with zero padding go to torch as they are (its own rule for an odd total: the extra at the end)."""
    if padding_mode == "zeros" and padding in ("same", "valid"):
        with warnings.catch_warnings():  # torch warns that an even 'same' kernel copies the input
            warnings.simplefilter("ignore", UserWarning)
            return _CONV[nd](x, w, b, stride, padding, dilation, groups)
    pads = conv_pads(padding, tuple(w.shape[2:]), dilation)
    if padding_mode == "zeros" and all(lo == hi for lo, hi in pads):
        return _CONV[nd](x, w, b, stride, tuple(lo for lo, _ in pads), dilation, groups)
    flat = tuple(p for lohi in reversed(pads) for p in lohi)  # F.pad wants the last dimension first
    x = F.pad(x, flat, mode="constant" if padding_mode == "zeros" else padding_mode)
    return _CONV[nd](x, w, b, stride, 0, dilation, groups)


def conv(nd, x, w, b=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", device="cpu"):
    u = _unbatched(x, nd)
    return _np(_conv(nd, _t(x, device, batch=u), _t(w, device), _t(b, device), stride, padding, dilation, groups,
                     padding_mode), u)


def conv_backward(nd, gy, x, w, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", device="cpu"):
    u = _unbatched(x, nd)
    xt, wt = _t(x, device, True, u), _t(w, device, True)
    bt = torch.zeros(w.shape[0], dtype=wt.dtype, device=device, requires_grad=True)
    _conv(nd, xt, wt, bt, stride, padding, dilation, groups, padding_mode).backward(_t(gy, device, batch=u))
    return _np(xt.grad, u), _np(wt.grad), _np(bt.grad)


def conv_transpose(nd, x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, device="cpu"):
    u = _unbatched(x, nd)
    return _np(_CONVT[nd](_t(x, device, batch=u), _t(w, device), _t(b, device), stride, padding, output_padding,
                          groups, dilation), u)


def conv_transpose_backward(nd, gy, x, w, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                            device="cpu"):
    u = _unbatched(x, nd)
    xt, wt = _t(x, device, True, u), _t(w, device, True)
    bt = torch.zeros(w.shape[1] * groups, dtype=wt.dtype, device=device, requires_grad=True)
    _CONVT[nd](xt, wt, bt, stride, padding, output_padding, groups, dilation).backward(_t(gy, device, batch=u))
    return _np(xt.grad, u), _np(wt.grad), _np(bt.grad)


def max_pool(nd, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, device="cpu"):
    """(values, indices)."""
    u = _unbatched(x, nd)
    y, i = _MAX[nd](_t(x, device, batch=u), kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)
    return _np(y, u), _np(i, u)


def max_pool_backward(nd, gy, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, device="cpu"):
    """Gradient of max pooling at x (autograd routes by the forward's own indices)."""
    u = _unbatched(x, nd)
    xt = _t(x, device, True, u)
    _MAX[nd](xt, kernel_size, stride, padding, dilation, ceil_mode).backward(_t(gy, device, batch=u))
    return _np(xt.grad, u)


def _avg_args(nd, divisor_override):
    return () if nd == 1 else (divisor_override,)


def avg_pool(nd, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
             divisor_override=None, device="cpu"):
    u = _unbatched(x, nd)
    return _np(_AVG[nd](_t(x, device, batch=u), kernel_size, stride, padding, ceil_mode, count_include_pad,
                        *_avg_args(nd, divisor_override)), u)


def avg_pool_backward(nd, gy, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                      count_include_pad=True, divisor_override=None, device="cpu"):
    u = len(input_shape) == nd + 1
    dtype = torch.from_numpy(numpy.ascontiguousarray(gy)).dtype
    shape = ((1,) if u else ()) + tuple(input_shape)
    xt = torch.zeros(shape, dtype=dtype, device=device, requires_grad=True)
    _AVG[nd](xt, kernel_size, stride, padding, ceil_mode, count_include_pad,
             *_avg_args(nd, divisor_override)).backward(_t(gy, device, batch=u))
    return _np(xt.grad, u)


def _sizes(nd, x, output_size):
    """torch's 1-d adaptive pools take no None entry (gpuconv's do, as its 2-d and 3-d ones): resolve it."""
    from reference_nd import adaptive_output_size

    return adaptive_output_size(x.shape[-nd:], output_size) if nd == 1 else output_size


def adaptive_avg_pool(nd, x, output_size, device="cpu"):
    u = _unbatched(x, nd)
    return _np(_AAVG[nd](_t(x, device, batch=u), _sizes(nd, x, output_size)), u)


def adaptive_avg_pool_backward(nd, gy, x, output_size, device="cpu"):
    u = _unbatched(x, nd)
    xt = _t(x, device, True, u)
    _AAVG[nd](xt, _sizes(nd, x, output_size)).backward(_t(gy, device, batch=u))
    return _np(xt.grad, u)


def adaptive_max_pool(nd, x, output_size, device="cpu"):
    """(values, indices)."""
    u = _unbatched(x, nd)
    y, i = _AMAX[nd](_t(x, device, batch=u), _sizes(nd, x, output_size), return_indices=True)
    return _np(y, u), _np(i, u)


def adaptive_max_pool_backward(nd, gy, x, output_size, device="cpu"):
    u = _unbatched(x, nd)
    xt = _t(x, device, True, u)
    _AMAX[nd](xt, _sizes(nd, x, output_size)).backward(_t(gy, device, batch=u))
    return _np(xt.grad, u)


def cuda_available() -> bool:
    return torch.cuda.is_available()
