"""conv2d's three passes on cupy arrays, as ``gpuconv._backend`` specifies them.

Each pass makes its operands contiguous (RawKernel ignores strides; inputs are never modified), picks an
algorithm with ``_algo.choose`` (``GPUCONV_CONV_ALGO`` forces one, or asks for ``_autotune``) and runs it on
the input's device and CuPy's current stream. Every algorithm module offers the same three functions:
``_conv_direct``, ``_conv_im2col``, the implicit-GEMM family ``implicit_gemm`` and ``_conv_depthwise``.
"""

from __future__ import annotations

import functools
import importlib

import cupy
import numpy

from . import _algo, _autotune, _unverified

_MODULES = {"direct": "._conv_direct", "im2col": "._conv_im2col", "implicit_gemm": ".implicit_gemm",
            "depthwise": "._conv_depthwise"}


@functools.lru_cache(maxsize=None)
def _module(name: str):
    return importlib.import_module(_MODULES[name], __package__)


def _run(g, dtype, pass_name: str, call):
    """call(module) with the module of the chosen algorithm (autotune: the fastest one, measured once)."""
    name = _algo.choose(g, dtype, pass_name)
    if name == "autotune":
        name = _autotune.choose(g, dtype, pass_name, lambda n: call(_module(n)))
    return call(_module(name))


def _contiguous(*arrays):
    return tuple(None if a is None else cupy.ascontiguousarray(a) for a in arrays)


def conv2d_fprop(g, x, w, bias=None):
    """y (N, K, P, Q) = conv2d(x, w) + bias[k]."""
    with x.device:
        x, w, bias = _contiguous(x, w, bias)
        return _run(g, x.dtype, "fprop", lambda m: m.conv2d_fprop(g, x, w, bias))


def conv2d_dgrad(g, gy, w, bias=None):
    """gx (N, C, H, W): the gradient of conv2d in its input, plus bias[c] (a transposed conv's forward)."""
    with gy.device:
        gy, w, bias = _contiguous(gy, w, bias)
        return _run(g, gy.dtype, "dgrad", lambda m: m.conv2d_dgrad(g, gy, w, bias))


def conv2d_wgrad(g, x, gy):
    """gw (K, C/groups, R, S): the gradient of conv2d in its weight."""
    with x.device:
        x, gy = _contiguous(x, gy)
        return _run(g, x.dtype, "wgrad", lambda m: m.conv2d_wgrad(g, x, gy))


def conv2d_bias_grad(gy):
    """gb (K,): gy (N, K, P, Q) summed over N, P and Q (float16 in float32). CuPy's reduction, or with
    GPUCONV_UNVERIFIED=bias_grad the kernels of bias_grad.cu (one launch for small tensors: CuPy's reduction
    costs about 36 us of host time a call)."""
    with gy.device:
        if _unverified.enabled("bias_grad"):
            from . import _bias_grad

            return _bias_grad.bias_grad(gy)
        acc = numpy.float32 if gy.dtype == numpy.float16 else gy.dtype
        return gy.sum(axis=(0, 2, 3), dtype=acc).astype(gy.dtype, copy=False)
