"""The public pooling functions: max, average and adaptive pooling in 1, 2 and 3 dimensions, with their
backward functions. Each checks its call (``_params``), then runs it on the array's backend: 2-d directly,
1-d as 2-d of height 1 (views), 3-d composed from 2-d (``_volume``), adaptive pooling as ordinary pooling
where its windows are regular, as a reduction where they are global, else with ``_adaptive``'s gathers.

Every max-pool backward is the 2-d one over the flattened plane or volume (indices are flat positions):
a gather, so all of them, adaptive ones included, are deterministic.
"""

from __future__ import annotations

import numpy

from . import _adaptive, _backend, _params, _volume
from ._functional import _as_plane, _batch4, _from_plane, _raw_backend, _unbatch, _zeros


def _max_pool(op, nd, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    return_indices = _params._bool(op, "return_indices", return_indices)
    c = _params.pool_call(op, nd, input, kernel_size, stride, padding, dilation, ceil_mode, max_pool=True)
    s = c.spec
    if s.N == 0:
        y, idx = _zeros(input, s.output_shape), _zeros(input, s.output_shape, numpy.int64)
    else:
        x = _batch4(input, c.unbatched)
        if nd == 3:
            y, idx = _volume.max_pool3d_fprop(_raw_backend(c.kind), s, x)
            y = _volume.cast(y, input.dtype)
        else:  # 1-d: (N, C, L) as (N, C, 1, L), views
            y, idx = _backend.get(c.kind, input.dtype).max_pool2d_fprop(c.geometry, _as_plane(x, nd))
            y, idx = _from_plane(y, nd), _from_plane(idx, nd)
    y, idx = _unbatch(y, c.unbatched), _unbatch(idx, c.unbatched)
    return (y, idx) if return_indices else y


def _max_pool_backward(op, nd, grad_output, indices, input_shape):
    c = _params.max_pool_backward_call(op, nd, grad_output, indices, input_shape)
    N, C = c.input_shape[:2]
    if N == 0 or grad_output.size == 0:
        return _unbatch(_zeros(grad_output, c.input_shape), c.unbatched)
    return _unbatch(_flat_max_bprop(c.kind, grad_output, indices, c.input_shape, c.unbatched), c.unbatched)


def _flat_max_bprop(kind, grad_output, indices, input_shape, unbatched):
    """The 2-d max-pool backward; a 1-d line or 3-d volume goes flattened to one row of a plane."""
    N, C = input_shape[:2]
    be = _backend.get(kind, grad_output.dtype)
    if len(input_shape) == 4:
        return be.max_pool2d_bprop(_batch4(grad_output, unbatched), _batch4(indices, unbatched), input_shape)
    gy = _batch4(grad_output, unbatched).reshape(N, C, 1, -1)
    idx = _batch4(indices, unbatched).reshape(N, C, 1, -1)
    plane = 1
    for s in input_shape[2:]:
        plane *= s
    return be.max_pool2d_bprop(gy, idx, (N, C, 1, plane)).reshape(input_shape)


def _avg_pool(op, nd, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    c = _params.pool_call(op, nd, input, kernel_size, stride, padding, 1, ceil_mode, max_pool=False,
                          count_include_pad=count_include_pad, divisor_override=divisor_override)
    s = c.spec
    if s.N == 0:
        return _unbatch(_zeros(input, s.output_shape), c.unbatched)
    x = _batch4(input, c.unbatched)
    if nd == 3:
        y = _volume.avg_pool3d_fprop(_raw_backend(c.kind), s, x)
        return _unbatch(_volume.cast(y, input.dtype), c.unbatched)
    y = _backend.get(c.kind, input.dtype).avg_pool2d_fprop(c.geometry, _as_plane(x, nd))
    return _unbatch(_from_plane(y, nd), c.unbatched)


def _avg_pool_backward(op, nd, grad_output, input_shape, kernel_size, stride, padding, ceil_mode,
                       count_include_pad, divisor_override):
    c = _params.pool_call(op, nd, None, kernel_size, stride, padding, 1, ceil_mode, max_pool=False,
                          count_include_pad=count_include_pad, divisor_override=divisor_override,
                          grad_output=grad_output, input_shape=input_shape, backward=True)
    s = c.spec
    if s.N == 0:
        return _unbatch(_zeros(grad_output, s.input_shape), c.unbatched)
    gy = _batch4(grad_output, c.unbatched)
    if nd == 3:
        gx = _volume.avg_pool3d_bprop(_raw_backend(c.kind), s, gy)
        return _unbatch(_volume.cast(gx, grad_output.dtype), c.unbatched)
    gx = _backend.get(c.kind, grad_output.dtype).avg_pool2d_bprop(c.geometry, _as_plane(gy, nd))
    return _unbatch(_from_plane(gx, nd), c.unbatched)


# ------------------------------------------------------------------------------------- adaptive


def _regular(size: tuple, out: tuple):
    """The kernel (= stride) of the ordinary pooling that adaptive pooling from size to out is, or None."""
    if all(o > 0 and s % o == 0 for s, o in zip(size, out)):
        return tuple(s // o for s, o in zip(size, out))
    return None


def _adaptive_avg(op, nd, input, output_size):
    c = _params.adaptive_pool_call(op, nd, input, output_size)
    size, out = c.input_shape[2:], c.out
    if c.input_shape[0] == 0 or 0 in out:
        return _unbatch(_zeros(input, c.output_shape), c.unbatched)
    x = _batch4(input, c.unbatched)
    kernel = _regular(size, out)
    if all(o == 1 for o in out):
        y = _adaptive.global_avg(x)
    elif kernel is not None:
        y = _avg_pool(op, nd, x, kernel, kernel, 0, False, True, None)
    else:
        y = _adaptive.avg_fprop(x, out)
    return _unbatch(y, c.unbatched)


def _adaptive_avg_backward(op, nd, grad_output, input_shape):
    c = _params.adaptive_pool_backward_call(op, nd, grad_output, input_shape)
    full, out = c.input_shape, c.out
    if full[0] == 0 or grad_output.size == 0:
        return _unbatch(_zeros(grad_output, full), c.unbatched)
    gy = _batch4(grad_output, c.unbatched)
    kernel = _regular(full[2:], out)
    if all(o == 1 for o in out):
        gx = _adaptive.global_avg_bprop(gy, full)
    elif kernel is not None:
        gx = _avg_pool_backward(op, nd, gy, full, kernel, kernel, 0, False, True, None)
    else:
        gx = _adaptive.avg_bprop(gy, full)
    return _unbatch(gx, c.unbatched)


def _adaptive_max(op, nd, input, output_size, return_indices):
    return_indices = _params._bool(op, "return_indices", return_indices)
    c = _params.adaptive_pool_call(op, nd, input, output_size)
    size, out = c.input_shape[2:], c.out
    if c.input_shape[0] == 0 or 0 in out:
        y, idx = _zeros(input, c.output_shape), _zeros(input, c.output_shape, numpy.int64)
    else:
        x = _batch4(input, c.unbatched)
        kernel = _regular(size, out)
        if all(o == 1 for o in out):
            y, idx = _adaptive.global_max(x)
        elif kernel is not None:
            y, idx = _max_pool(op, nd, x, kernel, kernel, 0, 1, False, True)
        else:
            y, idx = _adaptive.max_fprop(x, out)
    y, idx = _unbatch(y, c.unbatched), _unbatch(idx, c.unbatched)
    return (y, idx) if return_indices else y


# ---------------------------------------------------------------------------------- public functions

_SHAPES = {1: "(N, C, L) or (C, L)", 2: "(N, C, H, W) or (C, H, W)", 3: "(N, C, D, H, W) or (C, D, H, W)"}
_FLAT = {1: "l", 2: "h*W + w", 3: "d*H*W + h*W + w"}


def _public(fn, name, doc, nd):
    fn.__name__ = fn.__qualname__ = name
    fn.__module__ = "gpuconv"
    fn.__doc__ = doc.format(nd=nd, shapes=_SHAPES[nd], flat=_FLAT[nd])
    return fn


def _make_pools(nd):
    op_max, op_max_backward = f"max_pool{nd}d", f"max_pool{nd}d_backward"
    op_avg, op_avg_backward = f"avg_pool{nd}d", f"avg_pool{nd}d_backward"

    def max_pool(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        return _max_pool(op_max, nd, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)

    def max_pool_backward(grad_output, indices, input_shape):
        return _max_pool_backward(op_max_backward, nd, grad_output, indices, input_shape)

    if nd == 1:  # PyTorch's avg_pool1d has no divisor_override
        def avg_pool(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
            return _avg_pool("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                             None)

        def avg_pool_backward(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                              count_include_pad=True):
            return _avg_pool_backward("avg_pool1d_backward", 1, grad_output, input_shape, kernel_size, stride,
                                      padding, ceil_mode, count_include_pad, None)
    else:
        def avg_pool(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                     divisor_override=None):
            return _avg_pool(op_avg, nd, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                             divisor_override)

        def avg_pool_backward(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                              count_include_pad=True, divisor_override=None):
            return _avg_pool_backward(op_avg_backward, nd, grad_output, input_shape, kernel_size, stride, padding,
                                      ceil_mode, count_include_pad, divisor_override)

    def adaptive_avg_pool(input, output_size):
        return _adaptive_avg(f"adaptive_avg_pool{nd}d", nd, input, output_size)

    def adaptive_avg_pool_backward(grad_output, input_shape):
        return _adaptive_avg_backward(f"adaptive_avg_pool{nd}d_backward", nd, grad_output, input_shape)

    def adaptive_max_pool(input, output_size, return_indices=False):
        return _adaptive_max(f"adaptive_max_pool{nd}d", nd, input, output_size, return_indices)

    def adaptive_max_pool_backward(grad_output, indices, input_shape):
        return _max_pool_backward(f"adaptive_max_pool{nd}d_backward", nd, grad_output, indices, input_shape)

    return (
        _public(max_pool, f"max_pool{nd}d", """{nd}-D max pooling over a {shapes} input, as
    ``torch.nn.functional.max_pool{nd}d``. Padding counts as -inf; a NaN in a window wins (the last NaN in
    window order gives the index, as PyTorch). With return_indices, also returns int64 indices, flat
    ({flat}) within each (n, c) {nd}-D input.""", nd),
        _public(max_pool_backward, f"max_pool{nd}d_backward", """Gradient of :func:`max_pool{nd}d` with
    respect to its input: each grad_output element is added to the input position its index names.""", nd),
        _public(avg_pool, f"avg_pool{nd}d", """{nd}-D average pooling over a {shapes} input, as
    ``torch.nn.functional.avg_pool{nd}d``.""", nd),
        _public(avg_pool_backward, f"avg_pool{nd}d_backward", """Gradient of :func:`avg_pool{nd}d` with
    respect to its input. Returns an array of input_shape.""", nd),
        _public(adaptive_avg_pool, f"adaptive_avg_pool{nd}d", """{nd}-D adaptive average pooling, as
    ``torch.nn.functional.adaptive_avg_pool{nd}d``: output i along a dimension of size L pooled to O averages
    input [floor(i*L/O), ceil((i+1)*L/O)). output_size is an int or a tuple of {nd} (None keeps a size).""", nd),
        _public(adaptive_avg_pool_backward, f"adaptive_avg_pool{nd}d_backward", """Gradient of
    :func:`adaptive_avg_pool{nd}d` with respect to its input (the output size is grad_output's).""", nd),
        _public(adaptive_max_pool, f"adaptive_max_pool{nd}d", """{nd}-D adaptive max pooling, as
    ``torch.nn.functional.adaptive_max_pool{nd}d`` (PyTorch's windows; NaN and index rules as max pooling).
    With return_indices, also returns int64 indices, flat ({flat}) within each (n, c) input.""", nd),
        _public(adaptive_max_pool_backward, f"adaptive_max_pool{nd}d_backward", """Gradient of
    :func:`adaptive_max_pool{nd}d` with respect to its input, from the indices it returned.""", nd),
    )


(max_pool1d, max_pool1d_backward, avg_pool1d, avg_pool1d_backward, adaptive_avg_pool1d,
 adaptive_avg_pool1d_backward, adaptive_max_pool1d, adaptive_max_pool1d_backward) = _make_pools(1)
(max_pool2d, max_pool2d_backward, avg_pool2d, avg_pool2d_backward, adaptive_avg_pool2d,
 adaptive_avg_pool2d_backward, adaptive_max_pool2d, adaptive_max_pool2d_backward) = _make_pools(2)
(max_pool3d, max_pool3d_backward, avg_pool3d, avg_pool3d_backward, adaptive_avg_pool3d,
 adaptive_avg_pool3d_backward, adaptive_max_pool3d, adaptive_max_pool3d_backward) = _make_pools(3)
