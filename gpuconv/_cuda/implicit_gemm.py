"""Implicit-GEMM convolution on the GPU: kernels/implicit_gemm_{fprop,dgrad,wgrad}.cu, four variants.

The three passes of ``gpuconv._backend`` (arrays already contiguous cupy arrays, geometry checked), run as
GEMMs over views of the NCHW tensors that are never materialised (see kernels/implicit_gemm.cuh). Each
``Kind`` below is one variant of the registry (``_registry``), which picks among them:

    MMA_HALF    float16: tensor cores, mma.m16n8k16, float32 accumulation             (sm_80 and newer)
    MMA_TF32    float32 with GPUCONV_ALLOW_TF32=1: tensor cores in TF32, mma.m16n8k8 (as PyTorch's allow_tf32)
    REFERENCE   float32 with GPUCONV_IGEMM_REFERENCE=1: the unpipelined tiled SIMT kernel, to check the others
    SIMT        float32: CUDA cores, register-tiled, 3-stage cp.async pipeline
    float64     not supported (no variant; the selection falls back)

Tiles: BN = 64 when the GEMM has at most 64 columns, else 128; BM = 128 unless that leaves fewer blocks than
the GPU has SMs, then 64. wgrad splits its reduction (N*P*Q) into fixed chunks so that there are about two
blocks per SM, and adds the float32 partial sums in split order (deterministic).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy

from . import _alloc, _config, _runtime
from ._launch import geometry_args, pointer_or_null
from ._runtime import get_function

SOURCES = {"fprop": "implicit_gemm_fprop.cu", "dgrad": "implicit_gemm_dgrad.cu", "wgrad": "implicit_gemm_wgrad.cu"}
TILES = ((128, 128), (128, 64), (64, 128), (64, 64))  # (BM, BN) instantiated for every kernel kind
SIMT_STAGES = 3
MMA_STAGES = 2  # float16 ignores it (register-staged); TF32 at 128x128x16 x 3 stages would pass 48 KB
REFERENCE_TILE = (64, 64)
THREADS = 256
SIMT_BK = 8

_INT32_LIMIT = (1 << 31) - 1 - 4096  # headroom for the last tile's row / k indices
_GRID_YZ_LIMIT = 65535


# ------------------------------------------------------------------------------------------- names


class Kind(NamedTuple):
    """One kernel kind: its name part, element type, k-tile depth, tensor cores, pipeline stages, and a
    fixed tile (the reference kernel) or None (the tile rule)."""
    kind: str
    ctype: str
    bk: int
    tensor_cores: bool
    stages: int
    fixed_tile: tuple | None = None


MMA_HALF = Kind("mma", "__half", 32, True, MMA_STAGES)
MMA_TF32 = Kind("mma", "float", 16, True, MMA_STAGES)
REFERENCE = Kind("simt", "float", SIMT_BK, False, 1, REFERENCE_TILE)
SIMT = Kind("simt", "float", SIMT_BK, False, SIMT_STAGES)
DTYPE = {MMA_HALF: numpy.dtype(numpy.float16), MMA_TF32: numpy.dtype(numpy.float32),
         REFERENCE: numpy.dtype(numpy.float32), SIMT: numpy.dtype(numpy.float32)}


def kernel_name(pass_name: str, kind: str, ctype: str, bm: int, bn: int, stages: int) -> str:
    """The name expression of one kernel (the kernel table lists every one of ``kernel_names``)."""
    return f"conv2d_{pass_name}_implicit_gemm_{kind}<{ctype}, {bm}, {bn}, {stages}>"


def kernel_names(pass_name: str, kinds=(REFERENCE, SIMT, MMA_HALF, MMA_TF32)) -> tuple:
    """The instantiations of one pass's source file that ``kinds`` launch (the wgrad reduction of each
    element type included)."""
    names = []
    for k in kinds:
        tiles = (k.fixed_tile,) if k.fixed_tile else TILES
        names += [kernel_name(pass_name, k.kind, k.ctype, bm, bn, k.stages) for bm, bn in tiles]
    if pass_name == "wgrad":
        names += [f"conv2d_wgrad_reduce_splits<{c}>" for c in ("float", "__half") if any(k.ctype == c for k in kinds)]
    return tuple(names)


def kernels(kinds) -> dict:
    """{source file: instantiations} of ``kinds`` over the three passes (a registry declaration)."""
    return {SOURCES[p]: kernel_names(p, kinds) for p in SOURCES}


# ---------------------------------------------------------------------------------------- choices


def _compute_capability() -> int:
    """The compute capability of the current device, or the configured one (a tunable)."""
    return _config.current().compute_capability or _runtime.device_properties()[0]


def _sm_count() -> int:
    """The SM count of the current device, or the configured one (a tunable)."""
    return _config.current().sm_count or _runtime.device_properties()[1]


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _tile(kind: Kind, rows: int, cols: int, batches: int) -> tuple:
    """(BM, BN) for a GEMM of rows x cols, repeated over `batches` grid.z slices. See the module doc."""
    if kind.fixed_tile:
        return kind.fixed_tile
    bn = 64 if cols <= 64 else 128
    bm = 128 if _cdiv(rows, 128) * _cdiv(cols, bn) * batches >= _sm_count() else 64
    return bm, bn


def _gemm_sizes(g, pass_name: str) -> tuple:
    """(rows, cols, reduction, grid.z) of the GEMMs of one pass, for the largest dgrad phase."""
    if pass_name == "fprop":
        return g.N * g.P * g.Q, g.k_per_group, g.c_per_group * g.R * g.S, g.groups
    if pass_name == "dgrad":
        rows = g.N * _cdiv(g.H, g.stride_h) * _cdiv(g.W, g.stride_w)
        return rows, g.c_per_group, g.k_per_group * g.R * g.S, g.groups * g.stride_h * g.stride_w
    return g.k_per_group, g.c_per_group * g.R * g.S, g.N * g.P * g.Q, g.groups


def supports(kind: Kind, g, dtype, pass_name: str) -> bool:
    """Whether ``kind`` runs this pass: its dtype, tensor cores only on sm_80+, GEMM indices in int32
    (tensor offsets are 64-bit), grid y / z within CUDA's 65535."""
    if numpy.dtype(dtype) != DTYPE[kind] or pass_name not in SOURCES:
        return False
    if kind.tensor_cores and _compute_capability() < 80:
        return False
    rows, cols, reduction, batches = _gemm_sizes(g, pass_name)
    sizes = (rows, cols, reduction, g.N * g.H * g.W, g.N * g.P * g.Q, g.H + g.pad_top, g.W + g.pad_left)
    if max(sizes) > _INT32_LIMIT:
        return False
    return _cdiv(cols, 64) <= _GRID_YZ_LIMIT and batches <= _GRID_YZ_LIMIT


