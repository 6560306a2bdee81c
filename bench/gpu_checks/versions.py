"""Print what a GPU check ran on: device, driver, CUDA runtime, NVRTC, CuPy, PyTorch, cuDNN, NumPy, pytest,
hypothesis. Never fails: a missing module or driver is printed as such (exit status 0 unless --require-gpu
and CuPy sees no GPU)."""

from __future__ import annotations

import argparse
import platform
import sys


def _try(label, fn):
    try:
        value = fn()
    except Exception as e:  # noqa: BLE001  (a version probe must never stop the run)
        value = f"unavailable ({type(e).__name__}: {e})"
    print(f"{label:<28} {value}")
    return value


def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10} ({v})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--require-gpu", action="store_true")
    args = ap.parse_args(argv)

    print(f"{'python':<28} {sys.version.split()[0]} ({sys.executable})")
    print(f"{'platform':<28} {platform.platform()}")
    _try("numpy", lambda: __import__("numpy").__version__)
    _try("pytest", lambda: __import__("pytest").__version__)
    _try("hypothesis", lambda: __import__("hypothesis").__version__)

    gpus = 0
    try:
        import cupy

        print(f"{'cupy':<28} {cupy.__version__} ({cupy.__file__})")
        rt = cupy.cuda.runtime
        _try("cuda driver (API version)", lambda: _cuda_version(rt.driverGetVersion()))
        _try("cuda runtime", lambda: _cuda_version(rt.runtimeGetVersion()))
        _try("nvrtc", lambda: ".".join(map(str, cupy.cuda.nvrtc.getVersion())))
        gpus = _try("gpus visible to cupy", rt.getDeviceCount)
        gpus = gpus if isinstance(gpus, int) else 0
        for i in range(gpus):
            props = rt.getDeviceProperties(i)
            name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
            dev = cupy.cuda.Device(i)
            free, total = dev.mem_info
            print(f"{f'gpu {i}':<28} {name}, sm_{dev.compute_capability}, "
                  f"{dev.attributes['MultiProcessorCount']} SMs, {total / 2**30:.1f} GiB ({free / 2**30:.1f} free)")
        _try("cupy cuBLAS", lambda: cupy.cuda.cublas.getVersion(cupy.cuda.device.get_cublas_handle()))
    except Exception as e:  # noqa: BLE001
        print(f"{'cupy':<28} unavailable ({type(e).__name__}: {e})")

    try:
        import torch

        print(f"{'torch':<28} {torch.__version__}")
        _try("torch cuda (built for)", lambda: torch.version.cuda)
        _try("torch cuda available", torch.cuda.is_available)
        _try("torch cudnn", torch.backends.cudnn.version)
        if torch.cuda.is_available():
            _try("torch device 0", lambda: torch.cuda.get_device_name(0))
    except Exception as e:  # noqa: BLE001
        print(f"{'torch':<28} unavailable ({type(e).__name__}: {e})")

    if args.require_gpu and gpus < 1:
        print("no GPU visible to CuPy")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
