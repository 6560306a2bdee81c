"""Opt-in channels-last implicit-GEMM dgrad of strided convolutions, float16: kernels/implicit_gemm_nhwc_dgrad.cu.

With ``GPUCONV_UNVERIFIED=nhwc_dgrad`` (gpuconv/_cuda/_unverified.py), ``implicit_gemm.conv2d_dgrad`` hands
the float16 input gradients that this module ``supports`` (stride > 1 along an axis, groups == 1, C and K
multiples of 8, sm_80 or newer) to ``conv2d_dgrad`` below; conv_transpose2d's forward is such a dgrad.
(Stride 1 stays with ``_igemm_nhwc``'s fprop-of-the-flipped-filter path under ``igemm_nhwc``, or with the
existing kernels.)

    1. gy (N, K, P, Q) -> gyh (N, P, Q, K) and w (K, C, R, S), viewed as (K, C*R*S), -> wt (C, R, S, K), with the
       layout kernel of implicit_gemm_nhwc.cu (``_igemm_nhwc._to_nhwc``), into workspace arrays;
    2. ``conv2d_dgrad_implicit_gemm_nhwc<__half, BM, BN, STAGES>``: one GEMM per stride phase (grid.z), only the
       taps that hit the phase's pixels, 16-byte cp.async copies of 8 filters, ldmatrix, mma.sync m16n8k16;
       it writes gx (N, C, H, W) in NCHW with the bias.

Tiles follow ``implicit_gemm._tile`` for the largest phase (BN = 64 for C <= 64, else 128; BM = 64 when 128
would leave fewer blocks than SMs). Without the variable nothing here runs.
"""

from __future__ import annotations

import numpy

from . import _alloc, _igemm_nhwc
from . import implicit_gemm as _igemm
from ._kernel_table import NHWC_STAGES
from ._loader import get_function

SOURCE = "implicit_gemm_nhwc_dgrad.cu"
STAGES = NHWC_STAGES  # static shared memory <= 48 KB each
THREADS = 256
_TAP_HEADROOM = 4  # the kernel's tap position runs at most ceil(32 / K) <= 4 taps past the last one


def kernel_name(bm: int, bn: int) -> str:
    """The name expression of one instantiation, spelled exactly as in ``_kernel_table.KERNELS``."""
    return f"conv2d_dgrad_implicit_gemm_nhwc<__half, {bm}, {bn}, {STAGES[(bm, bn)]}>"


def kernel_names() -> tuple:
    """Every instantiation of implicit_gemm_nhwc_dgrad.cu (the kernel table lists these)."""
    return tuple(kernel_name(bm, bn) for bm, bn in _igemm.TILES)


def _largest_phase_rows(g) -> int:
    return g.N * _igemm._cdiv(g.H, g.stride_h) * _igemm._cdiv(g.W, g.stride_w)


def supports(g, dtype, pass_name: str = "dgrad") -> bool:
    """True for a float16 dgrad with a stride above 1, groups == 1, C % 8 == 0 and K % 8 == 0 (16-byte chunks
    of filters), non-negative top / left padding, GEMM and pixel indices within int32, grids within CUDA's
    limits, on compute capability 8.0 or newer."""
    if pass_name != "dgrad" or numpy.dtype(dtype) != numpy.dtype(numpy.float16) or g.groups != 1:
        return False
    if (g.stride_h, g.stride_w) == (1, 1) or g.pad_top < 0 or g.pad_left < 0:
        return False
    if g.C % 8 or g.K % 8 or 0 in (g.C, g.K, g.N, g.H, g.W, g.P, g.Q):
        return False
    taps_span = (g.R + _TAP_HEADROOM * g.stride_h) * g.S * g.K
    sizes = (g.N * g.H * g.W, g.N * g.P * g.Q, g.P * g.Q, g.C * g.R * g.S, taps_span, g.H + g.pad_top,
             g.W + g.pad_left)
    if max(sizes) > _igemm._INT32_LIMIT:
        return False
    # The kernel's tap offsets (tr, ts up to (R + 4) * dil / stride, tr*Q + ts, and a row past M's -2^30 - tr)
    # stay far from int32 overflow with the bound the fprop and wgrad modules use.
    if max((g.R + 1) * g.dil_h, (g.S + 1) * g.dil_w, g.H, g.W) >= _igemm_nhwc._SAFE_DILATION_SPAN:
        return False
    grid_yz = (_igemm._cdiv(g.C, 64), g.stride_h * g.stride_w, _igemm._cdiv(g.K, 32))
    if max(grid_yz) > _igemm._GRID_YZ_LIMIT:
        return False
    return _igemm._compute_capability() >= 80


def tile(g) -> tuple:
    """(BM, BN) of this problem (``implicit_gemm._tile`` over the largest phase)."""
    return _igemm._tile("mma", _largest_phase_rows(g), g.C, g.stride_h * g.stride_w)


def _sizes(g) -> tuple:
    """The kernel's int32 size arguments, in its parameter order (no groups: always 1 here)."""
    return _igemm_nhwc._sizes(g)


def conv2d_dgrad(g, gy, w, bias=None):
    """gx (N, C, H, W) + bias[c] of a strided, groups-1 convolution; gy, w, bias contiguous float16 cupy
    arrays."""
    gyh = _igemm_nhwc._to_nhwc(gy, g.N, g.K, g.P * g.Q)
    wt = _igemm_nhwc._to_nhwc(w, 1, g.K, g.C * g.R * g.S)
    # 16-byte chunks: K % 8 == 0 puts every chunk on a 16-byte boundary of an aligned base.
    assert gyh.data.ptr % 16 == 0 and wt.data.ptr % 16 == 0, "gpuconv: NHWC workspace not 16-byte aligned"
    gx = _alloc.empty(g.input_shape, gy.dtype)
    bm, bn = tile(g)
    grid = (_igemm._cdiv(_largest_phase_rows(g), bm), _igemm._cdiv(g.C, bn), g.stride_h * g.stride_w)
    get_function(SOURCE, kernel_name(bm, bn))(grid, (THREADS,),
                                              (gyh, wt, _igemm._pointer_or_null(bias), gx) + _sizes(g))
    return gx
