"""Depthwise convolution, version 2 (experimental: ``GPUCONV_UNVERIFIED=depthwise_v2``): the launchers of
``kernels/experimental/conv_depthwise_v2.cuh``, instantiated by ``conv_depthwise_v2.cu`` for 3x3 filters and
``conv_depthwise_v2_5x5.cu`` for 5x5.

No shared-memory staging; each thread owns V2_ROWS (7) output rows x V adjacent columns (V = 8 for the float16
3x3 stride-1 fprop, else 4), loads its input rows into registers as 4-element vectors (16 bytes float32, 8 bytes
float16) ahead of its arithmetic, and finishes an output row as soon as its last input row is in. It runs
(``supports``) for float16 / float32 layers with groups == C, a 3x3 or 5x5 filter, stride 1x1 or 2x2,
dilation 1 and any padding: fprop (any channel multiplier), the stride-1 dgrad with channel multiplier 1
(an fprop of gy with the flipped filter), the stride-2 dgrad with multiplier 1 and pads of the parity of
(R-1)/2 (a gather over the taps that reach each gx element) and wgrad (any multiplier; per-chunk partial
sums added in order by version 1's ``conv2d_wgrad_depthwise_reduce``, deterministic). Everything else runs
version 1 (``gpuconv/_cuda/_conv_depthwise.py``). Each kernel is compiled for one body (``v2_body``): vectors
at the column offset of padding (R-1)/2 or 0 when W % 4 == 0 and the array is aligned, else element by
element; vector stores need Q % 4 == 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy

from .. import _config, _launch
from .._defines import DEFINES
from .._alloc import empty
from .._conv_depthwise import PASSES, SOURCE, _cdiv
from .._launch import MAX_BLOCKS, grid_blocks, i32, i64, launch, pointer_or_null

V2_SOURCES = {3: "experimental/conv_depthwise_v2.cu", 5: "experimental/conv_depthwise_v2_5x5.cu"}  # by filter size
# Must equal the #defines of conv_depthwise_v2.cuh.
V2_ROWS = DEFINES["DW2_ROWS"]  # kernels/tunables.cuh, which the v2 kernels include
V2_DGRAD_ROWS = DEFINES["DW2_DGRAD_ROWS"]
V2_DGRAD_COLS = DEFINES["DW2_DGRAD_COLS"]
V2_VEC = DEFINES["DW2_VEC"]
V2_THREADS = DEFINES["DW2_THREADS"]
V2_FILTERS = tuple(V2_SOURCES)  # square filters instantiated
V2_STRIDES = (1, 2)  # square strides instantiated
V2_CTYPES = {numpy.dtype(numpy.float16): "__half", numpy.dtype(numpy.float32): "float"}
V2_KERNELS = {"fprop": "conv2d_fprop_depthwise_v2", "wgrad": "conv2d_wgrad_depthwise_v2",
              "dgrad": "conv2d_dgrad_depthwise_v2"}
# The wgrad aims at about Config.depthwise_v2_wgrad_blocks blocks (4096: each ~one unit per thread on the
# MobileNetV2 layers).
_INT32_LIMIT = 1 << 31


def v2_bodies(R: int) -> tuple:
    """The (VEC, O) bodies instantiated for an R x R filter: aligned vectors at the column offset of the
    usual padding (R-1)/2 and at offset 0, and the element path."""
    return (V2_VEC, -(R // 2) % V2_VEC), (V2_VEC, 0), (1, 0)


def v2_dgrad2_shape(R: int) -> tuple:
    """(parity, LO, O) of the stride-2 dgrad kernel along an axis with an R filter (Dw2Phase): the pad
    parity it is compiled for, that of (R-1)/2; LO, the offset of its first gy column; O, the column offset
    of its vector body, that of padding (R-1)/2."""
    parity = (R - 1) // 2 % 2
    lo = -((R - 1 - parity) // 2)
    return parity, lo, (((R - 1) // 2 - parity) // 2 + lo) % V2_VEC


def kernel_names_v2(source_file: str) -> tuple:
    """Every instantiation of one v2 file (a value of V2_SOURCES), as ``_kernel_table.KERNELS`` lists it."""
    k = next(size for size, f in V2_SOURCES.items() if f == source_file)
    ts = ("__half", "float")
    return tuple(f"{V2_KERNELS[p]}<{t}, {k}, {k}, {s}, {s}, {vec}, {o}>" for p in ("fprop", "wgrad")
                 for t in ts for s in V2_STRIDES for vec, o in v2_bodies(k)) \
        + tuple(f"{V2_KERNELS['dgrad']}<{t}, {k}, {k}, {vec}, {o}>" for t in ts
                for vec, o in ((V2_VEC, v2_dgrad2_shape(k)[2]), (1, 0)))


def v2_columns(dtype, S: int, stride: int, wgrad: bool = False) -> int:
    """V, the outputs a v2 fprop / wgrad thread owns along a row (Dw2Cols in the kernel)."""
    return 8 if numpy.dtype(dtype).itemsize == 2 and S == 3 and stride == 1 and not wgrad else 4


def divisor(d: int) -> tuple:
    """(d, mul, shift) of the kernels' FastDivisor (kernels/fast_divide.cuh): n // d == (umulhi(n, mul) + n)
    >> shift for 0 <= n < 2^31, with shift = ceil(log2 d) and mul = floor(2^32 (2^shift - d) / d) + 1, the
    magic of the wide pooling kernels' divisor unpacked. mul is passed as the int32 of the same bits."""
    if not 1 <= d < _INT32_LIMIT:
        raise ValueError(f"divisor {d} outside [1, 2^31)")
    shift = (d - 1).bit_length()  # ceil(log2 d)
    mul = ((1 << 32) * ((1 << shift) - d)) // d + 1
    return i32(d), i32(mul - (1 << 32) if mul >= 1 << 31 else mul), i32(shift)


