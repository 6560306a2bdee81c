"""Max and average pooling on cupy arrays: the launchers of ``kernels/pool.cu``.

Arguments are already checked and the arrays contiguous (``pooling`` copies them, as RawKernel ignores
strides); nothing is modified. Every kernel runs on the current device and CuPy's current stream; outputs
come from ``_alloc.empty`` and every element of them is written by a kernel.

Index arithmetic is 32-bit (kernels' template argument I = int) when every tensor of the call and every
window bound fits in 31 bits, 64-bit (long long) otherwise: 64-bit division costs several times more on the
GPU, and these kernels are otherwise memory-bound.

max_pool2d_bprop has no window geometry (the public API passes only indices), so it cannot gather over
windows as avg_pool2d_bprop does. It stays deterministic (integer atomics only, sums in output order):

- planes whose H*W + P*Q (+ one int per thread) ints fit in shared memory: max_pool2d_bprop_plane, one block
  per plane, a counting sort of the plane's outputs by the element they chose, in shared memory; one read of
  indices and gy, one write of gx;
- larger planes, one chunk of planes at a time: each output o of plane b gets the key
  ((b*(H*W + 1) + indices[o]) * P*Q + j), j its position in the plane (an index outside [0, H*W) gets the
  slot H*W, which no element reads); the keys are sorted (they are distinct, so the order is unique); each
  input element binary-searches its plane's sorted keys for its run and sums those gy in output order.

Indices outside [0, H*W) are dropped by every kernel (their gradient goes nowhere): by default the host does
not check them on CuPy arrays (that would synchronise the stream), so the kernels must stay in bounds.

Both sum in output order (float32 for float16): the same bits every call, in PyTorch's CPU order.

This module holds the verified variants (the registry, ``_registry``, lists them and ``_algo`` picks one
per call; ``pooling`` is the backend's entry). The experimental wide kernels are
``gpuconv/_cuda/experimental/pool_wide.py``.
"""

from __future__ import annotations

import numpy

from . import _config, _runtime
from ._alloc import empty
from ._launch import CTYPES as VALUE_CTYPES
from ._launch import THREADS_PER_BLOCK, grid_blocks, i64
from ._runtime import get_function

SOURCE = "pool.cu"

# Keys of one backward chunk take 8 bytes per output (4 when they fit in int32), plus the sort's own
# buffers of about the same size: chunks hold at most ``Config.max_keys_per_chunk`` outputs (2^27), unless
# one plane is larger. 32-bit index variants take sizes up to ``Config.index_limit`` (2^31 - 1; tests lower
# it to reach the 64-bit variants with small tensors).
INT64_MAX = (1 << 63) - 1

KEY_CTYPES = {numpy.dtype(numpy.int32): "int", numpy.dtype(numpy.int64): "long long"}
INDEX_CTYPES = ("int", "long long")  # I of the elementwise kernels
MAX_FPROP_CTYPE = "long long"  # max_pool2d_fprop's only I (see max_pool2d_fprop)

# max_pool2d_bprop_plane: threads per block, and the most shared memory a block may ask for (also capped
# by the device's opt-in limit). 96 KiB keeps two blocks per SM on sm_80/sm_90 and fits sm_86/sm_89's 99 KiB.
PLANE_THREADS = 512
MAX_PLANE_SMEM_BYTES = 96 * 1024
DEFAULT_SMEM_BYTES = 48 * 1024  # what a launch gets without raising the kernel's attribute

def kernel_name(kernel: str, *ctypes: str) -> str:
    """The name expression of a template instantiation, spelled as in ``_kernel_table.KERNELS``."""
    return f"{kernel}<{', '.join(ctypes)}>"


def _launch(name: str, total: int, args: tuple, source: str = SOURCE) -> None:
    """Runs the grid-stride kernel ``name`` of ``source`` over ``total`` elements (or groups) on the current
    device and stream. Every kernel parameter is a pointer, a long long (``i64``) or an int."""
    if total > 0:
        kernel = get_function(source, name)
        kernel((grid_blocks(total),), (THREADS_PER_BLOCK,), args)


