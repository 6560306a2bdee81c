"""Implicit-GEMM convolution on the GPU: kernels/implicit_gemm_{fprop,dgrad,wgrad}.cu.

The three passes of ``gpuconv._backend`` (arrays already contiguous cupy arrays, geometry checked), run as
GEMMs over views of the NCHW tensors that are never materialised (see kernels/implicit_gemm.cuh). Which
kernel runs:

    float16                        tensor cores, mma.m16n8k16, float32 accumulation      (sm_80 and newer)
    float32, GPUCONV_ALLOW_TF32=1  tensor cores in TF32, mma.m16n8k8 (opt-in, as PyTorch's allow_tf32)
    float32                        CUDA cores, register-tiled, 3-stage cp.async pipeline
    float32, GPUCONV_IGEMM_REFERENCE=1   the unpipelined tiled SIMT kernel, to check the others against
    float64                        not supported (``supports`` is False; the caller falls back)

The environment variables are read at each call. Tiles: BN = 64 when the GEMM has at most 64 columns,
else 128; BM = 128 unless that leaves fewer blocks than the GPU has SMs, then 64. wgrad splits its
reduction (N*P*Q) into fixed chunks so that there are about two blocks per SM, and adds the float32
partial sums in split order (deterministic).

Opt-in channels-last float16 kernels, not yet run on a GPU (``GPUCONV_UNVERIFIED``, see _unverified.py), take
the problems their module ``supports`` before the kernels above: ``igemm_nhwc`` fprop and stride-1 dgrad
(_igemm_nhwc.py), ``nhwc_dgrad`` strided dgrad (_igemm_nhwc_dgrad.py), ``nhwc_wgrad`` wgrad
(_igemm_nhwc_wgrad.py).
"""

from __future__ import annotations

import functools

import cupy
import numpy

from . import _alloc, _env, _unverified
from ._loader import get_function

SOURCES = {"fprop": "implicit_gemm_fprop.cu", "dgrad": "implicit_gemm_dgrad.cu", "wgrad": "implicit_gemm_wgrad.cu"}
TILES = ((128, 128), (128, 64), (64, 128), (64, 64))  # (BM, BN) instantiated for every kernel kind
SIMT_STAGES = 3
MMA_STAGES = 2  # float16 ignores it (register-staged); TF32 at 128x128x16 x 3 stages would pass 48 KB
REFERENCE_TILE = (64, 64)
THREADS = 256
SIMT_BK, MMA_BK = 8, {"__half": 32, "float": 16}

_INT32_LIMIT = (1 << 31) - 1 - 4096  # headroom for the last tile's row / k indices
_GRID_YZ_LIMIT = 65535


# ------------------------------------------------------------------------------------------- names


def kernel_name(pass_name: str, kind: str, ctype: str, bm: int, bn: int, stages: int) -> str:
    """The name expression of one kernel, spelled exactly as in ``_kernel_table.KERNELS``."""
    return f"conv2d_{pass_name}_implicit_gemm_{kind}<{ctype}, {bm}, {bn}, {stages}>"


def kernel_names(pass_name: str) -> tuple:
    """Every instantiation of one pass's source file (the kernel table lists these)."""
    names = [kernel_name(pass_name, "simt", "float", *REFERENCE_TILE, 1)]
    names += [kernel_name(pass_name, "simt", "float", bm, bn, SIMT_STAGES) for bm, bn in TILES]
    names += [kernel_name(pass_name, "mma", t, bm, bn, MMA_STAGES) for t in ("__half", "float") for bm, bn in TILES]
    if pass_name == "wgrad":
        names += ["conv2d_wgrad_reduce_splits<float>", "conv2d_wgrad_reduce_splits<__half>"]
    return tuple(names)


# ---------------------------------------------------------------------------------------- choices


def _tf32_allowed() -> bool:
    return _env.get("GPUCONV_ALLOW_TF32") == "1"


def _reference_requested() -> bool:
    return _env.get("GPUCONV_IGEMM_REFERENCE") == "1"