def _address(a) -> int:
    """The device (cupy) or host (numpy) address of an array's first element."""
    data = getattr(a, "data", None)
    ptr = getattr(data, "ptr", None)
    return int(ptr) if ptr is not None else int(a.ctypes.data)


def _aligned(a, elements: int) -> bool:
    return _address(a) % (elements * a.dtype.itemsize) == 0


@dataclass(frozen=True)
class V2Launch:
    """One v2 pass as its kernel sees it: input planes (C, H, W) per image, output planes (K, P, Q), pads,
    the kernel ("fprop": fprop or wgrad, or the stride-1 dgrad with flip; "dgrad2": the stride-2 dgrad),
    and the unit shape (rows x V)."""
    N: int
    C: int
    H: int
    W: int
    K: int
    P: int
    Q: int
    pad_top: int
    pad_left: int
    R: int
    stride: int
    flip: bool
    V: int
    kernel: str = "fprop"
    rows: int = V2_ROWS

    @property
    def strips(self) -> int:
        return _cdiv(self.P, self.rows)

    @property
    def groups(self) -> int:
        return _cdiv(self.Q, self.V)


def v2_launch(g, dtype, pass_name: str):
    """The v2 pass for geometry g (a V2Launch), or None when the v2 kernels do not cover it (the module
    docstring)."""
    try:
        dtype = numpy.dtype(dtype)
    except TypeError:
        return None
    if dtype not in V2_CTYPES or g.groups != g.C or g.c_per_group != 1 or g.K % g.C != 0 or g.empty:
        return None
    if g.R != g.S or g.R not in V2_FILTERS or (g.dil_h, g.dil_w) != (1, 1) or g.stride_h != g.stride_w \
            or g.stride_h not in V2_STRIDES:
        return None
    if pass_name == "dgrad":
        if g.K != g.C:
            return None
        if g.stride_h == 1:
            launch_ = V2Launch(g.N, g.K, g.P, g.Q, g.C, g.H, g.W, g.R - 1 - g.pad_top, g.S - 1 - g.pad_left, g.R, 1,
                               True, v2_columns(dtype, g.S, 1))
        else:
            parity = v2_dgrad2_shape(g.R)[0]
            if g.pad_top % 2 != parity or g.pad_left % 2 != parity:
                return None
            launch_ = V2Launch(g.N, g.K, g.P, g.Q, g.C, g.H, g.W, g.pad_top, g.pad_left, g.R, 2, False,
                               V2_DGRAD_COLS, "dgrad2", V2_DGRAD_ROWS)
    elif pass_name in ("fprop", "wgrad"):
        launch_ = V2Launch(g.N, g.C, g.H, g.W, g.K, g.P, g.Q, g.pad_top, g.pad_left, g.R, g.stride_h, False,
                           v2_columns(dtype, g.S, g.stride_h, pass_name == "wgrad"))
    else:
        raise ValueError(f"pass_name must be one of {PASSES}, got {pass_name!r}")
    units = launch_.N * launch_.K * launch_.strips * launch_.groups
    if units + MAX_BLOCKS * V2_THREADS >= _INT32_LIMIT:
        return None  # the kernels number units (and wgrad items, fewer) in 32 bits
    return launch_


