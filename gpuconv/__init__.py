"""gpuconv: convolution and pooling for NumPy and CuPy arrays, with PyTorch's functional semantics.

NumPy arrays run on the CPU (vectorised NumPy over BLAS); CuPy arrays run hand-written CUDA kernels on the
array's device. See README.md for the API and ``python -m gpuconv`` for a self-check.
"""

from ._functional import (
    avg_pool2d,
    avg_pool2d_backward,
    conv2d,
    conv2d_backward,
    conv_transpose2d,
    conv_transpose2d_backward,
    max_pool2d,
    max_pool2d_backward,
)

__version__ = "0.1.0"

__all__ = [
    "conv2d",
    "conv2d_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
]
