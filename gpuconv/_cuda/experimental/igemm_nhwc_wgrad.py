"""Opt-in channels-last implicit-GEMM wgrad for float16: kernels/implicit_gemm_nhwc_wgrad.cu.

With ``GPUCONV_UNVERIFIED=nhwc_wgrad`` (gpuconv/_cuda/experimental/__init__.py), ``implicit_gemm.conv2d_wgrad`` hands
the float16 weight gradients that this module ``supports`` (groups == 1, C and K multiples of 8, sm_80 or
newer) to ``conv2d_wgrad`` below:

    1. x (N, C, H, W) -> xh (N, H, W, C) and gy (N, K, P, Q) -> gyh (N, P, Q, K), with the layout kernel of
       implicit_gemm_nhwc.cu (``_igemm_nhwc._to_nhwc``), into workspace arrays;
    2. ``conv2d_wgrad_implicit_gemm_nhwc<__half, BM, BN, STAGES>``: the GEMM gw (K x R*S*C) = gyh^T * im2col(xh)
       with the reduction over N*P*Q cut into ``splits`` fixed chunks, each writing float32 partial sums to a
       workspace (splits, K, R*S*C); 16-byte cp.async copies, ldmatrix.trans, mma.sync m16n8k16;
    3. ``conv2d_wgrad_nhwc_reduce<__half>``: adds the splits in order (deterministic) and writes gw (K, C, R, S).

Tiles: BM = 64 when K <= 64, else 128; BN = 64 when R*S*C <= 64, else 128 (the larger tile reads half as
much shared memory per mma; the splits, not small tiles, fill the GPU). Splits (``choose_splits``): the
count, between 1 and 256 with at least 8 k-tiles of 32 pixels each, that minimises a two-term estimate:
the GEMM's time at full waves divided by the fraction of block slots its last wave fills, plus the
workspace traffic each split adds (its float32 K x R*S*C partial written once and read once). Without the
variable nothing here runs.
"""

from __future__ import annotations

import functools

import numpy

from .. import _alloc, _config
from .. import implicit_gemm as _igemm
from .._launch import geometry_args, pointer_or_null
from .._runtime import get_function
from . import igemm_nhwc as _igemm_nhwc

SOURCE = "experimental/implicit_gemm_nhwc_wgrad.cu"
REDUCE_KERNEL = "conv2d_wgrad_nhwc_reduce<__half>"
BK = 32  # pixels per k-tile (the kernel's igemm::nhwc_wgrad::BK)
THREADS = 256
_REDUCE_TILE = 32
_GRID_Z = 65535
# Blocks per SM of each tile: MinBlocks<BM, BN> of kernels/implicit_gemm_nhwc.cuh (its __launch_bounds__).
MIN_BLOCKS = {(128, 128): 2, (128, 64): 3, (64, 128): 3, (64, 64): 4}
MAX_SPLITS = 256
MIN_TILES_PER_SPLIT = 8
# The split choice's two rates are tunables (``_config.Config.nhwc_gemm_rate``, ``nhwc_workspace_rate``):
# estimates for an H100, NOT measured (no GPU has run this kernel; bench/notes/history.md, "NHWC wgrad split
# rates").


def kernel_name(bm: int, bn: int) -> str:
    """The name expression of one wgrad GEMM instantiation."""
    return _igemm_nhwc.gemm_name("wgrad", bm, bn)


def kernels() -> dict:
    """{source file: instantiations}, the layout kernel of implicit_gemm_nhwc.cu included (a registry
    declaration)."""
    return {SOURCE: kernel_names(), _igemm_nhwc.SOURCE: (_igemm_nhwc.LAYOUT_KERNEL,)}


def kernel_names() -> tuple:
    """Every instantiation of implicit_gemm_nhwc_wgrad.cu (the kernel table lists these)."""
    return tuple(kernel_name(bm, bn) for bm, bn in _igemm.TILES) + (REDUCE_KERNEL,)


def supports(g, dtype, pass_name: str = "wgrad") -> bool:
    """True for a float16 wgrad with groups == 1, C % 8 == 0 and K % 8 == 0 (16-byte chunks of channels and
    of filters), GEMM and pixel indices within int32, grids within CUDA's limits, on compute capability 8.0
    or newer."""
    if pass_name != "wgrad" or numpy.dtype(dtype) != numpy.dtype(numpy.float16) or g.groups != 1:
        return False
    if g.C % 8 or g.K % 8 or 0 in (g.C, g.K, g.N, g.P, g.Q):
        return False
    sizes = (g.N * g.P * g.Q + BK, g.C * g.R * g.S, g.N * g.H * g.W, g.P * g.Q, g.K, g.H + g.pad_top,
             g.W + g.pad_left)
    if max(sizes) > _igemm._INT32_LIMIT:
        return False
    if max((g.R + 1) * g.dil_h, (g.S + 1) * g.dil_w, g.H, g.W) >= _igemm_nhwc._SAFE_DILATION_SPAN:
        return False
    grid_yz = (_igemm._cdiv(g.C * g.R * g.S, 64), _igemm._cdiv(g.C, 32), _igemm._cdiv(g.K, 32),
               _igemm._cdiv(g.R * g.S, _REDUCE_TILE))
    if max(grid_yz) > _igemm._GRID_YZ_LIMIT:
        return False
    return _igemm._compute_capability() >= 80