def supports(g, dtype, pass_name: str) -> bool:
    """True when the v2 kernels cover ``pass_name`` of g in dtype."""
    return v2_launch(g, dtype, pass_name) is not None


def v2_body(L: V2Launch, x) -> tuple:
    """(VEC, O): the body that reads input x: vectors when its rows are aligned (W % 4 == 0, x aligned)
    and a body is compiled for the column offset O = (-pad_left) mod 4, else elements."""
    body = (V2_VEC, -L.pad_left % V2_VEC)
    if L.W % V2_VEC == 0 and _aligned(x, V2_VEC) and body in v2_bodies(L.R):
        return body
    return 1, 0


def _v2_name(kernel: str, dtype, L: V2Launch, body: tuple) -> str:
    return f"{kernel}<{V2_CTYPES[numpy.dtype(dtype)]}, {L.R}, {L.R}, {L.stride}, {L.stride}, {body[0]}, {body[1]}>"


def v2_dgrad2_body(L: V2Launch, gy) -> tuple:
    """(VEC, O) of the stride-2 dgrad reading gy (L's input planes, L.H x L.W): vectors when gy's rows are
    aligned and pad_left puts the first gy column at the compiled offset O, else elements."""
    parity, lo, o = v2_dgrad2_shape(L.R)
    if L.W % V2_VEC == 0 and _aligned(gy, V2_VEC) and ((L.pad_left - parity) // 2 + lo) % V2_VEC == o:
        return V2_VEC, o
    return 1, 0


def _v2_dgrad2(L: V2Launch, gy, w, bias, gx) -> None:
    """The stride-2 dgrad (L.kind "dgrad2": L.C, L.H, L.W are gy's planes, L.K, L.P, L.Q gx's)."""
    units = L.N * L.K * L.strips * L.groups
    vec_out = L.Q % V2_VEC == 0 and _aligned(gx, V2_VEC)
    args = (gy, w, pointer_or_null(bias), gx) + tuple(i32(v) for v in (
        L.K, L.P, L.Q, L.H, L.W, L.pad_top, L.pad_left, vec_out, units)) \
        + divisor(L.groups) + divisor(L.strips) + divisor(L.K)[1:]
    blocks = min(_cdiv(units, V2_THREADS), MAX_BLOCKS)
    vec, o = v2_dgrad2_body(L, gy)
    name = f"{V2_KERNELS['dgrad']}<{V2_CTYPES[numpy.dtype(gy.dtype)]}, {L.R}, {L.R}, {vec}, {o}>"
    _launch.get_function(V2_SOURCES[L.R], name)((blocks,), (V2_THREADS,), args)


def _v2_fprop(L: V2Launch, x, w, bias, y) -> None:
    units = L.N * L.K * L.strips * L.groups
    vec_out = L.Q % V2_VEC == 0 and _aligned(y, V2_VEC)
    args = (x, w, pointer_or_null(bias), y) + tuple(i32(v) for v in (
        L.C, L.H, L.W, L.K, L.P, L.Q, L.pad_top, L.pad_left, L.flip, vec_out, units)) \
        + divisor(L.groups) + divisor(L.strips) + divisor(L.K)[1:] + divisor(L.K // L.C)
    blocks = min(_cdiv(units, V2_THREADS), MAX_BLOCKS)
    name = _v2_name(V2_KERNELS["fprop"], x.dtype, L, v2_body(L, x))
    _launch.get_function(V2_SOURCES[L.R], name)((blocks,), (V2_THREADS,), args)


def v2_wgrad_chunking(L: V2Launch) -> tuple:
    """(threads, units_per_chunk, chunks) of the v2 wgrad: about Config.depthwise_v2_wgrad_blocks blocks of
    (k, chunk), each thread of a block taking units_per_chunk / threads units of channel k."""
    per_channel = L.N * L.strips * L.groups
    threads = min(V2_THREADS, _cdiv(per_channel, 32) * 32)
    per_thread = max(1, _cdiv(L.K * per_channel, threads * _config.current().depthwise_v2_wgrad_blocks))
    units_per_chunk = min(threads * per_thread, _cdiv(per_channel, threads) * threads)
    return threads, units_per_chunk, _cdiv(per_channel, units_per_chunk)


def _v2_wgrad(L: V2Launch, x, gy):
    per_channel = L.N * L.strips * L.groups
    threads, units_per_chunk, chunks = v2_wgrad_chunking(L)
    if L.K * chunks + MAX_BLOCKS >= _INT32_LIMIT:  # cannot happen: chunks <= units per channel
        raise ValueError(f"gpuconv: {L.K} x {chunks} depthwise wgrad items do not fit 32 bits")
    workspace = empty((L.K, chunks, L.R * L.R), numpy.float32)
    vec_gy = L.Q % V2_VEC == 0 and _aligned(gy, V2_VEC)
    args = (x, gy, workspace) + tuple(i32(v) for v in (
        L.C, L.H, L.W, L.K, L.P, L.Q, L.pad_top, L.pad_left, vec_gy, per_channel, units_per_chunk)) \
        + divisor(L.groups) + divisor(L.strips) + divisor(chunks) + divisor(L.K // L.C)
    blocks = min(L.K * chunks, MAX_BLOCKS)
    name = _v2_name(V2_KERNELS["wgrad"], x.dtype, L, v2_body(L, x))
    _launch.get_function(V2_SOURCES[L.R], name)((blocks,), (threads,), args)
    gw = empty((L.K, 1, L.R, L.R), x.dtype)
    launch(SOURCE, "conv2d_wgrad_depthwise_reduce", x.dtype, gw.size,
           (workspace, gw, i32(L.K), i32(L.R * L.R), i64(chunks)), blocks=grid_blocks(gw.size))
    return gw


def kernels() -> dict:
    """{source file: instantiations} of version 2 (a registry declaration)."""
    table = {source: kernel_names_v2(source) for source in V2_SOURCES.values()}
    table[SOURCE] = tuple(f"conv2d_wgrad_depthwise_reduce<{t}>" for t in V2_CTYPES.values())  # version 1's
    return table


def conv2d_fprop(g, x, w, bias=None):
    """y (N, K, P, Q), plus bias[k] when given."""
    L = v2_launch(g, x.dtype, "fprop")
    y = empty(g.output_shape, x.dtype)
    _v2_fprop(L, x, w, bias, y)
    return y


def conv2d_dgrad(g, gy, w, bias=None):
    """gx (N, C, H, W), plus bias[c] when given."""
    L = v2_launch(g, gy.dtype, "dgrad")
    gx = empty(g.input_shape, gy.dtype)
    (_v2_dgrad2 if L.kernel == "dgrad2" else _v2_fprop)(L, gy, w, bias, gx)
    return gx


def conv2d_wgrad(g, x, gy):
    """gw (K, 1, R, S): per-chunk partial sums, added in chunk order by version 1's reduction."""
    return _v2_wgrad(v2_launch(g, x.dtype, "wgrad"), x, gy)
