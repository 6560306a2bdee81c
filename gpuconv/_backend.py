"""Which backend runs a call, and the interface every backend implements.

A backend is a module (``gpuconv._numpy`` or ``gpuconv._cuda``) with these functions. Every argument has
been checked by ``gpuconv._params``; arrays are 4-D ``(N, C, H, W)`` with N >= 1, of one float dtype, with
any strides (a backend copies to contiguous if it needs to), and are never modified. float16 computes and
accumulates in float32 and returns float16.

    conv2d_fprop(g: ConvGeometry, x, w, bias=None) -> y            (N, K, P, Q), bias[k] added when given
    conv2d_dgrad(g: ConvGeometry, gy, w, bias=None) -> gx           (N, C, H, W), bias[c] added when given
                                                                    (a transposed conv's forward)
    conv2d_wgrad(g: ConvGeometry, x, gy) -> gw                      (K, C/groups, R, S)
    conv2d_bias_grad(gy) -> gb                                       (K,): gy summed over N, P, Q
    pad2d(x, pads, mode) -> xp                                       pads = (top, bottom, left, right),
                                                                    mode 'reflect' | 'replicate' | 'circular'
    pad2d_backward(gxp, pads, mode) -> gx                            adjoint of pad2d: sums the gradient of
                                                                    every padded copy back onto its source
    max_pool2d_fprop(g: PoolGeometry, x) -> (y, indices int64)
    max_pool2d_bprop(gy, indices, input_shape) -> gx                 gx[n, c].flat[i] = sum of gy where
                                                                    indices == i, summed in output order
    avg_pool2d_fprop(g: PoolGeometry, x) -> y
    avg_pool2d_bprop(g: PoolGeometry, gy) -> gx

Geometry conventions (see ``_params``): kernels index the input with pad_top / pad_left only; pad_bottom /
pad_right only fix P and Q and may be negative (transposed convolution with output_padding).
"""

from __future__ import annotations

import importlib


_MODULES = {"numpy": "gpuconv._numpy", "cupy": "gpuconv._cuda"}
_loaded: dict = {}  # kind -> module (import_module costs about 1 us even for a loaded module)


def get(kind: str):
    """The backend module for an array kind returned by ``_params.check_arrays``."""
    module = _loaded.get(kind)
    if module is None:
        module = _loaded[kind] = importlib.import_module(_MODULES[kind])
    return module
