"""Launching the conv and pad kernels: template names, grid sizes and the scalar argument types.

CuPy passes a Python int to a kernel as 64 bits and a float as a double, whatever the kernel's signature
says, and RawKernel ignores strides: launchers pass contiguous arrays and the numpy scalar types below,
matching each kernel's parameter list.
"""

from __future__ import annotations

import functools

import numpy

from ._runtime import get_function

THREADS_PER_BLOCK = 256
MAX_BLOCKS = 1 << 20  # every kernel strides over its grid, so a capped grid still covers any element count

CTYPES = {
    numpy.dtype(numpy.float16): "__half",
    numpy.dtype(numpy.float32): "float",
    numpy.dtype(numpy.float64): "double",
}

_INT32_MAX = (1 << 31) - 1


def kernel_name(kernel: str, dtype) -> str:
    """The name expression of one instantiation, spelled as in ``_kernel_table.KERNELS``."""
    return f"{kernel}<{CTYPES[numpy.dtype(dtype)]}>"


def i32(v) -> numpy.int32:
    """A kernel's ``int`` parameter (sizes, strides, pads: each far below 2^31 for any real tensor)."""
    v = int(v)
    if not -_INT32_MAX - 1 <= v <= _INT32_MAX:
        raise OverflowError(f"gpuconv: size {v} does not fit the kernels' 32-bit size parameters")
    return numpy.int32(v)


@functools.lru_cache(maxsize=256)  # per geometry: converting 16 scalars costs more than the launch on tiny problems
def geometry_args(g) -> tuple:
    """The conv kernels' shared int parameters, in their order: N, C, H, W, K, R, S, P, Q, stride_h, stride_w,
    pad_top, pad_left, dil_h, dil_w, groups (the kernels without groups take the first 15)."""
    return tuple(i32(v) for v in (g.N, g.C, g.H, g.W, g.K, g.R, g.S, g.P, g.Q, g.stride_h, g.stride_w,
                                  g.pad_top, g.pad_left, g.dil_h, g.dil_w, g.groups))


def i64(v) -> numpy.int64:
    """A kernel's ``index_t`` (long long) parameter: element and plane counts."""
    return numpy.int64(int(v))


def pointer_or_null(a):
    """An optional array argument: the array, or a null pointer (CuPy passes a numpy.uint64 as its 8 raw
    bytes; the kernels test the pointer against nullptr)."""
    return a if a is not None else numpy.uint64(0)


def grid_blocks(total: int, threads: int = THREADS_PER_BLOCK) -> int:
    """Blocks for a grid-stride kernel over ``total`` elements."""
    return max(1, min(-(-total // threads), MAX_BLOCKS))


GRID_Y_MAX = 65535


def grid_2d(per_row: int, rows: int, threads: int = THREADS_PER_BLOCK) -> tuple:
    """(blocks along x, blocks along y) for a kernel whose x loop strides over ``per_row`` items and whose
    y loop strides over ``rows``: one thread per item of a row, one block row per row, both capped."""
    return grid_blocks(per_row, threads), max(1, min(rows, GRID_Y_MAX))


def launch(source_file: str, kernel: str, dtype, total: int, args: tuple, *, blocks=None,
           threads: int = THREADS_PER_BLOCK) -> None:
    """Runs ``kernel<dtype>`` of ``kernels/<source_file>`` over ``total`` work items on the current device
    and stream (nothing when total is 0). ``blocks`` (an int, or a tuple for a 2-D grid) defaults to one
    thread per item, capped."""
    if total <= 0:
        return
    function = get_function(source_file, kernel_name(kernel, dtype))
    if blocks is None:
        blocks = grid_blocks(total, threads)
    function(blocks if isinstance(blocks, tuple) else (blocks,), (threads,), args)
