"""The depthwise convolution passes: launchers of ``kernels/conv_depthwise.cu``.

Same interface as the other algorithms (``_conv_direct``, ``_conv_im2col``, ``implicit_gemm``): geometry
plus contiguous arrays on the current device; outputs from ``_alloc.empty``, every element written by one
kernel. ``supports(g, dtype, pass_name)`` says where it applies: groups == C (one input channel per
group, K = C * m for any channel multiplier m), float16 / float32 / float64, any filter, stride, dilation
and padding whose smallest tile fits the kernels' shared memory.

The launch plan (``plan``) is worked out here from the geometry alone, so results are bitwise
reproducible: a tile of ``images`` images x ``rows`` rows x ``threads_x * OUTPUTS_PER_THREAD`` columns of
the output (dgrad: of gx), one thread per row segment of OUTPUTS_PER_THREAD outputs spaced threads_x
apart; the staged window's row pitch avoids shared-memory bank conflicts between the rows one warp reads.
wgrad adds ``tiles_per_chunk``: the tiles of a channel one block sums before writing its partial sums to
a workspace (float32; float64 for float64) that a second kernel adds in chunk order.

Version 2 (no shared-memory staging, opt-in while unverified) is the experimental variant
``gpuconv/_cuda/experimental/depthwise_v2.py``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy

from . import _config, _launch
from ._defines import DEFINES
from ._alloc import empty
from ._launch import CTYPES, MAX_BLOCKS, geometry_args, grid_blocks, i32, i64, launch, pointer_or_null

SOURCE = "conv_depthwise.cu"
# Must equal the #defines of conv_depthwise.cu.
MAX_THREADS = DEFINES["DW_MAX_THREADS"]  # kernels/tunables.cuh, which conv_depthwise.cu includes
OUTPUTS_PER_THREAD = DEFINES["DW_OUTPUTS_PER_THREAD"]
SMEM_BYTES = DEFINES["DW_SMEM_BYTES"]
# Filters with a specialised kernel (loops unrolled, taps in registers); others use <T, 0, 0>.
SPECIALISED = ((3, 3),)
# The wgrad aims at about Config.depthwise_wgrad_blocks blocks (4096: several waves on an H100's 132 SMs at 8
# blocks each).
PASSES = ("fprop", "dgrad", "wgrad")
KERNELS = {"fprop": "conv2d_fprop_depthwise", "dgrad": "conv2d_dgrad_depthwise",
           "wgrad": "conv2d_wgrad_depthwise"}


def kernel_names() -> tuple:
    """Every instantiation of conv_depthwise.cu, as ``_kernel_table.KERNELS["conv_depthwise.cu"]`` lists."""
    names = tuple(f"{KERNELS[p]}<{t}, {r}, {s}>" for p in PASSES for t in ("__half", "float", "double")
                  for r, s in SPECIALISED + ((0, 0),))
    return names + tuple(f"conv2d_wgrad_depthwise_reduce<{t}>" for t in ("__half", "float", "double"))


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _acc_itemsize(dtype) -> int:
    """Bytes of the kernels' accumulator (float for float16 and float32, double for float64)."""
    return 8 if numpy.dtype(dtype) == numpy.float64 else 4


def _filter(g) -> tuple:
    """The (KR, KS) template arguments: the filter size when specialised, else (0, 0)."""
    specialised = _config.current().depthwise_specialised and (g.R, g.S) in SPECIALISED
    return (g.R, g.S) if specialised else (0, 0)


@dataclass(frozen=True)
class Plan:
    rows: int  # TY: output rows per tile
    threads_x: int  # TX: threads along a row; TW = TX * OUTPUTS_PER_THREAD columns per tile
    images: int  # PB: images per tile
    pitch: int  # row pitch of the staged window (elements)
    threads: int  # block size, a multiple of 32
    tiles_per_chunk: int = 1  # wgrad only


def _window(g, pass_name: str, rows: int, cols: int) -> tuple:
    """(IH, IW): the staged window of a rows x cols tile, as the kernel computes it."""
    if pass_name == "dgrad":
        return rows + (g.R - 1) * g.dil_h, cols + (g.S - 1) * g.dil_w
    return (rows - 1) * g.stride_h + (g.R - 1) * g.dil_h + 1, (cols - 1) * g.stride_w + (g.S - 1) * g.dil_w + 1


