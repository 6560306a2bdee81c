"""Wide pooling (experimental: ``GPUCONV_UNVERIFIED=pool_wide``): the launchers of kernels/experimental/pool_wide.cu.

Results bitwise equal to the verified kernels of ``gpuconv/_cuda/pool.py``: forward and avg backward with one
thread per V = 16 bytes of adjacent outputs / inputs (vector loads and stores), for kernel_w x stride_w in
WIDE_COLUMNS, dilation_w 1 and 32-bit indices (any rows); max backward with max_pool2d_bprop_plane_wide
(16-bit packed counters, P*Q <= 65535) where its shared arrays fit.
"""

from __future__ import annotations

import numpy

from .. import _config
from .._alloc import empty
from .._launch import CTYPES as VALUE_CTYPES
from .._launch import i64
from ..pool import _avg_args, _launch, _plane_kernel, index_ctype, kernel_name, smem_limit

SOURCE = "experimental/pool_wide.cu"  # includes pool.cu

# (kernel_w, stride_w) pairs the kernels are compiled for (with dilation_w 1; pad_w <= kernel_w/2 is then 0
# or 1, a run-time choice); elements per 16 bytes (V, each thread's run); max_pool2d_bprop_plane_wide's most
# threads per block (its __launch_bounds__) and largest plane output (16-bit counters).
WIDE_COLUMNS = ((2, 2), (3, 2), (3, 1))
WIDE_KERNELS = ("max_pool2d_fprop_wide", "avg_pool2d_fprop_wide", "avg_pool2d_bprop_wide")
LANES = {numpy.dtype(numpy.float16): 8, numpy.dtype(numpy.float32): 4, numpy.dtype(numpy.float64): 2}
WIDE_PLANE_THREADS = 512
WIDE_PLANE_MAX_PQ = 0xFFFF


def kernel_names() -> tuple:
    """Every instantiation of pool_wide.cu this module launches (the kernel table lists the same)."""
    values = tuple(VALUE_CTYPES.values())
    return (
        tuple(f"{k}<{v}, {kw}, {sw}>" for k in WIDE_KERNELS for v in values for kw, sw in WIDE_COLUMNS)
        + tuple(kernel_name("max_pool2d_bprop_plane_wide", v) for v in values)
    )


def kernels() -> dict:
    """{source file: instantiations} (a registry declaration)."""
    return {SOURCE: kernel_names()}


def use_wide(g, planes: int, dtype) -> bool:
    """Whether the wide forward / avg-backward kernels run g: (kernel_w, stride_w) is one of WIDE_COLUMNS with
    dilation_w 1, and every index, the last partial run of V elements of a row included, fits in 31 bits
    (their only index type is int)."""
    lanes = LANES[numpy.dtype(dtype)]
    return ((g.kernel_w, g.stride_w) in WIDE_COLUMNS and g.dil_w == 1 and g.pad_w <= 1
            and index_ctype(g, planes) == "int"
            and planes * max(g.H * (g.W + lanes), g.P * (g.Q + lanes)) <= _config.current().index_limit)


def supports(g, dtype) -> bool:
    return use_wide(g, g.N * g.C, dtype)


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


def max_pool2d_fprop(g, x):
    """(y, indices) as pool.max_pool2d_fprop, V outputs per thread."""
    y = empty(g.output_shape, x.dtype)
    indices = empty(g.output_shape, numpy.int64)
    runs = -(-g.Q // LANES[x.dtype])  # V-output runs per output row
    groups = g.N * g.C * g.P * runs
    _launch(_wide_name("max_pool2d_fprop_wide", g, x.dtype), groups,
            (x, y, indices, numpy.int32(groups)) + _wide_rows(g, runs)
            + (numpy.int32(g.dil_h), numpy.int32(g.pad_w), fast_divisor(runs), fast_divisor(g.P)), SOURCE)
    return y, indices


def avg_pool2d_fprop(g, x):
    """y as pool.avg_pool2d_fprop, V outputs per thread."""
    y = empty(g.output_shape, x.dtype)
    runs = -(-g.Q // LANES[x.dtype])
    groups = g.N * g.C * g.P * runs
    _launch(_wide_name("avg_pool2d_fprop_wide", g, x.dtype), groups,
            (x, y, numpy.int32(groups)) + _wide_rows(g, runs) + (numpy.int32(g.pad_w),)
            + _avg_args(g, "int") + (fast_divisor(runs), fast_divisor(g.P)), SOURCE)
    return y


def avg_pool2d_bprop(g, gy):
    """gx as pool.avg_pool2d_bprop, V inputs per thread."""
    gx = empty(g.input_shape, gy.dtype)
    runs = -(-g.W // LANES[gy.dtype])  # V-input runs per input row
    groups = g.N * g.C * g.H * runs
    _launch(_wide_name("avg_pool2d_bprop_wide", g, gy.dtype), groups,
            (gy, gx, numpy.int32(groups)) + _wide_rows(g, runs) + (numpy.int32(g.pad_w),)
            + _avg_args(g, "int") + (fast_divisor(runs), fast_divisor(g.H), fast_divisor(g.stride_h)), SOURCE)
    return gx


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


def plane_supports(problem, dtype) -> bool:
    planes, HW, PQ = problem
    return use_wide_plane_kernel(HW, PQ, numpy.dtype(dtype).itemsize, smem_limit())


def max_bprop_plane(gy, indices, gx, planes: int, HW: int, PQ: int) -> None:
    """max_pool2d_bprop_plane_wide over every plane."""
    smem = wide_plane_smem_bytes(HW, PQ, gy.dtype.itemsize)
    kernel = _plane_kernel(SOURCE, kernel_name("max_pool2d_bprop_plane_wide", VALUE_CTYPES[gy.dtype]), smem)
    blocks = max(1, min(planes, 1 << 20))
    kernel((blocks,), (wide_plane_threads(HW, LANES[gy.dtype]),),
           (gy, indices, gx, i64(planes), numpy.int32(HW), numpy.int32(PQ)), shared_mem=smem)
