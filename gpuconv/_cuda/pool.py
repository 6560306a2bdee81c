"""Max and average pooling on cupy arrays: the launchers of ``kernels/pool.cu``.

The functions follow the backend interface in ``gpuconv._backend``: arguments are already checked, arrays are
4-D with any strides (copied to contiguous here, as RawKernel ignores strides), and nothing is modified.
Every kernel runs on the input's device and CuPy's current stream; outputs come from ``_alloc.empty`` and
every element of them is written by a kernel.

max_pool2d_bprop has no window geometry (the public API passes only indices), so it cannot gather over
windows as avg_pool2d_bprop does. It stays a deterministic gather this way, one chunk of planes at a time:

1. each output o of plane b gets the key ((b*H*W + indices[o]) * P*Q + j), j its position in the plane;
2. the keys are sorted; they are distinct, so the sorted order is unique (it does not rest on the sort
   being stable) and orders outputs by plane, then by the input element they chose, then by position;
3. each input element binary-searches its plane's P*Q sorted keys for its run and sums those gy in
   output order (float32 for float16).

No atomics: the same call gives the same bits every time, and the sum order is PyTorch's CPU order.
"""

from __future__ import annotations

import numpy

from ._alloc import empty
from ._launch import CTYPES as VALUE_CTYPES
from ._launch import THREADS_PER_BLOCK, grid_blocks, i64
from ._loader import get_function

SOURCE = "pool.cu"

# Keys of one backward chunk take 8 bytes per output (4 when they fit in int32), plus the sort's own
# buffers of about the same size: chunks hold at most this many outputs, unless one plane is larger.
MAX_KEYS_PER_CHUNK = 1 << 27
INT32_MAX = (1 << 31) - 1
INT64_MAX = (1 << 63) - 1

KEY_CTYPES = {numpy.dtype(numpy.int32): "int", numpy.dtype(numpy.int64): "long long"}


def kernel_name(kernel: str, *ctypes: str) -> str:
    """The name expression of a template instantiation, spelled as in ``_kernel_table.KERNELS``."""
    return f"{kernel}<{', '.join(ctypes)}>"


def _launch(name: str, total: int, args: tuple) -> None:
    """Runs the grid-stride kernel ``name`` of pool.cu over ``total`` elements on the current device and
    stream. Every kernel parameter is a pointer, a long long (``i64``) or, for count_include_pad, an int."""
    if total > 0:
        kernel = get_function(SOURCE, name)
        kernel((grid_blocks(total),), (THREADS_PER_BLOCK,), args)


def _window_args(g) -> tuple:
    """H, W, P, Q, kH, kW, sH, sW, pH, pW as the kernels' long long parameters."""
    return tuple(i64(v) for v in (g.H, g.W, g.P, g.Q, g.kernel_h, g.kernel_w, g.stride_h, g.stride_w,
                                   g.pad_h, g.pad_w))


def _avg_args(g) -> tuple:
    """count_include_pad (int) and divisor_override (long long, 0 for none) of an avg_pool2d geometry."""
    return numpy.int32(1 if g.count_include_pad else 0), i64(g.divisor_override or 0)


# ------------------------------------------------------------------------------------------ forward


def max_pool2d_fprop(g, x):
    """(y, indices): y (N, C, P, Q) of x's dtype and int64 indices, flat h*W + w within each plane."""
    import cupy

    with x.device:
        x = cupy.ascontiguousarray(x)
        y = empty(g.output_shape, x.dtype)
        indices = empty(g.output_shape, numpy.int64)
        name = kernel_name("max_pool2d_fprop", VALUE_CTYPES[x.dtype])
        _launch(name, y.size, (x, y, indices, i64(y.size)) + _window_args(g) + (i64(g.dil_h), i64(g.dil_w)))
    return y, indices


def avg_pool2d_fprop(g, x):
    """y (N, C, P, Q): window means with count_include_pad / divisor_override as in g."""
    import cupy

    with x.device:
        x = cupy.ascontiguousarray(x)
        y = empty(g.output_shape, x.dtype)
        name = kernel_name("avg_pool2d_fprop", VALUE_CTYPES[x.dtype])
        _launch(name, y.size, (x, y, i64(y.size)) + _window_args(g) + _avg_args(g))
    return y


