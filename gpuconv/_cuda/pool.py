"""Max and average pooling on cupy arrays: the launchers of ``kernels/pool.cu``.

The functions follow the backend interface in ``gpuconv._backend``: arguments are already checked, arrays are
4-D with any strides (copied to contiguous here, as RawKernel ignores strides), and nothing is modified.
Every kernel runs on the input's device and CuPy's current stream; outputs come from ``_alloc.empty`` and
every element of them is written by a kernel.

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

With ``GPUCONV_UNVERIFIED=pool_wide`` (``_unverified``), the kernels of ``kernels/pool_wide.cu`` run where they
apply, with results bitwise equal to the ones above: forward and avg backward with one thread per V = 16 bytes
of adjacent outputs / inputs (vector loads and stores), for kernel_w x stride_w in WIDE_COLUMNS, dilation_w 1
and 32-bit indices (any rows); max backward with max_pool2d_bprop_plane_wide (16-bit packed counters, P*Q <=
65535) where its shared arrays fit.
"""

from __future__ import annotations

import functools

import numpy

from . import _unverified
from ._alloc import empty
from ._launch import CTYPES as VALUE_CTYPES
from ._launch import THREADS_PER_BLOCK, grid_blocks, i64
from ._loader import get_function

SOURCE = "pool.cu"
WIDE_SOURCE = "pool_wide.cu"  # the opt-in kernels ("pool_wide"): pool.cu plus the wide variants
WIDE_FEATURE = "pool_wide"

# Keys of one backward chunk take 8 bytes per output (4 when they fit in int32), plus the sort's own
# buffers of about the same size: chunks hold at most this many outputs, unless one plane is larger.
MAX_KEYS_PER_CHUNK = 1 << 27
INT32_MAX = (1 << 31) - 1
INT64_MAX = (1 << 63) - 1

KEY_CTYPES = {numpy.dtype(numpy.int32): "int", numpy.dtype(numpy.int64): "long long"}
INDEX_CTYPES = ("int", "long long")  # I of the elementwise kernels
MAX_FPROP_CTYPE = "long long"  # max_pool2d_fprop's only I (see max_pool2d_fprop)

# max_pool2d_bprop_plane: threads per block, and the most shared memory a block may ask for (also capped
# by the device's opt-in limit). 96 KiB keeps two blocks per SM on sm_80/sm_90 and fits sm_86/sm_89's 99 KiB.
PLANE_THREADS = 512
MAX_PLANE_SMEM_BYTES = 96 * 1024
DEFAULT_SMEM_BYTES = 48 * 1024  # what a launch gets without raising the kernel's attribute

# The wide kernels: (kernel_w, stride_w) pairs they are compiled for (with dilation_w 1; pad_w <= kernel_w/2 is
# then 0 or 1, a run-time choice); elements per 16 bytes (V, each thread's run); max_pool2d_bprop_plane_wide's
# most threads per block (its __launch_bounds__) and largest plane output (16-bit counters).
WIDE_COLUMNS = ((2, 2), (3, 2), (3, 1))
WIDE_KERNELS = ("max_pool2d_fprop_wide", "avg_pool2d_fprop_wide", "avg_pool2d_bprop_wide")
LANES = {numpy.dtype(numpy.float16): 8, numpy.dtype(numpy.float32): 4, numpy.dtype(numpy.float64): 2}
WIDE_PLANE_THREADS = 512
WIDE_PLANE_MAX_PQ = 0xFFFF


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
    return "int" if largest <= INT32_MAX else "long long"


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


def use_wide(g, planes: int, dtype) -> bool:
    """Whether the wide forward / avg-backward kernels run g: the feature is on, (kernel_w, stride_w) is one of
    WIDE_COLUMNS with dilation_w 1, and every index, the last partial run of V elements of a row included,
    fits in 31 bits (their only index type is int)."""
    lanes = LANES[numpy.dtype(dtype)]
    return (_unverified.enabled(WIDE_FEATURE) and (g.kernel_w, g.stride_w) in WIDE_COLUMNS and g.dil_w == 1
            and g.pad_w <= 1 and index_ctype(g, planes) == "int"
            and planes * max(g.H * (g.W + lanes), g.P * (g.Q + lanes)) <= INT32_MAX)


def _wide_name(kernel: str, g, dtype) -> str:
    return kernel_name(kernel, VALUE_CTYPES[numpy.dtype(dtype)], str(g.kernel_w), str(g.stride_w))


def fast_divisor(d: int) -> numpy.int64:
    """The wide kernels' magic number of a divisor d >= 1 (pool_wide.cu, divide()): mul | shift << 32 with
    shift = ceil(log2 d) and mul = floor(2^32 (2^shift - d) / d) + 1 < 2^32; then n / d == (umulhi(n, mul) + n)
    >> shift for every 0 <= n < 2^31."""
    shift = (d - 1).bit_length()
    mul = ((1 << 32) * ((1 << shift) - d)) // d + 1
    return numpy.int64(mul | (shift << 32))