def _smem_elements(g, pass_name: str, images: int, rows: int, cols: int, pitch: int) -> int:
    ih, _ = _window(g, pass_name, rows, cols)
    need = images * ih * pitch
    if pass_name == "wgrad":
        need += images * rows * cols  # the gy tile
    else:
        need += g.R * g.S  # the weights
    return need


def _wavefronts(addresses, itemsize: int) -> int:
    """Shared-memory wavefronts of one warp's load of these element addresses (32 banks of 4 bytes)."""
    words_per = itemsize // 4
    banks: dict = {}
    for a in set(addresses):
        for w in range(a * words_per, (a + 1) * words_per):
            banks.setdefault(w % 32, set()).add(w)
    return max(len(v) for v in banks.values())


def _pitch(g, pass_name: str, images: int, rows: int, threads_x: int, iw: int, ih: int, itemsize: int) -> int:
    """The row pitch >= iw (within 32 more) whose first warp's read of the window has the fewest
    bank conflicts, the smallest such."""
    row_step, col_step = (1, 1) if pass_name == "dgrad" else (g.stride_h, g.stride_w)
    lanes = [t for t in range(min(32, images * rows * threads_x))]
    best = None
    for pitch in range(iw, iw + 32):
        addresses = [((t // (rows * threads_x)) * ih + ((t // threads_x) % rows) * row_step) * pitch
                     + (t % threads_x) * col_step for t in lanes]
        cost = _wavefronts(addresses, itemsize)
        if best is None or cost < best[0]:
            best = (cost, pitch)
    return best[1]


@functools.lru_cache(maxsize=1024)
def _plan(g, itemsize: int, pass_name: str, target_blocks: int):
    """The launch plan of one pass (module docstring), or None when even a one-row tile does not fit."""
    out_h, out_w = (g.H, g.W) if pass_name == "dgrad" else (g.P, g.Q)
    capacity = SMEM_BYTES // itemsize
    v = OUTPUTS_PER_THREAD
    col_tiles = _cdiv(out_w, 32 * v)
    tx = _cdiv(_cdiv(out_w, col_tiles), v)
    while True:
        cols = tx * v
        most_rows = max(1, min(out_h, MAX_THREADS // tx))
        while most_rows >= 1:
            rows = _cdiv(out_h, _cdiv(out_h, most_rows))  # even row tiles
            ih, iw = _window(g, pass_name, rows, cols)
            if _smem_elements(g, pass_name, 1, rows, cols, iw) <= capacity:
                break
            most_rows -= 1
        else:
            if tx == 1:
                return None
            tx = _cdiv(tx, 2)
            continue
        images = 1
        if rows >= out_h and cols >= out_w:  # a whole plane per image: pack several images per tile
            images = max(1, min(g.N, MAX_THREADS // (tx * rows)))
            while images > 1 and _smem_elements(g, pass_name, images, rows, cols, iw + 31) > capacity:
                images -= 1
        pitch = _pitch(g, pass_name, images, rows, tx, iw, ih, itemsize)
        if _smem_elements(g, pass_name, images, rows, cols, pitch) > capacity:
            pitch = iw
        threads = _cdiv(images * rows * tx, 32) * 32
        tiles_per_chunk = 1
        if pass_name == "wgrad":
            tiles = _cdiv(g.N, images) * _cdiv(g.P, rows) * _cdiv(g.Q, cols)
            tiles_per_chunk = max(1, min(tiles, _cdiv(g.K * tiles, target_blocks)))
        return Plan(rows, tx, images, pitch, threads, tiles_per_chunk)


def plan(g, dtype, pass_name: str):
    """The launch plan of ``pass_name`` for geometry g in dtype, or None when the kernels cannot run it."""
    return _plan(g, _acc_itemsize(dtype), pass_name, _config.current().depthwise_wgrad_blocks)


def supports(g, dtype, pass_name: str) -> bool:
    """True when this algorithm computes the pass: a depthwise layer (groups == C, so C/groups == 1 and
    K = C * m), a kernel dtype, a non-empty problem, and a tile that fits the shared memory."""
    if pass_name not in PASSES:
        raise ValueError(f"pass_name must be one of {PASSES}, got {pass_name!r}")
    try:
        dtype = numpy.dtype(dtype)
    except TypeError:
        return False
    if dtype not in CTYPES or g.groups != g.C or g.c_per_group != 1 or g.K % g.C != 0:
        return False
    if g.empty or g.K == 0:
        return False
    return plan(g, dtype, pass_name) is not None


def _name(kernel: str, dtype, g) -> str:
    r, s = _filter(g)
    return f"{kernel}<{CTYPES[numpy.dtype(dtype)]}, {r}, {s}>"


def _args(g, p: Plan) -> tuple:
    """Geometry then tile plan as the kernels' int parameters."""
    return geometry_args(g)[:15] + tuple(i32(v) for v in (p.rows, p.threads_x, p.images, p.pitch))


def _items(g, p: Plan, pass_name: str) -> int:
    out_h, out_w, channels = (g.H, g.W, g.C) if pass_name == "dgrad" else (g.P, g.Q, g.K)
    tiles = _cdiv(g.N, p.images) * _cdiv(out_h, p.rows) * _cdiv(out_w, p.threads_x * OUTPUTS_PER_THREAD)
    if pass_name == "wgrad":
        return g.K * _cdiv(tiles, p.tiles_per_chunk)
    return channels * tiles


def _checked_plan(g, dtype, pass_name: str) -> Plan:
    p = plan(g, dtype, pass_name)
    if p is None or g.groups != g.C or g.K % g.C != 0:
        raise ValueError(f"gpuconv: the depthwise kernels do not support {pass_name} of {g} in {dtype}")
    return p


def _run(kernel_name: str, dtype, items: int, threads: int, args: tuple) -> None:
    if items <= 0:
        return
    _launch.get_function(SOURCE, kernel_name)((min(items, MAX_BLOCKS),), (threads,), args)


# ------------------------------------------------------------------------------------------ the passes


def conv2d_fprop(g, x, w, bias=None):
    """y (N, K, P, Q), plus bias[k] when given (None: a null pointer, no bias term)."""
    p = _checked_plan(g, x.dtype, "fprop")
    y = empty(g.output_shape, x.dtype)
    _run(_name(KERNELS["fprop"], x.dtype, g), x.dtype, _items(g, p, "fprop"), p.threads,
         (x, w, pointer_or_null(bias), y) + _args(g, p))
    return y


def conv2d_dgrad(g, gy, w, bias=None):
    """gx (N, C, H, W), plus bias[c] when given (a transposed convolution's forward)."""
    p = _checked_plan(g, gy.dtype, "dgrad")
    gx = empty(g.input_shape, gy.dtype)
    _run(_name(KERNELS["dgrad"], gy.dtype, g), gy.dtype, _items(g, p, "dgrad"), p.threads,
         (gy, w, pointer_or_null(bias), gx) + _args(g, p))
    return gx


def conv2d_wgrad(g, x, gy):
    """gw (K, 1, R, S): per-chunk partial sums into a workspace, then added in chunk order."""
    p = _checked_plan(g, x.dtype, "wgrad")
    items = _items(g, p, "wgrad")
    chunks = items // g.K
    acc = numpy.float64 if numpy.dtype(x.dtype) == numpy.float64 else numpy.float32
    workspace = empty((g.K, chunks, g.R * g.S), acc)
    _run(_name(KERNELS["wgrad"], x.dtype, g), x.dtype, items, p.threads,
         (x, gy, workspace) + _args(g, p) + (i32(p.tiles_per_chunk),))
    gw = empty(g.weight_shape, x.dtype)
    launch(SOURCE, "conv2d_wgrad_depthwise_reduce", x.dtype, gw.size,
           (workspace, gw, i32(g.K), i32(g.R * g.S), i64(chunks)), blocks=grid_blocks(gw.size))
    return gw
