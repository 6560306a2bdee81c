"""Zero-copy views between PyTorch tensors and the arrays gpuconv takes (NumPy on the CPU, CuPy on CUDA).

CPU tensors share memory with ``Tensor.numpy()``; CUDA tensors cross through DLPack, which hands over the
same device pointer (no copy, no synchronisation beyond the stream hand-off DLPack specifies).
"""

from __future__ import annotations

import ml_dtypes
import numpy
import torch


def to_gpuconv(tensors: dict) -> dict:
    """The same dict with every tensor viewed as a NumPy (CPU) or CuPy (CUDA) array."""
    return {k: _view(t) for k, t in tensors.items()}


BFLOAT16 = numpy.dtype(ml_dtypes.bfloat16)


def _view(t):
    if t.device.type == "cpu":
        return numpy_view(t)
    import cupy

    return cupy.from_dlpack(t)


def numpy_view(t):
    """A CPU tensor as a NumPy array sharing its memory; bfloat16 (which Tensor.numpy() refuses) as a view
    of the same bits as ml_dtypes.bfloat16."""
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(BFLOAT16)
    return t.numpy()


def from_numpy(a):
    """torch.from_numpy, bfloat16 included (shares memory)."""
    if a.dtype == BFLOAT16:
        return torch.from_numpy(a.view(numpy.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def to_torch(result):
    """A gpuconv result (array, or tuple of arrays) as torch tensors sharing its memory."""
    if isinstance(result, tuple):
        return tuple(to_torch(r) for r in result)
    if isinstance(result, numpy.ndarray):
        return from_numpy(numpy.ascontiguousarray(result))
    return torch.from_dlpack(result)