def tile(rows: int, cols: int) -> tuple:
    """(BM, BN) for the wgrad GEMM of rows = K filters by cols = R*S*C (see the module doc)."""
    return (64 if rows <= 64 else 128), (64 if cols <= 64 else 128)


def _sizes(g) -> tuple:
    """The kernel's int32 size arguments: the conv kernels' shared ones without groups (always 1 here)."""
    return geometry_args(g)[:15]


@functools.lru_cache(maxsize=256)
def choose_splits(rows: int, cols: int, reduction: int, bm: int, bn: int, sm_count: int,
                  gemm_rate: float = 450e12, workspace_rate: float = 2.5e12) -> int:
    """The split count s in [1, most] (most: 256, or fewer so that each split has 8 k-tiles) minimising
    t_gemm / fill(s) + s * t_split, where fill(s) = blocks*s / (ceil(blocks*s / slots) * slots) is the
    fraction of the block slots (MIN_BLOCKS per SM) its waves use, t_gemm = 2*rows*cols*reduction / gemm_rate
    and t_split = rows*cols*8 bytes / workspace_rate (both rates unmeasured estimates, see above). Ties go
    to the smaller s."""
    blocks = _igemm._cdiv(rows, bm) * _igemm._cdiv(cols, bn)
    slots = MIN_BLOCKS[(bm, bn)] * sm_count
    most = max(1, min(reduction // (MIN_TILES_PER_SPLIT * BK), MAX_SPLITS))
    t_gemm = 2.0 * rows * cols * reduction / gemm_rate
    t_split = rows * cols * 8.0 / workspace_rate

    def cost(s):
        fill = blocks * s / (_igemm._cdiv(blocks * s, slots) * slots)
        return t_gemm / fill + s * t_split

    return min(range(1, most + 1), key=lambda s: (cost(s), s))


def plan(g) -> tuple:
    """(BM, BN, splits, k_chunk) of this problem: k_chunk a multiple of BK, every split non-empty."""
    rows, cols, reduction = g.K, g.R * g.S * g.C, g.N * g.P * g.Q
    bm, bn = tile(rows, cols)
    config = _config.current()
    wanted = choose_splits(rows, cols, reduction, bm, bn, _igemm._sm_count(), config.nhwc_gemm_rate,
                           config.nhwc_workspace_rate)
    k_chunk = _igemm._cdiv(_igemm._cdiv(reduction, wanted), BK) * BK
    return bm, bn, _igemm._cdiv(reduction, k_chunk), k_chunk


def conv2d_wgrad(g, x, gy):
    """gw (K, C, R, S) of a groups-1 convolution; x, gy contiguous float16 cupy arrays, N*P*Q > 0."""
    xh = _igemm_nhwc._to_nhwc(x, g.N, g.C, g.H * g.W)
    gyh = _igemm_nhwc._to_nhwc(gy, g.N, g.K, g.P * g.Q)
    # 16-byte chunks: C % 8 == 0 and K % 8 == 0 put every chunk on a 16-byte boundary of an aligned base.
    _igemm_nhwc.check_aligned(xh, gyh)
    bm, bn, splits, k_chunk = plan(g)
    cols, RS = g.R * g.S * g.C, g.R * g.S
    workspace = _alloc.empty((splits, g.K, cols), numpy.float32)
    grid = (_igemm._cdiv(g.K, bm), _igemm._cdiv(cols, bn), splits)
    get_function(SOURCE, kernel_name(bm, bn))(
        grid, (THREADS,), (xh, gyh, workspace) + _sizes(g) + (numpy.int32(splits), numpy.int32(k_chunk)))

    gw = _alloc.empty(g.weight_shape, x.dtype)
    grid = (_igemm._cdiv(g.C, _REDUCE_TILE), _igemm._cdiv(RS, _REDUCE_TILE), min(g.K, _GRID_Z))
    get_function(SOURCE, REDUCE_KERNEL)(grid, (THREADS,), (workspace, gw, numpy.int32(splits), numpy.int32(g.K),
                                                           numpy.int32(g.C), numpy.int32(RS)))
    return gw