# ------------------------------------------------------------------------------------------ launches


def _launch_gemm(kind: Kind, pass_name: str, rows: int, cols: int, batches: int, args: tuple) -> None:
    bm, bn = _tile(kind, rows, cols, batches)
    name = kernel_name(pass_name, kind.kind, kind.ctype, bm, bn, kind.stages)
    grid = (_cdiv(rows, bm), _cdiv(cols, bn), batches)
    get_function(SOURCES[pass_name], name)(grid, (THREADS,), args)


def conv2d_fprop(kind: Kind, g, x, w, bias=None):
    """y (N, K, P, Q) = conv2d(x, w) + bias[k]."""
    y = _alloc.empty(g.output_shape, x.dtype)
    rows, cols, _, batches = _gemm_sizes(g, "fprop")
    _launch_gemm(kind, "fprop", rows, cols, batches, (x, w, pointer_or_null(bias), y) + geometry_args(g))
    return y


def conv2d_dgrad(kind: Kind, g, gy, w, bias=None):
    """gx (N, C, H, W) = the gradient of conv2d in its input, + bias[c]; one grid.z slice per group and
    stride phase (blocks past a smaller phase's pixels exit at once)."""
    gx = _alloc.empty(g.input_shape, gy.dtype)
    rows, cols, _, batches = _gemm_sizes(g, "dgrad")
    _launch_gemm(kind, "dgrad", rows, cols, batches, (gy, w, pointer_or_null(bias), gx) + geometry_args(g))
    return gx


def _wgrad_splits(rows: int, cols: int, reduction: int, groups: int, bm: int, bn: int, bk: int) -> tuple:
    """(splits, k_chunk): about two blocks per SM, each split at least 8 k-tiles long, k_chunk a multiple of
    BK, and no empty split."""
    blocks = _cdiv(rows, bm) * _cdiv(cols, bn) * groups
    wanted = max(1, _cdiv(2 * _sm_count(), blocks))
    most = max(1, min(reduction // (8 * bk), _GRID_YZ_LIMIT // groups, 256))
    splits = min(wanted, most)
    k_chunk = _cdiv(_cdiv(reduction, splits), bk) * bk
    return _cdiv(reduction, k_chunk), k_chunk


def conv2d_wgrad(kind: Kind, g, x, gy):
    """gw (K, C/groups, R, S): split-K partial sums in float32, then added in split order."""
    ctype = kind.ctype
    rows, cols, reduction, groups = _gemm_sizes(g, "wgrad")
    bm, bn = _tile(kind, rows, cols, groups)
    splits, k_chunk = _wgrad_splits(rows, cols, reduction, groups, bm, bn, kind.bk)
    workspace = _alloc.empty((splits, g.K, cols), numpy.float32)
    name = kernel_name("wgrad", kind.kind, ctype, bm, bn, kind.stages)
    grid = (_cdiv(rows, bm), _cdiv(cols, bn), groups * splits)
    args = (x, gy, workspace) + geometry_args(g) + (numpy.int32(splits), numpy.int32(k_chunk))
    get_function(SOURCES["wgrad"], name)(grid, (THREADS,), args)

    gw = _alloc.empty(g.weight_shape, x.dtype)
    count = gw.size
    reduce = get_function(SOURCES["wgrad"], f"conv2d_wgrad_reduce_splits<{ctype}>")
    reduce((max(1, min(_cdiv(count, THREADS), 1 << 16)),), (THREADS,),
           (workspace, gw, numpy.int32(splits), numpy.int64(count)))
    return gw