# Device properties, read once per device: Device().attributes queries every attribute of the device
# (about a hundred driver calls), too slow for every launch.
@functools.lru_cache(maxsize=None)
def _device_properties(device_id: int) -> tuple:
    device = cupy.cuda.Device(device_id)
    return int(device.compute_capability), int(device.attributes["MultiProcessorCount"])


def _compute_capability() -> int:
    return _device_properties(cupy.cuda.Device().id)[0]


def _sm_count() -> int:
    return _device_properties(cupy.cuda.Device().id)[1]


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _variant(dtype):
    """(kind, ctype, BK, uses tensor cores) for a dtype under the current environment."""
    if dtype == numpy.float16:
        return "mma", "__half", MMA_BK["__half"], True
    if _tf32_allowed():
        return "mma", "float", MMA_BK["float"], True
    return "simt", "float", SIMT_BK, False


def _tile(kind: str, rows: int, cols: int, batches: int) -> tuple:
    """(BM, BN) for a GEMM of rows x cols, repeated over `batches` grid.z slices. See the module doc."""
    if kind == "simt" and _reference_requested():
        return REFERENCE_TILE
    bn = 64 if cols <= 64 else 128
    bm = 128 if _cdiv(rows, 128) * _cdiv(cols, bn) * batches >= _sm_count() else 64
    return bm, bn


def _stages(kind: str) -> int:
    if kind == "simt":
        return 1 if _reference_requested() else SIMT_STAGES
    return MMA_STAGES


def _gemm_sizes(g, pass_name: str) -> tuple:
    """(rows, cols, reduction, grid.z) of the GEMMs of one pass, for the largest dgrad phase."""
    if pass_name == "fprop":
        return g.N * g.P * g.Q, g.k_per_group, g.c_per_group * g.R * g.S, g.groups
    if pass_name == "dgrad":
        rows = g.N * _cdiv(g.H, g.stride_h) * _cdiv(g.W, g.stride_w)
        return rows, g.c_per_group, g.k_per_group * g.R * g.S, g.groups * g.stride_h * g.stride_w
    return g.k_per_group, g.c_per_group * g.R * g.S, g.N * g.P * g.Q, g.groups


def supports(g, dtype, pass_name: str) -> bool:
    """Whether these kernels run this pass: float16 / float32, tensor cores only on sm_80+, GEMM indices in
    int32 (tensor offsets are 64-bit), grid y / z within CUDA's 65535."""
    dtype = numpy.dtype(dtype)
    if dtype not in (numpy.dtype(numpy.float16), numpy.dtype(numpy.float32)) or pass_name not in SOURCES:
        return False
    if _variant(dtype)[3] and _compute_capability() < 80:
        return False
    rows, cols, reduction, batches = _gemm_sizes(g, pass_name)
    sizes = (rows, cols, reduction, g.N * g.H * g.W, g.N * g.P * g.Q, g.H + g.pad_top, g.W + g.pad_left)
    if max(sizes) > _INT32_LIMIT:
        return False
    return _cdiv(cols, 64) <= _GRID_YZ_LIMIT and batches <= _GRID_YZ_LIMIT


# ------------------------------------------------------------------------------------------ launches


@functools.lru_cache(maxsize=256)
def _sizes(g) -> tuple:
    """The int32 size arguments every kernel takes, in its parameter order."""
    values = (g.N, g.C, g.H, g.W, g.K, g.R, g.S, g.P, g.Q, g.stride_h, g.stride_w, g.pad_top, g.pad_left,
              g.dil_h, g.dil_w, g.groups)
    return tuple(numpy.int32(v) for v in values)


def _pointer_or_null(a):
    # The kernels test the bias pointer against nullptr; CuPy passes a uint64 scalar as 8 raw bytes.
    return a if a is not None else numpy.uint64(0)


def _launch_gemm(pass_name: str, dtype, rows: int, cols: int, batches: int, args: tuple) -> None:
    kind, ctype, _, _ = _variant(dtype)
    bm, bn = _tile(kind, rows, cols, batches)
    name = kernel_name(pass_name, kind, ctype, bm, bn, _stages(kind))
    grid = (_cdiv(rows, bm), _cdiv(cols, bn), batches)
    get_function(SOURCES[pass_name], name)(grid, (THREADS,), args)


