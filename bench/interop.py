"""Zero-copy views between PyTorch tensors and the arrays gpuconv takes (NumPy on the CPU, CuPy on CUDA).

CPU tensors share memory with ``Tensor.numpy()``; CUDA tensors cross through DLPack, which hands over the
same device pointer (no copy, no synchronisation beyond the stream hand-off DLPack specifies).
"""

from __future__ import annotations

import numpy
import torch


def to_gpuconv(tensors: dict) -> dict:
    """The same dict with every tensor viewed as a NumPy (CPU) or CuPy (CUDA) array."""
    return {k: _view(t) for k, t in tensors.items()}


def _view(t):
    if t.device.type == "cpu":
        return t.numpy()
    import cupy

    return cupy.from_dlpack(t)


def to_torch(result):
    """A gpuconv result (array, or tuple of arrays) as torch tensors sharing its memory."""
    if isinstance(result, tuple):
        return tuple(to_torch(r) for r in result)
    if isinstance(result, numpy.ndarray):
        return torch.from_numpy(numpy.ascontiguousarray(result))
    return torch.from_dlpack(result)