def _wide_rows(g, runs: int) -> tuple:
    """The scalar arguments the wide kernels share after ``groups``: H, W, P, Q, runs per row, kH, sH, pH."""
    return tuple(numpy.int32(v) for v in (g.H, g.W, g.P, g.Q, runs, g.kernel_h, g.stride_h, g.pad_h))


# ------------------------------------------------------------------------------------------ forward


def max_pool2d_fprop(g, x):
    """(y, indices): y (N, C, P, Q) of x's dtype and int64 indices, flat h*W + w within each plane."""
    import cupy

    with x.device:
        x = cupy.ascontiguousarray(x)
        y = empty(g.output_shape, x.dtype)
        indices = empty(g.output_shape, numpy.int64)
        planes = g.N * g.C
        if use_wide(g, planes, x.dtype):
            runs = -(-g.Q // LANES[x.dtype])  # V-output runs per output row
            groups = planes * g.P * runs
            _launch(_wide_name("max_pool2d_fprop_wide", g, x.dtype), groups,
                    (x, y, indices, numpy.int32(groups)) + _wide_rows(g, runs)
                    + (numpy.int32(g.dil_h), numpy.int32(g.pad_w), fast_divisor(runs), fast_divisor(g.P)),
                    WIDE_SOURCE)
            return y, indices
        # 64-bit always: on the H100 the int variant ran slower, 0.168 against 0.125 ms (ResNet-50's 3x3/2
        # max pool, bench/results/gpu-h100-2026-11-22-r2/compare), so only long long is instantiated.
        ctype = MAX_FPROP_CTYPE
        to = _scalar(ctype)
        name = kernel_name("max_pool2d_fprop", VALUE_CTYPES[x.dtype], ctype)
        _launch(name, y.size, (x, y, indices, to(y.size)) + _window_args(g, ctype) + (to(g.dil_h), to(g.dil_w)))
    return y, indices


def avg_pool2d_fprop(g, x):
    """y (N, C, P, Q): window means with count_include_pad / divisor_override as in g."""
    import cupy

    with x.device:
        x = cupy.ascontiguousarray(x)
        y = empty(g.output_shape, x.dtype)
        planes = g.N * g.C
        if use_wide(g, planes, x.dtype):
            runs = -(-g.Q // LANES[x.dtype])
            groups = planes * g.P * runs
            _launch(_wide_name("avg_pool2d_fprop_wide", g, x.dtype), groups,
                    (x, y, numpy.int32(groups)) + _wide_rows(g, runs) + (numpy.int32(g.pad_w),)
                    + _avg_args(g, "int") + (fast_divisor(runs), fast_divisor(g.P)), WIDE_SOURCE)
            return y
        ctype = index_ctype(g, planes)
        name = kernel_name("avg_pool2d_fprop", VALUE_CTYPES[x.dtype], ctype)
        _launch(name, y.size, (x, y, _scalar(ctype)(y.size)) + _window_args(g, ctype) + _avg_args(g, ctype))
    return y


# ----------------------------------------------------------------------------------------- backward


def avg_pool2d_bprop(g, gy):
    """gx (N, C, H, W): each input element gathers gy / divisor over the windows that hold it."""
    import cupy

    with gy.device:
        gy = cupy.ascontiguousarray(gy)
        gx = empty(g.input_shape, gy.dtype)
        planes = g.N * g.C
        if use_wide(g, planes, gy.dtype):
            runs = -(-g.W // LANES[gy.dtype])  # V-input runs per input row
            groups = planes * g.H * runs
            _launch(_wide_name("avg_pool2d_bprop_wide", g, gy.dtype), groups,
                    (gy, gx, numpy.int32(groups)) + _wide_rows(g, runs) + (numpy.int32(g.pad_w),)
                    + _avg_args(g, "int") + (fast_divisor(runs), fast_divisor(g.H), fast_divisor(g.stride_h)),
                    WIDE_SOURCE)
            return gx
        ctype = index_ctype(g, planes)
        name = kernel_name("avg_pool2d_bprop", VALUE_CTYPES[gy.dtype], ctype)
        _launch(name, gx.size, (gy, gx, _scalar(ctype)(gx.size)) + _window_args(g, ctype) + _avg_args(g, ctype))
    return gx


def bprop_chunks(planes: int, HW: int, PQ: int, max_keys: int = MAX_KEYS_PER_CHUNK) -> list:
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
        key_dtype = numpy.dtype(numpy.int32 if count * span - 1 <= INT32_MAX else numpy.int64)
        chunks.append((first, count, key_dtype))
    return chunks


def plane_smem_bytes(HW: int, PQ: int, threads: int = PLANE_THREADS) -> int:
    """Shared memory of max_pool2d_bprop_plane: H*W offsets, P*Q slots and one partial sum per thread."""
    return 4 * (HW + PQ + threads)


def _smem_limit() -> int:
    """The most dynamic shared memory a max_pool2d_bprop_plane block may use on the current device."""
    import cupy

    return _smem_limit_of(cupy.cuda.Device().id)


@functools.lru_cache(maxsize=None)
def _smem_limit_of(device_id: int) -> int:
    # Read once per device: Device().attributes queries every attribute of the device.
    import cupy

    try:
        optin = int(cupy.cuda.Device(device_id).attributes["MaxSharedMemoryPerBlockOptin"])
    except Exception:  # pragma: no cover - an old CuPy or driver: the default every device grants
        optin = DEFAULT_SMEM_BYTES
    return min(MAX_PLANE_SMEM_BYTES, max(optin, DEFAULT_SMEM_BYTES))


def use_plane_kernel(HW: int, PQ: int, smem_limit: int) -> bool:
    """Whether max_pool2d_bprop runs max_pool2d_bprop_plane (int positions, shared arrays that fit)."""
    return HW + PQ <= INT32_MAX and plane_smem_bytes(HW, PQ) <= smem_limit


def wide_plane_smem_bytes(HW: int, PQ: int, itemsize: int) -> int:
    """Shared memory of max_pool2d_bprop_plane_wide: gy (rounded to 16 bytes), ceil(H*W / 2) packed counter
    words (rounded to 4), P*Q slots and 32 warp sums."""
    return -(-PQ * itemsize // 16) * 16 + 4 * (-(-((HW + 1) // 2) // 4) * 4) + 4 * PQ + 4 * 32


def wide_plane_threads(HW: int, lanes: int) -> int:
    """Threads per block of max_pool2d_bprop_plane_wide: about one per 2V elements of the plane, whole warps,
    64 to WIDE_PLANE_THREADS (small planes get small blocks, so that many fit an SM)."""
    return min(WIDE_PLANE_THREADS, max(64, 32 * -(-HW // (2 * lanes * 32))))


def use_wide_plane_kernel(HW: int, PQ: int, itemsize: int, smem_limit: int) -> bool:
    """Whether max_pool2d_bprop runs max_pool2d_bprop_plane_wide (16-bit counters, shared arrays that fit)."""
    return PQ <= WIDE_PLANE_MAX_PQ and wide_plane_smem_bytes(HW, PQ, itemsize) <= smem_limit


_raised_smem: dict = {}  # id(kernel) -> the dynamic shared memory its attribute allows (loader caches kernels)


def _plane_kernel(source: str, name: str, smem: int):
    kernel = get_function(source, name)
    if smem > DEFAULT_SMEM_BYTES and _raised_smem.get(id(kernel), 0) < smem:
        kernel.max_dynamic_shared_size_bytes = smem  # a driver call: made once per kernel and size
        _raised_smem[id(kernel)] = smem
    return kernel


def _bprop_plane(gy, indices, gx, planes: int, HW: int, PQ: int) -> None:
    smem = plane_smem_bytes(HW, PQ)
    kernel = _plane_kernel(SOURCE, kernel_name("max_pool2d_bprop_plane", VALUE_CTYPES[gy.dtype]), smem)
    blocks = max(1, min(planes, 1 << 20))  # grid-stride over planes beyond
    kernel((blocks,), (PLANE_THREADS,), (gy, indices, gx, i64(planes), numpy.int32(HW), numpy.int32(PQ)),
           shared_mem=smem)


def _bprop_plane_wide(gy, indices, gx, planes: int, HW: int, PQ: int) -> None:
    smem = wide_plane_smem_bytes(HW, PQ, gy.dtype.itemsize)
    kernel = _plane_kernel(WIDE_SOURCE, kernel_name("max_pool2d_bprop_plane_wide", VALUE_CTYPES[gy.dtype]), smem)
    blocks = max(1, min(planes, 1 << 20))
    kernel((blocks,), (wide_plane_threads(HW, LANES[gy.dtype]),),
           (gy, indices, gx, i64(planes), numpy.int32(HW), numpy.int32(PQ)), shared_mem=smem)


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
        if N * C * HW == 0:
            return gx
        if _unverified.enabled(WIDE_FEATURE) and use_wide_plane_kernel(HW, PQ, gy.dtype.itemsize, _smem_limit()):
            _bprop_plane_wide(gy, indices, gx_flat, N * C, HW, PQ)
            return gx
        if use_plane_kernel(HW, PQ, _smem_limit()):
            _bprop_plane(gy, indices, gx_flat, N * C, HW, PQ)
            return gx
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
        tuple(kernel_name("max_pool2d_fprop", v, MAX_FPROP_CTYPE) for v in values)
        + tuple(kernel_name("max_pool2d_bprop_plane", v) for v in values)
        + tuple(kernel_name("max_pool2d_bprop_keys", k) for k in keys)
        + tuple(kernel_name("max_pool2d_bprop_gather", v, k) for v in values for k in keys)
        + tuple(kernel_name("avg_pool2d_fprop", v, i) for v in values for i in INDEX_CTYPES)
        + tuple(kernel_name("avg_pool2d_bprop", v, i) for v in values for i in INDEX_CTYPES)
    )


def wide_kernel_names() -> tuple:
    """Every instantiation of pool_wide.cu this module launches (the kernel table lists the same)."""
    values = tuple(VALUE_CTYPES.values())
    return (
        tuple(f"{k}<{v}, {kw}, {sw}>" for k in WIDE_KERNELS for v in values for kw, sw in WIDE_COLUMNS)
        + tuple(kernel_name("max_pool2d_bprop_plane_wide", v) for v in values)
    )
