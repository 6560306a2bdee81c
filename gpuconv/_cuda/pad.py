"""Explicit padding for conv2d's padding_mode on cupy arrays: launchers of ``kernels/pad.cu``.

pad2d(x, (top, bottom, left, right), mode) pads the last two axes by reflection, replication or
wrapping; pad2d_backward is its adjoint, a gather in which each input element sums the gradient of every
padded copy of itself (closed-form preimages, fixed order: bitwise reproducible).
"""

from __future__ import annotations

from . import _runtime
from ._alloc import empty
from ._launch import i32, i64, launch

SOURCE = "pad.cu"
KERNELS = {SOURCE: tuple(f"{k}<{t}>" for k in ("pad2d", "pad2d_backward") for t in ("__half", "float", "double"))}
MODE_CODES = {"reflect": 0, "replicate": 1, "circular": 2}  # PAD_REFLECT, ... in pad.cu


def _mode_code(mode: str):
    if mode not in MODE_CODES:
        raise ValueError(f"pad2d: mode must be one of {', '.join(MODE_CODES)}, but got {mode!r}")
    return i32(MODE_CODES[mode])


def _args(planes, H, W, Hp, Wp, top, left, mode) -> tuple:
    return (i64(planes), i32(H), i32(W), i32(Hp), i32(Wp), i32(top), i32(left), _mode_code(mode))


def pad2d(x, pads, mode):
    """x (N, C, H, W) -> (N, C, top + H + bottom, left + W + right)."""
    top, bottom, left, right = pads
    N, C, H, W = x.shape
    Hp, Wp = H + top + bottom, W + left + right
    with x.device:
        x = _runtime.xp().ascontiguousarray(x)
        xp = empty((N, C, Hp, Wp), x.dtype)
        launch(SOURCE, "pad2d", x.dtype, xp.size, (x, xp) + _args(N * C, H, W, Hp, Wp, top, left, mode))
        return xp


def pad2d_backward(gxp, pads, mode):
    """gxp (N, C, Hp, Wp) -> gx (N, C, Hp - top - bottom, Wp - left - right)."""
    top, bottom, left, right = pads
    N, C, Hp, Wp = gxp.shape
    H, W = Hp - top - bottom, Wp - left - right
    with gxp.device:
        gxp = _runtime.xp().ascontiguousarray(gxp)
        gx = empty((N, C, H, W), gxp.dtype)
        launch(SOURCE, "pad2d_backward", gxp.dtype, gx.size,
               (gxp, gx) + _args(N * C, H, W, Hp, Wp, top, left, mode))
        return gx