def index_ctype(g, planes: int) -> str:
    """I for a call over ``planes`` (n, c) planes of geometry g: "int" when the input and output element
    counts, the divisor override and the padded, dilated window extent (H + 2pH + kH*dH) * (W + 2pW + kW*dW)
    all fit in 31 bits, so that no 32-bit intermediate of the kernels can overflow; "long long" otherwise."""
    window = (g.H + 2 * g.pad_h + g.kernel_h * g.dil_h) * (g.W + 2 * g.pad_w + g.kernel_w * g.dil_w)
    largest = max(planes * g.H * g.W, planes * g.P * g.Q, window, abs(g.divisor_override or 0))
    return "int" if largest <= _config.current().index_limit else "long long"


def _scalar(ctype: str):
    return numpy.int32 if ctype == "int" else numpy.int64


def _window_args(g, ctype: str) -> tuple:
    """H, W, P, Q, kH, kW, sH, sW, pH, pW as the kernels' I parameters."""
    to = _scalar(ctype)
    return tuple(to(v) for v in (g.H, g.W, g.P, g.Q, g.kernel_h, g.kernel_w, g.stride_h, g.stride_w,
                                 g.pad_h, g.pad_w))


def _avg_args(g, ctype: str) -> tuple:
    """count_include_pad (int) and divisor_override (I, 0 for none) of an avg_pool2d geometry."""
    return numpy.int32(1 if g.count_include_pad else 0), _scalar(ctype)(g.divisor_override or 0)


# ------------------------------------------------------------------------------------------ forward


def max_pool2d_fprop(g, x):
    """(y, indices): y (N, C, P, Q) of x's dtype and int64 indices, flat h*W + w within each plane."""
    y = empty(g.output_shape, x.dtype)
    indices = empty(g.output_shape, numpy.int64)
    # 64-bit always: on the H100 the int variant ran slower (bench/notes/history.md, max_pool2d_fprop), so
    # only long long is instantiated.
    ctype = MAX_FPROP_CTYPE
    to = _scalar(ctype)
    name = kernel_name("max_pool2d_fprop", VALUE_CTYPES[x.dtype], ctype)
    _launch(name, y.size, (x, y, indices, to(y.size)) + _window_args(g, ctype) + (to(g.dil_h), to(g.dil_w)))
    return y, indices


def avg_pool2d_fprop(g, x):
    """y (N, C, P, Q): window means with count_include_pad / divisor_override as in g."""
    y = empty(g.output_shape, x.dtype)
    ctype = index_ctype(g, g.N * g.C)
    name = kernel_name("avg_pool2d_fprop", VALUE_CTYPES[x.dtype], ctype)
    _launch(name, y.size, (x, y, _scalar(ctype)(y.size)) + _window_args(g, ctype) + _avg_args(g, ctype))
    return y


# ----------------------------------------------------------------------------------------- backward


def avg_pool2d_bprop(g, gy):
    """gx (N, C, H, W): each input element gathers gy / divisor over the windows that hold it."""
    gx = empty(g.input_shape, gy.dtype)
    ctype = index_ctype(g, g.N * g.C)
    name = kernel_name("avg_pool2d_bprop", VALUE_CTYPES[gy.dtype], ctype)
    _launch(name, gx.size, (gy, gx, _scalar(ctype)(gx.size)) + _window_args(g, ctype) + _avg_args(g, ctype))
    return gx