# ----------------------------------------------------------------------------------------- backward


def avg_pool2d_bprop(g, gy):
    """gx (N, C, H, W): each input element gathers gy / divisor over the windows that hold it."""
    import cupy

    with gy.device:
        gy = cupy.ascontiguousarray(gy)
        gx = empty(g.input_shape, gy.dtype)
        name = kernel_name("avg_pool2d_bprop", VALUE_CTYPES[gy.dtype])
        _launch(name, gx.size, (gy, gx, i64(gx.size)) + _window_args(g) + _avg_args(g))
    return gx


def bprop_chunks(planes: int, HW: int, PQ: int, max_keys: int = MAX_KEYS_PER_CHUNK) -> list:
    """How max_pool2d_bprop splits ``planes`` (n, c) planes: a list of (first_plane, plane_count, key_dtype).

    A chunk of b planes has keys in [0, b*HW*PQ): b is capped so they fit in int64, and so the chunk holds at
    most ``max_keys`` outputs (at least one plane). A chunk whose keys fit in int32 sorts them as int32 (half
    the radix passes)."""
    span = HW * PQ  # the key range of one plane
    if span > INT64_MAX:
        raise ValueError(
            f"max_pool2d_backward: an input plane of {HW} elements with {PQ} outputs is too large for the CUDA "
            f"backward (its sort keys need {HW} * {PQ} < 2^63)"
        )
    per_chunk = max(1, min(planes, INT64_MAX // span, max_keys // PQ))
    chunks = []
    for first in range(0, planes, per_chunk):
        count = min(per_chunk, planes - first)
        key_dtype = numpy.dtype(numpy.int32 if count * span - 1 <= INT32_MAX else numpy.int64)
        chunks.append((first, count, key_dtype))
    return chunks


def max_pool2d_bprop(gy, indices, input_shape):
    """gx of input_shape: gx[n, c].flat[i] = sum, in output order, of gy[n, c] where indices[n, c] == i."""
    import cupy

    N, C, H, W = input_shape
    P, Q = gy.shape[2], gy.shape[3]
    HW, PQ = H * W, P * Q
    with gy.device:
        gy = cupy.ascontiguousarray(gy).reshape(-1)
        indices = cupy.ascontiguousarray(indices, dtype=numpy.int64).reshape(-1)
        gx = empty(tuple(input_shape), gy.dtype)
        gx_flat = gx.reshape(-1)
        value_ctype = VALUE_CTYPES[gy.dtype]
        for first, count, key_dtype in bprop_chunks(N * C, HW, PQ):
            key_ctype = KEY_CTYPES[key_dtype]
            outs = slice(first * PQ, (first + count) * PQ)
            ins = slice(first * HW, (first + count) * HW)
            keys = cupy.empty(count * PQ, dtype=key_dtype)  # workspace: every element is written
            _launch(kernel_name("max_pool2d_bprop_keys", key_ctype), keys.size,
                    (indices[outs], keys, i64(keys.size), i64(HW), i64(PQ)))
            keys.sort()
            _launch(kernel_name("max_pool2d_bprop_gather", value_ctype, key_ctype), count * HW,
                    (gy[outs], keys, gx_flat[ins], i64(count * HW), i64(HW), i64(PQ)))
    return gx


def kernel_names() -> tuple:
    """Every instantiation this module launches (the NVRTC check and the kernel table list the same)."""
    values = tuple(VALUE_CTYPES.values())
    keys = tuple(KEY_CTYPES.values())
    return (
        tuple(kernel_name("max_pool2d_fprop", v) for v in values)
        + tuple(kernel_name("max_pool2d_bprop_keys", k) for k in keys)
        + tuple(kernel_name("max_pool2d_bprop_gather", v, k) for v in values for k in keys)
        + tuple(kernel_name("avg_pool2d_fprop", v) for v in values)
        + tuple(kernel_name("avg_pool2d_bprop", v) for v in values)
    )
