"""Correctness check of one pass before it is timed: gpuconv and PyTorch against a float64 reference.

The error of a result is max|result - reference| / max|reference| (both taken over the whole tensor), so
it reads as a fraction of the result's scale. gpuconv passes when its error is within the dtype's tolerance
or within 4x PyTorch's own error on the same data (some problems are harder than the tolerance assumes).
"""

from __future__ import annotations

import math

import torch

# float16 results are rounded to 11 significant bits (half an ulp is 2.4e-4 of the value); float32 with
# float32 accumulation over up to ~10^5 terms stays near 1e-6.
# bfloat16 keeps 8 significant bits (half an ulp is 2.0e-3 of the value), also summed in float32.
TOLERANCE = {torch.float16: 5e-3, torch.bfloat16: 4e-2, torch.float32: 1e-4, torch.float64: 1e-10}


def to_float64(tensors: dict) -> dict:
    """A float64 copy of an input set (integer tensors such as max-pool indices stay as they are)."""
    return {k: (t.double() if t.is_floating_point() else t) for k, t in tensors.items()}


def relative_error(out, ref) -> float:
    if tuple(out.shape) != tuple(ref.shape):
        return math.inf
    out = out.double()
    if not bool(torch.isfinite(out).all()):
        return math.inf
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    diff = float((out - ref).abs().max()) if ref.numel() else 0.0
    return diff / scale if scale > 0 else diff


def result_error(result, ref, x=None) -> float:
    """Error of one pass's result. A max-pool forward result is (values, indices): the indices are checked
    by gathering the input at them, which must give the reference maxima (ties may pick either index)."""
    if isinstance(result, tuple):
        values, indices = result
        ref_values = ref[0]
        err = relative_error(values, ref_values)
        if x is not None:
            flat_x = x.double().flatten(2)
            idx = indices.flatten(2).long()
            if int(idx.min()) < 0 or int(idx.max()) >= flat_x.shape[2]:
                return math.inf
            gathered = flat_x.gather(2, idx).view_as(ref_values)
            err = max(err, relative_error(gathered, ref_values))
        return err
    return relative_error(result, ref)


def verdict(err_gpuconv: float, err_torch: float, dtype) -> bool:
    tol = TOLERANCE[dtype]
    return err_gpuconv <= max(tol, 4 * err_torch)