def bprop_chunks(planes: int, HW: int, PQ: int, max_keys: int = 1 << 27, int_limit: int = (1 << 31) - 1) -> list:
    """How max_pool2d_bprop splits ``planes`` (n, c) planes: a list of (first_plane, plane_count, key_dtype).

    A chunk of b planes has keys in [0, b*(HW + 1)*PQ) (HW + 1: one slot for out-of-range indices): b is
    capped so they fit in int64, and so the chunk holds at most ``max_keys`` outputs (at least one plane). A
    chunk whose keys fit in int32 sorts them as int32 (half the radix passes)."""
    span = (HW + 1) * PQ  # the key range of one plane
    if span > INT64_MAX:
        raise ValueError(
            f"max_pool2d_backward: an input plane of {HW} elements with {PQ} outputs is too large for the CUDA "
            f"backward (its sort keys need ({HW} + 1) * {PQ} < 2^63)"
        )
    per_chunk = max(1, min(planes, INT64_MAX // span, max_keys // PQ))
    chunks = []
    for first in range(0, planes, per_chunk):
        count = min(per_chunk, planes - first)
        key_dtype = numpy.dtype(numpy.int32 if count * span - 1 <= int_limit else numpy.int64)
        chunks.append((first, count, key_dtype))
    return chunks


def plane_smem_bytes(HW: int, PQ: int, threads: int = PLANE_THREADS) -> int:
    """Shared memory of max_pool2d_bprop_plane: H*W offsets, P*Q slots and one partial sum per thread."""
    return 4 * (HW + PQ + threads)


def smem_limit() -> int:
    """The most dynamic shared memory a max_pool2d_bprop_plane block may use on the current device (or the
    configured limit, a tunable)."""
    configured = _config.current().smem_limit
    if configured:
        return configured
    return min(MAX_PLANE_SMEM_BYTES, max(_runtime.device_properties()[2], DEFAULT_SMEM_BYTES))


def use_plane_kernel(HW: int, PQ: int, smem_limit: int, int_limit: int = (1 << 31) - 1) -> bool:
    """Whether max_pool2d_bprop runs max_pool2d_bprop_plane (int positions, shared arrays that fit)."""
    return HW + PQ <= int_limit and plane_smem_bytes(HW, PQ) <= smem_limit


_raised_smem: dict = {}  # id(kernel) -> the dynamic shared memory its attribute allows (loader caches kernels)


def _plane_kernel(source: str, name: str, smem: int):
    kernel = get_function(source, name)
    if smem > DEFAULT_SMEM_BYTES and _raised_smem.get(id(kernel), 0) < smem:
        kernel.max_dynamic_shared_size_bytes = smem  # a driver call: made once per kernel and size
        _raised_smem[id(kernel)] = smem
    return kernel


def max_bprop_plane(gy, indices, gx, planes: int, HW: int, PQ: int) -> None:
    """max_pool2d_bprop_plane: one block per plane, a counting sort of its outputs in shared memory."""
    smem = plane_smem_bytes(HW, PQ)
    kernel = _plane_kernel(SOURCE, kernel_name("max_pool2d_bprop_plane", VALUE_CTYPES[gy.dtype]), smem)
    blocks = max(1, min(planes, 1 << 20))  # grid-stride over planes beyond
    kernel((blocks,), (PLANE_THREADS,), (gy, indices, gx, i64(planes), numpy.int32(HW), numpy.int32(PQ)),
           shared_mem=smem)


def plane_supports(problem, dtype) -> bool:
    planes, HW, PQ = problem
    return use_plane_kernel(HW, PQ, smem_limit(), _config.current().index_limit)


def max_bprop_sort(gy, indices, gx, planes: int, HW: int, PQ: int) -> None:
    """Chunks of planes: sort each output's (plane, element, position) key, then gather runs in output order."""
    value_ctype = VALUE_CTYPES[gy.dtype]
    config = _config.current()
    for first, count, key_dtype in bprop_chunks(planes, HW, PQ, config.max_keys_per_chunk, config.index_limit):
        key_ctype = KEY_CTYPES[key_dtype]
        outs = slice(first * PQ, (first + count) * PQ)
        ins = slice(first * HW, (first + count) * HW)
        keys = _runtime.xp().empty(count * PQ, dtype=key_dtype)  # workspace: every element is written
        _launch(kernel_name("max_pool2d_bprop_keys", key_ctype), keys.size,
                (indices[outs], keys, i64(keys.size), i64(HW), i64(PQ)))
        keys.sort()
        _launch(kernel_name("max_pool2d_bprop_gather", value_ctype, key_ctype), count * HW,
                (gy[outs], keys, gx[ins], i64(count * HW), i64(HW), i64(PQ)))


def kernel_names() -> tuple:
    """Every instantiation this module launches (the NVRTC check and the kernel table list the same)."""
    values = tuple(VALUE_CTYPES.values())
    keys = tuple(KEY_CTYPES.values())
    return (
        tuple(kernel_name("max_pool2d_fprop", v, MAX_FPROP_CTYPE) for v in values)
        + tuple(kernel_name("max_pool2d_bprop_plane", v) for v in values)
        + tuple(kernel_name("max_pool2d_bprop_keys", k) for k in keys)
        + tuple(kernel_name("max_pool2d_bprop_gather", v, k) for v in values for k in keys)
        + tuple(kernel_name("avg_pool2d_fprop", v, i) for v in values for i in INDEX_CTYPES)
        + tuple(kernel_name("avg_pool2d_bprop", v, i) for v in values for i in INDEX_CTYPES)
    )


def kernels() -> dict:
    """{source file: instantiations} of the verified pooling variants (a registry declaration)."""
    return {SOURCE: kernel_names()}
