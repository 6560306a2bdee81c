"""Opt-in channels-last implicit-GEMM fprop for float16: kernels/implicit_gemm_nhwc.cu.

With ``GPUCONV_UNVERIFIED=igemm_nhwc`` (gpuconv/_cuda/experimental/__init__.py), ``implicit_gemm.conv2d_fprop`` hands float16 forward convolutions that this
module ``supports`` (groups == 1, C and K multiples of 8, sm_80 or newer) to ``conv2d_fprop`` below, and
``implicit_gemm.conv2d_dgrad`` the input gradients of such convolutions at stride 1 (``conv2d_dgrad``: the
same kernel on gy and the flipped filter):

    1. x (N, C, H, W) -> xh (N, H, W, C) and w (K, C, R, S) -> wh (K, R, S, C), one transpose kernel each
       (``nchw_to_nhwc``), into workspace arrays;
    2. ``conv2d_fprop_implicit_gemm_nhwc<__half, BM, BN, STAGES>``: an implicit GEMM whose operand tiles are
       16-byte chunks of 8 channels, copied with cp.async into a STAGES-deep shared-memory ring and read
       with ldmatrix into mma.sync m16n8k16 (float32 accumulation); it writes y (N, K, P, Q) in NCHW.

Tiles follow ``implicit_gemm._tile`` (BN = 64 for K <= 64, else 128; BM = 64 when 128 would leave fewer
blocks than SMs). Without the variable nothing here runs.
"""

from __future__ import annotations


import numpy

from .. import _alloc, _runtime
from .._defines import NHWC_STAGES
from .. import implicit_gemm as _igemm
from .._launch import geometry_args, pointer_or_null
from .._runtime import get_function

SOURCE = "experimental/implicit_gemm_nhwc.cu"
LAYOUT_KERNEL = "nchw_to_nhwc<__half>"
STAGES = NHWC_STAGES  # static shared memory <= 48 KB each (one definition, also for the dgrad and wgrad)
THREADS = 256
_LAYOUT_GRID_Z = 65535
_SAFE_DILATION_SPAN = 1 << 30  # the kernel's filter position stays far from int32 overflow


def gemm_name(pass_name: str, bm: int, bn: int) -> str:
    """The name expression of one channels-last GEMM of ``pass_name`` (fprop, dgrad, wgrad): every tile's
    pipeline depth is STAGES[tile], the same in the three kernel files."""
    return f"conv2d_{pass_name}_implicit_gemm_nhwc<__half, {bm}, {bn}, {STAGES[(bm, bn)]}>"


def kernel_name(bm: int, bn: int) -> str:
    """The name expression of one fprop instantiation."""
    return gemm_name("fprop", bm, bn)


def kernel_names() -> tuple:
    """Every instantiation of implicit_gemm_nhwc.cu (the kernel table lists these)."""
    return (LAYOUT_KERNEL,) + tuple(kernel_name(bm, bn) for bm, bn in _igemm.TILES)


def kernels() -> dict:
    """{source file: instantiations} (a registry declaration)."""
    return {SOURCE: kernel_names()}


def check_aligned(*arrays) -> None:
    """The kernels copy 16-byte chunks (8 channels at C % 8 == 0): every base must be 16-byte aligned. A real
    check, not an assert, so that ``python -O`` keeps it (CuPy's pool aligns to 256 bytes: it never fires)."""
    for a in arrays:
        if a.data.ptr % 16:
            raise RuntimeError(f"gpuconv: an NHWC workspace of shape {a.shape} is not 16-byte aligned "
                               f"(address {a.data.ptr:#x})")


def supports(g, dtype, pass_name: str) -> bool:
    """True for a float16 fprop with groups == 1, C % 8 == 0 and K % 8 == 0 (16-byte chunks of channels),
    GEMM and pixel indices within int32, on compute capability 8.0 or newer; and for the dgrad of a stride-1
    convolution whose ``dgrad_as_fprop`` is such an fprop with non-negative padding."""
    if pass_name == "dgrad":
        if (g.stride_h, g.stride_w, g.groups) != (1, 1, 1):
            return False
        f = g.dgrad_as_fprop()
        return f.pad_top >= 0 and f.pad_left >= 0 and supports(f, dtype, "fprop")
    if pass_name != "fprop" or numpy.dtype(dtype) != numpy.dtype(numpy.float16) or g.groups != 1:
        return False
    if g.C % 8 or g.K % 8 or g.C == 0 or g.K == 0:
        return False
    sizes = (g.N * g.P * g.Q, g.C * g.R * g.S, g.N * g.H * g.W, g.K, g.H + g.pad_top, g.W + g.pad_left)
    if max(sizes) > _igemm._INT32_LIMIT:
        return False
    if max((g.R + 1) * g.dil_h, (g.S + 1) * g.dil_w, g.H, g.W) >= _SAFE_DILATION_SPAN:
        return False
    if _igemm._cdiv(g.K, 64) > _igemm._GRID_YZ_LIMIT or _igemm._cdiv(g.C, 32) > _igemm._GRID_YZ_LIMIT:
        return False
    return _igemm._compute_capability() >= 80


def _sizes(g) -> tuple:
    """The kernel's int32 size arguments: the conv kernels' shared ones without groups (always 1 here)."""
    return geometry_args(g)[:15]


def _to_nhwc(a, batch: int, channels: int, plane: int):
    """(batch, channels, plane...) contiguous -> a new (batch, plane, channels) array (workspace)."""
    out = _alloc.empty((batch, plane, channels), a.dtype)
    if out.size:
        grid = (_igemm._cdiv(plane, 32), _igemm._cdiv(channels, 32), min(batch, _LAYOUT_GRID_Z))
        get_function(SOURCE, LAYOUT_KERNEL)(grid, (THREADS,), (a, out, numpy.int32(batch), numpy.int32(channels),
                                                               numpy.int32(plane)))
    return out


def conv2d_fprop(g, x, w, bias=None):
    """y (N, K, P, Q) = conv2d(x, w) + bias[k]; x, w, bias contiguous float16 cupy arrays."""
    xh = _to_nhwc(x, g.N, g.C, g.H * g.W)
    wh = _to_nhwc(w, g.K, g.C, g.R * g.S)
    # 16-byte chunks: C % 8 == 0 puts every pixel's channels on a 16-byte boundary of an aligned base.
    check_aligned(xh, wh)
    y = _alloc.empty(g.output_shape, x.dtype)
    rows, cols = g.N * g.P * g.Q, g.K
    if rows == 0 or cols == 0:
        return y
    bm, bn = _igemm._tile(_igemm.MMA_HALF, rows, cols, 1)
    grid = (_igemm._cdiv(rows, bm), _igemm._cdiv(cols, bn), 1)
    get_function(SOURCE, kernel_name(bm, bn))(grid, (THREADS,), (xh, wh, pointer_or_null(bias), y) + _sizes(g))
    return y


def conv2d_dgrad(g, gy, w, bias=None):
    """gx (N, C, H, W) of a stride-1, groups-1 convolution, + bias[c]: the forward convolution of gy with
    the flipped, channel-swapped filter (``ConvGeometry.dgrad_as_fprop``) through the kernel above."""
    flipped = _runtime.xp().ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C, K, R, S)
    return conv2d_fprop(g.dgrad_as_fprop(), gy, flipped, bias)
