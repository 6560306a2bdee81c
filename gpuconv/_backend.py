"""Which backend runs a call, and the interface every backend implements.

A backend is a module (``gpuconv._numpy`` or ``gpuconv._cuda``) with these functions. Every argument has
been checked by ``gpuconv._params``; arrays are 4-D ``(N, C, H, W)`` with N >= 1, of one float dtype, with
any strides (a backend copies to contiguous if it needs to), and are never modified. float16 computes and
accumulates in float32 and returns float16. bfloat16 never reaches a backend: ``get(kind, bfloat16)`` hands
out a :class:`Float32Proxy` that runs the backend in float32 (see there).

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

import numpy

from ._params import BFLOAT16

_MODULES = {"numpy": "gpuconv._numpy", "cupy": "gpuconv._cuda"}
_loaded: dict = {}  # kind -> module (import_module costs about 1 us even for a loaded module)
_proxies: dict = {}  # kind -> Float32Proxy of that kind's module


def get(kind: str, dtype=None):
    """The backend for an array kind returned by ``_params.check_arrays`` and the call's dtype: the backend
    module itself, or for bfloat16 a :class:`Float32Proxy` of it with the same functions."""
    module = _loaded.get(kind)
    if module is None:
        module = _loaded[kind] = importlib.import_module(_MODULES[kind])
    if dtype is None or dtype != BFLOAT16:
        return module
    proxy = _proxies.get(kind)
    if proxy is None:
        proxy = _proxies[kind] = Float32Proxy(module)
    return proxy


class Float32Proxy:
    """A backend's functions for bfloat16 arrays, computed by its float32 code.

    Each call converts its bfloat16 array arguments to float32 where they live (NumPy: ``astype`` on the
    host; CuPy: ``astype`` on the array's GPU, never through the host), runs the backend function, and
    converts its float32 array results back to bfloat16 (rounding to nearest even); anything else (int64
    max-pool indices, None, geometry objects) passes through untouched. So a bfloat16 result is the float32
    result rounded once, and accumulation is float32's, as DESIGN.md asks; on the CUDA path it runs only
    verified float32 kernels and CuPy's own casts (verified by composition). An op the public function
    composes of two backend calls (a padding_mode's pad2d_backward after conv2d_dgrad) rounds after each.
    """

    compute_dtype = numpy.dtype(numpy.float32)

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        fn = getattr(self._module, name)
        if not callable(fn):
            return fn

        def converting(*args):
            result = fn(*(_to_compute(a, self.compute_dtype) for a in args))
            if type(result) is tuple:
                return tuple(_to_bfloat16(r, self.compute_dtype) for r in result)
            return _to_bfloat16(result, self.compute_dtype)

        converting.__name__ = converting.__qualname__ = name
        setattr(self, name, converting)  # later lookups skip __getattr__
        return converting


def _to_compute(a, compute_dtype):
    dtype = getattr(a, "dtype", None)
    if dtype is None or dtype != BFLOAT16:
        return a
    if isinstance(a, numpy.ndarray):
        return a.astype(compute_dtype)
    with a.device:  # CuPy allocates on the current device: make it the array's
        return a.astype(compute_dtype, order="C")  # the kernels read C-contiguous arrays: one copy, not two


def _to_bfloat16(a, compute_dtype):
    dtype = getattr(a, "dtype", None)
    if dtype is None or dtype != compute_dtype:
        return a
    if isinstance(a, numpy.ndarray):
        return a.astype(BFLOAT16)
    with a.device:
        return a.astype(BFLOAT16)
