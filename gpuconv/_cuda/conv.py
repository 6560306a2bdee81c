"""conv2d's three passes and its bias gradient on cupy arrays, as ``gpuconv._backend`` specifies them.

Each pass takes one configuration snapshot (``_config``), makes its operands contiguous (RawKernel ignores
strides; inputs are never modified), asks ``_algo`` for the variant (``_registry``) and runs it on the input's
device and CuPy's current stream.
"""

from __future__ import annotations


from . import _algo, _config, _runtime


def run_pass(g, dtype, pass_name: str, arrays: tuple):
    """The chosen variant's pass, then (fprop, dgrad) its non-finite-weight repair where that is turned on."""
    config = _config.current()
    variant = _algo.conv_variant(g, dtype, pass_name, config, arrays)
    out = variant.run[pass_name](g, *arrays)
    repair = _algo.nonfinite_repair(variant, g, dtype, pass_name, config)
    return out if repair is None else repair.run[pass_name](g, *arrays, out)


def _contiguous(*arrays):
    return tuple(None if a is None else _runtime.xp().ascontiguousarray(a) for a in arrays)


def conv2d_fprop(g, x, w, bias=None):
    """y (N, K, P, Q) = conv2d(x, w) + bias[k]."""
    with x.device:
        x, w, bias = _contiguous(x, w, bias)
        return run_pass(g, x.dtype, "fprop", (x, w, bias))


def conv2d_dgrad(g, gy, w, bias=None):
    """gx (N, C, H, W): the gradient of conv2d in its input, plus bias[c] (a transposed conv's forward)."""
    with gy.device:
        gy, w, bias = _contiguous(gy, w, bias)
        return run_pass(g, gy.dtype, "dgrad", (gy, w, bias))


def conv2d_wgrad(g, x, gy):
    """gw (K, C/groups, R, S): the gradient of conv2d in its weight."""
    with x.device:
        x, gy = _contiguous(x, gy)
        return run_pass(g, x.dtype, "wgrad", (x, gy))


def conv2d_bias_grad(gy):
    """gb (K,): gy (N, K, P, Q) summed over N, P and Q (float16 in float32)."""
    with gy.device:
        return _algo.variant_for("bias_grad", (), gy.dtype, "bias_grad").run["bias_grad"](gy)  # any shape