def _nhwc_for(g, dtype, pass_name: str):
    """The channels-last module when GPUCONV_UNVERIFIED turns on igemm_nhwc and it supports this pass, else
    None."""
    if not _unverified.enabled("igemm_nhwc"):
        return None
    from . import _igemm_nhwc

    return _igemm_nhwc if _igemm_nhwc.supports(g, dtype, pass_name) else None


def _nhwc_dgrad_for(g, dtype):
    """The channels-last strided-dgrad module when GPUCONV_UNVERIFIED turns on nhwc_dgrad and it supports this
    problem (stride > 1), else None."""
    if not _unverified.enabled("nhwc_dgrad"):
        return None
    from . import _igemm_nhwc_dgrad

    return _igemm_nhwc_dgrad if _igemm_nhwc_dgrad.supports(g, dtype) else None


def conv2d_fprop(g, x, w, bias=None):
    """y (N, K, P, Q) = conv2d(x, w) + bias[k]."""
    nhwc = _nhwc_for(g, x.dtype, "fprop")
    if nhwc is not None:
        return nhwc.conv2d_fprop(g, x, w, bias)
    y = _alloc.empty(g.output_shape, x.dtype)
    rows, cols, _, batches = _gemm_sizes(g, "fprop")
    _launch_gemm("fprop", x.dtype, rows, cols, batches, (x, w, _pointer_or_null(bias), y) + _sizes(g))
    return y


def conv2d_dgrad(g, gy, w, bias=None):
    """gx (N, C, H, W) = the gradient of conv2d in its input, + bias[c]; one grid.z slice per group and
    stride phase (blocks past a smaller phase's pixels exit at once)."""
    nhwc = _nhwc_for(g, gy.dtype, "dgrad")
    if nhwc is None:
        nhwc = _nhwc_dgrad_for(g, gy.dtype)
    if nhwc is not None:
        return nhwc.conv2d_dgrad(g, gy, w, bias)
    gx = _alloc.empty(g.input_shape, gy.dtype)
    rows, cols, _, batches = _gemm_sizes(g, "dgrad")
    _launch_gemm("dgrad", gy.dtype, rows, cols, batches, (gy, w, _pointer_or_null(bias), gx) + _sizes(g))
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


def _nhwc_wgrad_for(g, dtype):
    """The channels-last wgrad module when GPUCONV_UNVERIFIED turns on nhwc_wgrad and it supports this
    problem, else None."""
    if not _unverified.enabled("nhwc_wgrad"):
        return None
    from . import _igemm_nhwc_wgrad

    return _igemm_nhwc_wgrad if _igemm_nhwc_wgrad.supports(g, dtype) else None


def conv2d_wgrad(g, x, gy):
    """gw (K, C/groups, R, S): split-K partial sums in float32, then added in split order."""
    nhwc = _nhwc_wgrad_for(g, x.dtype)
    if nhwc is not None:
        return nhwc.conv2d_wgrad(g, x, gy)
    kind, ctype, bk, _ = _variant(x.dtype)
    rows, cols, reduction, groups = _gemm_sizes(g, "wgrad")
    bm, bn = _tile(kind, rows, cols, groups)
    splits, k_chunk = _wgrad_splits(rows, cols, reduction, groups, bm, bn, bk)
    workspace = _alloc.empty((splits, g.K, cols), numpy.float32)
    name = kernel_name("wgrad", kind, ctype, bm, bn, _stages(kind))
    grid = (_cdiv(rows, bm), _cdiv(cols, bn), groups * splits)
    args = (x, gy, workspace) + _sizes(g) + (numpy.int32(splits), numpy.int32(k_chunk))
    get_function(SOURCES["wgrad"], name)(grid, (THREADS,), args)

    gw = _alloc.empty(g.weight_shape, x.dtype)
    count = gw.size
    reduce = get_function(SOURCES["wgrad"], f"conv2d_wgrad_reduce_splits<{ctype}>")
    reduce((max(1, min(_cdiv(count, THREADS), 1 << 16)),), (THREADS,),
           (workspace, gw, numpy.int32(splits), numpy.int64(count)))
    return gw
