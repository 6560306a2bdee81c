"""The CUDA backend: the functions of the interface in ``gpuconv._backend``, on cupy.ndarray, running the
kernels of ``kernels/``. Imported only when a CuPy array reaches gpuconv.

The backend functions are looked up lazily so that the CuPy-free parts of this package (the kernel table,
the loader's source handling) import on machines without CuPy, such as CI's NVRTC check.
"""

import importlib

_WHERE = {
    "conv2d_fprop": "conv", "conv2d_dgrad": "conv", "conv2d_wgrad": "conv", "conv2d_bias_grad": "conv",
    "pad2d": "pad", "pad2d_backward": "pad",
    "max_pool2d_fprop": "pooling", "max_pool2d_bprop": "pooling", "avg_pool2d_fprop": "pooling",
    "avg_pool2d_bprop": "pooling",
}


def __getattr__(name):
    if name in _WHERE:
        fn = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = fn
        return fn
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
